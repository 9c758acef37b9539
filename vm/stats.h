/* vm/stats.h: libvirt job-statistics typed parameters -> struct vm_migration_stats; owns nothing. */
#pragma once

#include <libvirt/libvirt.h>

#include "vm/migration.h"

/* Fills *ret from virDomainGetJobStats or JOB_COMPLETED parameters; an absent field stays 0. */
void vm_migration_stats_from_typed(virTypedParameterPtr params, int nparams, struct vm_migration_stats *ret);
