/* vm/migration.c: one live migration. The only module with threads: libvirt's migrate call blocks
 * for the whole migration, and its events need libvirt's event loop running meanwhile.
 *
 *   caller's loop  --- abort / set_bandwidth / set_downtime / finalize (ctl / dest connections)
 *        ^
 *        | eventfd + queue (mutex)
 *        |
 *   event thread   --- virEventRunDefaultImpl: domain events, job-stats timer (ctl connection)
 *   migrate thread --- virDomainMigrateToURI3 / virDomainMigrate3 (its own connection: other
 *                      calls on a connection blocked in migrate stall in libvirt 9.0)
 *
 * The event thread is process-wide (vm/libvirt.c); a migrate thread lives as long as its
 * migration.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "util/macro.h"
#include "vm/libvirt.h"
#include "vm/migration.h"
#include "vm/queue.h"
#include "vm/stats.h"

/* How long the migrate thread waits, after success, for JOB_COMPLETED and its final stats. */
#define VM_JOB_COMPLETED_WAIT_MS 5000
/* free() re-sends the abort this often until the migrate call returns (a job not started yet
 * cannot be aborted). */
#define VM_ABORT_RETRY_MS 200

static const char *const event_kind_names[_VM_MIGRATION_EVENT_MAX] = {
        [VM_MIGRATION_EVENT_PROGRESS] = "progress",
        [VM_MIGRATION_EVENT_ITERATION] = "iteration",
        [VM_MIGRATION_EVENT_SUSPENDED] = "suspended",
        [VM_MIGRATION_EVENT_RESUMED] = "resumed",
        [VM_MIGRATION_EVENT_SOURCE_STOPPED] = "source-stopped",
        [VM_MIGRATION_EVENT_COMPLETED] = "completed",
        [VM_MIGRATION_EVENT_FAILED] = "failed",
        [VM_MIGRATION_EVENT_ABORTED] = "aborted",
};

enum vm_state {
        VM_STATE_RUNNING,
        VM_STATE_COMPLETED,
        VM_STATE_FAILED,
};

struct vm_migration {
        char *domain;
        char *dest_uri;
        enum vm_migration_mode mode;
        bool start_paused;
        uint64_t max_downtime_ms;
        struct vm_typed_params typed;

        virConnectPtr ctl; /* events, job stats, abort, speed/downtime */
        virDomainPtr ctl_dom;
        virConnectPtr mig; /* only the blocking migrate call */
        virDomainPtr mig_dom;
        virConnectPtr mig_dest; /* DIRECT mode: the destination handed to virDomainMigrate3 */
        virConnectPtr dest;     /* finalize and final stats */

        int cb_ids[3];
        int stats_timer;
        unsigned interval_ms;

        pthread_t migrate_thread;
        bool migrate_thread_started;
        atomic_bool abort_requested;
        atomic_bool barrier_released;
        bool libvirt_used; /* callbacks may exist: free() needs the barrier */

        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Under lock: */
        struct vm_event_queue queue;
        bool migrate_done;
        enum vm_state state;
        bool have_final_stats;
        struct vm_migration_stats final_stats;

        char ctl_error[VM_MIGRATION_MESSAGE_MAX]; /* caller's thread only */
};

const char *vm_migration_event_kind_to_string(enum vm_migration_event_kind k)
{
        return k >= 0 && k < _VM_MIGRATION_EVENT_MAX ? event_kind_names[k] : NULL;
}

