/* tests/relay/guest-data.h: the deterministic byte stream and checksum shared by the relay tests and their helper; owns nothing. */
#pragma once

#include <stddef.h>
#include <stdint.h>

static inline uint64_t guest_data_mix(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

/* Fills buf with bytes [offset, offset + len) of the stream named by seed: any slice can be
 * regenerated, so a redialled guest resumes exactly where the host says. */
static inline void guest_data_fill(uint64_t seed, uint64_t offset, uint8_t *buf, size_t len)
{
        size_t i = 0;

        while (i < len) {
                uint64_t pos = offset + i;
                uint64_t word = guest_data_mix(seed ^ guest_data_mix(pos / 8));
                for (unsigned b = pos % 8; b < 8 && i < len; b++, i++)
                        buf[i] = (uint8_t)(word >> (8 * b));
        }
}

#define GUEST_HASH_INIT 0xcbf29ce484222325ull

static inline uint64_t guest_hash(uint64_t h, const void *data, size_t len)
{
        const uint8_t *p = data;

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001b3ull;
        }
        return h;
}

/* The checksum of bytes [from, to) of the stream named by seed. */
static inline uint64_t guest_data_hash_range(uint64_t seed, uint64_t from, uint64_t to)
{
        uint8_t buf[65536];
        uint64_t h = GUEST_HASH_INIT;

        for (uint64_t at = from; at < to;) {
                size_t n = to - at < sizeof(buf) ? (size_t)(to - at) : sizeof(buf);
                guest_data_fill(seed, at, buf, n);
                h = guest_hash(h, buf, n);
                at += n;
        }
        return h;
}

static inline uint64_t guest_data_hash(uint64_t seed, uint64_t len)
{
        return guest_data_hash_range(seed, 0, len);
}
