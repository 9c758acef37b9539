/* daemon/event-ring.c: the ring of recent events behind `events --since`: packed copies, numbered, oldest forgotten first. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/event-ring.h"

struct event_slot {
        uint64_t seq;
        uint64_t timestamp_ns;
        uint8_t *data; /* the packed Event; NULL: lost (no memory) */
        size_t len;
};

struct event_ring {
        struct event_slot *slots;
        unsigned capacity;
        unsigned count;
        unsigned head; /* the oldest held slot */
        uint64_t next_seq;
        uint64_t dropped_last_seq; /* the newest event forgotten, 0: none yet */
        uint64_t dropped_last_ns;  /* and its time */
};

int event_ring_new(unsigned capacity, struct event_ring **ret)
{
        struct event_ring *r;

        if (capacity < 1 || capacity > EVENT_RING_MAX_SIZE)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->slots = calloc(capacity, sizeof(*r->slots));
        if (!r->slots) {
                free(r);
                return -ENOMEM;
        }
        r->capacity = capacity;
        r->next_seq = 1;
        *ret = r;
        return 0;
}

struct event_ring *event_ring_free(struct event_ring *r)
{
        if (!r)
                return NULL;
        for (unsigned i = 0; i < r->capacity; i++)
                free(r->slots[i].data);
        free(r->slots);
        free(r);
        return NULL;
}

static void slot_forget(struct event_ring *r, struct event_slot *s)
{
        r->dropped_last_seq = s->seq;
        r->dropped_last_ns = s->timestamp_ns;
        free(s->data);
        *s = (struct event_slot){ 0 };
}

int event_ring_add(struct event_ring *r, Vsockmux__V1__Event *ev)
{
        struct event_slot *s;
        char *message = ev->message;
        size_t len;

        ev->seq = r->next_seq++;
        if (r->count == r->capacity) {
                slot_forget(r, &r->slots[r->head]);
                r->head = (r->head + 1) % r->capacity;
                r->count--;
        }
        s = &r->slots[(r->head + r->count) % r->capacity];
        r->count++;
        s->seq = ev->seq;
        s->timestamp_ns = ev->timestamp_ns;
        if (vsockmux__v1__event__get_packed_size(ev) > EVENT_RING_MAX_EVENT_BYTES)
                ev->message = (char *)"";
        len = vsockmux__v1__event__get_packed_size(ev);
        s->data = malloc(len ? len : 1);
        if (s->data) {
                s->len = vsockmux__v1__event__pack(ev, s->data);
        }
        ev->message = message;
        if (!s->data) {
                /* Held as lost: a replay over it says so. */
                r->dropped_last_seq = s->seq;
                r->dropped_last_ns = s->timestamp_ns;
                return -ENOMEM;
        }
        return 0;
}

uint64_t event_ring_last_seq(const struct event_ring *r)
{
        return r->next_seq - 1;
}

void event_ring_marker(uint64_t first, uint64_t last, const char *why, char *buf, size_t buf_len,
                       Vsockmux__V1__Event *ret)
{
        struct timespec ts;

        vsockmux__v1__event__init(ret);
        clock_gettime(CLOCK_REALTIME, &ts);
        ret->timestamp_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        ret->kind = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_EVENTS_DROPPED;
        ret->vm = (char *)"";
        ret->container_id = (char *)"";
        if (first == last)
                snprintf(buf, buf_len, "event %" PRIu64 " was dropped: %s", first, why);
        else
                snprintf(buf, buf_len, "events %" PRIu64 " to %" PRIu64 " were dropped: %s", first, last, why);
        ret->message = buf;
        ret->seq = last;
}

/* The marker a replay starts with, if any: 1 with *ret filled, 0 when nothing was lost. */
static int replay_gap(const struct event_ring *r, uint64_t *since_seq, uint64_t since_ns, char *buf, size_t len,
                      Vsockmux__V1__Event *ret)
{
        uint64_t last = event_ring_last_seq(r);
        char why[128];

        if (*since_seq > last) {
                snprintf(why, sizeof(why),
                         "seq %" PRIu64 " is past this daemon's last event %" PRIu64
                         " (it restarted?); replaying all it holds",
                         *since_seq, last);
                event_ring_marker(1, last ? last : 1, why, buf, len, ret);
                ret->seq = 0;
                *since_seq = 0;
                return 1;
        }
        /* Lost: every event from since_seq + 1 up to the newest forgotten one, when any of those
         * is no older than since_ns (a forgotten event's time is at most the newest forgotten one's). */
        if (r->dropped_last_seq > *since_seq && r->dropped_last_ns >= since_ns) {
                snprintf(why, sizeof(why), "the ring holds only the last %u (vsockmuxd --events-ring)", r->capacity);
                event_ring_marker(*since_seq + 1, r->dropped_last_seq, why, buf, len, ret);
                return 1;
        }
        return 0;
}

