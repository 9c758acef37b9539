/* tests/vm/test-helper-proto.c: the vsockmuxd <-> vsockmux-vmhelper frames and a Migrate's key=value params, without libvirt. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "vm/helper-proto.h"
#include "vm/params.h"

static void build(const vmhelper_msg *m, uint8_t **ret, size_t *ret_len)
{
        assert_int_equal(vmhelper_frame_build(m, ret, ret_len), 0);
}

static void test_frame_round_trips_and_waits_for_the_whole_frame(void **state)
{
        vmhelper_msg m = VSOCKMUX__VMHELPER__MESSAGE__INIT, *got = NULL;
        Vsockmux__Vmhelper__Saved sv = VSOCKMUX__VMHELPER__SAVED__INIT;
        uint8_t blob[] = { 1, 2, 3, 4 };
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len, used = 0;

        sv.ok = true;
        sv.state.data = blob;
        sv.state.len = sizeof(blob);
        sv.processes = 9;
        m.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_SAVED;
        m.saved = &sv;
        build(&m, &buf, &len);
        for (size_t cut = 0; cut < len; cut++)
                assert_int_equal(vmhelper_frame_parse(buf, cut, &got, &used), 0);
        assert_int_equal(vmhelper_frame_parse(buf, len, &got, &used), 1);
        assert_int_equal(used, len);
        assert_int_equal(got->body_case, VSOCKMUX__VMHELPER__MESSAGE__BODY_SAVED);
        assert_int_equal(got->saved->processes, 9);
        assert_memory_equal(got->saved->state.data, blob, sizeof(blob));
        vmhelper_msg_free(got);
}

static void test_frame_length_zero_or_over_the_limit_is_emsgsize(void **state)
{
        uint8_t zero[8] = { 0 }, big[4] = { 0x01, 0x00, 0x00, 0x01 }; /* 16 MiB + 1 */
        vmhelper_msg *got = NULL;
        size_t used;

        assert_int_equal(vmhelper_frame_parse(zero, sizeof(zero), &got, &used), -EMSGSIZE);
        assert_int_equal(vmhelper_frame_parse(big, sizeof(big), &got, &used), -EMSGSIZE);
        assert_null(got);
}

static void test_frame_without_body_or_with_unknown_phase_is_ebadmsg(void **state)
{
        vmhelper_msg m = VSOCKMUX__VMHELPER__MESSAGE__INIT, *got = NULL;
        Vsockmux__Vmhelper__Event e = VSOCKMUX__VMHELPER__EVENT__INIT;
        uint8_t empty_body[] = { 2, 0, 0, 0, 0x08, 0x01 }; /* an unknown field 1 varint only */
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len, used;

        assert_int_equal(vmhelper_frame_parse(empty_body, sizeof(empty_body), &got, &used), -EBADMSG);
        e.phase = 99;
        m.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_EVENT;
        m.event = &e;
        build(&m, &buf, &len);
        assert_int_equal(vmhelper_frame_parse(buf, len, &got, &used), -EBADMSG);
        assert_null(got);
}

static void test_frame_with_a_string_over_its_limit_is_ebadmsg(void **state)
{
        vmhelper_msg m = VSOCKMUX__VMHELPER__MESSAGE__INIT, *got = NULL;
        Vsockmux__Vmhelper__Outcome o = VSOCKMUX__VMHELPER__OUTCOME__INIT;
        char text[VMHELPER_MESSAGE_MAX + 2];
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len, used;

        memset(text, 'x', sizeof(text) - 1);
        text[sizeof(text) - 1] = '\0';
        o.message = text;
        m.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_OUTCOME;
        m.outcome = &o;
        build(&m, &buf, &len);
        assert_int_equal(vmhelper_frame_parse(buf, len, &got, &used), -EBADMSG);
        text[VMHELPER_MESSAGE_MAX] = '\0';
        free(buf);
        build(&m, &buf, &len);
        assert_int_equal(vmhelper_frame_parse(buf, len, &got, &used), 1);
        vmhelper_msg_free(got);
}

/* The daemon and the helper are one build: a field it does not know, however deep, is refused. */
static void test_frame_with_an_unknown_field_at_any_depth_is_ebadmsg(void **state)
{
        uint8_t abort_ok[] = { 2, 0, 0, 0, 0x22, 0x00 };                /* abort {} */
        uint8_t abort_extra[] = { 4, 0, 0, 0, 0x22, 0x02, 0x78, 0x01 }; /* abort { 15: 1 } */
        /* migrate { params { key: "a" 15: 1 (written in two bytes, as the fuzzer found) } } */
        uint8_t param_extra[] = { 11, 0, 0, 0, 0x0a, 0x09, 0x32, 0x07, 0x0a, 0x01, 'a', 0x78, 0x81, 0x00 };
        vmhelper_msg *got = NULL;
        size_t used;

        param_extra[0] = sizeof(param_extra) - 4;
        param_extra[5] = sizeof(param_extra) - 6;
        param_extra[7] = sizeof(param_extra) - 8;
        assert_int_equal(vmhelper_frame_parse(abort_ok, sizeof(abort_ok), &got, &used), 1);
        got = vmhelper_msg_free(got);
        assert_int_equal(vmhelper_frame_parse(abort_extra, sizeof(abort_extra), &got, &used), -EBADMSG);
        assert_int_equal(vmhelper_frame_parse(param_extra, sizeof(param_extra), &got, &used), -EBADMSG);
        assert_null(got);
}

