/* vm/helper-main.c: vsockmux-vmhelper, the process in which vsockmuxd runs one libvirt migration
 * (vm/), so libvirt's threads and event loop never enter the daemon. It speaks vm/helper-proto on
 * fd 3: a Migrate (or Rollback) first, Events as the migration goes, Saved from the daemon at the
 * switchover, one Outcome last. It talks to the destination daemon itself (Restore, Ps,
 * VmRemove): those calls block, which the daemon's loop must not. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "libvsockmux/vsockmux.h"
#include "vm/helper-proto.h"
#include "vm/migration.h"
#include "vm/params.h"
#include "vm/rollback.h"

#define HELPER_EVENT_POLL_MS 1000
#define HELPER_BLACKOUT_POLL_NS (2ull * 1000000ull)
#define HELPER_BLACKOUT_WAIT_NS (10ull * 1000000000ull) /* give up measuring, not migrating */
#define HELPER_DEFAULT_SOURCE "qemu:///system"
#define HELPER_WHY_MAX VMHELPER_MESSAGE_MAX

struct helper {
        int fd; /* to the daemon */
        uint8_t *rx;
        size_t rx_len, rx_cap;
        bool daemon_gone;
};

struct run {
        struct helper *h;
        const Vsockmux__Vmhelper__Migrate *req;
        struct vm_migration *m;
        struct vsockmux_client *dst;
        const char *dest_name;
        char dest_vm[VMHELPER_STRING_MAX + 1];
        bool saved, restored, failing, interrupted;
        uint64_t t_save, t_restored, t_resumed, dst_baseline;
        unsigned processes;
        char why[HELPER_WHY_MAX];
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the daemon's end ---- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int helper_send(struct helper *h, const vmhelper_msg *m)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r;

        if (h->daemon_gone)
                return -EPIPE;
        r = vmhelper_frame_build(m, &buf, &len);
        if (r < 0)
                return r;
        r = write_all(h->fd, buf, len);
        if (r < 0)
                h->daemon_gone = true;
        return r;
}

/* A whole frame from the buffer, else -EAGAIN. */
static int helper_take(struct helper *h, vmhelper_msg **ret)
{
        size_t size;
        int r = vmhelper_frame_parse(h->rx, h->rx_len, ret, &size);

        if (r == 0)
                return -EAGAIN;
        if (r < 0)
                return r;
        memmove(h->rx, h->rx + size, h->rx_len - size);
        h->rx_len -= size;
        return 0;
}

