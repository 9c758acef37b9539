/* Drives a real vsockmux-sim over hybrid vsock with a tiny blocking host built on bridge/codec and bridge/msg. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge/codec.h"
#include "bridge/msg.h"
#include "util/macro.h"

#define GUID_A "0123abcd-4567-89ef-abcd-0123456789ab"
#define WAIT_MS (120 * 1000) /* generous: ASan on a loaded 2-core machine */
#define PORT_STDIN 0x40000001u
#define PORT_STDOUT 0x40000002u

static char sim_path[4096];

struct host {
        char dir[64];
        char base[80];
        int bridge_listener;
        int bridge;
        pid_t sim;
        uint64_t next_id;
};

static int host_listen(struct host *h, uint32_t port)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", h->base, port);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 16), 0);
        return fd;
}

static int host_accept(int listener)
{
        struct pollfd p = { .fd = listener, .events = POLLIN };
        int fd;

        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        assert_true(fd >= 0);
        return fd;
}

static void read_exact(int fd, void *buf, size_t len)
{
        uint8_t *p = buf;

        while (len > 0) {
                struct pollfd pf = { .fd = fd, .events = POLLIN };
                ssize_t n;

                assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
                n = read(fd, p, len);
                if (n <= 0)
                        fail_msg("short read: %s", n == 0 ? "EOF" : strerror(errno));
                p += n;
                len -= (size_t)n;
        }
}

/* Everything until EOF, NUL-terminated. */
static size_t read_to_eof(int fd, char *buf, size_t cap)
{
        size_t have = 0;

        for (;;) {
                struct pollfd pf = { .fd = fd, .events = POLLIN };
                ssize_t n;

                assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
                n = read(fd, buf + have, cap - 1 - have);
                assert_true(n >= 0);
                if (n == 0)
                        break;
                have += (size_t)n;
                assert_true(have < cap - 1);
        }
        buf[have] = '\0';
        return have;
}

static void write_all(int fd, const void *buf, size_t len)
{
        assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void put_le64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 7; i >= 0; i--)
                v = (v << 8) | p[i];
        return v;
}

static uint64_t host_send(struct host *h, const struct bridge_request *req)
{
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t id = h->next_id++;
        size_t len;

        assert_int_equal(bridge_request_frame(req, id, &buf, &len), 0);
        write_all(h->bridge, buf, len);
        return id;
}

/* Reads one frame; returns the header and a malloc'd payload. */
static char *host_read_frame(struct host *h, struct bridge_header *ret_header, size_t *ret_len)
{
        uint8_t raw[BRIDGE_HEADER_SIZE];
        char *payload;

        read_exact(h->bridge, raw, sizeof(raw));
        bridge_header_decode(raw, ret_header);
        assert_int_equal(bridge_header_check(ret_header, NULL), 0);
        *ret_len = ret_header->size - BRIDGE_HEADER_SIZE;
        payload = malloc(*ret_len + 1);
        assert_non_null(payload);
        read_exact(h->bridge, payload, *ret_len);
        return payload;
}

static void host_response(struct host *h, uint32_t req_type, uint64_t id, struct bridge_response *ret)
{
        struct bridge_header hdr;
        _cleanup_free_ char *payload = NULL;
        const char *reason = NULL;
        size_t len;

        payload = host_read_frame(h, &hdr, &len);
        assert_int_equal(hdr.type, bridge_type_response_for(req_type));
        assert_int_equal(hdr.id, id);
        if (bridge_response_decode(req_type, payload, len, ret, &reason) != 0)
                fail_msg("bad response: %s", reason);
}

static void host_negotiate(struct host *h, bool offer_resume, bool *ret_resume)
{
        struct bridge_request req = { .type = BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                      .negotiate = { .min_version = 4, .max_version = 4, .stdio_resume = offer_resume } };
        struct bridge_response resp = {};
        uint64_t id = host_send(h, &req);

        host_response(h, req.type, id, &resp);
        assert_int_equal(resp.result, 0);
        assert_int_equal(resp.negotiate.version, 4);
        assert_string_equal(resp.negotiate.runtime_os_type, "linux");
        if (ret_resume)
                *ret_resume = resp.negotiate.stdio_resume;
        bridge_response_done(&resp);
}

