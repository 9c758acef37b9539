/* util/array.h: room for one more element in a heap array that grows by doubling; owns nothing (the caller owns the array). */
#pragma once

#include <stddef.h>

/* With n of *cap elements of size bytes used, makes *array hold at least n + 1: unchanged while
 * there is room, else reallocated to twice *cap (min_cap for an empty one). Returns 0, or -ENOMEM
 * (out of memory, or a size that would overflow) with *array and *cap as they were. */
int array_reserve_one(void **array, size_t n, size_t *cap, size_t size, size_t min_cap);

/* array_reserve_one() for a typed pointer lvalue `array` and a size_t lvalue `cap`. */
#define ARRAY_RESERVE_ONE(array, n, cap, min_cap)                                            \
        ({                                                                                   \
                void *_a_ = (array);                                                         \
                int _r_ = array_reserve_one(&_a_, (n), &(cap), sizeof(*(array)), (min_cap)); \
                if (_r_ == 0)                                                                \
                        (array) = _a_;                                                       \
                _r_;                                                                         \
        })
