/* daemon/upgrade-ops.c: what a live upgrade hands over: the control socket, listening, with the
 * connections still in its backlog, and every VM live (vm-handover.c: its bridge and stdio
 * connections, listeners, endpoints and buffered bytes), held quiet first so nothing is in flight.
 * A VM the hand-over cannot move yet refuses the upgrade before anything is held; a rollback after
 * the hand-over builds the VMs again here from what was sent (this daemon kept every fd). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/event-ring.h"
#include "daemon/handover-wire.h"
#include "daemon/savestate.h"
#include "daemon/upgrade-ops.h"
#include "util/log.h"

static bool metrics_wanted(const struct upgrade_daemon *ho)
{
        return ho->metrics.http && ho->metrics.addr;
}

static void metrics_stop(struct upgrade_daemon *ho)
{
        if (metrics_wanted(ho))
                *ho->metrics.http = metrics_http_free(*ho->metrics.http);
}

static void metrics_start_again(struct upgrade_daemon *ho)
{
        const struct upgrade_ops_metrics *m = &ho->metrics;
        int r;

        if (!metrics_wanted(ho) || *m->http)
                return;
        r = metrics_http_new(ho->relay, m->addr, m->group, m->read_group, m->ops, m->userdata, m->http);
        if (r < 0)
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: upgrade rollback: --metrics-listen cannot listen again");
}

/* ---- the hold: every VM quiet before anything is sent ---- */

static struct upgrade_daemon_vm *hold_find(struct upgrade_daemon *ho, const struct vmm_vm *vm)
{
        for (size_t i = 0; i < ho->hold.n; i++)
                if (ho->hold.vms[i].vm == vm)
                        return &ho->hold.vms[i];
        return NULL;
}

/* Lets go of every VM still held (not handed over) and forgets the hold. */
static void hold_release(struct upgrade_daemon *ho)
{
        for (size_t i = 0; i < ho->hold.n; i++) {
                struct upgrade_daemon_vm *e = &ho->hold.vms[i];

                if (e->vm && !e->handed)
                        vmm_vm_unhold(e->vm);
        }
        free(ho->hold.vms);
        ho->hold.vms = NULL;
        ho->hold.n = ho->hold.n_held = 0;
        ho->hold.u = NULL;
        ho->hold.failed = 0;
}

/* On the loop, never inside a VM's callback: the outcome goes to the upgrade. */
static void hold_settle(void *userdata)
{
        struct upgrade_daemon *ho = userdata;
        struct upgrade *u = ho->hold.u;
        char why[UPGRADE_WHY_MAX];

        ho->hold.settle_queued = false;
        if (!u)
                return; /* unheld meanwhile (the deadline, a stop) */
        if (ho->hold.failed < 0) {
                int r = ho->hold.failed;

                snprintf(why, sizeof(why), "%s", ho->hold.why);
                hold_release(ho);
                upgrade_held(u, r, why);
                return;
        }
        if (ho->hold.n_held == ho->hold.n)
                upgrade_held(u, 0, NULL); /* freeze runs from here; the entries stay for it */
}

static void hold_queue_settle(struct upgrade_daemon *ho)
{
        int r;

        if (ho->hold.settle_queued)
                return;
        r = relay_defer(ho->relay, hold_settle, ho);
        if (r < 0) {
                /* Nothing would ever tell the upgrade: its deadline lets go of the hold. */
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: upgrade: cannot go on after the hold");
                return;
        }
        ho->hold.settle_queued = true;
}

static void hold_on_frozen(struct vmm_vm *vm, void *userdata)
{
        struct upgrade_daemon *ho = userdata;
        struct upgrade_daemon_vm *e = hold_find(ho, vm);

        if (!e || e->held)
                return;
        e->held = true;
        if (++ho->hold.n_held == ho->hold.n)
                hold_queue_settle(ho);
}

