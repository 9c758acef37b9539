/* daemon/restore.c: restore on the destination: check, then re-listen, re-adopt and resume. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/exec-id.h"
#include "daemon/savestate.h"
#include "daemon/vmm-internal.h"
#include "util/log.h"

static const char *const kind_names[_VMM_STREAM_KIND_MAX] = { "stdin", "stdout", "stderr" };

static const Vsockmux__State__Process *saved_process(const Vsockmux__State__Vm *vm, uint32_t pid)
{
        for (size_t i = 0; i < vm->n_processes; i++)
                if (vm->processes[i]->pid == pid)
                        return vm->processes[i];
        return NULL;
}

static const Vsockmux__State__Stream *saved_stream(const Vsockmux__State__Process *p, enum vmm_stream_kind k)
{
        for (size_t i = 0; i < p->n_streams; i++)
                if ((int)p->streams[i]->kind == (int)k + 1)
                        return p->streams[i];
        return NULL;
}

/* V3: endpoints that do not match the saved ports are refused before anything listens. */
static int restore_check_io(const Vsockmux__State__Vm *vm, const struct vmm_restore_io *io, size_t n_io, char *err,
                            size_t errlen)
{
        for (size_t i = 0; i < n_io; i++) {
                const Vsockmux__State__Process *p = saved_process(vm, io[i].pid);

                if (io[i].pid == 0)
                        continue;       /* rights only, for the processes no entry names */
                if (!p) {
                        snprintf(err, errlen, "--io names pid %u, which the saved state does not hold", io[i].pid);
                        return -ENOENT;
                }
                for (size_t j = 0; j < i; j++)
                        if (io[j].pid == io[i].pid) {
                                snprintf(err, errlen, "--io names pid %u twice", io[i].pid);
                                return -EINVAL;
                        }
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        const Vsockmux__State__Stream *st;

                        if (!io[i].path[k] || !io[i].path[k][0])
                                continue;
                        st = saved_stream(p, k);
                        if (!st) {
                                snprintf(err, errlen, "pid %u had no %s stream when saved, but --io gives it one",
                                         io[i].pid, kind_names[k]);
                                return -EINVAL;
                        }
                        if (st->eof && k != VMM_STDIN) {
                                snprintf(err, errlen, "pid %u's %s had reached EOF when saved; nothing would reach %s",
                                         io[i].pid, kind_names[k], io[i].path[k]);
                                return -EINVAL;
                        }
                }
        }
        return 0;
}

/* The entry naming pid, else the one with pid 0 (the client's rights for every other process). */
static const struct vmm_restore_io *restore_io_for(const struct vmm_restore_io *io, size_t n_io, uint32_t pid)
{
        const struct vmm_restore_io *fallback = NULL;

        for (size_t i = 0; i < n_io; i++) {
                if (io[i].pid == pid)
                        return &io[i];
                if (io[i].pid == 0)
                        fallback = &io[i];
        }
        return fallback;
}

/* A k8s-file log comes back at its saved path unless the client names stdout/stderr endpoints. */
static const char *restore_log_path(const Vsockmux__State__Process *sp, const struct vmm_restore_io *io)
{
        if (!sp->log_path[0])
                return NULL;
        if (io && ((io->path[VMM_STDOUT] && io->path[VMM_STDOUT][0]) || (io->path[VMM_STDERR] && io->path[VMM_STDERR][0])))
                return NULL;
        return sp->log_path;
}