/* One read into the buffer; -ECONNRESET at EOF. */
static int helper_fill(struct helper *h)
{
        ssize_t n;

        if (h->rx_cap - h->rx_len < 4096) {
                size_t cap = h->rx_cap ? h->rx_cap * 2 : 65536;
                uint8_t *p;

                if (cap > VMHELPER_FRAME_MAX + VMHELPER_HEADER_SIZE + 65536)
                        return -EMSGSIZE;
                p = realloc(h->rx, cap);
                if (!p)
                        return -ENOMEM;
                h->rx = p;
                h->rx_cap = cap;
        }
        do
                n = read(h->fd, h->rx + h->rx_len, h->rx_cap - h->rx_len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if (n == 0) {
                h->daemon_gone = true;
                return -ECONNRESET;
        }
        h->rx_len += (size_t)n;
        return 0;
}

static int helper_recv(struct helper *h, vmhelper_msg **ret)
{
        for (;;) {
                int r = helper_take(h, ret);

                if (r != -EAGAIN)
                        return r;
                r = helper_fill(h);
                if (r < 0)
                        return r;
        }
}

static void stats_to_proto(const struct vm_migration_stats *s, Vsockmux__Vmhelper__Stats *ret)
{
        vsockmux__vmhelper__stats__init(ret);
        ret->elapsed_ms = s->time_elapsed_ms;
        ret->data_processed = s->data_processed;
        ret->data_remaining = s->data_remaining;
        ret->data_total = s->data_total;
        ret->iteration = s->memory_iteration;
        ret->bytes_per_s = s->memory_bps;
        ret->dirty_pages_per_s = s->dirty_rate_pages;
        ret->throttle_percent = s->auto_converge_throttle;
        ret->downtime_ms = s->downtime_ms;
}

/* Best effort: a migration does not fail because its progress could not be told. */
static void send_event(struct run *rn, Vsockmux__Vmhelper__Phase phase, const struct vm_migration_stats *s,
                       const char *fmt, ...) _printf_(4, 5);
static void send_event(struct run *rn, Vsockmux__Vmhelper__Phase phase, const struct vm_migration_stats *s,
                       const char *fmt, ...)
{
        vmhelper_msg m = VSOCKMUX__VMHELPER__MESSAGE__INIT;
        Vsockmux__Vmhelper__Event e = VSOCKMUX__VMHELPER__EVENT__INIT;
        Vsockmux__Vmhelper__Stats st;
        char text[VMHELPER_MESSAGE_MAX] = "";
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        e.phase = phase;
        e.message = text;
        e.destination_vm = rn->dest_vm;
        if (s) {
                stats_to_proto(s, &st);
                e.stats = &st;
        }
        m.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_EVENT;
        m.event = &e;
        (void)helper_send(rn->h, &m);
}

static int send_outcome(struct helper *h, Vsockmux__Vmhelper__Outcome *o)
{
        vmhelper_msg m = VSOCKMUX__VMHELPER__MESSAGE__INIT;

        m.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_OUTCOME;
        m.outcome = o;
        return helper_send(h, &m);
}

/* ---- the destination daemon ---- */

static int dst_call(struct run *rn, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret)
{
        struct vsockmux_status st = {};
        int r = vsockmux_client_call(rn->dst, method, req, desc, ret, &st);

        if (r == -EREMOTEIO)
                snprintf(rn->why, sizeof(rn->why), "destination daemon: %.400s", st.message);
        else if (r < 0)
                snprintf(rn->why, sizeof(rn->why), "destination daemon: %s", strerror(-r));
        return r;
}

static bool dst_has_vm(struct vsockmux_client *c, const char *name)
{
        Vsockmux__V1__VmListRequest req = VSOCKMUX__V1__VM_LIST_REQUEST__INIT;
        Vsockmux__V1__VmListResponse *resp = NULL;
        struct vsockmux_status st = {};
        bool found = false;

        if (vsockmux_client_call(c, VSOCKMUX_METHOD("VmList"), &req.base, &vsockmux__v1__vm_list_response__descriptor,
                                 (ProtobufCMessage **)&resp, &st) < 0)
                return false;
        for (size_t i = 0; i < resp->n_vms; i++)
                found = found || strcmp(resp->vms[i]->name, name) == 0;
        vsockmux_message_free(&resp->base);
        return found;
}

static int dst_remove(struct vsockmux_client *c, const char *name)
{
        Vsockmux__V1__VmRemoveRequest req = VSOCKMUX__V1__VM_REMOVE_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        struct vsockmux_status st = {};
        int r;

        req.name = (char *)name;
        r = vsockmux_client_call(c, VSOCKMUX_METHOD("VmRemove"), &req.base,
                                 &vsockmux__v1__vm_remove_response__descriptor, &resp, &st);
        vsockmux_message_free(resp);
        return r;
}

/* Bytes the destination delivered for the VM so far, across every process and stream. */
static int dst_bytes(struct run *rn, uint64_t *ret)
{
        Vsockmux__V1__PsRequest req = VSOCKMUX__V1__PS_REQUEST__INIT;
        Vsockmux__V1__PsResponse *resp = NULL;
        struct vsockmux_status st = {};
        uint64_t sum = 0;
        int r;

        req.vm = rn->dest_vm;
        r = vsockmux_client_call(rn->dst, VSOCKMUX_METHOD("Ps"), &req.base, &vsockmux__v1__ps_response__descriptor,
                                 (ProtobufCMessage **)&resp, &st);
        if (r < 0)
                return r;
        for (size_t i = 0; i < resp->n_processes; i++)
                if (resp->processes[i]->bytes)
                        sum += resp->processes[i]->bytes->stdin_bytes + resp->processes[i]->bytes->stdout_bytes +
                               resp->processes[i]->bytes->stderr_bytes;
        vsockmux_message_free(&resp->base);
        *ret = sum;
        return 0;
}

/* Until the destination delivers a byte more than it had at the restore: the guest is back. */
static int measure_blackout(struct run *rn, uint64_t *ret_ns)
{
        uint64_t deadline = now_ns() + HELPER_BLACKOUT_WAIT_NS, bytes;
        struct timespec step = { 0, (long)HELPER_BLACKOUT_POLL_NS };

        if (rn->processes == 0)
                return -ENODATA;
        while (now_ns() < deadline) {
                if (dst_bytes(rn, &bytes) < 0)
                        return -EIO;
                if (bytes > rn->dst_baseline) {
                        *ret_ns = now_ns() - rn->t_save;
                        return 0;
                }
                nanosleep(&step, NULL);
        }
        return -ETIMEDOUT;
}

/* ---- the switchover ---- */

static void fail_now(struct run *rn)
{
        if (rn->failing)
                return;
        rn->failing = true;
        if (vm_migration_abort(rn->m) < 0 && !rn->why[0])
                snprintf(rn->why, sizeof(rn->why), "abort: %s", vm_migration_strerror(rn->m));
}

/* The daemon's Saved, answering PHASE_SUSPENDED; an Abort meanwhile changes nothing: the
 * switchover is under way, and finishing it is the quicker way back to one consistent place. */
static int wait_saved(struct run *rn, vmhelper_msg **ret)
{
        for (;;) {
                vmhelper_msg *m = NULL;
                int r = helper_recv(rn->h, &m);

                if (r < 0)
                        return r;
                if (m->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_SAVED) {
                        *ret = m;
                        return 0;
                }
                vmhelper_msg_free(m);
        }
}

static int restore_there(struct run *rn, const Vsockmux__Vmhelper__Saved *sv)
{
        const Vsockmux__Vmhelper__Migrate *q = rn->req;
        Vsockmux__V1__RestoreRequest req = VSOCKMUX__V1__RESTORE_REQUEST__INIT;
        Vsockmux__V1__RestoreResponse *resp = NULL;
        int r;

        req.state = sv->state;
        req.name = (char *)rn->dest_name;
        req.io = q->io;
        req.n_io = q->n_io;
        if (q->destination_transport_case ==
            VSOCKMUX__VMHELPER__MIGRATE__DESTINATION_TRANSPORT_DESTINATION_HVSOCK_PATH) {
                req.transport_case = VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_HVSOCK_PATH;
                req.hvsock_path = q->destination_hvsock_path;
        } else if (q->destination_transport_case ==
                   VSOCKMUX__VMHELPER__MIGRATE__DESTINATION_TRANSPORT_DESTINATION_CID) {
                req.transport_case = VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_CID;
                req.cid = q->destination_cid;
        }
        r = dst_call(rn, VSOCKMUX_METHOD("Restore"), &req.base, &vsockmux__v1__restore_response__descriptor,
                     (ProtobufCMessage **)&resp);
        if (r < 0)
                return r;
        rn->restored = true;
        rn->t_restored = now_ns();
        snprintf(rn->dest_vm, sizeof(rn->dest_vm), "%s", resp->vm);
        vsockmux_message_free(&resp->base);
        if (dst_bytes(rn, &rn->dst_baseline) < 0)
                rn->dst_baseline = 0;
        return 0;
}

/* At the switchover: the guest is paused; the daemon saves, the destination restores. */
static void on_suspended(struct run *rn)
{
        _cleanup_(vmhelper_msg_freep) vmhelper_msg *m = NULL;
        int r;

        rn->t_save = now_ns();
        send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_SUSPENDED, NULL, "source paused");
        r = wait_saved(rn, &m);
        if (r < 0)
                snprintf(rn->why, sizeof(rn->why), "the source daemon went away at the switchover");
        else if (!m->saved->ok)
                snprintf(rn->why, sizeof(rn->why), "source daemon: save: %s", m->saved->error);
        else {
                rn->saved = true;
                rn->processes = m->saved->processes;
                r = restore_there(rn, m->saved);
                if (r == 0) {
                        send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_RESTORED, NULL,
                                   "relay state restored on the destination as %s (%.1f ms after the save)",
                                   rn->dest_vm, (double)(rn->t_restored - rn->t_save) / 1e6);
                        return;
                }
        }
        if (!rn->why[0])
                snprintf(rn->why, sizeof(rn->why), "%s", strerror(-r));
        send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_HANDOVER_FAILED, NULL, "%s; aborting the migration", rn->why);
        fail_now(rn);
}

