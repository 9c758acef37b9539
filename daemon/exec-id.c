/* daemon/exec-id.c: see exec-id.h. */
#include "daemon/exec-id.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool exec_id_is_valid(const char *id)
{
        size_t n = id ? strnlen(id, EXEC_ID_MAX + 1) : 0;

        if (n == 0 || n > EXEC_ID_MAX || !is_alnum(id[0]) || !is_alnum(id[n - 1]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_alnum(id[i]) && (!strchr("._-", id[i]) || !is_alnum(id[i - 1])))
                        return false;
        return true;
}

int exec_id_make(char ret[static EXEC_ID_MAX + 1])
{
        uint8_t b[16];

        if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
                return -EIO;
        for (size_t i = 0; i < sizeof(b); i++)
                snprintf(ret + 2 * i, 3, "%02x", b[i]);
        return 0;
}
