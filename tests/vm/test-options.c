/* tests/vm/test-options.c: table-driven tests of the migration options converter (no libvirtd needed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "util/macro.h"
#include "vm/options.h"

#define NO_CHANGE 0xa5

/* A case's input in plain fields; build_options() turns it into the protobuf message. */
struct input {
        int transport;
        int64_t bandwidth;
        int64_t downtime;
        int compression; /* 0 none, 1 xbzrle, 2 multithread, other: raw oneof case */
        uint64_t cache;
        bool level_set;
        uint32_t level, threads, dthreads;
        uint32_t parallel;
        bool auto_converge;
        uint32_t initial, increment;
        bool persist, paused;
};

struct expect_param {
        const char *name;
        int type;
        unsigned long long value; /* ints and ullongs */
        const char *str;
};

#define P_INT(n, v)                                                  \
        {                                                            \
                .name = n, .type = VIR_TYPED_PARAM_INT, .value = (v) \
        }
#define P_ULL(n, v)                                                     \
        {                                                               \
                .name = n, .type = VIR_TYPED_PARAM_ULLONG, .value = (v) \
        }
#define P_STR(n, s)                                                   \
        {                                                             \
                .name = n, .type = VIR_TYPED_PARAM_STRING, .str = (s) \
        }

struct options_case {
        const char *name;
        struct input in;
        int rc;
        const char *err; /* substring the message must hold */
        unsigned flags;
        struct expect_param params[8]; /* besides the URI, in any order; ends at name == NULL */
};

