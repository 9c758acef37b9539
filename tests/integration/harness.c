/* The integration harness: vsockmuxd, vsockmux-sim and the vsockmux CLI as separate processes. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <liburing.h>

extern char **environ;

void integ_sleep_ms(int ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int64_t integ_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int integ_find(char *buf, const char *arg, const char *rel)
{
        const char *root = getenv("VSOCKMUX_BUILD_ROOT");
        int n;

        if (arg) {
                if (strlen(arg) >= INTEG_PATH_MAX)
                        return -ENAMETOOLONG;
                memcpy(buf, arg, strlen(arg) + 1);
                return 0;
        }
        if (root)
                n = snprintf(buf, INTEG_PATH_MAX, "%s/%s", root, rel);
        else
                return -ENOENT;
        return n < 0 || n >= INTEG_PATH_MAX ? -ENAMETOOLONG : 0;
}

int integ_config_parse(int argc, char **argv, struct integ_config *ret)
{
        const char *daemon = NULL, *cli = NULL, *sim = NULL, *skip = NULL;
        bool resume = false, upstream = false, no_ack = false, no_stdin_eof = false;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--resume"))
                        resume = true;
                else if (!strcmp(argv[i], "--upstream"))
                        upstream = true;
                else if (!strcmp(argv[i], "--no-ack"))
                        no_ack = true;
                else if (!strcmp(argv[i], "--no-stdin-eof"))
                        no_stdin_eof = true;
                else if (i + 1 < argc && !strcmp(argv[i], "--skip"))
                        skip = argv[++i];
                else if (i + 1 < argc && !strcmp(argv[i], "--daemon"))
                        daemon = argv[++i];
                else if (i + 1 < argc && !strcmp(argv[i], "--cli"))
                        cli = argv[++i];
                else if (i + 1 < argc && !strcmp(argv[i], "--sim"))
                        sim = argv[++i];
                else
                        return -EINVAL;
        }
        if (integ_find(ret->daemon, daemon, "daemon/vsockmuxd") < 0 || integ_find(ret->cli, cli, "cli/vsockmux") < 0 ||
            integ_find(ret->sim, sim, "sim/vsockmux-sim") < 0)
                return -ENOENT;
        ret->resume = resume && !upstream;
        ret->upstream = upstream;
        ret->no_ack = no_ack;
        ret->no_stdin_eof = no_stdin_eof;
        ret->skip = skip;
        return 0;
}

const char *integ_path(struct integ *t, const char *name)
{
        char *p = t->paths[t->path_next++ % INTEG_PATH_SLOTS];

        snprintf(p, INTEG_PATH_MAX, "%s/%s", t->dir, name);
        return p;
}

const char *integ_hvsock(struct integ *t, const char *name)
{
        char buf[INTEG_NAME_MAX];

        snprintf(buf, sizeof(buf), "%s.vsock", name);
        return integ_path(t, buf);
}

const char *integ_alive_loop(struct integ *t)
{
        char *p = t->paths[t->path_next++ % INTEG_PATH_SLOTS];

        snprintf(p, INTEG_PATH_MAX, "while [ -d %s ]; do sleep 0.1; done", t->dir);
        return p;
}

const char *integ_wait_go(struct integ *t)
{
        char *p = t->paths[t->path_next++ % INTEG_PATH_SLOTS];

        snprintf(p, INTEG_PATH_MAX, "while [ -d %s ] && [ ! -e %s/go ]; do sleep 0.05; done", t->dir, t->dir);
        return p;
}

static void integ_track(struct integ *t, pid_t pid)
{
        for (unsigned i = 0; i < INTEG_MAX_PROCS; i++)
                if (t->procs[i] == 0) {
                        t->procs[i] = pid;
                        return;
                }
        fail_msg("harness: more than %d processes at once", INTEG_MAX_PROCS);
}

static void integ_untrack(struct integ *t, pid_t pid)
{
        for (unsigned i = 0; i < INTEG_MAX_PROCS; i++)
                if (t->procs[i] == pid)
                        t->procs[i] = 0;
}

pid_t integ_spawn_fds(struct integ *t, char *const argv[], int in, int out, int err)
{
        posix_spawn_file_actions_t fa;
        int fds[3] = { in, out, err };
        pid_t pid;
        int r;

        posix_spawn_file_actions_init(&fa);
        for (int i = 0; i < 3; i++) {
                if (fds[i] < 0)
                        posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
                else
                        posix_spawn_file_actions_adddup2(&fa, fds[i], i);
        }
        r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                fail_msg("cannot spawn %s: %s", argv[0], strerror(r));
        integ_track(t, pid);
        return pid;
}

pid_t integ_spawn(struct integ *t, char *const argv[], const char *in, const char *out, const char *err)
{
        int fds[3] = { -1, -1, -1 };
        const char *paths[3] = { in, out, err };
        pid_t pid;

        for (int i = 0; i < 3; i++) {
                if (!paths[i])
                        continue;
                fds[i] = open(paths[i], i == 0 ? O_RDONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fds[i] < 0)
                        fail_msg("cannot open %s: %s", paths[i], strerror(errno));
        }
        pid = integ_spawn_fds(t, argv, fds[0], fds[1], fds[2]);
        for (int i = 0; i < 3; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        return pid;
}

static int integ_status_code(int status)
{
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -1;
}

int integ_reap(struct integ *t, pid_t pid, int timeout_ms, int *ret_code)
{
        int64_t deadline = integ_now_ms() + timeout_ms;
        int status, delay = 1;

        for (;;) {
                pid_t r = waitpid(pid, &status, WNOHANG);

                if (r == pid) {
                        integ_untrack(t, pid);
                        if (ret_code)
                                *ret_code = integ_status_code(status);
                        return 0;
                }
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (integ_now_ms() >= deadline)
                        return -ETIMEDOUT;
                integ_sleep_ms(delay);
                if (delay < 50)
                        delay *= 2;
        }
}

void integ_kill(struct integ *t, pid_t pid, int sig)
{
        if (pid <= 0)
                return;
        (void)kill(pid, sig);
        if (integ_reap(t, pid, INTEG_WAIT_MS, NULL) < 0)
                fail_msg("process %d did not end after signal %d", (int)pid, sig);
}

bool integ_alive(struct integ *t, pid_t pid)
{
        int status;

        return waitpid(pid, &status, WNOHANG) == 0;
}

char *integ_read_file(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0, cap = 0;

        if (!f)
                return NULL;
        for (;;) {
                size_t n;

                if (cap - len < 65536) {
                        char *nb = realloc(buf, cap + 65536 + 1);

                        if (!nb) {
                                free(buf);
                                fclose(f);
                                return NULL;
                        }
                        buf = nb;
                        cap += 65536;
                }
                n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        fclose(f);
        buf[len] = 0;
        if (ret_len)
                *ret_len = len;
        return buf;
}

bool integ_wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
        int64_t deadline = integ_now_ms() + timeout_ms;

        for (;;) {
                char *s = integ_read_file(path, NULL);
                bool found = s && strstr(s, needle);

                free(s);
                if (found)
                        return true;
                if (integ_now_ms() >= deadline)
                        return false;
                integ_sleep_ms(20);
        }
}

void integ_dump_daemon_log(struct integ *t)
{
        char *s = integ_read_file(t->daemon_log, NULL);

        fprintf(stderr, "---- vsockmuxd log (%s) ----\n%s---- end of log ----\n", t->daemon_log, s ? s : "(none)\n");
        free(s);
}

char **integ_cli_argv(struct integ *t, char **args)
{
        char **argv = t->argv;
        size_t n = 0;

        argv[n++] = (char *)t->cfg->cli;
        argv[n++] = (char *)"--socket";
        argv[n++] = t->sock;
        for (; *args; args++) {
                if (n + 1 >= INTEG_MAX_ARGS)
                        fail_msg("harness: too many CLI arguments");
                argv[n++] = *args;
        }
        argv[n] = NULL;
        return argv;
}

void integ_runv(struct integ *t, struct integ_result *res, const char *in, char *const argv[])
{
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX];
        unsigned id = ++t->seq;
        pid_t pid;

        snprintf(out, sizeof(out), "%s/run-%u.out", t->dir, id);
        snprintf(err, sizeof(err), "%s/run-%u.err", t->dir, id);
        pid = integ_spawn(t, argv, in, out, err);
        if (integ_reap(t, pid, INTEG_WAIT_MS, &res->code) < 0) {
                integ_dump_daemon_log(t);
                fail_msg("%s did not finish within %d ms", argv[0], INTEG_WAIT_MS);
        }
        res->out = integ_read_file(out, NULL);
        res->err = integ_read_file(err, NULL);
        assert_non_null(res->out);
        assert_non_null(res->err);
        unlink(out);
        unlink(err);
}

void integ_run_prefixed(struct integ *t, struct integ_result *res, char *const prefix[], va_list ap)
{
        char *argv[INTEG_MAX_ARGS];
        size_t n = 0;

        for (; prefix[n]; n++) {
                if (n + 1 >= INTEG_MAX_ARGS)
                        fail_msg("harness: too many arguments");
                argv[n] = prefix[n];
        }
        for (char *a; (a = va_arg(ap, char *));) {
                if (n + 1 >= INTEG_MAX_ARGS)
                        fail_msg("harness: too many arguments");
                argv[n++] = a;
        }
        argv[n] = NULL;
        integ_runv(t, res, NULL, argv);
}

void integ_cli_as_nobody(struct integ *t, struct integ_result *res, const char *sock, ...)
{
        char *const prefix[] = { (char *)INTEG_SETPRIV,
                                 (char *)"--reuid=" INTEG_NOBODY,
                                 (char *)"--regid=" INTEG_NOBODY,
                                 (char *)"--clear-groups",
                                 (char *)t->cfg->cli,
                                 (char *)"--socket",
                                 (char *)(sock ? sock : t->sock),
                                 NULL };
        va_list ap;

        va_start(ap, sock);
        integ_run_prefixed(t, res, prefix, ap);
        va_end(ap);
}

void integ_cliv(struct integ *t, struct integ_result *res, const char *in, char *const args[])
{
        integ_runv(t, res, in, integ_cli_argv(t, (char **)args));
}

void integ_cli(struct integ *t, struct integ_result *res, const char *in, ...)
{
        char *args[INTEG_MAX_ARGS];
        size_t n = 0;
        va_list ap;

        va_start(ap, in);
        for (char *a; (a = va_arg(ap, char *));) {
                if (n + 1 >= INTEG_MAX_ARGS)
                        fail_msg("harness: too many CLI arguments");
                args[n++] = a;
        }
        va_end(ap);
        args[n] = NULL;
        integ_cliv(t, res, in, args);
}

void integ_result_done(struct integ_result *res)
{
        free(res->out);
        free(res->err);
        res->out = res->err = NULL;
}

struct json_object *integ_cli_json(struct integ *t, ...)
{
        struct integ_result res;
        struct json_object *o;
        char *args[INTEG_MAX_ARGS];
        size_t n = 0;
        va_list ap;

        va_start(ap, t);
        for (char *a; (a = va_arg(ap, char *));) {
                if (n + 1 >= INTEG_MAX_ARGS)
                        fail_msg("harness: too many CLI arguments");
                args[n++] = a;
        }
        va_end(ap);
        args[n] = NULL;
        integ_cliv(t, &res, NULL, args);
        /* `wait` ends with the process's own exit code; its JSON says the rest. */
        if (res.code != 0 && strcmp(args[0], "wait") != 0)
                fail_msg("vsockmux %s failed with %d: %s", args[0], res.code, res.err);
        o = json_tokener_parse(res.out);
        if (!o)
                fail_msg("vsockmux %s printed no JSON: '%s'", args[0], res.out);
        integ_result_done(&res);
        return o;
}

