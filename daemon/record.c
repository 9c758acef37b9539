/* daemon/record.c: the record room: each VM's snapshot in <state-dir>/vms/<name>.state and a journal of what changed since in <name>.journal (daemon/journal.h), encoded on the loop once per loop turn after a change (only the processes that changed; while changes keep coming and no exec waits, once per burst gap) and written by its own thread (appended with one fsync per batch; compacted into a new snapshot, temp file, fsync, rename, once it outgrows the last), and read back into vmm_restore() at start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/journal.h"
#include "daemon/opener.h"
#include "daemon/record.h"
#include "daemon/savestate.h"
#include "util/array.h"
#include "util/list.h"
#include "util/log.h"

/* What the stdin of an interactive exec names as its endpoint: attach clients, not a path. */
#define RECORD_STDIN_FROM_ATTACH "(attach clients)"
/* A journal grows to its snapshot's size, at least this, before the next write compacts it: the
 * snapshot's cost is spread over as many bytes of journal, and a replay reads at most twice it. */
#define RECORD_JOURNAL_MIN (16u << 10)

enum record_job_kind {
        RECORD_SNAPSHOT, /* the whole VM, then a new empty journal of its generation */
        RECORD_APPEND,   /* framed journal records, one fsync */
        RECORD_REMOVE,   /* both files go */
};

/* A snapshot marked this turn waits one turn for the reply of the call that marked it
 * (record_on_timer()): marked, then waited once; a flush or the pass that writes it ends that. */
enum record_snapshot_wait {
        SNAPSHOT_NONE,
        SNAPSHOT_MARKED,
        SNAPSHOT_WAITED,
};

/* One file operation for the writer thread. */
struct record_job {
        struct list_head link;
        struct record_entry *e; /* NULL: a removal, nobody waits for it */
        enum record_job_kind kind;
        char *path, *jpath; /* <name>.state, <name>.journal */
        uint8_t *blob;
        size_t len;
        uint64_t generation; /* RECORD_SNAPSHOT: the snapshot's and its journal's */
        int fd;              /* the journal open for appending, the entry's, lent to the writer */
        int r;
};

struct record_gone {
        char *exec_id;
        uint32_t pid;
};

/* A VM the record writes, on the loop. At most one job per VM is in flight: changes meanwhile
 * are encoded once it is done, so each write holds the newest state, and its fd is the job's. */
struct record_entry {
        struct list_head link;
        struct vmm_vm *vm; /* NULL: forgotten; freed once its job is done */
        bool dirty;
        bool in_flight;
        bool whole;            /* the next write is a snapshot: nothing on disk, or unknown changes */
        uint64_t submitted_ns; /* the last write's queueing, 0: none yet */
        uint32_t *pids;        /* processes changed since the last write, with repeats */
        size_t n_pids, cap_pids;
        /* Processes forgotten since, by exec id: a pid the guest reused may name another entry
         * still, so the journal names the one that went. */
        struct record_gone *gone;
        size_t n_gone, cap_gone;
        uint8_t *head; /* the VM record last appended, not appended again unchanged */
        size_t head_len;
        uint64_t generation; /* of the snapshot and journal on disk */
        size_t snapshot_len, journal_len;
        int fd; /* <name>.journal, -1: none open */
};

/* The writer thread's "a job is done" reaches the loop as an eventfd the loop polls while jobs
 * are in flight. A poll still armed when the record goes is cancelled and frees this at its
 * completion, so it outlives the record. */
struct record_waker {
        struct relay_op op;
        struct vmm_record *rec; /* NULL once the record is gone */
        int fd;
        bool armed;
};

struct vmm_record {
        struct relay *relay;
        char *dir;
        /* See VMM_RECORD_BURST_GAP_NS: without it B3's end (1,000 streams ending within 70 ms)
         * made 350 writes, one per round trip through the writer, each waking it and the loop. */
        uint64_t burst_gap_ns;
        struct relay_timer *timer; /* armed while a VM is marked: its next write's time */
        uint64_t timer_at;         /* when it fires (CLOCK_MONOTONIC ns), while armed */
        enum record_snapshot_wait snapshot_wait;
        struct record_waker *waker;
        struct list_head entries;
        unsigned in_flight;
        /* The writer thread: fsync and rename off the loop. Under lock: */
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct list_head todo, done;
        bool busy, stopping;
};

static int record_path(const struct vmm_record *rec, const char *name, const char *suffix, char *buf, size_t len)
{
        if ((size_t)snprintf(buf, len, "%s/%s%s", rec->dir, name, suffix) >= len)
                return -ENAMETOOLONG;
        return 0;
}

static int unlink_file(const char *path)
{
        return unlink(path) < 0 && errno != ENOENT ? negative_errno() : 0;
}

/* In this order: a crash between the two renames leaves the new snapshot with the older journal,
 * which a snapshot of another generation ignores. */
