/* relay/relay-demo.c: vsockmux-relay-demo: guests dial hybrid-vsock ports, the relay carries their stdio to this process. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relay/relay.h"
#include "util/log.h"

#define DEMO_TIMEOUT_NS (30ull * 1000 * 1000 * 1000)
#define DEMO_PORT_LINES 1025
#define DEMO_PORT_TR_STDIN 1026
#define DEMO_PORT_TR_STDOUT 1027
#define DEMO_STREAMS 3

static const char demo_host_input[] = "hello from the host, through the guest's stdin\n";

struct demo_stream {
        struct demo *demo;
        const char *name;
        uint32_t port;
        enum relay_stream_dir dir;
        int endpoint_fd;
        struct relay_listener *listener;
        struct relay_stream *stream;
        struct relay_stream_counters counters;
        int error;
        bool done;
};

struct demo {
        struct relay *relay;
        struct relay_transport transport;
        struct demo_stream streams[DEMO_STREAMS];
        unsigned done;
};

static void demo_on_done(struct relay_stream *s, int error, void *userdata)
{
        struct demo_stream *d = userdata;

        relay_stream_get_counters(s, &d->counters);
        d->error = error;
        d->done = true;
        d->demo->done++;
}

static const struct relay_stream_ops demo_stream_ops = { .on_done = demo_on_done };

static void demo_on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct demo_stream *d = userdata;
        char label[64];
        int k;

        if (fd < 0) {
                log_errno(LOG_LEVEL_ERROR, fd, "demo: listener for %s failed", d->name);
                d->error = fd;
                d->done = true;
                d->demo->done++;
                return;
        }
        k = relay_stream_new(d->demo->relay, d->dir, fd, d->endpoint_fd, &demo_stream_ops, d, &d->stream);
        if (k < 0) {
                log_errno(LOG_LEVEL_ERROR, k, "demo: stream for %s", d->name);
                close(fd);
                d->error = k;
                d->done = true;
                d->demo->done++;
                return;
        }
        d->endpoint_fd = -1; /* the stream owns it now */
        snprintf(label, sizeof(label), "%s port %u", d->name, d->port);
        relay_stream_set_label(d->stream, label);
}

/* The guest side: dial <uds>_<port> like a guest agent would over vsock. */
static int demo_dial(const struct relay_transport *t, uint32_t port)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (relay_transport_hvsock_path(t, port, sa.sun_path, sizeof(sa.sun_path)) < 0)
                return -1;
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0)
                return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Forks a "guest process": its stdin/stdout are vsock connections it dialled itself. */
