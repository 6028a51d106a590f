/*
 * jose.h — the cryptography of the FIT-Connect receiving side: base64url,
 * RSA keys from JWK or PEM files, compact JWE decryption (RSA-OAEP-256 +
 * A256GCM), compact JWS signing and verification (PS512), the Security
 * Event Token payloads that accept or reject a submission, SHA-512 hashes
 * and the HMAC-SHA512 check of callbacks.
 *
 * Everything is done with OpenSSL 3 EVP (libcrypto) and jansson; nothing
 * here does I/O except rk_jose_key_load, and nothing blocks on the
 * network, so every function may run on a worker thread.  All inputs are
 * bounded (see the limits below); secrets are never logged or put into
 * error messages.
 *
 * Errors are negative ints: RK_E_FORMAT / RK_E_LIMIT from util.h, -errno,
 * or the RK_JOSE_E_* codes below; rk_jose_strerror names any of them.
 * Functions that take (err, errlen) also write a one-line English message
 * there naming the offending field or value (never key material).
 *
 * Ownership: every pointer a function hands out through an out-parameter
 * is new and belongs to the caller: keys are freed with rk_jose_key_free,
 * char * / unsigned char * with free(), json_t * with json_decref, and an
 * rk_jwe_result with rk_jwe_result_free.  Inputs are only borrowed.
 */
#ifndef RK_JOSE_H
#define RK_JOSE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

enum {
    RK_JOSE_E_UNSUPPORTED = -10101, /* alg, enc, zip, crit or kty we refuse */
    RK_JOSE_E_DECRYPT = -10102,     /* wrong key or tampered JWE */
    RK_JOSE_E_SIGNATURE = -10103,   /* JWS signature does not verify */
    RK_JOSE_E_KEY = -10104,         /* key file or JWK unusable */
    RK_JOSE_E_MAC = -10105,         /* callback HMAC does not match */
    RK_JOSE_E_STALE = -10106,       /* callback timestamp outside tolerance */
    RK_JOSE_E_CRYPTO = -10107       /* OpenSSL failed where it should not */
};
/* Names an RK_JOSE_E_* code; other codes go to rk_strerror. */
const char *rk_jose_strerror(int err);

/* Limits. */
#define RK_JOSE_MAX_KEY_FILE (64 * 1024)   /* JWK or PEM file */
#define RK_JOSE_MAX_HEADER (8 * 1024)      /* encoded protected header */
#define RK_JOSE_MIN_RSA_BITS 2048
#define RK_JOSE_MAX_RSA_BITS 8192
#define RK_JOSE_TAG_B64_LEN 22             /* 16-byte GCM tag, base64url */
#define RK_CALLBACK_MAX_SKEW_S 300         /* five minutes */

/* ---- base64url (RFC 4648 §5, no padding) ------------------------------ */

/* Characters needed to encode n bytes (without the NUL). */
size_t rk_b64url_enclen(size_t n);
/* Encodes n bytes into out, which must hold rk_b64url_enclen(n) + 1
 * bytes; NUL-terminates.  0 or RK_E_LIMIT when out is too small. */
int rk_b64url_encode(const void *src, size_t n, char *out, size_t outlen);
/* Decodes n characters into out (capacity outlen), *outn = bytes written.
 * Refuses padding, whitespace, characters outside [A-Za-z0-9_-], an
 * impossible length (n % 4 == 1) and non-zero leftover bits, so every
 * byte string has exactly one accepted encoding: RK_E_FORMAT.
 * RK_E_LIMIT when the result would not fit. */
int rk_b64url_decode(const char *src, size_t n, unsigned char *out,
                     size_t outlen, size_t *outn);
/* As above into a new buffer of at most max bytes (*out gets one extra
 * NUL byte so text can be used as a string; caller frees). */
int rk_b64url_decode_alloc(const char *src, size_t n, size_t max,
                           unsigned char **out, size_t *outn);

/* ---- keys --------------------------------------------------------------- */

typedef struct rk_jose_key rk_jose_key;

enum { RK_JOSE_KEY_PUBLIC = 0, RK_JOSE_KEY_PRIVATE = 1 };

