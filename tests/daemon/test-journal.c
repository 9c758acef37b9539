/* tests/daemon/test-journal.c: a record's journal: append and replay, a torn tail at every byte of the last record, a flipped bit in a middle one, another generation, unknown records and a bad header. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "tests/daemon/journal-build.h"

static const struct jb_proc two[] = { { .pid = 100 }, { .pid = 101 } };

/* Replays j onto a snapshot of two (generation 7): the result, or NULL with *ret_r the error. */
static savestate_msg *replay(const uint8_t *j, size_t len, struct journal_replay *res, int *ret_r)
{
        savestate_msg *s = jb_snapshot_msg(two, 2, 7);
        char err[256] = "";
        int r = journal_replay(s, j, len, res, err, sizeof(err));

        *ret_r = r;
        if (r < 0) {
                assert_true(err[0] != '\0');
                savestate_msg_free(s);
                return NULL;
        }
        return s;
}

/* Four records: the VM's fields, 102 added, 100 exited 3, 101 forgotten. Offsets of each in *at. */
static void four_records(struct journal_buf *b, size_t at[5])
{
        at[0] = JOURNAL_HEADER_SIZE;
        jb_add_vm(b, JB_VM, 200000);
        at[1] = JOURNAL_HEADER_SIZE + b->len;
        jb_add_process(b, (struct jb_proc){ .pid = 102 });
        at[2] = JOURNAL_HEADER_SIZE + b->len;
        jb_add_process(b, (struct jb_proc){ .pid = 100, .exited = true, .code = 3 });
        at[3] = JOURNAL_HEADER_SIZE + b->len;
        jb_add_gone(b, 101);
        at[4] = JOURNAL_HEADER_SIZE + b->len;
}

/* What the first n of four_records() leave. */
static void assert_after(const savestate_msg *s, size_t n)
{
        const Vsockmux__State__Process *p100 = jb_find(s, 100);

        assert_int_equal(s->vm->bridge_next_id, n >= 1 ? 200000 : 100000);
        assert_int_equal(jb_find(s, 102) != NULL, n >= 2);
        assert_non_null(p100);
        assert_int_equal(p100->state, n >= 3 ? VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED
                                             : VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING);
        assert_int_equal(p100->exit_code, n >= 3 ? 3 : 0);
        assert_int_equal(jb_find(s, 101) != NULL, n < 4);
        assert_int_equal(s->vm->n_processes, 2 + (n >= 2) - (n >= 4));
}

static void test_round_trip_applies_every_record_and_still_checks(void **state)
{
        struct journal_buf b = { 0 };
        struct journal_replay res;
        uint8_t *j, *blob;
        size_t at[5], len, blob_len;
        savestate_msg *s;
        int r;

        four_records(&b, at);
        jb_journal(7, &b, &j, &len);
        s = replay(j, len, &res, &r);
        assert_int_equal(r, 0);
        assert_int_equal(res.applied, 4);
        assert_false(res.torn);
        assert_int_equal(res.good_len, len);
        assert_int_equal(res.generation, 7);
        assert_after(s, 4);
        assert_string_equal(s->vm->name, JB_VM);
        assert_int_equal(savestate_encode(s, &blob, &blob_len), 0);
        free(blob);
        savestate_msg_free(s);
        free(j);
        journal_buf_done(&b);
}

/* A pid the guest reused: "old" exited with 3, "new" runs, both pid 100. */
static const struct jb_proc reused[] = {
        { .pid = 100, .exited = true, .code = 3, .exec_id = "old" },
        { .pid = 100, .exec_id = "new" },
};

static savestate_msg *replay_reused(const struct journal_buf *b)
{
        savestate_msg *s = jb_snapshot_msg(reused, 2, 7);
        struct journal_replay res;
        char err[256] = "";
        uint8_t *j;
        size_t len;

        jb_journal(7, b, &j, &len);
        if (journal_replay(s, j, len, &res, err, sizeof(err)) < 0)
                fail_msg("replay: %s", err);
        assert_int_equal(res.applied, 2);
        free(j);
        return s;
}

/* A record names its process by exec id: the newer entry's exit replaces it alone, a third
 * process of the pid is added, and the older one forgotten by its exec id leaves the rest. */
