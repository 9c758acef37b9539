/* tests/daemon/test-relay-log.c: the daemon's line for each relay event is the one relay/ wrote
 * itself before it stopped logging: tests, docs (README: "refusing connection from unexpected
 * CID") and operators grep for these texts. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "daemon/relay-log.h"
#include "util/log.h"

struct expect {
        struct relay_event ev;
        const char *line; /* after the timestamp */
};

static const struct expect expects[] = {
        { { .kind = RELAY_EVENT_RING_FAILED, .error = -EBADF, .what = "io_uring_enter" },
          "error relay: io_uring_enter failed: Bad file descriptor\n" },
        { { .kind = RELAY_EVENT_RING_FAILED, .error = -EBUSY, .what = "submitting to a full ring" },
          "error relay: submitting to a full ring failed: Device or resource busy\n" },
        { { .kind = RELAY_EVENT_UNLINK_FAILED, .error = -EISDIR, .path = "/run/vm.vsock_1024" },
          "warn relay: removing /run/vm.vsock_1024 failed: Is a directory\n" },
        { { .kind = RELAY_EVENT_LISTENER_FAILED, .error = -EINVAL, .path = "/run/vm.vsock_1024", .port = 1024 },
          "warn relay: listener on /run/vm.vsock_1024 failed: Invalid argument\n" },
        { { .kind = RELAY_EVENT_LISTENER_FAILED, .error = -EINVAL, .port = 1024 },
          "warn relay: listener on vsock port 1024 failed: Invalid argument\n" },
        { { .kind = RELAY_EVENT_ACCEPT_RETRY, .error = -EMFILE, .path = "control socket" },
          "warn relay: accept on control socket failed, retrying: Too many open files\n" },
        { { .kind = RELAY_EVENT_ACCEPT_RETRY, .error = -ENOMEM, .port = 1024 },
          "warn relay: vsock accept on port 1024 failed, retrying: Cannot allocate memory\n" },
        { { .kind = RELAY_EVENT_PEER_UNKNOWN, .error = -ENOTCONN, .port = 1024, .fd = 9 },
          "warn relay: vsock port 1024: peer of fd 9 unknown, closing: Transport endpoint is not connected\n" },
        { { .kind = RELAY_EVENT_CID_REFUSED, .port = 1024, .cid = 7 },
          "warn relay: vsock port 1024: refusing connection from unexpected CID 7\n" },
        { { .kind = RELAY_EVENT_STREAM_NOMEM, .label = "vm1 pid 42 stdout port 1234" },
          "error relay: vm1 pid 42 stdout port 1234: out of memory holding a chunk\n" },
        { { .kind = RELAY_EVENT_ENDPOINT_FAILED, .error = -EPIPE, .label = "vm1 pid 42 stdout port 1234" },
          "warn relay: vm1 pid 42 stdout port 1234: endpoint failed; dropping the rest of the guest's output: Broken "
          "pipe\n" },
        { { .kind = RELAY_EVENT_RECV_BUDGET_REFUSED, .label = "fd 7" },
          "debug relay: kernel refuses a multishot recv byte budget; capping by cancel\n" },
        { { .kind = RELAY_EVENT_READ_MSHOT_REFUSED, .error = -EBADFD, .label = "fd 7" },
          "debug relay: fd 7: READ_MULTISHOT refused (-77); using plain reads\n" },
        { { .kind = RELAY_EVENT_STDIN_OVERCLAIMED, .bytes = 9000, .sent = 5000, .label = "vm1 pid 42 stdin" },
          "error relay: vm1 pid 42 stdin: guest claims 9000 stdin bytes, only 5000 were sent\n" },
        { { .kind = RELAY_EVENT_STDIN_LOST, .bytes = 1000, .label = "vm1 pid 42 stdin" },
          "warn relay: vm1 pid 42 stdin: 1000 stdin bytes sent before the reconnect never reached the guest\n" },
        { { .kind = RELAY_EVENT_STDIN_END_MISCOUNTED, .bytes = 300000, .sent = 300001, .label = "vm1 pid 42 stdin" },
          "warn relay: vm1 pid 42 stdin: the guest confirmed stdin's end at byte 300000 of 300001 sent\n" },
};

/* What fn writes on fd 2, from after its timestamp ("" for nothing). */
static void logged(void (*fn)(const void *arg), const void *arg, char *buf, size_t len)
{
        int saved = dup(2), fd = memfd_create("relay-log", MFD_CLOEXEC);
        ssize_t n;
        char *space;

        assert_true(saved >= 0 && fd >= 0);
        assert_int_equal(dup2(fd, 2), 2);
        fn(arg);
        assert_int_equal(dup2(saved, 2), 2);
        close(saved);
        n = pread(fd, buf, len - 1, 0);
        close(fd);
        assert_true(n >= 0);
        buf[n] = '\0';
        space = strchr(buf, ' ');
        if (space)
                memmove(buf, space + 1, strlen(space + 1) + 1);
}

static void log_event(const void *arg)
{
        relay_log_event(arg);
}

static void log_leftovers(const void *arg)
{
        relay_log_leftovers(arg);
}

static void test_every_relay_event_logs_the_line_relay_wrote_before(void **state)
{
        bool seen[_RELAY_EVENT_KIND_MAX] = {};
        char line[1024];

        for (size_t i = 0; i < sizeof(expects) / sizeof(expects[0]); i++) {
                logged(log_event, &expects[i].ev, line, sizeof(line));
                assert_string_equal(line, expects[i].line);
                seen[expects[i].ev.kind] = true;
        }
        for (int k = 0; k < _RELAY_EVENT_KIND_MAX; k++)
                if (!seen[k])
                        fail_msg("relay event %d has no expected line here", k);
}

/* The debug lines cost nothing below debug: no line at info. */
static void test_debug_events_are_quiet_at_info(void **state)
{
        struct relay_event ev = { .kind = RELAY_EVENT_RECV_BUDGET_REFUSED };
        char line[1024];

        log_set_level(LOG_LEVEL_INFO);
        logged(log_event, &ev, line, sizeof(line));
        log_set_level(LOG_LEVEL_DEBUG);
        assert_string_equal(line, "");
}

static void test_objects_left_open_at_the_end_are_warned_about_and_none_is_quiet(void **state)
{
        struct relay_stats open = { .streams = 2, .listeners = 1 }, none = { .bytes_relayed = 5 };
        char line[1024];

        logged(log_leftovers, &open, line, sizeof(line));
        assert_string_equal(line, "warn relay: freed with 2 streams, 1 listeners, 0 channels still open\n");
        logged(log_leftovers, &none, line, sizeof(line));
        assert_string_equal(line, "");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_relay_event_logs_the_line_relay_wrote_before),
                cmocka_unit_test(test_debug_events_are_quiet_at_info),
                cmocka_unit_test(test_objects_left_open_at_the_end_are_warned_about_and_none_is_quiet),
        };

        log_set_level(LOG_LEVEL_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
