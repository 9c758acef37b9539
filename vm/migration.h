/* vm/migration.h: one libvirt live migration; owns its libvirt connections, its migrate thread and its event queue (events come from the process-wide libvirt thread of vm/libvirt.h). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util/macro.h"
#include "vm/options.h"

#define VM_URI_MAX 1024u
#define VM_DOMAIN_NAME_MAX 256u
#define VM_MIGRATION_MESSAGE_MAX 256u
#define VM_MIGRATION_QUEUE_MAX 256u /* events the caller has not drained yet */
#define VM_PROGRESS_INTERVAL_MS_DEFAULT 200u
#define VM_PROGRESS_INTERVAL_MS_MIN 10u
#define VM_PROGRESS_INTERVAL_MS_MAX 60000u

enum vm_migration_mode {
        VM_MIGRATION_P2P,    /* virDomainMigrateToURI3 + VIR_MIGRATE_PEER2PEER: the source daemon drives */
        VM_MIGRATION_DIRECT, /* virDomainMigrate3 with our own destination connection */
        _VM_MIGRATION_MODE_MAX,
        _VM_MIGRATION_MODE_INVALID = -EINVAL,
};

enum vm_migration_event_kind {
        VM_MIGRATION_EVENT_PROGRESS,       /* stats: a virDomainGetJobStats sample */
        VM_MIGRATION_EVENT_ITERATION,      /* iteration: a new pass over dirty memory began */
        VM_MIGRATION_EVENT_SUSPENDED,      /* source paused for the switchover: save relay state now */
        VM_MIGRATION_EVENT_RESUMED,        /* source running again (the migration did not finish) */
        VM_MIGRATION_EVENT_SOURCE_STOPPED, /* source domain stopped because it migrated */
        VM_MIGRATION_EVENT_COMPLETED,      /* terminal; stats are final when has_stats */
        VM_MIGRATION_EVENT_FAILED,         /* terminal; error and message say why */
        VM_MIGRATION_EVENT_ABORTED,        /* terminal; the source keeps running */
        _VM_MIGRATION_EVENT_MAX,
        _VM_MIGRATION_EVENT_INVALID = -EINVAL,
};

/* Sizes in bytes, rates per second; a field libvirt did not report is 0. */
struct vm_migration_stats {
        uint64_t time_elapsed_ms;
        uint64_t data_processed;
        uint64_t data_remaining;
        uint64_t data_total;
        uint64_t memory_iteration;
        uint64_t dirty_rate_pages;
        uint64_t memory_bps;        /* throughput */
        uint64_t downtime_ms;       /* final stats only */
        int auto_converge_throttle; /* percent */
};

struct vm_migration_event {
        enum vm_migration_event_kind kind;
        bool has_stats;
        struct vm_migration_stats stats;
        int iteration;
        int error;                              /* FAILED/ABORTED: -errno class of libvirt's error */
        char message[VM_MIGRATION_MESSAGE_MAX]; /* FAILED/ABORTED: libvirt's message */
};

struct vm_migration_config {
        const char *src_uri;     /* libvirt URI of the source daemon */
        const char *domain;      /* name of a running domain there */
        const char *dest_uri;    /* libvirt URI of the destination (for P2P, as the source daemon sees it) */
        const char *migrate_uri; /* memory stream: tcp://HOST[:PORT] or unix:///PATH; always explicit */
        enum vm_migration_mode mode;
        unsigned progress_interval_ms; /* 0: VM_PROGRESS_INTERVAL_MS_DEFAULT */
};

struct vm_migration;

const char *vm_migration_event_kind_to_string(enum vm_migration_event_kind k);

/* Checks the config and params without any libvirt call, then opens the connections, looks up
 * the domain (-ENOENT if absent, -ESRCH if not running), registers for its events and starts
 * the migration on its own thread and connection. Returns 0, or -errno with a message in err.
 * Blocks only for the setup RPCs (connects, lookups: milliseconds on a local daemon). */
int vm_migration_start(const struct vm_migration_config *c, const struct vm_migrate_params *p,
                       struct vm_migration **ret, char *err, size_t errlen);

/* Readable while events are queued: poll it from the io_uring loop, then drain next_event(). */
int vm_migration_event_fd(const struct vm_migration *m);

/* Pops the oldest event. -EAGAIN when none is queued yet, -ENODATA once the terminal event
 * (COMPLETED/FAILED/ABORTED, always the last) has been returned. Never blocks. */
int vm_migration_next_event(struct vm_migration *m, struct vm_migration_event *ret);

/* Blocking form for the CLI and tests: -ETIMEDOUT after timeout_ms (< 0: forever). */
int vm_migration_wait_event(struct vm_migration *m, int timeout_ms, struct vm_migration_event *ret);

/* Control calls: a short RPC on a connection not blocked in the migrate call. They return
 * -errno, and vm_migration_strerror() gives libvirt's message for the last one that failed. */
int vm_migration_abort(struct vm_migration *m);
int vm_migration_set_bandwidth(struct vm_migration *m, uint64_t mib_per_s); /* 0: unlimited */
int vm_migration_set_downtime(struct vm_migration *m, uint64_t ms);         /* 1..VM_DOWNTIME_MS_MAX */
const char *vm_migration_strerror(const struct vm_migration *m);

/* After COMPLETED: resumes a destination started paused (no-op otherwise). -EBUSY before the
 * terminal event, -ECANCELED after FAILED/ABORTED. */
int vm_migration_finalize(struct vm_migration *m);

/* Aborts a migration still running (blocking until libvirt gives up on it), joins its thread,
 * closes its connections. */
struct vm_migration *vm_migration_free(struct vm_migration *m);
DEFINE_CLEANUP(struct vm_migration *, vm_migration_free);
