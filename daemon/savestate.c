/* daemon/savestate.c: the saved-state blob: framing, CRC-32C, schema version, sanity checks and the atomic file write. */
#include "daemon/savestate.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ports/ports.h"

static const uint8_t savestate_magic[8] = { 'v', 's', 'o', 'c', 'k', 'm', 'u', 'x' };

uint32_t savestate_crc32c(const uint8_t *buf, size_t len)
{
        /* Bitwise CRC-32C: the blob is read once per restore, so a table buys nothing. */
        uint32_t crc = 0xFFFFFFFFu;

        for (size_t i = 0; i < len; i++) {
                crc ^= buf[i];
                for (int k = 0; k < 8; k++)
                        crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
        }
        return ~crc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static _printf_(3, 4) int savestate_fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EBADMSG;
}

static bool str_ok(const char *s, size_t max)
{
        return s && strnlen(s, max + 1) <= max;
}

static int savestate_check_stream(const Vsockmux__State__Stream *st, uint32_t floor, char *err, size_t errlen)
{
        if (st->kind <= VSOCKMUX__STATE__STREAM_KIND__STREAM_KIND_UNSPECIFIED ||
            st->kind > VSOCKMUX__STATE__STREAM_KIND__STREAM_KIND_STDERR)
                return savestate_fail(err, errlen, "stream with unknown kind %d", (int)st->kind);
        if (st->port < PORTS_FIRST || st->port >= floor)
                return savestate_fail(err, errlen, "stream port 0x%08x outside [0x%08x, floor 0x%08x)", st->port,
                                      PORTS_FIRST, floor);
        /* Nothing is delivered that was not received first. */
        if (st->tx_endpoint > st->rx_guest || st->tx_guest > st->rx_endpoint)
                return savestate_fail(err, errlen, "stream on port 0x%08x delivered more than it received", st->port);
        if (!str_ok(st->endpoint, 4096))
                return savestate_fail(err, errlen, "stream endpoint description too long");
        return 0;
}

static int savestate_check_process(const Vsockmux__State__Process *p, const Vsockmux__State__Vm *vm, char *err,
                                   size_t errlen)
{
        size_t argv_bytes = 0;

        if (p->pid == 0)
                return savestate_fail(err, errlen, "process with pid 0");
        if (!str_ok(p->exec_id, SAVESTATE_MAX_ID) || !str_ok(p->container_id, SAVESTATE_MAX_ID))
                return savestate_fail(err, errlen, "process %u: id too long", p->pid);
        for (size_t i = 0; i < p->n_argv; i++) {
                if (!p->argv[i])
                        return savestate_fail(err, errlen, "process %u: missing argv entry", p->pid);
                argv_bytes += strlen(p->argv[i]) + 1;
                if (argv_bytes > SAVESTATE_MAX_ARGV_BYTES + 1)
                        return savestate_fail(err, errlen, "process %u: argv over %u bytes", p->pid,
                                              SAVESTATE_MAX_ARGV_BYTES);
        }
        if (p->state <= VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_UNSPECIFIED ||
            p->state > VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_SIGNALED)
                return savestate_fail(err, errlen, "process %u: unknown state %d", p->pid, (int)p->state);
        if (!str_ok(p->log_path, 4096) || (p->log_path[0] && p->log_path[0] != '/'))
                return savestate_fail(err, errlen, "process %u: log path not absolute or too long", p->pid);
        if (p->console_height > UINT16_MAX || p->console_width > UINT16_MAX)
                return savestate_fail(err, errlen, "process %u: console over 65535 x 65535", p->pid);
        if (p->exit_signal < 0 || p->exit_signal > 64 || !str_ok(p->exit_message, SAVESTATE_MAX_ID))
                return savestate_fail(err, errlen, "process %u: bad exit signal or message", p->pid);
        if (p->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING && p->wait_call_id == 0)
                return savestate_fail(err, errlen, "process %u: running without an outstanding wait", p->pid);
        /* Restored ids must stay below every id the destination will hand out. */
        if (p->wait_call_id >= vm->bridge_next_id && p->wait_call_id != 0)
                return savestate_fail(err, errlen, "process %u: wait id %llu not below next id %llu", p->pid,
                                      (unsigned long long)p->wait_call_id, (unsigned long long)vm->bridge_next_id);
        if (p->n_streams > 3)
                return savestate_fail(err, errlen, "process %u: %zu streams", p->pid, p->n_streams);
        for (size_t i = 0; i < p->n_streams; i++) {
                int r;

                if (!p->streams[i])
                        return savestate_fail(err, errlen, "process %u: missing stream", p->pid);
                r = savestate_check_stream(p->streams[i], vm->port_floor, err, errlen);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (p->streams[j]->kind == p->streams[i]->kind)
                                return savestate_fail(err, errlen, "process %u: stream kind twice", p->pid);
        }
        return 0;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return x < y ? -1 : x > y;
}

