/* bench/spec.c: parse the stream list and the two socket helpers every variant needs. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "bench/spec.h"

static int parse_line(const char *line, struct bench_stream_spec *ret)
{
        char dir[16], kind[16], g[BENCH_PATH_MAX + 1], e[BENCH_PATH_MAX + 1];
        unsigned long port;

        /* %108s: the field widths follow BENCH_PATH_MAX so an overlong path is caught below. */
        if (sscanf(line, "%15s %lu %108s %15s %108s", dir, &port, g, kind, e) != 5)
                return -EINVAL;
        if (strlen(g) >= BENCH_PATH_MAX || strlen(e) >= BENCH_PATH_MAX)
                return -ENAMETOOLONG;
        if (port > UINT32_MAX)
                return -ERANGE;
        if (strcmp(dir, "from_guest") == 0)
                ret->dir = BENCH_DIR_FROM_GUEST;
        else if (strcmp(dir, "to_guest") == 0)
                ret->dir = BENCH_DIR_TO_GUEST;
        else
                return -EINVAL;
        if (strcmp(kind, "unix") == 0)
                ret->kind = BENCH_ENDPOINT_UNIX;
        else if (strcmp(kind, "fifo") == 0)
                ret->kind = BENCH_ENDPOINT_FIFO;
        else
                return -EINVAL;
        if (ret->kind == BENCH_ENDPOINT_FIFO && ret->dir != BENCH_DIR_FROM_GUEST)
                return -EOPNOTSUPP;
        ret->port = (uint32_t)port;
        strcpy(ret->guest_path, g);
        strcpy(ret->endpoint_path, e);
        return 0;
}

int bench_spec_load(const char *path, struct bench_spec **ret)
{
        _cleanup_free_ struct bench_spec *spec = NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, alloc = 64;
        FILE *f;
        int r = 0;

        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        spec = calloc(1, sizeof(*spec) + alloc * sizeof(spec->s[0]));
        if (!spec) {
                fclose(f);
                return -ENOMEM;
        }
        while (getline(&line, &cap, f) > 0) {
                if (line[0] == '#' || line[0] == '\n')
                        continue;
                if (spec->n == BENCH_SPEC_STREAMS_MAX) {
                        r = -E2BIG;
                        break;
                }
                if (spec->n == alloc) {
                        struct bench_spec *n;

                        alloc *= 2;
                        n = realloc(spec, sizeof(*spec) + alloc * sizeof(spec->s[0]));
                        if (!n) {
                                r = -ENOMEM;
                                break;
                        }
                        spec = n;
                }
                r = parse_line(line, &spec->s[spec->n]);
                if (r < 0)
                        break;
                spec->n++;
        }
        fclose(f);
        if (r < 0)
                return r;
        if (spec->n == 0)
                return -ENODATA;

        /* The hybrid-vsock base path: every guest path must be "<base>_<port>". */
        for (unsigned i = 0; i < spec->n; i++) {
                const struct bench_stream_spec *s = &spec->s[i];
                char suffix[16];
                size_t gl = strlen(s->guest_path), sl;

                sl = (size_t)snprintf(suffix, sizeof(suffix), "_%u", s->port);
                if (gl <= sl || strcmp(s->guest_path + gl - sl, suffix) != 0)
                        return -EINVAL;
                if (i == 0)
                        memcpy(spec->vm_uds, s->guest_path, gl - sl);
                else if (strncmp(spec->vm_uds, s->guest_path, gl - sl) != 0 || spec->vm_uds[gl - sl] != '\0')
                        return -EINVAL;
        }
        *ret = TAKE_PTR(spec);
        return 0;
}

struct bench_spec *bench_spec_free(struct bench_spec *s)
{
        free(s);
        return NULL;
}

static int fill_addr(const char *path, struct sockaddr_un *sa)
{
        if (strlen(path) >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        strcpy(sa->sun_path, path);
        return 0;
}

int bench_unix_connect(const char *path)
{
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa;
        int r;

        r = fill_addr(path, &sa);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return negative_errno();
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

int bench_unix_listen(const char *path, int backlog)
{
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa;
        int r;

        r = fill_addr(path, &sa);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        (void)unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}
