/* The connection state machine against a scripted guest: frames the host writes are decoded
 * with the wire codec, and the guest's answers are encoded with it and fed back in. Tags such as
 * W4 or Z1 name paragraphs of ../shared/docs/bridge-protocol.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bridge/codec.h"
#include "bridge/conn.h"
#include "bridge/msg.h"

struct harness {
        struct bridge_conn *c;
        uint8_t *out; /* frames the host wrote; those from out_off on are not read by the test yet */
        size_t out_len, out_off, out_cap;
        uint8_t *in; /* bytes fed to the host but not consumed yet */
        size_t in_len;
        int write_error;
        int disconnects;
        int last_disconnect;
        enum bridge_conn_state last_state;
        int state_changes;
        int notifications;
        int unwatched_notifications;
        int events[_BRIDGE_EVENT_KIND_MAX];
        struct bridge_event last_event; /* its strings copied into the two below */
        char last_what[512], last_container[128];
        uint64_t now;
};

struct done {
        int count;
        struct bridge_result last;
        char message[512];
};

static void on_done(const struct bridge_result *res, void *userdata)
{
        struct done *d = userdata;

        d->count++;
        d->last = *res;
        d->last.response = NULL;
        snprintf(d->message, sizeof(d->message), "%s", res->message);
        d->last.message = d->message;
}

struct seen {
        int count;
        int error;
        char type[64];
};

static void on_notify(const struct bridge_notification *n, int error, void *userdata)
{
        struct seen *s = userdata;

        s->count++;
        s->error = error;
        if (n)
                snprintf(s->type, sizeof(s->type), "%s", n->type);
}

static int h_write(struct bridge_conn *c, const void *frame, size_t len, void *userdata)
{
        struct harness *h = userdata;

        if (h->write_error)
                return h->write_error;
        if (h->out_len + len > h->out_cap) {
                h->out_cap = MAX(2 * h->out_cap, h->out_len + len);
                h->out = realloc(h->out, h->out_cap);
                assert_non_null(h->out);
        }
        memcpy(h->out + h->out_len, frame, len);
        h->out_len += len;
        return 0;
}

static void h_disconnect(struct bridge_conn *c, int error, void *userdata)
{
        struct harness *h = userdata;

        h->disconnects++;
        h->last_disconnect = error;
        /* What the binding does: the transport is gone, so is anything it held. */
        h->in_len = 0;
        h->out_len = h->out_off = 0;
}

static void h_state(struct bridge_conn *c, enum bridge_conn_state o, enum bridge_conn_state n, void *userdata)
{
        struct harness *h = userdata;

        assert_int_equal(bridge_conn_state(c), n);
        h->state_changes++;
        h->last_state = n;
}

static void h_notification(struct bridge_conn *c, const struct bridge_notification *n, bool watched, void *userdata)
{
        struct harness *h = userdata;

        h->notifications++;
        if (!watched)
                h->unwatched_notifications++;
}

static void h_event(struct bridge_conn *c, const struct bridge_event *ev, void *userdata)
{
        struct harness *h = userdata;

        assert_true(ev->kind >= 0 && ev->kind < _BRIDGE_EVENT_KIND_MAX);
        h->events[ev->kind]++;
        h->last_event = *ev;
        snprintf(h->last_what, sizeof(h->last_what), "%s", ev->what ?: "");
        snprintf(h->last_container, sizeof(h->last_container), "%s", ev->container_id ?: "");
        h->last_event.what = h->last_what;
        h->last_event.container_id = h->last_container;
}

static uint64_t h_now(struct bridge_conn *c, void *userdata)
{
        struct harness *h = userdata;

        return h->now;
}

static const struct bridge_conn_ops harness_ops = {
        .write = h_write,
        .disconnect = h_disconnect,
        .state_changed = h_state,
        .notification = h_notification,
        .event = h_event,
        .now = h_now,
};

static struct harness *harness_new(void)
{
        struct harness *h = calloc(1, sizeof(*h));

        assert_non_null(h);
        h->now = 1000;
        assert_int_equal(bridge_conn_new(&harness_ops, h, &h->c), 0);
        return h;
}

static void harness_free(struct harness *h)
{
        bridge_conn_free(h->c);
        free(h->out);
        free(h->in);
        free(h);
}

/* Feeds bytes as a channel would: the unconsumed rest is offered again with the next bytes. */
static ssize_t feed(struct harness *h, const void *data, size_t len)
{
        ssize_t r;

        h->in = realloc(h->in, h->in_len + len + 1);
        assert_non_null(h->in);
        memcpy(h->in + h->in_len, data, len);
        h->in_len += len;
        r = bridge_conn_recv(h->c, h->in, h->in_len);
        if (r < 0) {
                h->in_len = 0;
                return r;
        }
        assert_true((size_t)r <= h->in_len);
        memmove(h->in, h->in + r, h->in_len - (size_t)r);
        h->in_len -= (size_t)r;
        return r;
}

static bool has_request(struct harness *h)
{
        return h->out_len > h->out_off;
}

/* Takes the next frame the host wrote; returns its type and fills *ret_req (caller _done()s it). */
static uint32_t pop_request(struct harness *h, struct bridge_request *ret_req, uint64_t *ret_id)
{
        struct bridge_frame f;
        int r;

        r = bridge_frame_parse(h->out + h->out_off, h->out_len - h->out_off, &f, NULL, NULL);
        assert_true(r > 0);
        assert_int_equal(bridge_type_class(f.header.type), BRIDGE_CLASS_REQUEST);
        /* The host's json.Encoder habit (W4). */
        assert_int_equal(f.payload[f.payload_len - 1], '\n');
        assert_int_equal(bridge_request_decode(f.header.type, f.payload, f.payload_len, ret_req, NULL), 0);
        *ret_id = f.header.id;
        h->out_off += (size_t)r;
        if (h->out_off == h->out_len)
                h->out_off = h->out_len = 0;
        return f.header.type;
}

static ssize_t reply(struct harness *h, uint32_t req_type, uint64_t id, const struct bridge_response *resp)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;

        assert_int_equal(bridge_response_frame(req_type, id, resp, &buf, &len), 0);
        return feed(h, buf, len);
}

static ssize_t reply_result(struct harness *h, uint32_t req_type, uint64_t id, int32_t result, const char *msg)
{
        struct bridge_response resp = { .result = result, .error_message = msg };

        return reply(h, req_type, id, &resp);
}

static ssize_t notify(struct harness *h, const char *cid, const char *type)
{
        _cleanup_free_ uint8_t *buf = NULL;
        struct bridge_notification n = { .container_id = cid, .type = type };
        size_t len;

        assert_int_equal(bridge_notification_frame(&n, &buf, &len), 0);
        return feed(h, buf, len);
}

static ssize_t feed_raw(struct harness *h, uint32_t type, uint64_t id, const char *json)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;

        assert_int_equal(bridge_frame_encode(type, id, json, strlen(json), false, &buf, &len), 0);
        return feed(h, buf, len);
}

/* Attaches a guest and answers the negotiation. */
static void connect_guest(struct harness *h, bool resume)
{
        struct bridge_request req;
        struct bridge_response resp = { .negotiate = { .version = 4, .stdio_resume = resume } };
        uint64_t id;

        assert_int_equal(bridge_conn_attach(h->c), 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_NEGOTIATING);
        assert_int_equal(pop_request(h, &req, &id), BRIDGE_RPC_NEGOTIATE_PROTOCOL);
        bridge_request_done(&req);
        assert_true(reply(h, BRIDGE_RPC_NEGOTIATE_PROTOCOL, id, &resp) > 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);
}

static uint64_t send_wait(struct harness *h, uint32_t pid, struct done *d)
{
        uint64_t id;

        assert_int_equal(bridge_conn_wait(h->c, "ctr", pid, BRIDGE_WAIT_INFINITE, on_done, d, &id), 0);
        return id;
}

/* ---- negotiation ---- */

