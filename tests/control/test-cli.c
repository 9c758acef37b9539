/* tests/control/test-cli.c: the vsockmux binary against a fake daemon (the real control server on a
 * real loop, with canned method handlers standing in for daemon/). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "control/server.h"
#include "relay/relay.h"
#include "tests/io-uring-skip.h"

#define WAIT_LIMIT_NS (60ull * 1000000000ull)
#define OUT_MAX (4u << 20)
#define BULK_BYTES (1u << 20) /* stdout the fake floods */
#define BULK_INPUT (8u << 20) /* stdin the CLI has ready at once */

static const char *cli_path;

struct fixture {
        char dir[64];
        char path[96];
        char attach_path[100];
        int attach_listen_fd;
        struct relay *relay;
        struct control_server *server;
        char last_exec_stdout[256];
        pid_t bulk_pid;
        struct control_call *bulk_call;
        struct control_call *hung_call;
        bool hung_seen;
        int signal_when_hung;    /* sent to the CLI once an Exec hangs in the fake */
        char last_outcome[32];   /* argv[0] of the last Exec: what Wait answers for pid 99 */
        char last_attach_id[80]; /* AttachRequest.exec_id */
        uint32_t last_attach_pid;
};

struct run {
        char *out;
        char *err;
        size_t out_len, err_len;
        int status;
};

/* ---- the fake daemon's handlers ------------------------------------------------------------ */

static int fake_vm_list(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        Vsockmux__V1__VmListResponse resp = VSOCKMUX__V1__VM_LIST_RESPONSE__INIT;
        Vsockmux__V1__VmInfo a = VSOCKMUX__V1__VM_INFO__INIT, b = VSOCKMUX__V1__VM_INFO__INIT;
        Vsockmux__V1__VmInfo c = VSOCKMUX__V1__VM_INFO__INIT;
        Vsockmux__V1__VmInfo *vms[] = { &a, &b, &c };

        a.name = (char *)"alpha";
        a.transport = VSOCKMUX__V1__TRANSPORT__TRANSPORT_HVSOCK;
        a.hvsock_path = (char *)"/run/fc/alpha.vsock";
        a.bridge_state = VSOCKMUX__V1__BRIDGE_STATE__BRIDGE_STATE_CONNECTED;
        a.process_count = 12;
        a.container_count = 2;
        b.name = (char *)"b";
        b.transport = VSOCKMUX__V1__TRANSPORT__TRANSPORT_VSOCK;
        b.cid = 42;
        b.bridge_state = VSOCKMUX__V1__BRIDGE_STATE__BRIDGE_STATE_WAITING;
        /* A name carrying a terminal escape and a newline. */
        c.name = (char *)"evil\033]0;owned\007\nname";
        c.transport = VSOCKMUX__V1__TRANSPORT__TRANSPORT_VSOCK;
        c.cid = 43;
        resp.n_vms = 3;
        resp.vms = vms;
        control_call_reply(call, &resp.base);
        return 0;
}

static int fake_vm_add(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        const Vsockmux__V1__VmAddRequest *req = (const void *)request;

        if (strcmp(req->name, "taken") == 0)
                return control_call_fail(call, CONTROL_CODE_ALREADY_EXISTS, "VM 'taken' already exists\nsecond line"),
                       0;
        if (req->transport_case != VSOCKMUX__V1__VM_ADD_REQUEST__TRANSPORT_CID || req->cid != 7)
                return -EINVAL;
        control_call_reply(call, NULL);
        return 0;
}

static int fake_kill(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        const Vsockmux__V1__KillRequest *req = (const void *)request;
        Vsockmux__V1__KillResponse resp = VSOCKMUX__V1__KILL_RESPONSE__INIT;

        /* The default signal is SIGTERM; pid 404 is gone already. */
        if (req->signal != SIGTERM && req->signal != SIGKILL)
                return -EINVAL;
        if (req->pid == 404) {
                resp.not_found = true;
                resp.note = (char *)"already exited";
        }
        control_call_reply(call, &resp.base);
        return 0;
}

