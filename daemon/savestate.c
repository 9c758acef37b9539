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

#include "daemon/log-k8s.h"
#include "ports/ports.h"
#include "util/unaligned.h"

static const uint8_t savestate_magic[8] = { 'v', 's', 'o', 'c', 'k', 'm', 'u', 'x' };

/* CRC-32C (Castagnoli, reflected 0x82F63B78), one table entry per byte value: every record
 * write (daemon/record.c) checksums its VM's whole blob, so the bitwise loop showed in profiles. */
static const uint32_t crc32c_table[256] = {
        0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u, 0xd4ca64ebu,
        0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u,
        0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
        0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu,
        0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u,
        0xaa64d611u, 0x580f5512u, 0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
        0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
        0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u,
        0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
        0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu, 0xed03a29bu, 0x1f682198u,
        0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u, 0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u,
        0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
        0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u,
        0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
        0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
        0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu, 0xdde0eb2au, 0x2f8b6829u,
        0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u,
        0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
        0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu,
        0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u,
        0xa24bb5a6u, 0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
        0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u, 0xfc588982u,
        0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u,
        0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
        0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu,
        0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u,
        0xd3d3e1abu, 0x21b862a8u, 0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
        0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
        0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u,
        0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
        0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu,
        0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu, 0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

static uint32_t crc32c_bytes(uint32_t crc, const uint8_t *buf, size_t len)
{
        for (size_t i = 0; i < len; i++)
                crc = (crc >> 8) ^ crc32c_table[(crc ^ buf[i]) & 0xFFu];
        return crc;
}

#if defined(__x86_64__)
/* SSE 4.2's crc32 instruction is this very CRC, eight bytes a step: a record of 1,000 processes
 * is 84 KB, checksummed at every write, and the table took 6% of the daemon at 1,000 execs/s. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *buf, size_t len)
{
        uint64_t c = crc;

        for (; len >= 8; buf += 8, len -= 8) {
                uint64_t v;

                memcpy(&v, buf, sizeof(v));
                c = __builtin_ia32_crc32di(c, v);
        }
        return crc32c_bytes((uint32_t)c, buf, len);
}
#endif

uint32_t savestate_crc32c(const uint8_t *buf, size_t len)
{
#if defined(__x86_64__)
        if (__builtin_cpu_supports("sse4.2"))
                return ~crc32c_sse42(0xFFFFFFFFu, buf, len);
#endif
        return ~crc32c_bytes(0xFFFFFFFFu, buf, len);
}

int savestate_fail(char *err, size_t errlen, const char *fmt, ...)
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

static int savestate_check_process(const Vsockmux__State__Process *p, const Vsockmux__State__Vm *vm, bool live,
                                   char *err, size_t errlen)
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
        /* The log's cap and file count as an exec may ask them (LOG_K8S_MAX_*), and only with the
         * k8s-file log they rotate; a live upgrade's fd never comes in a save or a record. */
        if (p->log_size_max > LOG_K8S_MAX_SIZE || p->log_max_files > LOG_K8S_MAX_FILES)
                return savestate_fail(err, errlen, "process %u: log cap %llu bytes or %u files over %llu or %u", p->pid,
                                      (unsigned long long)p->log_size_max, p->log_max_files,
                                      (unsigned long long)LOG_K8S_MAX_SIZE, LOG_K8S_MAX_FILES);
        if ((p->log_size_max || p->log_max_files) && !p->log_path[0])
                return savestate_fail(err, errlen, "process %u: a log cap without a k8s-file log", p->pid);
        if (p->log_journald && p->log_path[0])
                return savestate_fail(err, errlen, "process %u: logs both to journald and to a k8s-file log", p->pid);
        if (p->log_fd_set && !live)
                return savestate_fail(err, errlen, "process %u: a live upgrade's log fd in a saved state", p->pid);
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

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A process is named by its exec id (the journal's records, a recovery's endpoints), which the
 * daemon gives every process: no two may share one. A pid the guest reused may name an exited
 * entry beside a newer one, but two that have not exited cannot share it, and an older daemon's
 * process without an exec id is named by its pid alone. Sorted, not pairwise: the record checks
 * every VM it writes, and a VM may hold thousands. */
static int savestate_check_ids_unique(const Vsockmux__State__Vm *vm, char *err, size_t errlen)
{
        _cleanup_free_ uint32_t *pids = NULL;
        _cleanup_free_ const char **ids = NULL;
        size_t n_pids = 0, n_ids = 0;

        pids = malloc((vm->n_processes + 1) * sizeof(*pids));
        ids = malloc((vm->n_processes + 1) * sizeof(*ids));
        if (!pids || !ids)
                return -ENOMEM;
        for (size_t i = 0; i < vm->n_processes; i++) {
                const Vsockmux__State__Process *p = vm->processes[i];

                if (p->exec_id[0])
                        ids[n_ids++] = p->exec_id;
                if (!p->exec_id[0] || p->state == VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING)
                        pids[n_pids++] = p->pid;
        }
        qsort(ids, n_ids, sizeof(*ids), cmp_str);
        for (size_t i = 1; i < n_ids; i++)
                if (strcmp(ids[i], ids[i - 1]) == 0)
                        return savestate_fail(err, errlen, "VM %s: exec id %s twice", vm->name, ids[i]);
        qsort(pids, n_pids, sizeof(*pids), cmp_u32);
        for (size_t i = 1; i < n_pids; i++)
                if (pids[i] == pids[i - 1])
                        return savestate_fail(err, errlen, "VM %s: pid %u twice among running processes", vm->name,
                                              pids[i]);
        return 0;
}

static int savestate_check(const savestate_msg *s, bool live, char *err, size_t errlen)
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
                r = savestate_check_process(vm->processes[i], vm, live, err, errlen);
                if (r < 0)
                        return r;
        }
        r = savestate_check_ids_unique(vm, err, errlen);
        if (r < 0)
                return r;
        return savestate_check_ports_unique(vm, err, errlen);
}