static pid_t demo_spawn_guest(const struct relay_transport *t, uint32_t stdin_port, uint32_t stdout_port,
                              const char *const argv[])
{
        pid_t pid = fork();

        if (pid != 0)
                return pid;
        if (stdin_port) {
                int fd = demo_dial(t, stdin_port);
                if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
                        _exit(126);
                close(fd);
        }
        if (stdout_port) {
                int fd = demo_dial(t, stdout_port);
                if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
                        _exit(126);
                close(fd);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
}

static int demo_wait(pid_t pid)
{
        int status;

        if (waitpid(pid, &status, 0) != pid)
                return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int demo_run(struct demo *demo, const char *dir)
{
        static const char *const lines_argv[] = { "sh", "-c", "for i in 1 2 3; do echo line $i; done", NULL };
        static const char *const tr_argv[] = { "tr", "a-z", "A-Z", NULL };
        struct relay_stats stats;
        uint64_t deadline;
        pid_t lines_pid, tr_pid;
        int input[2], k, rc = 0;

        demo->transport = (struct relay_transport){ .kind = RELAY_TRANSPORT_HVSOCK };
        snprintf(demo->transport.uds_path, sizeof(demo->transport.uds_path), "%s/vm.vsock", dir);

        /* The host's stdin for the tr guest: a pipe holding one line, then EOF. */
        if (pipe2(input, O_CLOEXEC) < 0)
                return -errno;
        if (write(input[1], demo_host_input, strlen(demo_host_input)) != (ssize_t)strlen(demo_host_input))
                return -EIO;
        close(input[1]);

        demo->streams[0] = (struct demo_stream){
                .demo = demo,
                .name = "sh stdout",
                .port = DEMO_PORT_LINES,
                .dir = RELAY_STREAM_FROM_GUEST,
                .endpoint_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3),
        };
        demo->streams[1] = (struct demo_stream){
                .demo = demo,
                .name = "tr stdin",
                .port = DEMO_PORT_TR_STDIN,
                .dir = RELAY_STREAM_TO_GUEST,
                .endpoint_fd = input[0],
        };
        demo->streams[2] = (struct demo_stream){
                .demo = demo,
                .name = "tr stdout",
                .port = DEMO_PORT_TR_STDOUT,
                .dir = RELAY_STREAM_FROM_GUEST,
                .endpoint_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3),
        };

        /* Every listener exists before its guest is started. */
        for (unsigned i = 0; i < DEMO_STREAMS; i++) {
                struct demo_stream *d = &demo->streams[i];
                k = relay_listen(demo->relay, &demo->transport, d->port, RELAY_LISTEN_ONCE, demo_on_accept, d,
                                 &d->listener);
                if (k < 0)
                        return log_errno(LOG_LEVEL_ERROR, k, "demo: listen on port %u", d->port);
        }

        lines_pid = demo_spawn_guest(&demo->transport, 0, DEMO_PORT_LINES, lines_argv);
        if (lines_pid < 0)
                return -errno;
        /* One at a time so the demo's output reads in order. */
        for (deadline = relay_now_ns(demo->relay) + DEMO_TIMEOUT_NS; !demo->streams[0].done;) {
                k = relay_run_once(demo->relay, 100 * 1000 * 1000);
                if (k < 0)
                        return k;
                if (relay_now_ns(demo->relay) > deadline)
                        return -ETIMEDOUT;
        }
        tr_pid = demo_spawn_guest(&demo->transport, DEMO_PORT_TR_STDIN, DEMO_PORT_TR_STDOUT, tr_argv);
        if (tr_pid < 0)
                return -errno;
        while (demo->done < DEMO_STREAMS) {
                k = relay_run_once(demo->relay, 100 * 1000 * 1000);
                if (k < 0)
                        return k;
                if (relay_now_ns(demo->relay) > deadline)
                        return -ETIMEDOUT;
        }

        relay_get_stats(demo->relay, &stats);
        printf("--- relay counters\n");
        for (unsigned i = 0; i < DEMO_STREAMS; i++) {
                struct demo_stream *d = &demo->streams[i];
                printf("%-10s port %u %-10s rx_guest=%" PRIu64 " tx_guest=%" PRIu64 " rx_endpoint=%" PRIu64
                       " tx_endpoint=%" PRIu64 " result=%s\n",
                       d->name, d->port, relay_stream_dir_to_string(d->dir), d->counters.rx_guest, d->counters.tx_guest,
                       d->counters.rx_endpoint, d->counters.tx_endpoint, d->error ? strerror(-d->error) : "ok");
                if (d->error)
                        rc = d->error;
        }
        printf("bytes relayed: %" PRIu64 ", pool: %u buffers provided, %u in use, %zu MiB reserved\n",
               stats.bytes_relayed, stats.pool_bufs_total, stats.pool_bufs_in_use, stats.pool_bytes >> 20);
        printf("stream capacity (RLIMIT_NOFILE): %u\n", relay_stream_capacity(demo->relay));
        printf("guest exit codes: sh=%d tr=%d\n", demo_wait(lines_pid), demo_wait(tr_pid));
        return rc;
}

int main(int argc, char **argv)
{
        _cleanup_(relay_freep) struct relay *relay = NULL;
        struct demo demo = {};
        char dir[] = "/tmp/vsockmux-relay-demo.XXXXXX";
        int k;

        if (argc > 1) {
                fprintf(stderr, "usage: %s (no arguments)\n", argv[0]);
                return 2;
        }
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        k = relay_new(NULL, &relay);
        if (k < 0) {
                log_errno(LOG_LEVEL_ERROR, k, "demo: relay_new");
                rmdir(dir);
                return 1;
        }
        demo.relay = relay;
        printf("vsockmux relay demo: guests dial %s/vm.vsock_<port>\n", dir);
        fflush(stdout);
        k = demo_run(&demo, dir);
        for (unsigned i = 0; i < DEMO_STREAMS; i++) {
                relay_stream_free(demo.streams[i].stream);
                relay_listener_free(demo.streams[i].listener);
                safe_close(demo.streams[i].endpoint_fd);
        }
        relay = relay_free(relay);
        if (rmdir(dir) < 0)
                perror("rmdir");
        if (k < 0) {
                log_errno(LOG_LEVEL_ERROR, k, "demo failed");
                return 1;
        }
        return 0;
}
