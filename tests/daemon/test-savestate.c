/* tests/daemon/test-savestate.c: the saved-state blob: round trip, and every truncated, flipped or inconsistent blob refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/log-k8s.h"
#include "daemon/savestate.h"
#include "ports/ports.h"

/* Builds a VM with n processes, each with three streams, in caller-provided storage. */
struct fixture {
        savestate_msg s;
        Vsockmux__State__Vm vm;
        Vsockmux__State__Transport t;
        Vsockmux__State__Process *pp[1000];
        Vsockmux__State__Process p[1000];
        Vsockmux__State__Stream *sp[1000][3];
        Vsockmux__State__Stream st[1000][3];
        char *argv[2];
        char *containers[1];
};

static struct fixture *fixture_new(size_t n)
{
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        vsockmux__state__saved_state__init(&f->s);
        vsockmux__state__vm__init(&f->vm);
        vsockmux__state__transport__init(&f->t);
        f->s.schema_version = SAVESTATE_SCHEMA_VERSION;
        f->s.vm = &f->vm;
        f->vm.name = "demo";
        f->vm.transport = &f->t;
        f->t.kind = VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK;
        f->t.uds_path = "/run/vsockmux/demo.vsock";
        f->vm.port_floor = PORTS_FIRST + 3 * (uint32_t)n;
        f->vm.bridge_next_id = 2 * n + 1;
        f->vm.protocol_version = 4;
        f->vm.runtime_os_type = "linux";
        f->containers[0] = "c1";
        f->vm.containers = f->containers;
        f->vm.n_containers = 1;
        f->argv[0] = "sh";
        f->argv[1] = "-c";
        for (size_t i = 0; i < n; i++) {
                Vsockmux__State__Process *p = &f->p[i];

                vsockmux__state__process__init(p);
                p->pid = 100 + (uint32_t)i;
                p->exec_id = "";
                p->container_id = "c1";
                p->argv = f->argv;
                p->n_argv = 2;
                p->state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING;
                p->wait_call_id = 2 * i + 1;
                for (int k = 0; k < 3; k++) {
                        Vsockmux__State__Stream *st = &f->st[i][k];

                        vsockmux__state__stream__init(st);
                        st->kind = (Vsockmux__State__StreamKind)(k + 1);
                        st->port = PORTS_FIRST + 3 * (uint32_t)i + (uint32_t)k;
                        st->rx_guest = 1000000;
                        st->tx_endpoint = 1000000;
                        st->endpoint = "";
                        f->sp[i][k] = st;
                }
                p->streams = f->sp[i];
                p->n_streams = 3;
                f->pp[i] = p;
        }
        f->vm.processes = f->pp;
        f->vm.n_processes = n;
        return f;
}

static void encode_ok(struct fixture *f, uint8_t **buf, size_t *len)
{
        assert_int_equal(savestate_encode(&f->s, buf, len), 0);
}

static void test_round_trip_keeps_every_field(void **state)
{
        struct fixture *f = fixture_new(2);
        _cleanup_(savestate_msg_freep) savestate_msg *s = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        char err[256];

        f->st[1][1].rx_guest = 77;
        f->st[1][1].tx_endpoint = 70;
        encode_ok(f, &buf, &len);
        assert_int_equal(savestate_decode(buf, len, &s, err, sizeof(err)), 0);
        assert_string_equal(s->vm->name, "demo");
        assert_int_equal(s->vm->port_floor, PORTS_FIRST + 6);
        assert_int_equal(s->vm->bridge_next_id, 5);
        assert_int_equal(s->vm->n_processes, 2);
        assert_int_equal(s->vm->processes[1]->pid, 101);
        assert_int_equal(s->vm->processes[1]->wait_call_id, 3);
        assert_int_equal(s->vm->processes[1]->streams[1]->rx_guest, 77);
        assert_int_equal(s->vm->processes[1]->streams[1]->tx_endpoint, 70);
        assert_string_equal(s->vm->processes[0]->argv[1], "-c");
        free(f);
}

static void test_every_truncation_is_refused(void **state)
{
        struct fixture *f = fixture_new(3);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        char err[256];

        encode_ok(f, &buf, &len);
        for (size_t cut = 0; cut < len; cut++) {
                savestate_msg *s = NULL;

                assert_int_equal(savestate_decode(buf, cut, &s, err, sizeof(err)), -EBADMSG);
                assert_null(s);
                assert_true(strlen(err) > 0);
        }
        free(f);
}