static void test_negotiate_offers_resume_and_records_capabilities(void **state)
{
        struct harness *h = harness_new();
        struct bridge_request req;
        struct bridge_response resp = { .negotiate = {
                                                .version = 4, .runtime_os_type = "Linux", .stdio_resume = true } };
        uint64_t id;

        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_WAITING);
        assert_int_equal(bridge_conn_attach(h->c), 0);
        assert_int_equal(pop_request(h, &req, &id), BRIDGE_RPC_NEGOTIATE_PROTOCOL);
        /* W7: the first call is id 0, ContainerId "", versions 4..4; V4 offered. */
        assert_int_equal(id, 0);
        assert_string_equal(req.container_id, "");
        assert_int_equal(req.negotiate.min_version, 4);
        assert_int_equal(req.negotiate.max_version, 4);
        assert_true(req.negotiate.stdio_resume);
        bridge_request_done(&req);
        assert_false(bridge_conn_stdio_resume(h->c));
        assert_true(reply(h, BRIDGE_RPC_NEGOTIATE_PROTOCOL, id, &resp) > 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);
        assert_int_equal(h->last_state, BRIDGE_CONN_CONNECTED);
        assert_string_equal(bridge_conn_runtime_os(h->c), "linux");
        assert_true(bridge_conn_stdio_resume(h->c));
        harness_free(h);
}

/* Acks are offered with resume and agreed only with it: they free what only resume replays. */
static void negotiate_ack(struct harness *h, bool resume, bool ack, bool *ret_offered)
{
        struct bridge_request req;
        struct bridge_response resp = { .negotiate = { .version = 4, .stdio_resume = resume, .stdio_ack = ack } };
        uint64_t id;

        assert_int_equal(bridge_conn_attach(h->c), 0);
        assert_int_equal(pop_request(h, &req, &id), BRIDGE_RPC_NEGOTIATE_PROTOCOL);
        *ret_offered = req.negotiate.stdio_ack;
        bridge_request_done(&req);
        assert_true(reply(h, BRIDGE_RPC_NEGOTIATE_PROTOCOL, id, &resp) > 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);
}

static void test_ack_is_agreed_only_with_resume(void **state)
{
        struct harness *h = harness_new();
        bool offered;

        negotiate_ack(h, true, true, &offered);
        assert_true(offered);
        assert_true(bridge_conn_stdio_ack(h->c));
        harness_free(h);

        h = harness_new();
        negotiate_ack(h, false, true, &offered); /* a guest announcing acks without resume */
        assert_false(bridge_conn_stdio_resume(h->c));
        assert_false(bridge_conn_stdio_ack(h->c));
        harness_free(h);

        h = harness_new();
        negotiate_ack(h, true, false, &offered); /* vsockmux-sim --no-ack */
        assert_true(bridge_conn_stdio_resume(h->c));
        assert_false(bridge_conn_stdio_ack(h->c));
        harness_free(h);

        h = harness_new();
        bridge_conn_set_offer_stdio_resume(h->c, false);
        negotiate_ack(h, true, true, &offered);
        assert_false(offered);
        assert_false(bridge_conn_stdio_ack(h->c));
        harness_free(h);

        h = harness_new();
        bridge_conn_set_offer_stdio_ack(h->c, false);
        negotiate_ack(h, true, true, &offered);
        assert_false(offered);
        assert_true(bridge_conn_stdio_resume(h->c));
        assert_false(bridge_conn_stdio_ack(h->c));
        harness_free(h);
}

static void test_legacy_guest_gets_no_resume(void **state)
{
        struct harness *h = harness_new();

        connect_guest(h, false);
        assert_false(bridge_conn_stdio_resume(h->c));
        harness_free(h);
}

static void test_resume_not_offered_is_not_agreed(void **state)
{
        struct harness *h = harness_new();
        struct bridge_request req;
        struct bridge_response resp = { .negotiate = { .version = 4, .stdio_resume = true } };
        uint64_t id;

        bridge_conn_set_offer_stdio_resume(h->c, false);
        assert_int_equal(bridge_conn_attach(h->c), 0);
        assert_int_equal(pop_request(h, &req, &id), BRIDGE_RPC_NEGOTIATE_PROTOCOL);
        assert_false(req.negotiate.stdio_resume);
        bridge_request_done(&req);
        /* The guest announces it anyway: still not agreed. */
        assert_true(reply(h, BRIDGE_RPC_NEGOTIATE_PROTOCOL, id, &resp) > 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);
        assert_false(bridge_conn_stdio_resume(h->c));
        harness_free(h);
}

static void test_negotiate_wrong_version_drops_the_guest(void **state)
{
        struct harness *h = harness_new();
        struct bridge_request req;
        uint64_t id;

        assert_int_equal(bridge_conn_attach(h->c), 0);
        assert_int_equal(pop_request(h, &req, &id), BRIDGE_RPC_NEGOTIATE_PROTOCOL);
        bridge_request_done(&req);
        assert_true(feed_raw(h, bridge_type_response_for(BRIDGE_RPC_NEGOTIATE_PROTOCOL), id,
                             "{\"Result\":0,\"Version\":3,\"Capabilities\":{\"RuntimeOsType\":\"Linux\","
                             "\"GuestDefinedCapabilities\":{}}}") < 0);
        assert_int_equal(h->disconnects, 1);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_WAITING);
        /* The VM stays: the next guest connection negotiates afresh. */
        connect_guest(h, false);
        harness_free(h);
}

static void test_calls_need_a_negotiated_guest(void **state)
{
        struct harness *h = harness_new();
        struct done d = {};

        assert_int_equal(bridge_conn_wait(h->c, "ctr", 1, BRIDGE_WAIT_INFINITE, on_done, &d, NULL), -ENOTCONN);
        assert_int_equal(bridge_conn_attach(h->c), 0);
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 1, 9, on_done, &d, NULL), -ENOTCONN);
        assert_int_equal(d.count, 0);
        harness_free(h);
}

/* ---- results ---- */

static void test_exec_response_completes_once_with_pid(void **state)
{
        struct harness *h = harness_new();
        struct bridge_process_params params = { .command_line = "cat", .create_stdin = false };
        struct bridge_stdio_ports ports = { .stdin_port = 0x40000001, .stdout_port = 0x40000002 };
        struct bridge_response resp = { .exec.pid = 42 };
        struct bridge_request req;
        struct done d = {};
        uint64_t id, sent;

        connect_guest(h, false);
        assert_int_equal(bridge_conn_exec(h->c, "ctr", &params, &ports, on_done, &d, &id), 0);
        assert_int_equal(pop_request(h, &req, &sent), BRIDGE_RPC_EXECUTE_PROCESS);
        assert_int_equal(sent, id);
        /* The pipe flags follow the ports, whatever the caller set. */
        assert_true(req.exec.params.create_stdin);
        assert_true(req.exec.params.create_stdout);
        assert_false(req.exec.params.create_stderr);
        assert_int_equal(req.exec.stdin_port, 0x40000001);
        assert_int_equal(req.exec.stderr_port, 0);
        bridge_request_done(&req);
        assert_int_equal(bridge_conn_outstanding(h->c), 1);
        assert_true(reply(h, BRIDGE_RPC_EXECUTE_PROCESS, id, &resp) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(d.last.pid, 42);
        assert_int_equal(bridge_conn_outstanding(h->c), 0);
        /* A second reply for the same id is an unknown id now: fatal outside a resume window. */
        assert_true(reply(h, BRIDGE_RPC_EXECUTE_PROCESS, id, &resp) < 0);
        assert_int_equal(d.count, 1);
        harness_free(h);
}

/* hcsshim's guest runs a VM-level process only for the null GUID; "" names no container it knows. */
static void test_vm_level_process_is_addressed_with_the_null_guid(void **state)
{
        struct harness *h = harness_new();
        struct bridge_process_params params = { .command_line = "true" };
        struct bridge_request req;
        struct done d = {};
        uint64_t id, sent;

        connect_guest(h, false);
        assert_int_equal(bridge_conn_exec(h->c, "", &params, NULL, on_done, &d, &id), 0);
        assert_int_equal(pop_request(h, &req, &sent), BRIDGE_RPC_EXECUTE_PROCESS);
        assert_string_equal(req.container_id, BRIDGE_NULL_GUID);
        bridge_request_done(&req);
        assert_int_equal(bridge_conn_wait(h->c, "", 5, BRIDGE_WAIT_INFINITE, on_done, &d, &id), 0);
        assert_int_equal(pop_request(h, &req, &sent), BRIDGE_RPC_WAIT_FOR_PROCESS);
        assert_string_equal(req.container_id, BRIDGE_NULL_GUID);
        bridge_request_done(&req);
        assert_int_equal(bridge_conn_signal(h->c, "", 5, 15, on_done, &d, &id), 0);
        assert_int_equal(pop_request(h, &req, &sent), BRIDGE_RPC_SIGNAL_PROCESS);
        assert_string_equal(req.container_id, BRIDGE_NULL_GUID);
        bridge_request_done(&req);
        /* A container's own name goes as it is. */
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 5, 15, on_done, &d, &id), 0);
        assert_int_equal(pop_request(h, &req, &sent), BRIDGE_RPC_SIGNAL_PROCESS);
        assert_string_equal(req.container_id, "ctr");
        bridge_request_done(&req);
        harness_free(h);
}

