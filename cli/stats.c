/* cli/stats.c: `stats` and the `events` stream. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/since.h"

static void print_vm_stats(const Vsockmux__V1__VmStats *v, bool json)
{
        static const Vsockmux__V1__StreamCounters none = VSOCKMUX__V1__STREAM_COUNTERS__INIT;
        const Vsockmux__V1__StreamCounters *b = v && v->bytes ? v->bytes : &none;
        const struct {
                const char *key;
                uint64_t value;
        } rows[] = {
                { "processes", v ? v->processes : 0 },
                { "streams", v ? v->streams : 0 },
                { "stdin_bytes", b->stdin_bytes },
                { "stdout_bytes", b->stdout_bytes },
                { "stderr_bytes", b->stderr_bytes },
                { "stream_errors", v ? v->stream_errors : 0 },
                { "dropped_bytes", v ? v->dropped_bytes : 0 },
                { "bridge_connects", v ? v->bridge_connects : 0 },
                { "held_replies", v ? v->held_replies : 0 },
                { "saves", v ? v->saves : 0 },
                { "restores", v ? v->restores : 0 },
        };
        struct json_object *o = json ? json_object_new_object() : NULL;

        if (o)
                json_object_object_add(o, "vm", json_object_new_string(v && v->name ? v->name : ""));
        else
                printf("vm:                  %s\n", v && v->name ? v->name : "");
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                if (o)
                        json_object_object_add(o, rows[i].key, json_object_new_uint64(rows[i].value));
                else
                        printf("%s:%*s%llu\n", rows[i].key, (int)(20 - strlen(rows[i].key)), "",
                               (unsigned long long)rows[i].value);
        }
        if (o)
                cli_json_print(o);
}

static struct json_object *loop_json(const Vsockmux__V1__LoopStats *l)
{
        struct json_object *o = json_object_new_object(), *hist = json_object_new_array();

        json_object_object_add(o, "turns", json_object_new_uint64(l->turns));
        json_object_object_add(o, "wait_ns", json_object_new_uint64(l->wait_ns));
        json_object_object_add(o, "turns_waited", json_object_new_uint64(l->turns_waited));
        json_object_object_add(o, "sleeps", json_object_new_uint64(l->sleeps));
        json_object_object_add(o, "cqes", json_object_new_uint64(l->cqes));
        for (size_t i = 0; i < l->n_cqes_per_turn; i++)
                json_object_array_add(hist, json_object_new_uint64(l->cqes_per_turn[i]));
        json_object_object_add(o, "cqes_per_turn", hist);
        return o;
}

int cli_stats(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                                 { "prometheus", no_argument, NULL, 'p' },
                                                 { "vm", required_argument, NULL, 'v' },
                                                 {} };
        Vsockmux__V1__StatsRequest req = VSOCKMUX__V1__STATS_REQUEST__INIT;
        Vsockmux__V1__StatsResponse *s;
        const Vsockmux__V1__BufferPoolStats *pool;
        static const Vsockmux__V1__BufferPoolStats no_pool = VSOCKMUX__V1__BUFFER_POOL_STATS__INIT;
        ProtobufCMessage *m = NULL;
        bool json = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                if (c == 'j')
                        json = true;
                else if (c == 'p')
                        req.prometheus = true;
                else if (c == 'v')
                        req.vm = optarg;
                else
                        return cli_option_error(cli, c, argv);
        }
        if (argc - optind != 0)
                return cli_usage_error(cli, "takes no arguments");
        if (req.prometheus && (json || req.vm[0]))
                return cli_usage_error(cli, "--prometheus prints every metric; it takes no --json or --vm");
        r = cli_call(cli, "Stats", &req.base, &vsockmux__v1__stats_response__descriptor, &m);
        if (r != 0)
                return r;
        s = (Vsockmux__V1__StatsResponse *)m;
        pool = s->buffer_pool ?: &no_pool;

        if (req.prometheus)
                fputs(s->prometheus_text, stdout);
        else if (req.vm[0])
                print_vm_stats(s->vm_stats, json);
        else if (json) {
                struct json_object *o = json_object_new_object(), *p = json_object_new_object();

                json_object_object_add(o, "vms", json_object_new_int64(s->vms));
                json_object_object_add(o, "processes", json_object_new_int64(s->processes));
                json_object_object_add(o, "streams", json_object_new_int64(s->streams));
                json_object_object_add(o, "bytes_relayed", json_object_new_uint64(s->bytes_relayed));
                json_object_object_add(o, "bytes_spliced", json_object_new_uint64(s->bytes_spliced));
                json_object_object_add(o, "memory_in_use", json_object_new_uint64(s->memory_in_use));
                json_object_object_add(o, "control_connections", json_object_new_int64(s->control_connections));
                json_object_object_add(p, "buffer_size", json_object_new_uint64(pool->buffer_size));
                json_object_object_add(p, "buffers_total", json_object_new_uint64(pool->buffers_total));
                json_object_object_add(p, "buffers_in_use", json_object_new_uint64(pool->buffers_in_use));
                json_object_object_add(o, "buffer_pool", p);
                if (s->loop)
                        json_object_object_add(o, "loop", loop_json(s->loop));
                cli_json_print(o);
        } else {
                printf("vms:                 %u\n", s->vms);
                printf("processes:           %u\n", s->processes);
                printf("streams:             %u\n", s->streams);
                printf("bytes relayed:       %llu (spliced: %llu)\n", (unsigned long long)s->bytes_relayed,
                       (unsigned long long)s->bytes_spliced);
                printf("memory in use:       %llu bytes\n", (unsigned long long)s->memory_in_use);
                printf("buffer pool:         %llu of %llu buffers in use, %llu bytes each\n",
                       (unsigned long long)pool->buffers_in_use, (unsigned long long)pool->buffers_total,
                       (unsigned long long)pool->buffer_size);
                printf("control connections: %u\n", s->control_connections);
        }
        vsockmux_message_free(m);
        return 0;
}

static void print_event(Vsockmux__V1__Event *ev, bool json)
{
        char kind[48], when[64], exit_text[64];
        time_t secs = (time_t)(ev->timestamp_ns / 1000000000u);
        struct tm tm;

        cli_enum_name(&vsockmux__v1__event_kind__descriptor, ev->kind, "EVENT_KIND_", kind, sizeof(kind));
        if (gmtime_r(&secs, &tm))
                snprintf(when + strftime(when, sizeof(when) - 8, "%Y-%m-%dT%H:%M:%S", &tm), 8, ".%03uZ",
                         (unsigned)(ev->timestamp_ns / 1000000u % 1000u));
        else
                snprintf(when, sizeof(when), "-");

        if (json) {
                struct json_object *o = json_object_new_object();
                struct json_object *exit_o = cli_json_exit(ev->exit);

                if (ev->seq)
                        json_object_object_add(o, "seq", json_object_new_int64((int64_t)ev->seq));
                json_object_object_add(o, "time", json_object_new_string(when));
                json_object_object_add(o, "kind", json_object_new_string(kind));
                json_object_object_add(o, "vm", json_object_new_string(ev->vm));
                if (ev->container_id[0])
                        json_object_object_add(o, "container", json_object_new_string(ev->container_id));
                if (ev->pid)
                        json_object_object_add(o, "pid", json_object_new_int64(ev->pid));
                if (exit_o)
                        json_object_object_add(o, "exit", exit_o);
                if (ev->message[0])
                        json_object_object_add(o, "message", json_object_new_string(ev->message));
                /* One document per line, so a consumer can read the stream line by line. */
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
        } else {
                /* Names and messages come from elsewhere: keep them off the terminal's controls. */
                cli_sanitize(ev->vm);
                cli_sanitize(ev->container_id);
                cli_sanitize(ev->message);
                printf("%s %-20s %s", when, kind, ev->vm[0] ? ev->vm : "-");
                if (ev->seq)
                        printf(" seq=%llu", (unsigned long long)ev->seq);
                if (ev->container_id[0])
                        printf(" container=%s", ev->container_id);
                if (ev->pid)
                        printf(" pid=%u", ev->pid);
                if (ev->exit)
                        printf(" exit=\"%s\"", cli_exit_text(ev->exit, exit_text, sizeof(exit_text)));
                if (ev->message[0])
                        printf(" %s", ev->message);
                putchar('\n');
        }
        fflush(stdout);
}

