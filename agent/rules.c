/*
 * rules.c — the job's rules over the mapped values.
 *
 * Rules read the MAPPED values of the result (after transforms).  Every
 * check except `required` skips an empty value: whether a field must be
 * filled is the business of a `required` rule of its own.  A failing
 * rule adds an anomaly with the rule's code, field, severity and German
 * message; fee, range and date rules append the detail a clerk needs to
 * decide ("(erwartet 12,50 €, gezahlt 10,00 €)").  Duplicate rules only
 * compute the key; the engine asks the store on the loop thread.
 */
#include "map.h"

#include <errno.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define QUOTE_MAX 80
/* Amounts are compared as integers in units of 1/10000. */
#define FIXED_SCALE 10000

static void oom(void)
{
    rk_error("rules", "out of memory; aborting");
    abort();
}

/* Empty for the rules: NULL, "" or only white space. */
static int is_blank(const char *s)
{
    if (!s)
        return 1;
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return 0;
    return 1;
}

/* A submitted value for a message: cut after QUOTE_MAX bytes at a UTF-8
 * character boundary, marked with "…". */
static void quote_value(char *out, size_t outlen, const char *v)
{
    size_t len = strlen(v), n = len;
    if (n > QUOTE_MAX) {
        n = QUOTE_MAX;
        while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
            n--;
    }
    snprintf(out, outlen, "%.*s%s", (int)n, v, n < len ? "…" : "");
}

/*
 * Checks the number grammar shared by range and fee: white space,
 * optional sign, 1..15 digits, optionally one '.' or ',' and 1..maxfrac
 * digits, white space.  Writes the number with a '.' separator into
 * norm.  0 or -1.
 */
static int number_normalise(const char *s, size_t maxfrac, char *norm, size_t normlen)
{
    rk_buf b;
    rk_buf_init(&b, normlen ? normlen - 1 : 0);
    const char *p = s;
    int rc = -1;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p == '-' || *p == '+') {
        if (rk_buf_append(&b, p, 1))
            goto out;
        p++;
    }
    size_t il = strspn(p, "0123456789");
    if (il == 0 || il > 15 || rk_buf_append(&b, p, il))
        goto out;
    p += il;
    if (*p == '.' || *p == ',') {
        p++;
        size_t fl = strspn(p, "0123456789");
        if (fl == 0 || fl > maxfrac || rk_buf_append(&b, ".", 1) || rk_buf_append(&b, p, fl))
            goto out;
        p += fl;
    }
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p)
        goto out;
    snprintf(norm, normlen, "%s", b.data ? b.data : "");
    rc = 0;
out:
    rk_buf_free(&b);
    return rc;
}

/* A decimal with comma or point as a double (range rule); 0 or -1. */
static int parse_number(const char *s, double *out)
{
    char norm[64];
    if (number_normalise(s, 15, norm, sizeof norm) != 0)
        return -1;
    char *end;
    *out = strtod(norm, &end);
    return *end ? -1 : 0;
}

/*
 * An amount as an exact integer in 1/10000 units (fee rule), so 12,50
 * and 12.5 compare equal without binary fractions.  0 or -1.
 */
static int parse_amount(const char *s, int64_t *out)
{
    char norm[64];
    if (number_normalise(s, 4, norm, sizeof norm) != 0)
        return -1;
    const char *p = norm;
    int neg = 0;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    int64_t frac = 0, scale = FIXED_SCALE;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++) {
            scale /= 10;
            frac += (*p - '0') * scale;
        }
    v = v * FIXED_SCALE + frac;
    *out = neg ? -v : v;
    return 0;
}

/* "12,50 €" (two decimals, or four when there are fractions of a cent). */
static void format_euro(char *out, size_t outlen, int64_t v)
{
    const char *sign = v < 0 ? "-" : "";
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t whole = a / FIXED_SCALE, frac = a % FIXED_SCALE;
    if (frac % 100 == 0)
        snprintf(out, outlen, "%s%llu,%02llu €", sign, (unsigned long long)whole,
                 (unsigned long long)(frac / 100));
    else
        snprintf(out, outlen, "%s%llu,%04llu €", sign, (unsigned long long)whole,
                 (unsigned long long)frac);
}

