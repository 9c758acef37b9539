/* tests/control/test-server.c: the control server on a real relay loop and real Unix sockets, with a toy method table. */
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "control/server.h"
#include "libvsockmux/cleanup.h"
#include "libvsockmux/vsockmux.h"
#include "relay/relay.h"
#include "tests/io-uring-skip.h"

#define WAIT_LIMIT_NS (60ull * 1000000000ull) /* generous: a loaded 2-core machine under ASan */
#define MAX_PENDING 16
#define WAKE_PID 777 /* Kill with this pid completes every pending Wait */
#define NOBODY 65534

struct fixture {
        char dir[64];
        char path[96];
        struct relay *relay;
        struct control_server *server;
        struct control_call *pending[MAX_PENDING];
        unsigned n_pending;
        unsigned cancelled;
        unsigned kill_calls;
};

/* ---- the toy method table --------------------------------------------------------------- */

static int on_kill(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        const Vsockmux__V1__KillRequest *req = (const Vsockmux__V1__KillRequest *)request;
        Vsockmux__V1__KillResponse resp = VSOCKMUX__V1__KILL_RESPONSE__INIT;
        struct fixture *f = userdata;
        char note[64];
        uint32_t pid = req->pid;

        f->kill_calls++;
        snprintf(note, sizeof(note), "signal %d to %s/%u", req->signal, req->vm, req->pid);
        resp.note = note;
        /* The reply frees the request: nothing of req is read after it. */
        control_call_reply(call, &resp.base);
        if (pid == WAKE_PID) {
                for (unsigned i = 0; i < f->n_pending; i++) {
                        Vsockmux__V1__WaitResponse w = VSOCKMUX__V1__WAIT_RESPONSE__INIT;
                        Vsockmux__V1__ExitStatus es = VSOCKMUX__V1__EXIT_STATUS__INIT;

                        es.kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED;
                        es.code = 3;
                        w.exit = &es;
                        control_call_reply(f->pending[i], &w.base);
                }
                f->n_pending = 0;
        }
        return 0;
}

static void on_wait_cancel(struct control_call *call, void *userdata)
{
        struct fixture *f = userdata;

        f->cancelled++;
        /* The handler still owns the call: complete it (it goes nowhere) and forget it. */
        for (unsigned i = 0; i < f->n_pending; i++)
                if (f->pending[i] == call) {
                        f->pending[i] = f->pending[--f->n_pending];
                        break;
                }
        control_call_fail(call, CONTROL_CODE_CANCELLED, "client gone");
}

static int on_wait(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        struct fixture *f = userdata;

        if (f->n_pending == MAX_PENDING)
                return -ENOSPC;
        f->pending[f->n_pending++] = call;
        control_call_set_cancel(call, on_wait_cancel, f);
        return 0;
}

static int on_ps(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        return -ENOENT;
}

/* Completes the call and still returns an error, as `return control_call_reply(...)` does when the
 * client is gone: the server must not answer (or free) a second time. */
static int on_attach_completes_then_errs(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        control_call_fail(call, CONTROL_CODE_NOT_FOUND, "completed by the handler");
        return -EIO;
}

static int on_events(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        for (uint32_t i = 1; i <= 3; i++) {
                Vsockmux__V1__Event ev = VSOCKMUX__V1__EVENT__INIT;

                ev.kind = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_PROCESS_STARTED;
                ev.pid = i;
                ev.vm = (char *)"vm1";
                assert_int_equal(control_call_send(call, &ev.base), 0);
        }
        return control_call_reply(call, NULL);
}

static const struct control_method toy_methods[] = {
        { CONTROL_METHOD_NAME("Kill"), &vsockmux__v1__kill_request__descriptor, on_kill, false },
        { CONTROL_METHOD_NAME("Wait"), &vsockmux__v1__wait_request__descriptor, on_wait, false },
        { CONTROL_METHOD_NAME("Ps"), &vsockmux__v1__ps_request__descriptor, on_ps, false },
        { CONTROL_METHOD_NAME("Events"), &vsockmux__v1__events_request__descriptor, on_events, true },
        { CONTROL_METHOD_NAME("Attach"), &vsockmux__v1__attach_request__descriptor, on_attach_completes_then_errs,
          false },
};

