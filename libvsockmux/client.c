/* libvsockmux/client.c: libvsockmux's blocking ttrpc calls over a Unix socket. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/codec.h"
#include "libvsockmux/vsockmux.h"
#include "util/macro.h"

#define CLIENT_RX_INITIAL 16384u

/* The public constants are the codec's, spelled for a header that cannot include it. */
_Static_assert(VSOCKMUX_STATUS_MESSAGE_MAX == CONTROL_STATUS_MESSAGE_MAX, "status message size");
_Static_assert(VSOCKMUX_FLAG_REMOTE_CLOSED == CONTROL_FLAG_REMOTE_CLOSED, "remote-closed flag");
_Static_assert(sizeof(VSOCKMUX_SERVICE) == sizeof(CONTROL_SERVICE), "service name");

struct vsockmux_client {
        int fd;
        uint32_t next_stream_id; /* client streams are odd and increase */
        uint8_t *rx;
        size_t rx_len, rx_cap;
        size_t consumed; /* the frame handed out last, dropped on the next read */
};

int vsockmux_client_connect(const char *path, struct vsockmux_client **ret)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int r;

        if (!path || !path[0])
                return -EINVAL;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        r = vsockmux_client_new_fd(fd, ret);
        if (r < 0)
                return r;
        /* The client owns it now. */
        (void)TAKE_FD(fd);
        return 0;
}

int vsockmux_client_new_fd(int fd, struct vsockmux_client **ret)
{
        struct vsockmux_client *c;

        if (fd < 0)
                return -EBADF;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = fd;
        c->next_stream_id = 1;
        *ret = c;
        return 0;
}

struct vsockmux_client *vsockmux_client_free(struct vsockmux_client *c)
{
        if (!c)
                return NULL;
        safe_close(c->fd);
        free(c->rx);
        free(c);
        return NULL;
}

int vsockmux_client_fd(const struct vsockmux_client *c)
{
        return c->fd;
}

int vsockmux_client_set_timeout(struct vsockmux_client *c, uint64_t timeout_ns)
{
        struct timeval tv = {
                .tv_sec = (time_t)(timeout_ns / 1000000000u),
                .tv_usec = (suseconds_t)(timeout_ns % 1000000000u / 1000u),
        };

        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int vsockmux_client_send(struct vsockmux_client *c, const char *method, const ProtobufCMessage *req, uint8_t flags,
                         int64_t timeout_ns, uint32_t *ret_stream_id)
{
        _cleanup_free_ char *service = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        const char *slash = method ? strrchr(method, '/') : NULL;
        uint32_t sid = c->next_stream_id;
        size_t len;
        int r;

        if (!slash || slash == method || !slash[1])
                return -EINVAL;
        if (sid > UINT32_MAX - 2)
                return -ERANGE;
        service = strndup(method, (size_t)(slash - method));
        if (!service)
                return -ENOMEM;
        r = control_request_build(sid, flags, service, slash + 1, req, timeout_ns, &buf, &len);
        if (r < 0)
                return r;
        r = write_all(c->fd, buf, len);
        /* A server that refused us (connection or frame limit) wrote why before it closed: the
         * next read returns that status, or -ECONNRESET when there is none. */
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                return r;
        c->next_stream_id += 2;
        *ret_stream_id = sid;
        return 0;
}

int vsockmux_client_pending(const struct vsockmux_client *c)
{
        struct control_frame f;
        size_t size;

        if (!c || c->rx_len <= c->consumed)
                return 0;
        /* A frame that will not parse is no wait either: recv fails at once. */
        return control_frame_parse(c->rx + c->consumed, c->rx_len - c->consumed, &f, &size) != 0 ? 1 : 0;
}

/* Blocks until one whole frame sits at the front of the buffer. */
static int read_frame(struct vsockmux_client *c, struct control_frame *ret_frame)
{
        if (c->consumed) {
                memmove(c->rx, c->rx + c->consumed, c->rx_len - c->consumed);
                c->rx_len -= c->consumed;
                c->consumed = 0;
        }
        for (;;) {
                size_t size;
                ssize_t n;
                int r = control_frame_parse(c->rx, c->rx_len, ret_frame, &size);

                if (r < 0)
                        return r;
                if (r > 0) {
                        c->consumed = size;
                        return 0;
                }
                if (c->rx_len == c->rx_cap) {
                        size_t cap = c->rx_cap ? MIN(c->rx_cap * 2, (size_t)CONTROL_FRAME_MAX) : CLIENT_RX_INITIAL;
                        uint8_t *p;

                        if (cap <= c->rx_cap)
                                return -EMSGSIZE;
                        p = realloc(c->rx, cap);
                        if (!p)
                                return -ENOMEM;
                        c->rx = p;
                        c->rx_cap = cap;
                }
                n = read(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                c->rx_len += (size_t)n;
        }
}

static void status_fill(struct vsockmux_status *st, int code, const char *message)
{
        if (!st)
                return;
        st->code = code;
        snprintf(st->message, sizeof(st->message), "%s", message ?: "");
}

int vsockmux_client_recv(struct vsockmux_client *c, uint32_t stream_id, const ProtobufCMessageDescriptor *desc,
                         ProtobufCMessage **ret_msg, struct vsockmux_status *ret_status)
{
        for (;;) {
                _cleanup_(control_response_freep) Vsockmux__V1__TtrpcResponse *resp = NULL;
                struct control_frame f;
                int r = read_frame(c, &f);

                if (r < 0)
                        return r;
                if (f.header.stream_id != stream_id)
                        continue;

                switch (f.header.type) {
                case CONTROL_MSG_DATA:
                        if (f.header.flags & CONTROL_FLAG_NO_DATA || f.header.length == 0) {
                                if (f.header.flags & CONTROL_FLAG_REMOTE_CLOSED)
                                        return VSOCKMUX_CLIENT_END;
                                continue;
                        }
                        r = control_message_decode(desc, f.data, f.header.length, ret_msg);
                        if (r < 0)
                                return r;
                        /* A last message flagged remote-closed still counts; the next read ends. */
                        return VSOCKMUX_CLIENT_DATA;
                case CONTROL_MSG_RESPONSE:
                        r = control_response_decode(f.data, f.header.length, &resp);
                        if (r < 0)
                                return r;
                        if (resp->status && resp->status->code != CONTROL_CODE_OK) {
                                status_fill(ret_status, resp->status->code, resp->status->message);
                                return -EREMOTEIO;
                        }
                        r = control_message_decode(desc, resp->payload.data, resp->payload.len, ret_msg);
                        if (r < 0)
                                return r;
                        return VSOCKMUX_CLIENT_RESPONSE;
                default: return -EBADMSG;
                }
        }
}

int vsockmux_client_call(struct vsockmux_client *c, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp,
                         struct vsockmux_status *ret_status)
{
        ProtobufCMessage *m = NULL;
        uint32_t sid;
        int r;

        r = vsockmux_client_send(c, method, req, 0, 0, &sid);
        if (r < 0)
                return r;
        r = vsockmux_client_recv(c, sid, resp_desc, &m, ret_status);
        if (r < 0)
                return r;
        if (r != VSOCKMUX_CLIENT_RESPONSE) {
                control_message_free(m);
                return -EBADMSG;
        }
        *ret_resp = m;
        return 0;
}

ProtobufCMessage *vsockmux_message_free(ProtobufCMessage *m)
{
        return control_message_free(m);
}

const char *vsockmux_code_to_string(int code)
{
        return control_code_to_string(code);
}
