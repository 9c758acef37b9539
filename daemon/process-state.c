/* daemon/process-state.c: the process room's part of the saved state: its table out (save) and in (restore), with the V3 check of the supplied endpoints. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/exec-id.h"
#include "daemon/process-private.h"
#include "daemon/savestate.h"
#include "util/log.h"

/* ---- out ---- */

static Vsockmux__State__ProcessState export_state(const struct vmm_process *p)
{
        if (!p->exit_known)
                return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING;
        switch (p->exit.kind) {
        case VMM_EXIT_EXITED: return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED;
        case VMM_EXIT_SIGNALED: return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_SIGNALED;
        default: return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_LOST;
        }
}

/* One allocation holds a process's message, its streams and its argv pointers. */
struct export_entry {
        Vsockmux__State__Process msg;
        Vsockmux__State__Stream streams[_VMM_STREAM_KIND_MAX];
        Vsockmux__State__Stream *stream_ptrs[_VMM_STREAM_KIND_MAX];
        int32_t later_redial_fds[_VMM_STREAM_KIND_MAX][VMM_STREAM_REDIALS_MAX]; /* a live hand-over's */
        char *argv[];
};

static void export_streams(struct vmm_process *p, struct export_entry *e)
{
        Vsockmux__State__Process *o = &e->msg;

        o->streams = e->stream_ptrs;
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                struct vmm_stream *s = &p->streams[k];
                Vsockmux__State__Stream *st = &e->streams[o->n_streams];

                if (s->port == 0)
                        continue;
                vsockmux__state__stream__init(st);
                if (s->stream)
                        relay_stream_get_counters(s->stream, &s->counters);
                st->kind = (Vsockmux__State__StreamKind)(k + 1);
                st->port = s->port;
                st->rx_guest = s->counters.rx_guest;
                st->tx_guest = s->counters.tx_guest;
                st->rx_endpoint = s->counters.rx_endpoint;
                st->tx_endpoint = s->counters.tx_endpoint;
                st->eof = s->done;
                st->endpoint = s->endpoint ? s->endpoint : (char *)"";
                st->endpoint_is_file = s->endpoint_is_file;
                st->endpoint_base = s->endpoint_base;
                st->later_redial_fds = e->later_redial_fds[o->n_streams];
                e->stream_ptrs[o->n_streams++] = st;
        }
}

static struct export_entry *export_process(struct vmm_process *p)
{
        struct export_entry *e = calloc(1, sizeof(*e) + (p->n_argv + 1) * sizeof(char *));
        Vsockmux__State__Process *o;
        size_t bytes = 0;

        if (!e)
                return NULL;
        o = &e->msg;
        vsockmux__state__process__init(o);
        o->pid = p->pid;
        o->exec_id = p->exec_id;
        o->container_id = p->container_id;
        o->argv = e->argv;
        /* argv is for `ps` only: keep the leading words that fit the bound. */
        for (size_t k = 0; k < p->n_argv; k++) {
                bytes += strlen(p->argv[k]) + 1;
                if (bytes > SAVESTATE_MAX_ARGV_BYTES)
                        break;
                e->argv[o->n_argv++] = p->argv[k];
        }
        o->state = export_state(p);
        o->exit_code = p->exit_known && p->exit.kind == VMM_EXIT_EXITED ? p->exit.code : 0;
        if (p->exit_known && p->exit.kind == VMM_EXIT_SIGNALED) {
                o->exit_signal = p->exit.code;
                o->exit_message = (char *)p->exit.message;
        }
        o->wait_call_id = p->wait_outstanding ? p->wait_call_id : 0;
        o->container_init = p->container_init;
        o->terminal = p->terminal;
        o->console_height = p->console_height;
        o->console_width = p->console_width;
        o->log_path = p->log_path ? p->log_path : (char *)"";
        /* A restart or a restore reopens log_path: at its cap and file count, as the exec asked. */
        if (p->log_path) {
                o->log_size_max = p->log_size_max;
                o->log_max_files = p->log_max_files;
        }
        o->log_journald = p->log_journald;
        o->started_ns = p->started_ns;
        o->exited_ns = p->exited_ns;
        if (p->has_creds) {
                o->has_creds = true;
                o->creds_uid = p->creds.uid;
                o->creds_gid = p->creds.gid;
                o->creds_groups = (uint32_t *)p->creds.groups;
                o->n_creds_groups = p->creds.n_groups;
        }
        export_streams(p, e);
        return e;
}

