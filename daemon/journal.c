/* daemon/journal.c: a record's journal: the framing of what changed in one VM since its snapshot, and its replay onto the decoded snapshot. */
#include "daemon/journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "util/unaligned.h"

static const uint8_t journal_magic[8] = { 'v', 's', 'm', 'x', 'j', 'r', 'n', 'l' };
#define JOURNAL_FORMAT_VERSION 1u

void journal_buf_done(struct journal_buf *b)
{
        free(b->data);
        *b = (struct journal_buf){ 0 };
}

void journal_header(uint64_t generation, uint8_t out[JOURNAL_HEADER_SIZE])
{
        memcpy(out, journal_magic, sizeof(journal_magic));
        unaligned_write_le32(out + 8, JOURNAL_FORMAT_VERSION);
        unaligned_write_le64(out + 12, generation);
        unaligned_write_le32(out + 20, savestate_crc32c(out, 20));
}

static bool journal_kind_known(Vsockmux__State__JournalKind k)
{
        return k == VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS ||
               k == VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS_GONE ||
               k == VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_VM;
}

int journal_buf_add(struct journal_buf *b, const journal_record *rec)
{
        size_t plen, need;

        if (rec->schema_version != SAVESTATE_SCHEMA_VERSION || !journal_kind_known(rec->kind))
                return -EINVAL;
        plen = vsockmux__state__journal_record__get_packed_size(rec);
        if (plen == 0 || plen > JOURNAL_MAX_RECORD)
                return -EFBIG;
        need = b->len + JOURNAL_FRAME_SIZE + plen;
        if (need > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                uint8_t *d;

                while (cap < need)
                        cap *= 2;
                d = realloc(b->data, cap);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->cap = cap;
        }
        vsockmux__state__journal_record__pack(rec, b->data + b->len + JOURNAL_FRAME_SIZE);
        unaligned_write_le32(b->data + b->len, plen);
        unaligned_write_le32(b->data + b->len + 4, savestate_crc32c(b->data + b->len + JOURNAL_FRAME_SIZE, plen));
        b->len = need;
        return 0;
}

/* ---- replay ---- */

/* The newest (last) entry of pid (without_id: of those without an exec id), for the records of an
 * older daemon, which named a process by its pid and never held one twice. */
static ssize_t vm_find_pid(const Vsockmux__State__Vm *vm, uint32_t pid, bool without_id)
{
        for (size_t i = vm->n_processes; i-- > 0;)
                if (vm->processes[i]->pid == pid && (!without_id || !vm->processes[i]->exec_id[0]))
                        return (ssize_t)i;
        return -1;
}

static ssize_t vm_find_exec_id(const Vsockmux__State__Vm *vm, const char *exec_id)
{
        for (size_t i = 0; i < vm->n_processes; i++)
                if (strcmp(vm->processes[i]->exec_id, exec_id) == 0)
                        return (ssize_t)i;
        return -1;
}

/* The record's process goes into the snapshot (taken from rec): it replaces the entry with its exec
 * id (a pid the guest reused names an older entry too, which stays), or one of an older daemon
 * without an exec id replaces the entry of its pid that has none. */
static int apply_process(savestate_msg *s, journal_record *rec, char *err, size_t errlen)
{
        Vsockmux__State__Vm *vm = s->vm;
        Vsockmux__State__Process **ps;
        ssize_t i;

        if (!rec->process || rec->process->pid == 0)
                return savestate_fail(err, errlen, "journal: a process record without a pid");
        if (rec->process->exec_id[0])
                i = vm_find_exec_id(vm, rec->process->exec_id);
        else
                i = vm_find_pid(vm, rec->process->pid, true);
        if (i >= 0) {
                vsockmux__state__process__free_unpacked(vm->processes[i], NULL);
                vm->processes[i] = TAKE_PTR(rec->process);
                return 0;
        }
        if (vm->n_processes >= SAVESTATE_MAX_PROCESSES)
                return savestate_fail(err, errlen, "journal: over %u processes", SAVESTATE_MAX_PROCESSES);
        ps = realloc(vm->processes, (vm->n_processes + 1) * sizeof(*ps));
        if (!ps)
                return -ENOMEM;
        vm->processes = ps;
        vm->processes[vm->n_processes++] = TAKE_PTR(rec->process);
        return 0;
}

/* The entry with gone_exec_id goes; a record of an older daemon names only gone_pid, and the
 * newest entry of that pid goes, as it did there. */
static int apply_gone(savestate_msg *s, const journal_record *rec, char *err, size_t errlen)
{
        Vsockmux__State__Vm *vm = s->vm;
        ssize_t i;

        if (rec->gone_exec_id[0])
                i = vm_find_exec_id(vm, rec->gone_exec_id);
        else if (rec->gone_pid != 0)
                i = vm_find_pid(vm, rec->gone_pid, false);
        else
                return savestate_fail(err, errlen, "journal: a forgotten process without an exec id or pid");
        /* Not there: it was forgotten before any record held it. */
        if (i < 0)
                return 0;
        vsockmux__state__process__free_unpacked(vm->processes[i], NULL);
        memmove(vm->processes + i, vm->processes + i + 1, (vm->n_processes - (size_t)i - 1) * sizeof(*vm->processes));
        vm->n_processes--;
        return 0;
}

