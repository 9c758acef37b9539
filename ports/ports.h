/* ports/ports.h: struct ports owns one VM's stdio port floor and its restored reservations; no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/macro.h"

#define PORTS_BRIDGE UINT32_C(0x40000000) /* the guest agent's bridge; never handed out */
#define PORTS_FIRST UINT32_C(0x40000001)
#define PORTS_LAST UINT32_C(0xFFFFFFFE) /* 0xFFFFFFFF is VMADDR_PORT_ANY */
#define PORTS_EXHAUSTED (PORTS_LAST + 1)

struct ports;

int ports_new(struct ports **ret);
struct ports *ports_free(struct ports *p);
DEFINE_CLEANUP(struct ports *, ports_free);

/* Returns 0, or -ENOSPC once the port space is used up. Ports are never reused. */
int ports_alloc(struct ports *p, uint32_t *ret_port);

/* The next port ports_alloc() would hand out; PORTS_EXHAUSTED when none is left. */
uint32_t ports_floor(const struct ports *p);

/* Raises the floor to `floor`. Equal is a no-op; lowering is refused with -ERANGE. */
int ports_raise_floor(struct ports *p, uint32_t floor);

/* Re-reserves a port handed out before a save. It must lie below the floor (-ERANGE otherwise)
 * and may be reserved once (-EEXIST on a duplicate). */
int ports_reserve(struct ports *p, uint32_t port);
bool ports_is_reserved(const struct ports *p, uint32_t port);
size_t ports_reserved_count(const struct ports *p);