int vmm_processes_export(struct vmm_processes *t, Vsockmux__State__Vm *out)
{
        struct list_head *pos;
        size_t i = 0;

        out->processes = calloc(t->n + 1, sizeof(*out->processes));
        if (!out->processes)
                return -ENOMEM;
        list_for_each(pos, &t->list) {
                struct export_entry *e = export_process(list_entry(pos, struct vmm_process, link));

                if (!e) {
                        vmm_processes_export_done(out);
                        return -ENOMEM;
                }
                out->processes[i] = &e->msg;
                out->n_processes = ++i;
        }
        return 0;
}

void vmm_processes_export_done(Vsockmux__State__Vm *out)
{
        /* Each message is the first member of its entry. */
        for (size_t i = 0; i < out->n_processes; i++)
                free(container_of(out->processes[i], struct export_entry, msg));
        free(out->processes);
        out->processes = NULL;
        out->n_processes = 0;
}

static int cmp_seq(const void *a, const void *b)
{
        uint64_t x = (*(struct vmm_process *const *)a)->seq, y = (*(struct vmm_process *const *)b)->seq;

        return x < y ? -1 : x > y;
}

int vmm_processes_export_pid(struct vmm_processes *t, uint32_t pid, Vsockmux__State__Vm *out)
{
        _cleanup_free_ struct vmm_process **ps = NULL;
        size_t n = 0, k = 0;

        for (struct pid_node *e = pid_index_first(&t->pids, pid); e; e = pid_index_next(e, pid))
                n++;
        ps = calloc(n + 1, sizeof(*ps));
        out->processes = calloc(n + 1, sizeof(*out->processes));
        out->n_processes = 0;
        if (!ps || !out->processes) {
                vmm_processes_export_done(out);
                return -ENOMEM;
        }
        for (struct pid_node *e = pid_index_first(&t->pids, pid); e; e = pid_index_next(e, pid))
                ps[k++] = container_of(e, struct vmm_process, pid_node);
        /* Oldest first, as the table's list has them: a restore's newest of the pid is the last. */
        qsort(ps, n, sizeof(*ps), cmp_seq);
        for (size_t i = 0; i < n; i++) {
                struct export_entry *e = export_process(ps[i]);

                if (!e) {
                        vmm_processes_export_done(out);
                        return -ENOMEM;
                }
                out->processes[out->n_processes++] = &e->msg;
        }
        return 0;
}

/* ---- in ---- */

/* Who names whom between the client's io entries and the saved processes, sorted once: a scan of
 * every process per entry, and of every entry per process, made a restore of 1,000 processes
 * O(n^2) (24M of its 55M instructions). Each view holds indices, sorted by their key and then by
 * index, so a key's run is in the order of the scans it replaces. */
union io_key {
        uint32_t pid;
        const char *exec_id;
};

struct io_view {
        size_t *v;
        size_t n;
        union io_key *keys; /* by a saved process's or an entry's index */
        bool by_pid;        /* else by exec id */
};

struct io_index {
        const Vsockmux__State__Vm *sv;
        const struct vmm_restore_io *io;
        struct io_view proc_by_pid, proc_by_exec;
        struct io_view io_by_pid, io_by_exec;  /* entries naming a pid (without an exec id); an exec id */
        const struct vmm_restore_io *fallback; /* the last entry with neither: the client's rights */
};

#define IO_INDEX_NONE SIZE_MAX

/* Index i's key in w against key. */
static int io_view_cmp(const struct io_view *w, size_t i, const union io_key *key)
{
        const union io_key *k = &w->keys[i];

        if (w->by_pid)
                return k->pid < key->pid ? -1 : k->pid > key->pid;
        return strcmp(k->exec_id, key->exec_id);
}

static int io_sort_cmp(const void *a, const void *b, void *view)
{
        const struct io_view *w = view;
        size_t i = *(const size_t *)a, j = *(const size_t *)b;

        return io_view_cmp(w, i, &w->keys[j]) ?: (i < j ? -1 : i > j);
}

/* Set up in place even when out of memory, so io_view_free() frees what was had. */
static int io_view_init(struct io_view *w, size_t cap, bool by_pid)
{
        *w = (struct io_view){ .v = calloc(cap + 1, sizeof(size_t)),
                               .keys = calloc(cap + 1, sizeof(union io_key)),
                               .by_pid = by_pid };
        return w->v && w->keys ? 0 : -ENOMEM;
}

static void io_view_add(struct io_view *w, size_t i, union io_key key)
{
        w->keys[i] = key;
        w->v[w->n++] = i;
}

