/* daemon/service.c: the vsockmux.v1.Control methods, each a thin adapter from protobuf to vmm. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "daemon/event-ring.h"
#include "daemon/exec-id.h"
#include "daemon/log-k8s.h"
#include "daemon/metrics.h"
#include "daemon/migrate.h"
#include "daemon/service.h"
#include "daemon/upgrade.h"
#include "util/list.h"
#include "util/log.h"

struct subscriber {
        struct list_head link;
        struct service *service;
        struct control_call *call;
        char *vm;                       /* NULL: every VM */
        uint64_t lost_first, lost_last; /* events its full output queue dropped, not yet told; 0: none */
};

struct service {
        struct relay *relay;
        struct vmm *vmm;
        struct control_server *server;
        struct list_head subscribers;
        struct upgrade *upgrade;   /* borrowed; NULL: Upgrade answers UNAVAILABLE */
        struct event_ring *events; /* the recent events, for Events replay */
        struct migrations *migrations;
};

#define REQ(type, request) const type *req = (const type *)(request)

static struct vmm_vm *service_vm(struct control_call *call, struct service *s, const char *name)
{
        struct vmm_vm *vm = vmm_vm_find(s->vmm, name);

        if (!vm)
                control_call_fail(call, CONTROL_CODE_NOT_FOUND, "unknown VM '%s'", name ? name : "");
        return vm;
}

/* The process a request names by exec id (when set) or pid; NULL after failing the call NOT_FOUND. */
static struct vmm_process *service_process(struct control_call *call, struct vmm_vm *vm, uint32_t pid,
                                           const char *exec_id)
{
        struct vmm_process *p = exec_id && exec_id[0] ? vmm_process_find_id(vm, exec_id) : vmm_process_find(vm, pid);

        if (p)
                return p;
        if (exec_id && exec_id[0])
                control_call_fail(call, CONTROL_CODE_NOT_FOUND, "no exec id '%s' in VM %s", exec_id, vmm_vm_name(vm));
        else
                control_call_fail(call, CONTROL_CODE_NOT_FOUND, "no process %u in VM %s", pid, vmm_vm_name(vm));
        return NULL;
}

/* A request's VM, then its process (exec id or pid); NULL after failing the call NOT_FOUND. */
static struct vmm_process *service_target(struct control_call *call, struct service *s, const char *vm_name,
                                          uint32_t pid, const char *exec_id)
{
        struct vmm_vm *vm = service_vm(call, s, vm_name);

        return vm ? service_process(call, vm, pid, exec_id) : NULL;
}

static void exit_to_proto(const struct vmm_exit *e, Vsockmux__V1__ExitStatus *ret)
{
        vsockmux__v1__exit_status__init(ret);
        switch (e->kind) {
        case VMM_EXIT_EXITED:
                ret->kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED;
                ret->code = e->code;
                break;
        case VMM_EXIT_SIGNALED:
                ret->kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_SIGNALED;
                ret->signal = e->code; /* 0: the guest did not name it */
                break;
        default: ret->kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_LOST; break;
        }
        ret->message = (char *)e->message;
}

/* ---- VMs ---- */

/* The guest's transport from a request's hvsock path or CID; -EINVAL with the reason in err. The
 * path leaves room for the "_<port>" every listener appends (ten digits at most). */
static int service_transport_parse(const char *hvsock_path, bool has_cid, uint32_t cid, struct relay_transport *ret,
                                   struct vmm_error *err)
{
        struct relay_transport t = { 0 };
        size_t max = sizeof(t.uds_path) - sizeof("_4294967295");

        if (hvsock_path) {
                if (hvsock_path[0] != '/' || strlen(hvsock_path) > max) {
                        return vmm_error_set(err, -EINVAL,
                                             "hvsock path must be absolute and at most %zu bytes "
                                             "(sun_path less the \"_<port>\" suffix)",
                                             max);
                }
                t.kind = RELAY_TRANSPORT_HVSOCK;
                memcpy(t.uds_path, hvsock_path, strlen(hvsock_path) + 1);
        } else if (has_cid) {
                if (cid < 3 || cid == UINT32_MAX) {
                        return vmm_error_set(err, -EINVAL, "CID %u is not a guest CID", cid);
                }
                t.kind = RELAY_TRANSPORT_VSOCK;
                t.cid = cid;
        } else {
                return vmm_error_set(err, -EINVAL, "give --hvsock PATH or --cid CID");
        }
        *ret = t;
        return 0;
}

static int on_vm_add(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__VmAddRequest, request);
        struct service *s = userdata;
        struct relay_transport t = { 0 };
        Vsockmux__V1__VmAddResponse resp = VSOCKMUX__V1__VM_ADD_RESPONSE__INIT;
        struct vmm_error err = {};
        int r;

        r = service_transport_parse(
                req->transport_case == VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_HVSOCK_PATH ? req->hvsock_path : NULL,
                req->transport_case == VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_CID, req->cid, &t, &err);
        if (r < 0)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "%s", err.message);

        r = vmm_vm_add(s->vmm, req->name, &t, NULL);
        if (r == -EEXIST)
                return control_call_fail(call, CONTROL_CODE_ALREADY_EXISTS, "VM '%s' exists already", req->name);
        if (r == -EINVAL)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "VM name must be 1-%u characters of [A-Za-z0-9._-]", VMM_NAME_MAX);
        if (r == -EUSERS)
                return control_call_fail(call, CONTROL_CODE_RESOURCE_EXHAUSTED,
                                         "vsockmuxd has %u VMs, the limit (vsockmuxd --max-vms)", vmm_vm_count(s->vmm));
        if (r == -EPERM)
                return control_call_fail(call, CONTROL_CODE_PERMISSION_DENIED,
                                         "hvsock path %s is not a plain path inside the daemon's --hvsock-root "
                                         "(default: its --state-dir)",
                                         t.uds_path);
        if (r == -EBUSY)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION,
                                         "another vsockmuxd serves this VM's transport (its lock file names the "
                                         "pid); one VM has one owner");
        if (r < 0)
                return control_call_fail_errno(call, r, "cannot listen for the guest's bridge");
        return control_call_reply(call, &resp.base);
}

static void on_vm_removed(int error, const char *message, void *userdata)
{
        struct control_call *call = userdata;
        Vsockmux__V1__VmRemoveResponse resp = VSOCKMUX__V1__VM_REMOVE_RESPONSE__INIT;

        if (error < 0)
                control_call_fail(call, control_code_from_errno(error), "%s", message);
        else
                control_call_reply(call, &resp.base);
}

/* Answered once the VM is gone: after hcsshim's guest answered its reconnect probes, which it
 * would panic at with no connection up (vmm_vm_remove_when_answered()). */
static int on_vm_remove(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__VmRemoveRequest, request);
        struct service *s = userdata;
        int r;

        r = vmm_vm_remove_when_answered(s->vmm, req->name, on_vm_removed, call);
        if (r == -ENOENT)
                return control_call_fail(call, CONTROL_CODE_NOT_FOUND, "unknown VM '%s'", req->name);
        if (r < 0)
                return control_call_fail_errno(call, r, "cannot remove the VM");
        return 0;
}

