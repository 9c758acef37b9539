/* util/size.h: parsing a size an operator wrote ("64K", "16M", "1G"); owns nothing. */
#pragma once

#include <stdint.h>

/* Decimal digits, optionally followed by one of K, M or G (either case; powers of 1024). No sign,
 * no space, no other suffix. Returns 0, -EINVAL for anything else, or -ERANGE when the value does
 * not fit in 64 bits (never a wrapped value). */
int size_parse(const char *s, uint64_t *ret);
