/* tests/integration/handover-peer.c: plays one side of a live upgrade's handover against a real
 * vsockmuxd, for what a test cannot get from two builds of today's tree:
 *   handover-peer refuse REASON            as the "new binary" (fd 3): reads the handover, answers REASON
 *   handover-peer old VERSION DAEMON ARGS  as an "old daemon": sends a Handover claiming state schema
 *                                          VERSION to DAEMON ARGS --handover-fd 3, prints its answer,
 *                                          exits with DAEMON's exit status
 *   handover-peer stored VERSION           as a stop into systemd's fd store (--fdstore): writes a
 *                                          Handover claiming VERSION into fd 3 and exits, reading
 *                                          no answer */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/handover-wire.h"
#include "state.pb-c.h"

extern char **environ;

static int refuse(const char *reason)
{
        struct handover_msg *m = NULL;
        int r = handover_recv(3, HANDOVER_MAGIC_STATE, &m, NULL);

        if (r < 0) {
                fprintf(stderr, "handover-peer: reading the handover: %s\n", strerror(-r));
                return 1;
        }
        handover_msg_free(m);
        r = handover_send(3, HANDOVER_MAGIC_ANSWER, reason, strlen(reason), NULL, 0);
        return r < 0 ? 1 : 0;
}

/* A Handover with nothing in it but the schema it claims. */
static int send_claim(int fd, unsigned version)
{
        Vsockmux__State__Handover h = VSOCKMUX__STATE__HANDOVER__INIT;
        uint8_t buf[64];
        size_t len;

        h.schema_version = version;
        h.old_pid = (uint32_t)getpid();
        h.control_listener_fd = -1;
        len = vsockmux__state__handover__pack(&h, buf);
        return handover_send(fd, HANDOVER_MAGIC_STATE, buf, len, NULL, 0);
}

static int old(unsigned version, char **daemon_argv, int argc)
{
        char **argv = calloc((size_t)argc + 3, sizeof(char *));
        posix_spawn_file_actions_t fa;
        struct handover_msg *answer = NULL;
        int sv[2], status, r;
        pid_t pid;

        if (!argv || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return 1;
        memcpy(argv, daemon_argv, (size_t)argc * sizeof(char *));
        argv[argc] = "--handover-fd";
        argv[argc + 1] = "3";
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
        r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        free(argv);
        if (r != 0) {
                fprintf(stderr, "handover-peer: %s: %s\n", daemon_argv[0], strerror(r));
                return 1;
        }
        close(sv[1]);
        r = send_claim(sv[0], version);
        if (r >= 0)
                r = handover_recv(sv[0], HANDOVER_MAGIC_ANSWER, &answer, NULL);
        if (r >= 0)
                printf("%.*s\n", (int)answer->hdr.len, (const char *)answer->payload);
        else
                printf("no answer: %s\n", strerror(-r));
        handover_msg_free(answer);
        close(sv[0]); /* a new daemon that was ready serves on, no longer waiting for our "go" */
        if (waitpid(pid, &status, 0) < 0)
                return 1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
        if (argc == 3 && strcmp(argv[1], "refuse") == 0)
                return refuse(argv[2]);
        if (argc >= 4 && strcmp(argv[1], "old") == 0)
                return old((unsigned)strtoul(argv[2], NULL, 10), argv + 3, argc - 3);
        if (argc == 3 && strcmp(argv[1], "stored") == 0)
                return send_claim(3, (unsigned)strtoul(argv[2], NULL, 10)) < 0 ? 1 : 0;
        fprintf(stderr, "usage: handover-peer refuse REASON | old VERSION DAEMON ARGS... | stored VERSION\n");
        return 2;
}
