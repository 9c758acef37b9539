/* sim/fidelity.c: the places where --fidelity upstream makes the simulator as strict as hcsshim's
 * guest (internal/guest/bridge/bridge_v2.go, runtime/hcsv2/uvm.go), so tests meet what a real VM does. */
#include <errno.h>
#include <string.h>
#include <sys/wait.h>

#include "bridge/msg.h"
#include "sim/sim.h"

bool sim_upstream(const struct sim *s)
{
        return s->opt.fidelity == SIM_FIDELITY_UPSTREAM;
}

int sim_fidelity_from_string(const char *name, enum sim_fidelity *ret)
{
        if (strcmp(name, "ours") == 0)
                *ret = SIM_FIDELITY_OURS;
        else if (strcmp(name, "upstream") == 0)
                *ret = SIM_FIDELITY_UPSTREAM;
        else
                return -EINVAL;
        return 0;
}

uint32_t sim_fidelity_exit_code(const struct sim *s, int status)
{
        if (status == -1)
                return 255u;
        if (WIFEXITED(status))
                return (uint32_t)WEXITSTATUS(status);
        if (!WIFSIGNALED(status))
                return 255u;
        /* Go's ExitCode() is -1 for a signal, sent as a uint32; ours answers like a shell. */
        return sim_upstream(s) ? BRIDGE_EXIT_CODE_SIGNALED : 128u + (uint32_t)WTERMSIG(status);
}

static bool is_uvm(const char *container_id)
{
        return strcmp(container_id, BRIDGE_NULL_GUID) == 0;
}

/* hcsshim resolves the container first (GetCreatedContainer: 0xc037010e), then the pid in it. */
static int in_container(struct sim *s, const char *container_id, uint32_t pid, struct sim_target *ret)
{
        if (!sim_container_exists(s, container_id)) {
                *ret = (struct sim_target){ BRIDGE_HR_SYSTEM_NOT_FOUND, "compute system not found" };
                return -ENXIO;
        }
        if (pid != 0 && sim_process_in_container(s, pid, container_id) <= 0) {
                *ret = (struct sim_target){ BRIDGE_HR_NOT_FOUND, "process not found" };
                return -ENOENT;
        }
        return 0;
}

int sim_fidelity_check_target(struct sim *s, uint32_t type, const char *container_id, uint32_t pid,
                              struct sim_target *ret)
{
        if (!sim_upstream(s))
                return 0; /* ours takes any id, "" included, and finds a pid wherever it runs */
        switch (type) {
        case BRIDGE_RPC_EXECUTE_PROCESS:
                /* A VM-level process only for the null GUID (or IsExternal, which we never send). */
                return is_uvm(container_id) ? 0 : in_container(s, container_id, 0, ret);
        case BRIDGE_RPC_WAIT_FOR_PROCESS:
                if (is_uvm(container_id)) {
                        if (sim_process_in_container(s, pid, container_id) > 0)
                                return 0;
                        *ret = (struct sim_target){ BRIDGE_HR_NOT_FOUND, "process not found" };
                        return -ENOENT;
                }
                return in_container(s, container_id, pid, ret);
        case BRIDGE_RPC_SIGNAL_PROCESS:
                /* SignalContainerProcess looks only inside containers: the null GUID names none. */
                return in_container(s, container_id, pid, ret);
        case BRIDGE_RPC_RESIZE_CONSOLE:
                /* resizeConsoleV2 looks the process up in GetCreatedContainer: the same rule. */
                return in_container(s, container_id, pid, ret);
        default: return 0;
        }
}