/* After COMPLETED with the relay state on the destination: resume there, measure, report. */
static int finish(struct run *rn, const struct vm_migration_event *e, Vsockmux__Vmhelper__Outcome *o)
{
        uint64_t blackout = 0;

        if (vm_migration_finalize(rn->m) < 0) {
                /* The source domain is gone: there is nothing to roll back to. */
                snprintf(rn->why, sizeof(rn->why),
                         "the domain migrated but could not be resumed on the destination: %s; it is paused "
                         "there with the relay state (resume it with virsh)",
                         vm_migration_strerror(rn->m));
                return -EIO;
        }
        rn->t_resumed = now_ns();
        send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_DESTINATION_RESUMED, NULL, "destination domain resumed");
        o->ok = true;
        o->blackout_measured = measure_blackout(rn, &blackout) == 0;
        o->stdio_blackout_us = blackout / 1000;
        o->save_to_restore_us = (rn->t_restored - rn->t_save) / 1000;
        o->save_to_resume_us = (rn->t_resumed - rn->t_save) / 1000;
        (void)e;
        return 0;
}

/* Returns 1 once the terminal event was handled (*o filled but for the message). */
static int on_event(struct run *rn, const struct vm_migration_event *e, Vsockmux__Vmhelper__Outcome *o)
{
        switch (e->kind) {
        case VM_MIGRATION_EVENT_PROGRESS:
                if (e->has_stats)
                        send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_PROGRESS, &e->stats, "%s", "");
                return 0;
        case VM_MIGRATION_EVENT_ITERATION:
                send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_ITERATION, NULL, "iteration %d", e->iteration);
                return 0;
        case VM_MIGRATION_EVENT_SUSPENDED:
                if (!rn->saved && !rn->failing)
                        on_suspended(rn);
                return 0;
        case VM_MIGRATION_EVENT_RESUMED:
                send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_SOURCE_RESUMED, NULL, "source domain running again");
                return 0;
        case VM_MIGRATION_EVENT_COMPLETED:
                if (rn->failing || !rn->restored) {
                        if (!rn->failing)
                                snprintf(rn->why, sizeof(rn->why), "libvirt completed without the source pausing");
                        snprintf(rn->why + strlen(rn->why), sizeof(rn->why) - strlen(rn->why),
                                 "; the domain finished migrating before the abort took effect and is paused on "
                                 "the destination (not resumed)");
                        o->domain_on_source = false;
                        return 1;
                }
                o->domain_on_source = false;
                if (finish(rn, e, o) == 0 && e->has_stats)
                        stats_to_proto(&e->stats, o->stats);
                return 1;
        case VM_MIGRATION_EVENT_FAILED:
        case VM_MIGRATION_EVENT_ABORTED:
                if (!rn->failing || !rn->why[0])
                        snprintf(rn->why, sizeof(rn->why), "%s: %s",
                                 rn->interrupted ? "interrupted" : vm_migration_event_kind_to_string(e->kind),
                                 e->message);
                o->domain_on_source = true;
                return 1;
        default: return 0;
        }
}

