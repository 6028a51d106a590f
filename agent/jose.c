/*
 * jose.c — JOSE for FIT-Connect: see jose.h for the contract.
 *
 * Only what the receiving side needs is implemented, and everything else
 * is refused by name rather than half-supported: one key type (RSA), one
 * key management algorithm (RSA-OAEP-256), one content encryption
 * (A256GCM), one signature algorithm (PS512).  The primitives are all
 * OpenSSL EVP calls; this file only parses, checks and glues.
 */
#include "jose.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#define JWE_ALG "RSA-OAEP-256"
#define JWE_ENC "A256GCM"
#define JWS_ALG "PS512"
#define CEK_LEN 32
#define IV_LEN 12
#define TAG_LEN 16
#define MAX_RSA_BYTES (RK_JOSE_MAX_RSA_BITS / 8)

const char *rk_jose_strerror(int err)
{
    switch (err) {
    case RK_JOSE_E_UNSUPPORTED: return "unsupported JOSE algorithm or parameter";
    case RK_JOSE_E_DECRYPT: return "decryption failed";
    case RK_JOSE_E_SIGNATURE: return "signature does not verify";
    case RK_JOSE_E_KEY: return "unusable key";
    case RK_JOSE_E_MAC: return "callback authentication does not match";
    case RK_JOSE_E_STALE: return "callback timestamp outside the allowed window";
    case RK_JOSE_E_CRYPTO: return "cryptographic library failure";
    default: return rk_strerror(err);
    }
}

/* Writes a message into err (when given) and returns code, so error paths
 * read `return fail(err, errlen, CODE, "...", ...)`. */
__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    ERR_clear_error();
    return code;
}

/* Copies an untrusted string (a header value) for a message: printable
 * ASCII only, at most 40 characters, so a hostile header cannot forge
 * log lines or flood them. */
static const char *clean(const char *s, char *buf, size_t n)
{
    size_t j = 0, i = 0;
    for (; s[i] && j + 4 < n && i < 40; i++)
        buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] && j + 3 < n) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return buf;
}

/* ---- base64url ------------------------------------------------------------ */

static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t rk_b64url_enclen(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

int rk_b64url_encode(const void *src, size_t n, char *out, size_t outlen)
{
    const unsigned char *p = src;
    size_t need = rk_b64url_enclen(n), j = 0, i = 0;
    if (n > (SIZE_MAX - 1) / 4 * 3 || outlen < need + 1)
        return RK_E_LIMIT;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[j++] = B64URL[v >> 18 & 63];
        out[j++] = B64URL[v >> 12 & 63];
        out[j++] = B64URL[v >> 6 & 63];
        out[j++] = B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[j++] = B64URL[v >> 18 & 63];
        out[j++] = B64URL[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[j++] = B64URL[v >> 18 & 63];
        out[j++] = B64URL[v >> 12 & 63];
        out[j++] = B64URL[v >> 6 & 63];
    }
    out[j] = '\0';
    return 0;
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decoded size of n base64url characters, or SIZE_MAX for n % 4 == 1. */
static size_t b64url_declen(size_t n)
{
    if (n % 4 == 1)
        return SIZE_MAX;
    return n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
}

int rk_b64url_decode(const char *src, size_t n, unsigned char *out,
                     size_t outlen, size_t *outn)
{
    size_t need = b64url_declen(n), j = 0, i = 0;
    if (need == SIZE_MAX)
        return RK_E_FORMAT;
    if (need > outlen)
        return RK_E_LIMIT;
    for (; i + 3 < n; i += 4) {
        int a = b64url_val((unsigned char)src[i]), b = b64url_val((unsigned char)src[i + 1]);
        int c = b64url_val((unsigned char)src[i + 2]), d = b64url_val((unsigned char)src[i + 3]);
        if ((a | b | c | d) < 0)
            return RK_E_FORMAT;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[j++] = (unsigned char)(v >> 16);
        out[j++] = (unsigned char)(v >> 8);
        out[j++] = (unsigned char)v;
    }
    if (n - i >= 2) {
        int a = b64url_val((unsigned char)src[i]), b = b64url_val((unsigned char)src[i + 1]);
        int c = n - i == 3 ? b64url_val((unsigned char)src[i + 2]) : 0;
        if ((a | b | c) < 0)
            return RK_E_FORMAT;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        /* leftover bits must be zero: one encoding per byte string */
        if ((n - i == 2 && (v & 0xffff)) || (n - i == 3 && (v & 0xff)))
            return RK_E_FORMAT;
        out[j++] = (unsigned char)(v >> 16);
        if (n - i == 3)
            out[j++] = (unsigned char)(v >> 8);
    }
    *outn = j;
    return 0;
}

int rk_b64url_decode_alloc(const char *src, size_t n, size_t max,
                           unsigned char **out, size_t *outn)
{
    size_t need = b64url_declen(n);
    *out = NULL;
    *outn = 0;
    if (need == SIZE_MAX)
        return RK_E_FORMAT;
    if (need > max)
        return RK_E_LIMIT;
    unsigned char *p = malloc(need + 1);
    if (!p)
        return -ENOMEM;
    int rc = rk_b64url_decode(src, n, p, need, outn);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p[*outn] = '\0';
    *out = p;
    return 0;
}

/* ---- keys -------------------------------------------------------------------- */

struct rk_jose_key {
    EVP_PKEY *pkey;
    int priv;
    char *kid;
    char *alg;
};

void rk_jose_key_free(rk_jose_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k->kid);
    free(k->alg);
    free(k);
}

const char *rk_jose_key_kid(const rk_jose_key *k) { return k->kid; }
const char *rk_jose_key_alg(const rk_jose_key *k) { return k->alg; }
int rk_jose_key_bits(const rk_jose_key *k) { return EVP_PKEY_get_bits(k->pkey); }
int rk_jose_key_is_private(const rk_jose_key *k) { return k->priv; }

/* Wraps pkey (taken over) after checking it is RSA of a sane size. */
static int key_wrap(EVP_PKEY *pkey, int priv, rk_jose_key **out,
                    char *err, size_t errlen)
{
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        EVP_PKEY_free(pkey);
        return fail(err, errlen, RK_JOSE_E_KEY, "key is not an RSA key");
    }
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < RK_JOSE_MIN_RSA_BITS || bits > RK_JOSE_MAX_RSA_BITS) {
        EVP_PKEY_free(pkey);
        return fail(err, errlen, RK_JOSE_E_KEY,
                    "RSA key has %d bits; %d to %d are accepted", bits,
                    RK_JOSE_MIN_RSA_BITS, RK_JOSE_MAX_RSA_BITS);
    }
    /* A corrupted or mixed-up key file is caught here, at load time,
     * instead of as a puzzling "decryption failed" on every submission
     * later.  The pairwise check includes primality tests (about 0.3 s
     * for 4096 bits), which is why keys are loaded once, not per use. */
    EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = chk && (priv ? EVP_PKEY_pairwise_check(chk) : EVP_PKEY_public_check(chk)) == 1;
    EVP_PKEY_CTX_free(chk);
    if (!ok) {
        EVP_PKEY_free(pkey);
        return fail(err, errlen, RK_JOSE_E_KEY,
                    priv ? "RSA private key is inconsistent (its parts do not belong together)"
                         : "RSA public key fails the public key check");
    }
    rk_jose_key *k = calloc(1, sizeof *k);
    if (!k) {
        EVP_PKEY_free(pkey);
        return -ENOMEM;
    }
    k->pkey = pkey;
    k->priv = priv;
    *out = k;
    return 0;
}

