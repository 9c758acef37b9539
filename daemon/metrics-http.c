/* daemon/metrics-http.c: GET /metrics over libmicrohttpd on its own thread, fed by renderings the loop makes on request. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "control/socket.h"
#include "daemon/metrics-http.h"
#include "daemon/metrics.h"

/* Why on request and not on a timer: a scrape then shows what happened before it (tests and
 * operators need no "wait for the next snapshot"), an idle daemon renders nothing, and a wedged
 * loop shows as a 503 instead of numbers that silently stop moving. */
struct metrics_http {
        struct relay *relay;
        const struct metrics_http_ops *ops;
        void *userdata;
        struct relay_chan *wake_chan; /* the loop's end of the socketpair */
        int wake_fd;                  /* the HTTP thread's end */
        struct MHD_Daemon *mhd;
        int listen_fd; /* until libmicrohttpd runs; then it is MHD's to close */
        char *path;    /* a Unix socket we made, removed at free */
        struct stat st;
        char name[128];

        /* Shared with the HTTP thread, under lock. */
        pthread_mutex_t lock;
        pthread_cond_t rendered;
        uint64_t asked;    /* renderings asked for */
        uint64_t answered; /* the last one rendered covers every ask up to this */
        char *text;
        size_t len;
        int error;
        bool closing;
};

/* ---- the loop's side ---- */

static ssize_t wake_on_data(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        struct metrics_http *h = userdata;
        char *text = NULL;
        size_t tlen = 0;
        uint64_t target;
        int r;

        pthread_mutex_lock(&h->lock);
        target = h->asked;
        pthread_mutex_unlock(&h->lock);
        /* Every ask up to target came before this rendering started. */
        r = h->ops->render(h->userdata, &text, &tlen);
        pthread_mutex_lock(&h->lock);
        free(h->text);
        h->text = r < 0 ? NULL : text;
        h->len = r < 0 ? 0 : tlen;
        h->error = r < 0 ? r : 0;
        h->answered = target;
        pthread_cond_broadcast(&h->rendered);
        pthread_mutex_unlock(&h->lock);
        return (ssize_t)len;
}

static void wake_on_close(struct relay_chan *c, int error, void *userdata)
{
        struct metrics_http *h = userdata;

        h->wake_chan = NULL;
}

static const struct relay_chan_ops wake_ops = {
        .on_data = wake_on_data,
        .on_close = wake_on_close,
};

/* ---- the HTTP thread's side ---- */

/* A copy of a rendering that started after this call; NULL when the loop did not answer in time,
 * failed, or the daemon is stopping. */