static Vsockmux__V1__BridgeState bridge_state_to_proto(const struct vmm_vm *vm)
{
        if (vmm_vm_is_migrating(vm))
                return VSOCKMUX__V1__BRIDGE_STATE__BRIDGE_STATE_MIGRATING;
        if (vmm_vm_bridge_state(vm) == BRIDGE_CONN_CONNECTED)
                return VSOCKMUX__V1__BRIDGE_STATE__BRIDGE_STATE_CONNECTED;
        return VSOCKMUX__V1__BRIDGE_STATE__BRIDGE_STATE_WAITING;
}

static int on_vm_list(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        struct service *s = userdata;
        Vsockmux__V1__VmListResponse resp = VSOCKMUX__V1__VM_LIST_RESPONSE__INIT;
        unsigned n = vmm_vm_count(s->vmm), i = 0;
        _cleanup_free_ Vsockmux__V1__VmInfo *infos = calloc(n ? n : 1, sizeof(*infos));
        _cleanup_free_ Vsockmux__V1__VmInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));

        if (!infos || !ptrs)
                return -ENOMEM;
        for (struct vmm_vm *vm = vmm_vm_next(s->vmm, NULL); vm; vm = vmm_vm_next(s->vmm, vm), i++) {
                const struct relay_transport *t = vmm_vm_transport(vm);
                Vsockmux__V1__VmInfo *info = &infos[i];

                vsockmux__v1__vm_info__init(info);
                info->name = (char *)vmm_vm_name(vm);
                if (t->kind == RELAY_TRANSPORT_HVSOCK) {
                        info->transport = VSOCKMUX__V1__TRANSPORT__TRANSPORT_HVSOCK;
                        info->hvsock_path = (char *)t->uds_path;
                } else {
                        info->transport = VSOCKMUX__V1__TRANSPORT__TRANSPORT_VSOCK;
                        info->cid = t->cid;
                }
                info->bridge_state = bridge_state_to_proto(vm);
                info->process_count = vmm_vm_process_count(vm);
                info->container_count = vmm_vm_container_count(vm);
                ptrs[i] = info;
        }
        resp.n_vms = i;
        resp.vms = ptrs;
        return control_call_reply(call, &resp.base);
}

/* ---- containers ---- */

static void reply_done(int error, const char *message, void *userdata, const ProtobufCMessage *ok)
{
        struct control_call *call = userdata;

        if (error < 0)
                control_call_fail(call, control_code_from_errno(error), "%s", message);
        else
                control_call_reply(call, ok);
}

static void on_container_created(int error, const char *message, void *userdata)
{
        Vsockmux__V1__ContainerCreateResponse resp = VSOCKMUX__V1__CONTAINER_CREATE_RESPONSE__INIT;

        reply_done(error, message, userdata, &resp.base);
}

static void on_container_shut_down(int error, const char *message, void *userdata)
{
        Vsockmux__V1__ContainerShutdownResponse resp = VSOCKMUX__V1__CONTAINER_SHUTDOWN_RESPONSE__INIT;

        reply_done(error, message, userdata, &resp.base);
}

static int fail_vm_busy(struct control_call *call, struct vmm_vm *vm, int r, const char *what)
{
        if (r == -EBUSY)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "VM is migrating");
        if (r == -ENOTCONN)
                return control_call_fail(call, CONTROL_CODE_UNAVAILABLE, "VM %s: the guest's bridge is not connected",
                                         vmm_vm_name(vm));
        return control_call_fail_errno(call, r, what);
}

static int on_container_create(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__ContainerCreateRequest, request);
        struct vmm_vm *vm = service_vm(call, userdata, req->vm);
        int r;

        if (!vm)
                return 0;
        r = vmm_container_create(vm, req->id, req->config_json, on_container_created, call);
        if (r == -EEXIST)
                return control_call_fail(call, CONTROL_CODE_ALREADY_EXISTS, "container '%s' exists", req->id);
        if (r == -EINVAL)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "container id must be 1-256 bytes");
        return r < 0 ? fail_vm_busy(call, vm, r, "create container") : 0;
}

static int on_container_shutdown(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__ContainerShutdownRequest, request);
        struct vmm_vm *vm = service_vm(call, userdata, req->vm);
        int r;

        if (!vm)
                return 0;
        r = vmm_container_shutdown(vm, req->id, req->force, on_container_shut_down, call);
        return r < 0 ? fail_vm_busy(call, vm, r, "shut down container") : 0;
}

/* ---- exec and wait ---- */

/* One pending Exec or Wait: it lives until both the call and the vmm are done with it. */
struct exit_watch {
        struct control_call *call; /* NULL once completed or cancelled */
        struct vmm_waiter *waiter;
        struct vmm_starter *starter; /* exec: until the vmm's started callback runs */
        uint32_t pid;
        char exec_id[EXEC_ID_MAX + 1];
        bool detach;
        bool is_exec;
        bool started; /* exec: the vmm's started callback ran */
};

static void exit_watch_reply(struct exit_watch *w, const struct vmm_exit *exit)
{
        Vsockmux__V1__ExitStatus st;

        exit_to_proto(exit, &st);
        if (w->is_exec) {
                Vsockmux__V1__ExecResponse resp = VSOCKMUX__V1__EXEC_RESPONSE__INIT;

                resp.pid = w->pid;
                resp.exit = &st;
                resp.exec_id = w->exec_id;
                control_call_reply(w->call, &resp.base);
        } else {
                Vsockmux__V1__WaitResponse resp = VSOCKMUX__V1__WAIT_RESPONSE__INIT;

                resp.exit = &st;
                control_call_reply(w->call, &resp.base);
        }
        w->call = NULL;
}

static void exit_watch_on_exit(struct vmm_process *p, const struct vmm_exit *exit, void *userdata)
{
        struct exit_watch *w = userdata;

        w->waiter = NULL; /* the vmm frees its waiter after this call */
        /* A recorded stop: the process goes on, the exit is not known here; a restart knows it. */
        if (w->call && !exit) {
                control_call_fail(w->call, CONTROL_CODE_UNAVAILABLE, "%s", VMM_STOPPED_MESSAGE);
                w->call = NULL;
        }
        if (w->call)
                exit_watch_reply(w, exit);
        free(w);
}

static void exit_watch_on_cancel(struct control_call *call, void *userdata)
{
        struct exit_watch *w = userdata;

        control_call_fail(call, CONTROL_CODE_CANCELLED, "client gone");
        w->call = NULL;
        if (w->waiter) {
                w->waiter = vmm_waiter_free(w->waiter);
                free(w);
        } else if (w->is_exec && !w->started) {
                /* An exec that has not reached the guest yet is cancelled with it. */
                w->starter = vmm_starter_cancel(w->starter);
                free(w);
        }
}

static int exit_watch_follow(struct exit_watch *w, struct vmm_process *p)
{
        struct vmm_exit exit;
        int r = vmm_process_wait(p, exit_watch_on_exit, w, &w->waiter, &exit);

        if (r == 1) {
                exit_watch_reply(w, &exit);
                free(w);
        }
        return r < 0 ? r : 0;
}