/* A port may appear once across the whole VM, or two processes would fight over one listener. */
static int savestate_check_ports_unique(const Vsockmux__State__Vm *vm, char *err, size_t errlen)
{
        _cleanup_free_ uint32_t *ports = NULL;
        size_t n = 0;

        ports = malloc((vm->n_processes * 3 + 1) * sizeof(*ports));
        if (!ports)
                return -ENOMEM;
        for (size_t i = 0; i < vm->n_processes; i++)
                for (size_t j = 0; j < vm->processes[i]->n_streams; j++)
                        ports[n++] = vm->processes[i]->streams[j]->port;
        qsort(ports, n, sizeof(*ports), cmp_u32);
        for (size_t i = 1; i < n; i++)
                if (ports[i] == ports[i - 1])
                        return savestate_fail(err, errlen, "port 0x%08x used by two streams", ports[i]);
        return 0;
}

static int savestate_check(const savestate_msg *s, char *err, size_t errlen)
{
        const Vsockmux__State__Vm *vm = s->vm;
        const Vsockmux__State__Transport *t;
        int r;

        if (!vm)
                return savestate_fail(err, errlen, "no VM in saved state");
        if (!str_ok(vm->name, SAVESTATE_MAX_NAME) || vm->name[0] == '\0')
                return savestate_fail(err, errlen, "VM name empty or over %u bytes", SAVESTATE_MAX_NAME);
        t = vm->transport;
        if (!t)
                return savestate_fail(err, errlen, "VM %s: no transport", vm->name);
        if (t->kind == VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK) {
                if (!str_ok(t->uds_path, SAVESTATE_MAX_PATH) || t->uds_path[0] != '/')
                        return savestate_fail(err, errlen, "VM %s: hvsock path not absolute or too long", vm->name);
        } else if (t->kind == VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_VSOCK) {
                if (t->cid < 3 || t->cid == UINT32_MAX)
                        return savestate_fail(err, errlen, "VM %s: CID %u is not a guest CID", vm->name, t->cid);
        } else
                return savestate_fail(err, errlen, "VM %s: unknown transport kind %d", vm->name, (int)t->kind);
        if (vm->port_floor < PORTS_FIRST)
                return savestate_fail(err, errlen, "VM %s: port floor 0x%08x below 0x%08x", vm->name, vm->port_floor,
                                      PORTS_FIRST);
        if (vm->n_processes > SAVESTATE_MAX_PROCESSES || vm->n_containers > SAVESTATE_MAX_CONTAINERS)
                return savestate_fail(err, errlen, "VM %s: too many processes or containers", vm->name);
        if (!str_ok(vm->runtime_os_type, 32))
                return savestate_fail(err, errlen, "VM %s: runtime os type too long", vm->name);
        for (size_t i = 0; i < vm->n_containers; i++)
                if (!str_ok(vm->containers[i], SAVESTATE_MAX_ID) || vm->containers[i][0] == '\0')
                        return savestate_fail(err, errlen, "VM %s: bad container id", vm->name);
        for (size_t i = 0; i < vm->n_processes; i++) {
                if (!vm->processes[i])
                        return savestate_fail(err, errlen, "VM %s: missing process", vm->name);
                r = savestate_check_process(vm->processes[i], vm, err, errlen);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (vm->processes[j]->pid == vm->processes[i]->pid)
                                return savestate_fail(err, errlen, "VM %s: pid %u twice", vm->name,
                                                      vm->processes[i]->pid);
        }
        return savestate_check_ports_unique(vm, err, errlen);
}

