/* daemon/vmm.c: the manager: the VM list, the caps, the port floors removed VMs leave behind, the stop, and the entry points that create a VM (add, restore). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/attach.h"
#include "daemon/record.h"
#include "daemon/vmm.h"
#include "util/list.h"
#include "util/log.h"

/* What a removed VM's transport had handed out: a guest that outlived the VM may still redial
 * those ports, so a VM added again on the same transport starts above them. Bounded: the oldest
 * entry makes room. */
#define VMM_PORT_FLOORS_MAX 4096u

struct vmm_port_floor {
        struct relay_transport transport;
        uint32_t floor;
        uint64_t seq; /* when last raised: the smallest goes first when full */
};

/* A removal waiting for the guest's reconnect probes (vmm_vm_remove_when_answered()). */
struct vmm_removal {
        struct list_head link; /* in the manager's removals */
        struct vmm *m;
        struct vmm_vm *vm;
        vmm_done_fn fn;
        void *userdata;
        uint64_t start_ns;
        struct relay_timer *poll;
};

struct vmm {
        struct vmm_context ctx; /* lent to every VM and process */
        struct vmm_config cfg;
        char *attach_dir;
        struct list_head vms;
        unsigned n_vms;
        struct list_head removals;     /* struct vmm_removal, waiting for their guest's probes */
        struct vmm_port_floor *floors; /* one per transport a removed VM used */
        unsigned n_floors;
        uint64_t floor_seq;
        char *state_dir_real; /* the hvsock root when confined to the state directory */
        uint64_t cap_hits[_VMM_CAP_MAX];
        struct vmm_record *record; /* NULL: no record (--no-record) */
        bool stopped;              /* vmm_stop_recorded() ran: the records stay as written */
        bool records_paused;       /* a live upgrade moves the VMs: the new daemon writes their records */
};

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
                .record_burst_gap_ns = VMM_RECORD_BURST_GAP_NS,
        };
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

int vmm_set_limits(struct vmm *m, const struct vmm_limits *l)
{
        if (!l->max_vms || l->max_vms > VMM_MAX_VMS_LIMIT || !l->max_processes ||
            l->max_processes > VMM_MAX_PROCESSES_LIMIT || !l->max_streams || l->max_streams > VMM_MAX_STREAMS_LIMIT ||
            !l->attach_max_clients || l->attach_max_clients > VMM_ATTACH_MAX_CLIENTS_LIMIT)
                return -EINVAL;
        m->cfg.max_vms = l->max_vms;
        m->cfg.max_processes = l->max_processes;
        m->cfg.max_streams = l->max_streams;
        m->cfg.attach_max_clients = l->attach_max_clients;
        return 0;
}

int vmm_new(struct relay *r, const struct vmm_config *cfg, vmm_event_fn ev, void *userdata, struct vmm **ret)
{
        _cleanup_free_ struct vmm *m = calloc(1, sizeof(*m));
        int k;

        if (!m)
                return -ENOMEM;
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
                k = opener_new(&m->ctx.opener);
        if (k >= 0 && m->cfg.record) {
                k = vmm_record_new(r, m->cfg.state_dir, m->cfg.record_burst_gap_ns, &m->record);
                if (k < 0)
                        m->ctx.opener = opener_free(m->ctx.opener);
        }
        if (k < 0) {
                free(m->state_dir_real);
                free(m->attach_dir);
                return k;
        }
        m->ctx.exit_dir_fd = -1;
        if (m->cfg.exit_dir) {
                k = mkdir_p(m->cfg.exit_dir, 0755);
                if (k >= 0)
                        m->ctx.exit_dir_fd = open(m->cfg.exit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (k < 0 || m->ctx.exit_dir_fd < 0) {
                        k = k < 0 ? k : negative_errno();
                        free(m->attach_dir);
                        return k;
                }
        }
        m->ctx.relay = r;
        m->ctx.cfg = &m->cfg;
        m->ctx.attach_dir = m->attach_dir;
        m->ctx.event_fn = ev;
        m->ctx.event_userdata = userdata;
        list_init(&m->vms);
        list_init(&m->removals);
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

static struct vmm_vm *manager_vm_free(struct vmm *m, struct vmm_vm *vm, const char *reason)
{
        uint32_t floor = vmm_vm_port_floor(vm);
        struct relay_transport t = *vmm_vm_transport(vm);

        vmm_record_forget(m->record, vm, false);
        vmm_vm_free(vm, reason);
        port_floor_remember(m, &t, floor);
        return NULL;
}

static void removals_finish_all(struct vmm *m);

struct vmm *vmm_free(struct vmm *m)
{
        struct vmm_vm *vm;

        if (!m)
                return NULL;
        removals_finish_all(m);
        while ((vm = vmm_vm_list_next(&m->vms, NULL))) {
                vmm_vm_unlink(vm);
                manager_vm_free(m, vm, "daemon stopping");
        }
        free(m->floors);
        m->record = vmm_record_free(m->record);
        m->ctx.opener = opener_free(m->ctx.opener);
        free(m->state_dir_real);
        free(m->attach_dir);
        safe_close(m->ctx.exit_dir_fd);
        free(m);
        return NULL;
}

unsigned vmm_quiesce(struct vmm *m)
{
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm))
                (void)vmm_vm_quiesce(vm);
        return vmm_quiesce_pending(m);
}

