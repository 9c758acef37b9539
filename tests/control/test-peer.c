/* tests/control/test-peer.c: who may use the control socket (the pure policy behind SO_PEERCRED). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "control/socket.h"

#define OWNER 1000
#define GROUP 2000

static bool allowed(uid_t uid, gid_t gid, const gid_t *groups, size_t n, gid_t group)
{
        struct ucred peer = { .pid = 1, .uid = uid, .gid = gid };

        return control_peer_allowed(&peer, groups, n, OWNER, group);
}

static void test_root_and_owner_are_always_allowed(void **state)
{
        assert_true(allowed(0, 0, NULL, 0, (gid_t)-1));
        assert_true(allowed(OWNER, 5, NULL, 0, (gid_t)-1));
        assert_true(allowed(OWNER, 5, NULL, 0, GROUP));
}

static void test_other_users_are_refused_without_a_group(void **state)
{
        static const gid_t groups[] = { GROUP };

        assert_false(allowed(OWNER + 1, GROUP, groups, 1, (gid_t)-1));
        assert_false(allowed(65534, 65534, NULL, 0, (gid_t)-1));
}

static void test_group_members_are_allowed_by_gid_or_supplementary_groups(void **state)
{
        static const gid_t groups[] = { 7, GROUP, 9 };
        static const gid_t others[] = { 7, 9 };

        assert_true(allowed(OWNER + 1, GROUP, NULL, 0, GROUP));
        assert_true(allowed(OWNER + 1, 5, groups, 3, GROUP));
        assert_false(allowed(OWNER + 1, 5, others, 2, GROUP));
        assert_false(allowed(OWNER + 1, 5, NULL, 0, GROUP));
}

static void test_read_group_members_get_read_access_only(void **state)
{
        static const gid_t readers[] = { 7, 3000 };
        struct ucred member = { .pid = 1, .uid = OWNER + 1, .gid = 5 };
        struct ucred root = { .pid = 1, .uid = 0, .gid = 0 };

        assert_int_equal(control_peer_access(&member, readers, 2, OWNER, GROUP, 3000), CONTROL_ACCESS_READ);
        assert_int_equal(control_peer_access(&member, readers, 2, OWNER, 3000, 3000), CONTROL_ACCESS_FULL);
        assert_int_equal(control_peer_access(&member, readers, 2, OWNER, GROUP, (gid_t)-1), CONTROL_ACCESS_NONE);
        assert_int_equal(control_peer_access(&member, NULL, 0, OWNER, GROUP, 3000), CONTROL_ACCESS_NONE);
        assert_int_equal(control_peer_access(&root, NULL, 0, OWNER, (gid_t)-1, 3000), CONTROL_ACCESS_FULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_root_and_owner_are_always_allowed),
                cmocka_unit_test(test_other_users_are_refused_without_a_group),
                cmocka_unit_test(test_group_members_are_allowed_by_gid_or_supplementary_groups),
                cmocka_unit_test(test_read_group_members_get_read_access_only),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