_printf_(4, 5) static int fail_with(int r, char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

/* The libvirt error of this thread, prefixed with what we were doing. */
static int fail_libvirt(const char *what, char *err, size_t errlen)
{
        char msg[VM_MIGRATION_MESSAGE_MAX];
        int r = vm_libvirt_error(msg, sizeof(msg));

        return fail_with(r, err, errlen, "%s: %s", what, msg);
}

static void queue_push_locked(struct vm_migration *m, const struct vm_migration_event *e)
{
        (void)vm_event_queue_push(&m->queue, e);
}

static void queue_push(struct vm_migration *m, const struct vm_migration_event *e)
{
        pthread_mutex_lock(&m->lock);
        queue_push_locked(m, e);
        pthread_mutex_unlock(&m->lock);
}

static void on_iteration(virConnectPtr conn, virDomainPtr dom, int iteration, void *opaque)
{
        struct vm_migration *m = opaque;
        struct vm_migration_event e = { .kind = VM_MIGRATION_EVENT_ITERATION, .iteration = iteration };

        queue_push(m, &e);
}

static void on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        struct vm_migration *m = opaque;
        struct vm_migration_event e = {};

        switch (event) {
        case VIR_DOMAIN_EVENT_SUSPENDED:
                /* Only the switchover pause matters; a user's pause is not ours to report. */
                if (detail != VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED && detail != VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY)
                        return;
                e.kind = VM_MIGRATION_EVENT_SUSPENDED;
                break;
        case VIR_DOMAIN_EVENT_RESUMED: e.kind = VM_MIGRATION_EVENT_RESUMED; break;
        case VIR_DOMAIN_EVENT_STOPPED:
                if (detail != VIR_DOMAIN_EVENT_STOPPED_MIGRATED)
                        return;
                e.kind = VM_MIGRATION_EVENT_SOURCE_STOPPED;
                break;
        default: return;
        }
        queue_push(m, &e);
}

static void on_job_completed(virConnectPtr conn, virDomainPtr dom, virTypedParameterPtr params, int nparams,
                             void *opaque)
{
        struct vm_migration *m = opaque;
        struct vm_migration_stats s;

        vm_migration_stats_from_typed(params, nparams, &s);
        pthread_mutex_lock(&m->lock);
        m->final_stats = s;
        m->have_final_stats = true;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
}

/* Runs on the event thread, on the control connection, never the one blocked in migrate. */
static void on_stats_timer(int timer, void *opaque)
{
        struct vm_migration *m = opaque;
        struct vm_migration_event e = { .kind = VM_MIGRATION_EVENT_PROGRESS, .has_stats = true };
        virTypedParameterPtr params = NULL;
        int nparams = 0, type = VIR_DOMAIN_JOB_NONE;
        bool done;

        pthread_mutex_lock(&m->lock);
        done = m->migrate_done;
        pthread_mutex_unlock(&m->lock);
        if (done)
                return;
        /* Fails once a P2P migration removed the source domain: the final stats come from
         * JOB_COMPLETED or the destination instead. */
        if (virDomainGetJobStats(m->ctl_dom, &type, &params, &nparams, 0) < 0)
                return;
        if (type == VIR_DOMAIN_JOB_UNBOUNDED) {
                vm_migration_stats_from_typed(params, nparams, &e.stats);
                queue_push(m, &e);
        }
        virTypedParamsFree(params, nparams);
}

/* After a P2P migration the source domain is gone; the destination keeps the completed job. */
static bool final_stats_from_destination(struct vm_migration *m, struct vm_migration_stats *ret)
{
        virDomainPtr d = virDomainLookupByName(m->dest, m->domain);
        virTypedParameterPtr params = NULL;
        int nparams = 0, type = VIR_DOMAIN_JOB_NONE;
        bool ok = false;

        if (!d)
                return false;
        if (virDomainGetJobStats(d, &type, &params, &nparams, VIR_DOMAIN_JOB_STATS_COMPLETED) == 0 &&
            type == VIR_DOMAIN_JOB_COMPLETED) {
                vm_migration_stats_from_typed(params, nparams, ret);
                ok = true;
        }
        virTypedParamsFree(params, nparams);
        virDomainFree(d);
        return ok;
}