int savestate_encode(const savestate_msg *s, uint8_t **ret_buf, size_t *ret_len)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t plen;
        int r;

        if (s->schema_version != SAVESTATE_SCHEMA_VERSION)
                return -EINVAL;
        r = savestate_check(s, NULL, 0);
        if (r < 0)
                return r == -EBADMSG ? -EINVAL : r;
        plen = vsockmux__state__saved_state__get_packed_size(s);
        if (plen > SAVESTATE_MAX_BLOB - SAVESTATE_HEADER_SIZE)
                return -EFBIG;
        buf = malloc(SAVESTATE_HEADER_SIZE + plen);
        if (!buf)
                return -ENOMEM;
        vsockmux__state__saved_state__pack(s, buf + SAVESTATE_HEADER_SIZE);
        memcpy(buf, savestate_magic, sizeof(savestate_magic));
        put_le32(buf + 8, SAVESTATE_SCHEMA_VERSION);
        put_le32(buf + 12, (uint32_t)plen);
        put_le32(buf + 16, savestate_crc32c(buf + SAVESTATE_HEADER_SIZE, plen));
        put_le32(buf + 20, 0);
        *ret_len = SAVESTATE_HEADER_SIZE + plen;
        *ret_buf = TAKE_PTR(buf);
        return 0;
}

int savestate_decode(const uint8_t *buf, size_t len, savestate_msg **ret, char *err, size_t errlen)
{
        _cleanup_(savestate_msg_freep) savestate_msg *s = NULL;
        uint32_t version, plen;
        int r;

        if (len < SAVESTATE_HEADER_SIZE)
                return savestate_fail(err, errlen, "saved state truncated: %zu bytes, header needs %u", len,
                                      SAVESTATE_HEADER_SIZE);
        if (memcmp(buf, savestate_magic, sizeof(savestate_magic)) != 0)
                return savestate_fail(err, errlen, "not a vsockmux saved state (bad magic)");
        version = get_le32(buf + 8);
        if (version != SAVESTATE_SCHEMA_VERSION) {
                if (err && errlen)
                        snprintf(err, errlen, "saved state schema version %u unknown (this build reads %u)", version,
                                 SAVESTATE_SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        plen = get_le32(buf + 12);
        if (plen > SAVESTATE_MAX_BLOB - SAVESTATE_HEADER_SIZE || plen != len - SAVESTATE_HEADER_SIZE)
                return savestate_fail(err, errlen, "saved state length %u does not match %zu bytes read", plen,
                                      len - SAVESTATE_HEADER_SIZE);
        if (get_le32(buf + 16) != savestate_crc32c(buf + SAVESTATE_HEADER_SIZE, plen))
                return savestate_fail(err, errlen, "saved state checksum mismatch: corrupted");
        s = vsockmux__state__saved_state__unpack(NULL, plen, buf + SAVESTATE_HEADER_SIZE);
        if (!s)
                return savestate_fail(err, errlen, "saved state payload does not decode");
        if (s->schema_version != version)
                return savestate_fail(err, errlen, "saved state header says version %u, payload %u", version,
                                      s->schema_version);
        r = savestate_check(s, err, errlen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

savestate_msg *savestate_msg_free(savestate_msg *s)
{
        if (s)
                vsockmux__state__saved_state__free_unpacked(s, NULL);
        return NULL;
}

int savestate_write_file(const char *path, const uint8_t *buf, size_t len)
{
        _cleanup_free_ char *tmp = NULL, *dircopy = NULL;
        _cleanup_close_ int fd = -1, dfd = -1;
        size_t off = 0;

        if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return negative_errno();
        while (off < len) {
                ssize_t n = write(fd, buf + off, len - off);

                if (n < 0) {
                        int r = negative_errno();

                        if (r == -EINTR)
                                continue;
                        unlink(tmp);
                        return r;
                }
                off += (size_t)n;
        }
        if (fsync(fd) < 0 || rename(tmp, path) < 0) {
                int r = negative_errno();

                unlink(tmp);
                return r;
        }
        dircopy = strdup(path);
        if (!dircopy)
                return -ENOMEM;
        dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
                (void)fsync(dfd);
        return 0;
}

int savestate_read_file(const char *path, uint8_t **ret_buf, size_t *ret_len)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t off = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if (st.st_size > (off_t)SAVESTATE_MAX_BLOB)
                return -EFBIG;
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        if (!buf)
                return -ENOMEM;
        while (off < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                off += (size_t)n;
        }
        *ret_len = off;
        *ret_buf = TAKE_PTR(buf);
        return 0;
}