static int restore_process(struct vmm_vm *vm, const Vsockmux__State__Process *sp, const struct vmm_restore_io *io,
                           char *err, size_t errlen, struct vmm_process **ret)
{
        struct vmm_exec_params params = {
                .container_id = sp->container_id,
                /* Before exec ids were saved it was empty: the restored process gets a new one. */
                .exec_id = exec_id_is_valid(sp->exec_id) ? sp->exec_id : NULL,
                .argv = (const char *const *)sp->argv,
                .n_argv = sp->n_argv,
                .stdin_path = io ? io->path[VMM_STDIN] : NULL,
                .stdout_path = io ? io->path[VMM_STDOUT] : NULL,
                .stderr_path = io ? io->path[VMM_STDERR] : NULL,
                .creds = io ? io->creds : NULL,
                .terminal = sp->terminal,
                .console_height = (uint16_t)sp->console_height,
                .console_width = (uint16_t)sp->console_width,
                .log_k8s_path = restore_log_path(sp, io),
        };
        static const char *const unknown_argv[] = { "?" };
        struct vmm_process *p;
        int r;

        if (params.n_argv == 0) {
                params.argv = unknown_argv;
                params.n_argv = 1;
        }
        r = vmm_process_new(vm, &params, &p);
        if (r < 0) {
                snprintf(err, errlen, "pid %u: %s", sp->pid, strerror(-r));
                return r;
        }
        p->pid = sp->pid;
        p->state = VMM_PROCESS_RUNNING;
        p->container_init = sp->container_init;
        r = vmm_process_open_endpoints(p, &params, err, errlen);
        if (r < 0) {
                vmm_process_free(p);
                return r;
        }
        r = vmm_process_attach_open(p, ++vm->exec_seq);
        if (r < 0)
                log_warn("vm %s: process %u: no attach socket: %s", vm->name, p->pid, strerror(-r));
        for (size_t i = 0; i < sp->n_streams; i++) {
                const Vsockmux__State__Stream *st = sp->streams[i];
                struct vmm_stream *s = &p->streams[st->kind - 1];

                s->port = st->port;
                s->counters = (struct relay_stream_counters){
                        .rx_guest = st->rx_guest,
                        .tx_guest = st->tx_guest,
                        .rx_endpoint = st->rx_endpoint,
                        .tx_endpoint = st->tx_endpoint,
                };
                s->done = st->eof;
                r = ports_reserve(vm->ports, st->port);
                if (r < 0) {
                        snprintf(err, errlen, "pid %u: cannot reserve port 0x%08x: %s", sp->pid, st->port,
                                 strerror(-r));
                        vmm_process_free(p);
                        return r;
                }
        }
        if (sp->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED)
                vmm_process_set_exit(p, VMM_EXIT_EXITED, sp->exit_code, "");
        else if (sp->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_SIGNALED)
                vmm_process_set_exit(p, VMM_EXIT_SIGNALED, sp->exit_signal,
                                     sp->exit_message[0] ? sp->exit_message : "killed by a signal");
        else if (sp->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_LOST)
                vmm_process_set_exit(p, VMM_EXIT_LOST, -1, "exit status lost");
        *ret = p;
        return 0;
}

/* Everything that can fail for a reason the caller can fix happens before the bridge listens. */
static int restore_build(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, const struct vmm_restore_io *io,
                         size_t n_io, char *err, size_t errlen)
{
        int r;

        /* The floor may already be higher: a VM removed from this transport handed out more. */
        r = sv->port_floor > ports_floor(vm->ports) ? ports_raise_floor(vm->ports, sv->port_floor) : 0;
        if (r < 0) {
                snprintf(err, errlen, "cannot raise the port floor to 0x%08x", sv->port_floor);
                return r;
        }
        for (size_t i = 0; i < sv->n_processes; i++) {
                struct vmm_process *p;

                r = restore_process(vm, sv->processes[i], restore_io_for(io, n_io, sv->processes[i]->pid), err,
                                    errlen, &p);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Pre-registers the waits and listens: from here on the guest may come back at any moment. */
static int restore_adopt(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, char *err, size_t errlen)
{
        struct list_head *pos;
        size_t i = 0;
        int r;

        r = bridge_host_seed_next_id(vm->bridge, sv->bridge_next_id);
        if (r < 0) {
                snprintf(err, errlen, "cannot seed the bridge call ids at %llu", (unsigned long long)sv->bridge_next_id);
                return r;
        }
        /* Restored ids stay below new ones; replies that beat the re-registration are held (V1). */
        bridge_host_set_migrating(vm->bridge, true);
        bridge_host_begin_resume_window(vm->bridge);
        for (i = 0; i < sv->n_containers; i++) {
                r = vmm_container_track(vm, sv->containers[i]);
                if (r < 0) {
                        snprintf(err, errlen, "cannot watch container %s: %s", sv->containers[i], strerror(-r));
                        return r;
                }
        }
        i = 0;
        list_for_each(pos, &vm->processes) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);
                const Vsockmux__State__Process *sp = sv->processes[i++];

                if (sp->wait_call_id != 0 && !p->exit_known) {
                        r = bridge_host_preregister_wait(vm->bridge, sp->wait_call_id, p->container_id, p->pid,
                                                         vmm_process_on_wait, p);
                        if (r < 0) {
                                snprintf(err, errlen, "pid %u: cannot adopt wait %llu: %s", p->pid,
                                         (unsigned long long)sp->wait_call_id, strerror(-r));
                                return r;
                        }
                        p->wait_call_id = sp->wait_call_id;
                        p->wait_outstanding = true;
                }
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        struct vmm_stream *s = &p->streams[k];

                        if (s->port == 0 || s->done)
                                continue;
                        s->no_redial = k != VMM_STDIN && !vmm_stream_redial_expected(s);
                        r = vmm_stream_listen(s);
                        if (r < 0) {
                                snprintf(err, errlen, "pid %u: cannot listen on %s port 0x%08x: %s", p->pid,
                                         kind_names[k], s->port, strerror(-r));
                                return r;
                        }
                }
        }
        return 0;
}

