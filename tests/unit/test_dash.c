/*
 * test_dash.c — the parts of agent/dash.c that decide about safety
 * without a server: the one HTML escaping (every special character, at
 * the start, the end and in a row; NULL; a buffer limit on both sides),
 * the session table (random ids, lookup, idle expiry on both sides of the
 * limit, touch on use, removal, eviction when full) and the constant-time
 * token comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dash.h"

/* ---- escaping ------------------------------------------------------------ */

static void expect_escape(const char *in, const char *want)
{
    rk_buf b;
    rk_buf_init(&b, 1u << 16);
    assert_int_equal(rk_html_escape(&b, in), 0);
    assert_string_equal(b.data ? b.data : "", want);
    rk_buf_free(&b);
}

static void test_escape_every_special_character(void **state)
{
    (void)state;
    expect_escape("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;");
    expect_escape("\"'&<>", "&quot;&#39;&amp;&lt;&gt;");
    expect_escape("a&b", "a&amp;b");
    expect_escape("&amp;", "&amp;amp;"); /* escaped again, never taken as markup */
    expect_escape("\" onmouseover=\"x", "&quot; onmouseover=&quot;x");
    expect_escape("Müller-Lüdenscheidt", "Müller-Lüdenscheidt"); /* UTF-8 passes */
    expect_escape("plain", "plain");
    expect_escape("", "");
}

static void test_escape_null_appends_nothing(void **state)
{
    (void)state;
    rk_buf b;
    rk_buf_init(&b, 64);
    rk_buf_append(&b, "x", 1);
    assert_int_equal(rk_html_escape(&b, NULL), 0);
    assert_string_equal(b.data, "x");
    rk_buf_free(&b);
}

static void test_escape_respects_the_buffer_limit(void **state)
{
    (void)state;
    rk_buf b;
    rk_buf_init(&b, 5); /* "&lt;" is 4 bytes: one fits, a second does not */
    assert_int_equal(rk_html_escape(&b, "<"), 0);
    assert_string_equal(b.data, "&lt;");
    assert_int_equal(rk_html_escape(&b, "<"), RK_E_LIMIT);
    assert_int_equal(b.len, 4);
    rk_buf_free(&b);
    rk_buf_init(&b, 5);
    assert_int_equal(rk_html_escape(&b, "abcde"), 0);
    assert_int_equal(rk_html_escape(&b, "f"), RK_E_LIMIT);
    rk_buf_free(&b);
}

/* ---- sessions ------------------------------------------------------------ */

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static void test_sessions_add_and_get(void **state)
{
    (void)state;
    rk_sessions *s = rk_sessions_new(10, 1000);
    assert_non_null(s);
    rk_session *a = rk_sessions_add(s, "anna", 5000);
    assert_non_null(a);
    char sid[65], csrf[65];
    snprintf(sid, sizeof sid, "%s", a->sid);
    snprintf(csrf, sizeof csrf, "%s", a->csrf);
    assert_true(is_hex64(sid));
    assert_true(is_hex64(csrf));
    assert_string_not_equal(sid, csrf);
    rk_session *b = rk_sessions_add(s, "ben", 5000);
    assert_string_not_equal(b->sid, sid);
    assert_int_equal(rk_sessions_count(s), 2);
    rk_session *g = rk_sessions_get(s, sid, 5500);
    assert_non_null(g);
    assert_string_equal(g->name, "anna");
    assert_string_equal(g->csrf, csrf);
    /* unknown, truncated, longer, empty and NULL ids */
    char other[65];
    snprintf(other, sizeof other, "%s", sid);
    other[0] = other[0] == 'a' ? 'b' : 'a';
    assert_null(rk_sessions_get(s, other, 5500));
    char shortid[64];
    snprintf(shortid, sizeof shortid, "%s", sid);
    assert_null(rk_sessions_get(s, shortid, 5500));
    char longer[70];
    snprintf(longer, sizeof longer, "%s0", sid);
    assert_null(rk_sessions_get(s, longer, 5500));
    assert_null(rk_sessions_get(s, "", 5500));
    assert_null(rk_sessions_get(s, NULL, 5500));
    rk_sessions_free(s);
}

