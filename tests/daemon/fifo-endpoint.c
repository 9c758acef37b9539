/* tests/daemon/fifo-endpoint.c: fifo endpoints for the daemon tests' splice variants (fifo-endpoint.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "relay/relay.h"
#include "tests/daemon/fifo-endpoint.h"

struct copier {
        struct copier *next;
        char fifo[256];
        int fifo_fd, file_fd, stop_fd;
        pthread_mutex_t lock; /* held across each read and its write: settle sees no byte in between */
        pthread_t thread;
};

struct test_endpoints {
        bool fifo;
        struct copier *copiers;
};

struct test_endpoints *test_endpoints_new(void)
{
        struct test_endpoints *e = calloc(1, sizeof(*e));
        const char *v = getenv("VSOCKMUX_TEST_FIFO_ENDPOINTS");

        assert_non_null(e);
        e->fifo = v && strcmp(v, "1") == 0;
        return e;
}

bool test_endpoints_fifo(const struct test_endpoints *e)
{
        return e->fifo;
}

static void write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);

                assert_true(w > 0);
                p += w;
                n -= (size_t)w;
        }
}

/* Until stopped, or until the daemon closed its end (a fifo's EOF once a writer came and went). */
static void *copier_run(void *arg)
{
        struct copier *c = arg;
        char buf[65536];

        for (;;) {
                struct pollfd pfd[2] = { { c->fifo_fd, POLLIN, 0 }, { c->stop_fd, POLLIN, 0 } };
                ssize_t n;

                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pfd[1].revents)
                        break;
                pthread_mutex_lock(&c->lock);
                n = read(c->fifo_fd, buf, sizeof(buf));
                if (n > 0)
                        write_all(c->file_fd, buf, (size_t)n);
                pthread_mutex_unlock(&c->lock);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        break;
        }
        return NULL;
}

const char *test_endpoint(struct test_endpoints *e, const char *file)
{
        struct copier *c;

        if (!file || !e->fifo)
                return file;
        /* A test may name a file twice (a second process after a restore): one fifo, one copier. */
        for (c = e->copiers; c; c = c->next)
                if (strncmp(c->fifo, file, strlen(file)) == 0 && strcmp(c->fifo + strlen(file), ".fifo") == 0)
                        return c->fifo;
        c = calloc(1, sizeof(*c));
        assert_non_null(c);
        assert_true(snprintf(c->fifo, sizeof(c->fifo), "%s.fifo", file) < (int)sizeof(c->fifo));
        assert_int_equal(mkfifo(c->fifo, 0600), 0);
        /* Opened before the daemon's non-blocking open for writing, which needs a reader. */
        c->fifo_fd = open(c->fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(c->fifo_fd >= 0);
        c->file_fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(c->file_fd >= 0);
        c->stop_fd = eventfd(0, EFD_CLOEXEC);
        assert_true(c->stop_fd >= 0);
        pthread_mutex_init(&c->lock, NULL);
        assert_int_equal(pthread_create(&c->thread, NULL, copier_run, c), 0);
        c->next = e->copiers;
        e->copiers = c;
        return c->fifo;
}

void test_endpoints_settle(struct test_endpoints *e)
{
        for (struct copier *c = e->copiers; c; c = c->next)
                for (;;) {
                        int queued = 0;

                        pthread_mutex_lock(&c->lock);
                        assert_int_equal(ioctl(c->fifo_fd, FIONREAD, &queued), 0);
                        pthread_mutex_unlock(&c->lock);
                        if (queued == 0)
                                break;
                        sched_yield();
                }
}

void test_endpoints_assert_spliced(const struct test_endpoints *e, struct relay *r)
{
        struct relay_stats st;

        if (!e->fifo)
                return;
        relay_get_stats(r, &st);
        if (st.bytes_spliced == 0)
                fail_msg("the fifo variant moved no byte by splice(2) (%llu relayed)",
                         (unsigned long long)st.bytes_relayed);
}

struct test_endpoints *test_endpoints_free(struct test_endpoints *e)
{
        if (!e)
                return NULL;
        while (e->copiers) {
                struct copier *c = e->copiers;
                uint64_t one = 1;

                e->copiers = c->next;
                assert_int_equal(write(c->stop_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
                pthread_join(c->thread, NULL);
                pthread_mutex_destroy(&c->lock);
                close(c->stop_fd);
                close(c->file_fd);
                close(c->fifo_fd);
                unlink(c->fifo);
                free(c);
        }
        free(e);
        return NULL;
}