static const struct options_case cases[] = {
        { "empty options: tcp, live, only the URI", {}, 0, NULL, VIR_MIGRATE_LIVE, {} },
        { "tcp with a bandwidth limit",
          { .transport = 1, .bandwidth = 100 },
          0,
          NULL,
          VIR_MIGRATE_LIVE,
          { P_ULL(VIR_MIGRATE_PARAM_BANDWIDTH, 100) } },
        { "unix transport adds no flag", { .transport = 2 }, 0, NULL, VIR_MIGRATE_LIVE, {} },
        { "tls transport sets VIR_MIGRATE_TLS", { .transport = 3 }, 0, NULL, VIR_MIGRATE_LIVE | VIR_MIGRATE_TLS, {} },
        { "downtime is not a typed parameter", { .downtime = 500 }, 0, NULL, VIR_MIGRATE_LIVE, {} },
        { "xbzrle with cache size",
          { .compression = 1, .cache = 64u << 20 },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_COMPRESSED,
          { P_STR(VIR_MIGRATE_PARAM_COMPRESSION, "xbzrle"),
            P_ULL(VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE, 64u << 20) } },
        { "xbzrle with the default cache",
          { .compression = 1 },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_COMPRESSED,
          { P_STR(VIR_MIGRATE_PARAM_COMPRESSION, "xbzrle") } },
        { "multithread level 0 is a real level",
          { .compression = 2, .level_set = true, .level = 0, .threads = 4, .dthreads = 2 },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_COMPRESSED,
          { P_STR(VIR_MIGRATE_PARAM_COMPRESSION, "mt"), P_INT(VIR_MIGRATE_PARAM_COMPRESSION_MT_LEVEL, 0),
            P_INT(VIR_MIGRATE_PARAM_COMPRESSION_MT_THREADS, 4), P_INT(VIR_MIGRATE_PARAM_COMPRESSION_MT_DTHREADS, 2) } },
        { "multithread at the top of every range",
          { .compression = 2, .level_set = true, .level = 9, .threads = 255, .dthreads = 255 },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_COMPRESSED,
          { P_STR(VIR_MIGRATE_PARAM_COMPRESSION, "mt"), P_INT(VIR_MIGRATE_PARAM_COMPRESSION_MT_LEVEL, 9),
            P_INT(VIR_MIGRATE_PARAM_COMPRESSION_MT_THREADS, 255),
            P_INT(VIR_MIGRATE_PARAM_COMPRESSION_MT_DTHREADS, 255) } },
        { "parallel connections",
          { .parallel = 4 },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_PARALLEL,
          { P_INT(VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS, 4) } },
        { "auto-converge percentages",
          { .auto_converge = true, .initial = 20, .increment = 10 },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_AUTO_CONVERGE,
          { P_INT(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL, 20),
            P_INT(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT, 10) } },
        { "auto-converge with QEMU's defaults",
          { .auto_converge = true },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_AUTO_CONVERGE,
          {} },
        { "auto-converge 99 is the top",
          { .auto_converge = true, .initial = 99, .increment = 99 },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_AUTO_CONVERGE,
          { P_INT(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL, 99),
            P_INT(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT, 99) } },
        { "persist and start paused",
          { .persist = true, .paused = true },
          0,
          NULL,
          VIR_MIGRATE_LIVE | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_PAUSED,
          {} },

        { "unknown transport is refused, not taken as tcp",
          { .transport = 7 },
          -EINVAL,
          "transport: unknown value 7",
          0,
          {} },
        { "negative transport is refused", { .transport = -1 }, -EINVAL, "transport", 0, {} },
        { "negative bandwidth is refused",
          { .bandwidth = -1 },
          -ERANGE,
          "bandwidth_mib_per_s: -1 is out of range",
          0,
          {} },
        { "bandwidth past libvirt's limit",
          { .bandwidth = VM_BANDWIDTH_MIB_MAX + 1 },
          -ERANGE,
          "bandwidth_mib_per_s",
          0,
          {} },
        { "negative downtime", { .downtime = -5 }, -ERANGE, "max_downtime_ms: -5", 0, {} },
        { "downtime past QEMU's 2000 s", { .downtime = VM_DOWNTIME_MS_MAX + 1 }, -ERANGE, "max_downtime_ms", 0, {} },
        { "throttle 300 is an error, never 44",
          { .auto_converge = true, .initial = 300 },
          -ERANGE,
          "auto_converge.initial_percent: 300 is out of range (allowed: 0 for the default, or 1..99 percent)",
          0,
          {} },
        { "throttle 101 is an error",
          { .auto_converge = true, .increment = 101 },
          -ERANGE,
          "auto_converge.increment_percent: 101",
          0,
          {} },
        { "throttle 100 is refused as QEMU does", { .auto_converge = true, .initial = 100 }, -ERANGE, "1..99", 0, {} },
        { "mt level 10",
          { .compression = 2, .level_set = true, .level = 10 },
          -ERANGE,
          "multithread.level: 10 is out of range (allowed: 0..9)",
          0,
          {} },
        { "mt level without level_set",
          { .compression = 2, .level = 5 },
          -EINVAL,
          "multithread.level: 5 given without level_set",
          0,
          {} },
        { "mt threads 256", { .compression = 2, .threads = 256 }, -ERANGE, "multithread.compress_threads: 256", 0, {} },
        { "mt dthreads 1000",
          { .compression = 2, .dthreads = 1000 },
          -ERANGE,
          "multithread.decompress_threads: 1000",
          0,
          {} },
        { "xbzrle cache below one page",
          { .compression = 1, .cache = 100 },
          -ERANGE,
          "xbzrle.cache_size_bytes: 100",
          0,
          {} },
        { "xbzrle cache not page aligned",
          { .compression = 1, .cache = 8193 },
          -EINVAL,
          "not a multiple of 4096",
          0,
          {} },
        { "xbzrle cache too large",
          { .compression = 1, .cache = VM_XBZRLE_CACHE_MAX + 4096 },
          -ERANGE,
          "xbzrle.cache_size_bytes",
          0,
          {} },
        { "parallel 256",
          { .parallel = 256 },
          -ERANGE,
          "parallel_connections: 256 is out of range (allowed: 0 for one connection, or 1..255)",
          0,
          {} },
        { "parallel with mt",
          { .parallel = 2, .compression = 2 },
          -EINVAL,
          "multithread: cannot be combined with parallel_connections",
          0,
          {} },
        { "unknown compression case", { .compression = 99 }, -EINVAL, "compression: unknown method 99", 0, {} },
};

