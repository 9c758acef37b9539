/* relay/pipe-pool.c: the pipes the splice path borrows: made on first need, lent to a stream only
 * while it has bytes in one, kept empty on a free list between loans. cfg.splice_pipes of them
 * have their fds kept back from the stream capacity; up to cfg.splice_pipes_max use the fds of
 * stream slots nobody holds, so that many busy streams splice instead of copying, and give them
 * back as streams come. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "relay/internal.h"

static int pipe_make(struct relay *r, struct relay_pipe **ret)
{
        struct relay_pipe *p;
        int fds[2], sz;

        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
                return -errno;
        p = calloc(1, sizeof(*p));
        if (!p) {
                safe_close(fds[0]);
                safe_close(fds[1]);
                return -ENOMEM;
        }
        /* A bigger pipe moves more per pair of splices; the per-user pipe page budget may refuse
         * it (fs.pipe-user-pages-soft), then the default size does. */
        if (r->cfg.splice_pipe_size > 0)
                (void)fcntl(fds[1], F_SETPIPE_SZ, (int)r->cfg.splice_pipe_size);
        sz = fcntl(fds[1], F_GETPIPE_SZ);
        *p = (struct relay_pipe){ .rfd = fds[0], .wfd = fds[1], .size = sz > 0 ? (size_t)sz : 65536 };
        r->pipes_made++;
        *ret = p;
        return 0;
}

static struct relay_pipe *pipe_destroy(struct relay *r, struct relay_pipe *p)
{
        if (!p)
                return NULL;
        safe_close(p->rfd);
        safe_close(p->wfd);
        r->pipes_made--;
        free(p);
        return NULL;
}

/* Stream slots kept free of borrowed pipes: an exec opens its endpoint before the relay counts
 * its stream, so a burst of execs must find the fds it was promised. */
#define PIPES_SLACK_SHIFT 3

/* Each pipe is two fds, as a stream is: a pipe over the reserve takes one spare stream slot. */
static unsigned pipes_allowed(const struct relay *r)
{
        unsigned used = r->n_streams + r->n_listeners, slack = r->capacity >> PIPES_SLACK_SHIFT;

        if (r->capacity <= used + slack)
                return r->cfg.splice_pipes;
        return MIN(r->cfg.splice_pipes_max, r->cfg.splice_pipes + (r->capacity - used - slack));
}

/* Closes free pipes while more than keep are open; lent ones come back through relay_pipe_put. */
static void pipes_close_free_over(struct relay *r, unsigned keep)
{
        while (r->pipes_free && r->pipes_made > keep) {
                struct relay_pipe *p = r->pipes_free;

                r->pipes_free = p->next;
                pipe_destroy(r, p);
        }
}

void relay_pipes_trim(struct relay *r)
{
        pipes_close_free_over(r, pipes_allowed(r));
}

static void pipes_on_idle(struct relay_timer *t, void *userdata);

/* Borrowed pipes on the free list: close them once a whole period passed without a loan (bulk has
 * moved on), so a burst does not leave up to splice_pipes_max empty pipes behind for good. */
static void pipes_idle_arm(struct relay *r)
{
        if (r->pipes_made <= r->cfg.splice_pipes || !r->pipes_free)
                return;
        if (!r->pipes_idle && relay_timer_new(r, pipes_on_idle, r, &r->pipes_idle) < 0)
                return; /* out of memory: they go as streams come */
        if (relay_timer_is_armed(r->pipes_idle))
                return;
        r->pipes_loans_seen = r->pipes_loans;
        (void)relay_timer_arm(r->pipes_idle, (uint64_t)r->cfg.splice_pipes_idle_ms * 1000 * 1000);
}

static void pipes_on_idle(struct relay_timer *t, void *userdata)
{
        struct relay *r = userdata;

        if (r->pipes_loans == r->pipes_loans_seen)
                pipes_close_free_over(r, r->cfg.splice_pipes);
        pipes_idle_arm(r); /* still busy: look again a period later */
}

int relay_pipe_get(struct relay *r, struct relay_pipe **ret)
{
        struct relay_pipe *p = r->pipes_free;
        int k;

        if (p)
                r->pipes_free = p->next;
        else {
                if (r->pipes_made >= pipes_allowed(r))
                        return -EBUSY;
                k = pipe_make(r, &p);
                if (k < 0)
                        return k;
        }
        p->next = NULL;
        r->pipes_lent++;
        r->pipes_loans++;
        *ret = p;
        return 0;
}

struct relay_pipe *relay_pipe_put(struct relay *r, struct relay_pipe *p, bool empty)
{
        if (!p)
                return NULL;
        r->pipes_lent--;
        /* Bytes nobody will take (a dead endpoint, a freed stream) cannot be drained cheaply: the
         * pipe goes, and the next loan makes a new one. A borrowed pipe the streams now need goes too. */
        if (!empty || r->pipes_made > pipes_allowed(r))
                return pipe_destroy(r, p);
        p->next = r->pipes_free;
        r->pipes_free = p;
        pipes_idle_arm(r);
        return NULL;
}

void relay_pipes_done(struct relay *r)
{
        r->pipes_idle = relay_timer_free(r->pipes_idle);
        pipes_close_free_over(r, 0);
}
