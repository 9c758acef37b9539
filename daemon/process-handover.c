/* daemon/process-handover.c: the process room's part of a live upgrade: its live streams' fds out (the old daemon) and in (the new one), with nothing redialled or renegotiated. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/process-private.h"
#include "util/log.h"

/* ---- out ---- */

static bool has_log(const struct vmm_process *p)
{
        return p->log_fd >= 0 || p->log_journald;
}

static int check_one(const struct vmm_process *p, struct vmm_error *err)
{
        const char *vm = process_guest(p)->vm_name;

        if (p->state == VMM_PROCESS_PENDING || p->in_exec)
                return vmm_error_set(err, -EBUSY, "an exec is starting in VM %s; retry when it has a pid", vm);
        /* A logged process's backlog copies what its log holds (its output has no endpoint): it
         * stays behind, and the new daemon's attach replays from the upgrade on. */
        if (p->attach && (attach_is_listening(p->attach) || (attach_backlog_bytes(p->attach) > 0 && !has_log(p)) ||
                          attach_has_input(p->attach)))
                return vmm_error_set(err, -EBUSY,
                                     "process %u in VM %s has an attach socket, backlog or stdin, which a live "
                                     "upgrade does not hand over yet",
                                     p->pid, vm);
        return 0;
}

int vmm_processes_check_hand_over(const struct vmm_processes *t, struct vmm_error *err)
{
        struct list_head *pos;

        list_for_each(pos, &t->list) {
                int r = check_one(list_entry(pos, struct vmm_process, link), err);

                if (r < 0)
                        return r;
        }
        return 0;
}

static Vsockmux__State__Stream *exported_stream(Vsockmux__State__Process *o, enum vmm_stream_kind k)
{
        for (size_t i = 0; i < o->n_streams; i++)
                if ((int)o->streams[i]->kind == (int)k + 1)
                        return o->streams[i];
        return NULL;
}

static int add_fd(struct vmm_fds *fds, int fd, int32_t *ret_index)
{
        return fd < 0 ? 0 : vmm_fds_add(fds, fd, ret_index);
}

/* The relay side of one stream, out: what the old daemon held live, none of it closed. */
static int hand_over_stream(struct vmm_stream *s, Vsockmux__State__Stream *st, struct vmm_fds *fds)
{
        int gfd = -1, efd = -1, lfd = -1, r;

        st->guest_fd = st->endpoint_fd = st->listener_fd = st->redial_fd = -1;
        st->redial_fd_set = false;
        if (s->stream) {
                r = relay_stream_release(s->stream, &gfd, &efd, &s->counters);
                if (r < 0)
                        return r;
                s->stream = NULL;
                st->rx_guest = s->counters.rx_guest;
                st->tx_guest = s->counters.tx_guest;
                st->rx_endpoint = s->counters.rx_endpoint;
                st->tx_endpoint = s->counters.tx_endpoint;
        } else
                efd = TAKE_FD(s->endpoint_fd); /* the guest has not dialled yet */
        if (s->listener) {
                r = relay_listener_release(s->listener, &lfd);
                s->listener = NULL;
                if (r < 0) {
                        safe_close(gfd);
                        safe_close(efd);
                        return r;
                }
        }
        r = add_fd(fds, gfd, &st->guest_fd);
        if (r >= 0)
                r = add_fd(fds, efd, &st->endpoint_fd);
        else
                safe_close(efd);
        if (r >= 0)
                r = add_fd(fds, lfd, &st->listener_fd);
        else
                safe_close(lfd);
        /* Redials that came after the freeze, behind guest_fd's unread bytes (stream_take_redial),
         * in the order they came; what is not handed out closes with the stream. */
        if (r >= 0) {
                int rfd = stream_hand_over_redial(s);

                r = add_fd(fds, rfd, &st->redial_fd);
                st->redial_fd_set = r >= 0 && rfd >= 0;
        }
        st->n_later_redial_fds = 0;
        while (r >= 0 && st->redial_fd_set && st->n_later_redial_fds < VMM_STREAM_REDIALS_MAX) {
                int rfd = stream_hand_over_redial(s);

                if (rfd < 0)
                        break;
                r = add_fd(fds, rfd, &st->later_redial_fds[st->n_later_redial_fds++]);
        }
        return r;
}

/* The log, out: the writer's file as open as it was; what it goes on with (its cap, file count,
 * journald) is in the export already (export_process). The old daemon writes no more to it. */
static int hand_over_log(struct vmm_process *p, Vsockmux__State__Process *o, struct vmm_fds *fds)
{
        int r;

        o->log_fd = -1;
        o->log_fd_set = false;
        if (p->log_fd < 0)
                return 0;
        r = vmm_fds_add(fds, TAKE_FD(p->log_fd), &o->log_fd);
        o->log_fd_set = r >= 0;
        return r;
}

