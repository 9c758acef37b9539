/* daemon/upgrade.c: live upgrade: the old daemon spawns the new binary with a socketpair on fd 3,
 * then holds and freezes what it hands over, sends the Handover with its fds, and waits on the loop
 * for "ready"; a missing binary, a crash at start, a refusal or no answer within the deadline thaws it. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/handover-wire.h"
#include "daemon/savestate.h"
#include "daemon/upgrade.h"
#include "util/array.h"

extern char **environ;

#define UPGRADE_ANSWER_MAX 1024u
#define UPGRADE_READY "ready"
/* The old daemon's commit, after "ready": only then may the new one run its loop. */
#define UPGRADE_GO "go"
/* How long a new daemon that closed the socket may take to exit before it is killed. */
#define UPGRADE_REAP_WAIT_MS 2000

enum upgrade_state {
        UPGRADE_IDLE,
        UPGRADE_HOLDING,     /* the ops are holding the VMs quiet; upgrade_held() is awaited */
        UPGRADE_WAITING,     /* the new daemon has the handover; its answer is awaited */
        UPGRADE_HANDED_OVER, /* it serves; this daemon is going */
};

/* The poll for the answer lives apart: its completion may come after the upgrade is freed (a
 * daemon stopped mid-upgrade), and then finds u NULL and frees only itself. */
struct upgrade_poll {
        struct relay_op op;
        struct upgrade *u;
};

struct upgrade {
        struct relay *relay;
        const struct upgrade_ops *ops;
        void *userdata;
        char **argv; /* argv[0] is replaced by the binary each time */
        size_t argc;
        enum upgrade_state state;
        char *binary;
        pid_t child;
        int sock;
        int store_fd;              /* upgrade_store(): the handover socket's other end, for ops->store; else -1 */
        struct upgrade_poll *poll; /* the armed poll on sock, NULL when none */
        struct relay_timer *deadline;
        uint64_t timeout_ns;
        Vsockmux__State__Handover handover;
        struct upgrade_fds fds;
        upgrade_done_fn done;
        void *done_userdata;
};

int upgrade_fds_add(struct upgrade_fds *f, int fd, int32_t *ret_index)
{
        if (f->n == HANDOVER_MAX_FDS) {
                safe_close(fd);
                return -E2BIG;
        }
        if (ARRAY_RESERVE_ONE(f->fds, f->n, f->cap, 16) < 0) {
                safe_close(fd);
                return -ENOMEM;
        }
        f->fds[f->n] = fd;
        *ret_index = (int32_t)f->n++;
        return 0;
}

static void fds_clear(struct upgrade_fds *f)
{
        for (size_t i = 0; i < f->n; i++)
                safe_close(f->fds[i]);
        free(f->fds);
        *f = (struct upgrade_fds){};
}