static void test_every_flipped_byte_is_refused(void **state)
{
        struct fixture *f = fixture_new(3);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        char err[256];

        encode_ok(f, &buf, &len);
        for (size_t i = 0; i < len; i++) {
                savestate_msg *s = NULL;
                int r;

                if (i >= 20 && i < 24)
                        continue; /* the reserved word is not covered */
                buf[i] ^= 0x40;
                r = savestate_decode(buf, len, &s, err, sizeof(err));
                assert_true(r == -EBADMSG || r == -EPROTONOSUPPORT);
                assert_null(s);
                buf[i] ^= 0x40;
        }
        free(f);
}

static void test_unknown_schema_version_is_refused_by_name(void **state)
{
        struct fixture *f = fixture_new(1);
        _cleanup_free_ uint8_t *buf = NULL;
        savestate_msg *s = NULL;
        size_t len;
        char err[256];

        encode_ok(f, &buf, &len);
        buf[8] = 2;
        assert_int_equal(savestate_decode(buf, len, &s, err, sizeof(err)), -EPROTONOSUPPORT);
        assert_non_null(strstr(err, "version 2 unknown"));
        free(f);
}

/* A blob with a valid checksum can still be hostile: the semantic checks refuse it. */
static void expect_refused(struct fixture *f, const char *needle)
{
        size_t plen = vsockmux__state__saved_state__get_packed_size(&f->s);
        uint8_t *buf = malloc(SAVESTATE_HEADER_SIZE + plen);
        savestate_msg *s = NULL;
        uint32_t crc;
        char err[256] = "";

        assert_non_null(buf);
        vsockmux__state__saved_state__pack(&f->s, buf + SAVESTATE_HEADER_SIZE);
        memcpy(buf, "vsockmux", 8);
        crc = savestate_crc32c(buf + SAVESTATE_HEADER_SIZE, plen);
        for (int i = 0; i < 4; i++) {
                buf[8 + i] = (uint8_t)(SAVESTATE_SCHEMA_VERSION >> (8 * i));
                buf[12 + i] = (uint8_t)(plen >> (8 * i));
                buf[16 + i] = (uint8_t)(crc >> (8 * i));
                buf[20 + i] = 0;
        }
        assert_int_equal(savestate_decode(buf, SAVESTATE_HEADER_SIZE + plen, &s, err, sizeof(err)), -EBADMSG);
        if (!strstr(err, needle))
                fail_msg("error '%s' does not mention '%s'", err, needle);
        free(buf);
        free(f);
}

static void test_wait_id_not_below_next_id_is_refused(void **state)
{
        struct fixture *f = fixture_new(2);

        f->p[1].wait_call_id = f->vm.bridge_next_id;
        expect_refused(f, "not below next id");
}

static void test_port_used_twice_is_refused(void **state)
{
        struct fixture *f = fixture_new(2);

        f->st[1][2].port = f->st[0][0].port;
        expect_refused(f, "used by two streams");
}

/* The bitwise definition, to hold the fast paths to: every length up to 70 at every alignment
 * covers the 8-byte steps and the tail. */
