/* daemon/savestate.h: the saved-state blob: framing, checksum, version and sanity checks; the caller owns every buffer and message. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.pb-c.h"
#include "util/macro.h"

#define SAVESTATE_SCHEMA_VERSION 1u
#define SAVESTATE_HEADER_SIZE 24u
#define SAVESTATE_MAX_BLOB (32u << 20)
#define SAVESTATE_MAX_PROCESSES 16384u
#define SAVESTATE_MAX_CONTAINERS 16384u
#define SAVESTATE_MAX_ARGV_BYTES 256u /* argv is kept for `ps` only: a long command line is cut */
#define SAVESTATE_MAX_NAME 64u
#define SAVESTATE_MAX_ID 256u
#define SAVESTATE_MAX_PATH 107u /* sun_path less its NUL */

typedef Vsockmux__State__SavedState savestate_msg;

/* Frames and checksums a message. Returns 0 or -EINVAL when it fails its own sanity checks. */
int savestate_encode(const savestate_msg *s, uint8_t **ret_buf, size_t *ret_len);

/* Reads a blob from outside. Every failure is -EBADMSG (corrupt or hostile) or -EPROTONOSUPPORT
 * (a schema version this build does not know), with a one-line reason in err. */
int savestate_decode(const uint8_t *buf, size_t len, savestate_msg **ret, char *err, size_t errlen);

/* A live upgrade's VM (Handover.vms, never framed): the checks a decoded blob passes, its live
 * fields (fd indices) allowed. -EBADMSG with a one-line reason in err. */
int savestate_check_handed(const savestate_msg *s, char *err, size_t errlen);

savestate_msg *savestate_msg_free(savestate_msg *s);
DEFINE_CLEANUP(savestate_msg *, savestate_msg_free);

/* Writes atomically: a temporary file in the same directory, fsync, rename, fsync of the directory. */
int savestate_write_file(const char *path, const uint8_t *buf, size_t len);
int savestate_read_file(const char *path, uint8_t **ret_buf, size_t *ret_len);

uint32_t savestate_crc32c(const uint8_t *buf, size_t len);
/* Formats why a blob or journal was refused into err (if any) and returns -EBADMSG. */
_printf_(3, 4) int savestate_fail(char *err, size_t errlen, const char *fmt, ...);
