/* sim/process.c: the simulator's containers and processes: spawning, reaping, exit notification. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bridge/msg.h"
#include "sim/pty.h"
#include "sim/sim.h"
#include "sim/stream.h"
#include "util/log.h"

enum sim_shutdown_kind {
        SIM_SHUTDOWN_NONE,
        SIM_SHUTDOWN_GRACEFUL,
        SIM_SHUTDOWN_FORCED,
};

struct sim_container {
        char *id;
        enum sim_shutdown_kind shutdown;
        bool has_init;
        struct sim_container *next;
};

struct sim_process {
        unsigned refs; /* the table, the reaper and the exec request until announced; guarded by s->lock */
        pid_t pid;
        int pidfd;
        char *container_id;
        bool is_init; /* a container's first process: always found, its code kept (W9) */
        bool reaped;  /* waitpid() returned: signals now fail with "not found" */
        bool exited;  /* reaped and its stdio drained: visible to waiters */
        bool in_table;
        bool announced; /* the exec reply was sent: only then is the exit reported */
        uint32_t exit_code;
        int pty_master;               /* -1 unless the process has a console: kept to resize it */
        struct sim_wait_list waiters; /* answered by the reaper at exit: they hold no reference */
        struct sim_stream *streams[_SIM_STREAM_MAX];
        struct sim_process *next;
};

extern char **environ;

static struct sim_process *process_unref_locked(struct sim_process *p)
{
        if (!p || --p->refs > 0)
                return NULL;
        safe_close(p->pidfd);
        safe_close(p->pty_master);
        free(p->container_id);
        free(p);
        return NULL;
}

static void process_unlink_locked(struct sim *s, struct sim_process *p)
{
        for (struct sim_process **i = &s->processes; *i; i = &(*i)->next)
                if (*i == p) {
                        *i = p->next;
                        p->in_table = false;
                        s->n_processes--;
                        process_unref_locked(p);
                        return;
                }
}

/* The newest entry wins, so a pid the kernel reused finds the live process. */
static struct sim_process *process_find_locked(struct sim *s, uint32_t pid)
{
        for (struct sim_process *p = s->processes; p; p = p->next)
                if ((uint32_t)p->pid == pid)
                        return p;
        return NULL;
}

static struct sim_container *container_find_locked(struct sim *s, const char *id)
{
        for (struct sim_container *c = s->containers; c; c = c->next)
                if (strcmp(c->id, id) == 0)
                        return c;
        return NULL;
}