static void io_view_free(struct io_view *w)
{
        free(w->v);
        free(w->keys);
}

static void io_index_done(struct io_index *x)
{
        io_view_free(&x->proc_by_pid);
        io_view_free(&x->proc_by_exec);
        io_view_free(&x->io_by_pid);
        io_view_free(&x->io_by_exec);
        *x = (struct io_index){ 0 };
}

static int io_index_build(const Vsockmux__State__Vm *sv, const struct vmm_restore_io *io, size_t n_io,
                          struct io_index *ret)
{
        struct io_index x = { .sv = sv, .io = io };

        if (io_view_init(&x.proc_by_pid, sv->n_processes, true) < 0 ||
            io_view_init(&x.proc_by_exec, sv->n_processes, false) < 0 || io_view_init(&x.io_by_pid, n_io, true) < 0 ||
            io_view_init(&x.io_by_exec, n_io, false) < 0) {
                io_index_done(&x);
                return -ENOMEM;
        }
        for (size_t i = 0; i < sv->n_processes; i++) {
                io_view_add(&x.proc_by_pid, i, (union io_key){ .pid = sv->processes[i]->pid });
                io_view_add(&x.proc_by_exec, i, (union io_key){ .exec_id = sv->processes[i]->exec_id });
        }
        for (size_t k = 0; k < n_io; k++) {
                if (io[k].exec_id)
                        io_view_add(&x.io_by_exec, k, (union io_key){ .exec_id = io[k].exec_id });
                else if (io[k].pid != 0)
                        io_view_add(&x.io_by_pid, k, (union io_key){ .pid = io[k].pid });
                else
                        x.fallback = &io[k];
        }
        qsort_r(x.proc_by_pid.v, x.proc_by_pid.n, sizeof(size_t), io_sort_cmp, &x.proc_by_pid);
        qsort_r(x.proc_by_exec.v, x.proc_by_exec.n, sizeof(size_t), io_sort_cmp, &x.proc_by_exec);
        qsort_r(x.io_by_pid.v, x.io_by_pid.n, sizeof(size_t), io_sort_cmp, &x.io_by_pid);
        qsort_r(x.io_by_exec.v, x.io_by_exec.n, sizeof(size_t), io_sort_cmp, &x.io_by_exec);
        *ret = x;
        return 0;
}

/* The first position in w whose key is not below key (above it, with after). */
static size_t io_view_bound(const struct io_view *w, const union io_key *key, bool after)
{
        size_t lo = 0, hi = w->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = io_view_cmp(w, w->v[mid], key);

                if (c < 0 || (after && c == 0))
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The last index of key's run in w (the highest), or IO_INDEX_NONE. */
static size_t io_view_last(const struct io_view *w, union io_key key)
{
        size_t hi = io_view_bound(w, &key, true);

        return hi > 0 && io_view_cmp(w, w->v[hi - 1], &key) == 0 ? w->v[hi - 1] : IO_INDEX_NONE;
}

/* The first index of key's run in w (the lowest), or IO_INDEX_NONE. */
static size_t io_view_first(const struct io_view *w, union io_key key)
{
        size_t lo = io_view_bound(w, &key, false);

        return lo < w->n && io_view_cmp(w, w->v[lo], &key) == 0 ? w->v[lo] : IO_INDEX_NONE;
}

/* The saved process with this pid that comes last (the pid's newest), or IO_INDEX_NONE. */
static size_t io_index_newest_of_pid(const struct io_index *x, uint32_t pid)
{
        return io_view_last(&x->proc_by_pid, (union io_key){ .pid = pid });
}

/* The process io names: by exec id (its last entry), or the newest (last) entry of its pid. */
static const Vsockmux__State__Process *saved_process(const struct io_index *x, const struct vmm_restore_io *io)
{
        size_t i = io->exec_id ? io_view_last(&x->proc_by_exec, (union io_key){ .exec_id = io->exec_id })
                               : io_index_newest_of_pid(x, io->pid);

        return i == IO_INDEX_NONE ? NULL : x->sv->processes[i];
}

/* Whether an earlier entry names the same target as entry k (the same exec id, or the same pid
 * without one). */
static bool io_named_before(const struct io_index *x, size_t k)
{
        const struct vmm_restore_io *io = &x->io[k];
        size_t first = io->exec_id ? io_view_first(&x->io_by_exec, (union io_key){ .exec_id = io->exec_id })
                                   : io_view_first(&x->io_by_pid, (union io_key){ .pid = io->pid });

        return first != k;
}

static const Vsockmux__State__Stream *saved_stream(const Vsockmux__State__Process *p, enum vmm_stream_kind k)
{
        for (size_t i = 0; i < p->n_streams; i++)
                if ((int)p->streams[i]->kind == (int)k + 1)
                        return p->streams[i];
        return NULL;
}

/* The process as the client named it: an exec id may be a pid's older, exited entry. Formatted
 * only for a refusal: it ran for every entry of every restore. */
static const char *io_who(const struct vmm_restore_io *io, char *buf, size_t size)
{
        if (io->exec_id)
                snprintf(buf, size, "exec %s", io->exec_id);
        else
                snprintf(buf, size, "pid %u", io->pid);
        return buf;
}

static int check_io_one(const Vsockmux__State__Process *p, const struct vmm_restore_io *io, struct vmm_error *err)
{
        char who[EXEC_ID_MAX + 16];

        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                const Vsockmux__State__Stream *st;

                if (!io->path[k] || !io->path[k][0])
                        continue;
                st = saved_stream(p, k);
                if (!st)
                        return vmm_error_set(err, -EINVAL, "%s had no %s stream when saved, but --io gives it one",
                                             io_who(io, who, sizeof(who)), vmm_stream_names[k]);
                if (st->eof && k != VMM_STDIN)
                        return vmm_error_set(err, -EINVAL, "%s's %s had reached EOF when saved; nothing would reach %s",
                                             io_who(io, who, sizeof(who)), vmm_stream_names[k], io->path[k]);
        }
        return 0;
}