unsigned vmm_quiesce_pending(const struct vmm *m)
{
        unsigned n = 0;

        for (struct vmm_vm *vm = vmm_vm_list_next(&m->vms, NULL); vm; vm = vmm_vm_list_next(&m->vms, vm))
                n += vmm_vm_quiesce_pending(vm);
        return n;
}

struct relay *vmm_relay(struct vmm *m)
{
        return m->ctx.relay;
}

static bool vmm_name_valid(const char *name)
{
        size_t n = name ? strnlen(name, VMM_NAME_MAX + 1) : 0;

        if (n == 0 || n > VMM_NAME_MAX || name[0] == '.')
                return false;
        /* The name becomes part of attach socket paths: keep it to a safe alphabet. */
        for (size_t i = 0; i < n; i++) {
                char ch = name[i];

                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                      ch == '_' || ch == '.'))
                        return false;
        }
        return true;
}

/* ---- what the manager lends its VMs ---- */

static void manager_on_cap_hit(enum vmm_cap cap, void *userdata)
{
        struct vmm *m = userdata;

        m->cap_hits[cap]++;
}

static unsigned manager_streams_held(void *userdata)
{
        struct vmm *m = userdata;
        unsigned n = 0;

        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm))
                n += vmm_vm_streams_held(vm);
        return n;
}

static bool manager_on_vm_changed(struct vmm_vm *vm, uint32_t pid, const char *gone_exec_id, bool now, void *userdata)
{
        struct vmm *m = userdata;

        if (!m->record || m->stopped || m->records_paused)
                return false;
        if (now)
                (void)vmm_record_write(m->record, vm);
        else if (gone_exec_id)
                vmm_record_mark_gone(m->record, vm, pid, gone_exec_id);
        else
                vmm_record_mark(m->record, vm, pid);
        return true;
}

static const struct vmm_vm_ops manager_vm_ops = {
        .on_cap_hit = manager_on_cap_hit,
        .streams_held = manager_streams_held,
        .on_changed = manager_on_vm_changed,
};

/* A VM not in the list yet: the name is free and valid, the cap not reached. */
static int manager_vm_new(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret)
{
        const struct vmm_port_floor *e;

        if (!vmm_name_valid(name))
                return -EINVAL;
        if (vmm_vm_find(m, name))
                return -EEXIST;
        if (m->n_vms >= m->cfg.max_vms) {
                log_warn("vm %s: refused: %u VMs, the limit", name, m->n_vms);
                m->cap_hits[VMM_CAP_VMS]++;
                return -EUSERS;
        }
        e = port_floor_find(m, t);
        return vmm_vm_new(&m->ctx, &manager_vm_ops, m, name, t, e ? e->floor : 0, ret);
}

/* announce: a VM new to the daemon's users. One taken over live (or back, after a failed upgrade)
 * was there all along: followers of `events` heard of it already, from this daemon or the last. */