int savestate_check_handed(const savestate_msg *s, char *err, size_t errlen)
{
        return savestate_check(s, true, err, errlen);
}

int savestate_encode(const savestate_msg *s, uint8_t **ret_buf, size_t *ret_len)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t plen;
        int r;

        if (s->schema_version != SAVESTATE_SCHEMA_VERSION)
                return -EINVAL;
        r = savestate_check(s, false, NULL, 0);
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
        unaligned_write_le32(buf + 8, SAVESTATE_SCHEMA_VERSION);
        unaligned_write_le32(buf + 12, (uint32_t)plen);
        unaligned_write_le32(buf + 16, savestate_crc32c(buf + SAVESTATE_HEADER_SIZE, plen));
        unaligned_write_le32(buf + 20, 0);
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
        version = unaligned_read_le32(buf + 8);
        if (version != SAVESTATE_SCHEMA_VERSION) {
                if (err && errlen)
                        snprintf(err, errlen, "saved state schema version %u unknown (this build reads %u)", version,
                                 SAVESTATE_SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        plen = unaligned_read_le32(buf + 12);
        if (plen > SAVESTATE_MAX_BLOB - SAVESTATE_HEADER_SIZE || plen != len - SAVESTATE_HEADER_SIZE)
                return savestate_fail(err, errlen, "saved state length %u does not match %zu bytes read", plen,
                                      len - SAVESTATE_HEADER_SIZE);
        if (unaligned_read_le32(buf + 16) != savestate_crc32c(buf + SAVESTATE_HEADER_SIZE, plen))
                return savestate_fail(err, errlen, "saved state checksum mismatch: corrupted");
        s = vsockmux__state__saved_state__unpack(NULL, plen, buf + SAVESTATE_HEADER_SIZE);
        if (!s)
                return savestate_fail(err, errlen, "saved state payload does not decode");
        if (s->schema_version != version)
                return savestate_fail(err, errlen, "saved state header says version %u, payload %u", version,
                                      s->schema_version);
        r = savestate_check(s, false, err, errlen);
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
