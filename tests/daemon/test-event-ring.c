/* tests/daemon/test-event-ring.c: the ring of recent events handed over in a live upgrade
 * (event_ring_export/import): the numbering goes on, what was dropped stays dropped, and a
 * handover that numbers out of order or lands on a used ring is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/event-ring.h"

static void add(struct event_ring *r, const char *vm, uint64_t ns)
{
        Vsockmux__V1__Event ev = VSOCKMUX__V1__EVENT__INIT;

        ev.kind = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_VM_ADDED;
        ev.vm = (char *)vm;
        ev.container_id = (char *)"";
        ev.message = (char *)"";
        ev.timestamp_ns = ns;
        assert_int_equal(event_ring_add(r, &ev), 0);
}

/* What a replay yields: "seq:vm" per event, "drop:LAST" for a marker. */
struct seen {
        char text[512];
};

static int collect(const Vsockmux__V1__Event *ev, void *userdata)
{
        struct seen *s = userdata;
        size_t n = strlen(s->text);

        if (ev->kind == VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_EVENTS_DROPPED)
                snprintf(s->text + n, sizeof(s->text) - n, "drop:%llu ", (unsigned long long)ev->seq);
        else
                snprintf(s->text + n, sizeof(s->text) - n, "%llu:%s ", (unsigned long long)ev->seq, ev->vm);
        return 0;
}

static const char *replay(struct event_ring *r, uint64_t since, struct seen *s)
{
        s->text[0] = '\0';
        assert_int_equal(event_ring_replay(r, since, 0, collect, s), 0);
        return s->text;
}

static void test_numbering_goes_on_after_a_handover_into_a_smaller_ring(void **state)
{
        struct event_ring *old = NULL, *new = NULL;
        Vsockmux__State__EventRing h;
        struct seen s;

        assert_int_equal(event_ring_new(3, &old), 0);
        add(old, "a", 10);
        add(old, "b", 20);
        add(old, "c", 30);
        add(old, "d", 40); /* a is forgotten */
        assert_int_equal(event_ring_export(old, &h), 0);
        assert_int_equal(h.n_events, 3);
        assert_int_equal(h.last_seq, 4);
        assert_int_equal(h.dropped_last_seq, 1);

        assert_int_equal(event_ring_new(2, &new), 0);
        assert_int_equal(event_ring_import(new, &h), 0);
        event_ring_export_done(&h);
        /* b went too: it did not fit, and says so. */
        assert_string_equal(replay(new, 0, &s), "drop:2 3:c 4:d ");
        assert_string_equal(replay(new, 3, &s), "4:d ");
        add(new, "e", 50);
        assert_int_equal(event_ring_last_seq(new), 5);
        assert_string_equal(replay(new, 4, &s), "5:e ");
        event_ring_free(old);
        event_ring_free(new);
}

static void test_handover_out_of_order_or_onto_a_used_ring_is_refused(void **state)
{
        struct event_ring *old = NULL, *new = NULL;
        Vsockmux__State__EventRing h;
        ProtobufCBinaryData swap;
        struct seen s;

        assert_int_equal(event_ring_new(4, &old), 0);
        add(old, "a", 10);
        add(old, "b", 20);
        assert_int_equal(event_ring_export(old, &h), 0);
        assert_int_equal(event_ring_new(4, &new), 0);

        swap = h.events[0];
        h.events[0] = h.events[1];
        h.events[1] = swap;
        assert_int_equal(event_ring_import(new, &h), -EBADMSG);
        h.events[1] = h.events[0];
        h.events[0] = swap;
        h.last_seq = 1; /* below b's own number */
        assert_int_equal(event_ring_import(new, &h), -EBADMSG);
        h.last_seq = 2;
        h.events[0].len = 1; /* not an event */
        h.events[0].data = (uint8_t *)"\xff";
        assert_int_equal(event_ring_import(new, &h), -EBADMSG);
        /* Nothing was kept by the refusals: the numbering is still this ring's own. */
        assert_string_equal(replay(new, 0, &s), "");
        add(new, "x", 30);
        event_ring_export_done(&h);
        assert_int_equal(event_ring_export(old, &h), 0);
        assert_int_equal(event_ring_import(new, &h), -EBUSY);
        event_ring_export_done(&h);
        event_ring_free(old);
        event_ring_free(new);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_numbering_goes_on_after_a_handover_into_a_smaller_ring),
                cmocka_unit_test(test_handover_out_of_order_or_onto_a_used_ring_is_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
