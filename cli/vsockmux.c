/* cli/vsockmux.c: `vsockmux [--socket PATH] COMMAND ...`: global options and command dispatch. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const struct cli_command commands[] = {
        { "vm", "add", cli_vm_add, "vm add NAME --hvsock UDS_PATH | --cid CID",
          "Registers a VM (its hvsock UDS or guest CID); the daemon then serves its guest agent's\n"
          "bridge and stdio." },
        { "vm", "rm", cli_vm_rm, "vm rm NAME", "Forgets a VM: its bridge closes and its relays stop." },
        { "vm", "ls", cli_vm_ls, "vm ls [--json]", "Lists the VMs with their transport, bridge state and counts." },
        { "container", "create", cli_container_create, "container create NAME ID [--config FILE]",
          "Creates container ID in VM NAME; FILE is the guest's JSON settings document." },
        { "log", "reopen", cli_log_reopen, "log reopen NAME PID|ID",
          "Reopens the process's k8s-file log by its path (after a logrotate renamed it)." },
        { "container", "shutdown", cli_container_shutdown, "container shutdown NAME ID [--force]",
          "Asks the guest to stop container ID (--force: a forced shutdown, not a graceful one)." },
        { NULL, "exec", cli_exec,
          "exec NAME [--container ID] [--env K=V]... [--cwd DIR] [--stdin SRC] [--stdout DST]\n"
          "                  [--stderr DST] [--detach] [--timeout SEC] [--json]\n"
          "                  [--tty|-t] [--sig-proxy[=true|false]] [--id ID] [--deadline-ms MS]\n"
          "                  [--detach-keys KEYS] [--log k8s-file:PATH|journald|passthrough]\n"
          "                  [--log-size-max SIZE] [--log-max-files N] [-i|--interactive] [--stdin-once]\n"
          "                  [--keep-stderr] -- ARGV...",
          "Starts ARGV in VM NAME. Attached (the default) it relays this terminal's stdio and exits\n"
          "with the process's code (128+N for signal N, 255 if lost, 125 if it never ran);\n"
          "--detach prints the pid and leaves stdio to the SRC/DST paths. Attached, it forwards\n"
          "SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the process unless\n"
          "--sig-proxy=false. --tty: the process gets a console (stderr merges into it); this\n"
          "terminal goes raw, and its size follows to the console. --detach-keys (default\n"
          "ctrl-p,ctrl-q, \"\" for none) leaves the process running. --id names the exec: the same id\n"
          "again returns that process and never starts a second. --deadline-ms cancels the exec if\n"
          "it has not reached the guest by then (it never runs later); one that reached it runs on,\n"
          "and a retry with its --id finds it. --log k8s-file:PATH (with --detach) writes stdout and\n"
          "stderr to PATH in kubelet's CRI log format instead of --stdout/--stderr; --log-size-max\n"
          "rotates it (PATH.1 ...), --log-max-files N keeping N files. -i with --detach: stdin is\n"
          "what attach clients write (--stdin-once: until the last one leaves). A detached exec\n"
          "given --stdout but no --stderr, -i or --log has no stderr (the guest gives it /dev/null)\n"
          "unless --keep-stderr keeps it for attach." },
        { NULL, "resize", cli_resize, "resize NAME PID ROWS COLUMNS",
          "Resizes the console of process PID (started with --tty)." },
        { NULL, "close-stdin", cli_close_stdin, "close-stdin NAME PID|ID",
          "Ends the process's stdin once what was read from its endpoint reached it (CloseIO)." },
        { NULL, "ps", cli_ps, "ps NAME [--json] | ps --all [--json]",
          "Lists VM NAME's processes (--all: every VM's, naming each one's VM) with their state, exit\n"
          "status, byte counters and when they started and exited (UTC)." },
        { NULL, "wait", cli_wait, "wait NAME PID|ID [--json]",
          "Waits for the process (a pid, or an exec id) to exit and exits with its code (as exec does)." },
        { NULL, "kill", cli_kill, "kill NAME PID|ID [--signal N|NAME]",
          "Sends a signal (default SIGTERM) to the process (a pid, or an exec id)." },
        { NULL, "rm", cli_rm, "rm NAME PID|ID",
          "Forgets an exited process (a pid, or an exec id); a running one is refused." },
        { NULL, "attach", cli_attach, "attach NAME PID|ID [--print-path] [--detach-keys KEYS]",
          "Relays this terminal to the process (a pid, or an exec id) through its conmon-format\n"
          "attach socket, which opens on first use; --print-path prints the socket's path instead." },
        { NULL, "stats", cli_stats, "stats [--json] [--vm NAME] | stats --prometheus",
          "Prints the daemon's counters; --vm one VM's; --prometheus every metric in Prometheus text format." },
        { NULL, "events", cli_events, "events [--vm NAME] [--since SEQ|TIME] [--json]",
          "Follows the daemon's events (process exits, bridge state, migration) until interrupted;\n"
          "--since first replays the recent ones after SEQ (the last seq seen) or from TIME\n"
          "(2026-12-03T17:00:00Z, @UNIX_SECONDS, 15m ago), saying so when some are no longer held." },
        { NULL, "save", cli_save, "save NAME --out FILE",
          "Writes VM NAME's in-flight stdio state to FILE, for restore on another daemon." },
        { NULL, "restore", cli_restore,
          "restore [NAME] --in FILE [--hvsock UDS_PATH | --cid CID]\n"
          "                  [--io PID|exec=ID:stdin=SRC,stdout=DST,stderr=DST]...",
          "Takes over a VM from a state FILE written by save (--io re-points endpoints: of a pid's\n"
          "newest process, or of the one with exec id ID, which also reaches an exited one whose pid\n"
          "the guest reused)." },
        { NULL, "resume", cli_resume, "resume NAME", "Lets a restored VM's relays run." },
        { NULL, "migrate", cli_migrate,
          "migrate NAME --to LIBVIRT_URI --dest-socket PATH [--domain DOMAIN] [--from LIBVIRT_URI]\n"
          "                  [--transport tcp|unix|tls] [--migrate-uri URI] [--bandwidth MIB/S] [--downtime MS]\n"
          "                  [--compression none|xbzrle|mt] [--xbzrle-cache BYTES] [--mt-level N] [--mt-threads N]\n"
          "                  [--mt-dthreads N] [--parallel N] [--auto-converge INIT,INC] [--persist] [--p2p|--direct]\n"
          "                  [--dest-name NAME] [--dest-hvsock UDS_PATH|--dest-cid CID] [--io PID|exec=ID:...]...\n"
          "                  [--on-suspended CMD] [--on-resumed CMD] [--json]",
          "Asks the daemon to live-migrate VM NAME's libvirt DOMAIN (default NAME) to LIBVIRT_URI and hand\n"
          "its stdio to the daemon listening on --dest-socket; shows the progress, runs the hooks here." },
        { NULL, "upgrade", cli_upgrade, "upgrade [--binary PATH] [--timeout SECONDS]",
          "Replaces the running vsockmuxd with PATH (default: the executable it was started from, as it\n"
          "is on disk now), handing over its control socket. If the new one cannot take over (a missing\n"
          "file, a crash at start, a refusal, not ready within --timeout, default 30) the old one\n"
          "serves on and this exits 1 with the reason. A daemon serving VMs refuses for now." },
};

/* `vsockmux vm --help`: the group's commands. */
static void group_help(const char *group, FILE *f)
{
        fprintf(f, "Usage:\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (commands[i].group && strcmp(commands[i].group, group) == 0)
                        fprintf(f, "  vsockmux %s\n", commands[i].usage);
        fprintf(f, "\nvsockmux %s COMMAND --help says more.\n", group);
}

static void help(FILE *f)
{
        fprintf(f,
                "Usage: vsockmux [--socket PATH] COMMAND [ARGS]\n\n"
                "Controls vsockmuxd over its socket (default $%s, else %s).\n\nCommands:\n",
                CLI_SOCKET_ENV, CLI_DEFAULT_SOCKET);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  vsockmux %s\n", commands[i].usage);
        fprintf(f, "\nexec is attached unless --detach: it relays this terminal's stdin, stdout and\n"
                   "stderr and exits with the process's exit code, 128+N if signal N killed it, 128 if\n"
                   "a signal killed it but the guest did not say which (hcsshim's guest), 255 if its\n"
                   "exit status was lost or its code is outside 0-255, and 125 if it could not be\n"
                   "started. It forwards SIGINT,\n"
                   "SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the process (--sig-proxy=false: they\n"
                   "end the CLI only, and the process may keep running).\n"
                   "attach opens the process's conmon-format attach socket on first use (no socket per\n"
                   "process until then); --print-path prints its path for a client of your own.\n"
                   "A PID|ID argument of digits is a pid, anything else an exec id.\n"
                   "vsockmux COMMAND --help describes one command.\n");
}

int main(int argc, char **argv)
{
        static const struct option options[] = { { "socket", required_argument, NULL, 's' },
                                                 { "help", no_argument, NULL, 'h' },
                                                 {} };
        struct cli cli = { .socket = getenv(CLI_SOCKET_ENV) };
        const char *group = NULL, *verb;
        int c, r;

        if (!cli.socket || !cli.socket[0])
                cli.socket = CLI_DEFAULT_SOCKET;
        /* Writing to a closed pipe (`vsockmux events | head`) is an error to report, not a kill. */
        signal(SIGPIPE, SIG_IGN);

        /* Every option error is reported once, by us, on one line. */
        opterr = 0;
        /* '+': options after the command belong to the command. */
        while ((c = getopt_long(argc, argv, "+:s:h", options, NULL)) >= 0) {
                switch (c) {
                case 's': cli.socket = optarg; break;
                case 'h': help(stdout); return 0;
                default: return cli_option_error(&cli, c, argv);
                }
        }
        if (optind >= argc) {
                help(stderr);
                return CLI_EXIT_USAGE;
        }

        verb = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (commands[i].group && strcmp(commands[i].group, verb) == 0) {
                        group = verb;
                        break;
                }
        if (group) {
                if (optind + 1 < argc &&
                    (strcmp(argv[optind + 1], "--help") == 0 || strcmp(argv[optind + 1], "-h") == 0)) {
                        group_help(group, stdout);
                        return 0;
                }
                if (optind + 1 >= argc)
                        return cli_usage_error(&cli, "'%s' needs a subcommand", group);
                verb = argv[optind + 1];
        }

        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                char name[64];
                const struct cli_command *cmd = &commands[i];

                if ((cmd->group == NULL) != (group == NULL) || (group && strcmp(cmd->group, group) != 0) ||
                    strcmp(cmd->name, verb) != 0)
                        continue;
                snprintf(name, sizeof(name), "%s%s%s", group ?: "", group ? " " : "", verb);
                cli.command = name;
                cli.spec = cmd;
                /* The command sees argv[0] = its verb, then its own arguments. */
                r = cmd->fn(&cli, argc - optind - (group ? 1 : 0), argv + optind + (group ? 1 : 0));
                cli.client = vsockmux_client_free(cli.client);
                if (r == CLI_HELP_SHOWN)
                        r = 0;
                if (fflush(stdout) != 0 && r == 0)
                        r = cli_error(&cli, "writing the output failed");
                return r;
        }
        if (group)
                return cli_usage_error(&cli, "unknown command '%s %s'", group, verb);
        return cli_usage_error(&cli, "unknown command '%s'", verb);
}