int upgrade_self_path(char **ret)
{
        static const char deleted[] = " (deleted)";
        char buf[4096];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        size_t len;
        char *p;

        if (n < 0)
                return negative_errno();
        if ((size_t)n == sizeof(buf) - 1)
                return -ENAMETOOLONG;
        len = (size_t)n;
        /* A package upgrade replaced the file: its new version is what we want, by that path. */
        if (len > sizeof(deleted) - 1 && strcmp(buf + len - (sizeof(deleted) - 1), deleted) == 0)
                len -= sizeof(deleted) - 1;
        buf[len] = '\0';
        p = strdup(buf);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static void timer_fired(struct relay_timer *t, void *userdata);
static int hand_over(struct upgrade *u, char *why, size_t len);
static void poll_done(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags);
static void cancel_poll(struct upgrade *u);

int upgrade_new(struct relay *r, char *const argv[], const struct upgrade_ops *ops, void *userdata,
                struct upgrade **ret)
{
        _cleanup_(upgrade_freep) struct upgrade *u = calloc(1, sizeof(*u));
        size_t n = 0;
        int k;

        if (!u)
                return -ENOMEM;
        u->relay = r;
        u->ops = ops;
        u->userdata = userdata;
        u->sock = -1;
        u->store_fd = -1;
        u->argv = calloc(UPGRADE_MAX_ARGS + 3, sizeof(char *));
        if (!u->argv)
                return -ENOMEM;
        /* argv[0] is the binary of each attempt: only the options are kept. */
        n = 1;
        for (size_t i = 1; argv[0] && argv[i]; i++) {
                /* A daemon that came from an upgrade passes its own socket option on: drop it. */
                if (strcmp(argv[i], UPGRADE_HANDOVER_OPTION) == 0) {
                        if (argv[i + 1])
                                i++;
                        continue;
                }
                if (strncmp(argv[i], UPGRADE_HANDOVER_OPTION "=", sizeof(UPGRADE_HANDOVER_OPTION)) == 0)
                        continue;
                if (n == UPGRADE_MAX_ARGS)
                        return -E2BIG;
                u->argv[n] = strdup(argv[i]);
                if (!u->argv[n++])
                        return -ENOMEM;
        }
        u->argc = n;
        k = relay_timer_new(r, timer_fired, u, &u->deadline);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(u);
        return 0;
}

/* A new daemon that will get nothing: it has touched no guest connection. */
static void end_child(struct upgrade *u)
{
        if (u->child > 0) {
                (void)kill(u->child, SIGKILL);
                (void)waitpid(u->child, NULL, 0);
                u->child = 0;
        }
        u->sock = safe_close(u->sock);
        u->store_fd = safe_close(u->store_fd);
}

struct upgrade *upgrade_free(struct upgrade *u)
{
        if (!u)
                return NULL;
        /* A daemon stopped mid-hold: the holds must not call back into a freed upgrade. */
        if (u->state == UPGRADE_HOLDING)
                u->ops->unhold(u->userdata, NULL, 0);
        /* What freeze put in the handover (the VMs' states, the events) is the ops' to free. */
        if (u->state == UPGRADE_WAITING)
                u->ops->handover_done(u->userdata, &u->handover);
        u->deadline = relay_timer_free(u->deadline);
        cancel_poll(u);
        /* A new daemon that serves already (handed over) is left alone. */
        if (u->state == UPGRADE_WAITING || u->state == UPGRADE_HOLDING)
                end_child(u);
        safe_close(u->sock);
        safe_close(u->store_fd);
        fds_clear(&u->fds);
        for (size_t i = 1; u->argv && i < u->argc; i++)
                free(u->argv[i]);
        free(u->argv);
        free(u->binary);
        free(u);
        return NULL;
}

/* Waits a little for a child that closed its end, then kills it; describes how it ended. */
static void reap(struct upgrade *u, char *buf, size_t len)
{
        int status = 0;
        pid_t p = 0;

        for (int waited = 0; waited < UPGRADE_REAP_WAIT_MS; waited += 10) {
                p = waitpid(u->child, &status, WNOHANG);
                if (p != 0)
                        break;
                nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000 }, NULL);
        }
        if (p == 0) {
                (void)kill(u->child, SIGKILL);
                p = waitpid(u->child, &status, 0);
                snprintf(buf, len, "closed the handover socket without an answer and was killed");
        } else if (p < 0)
                snprintf(buf, len, "ended (its status is unknown: %s)", strerror(errno));
        else if (WIFEXITED(status))
                snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
        else
                snprintf(buf, len, "ended");
        u->child = 0;
}

static void cancel_poll(struct upgrade *u)
{
        struct io_uring_sqe *sqe;

        if (!u->poll)
                return;
        sqe = relay_get_sqe(u->relay);
        if (sqe) {
                io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&u->poll->op);
                relay_sqe_set_ignore(sqe);
        }
        /* Its completion (cancelled or not) now only frees it. */
        u->poll->u = NULL;
        u->poll = NULL;
}

