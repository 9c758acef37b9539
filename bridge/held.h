/* bridge/held.h: struct bridge_held owns the messages a resume window holds until their call or container is registered (bounded, V1); no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/list.h"
#include "util/macro.h"

#define BRIDGE_HELD_MAX 4096u
#define BRIDGE_HELD_MAX_BYTES (1u << 20)

struct bridge_held_msg {
        struct list_head link;
        uint32_t type;      /* frame type: a response, or BRIDGE_NOTIFY_CONTAINER */
        uint64_t id;        /* responses */
        char *container_id; /* notifications; NULL for responses */
        char *payload;
        size_t len;
};

/* Oldest first. Embedded in its owner; bridge_held_clear() before it goes. */
struct bridge_held {
        struct list_head msgs; /* struct bridge_held_msg */
        size_t n, bytes;
        uint64_t dropped; /* refused because a cap was reached, since init */
};

void bridge_held_init(struct bridge_held *h);
/* Copies the message. 0 when held, -ENOSPC when BRIDGE_HELD_MAX or BRIDGE_HELD_MAX_BYTES would be
 * exceeded (the message is refused and counted in `dropped`), -ENOMEM. container_id NULL holds a
 * response. */
int bridge_held_add(struct bridge_held *h, uint32_t type, uint64_t id, const char *container_id, const void *payload,
                    size_t len);
/* The oldest held response with that id, or notification for that container, taken out of the
 * store (the caller frees it); NULL when none. */
struct bridge_held_msg *bridge_held_take_response(struct bridge_held *h, uint64_t id);
struct bridge_held_msg *bridge_held_take_notification(struct bridge_held *h, const char *container_id);
struct bridge_held_msg *bridge_held_msg_free(struct bridge_held_msg *m);
DEFINE_CLEANUP(struct bridge_held_msg *, bridge_held_msg_free);
/* Drops everything held; returns how many there were. */
size_t bridge_held_clear(struct bridge_held *h);