static void manager_vm_publish(struct vmm *m, struct vmm_vm *vm, bool announce)
{
        const struct relay_transport *t = vmm_vm_transport(vm);

        vmm_vm_link(vm, &m->vms);
        m->n_vms++;
        if (announce) {
                if (t->kind == RELAY_TRANSPORT_HVSOCK)
                        log_info("vm %s: added, hybrid vsock at %s", vmm_vm_name(vm), t->uds_path);
                else
                        log_info("vm %s: added, vsock CID %u", vmm_vm_name(vm), t->cid);
                vmm_context_emit(&m->ctx, VMM_EVENT_VM_ADDED, vmm_vm_name(vm), NULL, 0, NULL, NULL);
        }
        (void)manager_on_vm_changed(vm, 0, NULL, false, m);
}

int vmm_vm_add(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret)
{
        struct vmm_vm *vm;
        int r;

        struct vmm_error err = {};

        r = manager_vm_new(m, name, t, &vm);
        if (r < 0)
                return r;
        /* Before anything listens: a transport another daemon serves is not ours to touch. */
        r = vmm_vm_fence_take(vm, &err);
        if (r >= 0)
                r = vmm_vm_fence_own(vm, vmm_vm_fence_generation(vm) + 1);
        if (r < 0) {
                log_warn("vm %s: refused: %s", name, r == -EBUSY ? err.message : strerror(-r));
                manager_vm_free(m, vm, "VM add failed");
                return r;
        }
        r = vmm_vm_start_bridge(vm);
        if (r < 0) {
                manager_vm_free(m, vm, "VM add failed");
                return r;
        }
        manager_vm_publish(m, vm, true);
        if (ret)
                *ret = vm;
        return 0;
}

/* Every removal waiting on vm ends with error (message); after vm is freed it is only compared. */
static void removals_complete(struct vmm *m, const struct vmm_vm *vm, int error, const char *message)
{
        struct list_head *pos, *tmp;

        list_for_each_safe(pos, tmp, &m->removals) {
                struct vmm_removal *rm = list_entry(pos, struct vmm_removal, link);

                if (rm->vm != vm)
                        continue;
                list_del(&rm->link);
                relay_timer_free(rm->poll);
                rm->fn(error, message, rm->userdata);
                free(rm);
        }
}

int vmm_vm_remove(struct vmm *m, const char *name)
{
        struct vmm_vm *vm = vmm_vm_find(m, name);
        _cleanup_free_ char *copy = NULL;

        if (!vm)
                return -ENOENT;
        copy = strdup(vmm_vm_name(vm));
        vmm_record_forget(m->record, vm, true);
        vmm_vm_unlink(vm);
        m->n_vms--;
        manager_vm_free(m, vm, "VM removed");
        log_info("vm %s: removed", copy ? copy : "?");
        vmm_context_emit(&m->ctx, VMM_EVENT_VM_REMOVED, copy ? copy : "", NULL, 0, NULL, NULL);
        removals_complete(m, vm, 0, "");
        return 0;
}

/* The wait is over (answered, or VMM_PROBE_WAIT_NS passed, or the daemon stops): remove. */
static void removal_finish(struct vmm_removal *rm)
{
        struct vmm *m = rm->m;
        struct vmm_vm *vm = rm->vm;
        _cleanup_free_ char *name = NULL;

        if (vmm_vm_is_handed_over(vm)) {
                /* Its record and its guest are the new daemon's now. */
                removals_complete(m, vm, -EAGAIN,
                                  "the VM was handed over to a new vsockmuxd during its removal; remove it there");
                return;
        }
        name = strdup(vmm_vm_name(vm));
        if (!name || vmm_vm_remove(m, name) < 0)
                removals_complete(m, vm, -ENOMEM, strerror(ENOMEM));
}

static void removal_on_poll(struct relay_timer *t, void *userdata)
{
        struct vmm_removal *rm = userdata;

        if (!vmm_vm_probes_wait(rm->vm, rm->start_ns, rm->poll))
                removal_finish(rm);
}