/* The entry naming process i by its exec id, or by its pid when it is the pid's newest entry (as
 * vmm_processes_check_io() matched it), else the one with pid 0 (the client's rights for every
 * other process). */
static const struct vmm_restore_io *io_for(const struct io_index *x, size_t i)
{
        const Vsockmux__State__Process *sp = x->sv->processes[i];
        size_t k = io_view_first(&x->io_by_exec, (union io_key){ .exec_id = sp->exec_id });

        if (k != IO_INDEX_NONE)
                return &x->io[k];
        k = io_view_first(&x->io_by_pid, (union io_key){ .pid = sp->pid });
        return k != IO_INDEX_NONE && io_index_newest_of_pid(x, sp->pid) == i ? &x->io[k] : x->fallback;
}

int vmm_processes_check_io(const Vsockmux__State__Vm *sv, const struct vmm_restore_io *io, size_t n_io,
                           const struct vmm_restore_io ***ret_io_of, struct vmm_error *err)
{
        _cleanup_free_ const struct vmm_restore_io **io_of = NULL;
        struct io_index x;
        int r;

        r = io_index_build(sv, io, n_io, &x);
        if (r < 0)
                return vmm_error_set(err, r, "%s", strerror(-r));
        for (size_t i = 0; i < n_io && r >= 0; i++) {
                const Vsockmux__State__Process *p;

                if (io[i].pid == 0 && !io[i].exec_id)
                        continue; /* rights only, for the processes no entry names */
                p = saved_process(&x, &io[i]);
                if (!p && io[i].exec_id)
                        r = vmm_error_set(err, -ENOENT, "--io names exec %s, which the saved state does not hold",
                                          io[i].exec_id);
                else if (!p)
                        r = vmm_error_set(err, -ENOENT, "--io names pid %u, which the saved state does not hold",
                                          io[i].pid);
                else if (io_named_before(&x, i))
                        r = io[i].exec_id ? vmm_error_set(err, -EINVAL, "--io names exec %s twice", io[i].exec_id)
                                          : vmm_error_set(err, -EINVAL, "--io names pid %u twice", io[i].pid);
                else
                        r = check_io_one(p, &io[i], err);
        }
        /* Matched here for the import too: the index is built once per restore. */
        if (r >= 0) {
                io_of = calloc(sv->n_processes + 1, sizeof(*io_of));
                if (!io_of)
                        r = vmm_error_set(err, -ENOMEM, "%s", strerror(ENOMEM));
                for (size_t i = 0; io_of && i < sv->n_processes; i++)
                        io_of[i] = io_for(&x, i);
        }
        io_index_done(&x);
        if (r >= 0)
                *ret_io_of = TAKE_PTR(io_of);
        return r;
}

/* The restoring client named stdout or stderr endpoints: they replace the saved log. */
static bool import_io_names_output(const struct vmm_restore_io *io)
{
        return io &&
               ((io->path[VMM_STDOUT] && io->path[VMM_STDOUT][0]) || (io->path[VMM_STDERR] && io->path[VMM_STDERR][0]));
}

