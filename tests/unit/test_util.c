/*
 * test_util.c — agent/util.c: bounded buffers on both sides of their
 * maximum, zlib/gzip inflate with its size and ratio caps and its refusal
 * of truncated or corrupt input, integer and boolean parsing, SHA-256,
 * ISO time stamps, random hex and whole-file reads with a limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "util.h"

/* ---- rk_buf ------------------------------------------------------------ */

static void test_buf_exactly_max_then_one_more(void **state)
{
    (void)state;
    rk_buf b;
    rk_buf_init(&b, 10);
    assert_int_equal(rk_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    /* one byte over: refused, buffer unchanged */
    assert_int_equal(rk_buf_append(&b, "x", 1), RK_E_LIMIT);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    /* appending nothing at the limit is fine */
    assert_int_equal(rk_buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 10);
    rk_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_buf_over_max_in_one_step(void **state)
{
    (void)state;
    rk_buf b;
    rk_buf_init(&b, 10);
    assert_int_equal(rk_buf_append(&b, "abc", 3), 0);
    /* 3 + 8 = 11 > 10: refused whole, nothing of it appended */
    assert_int_equal(rk_buf_append(&b, "defghijk", 8), RK_E_LIMIT);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    /* 3 + 7 = 10: fits exactly */
    assert_int_equal(rk_buf_append(&b, "defghij", 7), 0);
    assert_string_equal(b.data, "abcdefghij");
    rk_buf_free(&b);

    /* an empty buffer refuses a first append of max + 1 */
    rk_buf_init(&b, 4);
    assert_int_equal(rk_buf_append(&b, "12345", 5), RK_E_LIMIT);
    assert_int_equal(b.len, 0);
    assert_null(b.data);
    /* a huge n must not wrap around the limit check */
    assert_int_equal(rk_buf_append(&b, "x", SIZE_MAX), RK_E_LIMIT);
    rk_buf_free(&b);
}

static void test_buf_appendf(void **state)
{
    (void)state;
    rk_buf b;
    rk_buf_init(&b, 12);
    assert_int_equal(rk_buf_appendf(&b, "%s-%d", "job", 42), 0);
    assert_string_equal(b.data, "job-42");
    assert_int_equal(b.len, 6);
    /* 6 + 6 = 12: exactly max */
    assert_int_equal(rk_buf_appendf(&b, "%06d", 7), 0);
    assert_string_equal(b.data, "job-42000007");
    assert_int_equal(b.len, 12);
    /* one more character is refused and changes nothing */
    assert_int_equal(rk_buf_appendf(&b, "%c", 'z'), RK_E_LIMIT);
    assert_string_equal(b.data, "job-42000007");
    assert_int_equal(b.len, 12);
    rk_buf_free(&b);

    rk_buf_init(&b, 5);
    assert_int_equal(rk_buf_appendf(&b, "%s", "123456"), RK_E_LIMIT);
    assert_int_equal(b.len, 0);
    rk_buf_free(&b);
}

static void test_buf_take(void **state)
{
    (void)state;
    rk_buf b;
    rk_buf_init(&b, 100);
    char *empty = rk_buf_take(&b); /* nothing appended: still a string */
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);
    assert_int_equal(rk_buf_append(&b, "hello", 5), 0);
    char *p = rk_buf_take(&b);
    assert_string_equal(p, "hello");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(p);
    /* the buffer is usable again with the same maximum */
    assert_int_equal(b.max, 100);
    assert_int_equal(rk_buf_append(&b, "again", 5), 0);
    assert_string_equal(b.data, "again");
    rk_buf_free(&b);
}

/* ---- zlib / gzip --------------------------------------------------------- */

/* gzip-compresses src (zlib's deflate with a gzip wrapper); caller frees. */
static unsigned char *gzip_bytes(const void *src, size_t len, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                                  Z_DEFAULT_STRATEGY),
                     Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 32;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outlen = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static char *repeated(char c, size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    memset(p, c, n);
    p[n] = '\0';
    return p;
}

static void test_inflate_zlib_round_trip(void **state)
{
    (void)state;
    const char *doc = "<Antrag><Name>Muster</Name></Antrag>";
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate(doc, strlen(doc), &z, &zlen), 0);
    assert_true(zlen > 0);
    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(rk_inflate(z, zlen, 0, 1024, 0, &out, &outlen), 0);
    assert_int_equal(outlen, strlen(doc));
    assert_string_equal(out, doc);
    free(out);
    /* zlib data is not gzip */
    out = NULL;
    assert_int_equal(rk_inflate(z, zlen, 1, 1024, 0, &out, &outlen), RK_E_FORMAT);
    assert_null(out);
    free(z);
}