static void on_exec_started(struct vmm_process *p, int error, const char *message, void *userdata)
{
        struct exit_watch *w = userdata;
        struct vmm_process_info info;
        int r;

        w->started = true;
        w->starter = NULL; /* the vmm frees it after this call */
        if (!w->call) {
                free(w);
                return;
        }
        if (error < 0) {
                control_call_fail(w->call,
                                  error == -ETIMEDOUT ? CONTROL_CODE_DEADLINE_EXCEEDED : control_code_from_errno(error),
                                  "exec failed: %s", message);
                free(w);
                return;
        }
        vmm_process_get_info(p, &info);
        w->pid = info.pid;
        if (w->detach) {
                Vsockmux__V1__ExecResponse resp = VSOCKMUX__V1__EXEC_RESPONSE__INIT;

                resp.pid = info.pid;
                resp.exec_id = w->exec_id;
                control_call_reply(w->call, &resp.base);
                free(w);
                return;
        }
        r = exit_watch_follow(w, p);
        if (r < 0) {
                control_call_fail_errno(w->call, r, "wait");
                free(w);
        }
}

/* The control client's credentials: endpoints are opened with its rights, not the daemon's. */
static struct opener_creds service_peer_creds(const struct control_call *call)
{
        const struct ucred *peer = control_call_peer(call);
        struct opener_creds c = { .uid = peer->uid, .gid = peer->gid };

        c.groups = control_call_peer_groups(call, &c.n_groups);
        return c;
}

static int on_exec(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__ExecRequest, request);
        struct vmm_vm *vm;
        struct vmm_exec_params params = {
                .container_id = req->container_id,
                .argv = (const char *const *)req->argv,
                .n_argv = req->n_argv,
                .env = (const char *const *)req->env,
                .n_env = req->n_env,
                .cwd = req->cwd,
                .stdin_path = req->stdin_path,
                .stdout_path = req->stdout_path,
                .stderr_path = req->stderr_path,
                .connect_timeout_ns = (uint64_t)req->connect_timeout_ms * 1000000ull,
                .terminal = req->terminal,
                .console_height = (uint16_t)req->console_height,
                .console_width = (uint16_t)req->console_width,
                .exec_id = req->exec_id,
                .interactive = req->interactive,
                .stdin_once = req->stdin_once,
                .keep_stderr = req->keep_stderr,
                .log_size_max = req->log_size_max,
                .log_max_files = req->log_max_files,
        };
        struct opener_creds creds = service_peer_creds(call);
        struct vmm_process *p;
        struct exit_watch *w;
        struct vmm_error err = {};
        bool detach = req->detach;
        int r;

        if (req->console_height > UINT16_MAX || req->console_width > UINT16_MAX)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "a console is at most 65535 x 65535");
        if (req->interactive && req->stdin_path[0])
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "interactive takes stdin from attach clients: give no stdin_path with it");
        if (req->log_max_files > LOG_K8S_MAX_FILES)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "log_max_files is at most %u",
                                         LOG_K8S_MAX_FILES);
        if (req->log_size_max > LOG_K8S_MAX_SIZE)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "log_size_max is at most %llu bytes",
                                         (unsigned long long)LOG_K8S_MAX_SIZE);
        if (req->keep_stderr && (req->terminal || req->stderr_path[0]))
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "keep_stderr keeps a stderr without stderr_path: not with terminal or "
                                         "stderr_path");
        if (req->stdin_once && !req->interactive)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "stdin_once applies to an interactive exec's stdin (attach clients)");
        if (strncmp(req->log, "k8s-file:", 9) == 0 && req->log[9] == '/')
                params.log_k8s_path = req->log + 9;
        else if (strcmp(req->log, "journald") == 0)
                params.log_journald = true;
        else if (strcmp(req->log, "passthrough") == 0)
                params.log_passthrough = true;
        else if (req->log[0] && strcmp(req->log, "passthrough") != 0)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "log must be k8s-file:/ABSOLUTE/PATH, journald or passthrough, not '%s'",
                                         req->log);
        /* A failed lookup completes the call, and the request goes with it. */
        vm = service_vm(call, userdata, req->vm);
        if (!vm)
                return 0;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->call = call;
        w->detach = detach;
        w->is_exec = true;
        params.creds = &creds;
        /* The same exec id again (a client retrying after a lost reply or a deadline): the same
         * process, never a second one. */
        p = vmm_process_find_id(vm, req->exec_id);
        if (p) {
                snprintf(w->exec_id, sizeof(w->exec_id), "%s", req->exec_id);
                r = vmm_process_when_started(p, on_exec_started, w, &w->starter);
                if (r == 1)
                        on_exec_started(p, 0, "", w);
                else if (r < 0)
                        free(w);
                else
                        control_call_set_cancel(call, exit_watch_on_cancel, w);
                return r < 0 ? r : 0;
        }
        r = vmm_exec_start(vm, &params, on_exec_started, w, &w->starter, &err);
        if (r < 0) {
                free(w);
                if (r == -EBUSY)
                        return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "%s", err.message);
                return control_call_fail(call, control_code_from_errno(r), "exec: %s", err.message);
        }
        snprintf(w->exec_id, sizeof(w->exec_id), "%s", vmm_process_exec_id(vmm_starter_process(w->starter)));
        control_call_set_cancel(call, exit_watch_on_cancel, w);
        return 0;
}

static int on_wait(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__WaitRequest, request);
        struct vmm_process *p = service_target(call, userdata, req->vm, req->pid, req->exec_id);
        struct exit_watch *w;
        struct vmm_exit exit;
        int r;

        if (!p)
                return 0;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->call = call;
        w->pid = vmm_process_pid(p);
        w->started = true;
        r = vmm_process_wait(p, exit_watch_on_exit, w, &w->waiter, &exit);
        if (r == 1) {
                exit_watch_reply(w, &exit);
                free(w);
                return 0;
        }
        if (r < 0) {
                free(w);
                return r;
        }
        control_call_set_cancel(call, exit_watch_on_cancel, w);
        return 0;
}

/* ---- ps, kill, attach ---- */

/* The arrays a Ps reply points into, one slot per process. */
struct ps_reply {
        Vsockmux__V1__ProcessInfo *infos;
        Vsockmux__V1__ProcessInfo **ptrs;
        Vsockmux__V1__StreamCounters *counters;
        Vsockmux__V1__StreamCounters *dropped;
        Vsockmux__V1__ExitStatus *exits;
        struct vmm_exit *exit_copies; /* the messages the reply points into */
        size_t n, cap;
};

static void ps_reply_done(struct ps_reply *r)
{
        free(r->infos);
        free(r->ptrs);
        free(r->counters);
        free(r->dropped);
        free(r->exits);
        free(r->exit_copies);
}

static int ps_reply_alloc(struct ps_reply *r, size_t cap)
{
        r->infos = calloc(cap + 1, sizeof(*r->infos));
        r->ptrs = calloc(cap + 1, sizeof(*r->ptrs));
        r->counters = calloc(cap + 1, sizeof(*r->counters));
        r->exits = calloc(cap + 1, sizeof(*r->exits));
        r->dropped = calloc(cap + 1, sizeof(*r->dropped));
        r->exit_copies = calloc(cap + 1, sizeof(*r->exit_copies));
        if (!r->infos || !r->ptrs || !r->counters || !r->exits || !r->dropped || !r->exit_copies)
                return -ENOMEM;
        r->cap = cap;
        return 0;
}

