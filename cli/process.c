/* cli/process.c: `ps`, `wait`, `kill`, `rm` and `log reopen`. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* argv joined with spaces, cut to fit: a listing column, not a faithful quote. */
static const char *join_argv(char **argv, size_t n, char *buf, size_t len)
{
        size_t at = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && at + 1 < len; i++)
                at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? " " : "", argv[i]);
        return buf;
}

/* VM and PID|ID, the two arguments every per-process command takes after its options. */
static int parse_vm_target(struct cli *cli, int argc, char **argv, char **ret_vm, uint32_t *ret_pid, char **ret_exec_id)
{
        int r;

        if (argc - optind != 2)
                return cli_usage_error(cli, "expected VM NAME and PID or ID");
        r = cli_parse_target(cli, argv[optind + 1], ret_pid, ret_exec_id);
        if (r != 0)
                return r;
        *ret_vm = argv[optind];
        return 0;
}

/* A command with no options whose answer carries nothing to print: rm, log reopen. */
static int call_on_target(struct cli *cli, int argc, char **argv, const char *method, ProtobufCMessage *req, char **vm,
                          uint32_t *pid, char **exec_id, const ProtobufCMessageDescriptor *resp)
{
        ProtobufCMessage *m = NULL;
        int r;

        r = cli_parse_no_options(cli, argc, argv);
        if (r != 0)
                return r;
        r = parse_vm_target(cli, argc, argv, vm, pid, exec_id);
        if (r != 0)
                return r;
        r = cli_call(cli, method, req, resp, &m);
        if (r != 0)
                return r;
        vsockmux_message_free(m);
        return 0;
}

/* Per stream: how it ended ("" while running or after a clean end) and what it could not deliver. */
static struct json_object *stream_errors_json(const Vsockmux__V1__ProcessInfo *p)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "stdin", json_object_new_string(p->stdin_error));
        json_object_object_add(o, "stdout", json_object_new_string(p->stdout_error));
        json_object_object_add(o, "stderr", json_object_new_string(p->stderr_error));
        return o;
}

static struct json_object *stream_dropped_json(const Vsockmux__V1__StreamCounters *c)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "stdin", json_object_new_uint64(c ? c->stdin_bytes : 0));
        json_object_object_add(o, "stdout", json_object_new_uint64(c ? c->stdout_bytes : 0));
        json_object_object_add(o, "stderr", json_object_new_uint64(c ? c->stderr_bytes : 0));
        return o;
}

static struct json_object *process_json(const Vsockmux__V1__ProcessInfo *p)
{
        struct json_object *o = json_object_new_object(), *argv = json_object_new_array();
        struct json_object *ports = json_object_new_object(), *bytes = json_object_new_object();
        struct json_object *exit_o = cli_json_exit(p->exit);
        char state[32];

        for (size_t i = 0; i < p->n_argv; i++)
                json_object_array_add(argv, json_object_new_string(p->argv[i]));
        json_object_object_add(o, "pid", json_object_new_int64(p->pid));
        json_object_object_add(o, "id", json_object_new_string(p->exec_id));
        json_object_object_add(o, "container", json_object_new_string(p->container_id));
        json_object_object_add(o, "argv", argv);
        json_object_object_add(o, "state",
                               json_object_new_string(cli_enum_name(&vsockmux__v1__process_state__descriptor, p->state,
                                                                    "PROCESS_STATE_", state, sizeof(state))));
        json_object_object_add(ports, "stdin", json_object_new_int64(p->stdin_port));
        json_object_object_add(ports, "stdout", json_object_new_int64(p->stdout_port));
        json_object_object_add(ports, "stderr", json_object_new_int64(p->stderr_port));
        json_object_object_add(o, "ports", ports);
        json_object_object_add(o, "wait_call_id", json_object_new_uint64(p->wait_call_id));
        json_object_object_add(bytes, "stdin", json_object_new_uint64(p->bytes ? p->bytes->stdin_bytes : 0));
        json_object_object_add(bytes, "stdout", json_object_new_uint64(p->bytes ? p->bytes->stdout_bytes : 0));
        json_object_object_add(bytes, "stderr", json_object_new_uint64(p->bytes ? p->bytes->stderr_bytes : 0));
        json_object_object_add(o, "bytes", bytes);
        json_object_object_add(o, "errors", stream_errors_json(p));
        json_object_object_add(o, "dropped", stream_dropped_json(p->dropped));
        json_object_object_add(o, "exit", exit_o);
        if (p->attach_socket[0])
                json_object_object_add(o, "attach_socket", json_object_new_string(p->attach_socket));
        if (p->output_lost_on_move)
                json_object_object_add(o, "output_lost_on_move", json_object_new_boolean(true));
        json_object_object_add(o, "terminal", json_object_new_boolean(p->terminal));
        json_object_object_add(o, "vm", json_object_new_string(p->vm));
        /* Nanoseconds, as the events' timestamps; absent while not known. */
        if (p->started_ns)
                json_object_object_add(o, "started_ns", json_object_new_uint64(p->started_ns));
        if (p->exited_ns)
                json_object_object_add(o, "exited_ns", json_object_new_uint64(p->exited_ns));
        return o;
}

