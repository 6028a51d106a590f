/*
 * test_dash.c — the parts of agent/dash.c that decide about safety
 * without a server: the one HTML escaping (every special character, at
 * the start, the end and in a row; NULL; a buffer limit on both sides),
 * the session table (random ids, lookup, idle expiry on both sides of the
 * limit, touch on use, removal, eviction when full) and the constant-time
 * token comparison, and the German Grund of the Verlauf (each reason
 * text the code writes, variable parts kept, unknown texts unchanged,
 * hostile parts escaped).
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

/* ---- the Grund in German ------------------------------------------------- */

static void expect_reason(const char *in, const char *want)
{
    rk_buf b;
    rk_buf_init(&b, 1u << 16);
    assert_int_equal(rk_dash_reason_german(&b, in), 0);
    assert_string_equal(b.data ? b.data : "", want);
    rk_buf_free(&b);
}

static void test_reason_every_pattern(void **state)
{
    (void)state;
    expect_reason("taken from dir:/srv/inbox antrag.xml",
                  "eingegangen aus dir:/srv/inbox antrag.xml");
    expect_reason("valid against the job's XSD", "gültig nach dem XSD der Antragsart");
    expect_reason("SCHEMA: document violates the job's XSD",
                  "SCHEMA: das Dokument verletzt das XSD der Antragsart");
    expect_reason("20 fields mapped by job fischereischein version 1",
                  "20 Felder übernommen (Antragsart fischereischein, Version 1)");
    expect_reason("held: MINDESTALTER", "zur Klärung angehalten: MINDESTALTER");
    expect_reason("held: DATEN_KEIN_XML", "zur Klärung angehalten: DATEN_KEIN_XML");
    expect_reason("all rules passed", "alle Regeln erfüllt");
    expect_reason("passed with notes: PLZ_ORT, TELEFON",
                  "Regeln erfüllt, mit Hinweisen: PLZ_ORT, TELEFON");
    expect_reason("nothing left to deliver", "nichts mehr zu übertragen");
    expect_reason("retry due", "neuer Versuch fällig");
    expect_reason("result not recorded; delivering again with the same key",
                  "Ergebnis nicht gespeichert; erneute Übertragung mit demselben Schlüssel");
    expect_reason("interrupted delivery; delivering again with the same key",
                  "Übertragung unterbrochen; erneute Übertragung mit demselben Schlüssel");
    expect_reason("interrupted processing; processing again",
                  "Verarbeitung unterbrochen; erneute Verarbeitung");
    expect_reason("retry: attempts reset", "erneuter Versuch: Zahl der Versuche zurückgesetzt");
    expect_reason("retry: processing again", "erneuter Versuch: erneute Verarbeitung");
    expect_reason("replay of job 12", "erneute Verarbeitung von Antrag 12");
    expect_reason("replay of job 12 with new idempotency keys",
                  "erneute Verarbeitung von Antrag 12 mit neuem Schlüssel");
    expect_reason("replayed as job 13", "erneut verarbeitet als Antrag 13");
    expect_reason("purged after the retention time", "Löschung nach Aufbewahrungsfrist");
    /* the parts of a delivery round */
    expect_reason("sqlite: delivered, target id 2",
                  "übertragen an sqlite (Kennung im Fachverfahren: 2)");
    expect_reason("sqlite: delivered", "übertragen an sqlite");
    expect_reason("rest: refused by the target",
                  "vom Fachverfahren abgelehnt (Anbindung rest)");
    expect_reason("pg: connector paused: password authentication failed",
                  "Anbindung pg angehalten: password authentication failed");
    expect_reason("pg: connector paused", "Anbindung pg angehalten");
    expect_reason("sqlite: attempts used up (5): database is locked",
                  "Übertragung an sqlite: alle 5 Versuche verbraucht: database is locked");
    expect_reason("sqlite: attempt 3: cannot begin a transaction in the target: database "
                  "is locked",
                  "Übertragung an sqlite: Versuch 3: cannot begin a transaction in the "
                  "target: database is locked");
    /* the review module's German texts stay as they are */
    expect_reason("freigegeben", "freigegeben");
    expect_reason("Feld korrigiert: person/name (Korrektur 4)",
                  "Feld korrigiert: person/name (Korrektur 4)");
}

static void test_reason_keeps_variable_parts(void **state)
{
    (void)state;
    /* several connectors in one round, a message with "; " and ": " in it */
    expect_reason("sqlite: delivered, target id 7; rest: attempt 2: HTTP 503; try later: "
                  "soon; pg: connector paused",
                  "übertragen an sqlite (Kennung im Fachverfahren: 7); Übertragung an rest: "
                  "Versuch 2: HTTP 503; try later: soon; Anbindung pg angehalten");
    expect_reason("120 fields mapped by job bau antrag version 12",
                  "120 Felder übernommen (Antragsart bau antrag, Version 12)");
    expect_reason("held: MINDESTALTER, DOPPELT", "zur Klärung angehalten: MINDESTALTER, DOPPELT");
    expect_reason("taken from fitconnect:zustaendig 5f1c", "eingegangen aus fitconnect:zustaendig 5f1c");
}

static void test_reason_unknown_passes_unchanged(void **state)
{
    (void)state;
    expect_reason("something the dashboard never saw", "something the dashboard never saw");
    expect_reason("held:", "held:"); /* a pattern's start alone is no match */
    expect_reason("x fields mapped by job a version 1", "x fields mapped by job a version 1");
    expect_reason("retry due soon", "retry due soon");
    expect_reason("sqlite: delivered; not a part", "sqlite: delivered; not a part");
    expect_reason("", "");
    rk_buf b;
    rk_buf_init(&b, 64);
    assert_int_equal(rk_dash_reason_german(&b, NULL), 0);
    assert_int_equal(b.len, 0);
    rk_buf_free(&b);
}

static void test_reason_hostile_text_stays_escaped(void **state)
{
    (void)state;
    expect_reason("taken from dir:/in <script>alert(1)</script>.xml",
                  "eingegangen aus dir:/in &lt;script&gt;alert(1)&lt;/script&gt;.xml");
    expect_reason("sqlite: attempt 1: \"><img src=x onerror=alert(1)>",
                  "Übertragung an sqlite: Versuch 1: &quot;&gt;&lt;img src=x "
                  "onerror=alert(1)&gt;");
    expect_reason("<b>unknown</b> & 'quoted'",
                  "&lt;b&gt;unknown&lt;/b&gt; &amp; &#39;quoted&#39;");
    expect_reason("held: A&B", "zur Klärung angehalten: A&amp;B");
    /* a buffer too small is an error, as for rk_html_escape */
    rk_buf b;
    rk_buf_init(&b, 8);
    assert_int_equal(rk_dash_reason_german(&b, "retry due"), RK_E_LIMIT);
    rk_buf_free(&b);
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
        cmocka_unit_test(test_reason_every_pattern),
        cmocka_unit_test(test_reason_keeps_variable_parts),
        cmocka_unit_test(test_reason_unknown_passes_unchanged),
        cmocka_unit_test(test_reason_hostile_text_stays_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
