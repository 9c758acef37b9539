#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/paths.h"
#include "daemon/vmm-internal.h"
#include "util/log.h"

void vmm_config_default(struct vmm_config *c)
{
        *c = (struct vmm_config){
                .state_dir = "/run/vsockmux",
                .max_vms = VMM_DEFAULT_MAX_VMS,
                .max_processes = VMM_DEFAULT_MAX_PROCESSES,
                .exited_keep = VMM_DEFAULT_EXITED_KEEP,
                .drain_timeout_ns = VMM_DEFAULT_DRAIN_TIMEOUT_NS,
                .reconnect_grace_ns = VMM_DEFAULT_RECONNECT_GRACE_NS,
                .attach_backlog = ATTACH_DEFAULT_BACKLOG,
                .attach_client_max_tx = ATTACH_DEFAULT_CLIENT_TX,
                .attach_max_clients = ATTACH_DEFAULT_MAX_CLIENTS,
        };
}

void vmm_emit(struct vmm *m, enum vmm_event_kind kind, const char *vm, const char *container_id, uint32_t pid,
              const struct vmm_exit *exit, const char *message)
{
        struct vmm_event e = {
                .kind = kind,
                .vm = vm,
                .container_id = container_id,
                .pid = pid,
                .exit = exit,
                .message = message,
        };

        if (m->event_fn)
                m->event_fn(&e, m->event_userdata);
}

