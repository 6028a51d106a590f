/*
 * test_jose.c — agent/jose.c: base64url, RSA keys from JWK and PEM, JWE
 * decryption, PS512 signatures, FIT-Connect SET payloads, SHA-512 and the
 * callback HMAC.
 *
 * The JWE and JWS vectors in tests/data/jose were made by jwcrypto, an
 * independent implementation (tests/data/jose/make_vectors.py), so a
 * passing test means interoperability, not just agreement with ourselves.
 * Tampered variants are derived from those vectors here.  Runs from the
 * repository root, like every unit test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jose.h"
#include "util.h"

#define DIR "tests/data/jose/"
#define MAXP (1024 * 1024)

/* ---- helpers ----------------------------------------------------------- */

/* Reads a vector file; trailing newlines are cut (the .txt files end
 * with one).  Caller frees. */
static char *slurp(const char *name, size_t *len)
{
    char path[256];
    char *s = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, DIR "%s", name);
    int rc = rk_read_file(path, 4 * 1024 * 1024, &s, &n);
    if (rc != 0)
        fail_msg("cannot read %s: %s", path, rk_strerror(rc));
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    if (len)
        *len = n;
    return s;
}

/* Reads a binary file exactly (no newline cut). */
static char *slurp_bin(const char *name, size_t *len)
{
    char path[256];
    char *s = NULL;
    snprintf(path, sizeof path, DIR "%s", name);
    int rc = rk_read_file(path, 4 * 1024 * 1024, &s, len);
    if (rc != 0)
        fail_msg("cannot read %s: %s", path, rk_strerror(rc));
    return s;
}

/* Loading a private JWK runs OpenSSL's pairwise check (primality tests
 * included, about 0.3 s for 4096 bits), so each key is loaded once and
 * shared; release() is a no-op and the group teardown frees them. */
static struct { char name[64]; int want; rk_jose_key *k; } cache[16];

static rk_jose_key *load(const char *name, int want)
{
    char path[256], err[256];
    rk_jose_key *k = NULL;
    for (int i = 0; i < 16 && cache[i].k; i++)
        if (cache[i].want == want && strcmp(cache[i].name, name) == 0)
            return cache[i].k;
    snprintf(path, sizeof path, DIR "%s", name);
    int rc = rk_jose_key_load(path, want, &k, err, sizeof err);
    if (rc != 0)
        fail_msg("loading %s: %d %s", name, rc, err);
    for (int i = 0; i < 16; i++)
        if (!cache[i].k) {
            snprintf(cache[i].name, sizeof cache[i].name, "%s", name);
            cache[i].want = want;
            cache[i].k = k;
            break;
        }
    return k;
}

static void release(rk_jose_key *k)
{
    (void)k;
}

static int teardown_keys(void **state)
{
    (void)state;
    for (int i = 0; i < 16; i++) {
        rk_jose_key_free(cache[i].k);
        cache[i].k = NULL;
    }
    return 0;
}

static json_t *load_json(const char *name)
{
    char path[256];
    json_error_t e;
    snprintf(path, sizeof path, DIR "%s", name);
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: %s", path, e.text);
    return j;
}

/* Index of the k-th dot of s (k from 1). */
static size_t nth_dot(const char *s, int k)
{
    const char *p = s;
    for (int i = 0; i < k; i++) {
        p = strchr(i ? p + 1 : p, '.');
        assert_non_null(p);
    }
    return (size_t)(p - s);
}

/* A copy of the compact JWE/JWS s with part idx (0-based) replaced. */
static char *replace_part(const char *s, int idx, const char *with)
{
    rk_buf b;
    rk_buf_init(&b, 16 * 1024 * 1024);
    const char *p = s;
    for (int i = 0; ; i++) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (i)
            rk_buf_append(&b, ".", 1);
        if (i == idx)
            rk_buf_append(&b, with, strlen(with));
        else
            rk_buf_append(&b, p, n);
        if (!dot)
            break;
        p = dot + 1;
    }
    return rk_buf_take(&b);
}

/* A copy of part idx of s. */
static char *get_part(const char *s, int idx)
{
    const char *p = s;
    for (int i = 0; i < idx; i++) {
        p = strchr(p, '.');
        assert_non_null(p);
        p++;
    }
    const char *dot = strchr(p, '.');
    return rk_strndup(p, dot ? (size_t)(dot - p) : strlen(p));
}

/* base64url of a string (new). */
static char *b64(const char *s)
{
    size_t n = strlen(s), m = rk_b64url_enclen(n);
    char *o = malloc(m + 1);
    assert_int_equal(rk_b64url_encode(s, n, o, m + 1), 0);
    return o;
}

/* Flips the lowest bit of byte i of the base64url part idx of s. */
static char *flip_in_part(const char *s, int idx, size_t i)
{
    char *part = get_part(s, idx);
    unsigned char *raw = NULL;
    size_t n = 0;
    assert_int_equal(rk_b64url_decode_alloc(part, strlen(part), MAXP, &raw, &n), 0);
    assert_true(i < n);
    raw[i] ^= 1;
    char *enc = malloc(rk_b64url_enclen(n) + 1);
    assert_int_equal(rk_b64url_encode(raw, n, enc, rk_b64url_enclen(n) + 1), 0);
    char *out = replace_part(s, idx, enc);
    free(enc);
    free(raw);
    free(part);
    return out;
}

static int decrypt_str(const rk_jose_key *k, const char *jwe, rk_jwe_result *r, char *err,
                       size_t errlen)
{
    return rk_jwe_decrypt(k, jwe, strlen(jwe), MAXP, r, err, errlen);
}

/* ---- base64url -------------------------------------------------------- */

