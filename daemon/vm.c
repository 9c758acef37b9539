/* daemon/vm.c: one VM's life (its directory, ports, bridge, containers and process table), the exec caps, and the calls that name a process by pid. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/conn.h"
#include "daemon/bridge-log.h"
#include "daemon/paths.h"
#include "daemon/vm-private.h"
#include "util/log.h"

/* Passed up to the manager for the record; a VM going away writes nothing more. */
static bool vm_on_processes_changed(uint32_t pid, const char *gone_exec_id, bool now, void *userdata)
{
        struct vmm_vm *vm = userdata;

        if (vm->state == VM_REMOVING || vm->state == VM_HANDED_OVER || !vm->ops->on_changed)
                return false;
        return vm->ops->on_changed(vm, pid, gone_exec_id, now, vm->userdata);
}

void vmm_vm_record_encoded(struct vmm_vm *vm)
{
        vmm_processes_encoded(vm->processes);
}

void vmm_vm_record_written(struct vmm_vm *vm)
{
        vmm_processes_durable(vm->processes);
}

bool vmm_vm_record_awaited(const struct vmm_vm *vm)
{
        return vmm_processes_awaiting_record(vm->processes);
}

static const struct vmm_processes_ops vm_processes_ops = {
        .on_stream_frozen = vm_on_stream_frozen,
        .on_changed = vm_on_processes_changed,
};

void vmm_vm_stop(struct vmm_vm *vm, const char *message)
{
        vmm_processes_stop(vm->processes, message);
}

static void vm_on_bridge_state(struct bridge_host *h, enum bridge_conn_state old_state,
                               enum bridge_conn_state new_state, void *userdata)
{
        struct vmm_vm *vm = userdata;

        log_info("vm %s: bridge %s -> %s", vm->name, bridge_conn_state_to_string(old_state),
                 bridge_conn_state_to_string(new_state));
        if (new_state == BRIDGE_CONN_CONNECTED) {
                vm->guest.stdio_resume = bridge_host_stdio_resume(h);
                vm->guest.stdio_ack = bridge_host_stdio_ack(h);
                vm->guest.stdin_eof = bridge_host_stdin_eof(h);
                /* A connection taken over live is the one the old daemon counted and announced. */
                if (!vm->bridge_adopting) {
                        vm->counters.bridge_connects++;
                        vmm_vm_emit(vm, VMM_EVENT_BRIDGE_CONNECTED, bridge_host_runtime_os(h));
                }
                vm_reattach_bridge_connected(vm);
                vmm_processes_bridge_connected(vm->processes);
        } else if (old_state == BRIDGE_CONN_CONNECTED)
                vmm_vm_emit(vm, VMM_EVENT_BRIDGE_DISCONNECTED, bridge_conn_state_to_string(new_state));
}

static void vm_on_bridge_event(struct bridge_host *h, const struct bridge_event *ev, void *userdata)
{
        struct vmm_vm *vm = userdata;

        bridge_log_event(vm->name, ev);
}

static const struct bridge_host_ops vm_bridge_ops = {
        .on_state_change = vm_on_bridge_state,
        .on_event = vm_on_bridge_event,
};

static int vm_open_dir(struct vmm_vm *vm, const struct relay_transport *t)
{
        const char *root = vm->ctx->cfg->hvsock_root;
        int r;

        if (t->kind != RELAY_TRANSPORT_HVSOCK)
                return 0;
        r = paths_open_dir(root, t->uds_path, &vm->hvsock_dir_fd, vm->listen_transport.uds_path,
                           sizeof(vm->listen_transport.uds_path));
        if (r < 0) {
                log_warn("vm %s: hvsock path %s refused: %s (root %s)", vm->name, t->uds_path, strerror(-r),
                         root ? root : "none");
                /* A missing directory is not a policy refusal; the rest is. */
                return r == -ENOENT || r == -ENAMETOOLONG || r == -ENOMEM ? r : -EPERM;
        }
        return 0;
}

/* A guest of a VM removed from this transport may still redial its old stdio ports: never hand
 * those to a new exec, or its output would land in the new process's endpoint. */
