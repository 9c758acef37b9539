/* relay/loop.c: the one io_uring ring, completion dispatch, deferred calls and daemon-wide stats. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>

#include "relay/internal.h"

void relay_config_default(struct relay_config *c)
{
        /* Measured with tests/relay/relay-throughput.c (one 64 KiB-write stream, 2 cores): 64 KiB x 8
         * held per stream ran at 2.1 GB/s and 0.20 relay CPU-s/GB; 64 KiB x 4 at 1.5 GB/s, 32 KiB x 8
         * at 1.5 GB/s, 16 KiB x 16 at 0.9 GB/s. A stalled stream holds at most 512 KiB; the 32 MiB
         * pool bounds the total and is touched only as load needs it. ring_bufs: the bench's B2
         * (1,000 streams) spent 0.53 CPU-s/GB with the whole pool in the kernel's FIFO ring,
         * 0.38 with 64 buffers offered at a time, 0.35 with 16; 8, or 32 KiB buffers, did worse (pool.c). */
        *c = (struct relay_config){
                .ring_entries = 1024,
                .buf_size = 64 * 1024,
                .buf_count = 512,
                .stream_max_bufs = 8,
                .ring_bufs = RELAY_RING_BUFS_DEFAULT,
        };
}

static bool is_pow2(unsigned v)
{
        return v && !(v & (v - 1));
}

static int config_check(const struct relay_config *c)
{
        if (c->ring_entries < 8 || c->ring_entries > RELAY_RING_ENTRIES_MAX)
                return -EINVAL;
        if (c->buf_size < RELAY_BUF_SIZE_MIN || c->buf_size > RELAY_BUF_SIZE_MAX)
                return -EINVAL;
        if (!is_pow2(c->buf_count) || c->buf_count > RELAY_BUF_COUNT_MAX)
                return -EINVAL;
        if ((uint64_t)c->buf_size * c->buf_count > RELAY_POOL_BYTES_MAX)
                return -EINVAL;
        /* Two at least: the receive budget keeps one buffer for the kernel's overshoot (stream.c). */
        if (c->stream_max_bufs < 2 || c->stream_max_bufs > c->buf_count)
                return -EINVAL;
        if (c->ring_bufs > c->buf_count)
                return -EINVAL;
        if (c->splice_pipes > RELAY_SPLICE_PIPES_MAX || c->splice_pipes_max > RELAY_SPLICE_PIPES_MAX ||
            c->splice_pipe_size > RELAY_SPLICE_PIPE_SIZE_MAX)
                return -EINVAL;
        return 0;
}

/* Fills in the splice defaults; the environment knob lets a test put every stream on the path. */
static void splice_config(struct relay_config *c)
{
        const char *e = getenv("VSOCKMUX_RELAY_SPLICE_MIN");

        if (e && *e) {
                char *end;
                unsigned long v = strtoul(e, &end, 10);

                if (*end == '\0' && v > 0 && v <= RELAY_BUF_SIZE_MAX)
                        c->splice_min = (unsigned)v;
        }
        if (c->splice_min == 0)
                c->splice_min = c->buf_size;
        if (c->splice_pipes == 0)
                c->splice_pipes = RELAY_SPLICE_PIPES_DEFAULT;
        if (c->splice_pipes_max == 0)
                c->splice_pipes_max = RELAY_SPLICE_PIPES_MAX;
        c->splice_pipes_max = MAX(c->splice_pipes_max, c->splice_pipes);
        if (c->splice_pipes_idle_ms == 0)
                c->splice_pipes_idle_ms = RELAY_SPLICE_PIPES_IDLE_MS_DEFAULT;
        if (c->no_splice)
                c->splice_pipes = c->splice_pipes_max = 0;
}

static unsigned raise_nofile(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return 0;
        if (rl.rlim_cur < rl.rlim_max) {
                rlim_t want = rl.rlim_max;
                rl.rlim_cur = want;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        (void)getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30))
                rl.rlim_cur = 1u << 30;
        if (rl.rlim_cur <= RELAY_FD_HEADROOM)
                return 0;
        return (unsigned)((rl.rlim_cur - RELAY_FD_HEADROOM) / 2);
}

