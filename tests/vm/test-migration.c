/* tests/vm/test-migration.c: real live migrations of a TCG guest between two session libvirtd
 * started by with-libvirtd.sh (which exports VM_TEST_*); owns the test domains it creates. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvirt/virterror.h>

#include "util/macro.h"
#include "vm/migration.h"

/* Generous: a loaded 2-core box under ASan runs TCG guests slowly. Never a speed assertion. */
#define WAIT_EVENT_MS 120000
#define SLOW_BANDWIDTH_MIB 1u /* with a guest dirtying 8 MiB this never converges */
#define FAST_BANDWIDTH_MIB 100000u

struct fixture {
        const char *src_uri;
        const char *dst_uri;
        const char *kernel;
        const char *scratch;
        virConnectPtr src;
        virConnectPtr dst;
};

static struct fixture fx;

/* What a migration reported, in order of arrival. */
struct seen {
        unsigned count[_VM_MIGRATION_EVENT_MAX];
        int order[_VM_MIGRATION_EVENT_MAX]; /* arrival index of the first of each kind, -1 if none */
        unsigned n;
        struct vm_migration_event last_progress;
        struct vm_migration_event terminal;
};

static void seen_init(struct seen *s)
{
        memset(s, 0, sizeof(*s));
        for (int k = 0; k < _VM_MIGRATION_EVENT_MAX; k++)
                s->order[k] = -1;
}

static bool is_terminal(enum vm_migration_event_kind k)
{
        return k == VM_MIGRATION_EVENT_COMPLETED || k == VM_MIGRATION_EVENT_FAILED || k == VM_MIGRATION_EVENT_ABORTED;
}

static void seen_add(struct seen *s, const struct vm_migration_event *e)
{
        assert_true(e->kind >= 0 && e->kind < _VM_MIGRATION_EVENT_MAX);
        if (s->order[e->kind] < 0)
                s->order[e->kind] = (int)s->n;
        s->count[e->kind]++;
        s->n++;
        if (e->kind == VM_MIGRATION_EVENT_PROGRESS)
                s->last_progress = *e;
        if (is_terminal(e->kind))
                s->terminal = *e;
}

/* Waits for the next event of kind k (recording all on the way); fails on a terminal one first. */
static void wait_for(struct vm_migration *m, struct seen *s, enum vm_migration_event_kind k)
{
        struct vm_migration_event e;

        for (;;) {
                assert_int_equal(vm_migration_wait_event(m, WAIT_EVENT_MS, &e), 0);
                seen_add(s, &e);
                if (e.kind == k)
                        return;
                if (is_terminal(e.kind))
                        fail_msg("waiting for %s, got %s: %s", vm_migration_event_kind_to_string(k),
                                 vm_migration_event_kind_to_string(e.kind), e.message);
        }
}

/* Waits for a progress sample that shows data moving (the first ones can precede QEMU's totals). */
static void wait_for_data(struct vm_migration *m, struct seen *s)
{
        do
                wait_for(m, s, VM_MIGRATION_EVENT_PROGRESS);
        while (s->last_progress.stats.data_total == 0 || s->last_progress.stats.data_processed == 0);
}

/* Drains to the terminal event, then checks that nothing follows it. */
static void wait_terminal(struct vm_migration *m, struct seen *s)
{
        struct vm_migration_event e;

        for (;;) {
                assert_int_equal(vm_migration_wait_event(m, WAIT_EVENT_MS, &e), 0);
                seen_add(s, &e);
                if (is_terminal(e.kind))
                        break;
        }
        assert_int_equal(vm_migration_next_event(m, &e), -ENODATA);
        assert_int_equal(vm_migration_wait_event(m, 0, &e), -ENODATA);
}

static double now_s(void)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void guest_destroy(virConnectPtr c, const char *name)
{
        virDomainPtr d = virDomainLookupByName(c, name);

        if (!d)
                return;
        (void)virDomainDestroy(d);
        (void)virDomainUndefine(d);
        virDomainFree(d);
}