/* A new EVP_PKEY holding only the public half of pkey, so a private key
 * file loaded for verification keeps no secret in memory. */
static EVP_PKEY *public_only(EVP_PKEY *pkey)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pub = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (EVP_PKEY_todata(pkey, EVP_PKEY_PUBLIC_KEY, &params) != 1)
        goto done;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pub = NULL;
done:
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return pub;
}

/* Reads one base64url big-endian integer member of a JWK into a new
 * BIGNUM (*bn stays NULL when the member is absent). */
static int jwk_bn(const json_t *jwk, const char *name, int secret, BIGNUM **bn,
                  char *err, size_t errlen)
{
    unsigned char buf[MAX_RSA_BYTES + 8];
    size_t n = 0;
    *bn = NULL;
    json_t *v = json_object_get(jwk, name);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return fail(err, errlen, RK_JOSE_E_KEY, "JWK member %s is not a string", name);
    int rc = rk_b64url_decode(json_string_value(v), json_string_length(v), buf,
                              sizeof buf, &n);
    if (rc < 0 || n == 0)
        return fail(err, errlen, RK_JOSE_E_KEY,
                    "JWK member %s is not a base64url number%s", name,
                    rc == RK_E_LIMIT ? " of a supported size" : "");
    *bn = secret ? BN_secure_new() : BN_new();
    if (*bn && !BN_bin2bn(buf, (int)n, *bn)) {
        BN_clear_free(*bn);
        *bn = NULL;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return *bn ? 0 : fail(err, errlen, RK_JOSE_E_CRYPTO, "out of memory reading JWK %s", name);
}

/* Copies an optional short string member of a JWK (kid, alg). */
static int jwk_str(const json_t *jwk, const char *name, size_t max, char **out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(jwk, name);
    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, errlen, RK_JOSE_E_KEY,
                    "JWK member %s must be a non-empty string of at most %zu bytes",
                    name, max);
    *out = strdup(json_string_value(v));
    return *out ? 0 : -ENOMEM;
}

/*
 * Builds an RSA EVP_PKEY from the JWK members with OSSL_PARAM_BLD and
 * EVP_PKEY_fromdata.  A private JWK must carry all CRT members (every
 * producer we know writes them; without them decryption is slower and
 * the key cannot be pairwise-checked in key_wrap).
 */
int rk_jose_key_from_jwk(const json_t *jwk, int want, rk_jose_key **out,
                         char *err, size_t errlen)
{
    static const char *const priv_names[] = { "d", "p", "q", "dp", "dq", "qi" };
    static const char *const priv_params[] = {
        OSSL_PKEY_PARAM_RSA_D, OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1
    };
    BIGNUM *n = NULL, *e = NULL, *priv[6] = { 0 };
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    char *kid = NULL, *alg = NULL;
    int rc, use_priv = 0;

    *out = NULL;
    if (!json_is_object(jwk))
        return fail(err, errlen, RK_JOSE_E_KEY, "JWK is not a JSON object");
    json_t *kty = json_object_get(jwk, "kty");
    if (!json_is_string(kty))
        return fail(err, errlen, RK_JOSE_E_KEY, "JWK has no kty");
    if (strcmp(json_string_value(kty), "RSA") != 0) {
        char b[64];
        return fail(err, errlen, RK_JOSE_E_UNSUPPORTED,
                    "JWK kty \"%s\" is not supported (only RSA)",
                    clean(json_string_value(kty), b, sizeof b));
    }
    if ((rc = jwk_str(jwk, "kid", 255, &kid, err, errlen)) < 0 ||
        (rc = jwk_str(jwk, "alg", 63, &alg, err, errlen)) < 0)
        goto out;
    if ((rc = jwk_bn(jwk, "n", 0, &n, err, errlen)) < 0 ||
        (rc = jwk_bn(jwk, "e", 0, &e, err, errlen)) < 0)
        goto out;
    if (!n || !e) {
        rc = fail(err, errlen, RK_JOSE_E_KEY, "JWK lacks %s", n ? "e" : "n");
        goto out;
    }
    if (want == RK_JOSE_KEY_PRIVATE) {
        for (int i = 0; i < 6; i++) {
            if ((rc = jwk_bn(jwk, priv_names[i], 1, &priv[i], err, errlen)) < 0)
                goto out;
            if (!priv[i]) {
                rc = fail(err, errlen, RK_JOSE_E_KEY,
                          i == 0 ? "JWK has no private part (d): a public key cannot decrypt or sign"
                                 : "JWK private key lacks %s (d, p, q, dp, dq and qi are all needed)",
                          priv_names[i]);
                goto out;
            }
        }
        use_priv = 1;
    }

    rc = fail(err, errlen, RK_JOSE_E_CRYPTO, "OpenSSL could not build the RSA key");
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        goto out;
    for (int i = 0; use_priv && i < 6; i++)
        if (!OSSL_PARAM_BLD_push_BN(bld, priv_params[i], priv[i]))
            goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1)
        goto out;
    if (EVP_PKEY_fromdata(ctx, &pkey, use_priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                          params) != 1) {
        rc = fail(err, errlen, RK_JOSE_E_KEY, "JWK does not describe a valid RSA key");
        goto out;
    }
    rc = key_wrap(pkey, use_priv, out, err, errlen);
    pkey = NULL;
    if (rc == 0) {
        (*out)->kid = kid;
        (*out)->alg = alg;
        kid = alg = NULL;
        if (err && errlen)
            err[0] = '\0';
    }