static int32_t host_wait(struct host *h, uint32_t pid, uint32_t *ret_code)
{
        struct bridge_request req = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS, .container_id = "",
                                      .wait = { .pid = pid, .timeout_ms = BRIDGE_WAIT_INFINITE } };
        struct bridge_response resp = {};
        uint64_t id = host_send(h, &req);
        int32_t result;

        host_response(h, req.type, id, &resp);
        result = resp.result;
        if (ret_code)
                *ret_code = resp.wait.exit_code;
        bridge_response_done(&resp);
        return result;
}

static int32_t host_exec_params(struct host *h, const char *cid, const struct bridge_process_params *p,
                                const uint32_t ports[3], uint32_t *ret_pid)
{
        struct bridge_request req = {
                .type = BRIDGE_RPC_EXECUTE_PROCESS,
                .container_id = cid,
                .exec = { .has_params = true, .params = *p,
                          .stdin_port = ports[0], .stdout_port = ports[1], .stderr_port = ports[2] },
        };
        struct bridge_response resp = {};
        uint64_t id = host_send(h, &req);
        int32_t result;

        host_response(h, req.type, id, &resp);
        result = resp.result;
        if (result == 0) {
                assert_true(resp.exec.pid > 0);
                *ret_pid = resp.exec.pid;
        }
        bridge_response_done(&resp);
        return result;
}

static uint32_t host_exec(struct host *h, const char *script, bool with_stdin)
{
        const char *args[] = { "sh", "-c", script };
        struct bridge_process_params p = { .args = args, .n_args = 3, .create_stdin = with_stdin, .create_stdout = true };
        const uint32_t ports[3] = { with_stdin ? PORT_STDIN : 0, PORT_STDOUT, 0 };
        uint32_t pid = 0;

        assert_int_equal(host_exec_params(h, "", &p, ports, &pid), 0);
        return pid;
}

/* A process without stdio, in container cid. */
static uint32_t host_exec_quiet(struct host *h, const char *cid, const char *script)
{
        const char *args[] = { "sh", "-c", script };
        struct bridge_process_params p = { .args = args, .n_args = 3 };
        const uint32_t ports[3] = { 0, 0, 0 };
        uint32_t pid = 0;

        assert_int_equal(host_exec_params(h, cid, &p, ports, &pid), 0);
        return pid;
}

static int32_t host_simple(struct host *h, uint32_t type, const char *cid)
{
        struct bridge_request req = { .type = type, .container_id = cid };
        struct bridge_response resp = {};
        uint64_t id = host_send(h, &req);
        int32_t result;

        host_response(h, type, id, &resp);
        result = resp.result;
        bridge_response_done(&resp);
        return result;
}

/* Reads the next frame, which must be a container notification for cid; returns its Type. */
static void host_expect_notification(struct host *h, const char *cid, const char *type)
{
        struct bridge_notification n = {};
        struct bridge_header hdr;
        _cleanup_free_ char *payload = NULL;
        size_t len;

        payload = host_read_frame(h, &hdr, &len);
        assert_int_equal(hdr.type, BRIDGE_NOTIFY_CONTAINER);
        assert_int_equal(hdr.id, 0);
        assert_int_equal(bridge_notification_decode(payload, len, &n, NULL), 0);
        assert_string_equal(n.container_id, cid);
        assert_string_equal(n.type, type);
        assert_string_equal(n.operation, "None");
        bridge_notification_done(&n);
}