/* Ends the attempt: 0 hands over, anything else thaws; done is told either way. */
static void finish(struct upgrade *u, int r, const char *why)
{
        upgrade_done_fn done = u->done;
        void *done_userdata = u->done_userdata;
        pid_t pid = u->child;

        relay_timer_disarm(u->deadline);
        cancel_poll(u);
        if (r < 0) {
                end_child(u);
                u->ops->thaw(u->userdata, &u->handover, &u->fds);
                u->state = UPGRADE_IDLE;
        } else {
                u->sock = safe_close(u->sock);
                u->state = UPGRADE_HANDED_OVER;
        }
        u->ops->handover_done(u->userdata, &u->handover);
        fds_clear(&u->fds);
        u->done = NULL;
        if (done)
                done(r, r < 0 ? 0 : pid, u->binary, why, done_userdata);
        if (r == 0)
                u->ops->handed_over(u->userdata, pid);
}

static void timer_fired(struct relay_timer *t, void *userdata)
{
        struct upgrade *u = userdata;
        char why[UPGRADE_WHY_MAX];

        (void)t;
        if (u->state == UPGRADE_HOLDING) {
                upgrade_done_fn done = u->done;
                char what[UPGRADE_WHY_MAX / 2];

                what[0] = '\0';
                u->state = UPGRADE_IDLE;
                end_child(u);
                u->ops->unhold(u->userdata, what, sizeof(what));
                u->done = NULL;
                snprintf(why, sizeof(why),
                         "%s was not quiet within %llu ms, so nothing was handed to %s; this "
                         "daemon serves on",
                         what[0] ? what : "a VM", (unsigned long long)(u->timeout_ns / 1000000), u->binary);
                if (done)
                        done(-ETIMEDOUT, 0, u->binary, why, u->done_userdata);
                return;
        }
        if (u->state != UPGRADE_WAITING)
                return;
        snprintf(why, sizeof(why), "%s was not ready within %llu ms; it was killed and this daemon serves on",
                 u->binary, (unsigned long long)(u->timeout_ns / 1000000));
        finish(u, -ETIMEDOUT, why);
}

static void answer_arrived(struct upgrade *u)
{
        _cleanup_(handover_msg_freep) struct handover_msg *m = NULL;
        char why[UPGRADE_WHY_MAX], how[128];
        uint32_t version = 0;
        int r;

        r = handover_recv(u->sock, HANDOVER_MAGIC_ANSWER, &m, &version);
        if (r == 0 && m->hdr.len == strlen(UPGRADE_READY) && memcmp(m->payload, UPGRADE_READY, m->hdr.len) == 0) {
                /* The new daemon waits for this before it touches a guest connection: a deadline
                 * that fired first killed it idle, so what we take back is still exact. */
                r = handover_send(u->sock, HANDOVER_MAGIC_ANSWER, UPGRADE_GO, strlen(UPGRADE_GO), NULL, 0);
                if (r >= 0) {
                        finish(u, 0, NULL);
                        return;
                }
                reap(u, how, sizeof(how));
                snprintf(why, sizeof(why), "%s %s after it was ready, before it served; this daemon serves on",
                         u->binary, how);
                finish(u, -ECHILD, why);
                return;
        }
        if (r == 0) {
                size_t n = MIN((size_t)m->hdr.len, (size_t)UPGRADE_ANSWER_MAX);

                for (size_t i = 0; i < n; i++)
                        if (m->payload[i] < 0x20 || m->payload[i] > 0x7e)
                                m->payload[i] = '?';
                snprintf(why, sizeof(why), "%s refused the handover: %.*s; this daemon serves on", u->binary, (int)n,
                         (const char *)m->payload);
                finish(u, -EPROTO, why);
                return;
        }
        if (r == -EPIPE || r == -ECONNRESET) {
                reap(u, how, sizeof(how));
                snprintf(why, sizeof(why), "%s %s before it was ready; this daemon serves on", u->binary, how);
                finish(u, -ECHILD, why);
                return;
        }
        if (r == -EPROTONOSUPPORT)
                snprintf(why, sizeof(why), "%s answered in handover version %u, this daemon speaks %u; it serves on",
                         u->binary, version, HANDOVER_WIRE_VERSION);
        else
                snprintf(why, sizeof(why), "%s answered something unreadable (%s); this daemon serves on", u->binary,
                         strerror(-r));
        finish(u, r, why);
}

