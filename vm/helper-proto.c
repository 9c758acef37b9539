/* vm/helper-proto.c: frames of proto/vmhelper.proto, checked against the limits before use. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vm/helper-proto.h"

static bool str_ok(const char *s, size_t max)
{
        return s && strnlen(s, max + 1) <= max;
}

static bool io_ok(const Vsockmux__V1__RestoreIo *io)
{
        return io && str_ok(io->stdin_path, VMHELPER_STRING_MAX) && str_ok(io->stdout_path, VMHELPER_STRING_MAX) &&
               str_ok(io->stderr_path, VMHELPER_STRING_MAX) && str_ok(io->exec_id, VMHELPER_STRING_MAX);
}

static bool migrate_ok(const Vsockmux__Vmhelper__Migrate *m)
{
        if (!str_ok(m->vm, VMHELPER_STRING_MAX) || !str_ok(m->source_uri, VMHELPER_STRING_MAX) ||
            !str_ok(m->domain, VMHELPER_STRING_MAX) || !str_ok(m->destination_uri, VMHELPER_STRING_MAX) ||
            !str_ok(m->destination_socket, VMHELPER_STRING_MAX) || !str_ok(m->destination_name, VMHELPER_STRING_MAX))
                return false;
        if (m->destination_transport_case ==
                    VSOCKMUX__VMHELPER__MIGRATE__DESTINATION_TRANSPORT_DESTINATION_HVSOCK_PATH &&
            !str_ok(m->destination_hvsock_path, VMHELPER_STRING_MAX))
                return false;
        if (m->n_params > VMHELPER_PARAMS_MAX || m->n_io > VMHELPER_IO_MAX)
                return false;
        for (size_t i = 0; i < m->n_params; i++)
                if (!m->params[i] || !str_ok(m->params[i]->key, VMHELPER_STRING_MAX) ||
                    !str_ok(m->params[i]->value, VMHELPER_STRING_MAX))
                        return false;
        for (size_t i = 0; i < m->n_io; i++)
                if (!io_ok(m->io[i]))
                        return false;
        return true;
}

static bool rollback_ok(const Vsockmux__Vmhelper__Rollback *m)
{
        return str_ok(m->vm, VMHELPER_STRING_MAX) && str_ok(m->source_uri, VMHELPER_STRING_MAX) &&
               str_ok(m->domain, VMHELPER_STRING_MAX) && str_ok(m->destination_socket, VMHELPER_STRING_MAX) &&
               str_ok(m->destination_name, VMHELPER_STRING_MAX);
}

/* No field this build does not know, at any depth: the daemon and its helper are one build, so
 * one is a corrupt or foreign frame (and protobuf-c re-packs an unknown varint written in more
 * bytes than it needs differently from how it read it). */
static bool known_fields_only(const ProtobufCMessage *m)
{
        const uint8_t *base = (const uint8_t *)m;

        if (m->n_unknown_fields > 0)
                return false;
        for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &m->descriptor->fields[i];

                if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                        continue;
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *)(base + f->quantifier_offset);
                        ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);

                        for (size_t j = 0; j < n; j++)
                                if (v[j] && !known_fields_only(v[j]))
                                        return false;
                        continue;
                }
                /* A oneof's members share their storage: only the one its case names is there. */
                if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
                        continue;
                const ProtobufCMessage *v = *(ProtobufCMessage *const *)(base + f->offset);
                if (v && !known_fields_only(v))
                        return false;
        }
        return true;
}

static bool phase_ok(Vsockmux__Vmhelper__Phase p)
{
        return p > VSOCKMUX__VMHELPER__PHASE__PHASE_UNSPECIFIED && p <= VSOCKMUX__VMHELPER__PHASE__PHASE_INTERRUPTED;
}

