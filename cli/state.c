/* cli/state.c: `save`, `restore` and `resume`: the CLI reads and writes the state file itself, with
 * its own rights, so the daemon never opens a path a client named for it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "daemon/savestate.h"

int cli_save(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "out", required_argument, NULL, 'o' }, {} };
        Vsockmux__V1__SaveRequest req = VSOCKMUX__V1__SAVE_REQUEST__INIT;
        Vsockmux__V1__SaveResponse *resp = NULL;
        const char *out = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                if (c != 'o')
                        return cli_option_error(cli, c, argv);
                out = optarg;
        }
        if (argc - optind != 1 || !out)
                return cli_usage_error(cli, "expected NAME --out FILE");
        req.vm = argv[optind];
        r = cli_call(cli, "Save", &req.base, &vsockmux__v1__save_response__descriptor, (ProtobufCMessage **)&resp);
        if (r != 0)
                return r;
        r = savestate_write_file(out, resp->state.data, resp->state.len);
        if (r < 0) {
                vsockmux_message_free(&resp->base);
                /* The VM is saved and released on the daemon: say how to get it back. */
                return cli_error(cli,
                                 "cannot write %s: %s; the VM is saved on the daemon: `vsockmux resume %s`"
                                 " rolls it back",
                                 out, strerror(-r), req.vm);
        }
        printf("saved %s: %u processes, %zu bytes to %s\n", req.vm, resp->processes, resp->state.len, out);
        for (size_t i = 0; i < resp->n_output_lost_pids; i++)
                fprintf(stderr,
                        "vsockmux: save: process %u: its output after the save will not reach the destination "
                        "(without the resume extension, hcsshim's guest redials only a container's init)\n",
                        resp->output_lost_pids[i]);
        vsockmux_message_free(&resp->base);
        return 0;
}

/* "PID:stdin=SRC,stdout=DST,stderr=DST" or "exec=ID:..." */
int cli_parse_restore_io(const char *arg, Vsockmux__V1__RestoreIo *io, char **ret_copy)
{
        _cleanup_free_ char *copy = strdup(arg);
        char *colon, *item, *save = NULL, *exec_id = NULL;
        uint32_t pid = 0;

        if (!copy)
                return -ENOMEM;
        /* An exec id has no ':' (runs of [A-Za-z0-9] joined by '.', '_' or '-'), so the first one
         * ends the target either way; it may be all digits, hence its own prefix. */
        colon = strchr(copy, ':');
        if (!colon)
                return -EINVAL;
        *colon = '\0';
        if (strncmp(copy, "exec=", 5) == 0) {
                exec_id = copy + 5;
                if (!exec_id[0])
                        return -EINVAL;
        } else if (cli_parse_u32(copy, 1, UINT32_MAX, &pid) < 0)
                return -EINVAL;
        vsockmux__v1__restore_io__init(io);
        io->pid = pid;
        if (exec_id)
                io->exec_id = exec_id;
        for (item = strtok_r(colon + 1, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(item, '=');

                if (!eq || eq[1] != '/')
                        return -EINVAL;
                *eq = '\0';
                if (strcmp(item, "stdin") == 0)
                        io->stdin_path = eq + 1;
                else if (strcmp(item, "stdout") == 0)
                        io->stdout_path = eq + 1;
                else if (strcmp(item, "stderr") == 0)
                        io->stderr_path = eq + 1;
                else
                        return -EINVAL;
        }
        *ret_copy = TAKE_PTR(copy);
        return 0;
}

int cli_restore(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "in", required_argument, NULL, 'i' },
                                                 { "hvsock", required_argument, NULL, 'u' },
                                                 { "cid", required_argument, NULL, 'c' },
                                                 { "io", required_argument, NULL, 'o' },
                                                 {} };
        Vsockmux__V1__RestoreRequest req = VSOCKMUX__V1__RESTORE_REQUEST__INIT;
        Vsockmux__V1__RestoreResponse *resp = NULL;
        _cleanup_free_ Vsockmux__V1__RestoreIo *ios = calloc(CLI_MAX_IO, sizeof(*ios));
        _cleanup_free_ Vsockmux__V1__RestoreIo **io_ptrs = calloc(CLI_MAX_IO, sizeof(*io_ptrs));
        _cleanup_free_ char **copies = calloc(CLI_MAX_IO, sizeof(*copies));
        _cleanup_free_ uint8_t *blob = NULL;
        const char *in = NULL;
        size_t n_io = 0, len = 0;
        uint32_t cid;
        int c, r;

        if (!ios || !io_ptrs || !copies)
                return cli_error(cli, "out of memory");
        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                switch (c) {
                case 'i': in = optarg; break;
                case 'u':
                        r = cli_check_hvsock(cli, "--hvsock", optarg);
                        if (r != 0)
                                return r;
                        req.transport_case = VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_HVSOCK_PATH;
                        req.hvsock_path = optarg;
                        break;
                case 'c':
                        r = cli_parse_cid(cli, "--cid", optarg, &cid);
                        if (r != 0)
                                return r;
                        req.transport_case = VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_CID;
                        req.cid = cid;
                        break;
                case 'o':
                        if (n_io == CLI_MAX_IO)
                                return cli_usage_error(cli, "at most %u --io options", CLI_MAX_IO);
                        if (cli_parse_restore_io(optarg, &ios[n_io], &copies[n_io]) < 0)
                                return cli_usage_error(cli, CLI_IO_USAGE ", got '%s'", optarg);
                        io_ptrs[n_io] = &ios[n_io];
                        n_io++;
                        break;
                default: return cli_option_error(cli, c, argv);
                }
        }
        if (argc - optind > 1 || !in)
                return cli_usage_error(cli, "expected [NAME] --in FILE");
        if (argc - optind == 1)
                req.name = argv[optind];
        r = savestate_read_file(in, &blob, &len);
        if (r < 0)
                return cli_error(cli, "cannot read %s: %s", in, strerror(-r));
        req.state.data = blob;
        req.state.len = len;
        req.io = io_ptrs;
        req.n_io = n_io;
        r = cli_call(cli, "Restore", &req.base, &vsockmux__v1__restore_response__descriptor,
                     (ProtobufCMessage **)&resp);
        for (size_t i = 0; i < n_io; i++)
                free(copies[i]);
        if (r != 0)
                return r;
        printf("restored %s: %u processes; waiting for the guest to reconnect\n", resp->vm, resp->processes);
        vsockmux_message_free(&resp->base);
        return 0;
}

int cli_resume(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__ResumeRequest req = VSOCKMUX__V1__RESUME_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        int r;

        r = cli_parse_no_options(cli, argc, argv);
        if (r != 0)
                return r;
        if (argc - optind != 1)
                return cli_usage_error(cli, "expected exactly one VM NAME");
        req.vm = argv[optind];
        r = cli_call(cli, "Resume", &req.base, &vsockmux__v1__resume_response__descriptor, &resp);
        vsockmux_message_free(resp);
        if (r == 0)
                printf("resumed %s on this daemon\n", req.vm);
        return r;
}
