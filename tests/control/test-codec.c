/* tests/control/test-codec.c: ttrpc framing against the documented layout, envelopes, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "control/codec.h"

/* ttrpc PROTOCOL.md: length (BE32), stream id (BE32), type (u8), flags (u8), then the data. The
 * data is the ttrpc Request message: service = 1, method = 2, payload = 3, timeout_nano = 4. */
static const uint8_t golden_wait_request[] = {
        0x00, 0x00, 0x00, 0x2a, /* data length 42 */
        0x00, 0x00, 0x00, 0x03, /* stream id 3 */
        0x01,                   /* request */
        0x00,                   /* flags: unary */
        0x0a, 0x13, 'v',  's',  'o',  'c',  'k', 'm',  'u',  'x', '.',
        'v',  '1',  '.',  'C',  'o',  'n',  't', 'r',  'o',  'l', /* 1: service */
        0x12, 0x04, 'W',  'a',  'i',  't',                        /* 2: method */
        0x1a, 0x07, 0x0a, 0x03, 'v',  'm',  '1', 0x10, 0x2a,      /* 3: payload WaitRequest{vm1, 42} */
        0x20, 0x80, 0x94, 0xeb, 0xdc, 0x03,                       /* 4: timeout_nano 1e9 */
};

static void test_request_frame_matches_ttrpc_layout_byte_for_byte(void **state)
{
        Vsockmux__V1__WaitRequest wait = VSOCKMUX__V1__WAIT_REQUEST__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        wait.vm = (char *)"vm1";
        wait.pid = 42;
        assert_int_equal(
                control_request_build(3, 0, CONTROL_SERVICE, "Wait", &wait.base, INT64_C(1000000000), &buf, &size), 0);
        assert_int_equal(size, sizeof(golden_wait_request));
        assert_memory_equal(buf, golden_wait_request, size);
}

static void test_frame_header_parses_big_endian_fields(void **state)
{
        struct control_frame f;
        size_t size;

        assert_int_equal(control_frame_parse(golden_wait_request, sizeof(golden_wait_request), &f, &size), 1);
        assert_int_equal(size, sizeof(golden_wait_request));
        assert_int_equal(f.header.length, 42);
        assert_int_equal(f.header.stream_id, 3);
        assert_int_equal(f.header.type, CONTROL_MSG_REQUEST);
        assert_int_equal(f.header.flags, 0);
        assert_ptr_equal(f.data, golden_wait_request + CONTROL_FRAME_HEADER_SIZE);
}

static void test_header_encode_puts_stream_id_big_endian(void **state)
{
        uint8_t out[CONTROL_FRAME_HEADER_SIZE];
        static const uint8_t expect[] = { 0x00, 0x01, 0x02, 0x03, 0xde, 0xad, 0xbe, 0xef, 0x03, 0x05 };

        control_frame_header_encode(
                &(struct control_frame_header){ .length = 0x010203, .stream_id = 0xdeadbeef, .type = 3, .flags = 5 },
                out);
        assert_memory_equal(out, expect, sizeof(expect));
}

static void test_request_envelope_round_trips(void **state)
{
        _cleanup_(control_request_freep) Vsockmux__V1__TtrpcRequest *req = NULL;
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        Vsockmux__V1__VmAddRequest add = VSOCKMUX__V1__VM_ADD_REQUEST__INIT;
        struct control_frame f;
        size_t size, fsize;

        add.name = (char *)"alpha";
        add.transport_case = VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_HVSOCK_PATH;
        add.hvsock_path = (char *)"/run/fc/alpha.vsock";
        assert_int_equal(control_request_build(7, CONTROL_FLAG_REMOTE_CLOSED, CONTROL_SERVICE, "VmAdd", &add.base, 0,
                                               &buf, &size),
                         0);
        assert_int_equal(control_frame_parse(buf, size, &f, &fsize), 1);
        assert_int_equal(fsize, size);
        assert_int_equal(f.header.flags, CONTROL_FLAG_REMOTE_CLOSED);
        assert_int_equal(control_request_decode(f.data, f.header.length, &req), 0);
        assert_string_equal(req->service, CONTROL_SERVICE);
        assert_string_equal(req->method, "VmAdd");
        assert_int_equal(req->timeout_nano, 0);

        assert_int_equal(control_message_decode(&vsockmux__v1__vm_add_request__descriptor, req->payload.data,
                                                req->payload.len, &m),
                         0);
        Vsockmux__V1__VmAddRequest *got = (Vsockmux__V1__VmAddRequest *)m;
        assert_string_equal(got->name, "alpha");
        assert_int_equal(got->transport_case, VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_HVSOCK_PATH);
        assert_string_equal(got->hvsock_path, "/run/fc/alpha.vsock");
}

