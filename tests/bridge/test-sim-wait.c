/* WaitForProcess in a real vsockmux-sim: pending waits hold no thread, are answered at exit or deadline, and
 * thousands of them never keep the sim from noticing a closed bridge and redialling. W9 is a
 * paragraph of ../shared/docs/bridge-protocol.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sim/sim.h"
#include "tests/bridge/sim-host.h"
#include "util/macro.h"

#define MANY_PROCESSES 100u
#define WAITS_PER_PROCESS 10u  /* infinite waits, as each host that restored the VM leaves one */
#define PROBES_PER_PROCESS 10u /* bounded 50 ms waits, as a restoring host sends */
#define PROBE_MS 50u
#define LONG_MS 600000u  /* a timed wait the test never lets expire */
#define THREAD_SLACK 32u /* main, bridge reader, timer and a few request threads finishing */

enum {
        KIND_NONE,
        KIND_WAIT,   /* expects the exit code */
        KIND_PROBE,  /* expects a timeout */
        KIND_SIGNAL, /* expects success */
        KIND_DONE,
};

static uint64_t send_wait(struct host *h, uint32_t pid, uint32_t timeout_ms, const char *activity_id)
{
        struct bridge_request req = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                                      .container_id = "",
                                      .activity_id = activity_id,
                                      .wait = { .pid = pid, .timeout_ms = timeout_ms } };

        return host_send(h, &req);
}

static uint64_t send_kill(struct host *h, uint32_t pid)
{
        struct bridge_request req = { .type = BRIDGE_RPC_SIGNAL_PROCESS,
                                      .container_id = "",
                                      .signal = { .pid = pid, .has_options = true, .signal = SIGKILL } };

        return host_send(h, &req);
}

/* A wait with its reply; returns the result. */
static int32_t wait_once(struct host *h, uint32_t pid, uint32_t timeout_ms, const char *activity_id, uint32_t *ret_code)
{
        struct bridge_response resp = {};
        uint64_t id = send_wait(h, pid, timeout_ms, activity_id);
        int32_t result;

        host_response(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, &resp);
        result = resp.result;
        if (activity_id)
                assert_string_equal(resp.activity_id, activity_id);
        if (ret_code)
                *ret_code = resp.wait.exit_code;
        bridge_response_done(&resp);
        return result;
}

/* Reads frames until n replies arrived; each must answer an id of kinds[] as its kind says, exactly once. */
static void expect_replies(struct host *h, uint8_t *kinds, size_t n_kinds, unsigned n, uint32_t exit_code)
{
        while (n-- > 0) {
                struct bridge_response resp = {};
                struct bridge_header hdr;
                _cleanup_free_ char *payload = NULL;
                size_t len;
                uint32_t type;

                payload = host_read_frame(h, &hdr, &len);
                if (hdr.id >= n_kinds || kinds[hdr.id] == KIND_NONE || kinds[hdr.id] == KIND_DONE)
                        fail_msg("unexpected frame type %#x id %llu", hdr.type, (unsigned long long)hdr.id);
                type = kinds[hdr.id] == KIND_SIGNAL ? BRIDGE_RPC_SIGNAL_PROCESS : BRIDGE_RPC_WAIT_FOR_PROCESS;
                assert_int_equal(hdr.type, bridge_type_response_for(type));
                assert_int_equal(bridge_response_decode(type, payload, len, &resp, NULL), 0);
                switch (kinds[hdr.id]) {
                case KIND_WAIT:
                        assert_int_equal(resp.result, 0);
                        assert_int_equal(resp.wait.exit_code, exit_code);
                        break;
                case KIND_PROBE: assert_int_equal(resp.result, BRIDGE_HR_TIMEOUT); break;
                default: assert_int_equal(resp.result, 0); break;
                }
                kinds[hdr.id] = KIND_DONE;
                bridge_response_done(&resp);
        }
}

static unsigned sim_threads(pid_t pid)
{
        char path[64], line[256];
        unsigned n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Threads: %u", &n) == 1)
                        break;
        fclose(f);
        assert_true(n > 0);
        return n;
}