/* rk_deflate keeps a compressor per thread: threads compressing at once
 * each get their own, and what they write is an ordinary zlib stream
 * (zlib's own uncompress reads it, as every stored payload must stay
 * readable). */
static void *deflate_many(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < 300; i++) {
        char doc[2048];
        int n = snprintf(doc, sizeof doc, "<Antrag t=\"%d\"><Nr>%d</Nr>", t, i);
        for (int k = 0; k < i % 40; k++)
            n += snprintf(doc + n, sizeof doc - (size_t)n, "<F%d>%d-%d</F%d>", k, t, k * i, k);
        void *z;
        size_t zlen;
        if (rk_deflate(doc, (size_t)n, &z, &zlen) != 0)
            return (void *)1;
        char back[2048];
        uLongf blen = sizeof back;
        int ok = uncompress((Bytef *)back, &blen, z, (uLong)zlen) == Z_OK && blen == (uLongf)n &&
                 memcmp(back, doc, (size_t)n) == 0;
        free(z);
        if (!ok)
            return (void *)2;
    }
    return NULL;
}

static void test_deflate_per_thread_zlib_stream(void **state)
{
    (void)state;
    pthread_t th[4];
    for (int t = 0; t < 4; t++)
        assert_int_equal(pthread_create(&th[t], NULL, deflate_many, (void *)(intptr_t)t), 0);
    for (int t = 0; t < 4; t++) {
        void *rc;
        assert_int_equal(pthread_join(th[t], &rc), 0);
        assert_null(rc);
    }
    /* nothing to compress is still a stream */
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate("", 0, &z, &zlen), 0);
    char *out = NULL;
    size_t outlen = 1;
    assert_int_equal(rk_inflate(z, zlen, 0, 16, 0, &out, &outlen), 0);
    assert_int_equal(outlen, 0);
    free(out);
    free(z);
}

static void test_inflate_gzip_round_trip(void **state)
{
    (void)state;
    char *doc = repeated('a', 100000);
    size_t glen;
    unsigned char *g = gzip_bytes(doc, 100000, &glen);
    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(rk_inflate(g, glen, 1, 200000, 0, &out, &outlen), 0);
    assert_int_equal(outlen, 100000);
    assert_memory_equal(out, doc, 100000);
    assert_int_equal(out[100000], '\0');
    free(out);
    /* gzip data is not zlib */
    out = NULL;
    assert_int_equal(rk_inflate(g, glen, 0, 200000, 0, &out, &outlen), RK_E_FORMAT);
    assert_null(out);
    free(g);
    free(doc);
}

static void test_inflate_size_cap(void **state)
{
    (void)state;
    const size_t n = 50000;
    char *doc = repeated('b', n);
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate(doc, n, &z, &zlen), 0);
    char *out = NULL;
    size_t outlen = 0;
    /* exactly at the cap: accepted */
    assert_int_equal(rk_inflate(z, zlen, 0, n, 0, &out, &outlen), 0);
    assert_int_equal(outlen, n);
    free(out);
    /* one byte under the output size: refused */
    out = NULL;
    assert_int_equal(rk_inflate(z, zlen, 0, n - 1, 0, &out, &outlen), RK_E_LIMIT);
    assert_null(out);
    free(z);
    free(doc);
}

