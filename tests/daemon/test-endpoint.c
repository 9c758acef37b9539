/* tests/daemon/test-endpoint.c: opening host endpoints: files, fifos, sockets, and the paths that are refused. */
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

#include "daemon/endpoint.h"
#include "util/macro.h"

struct dir {
        char path[64];
};

static int setup(void **state)
{
        struct dir *d = calloc(1, sizeof(*d));

        snprintf(d->path, sizeof(d->path), "/tmp/vsockmux-endpoint-XXXXXX");
        assert_non_null(mkdtemp(d->path));
        *state = d;
        return 0;
}

static int teardown(void **state)
{
        struct dir *d = *state;
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->path);
        assert_int_equal(system(cmd), 0);
        free(d);
        return 0;
}

static void test_missing_sink_becomes_appended_file(void **state)
{
        struct dir *d = *state;
        char path[128], buf[16] = "";
        _cleanup_close_ int fd = -1, rfd = -1;
        enum endpoint_kind kind;

        snprintf(path, sizeof(path), "%s/out.log", d->path);
        assert_int_equal(endpoint_open(path, ENDPOINT_SINK, &fd, &kind), 0);
        assert_int_equal(kind, ENDPOINT_FILE);
        assert_int_equal(write(fd, "abc", 3), 3);
        fd = safe_close(fd);
        /* Reopening appends instead of truncating. */
        assert_int_equal(endpoint_open(path, ENDPOINT_SINK, &fd, &kind), 0);
        assert_int_equal(write(fd, "def", 3), 3);
        rfd = open(path, O_RDONLY);
        assert_int_equal(read(rfd, buf, sizeof(buf)), 6);
        assert_string_equal(buf, "abcdef");
}

/* containerd's rule: no reader yet is not an error, and output waits in the fifo for one. */
static void test_fifo_without_reader_is_opened_and_holds_output(void **state)
{
        struct dir *d = *state;
        char path[128], buf[8] = "";
        _cleanup_close_ int fd = -1, rfd = -1;
        enum endpoint_kind kind;

        snprintf(path, sizeof(path), "%s/fifo", d->path);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(endpoint_open(path, ENDPOINT_SINK, &fd, &kind), 0);
        assert_int_equal(kind, ENDPOINT_FIFO);
        assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
        assert_int_equal(write(fd, "early", 5), 5);
        rfd = open(path, O_RDONLY | O_NONBLOCK);
        assert_true(rfd >= 0);
        assert_int_equal(read(rfd, buf, sizeof(buf)), 5);
        assert_memory_equal(buf, "early", 5);
        /* The reader goes away: writing neither fails nor loses what the next reader gets. */
        rfd = safe_close(rfd);
        assert_int_equal(write(fd, "later", 5), 5);
        rfd = open(path, O_RDONLY | O_NONBLOCK);
        assert_int_equal(read(rfd, buf, sizeof(buf)), 5);
        assert_memory_equal(buf, "later", 5);
}

static void test_character_device_is_an_endpoint(void **state)
{
        _cleanup_close_ int out = -1, in = -1;
        enum endpoint_kind kind;
        char buf[4];

        assert_int_equal(endpoint_open("/dev/null", ENDPOINT_SINK, &out, &kind), 0);
        assert_int_equal(kind, ENDPOINT_DEVICE);
        assert_int_equal(write(out, "x", 1), 1);
        assert_int_equal(endpoint_open("/dev/null", ENDPOINT_SOURCE, &in, &kind), 0);
        assert_int_equal(read(in, buf, sizeof(buf)), 0);
}

