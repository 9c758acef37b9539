/* cli/console.c: `vsockmux resize` (a terminal process's console; the attached exec and attach resize on their own) and `vsockmux close-stdin`. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <string.h>

#include "cli/cli.h"

int cli_resize(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__ResizeRequest req = VSOCKMUX__V1__RESIZE_REQUEST__INIT;
        ProtobufCMessage *m = NULL;
        int r;

        r = cli_parse_no_options(cli, argc, argv);
        if (r != 0)
                return r;
        if (argc - optind != 4)
                return cli_usage_error(cli, "expected VM NAME, PID, ROWS and COLUMNS");
        req.vm = argv[optind];
        if (cli_parse_u32(argv[optind + 1], 1, INT32_MAX, &req.pid) < 0)
                return cli_usage_error(cli, "PID must be a positive number, got '%s'", argv[optind + 1]);
        if (cli_parse_u32(argv[optind + 2], 1, UINT16_MAX, &req.height) < 0 ||
            cli_parse_u32(argv[optind + 3], 1, UINT16_MAX, &req.width) < 0)
                return cli_usage_error(cli, "ROWS and COLUMNS must be 1-65535, got '%s' and '%s'", argv[optind + 2],
                                       argv[optind + 3]);
        r = cli_call(cli, "Resize", &req.base, &vsockmux__v1__resize_response__descriptor, &m);
        vsockmux_message_free(m);
        return r;
}

int cli_close_stdin(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__CloseStdinRequest req = VSOCKMUX__V1__CLOSE_STDIN_REQUEST__INIT;
        ProtobufCMessage *m = NULL;
        int r;

        r = cli_parse_no_options(cli, argc, argv);
        if (r != 0)
                return r;
        if (argc - optind != 2)
                return cli_usage_error(cli, "expected VM NAME and PID or ID");
        req.vm = argv[optind];
        r = cli_parse_target(cli, argv[optind + 1], &req.pid, &req.exec_id);
        if (r != 0)
                return r;
        r = cli_call(cli, "CloseStdin", &req.base, &vsockmux__v1__close_stdin_response__descriptor, &m);
        vsockmux_message_free(m);
        return r;
}