/* Fills the next slot with p, which runs in vm; the strings stay vm's and p's. */
static void ps_reply_add(struct ps_reply *r, const struct vmm_vm *vm, const struct vmm_process *p)
{
        size_t i = r->n++;
        struct vmm_process_info pi;
        Vsockmux__V1__ProcessInfo *o = &r->infos[i];

        vmm_process_get_info(p, &pi);
        vsockmux__v1__process_info__init(o);
        vsockmux__v1__stream_counters__init(&r->counters[i]);
        o->pid = pi.pid;
        o->exec_id = (char *)pi.exec_id;
        o->container_id = (char *)pi.container_id;
        o->argv = (char **)pi.argv;
        o->n_argv = pi.n_argv;
        o->state = (Vsockmux__V1__ProcessState)(pi.state == VMM_PROCESS_PENDING ? VMM_PROCESS_STARTING : pi.state);
        o->output_lost_on_move = pi.output_lost_on_move;
        o->stdin_port = pi.ports[VMM_STDIN];
        o->stdout_port = pi.ports[VMM_STDOUT];
        o->stderr_port = pi.ports[VMM_STDERR];
        o->wait_call_id = pi.wait_call_id;
        r->counters[i].stdin_bytes = pi.bytes[VMM_STDIN];
        r->counters[i].stdout_bytes = pi.bytes[VMM_STDOUT];
        r->counters[i].stderr_bytes = pi.bytes[VMM_STDERR];
        o->bytes = &r->counters[i];
        vsockmux__v1__stream_counters__init(&r->dropped[i]);
        r->dropped[i].stdin_bytes = pi.dropped[VMM_STDIN];
        r->dropped[i].stdout_bytes = pi.dropped[VMM_STDOUT];
        r->dropped[i].stderr_bytes = pi.dropped[VMM_STDERR];
        o->dropped = &r->dropped[i];
        /* strerror()'s text is static: it outlives the reply. */
        o->stdin_error = (char *)(pi.stream_error[VMM_STDIN] < 0 ? strerror(-pi.stream_error[VMM_STDIN]) : "");
        o->stdout_error = (char *)(pi.stream_error[VMM_STDOUT] < 0 ? strerror(-pi.stream_error[VMM_STDOUT]) : "");
        o->stderr_error = (char *)(pi.stream_error[VMM_STDERR] < 0 ? strerror(-pi.stream_error[VMM_STDERR]) : "");
        if (pi.exit_known) {
                r->exit_copies[i] = pi.exit;
                exit_to_proto(&r->exit_copies[i], &r->exits[i]);
                o->exit = &r->exits[i];
        }
        o->attach_socket = (char *)(pi.attach_path ? pi.attach_path : "");
        o->terminal = pi.terminal;
        o->vm = (char *)vmm_vm_name(vm);
        o->started_ns = pi.started_ns;
        o->exited_ns = pi.exited_ns;
        r->ptrs[i] = o;
}

/* The next VM a Ps lists: only, when it names one, else every VM in turn. */
static struct vmm_vm *ps_next_vm(struct vmm *m, struct vmm_vm *only, struct vmm_vm *prev)
{
        if (only)
                return prev ? NULL : only;
        return vmm_vm_next(m, prev);
}

static int on_ps(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__PsRequest, request);
        struct service *s = userdata;
        Vsockmux__V1__PsResponse resp = VSOCKMUX__V1__PS_RESPONSE__INIT;
        _cleanup_(ps_reply_done) struct ps_reply reply = {};
        struct vmm_vm *only = NULL;
        size_t n = 0;
        int r;

        if (req->all && req->vm && req->vm[0])
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "Ps: 'all' lists every VM; it takes no VM name (got '%s')", req->vm);
        if (!req->all) {
                only = service_vm(call, s, req->vm);
                if (!only)
                        return 0;
        }
        for (struct vmm_vm *vm = ps_next_vm(s->vmm, only, NULL); vm; vm = ps_next_vm(s->vmm, only, vm))
                n += vmm_vm_process_count(vm);
        r = ps_reply_alloc(&reply, n);
        if (r < 0)
                return r;
        for (struct vmm_vm *vm = ps_next_vm(s->vmm, only, NULL); vm; vm = ps_next_vm(s->vmm, only, vm))
                for (struct vmm_process *p = vmm_process_next(vm, NULL); p && reply.n < reply.cap;
                     p = vmm_process_next(vm, p))
                        ps_reply_add(&reply, vm, p);
        resp.processes = reply.ptrs;
        resp.n_processes = reply.n;
        return control_call_reply(call, &resp.base);
}

static void on_killed(int error, const char *message, void *userdata)
{
        struct control_call *call = userdata;
        Vsockmux__V1__KillResponse resp = VSOCKMUX__V1__KILL_RESPONSE__INIT;

        if (error < 0) {
                control_call_fail(call, control_code_from_errno(error), "kill: %s", message);
                return;
        }
        if (message && strcmp(message, "already gone") == 0) {
                resp.not_found = true;
                resp.note = (char *)"process already gone";
        }
        control_call_reply(call, &resp.base);
}

static int on_kill(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__KillRequest, request);
        struct vmm_vm *vm = service_vm(call, userdata, req->vm);
        struct vmm_process *p;
        int r;

        if (!vm)
                return 0;
        if (req->signal < 0 || req->signal > 64)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "signal %d out of range 1-64",
                                         req->signal);
        p = service_process(call, vm, req->pid, req->exec_id);
        if (!p)
                return 0;
        if (vmm_process_pid(p) == 0)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION,
                                         "exec %s has not started yet: no pid to signal", req->exec_id);
        r = vmm_kill(vm, vmm_process_pid(p), req->signal ? req->signal : 15, on_killed, call);
        return r < 0 ? fail_vm_busy(call, vm, r, "kill") : 0;
}

static int on_attach(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__AttachRequest, request);
        struct vmm_process *p = service_target(call, userdata, req->vm, req->pid, req->exec_id);
        Vsockmux__V1__AttachResponse resp = VSOCKMUX__V1__ATTACH_RESPONSE__INIT;
        struct vmm_process_info pi;
        int r;

        if (!p)
                return 0;
        r = vmm_process_attach_listen(p);
        if (r < 0)
                return control_call_fail(call, CONTROL_CODE_UNAVAILABLE, "process %u has no attach socket: %s",
                                         req->pid, strerror(-r));
        vmm_process_get_info(p, &pi);
        /* The socket refuses a client over the cap too, silently: here the CLI can say why. */
        if (pi.attach_clients >= pi.attach_max_clients) {
                log_warn("vm %s: attach to process %u refused: %u clients, the limit", req->vm, req->pid,
                         pi.attach_clients);
                return control_call_fail(call, CONTROL_CODE_RESOURCE_EXHAUSTED,
                                         "process %u has %u attach clients, the limit (vsockmuxd --max-attach-clients)",
                                         req->pid, pi.attach_clients);
        }
        resp.socket_path = (char *)pi.attach_path;
        resp.terminal = pi.terminal;
        resp.pid = pi.pid;
        resp.stdin = pi.attach_stdin;
        return control_call_reply(call, &resp.base);
}

