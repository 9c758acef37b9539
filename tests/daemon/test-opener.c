/* tests/daemon/test-opener.c: the opener thread opens with the caller's rights and gets the daemon's back after each open (needs root to take another uid's rights). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/opener.h"
#include "util/macro.h"

struct fixture {
        char dir[64];
        char secret[128];
        struct opener *opener;
};

static const gid_t nobody_groups[] = { 65534 };
static const struct opener_creds nobody = { .uid = 65534, .gid = 65534, .groups = nobody_groups, .n_groups = 1 };

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        int fd;

        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-opener-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(chmod(f->dir, 0755), 0);
        snprintf(f->secret, sizeof(f->secret), "%s/secret", f->dir);
        fd = open(f->secret, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "s", 1), 1);
        close(fd);
        assert_int_equal(opener_new(&f->opener), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];

        f->opener = opener_free(f->opener);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void test_other_uid_cannot_read_a_0600_root_file(void **state)
{
        struct fixture *f = *state;
        int fd = -7;

        assert_int_equal(opener_open(f->opener, &nobody, f->secret, ENDPOINT_SOURCE, &fd, NULL), -EACCES);
        assert_int_equal(fd, -7);
        assert_int_equal(opener_open(f->opener, &nobody, "/etc/shadow", ENDPOINT_SOURCE, &fd, NULL), -EACCES);
}

static void test_other_uid_cannot_append_or_create_where_it_may_not_write(void **state)
{
        struct fixture *f = *state;
        char created[160];
        int fd = -7;

        assert_int_equal(chmod(f->secret, 0644), 0);
        assert_int_equal(opener_open(f->opener, &nobody, f->secret, ENDPOINT_SINK, &fd, NULL), -EACCES);
        snprintf(created, sizeof(created), "%s/new", f->dir);
        assert_int_equal(opener_open(f->opener, &nobody, created, ENDPOINT_SINK, &fd, NULL), -EACCES);
        assert_int_equal(access(created, F_OK), -1);
}

static void test_created_file_belongs_to_the_caller(void **state)
{
        struct fixture *f = *state;
        char sub[128], created[160];
        _cleanup_close_ int fd = -1;
        struct stat st;

        snprintf(sub, sizeof(sub), "%s/nobody", f->dir);
        assert_int_equal(mkdir(sub, 0755), 0);
        assert_int_equal(chown(sub, 65534, 65534), 0);
        snprintf(created, sizeof(created), "%s/out", sub);
        assert_int_equal(opener_open(f->opener, &nobody, created, ENDPOINT_SINK, &fd, NULL), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_uid, 65534);
        assert_int_equal(st.st_gid, 65534);
}

/* A supplementary group the peer has counts; one it lacks does not. */
static void test_supplementary_groups_are_the_callers(void **state)
{
        struct fixture *f = *state;
        static const gid_t with_group[] = { 65534, 4242 };
        const struct opener_creds member = { .uid = 65534, .gid = 65534, .groups = with_group, .n_groups = 2 };
        _cleanup_close_ int fd = -1;

        assert_int_equal(chown(f->secret, 0, 4242), 0);
        assert_int_equal(chmod(f->secret, 0640), 0);
        assert_int_equal(opener_open(f->opener, &nobody, f->secret, ENDPOINT_SOURCE, &fd, NULL), -EACCES);
        assert_int_equal(opener_open(f->opener, &member, f->secret, ENDPOINT_SOURCE, &fd, NULL), 0);
}

/* Connecting to a Unix socket needs write permission on it: checked as the caller too. */
static void test_other_uid_cannot_connect_to_a_0600_root_socket(void **state)
{
        struct fixture *f = *state;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), fd = -1;
        int refused = -7;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", f->dir);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 4), 0);
        assert_int_equal(chmod(sa.sun_path, 0600), 0);
        assert_int_equal(opener_open(f->opener, &nobody, sa.sun_path, ENDPOINT_SINK, &refused, NULL), -EACCES);
        assert_int_equal(refused, -7);
        assert_int_equal(opener_open(f->opener, NULL, sa.sun_path, ENDPOINT_SINK, &fd, NULL), 0);
}

/* After an open as someone else, root's rights are back on the thread and this thread never lost them. */
static void test_daemon_rights_are_restored(void **state)
{
        struct fixture *f = *state;
        _cleanup_close_ int a = -1, b = -1;
        int fd = -1;

        assert_int_equal(opener_open(f->opener, &nobody, f->secret, ENDPOINT_SOURCE, &fd, NULL), -EACCES);
        assert_int_equal(opener_open(f->opener, NULL, f->secret, ENDPOINT_SOURCE, &a, NULL), 0);
        assert_int_equal(opener_open(f->opener, &(struct opener_creds){ .uid = 0, .gid = 0 }, f->secret,
                                     ENDPOINT_SOURCE, &b, NULL),
                         0);
        assert_int_equal(access(f->secret, R_OK), 0);
        assert_int_equal(geteuid(), 0);
}

/* The daemon's own rights, named: opened as the daemon (without a switch), so what it creates is
 * root's, and a 0600 root file opens. */
static void test_the_daemons_own_rights_named_open_as_the_daemon(void **state)
{
        struct fixture *f = *state;
        gid_t groups[64];
        int n = getgroups(64, groups);
        char created[160];
        _cleanup_close_ int fd = -1, s = -1;
        struct stat st;

        assert_true(n >= 0);
        const struct opener_creds own = { .uid = geteuid(), .gid = getegid(), .groups = groups, .n_groups = (size_t)n };
        snprintf(created, sizeof(created), "%s/own", f->dir);
        assert_int_equal(opener_open(f->opener, &own, created, ENDPOINT_SINK, &fd, NULL), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_uid, geteuid());
        assert_int_equal(st.st_gid, getegid());
        assert_int_equal(opener_open(f->opener, &own, f->secret, ENDPOINT_SOURCE, &s, NULL), 0);
}

/* Root's uid with another gid is not the daemon's rights: the file it creates gets that gid, and
 * the next one opened with the daemon's rights is the daemon's again. */
static void test_root_with_another_gid_creates_with_that_gid(void **state)
{
        struct fixture *f = *state;
        const struct opener_creds other_gid = { .uid = 0, .gid = 4242 };
        char created[160], after[160];
        _cleanup_close_ int fd = -1, fd2 = -1;
        struct stat st;

        snprintf(created, sizeof(created), "%s/gid", f->dir);
        assert_int_equal(opener_open(f->opener, &other_gid, created, ENDPOINT_SINK, &fd, NULL), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(st.st_gid, 4242);
        snprintf(after, sizeof(after), "%s/after", f->dir);
        assert_int_equal(opener_open(f->opener, NULL, after, ENDPOINT_SINK, &fd2, NULL), 0);
        assert_int_equal(fstat(fd2, &st), 0);
        assert_int_equal(st.st_gid, getegid());
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_other_uid_cannot_read_a_0600_root_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_uid_cannot_append_or_create_where_it_may_not_write, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_created_file_belongs_to_the_caller, setup, teardown),
                cmocka_unit_test_setup_teardown(test_supplementary_groups_are_the_callers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_uid_cannot_connect_to_a_0600_root_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_rights_are_restored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_the_daemons_own_rights_named_open_as_the_daemon, setup, teardown),
                cmocka_unit_test_setup_teardown(test_root_with_another_gid_creates_with_that_gid, setup, teardown),
        };

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP: taking another uid's file-system rights needs root\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
