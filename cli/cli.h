/* cli/cli.h: shared state and helpers of the vsockmux CLI; owns the control connection for one command. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "libvsockmux/cleanup.h"
#include "libvsockmux/vsockmux.h"
#include "util/macro.h"

#define CLI_DEFAULT_SOCKET "/run/vsockmux/vsockmux.sock"
#define CLI_SOCKET_ENV "VSOCKMUX_SOCKET"

/* Exit codes besides a process's own: a usage mistake, and a failure of vsockmux itself. */
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_EXEC_FAILED 125 /* exec: the process never ran (docker's convention) */
#define CLI_EXIT_STATUS_LOST 255
/* vsockmuxd stopped cleanly (SIGTERM) while we waited: the process goes on and `vsockmux wait`
 * after its restart gives the exit code (sysexits.h's EX_TEMPFAIL). */
#define CLI_EXIT_DAEMON_STOPPED 75
/* How such an answer starts (UNAVAILABLE; daemon/vmm-types.h's VMM_STOPPED_MESSAGE). */
#define CLI_DAEMON_STOPPED "vsockmuxd stopped"
/* A guest's exit code outside 0-255 (256 from a guest that does not truncate, a negative one):
 * never 0, which a truncation to 8 bits could give; the CLI names the real code. */
#define CLI_EXIT_CODE_UNFIT 255
/* Not an exit code: a command's option parser printed its --help; main() exits 0. It passes every
 * `if (r != 0) return r;` on the way up, so the command does nothing else. */
#define CLI_HELP_SHOWN 256

/* Longest config file `container create --config` sends. */
#define CLI_CONFIG_MAX (1u << 20)

struct cli_command;

struct cli {
        const char *socket;
        const char *command;            /* "vm add", for error lines */
        const struct cli_command *spec; /* the command running, for its --help */
        struct vsockmux_client *client;
};

typedef int (*cli_command_fn)(struct cli *cli, int argc, char **argv);

struct cli_command {
        const char *group; /* NULL for a top-level verb */
        const char *name;
        cli_command_fn fn;
        const char *usage;
        const char *summary; /* one sentence for --help */
};

/* "Usage: vsockmux USAGE", then the summary. */
void cli_command_help(const struct cli_command *cmd, FILE *f);

/* Replaces control characters in place (newlines and tabs become spaces, others '?'). */
char *cli_sanitize(char *s);

/* Prints "vsockmux: <command>: <message>" as one line on stderr; returns CLI_EXIT_FAILURE. */
int cli_error(const struct cli *cli, const char *fmt, ...) _printf_(2, 3);
/* The same, returning CLI_EXIT_USAGE and pointing at --help. */
int cli_usage_error(const struct cli *cli, const char *fmt, ...) _printf_(2, 3);

/* For getopt_long with optstring ":" and opterr = 0: reports the option argv[optind - 1] as unknown
 * (c == '?') or missing its value (c == ':'). Returns CLI_EXIT_USAGE. An unknown --help or -h is
 * the command's help instead: printed on stdout, returning CLI_HELP_SHOWN. Going through getopt
 * means `--env --help` stays --env's value and `-- ARGV --help` the process's argument. */
int cli_option_error(const struct cli *cli, int c, char **argv);
/* Parses only the one flag --`name`; the positional arguments stay in argv[optind..]. */
int cli_parse_flag(const struct cli *cli, int argc, char **argv, const char *name, bool *ret_set);
/* cli_parse_flag() for --json. */
int cli_parse_json_flag(const struct cli *cli, int argc, char **argv, bool *ret_json);
/* Runs getopt over a command that takes no options (so `--x` is refused, `--` honoured). */
int cli_parse_no_options(const struct cli *cli, int argc, char **argv);

/* Connects once; prints why on failure. Returns 0 or an exit code. */
int cli_connect(struct cli *cli);

/* A unary call on the Control service (method "VmAdd"); prints the daemon's error on failure.
 * Returns 0 with *ret_resp, or an exit code. */
int cli_call(struct cli *cli, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp);

/* The same, with the request's deadline (ttrpc's timeout_nano; 0 = none). */
/* The daemon answered that it stopped cleanly (CLI_DAEMON_STOPPED): exit with CLI_EXIT_DAEMON_STOPPED. */
struct vsockmux_status;
bool cli_daemon_stopped(int r, const struct vsockmux_status *st);
int cli_call_deadline(struct cli *cli, const char *method, const ProtobufCMessage *req, int64_t timeout_ns,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp);

