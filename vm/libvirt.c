/* vm/libvirt.c: the process-wide libvirt pieces of vm/: event loop thread, quiet errors, errno mapping.
 *
 * libvirt's event loop is process-wide, so there is one event thread per process, started with
 * the first migration and kept for the life of the process, as libvirt recommends. Every
 * callback of that loop runs on that one thread, which is what makes vm_libvirt_barrier() work.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "vm/libvirt.h"

/* The barrier polls this often for libvirt's loop to release its timer (microseconds). */
#define VM_BARRIER_POLL_US 1000

void vm_libvirt_quiet(void *opaque, virErrorPtr e)
{
        /* Errors are returned to our callers with libvirt's message; never print them. */
}

static void *vm_event_thread(void *arg)
{
        for (;;)
                if (virEventRunDefaultImpl() < 0)
                        return NULL;
}

/* Written once, under pthread_once, before any migration exists. */
static pthread_once_t vm_libvirt_once = PTHREAD_ONCE_INIT;
static int vm_libvirt_init_result;

/* libvirt's event implementation must exist before any connection that wants events is opened:
 * registering it and starting its thread are the only global steps. */
static void vm_libvirt_init_once(void)
{
        pthread_attr_t a;
        pthread_t t;
        sigset_t all, old;
        int r;

        if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
                vm_libvirt_init_result = -EIO;
                return;
        }
        virSetErrorFunc(NULL, vm_libvirt_quiet);

        /* Signals stay with the caller's threads (its loop may use signalfd). */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &a, vm_event_thread, NULL);
        pthread_attr_destroy(&a);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0)
                vm_libvirt_init_result = -r;
}

/* libvirt's last error on this thread as -errno, its message copied into msg. */
int vm_libvirt_error(char *msg, size_t msglen)
{
        virErrorPtr e = virGetLastError();
        int r;

        if (msg && msglen > 0)
                snprintf(msg, msglen, "%s", e && e->message ? e->message : "unknown libvirt error");
        if (!e)
                return -EIO;
        switch (e->code) {
        case VIR_ERR_NO_DOMAIN: r = -ENOENT; break;
        case VIR_ERR_OPERATION_INVALID: r = -EINVAL; break;
        case VIR_ERR_INVALID_ARG: r = -EINVAL; break;
        case VIR_ERR_OPERATION_ABORTED: r = -ECANCELED; break;
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_ARGUMENT_UNSUPPORTED:
        case VIR_ERR_OPERATION_UNSUPPORTED: r = -EOPNOTSUPP; break;
        case VIR_ERR_OPERATION_TIMEOUT: r = -ETIMEDOUT; break;
        case VIR_ERR_NO_CONNECT:
        case VIR_ERR_AUTH_FAILED: r = -ECONNREFUSED; break;
        default: r = -EIO; break;
        }
        return r;
}

int vm_libvirt_setup(void)
{
        pthread_once(&vm_libvirt_once, vm_libvirt_init_once);
        return vm_libvirt_init_result;
}

virConnectPtr vm_libvirt_open(const char *uri, const char *what, char *err, size_t errlen, int *ret_r)
{
        virConnectPtr c = virConnectOpen(uri);
        char msg[VM_LIBVIRT_MESSAGE_MAX];

        if (!c) {
                *ret_r = vm_libvirt_error(msg, sizeof(msg));
                if (err && errlen > 0)
                        snprintf(err, errlen, "%s: %s", what, msg);
                return NULL;
        }
        virConnSetErrorFunc(c, NULL, vm_libvirt_quiet);
        return c;
}

static void on_barrier_timer(int timer, void *opaque)
{
}

/* libvirt calls this on the event thread once the timer is removed, after any dispatch in
 * progress. Nothing may be touched after the store. */
static void on_barrier_released(void *opaque)
{
        atomic_bool *released = opaque;

        atomic_store(released, true);
}

/* A disabled timer's release is queued behind the dispatch in progress, and every callback of
 * libvirt's loop runs on the one event thread. */
void vm_libvirt_barrier(atomic_bool *released)
{
        int t = virEventAddTimeout(-1, on_barrier_timer, released, on_barrier_released);

        if (t < 0 || virEventRemoveTimeout(t) < 0)
                return;
        while (!atomic_load(released))
                usleep(VM_BARRIER_POLL_US);
}
