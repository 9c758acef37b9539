/* tests/bridge/test-msg.c: bridge message bodies: round trips, upstream encodings and refused input.
 * Tags such as W8 name paragraphs of ../shared/docs/bridge-protocol.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/msg.h"
#include "util/macro.h"

#define GUID_A "0123abcd-4567-89ef-ABCD-0123456789ab"

/* Encodes, then decodes the JSON back as the other side would. */
static void request_roundtrip(const struct bridge_request *in, struct bridge_request *out)
{
        _cleanup_free_ char *json = NULL;
        const char *reason = NULL;
        size_t len = 0;

        assert_int_equal(bridge_request_encode(in, &json, &len), 0);
        assert_int_equal(strlen(json), len);
        if (bridge_request_decode(in->type, json, len, out, &reason) != 0)
                fail_msg("decode failed: %s in %s", reason, json);
        assert_int_equal(out->type, in->type);
        assert_string_equal(out->container_id, in->container_id ? in->container_id : "");
        assert_string_equal(out->activity_id, in->activity_id ? in->activity_id : BRIDGE_NULL_GUID);
}

static void response_roundtrip(uint32_t req_type, const struct bridge_response *in, struct bridge_response *out)
{
        _cleanup_free_ char *json = NULL;
        const char *reason = NULL;
        size_t len = 0;

        assert_int_equal(bridge_response_encode(req_type, in, &json, &len), 0);
        if (bridge_response_decode(req_type, json, len, out, &reason) != 0)
                fail_msg("decode failed: %s in %s", reason, json);
        assert_int_equal(out->result, in->result);
}

static int decode_response(uint32_t req_type, const char *json, struct bridge_response *out, const char **reason)
{
        return bridge_response_decode(req_type, json, strlen(json), out, reason);
}

static void test_negotiate_request_roundtrip_with_resume_offer(void **state)
{
        struct bridge_request in = {
                .type = BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                .negotiate = { .min_version = 4, .max_version = 4, .stdio_resume = true },
        }, out = {};
        _cleanup_free_ char *json = NULL;

        request_roundtrip(&in, &out);
        assert_int_equal(out.negotiate.min_version, 4);
        assert_int_equal(out.negotiate.max_version, 4);
        assert_true(out.negotiate.stdio_resume);
        bridge_request_done(&out);

        in.negotiate.stdio_resume = false;
        assert_int_equal(bridge_request_encode(&in, &json, NULL), 0);
        assert_null(strstr(json, BRIDGE_STDIO_RESUME_FIELD));
}

static void test_negotiate_ack_offer_and_answer_roundtrip(void **state)
{
        struct bridge_request in = {
                .type = BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                .negotiate = { .min_version = 4, .max_version = 4, .stdio_resume = true, .stdio_ack = true },
        }, out = {};
        struct bridge_response rin = { .negotiate = { .version = 4, .stdio_resume = true, .stdio_ack = true } },
                               rout = {};
        _cleanup_free_ char *json = NULL, *rjson = NULL;

        request_roundtrip(&in, &out);
        assert_true(out.negotiate.stdio_resume);
        assert_true(out.negotiate.stdio_ack);
        bridge_request_done(&out);
        response_roundtrip(BRIDGE_RPC_NEGOTIATE_PROTOCOL, &rin, &rout);
        assert_true(rout.negotiate.stdio_ack);
        bridge_response_done(&rout);

        /* Not offered, not answered: the field is absent, as an upstream guest or host expects. */
        in.negotiate.stdio_ack = false;
        assert_int_equal(bridge_request_encode(&in, &json, NULL), 0);
        assert_null(strstr(json, BRIDGE_STDIO_ACK_FIELD));
        rin.negotiate.stdio_ack = false;
        assert_int_equal(bridge_response_encode(BRIDGE_RPC_NEGOTIATE_PROTOCOL, &rin, &rjson, NULL), 0);
        assert_null(strstr(rjson, BRIDGE_STDIO_ACK_FIELD));
        response_roundtrip(BRIDGE_RPC_NEGOTIATE_PROTOCOL, &rin, &rout);
        assert_false(rout.negotiate.stdio_ack);
        bridge_response_done(&rout);
}

