/* relay/listener.c: hybrid-vsock (UDS) and AF_VSOCK listeners with multishot accept, ONCE and MANY modes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/vm_sockets.h>

#include "relay/internal.h"

/* Transient accept failures (fd exhaustion, memory) are retried after this pause, not fatal. */
#define LISTENER_RETRY_NS (50 * 1000 * 1000ull)
#define LISTENER_BACKLOG 128

struct relay_vsock_port {
        struct relay_vsock_port *next;
        struct relay *r;
        struct relay_op op;
        struct relay_timer *retry;
        int fd;
        uint32_t port;
        bool armed;
        bool dead; /* no registration left: closes once the accept is back */
        struct relay_vsock_route route;
};

struct relay_listener {
        struct relay *r;
        struct relay_op op;
        enum relay_transport_kind kind;
        enum relay_listen_mode mode;
        uint32_t port;
        uint32_t cid;
        int fd;
        int accept_flags;
        char path[RELAY_UDS_PATH_MAX]; /* or the label of an adopted socket, for logs */
        bool path_owned;
        relay_accept_fn fn;
        void *userdata;
        struct relay_vsock_port *vport;
        struct relay_timer *retry;
        unsigned ref;
        bool armed;
        bool done;  /* no further accept callbacks */
        bool freed; /* owner let go */
};

static void listener_unref(struct relay_listener *l)
{
        if (--l->ref > 0)
                return;
        relay_timer_free(l->retry);
        safe_close(l->fd);
        free(l);
}

static bool accept_error_is_transient(int err)
{
        switch (err) {
        case -EMFILE:
        case -ENFILE:
        case -ENOBUFS:
        case -ENOMEM:
        case -ECONNABORTED:
        case -EINTR:
        case -EAGAIN:
        case -EPERM: /* a security module refusing one peer */
        case -EPROTO: return true;
        default: return false;
        }
}

static void vport_release(struct relay_vsock_port *vp);

/* Tells the owner about l: by its socket file or label, else (AF_VSOCK) by its port. */
static void listener_tell(struct relay_listener *l, enum relay_event_kind kind, int error)
{
        struct relay_event ev = { .kind = kind, .error = error, .port = l->port };

        if (l->kind == RELAY_TRANSPORT_HVSOCK)
                ev.path = l->path;
        relay_emit(l->r, &ev);
}

/* 0 or -errno; a file already gone is no error. */
static int hvsock_unlink(const char *path)
{
        const char *name;
        int dirfd;

        relay_hvsock_path_at(path, &dirfd, &name);
        return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* Stops listening for this registration: the socket file goes, the route entry goes. */
static void listener_finish(struct relay_listener *l)
{
        struct relay *r = l->r;
        int k;

        if (l->done)
                return;
        l->done = true;
        r->n_listeners--;
        relay_timer_disarm(l->retry);
        if (l->kind == RELAY_TRANSPORT_HVSOCK) {
                if (l->path_owned && !r->fds_shared && (k = hvsock_unlink(l->path)) < 0)
                        listener_tell(l, RELAY_EVENT_UNLINK_FAILED, k);
                l->path_owned = false;
                if (l->armed)
                        (void)relay_cancel_op(r, &l->op);
                /* The in-flight accept keeps the socket alive until its cancel completes. */
                l->fd = relay_close_fd(r, l->fd);
        } else if (l->vport) {
                (void)relay_vsock_route_remove(&l->vport->route, l->cid);
                if (l->vport->route.n == 0)
                        vport_release(l->vport);
                l->vport = NULL;
        }
}

/* Hands one connection to the owner; the listener may be freed by the callback. */
static void listener_deliver(struct relay_listener *l, int fd)
{
        if (l->done || l->freed) {
                safe_close(fd);
                return;
        }
        if (l->mode == RELAY_LISTEN_ONCE)
                listener_finish(l);
        l->ref++;
        l->fn(l, fd, l->userdata);
        listener_unref(l);
}

static void listener_fail(struct relay_listener *l, int err)
{
        if (l->done || l->freed)
                return;
        listener_tell(l, RELAY_EVENT_LISTENER_FAILED, err);
        listener_finish(l);
        l->ref++;
        l->fn(l, err, l->userdata);
        listener_unref(l);
}

static int hvsock_arm(struct relay_listener *l)
{
        struct io_uring_sqe *sqe = relay_get_sqe(l->r);

        if (!sqe)
                return -EIO;
        io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, l->accept_flags);
        relay_sqe_set_op(sqe, &l->op);
        l->armed = true;
        l->ref++;
        return 0;
}

static void hvsock_retry(struct relay_timer *t, void *userdata)
{
        struct relay_listener *l = userdata;
        int k;

        if (l->done || l->armed)
                return;
        k = hvsock_arm(l);
        if (k < 0)
                listener_fail(l, k);
}

