/* Fault injection on the guest side: the simulator SIGKILLed mid-stream, a fake guest gone mid-handshake or mid-frame.
 * W2 is a paragraph of ../shared/docs/bridge-protocol.md. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define FG_BRIDGE_PORT 0x40000000u
#define FG_HEADER 16u         /* u32 type, u32 size (with the header), u64 id; LE */
#define FG_MAX_FRAME 0x10000u /* the host's cap on a bridge frame (W2) */
#define FG_NEGOTIATE 0x10100b01u
#define FG_NEGOTIATE_RESPONSE 0x20100b01u
#define FG_EXECUTE 0x10100501u
#define FG_EXECUTE_RESPONSE 0x20100501u
#define FG_NOTIFICATION 0x30100101u
#define FG_RESTARTS 5u   /* simulators killed right after they start */
#define FG_MIN_LINES 100 /* VM b's writer had written this much before the kill */

static const char fg_negotiate_ok[] =
        "{\"Result\":0,\"Version\":4,\"Capabilities\":{\"SupportedSchemaVersions\":[{\"Major\":2,\"Minor\":1}],"
        "\"RuntimeOsType\":\"Linux\",\"GuestDefinedCapabilities\":{}}}";
static const char fg_notification[] = "{\"ContainerId\":\"c1\",\"ActivityId\":\"00000000-0000-0000-0000-000000000000\","
                                      "\"Type\":\"UnexpectedExit\",\"Operation\":\"None\",\"Result\":0}";

/* ---- a fake guest on a raw hybrid-vsock socket ---- */

static int fg_dial_bridge(struct integ *t, const char *vm)
{
        char path[INTEG_PATH_MAX];
        int n;

        n = snprintf(path, sizeof(path), "%s_%u", integ_hvsock(t, vm), FG_BRIDGE_PORT);
        assert_true(n > 0 && (size_t)n < sizeof(path));
        return integ_connect_unix(path, SOCK_STREAM);
}

static void fg_recv_exact(int fd, uint8_t *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = recv(fd, buf, len, 0);

                if (n <= 0)
                        fail_msg("the host went quiet on the bridge: %s", n == 0 ? "EOF" : strerror(errno));
                buf += n;
                len -= (size_t)n;
        }
}

static uint32_t fg_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t fg_le64(const uint8_t *p)
{
        return fg_le32(p) | (uint64_t)fg_le32(p + 4) << 32;
}

static void fg_put_le32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

/* Reads one request from the host; returns its id and asserts its type. */
static uint64_t fg_expect_request(int fd, uint32_t type)
{
        uint8_t hdr[FG_HEADER], *payload;
        uint32_t size;

        fg_recv_exact(fd, hdr, sizeof(hdr));
        size = fg_le32(hdr + 4);
        if (fg_le32(hdr) != type)
                fail_msg("the host sent type 0x%08x, expected 0x%08x", fg_le32(hdr), type);
        assert_true(size >= FG_HEADER && size <= FG_MAX_FRAME);
        payload = malloc(size - FG_HEADER);
        assert_non_null(payload);
        fg_recv_exact(fd, payload, size - FG_HEADER);
        free(payload);
        return fg_le64(hdr + 8);
}

/* Sends the first `cut` bytes of a frame (all of it when cut is SIZE_MAX); a size >= 0 lies in its header. */
static void fg_send_frame(int fd, uint32_t type, uint64_t id, const char *json, size_t cut, int64_t size)
{
        size_t len = FG_HEADER + strlen(json);
        uint8_t *buf = malloc(len);

        assert_non_null(buf);
        fg_put_le32(buf, type);
        fg_put_le32(buf + 4, size >= 0 ? (uint32_t)size : (uint32_t)len);
        for (int i = 0; i < 8; i++)
                buf[8 + i] = (uint8_t)(id >> (8 * i));
        memcpy(buf + FG_HEADER, json, strlen(json));
        if (cut < len)
                len = cut;
        for (size_t off = 0; off < len;) {
                ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);

                if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
                        break;
                if (n <= 0)
                        fail_msg("send on the bridge: %s", strerror(errno));
                off += (size_t)n;
        }
        free(buf);
}