/* ---- loop and client threads -------------------------------------------------------------- */

struct client_job {
        void (*fn)(struct fixture *f, void *arg);
        struct fixture *f;
        void *arg;
        atomic_bool done;
};

static void *client_thread(void *userdata)
{
        struct client_job *j = userdata;

        j->fn(j->f, j->arg);
        atomic_store(&j->done, true);
        return NULL;
}

/* Runs the loop on this thread while fn runs its blocking client on another. cmocka's asserts
 * are not thread-safe, so client functions record results in arg and the test checks them here. */
static void run_client(struct fixture *f, void (*fn)(struct fixture *f, void *arg), void *arg)
{
        struct client_job j = { .fn = fn, .f = f, .arg = arg };
        uint64_t start = relay_now_ns(f->relay);
        pthread_t t;

        assert_int_equal(pthread_create(&t, NULL, client_thread, &j), 0);
        while (!atomic_load(&j.done)) {
                assert_int_equal(relay_run_once(f->relay, 20 * 1000000), 0);
                assert_true(relay_now_ns(f->relay) - start < WAIT_LIMIT_NS);
        }
        pthread_join(t, NULL);
        /* Let the server see closes that happened at the end of the client. */
        for (int i = 0; i < 5; i++)
                assert_int_equal(relay_run_once(f->relay, 0), 0);
}

static void run_loop_until_child_exits(struct fixture *f, pid_t pid, int *ret_status)
{
        uint64_t start = relay_now_ns(f->relay);

        for (;;) {
                pid_t w = waitpid(pid, ret_status, WNOHANG);

                if (w == pid)
                        return;
                assert_int_equal(w, 0);
                assert_int_equal(relay_run_once(f->relay, 20 * 1000000), 0);
                assert_true(relay_now_ns(f->relay) - start < WAIT_LIMIT_NS);
        }
}

static int raw_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* 0 when the server closed the connection (EOF or reset), 1 if bytes arrived, -errno else. */
static int wait_closed(int fd)
{
        char buf[256];
        struct timeval tv = { .tv_sec = 60 };

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        return 0;
                if (n > 0)
                        return 1;
                if (errno != EINTR)
                        return -errno;
        }
}

/* A refusal says why (a RESOURCE_EXHAUSTED response) before it closes: 0 once closed. */
static int wait_refused(int fd)
{
        char buf[256];
        struct timeval tv = { .tv_sec = 60 };

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        return 0;
                if (n < 0 && errno != EINTR)
                        return -errno;
        }
}

static int kill_call(struct vsockmux_client *c, uint32_t pid, char *note, size_t note_len)
{
        Vsockmux__V1__KillRequest req = VSOCKMUX__V1__KILL_REQUEST__INIT;
        ProtobufCMessage *m = NULL;
        int r;

        req.vm = (char *)"vm1";
        req.pid = pid;
        req.signal = 15;
        r = vsockmux_client_call(c, CONTROL_METHOD_NAME("Kill"), &req.base, &vsockmux__v1__kill_response__descriptor,
                                 &m, NULL);
        if (r < 0)
                return r;
        if (note)
                snprintf(note, note_len, "%s", ((Vsockmux__V1__KillResponse *)m)->note);
        control_message_free(m);
        return 0;
}

/* ---- fixtures -------------------------------------------------------------------------- */

static int server_start(struct fixture *f, const struct control_server_config *cfg_in)
{
        struct control_server_config cfg = {
                .path = f->path,
                .owner_uid = geteuid(),
                .group = CONTROL_NO_GROUP,
        };

        if (cfg_in) {
                cfg = *cfg_in;
                cfg.path = f->path;
        }
        return control_server_new(f->relay, &cfg, toy_methods, ELEMENTSOF(toy_methods), f, &f->server);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-ctl-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/control.sock", f->dir);
        if (relay_new(NULL, &f->relay) < 0)
                return -1;
        *state = f;
        return 0;
}