static void test_sessions_idle_expiry_both_sides(void **state)
{
    (void)state;
    rk_sessions *s = rk_sessions_new(10, 1000);
    char sid[65];
    snprintf(sid, sizeof sid, "%s", rk_sessions_add(s, "anna", 10000)->sid);
    assert_non_null(rk_sessions_get(s, sid, 11000)); /* exactly the idle time: alive */
    /* the use touched it: 1000 ms from 11000 on */
    assert_non_null(rk_sessions_get(s, sid, 12000));
    assert_null(rk_sessions_get(s, sid, 13001)); /* one ms too late */
    assert_int_equal(rk_sessions_count(s), 0);    /* and gone */
    assert_null(rk_sessions_get(s, sid, 13001));
    rk_sessions_free(s);
}

static void test_sessions_remove(void **state)
{
    (void)state;
    rk_sessions *s = rk_sessions_new(10, 1000);
    char a[65], b[65];
    snprintf(a, sizeof a, "%s", rk_sessions_add(s, "anna", 0)->sid);
    snprintf(b, sizeof b, "%s", rk_sessions_add(s, "ben", 0)->sid);
    assert_int_equal(rk_sessions_remove(s, a), 1);
    assert_int_equal(rk_sessions_remove(s, a), 0);
    assert_null(rk_sessions_get(s, a, 1));
    assert_non_null(rk_sessions_get(s, b, 1));
    assert_string_equal(rk_sessions_get(s, b, 1)->name, "ben");
    rk_sessions_free(s);
}

static void test_sessions_full_table_evicts_expired_then_oldest(void **state)
{
    (void)state;
    rk_sessions *s = rk_sessions_new(3, 1000);
    char id[4][65];
    snprintf(id[0], 65, "%s", rk_sessions_add(s, "a", 0)->sid);
    snprintf(id[1], 65, "%s", rk_sessions_add(s, "b", 100)->sid);
    snprintf(id[2], 65, "%s", rk_sessions_add(s, "c", 200)->sid);
    assert_non_null(rk_sessions_get(s, id[0], 300)); /* a is used: b is idle longest */
    snprintf(id[3], 65, "%s", rk_sessions_add(s, "d", 400)->sid);
    assert_int_equal(rk_sessions_count(s), 3);
    assert_null(rk_sessions_get(s, id[1], 400));
    assert_non_null(rk_sessions_get(s, id[0], 400));
    assert_non_null(rk_sessions_get(s, id[2], 400));
    assert_non_null(rk_sessions_get(s, id[3], 400));
    /* later, every one of them expired: a new login clears them all */
    rk_session *e = rk_sessions_add(s, "e", 5000);
    assert_non_null(e);
    assert_int_equal(rk_sessions_count(s), 1);
    rk_sessions_free(s);
}

static void test_token_equal(void **state)
{
    (void)state;
    assert_true(rk_token_equal("abc", "abc"));
    assert_false(rk_token_equal("abc", "abd"));
    assert_false(rk_token_equal("abc", "ab"));
    assert_false(rk_token_equal("ab", "abc"));
    assert_false(rk_token_equal("", ""));
    assert_false(rk_token_equal(NULL, "abc"));
    assert_false(rk_token_equal("abc", NULL));
}

int main(void)
{
    rk_log_set_level(RK_LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_every_special_character),
        cmocka_unit_test(test_escape_null_appends_nothing),
        cmocka_unit_test(test_escape_respects_the_buffer_limit),
        cmocka_unit_test(test_sessions_add_and_get),
        cmocka_unit_test(test_sessions_idle_expiry_both_sides),
        cmocka_unit_test(test_sessions_remove),
        cmocka_unit_test(test_sessions_full_table_evicts_expired_then_oldest),
        cmocka_unit_test(test_token_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
