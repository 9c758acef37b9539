/* cli/exec.c: `exec` (attached: relays this terminal's stdio) and `attach` (conmon-format socket).
 *
 * Attached exec: the CLI makes a private 0700 directory, listens on one Unix socket per stream it
 * relays, and names those sockets as the process's endpoints in an Exec with detach = false.
 * vsockmuxd connects to them like to any socket endpoint, so the daemon needs no special path for
 * the CLI. A poll loop copies stdin to its socket and the stdout/stderr sockets to our own, until
 * the Exec reply (sent after the exit, once the streams were flushed) has arrived and every
 * output socket reached EOF. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/detach.h"
#include "cli/tty.h"
#include "util/size.h"

#define CLI_EXEC_MAX_ENV 4096u
#define CLI_EXEC_MAX_ARGV 4096u
#define CLI_EXEC_TIMEOUT_MAX_SEC 86400u
#define CLI_EXEC_DEADLINE_MAX_MS (86400u * 1000u)
#define CLI_COPY_CHUNK 65536u
/* Re-dials of the control socket while waiting for an exit: one per live upgrade it lives through. */
#define CLI_EXEC_MAX_REDIALS 16u
/* Output packets on an attach socket: one stream byte plus conmon's 8 KiB of data; larger ones
 * are accepted too, up to this. */
#define CLI_ATTACH_PACKET_MAX (65536u + 1u)
#define CLI_ATTACH_STDOUT 2
#define CLI_ATTACH_STDERR 3

enum {
        STREAM_STDIN,
        STREAM_STDOUT,
        STREAM_STDERR,
        _STREAM_MAX,
};

static const char *const stream_names[_STREAM_MAX] = { "stdin", "stdout", "stderr" };

struct exec_stream {
        const char *path;   /* --stdin/--stdout/--stderr as given, or NULL */
        char abs[PATH_MAX]; /* the endpoint sent to the daemon */
        bool relayed;       /* the CLI listens on a socket for it */
        int listen_fd;
        int conn_fd;
        bool local_dead; /* our own fd failed (e.g. stdout closed): keep draining, drop */
};

/* An attached exec: Exec is in flight until the pid is known, then Wait until the exit is. */
enum exec_phase {
        EXEC_STARTING,
        EXEC_RUNNING,
        EXEC_DONE,
};

struct exec_ctx {
        struct cli *cli;
        char *vm;
        enum exec_phase phase;
        uint32_t sid;      /* the call in flight on cli->client */
        uint32_t pid;      /* once RUNNING */
        char exec_id[128]; /* once RUNNING: what Wait names after a re-dial */
        unsigned redials;  /* of the control socket while RUNNING (a live upgrade) */
        int code;          /* once DONE */
        bool sig_proxy;
        bool terminal;      /* --tty: a console in the guest, ours in raw mode */
        bool winch_pending; /* our size changed while STARTING */
        int held_signal;    /* a signal to forward that came while STARTING; 0: none */
        bool output_seen;   /* the process wrote something: it runs, its pid is on its way */
        struct cli_tty tty;
        struct cli_detach detach;
        bool detach_on;                      /* stdin is a terminal: look for the detach keys in it */
        bool detached;                       /* they were typed: leave, the process keeps running */
        int sfd;                             /* signalfd of exec_proxied_signals (and SIGWINCH with --tty) */
        struct vsockmux_client *side_client; /* Kill and Resize while Exec or Wait is in flight */
        int64_t deadline_ns;                 /* --deadline-ms: the Exec call's timeout_nano; 0 = none */
        char dir[PATH_MAX];
        struct exec_stream s[_STREAM_MAX];
        bool stdin_eof;
        uint8_t in_buf[CLI_COPY_CHUNK]; /* a chunk of our stdin on its way to the process */
        size_t in_len, in_off;
};

static int write_all(int fd, const void *data, size_t len)
{
        const uint8_t *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                                (void)poll(&pfd, 1, -1);
                                continue;
                        }
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int make_absolute(const char *path, char *buf, size_t len)
{
        char cwd[PATH_MAX];

        if (path[0] == '/') {
                if ((size_t)snprintf(buf, len, "%s", path) >= len)
                        return -ENAMETOOLONG;
                return 0;
        }
        if (!getcwd(cwd, sizeof(cwd)))
                return -errno;
        if ((size_t)snprintf(buf, len, "%s/%s", cwd, path) >= len)
                return -ENAMETOOLONG;
        return 0;
}

/* The longest directory that still leaves room for "/stderr" in sun_path. */
#define CLI_EXEC_DIR_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - sizeof("/stderr"))

/* A 0700 directory the daemon can reach: beside the control socket first (a daemon started with
 * a private /tmp sees that one for sure), else $XDG_RUNTIME_DIR, else /tmp. */
static int make_private_dir(const struct cli *cli, char *buf, size_t len)
{
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        const char *slash = strrchr(cli->socket, '/');
        char bases[3][PATH_MAX] = {};
        int r = -ENOENT;

        if (slash && slash != cli->socket)
                snprintf(bases[0], sizeof(bases[0]), "%.*s", (int)(slash - cli->socket), cli->socket);
        if (runtime && runtime[0] == '/')
                snprintf(bases[1], sizeof(bases[1]), "%s", runtime);
        snprintf(bases[2], sizeof(bases[2]), "/tmp");

        for (unsigned i = 0; i < ELEMENTSOF(bases); i++) {
                if (!bases[i][0])
                        continue;
                if ((size_t)snprintf(buf, len, "%s/vsockmux-exec-XXXXXX", bases[i]) >= MIN(len, CLI_EXEC_DIR_MAX)) {
                        r = -ENAMETOOLONG;
                        continue;
                }
                if (mkdtemp(buf))
                        return 0;
                r = -errno;
        }
        return r;
}

static int listen_stream(struct exec_ctx *x, unsigned i)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct exec_stream *s = &x->s[i];
        int fd;

        if ((size_t)snprintf(s->abs, sizeof(s->abs), "%s/%s", x->dir, stream_names[i]) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, s->abs, strlen(s->abs) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        s->listen_fd = fd;
        s->relayed = true;
        return 0;
}