static void test_reused_pid_records_name_each_entry_by_its_exec_id(void **state)
{
        struct journal_buf b = { 0 };
        const Vsockmux__State__Process *p;
        uint8_t *blob;
        size_t blob_len;
        savestate_msg *s;

        jb_add_process(&b, (struct jb_proc){ .pid = 100, .exited = true, .code = 7, .exec_id = "new" });
        jb_add_gone_id(&b, "old", 100);
        s = replay_reused(&b);
        assert_int_equal(s->vm->n_processes, 1);
        assert_null(jb_find_id(s, "old"));
        p = jb_find_id(s, "new");
        assert_non_null(p);
        assert_int_equal(p->exit_code, 7);
        assert_int_equal(savestate_encode(s, &blob, &blob_len), 0);
        free(blob);
        savestate_msg_free(s);
        journal_buf_done(&b);

        /* Not the older entry's exit: that stays 3; and a newer record of the pid goes last. */
        jb_add_process(&b, (struct jb_proc){ .pid = 100, .exited = true, .code = 9, .exec_id = "new" });
        jb_add_process(&b, (struct jb_proc){ .pid = 100, .exec_id = "newest" });
        s = replay_reused(&b);
        assert_int_equal(s->vm->n_processes, 3);
        assert_int_equal(jb_find_id(s, "old")->exit_code, 3);
        assert_int_equal(jb_find_id(s, "new")->exit_code, 9);
        assert_string_equal(s->vm->processes[2]->exec_id, "newest");
        savestate_msg_free(s);
        journal_buf_done(&b);
}

/* An older daemon's record names the pid alone (it never held one twice): the pid's newest entry
 * goes, and one gone by an exec id nobody has changes nothing. */
static void test_gone_pid_alone_forgets_the_newest_entry_of_the_pid(void **state)
{
        struct journal_buf b = { 0 };
        savestate_msg *s;

        jb_add_gone(&b, 100);
        jb_add_gone_id(&b, "nobody", 100);
        s = replay_reused(&b);
        assert_int_equal(s->vm->n_processes, 1);
        assert_non_null(jb_find_id(s, "old"));
        savestate_msg_free(s);
        journal_buf_done(&b);
}

static void test_empty_journal_changes_nothing(void **state)
{
        struct journal_buf b = { 0 };
        struct journal_replay res;
        savestate_msg *s;
        uint8_t *j;
        size_t len;
        int r;

        jb_journal(7, &b, &j, &len);
        s = replay(j, len, &res, &r);
        assert_int_equal(r, 0);
        assert_int_equal(res.applied, 0);
        assert_false(res.torn);
        assert_after(s, 0);
        savestate_msg_free(s);
        free(j);
}

/* A crash mid-append: every cut inside the last record keeps the three before it, and says so. */
static void test_torn_tail_at_every_byte_of_the_last_record_keeps_the_rest(void **state)
{
        struct journal_buf b = { 0 };
        struct journal_replay res;
        size_t at[5], len;
        uint8_t *j;

        four_records(&b, at);
        jb_journal(7, &b, &j, &len);
        for (size_t cut = at[3]; cut < at[4]; cut++) {
                savestate_msg *s;
                int r;

                s = replay(j, cut, &res, &r);
                assert_int_equal(r, 0);
                assert_int_equal(res.applied, 3);
                assert_int_equal(res.torn, cut > at[3]);
                assert_int_equal(res.good_len, at[3]);
                assert_after(s, 3);
                savestate_msg_free(s);
        }
        free(j);
        journal_buf_done(&b);
}

/* Corruption in the middle: the replay stops before the bad record, never past it. */
static void test_bit_flip_in_a_middle_record_ends_the_replay_before_it(void **state)
{
        struct journal_buf b = { 0 };
        struct journal_replay res;
        size_t at[5], len;
        uint8_t *j;

        four_records(&b, at);
        jb_journal(7, &b, &j, &len);
        for (size_t off = at[1]; off < at[2]; off++)
                for (int bit = 0; bit < 8; bit++) {
                        savestate_msg *s;
                        int r;

                        j[off] ^= (uint8_t)(1u << bit);
                        s = replay(j, len, &res, &r);
                        j[off] ^= (uint8_t)(1u << bit);
                        assert_int_equal(r, 0);
                        assert_true(res.torn);
                        assert_int_equal(res.applied, 1);
                        assert_int_equal(res.good_len, at[1]);
                        assert_after(s, 1);
                        savestate_msg_free(s);
                }
        free(j);
        journal_buf_done(&b);
}