out:
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    for (int i = 0; i < 6; i++)
        BN_clear_free(priv[i]);
    free(kid);
    free(alg);
    return rc;
}

/* Passphrase callback that refuses: an encrypted PEM key would need a
 * secret on the command line or in the config, which we do not want. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

int rk_jose_key_from_pem(const char *pem, size_t len, int want,
                         rk_jose_key **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len > RK_JOSE_MAX_KEY_FILE || len > INT32_MAX)
        return fail(err, errlen, RK_E_LIMIT, "PEM key is larger than %d bytes",
                    RK_JOSE_MAX_KEY_FILE);
    if (memmem(pem, len, "BEGIN ENCRYPTED PRIVATE KEY", 27) ||
        memmem(pem, len, "Proc-Type: 4,ENCRYPTED", 22))
        return fail(err, errlen, RK_JOSE_E_UNSUPPORTED,
                    "encrypted PEM keys are not supported; store the key unencrypted "
                    "with file permissions 0600");
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return -ENOMEM;
    int priv = 1;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (!pkey && want == RK_JOSE_KEY_PUBLIC) {
        ERR_clear_error();
        BIO_reset(bio);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
        priv = 0;
    }
    BIO_free(bio);
    if (!pkey)
        return fail(err, errlen, RK_JOSE_E_KEY,
                    want == RK_JOSE_KEY_PRIVATE
                        ? "no RSA private key found in PEM (need PKCS#8 or PKCS#1)"
                        : "no RSA key found in PEM");
    if (priv && want == RK_JOSE_KEY_PUBLIC) {
        EVP_PKEY *pub = EVP_PKEY_is_a(pkey, "RSA") ? public_only(pkey) : NULL;
        if (pub) {
            EVP_PKEY_free(pkey);
            pkey = pub;
            priv = 0;
        }
    }
    int rc = key_wrap(pkey, priv, out, err, errlen);
    ERR_clear_error();
    if (rc == 0 && err && errlen)
        err[0] = '\0';
    return rc;
}

/*
 * Reads a key file: JSON when its first non-blank character is '{', PEM
 * otherwise.  The file buffer held the private key, so it is wiped before
 * it is freed.
 */
int rk_jose_key_load(const char *path, int want, rk_jose_key **out,
                     char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = rk_read_file(path, RK_JOSE_MAX_KEY_FILE, &text, &len);
    if (rc < 0)
        return fail(err, errlen, rc == RK_E_LIMIT ? RK_E_LIMIT : RK_JOSE_E_KEY,
                    "cannot read key file %s: %s", path,
                    rc == RK_E_LIMIT ? "larger than 64 KiB" : rk_strerror(rc));
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i < len && text[i] == '{') {
        json_error_t jerr;
        json_t *jwk = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!jwk)
            rc = fail(err, errlen, RK_JOSE_E_KEY, "key file %s is not valid JSON (line %d)",
                      path, jerr.line);
        else
            rc = rk_jose_key_from_jwk(jwk, want, out, err, errlen);
        json_decref(jwk);
    } else {
        rc = rk_jose_key_from_pem(text, len, want, out, err, errlen);
    }
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

/* Appends the base64url big-endian form of one public RSA parameter. */
static int bn_param_b64(const EVP_PKEY *pkey, const char *name, json_t *obj,
                        const char *member)
{
    BIGNUM *bn = NULL;
    unsigned char buf[MAX_RSA_BYTES];
    char b64[MAX_RSA_BYTES * 4 / 3 + 4];
    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
        return RK_JOSE_E_CRYPTO;
    int n = BN_num_bytes(bn);
    int rc = RK_JOSE_E_CRYPTO;
    if (n > 0 && n <= (int)sizeof buf && BN_bn2bin(bn, buf) == n &&
        rk_b64url_encode(buf, (size_t)n, b64, sizeof b64) == 0 &&
        json_object_set_new(obj, member, json_string(b64)) == 0)
        rc = 0;
    BN_free(bn);
    return rc;
}

int rk_jose_key_public_jwk(const rk_jose_key *k, json_t **out)
{
    json_t *o = json_object();
    *out = NULL;
    if (!o)
        return -ENOMEM;
    if (json_object_set_new(o, "kty", json_string("RSA")) != 0 ||
        bn_param_b64(k->pkey, OSSL_PKEY_PARAM_RSA_N, o, "n") != 0 ||
        bn_param_b64(k->pkey, OSSL_PKEY_PARAM_RSA_E, o, "e") != 0 ||
        (k->kid && json_object_set_new(o, "kid", json_string(k->kid)) != 0) ||
        (k->alg && json_object_set_new(o, "alg", json_string(k->alg)) != 0)) {
        json_decref(o);
        ERR_clear_error();
        return RK_JOSE_E_CRYPTO;
    }
    *out = o;
    return 0;
}

/* Refuses a key whose JWK names another algorithm than the one about to
 * be used (FIT-Connect keeps encryption and signature keys apart). */
static int key_for(const rk_jose_key *k, const char *alg, int need_priv,
                   char *err, size_t errlen)
{
    char b[64];
    if (need_priv && !k->priv)
        return fail(err, errlen, RK_JOSE_E_KEY, "a private key is needed for %s", alg);
    if (k->alg && strcmp(k->alg, alg) != 0)
        return fail(err, errlen, RK_JOSE_E_KEY, "key%s%s is for alg %s, not %s",
                    k->kid ? " " : "", k->kid ? clean(k->kid, b, sizeof b) : "",
                    k->alg, alg);
    return 0;
}

/* ---- compact serialisation helpers ------------------------------------------ */

typedef struct part { const char *p; size_t n; } part;

/* Splits s into exactly want dot-separated parts. */
static int split_compact(const char *s, size_t len, part *parts, int want)
{
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (k == want)
                return -1;
            parts[k].p = s + start;
            parts[k].n = i - start;
            k++;
            start = i + 1;
        } else if (s[i] == '\0') {
            return -1;
        }
    }
    return k == want ? 0 : -1;
}

