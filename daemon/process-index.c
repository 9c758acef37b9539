/* daemon/process-index.c: a VM's processes by pid: chained buckets, doubled past two nodes a bucket. */
#include "daemon/process-index.h"

#include <stdlib.h>

static unsigned pid_bucket(unsigned n_buckets, uint32_t pid)
{
        /* Guests hand out pids in order: Fibonacci hashing spreads such runs over the buckets. */
        return (unsigned)(((uint64_t)pid * 11400714819323198485ull) >> 40) & (n_buckets - 1);
}

void pid_index_init(struct pid_index *x)
{
        *x = (struct pid_index){ .n_buckets = PID_INDEX_INLINE_BUCKETS };
        x->buckets = x->inline_buckets;
}

static void pid_index_grow(struct pid_index *x)
{
        unsigned n = x->n_buckets * 2;
        struct pid_node **b = calloc(n, sizeof(*b));

        if (!b)
                return;
        for (unsigned i = 0; i < x->n_buckets; i++)
                for (struct pid_node *e = x->buckets[i], *following; e; e = following) {
                        unsigned k = pid_bucket(n, e->pid);

                        following = e->next;
                        e->next = b[k];
                        b[k] = e;
                }
        if (x->buckets != x->inline_buckets)
                free(x->buckets);
        x->buckets = b;
        x->n_buckets = n;
}

void pid_index_add(struct pid_index *x, struct pid_node *node, uint32_t pid, uint64_t seq)
{
        unsigned k;

        if (x->n >= x->n_buckets * 2)
                pid_index_grow(x);
        k = pid_bucket(x->n_buckets, pid);
        node->pid = pid;
        node->seq = seq;
        node->next = x->buckets[k];
        x->buckets[k] = node;
        x->n++;
}

void pid_index_del(struct pid_index *x, struct pid_node *node)
{
        for (struct pid_node **e = &x->buckets[pid_bucket(x->n_buckets, node->pid)]; *e; e = &(*e)->next)
                if (*e == node) {
                        *e = node->next;
                        node->next = NULL;
                        x->n--;
                        return;
                }
}

struct pid_node *pid_index_next(struct pid_node *node, uint32_t pid)
{
        for (node = node ? node->next : NULL; node && node->pid != pid; node = node->next)
                ;
        return node;
}

struct pid_node *pid_index_first(const struct pid_index *x, uint32_t pid)
{
        struct pid_node *e = x->buckets[pid_bucket(x->n_buckets, pid)];

        return e && e->pid != pid ? pid_index_next(e, pid) : e;
}

struct pid_node *pid_index_newest(const struct pid_index *x, uint32_t pid)
{
        struct pid_node *best = NULL;

        for (struct pid_node *e = pid_index_first(x, pid); e; e = pid_index_next(e, pid))
                if (!best || e->seq > best->seq)
                        best = e;
        return best;
}

void pid_index_done(struct pid_index *x)
{
        if (x->buckets != x->inline_buckets)
                free(x->buckets);
        pid_index_init(x);
}
