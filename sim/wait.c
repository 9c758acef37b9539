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

struct sim_waiter {
        uint64_t id;
        char *activity_id;
        struct heap_node deadline; /* key: CLOCK_MONOTONIC ns; in s->waits.deadlines only when timed */
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
        heap_remove(&s->waits.deadlines, &w->deadline);
        s->waits.n--;
        w->list = NULL;
        w->prev = w->next = NULL;
}

int sim_wait_add_locked(struct sim *s, struct sim_wait_list *l, uint64_t id, const char *activity_id,
                        uint32_t timeout_ms)
{
        struct sim_waiter *w;

        if (s->waits.n >= SIM_MAX_WAITERS || l->n >= SIM_MAX_WAITERS_PER_PROCESS)
                return -EBUSY;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->id = id;
        w->deadline.index = HEAP_NONE;
        if (activity_id && !(w->activity_id = strdup(activity_id))) {
                waiter_free(w);
                return -ENOMEM;
        }
        if (timeout_ms != BRIDGE_WAIT_INFINITE) {
                w->deadline.key = wait_now_ns() + (uint64_t)timeout_ms * 1000000u;
                w->deadline.tie = id;
                if (heap_push(&s->waits.deadlines, &w->deadline) < 0) {
                        waiter_free(w);
                        return -ENOMEM;
                }
                /* Only a new earliest deadline changes when the timer must wake. */
                if (heap_top(&s->waits.deadlines) == &w->deadline)
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
        sim_bridge_queue_counted(s, buf, len,
                                 result == 0                     ? SIM_STAT_WAIT_EXITED_SENT
                                 : result == BRIDGE_HR_NOT_FOUND ? SIM_STAT_WAIT_NOT_FOUND_SENT
                                 : result == BRIDGE_HR_TIMEOUT   ? SIM_STAT_WAIT_TIMEOUT_SENT
                                                                 : SIM_STAT_NONE);
        if (flush)
                sim_bridge_flush(s);
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
                struct heap_node *top = heap_top(&ws->deadlines);
                uint64_t now;

                if (!top) {
                        pthread_cond_wait(&ws->cond, &s->lock);
                        continue;
                }
                now = wait_now_ns();
                if (top->key > now) {
                        struct timespec until = { .tv_sec = (time_t)(top->key / 1000000000u),
                                                  .tv_nsec = (long)(top->key % 1000000000u) };

                        pthread_cond_timedwait(&ws->cond, &s->lock, &until);
                        continue;
                }
                while ((top = heap_top(&ws->deadlines)) && top->key <= now) {
                        struct sim_waiter *w = container_of(top, struct sim_waiter, deadline);

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
        heap_done(&s->waits.deadlines);
        pthread_cond_destroy(&s->waits.cond);
        s->waits = (struct sim_waits){};
}