/* Answers the host's NegotiateProtocol as an upstream guest does. */
static void fg_negotiate(int fd)
{
        uint64_t id = fg_expect_request(fd, FG_NEGOTIATE);

        fg_send_frame(fd, FG_NEGOTIATE_RESPONSE, id, fg_negotiate_ok, SIZE_MAX, -1);
}

/* ---- checks ---- */

static void fg_vm_add(struct integ *t, const char *vm)
{
        struct integ_result res;

        integ_cli(t, &res, NULL, "vm", "add", vm, "--hvsock", integ_hvsock(t, vm), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

/* A fresh attached exec on vm runs to completion with its output and exit code. */
static void fg_assert_exec_works(struct integ *t, const char *vm, int code)
{
        struct integ_result res;
        char script[64], want[64];

        snprintf(script, sizeof(script), "echo hello from %s; exit %d", vm, code);
        snprintf(want, sizeof(want), "hello from %s\n", vm);
        integ_cli(t, &res, NULL, "exec", vm, "--", "sh", "-c", script, NULL);
        integ_assert_code(t, &res, code);
        assert_string_equal(res.out, want);
        integ_result_done(&res);
}

static void fg_assert_daemon_serves(struct integ *t, size_t vms)
{
        struct json_object *ls = integ_cli_json(t, "vm", "ls", "--json", NULL);
        struct json_object *st = integ_cli_json(t, "stats", "--json", NULL);

        assert_int_equal(json_object_array_length(ls), vms);
        assert_int_equal(integ_json_int(st, "vms"), (int64_t)vms);
        json_object_put(ls);
        json_object_put(st);
}

/* Every stream the daemon relays ends with its process: none may outlive a lost guest. */
static void fg_wait_no_streams(struct integ *t)
{
        for (int waited = 0;; waited += 50) {
                struct json_object *st = integ_cli_json(t, "stats", "--json", NULL);
                int64_t n = integ_json_int(st, "streams");

                json_object_put(st);
                if (n == 0)
                        return;
                if (waited >= INTEG_WAIT_MS) {
                        integ_dump_daemon_log(t);
                        fail_msg("vsockmuxd still relays %lld streams with no process running", (long long)n);
                }
                integ_sleep_ms(50);
        }
}

/* The writer's output is "1\n2\n...N\nend N\n": every line, in order, nothing after. */
static void fg_assert_numbered_output(const char *path)
{
        size_t len;
        char *s = integ_read_file(path, &len), *p, *nl;
        long want = 1, end;

        assert_non_null(s);
        for (p = s;; p = nl + 1) {
                nl = strchr(p, '\n');
                if (!nl)
                        fail_msg("%s ends without 'end N' after %ld lines", path, want - 1);
                *nl = 0;
                if (!strncmp(p, "end ", 4))
                        break;
                if (strtol(p, NULL, 10) != want)
                        fail_msg("%s: line '%s' where %ld was expected (bytes lost or repeated)", path, p, want);
                want++;
        }
        end = strtol(p + 4, NULL, 10);
        assert_int_equal(end, want - 1);
        assert_true(end >= FG_MIN_LINES);
        assert_string_equal(nl + 1, "");
        free(s);
}

/* ---- the simulator SIGKILLed mid-stream ---- */

static void test_sim_killed_mid_stream_fails_its_calls_and_spares_the_other_vm(void **state)
{
        struct integ *t = *state;
        char a_out[INTEG_PATH_MAX], a_err[INTEG_PATH_MAX], a_wait[INTEG_PATH_MAX], b_out[INTEG_PATH_MAX],
                b_err[INTEG_PATH_MAX], a_script[512], b_script[512], probe[32], pid_s[32];
        char *a_args[] = { (char *)"exec", (char *)"a", (char *)"--", (char *)"sh", (char *)"-c", a_script, NULL };
        char *b_args[] = { (char *)"exec", (char *)"b", (char *)"--", (char *)"sh", (char *)"-c", b_script, NULL };
        char *w_args[] = { (char *)"wait", (char *)"a", pid_s, NULL };
        char *at_args[] = { (char *)"attach", (char *)"a", pid_s, NULL };
        struct json_object *all, *p;
        pid_t sim_a, exec_a, exec_b, wait_a, attach_a;
        long pid;
        int code;
        char *s;

        sim_a = integ_vm_with_sim(t, "a");
        integ_vm_with_sim(t, "b");
        snprintf(a_out, sizeof(a_out), "%s", integ_path(t, "a.out"));
        snprintf(a_err, sizeof(a_err), "%s", integ_path(t, "a.err"));
        snprintf(a_wait, sizeof(a_wait), "%s", integ_path(t, "a-wait.out"));
        snprintf(b_out, sizeof(b_out), "%s", integ_path(t, "b.out"));
        snprintf(b_err, sizeof(b_err), "%s", integ_path(t, "b.err"));

        /* On a: a process writing without pause, attached, and a second one someone waits for. */
        /* Bursts with short pauses: always mid-stream, without starving a loaded 2-core box. */
        snprintf(a_script, sizeof(a_script),
                 "while [ -d %s ]; do i=0; while [ $i -lt 100 ]; do echo streaming; i=$((i+1)); done; sleep 0.02; done",
                 t->dir);
        exec_a = integ_spawn(t, integ_cli_argv(t, a_args), NULL, a_out, a_err);
        pid = integ_exec_detached(t, "a", integ_alive_loop(t));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        wait_a = integ_spawn(t, integ_cli_argv(t, w_args), NULL, a_wait, NULL);
        attach_a = integ_spawn(t, integ_cli_argv(t, at_args), NULL, NULL, NULL);
        /* On b: numbered lines until told to stop, then its own exit code. */
        snprintf(b_script, sizeof(b_script),
                 "i=0; while [ ! -e %s/stop ]; do i=$((i+1)); echo $i; [ $((i %% 100)) -ne 0 ] || sleep 0.02; done; "
                 "echo end $i; exit 7",
                 t->dir);
        exec_b = integ_spawn(t, integ_cli_argv(t, b_args), NULL, b_out, b_err);

        snprintf(probe, sizeof(probe), "\n%d\n", FG_MIN_LINES);
        assert_true(integ_wait_file_contains(a_out, "streaming\n", INTEG_WAIT_MS));
        assert_true(integ_wait_file_contains(b_out, probe, INTEG_WAIT_MS));
        integ_kill(t, sim_a, SIGKILL);

        /* a's calls fail as lost, never as a success. */
        assert_int_equal(integ_reap(t, exec_a, INTEG_WAIT_MS, &code), 0);
        s = integ_read_file(a_err, NULL);
        if (code != 255) {
                integ_dump_daemon_log(t);
                fail_msg("a's attached exec exited %d after its guest was killed, stderr '%s'", code, s);
        }
        integ_assert_contains(s, "exit status lost");
        free(s);
        assert_int_equal(integ_reap(t, wait_a, INTEG_WAIT_MS, &code), 0);
        s = integ_read_file(a_wait, NULL);
        if (code != 255) {
                integ_dump_daemon_log(t);
                fail_msg("wait on a exited %d after its guest was killed, stdout '%s'", code, s);
        }
        assert_string_equal(s, "exit status lost\n");
        free(s);
        /* An attach client is not left hanging on a process whose guest is gone. */
        assert_int_equal(integ_reap(t, attach_a, INTEG_WAIT_MS, &code), 0);
        p = integ_ps_find(t, "a", pid, &all);
        assert_string_equal(integ_json_str(p, "state"), "lost");
        json_object_put(all);
        integ_wait_bridge(t, "a", "waiting");

        /* The daemon and b carry on: b's stream crossed the kill whole, with its exit code. */
        fg_assert_daemon_serves(t, 2);
        assert_true(integ_alive(t, exec_b));
        integ_touch(integ_path(t, "stop"));
        assert_int_equal(integ_reap(t, exec_b, INTEG_WAIT_MS, &code), 0);
        if (code != 7) {
                integ_dump_daemon_log(t);
                fail_msg("b's exec exited %d, expected 7; stderr '%s'", code, integ_read_file(b_err, NULL));
        }
        fg_assert_numbered_output(b_out);
        fg_assert_exec_works(t, "b", 3);
        fg_wait_no_streams(t);

        /* A new guest for a is served like the first one. */
        integ_sim_start(t, "a");
        integ_wait_bridge(t, "a", "connected");
        fg_assert_exec_works(t, "a", 4);
}

static void test_sims_killed_right_after_start_leave_the_vm_usable(void **state)
{
        struct integ *t = *state;

        fg_vm_add(t, "a");
        integ_vm_with_sim(t, "b");
        /* Wherever the kill lands (before the dial, mid-negotiation, just after), a is not harmed. */
        for (unsigned i = 0; i < FG_RESTARTS; i++) {
                pid_t sim = integ_sim_start(t, "a");

                integ_sleep_ms((int)(i * 20)); /* spreads the kills; nothing depends on it */
                integ_kill(t, sim, SIGKILL);
        }
        fg_assert_daemon_serves(t, 2);
        fg_assert_exec_works(t, "b", 5);
        integ_sim_start(t, "a");
        integ_wait_bridge(t, "a", "connected");
        fg_assert_exec_works(t, "a", 6);
}

/* ---- a fake guest gone mid-handshake ---- */

static void test_guest_gone_mid_handshake_leaves_the_vm_waiting(void **state)
{
        struct integ *t = *state;
        const size_t response_len = FG_HEADER + strlen(fg_negotiate_ok);
        /* Bytes of the NegotiateProtocol response sent before the guest vanishes. */
        const size_t cuts[] = { 0, 1, FG_HEADER / 2, FG_HEADER, FG_HEADER + 1, response_len / 2, response_len - 1 };

        fg_vm_add(t, "a");
        integ_vm_with_sim(t, "b");
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
                int fd = fg_dial_bridge(t, "a");
                uint64_t id = fg_expect_request(fd, FG_NEGOTIATE);

                /* Reading the request means the host is negotiating with us now. */
                fg_send_frame(fd, FG_NEGOTIATE_RESPONSE, id, fg_negotiate_ok, cuts[i], -1);
                close(fd); /* a SIGKILLed guest's socket closes just the same */
                integ_wait_bridge(t, "a", "waiting");
                fg_assert_exec_works(t, "b", (int)i + 1);
        }
        fg_assert_daemon_serves(t, 2);

        /* A guest that stalls mid-response is replaced by the next one to dial, which is served. */
        {
                int fd = fg_dial_bridge(t, "a");
                uint64_t id = fg_expect_request(fd, FG_NEGOTIATE);

                fg_send_frame(fd, FG_NEGOTIATE_RESPONSE, id, fg_negotiate_ok, response_len / 2, -1);
                integ_sim_start(t, "a");
                integ_expect_closed(t, fd, "a broken guest connection");
                close(fd);
        }
        integ_wait_bridge(t, "a", "connected");
        fg_assert_exec_works(t, "a", 9);
        fg_assert_exec_works(t, "b", 10);
}

/* ---- a fake guest gone mid-frame ---- */

static void test_guest_gone_mid_frame_leaves_the_vm_waiting(void **state)
{
        struct integ *t = *state;
        const size_t frame_len = FG_HEADER + strlen(fg_notification);
        const size_t cuts[] = { 1, FG_HEADER - 1, FG_HEADER, frame_len / 2, frame_len - 1 };

        fg_vm_add(t, "a");
        integ_vm_with_sim(t, "b");
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
                int fd = fg_dial_bridge(t, "a");

                fg_negotiate(fd);
                integ_wait_bridge(t, "a", "connected");
                fg_send_frame(fd, FG_NOTIFICATION, 0, fg_notification, cuts[i], -1);
                close(fd);
                integ_wait_bridge(t, "a", "waiting");
                fg_assert_exec_works(t, "b", (int)i + 1);
        }
        /* A header that promises the largest frame the host takes, then a few bytes and silence:
         * the next guest to dial replaces it. */
        {
                int fd = fg_dial_bridge(t, "a");

                fg_negotiate(fd);
                integ_wait_bridge(t, "a", "connected");
                fg_send_frame(fd, FG_NOTIFICATION, 0, fg_notification, FG_HEADER + 8, FG_MAX_FRAME);
                integ_sim_start(t, "a");
                integ_expect_closed(t, fd, "a broken guest connection");
                close(fd);
        }
        integ_wait_bridge(t, "a", "connected");
        fg_assert_exec_works(t, "a", 7);
        fg_assert_daemon_serves(t, 2);
}

