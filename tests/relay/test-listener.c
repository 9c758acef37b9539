/* tests/relay/test-listener.c: hybrid-vsock listeners on the real loop, dialled by real child processes. */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tests/relay/guest-spawn.h"
#include "tests/io-uring-skip.h"

struct accepted {
        struct relay_listener *l;
        unsigned count;
        int last_fd;
        bool free_in_callback;
};

static void on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct accepted *a = userdata;

        a->count++;
        if (fd >= 0)
                close(fd);
        a->last_fd = fd;
        if (a->free_in_callback)
                a->l = relay_listener_free(l);
}

static void transport_in(const char *dir, struct relay_transport *t)
{
        *t = (struct relay_transport){ .kind = RELAY_TRANSPORT_HVSOCK };
        snprintf(t->uds_path, sizeof(t->uds_path), "%s/vm.vsock", dir);
}

static int dial_status(const char *path)
{
        struct child c;
        const char *args[] = { "dial", path, NULL };

        spawn_guest(args, -1, -1, &c);
        return child_finish(&c, NULL, 0);
}

static void test_listener_once_accepts_one_connection_then_removes_its_socket(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {};
        char dir[64], path[128];
        struct stat st;

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 1024, RELAY_LISTEN_ONCE, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 1024, path, sizeof(path)), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));

        /* the socket exists before anyone is asked to dial, so a dial before the loop runs works */
        assert_int_equal(dial_status(path), 0);
        run_until_count(r, &a.count, 1);
        assert_true(a.last_fd >= 0);
        assert_int_equal(stat(path, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_not_equal(dial_status(path), 0);
        run_idle(r, 5);
        assert_int_equal(a.count, 1);
        relay_listener_free(a.l);
        rm_tmpdir(dir);
}

static void test_listener_many_accepts_again(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {};
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 0x40000000, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 0x40000000, path, sizeof(path)), 0);
        for (unsigned i = 1; i <= 3; i++) {
                assert_int_equal(dial_status(path), 0);
                run_until_count(r, &a.count, i);
        }
        a.l = relay_listener_free(a.l);
        assert_int_equal(access(path, F_OK), -1);
        run_idle(r, 3);
        rm_tmpdir(dir);
}

/* A live upgrade: the released listener keeps its socket file and backlog; a dial made while
 * nobody accepts waits there, and the adopting listener (the new daemon's) gets it. */
static void test_listener_release_keeps_the_socket_and_adopt_accepts_its_backlog(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {}, b = {};
        struct relay_listener *l2 = NULL;
        char dir[64], path[128];
        int fd = -1, sv[2];
        struct child c;

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 0x40000000, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 0x40000000, path, sizeof(path)), 0);
        assert_int_equal(dial_status(path), 0);
        run_until_count(r, &a.count, 1);
        assert_int_equal(relay_listener_release(a.l, &fd), 0);
        a.l = NULL;
        run_idle(r, 3); /* the cancel lands */
        assert_int_equal(access(path, F_OK), 0);

        /* dialled between the two owners: it waits in the backlog */
        spawn_guest((const char *[]){ "dial", path, NULL }, -1, -1, &c);
        assert_int_equal(child_finish(&c, NULL, 0), 0);
        run_idle(r, 3);
        assert_int_equal(a.count, 1);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_listen_adopt(r, &t, 0x40000000, sv[0], RELAY_LISTEN_MANY, on_accept, &b, &l2),
                         -ENOTSOCK);
        close(sv[0]);
        close(sv[1]);
        assert_int_equal(relay_listen_adopt(r, &t, 0x40000000, fd, RELAY_LISTEN_MANY, on_accept, &b, &l2), 0);
        run_until_count(r, &b.count, 1);
        assert_true(b.last_fd >= 0);
        assert_int_equal(dial_status(path), 0);
        run_until_count(r, &b.count, 2);
        assert_int_equal(a.count, 1);
        /* the adopted listener owns the file again */
        relay_listener_free(l2);
        assert_int_equal(access(path, F_OK), -1);
        run_idle(r, 3);
        rm_tmpdir(dir);
}

