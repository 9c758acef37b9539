/* daemon/record.h: the record room: per VM in <state-dir>/vms a snapshot (<name>.state, written crash-safely) and a journal of what changed since (<name>.journal, appended whenever the VM's model changes), read back at start so a restarted vsockmuxd recovers every VM (restart and crash recovery). */
#pragma once

#include "daemon/save-restore.h"
#include "daemon/vm.h"
#include "daemon/vmm-types.h"

/* The record's directory under --state-dir. */
#define VMM_RECORD_DIR "vms"
/* Added to a record's next bridge call id at recovery: calls sent after its last write (a Kill, a
 * Resize) must not share an id with the new daemon's. */
#define VMM_RECORD_CALL_ID_MARGIN (UINT64_C(1) << 20)

struct vmm_record;

/* Makes <state_dir>/vms (0700) and drops temporary files a crash left there. */
/* A VM whose changes keep coming while nobody waits for them (1,000 streams ending together) is
 * written at most once per burst_gap_ns: one write per gap rather than one per round trip through
 * the writer. An exec waiting for its pid, or a change after a quiet spell, is written in the next
 * loop pass. What waits meanwhile is at most that much younger than the disk. */
#define VMM_RECORD_BURST_GAP_NS (5ull * 1000 * 1000)
int vmm_record_new(struct relay *relay, const char *state_dir, uint64_t burst_gap_ns, struct vmm_record **ret);
struct vmm_record *vmm_record_free(struct vmm_record *rec);
DEFINE_CLEANUP(struct vmm_record *, vmm_record_free);

/* vm changed: process pid, or (0) the VM's own fields. Written once at the end of this loop turn,
 * however many changes (within a burst, once the gap since the last write has passed): appended
 * to its journal, or a snapshot when the journal is long enough. */
void vmm_record_mark(struct vmm_record *rec, struct vmm_vm *vm, uint32_t pid);
/* vm's process pid with exec_id was forgotten: its journal names it by that, not by its pid, which the
 * guest may have given a newer process of vm too. */
void vmm_record_mark_gone(struct vmm_record *rec, struct vmm_vm *vm, uint32_t pid, const char *exec_id);
/* vm changed in ways nobody marked (records were paused): its next write is a snapshot. */
void vmm_record_mark_all(struct vmm_record *rec, struct vmm_vm *vm);
/* Writes vm's record now, a snapshot: its saved state (a save's blob) with what a save leaves out
 * (each endpoint's file base, the exec's credentials), and an empty journal. A saved VM's record
 * is removed instead: its state is the destination's. */
int vmm_record_write(struct vmm_record *rec, struct vmm_vm *vm);
/* vm goes away: nothing more is written for it; remove: its files go too (a removed VM). */
void vmm_record_forget(struct vmm_record *rec, struct vmm_vm *vm, bool remove);
/* Writes every marked VM now. */
void vmm_record_flush(struct vmm_record *rec);
/* Waits until every write queued or in flight is on disk, so none lands after this returns. */
void vmm_record_sync(struct vmm_record *rec);

/* One record found at start, ready for vmm_restore(): the blob and its endpoints (io). */
struct vmm_record_entry {
        const char *name;
        const uint8_t *blob;
        size_t len;
        const struct vmm_restore_io *io;
        size_t n_io;
};
typedef int (*vmm_record_recover_fn)(const struct vmm_record_entry *e, void *userdata, struct vmm_error *err);

struct vmm_record_summary {
        unsigned vms, processes, lost, bad, failed;
};

/* Hands every record to fn, its snapshot with its journal applied (a torn tail ends that, logged).
 * A record that does not parse, or whose journal holds a record this build does not know, is moved
 * aside (NAME.state.bad, NAME.journal.bad) and logged; one fn refuses is logged and left in place. */
int vmm_record_recover(struct vmm_record *rec, vmm_record_recover_fn fn, void *userdata,
                       struct vmm_record_summary *ret);