static void poll_done(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags)
{
        struct upgrade_poll *p = container_of(op, struct upgrade_poll, op);
        struct upgrade *u = p->u;

        (void)r;
        (void)cqe_flags;
        free(p);
        if (!u)
                return;
        u->poll = NULL;
        if (u->state != UPGRADE_WAITING || u->sock < 0 || res == -ECANCELED)
                return;
        answer_arrived(u);
}

static int arm_poll(struct upgrade *u)
{
        struct upgrade_poll *p = calloc(1, sizeof(*p));
        struct io_uring_sqe *sqe;

        if (!p)
                return -ENOMEM;
        sqe = relay_get_sqe(u->relay);
        if (!sqe) {
                free(p);
                return -EIO;
        }
        p->op.fn = poll_done;
        p->u = u;
        io_uring_prep_poll_add(sqe, u->sock, POLLIN);
        relay_sqe_set_op(sqe, &p->op);
        u->poll = p;
        return 0;
}

static int set_timeout(int fd, int opt, uint64_t ns)
{
        struct timeval tv = { .tv_sec = (time_t)(ns / 1000000000ull),
                              .tv_usec = (suseconds_t)(ns % 1000000000ull / 1000) };

        return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)) < 0 ? negative_errno() : 0;
}

/* Starts binary with the daemon's options and the child's end of the socket as fd 3. */
static int spawn(struct upgrade *u, int child_end, pid_t *ret)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        char fdarg[16];
        sigset_t none;
        pid_t pid;
        int r;

        snprintf(fdarg, sizeof(fdarg), "%d", UPGRADE_HANDOVER_FD);
        u->argv[0] = u->binary;
        u->argv[u->argc] = (char *)UPGRADE_HANDOVER_OPTION;
        u->argv[u->argc + 1] = fdarg;
        u->argv[u->argc + 2] = NULL;
        sigemptyset(&none);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        /* The daemon blocks the signals its signalfd reads; the new one sets up its own. */
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        posix_spawn_file_actions_adddup2(&fa, child_end, UPGRADE_HANDOVER_FD);
        r = posix_spawn(&pid, u->binary, &fa, &attr, u->argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        u->argv[0] = NULL;
        u->argv[u->argc] = NULL;
        u->argv[u->argc + 1] = NULL;
        if (r != 0)
                return -r;
        *ret = pid;
        return 0;
}

static int send_handover(struct upgrade *u)
{
        size_t len = vsockmux__state__handover__get_packed_size(&u->handover);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);

        if (!buf)
                return -ENOMEM;
        vsockmux__state__handover__pack(&u->handover, buf);
        return handover_send(u->sock, HANDOVER_MAGIC_STATE, buf, len, u->fds.fds, u->fds.n);
}

/* The new daemon starts before anything is held, so its exec, loader and io_uring set-up are not
 * part of the guests' stall: it waits on fd 3 for the handover. Sets u->sock and u->child, or
 * -errno with why and neither. */