static void test_sim_thousands_of_pending_waits_hold_no_thread_and_the_sim_redials(void **state)
{
        struct host *h = *state;
        const size_t n_kinds = 8192;
        _cleanup_free_ uint8_t *kinds = calloc(n_kinds, 1);
        uint32_t pids[MANY_PROCESSES];

        assert_non_null(kinds);
        host_negotiate(h, false, NULL);
        for (unsigned i = 0; i < MANY_PROCESSES; i++)
                pids[i] = host_exec_quiet(h, "", "exec sleep 1000");

        /* The infinite waits of earlier hosts, then a restoring host's burst of probes. */
        for (unsigned k = 0; k < WAITS_PER_PROCESS; k++)
                for (unsigned i = 0; i < MANY_PROCESSES; i++)
                        kinds[send_wait(h, pids[i], BRIDGE_WAIT_INFINITE, GUID_A)] = KIND_WAIT;
        for (unsigned k = 0; k < PROBES_PER_PROCESS; k++)
                for (unsigned i = 0; i < MANY_PROCESSES; i++)
                        kinds[send_wait(h, pids[i], PROBE_MS, NULL)] = KIND_PROBE;
        assert_true(h->next_id < n_kinds);
        /* Every probe times out; no infinite wait is answered while its process runs. */
        expect_replies(h, kinds, n_kinds, MANY_PROCESSES * PROBES_PER_PROCESS, 0);
        /* The reapers are the only per-process threads: no thread waits for an exit. */
        assert_true(sim_threads(h->sim) <= MANY_PROCESSES + THREAD_SLACK);

        /* The host goes away: the sim notices and dials the next one. */
        safe_close(h->bridge);
        h->bridge = host_accept(h->bridge_listener);
        host_negotiate(h, false, NULL);

        /* Waits registered on the old connection are answered on the new one, each exactly once. */
        for (unsigned i = 0; i < MANY_PROCESSES; i++)
                kinds[send_kill(h, pids[i])] = KIND_SIGNAL;
        assert_true(h->next_id < n_kinds);
        expect_replies(h, kinds, n_kinds, MANY_PROCESSES * (WAITS_PER_PROCESS + 1), 128 + SIGKILL);
        for (size_t id = 0; id < h->next_id; id++)
                assert_true(kinds[id] == KIND_NONE || kinds[id] == KIND_DONE);
        /* An exec'd process is gone once its waiters had the code (W9). */
        assert_int_equal(host_wait(h, pids[0], NULL), BRIDGE_HR_NOT_FOUND);
}

static void test_sim_wait_on_exited_process_gets_its_code_then_it_is_gone(void **state)
{
        struct host *h = *state;
        uint32_t pid, code = 0;
        int32_t r;

        host_negotiate(h, false, NULL);
        pid = host_exec_quiet(h, "", "exit 7");
        /* A zero timeout never registers: it is the code once the exit is known, a timeout before. */
        for (int i = 0; (r = wait_once(h, pid, 0, GUID_A, &code)) == BRIDGE_HR_TIMEOUT; i++) {
                assert_true(i < WAIT_MS / 10);
                usleep(10 * 1000);
        }
        assert_int_equal(r, 0);
        assert_int_equal(code, 7);
        assert_int_equal(wait_once(h, pid, BRIDGE_WAIT_INFINITE, GUID_A, NULL), BRIDGE_HR_NOT_FOUND);
}

static void test_sim_timed_wait_on_running_process_times_out_and_keeps_it(void **state)
{
        struct host *h = *state;
        uint8_t kinds[16] = {};
        uint32_t pid;

        host_negotiate(h, false, NULL);
        pid = host_exec_quiet(h, "", "exec sleep 1000");
        assert_int_equal(wait_once(h, pid, PROBE_MS, GUID_A, NULL), BRIDGE_HR_TIMEOUT);
        assert_int_equal(wait_once(h, pid, 0, GUID_A, NULL), BRIDGE_HR_TIMEOUT);
        /* A timeout does not take the process: a later wait still gets its exit. */
        kinds[send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL)] = KIND_WAIT;
        kinds[send_kill(h, pid)] = KIND_SIGNAL;
        assert_true(h->next_id < ELEMENTSOF(kinds));
        expect_replies(h, kinds, ELEMENTSOF(kinds), 2, 128 + SIGKILL);
}

static void test_sim_expired_waiter_leaves_the_others_registered(void **state)
{
        struct host *h = *state;
        uint8_t kinds[16] = {};
        uint32_t pid;

        host_negotiate(h, false, NULL);
        pid = host_exec_quiet(h, "", "exec sleep 1000");
        kinds[send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL)] = KIND_WAIT;
        kinds[send_wait(h, pid, PROBE_MS, NULL)] = KIND_PROBE;
        kinds[send_wait(h, pid, LONG_MS, NULL)] = KIND_WAIT;
        kinds[send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL)] = KIND_WAIT;
        /* Only the probe can answer while the process runs. */
        expect_replies(h, kinds, ELEMENTSOF(kinds), 1, 0);
        kinds[send_kill(h, pid)] = KIND_SIGNAL;
        assert_true(h->next_id < ELEMENTSOF(kinds));
        expect_replies(h, kinds, ELEMENTSOF(kinds), 4, 128 + SIGKILL);
}

