/* The pid index of a VM's processes: the newest of a reused pid, every node of a pid and only
 * those, deletion, and growth past the inline buckets with nothing lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "daemon/process-index.h"

#define N_NODES 5000u

static unsigned count_pid(const struct pid_index *x, uint32_t pid)
{
        unsigned n = 0;

        for (struct pid_node *e = pid_index_first(x, pid); e; e = pid_index_next(e, pid)) {
                assert_int_equal(e->pid, pid);
                n++;
        }
        return n;
}

static void test_reused_pid_finds_the_newest_and_walks_all(void **state)
{
        struct pid_node a, b, c, other;
        struct pid_index x;

        pid_index_init(&x);
        pid_index_add(&x, &b, 7, 2);
        pid_index_add(&x, &other, 8, 3);
        pid_index_add(&x, &c, 7, 5);
        pid_index_add(&x, &a, 7, 1);
        assert_ptr_equal(pid_index_newest(&x, 7), &c);
        assert_ptr_equal(pid_index_newest(&x, 8), &other);
        assert_null(pid_index_newest(&x, 9));
        assert_int_equal(count_pid(&x, 7), 3);
        pid_index_del(&x, &c);
        assert_ptr_equal(pid_index_newest(&x, 7), &b);
        assert_int_equal(count_pid(&x, 7), 2);
        pid_index_del(&x, &a);
        pid_index_del(&x, &b);
        assert_null(pid_index_newest(&x, 7));
        assert_ptr_equal(pid_index_newest(&x, 8), &other);
        assert_int_equal(x.n, 1);
        pid_index_done(&x);
}

static void test_growth_keeps_every_node_and_deletion_during_a_walk_is_safe(void **state)
{
        struct pid_node *nodes = calloc(N_NODES, sizeof(*nodes));
        struct pid_index x;

        assert_non_null(nodes);
        pid_index_init(&x);
        /* Sequential pids, and every tenth reused once more. */
        for (unsigned i = 0; i < N_NODES; i++)
                pid_index_add(&x, &nodes[i], 1000 + (i % 10 == 9 ? i - 9 : i), i + 1);
        assert_true(x.n_buckets > PID_INDEX_INLINE_BUCKETS);
        for (unsigned i = 0; i < N_NODES; i++) {
                uint32_t pid = 1000 + (i % 10 == 9 ? i - 9 : i);

                assert_non_null(pid_index_newest(&x, pid));
                assert_int_equal(count_pid(&x, pid), i % 10 == 0 || i % 10 == 9 ? 2 : 1);
        }
        assert_ptr_equal(pid_index_newest(&x, 1000), &nodes[9]);
        /* Delete every node of pid 1010 while walking them (the forget loop's way). */
        for (struct pid_node *e = pid_index_first(&x, 1010), *next; e; e = next) {
                next = pid_index_next(e, 1010);
                pid_index_del(&x, e);
        }
        assert_null(pid_index_newest(&x, 1010));
        assert_int_equal(x.n, N_NODES - 2);
        pid_index_done(&x);
        free(nodes);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reused_pid_finds_the_newest_and_walks_all),
                cmocka_unit_test(test_growth_keeps_every_node_and_deletion_during_a_walk_is_safe),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