/* Abort before the switchover; during it, finish (see wait_saved). A daemon gone is an abort. */
static void on_daemon(struct run *rn)
{
        vmhelper_msg *m = NULL;
        int r = helper_fill(rn->h);

        while (r == 0 && (r = helper_take(rn->h, &m)) == 0) {
                bool abort = m->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_ABORT;

                m = vmhelper_msg_free(m);
                if (abort && !rn->saved && !rn->failing) {
                        rn->interrupted = true;
                        send_event(rn, VSOCKMUX__VMHELPER__PHASE__PHASE_INTERRUPTED, NULL, "aborting the migration");
                        fail_now(rn);
                }
        }
        if (r != -EAGAIN && !rn->saved)
                fail_now(rn);
}

static int run_loop(struct run *rn, Vsockmux__Vmhelper__Outcome *o)
{
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = vm_migration_event_fd(rn->m), .events = POLLIN },
                        { .fd = rn->h->daemon_gone ? -1 : rn->h->fd, .events = POLLIN },
                };
                struct vm_migration_event e;
                int r;

                if (poll(p, 2, HELPER_EVENT_POLL_MS) < 0 && errno != EINTR)
                        return -errno;
                if (p[1].revents)
                        on_daemon(rn);
                while ((r = vm_migration_next_event(rn->m, &e)) == 0)
                        if (on_event(rn, &e, o) == 1)
                                return 0;
                if (r != -EAGAIN)
                        return r;
        }
}

