/* relay/timer.c: one-shot timers in a min-heap; the loop's wait timeout is the earliest deadline. */
#include <stdlib.h>

#include "relay/internal.h"

#define TIMER_UNARMED UINT32_MAX

struct relay_timer {
        struct relay *r;
        relay_timer_fn fn;
        void *userdata;
        uint64_t deadline;
        uint32_t idx;
};

static void heap_swap(struct relay *r, uint32_t a, uint32_t b)
{
        struct relay_timer *t = r->heap[a];

        r->heap[a] = r->heap[b];
        r->heap[b] = t;
        r->heap[a]->idx = a;
        r->heap[b]->idx = b;
}

static void heap_up(struct relay *r, uint32_t i)
{
        while (i > 0) {
                uint32_t p = (i - 1) / 2;
                if (r->heap[p]->deadline <= r->heap[i]->deadline)
                        break;
                heap_swap(r, i, p);
                i = p;
        }
}

static void heap_down(struct relay *r, uint32_t i)
{
        for (;;) {
                uint32_t l = 2 * i + 1, m = i;
                if (l < r->heap_n && r->heap[l]->deadline < r->heap[m]->deadline)
                        m = l;
                if (l + 1 < r->heap_n && r->heap[l + 1]->deadline < r->heap[m]->deadline)
                        m = l + 1;
                if (m == i)
                        break;
                heap_swap(r, i, m);
                i = m;
        }
}

static void heap_remove(struct relay *r, struct relay_timer *t)
{
        uint32_t i = t->idx, last = r->heap_n - 1;

        if (i != last) {
                heap_swap(r, i, last);
                r->heap_n--;
                heap_down(r, i);
                heap_up(r, i);
        } else
                r->heap_n--;
        t->idx = TIMER_UNARMED;
}

int relay_timer_new(struct relay *r, relay_timer_fn fn, void *userdata, struct relay_timer **ret)
{
        struct relay_timer *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        *t = (struct relay_timer){ .r = r, .fn = fn, .userdata = userdata, .idx = TIMER_UNARMED };
        *ret = t;
        return 0;
}

int relay_timer_arm(struct relay_timer *t, uint64_t after_ns)
{
        struct relay *r = t->r;
        uint64_t now = relay_now_ns(r);

        if (t->idx != TIMER_UNARMED)
                heap_remove(r, t);
        if (r->heap_n == r->heap_cap) {
                unsigned cap = r->heap_cap ? r->heap_cap * 2 : 16;
                struct relay_timer **h = realloc(r->heap, cap * sizeof(*h));
                if (!h)
                        return -ENOMEM;
                r->heap = h;
                r->heap_cap = cap;
        }
        t->deadline = after_ns > UINT64_MAX - now ? UINT64_MAX - 1 : now + after_ns;
        t->idx = r->heap_n++;
        r->heap[t->idx] = t;
        heap_up(r, t->idx);
        return 0;
}

void relay_timer_disarm(struct relay_timer *t)
{
        if (t && t->idx != TIMER_UNARMED)
                heap_remove(t->r, t);
}

bool relay_timer_is_armed(const struct relay_timer *t)
{
        return t->idx != TIMER_UNARMED;
}

struct relay_timer *relay_timer_free(struct relay_timer *t)
{
        if (!t)
                return NULL;
        relay_timer_disarm(t);
        free(t);
        return NULL;
}

uint64_t relay_timers_next_deadline(struct relay *r)
{
        return r->heap_n ? r->heap[0]->deadline : UINT64_MAX;
}

void relay_timers_run(struct relay *r)
{
        uint64_t now = relay_now_ns(r);

        /* A callback may arm, disarm or free any timer; the heap root is re-read every turn. */
        while (r->heap_n && r->heap[0]->deadline <= now) {
                struct relay_timer *t = r->heap[0];
                heap_remove(r, t);
                t->fn(t, t->userdata);
        }
}

void relay_timers_done(struct relay *r)
{
        for (unsigned i = 0; i < r->heap_n; i++)
                r->heap[i]->idx = TIMER_UNARMED;
        free(r->heap);
        r->heap = NULL;
        r->heap_n = r->heap_cap = 0;
}
