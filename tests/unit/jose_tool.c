/*
 * jose_tool.c — agent/jose.c from the command line, for the interop test
 * tests/system/test_jose_interop.py (jwcrypto on the other side).  Not a
 * unit test (no test_ prefix), not installed.
 *
 *   jose_tool decrypt KEY JWEFILE OUTFILE     plaintext to OUTFILE; kid=,
 *                                             cty=, tag=, len= on stdout
 *   jose_tool peek JWEFILE                    kid= and tag= on stdout
 *   jose_tool sign-accept KEY DEST SUB CASE IAT METATAG DATATAG|- [ATTID=TAG...]
 *   jose_tool sign-reject KEY DEST SUB CASE IAT PROBLEMS.json
 *                                             the signed SET on stdout
 *   jose_tool verify KEY JWSFILE              header and payload JSON on
 *                                             stdout, one line each
 *   jose_tool pubjwk KEY                      the public JWK on stdout
 *   jose_tool sha512 FILE                     hex digest on stdout
 *
 * Exit status: 0 done, 1 refused (stderr: "jose_tool: CODE: message"),
 * 2 usage or I/O error.  Key files are JWK or PEM, as rk_jose_key_load
 * reads them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jose.h"
#include "util.h"

#define MAX_IN (64 * 1024 * 1024)

static int usage(void)
{
    fprintf(stderr, "usage: jose_tool decrypt KEY JWEFILE OUTFILE | peek JWEFILE |\n"
                    "  sign-accept KEY DEST SUB CASE IAT METATAG DATATAG|- [ATTID=TAG...] |\n"
                    "  sign-reject KEY DEST SUB CASE IAT PROBLEMS.json |\n"
                    "  verify KEY JWSFILE | pubjwk KEY | sha512 FILE\n");
    return 2;
}

static int refused(int rc, const char *msg)
{
    fprintf(stderr, "jose_tool: %d %s: %s\n", rc, rk_jose_strerror(rc), msg);
    return 1;
}

/* Reads a whole file; trailing newlines cut when text is set. */
static char *read_in(const char *path, int text, size_t *len)
{
    char *s = NULL;
    int rc = rk_read_file(path, MAX_IN, &s, len);
    if (rc < 0) {
        fprintf(stderr, "jose_tool: %s: %s\n", path, rk_strerror(rc));
        return NULL;
    }
    while (text && *len && (s[*len - 1] == '\n' || s[*len - 1] == '\r'))
        s[--*len] = '\0';
    return s;
}

static int cmd_decrypt(char **argv)
{
    char err[256];
    rk_jose_key *k = NULL;
    rk_jwe_result r;
    size_t n = 0;
    int rc = rk_jose_key_load(argv[0], RK_JOSE_KEY_PRIVATE, &k, err, sizeof err);
    if (rc < 0)
        return refused(rc, err);
    char *jwe = read_in(argv[1], 1, &n);
    if (!jwe) {
        rk_jose_key_free(k);
        return 2;
    }
    rc = rk_jwe_decrypt(k, jwe, n, MAX_IN, &r, err, sizeof err);
    free(jwe);
    rk_jose_key_free(k);
    if (rc < 0)
        return refused(rc, err);
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(r.plaintext, 1, r.len, f) != r.len || fclose(f) != 0) {
        fprintf(stderr, "jose_tool: cannot write %s\n", argv[2]);
        rk_jwe_result_free(&r);
        return 2;
    }
    printf("kid=%s\ncty=%s\ntag=%s\nlen=%zu\n", r.kid, r.cty, r.tag, r.len);
    rk_jwe_result_free(&r);
    return 0;
}

static int cmd_peek(char **argv)
{
    char err[256], kid[256], tag[32];
    size_t n = 0;
    char *jwe = read_in(argv[0], 1, &n);
    if (!jwe)
        return 2;
    int rc = rk_jwe_peek(jwe, n, kid, sizeof kid, tag, sizeof tag, err, sizeof err);
    free(jwe);
    if (rc < 0)
        return refused(rc, err);
    printf("kid=%s\ntag=%s\n", kid, tag);
    return 0;
}

/* Signs the SET in set (taken over) and prints it. */
static int sign_and_print(const char *keyfile, json_t *set)
{
    char err[256], *jws = NULL;
    rk_jose_key *k = NULL;
    int rc = rk_jose_key_load(keyfile, RK_JOSE_KEY_PRIVATE, &k, err, sizeof err);
    if (rc == 0)
        rc = rk_set_sign(k, NULL, set, &jws, err, sizeof err);
    rk_jose_key_free(k);
    json_decref(set);
    if (rc < 0)
        return refused(rc, err);
    printf("%s\n", jws);
    free(jws);
    return 0;
}

