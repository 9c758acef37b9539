/* daemon/record.c: the record room: each VM's saved state in <state-dir>/vms/<name>.state, rewritten (temp file, fsync, rename, fsync of the directory) once per loop turn after a change, and read back into vmm_restore() at start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/opener.h"
#include "daemon/record.h"
#include "daemon/savestate.h"
#include "util/log.h"

/* What the stdin of an interactive exec names as its endpoint: attach clients, not a path. */
#define RECORD_STDIN_FROM_ATTACH "(attach clients)"

struct vmm_record {
        struct relay *relay;
        char *dir;
        struct relay_timer *timer; /* armed while a VM is marked: the end of this loop turn */
        struct vmm_vm **dirty;
        size_t n_dirty, cap_dirty;
};

static int record_path(const struct vmm_record *rec, const char *name, const char *suffix, char *buf, size_t len)
{
        if ((size_t)snprintf(buf, len, "%s/%s.state%s", rec->dir, name, suffix) >= len)
                return -ENAMETOOLONG;
        return 0;
}

static void record_on_timer(struct relay_timer *t, void *userdata)
{
        vmm_record_flush(userdata);
}

/* A crash between the temp file's creation and its rename leaves it behind. */
static void record_drop_temporaries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".state.tmp."))
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

int vmm_record_new(struct relay *relay, const char *state_dir, struct vmm_record **ret)
{
        _cleanup_(vmm_record_freep) struct vmm_record *rec = calloc(1, sizeof(*rec));
        int r;

        if (!rec)
                return -ENOMEM;
        rec->relay = relay;
        if (asprintf(&rec->dir, "%s/%s", state_dir, VMM_RECORD_DIR) < 0) {
                rec->dir = NULL;
                return -ENOMEM;
        }
        /* Endpoint paths and credentials: the daemon's owner only. */
        if (mkdir(rec->dir, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        r = relay_timer_new(relay, record_on_timer, rec, &rec->timer);
        if (r < 0)
                return r;
        record_drop_temporaries(rec->dir);
        *ret = TAKE_PTR(rec);
        return 0;
}

struct vmm_record *vmm_record_free(struct vmm_record *rec)
{
        if (rec) {
                relay_timer_free(rec->timer);
                free(rec->dirty);
                free(rec->dir);
                free(rec);
        }
        return NULL;
}

static bool record_is_dirty(const struct vmm_record *rec, const struct vmm_vm *vm)
{
        for (size_t i = 0; i < rec->n_dirty; i++)
                if (rec->dirty[i] == vm)
                        return true;
        return false;
}

static void record_undirty(struct vmm_record *rec, const struct vmm_vm *vm)
{
        for (size_t i = 0; i < rec->n_dirty; i++)
                if (rec->dirty[i] == vm) {
                        rec->dirty[i] = rec->dirty[--rec->n_dirty];
                        return;
                }
}

void vmm_record_mark(struct vmm_record *rec, struct vmm_vm *vm)
{
        if (!rec || record_is_dirty(rec, vm))
                return;
        if (rec->n_dirty == rec->cap_dirty) {
                size_t cap = rec->cap_dirty ? rec->cap_dirty * 2 : 8;
                struct vmm_vm **d = reallocarray(rec->dirty, cap, sizeof(*d));

                if (!d) {
                        /* Out of memory: write it now rather than not at all. */
                        (void)vmm_record_write(rec, vm);
                        return;
                }
                rec->dirty = d;
                rec->cap_dirty = cap;
        }
        rec->dirty[rec->n_dirty++] = vm;
        /* 0 ns: the next pass of the loop, after every change this turn made. */
        if (!relay_timer_is_armed(rec->timer) && relay_timer_arm(rec->timer, 0) < 0)
                vmm_record_flush(rec);
}

void vmm_record_flush(struct vmm_record *rec)
{
        if (!rec)
                return;
        relay_timer_disarm(rec->timer);
        while (rec->n_dirty > 0)
                (void)vmm_record_write(rec, rec->dirty[rec->n_dirty - 1]);
}

/* What a save refuses and a record must still keep consistent: an exec without a pid is not
 * recorded (nothing could find it again), and a running process with no outstanding wait can never
 * learn its exit: recorded lost, never 0. */
static size_t record_filter(Vsockmux__State__Vm *v, Vsockmux__State__Process **keep)
{
        size_t n = 0;

        for (size_t i = 0; i < v->n_processes; i++) {
                Vsockmux__State__Process *p = v->processes[i];

                if (p->pid == 0)
                        continue;
                if (p->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING && p->wait_call_id == 0)
                        p->state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_LOST;
                keep[n++] = p;
        }
        return n;
}

static int record_encode(struct vmm_vm *vm, uint8_t **ret_blob, size_t *ret_len)
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
        s.vm = &v;
        r = vmm_vm_export(vm, &v);
        if (r < 0)
                return r;
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

int vmm_record_write(struct vmm_record *rec, struct vmm_vm *vm)
{
        _cleanup_free_ uint8_t *blob = NULL;
        char path[PATH_MAX];
        size_t len = 0;
        int r;

        record_undirty(rec, vm);
        r = record_path(rec, vmm_vm_name(vm), "", path, sizeof(path));
        if (r < 0)
                return r;
        /* Saved: the destination serves it now; a restart here must not take it back. */
        if (vmm_vm_is_saved(vm)) {
                if (unlink(path) < 0 && errno != ENOENT)
                        log_warn("vm %s: cannot remove its record %s: %m", vmm_vm_name(vm), path);
                vmm_vm_record_written(vm);
                return 0;
        }
        r = record_encode(vm, &blob, &len);
        if (r >= 0)
                r = savestate_write_file(path, blob, len);
        if (r < 0)
                log_error("vm %s: cannot write its record %s: %s; a crash now would lose what changed", vmm_vm_name(vm),
                          path, strerror(-r));
        /* Even when it failed (logged): an exec waiting for it must not hang. */
        vmm_vm_record_written(vm);
        return r;
}

void vmm_record_forget(struct vmm_record *rec, struct vmm_vm *vm, bool remove)
{
        char path[PATH_MAX];

        if (!rec)
                return;
        record_undirty(rec, vm);
        if (remove && record_path(rec, vmm_vm_name(vm), "", path, sizeof(path)) >= 0 && unlink(path) < 0 &&
            errno != ENOENT)
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

                *io = (struct vmm_restore_io){ .pid = p->pid, .recovered = true };
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

/* Moves a record that cannot be read out of the way, so the next start does not trip on it. */
static void record_set_aside(const struct vmm_record *rec, const char *file, const char *why)
{
        char from[PATH_MAX], to[PATH_MAX];

        if ((size_t)snprintf(from, sizeof(from), "%s/%s", rec->dir, file) >= sizeof(from) ||
            (size_t)snprintf(to, sizeof(to), "%s/%s.bad", rec->dir, file) >= sizeof(to))
                return;
        if (rename(from, to) < 0)
                log_error("vsockmuxd: record %s does not parse (%s) and cannot be moved aside: %m", from, why);
        else
                log_error("vsockmuxd: record %s does not parse (%s); moved aside to %s, its VM is not recovered", from,
                          why, to);
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

static int record_recover_one(struct vmm_record *rec, const char *file, vmm_record_recover_fn fn, void *userdata,
                              struct vmm_record_summary *sum)
{
        _cleanup_(savestate_msg_freep) savestate_msg *msg = NULL;
        _cleanup_free_ uint8_t *buf = NULL, *blob = NULL;
        char path[PATH_MAX], why[VMM_ERROR_MESSAGE_MAX] = "";
        struct record_io rio = { 0 };
        struct vmm_error err = { 0 };
        size_t len = 0, blob_len = 0;
        int r;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", rec->dir, file) >= sizeof(path))
                return -ENAMETOOLONG;
        r = savestate_read_file(path, &buf, &len);
        if (r < 0) {
                snprintf(why, sizeof(why), "cannot read it: %s", strerror(-r));
                record_set_aside(rec, file, why);
                sum->bad++;
                return 0;
        }
        r = savestate_decode(buf, len, &msg, why, sizeof(why));
        if (r >= 0 && (strlen(file) != strlen(msg->vm->name) + strlen(".state") ||
                       strncmp(file, msg->vm->name, strlen(msg->vm->name)) != 0))
                r = -EBADMSG, snprintf(why, sizeof(why), "it holds VM '%s', not the one its name says", msg->vm->name);
        if (r < 0) {
                record_set_aside(rec, file, why);
                sum->bad++;
                return 0;
        }
        msg->vm->bridge_next_id += VMM_RECORD_CALL_ID_MARGIN;
        r = savestate_encode(msg, &blob, &blob_len);
        if (r >= 0)
                r = record_io_build(msg->vm, &rio);
        if (r < 0)
                return r;
        r = fn(
                &(struct vmm_record_entry){
                        .name = msg->vm->name, .blob = blob, .len = blob_len, .io = rio.io, .n_io = rio.n },
                userdata, &err);
        if (r < 0) {
                log_error("vm %s: cannot recover it from %s: %s; the record is left in place", msg->vm->name, path,
                          err.message[0] ? err.message : strerror(-r));
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