/* The calling thread's voluntary context switches: how often it blocked. */
static uint64_t thread_nvcsw(void)
{
        struct rusage ru;

        if (getrusage(RUSAGE_THREAD, &ru) < 0)
                return 0;
        return (uint64_t)ru.ru_nvcsw;
}

static int ring_init(struct relay *r)
{
        struct io_uring_params p = {
                .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
                         IORING_SETUP_SUBMIT_ALL,
                .cq_entries = r->cfg.ring_entries * 4,
        };
        int k;

        k = io_uring_queue_init_params(r->cfg.ring_entries, &r->ring, &p);
        if (k == -EINVAL) {
                /* Older kernels: no deferred task running; COOP still avoids IPIs. */
                p = (struct io_uring_params){
                        .flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
                        .cq_entries = r->cfg.ring_entries * 4,
                };
                k = io_uring_queue_init_params(r->cfg.ring_entries, &r->ring, &p);
        }
        if (k == -EINVAL) {
                p = (struct io_uring_params){};
                k = io_uring_queue_init_params(r->cfg.ring_entries, &r->ring, &p);
        }
        if (k < 0)
                return k;
        /* Saves an fget/fput per io_uring_enter; optional. */
        (void)io_uring_register_ring_fd(&r->ring);
        return 0;
}

int relay_new(const struct relay_config *c, struct relay **ret)
{
        struct relay_config def;
        struct relay *r;
        int k;

        if (!c) {
                relay_config_default(&def);
                c = &def;
        }
        k = config_check(c);
        if (k < 0)
                return k;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->cfg = *c;
        if (r->cfg.ring_bufs == 0)
                r->cfg.ring_bufs = MIN(RELAY_RING_BUFS_DEFAULT, r->cfg.buf_count);
        splice_config(&r->cfg);
        list_init(&r->defers);
        list_init(&r->buf_waiters);
        r->mshot_limit = -1;
        r->ring.ring_fd = -1;
        r->capacity = raise_nofile();
        r->nvcsw_start = thread_nvcsw();
        /* Each pipe of the splice pool is two fds: one stream fewer per pipe. */
        r->capacity = r->capacity > r->cfg.splice_pipes ? r->capacity - r->cfg.splice_pipes : 0;
        /* A vanished pipe reader must end one stream with EPIPE, not kill the daemon. */
        signal(SIGPIPE, SIG_IGN);

        k = ring_init(r);
        if (k < 0) {
                free(r);
                return k;
        }
        k = relay_features_probe(&r->ring, &r->features);
        if (k >= 0)
                k = relay_pool_init(r);
        if (k < 0) {
                io_uring_queue_exit(&r->ring);
                free(r);
                return k;
        }
        *ret = r;
        return 0;
}

#define RELAY_FREE_DRAIN_TURNS 200
#define RELAY_FREE_DRAIN_WAIT_NS (10ll * 1000000ll)

struct relay *relay_free(struct relay *r)
{
        if (!r)
                return NULL;
        /* Give objects the owner already freed the chance to see their cancel completions: turn
         * until a short wait brings nothing more (bounded, so a stuck op cannot hang the exit). */
        for (int i = 0; i < RELAY_FREE_DRAIN_TURNS && !r->broken; i++) {
                if (relay_run_once(r, RELAY_FREE_DRAIN_WAIT_NS) < 0)
                        break;
                if (r->last_dispatched == 0 && list_empty(&r->defers))
                        break;
        }
        while (!list_empty(&r->defers)) {
                struct relay_defer_node *d = list_entry(r->defers.next, struct relay_defer_node, node);
                list_del(&d->node);
                free(d);
        }
        relay_listeners_done(r);
        relay_timers_done(r);
        relay_pipes_done(r);
        /* Exiting the ring completes whatever is still in flight before the pool goes away. */
        io_uring_queue_exit(&r->ring);
        relay_pool_done(r);
        free(r);
        return NULL;
}

uint64_t relay_now_ns(struct relay *r)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

unsigned relay_stream_capacity(struct relay *r)
{
        return r->capacity;
}

