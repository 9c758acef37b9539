/* vm/libvirt.h: libvirt setup shared by vm/ (the process-wide event loop thread) and libvirt errors as -errno; owns that one thread. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <libvirt/libvirt.h>

#define VM_LIBVIRT_MESSAGE_MAX 256u

/* Once per process: virInitialize, libvirt's default event implementation and the thread that
 * runs it, quiet error printing. Returns 0 or -errno; later calls return the first result. */
int vm_libvirt_setup(void);

/* An error handler that prints nothing: every error reaches our callers with its message. */
void vm_libvirt_quiet(void *opaque, virErrorPtr e);

/* This thread's last libvirt error as -errno; its message is copied into msg. */
int vm_libvirt_error(char *msg, size_t msglen);

/* virConnectOpen with quiet errors. On failure returns NULL, sets *ret_r to -errno and writes
 * "what: libvirt's message" into err. */
virConnectPtr vm_libvirt_open(const char *uri, const char *what, char *err, size_t errlen, int *ret_r);

/* Returns once no callback is running on the event thread; released must start false and stay
 * valid until then. Deregister callbacks first, so none can start afterwards. */
void vm_libvirt_barrier(atomic_bool *released);
