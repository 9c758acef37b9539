/* tests/install/install-client.c: a libvsockmux user built outside the tree, from the installed
 * <vsockmux/vsockmux.h> and vsockmux.pc only (tests/install/test-install.sh compiles it). Against a
 * daemon at argv[1]: VmAdd with hvsock path argv[2], then the simulator argv[4] started on it,
 * VmList until the bridge is up, an attached Exec whose stdout goes to argv[3], Ps, Wait, Stats, a
 * refused call, VmRemove. Exits 0 when every answer is the expected one, else 1 with why. */
/* Strict C11 and POSIX only: the public header must need nothing more. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <vsockmux/vsockmux.h>

#define CHECK(cond, ...)                                                 \
        do {                                                             \
                if (!(cond)) {                                           \
                        fprintf(stderr, "install-client: " __VA_ARGS__); \
                        fputc('\n', stderr);                             \
                        return 1;                                        \
                }                                                        \
        } while (0)

static int call(struct vsockmux_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret)
{
        struct vsockmux_status st = { 0 };
        int r = vsockmux_client_call(c, method, req, desc, ret, &st);

        if (r == -EREMOTEIO)
                fprintf(stderr, "install-client: %s: %s (%s)\n", method, st.message, vsockmux_code_to_string(st.code));
        else if (r < 0)
                fprintf(stderr, "install-client: %s: %s\n", method, strerror(-r));
        return r;
}

/* The simulator dials once it runs; the bridge is up when VmList says so. */
static int wait_connected(struct vsockmux_client *c, const char *name)
{
        for (unsigned i = 0; i < 3000; i++) {
                Vsockmux__V1__VmListRequest req = VSOCKMUX__V1__VM_LIST_REQUEST__INIT;
                ProtobufCMessage *m = NULL;
                Vsockmux__V1__VmListResponse *resp;
                int connected = 0;

                if (call(c, VSOCKMUX_METHOD("VmList"), &req.base, &vsockmux__v1__vm_list_response__descriptor, &m) < 0)
                        return -1;
                resp = (Vsockmux__V1__VmListResponse *)m;
                for (size_t j = 0; j < resp->n_vms; j++)
                        if (strcmp(resp->vms[j]->name, name) == 0 &&
                            resp->vms[j]->bridge_state == VSOCKMUX__V1__BRIDGE_STATE__BRIDGE_STATE_CONNECTED)
                                connected = 1;
                vsockmux_message_free(m);
                if (connected)
                        return 0;
                nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
        }
        return -1;
}

static int run(int argc, char **argv, pid_t *sim);

int main(int argc, char **argv)
{
        pid_t sim = 0;
        int r = run(argc, argv, &sim);

        if (sim > 0) {
                kill(sim, SIGTERM);
                waitpid(sim, NULL, 0);
        }
        return r;
}