static void hold_on_gone(struct vmm_vm *vm, void *userdata)
{
        struct upgrade_daemon *ho = userdata;
        struct upgrade_daemon_vm *e = hold_find(ho, vm);

        if (!e)
                return;
        if (ho->hold.failed == 0) {
                ho->hold.failed = -ECANCELED;
                snprintf(ho->hold.why, sizeof(ho->hold.why),
                         "VM %s went away or its bridge could not be held quiet (a call was sent meanwhile); "
                         "retry",
                         vmm_vm_name(vm));
        }
        /* A VM being removed is not ours to touch again; one whose bridge would not hold is let go
         * of from the loop (hold_settle), not from inside its own callback. */
        if (!vmm_vm_is_frozen(vm))
                e->vm = NULL;
        hold_queue_settle(ho);
}

static const struct vmm_vm_freeze_ops hold_ops = {
        .on_frozen = hold_on_frozen,
        .on_gone = hold_on_gone,
};

static int upgrade_daemon_hold(void *userdata, struct upgrade *u, char *why, size_t len)
{
        struct upgrade_daemon *ho = userdata;
        unsigned n = vmm_vm_count(ho->vmm);
        struct vmm_error err = {};
        struct vmm_vm *vm;
        size_t i = 0;

        if (n == 0)
                return 1; /* nothing to hold: the control socket alone goes, at once */
        /* Every VM can go, or none is touched. */
        for (vm = vmm_vm_next(ho->vmm, NULL); vm; vm = vmm_vm_next(ho->vmm, vm)) {
                int r = vmm_vm_check_hand_over(vm, &err);

                if (r < 0) {
                        snprintf(why, len, "%s; nothing was handed over and this daemon serves on", err.message);
                        return r;
                }
        }
        ho->hold.vms = calloc(n, sizeof(*ho->hold.vms));
        if (!ho->hold.vms)
                return snprintf(why, len, "out of memory; this daemon serves on"), -ENOMEM;
        ho->hold.n = n;
        ho->hold.n_held = 0;
        ho->hold.failed = 0;
        ho->hold.u = u;
        for (vm = vmm_vm_next(ho->vmm, NULL); vm && i < n; vm = vmm_vm_next(ho->vmm, vm))
                ho->hold.vms[i++].vm = vm;
        for (i = 0; i < n; i++) {
                int r = vmm_vm_hold(ho->hold.vms[i].vm, &hold_ops, ho, &err);

                if (r < 0) {
                        ho->hold.vms[i].vm = NULL; /* not held: nothing to let go of */
                        hold_release(ho);
                        snprintf(why, len, "%s; this daemon serves on", err.message);
                        return r;
                }
        }
        return 0;
}

static void upgrade_daemon_unhold(void *userdata, char *why, size_t len)
{
        struct upgrade_daemon *ho = userdata;
        size_t at = 0;

        for (size_t i = 0; why && i < ho->hold.n && at < len; i++) {
                const struct upgrade_daemon_vm *e = &ho->hold.vms[i];

                if (e->vm && !e->held)
                        at += (size_t)snprintf(why + at, len - at, "%sVM %s", at ? ", " : "", vmm_vm_name(e->vm));
        }
        hold_release(ho);
}

/* ---- the freeze: what was held goes into the Handover ---- */

/* VM e, held, goes into h->vms with its fds; its Vm is kept (packed and read back, so it owns
 * its strings) for the new daemon and for a rollback here. */
static int hand_over_vm(struct upgrade_daemon *ho, struct upgrade_daemon_vm *e, Vsockmux__State__Handover *h,
                        struct upgrade_fds *fds, char *why, size_t len)
{
        Vsockmux__State__SavedState ss = VSOCKMUX__STATE__SAVED_STATE__INIT, *copy;
        Vsockmux__State__Vm out;
        struct vmm_error err = {};
        /* The upgrade's fd array, lent to the VM: its indices are the Handover's. */
        struct vmm_fds vf = { .fds = fds->fds, .n = fds->n, .cap = fds->cap };
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int r;

