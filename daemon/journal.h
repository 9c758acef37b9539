/* daemon/journal.h: a record's journal: what changed in one VM since its snapshot, framed (a header naming the snapshot's generation, then records of length, CRC-32C and a packed JournalRecord), and its replay onto the decoded snapshot; owns no file. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/savestate.h"

#define JOURNAL_HEADER_SIZE 24u
#define JOURNAL_FRAME_SIZE 8u /* a record's length and CRC-32C, ahead of its payload */
#define JOURNAL_MAX_RECORD SAVESTATE_MAX_BLOB

typedef Vsockmux__State__JournalRecord journal_record;

/* Framed records for one append. */
struct journal_buf {
        uint8_t *data;
        size_t len, cap;
};
void journal_buf_done(struct journal_buf *b);

/* The journal's first bytes: magic, format version, generation, their CRC-32C. */
void journal_header(uint64_t generation, uint8_t out[JOURNAL_HEADER_SIZE]);
/* Appends rec framed. -EINVAL for one a reader would refuse (a schema version or kind it does not
 * know), -EFBIG, -ENOMEM; b is unchanged then. */
int journal_buf_add(struct journal_buf *b, const journal_record *rec);

struct journal_replay {
        uint64_t generation; /* the header's */
        size_t applied;      /* records applied */
        size_t good_len;     /* header and records applied, in bytes */
        bool torn;           /* what follows them frames no good record (a crash mid-append, or a
                              * corrupt record): the replay ended there */
};

/* Applies a journal (header and records) to s, its snapshot. -ESTALE: the header names another
 * generation than s's (a crash between a compaction's steps left an older journal): nothing is
 * applied. -EBADMSG: not a journal's header, or a whole checksummed record that does not apply (a
 * process without a pid, a VM of another name). -EPROTONOSUPPORT: a record of a schema version or
 * kind this build does not know. A torn or corrupt tail is no error (ret->torn). On an error s may
 * be changed in part: the caller discards it. err gets a one-line reason. */
int journal_replay(savestate_msg *s, const uint8_t *buf, size_t len, struct journal_replay *ret, char *err,
                   size_t errlen);