static void test_oversized_and_undersized_frames_drop_only_that_guest(void **state)
{
        struct integ *t = *state;
        const uint32_t sizes[] = { FG_MAX_FRAME + 1, 0xffffffffu, FG_HEADER - 1, 0 };

        fg_vm_add(t, "a");
        integ_vm_with_sim(t, "b");
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                int fd = fg_dial_bridge(t, "a");

                fg_negotiate(fd);
                integ_wait_bridge(t, "a", "connected");
                /* Refused on the header alone (W2): the host closes without waiting for a payload. */
                fg_send_frame(fd, FG_NOTIFICATION, 0, fg_notification, FG_HEADER, sizes[i]);
                integ_expect_closed(t, fd, "a broken guest connection");
                close(fd);
                integ_wait_bridge(t, "a", "waiting");
        }
        if (!integ_wait_file_contains(t->daemon_log, "dropping the guest connection", INTEG_WAIT_MS))
                fail_msg("vsockmuxd did not log why it dropped the guest");
        fg_assert_daemon_serves(t, 2);
        fg_assert_exec_works(t, "b", 8);
        integ_sim_start(t, "a");
        integ_wait_bridge(t, "a", "connected");
        fg_assert_exec_works(t, "a", 9);
}

/* An exec whose guest vanishes halfway through its answer never reads as started (or as exit 0). */
static void test_guest_gone_mid_exec_answer_fails_the_exec(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX];
        char *args[] = { (char *)"exec", (char *)"a", (char *)"--", (char *)"true", NULL };
        static const char answer[] = "{\"Result\":0,\"ProcessId\":4242}";
        pid_t exec;
        uint64_t id;
        int code, fd;
        char *s;

        fg_vm_add(t, "a");
        integ_vm_with_sim(t, "b");
        fd = fg_dial_bridge(t, "a");
        fg_negotiate(fd);
        integ_wait_bridge(t, "a", "connected");
        snprintf(out, sizeof(out), "%s", integ_path(t, "exec.out"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "exec.err"));
        exec = integ_spawn(t, integ_cli_argv(t, args), NULL, out, err);
        id = fg_expect_request(fd, FG_EXECUTE);
        fg_send_frame(fd, FG_EXECUTE_RESPONSE, id, answer, FG_HEADER + strlen(answer) / 2, -1);
        close(fd);

        assert_int_equal(integ_reap(t, exec, INTEG_WAIT_MS, &code), 0);
        s = integ_read_file(err, NULL);
        /* Whether the guest started it is unknown: "could not be started" (125) or "lost" (255). */
        if (code != 125 && code != 255) {
                integ_dump_daemon_log(t);
                fail_msg("exec exited %d though its guest vanished mid-answer, stderr '%s'", code, s);
        }
        integ_assert_contains(s, "bridge closed");
        free(s);
        integ_wait_bridge(t, "a", "waiting");
        fg_assert_exec_works(t, "b", 11);
        integ_sim_start(t, "a");
        integ_wait_bridge(t, "a", "connected");
        fg_assert_exec_works(t, "a", 12);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sim_killed_mid_stream_fails_its_calls_and_spares_the_other_vm),
                cmocka_unit_test(test_sims_killed_right_after_start_leave_the_vm_usable),
                cmocka_unit_test(test_guest_gone_mid_handshake_leaves_the_vm_waiting),
                cmocka_unit_test(test_guest_gone_mid_frame_leaves_the_vm_waiting),
                cmocka_unit_test(test_oversized_and_undersized_frames_drop_only_that_guest),
                cmocka_unit_test(test_guest_gone_mid_exec_answer_fails_the_exec),
        };

        return integ_run("integration-faults-guest", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
