/* sim/wait.c: pending WaitForProcess requests. None holds a thread: the process's reaper answers them at exit,
 * and one timer thread answers the deadlines of timed ones (a host probes each process with 50 ms waits). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/codec.h"
#include "bridge/msg.h"
#include "sim/sim.h"
#include "util/log.h"

#define WAIT_HEAP_MIN 64u

struct sim_waiter {
        uint64_t id;
        char *activity_id;
        uint64_t deadline_ns; /* CLOCK_MONOTONIC; 0 = none */
        size_t heap_idx;      /* in s->waits.heap while it has a deadline */
        struct sim_wait_list *list;
        struct sim_waiter *prev, *next; /* on list; next also chains taken waiters */
};

static uint64_t wait_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct sim_waiter *waiter_free(struct sim_waiter *w)
{
        if (w) {
                free(w->activity_id);
                free(w);
        }
        return NULL;
}

static void heap_set(struct sim_waits *ws, size_t i, struct sim_waiter *w)
{
        ws->heap[i] = w;
        w->heap_idx = i;
}

static void heap_up(struct sim_waits *ws, size_t i)
{
        struct sim_waiter *w = ws->heap[i];

        while (i > 0) {
                size_t parent = (i - 1) / 2;

                if (ws->heap[parent]->deadline_ns <= w->deadline_ns)
                        break;
                heap_set(ws, i, ws->heap[parent]);
                i = parent;
        }
        heap_set(ws, i, w);
}

static void heap_down(struct sim_waits *ws, size_t i)
{
        struct sim_waiter *w = ws->heap[i];

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= ws->n_heap)
                        break;
                if (c + 1 < ws->n_heap && ws->heap[c + 1]->deadline_ns < ws->heap[c]->deadline_ns)
                        c++;
                if (w->deadline_ns <= ws->heap[c]->deadline_ns)
                        break;
                heap_set(ws, i, ws->heap[c]);
                i = c;
        }
        heap_set(ws, i, w);
}

static int heap_push(struct sim_waits *ws, struct sim_waiter *w)
{
        if (ws->n_heap == ws->cap_heap) {
                size_t cap = MAX(ws->cap_heap * 2, (size_t)WAIT_HEAP_MIN);
                struct sim_waiter **h = realloc(ws->heap, cap * sizeof(*h));

                if (!h)
                        return -ENOMEM;
                ws->heap = h;
                ws->cap_heap = cap;
        }
        ws->heap[ws->n_heap++] = w;
        heap_up(ws, ws->n_heap - 1);
        return 0;
}

static void heap_remove(struct sim_waits *ws, struct sim_waiter *w)
{
        size_t i = w->heap_idx;
        struct sim_waiter *last = ws->heap[--ws->n_heap];

        if (last == w)
                return;
        heap_set(ws, i, last);
        heap_down(ws, i);
        heap_up(ws, last->heap_idx);
}

/* Off its list and the heap; the caller answers or frees it. */
static void waiter_unregister_locked(struct sim *s, struct sim_waiter *w)
{
        if (w->prev)
                w->prev->next = w->next;
        else
                w->list->head = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->list->n--;
        if (w->deadline_ns)
                heap_remove(&s->waits, w);
        s->waits.n--;
        w->list = NULL;
        w->prev = w->next = NULL;
}

int sim_wait_add_locked(struct sim *s, struct sim_wait_list *l, uint64_t id, const char *activity_id, uint32_t timeout_ms)
{
        struct sim_waiter *w;

        if (s->waits.n >= SIM_MAX_WAITERS || l->n >= SIM_MAX_WAITERS_PER_PROCESS)
                return -EBUSY;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->id = id;
        if (activity_id && !(w->activity_id = strdup(activity_id))) {
                waiter_free(w);
                return -ENOMEM;
        }
        if (timeout_ms != BRIDGE_WAIT_INFINITE) {
                w->deadline_ns = wait_now_ns() + (uint64_t)timeout_ms * 1000000u;
                if (heap_push(&s->waits, w) < 0) {
                        waiter_free(w);
                        return -ENOMEM;
                }
                /* Only a new earliest deadline changes when the timer must wake. */
                if (s->waits.heap[0] == w)
                        pthread_cond_signal(&s->waits.cond);
        }
        w->list = l;
        w->next = l->head;
        if (l->head)
                l->head->prev = w;
        l->head = w;
        l->n++;
        s->waits.n++;
        return 0;
}