static void test_sim_every_pending_waiter_of_exec_process_gets_the_code_then_it_is_gone(void **state)
{
        struct host *h = *state;
        uint8_t kinds[16] = {};
        uint32_t pid;

        host_negotiate(h, false, NULL);
        pid = host_exec_quiet(h, "", "exec sleep 1000");
        /* Both registered before the exit: both get the code, not just the first. */
        kinds[send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL)] = KIND_WAIT;
        kinds[send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL)] = KIND_WAIT;
        kinds[send_kill(h, pid)] = KIND_SIGNAL;
        expect_replies(h, kinds, ELEMENTSOF(kinds), 3, 128 + SIGKILL);
        /* A wait that comes after the exit was taken finds nothing (W9). */
        assert_int_equal(wait_once(h, pid, BRIDGE_WAIT_INFINITE, NULL, NULL), BRIDGE_HR_NOT_FOUND);
}

static void test_sim_waits_over_the_per_process_cap_get_guest_busy(void **state)
{
        struct host *h = *state;
        const size_t n_kinds = 2 * SIM_MAX_WAITERS_PER_PROCESS;
        _cleanup_free_ uint8_t *kinds = calloc(n_kinds, 1);
        struct bridge_response resp = {};
        uint64_t extra;
        uint32_t pid;

        assert_non_null(kinds);
        host_negotiate(h, false, NULL);
        pid = host_exec_quiet(h, "", "exec sleep 1000");
        for (unsigned i = 0; i < SIM_MAX_WAITERS_PER_PROCESS; i++)
                kinds[send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL)] = KIND_WAIT;
        extra = send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL);
        /* Refused at once, while every registered one still waits. */
        host_response(h, BRIDGE_RPC_WAIT_FOR_PROCESS, extra, &resp);
        assert_int_equal(resp.result, BRIDGE_HR_FAIL);
        assert_string_equal(resp.error_message, "guest busy");
        bridge_response_done(&resp);
        kinds[send_kill(h, pid)] = KIND_SIGNAL;
        assert_true(h->next_id < n_kinds);
        expect_replies(h, kinds, n_kinds, SIM_MAX_WAITERS_PER_PROCESS + 1, 128 + SIGKILL);
}

static void test_sim_stops_cleanly_with_waits_pending(void **state)
{
        struct host *h = *state;
        uint32_t pid;

        host_negotiate(h, false, NULL);
        pid = host_exec_quiet(h, "", "exec sleep 1000");
        for (int i = 0; i < 8; i++) {
                send_wait(h, pid, BRIDGE_WAIT_INFINITE, NULL);
                send_wait(h, pid, LONG_MS, GUID_A);
        }
        /* The same process answers a request after them, so they were all read. */
        assert_int_equal(wait_once(h, pid, 0, NULL, NULL), BRIDGE_HR_TIMEOUT);
        /* host_stop: SIGTERM with the waits pending is still a clean exit (and frees them, under ASan). */
}

/* hcsshim's guest after its bridge connection ended (sim/bridge.c, bridge_panic_locked, says where):
 * a VM-level process, an infinite wait for it read, the connection gone and no host listening, then
 * the exit, let go through a fifo only then. Returns the fifo, which the caller keeps open until the
 * end: a fifo with no one holding it drops what was written before the process opened it. */
static int exit_while_disconnected(struct host *h, uint64_t *ret_wait_id, uint32_t *ret_pid)
{
        char gate_path[128], script[256];
        struct bridge_request wait = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                                       .container_id = BRIDGE_NULL_GUID,
                                       .wait = { .timeout_ms = BRIDGE_WAIT_INFINITE } };
        struct bridge_request probe = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS, .container_id = BRIDGE_NULL_GUID };
        struct bridge_response resp = {};
        char sock[128];
        int gate;

        snprintf(gate_path, sizeof(gate_path), "%s/gate", h->dir);
        assert_int_equal(mkfifo(gate_path, 0600), 0);
        gate = open(gate_path, O_RDWR | O_CLOEXEC);
        assert_true(gate >= 0);
        snprintf(script, sizeof(script), "read x < %s; exit 5", gate_path);
        host_negotiate(h, false, NULL);
        *ret_pid = host_exec_quiet(h, BRIDGE_NULL_GUID, script);
        wait.wait.pid = probe.wait.pid = *ret_pid;
        *ret_wait_id = host_send(h, &wait);
        /* Waits are taken in order: the probe's answer says the wait before it was read. */
        host_response(h, probe.type, host_send(h, &probe), &resp);
        assert_int_equal(resp.result, BRIDGE_HR_TIMEOUT);
        bridge_response_done(&resp);

        /* No host: the redials fail until the test listens again. The listener goes first, or a
         * redial could wait in its backlog and take the reply. */
        h->bridge_listener = safe_close(h->bridge_listener);
        snprintf(sock, sizeof(sock), "%s_%u", h->base, PORT_BRIDGE);
        assert_int_equal(unlink(sock), 0);
        h->bridge = safe_close(h->bridge);
        assert_int_equal(write(gate, "\n", 1), 1);
        return gate;
}