static int host_start(void **state, bool resume)
{
        const char *argv_resume[] = { sim_path, "--hvsock", NULL, NULL };
        const char *argv_legacy[] = { sim_path, "--hvsock", NULL, "--no-resume", NULL };
        struct host *h = calloc(1, sizeof(*h));
        const char **argv = resume ? argv_resume : argv_legacy;

        assert_non_null(h);
        strcpy(h->dir, "/tmp/vsockmux-sim-smoke-XXXXXX");
        assert_non_null(mkdtemp(h->dir));
        snprintf(h->base, sizeof(h->base), "%s/vm.sock", h->dir);
        h->bridge_listener = host_listen(h, 0x40000000u);
        argv[2] = h->base;
        assert_int_equal(posix_spawn(&h->sim, sim_path, NULL, NULL, (char *const *)argv, NULL), 0);
        h->bridge = host_accept(h->bridge_listener);
        *state = h;
        return 0;
}

static int host_start_resume(void **state)
{
        return host_start(state, true);
}

static int host_start_legacy(void **state)
{
        return host_start(state, false);
}

static int host_stop(void **state)
{
        struct host *h = *state;
        char cmd[128];
        int status = 0;

        safe_close(h->bridge);
        safe_close(h->bridge_listener);
        /* SIGTERM is a clean exit with status 0. */
        kill(h->sim, SIGTERM);
        assert_int_equal(waitpid(h->sim, &status, 0), h->sim);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
        assert_int_equal(system(cmd), 0);
        free(h);
        return 0;
}

static void test_sim_negotiates_and_announces_resume(void **state)
{
        struct host *h = *state;
        bool resume = false;

        host_negotiate(h, false, &resume);
        assert_true(resume);
}

static void test_sim_without_resume_does_not_announce_it(void **state)
{
        struct host *h = *state;
        bool resume = true;

        host_negotiate(h, true, &resume);
        assert_false(resume);
}

static void test_sim_exec_relays_stdout_and_reports_exit_code(void **state)
{
        struct host *h = *state;
        int out_listener = host_listen(h, PORT_STDOUT), out;
        char buf[64];
        uint32_t pid, code = 0;

        host_negotiate(h, false, NULL);
        pid = host_exec(h, "echo hi; exit 3", false);
        /* The guest dialled stdout before it answered the exec (W1). */
        out = host_accept(out_listener);
        assert_int_equal(read_to_eof(out, buf, sizeof(buf)), 3);
        assert_string_equal(buf, "hi\n");
        /* The host closes after EOF, or the exit report stalls (H5). */
        safe_close(out);

        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 3);
        /* An exec'd process is gone once one waiter had its code (W9). */
        assert_int_equal(host_wait(h, pid, NULL), BRIDGE_HR_NOT_FOUND);
        safe_close(out_listener);
}

static void test_sim_wait_unknown_pid_reports_not_found(void **state)
{
        struct host *h = *state;

        host_negotiate(h, false, NULL);
        assert_int_equal(host_wait(h, 0x7ffffff0u, NULL), BRIDGE_HR_NOT_FOUND);
}

static void test_sim_signal_kill_reports_128_plus_signal(void **state)
{
        struct host *h = *state;
        int out_listener = host_listen(h, PORT_STDOUT), out;
        struct bridge_request sig = { .type = BRIDGE_RPC_SIGNAL_PROCESS, .container_id = "" };
        struct bridge_response resp = {};
        char buf[64];
        uint32_t pid, code = 0;
        uint64_t id;

        host_negotiate(h, false, NULL);
        pid = host_exec(h, "echo ready; exec sleep 1000", false);
        out = host_accept(out_listener);
        read_exact(out, buf, 6);
        /* Options omitted: that is a kill (W10). */
        sig.signal.pid = pid;
        id = host_send(h, &sig);
        host_response(h, sig.type, id, &resp);
        assert_int_equal(resp.result, 0);
        bridge_response_done(&resp);
        assert_int_equal(read_to_eof(out, buf, sizeof(buf)), 0);
        safe_close(out);
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 128 + SIGKILL);

        /* Gone now: signalling it again is "not found". */
        id = host_send(h, &sig);
        host_response(h, sig.type, id, &resp);
        assert_int_equal(resp.result, BRIDGE_HR_NOT_FOUND);
        bridge_response_done(&resp);
        safe_close(out_listener);
}

