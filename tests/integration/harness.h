/* tests/integration/harness.h: struct integ owns one test's temp dir, its vsockmuxd and every process it spawns (sims, CLIs). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;

/* Generous waits: a loaded 2-core machine under ASan. Nothing asserts how fast anything is. */
#define INTEG_WAIT_MS 60000
#define INTEG_MAX_PROCS 32
#define INTEG_MAX_ARGS 64
#define INTEG_NOBODY "65534"
#define INTEG_SETPRIV "/usr/bin/setpriv" /* util-linux */
#define INTEG_PATH_SLOTS 16
#define INTEG_PATH_MAX 256
#define INTEG_DIR_MAX 64 /* /tmp/vsockmux-integ.XXXXXX */
#define INTEG_NAME_MAX 128

/* Where the three programs are and how the simulator plays the guest. */
struct integ_config {
        char daemon[INTEG_PATH_MAX];
        char cli[INTEG_PATH_MAX];
        char sim[INTEG_PATH_MAX];
        bool resume;       /* false: the simulator runs with --no-resume (legacy stdio replay only) */
        bool upstream;     /* the simulator runs with --fidelity upstream: hcsshim's guest (implies no resume) */
        bool no_ack;       /* the simulator runs with --no-ack: resume, but no delivery acks */
        bool no_stdin_eof; /* the simulator runs with --no-stdin-eof: resume, but no stdin end confirmation */
        const char *skip;  /* set: the whole program skips (exit 77) saying this */
};

struct integ {
        const struct integ_config *cfg;
        char dir[INTEG_DIR_MAX];
        char sock[INTEG_NAME_MAX];
        char state_dir[INTEG_NAME_MAX];
        char daemon_log[INTEG_NAME_MAX];
        pid_t daemon;
        /* With --upstream: the simulator runs with --no-bridge-panic, losing a reply made while no
         * bridge connection is up where hcsshim's guest panics and its VM stops (sim/bridge.c). */
        bool no_bridge_panic;
        pid_t procs[INTEG_MAX_PROCS]; /* everything else we spawned and have not reaped */
        unsigned seq;
        char paths[INTEG_PATH_SLOTS][INTEG_PATH_MAX];
        unsigned path_next;
        char *argv[INTEG_MAX_ARGS];
};

/* One finished CLI run. code is the exit status, 128+N if signal N ended it. */
struct integ_result {
        int code;
        char *out;
        char *err;
};

/* Parses --daemon/--cli/--sim/--resume/--upstream/--no-ack/--no-stdin-eof/--skip, falling back to $VSOCKMUX_BUILD_ROOT. */
int integ_config_parse(int argc, char **argv, struct integ_config *ret);

/* cmocka setup/teardown: *state is the struct integ_config on entry, the struct integ after. */
int integ_setup(void **state);
int integ_teardown(void **state);

/* Makes the temp dir (0755 so other uids can reach the socket) and starts vsockmuxd. */
int integ_new(const struct integ_config *cfg, struct integ **ret);
/* The same with extra vsockmuxd options (NULL-terminated; NULL for none). */
int integ_new_args(const struct integ_config *cfg, char *const extra[], struct integ **ret);
/* Starts vsockmuxd again on t's socket and state dir (the last one is stopped or killed and
 * reaped: t->daemon 0), its log appended; extra as for integ_new_args(). */
int integ_daemon_restart(struct integ *t, char *const extra[]);
/* Kills and reaps everything still running, removes the temp dir. Returns the daemon's exit code
 * after SIGTERM (or -1 if it had to be killed or was already gone). */
int integ_free(struct integ *t);

/* A path inside the test's dir; valid for the next INTEG_PATH_SLOTS calls. */
const char *integ_path(struct integ *t, const char *name);

/* posix_spawn with stdin/stdout/stderr from/to files (NULL: /dev/null; fd 0..2 via "&N" is not
 * supported). Tracked: teardown kills it. */
pid_t integ_spawn(struct integ *t, char *const argv[], const char *in, const char *out, const char *err);
/* Same, with the given fds dup'ed onto 0, 1, 2 (-1: /dev/null). */
pid_t integ_spawn_fds(struct integ *t, char *const argv[], int in, int out, int err);
/* Waits up to timeout_ms; 0 and *ret_code, or -ETIMEDOUT (the process is left running). */
int integ_reap(struct integ *t, pid_t pid, int timeout_ms, int *ret_code);
/* SIGKILLs and reaps a tracked process. */
void integ_kill(struct integ *t, pid_t pid, int sig);
bool integ_alive(struct integ *t, pid_t pid);

/* Runs `vsockmux --socket SOCK ARGS...` (NULL-terminated) with stdin from in (NULL: /dev/null),
 * capturing stdout and stderr. Fails the test if it does not end within INTEG_WAIT_MS. */