pid_t integ_sim_start(struct integ *t, const char *name)
{
        char log[INTEG_PATH_MAX];
        char *argv[] = {
                (char *)t->cfg->sim,
                (char *)"--hvsock",
                (char *)integ_hvsock(t, name),
                t->cfg->upstream       ? (char *)"--fidelity=upstream"
                : !t->cfg->resume      ? (char *)"--no-resume"
                : t->cfg->no_ack       ? (char *)"--no-ack"
                : t->cfg->no_stdin_eof ? (char *)"--no-stdin-eof"
                                       : NULL,
                t->cfg->upstream && t->no_bridge_panic ? (char *)"--no-bridge-panic" : NULL,
                NULL,
        };

        snprintf(log, sizeof(log), "%s/sim-%s.log", t->dir, name);
        return integ_spawn(t, argv, NULL, log, log);
}

void integ_wait_bridge(struct integ *t, const char *name, const char *state)
{
        int64_t deadline = integ_now_ms() + INTEG_WAIT_MS;

        for (;;) {
                struct json_object *vms = integ_cli_json(t, "vm", "ls", "--json", NULL);
                bool found = false;

                for (size_t i = 0; i < json_object_array_length(vms); i++) {
                        struct json_object *vm = json_object_array_get_idx(vms, i), *v;

                        if (json_object_object_get_ex(vm, "name", &v) && !strcmp(json_object_get_string(v), name) &&
                            json_object_object_get_ex(vm, "bridge", &v) && !strcmp(json_object_get_string(v), state))
                                found = true;
                }
                json_object_put(vms);
                if (found)
                        return;
                if (integ_now_ms() >= deadline) {
                        integ_dump_daemon_log(t);
                        fail_msg("VM %s's bridge never became %s", name, state);
                }
                integ_sleep_ms(50);
        }
}

