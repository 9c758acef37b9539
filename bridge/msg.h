/* bridge/msg.h: JSON bodies of bridge messages for both the host and the guest simulator; pure functions. A decoded struct owns its strings until its _done(); a struct filled in for encoding only borrows. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/codec.h"

#define BRIDGE_PROTOCOL_VERSION 4u
#define BRIDGE_NULL_GUID "00000000-0000-0000-0000-000000000000"
#define BRIDGE_GUID_LEN 36u
#define BRIDGE_WAIT_INFINITE UINT32_MAX
/* hcsshim's guest reports Go's -1 as the ExitCode of any process a signal killed, without naming the signal. */
#define BRIDGE_EXIT_CODE_SIGNALED UINT32_MAX
/* Our extension (V4): offered at top level of the NegotiateProtocol request, accepted inside GuestDefinedCapabilities. */
#define BRIDGE_STDIO_RESUME_FIELD "VsockmuxStdioResume"
/* Our delivery acknowledgement, offered and accepted next to BRIDGE_STDIO_RESUME_FIELD and agreed only
 * with it: on every stdout/stderr connection the host sends 8-byte little-endian counts of what
 * reached the endpoint, and the guest frees its replay buffer up to them, not up to what was read. */
#define BRIDGE_STDIO_ACK_FIELD "VsockmuxStdioAck"
/* Our stdin end confirmation, offered and accepted like BRIDGE_STDIO_ACK_FIELD and agreed only with
 * resume: at stdin's end the host half-closes and keeps the connection until the guest writes its
 * 8-byte little-endian received count; a guest whose write fails lost the host, not its input, and
 * redials. Without it a guest cannot tell the end of stdin from a host that went away. */
#define BRIDGE_STDIN_EOF_FIELD "VsockmuxStdinEof"

/* Limits on everything read from the other side. */
#define BRIDGE_MAX_JSON_DEPTH 32
#define BRIDGE_MAX_ID_LEN 256u   /* ContainerId */
#define BRIDGE_MAX_NAME_LEN 256u /* RuntimeOsType, notification Type and Operation */
#define BRIDGE_MAX_STRING_LEN BRIDGE_MAX_PAYLOAD
#define BRIDGE_MAX_ARGS 1024u
#define BRIDGE_MAX_ENV 1024u
#define BRIDGE_MAX_SIGNAL 64

/* HRESULTs travel as signed decimal int32 (W6). */
#define BRIDGE_HR_OK INT32_C(0)
#define BRIDGE_HR_NOT_FOUND ((int32_t)UINT32_C(0x80070490))           /* process or element not found */
#define BRIDGE_HR_TIMEOUT ((int32_t)UINT32_C(0xC0370109))             /* WaitForProcess timeout elapsed */
#define BRIDGE_HR_NOT_IMPL ((int32_t)UINT32_C(0x80004001))            /* no handler for this request */
#define BRIDGE_HR_UNSUPPORTED_VERSION ((int32_t)UINT32_C(0xC037010C)) /* negotiate range excludes 4 */
#define BRIDGE_HR_SYSTEM_NOT_FOUND ((int32_t)UINT32_C(0xC037010E))    /* container missing (tolerated on shutdown) */
#define BRIDGE_HR_INVALID_ARG ((int32_t)UINT32_C(0x80070057))         /* malformed request */
#define BRIDGE_HR_FAIL ((int32_t)UINT32_C(0x80004005))                /* anything else */

struct bridge_process_params {
        const char **args; /* CommandArgs; n_args == 0 means use command_line */
        size_t n_args;
        const char *command_line; /* NULL = omitted */
        const char *working_dir;  /* NULL = omitted */
        const char **env;         /* "NAME=VALUE", sent as the Environment object */
        size_t n_env;
        bool emulate_console;
        bool create_stdin, create_stdout, create_stderr;
        uint16_t console_height, console_width; /* ConsoleSize [h, w]; omitted when both 0 */
};