static void *migrate_thread(void *arg)
{
        struct vm_migration *m = arg;
        struct vm_migration_event e = {};
        struct timespec deadline;
        int r;

        if (m->mode == VM_MIGRATION_P2P)
                r = virDomainMigrateToURI3(m->mig_dom, m->dest_uri, m->typed.params, m->typed.nparams,
                                           m->typed.flags | VIR_MIGRATE_PEER2PEER);
        else {
                virDomainPtr d =
                        virDomainMigrate3(m->mig_dom, m->mig_dest, m->typed.params, m->typed.nparams, m->typed.flags);
                r = d ? 0 : -1;
                if (d)
                        virDomainFree(d);
        }

        if (r < 0) {
                e.error = vm_libvirt_error(e.message, sizeof(e.message));
                e.kind = e.error == -ECANCELED || atomic_load(&m->abort_requested) ? VM_MIGRATION_EVENT_ABORTED
                                                                                   : VM_MIGRATION_EVENT_FAILED;
                pthread_mutex_lock(&m->lock);
                m->migrate_done = true;
                pthread_cond_broadcast(&m->cond);
                m->state = VM_STATE_FAILED;
                queue_push_locked(m, &e);
                pthread_mutex_unlock(&m->lock);
                return NULL;
        }

        e.kind = VM_MIGRATION_EVENT_COMPLETED;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += VM_JOB_COMPLETED_WAIT_MS / 1000;
        pthread_mutex_lock(&m->lock);
        m->migrate_done = true;
        pthread_cond_broadcast(&m->cond);
        while (!m->have_final_stats)
                if (pthread_cond_timedwait(&m->cond, &m->lock, &deadline) == ETIMEDOUT)
                        break;
        e.has_stats = m->have_final_stats;
        e.stats = m->final_stats;
        pthread_mutex_unlock(&m->lock);

        if (!e.has_stats)
                e.has_stats = final_stats_from_destination(m, &e.stats);

        pthread_mutex_lock(&m->lock);
        m->state = VM_STATE_COMPLETED;
        queue_push_locked(m, &e);
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

static int check_config(const struct vm_migration_config *c, const struct vm_migrate_params *p, char *err,
                        size_t errlen)
{
        const struct {
                const char *name;
                const char *value;
                size_t max;
        } strings[] = {
                { "src_uri", c->src_uri, VM_URI_MAX },
                { "domain", c->domain, VM_DOMAIN_NAME_MAX },
                { "dest_uri", c->dest_uri, VM_URI_MAX },
        };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                const char *s = strings[i].value;

                if (!s || !*s)
                        return fail_with(-EINVAL, err, errlen, "%s: missing", strings[i].name);
                if (strnlen(s, strings[i].max + 1) > strings[i].max)
                        return fail_with(-ERANGE, err, errlen, "%s: longer than %zu bytes", strings[i].name,
                                         strings[i].max);
        }
        if (c->mode < 0 || c->mode >= _VM_MIGRATION_MODE_MAX)
                return fail_with(-EINVAL, err, errlen, "mode: unknown value %d (allowed: p2p, direct)", (int)c->mode);
        if (c->progress_interval_ms != 0 && (c->progress_interval_ms < VM_PROGRESS_INTERVAL_MS_MIN ||
                                             c->progress_interval_ms > VM_PROGRESS_INTERVAL_MS_MAX))
                return fail_with(-ERANGE, err, errlen,
                                 "progress_interval_ms: %u is out of range (allowed: 0 for %u, or %u..%u)",
                                 c->progress_interval_ms, VM_PROGRESS_INTERVAL_MS_DEFAULT, VM_PROGRESS_INTERVAL_MS_MIN,
                                 VM_PROGRESS_INTERVAL_MS_MAX);
        if (p->bandwidth_mib > (uint64_t)VM_BANDWIDTH_MIB_MAX)
                return fail_with(-ERANGE, err, errlen, "bandwidth_mib_per_s: out of range");
        if (p->max_downtime_ms > (uint64_t)VM_DOWNTIME_MS_MAX)
                return fail_with(-ERANGE, err, errlen, "max_downtime_ms: out of range");
        return vm_migrate_params_check_uri(p, c->migrate_uri, err, errlen);
}