int event_ring_replay(const struct event_ring *r, uint64_t since_seq, uint64_t since_ns, event_ring_fn fn,
                      void *userdata)
{
        Vsockmux__V1__Event marker;
        char text[256];
        int k;

        if (replay_gap(r, &since_seq, since_ns, text, sizeof(text), &marker)) {
                k = fn(&marker, userdata);
                if (k < 0)
                        return k;
        }
        for (unsigned i = 0; i < r->count; i++) {
                const struct event_slot *s = &r->slots[(r->head + i) % r->capacity];
                Vsockmux__V1__Event *ev;

                if (s->seq <= since_seq || s->timestamp_ns < since_ns || !s->data)
                        continue;
                ev = vsockmux__v1__event__unpack(NULL, s->len, s->data);
                if (!ev)
                        return -ENOMEM;
                k = fn(ev, userdata);
                vsockmux__v1__event__free_unpacked(ev, NULL);
                if (k < 0)
                        return k;
        }
        return 0;
}

int event_ring_export(const struct event_ring *r, Vsockmux__State__EventRing *ret)
{
        Vsockmux__State__EventRing out = VSOCKMUX__STATE__EVENT_RING__INIT;

        out.events = calloc(r->count + 1, sizeof(*out.events));
        if (!out.events)
                return -ENOMEM;
        for (unsigned i = 0; i < r->count; i++) {
                const struct event_slot *sl = &r->slots[(r->head + i) % r->capacity];

                /* One lost to memory is in dropped_last_seq already. */
                if (sl->data)
                        out.events[out.n_events++] = (ProtobufCBinaryData){ .len = sl->len, .data = sl->data };
        }
        out.last_seq = event_ring_last_seq(r);
        out.dropped_last_seq = r->dropped_last_seq;
        out.dropped_last_ns = r->dropped_last_ns;
        *ret = out;
        return 0;
}

void event_ring_export_done(Vsockmux__State__EventRing *ret)
{
        free(ret->events);
        ret->events = NULL;
        ret->n_events = 0;
}

/* A refused import leaves the ring as it was: numbering nothing yet, holding nothing. */
static int import_undo(struct event_ring *r, int error)
{
        for (unsigned i = 0; i < r->count; i++)
                free(r->slots[i].data);
        memset(r->slots, 0, r->count * sizeof(*r->slots));
        r->count = r->head = 0;
        r->dropped_last_seq = r->dropped_last_ns = 0;
        return error;
}

/* Keeps one event at the next slot; a copy that cannot be made counts as dropped. */
static void import_keep(struct event_ring *r, const ProtobufCBinaryData *data, uint64_t seq, uint64_t ns)
{
        struct event_slot *sl = &r->slots[r->count++];

        *sl = (struct event_slot){ .seq = seq, .timestamp_ns = ns, .data = malloc(data->len ? data->len : 1) };
        if (sl->data) {
                memcpy(sl->data, data->data, data->len);
                sl->len = data->len;
        } else {
                r->dropped_last_seq = seq;
                r->dropped_last_ns = ns;
        }
}

int event_ring_import(struct event_ring *r, const Vsockmux__State__EventRing *in)
{
        uint64_t prev = 0;
        size_t first;

        if (r->next_seq != 1)
                return -EBUSY;
        if (in->dropped_last_seq > in->last_seq)
                return -EBADMSG;
        /* A smaller ring here: the oldest go, counted as dropped. */
        first = in->n_events > r->capacity ? in->n_events - r->capacity : 0;
        r->dropped_last_seq = in->dropped_last_seq;
        r->dropped_last_ns = in->dropped_last_ns;
        /* One pass: each event decodes, numbered after the one before and at most last_seq. */
        for (size_t i = 0; i < in->n_events; i++) {
                Vsockmux__V1__Event *ev = vsockmux__v1__event__unpack(NULL, in->events[i].len, in->events[i].data);
                uint64_t seq = ev ? ev->seq : 0, ns = ev ? ev->timestamp_ns : 0;

                vsockmux__v1__event__free_unpacked(ev, NULL);
                if (!ev || in->events[i].len > EVENT_RING_MAX_EVENT_BYTES || seq <= prev || seq > in->last_seq)
                        return import_undo(r, -EBADMSG);
                prev = seq;
                if (i >= first)
                        import_keep(r, &in->events[i], seq, ns);
                else {
                        r->dropped_last_seq = seq;
                        r->dropped_last_ns = ns;
                }
        }
        r->head = 0;
        r->next_seq = in->last_seq + 1;
        return 0;
}
