/* fuzz/upgrade/handover-receive.c: what a new vsockmuxd reads from whoever started it with --handover-fd: any bytes through the framing, the Handover message and its checks (schema version, fd indices) and its ring of recent events into a fresh ring, accepted or refused with a reason, never leaking or overrunning. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/event-ring.h"
#include "daemon/upgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Vsockmux__State__Handover *h = NULL;
        char why[UPGRADE_WHY_MAX];
        int *fds = NULL;
        size_t n_fds = 0;
        int sv[2];

        if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return 0;
        if (write(sv[0], data, size) != (ssize_t)size) {
                close(sv[0]);
                close(sv[1]);
                return 0;
        }
        close(sv[0]);
        if (upgrade_receive(sv[1], 1000000000ull, &h, &fds, &n_fds, why, sizeof(why)) == 0) {
                struct event_ring *ring = NULL;

                if (h->events && event_ring_new(8, &ring) == 0) {
                        (void)event_ring_import(ring, h->events);
                        event_ring_free(ring);
                }
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                free(fds);
                vsockmux__state__handover__free_unpacked(h, NULL);
        }
        close(sv[1]);
        return 0;
}
