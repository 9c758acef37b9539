/* tests/util/test-size.c: size_parse on what operators write and on what must be refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/size.h"

static uint64_t parsed(const char *s)
{
        uint64_t v = 0;

        assert_int_equal(size_parse(s, &v), 0);
        return v;
}

static void test_suffixes_are_powers_of_1024(void **state)
{
        (void)state;
        assert_int_equal(parsed("0"), 0);
        assert_int_equal(parsed("4096"), 4096);
        assert_int_equal(parsed("64K"), 64 << 10);
        assert_int_equal(parsed("64k"), 64 << 10);
        assert_int_equal(parsed("16M"), 16 << 20);
        assert_int_equal(parsed("3G"), UINT64_C(3) << 30);
        assert_int_equal(parsed("18446744073709551615"), UINT64_MAX);
}

static void test_malformed_is_refused_and_leaves_the_result(void **state)
{
        static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "K", "1KB", "1T", "1.5M", "0x10", "1K1" };
        uint64_t v = 7;

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(size_parse(bad[i], &v), -EINVAL);
                assert_int_equal(v, 7);
        }
        assert_int_equal(size_parse(NULL, &v), -EINVAL);
}

/* A suffix that would shift bits out is refused, never wrapped: 2^54 K is 2^64. */
static void test_overflow_is_refused_not_wrapped(void **state)
{
        uint64_t v = 7;

        (void)state;
        assert_int_equal(size_parse("18446744073709551616", &v), -ERANGE);
        assert_int_equal(size_parse("18014398509481984K", &v), -ERANGE);
        assert_int_equal(size_parse("18014398509481985k", &v), -ERANGE);
        assert_int_equal(size_parse("17179869184G", &v), -ERANGE);
        assert_int_equal(v, 7);
        assert_int_equal(parsed("18014398509481983K"), UINT64_C(18014398509481983) << 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_suffixes_are_powers_of_1024),
                cmocka_unit_test(test_malformed_is_refused_and_leaves_the_result),
                cmocka_unit_test(test_overflow_is_refused_not_wrapped),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
