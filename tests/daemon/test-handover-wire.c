/* tests/daemon/test-handover-wire.c: the live-upgrade socket's framing over a real socketpair: payload and fds arrive whole and in order (more fds than one sendmsg carries), and a wrong magic, version, size or stray fd is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/handover-wire.h"

struct sender {
        int sock;
        const uint8_t *payload;
        size_t len;
        const int *fds;
        size_t n_fds;
        int r;
};

static void *send_thread(void *arg)
{
        struct sender *s = arg;

        s->r = handover_send(s->sock, HANDOVER_MAGIC_STATE, s->payload, s->len, s->fds, s->n_fds);
        return NULL;
}

/* 600 fds (3 chunks' worth) and a payload larger than one chunk: each fd arrives as the same
 * open file, in order. The sender runs in a thread: the payload is larger than the socket buffer. */
static void test_payload_and_many_fds_arrive_in_order(void **state)
{
        enum { N = 600 };
        static int fds[N];
        static uint8_t payload[3 * HANDOVER_CHUNK_BYTES + 17];
        struct handover_msg *m = NULL;
        struct sender s;
        pthread_t th;
        int sv[2];

        (void)state;
        for (size_t i = 0; i < sizeof(payload); i++)
                payload[i] = (uint8_t)(i * 7);
        for (int i = 0; i < N; i++) {
                fds[i] = open(i % 2 ? "/dev/null" : "/dev/zero", O_RDONLY | O_CLOEXEC);
                assert_true(fds[i] >= 0);
        }
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        s = (struct sender){ sv[0], payload, sizeof(payload), fds, N, -1 };
        assert_int_equal(pthread_create(&th, NULL, send_thread, &s), 0);
        assert_int_equal(handover_recv(sv[1], HANDOVER_MAGIC_STATE, &m, NULL), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(s.r, 0);
        assert_int_equal(m->hdr.len, sizeof(payload));
        assert_memory_equal(m->payload, payload, sizeof(payload));
        assert_int_equal(m->n_fds, N);
        for (int i = 0; i < N; i++) {
                struct stat a, b;

                assert_int_equal(fstat(fds[i], &a), 0);
                assert_int_equal(fstat(m->fds[i], &b), 0);
                assert_int_equal(a.st_rdev, b.st_rdev);
                assert_int_not_equal(m->fds[i], fds[i]);
                close(fds[i]);
        }
        handover_msg_free(m);
        close(sv[0]);
        close(sv[1]);
}

static void test_more_fd_chunks_than_payload_bytes_is_refused(void **state)
{
        int fds[HANDOVER_FDS_PER_CHUNK + 1];
        int sv[2];

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                fds[i] = 0;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(handover_send(sv[0], HANDOVER_MAGIC_STATE, "x", 1, fds, ELEMENTSOF(fds)), -EINVAL);
        close(sv[0]);
        close(sv[1]);
}

static void send_raw(int sock, const struct handover_header *h)
{
        uint8_t buf[HANDOVER_HEADER_SIZE];

        handover_header_encode(h, buf);
        assert_int_equal(write(sock, buf, sizeof(buf)), (ssize_t)sizeof(buf));
}

static void test_wrong_magic_version_or_size_is_refused(void **state)
{
        struct handover_msg *m = NULL;
        uint32_t version = 0;
        int sv[2];

        (void)state;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        send_raw(sv[0], &(struct handover_header){ HANDOVER_MAGIC_ANSWER, HANDOVER_WIRE_VERSION, 0, 0 });
        assert_int_equal(handover_recv(sv[1], HANDOVER_MAGIC_STATE, &m, NULL), -EBADMSG);
        send_raw(sv[0], &(struct handover_header){ HANDOVER_MAGIC_STATE, HANDOVER_WIRE_VERSION + 1, 0, 0 });
        assert_int_equal(handover_recv(sv[1], HANDOVER_MAGIC_STATE, &m, &version), -EPROTONOSUPPORT);
        assert_int_equal(version, HANDOVER_WIRE_VERSION + 1);
        send_raw(sv[0],
                 &(struct handover_header){ HANDOVER_MAGIC_STATE, HANDOVER_WIRE_VERSION, HANDOVER_MAX_PAYLOAD + 1, 0 });
        assert_int_equal(handover_recv(sv[1], HANDOVER_MAGIC_STATE, &m, NULL), -EBADMSG);
        send_raw(sv[0],
                 &(struct handover_header){ HANDOVER_MAGIC_STATE, HANDOVER_WIRE_VERSION, 0, HANDOVER_MAX_FDS + 1 });
        assert_int_equal(handover_recv(sv[1], HANDOVER_MAGIC_STATE, &m, NULL), -EBADMSG);
        assert_null(m);
        close(sv[0]);
        /* A peer gone mid-message. */
        assert_int_equal(handover_recv(sv[1], HANDOVER_MAGIC_STATE, &m, NULL), -EPIPE);
        close(sv[1]);
}

/* An fd the header did not announce is closed, and the message refused. */
static void test_unannounced_fd_is_closed_and_refused(void **state)
{
        struct handover_msg *m = NULL;
        uint8_t hdr[HANDOVER_HEADER_SIZE];
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u = {};
        struct iovec iov = { .iov_base = "x", .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        int sv[2], fd = open("/dev/null", O_RDONLY | O_CLOEXEC), probe;

        (void)state;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        handover_header_encode(&(struct handover_header){ HANDOVER_MAGIC_STATE, HANDOVER_WIRE_VERSION, 1, 0 }, hdr);
        assert_int_equal(write(sv[0], hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        assert_int_equal(sendmsg(sv[0], &mh, 0), 1);
        close(fd);
        assert_int_equal(handover_recv(sv[1], HANDOVER_MAGIC_STATE, &m, NULL), -EBADMSG);
        /* The received duplicate was closed: the lowest free fd is the one it had. */
        probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_int_equal(probe, fd);
        close(probe);
        close(sv[0]);
        close(sv[1]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_payload_and_many_fds_arrive_in_order),
                cmocka_unit_test(test_more_fd_chunks_than_payload_bytes_is_refused),
                cmocka_unit_test(test_wrong_magic_version_or_size_is_refused),
                cmocka_unit_test(test_unannounced_fd_is_closed_and_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
