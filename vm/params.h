/* vm/params.h: a migration's key=value parameters (MigrateRequest.params) -> migration.proto's Options, the memory URI and the mode; struct vm_params owns the Options it points into. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "migration.pb-c.h"
#include "vm/migration.h"
#include "vmhelper.pb-c.h"

struct vm_params {
        Vsockmux__Migration__Options o;
        Vsockmux__Migration__Xbzrle xbzrle;
        Vsockmux__Migration__Multithread mt;
        Vsockmux__Migration__AutoConverge ac;
        const char *migrate_uri; /* NULL: derived from the destination URI; borrowed from kv */
        enum vm_migration_mode mode;
};

/* Fills *ret from the pairs: the keys are Options' field names ("bandwidth_mib_per_s",
 * "compression" = none|xbzrle|mt, "xbzrle.cache_size_bytes", "multithread.level", ...,
 * "auto_converge" = true, "auto_converge.initial_percent", ...) and "migrate_uri", "mode" =
 * p2p|direct. Numbers are taken as given (the converter checks their ranges). -EINVAL with
 * "KEY: why" in err for an unknown or repeated key, a value that is not of its kind, or options
 * that do not go together. *ret points into itself: do not copy it. */
int vm_params_parse(Vsockmux__V1__KeyValue *const *kv, size_t n, struct vm_params *ret, char *err, size_t errlen);

/* tcp://HOST of a libvirt URI's host part ("qemu+ssh://root@h2/system" -> "tcp://h2"); a URI
 * without a host is this machine (tcp://127.0.0.1). -EINVAL without "://", -ERANGE for a long host. */
int vm_params_default_migrate_uri(const char *libvirt_uri, char *buf, size_t len);