static int fake_ps(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        Vsockmux__V1__PsResponse resp = VSOCKMUX__V1__PS_RESPONSE__INIT;
        Vsockmux__V1__ProcessInfo p = VSOCKMUX__V1__PROCESS_INFO__INIT;
        Vsockmux__V1__ProcessInfo *procs[] = { &p };
        Vsockmux__V1__StreamCounters bytes = VSOCKMUX__V1__STREAM_COUNTERS__INIT;
        Vsockmux__V1__ExitStatus es = VSOCKMUX__V1__EXIT_STATUS__INIT;
        char *argv[] = { (char *)"sleep", (char *)"100" };

        p.pid = 17;
        p.exec_id = (char *)"job-17";
        p.argv = argv;
        p.n_argv = 2;
        p.state = VSOCKMUX__V1__PROCESS_STATE__PROCESS_STATE_LOST;
        p.stdin_port = 0x40000001;
        p.stdout_port = 0x40000002;
        p.stderr_port = 0x40000003;
        p.wait_call_id = 9;
        bytes.stdout_bytes = 1234;
        p.bytes = &bytes;
        es.kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_LOST;
        p.exit = &es;
        resp.processes = procs;
        resp.n_processes = 1;
        control_call_reply(call, &resp.base);
        return 0;
}

static void fake_events_cancel(struct control_call *call, void *userdata)
{
        control_call_fail(call, CONTROL_CODE_CANCELLED, "client gone");
}

/* All events, or (migrate's, which names its VM) none until the client goes. */
static int fake_events(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        const Vsockmux__V1__EventsRequest *req = (const void *)request;
        Vsockmux__V1__Event ev = VSOCKMUX__V1__EVENT__INIT;
        Vsockmux__V1__ExitStatus es = VSOCKMUX__V1__EXIT_STATUS__INIT;

        if (req->vm[0]) {
                control_call_set_cancel(call, fake_events_cancel, NULL);
                return 0;
        }
        ev.timestamp_ns = UINT64_C(1700000000123000000);
        ev.kind = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_VM_ADDED;
        ev.vm = (char *)"alpha";
        control_call_send(call, &ev.base);
        ev.kind = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_PROCESS_EXITED;
        ev.pid = 5;
        es.kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_SIGNALED;
        es.signal = 9;
        ev.exit = &es;
        control_call_send(call, &ev.base);
        control_call_reply(call, NULL);
        return 0;
}

/* Refuses, as vsockmuxd does (daemon/migrate.c), an --io naming a pid the VM does not hold: 404. */
static int fake_migrate(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        const Vsockmux__V1__MigrateRequest *req = (const void *)request;

        for (size_t i = 0; i < req->n_io; i++)
                if (req->io[i]->pid == 404)
                        return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                                 "--io names pid 404, which VM %s does not hold", req->vm),
                               0;
        return control_call_fail(call, CONTROL_CODE_UNAVAILABLE, "the fake migrates nothing"), 0;
}

