/* relay/stream.c: placeholder until the stream engine lands. */
#include "relay/internal.h"

void relay_streams_wake_buf_waiters(struct relay *r)
{
}

int relay_stream_new(struct relay *r, enum relay_stream_dir dir, int guest_fd, int endpoint_fd,
                     const struct relay_stream_ops *ops, void *userdata, struct relay_stream **ret)
{
        return -EOPNOTSUPP;
}

void relay_stream_get_counters(const struct relay_stream *s, struct relay_stream_counters *ret) {}
void relay_stream_seed_counters(struct relay_stream *s, const struct relay_stream_counters *c) {}
void relay_stream_get_held(const struct relay_stream *s, size_t *ret_bytes, unsigned *ret_bufs) {}
int relay_stream_freeze(struct relay_stream *s) { return -EOPNOTSUPP; }
int relay_stream_resume(struct relay_stream *s) { return -EOPNOTSUPP; }
int relay_stream_replace_guest(struct relay_stream *s, int guest_fd, bool send_offset_header) { return -EOPNOTSUPP; }
struct relay_stream *relay_stream_free(struct relay_stream *s) { return NULL; }
const char *relay_stream_dir_to_string(enum relay_stream_dir d) { return NULL; }
