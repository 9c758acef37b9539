/* cli/vm.c: `vm add|rm|ls` and `container create|shutdown`. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_vm_add(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "hvsock", required_argument, NULL, 'u' },
                                                 { "cid", required_argument, NULL, 'c' },
                                                 {} };
        Vsockmux__V1__VmAddRequest req = VSOCKMUX__V1__VM_ADD_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        const char *hvsock = NULL, *cid = NULL;
        uint32_t cid_value;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                switch (c) {
                case 'u': hvsock = optarg; break;
                case 'c': cid = optarg; break;
                default: return cli_option_error(cli, c, argv);
                }
        }
        if (argc - optind != 1)
                return cli_usage_error(cli, "expected exactly one VM NAME");
        if (!hvsock == !cid)
                return cli_usage_error(cli, "give exactly one of --hvsock UDS_PATH or --cid CID");
        req.name = argv[optind];
        if (hvsock) {
                r = cli_check_hvsock(cli, "--hvsock", hvsock);
                if (r != 0)
                        return r;
                req.transport_case = VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_HVSOCK_PATH;
                req.hvsock_path = (char *)hvsock;
        } else {
                r = cli_parse_cid(cli, "--cid", cid, &cid_value);
                if (r != 0)
                        return r;
                req.transport_case = VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_CID;
                req.cid = cid_value;
        }
        r = cli_call(cli, "VmAdd", &req.base, &vsockmux__v1__vm_add_response__descriptor, &resp);
        vsockmux_message_free(resp);
        return r;
}

int cli_vm_rm(struct cli *cli, int argc, char **argv)
{
        Vsockmux__V1__VmRemoveRequest req = VSOCKMUX__V1__VM_REMOVE_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        int r;

        r = cli_parse_no_options(cli, argc, argv);
        if (r != 0)
                return r;
        if (argc - optind != 1)
                return cli_usage_error(cli, "expected exactly one VM NAME");
        req.name = argv[optind];
        r = cli_call(cli, "VmRemove", &req.base, &vsockmux__v1__vm_remove_response__descriptor, &resp);
        vsockmux_message_free(resp);
        return r;
}

static const char *vm_address(const Vsockmux__V1__VmInfo *vm, char *buf, size_t len)
{
        if (vm->transport == VSOCKMUX__V1__TRANSPORT__TRANSPORT_VSOCK)
                snprintf(buf, len, "cid %u", vm->cid);
        else
                snprintf(buf, len, "%s", vm->hvsock_path);
        return buf;
}

int cli_vm_ls(struct cli *cli, int argc, char **argv)
{
        static const char *const header[] = { "NAME", "TRANSPORT", "ADDRESS", "BRIDGE", "CONTAINERS", "PROCESSES" };
        _cleanup_(cli_table_freep) struct cli_table *t = NULL;
        ProtobufCMessage *m = NULL;
        Vsockmux__V1__VmListRequest req = VSOCKMUX__V1__VM_LIST_REQUEST__INIT;
        Vsockmux__V1__VmListResponse *resp;
        bool json;
        int r;

        r = cli_parse_json_flag(cli, argc, argv, &json);
        if (r != 0)
                return r;
        if (argc - optind != 0)
                return cli_usage_error(cli, "takes no arguments");
        r = cli_call(cli, "VmList", &req.base, &vsockmux__v1__vm_list_response__descriptor, &m);
        if (r != 0)
                return r;
        resp = (Vsockmux__V1__VmListResponse *)m;

        if (json) {
                struct json_object *a = json_object_new_array();

                for (size_t i = 0; i < resp->n_vms; i++) {
                        const Vsockmux__V1__VmInfo *vm = resp->vms[i];
                        struct json_object *o = json_object_new_object();
                        char buf[64];

                        json_object_object_add(o, "name", json_object_new_string(vm->name));
                        json_object_object_add(
                                o, "transport",
                                json_object_new_string(cli_enum_name(&vsockmux__v1__transport__descriptor,
                                                                     vm->transport, "TRANSPORT_", buf, sizeof(buf))));
                        if (vm->transport == VSOCKMUX__V1__TRANSPORT__TRANSPORT_VSOCK)
                                json_object_object_add(o, "cid", json_object_new_int64(vm->cid));
                        else
                                json_object_object_add(o, "hvsock_path", json_object_new_string(vm->hvsock_path));
                        json_object_object_add(o, "bridge",
                                               json_object_new_string(cli_enum_name(
                                                       &vsockmux__v1__bridge_state__descriptor, vm->bridge_state,
                                                       "BRIDGE_STATE_", buf, sizeof(buf))));
                        json_object_object_add(o, "containers", json_object_new_int64(vm->container_count));
                        json_object_object_add(o, "processes", json_object_new_int64(vm->process_count));
                        json_object_array_add(a, o);
                }
                cli_json_print(a);
                vsockmux_message_free(m);
                return 0;
        }

        t = cli_table_new(ELEMENTSOF(header), header);
        for (size_t i = 0; t && i < resp->n_vms; i++) {
                const Vsockmux__V1__VmInfo *vm = resp->vms[i];
                char transport[32], state[32], addr[256], containers[16], procs[16];
                const char *row[] = {
                        vm->name,
                        cli_enum_name(&vsockmux__v1__transport__descriptor, vm->transport, "TRANSPORT_", transport,
                                      sizeof(transport)),
                        vm_address(vm, addr, sizeof(addr)),
                        cli_enum_name(&vsockmux__v1__bridge_state__descriptor, vm->bridge_state, "BRIDGE_STATE_", state,
                                      sizeof(state)),
                        containers,
                        procs,
                };

                snprintf(containers, sizeof(containers), "%u", vm->container_count);
                snprintf(procs, sizeof(procs), "%u", vm->process_count);
                if (cli_table_add(t, row) < 0)
                        t = cli_table_free(t);
        }
        vsockmux_message_free(m);
        if (!t)
                return cli_error(cli, "out of memory");
        cli_table_print(t);
        return 0;
}

/* Reads a whole config file, capped at CLI_CONFIG_MAX, and checks it is JSON. */
static int read_config(struct cli *cli, const char *path, char **ret)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct json_object *parsed;
        size_t len = 0;
        struct stat st;

        fd = strcmp(path, "-") == 0 ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return cli_error(cli, "cannot open config %s: %s", path, strerror(errno));
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > (off_t)CLI_CONFIG_MAX)
                return cli_error(cli, "config %s is larger than %u bytes", path, CLI_CONFIG_MAX);
        buf = malloc(CLI_CONFIG_MAX + 1);
        if (!buf)
                return cli_error(cli, "out of memory");
        for (;;) {
                ssize_t n = read(fd, buf + len, CLI_CONFIG_MAX + 1 - len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return cli_error(cli, "reading config %s: %s", path, strerror(errno));
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > CLI_CONFIG_MAX)
                        return cli_error(cli, "config %s is larger than %u bytes", path, CLI_CONFIG_MAX);
        }
        buf[len] = '\0';
        parsed = json_tokener_parse(buf);
        if (!parsed)
                return cli_error(cli, "config %s is not valid JSON", path);
        json_object_put(parsed);
        *ret = TAKE_PTR(buf);
        return 0;
}

