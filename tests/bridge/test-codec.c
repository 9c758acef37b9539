/* tests/bridge/test-codec.c: GCS frames: golden bytes, type classification, header bounds, streams of frames. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/codec.h"
#include "bridge/msg.h"
#include "util/macro.h"

static const char negotiate_payload[] = "{\"ContainerId\":\"\",\"ActivityId\":\"00000000-0000-0000-0000-000000000000\","
                                        "\"MinimumVersion\":4,\"MaximumVersion\":4}\n";

static void test_negotiate_request_golden_bytes(void **state)
{
        static const uint8_t header[16] = { 0x01, 0x0b, 0x10, 0x10, 0x7d, 0x00, 0x00, 0x00 };
        struct bridge_request req = {
                .type = BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                .container_id = "",
                .negotiate = { .min_version = 4, .max_version = 4 },
        };
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0;

        assert_int_equal(sizeof(negotiate_payload) - 1, 109);
        assert_int_equal(bridge_request_frame(&req, 0, &buf, &len), 0);
        assert_int_equal(len, 16 + 109);
        assert_memory_equal(buf, header, sizeof(header));
        assert_memory_equal(buf + 16, negotiate_payload, 109);
}

static void test_type_classification_and_response_type(void **state)
{
        assert_int_equal(bridge_type_class(BRIDGE_RPC_EXECUTE_PROCESS), BRIDGE_CLASS_REQUEST);
        assert_int_equal(bridge_type_class(0x20100501u), BRIDGE_CLASS_RESPONSE);
        assert_int_equal(bridge_type_class(BRIDGE_NOTIFY_CONTAINER), BRIDGE_CLASS_NOTIFY);
        assert_int_equal(bridge_type_class(0x40100501u), _BRIDGE_CLASS_INVALID);
        assert_int_equal(bridge_type_class(0), _BRIDGE_CLASS_INVALID);
        assert_int_equal(bridge_type_response_for(BRIDGE_RPC_NEGOTIATE_PROTOCOL), 0x20100b01u);
        assert_int_equal(bridge_type_response_for(BRIDGE_RPC_MODIFY_SERVICE_SETTINGS), 0x20200101u);
        assert_string_equal(bridge_type_name(0x20100601u), "WaitForProcess");
        assert_string_equal(bridge_type_name(BRIDGE_RPC_SHUTDOWN_FORCED), "ShutdownForced");
        assert_null(bridge_type_name(0x10100001u));
        assert_true(bridge_type_is_known_request(BRIDGE_RPC_DUMP_STACKS));
        assert_false(bridge_type_is_known_request(0x10100001u));
        assert_false(bridge_type_is_known_request(BRIDGE_NOTIFY_CONTAINER));
}

static void test_header_roundtrip_is_little_endian(void **state)
{
        struct bridge_header h = { .type = 0x20100601u, .size = 0x1234, .id = 0x0102030405060708ull }, back;
        uint8_t raw[16];
        static const uint8_t want[16] = { 0x01, 0x06, 0x10, 0x20, 0x34, 0x12, 0,    0,
                                          0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01 };

        bridge_header_encode(&h, raw);
        assert_memory_equal(raw, want, 16);
        bridge_header_decode(raw, &back);
        assert_int_equal(back.type, h.type);
        assert_int_equal(back.size, h.size);
        assert_int_equal(back.id, h.id);
}

static void test_short_header_needs_more(void **state)
{
        uint8_t raw[16] = { 0x01, 0x0b, 0x10, 0x10, 0x7d };
        struct bridge_frame f;
        size_t need = 0;

        for (size_t len = 0; len < 16; len++) {
                assert_int_equal(bridge_frame_parse(raw, len, &f, &need, NULL), 0);
                assert_int_equal(need, 16);
        }
        /* Header complete, payload missing: the reader asks for the whole frame. */
        assert_int_equal(bridge_frame_parse(raw, 16, &f, &need, NULL), 0);
        assert_int_equal(need, 0x7d);
}

static int parse_with_size(uint32_t size, const char **ret_reason)
{
        uint8_t raw[16];
        struct bridge_frame f;

        bridge_header_encode(&(struct bridge_header){ .type = 0x20100b01u, .size = size }, raw);
        return bridge_frame_parse(raw, sizeof(raw), &f, NULL, ret_reason);
}

