/* bridge/calls.c: the call table: calls hashed by id, live ones and zombies in their own lists, deadlines in a heap. */
#include "bridge/calls.h"

#include <stdlib.h>
#include <string.h>

#define BRIDGE_CALLS_BUCKETS_MIN 64u

struct bridge_calls_list {
        struct list_head head; /* struct bridge_call.node, oldest first */
        size_t n;
};

struct bridge_calls {
        uint64_t next_id;

        /* id -> call, chained; holds live calls and zombies. Grows to keep chains short. */
        struct bridge_call **buckets;
        size_t n_buckets;
        size_t n_entries;

        struct bridge_calls_list live;
        struct bridge_calls_list zombies;

        /* Live calls with a deadline: waits (no deadline) never enter it. */
        struct heap deadlines;
};

static const char *const bridge_status_names[_BRIDGE_STATUS_MAX] = {
        [BRIDGE_STATUS_OK] = "ok",
        [BRIDGE_STATUS_GUEST_ERROR] = "guest error",
        [BRIDGE_STATUS_CLOSED] = "bridge closed",
        [BRIDGE_STATUS_TIMEOUT] = "timeout",
        [BRIDGE_STATUS_EXIT_LOST] = "exit status lost",
        [BRIDGE_STATUS_ALREADY_GONE] = "already gone",
        [BRIDGE_STATUS_BAD_REPLY] = "bad reply",
        [BRIDGE_STATUS_SEND_FAILED] = "send failed",
};

const char *bridge_status_to_string(enum bridge_status s)
{
        if (s < 0 || s >= _BRIDGE_STATUS_MAX)
                return NULL;
        return bridge_status_names[s];
}

static size_t hash_id(uint64_t id, size_t n_buckets)
{
        /* Ids are sequential; a multiplicative mix still spreads seeded and adopted ranges. */
        return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 17) & (n_buckets - 1);
}

/* A util/list.h list that also counts its entries. */
static void calls_list_append(struct bridge_calls_list *l, struct bridge_call *c)
{
        list_add_tail(&l->head, &c->node);
        l->n++;
}

static void calls_list_remove(struct bridge_calls_list *l, struct bridge_call *c)
{
        list_del(&c->node);
        l->n--;
}

static struct bridge_call *calls_list_first(const struct bridge_calls_list *l)
{
        return list_empty(&l->head) ? NULL : list_entry(l->head.next, struct bridge_call, node);
}

/* ---- hash ---- */

static int hash_grow(struct bridge_calls *t)
{
        size_t n = t->n_buckets * 2;
        struct bridge_call **b = calloc(n, sizeof(*b));

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_buckets; i++) {
                struct bridge_call *c = t->buckets[i], *next;
                for (; c; c = next) {
                        size_t h = hash_id(c->id, n);
                        next = c->hash_next;
                        c->hash_next = b[h];
                        b[h] = c;
                }
        }
        free(t->buckets);
        t->buckets = b;
        t->n_buckets = n;
        return 0;
}

static struct bridge_call *hash_find(const struct bridge_calls *t, uint64_t id)
{
        struct bridge_call *c = t->buckets[hash_id(id, t->n_buckets)];

        while (c && c->id != id)
                c = c->hash_next;
        return c;
}

static void hash_insert(struct bridge_calls *t, struct bridge_call *c)
{
        size_t h;

        /* Growth failing only costs longer chains. */
        if (t->n_entries >= t->n_buckets)
                (void)hash_grow(t);
        h = hash_id(c->id, t->n_buckets);
        c->hash_next = t->buckets[h];
        t->buckets[h] = c;
        t->n_entries++;
}

static void hash_remove(struct bridge_calls *t, struct bridge_call *c)
{
        struct bridge_call **p = &t->buckets[hash_id(c->id, t->n_buckets)];

        while (*p && *p != c)
                p = &(*p)->hash_next;
        if (*p) {
                *p = c->hash_next;
                t->n_entries--;
        }
        c->hash_next = NULL;
}

static struct bridge_call *call_free(struct bridge_call *c)
{
        if (c) {
                free(c->container_id);
                free(c);
        }
        return NULL;
}