int vmm_restore(struct vmm *m, const uint8_t *blob, size_t len, const char *name, const struct relay_transport *t,
                const struct vmm_restore_io *io, size_t n_io, struct vmm_vm **ret, char *err, size_t errlen)
{
        _cleanup_(savestate_msg_freep) savestate_msg *s = NULL;
        const Vsockmux__State__Vm *sv;
        struct relay_transport transport = { 0 };
        struct vmm_vm *vm = NULL;
        struct list_head *pos;
        uint64_t start_ns = relay_now_ns(m->relay);
        int r;

        r = savestate_decode(blob, len, &s, err, errlen);
        if (r < 0)
                return r;
        sv = s->vm;
        if (!name || !name[0])
                name = sv->name;
        if (t)
                transport = *t;
        else if (sv->transport->kind == VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK) {
                transport.kind = RELAY_TRANSPORT_HVSOCK;
                snprintf(transport.uds_path, sizeof(transport.uds_path), "%s", sv->transport->uds_path);
        } else {
                transport.kind = RELAY_TRANSPORT_VSOCK;
                transport.cid = sv->transport->cid;
        }
        if (vmm_vm_find(m, name)) {
                snprintf(err, errlen, "VM '%s' exists already on this daemon", name);
                return -EEXIST;
        }
        r = restore_check_io(sv, io, n_io, err, errlen);
        if (r < 0)
                return r;
        r = vmm_vm_alloc(m, name, &transport, &vm);
        if (r == -EPERM) {
                snprintf(err, errlen, "hvsock path %s is not a plain path inside the daemon's --hvsock-root "
                         "(default: its --state-dir)",
                         transport.uds_path);
                return r;
        }
        if (r < 0) {
                snprintf(err, errlen, "cannot create VM '%s': %s", name, strerror(-r));
                return r;
        }
        vm->stdio_resume = sv->stdio_resume;
        /* Fencing, before anything listens: not while another daemon serves the transport, and
         * never a state older than one restored there since (a state from before generations, 0,
         * is not checked). */
        r = vmm_vm_fence_take(vm, err, errlen);
        if (r >= 0 && sv->generation)
                r = vmm_vm_fence_check(vm, sv->generation, err, errlen);
        if (r < 0) {
                vmm_vm_discard(vm);
                return r;
        }
        r = restore_build(vm, sv, io, n_io, err, errlen);
        if (r >= 0) {
                r = vmm_vm_start_bridge(vm);
                if (r < 0)
                        snprintf(err, errlen, "cannot listen for the guest's bridge: %s", strerror(-r));
        }
        if (r >= 0)
                r = restore_adopt(vm, sv, err, errlen);
        /* Last: the state is ours now, and the source's copy of it stale. */
        if (r >= 0) {
                r = vmm_vm_fence_own(vm, MAX(sv->generation, vmm_vm_fence_generation(vm)) + 1);
                if (r < 0)
                        snprintf(err, errlen, "cannot record the new owner's generation: %s", strerror(-r));
        }
        if (r < 0) {
                vmm_vm_discard(vm);
                return r;
        }
        vm->reattaching = true;
        vm->restore_start_ns = start_ns ?: 1;
        /* Processes that had finished before the save are reported as they were. */
        list_for_each(pos, &vm->processes)
                vmm_process_maybe_report(list_entry(pos, struct vmm_process, link));
        vmm_vm_publish(vm);
        log_info("vm %s: restored %zu processes (port floor 0x%08x, next call id %llu); waiting for the guest",
                 name, sv->n_processes, sv->port_floor, (unsigned long long)sv->bridge_next_id);
        vmm_emit(m, VMM_EVENT_MIGRATION_STARTED, name, NULL, 0, NULL, "restore");
        if (ret)
                *ret = vm;
        return 0;
}