        (void)ho;
        if (!e->vm)
                return snprintf(why, len, "a VM went away while held; retry"), -EAGAIN;
        r = vmm_vm_hand_over(e->vm, &out, &vf, &err);
        fds->fds = vf.fds;
        fds->n = vf.n;
        fds->cap = vf.cap;
        e->handed = vmm_vm_is_handed_over(e->vm);
        if (r < 0) {
                if (e->handed)
                        log_error("vm %s: lost: its hand-over failed half way: %s", vmm_vm_name(e->vm), err.message);
                snprintf(why, len, "%s; this daemon serves on", err.message);
                return r;
        }
        ss.schema_version = SAVESTATE_SCHEMA_VERSION;
        ss.vm = &out;
        n = vsockmux__state__saved_state__get_packed_size(&ss);
        buf = malloc(n ? n : 1);
        if (buf)
                vsockmux__state__saved_state__pack(&ss, buf);
        vmm_vm_export_done(&out);
        copy = buf ? vsockmux__state__saved_state__unpack(NULL, n, buf) : NULL;
        if (!copy) {
                log_error("vm %s: handed over but its state is lost here: out of memory", vmm_vm_name(e->vm));
                return snprintf(why, len, "out of memory handing over VM %s", vmm_vm_name(e->vm)), -ENOMEM;
        }
        h->vms[h->n_vms++] = copy;
        return 0;
}

/* Followers of `events` dial the new daemon again and go on from their last seq there. */
static int hand_over_events(struct upgrade_daemon *ho, Vsockmux__State__Handover *h)
{
        struct event_ring *ring = service_events(ho->service);
        int r;

        if (!ring)
                return 0;
        h->events = calloc(1, sizeof(*h->events));
        if (!h->events)
                return -ENOMEM;
        r = event_ring_export(ring, h->events);
        if (r < 0) {
                free(h->events);
                h->events = NULL;
        }
        return r;
}

static int upgrade_daemon_freeze(void *userdata, Vsockmux__State__Handover *h, struct upgrade_fds *fds, char *why,
                                 size_t len)
{
        struct upgrade_daemon *ho = userdata;
        bool owned;
        int fd, r;

        if (vmm_vm_count(ho->vmm) != ho->hold.n) {
                snprintf(why, len, "a VM was added or removed while the upgrade held the others; retry");
                return -EAGAIN;
        }
        if (ho->hold.n > 0) {
                h->vms = calloc(ho->hold.n, sizeof(*h->vms));
                if (!h->vms)
                        return snprintf(why, len, "out of memory; this daemon serves on"), -ENOMEM;
        }
        metrics_stop(ho);
        r = service_release_listener(ho->service, &fd, &owned);
        if (r < 0) {
                snprintf(why, len, "cannot hand over the control socket: %s", strerror(-r));
                return r;
        }
        r = upgrade_fds_add(fds, fd, &h->control_listener_fd);
        if (r < 0) {
                snprintf(why, len, "cannot hand over the control socket: %s", strerror(-r));
                return r;
        }
        h->control_socket_owned = owned;
        r = hand_over_events(ho, h);
        if (r < 0)
                return snprintf(why, len, "out of memory; this daemon serves on"), r;
        vmm_records_pause(ho->vmm);
        for (size_t i = 0; i < ho->hold.n; i++) {
                r = hand_over_vm(ho, &ho->hold.vms[i], h, fds, why, len);
                if (r < 0)
                        return r;
        }
        if (fds->n > HANDOVER_MAX_FDS) {
                snprintf(why, len, "the handover would carry %zu fds, more than %u; this daemon serves on", fds->n,
                         HANDOVER_MAX_FDS);
                return -E2BIG;
        }
        return 0;
}

static void upgrade_daemon_handover_done(void *userdata, Vsockmux__State__Handover *h)
{
        struct upgrade_daemon *ho = userdata;

        for (size_t i = 0; i < h->n_vms; i++)
                vsockmux__state__saved_state__free_unpacked(h->vms[i], NULL);
        free(h->vms);
        h->vms = NULL;
        h->n_vms = 0;
        if (h->events) {
                event_ring_export_done(h->events);
                free(h->events);
                h->events = NULL;
        }
        hold_release(ho);
}