static void test_create_request_carries_config_as_string(void **state)
{
        struct bridge_request in = {
                .type = BRIDGE_RPC_CREATE,
                .container_id = "c1",
                .create.config = "{\"SystemType\":\"Container\"}",
        }, out = {};
        _cleanup_free_ char *json = NULL;

        assert_int_equal(bridge_request_encode(&in, &json, NULL), 0);
        assert_non_null(strstr(json, "\"ContainerConfig\":\"{\\\"SystemType\\\":\\\"Container\\\"}\""));
        request_roundtrip(&in, &out);
        assert_string_equal(out.create.config, in.create.config);
        bridge_request_done(&out);
}

static void test_create_request_without_config_reads_as_empty(void **state)
{
        struct bridge_request out = {};

        /* Like Go, a missing string is empty, so decode, encode and decode again agree. */
        assert_int_equal(bridge_request_decode(BRIDGE_RPC_CREATE, "{}", 2, &out, NULL), 0);
        assert_string_equal(out.create.config, "");
        assert_string_equal(out.container_id, "");
        assert_null(out.activity_id);
        bridge_request_done(&out);
}

static void test_execute_request_double_encodes_params_and_omits_zero_ports(void **state)
{
        const char *args[] = { "sh", "-c", "echo \"hi\"; exit 3" };
        const char *env[] = { "PATH=/usr/bin:/bin", "EMPTY=", "EQ=a=b" };
        struct bridge_request in = {
                .type = BRIDGE_RPC_EXECUTE_PROCESS,
                .container_id = "c1",
                .activity_id = GUID_A,
                .exec = {
                        .has_params = true,
                        .params = {
                                .args = args, .n_args = 3,
                                .working_dir = "/tmp",
                                .env = env, .n_env = 3,
                                .create_stdin = true, .create_stdout = true,
                                .console_height = 24, .console_width = 80,
                        },
                        .stdin_port = 0x40000001u, .stdout_port = 0x40000002u,
                },
        }, out = {};
        _cleanup_free_ char *json = NULL;

        assert_int_equal(bridge_request_encode(&in, &json, NULL), 0);
        /* ProcessParameters is a string, not an object (W8). */
        assert_non_null(strstr(json, "\"ProcessParameters\":\"{\\\"CommandArgs\\\":[\\\"sh\\\""));
        assert_non_null(strstr(json, "\"VsockStdioRelaySettings\":{\"StdIn\":1073741825,\"StdOut\":1073741826}"));
        assert_null(strstr(json, "StdErr"));
        assert_null(strstr(json, "EmulateConsole"));

        request_roundtrip(&in, &out);
        assert_true(out.exec.has_params);
        assert_int_equal(out.exec.params.n_args, 3);
        for (size_t i = 0; i < 3; i++)
                assert_string_equal(out.exec.params.args[i], args[i]);
        assert_null(out.exec.params.args[3]);
        assert_int_equal(out.exec.params.n_env, 3);
        for (size_t i = 0; i < 3; i++)
                assert_string_equal(out.exec.params.env[i], env[i]);
        assert_null(out.exec.params.env[3]);
        assert_null(out.exec.params.command_line);
        assert_string_equal(out.exec.params.working_dir, "/tmp");
        assert_true(out.exec.params.create_stdin);
        assert_true(out.exec.params.create_stdout);
        assert_false(out.exec.params.create_stderr);
        assert_false(out.exec.params.emulate_console);
        assert_int_equal(out.exec.params.console_height, 24);
        assert_int_equal(out.exec.params.console_width, 80);
        assert_int_equal(out.exec.stdin_port, 0x40000001u);
        assert_int_equal(out.exec.stdout_port, 0x40000002u);
        assert_int_equal(out.exec.stderr_port, 0);
        bridge_request_done(&out);
}

static void test_execute_request_without_params_sends_null_string(void **state)
{
        struct bridge_request in = { .type = BRIDGE_RPC_EXECUTE_PROCESS, .container_id = "c1" }, out = {};
        _cleanup_free_ char *json = NULL;

        assert_int_equal(bridge_request_encode(&in, &json, NULL), 0);
        assert_non_null(strstr(json, "\"ProcessParameters\":\"null\""));
        assert_non_null(strstr(json, "\"VsockStdioRelaySettings\":{}"));
        request_roundtrip(&in, &out);
        assert_false(out.exec.has_params);
        bridge_request_done(&out);
}

