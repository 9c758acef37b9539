/* daemon/error.c: filling a struct vmm_error. */
#include <stdarg.h>
#include <stdio.h>

#include "daemon/error.h"

int vmm_error_set(struct vmm_error *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return code;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return code;
}
