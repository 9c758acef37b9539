/* daemon/attach-input.h: struct attach_input owns the write end of a process's stdin pipe and the attach clients' bytes not yet written to it; borrows the relay. */
#pragma once

#include <stddef.h>

#include "relay/relay.h"
#include "util/macro.h"

/* Bytes held for a process that does not read its stdin; a client further ahead is refused. */
#define ATTACH_INPUT_MAX (1u << 20)

struct attach_input;

/* Takes fd (the pipe's write end, blocking or not) on success only. */
int attach_input_new(struct relay *r, int fd, struct attach_input **ret);
/* Writes now as far as the pipe has room and holds the rest, written as the process reads.
 * -ENOBUFS when more than ATTACH_INPUT_MAX would be held, -EPIPE after attach_input_close() or
 * once the reader is gone; nothing is taken then. */
int attach_input_write(struct attach_input *in, const void *data, size_t len);
/* The process sees EOF once what is held was written. */
void attach_input_close(struct attach_input *in);
bool attach_input_is_closed(const struct attach_input *in);
/* Drops what is held; a poll still in flight is cancelled and its memory goes with its completion. */
struct attach_input *attach_input_free(struct attach_input *in);
DEFINE_CLEANUP(struct attach_input *, attach_input_free);