/* The new daemon did not take over: every VM handed out is built again from what was sent. */
static void take_back_vms(struct upgrade_daemon *ho, Vsockmux__State__Handover *h, struct upgrade_fds *fds)
{
        for (size_t i = 0; i < h->n_vms; i++) {
                const Vsockmux__State__Vm *sv = h->vms[i]->vm;
                struct vmm_error err = {};
                int r;

                if (!sv)
                        continue;
                r = vmm_take_back(ho->vmm, sv, fds->fds, fds->n, &err);
                if (r < 0)
                        log_error("vsockmuxd: upgrade rollback: VM %s is lost: %s", sv->name ? sv->name : "?",
                                  err.message);
                else
                        log_info("vm %s: not handed over after all: serving on", sv->name);
        }
}

static void upgrade_daemon_thaw(void *userdata, Vsockmux__State__Handover *h, struct upgrade_fds *fds)
{
        struct upgrade_daemon *ho = userdata;
        int32_t i = h->control_listener_fd;
        int r;

        take_back_vms(ho, h, fds);
        vmm_records_resume(ho->vmm);
        /* Those not handed over yet (a freeze that failed half way) serve on as they were. */
        hold_release(ho);
        metrics_start_again(ho);
        if (i < 0 || (size_t)i >= fds->n || fds->fds[i] < 0)
                return;
        r = service_listen_again(ho->service, fds->fds[i]);
        if (r < 0) {
                /* Nothing to fall back on: the daemon goes on for its VMs, but no client reaches it. */
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: upgrade rollback: cannot accept on the control socket again");
                return;
        }
        fds->fds[i] = -1;
}

static int upgrade_daemon_store(void *userdata, int fd, char *why, size_t len)
{
        struct upgrade_daemon *ho = userdata;
        int r = notify_fdstore(ho->notify, fd);

        if (r < 0)
                snprintf(why, len, "systemd did not take the handover socket: %s",
                         r == -ENOTCONN ? "no NOTIFY_SOCKET" : strerror(-r));
        return r;
}

static void upgrade_daemon_handed_over(void *userdata, pid_t pid)
{
        struct upgrade_daemon *ho = userdata;
        int r;

        if (pid == 0) {
                ho->stored = true;
                relay_stop(ho->relay);
                return;
        }
        ho->new_pid = pid;
        r = notify_mainpid(ho->notify, pid);
        if (r < 0)
                log_errno(LOG_LEVEL_WARN, r, "vsockmuxd: cannot tell systemd MAINPID=%d", (int)pid);
        relay_stop(ho->relay);
}

const struct upgrade_ops upgrade_daemon_ops = {
        .hold = upgrade_daemon_hold,
        .unhold = upgrade_daemon_unhold,
        .freeze = upgrade_daemon_freeze,
        .handover_done = upgrade_daemon_handover_done,
        .thaw = upgrade_daemon_thaw,
        .store = upgrade_daemon_store,
        .handed_over = upgrade_daemon_handed_over,
};

int upgrade_daemon_adopt_control(const Vsockmux__State__Handover *h, int *fds, size_t n_fds, int *ret_control_fd,
                                 char *why, size_t len)
{
        int32_t i = h->control_listener_fd;

        if (i < 0) {
                *ret_control_fd = -1;
                return 0;
        }
        if ((size_t)i >= n_fds || fds[i] < 0) {
                snprintf(why, len, "the handover names fd %d of %zu", i, n_fds);
                return -EBADMSG;
        }
        *ret_control_fd = fds[i];
        fds[i] = -1;
        return 0;
}