/* The record's VM replaces the snapshot's, which keeps its processes: every other field, also
 * those a newer field list adds, comes from the record. */
static int apply_vm(savestate_msg *s, journal_record *rec, char *err, size_t errlen)
{
        Vsockmux__State__Vm *v = rec->vm;

        if (!v || v->n_processes != 0)
                return savestate_fail(err, errlen, "journal: a VM record %s", v ? "with processes" : "without a VM");
        if (!v->name || strcmp(v->name, s->vm->name) != 0)
                return savestate_fail(err, errlen, "journal: a record of VM '%.64s' in VM %s's journal",
                                      v->name ? v->name : "", s->vm->name);
        v->processes = TAKE_PTR(s->vm->processes);
        v->n_processes = s->vm->n_processes;
        s->vm->n_processes = 0;
        vsockmux__state__vm__free_unpacked(s->vm, NULL);
        s->vm = TAKE_PTR(rec->vm);
        return 0;
}

static int journal_apply(savestate_msg *s, journal_record *rec, char *err, size_t errlen)
{
        if (rec->schema_version != SAVESTATE_SCHEMA_VERSION) {
                if (err && errlen)
                        snprintf(err, errlen, "journal record schema version %u unknown (this build reads %u)",
                                 rec->schema_version, SAVESTATE_SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        switch (rec->kind) {
        case VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS: return apply_process(s, rec, err, errlen);
        case VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS_GONE: return apply_gone(s, rec, err, errlen);
        case VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_VM: return apply_vm(s, rec, err, errlen);
        default:
                if (err && errlen)
                        snprintf(err, errlen, "journal record kind %d unknown", (int)rec->kind);
                return -EPROTONOSUPPORT;
        }
}

static int journal_check_header(const savestate_msg *s, const uint8_t *buf, size_t len, uint64_t *ret_gen, char *err,
                                size_t errlen)
{
        uint64_t gen;

        /* Written whole before its rename: a short or wrong header is corruption, not a crash. */
        if (len < JOURNAL_HEADER_SIZE || memcmp(buf, journal_magic, sizeof(journal_magic)) != 0)
                return savestate_fail(err, errlen, "not a vsockmux journal (%s)",
                                      len < JOURNAL_HEADER_SIZE ? "short header" : "bad magic");
        if (unaligned_read_le32(buf + 20) != savestate_crc32c(buf, 20))
                return savestate_fail(err, errlen, "journal header checksum mismatch: corrupted");
        if (unaligned_read_le32(buf + 8) != JOURNAL_FORMAT_VERSION) {
                if (err && errlen)
                        snprintf(err, errlen, "journal format %u unknown (this build reads %u)",
                                 (unsigned)unaligned_read_le32(buf + 8), JOURNAL_FORMAT_VERSION);
                return -EPROTONOSUPPORT;
        }
        gen = unaligned_read_le64(buf + 12);
        if (gen != s->journal_generation) {
                if (err && errlen)
                        snprintf(err, errlen, "journal of generation %llu, the snapshot's is %llu",
                                 (unsigned long long)gen, (unsigned long long)s->journal_generation);
                return -ESTALE;
        }
        *ret_gen = gen;
        return 0;
}

/* The payload of the whole, checksummed record at off, or NULL: the tail from off is torn. */
static const uint8_t *journal_frame(const uint8_t *buf, size_t len, size_t off, size_t *ret_plen)
{
        size_t plen;

        if (len - off < JOURNAL_FRAME_SIZE)
                return NULL;
        plen = unaligned_read_le32(buf + off);
        if (plen == 0 || plen > JOURNAL_MAX_RECORD || plen > len - off - JOURNAL_FRAME_SIZE)
                return NULL;
        if (unaligned_read_le32(buf + off + 4) != savestate_crc32c(buf + off + JOURNAL_FRAME_SIZE, plen))
                return NULL;
        *ret_plen = plen;
        return buf + off + JOURNAL_FRAME_SIZE;
}

int journal_replay(savestate_msg *s, const uint8_t *buf, size_t len, struct journal_replay *ret, char *err,
                   size_t errlen)
{
        struct journal_replay res = { 0 };
        size_t off = JOURNAL_HEADER_SIZE;
        int r;

        r = journal_check_header(s, buf, len, &res.generation, err, errlen);
        if (r < 0)
                return r;
        while (off < len) {
                const uint8_t *payload;
                journal_record *rec;
                size_t plen;

                payload = journal_frame(buf, len, off, &plen);
                if (!payload) {
                        res.torn = true;
                        break;
                }
                rec = vsockmux__state__journal_record__unpack(NULL, plen, payload);
                if (!rec)
                        return savestate_fail(err, errlen, "journal record %zu at byte %zu does not decode",
                                              res.applied + 1, off);
                r = journal_apply(s, rec, err, errlen);
                vsockmux__state__journal_record__free_unpacked(rec, NULL);
                if (r < 0)
                        return r;
                res.applied++;
                off += JOURNAL_FRAME_SIZE + plen;
        }
        res.good_len = off;
        *ret = res;
        return 0;
}