static void removals_finish_all(struct vmm *m)
{
        while (!list_empty(&m->removals))
                removal_finish(list_entry(m->removals.next, struct vmm_removal, link));
}

int vmm_vm_remove_when_answered(struct vmm *m, const char *name, vmm_done_fn fn, void *userdata)
{
        struct vmm_vm *vm = vmm_vm_find(m, name);
        struct relay *relay = m->ctx.relay;
        struct vmm_removal *rm;
        int r;

        if (!vm)
                return -ENOENT;
        rm = calloc(1, sizeof(*rm));
        if (!rm)
                return -ENOMEM;
        *rm = (struct vmm_removal){ .m = m, .vm = vm, .fn = fn, .userdata = userdata, .start_ns = relay_now_ns(relay) };
        r = relay_timer_new(relay, removal_on_poll, rm, &rm->poll);
        if (r < 0) {
                free(rm);
                return r;
        }
        list_add_tail(&m->removals, &rm->link);
        if (!vmm_vm_probes_wait(vm, rm->start_ns, rm->poll))
                removal_finish(rm);
        else
                log_info("vm %s: removing once the guest answered its reconnect probes", vmm_vm_name(vm));
        return 0;
}

struct vmm_vm *vmm_vm_find(struct vmm *m, const char *name)
{
        if (!name)
                return NULL;
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm))
                if (strcmp(vmm_vm_name(vm), name) == 0)
                        return vm;
        return NULL;
}

struct vmm_vm *vmm_vm_next(struct vmm *m, struct vmm_vm *prev)
{
        return vmm_vm_list_next(&m->vms, prev);
}

unsigned vmm_vm_count(const struct vmm *m)
{
        return m->n_vms;
}

void vmm_get_stats(struct vmm *m, struct vmm_stats *ret)
{
        struct vmm_stats s = { .vms = m->n_vms };

        memcpy(s.cap_hits, m->cap_hits, sizeof(s.cap_hits));
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm)) {
                s.processes += vmm_vm_process_count(vm);
                s.streams += vmm_vm_stream_count(vm);
        }
        *ret = s;
}

/* ---- restore ---- */

static int manager_restore_vm_new(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret,
                                  struct vmm_error *err)
{
        int r = manager_vm_new(m, name, t, ret);

        if (r == -EPERM)
                return vmm_error_set(err, r,
                                     "hvsock path %s is not a plain path inside the daemon's --hvsock-root "
                                     "(default: its --state-dir)",
                                     t->uds_path);
        if (r < 0)
                return vmm_error_set(err, r, "cannot create VM '%s': %s", name, strerror(-r));
        return 0;
}

int vmm_restore(struct vmm *m, const uint8_t *blob, size_t len, const char *name, const struct relay_transport *t,
                const struct vmm_restore_io *io, size_t n_io, struct vmm_vm **ret, struct vmm_error *err)
{
        _cleanup_(vmm_restore_freep) struct vmm_restore *rs = NULL;
        uint64_t start_ns = relay_now_ns(m->ctx.relay), next_id;
        struct vmm_vm *vm;
        size_t n_processes;
        uint32_t floor;
        int r;

        r = vmm_restore_open(blob, len, name, t, io, n_io, &rs, err);
        if (r < 0)
                return r;
        name = vmm_restore_name(rs);
        if (vmm_vm_find(m, name))
                return vmm_error_set(err, -EEXIST, "VM '%s' exists already on this daemon", name);
        r = vmm_restore_check(rs, err);
        if (r >= 0)
                r = manager_restore_vm_new(m, name, vmm_restore_transport(rs), &vm, err);
        if (r < 0)
                return r;
        r = vmm_restore_apply(rs, vm, start_ns, err);
        if (r < 0) {
                manager_vm_free(m, vm, "VM set-up failed");
                return r;
        }
        manager_vm_publish(m, vm, true);
        vmm_restore_summary(rs, &n_processes, &floor, &next_id);
        log_info("vm %s: restored %zu processes (port floor 0x%08x, next call id %llu); waiting for the guest", name,
                 n_processes, floor, (unsigned long long)next_id);
        vmm_context_emit(&m->ctx, VMM_EVENT_MIGRATION_STARTED, name, NULL, 0, NULL, "restore");
        if (ret)
                *ret = vm;
        return 0;
}

