/* cli/vsockmux.c: `vsockmux [--socket PATH] COMMAND ...`: global options and command dispatch. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const struct cli_command commands[] = {
        { "vm", "add", cli_vm_add, "vm add NAME --hvsock UDS_PATH | --cid CID" },
        { "vm", "rm", cli_vm_rm, "vm rm NAME" },
        { "vm", "ls", cli_vm_ls, "vm ls [--json]" },
        { "container", "create", cli_container_create, "container create NAME ID [--config FILE]" },
        { "container", "shutdown", cli_container_shutdown, "container shutdown NAME ID [--force]" },
        { NULL, "exec", cli_exec,
          "exec NAME [--container ID] [--env K=V]... [--cwd DIR] [--stdin SRC] [--stdout DST]\n"
          "                  [--stderr DST] [--detach] [--timeout SEC] [--json] -- ARGV..." },
        { NULL, "ps", cli_ps, "ps NAME [--json]" },
        { NULL, "wait", cli_wait, "wait NAME PID [--json]" },
        { NULL, "kill", cli_kill, "kill NAME PID [--signal N|NAME]" },
        { NULL, "attach", cli_attach, "attach NAME PID [--print-path]" },
        { NULL, "stats", cli_stats, "stats [--json]" },
        { NULL, "events", cli_events, "events [--vm NAME] [--json]" },
        { NULL, "save", cli_save, "save NAME --out FILE" },
        { NULL, "restore", cli_restore,
          "restore [NAME] --in FILE [--hvsock UDS_PATH | --cid CID]\n"
          "                  [--io PID:stdin=SRC,stdout=DST,stderr=DST]..." },
        { NULL, "resume", cli_resume, "resume NAME" },
        { NULL, "migrate", cli_migrate,
          "migrate NAME --to LIBVIRT_URI --domain DOMAIN --dest-socket PATH [--from LIBVIRT_URI]\n"
          "                  [--transport tcp|unix|tls] [--migrate-uri URI] [--bandwidth MIB/S] [--downtime MS]\n"
          "                  [--compression none|xbzrle|mt] [--xbzrle-cache BYTES] [--mt-level N] [--mt-threads N]\n"
          "                  [--mt-dthreads N] [--parallel N] [--auto-converge INIT,INC] [--persist] [--p2p|--direct]\n"
          "                  [--dest-name NAME] [--dest-hvsock UDS_PATH|--dest-cid CID] [--io PID:...]...\n"
          "                  [--on-suspended CMD] [--on-resumed CMD] [--json]" },
};

static void help(FILE *f)
{
        fprintf(f, "Usage: vsockmux [--socket PATH] COMMAND [ARGS]\n\n"
                   "Controls vsockmuxd over its socket (default $%s, else %s).\n\nCommands:\n",
                CLI_SOCKET_ENV, CLI_DEFAULT_SOCKET);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  vsockmux %s\n", commands[i].usage);
        fprintf(f, "\nexec is attached unless --detach: it relays this terminal's stdin, stdout and\n"
                   "stderr and exits with the process's exit code, 128+N if signal N killed it, 255 if\n"
                   "its exit status was lost, and 125 if it could not be started.\n"
                   "attach opens the process's conmon-format attach socket on first use (no socket per\n"
                   "process until then); --print-path prints its path for a client of your own.\n");
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
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
                case 's':
                        cli.socket = optarg;
                        break;
                case 'h':
                        help(stdout);
                        return 0;
                default:
                        return cli_option_error(&cli, c, argv);
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
                /* The command sees argv[0] = its verb, then its own arguments. */
                r = cmd->fn(&cli, argc - optind - (group ? 1 : 0), argv + optind + (group ? 1 : 0));
                cli.client = control_client_free(cli.client);
                if (fflush(stdout) != 0 && r == 0)
                        r = cli_error(&cli, "writing the output failed");
                return r;
        }
        if (group)
                return cli_usage_error(&cli, "unknown command '%s %s'", group, verb);
        return cli_usage_error(&cli, "unknown command '%s'", verb);
}