static void test_execute_request_command_line_roundtrip(void **state)
{
        struct bridge_request in = {
                .type = BRIDGE_RPC_EXECUTE_PROCESS,
                .exec = { .has_params = true, .params = { .command_line = "echo hi", .create_stderr = true,
                                                          .emulate_console = true } },
                .exec.stderr_port = 7,
        }, out = {};

        request_roundtrip(&in, &out);
        assert_string_equal(out.exec.params.command_line, "echo hi");
        assert_int_equal(out.exec.params.n_args, 0);
        assert_true(out.exec.params.create_stderr);
        assert_true(out.exec.params.emulate_console);
        assert_int_equal(out.exec.stderr_port, 7);
        bridge_request_done(&out);
}

static void test_execute_encode_refuses_bad_env_and_too_many_args(void **state)
{
        const char *env[] = { "NOEQUALS" };
        const char **args = calloc(BRIDGE_MAX_ARGS + 1, sizeof(char *));
        struct bridge_request in = {
                .type = BRIDGE_RPC_EXECUTE_PROCESS,
                .exec = { .has_params = true, .params = { .env = env, .n_env = 1 } },
        };
        char *json = NULL;

        assert_int_equal(bridge_request_encode(&in, &json, NULL), -EINVAL);
        assert_non_null(args);
        for (size_t i = 0; i <= BRIDGE_MAX_ARGS; i++)
                args[i] = "x";
        in.exec.params = (struct bridge_process_params){ .args = args, .n_args = BRIDGE_MAX_ARGS + 1 };
        assert_int_equal(bridge_request_encode(&in, &json, NULL), -EINVAL);
        assert_null(json);
        free(args);
}

static void test_execute_decode_refuses_too_many_args(void **state)
{
        _cleanup_free_ char *inner = NULL, *outer = NULL;
        struct bridge_request out = {};
        const char *reason = NULL;
        size_t n = 0;

        /* Build {"CommandArgs":["","",...]} with one entry over the limit, then double-encode it. */
        inner = malloc(64 + 3 * (BRIDGE_MAX_ARGS + 1));
        assert_non_null(inner);
        n += (size_t)sprintf(inner, "{\\\"CommandArgs\\\":[");
        for (size_t i = 0; i <= BRIDGE_MAX_ARGS; i++)
                n += (size_t)sprintf(inner + n, "%s1", i ? "," : "");
        sprintf(inner + n, "]}");
        assert_true(asprintf(&outer, "{\"Settings\":{\"ProcessParameters\":\"%s\"}}", inner) > 0);
        assert_int_equal(bridge_request_decode(BRIDGE_RPC_EXECUTE_PROCESS, outer, strlen(outer), &out, &reason),
                         -EBADMSG);
        assert_string_equal(reason, "too many CommandArgs");
}

static void test_wait_signal_resize_requests_roundtrip(void **state)
{
        struct bridge_request wait = { .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                                       .container_id = "c",
                                       .wait = { .pid = 42, .timeout_ms = BRIDGE_WAIT_INFINITE } };
        struct bridge_request sig = { .type = BRIDGE_RPC_SIGNAL_PROCESS,
                                      .container_id = "c",
                                      .signal = { .pid = 43, .has_options = true, .signal = 15 } };
        struct bridge_request kill = { .type = BRIDGE_RPC_SIGNAL_PROCESS, .signal.pid = 44 };
        struct bridge_request resize = { .type = BRIDGE_RPC_RESIZE_CONSOLE, .resize = { 45, 50, 132 } };
        struct bridge_request out = {};
        _cleanup_free_ char *wait_json = NULL, *kill_json = NULL;

        assert_int_equal(bridge_request_encode(&wait, &wait_json, NULL), 0);
        assert_non_null(strstr(wait_json, "\"ProcessId\":42,\"TimeoutInMs\":4294967295"));
        request_roundtrip(&wait, &out);
        assert_int_equal(out.wait.pid, 42);
        assert_int_equal(out.wait.timeout_ms, BRIDGE_WAIT_INFINITE);
        bridge_request_done(&out);

        request_roundtrip(&sig, &out);
        assert_int_equal(out.signal.pid, 43);
        assert_true(out.signal.has_options);
        assert_int_equal(out.signal.signal, 15);
        bridge_request_done(&out);

        /* Options is omitted when nil (W10): that is a kill. */
        assert_int_equal(bridge_request_encode(&kill, &kill_json, NULL), 0);
        assert_null(strstr(kill_json, "Options"));
        request_roundtrip(&kill, &out);
        assert_false(out.signal.has_options);
        assert_int_equal(out.signal.pid, 44);
        bridge_request_done(&out);

        request_roundtrip(&resize, &out);
        assert_int_equal(out.resize.pid, 45);
        assert_int_equal(out.resize.height, 50);
        assert_int_equal(out.resize.width, 132);
        bridge_request_done(&out);
}

