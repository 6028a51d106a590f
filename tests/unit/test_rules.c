/*
 * test_rules.c — every rule kind passing and failing, on the mapped
 * values of a hand-filled rk_result, with a fixed "today".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "map.h"
#include "record.h"
#include "util.h"

#define TODAY "2024-05-03"

/* ---- hand-built jobs and results ---------------------------------------- */

static rk_job *job_new(void)
{
    rk_job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->refs = 1;
    j->name = strdup("fischereischein");
    return j;
}

/* Adds a rule the way job.c fills it; returns it (valid until the next add). */
static rk_rule *job_rule(rk_job *j, rk_rule_kind kind, const char *code, const char *field,
                         const char *message)
{
    j->rules = realloc(j->rules, (j->n_rules + 1) * sizeof *j->rules);
    assert_non_null(j->rules);
    rk_rule *r = &j->rules[j->n_rules++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->code = strdup(code);
    r->field = field ? strdup(field) : NULL;
    r->message = strdup(message);
    r->severity = RK_SEV_BLOCK;
    return r;
}

static void rule_pattern(rk_rule *r, const char *ere)
{
    r->arg = strdup(ere);
    size_t n = strlen(ere) + 5;
    char *full = malloc(n);
    snprintf(full, n, "^(%s)$", ere);
    regex_t *re = malloc(sizeof *re);
    assert_int_equal(regcomp(re, full, REG_EXTENDED | REG_NOSUB), 0);
    free(full);
    r->compiled = re;
}

static void job_table(rk_job *j, const char *name, ...)
{
    j->tables = realloc(j->tables, (j->n_tables + 1) * sizeof *j->tables);
    rk_table *t = &j->tables[j->n_tables++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    va_list ap;
    va_start(ap, name);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        t->keys = realloc(t->keys, (t->n + 1) * sizeof *t->keys);
        t->values = realloc(t->values, (t->n + 1) * sizeof *t->values);
        t->keys[t->n] = strdup(k);
        t->values[t->n] = strdup(v);
        t->n++;
    }
    va_end(ap);
}

static void job_free(rk_job *j)
{
    for (size_t i = 0; i < j->n_rules; i++) {
        rk_rule *r = &j->rules[i];
        free(r->code);
        free(r->field);
        free(r->message);
        free(r->arg);
        free(r->field2);
        for (size_t k = 0; k < r->n_keys; k++)
            free(r->keys[k]);
        free(r->keys);
        if (r->compiled) {
            regfree(r->compiled);
            free(r->compiled);
        }
    }
    free(j->rules);
    for (size_t i = 0; i < j->n_tables; i++) {
        for (size_t k = 0; k < j->tables[i].n; k++) {
            free(j->tables[i].keys[k]);
            free(j->tables[i].values[k]);
        }
        free(j->tables[i].keys);
        free(j->tables[i].values);
        free(j->tables[i].name);
    }
    free(j->tables);
    free(j->name);
    free(j);
}

/* Adds a mapped field to r (value may be NULL). */
static void set_field(rk_result *r, const char *name, const char *value)
{
    r->fields = realloc(r->fields, (r->n_fields + 1) * sizeof *r->fields);
    assert_non_null(r->fields);
    rk_mapped_field *f = &r->fields[r->n_fields++];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    f->value = value ? strdup(value) : NULL;
    f->source = value ? strdup(value) : NULL;
    f->xpath = strdup("x");
}

/*
 * Runs the job's rules on a result with one field; returns the number of
 * anomalies and copies the first message into msg (when given).
 */
static size_t check_one(const rk_job *j, const char *field, const char *value,
                        const char *today, char *msg, size_t msglen)
{
    rk_result r;
    rk_result_init(&r);
    set_field(&r, field, value);
    assert_int_equal(rk_rules_check(j, &r, today), 0);
    size_t n = r.n_anomalies;
    if (msg && msglen) {
        msg[0] = '\0';
        if (n)
            snprintf(msg, msglen, "%s", r.anomalies[0].message);
    }
    if (n) {
        assert_string_equal(r.anomalies[0].code, j->rules[0].code);
        assert_string_equal(r.anomalies[0].field, field);
        assert_int_equal(r.anomalies[0].severity, j->rules[0].severity);
    }
    rk_result_free(&r);
    return n;
}

#define PASSES(j, f, v) assert_int_equal(check_one(j, f, v, TODAY, NULL, 0), 0)
#define FAILS(j, f, v) assert_int_equal(check_one(j, f, v, TODAY, NULL, 0), 1)

/* ---- tests ---------------------------------------------------------------- */

static void test_required(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_rule(j, RK_RULE_REQUIRED, "PFLICHTFELD", "nachname", "Der Familienname fehlt.");
    PASSES(j, "nachname", "Müller");
    FAILS(j, "nachname", NULL);
    FAILS(j, "nachname", "");
    FAILS(j, "nachname", " \n ");
    char msg[256];
    assert_int_equal(check_one(j, "nachname", "", TODAY, msg, sizeof msg), 1);
    assert_string_equal(msg, "Der Familienname fehlt.");
    /* a field the map does not have counts as empty */
    rk_result r;
    rk_result_init(&r);
    set_field(&r, "anderes", "x");
    assert_int_equal(rk_rules_check(j, &r, TODAY), 0);
    assert_int_equal(r.n_anomalies, 1);
    assert_string_equal(r.anomalies[0].field, "nachname");
    rk_result_free(&r);
    job_free(j);
}

static void test_pattern(void **state)
{
    (void)state;
    rk_job *j = job_new();
    rk_rule *r = job_rule(j, RK_RULE_PATTERN, "PLZ", "plz", "Die Postleitzahl ist ungültig.");
    rule_pattern(r, "[0-9]{5}");
    PASSES(j, "plz", "70173");
    FAILS(j, "plz", "7017");
    FAILS(j, "plz", "701734");   /* the whole value must match */
    FAILS(j, "plz", "x70173");
    PASSES(j, "plz", "");        /* empty: skipped */
    PASSES(j, "plz", NULL);
    /* without a compiled expression the rule compiles arg itself */
    regfree(j->rules[0].compiled);
    free(j->rules[0].compiled);
    j->rules[0].compiled = NULL;
    PASSES(j, "plz", "70173");
    FAILS(j, "plz", "701734");
    job_free(j);
}

static void test_range(void **state)
{
    (void)state;
    rk_job *j = job_new();
    rk_rule *r = job_rule(j, RK_RULE_RANGE, "BETRAG", "betrag", "Der Betrag ist unplausibel.");
    r->num[0] = 5;
    r->num[1] = 100.5;
    PASSES(j, "betrag", "5");
    PASSES(j, "betrag", "100,5");
    PASSES(j, "betrag", "100.50");
    PASSES(j, "betrag", "42,00");
    FAILS(j, "betrag", "4,99");
    FAILS(j, "betrag", "100.51");
    FAILS(j, "betrag", "-7");
    char msg[256];
    assert_int_equal(check_one(j, "betrag", "1.000,00", TODAY, msg, sizeof msg), 1);
    assert_string_equal(msg, "Der Betrag ist unplausibel. („1.000,00“ ist keine Zahl)");
    PASSES(j, "betrag", "");
    job_free(j);
}

static void test_not_future(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_rule(j, RK_RULE_NOT_FUTURE, "DATUM_ZUKUNFT", "datum", "Das Datum liegt in der Zukunft.");
    PASSES(j, "datum", "2024-05-03"); /* today */
    PASSES(j, "datum", "03.05.2024");
    PASSES(j, "datum", "2023-12-31");
    FAILS(j, "datum", "2024-05-04");  /* tomorrow */
    FAILS(j, "datum", "04.05.2024");
    FAILS(j, "datum", "01.01.2025");
    char msg[256];
    assert_int_equal(check_one(j, "datum", "31.02.2024", TODAY, msg, sizeof msg), 1);
    assert_string_equal(msg, "Das Datum liegt in der Zukunft. („31.02.2024“ ist kein gültiges Datum)");
    PASSES(j, "datum", NULL);
    job_free(j);
}

static void test_age_at_least(void **state)
{
    (void)state;
    rk_job *j = job_new();
    rk_rule *r = job_rule(j, RK_RULE_AGE_AT_LEAST, "MINDESTALTER", "geburtsdatum",
                          "Antragsteller ist jünger als 14 Jahre");
    r->num[0] = 14;
    PASSES(j, "geburtsdatum", "2010-05-03"); /* 14 today */
    PASSES(j, "geburtsdatum", "03.05.2010");
    FAILS(j, "geburtsdatum", "2010-05-04");  /* 14 tomorrow */
    FAILS(j, "geburtsdatum", "04.05.2010");
    PASSES(j, "geburtsdatum", "1950-01-01");
    FAILS(j, "geburtsdatum", "2030-01-01");  /* not born yet */
    char msg[256];
    assert_int_equal(check_one(j, "geburtsdatum", "2010-05-04", TODAY, msg, sizeof msg), 1);
    assert_string_equal(msg, "Antragsteller ist jünger als 14 Jahre");
    /* born on 29 February: a year is complete at the end of 28 February */
    assert_int_equal(check_one(j, "geburtsdatum", "2008-02-29", "2022-02-28", NULL, 0), 1);
    assert_int_equal(check_one(j, "geburtsdatum", "2008-02-29", "2022-03-01", NULL, 0), 0);
    assert_int_equal(check_one(j, "geburtsdatum", "2010-02-28", "2024-02-29", NULL, 0), 0);
    assert_int_equal(check_one(j, "geburtsdatum", "2010-03-01", "2024-02-29", NULL, 0), 1);
    assert_int_equal(check_one(j, "geburtsdatum", "2010-02-29", TODAY, msg, sizeof msg), 1);
    assert_string_equal(msg, "Antragsteller ist jünger als 14 Jahre "
                             "(„2010-02-29“ ist kein gültiges Datum)");
    job_free(j);
}

static void test_one_of(void **state)
{
    (void)state;
    rk_job *j = job_new();
    rk_rule *r = job_rule(j, RK_RULE_ONE_OF, "ART", "art", "Unbekannte Scheinart.");
    r->arg = strdup("tag  woche jahr");
    PASSES(j, "art", "tag");
    PASSES(j, "art", "jahr");
    FAILS(j, "art", "monat");
    FAILS(j, "art", "Tag");
    FAILS(j, "art", "ta");
    FAILS(j, "art", "tag woche");
    PASSES(j, "art", "");
    job_free(j);
}

static void test_fee(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_table(j, "gebuehren", "tag", "5.00", "jahr", "12,50", "kaputt", "zwölf", (char *)NULL);
    rk_rule *r = job_rule(j, RK_RULE_FEE, "GEBUEHR", "betrag",
                          "Der gezahlte Betrag stimmt nicht mit der Gebühr überein");
    r->arg = strdup("gebuehren");
    r->field2 = strdup("art");

    struct {
        const char *art, *paid, *msg;
    } cases[] = {
        {"jahr", "12.50", NULL},
        {"jahr", "12,5", NULL},
        {"tag", "5", NULL},
        {"jahr", "10,00",
         "Der gezahlte Betrag stimmt nicht mit der Gebühr überein (erwartet 12,50 €, gezahlt 10,00 €)"},
        {"tag", "5.01",
         "Der gezahlte Betrag stimmt nicht mit der Gebühr überein (erwartet 5,00 €, gezahlt 5,01 €)"},
        {"woche", "5.00",
         "Der gezahlte Betrag stimmt nicht mit der Gebühr überein (für „woche“ ist keine Gebühr hinterlegt)"},
        {NULL, "5.00",
         "Der gezahlte Betrag stimmt nicht mit der Gebühr überein (die Gebührenart fehlt)"},
        {"tag", "fünf",
         "Der gezahlte Betrag stimmt nicht mit der Gebühr überein (gezahlter Betrag „fünf“ ist keine Zahl)"},
        {"kaputt", "5",
         "Der gezahlte Betrag stimmt nicht mit der Gebühr überein (die Gebührentabelle enthält für "
         "„kaputt“ keinen gültigen Betrag)"},
        {"tag", NULL, NULL}, /* nothing paid: empty, skipped (a required rule's business) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_result res;
        rk_result_init(&res);
        set_field(&res, "art", cases[i].art);
        set_field(&res, "betrag", cases[i].paid);
        assert_int_equal(rk_rules_check(j, &res, TODAY), 0);
        if (!cases[i].msg) {
            assert_int_equal(res.n_anomalies, 0);
        } else {
            assert_int_equal(res.n_anomalies, 1);
            assert_string_equal(res.anomalies[0].code, "GEBUEHR");
            assert_string_equal(res.anomalies[0].field, "betrag");
            assert_string_equal(res.anomalies[0].message, cases[i].msg);
        }
        rk_result_free(&res);
    }
    job_free(j);
}

static void test_duplicate(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_rule(j, RK_RULE_REQUIRED, "PFLICHTFELD", "nachname", "fehlt");
    rk_rule *r = job_rule(j, RK_RULE_DUPLICATE, "DOPPELT", NULL, "Antrag liegt bereits vor");
    r->num[0] = 30;
    r->n_keys = 2;
    r->keys = calloc(2, sizeof(char *));
    r->keys[0] = strdup("nachname");
    r->keys[1] = strdup("geburtsdatum");

    rk_result res;
    rk_result_init(&res);
    set_field(&res, "nachname", "Müller");
    set_field(&res, "geburtsdatum", "03.05.2001");
    assert_int_equal(rk_rules_check(j, &res, TODAY), 0);
    assert_int_equal(res.n_anomalies, 0);
    assert_int_equal(res.n_dups, 1);
    assert_int_equal(res.dups[0].rule, 1);
    const char keytext[] = "fischereischein\x1f" "Müller\x1f" "03.05.2001";
    char want[65];
    rk_sha256_hex(keytext, strlen(keytext), want);
    assert_string_equal(res.dups[0].key, want);
    assert_int_equal(strlen(res.dups[0].key), 64);
    rk_result_free(&res);

    /* the separator keeps "ab"+"c" apart from "a"+"bc" */
    char k1[65], k2[65];
    rk_result_init(&res);
    set_field(&res, "nachname", "ab");
    set_field(&res, "geburtsdatum", "c");
    assert_int_equal(rk_rules_check(j, &res, TODAY), 0);
    snprintf(k1, sizeof k1, "%s", res.dups[0].key);
    rk_result_free(&res);
    rk_result_init(&res);
    set_field(&res, "nachname", "a");
    set_field(&res, "geburtsdatum", "bc");
    assert_int_equal(rk_rules_check(j, &res, TODAY), 0);
    snprintf(k2, sizeof k2, "%s", res.dups[0].key);
    rk_result_free(&res);
    assert_string_not_equal(k1, k2);

    /* a missing key value: no check (and the required rule fires) */
    rk_result_init(&res);
    set_field(&res, "nachname", "");
    set_field(&res, "geburtsdatum", "03.05.2001");
    assert_int_equal(rk_rules_check(j, &res, TODAY), 0);
    assert_int_equal(res.n_dups, 0);
    assert_int_equal(res.n_anomalies, 1);
    assert_string_equal(res.anomalies[0].code, "PFLICHTFELD");
    rk_result_free(&res);
    job_free(j);
}

static void test_severity_and_order(void **state)
{
    (void)state;
    rk_job *j = job_new();
    rk_rule *r = job_rule(j, RK_RULE_ONE_OF, "HINWEIS", "art", "Ungewöhnliche Scheinart");
    r->arg = strdup("tag jahr");
    r->severity = RK_SEV_WARN;
    r = job_rule(j, RK_RULE_AGE_AT_LEAST, "MINDESTALTER", "geb", "zu jung");
    r->num[0] = 14;
    rk_result res;
    rk_result_init(&res);
    set_field(&res, "art", "woche");
    set_field(&res, "geb", "2001-05-03");
    assert_int_equal(rk_rules_check(j, &res, TODAY), 0);
    assert_int_equal(res.n_anomalies, 1);
    assert_int_equal(res.anomalies[0].severity, RK_SEV_WARN);
    assert_false(rk_result_blocked(&res));
    rk_result_free(&res);

    rk_result_init(&res);
    set_field(&res, "art", "woche");
    set_field(&res, "geb", "2020-05-03");
    assert_int_equal(rk_rules_check(j, &res, TODAY), 0);
    assert_int_equal(res.n_anomalies, 2);
    assert_string_equal(res.anomalies[0].code, "HINWEIS");
    assert_string_equal(res.anomalies[1].code, "MINDESTALTER");
    assert_true(rk_result_blocked(&res));
    rk_result_free(&res);

    /* today must be a date */
    rk_result_init(&res);
    assert_int_equal(rk_rules_check(j, &res, "gestern"), RK_E_FORMAT);
    assert_int_equal(rk_rules_check(j, &res, NULL), RK_E_FORMAT);
    rk_result_free(&res);
    job_free(j);
}

int main(void)
{
    rk_log_set_level(RK_LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required),   cmocka_unit_test(test_pattern),
        cmocka_unit_test(test_range),      cmocka_unit_test(test_not_future),
        cmocka_unit_test(test_age_at_least), cmocka_unit_test(test_one_of),
        cmocka_unit_test(test_fee),        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_severity_and_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
