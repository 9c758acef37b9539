/* The host side of the bridge on the real relay loop against the real guest simulator
 * (sim/vsockmux-sim over hybrid vsock) running real processes. Tags such as W9 or H5 name
 * paragraphs of ../shared/docs/bridge-protocol.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "bridge/codec.h"
#include "bridge/host.h"
#include "bridge/msg.h"
#include "ports/ports.h"
#include "relay/relay.h"
#include "tests/io-uring-skip.h"

extern char **environ;

/* Generous: these bound waiting on a loaded machine under ASan, they assert nothing about speed. */
#define WAIT_NS (120ull * 1000000000ull)
#define STEP_NS (20ll * 1000000ll)

struct fixture {
        char dir[64];
        struct relay_transport transport;
        struct relay *r;
        struct bridge_host *h;
        struct ports *ports;
        pid_t sim;
        bool sim_stopped;

        uint64_t connected; /* how many times the bridge reached CONNECTED */
        enum bridge_conn_state last_state;
        bool stop_sim_on_detach; /* SIGSTOP the simulator the moment the bridge is lost */
        int seq;                 /* orders events seen by the test */
};

struct done {
        int count;
        int seq;
        struct bridge_result res;
        char message[512];
        struct fixture *f;
};

static void on_done(const struct bridge_result *res, void *userdata)
{
        struct done *d = userdata;

        d->count++;
        d->seq = ++d->f->seq;
        d->res = *res;
        d->res.response = NULL;
        snprintf(d->message, sizeof(d->message), "%s", res->message);
        d->res.message = d->message;
}

struct seen {
        int count;
        int error;
        char type[64];
};

static void on_notify(const struct bridge_notification *n, int error, void *userdata)
{
        struct seen *s = userdata;

        s->count++;
        s->error = error;
        if (n)
                snprintf(s->type, sizeof(s->type), "%s", n->type);
}

static void on_state(struct bridge_host *h, enum bridge_conn_state o, enum bridge_conn_state n, void *userdata)
{
        struct fixture *f = userdata;

        f->last_state = n;
        if (n == BRIDGE_CONN_CONNECTED)
                f->connected++;
        if (f->stop_sim_on_detach && (n == BRIDGE_CONN_MIGRATING || n == BRIDGE_CONN_WAITING) && f->sim > 0 &&
            !f->sim_stopped) {
                assert_int_equal(kill(f->sim, SIGSTOP), 0);
                f->sim_stopped = true;
        }
}