/* Go's -1 (4294967295) from hcsshim's guest: the process ended by a signal, its status is not lost. */
static void test_wait_go_minus_one_is_signaled_not_lost(void **state)
{
        struct harness *h = harness_new();
        struct bridge_response resp = { .wait.exit_code = 4294967295u };
        struct bridge_response too_big = { .wait.exit_code = 4294967294u };
        struct done d = {};
        uint64_t id;

        connect_guest(h, false);
        id = send_wait(h, 7, &d);
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, &resp) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(d.last.error, 0);
        assert_true(d.last.signaled);
        assert_int_equal(d.last.exit_code, -1);
        /* Any other code above INT32_MAX still means nothing: a bad reply. */
        id = send_wait(h, 8, &d);
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, &too_big) > 0);
        assert_int_equal(d.count, 2);
        assert_int_equal(d.last.status, BRIDGE_STATUS_BAD_REPLY);
        assert_false(d.last.signaled);
        harness_free(h);
}

static void test_guest_error_surfaces_hresult_and_message(void **state)
{
        struct harness *h = harness_new();
        struct done d = {};
        uint64_t id;

        connect_guest(h, false);
        assert_int_equal(bridge_conn_create_container(h->c, "ctr", "{}", on_done, &d, &id), 0);
        assert_true(reply_result(h, BRIDGE_RPC_CREATE, id, (int32_t)0x80070002, "no such bundle") > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_GUEST_ERROR);
        assert_int_equal(d.last.error, -EREMOTEIO);
        assert_int_equal((uint32_t)d.last.hresult, 0x80070002u);
        assert_non_null(strstr(d.message, "0x80070002"));
        assert_non_null(strstr(d.message, "no such bundle"));
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);
        harness_free(h);
}

static void test_wait_reports_exit_code(void **state)
{
        struct harness *h = harness_new();
        struct bridge_response resp = { .wait.exit_code = 137 };
        struct bridge_request req;
        struct done d = {};
        uint64_t id, sent;

        connect_guest(h, false);
        id = send_wait(h, 7, &d);
        assert_int_equal(pop_request(h, &req, &sent), BRIDGE_RPC_WAIT_FOR_PROCESS);
        assert_int_equal(req.wait.pid, 7);
        assert_int_equal(req.wait.timeout_ms, BRIDGE_WAIT_INFINITE);
        bridge_request_done(&req);
        /* An infinite wait has no deadline of its own. */
        assert_int_equal(bridge_conn_next_deadline(h->c), BRIDGE_DEADLINE_NONE);
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, &resp) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(d.last.exit_code, 137);
        harness_free(h);
}

static void test_wait_not_found_reports_lost_status(void **state)
{
        struct harness *h = harness_new();
        struct done d = {};
        uint64_t id;

        connect_guest(h, false);
        id = send_wait(h, 7, &d);
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, BRIDGE_HR_NOT_FOUND, "not found") > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_EXIT_LOST);
        assert_int_equal(d.last.error, -ECHILD);
        /* Never mistaken for a clean exit (Z4). */
        assert_int_not_equal(d.last.exit_code, 0);
        harness_free(h);
}

static void test_signal_not_found_is_already_gone(void **state)
{
        struct harness *h = harness_new();
        struct bridge_request req;
        struct done d = {};
        uint64_t id, sent;

        connect_guest(h, false);
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 9, 15, on_done, &d, &id), 0);
        assert_int_equal(pop_request(h, &req, &sent), BRIDGE_RPC_SIGNAL_PROCESS);
        assert_int_equal(req.signal.signal, 15);
        bridge_request_done(&req);
        assert_true(reply_result(h, BRIDGE_RPC_SIGNAL_PROCESS, id, BRIDGE_HR_NOT_FOUND, NULL) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_ALREADY_GONE);
        assert_int_equal(d.last.error, 0);
        harness_free(h);
}

static void test_shutdown_of_missing_container_is_already_gone(void **state)
{
        struct harness *h = harness_new();
        struct done d = {}, e = {};
        uint64_t id;

        connect_guest(h, false);
        assert_int_equal(bridge_conn_shutdown(h->c, "ctr", BRIDGE_SHUTDOWN_FORCED, on_done, &d, &id), 0);
        assert_true(reply_result(h, BRIDGE_RPC_SHUTDOWN_FORCED, id, BRIDGE_HR_SYSTEM_NOT_FOUND, "no such container") >
                    0);
        assert_int_equal(d.last.status, BRIDGE_STATUS_ALREADY_GONE);
        assert_int_equal(d.last.error, 0);
        /* Any other failure is an error. */
        assert_int_equal(bridge_conn_shutdown(h->c, "ctr", BRIDGE_SHUTDOWN_GRACEFUL, on_done, &e, &id), 0);
        assert_true(reply_result(h, BRIDGE_RPC_SHUTDOWN_GRACEFUL, id, BRIDGE_HR_FAIL, "busy") > 0);
        assert_int_equal(e.last.status, BRIDGE_STATUS_GUEST_ERROR);
        assert_int_equal(e.last.error, -EREMOTEIO);
        assert_int_equal(bridge_conn_shutdown(h->c, "ctr", 7, on_done, &e, &id), -EINVAL);
        harness_free(h);
}

static void test_timeout_completes_call_once_and_late_reply_is_swallowed(void **state)
{
        struct harness *h = harness_new();
        struct done d = {};
        uint64_t id;

        connect_guest(h, false);
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 9, 15, on_done, &d, &id), 0);
        assert_int_equal(bridge_conn_next_deadline(h->c), h->now + BRIDGE_CONN_CALL_TIMEOUT_NS);
        bridge_conn_tick(h->c, h->now + BRIDGE_CONN_CALL_TIMEOUT_NS - 1);
        assert_int_equal(d.count, 0);
        bridge_conn_tick(h->c, h->now + BRIDGE_CONN_CALL_TIMEOUT_NS);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_TIMEOUT);
        assert_int_equal(d.last.error, -ETIMEDOUT);
        assert_true(reply_result(h, BRIDGE_RPC_SIGNAL_PROCESS, id, 0, NULL) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(h->disconnects, 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);

        /* The timeout is configurable within a named bound; 0 restores the default. */
        assert_int_equal(bridge_conn_set_call_timeout(h->c, BRIDGE_CONN_CALL_TIMEOUT_MAX_NS + 1), -ERANGE);
        assert_int_equal(bridge_conn_set_call_timeout(h->c, 1000), 0);
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 9, 15, on_done, &d, &id), 0);
        assert_int_equal(bridge_conn_next_deadline(h->c), h->now + 1000);
        bridge_conn_tick(h->c, h->now + 1000);
        assert_int_equal(d.count, 2);
        assert_int_equal(bridge_conn_set_call_timeout(h->c, 0), 0);
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 9, 15, on_done, &d, &id), 0);
        assert_int_equal(bridge_conn_next_deadline(h->c), h->now + BRIDGE_CONN_CALL_TIMEOUT_NS);
        harness_free(h);
}

/* ---- protocol errors end the guest connection ---- */

static void test_unknown_id_outside_resume_window_kills(void **state)
{
        struct harness *h = harness_new();
        struct done d = {};

        connect_guest(h, false);
        send_wait(h, 1, &d);
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, 999, 0, NULL) < 0);
        assert_int_equal(h->disconnects, 1);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_WAITING);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_CLOSED);
        assert_string_equal(d.message, "bridge closed");
        harness_free(h);
}

static void test_request_from_guest_kills(void **state)
{
        struct harness *h = harness_new();
        struct done d = {};

        connect_guest(h, false);
        send_wait(h, 1, &d);
        assert_true(feed_raw(h, BRIDGE_RPC_EXECUTE_PROCESS, 5, "{}") < 0);
        assert_int_equal(h->disconnects, 1);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.error, -ENOTCONN);
        harness_free(h);
}

