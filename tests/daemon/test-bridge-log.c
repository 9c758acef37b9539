/* tests/daemon/test-bridge-log.c: the daemon's line for each bridge event is the one bridge/ wrote
 * itself before it stopped logging: tests, docs and operators grep for these texts. */
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

#include "daemon/bridge-log.h"
#include "util/log.h"

struct expect {
        struct bridge_event ev;
        const char *line; /* after the timestamp */
};

static const struct expect expects[] = {
        { { .kind = BRIDGE_EVENT_HELD_DISCARDED, .count = 3, .what = "bridge closed" },
          "warn bridge demo: discarding 3 held message(s): bridge closed\n" },
        { { .kind = BRIDGE_EVENT_HELD_REFUSED, .count = 4096, .bytes = 77, .what = "SignalProcess", .id = 9 },
          "warn bridge demo: resume window holds 4096 message(s), 77 bytes already; dropping SignalProcess id 9\n" },
        { { .kind = BRIDGE_EVENT_HELD_REFUSED, .count = 1, .bytes = 2, .id = 0, .container_id = "c1" },
          "warn bridge demo: resume window holds 1 message(s), 2 bytes already; dropping message id 0 for container "
          "c1\n" },
        { { .kind = BRIDGE_EVENT_HELD_RELEASED, .id = 42 },
          "info bridge demo: releasing held response id 42 to its adopted wait\n" },
        { { .kind = BRIDGE_EVENT_HELD_RELEASED, .container_id = "c1" },
          "info bridge demo: releasing held notification for container c1\n" },
        { { .kind = BRIDGE_EVENT_GRACE_STARTED, .count = 2, .ms = 30000 },
          "info bridge demo: keeping 2 waits for 30000 ms while the guest reconnects\n" },
        { { .kind = BRIDGE_EVENT_GRACE_EXPIRED, .count = 2, .ms = 30000 },
          "warn bridge demo: the guest did not reconnect within 30000 ms; 2 waits fail with \"bridge closed\"\n" },
        { { .kind = BRIDGE_EVENT_GUEST_DROPPED, .what = "bad frame" },
          "error bridge demo: dropping the guest connection: bad frame; outstanding calls fail with \"bridge "
          "closed\"\n" },
        { { .kind = BRIDGE_EVENT_GUEST_DROPPED, .what = "bad frame", .migrating = true },
          "error bridge demo: dropping the guest connection: bad frame (migrating: calls kept)\n" },
        { { .kind = BRIDGE_EVENT_GUEST_DETACHED, .error = -ECANCELED, .migrating = true },
          "info bridge demo: guest connection released (migrating: calls kept)\n" },
        { { .kind = BRIDGE_EVENT_GUEST_DETACHED, .error = -ECONNRESET },
          "warn bridge demo: guest connection lost: Connection reset by peer\n" },
        { { .kind = BRIDGE_EVENT_GUEST_DETACHED }, "info bridge demo: guest closed the bridge\n" },
        { { .kind = BRIDGE_EVENT_NEGOTIATED, .what = "linux", .stdio_resume = true, .stdio_ack = true, .id = 2 },
          "info bridge demo: negotiated protocol 4 with a linux guest, stdio resume and delivery acks agreed "
          "(connection 2)\n" },
        { { .kind = BRIDGE_EVENT_NEGOTIATED, .what = "windows", .stdio_resume = true, .id = 1 },
          "info bridge demo: negotiated protocol 4 with a windows guest, stdio resume agreed (connection 1)\n" },
        { { .kind = BRIDGE_EVENT_NEGOTIATED, .what = "linux", .id = 3 },
          "info bridge demo: negotiated protocol 4 with a linux guest (connection 3)\n" },
        { { .kind = BRIDGE_EVENT_MIGRATING, .migrating = true }, "info bridge demo: migrating on\n" },
        { { .kind = BRIDGE_EVENT_MIGRATING }, "info bridge demo: migrating off\n" },
        { { .kind = BRIDGE_EVENT_PROBE_DONE, .pid = 7, .container_id = "c1", .id = 5 },
          "info bridge demo: probe for pid 7 of c1 (wait id 5): exited while detached\n" },
        { { .kind = BRIDGE_EVENT_PROBE_DONE, .backing = true, .pid = 7, .container_id = "c1", .id = 5 },
          "info bridge demo: backing wait for pid 7 of c1 (wait id 5): exited\n" },
        { { .kind = BRIDGE_EVENT_PROBE_DONE, .pid = 7, .id = 5, .error = -ECHILD },
          "info bridge demo: probe for pid 7 of ? (wait id 5): exit status lost\n" },
        { { .kind = BRIDGE_EVENT_PROBE_NO_ANSWER, .pid = 7, .id = 5, .what = "timed out" },
          "warn bridge demo: probe for pid 7 (wait id 5) gave no answer (timed out); still waiting\n" },
        { { .kind = BRIDGE_EVENT_PROBE_UNSENT, .pid = 7, .error = -ENOMEM },
          "warn bridge demo: cannot probe pid 7: Cannot allocate memory\n" },
        { { .kind = BRIDGE_EVENT_ADOPTED_PROBE_UNSENT, .pid = 7, .error = -ENOMEM },
          "warn bridge demo: cannot probe adopted pid 7: Cannot allocate memory\n" },
        { { .kind = BRIDGE_EVENT_BACKING_UNSENT, .pid = 7, .error = -ENOMEM },
          "warn bridge demo: cannot back the wait for pid 7: Cannot allocate memory\n" },
        { { .kind = BRIDGE_EVENT_UNWATCHED_NOTIFICATION, .what = "Exit", .container_id = "c1" },
          "warn bridge demo: ignoring Exit notification for unwatched container c1\n" },
        { { .kind = BRIDGE_EVENT_TIMER_UNARMED, .error = -EBUSY },
          "error bridge demo: cannot arm the call timer: Device or resource busy\n" },
        { { .kind = BRIDGE_EVENT_FRAME_UNSENT, .bytes = 6100, .limit = 4096 },
          "warn bridge demo: not sending a 6100-byte frame: over the 4096-byte bridge frame limit\n" },
        { { .kind = BRIDGE_EVENT_FRAME_REFUSED, .bytes = 4097, .limit = 4096 },
          "error bridge demo: dropping the guest connection: a 4097-byte frame is over the 4096-byte bridge frame "
          "limit\n" },
        { { .kind = BRIDGE_EVENT_LISTENER_FAILED, .error = -EINVAL },
          "error bridge demo: bridge listener failed: Invalid argument\n" },
        { { .kind = BRIDGE_EVENT_ACCEPT_FAILED, .error = -ENOMEM },
          "error bridge demo: cannot take the guest connection: Cannot allocate memory\n" },
        { { .kind = BRIDGE_EVENT_REPLACED }, "info bridge demo: a newer guest connection replaces the current one\n" },
        { { .kind = BRIDGE_EVENT_ATTACH_FAILED, .error = -ENOMEM },
          "error bridge demo: cannot start negotiation: Cannot allocate memory\n" },
        { { .kind = BRIDGE_EVENT_RELEASED, .migrating = true },
          "info bridge demo: releasing the bridge port (migrating: calls kept)\n" },
        { { .kind = BRIDGE_EVENT_RELEASED }, "info bridge demo: releasing the bridge port\n" },
        { { .kind = BRIDGE_EVENT_RELISTENED }, "info bridge demo: listening for the guest again\n" },
};

