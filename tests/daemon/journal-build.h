/* tests/daemon/journal-build.h: builds snapshots and journals of VM "demo" for the journal's and the record's tests (cmocka asserts on failure); the caller frees what it gets. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/journal.h"

#define JB_VM "demo"

/* A process of the test VM: running (with a wait outstanding) or exited with code. */
struct jb_proc {
        uint32_t pid;
        bool exited;
        int code;
        const char *exec_id; /* NULL: none, as an older daemon wrote it */
};

/* The encoded snapshot of "demo" with procs, naming journal generation gen. */
void jb_snapshot(const struct jb_proc *procs, size_t n, uint64_t gen, uint8_t **ret, size_t *ret_len);
/* The same, decoded, to replay a journal onto. */
savestate_msg *jb_snapshot_msg(const struct jb_proc *procs, size_t n, uint64_t gen);

void jb_add_process(struct journal_buf *b, struct jb_proc p);
void jb_add_gone(struct journal_buf *b, uint32_t pid);
/* As today's daemon writes it: the exec id, and the pid for a reader that knows only that. */
void jb_add_gone_id(struct journal_buf *b, const char *exec_id, uint32_t pid);
/* The VM's own fields: bridge_next_id next_id; name another VM's to make it not apply. */
void jb_add_vm(struct journal_buf *b, const char *name, uint64_t next_id);
/* A record as a newer build might write it: framed and checksummed, kind or version unknown here. */
void jb_add_unknown(struct journal_buf *b, int kind, uint32_t schema_version);

/* header(gen) followed by b's records. */
void jb_journal(uint64_t gen, const struct journal_buf *b, uint8_t **ret, size_t *ret_len);

/* The process pid in s, NULL: none. */
const Vsockmux__State__Process *jb_find(const savestate_msg *s, uint32_t pid);
/* The process with exec_id in s, NULL: none. */
const Vsockmux__State__Process *jb_find_id(const savestate_msg *s, const char *exec_id);