/* A transient 64 MiB guest on the source that halts (dirty_mib 0) or keeps dirtying memory. */
static void guest_start(const char *name, unsigned dirty_mib)
{
        char xml[2048];
        virDomainPtr d;

        guest_destroy(fx.src, name);
        guest_destroy(fx.dst, name);
        snprintf(xml, sizeof(xml),
                 "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                 "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>%s</kernel><cmdline>dirty=%u</cmdline></os>"
                 "<on_poweroff>destroy</on_poweroff>"
                 "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
                 "<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>",
                 name, fx.kernel, dirty_mib);
        d = virDomainCreateXML(fx.src, xml, 0);
        if (!d)
                fail_msg("cannot start guest %s: %s", name, virGetLastErrorMessage());
        virDomainFree(d);
}

static int domain_state(virConnectPtr c, const char *name)
{
        virDomainPtr d = virDomainLookupByName(c, name);
        int state = -1, reason;

        if (!d)
                return -1;
        if (virDomainGetState(d, &state, &reason, 0) < 0)
                state = -1;
        virDomainFree(d);
        return state;
}

static void config_init(struct vm_migration_config *c, const char *name, const char *migrate_uri)
{
        *c = (struct vm_migration_config){
                .src_uri = fx.src_uri,
                .domain = name,
                .dest_uri = fx.dst_uri,
                .migrate_uri = migrate_uri,
                .mode = VM_MIGRATION_P2P,
        };
}

static void start_ok(const struct vm_migration_config *c, const struct vm_migrate_params *p, struct vm_migration **ret)
{
        char err[VM_ERR_MAX] = "";
        int r = vm_migration_start(c, p, ret, err, sizeof(err));

        if (r < 0)
                fail_msg("vm_migration_start(%s): %d %s", c->domain, r, err);
}

/* Runs a migration that must complete and checks what every completed migration shows. */
static void migrate_to_completion(const char *name, const struct vm_migration_config *c,
                                  const struct vm_migrate_params *p, struct seen *s)
{
        _cleanup_(vm_migration_freep) struct vm_migration *m = NULL;
        double t0 = now_s();

        seen_init(s);
        start_ok(c, p, &m);
        /* The fd alone tells the caller's loop when to drain, and goes quiet once drained. */
        struct pollfd pfd = { .fd = vm_migration_event_fd(m), .events = POLLIN };
        assert_int_equal(poll(&pfd, 1, WAIT_EVENT_MS), 1);
        wait_terminal(m, s);
        assert_int_equal(poll(&pfd, 1, 0), 0);
        if (s->terminal.kind != VM_MIGRATION_EVENT_COMPLETED)
                fail_msg("%s: %s: %s", name, vm_migration_event_kind_to_string(s->terminal.kind), s->terminal.message);
        /* The switchover pause is announced before completion: the moment to save relay state. */
        assert_true(s->order[VM_MIGRATION_EVENT_SUSPENDED] >= 0);
        assert_true(s->order[VM_MIGRATION_EVENT_SUSPENDED] < s->order[VM_MIGRATION_EVENT_COMPLETED]);
        assert_true(s->terminal.has_stats);
        assert_true(s->terminal.stats.data_processed > 0);
        assert_true(s->terminal.stats.data_total >= 64ull << 20);
        assert_int_equal(vm_migration_finalize(m), 0);
        print_message(
                "%s: %.2f s wall, %llu ms elapsed, %llu ms downtime, %llu MiB sent, %u progress, %u iteration events\n",
                name, now_s() - t0, (unsigned long long)s->terminal.stats.time_elapsed_ms,
                (unsigned long long)s->terminal.stats.downtime_ms,
                (unsigned long long)(s->terminal.stats.data_processed >> 20), s->count[VM_MIGRATION_EVENT_PROGRESS],
                s->count[VM_MIGRATION_EVENT_ITERATION]);

        /* P2P live migration of a transient guest: it lives on the destination only. */
        assert_int_equal(domain_state(fx.dst, name), VIR_DOMAIN_RUNNING);
        assert_int_equal(domain_state(fx.src, name), -1);
}