/* ---- Migrate ---- */

/* Everything that can be checked before libvirt is asked anything; err says what is wrong. */
static int prepare(const Vsockmux__Vmhelper__Migrate *q, struct vm_params *vp, struct vm_migrate_params *params,
                   char *uri, size_t urilen, char *err, size_t errlen)
{
        int r = vm_params_parse(q->params, q->n_params, vp, err, errlen);

        if (r < 0)
                return r;
        r = vm_migrate_options_from_proto(&vp->o, params, err, errlen);
        if (r < 0)
                return r;
        params->start_paused = true; /* resumed once the relay state is on the destination */
        if (vp->migrate_uri)
                snprintf(uri, urilen, "%s", vp->migrate_uri);
        else if (params->transport == VM_TRANSPORT_UNIX) {
                snprintf(err, errlen, "migrate_uri: transport unix needs migrate_uri unix:///PATH");
                return -EINVAL;
        } else if (vm_params_default_migrate_uri(q->destination_uri, uri, urilen) < 0) {
                snprintf(err, errlen, "destination_uri: cannot take a host from %s; give migrate_uri",
                         q->destination_uri);
                return -EINVAL;
        }
        return vm_migrate_params_check_uri(params, uri, err, errlen);
}

/* Rolls back what the helper itself did; the daemon resumes its relay state. */
static void undo_destination(struct run *rn, Vsockmux__Vmhelper__Outcome *o)
{
        o->destination_clean = !rn->restored || dst_remove(rn->dst, rn->dest_vm) == 0;
}

static int run_migrate(struct helper *h, const Vsockmux__Vmhelper__Migrate *q)
{
        Vsockmux__Vmhelper__Outcome o = VSOCKMUX__VMHELPER__OUTCOME__INIT;
        Vsockmux__Vmhelper__Stats st = VSOCKMUX__VMHELPER__STATS__INIT;
        struct run rn = { .h = h, .req = q };
        struct vm_migration_config cfg;
        struct vm_migrate_params params;
        struct vm_params vp;
        char err[VM_ERR_MAX] = "", uri[VM_URI_MAX];
        int r;

        rn.dest_name = q->destination_name[0] ? q->destination_name : q->vm;
        o.stats = &st;
        o.domain_on_source = o.destination_clean = true;
        o.message = rn.why;
        r = prepare(q, &vp, &params, uri, sizeof(uri), err, sizeof(err));
        if (r < 0) {
                o.invalid_argument = true;
                snprintf(rn.why, sizeof(rn.why), "%s", err);
                return send_outcome(h, &o);
        }
        r = vsockmux_client_connect(q->destination_socket, &rn.dst);
        if (r < 0) {
                snprintf(rn.why, sizeof(rn.why), "cannot reach the destination vsockmuxd at %s: %s",
                         q->destination_socket, strerror(-r));
                return send_outcome(h, &o);
        }
        if (dst_has_vm(rn.dst, rn.dest_name)) {
                snprintf(rn.why, sizeof(rn.why), "the destination daemon has a VM '%s' already", rn.dest_name);
                goto out;
        }
        cfg = (struct vm_migration_config){
                .src_uri = q->source_uri[0] ? q->source_uri : HELPER_DEFAULT_SOURCE,
                .domain = q->domain[0] ? q->domain : q->vm,
                .dest_uri = q->destination_uri,
                .migrate_uri = uri,
                .mode = vp.mode,
        };
        r = vm_migration_start(&cfg, &params, &rn.m, err, sizeof(err));
        if (r < 0) {
                snprintf(rn.why, sizeof(rn.why), "cannot start the migration: %s", err);
                goto out;
        }
        send_event(&rn, VSOCKMUX__VMHELPER__PHASE__PHASE_STARTED, NULL, "domain %s to %s over %s (vsockmuxd %s)",
                   cfg.domain, cfg.dest_uri, uri, q->destination_socket);
        r = run_loop(&rn, &o);
        if (r < 0 && !rn.why[0])
                snprintf(rn.why, sizeof(rn.why), "%s", strerror(-r));
        if (!o.ok && o.domain_on_source)
                undo_destination(&rn, &o);
        o.processes = rn.processes;
        o.destination_vm = rn.dest_vm;
out:
        r = send_outcome(h, &o);
        rn.m = vm_migration_free(rn.m);
        rn.dst = vsockmux_client_free(rn.dst);
        return r;
}

