/*
 * keyset.h — a multimap from 64-bit key hashes to job ids, in memory:
 * the duplicate keys of the queue, so that checking a new key does not
 * read a random page of an index on disk (store.c, rk_store_dup_find).
 *
 * A hash may map to several jobs (the same key in several jobs, or two
 * keys with one hash); a hit is only a candidate, checked against the
 * database.  Each entry carries the day of its key; when the table is
 * full, entries older than a day the caller names are dropped instead of
 * growing the table, so memory stays with the keys of the window.  Open
 * addressing with linear probing, 16 bytes per slot (48 bits of the hash,
 * 16 of the day, the job), at most 5/8 full.  Not thread-safe: one
 * store, one thread at a time.
 */
#ifndef RK_KEYSET_H
#define RK_KEYSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t h; /* day << 48 | 48 bits of the hash; 0: an empty slot */
    int64_t job;
} rk_keyslot;

typedef struct {
    rk_keyslot *slot;
    size_t cap;       /* a power of two, or 0 */
    size_t n;
    unsigned min_day; /* entries of earlier days may have been dropped */
} rk_keyset;

void rk_keyset_init(rk_keyset *k);
void rk_keyset_free(rk_keyset *k); /* leaves it empty and usable */

/* The 64-bit hash of a key string (FNV-1a). */
uint64_t rk_keyset_hash(const char *key);

/* The day number of a time in ms since 1970 (0 to 65535). */
unsigned rk_keyset_day(int64_t ms);

/* Adds (h, job) of day `day`; a pair already present is kept once (with
 * the later day).  When the table is full, entries of days before
 * min_day are dropped (and k->min_day raised to it) before it grows.
 * 0 or -ENOMEM. */
int rk_keyset_add(rk_keyset *k, uint64_t h, int64_t job, unsigned day, unsigned min_day);

/* The jobs of hash h, one per call:
 *   size_t pos = rk_keyset_first(k, h); int64_t job;
 *   while (rk_keyset_next(k, h, &pos, &job)) ...
 * The set must not change during the walk. */
size_t rk_keyset_first(const rk_keyset *k, uint64_t h);
int rk_keyset_next(const rk_keyset *k, uint64_t h, size_t *pos, int64_t *job);

#endif
