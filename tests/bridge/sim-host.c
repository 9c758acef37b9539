/* tests/bridge/sim-host.c: the bridge host the simulator's tests share (see sim-host.h). */
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

#include "tests/bridge/sim-host.h"
#include "tests/sim-stats.h"
#include "util/macro.h"

static char sim_path[4096];

int host_listen(struct host *h, uint32_t port)
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

int host_accept(int listener)
{
        struct pollfd p = { .fd = listener, .events = POLLIN };
        int fd;

        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        assert_true(fd >= 0);
        return fd;
}

void read_exact(int fd, void *buf, size_t len)
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
size_t read_to_eof(int fd, char *buf, size_t cap)
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

void write_all(int fd, const void *buf, size_t len)
{
        assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

uint64_t host_send(struct host *h, const struct bridge_request *req)
{
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t id = h->next_id++;
        size_t len;

        assert_int_equal(bridge_request_frame(req, id, &buf, &len), 0);
        write_all(h->bridge, buf, len);
        return id;
}

/* Reads one frame; returns the header and a malloc'd payload. */
char *host_read_frame(struct host *h, struct bridge_header *ret_header, size_t *ret_len)
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

void host_response(struct host *h, uint32_t req_type, uint64_t id, struct bridge_response *ret)
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

void host_negotiate(struct host *h, bool offer_resume, bool *ret_resume)
{
        struct bridge_request req = { .type = BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                      .negotiate = {
                                              .min_version = 4, .max_version = 4, .stdio_resume = offer_resume } };
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

int32_t host_wait(struct host *h, uint32_t pid, uint32_t *ret_code)
{
        struct bridge_request req = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                                      .container_id = "",
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

int32_t host_exec_params(struct host *h, const char *cid, const struct bridge_process_params *p,
                         const uint32_t ports[3], uint32_t *ret_pid)
{
        struct bridge_request req = {
                .type = BRIDGE_RPC_EXECUTE_PROCESS,
                .container_id = cid,
                .exec = { .has_params = true,
                          .params = *p,
                          .stdin_port = ports[0],
                          .stdout_port = ports[1],
                          .stderr_port = ports[2] },
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

uint32_t host_exec(struct host *h, const char *script, bool with_stdin)
{
        const char *args[] = { "sh", "-c", script };
        struct bridge_process_params p = {
                .args = args, .n_args = 3, .create_stdin = with_stdin, .create_stdout = true
        };
        const uint32_t ports[3] = { with_stdin ? PORT_STDIN : 0, PORT_STDOUT, 0 };
        uint32_t pid = 0;

        assert_int_equal(host_exec_params(h, "", &p, ports, &pid), 0);
        return pid;
}

/* A process without stdio, in container cid. */
uint32_t host_exec_quiet(struct host *h, const char *cid, const char *script)
{
        const char *args[] = { "sh", "-c", script };
        struct bridge_process_params p = { .args = args, .n_args = 3 };
        const uint32_t ports[3] = { 0, 0, 0 };
        uint32_t pid = 0;

        assert_int_equal(host_exec_params(h, cid, &p, ports, &pid), 0);
        return pid;
}

int32_t host_simple(struct host *h, uint32_t type, const char *cid)
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
void host_expect_notification(struct host *h, const char *cid, const char *type)
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

/* extra: the simulator's options after --hvsock PATH, NULL-terminated; "--stats" takes h->stats. */
static int host_start(void **state, const char *const *extra)
{
        const char *argv[8] = { sim_path, "--hvsock" };
        struct host *h = calloc(1, sizeof(*h));
        size_t n = 3;

        assert_non_null(h);
        strcpy(h->dir, "/tmp/vsockmux-sim-smoke-XXXXXX");
        assert_non_null(mkdtemp(h->dir));
        snprintf(h->base, sizeof(h->base), "%s/vm.sock", h->dir);
        snprintf(h->stats, sizeof(h->stats), "%s/sim.stats", h->dir);
        h->bridge_listener = host_listen(h, 0x40000000u);
        argv[2] = h->base;
        for (; *extra; extra++) {
                assert_true(n + 2 < ELEMENTSOF(argv));
                argv[n++] = *extra;
                if (strcmp(*extra, "--stats") == 0)
                        argv[n++] = h->stats;
        }
        argv[n] = NULL;
        assert_int_equal(posix_spawn(&h->sim, sim_path, NULL, NULL, (char *const *)argv, NULL), 0);
        h->bridge = host_accept(h->bridge_listener);
        *state = h;
        return 0;
}

int host_start_resume(void **state)
{
        return host_start(state, (const char *const[]){ NULL });
}

int host_start_legacy(void **state)
{
        return host_start(state, (const char *const[]){ "--no-resume", NULL });
}

int host_start_upstream(void **state)
{
        return host_start(state, (const char *const[]){ "--fidelity=upstream", "--stats", NULL });
}

int host_start_upstream_no_panic(void **state)
{
        return host_start(state, (const char *const[]){ "--fidelity=upstream", "--no-bridge-panic", "--stats", NULL });
}

unsigned long long host_sim_stat(struct host *h, const char *name)
{
        return sim_stats_get(h->stats, name);
}

int host_stop(void **state)
{
        struct host *h = *state;
        char cmd[128];
        int status = 0;

        safe_close(h->bridge);
        safe_close(h->bridge_listener);
        /* SIGTERM is a clean exit with status 0; h->sim is 0 once a test reaped it. */
        if (h->sim > 0) {
                kill(h->sim, SIGTERM);
                assert_int_equal(waitpid(h->sim, &status, 0), h->sim);
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
        }
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
        assert_int_equal(system(cmd), 0);
        free(h);
        return 0;
}

int host_find_sim(int argc, char **argv)
{
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
        return 0;
}
