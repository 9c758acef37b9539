/* daemon/opener.c: the endpoint opener thread and its per-call change of file-system credentials. */
#include "daemon/opener.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

struct opener_job {
        const struct opener_creds *creds;
        const char *path;
        enum endpoint_role role;
        unsigned rotate_keep; /* > 0: rotate path (keeping this many files) before opening */
        bool switch_needed;   /* opener_switch_needed(), asked once by opener_submit() */
        int r;
        int fd;
        enum endpoint_kind kind;
        bool done;
};

struct opener {
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct opener_job *job; /* the one request in flight: the loop is single-threaded */
        bool stopping;
        /* The thread's own credentials, restored after each job. */
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        int n_groups;
};

/* glibc's setgroups() changes every thread of the process; the syscall changes this one. */
static int thread_setgroups(size_t n, const gid_t *groups)
{
        return syscall(SYS_setgroups, n, groups) < 0 ? negative_errno() : 0;
}

/* Beyond this a set of groups is not compared, only switched to. */
#define OPENER_COMPARE_GROUPS_MAX 64u

static bool group_in(gid_t g, const gid_t *groups, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (groups[i] == g)
                        return true;
        return false;
}

/* The same set (either way: a repeated group must not hide a missing one). */
static bool groups_are_own(const struct opener *o, const struct opener_creds *c)
{
        if (c->n_groups != (size_t)o->n_groups || c->n_groups > OPENER_COMPARE_GROUPS_MAX)
                return false;
        for (size_t i = 0; i < c->n_groups; i++)
                if (!group_in(c->groups[i], o->groups, (size_t)o->n_groups) ||
                    !group_in(o->groups[i], c->groups, c->n_groups))
                        return false;
        return true;
}

/* Whether an open as c changes the thread's rights. Not when they are the daemon's own (a recovery
 * re-opens every endpoint, most often with them: 2 setgroups, 3 setfsgid and 4 setfsuid each), and
 * never for a daemon that is not root: it opens as itself or not at all. */
static bool opener_switch_needed(const struct opener *o, const struct opener_creds *c)
{
        if (!c || o->uid != 0)
                return false;
        return c->uid != o->uid || c->gid != o->gid || !groups_are_own(o, c);
}

/* Without a switch: a daemon that is not root lends its rights to its own uid or root only. */
static int opener_may_open_as_self(const struct opener *o, const struct opener_creds *c)
{
        if (!c || o->uid == 0)
                return 0;
        return c->uid == o->uid || c->uid == 0 ? 0 : -EPERM;
}

static int opener_become(struct opener *o, const struct opener_creds *c)
{
        int r;

        if (c->n_groups > OPENER_MAX_GROUPS)
                return -E2BIG;
        r = thread_setgroups(c->n_groups, c->groups);
        if (r < 0)
                return r;
        /* setfsuid/setfsgid report the previous value, never an error: read back to be sure. */
        (void)setfsgid(c->gid);
        (void)setfsuid(c->uid);
        if ((uid_t)setfsuid((uid_t)-1) != c->uid || (gid_t)setfsgid((gid_t)-1) != c->gid)
                return -EPERM;
        return 0;
}

/* Failing to get our own rights back would leave the thread with a peer's: stop the process. */
static void opener_restore(struct opener *o)
{
        if (o->uid != 0)
                return;
        (void)setfsuid(o->uid);
        (void)setfsgid(o->gid);
        if (thread_setgroups((size_t)o->n_groups, o->groups) < 0 || (uid_t)setfsuid((uid_t)-1) != o->uid)
                abort();
}

/* PATH.(keep-2) -> PATH.(keep-1), ..., PATH -> PATH.1, so PATH and keep-1 older files stay; with
 * keep 1 only a fresh PATH (conmon's truncation). rename(2) never follows a symlink. */
static int opener_rotate_names(const char *path, unsigned keep)
{
        char from[ENDPOINT_PATH_MAX + 16], to[ENDPOINT_PATH_MAX + 16];

        if (keep == 1)
                return unlink(path) < 0 && errno != ENOENT ? negative_errno() : 0;
        for (unsigned i = keep - 1; i >= 1; i--) {
                if (i == 1)
                        snprintf(from, sizeof(from), "%s", path);
                else
                        snprintf(from, sizeof(from), "%s.%u", path, i - 1);
                snprintf(to, sizeof(to), "%s.%u", path, i);
                if (rename(from, to) < 0 && errno != ENOENT)
                        return negative_errno();
        }
        return 0;
}