/* Decodes and parses a protected header part into a JSON object. */
static int parse_header(const part *h, json_t **out, char *err, size_t errlen)
{
    unsigned char *raw = NULL;
    size_t rawn = 0;
    *out = NULL;
    if (h->n == 0)
        return fail(err, errlen, RK_E_FORMAT, "protected header is empty");
    if (h->n > RK_JOSE_MAX_HEADER)
        return fail(err, errlen, RK_E_LIMIT, "protected header is longer than %d characters",
                    RK_JOSE_MAX_HEADER);
    int rc = rk_b64url_decode_alloc(h->p, h->n, RK_JOSE_MAX_HEADER, &raw, &rawn);
    if (rc < 0)
        return fail(err, errlen, rc == -ENOMEM ? rc : RK_E_FORMAT,
                    "protected header is not base64url");
    json_error_t jerr;
    json_t *j = json_loadb((const char *)raw, rawn, JSON_REJECT_DUPLICATES, &jerr);
    free(raw);
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(err, errlen, RK_E_FORMAT,
                    "protected header is not a JSON object (or repeats a member)");
    }
    *out = j;
    return 0;
}

/* Checks that header member name is absent or a string of at most max
 * bytes, and copies it into buf ("" when absent). */
static int header_str(const json_t *hdr, const char *name, char *buf, size_t buflen,
                      char *err, size_t errlen)
{
    json_t *v = json_object_get(hdr, name);
    if (buf && buflen)
        buf[0] = '\0';
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= buflen ||
        strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, errlen, RK_E_FORMAT,
                    "protected header member %s must be a string shorter than %zu bytes",
                    name, buflen);
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* Requires header member name to be the string want; names what it found. */
static int header_expect(const json_t *hdr, const char *name, const char *want,
                         char *err, size_t errlen)
{
    char b[64];
    json_t *v = json_object_get(hdr, name);
    if (!v)
        return fail(err, errlen, RK_E_FORMAT, "protected header has no %s", name);
    if (!json_is_string(v))
        return fail(err, errlen, RK_E_FORMAT, "protected header member %s is not a string",
                    name);
    if (strcmp(json_string_value(v), want) != 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, errlen, RK_JOSE_E_UNSUPPORTED, "%s \"%s\" is not supported (only %s)",
                    name, clean(json_string_value(v), b, sizeof b), want);
    return 0;
}

/* ---- JWE ------------------------------------------------------------------------ */

typedef struct jwe_parts {
    part p[5];             /* header, encrypted key, iv, ciphertext, tag */
    json_t *hdr;
    unsigned char iv[IV_LEN];
    unsigned char tag[TAG_LEN];
    unsigned char ek[MAX_RSA_BYTES];
    size_t ekn;
} jwe_parts;

/*
 * Parses and checks everything of a compact JWE that can be checked
 * without the key: five parts, the protected header (alg, enc, no zip,
 * no crit, kid and cty strings), the IV and tag lengths, the size of the
 * encrypted key and of the ciphertext against max_plain.  Header checks
 * come first so an unsupported algorithm is reported as such even when
 * the rest is malformed too.
 */
static int jwe_parse(const char *jwe, size_t len, size_t max_plain, jwe_parts *j,
                     char *kid, size_t kidlen, char *cty, size_t ctylen,
                     char *err, size_t errlen)
{
    char b[64];
    size_t n;
    int rc;
    memset(j, 0, sizeof *j);
    if (split_compact(jwe, len, j->p, 5) < 0)
        return fail(err, errlen, RK_E_FORMAT,
                    "not a compact JWE: five base64url parts separated by dots expected");
    if ((rc = parse_header(&j->p[0], &j->hdr, err, errlen)) < 0)
        return rc;
    if ((rc = header_expect(j->hdr, "alg", JWE_ALG, err, errlen)) < 0 ||
        (rc = header_expect(j->hdr, "enc", JWE_ENC, err, errlen)) < 0)
        goto bad;
    json_t *zip = json_object_get(j->hdr, "zip");
    if (zip) {
        rc = fail(err, errlen, RK_JOSE_E_UNSUPPORTED, "zip \"%s\" is not supported",
                  json_is_string(zip) ? clean(json_string_value(zip), b, sizeof b) : "?");
        goto bad;
    }
    if (json_object_get(j->hdr, "crit")) {
        rc = fail(err, errlen, RK_JOSE_E_UNSUPPORTED,
                  "protected header has crit: no critical extensions are supported");
        goto bad;
    }
    if ((rc = header_str(j->hdr, "kid", kid, kidlen, err, errlen)) < 0 ||
        (rc = header_str(j->hdr, "cty", cty, ctylen, err, errlen)) < 0)
        goto bad;
    if (rk_b64url_decode(j->p[1].p, j->p[1].n, j->ek, sizeof j->ek, &j->ekn) < 0 ||
        j->ekn == 0) {
        rc = fail(err, errlen, RK_E_FORMAT, "JWE encrypted key is missing or malformed");
        goto bad;
    }
    if (rk_b64url_decode(j->p[2].p, j->p[2].n, j->iv, sizeof j->iv, &n) < 0 || n != IV_LEN) {
        rc = fail(err, errlen, RK_E_FORMAT, "JWE initialization vector must be 12 bytes");
        goto bad;
    }
    if (rk_b64url_decode(j->p[4].p, j->p[4].n, j->tag, sizeof j->tag, &n) < 0 ||
        n != TAG_LEN) {
        rc = fail(err, errlen, RK_E_FORMAT, "JWE authentication tag must be 16 bytes");
        goto bad;
    }
    size_t ctn = b64url_declen(j->p[3].n);
    if (ctn == SIZE_MAX) {
        rc = fail(err, errlen, RK_E_FORMAT, "JWE ciphertext is not base64url");
        goto bad;
    }
    if (ctn > max_plain) {
        rc = fail(err, errlen, RK_E_LIMIT, "JWE ciphertext of %zu bytes exceeds the limit of %zu",
                  ctn, max_plain);
        goto bad;
    }
    return 0;
bad:
    json_decref(j->hdr);
    j->hdr = NULL;
    return rc;
}

static void jwe_parts_clear(jwe_parts *j)
{
    json_decref(j->hdr);
    j->hdr = NULL;
}