static struct vm_migration *vm_migration_new(void)
{
        struct vm_migration *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        m->queue.fd = -1;
        m->stats_timer = -1;
        for (size_t i = 0; i < ELEMENTSOF(m->cb_ids); i++)
                m->cb_ids[i] = -1;
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->cond, &ca);
        pthread_condattr_destroy(&ca);
        return m;
}

/* Domain lookup, running check and event registration on the control connection. */
static int prepare(struct vm_migration *m, const struct vm_migrate_params *p, char *err, size_t errlen)
{
        unsigned long version = 0;
        int state = VIR_DOMAIN_NOSTATE, reason = 0, r;

        if (virConnectGetLibVersion(m->ctl, &version) < 0)
                return fail_libvirt("source libvirt version", err, errlen);
        r = vm_migrate_params_check_version(p, version, err, errlen);
        if (r < 0)
                return r;

        m->ctl_dom = virDomainLookupByName(m->ctl, m->domain);
        if (!m->ctl_dom)
                return fail_libvirt("domain lookup", err, errlen);
        if (virDomainGetState(m->ctl_dom, &state, &reason, 0) < 0)
                return fail_libvirt("domain state", err, errlen);
        if (state != VIR_DOMAIN_RUNNING)
                return fail_with(-ESRCH, err, errlen, "domain %s: not running (libvirt state %d), cannot live-migrate",
                                 m->domain, state);

        m->cb_ids[0] = virConnectDomainEventRegisterAny(m->ctl, m->ctl_dom, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                                                        VIR_DOMAIN_EVENT_CALLBACK(on_iteration), m, NULL);
        m->cb_ids[1] = virConnectDomainEventRegisterAny(m->ctl, m->ctl_dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                        VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), m, NULL);
        m->cb_ids[2] = virConnectDomainEventRegisterAny(m->ctl, m->ctl_dom, VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                                                        VIR_DOMAIN_EVENT_CALLBACK(on_job_completed), m, NULL);
        for (size_t i = 0; i < ELEMENTSOF(m->cb_ids); i++)
                if (m->cb_ids[i] < 0)
                        return fail_libvirt("event registration", err, errlen);

        /* libvirt has no migrate parameter for downtime: set it on the domain before we start. */
        if (p->max_downtime_ms != 0 && virDomainMigrateSetMaxDowntime(m->ctl_dom, p->max_downtime_ms, 0) < 0)
                return fail_libvirt("max_downtime_ms", err, errlen);
        return 0;
}

int vm_migration_start(const struct vm_migration_config *c, const struct vm_migrate_params *p,
                       struct vm_migration **ret, char *err, size_t errlen)
{
        _cleanup_(vm_migration_freep) struct vm_migration *m = NULL;
        unsigned long version = 0;
        int r;

        /* Everything checkable is checked before the first libvirt call. */
        r = check_config(c, p, err, errlen);
        if (r < 0)
                return r;

        m = vm_migration_new();
        if (!m)
                return -ENOMEM;
        r = vm_migrate_params_to_typed(p, c->migrate_uri, &m->typed);
        if (r < 0)
                return fail_with(r, err, errlen, "options: invalid");
        m->domain = strdup(c->domain);
        m->dest_uri = strdup(c->dest_uri);
        if (!m->domain || !m->dest_uri)
                return -ENOMEM;
        m->mode = c->mode;
        m->start_paused = p->start_paused;
        m->max_downtime_ms = p->max_downtime_ms;
        m->interval_ms = c->progress_interval_ms ? c->progress_interval_ms : VM_PROGRESS_INTERVAL_MS_DEFAULT;

        r = vm_libvirt_setup();
        if (r < 0)
                return fail_with(r, err, errlen, "libvirt: initialization failed");

        r = vm_event_queue_init(&m->queue);
        if (r < 0)
                return fail_with(r, err, errlen, "eventfd: %s", strerror(-r));

