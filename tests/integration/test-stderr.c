/* Which exec gets a stderr stream: one whose stderr has somewhere to go (an endpoint, a log, attach
 * clients of a process kept for them, --keep-stderr), and no other, so an idle process holds no
 * listener nobody will read (issue 18, B7). With each guest: ours, with resume, hcsshim's. */
#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define BRIDGE_PORT 0x40000000u
#define MAX_PORT_FILES 16

/* Writes a line to each output, then runs until the test removes its file. */
static const char *script(struct integ *t)
{
        static char buf[512];
        const char *run = integ_path(t, "run");

        integ_touch(run);
        snprintf(buf, sizeof(buf), "echo out; echo err >&2; while [ -e %s ]; do sleep 0.05; done", run);
        return buf;
}

/* exec --detach [--stdout PATH] [extra] -- sh -c SCRIPT; the pid. */
static long exec_one(struct integ *t, const char *stdout_path, const char *extra)
{
        char *args[16];
        struct integ_result res;
        size_t n = 0;

        args[n++] = (char *)"exec";
        args[n++] = (char *)"demo";
        args[n++] = (char *)"--detach";
        if (stdout_path) {
                args[n++] = (char *)"--stdout";
                args[n++] = (char *)stdout_path;
        }
        if (extra)
                args[n++] = (char *)extra;
        args[n++] = (char *)"--";
        args[n++] = (char *)"sh";
        args[n++] = (char *)"-c";
        args[n++] = (char *)script(t);
        args[n] = NULL;
        integ_cliv(t, &res, NULL, args);
        return integ_detached_pid(t, &res);
}

static uint32_t port_of(struct integ *t, long pid, const char *stream)
{
        struct json_object *all, *p = integ_ps_find(t, "demo", pid, &all);
        uint32_t port = (uint32_t)integ_json_int(integ_json_get(p, "ports"), stream);

        json_object_put(all);
        return port;
}

/* The stdio ports that have a listener's file under the hvsock root (demo.vsock_PORT). */
static size_t port_files(struct integ *t, uint32_t *ports, size_t max)
{
        DIR *d = opendir(t->dir);
        struct dirent *e;
        size_t n = 0;

        assert_non_null(d);
        while ((e = readdir(d))) {
                unsigned long port;
                char *end;

                if (strncmp(e->d_name, "demo.vsock_", 11) != 0)
                        continue;
                port = strtoul(e->d_name + 11, &end, 10);
                assert_true(*end == '\0');
                if (port == BRIDGE_PORT)
                        continue;
                assert_true(n < max);
                ports[n++] = (uint32_t)port;
        }
        closedir(d);
        return n;
}

static void stop_and_wait(struct integ *t, long pid)
{
        struct integ_result res;
        char pid_s[32];

        unlink(integ_path(t, "run"));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

/* Reads the attach socket until a packet of stream byte `stream` holding `text` came. */
static void attach_expect(struct integ *t, long pid, int stream, const char *text)
{
        char path[INTEG_PATH_MAX], buf[9000];
        int fd;

        integ_attach_path(t, "demo", pid, path, sizeof(path));
        fd = integ_connect_unix(path, SOCK_SEQPACKET);
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (poll(&pfd, 1, INTEG_WAIT_MS) != 1)
                        fail_msg("no %s on stream %d from the attach socket", text, stream);
                n = recv(fd, buf, sizeof(buf), 0);
                if (n <= 0)
                        fail_msg("the attach socket ended before %s on stream %d", text, stream);
                if (buf[0] == stream && (size_t)n == 1 + strlen(text) && memcmp(buf + 1, text, strlen(text)) == 0)
                        break;
        }
        close(fd);
}

/* --stdout only: the exec names no stderr port (the guest gives the process /dev/null), no
 * listener or port file exists for one, and the process runs and exits as before; attach works. */