/* Before anything is adopted: a VM this build cannot take is refused with nothing touched. */
static int check_vms(const Vsockmux__State__Handover *h, char *why, size_t len)
{
        char err[UPGRADE_WHY_MAX / 2];
        int r;

        for (size_t i = 0; i < h->n_vms; i++) {
                const Vsockmux__State__SavedState *ss = h->vms[i];

                if (!ss->vm || !ss->vm->name)
                        return snprintf(why, len, "the handover's VM %zu has no state", i), -EBADMSG;
                if (ss->schema_version > SAVESTATE_SCHEMA_VERSION)
                        return snprintf(why, len, "VM %s: state schema version %u, this vsockmuxd reads 1 to %u",
                                        ss->vm->name, ss->schema_version, SAVESTATE_SCHEMA_VERSION),
                               -EPROTONOSUPPORT;
                /* What a restore would refuse in a blob is refused here too: the handover may have
                 * waited in systemd's fd store, and another build wrote it. */
                r = savestate_check_handed(ss, err, sizeof(err));
                if (r < 0)
                        return snprintf(why, len, "the handover's VM %zu: %s", i, err), r;
        }
        return 0;
}

int upgrade_daemon_receive(int fd, bool stored, struct upgrade_received *ret, int *ret_control_fd, pid_t *ret_old_pid,
                           char *why, size_t len)
{
        struct upgrade_received rcv = {};
        int r;

        /* A live upgrade starts us before the old daemon holds its VMs quiet, and the hold may take
         * its whole deadline; a stored handover was written whole before we started. */
        r = upgrade_receive(fd, stored ? UPGRADE_STORE_IO_TIMEOUT_NS : UPGRADE_MAX_TIMEOUT_NS, &rcv.h, &rcv.fds,
                            &rcv.n_fds, why, len);
        if (r < 0)
                return r;
        r = check_vms(rcv.h, why, len);
        if (r >= 0)
                r = upgrade_daemon_adopt_control(rcv.h, rcv.fds, rcv.n_fds, ret_control_fd, why, len);
        if (r < 0) {
                upgrade_received_done(&rcv);
                return r;
        }
        *ret_old_pid = (pid_t)rcv.h->old_pid;
        *ret = rcv;
        return 0;
}

int upgrade_daemon_adopt_vms(struct upgrade_received *rcv, struct vmm *m, char *why, size_t len)
{
        if (!rcv->h)
                return 0;
        for (size_t i = 0; i < rcv->h->n_vms; i++) {
                const Vsockmux__State__Vm *sv = rcv->h->vms[i]->vm;
                struct vmm_error err = {};
                int r = vmm_adopt(m, sv, rcv->fds, rcv->n_fds, NULL, &err);

                if (r < 0)
                        return snprintf(why, len, "cannot take over VM %s: %s", sv->name, err.message), r;
        }
        return 0;
}

void upgrade_daemon_adopt_events(const struct upgrade_received *rcv, struct service *s)
{
        struct event_ring *ring = service_events(s);
        int r;

        if (!rcv->h || !rcv->h->events || !ring)
                return;
        r = event_ring_import(ring, rcv->h->events);
        if (r < 0)
                log_errno(LOG_LEVEL_WARN, r,
                          "vsockmuxd: cannot take over the old daemon's recent events; they number "
                          "from 1 again");
}

void upgrade_received_done(struct upgrade_received *rcv)
{
        for (size_t i = 0; i < rcv->n_fds; i++)
                safe_close(rcv->fds[i]);
        free(rcv->fds);
        if (rcv->h)
                vsockmux__state__handover__free_unpacked(rcv->h, NULL);
        *rcv = (struct upgrade_received){};
}

void upgrade_daemon_take_watchdog(pid_t old_pid)
{
        const char *w = getenv("WATCHDOG_PID");
        char buf[16];

        if (!w || old_pid <= 0 || strtol(w, NULL, 10) != (long)old_pid)
                return;
        snprintf(buf, sizeof(buf), "%d", (int)getpid());
        (void)setenv("WATCHDOG_PID", buf, 1);
}
