/* tests/bridge/sim-host.h: a tiny blocking bridge host built on bridge/codec and bridge/msg that drives a real vsockmux-sim; shared by the simulator's tests, owns nothing global but the simulator's path. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bridge/codec.h"
#include "bridge/msg.h"
#include "util/unaligned.h"

#define GUID_A "0123abcd-4567-89ef-abcd-0123456789ab"
#define WAIT_MS (120 * 1000) /* generous: ASan on a loaded 2-core machine */
#define PORT_BRIDGE 0x40000000u
#define PORT_STDIN 0x40000001u
#define PORT_STDOUT 0x40000002u

struct host {
        char dir[64];
        char base[80];
        char stats[80]; /* the simulator's --stats file, for the setups that give it */
        int bridge_listener;
        int bridge;
        pid_t sim;
        uint64_t next_id;
};

/* Resolves the simulator from argv[1] or $VSOCKMUX_BUILD_ROOT: 0, or 77 (skip, with the reason said). */
int host_find_sim(int argc, char **argv);

int host_listen(struct host *h, uint32_t port);
int host_accept(int listener);
void read_exact(int fd, void *buf, size_t len);
/* Everything until EOF, NUL-terminated. */
size_t read_to_eof(int fd, char *buf, size_t cap);
void write_all(int fd, const void *buf, size_t len);

uint64_t host_send(struct host *h, const struct bridge_request *req);
/* Reads one frame; returns the header and a malloc'd payload. */
char *host_read_frame(struct host *h, struct bridge_header *ret_header, size_t *ret_len);
void host_response(struct host *h, uint32_t req_type, uint64_t id, struct bridge_response *ret);
void host_negotiate(struct host *h, bool offer_resume, bool *ret_resume);
/* An infinite WaitForProcess; returns the result. */
int32_t host_wait(struct host *h, uint32_t pid, uint32_t *ret_code);
int32_t host_exec_params(struct host *h, const char *cid, const struct bridge_process_params *p,
                         const uint32_t ports[3], uint32_t *ret_pid);
uint32_t host_exec(struct host *h, const char *script, bool with_stdin);
/* A process without stdio, in container cid. */
uint32_t host_exec_quiet(struct host *h, const char *cid, const char *script);
int32_t host_simple(struct host *h, uint32_t type, const char *cid);
/* Reads the next frame, which must be a container notification for cid of that Type. */
void host_expect_notification(struct host *h, const char *cid, const char *type);

/* cmocka setup/teardown: a sim dialled in on h->bridge (*state is the struct host). */
int host_start_resume(void **state);
int host_start_legacy(void **state);
/* hcsshim's guest (--fidelity upstream, --stats h->stats), and the same with --no-bridge-panic. */
int host_start_upstream(void **state);
int host_start_upstream_no_panic(void **state);
/* One count from h->stats (sim/stats.c), 0 before the simulator wrote one. */
unsigned long long host_sim_stat(struct host *h, const char *name);
/* Closes the bridge, SIGTERMs the sim and checks it exited 0 (unless the test reaped it: h->sim 0). */
int host_stop(void **state);