/* ps NAME | ps --all, each with an optional --json. */
static int ps_parse(struct cli *cli, int argc, char **argv, Vsockmux__V1__PsRequest *req, bool *ret_json)
{
        static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                                 { "all", no_argument, NULL, 'a' },
                                                 {} };
        bool json = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                if (c == 'j')
                        json = true;
                else if (c == 'a')
                        req->all = true;
                else
                        return cli_option_error(cli, c, argv);
        }
        if (req->all && argc - optind != 0)
                return cli_usage_error(cli, "--all lists every VM's processes: it takes no VM NAME");
        if (!req->all && argc - optind != 1)
                return cli_usage_error(cli, "expected exactly one VM NAME (or --all)");
        if (!req->all)
                req->vm = argv[optind];
        *ret_json = json;
        return 0;
}

int cli_ps(struct cli *cli, int argc, char **argv)
{
        /* The VM column only with --all: one VM's ps looks as it always did but for the times. */
        static const char *const header[] = {
                "VM",      "PID",
                "EXEC ID", "CONTAINER",
                "STATE",   "PORTS (IN/OUT/ERR)",
                "WAIT ID", "BYTES (IN/OUT/ERR)",
                "EXIT",    "STARTED",
                "EXITED",  "COMMAND",
        };
        size_t skip;
        Vsockmux__V1__PsRequest req = VSOCKMUX__V1__PS_REQUEST__INIT;
        _cleanup_(cli_table_freep) struct cli_table *t = NULL;
        ProtobufCMessage *m = NULL;
        Vsockmux__V1__PsResponse *resp;
        bool json = false;
        int r;

        r = ps_parse(cli, argc, argv, &req, &json);
        if (r != 0)
                return r;
        r = cli_call(cli, "Ps", &req.base, &vsockmux__v1__ps_response__descriptor, &m);
        if (r != 0)
                return r;
        resp = (Vsockmux__V1__PsResponse *)m;

        if (json) {
                struct json_object *a = json_object_new_array();

                for (size_t i = 0; i < resp->n_processes; i++)
                        json_object_array_add(a, process_json(resp->processes[i]));
                cli_json_print(a);
                vsockmux_message_free(m);
                return 0;
        }

        skip = req.all ? 0 : 1;
        t = cli_table_new(ELEMENTSOF(header) - skip, header + skip);
        for (size_t i = 0; t && i < resp->n_processes; i++) {
                const Vsockmux__V1__ProcessInfo *p = resp->processes[i];
                char pid[16], state[32], ports[48], wait_id[24], bytes[80], exit_text[64], cmd[256];
                char started[32], exited[32];
                const Vsockmux__V1__StreamCounters *b = p->bytes;
                const char *row[] = {
                        p->vm[0] ? p->vm : "-",
                        pid,
                        p->exec_id[0] ? p->exec_id : "-",
                        p->container_id[0] ? p->container_id : "-",
                        cli_enum_name(&vsockmux__v1__process_state__descriptor, p->state, "PROCESS_STATE_", state,
                                      sizeof(state)),
                        ports,
                        wait_id,
                        bytes,
                        cli_exit_text(p->exit, exit_text, sizeof(exit_text)),
                        cli_time_text(p->started_ns, started, sizeof(started)),
                        cli_time_text(p->exited_ns, exited, sizeof(exited)),
                        join_argv(p->argv, p->n_argv, cmd, sizeof(cmd)),
                };

                snprintf(pid, sizeof(pid), "%u", p->pid);
                snprintf(ports, sizeof(ports), "%u/%u/%u", p->stdin_port, p->stdout_port, p->stderr_port);
                if (p->wait_call_id)
                        snprintf(wait_id, sizeof(wait_id), "%llu", (unsigned long long)p->wait_call_id);
                else
                        snprintf(wait_id, sizeof(wait_id), "-");
                snprintf(bytes, sizeof(bytes), "%llu/%llu/%llu", (unsigned long long)(b ? b->stdin_bytes : 0),
                         (unsigned long long)(b ? b->stdout_bytes : 0), (unsigned long long)(b ? b->stderr_bytes : 0));
                if (cli_table_add(t, row + skip) < 0)
                        t = cli_table_free(t);
        }
        vsockmux_message_free(m);
        if (!t)
                return cli_error(cli, "out of memory");
        cli_table_print(t);
        return 0;
}