static int run(int argc, char **argv, pid_t *sim)
{
        Vsockmux__V1__VmAddRequest add = VSOCKMUX__V1__VM_ADD_REQUEST__INIT;
        Vsockmux__V1__ExecRequest exec = VSOCKMUX__V1__EXEC_REQUEST__INIT;
        Vsockmux__V1__PsRequest ps = VSOCKMUX__V1__PS_REQUEST__INIT;
        Vsockmux__V1__WaitRequest wait = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        Vsockmux__V1__StatsRequest stats = VSOCKMUX__V1__STATS_REQUEST__INIT;
        Vsockmux__V1__VmRemoveRequest rm = VSOCKMUX__V1__VM_REMOVE_REQUEST__INIT;
        char *args[] = { (char *)"sh", (char *)"-c", (char *)"echo installed; exit 3" };
        struct vsockmux_client *c = NULL;
        struct vsockmux_status st = { 0 };
        ProtobufCMessage *m = NULL;
        uint32_t pid;
        int r;

        CHECK(argc == 5, "usage: install-client SOCKET HVSOCK STDOUT-FILE SIMULATOR");
        CHECK(vsockmux_client_connect("", &c) == -EINVAL, "an empty path is refused");
        r = vsockmux_client_connect(argv[1], &c);
        CHECK(r == 0, "connect %s: %s", argv[1], strerror(-r));

        add.name = (char *)"installed";
        add.transport_case = VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_HVSOCK_PATH;
        add.hvsock_path = argv[2];
        CHECK(call(c, VSOCKMUX_METHOD("VmAdd"), &add.base, &vsockmux__v1__vm_add_response__descriptor, &m) == 0,
              "VmAdd");
        m = vsockmux_message_free(m);
        r = posix_spawn(sim, argv[4], NULL, NULL, (char *[]){ argv[4], (char *)"--hvsock", argv[2], NULL }, NULL);
        CHECK(r == 0, "starting %s: %s", argv[4], strerror(r));
        CHECK(wait_connected(c, "installed") == 0, "the simulator's bridge never came up");

        /* Attached: the reply comes after the exit, with the status. */
        exec.vm = (char *)"installed";
        exec.n_argv = 3;
        exec.argv = args;
        exec.stdout_path = argv[3];
        CHECK(call(c, VSOCKMUX_METHOD("Exec"), &exec.base, &vsockmux__v1__exec_response__descriptor, &m) == 0, "Exec");
        {
                Vsockmux__V1__ExecResponse *e = (Vsockmux__V1__ExecResponse *)m;

                CHECK(e->pid > 0, "Exec gave no pid");
                CHECK(e->exit && e->exit->kind == VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED && e->exit->code == 3,
                      "Exec's exit is not 'exited 3'");
                pid = e->pid;
        }
        m = vsockmux_message_free(m);

        ps.vm = (char *)"installed";
        CHECK(call(c, VSOCKMUX_METHOD("Ps"), &ps.base, &vsockmux__v1__ps_response__descriptor, &m) == 0, "Ps");
        {
                Vsockmux__V1__PsResponse *p = (Vsockmux__V1__PsResponse *)m;
                int found = 0;

                for (size_t i = 0; i < p->n_processes; i++)
                        if (p->processes[i]->pid == pid && p->processes[i]->bytes &&
                            p->processes[i]->bytes->stdout_bytes == strlen("installed\n"))
                                found = 1;
                CHECK(found, "Ps does not list pid %u with its 10 stdout bytes", pid);
        }
        m = vsockmux_message_free(m);

        wait.vm = (char *)"installed";
        wait.pid = pid;
        CHECK(call(c, VSOCKMUX_METHOD("Wait"), &wait.base, &vsockmux__v1__wait_response__descriptor, &m) == 0, "Wait");
        CHECK(((Vsockmux__V1__WaitResponse *)m)->exit && ((Vsockmux__V1__WaitResponse *)m)->exit->code == 3,
              "Wait's exit code is not 3");
        m = vsockmux_message_free(m);

        CHECK(call(c, VSOCKMUX_METHOD("Stats"), &stats.base, &vsockmux__v1__stats_response__descriptor, &m) == 0,
              "Stats");
        m = vsockmux_message_free(m);

        /* A refusal is -EREMOTEIO with the daemon's code, and the connection stays usable. */
        wait.vm = (char *)"no-such-vm";
        r = vsockmux_client_call(c, VSOCKMUX_METHOD("Wait"), &wait.base, &vsockmux__v1__wait_response__descriptor, &m,
                                 &st);
        CHECK(r == -EREMOTEIO, "Wait on an unknown VM returned %d", r);
        CHECK(strcmp(vsockmux_code_to_string(st.code), "NOT_FOUND") == 0, "Wait on an unknown VM: %s",
              vsockmux_code_to_string(st.code));

        rm.name = (char *)"installed";
        CHECK(call(c, VSOCKMUX_METHOD("VmRemove"), &rm.base, &vsockmux__v1__vm_remove_response__descriptor, &m) == 0,
              "VmRemove");
        vsockmux_message_free(m);
        vsockmux_client_free(c);
        printf("install-client: ok\n");
        return 0;
}