/* A crash between a compaction's renames: the new snapshot with the older journal. */
static void test_another_generation_is_ignored_whole(void **state)
{
        struct journal_buf b = { 0 };
        struct journal_replay res;
        uint64_t gens[] = { 6, 8, 0 };
        size_t at[5], len;
        uint8_t *j;

        four_records(&b, at);
        for (size_t i = 0; i < sizeof(gens) / sizeof(gens[0]); i++) {
                int r;

                jb_journal(gens[i], &b, &j, &len);
                assert_null(replay(j, len, &res, &r));
                assert_int_equal(r, -ESTALE);
                free(j);
        }
        journal_buf_done(&b);
}

static void test_unknown_kind_or_schema_version_is_an_error(void **state)
{
        struct {
                int kind;
                uint32_t version;
        } cases[] = { { 99, SAVESTATE_SCHEMA_VERSION }, { 0, SAVESTATE_SCHEMA_VERSION }, { 2, 2 }, { 2, 0 } };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct journal_buf b = { 0 };
                struct journal_replay res;
                uint8_t *j;
                size_t len;
                int r;

                jb_add_process(&b, (struct jb_proc){ .pid = 102 });
                jb_add_unknown(&b, cases[i].kind, cases[i].version);
                jb_journal(7, &b, &j, &len);
                assert_null(replay(j, len, &res, &r));
                assert_int_equal(r, -EPROTONOSUPPORT);
                free(j);
                journal_buf_done(&b);
        }
}

static void test_bad_header_or_record_of_another_vm_is_an_error(void **state)
{
        struct journal_buf b = { 0 };
        struct journal_replay res;
        uint8_t *j;
        size_t len;
        int r;

        jb_add_process(&b, (struct jb_proc){ .pid = 102 });
        jb_journal(7, &b, &j, &len);
        for (size_t off = 0; off < JOURNAL_HEADER_SIZE; off++) {
                j[off] ^= 0x10;
                assert_null(replay(j, len, &res, &r));
                assert_true(r == -EBADMSG || r == -EPROTONOSUPPORT);
                j[off] ^= 0x10;
        }
        for (size_t cut = 0; cut < JOURNAL_HEADER_SIZE; cut++) {
                assert_null(replay(j, cut, &res, &r));
                assert_int_equal(r, -EBADMSG);
        }
        free(j);
        jb_add_vm(&b, "other", 200000);
        jb_journal(7, &b, &j, &len);
        assert_null(replay(j, len, &res, &r));
        assert_int_equal(r, -EBADMSG);
        free(j);
        journal_buf_done(&b);
}

/* Records the writer would never frame: journal_buf_add() refuses them. */
static void test_writer_refuses_what_a_reader_would(void **state)
{
        journal_record r = VSOCKMUX__STATE__JOURNAL_RECORD__INIT;
        struct journal_buf b = { 0 };

        r.schema_version = SAVESTATE_SCHEMA_VERSION;
        r.kind = (Vsockmux__State__JournalKind)42;
        assert_int_equal(journal_buf_add(&b, &r), -EINVAL);
        r.kind = VSOCKMUX__STATE__JOURNAL_KIND__JOURNAL_KIND_PROCESS_GONE;
        r.schema_version = SAVESTATE_SCHEMA_VERSION + 1;
        assert_int_equal(journal_buf_add(&b, &r), -EINVAL);
        assert_int_equal(b.len, 0);
        journal_buf_done(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_applies_every_record_and_still_checks),
                cmocka_unit_test(test_empty_journal_changes_nothing),
                cmocka_unit_test(test_reused_pid_records_name_each_entry_by_its_exec_id),
                cmocka_unit_test(test_gone_pid_alone_forgets_the_newest_entry_of_the_pid),
                cmocka_unit_test(test_torn_tail_at_every_byte_of_the_last_record_keeps_the_rest),
                cmocka_unit_test(test_bit_flip_in_a_middle_record_ends_the_replay_before_it),
                cmocka_unit_test(test_another_generation_is_ignored_whole),
                cmocka_unit_test(test_unknown_kind_or_schema_version_is_an_error),
                cmocka_unit_test(test_bad_header_or_record_of_another_vm_is_an_error),
                cmocka_unit_test(test_writer_refuses_what_a_reader_would),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