static int vm_raise_floor(struct vmm_vm *vm, uint32_t floor)
{
        int r;

        if (floor <= ports_floor(vm->guest.ports))
                return 0;
        r = ports_raise_floor(vm->guest.ports, floor);
        if (r < 0)
                return r;
        log_info("vm %s: stdio ports start at 0x%08x, above those of a VM removed from this transport", vm->name,
                 floor);
        return 0;
}

int vmm_vm_new(const struct vmm_context *ctx, const struct vmm_vm_ops *ops, void *userdata, const char *name,
               const struct relay_transport *t, uint32_t port_floor, struct vmm_vm **ret)
{
        struct vmm_vm *vm = calloc(1, sizeof(*vm));
        int r;

        if (!vm)
                return -ENOMEM;
        vm->ctx = ctx;
        vm->ops = ops;
        vm->userdata = userdata;
        vm->transport = *t;
        vm->listen_transport = *t;
        vm->hvsock_dir_fd = -1;
        vm->handover.bridge.listener_fd = vm->handover.bridge.guest_fd = -1;
        list_init(&vm->link);
        vm->name = strdup(name);
        r = vm->name ? vm_open_dir(vm, t) : -ENOMEM;
        if (r < 0) {
                free(vm->name);
                free(vm);
                return r;
        }
        vm->guest = (struct vmm_guest){
                .ctx = ctx,
                .vm_name = vm->name,
                .listen_transport = &vm->listen_transport,
        };
        r = ports_new(&vm->guest.ports);
        if (r >= 0)
                r = vmm_processes_new(&vm->guest, &vm_processes_ops, vm, &vm->processes);
        if (r >= 0)
                r = vmm_containers_new(&vm->guest, &vm->containers);
        if (r >= 0)
                r = vm_raise_floor(vm, port_floor);
        if (r < 0) {
                vmm_vm_free(vm, "VM add failed");
                return r;
        }
        *ret = vm;
        return 0;
}

int vmm_vm_start_bridge(struct vmm_vm *vm)
{
        const struct vmm_config *cfg = vm->ctx->cfg;
        int r = bridge_host_new(vm->ctx->relay, &vm->listen_transport, &vm_bridge_ops, vm, &vm->guest.bridge);

        if (r >= 0)
                r = bridge_host_set_max_frame(vm->guest.bridge, cfg->bridge_max_frame);
        if (r >= 0)
                r = bridge_host_set_reconnect_grace(vm->guest.bridge, cfg->reconnect_grace_ns);
        return r;
}

int vm_adopt_bridge(struct vmm_vm *vm, struct bridge_host_handover *hv)
{
        const struct vmm_config *cfg = vm->ctx->cfg;
        int r;

        vm->bridge_adopting = true;
        r = bridge_host_adopt(vm->ctx->relay, &vm->listen_transport, &vm_bridge_ops, vm, hv, &vm->guest.bridge);
        vm->bridge_adopting = false;
        if (r >= 0)
                r = bridge_host_set_max_frame(vm->guest.bridge, cfg->bridge_max_frame);
        if (r >= 0)
                r = bridge_host_set_reconnect_grace(vm->guest.bridge, cfg->reconnect_grace_ns);
        return r;
}

struct vmm_vm *vmm_vm_free(struct vmm_vm *vm, const char *reason)
{
        if (!vm)
                return NULL;
        vm_set_state(vm, VM_REMOVING);
        vm_freeze_gone(vm);
        vm->window_timer = relay_timer_free(vm->window_timer);
        /* The bridge fails its outstanding calls first (their callbacks see live processes), then
         * every process ends and its waiters hear why. */
        vm->guest.bridge = bridge_host_free(vm->guest.bridge);
        vm->processes = vmm_processes_free(vm->processes, reason);
        vm->containers = vmm_containers_free(vm->containers);
        vm->guest.ports = ports_free(vm->guest.ports);
        /* After the bridge and the processes: their listeners' files are unlinked through it. */
        vm->hvsock_dir_fd = safe_close(vm->hvsock_dir_fd);
        bridge_host_handover_done(&vm->handover.bridge);
        /* Last: nobody else may listen there before our sockets are gone. */
        vmm_vm_fence_drop(vm);
        free(vm->name);
        free(vm);
        return NULL;
}

void vmm_vm_link(struct vmm_vm *vm, struct list_head *list)
{
        list_add_tail(list, &vm->link);
}

void vmm_vm_unlink(struct vmm_vm *vm)
{
        list_del(&vm->link);
}

