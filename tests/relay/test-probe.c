/* tests/relay/test-probe.c: relay_new()'s io_uring feature check, against opcode probes built here (a kernel's own probe can't be made to lack an opcode). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "relay/probe.h"

#define ALL_FEATURES (IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG | IORING_FEAT_FAST_POLL)
#define LAST_OP 60

/* A kernel whose probe lists every opcode up to LAST_OP as supported. */
static struct io_uring_probe *probe_all(void)
{
        struct io_uring_probe *p = calloc(1, sizeof(*p) + (LAST_OP + 1) * sizeof(p->ops[0]));

        assert_non_null(p);
        p->last_op = LAST_OP;
        p->ops_len = LAST_OP + 1;
        for (unsigned i = 0; i <= LAST_OP; i++) {
                p->ops[i].op = (uint8_t)i;
                p->ops[i].flags = IO_URING_OP_SUPPORTED;
        }
        return p;
}

static void test_kernel_with_everything_is_accepted(void **state)
{
        struct io_uring_probe *p = probe_all();
        struct relay_features f = {};

        assert_int_equal(relay_features_check(ALL_FEATURES, p, &f), 0);
        assert_true(f.read_mshot);
        free(p);
}

static void test_missing_read_multishot_only_turns_it_off(void **state)
{
        struct io_uring_probe *p = probe_all();
        struct relay_features f = { .read_mshot = true };

        p->ops[RELAY_OP_READ_MULTISHOT].flags = 0;
        assert_int_equal(relay_features_check(ALL_FEATURES, p, &f), 0);
        assert_false(f.read_mshot);
        /* A kernel whose probe ends before the opcode (6.0 to 6.6) is the same. */
        p->last_op = RELAY_OP_READ_MULTISHOT - 1;
        f.read_mshot = true;
        assert_int_equal(relay_features_check(ALL_FEATURES, p, &f), 0);
        assert_false(f.read_mshot);
        free(p);
}

static void test_each_needed_opcode_is_required(void **state)
{
        const int needed[] = { IORING_OP_READ,     IORING_OP_WRITEV,       IORING_OP_SENDMSG,
                               IORING_OP_SEND,     IORING_OP_RECV,         IORING_OP_ACCEPT,
                               IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL, IORING_OP_SEND_ZC };

        for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
                struct io_uring_probe *p = probe_all();
                struct relay_features f = { .read_mshot = true };

                p->ops[needed[i]].flags = 0;
                assert_int_equal(relay_features_check(ALL_FEATURES, p, &f), -EOPNOTSUPP);
                assert_true(f.read_mshot); /* untouched on failure */
                free(p);
        }
}

static void test_a_kernel_before_multishot_recv_is_refused(void **state)
{
        struct io_uring_probe *p = probe_all();
        struct relay_features f;

        p->last_op = IORING_OP_SEND_ZC - 1; /* 5.19: buffer rings, no multishot recv */
        assert_int_equal(relay_features_check(ALL_FEATURES, p, &f), -EOPNOTSUPP);
        free(p);
}

static void test_each_needed_ring_feature_is_required(void **state)
{
        struct io_uring_probe *p = probe_all();
        struct relay_features f;

        assert_int_equal(relay_features_check(ALL_FEATURES & ~IORING_FEAT_NODROP, p, &f), -EOPNOTSUPP);
        assert_int_equal(relay_features_check(ALL_FEATURES & ~IORING_FEAT_EXT_ARG, p, &f), -EOPNOTSUPP);
        /* FAST_POLL only makes receives cheaper. */
        assert_int_equal(relay_features_check(ALL_FEATURES & ~IORING_FEAT_FAST_POLL, p, &f), 0);
        free(p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kernel_with_everything_is_accepted),
                cmocka_unit_test(test_missing_read_multishot_only_turns_it_off),
                cmocka_unit_test(test_each_needed_opcode_is_required),
                cmocka_unit_test(test_a_kernel_before_multishot_recv_is_refused),
                cmocka_unit_test(test_each_needed_ring_feature_is_required),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