int vmm_processes_hand_over(struct vmm_processes *t, Vsockmux__State__Vm *out, struct vmm_fds *fds)
{
        struct list_head *pos;
        size_t i = 0;
        int r = 0;

        /* From here the table is the new daemon's, even if a stream below fails to go. */
        t->handed_over = true;
        list_for_each(pos, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);
                Vsockmux__State__Process *o = out->processes[i++];
                int q;

                relay_timer_disarm(p->timer);
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        Vsockmux__State__Stream *st = exported_stream(o, k);

                        if (!st)
                                continue;
                        q = hand_over_stream(&p->streams[k], st, fds);
                        if (q < 0 && r >= 0)
                                r = q;
                }
                q = hand_over_log(p, o, fds);
                if (q < 0 && r >= 0)
                        r = q;
                process_held_sync(p);
        }
        return r;
}

/* p's successor in t: the same exec id (unique in a table, and carried by the hand-over), not just
 * the same pid, which a guest that reused it gives two entries. */
static struct vmm_process *find_same(struct vmm_processes *t, const struct vmm_process *p)
{
        for (struct pid_node *e = pid_index_first(&t->pids, p->pid); e; e = pid_index_next(e, p->pid)) {
                struct vmm_process *q = container_of(e, struct vmm_process, pid_node);

                if (strcmp(q->exec_id, p->exec_id) == 0)
                        return q;
        }
        return NULL;
}

void vmm_processes_take_waiters(struct vmm_processes *dst, struct vmm_processes *src)
{
        struct list_head *pos, *wpos, *tmp;

        list_for_each(pos, &src->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);
                struct vmm_process *q = p->pid ? find_same(dst, p) : NULL;

                /* Not handed over (no pid yet is refused before): its waiters stay to hear it went. */
                if (!q)
                        continue;
                list_for_each_safe(wpos, tmp, &p->waiters) {
                        struct vmm_waiter *w = list_entry(wpos, struct vmm_waiter, link);

                        list_del(&w->link);
                        w->process = q;
                        list_add_tail(&q->waiters, &w->link);
                }
                if (!q->exit_reported)
                        continue;
                /* Reported while it was built, before anyone was waiting there. */
                list_for_each_safe(wpos, tmp, &q->waiters) {
                        struct vmm_waiter *w = list_entry(wpos, struct vmm_waiter, link);

                        list_del(&w->link);
                        w->fn(q, &q->exit, w->userdata);
                        free(w);
                }
        }
}

/* ---- in ---- */

/* The kept redial's fd, -1 for none; an older daemon's hand-over has none (redial_fd_set false). */
static int take_redial_fd(const Vsockmux__State__Stream *st, int *fds, size_t n_fds)
{
        return st->redial_fd_set ? vmm_fds_take(fds, n_fds, st->redial_fd) : -1;
}

/* The i-th redial kept behind that one, -1 for none: no more than a stream keeps. */
static int take_later_redial_fd(const Vsockmux__State__Stream *st, size_t i, int *fds, size_t n_fds)
{
        if (!st->redial_fd_set || i >= st->n_later_redial_fds || i >= VMM_STREAM_REDIALS_MAX - 1)
                return -1;
        return vmm_fds_take(fds, n_fds, st->later_redial_fds[i]);
}

static void close_redial_fds(const Vsockmux__State__Stream *st, int *fds, size_t n_fds)
{
        safe_close(take_redial_fd(st, fds, n_fds));
        for (size_t i = 0; i < st->n_later_redial_fds; i++)
                safe_close(take_later_redial_fd(st, i, fds, n_fds));
}

static int adopt_stream(struct vmm_stream *s, const Vsockmux__State__Stream *st, int *fds, size_t n_fds)
{
        int efd = vmm_fds_take(fds, n_fds, st->endpoint_fd);
        int gfd = vmm_fds_take(fds, n_fds, st->guest_fd);
        int lfd = vmm_fds_take(fds, n_fds, st->listener_fd);
        int rfd = take_redial_fd(st, fds, n_fds);
        int r = 0;

        if (efd >= 0) {
                /* Its output has a home, as on the old daemon: not kept for attach (nor in the
                 * attach backlog, which would refuse the next upgrade). */
                char *name = strdup(st->endpoint && st->endpoint[0] ? st->endpoint : "(handed over)");

                if (!name) {
                        safe_close(efd);
                        safe_close(gfd);
                        safe_close(lfd);
                        safe_close(rfd);
                        return -ENOMEM;
                }
                free(s->endpoint);
                s->endpoint = name;
                safe_close(s->endpoint_fd);
                s->endpoint_fd = efd;
        }
        if (gfd >= 0) {
                r = stream_adopt(s, gfd);
                if (r < 0)
                        safe_close(gfd);
        }
        /* After the old connection: it drains to its end, then each redial goes on in turn
         * (stream_on_done). */
        if (r >= 0 && rfd >= 0)
                r = stream_adopt_redial(s, rfd);
        else
                safe_close(rfd);
        for (size_t i = 0; i < st->n_later_redial_fds; i++) {
                int later = take_later_redial_fd(st, i, fds, n_fds);

                if (r >= 0 && later >= 0)
                        r = stream_adopt_redial(s, later);
                else
                        safe_close(later);
        }
        if (r >= 0 && lfd >= 0) {
                r = stream_adopt_listener(s, lfd);
                if (r < 0)
                        safe_close(lfd);
        } else
                safe_close(lfd);
        return r;
}