static void test_inflate_ratio_cap(void **state)
{
    (void)state;
    const size_t n = 100000;
    char *doc = repeated('c', n);
    size_t glen;
    unsigned char *g = gzip_bytes(doc, n, &glen);
    assert_true(glen * 100 < n); /* a real bomb-like ratio */
    /* the smallest ratio that admits the document, and one below it */
    unsigned ok_ratio = (unsigned)((n + glen - 1) / glen);
    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(rk_inflate(g, glen, 1, 10 * n, ok_ratio, &out, &outlen), 0);
    assert_int_equal(outlen, n);
    free(out);
    out = NULL;
    assert_int_equal(rk_inflate(g, glen, 1, 10 * n, ok_ratio - 1, &out, &outlen),
                     RK_E_LIMIT);
    assert_null(out);
    /* ratio 0 means no ratio limit */
    assert_int_equal(rk_inflate(g, glen, 1, 10 * n, 0, &out, &outlen), 0);
    free(out);
    free(g);
    free(doc);
}

static void test_inflate_truncated(void **state)
{
    (void)state;
    const char *doc = "<Antrag><Name>Truncated stream test, long enough to matter</Name>"
                      "</Antrag>";
    size_t glen;
    unsigned char *g = gzip_bytes(doc, strlen(doc), &glen);
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate(doc, strlen(doc), &z, &zlen), 0);
    /* every proper prefix, including the one that lacks only the last
     * trailer byte, is refused as malformed */
    for (size_t cut = 0; cut < glen; cut++) {
        char *out = NULL;
        size_t outlen = 0;
        int rc = rk_inflate(g, cut, 1, 4096, 0, &out, &outlen);
        if (rc != RK_E_FORMAT)
            fail_msg("gzip cut at %zu of %zu: rc %d, expected RK_E_FORMAT", cut, glen, rc);
        assert_null(out);
    }
    for (size_t cut = 0; cut < zlen; cut++) {
        char *out = NULL;
        size_t outlen = 0;
        int rc = rk_inflate(z, cut, 0, 4096, 0, &out, &outlen);
        if (rc != RK_E_FORMAT)
            fail_msg("zlib cut at %zu of %zu: rc %d, expected RK_E_FORMAT", cut, zlen, rc);
    }
    free(z);
    free(g);
}

static void test_inflate_corrupt(void **state)
{
    (void)state;
    const char *doc = "<Antrag><Name>Corrupt</Name></Antrag>";
    size_t glen;
    unsigned char *g = gzip_bytes(doc, strlen(doc), &glen);
    char *out = NULL;
    size_t outlen = 0;
    /* wrong CRC32 in the trailer */
    g[glen - 8] ^= 0xff;
    assert_int_equal(rk_inflate(g, glen, 1, 4096, 0, &out, &outlen), RK_E_FORMAT);
    g[glen - 8] ^= 0xff;
    /* broken magic */
    g[0] = 0x00;
    assert_int_equal(rk_inflate(g, glen, 1, 4096, 0, &out, &outlen), RK_E_FORMAT);
    free(g);
    /* plain text is neither */
    const char *txt = "this is not compressed at all";
    assert_int_equal(rk_inflate(txt, strlen(txt), 0, 4096, 0, &out, &outlen), RK_E_FORMAT);
    assert_int_equal(rk_inflate(txt, strlen(txt), 1, 4096, 0, &out, &outlen), RK_E_FORMAT);
    assert_null(out);
}

/* ---- parsing ------------------------------------------------------------- */