static void test_sim_unknown_request_gets_not_impl_with_id_echoed(void **state)
{
        struct host *h = *state;
        struct bridge_request req = { .type = BRIDGE_RPC_DUMP_STACKS, .container_id = "", .activity_id = GUID_A };
        struct bridge_response resp = {};
        uint64_t id;

        host_negotiate(h, false, NULL);
        h->next_id = 77;
        id = host_send(h, &req);
        assert_int_equal(id, 77);
        host_response(h, req.type, id, &resp);
        assert_int_equal(resp.result, BRIDGE_HR_NOT_IMPL);
        assert_string_equal(resp.activity_id, GUID_A);
        bridge_response_done(&resp);
}

static void test_sim_reconnects_after_drop_and_renegotiates(void **state)
{
        struct host *h = *state;
        struct bridge_request early = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS, .container_id = "", .activity_id = GUID_A,
                                        .wait = { .pid = 1, .timeout_ms = 0 } };
        struct bridge_response resp = {};
        char c;
        uint64_t id;

        host_negotiate(h, false, NULL);
        kill(h->sim, SIGUSR1);
        /* The guest side of the bridge was reset: we see EOF, then a fresh connection. */
        assert_int_equal(read_to_eof(h->bridge, &c, 1), 0);
        safe_close(h->bridge);
        h->bridge = host_accept(h->bridge_listener);

        /* The protocol version starts over: anything before negotiate is not implemented (H1, H2). */
        id = host_send(h, &early);
        host_response(h, early.type, id, &resp);
        assert_int_equal(resp.result, BRIDGE_HR_NOT_IMPL);
        assert_string_equal(resp.activity_id, GUID_A);
        bridge_response_done(&resp);
        host_negotiate(h, false, NULL);
        assert_int_equal(host_wait(h, 0x7ffffff0u, NULL), BRIDGE_HR_NOT_FOUND);
}

/* Runs `echo one; read x; echo two`, drops every connection after "one", and returns what the
 * second stdout connection carried. */
static void run_drop_scenario(struct host *h, bool resume, char *second, size_t cap)
{
        int in_listener = host_listen(h, PORT_STDIN), out_listener = host_listen(h, PORT_STDOUT);
        int in, out;
        uint8_t count[8];
        char buf[64];
        uint32_t pid, code = 1;
        bool agreed = false;

        host_negotiate(h, resume, &agreed);
        assert_int_equal(agreed, resume);
        pid = host_exec(h, "echo one; read x; echo two", true);
        in = host_accept(in_listener);
        out = host_accept(out_listener);
        if (resume) {
                /* V4: each stdout connection starts with our count, each stdin one with the guest's. */
                put_le64(count, 0);
                write_all(out, count, sizeof(count));
                read_exact(in, count, sizeof(count));
                assert_int_equal(get_le64(count), 0);
        }
        read_exact(out, buf, 4);
        assert_memory_equal(buf, "one\n", 4);

        kill(h->sim, SIGUSR1);
        read_to_eof(out, buf, sizeof(buf));
        safe_close(out);
        safe_close(in);
        if (resume) {
                in = host_accept(in_listener);
                read_exact(in, count, sizeof(count));
                assert_int_equal(get_le64(count), 0);
                write_all(in, "x\n", 2);
                shutdown(in, SHUT_WR);
        }
        /* Legacy: stdin is not redialled, so `read` sees EOF and the script goes on. */
        out = host_accept(out_listener);
        if (resume) {
                put_le64(count, 4);
                write_all(out, count, sizeof(count));
        }
        read_to_eof(out, second, cap);
        safe_close(out);
        if (resume)
                safe_close(in);

        safe_close(h->bridge);
        h->bridge = host_accept(h->bridge_listener);
        host_negotiate(h, resume, NULL);
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 0);
        safe_close(in_listener);
        safe_close(out_listener);
}