static void test_shutdown_requests_carry_only_the_base(void **state)
{
        const uint32_t types[] = { BRIDGE_RPC_SHUTDOWN_GRACEFUL, BRIDGE_RPC_SHUTDOWN_FORCED };

        for (size_t i = 0; i < 2; i++) {
                struct bridge_request in = { .type = types[i], .container_id = BRIDGE_NULL_GUID }, out = {};
                _cleanup_free_ char *json = NULL;

                assert_int_equal(bridge_request_encode(&in, &json, NULL), 0);
                assert_string_equal(json, "{\"ContainerId\":\"" BRIDGE_NULL_GUID "\",\"ActivityId\":\"" BRIDGE_NULL_GUID
                                          "\"}");
                request_roundtrip(&in, &out);
                bridge_request_done(&out);
        }
}

static void test_request_decode_refuses_non_guid_activity_and_bad_signal(void **state)
{
        struct bridge_request out = {};
        const char *reason = NULL;
        const char *bad_aid = "{\"ContainerId\":\"c\",\"ActivityId\":\"not-a-guid\"}";
        const char *bad_sig = "{\"ProcessId\":1,\"Options\":{\"Signal\":65}}";
        const char *neg_pid = "{\"ProcessId\":-1}";

        assert_int_equal(bridge_request_decode(BRIDGE_RPC_DUMP_STACKS, bad_aid, strlen(bad_aid), &out, &reason),
                         -EBADMSG);
        assert_string_equal(reason, "ActivityId is not a GUID");
        assert_int_equal(bridge_request_decode(BRIDGE_RPC_SIGNAL_PROCESS, bad_sig, strlen(bad_sig), &out, &reason),
                         -EBADMSG);
        assert_int_equal(bridge_request_decode(BRIDGE_RPC_WAIT_FOR_PROCESS, neg_pid, strlen(neg_pid), &out, &reason),
                         -EBADMSG);
        assert_int_equal(bridge_request_decode(0x20100601u, "{}", 2, &out, &reason), -EBADMSG);
}

static void test_unknown_request_decodes_base_for_echo(void **state)
{
        const char *json = "{\"ContainerId\":\"c9\",\"ActivityId\":\"" GUID_A "\",\"Whatever\":[1,2]}";
        struct bridge_request out = {};

        assert_int_equal(bridge_request_decode(BRIDGE_RPC_DUMP_STACKS, json, strlen(json), &out, NULL), 0);
        assert_string_equal(out.container_id, "c9");
        assert_string_equal(out.activity_id, GUID_A);
        bridge_request_done(&out);
}

static void test_negotiate_response_roundtrip_and_resume_capability(void **state)
{
        struct bridge_response in = { .negotiate = { .version = 4, .stdio_resume = true } }, out = {};
        _cleanup_free_ char *json = NULL;

        response_roundtrip(BRIDGE_RPC_NEGOTIATE_PROTOCOL, &in, &out);
        assert_int_equal(out.negotiate.version, 4);
        assert_string_equal(out.negotiate.runtime_os_type, "linux");
        assert_true(out.negotiate.stdio_resume);
        bridge_response_done(&out);

        in.negotiate.stdio_resume = false;
        assert_int_equal(bridge_response_encode(BRIDGE_RPC_NEGOTIATE_PROTOCOL, &in, &json, NULL), 0);
        assert_string_equal(
                json,
                "{\"Result\":0,\"Version\":4,\"Capabilities\":{\"SupportedSchemaVersions\":[{\"Major\":2,\"Minor\":1}],"
                "\"RuntimeOsType\":\"Linux\",\"GuestDefinedCapabilities\":{\"NamespaceAddRequestSupported\":true,"
                "\"SignalProcessSupported\":true,\"DumpStacksSupported\":true,\"DeleteContainerStateSupported\":true}}"
                "}");
        response_roundtrip(BRIDGE_RPC_NEGOTIATE_PROTOCOL, &in, &out);
        assert_false(out.negotiate.stdio_resume);
        bridge_response_done(&out);
}