/* bridge/ logs nothing: the owner hears why the guest was dropped, to log it. */
static void test_a_dropped_guest_is_told_to_the_owner_with_the_reason(void **state)
{
        struct harness *h = harness_new();

        connect_guest(h, false);
        assert_true(feed_raw(h, BRIDGE_RPC_EXECUTE_PROCESS, 5, "{}") < 0);
        assert_int_equal(h->events[BRIDGE_EVENT_GUEST_DROPPED], 1);
        assert_int_equal(h->last_event.kind, BRIDGE_EVENT_GUEST_DROPPED);
        assert_non_null(strstr(h->last_what, "the guest sent a request"));
        assert_false(h->last_event.migrating);
        /* Dropped by us, not detached by the binding: one event, not two. */
        assert_int_equal(h->events[BRIDGE_EVENT_GUEST_DETACHED], 0);
        harness_free(h);
}

static void test_undecodable_payload_kills_and_fails_calls_with_bridge_closed(void **state)
{
        struct harness *h = harness_new();
        struct done a = {}, b = {};
        uint64_t id;

        connect_guest(h, false);
        id = send_wait(h, 1, &a);
        send_wait(h, 2, &b);
        assert_true(feed_raw(h, bridge_type_response_for(BRIDGE_RPC_WAIT_FOR_PROCESS), id, "{\"Result\":") < 0);
        assert_int_equal(h->disconnects, 1);
        assert_int_equal(a.count, 1);
        assert_int_equal(b.count, 1);
        assert_int_equal(a.last.status, BRIDGE_STATUS_CLOSED);
        assert_string_equal(a.message, "bridge closed");
        assert_string_equal(b.message, "bridge closed");
        /* Later calls are refused at once until a guest negotiates again. */
        assert_int_equal(bridge_conn_wait(h->c, "ctr", 3, BRIDGE_WAIT_INFINITE, on_done, &a, NULL), -ENOTCONN);
        harness_free(h);
}

static void test_notification_of_unexpected_type_kills(void **state)
{
        struct harness *h = harness_new();

        connect_guest(h, false);
        assert_true(feed_raw(h, 0x30100201, 0, "{\"ContainerId\":\"ctr\",\"Type\":\"UnexpectedExit\"}") < 0);
        assert_int_equal(h->disconnects, 1);
        harness_free(h);
}

static void test_oversized_frame_drops_guest_but_not_the_vm(void **state)
{
        struct harness *h = harness_new();
        uint8_t hdr[BRIDGE_HEADER_SIZE];
        struct bridge_header bh = {
                .type = bridge_type_response_for(BRIDGE_RPC_WAIT_FOR_PROCESS),
                .size = BRIDGE_MAX_FRAME + 1,
                .id = 0,
        };
        struct done d = {};

        connect_guest(h, false);
        send_wait(h, 1, &d);
        bridge_header_encode(&bh, hdr);
        /* Refused on the header alone, before 64 KiB are buffered. */
        assert_int_equal(feed(h, hdr, sizeof(hdr)), -EMSGSIZE);
        assert_int_equal(h->disconnects, 1);
        assert_int_equal(d.count, 1);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_WAITING);
        connect_guest(h, false);
        harness_free(h);
}

static void test_frames_split_across_reads_are_reassembled(void **state)
{
        struct harness *h = harness_new();
        _cleanup_free_ uint8_t *buf = NULL;
        struct bridge_response resp = { .wait.exit_code = 3 };
        struct done d = {};
        uint64_t id;
        size_t len;

        connect_guest(h, false);
        id = send_wait(h, 1, &d);
        assert_int_equal(bridge_response_frame(BRIDGE_RPC_WAIT_FOR_PROCESS, id, &resp, &buf, &len), 0);
        for (size_t i = 0; i < len; i++) {
                assert_int_equal(d.count, 0);
                assert_true(feed(h, buf + i, 1) >= 0);
        }
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.exit_code, 3);
        assert_int_equal(h->in_len, 0);
        harness_free(h);
}

static void test_write_failure_drops_guest_unless_migrating(void **state)
{
        struct harness *h = harness_new();
        struct done kept = {}, d = {};
        uint64_t untouched = 12345;

        connect_guest(h, false);
        bridge_conn_set_migrating(h->c, true);
        send_wait(h, 1, &kept);
        h->write_error = -ENOBUFS;
        /* Migrating: only this call fails, and synchronously (no callback, no id handed out). */
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 1, 9, on_done, &d, &untouched), -ENOBUFS);
        assert_int_equal(untouched, 12345);
        assert_int_equal(h->disconnects, 0);
        assert_int_equal(kept.count, 0);
        bridge_conn_set_migrating(h->c, false);
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 1, 9, on_done, &d, NULL), -ENOBUFS);
        assert_int_equal(h->disconnects, 1);
        assert_int_equal(kept.count, 1);
        assert_int_equal(kept.last.status, BRIDGE_STATUS_CLOSED);
        assert_int_equal(d.count, 0);
        harness_free(h);
}

/* ---- migration, resume window, probes ---- */

static void test_migrating_keeps_calls_across_loss_and_probe_catches_exit(void **state)
{
        struct harness *h = harness_new();
        struct bridge_response exited = { .wait.exit_code = 5 };
        struct bridge_request req;
        struct done d = {};
        uint64_t id, probe_id;

        connect_guest(h, true);
        id = send_wait(h, 11, &d);
        h->out_len = h->out_off = 0;
        bridge_conn_set_migrating(h->c, true);
        bridge_conn_detach(h->c, -ECONNRESET);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_MIGRATING);
        assert_int_equal(d.count, 0);
        assert_false(bridge_conn_stdio_resume(h->c));

        /* Reconnect: renegotiate, then a bounded probe for the wait sent on the old connection. */
        connect_guest(h, true);
        assert_true(bridge_conn_stdio_resume(h->c));
        assert_true(has_request(h));
        assert_int_equal(pop_request(h, &req, &probe_id), BRIDGE_RPC_WAIT_FOR_PROCESS);
        assert_int_equal(req.wait.pid, 11);
        assert_string_equal(req.container_id, "ctr");
        assert_int_equal(req.wait.timeout_ms, BRIDGE_CONN_PROBE_TIMEOUT_MS);
        assert_true(probe_id > id);
        bridge_request_done(&req);
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, probe_id, &exited) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(d.last.exit_code, 5);
        assert_true(d.last.probed);
        assert_int_equal(d.last.call_id, id);
        /* Should the guest still answer the original wait, that reply is swallowed. */
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, &exited) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(h->disconnects, 0);
        harness_free(h);
}

static void test_probe_still_running_keeps_the_wait(void **state)
{
        struct harness *h = harness_new();
        struct bridge_response exited = { .wait.exit_code = 0 };
        struct bridge_request req;
        struct done d = {};
        uint64_t probe_id, backing_id;

        connect_guest(h, false);
        /* Adopted from another daemon: its request went out there, as id 77. */
        assert_int_equal(bridge_conn_preregister_wait(h->c, 77, "ctr", 12, on_done, &d), 0);
        assert_int_equal(pop_request(h, &req, &probe_id), BRIDGE_RPC_WAIT_FOR_PROCESS);
        bridge_request_done(&req);
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, probe_id, BRIDGE_HR_TIMEOUT, "timeout") > 0);
        assert_int_equal(d.count, 0);
        /* Backed by one infinite wait, in case the original request never reached the guest. */
        assert_int_equal(pop_request(h, &req, &backing_id), BRIDGE_RPC_WAIT_FOR_PROCESS);
        assert_int_equal(req.wait.pid, 12);
        assert_int_equal(req.wait.timeout_ms, BRIDGE_WAIT_INFINITE);
        bridge_request_done(&req);
        assert_false(has_request(h));
        /* The guest answers the adopted id once the process exits... */
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, 77, &exited) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(d.last.exit_code, 0);
        assert_false(d.last.probed);
        /* ...and the backing wait as well: nothing more happens. */
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, backing_id, &exited) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(bridge_conn_outstanding(h->c), 0);
        assert_int_equal(h->disconnects, 0);
        harness_free(h);
}