static void test_sim_resume_delivers_stdout_exactly_once_across_drop(void **state)
{
        char second[64];

        run_drop_scenario(*state, true, second, sizeof(second));
        assert_string_equal(second, "two\n");
}

static void test_sim_legacy_replays_window_after_drop(void **state)
{
        char second[64];

        run_drop_scenario(*state, false, second, sizeof(second));
        assert_string_equal(second, "one\ntwo\n");
}

static void test_sim_refuses_negotiate_without_version_4_and_stays_unnegotiated(void **state)
{
        struct host *h = *state;
        struct bridge_request req = { .type = BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                      .negotiate = { .min_version = 5, .max_version = 6 } };
        struct bridge_response resp = {};
        uint64_t id = host_send(h, &req);

        host_response(h, req.type, id, &resp);
        assert_int_equal(resp.result, BRIDGE_HR_UNSUPPORTED_VERSION);
        bridge_response_done(&resp);
        /* Still at version 0: a wait is not implemented yet, a proper negotiate works. */
        assert_int_equal(host_wait(h, 1, NULL), BRIDGE_HR_NOT_IMPL);
        host_negotiate(h, false, NULL);
}

static void test_sim_exec_applies_env_workdir_and_stderr(void **state)
{
        struct host *h = *state;
        const char *env[] = { "FOO=bar baz", "PATH=/usr/bin:/bin" };
        struct bridge_process_params p = { .command_line = "pwd; echo \"$FOO\"; echo oops >&2; exit 7",
                                           .working_dir = h->dir, .env = env, .n_env = 2,
                                           .create_stdout = true, .create_stderr = true };
        const uint32_t ports[3] = { 0, PORT_STDOUT, PORT_STDOUT + 1 };
        int out_listener = host_listen(h, PORT_STDOUT), err_listener = host_listen(h, PORT_STDOUT + 1);
        int out, err;
        char want[160], buf[160];
        uint32_t pid = 0, code = 0;

        host_negotiate(h, false, NULL);
        assert_int_equal(host_exec_params(h, "", &p, ports, &pid), 0);
        out = host_accept(out_listener);
        err = host_accept(err_listener);
        snprintf(want, sizeof(want), "%s\nbar baz\n", h->dir);
        read_to_eof(out, buf, sizeof(buf));
        assert_string_equal(buf, want);
        read_to_eof(err, buf, sizeof(buf));
        assert_string_equal(buf, "oops\n");
        safe_close(out);
        safe_close(err);
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 7);
        safe_close(out_listener);
        safe_close(err_listener);
}

static void test_sim_exec_refuses_missing_command_and_pipe_without_port(void **state)
{
        struct host *h = *state;
        const char *args[] = { "true" };
        struct bridge_process_params none = { .working_dir = "/" };
        struct bridge_process_params no_port = { .args = args, .n_args = 1, .create_stdout = true };
        const uint32_t ports[3] = { 0, 0, 0 };
        uint32_t pid = 0;

        host_negotiate(h, false, NULL);
        assert_int_equal(host_exec_params(h, "", &none, ports, &pid), BRIDGE_HR_INVALID_ARG);
        assert_int_equal(host_exec_params(h, "", &no_port, ports, &pid), BRIDGE_HR_INVALID_ARG);
}