static int setup_with_server(void **state)
{
        struct fixture *f;

        if (setup(state) < 0)
                return -1;
        f = *state;
        return server_start(f, NULL) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        while (f->n_pending > 0)
                control_call_fail(f->pending[--f->n_pending], CONTROL_CODE_ABORTED, "test over");
        f->server = control_server_free(f->server);
        f->relay = relay_free(f->relay);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        return 0;
}

/* ---- tests --------------------------------------------------------------------------- */

struct result {
        int r, r2, r3;
        int code;
        char text[CONTROL_STATUS_MESSAGE_MAX];
};

static void client_valid_call(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;

        res->r = vsockmux_client_connect(f->path, &c);
        if (res->r == 0)
                res->r = kill_call(c, 42, res->text, sizeof(res->text));
}

static void test_valid_call_gets_its_reply(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_valid_call, &res);
        assert_int_equal(res.r, 0);
        assert_string_equal(res.text, "signal 15 to vm1/42");
}

static void client_unknown_method(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        Vsockmux__V1__KillRequest req = VSOCKMUX__V1__KILL_REQUEST__INIT;
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;

        if ((res->r = vsockmux_client_connect(f->path, &c)) < 0)
                return;
        res->r = vsockmux_client_call(c, "vsockmux.v1.Control/NoSuchMethod", &req.base,
                                      &vsockmux__v1__kill_response__descriptor, &m, &st);
        res->code = st.code;
        snprintf(res->text, sizeof(res->text), "%s", st.message);
        res->r2 = vsockmux_client_call(c, "other.Service/Kill", &req.base, &vsockmux__v1__kill_response__descriptor, &m,
                                       &st);
        res->r3 = kill_call(c, 1, NULL, 0);
}

static void test_unknown_method_gets_unimplemented_and_connection_keeps_working(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_unknown_method, &res);
        assert_int_equal(res.r, -EREMOTEIO);
        assert_int_equal(res.code, CONTROL_CODE_UNIMPLEMENTED);
        assert_non_null(strstr(res.text, "NoSuchMethod"));
        assert_int_equal(res.r2, -EREMOTEIO);
        assert_int_equal(res.r3, 0);
}

static void client_handler_error(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        Vsockmux__V1__PsRequest req = VSOCKMUX__V1__PS_REQUEST__INIT;
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;

        if ((res->r = vsockmux_client_connect(f->path, &c)) < 0)
                return;
        res->r = vsockmux_client_call(c, CONTROL_METHOD_NAME("Ps"), &req.base, &vsockmux__v1__ps_response__descriptor,
                                      &m, &st);
        res->code = st.code;
}

static void test_handler_errno_becomes_grpc_status(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_handler_error, &res);
        assert_int_equal(res.r, -EREMOTEIO);
        assert_int_equal(res.code, CONTROL_CODE_NOT_FOUND);
}

static void client_completed_then_erred(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        Vsockmux__V1__AttachRequest req = VSOCKMUX__V1__ATTACH_REQUEST__INIT;
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;

        if ((res->r = vsockmux_client_connect(f->path, &c)) < 0)
                return;
        res->r = vsockmux_client_call(c, CONTROL_METHOD_NAME("Attach"), &req.base,
                                      &vsockmux__v1__attach_response__descriptor, &m, &st);
        res->code = st.code;
        snprintf(res->text, sizeof(res->text), "%s", st.message);
        /* Exactly one answer came: the next call's reply is the next frame on the wire. */
        res->r2 = kill_call(c, 3, NULL, 0);
}

static void test_handler_error_after_completing_is_ignored(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_completed_then_erred, &res);
        assert_int_equal(res.r, -EREMOTEIO);
        assert_int_equal(res.code, CONTROL_CODE_NOT_FOUND);
        assert_string_equal(res.text, "completed by the handler");
        assert_int_equal(res.r2, 0);
}