static void build_options(const struct input *in, Vsockmux__Migration__Options *o, Vsockmux__Migration__Xbzrle *x,
                          Vsockmux__Migration__Multithread *mt, Vsockmux__Migration__AutoConverge *ac)
{
        vsockmux__migration__options__init(o);
        vsockmux__migration__xbzrle__init(x);
        vsockmux__migration__multithread__init(mt);
        vsockmux__migration__auto_converge__init(ac);

        o->transport = (Vsockmux__Migration__Transport)in->transport;
        o->bandwidth_mib_per_s = in->bandwidth;
        o->max_downtime_ms = in->downtime;
        switch (in->compression) {
        case 0: break;
        case 1:
                o->compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_XBZRLE;
                x->cache_size_bytes = in->cache;
                o->xbzrle = x;
                break;
        case 2:
                o->compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD;
                mt->level_set = in->level_set;
                mt->level = in->level;
                mt->compress_threads = in->threads;
                mt->decompress_threads = in->dthreads;
                o->multithread = mt;
                break;
        default: o->compression_case = (Vsockmux__Migration__Options__CompressionCase)in->compression; break;
        }
        o->parallel_connections = in->parallel;
        if (in->auto_converge) {
                ac->initial_percent = in->initial;
                ac->increment_percent = in->increment;
                o->auto_converge = ac;
        }
        o->persist_destination = in->persist;
        o->start_paused = in->paused;
}

static void check_typed(const struct options_case *c, const struct vm_typed_params *t)
{
        const char *uri = NULL;
        int expected = 1;

        assert_int_equal(virTypedParamsGetString(t->params, t->nparams, VIR_MIGRATE_PARAM_URI, &uri), 1);
        assert_string_equal(uri, "tcp://127.0.0.1:49152");
        for (const struct expect_param *e = c->params; e->name; e++) {
                virTypedParameterPtr p = virTypedParamsGet(t->params, t->nparams, e->name);

                expected++;
                if (!p)
                        fail_msg("%s: missing %s", c->name, e->name);
                assert_int_equal(p->type, e->type);
                switch (e->type) {
                case VIR_TYPED_PARAM_INT: assert_int_equal(p->value.i, (int)e->value); break;
                case VIR_TYPED_PARAM_ULLONG: assert_int_equal(p->value.ul, e->value); break;
                case VIR_TYPED_PARAM_STRING: assert_string_equal(p->value.s, e->str); break;
                default: fail();
                }
        }
        /* Nothing beyond what the case lists: an unset option adds no parameter. */
        assert_int_equal(t->nparams, expected);
        assert_int_equal(t->flags, c->flags);
}

static void test_options_table(void **state)
{
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct options_case *c = &cases[i];
                Vsockmux__Migration__Options o;
                Vsockmux__Migration__Xbzrle x;
                Vsockmux__Migration__Multithread mt;
                Vsockmux__Migration__AutoConverge ac;
                struct vm_migrate_params p, untouched;
                char err[VM_ERR_MAX] = "";
                int r;

                print_message("case: %s\n", c->name);
                build_options(&c->in, &o, &x, &mt, &ac);
                memset(&p, NO_CHANGE, sizeof(p));
                untouched = p;
                r = vm_migrate_options_from_proto(&o, &p, err, sizeof(err));
                assert_int_equal(r, c->rc);
                if (r < 0) {
                        if (!strstr(err, c->err))
                                fail_msg("%s: message '%s' lacks '%s'", c->name, err, c->err);
                        assert_memory_equal(&p, &untouched, sizeof(p));
                        continue;
                }
                assert_string_equal(err, "");
                struct vm_typed_params t = {};
                assert_int_equal(vm_migrate_params_to_typed(&p, "tcp://127.0.0.1:49152", &t), 0);
                check_typed(c, &t);
                vm_typed_params_clear(&t);
                assert_null(t.params);
        }
}

