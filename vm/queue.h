/* vm/queue.h: the bounded event queue from a migration's threads to the caller's loop; owns its eventfd, not its lock (the caller locks). */
#pragma once

#include <stdbool.h>

#include "vm/migration.h"

/* Progress and iteration events are dropped, never the others, once this few slots are free. */
#define VM_QUEUE_RESERVED 16u

struct vm_event_queue {
        struct vm_migration_event events[VM_MIGRATION_QUEUE_MAX];
        unsigned head;
        unsigned count;
        bool terminal_queued; /* nothing is queued after the terminal event */
        bool terminal_delivered;
        int fd; /* readable exactly while count > 0 */
};

bool vm_migration_event_is_terminal(enum vm_migration_event_kind k);

/* Returns 0 or -errno (the eventfd). */
int vm_event_queue_init(struct vm_event_queue *q);
void vm_event_queue_done(struct vm_event_queue *q);

/* Appends e unless it comes after the terminal event or the queue is (nearly, for progress)
 * full. Returns whether it was queued. */
bool vm_event_queue_push(struct vm_event_queue *q, const struct vm_migration_event *e);

/* Pops the oldest event: 0, -EAGAIN when empty, -ENODATA once the terminal event was popped. */
int vm_event_queue_pop(struct vm_event_queue *q, struct vm_migration_event *ret);