static void client_bad_payload(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        Vsockmux__V1__TtrpcRequest req = VSOCKMUX__V1__TTRPC_REQUEST__INIT;
        static uint8_t junk[] = { 0x0a, 0x7f, 0x01 }; /* a string claiming 127 bytes */
        _cleanup_free_ uint8_t *buf = NULL;
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;
        size_t len;

        if ((res->r = vsockmux_client_connect(f->path, &c)) < 0)
                return;
        /* The envelope is fine, the Kill payload inside is not. Stream 1 is the client's first. */
        req.service = (char *)CONTROL_SERVICE;
        req.method = (char *)"Kill";
        req.payload = (ProtobufCBinaryData){ sizeof(junk), junk };
        if ((res->r = control_frame_build(1, CONTROL_MSG_REQUEST, 0, &req.base, &buf, &len)) < 0 ||
            write(vsockmux_client_fd(c), buf, len) != (ssize_t)len)
                return;
        res->r = vsockmux_client_recv(c, 1, &vsockmux__v1__kill_response__descriptor, &m, &st);
        res->code = st.code;
        /* The client's own counter still starts at 1; the server wants increasing ids. */
        res->r2 = vsockmux_client_send(c, CONTROL_METHOD_NAME("Kill"), NULL, 0, 0, &(uint32_t){ 0 });
        res->r2 = vsockmux_client_recv(c, 1, &vsockmux__v1__kill_response__descriptor, &m, &st);
        res->r3 = st.code;
}

static void test_malformed_payload_gets_invalid_argument(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_bad_payload, &res);
        assert_int_equal(res.r, -EREMOTEIO);
        assert_int_equal(res.code, CONTROL_CODE_INVALID_ARGUMENT);
        /* A reused stream id is refused, not crashed on. */
        assert_int_equal(res.r2, -EREMOTEIO);
        assert_int_equal(res.r3, CONTROL_CODE_INVALID_ARGUMENT);
}

struct two_clients {
        const void *bad;
        size_t bad_len;
        int bad_closed;
        int good_before, good_after;
};

static void client_bad_and_good(struct fixture *f, void *arg)
{
        struct two_clients *t = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *good = NULL;
        int fd;

        t->good_before = t->good_after = t->bad_closed = -100;
        if ((t->good_before = vsockmux_client_connect(f->path, &good)) < 0)
                return;
        /* Both connections are open at once; the good one has already been served. */
        if ((t->good_before = kill_call(good, 1, NULL, 0)) < 0)
                return;
        fd = raw_connect(f->path);
        if (fd < 0) {
                t->bad_closed = fd;
                return;
        }
        if (write(fd, t->bad, t->bad_len) != (ssize_t)t->bad_len)
                t->bad_closed = -EIO;
        else
                t->bad_closed = wait_refused(fd);
        close(fd);
        t->good_after = kill_call(good, 2, NULL, 0);
}

static void test_garbage_client_is_closed_while_another_still_works(void **state)
{
        static const char http[] = "GET / HTTP/1.1\r\nHost: vsockmux\r\n\r\n";
        struct fixture *f = *state;
        struct two_clients t = { .bad = http, .bad_len = sizeof(http) - 1 };

        run_client(f, client_bad_and_good, &t);
        assert_int_equal(t.good_before, 0);
        assert_int_equal(t.bad_closed, 0);
        assert_int_equal(t.good_after, 0);
        assert_int_equal(control_server_connections(f->server), 0);
}

static void test_oversized_length_closes_the_connection(void **state)
{
        /* Length 4 MiB + 1, a valid-looking request header: refused on the length alone. */
        static const uint8_t big[] = { 0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 1, 0, 'x' };
        struct fixture *f = *state;
        struct two_clients t = { .bad = big, .bad_len = sizeof(big) };

        struct control_server_stats st;

        run_client(f, client_bad_and_good, &t);
        assert_int_equal(t.good_before, 0);
        assert_int_equal(t.bad_closed, 0);
        assert_int_equal(t.good_after, 0);
        /* The metrics count the refusal as a hit of the frame cap. */
        control_server_get_stats(f->server, &st);
        assert_int_equal(st.frames_refused, 1);
        assert_int_equal(st.connections_refused + st.connections_evicted + st.calls_refused, 0);
}

