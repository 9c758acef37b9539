/* daemon/upgrade-ops.c: what a live upgrade hands over: the control socket, listening, with the
 * connections still in its backlog. A daemon serving VMs refuses to upgrade for now (their guest
 * connections, streams and calls are not handed over yet), so nothing is ever half moved. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int upgrade_daemon_freeze(void *userdata, Vsockmux__State__Handover *h, struct upgrade_fds *fds, char *why,
                                 size_t len)
{
        struct upgrade_daemon *ho = userdata;
        struct vmm_stats vs;
        bool owned;
        int fd, r;

        vmm_get_stats(ho->vmm, &vs);
        if (vs.vms > 0) {
                snprintf(why, len,
                         "this vsockmuxd serves %u VMs and a live upgrade does not hand VMs over yet "
                         "(save and restore them, or upgrade with none); it serves on",
                         vs.vms);
                return -EBUSY;
        }
        metrics_stop(ho);
        r = service_release_listener(ho->service, &fd, &owned);
        if (r < 0) {
                snprintf(why, len, "cannot hand over the control socket: %s", strerror(-r));
                metrics_start_again(ho);
                return r;
        }
        r = upgrade_fds_add(fds, fd, &h->control_listener_fd);
        if (r < 0) {
                snprintf(why, len, "cannot hand over the control socket: %s", strerror(-r));
                return r;
        }
        h->control_socket_owned = owned;
        return 0;
}

static void upgrade_daemon_handover_done(void *userdata, Vsockmux__State__Handover *h)
{
        (void)userdata;
        (void)h;
}

static void upgrade_daemon_thaw(void *userdata, Vsockmux__State__Handover *h, struct upgrade_fds *fds)
{
        struct upgrade_daemon *ho = userdata;
        int32_t i = h->control_listener_fd;
        int r;

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

static void upgrade_daemon_handed_over(void *userdata, pid_t pid)
{
        struct upgrade_daemon *ho = userdata;
        int r;

        ho->new_pid = pid;
        r = notify_mainpid(ho->notify, pid);
        if (r < 0)
                log_errno(LOG_LEVEL_WARN, r, "vsockmuxd: cannot tell systemd MAINPID=%d", (int)pid);
        relay_stop(ho->relay);
}

const struct upgrade_ops upgrade_daemon_ops = {
        .freeze = upgrade_daemon_freeze,
        .handover_done = upgrade_daemon_handover_done,
        .thaw = upgrade_daemon_thaw,
        .handed_over = upgrade_daemon_handed_over,
};

int upgrade_daemon_adopt_control(const Vsockmux__State__Handover *h, int *fds, size_t n_fds, int *ret_control_fd,
                                 char *why, size_t len)
{
        int32_t i = h->control_listener_fd;

        if (h->n_vms > 0) {
                snprintf(why, len, "the handover holds %zu VMs and this vsockmuxd adopts none yet", h->n_vms);
                return -EOPNOTSUPP;
        }
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

int upgrade_daemon_receive(int fd, int *ret_control_fd, pid_t *ret_old_pid, char *why, size_t len)
{
        Vsockmux__State__Handover *h = NULL;
        _cleanup_free_ int *fds = NULL;
        size_t n_fds = 0;
        int r;

        r = upgrade_receive(fd, &h, &fds, &n_fds, why, len);
        if (r < 0)
                return r;
        r = upgrade_daemon_adopt_control(h, fds, n_fds, ret_control_fd, why, len);
        if (r >= 0)
                *ret_old_pid = (pid_t)h->old_pid;
        for (size_t i = 0; i < n_fds; i++)
                safe_close(fds[i]);
        vsockmux__state__handover__free_unpacked(h, NULL);
        return r;
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