static void test_stdout_endpoint_only_has_no_stderr(void **state)
{
        struct integ *t = *state;
        uint32_t files[MAX_PORT_FILES];
        char out[INTEG_PATH_MAX], path[INTEG_PATH_MAX], *got;
        size_t n_files, len;
        long pid;
        int fd;

        snprintf(out, sizeof(out), "%s", integ_path(t, "a.out"));
        integ_vm_with_sim(t, "demo");
        pid = exec_one(t, out, NULL);
        assert_true(integ_wait_file_contains(out, "out\n", INTEG_WAIT_MS));
        assert_int_equal(port_of(t, pid, "stderr"), 0);
        assert_int_not_equal(port_of(t, pid, "stdout"), 0);
        n_files = port_files(t, files, MAX_PORT_FILES);
        /* Every port file is the stdout's (kept with the resume extension), none a stderr's. */
        assert_true(n_files <= 1);
        if (n_files)
                assert_int_equal(files[0], port_of(t, pid, "stdout"));
        if (t->cfg->resume)
                assert_int_equal(n_files, 1);
        /* Its attach state comes with the first Attach; a client then sees the exit as the end. */
        integ_attach_path(t, "demo", pid, path, sizeof(path));
        fd = integ_connect_unix(path, SOCK_SEQPACKET);
        stop_and_wait(t, pid);
        {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                char buf[64];

                assert_int_equal(poll(&pfd, 1, INTEG_WAIT_MS), 1);
                assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0);
        }
        close(fd);
        got = integ_read_file(out, &len);
        assert_string_equal(got, "out\n"); /* stderr went nowhere, not into stdout */
        free(got);
}

/* --keep-stderr with --stdout, an exec with no endpoint at all, -i (attach clients feed stdin) and
 * a log: stderr is there, and a later attach gets its backlog (conmon's stream byte 3). */
static void test_stderr_kept_where_someone_reads_it(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], log_opt[INTEG_PATH_MAX + 16];
        uint32_t files[MAX_PORT_FILES];
        long kept, bare, inter, logged;
        size_t n_files;

        snprintf(out, sizeof(out), "%s", integ_path(t, "b.out"));
        snprintf(log_opt, sizeof(log_opt), "--log=k8s-file:%s", integ_path(t, "c.log"));
        integ_vm_with_sim(t, "demo");
        kept = exec_one(t, out, "--keep-stderr");
        bare = exec_one(t, NULL, NULL);
        inter = exec_one(t, out, "-i");
        logged = exec_one(t, NULL, log_opt);
        assert_int_not_equal(port_of(t, kept, "stderr"), 0);
        assert_int_not_equal(port_of(t, bare, "stderr"), 0);
        assert_int_not_equal(port_of(t, inter, "stderr"), 0);
        assert_int_not_equal(port_of(t, logged, "stderr"), 0);
        attach_expect(t, kept, 3, "err\n");
        attach_expect(t, bare, 3, "err\n");
        attach_expect(t, bare, 2, "out\n");
        attach_expect(t, inter, 3, "err\n");
        assert_true(integ_wait_file_contains(integ_path(t, "c.log"), " stderr F err\n", INTEG_WAIT_MS));
        /* With the resume extension every stream keeps its listener: 2 + 2 + 3 (-i's stdin) + 2. */
        n_files = port_files(t, files, MAX_PORT_FILES);
        if (t->cfg->resume)
                assert_int_equal(n_files, 9);
        stop_and_wait(t, kept);
        stop_and_wait(t, bare);
        stop_and_wait(t, inter);
        stop_and_wait(t, logged);
}

/* What does not go together is refused by name, before anything runs. */
static void test_keep_stderr_refused_where_it_means_nothing(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stderr", integ_path(t, "e"), "--keep-stderr", "--",
                  "true", NULL);
        assert_int_not_equal(res.code, 0);
        integ_assert_contains(res.err, "--keep-stderr");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "-t", "--keep-stderr", "--", "true", NULL);
        assert_int_not_equal(res.code, 0);
        integ_assert_contains(res.err, "--keep-stderr");
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stdout_endpoint_only_has_no_stderr),
                cmocka_unit_test(test_stderr_kept_where_someone_reads_it),
                cmocka_unit_test(test_keep_stderr_refused_where_it_means_nothing),
        };

        return integ_run("integration-stderr", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
