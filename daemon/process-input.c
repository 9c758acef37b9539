/* daemon/process-input.c: a process's stdin fed by its attach clients (exec -i): a pipe whose read end is the stdin stream's endpoint and whose write end the attach state holds. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/process-private.h"

/* What ps and a saved state show as the endpoint of such a stdin. */
#define VMM_STDIN_FROM_ATTACH "(attach clients)"

int process_stdin_from_attach(struct vmm_process *p, bool stdin_once, struct vmm_error *err)
{
        struct vmm_stream *s = &p->streams[VMM_STDIN];
        int fds[2], r;

        if (!p->attach)
                return vmm_error_set(err, -ENOMEM, "no attach socket for this exec, so no stdin for -i");
        /* The read end stays blocking: the relay's reads wait for data there (see endpoint.c). */
        if (pipe2(fds, O_CLOEXEC) < 0) {
                r = -errno;
                return vmm_error_set(err, r, "cannot make a stdin pipe for attach clients: %s", strerror(-r));
        }
        s->endpoint = strdup(VMM_STDIN_FROM_ATTACH);
        r = s->endpoint ? attach_set_input(p->attach, fds[1], stdin_once) : -ENOMEM;
        if (r < 0) {
                safe_close(fds[0]);
                safe_close(fds[1]);
                return vmm_error_set(err, r, "cannot feed stdin from attach clients: %s", strerror(-r));
        }
        s->endpoint_fd = fds[0];
        return 0;
}