/* Loads an RSA key from a file holding either a JWK (JSON object with
 * kty "RSA", n, e and for a private key d, p, q, dp, dq, qi) or PEM
 * (PKCS#8 / PKCS#1 private key, or a SubjectPublicKeyInfo public key).
 * want = RK_JOSE_KEY_PRIVATE requires the private part; a private key
 * file may also be loaded as RK_JOSE_KEY_PUBLIC (only its public half is
 * kept).  Keys outside RK_JOSE_MIN_RSA_BITS..RK_JOSE_MAX_RSA_BITS and
 * private keys whose parts do not belong together (OpenSSL's pairwise
 * check, ~0.3 s for 4096 bits: load keys once) give RK_JOSE_E_KEY;
 * encrypted PEM gives RK_JOSE_E_UNSUPPORTED. */
int rk_jose_key_load(const char *path, int want, rk_jose_key **out,
                     char *err, size_t errlen);
/* The same from a parsed JWK / from PEM text in memory. */
int rk_jose_key_from_jwk(const json_t *jwk, int want, rk_jose_key **out,
                         char *err, size_t errlen);
int rk_jose_key_from_pem(const char *pem, size_t len, int want,
                         rk_jose_key **out, char *err, size_t errlen);
void rk_jose_key_free(rk_jose_key *k);

/* The JWK's "kid" and "alg" (NULL when absent or loaded from PEM),
 * borrowed from k.  When a JWK names an alg, the key is only used for
 * that alg (RSA-OAEP-256 for decryption, PS512 for signatures). */
const char *rk_jose_key_kid(const rk_jose_key *k);
const char *rk_jose_key_alg(const rk_jose_key *k);
int rk_jose_key_bits(const rk_jose_key *k);
int rk_jose_key_is_private(const rk_jose_key *k);
/* The public half as a new JWK {"kty","n","e"[,"kid"][,"alg"]}. */
int rk_jose_key_public_jwk(const rk_jose_key *k, json_t **out);

/* ---- JWE: RSA-OAEP-256 + A256GCM, compact serialisation --------------- */

typedef struct rk_jwe_result {
    unsigned char *plaintext; /* new, NUL-terminated (not counted) */
    size_t len;
    char kid[256];            /* protected header "kid", "" when absent */
    char cty[128];            /* protected header "cty", "" when absent */
    char tag[RK_JOSE_TAG_B64_LEN + 1]; /* authentication tag, base64url */
} rk_jwe_result;

/* Decrypts a compact JWE (five base64url parts) with key.  The protected
 * header must say alg RSA-OAEP-256 and enc A256GCM; zip, crit and any
 * other alg or enc are refused with RK_JOSE_E_UNSUPPORTED and a message
 * naming the value.  The ciphertext may not exceed max_plain bytes
 * (RK_E_LIMIT).  A wrong key and a tampered JWE both give
 * RK_JOSE_E_DECRYPT with the same message: a failed key unwrap carries on
 * with a random key so the two are not told apart (RFC 7516 §11.5).
 * On success fills *res (free with rk_jwe_result_free). */
int rk_jwe_decrypt(const rk_jose_key *key, const char *jwe, size_t len,
                   size_t max_plain, rk_jwe_result *res,
                   char *err, size_t errlen);
void rk_jwe_result_free(rk_jwe_result *res);

/* Reads kid and authentication tag of a compact JWE without decrypting
 * (to pick a key by kid); same shape checks as rk_jwe_decrypt.  kid (may
 * be NULL) is "" when absent; tag needs RK_JOSE_TAG_B64_LEN + 1 bytes. */
int rk_jwe_peek(const char *jwe, size_t len, char *kid, size_t kidlen,
                char *tag, size_t taglen, char *err, size_t errlen);

/* ---- JWS: PS512, compact serialisation -------------------------------- */

/* Signs payload (any JSON value, serialised compactly) with header (a
 * JSON object; "alg" is set to PS512, any other alg is refused).  RSA-PSS
 * with SHA-512, MGF1-SHA-512, salt length 64.  *out is new. */
int rk_jws_sign_ps512(const rk_jose_key *key, const json_t *header,
                      const json_t *payload, char **out,
                      char *err, size_t errlen);