static const struct bridge_host_ops fixture_ops = {
        .on_state_change = on_state,
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Runs the loop until `cond` holds; fails (never hangs) when it does not within WAIT_NS. */
#define RUN_UNTIL(f, cond)                                                    \
        do {                                                                  \
                uint64_t _deadline_ = now_ns() + WAIT_NS;                     \
                while (!(cond)) {                                             \
                        if (now_ns() > _deadline_)                            \
                                fail_msg("timed out waiting for: %s", #cond); \
                        assert_int_equal(relay_run_once((f)->r, STEP_NS), 0); \
                }                                                             \
        } while (0)

static void run_for(struct fixture *f, uint64_t ns)
{
        uint64_t until = now_ns() + ns;

        while (now_ns() < until)
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
}

static const char *sim_path(void)
{
        static char path[4096];
        const char *root = getenv("VSOCKMUX_BUILD_ROOT");

        snprintf(path, sizeof(path), "%s/sim/vsockmux-sim", root ?: ".");
        return path;
}

static void spawn_sim(struct fixture *f, bool resume)
{
        const char *argv[] = { sim_path(), "--hvsock", f->transport.uds_path, resume ? NULL : "--no-resume", NULL };

        assert_int_equal(posix_spawn(&f->sim, argv[0], NULL, NULL, (char **)argv, environ), 0);
}

static void stop_sim(struct fixture *f)
{
        int status;

        if (f->sim <= 0)
                return;
        if (f->sim_stopped)
                kill(f->sim, SIGCONT);
        kill(f->sim, SIGTERM);
        for (int i = 0; i < 1000; i++) {
                if (waitpid(f->sim, &status, WNOHANG) == f->sim) {
                        f->sim = 0;
                        return;
                }
                usleep(10000);
        }
        kill(f->sim, SIGKILL);
        waitpid(f->sim, &status, 0);
        f->sim = 0;
}

static int fixture_setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-bhost-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->transport.kind = RELAY_TRANSPORT_HVSOCK;
        snprintf(f->transport.uds_path, sizeof(f->transport.uds_path), "%s/vm.sock", f->dir);
        assert_int_equal(relay_new(NULL, &f->r), 0);
        assert_int_equal(ports_new(&f->ports), 0);
        assert_int_equal(bridge_host_new(f->r, &f->transport, &fixture_ops, f, &f->h), 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];

        stop_sim(f);
        f->h = bridge_host_free(f->h);
        /* Let closes and cancels land before the ring goes. */
        run_for(f, 50 * 1000000ull);
        f->r = relay_free(f->r);
        ports_free(f->ports);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", f->dir);
        free(f);
        return 0;
}

static void connect_sim(struct fixture *f, bool resume)
{
        uint64_t before = f->connected;

        spawn_sim(f, resume);
        RUN_UNTIL(f, f->connected > before && bridge_host_state(f->h) == BRIDGE_CONN_CONNECTED);
}

static void create_container(struct fixture *f, const char *cid)
{
        struct done d = { .f = f };

        assert_int_equal(bridge_host_create_container(f->h, cid, "{}", on_done, &d), 0);
        RUN_UNTIL(f, d.count == 1);
        assert_int_equal(d.res.status, BRIDGE_STATUS_OK);
}

static uint32_t exec_plain(struct fixture *f, const char *cid, const char **args, size_t n_args);

/* A container whose first process (its init: always found by waits, W9) sleeps; returns its pid. */
static uint32_t start_container(struct fixture *f, const char *cid)
{
        const char *init[] = { "sleep", "1000" };

        create_container(f, cid);
        return exec_plain(f, cid, init, 2);
}

/* Starts argv in container cid without stdio; returns the pid. */
static uint32_t exec_plain(struct fixture *f, const char *cid, const char **args, size_t n_args)
{
        struct bridge_process_params p = { .args = args, .n_args = n_args };
        struct done d = { .f = f };

        assert_int_equal(bridge_host_exec(f->h, cid, &p, NULL, on_done, &d), 0);
        RUN_UNTIL(f, d.count == 1);
        if (d.res.status != BRIDGE_STATUS_OK)
                fail_msg("exec failed: %s", d.message);
        assert_true(d.res.pid > 0);
        return d.res.pid;
}

static void wait_exit(struct fixture *f, const char *cid, uint32_t pid, struct done *d)
{
        assert_int_equal(bridge_host_wait(f->h, cid, pid, BRIDGE_WAIT_INFINITE, on_done, d, NULL), 0);
        RUN_UNTIL(f, d->count == 1);
}

/* ---- stdio: listeners made before the exec, accepted connections become relay streams ---- */

struct slot {
        struct fixture *f;
        enum relay_stream_dir dir;
        uint32_t port;
        int endpoint;   /* until the stream takes it */
        bool v4;        /* the V4 byte-count handshake was agreed */
        bool ack;       /* delivery acks too: the guest frees its replay window by them */
        bool stdin_eof; /* the stdin end confirmation too: the stdin stream keeps its fd for it */
        int pending_fd; /* V4 stdin, accepted but not yet relayed */
        struct relay_listener *l;
        struct relay_stream *s;
        int done_seq;
        int error;
        bool done;
};

static void slot_on_done(struct relay_stream *s, int error, void *userdata)
{
        struct slot *sl = userdata;

        sl->done = true;
        sl->error = error;
        sl->done_seq = ++sl->f->seq;
        /* Closing our end is what lets the guest finish its relay and report the exit (H5). With
         * the end confirmation the stdin stream closes it itself, once the guest's count came. */
        if (!(sl->dir == RELAY_STREAM_TO_GUEST && sl->stdin_eof))
                sl->s = relay_stream_free(sl->s);
}

static const struct relay_stream_ops slot_ops = {
        .on_done = slot_on_done,
};

static void slot_on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct slot *sl = userdata;

        sl->l = relay_listener_free(sl->l);
        assert_true(fd >= 0);
        if (sl->v4 && sl->dir == RELAY_STREAM_TO_GUEST) {
                /* V4 stdin: the guest speaks first (its count); the stream starts once it is read. */
                sl->pending_fd = fd;
                return;
        }
        if (sl->v4) {
                /* V4 stdout/stderr: our count of bytes already received, here none. */
                uint8_t zero[8] = {};

                assert_int_equal(send(fd, zero, sizeof(zero), MSG_NOSIGNAL), (ssize_t)sizeof(zero));
        }
        assert_int_equal(relay_stream_new(sl->f->r, sl->dir, fd, sl->endpoint, &slot_ops, sl, &sl->s), 0);
        sl->endpoint = -1;
        if (sl->ack)
                assert_int_equal(relay_stream_set_ack(sl->s, true), 0);
}

/* V4 stdin: reads the guest's 8-byte count, then relays. */
static void slot_start_v4_stdin(struct fixture *f, struct slot *sl)
{
        uint8_t raw[8];
        size_t have = 0;
        uint64_t count = 0;

        assert_true(sl->pending_fd >= 0);
        RUN_UNTIL(f, ({
                          ssize_t n = recv(sl->pending_fd, raw + have, sizeof(raw) - have, MSG_DONTWAIT);
                          if (n > 0)
                                  have += (size_t)n;
                          have == sizeof(raw);
                  }));
        for (int i = 7; i >= 0; i--)
                count = count << 8 | raw[i];
        assert_int_equal(count, 0);
        assert_int_equal(relay_stream_new(f->r, sl->dir, sl->pending_fd, sl->endpoint, &slot_ops, sl, &sl->s), 0);
        assert_int_equal(relay_stream_set_eof_confirm(sl->s, sl->stdin_eof), 0);
        sl->pending_fd = -1;
        sl->endpoint = -1;
}

static void slot_listen(struct fixture *f, struct slot *sl, enum relay_stream_dir dir, int endpoint)
{
        *sl = (struct slot){
                .f = f,
                .dir = dir,
                .endpoint = endpoint,
                .pending_fd = -1,
                .v4 = bridge_host_stdio_resume(f->h),
                .ack = bridge_host_stdio_ack(f->h),
                .stdin_eof = bridge_host_stdin_eof(f->h),
        };
        assert_int_equal(ports_alloc(f->ports, &sl->port), 0);
        assert_int_equal(relay_listen(f->r, &f->transport, sl->port, RELAY_LISTEN_ONCE, slot_on_accept, sl, &sl->l), 0);
}

static void slot_cleanup(struct slot *sl)
{
        sl->l = relay_listener_free(sl->l);
        sl->s = relay_stream_free(sl->s);
        if (sl->endpoint >= 0)
                close(sl->endpoint);
        if (sl->pending_fd >= 0)
                close(sl->pending_fd);
}