static void test_backing_wait_completes_a_wait_whose_request_was_lost(void **state)
{
        struct harness *h = harness_new();
        struct bridge_response exited = { .wait.exit_code = 4 };
        struct bridge_request req;
        struct done d = {};
        uint64_t probe_id, backing_id;

        connect_guest(h, false);
        assert_int_equal(bridge_conn_preregister_wait(h->c, 77, "ctr", 12, on_done, &d), 0);
        assert_int_equal(pop_request(h, &req, &probe_id), BRIDGE_RPC_WAIT_FOR_PROCESS);
        bridge_request_done(&req);
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, probe_id, BRIDGE_HR_TIMEOUT, NULL) > 0);
        assert_int_equal(pop_request(h, &req, &backing_id), BRIDGE_RPC_WAIT_FOR_PROCESS);
        bridge_request_done(&req);
        /* The guest never had id 77: only the backing wait is answered, and that is enough. */
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, backing_id, &exited) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(d.last.exit_code, 4);
        assert_int_equal(d.last.call_id, 77);
        assert_true(d.last.probed);
        /* Had it had id 77 after all, that answer is swallowed. */
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, 77, &exited) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(h->disconnects, 0);
        harness_free(h);
}

static void test_probe_not_found_completes_with_lost_status(void **state)
{
        struct harness *h = harness_new();
        struct bridge_request req;
        struct done d = {};
        uint64_t probe_id;

        /* Pre-registered before the guest connects, as a restore does: probed after negotiation. */
        assert_int_equal(bridge_conn_preregister_wait(h->c, 77, "ctr", 12, on_done, &d), 0);
        assert_false(has_request(h));
        connect_guest(h, false);
        assert_int_equal(pop_request(h, &req, &probe_id), BRIDGE_RPC_WAIT_FOR_PROCESS);
        assert_int_equal(req.wait.pid, 12);
        bridge_request_done(&req);
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, probe_id, BRIDGE_HR_NOT_FOUND, NULL) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_EXIT_LOST);
        assert_int_equal(d.last.error, -ECHILD);
        assert_int_equal(d.last.call_id, 77);
        assert_int_equal(bridge_conn_outstanding(h->c), 0);
        harness_free(h);
}

static void test_preregister_twice_returns_the_existing_call(void **state)
{
        struct harness *h = harness_new();
        struct done d1 = {}, d2 = {};

        assert_int_equal(bridge_conn_preregister_wait(h->c, 0, "ctr", 1, on_done, &d1), -EINVAL);
        assert_int_equal(bridge_conn_preregister_wait(h->c, 5, "ctr", 1, on_done, &d1), 0);
        assert_int_equal(bridge_conn_preregister_wait(h->c, 5, "ctr", 1, on_done, &d2), 1);
        assert_int_equal(bridge_conn_outstanding(h->c), 1);
        /* Ids handed out later stay above the adopted one; seeding lower is refused. */
        assert_int_equal(bridge_conn_next_id(h->c), 6);
        assert_int_equal(bridge_conn_seed_next_id(h->c, 4), -ERANGE);
        assert_int_equal(bridge_conn_seed_next_id(h->c, 100), 0);
        bridge_conn_close(h->c);
        assert_int_equal(d1.count, 1);
        assert_int_equal(d2.count, 0);
        harness_free(h);
}

static void test_unknown_id_in_resume_window_is_held_and_delivered_on_preregistration(void **state)
{
        struct harness *h = harness_new();
        struct bridge_response exited = { .wait.exit_code = 9 };
        struct done d = {};

        bridge_conn_set_migrating(h->c, true);
        assert_true(bridge_conn_in_resume_window(h->c));
        connect_guest(h, false);
        bridge_conn_set_migrating(h->c, false);
        /* The guest answers a wait sent by the source before the restore re-registered it (Z1). */
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, 40, &exited) > 0);
        assert_int_equal(h->disconnects, 0);
        assert_int_equal(bridge_conn_held_count(h->c), 1);
        assert_int_equal(bridge_conn_seed_next_id(h->c, 50), 0);
        assert_int_equal(bridge_conn_preregister_wait(h->c, 40, "ctr", 3, on_done, &d), 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(d.last.exit_code, 9);
        assert_int_equal(bridge_conn_held_count(h->c), 0);
        /* Delivered from the held reply: no probe needed. */
        assert_false(has_request(h));
        bridge_conn_end_resume_window(h->c);
        /* Outside the window an unknown id is fatal again. */
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, 41, &exited) < 0);
        harness_free(h);
}

static void test_held_notification_delivered_after_registration(void **state)
{
        struct harness *h = harness_new();
        struct seen s = {};

        bridge_conn_begin_resume_window(h->c);
        connect_guest(h, false);
        assert_true(notify(h, "ctr", "UnexpectedExit") > 0);
        assert_int_equal(bridge_conn_held_count(h->c), 1);
        assert_int_equal(h->notifications, 0);
        assert_int_equal(bridge_conn_watch_container(h->c, "ctr", on_notify, &s), 0);
        assert_int_equal(s.count, 1);
        assert_int_equal(s.error, 0);
        assert_string_equal(s.type, "UnexpectedExit");
        assert_int_equal(h->notifications, 1);
        assert_int_equal(bridge_conn_held_count(h->c), 0);
        /* The notification completed the watcher: watching again is allowed. */
        assert_int_equal(bridge_conn_watch_container(h->c, "ctr", on_notify, &s), 0);
        harness_free(h);
        assert_int_equal(s.count, 2);
        assert_int_equal(s.error, -ENOTCONN);
}

static void test_end_resume_window_discards_held_messages(void **state)
{
        struct harness *h = harness_new();
        struct seen s = {};
        struct done d = {};

        bridge_conn_begin_resume_window(h->c);
        connect_guest(h, false);
        assert_true(notify(h, "gone", "UnexpectedExit") > 0);
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, 33, 0, NULL) > 0);
        assert_int_equal(bridge_conn_held_count(h->c), 2);
        bridge_conn_end_resume_window(h->c);
        assert_int_equal(bridge_conn_held_count(h->c), 0);
        assert_int_equal(bridge_conn_watch_container(h->c, "gone", on_notify, &s), 0);
        assert_int_equal(s.count, 0);
        assert_int_equal(bridge_conn_seed_next_id(h->c, 100), 0);
        assert_int_equal(bridge_conn_preregister_wait(h->c, 33, "ctr", 3, on_done, &d), 0);
        assert_int_equal(d.count, 0);
        harness_free(h);
}

static void test_held_message_cap_is_enforced(void **state)
{
        struct harness *h = harness_new();

        bridge_conn_begin_resume_window(h->c);
        connect_guest(h, false);
        for (unsigned i = 0; i < BRIDGE_CONN_MAX_HELD + 3; i++)
                assert_true(reply_result(h, BRIDGE_RPC_SIGNAL_PROCESS, 1000 + i, 0, NULL) > 0);
        assert_int_equal(bridge_conn_held_count(h->c), BRIDGE_CONN_MAX_HELD);
        assert_int_equal(bridge_conn_held_dropped(h->c), 3);
        /* The guest connection survives a flood; the excess is dropped and logged. */
        assert_int_equal(h->disconnects, 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);
        bridge_conn_end_resume_window(h->c);
        assert_int_equal(bridge_conn_held_count(h->c), 0);
        harness_free(h);
}

static void test_held_messages_refused_and_discarded_are_told_with_their_counts(void **state)
{
        struct harness *h = harness_new();

        bridge_conn_begin_resume_window(h->c);
        connect_guest(h, false);
        for (unsigned i = 0; i < BRIDGE_CONN_MAX_HELD + 2; i++)
                assert_true(reply_result(h, BRIDGE_RPC_SIGNAL_PROCESS, 1000 + i, 0, NULL) > 0);
        assert_int_equal(h->events[BRIDGE_EVENT_HELD_REFUSED], 2);
        assert_int_equal(h->last_event.count, BRIDGE_CONN_MAX_HELD);
        assert_int_equal(h->last_event.id, 1000 + BRIDGE_CONN_MAX_HELD + 1);
        assert_string_equal(h->last_container, "");
        bridge_conn_end_resume_window(h->c);
        assert_int_equal(h->events[BRIDGE_EVENT_HELD_DISCARDED], 1);
        assert_int_equal(h->last_event.count, BRIDGE_CONN_MAX_HELD);
        assert_non_null(strstr(h->last_what, "resume window closed"));
        harness_free(h);
}