pid_t integ_vm_with_sim(struct integ *t, const char *name)
{
        struct integ_result res;
        pid_t sim;

        integ_cli(t, &res, NULL, "vm", "add", name, "--hvsock", integ_hvsock(t, name), NULL);
        if (res.code != 0)
                fail_msg("vm add %s failed with %d: %s", name, res.code, res.err);
        integ_result_done(&res);
        sim = integ_sim_start(t, name);
        integ_wait_bridge(t, name, "connected");
        return sim;
}

int integ_connect_unix(const char *path, int type)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = INTEG_WAIT_MS / 1000 };
        int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

        if (fd < 0)
                fail_msg("socket: %s", strerror(errno));
        assert_true(strlen(path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                fail_msg("connect %s: %s", path, strerror(errno));
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
        return fd;
}

void integ_expect_closed(struct integ *t, int fd, const char *what)
{
        char buf[4096];

        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);

                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        return;
                if (n < 0) {
                        integ_dump_daemon_log(t);
                        fail_msg("the daemon kept %s open: %s", what, strerror(errno));
                }
        }
}

static bool integ_can_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        if (strlen(path) >= sizeof(sa.sun_path)) {
                close(fd);
                return false;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        return ok;
}

/* VSOCKMUX_DAEMON_WRAPPER="valgrind --leak-check=full ..." runs the daemon under that command:
 * split at spaces, the first word an absolute path (meson's valgrind test setup sets it). */