static void test_sim_wait_timeout_then_concurrent_waiters_get_the_exit(void **state)
{
        struct host *h = *state;
        struct bridge_request wait = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS, .container_id = "" };
        struct bridge_request sig = { .type = BRIDGE_RPC_SIGNAL_PROCESS, .container_id = "",
                                      .signal = { .has_options = true, .signal = SIGTERM } };
        struct bridge_response resp = {};
        uint64_t w1, w2, sid, id;
        unsigned seen = 0;
        uint32_t pid;

        host_negotiate(h, false, NULL);
        pid = host_exec_quiet(h, "", "exec sleep 1000");

        wait.wait.pid = pid;
        wait.wait.timeout_ms = 50;
        id = host_send(h, &wait);
        host_response(h, wait.type, id, &resp);
        assert_int_equal(resp.result, BRIDGE_HR_TIMEOUT);
        bridge_response_done(&resp);

        /* Two waiters at once; the signal is answered while both are still waiting (H3). */
        wait.wait.timeout_ms = BRIDGE_WAIT_INFINITE;
        w1 = host_send(h, &wait);
        w2 = host_send(h, &wait);
        sig.signal.pid = pid;
        sid = host_send(h, &sig);
        while (seen != 7) {
                struct bridge_header hdr;
                _cleanup_free_ char *payload = NULL;
                size_t len;

                payload = host_read_frame(h, &hdr, &len);
                if (hdr.id == sid) {
                        assert_int_equal(bridge_response_decode(sig.type, payload, len, &resp, NULL), 0);
                        assert_int_equal(resp.result, 0);
                        seen |= 1;
                } else {
                        assert_true(hdr.id == w1 || hdr.id == w2);
                        assert_int_equal(bridge_response_decode(wait.type, payload, len, &resp, NULL), 0);
                        assert_int_equal(resp.result, 0);
                        assert_int_equal(resp.wait.exit_code, 128 + SIGTERM);
                        seen |= hdr.id == w1 ? 2 : 4;
                }
                bridge_response_done(&resp);
        }
        assert_int_equal(host_wait(h, pid, NULL), BRIDGE_HR_NOT_FOUND);
}

static void test_sim_container_init_exit_notifies_and_keeps_its_code(void **state)
{
        struct host *h = *state;
        uint32_t pid, code = 0;

        host_negotiate(h, false, NULL);
        assert_int_equal(host_simple(h, BRIDGE_RPC_CREATE, "c1"), 0);
        assert_int_equal(host_simple(h, BRIDGE_RPC_CREATE, "c1"), BRIDGE_HR_FAIL);
        pid = host_exec_quiet(h, "c1", "exit 5");
        /* The notification comes at exit, whether or not anyone waits (W12). */
        host_expect_notification(h, "c1", "UnexpectedExit");
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 5);
        /* A container's init is always found and keeps its code (W9). */
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 5);
}

static void test_sim_forced_shutdown_kills_container_and_reports_forced_exit(void **state)
{
        struct host *h = *state;
        struct bridge_request shutdown_req = { .type = BRIDGE_RPC_SHUTDOWN_FORCED, .container_id = "c2" };
        struct bridge_notification n = {};
        struct bridge_response resp = {};
        bool got_note = false, got_reply = false;
        uint64_t shutdown_id;
        uint32_t pid, code = 0;
        size_t len;

        host_negotiate(h, false, NULL);
        assert_int_equal(host_simple(h, BRIDGE_RPC_CREATE, "c2"), 0);
        pid = host_exec_quiet(h, "c2", "exec sleep 1000");
        assert_int_equal(host_simple(h, BRIDGE_RPC_SHUTDOWN_FORCED, "nope"), BRIDGE_HR_SYSTEM_NOT_FOUND);
        /* The kill may beat the reply: take the two frames in either order. */
        shutdown_id = host_send(h, &shutdown_req);
        for (int i = 0; i < 2; i++) {
                struct bridge_header hdr;
                _cleanup_free_ char *payload = host_read_frame(h, &hdr, &len);

                if (hdr.type == BRIDGE_NOTIFY_CONTAINER) {
                        assert_int_equal(bridge_notification_decode(payload, len, &n, NULL), 0);
                        assert_string_equal(n.container_id, "c2");
                        assert_string_equal(n.type, "ForcedExit");
                        bridge_notification_done(&n);
                        got_note = true;
                } else {
                        assert_int_equal(hdr.type, bridge_type_response_for(shutdown_req.type));
                        assert_int_equal(hdr.id, shutdown_id);
                        assert_int_equal(bridge_response_decode(shutdown_req.type, payload, len, &resp, NULL), 0);
                        assert_int_equal(resp.result, 0);
                        bridge_response_done(&resp);
                        got_reply = true;
                }
        }
        assert_true(got_note && got_reply);
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 128 + SIGKILL);
}