static ssize_t drop_data(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        return (ssize_t)len;
}

static void ignore_close(struct relay_chan *c, int error, void *userdata)
{
}

static const struct relay_chan_ops drop_ops = { .on_data = drop_data, .on_close = ignore_close };

/* A channel over one end of a socketpair whose fd another "process" (a dup) holds too, freed:
 * whether the peer end then reads EOF. */
static bool peer_sees_eof_after_free(struct relay *r)
{
        struct relay_chan *c = NULL;
        char byte;
        int sv[2], other;
        ssize_t n;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        other = dup(sv[0]);
        assert_true(other >= 0);
        assert_int_equal(relay_chan_new(r, sv[0], &drop_ops, NULL, NULL, &c), 0);
        run_idle(r, 2);
        relay_chan_free(c);
        run_idle(r, 3);
        /* The other owner still writes on it: its byte arrives unless the socket was shut down. */
        (void)!write(other, "x", 1);
        n = recv(sv[1], &byte, 1, MSG_DONTWAIT);
        close(other);
        close(sv[1]);
        return n == 0;
}

/* A live upgrade's new daemon until it commits: what it adopted and lets go of stays the old
 * daemon's, untouched (no shutdown, the listener's file stays and still answers); otherwise a
 * close shuts the socket down for every holder, as a save needs. */
static void test_shared_fds_are_left_to_their_other_owner(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {}, b = {};
        struct relay_listener *l2 = NULL;
        char dir[64], path[128];
        int fd = -1, other, conn;

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 0x40000000, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 0x40000000, path, sizeof(path)), 0);
        assert_int_equal(relay_listener_release(a.l, &fd), 0);
        a.l = NULL;
        run_idle(r, 3);
        other = dup(fd);
        assert_true(other >= 0);

        relay_set_fds_shared(r, true);
        assert_int_equal(relay_listen_adopt(r, &t, 0x40000000, fd, RELAY_LISTEN_MANY, on_accept, &b, &l2), 0);
        relay_listener_free(l2);
        run_idle(r, 3);
        assert_int_equal(access(path, F_OK), 0);
        assert_int_equal(dial_status(path), 0);
        conn = accept4(other, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        assert_true(conn >= 0);
        close(conn);
        assert_false(peer_sees_eof_after_free(r));

        relay_set_fds_shared(r, false);
        assert_true(peer_sees_eof_after_free(r));
        close(other);
        unlink(path);
        rm_tmpdir(dir);
}

/* A listener freed in the turn it was made must not leave its queued accept naming an fd number
 * that the next listener reuses: the next listener's connections would vanish into it. */
static void test_listener_freed_before_submit_does_not_steal_the_next_ones_connections(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {}, b = {};
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 2000, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        a.l = relay_listener_free(a.l);
        assert_int_equal(relay_listen(r, &t, 2001, RELAY_LISTEN_MANY, on_accept, &b, &b.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 2001, path, sizeof(path)), 0);
        assert_int_equal(dial_status(path), 0);
        run_until_count(r, &b.count, 1);
        assert_true(b.last_fd >= 0);
        assert_int_equal(a.count, 0);
        b.l = relay_listener_free(b.l);
        run_idle(r, 3);
        rm_tmpdir(dir);
}

static void test_listener_cancelled_before_connection_removes_socket_and_refuses_dial(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {};
        struct relay_stats st;
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 77, RELAY_LISTEN_ONCE, on_accept, &a, &a.l), 0);
        run_idle(r, 2);
        relay_get_stats(r, &st);
        assert_int_equal(st.listeners, 1);
        assert_int_equal(relay_transport_hvsock_path(&t, 77, path, sizeof(path)), 0);
        a.l = relay_listener_free(a.l);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_not_equal(dial_status(path), 0);
        run_idle(r, 5);
        assert_int_equal(a.count, 0);
        relay_get_stats(r, &st);
        assert_int_equal(st.listeners, 0);
        rm_tmpdir(dir);
}

