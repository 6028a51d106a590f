/*
 * fuzz_jwe.c — libFuzzer harness for the JOSE parsing FIT-Connect senders
 * reach (agent/jose.c): compact JWE parsing and decryption (rk_jwe_peek,
 * rk_jwe_decrypt) and compact JWS verification (rk_jws_verify_ps512).
 *
 * The keys are the fixed test keys of tests/data/jose (key-enc.jwk.json
 * decrypts, key-sig.pub.jwk.json verifies), read once from the repository
 * root, so seeds made for them (the jwe-*.txt there and in
 * tests/fuzz/corpus/jwe) get past the header into key unwrapping and
 * AES-GCM.  Each input is used three ways:
 *
 *   1. as a compact JWE, peeked at and decrypted;
 *   2. as the protected header (JSON) of tests/data/jose/jwe-xml.txt: the
 *      input is base64url-encoded and put in front of that JWE's other four
 *      parts, so the fuzzer explores header checks (alg, enc, zip, crit,
 *      kid) without having to find base64url itself;
 *   3. as a compact JWS to verify.
 *
 * Contract besides "no crash": a decryption that succeeds gives a
 * NUL-terminated plaintext no longer than the cap and a 22-character tag;
 * peek and decrypt agree on the tag; a failure is one of the documented
 * codes with a non-empty message; in way 2 only the fixture's own header
 * may decrypt (the header is the AAD of AES-GCM).
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jose.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PLAIN ((size_t)64 << 10)

static rk_jose_key *dec_key, *sig_key;
static char *fixture;       /* jwe-xml.txt */
static const char *rest;    /* its ".encrypted_key.iv.ciphertext.tag" */
static char *fixture_header; /* its decoded header */
static size_t fixture_header_len;

static void init_once(void)
{
    char err[256];
    size_t len = 0;
    if (rk_jose_key_load("tests/data/jose/key-enc.jwk.json", RK_JOSE_KEY_PRIVATE, &dec_key,
                         err, sizeof err) ||
        rk_jose_key_load("tests/data/jose/key-sig.pub.jwk.json", RK_JOSE_KEY_PUBLIC, &sig_key,
                         err, sizeof err) ||
        rk_read_file("tests/data/jose/jwe-xml.txt", 1 << 20, &fixture, &len) != 0) {
        fprintf(stderr, "fuzz_jwe: tests/data/jose not readable (run from the repository "
                        "root)\n");
        abort();
    }
    while (len && (fixture[len - 1] == '\n' || fixture[len - 1] == '\r'))
        fixture[--len] = '\0';
    rest = strchr(fixture, '.');
    if (!rest)
        abort();
    unsigned char *h = NULL;
    if (rk_b64url_decode_alloc(fixture, (size_t)(rest - fixture), 8192, &h,
                               &fixture_header_len) != 0)
        abort();
    fixture_header = (char *)h;
    rk_log_set_level(RK_LOG_LVL_ERROR);
}

static int known_code(int rc)
{
    return rc == RK_E_FORMAT || rc == RK_E_LIMIT || rc == RK_JOSE_E_UNSUPPORTED ||
           rc == RK_JOSE_E_DECRYPT || rc == RK_JOSE_E_KEY || rc == RK_JOSE_E_SIGNATURE ||
           rc == -ENOMEM;
}

/* Peeks at and decrypts one compact JWE; 1 when it decrypted. */
static int jwe_checked(const char *jwe, size_t len)
{
    char kid[256], tag[RK_JOSE_TAG_B64_LEN + 1], err[300] = "";
    int prc = rk_jwe_peek(jwe, len, kid, sizeof kid, tag, sizeof tag, err, sizeof err);
    if (prc != 0 && (!known_code(prc) || !err[0]))
        abort();
    rk_jwe_result res = {0};
    err[0] = '\0';
    int rc = rk_jwe_decrypt(dec_key, jwe, len, MAX_PLAIN, &res, err, sizeof err);
    if (rc == 0) {
        if (prc != 0 || !res.plaintext || res.len > MAX_PLAIN || res.plaintext[res.len] != 0 ||
            strlen(res.tag) != RK_JOSE_TAG_B64_LEN || strcmp(res.tag, tag) != 0)
            abort();
    } else if (!known_code(rc) || !err[0] || res.plaintext) {
        abort();
    }
    rk_jwe_result_free(&res);
    return rc == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dec_key)
        init_once();
    /* 1: the input as a JWE (NUL-terminated copy, as the inbox has it) */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    jwe_checked(s, size);

    /* 2: the input as the protected header of the fixture */
    if (size <= 6000) {
        size_t hl = rk_b64url_enclen(size), rl = strlen(rest);
        char *j = malloc(hl + rl + 1);
        if (j && rk_b64url_encode(data, size, j, hl + 1) == 0) {
            memcpy(j + hl, rest, rl + 1);
            int ok = jwe_checked(j, hl + rl);
            if (ok && (size != fixture_header_len || memcmp(data, fixture_header, size) != 0))
                abort(); /* a changed header must not authenticate */
        }
        free(j);
    }

    /* 3: the input as a JWS */
    json_t *hdr = NULL, *payload = NULL;
    char err[300] = "";
    int rc = rk_jws_verify_ps512(sig_key, s, size, 1 << 20, &hdr, &payload, err, sizeof err);
    if (rc == 0) {
        if (!json_is_object(payload))
            abort();
    } else if (!known_code(rc) || !err[0] || hdr || payload) {
        abort();
    }
    json_decref(hdr);
    json_decref(payload);
    free(s);
    return 0;
}

#define RK_FUZZ_NAME "fuzz_jwe"
#include "replay_main.h"
