/* bridge/held.c: the bounded store of messages a resume window holds until their call or container is registered. */
#include "bridge/held.h"

#include <stdlib.h>
#include <string.h>

void bridge_held_init(struct bridge_held *h)
{
        *h = (struct bridge_held){ 0 };
        list_init(&h->msgs);
}

struct bridge_held_msg *bridge_held_msg_free(struct bridge_held_msg *m)
{
        if (m) {
                free(m->container_id);
                free(m->payload);
                free(m);
        }
        return NULL;
}

static void held_unlink(struct bridge_held *h, struct bridge_held_msg *m)
{
        list_del(&m->link);
        h->n--;
        h->bytes -= m->len;
}

int bridge_held_add(struct bridge_held *h, uint32_t type, uint64_t id, const char *container_id, const void *payload,
                    size_t len)
{
        struct bridge_held_msg *m;

        if (h->n >= BRIDGE_HELD_MAX || len > BRIDGE_HELD_MAX_BYTES - h->bytes) {
                h->dropped++;
                return -ENOSPC;
        }
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        list_init(&m->link);
        m->type = type;
        m->id = id;
        m->len = len;
        m->payload = malloc(len ? len : 1);
        if (container_id)
                m->container_id = strdup(container_id);
        if (!m->payload || (container_id && !m->container_id)) {
                bridge_held_msg_free(m);
                return -ENOMEM;
        }
        memcpy(m->payload, payload, len);
        list_add_tail(&h->msgs, &m->link);
        h->n++;
        h->bytes += len;
        return 0;
}

static struct bridge_held_msg *held_take(struct bridge_held *h, bool notification, uint64_t id,
                                         const char *container_id)
{
        struct list_head *pos;

        list_for_each(pos, &h->msgs) {
                struct bridge_held_msg *m = list_entry(pos, struct bridge_held_msg, link);
                bool match = notification ? m->container_id && strcmp(m->container_id, container_id) == 0
                                          : !m->container_id && m->id == id;

                if (match) {
                        held_unlink(h, m);
                        return m;
                }
        }
        return NULL;
}

struct bridge_held_msg *bridge_held_take_response(struct bridge_held *h, uint64_t id)
{
        return held_take(h, false, id, NULL);
}

struct bridge_held_msg *bridge_held_take_notification(struct bridge_held *h, const char *container_id)
{
        return container_id ? held_take(h, true, 0, container_id) : NULL;
}

size_t bridge_held_clear(struct bridge_held *h)
{
        size_t n = h->n;

        while (!list_empty(&h->msgs)) {
                struct bridge_held_msg *m = list_entry(h->msgs.next, struct bridge_held_msg, link);

                held_unlink(h, m);
                bridge_held_msg_free(m);
        }
        return n;
}
