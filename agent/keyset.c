/*
 * keyset.c — see keyset.h.
 */
#include "keyset.h"

#include <errno.h>
#include <stdlib.h>

#define HASH_MASK ((1ULL << 48) - 1)
#define DAY_MS 86400000LL
#define MIN_CAP 1024

void rk_keyset_init(rk_keyset *k)
{
    k->slot = NULL;
    k->cap = 0;
    k->n = 0;
    k->min_day = 0;
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
    return h;
}

unsigned rk_keyset_day(int64_t ms)
{
    int64_t d = ms / DAY_MS;
    return d < 0 ? 0 : d > 0xFFFF ? 0xFFFF : (unsigned)d;
}

/* The 48 bits of h the table keeps (never 0: 0 marks an empty slot). */
static uint64_t part(uint64_t h)
{
    h &= HASH_MASK;
    return h ? h : 1;
}

static unsigned day_of(const rk_keyslot *s) { return (unsigned)(s->h >> 48); }

/* The first slot of a hash part: the top bits of it times 2^64 / phi
 * (Fibonacci hashing), which depend on every bit, so that hashes sharing
 * their low (or high) bits still spread over the table.  cap >= 2. */
static size_t home(uint64_t hp, size_t cap)
{
    return (size_t)((hp * 0x9E3779B97F4A7C15ULL) >> (64 - __builtin_ctzll(cap)));
}

/* Places an entry into a table known to have room. */
static void place(rk_keyslot *slot, size_t cap, uint64_t h, int64_t job)
{
    size_t i = home(h & HASH_MASK, cap);
    while (slot[i].h)
        i = (i + 1) & (cap - 1);
    slot[i].h = h;
    slot[i].job = job;
}

/* A new table for the entries of day >= min_day, at most 5/16 full (so
 * the next rebuild is as many adds away as it holds): smaller when many
 * were dropped, twice the size when none were. */
static int rebuild(rk_keyset *k, unsigned min_day)
{
    size_t live = 0;
    for (size_t i = 0; i < k->cap; i++)
        live += k->slot[i].h && day_of(&k->slot[i]) >= min_day;
    size_t cap = MIN_CAP;
    while ((live + 1) * 16 > cap * 5) {
        if (cap > SIZE_MAX / 2 / sizeof(rk_keyslot))
            return -ENOMEM;
        cap *= 2;
    }
    rk_keyslot *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return -ENOMEM;
    for (size_t i = 0; i < k->cap; i++)
        if (k->slot[i].h && day_of(&k->slot[i]) >= min_day)
            place(slot, cap, k->slot[i].h, k->slot[i].job);
    free(k->slot);
    k->slot = slot;
    k->cap = cap;
    k->n = live;
    if (min_day > k->min_day)
        k->min_day = min_day;
    return 0;
}

int rk_keyset_add(rk_keyset *k, uint64_t h, int64_t job, unsigned day, unsigned min_day)
{
    uint64_t hp = part(h);
    if (day > 0xFFFF)
        day = 0xFFFF;
    if (k->cap) {
        for (size_t i = home(hp, k->cap); k->slot[i].h; i = (i + 1) & (k->cap - 1)) {
            if ((k->slot[i].h & HASH_MASK) == hp && k->slot[i].job == job) {
                if (day > day_of(&k->slot[i]))
                    k->slot[i].h = (uint64_t)day << 48 | hp;
                return 0;
            }
        }
    }
    if ((k->n + 1) * 8 > k->cap * 5) {
        int rc = rebuild(k, min_day);
        if (rc)
            return rc;
    }
    place(k->slot, k->cap, (uint64_t)day << 48 | hp, job);
    k->n++;
    return 0;
}

size_t rk_keyset_first(const rk_keyset *k, uint64_t h)
{
    return k->cap ? home(part(h), k->cap) : 0;
}

int rk_keyset_next(const rk_keyset *k, uint64_t h, size_t *pos, int64_t *job)
{
    if (!k->cap)
        return 0;
    uint64_t hp = part(h);
    /* the table is never full, so an empty slot ends every walk */
    for (size_t i = *pos; k->slot[i].h; i = (i + 1) & (k->cap - 1)) {
        if ((k->slot[i].h & HASH_MASK) == hp) {
            *job = k->slot[i].job;
            *pos = (i + 1) & (k->cap - 1);
            return 1;
        }
    }
    return 0;
}