int rk_jwe_peek(const char *jwe, size_t len, char *kid, size_t kidlen,
                char *tag, size_t taglen, char *err, size_t errlen)
{
    jwe_parts j;
    char cty[128], kidbuf[256];
    if (!kid || !kidlen) {
        kid = kidbuf;
        kidlen = sizeof kidbuf;
    }
    if (!tag || taglen < RK_JOSE_TAG_B64_LEN + 1)
        return fail(err, errlen, RK_E_LIMIT, "tag buffer too small");
    int rc = jwe_parse(jwe, len, SIZE_MAX - 1, &j, kid, kidlen, cty, sizeof cty, err, errlen);
    if (rc < 0)
        return rc;
    rk_b64url_encode(j.tag, TAG_LEN, tag, taglen);
    jwe_parts_clear(&j);
    return 0;
}

/* RSA-OAEP with SHA-256 and MGF1-SHA-256: unwraps the CEK into cek.
 * Returns 0 only for a 32-byte result. */
static int oaep_unwrap(EVP_PKEY *pkey, const unsigned char *ek, size_t ekn,
                       unsigned char *cek)
{
    unsigned char out[MAX_RSA_BYTES];
    size_t outn = sizeof out;
    int ok = 0;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx && EVP_PKEY_decrypt_init(ctx) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1 &&
        ekn == (size_t)EVP_PKEY_get_size(pkey) &&
        EVP_PKEY_decrypt(ctx, out, &outn, ek, ekn) == 1 && outn == CEK_LEN) {
        memcpy(cek, out, CEK_LEN);
        ok = 1;
    }
    OPENSSL_cleanse(out, sizeof out);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return ok ? 0 : -1;
}

/*
 * Decrypts: parse and check (jwe_parse), unwrap the CEK, then AES-256-GCM
 * with the 12-byte IV, AAD = the ASCII of the encoded protected header
 * and the 16-byte tag.  When the unwrap fails a random CEK is used and
 * the GCM tag check fails in its place (RFC 7516 §11.5), so a wrong key
 * and a tampered message are one error.  The tag comparison itself is
 * EVP's, which is constant-time.
 */
int rk_jwe_decrypt(const rk_jose_key *key, const char *jwe, size_t len,
                   size_t max_plain, rk_jwe_result *res, char *err, size_t errlen)
{
    jwe_parts j;
    unsigned char cek[CEK_LEN];
    unsigned char *ct = NULL, *pt = NULL;
    size_t ctn = 0;
    int outl = 0, finl = 0, rc;
    EVP_CIPHER_CTX *c = NULL;

    memset(res, 0, sizeof *res);
    if ((rc = key_for(key, JWE_ALG, 1, err, errlen)) < 0)
        return rc;
    if (max_plain >= SIZE_MAX - 1 || max_plain > INT32_MAX)
        max_plain = INT32_MAX;
    rc = jwe_parse(jwe, len, max_plain, &j, res->kid, sizeof res->kid, res->cty,
                   sizeof res->cty, err, errlen);
    if (rc < 0)
        return rc;
    rc = rk_b64url_decode_alloc(j.p[3].p, j.p[3].n, max_plain, &ct, &ctn);
    if (rc < 0) {
        rc = fail(err, errlen, rc == -ENOMEM ? rc : RK_E_FORMAT,
                  "JWE ciphertext is not base64url");
        goto out;
    }
    if (oaep_unwrap(key->pkey, j.ek, j.ekn, cek) < 0 && RAND_bytes(cek, CEK_LEN) != 1) {
        rc = fail(err, errlen, RK_JOSE_E_CRYPTO, "no random bytes for the CEK");
        goto out;
    }
    pt = malloc(ctn + 1);
    c = EVP_CIPHER_CTX_new();
    if (!pt || !c) {
        rc = -ENOMEM;
        goto out;
    }
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, cek, j.iv) != 1 ||
        EVP_DecryptUpdate(c, NULL, &outl, (const unsigned char *)j.p[0].p, (int)j.p[0].n) != 1 ||
        (ctn && EVP_DecryptUpdate(c, pt, &outl, ct, (int)ctn) != 1) ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, j.tag) != 1) {
        rc = fail(err, errlen, RK_JOSE_E_CRYPTO, "AES-256-GCM could not be set up");
        goto out;
    }
    if (!ctn)
        outl = 0;
    if (EVP_DecryptFinal_ex(c, pt + outl, &finl) != 1) {
        OPENSSL_cleanse(pt, ctn + 1);
        rc = fail(err, errlen, RK_JOSE_E_DECRYPT,
                  "JWE decryption failed: wrong key, or the message was altered");
        goto out;
    }
    pt[outl + finl] = '\0';
    res->plaintext = pt;
    res->len = (size_t)(outl + finl);
    pt = NULL;
    rk_b64url_encode(j.tag, TAG_LEN, res->tag, sizeof res->tag);
    rc = 0;
    if (err && errlen)
        err[0] = '\0';
out:
    OPENSSL_cleanse(cek, sizeof cek);
    EVP_CIPHER_CTX_free(c);
    free(pt);
    free(ct);
    jwe_parts_clear(&j);
    ERR_clear_error();
    if (rc < 0) {
        res->kid[0] = res->cty[0] = res->tag[0] = '\0';
    }
    return rc;
}

void rk_jwe_result_free(rk_jwe_result *res)
{
    if (!res)
        return;
    if (res->plaintext) {
        OPENSSL_cleanse(res->plaintext, res->len);
        free(res->plaintext);
    }
    res->plaintext = NULL;
    res->len = 0;
}

/* ---- JWS PS512 -------------------------------------------------------------------- */

/* Sets RSA-PSS, MGF1-SHA-512 and a 64-byte salt on a digest-sign or
 * digest-verify context. */
static int pss_params(EVP_PKEY_CTX *pctx)
{
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 64) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha512()) == 1;
}

/* base64url of the compact JSON serialisation of v, appended to b. */
static int append_json_b64(rk_buf *b, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return -ENOMEM;
    size_t n = strlen(s), m = rk_b64url_enclen(n);
    char *e = malloc(m + 1);
    int rc = e ? rk_b64url_encode(s, n, e, m + 1) : -ENOMEM;
    if (rc == 0)
        rc = rk_buf_append(b, e, m);
    free(e);
    free(s);
    return rc;
}

