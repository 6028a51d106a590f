/*
 * test_job.c — agent/job.c: loading job files (namespaces, fields with
 * compiled XPath, every transform with its attributes, every rule kind
 * parsed from `check`, tables, genericode lists, ${var} and ${env:X}),
 * the FILE:LINE messages of every load error, code list lookups, and the
 * registry (one broken file among good ones, clashing jobs, matching by
 * root element with a reference, reload keeping a working version).
 *
 * Everything is written into a mkdtemp folder: a small document XSD, a
 * genericode list and the job files.  The job schema is the repository's
 * schemas/rekey-job.xsd (the test runs from the repository root).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job.h"
#include "util.h"

#define NS_T "urn:t:1"

static char tmpdir[256]; /* realpath of the mkdtemp folder */

/* ---- files ---------------------------------------------------------------- */

static const char *in_tmp(const char *rel)
{
    static char buf[4][512];
    static int which;
    which = (which + 1) % 4;
    snprintf(buf[which], sizeof buf[which], "%s/%s", tmpdir, rel);
    return buf[which];
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        fail_msg("cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
}

/* 1-based line of the first occurrence of marker in text. */
static int line_of(const char *text, const char *marker)
{
    const char *at = strstr(text, marker);
    if (!at)
        fail_msg("marker '%s' not in the job text", marker);
    int line = 1;
    for (const char *p = text; p < at; p++)
        line += *p == '\n';
    return line;
}

static const char DOC_XSD[] =
    "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"urn:t:1\"\n"
    "           xmlns=\"urn:t:1\" elementFormDefault=\"qualified\">\n"
    "  <xs:element name=\"Antrag\"><xs:complexType><xs:sequence>\n"
    "    <xs:element name=\"Name\" type=\"xs:string\"/>\n"
    "  </xs:sequence></xs:complexType></xs:element>\n"
    "</xs:schema>\n";

/* Three columns; the last row gives its values by position. */
static const char GC[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<gc:CodeList xmlns:gc=\"http://docs.oasis-open.org/codelist/ns/genericode/1.0/\">\n"
    "  <Identification><ShortName>geschlecht</ShortName><Version>2</Version>\n"
    "    <CanonicalUri>urn:test:geschlecht</CanonicalUri></Identification>\n"
    "  <ColumnSet>\n"
    "    <Column Id=\"code\" Use=\"required\"/>\n"
    "    <Column Id=\"name\" Use=\"required\"/>\n"
    "    <Column Id=\"kurz\" Use=\"optional\"/>\n"
    "  </ColumnSet>\n"
    "  <SimpleCodeList>\n"
    "    <Row><Value ColumnRef=\"code\"><SimpleValue>m</SimpleValue></Value>\n"
    "         <Value ColumnRef=\"name\"><SimpleValue>männlich</SimpleValue></Value>\n"
    "         <Value ColumnRef=\"kurz\"><SimpleValue>M</SimpleValue></Value></Row>\n"
    "    <Row><Value ColumnRef=\"kurz\"><SimpleValue>W</SimpleValue></Value>\n"
    "         <Value ColumnRef=\"code\"><SimpleValue>w</SimpleValue></Value>\n"
    "         <Value ColumnRef=\"name\"><SimpleValue>weiblich</SimpleValue></Value></Row>\n"
    "    <Row><Value><SimpleValue>x</SimpleValue></Value>\n"
    "         <Value><SimpleValue>keine Angabe</SimpleValue></Value></Row>\n"
    "  </SimpleCodeList>\n"
    "</gc:CodeList>\n";

/* The parts of a job file; NULL takes the default shown in job_text. */
typedef struct jspec {
    const char *prolog;  /* before <job> (after the XML declaration) */
    const char *name;
    int version;
    const char *root;
    const char *schema;  /* href */
    const char *decls;   /* codelists and tables */
    const char *map;
    const char *rules;
    const char *conn;
} jspec;

/* A job file from its parts; caller frees. */
static char *job_text(const jspec *j)
{
    rk_buf b;
    rk_buf_init(&b, 1 << 16);
    rk_buf_appendf(&b,
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n%s"
                   "<job xmlns=\"urn:rekey:job:1\" xmlns:a=\"urn:t:1\" xmlns:b=\"urn:t:other\"\n"
                   "     name=\"%s\" version=\"%d\">\n"
                   "  <title>Testverfahren</title>\n"
                   "  <match root=\"%s\"/>\n"
                   "  <schema href=\"%s\"/>\n"
                   "%s"
                   "  <map>\n%s  </map>\n"
                   "  <rules>\n%s  </rules>\n"
                   "  <connector plugin=\"sqlite\">\n%s  </connector>\n"
                   "</job>\n",
                   j->prolog ? j->prolog : "", j->name ? j->name : "probe",
                   j->version ? j->version : 1, j->root ? j->root : "a:Antrag",
                   j->schema ? j->schema : "doc.xsd", j->decls ? j->decls : "",
                   j->map ? j->map : "    <field name=\"name\" from=\"a:Name\"><trim/></field>\n",
                   j->rules ? j->rules : "",
                   j->conn ? j->conn : "    <set key=\"table\">t</set>\n");
    return rk_buf_take(&b);
}

/* Writes the job as tmpdir/name and loads it; *text gets the text. */
static rk_job *load_spec(const jspec *j, const char *file, const rk_vars *vars, char **text,
                         char *err, size_t errlen)
{
    char *t = job_text(j);
    write_file(in_tmp(file), t);
    rk_job *job = rk_job_load(in_tmp(file), vars, err, errlen);
    if (text)
        *text = t;
    else
        free(t);
    return job;
}

/* Loads j, expects failure with "FILE:LINE: " + a message containing
 * want, where LINE is the line of marker. */
static void expect_load_error(const jspec *j, const char *marker, const char *want)
{
    char err[1024], *text;
    rk_job *job = load_spec(j, "bad.xml", NULL, &text, err, sizeof err);
    if (job)
        fail_msg("job loaded, expected an error containing '%s'", want);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s:%d: ", in_tmp("bad.xml"), line_of(text, marker));
    free(text);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("error '%s' does not start with '%s'", err, prefix);
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static const char DECLS[] =
    "  <codelist name=\"geschlecht\" href=\"gc/geschlecht.gc\"/>\n"
    "  <table name=\"gebuehren\"><entry key=\"tag\" value=\"5.00\"/>"
    "<entry key=\"woche\" value=\"15.00\"/></table>\n";

/* ---- a valid job ---------------------------------------------------------------- */

static const char FULL_MAP[] =
    "    <field name=\"nachname\" from=\"a:Name\"><trim/><upper/><lower/></field>\n"
    "    <field name=\"geburtsdatum\" from=\"a:Geb\">"
    "<date in=\"%Y-%m-%d\" out=\"%d.%m.%Y\"/><date/></field>\n"
    "    <field name=\"betrag\" from=\"a:Betrag\"><decimal places=\"3\" point=\",\"/>"
    "<decimal/></field>\n"
    "    <field name=\"strasse\" from=\"a:Str\"><concat from=\"a:Nr\" separator=\"-\"/>"
    "<concat from=\"string(b:Zusatz)\"/></field>\n"
    "    <field name=\"dauer\" from=\"a:Dauer\"><default value=\"tag\"/>"
    "<lookup table=\"gebuehren\" strict=\"false\"/><lookup table=\"gebuehren\"/></field>\n"
    "    <field name=\"geschlecht\" from=\"a:G\"><codelist list=\"geschlecht\"/>"
    "<codelist list=\"geschlecht\" column=\"kurz\"/></field>\n"
    "    <field name=\"kz\" from=\"a:Kz\">"
    "<replace pattern=\"([A-Z]+) ([0-9]+)\" with=\"\\1-\\2\"/>"
    "<split separator=\"-\" index=\"1\"/><split separator=\";\"/></field>\n"
    "    <field name=\"zahl\" from=\"count(a:X) + 1\"/>\n";

static const char FULL_RULES[] =
    "    <rule code=\"PFLICHT\" field=\"nachname\" check=\"required\">\n"
    "       Name fehlt  </rule>\n"
    "    <rule code=\"PLZ\" field=\"kz\" check=\"pattern [0-9]{5}\" severity=\"warn\">PLZ</rule>\n"
    "    <rule code=\"BEREICH\" field=\"betrag\" check=\"range 1,5 99.25\">Betrag</rule>\n"
    "    <rule code=\"ZUKUNFT\" field=\"geburtsdatum\" check=\"not-future\">Datum</rule>\n"
    "    <rule code=\"ALTER\" field=\"geburtsdatum\" check=\"age-at-least 14\">Alter</rule>\n"
    "    <rule code=\"EINS\" field=\"geschlecht\" check=\"one-of m w d\">Geschlecht</rule>\n"
    "    <rule code=\"GEBUEHR\" field=\"betrag\" check=\"fee gebuehren dauer\">Gebühr</rule>\n"
    "    <rule code=\"DOPPELT\" check=\"duplicate 30 nachname geburtsdatum\" severity=\"warn\">"
    "Doppelt</rule>\n";

static const char FULL_CONN[] =
    "    <set key=\"database\">${target_db}</set>\n"
    "    <set key=\"table\">t_${env:RK_TEST_TABLE}_${suffix}</set>\n"
    "    <set key=\"plain\">no variables here</set>\n";

static rk_job *load_full(char **text)
{
    const char *names[] = {"target_db", "suffix"};
    const char *values[] = {"/srv/fv.db", "x"};
    rk_vars vars = {names, values, 2};
    jspec j = {.name = "voll", .version = 7, .decls = DECLS, .map = FULL_MAP,
               .rules = FULL_RULES, .conn = FULL_CONN};
    char err[1024];
    rk_job *job = load_spec(&j, "voll.xml", &vars, text, err, sizeof err);
    if (!job)
        fail_msg("rk_job_load: %s", err);
    return job;
}

static void test_valid_job_header(void **state)
{
    (void)state;
    char *text;
    rk_job *job = load_full(&text);
    assert_int_equal(job->refs, 1);
    assert_string_equal(job->path, in_tmp("voll.xml"));
    assert_string_equal(job->name, "voll");
    assert_int_equal(job->version, 7);
    assert_string_equal(job->title, "Testverfahren");
    assert_string_equal(job->root_ns, NS_T);
    assert_string_equal(job->root_name, "Antrag");
    assert_string_equal(job->schema_path, in_tmp("doc.xsd"));
    assert_non_null(job->schema);
    /* prefixes declared on <job>; the default namespace has none */
    assert_int_equal(job->n_ns, 2);
    assert_string_equal(job->ns_prefixes[0], "a");
    assert_string_equal(job->ns_uris[0], NS_T);
    assert_string_equal(job->ns_prefixes[1], "b");
    assert_string_equal(job->ns_uris[1], "urn:t:other");
    /* connector and settings after substitution */
    assert_int_equal(job->n_connectors, 1);
    const rk_job_connector *jc = &job->connectors[0];
    assert_string_equal(jc->plugin, "sqlite");
    assert_string_equal(jc->name, "sqlite"); /* default: the plugin name */
    assert_int_equal(jc->line, line_of(text, "<connector"));
    assert_int_equal(jc->n_settings, 3);
    assert_string_equal(jc->settings[0].key, "database");
    assert_string_equal(jc->settings[0].value, "/srv/fv.db");
    assert_string_equal(jc->settings[1].key, "table");
    assert_string_equal(jc->settings[1].value, "t_fisch_x");
    assert_string_equal(jc->settings[2].value, "no variables here");
    /* tables */
    assert_int_equal(job->n_tables, 1);
    const rk_table *t = rk_job_table(job, "gebuehren");
    assert_non_null(t);
    assert_int_equal(t->n, 2);
    assert_string_equal(t->keys[1], "woche");
    assert_string_equal(t->values[1], "15.00");
    assert_null(rk_job_table(job, "nope"));
    free(text);
    rk_job_unref(job);
}

static void test_valid_job_fields_and_transforms(void **state)
{
    (void)state;
    char *text;
    rk_job *job = load_full(&text);
    assert_int_equal(job->n_fields, 8);
    static const char *names[] = {"nachname", "geburtsdatum", "betrag", "strasse",
                                  "dauer", "geschlecht", "kz", "zahl"};
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(job->fields[i].name, names[i]);
        assert_non_null(job->fields[i].compiled);
        char marker[64];
        snprintf(marker, sizeof marker, "field name=\"%s\"", names[i]);
        assert_int_equal(job->fields[i].line, line_of(text, marker));
    }
    assert_string_equal(job->fields[0].xpath, "a:Name");
    assert_string_equal(job->fields[7].xpath, "count(a:X) + 1");

    rk_field_def *f = &job->fields[0];
    assert_int_equal(f->n_tx, 3);
    assert_int_equal(f->tx[0].kind, RK_TX_TRIM);
    assert_int_equal(f->tx[1].kind, RK_TX_UPPER);
    assert_int_equal(f->tx[2].kind, RK_TX_LOWER);
    assert_int_equal(f->tx[0].line, line_of(text, "<trim/><upper/>"));

    f = &job->fields[1];
    assert_int_equal(f->n_tx, 2);
    assert_int_equal(f->tx[0].kind, RK_TX_DATE);
    assert_string_equal(f->tx[0].a, "%Y-%m-%d");
    assert_string_equal(f->tx[0].b, "%d.%m.%Y");
    assert_int_equal(f->tx[1].kind, RK_TX_DATE);
    assert_string_equal(f->tx[1].a, "%Y-%m-%d"); /* defaults */
    assert_string_equal(f->tx[1].b, "%Y-%m-%d");

    f = &job->fields[2];
    assert_int_equal(f->tx[0].kind, RK_TX_DECIMAL);
    assert_int_equal(f->tx[0].n, 3);
    assert_string_equal(f->tx[0].a, ",");
    assert_int_equal(f->tx[1].n, 2);
    assert_string_equal(f->tx[1].a, ".");

    f = &job->fields[3];
    assert_int_equal(f->tx[0].kind, RK_TX_CONCAT);
    assert_string_equal(f->tx[0].a, "a:Nr");
    assert_string_equal(f->tx[0].b, "-");
    assert_non_null(f->tx[0].compiled);
    assert_string_equal(f->tx[1].a, "string(b:Zusatz)");
    assert_string_equal(f->tx[1].b, " ");
    assert_non_null(f->tx[1].compiled);

    f = &job->fields[4];
    assert_int_equal(f->n_tx, 3);
    assert_int_equal(f->tx[0].kind, RK_TX_DEFAULT);
    assert_string_equal(f->tx[0].a, "tag");
    assert_int_equal(f->tx[1].kind, RK_TX_LOOKUP);
    assert_string_equal(f->tx[1].a, "gebuehren");
    assert_int_equal(f->tx[1].n, 0); /* strict="false" */
    assert_int_equal(f->tx[2].n, 1); /* strict by default */

    f = &job->fields[5];
    assert_int_equal(f->tx[0].kind, RK_TX_CODELIST);
    assert_string_equal(f->tx[0].a, "geschlecht");
    assert_null(f->tx[0].b);
    assert_string_equal(f->tx[1].b, "kurz");

    f = &job->fields[6];
    assert_int_equal(f->n_tx, 3);
    assert_int_equal(f->tx[0].kind, RK_TX_REPLACE);
    assert_string_equal(f->tx[0].a, "([A-Z]+) ([0-9]+)");
    assert_string_equal(f->tx[0].b, "\\1-\\2");
    assert_non_null(f->tx[0].compiled);
    regmatch_t m[3];
    assert_int_equal(regexec(f->tx[0].compiled, "xx AB 12", 3, m, 0), 0);
    assert_int_equal(m[2].rm_so, 6);
    assert_int_equal(f->tx[1].kind, RK_TX_SPLIT);
    assert_string_equal(f->tx[1].a, "-");
    assert_int_equal(f->tx[1].n, 1);
    assert_string_equal(f->tx[2].a, ";");
    assert_int_equal(f->tx[2].n, 0);

    assert_int_equal(job->fields[7].n_tx, 0);
    free(text);
    rk_job_unref(job);
}

static void test_valid_job_rules(void **state)
{
    (void)state;
    char *text;
    rk_job *job = load_full(&text);
    assert_int_equal(job->n_rules, 8);
    rk_rule *r = job->rules;

    assert_int_equal(r[0].kind, RK_RULE_REQUIRED);
    assert_string_equal(r[0].code, "PFLICHT");
    assert_string_equal(r[0].field, "nachname");
    assert_int_equal(r[0].severity, RK_SEV_BLOCK);
    assert_string_equal(r[0].message, "Name fehlt"); /* trimmed */
    assert_int_equal(r[0].line, line_of(text, "code=\"PFLICHT\""));

    assert_int_equal(r[1].kind, RK_RULE_PATTERN);
    assert_string_equal(r[1].arg, "[0-9]{5}");
    assert_int_equal(r[1].severity, RK_SEV_WARN);
    assert_non_null(r[1].compiled);
    /* the whole value must match */
    assert_int_equal(regexec(r[1].compiled, "12345", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(r[1].compiled, "123456", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(r[1].compiled, "a12345", 0, NULL, 0), 0);

    assert_int_equal(r[2].kind, RK_RULE_RANGE);
    assert_true(r[2].num[0] == 1.5);
    assert_true(r[2].num[1] == 99.25);

    assert_int_equal(r[3].kind, RK_RULE_NOT_FUTURE);
    assert_string_equal(r[3].field, "geburtsdatum");

    assert_int_equal(r[4].kind, RK_RULE_AGE_AT_LEAST);
    assert_true(r[4].num[0] == 14);

    assert_int_equal(r[5].kind, RK_RULE_ONE_OF);
    assert_string_equal(r[5].arg, "m w d");

    assert_int_equal(r[6].kind, RK_RULE_FEE);
    assert_string_equal(r[6].arg, "gebuehren");
    assert_string_equal(r[6].field2, "dauer");
    assert_string_equal(r[6].message, "Gebühr");

    assert_int_equal(r[7].kind, RK_RULE_DUPLICATE);
    assert_null(r[7].field);
    assert_true(r[7].num[0] == 30);
    assert_int_equal(r[7].n_keys, 2);
    assert_string_equal(r[7].keys[0], "nachname");
    assert_string_equal(r[7].keys[1], "geburtsdatum");
    assert_int_equal(r[7].severity, RK_SEV_WARN);
    free(text);
    rk_job_unref(job);
}

static void test_codelist_lookup(void **state)
{
    (void)state;
    char *text;
    rk_job *job = load_full(&text);
    free(text);
    assert_int_equal(job->n_codelists, 1);
    const rk_codelist *cl = rk_job_codelist(job, "geschlecht");
    assert_non_null(cl);
    assert_null(rk_job_codelist(job, "nope"));
    assert_string_equal(cl->uri, "urn:test:geschlecht");
    assert_string_equal(cl->version, "2");
    assert_int_equal(cl->n_columns, 3);
    assert_string_equal(cl->columns[0], "code");
    assert_string_equal(cl->columns[2], "kurz");
    assert_int_equal(cl->n_rows, 3);
    /* default column: the second */
    assert_string_equal(rk_codelist_lookup(cl, "m", NULL), "männlich");
    /* values given out of column order land in their columns */
    assert_string_equal(rk_codelist_lookup(cl, "w", NULL), "weiblich");
    assert_string_equal(rk_codelist_lookup(cl, "w", "kurz"), "W");
    assert_string_equal(rk_codelist_lookup(cl, "m", "code"), "m");
    /* positional values; an empty cell is NULL */
    assert_string_equal(rk_codelist_lookup(cl, "x", "name"), "keine Angabe");
    assert_null(rk_codelist_lookup(cl, "x", "kurz"));
    /* unknown code, unknown column, no code */
    assert_null(rk_codelist_lookup(cl, "q", NULL));
    assert_null(rk_codelist_lookup(cl, "W", NULL)); /* codes are case-sensitive */
    assert_null(rk_codelist_lookup(cl, "m", "nope"));
    assert_null(rk_codelist_lookup(cl, NULL, NULL));
    rk_job_unref(job);
}

static void test_root_without_prefix(void **state)
{
    (void)state;
    jspec j = {.root = "Antrag"};
    char err[1024];
    rk_job *job = load_spec(&j, "plain.xml", NULL, NULL, err, sizeof err);
    if (!job)
        fail_msg("rk_job_load: %s", err);
    assert_string_equal(job->root_ns, "");
    assert_string_equal(job->root_name, "Antrag");
    rk_job_unref(job);
}

/* ---- variables ------------------------------------------------------------------ */

static void test_vars_undefined(void **state)
{
    (void)state;
    jspec j = {.conn = "    <set key=\"table\">t</set>\n"
                       "    <set key=\"database\">/x/${target_dbb}/y</set>\n"};
    expect_load_error(&j, "${target_dbb}", "${target_dbb} is not defined");
    jspec e = {.conn = "    <set key=\"conninfo\">${env:RK_TEST_NOT_SET_ANYWHERE}</set>\n"};
    expect_load_error(&e, "${env:", "${env:RK_TEST_NOT_SET_ANYWHERE} is not defined");
    char err[1024], *text;
    assert_null(load_spec(&e, "bad.xml", NULL, &text, err, sizeof err));
    assert_non_null(strstr(err, "environment"));
    free(text);
    jspec u = {.conn = "    <set key=\"table\">${open</set>\n"};
    expect_load_error(&u, "${open", "unterminated ${");
}

static void test_vars_values(void **state)
{
    (void)state;
    /* the last definition of a name wins; text around it is kept */
    const char *names[] = {"v", "w", "v"};
    const char *values[] = {"first", "zwei", "last"};
    rk_vars vars = {names, values, 3};
    jspec j = {.conn = "    <set key=\"a\">${v}${w}-${v}</set>\n"
                       "    <set key=\"b\"></set>\n"};
    char err[1024];
    rk_job *job = load_spec(&j, "vars.xml", &vars, NULL, err, sizeof err);
    if (!job)
        fail_msg("rk_job_load: %s", err);
    assert_string_equal(job->connectors[0].settings[0].value, "lastzwei-last");
    assert_string_equal(job->connectors[0].settings[1].value, "");
    rk_job_unref(job);
}

/* ---- load errors name FILE:LINE ------------------------------------------------ */

static void test_error_schema_violation(void **state)
{
    (void)state;
    jspec j = {.map = "    <field name=\"name\" from=\"a:Name\"/>\n"
                      "    <feild name=\"other\" from=\"a:Name\"/>\n"};
    expect_load_error(&j, "<feild", "feild");
    jspec r = {.rules = "    <rule code=\"ALTER\" field=\"name\" check=\"age-at-least vierzehn\">"
                        "x</rule>\n"};
    expect_load_error(&r, "code=\"ALTER\"", "check");
    jspec n = {.map = "    <field name=\"Gross\" from=\"a:Name\"/>\n"};
    expect_load_error(&n, "Gross", "'Gross'");
    jspec t = {.map = "    <field name=\"name\" from=\"a:Name\"><trimm/></field>\n"};
    expect_load_error(&t, "<trimm/>", "trimm");
}

static void test_error_undeclared_prefix(void **state)
{
    (void)state;
    jspec j = {.map = "    <field name=\"name\" from=\"a:Name\"/>\n"
                      "    <field name=\"vorname\" from=\"x:Vorname\"/>\n"};
    expect_load_error(&j, "x:Vorname", "XPath 'x:Vorname' cannot be evaluated");
    jspec c = {.map = "    <field name=\"name\" from=\"a:Name\">\n"
                      "      <concat from=\"q:Nr\"/></field>\n"};
    expect_load_error(&c, "q:Nr", "XPath 'q:Nr'");
    jspec s = {.map = "    <field name=\"name\" from=\"a:Name[\"/>\n"};
    expect_load_error(&s, "a:Name[", "invalid XPath expression 'a:Name['");
    jspec m = {.root = "z:Antrag"};
    expect_load_error(&m, "<match", "z:Antrag");
}

static void test_error_invalid_regex(void **state)
{
    (void)state;
    jspec j = {.map = "    <field name=\"name\" from=\"a:Name\">\n"
                      "      <replace pattern=\"([a-z\" with=\"x\"/></field>\n"};
    expect_load_error(&j, "<replace", "invalid regular expression '([a-z'");
    jspec r = {.rules = "    <rule code=\"PLZ\" field=\"name\" check=\"pattern [[:ziffer:]]\">"
                        "x</rule>\n"};
    expect_load_error(&r, "code=\"PLZ\"", "invalid regular expression '[[:ziffer:]]'");
}

static void test_error_lookup_missing_table(void **state)
{
    (void)state;
    jspec j = {.decls = DECLS,
               .map = "    <field name=\"name\" from=\"a:Name\">\n"
                      "      <lookup table=\"gebuehrn\"/></field>\n"};
    expect_load_error(&j, "<lookup", "lookup names table 'gebuehrn'");
}

static void test_error_codelist_transform(void **state)
{
    (void)state;
    jspec j = {.decls = DECLS,
               .map = "    <field name=\"name\" from=\"a:Name\">\n"
                      "      <codelist list=\"staat\"/></field>\n"};
    expect_load_error(&j, "<codelist list", "names list 'staat'");
    jspec c = {.decls = DECLS,
               .map = "    <field name=\"name\" from=\"a:Name\">\n"
                      "      <codelist list=\"geschlecht\" column=\"lang\"/></field>\n"};
    expect_load_error(&c, "<codelist list", "code list 'geschlecht' has no column 'lang'");
}

static void test_error_rule_fields(void **state)
{
    (void)state;
    jspec j = {.rules = "    <rule code=\"PFLICHT\" field=\"vorname\" check=\"required\">x"
                        "</rule>\n"};
    expect_load_error(&j, "code=\"PFLICHT\"", "rule PFLICHT names field 'vorname'");
    jspec n = {.rules = "    <rule code=\"PFLICHT\" check=\"required\">x</rule>\n"};
    expect_load_error(&n, "code=\"PFLICHT\"", "rule PFLICHT needs field=");
    jspec d = {.rules = "    <rule code=\"DOPPELT\" check=\"duplicate 7 name gebdat\">x"
                        "</rule>\n"};
    expect_load_error(&d, "code=\"DOPPELT\"", "duplicate rule names field 'gebdat'");
    jspec t = {.map = "    <field name=\"name\" from=\"a:Name\"/>\n"
                      "    <field name=\"name\" from=\"a:Other\"/>\n"};
    expect_load_error(&t, "a:Other", "field 'name' is mapped twice");
    jspec r = {.rules = "    <rule code=\"BEREICH\" field=\"name\" check=\"range 10 1\">x"
                        "</rule>\n"};
    expect_load_error(&r, "code=\"BEREICH\"", "range needs two numbers");
}

static void test_error_fee_rule(void **state)
{
    (void)state;
    jspec j = {.decls = DECLS,
               .rules = "    <rule code=\"GEBUEHR\" field=\"name\" check=\"fee preise name\">x"
                        "</rule>\n"};
    expect_load_error(&j, "code=\"GEBUEHR\"", "fee rule names table 'preise'");
    jspec k = {.decls = DECLS,
               .rules = "    <rule code=\"GEBUEHR\" field=\"name\" check=\"fee gebuehren dauer\">"
                        "x</rule>\n"};
    expect_load_error(&k, "code=\"GEBUEHR\"", "fee rule names key field 'dauer'");
}

static void test_error_doctype(void **state)
{
    (void)state;
    jspec j = {.prolog = "<!DOCTYPE job [ <!ENTITY x SYSTEM \"file:///etc/passwd\"> ]>\n",
               .conn = "    <set key=\"table\">&x;</set>\n"};
    char err[1024];
    assert_null(load_spec(&j, "bad.xml", NULL, NULL, err, sizeof err));
    char want[600];
    snprintf(want, sizeof want, "%s: job files must not carry a DOCTYPE", in_tmp("bad.xml"));
    assert_string_equal(err, want);
    jspec p = {.prolog = "<!DOCTYPE job>\n"};
    assert_null(load_spec(&p, "bad.xml", NULL, NULL, err, sizeof err));
    assert_string_equal(err, want);
}

/* A schema href that points nowhere is a mistake in the job file: the
 * message names the job file and the line of <schema>, and the path
 * that was tried. */
static void test_error_missing_xsd(void **state)
{
    (void)state;
    jspec j = {.schema = "nowhere/antrag.xsd"};
    expect_load_error(&j, "<schema", in_tmp("nowhere/antrag.xsd"));
}

static void test_error_missing_codelist_file(void **state)
{
    (void)state;
    jspec j = {.decls = "  <codelist name=\"staat\" href=\"gc/staat.gc\"/>\n"};
    char err[1024];
    assert_null(load_spec(&j, "bad.xml", NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, in_tmp("gc/staat.gc")));
    assert_non_null(strstr(err, "cannot read code list"));
}

static void test_error_not_xml_and_missing(void **state)
{
    (void)state;
    write_file(in_tmp("bad.xml"), "<job xmlns=\"urn:rekey:job:1\">\n  <title>x</titel>\n");
    char err[1024];
    assert_null(rk_job_load(in_tmp("bad.xml"), NULL, err, sizeof err));
    /* FILE:LINE: with the line libxml2 stopped at */
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s:", in_tmp("bad.xml"));
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("'%s' does not start with '%s'", err, prefix);
    char *end = NULL;
    long line = strtol(err + strlen(prefix), &end, 10);
    assert_true(line >= 2 && line <= 3);
    assert_true(end[0] == ':' && end[1] == ' ');
    assert_null(rk_job_load(in_tmp("none.xml"), NULL, err, sizeof err));
    assert_non_null(strstr(err, in_tmp("none.xml")));
    assert_non_null(strstr(err, "No such file"));
}

/* ---- the registry ------------------------------------------------------------ */

/* A fresh folder tmpdir/name for a registry. */
static const char *reg_dir(const char *name)
{
    const char *d = in_tmp(name);
    mkdir(d, 0700);
    return d;
}

static void write_job(const char *dir, const char *file, const jspec *j)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *t = job_text(j);
    write_file(path, t);
    free(t);
}

static void test_registry_load_good_and_broken(void **state)
{
    (void)state;
    const char *d = reg_dir("reg1");
    jspec good = {.name = "gut", .schema = "../doc.xsd"};
    jspec broken = {.name = "kaputt", .schema = "../doc.xsd",
                    .map = "    <feld name=\"name\" from=\"a:Name\"/>\n"};
    write_job(d, "good.xml", &good);
    write_job(d, "broken.xml", &broken);
    write_job(d, "notes.txt", &broken);   /* not *.xml: ignored */
    write_job(d, ".hidden.xml", &broken); /* dot file: ignored */
    char *errors = NULL;
    rk_registry *reg = rk_registry_load(d, NULL, &errors);
    assert_non_null(reg);
    assert_int_equal(rk_registry_count(reg), 1);
    assert_string_equal(rk_registry_at(reg, 0)->name, "gut");
    assert_null(rk_registry_at(reg, 1));
    assert_non_null(errors);
    assert_non_null(strstr(errors, "broken.xml:"));
    assert_non_null(strstr(errors, "feld"));
    assert_null(strstr(errors, "good.xml"));
    assert_null(strstr(errors, "notes.txt"));
    assert_null(strstr(errors, "hidden"));
    /* one line per failed file */
    assert_non_null(strchr(errors, '\n'));
    assert_null(strchr(strchr(errors, '\n') + 1, '\n'));
    free(errors);
    rk_registry_free(reg);

    /* a missing folder is the only reason for NULL */
    assert_null(rk_registry_load(in_tmp("no-such-dir"), NULL, &errors));
}

static void test_registry_clash(void **state)
{
    (void)state;
    const char *d = reg_dir("reg2");
    jspec a = {.name = "erst", .schema = "../doc.xsd"};
    jspec b = {.name = "zweit", .schema = "../doc.xsd"};              /* same root */
    jspec c = {.name = "erst", .schema = "../doc.xsd", .root = "a:X"}; /* same name */
    write_job(d, "a.xml", &a);
    write_job(d, "b.xml", &b);
    write_job(d, "c.xml", &c);
    char *errors = NULL;
    rk_registry *reg = rk_registry_load(d, NULL, &errors);
    assert_non_null(reg);
    assert_int_equal(rk_registry_count(reg), 1);
    assert_string_equal(rk_registry_at(reg, 0)->name, "erst");
    assert_string_equal(rk_registry_at(reg, 0)->root_name, "Antrag");
    assert_non_null(errors);
    char want[800];
    snprintf(want, sizeof want, "%s/b.xml: job 'zweit' clashes with %s/a.xml", d, d);
    assert_non_null(strstr(errors, want));
    snprintf(want, sizeof want, "%s/c.xml: job 'erst' clashes with %s/a.xml", d, d);
    assert_non_null(strstr(errors, want));
    free(errors);
    rk_registry_free(reg);
}

static void test_registry_match_refs(void **state)
{
    (void)state;
    const char *d = reg_dir("reg3");
    jspec a = {.name = "antrag", .schema = "../doc.xsd"};
    jspec b = {.name = "anzeige", .schema = "../doc.xsd", .root = "b:Anzeige"};
    jspec c = {.name = "ohne", .schema = "../doc.xsd", .root = "Antrag"};
    write_job(d, "a.xml", &a);
    write_job(d, "b.xml", &b);
    write_job(d, "c.xml", &c);
    char *errors = NULL;
    rk_registry *reg = rk_registry_load(d, NULL, &errors);
    assert_non_null(reg);
    assert_null(errors);
    assert_int_equal(rk_registry_count(reg), 3);

    rk_job *j = rk_registry_match(reg, NS_T, "Antrag");
    assert_non_null(j);
    assert_string_equal(j->name, "antrag");
    assert_int_equal(j->refs, 2);
    rk_job *j2 = rk_registry_match(reg, "urn:t:other", "Anzeige");
    assert_non_null(j2);
    assert_string_equal(j2->name, "anzeige");
    /* no namespace is its own namespace */
    rk_job *j3 = rk_registry_match(reg, NULL, "Antrag");
    assert_non_null(j3);
    assert_string_equal(j3->name, "ohne");
    assert_null(rk_registry_match(reg, NS_T, "Anzeige"));
    assert_null(rk_registry_match(reg, "urn:t:2", "Antrag"));
    rk_job *byname = rk_registry_find(reg, "antrag");
    assert_ptr_equal(byname, j);
    assert_int_equal(j->refs, 3);
    assert_null(rk_registry_find(reg, "nope"));
    rk_job_unref(byname);
    rk_job_unref(j2);
    rk_job_unref(j3);
    /* a referenced job outlives the registry */
    rk_registry_free(reg);
    assert_int_equal(j->refs, 1);
    assert_string_equal(j->name, "antrag");
    rk_job_unref(j);
}

static void test_registry_reload(void **state)
{
    (void)state;
    const char *d = reg_dir("reg4");
    jspec a1 = {.name = "aa", .version = 1, .schema = "../doc.xsd"};
    jspec b1 = {.name = "bb", .version = 1, .schema = "../doc.xsd", .root = "a:Other"};
    jspec c1 = {.name = "cc", .version = 1, .schema = "../doc.xsd", .root = "a:Third"};
    write_job(d, "a.xml", &a1);
    write_job(d, "b.xml", &b1);
    write_job(d, "c.xml", &c1);
    char *errors = NULL;
    rk_registry *reg = rk_registry_load(d, NULL, &errors);
    assert_non_null(reg);
    assert_null(errors);
    rk_job *held = rk_registry_match(reg, NS_T, "Antrag");
    assert_non_null(held);

    /* a breaks, b gets a new version, c disappears */
    jspec a2 = {.name = "aa", .version = 2, .schema = "../doc.xsd",
                .map = "    <feld name=\"name\" from=\"a:Name\"/>\n"};
    jspec b2 = {.name = "bb", .version = 2, .schema = "../doc.xsd", .root = "a:Other"};
    write_job(d, "a.xml", &a2);
    write_job(d, "b.xml", &b2);
    char cpath[700];
    snprintf(cpath, sizeof cpath, "%s/c.xml", d);
    unlink(cpath);
    assert_int_equal(rk_registry_reload(reg, NULL, &errors), 0);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "a.xml:"));
    free(errors);
    assert_int_equal(rk_registry_count(reg), 2);
    rk_job *a = rk_registry_find(reg, "aa");
    assert_ptr_equal(a, held); /* the running version, not a copy */
    assert_int_equal(a->version, 1);
    rk_job_unref(a);
    rk_job *b = rk_registry_find(reg, "bb");
    assert_non_null(b);
    assert_int_equal(b->version, 2);
    rk_job_unref(b);
    assert_null(rk_registry_find(reg, "cc"));

    /* a is fixed with a new version: it replaces the kept one */
    jspec a3 = {.name = "aa", .version = 3, .schema = "../doc.xsd"};
    write_job(d, "a.xml", &a3);
    errors = (char *)"untouched";
    assert_int_equal(rk_registry_reload(reg, NULL, &errors), 0);
    assert_null(errors);
    a = rk_registry_match(reg, NS_T, "Antrag");
    assert_non_null(a);
    assert_int_equal(a->version, 3);
    assert_ptr_not_equal(a, held);
    rk_job_unref(a);
    /* the worker's reference still holds the old version */
    assert_int_equal(held->version, 1);
    assert_int_equal(held->refs, 1);
    rk_job_unref(held);
    rk_registry_free(reg);
}

/* Whatever breaks in a job file, the running version keeps running: here
 * the edit points <schema> at a file that does not exist. */
static void test_registry_reload_keeps_job_with_broken_schema_href(void **state)
{
    (void)state;
    const char *d = reg_dir("reg5");
    jspec a1 = {.name = "aa", .version = 1, .schema = "../doc.xsd"};
    write_job(d, "a.xml", &a1);
    char *errors = NULL;
    rk_registry *reg = rk_registry_load(d, NULL, &errors);
    assert_non_null(reg);
    assert_int_equal(rk_registry_count(reg), 1);
    jspec a2 = {.name = "aa", .version = 2, .schema = "../gone.xsd"};
    write_job(d, "a.xml", &a2);
    int rc = rk_registry_reload(reg, NULL, &errors);
    int has_errors = errors != NULL;
    free(errors);
    size_t count = rk_registry_count(reg);
    rk_job *a = rk_registry_find(reg, "aa");
    long version = a ? a->version : -1;
    rk_job_unref(a);
    rk_registry_free(reg); /* before asserting: a failure must not leak */
    assert_int_equal(rc, 0);
    assert_true(has_errors);
    assert_int_equal(count, 1);
    assert_int_equal(version, 1);
}

/* A validator (rekeyd checks connector settings with one) refuses jobs
 * like a broken file: not loaded, reported, old version kept on reload. */
static int refuse_v2(const rk_job *job, void *arg, char *err, size_t errlen)
{
    int *calls = arg;
    (*calls)++;
    if (job->version < 2)
        return 0;
    snprintf(err, errlen, "%s: connector sqlite: setting 'table' fehlt", job->path);
    return -1;
}

static void test_registry_validator(void **state)
{
    (void)state;
    const char *d = reg_dir("reg6");
    jspec a1 = {.name = "aa", .version = 1, .schema = "../doc.xsd"};
    jspec b2 = {.name = "bb", .version = 2, .schema = "../doc.xsd", .root = "a:Other"};
    write_job(d, "a.xml", &a1);
    write_job(d, "b.xml", &b2);
    int calls = 0;
    rk_registry_set_validator(refuse_v2, &calls);
    char *errors = NULL;
    rk_registry *reg = rk_registry_load(d, NULL, &errors);
    assert_non_null(reg);
    assert_int_equal(calls, 2);
    assert_int_equal(rk_registry_count(reg), 1);
    assert_string_equal(rk_registry_at(reg, 0)->name, "aa");
    char want[800];
    snprintf(want, sizeof want, "%s/b.xml: connector sqlite: setting 'table' fehlt\n", d);
    assert_non_null(errors);
    assert_string_equal(errors, want);
    free(errors);
    /* a's new version fails the check: version 1 keeps running */
    jspec a2 = {.name = "aa", .version = 2, .schema = "../doc.xsd"};
    write_job(d, "a.xml", &a2);
    assert_int_equal(rk_registry_reload(reg, NULL, &errors), 0);
    free(errors);
    rk_registry_set_validator(NULL, NULL);
    assert_int_equal(rk_registry_count(reg), 1);
    assert_int_equal(rk_registry_at(reg, 0)->version, 1);
    /* without a validator both load */
    assert_int_equal(rk_registry_reload(reg, NULL, &errors), 0);
    assert_null(errors);
    assert_int_equal(rk_registry_count(reg), 2);
    rk_registry_free(reg);
}

/* ---- set-up -------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    char real[PATH_MAX];
    if (!realpath("schemas/rekey-job.xsd", real)) {
        fprintf(stderr, "test_job: run from the repository root (schemas/rekey-job.xsd)\n");
        return -1;
    }
    setenv("REKEY_JOB_SCHEMA", real, 1);
    setenv("RK_TEST_TABLE", "fisch", 1);
    unsetenv("RK_TEST_NOT_SET_ANYWHERE");
    char tmpl[] = "/tmp/rk_job_XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, real) || strlen(real) >= sizeof tmpdir)
        return -1;
    memcpy(tmpdir, real, strlen(real) + 1);
    write_file(in_tmp("doc.xsd"), DOC_XSD);
    mkdir(in_tmp("gc"), 0700);
    write_file(in_tmp("gc/geschlecht.gc"), GC);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    rk_log_set_level(-1); /* the registry logs every broken file; the tests check errors */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_job_header),
        cmocka_unit_test(test_valid_job_fields_and_transforms),
        cmocka_unit_test(test_valid_job_rules),
        cmocka_unit_test(test_codelist_lookup),
        cmocka_unit_test(test_root_without_prefix),
        cmocka_unit_test(test_vars_undefined),
        cmocka_unit_test(test_vars_values),
        cmocka_unit_test(test_error_schema_violation),
        cmocka_unit_test(test_error_undeclared_prefix),
        cmocka_unit_test(test_error_invalid_regex),
        cmocka_unit_test(test_error_lookup_missing_table),
        cmocka_unit_test(test_error_codelist_transform),
        cmocka_unit_test(test_error_rule_fields),
        cmocka_unit_test(test_error_fee_rule),
        cmocka_unit_test(test_error_doctype),
        cmocka_unit_test(test_error_missing_xsd),
        cmocka_unit_test(test_error_missing_codelist_file),
        cmocka_unit_test(test_error_not_xml_and_missing),
        cmocka_unit_test(test_registry_load_good_and_broken),
        cmocka_unit_test(test_registry_clash),
        cmocka_unit_test(test_registry_match_refs),
        cmocka_unit_test(test_registry_reload),
        cmocka_unit_test(test_registry_reload_keeps_job_with_broken_schema_href),
        cmocka_unit_test(test_registry_validator),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
