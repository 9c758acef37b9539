/* Drives a real vsockmux-sim over hybrid vsock with the tiny blocking host of sim-host.c. Tags such
 * as W9 or H5 name paragraphs of ../shared/docs/bridge-protocol.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/bridge/sim-host.h"
#include "util/macro.h"

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
        struct bridge_request early = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                                        .container_id = "",
                                        .activity_id = GUID_A,
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
                unaligned_write_le64(count, 0);
                write_all(out, count, sizeof(count));
                read_exact(in, count, sizeof(count));
                assert_int_equal(unaligned_read_le64(count), 0);
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
                assert_int_equal(unaligned_read_le64(count), 0);
                write_all(in, "x\n", 2);
                shutdown(in, SHUT_WR);
        }
        /* Legacy: stdin is not redialled, so `read` sees EOF and the script goes on. */
        out = host_accept(out_listener);
        if (resume) {
                unaligned_write_le64(count, 4);
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
                                           .working_dir = h->dir,
                                           .env = env,
                                           .n_env = 2,
                                           .create_stdout = true,
                                           .create_stderr = true };
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
        struct bridge_request sig = { .type = BRIDGE_RPC_SIGNAL_PROCESS,
                                      .container_id = "",
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
        unaligned_write_le64(count, 0);
        write_all(out, count, sizeof(count));
        /* Part of the output, then a transport reset while more is in flight and the pipe backs up. */
        read_exact(out, got, 100000);
        have = 100000;
        kill(h->sim, SIGUSR1);
        have += read_to_eof(out, got + have, cap - have);
        safe_close(out);

        out = host_accept(out_listener);
        unaligned_write_le64(count, have);
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
        unaligned_write_le64(count, 0);
        write_all(out, count, sizeof(count));
        read_exact(in, count, sizeof(count));
        assert_int_equal(unaligned_read_le64(count), 0);
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
        assert_int_equal(unaligned_read_le64(count), 3);
        write_all(in, "def", 3);
        shutdown(in, SHUT_WR);
        out = host_accept(out_listener);
        unaligned_write_le64(count, 3);
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
                cmocka_unit_test_setup_teardown(test_sim_without_resume_does_not_announce_it, host_start_legacy,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_exec_relays_stdout_and_reports_exit_code, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_wait_unknown_pid_reports_not_found, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_signal_kill_reports_128_plus_signal, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_unknown_request_gets_not_impl_with_id_echoed,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_reconnects_after_drop_and_renegotiates, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_resume_delivers_stdout_exactly_once_across_drop,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_legacy_replays_window_after_drop, host_start_legacy,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_refuses_negotiate_without_version_4_and_stays_unnegotiated,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_exec_applies_env_workdir_and_stderr, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_exec_refuses_missing_command_and_pipe_without_port,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_wait_timeout_then_concurrent_waiters_get_the_exit,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_container_init_exit_notifies_and_keeps_its_code,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_forced_shutdown_kills_container_and_reports_forced_exit,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_queues_exit_notification_while_disconnected, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_uvm_shutdown_exits_without_reply, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_resume_large_output_exactly_once_across_drop,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_resume_stdin_reports_its_count_after_drop, host_start_resume,
                                                host_stop),
        };
        int r = host_find_sim(argc, argv);

        if (r != 0)
                return r;
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
