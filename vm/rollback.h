/* vm/rollback.h: puts a domain whose migration lost its driver back to running on the source; owns the libvirt connection it opens for that. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define VM_ROLLBACK_WAIT_MS_DEFAULT 60000u /* for libvirt to end an aborted job */

/* Aborts the domain's job (none is fine), waits up to wait_ms for libvirt to end it, then resumes
 * the domain if the migration left it paused. *ret_on_source says whether it runs on the source
 * now; false when it is gone from there (the migration completed first). Returns 0, or -errno
 * with "what: libvirt's message" in err when libvirt could not be asked. */
int vm_rollback_domain(const char *src_uri, const char *domain, unsigned wait_ms, bool *ret_on_source, char *err,
                       size_t errlen);