static void test_held_bytes_cap_is_enforced(void **state)
{
        struct harness *h = harness_new();
        size_t big = 60000, sent = 0;
        char *msg = malloc(big + 1);
        unsigned i;

        assert_non_null(msg);
        memset(msg, 'x', big);
        msg[big] = 0;
        bridge_conn_begin_resume_window(h->c);
        connect_guest(h, false);
        for (i = 0; sent < BRIDGE_CONN_MAX_HELD_BYTES + 2 * big; i++, sent += big)
                assert_true(reply_result(h, BRIDGE_RPC_SIGNAL_PROCESS, 1000 + i, (int32_t)0x80004005, msg) > 0);
        assert_true(bridge_conn_held_count(h->c) < i);
        assert_true(bridge_conn_held_dropped(h->c) >= 2);
        assert_int_equal(h->disconnects, 0);
        free(msg);
        harness_free(h);
}

static void test_duplicate_notification_outside_window_is_ignored(void **state)
{
        struct harness *h = harness_new();
        struct seen s = {};
        struct done d = {};

        connect_guest(h, false);
        send_wait(h, 1, &d);
        assert_int_equal(bridge_conn_watch_container(h->c, "ctr", on_notify, &s), 0);
        assert_int_equal(bridge_conn_watch_container(h->c, "ctr", on_notify, &s), -EEXIST);
        assert_true(notify(h, "ctr", "GracefulExit") > 0);
        assert_int_equal(s.count, 1);
        assert_true(notify(h, "ctr", "GracefulExit") > 0);
        assert_true(notify(h, "never-watched", "UnexpectedExit") > 0);
        assert_int_equal(s.count, 1);
        assert_int_equal(h->unwatched_notifications, 2);
        /* Unlike upstream, the bridge and the other calls live on. */
        assert_int_equal(h->disconnects, 0);
        assert_int_equal(d.count, 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CONNECTED);
        harness_free(h);
}

static void test_loss_outside_migration_fails_calls_and_keeps_watchers(void **state)
{
        struct harness *h = harness_new();
        struct seen s = {};
        struct done d = {};
        uint64_t id;

        connect_guest(h, false);
        id = send_wait(h, 1, &d);
        assert_int_equal(bridge_conn_watch_container(h->c, "ctr", on_notify, &s), 0);
        bridge_conn_detach(h->c, 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_CLOSED);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_WAITING);
        assert_int_equal(s.count, 0);
        h->out_len = h->out_off = 0; /* the old transport's unsent bytes went with it */
        connect_guest(h, false);
        /* A normal reconnect has nothing to probe: everything was failed. */
        assert_false(has_request(h));
        assert_true(notify(h, "ctr", "UnexpectedExit") > 0);
        assert_int_equal(s.count, 1);
        /* The guest queued its answer to the failed wait: swallowed, the new connection lives. */
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, 0, NULL) > 0);
        assert_int_equal(d.count, 1);
        assert_int_equal(h->disconnects, 0);
        harness_free(h);
}

static void test_migration_ending_while_detached_fails_kept_calls(void **state)
{
        struct harness *h = harness_new();
        struct done d = {};

        connect_guest(h, false);
        send_wait(h, 1, &d);
        bridge_conn_set_migrating(h->c, true);
        bridge_conn_detach(h->c, -EPIPE);
        assert_int_equal(d.count, 0);
        bridge_conn_set_migrating(h->c, false);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.status, BRIDGE_STATUS_CLOSED);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_WAITING);
        harness_free(h);
}

/* ---- losing the guest outside migration, with a reconnect grace ---- */

#define GRACE_NS (10 * BRIDGE_NSEC_PER_SEC)

/* Drains what the host wrote so the next pop_request() sees only what follows. */
static void drop_requests(struct harness *h)
{
        h->out_len = h->out_off = 0;
}

static void test_lost_connection_keeps_waits_for_the_grace_and_probes_them_on_reconnect(void **state)
{
        struct harness *h = harness_new();
        struct bridge_response exited = { .wait.exit_code = 6 };
        struct bridge_request req;
        struct done w = {}, sig = {};
        uint64_t id, probe_id;

        assert_int_equal(bridge_conn_set_reconnect_grace(h->c, GRACE_NS), 0);
        connect_guest(h, false);
        id = send_wait(h, 12, &w);
        assert_int_equal(bridge_conn_signal(h->c, "ctr", 12, 15, on_done, &sig, NULL), 0);
        drop_requests(h);
        bridge_conn_detach(h->c, -ECONNRESET);
        /* The signal's outcome is unknown: it fails. The wait can be asked again: it stays. */
        assert_int_equal(sig.count, 1);
        assert_int_equal(sig.last.status, BRIDGE_STATUS_CLOSED);
        assert_int_equal(w.count, 0);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_WAITING);
        assert_int_equal(bridge_conn_next_deadline(h->c), h->now + GRACE_NS);
        h->now += GRACE_NS - 1;
        bridge_conn_tick(h->c, h->now);
        assert_int_equal(w.count, 0);

        connect_guest(h, false);
        assert_int_equal(pop_request(h, &req, &probe_id), BRIDGE_RPC_WAIT_FOR_PROCESS);
        assert_int_equal(req.wait.pid, 12);
        assert_int_equal(req.wait.timeout_ms, BRIDGE_CONN_PROBE_TIMEOUT_MS);
        bridge_request_done(&req);
        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, probe_id, &exited) > 0);
        assert_int_equal(w.count, 1);
        assert_int_equal(w.last.status, BRIDGE_STATUS_OK);
        assert_int_equal(w.last.exit_code, 6);
        assert_int_equal(w.last.call_id, id);
        assert_true(w.last.probed);
        /* Past the old grace nothing else happens: the new connection ended it. */
        h->now += 2 * GRACE_NS;
        bridge_conn_tick(h->c, h->now);
        assert_int_equal(w.count, 1);
        assert_int_equal(h->disconnects, 0);
        harness_free(h);
}

static void test_guest_not_back_within_the_grace_fails_waits_with_bridge_closed(void **state)
{
        struct harness *h = harness_new();
        struct done w = {};

        assert_int_equal(bridge_conn_set_reconnect_grace(h->c, GRACE_NS), 0);
        connect_guest(h, false);
        send_wait(h, 12, &w);
        bridge_conn_detach(h->c, 0);
        assert_int_equal(w.count, 0);
        h->now += GRACE_NS;
        bridge_conn_tick(h->c, h->now);
        assert_int_equal(w.count, 1);
        assert_int_equal(w.last.status, BRIDGE_STATUS_CLOSED);
        assert_string_equal(w.message, "bridge closed");
        assert_int_equal(bridge_conn_next_deadline(h->c), BRIDGE_DEADLINE_NONE);
        harness_free(h);
}

static void test_the_grace_is_told_when_it_starts_and_when_it_runs_out(void **state)
{
        struct harness *h = harness_new();
        struct done w = {};

        assert_int_equal(bridge_conn_set_reconnect_grace(h->c, GRACE_NS), 0);
        connect_guest(h, false);
        send_wait(h, 12, &w);
        bridge_conn_detach(h->c, -ECONNRESET);
        assert_int_equal(h->events[BRIDGE_EVENT_GUEST_DETACHED], 1);
        assert_int_equal(h->events[BRIDGE_EVENT_GRACE_STARTED], 1);
        assert_int_equal(h->last_event.count, 1);
        assert_int_equal(h->last_event.ms, GRACE_NS / 1000000);
        h->now += GRACE_NS;
        bridge_conn_tick(h->c, h->now);
        assert_int_equal(h->events[BRIDGE_EVENT_GRACE_EXPIRED], 1);
        assert_int_equal(h->last_event.count, 1);
        harness_free(h);
}

static void test_protocol_error_fails_waits_at_once_despite_the_grace(void **state)
{
        struct harness *h = harness_new();
        struct done w = {};

        assert_int_equal(bridge_conn_set_reconnect_grace(h->c, GRACE_NS), 0);
        connect_guest(h, false);
        send_wait(h, 12, &w);
        /* A guest that answers an id never asked broke the protocol: nothing it owes is trusted. */
        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, 999, 0, NULL) < 0);
        assert_int_equal(w.count, 1);
        assert_int_equal(w.last.status, BRIDGE_STATUS_CLOSED);
        harness_free(h);
}