static int cmd_sign(int accept, int argc, char **argv)
{
    char err[256];
    int64_t iat = 0;
    json_t *set = NULL;
    rk_set_ids ids = { argv[1], argv[2], argv[3] };
    if (rk_parse_int64(argv[4], &iat) < 0)
        return usage();
    if (accept) {
        size_t n = (size_t)(argc - 7);
        rk_set_attachment_tag *att = calloc(n ? n : 1, sizeof *att);
        if (!att)
            return 2;
        for (size_t i = 0; i < n; i++) {
            char *eq = strchr(argv[7 + i], '=');
            if (!eq) {
                free(att);
                return usage();
            }
            *eq = '\0';
            att[i].attachment_id = argv[7 + i];
            att[i].tag = eq + 1;
        }
        const char *data = strcmp(argv[6], "-") == 0 ? NULL : argv[6];
        int rc = rk_set_build_accept(&ids, iat, argv[5], data, att, n, &set, err, sizeof err);
        free(att);
        if (rc < 0)
            return refused(rc, err);
    } else {
        json_error_t jerr;
        json_t *problems = json_load_file(argv[5], 0, &jerr);
        if (!problems) {
            fprintf(stderr, "jose_tool: %s: %s\n", argv[5], jerr.text);
            return 2;
        }
        int rc = rk_set_build_reject(&ids, iat, problems, &set, err, sizeof err);
        json_decref(problems);
        if (rc < 0)
            return refused(rc, err);
    }
    return sign_and_print(argv[0], set);
}

static int cmd_verify(char **argv)
{
    char err[256];
    rk_jose_key *k = NULL;
    json_t *h = NULL, *p = NULL;
    size_t n = 0;
    int rc = rk_jose_key_load(argv[0], RK_JOSE_KEY_PUBLIC, &k, err, sizeof err);
    if (rc < 0)
        return refused(rc, err);
    char *jws = read_in(argv[1], 1, &n);
    if (!jws) {
        rk_jose_key_free(k);
        return 2;
    }
    rc = rk_jws_verify_ps512(k, jws, n, MAX_IN, &h, &p, err, sizeof err);
    free(jws);
    rk_jose_key_free(k);
    if (rc < 0)
        return refused(rc, err);
    char *hs = json_dumps(h, JSON_COMPACT), *ps = json_dumps(p, JSON_COMPACT);
    printf("%s\n%s\n", hs, ps);
    free(hs);
    free(ps);
    json_decref(h);
    json_decref(p);
    return 0;
}

static int cmd_pubjwk(char **argv)
{
    char err[256];
    rk_jose_key *k = NULL;
    json_t *j = NULL;
    int rc = rk_jose_key_load(argv[0], RK_JOSE_KEY_PUBLIC, &k, err, sizeof err);
    if (rc < 0)
        return refused(rc, err);
    rc = rk_jose_key_public_jwk(k, &j);
    rk_jose_key_free(k);
    if (rc < 0)
        return refused(rc, "cannot export the public key");
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(j);
    return 0;
}

static int cmd_sha512(char **argv)
{
    size_t n = 0;
    char hex[129];
    char *d = read_in(argv[0], 0, &n);
    if (!d)
        return 2;
    rk_sha512_hex(d, n, hex);
    free(d);
    printf("%s\n", hex);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *c = argv[1];
    if (strcmp(c, "decrypt") == 0 && argc == 5)
        return cmd_decrypt(argv + 2);
    if (strcmp(c, "peek") == 0 && argc == 3)
        return cmd_peek(argv + 2);
    if (strcmp(c, "sign-accept") == 0 && argc >= 9)
        return cmd_sign(1, argc - 2, argv + 2);
    if (strcmp(c, "sign-reject") == 0 && argc == 8)
        return cmd_sign(0, argc - 2, argv + 2);
    if (strcmp(c, "verify") == 0 && argc == 4)
        return cmd_verify(argv + 2);
    if (strcmp(c, "pubjwk") == 0 && argc == 3)
        return cmd_pubjwk(argv + 2);
    if (strcmp(c, "sha512") == 0 && argc == 3)
        return cmd_sha512(argv + 2);
    return usage();
}
