/*
 * fuzz_httpinbox.c — libFuzzer harness for the answers a networked inbox
 * reads from servers it polls (agent/inbox_parse.c):
 *
 *   - rk__http_list_parse, the generic HTTP inbox's list page, with the
 *     default settings (list_items "submissions", list_id "id", list_next
 *     "next") and with nested paths ("data.items", "ref", "paging.next")
 *     and the root as the list ("."),
 *   - rk__oauth_token_parse (with and without the bearer check, as the HTTP
 *     inbox and FIT-Connect call it) and rk__oauth_error_code, the OAuth2
 *     token endpoint's answer and refusal.
 *
 * Every input goes through all of them (each is cheap), so the seeds in
 * tests/fuzz/corpus/httpinbox are plain JSON answers.
 *
 * Contract besides "no crash": every id handed to the callback is
 * non-empty, at most 200 bytes and free of control characters; a parse
 * gives 0 or one of the two error codes, with a reason when it fails and a
 * cursor without control characters when it succeeds; a token is
 * non-empty without blanks or control characters and its lifetime is
 * positive; an error code is [a-z_]* and shorter than its buffer.  The
 * same input gives the same answer twice.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inbox_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct ids {
    size_t n;
    unsigned long sum; /* to compare two runs */
    size_t stop_after; /* 0: never */
} ids;

static int on_id(void *arg, size_t i, const char *id)
{
    ids *t = arg;
    if (id) {
        size_t len = strlen(id);
        if (len == 0 || len > RK__HTTP_MAX_ID_LEN)
            abort();
        for (size_t k = 0; k < len; k++) {
            if ((unsigned char)id[k] < 0x20 || id[k] == 0x7f)
                abort();
            t->sum = t->sum * 31 + (unsigned char)id[k];
        }
    }
    t->sum += i;
    t->n++;
    return t->stop_after && t->n >= t->stop_after ? 1 : 0;
}

static void list_checked(const char *body, size_t len, const char *items, const char *id,
                         const char *next, size_t stop_after)
{
    ids a = {0, 0, stop_after}, b = {0, 0, stop_after};
    char cur[2048], cur2[2048], why[256], why2[256];
    int rc = rk__http_list_parse(body, len, items, id, next, on_id, &a, cur, sizeof cur, why,
                                 sizeof why);
    int rc2 = rk__http_list_parse(body, len, items, id, next, on_id, &b, cur2, sizeof cur2,
                                  why2, sizeof why2);
    if (rc != rc2 || a.n != b.n || a.sum != b.sum || strcmp(cur, cur2) != 0)
        abort();
    if (stop_after && a.n > stop_after)
        abort();
    if (rc == 0) {
        for (const char *p = cur; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
    } else if (rc == RK__LIST_UNUSABLE || rc == RK__LIST_BAD_NEXT) {
        if (!why[0] || cur[0])
            abort();
    } else {
        abort();
    }
}

static void token_checked(const char *body, size_t len, int bearer)
{
    char *tok = NULL;
    int64_t life = -1;
    int rc = rk__oauth_token_parse(body, len, bearer, &tok, &life);
    if (rc == 0) {
        if (!tok || !tok[0] || life <= 0 || life > RK__TOKEN_MAX_LIFE_S * 1000)
            abort();
        for (const char *p = tok; *p; p++)
            if ((unsigned char)*p < 0x21 || *p == 0x7f)
                abort();
        free(tok);
    } else if (rc != -1 || tok) {
        abort();
    }
    char code[64];
    rk__oauth_error_code(body, len, code, sizeof code);
    for (const char *p = code; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
            abort();
    char tiny[4];
    rk__oauth_error_code(body, len, tiny, sizeof tiny);
    if (strlen(tiny) > 3)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the inboxes get a NUL-terminated body of len bytes (curl_uv.c) */
    char *body = malloc(size + 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    list_checked(body, size, "submissions", "id", "next", 0);
    list_checked(body, size, "data.items", "ref", "paging.next", 3);
    list_checked(body, size, ".", "id", "", 0);
    token_checked(body, size, 1);
    token_checked(body, size, 0);
    free(body);
    return 0;
}

#define RK_FUZZ_NAME "fuzz_httpinbox"
#include "replay_main.h"