struct vmm_vm *vmm_vm_list_next(const struct list_head *list, struct vmm_vm *prev)
{
        struct list_head *n = prev ? prev->link.next : list->next;

        return n == list ? NULL : list_entry(n, struct vmm_vm, link);
}

const char *vmm_vm_name(const struct vmm_vm *vm)
{
        return vm->name;
}

const struct relay_transport *vmm_vm_transport(const struct vmm_vm *vm)
{
        return &vm->transport;
}

enum bridge_conn_state vmm_vm_bridge_state(const struct vmm_vm *vm)
{
        return bridge_host_state(vm->guest.bridge);
}

struct bridge_host *vmm_vm_bridge(struct vmm_vm *vm)
{
        return vm->guest.bridge;
}

unsigned vmm_vm_process_count(const struct vmm_vm *vm)
{
        return vmm_processes_count(vm->processes);
}

unsigned vmm_vm_container_count(const struct vmm_vm *vm)
{
        return vmm_containers_count(vm->containers);
}

bool vmm_vm_is_migrating(const struct vmm_vm *vm)
{
        return bridge_host_is_migrating(vm->guest.bridge);
}

bool vmm_vm_is_saved(const struct vmm_vm *vm)
{
        return vm->state == VM_SAVED;
}

uint32_t vmm_vm_port_floor(const struct vmm_vm *vm)
{
        return vm->guest.ports ? ports_floor(vm->guest.ports) : 0;
}

void vmm_vm_get_counters(struct vmm_vm *vm, struct vmm_vm_counters *ret)
{
        struct vmm_vm_counters c = vm->counters;
        struct bridge_conn *conn = vm->guest.bridge ? bridge_host_conn(vm->guest.bridge) : NULL;

        vmm_processes_add_counters(vm->processes, &c);
        c.held_replies = conn ? bridge_conn_held_count(conn) : 0;
        c.held_dropped = conn ? bridge_conn_held_dropped(conn) : 0;
        *ret = c;
}

unsigned vmm_vm_streams_held(const struct vmm_vm *vm)
{
        return vmm_processes_streams_held(vm->processes);
}

int vmm_vm_check_counts(const struct vmm_vm *vm)
{
        return vmm_processes_check_counts(vm->processes);
}

unsigned vmm_vm_stream_count(const struct vmm_vm *vm)
{
        return vmm_processes_streams_open(vm->processes);
}

unsigned vmm_vm_quiesce(struct vmm_vm *vm)
{
        unsigned n = vmm_processes_freeze(vm->processes);

        vm->quiesce_pending += n;
        vm->quiesce_ns = relay_now_ns(vm->ctx->relay);
        return vmm_vm_quiesce_pending(vm);
}

unsigned vmm_vm_quiesce_pending(const struct vmm_vm *vm)
{
        /* The stop's loop turns the relay meanwhile: the answers come in through it. */
        return vm->quiesce_pending + (vm->quiesce_ns && vmm_vm_probes_wait(vm, vm->quiesce_ns, NULL) ? 1 : 0);
}

/* ---- containers ---- */

/* A container call in flight: once it is done, the VM's containers changed for the record. */
struct vm_container_call {
        struct vmm_vm *vm;
        vmm_done_fn fn;
        void *userdata;
};

static void vm_on_container_done(int error, const char *message, void *userdata)
{
        struct vm_container_call *c = userdata;
        struct vmm_vm *vm = c->vm;
        vmm_done_fn fn = c->fn;
        void *fn_userdata = c->userdata;

        free(c);
        if (error == 0 && vm->state != VM_REMOVING && vm->state != VM_HANDED_OVER && vm->ops->on_changed)
                (void)vm->ops->on_changed(vm, 0, NULL, false, vm->userdata);
        fn(error, message, fn_userdata);
}

static struct vm_container_call *vm_container_call_new(struct vmm_vm *vm, vmm_done_fn fn, void *userdata)
{
        struct vm_container_call *c = malloc(sizeof(*c));

        if (c)
                *c = (struct vm_container_call){ .vm = vm, .fn = fn, .userdata = userdata };
        return c;
}

