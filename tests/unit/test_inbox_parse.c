/*
 * test_inbox_parse.c — agent/inbox_parse.c: the OAuth2 token answer (token
 * checks, bearer check, lifetime default and cap on both sides), the
 * refusal's error code, the HTTP inbox list page (ids, stop, cursor, bad
 * next), FIT-Connect list pages, submission answers and metadata checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbox_parse.h"

#define S(x) x, strlen(x)

/* ---- OAuth2 ------------------------------------------------------------- */

static void test_token_ok_and_lifetime(void **state)
{
    (void)state;
    char *tok = NULL;
    int64_t life = 0;
    assert_int_equal(rk__oauth_token_parse(S("{\"access_token\":\"abc.def\",\"token_type\":"
                                             "\"Bearer\",\"expires_in\":300}"),
                                           1, &tok, &life),
                     0);
    assert_string_equal(tok, "abc.def");
    assert_int_equal(life, 300000);
    free(tok);
    /* absent or non-positive expires_in: one hour */
    assert_int_equal(rk__oauth_token_parse(S("{\"access_token\":\"t\",\"expires_in\":-5}"), 1,
                                           &tok, &life),
                     0);
    assert_int_equal(life, 3600000);
    free(tok);
}

static void test_token_lifetime_cap_both_sides(void **state)
{
    (void)state;
    char *tok = NULL, body[160];
    int64_t life = 0;
    /* exactly the cap: kept */
    snprintf(body, sizeof body, "{\"access_token\":\"t\",\"expires_in\":%lld}",
             (long long)RK__TOKEN_MAX_LIFE_S);
    assert_int_equal(rk__oauth_token_parse(S(body), 1, &tok, &life), 0);
    assert_int_equal(life, RK__TOKEN_MAX_LIFE_S * 1000);
    free(tok);
    /* one more, and 2^63-1 (overflowed before): capped */
    snprintf(body, sizeof body, "{\"access_token\":\"t\",\"expires_in\":%lld}",
             (long long)RK__TOKEN_MAX_LIFE_S + 1);
    assert_int_equal(rk__oauth_token_parse(S(body), 1, &tok, &life), 0);
    assert_int_equal(life, RK__TOKEN_MAX_LIFE_S * 1000);
    free(tok);
    assert_int_equal(rk__oauth_token_parse(S("{\"access_token\":\"t\",\"expires_in\":"
                                             "9223372036854775807}"),
                                           1, &tok, &life),
                     0);
    assert_int_equal(life, RK__TOKEN_MAX_LIFE_S * 1000);
    free(tok);
}

static void test_token_refused(void **state)
{
    (void)state;
    char *tok = (char *)"x";
    int64_t life = 1;
    const char *bad[] = {"{\"access_token\":\"\"}", "{\"access_token\":\"a b\"}",
                         "{\"access_token\":\"a\\u0000b\"}", "{\"access_token\":7}",
                         "{\"token\":\"a\"}", "[\"access_token\"]", "not json", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rk__oauth_token_parse(S(bad[i]), 0, &tok, &life), -1);
        assert_null(tok);
    }
    assert_int_equal(rk__oauth_token_parse(NULL, 0, 0, &tok, &life), -1);
    /* token_type: only checked when asked (the HTTP inbox asks) */
    const char *mac = "{\"access_token\":\"a\",\"token_type\":\"mac\"}";
    assert_int_equal(rk__oauth_token_parse(S(mac), 1, &tok, &life), -1);
    assert_int_equal(rk__oauth_token_parse(S(mac), 0, &tok, &life), 0);
    free(tok);
}

static void test_error_code(void **state)
{
    (void)state;
    char code[64];
    rk__oauth_error_code(S("{\"error\":\"invalid_client\",\"error_description\":\"secret\"}"),
                         code, sizeof code);
    assert_string_equal(code, "invalid_client");
    rk__oauth_error_code(S("{\"error\":\"invalid-Client\"}"), code, sizeof code);
    assert_string_equal(code, "invalid"); /* cut at the first other character */
    char tiny[4];
    rk__oauth_error_code(S("{\"error\":\"invalid_client\"}"), tiny, sizeof tiny);
    assert_string_equal(tiny, "inv");
    rk__oauth_error_code(S("oops"), code, sizeof code);
    assert_string_equal(code, "");
}