static void test_response_type_from_client_closes_the_connection(void **state)
{
        static const uint8_t resp[] = { 0, 0, 0, 0, 0, 0, 0, 1, 2, 0 };
        struct fixture *f = *state;
        struct two_clients t = { .bad = resp, .bad_len = sizeof(resp) };

        run_client(f, client_bad_and_good, &t);
        assert_int_equal(t.bad_closed, 0);
        assert_int_equal(t.good_after, 0);
}

static void client_disconnect_mid_request(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *good = NULL;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *waiter = NULL;
        Vsockmux__V1__WaitRequest w = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        uint32_t sid;
        size_t len;
        int fd;

        res->r = res->r2 = res->r3 = -100;
        if (vsockmux_client_connect(f->path, &good) < 0)
                return;
        /* Half a frame, then gone. */
        fd = raw_connect(f->path);
        if (fd < 0 || control_request_build(1, 0, CONTROL_SERVICE, "Kill", NULL, 0, &buf, &len) < 0)
                return;
        res->r = write(fd, buf, len / 2) == (ssize_t)(len / 2) ? 0 : -EIO;
        close(fd);
        /* A call left pending (an async Wait) whose client disconnects. */
        if (vsockmux_client_connect(f->path, &waiter) < 0)
                return;
        w.vm = (char *)"vm1";
        w.pid = 9;
        res->r2 = vsockmux_client_send(waiter, CONTROL_METHOD_NAME("Wait"), &w.base, 0, 0, &sid);
        /* Make sure the Wait reached the handler before hanging up: a call on the good client
         * is served after the loop has read the waiter's frame only by luck, so ask the server. */
        for (int i = 0; i < 6000 && res->r2 == 0; i++) {
                if (__atomic_load_n(&f->n_pending, __ATOMIC_SEQ_CST) == 1)
                        break;
                usleep(10000);
        }
        waiter = vsockmux_client_free(waiter);
        res->r3 = kill_call(good, 5, res->text, sizeof(res->text));
}

static void test_client_disconnecting_mid_request_does_not_disturb_others(void **state)
{
        struct fixture *f = *state;
        struct result res = {};
        uint64_t start = relay_now_ns(f->relay);

        run_client(f, client_disconnect_mid_request, &res);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.r2, 0);
        assert_int_equal(res.r3, 0);
        assert_string_equal(res.text, "signal 15 to vm1/5");
        /* The pending Wait learnt its client left and was completed by its handler. */
        while (f->cancelled == 0) {
                assert_int_equal(relay_run_once(f->relay, 20 * 1000000), 0);
                assert_true(relay_now_ns(f->relay) - start < WAIT_LIMIT_NS);
        }
        assert_int_equal(f->cancelled, 1);
        assert_int_equal(f->n_pending, 0);
}

static void client_async_wait(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *waiter = NULL;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *waker = NULL;
        Vsockmux__V1__WaitRequest w = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        ProtobufCMessage *m = NULL;
        uint32_t sid;

        res->r = res->r2 = -100;
        if (vsockmux_client_connect(f->path, &waiter) < 0 || vsockmux_client_connect(f->path, &waker) < 0)
                return;
        w.vm = (char *)"vm1";
        w.pid = 9;
        if ((res->r = vsockmux_client_send(waiter, CONTROL_METHOD_NAME("Wait"), &w.base, 0, 0, &sid)) < 0)
                return;
        for (int i = 0; i < 6000; i++) {
                if (__atomic_load_n(&f->n_pending, __ATOMIC_SEQ_CST) == 1)
                        break;
                usleep(10000);
        }
        res->r = kill_call(waker, WAKE_PID, NULL, 0);
        res->r2 = vsockmux_client_recv(waiter, sid, &vsockmux__v1__wait_response__descriptor, &m, NULL);
        if (res->r2 == VSOCKMUX_CLIENT_RESPONSE) {
                Vsockmux__V1__WaitResponse *wr = (Vsockmux__V1__WaitResponse *)m;
                res->code = wr->exit ? wr->exit->code : -1;
                res->r3 = wr->exit ? (int)wr->exit->kind : -1;
        }
        control_message_free(m);
}