/*
 * Builds "B64(header).B64(payload)", signs it with RSA-PSS/SHA-512 and
 * appends ".B64(signature)".  The header is copied so the caller's object
 * is not modified; its alg is forced to PS512.
 */
int rk_jws_sign_ps512(const rk_jose_key *key, const json_t *header,
                      const json_t *payload, char **out, char *err, size_t errlen)
{
    rk_buf b;
    json_t *h = NULL;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char sig[MAX_RSA_BYTES];
    char sigb64[MAX_RSA_BYTES * 4 / 3 + 4];
    size_t sign = sizeof sig;
    int rc;

    *out = NULL;
    if ((rc = key_for(key, JWS_ALG, 1, err, errlen)) < 0)
        return rc;
    if (!json_is_object(header) || !payload)
        return fail(err, errlen, RK_E_FORMAT, "JWS header must be a JSON object");
    json_t *alg = json_object_get(header, "alg");
    if (alg && (!json_is_string(alg) || strcmp(json_string_value(alg), JWS_ALG) != 0)) {
        char bb[64];
        return fail(err, errlen, RK_JOSE_E_UNSUPPORTED, "alg \"%s\" is not supported (only %s)",
                    json_is_string(alg) ? clean(json_string_value(alg), bb, sizeof bb) : "?",
                    JWS_ALG);
    }
    h = json_deep_copy(header);
    if (!h || json_object_set_new(h, "alg", json_string(JWS_ALG)) != 0) {
        json_decref(h);
        return -ENOMEM;
    }
    rk_buf_init(&b, 64 * 1024 * 1024);
    if ((rc = append_json_b64(&b, h)) < 0 || (rc = rk_buf_append(&b, ".", 1)) < 0 ||
        (rc = append_json_b64(&b, payload)) < 0) {
        rc = fail(err, errlen, rc, "JWS could not be serialised: %s", rk_strerror(rc));
        goto out;
    }
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, &pctx, EVP_sha512(), NULL, key->pkey) != 1 ||
        !pss_params(pctx) ||
        EVP_DigestSign(md, sig, &sign, (const unsigned char *)b.data, b.len) != 1 ||
        rk_b64url_encode(sig, sign, sigb64, sizeof sigb64) != 0) {
        rc = fail(err, errlen, RK_JOSE_E_CRYPTO, "RSA-PSS signing failed");
        goto out;
    }
    if ((rc = rk_buf_append(&b, ".", 1)) < 0 ||
        (rc = rk_buf_append(&b, sigb64, strlen(sigb64))) < 0)
        goto out;
    *out = rk_buf_take(&b);
    rc = 0;
    if (err && errlen)
        err[0] = '\0';
out:
    EVP_MD_CTX_free(md);
    json_decref(h);
    rk_buf_free(&b);
    ERR_clear_error();
    return rc;
}

/*
 * Verifies a compact PS512 JWS.  The header is checked before the
 * signature so "alg none" and friends are refused by name; the signature
 * must be exactly as long as the modulus, and the salt must be 64 bytes
 * (RFC 7518 §3.5: salt length = hash length), not "any".
 */
int rk_jws_verify_ps512(const rk_jose_key *key, const char *jws, size_t len,
                        size_t max_len, json_t **header, json_t **payload,
                        char *err, size_t errlen)
{
    part p[3];
    json_t *h = NULL, *pl = NULL;
    unsigned char *raw = NULL;
    unsigned char sig[MAX_RSA_BYTES];
    size_t rawn = 0, sign = 0;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    int rc;

    if (header)
        *header = NULL;
    if (payload)
        *payload = NULL;
    if ((rc = key_for(key, JWS_ALG, 0, err, errlen)) < 0)
        return rc;
    if (len > max_len)
        return fail(err, errlen, RK_E_LIMIT, "JWS of %zu bytes exceeds the limit of %zu",
                    len, max_len);
    if (split_compact(jws, len, p, 3) < 0)
        return fail(err, errlen, RK_E_FORMAT,
                    "not a compact JWS: three base64url parts separated by dots expected");
    if ((rc = parse_header(&p[0], &h, err, errlen)) < 0)
        return rc;
    if ((rc = header_expect(h, "alg", JWS_ALG, err, errlen)) < 0)
        goto out;
    if (json_object_get(h, "crit")) {
        rc = fail(err, errlen, RK_JOSE_E_UNSUPPORTED,
                  "protected header has crit: no critical extensions are supported");
        goto out;
    }
    if (rk_b64url_decode(p[2].p, p[2].n, sig, sizeof sig, &sign) < 0 ||
        sign != (size_t)EVP_PKEY_get_size(key->pkey)) {
        rc = fail(err, errlen, RK_JOSE_E_SIGNATURE,
                  "JWS signature is malformed or does not match the key size");
        goto out;
    }
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestVerifyInit(md, &pctx, EVP_sha512(), NULL, key->pkey) != 1 ||
        !pss_params(pctx)) {
        rc = fail(err, errlen, RK_JOSE_E_CRYPTO, "RSA-PSS verification could not be set up");
        goto out;
    }
    /* the signing input is the first two parts and the dot between them */
    if (EVP_DigestVerify(md, sig, sign, (const unsigned char *)jws,
                         p[1].n + (size_t)(p[1].p - jws)) != 1) {
        rc = fail(err, errlen, RK_JOSE_E_SIGNATURE, "JWS signature does not verify");
        goto out;
    }
    rc = rk_b64url_decode_alloc(p[1].p, p[1].n, max_len, &raw, &rawn);
    if (rc < 0) {
        rc = fail(err, errlen, rc == -ENOMEM ? rc : RK_E_FORMAT, "JWS payload is not base64url");
        goto out;
    }
    json_error_t jerr;
    pl = json_loadb((const char *)raw, rawn, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(pl)) {
        rc = fail(err, errlen, RK_E_FORMAT, "JWS payload is not a JSON object");
        goto out;
    }
    if (header) {
        *header = h;
        h = NULL;
    }
    if (payload) {
        *payload = pl;
        pl = NULL;
    }
    rc = 0;
    if (err && errlen)
        err[0] = '\0';
out:
    EVP_MD_CTX_free(md);
    json_decref(h);
    json_decref(pl);
    free(raw);
    ERR_clear_error();
    return rc;
}