        m->libvirt_used = true;
        m->ctl = vm_libvirt_open(c->src_uri, "source connection", err, errlen, &r);
        if (!m->ctl)
                return r;
        r = prepare(m, p, err, errlen);
        if (r < 0)
                return r;

        m->mig = vm_libvirt_open(c->src_uri, "source migration connection", err, errlen, &r);
        if (!m->mig)
                return r;
        m->mig_dom = virDomainLookupByName(m->mig, m->domain);
        if (!m->mig_dom)
                return fail_libvirt("domain lookup", err, errlen);
        m->dest = vm_libvirt_open(c->dest_uri, "destination connection", err, errlen, &r);
        if (!m->dest)
                return r;
        /* The destination runs the incoming side: it must support every option too. */
        if (virConnectGetLibVersion(m->dest, &version) < 0)
                return fail_libvirt("destination libvirt version", err, errlen);
        r = vm_migrate_params_check_version(p, version, err, errlen);
        if (r < 0)
                return r;
        if (m->mode == VM_MIGRATION_DIRECT) {
                m->mig_dest = vm_libvirt_open(c->dest_uri, "destination migration connection", err, errlen, &r);
                if (!m->mig_dest)
                        return r;
        }

        m->stats_timer = virEventAddTimeout((int)m->interval_ms, on_stats_timer, m, NULL);
        if (m->stats_timer < 0)
                return fail_libvirt("progress timer", err, errlen);

        r = -pthread_create(&m->migrate_thread, NULL, migrate_thread, m);
        if (r < 0)
                return fail_with(r, err, errlen, "migrate thread: %s", strerror(-r));
        m->migrate_thread_started = true;

        *ret = TAKE_PTR(m);
        return 0;
}

int vm_migration_event_fd(const struct vm_migration *m)
{
        return m->queue.fd;
}

int vm_migration_next_event(struct vm_migration *m, struct vm_migration_event *ret)
{
        int r;

        pthread_mutex_lock(&m->lock);
        r = vm_event_queue_pop(&m->queue, ret);
        pthread_mutex_unlock(&m->lock);
        return r;
}