static int start_child(struct upgrade *u, char *why, size_t len)
{
        _cleanup_close_ int child_end = -1;
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                r = negative_errno();
                return snprintf(why, len, "socketpair: %s", strerror(-r)), r;
        }
        u->sock = sv[0];
        /* Away from fd 3, so dup2 onto it clears close-on-exec. */
        child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, UPGRADE_HANDOVER_FD + 1);
        safe_close(sv[1]);
        if (child_end < 0) {
                r = negative_errno();
                snprintf(why, len, "fcntl: %s", strerror(-r));
        } else if ((r = set_timeout(u->sock, SO_SNDTIMEO, u->timeout_ns)) < 0 ||
                   (r = set_timeout(u->sock, SO_RCVTIMEO, 2ull * 1000000000ull)) < 0)
                snprintf(why, len, "setsockopt: %s", strerror(-r));
        else if ((r = spawn(u, child_end, &u->child)) < 0)
                snprintf(why, len, "cannot run %s: %s; this daemon serves on", u->binary, strerror(-r));
        if (r < 0)
                u->sock = safe_close(u->sock);
        return r;
}

/* A failure the caller reports itself: everything thaws, done is not called. */
static void finish_quietly(struct upgrade *u, int r, const char *why)
{
        upgrade_done_fn done = u->done;

        u->done = NULL;
        finish(u, r, why);
        u->done = done;
}

/* upgrade_store(), once the handover was sent (r < 0: it was not): nobody reads it until the
 * next daemon starts, so our end closes now and the reader finds an end behind the message. */
static int hand_to_store(struct upgrade *u, int r, char *why, size_t len)
{
        u->sock = safe_close(u->sock);
        if (r == -EAGAIN)
                snprintf(why, len, "the handover (%zu fds) did not fit its socket (a larger one needs CAP_NET_ADMIN)",
                         u->fds.n);
        else if (r < 0)
                snprintf(why, len, "cannot write the handover (%zu fds) into its socket: %s", u->fds.n, strerror(-r));
        else
                r = u->ops->store(u->userdata, TAKE_FD(u->store_fd), why, len);
        if (r < 0) {
                finish_quietly(u, r, why);
                return r;
        }
        finish(u, 0, NULL);
        return 0;
}

/* Everything held quiet: freezes and sends to the new daemon started before. 0: WAITING for the
 * answer (done follows); or -errno with why, all thawed and the new daemon gone. done is left to
 * the caller then. */
static int hand_over(struct upgrade *u, char *why, size_t len)
{
        uint64_t timeout_ns = u->timeout_ns;
        int r;

        r = u->ops->freeze(u->userdata, &u->handover, &u->fds, why, len);
        if (r < 0)
                goto thaw; /* what was frozen before it failed goes back */
        /* Everything below either reaches the WAITING state or thaws before it returns. */
        u->state = UPGRADE_WAITING;
        r = send_handover(u);
        if (u->store_fd >= 0)
                return hand_to_store(u, r, why, len);
        if (r >= 0)
                r = arm_poll(u);
        if (r >= 0)
                r = relay_timer_arm(u->deadline, timeout_ns);
        if (r < 0) {
                /* The new daemon may have died already: the answer path says how. */
                char how[128];

                reap(u, how, sizeof(how));
                if (r == -EPIPE || r == -ECONNRESET) {
                        snprintf(why, len, "%s %s before it was ready; this daemon serves on", u->binary, how);
                        r = -ECHILD;
                } else
                        snprintf(why, len, "cannot hand over to %s (%s): it %s; this daemon serves on", u->binary,
                                 strerror(-r), how);
                finish_quietly(u, r, why);
                return r;
        }
        return 0;
thaw:
        end_child(u);
        u->ops->thaw(u->userdata, &u->handover, &u->fds);
        u->ops->handover_done(u->userdata, &u->handover);
        fds_clear(&u->fds);
        return r;
}

static void prepare(struct upgrade *u, uint64_t timeout_ns, upgrade_done_fn done, void *userdata)
{
        u->timeout_ns = timeout_ns ? MIN(timeout_ns, UPGRADE_MAX_TIMEOUT_NS) : UPGRADE_DEFAULT_TIMEOUT_NS;
        vsockmux__state__handover__init(&u->handover);
        u->handover.schema_version = SAVESTATE_SCHEMA_VERSION;
        u->handover.old_pid = (uint32_t)getpid();
        u->handover.control_listener_fd = -1;
        u->done = done;
        u->done_userdata = userdata;
}

