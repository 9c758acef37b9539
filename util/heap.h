/* util/heap.h: struct heap owns an array of pointers to nodes its caller owns (one node embedded per element): a min-heap on (key, tie). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HEAP_NONE SIZE_MAX

struct heap_node {
        uint64_t key; /* smallest first: a deadline */
        uint64_t tie; /* among equal keys, smallest first: an id, so the order is stable */
        size_t index; /* position in the heap, HEAP_NONE when not in one */
};

struct heap {
        struct heap_node **v;
        size_t len, cap;
};

/* 0, or -ENOMEM (the node stays out). */
int heap_push(struct heap *h, struct heap_node *n);
/* A no-op for a node that is not in the heap. */
void heap_remove(struct heap *h, struct heap_node *n);
/* Frees the array, not the nodes. */
void heap_done(struct heap *h);

static inline struct heap_node *heap_top(const struct heap *h)
{
        return h->len ? h->v[0] : NULL;
}