int vmm_container_create(struct vmm_vm *vm, const char *id, const char *config_json, vmm_done_fn fn, void *userdata)
{
        struct vm_container_call *c = vm_container_call_new(vm, fn, userdata);
        int r;

        if (!c)
                return -ENOMEM;
        r = vmm_containers_create(vm->containers, id, config_json, vm_on_container_done, c);
        if (r < 0)
                free(c);
        return r;
}

int vmm_container_shutdown(struct vmm_vm *vm, const char *id, bool force, vmm_done_fn fn, void *userdata)
{
        struct vm_container_call *c = vm_container_call_new(vm, fn, userdata);
        int r;

        if (!c)
                return -ENOMEM;
        r = vmm_containers_shutdown(vm->containers, id, force, vm_on_container_done, c);
        if (r < 0)
                free(c);
        return r;
}

/* ---- processes ---- */

static int vm_check_caps(struct vmm_vm *vm, const struct vmm_exec_params *params, struct vmm_error *err)
{
        const struct vmm_config *cfg = vm->ctx->cfg;
        unsigned held, want = vmm_exec_streams(params);

        if (!vmm_processes_make_room(vm->processes, cfg->max_processes)) {
                unsigned n = vmm_processes_count(vm->processes);

                log_warn("vm %s: exec refused: %u processes, the limit", vm->name, n);
                vm->ops->on_cap_hit(VMM_CAP_PROCESSES, vm->userdata);
                return vmm_error_set(err, -EUSERS, "VM %s has %u processes, the limit (vsockmuxd --max-processes)",
                                     vm->name, n);
        }
        if (!cfg->max_streams)
                return 0;
        held = vm->ops->streams_held(vm->userdata);
        if (held + want <= cfg->max_streams)
                return 0;
        log_warn("vm %s: exec refused: %u streams held, limit %u", vm->name, held, cfg->max_streams);
        vm->ops->on_cap_hit(VMM_CAP_STREAMS, vm->userdata);
        /* The default cap is what the fds allow: name the limit the operator must raise. */
        if (cfg->stream_capacity && cfg->max_streams == cfg->stream_capacity)
                return vmm_error_set(err, -EUSERS,
                                     "vsockmuxd holds %u stdio streams, %u more would pass the %u its open-file limit "
                                     "allows (two fds a stream; raise its RLIMIT_NOFILE hard limit, e.g. systemd "
                                     "LimitNOFILE=)",
                                     held, want, cfg->stream_capacity);
        return vmm_error_set(err, -EUSERS,
                             "vsockmuxd holds %u stdio streams, %u more would pass the limit of %u "
                             "(vsockmuxd --max-streams)",
                             held, want, cfg->max_streams);
}

int vmm_exec_start(struct vmm_vm *vm, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata,
                   struct vmm_starter **ret_starter, struct vmm_error *err)
{
        int r = vmm_processes_exec_check(vm->processes, params, err);

        if (r >= 0)
                r = vm_check_caps(vm, params, err);
        if (r >= 0)
                r = vmm_processes_exec(vm->processes, params, fn, userdata, ret_starter, err);
        return r;
}

int vmm_exec(struct vmm_vm *vm, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata,
             struct vmm_error *err)
{
        return vmm_exec_start(vm, params, fn, userdata, NULL, err);
}

struct vmm_process *vmm_process_find(struct vmm_vm *vm, uint32_t pid)
{
        return vmm_processes_find(vm->processes, pid);
}

struct vmm_process *vmm_process_find_id(struct vmm_vm *vm, const char *exec_id)
{
        return vmm_processes_find_id(vm->processes, exec_id);
}

struct vmm_process *vmm_process_next(struct vmm_vm *vm, struct vmm_process *prev)
{
        return vmm_processes_next(vm->processes, prev);
}

int vmm_resize(struct vmm_vm *vm, uint32_t pid, uint16_t height, uint16_t width, vmm_done_fn fn, void *userdata)
{
        return vmm_processes_resize(vm->processes, pid, height, width, fn, userdata);
}

int vmm_close_stdin(struct vmm_vm *vm, uint32_t pid)
{
        return vmm_processes_close_stdin(vm->processes, pid, vm->state == VM_FROZEN);
}

int vmm_kill(struct vmm_vm *vm, uint32_t pid, int signal, vmm_done_fn fn, void *userdata)
{
        return vmm_processes_kill(vm->processes, pid, signal, fn, userdata);
}
