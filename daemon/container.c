/* daemon/container.c: a VM's containers: create and shutdown over the bridge, and the exit notification that ends one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/container.h"
#include "util/list.h"
#include "util/log.h"

struct vmm_container {
        struct list_head link;
        struct vmm_containers *table;
        char *id;
        bool watched;
};

struct vmm_containers {
        const struct vmm_guest *guest;
        struct list_head list;
        unsigned n;
};

struct vmm_container_op {
        struct vmm_containers *table;
        char *id;
        vmm_done_fn fn;
        void *userdata;
};

int vmm_containers_new(const struct vmm_guest *guest, struct vmm_containers **ret)
{
        struct vmm_containers *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->guest = guest;
        list_init(&c->list);
        *ret = c;
        return 0;
}

static void container_free(struct vmm_container *c)
{
        list_del(&c->link);
        c->table->n--;
        free(c->id);
        free(c);
}

struct vmm_containers *vmm_containers_free(struct vmm_containers *t)
{
        if (!t)
                return NULL;
        while (!list_empty(&t->list))
                container_free(list_entry(t->list.next, struct vmm_container, link));
        free(t);
        return NULL;
}

unsigned vmm_containers_count(const struct vmm_containers *t)
{
        return t->n;
}

static struct vmm_container *container_find(struct vmm_containers *t, const char *id)
{
        struct list_head *pos;

        list_for_each(pos, &t->list) {
                struct vmm_container *c = list_entry(pos, struct vmm_container, link);

                if (strcmp(c->id, id) == 0)
                        return c;
        }
        return NULL;
}

static void container_on_notify(const struct bridge_notification *n, int error, void *userdata)
{
        struct vmm_container *c = userdata;
        const struct vmm_guest *g = c->table->guest;

        c->watched = false;
        if (error < 0 || !n)
                return;
        log_info("vm %s: container %s: %s (result %d)", g->vm_name, c->id, n->type ? n->type : "exit", n->result);
        vmm_context_emit(g->ctx, VMM_EVENT_CONTAINER_EXITED, g->vm_name, c->id, 0, NULL, n->type);
        container_free(c);
}

static int container_track(struct vmm_containers *t, const char *id)
{
        struct vmm_container *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->table = t;
        c->id = strdup(id);
        if (!c->id) {
                free(c);
                return -ENOMEM;
        }
        r = bridge_host_watch_container(t->guest->bridge, id, container_on_notify, c);
        if (r < 0) {
                free(c->id);
                free(c);
                return r;
        }
        c->watched = true;
        list_add_tail(&t->list, &c->link);
        t->n++;
        return 0;
}

static void container_op_free(struct vmm_container_op *op)
{
        free(op->id);
        free(op);
}

static void container_on_created(const struct bridge_result *res, void *userdata)
{
        struct vmm_container_op *op = userdata;
        const struct vmm_guest *g = op->table->guest;
        int r = res->error;

        if (r == 0 && !g->removing) {
                r = container_track(op->table, op->id);
                if (r == 0)
                        vmm_context_emit(g->ctx, VMM_EVENT_CONTAINER_CREATED, g->vm_name, op->id, 0, NULL, NULL);
        }
        op->fn(r, r == res->error ? res->message : "cannot watch the container's exit", op->userdata);
        container_op_free(op);
}

static void container_on_shutdown(const struct bridge_result *res, void *userdata)
{
        struct vmm_container_op *op = userdata;

        op->fn(res->error, res->message, op->userdata);
        container_op_free(op);
}

static int container_op_new(struct vmm_containers *t, const char *id, vmm_done_fn fn, void *userdata,
                            struct vmm_container_op **ret)
{
        struct vmm_container_op *op;

        if (!id || id[0] == '\0' || strnlen(id, BRIDGE_MAX_ID_LEN + 1) > BRIDGE_MAX_ID_LEN)
                return -EINVAL;
        if (bridge_host_is_migrating(t->guest->bridge))
                return -EBUSY;
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->table = t;
        op->fn = fn;
        op->userdata = userdata;
        op->id = strdup(id);
        if (!op->id) {
                free(op);
                return -ENOMEM;
        }
        *ret = op;
        return 0;
}

int vmm_containers_create(struct vmm_containers *t, const char *id, const char *config_json, vmm_done_fn fn,
                          void *userdata)
{
        struct vmm_container_op *op;
        int r;

        r = container_op_new(t, id, fn, userdata, &op);
        if (r < 0)
                return r;
        if (container_find(t, id)) {
                container_op_free(op);
                return -EEXIST;
        }
        r = bridge_host_create_container(t->guest->bridge, id, config_json && config_json[0] ? config_json : "{}",
                                         container_on_created, op);
        if (r < 0)
                container_op_free(op);
        return r;
}

int vmm_containers_shutdown(struct vmm_containers *t, const char *id, bool force, vmm_done_fn fn, void *userdata)
{
        struct vmm_container_op *op;
        int r;

        r = container_op_new(t, id, fn, userdata, &op);
        if (r < 0)
                return r;
        r = bridge_host_shutdown(t->guest->bridge, id, force ? BRIDGE_SHUTDOWN_FORCED : BRIDGE_SHUTDOWN_GRACEFUL,
                                 container_on_shutdown, op);
        if (r < 0)
                container_op_free(op);
        return r;
}

int vmm_containers_export(struct vmm_containers *t, Vsockmux__State__Vm *out)
{
        struct list_head *pos;
        size_t i = 0;

        out->containers = calloc(t->n + 1, sizeof(*out->containers));
        if (!out->containers)
                return -ENOMEM;
        list_for_each(pos, &t->list)
                out->containers[i++] = list_entry(pos, struct vmm_container, link)->id;
        out->n_containers = i;
        return 0;
}

void vmm_containers_export_done(Vsockmux__State__Vm *out)
{
        free(out->containers);
        out->containers = NULL;
        out->n_containers = 0;
}

int vmm_containers_import(struct vmm_containers *t, const Vsockmux__State__Vm *sv, struct vmm_error *err)
{
        for (size_t i = 0; i < sv->n_containers; i++) {
                int r = container_track(t, sv->containers[i]);

                if (r < 0)
                        return vmm_error_set(err, r, "cannot watch container %s: %s", sv->containers[i], strerror(-r));
        }
        return 0;
}
