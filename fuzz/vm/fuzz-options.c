/* fuzz/vm/fuzz-options.c: any bytes through Options decode, validation and libvirt typed parameters; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const uris[] = { "tcp://127.0.0.1:49152", "unix:///tmp/m.sock" };
        Vsockmux__Migration__Options *o;
        struct vm_migrate_params p;
        struct vm_typed_params t = {};
        char err[VM_ERR_MAX];

        o = vsockmux__migration__options__unpack(NULL, size, data);
        if (!o)
                return 0;
        if (vm_migrate_options_from_proto(o, &p, err, sizeof(err)) < 0) {
                /* A refusal always says which field. */
                if (!memchr(err, ':', strnlen(err, sizeof(err))))
                        abort();
                goto out;
        }
        if (p.transport < 0 || p.transport >= _VM_TRANSPORT_MAX || p.compression < 0 ||
            p.compression >= _VM_COMPRESSION_MAX)
                abort();
        /* Nothing accepted may exceed a limit: accepted means passed through unchanged. */
        if (p.auto_converge_initial > VM_THROTTLE_PERCENT_MAX || p.auto_converge_increment > VM_THROTTLE_PERCENT_MAX ||
            p.parallel_connections > VM_PARALLEL_MAX || p.mt_level > VM_MT_LEVEL_MAX ||
            (uint64_t)o->bandwidth_mib_per_s != p.bandwidth_mib)
                abort();
        (void)vm_migrate_params_check_version(&p, 9000000, err, sizeof(err));
        (void)vm_migrate_params_check_uri(&p, uris[p.transport == VM_TRANSPORT_UNIX], err, sizeof(err));
        if (vm_migrate_params_to_typed(&p, uris[p.transport == VM_TRANSPORT_UNIX], &t) == 0)
                vm_typed_params_clear(&t);
out:
        vsockmux__migration__options__free_unpacked(o, NULL);
        return 0;
}