/* Verifies a compact JWS made with PS512 by the holder of key (public or
 * private).  Refuses alg "none" and every alg but PS512, crit, an input
 * longer than max_len, and a payload that is not a JSON object.  On
 * success *header and *payload (either may be NULL) receive new
 * references.  A bad signature is RK_JOSE_E_SIGNATURE. */
int rk_jws_verify_ps512(const rk_jose_key *key, const char *jws, size_t len,
                        size_t max_len, json_t **header, json_t **payload,
                        char *err, size_t errlen);

/* ---- Security Event Tokens for FIT-Connect ---------------------------- */

#define RK_SET_SCHEMA \
    "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"
#define RK_SET_EVENT_ACCEPT \
    "https://schema.fitko.de/fit-connect/events/accept-submission"
#define RK_SET_EVENT_REJECT \
    "https://schema.fitko.de/fit-connect/events/reject-submission"

typedef struct rk_set_ids {
    const char *destination_id; /* becomes iss */
    const char *submission_id;  /* becomes sub "submission:ID" */
    const char *case_id;        /* becomes txn "case:ID" */
} rk_set_ids;

typedef struct rk_set_attachment_tag {
    const char *attachment_id;  /* UUID */
    const char *tag;            /* base64url authentication tag */
} rk_set_attachment_tag;

/* Builds the payload of an accept-submission SET: $schema, jti (random
 * UUID v4), iss, iat, sub, txn and events {ACCEPT: {authenticationTags:
 * {metadata, data, attachments: {id: tag}}}}.  data_tag may be NULL (a
 * submission without data); attachments is always present (possibly
 * empty).  Ids must be UUIDs and tags 22-character base64url, else
 * RK_E_FORMAT naming the field.  *out is new. */
int rk_set_build_accept(const rk_set_ids *ids, int64_t iat,
                        const char *metadata_tag, const char *data_tag,
                        const rk_set_attachment_tag *att, size_t n_att,
                        json_t **out, char *err, size_t errlen);
/* Builds the payload of a reject-submission SET: as above with events
 * {REJECT: {problems: [...]}}; problems is a non-empty JSON array of
 * objects each with string "type" and "title" (and optionally string
 * "detail", "instance"); it is deep-copied. */
int rk_set_build_reject(const rk_set_ids *ids, int64_t iat,
                        const json_t *problems, json_t **out,
                        char *err, size_t errlen);
/* Signs a SET payload: header {"typ":"secevent+jwt","alg":"PS512",
 * "kid":kid} (kid NULL: the key's own kid; neither: RK_JOSE_E_KEY). */
int rk_set_sign(const rk_jose_key *key, const char *kid,
                const json_t *payload, char **out, char *err, size_t errlen);

/* ---- hashes and callbacks --------------------------------------------- */

/* Lowercase hex SHA-512 of data (out >= 129 bytes). */
void rk_sha512_hex(const void *data, size_t len, char *out);
/* 1 when hex (either case) is the SHA-512 of data, else 0. */
int rk_sha512_matches(const void *data, size_t len, const char *hex);

/* The FIT-Connect callback MAC: lowercase hex HMAC-SHA512, keyed with
 * the callback secret, over timestamp "." body (out >= 129 bytes). */
int rk_callback_mac(const void *secret, size_t secretlen,
                    const char *timestamp, const void *body, size_t bodylen,
                    char *out, size_t outlen);
/* Checks a callback: timestamp is the callback-timestamp header (Unix
 * seconds), mac the callback-authentication header (128 hex digits).
 * The MAC is compared in constant time (RK_JOSE_E_MAC); then a timestamp
 * more than RK_CALLBACK_MAX_SKEW_S seconds before or after now (Unix
 * seconds) is refused with RK_JOSE_E_STALE. */
int rk_callback_verify(const void *secret, size_t secretlen,
                       const char *timestamp, const char *mac,
                       const void *body, size_t bodylen, int64_t now,
                       char *err, size_t errlen);

/* A random UUID v4, lowercase (out >= 37 bytes); 0 or RK_JOSE_E_CRYPTO. */
int rk_uuid4(char *out, size_t outlen);

#endif /* RK_JOSE_H */
