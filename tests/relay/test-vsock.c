/* tests/relay/test-vsock.c: AF_VSOCK listeners on the real kernel; skips (77) where vsock loopback is missing. */
#include <stdio.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>

#include "tests/relay/relay-test.h"
#include "tests/io-uring-skip.h"

#define VSOCK_TEST_PORT 0x7e57

struct accepted {
        unsigned count;
};

static void on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct accepted *a = userdata;

        a->count++;
        if (fd >= 0)
                close(fd);
}

/* Returns NULL when a local vsock connection can be made here, else why not. */
static const char *vsock_unavailable(void)
{
        static char why[128];
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = VSOCK_TEST_PORT + 1 };
        struct sockaddr_vm to = { .svm_family = AF_VSOCK,
                                  .svm_cid = VMADDR_CID_LOCAL,
                                  .svm_port = VSOCK_TEST_PORT + 1 };
        int l, c;

        l = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l < 0) {
                snprintf(why, sizeof(why), "socket(AF_VSOCK): %m");
                return why;
        }
        if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0) {
                snprintf(why, sizeof(why), "vsock bind/listen: %m");
                close(l);
                return why;
        }
        c = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&to, sizeof(to)) < 0) {
                snprintf(why, sizeof(why), "no vsock loopback (connect to VMADDR_CID_LOCAL: %m)");
                if (c >= 0)
                        close(c);
                close(l);
                return why;
        }
        close(c);
        close(l);
        return NULL;
}

static void test_vsock_connection_from_unexpected_cid_is_refused(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_transport vm_a = { .kind = RELAY_TRANSPORT_VSOCK, .cid = 1000 };
        struct relay_transport vm_b = { .kind = RELAY_TRANSPORT_VSOCK, .cid = 1001 };
        struct relay_listener *la = NULL, *lb = NULL;
        struct accepted a = {}, b = {};
        struct events_seen e;
        struct sockaddr_vm to = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_LOCAL, .svm_port = VSOCK_TEST_PORT };
        char c;
        int fd;

        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        /* two VMs share the port number through one socket */
        assert_int_equal(relay_listen(r, &vm_a, VSOCK_TEST_PORT, RELAY_LISTEN_ONCE, on_accept, &a, &la), 0);
        assert_int_equal(relay_listen(r, &vm_b, VSOCK_TEST_PORT, RELAY_LISTEN_ONCE, on_accept, &b, &lb), 0);
        /* a local peer (CID 1) is neither VM: the relay closes it without an accept callback */
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
        for (int i = 0; i < 50; i++)
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
        assert_true(read(fd, &c, 1) <= 0);
        close(fd);
        assert_int_equal(a.count, 0);
        assert_int_equal(b.count, 0);
        /* ... and tells its owner which port refused which CID */
        assert_int_equal(e.count[RELAY_EVENT_CID_REFUSED], 1);
        assert_int_equal(e.last[RELAY_EVENT_CID_REFUSED].port, VSOCK_TEST_PORT);
        assert_int_equal(e.last[RELAY_EVENT_CID_REFUSED].cid, VMADDR_CID_LOCAL);
        relay_listener_free(la);
        relay_listener_free(lb);
        run_idle(r, 3);
}

int main(void)
{
        test_skip_without_io_uring();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vsock_connection_from_unexpected_cid_is_refused),
        };
        const char *why = vsock_unavailable();

        if (why) {
                printf("SKIP: %s\n", why);
                return 77;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
