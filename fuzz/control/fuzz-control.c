/* fuzz/control/fuzz-control.c: the ttrpc frame reader, both envelopes and every Control message decode. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "control/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode_and_free(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len)
{
        ProtobufCMessage *m = NULL;

        if (control_message_decode(desc, p, len, &m) == 0)
                control_message_free(m);
}

static void fuzz_frame(const struct control_frame *f)
{
        const ProtobufCServiceDescriptor *svc = &vsockmux__v1__control__descriptor;
        const uint8_t *p = f->data;
        size_t len = f->header.length;
        Vsockmux__V1__TtrpcRequest *req = NULL;
        Vsockmux__V1__TtrpcResponse *resp = NULL;

        /* The server's path: envelope, then the named method's request message. */
        if (control_request_decode(p, len, &req) == 0) {
                const ProtobufCMethodDescriptor *md =
                        protobuf_c_service_descriptor_get_method_by_name(svc, req->method);
                if (md && strcmp(req->service, svc->name) == 0)
                        decode_and_free(md->input, req->payload.data, req->payload.len);
                control_request_free(req);
        }
        /* The client's path. */
        if (control_response_decode(p, len, &resp) == 0)
                control_response_free(resp);

        /* Every message type sees the raw bytes too, picked by the stream id. */
        const ProtobufCMethodDescriptor *md = &svc->methods[f->header.stream_id % svc->n_methods];
        decode_and_free(md->input, p, len);
        decode_and_free(md->output, p, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t off = 0;

        while (off < size) {
                struct control_frame f;
                size_t fsize;

                if (control_frame_parse(data + off, size - off, &f, &fsize) <= 0)
                        break;
                fuzz_frame(&f);
                off += fsize;
        }
        return 0;
}
