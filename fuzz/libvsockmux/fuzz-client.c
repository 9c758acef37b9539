/* fuzz/libvsockmux/fuzz-client.c: libvsockmux's receive path (frame buffering and growth, frames of
 * other streams skipped, data, end and error responses) on whatever bytes a server sends. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libvsockmux/vsockmux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* More than a socket buffer holds would block the writer: the reader is this same thread. */
#define FUZZ_CLIENT_MAX_INPUT (64u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Vsockmux__V1__EventsRequest req = VSOCKMUX__V1__EVENTS_REQUEST__INIT;
        struct vsockmux_client *c = NULL;
        uint32_t sid;
        int sv[2], r;

        if (size > FUZZ_CLIENT_MAX_INPUT)
                return 0;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        if (vsockmux_client_new_fd(sv[0], &c) < 0)
                abort();
        /* Stream 1, opened as a server stream: what `vsockmux events` reads. */
        if (vsockmux_client_send(c, VSOCKMUX_METHOD("Events"), &req.base, VSOCKMUX_FLAG_REMOTE_CLOSED, 0, &sid) < 0)
                abort();
        for (size_t off = 0; off < size;) {
                ssize_t n = write(sv[1], data + off, size - off);

                if (n <= 0)
                        abort();
                off += (size_t)n;
        }
        shutdown(sv[1], SHUT_WR);

        for (;;) {
                struct vsockmux_status st;
                ProtobufCMessage *m = NULL;

                r = vsockmux_client_recv(c, sid, &vsockmux__v1__event__descriptor, &m, &st);
                vsockmux_message_free(m);
                if (r < 0 || r == VSOCKMUX_CLIENT_END || r == VSOCKMUX_CLIENT_RESPONSE)
                        break;
        }
        /* Whatever the bytes, they end in one of the documented errors, never a hang or a crash. */
        if (r < 0 && r != -ECONNRESET && r != -EBADMSG && r != -EREMOTEIO && r != -EMSGSIZE && r != -ENOMEM)
                abort();
        vsockmux_client_free(c);
        close(sv[1]);
        return 0;
}