static void test_grace_waits_through_a_migration_and_runs_again_after(void **state)
{
        struct harness *h = harness_new();
        struct done w = {};

        assert_int_equal(bridge_conn_set_reconnect_grace(h->c, GRACE_NS), 0);
        assert_int_equal(bridge_conn_set_reconnect_grace(h->c, BRIDGE_CONN_RECONNECT_GRACE_MAX_NS + 1), -ERANGE);
        connect_guest(h, false);
        send_wait(h, 12, &w);
        bridge_conn_detach(h->c, -ECONNRESET);
        bridge_conn_set_migrating(h->c, true);
        /* Migrating keeps calls for as long as it lasts: no grace deadline meanwhile. */
        h->now += 2 * GRACE_NS;
        bridge_conn_tick(h->c, h->now);
        assert_int_equal(w.count, 0);
        bridge_conn_set_migrating(h->c, false);
        bridge_conn_tick(h->c, h->now);
        assert_int_equal(w.count, 1);
        assert_int_equal(w.last.status, BRIDGE_STATUS_CLOSED);
        harness_free(h);
}

static void test_close_completes_calls_and_watchers_once(void **state)
{
        struct harness *h = harness_new();
        struct seen s = {};
        struct done d = {};

        connect_guest(h, false);
        send_wait(h, 1, &d);
        assert_int_equal(bridge_conn_watch_container(h->c, "ctr", on_notify, &s), 0);
        bridge_conn_close(h->c);
        assert_int_equal(bridge_conn_state(h->c), BRIDGE_CONN_CLOSED);
        assert_int_equal(d.count, 1);
        assert_int_equal(s.count, 1);
        assert_int_equal(s.error, -ENOTCONN);
        assert_int_equal(bridge_conn_attach(h->c), -ESHUTDOWN);
        assert_int_equal(bridge_conn_preregister_wait(h->c, 1000, "ctr", 1, on_done, &d), -ESHUTDOWN);
        harness_free(h);
        assert_int_equal(d.count, 1);
        assert_int_equal(s.count, 1);
}

static void test_thousands_of_waits_survive_a_reconnect(void **state)
{
        enum { N = 5000 };
        struct harness *h = harness_new();
        struct done *d = calloc(N, sizeof(*d));
        struct bridge_request req;
        uint64_t id;
        unsigned probes = 0, backing = 0;

        assert_non_null(d);
        connect_guest(h, true);
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(bridge_conn_wait(h->c, "ctr", 1000 + i, BRIDGE_WAIT_INFINITE, on_done, &d[i], NULL),
                                 0);
        h->out_len = h->out_off = 0;
        bridge_conn_set_migrating(h->c, true);
        bridge_conn_detach(h->c, -ECONNRESET);
        connect_guest(h, true);
        bridge_conn_set_migrating(h->c, false);
        /* One probe each; "still running" brings one backing wait each; those carry the exits. */
        while (has_request(h)) {
                struct bridge_response exited = {};

                assert_int_equal(pop_request(h, &req, &id), BRIDGE_RPC_WAIT_FOR_PROCESS);
                if (req.wait.timeout_ms == BRIDGE_CONN_PROBE_TIMEOUT_MS) {
                        probes++;
                        assert_true(reply_result(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, BRIDGE_HR_TIMEOUT, NULL) > 0);
                } else {
                        backing++;
                        exited.wait.exit_code = req.wait.pid % 256;
                        assert_true(reply(h, BRIDGE_RPC_WAIT_FOR_PROCESS, id, &exited) > 0);
                }
                bridge_request_done(&req);
        }
        assert_int_equal(probes, N);
        assert_int_equal(backing, N);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(d[i].count, 1);
                assert_int_equal(d[i].last.status, BRIDGE_STATUS_OK);
                assert_int_equal(d[i].last.exit_code, (1000 + i) % 256);
        }
        assert_int_equal(bridge_conn_outstanding(h->c), 0);
        assert_int_equal(h->disconnects, 0);
        harness_free(h);
        free(d);
}

/* ---- property: whatever the guest sends and whatever we do, every callback runs exactly once ---- */

#define CHAOS_STEPS 30000
#define CHAOS_SLOTS (CHAOS_STEPS + 16)

struct chaos {
        struct harness *h;
        uint64_t rng;
        int calls[CHAOS_SLOTS];   /* completions per accepted call */
        int watches[CHAOS_SLOTS]; /* completions per accepted watcher */
        bool used_call[CHAOS_SLOTS], used_watch[CHAOS_SLOTS];
        unsigned next_slot;
        uint64_t last_ids[8];
        unsigned watch_slot[3]; /* the live watcher's slot per container */
};

static uint64_t chaos_rand(struct chaos *ch)
{
        /* xorshift64*: fixed seed, so a failure replays. */
        ch->rng ^= ch->rng >> 12;
        ch->rng ^= ch->rng << 25;
        ch->rng ^= ch->rng >> 27;
        return ch->rng * UINT64_C(2685821657736338717);
}

static void chaos_call_done(const struct bridge_result *res, void *userdata)
{
        int *count = userdata;

        assert_int_equal(*count, 0);
        assert_non_null(res->message);
        (*count)++;
}

static void chaos_notify(const struct bridge_notification *n, int error, void *userdata)
{
        int *count = userdata;

        assert_int_equal(*count, 0);
        assert_true(n != NULL || error < 0);
        (*count)++;
}

static void chaos_feed_response(struct chaos *ch, uint64_t id)
{
        static const int32_t results[] = { 0, BRIDGE_HR_NOT_FOUND, BRIDGE_HR_TIMEOUT, BRIDGE_HR_FAIL };
        static const char *const bodies[] = {
                "{\"Result\":0,\"ExitCode\":3,\"ProcessId\":7}",
                "{\"Result\":0}",
                "{\"Result\":-2147023728,\"ErrorMessage\":\"not found\"}",
                "{\"Result\":",
                "[]",
                "{\"Result\":0,\"ActivityId\":\"nope\"}",
                "{\"Result\":0,\"Version\":4,\"Capabilities\":{\"RuntimeOsType\":\"Linux\","
                "\"GuestDefinedCapabilities\":null}}",
        };
        uint32_t types[] = { BRIDGE_RPC_WAIT_FOR_PROCESS, BRIDGE_RPC_SIGNAL_PROCESS, BRIDGE_RPC_EXECUTE_PROCESS,
                             BRIDGE_RPC_NEGOTIATE_PROTOCOL };
        uint32_t type = bridge_type_response_for(types[chaos_rand(ch) % ELEMENTSOF(types)]);
        struct bridge_response resp = { .result = results[chaos_rand(ch) % ELEMENTSOF(results)] };

        if (chaos_rand(ch) % 3 == 0) {
                feed_raw(ch->h, type, id, bodies[chaos_rand(ch) % ELEMENTSOF(bodies)]);
                return;
        }
        resp.wait.exit_code = 1;
        resp.exec.pid = 9;
        resp.negotiate.version = 4;
        (void)reply(ch->h, types[chaos_rand(ch) % ELEMENTSOF(types)], id, &resp);
}

