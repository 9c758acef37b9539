/* daemon/fence.c: the transport lock (flock) and the generation it carries. */
#include "daemon/fence.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct fence {
        int fd;
        uint64_t generation;
};

int fence_path(const struct relay_transport *via, const char *state_dir, char *buf, size_t len)
{
        int n;

        if (via->kind == RELAY_TRANSPORT_HVSOCK)
                n = snprintf(buf, len, "%s.lock", via->uds_path);
        else
                n = snprintf(buf, len, "%s/cid-%" PRIu32 ".lock", state_dir, via->cid);
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static bool parse_u64(const char **p, const char *end, uint64_t *ret)
{
        uint64_t v = 0;
        const char *s = *p;

        while (s < end && *s == ' ')
                s++;
        if (s == end || *s < '0' || *s > '9')
                return false;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *p = s;
        *ret = v;
        return true;
}

static bool parse_word(const char **p, const char *end, const char *word)
{
        size_t n = strlen(word);

        if ((size_t)(end - *p) < n || memcmp(*p, word, n) != 0)
                return false;
        *p += n;
        return true;
}

int fence_parse(const char *buf, size_t len, uint64_t *ret_gen, pid_t *ret_pid)
{
        const char *p = buf, *end = buf + len;
        uint64_t gen, pid;

        if (len == 0) {
                *ret_gen = 0;
                *ret_pid = 0;
                return 0;
        }
        if (!parse_word(&p, end, "generation ") || !parse_u64(&p, end, &gen) || !parse_word(&p, end, " pid ") ||
            !parse_u64(&p, end, &pid) || !parse_word(&p, end, "\n") || p != end || pid == 0 || pid > INT32_MAX)
                return -EBADMSG;
        *ret_gen = gen;
        *ret_pid = (pid_t)pid;
        return 0;
}

static int fence_read(int fd, uint64_t *ret_gen, pid_t *ret_pid)
{
        char buf[FENCE_FILE_MAX + 1];
        ssize_t n;

        do
                n = pread(fd, buf, sizeof(buf), 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        if ((size_t)n > FENCE_FILE_MAX)
                return -EBADMSG;
        return fence_parse(buf, (size_t)n, ret_gen, ret_pid);
}

int fence_acquire(const char *path, struct fence **ret)
{
        _cleanup_close_ int fd = -1;
        struct fence *f;
        uint64_t gen;
        pid_t pid;
        int r;

        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return negative_errno();
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : negative_errno();
        r = fence_read(fd, &gen, &pid);
        if (r < 0)
                return r;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->fd = TAKE_FD(fd);
        f->generation = gen;
        *ret = f;
        return 0;
}

uint64_t fence_generation(const struct fence *f)
{
        return f->generation;
}

int fence_set_generation(struct fence *f, uint64_t gen)
{
        char buf[FENCE_FILE_MAX];
        /* Fixed width: every record overwrites the last in place with one small write, so no
         * truncate can leave an empty or mixed file behind a crash. The lock lives on this
         * inode, so a temp file and rename would drop it. */
        int n = snprintf(buf, sizeof(buf), "generation %20" PRIu64 " pid %10d\n", gen, (int)getpid());

        if (pwrite(f->fd, buf, (size_t)n, 0) != n || fsync(f->fd) < 0)
                return negative_errno();
        f->generation = gen;
        return 0;
}

struct fence *fence_release(struct fence *f)
{
        if (f) {
                safe_close(f->fd);
                free(f);
        }
        return NULL;
}

int fence_peek(const char *path, uint64_t *ret_gen, pid_t *ret_pid)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);

        if (fd < 0)
                return negative_errno();
        return fence_read(fd, ret_gen, ret_pid);
}