/* ---- SET payloads ------------------------------------------------------------------ */

int rk_uuid4(char *out, size_t outlen)
{
    unsigned char b[16];
    if (outlen < 37)
        return RK_E_LIMIT;
    if (RAND_bytes(b, sizeof b) != 1) {
        ERR_clear_error();
        return RK_JOSE_E_CRYPTO;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, outlen,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
             b[12], b[13], b[14], b[15]);
    return 0;
}

/* 8-4-4-4-12 hex digits, either case (the SET schema's pattern). */
static int is_uuid(const char *s)
{
    if (!s || strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* A GCM tag as the compact serialisation writes it: 22 base64url
 * characters that decode to 16 bytes. */
static int is_tag(const char *s)
{
    unsigned char t[TAG_LEN];
    size_t n = 0;
    return s && strlen(s) == RK_JOSE_TAG_B64_LEN &&
           rk_b64url_decode(s, RK_JOSE_TAG_B64_LEN, t, sizeof t, &n) == 0 && n == TAG_LEN;
}

/* The claims every FIT-Connect SET of a receiver carries; the event is
 * added by the caller. */
static int set_base(const rk_set_ids *ids, int64_t iat, json_t **out,
                    char *err, size_t errlen)
{
    char jti[37], sub[64], txn[64], b[64];
    *out = NULL;
    if (!ids || !is_uuid(ids->destination_id))
        return fail(err, errlen, RK_E_FORMAT, "destination id \"%s\" is not a UUID",
                    ids && ids->destination_id ? clean(ids->destination_id, b, sizeof b) : "");
    if (!is_uuid(ids->submission_id))
        return fail(err, errlen, RK_E_FORMAT, "submission id \"%s\" is not a UUID",
                    ids->submission_id ? clean(ids->submission_id, b, sizeof b) : "");
    if (!is_uuid(ids->case_id))
        return fail(err, errlen, RK_E_FORMAT, "case id \"%s\" is not a UUID",
                    ids->case_id ? clean(ids->case_id, b, sizeof b) : "");
    /* the SET schema's minimum for iat: 2020-01-01 */
    if (iat < 1577833200)
        return fail(err, errlen, RK_E_FORMAT, "iat %lld is before 2020-01-01", (long long)iat);
    if (rk_uuid4(jti, sizeof jti) < 0)
        return fail(err, errlen, RK_JOSE_E_CRYPTO, "no random bytes for the jti");
    snprintf(sub, sizeof sub, "submission:%s", ids->submission_id);
    snprintf(txn, sizeof txn, "case:%s", ids->case_id);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "$schema", RK_SET_SCHEMA,
                          "jti", jti, "iss", ids->destination_id, "iat", (json_int_t)iat,
                          "sub", sub, "txn", txn);
    if (!o)
        return -ENOMEM;
    *out = o;
    return 0;
}

int rk_set_build_accept(const rk_set_ids *ids, int64_t iat,
                        const char *metadata_tag, const char *data_tag,
                        const rk_set_attachment_tag *att, size_t n_att,
                        json_t **out, char *err, size_t errlen)
{
    char b[64];
    json_t *set = NULL, *tags = NULL, *atts = NULL;
    int rc;
    *out = NULL;
    if (!is_tag(metadata_tag))
        return fail(err, errlen, RK_E_FORMAT, "metadata authentication tag \"%s\" is malformed",
                    metadata_tag ? clean(metadata_tag, b, sizeof b) : "");
    if (data_tag && !is_tag(data_tag))
        return fail(err, errlen, RK_E_FORMAT, "data authentication tag \"%s\" is malformed",
                    clean(data_tag, b, sizeof b));
    if (n_att && !att)
        return fail(err, errlen, RK_E_FORMAT, "attachment tags missing");
    atts = json_object();
    if (!atts)
        return -ENOMEM;
    for (size_t i = 0; i < n_att; i++) {
        if (!is_uuid(att[i].attachment_id)) {
            rc = fail(err, errlen, RK_E_FORMAT, "attachment id \"%s\" is not a UUID",
                      att[i].attachment_id ? clean(att[i].attachment_id, b, sizeof b) : "");
            goto bad;
        }
        if (!is_tag(att[i].tag)) {
            rc = fail(err, errlen, RK_E_FORMAT,
                      "authentication tag of attachment %s is malformed", att[i].attachment_id);
            goto bad;
        }
        if (json_object_get(atts, att[i].attachment_id)) {
            rc = fail(err, errlen, RK_E_FORMAT, "attachment %s is given twice",
                      att[i].attachment_id);
            goto bad;
        }
        if (json_object_set_new(atts, att[i].attachment_id, json_string(att[i].tag)) != 0) {
            rc = -ENOMEM;
            goto bad;
        }
    }
    tags = json_pack("{s:s}", "metadata", metadata_tag);
    if (!tags || (data_tag && json_object_set_new(tags, "data", json_string(data_tag)) != 0) ||
        json_object_set(tags, "attachments", atts) != 0) {
        rc = -ENOMEM;
        goto bad;
    }
    if ((rc = set_base(ids, iat, &set, err, errlen)) < 0)
        goto bad;
    json_t *ev = json_pack("{s:{s:O}}", RK_SET_EVENT_ACCEPT, "authenticationTags", tags);
    if (!ev || json_object_set_new(set, "events", ev) != 0) {
        rc = -ENOMEM;
        goto bad;
    }
    json_decref(tags);
    json_decref(atts);
    *out = set;
    if (err && errlen)
        err[0] = '\0';
    return 0;
bad:
    json_decref(set);
    json_decref(tags);
    json_decref(atts);
    return rc;
}

int rk_set_build_reject(const rk_set_ids *ids, int64_t iat, const json_t *problems,
                        json_t **out, char *err, size_t errlen)
{
    static const char *const opt[] = { "detail", "instance" };
    json_t *set = NULL;
    int rc;
    *out = NULL;
    if (!json_is_array(problems) || json_array_size(problems) == 0)
        return fail(err, errlen, RK_E_FORMAT, "a reject needs a non-empty array of problems");
    if (json_array_size(problems) > 64)
        return fail(err, errlen, RK_E_LIMIT, "more than 64 problems");
    for (size_t i = 0; i < json_array_size(problems); i++) {
        json_t *p = json_array_get(problems, i);
        if (!json_is_object(p) || !json_is_string(json_object_get(p, "type")) ||
            !json_is_string(json_object_get(p, "title")))
            return fail(err, errlen, RK_E_FORMAT,
                        "problem %zu needs string members type and title", i);
        for (int k = 0; k < 2; k++) {
            json_t *v = json_object_get(p, opt[k]);
            if (v && !json_is_string(v))
                return fail(err, errlen, RK_E_FORMAT, "problem %zu: %s must be a string", i,
                            opt[k]);
        }
    }
    if ((rc = set_base(ids, iat, &set, err, errlen)) < 0)
        return rc;
    json_t *copy = json_deep_copy(problems);
    json_t *ev = copy ? json_pack("{s:{s:o}}", RK_SET_EVENT_REJECT, "problems", copy) : NULL;
    if (!ev || json_object_set_new(set, "events", ev) != 0) {
        json_decref(set);
        return -ENOMEM;
    }
    *out = set;
    if (err && errlen)
        err[0] = '\0';
    return 0;
}

int rk_set_sign(const rk_jose_key *key, const char *kid, const json_t *payload,
                char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!kid)
        kid = key->kid;
    if (!kid || !*kid)
        return fail(err, errlen, RK_JOSE_E_KEY,
                    "no kid for the SET: the signing key's JWK has none and none was given");
    json_t *h = json_pack("{s:s, s:s, s:s}", "typ", "secevent+jwt", "alg", JWS_ALG, "kid", kid);
    if (!h)
        return -ENOMEM;
    int rc = rk_jws_sign_ps512(key, h, payload, out, err, errlen);
    json_decref(h);
    return rc;
}