/* A live upgrade: the old daemon goes once the new one serves on the same socket, and the ring of
 * recent events went along. So a connection that closes without a status is dialled again and the
 * follow goes on from the last seq seen (or, before any, from when we began): nothing is lost and
 * nothing repeats. A daemon that is really gone refuses the dial. */
#define CLI_EVENTS_MAX_REDIALS 16u

static int events_subscribe(struct cli *cli, const Vsockmux__V1__EventsRequest *req, uint32_t *ret_sid)
{
        return vsockmux_client_send(cli->client, VSOCKMUX_METHOD("Events"), &req->base, VSOCKMUX_FLAG_REMOTE_CLOSED, 0,
                                    ret_sid);
}

static int events_redial(struct cli *cli, Vsockmux__V1__EventsRequest *req, uint64_t last_seq, uint64_t began_ns,
                         uint32_t *ret_sid)
{
        struct vsockmux_client *c = NULL;
        int r = vsockmux_client_connect(cli->socket, &c);

        if (r < 0)
                return r;
        vsockmux_client_free(cli->client);
        cli->client = c;
        if (last_seq > 0) {
                req->since_seq = last_seq;
                req->since_timestamp_ns = 0;
        } else if (!req->replay)
                req->since_timestamp_ns = began_ns;
        req->replay = true;
        return events_subscribe(cli, req, ret_sid);
}