static void test_tcp_default_migration_completes_with_final_stats(void **state)
{
        struct vm_migration_config c;
        struct vm_migrate_params p;
        struct seen s;

        guest_start("vmt-default", 4);
        config_init(&c, "vmt-default", "tcp://127.0.0.1");
        vm_migrate_params_init(&p);
        migrate_to_completion("vmt-default", &c, &p, &s);
        assert_int_equal(s.count[VM_MIGRATION_EVENT_FAILED] + s.count[VM_MIGRATION_EVENT_ABORTED], 0);
        guest_destroy(fx.dst, "vmt-default");
}

static void test_unix_socket_migration_with_xbzrle(void **state)
{
        Vsockmux__Migration__Options o = VSOCKMUX__MIGRATION__OPTIONS__INIT;
        Vsockmux__Migration__Xbzrle x = VSOCKMUX__MIGRATION__XBZRLE__INIT;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        char uri[512], err[VM_ERR_MAX];
        struct seen s;

        o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_UNIX;
        x.cache_size_bytes = 8u << 20;
        o.compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_XBZRLE;
        o.xbzrle = &x;
        o.bandwidth_mib_per_s = 1000;
        assert_int_equal(vm_migrate_options_from_proto(&o, &p, err, sizeof(err)), 0);

        snprintf(uri, sizeof(uri), "unix://%s/vmt-unix.sock", fx.scratch);
        guest_start("vmt-unix", 4);
        config_init(&c, "vmt-unix", uri);
        migrate_to_completion("vmt-unix", &c, &p, &s);
        guest_destroy(fx.dst, "vmt-unix");
}

static void test_direct_mode_with_parallel_connections(void **state)
{
        Vsockmux__Migration__Options o = VSOCKMUX__MIGRATION__OPTIONS__INIT;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        char err[VM_ERR_MAX];
        struct seen s;

        o.parallel_connections = 2;
        assert_int_equal(vm_migrate_options_from_proto(&o, &p, err, sizeof(err)), 0);
        guest_start("vmt-parallel", 4);
        config_init(&c, "vmt-parallel", "tcp://127.0.0.1");
        c.mode = VM_MIGRATION_DIRECT;
        migrate_to_completion("vmt-parallel", &c, &p, &s);
        guest_destroy(fx.dst, "vmt-parallel");
}

static void test_multithread_compression_auto_converge_paused_persistent(void **state)
{
        Vsockmux__Migration__Options o = VSOCKMUX__MIGRATION__OPTIONS__INIT;
        Vsockmux__Migration__Multithread mt = VSOCKMUX__MIGRATION__MULTITHREAD__INIT;
        Vsockmux__Migration__AutoConverge ac = VSOCKMUX__MIGRATION__AUTO_CONVERGE__INIT;
        _cleanup_(vm_migration_freep) struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        char err[VM_ERR_MAX];
        struct seen s;
        virDomainPtr d;

        mt.level_set = true;
        mt.level = 1;
        mt.compress_threads = 2;
        mt.decompress_threads = 2;
        o.compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD;
        o.multithread = &mt;
        ac.initial_percent = 20;
        ac.increment_percent = 10;
        o.auto_converge = &ac;
        o.persist_destination = true;
        o.start_paused = true;
        assert_int_equal(vm_migrate_options_from_proto(&o, &p, err, sizeof(err)), 0);

        guest_start("vmt-paused", 2);
        config_init(&c, "vmt-paused", "tcp://127.0.0.1");
        seen_init(&s);
        start_ok(&c, &p, &m);
        assert_int_equal(vm_migration_finalize(m), -EBUSY);
        wait_terminal(m, &s);
        if (s.terminal.kind != VM_MIGRATION_EVENT_COMPLETED)
                fail_msg("%s: %s", vm_migration_event_kind_to_string(s.terminal.kind), s.terminal.message);

        /* Started paused and defined persistently; finalize resumes it. */
        assert_int_equal(domain_state(fx.dst, "vmt-paused"), VIR_DOMAIN_PAUSED);
        d = virDomainLookupByName(fx.dst, "vmt-paused");
        assert_non_null(d);
        assert_int_equal(virDomainIsPersistent(d), 1);
        virDomainFree(d);
        assert_int_equal(vm_migration_finalize(m), 0);
        assert_int_equal(domain_state(fx.dst, "vmt-paused"), VIR_DOMAIN_RUNNING);
        guest_destroy(fx.dst, "vmt-paused");
}