/* The ring is broken: every later call fails, so the owner hears why once. */
static void ring_failed(struct relay *r, int error, const char *what)
{
        r->broken = true;
        relay_emit(r, &(struct relay_event){ .kind = RELAY_EVENT_RING_FAILED, .error = error, .what = what });
}

struct io_uring_sqe *relay_get_sqe(struct relay *r)
{
        struct io_uring_sqe *sqe;

        if (r->broken)
                return NULL;
        sqe = io_uring_get_sqe(&r->ring);
        if (sqe)
                return sqe;
        for (int tries = 0; tries < 3; tries++) {
                int k = io_uring_submit(&r->ring);
                if (k < 0 && k != -EAGAIN && k != -EBUSY && k != -EINTR) {
                        ring_failed(r, k, "submitting to a full ring");
                        return NULL;
                }
                sqe = io_uring_get_sqe(&r->ring);
                if (sqe)
                        return sqe;
        }
        r->broken = true;
        return NULL;
}

void relay_sqe_set_op(struct io_uring_sqe *sqe, struct relay_op *op)
{
        io_uring_sqe_set_data(sqe, op);
}

void relay_sqe_set_ignore(struct io_uring_sqe *sqe)
{
        io_uring_sqe_set_data64(sqe, 0);
}

int relay_cancel_op(struct relay *r, struct relay_op *op)
{
        struct io_uring_sqe *sqe = relay_get_sqe(r);

        if (!sqe)
                return -EIO;
        io_uring_prep_cancel(sqe, op, 0);
        relay_sqe_set_ignore(sqe);
        return 0;
}

int relay_close_fd(struct relay *r, int fd)
{
        if (fd < 0)
                return -1;
        if (io_uring_sq_ready(&r->ring) > 0)
                (void)io_uring_submit(&r->ring);
        /* A cancelled request keeps the file until its cancel lands; meanwhile the peer would still
         * see an open socket, and bytes it sent in that window would go to a request nobody reads
         * (a guest's wait answer after a save, lost). shutdown() ends the socket itself, whoever
         * holds it, so the peer sees the close now. Not a socket: -ENOTSOCK, harmless. */
        if (!r->fds_shared)
                (void)shutdown(fd, SHUT_RDWR);
        return safe_close(fd);
}

void relay_set_ops(struct relay *r, const struct relay_ops *ops, void *userdata)
{
        r->ops = ops;
        r->ops_userdata = userdata;
}

void relay_emit(struct relay *r, const struct relay_event *ev)
{
        if (r->ops && r->ops->event)
                r->ops->event(r, ev, r->ops_userdata);
}

void relay_set_fds_shared(struct relay *r, bool shared)
{
        r->fds_shared = shared;
}

int relay_defer(struct relay *r, void (*fn)(void *userdata), void *userdata)
{
        struct relay_defer_node *d = malloc(sizeof(*d));

        if (!d)
                return -ENOMEM;
        *d = (struct relay_defer_node){ .fn = fn, .userdata = userdata };
        list_add_tail(&r->defers, &d->node);
        return 0;
}

static void run_deferred(struct relay *r)
{
        /* Only what was queued before this point: a deferred call that defers again waits a turn.
         * So the queue moves to a local head first (the nodes' ends are re-pointed at it). */
        struct list_head batch;

        if (list_empty(&r->defers))
                return;
        batch = r->defers;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        list_init(&r->defers);
        while (!list_empty(&batch)) {
                struct relay_defer_node *d = list_entry(batch.next, struct relay_defer_node, node);

                list_del(&d->node);
                d->fn(d->userdata);
                free(d);
        }
}

struct cqe_copy {
        uint64_t user_data;
        int32_t res;
        uint32_t flags;
};