static void test_b64url_rfc4648(void **state)
{
    (void)state;
    /* RFC 4648 §10 vectors, without the padding base64url leaves off */
    static const char *const in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const out[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
    for (int i = 0; i < 7; i++) {
        char enc[16];
        unsigned char dec[16];
        size_t n = 99;
        assert_int_equal(rk_b64url_enclen(strlen(in[i])), strlen(out[i]));
        assert_int_equal(rk_b64url_encode(in[i], strlen(in[i]), enc, sizeof enc), 0);
        assert_string_equal(enc, out[i]);
        assert_int_equal(rk_b64url_decode(out[i], strlen(out[i]), dec, sizeof dec, &n), 0);
        assert_int_equal(n, strlen(in[i]));
        assert_memory_equal(dec, in[i], n);
    }
    /* the two URL-safe characters: standard base64 would say "+/8=" */
    static const unsigned char fb[] = { 0xfb, 0xff };
    char enc[8];
    assert_int_equal(rk_b64url_encode(fb, 2, enc, sizeof enc), 0);
    assert_string_equal(enc, "-_8");
    unsigned char dec[4];
    size_t n = 0;
    assert_int_equal(rk_b64url_decode("-_8", 3, dec, sizeof dec, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(dec, fb, 2);
    /* all 256 byte values survive a round trip */
    unsigned char all[256], back[256];
    char e[400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    assert_int_equal(rk_b64url_encode(all, 256, e, sizeof e), 0);
    assert_int_equal(strlen(e), 342);
    assert_null(strpbrk(e, "+/="));
    assert_int_equal(rk_b64url_decode(e, strlen(e), back, sizeof back, &n), 0);
    assert_int_equal(n, 256);
    assert_memory_equal(all, back, 256);
}

static void test_b64url_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg==",     /* padding */
        "Zm9v+A",   /* standard-alphabet '+' */
        "Zm9/",     /* standard-alphabet '/' */
        "Zm 9v",    /* whitespace */
        "Zm9v\n",   /* newline */
        "Z",        /* impossible length (n % 4 == 1) */
        "Zm9vY",    /* impossible length */
        "Zh",       /* leftover bits not zero ("f" is "Zg") */
        "Zm9",      /* leftover bits not zero ("fo" is "Zm8") */
        "Zm9v.A",   /* a dot */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        unsigned char out[16];
        size_t n = 0;
        int rc = rk_b64url_decode(bad[i], strlen(bad[i]), out, sizeof out, &n);
        if (rc != RK_E_FORMAT)
            fail_msg("\"%s\" gave %d, expected RK_E_FORMAT", bad[i], rc);
    }
    /* an embedded NUL is an invalid character too */
    unsigned char out[8];
    size_t n = 0;
    assert_int_equal(rk_b64url_decode("Zm\0v", 4, out, sizeof out, &n), RK_E_FORMAT);
}

static void test_b64url_bounds(void **state)
{
    (void)state;
    char enc[8];
    unsigned char dec[6];
    size_t n = 0;
    /* "foobar" needs 8 characters plus the NUL: 8 is one short */
    assert_int_equal(rk_b64url_encode("foobar", 6, enc, 8), RK_E_LIMIT);
    char enc9[9];
    assert_int_equal(rk_b64url_encode("foobar", 6, enc9, 9), 0);
    /* decoding into exactly 6 bytes works, into 5 does not */
    assert_int_equal(rk_b64url_decode("Zm9vYmFy", 8, dec, 6, &n), 0);
    assert_int_equal(n, 6);
    assert_int_equal(rk_b64url_decode("Zm9vYmFy", 8, dec, 5, &n), RK_E_LIMIT);
    unsigned char *p = NULL;
    assert_int_equal(rk_b64url_decode_alloc("Zm9vYmFy", 8, 5, &p, &n), RK_E_LIMIT);
    assert_null(p);
    assert_int_equal(rk_b64url_decode_alloc("Zm9vYmFy", 8, 6, &p, &n), 0);
    assert_int_equal(n, 6);
    assert_string_equal((char *)p, "foobar"); /* NUL-terminated */
    free(p);
    assert_int_equal(rk_b64url_decode_alloc("Zm9v*mFy", 8, 6, &p, &n), RK_E_FORMAT);
    assert_null(p);
}

/* ---- keys ------------------------------------------------------------- */

static void test_key_jwk(void **state)
{
    (void)state;
    rk_jose_key *k = load("key-enc.jwk.json", RK_JOSE_KEY_PRIVATE);
    assert_int_equal(rk_jose_key_bits(k), 4096);
    assert_int_equal(rk_jose_key_is_private(k), 1);
    assert_string_equal(rk_jose_key_kid(k), "rk-test-enc");
    assert_string_equal(rk_jose_key_alg(k), "RSA-OAEP-256");
    /* the public half we export is the one jwcrypto exported */
    json_t *pub = NULL, *want = load_json("key-enc.pub.jwk.json");
    assert_int_equal(rk_jose_key_public_jwk(k, &pub), 0);
    assert_string_equal(json_string_value(json_object_get(pub, "kty")), "RSA");
    assert_string_equal(json_string_value(json_object_get(pub, "n")),
                        json_string_value(json_object_get(want, "n")));
    assert_string_equal(json_string_value(json_object_get(pub, "e")),
                        json_string_value(json_object_get(want, "e")));
    assert_string_equal(json_string_value(json_object_get(pub, "kid")), "rk-test-enc");
    assert_null(json_object_get(pub, "d"));
    assert_null(json_object_get(pub, "p"));
    json_decref(pub);
    json_decref(want);
    release(k);

    /* a private JWK may be loaded for its public half only */
    k = load("key-sig.jwk.json", RK_JOSE_KEY_PUBLIC);
    assert_int_equal(rk_jose_key_is_private(k), 0);
    assert_string_equal(rk_jose_key_alg(k), "PS512");
    release(k);
    k = load("key-sig.pub.jwk.json", RK_JOSE_KEY_PUBLIC);
    assert_int_equal(rk_jose_key_is_private(k), 0);
    assert_int_equal(rk_jose_key_bits(k), 4096);
    release(k);
}

static void test_key_pem(void **state)
{
    (void)state;
    static const char *const privs[] = { "key-enc.pem", "key-enc-pkcs1.pem" };
    size_t plen = 0, jlen = 0;
    char *plain = slurp_bin("plain-xml.bin", &plen);
    char *jwe = slurp("jwe-xml.txt", &jlen);
    for (int i = 0; i < 2; i++) {
        rk_jose_key *k = load(privs[i], RK_JOSE_KEY_PRIVATE);
        assert_int_equal(rk_jose_key_is_private(k), 1);
        assert_null(rk_jose_key_kid(k));
        assert_null(rk_jose_key_alg(k));
        rk_jwe_result r;
        char err[256];
        assert_int_equal(rk_jwe_decrypt(k, jwe, jlen, MAXP, &r, err, sizeof err), 0);
        assert_int_equal(r.len, plen);
        assert_memory_equal(r.plaintext, plain, plen);
        rk_jwe_result_free(&r);
        release(k);
    }
    /* the private PEM as a public key keeps only the public half */
    rk_jose_key *k = load("key-enc.pem", RK_JOSE_KEY_PUBLIC);
    assert_int_equal(rk_jose_key_is_private(k), 0);
    rk_jwe_result r;
    char err[256];
    assert_int_equal(rk_jwe_decrypt(k, jwe, jlen, MAXP, &r, err, sizeof err), RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "private key is needed"));
    release(k);
    k = load("key-enc.pub.pem", RK_JOSE_KEY_PUBLIC);
    assert_int_equal(rk_jose_key_is_private(k), 0);
    assert_int_equal(rk_jose_key_bits(k), 4096);
    release(k);
    k = NULL;
    assert_int_equal(rk_jose_key_load(DIR "key-enc.pub.pem", RK_JOSE_KEY_PRIVATE, &k, err,
                                      sizeof err), RK_JOSE_E_KEY);
    assert_null(k);
    assert_non_null(strstr(err, "no RSA private key"));
    free(plain);
    free(jwe);
}

static void test_key_refusals(void **state)
{
    (void)state;
    char err[256];
    rk_jose_key *k = NULL;

    assert_int_equal(rk_jose_key_load(DIR "key-small.jwk.json", RK_JOSE_KEY_PRIVATE, &k, err,
                                      sizeof err), RK_JOSE_E_KEY);
    assert_null(k);
    assert_non_null(strstr(err, "1024 bits"));

    assert_int_equal(rk_jose_key_load(DIR "key-bad-crt.jwk.json", RK_JOSE_KEY_PRIVATE, &k,
                                      err, sizeof err), RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "inconsistent"));
    /* no key material in the message */
    json_t *bad = load_json("key-bad-crt.jwk.json");
    char frag[17];
    snprintf(frag, sizeof frag, "%s", json_string_value(json_object_get(bad, "d")));
    assert_null(strstr(err, frag));
    json_decref(bad);

    assert_int_equal(rk_jose_key_load(DIR "key-enc.pub.jwk.json", RK_JOSE_KEY_PRIVATE, &k,
                                      err, sizeof err), RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "no private part"));

    assert_int_equal(rk_jose_key_load(DIR "key-enc-encrypted.pem", RK_JOSE_KEY_PRIVATE, &k,
                                      err, sizeof err), RK_JOSE_E_UNSUPPORTED);
    assert_non_null(strstr(err, "encrypted PEM"));

    assert_int_equal(rk_jose_key_load(DIR "does-not-exist.json", RK_JOSE_KEY_PRIVATE, &k, err,
                                      sizeof err), RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "does-not-exist.json"));

    json_t *ec = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", "AA",
                           "y", "AA");
    assert_int_equal(rk_jose_key_from_jwk(ec, RK_JOSE_KEY_PUBLIC, &k, err, sizeof err),
                     RK_JOSE_E_UNSUPPORTED);
    assert_non_null(strstr(err, "kty \"EC\""));
    json_decref(ec);

    /* a private JWK with one CRT member missing */
    json_t *j = load_json("key-enc.jwk.json");
    json_object_del(j, "dq");
    assert_int_equal(rk_jose_key_from_jwk(j, RK_JOSE_KEY_PRIVATE, &k, err, sizeof err),
                     RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "lacks dq"));
    /* n that is not base64url */
    json_object_set_new(j, "n", json_string("not base64!"));
    assert_int_equal(rk_jose_key_from_jwk(j, RK_JOSE_KEY_PUBLIC, &k, err, sizeof err),
                     RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "member n"));
    json_decref(j);
    assert_null(k);

    /* not JSON, not PEM; and a file over the 64 KiB limit */
    char path[] = "/tmp/rk-jose-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{ nope", 6), 6);
    close(fd);
    assert_int_equal(rk_jose_key_load(path, RK_JOSE_KEY_PRIVATE, &k, err, sizeof err),
                     RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "not valid JSON"));
    FILE *f = fopen(path, "w");
    for (int i = 0; i < RK_JOSE_MAX_KEY_FILE + 1; i++)
        fputc('A', f);
    fclose(f);
    assert_int_equal(rk_jose_key_load(path, RK_JOSE_KEY_PRIVATE, &k, err, sizeof err),
                     RK_E_LIMIT);
    unlink(path);
    assert_null(k);
}