static void hvsock_on_accept(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_listener *l = container_of(op, struct relay_listener, op);
        bool more = flags & IORING_CQE_F_MORE;

        /* The in-flight reference is dropped only at the end, so callbacks can't free l under us. */
        if (!more)
                l->armed = false;

        if (res >= 0)
                listener_deliver(l, res);
        else if (res != -ECANCELED && !l->done && !l->freed) {
                if (accept_error_is_transient(res)) {
                        listener_tell(l, RELAY_EVENT_ACCEPT_RETRY, res);
                        if (!more && l->retry)
                                (void)relay_timer_arm(l->retry, LISTENER_RETRY_NS);
                } else
                        listener_fail(l, res);
        }

        if (!more && !l->done && !l->freed && !l->armed && !relay_timer_is_armed(l->retry)) {
                int k = hvsock_arm(l);
                if (k < 0)
                        listener_fail(l, k);
        }
        if (!more)
                listener_unref(l);
}

/* A socket file at path, from an owner that is gone: removed so the path can be bound. Anything
 * else there is not ours to remove. By the directory fd, so neither call walks /proc. */
static int hvsock_unlink_stale(const char *path)
{
        const char *name;
        struct stat st;
        int dirfd;

        relay_hvsock_path_at(path, &dirfd, &name);
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EADDRINUSE;
        return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* Someone live answering on the path owns it; a dead socket file is ours to replace. */
static int hvsock_probe_owner(const struct sockaddr_un *sa)
{
        _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (probe < 0)
                return -errno;
        if (connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN)
                return -EADDRINUSE;
        return errno == ECONNREFUSED || errno == ENOENT ? 0 : -EADDRINUSE;
}

/* The bind comes first: a free path (a restore's 1,000 ports) costs nothing more. Only a refusal
 * asks whether someone answers, and with owns_path (the caller holds the VM's lock) no live process
 * can serve the path: a socket file there is a dead owner's and goes with no probe. */
static int hvsock_bind(const char *path, bool owns_path, int *ret_fd)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int k;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno != EADDRINUSE)
                        return -errno;
                k = owns_path ? 0 : hvsock_probe_owner(&sa);
                if (k >= 0)
                        k = hvsock_unlink_stale(path);
                if (k < 0)
                        return k;
                /* A socket whose bind failed is still unbound: it can try again. */
                if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        return -errno;
        }
        if (listen(fd, LISTENER_BACKLOG) < 0) {
                k = -errno;
                hvsock_unlink(path);
                return k;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Arms the multishot accept on l->fd (any stream or seqpacket socket already listening). */
static int socket_arm(struct relay_listener *l)
{
        int k;

        l->op.fn = hvsock_on_accept;
        k = relay_timer_new(l->r, hvsock_retry, l, &l->retry);
        if (k < 0)
                return k;
        return hvsock_arm(l);
}

static int listen_hvsock(struct relay_listener *l, const struct relay_transport *t)
{
        int k;

        k = relay_transport_hvsock_path(t, l->port, l->path, sizeof(l->path));
        if (k < 0)
                return k;
        k = hvsock_bind(l->path, t->owns_paths, &l->fd);
        if (k < 0)
                return k;
        l->path_owned = true;
        k = socket_arm(l);
        if (k < 0) {
                (void)hvsock_unlink(l->path);
                l->path_owned = false;
        }
        return k;
}

/* ---- AF_VSOCK: one socket per port for all VMs, routed by the peer CID ---- */

static void vport_free(struct relay_vsock_port *vp)
{
        struct relay_vsock_port **p;

        for (p = &vp->r->vsock_ports; *p; p = &(*p)->next)
                if (*p == vp) {
                        *p = vp->next;
                        break;
                }
        relay_timer_free(vp->retry);
        safe_close(vp->fd);
        relay_vsock_route_done(&vp->route);
        free(vp);
}

static void vport_release(struct relay_vsock_port *vp)
{
        vp->dead = true;
        relay_timer_disarm(vp->retry);
        if (vp->armed)
                (void)relay_cancel_op(vp->r, &vp->op);
        else
                vport_free(vp);
}

static int vport_arm(struct relay_vsock_port *vp)
{
        struct io_uring_sqe *sqe = relay_get_sqe(vp->r);

        if (!sqe)
                return -EIO;
        io_uring_prep_multishot_accept(sqe, vp->fd, NULL, NULL, SOCK_CLOEXEC);
        relay_sqe_set_op(sqe, &vp->op);
        vp->armed = true;
        return 0;
}

static void vport_fail_all(struct relay_vsock_port *vp, int err)
{
        /* Each failure removes its own entry; the last one releases the port. */
        while (vp->route.n > 0 && !vp->dead)
                listener_fail(vp->route.entries[0].reg, err);
}

static void vport_retry(struct relay_timer *t, void *userdata)
{
        struct relay_vsock_port *vp = userdata;
        int k;

        if (vp->dead || vp->armed)
                return;
        k = vport_arm(vp);
        if (k < 0)
                vport_fail_all(vp, k);
}

/* ev with the port filled in. */
static void vport_tell(struct relay_vsock_port *vp, struct relay_event *ev)
{
        ev->port = vp->port;
        relay_emit(vp->r, ev);
}

static void vport_on_connection(struct relay_vsock_port *vp, int fd)
{
        struct sockaddr_vm peer = {};
        socklen_t len = sizeof(peer);
        void *reg;

        if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0) {
                vport_tell(vp, &(struct relay_event){ .kind = RELAY_EVENT_PEER_UNKNOWN, .error = -errno, .fd = fd });
                safe_close(fd);
                return;
        }
        if (relay_vsock_route_decide(&vp->route, peer.svm_cid, &reg) < 0) {
                vport_tell(vp, &(struct relay_event){ .kind = RELAY_EVENT_CID_REFUSED, .cid = peer.svm_cid });
                safe_close(fd);
                return;
        }
        listener_deliver(reg, fd);
}