static int mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        for (char *p = copy + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(copy, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                *p = '/';
        }
        if (mkdir(copy, mode) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

int vmm_new(struct relay *r, const struct vmm_config *cfg, vmm_event_fn ev, void *userdata, struct vmm **ret)
{
        _cleanup_free_ struct vmm *m = calloc(1, sizeof(*m));
        int k;

        if (!m)
                return -ENOMEM;
        m->relay = r;
        if (cfg)
                m->cfg = *cfg;
        else
                vmm_config_default(&m->cfg);
        if (!m->cfg.state_dir || m->cfg.state_dir[0] != '/')
                return -EINVAL;
        if (asprintf(&m->attach_dir, "%s/attach", m->cfg.state_dir) < 0)
                return -ENOMEM;
        /* Attach sockets carry container output: only the daemon's owner may reach them. */
        k = mkdir_p(m->attach_dir, 0700);
        if (k >= 0 && !m->cfg.hvsock_root && m->cfg.hvsock_in_state_dir) {
                m->state_dir_real = realpath(m->cfg.state_dir, NULL);
                if (!m->state_dir_real)
                        k = negative_errno();
                m->cfg.hvsock_root = m->state_dir_real;
        }
        if (k >= 0)
                k = opener_new(&m->opener);
        if (k < 0) {
                free(m->state_dir_real);
                free(m->attach_dir);
                return k;
        }
        m->exit_dir_fd = -1;
        if (m->cfg.exit_dir) {
                k = mkdir_p(m->cfg.exit_dir, 0755);
                if (k >= 0)
                        m->exit_dir_fd = open(m->cfg.exit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (k < 0 || m->exit_dir_fd < 0) {
                        k = k < 0 ? k : negative_errno();
                        free(m->attach_dir);
                        return k;
                }
        }
        m->event_fn = ev;
        m->event_userdata = userdata;
        list_init(&m->vms);
        *ret = TAKE_PTR(m);
        return 0;
}

static bool transport_same(const struct relay_transport *a, const struct relay_transport *b)
{
        if (a->kind != b->kind)
                return false;
        return a->kind == RELAY_TRANSPORT_HVSOCK ? strcmp(a->uds_path, b->uds_path) == 0 : a->cid == b->cid;
}

static struct vmm_port_floor *port_floor_find(struct vmm *m, const struct relay_transport *t)
{
        for (unsigned i = 0; i < m->n_floors; i++)
                if (transport_same(&m->floors[i].transport, t))
                        return &m->floors[i];
        return NULL;
}

/* Remembers the ports a VM on t handed out; raise-only. Out of memory only loses the memory. */
static void port_floor_remember(struct vmm *m, const struct relay_transport *t, uint32_t floor)
{
        struct vmm_port_floor *e = port_floor_find(m, t);

        if (floor <= PORTS_FIRST)
                return;
        if (!e && m->n_floors < VMM_PORT_FLOORS_MAX) {
                struct vmm_port_floor *n = reallocarray(m->floors, m->n_floors + 1, sizeof(*n));

                if (!n)
                        return;
                m->floors = n;
                e = &m->floors[m->n_floors++];
                *e = (struct vmm_port_floor){ .transport = *t };
        }
        if (!e) {
                e = &m->floors[0];
                for (unsigned i = 1; i < m->n_floors; i++)
                        if (m->floors[i].seq < e->seq)
                                e = &m->floors[i];
                log_warn("vm: %u transports' port floors remembered, the limit: forgetting the oldest", m->n_floors);
                *e = (struct vmm_port_floor){ .transport = *t };
        }
        if (floor > e->floor)
                e->floor = floor;
        e->seq = ++m->floor_seq;
}

static struct vmm_vm *vmm_vm_free(struct vmm_vm *vm, const char *reason)
{
        struct list_head *pos, *tmp;

        if (!vm)
                return NULL;
        vm->removing = true;
        vmm_save_abandon(vm);
        vm->window_timer = relay_timer_free(vm->window_timer);
        /* The bridge fails its outstanding calls first (their callbacks see live processes), then
         * every process ends and its waiters hear why. */
        vm->bridge = bridge_host_free(vm->bridge);
        vmm_process_vm_teardown(vm, reason);
        list_for_each_safe(pos, tmp, &vm->containers) {
                struct vmm_container *c = list_entry(pos, struct vmm_container, link);

                list_del(&c->link);
                free(c->id);
                free(c);
        }
        if (vm->ports)
                port_floor_remember(vm->vmm, &vm->transport, ports_floor(vm->ports));
        vm->ports = ports_free(vm->ports);
        /* After the bridge and the processes: their listeners' files are unlinked through it. */
        vm->hvsock_dir_fd = safe_close(vm->hvsock_dir_fd);
        /* Last: nobody else may listen there before our sockets are gone. */
        vmm_vm_fence_drop(vm);
        free(vm->name);
        free(vm);
        return NULL;
}

struct vmm *vmm_free(struct vmm *m)
{
        struct list_head *pos, *tmp;

        if (!m)
                return NULL;
        list_for_each_safe(pos, tmp, &m->vms) {
                struct vmm_vm *vm = list_entry(pos, struct vmm_vm, link);

                list_del(&vm->link);
                vmm_vm_free(vm, "daemon stopping");
        }
        free(m->floors);
        m->opener = opener_free(m->opener);
        free(m->state_dir_real);
        free(m->attach_dir);
        safe_close(m->exit_dir_fd);
        free(m);
        return NULL;
}

unsigned vmm_quiesce(struct vmm *m)
{
        struct list_head *pos;

        list_for_each(pos, &m->vms) {
                struct vmm_vm *vm = list_entry(pos, struct vmm_vm, link);
                struct list_head *p;

                list_for_each(p, &vm->processes) {
                        struct vmm_process *proc = list_entry(p, struct vmm_process, link);

                        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                                if (proc->streams[k].stream && relay_stream_freeze(proc->streams[k].stream) == 0)
                                        m->quiesce_pending++;
                }
        }
        return m->quiesce_pending;
}

unsigned vmm_quiesce_pending(const struct vmm *m)
{
        return m->quiesce_pending;
}

struct relay *vmm_relay(struct vmm *m)
{
        return m->relay;
}

static bool vmm_name_valid(const char *name)
{
        size_t n = name ? strnlen(name, VMM_NAME_MAX + 1) : 0;

        if (n == 0 || n > VMM_NAME_MAX || name[0] == '.')
                return false;
        /* The name becomes part of attach socket paths: keep it to a safe alphabet. */
        for (size_t i = 0; i < n; i++) {
                char ch = name[i];

                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '-' || ch == '_' || ch == '.'))
                        return false;
        }
        return true;
}

static void vmm_vm_on_bridge_state(struct bridge_host *h, enum bridge_conn_state old_state,
                                   enum bridge_conn_state new_state, void *userdata)
{
        struct vmm_vm *vm = userdata;

        log_info("vm %s: bridge %s -> %s", vm->name, bridge_conn_state_to_string(old_state),
                 bridge_conn_state_to_string(new_state));
        if (new_state == BRIDGE_CONN_CONNECTED) {
                vm->stdio_resume = bridge_host_stdio_resume(h);
                vm->counters.bridge_connects++;
                vmm_emit(vm->vmm, VMM_EVENT_BRIDGE_CONNECTED, vm->name, NULL, 0, NULL, bridge_host_runtime_os(h));
                vmm_reattach_bridge_connected(vm);
                vmm_process_bridge_connected(vm);
        } else if (old_state == BRIDGE_CONN_CONNECTED)
                vmm_emit(vm->vmm, VMM_EVENT_BRIDGE_DISCONNECTED, vm->name, NULL, 0, NULL,
                         bridge_conn_state_to_string(new_state));
}

static const struct bridge_host_ops vmm_bridge_ops = {
        .on_state_change = vmm_vm_on_bridge_state,
};

int vmm_vm_alloc(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret)
{
        struct vmm_vm *vm;
        int r;

        if (!vmm_name_valid(name))
                return -EINVAL;
        if (vmm_vm_find(m, name))
                return -EEXIST;
        if (m->n_vms >= m->cfg.max_vms) {
                log_warn("vm %s: refused: %u VMs, the limit", name, m->n_vms);
                m->cap_hits[VMM_CAP_VMS]++;
                return -EUSERS;
        }
        vm = calloc(1, sizeof(*vm));
        if (!vm)
                return -ENOMEM;
        vm->vmm = m;
        vm->transport = *t;
        vm->listen_transport = *t;
        vm->hvsock_dir_fd = -1;
        if (t->kind == RELAY_TRANSPORT_HVSOCK) {
                r = paths_open_dir(m->cfg.hvsock_root, t->uds_path, &vm->hvsock_dir_fd, vm->listen_transport.uds_path,
                                   sizeof(vm->listen_transport.uds_path));
                if (r < 0) {
                        log_warn("vm %s: hvsock path %s refused: %s (root %s)", name, t->uds_path, strerror(-r),
                                 m->cfg.hvsock_root ? m->cfg.hvsock_root : "none");
                        free(vm);
                        /* A missing directory is not a policy refusal; the rest is. */
                        return r == -ENOENT || r == -ENAMETOOLONG || r == -ENOMEM ? r : -EPERM;
                }
        }
        list_init(&vm->link);
        list_init(&vm->processes);
        list_init(&vm->containers);
        vm->name = strdup(name);
        if (!vm->name) {
                safe_close(vm->hvsock_dir_fd);
                free(vm);
                return -ENOMEM;
        }
        r = ports_new(&vm->ports);
        if (r < 0) {
                vmm_vm_free(vm, "VM add failed");
                return r;
        }
        /* A guest of a VM removed from this transport may still redial its old stdio ports: never
         * hand those to a new exec, or its output would land in the new process's endpoint. */
        {
                const struct vmm_port_floor *e = port_floor_find(m, t);

                if (e && e->floor > ports_floor(vm->ports)) {
                        r = ports_raise_floor(vm->ports, e->floor);
                        if (r < 0) {
                                vmm_vm_free(vm, "VM add failed");
                                return r;
                        }
                        log_info("vm %s: stdio ports start at 0x%08x, above those of a VM removed from this transport",
                                 name, e->floor);
                }
        }
        *ret = vm;
        return 0;
}

int vmm_vm_start_bridge(struct vmm_vm *vm)
{
        int r = bridge_host_new(vm->vmm->relay, &vm->listen_transport, vm->name, &vmm_bridge_ops, vm, &vm->bridge);

        if (r >= 0)
                r = bridge_host_set_max_frame(vm->bridge, vm->vmm->cfg.bridge_max_frame);
        if (r >= 0)
                r = bridge_host_set_reconnect_grace(vm->bridge, vm->vmm->cfg.reconnect_grace_ns);
        return r;
}

void vmm_vm_publish(struct vmm_vm *vm)
{
        struct vmm *m = vm->vmm;

        list_add_tail(&m->vms, &vm->link);
        m->n_vms++;
        if (vm->transport.kind == RELAY_TRANSPORT_HVSOCK)
                log_info("vm %s: added, hybrid vsock at %s", vm->name, vm->transport.uds_path);
        else
                log_info("vm %s: added, vsock CID %u", vm->name, vm->transport.cid);
        vmm_emit(m, VMM_EVENT_VM_ADDED, vm->name, NULL, 0, NULL, NULL);
}

void vmm_vm_discard(struct vmm_vm *vm)
{
        vmm_vm_free(vm, "VM set-up failed");
}

int vmm_vm_add(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret)
{
        struct vmm_vm *vm;
        char err[256];
        int r;

        r = vmm_vm_alloc(m, name, t, &vm);
        if (r < 0)
                return r;
        /* Before anything listens: a transport another daemon serves is not ours to touch. */
        r = vmm_vm_fence_take(vm, err, sizeof(err));
        if (r >= 0)
                r = vmm_vm_fence_own(vm, vmm_vm_fence_generation(vm) + 1);
        if (r < 0) {
                log_warn("vm %s: refused: %s", name, r == -EBUSY ? err : strerror(-r));
                vmm_vm_free(vm, "VM add failed");
                return r;
        }
        r = vmm_vm_start_bridge(vm);
        if (r < 0) {
                vmm_vm_free(vm, "VM add failed");
                return r;
        }
        vmm_vm_publish(vm);
        if (ret)
                *ret = vm;
        return 0;
}

int vmm_vm_remove(struct vmm *m, const char *name)
{
        struct vmm_vm *vm = vmm_vm_find(m, name);
        _cleanup_free_ char *copy = NULL;

        if (!vm)
                return -ENOENT;
        copy = strdup(vm->name);
        list_del(&vm->link);
        m->n_vms--;
        vmm_vm_free(vm, "VM removed");
        log_info("vm %s: removed", name);
        vmm_emit(m, VMM_EVENT_VM_REMOVED, copy ? copy : "", NULL, 0, NULL, NULL);
        return 0;
}

struct vmm_vm *vmm_vm_find(struct vmm *m, const char *name)
{
        struct list_head *pos;

        if (!name)
                return NULL;
        list_for_each(pos, &m->vms) {
                struct vmm_vm *vm = list_entry(pos, struct vmm_vm, link);

                if (strcmp(vm->name, name) == 0)
                        return vm;
        }
        return NULL;
}

struct vmm_vm *vmm_vm_next(struct vmm *m, struct vmm_vm *prev)
{
        struct list_head *n = prev ? prev->link.next : m->vms.next;

        return n == &m->vms ? NULL : list_entry(n, struct vmm_vm, link);
}

unsigned vmm_vm_count(const struct vmm *m)
{
        return m->n_vms;
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
        return bridge_host_state(vm->bridge);
}

struct bridge_host *vmm_vm_bridge(struct vmm_vm *vm)
{
        return vm->bridge;
}

unsigned vmm_vm_process_count(const struct vmm_vm *vm)
{
        return vm->n_processes;
}

unsigned vmm_vm_container_count(const struct vmm_vm *vm)
{
        return vm->n_containers;
}

bool vmm_vm_is_migrating(const struct vmm_vm *vm)
{
        return bridge_host_is_migrating(vm->bridge);
}

/* ---- containers ---- */

struct vmm_container_op {
        struct vmm_vm *vm;
        char *id;
        vmm_done_fn fn;
        void *userdata;
};

static struct vmm_container *vmm_container_find(struct vmm_vm *vm, const char *id)
{
        struct list_head *pos;

        list_for_each(pos, &vm->containers) {
                struct vmm_container *c = list_entry(pos, struct vmm_container, link);

                if (strcmp(c->id, id) == 0)
                        return c;
        }
        return NULL;
}

static void vmm_container_on_notify(const struct bridge_notification *n, int error, void *userdata)
{
        struct vmm_container *c = userdata;
        struct vmm_vm *vm = c->vm;

        c->watched = false;
        if (error < 0 || !n)
                return;
        log_info("vm %s: container %s: %s (result %d)", vm->name, c->id, n->type ? n->type : "exit", n->result);
        vmm_emit(vm->vmm, VMM_EVENT_CONTAINER_EXITED, vm->name, c->id, 0, NULL, n->type);
        list_del(&c->link);
        vm->n_containers--;
        free(c->id);
        free(c);
}

int vmm_container_track(struct vmm_vm *vm, const char *id)
{
        struct vmm_container *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->vm = vm;
        c->id = strdup(id);
        if (!c->id) {
                free(c);
                return -ENOMEM;
        }
        r = bridge_host_watch_container(vm->bridge, id, vmm_container_on_notify, c);
        if (r < 0) {
                free(c->id);
                free(c);
                return r;
        }
        c->watched = true;
        list_add_tail(&vm->containers, &c->link);
        vm->n_containers++;
        return 0;
}

static void vmm_container_op_free(struct vmm_container_op *op)
{
        free(op->id);
        free(op);
}

static void vmm_container_on_created(const struct bridge_result *res, void *userdata)
{
        struct vmm_container_op *op = userdata;
        int r = res->error;

        if (r == 0 && !op->vm->removing) {
                r = vmm_container_track(op->vm, op->id);
                if (r == 0)
                        vmm_emit(op->vm->vmm, VMM_EVENT_CONTAINER_CREATED, op->vm->name, op->id, 0, NULL, NULL);
        }
        op->fn(r, r == res->error ? res->message : "cannot watch the container's exit", op->userdata);
        vmm_container_op_free(op);
}

static void vmm_container_on_shutdown(const struct bridge_result *res, void *userdata)
{
        struct vmm_container_op *op = userdata;

        op->fn(res->error, res->message, op->userdata);
        vmm_container_op_free(op);
}

static int vmm_container_op_new(struct vmm_vm *vm, const char *id, vmm_done_fn fn, void *userdata,
                                struct vmm_container_op **ret)
{
        struct vmm_container_op *op;

        if (!id || id[0] == '\0' || strnlen(id, BRIDGE_MAX_ID_LEN + 1) > BRIDGE_MAX_ID_LEN)
                return -EINVAL;
        if (vmm_vm_is_migrating(vm))
                return -EBUSY;
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->vm = vm;
        op->fn = fn;
        op->userdata = userdata;
        op->id = strdup(id);
        if (!op->id) {
                free(op);
                return -ENOMEM;
        }
        *ret = op;
        return 0;
}

int vmm_container_create(struct vmm_vm *vm, const char *id, const char *config_json, vmm_done_fn fn, void *userdata)
{
        struct vmm_container_op *op;
        int r;

        r = vmm_container_op_new(vm, id, fn, userdata, &op);
        if (r < 0)
                return r;
        if (vmm_container_find(vm, id)) {
                vmm_container_op_free(op);
                return -EEXIST;
        }
        r = bridge_host_create_container(vm->bridge, id, config_json && config_json[0] ? config_json : "{}",
                                         vmm_container_on_created, op);
        if (r < 0)
                vmm_container_op_free(op);
        return r;
}

int vmm_container_shutdown(struct vmm_vm *vm, const char *id, bool force, vmm_done_fn fn, void *userdata)
{
        struct vmm_container_op *op;
        int r;

        r = vmm_container_op_new(vm, id, fn, userdata, &op);
        if (r < 0)
                return r;
        r = bridge_host_shutdown(vm->bridge, id, force ? BRIDGE_SHUTDOWN_FORCED : BRIDGE_SHUTDOWN_GRACEFUL,
                                 vmm_container_on_shutdown, op);
        if (r < 0)
                vmm_container_op_free(op);
        return r;
}

void vmm_get_stats(struct vmm *m, struct vmm_stats *ret)
{
        struct vmm_stats s = { .vms = m->n_vms };
        struct list_head *pos;

        memcpy(s.cap_hits, m->cap_hits, sizeof(s.cap_hits));

        list_for_each(pos, &m->vms) {
                struct vmm_vm *vm = list_entry(pos, struct vmm_vm, link);
                struct list_head *p;

                s.processes += vm->n_processes;
                list_for_each(p, &vm->processes) {
                        struct vmm_process *proc = list_entry(p, struct vmm_process, link);

                        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                                if (proc->streams[k].stream)
                                        s.streams++;
                }
        }
        *ret = s;
}