static size_t integ_daemon_wrapper(char *buf, size_t size, char **argv, size_t max)
{
        const char *w = getenv("VSOCKMUX_DAEMON_WRAPPER");
        size_t n = 0;

        if (!w || !*w || strlen(w) >= size)
                return 0;
        memcpy(buf, w, strlen(w) + 1);
        for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok && n < max; tok = strtok_r(NULL, " ", &save))
                argv[n++] = tok;
        return n;
}

/* Starts vsockmuxd on t's socket and state dir (append: add to its log, a restart) and waits until
 * it accepts. */
static unsigned integ_count_in_file(const char *path, const char *needle)
{
        char *s = integ_read_file(path, NULL);
        unsigned n = 0;

        for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
                n++;
        free(s);
        return n;
}

static int integ_daemon_spawn(struct integ *t, char *const extra[], bool append)
{
        const struct integ_config *cfg = t->cfg;
        /* Ready once its own log says it listens, which it says after every output is up: the
         * control socket accepts earlier, before --metrics-listen is bound (an ASan CI run's first
         * metrics request found no socket), and a daemon killed a moment ago still accepts (its
         * io_uring holds the listener until the kernel tears the ring down). */
        static const char listening[] = "vsockmuxd: listening on ";
        unsigned listened = append ? integ_count_in_file(t->daemon_log, listening) : 0;
        int64_t deadline;

        {
                char wrapper[1024];
                char *argv[INTEG_MAX_ARGS];
                size_t n = integ_daemon_wrapper(wrapper, sizeof(wrapper), argv, INTEG_MAX_ARGS / 2);
                /* These tests kill guests for good and expect "exit status lost": a short reconnect
                 * grace keeps each from waiting the default 30 s. Reconnecting within the grace is
                 * tested in tests/daemon/test-reconnect.c; a test's own extra args come later and win. */
                char *const base[] = {
                        (char *)cfg->daemon,
                        (char *)"--socket",
                        t->sock,
                        (char *)"--state-dir",
                        t->state_dir,
                        (char *)"--hvsock-root",
                        t->dir, /* where integ_hvsock() puts the VMs' sockets */
                        (char *)"--log-level",
                        (char *)"debug",
                        (char *)"--bridge-reconnect-grace",
                        (char *)"1",
                        NULL,
                };

                for (size_t i = 0; base[i]; i++)
                        argv[n++] = base[i];
                for (size_t i = 0; extra && extra[i] && n + 1 < INTEG_MAX_ARGS; i++)
                        argv[n++] = extra[i];
                argv[n] = NULL;
                if (append) {
                        int fd = open(t->daemon_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

                        if (fd < 0)
                                return -errno;
                        t->daemon = integ_spawn_fds(t, argv, -1, fd, fd);
                        close(fd);
                } else
                        t->daemon = integ_spawn(t, argv, NULL, t->daemon_log, t->daemon_log);
                integ_untrack(t, t->daemon);
        }
        deadline = integ_now_ms() + INTEG_WAIT_MS;
        /* Ready means accepting: the socket file exists a moment before listen(). */
        while (!integ_can_connect(t->sock) || integ_count_in_file(t->daemon_log, listening) <= listened) {
                int status;

                if (waitpid(t->daemon, &status, WNOHANG) == t->daemon) {
                        t->daemon = 0;
                        integ_dump_daemon_log(t);
                        return -ECHILD;
                }
                if (integ_now_ms() >= deadline) {
                        integ_dump_daemon_log(t);
                        return -ETIMEDOUT;
                }
                integ_sleep_ms(10);
        }
        return 0;
}

int integ_daemon_restart(struct integ *t, char *const extra[])
{
        return integ_daemon_spawn(t, extra, true);
}

int integ_new(const struct integ_config *cfg, struct integ **ret)
{
        return integ_new_args(cfg, NULL, ret);
}

int integ_new_args(const struct integ_config *cfg, char *const extra[], struct integ **ret)
{
        struct integ *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        t->cfg = cfg;
        snprintf(t->dir, sizeof(t->dir), "/tmp/vsockmux-integ.XXXXXX");
        if (!mkdtemp(t->dir) || chmod(t->dir, 0755) < 0) {
                free(t);
                return -errno;
        }
        snprintf(t->sock, sizeof(t->sock), "%s/ctl.sock", t->dir);
        snprintf(t->state_dir, sizeof(t->state_dir), "%s/state", t->dir);
        snprintf(t->daemon_log, sizeof(t->daemon_log), "%s/vsockmuxd.log", t->dir);
        r = integ_daemon_spawn(t, extra, false);
        if (r < 0) {
                integ_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static int integ_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)remove(path);
        return 0;
}

int integ_free(struct integ *t)
{
        int code = -1;

        if (!t)
                return -1;
        for (unsigned i = 0; i < INTEG_MAX_PROCS; i++)
                if (t->procs[i] > 0) {
                        /* One that leads a group of its own (setsid) takes its children along. */
                        if (getpgid(t->procs[i]) == t->procs[i])
                                (void)kill(-t->procs[i], SIGKILL);
                        (void)kill(t->procs[i], SIGKILL);
                        (void)waitpid(t->procs[i], NULL, 0);
                }
        if (t->daemon > 0) {
                (void)kill(t->daemon, SIGTERM);
                if (integ_reap(t, t->daemon, INTEG_WAIT_MS, &code) < 0) {
                        (void)kill(t->daemon, SIGKILL);
                        (void)waitpid(t->daemon, NULL, 0);
                        code = -1;
                }
                if (code != 0)
                        integ_dump_daemon_log(t);
        }
        if (!getenv("VSOCKMUX_INTEG_KEEP"))
                (void)nftw(t->dir, integ_rm_one, 16, FTW_DEPTH | FTW_PHYS);
        else
                fprintf(stderr, "kept %s\n", t->dir);
        free(t);
        return code;
}

int integ_setup(void **state)
{
        struct integ *t;
        int r = integ_new(*state, &t);

        if (r < 0) {
                fprintf(stderr, "cannot start vsockmuxd: %s\n", strerror(-r));
                return -1;
        }
        *state = t;
        return 0;
}

int integ_teardown(void **state)
{
        struct integ *t = *state;
        pid_t daemon = t->daemon;
        int code = integ_free(t);

        /* A daemon that a test stopped itself (daemon == 0) was checked there. */
        if (daemon > 0 && code != 0) {
                fprintf(stderr, "vsockmuxd did not exit 0 on SIGTERM (got %d)\n", code);
                return -1;
        }
        return 0;
}

/* The daemon cannot start without io_uring (ENOSYS: not in this kernel; EPERM: io_uring_disabled or
 * a seccomp filter): that is a skip, the way liburing's tests do it, not a failure. */
static bool io_uring_unavailable(void)
{
        struct io_uring ring;
        int k = io_uring_queue_init(2, &ring, 0);

        if (k == -ENOSYS || k == -EPERM) {
                printf("SKIP: no io_uring here: %s\n", strerror(-k));
                return true;
        }
        if (k == 0)
                io_uring_queue_exit(&ring);
        return false;
}

int integ_run(const char *name, struct CMUnitTest *tests, size_t n, int argc, char **argv)
{
        struct integ_config cfg;

        if (integ_config_parse(argc, argv, &cfg) < 0) {
                fprintf(stderr,
                        "usage: %s [--daemon PATH --cli PATH --sim PATH] [--resume | --upstream] [--skip REASON] "
                        "(or set VSOCKMUX_BUILD_ROOT)\n",
                        argv[0]);
                return 2;
        }
        if (cfg.skip) {
                printf("SKIP: %s\n", cfg.skip);
                return 77;
        }
        if (io_uring_unavailable())
                return 77;
        for (size_t i = 0; i < n; i++) {
                tests[i].initial_state = &cfg;
                if (!tests[i].setup_func)
                        tests[i].setup_func = integ_setup;
                if (!tests[i].teardown_func)
                        tests[i].teardown_func = integ_teardown;
        }
        if (getenv("VSOCKMUX_INTEG_FILTER"))
                cmocka_set_test_filter(getenv("VSOCKMUX_INTEG_FILTER"));
        fprintf(stderr, "%s: simulator %s\n", name,
                cfg.upstream ? "with hcsshim's guest's behaviour (--fidelity upstream)"
                : cfg.resume ? "with stdio resume"
                             : "without stdio resume");
        return _cmocka_run_group_tests(name, tests, n, NULL, NULL);
}

/* ---- JSON and process helpers shared by the tests ---- */

struct json_object *integ_json_get(struct json_object *o, const char *key)
{
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no '%s' in %s", key, json_object_to_json_string(o));
        return v;
}

const char *integ_json_str(struct json_object *o, const char *key)
{
        return json_object_get_string(integ_json_get(o, key));
}

int64_t integ_json_int(struct json_object *o, const char *key)
{
        return json_object_get_int64(integ_json_get(o, key));
}

/* The process with this pid in `ps NAME --json`; the caller puts the returned array. */
struct json_object *integ_ps_find(struct integ *t, const char *vm, long pid, struct json_object **ret_all)
{
        char name[64];
        struct json_object *all;

        snprintf(name, sizeof(name), "%s", vm);
        all = integ_cli_json(t, "ps", name, "--json", NULL);
        for (size_t i = 0; i < json_object_array_length(all); i++) {
                struct json_object *p = json_object_array_get_idx(all, i);

                if (integ_json_int(p, "pid") == pid) {
                        *ret_all = all;
                        return p;
                }
        }
        fail_msg("pid %ld not in ps %s: %s", pid, vm, json_object_to_json_string(all));
        return NULL;
}

long integ_detached_pid(struct integ *t, struct integ_result *res)
{
        char *end;
        long pid;

        integ_assert_code(t, res, 0);
        pid = strtol(res->out, &end, 10);
        if (pid <= 0 || strcmp(end, "\n") != 0)
                fail_msg("exec --detach printed '%s', not a pid", res->out);
        integ_result_done(res);
        return pid;
}

/* exec --detach prints the pid and nothing else. */
long integ_exec_detached(struct integ *t, const char *vm, const char *script)
{
        struct integ_result res;

        integ_cli(t, &res, NULL, "exec", vm, "--detach", "--", "sh", "-c", script, NULL);
        return integ_detached_pid(t, &res);
}

pid_t integ_vm_for_kills(struct integ *t, const char *vm)
{
        struct integ_result res;
        pid_t sim = integ_vm_with_sim(t, vm);

        if (!t->cfg->upstream)
                return sim;
        integ_cli(t, &res, NULL, "container", "create", vm, INTEG_KILL_CONTAINER, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        return sim;
}

size_t integ_killable_args(const struct integ *t, char **args, size_t n)
{
        if (t->cfg->upstream) {
                args[n++] = (char *)"--container";
                args[n++] = (char *)INTEG_KILL_CONTAINER;
        }
        return n;
}

long integ_exec_killable(struct integ *t, const char *vm, const char *stdout_path, const char *script)
{
        char *args[16];
        struct integ_result res;
        size_t n = 0;

        args[n++] = (char *)"exec";
        args[n++] = (char *)vm;
        n = integ_killable_args(t, args, n);
        args[n++] = (char *)"--detach";
        if (stdout_path) {
                args[n++] = (char *)"--stdout";
                args[n++] = (char *)stdout_path;
        }
        args[n++] = (char *)"--";
        args[n++] = (char *)"sh";
        args[n++] = (char *)"-c";
        args[n++] = (char *)script;
        args[n] = NULL;
        integ_cliv(t, &res, NULL, args);
        return integ_detached_pid(t, &res);
}

void integ_attach_path(struct integ *t, const char *vm, long pid, char *buf, size_t len)
{
        struct integ_result res;
        char pid_s[16];
        size_t n;

        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "attach", vm, pid_s, "--print-path", NULL);
        integ_assert_code(t, &res, 0);
        n = strcspn(res.out, "\n");
        if (n == 0 || n >= len || res.out[0] != '/')
                fail_msg("attach --print-path printed '%s', not a socket path", res.out);
        memcpy(buf, res.out, n);
        buf[n] = '\0';
        integ_result_done(&res);
}

void integ_touch(const char *path)
{
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        close(fd);
}

/* ---- the CRI log format (see harness.h) ---- */

static bool digits(const char *s, int n)
{
        for (int i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm); returns its length or 0. */
static size_t rfc3339_len(const char *s)
{
        size_t n = 19;

        if (!digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) || s[10] != 'T' ||
            !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
                return 0;
        if (s[n] == '.') {
                size_t f = 0;

                while (s[n + 1 + f] >= '0' && s[n + 1 + f] <= '9')
                        f++;
                if (f == 0 || f > 9)
                        return 0;
                n += 1 + f;
        }
        if (s[n] == 'Z')
                return n + 1;
        if ((s[n] == '+' || s[n] == '-') && digits(s + n + 1, 2) && s[n + 3] == ':' && digits(s + n + 4, 2))
                return n + 6;
        return 0;
}

static void cri_log_append(struct integ_cri_log *l, int k, const char *p, size_t n)
{
        l->text[k] = realloc(l->text[k], l->len[k] + n + 1);
        assert_non_null(l->text[k]);
        memcpy(l->text[k] + l->len[k], p, n);
        l->len[k] += n;
        l->text[k][l->len[k]] = '\0';
}

void integ_cri_log_parse_text(const char *buf, size_t len, struct integ_cri_log *ret)
{
        const char *p = buf, *end = buf + len;

        *ret = (struct integ_cri_log){ 0 };
        for (int k = 0; k < 2; k++)
                cri_log_append(ret, k, "", 0);
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p)), *tag, *content;
                size_t ts = rfc3339_len(p);
                int k = 0;

                if (!nl)
                        fail_msg("the log ends inside a record: '%.*s'", (int)(end - p), p);
                if (ts == 0 || p[ts] != ' ')
                        fail_msg("no RFC 3339 timestamp at the start of '%.*s'", (int)(nl - p), p);
                if (strncmp(p + ts + 1, "stdout ", 7) == 0)
                        k = 0;
                else if (strncmp(p + ts + 1, "stderr ", 7) == 0)
                        k = 1;
                else
                        fail_msg("no stream in '%.*s'", (int)(nl - p), p);
                tag = p + ts + 8;
                content = memchr(tag, ' ', (size_t)(nl - tag));
                if (!content || (tag[0] != 'F' && tag[0] != 'P') || (tag + 1 != content && tag[1] != ':'))
                        fail_msg("no F or P tag in '%.*s'", (int)(nl - p), p);
                content++;
                cri_log_append(ret, k, content, (size_t)(nl - content));
                if (tag[0] == 'F')
                        cri_log_append(ret, k, "\n", 1);
                else
                        ret->partial[k]++;
                p = nl + 1;
        }
}