static void chaos_step(struct chaos *ch)
{
        struct harness *h = ch->h;
        static const char *const cids[] = { "a", "b", "c" };
        unsigned slot = ch->next_slot, which = (unsigned)(chaos_rand(ch) % ELEMENTSOF(cids));
        const char *cid = cids[which];
        uint64_t id;
        int r;

        switch (chaos_rand(ch) % 16) {
        case 0: (void)bridge_conn_attach(h->c); break;
        case 1:
                bridge_conn_detach(h->c, chaos_rand(ch) % 2 ? 0 : -ECONNRESET);
                h->in_len = h->out_len = h->out_off = 0;
                break;
        case 2: bridge_conn_set_migrating(h->c, chaos_rand(ch) % 2); break;
        case 3:
                if (chaos_rand(ch) % 2)
                        bridge_conn_begin_resume_window(h->c);
                else
                        bridge_conn_end_resume_window(h->c);
                break;
        case 4:
        case 5:
                r = bridge_conn_wait(h->c, cid, (uint32_t)(chaos_rand(ch) % 4),
                                     chaos_rand(ch) % 2 ? 100 : BRIDGE_WAIT_INFINITE, chaos_call_done, &ch->calls[slot],
                                     &id);
                if (r == 0) {
                        ch->used_call[slot] = true;
                        ch->next_slot++;
                        ch->last_ids[id % ELEMENTSOF(ch->last_ids)] = id;
                }
                break;
        case 6:
                r = bridge_conn_signal(h->c, cid, 1, 9, chaos_call_done, &ch->calls[slot], &id);
                if (r == 0) {
                        ch->used_call[slot] = true;
                        ch->next_slot++;
                }
                break;
        case 7:
                r = bridge_conn_preregister_wait(h->c, chaos_rand(ch) % 64, cid, 2, chaos_call_done, &ch->calls[slot]);
                if (r == 0) {
                        ch->used_call[slot] = true;
                        ch->next_slot++;
                }
                break;
        case 8:
                r = bridge_conn_watch_container(h->c, cid, chaos_notify, &ch->watches[slot]);
                if (r == 0) {
                        ch->used_watch[slot] = true;
                        ch->watch_slot[which] = slot;
                        ch->next_slot++;
                }
                break;
        case 9:
        case 10: {
                /* Answer what the host asked, with a random outcome. */
                struct bridge_request req;

                if (!has_request(h))
                        break;
                if (pop_request(h, &req, &id) == BRIDGE_RPC_NEGOTIATE_PROTOCOL && chaos_rand(ch) % 4) {
                        struct bridge_response ok = { .negotiate = { .version = 4 } };

                        (void)reply(h, BRIDGE_RPC_NEGOTIATE_PROTOCOL, id, &ok);
                } else
                        chaos_feed_response(ch, id);
                bridge_request_done(&req);
                break;
        }
        case 11:
                chaos_feed_response(ch, chaos_rand(ch) % 2 ? ch->last_ids[chaos_rand(ch) % ELEMENTSOF(ch->last_ids)]
                                                           : chaos_rand(ch) % 64);
                break;
        case 12:
                if (h->c && bridge_conn_state(h->c) != BRIDGE_CONN_WAITING)
                        (void)notify(h, cid, "UnexpectedExit");
                break;
        case 13: {
                uint8_t junk[40];

                for (size_t i = 0; i < sizeof(junk); i++)
                        junk[i] = (uint8_t)chaos_rand(ch);
                if (bridge_conn_state(h->c) != BRIDGE_CONN_WAITING && bridge_conn_state(h->c) != BRIDGE_CONN_MIGRATING)
                        (void)feed(h, junk, 1 + chaos_rand(ch) % sizeof(junk));
                break;
        }
        case 14:
                h->now += chaos_rand(ch) % (2 * BRIDGE_CONN_CALL_TIMEOUT_NS);
                bridge_conn_tick(h->c, h->now);
                break;
        case 15:
                /* A watcher removed on purpose is never called. */
                if (bridge_conn_unwatch_container(h->c, cid) == 0)
                        ch->used_watch[ch->watch_slot[which]] = false;
                break;
        }
}

static void test_random_traffic_completes_every_callback_exactly_once(void **state)
{
        struct chaos *ch = calloc(1, sizeof(*ch));
        unsigned n_calls = 0, n_watches = 0;

        assert_non_null(ch);
        /* A fixed walk by default; VSOCKMUX_CHAOS_SEED explores (and replays) others. */
        ch->rng = getenv("VSOCKMUX_CHAOS_SEED") ? strtoull(getenv("VSOCKMUX_CHAOS_SEED"), NULL, 0) | 1
                                                : UINT64_C(0x9E3779B97F4A7C15);
        ch->h = harness_new();
        for (int i = 0; i < CHAOS_STEPS; i++) {
                /* Only bytes from an attached guest reach the connection. */
                if (bridge_conn_state(ch->h->c) == BRIDGE_CONN_WAITING ||
                    bridge_conn_state(ch->h->c) == BRIDGE_CONN_MIGRATING)
                        ch->h->in_len = 0;
                chaos_step(ch);
        }
        harness_free(ch->h);
        for (unsigned i = 0; i < ch->next_slot; i++) {
                n_calls += ch->used_call[i];
                n_watches += ch->used_watch[i];
        }
        /* The walk really went through connected states with calls and watchers in flight. */
        assert_true(n_calls > 1000);
        assert_true(n_watches > 50);
        for (unsigned i = 0; i < ch->next_slot; i++) {
                if (ch->used_call[i])
                        assert_int_equal(ch->calls[i], 1);
                if (ch->used_watch[i])
                        assert_int_equal(ch->watches[i], 1);
        }
        free(ch);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vm_level_process_is_addressed_with_the_null_guid),
                cmocka_unit_test(test_wait_go_minus_one_is_signaled_not_lost),
                cmocka_unit_test(test_negotiate_offers_resume_and_records_capabilities),
                cmocka_unit_test(test_legacy_guest_gets_no_resume),
                cmocka_unit_test(test_ack_is_agreed_only_with_resume),
                cmocka_unit_test(test_resume_not_offered_is_not_agreed),
                cmocka_unit_test(test_negotiate_wrong_version_drops_the_guest),
                cmocka_unit_test(test_calls_need_a_negotiated_guest),
                cmocka_unit_test(test_exec_response_completes_once_with_pid),
                cmocka_unit_test(test_guest_error_surfaces_hresult_and_message),
                cmocka_unit_test(test_wait_reports_exit_code),
                cmocka_unit_test(test_wait_not_found_reports_lost_status),
                cmocka_unit_test(test_signal_not_found_is_already_gone),
                cmocka_unit_test(test_shutdown_of_missing_container_is_already_gone),
                cmocka_unit_test(test_timeout_completes_call_once_and_late_reply_is_swallowed),
                cmocka_unit_test(test_unknown_id_outside_resume_window_kills),
                cmocka_unit_test(test_request_from_guest_kills),
                cmocka_unit_test(test_a_dropped_guest_is_told_to_the_owner_with_the_reason),
                cmocka_unit_test(test_undecodable_payload_kills_and_fails_calls_with_bridge_closed),
                cmocka_unit_test(test_notification_of_unexpected_type_kills),
                cmocka_unit_test(test_oversized_frame_drops_guest_but_not_the_vm),
                cmocka_unit_test(test_frames_split_across_reads_are_reassembled),
                cmocka_unit_test(test_write_failure_drops_guest_unless_migrating),
                cmocka_unit_test(test_migrating_keeps_calls_across_loss_and_probe_catches_exit),
                cmocka_unit_test(test_probe_still_running_keeps_the_wait),
                cmocka_unit_test(test_backing_wait_completes_a_wait_whose_request_was_lost),
                cmocka_unit_test(test_probe_not_found_completes_with_lost_status),
                cmocka_unit_test(test_preregister_twice_returns_the_existing_call),
                cmocka_unit_test(test_unknown_id_in_resume_window_is_held_and_delivered_on_preregistration),
                cmocka_unit_test(test_held_notification_delivered_after_registration),
                cmocka_unit_test(test_end_resume_window_discards_held_messages),
                cmocka_unit_test(test_held_message_cap_is_enforced),
                cmocka_unit_test(test_held_messages_refused_and_discarded_are_told_with_their_counts),
                cmocka_unit_test(test_held_bytes_cap_is_enforced),
                cmocka_unit_test(test_duplicate_notification_outside_window_is_ignored),
                cmocka_unit_test(test_loss_outside_migration_fails_calls_and_keeps_watchers),
                cmocka_unit_test(test_migration_ending_while_detached_fails_kept_calls),
                cmocka_unit_test(test_lost_connection_keeps_waits_for_the_grace_and_probes_them_on_reconnect),
                cmocka_unit_test(test_guest_not_back_within_the_grace_fails_waits_with_bridge_closed),
                cmocka_unit_test(test_the_grace_is_told_when_it_starts_and_when_it_runs_out),
                cmocka_unit_test(test_protocol_error_fails_waits_at_once_despite_the_grace),
                cmocka_unit_test(test_grace_waits_through_a_migration_and_runs_again_after),
                cmocka_unit_test(test_close_completes_calls_and_watchers_once),
                cmocka_unit_test(test_thousands_of_waits_survive_a_reconnect),
                cmocka_unit_test(test_random_traffic_completes_every_callback_exactly_once),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
