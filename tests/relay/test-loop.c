/* tests/relay/test-loop.c: the loop's timers, deferred calls and generic ops on a real ring. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "tests/relay/relay-test.h"
#include "tests/io-uring-skip.h"

#define MS (1000ull * 1000)

struct fired {
        unsigned count;
        bool flag;
        uint64_t at;
        struct relay *r;
};

static void on_timer(struct relay_timer *t, void *userdata)
{
        struct fired *f = userdata;

        f->count++;
        f->flag = true;
        f->at = relay_now_ns(f->r);
}

static void test_timer_fires_after_its_delay(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        _cleanup_(relay_timer_freep) struct relay_timer *t = NULL;
        struct fired f = {};
        uint64_t start;

        assert_int_equal(relay_new(NULL, &r), 0);
        f.r = r;
        assert_int_equal(relay_timer_new(r, on_timer, &f, &t), 0);
        start = relay_now_ns(r);
        assert_int_equal(relay_timer_arm(t, 20 * MS), 0);
        assert_true(relay_timer_is_armed(t));
        run_until(r, &f.flag);
        assert_int_equal(f.count, 1);
        assert_true(f.at - start >= 20 * MS);
        assert_false(relay_timer_is_armed(t));
}

static void test_timers_fire_in_deadline_order(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_timer *t[5];
        struct fired f[5] = {};
        const unsigned delay_ms[5] = { 50, 10, 40, 20, 30 };

        assert_int_equal(relay_new(NULL, &r), 0);
        for (int i = 0; i < 5; i++) {
                f[i].r = r;
                assert_int_equal(relay_timer_new(r, on_timer, &f[i], &t[i]), 0);
                assert_int_equal(relay_timer_arm(t[i], delay_ms[i] * MS), 0);
        }
        run_until(r, &f[0].flag);
        assert_true(f[1].at <= f[3].at);
        assert_true(f[3].at <= f[4].at);
        assert_true(f[4].at <= f[2].at);
        assert_true(f[2].at <= f[0].at);
        for (int i = 0; i < 5; i++) {
                assert_int_equal(f[i].count, 1);
                relay_timer_free(t[i]);
        }
}

static void test_timer_disarm_prevents_firing(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        _cleanup_(relay_timer_freep) struct relay_timer *t = NULL, *later = NULL;
        struct fired f = {}, g = {};

        assert_int_equal(relay_new(NULL, &r), 0);
        f.r = g.r = r;
        assert_int_equal(relay_timer_new(r, on_timer, &f, &t), 0);
        assert_int_equal(relay_timer_new(r, on_timer, &g, &later), 0);
        assert_int_equal(relay_timer_arm(t, 5 * MS), 0);
        assert_int_equal(relay_timer_arm(later, 30 * MS), 0);
        relay_timer_disarm(t);
        run_until(r, &g.flag);
        assert_int_equal(f.count, 0);
}

static void test_timer_rearm_moves_deadline(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        _cleanup_(relay_timer_freep) struct relay_timer *t = NULL, *mark = NULL;
        struct fired f = {}, m = {};

        assert_int_equal(relay_new(NULL, &r), 0);
        f.r = m.r = r;
        assert_int_equal(relay_timer_new(r, on_timer, &f, &t), 0);
        assert_int_equal(relay_timer_new(r, on_timer, &m, &mark), 0);
        assert_int_equal(relay_timer_arm(t, 5 * MS), 0);
        assert_int_equal(relay_timer_arm(t, 60 * MS), 0);
        assert_int_equal(relay_timer_arm(mark, 20 * MS), 0);
        run_until(r, &m.flag);
        assert_int_equal(f.count, 0);
        run_until(r, &f.flag);
        assert_int_equal(f.count, 1);
}

struct self_free {
        struct relay_timer *t;
        bool flag;
};

static void on_timer_free_self(struct relay_timer *t, void *userdata)
{
        struct self_free *s = userdata;

        s->t = relay_timer_free(s->t);
        s->flag = true;
}

static void test_timer_free_while_armed_and_from_its_callback_is_safe(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_timer *t;
        struct fired f = {};
        struct self_free s = {};

        assert_int_equal(relay_new(NULL, &r), 0);
        f.r = r;
        assert_int_equal(relay_timer_new(r, on_timer, &f, &t), 0);
        assert_int_equal(relay_timer_arm(t, 1 * MS), 0);
        relay_timer_free(t);

        assert_int_equal(relay_timer_new(r, on_timer_free_self, &s, &s.t), 0);
        assert_int_equal(relay_timer_arm(s.t, 10 * MS), 0);
        run_until(r, &s.flag);
        assert_null(s.t);
        run_idle(r, 3);
        assert_int_equal(f.count, 0);
}

struct defer_log {
        int order[4];
        unsigned n;
};

struct defer_item {
        struct defer_log *log;
        int v;
};

static void on_defer(void *userdata)
{
        struct defer_item *it = userdata;

        it->log->order[it->log->n++] = it->v;
}

static void test_defer_runs_later_in_queue_order(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct defer_log log = {};
        struct defer_item items[3];

        assert_int_equal(relay_new(NULL, &r), 0);
        for (int i = 0; i < 3; i++) {
                items[i] = (struct defer_item){ &log, i };
                assert_int_equal(relay_defer(r, on_defer, &items[i]), 0);
        }
        assert_int_equal(log.n, 0);
        assert_int_equal(relay_run_once(r, -1), 0);
        assert_int_equal(log.n, 3);
        for (int i = 0; i < 3; i++)
                assert_int_equal(log.order[i], i);
}

struct nop_op {
        struct relay_op op;
        int res;
        bool flag;
};

static void on_nop(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct nop_op *n = container_of(op, struct nop_op, op);

        n->res = res;
        n->flag = true;
}

static void test_generic_op_completion_reaches_its_callback(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct nop_op n = { .op.fn = on_nop, .res = -1 };
        struct io_uring_sqe *sqe;

        assert_int_equal(relay_new(NULL, &r), 0);
        sqe = relay_get_sqe(r);
        assert_non_null(sqe);
        io_uring_prep_nop(sqe);
        relay_sqe_set_op(sqe, &n.op);
        run_until(r, &n.flag);
        assert_int_equal(n.res, 0);
}

static void test_get_sqe_flushes_a_full_ring(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_config c;
        struct nop_op n[100];
        unsigned done = 0;

        relay_config_default(&c);
        c.ring_entries = 8;
        assert_int_equal(relay_new(&c, &r), 0);
        for (int i = 0; i < 100; i++) {
                struct io_uring_sqe *sqe = relay_get_sqe(r);
                assert_non_null(sqe);
                n[i] = (struct nop_op){ .op.fn = on_nop, .res = -1 };
                io_uring_prep_nop(sqe);
                relay_sqe_set_op(sqe, &n[i].op);
        }
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; done < 100;) {
                assert_int_equal(relay_run_once(r, 10 * MS), 0);
                assert_true(relay_now_ns(r) < deadline);
                done = 0;
                for (int i = 0; i < 100; i++)
                        done += n[i].flag;
        }
}

/* The ring takes calls from the thread that made it only: its registered fd is that thread's
 * (-EINVAL elsewhere), and IORING_SETUP_SINGLE_ISSUER refuses other submitters (-EEXIST). So a
 * turn, or a flush of a full ring, from another thread is a real ring failure. */
