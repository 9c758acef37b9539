/* cli/util.c: error lines, the control connection, number/signal parsing, JSON and table output. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

char *cli_sanitize(char *s)
{
        for (unsigned char *p = (unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        *p = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : '?';
        return s;
}

_printf_(2, 0) static void verror(const struct cli *cli, const char *fmt, va_list ap)
{
        char msg[1024];

        vsnprintf(msg, sizeof(msg), fmt, ap);
        /* One line, and no terminal escapes smuggled in through a daemon message or a name. */
        cli_sanitize(msg);
        if (cli && cli->command) {
                size_t n = strlen(cli->command);
                const char *m = msg;

                /* The daemon names the method too ("kill: ..."): say it once. */
                if (strncmp(m, cli->command, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
                        m += n + 2;
                fprintf(stderr, "vsockmux: %s: %s\n", cli->command, m);
        } else
                fprintf(stderr, "vsockmux: %s\n", msg);
}

int cli_error(const struct cli *cli, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        verror(cli, fmt, ap);
        va_end(ap);
        return CLI_EXIT_FAILURE;
}

int cli_usage_error(const struct cli *cli, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        cli_error(cli, "%s (see vsockmux --help)", msg);
        return CLI_EXIT_USAGE;
}

void cli_command_help(const struct cli_command *cmd, FILE *f)
{
        fprintf(f, "Usage: vsockmux %s\n\n%s\n", cmd->usage, cmd->summary);
}

int cli_option_error(const struct cli *cli, int c, char **argv)
{
        const char *opt = optind > 0 ? argv[optind - 1] : "?";

        if (c == '?' && cli->spec && (optopt == 'h' || (optopt == 0 && strcmp(opt, "--help") == 0))) {
                cli_command_help(cli->spec, stdout);
                return CLI_HELP_SHOWN;
        }
        if (c == ':')
                return cli_usage_error(cli, "option %s needs a value", opt);
        if (optopt && optopt != '?')
                return cli_usage_error(cli, "unknown option -%c", optopt);
        return cli_usage_error(cli, "unknown option %s", opt);
}

int cli_parse_no_options(const struct cli *cli, int argc, char **argv)
{
        static const struct option none[] = { {} };
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", none, NULL)) >= 0)
                return cli_option_error(cli, c, argv);
        return 0;
}

int cli_connect(struct cli *cli)
{
        int r;

        if (cli->client)
                return 0;
        r = vsockmux_client_connect(cli->socket, &cli->client);
        if (r == -ENOENT || r == -ECONNREFUSED)
                return cli_error(cli, "cannot reach vsockmuxd at %s: %s (is the daemon running? set --socket or $%s)",
                                 cli->socket, strerror(-r), CLI_SOCKET_ENV);
        if (r < 0)
                return cli_error(cli, "cannot connect to %s: %s", cli->socket, strerror(-r));
        return 0;
}

void cli_describe_failure(const struct cli *cli, int r, const struct vsockmux_status *st, char *buf, size_t len)
{
        if (r == -EREMOTEIO && st)
                snprintf(buf, len, "%s (%s)", st->message[0] ? st->message : "failed",
                         vsockmux_code_to_string(st->code));
        else if (r == -ECONNRESET)
                snprintf(buf, len, "vsockmuxd at %s closed the connection (not permitted to use it, or it stopped)",
                         cli->socket);
        else if (r == -EBADMSG)
                snprintf(buf, len, "vsockmuxd sent a reply this CLI cannot decode (version mismatch?)");
        else
                snprintf(buf, len, "talking to vsockmuxd at %s: %s", cli->socket, strerror(r < 0 ? -r : r));
}

int cli_call(struct cli *cli, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp)
{
        return cli_call_deadline(cli, method, req, 0, resp_desc, ret_resp);
}

int cli_call_deadline(struct cli *cli, const char *method, const ProtobufCMessage *req, int64_t timeout_ns,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp)
{
        char full[256], why[VSOCKMUX_STATUS_MESSAGE_MAX + 128];
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;
        uint32_t sid;
        int r;

        r = cli_connect(cli);
        if (r != 0)
                return r;
        if ((size_t)snprintf(full, sizeof(full), "%s/%s", VSOCKMUX_SERVICE, method) >= sizeof(full))
                return cli_error(cli, "method name '%s' too long", method);
        r = vsockmux_client_send(cli->client, full, req, 0, timeout_ns, &sid);
        if (r >= 0)
                r = vsockmux_client_recv(cli->client, sid, resp_desc, &m, &st);
        if (r > 0 && r != VSOCKMUX_CLIENT_RESPONSE) {
                vsockmux_message_free(m);
                r = -EBADMSG;
        }
        if (r >= 0)
                *ret_resp = m;
        if (r < 0) {
                cli_describe_failure(cli, r, &st, why, sizeof(why));
                (void)cli_error(cli, "%s", why);
                return cli_daemon_stopped(r, &st) ? CLI_EXIT_DAEMON_STOPPED : CLI_EXIT_FAILURE;
        }
        return 0;
}

bool cli_daemon_stopped(int r, const struct vsockmux_status *st)
{
        return r == -EREMOTEIO && st && st->code == 14 /* UNAVAILABLE */ &&
               strncmp(st->message, CLI_DAEMON_STOPPED, strlen(CLI_DAEMON_STOPPED)) == 0;
}

int cli_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *ret)
{
        unsigned long long v;
        char *end;

        if (!s || !isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end)
                return errno == ERANGE ? -ERANGE : -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

int cli_check_hvsock(const struct cli *cli, const char *opt, const char *path)
{
        if (path[0] != '/')
                return cli_usage_error(cli, "%s wants an absolute path, got '%s'", opt, path);
        return 0;
}

int cli_parse_cid(const struct cli *cli, const char *opt, const char *s, uint32_t *ret)
{
        /* 0-2 are the hypervisor, local and host; 0xFFFFFFFF is VMADDR_CID_ANY. */
        if (cli_parse_u32(s, 3, UINT32_MAX - 1, ret) < 0)
                return cli_usage_error(cli, "%s wants a guest CID from 3 to 4294967294, got '%s'", opt, s);
        return 0;
}

static const struct {
        const char *name;
        int sig;
} cli_signals[] = {
        { "HUP", SIGHUP },   { "INT", SIGINT },     { "QUIT", SIGQUIT }, { "ILL", SIGILL },   { "TRAP", SIGTRAP },
        { "ABRT", SIGABRT }, { "BUS", SIGBUS },     { "FPE", SIGFPE },   { "KILL", SIGKILL }, { "USR1", SIGUSR1 },
        { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },   { "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM },
        { "CHLD", SIGCHLD }, { "CONT", SIGCONT },   { "STOP", SIGSTOP }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },
        { "TTOU", SIGTTOU }, { "URG", SIGURG },     { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM },
        { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },     { "PWR", SIGPWR },   { "SYS", SIGSYS },
};

int cli_parse_signal(const char *s, int *ret)
{
        uint32_t n;

        if (!s)
                return -EINVAL;
        if (isdigit((unsigned char)s[0])) {
                /* Linux signals run 1..64 (SIGRTMAX). */
                if (cli_parse_u32(s, 1, 64, &n) < 0)
                        return -EINVAL;
                *ret = (int)n;
                return 0;
        }
        if (strncasecmp(s, "SIG", 3) == 0)
                s += 3;
        for (size_t i = 0; i < ELEMENTSOF(cli_signals); i++)
                if (strcasecmp(s, cli_signals[i].name) == 0) {
                        *ret = cli_signals[i].sig;
                        return 0;
                }
        return -EINVAL;
}

const char *cli_signal_name(int sig)
{
        for (size_t i = 0; i < ELEMENTSOF(cli_signals); i++)
                if (cli_signals[i].sig == sig)
                        return cli_signals[i].name;
        return NULL;
}

const char *cli_enum_name(const ProtobufCEnumDescriptor *desc, int value, const char *prefix, char *buf, size_t len)
{
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
        const char *name;
        size_t i = 0;

        if (!v) {
                snprintf(buf, len, "unknown-%d", value);
                return buf;
        }
        name = v->name;
        if (prefix && strncmp(name, prefix, strlen(prefix)) == 0)
                name += strlen(prefix);
        for (; name[i] && i + 1 < len; i++)
                buf[i] = name[i] == '_' ? '-' : (char)tolower((unsigned char)name[i]);
        buf[i] = '\0';
        return buf;
}

void cli_json_print(struct json_object *o)
{
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                       JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

struct json_object *cli_json_exit(const Vsockmux__V1__ExitStatus *es)
{
        struct json_object *o;
        char kind[32];

        if (!es || es->kind == VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_UNSPECIFIED)
                return NULL;
        o = json_object_new_object();
        json_object_object_add(o, "kind",
                               json_object_new_string(cli_enum_name(&vsockmux__v1__exit_kind__descriptor, es->kind,
                                                                    "EXIT_KIND_", kind, sizeof(kind))));
        if (es->kind == VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED)
                json_object_object_add(o, "code", json_object_new_int(es->code));
        if (es->kind == VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_SIGNALED)
                json_object_object_add(o, "signal", json_object_new_int(es->signal));
        if (es->message[0])
                json_object_object_add(o, "message", json_object_new_string(es->message));
        return o;
}

const char *cli_time_text(uint64_t realtime_ns, char *buf, size_t len)
{
        time_t secs = (time_t)(realtime_ns / 1000000000u);
        struct tm tm;

        if (realtime_ns == 0 || !gmtime_r(&secs, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, len, "-");
        return buf;
}

const char *cli_exit_text(const Vsockmux__V1__ExitStatus *es, char *buf, size_t len)
{
        const char *name;

        if (!es)
                return "-";
        switch (es->kind) {
        case VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED: snprintf(buf, len, "exited %d", es->code); return buf;
        case VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_SIGNALED:
                name = cli_signal_name(es->signal);
                if (es->signal == 0)
                        snprintf(buf, len, "killed by a signal the guest did not name");
                else if (name)
                        snprintf(buf, len, "killed by SIG%s", name);
                else
                        snprintf(buf, len, "killed by signal %d", es->signal);
                return buf;
        case VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_LOST: return "exit status lost";
        default: return "-";
        }
}

/* ---- tables ---------------------------------------------------------------------------- */

struct cli_table {
        unsigned n_columns;
        size_t n_rows, cap;
        char **cells; /* row-major, row 0 is the header */
};

struct cli_table *cli_table_new(unsigned n_columns, const char *const *header)
{
        struct cli_table *t;

        if (n_columns == 0 || n_columns > CLI_TABLE_MAX_COLUMNS)
                return NULL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->n_columns = n_columns;
        if (cli_table_add(t, header) < 0)
                return cli_table_free(t);
        return t;
}

int cli_table_add(struct cli_table *t, const char *const *cells)
{
        if (t->n_rows == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 16;
                char **p = reallocarray(t->cells, cap * t->n_columns, sizeof(char *));

                if (!p)
                        return -ENOMEM;
                t->cells = p;
                t->cap = cap;
        }
        for (unsigned i = 0; i < t->n_columns; i++) {
                t->cells[t->n_rows * t->n_columns + i] = strdup(cells[i] ? cells[i] : "");
                if (!t->cells[t->n_rows * t->n_columns + i]) {
                        while (i-- > 0)
                                free(t->cells[t->n_rows * t->n_columns + i]);
                        return -ENOMEM;
                }
                /* A newline in a name would break the alignment, an escape would drive the terminal. */
                cli_sanitize(t->cells[t->n_rows * t->n_columns + i]);
        }
        t->n_rows++;
        return 0;
}

void cli_table_print(const struct cli_table *t)
{
        size_t width[CLI_TABLE_MAX_COLUMNS] = {};

        for (size_t r = 0; r < t->n_rows; r++)
                for (unsigned c = 0; c < t->n_columns; c++)
                        width[c] = MAX(width[c], strlen(t->cells[r * t->n_columns + c]));
        for (size_t r = 0; r < t->n_rows; r++) {
                for (unsigned c = 0; c < t->n_columns; c++) {
                        const char *cell = t->cells[r * t->n_columns + c];

                        if (c + 1 == t->n_columns)
                                fputs(cell, stdout);
                        else
                                printf("%-*s  ", (int)width[c], cell);
                }
                putchar('\n');
        }
}

struct cli_table *cli_table_free(struct cli_table *t)
{
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

int cli_parse_flag(const struct cli *cli, int argc, char **argv, const char *name, bool *ret_set)
{
        const struct option options[] = { { name, no_argument, NULL, 'f' }, {} };
        int c;

        *ret_set = false;
        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                if (c != 'f')
                        return cli_option_error(cli, c, argv);
                *ret_set = true;
        }
        return 0;
}

int cli_parse_json_flag(const struct cli *cli, int argc, char **argv, bool *ret_json)
{
        return cli_parse_flag(cli, argc, argv, "json", ret_json);
}

int cli_parse_target(const struct cli *cli, const char *s, uint32_t *ret_pid, char **ret_exec_id)
{
        if (s[0] >= '0' && s[0] <= '9') {
                if (cli_parse_u32(s, 1, INT32_MAX, ret_pid) < 0)
                        return cli_usage_error(cli, "PID must be a positive number, got '%s'", s);
                return 0;
        }
        if (!s[0])
                return cli_usage_error(cli, "expected a PID or an exec id, got ''");
        *ret_exec_id = (char *)s;
        return 0;
}