/* The line bridge_log_event() writes on fd 2, from after its timestamp. */
static void logged_line(const struct bridge_event *ev, char *buf, size_t len)
{
        int saved = dup(2), fd = memfd_create("bridge-log", MFD_CLOEXEC);
        ssize_t n;
        char *space;

        assert_true(saved >= 0 && fd >= 0);
        assert_int_equal(dup2(fd, 2), 2);
        bridge_log_event("demo", ev);
        assert_int_equal(dup2(saved, 2), 2);
        close(saved);
        n = pread(fd, buf, len - 1, 0);
        close(fd);
        assert_true(n > 0);
        buf[n] = '\0';
        space = strchr(buf, ' ');
        assert_non_null(space);
        memmove(buf, space + 1, strlen(space + 1) + 1);
}

static void test_every_bridge_event_logs_the_line_bridge_wrote_before(void **state)
{
        bool seen[_BRIDGE_EVENT_KIND_MAX] = {};
        char line[1024];

        for (size_t i = 0; i < sizeof(expects) / sizeof(expects[0]); i++) {
                logged_line(&expects[i].ev, line, sizeof(line));
                assert_string_equal(line, expects[i].line);
                seen[expects[i].ev.kind] = true;
        }
        for (int k = 0; k < _BRIDGE_EVENT_KIND_MAX; k++)
                if (!seen[k])
                        fail_msg("bridge event %d has no expected line here", k);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_bridge_event_logs_the_line_bridge_wrote_before),
        };

        log_set_level(LOG_LEVEL_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