static void test_handler_replies_later_from_another_connection(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_async_wait, &res);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.r2, VSOCKMUX_CLIENT_RESPONSE);
        assert_int_equal(res.code, 3);
        assert_int_equal(res.r3, VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED);
}

static void client_stream(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        Vsockmux__V1__EventsRequest req = VSOCKMUX__V1__EVENTS_REQUEST__INIT;
        uint32_t sid;
        int n = 0, r;

        if ((res->r = vsockmux_client_connect(f->path, &c)) < 0)
                return;
        if ((res->r = vsockmux_client_send(c, CONTROL_METHOD_NAME("Events"), &req.base, CONTROL_FLAG_REMOTE_CLOSED, 0,
                                           &sid)) < 0)
                return;
        for (;;) {
                ProtobufCMessage *m = NULL;

                r = vsockmux_client_recv(c, sid, &vsockmux__v1__event__descriptor, &m, NULL);
                if (r != VSOCKMUX_CLIENT_DATA)
                        break;
                n++;
                /* The pids arrive in order: 1, 2, 3. */
                if (((Vsockmux__V1__Event *)m)->pid != (uint32_t)n)
                        res->r3 = -1;
                control_message_free(m);
        }
        res->r = r;
        res->r2 = n;
}

static void test_stream_delivers_messages_in_order_then_ends(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_stream, &res);
        assert_int_equal(res.r, VSOCKMUX_CLIENT_END);
        assert_int_equal(res.r2, 3);
        assert_int_equal(res.r3, 0);
}

static void client_deadline(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        Vsockmux__V1__WaitRequest w = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        struct vsockmux_status st = {};
        ProtobufCMessage *m = NULL;
        uint32_t sid;

        if ((res->r = vsockmux_client_connect(f->path, &c)) < 0)
                return;
        w.pid = 1;
        if ((res->r = vsockmux_client_send(c, CONTROL_METHOD_NAME("Wait"), &w.base, 0, 50 * 1000000, &sid)) < 0)
                return;
        res->r = vsockmux_client_recv(c, sid, &vsockmux__v1__wait_response__descriptor, &m, &st);
        res->code = st.code;
        res->r2 = kill_call(c, 1, NULL, 0);
}

static void test_request_deadline_answers_deadline_exceeded(void **state)
{
        struct fixture *f = *state;
        struct result res = {};

        run_client(f, client_deadline, &res);
        assert_int_equal(res.r, -EREMOTEIO);
        assert_int_equal(res.code, CONTROL_CODE_DEADLINE_EXCEEDED);
        assert_int_equal(res.r2, 0);
        /* The handler heard about it through its cancel callback and let the call go. */
        assert_int_equal(f->cancelled, 1);
        assert_int_equal(f->n_pending, 0);
}

static void test_socket_mode_is_0600(void **state)
{
        struct fixture *f = *state;
        struct stat st;

        assert_int_equal(stat(f->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_uid, geteuid());
}

static void test_group_socket_is_0660_with_that_group(void **state)
{
        struct fixture *f = *state;
        struct control_server_config cfg = { .owner_uid = geteuid(), .group = getegid() };
        struct stat st;

        assert_int_equal(server_start(f, &cfg), 0);
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0660);
        assert_int_equal(st.st_gid, getegid());
}

static void test_live_socket_is_not_replaced_but_stale_one_is(void **state)
{
        struct fixture *f = *state;
        struct control_server *second = NULL;
        struct control_server_config cfg = { .path = f->path, .owner_uid = geteuid(), .group = CONTROL_NO_GROUP };

        assert_int_equal(control_server_new(f->relay, &cfg, toy_methods, ELEMENTSOF(toy_methods), f, &second),
                         -EADDRINUSE);
        assert_null(second);
        /* A socket file nobody listens on any more is replaced. */
        f->server = control_server_free(f->server);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        assert_int_equal(server_start(f, NULL), 0);
}