/* "PID:stdin=SRC,stdout=DST,stderr=DST" (absolute paths), or "exec=ID:..." naming the process by
 * its exec id (a pid the guest reused names an exited entry too), into io, whose strings point
 * into *ret_copy (free it after the call). -EINVAL / -ENOMEM. At most CLI_MAX_IO per command. */
#define CLI_MAX_IO 16384u
#define CLI_IO_USAGE "--io wants PID:stdin=PATH,stdout=PATH,stderr=PATH or exec=ID:... with absolute paths"
int cli_parse_restore_io(const char *arg, Vsockmux__V1__RestoreIo *io, char **ret_copy);

/* Formats why a call failed in one phrase: the daemon's status or the transport error. */
void cli_describe_failure(const struct cli *cli, int r, const struct vsockmux_status *st, char *buf, size_t len);

/* PID|ID: all digits is a pid (into *ret_pid), anything else an exec id (into *ret_exec_id; the
 * daemon checks its form). Returns 0 or the usage error's exit code after saying why. */
int cli_parse_target(const struct cli *cli, const char *s, uint32_t *ret_pid, char **ret_exec_id);
/* Parses a decimal number within [min, max]; -EINVAL / -ERANGE. */
int cli_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *ret);
/* A VM's transport as `opt` gave it (--hvsock / --dest-hvsock, --cid / --dest-cid): 0, or the
 * usage error's exit code after saying why. */
int cli_check_hvsock(const struct cli *cli, const char *opt, const char *path);
int cli_parse_cid(const struct cli *cli, const char *opt, const char *s, uint32_t *ret);
/* A signal by number or name ("9", "KILL", "SIGKILL"); -EINVAL if unknown. */
int cli_parse_signal(const char *s, int *ret);
const char *cli_signal_name(int sig);

/* "EVENT_KIND_PROCESS_EXITED" with prefix "EVENT_KIND_" -> "process-exited" in buf. */
const char *cli_enum_name(const ProtobufCEnumDescriptor *desc, int value, const char *prefix, char *buf, size_t len);

/* Prints one JSON document followed by a newline and drops the reference. */
void cli_json_print(struct json_object *o);
/* Adds "kind"/"code"/"signal"/"message" of an exit status, or null. */
struct json_object *cli_json_exit(const Vsockmux__V1__ExitStatus *es);
/* The exit code `exec` and `wait` end with: the code, 128+N for signal N (128 when the guest did not
 * name the signal), 255 when lost or when the code is outside 0-255. */
int cli_exit_code(const Vsockmux__V1__ExitStatus *es);
/* "exited 3", "killed by SIGKILL", "exit status lost", "-". */
const char *cli_exit_text(const Vsockmux__V1__ExitStatus *es, char *buf, size_t len);
/* A CLOCK_REALTIME time as RFC 3339 UTC (2026-12-03T17:00:00Z), "-" for 0 (not known). */
const char *cli_time_text(uint64_t realtime_ns, char *buf, size_t len);

/* Aligned tables: columns padded to the widest cell, two spaces apart, the header first. */
#define CLI_TABLE_MAX_COLUMNS 12
struct cli_table;
struct cli_table *cli_table_new(unsigned n_columns, const char *const *header);
/* Copies the cells; n_columns strings. */
int cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(const struct cli_table *t);
struct cli_table *cli_table_free(struct cli_table *t);
DEFINE_CLEANUP(struct cli_table *, cli_table_free);

/* Command groups. */
int cli_vm_add(struct cli *cli, int argc, char **argv);
int cli_vm_rm(struct cli *cli, int argc, char **argv);
int cli_vm_ls(struct cli *cli, int argc, char **argv);
int cli_container_create(struct cli *cli, int argc, char **argv);
int cli_container_shutdown(struct cli *cli, int argc, char **argv);
int cli_exec(struct cli *cli, int argc, char **argv);
int cli_attach(struct cli *cli, int argc, char **argv);
int cli_resize(struct cli *cli, int argc, char **argv);
int cli_close_stdin(struct cli *cli, int argc, char **argv);
int cli_ps(struct cli *cli, int argc, char **argv);
int cli_wait(struct cli *cli, int argc, char **argv);
int cli_kill(struct cli *cli, int argc, char **argv);
int cli_rm(struct cli *cli, int argc, char **argv);
int cli_log_reopen(struct cli *cli, int argc, char **argv);
int cli_stats(struct cli *cli, int argc, char **argv);
int cli_events(struct cli *cli, int argc, char **argv);
int cli_save(struct cli *cli, int argc, char **argv);
int cli_restore(struct cli *cli, int argc, char **argv);
int cli_resume(struct cli *cli, int argc, char **argv);
int cli_migrate(struct cli *cli, int argc, char **argv);
int cli_upgrade(struct cli *cli, int argc, char **argv);
