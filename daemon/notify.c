/* daemon/notify.c: sd_notify (READY, STATUS, RELOADING, STOPPING, WATCHDOG, FDSTORE) and sd_listen_fds for vsockmuxd, through libsystemd. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/notify.h"

struct daemon_notify {
        struct relay *relay;
        struct relay_timer *timer;
        notify_status_fn status;
        void *userdata;
        uint64_t watchdog_usec;
        bool enabled; /* NOTIFY_SOCKET is set */
};

static void names_free(char **names)
{
        for (char **p = names; p && *p; p++)
                free(*p);
        free(names);
}

static bool is_store_name(char **names, int i)
{
        return names && names[i] && strcmp(names[i], NOTIFY_STORE_FD_NAME) == 0;
}

/* The control socket among what was passed besides a stored handover: -1 (none) or its index. */
static int notify_pick(int n, char **names, int *ret_pick, const char **ret_why)
{
        int pick = -1, others = 0, other = -1;

        for (int i = 0; i < n; i++) {
                if (is_store_name(names, i))
                        continue;
                others++;
                other = i;
                if (names && names[i] && strcmp(names[i], NOTIFY_CONTROL_FD_NAME) == 0)
                        pick = i;
        }
        if (others == 0) {
                *ret_pick = -1;
                return 0;
        }
        /* One unnamed socket (systemd says "unknown" without FileDescriptorName=) is the control
         * socket; one named otherwise is a unit mistake worth refusing. */
        if (pick < 0 && others == 1 && (!names || !names[other] || strcmp(names[other], "unknown") == 0))
                pick = other;
        if (pick < 0) {
                *ret_why = "no socket passed is named \"" NOTIFY_CONTROL_FD_NAME "\" (FileDescriptorName=)";
                return -EINVAL;
        }
        if (sd_is_socket_unix(SD_LISTEN_FDS_START + pick, SOCK_STREAM, 1, NULL, 0) <= 0) {
                *ret_why = "the passed control socket is not a listening Unix stream socket";
                return -EINVAL;
        }
        *ret_pick = pick;
        return 0;
}

static int take_fd(int fd, int *ret_fd)
{
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

int notify_listen_fds(int *ret_control_fd, int *ret_store_fd, const char **ret_why)
{
        char **names = NULL;
        int n, pick = -1, store = -1, r;

        *ret_why = NULL;
        *ret_control_fd = *ret_store_fd = -1;
        /* unset_environment: the variables describe this pid only; children must not see them. */
        n = sd_listen_fds_with_names(1, &names);
        if (n <= 0) {
                names_free(names);
                return n;
        }
        /* systemd passes its store newest first: a second one (a store of more than one) is older. */
        for (int i = 0; i < n; i++)
                if (is_store_name(names, i) && store < 0)
                        store = i;
        r = notify_pick(n, names, &pick, ret_why);
        names_free(names);
        for (int i = 0; i < n; i++)
                if (r < 0 || (i != pick && i != store))
                        close(SD_LISTEN_FDS_START + i);
        if (r < 0)
                return r;
        if (pick >= 0) {
                r = take_fd(SD_LISTEN_FDS_START + pick, ret_control_fd);
                if (r < 0) {
                        if (store >= 0)
                                close(SD_LISTEN_FDS_START + store);
                        return r;
                }
        }
        if (store >= 0) {
                r = take_fd(SD_LISTEN_FDS_START + store, ret_store_fd);
                if (r < 0) {
                        *ret_control_fd = safe_close(*ret_control_fd);
                        return r;
                }
        }
        return 0;
}

int notify_fdstore_remove(void)
{
        int r = sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" NOTIFY_STORE_FD_NAME);

        return r < 0 ? r : 0;
}

static int notify_send_status(struct daemon_notify *n, const char *prefix)
{
        char status[256] = "";
        int r;

        if (n->status)
                n->status(status, sizeof(status), n->userdata);
        r = sd_notifyf(0, "%sSTATUS=%s", prefix, status);
        return r < 0 ? r : 0;
}

static void notify_on_tick(struct relay_timer *t, void *userdata)
{
        struct daemon_notify *n = userdata;

        /* This runs on the loop: a loop that no longer turns stops petting, and systemd restarts us. */
        if (n->watchdog_usec)
                (void)sd_notify(0, "WATCHDOG=1");
        (void)notify_send_status(n, "");
        (void)relay_timer_arm(t, n->watchdog_usec ? n->watchdog_usec * 1000 / 2 : NOTIFY_STATUS_INTERVAL_NS);
}

int notify_new(struct relay *r, notify_status_fn status, void *userdata, struct daemon_notify **ret)
{
        _cleanup_(notify_freep) struct daemon_notify *n = NULL;
        const char *sock = getenv("NOTIFY_SOCKET");
        uint64_t usec = 0;
        int k;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->relay = r;
        n->status = status;
        n->userdata = userdata;
        n->enabled = sock && sock[0];
        if (!n->enabled) {
                *ret = TAKE_PTR(n);
                return 0;
        }
        k = sd_watchdog_enabled(0, &usec);
        if (k < 0)
                return k;
        n->watchdog_usec = k > 0 ? usec : 0;
        k = relay_timer_new(r, notify_on_tick, n, &n->timer);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(n);
        return 0;
}

struct daemon_notify *notify_free(struct daemon_notify *n)
{
        if (!n)
                return NULL;
        relay_timer_free(n->timer);
        free(n);
        return NULL;
}

int notify_ready(struct daemon_notify *n)
{
        int r;

        if (!n->enabled)
                return 0;
        r = notify_send_status(n, "READY=1\n");
        if (r < 0)
                return r;
        if (n->watchdog_usec)
                (void)sd_notify(0, "WATCHDOG=1");
        return relay_timer_arm(n->timer, n->watchdog_usec ? n->watchdog_usec * 1000 / 2 : NOTIFY_STATUS_INTERVAL_NS);
}

int notify_reloading(struct daemon_notify *n)
{
        int r;

        if (!n->enabled)
                return 0;
        r = sd_notify(0, "RELOADING=1\nSTATUS=reloading");
        return r < 0 ? r : 0;
}

int notify_stopping(struct daemon_notify *n)
{
        int r;

        if (!n || !n->enabled)
                return 0;
        relay_timer_disarm(n->timer);
        r = sd_notify(0, "STOPPING=1\nSTATUS=stopping");
        return r < 0 ? r : 0;
}

int notify_mainpid(struct daemon_notify *n, pid_t pid)
{
        int r;

        if (!n || !n->enabled)
                return 0;
        relay_timer_disarm(n->timer);
        r = sd_notifyf(0, "MAINPID=%d\nSTATUS=handed over to pid %d", (int)pid, (int)pid);
        return r < 0 ? r : 0;
}

int notify_fdstore(struct daemon_notify *n, int fd)
{
        int r;

        if (!n || !n->enabled) {
                safe_close(fd);
                return -ENOTCONN;
        }
        /* FDPOLL=0: the socket's other end is closed by then, and systemd would drop a socket it
         * sees hung up, with every connection riding in it. */
        r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDPOLL=0\nFDNAME=" NOTIFY_STORE_FD_NAME, &fd, 1);
        safe_close(fd);
        if (r == 0)
                return -ENOTCONN;
        return r < 0 ? r : 0;
}

bool notify_enabled(const struct daemon_notify *n)
{
        return n && n->enabled;
}

uint64_t notify_watchdog_usec(const struct daemon_notify *n)
{
        return n->watchdog_usec;
}
