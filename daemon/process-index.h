/* daemon/process-index.h: a VM's processes by pid, so that finding one (a record mark, a wait, a
 * signal) or the older entries of a reused pid costs a bucket, not a walk of every process; owns
 * the grown bucket array, not the nodes (they live in struct vmm_process). */
#pragma once

#include <stdint.h>

#define PID_INDEX_INLINE_BUCKETS 64u

struct pid_node {
        struct pid_node *next;
        uint32_t pid;
        uint64_t seq; /* creation order: the newest of a reused pid wins */
};

/* Not to be copied once initialised: buckets may point into it. */
struct pid_index {
        struct pid_node **buckets; /* inline, or grown */
        unsigned n_buckets;        /* a power of two */
        unsigned n;
        struct pid_node *inline_buckets[PID_INDEX_INLINE_BUCKETS];
};

void pid_index_init(struct pid_index *x);
/* node is not in the index; pid is not 0. Past two nodes a bucket the buckets double; if that
 * allocation fails the chains only grow longer. */
void pid_index_add(struct pid_index *x, struct pid_node *node, uint32_t pid, uint64_t seq);
/* node is in the index. */
void pid_index_del(struct pid_index *x, struct pid_node *node);
/* The newest node with pid, or NULL. */
struct pid_node *pid_index_newest(const struct pid_index *x, uint32_t pid);
/* pid's nodes: pid_index_first(), then pid_index_next() until NULL (take the next one before
 * deleting the current). */
struct pid_node *pid_index_first(const struct pid_index *x, uint32_t pid);
struct pid_node *pid_index_next(struct pid_node *node, uint32_t pid);
/* Frees the grown buckets; the nodes are the caller's. */
void pid_index_done(struct pid_index *x);
