/* daemon/handover-wire.h: the live-upgrade socket's framing: one message is a 16-byte header, a payload and the fds riding on it (SCM_RIGHTS); owns nothing, the caller owns the socket, buffers and fds. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/macro.h"

/* Old daemon to new: the handover (a Vsockmux__State__Handover). New to old: the answer. */
#define HANDOVER_MAGIC_STATE 0x55584d56u  /* "VMXU" little-endian */
#define HANDOVER_MAGIC_ANSWER 0x52584d56u /* "VMXR" */
/* The framing and the Handover message's meaning; a reader refuses a version it does not know. */
#define HANDOVER_WIRE_VERSION 1u
#define HANDOVER_HEADER_SIZE 16u
#define HANDOVER_MAX_PAYLOAD (32u << 20)
#define HANDOVER_MAX_FDS 65536u
#define HANDOVER_FDS_PER_CHUNK 250u /* under the kernel's SCM_MAX_FD (253) per sendmsg */
#define HANDOVER_CHUNK_BYTES 65536u

struct handover_header {
        uint32_t magic;
        uint32_t version;
        uint32_t len; /* payload bytes */
        uint32_t n_fds;
};

void handover_header_encode(const struct handover_header *h, uint8_t out[HANDOVER_HEADER_SIZE]);
/* -EBADMSG: not a header with this magic, or over a limit; -EPROTONOSUPPORT: a version other than
 * HANDOVER_WIRE_VERSION (*ret is set then too, so the caller can name it). */
int handover_header_parse(const uint8_t *buf, size_t len, uint32_t magic, struct handover_header *ret);

/* A received message: the payload and the fds, in the order they were sent. */
struct handover_msg {
        struct handover_header hdr;
        uint8_t *payload;
        int *fds;
        size_t n_fds;
};
/* Closes every fd still in it and frees it; accepts NULL. */
struct handover_msg *handover_msg_free(struct handover_msg *m);
DEFINE_CLEANUP(struct handover_msg *, handover_msg_free);

/* Blocking, on a SOCK_STREAM Unix socket (give it a timeout with SO_SNDTIMEO/SO_RCVTIMEO).
 * The fds are borrowed: the peer gets duplicates. */
int handover_send(int sock, uint32_t magic, const void *payload, size_t len, const int *fds, size_t n_fds);
/* -EPIPE when the peer closed before a whole message, -EPROTONOSUPPORT for another version
 * (*ret_version says which; nothing after the header is read), -EBADMSG for anything malformed
 * (fds that arrive where none were announced included). */
int handover_recv(int sock, uint32_t magic, struct handover_msg **ret, uint32_t *ret_version);