/* Once the taker is there (a new daemon, or the store): holds the VMs quiet, then hands over. */
static int hold_and_hand_over(struct upgrade *u, char *why, size_t len)
{
        int r = u->ops->hold ? u->ops->hold(u->userdata, u, why, len) : 1;

        if (r == 0) {
                /* upgrade_held() goes on from here, or the deadline unholds. */
                u->state = UPGRADE_HOLDING;
                r = relay_timer_arm(u->deadline, u->timeout_ns);
                if (r >= 0)
                        return 0;
                u->state = UPGRADE_IDLE;
                u->ops->unhold(u->userdata, NULL, 0);
                snprintf(why, len, "cannot arm the upgrade's deadline: %s; this daemon serves on", strerror(-r));
        }
        if (r < 0) {
                end_child(u);
                u->done = NULL;
                return r;
        }
        r = hand_over(u, why, len);
        if (r < 0)
                u->done = NULL;
        return r;
}

int upgrade_start(struct upgrade *u, const char *binary, uint64_t timeout_ns, upgrade_done_fn done, void *userdata,
                  char *why, size_t len)
{
        int r;

        if (u->state != UPGRADE_IDLE)
                return snprintf(why, len, "an upgrade is already under way"), -EALREADY;
        free(u->binary);
        u->binary = NULL;
        if (binary && binary[0])
                u->binary = strdup(binary);
        else if ((r = upgrade_self_path(&u->binary)) < 0)
                return snprintf(why, len, "cannot find this daemon's executable: %s", strerror(-r)), r;
        if (!u->binary)
                return snprintf(why, len, "out of memory"), -ENOMEM;
        if (u->binary[0] != '/')
                return snprintf(why, len, "the binary must be an absolute path, got '%s'", u->binary), -EINVAL;
        if (access(u->binary, X_OK) < 0) {
                r = negative_errno();
                return snprintf(why, len, "cannot run %s: %s; this daemon serves on", u->binary, strerror(-r)), r;
        }
        prepare(u, timeout_ns, done, userdata);
        r = start_child(u, why, len);
        if (r < 0) {
                u->done = NULL;
                return r;
        }
        return hold_and_hand_over(u, why, len);
}

/* The socket the handover waits in: it must take all of it at once, fds included, with nobody
 * reading; a send that finds it full gives up after UPGRADE_STORE_IO_TIMEOUT_NS. */