static size_t read_all(int fd, char *buf, size_t cap)
{
        size_t have = 0;
        ssize_t n;

        while (have < cap - 1 && (n = read(fd, buf + have, cap - 1 - have)) > 0)
                have += (size_t)n;
        buf[have] = 0;
        return have;
}

/* ---- tests ---- */

static void test_negotiates_with_the_simulator(void **state)
{
        struct fixture *f = *state;

        connect_sim(f, true);
        assert_string_equal(bridge_host_runtime_os(f->h), "linux");
        assert_true(bridge_host_stdio_resume(f->h));
        assert_true(bridge_host_stdio_ack(f->h));
        assert_true(bridge_host_stdin_eof(f->h));
}

static void test_legacy_simulator_gets_no_resume(void **state)
{
        struct fixture *f = *state;

        connect_sim(f, false);
        assert_false(bridge_host_stdio_resume(f->h));
        assert_false(bridge_host_stdio_ack(f->h));
        assert_false(bridge_host_stdin_eof(f->h));
}

static void run_echo(struct fixture *f);

static void test_stdin_echoes_through_cat_and_exit_follows_stream_eof(void **state)
{
        struct fixture *f = *state;

        /* A legacy guest: with V4 agreed each stdio connection starts with a byte count, which is
         * the stdio owner's handshake (not the bridge's). */
        connect_sim(f, false);
        run_echo(f);
}

static void test_resume_capable_guest_not_offered_resume_gets_plain_stdio(void **state)
{
        struct fixture *f = *state;

        bridge_host_set_offer_stdio_resume(f->h, false);
        connect_sim(f, true);
        assert_false(bridge_host_stdio_resume(f->h));
        run_echo(f);
}

static void test_agreed_resume_stdio_with_byte_count_handshake(void **state)
{
        struct fixture *f = *state;

        /* What the stdio owner does once bridge_host_stdio_resume() says V4 was agreed. */
        connect_sim(f, true);
        assert_true(bridge_host_stdio_resume(f->h));
        run_echo(f);
}

