/* sim/handlers.c: the simulator's bridge request handlers: create, execute, signal, resize, shutdown, wait. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/codec.h"
#include "bridge/msg.h"
#include "sim/sim.h"
#include "util/log.h"

struct sim_request *sim_request_free(struct sim_request *req)
{
        if (!req)
                return NULL;
        free(req->payload);
        free(req);
        return NULL;
}

static void handler_reply(struct sim_request *req, const struct bridge_response *resp)
{
        uint8_t *buf = NULL;
        size_t len;
        int r;

        r = bridge_response_frame(req->type, req->id, resp, &buf, &len);
        if (r < 0) {
                log_error("bridge: cannot encode the reply to id %llu: %s", (unsigned long long)req->id, strerror(-r));
                return;
        }
        sim_bridge_send(req->s, buf, len);
}

static void handle_create(struct sim_request *req, const struct bridge_request *r, struct bridge_response *resp)
{
        int k = sim_container_create(req->s, r->container_id);

        if (k == -EEXIST) {
                resp->result = BRIDGE_HR_FAIL;
                resp->error_message = "container already exists";
        } else if (k < 0) {
                resp->result = BRIDGE_HR_FAIL;
                resp->error_message = "cannot create container";
        } else
                log_info("container %s created", r->container_id);
}

/* Returns the started process (a reference), to announce once the reply is out. */
static struct sim_process *handle_execute(struct sim_request *req, const struct bridge_request *r,
                                          struct bridge_response *resp)
{
        struct sim_process *p = NULL;
        const char *reason = NULL;
        uint32_t pid = 0;
        bool resume;
        int k;

        struct sim_target refused;

        if (sim_fidelity_check_target(req->s, BRIDGE_RPC_EXECUTE_PROCESS, r->container_id, 0, &refused) < 0) {
                log_warn("exec in container '%s' refused: %s", r->container_id, refused.message);
                resp->result = refused.hresult;
                resp->error_message = refused.message;
                return NULL;
        }
        pthread_mutex_lock(&req->s->lock);
        resume = req->s->resume_agreed;
        pthread_mutex_unlock(&req->s->lock);
        k = sim_process_start(req->s, r, resume, &p, &pid, &reason);
        if (k < 0) {
                log_warn("exec in container '%s' failed: %s", r->container_id, reason ?: strerror(-k));
                resp->result = k == -EINVAL ? BRIDGE_HR_INVALID_ARG : BRIDGE_HR_FAIL;
                resp->error_message = reason ?: "exec failed";
                return NULL;
        }
        resp->exec.pid = pid;
        return p;
}

static void handle_signal(struct sim_request *req, const struct bridge_request *r, struct bridge_response *resp)
{
        int sig = r->signal.has_options && r->signal.signal != 0 ? r->signal.signal : SIGKILL;
        struct sim_target refused;
        int k;

        if (sim_fidelity_check_target(req->s, BRIDGE_RPC_SIGNAL_PROCESS, r->container_id, r->signal.pid, &refused) <
            0) {
                resp->result = refused.hresult;
                resp->error_message = refused.message;
                return;
        }
        k = sim_process_signal(req->s, r->signal.pid, sig);
        if (k == -ENOENT) {
                resp->result = BRIDGE_HR_NOT_FOUND;
                resp->error_message = "process not found";
        } else if (k < 0) {
                resp->result = BRIDGE_HR_INVALID_ARG;
                resp->error_message = "cannot deliver signal";
        }
}

/* As hcsshim's guest: a process without a console "cannot be resized". */
static void handle_resize(struct sim_request *req, const struct bridge_request *r, struct bridge_response *resp)
{
        struct sim_target refused;
        int k;

        if (sim_fidelity_check_target(req->s, BRIDGE_RPC_RESIZE_CONSOLE, r->container_id, r->resize.pid, &refused) <
            0) {
                resp->result = refused.hresult;
                resp->error_message = refused.message;
                return;
        }
        k = sim_process_resize(req->s, r->resize.pid, r->resize.height, r->resize.width);
        if (k == -ENOENT) {
                resp->result = BRIDGE_HR_NOT_FOUND;
                resp->error_message = "process not found";
        } else if (k == -ENOTTY) {
                resp->result = BRIDGE_HR_FAIL;
                resp->error_message = "process is not a tty and cannot be resized";
        } else if (k < 0) {
                resp->result = BRIDGE_HR_FAIL;
                resp->error_message = "cannot resize the console";
        }
}