int sim_container_create(struct sim *s, const char *id)
{
        struct sim_container *c;
        int r = 0;

        pthread_mutex_lock(&s->lock);
        if (container_find_locked(s, id))
                r = -EEXIST;
        else if (s->n_containers >= SIM_MAX_CONTAINERS)
                r = -ENOSPC;
        else if (!(c = calloc(1, sizeof(*c))) || !(c->id = strdup(id))) {
                free(c);
                r = -ENOMEM;
        } else {
                c->next = s->containers;
                s->containers = c;
                s->n_containers++;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

bool sim_container_exists(struct sim *s, const char *id)
{
        bool found;

        pthread_mutex_lock(&s->lock);
        found = container_find_locked(s, id) != NULL;
        pthread_mutex_unlock(&s->lock);
        return found;
}

int sim_process_in_container(struct sim *s, uint32_t pid, const char *container_id)
{
        struct sim_process *p;
        int r;

        pthread_mutex_lock(&s->lock);
        p = process_find_locked(s, pid);
        r = !p ? -ENOENT : strcmp(p->container_id, container_id) == 0;
        pthread_mutex_unlock(&s->lock);
        return r;
}

int sim_container_shutdown(struct sim *s, const char *id, bool forced)
{
        struct sim_container *c;
        int r = 0;

        pthread_mutex_lock(&s->lock);
        c = container_find_locked(s, id);
        if (!c)
                r = -ENOENT;
        else {
                c->shutdown = forced ? SIM_SHUTDOWN_FORCED : SIM_SHUTDOWN_GRACEFUL;
                for (struct sim_process *p = s->processes; p; p = p->next)
                        if (!p->reaped && p->container_id && strcmp(p->container_id, id) == 0)
                                syscall(SYS_pidfd_send_signal, p->pidfd, forced ? SIGKILL : SIGTERM, NULL, 0);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static void process_notify_exit(struct sim *s, struct sim_process *p)
{
        struct sim_container *c;
        struct bridge_notification n = { .operation = "None" };
        uint8_t *buf = NULL;
        size_t len;
        int r;

        pthread_mutex_lock(&s->lock);
        c = container_find_locked(s, p->container_id);
        n.type = !c || c->shutdown == SIM_SHUTDOWN_NONE ? "UnexpectedExit"
                 : c->shutdown == SIM_SHUTDOWN_GRACEFUL ? "GracefulExit"
                                                        : "ForcedExit";
        pthread_mutex_unlock(&s->lock);
        n.container_id = p->container_id;
        r = bridge_notification_frame(&n, &buf, &len);
        if (r < 0) {
                log_error("container %s: cannot encode the exit notification: %s", p->container_id, strerror(-r));
                return;
        }
        log_info("container %s: init process %d exited (%s)", p->container_id, (int)p->pid, n.type);
        /* Queued while the bridge is down and sent when the next connection starts (H4). */
        sim_bridge_send(s, buf, len);
}

struct sim_reaper {
        struct sim *s;
        struct sim_process *p;
};

/* Waits until every stdio relay drained and closed. */
static void process_join_streams(struct sim_process *p)
{
        for (int i = _SIM_STREAM_MAX - 1; i >= 0; i--)
                p->streams[i] = sim_stream_join(p->streams[i]);
}

static void *process_reaper(void *arg)
{
        struct sim_reaper *rp = arg;
        struct sim *s = rp->s;
        struct sim_process *p = rp->p;
        struct sim_waiter *waiters;
        bool upstream = sim_upstream(s);
        int status = 0;

        free(rp);
        for (;;) {
                if (waitpid(p->pid, &status, 0) >= 0)
                        break;
                if (errno != EINTR) {
                        log_error("pid %d: waitpid: %s; reporting exit code 255", (int)p->pid, strerror(errno));
                        status = -1;
                        break;
                }
        }
        pthread_mutex_lock(&s->lock);
        p->reaped = true;
        pthread_mutex_unlock(&s->lock);

        /* Ours reports the exit only after stdout/stderr drained and closed (W9); hcsshim's guest
         * may answer the wait first. stdin's read side closes now (H5). */
        sim_stream_close_input(p->streams[SIM_STREAM_STDIN]);
        if (!upstream)
                process_join_streams(p);

        pthread_mutex_lock(&s->lock);
        while (!p->announced && !s->stopping)
                pthread_cond_wait(&s->cond, &s->lock);
        p->exit_code = sim_fidelity_exit_code(s, status);
        p->exited = true;
        /* A wait that arrives from now on is answered by sim_process_wait_start() itself. */
        waiters = sim_wait_list_take_locked(s, &p->waiters);
        /* An exec'd process goes once a waiter has its code; a container's init stays (W9). The
         * answers are queued first, under the lock a wait takes to look the pid up: a wait (a
         * host's probe) that then finds it gone is answered "not found" AFTER them, never ahead of
         * the answer that carries the code. Pending waits get no reply once the sim stops. */
        if (s->stopping)
                sim_waiters_free(TAKE_PTR(waiters));
        else if (waiters && upstream) {
                /* hcsshim's guest deletes the process before it writes the wait's reply: a wait
                 * (a host's probe) in between finds it gone. */
                if (sim_stream_running_locked(p->streams[SIM_STREAM_STDOUT]) ||
                    sim_stream_running_locked(p->streams[SIM_STREAM_STDERR]))
                        sim_stat_add(s, SIM_STAT_WAIT_BEFORE_EOF);
                if (!p->is_init && p->in_table)
                        process_unlink_locked(s, p);
                pthread_mutex_unlock(&s->lock);
                pthread_mutex_lock(&s->lock);
                sim_waiters_queue_answers(s, TAKE_PTR(waiters), p->exit_code);
        } else if (waiters) {
                sim_waiters_queue_answers(s, TAKE_PTR(waiters), p->exit_code);
                if (!p->is_init && p->in_table)
                        process_unlink_locked(s, p);
        }
        pthread_mutex_unlock(&s->lock);
        log_info("pid %d exited with %u", (int)p->pid, p->exit_code);
        sim_bridge_flush(s);
        if (upstream)
                process_join_streams(p);

        if (p->is_init)
                process_notify_exit(s, p);

        pthread_mutex_lock(&s->lock);
        process_unref_locked(p);
        pthread_mutex_unlock(&s->lock);
        sim_thread_leave(s);
        return NULL;
}

struct sim_spawn {
        struct sim_conn *conns[_SIM_STREAM_MAX];
        int ours[_SIM_STREAM_MAX];   /* our end of each pipe (of the pty master for a console) */
        int theirs[_SIM_STREAM_MAX]; /* the child's end; unused for a console */
        int pty_master;              /* -1: no console */
        char pty_slave[SIM_PTY_PATH_MAX];
};

static void spawn_cleanup(struct sim *s, struct sim_spawn *sp)
{
        sp->pty_master = safe_close(sp->pty_master);
        for (int i = 0; i < _SIM_STREAM_MAX; i++) {
                sp->conns[i] = sim_conn_close(s, sp->conns[i]);
                sp->ours[i] = safe_close(sp->ours[i]);
                sp->theirs[i] = safe_close(sp->theirs[i]);
        }
}

/* Dials stdin, stdout, stderr in that order, before the reply (W1), and makes the pipes. */
static int spawn_prepare(struct sim *s, const struct bridge_request *req, struct sim_spawn *sp, const char **reason)
{
        const struct bridge_process_params *pp = &req->exec.params;
        const bool want[_SIM_STREAM_MAX] = { pp->create_stdin, pp->create_stdout, pp->create_stderr };
        const uint32_t ports[_SIM_STREAM_MAX] = { req->exec.stdin_port, req->exec.stdout_port, req->exec.stderr_port };

        if (pp->emulate_console) {
                int r = sim_pty_open(pp->console_height, pp->console_width, &sp->pty_master, sp->pty_slave,
                                     sizeof(sp->pty_slave));

                if (r < 0) {
                        *reason = "cannot open a console";
                        return r;
                }
        }
        for (int i = 0; i < _SIM_STREAM_MAX; i++) {
                int fds[2], r;

                if (!want[i])
                        continue;
                if (ports[i] == 0) {
                        *reason = "a stdio pipe was requested without a vsock port";
                        return -EINVAL;
                }
                r = sim_dial(s, ports[i], &sp->conns[i]);
                if (r < 0) {
                        *reason = i == 0   ? "cannot dial the stdin port"
                                  : i == 1 ? "cannot dial the stdout port"
                                           : "cannot dial the stderr port";
                        return r;
                }
                /* A console's input and output are its master; stderr is the terminal too, so a
                 * stderr stream (its pipe unused by the child) ends at once. */
                if (sp->pty_master >= 0 && i != SIM_STREAM_STDERR) {
                        sp->ours[i] = fcntl(sp->pty_master, F_DUPFD_CLOEXEC, 3);
                        if (sp->ours[i] < 0) {
                                *reason = "cannot duplicate the console";
                                return negative_errno();
                        }
                        continue;
                }
                if (pipe2(fds, O_CLOEXEC) < 0) {
                        *reason = "cannot create a pipe";
                        return negative_errno();
                }
                /* fds[0] reads, fds[1] writes: the child reads stdin and writes stdout/stderr. */
                sp->ours[i] = i == 0 ? fds[1] : fds[0];
                sp->theirs[i] = i == 0 ? fds[0] : fds[1];
        }
        return 0;
}

static int spawn_run(const struct bridge_request *req, struct sim_spawn *sp, pid_t *ret_pid, const char **reason)
{
        static const char *const default_env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                                   NULL };
        const struct bridge_process_params *pp = &req->exec.params;
        const char *shell_argv[] = { "/bin/sh", "-c", pp->command_line, NULL };
        char *const *argv = pp->n_args > 0 ? (char *const *)pp->args : (char *const *)shell_argv;
        char *const *envp = pp->n_env > 0 ? (char *const *)pp->env : (char *const *)default_env;
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, defaults;
        pid_t pid;
        int r;

        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        if (sp->pty_master >= 0)
                sim_pty_spawn_actions(&fa, sp->pty_slave);
        else
                for (int i = 0; i < _SIM_STREAM_MAX; i++) {
                        if (sp->theirs[i] >= 0)
                                posix_spawn_file_actions_adddup2(&fa, sp->theirs[i], i);
                        else
                                posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
                }
        if (pp->working_dir && pp->working_dir[0])
                posix_spawn_file_actions_addchdir_np(&fa, pp->working_dir);
        /* The sim blocks and ignores signals for its own use; the child starts with defaults. */
        sigemptyset(&none);
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGPIPE);
        sigaddset(&defaults, SIGTERM);
        sigaddset(&defaults, SIGINT);
        sigaddset(&defaults, SIGUSR1);
        sigaddset(&defaults, SIGHUP);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setpgroup(&attr, 0);
        /* A console's process leads its own session, so the console can be its controlling
         * terminal (and its process group still the one kill_all ends). */
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                (sp->pty_master >= 0 ? POSIX_SPAWN_SETSID : POSIX_SPAWN_SETPGROUP));

        if (pp->n_args > 0)
                r = posix_spawnp(&pid, argv[0], &fa, &attr, argv, envp);
        else
                r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r != 0) {
                *reason = r == ENOENT ? "executable or working directory not found" : "cannot start the process";
                return -r;
        }
        *ret_pid = pid;
        return 0;
}