void integ_cri_log_parse(const char *path, struct integ_cri_log *ret)
{
        size_t len;
        char *buf = integ_read_file(path, &len);

        assert_non_null(buf);
        integ_cri_log_parse_text(buf, len, ret);
        free(buf);
}

void integ_cri_log_done(struct integ_cri_log *l)
{
        free(l->text[0]);
        free(l->text[1]);
}

char *integ_read_rotated(const char *log, size_t cap, size_t *ret_len)
{
        char name[INTEG_PATH_MAX + 16];
        char *all = calloc(1, 1);
        size_t len = 0;
        unsigned n = 1;

        assert_non_null(all);
        for (;; n++) {
                snprintf(name, sizeof(name), "%s.%u", log, n);
                if (access(name, F_OK) < 0)
                        break;
        }
        for (unsigned i = n; i >= 1; i--) {
                size_t l;
                char *text;

                if (i == 1)
                        snprintf(name, sizeof(name), "%s", log);
                else
                        snprintf(name, sizeof(name), "%s.%u", log, i - 1);
                text = integ_read_file(name, &l);
                if (!text)
                        continue;
                if (l > cap)
                        fail_msg("%s holds %zu bytes, over its --log-size-max %zu", name, l, cap);
                all = realloc(all, len + l + 1);
                assert_non_null(all);
                memcpy(all + len, text, l + 1);
                len += l;
                free(text);
        }
        *ret_len = len;
        return all;
}