/* ---- hashes and callbacks ----------------------------------------------------------- */

/* Decodes exactly 2n hex digits (either case) into n bytes. */
static int hex_decode(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        int c = (unsigned char)s[i], v;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        else return -1;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return s[2 * n] == '\0' ? 0 : -1;
}

void rk_sha512_hex(const void *data, size_t len, char *out)
{
    unsigned char md[64];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha512(), NULL) != 1 || mdlen != 64) {
        out[0] = '\0';
        ERR_clear_error();
        return;
    }
    rk_hex_encode(md, 64, out);
}

int rk_sha512_matches(const void *data, size_t len, const char *hex)
{
    unsigned char want[64], md[64];
    unsigned int mdlen = 0;
    if (!hex || strlen(hex) != 128 || hex_decode(hex, want, 64) < 0)
        return 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha512(), NULL) != 1 || mdlen != 64) {
        ERR_clear_error();
        return 0;
    }
    return CRYPTO_memcmp(want, md, 64) == 0;
}

/* Raw HMAC-SHA512 over timestamp "." body with EVP_MAC. */
static int callback_mac_raw(const void *secret, size_t secretlen, const char *timestamp,
                            const void *body, size_t bodylen, unsigned char *mac)
{
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA512", 0),
        OSSL_PARAM_construct_end()
    };
    size_t n = 0;
    int ok = c && EVP_MAC_init(c, secret, secretlen, params) == 1 &&
             EVP_MAC_update(c, (const unsigned char *)timestamp, strlen(timestamp)) == 1 &&
             EVP_MAC_update(c, (const unsigned char *)".", 1) == 1 &&
             (bodylen == 0 || EVP_MAC_update(c, body, bodylen) == 1) &&
             EVP_MAC_final(c, mac, &n, 64) == 1 && n == 64;
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    ERR_clear_error();
    return ok ? 0 : RK_JOSE_E_CRYPTO;
}

int rk_callback_mac(const void *secret, size_t secretlen, const char *timestamp,
                    const void *body, size_t bodylen, char *out, size_t outlen)
{
    unsigned char mac[64];
    if (outlen < 129)
        return RK_E_LIMIT;
    int rc = callback_mac_raw(secret, secretlen, timestamp, body, bodylen, mac);
    if (rc == 0)
        rk_hex_encode(mac, 64, out);
    return rc;
}

/*
 * Verifies a FIT-Connect callback.  Formats are checked first (they are
 * public), then the MAC in constant time, then the clock: an attacker
 * without the secret learns only "MAC does not match".  The window is
 * symmetric, since a timestamp far in the future would stay "fresh" for
 * as long as it is ahead and so could be replayed.
 */
int rk_callback_verify(const void *secret, size_t secretlen, const char *timestamp,
                       const char *mac, const void *body, size_t bodylen, int64_t now,
                       char *err, size_t errlen)
{
    unsigned char want[64], got[64];
    int64_t ts = 0;
    if (!secret || secretlen == 0)
        return fail(err, errlen, RK_JOSE_E_KEY, "no callback secret configured");
    size_t tl = timestamp ? strlen(timestamp) : 0;
    if (tl == 0 || tl > 18 || strspn(timestamp, "0123456789") != tl ||
        rk_parse_int64(timestamp, &ts) < 0)
        return fail(err, errlen, RK_E_FORMAT,
                    "callback-timestamp is not a Unix time in seconds");
    if (!mac || strlen(mac) != 128 || hex_decode(mac, got, 64) < 0)
        return fail(err, errlen, RK_E_FORMAT,
                    "callback-authentication is not 128 hex digits (HMAC-SHA512)");
    int rc = callback_mac_raw(secret, secretlen, timestamp, body, bodylen, want);
    if (rc < 0)
        return fail(err, errlen, rc, "HMAC-SHA512 failed");
    rc = CRYPTO_memcmp(want, got, 64);
    OPENSSL_cleanse(want, sizeof want);
    if (rc != 0)
        return fail(err, errlen, RK_JOSE_E_MAC, "callback-authentication does not match");
    if (ts < now - RK_CALLBACK_MAX_SKEW_S)
        return fail(err, errlen, RK_JOSE_E_STALE,
                    "callback-timestamp is %lld s old; at most %d s are accepted",
                    (long long)(now - ts), RK_CALLBACK_MAX_SKEW_S);
    if (ts > now + RK_CALLBACK_MAX_SKEW_S)
        return fail(err, errlen, RK_JOSE_E_STALE,
                    "callback-timestamp is %lld s in the future; at most %d s are accepted",
                    (long long)(ts - now), RK_CALLBACK_MAX_SKEW_S);
    if (err && errlen)
        err[0] = '\0';
    return 0;
}
