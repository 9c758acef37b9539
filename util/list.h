/* util/list.h: intrusive doubly-linked lists; owns nothing, the entries belong to their container. */
#pragma once

#include <stddef.h>

#include "util/macro.h"

struct list_head {
        struct list_head *prev, *next;
};

#define LIST_HEAD_INIT(name)     \
        {                        \
                &(name), &(name) \
        }

static inline void list_init(struct list_head *h)
{
        h->prev = h->next = h;
}

static inline int list_empty(const struct list_head *h)
{
        return h->next == h;
}

static inline void list_add_tail(struct list_head *h, struct list_head *e)
{
        e->prev = h->prev;
        e->next = h;
        h->prev->next = e;
        h->prev = e;
}

/* Leaves the entry self-linked, so removing it twice is harmless. */
static inline void list_del(struct list_head *e)
{
        e->prev->next = e->next;
        e->next->prev = e->prev;
        e->prev = e->next = e;
}

#define list_entry(ptr, type, member) container_of(ptr, type, member)

/* Safe against removal of the current entry. */
#define list_for_each_safe(pos, tmp, head) \
        for (pos = (head)->next, tmp = pos->next; pos != (head); pos = tmp, tmp = pos->next)

#define list_for_each(pos, head) for (pos = (head)->next; pos != (head); pos = pos->next)