static void run_echo(struct fixture *f)
{
        const char *args[] = { "sh", "-c", "cat; echo err >&2" };
        struct bridge_process_params p = { .args = args, .n_args = 3 };
        struct slot in, out, err;
        struct done ex = { .f = f }, w = { .f = f };
        struct bridge_stdio_ports ports;
        int pin[2], pout[2], perr[2];
        char buf[256];

        start_container(f, "c1");
        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
        assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
        assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
        slot_listen(f, &in, RELAY_STREAM_TO_GUEST, pin[0]);
        slot_listen(f, &out, RELAY_STREAM_FROM_GUEST, pout[1]);
        slot_listen(f, &err, RELAY_STREAM_FROM_GUEST, perr[1]);
        ports = (struct bridge_stdio_ports){ in.port, out.port, err.port };

        assert_int_equal(bridge_host_exec(f->h, "c1", &p, &ports, on_done, &ex), 0);
        RUN_UNTIL(f, ex.count == 1);
        if (ex.res.status != BRIDGE_STATUS_OK)
                fail_msg("exec failed: %s", ex.message);
        /* The guest dialled all three before answering (W1). */
        if (in.v4)
                slot_start_v4_stdin(f, &in);
        assert_non_null(in.s);
        assert_non_null(out.s);
        assert_non_null(err.s);
        assert_int_equal(bridge_host_wait(f->h, "c1", ex.res.pid, BRIDGE_WAIT_INFINITE, on_done, &w, NULL), 0);

        assert_int_equal(write(pin[1], "hello bridge\n", 13), 13);
        close(pin[1]); /* EOF: the stream half-closes towards the guest, cat ends */
        RUN_UNTIL(f, w.count == 1 && out.done && err.done && in.done);
        assert_int_equal(w.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(w.res.exit_code, 0);
        assert_int_equal(out.error, 0);
        assert_int_equal(err.error, 0);
        /* The exit is reported only after stdout and stderr reached EOF and were flushed. */
        assert_true(out.done_seq < w.seq);
        assert_true(err.done_seq < w.seq);

        /* Streams are flushed and freed: the host ends of the pipes are closed. */
        read_all(pout[0], buf, sizeof(buf));
        assert_string_equal(buf, "hello bridge\n");
        read_all(perr[0], buf, sizeof(buf));
        assert_string_equal(buf, "err\n");
        close(pout[0]);
        close(perr[0]);
        slot_cleanup(&in);
        slot_cleanup(&out);
        slot_cleanup(&err);
}

static void test_exit_codes_are_reported(void **state)
{
        struct fixture *f = *state;
        const char *zero[] = { "true" };
        const char *three[] = { "sh", "-c", "exit 3" };
        const char *sleeper[] = { "sleep", "1000" };
        struct done w0 = { .f = f }, w3 = { .f = f }, w9 = { .f = f }, sig = { .f = f };
        uint32_t pid;

        connect_sim(f, true);
        start_container(f, "c1");
        wait_exit(f, "c1", exec_plain(f, "c1", zero, 1), &w0);
        assert_int_equal(w0.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(w0.res.exit_code, 0);
        wait_exit(f, "c1", exec_plain(f, "c1", three, 3), &w3);
        assert_int_equal(w3.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(w3.res.exit_code, 3);

        pid = exec_plain(f, "c1", sleeper, 2);
        assert_int_equal(bridge_host_wait(f->h, "c1", pid, BRIDGE_WAIT_INFINITE, on_done, &w9, NULL), 0);
        assert_int_equal(bridge_host_signal(f->h, "c1", pid, SIGKILL, on_done, &sig), 0);
        RUN_UNTIL(f, sig.count == 1 && w9.count == 1);
        assert_int_equal(sig.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(w9.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(w9.res.exit_code, 128 + 9);
}

static void test_wait_on_reaped_process_reports_lost_status_and_signal_reports_gone(void **state)
{
        struct fixture *f = *state;
        const char *zero[] = { "true" };
        struct done w = { .f = f }, again = { .f = f }, sig = { .f = f };
        uint32_t pid;

        connect_sim(f, true);
        start_container(f, "c1");
        pid = exec_plain(f, "c1", zero, 1);
        wait_exit(f, "c1", pid, &w);
        assert_int_equal(w.res.exit_code, 0);
        /* The guest forgot the process once a waiter had its exit (W9). */
        wait_exit(f, "c1", pid, &again);
        assert_int_equal(again.res.status, BRIDGE_STATUS_EXIT_LOST);
        assert_int_equal(again.res.error, -ECHILD);
        assert_int_not_equal(again.res.exit_code, 0);
        assert_int_equal(bridge_host_signal(f->h, "c1", pid, SIGTERM, on_done, &sig), 0);
        RUN_UNTIL(f, sig.count == 1);
        assert_int_equal(sig.res.status, BRIDGE_STATUS_ALREADY_GONE);
        assert_int_equal(sig.res.error, 0);
}

static void test_bridge_drop_fails_calls_outside_migration(void **state)
{
        struct fixture *f = *state;
        const char *sleeper[] = { "sleep", "1000" };
        struct done w = { .f = f }, after = { .f = f }, sig = { .f = f };
        uint32_t pid;
        uint64_t before;

        connect_sim(f, true);
        start_container(f, "c1");
        pid = exec_plain(f, "c1", sleeper, 2);
        assert_int_equal(bridge_host_wait(f->h, "c1", pid, BRIDGE_WAIT_INFINITE, on_done, &w, NULL), 0);
        run_for(f, 50 * 1000000ull); /* the wait is out on the wire */
        before = f->connected;
        assert_int_equal(kill(f->sim, SIGUSR1), 0);
        RUN_UNTIL(f, w.count == 1);
        assert_int_equal(w.res.status, BRIDGE_STATUS_CLOSED);
        assert_string_equal(w.message, "bridge closed");
        /* The VM stays: the guest redials and is renegotiated. */
        RUN_UNTIL(f, f->connected > before && bridge_host_state(f->h) == BRIDGE_CONN_CONNECTED);
        assert_int_equal(bridge_host_signal(f->h, "c1", pid, SIGKILL, on_done, &sig), 0);
        RUN_UNTIL(f, sig.count == 1);
        assert_int_equal(sig.res.status, BRIDGE_STATUS_OK);
        /* The old wait's late answer (queued in the guest) must not kill the new connection. */
        wait_exit(f, "c1", pid, &after);
        assert_true(after.res.status == BRIDGE_STATUS_OK || after.res.status == BRIDGE_STATUS_EXIT_LOST);
        assert_int_equal(bridge_host_state(f->h), BRIDGE_CONN_CONNECTED);
}

static void test_migration_drop_keeps_calls_and_probe_catches_exit_while_detached(void **state)
{
        struct fixture *f = *state;
        const char *sleeper[] = { "sleep", "1000" };
        struct done kept = { .f = f }, adopted = { .f = f }, sig = { .f = f };
        uint32_t pid_kept, pid_gone;
        uint64_t before, gen;

        connect_sim(f, true);
        start_container(f, "c1");
        pid_kept = exec_plain(f, "c1", sleeper, 2);
        pid_gone = exec_plain(f, "c1", sleeper, 2);
        assert_int_equal(bridge_host_wait(f->h, "c1", pid_kept, BRIDGE_WAIT_INFINITE, on_done, &kept, NULL), 0);
        run_for(f, 50 * 1000000ull);

        bridge_host_set_migrating(f->h, true);
        before = f->connected;
        gen = bridge_conn_generation(bridge_host_conn(f->h));
        f->stop_sim_on_detach = true;
        assert_int_equal(kill(f->sim, SIGUSR1), 0);
        RUN_UNTIL(f, bridge_host_state(f->h) == BRIDGE_CONN_MIGRATING);
        assert_true(f->sim_stopped);
        /* The guest's process dies while the bridge is down (the simulator reaps it once resumed). */
        assert_int_equal(kill((pid_t)pid_gone, SIGKILL), 0);
        run_for(f, 200 * 1000000ull);
        assert_int_equal(kept.count, 0);
        f->stop_sim_on_detach = false;
        f->sim_stopped = false;
        assert_int_equal(kill(f->sim, SIGCONT), 0);
        /* Once reaped the pid disappears; only then does the guest know the exit. */
        RUN_UNTIL(f, kill((pid_t)pid_gone, 0) < 0 && errno == ESRCH);
        RUN_UNTIL(f, f->connected > before && bridge_host_state(f->h) == BRIDGE_CONN_CONNECTED);
        assert_true(bridge_conn_generation(bridge_host_conn(f->h)) > gen);
        bridge_host_set_migrating(f->h, false);
        assert_int_equal(kept.count, 0);

        /* A wait whose reply went missing with the old connection (here: never reached the guest)
         * is adopted; the bounded probe finds the exit that happened while detached. */
        assert_int_equal(bridge_host_seed_next_id(f->h, bridge_host_next_id(f->h) + 1000), 0);
        assert_int_equal(
                bridge_host_preregister_wait(f->h, bridge_host_next_id(f->h) - 500, "c1", pid_gone, on_done, &adopted),
                0);
        RUN_UNTIL(f, adopted.count == 1);
        assert_int_equal(adopted.res.status, BRIDGE_STATUS_OK);
        assert_true(adopted.res.probed);
        assert_int_equal(adopted.res.exit_code, 128 + 9);

        /* The call kept across the drop still completes with the real exit. */
        assert_int_equal(bridge_host_signal(f->h, "c1", pid_kept, SIGKILL, on_done, &sig), 0);
        /* (The reconnect probe of the kept wait may be the one that sees the exit: either way once.) */
        RUN_UNTIL(f, kept.count == 1 && sig.count == 1);
        assert_int_equal(kept.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(kept.res.exit_code, 128 + 9);
        bridge_host_end_resume_window(f->h);
}

static void test_early_response_and_notification_are_held_across_a_resume(void **state)
{
        struct fixture *f = *state;
        const char *sleeper[] = { "sleep", "1000" };
        struct done src = { .f = f }, adopted = { .f = f };
        struct seen n = {};
        uint64_t wait_id, next_id;
        uint32_t pid, init;

        /* Source daemon: a process with its wait outstanding. */
        connect_sim(f, true);
        init = start_container(f, "c1");
        pid = exec_plain(f, "c1", sleeper, 2);
        assert_int_equal(bridge_host_wait(f->h, "c1", pid, BRIDGE_WAIT_INFINITE, on_done, &src, &wait_id), 0);
        run_for(f, 50 * 1000000ull);
        next_id = bridge_host_next_id(f->h);
        /* Hand over: the source goes away (its own wait fails there), a destination takes the path. */
        f->h = bridge_host_free(f->h);
        assert_int_equal(src.count, 1);
        assert_int_equal(src.res.status, BRIDGE_STATUS_CLOSED);
        assert_int_equal(bridge_host_new(f->r, &f->transport, &fixture_ops, f, &f->h), 0);
        bridge_host_set_migrating(f->h, true);
        RUN_UNTIL(f, bridge_host_state(f->h) == BRIDGE_CONN_CONNECTED);
        bridge_host_set_migrating(f->h, false);

        /* The process and the container's init exit before the restore re-registered the wait
         * and the container: the answer and the exit notification are held, not fatal (Z1, V1). */
        assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
        assert_int_equal(kill((pid_t)init, SIGKILL), 0);
        RUN_UNTIL(f, bridge_conn_held_count(bridge_host_conn(f->h)) == 2);
        assert_int_equal(bridge_host_state(f->h), BRIDGE_CONN_CONNECTED);
        assert_int_equal(bridge_host_seed_next_id(f->h, next_id), 0);
        assert_int_equal(bridge_host_preregister_wait(f->h, wait_id, "c1", pid, on_done, &adopted), 0);
        RUN_UNTIL(f, adopted.count == 1);
        assert_int_equal(adopted.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(adopted.res.exit_code, 128 + 9);
        assert_false(adopted.res.probed);
        assert_int_equal(bridge_host_watch_container(f->h, "c1", on_notify, &n), 0);
        assert_int_equal(n.count, 1);
        assert_int_equal(n.error, 0);
        assert_string_equal(n.type, "UnexpectedExit");
        assert_int_equal(bridge_conn_held_count(bridge_host_conn(f->h)), 0);
        bridge_host_end_resume_window(f->h);
        assert_int_equal(bridge_host_state(f->h), BRIDGE_CONN_CONNECTED);
}

/* ---- a raw socket impersonating the guest ---- */

static int raw_dial(struct fixture *f)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        assert_true(fd >= 0);
        assert_int_equal(relay_transport_hvsock_path(&f->transport, BRIDGE_HOST_PORT, sa.sun_path, sizeof(sa.sun_path)),
                         0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

/* Reads the host's NegotiateProtocol from fd; returns its id. */
static uint64_t raw_read_negotiate(struct fixture *f, int fd)
{
        uint8_t buf[4096];
        size_t have = 0;
        struct bridge_frame fr;
        int r = 0;

        RUN_UNTIL(f, ({
                          ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
                          if (n > 0)
                                  have += (size_t)n;
                          r = bridge_frame_parse(buf, have, &fr, NULL, NULL);
                          r != 0;
                  }));
        assert_true(r > 0);
        assert_int_equal(fr.header.type, BRIDGE_RPC_NEGOTIATE_PROTOCOL);
        return fr.header.id;
}

static void test_oversized_frame_is_refused_without_killing_the_daemon(void **state)
{
        struct fixture *f = *state;
        struct bridge_header bh = {
                .type = bridge_type_response_for(BRIDGE_RPC_NEGOTIATE_PROTOCOL),
                .size = BRIDGE_MAX_FRAME + 1,
        };
        struct bridge_response resp = { .negotiate = { .version = 4 } };
        _cleanup_free_ uint8_t *ok = NULL;
        uint8_t hdr[BRIDGE_HEADER_SIZE];
        size_t ok_len;
        int fd, fd2;
        char c;

        fd = raw_dial(f);
        bh.id = raw_read_negotiate(f, fd);
        bridge_header_encode(&bh, hdr);
        assert_int_equal(write(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        /* The host drops that connection: EOF (or reset) on our side. */
        RUN_UNTIL(f, ({
                          ssize_t n = recv(fd, &c, 1, 0);
                          n == 0 || (n < 0 && errno != EAGAIN);
                  }));
        assert_int_equal(bridge_host_state(f->h), BRIDGE_CONN_WAITING);
        close(fd);

        /* The VM is still registered: the next guest connection negotiates. */
        fd2 = raw_dial(f);
        assert_int_equal(
                bridge_response_frame(BRIDGE_RPC_NEGOTIATE_PROTOCOL, raw_read_negotiate(f, fd2), &resp, &ok, &ok_len),
                0);
        assert_int_equal(write(fd2, ok, ok_len), (ssize_t)ok_len);
        RUN_UNTIL(f, bridge_host_state(f->h) == BRIDGE_CONN_CONNECTED);
        close(fd2);
        RUN_UNTIL(f, bridge_host_state(f->h) == BRIDGE_CONN_WAITING);
}

/* Negotiates a raw guest connection; returns its fd. */
static int raw_connect(struct fixture *f)
{
        struct bridge_response resp = { .negotiate = { .version = 4 } };
        _cleanup_free_ uint8_t *ok = NULL;
        size_t ok_len;
        int fd = raw_dial(f);

        assert_int_equal(
                bridge_response_frame(BRIDGE_RPC_NEGOTIATE_PROTOCOL, raw_read_negotiate(f, fd), &resp, &ok, &ok_len),
                0);
        assert_int_equal(write(fd, ok, ok_len), (ssize_t)ok_len);
        RUN_UNTIL(f, bridge_host_state(f->h) == BRIDGE_CONN_CONNECTED);
        return fd;
}

static void test_unanswered_call_times_out_on_the_loop_timer(void **state)
{
        struct fixture *f = *state;
        struct done sig = { .f = f }, w = { .f = f };
        struct bridge_response late = {};
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t wait_id;
        size_t len;
        int fd;

        fd = raw_connect(f);
        assert_int_equal(bridge_host_set_call_timeout(f->h, 200 * 1000000ull), 0);
        /* An infinite wait has no deadline; a signal has the (shortened) call timeout. */
        assert_int_equal(bridge_host_wait(f->h, "c1", 5, BRIDGE_WAIT_INFINITE, on_done, &w, &wait_id), 0);
        assert_int_equal(bridge_host_signal(f->h, "c1", 5, SIGTERM, on_done, &sig), 0);
        RUN_UNTIL(f, sig.count == 1);
        assert_int_equal(sig.res.status, BRIDGE_STATUS_TIMEOUT);
        assert_int_equal(sig.res.error, -ETIMEDOUT);
        assert_int_equal(w.count, 0);
        /* The guest's late answer is swallowed; the bridge stays up. */
        assert_int_equal(bridge_response_frame(BRIDGE_RPC_SIGNAL_PROCESS, sig.res.call_id, &late, &buf, &len), 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        run_for(f, 100 * 1000000ull);
        assert_int_equal(bridge_host_state(f->h), BRIDGE_CONN_CONNECTED);
        assert_int_equal(sig.count, 1);
        assert_int_equal(w.count, 0);
        close(fd);
        RUN_UNTIL(f, w.count == 1);
        assert_int_equal(w.res.status, BRIDGE_STATUS_CLOSED);
}

static void test_newer_guest_connection_replaces_the_current_one(void **state)
{
        struct fixture *f = *state;
        struct done w = { .f = f }, gone = { .f = f };
        struct bridge_response exited = { .wait.exit_code = 7 };
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t wait_id, gen;
        size_t len;
        char c;
        int a, b;

        a = raw_connect(f);
        gen = bridge_conn_generation(bridge_host_conn(f->h));
        /* Outside migration the replaced connection's calls fail... */
        assert_int_equal(bridge_host_wait(f->h, "c1", 5, BRIDGE_WAIT_INFINITE, on_done, &gone, NULL), 0);
        b = raw_connect(f);
        assert_true(bridge_conn_generation(bridge_host_conn(f->h)) > gen);
        assert_int_equal(gone.count, 1);
        assert_int_equal(gone.res.status, BRIDGE_STATUS_CLOSED);
        /* ...and the old one is closed by the host. */
        RUN_UNTIL(f, ({
                          ssize_t n = recv(a, &c, 1, MSG_DONTWAIT);
                          n == 0 || (n < 0 && errno != EAGAIN);
                  }));
        close(a);

        /* While migrating, a wait survives the replacement and the new connection answers it. */
        bridge_host_set_migrating(f->h, true);
        assert_int_equal(bridge_host_wait(f->h, "c1", 6, BRIDGE_WAIT_INFINITE, on_done, &w, &wait_id), 0);
        a = raw_connect(f);
        close(b);
        assert_int_equal(w.count, 0);
        assert_int_equal(bridge_response_frame(BRIDGE_RPC_WAIT_FOR_PROCESS, wait_id, &exited, &buf, &len), 0);
        assert_int_equal(write(a, buf, len), (ssize_t)len);
        RUN_UNTIL(f, w.count == 1);
        assert_int_equal(w.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(w.res.exit_code, 7);
        bridge_host_set_migrating(f->h, false);
        close(a);
        RUN_UNTIL(f, bridge_host_state(f->h) == BRIDGE_CONN_WAITING);
}

static void test_release_lets_another_daemon_listen_and_relisten_resumes(void **state)
{
        struct fixture *f = *state;
        struct done w = { .f = f };
        struct bridge_response exited = { .wait.exit_code = 2 };
        _cleanup_free_ uint8_t *buf = NULL;
        struct bridge_host *other = NULL;
        char path[RELAY_UDS_PATH_MAX + 16];
        struct stat st;
        uint64_t wait_id;
        size_t len;
        char c;
        int a, b;

        a = raw_connect(f);
        bridge_host_set_migrating(f->h, true);
        assert_int_equal(bridge_host_wait(f->h, "c1", 6, BRIDGE_WAIT_INFINITE, on_done, &w, &wait_id), 0);
        bridge_host_release(f->h);
        bridge_host_release(f->h);
        assert_false(bridge_host_is_listening(f->h));
        assert_int_equal(bridge_host_state(f->h), BRIDGE_CONN_MIGRATING);
        assert_int_equal(relay_transport_hvsock_path(&f->transport, BRIDGE_HOST_PORT, path, sizeof(path)), 0);
        assert_int_equal(stat(path, &st), -1);
        RUN_UNTIL(f, ({
                          ssize_t n = recv(a, &c, 1, MSG_DONTWAIT);
                          n == 0 || (n < 0 && errno != EAGAIN);
                  }));
        close(a);

        /* The port is free for another daemon... */
        assert_int_equal(bridge_host_new(f->r, &f->transport, NULL, NULL, &other), 0);
        /* (A loop turn first: a listener freed before its accept was submitted spoils the next
         * listener's accepts in this relay; reported.) */
        run_for(f, 10 * 1000000ull);
        other = bridge_host_free(other);
        /* ...and this one can take it back: the kept wait is answered on the next connection. */
        assert_int_equal(bridge_host_relisten(f->h), 0);
        assert_int_equal(bridge_host_relisten(f->h), 0);
        assert_true(bridge_host_is_listening(f->h));
        b = raw_connect(f);
        assert_int_equal(w.count, 0);
        assert_int_equal(bridge_response_frame(BRIDGE_RPC_WAIT_FOR_PROCESS, wait_id, &exited, &buf, &len), 0);
        assert_int_equal(write(b, buf, len), (ssize_t)len);
        RUN_UNTIL(f, w.count == 1);
        assert_int_equal(w.res.exit_code, 2);
        bridge_host_set_migrating(f->h, false);
        close(b);
        RUN_UNTIL(f, bridge_host_state(f->h) == BRIDGE_CONN_WAITING);
}

static void on_held(struct bridge_host *h, void *userdata)
{
        *(int *)userdata += 1;
}

/* A process that exits 7 once the test creates <dir>/go: its exit comes when the test says. */
static uint32_t exec_until_go(struct fixture *f, char *script, size_t len)
{
        const char *args[] = { "sh", "-c", script };

        snprintf(script, len, "while [ ! -e '%s/go' ]; do sleep 0.02; done; exit 7", f->dir);
        return exec_plain(f, "c1", args, 3);
}

static void let_go(struct fixture *f)
{
        char path[128];
        int fd;

        snprintf(path, sizeof(path), "%s/go", f->dir);
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
}

/* A live upgrade: the held bridge goes to a new host with its connection; the guest never dials
 * again (the generation stays), the outstanding wait is answered there, and calls go on. */
static void test_hand_over_moves_the_live_connection_and_its_wait_answers_there(void **state)
{
        struct fixture *f = *state;
        struct bridge_host_handover hv = { .listener_fd = -1, .guest_fd = -1 };
        struct done w = { .f = f }, w2 = { .f = f }, w3 = { .f = f };
        const char *zero[] = { "true" };
        uint64_t wait_id, gen;
        char script[256];
        uint32_t pid;
        int held = 0;

        connect_sim(f, true);
        start_container(f, "c1");
        pid = exec_until_go(f, script, sizeof(script));
        assert_int_equal(bridge_host_wait(f->h, "c1", pid, BRIDGE_WAIT_INFINITE, on_done, &w, &wait_id), 0);
        gen = bridge_conn_generation(bridge_host_conn(f->h));
        assert_int_equal(bridge_host_hand_over(f->h, &hv), -EBUSY); /* not held */
        assert_int_equal(bridge_host_hold(f->h, on_held, &held), 0);
        assert_int_equal(held, 0);
        RUN_UNTIL(f, held == 1);
        assert_int_equal(bridge_host_hand_over(f->h, &hv), 0);
        assert_true(hv.listener_fd >= 0 && hv.guest_fd >= 0);
        assert_true(hv.next_id > wait_id);
        assert_int_equal(hv.generation, gen);
        assert_true(hv.stdio_resume);
        assert_true(hv.stdio_ack);
        assert_string_equal(hv.runtime_os, "linux");
        /* the old host tells nobody anything */
        f->h = bridge_host_free(f->h);
        run_for(f, 50 * 1000000ull);
        assert_int_equal(w.count, 0);

        assert_int_equal(bridge_host_adopt(f->r, &f->transport, &fixture_ops, f, &hv, &f->h), 0);
        assert_int_equal(hv.listener_fd, -1);
        assert_int_equal(hv.guest_fd, -1);
        bridge_host_handover_done(&hv);
        assert_int_equal(bridge_host_state(f->h), BRIDGE_CONN_CONNECTED);
        assert_true(bridge_host_stdio_resume(f->h));
        assert_true(bridge_host_stdio_ack(f->h));
        assert_int_equal(bridge_host_preregister_wait(f->h, wait_id, "c1", pid, on_done, &w2), 0);
        let_go(f);
        RUN_UNTIL(f, w2.count == 1);
        assert_int_equal(w2.res.status, BRIDGE_STATUS_OK);
        assert_int_equal(w2.res.exit_code, 7);
        assert_false(w2.res.probed);
        /* the same connection: new calls work on it, and nobody dialled again */
        wait_exit(f, "c1", exec_plain(f, "c1", zero, 1), &w3);
        assert_int_equal(w3.res.exit_code, 0);
        assert_true(bridge_host_next_id(f->h) > wait_id);
        assert_int_equal(bridge_conn_generation(bridge_host_conn(f->h)), gen);
        assert_int_equal(w.count, 0);
}

/* A rollback: unhold, and the old host serves on; a call made while held goes out then. */
static void test_hold_then_unhold_serves_on_with_nothing_lost(void **state)
{
        struct fixture *f = *state;
        struct done w = { .f = f }, w2 = { .f = f };
        const char *zero[] = { "true" };
        char script[256];
        uint32_t pid;
        uint64_t gen;
        int held = 0;

        connect_sim(f, true);
        start_container(f, "c1");
        pid = exec_until_go(f, script, sizeof(script));
        assert_int_equal(bridge_host_wait(f->h, "c1", pid, BRIDGE_WAIT_INFINITE, on_done, &w, NULL), 0);
        gen = bridge_conn_generation(bridge_host_conn(f->h));
        assert_int_equal(bridge_host_hold(f->h, on_held, &held), 0);
        assert_int_equal(bridge_host_hold(f->h, on_held, &held), -EALREADY);
        RUN_UNTIL(f, held == 1);
        let_go(f);
        run_for(f, 200 * 1000000ull);
        assert_int_equal(w.count, 0); /* held: the answer waits in the socket */
        bridge_host_unhold(f->h);
        RUN_UNTIL(f, w.count == 1);
        assert_int_equal(w.res.exit_code, 7);
        wait_exit(f, "c1", exec_plain(f, "c1", zero, 1), &w2);
        assert_int_equal(w2.res.exit_code, 0);
        assert_int_equal(bridge_conn_generation(bridge_host_conn(f->h)), gen);
}

/* Only waits may be outstanding: any other call's answer would reach nobody. */
static void test_hold_refused_while_another_call_is_outstanding(void **state)
{
        struct fixture *f = *state;
        struct done d = { .f = f };
        int held = 0;

        connect_sim(f, true);
        assert_int_equal(bridge_host_create_container(f->h, "c2", "{}", on_done, &d), 0);
        assert_int_equal(bridge_host_hold(f->h, on_held, &held), -EBUSY);
        RUN_UNTIL(f, d.count == 1);
        assert_int_equal(bridge_host_hold(f->h, on_held, &held), 0);
        RUN_UNTIL(f, held == 1);
        bridge_host_unhold(f->h);
}

static void on_done_free_host(const struct bridge_result *res, void *userdata)
{
        struct done *d = userdata;

        on_done(res, userdata);
        d->f->h = bridge_host_free(d->f->h);
}

static void test_host_freed_from_its_own_callbacks(void **state)
{
        struct fixture *f = *state;
        struct done a = { .f = f }, b = { .f = f }, t = { .f = f };
        struct bridge_response exited = { .wait.exit_code = 1 };
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t id;
        size_t len;
        int fd;

        /* From a response being routed (inside the channel's on_data). */
        fd = raw_connect(f);
        assert_int_equal(bridge_host_wait(f->h, "c1", 1, BRIDGE_WAIT_INFINITE, on_done_free_host, &a, &id), 0);
        assert_int_equal(bridge_host_wait(f->h, "c1", 2, BRIDGE_WAIT_INFINITE, on_done, &b, NULL), 0);
        assert_int_equal(bridge_response_frame(BRIDGE_RPC_WAIT_FOR_PROCESS, id, &exited, &buf, &len), 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        RUN_UNTIL(f, a.count == 1);
        assert_null(f->h);
        assert_int_equal(b.count, 1);
        assert_int_equal(b.res.status, BRIDGE_STATUS_CLOSED);
        close(fd);

        /* From a timeout (inside the timer's callback). */
        assert_int_equal(bridge_host_new(f->r, &f->transport, &fixture_ops, f, &f->h), 0);
        fd = raw_connect(f);
        assert_int_equal(bridge_host_set_call_timeout(f->h, 50 * 1000000ull), 0);
        assert_int_equal(bridge_host_signal(f->h, "c1", 1, 9, on_done_free_host, &t), 0);
        RUN_UNTIL(f, t.count == 1);
        assert_int_equal(t.res.status, BRIDGE_STATUS_TIMEOUT);
        assert_null(f->h);
        run_for(f, 20 * 1000000ull);
        close(fd);
}

int main(void)
{
        test_skip_without_io_uring();
        const struct CMUnitTest raw_tests[] = {
                cmocka_unit_test_setup_teardown(test_oversized_frame_is_refused_without_killing_the_daemon,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_unanswered_call_times_out_on_the_loop_timer, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_newer_guest_connection_replaces_the_current_one, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_hand_over_moves_the_live_connection_and_its_wait_answers_there,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_hold_then_unhold_serves_on_with_nothing_lost, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_hold_refused_while_another_call_is_outstanding, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_release_lets_another_daemon_listen_and_relisten_resumes,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_host_freed_from_its_own_callbacks, fixture_setup,
                                                fixture_teardown),
        };
        const struct CMUnitTest sim_tests[] = {
                cmocka_unit_test_setup_teardown(test_negotiates_with_the_simulator, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_legacy_simulator_gets_no_resume, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_stdin_echoes_through_cat_and_exit_follows_stream_eof,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_resume_capable_guest_not_offered_resume_gets_plain_stdio,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_agreed_resume_stdio_with_byte_count_handshake, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_exit_codes_are_reported, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_wait_on_reaped_process_reports_lost_status_and_signal_reports_gone,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_bridge_drop_fails_calls_outside_migration, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_migration_drop_keeps_calls_and_probe_catches_exit_while_detached,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_early_response_and_notification_are_held_across_a_resume,
                                                fixture_setup, fixture_teardown),
        };
        int failed;

        signal(SIGPIPE, SIG_IGN);
        failed = cmocka_run_group_tests_name("raw guest", raw_tests, NULL, NULL);
        if (access(sim_path(), X_OK) < 0) {
                fprintf(stderr, "SKIP simulator tests: %s is not built (%s)\n", sim_path(), strerror(errno));
                return failed ? failed : 77;
        }
        return failed + cmocka_run_group_tests_name("simulator", sim_tests, NULL, NULL);
}