static int on_close_stdin(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__CloseStdinRequest, request);
        Vsockmux__V1__CloseStdinResponse resp = VSOCKMUX__V1__CLOSE_STDIN_RESPONSE__INIT;
        struct vmm_vm *vm = service_vm(call, userdata, req->vm);
        struct vmm_process *p;
        uint32_t pid;
        int r;

        if (!vm)
                return 0;
        p = service_process(call, vm, req->pid, req->exec_id);
        if (!p)
                return 0;
        pid = vmm_process_pid(p);
        if (pid == 0)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION,
                                         "exec %s has not started yet: no stdin to close", req->exec_id);
        r = vmm_close_stdin(vm, pid);
        if (r == -ENOENT)
                return control_call_fail(call, CONTROL_CODE_NOT_FOUND, "no process %u in VM %s", pid, req->vm);
        if (r == -ENOTCONN)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "process %u has no stdin", pid);
        if (r == -EBUSY)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "VM %s is being saved", req->vm);
        if (r < 0)
                return control_call_fail_errno(call, r, "close stdin");
        return control_call_reply(call, &resp.base);
}

static void on_resized(int error, const char *message, void *userdata)
{
        struct control_call *call = userdata;
        Vsockmux__V1__ResizeResponse resp = VSOCKMUX__V1__RESIZE_RESPONSE__INIT;

        if (error < 0) {
                control_call_fail(call, control_code_from_errno(error), "resize: %s", message);
                return;
        }
        control_call_reply(call, &resp.base);
}

static int on_resize(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__ResizeRequest, request);
        struct vmm_vm *vm = service_vm(call, userdata, req->vm);
        int r;

        if (!vm)
                return 0;
        if (req->height < 1 || req->height > UINT16_MAX || req->width < 1 || req->width > UINT16_MAX)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "a console is 1-65535 rows by 1-65535 "
                                         "columns, not %ux%u",
                                         req->height, req->width);
        r = vmm_resize(vm, req->pid, (uint16_t)req->height, (uint16_t)req->width, on_resized, call);
        if (r == -ENOENT)
                return control_call_fail(call, CONTROL_CODE_NOT_FOUND, "no process %u in VM %s", req->pid, req->vm);
        if (r == -ENOTTY)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION,
                                         "process %u has no terminal (exec it with --tty)", req->pid);
        if (r == -ESRCH)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "process %u is not running", req->pid);
        return r < 0 ? fail_vm_busy(call, vm, r, "resize") : 0;
}

static int on_delete(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__DeleteRequest, request);
        struct vmm_process *p = service_target(call, userdata, req->vm, req->pid, req->exec_id);
        Vsockmux__V1__DeleteResponse resp = VSOCKMUX__V1__DELETE_RESPONSE__INIT;
        Vsockmux__V1__ExitStatus st;
        struct vmm_process_info pi;

        if (!p)
                return 0;
        vmm_process_get_info(p, &pi);
        if (vmm_process_delete(p) < 0)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION,
                                         "process %u (exec %s) in VM %s has not exited: kill it and wait first", pi.pid,
                                         pi.exec_id, req->vm);
        exit_to_proto(&pi.exit, &st);
        resp.pid = pi.pid;
        resp.exit = &st;
        return control_call_reply(call, &resp.base);
}

static int on_reopen_log(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__ReopenLogRequest, request);
        struct vmm_process *p = service_target(call, userdata, req->vm, req->pid, req->exec_id);
        Vsockmux__V1__ReopenLogResponse resp = VSOCKMUX__V1__REOPEN_LOG_RESPONSE__INIT;
        struct opener_creds creds;
        int r;

        if (!p)
                return 0;
        creds = service_peer_creds(call);
        r = vmm_process_log_reopen(p, &creds);
        if (r == -ENOENT)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "process %u has no k8s-file log",
                                         vmm_process_pid(p));
        if (r < 0)
                return control_call_fail_errno(call, r, "reopen the log");
        return control_call_reply(call, &resp.base);
}

/* ---- stats and events ---- */

static uint64_t rss_bytes(void)
{
        unsigned long size = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "re");

        if (!f)
                return 0;
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
                resident = 0;
        fclose(f);
        return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int on_stats(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__StatsRequest, request);
        struct service *s = userdata;
        Vsockmux__V1__VmStats vm_stats = VSOCKMUX__V1__VM_STATS__INIT;
        Vsockmux__V1__StreamCounters vm_bytes = VSOCKMUX__V1__STREAM_COUNTERS__INIT;
        _cleanup_free_ char *text = NULL;
        size_t len;
        Vsockmux__V1__StatsResponse resp = VSOCKMUX__V1__STATS_RESPONSE__INIT;
        Vsockmux__V1__BufferPoolStats pool = VSOCKMUX__V1__BUFFER_POOL_STATS__INIT;
        Vsockmux__V1__LoopStats loop = VSOCKMUX__V1__LOOP_STATS__INIT;
        struct relay_stats rs;
        struct vmm_stats vs;

        relay_get_stats(s->relay, &rs);
        loop.turns = rs.turns;
        loop.wait_ns = rs.wait_ns;
        loop.turns_waited = rs.turns_waited;
        loop.sleeps = rs.sleeps;
        loop.cqes = rs.cqes;
        loop.n_cqes_per_turn = RELAY_STATS_CQE_BUCKETS;
        loop.cqes_per_turn = rs.cqes_per_turn;
        resp.loop = &loop;
        vmm_get_stats(s->vmm, &vs);
        resp.vms = vs.vms;
        resp.processes = vs.processes;
        resp.streams = rs.streams;
        resp.bytes_relayed = rs.bytes_relayed;
        resp.bytes_spliced = rs.bytes_spliced;
        resp.memory_in_use = rss_bytes();
        pool.buffers_total = rs.pool_bufs_total;
        pool.buffers_in_use = rs.pool_bufs_in_use;
        pool.buffer_size = rs.pool_buf_size;
        resp.buffer_pool = &pool;
        resp.control_connections = control_server_connections(s->server);
        if (req->vm && req->vm[0]) {
                struct vmm_vm *vm = service_vm(call, s, req->vm);
                struct vmm_vm_counters c;

                if (!vm)
                        return 0;
                vmm_vm_get_counters(vm, &c);
                vm_stats.name = (char *)vmm_vm_name(vm);
                vm_stats.processes = c.processes;
                vm_stats.streams = c.streams;
                vm_bytes.stdin_bytes = c.bytes[VMM_STDIN];
                vm_bytes.stdout_bytes = c.bytes[VMM_STDOUT];
                vm_bytes.stderr_bytes = c.bytes[VMM_STDERR];
                vm_stats.bytes = &vm_bytes;
                vm_stats.stream_errors = c.stream_errors;
                vm_stats.dropped_bytes = c.dropped_bytes;
                vm_stats.bridge_connects = c.bridge_connects;
                vm_stats.held_replies = c.held_replies;
                vm_stats.saves = c.save.count;
                vm_stats.restores = c.restore.count;
                vm_stats.bridge_state = bridge_state_to_proto(vm);
                resp.vm_stats = &vm_stats;
        }
        if (req->prometheus) {
                int r = metrics_render(s->vmm, s->relay, s->server, &text, &len);

                if (r < 0)
                        return control_call_fail_errno(call, r, "render the metrics");
                resp.prometheus_text = text;
        }
        return control_call_reply(call, &resp.base);
}

