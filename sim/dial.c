/* sim/dial.c: dialling the host's stdio ports (hybrid vsock or AF_VSOCK) and writing to them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/vm_sockets.h>

#include "sim/sim.h"

static int sim_connect(struct sim *s, uint32_t port)
{
        _cleanup_close_ int fd = -1;

        if (s->opt.hvsock_path) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int n;

                /* Hybrid vsock: a guest-initiated connection to host port P is the Unix socket <path>_<P>. */
                n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", s->opt.hvsock_path, port);
                if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
                        return -ENAMETOOLONG;
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return negative_errno();
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        return negative_errno();
        } else {
                struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = s->opt.cid, .svm_port = port };

                fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return negative_errno();
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        return negative_errno();
        }
        return TAKE_FD(fd);
}

int sim_dial(struct sim *s, uint32_t port, struct sim_conn **ret_conn)
{
        struct sim_conn *c;
        int fd;

        fd = sim_connect(s, port);
        if (fd < 0)
                return fd;
        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->fd = fd;
        c->port = port;
        pthread_mutex_lock(&s->lock);
        if (s->stopping) {
                pthread_mutex_unlock(&s->lock);
                safe_close(fd);
                free(c);
                return -ECANCELED;
        }
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);
        *ret_conn = c;
        return 0;
}

struct sim_conn *sim_conn_close(struct sim *s, struct sim_conn *c)
{
        if (!c)
                return NULL;
        /* Unlinked before close so the drop switch never shuts down a reused fd number. */
        pthread_mutex_lock(&s->lock);
        for (struct sim_conn **p = &s->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        pthread_mutex_unlock(&s->lock);
        safe_close(c->fd);
        free(c);
        return NULL;
}

bool sim_conn_dropped(struct sim *s, struct sim_conn *c)
{
        bool r;

        pthread_mutex_lock(&s->lock);
        r = c->dropped;
        pthread_mutex_unlock(&s->lock);
        return r;
}

int sim_write_all(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;

        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}
