/*
 * test_keyset.c — agent/keyset.c: the in-memory multimap of duplicate
 * key hashes to job ids (one hash, several jobs; pairs kept once; growth
 * with every entry kept; clustered hashes; the reserved hash 0; entries
 * of days before the window dropped instead of growing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "keyset.h"

/* The jobs of h, as a bit mask of jobs 0..63; fails on a job > 63. */
static uint64_t jobs_of(const rk_keyset *k, uint64_t h, int *count)
{
    uint64_t mask = 0;
    *count = 0;
    size_t pos = rk_keyset_first(k, h);
    int64_t job;
    while (rk_keyset_next(k, h, &pos, &job)) {
        assert_in_range(job, 0, 63);
        mask |= 1ULL << job;
        (*count)++;
    }
    return mask;
}

static void test_empty(void **state)
{
    rk_keyset k;
    rk_keyset_init(&k);
    int n;
    assert_int_equal(jobs_of(&k, 42, &n), 0);
    assert_int_equal(n, 0);
    rk_keyset_free(&k);
    rk_keyset_free(&k); /* twice is harmless */
}

static void test_several_jobs_per_hash(void **state)
{
    rk_keyset k;
    rk_keyset_init(&k);
    assert_int_equal(rk_keyset_add(&k, 7, 1, 100, 0), 0);
    assert_int_equal(rk_keyset_add(&k, 7, 2, 100, 0), 0);
    assert_int_equal(rk_keyset_add(&k, 8, 3, 100, 0), 0);
    assert_int_equal(rk_keyset_add(&k, 7, 1, 100, 0), 0); /* kept once */
    assert_int_equal(k.n, 3);
    int n;
    assert_int_equal(jobs_of(&k, 7, &n), (1ULL << 1) | (1ULL << 2));
    assert_int_equal(n, 2);
    assert_int_equal(jobs_of(&k, 8, &n), 1ULL << 3);
    assert_int_equal(jobs_of(&k, 9, &n), 0);
    /* hash 0 marks an empty slot: it is stored and found as 1 */
    assert_int_equal(rk_keyset_add(&k, 0, 4, 100, 0), 0);
    assert_int_equal(jobs_of(&k, 0, &n), 1ULL << 4);
    rk_keyset_free(&k);
}

/* Half of the hashes differ in the high bits of the 48 the table keeps
 * only, the other half in their low bits only. */
static uint64_t clustered(int64_t i)
{
    return (i % 2) ? (uint64_t)(i + 1) << 30 : (uint64_t)i;
}

/* Hashes that share their low or high bits are spread; growth
 * keeps every pair and the table stays at most 5/8 full. */
static void test_growth_and_clusters(void **state)
{
    rk_keyset k;
    rk_keyset_init(&k);
    enum { N = 100000 };
    for (int64_t i = 0; i < N; i++) {
        uint64_t h = clustered(i);
        assert_int_equal(rk_keyset_add(&k, h, i, 100, 0), 0);
    }
    assert_int_equal(k.n, N);
    assert_true(k.n * 8 <= k.cap * 5);
    assert_int_equal(k.cap & (k.cap - 1), 0);
    for (int64_t i = 0; i < N; i++) {
        uint64_t h = clustered(i);
        size_t pos = rk_keyset_first(&k, h);
        int64_t job, found = -1;
        int hits = 0;
        while (rk_keyset_next(&k, h, &pos, &job)) {
            found = job;
            hits++;
        }
        assert_int_equal(hits, 1);
        assert_int_equal(found, i);
    }
    rk_keyset_free(&k);
    assert_int_equal(k.n, 0);
    assert_null(k.slot);
}

/* A full table drops the entries of days before min_day instead of
 * growing: memory stays with the keys of the window. */
static void test_old_days_dropped(void **state)
{
    rk_keyset k;
    rk_keyset_init(&k);
    enum { N = 50000 };
    /* day 10 + i / 1000: 50 days of 1,000 keys; the window is 7 days */
    for (int64_t i = 0; i < N; i++) {
        unsigned day = 10 + (unsigned)(i / 1000);
        assert_int_equal(rk_keyset_add(&k, (uint64_t)i * 2654435761ULL, i, day, day - 7), 0);
        /* about 8 days of keys after a rebuild, and up to 5/8 of the
         * table before the next */
        assert_true(k.n <= 20480);
    }
    assert_true(k.min_day >= 59 - 7 - 8 && k.min_day <= 59 - 7);
    assert_true(k.cap <= 32768);
    for (int64_t i = 0; i < N; i++) {
        uint64_t h = (uint64_t)i * 2654435761ULL;
        size_t pos = rk_keyset_first(&k, h);
        int64_t job;
        int found = rk_keyset_next(&k, h, &pos, &job);
        unsigned day = 10 + (unsigned)(i / 1000);
        if (day >= k.min_day) /* every key from min_day on is held */
            assert_true(found && job == i);
        else if (found) /* an older one may only be a hash's other job */
            assert_int_not_equal(job, i);
    }
    /* a pair added again keeps the later day: not dropped as old */
    rk_keyset_free(&k);
    assert_int_equal(rk_keyset_add(&k, 5, 1, 3, 0), 0);
    assert_int_equal(rk_keyset_add(&k, 5, 1, 90, 0), 0);
    assert_int_equal(k.n, 1);
    for (int64_t i = 0; i < 700; i++)
        assert_int_equal(rk_keyset_add(&k, 1000 + (uint64_t)i, 2 + i, 90, 80), 0);
    size_t pos = rk_keyset_first(&k, 5);
    int64_t job;
    assert_true(rk_keyset_next(&k, 5, &pos, &job) && job == 1);
    assert_int_equal(k.min_day, 80); /* the table was rebuilt */
    assert_int_equal(rk_keyset_day(-5), 0);
    assert_int_equal(rk_keyset_day(86400000LL * 20000 + 5), 20000);
    assert_int_equal(rk_keyset_day(INT64_MAX), 0xFFFF);
    rk_keyset_free(&k);
}

static void test_hash(void **state)
{
    /* FNV-1a, 64 bits: the published test vectors */
    assert_true(rk_keyset_hash("") == 0xcbf29ce484222325ULL);
    assert_true(rk_keyset_hash("a") == 0xaf63dc4c8601ec8cULL);
    assert_true(rk_keyset_hash("foobar") == 0x85944171f73967e8ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_several_jobs_per_hash),
        cmocka_unit_test(test_growth_and_clusters),
        cmocka_unit_test(test_old_days_dropped),
        cmocka_unit_test(test_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