static void test_listener_connection_to_unexpected_port_is_refused(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {};
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 5, RELAY_LISTEN_ONCE, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 6, path, sizeof(path)), 0);
        assert_int_not_equal(dial_status(path), 0);
        run_idle(r, 5);
        assert_int_equal(a.count, 0);
        a.l = relay_listener_free(a.l);
        rm_tmpdir(dir);
}

static void test_listener_replaces_stale_socket_file(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {};
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char dir[64];
        int fd;

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_transport_hvsock_path(&t, 9, sa.sun_path, sizeof(sa.sun_path)), 0);
        /* a crashed daemon's leftover: bound, then closed without unlink */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        assert_int_equal(access(sa.sun_path, F_OK), 0);

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 9, RELAY_LISTEN_ONCE, on_accept, &a, &a.l), 0);
        assert_int_equal(dial_status(sa.sun_path), 0);
        run_until_count(r, &a.count, 1);
        a.l = relay_listener_free(a.l);
        rm_tmpdir(dir);
}

static void test_listener_live_owner_gives_eaddrinuse(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {}, b = {};
        char dir[64];

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 10, RELAY_LISTEN_ONCE, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_listen(r, &t, 10, RELAY_LISTEN_ONCE, on_accept, &b, &b.l), -EADDRINUSE);
        /* the first listener still works after the refused attempt */
        {
                char path[128];
                assert_int_equal(relay_transport_hvsock_path(&t, 10, path, sizeof(path)), 0);
                assert_int_equal(dial_status(path), 0);
        }
        run_until_count(r, &a.count, 1);
        a.l = relay_listener_free(a.l);
        rm_tmpdir(dir);
}

/* A dead daemon's listener can still answer while the kernel tears its io_uring down. A caller
 * that holds the VM's lock (owns_paths) knows no live process serves the path and takes it over;
 * without it the answering socket counts as a live owner. */
static void test_listener_owning_the_paths_replaces_a_socket_that_still_answers(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct relay_transport t;
        struct accepted a = {}, b = {};
        char dir[64], path[128];
        int lingering, conn;

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 10, path, sizeof(path)), 0);
        assert_true(strlen(path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        lingering = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(lingering >= 0);
        assert_int_equal(bind(lingering, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lingering, 8), 0);

        assert_int_equal(relay_listen(r, &t, 10, RELAY_LISTEN_ONCE, on_accept, &a, &a.l), -EADDRINUSE);
        /* That refusal asked by connecting: its probe waits in the lingering backlog. */
        conn = accept4(lingering, NULL, NULL, SOCK_CLOEXEC);
        assert_true(conn >= 0);
        close(conn);
        t.owns_paths = true;
        assert_int_equal(relay_listen(r, &t, 10, RELAY_LISTEN_ONCE, on_accept, &b, &b.l), 0);
        /* A dial reaches the new listener, not the lingering one. */
        assert_int_equal(dial_status(path), 0);
        run_until_count(r, &b.count, 1);
        conn = accept4(lingering, NULL, NULL, SOCK_CLOEXEC);
        assert_int_equal(conn, -1);
        b.l = relay_listener_free(b.l);
        close(lingering);
        rm_tmpdir(dir);
}

/* The daemon's form, "/proc/self/fd/N/name" (daemon/paths.c): with the lock, a dead owner's socket
 * file goes before the bind, a file of any other kind stays and refuses the port, and a freed
 * listener's file goes. */
static void test_listener_owning_the_paths_via_a_dir_fd_replaces_only_socket_files(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        _cleanup_close_ int dirfd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct relay_transport t = { .kind = RELAY_TRANSPORT_HVSOCK, .owns_paths = true };
        struct relay_listener *refused = NULL;
        struct accepted a = {};
        char dir[64], real[128], plain[128];
        int fd;

        make_tmpdir(dir, sizeof(dir));
        dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(dirfd >= 0);
        snprintf(t.uds_path, sizeof(t.uds_path), "/proc/self/fd/%d/vm.vsock", dirfd);
        snprintf(real, sizeof(real), "%s/vm.vsock_12", dir);
        snprintf(plain, sizeof(plain), "%s/vm.vsock_13", dir);
        memcpy(sa.sun_path, real, strlen(real) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        fd = open(plain, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 13, RELAY_LISTEN_ONCE, on_accept, &a, &refused), -EADDRINUSE);
        assert_null(refused);
        assert_int_equal(access(plain, F_OK), 0);
        assert_int_equal(relay_listen(r, &t, 12, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        assert_int_equal(dial_status(real), 0);
        run_until_count(r, &a.count, 1);
        a.l = relay_listener_free(a.l);
        assert_int_equal(access(real, F_OK), -1);
        assert_int_equal(unlink(plain), 0);
        rm_tmpdir(dir);
}

static void test_listener_path_longer_than_sun_path_is_refused(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t = { .kind = RELAY_TRANSPORT_HVSOCK };
        struct relay_listener *l = NULL;
        struct accepted a = {};

        memset(t.uds_path, 'x', 106);
        t.uds_path[0] = '/';
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 123456, RELAY_LISTEN_ONCE, on_accept, &a, &l), -ENAMETOOLONG);
        assert_null(l);
}

static void test_listener_free_inside_accept_callback_is_safe(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = { .free_in_callback = true };
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 11, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 11, path, sizeof(path)), 0);
        assert_int_equal(dial_status(path), 0);
        run_until_count(r, &a.count, 1);
        assert_null(a.l);
        assert_int_equal(access(path, F_OK), -1);
        run_idle(r, 5);
        assert_int_equal(a.count, 1);
        rm_tmpdir(dir);
}