/* A Migrate's io passes on to the destination's Restore as it is: an entry naming its process by
 * exec id keeps it, and an exec id over the string limit is refused as a path is. */
static void test_migrate_io_keeps_its_exec_id_within_the_limit(void **state)
{
        vmhelper_msg m = VSOCKMUX__VMHELPER__MESSAGE__INIT, *got = NULL;
        Vsockmux__Vmhelper__Migrate q = VSOCKMUX__VMHELPER__MIGRATE__INIT;
        Vsockmux__V1__RestoreIo io = VSOCKMUX__V1__RESTORE_IO__INIT, *ios[] = { &io };
        char long_id[VMHELPER_STRING_MAX + 2];
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len, used;

        io.exec_id = (char *)"4242";
        io.stdout_path = (char *)"/tmp/out-b";
        q.vm = (char *)"demo";
        q.io = ios;
        q.n_io = 1;
        m.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_MIGRATE;
        m.migrate = &q;
        build(&m, &buf, &len);
        assert_int_equal(vmhelper_frame_parse(buf, len, &got, &used), 1);
        assert_int_equal(got->migrate->n_io, 1);
        assert_string_equal(got->migrate->io[0]->exec_id, "4242");
        assert_int_equal(got->migrate->io[0]->pid, 0);
        assert_string_equal(got->migrate->io[0]->stdout_path, "/tmp/out-b");
        got = vmhelper_msg_free(got);

        memset(long_id, 'x', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        io.exec_id = long_id;
        free(buf);
        build(&m, &buf, &len);
        assert_int_equal(vmhelper_frame_parse(buf, len, &got, &used), -EBADMSG);
        assert_null(got);
}

static int parse(const char *const *pairs, size_t n, struct vm_params *p, char *err, size_t errlen)
{
        Vsockmux__V1__KeyValue kv[16], *ptrs[16];

        assert_true(n <= 16);
        for (size_t i = 0; i < n; i++) {
                vsockmux__v1__key_value__init(&kv[i]);
                kv[i].key = (char *)pairs[2 * i];
                kv[i].value = (char *)pairs[2 * i + 1];
                ptrs[i] = &kv[i];
        }
        return vm_params_parse(ptrs, n, p, err, errlen);
}

static void test_params_fill_the_options_they_name(void **state)
{
        const char *const kv[] = {
                "bandwidth_mib_per_s",           "-1",  "compression", "mt",     "multithread.level", "0",
                "auto_converge.initial_percent", "300", "mode",        "direct", "migrate_uri",       "tcp://h2:49152",
                "persist_destination",           "true"
        };
        struct vm_params p;
        char err[VM_ERR_MAX] = "";

        assert_int_equal(parse(kv, ELEMENTSOF(kv) / 2, &p, err, sizeof(err)), 0);
        /* Numbers as given: the converter names the range, nothing is clamped here. */
        assert_int_equal(p.o.bandwidth_mib_per_s, -1);
        assert_int_equal(p.o.compression_case, VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD);
        assert_true(p.o.multithread->level_set);
        assert_int_equal(p.o.multithread->level, 0);
        assert_int_equal(p.o.auto_converge->initial_percent, 300);
        assert_int_equal(p.mode, VM_MIGRATION_DIRECT);
        assert_string_equal(p.migrate_uri, "tcp://h2:49152");
        assert_true(p.o.persist_destination);
}

static void test_params_refusal_names_the_key(void **state)
{
        static const struct {
                const char *kv[4];
                size_t n;
                const char *says;
        } cases[] = {
                { { "bandwidth", "1" }, 1, "unknown key 'bandwidth'" },
                { { "parallel_connections", "-1" }, 1, "parallel_connections wants a number of connections" },
                { { "transport", "udp" }, 1, "transport wants tcp, unix or tls" },
                { { "mode", "p2p", "mode", "direct" }, 2, "mode given twice" },
                { { "xbzrle.cache_size_bytes", "4096" }, 1, "needs compression xbzrle" },
                { { "multithread.compress_threads", "4", "compression", "xbzrle" }, 2, "compression mt" },
        };
        struct vm_params p;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char err[VM_ERR_MAX] = "";

                assert_int_equal(parse(cases[i].kv, cases[i].n, &p, err, sizeof(err)), -EINVAL);
                if (!strstr(err, cases[i].says))
                        fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].says);
        }
}

static void test_default_migrate_uri_is_the_destination_host(void **state)
{
        char buf[64];

        assert_int_equal(vm_params_default_migrate_uri("qemu+ssh://root@h2:22/system", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "tcp://h2");
        assert_int_equal(vm_params_default_migrate_uri("qemu:///session", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "tcp://127.0.0.1");
        assert_int_equal(vm_params_default_migrate_uri("nonsense", buf, sizeof(buf)), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_frame_round_trips_and_waits_for_the_whole_frame),
                cmocka_unit_test(test_frame_length_zero_or_over_the_limit_is_emsgsize),
                cmocka_unit_test(test_frame_without_body_or_with_unknown_phase_is_ebadmsg),
                cmocka_unit_test(test_frame_with_a_string_over_its_limit_is_ebadmsg),
                cmocka_unit_test(test_frame_with_an_unknown_field_at_any_depth_is_ebadmsg),
                cmocka_unit_test(test_migrate_io_keeps_its_exec_id_within_the_limit),
                cmocka_unit_test(test_params_fill_the_options_they_name),
                cmocka_unit_test(test_params_refusal_names_the_key),
                cmocka_unit_test(test_default_migrate_uri_is_the_destination_host),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