static const char *field_value(const rk_result *r, const char *name)
{
    const rk_mapped_field *f = name ? rk_result_field(r, name) : NULL;
    return f ? f->value : NULL;
}

static void fail(rk_result *r, const rk_rule *rule)
{
    rk_result_add_anomaly(r, rule->code, rule->field, rule->severity, "%s",
                          rule->message ? rule->message : rule->code);
}

/* pattern: the whole value matches (the job compiled "^(ERE)$"). */
static int check_pattern(const rk_rule *rule, const char *v)
{
    if (rule->compiled)
        return regexec((const regex_t *)rule->compiled, v, 0, NULL, 0) == 0;
    /* Not compiled by the loader: compile here, anchored the same way. */
    rk_buf b;
    rk_buf_init(&b, 64 * 1024);
    if (rk_buf_appendf(&b, "^(%s)$", rule->arg ? rule->arg : "") != 0) {
        rk_buf_free(&b);
        return 0;
    }
    regex_t re;
    int ok = 0;
    if (regcomp(&re, b.data, REG_EXTENDED | REG_NOSUB) == 0) {
        ok = regexec(&re, v, 0, NULL, 0) == 0;
        regfree(&re);
    }
    rk_buf_free(&b);
    return ok;
}

/* one-of: v equals one of the blank-separated words of the rule. */
static int check_one_of(const char *words, const char *v)
{
    size_t vl = strlen(v);
    const char *p = words ? words : "";
    while (*p) {
        p += strspn(p, " \t\n\r");
        size_t wl = strcspn(p, " \t\n\r");
        if (wl && wl == vl && memcmp(p, v, vl) == 0)
            return 1;
        p += wl;
    }
    return 0;
}

/* Full years between a date of birth and today (may be negative). */
static int age_years(int by, int bm, int bd, int ty, int tm, int td)
{
    int age = ty - by;
    if (tm < bm || (tm == bm && td < bd))
        age--;
    return age;
}

/*
 * fee: the paid amount (this field) must equal table[value of field2].
 * An unknown or missing key, an amount that is no number and a mismatch
 * each add the rule's anomaly with the detail.
 */
static void check_fee(const rk_job *job, const rk_rule *rule, const char *paid,
                      rk_result *r)
{
    const char *msg = rule->message ? rule->message : rule->code;
    const char *key = field_value(r, rule->field2);
    char q[QUOTE_MAX * 2 + 8];
    const rk_table *t = rk_job_table(job, rule->arg);
    const char *expected = NULL;
    for (size_t i = 0; t && key && i < t->n; i++)
        if (t->keys[i] && strcmp(t->keys[i], key) == 0)
            expected = t->values[i];
    if (!expected) {
        if (is_blank(key)) {
            rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                                  "%s (die Gebührenart fehlt)", msg);
        } else {
            quote_value(q, sizeof q, key);
            rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                                  "%s (für „%s“ ist keine Gebühr hinterlegt)", msg, q);
        }
        return;
    }
    int64_t want, got;
    if (parse_amount(expected, &want) != 0) {
        rk_warn("rules", "job %s, rule %s: table %s has no valid amount for its key",
                job->name, rule->code, rule->arg ? rule->arg : "");
        quote_value(q, sizeof q, key);
        rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                              "%s (die Gebührentabelle enthält für „%s“ keinen gültigen "
                              "Betrag)", msg, q);
        return;
    }
    if (parse_amount(paid, &got) != 0) {
        quote_value(q, sizeof q, paid);
        rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                              "%s (gezahlter Betrag „%s“ ist keine Zahl)", msg, q);
        return;
    }
    if (want != got) {
        char e[48], g[48];
        format_euro(e, sizeof e, want);
        format_euro(g, sizeof g, got);
        rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                              "%s (erwartet %s, gezahlt %s)", msg, e, g);
    }
}

/*
 * duplicate: when every key field has a value, adds an rk_dup_check with
 * the hex SHA-256 of "job\x1fvalue1\x1fvalue2..." (unit separators keep
 * "ab"+"c" apart from "a"+"bc").  The values never leave the worker;
 * only the hash is stored and compared.
 */
