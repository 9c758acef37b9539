/* tests/daemon/test-record.c: the record's recovery from the files a crash leaves: an older daemon's snapshot without a journal, every step of a compaction, a torn journal, an unknown record, a journal without its snapshot. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/record.h"
#include "relay/relay.h"
#include "tests/daemon/journal-build.h"
#include "tests/io-uring-skip.h"

struct fixture {
        char dir[64], vms[80];
        struct relay *r;
        savestate_msg *got; /* what recovery handed on */
        unsigned calls;
        struct vmm_record_summary sum;
};

static int on_recover(const struct vmm_record_entry *e, void *userdata, struct vmm_error *err)
{
        struct fixture *f = userdata;
        char why[256];

        f->calls++;
        savestate_msg_free(f->got);
        f->got = NULL;
        assert_int_equal(savestate_decode(e->blob, e->len, &f->got, why, sizeof(why)), 0);
        assert_string_equal(e->name, JB_VM);
        return 0;
}

static void fixture_start(struct fixture *f)
{
        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-record-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->vms, sizeof(f->vms), "%s/%s", f->dir, VMM_RECORD_DIR);
        assert_int_equal(mkdir(f->vms, 0700), 0);
        assert_int_equal(relay_new(NULL, &f->r), 0);
}

static void fixture_stop(struct fixture *f)
{
        char cmd[128];

        savestate_msg_free(f->got);
        relay_free(f->r);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        *f = (struct fixture){ 0 };
}

static void put(struct fixture *f, const char *file, const uint8_t *buf, size_t len)
{
        char path[160];

        snprintf(path, sizeof(path), "%s/%s", f->vms, file);
        assert_int_equal(savestate_write_file(path, buf, len), 0);
}

static bool exists(struct fixture *f, const char *file)
{
        char path[160];

        snprintf(path, sizeof(path), "%s/%s", f->vms, file);
        return access(path, F_OK) == 0;
}

/* What vsockmuxd does at start: the record room, then the recovery. */
static void recover(struct fixture *f)
{
        struct vmm_record *rec = NULL;

        assert_int_equal(vmm_record_new(f->r, f->dir, VMM_RECORD_BURST_GAP_NS, &rec), 0);
        assert_int_equal(vmm_record_recover(rec, on_recover, f, &f->sum), 0);
        vmm_record_free(rec);
}

static void put_snapshot(struct fixture *f, const char *file, const struct jb_proc *p, size_t n, uint64_t gen)
{
        uint8_t *blob;
        size_t len;

        jb_snapshot(p, n, gen, &blob, &len);
        put(f, file, blob, len);
        free(blob);
}

static void put_journal(struct fixture *f, const char *file, uint64_t gen, const struct journal_buf *b, size_t cut)
{
        uint8_t *j;
        size_t len;

        jb_journal(gen, b, &j, &len);
        put(f, file, j, len - cut);
        free(j);
}

static const Vsockmux__State__Process *got(struct fixture *f, uint32_t pid)
{
        assert_non_null(f->got);
        return jb_find(f->got, pid);
}

static void test_older_daemons_snapshot_without_journal_recovers(void **state)
{
        static const struct jb_proc procs[] = { { .pid = 100 }, { .pid = 101, .exited = true, .code = 4 } };
        struct fixture f = { 0 };

        fixture_start(&f);
        put_snapshot(&f, JB_VM ".state", procs, 2, 0);
        recover(&f);
        assert_int_equal(f.calls, 1);
        assert_int_equal(f.sum.vms, 1);
        assert_int_equal(f.sum.processes, 2);
        assert_non_null(got(&f, 100));
        assert_int_equal(got(&f, 101)->exit_code, 4);
        fixture_stop(&f);
}

/* The files as each step of a compaction leaves them: generation 1's snapshot and journal (102
 * started), then generation 2's snapshot (102 exited since), its empty journal, a record in it. */
enum step {
        STEP_BEFORE,
        STEP_SNAPSHOT_TEMP,
        STEP_SNAPSHOT_RENAMED,
        STEP_JOURNAL_TEMP,
        STEP_JOURNAL_RENAMED,
        STEP_APPENDED,
        _STEP_MAX,
};