static void test_negotiate_response_checks_version_and_capabilities(void **state)
{
        struct bridge_response out = {};
        const char *reason = NULL;

        assert_int_equal(
                decode_response(BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                "{\"Result\":0,\"Version\":3,\"Capabilities\":{\"GuestDefinedCapabilities\":null}}",
                                &out, &reason),
                -EPROTONOSUPPORT);
        assert_non_null(strstr(reason, "version"));
        assert_int_equal(
                decode_response(BRIDGE_RPC_NEGOTIATE_PROTOCOL, "{\"Result\":0,\"Capabilities\":{}}", &out, &reason),
                -EPROTONOSUPPORT);
        assert_int_equal(decode_response(BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                         "{\"Result\":0,\"Version\":4,\"Capabilities\":{}}", &out, &reason),
                         -EBADMSG);
        assert_int_equal(decode_response(BRIDGE_RPC_NEGOTIATE_PROTOCOL, "{\"Result\":0,\"Version\":4}", &out, &reason),
                         -EBADMSG);
        assert_int_equal(
                decode_response(BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                "{\"Result\":0,\"Version\":4,\"Capabilities\":{\"GuestDefinedCapabilities\":[]}}", &out,
                                &reason),
                -EBADMSG);

        /* null capabilities are fine; an empty RuntimeOsType means windows. */
        assert_int_equal(
                decode_response(BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                "{\"Result\":0,\"Version\":4,\"Capabilities\":{\"GuestDefinedCapabilities\":null}}",
                                &out, &reason),
                0);
        assert_string_equal(out.negotiate.runtime_os_type, "windows");
        assert_false(out.negotiate.stdio_resume);
        bridge_response_done(&out);

        /* A refusal carries only the base and is not a decode error. */
        assert_int_equal(decode_response(BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                                         "{\"Result\":-1070137076,\"ErrorMessage\":\"unsupported\"}", &out, &reason),
                         0);
        assert_int_equal(out.result, BRIDGE_HR_UNSUPPORTED_VERSION);
        assert_string_equal(out.error_message, "unsupported");
        bridge_response_done(&out);
}

static void test_execute_and_wait_responses_roundtrip(void **state)
{
        struct bridge_response exec = { .exec.pid = 1234 }, wait = { .wait.exit_code = 137 }, out = {};
        const char *reason = NULL;

        response_roundtrip(BRIDGE_RPC_EXECUTE_PROCESS, &exec, &out);
        assert_int_equal(out.exec.pid, 1234);
        bridge_response_done(&out);
        response_roundtrip(BRIDGE_RPC_WAIT_FOR_PROCESS, &wait, &out);
        assert_int_equal(out.wait.exit_code, 137);
        bridge_response_done(&out);

        assert_int_equal(decode_response(BRIDGE_RPC_WAIT_FOR_PROCESS, "{\"Result\":0}", &out, &reason), -EBADMSG);
        assert_int_equal(decode_response(BRIDGE_RPC_EXECUTE_PROCESS, "{\"Result\":0}", &out, &reason), -EBADMSG);
}

static void test_error_response_writes_signed_hresult_and_echoes_activity(void **state)
{
        struct bridge_response in = { .result = BRIDGE_HR_NOT_FOUND,
                                      .error_message = "no such process",
                                      .activity_id = GUID_A },
                               out = {};
        _cleanup_free_ char *json = NULL;

        assert_int_equal(bridge_response_encode(BRIDGE_RPC_WAIT_FOR_PROCESS, &in, &json, NULL), 0);
        assert_string_equal(
                json, "{\"Result\":-2147023728,\"ErrorMessage\":\"no such process\",\"ActivityId\":\"" GUID_A "\"}");
        response_roundtrip(BRIDGE_RPC_WAIT_FOR_PROCESS, &in, &out);
        assert_int_equal(out.result, (int32_t)0x80070490u);
        assert_string_equal(out.activity_id, GUID_A);
        bridge_response_done(&out);

        assert_int_equal(BRIDGE_HR_TIMEOUT, -1070137079);
        assert_string_equal(bridge_hresult_name(BRIDGE_HR_NOT_IMPL), "not implemented");
}