static void test_response_envelope_round_trips_status_and_payload(void **state)
{
        _cleanup_(control_response_freep) Vsockmux__V1__TtrpcResponse *resp = NULL;
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        Vsockmux__V1__KillResponse kill = VSOCKMUX__V1__KILL_RESPONSE__INIT;
        struct control_frame f;
        size_t size, fsize;

        kill.not_found = true;
        kill.note = (char *)"already gone";
        assert_int_equal(control_response_build(9, CONTROL_CODE_OK, NULL, &kill.base, &buf, &size), 0);
        assert_int_equal(control_frame_parse(buf, size, &f, &fsize), 1);
        assert_int_equal(f.header.type, CONTROL_MSG_RESPONSE);
        assert_int_equal(f.header.stream_id, 9);
        assert_int_equal(f.header.flags, 0);
        assert_int_equal(control_response_decode(f.data, f.header.length, &resp), 0);
        assert_non_null(resp->status);
        assert_int_equal(resp->status->code, CONTROL_CODE_OK);
        assert_int_equal(control_message_decode(&vsockmux__v1__kill_response__descriptor, resp->payload.data,
                                                resp->payload.len, &m),
                         0);
        assert_true(((Vsockmux__V1__KillResponse *)m)->not_found);
        assert_string_equal(((Vsockmux__V1__KillResponse *)m)->note, "already gone");
}

static void test_error_response_carries_code_and_message_without_payload(void **state)
{
        _cleanup_(control_response_freep) Vsockmux__V1__TtrpcResponse *resp = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        Vsockmux__V1__KillResponse kill = VSOCKMUX__V1__KILL_RESPONSE__INIT;
        struct control_frame f;
        size_t size, fsize;

        kill.note = (char *)"must not be sent";
        assert_int_equal(
                control_response_build(5, CONTROL_CODE_UNIMPLEMENTED, "no such method", &kill.base, &buf, &size), 0);
        assert_int_equal(control_frame_parse(buf, size, &f, &fsize), 1);
        assert_int_equal(control_response_decode(f.data, f.header.length, &resp), 0);
        assert_int_equal(resp->status->code, CONTROL_CODE_UNIMPLEMENTED);
        assert_string_equal(resp->status->message, "no such method");
        assert_int_equal(resp->payload.len, 0);
}

static void test_frame_parse_refuses_length_over_4mib_from_first_four_bytes(void **state)
{
        static const uint8_t hdr[] = { 0x00, 0x40, 0x00, 0x01 }; /* 4 MiB + 1 */
        struct control_frame f;
        size_t size = 0;

        assert_int_equal(control_frame_parse(hdr, sizeof(hdr), &f, &size), -EMSGSIZE);
        assert_int_equal(control_frame_parse(hdr, 3, &f, &size), 0);
}

static void test_frame_parse_accepts_exactly_4mib(void **state)
{
        size_t total = CONTROL_FRAME_MAX;
        _cleanup_free_ uint8_t *buf = calloc(1, total);
        struct control_frame f;
        size_t size;

        assert_non_null(buf);
        control_frame_header_encode(
                &(struct control_frame_header){ .length = CONTROL_FRAME_MAX_DATA, .stream_id = 1, .type = 3 }, buf);
        assert_int_equal(control_frame_parse(buf, total - 1, &f, &size), 0);
        assert_int_equal(control_frame_parse(buf, total, &f, &size), 1);
        assert_int_equal(size, total);
}

static void test_frame_parse_needs_more_for_every_prefix(void **state)
{
        struct control_frame f;
        size_t size;

        for (size_t i = 0; i < sizeof(golden_wait_request); i++) {
                /* An exact-size copy so ASan sees any read past the prefix. */
                uint8_t *p = malloc(i ? i : 1);
                assert_non_null(p);
                memcpy(p, golden_wait_request, i);
                assert_int_equal(control_frame_parse(p, i, &f, &size), 0);
                free(p);
        }
}

static void test_frame_parse_survives_garbage(void **state)
{
        unsigned seed = 12345;
        uint8_t *buf = malloc(4096);

        assert_non_null(buf);
        for (int round = 0; round < 2000; round++) {
                size_t len = (size_t)(rand_r(&seed) % 4096), off = 0;

                for (size_t i = 0; i < len; i++)
                        buf[i] = (uint8_t)rand_r(&seed);
                /* Small lengths make whole frames likely too. */
                if (len >= 4 && round % 2)
                        buf[0] = buf[1] = buf[2] = 0;
                for (;;) {
                        struct control_frame f;
                        size_t size;
                        Vsockmux__V1__TtrpcRequest *req = NULL;
                        int r = control_frame_parse(buf + off, len - off, &f, &size);

                        if (r <= 0)
                                break;
                        assert_true(size >= CONTROL_FRAME_HEADER_SIZE && size <= len - off);
                        if (control_request_decode(f.data, f.header.length, &req) == 0)
                                control_request_free(req);
                        off += size;
                }
        }
        free(buf);
}