static int record_write_snapshot(struct record_job *j)
{
        uint8_t h[JOURNAL_HEADER_SIZE];
        int r;

        j->fd = safe_close(j->fd);
        r = savestate_write_file(j->path, j->blob, j->len);
        if (r < 0)
                return r;
        journal_header(j->generation, h);
        r = savestate_write_file(j->jpath, h, sizeof(h));
        if (r < 0)
                return r;
        j->fd = open(j->jpath, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        return j->fd < 0 ? negative_errno() : 0;
}

/* A crash mid-write leaves a torn last record, which the replay stops before. */
static int record_append(struct record_job *j)
{
        size_t off = 0;

        while (off < j->len) {
                ssize_t n = write(j->fd, j->blob + off, j->len - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                off += (size_t)n;
        }
        return fdatasync(j->fd) < 0 ? negative_errno() : 0;
}

/* The snapshot first: a journal without one is dropped at the next start. */
static int record_remove(struct record_job *j)
{
        int r;

        j->fd = safe_close(j->fd);
        r = unlink_file(j->path);
        if (r >= 0)
                r = unlink_file(j->jpath);
        return r;
}

static int record_job_run(struct record_job *j)
{
        switch (j->kind) {
        case RECORD_SNAPSHOT: return record_write_snapshot(j);
        case RECORD_APPEND: return record_append(j);
        default: return record_remove(j);
        }
}

static const char *record_job_verb(const struct record_job *j)
{
        return j->kind == RECORD_SNAPSHOT ? "write" : j->kind == RECORD_APPEND ? "append to" : "remove";
}

static void *record_worker(void *userdata)
{
        struct vmm_record *rec = userdata;

        pthread_mutex_lock(&rec->lock);
        for (;;) {
                struct record_job *j;

                while (list_empty(&rec->todo) && !rec->stopping)
                        pthread_cond_wait(&rec->cond, &rec->lock);
                if (list_empty(&rec->todo))
                        break;
                j = list_entry(rec->todo.next, struct record_job, link);
                list_del(&j->link);
                rec->busy = true;
                pthread_mutex_unlock(&rec->lock);
                j->r = record_job_run(j);
                pthread_mutex_lock(&rec->lock);
                rec->busy = false;
                list_add_tail(&rec->done, &j->link);
                pthread_cond_broadcast(&rec->cond);
                /* Cannot fail short of a counter at its maximum, which the loop's read resets. */
                (void)eventfd_write(rec->waker->fd, 1);
        }
        pthread_mutex_unlock(&rec->lock);
        return NULL;
}

static struct record_job *record_job_free(struct record_job *j)
{
        if (j) {
                safe_close(j->fd);
                free(j->path);
                free(j->jpath);
                free(j->blob);
                free(j);
        }
        return NULL;
}

static struct record_entry *record_entry_find(struct vmm_record *rec, const struct vmm_vm *vm)
{
        struct list_head *pos;

        list_for_each(pos, &rec->entries) {
                struct record_entry *e = list_entry(pos, struct record_entry, link);

                if (e->vm == vm)
                        return e;
        }
        return NULL;
}

static struct record_entry *record_entry_get(struct vmm_record *rec, struct vmm_vm *vm)
{
        struct record_entry *e = record_entry_find(rec, vm);

        if (e)
                return e;
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        e->vm = vm;
        e->whole = true;
        e->fd = -1;
        list_add_tail(&rec->entries, &e->link);
        return e;
}

static void record_entry_clear_gone(struct record_entry *e)
{
        for (size_t i = 0; i < e->n_gone; i++)
                free(e->gone[i].exec_id);
        e->n_gone = 0;
}

static void record_entry_drop(struct record_entry *e)
{
        list_del(&e->link);
        safe_close(e->fd);
        free(e->pids);
        record_entry_clear_gone(e);
        free(e->gone);
        free(e->head);
        free(e);
}

/* The next write is a snapshot: what was marked is in it. */
static void record_entry_reset(struct record_entry *e)
{
        e->whole = true;
        e->n_pids = 0;
        record_entry_clear_gone(e);
        free(e->head);
        e->head = NULL;
        e->head_len = 0;
}

static void record_on_wake(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags);

static struct record_waker *record_waker_free(struct record_waker *w)
{
        if (w) {
                safe_close(w->fd);
                free(w);
        }
        return NULL;
}

static int record_waker_new(struct vmm_record *rec, struct record_waker **ret)
{
        struct record_waker *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        w->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->fd < 0) {
                free(w);
                return negative_errno();
        }
        w->op.fn = record_on_wake;
        w->rec = rec;
        *ret = w;
        return 0;
}

static void record_waker_arm(struct vmm_record *rec)
{
        struct record_waker *w = rec->waker;
        struct io_uring_sqe *sqe;

        if (w->armed)
                return;
        sqe = relay_get_sqe(rec->relay);
        if (!sqe) {
                /* A broken ring: the loop is going down, and the stop collects what is done. */
                log_error("vsockmuxd: cannot watch the record's writer: the ring is broken");
                return;
        }
        io_uring_prep_poll_add(sqe, w->fd, POLLIN);
        relay_sqe_set_op(sqe, &w->op);
        w->armed = true;
}

/* The waker goes with its record: a poll in flight frees it at its (cancelled) completion. */
static void record_waker_detach(struct vmm_record *rec)
{
        struct record_waker *w = TAKE_PTR(rec->waker);
        struct io_uring_sqe *sqe;

        if (!w)
                return;
        if (w->armed && (sqe = relay_get_sqe(rec->relay))) {
                io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&w->op);
                relay_sqe_set_ignore(sqe);
                w->rec = NULL;
                return;
        }
        record_waker_free(w);
}

static void record_enqueue(struct vmm_record *rec, struct record_job *j)
{
        pthread_mutex_lock(&rec->lock);
        list_add_tail(&rec->todo, &j->link);
        pthread_cond_signal(&rec->cond);
        pthread_mutex_unlock(&rec->lock);
        rec->in_flight++;
        record_waker_arm(rec);
}