static void test_parse_int64(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(rk_parse_int64("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(rk_parse_int64("-17", &v), 0);
    assert_int_equal(v, -17);
    assert_int_equal(rk_parse_int64("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(rk_parse_int64("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    v = 5;
    /* one past each end, junk, empty: refused and *out untouched */
    assert_int_equal(rk_parse_int64("9223372036854775808", &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64("-9223372036854775809", &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64("", &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64(NULL, &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64("12a", &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64("12 ", &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64("1.5", &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64("0x10", &v), RK_E_FORMAT);
    assert_int_equal(rk_parse_int64("-", &v), RK_E_FORMAT);
    assert_int_equal(v, 5);
}

static void test_parse_bool(void **state)
{
    (void)state;
    const char *yes[] = {"true", "TRUE", "yes", "Yes", "on", "1"};
    const char *no[] = {"false", "False", "no", "NO", "off", "0"};
    const char *bad[] = {"", "2", "y", "n", "truee", "yes ", " no", "-1"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_int_equal(rk_parse_bool(yes[i]), 1);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_int_equal(rk_parse_bool(no[i]), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (rk_parse_bool(bad[i]) != -1)
            fail_msg("rk_parse_bool(\"%s\") should be -1", bad[i]);
    assert_int_equal(rk_parse_bool(NULL), -1);
}

static void test_log_level_parse(void **state)
{
    (void)state;
    assert_int_equal(rk_log_level_parse("error"), RK_LOG_LVL_ERROR);
    assert_int_equal(rk_log_level_parse("warn"), RK_LOG_LVL_WARN);
    assert_int_equal(rk_log_level_parse("INFO"), RK_LOG_LVL_INFO);
    assert_int_equal(rk_log_level_parse("debug"), RK_LOG_LVL_DEBUG);
    assert_int_equal(rk_log_level_parse("warning"), -1);
    assert_int_equal(rk_log_level_parse(NULL), -1);
}

/* ---- hashing, time, randomness, errors ----------------------------------- */

static void test_sha256_known_vectors(void **state)
{
    (void)state;
    char hex[65];
    rk_sha256_hex("abc", 3, hex);
    assert_string_equal(hex,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    rk_sha256_hex("", 0, hex);
    assert_string_equal(hex,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_time_iso(void **state)
{
    (void)state;
    char out[25];
    rk_time_iso(0, out, sizeof out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    rk_time_iso(1700000000123LL, out, sizeof out);
    assert_string_equal(out, "2023-11-14T22:13:20.123Z");
    rk_time_iso(951782400007LL, out, sizeof out); /* leap day 2000 */
    assert_string_equal(out, "2000-02-29T00:00:00.007Z");
    assert_int_equal(strlen(out), 24);
    /* the same second again, the next one, and back: the kept second
     * never leaks into another */
    rk_time_iso(951782400999LL, out, sizeof out);
    assert_string_equal(out, "2000-02-29T00:00:00.999Z");
    rk_time_iso(951782401000LL, out, sizeof out);
    assert_string_equal(out, "2000-02-29T00:00:01.000Z");
    rk_time_iso(951782400500LL, out, sizeof out);
    assert_string_equal(out, "2000-02-29T00:00:00.500Z");
    /* now is after 2020 and formatted the same way */
    rk_time_iso(rk_now_ms(), out, sizeof out);
    assert_int_equal(strlen(out), 24);
    assert_int_equal(out[10], 'T');
    assert_int_equal(out[23], 'Z');
    assert_true(strncmp(out, "2020", 4) > 0);
    /* a short buffer gets the stamp cut, NUL-terminated */
    char small[11];
    memset(small, 'x', sizeof small);
    rk_time_iso(951782400007LL, small, sizeof small);
    assert_string_equal(small, "2000-02-29");
    rk_time_iso(951782400007LL, small, 0); /* no room: nothing written */
    assert_string_equal(small, "2000-02-29");
}

static void test_random_hex(void **state)
{
    (void)state;
    char a[33], b[33];
    assert_int_equal(rk_random_hex(16, a), 0);
    assert_int_equal(rk_random_hex(16, b), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    char big[200];
    assert_int_equal(rk_random_hex(65, big), RK_E_LIMIT);
}

/* Submission uids: 32 hex digits, ordered by their time, distinct within
 * one millisecond. */
static void test_uid_new(void **state)
{
    (void)state;
    char a[33], b[33], c[33];
    assert_int_equal(rk_uid_new(1767225600000LL, a), 0);
    assert_int_equal(rk_uid_new(1767225600000LL, b), 0);
    assert_int_equal(rk_uid_new(1767225600001LL, c), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_memory_equal(a, "019b76daa800", 12); /* 2026-01-01T00:00:00.000Z */
    assert_string_not_equal(a, b);
    assert_true(strcmp(a, c) < 0 && strcmp(b, c) < 0);
    char now[33];
    assert_int_equal(rk_uid_new(rk_now_ms(), now), 0);
    assert_true(strcmp(c, now) < 0);
    /* the random parts come from a pool refilled every 64 uids: 300 uids
     * of one millisecond (past four refills) are all distinct */
    enum { N = 300 };
    char (*many)[33] = calloc(N, 33);
    assert_non_null(many);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rk_uid_new(1767225600000LL, many[i]), 0);
        assert_int_equal(strspn(many[i], "0123456789abcdef"), 32);
        assert_memory_equal(many[i], "019b76daa800", 12);
    }
    qsort(many, N, 33, (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(many[i - 1], many[i]);
    free(many);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(rk_strerror(RK_E_LIMIT), "a configured limit was exceeded");
    assert_string_equal(rk_strerror(RK_E_STATE), "not allowed in this state");
    assert_string_equal(rk_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(rk_strerror(-99999), "unknown error");
}

/* ---- files --------------------------------------------------------------- */

static void test_read_file_limit(void **state)
{
    (void)state;
    char path[] = "/tmp/rk_util_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (char)('a' + i % 26);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    close(fd);

    char *out = NULL;
    size_t len = 0;
    assert_int_equal(rk_read_file(path, 100, &out, &len), 0);
    assert_int_equal(len, 100);
    assert_memory_equal(out, data, 100);
    assert_int_equal(out[100], '\0');
    free(out);
    out = NULL;
    assert_int_equal(rk_read_file(path, 99, &out, &len), RK_E_LIMIT);
    assert_null(out);
    unlink(path);
    assert_int_equal(rk_read_file(path, 100, &out, &len), -ENOENT);
    assert_null(out);
}

static void test_strndup(void **state)
{
    (void)state;
    char *p = rk_strndup("abcdef", 3);
    assert_string_equal(p, "abc");
    free(p);
    p = rk_strndup("x", 0);
    assert_string_equal(p, "");
    free(p);
}

/* stderr into a temporary file while fn runs; returns what was written
 * (static buffer). */
static const char *stderr_of(void (*fn)(void))
{
    static char out[4096];
    char path[] = "/tmp/rk_util_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, out, sizeof out - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return out;
}

static rk_buf held;

static void log_held_lines(void)
{
    rk_log_set_level(RK_LOG_LVL_INFO);
    rk_log_set_format(RK_LOG_FMT_PLAIN);
    rk_buf_init(&held, 1 << 16);
    rk_log_hold(&held);
    rk_info("test", "eins");
    rk_info("test", "zwei");
    assert_int_equal(lseek(2, 0, SEEK_END), 0); /* nothing written yet */
    rk_log_drop();
    rk_info("test", "drei");
    rk_log_flush();
    rk_log_hold(NULL);
    rk_info("test", "vier");
    rk_buf_free(&held);
    rk_log_set_level(RK_LOG_LVL_ERROR); /* as main set it */
}

/* rk_log_hold keeps a thread's lines until rk_log_flush writes them at
 * once; rk_log_drop forgets them; after rk_log_hold(NULL) lines go out
 * one by one again. */
static void test_log_hold(void **state)
{
    (void)state;
    const char *out = stderr_of(log_held_lines);
    assert_null(strstr(out, "eins"));
    assert_null(strstr(out, "zwei"));
    const char *drei = strstr(out, "INFO test: drei\n");
    const char *vier = strstr(out, "INFO test: vier\n");
    assert_non_null(drei);
    assert_non_null(vier);
    assert_true(drei < vier);
}

int main(void)
{
    rk_log_set_level(RK_LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_exactly_max_then_one_more),
        cmocka_unit_test(test_buf_over_max_in_one_step),
        cmocka_unit_test(test_buf_appendf),
        cmocka_unit_test(test_buf_take),
        cmocka_unit_test(test_inflate_zlib_round_trip),
        cmocka_unit_test(test_deflate_per_thread_zlib_stream),
        cmocka_unit_test(test_inflate_gzip_round_trip),
        cmocka_unit_test(test_inflate_size_cap),
        cmocka_unit_test(test_inflate_ratio_cap),
        cmocka_unit_test(test_inflate_truncated),
        cmocka_unit_test(test_inflate_corrupt),
        cmocka_unit_test(test_parse_int64),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_sha256_known_vectors),
        cmocka_unit_test(test_time_iso),
        cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_uid_new),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_read_file_limit),
        cmocka_unit_test(test_strndup),
        cmocka_unit_test(test_log_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
