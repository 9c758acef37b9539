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

struct upgrade_daemon {
        struct relay *relay;
        struct upgrade_ops_metrics metrics;
        struct service *service;
        struct vmm *vmm;
        struct daemon_notify *notify;
        pid_t new_pid; /* > 0 once handed over: the loop has been stopped for it */
};

/* The ops for upgrade_new(), userdata a struct upgrade_daemon. */
extern const struct upgrade_ops upgrade_daemon_ops;

/* The new daemon: what it adopts from a received Handover before it serves. Takes the control
 * listener out of fds (set to -1) into *ret_control_fd, or -1 when none was passed. Refuses with
 * why what this build cannot adopt. */
int upgrade_daemon_adopt_control(const Vsockmux__State__Handover *h, int *fds, size_t n_fds, int *ret_control_fd,
                                 char *why, size_t len);

/* The new daemon at start: reads the Handover from fd and adopts what this build can; returns 0
 * with the control listener in *ret_control_fd (-1: none passed), or -errno with why, for the
 * caller to answer the old daemon with. Every other fd passed is closed. */
int upgrade_daemon_receive(int fd, int *ret_control_fd, pid_t *ret_old_pid, char *why, size_t len);

/* systemd's WATCHDOG_PID names the old daemon: the watchdog is ours now that MAINPID= is. */
void upgrade_daemon_take_watchdog(pid_t old_pid);