/* A guest dirtying 8 MiB at 1 MiB/s never converges; raising the bandwidth lets it finish. */
static void test_bandwidth_raised_mid_flight_lets_migration_finish(void **state)
{
        _cleanup_(vm_migration_freep) struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        struct seen s;
        virDomainPtr d;
        unsigned long speed = 0;

        guest_start("vmt-raise", 8);
        config_init(&c, "vmt-raise", "tcp://127.0.0.1");
        vm_migrate_params_init(&p);
        p.bandwidth_mib = SLOW_BANDWIDTH_MIB;
        seen_init(&s);
        start_ok(&c, &p, &m);

        /* The job runs, data moves, and nothing has ended. */
        wait_for_data(m, &s);
        wait_for(m, &s, VM_MIGRATION_EVENT_PROGRESS);
        assert_true(s.last_progress.has_stats);
        assert_true(s.last_progress.stats.data_total >= 64ull << 20);
        assert_true(s.last_progress.stats.data_remaining > 0);
        assert_true(s.last_progress.stats.time_elapsed_ms > 0);
        d = virDomainLookupByName(fx.src, "vmt-raise");
        assert_non_null(d);
        assert_int_equal(virDomainMigrateGetMaxSpeed(d, &speed, 0), 0);
        assert_int_equal(speed, SLOW_BANDWIDTH_MIB);
        virDomainFree(d);

        assert_int_equal(vm_migration_set_bandwidth(m, FAST_BANDWIDTH_MIB), 0);
        wait_terminal(m, &s);
        if (s.terminal.kind != VM_MIGRATION_EVENT_COMPLETED)
                fail_msg("%s: %s", vm_migration_event_kind_to_string(s.terminal.kind), s.terminal.message);
        assert_true(s.order[VM_MIGRATION_EVENT_SUSPENDED] >= 0);
        assert_int_equal(domain_state(fx.dst, "vmt-raise"), VIR_DOMAIN_RUNNING);
        assert_int_equal(vm_migration_set_bandwidth(m, VM_BANDWIDTH_MIB_MAX + 1ull), -ERANGE);
        assert_non_null(strstr(vm_migration_strerror(m), "bandwidth_mib_per_s"));
        guest_destroy(fx.dst, "vmt-raise");
}

static void test_abort_leaves_source_running_and_downtime_is_applied(void **state)
{
        _cleanup_(vm_migration_freep) struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        struct seen s;
        virDomainPtr d;
        unsigned long long downtime = 0;

        guest_start("vmt-abort", 8);
        config_init(&c, "vmt-abort", "tcp://127.0.0.1");
        vm_migrate_params_init(&p);
        p.bandwidth_mib = SLOW_BANDWIDTH_MIB;
        p.max_downtime_ms = 700;
        seen_init(&s);
        start_ok(&c, &p, &m);
        wait_for(m, &s, VM_MIGRATION_EVENT_PROGRESS);

        d = virDomainLookupByName(fx.src, "vmt-abort");
        assert_non_null(d);
        assert_int_equal(virDomainMigrateGetMaxDowntime(d, &downtime, 0), 0);
        assert_int_equal(downtime, 700);
        assert_int_equal(vm_migration_set_downtime(m, 900), 0);
        assert_int_equal(virDomainMigrateGetMaxDowntime(d, &downtime, 0), 0);
        assert_int_equal(downtime, 900);
        assert_int_equal(vm_migration_set_downtime(m, 0), -ERANGE);
        virDomainFree(d);

        assert_int_equal(vm_migration_abort(m), 0);
        wait_terminal(m, &s);
        assert_int_equal(s.terminal.kind, VM_MIGRATION_EVENT_ABORTED);
        assert_int_equal(s.count[VM_MIGRATION_EVENT_COMPLETED], 0);
        assert_int_equal(vm_migration_finalize(m), -ECANCELED);
        assert_int_equal(domain_state(fx.src, "vmt-abort"), VIR_DOMAIN_RUNNING);
        assert_int_equal(domain_state(fx.dst, "vmt-abort"), -1);
        guest_destroy(fx.src, "vmt-abort");
}