static void test_response_hresult_out_of_int32_range_is_refused(void **state)
{
        struct bridge_response out = {};
        const char *reason = NULL;

        /* 0x80070490 written unsigned does not fit the host's int32. */
        assert_int_equal(decode_response(BRIDGE_RPC_SIGNAL_PROCESS, "{\"Result\":2147943568}", &out, &reason),
                         -EBADMSG);
        assert_string_equal(reason, "integer out of range");
        assert_int_equal(decode_response(BRIDGE_RPC_SIGNAL_PROCESS, "{\"Result\":1.5}", &out, &reason), -EBADMSG);
        assert_int_equal(decode_response(BRIDGE_RPC_SIGNAL_PROCESS, "{\"Result\":\"0\"}", &out, &reason), -EBADMSG);
}

static void test_response_activity_id_must_be_guid_or_absent(void **state)
{
        struct bridge_response out = {};
        const char *reason = NULL;

        assert_int_equal(
                decode_response(BRIDGE_RPC_SIGNAL_PROCESS, "{\"Result\":0,\"ActivityId\":\"\"}", &out, &reason),
                -EBADMSG);
        assert_string_equal(reason, "ActivityId is not a GUID");
        assert_int_equal(decode_response(BRIDGE_RPC_SIGNAL_PROCESS,
                                         "{\"Result\":0,\"ActivityId\":\"0123abcd-4567-89ef-ABCD-0123456789aZ\"}", &out,
                                         &reason),
                         -EBADMSG);
        assert_int_equal(decode_response(BRIDGE_RPC_SIGNAL_PROCESS, "{\"Result\":0,\"ActivityId\":7}", &out, &reason),
                         -EBADMSG);
        assert_int_equal(decode_response(BRIDGE_RPC_SIGNAL_PROCESS, "{\"Result\":0}", &out, &reason), 0);
        assert_null(out.activity_id);
        bridge_response_done(&out);
}

static void test_bad_json_is_refused(void **state)
{
        static const char *const bad[] = {
                "",
                "{",
                "{\"Result\":0",
                "[]",
                "null",
                "0",
                "{\"Result\":0}x",
                "{\"Result\":0} {}",
                "{\"Result\":'x'}",
                "{\"Result\":0,}",
                "{\"Result\":0 /* c */}",
        };
        struct bridge_response out = {};
        const char *reason;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                reason = NULL;
                if (decode_response(BRIDGE_RPC_SIGNAL_PROCESS, bad[i], &out, &reason) != -EBADMSG)
                        fail_msg("accepted: %s", bad[i]);
                assert_non_null(reason);
        }
        /* A NUL byte inside the payload is not JSON either. */
        assert_int_equal(bridge_response_decode(BRIDGE_RPC_SIGNAL_PROCESS, "{\"Result\":0}\0", 13, &out, &reason),
                         -EBADMSG);
}

static void test_trailing_whitespace_and_go_style_field_case_accepted(void **state)
{
        struct bridge_response out = {};

        assert_int_equal(
                decode_response(BRIDGE_RPC_WAIT_FOR_PROCESS, "{\"Result\":0,\"ExitCode\":3}\n \r\t", &out, NULL), 0);
        assert_int_equal(out.wait.exit_code, 3);
        bridge_response_done(&out);
        /* Go's encoding/json matches field names case-insensitively. */
        assert_int_equal(decode_response(BRIDGE_RPC_WAIT_FOR_PROCESS, "{\"result\":0,\"exitcode\":5}", &out, NULL), 0);
        assert_int_equal(out.wait.exit_code, 5);
        bridge_response_done(&out);
}