static void record_submit(struct vmm_record *rec, struct record_entry *e);
static void record_write_when_due(struct vmm_record *rec, struct record_entry *e, bool now);

/* A job done: the entry takes its journal fd back and learns what is on disk now. */
static void record_entry_done(struct record_entry *e, struct record_job *j)
{
        e->in_flight = false;
        safe_close(e->fd);
        e->fd = TAKE_FD(j->fd);
        if (j->r < 0) {
                /* What the journal holds is not known: the next write starts it again. */
                record_entry_reset(e);
                return;
        }
        if (j->kind == RECORD_SNAPSHOT) {
                e->generation = j->generation;
                e->snapshot_len = j->len;
                e->journal_len = JOURNAL_HEADER_SIZE;
        } else if (j->kind == RECORD_APPEND)
                e->journal_len += j->len;
        else
                record_entry_reset(e);
}

/* Finished jobs: their VMs' waiting execs are answered; a VM changed meanwhile is written again,
 * at once with now (a stop, a sync), else when due. */
static void record_collect(struct vmm_record *rec, bool now)
{
        struct list_head done, *pos, *tmp;

        list_init(&done);
        pthread_mutex_lock(&rec->lock);
        list_for_each_safe(pos, tmp, &rec->done) {
                list_del(pos);
                list_add_tail(&done, pos);
        }
        pthread_mutex_unlock(&rec->lock);
        list_for_each_safe(pos, tmp, &done) {
                struct record_job *j = list_entry(pos, struct record_job, link);
                struct record_entry *e = j->e;

                list_del(&j->link);
                rec->in_flight--;
                if (j->r < 0)
                        log_error("vsockmuxd: cannot %s the record %s: %s; a crash now would lose what changed",
                                  record_job_verb(j), j->kind == RECORD_APPEND ? j->jpath : j->path, strerror(-j->r));
                if (e)
                        record_entry_done(e, j);
                record_job_free(j);
                if (!e)
                        continue;
                if (!e->vm) {
                        record_entry_drop(e);
                        continue;
                }
                /* Even when it failed (logged): an exec waiting for it must not hang. */
                vmm_vm_record_written(e->vm);
                if (e->dirty)
                        record_write_when_due(rec, e, now);
        }
}

static void record_on_wake(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags)
{
        struct record_waker *w = container_of(op, struct record_waker, op);
        eventfd_t n;

        w->armed = false;
        if (!w->rec) {
                record_waker_free(w);
                return;
        }
        (void)eventfd_read(w->fd, &n);
        record_collect(w->rec, false);
        if (w->rec->in_flight > 0)
                record_waker_arm(w->rec);
}

/* Waits until the writer has done everything queued (a stop, a save), then collects it. */
static void record_drain(struct vmm_record *rec)
{
        pthread_mutex_lock(&rec->lock);
        while (!list_empty(&rec->todo) || rec->busy)
                pthread_cond_wait(&rec->cond, &rec->lock);
        pthread_mutex_unlock(&rec->lock);
        record_collect(rec, true);
}

/* When e may be written next: now for an exec waiting for its pid or after a quiet spell, else a
 * gap after the last write. */
static uint64_t record_entry_due_ns(const struct vmm_record *rec, const struct record_entry *e, uint64_t now)
{
        if (e->submitted_ns == 0 || now - e->submitted_ns >= rec->burst_gap_ns || vmm_vm_record_awaited(e->vm))
                return now;
        return e->submitted_ns + rec->burst_gap_ns;
}

/* The timer fires at the soonest marked VM's due time; at now it is the next loop pass, after every
 * change this turn made. */
static void record_timer_at(struct vmm_record *rec, uint64_t at, uint64_t now)
{
        if (relay_timer_is_armed(rec->timer) && rec->timer_at <= at)
                return;
        if (relay_timer_arm(rec->timer, at > now ? at - now : 0) < 0) {
                vmm_record_flush(rec);
                return;
        }
        rec->timer_at = at;
}

static void record_write_when_due(struct vmm_record *rec, struct record_entry *e, bool now)
{
        uint64_t t = relay_now_ns(rec->relay);
        uint64_t due = now ? t : record_entry_due_ns(rec, e, t);

        if (due <= t)
                record_submit(rec, e);
        else
                record_timer_at(rec, due, t);
}

/* The VMs that are due are written; the timer waits for the next one. A snapshot encodes a whole
 * VM (a restore of 1,000 processes: 7.9M instructions), and the call that marked it was handled
 * among this turn's completions: its reply is only queued, and goes out with the next turn's
 * submit. So a snapshot's first pass waits for that turn: 1 ns, as the timers run up to the time
 * they started at, and one armed now would still be due in this pass. Once: another snapshot
 * marked meanwhile is written with it, not later again. */
static void record_on_timer(struct relay_timer *t, void *userdata)
{
        struct vmm_record *rec = userdata;
        struct list_head *pos, *tmp;

        if (rec->snapshot_wait == SNAPSHOT_MARKED && relay_timer_arm(t, 1) >= 0) {
                rec->snapshot_wait = SNAPSHOT_WAITED;
                rec->timer_at = relay_now_ns(rec->relay) + 1;
                return;
        }
        rec->snapshot_wait = SNAPSHOT_NONE;
        list_for_each_safe(pos, tmp, &rec->entries) {
                struct record_entry *e = list_entry(pos, struct record_entry, link);

                if (e->vm && e->dirty && !e->in_flight)
                        record_write_when_due(rec, e, false);
        }
}

