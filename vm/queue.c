/* vm/queue.c: the migration event queue and its eventfd. */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/macro.h"
#include "vm/queue.h"

bool vm_migration_event_is_terminal(enum vm_migration_event_kind k)
{
        return k == VM_MIGRATION_EVENT_COMPLETED || k == VM_MIGRATION_EVENT_FAILED || k == VM_MIGRATION_EVENT_ABORTED;
}

int vm_event_queue_init(struct vm_event_queue *q)
{
        q->head = q->count = 0;
        q->terminal_queued = q->terminal_delivered = false;
        q->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        return q->fd < 0 ? negative_errno() : 0;
}

void vm_event_queue_done(struct vm_event_queue *q)
{
        q->fd = safe_close(q->fd);
}

bool vm_event_queue_push(struct vm_event_queue *q, const struct vm_migration_event *e)
{
        bool droppable = e->kind == VM_MIGRATION_EVENT_PROGRESS || e->kind == VM_MIGRATION_EVENT_ITERATION;
        uint64_t one = 1;

        if (q->terminal_queued || q->count == VM_MIGRATION_QUEUE_MAX ||
            (droppable && VM_MIGRATION_QUEUE_MAX - q->count <= VM_QUEUE_RESERVED))
                return false;
        q->events[(q->head + q->count) % VM_MIGRATION_QUEUE_MAX] = *e;
        /* Wake the caller's loop only when the queue turns non-empty. */
        if (q->count++ == 0)
                (void)!write(q->fd, &one, sizeof(one));
        if (vm_migration_event_is_terminal(e->kind))
                q->terminal_queued = true;
        return true;
}

int vm_event_queue_pop(struct vm_event_queue *q, struct vm_migration_event *ret)
{
        uint64_t v;

        if (q->count == 0)
                return q->terminal_delivered ? -ENODATA : -EAGAIN;
        *ret = q->events[q->head];
        q->head = (q->head + 1) % VM_MIGRATION_QUEUE_MAX;
        if (--q->count == 0) {
                (void)!read(q->fd, &v, sizeof(v));
                if (q->terminal_queued)
                        q->terminal_delivered = true;
        }
        return 0;
}
