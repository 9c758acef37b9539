/* sim/stream.h: struct sim_stream owns one stdio relay of a simulated process: its pipe end, its host connection and its replay buffer. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sim/ring.h"
#include "sim/sim.h"

enum sim_stream_kind {
        SIM_STREAM_STDIN,
        SIM_STREAM_STDOUT,
        SIM_STREAM_STDERR,
        _SIM_STREAM_MAX,
};

struct sim_stream {
        struct sim *s;
        enum sim_stream_kind kind;
        pid_t pid;
        uint32_t port;
        bool resume; /* V4 agreed when the process started */
        int pipe_fd;
        struct sim_conn *conn; /* stdin: replaced under s->lock so the reaper can shut it down */
        bool input_closed;     /* stdin: the process exited; guarded by s->lock */
        bool no_redial; /* upstream, not a container's init: a lost connection ends the relay; guarded by s->lock */
        bool finished; /* stdout/stderr: the relay ended (EOF sent and the host closed, or gave up); guarded by s->lock */
        pthread_t thread;
        struct sim_ring ring; /* stdout/stderr: the replay window */
};

/* Starts the relay thread. Takes conn and pipe_fd on success only. */
int sim_stream_start(struct sim *s, enum sim_stream_kind kind, pid_t pid, uint32_t port, bool resume,
                     struct sim_conn *conn, int pipe_fd, struct sim_stream **ret);
/* hcsshim's guest redials only a container init's stdio: for any other process a lost
 * connection ends the relay (upstream fidelity). */
void sim_stream_forbid_redial(struct sim_stream *st);
/* stdin at process exit: closes the read side and stops redialling (H5). */
void sim_stream_close_input(struct sim_stream *st);
/* Called with s->lock held: whether a stdout/stderr relay still has output to deliver. */
bool sim_stream_running_locked(const struct sim_stream *st);
/* Waits for the relay to finish (drained and closed, or the sim stopping) and frees it. */
struct sim_stream *sim_stream_join(struct sim_stream *st);
