/* tests/daemon/test-paths.c: paths stay inside the directory they were given. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

static int bind_at(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_true(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

/* The VM's directory is swapped for a symlink pointing elsewhere after it was opened: binds and
 * unlinks through the held directory still land in the original one, never in the target. */
static void test_swapped_directory_symlink_does_not_redirect(void **state)
{
        char tmpl[] = "/tmp/vsockmux-paths-XXXXXX", root[PATH_MAX], vms[PATH_MAX + 8], moved[PATH_MAX + 16],
             outside[PATH_MAX + 16], p[PATH_MAX + 64], via[108], cmd[PATH_MAX + 16];
        struct stat st;
        int dirfd = -1, fd;

        assert_non_null(mkdtemp(tmpl));
        assert_non_null(realpath(tmpl, root));
        snprintf(vms, sizeof(vms), "%s/vms", root);
        snprintf(moved, sizeof(moved), "%s/vms.moved", root);
        snprintf(outside, sizeof(outside), "%s/outside", root);
        assert_int_equal(mkdir(vms, 0700), 0);
        assert_int_equal(mkdir(outside, 0700), 0);
        snprintf(p, sizeof(p), "%s/vm.vsock", vms);
        /* Confined to vms: "outside" is a sibling, out of bounds. */
        assert_int_equal(paths_open_dir(vms, p, &dirfd, via, sizeof(via)), 0);
        assert_true(strncmp(via, "/proc/self/fd/", 14) == 0);

        assert_int_equal(rename(vms, moved), 0);
        assert_int_equal(symlink(outside, vms), 0);
        snprintf(p, sizeof(p), "%s_1", via);
        fd = bind_at(p);
        snprintf(p, sizeof(p), "%s/vm.vsock_1", moved);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        snprintf(p, sizeof(p), "%s/vm.vsock_1", outside);
        assert_int_equal(lstat(p, &st), -1);
        /* A decoy where the symlink points survives an unlink through the held directory. */
        assert_int_equal(close(open(p, O_WRONLY | O_CREAT, 0600)), 0);
        snprintf(p, sizeof(p), "%s_1", via);
        assert_int_equal(unlink(p), 0);
        snprintf(p, sizeof(p), "%s/vm.vsock_1", outside);
        assert_int_equal(lstat(p, &st), 0);
        snprintf(p, sizeof(p), "%s/vm.vsock_1", moved);
        assert_int_equal(lstat(p, &st), -1);
        close(fd);
        close(dirfd);

        /* Opened afresh, the swapped path resolves outside the root and is refused. */
        snprintf(p, sizeof(p), "%s/vm.vsock", vms);
        assert_int_equal(paths_open_dir(moved, p, &dirfd, via, sizeof(via)), -EPERM);
        /* A directory that is itself the symlink is refused even without a root. */
        assert_int_equal(paths_open_dir(NULL, p, &dirfd, via, sizeof(via)), -ENOTDIR);
        assert_int_equal(paths_open_dir(root, "/tmp/../x.vsock", &dirfd, via, sizeof(via)), -EINVAL);

        snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
        assert_int_equal(system(cmd), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_paths_inside_root_are_accepted_and_escapes_refused),
                cmocka_unit_test(test_swapped_directory_symlink_does_not_redirect),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