/* ---- HTTP inbox list ------------------------------------------------------ */

typedef struct got {
    char ids[8][64];
    size_t n, nulls, stop_after;
} got;

static int take(void *arg, size_t i, const char *id)
{
    got *g = arg;
    (void)i;
    if (!id)
        g->nulls++;
    else if (g->n < 8)
        snprintf(g->ids[g->n++], sizeof g->ids[0], "%s", id);
    return g->stop_after && g->n >= g->stop_after ? 1 : 0;
}

static void test_list_ids_and_cursor(void **state)
{
    (void)state;
    got g = {0};
    char cur[64], why[128];
    assert_int_equal(rk__http_list_parse(S("{\"submissions\":[{\"id\":\"a\"},{\"id\":42},"
                                           "{\"id\":\"\"},{\"x\":1},{\"id\":\"c\\u0001\"}],"
                                           "\"next\":\"p2\"}"),
                                         "submissions", "id", "next", take, &g, cur,
                                         sizeof cur, why, sizeof why),
                     0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.ids[0], "a");
    assert_string_equal(g.ids[1], "42");
    assert_int_equal(g.nulls, 3);
    assert_string_equal(cur, "p2");
    /* nested paths, the callback stops early, no next */
    got h = {.stop_after = 1};
    assert_int_equal(rk__http_list_parse(S("{\"data\":{\"items\":[\"x\",\"y\"]},"
                                           "\"paging\":{\"next\":null}}"),
                                         "data.items", "id", "paging.next", take, &h, cur,
                                         sizeof cur, why, sizeof why),
                     0);
    assert_int_equal(h.n, 1);
    assert_string_equal(cur, "");
}

static void test_list_refused(void **state)
{
    (void)state;
    got g = {0};
    char cur[64], why[128];
    assert_int_equal(rk__http_list_parse(S("{\"submissions\":{}}"), "submissions", "id",
                                         "next", take, &g, cur, sizeof cur, why, sizeof why),
                     RK__LIST_UNUSABLE);
    assert_non_null(strstr(why, "no array"));
    assert_int_equal(rk__http_list_parse(S("{\"submissions\":[], \"next\":{}}"),
                                         "submissions", "id", "next", take, &g, cur,
                                         sizeof cur, why, sizeof why),
                     RK__LIST_BAD_NEXT);
    assert_string_equal(cur, "");
    assert_int_equal(rk__http_list_parse(S("{\"submissions\":[]"), "submissions", "id",
                                         "next", take, &g, cur, sizeof cur, why, sizeof why),
                     RK__LIST_UNUSABLE);
    assert_non_null(strstr(why, "not JSON"));
}

/* ---- FIT-Connect ------------------------------------------------------------- */

#define SID "7c1a0f9e-4d2b-4e8f-9a3c-1b2d3e4f5a6b"
#define DEST "0f5a2c3d-8e7b-4a1c-9d6e-5b4a3c2d1e0f"
#define CASE "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"
#define A1 "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

typedef struct items {
    int status[8];
    char case_id[8][40];
    size_t n;
} items;

static int item(void *arg, size_t i, int status, const char *id, const char *case_id)
{
    items *t = arg;
    (void)id;
    if (i < 8) {
        t->status[i] = status;
        snprintf(t->case_id[i], sizeof t->case_id[0], "%s", case_id);
    }
    t->n++;
    return 0;
}

static void test_fc_list(void **state)
{
    (void)state;
    items t = {0};
    long total = 0;
    char why[128];
    long n = rk__fc_list_parse(
        S("{\"totalCount\":9,\"submissions\":[{\"submissionId\":\"" SID "\",\"destinationId\":"
          "\"" DEST "\",\"caseId\":\"" CASE "\"},{\"submissionId\":\"" A1 "\",\"destinationId\""
          ":\"" CASE "\"},{\"submissionId\":\"nope\"},{\"submissionId\":\"" A1 "\",\"caseId\":"
          "\"x\"}]}"),
        DEST, item, &t, &total, why, sizeof why);
    assert_int_equal(n, 4);
    assert_int_equal(total, 9);
    assert_int_equal(t.status[0], RK__FC_ITEM_OK);
    assert_string_equal(t.case_id[0], CASE);
    assert_int_equal(t.status[1], RK__FC_ITEM_OTHER_DEST);
    assert_int_equal(t.status[2], RK__FC_ITEM_NO_ID);
    assert_int_equal(t.status[3], RK__FC_ITEM_OK);
    assert_string_equal(t.case_id[3], "");
    assert_int_equal(rk__fc_list_parse(S("[]"), DEST, item, &t, &total, why, sizeof why), -1);
    assert_string_equal(why, "not a JSON object");
}

