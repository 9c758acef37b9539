#!/usr/bin/python3
"""tests/io_uring_available.py: exits 0 when this process may create an io_uring, else prints why
and exits 77 (a skip, as liburing's own tests do). ENOSYS: the kernel has none; EPERM: the
io_uring_disabled sysctl or a seccomp filter refuses it. Anything else is not a reason to skip."""

import ctypes
import errno
import os
import sys

SYS_IO_URING_SETUP = 425  # the same number on every architecture since Linux 5.1


def unavailable():
    """The reason this process cannot use io_uring, or None."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    fd = libc.syscall(SYS_IO_URING_SETUP, 2, params)
    if fd >= 0:
        os.close(fd)
        return None
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM):
        return "no io_uring here: %s" % os.strerror(err)
    return None


if __name__ == "__main__":
    why = unavailable()
    if why:
        print("SKIP: " + why)
        sys.exit(77)
    sys.exit(0)