struct sim_waiter *sim_wait_list_take_locked(struct sim *s, struct sim_wait_list *l)
{
        struct sim_waiter *chain = NULL;

        /* The list is newest first; the chain comes out in arrival order. */
        while (l->head) {
                struct sim_waiter *w = l->head;

                waiter_unregister_locked(s, w);
                w->next = chain;
                chain = w;
        }
        return chain;
}

static void wait_reply(struct sim *s, uint64_t id, const char *activity_id, int32_t result, const char *message,
                       uint32_t exit_code, bool flush)
{
        struct bridge_response resp = { .result = result, .error_message = message, .activity_id = activity_id };
        uint8_t *buf = NULL;
        size_t len;
        int r;

        resp.wait.exit_code = exit_code;
        r = bridge_response_frame(BRIDGE_RPC_WAIT_FOR_PROCESS, id, &resp, &buf, &len);
        if (r < 0) {
                log_error("bridge: cannot encode the reply to wait id %llu: %s", (unsigned long long)id, strerror(-r));
                return;
        }
        if (flush)
                sim_bridge_send(s, buf, len);
        else
                sim_bridge_queue(s, buf, len);
}

void sim_wait_reply(struct sim *s, uint64_t id, const char *activity_id, int32_t result, const char *message,
                    uint32_t exit_code)
{
        wait_reply(s, id, activity_id, result, message, exit_code, true);
}

void sim_waiters_queue_answers(struct sim *s, struct sim_waiter *chain, uint32_t exit_code)
{
        while (chain) {
                struct sim_waiter *w = chain;

                chain = w->next;
                wait_reply(s, w->id, w->activity_id, 0, NULL, exit_code, false);
                waiter_free(w);
        }
}

void sim_waiters_free(struct sim_waiter *chain)
{
        while (chain) {
                struct sim_waiter *w = chain;

                chain = w->next;
                waiter_free(w);
        }
}

static void *wait_timer(void *arg)
{
        struct sim *s = arg;
        struct sim_waits *ws = &s->waits;

        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                struct sim_waiter *chain = NULL, **tail = &chain;
                uint64_t now;

                if (ws->n_heap == 0) {
                        pthread_cond_wait(&ws->cond, &s->lock);
                        continue;
                }
                now = wait_now_ns();
                if (ws->heap[0]->deadline_ns > now) {
                        struct timespec until = { .tv_sec = (time_t)(ws->heap[0]->deadline_ns / 1000000000u),
                                                  .tv_nsec = (long)(ws->heap[0]->deadline_ns % 1000000000u) };

                        pthread_cond_timedwait(&ws->cond, &s->lock, &until);
                        continue;
                }
                while (ws->n_heap > 0 && ws->heap[0]->deadline_ns <= now) {
                        struct sim_waiter *w = ws->heap[0];

                        waiter_unregister_locked(s, w);
                        *tail = w;
                        tail = &w->next;
                }
                /* Replies may block on the bridge: never under the lock the reapers and the reader need. */
                pthread_mutex_unlock(&s->lock);
                while (chain) {
                        struct sim_waiter *w = chain;

                        chain = w->next;
                        sim_wait_reply(s, w->id, w->activity_id, BRIDGE_HR_TIMEOUT, "wait timed out", 0);
                        waiter_free(w);
                }
                pthread_mutex_lock(&s->lock);
        }
        pthread_mutex_unlock(&s->lock);
        sim_thread_leave(s);
        return NULL;
}

int sim_waits_init(struct sim *s)
{
        pthread_condattr_t attr;
        int r;

        if (pthread_condattr_init(&attr) != 0)
                return -ENOMEM;
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        r = -pthread_cond_init(&s->waits.cond, &attr);
        pthread_condattr_destroy(&attr);
        if (r < 0)
                return r;
        sim_thread_enter(s);
        r = sim_thread_start(NULL, wait_timer, s);
        if (r < 0) {
                sim_thread_leave(s);
                pthread_cond_destroy(&s->waits.cond);
                return r;
        }
        return 0;
}

void sim_waits_done(struct sim *s)
{
        /* Waiters still registered went with their processes (sim_processes_free). */
        free(s->waits.heap);
        pthread_cond_destroy(&s->waits.cond);
        s->waits = (struct sim_waits) {};
}
