/* tests/daemon/journal-build.c: builds snapshots and journals of VM "demo" for the journal's and the record's tests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ports/ports.h"
#include "tests/daemon/journal-build.h"
#include "util/unaligned.h"

#define JB_NEXT_ID 100000u

static void jb_process_init(Vsockmux__State__Process *p, struct jb_proc jp)
{
        vsockmux__state__process__init(p);
        p->pid = jp.pid;
        p->exec_id = jp.exec_id ? (char *)jp.exec_id : "";
        p->container_id = "";
        p->log_path = "";
        if (jp.exited) {
                p->state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED;
                p->exit_code = jp.code;
        } else {
                p->state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING;
                p->wait_call_id = jp.pid;
        }
}

static void jb_vm_init(Vsockmux__State__Vm *vm, Vsockmux__State__Transport *t, const char *name, uint64_t next_id)
{
        vsockmux__state__vm__init(vm);
        vsockmux__state__transport__init(t);
        t->kind = VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK;
        t->uds_path = "/run/vsockmux/demo.vsock";
        vm->name = (char *)name;
        vm->transport = t;
        vm->port_floor = PORTS_FIRST;
        vm->bridge_next_id = next_id;
        vm->protocol_version = 4;
        vm->runtime_os_type = "linux";
}

void jb_snapshot(const struct jb_proc *procs, size_t n, uint64_t gen, uint8_t **ret, size_t *ret_len)
{
        Vsockmux__State__Process *p = calloc(n + 1, sizeof(*p)), **pp = calloc(n + 1, sizeof(*pp));
        Vsockmux__State__SavedState s;
        Vsockmux__State__Transport t;
        Vsockmux__State__Vm vm;

        assert_non_null(p);
        assert_non_null(pp);
        vsockmux__state__saved_state__init(&s);
        jb_vm_init(&vm, &t, JB_VM, JB_NEXT_ID);
        for (size_t i = 0; i < n; i++) {
                jb_process_init(&p[i], procs[i]);
                pp[i] = &p[i];
        }
        vm.processes = pp;
        vm.n_processes = n;
        s.schema_version = SAVESTATE_SCHEMA_VERSION;
        s.journal_generation = gen;
        s.vm = &vm;
        assert_int_equal(savestate_encode(&s, ret, ret_len), 0);
        free(pp);
        free(p);
}

savestate_msg *jb_snapshot_msg(const struct jb_proc *procs, size_t n, uint64_t gen)
{
        savestate_msg *s = NULL;
        char err[256];
        uint8_t *blob;
        size_t len;

        jb_snapshot(procs, n, gen, &blob, &len);
        assert_int_equal(savestate_decode(blob, len, &s, err, sizeof(err)), 0);
        free(blob);
        return s;
}

void jb_add_process(struct journal_buf *b, struct jb_proc jp)
{
        journal_record r = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;
        Vsockmux__State__Process p;

        jb_process_init(&p, jp);
        r.schema_version = SAVESTATE_SCHEMA_VERSION;
        r.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS;
        r.process = &p;
        assert_int_equal(journal_buf_add(b, &r), 0);
}

void jb_add_gone(struct journal_buf *b, uint32_t pid)
{
        journal_record r = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;

        r.schema_version = SAVESTATE_SCHEMA_VERSION;
        r.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS_GONE;
        r.gone_pid = pid;
        assert_int_equal(journal_buf_add(b, &r), 0);
}

void jb_add_gone_id(struct journal_buf *b, const char *exec_id, uint32_t pid)
{
        journal_record r = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;

        r.schema_version = SAVESTATE_SCHEMA_VERSION;
        r.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS_GONE;
        r.gone_exec_id = (char *)exec_id;
        r.gone_pid = pid;
        assert_int_equal(journal_buf_add(b, &r), 0);
}

void jb_add_vm(struct journal_buf *b, const char *name, uint64_t next_id)
{
        journal_record r = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;
        Vsockmux__State__Transport t;
        Vsockmux__State__Vm vm;

        jb_vm_init(&vm, &t, name, next_id);
        r.schema_version = SAVESTATE_SCHEMA_VERSION;
        r.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_VM;
        r.vm = &vm;
        assert_int_equal(journal_buf_add(b, &r), 0);
}

void jb_add_unknown(struct journal_buf *b, int kind, uint32_t schema_version)
{
        journal_record r = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;
        size_t plen;

        r.schema_version = schema_version;
        r.kind = (Vsockmux__State__JournalKind)kind;
        r.gone_pid = 7;
        /* journal_buf_add() refuses to write it: frame it by hand. */
        assert_int_not_equal(journal_buf_add(b, &r), 0);
        plen = vsockmux__state__journal_record__get_packed_size(&r);
        b->data = realloc(b->data, b->len + JOURNAL_FRAME_SIZE + plen);
        assert_non_null(b->data);
        vsockmux__state__journal_record__pack(&r, b->data + b->len + JOURNAL_FRAME_SIZE);
        unaligned_write_le32(b->data + b->len, (uint32_t)plen);
        unaligned_write_le32(b->data + b->len + 4, savestate_crc32c(b->data + b->len + JOURNAL_FRAME_SIZE, plen));
        b->len += JOURNAL_FRAME_SIZE + plen;
        b->cap = b->len;
}

void jb_journal(uint64_t gen, const struct journal_buf *b, uint8_t **ret, size_t *ret_len)
{
        uint8_t *out = malloc(JOURNAL_HEADER_SIZE + b->len + 1);

        assert_non_null(out);
        journal_header(gen, out);
        if (b->len)
                memcpy(out + JOURNAL_HEADER_SIZE, b->data, b->len);
        *ret = out;
        *ret_len = JOURNAL_HEADER_SIZE + b->len;
}

const Vsockmux__State__Process *jb_find(const savestate_msg *s, uint32_t pid)
{
        for (size_t i = 0; i < s->vm->n_processes; i++)
                if (s->vm->processes[i]->pid == pid)
                        return s->vm->processes[i];
        return NULL;
}

const Vsockmux__State__Process *jb_find_id(const savestate_msg *s, const char *exec_id)
{
        for (size_t i = 0; i < s->vm->n_processes; i++)
                if (strcmp(s->vm->processes[i]->exec_id, exec_id) == 0)
                        return s->vm->processes[i];
        return NULL;
}
