/* sim/sim.c: one simulated guest agent's shared state: start, stop and drop requests, sleeps that end at a stop, its threads. */
#include "sim/sim.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util/log.h"

int sim_init(struct sim *s, const struct sim_options *opt)
{
        pthread_condattr_t attr;
        int r;

        *s = (struct sim){ .opt = *opt, .bridge_fd = -1 };
        if (pthread_condattr_init(&attr) != 0)
                return -ENOMEM;
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cond, &attr);
        pthread_condattr_destroy(&attr);
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->write_lock, NULL);
        sim_stats_init(s);
        r = sim_waits_init(s);
        if (r < 0) {
                sim_stats_done(s);
                pthread_mutex_destroy(&s->write_lock);
                pthread_mutex_destroy(&s->lock);
                pthread_cond_destroy(&s->cond);
                return r;
        }
        return 0;
}

bool sim_stopping(struct sim *s)
{
        bool r;

        pthread_mutex_lock(&s->lock);
        r = s->stopping;
        pthread_mutex_unlock(&s->lock);
        return r;
}

void sim_request_stop(struct sim *s)
{
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        /* Unblocks every thread sitting in read() on a connection. */
        for (struct sim_conn *c = s->conns; c; c = c->next)
                shutdown(c->fd, SHUT_RDWR);
        pthread_cond_broadcast(&s->cond);
        pthread_cond_signal(&s->waits.cond);
        pthread_mutex_unlock(&s->lock);
}

static void sim_drop(struct sim *s, bool stdio_only)
{
        unsigned n = 0;

        pthread_mutex_lock(&s->lock);
        for (struct sim_conn *c = s->conns; c; c = c->next) {
                if (stdio_only && c->port == SIM_BRIDGE_PORT)
                        continue;
                c->dropped = true;
                shutdown(c->fd, SHUT_RDWR);
                n++;
        }
        pthread_mutex_unlock(&s->lock);
        log_warn("fault injection: dropped %u %sconnection(s)", n, stdio_only ? "stdio " : "");
}

void sim_drop_all(struct sim *s)
{
        sim_drop(s, false);
}

void sim_drop_stdio(struct sim *s)
{
        sim_drop(s, true);
}

static struct timespec sim_deadline(unsigned ms)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

bool sim_ack_agreed(struct sim *s)
{
        bool agreed;

        pthread_mutex_lock(&s->lock);
        agreed = s->ack_agreed;
        pthread_mutex_unlock(&s->lock);
        return agreed;
}

bool sim_stdin_eof_agreed(struct sim *s)
{
        bool agreed;

        pthread_mutex_lock(&s->lock);
        agreed = s->stdin_eof_agreed;
        pthread_mutex_unlock(&s->lock);
        return agreed;
}

bool sim_sleep(struct sim *s, unsigned ms)
{
        struct timespec until = sim_deadline(ms);
        bool stopping;

        pthread_mutex_lock(&s->lock);
        while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &until) != ETIMEDOUT)
                ;
        stopping = s->stopping;
        pthread_mutex_unlock(&s->lock);
        return stopping;
}

int sim_thread_start(pthread_t *ret, void *(*fn)(void *), void *arg)
{
        pthread_attr_t attr;
        pthread_t t;
        int r;

        r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        pthread_attr_setstacksize(&attr, SIM_THREAD_STACK);
        if (!ret)
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(ret ?: &t, &attr, fn, arg);
        pthread_attr_destroy(&attr);
        return -r;
}

void sim_thread_enter(struct sim *s)
{
        pthread_mutex_lock(&s->lock);
        s->n_threads++;
        pthread_mutex_unlock(&s->lock);
}

void sim_thread_leave(struct sim *s)
{
        pthread_mutex_lock(&s->lock);
        s->n_threads--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

void sim_done(struct sim *s)
{
        sim_request_stop(s);
        sim_processes_kill_all(s);
        pthread_mutex_lock(&s->lock);
        while (s->n_threads > 0)
                pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        sim_processes_free(s);
        sim_waits_done(s);
        sim_bridge_free_pending(s);
        sim_stats_done(s);
        pthread_mutex_destroy(&s->write_lock);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
}
