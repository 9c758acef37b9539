/* tests/relay/guest-spawn.h: starts relay-test-guest children with chosen stdin/stdout and collects their output; owns nothing. */
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/relay/relay-test.h"

extern char **environ;

struct child {
        pid_t pid;
        int out; /* captured stdout, or -1 */
};

static inline const char *guest_helper(void)
{
        static char path[4096];
        const char *root = getenv("VSOCKMUX_BUILD_ROOT");

        assert_non_null(root);
        snprintf(path, sizeof(path), "%s/tests/relay/relay-test-guest", root);
        return path;
}

/* stdin_fd/stdout_fd: -1 keeps /dev/null for stdin and captures stdout through a pipe. */
static inline void spawn_guest(const char *const *args, int stdin_fd, int stdout_fd, struct child *ret)
{
        posix_spawn_file_actions_t fa;
        const char *argv[16];
        int cap[2] = { -1, -1 };
        unsigned n = 0;

        argv[n++] = guest_helper();
        for (; args[n - 1] && n < 15; n++)
                argv[n] = args[n - 1];
        argv[n] = NULL;

        assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
        if (stdin_fd >= 0)
                assert_int_equal(posix_spawn_file_actions_adddup2(&fa, stdin_fd, STDIN_FILENO), 0);
        else
                assert_int_equal(posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0), 0);
        if (stdout_fd < 0) {
                assert_int_equal(pipe2(cap, O_CLOEXEC), 0);
                stdout_fd = cap[1];
        }
        assert_int_equal(posix_spawn_file_actions_adddup2(&fa, stdout_fd, STDOUT_FILENO), 0);
        assert_int_equal(posix_spawn(&ret->pid, argv[0], &fa, NULL, (char **)argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
        if (cap[1] >= 0)
                close(cap[1]);
        ret->out = cap[0];
}

/* Reads the child's output (bounded wait) and reaps it; returns its exit status, or 128+signal. */
static inline int child_finish(struct child *c, char *out, size_t outlen)
{
        size_t got = 0;
        int status;

        if (out && outlen)
                out[0] = 0;
        if (c->out >= 0) {
                for (;;) {
                        struct pollfd p = { .fd = c->out, .events = POLLIN };
                        ssize_t n;
                        int k = poll(&p, 1, (int)(TEST_WAIT_NS / 1000000));
                        assert_true(k > 0); /* a hung child fails the test instead of hanging it */
                        if (out && got + 1 < outlen)
                                n = read(c->out, out + got, outlen - 1 - got);
                        else {
                                char sink[256];
                                n = read(c->out, sink, sizeof(sink));
                        }
                        if (n <= 0)
                                break;
                        got += (size_t)n;
                        if (out)
                                out[got] = 0;
                }
                close(c->out);
                c->out = -1;
        }
        assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* mkdtemp under /tmp; the caller removes it with rm_tmpdir. */
static inline void make_tmpdir(char *buf, size_t len)
{
        snprintf(buf, len, "/tmp/vsockmux-relay-test.XXXXXX");
        assert_non_null(mkdtemp(buf));
}

static inline void rm_tmpdir(const char *dir)
{
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}