static void client_three(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *a = NULL;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *b = NULL;
        Vsockmux__V1__WaitRequest w = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        uint32_t sid;
        int fd;

        res->r = res->r2 = res->r3 = -100;
        if (vsockmux_client_connect(f->path, &a) < 0 || vsockmux_client_connect(f->path, &b) < 0)
                return;
        /* A call in flight on each: busy connections never make way for a new one. */
        w.vm = (char *)"vm1";
        w.pid = 9;
        if ((res->r = vsockmux_client_send(a, CONTROL_METHOD_NAME("Wait"), &w.base, 0, 0, &sid)) < 0 ||
            (res->r = vsockmux_client_send(b, CONTROL_METHOD_NAME("Wait"), &w.base, 0, 0, &sid)) < 0)
                return;
        for (int i = 0; i < 6000; i++) {
                if (__atomic_load_n(&f->n_pending, __ATOMIC_SEQ_CST) == 2)
                        break;
                usleep(10000);
        }
        fd = raw_connect(f->path);
        res->r2 = fd < 0 ? fd : wait_refused(fd);
        if (fd >= 0)
                close(fd);
        res->r3 = kill_call(a, WAKE_PID, NULL, 0);
}

static void test_connections_over_the_cap_are_refused(void **state)
{
        struct fixture *f = *state;
        struct control_server_config cfg = { .owner_uid = geteuid(), .group = CONTROL_NO_GROUP, .max_connections = 2 };
        struct result res = {};
        struct control_server_stats st;

        assert_int_equal(server_start(f, &cfg), 0);
        run_client(f, client_three, &res);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.r2, 0);
        assert_int_equal(res.r3, 0);
        control_server_get_stats(f->server, &st);
        assert_int_equal(st.connections_refused, 1);
        assert_int_equal(st.connections_evicted, 0);
}

static void client_idle_pair_then_one(struct fixture *f, void *arg)
{
        struct result *res = arg;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *a = NULL;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *b = NULL;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        int fd;

        res->r = res->r2 = res->r3 = -100;
        fd = raw_connect(f->path);
        if (fd < 0 || vsockmux_client_connect(f->path, &a) < 0)
                return;
        /* A call on a makes sure both were accepted, and leaves the raw one idle longest. */
        if ((res->r = kill_call(a, 1, NULL, 0)) < 0)
                return;
        if (vsockmux_client_connect(f->path, &c) < 0)
                return;
        res->r = kill_call(c, 2, NULL, 0);
        /* The connection idle longest was closed to make room; a is still served. */
        res->r2 = wait_closed(fd);
        close(fd);
        res->r3 = kill_call(a, 3, NULL, 0);
}

static void test_idle_connection_makes_way_at_the_cap(void **state)
{
        struct fixture *f = *state;
        struct control_server_config cfg = { .owner_uid = geteuid(), .group = CONTROL_NO_GROUP, .max_connections = 2 };
        struct result res = {};
        struct control_server_stats st;

        assert_int_equal(server_start(f, &cfg), 0);
        run_client(f, client_idle_pair_then_one, &res);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.r2, 0);
        assert_int_equal(res.r3, 0);
        control_server_get_stats(f->server, &st);
        assert_int_equal(st.connections_evicted, 1);
        assert_int_equal(st.connections_refused, 0);
}

/* In a child that dropped to nobody: 0 refused (closed without answer), 1 answered, >1 error. */
static int child_try_call(const char *path, gid_t gid)
{
        _cleanup_free_ uint8_t *buf = NULL;
        Vsockmux__V1__KillRequest req = VSOCKMUX__V1__KILL_REQUEST__INIT;
        size_t len;
        int fd;

        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
                return 2;
        fd = raw_connect(path);
        if (fd < 0)
                return 3;
        req.vm = (char *)"vm1";
        if (control_request_build(1, 0, CONTROL_SERVICE, "Kill", &req.base, 0, &buf, &len) < 0)
                return 4;
        /* The server may already have closed: a failed write is a refusal too. */
        if (write(fd, buf, len) != (ssize_t)len)
                return 0;
        switch (wait_closed(fd)) {
        case 0: return 0;
        case 1: return 1;
        default: return 5;
        }
}