static struct subscriber *subscriber_free(struct subscriber *sub)
{
        if (sub) {
                list_del(&sub->link);
                free(sub->vm);
                free(sub);
        }
        return NULL;
}

static void subscriber_on_cancel(struct control_call *call, void *userdata)
{
        struct subscriber *sub = userdata;

        control_call_fail(call, CONTROL_CODE_CANCELLED, "client gone");
        subscriber_free(sub);
}

/* Sends ev, telling first of any events this subscriber lost: a full output queue drops an
 * event, and the next one that fits is preceded by a marker naming the gap, never silence. */
static int subscriber_send(struct subscriber *sub, const Vsockmux__V1__Event *ev)
{
        int r;

        if (sub->lost_first) {
                Vsockmux__V1__Event marker;
                char text[256];

                event_ring_marker(sub->lost_first, sub->lost_last,
                                  "this subscriber fell behind (its connection's output queue was full)", text,
                                  sizeof(text), &marker);
                r = control_call_send(sub->call, &marker.base);
                if (r == 0)
                        sub->lost_first = sub->lost_last = 0;
                else if (r != -ENOBUFS)
                        return r;
        }
        r = sub->lost_first ? -ENOBUFS : control_call_send(sub->call, &ev->base);
        if (r == -ENOBUFS && ev->seq) {
                if (!sub->lost_first)
                        log_warn("events: a subscriber fell behind; it is told which events it missed");
                sub->lost_first = sub->lost_first ?: ev->seq;
                sub->lost_last = ev->seq;
        }
        return r;
}

static bool subscriber_wants(const struct subscriber *sub, const Vsockmux__V1__Event *ev)
{
        return !sub->vm || !ev->vm[0] || strcmp(sub->vm, ev->vm) == 0;
}

static int subscriber_replay_one(const Vsockmux__V1__Event *ev, void *userdata)
{
        struct subscriber *sub = userdata;
        int r;

        if (!subscriber_wants(sub, ev))
                return 0;
        r = subscriber_send(sub, ev);
        return r == -ENOBUFS ? 0 : r;
}

static int on_events(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__EventsRequest, request);
        struct service *s = userdata;
        struct subscriber *sub;
        int r;

        /* A replay may ask for a VM removed since: its events are still in the ring. */
        if (req->vm && req->vm[0] && !vmm_vm_find(s->vmm, req->vm) && !req->replay)
                return control_call_fail(call, CONTROL_CODE_NOT_FOUND, "unknown VM '%s'", req->vm);
        sub = calloc(1, sizeof(*sub));
        if (!sub)
                return -ENOMEM;
        sub->service = s;
        sub->call = call;
        if (req->vm && req->vm[0]) {
                sub->vm = strdup(req->vm);
                if (!sub->vm) {
                        free(sub);
                        return -ENOMEM;
                }
        }
        list_init(&sub->link);
        /* The replay runs to its end before any new event can be published: nothing falls
         * between what it sends and what follows live. */
        if (req->replay && s->events) {
                r = event_ring_replay(s->events, req->since_seq, req->since_timestamp_ns, subscriber_replay_one, sub);
                if (r < 0) {
                        subscriber_free(sub);
                        return r == -ENOTCONN ? control_call_fail(call, CONTROL_CODE_CANCELLED, "client gone") : r;
                }
        }
        list_add_tail(&s->subscribers, &sub->link);
        control_call_set_cancel(call, subscriber_on_cancel, sub);
        return 0;
}