static void test_size_below_header_is_refused(void **state)
{
        const char *reason = NULL;

        assert_int_equal(parse_with_size(15, &reason), -EBADMSG);
        assert_non_null(reason);
        assert_non_null(strstr(reason, "smaller"));
        assert_int_equal(parse_with_size(0, NULL), -EBADMSG);
}

static void test_size_above_64k_is_refused_and_64k_accepted(void **state)
{
        const char *reason = NULL;
        _cleanup_free_ uint8_t *big = calloc(1, BRIDGE_MAX_FRAME);
        struct bridge_frame f;
        size_t need = 0;

        assert_int_equal(parse_with_size(65537, &reason), -EBADMSG);
        assert_non_null(strstr(reason, "64 KiB"));
        assert_int_equal(parse_with_size(UINT32_MAX, NULL), -EBADMSG);

        assert_non_null(big);
        bridge_header_encode(&(struct bridge_header){ .type = 0x20100b01u, .size = 65536, .id = 9 }, big);
        assert_int_equal(bridge_frame_parse(big, 65535, &f, &need, NULL), 0);
        assert_int_equal(need, 65536);
        assert_int_equal(bridge_frame_parse(big, 65536, &f, NULL, NULL), 65536);
        assert_int_equal(f.payload_len, 65536 - 16);
        assert_int_equal(f.header.id, 9);
        assert_ptr_equal(f.payload, (const char *)big + 16);
}

static void test_stream_of_frames_parses_one_at_a_time(void **state)
{
        _cleanup_free_ uint8_t *a = NULL, *b = NULL, *stream = NULL;
        size_t alen, blen, off = 0;
        struct bridge_frame f;
        int n;

        assert_int_equal(bridge_frame_encode(BRIDGE_RPC_WAIT_FOR_PROCESS, 1, "{}", 2, true, &a, &alen), 0);
        assert_int_equal(bridge_frame_encode(0x20100601u, 2, "{\"Result\":0}", 12, false, &b, &blen), 0);
        assert_int_equal(alen, 16 + 3);
        assert_int_equal(a[alen - 1], '\n');
        stream = malloc(alen + blen);
        assert_non_null(stream);
        memcpy(stream, a, alen);
        memcpy(stream + alen, b, blen);

        n = bridge_frame_parse(stream, alen + blen, &f, NULL, NULL);
        assert_int_equal(n, (int)alen);
        assert_int_equal(f.header.type, BRIDGE_RPC_WAIT_FOR_PROCESS);
        assert_int_equal(f.payload_len, 3);
        off += (size_t)n;
        /* A partial second frame is not returned until its last byte arrives. */
        assert_int_equal(bridge_frame_parse(stream + off, blen - 1, &f, NULL, NULL), 0);
        n = bridge_frame_parse(stream + off, blen, &f, NULL, NULL);
        assert_int_equal(n, (int)blen);
        assert_int_equal(f.header.id, 2);
        assert_memory_equal(f.payload, "{\"Result\":0}", 12);
}

static void test_encode_refuses_oversized_frame(void **state)
{
        _cleanup_free_ char *payload = calloc(1, BRIDGE_MAX_PAYLOAD);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;

        assert_non_null(payload);
        memset(payload, ' ', BRIDGE_MAX_PAYLOAD);
        /* Exactly 64 KiB without the newline fits, and with it does not. */
        assert_int_equal(bridge_frame_encode(1, 0, payload, BRIDGE_MAX_PAYLOAD, true, &buf, &len), -EMSGSIZE);
        assert_null(buf);
        assert_int_equal(bridge_frame_encode(1, 0, payload, BRIDGE_MAX_PAYLOAD, false, &buf, &len), 0);
        assert_int_equal(len, BRIDGE_MAX_FRAME);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_negotiate_request_golden_bytes),
                cmocka_unit_test(test_type_classification_and_response_type),
                cmocka_unit_test(test_header_roundtrip_is_little_endian),
                cmocka_unit_test(test_short_header_needs_more),
                cmocka_unit_test(test_size_below_header_is_refused),
                cmocka_unit_test(test_size_above_64k_is_refused_and_64k_accepted),
                cmocka_unit_test(test_stream_of_frames_parses_one_at_a_time),
                cmocka_unit_test(test_encode_refuses_oversized_frame),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