static void test_sim_queues_exit_notification_while_disconnected(void **state)
{
        struct host *h = *state;
        const char *args[] = { "sh", "-c", NULL };
        struct bridge_process_params p = { .args = args, .n_args = 3, .create_stdin = true };
        const uint32_t ports[3] = { PORT_STDIN, 0, 0 };
        char script[256], marker[128], path[160];
        int in_listener = host_listen(h, PORT_STDIN), in;
        uint32_t pid = 0;
        struct stat st;

        /* Legacy stdin is not redialled: the drop gives cat EOF, so init exits while we are away. */
        snprintf(marker, sizeof(marker), "%s/exited", h->dir);
        snprintf(script, sizeof(script), "cat >/dev/null; touch '%s'", marker);
        args[2] = script;
        host_negotiate(h, false, NULL);
        assert_int_equal(host_simple(h, BRIDGE_RPC_CREATE, "c3"), 0);
        assert_int_equal(host_exec_params(h, "c3", &p, ports, &pid), 0);
        in = host_accept(in_listener);

        /* Nobody listens on the bridge port while the guest is cut off. */
        safe_close(h->bridge_listener);
        snprintf(path, sizeof(path), "%s_%u", h->base, 0x40000000u);
        unlink(path);
        kill(h->sim, SIGUSR1);
        for (int i = 0; stat(marker, &st) < 0; i++) {
                assert_true(i < WAIT_MS / 10);
                usleep(10 * 1000);
        }
        safe_close(in);
        safe_close(h->bridge);

        h->bridge_listener = host_listen(h, 0x40000000u);
        h->bridge = host_accept(h->bridge_listener);
        /* Sent as soon as the connection starts, before any negotiation (H4). */
        host_expect_notification(h, "c3", "UnexpectedExit");
        host_negotiate(h, false, NULL);
        assert_int_equal(host_wait(h, pid, NULL), 0);
        safe_close(in_listener);
}

static void test_sim_uvm_shutdown_exits_without_reply(void **state)
{
        struct host *h = *state;
        struct bridge_request req = { .type = BRIDGE_RPC_SHUTDOWN_GRACEFUL, .container_id = BRIDGE_NULL_GUID };
        char c;

        host_negotiate(h, false, NULL);
        host_send(h, &req);
        /* No reply: the guest goes away and the bridge ends. host_stop() checks the clean exit. */
        assert_int_equal(read_to_eof(h->bridge, &c, 1), 0);
}

#define SEQ_LAST 200000

static void test_sim_resume_large_output_exactly_once_across_drop(void **state)
{
        struct host *h = *state;
        int out_listener = host_listen(h, PORT_STDOUT), out;
        const size_t cap = 2 * 1024 * 1024;
        _cleanup_free_ char *got = malloc(cap), *want = malloc(cap);
        size_t have = 0, wlen = 0;
        uint8_t count[8];
        uint32_t pid, code = 1;
        char script[64];
        bool agreed = false;

        assert_non_null(got);
        assert_non_null(want);
        for (int i = 1; i <= SEQ_LAST; i++)
                wlen += (size_t)sprintf(want + wlen, "%d\n", i);
        host_negotiate(h, true, &agreed);
        assert_true(agreed);
        snprintf(script, sizeof(script), "seq 1 %d", SEQ_LAST);
        pid = host_exec(h, script, false);
        out = host_accept(out_listener);
        put_le64(count, 0);
        write_all(out, count, sizeof(count));
        /* Part of the output, then a transport reset while more is in flight and the pipe backs up. */
        read_exact(out, got, 100000);
        have = 100000;
        kill(h->sim, SIGUSR1);
        have += read_to_eof(out, got + have, cap - have);
        safe_close(out);

        out = host_accept(out_listener);
        put_le64(count, have);
        write_all(out, count, sizeof(count));
        have += read_to_eof(out, got + have, cap - have);
        safe_close(out);
        assert_int_equal(have, wlen);
        assert_memory_equal(got, want, wlen);

        safe_close(h->bridge);
        h->bridge = host_accept(h->bridge_listener);
        host_negotiate(h, true, NULL);
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 0);
        safe_close(out_listener);
}