/* A guest that outruns the link gets throttled by auto-converge, starting at the initial
 * percentage we asked for, and the progress samples say so. */
static void test_auto_converge_throttle_shows_in_progress(void **state)
{
        Vsockmux__Migration__Options o = VSOCKMUX__MIGRATION__OPTIONS__INIT;
        Vsockmux__Migration__AutoConverge ac = VSOCKMUX__MIGRATION__AUTO_CONVERGE__INIT;
        _cleanup_(vm_migration_freep) struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        char err[VM_ERR_MAX];
        struct seen s;

        ac.initial_percent = 35;
        ac.increment_percent = 5;
        o.auto_converge = &ac;
        o.bandwidth_mib_per_s = 8; /* 8 MiB re-dirtied each pass needs ~27 MiB/s to converge */
        assert_int_equal(vm_migrate_options_from_proto(&o, &p, err, sizeof(err)), 0);
        guest_start("vmt-throttle", 8);
        config_init(&c, "vmt-throttle", "tcp://127.0.0.1");
        seen_init(&s);
        start_ok(&c, &p, &m);
        do
                wait_for(m, &s, VM_MIGRATION_EVENT_PROGRESS);
        while (s.last_progress.stats.auto_converge_throttle == 0);
        print_message("throttled to %d%% at iteration %llu\n", s.last_progress.stats.auto_converge_throttle,
                      (unsigned long long)s.last_progress.stats.memory_iteration);
        assert_true(s.last_progress.stats.auto_converge_throttle >= 35);
        assert_true(s.last_progress.stats.auto_converge_throttle <= 99);
        assert_true(s.last_progress.stats.memory_iteration >= 2);
        m = vm_migration_free(m);
        guest_destroy(fx.src, "vmt-throttle");
        guest_destroy(fx.dst, "vmt-throttle");
}

/* free() on a running migration aborts it: nothing keeps migrating behind the caller. */
static void test_free_while_running_aborts(void **state)
{
        struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        struct seen s;

        guest_start("vmt-free", 8);
        config_init(&c, "vmt-free", "tcp://127.0.0.1");
        vm_migrate_params_init(&p);
        p.bandwidth_mib = SLOW_BANDWIDTH_MIB;
        seen_init(&s);
        start_ok(&c, &p, &m);
        wait_for(m, &s, VM_MIGRATION_EVENT_PROGRESS);
        m = vm_migration_free(m);
        assert_null(m);
        assert_int_equal(domain_state(fx.src, "vmt-free"), VIR_DOMAIN_RUNNING);
        assert_int_equal(domain_state(fx.dst, "vmt-free"), -1);
        guest_destroy(fx.src, "vmt-free");
}

/* Two migrations in one process share libvirt's process-wide event loop; each gets its own
 * events, and freeing one while the other runs leaves the other intact. */