int cli_container_create(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "config", required_argument, NULL, 'c' }, {} };
        Vsockmux__V1__ContainerCreateRequest req = VSOCKMUX__V1__CONTAINER_CREATE_REQUEST__INIT;
        _cleanup_free_ char *config = NULL;
        ProtobufCMessage *resp = NULL;
        const char *config_path = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                if (c != 'c')
                        return cli_option_error(cli, c, argv);
                config_path = optarg;
        }
        if (argc - optind != 2)
                return cli_usage_error(cli, "expected VM NAME and container ID");
        if (config_path) {
                r = read_config(cli, config_path, &config);
                if (r != 0)
                        return r;
        }
        req.vm = argv[optind];
        req.id = argv[optind + 1];
        req.config_json = config ?: (char *)"";
        r = cli_call(cli, "ContainerCreate", &req.base, &vsockmux__v1__container_create_response__descriptor, &resp);
        vsockmux_message_free(resp);
        return r;
}

int cli_container_shutdown(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "force", no_argument, NULL, 'f' }, {} };
        Vsockmux__V1__ContainerShutdownRequest req = VSOCKMUX__V1__CONTAINER_SHUTDOWN_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                if (c != 'f')
                        return cli_option_error(cli, c, argv);
                req.force = true;
        }
        if (argc - optind != 2)
                return cli_usage_error(cli, "expected VM NAME and container ID");
        req.vm = argv[optind];
        req.id = argv[optind + 1];
        r = cli_call(cli, "ContainerShutdown", &req.base, &vsockmux__v1__container_shutdown_response__descriptor,
                     &resp);
        vsockmux_message_free(resp);
        return r;
}