/* A k8s-file log comes back at its saved path unless the client names stdout/stderr endpoints. */
static const char *import_log_path(const Vsockmux__State__Process *sp, const struct vmm_restore_io *io)
{
        if (!sp->log_path[0] || import_io_names_output(io))
                return NULL;
        return sp->log_path;
}

/* A file sink of the record goes on at its length: that is what reached it (exactly once); the
 * guest is told to resume there. The base keeps "length - base = delivered" for the next crash. */
static void import_file_offset(struct vmm_stream *s, const Vsockmux__State__Stream *st, bool recovered)
{
        uint64_t len = s->endpoint_base; /* process_stream_note_file(): its length now */

        if (!s->endpoint_is_file)
                return;
        if (recovered && st->endpoint_is_file && len >= st->endpoint_base) {
                s->counters.tx_endpoint = len - st->endpoint_base;
                s->counters.rx_guest = s->counters.tx_endpoint;
        }
        s->endpoint_base = len >= s->counters.tx_endpoint ? len - s->counters.tx_endpoint : 0;
}

/* A stdin comes back with nothing held: a fresh endpoint has not been read. A file goes on right
 * after what the guest had received by the saved counts; the relay then moves it to the guest's
 * own count (its resume header), which a record written before a crash may trail. With the end
 * confirmation, a stdin that had ended stays ended: no endpoint, and a guest that redials (its
 * confirmation never reached the old daemon) hears the end again. */
static void import_input(struct vmm_stream *s, const Vsockmux__State__Stream *st, bool recovered)
{
        const struct vmm_guest *g = process_guest(s->process);
        uint64_t base = recovered && st->endpoint_is_file ? st->endpoint_base : s->endpoint_base;

        s->counters.rx_endpoint = s->counters.tx_guest;
        if (st->eof && g->stdin_eof) {
                s->endpoint_fd = safe_close(s->endpoint_fd);
                return;
        }
        if (!s->endpoint_is_file || s->endpoint_fd < 0)
                return;
        s->endpoint_base = base;
        if (lseek(s->endpoint_fd, (off_t)(base + s->counters.tx_guest), SEEK_SET) < 0)
                log_warn("vm %s: process %u: cannot move its stdin %s to byte %llu: %s", g->vm_name, s->process->pid,
                         s->endpoint ?: "?", (unsigned long long)(base + s->counters.tx_guest), strerror(errno));
}

static int import_streams(struct vmm_process *p, const Vsockmux__State__Process *sp, bool recovered,
                          struct vmm_error *err)
{
        for (size_t i = 0; i < sp->n_streams; i++) {
                const Vsockmux__State__Stream *st = sp->streams[i];
                struct vmm_stream *s = &p->streams[st->kind - 1];
                int r;

                s->port = st->port;
                s->counters = (struct relay_stream_counters){
                        .rx_guest = st->rx_guest,
                        .tx_guest = st->tx_guest,
                        .rx_endpoint = st->rx_endpoint,
                        .tx_endpoint = st->tx_endpoint,
                };
                s->done = st->eof;
                if (st->kind != VSOCKMUX__STATE__STREAM_KIND__STREAM_KIND_STDIN)
                        import_file_offset(s, st, recovered);
                else
                        import_input(s, st, recovered);
                r = ports_reserve(process_guest(p)->ports, st->port);
                if (r < 0)
                        return vmm_error_set(err, r, "pid %u: cannot reserve port 0x%08x: %s", sp->pid, st->port,
                                             strerror(-r));
        }
        return 0;
}

static void import_exit(struct vmm_process *p, const Vsockmux__State__Process *sp)
{
        if (sp->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED)
                process_set_exit(p, VMM_EXIT_EXITED, sp->exit_code, "");
        else if (sp->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_SIGNALED)
                process_set_exit(p, VMM_EXIT_SIGNALED, sp->exit_signal,
                                 sp->exit_message[0] ? sp->exit_message : "killed by a signal");
        else if (sp->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_LOST)
                process_set_exit(p, VMM_EXIT_LOST, -1, "exit status lost");
}