static void test_listener_vsock_needs_a_guest_cid(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t = { .kind = RELAY_TRANSPORT_VSOCK, .cid = 2 };
        struct relay_listener *l = NULL;
        struct accepted a = {};

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(relay_listen(r, &t, 1024, RELAY_LISTEN_ONCE, on_accept, &a, &l), -EINVAL);
        assert_null(l);
}

static void assert_only_event(const struct events_seen *e, enum relay_event_kind kind, unsigned count)
{
        for (int k = 0; k < _RELAY_EVENT_KIND_MAX; k++)
                assert_int_equal(e->count[k], k == (int)kind ? count : 0);
}

/* Something the listener did not make sits at its path when it goes: the file stays, and why. */
static void test_listener_whose_socket_file_cannot_be_removed_tells_why(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {};
        struct events_seen e;
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        assert_int_equal(relay_listen(r, &t, 1024, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 1024, path, sizeof(path)), 0);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0700), 0);
        a.l = relay_listener_free(a.l);
        assert_only_event(&e, RELAY_EVENT_UNLINK_FAILED, 1);
        assert_int_equal(e.last[RELAY_EVENT_UNLINK_FAILED].error, -EISDIR);
        assert_string_equal(e.path[RELAY_EVENT_UNLINK_FAILED], path);
        assert_int_equal(access(path, F_OK), 0);
        run_idle(r, 3);
        rm_tmpdir(dir);
}

/* A socket that is not listening cannot accept (-EINVAL, not transient): the owner is told by the
 * label, then its accept callback gets the error. */