static bool body_ok(const vmhelper_msg *m)
{
        switch (m->body_case) {
        case VSOCKMUX__VMHELPER__MESSAGE__BODY_MIGRATE: return m->migrate && migrate_ok(m->migrate);
        case VSOCKMUX__VMHELPER__MESSAGE__BODY_ROLLBACK: return m->rollback && rollback_ok(m->rollback);
        case VSOCKMUX__VMHELPER__MESSAGE__BODY_SAVED: return m->saved && str_ok(m->saved->error, VMHELPER_MESSAGE_MAX);
        case VSOCKMUX__VMHELPER__MESSAGE__BODY_ABORT: return m->abort != NULL;
        case VSOCKMUX__VMHELPER__MESSAGE__BODY_EVENT:
                return m->event && phase_ok(m->event->phase) && str_ok(m->event->message, VMHELPER_MESSAGE_MAX) &&
                       str_ok(m->event->destination_vm, VMHELPER_STRING_MAX);
        case VSOCKMUX__VMHELPER__MESSAGE__BODY_OUTCOME:
                return m->outcome && str_ok(m->outcome->message, VMHELPER_MESSAGE_MAX) &&
                       str_ok(m->outcome->destination_vm, VMHELPER_STRING_MAX);
        default: return false;
        }
}

int vmhelper_frame_parse(const uint8_t *buf, size_t len, vmhelper_msg **ret, size_t *ret_size)
{
        vmhelper_msg *m;
        uint32_t n;

        if (len < VMHELPER_HEADER_SIZE)
                return 0;
        n = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
        if (n == 0 || n > VMHELPER_FRAME_MAX)
                return -EMSGSIZE;
        if (len - VMHELPER_HEADER_SIZE < n)
                return 0;
        m = vsockmux__vmhelper__message__unpack(NULL, n, buf + VMHELPER_HEADER_SIZE);
        if (!m)
                return -EBADMSG;
        if (!known_fields_only(&m->base) || !body_ok(m)) {
                vmhelper_msg_free(m);
                return -EBADMSG;
        }
        *ret = m;
        *ret_size = VMHELPER_HEADER_SIZE + n;
        return 1;
}

int vmhelper_frame_build(const vmhelper_msg *m, uint8_t **ret, size_t *ret_len)
{
        size_t n = vsockmux__vmhelper__message__get_packed_size(m);
        uint8_t *buf;

        if (n == 0 || n > VMHELPER_FRAME_MAX)
                return -EMSGSIZE;
        buf = malloc(VMHELPER_HEADER_SIZE + n);
        if (!buf)
                return -ENOMEM;
        buf[0] = (uint8_t)n;
        buf[1] = (uint8_t)(n >> 8);
        buf[2] = (uint8_t)(n >> 16);
        buf[3] = (uint8_t)(n >> 24);
        vsockmux__vmhelper__message__pack(m, buf + VMHELPER_HEADER_SIZE);
        *ret = buf;
        *ret_len = VMHELPER_HEADER_SIZE + n;
        return 0;
}

vmhelper_msg *vmhelper_msg_free(vmhelper_msg *m)
{
        if (m)
                vsockmux__vmhelper__message__free_unpacked(m, NULL);
        return NULL;
}

static const char *const phase_names[] = {
        [VSOCKMUX__VMHELPER__PHASE__PHASE_STARTED] = "started",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_PROGRESS] = "progress",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_ITERATION] = "iteration",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_SUSPENDED] = "suspended",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_RESTORED] = "restored",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_SOURCE_RESUMED] = "source-resumed",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_DESTINATION_RESUMED] = "destination-resumed",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_HANDOVER_FAILED] = "handover-failed",
        [VSOCKMUX__VMHELPER__PHASE__PHASE_INTERRUPTED] = "interrupted",
};

const char *vmhelper_phase_to_string(Vsockmux__Vmhelper__Phase p)
{
        return (size_t)p < ELEMENTSOF(phase_names) && phase_names[p] ? phase_names[p] : "unknown";
}
