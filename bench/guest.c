/* bench/guest.c: bench-guest, the guest agent side of the bench's daemon variant: it dials the
 * VM's bridge, answers NegotiateProtocol (without the stdio-resume extension, so stdio
 * connections carry no count header), CreateContainer and ExecuteProcess (a fake pid; the
 * process "runs" until we are killed, so no exit is ever reported), and writes one line per exec
 * to --ports: "<argv[1]> <argv[2]> <stdin port> <stdout port> <stderr port>" (flushed before the
 * reply, so a caller that has the Exec reply also has the line). It never dials a stdio port:
 * bench-load's guest does, through links that bench-ctl makes. No process is spawned. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/spec.h"
#include "bridge/codec.h"
#include "bridge/msg.h"
#include "util/macro.h"

#define BENCH_GUEST_BRIDGE_PORT 0x40000000u
#define BENCH_GUEST_DIAL_TRIES 3000 /* x 10 ms: the daemon may still be adding the VM */
#define BENCH_GUEST_FIRST_PID 1000u

struct bench_guest {
        int fd;
        FILE *ports;
        uint32_t next_pid;
        uint8_t buf[BRIDGE_MAX_FRAME * 2];
        size_t len;
};

static int bench_guest_send_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int bench_guest_reply(struct bench_guest *g, uint32_t type, uint64_t id, const struct bridge_response *resp)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = bridge_response_frame(type, id, resp, &buf, &len);

        if (r < 0)
                return r;
        return bench_guest_send_all(g->fd, buf, len);
}

static const char *bench_guest_arg(const struct bridge_request *req, size_t i)
{
        const struct bridge_process_params *p = &req->exec.params;

        return req->exec.has_params && i < p->n_args && p->args[i] && p->args[i][0] ? p->args[i] : "-";
}

static int bench_guest_on_request(struct bench_guest *g, const struct bridge_frame *f)
{
        struct bridge_request req = {};
        struct bridge_response resp = { .result = BRIDGE_HR_OK };
        const char *reason = NULL;
        uint32_t type = f->header.type;
        int r;

        if (!bridge_type_is_known_request(type)) {
                resp.result = BRIDGE_HR_NOT_IMPL;
                return bench_guest_reply(g, type, f->header.id, &resp);
        }
        r = bridge_request_decode(type, f->payload, f->payload_len, &req, &reason);
        if (r < 0) {
                fprintf(stderr, "bench-guest: bad %s: %s\n", bridge_type_name(type), reason ? reason : strerror(-r));
                resp.result = BRIDGE_HR_INVALID_ARG;
                return bench_guest_reply(g, type, f->header.id, &resp);
        }
        resp.activity_id = req.activity_id;
        switch (type) {
        case BRIDGE_RPC_NEGOTIATE_PROTOCOL:
                resp.negotiate.version = BRIDGE_PROTOCOL_VERSION;
                resp.negotiate.stdio_resume = false; /* plain hcsshim stdio: no count header */
                break;
        case BRIDGE_RPC_EXECUTE_PROCESS:
                resp.exec.pid = g->next_pid++;
                fprintf(g->ports, "%s %s %u %u %u\n", bench_guest_arg(&req, 1), bench_guest_arg(&req, 2),
                        req.exec.stdin_port, req.exec.stdout_port, req.exec.stderr_port);
                if (fflush(g->ports) != 0) {
                        bridge_request_done(&req);
                        return -EIO;
                }
                break;
        case BRIDGE_RPC_WAIT_FOR_PROCESS:
                /* The process never exits: the wait stays outstanding until we are killed. */
                bridge_request_done(&req);
                return 0;
        default: break; /* Create, Signal, Modify...: accepted and ignored */
        }
        r = bench_guest_reply(g, type, f->header.id, &resp);
        bridge_request_done(&req);
        return r;
}

static int bench_guest_run(struct bench_guest *g)
{
        for (;;) {
                struct bridge_frame f;
                const char *reason = NULL;
                size_t used = 0;
                ssize_t n;
                int k;

                while ((k = bridge_frame_parse(g->buf + used, g->len - used, &f, NULL, &reason)) > 0) {
                        if (bridge_type_class(f.header.type) == BRIDGE_CLASS_REQUEST) {
                                int r = bench_guest_on_request(g, &f);

                                if (r < 0)
                                        return r;
                        }
                        used += (size_t)k;
                }
                if (k < 0) {
                        fprintf(stderr, "bench-guest: broken bridge stream: %s\n", reason ? reason : "?");
                        return k;
                }
                memmove(g->buf, g->buf + used, g->len - used);
                g->len -= used;
                n = read(g->fd, g->buf + g->len, sizeof(g->buf) - g->len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return 0; /* the daemon let go of the VM */
                g->len += (size_t)n;
        }
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "hvsock", required_argument, NULL, 'u' },
                { "ports", required_argument, NULL, 'p' },
                {},
        };
        const char *hvsock = NULL, *ports = NULL;
        char path[BENCH_PATH_MAX];
        _cleanup_free_ struct bench_guest *g = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 'u': hvsock = optarg; break;
                case 'p': ports = optarg; break;
                default: goto usage;
                }
        }
        if (!hvsock || !ports)
                goto usage;
        if (snprintf(path, sizeof(path), "%s_%u", hvsock, BENCH_GUEST_BRIDGE_PORT) >= (int)sizeof(path)) {
                fprintf(stderr, "bench-guest: %s: path too long\n", hvsock);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        g = calloc(1, sizeof(*g));
        if (!g)
                return 2;
        g->next_pid = BENCH_GUEST_FIRST_PID;
        g->ports = fopen(ports, "we");
        if (!g->ports) {
                fprintf(stderr, "bench-guest: %s: %m\n", ports);
                return 2;
        }
        for (int i = 0;; i++) {
                g->fd = bench_unix_connect(path);
                if (g->fd >= 0 || i == BENCH_GUEST_DIAL_TRIES)
                        break;
                usleep(10000);
        }
        if (g->fd < 0) {
                fprintf(stderr, "bench-guest: cannot dial the bridge %s: %s\n", path, strerror(-g->fd));
                return 1;
        }
        /* bench_unix_connect() leaves the socket non-blocking; this loop wants to block. */
        {
                int fl = fcntl(g->fd, F_GETFL);

                if (fl < 0 || fcntl(g->fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                        return 1;
        }
        r = bench_guest_run(g);
        if (r < 0)
                fprintf(stderr, "bench-guest: %s\n", strerror(-r));
        fclose(g->ports);
        safe_close(g->fd);
        return r < 0 ? 1 : 0;
usage:
        fprintf(stderr, "usage: bench-guest --hvsock UDS_PATH --ports FILE\n");
        return 2;
}