/* ---- JWE -------------------------------------------------------------- */

/* Every vector jwcrypto made decrypts to the committed plaintext, with
 * the kid, cty and tag of the compact serialisation. */
static void test_jwe_jwcrypto_vectors(void **state)
{
    (void)state;
    static const struct { const char *jwe, *plain, *kid, *cty; } v[] = {
        { "jwe-json.txt", "plain-json.bin", "rk-test-enc", "application/json" },
        { "jwe-xml.txt", "plain-xml.bin", "rk-test-enc", "application/xml" },
        { "jwe-binary.txt", "plain-binary.bin", "rk-test-enc", "" },
        { "jwe-empty.txt", NULL, "rk-test-enc", "" },
        { "jwe-nokid.txt", "plain-xml.bin", "", "" },
    };
    rk_jose_key *k = load("key-enc.jwk.json", RK_JOSE_KEY_PRIVATE);
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        size_t jl = 0, pl = 0;
        char *jwe = slurp(v[i].jwe, &jl);
        char *plain = v[i].plain ? slurp_bin(v[i].plain, &pl) : NULL;
        char *tag = get_part(jwe, 4);
        rk_jwe_result r;
        char err[256] = "untouched";
        int rc = rk_jwe_decrypt(k, jwe, jl, MAXP, &r, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: %d %s", v[i].jwe, rc, err);
        assert_string_equal(err, "");
        assert_int_equal(r.len, pl);
        if (pl)
            assert_memory_equal(r.plaintext, plain, pl);
        assert_int_equal(r.plaintext[r.len], '\0');
        assert_string_equal(r.kid, v[i].kid);
        assert_string_equal(r.cty, v[i].cty);
        assert_string_equal(r.tag, tag);
        assert_int_equal(strlen(r.tag), RK_JOSE_TAG_B64_LEN);
        rk_jwe_result_free(&r);
        assert_null(r.plaintext);

        char kid[256], t[32];
        assert_int_equal(rk_jwe_peek(jwe, jl, kid, sizeof kid, t, sizeof t, err, sizeof err), 0);
        assert_string_equal(kid, v[i].kid);
        assert_string_equal(t, tag);
        free(tag);
        free(plain);
        free(jwe);
    }
    release(k);
}