static char *snapshot_get(struct metrics_http *h, size_t *ret_len)
{
        struct timespec deadline;
        uint64_t want;
        char *copy = NULL;
        char b = 1;

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += METRICS_HTTP_RENDER_TIMEOUT_MS / 1000;
        deadline.tv_nsec += (long)(METRICS_HTTP_RENDER_TIMEOUT_MS % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&h->lock);
        want = ++h->asked;
        pthread_mutex_unlock(&h->lock);
        /* A full socket already holds a wake-up the loop has not read: that one covers us. */
        (void)send(h->wake_fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        pthread_mutex_lock(&h->lock);
        while (h->answered < want && !h->closing)
                if (pthread_cond_timedwait(&h->rendered, &h->lock, &deadline) == ETIMEDOUT)
                        break;
        if (h->answered >= want && !h->closing && h->text) {
                copy = malloc(h->len + 1);
                if (copy) {
                        memcpy(copy, h->text, h->len + 1);
                        *ret_len = h->len;
                }
        }
        pthread_mutex_unlock(&h->lock);
        return copy;
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *body, const char *allow)
{
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ok;

        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
        if (allow)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        ok = MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return ok;
}

/* The answer waits for the request's body to be read (and dropped): closing on unread bytes would
 * reset the connection, and the client could lose the answer with it. More than
 * METRICS_HTTP_MAX_BODY is answered at once. *con_cls counts the bytes seen, plus one. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
        struct metrics_http *h = cls;
        uintptr_t seen = (uintptr_t)*con_cls;
        struct MHD_Response *resp;
        enum MHD_Result ok;
        size_t len = 0;
        char *text;

        if (seen == 0) {
                *con_cls = (void *)(uintptr_t)1;
                return MHD_YES;
        }
        if (*upload_data_size) {
                seen += MIN(*upload_data_size, (size_t)METRICS_HTTP_MAX_BODY + 1);
                *upload_data_size = 0;
                *con_cls = (void *)seen;
                if (seen <= METRICS_HTTP_MAX_BODY + 1)
                        return MHD_YES;
        }
        if (strcmp(url, "/metrics") != 0)
                return answer(c, MHD_HTTP_NOT_FOUND, "not found: vsockmuxd serves /metrics only\n", NULL);
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET /metrics\n", "GET, HEAD");
        text = snapshot_get(h, &len);
        if (!text)
                return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                              "vsockmuxd's loop did not render the metrics in time, or is stopping\n", NULL);
        resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
        ok = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ok;
}

/* ---- life ---- */

static int wake_pair(struct metrics_http *h)
{
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        r = relay_chan_new(h->relay, sv[0], &wake_ops, &(struct relay_chan_limits){ 0 }, h, &h->wake_chan);
        if (r < 0) {
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        h->wake_fd = sv[1];
        return 0;
}

static int bind_addr(struct metrics_http *h, const struct metrics_addr *addr, gid_t group, gid_t read_group)
{
        int r;

        if (!addr->path)
                return metrics_addr_listen_inet(addr, &h->listen_fd, h->name, sizeof(h->name));
        r = control_socket_listen(addr->path, group, read_group, &h->listen_fd, &h->st);
        if (r < 0)
                return r;
        h->path = strdup(addr->path);
        if (!h->path)
                return -ENOMEM;
        snprintf(h->name, sizeof(h->name), "unix:%s", addr->path);
        return 0;
}

int metrics_http_new(struct relay *r, const struct metrics_addr *addr, gid_t group, gid_t read_group,
                     const struct metrics_http_ops *ops, void *userdata, struct metrics_http **ret)
{
        _cleanup_(metrics_http_freep) struct metrics_http *h = NULL;
        pthread_condattr_t ca;
        int k;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->relay = r;
        h->ops = ops;
        h->userdata = userdata;
        h->wake_fd = -1;
        h->listen_fd = -1;
        pthread_mutex_init(&h->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->rendered, &ca);
        pthread_condattr_destroy(&ca);
        k = bind_addr(h, addr, group, read_group);
        if (k >= 0)
                k = wake_pair(h);
        if (k < 0)
                return k;
        /* One internal thread polls every connection; the only blocking it does is the bounded
         * wait for a rendering. Errors go nowhere (MHD_USE_ERROR_LOG is not set). */
        h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, on_request, h,
                                  MHD_OPTION_LISTEN_SOCKET, h->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
                                  (unsigned)METRICS_HTTP_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned)METRICS_HTTP_IDLE_TIMEOUT_S, MHD_OPTION_END);
        if (!h->mhd)
                return -EIO;
        *ret = TAKE_PTR(h);
        return 0;
}

struct metrics_http *metrics_http_free(struct metrics_http *h)
{
        if (!h)
                return NULL;
        pthread_mutex_lock(&h->lock);
        h->closing = true;
        pthread_cond_broadcast(&h->rendered);
        pthread_mutex_unlock(&h->lock);
        if (h->mhd)
                MHD_stop_daemon(h->mhd); /* joins the thread; closes the listening socket */
        else
                safe_close(h->listen_fd);
        if (h->path)
                control_socket_unlink(h->path, &h->st);
        h->wake_chan = relay_chan_free(h->wake_chan);
        safe_close(h->wake_fd);
        pthread_cond_destroy(&h->rendered);
        pthread_mutex_destroy(&h->lock);
        free(h->text);
        free(h->path);
        free(h);
        return NULL;
}

const char *metrics_http_name(const struct metrics_http *h)
{
        return h->name;
}