struct elsewhere {
        struct relay *r;
        unsigned sqes; /* 0: one turn; else take this many SQEs */
        int k;
        bool got_null;
};

static void *act_elsewhere(void *userdata)
{
        struct elsewhere *x = userdata;

        if (x->sqes == 0) {
                x->k = relay_run_once(x->r, 0);
                return NULL;
        }
        for (unsigned i = 0; i < x->sqes && !x->got_null; i++) {
                struct io_uring_sqe *sqe = relay_get_sqe(x->r);

                if (!sqe)
                        x->got_null = true;
                else {
                        io_uring_prep_nop(sqe);
                        relay_sqe_set_ignore(sqe);
                }
        }
        return NULL;
}

static void run_elsewhere(struct elsewhere *x)
{
        pthread_t th;

        assert_int_equal(pthread_create(&th, NULL, act_elsewhere, x), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
}

static void test_ring_failure_is_told_with_the_call_and_error(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct events_seen e;
        struct elsewhere x = {};
        struct io_uring_sqe *sqe;

        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        /* Something to submit, so the other thread's enter has to claim the ring. */
        sqe = relay_get_sqe(r);
        assert_non_null(sqe);
        io_uring_prep_nop(sqe);
        relay_sqe_set_ignore(sqe);
        x.r = r;
        run_elsewhere(&x);
        if (x.k == 0) {
                printf("SKIP: this kernel's ring takes calls from any thread\n");
                skip();
        }
        assert_true(x.k == -EINVAL || x.k == -EEXIST);
        assert_int_equal(e.count[RELAY_EVENT_RING_FAILED], 1);
        assert_int_equal(e.last[RELAY_EVENT_RING_FAILED].error, x.k);
        assert_string_equal(e.what[RELAY_EVENT_RING_FAILED], "io_uring_enter");
        /* Broken for good: later turns fail without telling again. */
        assert_int_equal(relay_run_once(r, 0), -EIO);
        assert_int_equal(e.count[RELAY_EVENT_RING_FAILED], 1);
        for (int k = 0; k < _RELAY_EVENT_KIND_MAX; k++)
                if (k != RELAY_EVENT_RING_FAILED)
                        assert_int_equal(e.count[k], 0);
}

static void test_full_ring_that_cannot_flush_is_told(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_config c;
        struct events_seen e;
        struct elsewhere x = { .sqes = 9 };

        relay_config_default(&c);
        c.ring_entries = 8;
        assert_int_equal(relay_new(&c, &r), 0);
        events_listen(r, &e);
        x.r = r;
        run_elsewhere(&x);
        if (!x.got_null) {
                printf("SKIP: this kernel's ring takes calls from any thread\n");
                skip();
        }
        assert_int_equal(e.count[RELAY_EVENT_RING_FAILED], 1);
        assert_true(e.last[RELAY_EVENT_RING_FAILED].error == -EINVAL ||
                    e.last[RELAY_EVENT_RING_FAILED].error == -EEXIST);
        assert_string_equal(e.what[RELAY_EVENT_RING_FAILED], "submitting to a full ring");
        assert_null(relay_get_sqe(r));
        assert_int_equal(e.count[RELAY_EVENT_RING_FAILED], 1);
}

static void test_run_once_with_timeout_returns_when_idle(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_run_once(r, 0), 0);
        assert_int_equal(relay_run_once(r, 5 * MS), 0);
}

