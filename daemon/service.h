/* daemon/service.h: struct service owns the control server, its method table and the events subscribers; borrows the relay and the vmm. */
#pragma once

#include <sys/types.h>

#include "control/server.h"
#include "daemon/vmm.h"

struct service;

struct service_config {
        const char *socket_path;
        uid_t owner_uid;
        gid_t group; /* CONTROL_NO_GROUP for a 0600 socket */
        gid_t read_group; /* --read-group: may list and watch (VmList, Ps, Stats, Events, Wait); 0 or CONTROL_NO_GROUP: none */
        unsigned max_connections;
        size_t max_control_frame; /* a request's ttrpc data bytes; 0 = CONTROL_FRAME_MAX_DATA */
        unsigned events_ring;     /* recent events kept for Events replay; 0 = EVENT_RING_DEFAULT_SIZE */
        bool adopt_fd;            /* serve adopted_fd (socket activation), not a socket bound here */
        int adopted_fd;
        const char *vm_helper; /* --vm-helper: the program Migrate runs libvirt in; NULL: the installed one */
};

struct service *service_free(struct service *s);
DEFINE_CLEANUP(struct service *, service_free);

/* The vmm's event sink: pass it with the service as userdata to vmm_new(). */
void service_on_event(const struct vmm_event *e, void *userdata);

/* The service exists before the vmm (which needs its event sink); service_start() then creates
 * the control socket and serves the vsockmux.v1.Control methods on r's loop. */
int service_alloc(struct service **ret);
int service_start(struct service *s, struct relay *r, struct vmm *m, const struct service_config *cfg);

/* Every metric in the Prometheus text format (a metrics_http_ops render; userdata is the service). */
int service_render_metrics(void *userdata, char **ret_text, size_t *ret_len);

/* Live upgrade: the Upgrade method runs u (borrowed; NULL: it answers UNAVAILABLE). The control
 * listener is released to be handed over, and taken back on a rollback (control/server.h). */
/* SIGHUP's --limits-file: a new cap on control connections (0 = the default). */
int service_set_max_connections(struct service *s, unsigned max_connections);

struct upgrade;
void service_set_upgrade(struct service *s, struct upgrade *u);
int service_release_listener(struct service *s, int *ret_fd, bool *ret_owned);
/* The ring of recent events (NULL: none), which a live upgrade hands over. */
struct event_ring *service_events(struct service *s);
int service_listen_again(struct service *s, int fd);
size_t service_tx_pending(const struct service *s);

/* The STATUS= line for systemd: "N VMs, N processes, N streams, N control connections"
 * (a notify_status_fn; userdata is the service). */
void service_status(char *buf, size_t len, void *userdata);