int sim_process_start(struct sim *s, const struct bridge_request *req, bool resume, struct sim_process **ret_proc,
                      uint32_t *ret_pid, const char **ret_reason)
{
        struct sim_spawn sp = { .ours = { -1, -1, -1 }, .theirs = { -1, -1, -1 }, .pty_master = -1 };
        const struct bridge_process_params *pp = &req->exec.params;
        struct sim_process *p = NULL;
        struct sim_container *c;
        struct sim_reaper *rp;
        pid_t pid = 0;
        int r;

        if (!req->exec.has_params || (pp->n_args == 0 && (!pp->command_line || !pp->command_line[0]))) {
                *ret_reason = "no CommandArgs or CommandLine";
                return -EINVAL;
        }
        pthread_mutex_lock(&s->lock);
        r = s->n_processes >= SIM_MAX_PROCESSES ? -ENOSPC : 0;
        pthread_mutex_unlock(&s->lock);
        if (r < 0) {
                *ret_reason = "too many processes";
                return r;
        }
        p = calloc(1, sizeof(*p));
        rp = calloc(1, sizeof(*rp));
        if (!p || !rp || !(p->container_id = strdup(req->container_id))) {
                r = -ENOMEM;
                goto fail_alloc;
        }
        p->pidfd = -1;
        p->pty_master = -1;

        r = spawn_prepare(s, req, &sp, ret_reason);
        if (r < 0)
                goto fail;
        r = spawn_run(req, &sp, &pid, ret_reason);
        if (r < 0)
                goto fail;
        for (int i = 0; i < _SIM_STREAM_MAX; i++)
                sp.theirs[i] = safe_close(sp.theirs[i]);
        p->pid = pid;
        /* Only the reaper waits for pid, so it cannot be reused before this. */
        p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

        for (int i = 0; i < _SIM_STREAM_MAX; i++) {
                const uint32_t ports[_SIM_STREAM_MAX] = { req->exec.stdin_port, req->exec.stdout_port,
                                                          req->exec.stderr_port };

                if (!sp.conns[i])
                        continue;
                r = sim_stream_start(s, (enum sim_stream_kind)i, pid, ports[i], resume, sp.conns[i], sp.ours[i],
                                     &p->streams[i]);
                if (r < 0) {
                        /* The process runs without this stream; it sees EOF or EPIPE on it. */
                        log_error("pid %d: cannot start a stdio relay: %s", (int)pid, strerror(-r));
                        continue;
                }
                sp.conns[i] = NULL;
                sp.ours[i] = -1;
        }
        p->pty_master = TAKE_FD(sp.pty_master);
        spawn_cleanup(s, &sp);

        pthread_mutex_lock(&s->lock);
        c = container_find_locked(s, req->container_id);
        if (c && !c->has_init) {
                c->has_init = true;
                p->is_init = true;
        }
        p->refs = 3; /* table + reaper + the caller until it announced the process */
        p->in_table = true;
        p->next = s->processes;
        s->processes = p;
        s->n_processes++;
        s->n_threads++;
        pthread_mutex_unlock(&s->lock);
        /* Before the reaper exists: it frees the streams. */
        if (sim_upstream(s) && !p->is_init)
                for (int i = SIM_STREAM_STDOUT; i < _SIM_STREAM_MAX; i++)
                        sim_stream_forbid_redial(p->streams[i]);

        *rp = (struct sim_reaper){ .s = s, .p = p };
        r = sim_thread_start(NULL, process_reaper, rp);
        if (r < 0) {
                /* Without a reaper nobody would report this exit: run it here instead, blocking this request. */
                log_error("pid %d: cannot start a reaper thread; reaping inline", (int)pid);
                pthread_mutex_lock(&s->lock);
                p->announced = true;
                pthread_mutex_unlock(&s->lock);
                process_reaper(rp);
        }
        log_info("pid %d started in container '%s'%s", (int)pid, req->container_id, p->is_init ? " (init)" : "");
        *ret_pid = (uint32_t)pid;
        *ret_proc = p;
        return 0;

fail:
        spawn_cleanup(s, &sp);
fail_alloc:
        if (p)
                free(p->container_id);
        free(p);
        free(rp);
        return r;
}