static void test_jwe_max_plain(void **state)
{
    (void)state;
    size_t jl = 0, pl = 0;
    char *jwe = slurp("jwe-binary.txt", &jl);
    char *plain = slurp_bin("plain-binary.bin", &pl);
    rk_jose_key *k = load("key-enc.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jwe_result r;
    char err[256];
    assert_int_equal(rk_jwe_decrypt(k, jwe, jl, pl - 1, &r, err, sizeof err), RK_E_LIMIT);
    assert_null(r.plaintext);
    assert_non_null(strstr(err, "exceeds the limit"));
    assert_int_equal(rk_jwe_decrypt(k, jwe, jl, pl, &r, err, sizeof err), 0);
    assert_int_equal(r.len, pl);
    rk_jwe_result_free(&r);
    release(k);
    free(plain);
    free(jwe);
}

/* Flipped tag, ciphertext, IV, encrypted key or header, and the wrong key:
 * all the same refusal, so an attacker cannot tell which one it was. */
static void test_jwe_tampered(void **state)
{
    (void)state;
    char *jwe = slurp("jwe-json.txt", NULL);
    rk_jose_key *k = load("key-enc.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jose_key *other = load("key-other.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jwe_result r;
    char err[256], first[256] = "";
    const char *what[] = { "tag", "ciphertext", "iv", "encrypted key", "header kid",
                           "wrong key" };
    for (int i = 0; i < 6; i++) {
        char *t = NULL;
        const rk_jose_key *use = k;
        switch (i) {
        case 0: t = flip_in_part(jwe, 4, 15); break;
        case 1: t = flip_in_part(jwe, 3, 0); break;
        case 2: t = flip_in_part(jwe, 2, 5); break;
        case 3: t = flip_in_part(jwe, 1, 100); break;
        case 4: {
            /* same algorithms, other kid: only the AAD catches it */
            char *h = b64("{\"alg\":\"RSA-OAEP-256\",\"enc\":\"A256GCM\",\"kid\":\"evil\"}");
            t = replace_part(jwe, 0, h);
            free(h);
            break;
        }
        default: t = strdup(jwe); use = other; break;
        }
        int rc = decrypt_str(use, t, &r, err, sizeof err);
        if (rc != RK_JOSE_E_DECRYPT)
            fail_msg("%s: got %d (%s)", what[i], rc, err);
        assert_null(r.plaintext);
        assert_string_equal(r.tag, "");
        if (!first[0])
            snprintf(first, sizeof first, "%s", err);
        assert_string_equal(err, first);
        free(t);
    }
    assert_non_null(strstr(first, "wrong key, or the message was altered"));
    release(other);
    release(k);
    free(jwe);
}

static void test_jwe_refused_algorithms(void **state)
{
    (void)state;
    static const struct { const char *file, *msg; } v[] = {
        { "jwe-a128cbc.txt", "enc \"A128CBC-HS256\" is not supported (only A256GCM)" },
        { "jwe-rsa-oaep.txt", "alg \"RSA-OAEP\" is not supported (only RSA-OAEP-256)" },
        { "jwe-zip.txt", "zip \"DEF\" is not supported" },
    };
    rk_jose_key *k = load("key-enc.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jwe_result r;
    char err[256];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        char *jwe = slurp(v[i].file, NULL);
        assert_int_equal(decrypt_str(k, jwe, &r, err, sizeof err), RK_JOSE_E_UNSUPPORTED);
        assert_string_equal(err, v[i].msg);
        assert_null(r.plaintext);
        free(jwe);
    }
    /* headers made here on a valid JWE: alg none, crit, a hostile value */
    char *jwe = slurp("jwe-xml.txt", NULL);
    static const struct { const char *hdr; int rc; const char *msg; } h[] = {
        { "{\"alg\":\"none\",\"enc\":\"A256GCM\"}", RK_JOSE_E_UNSUPPORTED,
          "alg \"none\" is not supported (only RSA-OAEP-256)" },
        { "{\"alg\":\"dir\",\"enc\":\"A256GCM\"}", RK_JOSE_E_UNSUPPORTED,
          "alg \"dir\" is not supported (only RSA-OAEP-256)" },
        { "{\"alg\":\"RSA-OAEP-256\",\"enc\":\"A256GCM\",\"crit\":[\"exp\"],\"exp\":1}",
          RK_JOSE_E_UNSUPPORTED, "protected header has crit: no critical extensions are supported" },
        { "{\"enc\":\"A256GCM\"}", RK_E_FORMAT, "protected header has no alg" },
        { "{\"alg\":7,\"enc\":\"A256GCM\"}", RK_E_FORMAT,
          "protected header member alg is not a string" },
        { "{\"alg\":\"RSA-OAEP-256\",\"alg\":\"none\",\"enc\":\"A256GCM\"}", RK_E_FORMAT,
          "protected header is not a JSON object (or repeats a member)" },
        { "[1,2]", RK_E_FORMAT, "protected header is not a JSON object (or repeats a member)" },
        { "{\"alg\":\"RSA-OAEP-256\",\"enc\":\"A256GCM\",\"kid\":5}", RK_E_FORMAT,
          "protected header member kid must be a string shorter than 256 bytes" },
        { "{\"alg\":\"\\u001b[31mevil-and-very-long-algorithm-name-to-be-cut-off-here\","
          "\"enc\":\"A256GCM\"}", RK_JOSE_E_UNSUPPORTED,
          "alg \"?[31mevil-and-very-long-algorithm-name-t...\" is not supported (only RSA-OAEP-256)" },
    };
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) {
        char *e = b64(h[i].hdr);
        char *t = replace_part(jwe, 0, e);
        int rc = decrypt_str(k, t, &r, err, sizeof err);
        if (rc != h[i].rc)
            fail_msg("header %s: got %d (%s)", h[i].hdr, rc, err);
        assert_string_equal(err, h[i].msg);
        free(t);
        free(e);
    }
    free(jwe);
    release(k);
}

static void test_jwe_truncated(void **state)
{
    (void)state;
    size_t jl = 0;
    char *jwe = slurp("jwe-xml.txt", &jl);
    rk_jose_key *k = load("key-enc.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jwe_result r;
    char err[256];

    /* four parts (tag dropped), six parts, empty */
    size_t d4 = nth_dot(jwe, 4);
    assert_int_equal(rk_jwe_decrypt(k, jwe, d4, MAXP, &r, err, sizeof err), RK_E_FORMAT);
    assert_non_null(strstr(err, "five base64url parts"));
    char *six = malloc(jl + 3);
    snprintf(six, jl + 3, "%s.A", jwe);
    assert_int_equal(decrypt_str(k, six, &r, err, sizeof err), RK_E_FORMAT);
    free(six);
    assert_int_equal(rk_jwe_decrypt(k, "", 0, MAXP, &r, err, sizeof err), RK_E_FORMAT);

    /* a short tag and a short IV are named */
    char *t = replace_part(jwe, 4, "AAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(decrypt_str(k, t, &r, err, sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "JWE authentication tag must be 16 bytes");
    free(t);
    t = replace_part(jwe, 2, "AAAAAAAAAAAA"); /* 9 bytes */
    assert_int_equal(decrypt_str(k, t, &r, err, sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "JWE initialization vector must be 12 bytes");
    free(t);
    t = replace_part(jwe, 1, "");
    assert_int_equal(decrypt_str(k, t, &r, err, sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "JWE encrypted key is missing or malformed");
    free(t);

    /* every prefix of the JWE is refused; none decrypts, none crashes */
    for (size_t n = 0; n < jl; n++) {
        int rc = rk_jwe_decrypt(k, jwe, n, MAXP, &r, err, sizeof err);
        if (rc >= 0)
            fail_msg("prefix of %zu bytes decrypted", n);
        assert_null(r.plaintext);
    }
    /* an embedded NUL is not part of a compact JWE */
    char *nul = strdup(jwe);
    nul[10] = '\0';
    assert_int_equal(rk_jwe_decrypt(k, nul, jl, MAXP, &r, err, sizeof err), RK_E_FORMAT);
    free(nul);
    release(k);
    free(jwe);
}

static void test_jwe_key_misuse(void **state)
{
    (void)state;
    char *jwe = slurp("jwe-xml.txt", NULL);
    rk_jose_key *sig = load("key-sig.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jwe_result r;
    char err[256];
    assert_int_equal(decrypt_str(sig, jwe, &r, err, sizeof err), RK_JOSE_E_KEY);
    assert_string_equal(err, "key rk-test-sig is for alg PS512, not RSA-OAEP-256");
    release(sig);
    rk_jose_key *pub = load("key-enc.pub.jwk.json", RK_JOSE_KEY_PUBLIC);
    assert_int_equal(decrypt_str(pub, jwe, &r, err, sizeof err), RK_JOSE_E_KEY);
    release(pub);
    free(jwe);
}

/* ---- JWS PS512 ---------------------------------------------------------- */

static void test_jws_roundtrip(void **state)
{
    (void)state;
    rk_jose_key *k = load("key-sig.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jose_key *pub = load("key-sig.pub.jwk.json", RK_JOSE_KEY_PUBLIC);
    json_t *hdr = json_pack("{s:s, s:s}", "typ", "secevent+jwt", "kid", "rk-test-sig");
    json_t *pl = json_pack("{s:s, s:i, s:s}", "iss", "Übersee", "iat", 1767225600, "x", "/");
    char *a = NULL, *b = NULL, err[256];
    assert_int_equal(rk_jws_sign_ps512(k, hdr, pl, &a, err, sizeof err), 0);
    assert_int_equal(rk_jws_sign_ps512(k, hdr, pl, &b, err, sizeof err), 0);
    /* the caller's header is not changed */
    assert_null(json_object_get(hdr, "alg"));
    /* PSS is randomised: same input, different signatures, both valid */
    assert_string_not_equal(a, b);
    char *sa = get_part(a, 2);
    assert_int_equal(strlen(sa), rk_b64url_enclen(512));
    free(sa);
    for (int i = 0; i < 2; i++) {
        json_t *h = NULL, *p = NULL;
        const char *s = i ? b : a;
        assert_int_equal(rk_jws_verify_ps512(pub, s, strlen(s), 65536, &h, &p, err, sizeof err), 0);
        assert_string_equal(json_string_value(json_object_get(h, "alg")), "PS512");
        assert_string_equal(json_string_value(json_object_get(h, "typ")), "secevent+jwt");
        assert_string_equal(json_string_value(json_object_get(h, "kid")), "rk-test-sig");
        assert_int_equal(json_object_size(h), 3);
        assert_true(json_equal(p, pl));
        json_decref(h);
        json_decref(p);
    }
    /* the private key verifies too; header and payload out-params may be NULL */
    assert_int_equal(rk_jws_verify_ps512(k, a, strlen(a), 65536, NULL, NULL, err, sizeof err), 0);
    free(a);
    free(b);
    json_decref(hdr);
    json_decref(pl);
    release(pub);
    release(k);
}

static void test_jws_jwcrypto_vector(void **state)
{
    (void)state;
    size_t n = 0;
    char *jws = slurp("jws-ps512.txt", &n);
    json_t *want = load_json("jws-payload.json");
    rk_jose_key *pub = load("key-sig.pub.jwk.json", RK_JOSE_KEY_PUBLIC);
    json_t *h = NULL, *p = NULL;
    char err[256];
    assert_int_equal(rk_jws_verify_ps512(pub, jws, n, 65536, &h, &p, err, sizeof err), 0);
    assert_true(json_equal(p, want));
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "rk-test-sig");
    json_decref(h);
    json_decref(p);
    /* one byte short of the limit is too small; exactly the length is enough */
    assert_int_equal(rk_jws_verify_ps512(pub, jws, n, n - 1, NULL, NULL, err, sizeof err),
                     RK_E_LIMIT);
    assert_int_equal(rk_jws_verify_ps512(pub, jws, n, n, NULL, NULL, err, sizeof err), 0);
    json_decref(want);
    release(pub);
    free(jws);
}

static void test_jws_tampered(void **state)
{
    (void)state;
    char *jws = slurp("jws-ps512.txt", NULL);
    rk_jose_key *pub = load("key-sig.pub.jwk.json", RK_JOSE_KEY_PUBLIC);
    char err[256];
    json_t *p = (json_t *)1;

    /* a payload that says reject instead of accept */
    char *pl = slurp("jws-payload.json", NULL);
    char *at = strstr(pl, "accept-submission");
    assert_non_null(at);
    memcpy(at, "reject", 6);
    char *e = b64(pl);
    char *t = replace_part(jws, 1, e);
    assert_int_equal(rk_jws_verify_ps512(pub, t, strlen(t), 65536, NULL, &p, err, sizeof err),
                     RK_JOSE_E_SIGNATURE);
    assert_null(p);
    assert_string_equal(err, "JWS signature does not verify");
    free(t);
    free(e);
    free(pl);

    /* one flipped signature bit; a truncated signature */
    t = flip_in_part(jws, 2, 200);
    assert_int_equal(rk_jws_verify_ps512(pub, t, strlen(t), 65536, NULL, NULL, err, sizeof err),
                     RK_JOSE_E_SIGNATURE);
    free(t);
    t = strdup(jws);
    t[strlen(t) - 4] = '\0';
    assert_int_equal(rk_jws_verify_ps512(pub, t, strlen(t), 65536, NULL, NULL, err, sizeof err),
                     RK_JOSE_E_SIGNATURE);
    free(t);

    /* another key of the same size */
    rk_jose_key *other = load("key-enc.pub.pem", RK_JOSE_KEY_PUBLIC);
    assert_int_equal(rk_jws_verify_ps512(other, jws, strlen(jws), 65536, NULL, NULL, err,
                                         sizeof err), RK_JOSE_E_SIGNATURE);
    release(other);

    /* RS512 (made by jwcrypto with the right key) and forged headers */
    char *rs = slurp("jws-rs512.txt", NULL);
    assert_int_equal(rk_jws_verify_ps512(pub, rs, strlen(rs), 65536, NULL, NULL, err,
                                         sizeof err), RK_JOSE_E_UNSUPPORTED);
    assert_string_equal(err, "alg \"RS512\" is not supported (only PS512)");
    free(rs);
    static const char *const hdrs[] = { "{\"alg\":\"none\"}", "{\"alg\":\"HS512\"}" };
    static const char *const msgs[] = { "alg \"none\" is not supported (only PS512)",
                                        "alg \"HS512\" is not supported (only PS512)" };
    for (int i = 0; i < 2; i++) {
        e = b64(hdrs[i]);
        t = replace_part(jws, 0, e);
        char *unsigned_ = replace_part(t, 2, "");
        assert_int_equal(rk_jws_verify_ps512(pub, unsigned_, strlen(unsigned_), 65536, NULL,
                                             NULL, err, sizeof err), RK_JOSE_E_UNSUPPORTED);
        assert_string_equal(err, msgs[i]);
        free(unsigned_);
        free(t);
        free(e);
    }
    /* shape */
    size_t d2 = nth_dot(jws, 2);
    assert_int_equal(rk_jws_verify_ps512(pub, jws, d2, 65536, NULL, NULL, err, sizeof err),
                     RK_E_FORMAT);
    release(pub);
    free(jws);
}

static void test_jws_sign_refusals(void **state)
{
    (void)state;
    rk_jose_key *k = load("key-sig.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jose_key *pub = load("key-sig.pub.jwk.json", RK_JOSE_KEY_PUBLIC);
    rk_jose_key *enc = load("key-enc.jwk.json", RK_JOSE_KEY_PRIVATE);
    json_t *pl = json_pack("{s:s}", "a", "b");
    json_t *rs = json_pack("{s:s}", "alg", "RS256");
    json_t *ok = json_object();
    char *out = NULL, err[256];
    assert_int_equal(rk_jws_sign_ps512(k, rs, pl, &out, err, sizeof err), RK_JOSE_E_UNSUPPORTED);
    assert_string_equal(err, "alg \"RS256\" is not supported (only PS512)");
    assert_int_equal(rk_jws_sign_ps512(pub, ok, pl, &out, err, sizeof err), RK_JOSE_E_KEY);
    assert_string_equal(err, "a private key is needed for PS512");
    assert_int_equal(rk_jws_sign_ps512(enc, ok, pl, &out, err, sizeof err), RK_JOSE_E_KEY);
    assert_string_equal(err, "key rk-test-enc is for alg RSA-OAEP-256, not PS512");
    assert_null(out);
    json_decref(ok);
    json_decref(rs);
    json_decref(pl);
    release(enc);
    release(pub);
    release(k);
}

/* ---- SET payloads ------------------------------------------------------- */

#define DEST "879ee109-a690-4db8-ab32-424284184d7d"
#define SUB "f39ab143-d91a-474a-b69f-b00f1a1873c2"
#define CASE "9eec7d3e-dc66-4f82-9f52-1520bf96a32e"
#define ATT1 "0b799252-deb9-42b0-98d3-c50d24bbafe0"
#define ATT2 "25abf553-0e53-43b9-a14a-1581b32a9ee5"
#define TAGM "XFBoMYUZodetZdvTiFvSkQ"
#define TAGD "UCGiqJxhBI3IFVdPalHHvA"
#define TAG1 "rT99rwrBTbTI7IJM8fU3Eg"
#define TAG2 "i7226HEB7IchCxNuh7lCiQ"

static const rk_set_ids IDS = { DEST, SUB, CASE };

static const char *jstr(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v))
        fail_msg("member %s is not a string", k);
    return json_string_value(v);
}

static void assert_uuid4(const char *s)
{
    assert_int_equal(strlen(s), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(s[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", s[i]));
    }
    assert_int_equal(s[14], '4');                 /* version 4 */
    assert_non_null(strchr("89ab", s[19]));       /* RFC 4122 variant */
}

/* The common claims, field by field; returns the one event's body. */
static json_t *check_set_base(const json_t *set, const char *event)
{
    assert_int_equal(json_object_size(set), 7);
    assert_string_equal(jstr(set, "$schema"),
                        "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json");
    assert_uuid4(jstr(set, "jti"));
    assert_string_equal(jstr(set, "iss"), DEST);
    assert_true(json_is_integer(json_object_get(set, "iat")));
    assert_int_equal(json_integer_value(json_object_get(set, "iat")), 1767225600);
    assert_string_equal(jstr(set, "sub"), "submission:" SUB);
    assert_string_equal(jstr(set, "txn"), "case:" CASE);
    json_t *ev = json_object_get(set, "events");
    assert_true(json_is_object(ev));
    assert_int_equal(json_object_size(ev), 1);
    json_t *body = json_object_get(ev, event);
    assert_true(json_is_object(body));
    return body;
}

static void test_set_accept(void **state)
{
    (void)state;
    rk_set_attachment_tag att[] = { { ATT1, TAG1 }, { ATT2, TAG2 } };
    json_t *set = NULL, *set2 = NULL;
    char err[256];
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, TAGM, TAGD, att, 2, &set, err,
                                         sizeof err), 0);
    json_t *body = check_set_base(set, "https://schema.fitko.de/fit-connect/events/accept-submission");
    assert_int_equal(json_object_size(body), 1);
    json_t *tags = json_object_get(body, "authenticationTags");
    assert_int_equal(json_object_size(tags), 3);
    assert_string_equal(jstr(tags, "metadata"), TAGM);
    assert_string_equal(jstr(tags, "data"), TAGD);
    json_t *a = json_object_get(tags, "attachments");
    assert_int_equal(json_object_size(a), 2);
    assert_string_equal(jstr(a, ATT1), TAG1);
    assert_string_equal(jstr(a, ATT2), TAG2);
    /* a fresh jti each time */
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, TAGM, TAGD, att, 2, &set2, err,
                                         sizeof err), 0);
    assert_string_not_equal(jstr(set, "jti"), jstr(set2, "jti"));
    json_decref(set);
    json_decref(set2);

    /* no data and no attachments: data left out, attachments empty */
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, TAGM, NULL, NULL, 0, &set, err,
                                         sizeof err), 0);
    body = check_set_base(set, "https://schema.fitko.de/fit-connect/events/accept-submission");
    tags = json_object_get(body, "authenticationTags");
    assert_int_equal(json_object_size(tags), 2);
    assert_null(json_object_get(tags, "data"));
    assert_int_equal(json_object_size(json_object_get(tags, "attachments")), 0);
    json_decref(set);
}

static void test_set_reject(void **state)
{
    (void)state;
    json_t *problems = json_pack("[{s:s, s:s, s:s, s:s}]",
                                 "type", "https://schema.fitko.de/fit-connect/events/problems/an-example",
                                 "title", "Nur ein Beispiel", "detail", "Hashwert stimmt nicht",
                                 "instance", "data");
    json_t *set = NULL;
    char err[256];
    assert_int_equal(rk_set_build_reject(&IDS, 1767225600, problems, &set, err, sizeof err), 0);
    json_t *body = check_set_base(set, "https://schema.fitko.de/fit-connect/events/reject-submission");
    assert_int_equal(json_object_size(body), 1);
    json_t *got = json_object_get(body, "problems");
    assert_true(json_equal(got, problems));
    /* a deep copy: changing the caller's array afterwards changes nothing */
    json_object_set_new(json_array_get(problems, 0), "title", json_string("anders"));
    assert_string_equal(jstr(json_array_get(got, 0), "title"), "Nur ein Beispiel");
    json_decref(set);
    json_decref(problems);
}

static void test_set_validation(void **state)
{
    (void)state;
    json_t *set = NULL;
    char err[256];
    rk_set_ids bad = { "not-a-uuid", SUB, CASE };
    assert_int_equal(rk_set_build_accept(&bad, 1767225600, TAGM, TAGD, NULL, 0, &set, err,
                                         sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "destination id \"not-a-uuid\" is not a UUID");
    bad = (rk_set_ids){ DEST, SUB "0", CASE };
    assert_int_equal(rk_set_build_accept(&bad, 1767225600, TAGM, TAGD, NULL, 0, &set, err,
                                         sizeof err), RK_E_FORMAT);
    assert_non_null(strstr(err, "submission id"));
    bad = (rk_set_ids){ DEST, SUB, NULL };
    assert_int_equal(rk_set_build_accept(&bad, 1767225600, TAGM, TAGD, NULL, 0, &set, err,
                                         sizeof err), RK_E_FORMAT);
    assert_non_null(strstr(err, "case id"));
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, "short", TAGD, NULL, 0, &set, err,
                                         sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "metadata authentication tag \"short\" is malformed");
    /* 22 characters whose leftover bits are not zero: not a 16-byte tag */
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, TAGM, "UCGiqJxhBI3IFVdPalHHvB",
                                         NULL, 0, &set, err, sizeof err), RK_E_FORMAT);
    assert_non_null(strstr(err, "data authentication tag"));
    rk_set_attachment_tag dup[] = { { ATT1, TAG1 }, { ATT1, TAG2 } };
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, TAGM, TAGD, dup, 2, &set, err,
                                         sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "attachment " ATT1 " is given twice");
    rk_set_attachment_tag noid[] = { { "x", TAG1 } };
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, TAGM, TAGD, noid, 1, &set, err,
                                         sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "attachment id \"x\" is not a UUID");
    /* iat: the schema's minimum is 2020-01-01 (1577833200); one second before fails */
    assert_int_equal(rk_set_build_accept(&IDS, 1577833199, TAGM, TAGD, NULL, 0, &set, err,
                                         sizeof err), RK_E_FORMAT);
    assert_int_equal(rk_set_build_accept(&IDS, 1577833200, TAGM, TAGD, NULL, 0, &set, err,
                                         sizeof err), 0);
    json_decref(set);
    set = NULL;

    json_t *empty = json_array();
    assert_int_equal(rk_set_build_reject(&IDS, 1767225600, empty, &set, err, sizeof err),
                     RK_E_FORMAT);
    json_decref(empty);
    json_t *notitle = json_pack("[{s:s}]", "type", "x");
    assert_int_equal(rk_set_build_reject(&IDS, 1767225600, notitle, &set, err, sizeof err),
                     RK_E_FORMAT);
    assert_string_equal(err, "problem 0 needs string members type and title");
    json_decref(notitle);
    json_t *baddetail = json_pack("[{s:s, s:s, s:i}]", "type", "x", "title", "y", "detail", 3);
    assert_int_equal(rk_set_build_reject(&IDS, 1767225600, baddetail, &set, err, sizeof err),
                     RK_E_FORMAT);
    assert_string_equal(err, "problem 0: detail must be a string");
    json_decref(baddetail);
    assert_null(set);
}