static void vport_on_accept(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_vsock_port *vp = container_of(op, struct relay_vsock_port, op);
        bool more = flags & IORING_CQE_F_MORE;

        /* armed stays set while delivering, so a release from a callback only marks vp dead. */
        if (res >= 0) {
                if (vp->dead)
                        safe_close(res);
                else
                        vport_on_connection(vp, res);
        } else if (res != -ECANCELED && !vp->dead) {
                if (accept_error_is_transient(res)) {
                        vport_tell(vp, &(struct relay_event){ .kind = RELAY_EVENT_ACCEPT_RETRY, .error = res });
                        if (!more)
                                (void)relay_timer_arm(vp->retry, LISTENER_RETRY_NS);
                } else
                        vport_fail_all(vp, res);
        }
        if (more)
                return;
        vp->armed = false;
        if (vp->dead)
                vport_free(vp);
        else if (!relay_timer_is_armed(vp->retry)) {
                int k = vport_arm(vp);
                if (k < 0)
                        vport_fail_all(vp, k);
        }
}

static int vport_get(struct relay *r, uint32_t port, struct relay_vsock_port **ret)
{
        struct relay_vsock_port *vp;
        struct sockaddr_vm sa = {
                .svm_family = AF_VSOCK,
                .svm_cid = VMADDR_CID_ANY,
                .svm_port = port,
        };
        int k;

        for (vp = r->vsock_ports; vp; vp = vp->next)
                if (vp->port == port) {
                        /* Revive a port whose last listener left while its accept was still out. */
                        vp->dead = false;
                        *ret = vp;
                        return 0;
                }

        vp = calloc(1, sizeof(*vp));
        if (!vp)
                return -ENOMEM;
        *vp = (struct relay_vsock_port){ .r = r, .op.fn = vport_on_accept, .port = port };
        vp->fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (vp->fd < 0) {
                k = -errno;
                free(vp);
                return k;
        }
        if (bind(vp->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(vp->fd, LISTENER_BACKLOG) < 0) {
                k = -errno;
                safe_close(vp->fd);
                free(vp);
                return k;
        }
        k = relay_timer_new(r, vport_retry, vp, &vp->retry);
        if (k < 0) {
                safe_close(vp->fd);
                free(vp);
                return k;
        }
        vp->next = r->vsock_ports;
        r->vsock_ports = vp;
        *ret = vp;
        return 0;
}

static int listen_vsock(struct relay_listener *l, const struct relay_transport *t)
{
        struct relay_vsock_port *vp = NULL;
        int k;

        l->cid = t->cid;
        if (t->cid < RELAY_VSOCK_CID_FIRST_GUEST || t->cid == UINT32_MAX)
                return -EINVAL;
        k = vport_get(l->r, l->port, &vp);
        if (k < 0)
                return k;
        k = relay_vsock_route_add(&vp->route, t->cid, l);
        if (k < 0)
                goto fail;
        if (!vp->armed) {
                k = vport_arm(vp);
                if (k < 0) {
                        relay_vsock_route_remove(&vp->route, t->cid);
                        goto fail;
                }
        }
        l->vport = vp;
        return 0;
fail:
        if (vp->route.n == 0)
                vport_release(vp);
        return k;
}

int relay_listen(struct relay *r, const struct relay_transport *t, uint32_t port, enum relay_listen_mode mode,
                 relay_accept_fn fn, void *userdata, struct relay_listener **ret)
{
        struct relay_listener *l;
        int k;

        if (!t || !fn || mode < 0 || mode >= _RELAY_LISTEN_MODE_MAX)
                return -EINVAL;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        *l = (struct relay_listener){
                .r = r,
                .kind = t->kind,
                .mode = mode,
                .port = port,
                .fd = -1,
                .accept_flags = SOCK_CLOEXEC,
                .fn = fn,
                .userdata = userdata,
                .ref = 1,
        };
        switch (t->kind) {
        case RELAY_TRANSPORT_HVSOCK: k = listen_hvsock(l, t); break;
        case RELAY_TRANSPORT_VSOCK: k = listen_vsock(l, t); break;
        default: k = -EINVAL;
        }
        if (k < 0) {
                /* An armed accept holds a reference: let its completion release the memory. */
                l->done = l->freed = true;
                if (l->armed)
                        (void)relay_cancel_op(r, &l->op);
                l->fd = relay_close_fd(r, l->fd);
                listener_unref(l);
                return k;
        }
        r->n_listeners++;
        relay_pipes_trim(r);
        *ret = l;
        return 0;
}

int relay_listen_fd(struct relay *r, int fd, const char *label, enum relay_listen_mode mode, relay_accept_fn fn,
                    void *userdata, struct relay_listener **ret)
{
        struct relay_listener *l;
        int k;

        if (fd < 0 || !label || !fn || mode < 0 || mode >= _RELAY_LISTEN_MODE_MAX)
                return -EINVAL;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        /* Owners of these sockets (control, attach) serve their clients with non-blocking fds. */
        *l = (struct relay_listener){
                .r = r,
                .kind = RELAY_TRANSPORT_HVSOCK,
                .mode = mode,
                .fd = fd,
                .accept_flags = SOCK_CLOEXEC | SOCK_NONBLOCK,
                .fn = fn,
                .userdata = userdata,
                .ref = 1,
        };
        snprintf(l->path, sizeof(l->path), "%s", label);
        k = socket_arm(l);
        if (k < 0) {
                /* The caller keeps its fd on failure. */
                l->fd = -1;
                l->done = l->freed = true;
                listener_unref(l);
                return k;
        }
        r->n_listeners++;
        relay_pipes_trim(r);
        *ret = l;
        return 0;
}

static int listener_fd_check(int fd)
{
        int type = 0, listening = 0;
        struct sockaddr_un sa;
        socklen_t len = sizeof(type), alen = sizeof(sa);

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return -errno;
        len = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
                return -errno;
        if (getsockname(fd, (struct sockaddr *)&sa, &alen) < 0)
                return -errno;
        if (type != SOCK_STREAM || !listening || sa.sun_family != AF_UNIX)
                return -ENOTSOCK;
        return 0;
}

int relay_listen_adopt(struct relay *r, const struct relay_transport *t, uint32_t port, int fd,
                       enum relay_listen_mode mode, relay_accept_fn fn, void *userdata, struct relay_listener **ret)
{
        struct relay_listener *l;
        int k;

        if (!t || t->kind != RELAY_TRANSPORT_HVSOCK || fd < 0 || !fn || mode < 0 || mode >= _RELAY_LISTEN_MODE_MAX)
                return -EINVAL;
        k = listener_fd_check(fd);
        if (k < 0)
                return k;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        *l = (struct relay_listener){
                .r = r,
                .kind = RELAY_TRANSPORT_HVSOCK,
                .mode = mode,
                .port = port,
                .fd = fd,
                .accept_flags = SOCK_CLOEXEC,
                .fn = fn,
                .userdata = userdata,
                .ref = 1,
        };
        k = relay_transport_hvsock_path(t, port, l->path, sizeof(l->path));
        if (k >= 0)
                k = socket_arm(l);
        if (k < 0) {
                /* The caller keeps its fd on failure. */
                l->fd = -1;
                l->done = l->freed = true;
                listener_unref(l);
                return k;
        }
        l->path_owned = true;
        r->n_listeners++;
        relay_pipes_trim(r);
        *ret = l;
        return 0;
}

struct relay_listener *relay_listener_free(struct relay_listener *l)
{
        if (!l)
                return NULL;
        listener_finish(l);
        l->freed = true;
        listener_unref(l);
        return NULL;
}

uint32_t relay_listener_port(const struct relay_listener *l)
{
        return l->port;
}

int relay_listener_release(struct relay_listener *l, int *ret_fd)
{
        int fd;

        if (l->kind != RELAY_TRANSPORT_HVSOCK || l->done || l->fd < 0)
                return -EINVAL;
        fd = l->fd;
        l->fd = -1;
        /* The file names the socket the caller hands on: the next owner removes it. A connection
         * the armed accept takes before its cancel lands is closed; callers release a guest's
         * listener only while the guest has no reason to dial (no exec starting). */
        l->path_owned = false;
        listener_finish(l);
        l->freed = true;
        listener_unref(l);
        *ret_fd = fd;
        return 0;
}

void relay_listeners_done(struct relay *r)
{
        while (r->vsock_ports)
                vport_free(r->vsock_ports);
}