static void on_timer_stop(struct relay_timer *t, void *userdata)
{
        relay_stop(userdata);
}

static void test_run_returns_after_stop(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        _cleanup_(relay_timer_freep) struct relay_timer *t = NULL;

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_timer_new(r, on_timer_stop, r, &t), 0);
        assert_int_equal(relay_timer_arm(t, 5 * MS), 0);
        assert_int_equal(relay_run(r), 0);
}

static void test_new_raises_nofile_and_reports_capacity(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct rlimit rl;

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
        assert_true(rl.rlim_cur == rl.rlim_max);
        assert_true(relay_stream_capacity(r) > 0);
        assert_true(relay_stream_capacity(r) <= rl.rlim_cur / 2);
}

static void test_config_out_of_bounds_is_refused(void **state)
{
        struct relay_config c;
        struct relay *r = NULL;

        relay_config_default(&c);
        c.buf_count = 3000; /* not a power of two */
        assert_int_equal(relay_new(&c, &r), -EINVAL);
        relay_config_default(&c);
        c.buf_size = 1u << 20;
        c.buf_count = 128; /* 128 MiB pool */
        assert_int_equal(relay_new(&c, &r), -EINVAL);
        relay_config_default(&c);
        c.stream_max_bufs = 0;
        assert_int_equal(relay_new(&c, &r), -EINVAL);
        assert_null(r);
}

static void test_stats_count_turns_and_cqes_per_turn(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct nop_op n[5];
        struct relay_stats st;

        assert_int_equal(relay_new(NULL, &r), 0);
        for (int i = 0; i < 5; i++) {
                struct io_uring_sqe *sqe = relay_get_sqe(r);

                assert_non_null(sqe);
                n[i] = (struct nop_op){ .op.fn = on_nop, .res = -1 };
                io_uring_prep_nop(sqe);
                relay_sqe_set_op(sqe, &n[i].op);
        }
        /* Nops complete as they are submitted: one waiting turn takes all five. */
        assert_int_equal(relay_run_once(r, 100 * MS), 0);
        for (int i = 0; i < 5; i++)
                assert_true(n[i].flag);
        assert_int_equal(relay_run_once(r, 0), 0);
        relay_get_stats(r, &st);
        assert_int_equal(st.turns, 2);
        assert_int_equal(st.turns_waited, 1);
        assert_int_equal(st.cqes, 5);
        assert_int_equal(st.cqes_per_turn[0], 1); /* the polling turn found nothing */
        assert_int_equal(st.cqes_per_turn[3], 1); /* 4 .. 7 */
        for (int i = 0; i < RELAY_STATS_CQE_BUCKETS; i++)
                if (i != 0 && i != 3)
                        assert_int_equal(st.cqes_per_turn[i], 0);
}

int main(int argc, char **argv)
{
        test_skip_without_io_uring();
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_timer_fires_after_its_delay),
                cmocka_unit_test(test_timers_fire_in_deadline_order),
                cmocka_unit_test(test_timer_disarm_prevents_firing),
                cmocka_unit_test(test_timer_rearm_moves_deadline),
                cmocka_unit_test(test_timer_free_while_armed_and_from_its_callback_is_safe),
                cmocka_unit_test(test_defer_runs_later_in_queue_order),
                cmocka_unit_test(test_generic_op_completion_reaches_its_callback),
                cmocka_unit_test(test_get_sqe_flushes_a_full_ring),
                cmocka_unit_test(test_ring_failure_is_told_with_the_call_and_error),
                cmocka_unit_test(test_full_ring_that_cannot_flush_is_told),
                cmocka_unit_test(test_run_once_with_timeout_returns_when_idle),
                cmocka_unit_test(test_run_returns_after_stop),
                cmocka_unit_test(test_new_raises_nofile_and_reports_capacity),
                cmocka_unit_test(test_config_out_of_bounds_is_refused),
                cmocka_unit_test(test_stats_count_turns_and_cqes_per_turn),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