int vm_migration_wait_event(struct vm_migration *m, int timeout_ms, struct vm_migration_event *ret)
{
        struct timespec start, now;
        int r, left = timeout_ms;

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct pollfd pfd = { .fd = m->queue.fd, .events = POLLIN };

                r = vm_migration_next_event(m, ret);
                if (r != -EAGAIN)
                        return r;
                if (timeout_ms >= 0) {
                        clock_gettime(CLOCK_MONOTONIC, &now);
                        left = timeout_ms -
                               (int)((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
                        if (left <= 0)
                                return -ETIMEDOUT;
                }
                r = poll(&pfd, 1, left);
                if (r < 0 && errno != EINTR)
                        return negative_errno();
        }
}

static int ctl_call_result(struct vm_migration *m, int rc)
{
        if (rc >= 0) {
                m->ctl_error[0] = '\0';
                return 0;
        }
        return vm_libvirt_error(m->ctl_error, sizeof(m->ctl_error));
}

int vm_migration_abort(struct vm_migration *m)
{
        int r = ctl_call_result(m, virDomainAbortJob(m->ctl_dom));

        /* Only an accepted abort makes a later failure read as "aborted". */
        if (r == 0)
                atomic_store(&m->abort_requested, true);
        return r;
}

int vm_migration_set_bandwidth(struct vm_migration *m, uint64_t mib_per_s)
{
        if (mib_per_s > (uint64_t)VM_BANDWIDTH_MIB_MAX) {
                snprintf(m->ctl_error, sizeof(m->ctl_error),
                         "bandwidth_mib_per_s: %llu is out of range (allowed: 1..%lld MiB/s)",
                         (unsigned long long)mib_per_s, (long long)VM_BANDWIDTH_MIB_MAX);
                return -ERANGE;
        }
        /* 0 would mean "no limit" to us but libvirt reads 0 as 0: send its maximum instead. */
        return ctl_call_result(
                m, virDomainMigrateSetMaxSpeed(m->ctl_dom, mib_per_s ? mib_per_s : (uint64_t)VM_BANDWIDTH_MIB_MAX, 0));
}

int vm_migration_set_downtime(struct vm_migration *m, uint64_t ms)
{
        if (ms == 0 || ms > (uint64_t)VM_DOWNTIME_MS_MAX) {
                snprintf(m->ctl_error, sizeof(m->ctl_error),
                         "max_downtime_ms: %llu is out of range (allowed: 1..%lld ms)", (unsigned long long)ms,
                         (long long)VM_DOWNTIME_MS_MAX);
                return -ERANGE;
        }
        return ctl_call_result(m, virDomainMigrateSetMaxDowntime(m->ctl_dom, ms, 0));
}

const char *vm_migration_strerror(const struct vm_migration *m)
{
        return m->ctl_error;
}

int vm_migration_finalize(struct vm_migration *m)
{
        enum vm_state state;
        virDomainPtr d;
        int r;

        pthread_mutex_lock(&m->lock);
        state = m->migrate_done ? m->state : VM_STATE_RUNNING;
        pthread_mutex_unlock(&m->lock);
        if (state == VM_STATE_RUNNING)
                return -EBUSY;
        if (state == VM_STATE_FAILED)
                return -ECANCELED;
        if (!m->start_paused)
                return 0;

        d = virDomainLookupByName(m->dest, m->domain);
        if (!d)
                return ctl_call_result(m, -1);
        r = ctl_call_result(m, virDomainResume(d));
        virDomainFree(d);
        return r;
}

struct vm_migration *vm_migration_free(struct vm_migration *m)
{
        if (!m)
                return NULL;

        if (m->migrate_thread_started) {
                /* Never leave a migration running behind the caller's back. An abort fails
                 * before the job starts and in the switchover phase, so retry until the
                 * migrate call returns, one way or the other. */
                pthread_mutex_lock(&m->lock);
                while (!m->migrate_done) {
                        struct timespec t;

                        pthread_mutex_unlock(&m->lock);
                        atomic_store(&m->abort_requested, true);
                        (void)virDomainAbortJob(m->ctl_dom);
                        clock_gettime(CLOCK_MONOTONIC, &t);
                        t.tv_nsec += VM_ABORT_RETRY_MS * 1000000L;
                        if (t.tv_nsec >= 1000000000L) {
                                t.tv_sec++;
                                t.tv_nsec -= 1000000000L;
                        }
                        pthread_mutex_lock(&m->lock);
                        if (!m->migrate_done)
                                pthread_cond_timedwait(&m->cond, &m->lock, &t);
                }
                pthread_mutex_unlock(&m->lock);
                pthread_join(m->migrate_thread, NULL);
        }

        for (size_t i = 0; i < ELEMENTSOF(m->cb_ids); i++)
                if (m->cb_ids[i] >= 0)
                        virConnectDomainEventDeregisterAny(m->ctl, m->cb_ids[i]);
        if (m->stats_timer >= 0)
                virEventRemoveTimeout(m->stats_timer);
        if (m->libvirt_used)
                vm_libvirt_barrier(&m->barrier_released);

        if (m->ctl_dom)
                virDomainFree(m->ctl_dom);
        if (m->mig_dom)
                virDomainFree(m->mig_dom);
        if (m->ctl)
                virConnectClose(m->ctl);
        if (m->mig)
                virConnectClose(m->mig);
        if (m->mig_dest)
                virConnectClose(m->mig_dest);
        if (m->dest)
                virConnectClose(m->dest);
        vm_typed_params_clear(&m->typed);
        vm_event_queue_done(&m->queue);
        pthread_cond_destroy(&m->cond);
        pthread_mutex_destroy(&m->lock);
        free(m->domain);
        free(m->dest_uri);
        free(m);
        return NULL;
}