void integ_cli(struct integ *t, struct integ_result *res, const char *in, ...) __attribute__((sentinel));
void integ_cliv(struct integ *t, struct integ_result *res, const char *in, char *const args[]);
/* Runs any program the same way (argv[0] is a path). */
void integ_runv(struct integ *t, struct integ_result *res, const char *in, char *const argv[]);
/* integ_runv() of prefix (NULL-terminated, prefix[0] a path) and then the NULL-terminated
 * arguments in ap, stdin /dev/null: for a test's own variadic wrapper (another socket, another uid). */
void integ_run_prefixed(struct integ *t, struct integ_result *res, char *const prefix[], va_list ap);
/* `vsockmux --socket SOCK ARGS...` (NULL-terminated) as uid/gid INTEG_NOBODY with no supplementary
 * groups, through INTEG_SETPRIV; sock NULL is t's daemon. Stdin /dev/null. */
void integ_cli_as_nobody(struct integ *t, struct integ_result *res, const char *sock, ...) __attribute__((sentinel));
/* The CLI's argv for integ_spawn: storage in t, valid until the next call. */
char **integ_cli_argv(struct integ *t, char **args);
void integ_result_done(struct integ_result *res);
/* Runs a CLI command expected to succeed with JSON on stdout and returns it parsed. */
struct json_object *integ_cli_json(struct integ *t, ...) __attribute__((sentinel));

/* Starts the simulator for VM name (its hvsock path is integ_hvsock(t, name)). */
pid_t integ_sim_start(struct integ *t, const char *name);
const char *integ_hvsock(struct integ *t, const char *name);
/* vm add NAME --hvsock ..., starts the simulator and waits until the bridge is connected. */
pid_t integ_vm_with_sim(struct integ *t, const char *name);
/* Polls `vm ls --json` until VM name's bridge is in state (e.g. "connected"). */
void integ_wait_bridge(struct integ *t, const char *name, const char *state);

/* Reads a whole file (NUL-terminated). NULL if it cannot be read. */
char *integ_read_file(const char *path, size_t *ret_len);
/* Polls until the file holds needle. */
bool integ_wait_file_contains(const char *path, const char *needle, int timeout_ms);
/* Prints the daemon's log to stderr (for failures). */
void integ_dump_daemon_log(struct integ *t);

/* A k8s-file log, read by the CRI log format's definition (kubelet's parseCRILog), not from our
 * writer: "<RFC3339Nano timestamp> <stdout|stderr> <tags> <content>\n", tags ':'-separated with F
 * (the line is full: kubelet adds the newline back) or P (partial: the content continues in the
 * next record of that stream) first. Fails the test on any line that is not a record. */
struct integ_cri_log {
        char *text[2]; /* stdout, stderr as kubelet would give them back */
        size_t len[2];
        unsigned partial[2]; /* P records seen */
};
void integ_cri_log_parse(const char *path, struct integ_cri_log *ret);
void integ_cri_log_parse_text(const char *buf, size_t len, struct integ_cri_log *ret);
void integ_cri_log_done(struct integ_cri_log *l);
/* A k8s-file log as one reader follows it, PATH.n-1 ... PATH.1, PATH (oldest first), NUL-terminated;
 * while the writer runs a file may move away under us (rotation), and is left out then. Fails when
 * a file holds more than cap bytes: rotation falls between records, each far smaller than cap. */
char *integ_read_rotated(const char *log, size_t cap, size_t *ret_len);
/* Waits until the log at path (rotated at cap: path.1, path.2, ...) holds the record "line N" for
 * N `more` beyond the records it holds now, or fails the test after INTEG_WAIT_MS. */
void integ_wait_logged(struct integ *t, const char *path, size_t cap, long more);

/* --log journald against a journal socket of our own: the daemon runs in a private mount
 * namespace whose /run/systemd/journal is the fixture's directory, so libsystemd's
 * sd_journal_sendv reaches our datagram socket and nobody else's journal. A cmocka setup and
 * teardown: *state is the fixture, or NULL when it cannot be had (not root, no unshare: skip). A
 * new daemon started by the one under test (an upgrade) is in that namespace too. */
struct integ_journal {
        struct integ *t;
        char dir[64];
        int sock;
};
int integ_journal_setup(void **state);
/* The fixture of a test's *state, or the test is skipped (not root, no unshare), saying why. */
struct integ_journal *integ_journal_or_skip(void **state);
int integ_journal_teardown(void **state);
/* integ_daemon_restart() for the fixture's daemon: the new one in a journal namespace as well. */
int integ_journal_restart(struct integ_journal *j, char *const extra[]);
/* Entries as sent (the native protocol: one datagram, "KEY=VALUE\n" fields). */
struct integ_journal_entries {
        char **e;
        unsigned n, cap;
};
/* Appends every entry queued so far. The daemon sends a process's entries before it reports the
 * exit, so after Wait they are all queued. */
void integ_journal_collect(int sock, struct integ_journal_entries *ret);
/* The entry whose MESSAGE is message (sd_journal_sendv keeps our field order: MESSAGE first). */
const char *integ_journal_find(const struct integ_journal_entries *j, const char *message);
void integ_journal_entries_done(struct integ_journal_entries *j);
/* Collects into all until an entry says MESSAGE=line n, or fails the test after INTEG_WAIT_MS
 * with the daemon's log. */