static const Vsockmux__V1__EventKind event_kinds[] = {
        [VMM_EVENT_VM_ADDED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_VM_ADDED,
        [VMM_EVENT_VM_REMOVED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_VM_REMOVED,
        [VMM_EVENT_BRIDGE_CONNECTED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_BRIDGE_CONNECTED,
        [VMM_EVENT_BRIDGE_DISCONNECTED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_BRIDGE_DISCONNECTED,
        [VMM_EVENT_CONTAINER_CREATED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_CONTAINER_CREATED,
        [VMM_EVENT_CONTAINER_EXITED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_CONTAINER_EXITED,
        [VMM_EVENT_PROCESS_STARTED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_PROCESS_STARTED,
        [VMM_EVENT_PROCESS_EXITED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_PROCESS_EXITED,
        [VMM_EVENT_MIGRATION_STARTED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_STARTED,
        [VMM_EVENT_MIGRATION_COMPLETED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_COMPLETED,
        [VMM_EVENT_MIGRATION_FAILED] = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_FAILED,
};

/* Stamps ev with the time and its sequence number, keeps it in the ring and sends it to every
 * subscriber that wants its VM. */
static void service_publish(struct service *s, Vsockmux__V1__Event *ev)
{
        struct list_head *pos, *tmp;
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ev->timestamp_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        if (s->events && event_ring_add(s->events, ev) < 0)
                log_warn("events: out of memory: event %llu is not kept for replay", (unsigned long long)ev->seq);
        list_for_each_safe(pos, tmp, &s->subscribers) {
                struct subscriber *sub = list_entry(pos, struct subscriber, link);

                if (subscriber_wants(sub, ev))
                        (void)subscriber_send(sub, ev);
        }
}

void service_on_event(const struct vmm_event *e, void *userdata)
{
        struct service *s = userdata;
        Vsockmux__V1__Event ev = VSOCKMUX__V1__EVENT__INIT;
        Vsockmux__V1__ExitStatus st;

        if (!s || (!s->events && list_empty(&s->subscribers)))
                return;
        ev.kind = e->kind < ELEMENTSOF(event_kinds) ? event_kinds[e->kind]
                                                    : VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_UNSPECIFIED;
        ev.vm = (char *)(e->vm ? e->vm : "");
        ev.container_id = (char *)(e->container_id ? e->container_id : "");
        ev.pid = e->pid;
        ev.message = (char *)(e->message ? e->message : "");
        if (e->exit) {
                exit_to_proto(e->exit, &st);
                ev.exit = &st;
        }
        service_publish(s, &ev);
}

#define SERVICE_MIGRATION_MESSAGE_MAX 512u

/* `vsockmux migrate` drives libvirt; the daemon only relays what it reports to subscribers. */
static int on_publish_migration_event(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__PublishMigrationEventRequest, request);
        struct service *s = userdata;
        Vsockmux__V1__PublishMigrationEventResponse resp = VSOCKMUX__V1__PUBLISH_MIGRATION_EVENT_RESPONSE__INIT;
        Vsockmux__V1__Event ev = VSOCKMUX__V1__EVENT__INIT;
        struct vmm_vm *vm = service_vm(call, s, req->vm);

        if (!vm)
                return 0;
        if (req->kind < VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_STARTED ||
            req->kind > VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_FAILED)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "kind %d is not a migration event",
                                         (int)req->kind);
        if (strlen(req->message) > SERVICE_MIGRATION_MESSAGE_MAX)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "message over %u bytes",
                                         SERVICE_MIGRATION_MESSAGE_MAX);
        ev.kind = req->kind;
        ev.vm = (char *)vmm_vm_name(vm);
        ev.message = req->message;
        service_publish(s, &ev);
        return control_call_reply(call, &resp.base);
}

/* ---- save, restore, resume ---- */

/* A save in flight: the processes whose output will not follow, listed when it was asked for. */
struct save_call {
        struct control_call *call;
        uint32_t *lost;
        size_t n_lost;
};

static void on_saved(int error, const char *message, const uint8_t *blob, size_t len, unsigned n_processes,
                     void *userdata)
{
        struct save_call *sc = userdata;
        Vsockmux__V1__SaveResponse resp = VSOCKMUX__V1__SAVE_RESPONSE__INIT;

        if (error < 0)
                control_call_fail(sc->call, control_code_from_errno(error), "%s", message);
        else {
                resp.state.data = (uint8_t *)blob;
                resp.state.len = len;
                resp.processes = n_processes;
                resp.output_lost_pids = sc->lost;
                resp.n_output_lost_pids = sc->n_lost;
                control_call_reply(sc->call, &resp.base);
        }
        free(sc->lost);
        free(sc);
}

static int save_call_new(struct control_call *call, struct vmm_vm *vm, struct save_call **ret)
{
        struct save_call *sc = calloc(1, sizeof(*sc));
        size_t n = vmm_vm_process_count(vm);

        if (!sc || !(sc->lost = calloc(n + 1, sizeof(*sc->lost)))) {
                free(sc);
                return -ENOMEM;
        }
        sc->call = call;
        for (struct vmm_process *p = vmm_process_next(vm, NULL); p && sc->n_lost < n; p = vmm_process_next(vm, p)) {
                struct vmm_process_info pi;

                vmm_process_get_info(p, &pi);
                if (pi.output_lost_on_move)
                        sc->lost[sc->n_lost++] = pi.pid;
        }
        *ret = sc;
        return 0;
}

static int on_save(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__SaveRequest, request);
        struct vmm_vm *vm = service_vm(call, userdata, req->vm);
        struct save_call *sc = NULL;
        struct vmm_error err = {};
        int r;

        if (!vm)
                return 0;
        r = save_call_new(call, vm, &sc);
        if (r < 0)
                return r;
        r = vmm_save(vm, on_saved, sc, &err);
        if (r < 0) {
                free(sc->lost);
                free(sc);
        }
        if (r < 0)
                return control_call_fail(
                        call, r == -ENOMEM ? CONTROL_CODE_RESOURCE_EXHAUSTED : CONTROL_CODE_FAILED_PRECONDITION, "%s",
                        err.message);
        return 0;
}

static int on_resume(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__ResumeRequest, request);
        struct vmm_vm *vm = service_vm(call, userdata, req->vm);
        Vsockmux__V1__ResumeResponse resp = VSOCKMUX__V1__RESUME_RESPONSE__INIT;
        struct vmm_error err = {};
        int r;

        if (!vm)
                return 0;
        r = vmm_resume(vm, &err);
        if (r < 0)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "%s", err.message);
        return control_call_reply(call, &resp.base);
}

#define SERVICE_MAX_RESTORE_IO 16384u

static int on_restore(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__RestoreRequest, request);
        struct service *s = userdata;
        Vsockmux__V1__RestoreResponse resp = VSOCKMUX__V1__RESTORE_RESPONSE__INIT;
        _cleanup_free_ struct vmm_restore_io *io = NULL;
        struct relay_transport t = { 0 }, *tp = NULL;
        struct opener_creds creds;
        struct vmm_vm *vm;
        struct vmm_error err = {};
        int r;

        if (req->n_io > SERVICE_MAX_RESTORE_IO)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "at most %u --io entries",
                                         SERVICE_MAX_RESTORE_IO);
        /* No transport: the saved one. */
        if (req->transport_case != VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT__NOT_SET) {
                r = service_transport_parse(
                        req->transport_case == VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_HVSOCK_PATH ? req->hvsock_path
                                                                                                    : NULL,
                        req->transport_case == VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_CID, req->cid, &t, &err);
                if (r < 0)
                        return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "%s", err.message);
                tp = &t;
        }
        io = calloc(req->n_io + 1, sizeof(*io));
        if (!io)
                return -ENOMEM;
        creds = service_peer_creds(call);
        for (size_t i = 0; i < req->n_io; i++) {
                const Vsockmux__V1__RestoreIo *ri = req->io[i];

                /* By exec id the pid is not looked at (as in Wait and Kill), so no refusal names
                 * one the client set beside it. */
                if (ri->exec_id && ri->exec_id[0]) {
                        if (!exec_id_is_valid(ri->exec_id))
                                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                                         "--io names exec id '%.*s', which is not one: 1-%u "
                                                         "characters, runs of [A-Za-z0-9] joined by single '.', "
                                                         "'_' or '-'",
                                                         (int)EXEC_ID_MAX, ri->exec_id, EXEC_ID_MAX);
                        io[i].exec_id = ri->exec_id;
                } else if (ri->pid == 0)
                        return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                                 "an --io entry names neither a pid nor an exec id");
                else
                        io[i].pid = ri->pid;
                io[i].creds = &creds;
                io[i].path[VMM_STDIN] = ri->stdin_path;
                io[i].path[VMM_STDOUT] = ri->stdout_path;
                io[i].path[VMM_STDERR] = ri->stderr_path;
        }
        /* The slot after the client's entries: its rights for every process they do not name. */
        io[req->n_io] = (struct vmm_restore_io){ .pid = 0, .creds = &creds };
        r = vmm_restore(s->vmm, req->state.data, req->state.len, req->name, tp, io, req->n_io + 1, &vm, &err);
        if (r == -EEXIST)
                return control_call_fail(call, CONTROL_CODE_ALREADY_EXISTS, "%s", err.message);
        if (r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EINVAL || r == -ENOENT)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "%s", err.message);
        if (r < 0)
                return control_call_fail(call, control_code_from_errno(r), "%s", err.message);
        resp.vm = (char *)vmm_vm_name(vm);
        resp.processes = vmm_vm_process_count(vm);
        return control_call_reply(call, &resp.base);
}

/* ---- live upgrade ---- */

static void upgrade_replied(int r, pid_t pid, const char *binary, const char *why, void *userdata)
{
        struct control_call *call = userdata;
        Vsockmux__V1__UpgradeResponse resp = VSOCKMUX__V1__UPGRADE_RESPONSE__INIT;

        if (r < 0) {
                (void)control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "%s", why);
                return;
        }
        resp.pid = (uint32_t)pid;
        resp.binary = (char *)binary;
        (void)control_call_reply(call, &resp.base);
}

static void upgrade_call_cancelled(struct control_call *call, void *userdata)
{
        struct service *s = userdata;

        /* The upgrade goes on; nobody is left to tell. */
        if (s->upgrade) /* NULL: the daemon is stopping and freed it already */
                upgrade_forget(s->upgrade, call);
        (void)control_call_fail(call, CONTROL_CODE_CANCELLED, "the client went away");
}