static void test_fc_submission(void **state)
{
    (void)state;
    rk__fc_submission sub;
    char why[160];
    const char *ok = "{\"submissionId\":\"" SID "\",\"destinationId\":\"" DEST "\",\"caseId\":"
                     "\"" CASE "\",\"encryptedMetadata\":\"m\",\"encryptedData\":\"d\","
                     "\"attachments\":[\"" A1 "\"]}";
    assert_int_equal(rk__fc_submission_parse(S(ok), SID, DEST, 5, &sub, why, sizeof why), 0);
    assert_string_equal(sub.case_id, CASE);
    assert_string_equal(sub.meta_jwe, "m");
    assert_string_equal(sub.data_jwe, "d");
    assert_int_equal(sub.n_att, 1);
    assert_string_equal(sub.att_ids[0], A1);
    rk__fc_submission_free(&sub);
    /* max_attachments on both sides */
    assert_int_equal(rk__fc_submission_parse(S(ok), SID, DEST, 1, &sub, why, sizeof why), 0);
    rk__fc_submission_free(&sub);
    assert_int_equal(rk__fc_submission_parse(S(ok), SID, DEST, 0, &sub, why, sizeof why), -1);
    assert_non_null(strstr(why, "max_attachments"));
    assert_null(sub.meta_jwe);
    assert_int_equal(rk__fc_submission_parse(S(ok), A1, DEST, 5, &sub, why, sizeof why), -1);
    assert_string_equal(why, "the answer names another submissionId");
    const char *dup = "{\"submissionId\":\"" SID "\",\"submissionId\":\"" SID "\"}";
    assert_int_equal(rk__fc_submission_parse(S(dup), SID, DEST, 5, &sub, why, sizeof why), -1);
    assert_string_equal(why, "the answer is not a JSON object");
}

static void test_fc_meta_check(void **state)
{
    (void)state;
    char h[129];
    memset(h, 'a', 128);
    h[128] = '\0';
    char text[1024];
    snprintf(text, sizeof text,
             "{\"contentStructure\":{\"data\":{\"hash\":{\"type\":\"sha512\",\"content\":"
             "\"%s\"},\"submissionSchema\":{\"mimeType\":\"application/xml\"}},"
             "\"attachments\":[{\"attachmentId\":\"" A1 "\",\"hash\":{\"type\":\"sha512\","
             "\"content\":\"%s\"},\"mimeType\":\"application/pdf\"}]}}",
             h, h);
    json_t *m = json_loads(text, 0, NULL);
    assert_non_null(m);
    assert_null(rk__fc_meta_check(m));
    json_t *list = json_object_get(json_object_get(m, "contentStructure"), "attachments");
    assert_ptr_equal(rk__fc_meta_attachment(list, "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"),
                     json_array_get(list, 0));
    /* the same attachment twice */
    json_array_append_new(list, json_deep_copy(json_array_get(list, 0)));
    assert_string_equal(rk__fc_meta_check(m),
                        "eine Anlage steht zweimal in contentStructure.attachments");
    json_decref(m);
    m = json_loads("{\"contentStructure\":{\"data\":{\"hash\":{\"type\":\"sha512\","
                   "\"content\":\"ab\"}}}}",
                   0, NULL);
    assert_string_equal(rk__fc_meta_check(m),
                        "contentStructure.data.hash ist kein SHA-512-Hashwert");
    json_decref(m);
    m = json_loads("{}", 0, NULL);
    assert_string_equal(rk__fc_meta_check(m), "contentStructure fehlt");
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_ok_and_lifetime),
        cmocka_unit_test(test_token_lifetime_cap_both_sides),
        cmocka_unit_test(test_token_refused),
        cmocka_unit_test(test_error_code),
        cmocka_unit_test(test_list_ids_and_cursor),
        cmocka_unit_test(test_list_refused),
        cmocka_unit_test(test_fc_list),
        cmocka_unit_test(test_fc_submission),
        cmocka_unit_test(test_fc_meta_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
