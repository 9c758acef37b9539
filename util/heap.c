/* util/heap.c: the intrusive min-heap on (key, tie). */
#include "util/heap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/array.h"

#define HEAP_MIN_CAP 16u

static bool node_less(const struct heap_node *a, const struct heap_node *b)
{
        return a->key != b->key ? a->key < b->key : a->tie < b->tie;
}

static void node_set(struct heap *h, size_t i, struct heap_node *n)
{
        h->v[i] = n;
        n->index = i;
}

static void sift_up(struct heap *h, size_t i)
{
        struct heap_node *n = h->v[i];

        while (i > 0) {
                size_t parent = (i - 1) / 2;

                if (!node_less(n, h->v[parent]))
                        break;
                node_set(h, i, h->v[parent]);
                i = parent;
        }
        node_set(h, i, n);
}

static void sift_down(struct heap *h, size_t i)
{
        struct heap_node *n = h->v[i];

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= h->len)
                        break;
                if (c + 1 < h->len && node_less(h->v[c + 1], h->v[c]))
                        c++;
                if (!node_less(h->v[c], n))
                        break;
                node_set(h, i, h->v[c]);
                i = c;
        }
        node_set(h, i, n);
}

int heap_push(struct heap *h, struct heap_node *n)
{
        if (ARRAY_RESERVE_ONE(h->v, h->len, h->cap, HEAP_MIN_CAP) < 0)
                return -ENOMEM;
        node_set(h, h->len++, n);
        sift_up(h, n->index);
        return 0;
}

void heap_remove(struct heap *h, struct heap_node *n)
{
        size_t i = n->index;

        if (i == HEAP_NONE)
                return;
        n->index = HEAP_NONE;
        if (i == --h->len)
                return;
        node_set(h, i, h->v[h->len]);
        sift_up(h, i);
        sift_down(h, h->v[i]->index);
}

void heap_done(struct heap *h)
{
        free(h->v);
        *h = (struct heap){};
}
