/* vm/options.h: migration options, validated, and the libvirt typed parameters built from them; struct vm_typed_params owns its array. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libvirt/libvirt.h>

#include "migration.pb-c.h"

/* Limits mirror what libvirt 9.0 and QEMU 7.2 accept, so a bad value fails here with the field
 * name instead of deep inside libvirtd halfway through a migration. */
#define VM_BANDWIDTH_MIB_MAX (INT64_MAX >> 20) /* libvirt keeps bytes/s in a signed 64-bit */
#define VM_DOWNTIME_MS_MAX INT64_C(2000000)    /* QEMU: downtime-limit up to 2000 s */
#define VM_XBZRLE_CACHE_MIN UINT64_C(4096)     /* one target page */
#define VM_XBZRLE_CACHE_MAX (UINT64_C(1) << 40)
#define VM_XBZRLE_CACHE_ALIGN UINT64_C(4096)
#define VM_MT_LEVEL_MAX 9u
#define VM_MT_THREADS_MAX 255u
#define VM_PARALLEL_MAX 255u
#define VM_THROTTLE_PERCENT_MIN 1u
#define VM_THROTTLE_PERCENT_MAX 99u /* QEMU refuses 100 for both knobs */
#define VM_MIGRATE_URI_MAX 1024u
#define VM_ERR_MAX 256u       /* holds every message; one echoing a long URI is cut */
#define VM_UNIX_PATH_MAX 107u /* sun_path minus its NUL */

enum vm_transport {
        VM_TRANSPORT_TCP,
        VM_TRANSPORT_UNIX,
        VM_TRANSPORT_TLS,
        _VM_TRANSPORT_MAX,
        _VM_TRANSPORT_INVALID = -EINVAL,
};

enum vm_compression {
        VM_COMPRESSION_NONE,
        VM_COMPRESSION_XBZRLE,
        VM_COMPRESSION_MT,
        _VM_COMPRESSION_MAX,
        _VM_COMPRESSION_INVALID = -EINVAL,
};

/* Zero means "leave libvirt's/QEMU's default" for every numeric field except mt_level, which
 * has mt_level_set because 0 is a real level. */
struct vm_migrate_params {
        enum vm_transport transport;
        uint64_t bandwidth_mib;   /* 0: unlimited */
        uint64_t max_downtime_ms; /* 0: default; applied with virDomainMigrateSetMaxDowntime */
        enum vm_compression compression;
        uint64_t xbzrle_cache_bytes;
        bool mt_level_set;
        unsigned mt_level;
        unsigned mt_threads;
        unsigned mt_dthreads;
        unsigned parallel_connections; /* 0: not parallel */
        bool auto_converge;
        unsigned auto_converge_initial;
        unsigned auto_converge_increment;
        bool persist_destination;
        bool start_paused;
};

/* The typed parameters and flags for virDomainMigrateToURI3/virDomainMigrate3. */
struct vm_typed_params {
        virTypedParameterPtr params;
        int nparams;
        int maxparams;
        unsigned flags;
};

const char *vm_transport_to_string(enum vm_transport t);
const char *vm_compression_to_string(enum vm_compression c);

/* The defaults: TCP, no limits, no compression, live. */
void vm_migrate_params_init(struct vm_migrate_params *ret);

/* Validates o (NULL means all defaults) and fills *ret. On failure returns -EINVAL (unknown
 * enum value, bad shape), -ERANGE (value out of range) and writes "field: why (allowed ...)"
 * into err (if errlen > 0); *ret is untouched. Never narrows a value. */
int vm_migrate_options_from_proto(const Vsockmux__Migration__Options *o, struct vm_migrate_params *ret, char *err,
                                  size_t errlen);

/* Refuses (-EOPNOTSUPP, naming the option and the libvirt version it needs) an option the
 * running libvirt (virConnectGetLibVersion format: major*1000000 + minor*1000 + release) lacks. */
int vm_migrate_params_check_version(const struct vm_migrate_params *p, unsigned long libvirt_version, char *err,
                                    size_t errlen);

/* Checks that migrate_uri suits the transport: tcp://HOST[:PORT] for tcp and tls,
 * unix:///ABSOLUTE/PATH (at most VM_UNIX_PATH_MAX bytes) for unix. -EINVAL/-ERANGE with a
 * message otherwise. */
int vm_migrate_params_check_uri(const struct vm_migrate_params *p, const char *migrate_uri, char *err, size_t errlen);

/* Builds the typed parameters (always VIR_MIGRATE_PARAM_URI = migrate_uri) and the flags
 * (always VIR_MIGRATE_LIVE). p must come from vm_migrate_options_from_proto() or init().
 * Returns 0 or -ENOMEM/-EINVAL. Release with vm_typed_params_clear(). */
int vm_migrate_params_to_typed(const struct vm_migrate_params *p, const char *migrate_uri, struct vm_typed_params *ret);
void vm_typed_params_clear(struct vm_typed_params *t);
