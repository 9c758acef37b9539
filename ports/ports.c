/* ports/ports.c: one VM's stdio port floor and the reservations of restored ports. */
#include "ports/ports.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"

struct ports {
        uint32_t next;
        /* Sorted, so a restore of thousands of ports checks duplicates by bisection. */
        uint32_t *reserved;
        size_t n_reserved;
        size_t cap_reserved;
};

int ports_new(struct ports **ret)
{
        struct ports *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->next = PORTS_FIRST;
        *ret = p;
        return 0;
}

struct ports *ports_free(struct ports *p)
{
        if (p) {
                free(p->reserved);
                free(p);
        }
        return NULL;
}

int ports_alloc(struct ports *p, uint32_t *ret_port)
{
        if (p->next == PORTS_EXHAUSTED)
                return -ENOSPC;
        *ret_port = p->next++;
        return 0;
}

uint32_t ports_floor(const struct ports *p)
{
        return p->next;
}

int ports_raise_floor(struct ports *p, uint32_t floor)
{
        if (floor < p->next)
                return -ERANGE;
        p->next = floor;
        return 0;
}

/* Index of the first reserved port >= port. */
static size_t ports_bisect(const struct ports *p, uint32_t port)
{
        size_t lo = 0, hi = p->n_reserved;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (p->reserved[mid] < port)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

bool ports_is_reserved(const struct ports *p, uint32_t port)
{
        size_t i = ports_bisect(p, port);

        return i < p->n_reserved && p->reserved[i] == port;
}

int ports_reserve(struct ports *p, uint32_t port)
{
        size_t i;

        if (port < PORTS_FIRST || port >= p->next)
                return -ERANGE;
        i = ports_bisect(p, port);
        if (i < p->n_reserved && p->reserved[i] == port)
                return -EEXIST;
        if (ARRAY_RESERVE_ONE(p->reserved, p->n_reserved, p->cap_reserved, 16) < 0)
                return -ENOMEM;
        memmove(p->reserved + i + 1, p->reserved + i, (p->n_reserved - i) * sizeof(*p->reserved));
        p->reserved[i] = port;
        p->n_reserved++;
        return 0;
}

size_t ports_reserved_count(const struct ports *p)
{
        return p->n_reserved;
}