/* A journal whose snapshot is gone: a crash between a removal's two unlinks. */
static bool record_orphan_journal(int dfd, const char *name)
{
        char state[NAME_MAX + 1];
        size_t l = strlen(name);

        if (l <= strlen(".journal") || strcmp(name + l - strlen(".journal"), ".journal") != 0)
                return false;
        if ((size_t)snprintf(state, sizeof(state), "%.*s.state", (int)(l - strlen(".journal")), name) >= sizeof(state))
                return false;
        return faccessat(dfd, state, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
}

/* A crash between a temp file's creation and its rename leaves it behind. */
static void record_drop_temporaries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".state.tmp.") || strstr(de->d_name, ".journal.tmp.") ||
                    record_orphan_journal(dirfd(d), de->d_name))
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

int vmm_record_new(struct relay *relay, const char *state_dir, uint64_t burst_gap_ns, struct vmm_record **ret)
{
        _cleanup_(vmm_record_freep) struct vmm_record *rec = calloc(1, sizeof(*rec));
        sigset_t all, old;
        int r;

        if (!rec)
                return -ENOMEM;
        rec->relay = relay;
        rec->burst_gap_ns = burst_gap_ns;
        list_init(&rec->entries);
        list_init(&rec->todo);
        list_init(&rec->done);
        pthread_mutex_init(&rec->lock, NULL);
        pthread_cond_init(&rec->cond, NULL);
        if (asprintf(&rec->dir, "%s/%s", state_dir, VMM_RECORD_DIR) < 0) {
                rec->dir = NULL;
                return -ENOMEM;
        }
        /* Endpoint paths and credentials: the daemon's owner only. */
        if (mkdir(rec->dir, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        r = relay_timer_new(relay, record_on_timer, rec, &rec->timer);
        if (r >= 0)
                r = record_waker_new(rec, &rec->waker);
        if (r < 0)
                return r;
        record_drop_temporaries(rec->dir);
        /* Signals stay the loop's (signalfd). */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&rec->thread, NULL, record_worker, rec);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        rec->thread_started = true;
        *ret = TAKE_PTR(rec);
        return 0;
}

struct vmm_record *vmm_record_free(struct vmm_record *rec)
{
        struct list_head *pos, *tmp;

        if (!rec)
                return NULL;
        if (rec->thread_started) {
                /* What was queued is written before we go (the stop's records among it). */
                pthread_mutex_lock(&rec->lock);
                rec->stopping = true;
                pthread_cond_broadcast(&rec->cond);
                pthread_mutex_unlock(&rec->lock);
                pthread_join(rec->thread, NULL);
                record_collect(rec, true);
        }
        list_for_each_safe(pos, tmp, &rec->entries)
                record_entry_drop(list_entry(pos, struct record_entry, link));
        record_waker_detach(rec);
        relay_timer_free(rec->timer);
        pthread_cond_destroy(&rec->cond);
        pthread_mutex_destroy(&rec->lock);
        free(rec->dir);
        free(rec);
        return NULL;
}

static void record_arm(struct vmm_record *rec, struct record_entry *e)
{
        uint64_t now = relay_now_ns(rec->relay);

        e->dirty = true;
        if (e->whole && rec->snapshot_wait == SNAPSHOT_NONE)
                rec->snapshot_wait = SNAPSHOT_MARKED;
        /* One in flight is written again once it is done (record_collect). */
        if (!e->in_flight)
                record_timer_at(rec, record_entry_due_ns(rec, e, now), now);
}

static int record_entry_add_pid(struct record_entry *e, uint32_t pid)
{
        if (ARRAY_RESERVE_ONE(e->pids, e->n_pids, e->cap_pids, 16) < 0)
                return -ENOMEM;
        e->pids[e->n_pids++] = pid;
        return 0;
}

static int record_entry_add_gone(struct record_entry *e, uint32_t pid, const char *exec_id)
{
        char *s;

        if (ARRAY_RESERVE_ONE(e->gone, e->n_gone, e->cap_gone, 8) < 0)
                return -ENOMEM;
        s = strdup(exec_id);
        if (!s)
                return -ENOMEM;
        e->gone[e->n_gone++] = (struct record_gone){ .exec_id = s, .pid = pid };
        return 0;
}

/* vm's entry for a mark; NULL (rec NULL, or out of memory: then written now rather than not at all). */
static struct record_entry *record_entry_to_mark(struct vmm_record *rec, struct vmm_vm *vm)
{
        struct record_entry *e;

        if (!rec)
                return NULL;
        e = record_entry_get(rec, vm);
        if (!e)
                (void)vmm_record_write(rec, vm);
        return e;
}

/* whole: the next write is a snapshot. Otherwise only pid (0: the VM's own fields) is encoded. */
static void record_mark(struct vmm_record *rec, struct vmm_vm *vm, uint32_t pid, bool whole)
{
        struct record_entry *e = record_entry_to_mark(rec, vm);

        if (!e)
                return;
        /* A snapshot holds every process anyway; out of memory, it is the way left. */
        if (whole || (pid != 0 && !e->whole && record_entry_add_pid(e, pid) < 0))
                record_entry_reset(e);
        record_arm(rec, e);
}

void vmm_record_mark(struct vmm_record *rec, struct vmm_vm *vm, uint32_t pid)
{
        record_mark(rec, vm, pid, false);
}

void vmm_record_mark_all(struct vmm_record *rec, struct vmm_vm *vm)
{
        record_mark(rec, vm, 0, true);
}

void vmm_record_mark_gone(struct vmm_record *rec, struct vmm_vm *vm, uint32_t pid, const char *exec_id)
{
        struct record_entry *e = record_entry_to_mark(rec, vm);

        if (!e)
                return;
        if (!e->whole && record_entry_add_gone(e, pid, exec_id) < 0)
                record_entry_reset(e);
        record_arm(rec, e);
}

void vmm_record_flush(struct vmm_record *rec)
{
        struct list_head *pos, *tmp;

        if (!rec)
                return;
        relay_timer_disarm(rec->timer);
        rec->snapshot_wait = SNAPSHOT_NONE;
        list_for_each_safe(pos, tmp, &rec->entries) {
                struct record_entry *e = list_entry(pos, struct record_entry, link);

                /* One in flight is written again once it is done (record_collect). */
                if (e->vm && e->dirty && !e->in_flight)
                        record_submit(rec, e);
        }
}

/* What a save refuses and a record must still keep consistent: an exec without a pid is not
 * recorded (nothing could find it again), and a running process with no outstanding wait can never
 * learn its exit: recorded lost, never 0. And a save's counts come after a flush, a record's need
 * not: bytes read from the guest but still buffered die with a crashed daemon, so the record says
 * it has only what reached the endpoint, and the guest resumes there (at least once, not lost).
 * false: p is not recorded. */
static bool record_filter_process(Vsockmux__State__Process *p)
{
        if (p->pid == 0)
                return false;
        if (p->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING && p->wait_call_id == 0)
                p->state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_LOST;
        for (size_t k = 0; k < p->n_streams; k++)
                if (p->streams[k]->kind != VSOCKMUX__STATE__STREAM_KIND__STREAM_KIND_STDIN)
                        p->streams[k]->rx_guest = p->streams[k]->tx_endpoint;
        return true;
}

static size_t record_filter(Vsockmux__State__Vm *v, Vsockmux__State__Process **keep)
{
        size_t n = 0;

        for (size_t i = 0; i < v->n_processes; i++)
                if (record_filter_process(v->processes[i]))
                        keep[n++] = v->processes[i];
        return n;
}

/* Never one a journal on disk may hold: the wall clock's nanoseconds, past this VM's last. */
static uint64_t record_generation(const struct record_entry *e)
{
        struct timespec ts;
        uint64_t g;

        clock_gettime(CLOCK_REALTIME, &ts);
        g = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        return e && g <= e->generation ? e->generation + 1 : g;
}

/* The snapshot: the whole VM, naming the generation of the journal that follows it. */
static int record_encode(struct vmm_vm *vm, uint64_t generation, uint8_t **ret_blob, size_t *ret_len)
{
        Vsockmux__State__SavedState s;
        Vsockmux__State__Process **all, **keep;
        Vsockmux__State__Vm v;
        struct timespec ts;
        size_t n_all;
        int r;

        vsockmux__state__saved_state__init(&s);
        clock_gettime(CLOCK_REALTIME, &ts);
        s.schema_version = SAVESTATE_SCHEMA_VERSION;
        s.saved_at_unix_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        s.journal_generation = generation;
        s.vm = &v;
        r = vmm_vm_export(vm, &v);
        if (r < 0)
                return r;
        /* The snapshot: execs answered from here on wait for this write. */
        vmm_vm_record_encoded(vm);
        keep = calloc(v.n_processes + 1, sizeof(*keep));
        if (!keep) {
                vmm_vm_export_done(&v);
                return -ENOMEM;
        }
        all = v.processes;
        n_all = v.n_processes;
        v.n_processes = record_filter(&v, keep);
        v.processes = keep;
        r = savestate_encode(&s, ret_blob, ret_len);
        v.processes = all;
        v.n_processes = n_all;
        free(keep);
        vmm_vm_export_done(&v);
        return r;
}

/* The VM's own fields, unless the journal has them so already. */
static int record_add_head(struct record_entry *e, struct vmm_vm *vm, struct journal_buf *b)
{
        journal_record jr = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;
        Vsockmux__State__Vm v;
        size_t before = b->len;
        uint8_t *head;
        int r;

        r = vmm_vm_export_head(vm, &v);
        if (r < 0)
                return r;
        jr.schema_version = SAVESTATE_SCHEMA_VERSION;
        jr.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_VM;
        jr.vm = &v;
        r = journal_buf_add(b, &jr);
        vmm_vm_export_done(&v);
        if (r < 0)
                return r;
        if (b->len - before == e->head_len && memcmp(b->data + before, e->head, e->head_len) == 0) {
                b->len = before;
                return 0;
        }
        head = malloc(b->len - before);
        if (!head)
                return -ENOMEM;
        memcpy(head, b->data + before, b->len - before);
        free(e->head);
        e->head = head;
        e->head_len = b->len - before;
        return 0;
}

static int cmp_pid(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return x < y ? -1 : x > y;
}

/* Process exec_id is forgotten. gone_pid too, for a reader that knows only it. */
static int record_add_gone(const char *exec_id, uint32_t pid, struct journal_buf *b)
{
        journal_record jr = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;

        jr.schema_version = SAVESTATE_SCHEMA_VERSION;
        jr.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS_GONE;
        jr.gone_exec_id = (char *)exec_id;
        jr.gone_pid = pid;
        return journal_buf_add(b, &jr);
}

/* The processes of pid as they are now: every entry of a reused one, oldest first, so a replay
 * appends them in the table's order. None: the gone list names what went. */
static int record_add_pid(struct vmm_vm *vm, uint32_t pid, struct journal_buf *b)
{
        journal_record jr = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;
        Vsockmux__State__Vm v;
        int r;

        jr.schema_version = SAVESTATE_SCHEMA_VERSION;
        jr.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS;
        r = vmm_vm_export_pid(vm, pid, &v);
        for (size_t i = 0; r >= 0 && i < v.n_processes; i++) {
                jr.process = v.processes[i];
                if (record_filter_process(jr.process))
                        r = journal_buf_add(b, &jr);
        }
        vmm_vm_export_done(&v);
        return r;
}

/* What changed since the last write, the VM's own fields first (a wait's call id is below the
 * next one it names). */
static int record_encode_changes(struct record_entry *e, struct vmm_vm *vm, struct journal_buf *b)
{
        int r;

        r = record_add_head(e, vm, b);
        /* Execs answered from here on wait for this write. */
        vmm_vm_record_encoded(vm);
        /* The forgotten first: a new exec may have taken a forgotten one's exec id since. */
        for (size_t i = 0; r >= 0 && i < e->n_gone; i++)
                r = record_add_gone(e->gone[i].exec_id, e->gone[i].pid, b);
        record_entry_clear_gone(e);
        if (e->n_pids > 1)
                qsort(e->pids, e->n_pids, sizeof(*e->pids), cmp_pid);
        for (size_t i = 0; r >= 0 && i < e->n_pids; i++)
                if (i == 0 || e->pids[i] != e->pids[i - 1])
                        r = record_add_pid(vm, e->pids[i], b);
        e->n_pids = 0;
        return r;
}

static bool record_entry_wants_snapshot(const struct record_entry *e)
{
        size_t bound = e->snapshot_len > RECORD_JOURNAL_MIN ? e->snapshot_len : RECORD_JOURNAL_MIN;

        return e->whole || e->fd < 0 || e->journal_len > bound;
}

/* A job writing vm's newest state (e NULL or whole: a snapshot, else what changed), or removing
 * the files of a saved one (the destination's now). *ret NULL: nothing changed. */
static int record_job_new(struct vmm_record *rec, struct record_entry *e, struct vmm_vm *vm, bool whole,
                          struct record_job **ret)
{
        _cleanup_(journal_buf_done) struct journal_buf b = { 0 };
        struct record_job *j = calloc(1, sizeof(*j));
        char path[PATH_MAX], jpath[PATH_MAX];
        int r;

        if (!j)
                return -ENOMEM;
        j->fd = -1;
        r = record_path(rec, vmm_vm_name(vm), ".state", path, sizeof(path));
        if (r >= 0)
                r = record_path(rec, vmm_vm_name(vm), ".journal", jpath, sizeof(jpath));
        if (r >= 0 && (!(j->path = strdup(path)) || !(j->jpath = strdup(jpath))))
                r = -ENOMEM;
        if (r >= 0 && vmm_vm_is_saved(vm)) {
                j->kind = RECORD_REMOVE;
                vmm_vm_record_encoded(vm);
        } else if (r >= 0 && whole) {
                j->kind = RECORD_SNAPSHOT;
                j->generation = record_generation(e);
                r = record_encode(vm, j->generation, &j->blob, &j->len);
        } else if (r >= 0) {
                j->kind = RECORD_APPEND;
                r = record_encode_changes(e, vm, &b);
                j->blob = TAKE_PTR(b.data);
                j->len = b.len;
        }
        if (r < 0 || (j->kind == RECORD_APPEND && j->len == 0)) {
                record_job_free(j);
                j = NULL;
        }
        if (r < 0)
                return r;
        *ret = j;
        return 0;
}

static void record_submit(struct vmm_record *rec, struct record_entry *e)
{
        bool whole = record_entry_wants_snapshot(e);
        struct record_job *j;
        int r;

        e->dirty = false;
        e->submitted_ns = relay_now_ns(rec->relay);
        if (whole)
                record_entry_reset(e);
        e->whole = false;
        r = record_job_new(rec, e, e->vm, whole, &j);
        if (r < 0) {
                log_error("vm %s: cannot encode its record: %s; a crash now would lose what changed",
                          vmm_vm_name(e->vm), strerror(-r));
                record_entry_reset(e);
                vmm_vm_record_encoded(e->vm);
                vmm_vm_record_written(e->vm);
                return;
        }
        if (!j) {
                /* Nothing to write: an exec waiting for it has it on disk already. */
                vmm_vm_record_written(e->vm);
                return;
        }
        j->e = e;
        j->fd = TAKE_FD(e->fd);
        e->in_flight = true;
        record_enqueue(rec, j);
}

void vmm_record_sync(struct vmm_record *rec)
{
        if (!rec)
                return;
        /* A collected job may queue the next write of its VM: drain that too. */
        do
                record_drain(rec);
        while (rec->in_flight > 0);
}

int vmm_record_write(struct vmm_record *rec, struct vmm_vm *vm)
{
        struct record_entry *e;
        struct record_job *j = NULL;
        int r;

        /* In order: nothing queued for it may land after this. */
        vmm_record_sync(rec);
        e = record_entry_find(rec, vm);
        if (e) {
                e->dirty = false;
                record_entry_reset(e);
                e->whole = false;
        }
        r = record_job_new(rec, e, vm, true, &j);
        if (r >= 0) {
                if (e)
                        j->fd = TAKE_FD(e->fd);
                r = j->r = record_job_run(j);
                if (r < 0)
                        log_error("vm %s: cannot %s its record %s: %s; a crash now would lose what changed",
                                  vmm_vm_name(vm), record_job_verb(j), j->path, strerror(-r));
                if (e)
                        record_entry_done(e, j);
                record_job_free(j);
        } else
                vmm_vm_record_encoded(vm);
        /* Even when it failed (logged): an exec waiting for it must not hang. */
        vmm_vm_record_written(vm);
        return r;
}

void vmm_record_forget(struct vmm_record *rec, struct vmm_vm *vm, bool remove)
{
        struct record_entry *e;
        char path[PATH_MAX], jpath[PATH_MAX];
        struct record_job *j;

        if (!rec)
                return;
        e = record_entry_find(rec, vm);
        if (e) {
                e->vm = NULL;
                e->dirty = false;
                if (!e->in_flight)
                        record_entry_drop(e);
        }
        if (!remove || record_path(rec, vmm_vm_name(vm), ".state", path, sizeof(path)) < 0 ||
            record_path(rec, vmm_vm_name(vm), ".journal", jpath, sizeof(jpath)) < 0)
                return;
        /* Through the writer: after any write of it still queued. */
        j = calloc(1, sizeof(*j));
        if (j) {
                j->kind = RECORD_REMOVE;
                j->fd = -1;
                j->path = strdup(path);
                j->jpath = strdup(jpath);
        }
        if (j && j->path && j->jpath) {
                record_enqueue(rec, j);
                return;
        }
        record_job_free(j);
        if (unlink_file(path) < 0 || unlink_file(jpath) < 0)
                log_warn("vm %s: cannot remove its record %s: %m", vmm_vm_name(vm), path);
}

/* ---- recovery ---- */

/* One record's endpoints and rights, pointing into its decoded message. */
struct record_io {
        struct vmm_restore_io *io;
        struct opener_creds *creds;
        size_t n;
};

static void record_io_done(struct record_io *rio)
{
        free(rio->io);
        free(rio->creds);
        *rio = (struct record_io){ 0 };
}

static const char *record_endpoint(const Vsockmux__State__Stream *st)
{
        /* Ended streams take no endpoint (restore's V3 check refuses one); attach input is no path. */
        if (st->eof || !st->endpoint || !st->endpoint[0] || st->endpoint[0] != '/' ||
            strcmp(st->endpoint, RECORD_STDIN_FROM_ATTACH) == 0)
                return NULL;
        return st->endpoint;
}

static int record_io_build(const Vsockmux__State__Vm *v, struct record_io *rio)
{
        rio->io = calloc(v->n_processes + 1, sizeof(*rio->io));
        rio->creds = calloc(v->n_processes + 1, sizeof(*rio->creds));
        if (!rio->io || !rio->creds) {
                record_io_done(rio);
                return -ENOMEM;
        }
        for (size_t i = 0; i < v->n_processes; i++) {
                const Vsockmux__State__Process *p = v->processes[i];
                struct vmm_restore_io *io = &rio->io[rio->n++];

                /* By exec id: a pid the guest reused names two entries. */
                *io = (struct vmm_restore_io){ .pid = p->pid,
                                               .exec_id = p->exec_id[0] ? p->exec_id : NULL,
                                               .recovered = true };
                for (size_t k = 0; k < p->n_streams; k++)
                        io->path[p->streams[k]->kind - 1] = record_endpoint(p->streams[k]);
                /* Never the daemon's own rights for what a client opened with its own. */
                if (p->has_creds) {
                        rio->creds[i] = (struct opener_creds){
                                .uid = p->creds_uid,
                                .gid = p->creds_gid,
                                .groups = (const gid_t *)p->creds_groups,
                                .n_groups = p->n_creds_groups,
                        };
                        io->creds = &rio->creds[i];
                }
        }
        return 0;
}

/* Moves a record that cannot be read out of the way, so the next start does not trip on it: its
 * snapshot (file) and its journal. */
static void record_set_aside(const struct vmm_record *rec, const char *file, const char *why)
{
        char from[PATH_MAX], to[PATH_MAX];
        size_t l = strlen(file) - strlen(".state");

        if ((size_t)snprintf(from, sizeof(from), "%s/%s", rec->dir, file) >= sizeof(from) ||
            (size_t)snprintf(to, sizeof(to), "%s/%s.bad", rec->dir, file) >= sizeof(to))
                return;
        if (rename(from, to) < 0)
                log_error("vsockmuxd: record %s does not parse (%s) and cannot be moved aside: %m", from, why);
        else
                log_error("vsockmuxd: record %s does not parse (%s); moved aside to %s, its VM is not recovered", from,
                          why, to);
        if ((size_t)snprintf(from, sizeof(from), "%s/%.*s.journal", rec->dir, (int)l, file) < sizeof(from) &&
            (size_t)snprintf(to, sizeof(to), "%s.bad", from) < sizeof(to) && rename(from, to) < 0 && errno != ENOENT)
                log_error("vsockmuxd: cannot move the journal %s aside: %m", from);
}

/* Applies <name>.journal, when there is one of the snapshot's generation: a VM an older daemon
 * recorded has none. -EBADMSG or -EPROTONOSUPPORT with why: the record is set aside. */
static int record_replay(struct vmm_record *rec, const char *file, savestate_msg *msg, char *why, size_t whylen)
{
        _cleanup_free_ uint8_t *buf = NULL;
        struct journal_replay res;
        char path[PATH_MAX];
        size_t len = 0;
        int r;

        if ((size_t)snprintf(path, sizeof(path), "%s/%.*s.journal", rec->dir, (int)(strlen(file) - strlen(".state")),
                             file) >= sizeof(path))
                return -ENAMETOOLONG;
        r = savestate_read_file(path, &buf, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                snprintf(why, whylen, "cannot read its journal: %s", strerror(-r));
                return -EBADMSG;
        }
        r = journal_replay(msg, buf, len, &res, why, whylen);
        if (r == -ESTALE) {
                /* A crash between a compaction's two steps: the snapshot holds it all. */
                log_info("vm %s: journal %s ignored: %s", msg->vm->name, path, why);
                return 0;
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return r == -EPROTONOSUPPORT ? r : -EBADMSG;
        if (res.torn)
                log_warn("vm %s: journal %s ends in %zu bytes that frame no good record (a crash mid-write?): "
                         "recovered up to the last good one, %zu records in",
                         msg->vm->name, path, len - res.good_len, res.applied);
        return 0;
}

/* Counts what the record holds and what is lost already: no wait means no exit to learn. */
static void record_count(const Vsockmux__State__Vm *v, struct vmm_record_summary *sum)
{
        for (size_t i = 0; i < v->n_processes; i++) {
                sum->processes++;
                if (v->processes[i]->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_LOST)
                        sum->lost++;
        }
}

/* The snapshot, with its journal applied. -EBADMSG or -EPROTONOSUPPORT with why: set it aside. */
static int record_load(struct vmm_record *rec, const char *file, savestate_msg **ret, char *why, size_t whylen)
{
        _cleanup_(savestate_msg_freep) savestate_msg *msg = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        char path[PATH_MAX];
        size_t len = 0;
        int r;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", rec->dir, file) >= sizeof(path))
                return -ENAMETOOLONG;
        r = savestate_read_file(path, &buf, &len);
        if (r < 0) {
                snprintf(why, whylen, "cannot read it: %s", strerror(-r));
                return -EBADMSG;
        }
        r = savestate_decode(buf, len, &msg, why, whylen);
        if (r >= 0 && (strlen(file) != strlen(msg->vm->name) + strlen(".state") ||
                       strncmp(file, msg->vm->name, strlen(msg->vm->name)) != 0))
                r = -EBADMSG, snprintf(why, whylen, "it holds VM '%s', not the one its name says", msg->vm->name);
        if (r >= 0)
                r = record_replay(rec, file, msg, why, whylen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(msg);
        return 0;
}

static int record_recover_one(struct vmm_record *rec, const char *file, vmm_record_recover_fn fn, void *userdata,
                              struct vmm_record_summary *sum)
{
        _cleanup_(savestate_msg_freep) savestate_msg *msg = NULL;
        _cleanup_free_ uint8_t *blob = NULL;
        char why[VMM_ERROR_MESSAGE_MAX] = "";
        struct record_io rio = { 0 };
        struct vmm_error err = { 0 };
        size_t blob_len = 0;
        int r;

        r = record_load(rec, file, &msg, why, sizeof(why));
        if (r == -EBADMSG || r == -EPROTONOSUPPORT) {
                record_set_aside(rec, file, why);
                sum->bad++;
                return 0;
        }
        if (r < 0)
                return r;
        msg->vm->bridge_next_id += VMM_RECORD_CALL_ID_MARGIN;
        msg->journal_generation = 0;
        r = savestate_encode(msg, &blob, &blob_len);
        if (r == -EINVAL || r == -EFBIG) {
                /* The checks the snapshot passed, its journal's changes did not. */
                record_set_aside(rec, file, "its journal's changes leave a state that does not check");
                sum->bad++;
                return 0;
        }
        if (r >= 0)
                r = record_io_build(msg->vm, &rio);
        if (r < 0)
                return r;
        r = fn(
                &(struct vmm_record_entry){
                        .name = msg->vm->name, .blob = blob, .len = blob_len, .io = rio.io, .n_io = rio.n },
                userdata, &err);
        if (r < 0) {
                log_error("vm %s: cannot recover it from %s/%s: %s; the record is left in place", msg->vm->name,
                          rec->dir, file, err.message[0] ? err.message : strerror(-r));
                sum->failed++;
        } else {
                sum->vms++;
                record_count(msg->vm, sum);
        }
        record_io_done(&rio);
        return 0;
}

int vmm_record_recover(struct vmm_record *rec, vmm_record_recover_fn fn, void *userdata, struct vmm_record_summary *ret)
{
        struct vmm_record_summary sum = { 0 };
        struct dirent **names = NULL;
        int n, r = 0;

        n = scandir(rec->dir, &names, NULL, alphasort);
        if (n < 0)
                return negative_errno();
        for (int i = 0; i < n; i++) {
                const char *f = names[i]->d_name;
                size_t l = strlen(f);

                if (r >= 0 && f[0] != '.' && l > strlen(".state") && strcmp(f + l - strlen(".state"), ".state") == 0)
                        r = record_recover_one(rec, f, fn, userdata, &sum);
                free(names[i]);
        }
        free(names);
        if (r < 0)
                return r;
        *ret = sum;
        return 0;
}
