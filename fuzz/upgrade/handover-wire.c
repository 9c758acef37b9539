/* fuzz/upgrade/handover-wire.c: any bytes a new or old vsockmuxd could send on the live-upgrade socket: they are written into a socketpair and read back by handover_recv, which must refuse or accept them without leaking or overrunning. */
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/handover-wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct handover_msg *m = NULL;
        uint32_t version;
        int sv[2];

        /* What fits in the socket buffer without a second thread. */
        if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return 0;
        if (write(sv[0], data, size) == (ssize_t)size) {
                close(sv[0]);
                sv[0] = -1;
                if (handover_recv(sv[1], HANDOVER_MAGIC_ANSWER, &m, &version) == 0)
                        handover_msg_free(m);
        }
        if (sv[0] >= 0)
                close(sv[0]);
        close(sv[1]);
        return 0;
}
