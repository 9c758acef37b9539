/* tests/control/test-socket.c: control_socket_bind() creates a socket file never wider than its final mode, whatever the umask, and leaves the umask alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "control/socket.h"
#include "util/macro.h"

static void bind_with_umask(mode_t mask, mode_t mode)
{
        char dir[] = "/tmp/vsockmux-socket-XXXXXX", path[64], cmd[96];
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        struct stat st;
        mode_t old;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/s", dir);
        old = umask(mask);
        assert_int_equal(control_socket_bind(fd, path, mode, (gid_t)-1, &st), 0);
        /* The process umask is untouched: other threads create files meanwhile. */
        assert_int_equal(umask(old), mask);
        assert_int_equal(st.st_mode & 07777, mode);
        assert_true(S_ISSOCK(st.st_mode));
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

static void test_umask_zero_gives_exactly_the_mode_and_stays_zero(void **state)
{
        bind_with_umask(0, 0600);
}

static void test_strict_umask_is_widened_back_to_the_mode(void **state)
{
        bind_with_umask(077, 0660);
}

static void test_relative_or_long_path_is_refused(void **state)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char longpath[200];

        assert_int_equal(control_socket_bind(fd, "rel.sock", 0600, (gid_t)-1, NULL), -EINVAL);
        memset(longpath, 'a', sizeof(longpath) - 1);
        longpath[0] = '/';
        longpath[sizeof(longpath) - 1] = '\0';
        assert_int_equal(control_socket_bind(fd, longpath, 0600, (gid_t)-1, NULL), -ENAMETOOLONG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_umask_zero_gives_exactly_the_mode_and_stays_zero),
                cmocka_unit_test(test_strict_umask_is_widened_back_to_the_mode),
                cmocka_unit_test(test_relative_or_long_path_is_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
