/* daemon/event-ring.h: struct event_ring owns a bounded copy of the most recent events (packed) and their sequence numbers, for Events replay; borrows nothing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "state.pb-c.h"
#include "util/macro.h"

#define EVENT_RING_DEFAULT_SIZE 1024u
#define EVENT_RING_MAX_SIZE 65536u
/* An event is small (names, a 512-byte migration message); a larger one is kept without its message. */
#define EVENT_RING_MAX_EVENT_BYTES 4096u

struct event_ring;

/* capacity: 1..EVENT_RING_MAX_SIZE events. */
int event_ring_new(unsigned capacity, struct event_ring **ret);
struct event_ring *event_ring_free(struct event_ring *r);
DEFINE_CLEANUP(struct event_ring *, event_ring_free);

/* Gives ev the next sequence number (ev->seq) and keeps a copy, forgetting the oldest when full.
 * The number is given even when the copy cannot be kept (-ENOMEM): that event then counts as
 * dropped for a later replay. */
int event_ring_add(struct event_ring *r, Vsockmux__V1__Event *ev);

uint64_t event_ring_last_seq(const struct event_ring *r);

/* Called for each event a replay yields, in order; a marker (kind EVENTS_DROPPED) first when
 * some event in the range is no longer held. Return < 0 to stop the replay with that error. */
typedef int (*event_ring_fn)(const Vsockmux__V1__Event *ev, void *userdata);

/* Every held event with seq > since_seq and timestamp_ns >= since_ns, oldest first, after a
 * marker when the ring dropped one that may have matched, or when since_seq is ahead of the
 * last event (another daemon's numbering: everything held is replayed). Returns 0 or fn's error. */
int event_ring_replay(const struct event_ring *r, uint64_t since_seq, uint64_t since_ns, event_ring_fn fn,
                      void *userdata);

/* A live upgrade hands the ring over. export: *ret borrows the ring's packed events (valid until
 * the next add; free only ret->events with event_ring_export_done). import, into a ring that has
 * numbered nothing yet: keeps the newest that fit, numbering goes on after in->last_seq. -EBADMSG
 * for an event that does not decode or numbers out of order (nothing kept then), -EBUSY if this
 * ring numbered an event already. */
int event_ring_export(const struct event_ring *r, Vsockmux__State__EventRing *ret);
void event_ring_export_done(Vsockmux__State__EventRing *ret);
int event_ring_import(struct event_ring *r, const Vsockmux__State__EventRing *in);

/* Fills *ret as a marker for the lost events first..last (inclusive), with why in its message
 * (buf holds the text and must outlive *ret). */
void event_ring_marker(uint64_t first, uint64_t last, const char *why, char *buf, size_t buf_len,
                       Vsockmux__V1__Event *ret);