/* The log, in: the fd as the old daemon left it, at its cap, rotated with the rights of the exec's
 * caller (the saved creds, which opened its endpoints too; kept for the record as well). */
static int adopt_log(struct vmm_process *p, const Vsockmux__State__Process *sp, int *fds, size_t n_fds)
{
        struct opener_creds creds = {
                .uid = sp->creds_uid,
                .gid = sp->creds_gid,
                .groups = (const gid_t *)sp->creds_groups,
                .n_groups = sp->n_creds_groups,
        };
        struct vmm_exec_params params = {
                .creds = sp->has_creds ? &creds : NULL,
                .log_size_max = sp->log_size_max,
                .log_max_files = sp->log_max_files,
        };
        int fd = sp->log_fd_set ? vmm_fds_take(fds, n_fds, sp->log_fd) : -1;
        int r = process_keep_creds(p, params.creds);

        if (r < 0 || fd < 0) {
                safe_close(fd);
                return r;
        }
        free(p->log_path);
        p->log_path = strdup(sp->log_path);
        if (!p->log_path) {
                safe_close(fd);
                return -ENOMEM;
        }
        safe_close(p->log_fd);
        p->log_fd = fd;
        /* Its size from the file itself: what the old daemon wrote, whole records (O_APPEND). */
        return process_log_setup(p, &params);
}

static int adopt_process_live(struct vmm_process *p, const Vsockmux__State__Process *sp, int *fds, size_t n_fds,
                              struct vmm_error *err)
{
        const struct vmm_guest *g = process_guest(p);
        int r;

        if (sp->wait_call_id != 0 && !p->exit_known) {
                r = bridge_host_adopt_wait(g->bridge, sp->wait_call_id, p->container_id, p->pid, process_on_wait, p);
                if (r < 0)
                        return vmm_error_set(err, r, "pid %u: cannot adopt wait %llu: %s", p->pid,
                                             (unsigned long long)sp->wait_call_id, strerror(-r));
                p->wait_call_id = sp->wait_call_id;
                p->wait_outstanding = true;
        }
        r = adopt_log(p, sp, fds, n_fds);
        if (r < 0)
                return vmm_error_set(err, r, "pid %u: cannot take over its k8s-file log %s: %s", p->pid, sp->log_path,
                                     strerror(-r));
        for (size_t i = 0; i < sp->n_streams; i++) {
                const Vsockmux__State__Stream *st = sp->streams[i];
                struct vmm_stream *s;

                if ((int)st->kind < 1 || (int)st->kind > (int)_VMM_STREAM_KIND_MAX)
                        continue;
                s = &p->streams[st->kind - 1];
                /* An ended stdin goes on with the end confirmation: a guest whose count did not
                 * come yet hears the end again (import_input left it no endpoint). */
                if (stream_awaits_stdin_end_redial(s)) {
                        safe_close(vmm_fds_take(fds, n_fds, st->endpoint_fd));
                        close_redial_fds(st, fds, n_fds);
                } else if (s->port == 0 || (s->done && !stream_kept_for_redial(s))) {
                        /* Nothing goes on there: what was handed for it is closed. One that ended
                         * but waits for the guest's redial (hcsshim's, of a container init's
                         * output) goes on below, listener and all, or the redial finds nothing. */
                        safe_close(vmm_fds_take(fds, n_fds, st->guest_fd));
                        safe_close(vmm_fds_take(fds, n_fds, st->endpoint_fd));
                        safe_close(vmm_fds_take(fds, n_fds, st->listener_fd));
                        close_redial_fds(st, fds, n_fds);
                        continue;
                }
                r = adopt_stream(s, st, fds, n_fds);
                if (r < 0)
                        return vmm_error_set(err, r, "pid %u: cannot take over its %s stream: %s", p->pid,
                                             vmm_stream_names[s->kind], strerror(-r));
        }
        return 0;
}

int vmm_processes_adopt_live(struct vmm_processes *t, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds,
                             struct vmm_error *err)
{
        struct list_head *pos;
        size_t i = 0;

        /* The table holds exactly the handed-over processes, in their order (vmm_processes_import). */
        list_for_each(pos, &t->list) {
                int r = adopt_process_live(list_entry(pos, struct vmm_process, link), sv->processes[i++], fds, n_fds,
                                           err);

                if (r < 0)
                        return r;
        }
        return 0;
}