/* On the opener thread, or without a switch on the caller's: its rights are the daemon's own too
 * (only this thread ever changes its own). */
static void opener_run(struct opener *o, struct opener_job *j)
{
        bool sw = j->switch_needed;

        j->fd = -1;
        j->r = sw ? opener_become(o, j->creds) : opener_may_open_as_self(o, j->creds);
        if (j->r >= 0 && j->rotate_keep > 0)
                j->r = opener_rotate_names(j->path, j->rotate_keep);
        if (j->r >= 0)
                j->r = endpoint_open(j->path, j->role, &j->fd, &j->kind);
        if (sw)
                opener_restore(o);
}

static void *opener_thread(void *userdata)
{
        struct opener *o = userdata;

        pthread_mutex_lock(&o->lock);
        for (;;) {
                struct opener_job *j;

                while (!o->job && !o->stopping)
                        pthread_cond_wait(&o->cond, &o->lock);
                if (o->stopping)
                        break;
                j = o->job;
                pthread_mutex_unlock(&o->lock);
                opener_run(o, j);
                pthread_mutex_lock(&o->lock);
                j->done = true;
                o->job = NULL;
                pthread_cond_broadcast(&o->cond);
        }
        pthread_mutex_unlock(&o->lock);
        return NULL;
}

static int opener_read_groups(struct opener *o)
{
        int n = getgroups(0, NULL);

        if (n < 0)
                return negative_errno();
        o->groups = calloc((size_t)n + 1, sizeof(gid_t));
        if (!o->groups)
                return -ENOMEM;
        o->n_groups = getgroups(n, o->groups);
        return o->n_groups < 0 ? negative_errno() : 0;
}

int opener_new(struct opener **ret)
{
        _cleanup_free_ struct opener *o = calloc(1, sizeof(*o));
        sigset_t all, old;
        int r;

        if (!o)
                return -ENOMEM;
        o->uid = geteuid();
        o->gid = getegid();
        r = opener_read_groups(o);
        if (r < 0) {
                free(o->groups);
                return r;
        }
        pthread_mutex_init(&o->lock, NULL);
        pthread_cond_init(&o->cond, NULL);
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&o->thread, NULL, opener_thread, o);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                pthread_cond_destroy(&o->cond);
                pthread_mutex_destroy(&o->lock);
                free(o->groups);
                return r;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

struct opener *opener_free(struct opener *o)
{
        if (!o)
                return NULL;
        pthread_mutex_lock(&o->lock);
        o->stopping = true;
        pthread_cond_broadcast(&o->cond);
        pthread_mutex_unlock(&o->lock);
        pthread_join(o->thread, NULL);
        pthread_cond_destroy(&o->cond);
        pthread_mutex_destroy(&o->lock);
        free(o->groups);
        free(o);
        return NULL;
}

static int opener_submit(struct opener *o, struct opener_job *jp, int *ret_fd, enum endpoint_kind *ret_kind)
{
        struct opener_job j = *jp;

        j.switch_needed = opener_switch_needed(o, j.creds);
        /* Rights that stay the same need no thread: the hand-over cost more than the open. */
        if (!j.switch_needed)
                opener_run(o, &j);
        else {
                pthread_mutex_lock(&o->lock);
                while (o->job)
                        pthread_cond_wait(&o->cond, &o->lock);
                o->job = &j;
                pthread_cond_broadcast(&o->cond);
                while (!j.done)
                        pthread_cond_wait(&o->cond, &o->lock);
                pthread_mutex_unlock(&o->lock);
        }
        if (j.r < 0)
                return j.r;
        *ret_fd = j.fd;
        if (ret_kind)
                *ret_kind = j.kind;
        return 0;
}

int opener_open(struct opener *o, const struct opener_creds *creds, const char *path, enum endpoint_role role,
                int *ret_fd, enum endpoint_kind *ret_kind)
{
        struct opener_job j = { .creds = creds, .path = path, .role = role, .fd = -1 };

        return opener_submit(o, &j, ret_fd, ret_kind);
}

int opener_open_rotated(struct opener *o, const struct opener_creds *creds, const char *path, unsigned keep,
                        int *ret_fd)
{
        struct opener_job j = { .creds = creds, .path = path, .role = ENDPOINT_SINK, .rotate_keep = keep, .fd = -1 };

        if (keep == 0)
                return -EINVAL;
        return opener_submit(o, &j, ret_fd, NULL);
}