static void test_two_concurrent_migrations_each_get_their_events(void **state)
{
        _cleanup_(vm_migration_freep) struct vm_migration *a = NULL, *b = NULL;
        struct vm_migration_config ca, cb;
        struct vm_migrate_params p, slow;
        struct seen sa, sb;

        guest_start("vmt-concurrent-a", 4);
        guest_start("vmt-concurrent-b", 8);
        config_init(&ca, "vmt-concurrent-a", "tcp://127.0.0.1");
        config_init(&cb, "vmt-concurrent-b", "tcp://127.0.0.1");
        vm_migrate_params_init(&p);
        vm_migrate_params_init(&slow);
        slow.bandwidth_mib = SLOW_BANDWIDTH_MIB;
        seen_init(&sa);
        seen_init(&sb);
        start_ok(&cb, &slow, &b);
        start_ok(&ca, &p, &a);

        wait_terminal(a, &sa);
        if (sa.terminal.kind != VM_MIGRATION_EVENT_COMPLETED)
                fail_msg("a: %s: %s", vm_migration_event_kind_to_string(sa.terminal.kind), sa.terminal.message);
        a = vm_migration_free(a);

        /* b never converges at 1 MiB/s: it is still running, and still reporting. */
        wait_for_data(b, &sb);
        wait_for(b, &sb, VM_MIGRATION_EVENT_PROGRESS);
        assert_int_equal(sb.count[VM_MIGRATION_EVENT_COMPLETED] + sb.count[VM_MIGRATION_EVENT_FAILED], 0);
        assert_int_equal(vm_migration_abort(b), 0);
        wait_terminal(b, &sb);
        assert_int_equal(sb.terminal.kind, VM_MIGRATION_EVENT_ABORTED);

        assert_int_equal(domain_state(fx.dst, "vmt-concurrent-a"), VIR_DOMAIN_RUNNING);
        assert_int_equal(domain_state(fx.src, "vmt-concurrent-b"), VIR_DOMAIN_RUNNING);
        guest_destroy(fx.dst, "vmt-concurrent-a");
        guest_destroy(fx.src, "vmt-concurrent-b");
}

/* The destination QEMU cannot listen on port 1: libvirt's reason reaches the caller. */
static void test_failed_migration_reports_why_and_source_keeps_running(void **state)
{
        _cleanup_(vm_migration_freep) struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        struct seen s;

        guest_start("vmt-fail", 0);
        config_init(&c, "vmt-fail", "tcp://127.0.0.1:1");
        vm_migrate_params_init(&p);
        seen_init(&s);
        start_ok(&c, &p, &m);
        wait_terminal(m, &s);
        assert_int_equal(s.terminal.kind, VM_MIGRATION_EVENT_FAILED);
        assert_true(s.terminal.error < 0);
        assert_true(strlen(s.terminal.message) > 0);
        print_message("failure reported as: %s\n", s.terminal.message);
        assert_int_equal(s.count[VM_MIGRATION_EVENT_SUSPENDED], 0);
        assert_int_equal(vm_migration_finalize(m), -ECANCELED);
        assert_int_equal(domain_state(fx.src, "vmt-fail"), VIR_DOMAIN_RUNNING);
        assert_int_equal(domain_state(fx.dst, "vmt-fail"), -1);
        guest_destroy(fx.src, "vmt-fail");
}

static void test_invalid_options_refused_before_any_libvirt_call(void **state)
{
        struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        char err[VM_ERR_MAX];
        virDomainPtr d;
        int type = -1;
        virTypedParameterPtr params = NULL;
        int nparams = 0;

        guest_start("vmt-invalid", 0);

        /* A daemon that does not exist: only a check made before connecting can answer. */
        config_init(&c, "vmt-invalid", "tcp://127.0.0.1");
        c.src_uri = "qemu+unix:///session?socket=/nonexistent/libvirt-sock";
        vm_migrate_params_init(&p);
        p.transport = VM_TRANSPORT_UNIX;
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "migrate_uri"));
        assert_null(m);

        vm_migrate_params_init(&p);
        p.max_downtime_ms = VM_DOWNTIME_MS_MAX + 1;
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -ERANGE);
        assert_non_null(strstr(err, "max_downtime_ms"));

        vm_migrate_params_init(&p);
        c.progress_interval_ms = 1;
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -ERANGE);
        assert_non_null(strstr(err, "progress_interval_ms"));
        c.progress_interval_ms = 0;
        c.mode = (enum vm_migration_mode)7;
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "mode: unknown value 7 (allowed: p2p, direct)");
        c.mode = VM_MIGRATION_P2P;
        c.domain = "";
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "domain: missing");
        c.domain = "vmt-invalid";
        c.dest_uri = NULL;
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "dest_uri: missing");
        assert_null(m);

        /* The real daemon: a refused start leaves the guest running with no job. */
        config_init(&c, "vmt-invalid", "unix:///tmp/x.sock");
        vm_migrate_params_init(&p);
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "does not suit transport tcp"));
        d = virDomainLookupByName(fx.src, "vmt-invalid");
        assert_non_null(d);
        assert_int_equal(virDomainGetJobStats(d, &type, &params, &nparams, 0), 0);
        assert_int_equal(type, VIR_DOMAIN_JOB_NONE);
        virTypedParamsFree(params, nparams);
        virDomainFree(d);
        assert_int_equal(domain_state(fx.src, "vmt-invalid"), VIR_DOMAIN_RUNNING);

        /* A connection that works but a domain that does not. */
        config_init(&c, "vmt-missing", "tcp://127.0.0.1");
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "domain lookup"));
        assert_null(m);
        guest_destroy(fx.src, "vmt-invalid");
}