void integ_journal_wait(struct integ_journal *j, struct integ_journal_entries *all, long n);
/* A process's stdout entries joined as a reader joins them (a partial entry goes on in the next),
 * each checked to be MESSAGE first and to name the exec (CONTAINER_ID_FULL, CONTAINER_NAME), the
 * VM (VSOCKMUX_VM) and the stream; fails the test when there are none. Free it. */
char *integ_journal_stdout_text(struct integ *t, const struct integ_journal_entries *all, const char *exec_id,
                                const char *vm);

/* A raw client: connects a Unix socket of `type` (SOCK_STREAM, SOCK_SEQPACKET) to path, or fails
 * the test. Receives and sends time out after INTEG_WAIT_MS, so a peer that hangs fails the test. */
int integ_connect_unix(const char *path, int type);
/* Reads fd until its peer closes it (EOF or reset); fails the test, saying the daemon kept `what`,
 * if the peer keeps it open past the receive timeout. */
void integ_expect_closed(struct integ *t, int fd, const char *what);

/* A shell command that runs until the test's dir is gone: processes outlive a killed sim otherwise. */
const char *integ_alive_loop(struct integ *t);

/* A shell command that waits until the test touches integ_path(t, "go") (or its dir is gone). */
const char *integ_wait_go(struct integ *t);

void integ_sleep_ms(int ms);

struct json_object *integ_json_get(struct json_object *o, const char *key);
const char *integ_json_str(struct json_object *o, const char *key);
int64_t integ_json_int(struct json_object *o, const char *key);
/* The process with this pid in `ps VM --json`; *ret_all is the whole array for the caller to put. */
struct json_object *integ_ps_find(struct integ *t, const char *vm, long pid, struct json_object **ret_all);
/* `exec VM --detach -- sh -c SCRIPT`; asserts it printed only the pid and returns it. */
long integ_exec_detached(struct integ *t, const char *vm, const char *script);
/* An `exec --detach` run that must have succeeded: the pid it printed (and nothing else); done with res. */
long integ_detached_pid(struct integ *t, struct integ_result *res);
/* hcsshim's guest signals and resizes only processes inside a container (docs/hcsshim-guest.md).
 * With --upstream, integ_vm_for_kills() also creates container INTEG_KILL_CONTAINER in the VM and
 * integ_killable_args() puts an exec in it; with our guest neither adds anything. */
#define INTEG_KILL_CONTAINER "c1"
/* integ_vm_with_sim(), then the container with --upstream. Returns the simulator's pid. */
pid_t integ_vm_for_kills(struct integ *t, const char *vm);
/* Appends "--container", INTEG_KILL_CONTAINER to an exec's args at n with --upstream; the new n. */
size_t integ_killable_args(const struct integ *t, char **args, size_t n);
/* `exec VM [--container c1] --detach [--stdout PATH] -- sh -c SCRIPT` where a kill or a resize
 * reaches the process (stdout_path may be NULL); asserts it printed only the pid and returns it. */
long integ_exec_killable(struct integ *t, const char *vm, const char *stdout_path, const char *script);
/* The process's attach socket, opened by `vsockmux attach --print-path` (sockets open on first use). */
void integ_attach_path(struct integ *t, const char *vm, long pid, char *buf, size_t len);
void integ_touch(const char *path);

struct CMUnitTest;
/* Parses the config, hands it to every test's setup and runs the group; exit code for main. A
 * test without its own setup/teardown gets integ_setup/integ_teardown. VSOCKMUX_INTEG_FILTER=glob
 * runs only the matching tests. */
int integ_run(const char *name, struct CMUnitTest *tests, size_t n, int argc, char **argv);

/* Fails with the CLI's output and the daemon's log when the exit code is not the expected one. */
#define integ_assert_code(t, res, expected)                                                                        \
        do {                                                                                                       \
                if ((res)->code != (expected)) {                                                                   \
                        integ_dump_daemon_log(t);                                                                  \
                        fail_msg("exit code %d, expected %d\nstdout: '%s'\nstderr: '%s'", (res)->code, (expected), \
                                 (res)->out, (res)->err);                                                          \
                }                                                                                                  \
        } while (0)

/* Asserts that s contains needle, showing both when it does not. */
#define integ_assert_contains(s, needle)                                       \
        do {                                                                   \
                if (!strstr((s), (needle)))                                    \
                        fail_msg("'%s' does not contain '%s'", (s), (needle)); \
        } while (0)

/* A CLI error is exactly one line: "vsockmux: ...\n". */
#define integ_assert_one_line_error(s)                                             \
        do {                                                                       \
                const char *_nl = strchr((s), '\n');                               \
                if (strncmp((s), "vsockmux: ", 10) != 0 || !_nl || _nl[1] != '\0') \
                        fail_msg("not a one-line error: '%s'", (s));               \
        } while (0)