/* ---- Rollback: after a migration helper died ---- */

static int run_rollback(struct helper *h, const Vsockmux__Vmhelper__Rollback *q)
{
        Vsockmux__Vmhelper__Outcome o = VSOCKMUX__VMHELPER__OUTCOME__INIT;
        const char *dest_name = q->destination_name[0] ? q->destination_name : q->vm;
        struct vsockmux_client *dst = NULL;
        char why[HELPER_WHY_MAX] = "";
        bool on_source = false;
        int r;

        o.message = why;
        r = vm_rollback_domain(q->source_uri[0] ? q->source_uri : HELPER_DEFAULT_SOURCE,
                               q->domain[0] ? q->domain : q->vm, VM_ROLLBACK_WAIT_MS_DEFAULT, &on_source, why,
                               sizeof(why));
        o.domain_on_source = r == 0 && on_source;
        if (r == 0 && !on_source)
                snprintf(why, sizeof(why), "the domain is no longer on the source (its migration completed)");
        /* Only with the domain back here may the destination's copy of the relay state go. */
        if (o.domain_on_source && vsockmux_client_connect(q->destination_socket, &dst) == 0)
                o.destination_clean = !dst_has_vm(dst, dest_name) || dst_remove(dst, dest_name) == 0;
        if (o.domain_on_source && !o.destination_clean)
                snprintf(why, sizeof(why), "cannot remove %s from the destination daemon", dest_name);
        vsockmux_client_free(dst);
        return send_outcome(h, &o);
}

int main(int argc, char **argv)
{
        struct helper h = { .fd = VMHELPER_FD };
        _cleanup_(vmhelper_msg_freep) vmhelper_msg *m = NULL;
        int r;

        if (argc > 1) {
                fprintf(stderr, "usage: %s (started by vsockmuxd with its end of a socketpair as fd %d)\n", argv[0],
                        VMHELPER_FD);
                return strcmp(argv[1], "--help") == 0 ? 0 : 2;
        }
        /* Output to a daemon that is gone must not kill us before we abort the migration. */
        signal(SIGPIPE, SIG_IGN);
        /* Least privilege: nothing we start (ssh for qemu+ssh://) gains rights, and nothing of
         * the daemon's but our socket stays open here. */
        (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        (void)close_range(VMHELPER_FD + 1, ~0u, 0);
        r = helper_recv(&h, &m);
        if (r < 0) {
                fprintf(stderr, "vsockmux-vmhelper: no request on fd %d: %s\n", VMHELPER_FD, strerror(-r));
                return 1;
        }
        if (m->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_MIGRATE)
                r = run_migrate(&h, m->migrate);
        else if (m->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_ROLLBACK)
                r = run_rollback(&h, m->rollback);
        else
                r = -EBADMSG;
        free(h.rx);
        return r < 0 ? 1 : 0;
}