static void put_step(struct fixture *f, enum step step)
{
        static const struct jb_proc old[] = { { .pid = 100 }, { .pid = 101 } };
        static const struct jb_proc new[] = { { .pid = 100 },
                                              { .pid = 101 },
                                              { .pid = 102, .exited = true, .code = 3 } };
        struct journal_buf j1 = { 0 }, j2 = { 0 };

        jb_add_process(&j1, (struct jb_proc){ .pid = 102 });
        jb_add_gone(&j2, 101);
        put_snapshot(f, JB_VM ".state", step >= STEP_SNAPSHOT_RENAMED ? new : old,
                     step >= STEP_SNAPSHOT_RENAMED ? 3 : 2, step >= STEP_SNAPSHOT_RENAMED ? 2 : 1);
        if (step == STEP_SNAPSHOT_TEMP)
                put_snapshot(f, JB_VM ".state.tmp.4242", new, 3, 2);
        if (step < STEP_JOURNAL_RENAMED)
                put_journal(f, JB_VM ".journal", 1, &j1, 0);
        else if (step == STEP_JOURNAL_RENAMED)
                put_journal(f, JB_VM ".journal", 2, &(struct journal_buf){ 0 }, 0);
        else
                put_journal(f, JB_VM ".journal", 2, &j2, 0);
        if (step == STEP_JOURNAL_TEMP)
                put_journal(f, JB_VM ".journal.tmp.4242", 2, &(struct journal_buf){ 0 }, 0);
        journal_buf_done(&j1);
        journal_buf_done(&j2);
}

static void test_every_compaction_crash_point_recovers_a_consistent_state(void **state)
{
        for (enum step step = 0; step < _STEP_MAX; step++) {
                struct fixture f = { 0 };
                const Vsockmux__State__Process *p102;

                fixture_start(&f);
                put_step(&f, step);
                recover(&f);
                assert_int_equal(f.calls, 1);
                assert_int_equal(f.sum.bad, 0);
                p102 = got(&f, 102);
                assert_non_null(p102);
                assert_non_null(got(&f, 100));
                /* The older journal never applies over the newer snapshot: 102 stays exited. */
                assert_int_equal(p102->state, step >= STEP_SNAPSHOT_RENAMED
                                                      ? VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED
                                                      : VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING);
                assert_int_equal(got(&f, 101) != NULL, step != STEP_APPENDED);
                assert_false(exists(&f, JB_VM ".state.tmp.4242"));
                assert_false(exists(&f, JB_VM ".journal.tmp.4242"));
                fixture_stop(&f);
        }
}

static void test_torn_journal_recovers_up_to_its_last_good_record(void **state)
{
        static const struct jb_proc procs[] = { { .pid = 100 }, { .pid = 101 } };
        struct journal_buf b = { 0 };
        struct fixture f = { 0 };

        fixture_start(&f);
        jb_add_process(&b, (struct jb_proc){ .pid = 102 });
        jb_add_gone(&b, 100);
        put_snapshot(&f, JB_VM ".state", procs, 2, 5);
        put_journal(&f, JB_VM ".journal", 5, &b, 3);
        recover(&f);
        assert_int_equal(f.calls, 1);
        assert_int_equal(f.sum.bad, 0);
        assert_non_null(got(&f, 102));
        assert_non_null(got(&f, 100));
        assert_true(exists(&f, JB_VM ".journal"));
        journal_buf_done(&b);
        fixture_stop(&f);
}

static void test_unknown_record_sets_snapshot_and_journal_aside(void **state)
{
        static const struct jb_proc procs[] = { { .pid = 100 } };
        struct journal_buf b = { 0 };
        struct fixture f = { 0 };

        fixture_start(&f);
        jb_add_process(&b, (struct jb_proc){ .pid = 102 });
        jb_add_unknown(&b, 77, SAVESTATE_SCHEMA_VERSION);
        put_snapshot(&f, JB_VM ".state", procs, 1, 5);
        put_journal(&f, JB_VM ".journal", 5, &b, 0);
        recover(&f);
        assert_int_equal(f.calls, 0);
        assert_int_equal(f.sum.bad, 1);
        assert_false(exists(&f, JB_VM ".state"));
        assert_false(exists(&f, JB_VM ".journal"));
        assert_true(exists(&f, JB_VM ".state.bad"));
        assert_true(exists(&f, JB_VM ".journal.bad"));
        journal_buf_done(&b);
        fixture_stop(&f);
}

/* A removal's crash between its two unlinks: the journal goes, the other VM's stays. */
static void test_journal_without_its_snapshot_is_dropped(void **state)
{
        static const struct jb_proc procs[] = { { .pid = 100 } };
        struct fixture f = { 0 };

        fixture_start(&f);
        put_snapshot(&f, JB_VM ".state", procs, 1, 5);
        put_journal(&f, JB_VM ".journal", 5, &(struct journal_buf){ 0 }, 0);
        put_journal(&f, "gone.journal", 5, &(struct journal_buf){ 0 }, 0);
        recover(&f);
        assert_int_equal(f.calls, 1);
        assert_false(exists(&f, "gone.journal"));
        assert_true(exists(&f, JB_VM ".journal"));
        fixture_stop(&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_older_daemons_snapshot_without_journal_recovers),
                cmocka_unit_test(test_every_compaction_crash_point_recovers_a_consistent_state),
                cmocka_unit_test(test_torn_journal_recovers_up_to_its_last_good_record),
                cmocka_unit_test(test_unknown_record_sets_snapshot_and_journal_aside),
                cmocka_unit_test(test_journal_without_its_snapshot_is_dropped),
        };

        test_skip_without_io_uring();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