static void test_set_sign(void **state)
{
    (void)state;
    rk_jose_key *k = load("key-sig.jwk.json", RK_JOSE_KEY_PRIVATE);
    rk_jose_key *pub = load("key-sig.pub.jwk.json", RK_JOSE_KEY_PUBLIC);
    json_t *set = NULL, *h = NULL, *p = NULL;
    char *jws = NULL, err[256];
    assert_int_equal(rk_set_build_accept(&IDS, 1767225600, TAGM, TAGD, NULL, 0, &set, err,
                                         sizeof err), 0);
    assert_int_equal(rk_set_sign(k, NULL, set, &jws, err, sizeof err), 0);
    assert_int_equal(rk_jws_verify_ps512(pub, jws, strlen(jws), 65536, &h, &p, err, sizeof err), 0);
    assert_int_equal(json_object_size(h), 3);
    assert_string_equal(jstr(h, "typ"), "secevent+jwt");
    assert_string_equal(jstr(h, "alg"), "PS512");
    assert_string_equal(jstr(h, "kid"), "rk-test-sig");
    assert_true(json_equal(p, set));
    json_decref(h);
    json_decref(p);
    free(jws);
    /* an explicit kid wins */
    assert_int_equal(rk_set_sign(k, "kid-2", set, &jws, err, sizeof err), 0);
    assert_int_equal(rk_jws_verify_ps512(pub, jws, strlen(jws), 65536, &h, NULL, err, sizeof err), 0);
    assert_string_equal(jstr(h, "kid"), "kid-2");
    json_decref(h);
    free(jws);
    jws = NULL;
    /* a PEM key has no kid: one must be given */
    rk_jose_key *pem = load("key-enc.pem", RK_JOSE_KEY_PRIVATE);
    assert_int_equal(rk_set_sign(pem, NULL, set, &jws, err, sizeof err), RK_JOSE_E_KEY);
    assert_non_null(strstr(err, "no kid"));
    assert_null(jws);
    release(pem);
    json_decref(set);
    release(pub);
    release(k);
}