/* Unlinks an entry, live or zombie, from every index. */
static void entry_unlink(struct bridge_calls *t, struct bridge_call *c)
{
        hash_remove(t, c);
        heap_remove(&t->deadlines, &c->deadline);
        calls_list_remove(c->zombie ? &t->zombies : &t->live, c);
}

int bridge_calls_new(struct bridge_calls **ret)
{
        struct bridge_calls *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        list_init(&t->live.head);
        list_init(&t->zombies.head);
        t->n_buckets = BRIDGE_CALLS_BUCKETS_MIN;
        t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
        if (!t->buckets) {
                free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

struct bridge_calls *bridge_calls_free(struct bridge_calls *t)
{
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_buckets; i++) {
                struct bridge_call *c = t->buckets[i], *next;
                for (; c; c = next) {
                        next = c->hash_next;
                        call_free(c);
                }
        }
        free(t->buckets);
        heap_done(&t->deadlines);
        free(t);
        return NULL;
}

uint64_t bridge_calls_next_id(const struct bridge_calls *t)
{
        return t->next_id;
}

int bridge_calls_seed_next_id(struct bridge_calls *t, uint64_t next)
{
        if (next < t->next_id)
                return -ERANGE;
        t->next_id = next;
        return 0;
}

static void forget_oldest_zombies(struct bridge_calls *t, size_t keep)
{
        while (t->zombies.n > keep) {
                struct bridge_call *z = calls_list_first(&t->zombies);
                entry_unlink(t, z);
                call_free(z);
        }
}

static int entry_new(struct bridge_calls *t, uint64_t id, uint32_t type, uint32_t flags, uint64_t deadline_ns,
                     const char *container_id, uint32_t pid, bridge_call_fn fn, void *userdata,
                     struct bridge_call **ret)
{
        struct bridge_call *c;

        if (t->live.n >= BRIDGE_CALLS_MAX)
                return -ENOSPC;
        /* Make room among zombies first: they only exist to swallow late replies. */
        if (t->n_entries >= BRIDGE_CALLS_MAX)
                forget_oldest_zombies(t, t->zombies.n ? t->zombies.n - 1 : 0);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (container_id) {
                c->container_id = strdup(container_id);
                if (!c->container_id) {
                        free(c);
                        return -ENOMEM;
                }
        }
        c->id = id;
        c->type = type;
        c->flags = flags;
        c->deadline = (struct heap_node){ .key = deadline_ns, .tie = id, .index = HEAP_NONE };
        c->pid = pid;
        c->fn = fn;
        c->userdata = userdata;
        if (deadline_ns != BRIDGE_DEADLINE_NONE && heap_push(&t->deadlines, &c->deadline) < 0) {
                call_free(c);
                return -ENOMEM;
        }
        hash_insert(t, c);
        calls_list_append(&t->live, c);
        *ret = c;
        return 0;
}

int bridge_calls_add(struct bridge_calls *t, uint32_t type, uint32_t flags, uint64_t deadline_ns,
                     const char *container_id, uint32_t pid, bridge_call_fn fn, void *userdata,
                     struct bridge_call **ret)
{
        struct bridge_call *z, *c;
        int r;

        if (t->next_id == UINT64_MAX)
                return -EOVERFLOW;
        /* An id only collides with a zombie or an adopted call if the counter was never seeded;
         * the new call wins over a zombie, a live adopted call is never shadowed. */
        z = hash_find(t, t->next_id);
        if (z && !z->zombie)
                return -EEXIST;
        if (z) {
                entry_unlink(t, z);
                call_free(z);
        }
        r = entry_new(t, t->next_id, type, flags, deadline_ns, container_id, pid, fn, userdata, &c);
        if (r < 0)
                return r;
        t->next_id++;
        *ret = c;
        return 0;
}

int bridge_calls_preregister(struct bridge_calls *t, uint64_t id, uint32_t type, const char *container_id, uint32_t pid,
                             bridge_call_fn fn, void *userdata, struct bridge_call **ret)
{
        struct bridge_call *c = hash_find(t, id);
        int r;

        if (c && !c->zombie) {
                *ret = c;
                return 1;
        }
        if (c) {
                entry_unlink(t, c);
                call_free(c);
        }
        if (id == UINT64_MAX)
                return -EOVERFLOW;
        r = entry_new(t, id, type, BRIDGE_CALL_ADOPTED, BRIDGE_DEADLINE_NONE, container_id, pid, fn, userdata, &c);
        if (r < 0)
                return r;
        if (t->next_id <= id)
                t->next_id = id + 1;
        *ret = c;
        return 0;
}

struct bridge_call *bridge_calls_get(struct bridge_calls *t, uint64_t id)
{
        struct bridge_call *c = hash_find(t, id);

        return c && !c->zombie ? c : NULL;
}

bool bridge_calls_is_zombie(struct bridge_calls *t, uint64_t id)
{
        struct bridge_call *c = hash_find(t, id);

        return c && c->zombie;
}

bool bridge_calls_forget_zombie(struct bridge_calls *t, uint64_t id)
{
        struct bridge_call *c = hash_find(t, id);

        if (!c || !c->zombie)
                return false;
        entry_unlink(t, c);
        call_free(c);
        return true;
}

void bridge_calls_complete(struct bridge_calls *t, struct bridge_call *c, const struct bridge_result *res,
                           bool keep_zombie)
{
        struct bridge_result copy = *res;
        bridge_call_fn fn = c->fn;
        void *userdata = c->userdata;

        copy.call_id = c->id;
        if (!copy.message)
                copy.message = bridge_status_to_string(copy.status) ?: "";
        entry_unlink(t, c);
        if (keep_zombie) {
                c->zombie = true;
                c->fn = NULL;
                c->userdata = NULL;
                /* Back in the hash: it is still found by id, as a zombie. */
                hash_insert(t, c);
                calls_list_append(&t->zombies, c);
                forget_oldest_zombies(t, BRIDGE_CALLS_MAX_ZOMBIES);
        } else
                call_free(c);
        /* The entry is gone before the callback runs, so the callback may add, complete or fail
         * other calls freely. */
        if (fn)
                fn(&copy, userdata);
}

void bridge_calls_cancel(struct bridge_calls *t, struct bridge_call *c)
{
        entry_unlink(t, c);
        call_free(c);
}

size_t bridge_calls_fail_all(struct bridge_calls *t, enum bridge_status status, int error, const char *message,
                             bool keep_zombies)
{
        struct bridge_result res = {
                .error = error,
                .status = status,
                .message = message,
                .exit_code = -1,
        };
        struct bridge_call *c;
        size_t n = 0;

        if (!keep_zombies)
                forget_oldest_zombies(t, 0);
        while ((c = calls_list_first(&t->live))) {
                bridge_calls_complete(t, c, &res, keep_zombies);
                n++;
        }
        return n;
}

size_t bridge_calls_expire(struct bridge_calls *t, uint64_t now_ns)
{
        struct bridge_result res = {
                .error = -ETIMEDOUT,
                .status = BRIDGE_STATUS_TIMEOUT,
                .message = "timed out waiting for the guest",
                .exit_code = -1,
        };
        struct heap_node *top;
        size_t n = 0;

        while ((top = heap_top(&t->deadlines)) && top->key <= now_ns) {
                bridge_calls_complete(t, container_of(top, struct bridge_call, deadline), &res, true);
                n++;
        }
        return n;
}

uint64_t bridge_calls_next_deadline(const struct bridge_calls *t)
{
        const struct heap_node *top = heap_top(&t->deadlines);

        return top ? top->key : BRIDGE_DEADLINE_NONE;
}

size_t bridge_calls_count(const struct bridge_calls *t)
{
        return t->live.n;
}

size_t bridge_calls_zombie_count(const struct bridge_calls *t)
{
        return t->zombies.n;
}

int bridge_calls_list(const struct bridge_calls *t, uint32_t type, uint64_t **ret_ids, size_t *ret_n)
{
        uint64_t *ids = malloc((t->live.n ? t->live.n : 1) * sizeof(*ids));
        struct list_head *e;
        size_t n = 0;

        if (!ids)
                return -ENOMEM;

        list_for_each(e, &t->live.head) {
                const struct bridge_call *c = list_entry(e, struct bridge_call, node);
                if (type == 0 || c->type == type)
                        ids[n++] = c->id;
        }
        *ret_ids = ids;
        *ret_n = n;
        return 0;
}