void sim_process_announced(struct sim *s, struct sim_process *p)
{
        pthread_mutex_lock(&s->lock);
        p->announced = true;
        pthread_cond_broadcast(&s->cond);
        process_unref_locked(p);
        pthread_mutex_unlock(&s->lock);
}

int sim_process_wait_start(struct sim *s, uint32_t pid, uint64_t id, const char *activity_id, uint32_t timeout_ms,
                           uint32_t *ret_exit_code)
{
        struct sim_process *p;
        int r;

        pthread_mutex_lock(&s->lock);
        p = process_find_locked(s, pid);
        if (!p)
                r = -ENOENT;
        else if (p->exited) {
                *ret_exit_code = p->exit_code;
                /* An exec'd process goes once one waiter has its code; a container's init stays (W9). */
                if (!p->is_init && p->in_table)
                        process_unlink_locked(s, p);
                r = 0;
        } else if (s->stopping)
                r = -ECANCELED;
        else if (timeout_ms == 0)
                r = -ETIMEDOUT;
        else {
                r = sim_wait_add_locked(s, &p->waiters, id, activity_id, timeout_ms);
                if (r == 0)
                        r = -EINPROGRESS;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

int sim_process_signal(struct sim *s, uint32_t pid, int sig)
{
        struct sim_process *p;
        int r = 0;

        pthread_mutex_lock(&s->lock);
        p = process_find_locked(s, pid);
        if (!p || p->reaped)
                r = -ENOENT;
        else if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
                r = errno == ESRCH ? -ENOENT : negative_errno();
        pthread_mutex_unlock(&s->lock);
        return r;
}

int sim_process_resize(struct sim *s, uint32_t pid, uint16_t height, uint16_t width)
{
        struct sim_process *p;
        int r;

        pthread_mutex_lock(&s->lock);
        p = process_find_locked(s, pid);
        if (!p || p->reaped)
                r = -ENOENT;
        else if (p->pty_master < 0)
                r = -ENOTTY;
        else
                r = sim_pty_resize(p->pty_master, height, width);
        pthread_mutex_unlock(&s->lock);
        return r;
}

void sim_processes_kill_all(struct sim *s)
{
        pthread_mutex_lock(&s->lock);
        for (struct sim_process *p = s->processes; p; p = p->next)
                if (!p->reaped)
                        kill(-p->pid, SIGKILL); /* the whole process group the child leads */
        pthread_mutex_unlock(&s->lock);
}

void sim_processes_free(struct sim *s)
{
        pthread_mutex_lock(&s->lock);
        for (struct sim_process *p = s->processes; p; p = p->next)
                sim_waiters_free(sim_wait_list_take_locked(s, &p->waiters));
        while (s->processes)
                process_unlink_locked(s, s->processes);
        while (s->containers) {
                struct sim_container *c = s->containers;

                s->containers = c->next;
                free(c->id);
                free(c);
        }
        s->n_containers = 0;
        pthread_mutex_unlock(&s->lock);
}