static int connect_path(const char *path, int type)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static void write_str(int fd, const char *s)
{
        assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Floods stdout before reading any stdin: a CLI that blocks on either deadlocks. */
static int fake_bulk(int in, int out, int err)
{
        static char chunk[4096];
        char line[64];
        size_t total = 0;

        memset(chunk, 'x', sizeof(chunk));
        for (size_t i = 0; i < BULK_BYTES / sizeof(chunk); i++)
                if (write(out, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
                        return 1;
        for (;;) {
                ssize_t n = read(in, chunk, sizeof(chunk));
                if (n <= 0)
                        break;
                total += (size_t)n;
        }
        snprintf(line, sizeof(line), "got %zu\n", total);
        return write(err, line, strlen(line)) == (ssize_t)strlen(line) ? 0 : 1;
}

/* Answers the bulk process's Wait once its child is done, with the child's exit code. */
static void fake_bulk_poll(struct fixture *f)
{
        Vsockmux__V1__WaitResponse resp = VSOCKMUX__V1__WAIT_RESPONSE__INIT;
        Vsockmux__V1__ExitStatus es = VSOCKMUX__V1__EXIT_STATUS__INIT;
        int status;

        if (f->bulk_pid <= 0 || !f->bulk_call || waitpid(f->bulk_pid, &status, WNOHANG) != f->bulk_pid)
                return;
        f->bulk_pid = 0;
        es.kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED;
        es.code = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
        resp.exit = &es;
        control_call_reply(f->bulk_call, &resp.base);
        f->bulk_call = NULL;
}

static void fake_hung_cancel(struct control_call *call, void *userdata)
{
        struct fixture *f = userdata;

        f->hung_call = NULL;
        control_call_fail(call, CONTROL_CODE_CANCELLED, "client gone");
}

/* Exec, faked in the loop thread with blocking I/O: the CLI is another process, so this cannot
 * deadlock. argv[0] picks the outcome: "exit7", "exit256", "exit-2", "signal9", "lost" or "fail".
 * As vsockmuxd does, Exec answers with the pid (the attached CLI sends detach = true too); the
 * exit goes to Wait. */
static int fake_exec(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        const Vsockmux__V1__ExecRequest *req = (const void *)request;
        struct fixture *f = userdata;
        Vsockmux__V1__ExecResponse resp = VSOCKMUX__V1__EXEC_RESPONSE__INIT;
        int in, out, err;
        char buf[256];
        size_t got = 0;

        if (req->n_argv < 1)
                return -EINVAL;
        if (strcmp(req->argv[0], "fail") == 0)
                return control_call_fail(call, CONTROL_CODE_NOT_FOUND, "VM '%s' not found", req->vm), 0;
        snprintf(f->last_exec_stdout, sizeof(f->last_exec_stdout), "%s", req->stdout_path);
        if (strcmp(req->argv[0], "hang") == 0) {
                f->hung_call = call;
                f->hung_seen = true;
                control_call_set_cancel(call, fake_hung_cancel, f);
                return 0;
        }
        if (!req->stdin_path[0]) {
                /* A detached exec without stdio of the CLI's own. */
                resp.pid = 4321;
                control_call_reply(call, &resp.base);
                return 0;
        }

        in = connect_path(req->stdin_path, SOCK_STREAM);
        out = connect_path(req->stdout_path, SOCK_STREAM);
        err = connect_path(req->stderr_path, SOCK_STREAM);
        assert_true(in >= 0 && out >= 0 && err >= 0);
        if (strcmp(req->argv[0], "bulk") == 0) {
                /* Runs in a child so the loop (and the harness feeding the CLI) keeps going. */
                f->bulk_pid = fork();
                assert_true(f->bulk_pid >= 0);
                if (f->bulk_pid == 0) {
                        /* Keep only the three streams: an inherited copy of the CLI's stdin pipe
                         * would hold its EOF back forever. */
                        int keep[3] = { fcntl(in, F_DUPFD_CLOEXEC, 1000), fcntl(out, F_DUPFD_CLOEXEC, 1000),
                                        fcntl(err, F_DUPFD_CLOEXEC, 1000) };
                        close_range(3, 999, 0);
                        close_range(1003, ~0u, 0);
                        _exit(fake_bulk(keep[0], keep[1], keep[2]));
                }
                close(in);
                close(out);
                close(err);
                resp.pid = 100;
                control_call_reply(call, &resp.base);
                return 0;
        }
        write_str(out, "out:hello\n");
        write_str(err, "err:oops\n");
        /* Echo stdin until its EOF, as `cat` would. */
        for (;;) {
                ssize_t n = read(in, buf + got, sizeof(buf) - 1 - got);
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        buf[got] = '\0';
        write_str(out, "echo:");
        write_str(out, buf);
        close(in);
        close(out);
        close(err);

        snprintf(f->last_outcome, sizeof(f->last_outcome), "%s", req->argv[0]);
        resp.pid = 99;
        control_call_reply(call, &resp.base);
        return 0;
}

static int fake_wait(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        const Vsockmux__V1__WaitRequest *req = (const void *)request;
        Vsockmux__V1__WaitResponse resp = VSOCKMUX__V1__WAIT_RESPONSE__INIT;
        Vsockmux__V1__ExitStatus es = VSOCKMUX__V1__EXIT_STATUS__INIT;
        struct fixture *f = userdata;

        if (req->pid == 100) {
                f->bulk_call = call;
                fake_bulk_poll(f);
                return 0;
        }
        assert_int_equal(req->pid, 99);
        if (strncmp(f->last_outcome, "exit", 4) == 0) {
                es.kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_EXITED;
                es.code = atoi(f->last_outcome + 4);
        } else if (strcmp(f->last_outcome, "signal9") == 0) {
                es.kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_SIGNALED;
                es.signal = 9;
        } else {
                es.kind = VSOCKMUX__V1__EXIT_KIND__EXIT_KIND_LOST;
                es.message = (char *)"the guest reaped it while the daemon was away";
        }
        resp.exit = &es;
        control_call_reply(call, &resp.base);
        return 0;
}

/* Called from the test's loop: the reply naming the socket must be sent before anyone connects. */
static void fake_attach_serve(struct fixture *f)
{
        int fd;
        char in[64] = {};

        if (f->attach_listen_fd < 0)
                return;
        fd = accept4(f->attach_listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
                return;
        f->attach_listen_fd = safe_close(f->attach_listen_fd);
        assert_int_equal(fcntl(fd, F_SETFL, 0), 0);
        assert_int_equal(send(fd, "\002attached-out\n", 14, 0), 14);
        assert_int_equal(send(fd, "\003attached-err\n", 14, 0), 14);
        /* The client's bytes arrive as stdin packets, unprefixed. */
        assert_true(recv(fd, in, sizeof(in) - 1, 0) > 0);
        assert_string_equal(in, "typed\n");
        close(fd);
}

static int fake_attach(struct control_call *call, const ProtobufCMessage *request, void *userdata)
{
        struct fixture *f = userdata;
        Vsockmux__V1__AttachResponse resp = VSOCKMUX__V1__ATTACH_RESPONSE__INIT;
        const Vsockmux__V1__AttachRequest *req = (const Vsockmux__V1__AttachRequest *)request;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(f->last_attach_id, sizeof(f->last_attach_id), "%s", req->exec_id);
        f->last_attach_pid = req->pid;

        snprintf(f->attach_path, sizeof(f->attach_path), "%s/attach", f->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->attach_path);
        f->attach_listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(f->attach_listen_fd >= 0);
        assert_int_equal(bind(f->attach_listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->attach_listen_fd, 1), 0);
        resp.socket_path = f->attach_path;
        resp.pid = 99;
        resp.stdin = true;
        control_call_reply(call, &resp.base);
        return 0;
}

#define FAKE(m, req, fn)                                                             \
        {                                                                            \
                CONTROL_SERVICE "/" m, &vsockmux__v1__##req##__descriptor, fn, false \
        }
static const struct control_method fake_methods[] = {
        FAKE("VmList", vm_list_request, fake_vm_list),
        FAKE("VmAdd", vm_add_request, fake_vm_add),
        FAKE("Kill", kill_request, fake_kill),
        FAKE("Ps", ps_request, fake_ps),
        FAKE("Exec", exec_request, fake_exec),
        FAKE("Wait", wait_request, fake_wait),
        FAKE("Attach", attach_request, fake_attach),
        FAKE("Migrate", migrate_request, fake_migrate),
        { CONTROL_SERVICE "/Events", &vsockmux__v1__events_request__descriptor, fake_events, true },
};

/* ---- running the CLI --------------------------------------------------------------------- */

static void drain(int fd, char *buf, size_t *len)
{
        for (;;) {
                ssize_t n = read(fd, buf + *len, OUT_MAX - 1 - *len);
                if (n <= 0)
                        break;
                *len += (size_t)n;
        }
        buf[*len] = '\0';
}

static void run_cli_feed(struct fixture *f, struct run *res, const char *stdin_data, size_t stdin_len,
                         const char *const *args);

static void run_cli(struct fixture *f, struct run *res, const char *stdin_data, ...)
{
        const char *args[32];
        unsigned n = 0;
        va_list ap;

        va_start(ap, stdin_data);
        while ((args[n] = va_arg(ap, const char *)))
                assert_true(++n < ELEMENTSOF(args));
        va_end(ap);
        run_cli_feed(f, res, stdin_data, stdin_data ? strlen(stdin_data) : 0, args);
}

/* Runs `vsockmux --socket PATH args...`, feeding stdin and serving the loop meanwhile. */
static void run_cli_feed(struct fixture *f, struct run *res, const char *stdin_data, size_t stdin_len,
                         const char *const *args)
{
        const char *argv[32] = { cli_path, "--socket", f->path };
        int in, out[2], err[2];
        uint64_t start = relay_now_ns(f->relay);
        unsigned n = 3;
        pid_t pid;

        for (unsigned i = 0; args[i]; i++) {
                argv[n++] = args[i];
                assert_true(n < ELEMENTSOF(argv));
        }
        argv[n] = NULL;

        free(res->out);
        free(res->err);
        memset(res, 0, sizeof(*res));
        res->out = malloc(OUT_MAX);
        res->err = malloc(OUT_MAX);
        assert_non_null(res->out);
        assert_non_null(res->err);
        /* stdin is a file, all there at once, so the CLI can read it faster than it can send. */
        in = memfd_create("cli-stdin", MFD_CLOEXEC);
        assert_true(in >= 0);
        if (stdin_len)
                assert_int_equal(write(in, stdin_data, stdin_len), (ssize_t)stdin_len);
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
        assert_int_equal(pipe2(err, O_CLOEXEC | O_NONBLOCK), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(in, STDIN_FILENO);
                dup2(out[1], STDOUT_FILENO);
                dup2(err[1], STDERR_FILENO);
                execv(cli_path, (char **)argv);
                _exit(127);
        }
        close(in);
        close(out[1]);
        close(err[1]);
        for (;;) {
                pid_t w = waitpid(pid, &res->status, WNOHANG);

                drain(out[0], res->out, &res->out_len);
                drain(err[0], res->err, &res->err_len);
                if (w == pid)
                        break;
                assert_int_equal(w, 0);
                assert_int_equal(relay_run_once(f->relay, 10 * 1000000), 0);
                fake_attach_serve(f);
                fake_bulk_poll(f);
                if (f->signal_when_hung && f->hung_seen) {
                        kill(pid, f->signal_when_hung);
                        f->signal_when_hung = 0;
                }
                assert_true(relay_now_ns(f->relay) - start < WAIT_LIMIT_NS);
        }
        fcntl(out[0], F_SETFL, 0);
        fcntl(err[0], F_SETFL, 0);
        drain(out[0], res->out, &res->out_len);
        drain(err[0], res->err, &res->err_len);
        close(out[0]);
        close(err[0]);
        assert_true(WIFEXITED(res->status));
}

static void run_done(struct run *res)
{
        free(res->out);
        free(res->err);
}

static int exit_code(const struct run *res)
{
        return WEXITSTATUS(res->status);
}

static unsigned count_lines(const char *s)
{
        unsigned n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

/* ---- fixtures ------------------------------------------------------------------------- */

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct control_server_config cfg = { .owner_uid = geteuid(), .group = CONTROL_NO_GROUP };

        if (!f)
                return -1;
        f->attach_listen_fd = -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-cli-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/control.sock", f->dir);
        cfg.path = f->path;
        if (relay_new(NULL, &f->relay) < 0 ||
            control_server_new(f->relay, &cfg, fake_methods, ELEMENTSOF(fake_methods), f, &f->server) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        control_server_free(f->server);
        relay_free(f->relay);
        safe_close(f->attach_listen_fd);
        if (f->attach_path[0])
                unlink(f->attach_path);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        return 0;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_vm_ls_prints_an_aligned_table_without_control_characters(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        const char *line2;

        run_cli(f, &res, NULL, "vm", "ls", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_int_equal(count_lines(res.out), 4);
        assert_null(strchr(res.out, '\033'));
        assert_null(strchr(res.out, '\007'));
        line2 = strchr(res.out, '\n') + 1;
        /* Every column starts where its header does. */
        assert_int_equal(strstr(res.out, "TRANSPORT") - res.out, strstr(line2, "hvsock") - line2);
        assert_int_equal(strstr(res.out, "BRIDGE") - res.out, strstr(line2, "connected") - line2);
        assert_non_null(strstr(res.out, "cid 42"));
        assert_non_null(strstr(res.out, "waiting"));
        assert_string_equal(res.err, "");
}

static void test_vm_ls_json_is_one_document(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        struct json_object *doc, *vm;

        run_cli(f, &res, NULL, "vm", "ls", "--json", NULL);
        assert_int_equal(exit_code(&res), 0);
        doc = json_tokener_parse(res.out);
        assert_non_null(doc);
        assert_true(json_object_is_type(doc, json_type_array));
        assert_int_equal(json_object_array_length(doc), 3);
        assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(doc, 2), "name")),
                            "evil\033]0;owned\007\nname");
        vm = json_object_array_get_idx(doc, 0);
        assert_string_equal(json_object_get_string(json_object_object_get(vm, "name")), "alpha");
        assert_string_equal(json_object_get_string(json_object_object_get(vm, "bridge")), "connected");
        assert_int_equal(json_object_get_int(json_object_object_get(vm, "processes")), 12);
        json_object_put(doc);
}

static void test_daemon_error_is_one_line_on_stderr_with_nonzero_exit(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, NULL, "vm", "add", "taken", "--cid", "7", NULL);
        assert_int_equal(exit_code(&res), 1);
        assert_string_equal(res.out, "");
        assert_int_equal(count_lines(res.err), 1);
        assert_non_null(strstr(res.err, "vsockmux: vm add: VM 'taken' already exists"));
        assert_non_null(strstr(res.err, "ALREADY_EXISTS"));

        run_cli(f, &res, NULL, "vm", "add", "fresh", "--cid", "7", NULL);
        assert_int_equal(exit_code(&res), 0);
}

static void test_unreachable_daemon_names_the_socket(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        char missing[160];

        snprintf(missing, sizeof(missing), "%s/nobody-here.sock", f->dir);
        run_cli(f, &res, NULL, "--socket", missing, "stats", NULL);
        assert_int_equal(exit_code(&res), 1);
        assert_int_equal(count_lines(res.err), 1);
        assert_non_null(strstr(res.err, missing));
}

static void test_kill_not_found_succeeds_with_a_note(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, NULL, "kill", "vm1", "404", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_non_null(strstr(res.err, "not running"));
        assert_non_null(strstr(res.err, "already exited"));

        run_cli(f, &res, NULL, "kill", "vm1", "5", "--signal", "SIGKILL", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_string_equal(res.err, "");
}

static void test_ps_reports_lost_exit_and_counters(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        struct json_object *doc, *p;

        run_cli(f, &res, NULL, "ps", "vm1", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_non_null(strstr(res.out, "exit status lost"));
        assert_non_null(strstr(res.out, "0/1234/0"));
        assert_non_null(strstr(res.out, "sleep 100"));
        assert_non_null(strstr(res.out, "EXEC ID"));
        assert_non_null(strstr(res.out, "job-17"));

        run_cli(f, &res, NULL, "ps", "vm1", "--json", NULL);
        assert_int_equal(exit_code(&res), 0);
        doc = json_tokener_parse(res.out);
        assert_non_null(doc);
        p = json_object_array_get_idx(doc, 0);
        assert_int_equal(json_object_get_int(json_object_object_get(p, "pid")), 17);
        assert_string_equal(json_object_get_string(json_object_object_get(json_object_object_get(p, "exit"), "kind")),
                            "lost");
        assert_int_equal(json_object_get_int(json_object_object_get(json_object_object_get(p, "bytes"), "stdout")),
                         1234);
        json_object_put(doc);
}

static void test_events_stream_prints_one_line_each(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        struct json_object *doc;

        run_cli(f, &res, NULL, "events", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_int_equal(count_lines(res.out), 2);
        assert_non_null(strstr(res.out, "2023-11-14T22:13:20.123Z vm-added"));
        assert_non_null(strstr(res.out, "pid=5 exit=\"killed by SIGKILL\""));

        run_cli(f, &res, NULL, "events", "--json", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_int_equal(count_lines(res.out), 2);
        doc = json_tokener_parse(strchr(res.out, '\n') + 1);
        assert_non_null(doc);
        assert_string_equal(json_object_get_string(json_object_object_get(doc, "kind")), "process-exited");
        json_object_put(doc);
}

static void test_attached_exec_relays_stdio_and_exits_with_the_code(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        char prefix[128];
        struct stat st;

        run_cli(f, &res, "line one\n", "exec", "vm1", "--", "exit7", "arg", NULL);
        assert_int_equal(exit_code(&res), 7);
        assert_string_equal(res.out, "out:hello\necho:line one\n");
        assert_string_equal(res.err, "err:oops\n");
        /* The stdio sockets lived beside the control socket, where the daemon surely sees them,
         * and are gone with their directory. */
        snprintf(prefix, sizeof(prefix), "%s/vsockmux-exec-", f->dir);
        assert_memory_equal(f->last_exec_stdout, prefix, strlen(prefix));
        assert_int_equal(stat(f->last_exec_stdout, &st), -1);
        *strrchr(f->last_exec_stdout, '/') = '\0';
        assert_int_equal(stat(f->last_exec_stdout, &st), -1);
}

static void test_attached_exec_drains_output_while_stdin_is_pending(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        _cleanup_free_ char *input = malloc(BULK_INPUT);
        const char *args[] = { "exec", "vm1", "--", "bulk", NULL };
        char expect[64];

        assert_non_null(input);
        memset(input, 'i', BULK_INPUT);
        run_cli_feed(f, &res, input, BULK_INPUT, args);
        assert_int_equal(exit_code(&res), 0);
        assert_int_equal(res.out_len, BULK_BYTES);
        snprintf(expect, sizeof(expect), "got %u\n", BULK_INPUT);
        assert_string_equal(res.err, expect);
}

static void test_interrupted_exec_cleans_up_and_says_the_process_may_run(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        struct stat st;

        f->signal_when_hung = SIGTERM;
        run_cli(f, &res, NULL, "exec", "vm1", "--", "hang", NULL);
        assert_int_equal(exit_code(&res), 128 + SIGTERM);
        assert_int_equal(count_lines(res.err), 1);
        assert_non_null(strstr(res.err, "interrupted by SIGTERM"));
        *strrchr(f->last_exec_stdout, '/') = '\0';
        assert_int_equal(stat(f->last_exec_stdout, &st), -1);
}

static void test_attached_exec_killed_by_signal_exits_128_plus_n(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, "", "exec", "vm1", "--", "signal9", NULL);
        assert_int_equal(exit_code(&res), 128 + 9);
}

/* 256 & 0xff is 0: a code outside an exit status's 8 bits must still fail, and say what it was. */
static void test_attached_exec_with_unfit_exit_code_never_exits_0(void **state)
{
        struct fixture *f = *state;

        for (int i = 0; i < 2; i++) {
                _cleanup_(run_done) struct run res = {};

                run_cli(f, &res, "", "exec", "vm1", "--", i ? "exit-2" : "exit256", NULL);
                assert_int_equal(exit_code(&res), 255);
                assert_non_null(strstr(res.err, i ? "code -2," : "code 256,"));
        }
}

static void test_attached_exec_with_lost_status_exits_255_and_says_so(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, "", "exec", "vm1", "--", "lost", NULL);
        assert_int_equal(exit_code(&res), 255);
        assert_non_null(strstr(res.err, "exit status lost"));
        /* The relayed stderr came first; the CLI's own line is last and single. */
        assert_non_null(strstr(res.err, "err:oops\n"));
}

static void test_exec_that_cannot_start_exits_125(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, "", "exec", "nope", "--", "fail", NULL);
        assert_int_equal(exit_code(&res), 125);
        assert_int_equal(count_lines(res.err), 1);
        assert_non_null(strstr(res.err, "VM 'nope' not found"));
}

static void test_detached_exec_prints_the_pid_and_passes_absolute_paths(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};
        char cwd[256], expect[300];

        run_cli(f, &res, NULL, "exec", "vm1", "--detach", "--stdout", "out.log", "--", "sleep", "1", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_string_equal(res.out, "4321\n");
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        snprintf(expect, sizeof(expect), "%s/out.log", cwd);
        assert_string_equal(f->last_exec_stdout, expect);
}

static void test_attach_splits_stdout_and_stderr_packets(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, "typed\n", "attach", "vm1", "99", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_string_equal(res.out, "attached-out\n");
        assert_string_equal(res.err, "attached-err\n");
        assert_int_equal(f->last_attach_pid, 99);
        assert_string_equal(f->last_attach_id, "");
}

static void test_attach_by_exec_id_names_the_id(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, "typed\n", "attach", "vm1", "job-1", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_string_equal(res.out, "attached-out\n");
        assert_string_equal(f->last_attach_id, "job-1");
        assert_int_equal(f->last_attach_pid, 0);
}

static void test_usage_errors_exit_2_with_one_line(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, NULL, "vm", "add", "x", "--hvsock", "/a", "--cid", "9", NULL);
        assert_int_equal(exit_code(&res), 2);
        assert_int_equal(count_lines(res.err), 1);
        /* A word is an exec id; a number with trailing garbage is a bad pid. */
        run_cli(f, &res, NULL, "kill", "vm1", "12x", NULL);
        assert_int_equal(exit_code(&res), 2);
        assert_int_equal(count_lines(res.err), 1);
        run_cli(f, &res, NULL, "frobnicate", NULL);
        assert_int_equal(exit_code(&res), 2);
        assert_int_equal(count_lines(res.err), 1);
}

/* The daemon refusing a request the command line asked for is its error alone, as for any other
 * refusal (exit 1): no pointer to --help, which would say the command line was wrong. A command
 * line the CLI cannot parse still gets it (exit 2). */
static void test_a_daemon_refusal_is_no_usage_error(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        run_cli(f, &res, NULL, "migrate", "vm1", "--to", "qemu:///system", "--dest-socket", "/run/b.sock", "--io",
                "404:stdout=/dev/null", NULL);
        assert_int_equal(exit_code(&res), 1);
        assert_int_equal(count_lines(res.err), 1);
        assert_non_null(strstr(res.err, "vsockmux: migrate: --io names pid 404, which VM vm1 does not hold"));
        assert_non_null(strstr(res.err, "INVALID_ARGUMENT"));
        assert_null(strstr(res.err, "--help"));

        run_cli(f, &res, NULL, "migrate", "vm1", "--to", "qemu:///system", "--dest-socket", "/run/b.sock", "--io",
                "404", NULL);
        assert_int_equal(exit_code(&res), 2);
        assert_int_equal(count_lines(res.err), 1);
        assert_non_null(strstr(res.err, "(see vsockmux --help)"));
        run_cli(f, &res, NULL, "migrate", "vm1", "--to", "qemu:///system", "--dest-socket", "/run/b.sock",
                "--transport", "ftp", NULL);
        assert_int_equal(exit_code(&res), 2);
        assert_non_null(strstr(res.err, "(see vsockmux --help)"));
}

/* Every command `vsockmux --help` lists answers its own --help on stdout with exit 0, before it
 * connects (the socket here does not exist, so any call would fail with exit 1). */
static void test_every_command_answers_help_without_calling_the_daemon(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run list = {};
        char missing[160];
        unsigned n_commands = 0;

        snprintf(missing, sizeof(missing), "%s/no-daemon.sock", f->dir);
        run_cli(f, &list, NULL, "--help", NULL);
        assert_int_equal(exit_code(&list), 0);

        for (char *save = NULL, *line = strtok_r(list.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                _cleanup_(run_done) struct run res = {};
                const char *words[3] = {};
                char prefix[96], *w, *wsave = NULL;
                unsigned n = 0;

                if (strncmp(line, "  vsockmux ", 11) != 0)
                        continue;
                /* The command is the leading lower-case words: "vm add", "exec", "close-stdin". */
                for (w = strtok_r(line + 11, " ", &wsave);
                     w && n < 2 && strspn(w, "abcdefghijklmnopqrstuvwxyz-") == strlen(w);
                     w = strtok_r(NULL, " ", &wsave))
                        words[n++] = w;
                assert_true(n >= 1);
                if (n == 1)
                        run_cli(f, &res, NULL, "--socket", missing, words[0], "--help", NULL);
                else
                        run_cli(f, &res, NULL, "--socket", missing, words[0], words[1], "--help", NULL);
                snprintf(prefix, sizeof(prefix), "Usage: vsockmux %s%s%s ", words[0], n > 1 ? " " : "",
                         n > 1 ? words[1] : "");
                if (exit_code(&res) != 0 || strncmp(res.out, prefix, strlen(prefix)) != 0)
                        fail_msg("'%s%s%s --help' exited %d with stdout '%s' stderr '%s'", words[0], n > 1 ? " " : "",
                                 n > 1 ? words[1] : "", exit_code(&res), res.out, res.err);
                assert_int_equal(res.err_len, 0);
                /* A summary follows the usage. */
                assert_non_null(strstr(res.out, "\n\n"));
                n_commands++;
        }
        /* vm add/rm/ls, container create/shutdown, exec ... migrate: none may drop out of the list. */
        assert_true(n_commands >= 16);
}

static void test_help_is_an_option_only_where_getopt_sees_one(void **state)
{
        struct fixture *f = *state;
        _cleanup_(run_done) struct run res = {};

        /* -h too, and a group alone lists its commands. */
        run_cli(f, &res, NULL, "wait", "-h", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_non_null(strstr(res.out, "Usage: vsockmux wait NAME PID"));
        run_cli(f, &res, NULL, "vm", "--help", NULL);
        assert_int_equal(exit_code(&res), 0);
        assert_non_null(strstr(res.out, "vsockmux vm add"));
        assert_non_null(strstr(res.out, "vsockmux vm ls"));
        assert_null(strstr(res.out, "container create"));
        /* An option's value that reads "--help" stays the value. */
        run_cli(f, &res, NULL, "kill", "vm1", "5", "--signal", "--help", NULL);
        assert_int_equal(exit_code(&res), 2);
        assert_non_null(strstr(res.err, "unknown signal '--help'"));
        assert_int_equal(res.out_len, 0);
}

int main(int argc, char **argv)
{
        test_skip_without_io_uring();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_vm_ls_prints_an_aligned_table_without_control_characters, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_vm_ls_json_is_one_document, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_error_is_one_line_on_stderr_with_nonzero_exit, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_unreachable_daemon_names_the_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kill_not_found_succeeds_with_a_note, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ps_reports_lost_exit_and_counters, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events_stream_prints_one_line_each, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attached_exec_relays_stdio_and_exits_with_the_code, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_attached_exec_drains_output_while_stdin_is_pending, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_attached_exec_killed_by_signal_exits_128_plus_n, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attached_exec_with_unfit_exit_code_never_exits_0, setup, teardown),
                cmocka_unit_test_setup_teardown(test_interrupted_exec_cleans_up_and_says_the_process_may_run, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_attached_exec_with_lost_status_exits_255_and_says_so, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_exec_that_cannot_start_exits_125, setup, teardown),
                cmocka_unit_test_setup_teardown(test_detached_exec_prints_the_pid_and_passes_absolute_paths, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_attach_splits_stdout_and_stderr_packets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attach_by_exec_id_names_the_id, setup, teardown),
                cmocka_unit_test_setup_teardown(test_usage_errors_exit_2_with_one_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_daemon_refusal_is_no_usage_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_command_answers_help_without_calling_the_daemon, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_help_is_an_option_only_where_getopt_sees_one, setup, teardown),
        };

        if (argc < 2) {
                fprintf(stderr, "usage: %s PATH-TO-vsockmux\n", argv[0]);
                return 1;
        }
        cli_path = argv[1];
        return cmocka_run_group_tests(tests, NULL, NULL);
}