static unsigned dispatch(struct relay *r)
{
        struct cqe_copy batch[RELAY_CQE_BATCH];
        unsigned total = 0, n;

        do {
                struct io_uring_cqe *cqe;
                unsigned head;

                n = 0;
                io_uring_for_each_cqe(&r->ring, head, cqe)
                {
                        batch[n++] = (struct cqe_copy){ cqe->user_data, cqe->res, cqe->flags };
                        if (n == RELAY_CQE_BATCH)
                                break;
                }
                io_uring_cq_advance(&r->ring, n);
                for (unsigned i = 0; i < n; i++) {
                        struct relay_op *op = (struct relay_op *)(uintptr_t)batch[i].user_data;
                        if (op)
                                op->fn(r, op, batch[i].res, batch[i].flags);
                }
                total += n;
        } while (n == RELAY_CQE_BATCH && total < 16 * RELAY_CQE_BATCH);
        return total;
}

static unsigned cqe_bucket(unsigned n)
{
        unsigned b = 0;

        while (n && b < RELAY_STATS_CQE_BUCKETS - 1) {
                n >>= 1;
                b++;
        }
        return b;
}

static void count_turn(struct relay *r, unsigned n, bool waited)
{
        r->turns++;
        r->turns_waited += waited;
        r->cqes += n;
        r->cqes_per_turn[cqe_bucket(n)]++;
}

static int wait_plain(struct relay *r, int64_t wait)
{
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {
                .tv_sec = wait / 1000000000,
                .tv_nsec = wait % 1000000000,
        };

        if (wait < 0)
                return io_uring_submit_and_wait(&r->ring, 1);
        return io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
}

static int wait_timed(struct relay *r, int64_t wait)
{
        uint64_t t0 = relay_now_ns(r), t1;
        int k = wait_plain(r, wait);

        t1 = relay_now_ns(r);
        r->wait_ns += t1 - t0;
        return k;
}

int relay_run_once(struct relay *r, int64_t timeout_ns)
{
        uint64_t next;
        int64_t wait = timeout_ns;
        int k;

        if (r->broken)
                return -EIO;

        next = relay_timers_next_deadline(r);
        if (next != UINT64_MAX) {
                uint64_t now = relay_now_ns(r);
                int64_t d = next > now ? (int64_t)(next - now) : 0;
                if (wait < 0 || d < wait)
                        wait = d;
        }
        if (!list_empty(&r->defers) || io_uring_cq_ready(&r->ring))
                wait = 0;
        relay_pool_refill(r);

        if (wait == 0)
                k = io_uring_submit_and_get_events(&r->ring);
        else
                k = wait_timed(r, wait);
        if (k < 0 && k != -ETIME && k != -EINTR && k != -EAGAIN && k != -EBUSY) {
                ring_failed(r, k, "io_uring_enter");
                return k;
        }

        r->last_dispatched = dispatch(r);
        count_turn(r, r->last_dispatched, wait != 0);
        relay_pool_wake_waiters(r);
        relay_timers_run(r);
        run_deferred(r);
        return r->broken ? -EIO : 0;
}

int relay_run(struct relay *r)
{
        r->stop = false;
        while (!r->stop) {
                int k = relay_run_once(r, -1);
                if (k < 0)
                        return k;
        }
        return 0;
}

void relay_stop(struct relay *r)
{
        r->stop = true;
}

void relay_get_stats(struct relay *r, struct relay_stats *ret)
{
        uint64_t nvcsw = thread_nvcsw();

        *ret = (struct relay_stats){
                .bytes_relayed = r->bytes_relayed,
                .streams = r->n_streams,
                .listeners = r->n_listeners,
                .chans = r->n_chans,
                .pool_bufs_total = r->pool_touched,
                .pool_bufs_in_use = r->pool_in_use,
                .pool_bytes = r->bufs_size,
                .pool_buf_size = r->cfg.buf_size,
                .bytes_spliced = r->bytes_spliced,
                .splice_pipes = r->pipes_made,
                .splice_pipes_lent = r->pipes_lent,
                .turns = r->turns,
                .wait_ns = r->wait_ns,
                .turns_waited = r->turns_waited,
                .cqes = r->cqes,
        };
        ret->sleeps = nvcsw > r->nvcsw_start ? nvcsw - r->nvcsw_start : 0;
        memcpy(ret->cqes_per_turn, r->cqes_per_turn, sizeof(ret->cqes_per_turn));
}