static void test_request_decode_refuses_bad_protobuf(void **state)
{
        /* Field 1, length-delimited, claiming 100 bytes where 2 follow. */
        static const uint8_t bad[] = { 0x0a, 0x64, 'a', 'b' };
        Vsockmux__V1__TtrpcRequest *req = NULL;

        assert_int_equal(control_request_decode(bad, sizeof(bad), &req), -EBADMSG);
        assert_null(req);
        assert_int_equal(control_code_from_errno(-EBADMSG), CONTROL_CODE_INVALID_ARGUMENT);
}

static void test_payload_decode_failure_is_invalid_argument(void **state)
{
        static const uint8_t bad[] = { 0xff, 0xff, 0xff };
        ProtobufCMessage *m = NULL;
        int r = control_message_decode(&vsockmux__v1__exec_request__descriptor, bad, sizeof(bad), &m);

        assert_int_equal(r, -EBADMSG);
        assert_null(m);
        assert_int_equal(control_code_from_errno(r), CONTROL_CODE_INVALID_ARGUMENT);
}

static void test_request_decode_refuses_missing_method(void **state)
{
        _cleanup_free_ uint8_t *buf = NULL;
        Vsockmux__V1__TtrpcRequest *req = NULL;
        struct control_frame f;
        size_t size, fsize;

        assert_int_equal(control_request_build(1, 0, CONTROL_SERVICE, "", NULL, 0, &buf, &size), 0);
        assert_int_equal(control_frame_parse(buf, size, &f, &fsize), 1);
        assert_int_equal(control_request_decode(f.data, f.header.length, &req), -EINVAL);
}

static void test_frame_build_refuses_message_over_4mib(void **state)
{
        Vsockmux__V1__TtrpcResponse resp = VSOCKMUX__V1__TTRPC_RESPONSE__INIT;
        _cleanup_free_ uint8_t *big = calloc(1, CONTROL_FRAME_MAX_DATA);
        uint8_t *buf = NULL;
        size_t size;

        assert_non_null(big);
        resp.payload = (ProtobufCBinaryData){ CONTROL_FRAME_MAX_DATA, big };
        assert_int_equal(control_frame_build(1, CONTROL_MSG_RESPONSE, 0, &resp.base, &buf, &size), -EMSGSIZE);
        assert_null(buf);
}

static void test_code_names_cover_the_table(void **state)
{
        assert_string_equal(control_code_to_string(CONTROL_CODE_UNIMPLEMENTED), "UNIMPLEMENTED");
        assert_string_equal(control_code_to_string(CONTROL_CODE_OK), "OK");
        assert_string_equal(control_code_to_string(99), "UNKNOWN_CODE");
        assert_string_equal(control_code_to_string(-1), "UNKNOWN_CODE");
        assert_int_equal(control_code_from_errno(-ENOENT), CONTROL_CODE_NOT_FOUND);
        assert_int_equal(control_code_from_errno(-EEXIST), CONTROL_CODE_ALREADY_EXISTS);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_request_frame_matches_ttrpc_layout_byte_for_byte),
                cmocka_unit_test(test_frame_header_parses_big_endian_fields),
                cmocka_unit_test(test_header_encode_puts_stream_id_big_endian),
                cmocka_unit_test(test_request_envelope_round_trips),
                cmocka_unit_test(test_response_envelope_round_trips_status_and_payload),
                cmocka_unit_test(test_error_response_carries_code_and_message_without_payload),
                cmocka_unit_test(test_frame_parse_refuses_length_over_4mib_from_first_four_bytes),
                cmocka_unit_test(test_frame_parse_accepts_exactly_4mib),
                cmocka_unit_test(test_frame_parse_needs_more_for_every_prefix),
                cmocka_unit_test(test_frame_parse_survives_garbage),
                cmocka_unit_test(test_request_decode_refuses_bad_protobuf),
                cmocka_unit_test(test_payload_decode_failure_is_invalid_argument),
                cmocka_unit_test(test_request_decode_refuses_missing_method),
                cmocka_unit_test(test_frame_build_refuses_message_over_4mib),
                cmocka_unit_test(test_code_names_cover_the_table),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