static void test_listener_that_cannot_accept_tells_its_label_and_error(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct accepted a = {};
        struct events_seen e;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        assert_int_equal(relay_listen_fd(r, fd, "control socket", RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        run_until_count(r, &a.count, 1);
        assert_int_equal(a.last_fd, -EINVAL);
        assert_only_event(&e, RELAY_EVENT_LISTENER_FAILED, 1);
        assert_int_equal(e.last[RELAY_EVENT_LISTENER_FAILED].error, -EINVAL);
        assert_string_equal(e.path[RELAY_EVENT_LISTENER_FAILED], "control socket");
        a.l = relay_listener_free(a.l);
        run_idle(r, 3);
}

/* Holds every fd below a lowered RLIMIT_NOFILE but `spare` of them. An accept takes its limit
 * when it is submitted, so one armed then finds no fd once the spares are taken. */
struct fd_squeeze {
        struct rlimit saved;
        int fds[512];
        unsigned n;
};

static void squeeze_fds(struct fd_squeeze *q, unsigned spare)
{
        struct rlimit low;
        int fd;

        assert_int_equal(getrlimit(RLIMIT_NOFILE, &q->saved), 0);
        low = q->saved;
        low.rlim_cur = 256;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        q->n = 0;
        while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) {
                assert_true(q->n < sizeof(q->fds) / sizeof(q->fds[0]));
                q->fds[q->n++] = fd;
        }
        assert_int_equal(errno, EMFILE);
        assert_true(q->n >= spare);
        for (unsigned i = 0; i < spare; i++)
                close(q->fds[--q->n]);
}

static int dial_unix(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_true(strlen(path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path));
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

static void unsqueeze_fds(struct fd_squeeze *q)
{
        while (q->n > 0)
                close(q->fds[--q->n]);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &q->saved), 0);
}

/* Out of fds is transient: the owner hears of it by path, and the connection is taken later. */
static void test_accept_out_of_fds_is_told_and_retried(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport t;
        struct accepted a = {};
        struct events_seen e;
        struct fd_squeeze q;
        char dir[64], path[128];
        int client;

        make_tmpdir(dir, sizeof(dir));
        transport_in(dir, &t);
        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        /* One fd for the listening socket, one for the client. */
        squeeze_fds(&q, 2);
        assert_int_equal(relay_listen(r, &t, 1024, RELAY_LISTEN_MANY, on_accept, &a, &a.l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, 1024, path, sizeof(path)), 0);
        client = dial_unix(path);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; e.count[RELAY_EVENT_ACCEPT_RETRY] == 0;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
        }
        unsqueeze_fds(&q);
        assert_int_equal(a.count, 0);
        assert_int_equal(e.last[RELAY_EVENT_ACCEPT_RETRY].error, -EMFILE);
        assert_string_equal(e.path[RELAY_EVENT_ACCEPT_RETRY], path);
        run_until_count(r, &a.count, 1);
        assert_true(a.last_fd >= 0);
        assert_only_event(&e, RELAY_EVENT_ACCEPT_RETRY, e.count[RELAY_EVENT_ACCEPT_RETRY]);
        close(client);
        a.l = relay_listener_free(a.l);
        run_idle(r, 3);
        rm_tmpdir(dir);
}

int main(int argc, char **argv)
{
        test_skip_without_io_uring();
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_listener_once_accepts_one_connection_then_removes_its_socket),
                cmocka_unit_test(test_listener_many_accepts_again),
                cmocka_unit_test(test_listener_release_keeps_the_socket_and_adopt_accepts_its_backlog),
                cmocka_unit_test(test_listener_freed_before_submit_does_not_steal_the_next_ones_connections),
                cmocka_unit_test(test_shared_fds_are_left_to_their_other_owner),
                cmocka_unit_test(test_listener_cancelled_before_connection_removes_socket_and_refuses_dial),
                cmocka_unit_test(test_listener_connection_to_unexpected_port_is_refused),
                cmocka_unit_test(test_listener_replaces_stale_socket_file),
                cmocka_unit_test(test_listener_live_owner_gives_eaddrinuse),
                cmocka_unit_test(test_listener_owning_the_paths_replaces_a_socket_that_still_answers),
                cmocka_unit_test(test_listener_owning_the_paths_via_a_dir_fd_replaces_only_socket_files),
                cmocka_unit_test(test_listener_path_longer_than_sun_path_is_refused),
                cmocka_unit_test(test_listener_free_inside_accept_callback_is_safe),
                cmocka_unit_test(test_listener_vsock_needs_a_guest_cid),
                cmocka_unit_test(test_listener_whose_socket_file_cannot_be_removed_tells_why),
                cmocka_unit_test(test_listener_that_cannot_accept_tells_its_label_and_error),
                cmocka_unit_test(test_accept_out_of_fds_is_told_and_retried),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