/* The wait's reply is made while no connection is up: hcsshim's guest panics (send on closed
 * channel) and its VM stops; the simulator ends with Go's status 2 and never dials again. */
static void test_sim_upstream_reply_made_while_disconnected_ends_the_guest(void **state)
{
        struct host *h = *state;
        uint64_t wait_id;
        uint32_t pid;
        int status = 0;
        pid_t r = 0;
        _cleanup_close_ int gate = exit_while_disconnected(h, &wait_id, &pid);

        for (unsigned ms = 0; r == 0 && ms < WAIT_MS; ms += 10) {
                r = waitpid(h->sim, &status, WNOHANG);
                if (r == 0)
                        usleep(10 * 1000);
        }
        if (r != h->sim)
                fail_msg("the simulator lives on after a reply made with no bridge connection");
        h->sim = 0;
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 2);
        assert_int_equal(host_sim_stat(h, "bridge_panics"), 1);
        assert_int_equal(host_sim_stat(h, "replies_lost"), 0);
        assert_int_equal(host_sim_stat(h, "bridge_connects"), 1);
}

/* --no-bridge-panic, the kinder extension: the reply is lost, never sent on the next connection,
 * and the exec'd process is gone with it (deleted before its wait's reply). */
static void test_sim_upstream_no_bridge_panic_loses_the_reply_and_redials(void **state)
{
        struct host *h = *state;
        struct bridge_request wait = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                                       .container_id = BRIDGE_NULL_GUID,
                                       .wait = { .timeout_ms = BRIDGE_WAIT_INFINITE } };
        struct bridge_response resp = {};
        uint64_t wait_id;
        uint32_t pid;
        _cleanup_close_ int gate = exit_while_disconnected(h, &wait_id, &pid);

        for (unsigned ms = 0; host_sim_stat(h, "replies_lost") < 1; ms += 10) {
                if (ms >= WAIT_MS)
                        fail_msg("the simulator never lost the wait's reply");
                usleep(10 * 1000);
        }
        h->bridge_listener = host_listen(h, PORT_BRIDGE);
        h->bridge = host_accept(h->bridge_listener);
        host_negotiate(h, false, NULL);
        /* The first frame answers the new wait (host_response checks its id): the old one is gone. */
        wait.wait.pid = pid;
        host_response(h, wait.type, host_send(h, &wait), &resp);
        assert_int_equal(resp.result, BRIDGE_HR_NOT_FOUND);
        bridge_response_done(&resp);
        assert_int_equal(host_sim_stat(h, "bridge_panics"), 0);
        assert_int_equal(host_sim_stat(h, "replies_lost"), 1);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_sim_thousands_of_pending_waits_hold_no_thread_and_the_sim_redials,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_wait_on_exited_process_gets_its_code_then_it_is_gone,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_timed_wait_on_running_process_times_out_and_keeps_it,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_expired_waiter_leaves_the_others_registered, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(
                        test_sim_every_pending_waiter_of_exec_process_gets_the_code_then_it_is_gone, host_start_resume,
                        host_stop),
                cmocka_unit_test_setup_teardown(test_sim_waits_over_the_per_process_cap_get_guest_busy,
                                                host_start_resume, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_stops_cleanly_with_waits_pending, host_start_resume,
                                                host_stop),
                cmocka_unit_test_setup_teardown(test_sim_upstream_reply_made_while_disconnected_ends_the_guest,
                                                host_start_upstream, host_stop),
                cmocka_unit_test_setup_teardown(test_sim_upstream_no_bridge_panic_loses_the_reply_and_redials,
                                                host_start_upstream_no_panic, host_stop),
        };
        int r = host_find_sim(argc, argv);

        if (r != 0)
                return r;
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