static void test_notification_roundtrip_and_result_info_rules(void **state)
{
        struct bridge_notification in = { .container_id = "c1",
                                          .type = "UnexpectedExit",
                                          .result_info = "{\"ExitCode\":3}" },
                                   out = {};
        _cleanup_free_ uint8_t *frame = NULL;
        _cleanup_free_ char *json = NULL;
        struct bridge_frame f;
        const char *reason = NULL;
        size_t len;

        assert_int_equal(bridge_notification_frame(&in, &frame, &len), 0);
        assert_int_equal(bridge_frame_parse(frame, len, &f, NULL, NULL), (int)len);
        assert_int_equal(f.header.type, BRIDGE_NOTIFY_CONTAINER);
        assert_int_equal(f.header.id, 0);
        assert_int_equal(bridge_notification_decode(f.payload, f.payload_len, &out, &reason), 0);
        assert_string_equal(out.container_id, "c1");
        assert_string_equal(out.activity_id, BRIDGE_NULL_GUID);
        assert_string_equal(out.type, "UnexpectedExit");
        assert_string_equal(out.operation, "None");
        assert_int_equal(out.result, 0);
        assert_string_equal(out.result_info, "{\"ExitCode\":3}");
        bridge_notification_done(&out);

        in.result_info = "";
        assert_int_equal(bridge_notification_encode(&in, &json, NULL), -EINVAL);

        json = strdup("{\"ContainerId\":\"c\",\"Type\":\"GracefulExit\",\"Operation\":\"None\",\"Result\":0,"
                      "\"ResultInfo\":\"\"}");
        assert_int_equal(bridge_notification_decode(json, strlen(json), &out, &reason), -EBADMSG);
        assert_non_null(strstr(reason, "ResultInfo"));
        free(json);
        json = strdup("{\"ContainerId\":\"c\",\"Type\":\"GracefulExit\",\"ResultInfo\":{\"a\":1}}");
        assert_int_equal(bridge_notification_decode(json, strlen(json), &out, &reason), -EBADMSG);
        free(json);
        json = strdup("{\"ContainerId\":\"c\",\"Type\":\"GracefulExit\",\"ResultInfo\":\"12\"}");
        assert_int_equal(bridge_notification_decode(json, strlen(json), &out, &reason), 0);
        assert_string_equal(out.result_info, "12");
        assert_null(out.activity_id);
        bridge_notification_done(&out);
}

static void test_guid_validation(void **state)
{
        assert_true(bridge_guid_is_valid(BRIDGE_NULL_GUID));
        assert_true(bridge_guid_is_valid(GUID_A));
        assert_false(bridge_guid_is_valid(""));
        assert_false(bridge_guid_is_valid(NULL));
        assert_false(bridge_guid_is_valid("{00000000-0000-0000-0000-000000000000}"));
        assert_false(bridge_guid_is_valid("00000000-0000-0000-0000+000000000000"));
        assert_false(bridge_guid_is_valid("00000000-0000-0000-0000-0000000000000"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_negotiate_request_roundtrip_with_resume_offer),
                cmocka_unit_test(test_negotiate_ack_offer_and_answer_roundtrip),
                cmocka_unit_test(test_create_request_carries_config_as_string),
                cmocka_unit_test(test_create_request_without_config_reads_as_empty),
                cmocka_unit_test(test_execute_request_double_encodes_params_and_omits_zero_ports),
                cmocka_unit_test(test_execute_request_without_params_sends_null_string),
                cmocka_unit_test(test_execute_request_command_line_roundtrip),
                cmocka_unit_test(test_execute_encode_refuses_bad_env_and_too_many_args),
                cmocka_unit_test(test_execute_decode_refuses_too_many_args),
                cmocka_unit_test(test_wait_signal_resize_requests_roundtrip),
                cmocka_unit_test(test_shutdown_requests_carry_only_the_base),
                cmocka_unit_test(test_request_decode_refuses_non_guid_activity_and_bad_signal),
                cmocka_unit_test(test_unknown_request_decodes_base_for_echo),
                cmocka_unit_test(test_negotiate_response_roundtrip_and_resume_capability),
                cmocka_unit_test(test_negotiate_response_checks_version_and_capabilities),
                cmocka_unit_test(test_execute_and_wait_responses_roundtrip),
                cmocka_unit_test(test_error_response_writes_signed_hresult_and_echoes_activity),
                cmocka_unit_test(test_response_hresult_out_of_int32_range_is_refused),
                cmocka_unit_test(test_response_activity_id_must_be_guid_or_absent),
                cmocka_unit_test(test_bad_json_is_refused),
                cmocka_unit_test(test_trailing_whitespace_and_go_style_field_case_accepted),
                cmocka_unit_test(test_notification_roundtrip_and_result_info_rules),
                cmocka_unit_test(test_guid_validation),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
