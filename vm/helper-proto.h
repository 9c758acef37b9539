/* vm/helper-proto.h: the framed protobuf protocol between vsockmuxd and vsockmux-vmhelper (proto/vmhelper.proto); pure functions, owns nothing but the messages it returns. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/macro.h"
#include "vmhelper.pb-c.h"

#define VMHELPER_HEADER_SIZE 4u        /* little-endian length of the message after it */
#define VMHELPER_FRAME_MAX (16u << 20) /* a saved state travels in one frame */
#define VMHELPER_STRING_MAX 4096u      /* a URI, a path, a name */
#define VMHELPER_MESSAGE_MAX 512u      /* Event and Outcome messages */
#define VMHELPER_PARAMS_MAX 64u
#define VMHELPER_IO_MAX 16384u /* the daemon's restore limit */
#define VMHELPER_FD 3          /* the helper's end of the socketpair */

typedef Vsockmux__Vmhelper__Message vmhelper_msg;

/* Parses the frame at the front of buf. Returns 1 with *ret (the caller frees it) and *ret_size,
 * the bytes the frame took; 0 when more bytes are needed (a frame is not whole yet); -EMSGSIZE
 * for a length over VMHELPER_FRAME_MAX or 0; -EBADMSG for a message that does not decode, has no
 * body, holds a string, list or enum outside its limits, or a field this build does not know. */
int vmhelper_frame_parse(const uint8_t *buf, size_t len, vmhelper_msg **ret, size_t *ret_size);

/* Packs m with its header into a new buffer. -EMSGSIZE over VMHELPER_FRAME_MAX. */
int vmhelper_frame_build(const vmhelper_msg *m, uint8_t **ret, size_t *ret_len);

vmhelper_msg *vmhelper_msg_free(vmhelper_msg *m);
DEFINE_CLEANUP(vmhelper_msg *, vmhelper_msg_free);

const char *vmhelper_phase_to_string(Vsockmux__Vmhelper__Phase p);
