/* cli/upgrade.c: `vsockmux upgrade [--binary PATH] [--timeout SECONDS]`: a live upgrade of vsockmuxd. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"

/* The new daemon's readiness bound the daemon applies (daemon/upgrade.h's UPGRADE_MAX_TIMEOUT_NS). */
#define CLI_UPGRADE_MAX_TIMEOUT_S 600u

int cli_upgrade(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "binary", required_argument, NULL, 'b' },
                                                 { "timeout", required_argument, NULL, 't' },
                                                 {} };
        Vsockmux__V1__UpgradeRequest req = VSOCKMUX__V1__UPGRADE_REQUEST__INIT;
        Vsockmux__V1__UpgradeResponse *resp = NULL;
        uint32_t seconds;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                switch (c) {
                case 'b':
                        if (optarg[0] != '/')
                                return cli_usage_error(cli, "--binary wants an absolute path, got '%s'", optarg);
                        req.binary = optarg;
                        break;
                case 't':
                        if (cli_parse_u32(optarg, 1, CLI_UPGRADE_MAX_TIMEOUT_S, &seconds) < 0)
                                return cli_usage_error(cli, "--timeout wants 1 to %u seconds, got '%s'",
                                                       CLI_UPGRADE_MAX_TIMEOUT_S, optarg);
                        req.timeout_ms = seconds * 1000u;
                        break;
                default: return cli_option_error(cli, c, argv);
                }
        }
        if (argc - optind != 0)
                return cli_usage_error(cli, "upgrade takes no arguments besides its options");
        r = cli_call(cli, "Upgrade", &req.base, &vsockmux__v1__upgrade_response__descriptor,
                     (ProtobufCMessage **)&resp);
        if (r != 0)
                return r;
        printf("upgraded: %s serves as pid %u\n", resp->binary, resp->pid);
        vsockmux_message_free(&resp->base);
        return 0;
}
