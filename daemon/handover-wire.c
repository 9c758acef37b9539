/* daemon/handover-wire.c: the live-upgrade socket's framing and SCM_RIGHTS transfer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "daemon/handover-wire.h"
#include "util/unaligned.h"

void handover_header_encode(const struct handover_header *h, uint8_t out[HANDOVER_HEADER_SIZE])
{
        unaligned_write_le32(out, h->magic);
        unaligned_write_le32(out + 4, h->version);
        unaligned_write_le32(out + 8, h->len);
        unaligned_write_le32(out + 12, h->n_fds);
}

int handover_header_parse(const uint8_t *buf, size_t len, uint32_t magic, struct handover_header *ret)
{
        struct handover_header h;

        if (len != HANDOVER_HEADER_SIZE)
                return -EBADMSG;
        h.magic = unaligned_read_le32(buf);
        h.version = unaligned_read_le32(buf + 4);
        h.len = unaligned_read_le32(buf + 8);
        h.n_fds = unaligned_read_le32(buf + 12);
        if (h.magic != magic)
                return -EBADMSG;
        if (h.version != HANDOVER_WIRE_VERSION) {
                *ret = h;
                return -EPROTONOSUPPORT;
        }
        if (h.len > HANDOVER_MAX_PAYLOAD || h.n_fds > HANDOVER_MAX_FDS)
                return -EBADMSG;
        *ret = h;
        return 0;
}

struct handover_msg *handover_msg_free(struct handover_msg *m)
{
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_fds; i++)
                safe_close(m->fds[i]);
        free(m->fds);
        free(m->payload);
        free(m);
        return NULL;
}

/* One sendmsg of up to HANDOVER_CHUNK_BYTES with up to HANDOVER_FDS_PER_CHUNK fds; returns the
 * bytes sent (>= 1 when fds rode along, so they are never sent twice). */
static ssize_t send_chunk(int sock, const uint8_t *p, size_t len, const int *fds, size_t n_fds)
{
        union {
                char buf[CMSG_SPACE(HANDOVER_FDS_PER_CHUNK * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = (void *)p, .iov_len = MIN(len, (size_t)HANDOVER_CHUNK_BYTES) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (n_fds) {
                struct cmsghdr *c;

                memset(&u, 0, sizeof(u));
                mh.msg_control = u.buf;
                mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
        }
        do
                n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n < 0 ? negative_errno() : n;
}

int handover_send(int sock, uint32_t magic, const void *payload, size_t len, const int *fds, size_t n_fds)
{
        struct handover_header h = { magic, HANDOVER_WIRE_VERSION, (uint32_t)len, (uint32_t)n_fds };
        uint8_t hdr[HANDOVER_HEADER_SIZE];
        size_t off = 0, fd_off = 0;
        ssize_t n;

        if (len > HANDOVER_MAX_PAYLOAD || n_fds > HANDOVER_MAX_FDS)
                return -E2BIG;
        /* Every chunk carrying fds carries a payload byte too (fds ride on bytes). */
        if (len < (n_fds + HANDOVER_FDS_PER_CHUNK - 1) / HANDOVER_FDS_PER_CHUNK)
                return -EINVAL;
        handover_header_encode(&h, hdr);
        for (size_t done = 0; done < sizeof(hdr); done += (size_t)n) {
                n = send_chunk(sock, hdr + done, sizeof(hdr) - done, NULL, 0);
                if (n < 0)
                        return (int)n;
        }
        while (off < len) {
                size_t k = MIN(n_fds - fd_off, (size_t)HANDOVER_FDS_PER_CHUNK);
                /* One byte per chunk of fds until the last, which takes the rest of the payload. */
                size_t bytes = k && fd_off + k < n_fds ? 1 : len - off;

                n = send_chunk(sock, (const uint8_t *)payload + off, bytes, fds + fd_off, k);
                if (n < 0)
                        return (int)n;
                off += (size_t)n;
                fd_off += k;
        }
        return 0;
}

/* Reads exactly len bytes, appending received fds to m; -EPIPE at EOF. */
static int recv_exact(int sock, uint8_t *p, size_t len, struct handover_msg *m)
{
        union {
                char buf[CMSG_SPACE(HANDOVER_FDS_PER_CHUNK * sizeof(int))];
                struct cmsghdr align;
        } u;

        for (size_t off = 0; off < len;) {
                struct iovec iov = { .iov_base = p + off, .iov_len = len - off };
                struct msghdr mh = {
                        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)
                };
                ssize_t n;
                int r = 0;

                do
                        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
                while (n < 0 && errno == EINTR);
                if (n < 0)
                        return negative_errno();
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        size_t k;

                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < k; i++) {
                                int fd;

                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                if (m->n_fds < m->hdr.n_fds)
                                        m->fds[m->n_fds++] = fd;
                                else {
                                        safe_close(fd);
                                        r = -EBADMSG;
                                }
                        }
                }
                if (r < 0)
                        return r;
                if (mh.msg_flags & MSG_CTRUNC)
                        return -EBADMSG;
                if (n == 0)
                        return -EPIPE;
                off += (size_t)n;
        }
        return 0;
}

int handover_recv(int sock, uint32_t magic, struct handover_msg **ret, uint32_t *ret_version)
{
        _cleanup_(handover_msg_freep) struct handover_msg *m = calloc(1, sizeof(*m));
        uint8_t hdr[HANDOVER_HEADER_SIZE];
        int r;

        if (!m)
                return -ENOMEM;
        r = recv_exact(sock, hdr, sizeof(hdr), m);
        if (r < 0)
                return r;
        r = handover_header_parse(hdr, sizeof(hdr), magic, &m->hdr);
        if (r == -EPROTONOSUPPORT && ret_version)
                *ret_version = m->hdr.version;
        if (r < 0) {
                m->hdr.n_fds = 0;
                return r;
        }
        m->payload = malloc(m->hdr.len ? m->hdr.len : 1);
        m->fds = calloc(m->hdr.n_fds ? m->hdr.n_fds : 1, sizeof(int));
        if (!m->payload || !m->fds)
                return -ENOMEM;
        r = recv_exact(sock, m->payload, m->hdr.len, m);
        if (r < 0)
                return r;
        if (m->n_fds != m->hdr.n_fds)
                return -EBADMSG;
        *ret = TAKE_PTR(m);
        return 0;
}