/* ---- hashes and callbacks ------------------------------------------------ */

static void test_sha512(void **state)
{
    (void)state;
    char hex[129];
    /* FIPS 180-2 examples */
    rk_sha512_hex("abc", 3, hex);
    assert_string_equal(hex, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                             "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    rk_sha512_hex("", 0, hex);
    assert_string_equal(hex, "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                             "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
    /* the hashes Python computed for the vector plaintexts */
    json_t *want = load_json("sha512.json");
    const char *names[] = { "plain-xml.bin", "plain-binary.bin" };
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        char *d = slurp_bin(names[i], &n);
        rk_sha512_hex(d, n, hex);
        assert_string_equal(hex, jstr(want, names[i]));
        assert_int_equal(rk_sha512_matches(d, n, hex), 1);
        char up[129];
        for (int j = 0; j < 129; j++)
            up[j] = (char)toupper((unsigned char)hex[j]);
        assert_int_equal(rk_sha512_matches(d, n, up), 1);
        char wrong[129];
        memcpy(wrong, hex, 129);
        wrong[127] = wrong[127] == '0' ? '1' : '0';
        assert_int_equal(rk_sha512_matches(d, n, wrong), 0);
        hex[127] = '\0';
        assert_int_equal(rk_sha512_matches(d, n, hex), 0);
        assert_int_equal(rk_sha512_matches(d, n - 1, jstr(want, names[i])), 0);
        free(d);
    }
    assert_int_equal(rk_sha512_matches("abc", 3, NULL), 0);
    json_decref(want);
}

static void test_callback(void **state)
{
    (void)state;
    json_t *v = load_json("callback.json");
    const char *secret = jstr(v, "secret"), *ts = jstr(v, "timestamp");
    const char *body = jstr(v, "body"), *mac = jstr(v, "mac");
    size_t sl = strlen(secret), bl = strlen(body);
    int64_t t = 0;
    char hex[129], err[256];
    assert_int_equal(rk_parse_int64(ts, &t), 0);

    /* the MAC Python's hmac module made */
    assert_int_equal(rk_callback_mac(secret, sl, ts, body, bl, hex, sizeof hex), 0);
    assert_string_equal(hex, mac);
    assert_int_equal(rk_callback_mac(secret, sl, ts, body, bl, hex, 128), RK_E_LIMIT);

    /* valid now, and at both edges of the five-minute window */
    assert_int_equal(rk_callback_verify(secret, sl, ts, mac, body, bl, t, err, sizeof err), 0);
    assert_int_equal(rk_callback_verify(secret, sl, ts, mac, body, bl, t + 300, err, sizeof err), 0);
    assert_int_equal(rk_callback_verify(secret, sl, ts, mac, body, bl, t - 300, err, sizeof err), 0);
    /* old: one second past five minutes */
    assert_int_equal(rk_callback_verify(secret, sl, ts, mac, body, bl, t + 301, err, sizeof err),
                     RK_JOSE_E_STALE);
    assert_string_equal(err, "callback-timestamp is 301 s old; at most 300 s are accepted");
    /* future beyond the tolerance */
    assert_int_equal(rk_callback_verify(secret, sl, ts, mac, body, bl, t - 301, err, sizeof err),
                     RK_JOSE_E_STALE);
    assert_string_equal(err, "callback-timestamp is 301 s in the future; at most 300 s are accepted");
    /* upper-case hex is the same MAC */
    char up[129];
    for (int j = 0; j < 129; j++)
        up[j] = (char)toupper((unsigned char)mac[j]);
    assert_int_equal(rk_callback_verify(secret, sl, ts, up, body, bl, t, err, sizeof err), 0);

    /* wrong MAC, changed body, wrong secret, other timestamp */
    char wrong[129];
    memcpy(wrong, mac, 129);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    assert_int_equal(rk_callback_verify(secret, sl, ts, wrong, body, bl, t, err, sizeof err),
                     RK_JOSE_E_MAC);
    assert_string_equal(err, "callback-authentication does not match");
    assert_int_equal(rk_callback_verify(secret, sl, ts, mac, body, bl - 1, t, err, sizeof err),
                     RK_JOSE_E_MAC);
    assert_int_equal(rk_callback_verify("other", 5, ts, mac, body, bl, t, err, sizeof err),
                     RK_JOSE_E_MAC);
    char ts2[32];
    snprintf(ts2, sizeof ts2, "%lld", (long long)t + 1);
    assert_int_equal(rk_callback_verify(secret, sl, ts2, mac, body, bl, t, err, sizeof err),
                     RK_JOSE_E_MAC);
    /* a bad MAC on a stale request: the MAC is what is reported */
    assert_int_equal(rk_callback_verify(secret, sl, ts, wrong, body, bl, t + 1000, err,
                                        sizeof err), RK_JOSE_E_MAC);

    /* malformed headers */
    char shortmac[129];
    memcpy(shortmac, mac, 127);
    shortmac[127] = '\0';
    assert_int_equal(rk_callback_verify(secret, sl, ts, shortmac, body, bl, t, err, sizeof err),
                     RK_E_FORMAT);
    memcpy(wrong, mac, 129);
    wrong[5] = 'g';
    assert_int_equal(rk_callback_verify(secret, sl, ts, wrong, body, bl, t, err, sizeof err),
                     RK_E_FORMAT);
    static const char *const badts[] = { "", "-5", "12a", " 1767225600", "1e9",
                                         "99999999999999999999" };
    for (int i = 0; i < 6; i++)
        assert_int_equal(rk_callback_verify(secret, sl, badts[i], mac, body, bl, t, err,
                                            sizeof err), RK_E_FORMAT);
    assert_int_equal(rk_callback_verify(secret, sl, NULL, mac, body, bl, t, err, sizeof err),
                     RK_E_FORMAT);
    assert_int_equal(rk_callback_verify(secret, 0, ts, mac, body, bl, t, err, sizeof err),
                     RK_JOSE_E_KEY);
    json_decref(v);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(rk_jose_strerror(RK_JOSE_E_DECRYPT), "decryption failed");
    assert_string_equal(rk_jose_strerror(RK_JOSE_E_STALE),
                        "callback timestamp outside the allowed window");
    assert_string_equal(rk_jose_strerror(RK_E_FORMAT), "malformed input");
    char u[40];
    assert_int_equal(rk_uuid4(u, sizeof u), 0);
    assert_uuid4(u);
    assert_int_equal(rk_uuid4(u, 36), RK_E_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_rfc4648),
        cmocka_unit_test(test_b64url_rejects),
        cmocka_unit_test(test_b64url_bounds),
        cmocka_unit_test(test_key_jwk),
        cmocka_unit_test(test_key_pem),
        cmocka_unit_test(test_key_refusals),
        cmocka_unit_test(test_jwe_jwcrypto_vectors),
        cmocka_unit_test(test_jwe_max_plain),
        cmocka_unit_test(test_jwe_tampered),
        cmocka_unit_test(test_jwe_refused_algorithms),
        cmocka_unit_test(test_jwe_truncated),
        cmocka_unit_test(test_jwe_key_misuse),
        cmocka_unit_test(test_jws_roundtrip),
        cmocka_unit_test(test_jws_jwcrypto_vector),
        cmocka_unit_test(test_jws_tampered),
        cmocka_unit_test(test_jws_sign_refusals),
        cmocka_unit_test(test_set_accept),
        cmocka_unit_test(test_set_reject),
        cmocka_unit_test(test_set_validation),
        cmocka_unit_test(test_set_sign),
        cmocka_unit_test(test_sha512),
        cmocka_unit_test(test_callback),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_keys);
}