static int import_process(struct vmm_processes *t, const Vsockmux__State__Process *sp, const struct vmm_restore_io *io,
                          struct vmm_error *err)
{
        struct vmm_exec_params params = {
                .container_id = sp->container_id,
                /* Before exec ids were saved it was empty: the restored process gets a new one. */
                .exec_id = exec_id_is_valid(sp->exec_id) ? sp->exec_id : NULL,
                .argv = (const char *const *)sp->argv,
                .n_argv = sp->n_argv,
                .stdin_path = io ? io->path[VMM_STDIN] : NULL,
                .stdout_path = io ? io->path[VMM_STDOUT] : NULL,
                .stderr_path = io ? io->path[VMM_STDERR] : NULL,
                .creds = io ? io->creds : NULL,
                .terminal = sp->terminal,
                .console_height = (uint16_t)sp->console_height,
                .console_width = (uint16_t)sp->console_width,
                /* A live hand-over brings its log open (adopt_log), not reopened by path nor
                 * given the default one; a save has neither field. */
                .log_k8s_path = sp->log_fd_set ? NULL : import_log_path(sp, io),
                .log_size_max = sp->log_size_max,
                .log_max_files = sp->log_max_files,
                .log_passthrough = sp->log_fd_set,
                /* Without it the daemon's default log would take its output (or nothing would). */
                .log_journald = sp->log_journald && !import_io_names_output(io),
        };
        static const char *const unknown_argv[] = { "?" };
        struct vmm_process *p;
        int r;

        if (params.n_argv == 0) {
                params.argv = unknown_argv;
                params.n_argv = 1;
        }
        r = process_new(t, &params, &p);
        if (r < 0)
                return vmm_error_set(err, r, "pid %u: %s", sp->pid, strerror(-r));
        process_set_pid(p, sp->pid);
        process_set_state(p, VMM_PROCESS_RUNNING);
        p->started_ns = sp->started_ns;
        p->container_init = sp->container_init;
        p->recovering = io && io->recovered;
        r = process_open_endpoints(p, &params, err);
        if (r < 0) {
                process_free(p);
                return r;
        }
        r = process_attach_open(p, ++t->exec_seq);
        if (r < 0)
                log_warn("vm %s: process %u: no attach socket: %s", t->guest->vm_name, p->pid, strerror(-r));
        r = import_streams(p, sp, io && io->recovered, err);
        if (r < 0) {
                process_free(p);
                return r;
        }
        import_exit(p, sp);
        /* When it exited on the source, not when this daemon read the state (0: an older one's). */
        if (sp->exited_ns)
                p->exited_ns = sp->exited_ns;
        return 0;
}

int vmm_processes_import(struct vmm_processes *t, const Vsockmux__State__Vm *sv,
                         const struct vmm_restore_io *const *io_of, struct vmm_error *err)
{
        int r = 0;

        for (size_t i = 0; i < sv->n_processes && r >= 0; i++)
                r = import_process(t, sv->processes[i], io_of ? io_of[i] : NULL, err);
        return r;
}

static int adopt_process(struct vmm_process *p, const Vsockmux__State__Process *sp, struct vmm_error *err)
{
        const struct vmm_guest *g = process_guest(p);
        int r;

        if (sp->wait_call_id != 0 && !p->exit_known) {
                r = bridge_host_preregister_wait(g->bridge, sp->wait_call_id, p->container_id, p->pid, process_on_wait,
                                                 p);
                if (r < 0)
                        return vmm_error_set(err, r, "pid %u: cannot adopt wait %llu: %s", p->pid,
                                             (unsigned long long)sp->wait_call_id, strerror(-r));
                p->wait_call_id = sp->wait_call_id;
                p->wait_outstanding = true;
        }
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                struct vmm_stream *s = &p->streams[k];

                /* An ended stdin may still listen (import_input left it no endpoint). */
                if (s->port == 0 || (s->done && !stream_awaits_stdin_end_redial(s)))
                        continue;
                s->no_redial = k != VMM_STDIN && !stream_redial_expected(s);
                r = stream_listen(s);
                if (r < 0)
                        return vmm_error_set(err, r, "pid %u: cannot listen on %s port 0x%08x: %s", p->pid,
                                             vmm_stream_names[k], s->port, strerror(-r));
        }
        return 0;
}

int vmm_processes_adopt(struct vmm_processes *t, const Vsockmux__State__Vm *sv, struct vmm_error *err)
{
        struct list_head *pos;
        size_t i = 0;

        /* The table holds exactly the saved processes, in their order (vmm_processes_import). */
        list_for_each(pos, &t->list) {
                int r = adopt_process(list_entry(pos, struct vmm_process, link), sv->processes[i++], err);

                if (r < 0)
                        return r;
        }
        return 0;
}