static void exec_ctx_done(struct exec_ctx *x)
{
        cli_tty_restore(&x->tty);
        x->sfd = safe_close(x->sfd);
        x->side_client = vsockmux_client_free(x->side_client);
        for (unsigned i = 0; i < _STREAM_MAX; i++) {
                struct exec_stream *s = &x->s[i];

                s->listen_fd = safe_close(s->listen_fd);
                s->conn_fd = safe_close(s->conn_fd);
                if (s->relayed)
                        (void)unlink(s->abs);
        }
        if (x->dir[0])
                (void)rmdir(x->dir);
}

/* Takes the daemon's connection for stream i if it is there; the listener then goes. */
static void accept_stream(struct exec_ctx *x, unsigned i)
{
        struct exec_stream *s = &x->s[i];
        int fd;

        if (s->listen_fd < 0)
                return;
        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return;
        s->conn_fd = fd;
        s->listen_fd = safe_close(s->listen_fd);
}

/* Copies one chunk from the daemon's stdout/stderr connection to ours. */
static void pump_output(struct exec_ctx *x, unsigned i)
{
        struct exec_stream *s = &x->s[i];
        char buf[CLI_COPY_CHUNK];
        ssize_t n = read(s->conn_fd, buf, sizeof(buf));

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (n <= 0) {
                s->conn_fd = safe_close(s->conn_fd);
                return;
        }
        x->output_seen = true;
        if (!s->local_dead && write_all(i == STREAM_STDOUT ? STDOUT_FILENO : STDERR_FILENO, buf, (size_t)n) < 0)
                /* Our reader left; keep draining so the daemon never stalls on us. */
                s->local_dead = true;
}

/* Reads our stdin only once the previous chunk went out: the daemon's socket may be full while
 * the process is busy writing output we must keep draining, so nothing here blocks. */
static void pump_stdin_read(struct exec_ctx *x)
{
        uint8_t raw[CLI_COPY_CHUNK - CLI_DETACH_KEYS_MAX];
        ssize_t n = read(STDIN_FILENO, raw, sizeof(raw));

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (n <= 0) {
                /* EOF reaches the process as the close of its stdin stream. */
                x->stdin_eof = true;
                x->s[STREAM_STDIN].conn_fd = safe_close(x->s[STREAM_STDIN].conn_fd);
                return;
        }
        /* Detach keys only on a terminal: piped input is data, whatever its bytes. */
        if (x->detach_on)
                x->detached = cli_detach_filter(&x->detach, raw, (size_t)n, x->in_buf, &x->in_len);
        else {
                memcpy(x->in_buf, raw, (size_t)n);
                x->in_len = (size_t)n;
        }
        x->in_off = 0;
}

