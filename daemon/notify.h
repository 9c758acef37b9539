/* daemon/notify.h: struct daemon_notify owns the conversation with systemd (sd_notify, the watchdog timer) and finds the socket-activated control socket; borrows the relay. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "relay/relay.h"
#include "util/macro.h"

/* The name vsockmuxd.socket gives the control socket (FileDescriptorName=). */
#define NOTIFY_CONTROL_FD_NAME "control"
/* STATUS= is refreshed this often when no watchdog asks for more. */
#define NOTIFY_STATUS_INTERVAL_NS (10ull * 1000000000ull)

/* The control socket systemd passed (LISTEN_FDS/LISTEN_PID, LISTEN_FDNAMES): the one named
 * "control", or the only one if none is named. Returns 1 with *ret_fd (close-on-exec, a listening
 * AF_UNIX stream socket), 0 when the daemon was not socket-activated, -EINVAL when what was passed
 * is not such a socket (*ret_why says why), or -errno. The LISTEN_* variables are unset: no
 * child inherits them. Fds passed besides the control socket are closed. */
int notify_listen_fd(int *ret_fd, const char **ret_why);

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
/* The watchdog period, 0 when systemd asked for none. */
uint64_t notify_watchdog_usec(const struct daemon_notify *n);