static void add_dup_check(const rk_job *job, size_t index, const rk_rule *rule,
                          rk_result *r)
{
    if (rule->n_keys == 0)
        return;
    rk_buf b;
    rk_buf_init(&b, 4 * 1024 * 1024);
    int rc = rk_buf_append(&b, job->name, strlen(job->name));
    for (size_t k = 0; !rc && k < rule->n_keys; k++) {
        const char *v = field_value(r, rule->keys[k]);
        if (is_blank(v)) {
            rk_buf_free(&b);
            return;
        }
        rc = rk_buf_append(&b, "\x1f", 1);
        if (!rc)
            rc = rk_buf_append(&b, v, strlen(v));
    }
    if (rc) {
        rk_buf_free(&b);
        if (rc == -ENOMEM)
            oom();
        rk_warn("rules", "job %s, rule %s: duplicate key too long, not checked", job->name,
                rule->code);
        return;
    }
    char hex[65];
    rk_sha256_hex(b.data, b.len, hex);
    rk_buf_free(&b);
    rk_dup_check *grown = realloc(r->dups, (r->n_dups + 1) * sizeof *grown);
    if (!grown)
        oom();
    r->dups = grown;
    r->dups[r->n_dups].rule = index;
    r->dups[r->n_dups].key = strdup(hex);
    if (!r->dups[r->n_dups].key)
        oom();
    r->n_dups++;
}

/*
 * Runs every rule of job over the mapped fields in r; today is the local
 * date "YYYY-MM-DD" for date rules.  Anomalies and duplicate keys are
 * added to r.  Returns 0, or RK_E_FORMAT when today is no date.
 */
int rk_rules_check(const rk_job *job, rk_result *r, const char *today)
{
    int ty, tm, td;
    if (rk_date_parse(today, &ty, &tm, &td) != 0)
        return RK_E_FORMAT;
    char q[QUOTE_MAX * 2 + 8];
    for (size_t i = 0; i < job->n_rules; i++) {
        const rk_rule *rule = &job->rules[i];
        const char *msg = rule->message ? rule->message : rule->code;
        if (rule->kind == RK_RULE_DUPLICATE) {
            add_dup_check(job, i, rule, r);
            continue;
        }
        const char *v = field_value(r, rule->field);
        if (rule->kind == RK_RULE_REQUIRED) {
            if (is_blank(v))
                fail(r, rule);
            continue;
        }
        if (is_blank(v))
            continue;
        int y, m, d;
        double num;
        switch (rule->kind) {
        case RK_RULE_PATTERN:
            if (!check_pattern(rule, v))
                fail(r, rule);
            break;
        case RK_RULE_RANGE:
            if (parse_number(v, &num) != 0) {
                quote_value(q, sizeof q, v);
                rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                                      "%s („%s“ ist keine Zahl)", msg, q);
            } else if (num < rule->num[0] || num > rule->num[1]) {
                fail(r, rule);
            }
            break;
        case RK_RULE_NOT_FUTURE:
            if (rk_date_parse(v, &y, &m, &d) != 0) {
                quote_value(q, sizeof q, v);
                rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                                      "%s („%s“ ist kein gültiges Datum)", msg, q);
            } else if (y > ty || (y == ty && (m > tm || (m == tm && d > td)))) {
                fail(r, rule);
            }
            break;
        case RK_RULE_AGE_AT_LEAST:
            if (rk_date_parse(v, &y, &m, &d) != 0) {
                quote_value(q, sizeof q, v);
                rk_result_add_anomaly(r, rule->code, rule->field, rule->severity,
                                      "%s („%s“ ist kein gültiges Datum)", msg, q);
            } else if (age_years(y, m, d, ty, tm, td) < (int)rule->num[0]) {
                fail(r, rule);
            }
            break;
        case RK_RULE_ONE_OF:
            if (!check_one_of(rule->arg, v))
                fail(r, rule);
            break;
        case RK_RULE_FEE:
            check_fee(job, rule, v, r);
            break;
        case RK_RULE_REQUIRED:
        case RK_RULE_DUPLICATE:
            break;
        }
    }
    return 0;
}