static void test_paused_source_is_not_migrated(void **state)
{
        struct vm_migration *m = NULL;
        struct vm_migration_config c;
        struct vm_migrate_params p;
        char err[VM_ERR_MAX];
        virDomainPtr d;

        guest_start("vmt-suspended", 0);
        d = virDomainLookupByName(fx.src, "vmt-suspended");
        assert_non_null(d);
        assert_int_equal(virDomainSuspend(d), 0);
        virDomainFree(d);
        config_init(&c, "vmt-suspended", "tcp://127.0.0.1");
        vm_migrate_params_init(&p);
        assert_int_equal(vm_migration_start(&c, &p, &m, err, sizeof(err)), -ESRCH);
        assert_non_null(strstr(err, "not running"));
        assert_null(m);
        guest_destroy(fx.src, "vmt-suspended");
}

static void quiet(void *opaque, virErrorPtr e)
{
}

static int group_setup(void **state)
{
        fx.src_uri = getenv("VM_TEST_SRC_URI");
        fx.dst_uri = getenv("VM_TEST_DST_URI");
        fx.kernel = getenv("VM_TEST_KERNEL");
        fx.scratch = getenv("VM_TEST_DIR");
        if (!fx.src_uri || !fx.dst_uri || !fx.kernel || !fx.scratch)
                return -1;
        /* Lookups of guests that are not there are expected: keep libvirt from printing them. */
        virSetErrorFunc(NULL, quiet);
        fx.src = virConnectOpen(fx.src_uri);
        fx.dst = virConnectOpen(fx.dst_uri);
        return fx.src && fx.dst ? 0 : -1;
}

static int group_teardown(void **state)
{
        if (fx.src)
                virConnectClose(fx.src);
        if (fx.dst)
                virConnectClose(fx.dst);
        return 0;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_invalid_options_refused_before_any_libvirt_call),
                cmocka_unit_test(test_paused_source_is_not_migrated),
                cmocka_unit_test(test_tcp_default_migration_completes_with_final_stats),
                cmocka_unit_test(test_unix_socket_migration_with_xbzrle),
                cmocka_unit_test(test_direct_mode_with_parallel_connections),
                cmocka_unit_test(test_multithread_compression_auto_converge_paused_persistent),
                cmocka_unit_test(test_bandwidth_raised_mid_flight_lets_migration_finish),
                cmocka_unit_test(test_abort_leaves_source_running_and_downtime_is_applied),
                cmocka_unit_test(test_free_while_running_aborts),
                cmocka_unit_test(test_auto_converge_throttle_shows_in_progress),
                cmocka_unit_test(test_failed_migration_reports_why_and_source_keeps_running),
                cmocka_unit_test(test_two_concurrent_migrations_each_get_their_events),
        };

        if (!getenv("VM_TEST_SRC_URI")) {
                fprintf(stderr, "SKIP: run me through tests/vm/with-libvirtd.sh (meson test --suite vm)\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
