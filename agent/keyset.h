/*
 * keyset.h — a multimap from 64-bit key hashes to job ids, in memory:
 * the duplicate keys of the queue, so that checking a new key does not
 * read a random page of an index on disk (store.c, rk_store_dup_find).
 *
 * A hash may map to several jobs (the same key in several jobs, or two
 * keys with one hash); a hit is only a candidate, checked against the
 * database.  Open addressing with linear probing, 16 bytes per slot,
 * at most 5/8 full.  Not thread-safe: one store, one thread at a time.
 */
#ifndef RK_KEYSET_H
#define RK_KEYSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t h; /* 0: an empty slot */
    int64_t job;
} rk_keyslot;

typedef struct {
    rk_keyslot *slot;
    size_t cap; /* a power of two, or 0 */
    size_t n;
} rk_keyset;

void rk_keyset_init(rk_keyset *k);
void rk_keyset_free(rk_keyset *k); /* leaves it empty and usable */

/* The 64-bit hash of a key string (FNV-1a; never 0). */
uint64_t rk_keyset_hash(const char *key);

/* Adds (h, job); a pair already present is kept once.  0 or -ENOMEM. */
int rk_keyset_add(rk_keyset *k, uint64_t h, int64_t job);

/* The jobs of hash h, one per call:
 *   size_t pos = rk_keyset_first(k, h); int64_t job;
 *   while (rk_keyset_next(k, h, &pos, &job)) ...
 * The set must not change during the walk. */
size_t rk_keyset_first(const rk_keyset *k, uint64_t h);
int rk_keyset_next(const rk_keyset *k, uint64_t h, size_t *pos, int64_t *job);

#endif