static int on_upgrade(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        REQ(Vsockmux__V1__UpgradeRequest, request);
        struct service *s = userdata;
        char why[UPGRADE_WHY_MAX];
        int r;

        if (!s->upgrade)
                return control_call_fail(call, CONTROL_CODE_UNAVAILABLE, "this vsockmuxd cannot upgrade");
        /* It runs a binary with the daemon's rights: a --group member reaches only its own. */
        if (control_call_peer(call)->uid != 0 && control_call_peer(call)->uid != geteuid())
                return control_call_fail(call, CONTROL_CODE_PERMISSION_DENIED,
                                         "only root or the daemon's owner may upgrade it (it runs the binary with "
                                         "the daemon's rights)");
        r = upgrade_start(s->upgrade, req->binary, (uint64_t)req->timeout_ms * 1000000ull, upgrade_replied, call, why,
                          sizeof(why));
        if (r < 0) {
                log_warn("vsockmuxd: upgrade refused: %s", why);
                return control_call_fail(call,
                                         r == -EALREADY || r == -EBUSY || r == -ECHILD
                                                 ? CONTROL_CODE_FAILED_PRECONDITION
                                                 : control_code_from_errno(r),
                                         "%s", why);
        }
        control_call_set_cancel(call, upgrade_call_cancelled, s);
        return 0;
}

/* ---- migration: daemon/migrate.c ---- */

static int on_migrate(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        struct service *s = userdata;

        return migrations_on_call(s->migrations, call, (const Vsockmux__V1__MigrateRequest *)request);
}

static void service_on_migration_event(Vsockmux__V1__Event *ev, void *userdata)
{
        service_publish(userdata, ev);
}

static const struct migrations_ops service_migrations_ops = {
        .publish = service_on_migration_event,
};

/* What a monitoring agent in --read-group may call: listings and waits, nothing that acts. */
static const char *const service_read_methods[] = {
        CONTROL_SERVICE "/VmList", CONTROL_SERVICE "/Ps",   CONTROL_SERVICE "/Stats",
        CONTROL_SERVICE "/Events", CONTROL_SERVICE "/Wait",
};

#define METHOD(n, desc, fn)                             \
        {                                               \
                CONTROL_SERVICE "/" n, &desc, fn, false \
        }
static const struct control_method service_methods[] = {
        METHOD("VmAdd", vsockmux__v1__vm_add_request__descriptor, on_vm_add),
        METHOD("VmRemove", vsockmux__v1__vm_remove_request__descriptor, on_vm_remove),
        METHOD("VmList", vsockmux__v1__vm_list_request__descriptor, on_vm_list),
        METHOD("ContainerCreate", vsockmux__v1__container_create_request__descriptor, on_container_create),
        METHOD("ContainerShutdown", vsockmux__v1__container_shutdown_request__descriptor, on_container_shutdown),
        METHOD("Exec", vsockmux__v1__exec_request__descriptor, on_exec),
        METHOD("Ps", vsockmux__v1__ps_request__descriptor, on_ps),
        METHOD("Wait", vsockmux__v1__wait_request__descriptor, on_wait),
        METHOD("Kill", vsockmux__v1__kill_request__descriptor, on_kill),
        METHOD("Attach", vsockmux__v1__attach_request__descriptor, on_attach),
        METHOD("Stats", vsockmux__v1__stats_request__descriptor, on_stats),
        { CONTROL_SERVICE "/Events", &vsockmux__v1__events_request__descriptor, on_events, true },
        METHOD("Save", vsockmux__v1__save_request__descriptor, on_save),
        METHOD("Restore", vsockmux__v1__restore_request__descriptor, on_restore),
        METHOD("Resume", vsockmux__v1__resume_request__descriptor, on_resume),
        METHOD("Migrate", vsockmux__v1__migrate_request__descriptor, on_migrate),
        METHOD("PublishMigrationEvent", vsockmux__v1__publish_migration_event_request__descriptor,
               on_publish_migration_event),
        METHOD("Resize", vsockmux__v1__resize_request__descriptor, on_resize),
        METHOD("CloseStdin", vsockmux__v1__close_stdin_request__descriptor, on_close_stdin),
        METHOD("Delete", vsockmux__v1__delete_request__descriptor, on_delete),
        METHOD("ReopenLog", vsockmux__v1__reopen_log_request__descriptor, on_reopen_log),
        METHOD("Upgrade", vsockmux__v1__upgrade_request__descriptor, on_upgrade),
};

int service_alloc(struct service **ret)
{
        struct service *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        list_init(&s->subscribers);
        *ret = s;
        return 0;
}

int service_start(struct service *s, struct relay *r, struct vmm *m, const struct service_config *cfg)
{
        struct control_server_config scfg = {
                .path = cfg->socket_path,
                .owner_uid = cfg->owner_uid,
                .group = cfg->group,
                .read_group = cfg->read_group,
                .read_methods = service_read_methods,
                .n_read_methods = ELEMENTSOF(service_read_methods),
                .max_connections = cfg->max_connections,
                .max_frame = cfg->max_control_frame,
                .adopt_fd = cfg->adopt_fd,
                .adopted_fd = cfg->adopted_fd,
        };
        struct migrations_config mcfg = { .helper_path = cfg->vm_helper, .owner_uid = cfg->owner_uid };
        int k;

        s->relay = r;
        s->vmm = m;
        k = event_ring_new(cfg->events_ring ?: EVENT_RING_DEFAULT_SIZE, &s->events);
        if (k < 0)
                return k;
        k = migrations_new(r, m, &mcfg, &service_migrations_ops, s, &s->migrations);
        if (k < 0)
                return k;
        return control_server_new(r, &scfg, service_methods, ELEMENTSOF(service_methods), s, &s->server);
}

int service_render_metrics(void *userdata, char **ret_text, size_t *ret_len)
{
        struct service *s = userdata;

        return metrics_render(s->vmm, s->relay, s->server, ret_text, ret_len);
}

int service_set_max_connections(struct service *s, unsigned max_connections)
{
        return control_server_set_max_connections(s->server, max_connections);
}

void service_set_upgrade(struct service *s, struct upgrade *u)
{
        s->upgrade = u;
}

struct event_ring *service_events(struct service *s)
{
        return s->events;
}

int service_release_listener(struct service *s, int *ret_fd, bool *ret_owned)
{
        return control_server_release_listener(s->server, ret_fd, ret_owned);
}

int service_listen_again(struct service *s, int fd)
{
        return control_server_listen_again(s->server, fd);
}

size_t service_tx_pending(const struct service *s)
{
        return s->server ? control_server_tx_pending(s->server) : 0;
}

void service_status(char *buf, size_t len, void *userdata)
{
        struct service *s = userdata;
        struct relay_stats rs;
        struct vmm_stats vs;

        relay_get_stats(s->relay, &rs);
        vmm_get_stats(s->vmm, &vs);
        snprintf(buf, len, "%u VMs, %u processes, %u streams, %u control connections", vs.vms, vs.processes, rs.streams,
                 s->server ? control_server_connections(s->server) : 0);
}

struct service *service_free(struct service *s)
{
        struct list_head *pos, *tmp;

        if (!s)
                return NULL;
        /* Freeing the server cancels every pending call, which frees the subscribers. */
        s->server = control_server_free(s->server);
        s->migrations = migrations_free(s->migrations);
        list_for_each_safe(pos, tmp, &s->subscribers)
                subscriber_free(list_entry(pos, struct subscriber, link));
        event_ring_free(s->events);
        free(s);
        return NULL;
}
