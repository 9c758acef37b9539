/* fuzz/vm/fuzz-helper.c: any bytes as a stream of vsockmuxd <-> vsockmux-vmhelper frames, each accepted Migrate's params through the key=value parser; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/helper-proto.h"
#include "vm/params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An accepted message packs again and parses to the same bytes: nothing was lost or invented. */
static void check_round_trip(const vmhelper_msg *m)
{
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ uint8_t *again = NULL;
        vmhelper_msg *m2 = NULL;
        size_t len, len2, used;

        if (vmhelper_frame_build(m, &buf, &len) < 0)
                abort();
        if (vmhelper_frame_parse(buf, len, &m2, &used) != 1 || used != len)
                abort();
        if (vmhelper_frame_build(m2, &again, &len2) < 0 || len2 != len || memcmp(buf, again, len) != 0)
                abort();
        vmhelper_msg_free(m2);
}

static void check_params(const Vsockmux__Vmhelper__Migrate *q)
{
        struct vm_params p;
        char err[VM_ERR_MAX] = "";

        if (vm_params_parse(q->params, q->n_params, &p, err, sizeof(err)) < 0) {
                /* A refusal names what it refuses. */
                if (strncmp(err, "params: ", 8) != 0)
                        abort();
                return;
        }
        if (p.mode != VM_MIGRATION_P2P && p.mode != VM_MIGRATION_DIRECT)
                abort();
        if (p.o.auto_converge && p.o.auto_converge != &p.ac)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t off = 0;

        while (off < size) {
                vmhelper_msg *m = NULL;
                size_t used = 0;
                int r = vmhelper_frame_parse(data + off, size - off, &m, &used);

                if (r <= 0)
                        break;
                if (used < VMHELPER_HEADER_SIZE || used > size - off)
                        abort();
                check_round_trip(m);
                if (m->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_MIGRATE)
                        check_params(m->migrate);
                vmhelper_msg_free(m);
                off += used;
        }
        return 0;
}