int cli_events(struct cli *cli, int argc, char **argv)
{
        static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                                 { "vm", required_argument, NULL, 'v' },
                                                 { "since", required_argument, NULL, 's' },
                                                 {} };
        Vsockmux__V1__EventsRequest req = VSOCKMUX__V1__EVENTS_REQUEST__INIT;
        struct timespec now;
        char why[VSOCKMUX_STATUS_MESSAGE_MAX + 128];
        struct vsockmux_status st = {};
        uint64_t last_seq = 0, began_ns;
        unsigned redials = 0;
        bool json = false;
        uint32_t sid;
        int c, r;

        clock_gettime(CLOCK_REALTIME, &now);
        began_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                switch (c) {
                case 'j': json = true; break;
                case 'v': req.vm = optarg; break;
                case 's':
                        if (cli_since_parse(optarg, began_ns, &req.since_seq, &req.since_timestamp_ns) < 0)
                                return cli_usage_error(cli, "--since takes a sequence number, an RFC 3339 time "
                                                            "(2026-12-03T17:00:00Z), @UNIX_SECONDS or a duration ago "
                                                            "(30s, 15m, 2h, 1d)");
                        req.replay = true;
                        break;
                default: return cli_option_error(cli, c, argv);
                }
        }
        if (argc - optind != 0)
                return cli_usage_error(cli, "takes no arguments");
        r = cli_connect(cli);
        if (r != 0)
                return r;
        r = events_subscribe(cli, &req, &sid);
        for (;;) {
                ProtobufCMessage *m = NULL;

                if (r < 0)
                        break;
                r = vsockmux_client_recv(cli->client, sid, &vsockmux__v1__event__descriptor, &m, &st);
                if ((r == -ECONNRESET || r == -EPIPE) && redials < CLI_EVENTS_MAX_REDIALS) {
                        redials++;
                        r = events_redial(cli, &req, last_seq, began_ns, &sid);
                        continue;
                }
                if (r != VSOCKMUX_CLIENT_DATA) {
                        vsockmux_message_free(m);
                        break;
                }
                if (((Vsockmux__V1__Event *)m)->seq > last_seq)
                        last_seq = ((Vsockmux__V1__Event *)m)->seq;
                print_event((Vsockmux__V1__Event *)m, json);
                vsockmux_message_free(m);
                if (ferror(stdout))
                        /* The reader went away (`| head`): that ends the stream, quietly. */
                        return 0;
        }
        if (r < 0) {
                cli_describe_failure(cli, r, &st, why, sizeof(why));
                return cli_error(cli, "%s", why);
        }
        return 0;
}