static uint32_t crc32c_reference(const uint8_t *buf, size_t len)
{
        uint32_t crc = 0xFFFFFFFFu;

        for (size_t i = 0; i < len; i++) {
                crc ^= buf[i];
                for (int k = 0; k < 8; k++)
                        crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        return ~crc;
}

static void test_crc32c_is_castagnoli_at_every_length_and_alignment(void **state)
{
        uint8_t buf[80];

        assert_int_equal(savestate_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t)(i * 131u + 7u);
        for (size_t off = 0; off < 8; off++)
                for (size_t len = 0; len <= 70; len++)
                        assert_int_equal(savestate_crc32c(buf + off, len), crc32c_reference(buf + off, len));
}

/* Far apart in the list, so a check of neighbours only would miss it. */
static void test_pid_used_twice_is_refused(void **state)
{
        struct fixture *f = fixture_new(50);

        f->p[47].pid = f->p[3].pid;
        expect_refused(f, "pid 103 twice");
}

/* Each process its exec id, as today's daemon gives them: "e<index>" in ids. */
static void name_processes(struct fixture *f, size_t n, char ids[][8])
{
        for (size_t i = 0; i < n; i++) {
                snprintf(ids[i], 8, "e%zu", i);
                f->p[i].exec_id = ids[i];
        }
}

/* A pid the guest reused names an exited entry beside a running one: both are kept, each named by
 * its exec id. Far apart, as above. */
static void test_pid_of_an_exited_process_may_name_a_newer_one(void **state)
{
        struct fixture *f = fixture_new(50);
        _cleanup_(savestate_msg_freep) savestate_msg *s = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        char ids[50][8], err[256];
        size_t len;

        name_processes(f, 50, ids);
        f->p[3].state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED;
        f->p[3].exit_code = 3;
        f->p[3].wait_call_id = 0;
        f->p[47].pid = f->p[3].pid;
        encode_ok(f, &buf, &len);
        assert_int_equal(savestate_decode(buf, len, &s, err, sizeof(err)), 0);
        assert_int_equal(s->vm->processes[3]->pid, s->vm->processes[47]->pid);
        assert_string_equal(s->vm->processes[3]->exec_id, "e3");
        assert_string_equal(s->vm->processes[47]->exec_id, "e47");
        free(f);
}

/* An older daemon's process has no exec id: nothing but its pid names it, which must stay unique. */
static void test_pid_of_a_process_without_an_exec_id_is_not_reused(void **state)
{
        struct fixture *f = fixture_new(50);
        char ids[50][8];

        name_processes(f, 50, ids);
        f->p[3].exec_id = "";
        f->p[3].state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED;
        f->p[3].wait_call_id = 0;
        f->p[47].pid = f->p[3].pid;
        expect_refused(f, "pid 103 twice");
}

static void test_exec_id_used_twice_is_refused(void **state)
{
        struct fixture *f = fixture_new(50);
        char ids[50][8];

        name_processes(f, 50, ids);
        f->p[47].exec_id = ids[3];
        expect_refused(f, "exec id e3 twice");
}

static void test_port_at_or_above_floor_is_refused(void **state)
{
        struct fixture *f = fixture_new(2);

        f->st[1][2].port = f->vm.port_floor;
        expect_refused(f, "outside");
}

static void test_bridge_port_is_refused_as_stream_port(void **state)
{
        struct fixture *f = fixture_new(1);

        f->st[0][0].port = PORTS_BRIDGE;
        expect_refused(f, "outside");
}

static void test_running_process_without_wait_is_refused(void **state)
{
        struct fixture *f = fixture_new(1);

        f->p[0].wait_call_id = 0;
        expect_refused(f, "without an outstanding wait");
}

static void test_delivered_more_than_received_is_refused(void **state)
{
        struct fixture *f = fixture_new(1);

        f->st[0][1].tx_endpoint = f->st[0][1].rx_guest + 1;
        expect_refused(f, "delivered more");
}

static void test_relative_hvsock_path_is_refused(void **state)
{
        struct fixture *f = fixture_new(1);

        f->t.uds_path = "../escape";
        expect_refused(f, "not absolute");
}

/* A log's cap and file count as the exec allows them, on a k8s-file log, round-trip. */
static void test_log_cap_and_journald_round_trip(void **state)
{
        struct fixture *f = fixture_new(2);
        _cleanup_(savestate_msg_freep) savestate_msg *s = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        char err[256];

        f->p[0].log_path = "/var/log/c.log";
        f->p[0].log_size_max = LOG_K8S_MAX_SIZE;
        f->p[0].log_max_files = LOG_K8S_MAX_FILES;
        f->p[1].log_journald = true;
        encode_ok(f, &buf, &len);
        assert_int_equal(savestate_decode(buf, len, &s, err, sizeof(err)), 0);
        assert_int_equal(s->vm->processes[0]->log_size_max, LOG_K8S_MAX_SIZE);
        assert_int_equal(s->vm->processes[0]->log_max_files, LOG_K8S_MAX_FILES);
        assert_false(s->vm->processes[0]->log_journald);
        assert_true(s->vm->processes[1]->log_journald);
        free(f);
}

/* What no exec could ask for, and a live upgrade's fd index, are refused by name. */
static void test_log_cap_out_of_bounds_is_refused(void **state)
{
        struct fixture *f = fixture_new(1);

        f->p[0].log_path = "/var/log/c.log";
        f->p[0].log_max_files = LOG_K8S_MAX_FILES + 1;
        expect_refused(f, "process 100: log cap 0 bytes or 1001 files over");
        f = fixture_new(1);
        f->p[0].log_path = "/var/log/c.log";
        f->p[0].log_size_max = LOG_K8S_MAX_SIZE + 1;
        expect_refused(f, "log cap 1099511627777 bytes");
}

static void test_log_cap_without_a_k8s_file_log_is_refused(void **state)
{
        struct fixture *f = fixture_new(1);

        f->p[0].log_size_max = 2048;
        expect_refused(f, "a log cap without a k8s-file log");
        f = fixture_new(1);
        f->p[0].log_max_files = 3;
        expect_refused(f, "a log cap without a k8s-file log");
}

static void test_journald_with_a_k8s_file_log_is_refused(void **state)
{
        struct fixture *f = fixture_new(1);

        f->p[0].log_path = "/var/log/c.log";
        f->p[0].log_journald = true;
        expect_refused(f, "both to journald and to a k8s-file log");
}

static void test_live_log_fd_in_a_save_is_refused(void **state)
{
        struct fixture *f = fixture_new(1);

        f->p[0].log_path = "/var/log/c.log";
        f->p[0].log_fd_set = true;
        expect_refused(f, "a live upgrade's log fd");
}

static void test_thousand_processes_stay_under_a_kib_each(void **state)
{
        struct fixture *f = fixture_new(1000);
        _cleanup_free_ uint8_t *buf = NULL;
        savestate_msg *s = NULL;
        size_t len;
        char err[256];

        encode_ok(f, &buf, &len);
        assert_true(len < 1000 * 1024);
        print_message("1000 processes: %zu bytes, %zu per process\n", len, len / 1000);
        assert_int_equal(savestate_decode(buf, len, &s, err, sizeof(err)), 0);
        assert_int_equal(s->vm->n_processes, 1000);
        savestate_msg_free(s);
        free(f);
}

static void test_file_write_is_atomic_and_reads_back(void **state)
{
        struct fixture *f = fixture_new(2);
        _cleanup_free_ uint8_t *buf = NULL, *back = NULL;
        char dir[] = "/tmp/vsockmux-savestate-XXXXXX", path[256], tmp[300];
        size_t len, blen;
        struct stat st;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/vm.state", dir);
        encode_ok(f, &buf, &len);
        assert_int_equal(savestate_write_file(path, buf, len), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
        assert_int_equal(access(tmp, F_OK), -1);
        assert_int_equal(savestate_read_file(path, &back, &blen), 0);
        assert_int_equal(blen, len);
        assert_memory_equal(back, buf, len);
        /* A symlink in place of the file is not followed. */
        unlink(path);
        assert_int_equal(symlink("/etc/hostname", path), 0);
        free(back);
        back = NULL;
        assert_int_equal(savestate_read_file(path, &back, &blen), -ELOOP);
        unlink(path);
        rmdir(dir);
        free(f);
}

/* `test-savestate --write-corpus DIR` writes the fuzz seed corpus. */
static int write_corpus(const char *dir)
{
        struct fixture *f = fixture_new(3);
        uint8_t *buf;
        size_t len;
        char path[512];
        FILE *out;

        if (savestate_encode(&f->s, &buf, &len) < 0)
                return 1;
        snprintf(path, sizeof(path), "%s/valid-3-processes", dir);
        out = fopen(path, "wb");
        if (!out)
                return 1;
        fwrite(buf, 1, len, out);
        fclose(out);
        snprintf(path, sizeof(path), "%s/truncated-header", dir);
        out = fopen(path, "wb");
        if (!out)
                return 1;
        fwrite(buf, 1, 10, out);
        fclose(out);
        free(buf);
        free(f);
        return 0;
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_keeps_every_field),
                cmocka_unit_test(test_every_truncation_is_refused),
                cmocka_unit_test(test_every_flipped_byte_is_refused),
                cmocka_unit_test(test_unknown_schema_version_is_refused_by_name),
                cmocka_unit_test(test_wait_id_not_below_next_id_is_refused),
                cmocka_unit_test(test_port_used_twice_is_refused),
                cmocka_unit_test(test_pid_used_twice_is_refused),
                cmocka_unit_test(test_pid_of_an_exited_process_may_name_a_newer_one),
                cmocka_unit_test(test_pid_of_a_process_without_an_exec_id_is_not_reused),
                cmocka_unit_test(test_exec_id_used_twice_is_refused),
                cmocka_unit_test(test_crc32c_is_castagnoli_at_every_length_and_alignment),
                cmocka_unit_test(test_port_at_or_above_floor_is_refused),
                cmocka_unit_test(test_bridge_port_is_refused_as_stream_port),
                cmocka_unit_test(test_running_process_without_wait_is_refused),
                cmocka_unit_test(test_delivered_more_than_received_is_refused),
                cmocka_unit_test(test_relative_hvsock_path_is_refused),
                cmocka_unit_test(test_log_cap_and_journald_round_trip),
                cmocka_unit_test(test_log_cap_out_of_bounds_is_refused),
                cmocka_unit_test(test_log_cap_without_a_k8s_file_log_is_refused),
                cmocka_unit_test(test_journald_with_a_k8s_file_log_is_refused),
                cmocka_unit_test(test_live_log_fd_in_a_save_is_refused),
                cmocka_unit_test(test_thousand_processes_stay_under_a_kib_each),
                cmocka_unit_test(test_file_write_is_atomic_and_reads_back),
        };

        if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
                return write_corpus(argv[2]);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