static void test_fifo_with_reader_carries_bytes(void **state)
{
        struct dir *d = *state;
        char path[128], buf[8] = "";
        _cleanup_close_ int rfd = -1, fd = -1;
        enum endpoint_kind kind;

        snprintf(path, sizeof(path), "%s/fifo", d->path);
        assert_int_equal(mkfifo(path, 0600), 0);
        rfd = open(path, O_RDONLY | O_NONBLOCK);
        assert_true(rfd >= 0);
        assert_int_equal(endpoint_open(path, ENDPOINT_SINK, &fd, &kind), 0);
        assert_int_equal(kind, ENDPOINT_FIFO);
        assert_int_equal(write(fd, "hi", 2), 2);
        assert_int_equal(read(rfd, buf, sizeof(buf)), 2);
        assert_memory_equal(buf, "hi", 2);
}

static void test_socket_endpoint_is_connected(void **state)
{
        struct dir *d = *state;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int lfd = -1, fd = -1, afd = -1;
        enum endpoint_kind kind;
        char buf[8] = "";

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", d->path);
        lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 1), 0);
        assert_int_equal(endpoint_open(sa.sun_path, ENDPOINT_SINK, &fd, &kind), 0);
        assert_int_equal(kind, ENDPOINT_SOCKET);
        afd = accept(lfd, NULL, NULL);
        assert_true(afd >= 0);
        assert_int_equal(write(fd, "ok", 2), 2);
        assert_int_equal(read(afd, buf, sizeof(buf)), 2);
}

static void test_dead_socket_is_refused(void **state)
{
        struct dir *d = *state;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int lfd, fd = -1;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/dead", d->path);
        lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(lfd);
        assert_int_equal(endpoint_open(sa.sun_path, ENDPOINT_SINK, &fd, NULL), -ECONNREFUSED);
}

static void test_symlink_is_refused(void **state)
{
        struct dir *d = *state;
        char path[128];
        int fd = -1;

        snprintf(path, sizeof(path), "%s/link", d->path);
        assert_int_equal(symlink("/etc/passwd", path), 0);
        assert_int_equal(endpoint_open(path, ENDPOINT_SINK, &fd, NULL), -ELOOP);
        assert_int_equal(endpoint_open(path, ENDPOINT_SOURCE, &fd, NULL), -ELOOP);
}

/* A sink is created without a look first: what is there already is still judged, and a symlink
 * to nothing is neither followed nor its target created. */
static void test_sink_that_exists_is_judged_before_it_is_opened(void **state)
{
        struct dir *d = *state;
        char path[128], target[128];
        int fd = -1;

        snprintf(path, sizeof(path), "%s/dangling", d->path);
        snprintf(target, sizeof(target), "%s/target", d->path);
        assert_int_equal(symlink(target, path), 0);
        assert_int_equal(endpoint_open(path, ENDPOINT_SINK, &fd, NULL), -ELOOP);
        assert_int_equal(access(target, F_OK), -1);
        assert_int_equal(endpoint_open(d->path, ENDPOINT_SINK, &fd, NULL), -EINVAL);
        assert_int_equal(fd, -1);
}

static void test_relative_path_and_missing_source_are_refused(void **state)
{
        struct dir *d = *state;
        char path[128];
        int fd = -1;

        assert_int_equal(endpoint_open("out.log", ENDPOINT_SINK, &fd, NULL), -EINVAL);
        snprintf(path, sizeof(path), "%s/nope", d->path);
        assert_int_equal(endpoint_open(path, ENDPOINT_SOURCE, &fd, NULL), -ENOENT);
        /* A directory is no endpoint. */
        assert_int_equal(endpoint_open(d->path, ENDPOINT_SOURCE, &fd, NULL), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_missing_sink_becomes_appended_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fifo_without_reader_is_opened_and_holds_output, setup, teardown),
                cmocka_unit_test(test_character_device_is_an_endpoint),
                cmocka_unit_test_setup_teardown(test_fifo_with_reader_carries_bytes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_endpoint_is_connected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dead_socket_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlink_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sink_that_exists_is_judged_before_it_is_opened, setup, teardown),
                cmocka_unit_test_setup_teardown(test_relative_path_and_missing_source_are_refused, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
