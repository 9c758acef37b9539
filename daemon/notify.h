/* daemon/notify.h: struct daemon_notify owns the conversation with systemd (sd_notify, the watchdog timer) and finds what it passed (the socket-activated control socket, a stop's stored handover); borrows the relay. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "relay/relay.h"
#include "util/macro.h"

/* The name vsockmuxd.socket gives the control socket (FileDescriptorName=). */
#define NOTIFY_CONTROL_FD_NAME "control"
/* STATUS= is refreshed this often when no watchdog asks for more. */
#define NOTIFY_STATUS_INTERVAL_NS (10ull * 1000000000ull)

/* The name of the socket a stop leaves in systemd's fd store (FDNAME=), holding the handover for
 * the next daemon (upgrade_store()). */
#define NOTIFY_STORE_FD_NAME "vsockmux-handover"

/* What systemd passed (LISTEN_FDS/LISTEN_PID, LISTEN_FDNAMES): *ret_store_fd, the fd named
 * NOTIFY_STORE_FD_NAME, and *ret_control_fd, the control socket among the others (the one named
 * "control", or the only one if none is named); -1 for each one not passed. Both are
 * close-on-exec; the control socket is a listening AF_UNIX stream socket. Returns 0, -EINVAL when
 * what was passed is not such a socket (*ret_why says why), or -errno; nothing is kept then. The
 * LISTEN_* variables are unset: no child inherits them. Fds passed besides those are closed. */
int notify_listen_fds(int *ret_control_fd, int *ret_store_fd, const char **ret_why);
/* FDSTOREREMOVE=1 for NOTIFY_STORE_FD_NAME: what it held was read. Without NOTIFY_SOCKET, 0. */
int notify_fdstore_remove(void);

/* Fills buf with the STATUS= text ("2 VMs, 5 processes, ..."). */
typedef void (*notify_status_fn)(char *buf, size_t len, void *userdata);

struct daemon_notify;

/* Without NOTIFY_SOCKET every call below does nothing but succeed. With WATCHDOG_USEC (for this
 * pid) a loop timer sends WATCHDOG=1 every half period, so only a loop that still turns keeps the
 * service alive; each tick (or every NOTIFY_STATUS_INTERVAL_NS) also refreshes STATUS=. */
int notify_new(struct relay *r, notify_status_fn status, void *userdata, struct daemon_notify **ret);
struct daemon_notify *notify_free(struct daemon_notify *n);
DEFINE_CLEANUP(struct daemon_notify *, notify_free);

/* READY=1 with STATUS=: the control socket is being served. */
int notify_ready(struct daemon_notify *n);
/* RELOADING=1 before a SIGHUP's re-read, READY=1 after. */
int notify_reloading(struct daemon_notify *n);
int notify_stopping(struct daemon_notify *n);
/* A live upgrade handed over to pid: MAINPID= (the unit needs NotifyAccess=all for the new
 * daemon's own messages before systemd switched to it). */
int notify_mainpid(struct daemon_notify *n, pid_t pid);
/* FDSTORE=1 (FDPOLL=0, FDNAME=NOTIFY_STORE_FD_NAME) with fd, which is taken and closed here:
 * systemd keeps its copy for the next start of the unit (FileDescriptorStoreMax= must allow it).
 * -ENOTCONN without NOTIFY_SOCKET. */
int notify_fdstore(struct daemon_notify *n, int fd);
/* NOTIFY_SOCKET is set: systemd (or its stand-in) listens. */
bool notify_enabled(const struct daemon_notify *n);
/* The watchdog period, 0 when systemd asked for none. */
uint64_t notify_watchdog_usec(const struct daemon_notify *n);