/* Returns false when the request was aimed at the UVM: the guest then goes away without a reply. */
static bool handle_shutdown(struct sim_request *req, const struct bridge_request *r, struct bridge_response *resp)
{
        bool forced = req->type == BRIDGE_RPC_SHUTDOWN_FORCED;

        if (strcmp(r->container_id, BRIDGE_NULL_GUID) == 0) {
                log_info("%s shutdown of the UVM requested; exiting", forced ? "forced" : "graceful");
                sim_request_stop(req->s);
                return false;
        }
        if (sim_container_shutdown(req->s, r->container_id, forced) < 0) {
                resp->result = BRIDGE_HR_SYSTEM_NOT_FOUND;
                resp->error_message = "container not found";
        }
        return true;
}

void sim_handle_request(struct sim_request *req)
{
        struct bridge_request r = {};
        struct bridge_response resp = {};
        struct sim_process *started = NULL;
        const char *reason = NULL;
        bool reply = true;

        if (bridge_request_decode(req->type, req->payload, req->len, &r, &reason) < 0) {
                log_warn("bridge: undecodable %s id %llu: %s", bridge_type_name(req->type) ?: "request",
                         (unsigned long long)req->id, reason ?: "out of memory");
                resp.result = BRIDGE_HR_INVALID_ARG;
                resp.error_message = reason ?: "out of memory";
                handler_reply(req, &resp);
                return;
        }
        resp.activity_id = r.activity_id;

        switch (req->type) {
        case BRIDGE_RPC_CREATE: handle_create(req, &r, &resp); break;
        case BRIDGE_RPC_EXECUTE_PROCESS: started = handle_execute(req, &r, &resp); break;
        case BRIDGE_RPC_SIGNAL_PROCESS: handle_signal(req, &r, &resp); break;
        case BRIDGE_RPC_SHUTDOWN_GRACEFUL:
        case BRIDGE_RPC_SHUTDOWN_FORCED: reply = handle_shutdown(req, &r, &resp); break;
        case BRIDGE_RPC_RESIZE_CONSOLE: handle_resize(req, &r, &resp); break;
        default:
                resp.result = BRIDGE_HR_NOT_IMPL;
                resp.error_message = "not implemented";
                break;
        }
        if (reply)
                handler_reply(req, &resp);
        /* The exit of a process is never reported before the reply that names it. */
        if (started)
                sim_process_announced(req->s, started);
        bridge_request_done(&r);
}

void sim_handle_wait(struct sim *s, uint64_t id, const void *payload, size_t len)
{
        struct bridge_request r = {};
        struct sim_target refused;
        const char *reason = NULL;
        uint32_t code = 0;
        int k;

        if (bridge_request_decode(BRIDGE_RPC_WAIT_FOR_PROCESS, payload, len, &r, &reason) < 0) {
                log_warn("bridge: undecodable WaitForProcess id %llu: %s", (unsigned long long)id,
                         reason ?: "out of memory");
                sim_wait_reply(s, id, NULL, BRIDGE_HR_INVALID_ARG, reason ?: "out of memory", 0);
                bridge_request_done(&r);
                return;
        }
        sim_stat_add(s, SIM_STAT_WAIT_RECEIVED);
        if (sim_fidelity_check_target(s, BRIDGE_RPC_WAIT_FOR_PROCESS, r.container_id, r.wait.pid, &refused) < 0) {
                sim_wait_reply(s, id, r.activity_id, refused.hresult, refused.message, 0);
                bridge_request_done(&r);
                return;
        }
        k = sim_process_wait_start(s, r.wait.pid, id, r.activity_id, r.wait.timeout_ms, &code);
        switch (k) {
        case 0: sim_wait_reply(s, id, r.activity_id, 0, NULL, code); break;
        case -ENOENT: sim_wait_reply(s, id, r.activity_id, BRIDGE_HR_NOT_FOUND, "process not found", 0); break;
        case -ETIMEDOUT: sim_wait_reply(s, id, r.activity_id, BRIDGE_HR_TIMEOUT, "wait timed out", 0); break;
        case -EBUSY:
        case -ENOMEM:
                log_warn("bridge: too many pending waits; WaitForProcess id %llu refused", (unsigned long long)id);
                sim_wait_reply(s, id, r.activity_id, BRIDGE_HR_FAIL, "guest busy", 0);
                break;
        default: break; /* registered (the exit or the timer answers), or the sim is stopping (no reply) */
        }
        bridge_request_done(&r);
}