static void pump_stdin_write(struct exec_ctx *x)
{
        struct exec_stream *s = &x->s[STREAM_STDIN];
        ssize_t n = send(s->conn_fd, x->in_buf + x->in_off, x->in_len - x->in_off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (n < 0) {
                /* The process closed its stdin or exited: stop reading ours. */
                x->stdin_eof = true;
                x->in_len = x->in_off = 0;
                s->conn_fd = safe_close(s->conn_fd);
                return;
        }
        x->in_off += (size_t)n;
        if (x->in_off == x->in_len)
                x->in_len = x->in_off = 0;
}

int cli_exit_code(const Vsockmux__V1__ExitStatus *es)
{
        switch (es ? es->kind : VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_UNSPECIFIED) {
        case VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED:
                /* An exit status carries 8 bits: `& 0xff` would make 256 a success. */
                return es->code >= 0 && es->code <= 255 ? es->code : CLI_EXIT_CODE_UNFIT;
        case VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_SIGNALED: return 128 + (es->signal & 0x7f);
        default: return CLI_EXIT_STATUS_LOST;
        }
}

static int exit_code_for(struct cli *cli, const Vsockmux__V1__ExitStatus *es)
{
        int code = cli_exit_code(es);

        if (es && es->kind == VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED && code != es->code)
                cli_error(cli, "the process exited with code %d, which an exit status cannot carry", es->code);
        else if (code == CLI_EXIT_STATUS_LOST) {
                /* The daemon's reason usually says "exit status lost" itself: say it once. */
                if (es && strncmp(es->message, "exit status lost", strlen("exit status lost")) == 0)
                        cli_error(cli, "%s", es->message);
                else
                        cli_error(cli, "exit status lost%s%s", es && es->message[0] ? ": " : "", es ? es->message : "");
        }
        return code;
}

/* The signals an attached exec forwards to the process, as podman exec's --sig-proxy does. */
static const int exec_proxied_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

/* Every one of them arrives as a read of a signalfd, so Ctrl-C or a kill of the CLI still
 * removes the socket directory. */
static int exec_signals_open(struct exec_ctx *x)
{
        sigset_t mask;

        sigemptyset(&mask);
        for (unsigned i = 0; i < ELEMENTSOF(exec_proxied_signals); i++)
                sigaddset(&mask, exec_proxied_signals[i]);
        if (x->terminal)
                sigaddset(&mask, SIGWINCH);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        x->sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        return x->sfd < 0 ? -errno : 0;
}

/* Kill and Resize go over a second connection: the first one is read for one call at a time
 * (Exec, then Wait), and vsockmux_client_recv skips frames of other calls. A failure is said and
 * the relay goes on: the process keeps running either way. */
static void exec_side_call(struct exec_ctx *x, const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc, const char *what)
{
        char full[256], why[VSOCKMUX_STATUS_MESSAGE_MAX + 128];
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;
        int r;

        if (!x->side_client) {
                r = vsockmux_client_connect(x->cli->socket, &x->side_client);
                if (r < 0) {
                        cli_error(x->cli, "cannot %s: %s", what, strerror(-r));
                        return;
                }
        }
        snprintf(full, sizeof(full), "%s/%s", VSOCKMUX_SERVICE, method);
        r = vsockmux_client_call(x->side_client, full, req, resp_desc, &m, &st);
        vsockmux_message_free(m);
        if (r < 0) {
                cli_describe_failure(x->cli, r, &st, why, sizeof(why));
                cli_error(x->cli, "cannot %s: %s", what, why);
        }
}

static void exec_forward_signal(struct exec_ctx *x, int sig)
{
        Vsockmux__V1__KillRequest req = VSOCKMUX__V1__KILL_REQUEST__INIT;
        char what[64];

        req.vm = x->vm;
        req.pid = x->pid;
        req.signal = sig;
        snprintf(what, sizeof(what), "forward SIG%s", cli_signal_name(sig) ?: "?");
        exec_side_call(x, "Kill", &req.base, &vsockmux__v1__kill_response__descriptor, what);
}

/* SIGWINCH: the console in the guest takes our new size. */
static void exec_send_resize(struct exec_ctx *x)
{
        Vsockmux__V1__ResizeRequest req = VSOCKMUX__V1__RESIZE_REQUEST__INIT;
        uint16_t h, w;

        x->winch_pending = false;
        if (cli_tty_size(STDIN_FILENO, &h, &w) < 0 && cli_tty_size(STDOUT_FILENO, &h, &w) < 0)
                return;
        req.vm = x->vm;
        req.pid = x->pid;
        req.height = h;
        req.width = w;
        exec_side_call(x, "Resize", &req.base, &vsockmux__v1__resize_response__descriptor, "resize the console");
}

/* Returns an exit code to end with, -1 to carry on, or -2 to poll again now (as exec_dispatch()). */
static int exec_on_signal(struct exec_ctx *x)
{
        struct signalfd_siginfo si;
        int sig;

        if (read(x->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
                return -1;
        sig = (int)si.ssi_signo;
        if (sig == SIGWINCH) {
                if (x->phase == EXEC_STARTING) {
                        x->winch_pending = true;
                        return -2; /* stdin, ready in the same poll, now waits for it */
                }
                if (x->phase == EXEC_RUNNING)
                        exec_send_resize(x);
                return -1;
        }
        /* Before the pid is known there is nothing to forward to yet: a first ctrl-c, or any
         * proxied signal once the process wrote output (it runs; the daemon answers an exec once
         * its record is durable, which widens that window), is held and sent with the pid. A
         * second one, another signal before any output (a supervisor stopping the CLI) or any
         * without --sig-proxy ends the CLI, honestly: the Exec may hang on a guest that never
         * connects. */
        if (x->sig_proxy && x->phase == EXEC_STARTING && (sig == SIGINT || x->output_seen) && !x->held_signal) {
                x->held_signal = sig;
                return -1;
        }
        if (!x->sig_proxy || x->phase == EXEC_STARTING) {
                cli_error(x->cli, "interrupted by SIG%s; the process may still run in the VM (see vsockmux ps)",
                          cli_signal_name(sig) ?: "?");
                return 128 + sig;
        }
        exec_forward_signal(x, sig);
        return -1;
}

/* The detach keys were typed: the CLI goes, the process stays. */
static int exec_leave_detached(struct exec_ctx *x)
{
        cli_tty_restore(&x->tty);
        fprintf(stderr, "vsockmux: detached from process %u, which keeps running (vsockmux attach %s %u)\n", x->pid,
                x->vm, x->pid);
        return 0;
}

/* The Exec reply: the pid. The CLI then waits for the exit on the same connection. */
static int exec_on_started(struct exec_ctx *x, Vsockmux__V1__ExecResponse *resp)
{
        Vsockmux__V1__WaitRequest req = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        char why[VSOCKMUX_STATUS_MESSAGE_MAX + 128];
        int r;

        x->pid = resp->pid;
        snprintf(x->exec_id, sizeof(x->exec_id), "%s", resp->exec_id ? resp->exec_id : "");
        req.vm = x->vm;
        req.pid = x->pid;
        r = vsockmux_client_send(x->cli->client, VSOCKMUX_METHOD("Wait"), &req.base, 0, 0, &x->sid);
        if (r < 0) {
                cli_describe_failure(x->cli, r, NULL, why, sizeof(why));
                cli_error(x->cli, "%s; process %u may still run, its exit status is unknown", why, x->pid);
                return CLI_EXIT_STATUS_LOST;
        }
        x->phase = EXEC_RUNNING;
        if (x->detached)
                return exec_leave_detached(x);
        if (x->winch_pending)
                exec_send_resize(x);
        if (x->held_signal)
                exec_forward_signal(x, x->held_signal);
        x->held_signal = 0;
        return -1;
}

/* The control connection closed while Wait was in flight. A live upgrade does that: the old
 * daemon goes once the new one serves on the same socket, and the process, its output sockets
 * (ours, its endpoints) and its exit went along. So dial again and wait again, by exec id; a
 * daemon that is really gone refuses the dial, and the exit is lost as before. */
static int exec_redial(struct exec_ctx *x)
{
        Vsockmux__V1__WaitRequest req = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        struct vsockmux_client *c = NULL;
        int r;

        if (x->redials++ >= CLI_EXEC_MAX_REDIALS)
                return -ECONNRESET;
        r = vsockmux_client_connect(x->cli->socket, &c);
        if (r < 0)
                return r;
        req.vm = x->vm;
        req.pid = x->pid;
        req.exec_id = x->exec_id;
        r = vsockmux_client_send(c, VSOCKMUX_METHOD("Wait"), &req.base, 0, 0, &x->sid);
        if (r < 0) {
                vsockmux_client_free(c);
                return r;
        }
        vsockmux_client_free(x->cli->client);
        x->cli->client = c;
        /* Kill and Resize dial again too, on their next use. */
        x->side_client = vsockmux_client_free(x->side_client);
        return 0;
}

/* The reply to the call in flight (Exec, then Wait). Returns an exit code to end with, or -1. */
static int exec_on_reply(struct exec_ctx *x)
{
        const ProtobufCMessageDescriptor *desc = x->phase == EXEC_STARTING ? &vsockmux__v1__exec_response__descriptor
                                                                           : &vsockmux__v1__wait_response__descriptor;
        char why[VSOCKMUX_STATUS_MESSAGE_MAX + 128];
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;
        int r;

        r = vsockmux_client_recv(x->cli->client, x->sid, desc, &m, &st);
        if (r == -EREMOTEIO && x->phase == EXEC_STARTING) {
                cli_error(x->cli, "%s (%s)", st.message, vsockmux_code_to_string(st.code));
                return CLI_EXIT_EXEC_FAILED;
        }
        if ((r == -ECONNRESET || r == -EPIPE) && x->phase == EXEC_RUNNING && exec_redial(x) == 0)
                return -1;
        if (r != VSOCKMUX_CLIENT_RESPONSE) {
                vsockmux_message_free(m);
                if (cli_daemon_stopped(r, &st)) {
                        cli_error(x->cli, "%s; `vsockmux wait %s %u` after its restart gives the exit code", st.message,
                                  x->vm, x->pid);
                        return CLI_EXIT_DAEMON_STOPPED;
                }
                cli_describe_failure(x->cli, r < 0 ? r : -EBADMSG, &st, why, sizeof(why));
                cli_error(x->cli, "%s; the process may still run, its exit status is unknown", why);
                return CLI_EXIT_STATUS_LOST;
        }
        if (x->phase == EXEC_STARTING) {
                r = exec_on_started(x, (Vsockmux__V1__ExecResponse *)m);
                vsockmux_message_free(m);
                return r;
        }
        x->code = exit_code_for(x->cli, ((Vsockmux__V1__WaitResponse *)m)->exit);
        vsockmux_message_free(m);
        x->phase = EXEC_DONE;
        /* The exit is reported after the output drained: connections the daemon made are in the
         * backlog; nothing more goes to the process, and a listener nobody dialled is moot. */
        for (unsigned i = 0; i < _STREAM_MAX; i++) {
                accept_stream(x, i);
                x->s[i].listen_fd = safe_close(x->s[i].listen_fd);
        }
        x->s[STREAM_STDIN].conn_fd = safe_close(x->s[STREAM_STDIN].conn_fd);
        return -1;
}

enum {
        POLL_CONTROL = -1,
        POLL_STDIN_READ = -2,
        POLL_STDIN_WRITE = -3,
        POLL_SIGNAL = -4,
};

#define EXEC_POLL_MAX (2 * _STREAM_MAX + 3)

/* Fills pfd/owner with what the relay waits for now; false once there is nothing left to do. */
static bool exec_poll_set(struct exec_ctx *x, struct pollfd *pfd, int *owner, unsigned *ret_n)
{
        bool running = x->phase != EXEC_DONE, outputs_open = false;
        struct exec_stream *in = &x->s[STREAM_STDIN];
        unsigned n = 0;

        for (unsigned i = 0; i < _STREAM_MAX; i++) {
                struct exec_stream *s = &x->s[i];

                if (s->listen_fd >= 0 && running) {
                        pfd[n] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
                        owner[n++] = (int)i;
                }
                if (s->conn_fd >= 0 && i != STREAM_STDIN) {
                        pfd[n] = (struct pollfd){ .fd = s->conn_fd, .events = POLLIN };
                        owner[n++] = (int)i;
                        outputs_open = true;
                }
        }
        if (!running && !outputs_open)
                return false;
        if (running) {
                pfd[n] = (struct pollfd){ .fd = vsockmux_client_fd(x->cli->client), .events = POLLIN };
                owner[n++] = POLL_CONTROL;
        }
        if (x->sfd >= 0) {
                pfd[n] = (struct pollfd){ .fd = x->sfd, .events = POLLIN };
                owner[n++] = POLL_SIGNAL;
        }
        /* A size change that waits for the pid goes to the console before the keys typed after
         * it: a shell that reads a line and then asks its size must see the new one. */
        if (running && in->conn_fd >= 0 && x->in_len > 0) {
                pfd[n] = (struct pollfd){ .fd = in->conn_fd, .events = POLLOUT };
                owner[n++] = POLL_STDIN_WRITE;
        } else if (running && in->conn_fd >= 0 && !x->stdin_eof && !x->detached && !x->winch_pending) {
                pfd[n] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
                owner[n++] = POLL_STDIN_READ;
        }
        *ret_n = n;
        return true;
}

/* Handles one ready entry. Returns an exit code to end with, -1 to go on, -2 to poll again now
 * (entries after this one may name fds just closed). */
static int exec_dispatch(struct exec_ctx *x, const struct pollfd *p, int owner)
{
        struct exec_stream *s;

        switch (owner) {
        case POLL_STDIN_READ:
                pump_stdin_read(x);
                /* Before the pid is known the CLI waits for it (stdin is read no more), so it
                 * can say which process keeps running. */
                return x->detached && x->phase != EXEC_STARTING ? exec_leave_detached(x) : -1;
        case POLL_STDIN_WRITE: pump_stdin_write(x); return -1;
        case POLL_SIGNAL: return exec_on_signal(x);
        case POLL_CONTROL: {
                int r = exec_on_reply(x);

                return r >= 0 ? r : -2;
        }
        default:
                s = &x->s[owner];
                if (p->fd == s->listen_fd)
                        accept_stream(x, (unsigned)owner);
                else if (p->fd == s->conn_fd)
                        pump_output(x, (unsigned)owner);
                return -1;
        }
}

/* The local side of an attached exec before it starts: signals caught for forwarding and, with
 * --tty, our terminal raw and its size in the request. Returns 0 or an exit code. */
static int exec_attached_prepare(struct exec_ctx *x, Vsockmux__V1__ExecRequest *req)
{
        struct cli *cli = x->cli;
        uint16_t h, w;
        int r;

        r = cli_connect(cli);
        if (r != 0)
                return CLI_EXIT_EXEC_FAILED;
        r = exec_signals_open(x);
        if (r < 0 && x->sig_proxy) {
                cli_error(cli, "cannot catch signals to forward them: %s", strerror(-r));
                return CLI_EXIT_EXEC_FAILED;
        }
        x->vm = req->vm;
        if (!x->terminal)
                return 0;
        if (cli_tty_size(STDIN_FILENO, &h, &w) == 0 || cli_tty_size(STDOUT_FILENO, &h, &w) == 0) {
                req->console_height = h;
                req->console_width = w;
        }
        /* Raw: Ctrl-C, Ctrl-Z and the rest reach the console in the guest as bytes, and its line
         * discipline (not ours) echoes and edits. Restored in exec_ctx_done(). */
        r = cli_tty_make_raw(STDIN_FILENO, &x->tty);
        if (r < 0) {
                cli_error(cli, "cannot put this terminal in raw mode: %s", strerror(-r));
                return CLI_EXIT_EXEC_FAILED;
        }
        return 0;
}

/* Polls and dispatches until the exit is in and every output reached EOF, or something ends the
 * CLI first (a signal, the detach keys, a lost connection). Returns the CLI's exit code. */
static int exec_relay(struct exec_ctx *x)
{
        for (;;) {
                struct pollfd pfd[EXEC_POLL_MAX];
                int owner[EXEC_POLL_MAX];
                unsigned n = 0;

                if (!exec_poll_set(x, pfd, owner, &n))
                        return x->code;
                if (poll(pfd, n, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        cli_error(x->cli, "poll: %s", strerror(errno));
                        return CLI_EXIT_STATUS_LOST;
                }
                for (unsigned k = 0; k < n; k++) {
                        int r;

                        if (!pfd[k].revents)
                                continue;
                        r = exec_dispatch(x, &pfd[k], owner[k]);
                        if (r >= 0)
                                return r;
                        if (r == -2)
                                break;
                }
        }
}

/* Starts the process (Exec answers with its pid), waits for its exit (Wait answers once the
 * output drained) and relays until every output EOF is in. Returns the CLI's exit code. */
static int exec_attached(struct exec_ctx *x, Vsockmux__V1__ExecRequest *req)
{
        char why[VSOCKMUX_STATUS_MESSAGE_MAX + 128];
        int r;

        r = exec_attached_prepare(x, req);
        if (r != 0)
                return r;
        /* Exec answers at once with the pid; the exit comes from the Wait sent then. */
        req->detach = true;
        r = vsockmux_client_send(x->cli->client, VSOCKMUX_METHOD("Exec"), &req->base, 0, x->deadline_ns, &x->sid);
        if (r < 0) {
                cli_describe_failure(x->cli, r, NULL, why, sizeof(why));
                cli_error(x->cli, "%s", why);
                return CLI_EXIT_EXEC_FAILED;
        }
        return exec_relay(x);
}

/* Long options without a short one. */
enum {
        OPT_STDIN = 0x100,
        OPT_TIMEOUT,
        OPT_DETACH_KEYS,
        OPT_STDIN_ONCE,
        OPT_KEEP_STDERR,
        OPT_LOG_SIZE_MAX,
        OPT_LOG_MAX_FILES,
};

#define CLI_LOG_SIZE_MAX_LIMIT (UINT64_C(1) << 40)
#define CLI_LOG_MAX_FILES 1000u

/* "SIZE": bytes, or with a K, M or G suffix (powers of 1024), from 1 to 1 TiB. */
static int parse_size(const char *s, uint64_t *ret)
{
        uint64_t v;

        if (size_parse(s, &v) < 0 || v == 0 || v > CLI_LOG_SIZE_MAX_LIMIT)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* What exec's options set besides the request and the relay's context. */
struct exec_opts {
        char **env;
        size_t n_env;
        uint32_t timeout, deadline_ms;
        bool json;
};

static int exec_add_env(struct cli *cli, struct exec_opts *o, char *kv)
{
        char **p;

        if (!strchr(kv, '=') || kv[0] == '=')
                return cli_usage_error(cli, "--env wants KEY=VALUE, got '%s'", kv);
        if (o->n_env == CLI_EXEC_MAX_ENV)
                return cli_usage_error(cli, "more than %u --env", CLI_EXEC_MAX_ENV);
        p = reallocarray(o->env, o->n_env + 1, sizeof(char *));
        if (!p)
                return cli_error(cli, "out of memory");
        o->env = p;
        o->env[o->n_env++] = kv;
        return 0;
}

static int exec_parse_sig_proxy(struct cli *cli, const char *arg, bool *ret)
{
        if (!arg || !strcmp(arg, "true"))
                *ret = true;
        else if (!strcmp(arg, "false"))
                *ret = false;
        else
                return cli_usage_error(cli, "--sig-proxy wants true or false, got '%s'", arg);
        return 0;
}

/* One option from getopt_long. Returns 0 or an exit code. */
static int exec_parse_option(struct cli *cli, int c, char **argv, Vsockmux__V1__ExecRequest *req, struct exec_ctx *x,
                             struct exec_opts *o)
{
        switch (c) {
        case 'c': req->container_id = optarg; return 0;
        case 'e': return exec_add_env(cli, o, optarg);
        case 'w': req->cwd = optarg; return 0;
        case OPT_STDIN: x->s[STREAM_STDIN].path = optarg; return 0;
        case 'o': x->s[STREAM_STDOUT].path = optarg; return 0;
        case 'E': x->s[STREAM_STDERR].path = optarg; return 0;
        case 'd': req->detach = true; return 0;
        case 't':
                x->terminal = true;
                req->terminal = true;
                return 0;
        case 'i': req->interactive = true; return 0;
        case OPT_STDIN_ONCE: req->stdin_once = true; return 0;
        case OPT_KEEP_STDERR: req->keep_stderr = true; return 0;
        case OPT_LOG_SIZE_MAX:
                if (parse_size(optarg, &req->log_size_max) < 0)
                        return cli_usage_error(cli, "--log-size-max wants a size such as 10M (1 to 1T), got '%s'",
                                               optarg);
                return 0;
        case OPT_LOG_MAX_FILES:
                if (cli_parse_u32(optarg, 1, CLI_LOG_MAX_FILES, &req->log_max_files) < 0)
                        return cli_usage_error(cli, "--log-max-files wants 1 to %u, got '%s'", CLI_LOG_MAX_FILES,
                                               optarg);
                return 0;
        case OPT_TIMEOUT:
                if (cli_parse_u32(optarg, 1, CLI_EXEC_TIMEOUT_MAX_SEC, &o->timeout) < 0)
                        return cli_usage_error(cli, "--timeout wants seconds from 1 to %u, got '%s'",
                                               CLI_EXEC_TIMEOUT_MAX_SEC, optarg);
                return 0;
        case 'j': o->json = true; return 0;
        case OPT_DETACH_KEYS:
                if (cli_detach_parse(optarg, &x->detach) < 0)
                        return cli_usage_error(cli,
                                               "--detach-keys wants keys such as 'ctrl-p,ctrl-q' "
                                               "(a-z, or ctrl- with a-z @ [ \\ ] ^ _), got '%s'",
                                               optarg);
                return 0;
        case 'S': return exec_parse_sig_proxy(cli, optarg, &x->sig_proxy);
        case 'L': req->log = optarg; return 0;
        case 'I':
                /* The daemon checks it (containerd's identifier rule) and says why. */
                req->exec_id = optarg;
                return 0;
        case 'D':
                if (cli_parse_u32(optarg, 1, CLI_EXEC_DEADLINE_MAX_MS, &o->deadline_ms) < 0)
                        return cli_usage_error(cli, "--deadline-ms wants milliseconds from 1 to %u, got '%s'",
                                               CLI_EXEC_DEADLINE_MAX_MS, optarg);
                return 0;
        default: return cli_option_error(cli, c, argv);
        }
}

/* The options, then VM and ARGV into the request. Returns 0 or an exit code. */
static int exec_parse(struct cli *cli, int argc, char **argv, Vsockmux__V1__ExecRequest *req, struct exec_ctx *x,
                      struct exec_opts *o)
{
        static const struct option options[] = { { "container", required_argument, NULL, 'c' },
                                                 { "env", required_argument, NULL, 'e' },
                                                 { "cwd", required_argument, NULL, 'w' },
                                                 { "stdin", required_argument, NULL, OPT_STDIN },
                                                 { "stdout", required_argument, NULL, 'o' },
                                                 { "stderr", required_argument, NULL, 'E' },
                                                 { "detach", no_argument, NULL, 'd' },
                                                 { "timeout", required_argument, NULL, OPT_TIMEOUT },
                                                 { "tty", no_argument, NULL, 't' },
                                                 { "interactive", no_argument, NULL, 'i' },
                                                 { "stdin-once", no_argument, NULL, OPT_STDIN_ONCE },
                                                 { "keep-stderr", no_argument, NULL, OPT_KEEP_STDERR },
                                                 { "log-size-max", required_argument, NULL, OPT_LOG_SIZE_MAX },
                                                 { "log-max-files", required_argument, NULL, OPT_LOG_MAX_FILES },
                                                 { "json", no_argument, NULL, 'j' },
                                                 { "sig-proxy", optional_argument, NULL, 'S' },
                                                 { "id", required_argument, NULL, 'I' },
                                                 { "deadline-ms", required_argument, NULL, 'D' },
                                                 { "detach-keys", required_argument, NULL, OPT_DETACH_KEYS },
                                                 { "log", required_argument, NULL, 'L' },
                                                 {} };
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":ti", options, NULL)) >= 0) {
                r = exec_parse_option(cli, c, argv, req, x, o);
                if (r != 0)
                        return r;
        }
        if (argc - optind < 2)
                return cli_usage_error(cli, "expected VM NAME, then -- and the command to run");
        if ((size_t)(argc - optind - 1) > CLI_EXEC_MAX_ARGV)
                return cli_usage_error(cli, "more than %u command arguments", CLI_EXEC_MAX_ARGV);
        req->vm = argv[optind];
        req->argv = argv + optind + 1;
        req->n_argv = (size_t)(argc - optind - 1);
        req->env = o->env;
        req->n_env = o->n_env;
        req->connect_timeout_ms = o->timeout * 1000u;
        x->deadline_ns = (int64_t)o->deadline_ms * 1000000;
        return 0;
}

/* Options that do not go together, and the endpoint paths made absolute. Returns 0 or an exit code. */
static int exec_check(struct cli *cli, const Vsockmux__V1__ExecRequest *req, struct exec_ctx *x,
                      const struct exec_opts *o)
{
        if (req->log && req->log[0] && !req->detach)
                return cli_usage_error(cli, "--log only applies with --detach (attached, the output comes here)");
        if (o->json && !req->detach)
                return cli_usage_error(cli, "--json only applies with --detach");
        if (x->terminal && x->s[STREAM_STDERR].path)
                return cli_usage_error(cli, "--stderr cannot go with --tty: a terminal's stderr is its output");
        if (req->stdin_once && !req->interactive)
                return cli_usage_error(cli, "--stdin-once applies to -i (stdin from attach clients)");
        if (req->keep_stderr && (x->terminal || x->s[STREAM_STDERR].path || !req->detach))
                return cli_usage_error(cli, "--keep-stderr keeps a detached exec's stderr without --stderr for "
                                            "attach: not with --tty, --stderr or attached");
        if ((req->log_size_max || req->log_max_files) && !(req->log && !strncmp(req->log, "k8s-file:", 9)))
                return cli_usage_error(cli, "--log-size-max and --log-max-files apply to --log k8s-file:PATH");
        if (req->interactive && x->s[STREAM_STDIN].path)
                return cli_usage_error(cli, "-i takes stdin from attach clients (or, attached, from here): "
                                            "--stdin cannot go with it");
        for (unsigned i = 0; i < _STREAM_MAX; i++) {
                int r;

                if (!x->s[i].path)
                        continue;
                r = make_absolute(x->s[i].path, x->s[i].abs, sizeof(x->s[i].abs));
                if (r < 0)
                        return cli_usage_error(cli, "--%s %s: %s", stream_names[i], x->s[i].path, strerror(-r));
        }
        return 0;
}

/* --detach: the endpoints as given; prints the pid (or, with --json, the pid and the exec id). */
static int exec_detached(struct cli *cli, struct exec_ctx *x, Vsockmux__V1__ExecRequest *req, bool json)
{
        Vsockmux__V1__ExecResponse *resp;
        ProtobufCMessage *m = NULL;

        req->stdin_path = x->s[STREAM_STDIN].abs;
        req->stdout_path = x->s[STREAM_STDOUT].abs;
        req->stderr_path = x->s[STREAM_STDERR].abs;
        if (cli_call_deadline(cli, "Exec", &req->base, x->deadline_ns, &vsockmux__v1__exec_response__descriptor, &m) !=
            0)
                return CLI_EXIT_EXEC_FAILED;
        resp = (Vsockmux__V1__ExecResponse *)m;
        if (json) {
                struct json_object *o = json_object_new_object();

                json_object_object_add(o, "pid", json_object_new_int64(resp->pid));
                json_object_object_add(o, "id", json_object_new_string(resp->exec_id));
                cli_json_print(o);
        } else
                printf("%u\n", resp->pid);
        vsockmux_message_free(m);
        return 0;
}

/* Attached: a socket in a private directory for each stream not given a path (a terminal has no
 * stderr), named as the endpoints; then the relay. Returns the CLI's exit code. */
static int exec_attached_sockets(struct cli *cli, struct exec_ctx *x, Vsockmux__V1__ExecRequest *req)
{
        int r;

        r = make_private_dir(cli, x->dir, sizeof(x->dir));
        if (r < 0) {
                x->dir[0] = '\0';
                cli_error(cli, "cannot create a private directory for the stdio sockets: %s", strerror(-r));
                return CLI_EXIT_EXEC_FAILED;
        }
        for (unsigned i = 0; i < _STREAM_MAX; i++)
                if (!x->s[i].path && !(i == STREAM_STDERR && x->terminal) && (r = listen_stream(x, i)) < 0) {
                        cli_error(cli, "cannot listen for %s in %s: %s", stream_names[i], x->dir, strerror(-r));
                        return CLI_EXIT_EXEC_FAILED;
                }
        req->stdin_path = x->s[STREAM_STDIN].abs;
        req->stdout_path = x->s[STREAM_STDOUT].abs;
        req->stderr_path = x->s[STREAM_STDERR].abs;
        /* Attached, stdin is ours, relayed through its socket (our EOF ends the process's):
         * that is what -i asks for, so the daemon need not feed it from attach clients. */
        req->interactive = req->stdin_once = false;
        return exec_attached(x, req);
}

int cli_exec(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__ExecRequest req = VSOCKMUX__V1__EXEC_REQUEST__INIT;
        struct exec_ctx x = { .cli = cli, .sig_proxy = true, .sfd = -1, .tty = { .fd = -1 } };
        struct exec_opts o = {};
        int r;

        for (unsigned i = 0; i < _STREAM_MAX; i++)
                x.s[i].listen_fd = x.s[i].conn_fd = -1;
        (void)cli_detach_parse(CLI_DETACH_KEYS_DEFAULT, &x.detach);
        x.detach_on = isatty(STDIN_FILENO);

        r = exec_parse(cli, argc, argv, &req, &x, &o);
        if (r == 0)
                r = exec_check(cli, &req, &x, &o);
        if (r == 0 && req.detach)
                r = exec_detached(cli, &x, &req, o.json);
        else if (r == 0) {
                r = exec_attached_sockets(cli, &x, &req);
                exec_ctx_done(&x);
        }
        free(o.env);
        return r;
}

/* ---- attach ------------------------------------------------------------------------------ */

/* One `vsockmux attach`: what Attach answered and the local side of the relay. */
struct attach_ctx {
        struct cli *cli;
        const char *vm;
        uint32_t pid;  /* the daemon's answer: an exec id names it too */
        bool terminal; /* the process has a console */
        bool forward;  /* the process has a stdin: what we read goes to it */
        int fd;        /* the attach socket */
        int winch_fd;  /* signalfd of SIGWINCH with a terminal, else -1 */
        struct cli_tty tty;
        struct cli_detach detach;
        bool detach_on; /* our stdin is a terminal: look for the detach keys in it */
        uint8_t *buf;
};

static void attach_on_winch(struct attach_ctx *a, bool read_signal)
{
        Vsockmux__V1__ResizeRequest req = VSOCKMUX__V1__RESIZE_REQUEST__INIT;
        struct signalfd_siginfo si;
        ProtobufCMessage *m = NULL;
        uint16_t h, w;

        if (read_signal && read(a->winch_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
                return;
        if (cli_tty_size(STDIN_FILENO, &h, &w) < 0 && cli_tty_size(STDOUT_FILENO, &h, &w) < 0)
                return;
        req.vm = (char *)a->vm;
        req.pid = a->pid;
        req.height = h;
        req.width = w;
        /* The attach connection is idle after Attach: a failure is said by cli_call, and we go on. */
        if (cli_call(a->cli, "Resize", &req.base, &vsockmux__v1__resize_response__descriptor, &m) == 0)
                vsockmux_message_free(m);
}

/* A terminal process: ours goes raw, and SIGWINCH (read from winch_fd) resizes its console. */
static int attach_terminal_setup(struct attach_ctx *a)
{
        sigset_t mask;
        int r;

        r = cli_tty_make_raw(STDIN_FILENO, &a->tty);
        if (r < 0)
                return cli_error(a->cli, "cannot put this terminal in raw mode: %s", strerror(-r));
        sigemptyset(&mask);
        sigaddset(&mask, SIGWINCH);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) == 0)
                a->winch_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (a->winch_fd >= 0)
                attach_on_winch(a, false); /* our size now, which may not be the console's */
        return 0;
}

/* One output packet to our stdout or stderr. Returns 1 at the end of the output, 0 to go on, or
 * an exit code (> 1) after saying why. */
static int attach_pump_output(struct attach_ctx *a, bool out_dead[2])
{
        ssize_t n = recv(a->fd, a->buf, CLI_ATTACH_PACKET_MAX, 0);
        int which;

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return 0;
        if (n < 0)
                return cli_error(a->cli, "reading the attach socket: %s", strerror(errno)) + 1;
        if (n == 0)
                return 1; /* the process's output ended */
        if (n < 2 || (a->buf[0] != CLI_ATTACH_STDOUT && a->buf[0] != CLI_ATTACH_STDERR))
                return 0;
        which = a->buf[0] == CLI_ATTACH_STDOUT ? 0 : 1;
        if (!out_dead[which] && write_all(which ? STDERR_FILENO : STDOUT_FILENO, a->buf + 1, (size_t)n - 1) < 0)
                out_dead[which] = true;
        return 0;
}

/* A chunk of our stdin to the process (conmon's format: raw bytes in). Returns 1 once the detach
 * keys were typed, 0 to go on; *stdin_open goes false at our EOF or when the socket refuses. */
static int attach_pump_stdin(struct attach_ctx *a, bool *stdin_open)
{
        uint8_t in[8192];
        size_t len = 0;
        ssize_t n = read(STDIN_FILENO, in, sizeof(in) - CLI_DETACH_KEYS_MAX);
        bool detached = false;

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return 0;
        if (n <= 0) {
                /* No half-close: on a SEQPACKET attach socket it reads as the client leaving,
                 * and output must keep coming. */
                *stdin_open = false;
                return 0;
        }
        /* Detach keys only on a terminal: piped input is data, whatever its bytes. */
        if (a->detach_on)
                detached = cli_detach_filter(&a->detach, in, (size_t)n, a->buf, &len);
        else {
                memcpy(a->buf, in, (size_t)n);
                len = (size_t)n;
        }
        if (a->forward && len > 0 && send(a->fd, a->buf, len, MSG_NOSIGNAL) < 0)
                *stdin_open = false;
        if (!detached)
                return 0;
        fprintf(stderr, "vsockmux: detached from process %u, which keeps running\n", a->pid);
        return 1;
}

/* Relays the attach socket's output packets to our stdout/stderr and our stdin to it, until the
 * output ends (0) or the detach keys are typed on a terminal (0, the process keeps running). */
static int attach_relay(struct attach_ctx *a)
{
        /* Without a stdin in the process our stdin is read only for the detach keys. */
        bool stdin_open = a->forward || a->detach_on, out_dead[2] = {};

        for (;;) {
                struct pollfd pfd[3] = {
                        { .fd = a->fd, .events = POLLIN },
                        { .fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
                        { .fd = a->winch_fd, .events = POLLIN },
                };
                int r;

                if (poll(pfd, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return cli_error(a->cli, "poll: %s", strerror(errno));
                }
                if (pfd[0].revents && (r = attach_pump_output(a, out_dead)) != 0)
                        return r == 1 ? 0 : r - 1;
                if (pfd[1].revents && attach_pump_stdin(a, &stdin_open) == 1)
                        return 0;
                if (pfd[2].revents)
                        attach_on_winch(a, true);
        }
}

/* Attach by pid or exec id: the socket's path, opened on the daemon's side, then connected here
 * (a->fd). With --print-path only the path is printed. Returns 0 or an exit code. */
static int attach_open(struct attach_ctx *a, Vsockmux__V1__AttachRequest *req, bool print_path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Vsockmux__V1__AttachResponse *resp;
        ProtobufCMessage *m = NULL;
        int r;

        r = cli_call(a->cli, "Attach", &req->base, &vsockmux__v1__attach_response__descriptor, &m);
        if (r != 0)
                return r;
        resp = (Vsockmux__V1__AttachResponse *)m;
        if (strlen(resp->socket_path) >= sizeof(sa.sun_path) || !resp->socket_path[0]) {
                r = cli_error(a->cli, "vsockmuxd named an unusable attach socket '%s'", resp->socket_path);
                vsockmux_message_free(m);
                return r;
        }
        memcpy(sa.sun_path, resp->socket_path, strlen(resp->socket_path) + 1);
        a->pid = resp->pid ? resp->pid : req->pid;
        a->terminal = resp->terminal;
        a->forward = resp->stdin;
        vsockmux_message_free(m);
        /* For conmon-format clients of their own: the socket is open now; connect to it yourself. */
        if (print_path) {
                printf("%s\n", sa.sun_path);
                return fflush(stdout) == 0 ? 0 : cli_error(a->cli, "writing the path: %s", strerror(errno));
        }
        a->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (a->fd < 0 || connect(a->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return cli_error(a->cli, "cannot connect to the attach socket %s: %s", sa.sun_path, strerror(errno));
        if (!a->forward && a->detach_on)
                fprintf(stderr, "vsockmux: process %u has no stdin (start it with -i): attached to its output only\n",
                        a->pid);
        return 0;
}

static int attach_parse(struct attach_ctx *a, int argc, char **argv, Vsockmux__V1__AttachRequest *req,
                        bool *ret_print_path)
{
        static const struct option options[] = { { "print-path", no_argument, NULL, 'p' },
                                                 { "detach-keys", required_argument, NULL, 'k' },
                                                 {} };
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                if (c == 'p')
                        *ret_print_path = true;
                else if (c == 'k') {
                        if (cli_detach_parse(optarg, &a->detach) < 0)
                                return cli_usage_error(a->cli,
                                                       "--detach-keys wants keys such as 'ctrl-p,ctrl-q' "
                                                       "(a-z, or ctrl- with a-z @ [ \\ ] ^ _), got '%s'",
                                                       optarg);
                } else
                        return cli_option_error(a->cli, c, argv);
        }
        if (argc - optind != 2)
                return cli_usage_error(a->cli, "expected VM NAME and PID or ID");
        req->vm = argv[optind];
        a->vm = req->vm;
        return cli_parse_target(a->cli, argv[optind + 1], &req->pid, &req->exec_id);
}

/* Connected: a terminal goes raw and follows its size, then the relay. */
static int attach_run(struct attach_ctx *a)
{
        int r;

        a->buf = malloc(CLI_ATTACH_PACKET_MAX);
        if (!a->buf)
                return cli_error(a->cli, "out of memory");
        if (a->terminal) {
                r = attach_terminal_setup(a);
                if (r != 0)
                        return r;
        }
        return attach_relay(a);
}

int cli_attach(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__AttachRequest req = VSOCKMUX__V1__ATTACH_REQUEST__INIT;
        struct attach_ctx a = { .cli = cli, .fd = -1, .winch_fd = -1, .tty = { .fd = -1 } };
        bool print_path = false;
        int r;

        (void)cli_detach_parse(CLI_DETACH_KEYS_DEFAULT, &a.detach);
        a.detach_on = isatty(STDIN_FILENO);
        r = attach_parse(&a, argc, argv, &req, &print_path);
        if (r == 0)
                r = attach_open(&a, &req, print_path);
        if (r == 0 && a.fd >= 0)
                r = attach_run(&a);
        cli_tty_restore(&a.tty);
        safe_close(a.winch_fd);
        safe_close(a.fd);
        free(a.buf);
        return r;
}