static void run_child_call(struct fixture *f, gid_t gid, int *ret_code)
{
        int status;
        pid_t pid;

        /* The uid check is what is under test, not the file mode: let anyone reach the socket. */
        assert_int_equal(chmod(f->dir, 0755), 0);
        assert_int_equal(chmod(f->path, 0666), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(child_try_call(f->path, gid));
        run_loop_until_child_exits(f, pid, &status);
        assert_true(WIFEXITED(status));
        *ret_code = WEXITSTATUS(status);
}

static void test_non_owner_peer_is_refused(void **state)
{
        struct fixture *f = *state;
        int code;

        f->kill_calls = 0;
        run_child_call(f, NOBODY, &code);
        assert_int_equal(code, 0);
        assert_int_equal(f->kill_calls, 0);
}

static void test_member_of_the_control_group_is_allowed(void **state)
{
        struct fixture *f = *state;
        struct control_server_config cfg = { .owner_uid = 0, .group = NOBODY };
        int code;

        assert_int_equal(server_start(f, &cfg), 0);
        run_child_call(f, NOBODY, &code);
        assert_int_equal(code, 1);
        assert_int_equal(f->kill_calls, 1);
}

static void test_bad_method_tables_are_refused(void **state)
{
        struct fixture *f = *state;
        struct control_server_config cfg = { .path = f->path, .owner_uid = 0, .group = CONTROL_NO_GROUP };
        struct control_server *s = NULL;
        const struct control_method dup[] = { toy_methods[0], toy_methods[0] };
        const struct control_method noslash[] = {
                { "Kill", &vsockmux__v1__kill_request__descriptor, on_kill, false },
        };

        assert_int_equal(control_server_new(f->relay, &cfg, dup, 2, f, &s), -EEXIST);
        assert_int_equal(control_server_new(f->relay, &cfg, noslash, 1, f, &s), -EINVAL);
        assert_null(s);
}

int main(int argc, char **argv)
{
        test_skip_without_io_uring();
        /* Run as `--peer`: the tests that need root to switch uid, skipped as a whole otherwise. */
        const struct CMUnitTest peer_tests[] = {
                cmocka_unit_test_setup_teardown(test_non_owner_peer_is_refused, setup_with_server, teardown),
                cmocka_unit_test_setup_teardown(test_member_of_the_control_group_is_allowed, setup, teardown),
        };
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_valid_call_gets_its_reply, setup_with_server, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_method_gets_unimplemented_and_connection_keeps_working,
                                                setup_with_server, teardown),
                cmocka_unit_test_setup_teardown(test_handler_errno_becomes_grpc_status, setup_with_server, teardown),
                cmocka_unit_test_setup_teardown(test_handler_error_after_completing_is_ignored, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_malformed_payload_gets_invalid_argument, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_garbage_client_is_closed_while_another_still_works,
                                                setup_with_server, teardown),
                cmocka_unit_test_setup_teardown(test_oversized_length_closes_the_connection, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_response_type_from_client_closes_the_connection, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_client_disconnecting_mid_request_does_not_disturb_others,
                                                setup_with_server, teardown),
                cmocka_unit_test_setup_teardown(test_handler_replies_later_from_another_connection, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_stream_delivers_messages_in_order_then_ends, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_request_deadline_answers_deadline_exceeded, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_socket_mode_is_0600, setup_with_server, teardown),
                cmocka_unit_test_setup_teardown(test_group_socket_is_0660_with_that_group, setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_socket_is_not_replaced_but_stale_one_is, setup_with_server,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_idle_connection_makes_way_at_the_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connections_over_the_cap_are_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_method_tables_are_refused, setup, teardown),
        };

        if (argc > 1 && strcmp(argv[1], "--peer") == 0) {
                if (geteuid() != 0) {
                        fprintf(stderr, "skip: switching to uid %d to play a non-owner peer needs root\n", NOBODY);
                        return 77;
                }
                return cmocka_run_group_tests(peer_tests, NULL, NULL);
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