int cli_wait(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__WaitRequest req = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        Vsockmux__V1__WaitResponse *resp;
        ProtobufCMessage *m = NULL;
        char text[64];
        bool json;
        int r;

        r = cli_parse_json_flag(cli, argc, argv, &json);
        if (r != 0)
                return r;
        r = parse_vm_target(cli, argc, argv, &req.vm, &req.pid, &req.exec_id);
        if (r != 0)
                return r;
        r = cli_call(cli, "Wait", &req.base, &vsockmux__v1__wait_response__descriptor, &m);
        if (r != 0)
                return r;
        resp = (Vsockmux__V1__WaitResponse *)m;
        if (json) {
                struct json_object *o = json_object_new_object();

                json_object_object_add(o, "pid", json_object_new_int64(req.pid));
                if (req.exec_id[0])
                        json_object_object_add(o, "id", json_object_new_string(req.exec_id));
                json_object_object_add(o, "exit", cli_json_exit(resp->exit));
                cli_json_print(o);
        } else
                printf("%s\n", cli_exit_text(resp->exit, text, sizeof(text)));
        /* The same exit code as an attached exec would have ended with. */
        r = cli_exit_code(resp->exit);
        vsockmux_message_free(m);
        return r;
}

int cli_kill(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "signal", required_argument, NULL, 's' }, {} };
        Vsockmux__V1__KillRequest req = VSOCKMUX__V1__KILL_REQUEST__INIT;
        Vsockmux__V1__KillResponse *resp;
        ProtobufCMessage *m = NULL;
        int c, r, sig = SIGTERM;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":s:", options, NULL)) >= 0) {
                if (c != 's')
                        return cli_option_error(cli, c, argv);
                if (cli_parse_signal(optarg, &sig) < 0)
                        return cli_usage_error(cli, "unknown signal '%s'", optarg);
        }
        r = parse_vm_target(cli, argc, argv, &req.vm, &req.pid, &req.exec_id);
        if (r != 0)
                return r;
        req.signal = sig;
        r = cli_call(cli, "Kill", &req.base, &vsockmux__v1__kill_response__descriptor, &m);
        if (r != 0)
                return r;
        resp = (Vsockmux__V1__KillResponse *)m;
        cli_sanitize(resp->note);
        /* Already gone is what the caller wanted: say so, but succeed. */
        if (resp->not_found)
                fprintf(stderr, "vsockmux: kill: process %s in %s was not running%s%s\n", argv[optind + 1], req.vm,
                        resp->note[0] ? ": " : "", resp->note);
        else if (resp->note[0])
                fprintf(stderr, "vsockmux: kill: %s\n", resp->note);
        vsockmux_message_free(m);
        return 0;
}

int cli_rm(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__DeleteRequest req = VSOCKMUX__V1__DELETE_REQUEST__INIT;

        return call_on_target(cli, argc, argv, "Delete", &req.base, &req.vm, &req.pid, &req.exec_id,
                              &vsockmux__v1__delete_response__descriptor);
}

int cli_log_reopen(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__ReopenLogRequest req = VSOCKMUX__V1__REOPEN_LOG_REQUEST__INIT;

        return call_on_target(cli, argc, argv, "ReopenLog", &req.base, &req.vm, &req.pid, &req.exec_id,
                              &vsockmux__v1__reopen_log_response__descriptor);
}