int vmm_adopt(struct vmm *m, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds, struct vmm_vm **ret,
              struct vmm_error *err)
{
        struct relay_transport t = { .kind = RELAY_TRANSPORT_HVSOCK };
        struct vmm_vm *vm;
        int r;

        if (!sv->name || !sv->transport ||
            sv->transport->kind != VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK)
                return vmm_error_set(err, -EOPNOTSUPP, "a live upgrade hands over hybrid-vsock VMs only");
        if (vmm_vm_find(m, sv->name))
                return vmm_error_set(err, -EEXIST, "VM '%s' exists already on this daemon", sv->name);
        snprintf(t.uds_path, sizeof(t.uds_path), "%s", sv->transport->uds_path);
        r = manager_restore_vm_new(m, sv->name, &t, &vm, err);
        if (r < 0)
                return r;
        r = vmm_vm_adopt(vm, sv, fds, n_fds, err);
        if (r < 0) {
                manager_vm_free(m, vm, "VM take-over failed");
                return r;
        }
        manager_vm_publish(m, vm, false);
        /* Its record is ours now: written whole once the loop runs (after the old daemon's last). */
        if (m->record && !m->records_paused)
                vmm_record_mark_all(m->record, vm);
        log_info("vm %s: taken over live with %u processes", sv->name, vmm_vm_process_count(vm));
        if (ret)
                *ret = vm;
        return 0;
}

int vmm_take_back(struct vmm *m, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds, struct vmm_error *err)
{
        struct vmm_vm *old = sv->name ? vmm_vm_find(m, sv->name) : NULL, *vm = NULL;
        int r;

        if (!old || !vmm_vm_is_handed_over(old))
                return vmm_error_set(err, -ENOENT, "VM '%s' was not handed over from this daemon",
                                     sv->name ? sv->name : "");
        /* Out of the list while its successor is built under its name; freed telling nobody. */
        vmm_vm_unlink(old);
        m->n_vms--;
        r = vmm_adopt(m, sv, fds, n_fds, &vm, err);
        if (r >= 0)
                vmm_vm_take_waiters(vm, old);
        manager_vm_free(m, old, "handed back");
        return r;
}

/* ---- the record: a recorded stop and the recovery at start ---- */

void vmm_records_pause(struct vmm *m)
{
        vmm_record_sync(m->record);
        m->records_paused = true;
}

void vmm_records_resume(struct vmm *m)
{
        m->records_paused = false;
        if (!m->record || m->stopped)
                return;
        /* Changes while paused were never marked: each record is written whole. */
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm))
                vmm_record_mark_all(m->record, vm);
}

unsigned vmm_stop_recorded(struct vmm *m, const char *message)
{
        unsigned n = 0;

        /* After the flush, which waited for their guests' probes: removed, not recorded. */
        removals_finish_all(m);
        if (!m->record)
                return 0;
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm)) {
                /* After the flush: the offsets are final. */
                if (vmm_record_write(m->record, vm) < 0 || vmm_vm_is_saved(vm))
                        continue;
                vmm_vm_stop(vm, message);
                n++;
        }
        m->stopped = true;
        return n;
}

static int manager_recover_one(const struct vmm_record_entry *e, void *userdata, struct vmm_error *err)
{
        return vmm_restore(userdata, e->blob, e->len, NULL, NULL, e->io, e->n_io, NULL, err);
}

int vmm_recover(struct vmm *m)
{
        struct vmm_record_summary sum;
        int r;

        if (!m->record)
                return 0;
        r = vmm_record_recover(m->record, manager_recover_one, m, &sum);
        if (r < 0)
                return r;
        if (sum.vms + sum.bad + sum.failed > 0)
                log_info("vsockmuxd: recovered %u VMs with %u processes from %s/" VMM_RECORD_DIR
                         " (%u exits found lost; %u records unreadable, %u refused)",
                         sum.vms, sum.processes, m->cfg.state_dir, sum.lost, sum.bad, sum.failed);
        return 0;
}