void integ_wait_logged(struct integ *t, const char *path, size_t cap, long more)
{
        char needle[48];
        size_t len;
        char *all = integ_read_rotated(path, cap, &len);
        long n = 0;

        for (size_t i = 0; i < len; i++)
                n += all[i] == '\n';
        free(all);
        snprintf(needle, sizeof(needle), " stdout F line %ld\n", n + more);
        for (int waited = 0;; waited += 20) {
                bool found;

                all = integ_read_rotated(path, cap, &len);
                found = strstr(all, needle) != NULL;
                free(all);
                if (found)
                        return;
                if (waited >= INTEG_WAIT_MS) {
                        integ_dump_daemon_log(t);
                        fail_msg("the log stopped before '%s'", needle);
                }
                integ_sleep_ms(20);
        }
}

/* ---- a journal of our own (see harness.h) ---- */

int integ_journal_setup(void **state)
{
        struct integ_journal *j = calloc(1, sizeof(*j));
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char script[128], env[256];
        FILE *f;
        int r;

        if (!j)
                return -1;
        if (geteuid() != 0 || access("/usr/bin/unshare", X_OK) < 0) {
                free(j);
                *state = NULL;
                return 0; /* the test skips, saying why */
        }
        snprintf(j->dir, sizeof(j->dir), "/tmp/vsockmux-journal.XXXXXX");
        if (!mkdtemp(j->dir))
                return -1;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/socket", j->dir);
        j->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (j->sock < 0 || bind(j->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -1;
        snprintf(script, sizeof(script), "%s/wrap.sh", j->dir);
        f = fopen(script, "w");
        if (!f)
                return -1;
        fprintf(f,
                "#!/bin/sh\nmount -t tmpfs vsockmux-test /run && mkdir -p /run/systemd/journal && "
                "mount --bind %s /run/systemd/journal || exit 99\nexec \"$@\"\n",
                j->dir);
        fclose(f);
        if (chmod(script, 0700) < 0)
                return -1;
        snprintf(env, sizeof(env), "/usr/bin/unshare -m --propagation private %s", script);
        setenv("VSOCKMUX_DAEMON_WRAPPER", env, 1);
        r = integ_new(*state, &j->t);
        unsetenv("VSOCKMUX_DAEMON_WRAPPER");
        if (r < 0)
                return -1;
        *state = j;
        return 0;
}

int integ_journal_teardown(void **state)
{
        struct integ_journal *j = *state;
        char cmd[128];
        int code;

        if (!j)
                return 0;
        code = integ_free(j->t);
        if (j->sock >= 0)
                close(j->sock);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", j->dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", j->dir);
        free(j);
        return code == 0 ? 0 : -1;
}

/* The fixture's daemon once more (a restart): in a namespace of its own, the fixture's socket its
 * journal's. */
int integ_journal_restart(struct integ_journal *j, char *const extra[])
{
        char env[256];
        int r;

        snprintf(env, sizeof(env), "/usr/bin/unshare -m --propagation private %s/wrap.sh", j->dir);
        setenv("VSOCKMUX_DAEMON_WRAPPER", env, 1);
        r = integ_daemon_restart(j->t, extra);
        unsetenv("VSOCKMUX_DAEMON_WRAPPER");
        return r;
}

void integ_journal_collect(int sock, struct integ_journal_entries *ret)
{
        char buf[65536];

        for (;;) {
                ssize_t n = recv(sock, buf, sizeof(buf) - 1, 0);

                if (n < 0 && errno == EAGAIN)
                        return;
                assert_true(n > 0);
                if (ret->n == ret->cap) {
                        ret->cap = ret->cap ? ret->cap * 2 : 64;
                        ret->e = realloc(ret->e, ret->cap * sizeof(*ret->e));
                        assert_non_null(ret->e);
                }
                buf[n] = '\0';
                ret->e[ret->n] = strdup(buf);
                assert_non_null(ret->e[ret->n++]);
        }
}

struct integ_journal *integ_journal_or_skip(void **state)
{
        struct integ_journal *j = *state;

        if (!j) {
                print_message("skipped: needs root and /usr/bin/unshare for a private journal socket\n");
                skip();
        }
        return j;
}

void integ_journal_wait(struct integ_journal *j, struct integ_journal_entries *all, long n)
{
        char want[48];

        snprintf(want, sizeof(want), "MESSAGE=line %ld\n", n);
        for (int waited = 0;; waited += 20) {
                integ_journal_collect(j->sock, all);
                for (unsigned i = 0; i < all->n; i++)
                        if (strncmp(all->e[i], want, strlen(want)) == 0)
                                return;
                if (waited >= INTEG_WAIT_MS) {
                        integ_dump_daemon_log(j->t);
                        fail_msg("no journal entry '%s' among %u", want, all->n);
                }
                integ_sleep_ms(20);
        }
}

char *integ_journal_stdout_text(struct integ *t, const struct integ_journal_entries *all, const char *exec_id,
                                const char *vm)
{
        char id[320], name[320], vm_field[96];
        char *text = NULL;
        size_t len = 0;

        snprintf(id, sizeof(id), "\nCONTAINER_ID_FULL=%s\n", exec_id);
        snprintf(name, sizeof(name), "\nCONTAINER_NAME=%s\n", exec_id);
        snprintf(vm_field, sizeof(vm_field), "\nVSOCKMUX_VM=%s\n", vm);
        for (unsigned i = 0; i < all->n; i++) {
                const char *e = all->e[i], *nl = strchr(e, '\n');

                assert_non_null(nl);
                assert_int_equal(strncmp(e, "MESSAGE=", 8), 0);
                integ_assert_contains(e, id);
                integ_assert_contains(e, name);
                integ_assert_contains(e, vm_field);
                integ_assert_contains(e, "\nVSOCKMUX_STREAM=stdout\n");
                text = realloc(text, len + (size_t)(nl - e) + 2);
                assert_non_null(text);
                memcpy(text + len, e + 8, (size_t)(nl - e) - 8);
                len += (size_t)(nl - e) - 8;
                if (!strstr(e, "\nCONTAINER_PARTIAL_MESSAGE=true\n"))
                        text[len++] = '\n';
                text[len] = '\0';
        }
        if (!text) {
                integ_dump_daemon_log(t);
                fail_msg("no journal entries");
        }
        return text;
}

const char *integ_journal_find(const struct integ_journal_entries *j, const char *message)
{
        char want[256];

        snprintf(want, sizeof(want), "MESSAGE=%s\n", message);
        for (unsigned i = 0; i < j->n; i++)
                if (strncmp(j->e[i], want, strlen(want)) == 0)
                        return j->e[i];
        fail_msg("no journal entry with MESSAGE=%s among %u", message, j->n);
        return NULL;
}

void integ_journal_entries_done(struct integ_journal_entries *j)
{
        for (unsigned i = 0; i < j->n; i++)
                free(j->e[i]);
        free(j->e);
        *j = (struct integ_journal_entries){ .n = 0 };
}
