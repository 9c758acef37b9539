/* daemon/vmhelper.c: one vsockmux-vmhelper child on the loop: spawned with a socketpair, its
 * frames through a channel, its exit through a pidfd, so the loop never blocks on it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/vmhelper.h"

extern char **environ;

/* The pidfd's poll outlives a helper freed while it is armed: it then frees itself at its
 * (cancelled) completion instead of touching the helper. */
struct vmhelper_reaper {
        struct relay_op op;
        struct vmhelper *h; /* NULL once detached */
        int pidfd;
};

struct vmhelper {
        struct relay *relay;
        const struct vmhelper_ops *ops;
        void *userdata;
        pid_t pid;
        struct vmhelper_reaper *reaper;
        struct relay_chan *chan;
        bool chan_closed, reaped, exit_told;
        char why[VMHELPER_WHY_MAX];
};

static void vmhelper_maybe_exit(struct vmhelper *h)
{
        if (!h->chan_closed || !h->reaped || h->exit_told)
                return;
        h->exit_told = true;
        h->ops->on_exit(h, h->why, h->userdata);
}

static ssize_t vmhelper_on_data(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        struct vmhelper *h = userdata;
        size_t off = 0;

        while (off < len) {
                vmhelper_msg *m = NULL;
                size_t used;
                int r = vmhelper_frame_parse((const uint8_t *)data + off, len - off, &m, &used);

                if (r == 0)
                        break;
                if (r < 0) {
                        snprintf(h->why, sizeof(h->why), "sent a malformed frame (%s)", strerror(-r));
                        /* A helper that speaks nonsense is as good as dead. */
                        (void)kill(h->pid, SIGKILL);
                        return r;
                }
                h->ops->on_message(h, m, h->userdata);
                vmhelper_msg_free(m);
                off += used;
        }
        return (ssize_t)off;
}

static void vmhelper_on_close(struct relay_chan *c, int error, void *userdata)
{
        struct vmhelper *h = userdata;

        h->chan = NULL;
        h->chan_closed = true;
        vmhelper_maybe_exit(h);
}

static const struct relay_chan_ops vmhelper_chan_ops = {
        .on_data = vmhelper_on_data,
        .on_close = vmhelper_on_close,
};

static void vmhelper_describe(struct vmhelper *h, const siginfo_t *si)
{
        if (h->why[0])
                return;
        if (si->si_code == CLD_EXITED)
                snprintf(h->why, sizeof(h->why), "exited %d", si->si_status);
        else
                snprintf(h->why, sizeof(h->why), "was killed by signal %d (SIG%s)", si->si_status,
                         sigabbrev_np(si->si_status) ?: "?");
}

static struct vmhelper_reaper *vmhelper_reaper_free(struct vmhelper_reaper *rp)
{
        if (rp) {
                safe_close(rp->pidfd);
                free(rp);
        }
        return NULL;
}

static int vmhelper_reaper_arm(struct relay *r, struct vmhelper_reaper *rp)
{
        struct io_uring_sqe *sqe = relay_get_sqe(r);

        if (!sqe)
                return -EIO;
        io_uring_prep_poll_add(sqe, rp->pidfd, POLLIN);
        relay_sqe_set_op(sqe, &rp->op);
        return 0;
}

static void vmhelper_on_exit_poll(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags)
{
        struct vmhelper_reaper *rp = container_of(op, struct vmhelper_reaper, op);
        struct vmhelper *h = rp->h;
        siginfo_t si = {};

        if (!h) {
                vmhelper_reaper_free(rp);
                return;
        }
        /* Not gone yet (a spurious wakeup): watch again. */
        if ((waitid(P_PIDFD, (id_t)rp->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) &&
            vmhelper_reaper_arm(r, rp) == 0)
                return;
        vmhelper_describe(h, &si);
        h->reaped = true;
        h->reaper = vmhelper_reaper_free(rp);
        vmhelper_maybe_exit(h);
}

/* The helper's end becomes fd VMHELPER_FD; everything else of ours is close-on-exec. */
static int vmhelper_start(const char *path, int child_fd, pid_t *ret)
{
        char *argv[] = { (char *)path, NULL };
        posix_spawn_file_actions_t fa;
        int r;

        if (posix_spawn_file_actions_init(&fa) != 0)
                return -ENOMEM;
        r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, child_fd, VMHELPER_FD);
        if (r == 0)
                r = posix_spawn(ret, path, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

int vmhelper_spawn(struct relay *r, const char *path, const struct vmhelper_ops *ops, void *userdata,
                   struct vmhelper **ret)
{
        _cleanup_close_ int parent = -1, child = -1;
        struct relay_chan_limits lim = {
                .max_rx = VMHELPER_FRAME_MAX + VMHELPER_HEADER_SIZE,
                .max_tx = VMHELPER_FRAME_MAX + VMHELPER_HEADER_SIZE,
        };
        struct vmhelper *h;
        int sv[2], rr;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        parent = sv[0];
        child = sv[1];
        /* dup2 onto itself would keep close-on-exec: move it off VMHELPER_FD first. */
        if (child == VMHELPER_FD) {
                child = fcntl(sv[1], F_DUPFD_CLOEXEC, VMHELPER_FD + 1);
                safe_close(sv[1]);
                if (child < 0)
                        return -errno;
        }
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->relay = r;
        h->ops = ops;
        h->userdata = userdata;
        h->reaper = calloc(1, sizeof(*h->reaper));
        if (!h->reaper) {
                free(h);
                return -ENOMEM;
        }
        h->reaper->op.fn = vmhelper_on_exit_poll;
        h->reaper->h = h;
        h->reaper->pidfd = -1;
        rr = vmhelper_start(path, child, &h->pid);
        if (rr < 0) {
                vmhelper_reaper_free(h->reaper);
                free(h);
                return rr;
        }
        h->reaper->pidfd = (int)syscall(SYS_pidfd_open, h->pid, 0);
        rr = h->reaper->pidfd < 0 ? -errno : vmhelper_reaper_arm(r, h->reaper);
        if (rr < 0) {
                h->reaper = vmhelper_reaper_free(h->reaper);
                vmhelper_free(h);
                return rr;
        }
        rr = relay_chan_new(r, parent, &vmhelper_chan_ops, &lim, h, &h->chan);
        if (rr < 0) {
                vmhelper_free(h);
                return rr;
        }
        (void)TAKE_FD(parent);
        *ret = h;
        return 0;
}

int vmhelper_send(struct vmhelper *h, const vmhelper_msg *m)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r;

        if (!h->chan)
                return -EPIPE;
        r = vmhelper_frame_build(m, &buf, &len);
        if (r < 0)
                return r;
        return relay_chan_send(h->chan, buf, len);
}

pid_t vmhelper_pid(const struct vmhelper *h)
{
        return h->pid;
}

struct vmhelper *vmhelper_free(struct vmhelper *h)
{
        if (!h)
                return NULL;
        h->chan = relay_chan_free(h->chan);
        if (!h->reaped) {
                siginfo_t si;

                (void)kill(h->pid, SIGKILL);
                (void)waitid(P_PID, (id_t)h->pid, &si, WEXITED);
        }
        if (h->reaper) {
                /* Its poll completes once cancelled; the reaper frees itself then. */
                struct io_uring_sqe *sqe = relay_get_sqe(h->relay);

                h->reaper->h = NULL;
                if (sqe) {
                        io_uring_prep_cancel(sqe, &h->reaper->op, 0);
                        relay_sqe_set_ignore(sqe);
                }
        }
        free(h);
        return NULL;
}