static void test_sim_resume_stdin_reports_its_count_after_drop(void **state)
{
        struct host *h = *state;
        int in_listener = host_listen(h, PORT_STDIN), out_listener = host_listen(h, PORT_STDOUT);
        int in, out;
        uint8_t count[8];
        char buf[64];
        uint32_t pid, code = 1;

        host_negotiate(h, true, NULL);
        pid = host_exec(h, "cat", true);
        in = host_accept(in_listener);
        out = host_accept(out_listener);
        put_le64(count, 0);
        write_all(out, count, sizeof(count));
        read_exact(in, count, sizeof(count));
        assert_int_equal(get_le64(count), 0);
        /* Once cat echoed "abc" the guest certainly received those 3 bytes. */
        write_all(in, "abc", 3);
        read_exact(out, buf, 3);
        assert_memory_equal(buf, "abc", 3);

        kill(h->sim, SIGUSR1);
        read_to_eof(out, buf, sizeof(buf));
        safe_close(out);
        safe_close(in);
        /* stdin: the guest says how much it has, so the host replays from there (V4). */
        in = host_accept(in_listener);
        read_exact(in, count, sizeof(count));
        assert_int_equal(get_le64(count), 3);
        write_all(in, "def", 3);
        shutdown(in, SHUT_WR);
        out = host_accept(out_listener);
        put_le64(count, 3);
        write_all(out, count, sizeof(count));
        read_to_eof(out, buf, sizeof(buf));
        assert_string_equal(buf, "def");
        safe_close(out);
        safe_close(in);

        safe_close(h->bridge);
        h->bridge = host_accept(h->bridge_listener);
        host_negotiate(h, true, NULL);
        assert_int_equal(host_wait(h, pid, &code), 0);
        assert_int_equal(code, 0);
        safe_close(in_listener);
        safe_close(out_listener);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_sim_negotiates_and_announces_resume, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_without_resume_does_not_announce_it, host_start_legacy, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_exec_relays_stdout_and_reports_exit_code, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_wait_unknown_pid_reports_not_found, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_signal_kill_reports_128_plus_signal, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_unknown_request_gets_not_impl_with_id_echoed, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_reconnects_after_drop_and_renegotiates, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_resume_delivers_stdout_exactly_once_across_drop, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_legacy_replays_window_after_drop, host_start_legacy, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_refuses_negotiate_without_version_4_and_stays_unnegotiated, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_exec_applies_env_workdir_and_stderr, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_exec_refuses_missing_command_and_pipe_without_port, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_wait_timeout_then_concurrent_waiters_get_the_exit, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_container_init_exit_notifies_and_keeps_its_code, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_forced_shutdown_kills_container_and_reports_forced_exit, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_queues_exit_notification_while_disconnected, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_uvm_shutdown_exits_without_reply, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_resume_large_output_exactly_once_across_drop, host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_resume_stdin_reports_its_count_after_drop, host_start_resume, host_stop),
        };
        const char *root = argc > 1 ? argv[1] : getenv("VSOCKMUX_BUILD_ROOT");
        struct stat st;

        if (!root) {
                fprintf(stderr, "SKIP: set VSOCKMUX_BUILD_ROOT or pass the vsockmux-sim path\n");
                return 77;
        }
        snprintf(sim_path, sizeof(sim_path), argc > 1 ? "%s" : "%s/sim/vsockmux-sim", root);
        if (stat(sim_path, &st) < 0) {
                fprintf(stderr, "SKIP: no simulator at %s\n", sim_path);
                return 77;
        }
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