static int open_store(struct upgrade *u, char *why, size_t len)
{
        int sv[2], size = (int)(2 * HANDOVER_MAX_PAYLOAD), r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                r = negative_errno();
                return snprintf(why, len, "socketpair: %s", strerror(-r)), r;
        }
        u->sock = sv[0];
        u->store_fd = sv[1];
        /* Over net.core.wmem_max only with CAP_NET_ADMIN; without it a large handover fails to
         * fit, and the stop goes on the plain way. */
        if (setsockopt(u->sock, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
                (void)setsockopt(u->sock, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        r = set_timeout(u->sock, SO_SNDTIMEO, UPGRADE_STORE_IO_TIMEOUT_NS);
        if (r < 0) {
                snprintf(why, len, "setsockopt: %s", strerror(-r));
                end_child(u);
        }
        return r;
}

int upgrade_store(struct upgrade *u, uint64_t timeout_ns, upgrade_done_fn done, void *userdata, char *why, size_t len)
{
        int r;

        if (u->state != UPGRADE_IDLE)
                return snprintf(why, len, "an upgrade is under way"), -EALREADY;
        free(u->binary);
        u->binary = strdup("the next vsockmuxd");
        if (!u->binary)
                return snprintf(why, len, "out of memory"), -ENOMEM;
        prepare(u, timeout_ns, done, userdata);
        r = open_store(u, why, len);
        if (r < 0) {
                u->done = NULL;
                return r;
        }
        return hold_and_hand_over(u, why, len);
}

void upgrade_held(struct upgrade *u, int r, const char *why)
{
        upgrade_done_fn done = u->done;
        void *done_userdata = u->done_userdata;
        char buf[UPGRADE_WHY_MAX];

        if (u->state != UPGRADE_HOLDING)
                return;
        relay_timer_disarm(u->deadline);
        u->state = UPGRADE_IDLE;
        if (r >= 0)
                r = hand_over(u, buf, sizeof(buf));
        else {
                end_child(u);
                snprintf(buf, sizeof(buf), "%s; this daemon serves on", why ? why : strerror(-r));
        }
        if (r < 0) {
                u->done = NULL;
                if (done)
                        done(r, 0, u->binary, buf, done_userdata);
        }
}

void upgrade_forget(struct upgrade *u, void *userdata)
{
        if (u->done_userdata == userdata) {
                u->done = NULL;
                u->done_userdata = NULL;
        }
}

/* ---- the new daemon's side ---- */

int upgrade_receive(int fd, uint64_t timeout_ns, Vsockmux__State__Handover **ret, int **ret_fds, size_t *ret_n_fds,
                    char *why, size_t len)
{
        _cleanup_(handover_msg_freep) struct handover_msg *m = NULL;
        Vsockmux__State__Handover *h;
        uint32_t version = 0;
        int r;

        r = set_timeout(fd, SO_RCVTIMEO, timeout_ns);
        if (r < 0)
                return snprintf(why, len, "setsockopt: %s", strerror(-r)), r;
        r = handover_recv(fd, HANDOVER_MAGIC_STATE, &m, &version);
        if (r == -EPROTONOSUPPORT)
                return snprintf(why, len, "handover version %u, this vsockmuxd reads %u", version,
                                HANDOVER_WIRE_VERSION),
                       r;
        if (r < 0)
                return snprintf(why, len, "cannot read the handover: %s", strerror(-r)), r;
        h = vsockmux__state__handover__unpack(NULL, m->hdr.len, m->payload);
        if (!h)
                return snprintf(why, len, "the handover is not a Handover message"), -EBADMSG;
        if (h->schema_version > SAVESTATE_SCHEMA_VERSION || h->schema_version == 0) {
                snprintf(why, len, "state schema version %u, this vsockmuxd reads 1 to %u", h->schema_version,
                         SAVESTATE_SCHEMA_VERSION);
                vsockmux__state__handover__free_unpacked(h, NULL);
                return -EPROTONOSUPPORT;
        }
        if (h->control_listener_fd < -1 || h->control_listener_fd >= (int32_t)m->n_fds) {
                snprintf(why, len, "the handover names fd %d of %zu", h->control_listener_fd, m->n_fds);
                vsockmux__state__handover__free_unpacked(h, NULL);
                return -EBADMSG;
        }
        *ret = h;
        *ret_fds = TAKE_PTR(m->fds);
        *ret_n_fds = m->n_fds;
        m->n_fds = 0;
        return 0;
}

int upgrade_answer(int fd, int r, const char *why)
{
        const char *text = r >= 0 ? UPGRADE_READY : why ? why : "refused";

        return handover_send(fd, HANDOVER_MAGIC_ANSWER, text, strlen(text), NULL, 0);
}

int upgrade_await_go(int fd)
{
        _cleanup_(handover_msg_freep) struct handover_msg *m = NULL;
        int r = set_timeout(fd, SO_RCVTIMEO, UPGRADE_MAX_TIMEOUT_NS);

        if (r >= 0)
                r = handover_recv(fd, HANDOVER_MAGIC_ANSWER, &m, NULL);
        if (r < 0)
                return r;
        return m->hdr.len == strlen(UPGRADE_GO) && memcmp(m->payload, UPGRADE_GO, m->hdr.len) == 0 ? 0 : -EBADMSG;
}
