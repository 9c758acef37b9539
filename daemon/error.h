/* daemon/error.h: struct vmm_error, the -errno and one-line reason a daemon call hands back to its caller; owns nothing. */
#pragma once

#include "util/macro.h"

#define VMM_ERROR_MESSAGE_MAX 256u

/* The last parameter of a call that can fail for a reason the client should read (crun's
 * libcrun_error_t in spirit). code is the call's -errno return; message says why in one line. */
struct vmm_error {
        int code;
        char message[VMM_ERROR_MESSAGE_MAX];
};

/* Fills err (when not NULL) and returns code, a -errno: `return vmm_error_set(err, -EINVAL, ...);` */
int vmm_error_set(struct vmm_error *err, int code, const char *fmt, ...) _printf_(3, 4);