static void test_null_options_are_the_defaults(void **state)
{
        struct vm_migrate_params p, d;

        assert_int_equal(vm_migrate_options_from_proto(NULL, &p, NULL, 0), 0);
        vm_migrate_params_init(&d);
        assert_memory_equal(&p, &d, sizeof(p));
        assert_int_equal(p.transport, VM_TRANSPORT_TCP);
}

static void test_downtime_and_transport_kept_in_params(void **state)
{
        Vsockmux__Migration__Options o = VSOCKMUX__MIGRATION__OPTIONS__INIT;
        struct vm_migrate_params p;

        o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_UNIX;
        o.max_downtime_ms = 750;
        assert_int_equal(vm_migrate_options_from_proto(&o, &p, NULL, 0), 0);
        assert_int_equal(p.max_downtime_ms, 750);
        assert_int_equal(p.transport, VM_TRANSPORT_UNIX);
        assert_string_equal(vm_transport_to_string(p.transport), "unix");
}

static void test_unknown_transport_from_the_wire_is_refused(void **state)
{
        Vsockmux__Migration__Options o = VSOCKMUX__MIGRATION__OPTIONS__INIT, *d;
        struct vm_migrate_params p;
        uint8_t buf[64];
        size_t len;
        char err[VM_ERR_MAX];

        /* A newer client's enum value survives decode as a number and must not map to tcp. */
        o.transport = (Vsockmux__Migration__Transport)42;
        len = vsockmux__migration__options__pack(&o, buf);
        d = vsockmux__migration__options__unpack(NULL, len, buf);
        assert_non_null(d);
        assert_int_equal(vm_migrate_options_from_proto(d, &p, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "transport: unknown value 42 (allowed: tcp, unix, tls)");
        vsockmux__migration__options__free_unpacked(d, NULL);
}

static void test_message_is_truncated_to_the_buffer(void **state)
{
        Vsockmux__Migration__Options o = VSOCKMUX__MIGRATION__OPTIONS__INIT;
        struct vm_migrate_params p;
        char err[8];

        o.bandwidth_mib_per_s = -1;
        assert_int_equal(vm_migrate_options_from_proto(&o, &p, err, sizeof(err)), -ERANGE);
        assert_string_equal(err, "bandwid");
}

static void test_option_newer_than_libvirt_is_refused(void **state)
{
        struct vm_migrate_params p;
        char err[VM_ERR_MAX];

        vm_migrate_params_init(&p);
        p.parallel_connections = 2;
        assert_int_equal(vm_migrate_params_check_version(&p, 9000000, err, sizeof(err)), 0);
        assert_int_equal(vm_migrate_params_check_version(&p, 5001000, err, sizeof(err)), -EOPNOTSUPP);
        assert_string_equal(err, "parallel_connections: needs libvirt >= 5.2.0, the daemon runs 5.1.0");

        vm_migrate_params_init(&p);
        p.transport = VM_TRANSPORT_UNIX;
        assert_int_equal(vm_migrate_params_check_version(&p, 6005000, err, sizeof(err)), -EOPNOTSUPP);
        assert_non_null(strstr(err, "transport unix"));
        assert_int_equal(vm_migrate_params_check_version(&p, 6006000, err, sizeof(err)), 0);
}

static void test_migrate_uri_must_suit_transport(void **state)
{
        static const struct {
                int transport;
                const char *uri;
                int rc;
        } uris[] = {
                { VM_TRANSPORT_TCP, "tcp://127.0.0.1", 0 },
                { VM_TRANSPORT_TCP, "tcp://127.0.0.1:49152", 0 },
                { VM_TRANSPORT_TLS, "tcp://host.example:49152", 0 },
                { VM_TRANSPORT_UNIX, "unix:///run/m.sock", 0 },
                { VM_TRANSPORT_TCP, "unix:///run/m.sock", -EINVAL },
                { VM_TRANSPORT_TCP, "tcp://", -EINVAL },
                { VM_TRANSPORT_TCP, "tcp:///path", -EINVAL },
                { VM_TRANSPORT_TCP, "rdma://1.2.3.4", -EINVAL },
                { VM_TRANSPORT_UNIX, "tcp://127.0.0.1", -EINVAL },
                { VM_TRANSPORT_UNIX, "unix://relative", -EINVAL },
                { VM_TRANSPORT_UNIX, "unix:///", -EINVAL },
                { VM_TRANSPORT_TCP, "", -EINVAL },
                { VM_TRANSPORT_TCP, NULL, -EINVAL },
        };
        struct vm_migrate_params p;
        char err[VM_ERR_MAX];
        char longuri[VM_MIGRATE_URI_MAX + 16];

        for (size_t i = 0; i < ELEMENTSOF(uris); i++) {
                vm_migrate_params_init(&p);
                p.transport = uris[i].transport;
                print_message("uri: %s\n", uris[i].uri ? uris[i].uri : "(null)");
                assert_int_equal(vm_migrate_params_check_uri(&p, uris[i].uri, err, sizeof(err)), uris[i].rc);
                if (uris[i].rc < 0)
                        assert_non_null(strstr(err, "migrate_uri"));
        }

        /* A unix socket path must fit sun_path: 107 bytes do, 108 do not. */
        char path[VM_UNIX_PATH_MAX + 16];
        vm_migrate_params_init(&p);
        p.transport = VM_TRANSPORT_UNIX;
        memset(path, 'b', sizeof(path));
        memcpy(path, "unix:///", 8);
        path[7 + VM_UNIX_PATH_MAX] = '\0';
        assert_int_equal(vm_migrate_params_check_uri(&p, path, err, sizeof(err)), 0);
        path[7 + VM_UNIX_PATH_MAX] = 'b';
        path[8 + VM_UNIX_PATH_MAX] = '\0';
        assert_int_equal(vm_migrate_params_check_uri(&p, path, err, sizeof(err)), -ERANGE);
        assert_string_equal(err, "migrate_uri: socket path is 108 bytes (allowed: up to 107)");

        vm_migrate_params_init(&p);
        memset(longuri, 'a', sizeof(longuri));
        memcpy(longuri, "tcp://", 6);
        longuri[sizeof(longuri) - 1] = '\0';
        assert_int_equal(vm_migrate_params_check_uri(&p, longuri, err, sizeof(err)), -ERANGE);
}

static void test_to_typed_refuses_invalid_params(void **state)
{
        struct vm_migrate_params p;
        struct vm_typed_params t = {};

        vm_migrate_params_init(&p);
        p.transport = _VM_TRANSPORT_MAX;
        assert_int_equal(vm_migrate_params_to_typed(&p, "tcp://x", &t), -EINVAL);
        vm_migrate_params_init(&p);
        assert_int_equal(vm_migrate_params_to_typed(&p, NULL, &t), -EINVAL);
        assert_null(t.params);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_options_table),
                cmocka_unit_test(test_null_options_are_the_defaults),
                cmocka_unit_test(test_downtime_and_transport_kept_in_params),
                cmocka_unit_test(test_unknown_transport_from_the_wire_is_refused),
                cmocka_unit_test(test_message_is_truncated_to_the_buffer),
                cmocka_unit_test(test_option_newer_than_libvirt_is_refused),
                cmocka_unit_test(test_migrate_uri_must_suit_transport),
                cmocka_unit_test(test_to_typed_refuses_invalid_params),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
