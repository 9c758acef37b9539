/* tests/daemon/test-paths.c: paths stay inside the directory they were given. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/paths.h"

static void test_paths_inside_root_are_accepted_and_escapes_refused(void **state)
{
        char tmpl[] = "/tmp/vsockmux-paths-XXXXXX", root[PATH_MAX], p[PATH_MAX + 64], cmd[PATH_MAX + 16];

        assert_non_null(mkdtemp(tmpl));
        assert_non_null(realpath(tmpl, root));
        snprintf(p, sizeof(p), "%s/vms", root);
        assert_int_equal(mkdir(p, 0700), 0);

        snprintf(p, sizeof(p), "%s/vm1.vsock", root);
        assert_int_equal(paths_check_confined(root, p), 0);
        snprintf(p, sizeof(p), "%s/vms/vm2.vsock", root);
        assert_int_equal(paths_check_confined(root, p), 0);
        /* Textual traversal is refused outright, even when it would land inside. */
        snprintf(p, sizeof(p), "%s/vms/../vm1.vsock", root);
        assert_int_equal(paths_check_confined(root, p), -EINVAL);
        snprintf(p, sizeof(p), "%s/./vm1.vsock", root);
        assert_int_equal(paths_check_confined(root, p), -EINVAL);
        assert_int_equal(paths_check_confined(root, "relative.vsock"), -EINVAL);
        /* Outside, or a sibling whose name merely starts like the root. */
        assert_int_equal(paths_check_confined(root, "/etc/vm.vsock"), -EPERM);
        snprintf(p, sizeof(p), "%sx/vm.vsock", root);
        assert_true(paths_check_confined(root, p) < 0);
        /* A directory symlink pointing out resolves outside. */
        snprintf(p, sizeof(p), "%s/out", root);
        assert_int_equal(symlink("/etc", p), 0);
        snprintf(p, sizeof(p), "%s/out/vm.vsock", root);
        assert_int_equal(paths_check_confined(root, p), -EPERM);
        /* The entry itself may not be a symlink. */
        snprintf(p, sizeof(p), "%s/link.vsock", root);
        assert_int_equal(symlink("/etc/passwd", p), 0);
        assert_int_equal(paths_check_confined(root, p), -ELOOP);
        /* A missing directory is reported as such. */
        snprintf(p, sizeof(p), "%s/nope/vm.vsock", root);
        assert_int_equal(paths_check_confined(root, p), -ENOENT);

        snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
        assert_int_equal(system(cmd), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_paths_inside_root_are_accepted_and_escapes_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