/* One struct for every request; only the part named after `type` is used. */
struct bridge_request {
        uint32_t type;            /* BRIDGE_RPC_* */
        const char *container_id; /* NULL encodes as ""; always set after decode */
        const char *activity_id;  /* NULL encodes the null GUID; after decode NULL means absent */
        struct {
                uint32_t min_version, max_version;
                bool stdio_resume; /* host offers V4 resume */
                bool stdio_ack;    /* host offers delivery acks (with stdio_resume) */
                bool stdin_eof;    /* host offers the stdin end confirmation (with stdio_resume) */
        } negotiate;
        struct {
                const char *config; /* ContainerConfig: JSON text sent as a string */
        } create;
        struct {
                bool has_params; /* false: ProcessParameters is "null" */
                struct bridge_process_params params;
                uint32_t stdin_port, stdout_port, stderr_port; /* 0 = not sent */
        } exec;
        struct {
                uint32_t pid;
                uint32_t timeout_ms; /* BRIDGE_WAIT_INFINITE for no timeout */
        } wait;
        struct {
                uint32_t pid;
                bool has_options; /* false: Options omitted, meaning kill */
                int32_t signal;   /* 0..BRIDGE_MAX_SIGNAL; 0 also means kill */
        } signal;
        struct {
                uint32_t pid;
                uint16_t height, width;
        } resize;
};

struct bridge_response {
        int32_t result;            /* HRESULT; nonzero responses carry only the base fields */
        const char *error_message; /* NULL or "" = omitted */
        const char *activity_id;   /* NULL = omitted / absent; must be a GUID when present */
        struct {
                uint32_t version;
                const char *runtime_os_type; /* decoded lower-cased, "" becomes "windows"; encode NULL = "Linux" */
                bool stdio_resume;           /* guest announced BRIDGE_STDIO_RESUME_FIELD: true */
                bool stdio_ack;              /* guest announced BRIDGE_STDIO_ACK_FIELD: true */
                bool stdin_eof;              /* guest announced BRIDGE_STDIN_EOF_FIELD: true */
        } negotiate;
        struct {
                uint32_t pid;
        } exec;
        struct {
                uint32_t exit_code;
        } wait;
};

/* Container notification, type BRIDGE_NOTIFY_CONTAINER, id 0 (W12). */
struct bridge_notification {
        const char *container_id;
        const char *activity_id; /* NULL encodes the null GUID; after decode NULL means absent */
        const char *type;        /* "UnexpectedExit", "GracefulExit", "ForcedExit", ... */
        const char *operation;   /* NULL encodes "None" */
        int32_t result;
        const char *result_info; /* NULL = omitted; else JSON text, sent as a string */
};

/* Whether s is a GUID as the host parses it: 8-4-4-4-12 hex digits. */
bool bridge_guid_is_valid(const char *s);
/* "not found", "timeout", ... for logs; NULL for an HRESULT not listed above. */
const char *bridge_hresult_name(int32_t hr);

/*
 * Encoders return the JSON text (no newline) in a new NUL-terminated string, or -EINVAL for a
 * struct that cannot be encoded (bad env entry, invalid result_info, ...), -EMSGSIZE for a body
 * that cannot fit a frame, -ENOMEM.
 * Decoders take the payload of one frame (trailing whitespace allowed) and return 0, or
 * -EBADMSG with a static reason for logs (ret_reason may be NULL), -EPROTONOSUPPORT for a
 * negotiate response whose version is not 4, -ENOMEM. ret is set only on success.
 */
int bridge_request_encode(const struct bridge_request *r, char **ret_json, size_t *ret_len);
int bridge_request_decode(uint32_t type, const char *payload, size_t len, struct bridge_request *ret,
                          const char **ret_reason);
void bridge_request_done(struct bridge_request *r);

/* req_type is the request being answered: it decides which fields exist. */
int bridge_response_encode(uint32_t req_type, const struct bridge_response *r, char **ret_json, size_t *ret_len);
int bridge_response_decode(uint32_t req_type, const char *payload, size_t len, struct bridge_response *ret,
                           const char **ret_reason);
void bridge_response_done(struct bridge_response *r);

int bridge_notification_encode(const struct bridge_notification *n, char **ret_json, size_t *ret_len);
int bridge_notification_decode(const char *payload, size_t len, struct bridge_notification *ret,
                               const char **ret_reason);
void bridge_notification_done(struct bridge_notification *n);

/* Whole frames. The host side writes requests with a trailing '\n' (W4); the guest writes none. */
int bridge_request_frame(const struct bridge_request *r, uint64_t id, uint8_t **ret_buf, size_t *ret_len);
int bridge_response_frame(uint32_t req_type, uint64_t id, const struct bridge_response *r, uint8_t **ret_buf,
                          size_t *ret_len);
int bridge_notification_frame(const struct bridge_notification *n, uint8_t **ret_buf, size_t *ret_len);
