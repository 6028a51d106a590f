/*
 * keyset.c — see keyset.h.
 */
#include "keyset.h"

#include <errno.h>
#include <stdlib.h>

void rk_keyset_init(rk_keyset *k)
{
    k->slot = NULL;
    k->cap = 0;
    k->n = 0;
}

void rk_keyset_free(rk_keyset *k)
{
    free(k->slot);
    rk_keyset_init(k);
}

uint64_t rk_keyset_hash(const char *key)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

/* The first slot of h: the top bits of h times 2^64 / phi (Fibonacci
 * hashing), which depend on every bit of h, so that hashes sharing their
 * low (or high) bits still spread over the table.  cap >= 2. */
static size_t home(uint64_t h, size_t cap)
{
    return (size_t)((h * 0x9E3779B97F4A7C15ULL) >> (64 - __builtin_ctzll(cap)));
}

/* Places a pair into a table known to have room and not to hold it. */
static void place(rk_keyslot *slot, size_t cap, uint64_t h, int64_t job)
{
    size_t i = home(h, cap);
    while (slot[i].h)
        i = (i + 1) & (cap - 1);
    slot[i].h = h;
    slot[i].job = job;
}

static int grow(rk_keyset *k)
{
    size_t cap = k->cap ? k->cap * 2 : 1024;
    if (cap > SIZE_MAX / sizeof(rk_keyslot))
        return -ENOMEM;
    rk_keyslot *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return -ENOMEM;
    for (size_t i = 0; i < k->cap; i++)
        if (k->slot[i].h)
            place(slot, cap, k->slot[i].h, k->slot[i].job);
    free(k->slot);
    k->slot = slot;
    k->cap = cap;
    return 0;
}

int rk_keyset_add(rk_keyset *k, uint64_t h, int64_t job)
{
    if (!h)
        h = 1;
    size_t pos = rk_keyset_first(k, h);
    int64_t j;
    while (rk_keyset_next(k, h, &pos, &j))
        if (j == job)
            return 0;
    if ((k->n + 1) * 8 > k->cap * 5) {
        int rc = grow(k);
        if (rc)
            return rc;
    }
    place(k->slot, k->cap, h, job);
    k->n++;
    return 0;
}

size_t rk_keyset_first(const rk_keyset *k, uint64_t h)
{
    return k->cap ? home(h ? h : 1, k->cap) : 0;
}

int rk_keyset_next(const rk_keyset *k, uint64_t h, size_t *pos, int64_t *job)
{
    if (!k->cap)
        return 0;
    if (!h)
        h = 1;
    /* the table is never full, so an empty slot ends every walk */
    for (size_t i = *pos; k->slot[i].h; i = (i + 1) & (k->cap - 1)) {
        if (k->slot[i].h == h) {
            *job = k->slot[i].job;
            *pos = (i + 1) & (k->cap - 1);
            return 1;
        }
    }
    return 0;
}
