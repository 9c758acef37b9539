/* daemon/upgrade-ops.h: struct upgrade_daemon is what this daemon hands over in a live upgrade and adopts after one (the upgrade_ops over the service and the vmm); borrows the relay, service, vmm and notify. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "daemon/metrics-http.h"
#include "daemon/notify.h"
#include "daemon/service.h"
#include "daemon/upgrade.h"
#include "daemon/vmm.h"

/* --metrics-listen: its address cannot be handed over inside libmicrohttpd, so it stops for the
 * upgrade (the new daemon binds it) and starts again on a rollback. */
struct upgrade_ops_metrics {
        struct metrics_http **http; /* *http NULL: none */
        const struct metrics_addr *addr;
        gid_t group, read_group;
        const struct metrics_http_ops *ops;
        void *userdata;
};

/* One VM held for an upgrade (upgrade-ops.c). */
struct upgrade_daemon_vm {
        struct vmm_vm *vm; /* NULL once it went away */
        bool held;         /* quiet */
        bool handed;       /* vmm_vm_hand_over() ran: only taking it back serves it again */
};

struct upgrade_daemon {
        struct relay *relay;
        struct upgrade_ops_metrics metrics;
        struct service *service;
        struct vmm *vmm;
        struct daemon_notify *notify;
        pid_t new_pid; /* > 0 once handed over: the loop has been stopped for it */
        bool stored;   /* handed to systemd's fd store for the next daemon: the loop has been stopped */
        struct {
                struct upgrade *u;             /* non-NULL while holding for it */
                struct upgrade_daemon_vm *vms; /* every VM there was when the hold began */
                size_t n, n_held;
                int failed;         /* < 0: a VM went away or could not be held; why says which */
                bool settle_queued; /* a relay_defer() of the outcome is pending */
                char why[UPGRADE_WHY_MAX];
        } hold;
};

/* What the new daemon received, kept from the start until its vmm can adopt the VMs. */
struct upgrade_received {
        Vsockmux__State__Handover *h;
        int *fds; /* -1 once taken */
        size_t n_fds;
};

/* The ops for upgrade_new(), userdata a struct upgrade_daemon. */
extern const struct upgrade_ops upgrade_daemon_ops;

/* The new daemon: what it adopts from a received Handover before it serves. Takes the control
 * listener out of fds (set to -1) into *ret_control_fd, or -1 when none was passed. */
int upgrade_daemon_adopt_control(const Vsockmux__State__Handover *h, int *fds, size_t n_fds, int *ret_control_fd,
                                 char *why, size_t len);

/* The new daemon at start: reads the Handover from fd (stored: the socket a stop left in
 * systemd's fd store) into *ret (its VMs adopted later, once the vmm exists:
 * upgrade_daemon_adopt_vms) and takes out the control listener into *ret_control_fd (-1: none
 * passed); or -errno with why, for the caller to answer the old daemon with. */
int upgrade_daemon_receive(int fd, bool stored, struct upgrade_received *ret, int *ret_control_fd, pid_t *ret_old_pid,
                           char *why, size_t len);
/* Takes over every VM of the Handover into m (vmm_adopt), before the new daemon says "ready".
 * -errno with why naming the VM: the old daemon then takes them back. */
int upgrade_daemon_adopt_vms(struct upgrade_received *rcv, struct vmm *m, char *why, size_t len);
/* The old daemon's ring of recent events, into the service's before anything is emitted here, so
 * followers that dial again replay from their last seq. A failure is logged: numbering then
 * starts again and a follower's replay says so. */
void upgrade_daemon_adopt_events(const struct upgrade_received *rcv, struct service *s);
/* Closes the fds nobody took and frees the message. */
void upgrade_received_done(struct upgrade_received *rcv);

/* systemd's WATCHDOG_PID names the old daemon: the watchdog is ours now that MAINPID= is. */
void upgrade_daemon_take_watchdog(pid_t old_pid);
