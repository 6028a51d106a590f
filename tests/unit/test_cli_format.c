/*
 * test_cli_format.c — rekeyctl: argument parsing, exit codes, the text
 * helpers (widths, escaping, dates) and the output of status, list, show
 * and map against a real store and a small self-contained job.
 *
 * rekeyctl.c has its own main, so this file includes it with
 * RKCTL_NO_MAIN and drives rkctl_main() with memory streams.
 */
#define RKCTL_NO_MAIN
#include "../../agent/rekeyctl.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- running the CLI ---------------------------------------------------- */

typedef struct run_out {
    int rc;
    char *out;
    char *err;
} run_out;

/* Runs rekeyctl with the given words (NULL-terminated); the caller frees
 * out and err with run_free. */
static run_out run_v(const char *const *words)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"rekeyctl";
    for (size_t i = 0; words[i] && argc < 63; i++)
        argv[argc++] = (char *)words[i];
    argv[argc] = NULL;
    run_out r = {0, NULL, NULL};
    size_t ol, el;
    FILE *out = open_memstream(&r.out, &ol);
    FILE *err = open_memstream(&r.err, &el);
    assert_non_null(out);
    assert_non_null(err);
    r.rc = rkctl_main(argc, argv, out, err);
    fclose(out);
    fclose(err);
    return r;
}
#define RUN(...) run_v((const char *const[]){__VA_ARGS__, NULL})

static void run_free(run_out *r)
{
    free(r->out);
    free(r->err);
}

/* The line of text that starts with prefix, copied into buf ("" if none). */
static const char *line_starting(const char *text, const char *prefix, char *buf, size_t n)
{
    buf[0] = '\0';
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            snprintf(buf, n, "%.*s", (int)len, p);
            return buf;
        }
        p = nl ? nl + 1 : NULL;
    }
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rk_cli_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    setenv("TZ", "UTC", 1);
    tzset();
    unsetenv("REKEY_DB");
    return 0;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ------------------------------------------------------------ */

static void test_text_width(void **state)
{
    (void)state;
    assert_int_equal(text_width(""), 0);
    assert_int_equal(text_width("review"), 6);
    assert_int_equal(text_width("zur Klärung"), 11);
    assert_int_equal(text_width("bereit zur Übertragung"), 22);
    assert_int_equal(text_width("12,50 €"), 7);
}

static void test_safe_text(void **state)
{
    (void)state;
    char *s = safe_text("Müller\n\tx\x1b[31m\x7f");
    assert_string_equal(s, "Müller\\n\\tx\\x1b[31m\\x7f");
    free(s);
    s = safe_text("a\xc2\x9b" "b\xc2\xa0" "c"); /* CSI (C1) escaped, NBSP kept */
    assert_string_equal(s, "a\\u009bb\xc2\xa0" "c");
    free(s);
    s = safe_text("");
    assert_string_equal(s, "");
    free(s);
    assert_null(safe_text(NULL));
}

static void test_fmt_iso(void **state)
{
    (void)state;
    char b[64];
    setenv("TZ", "UTC", 1);
    tzset();
    fmt_iso("2025-11-26T15:42:01.123Z", b, sizeof b);
    assert_string_equal(b, "26.11.2025 15:42:01");
    /* German time without tzdata: CET in winter, CEST in summer */
    setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
    tzset();
    fmt_iso("2025-11-26T15:42:01.123Z", b, sizeof b);
    assert_string_equal(b, "26.11.2025 16:42:01");
    fmt_iso("2025-07-01T22:30:00Z", b, sizeof b);
    assert_string_equal(b, "02.07.2025 00:30:00");
    fmt_iso("2025-07-01T22:30:00", b, sizeof b); /* no suffix: still UTC */
    assert_string_equal(b, "02.07.2025 00:30:00");
    fmt_ms(INT64_C(1764171721000), b, sizeof b); /* 2025-11-26T15:42:01Z */
    assert_string_equal(b, "26.11.2025 16:42:01");
    /* shapes it does not know are shown as they are, not guessed at */
    fmt_iso("2025-11-26T15:42:01+05:00", b, sizeof b);
    assert_string_equal(b, "2025-11-26T15:42:01+05:00");
    fmt_iso("gestern", b, sizeof b);
    assert_string_equal(b, "gestern");
    fmt_iso(NULL, b, sizeof b);
    assert_string_equal(b, "-");
    setenv("TZ", "UTC", 1);
    tzset();
}

static void test_table_alignment(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    tbl t;
    tbl_init(&t, 3);
    t.right[2] = 1;
    tbl_row(&t, (const char *const[]){"Status", "state", "Anzahl"});
    tbl_row(&t, (const char *const[]){"zur Klärung", "review", "7"});
    tbl_row(&t, (const char *const[]){"übertragen", "delivered", "12"});
    tbl_print(&t, f, "");
    tbl_free(&t);
    tbl_init(&t, 3);
    tbl_row(&t, (const char *const[]){"a", "b\nc", NULL}); /* empty last cell: no blanks */
    tbl_print(&t, f, "  ");
    tbl_free(&t);
    fclose(f);
    assert_string_equal(text, "Status       state      Anzahl\n"
                              "zur Klärung  review          7\n"
                              "übertragen   delivered      12\n"
                              "  a  b\\nc\n");
    free(text);
}

/* ---- usage and exit codes ---------------------------------------------- */

static void test_usage(void **state)
{
    (void)state;
    run_out r = RUN("--help");
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "usage: rekeyctl COMMAND", 23) == 0);
    assert_string_equal(r.err, "");
    run_free(&r);

    r = RUN("help", "map");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage: rekeyctl map JOBFILE XMLFILE"));
    assert_non_null(strstr(r.out, "Exit status: 0 the document would be delivered; 3 it would"));
    run_free(&r);

    r = RUN("list", "-h"); /* help after the command: that command's usage */
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "usage: rekeyctl list", 20) == 0);
    run_free(&r);

    r = RUN(NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.out, "");
    assert_true(strncmp(r.err, "usage: rekeyctl COMMAND", 23) == 0);
    run_free(&r);

    r = RUN("frob");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "rekeyctl: unknown command 'frob'; commands: status, list, "
                               "show, map, help\nsee `rekeyctl --help`\n");
    run_free(&r);

    r = RUN("list", "--frob=1");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "rekeyctl: unknown option '--frob'\nsee `rekeyctl help list`\n");
    run_free(&r);

    r = RUN("list", "--state", "bogus");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "unknown state 'bogus' for --state; one of: received,"));
    run_free(&r);

    r = RUN("list", "--limit", "-3");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--limit needs a whole number >= 0 (0 = all), got '-3'"));
    run_free(&r);

    r = RUN("status", "--db");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "option --db needs a value"));
    run_free(&r);

    r = RUN("show", "1", "--state", "review");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "rekeyctl: option --state does not apply to `rekeyctl show`\n"
                               "see `rekeyctl help show`\n");
    run_free(&r);

    r = RUN("show");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "show needs the id of a job"));
    run_free(&r);

    r = RUN("show", "abc");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "got 'abc'"));
    run_free(&r);

    r = RUN("status", "extra");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "status takes no arguments, got 'extra'"));
    run_free(&r);

    r = RUN("map", "job.xml", "doc.xml", "--var", "novalue");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--var needs NAME=VALUE, got 'novalue'"));
    run_free(&r);

    r = RUN("map", "job.xml", "--today", "2026-13-01", "doc.xml");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--today needs a date YYYY-MM-DD"));
    run_free(&r);

    r = RUN("status", "--db", "/nonexistent/rekey.db");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "/nonexistent/rekey.db"));
    run_free(&r);
}

/* ---- the store commands ------------------------------------------------ */

static int64_t add_sub(rk_store *s, const char *ref)
{
    static const char doc[] = "<Antrag/>";
    void *z;
    size_t zl;
    assert_int_equal(rk_deflate(doc, sizeof doc - 1, &z, &zl), 0);
    char uid[33], sha[65];
    assert_int_equal(rk_random_hex(16, uid), 0);
    rk_sha256_hex(doc, sizeof doc - 1, sha);
    rk_submission_in in = {uid, "dir:/srv/inbox", ref, sha, sizeof doc - 1, z, zl,
                           INT64_C(1764171721000)};
    int64_t id = 0;
    assert_int_equal(rk_store_add_submission(s, &in, "inbox", &id), 0);
    free(z);
    return id;
}

/* A store with job 1 received, job 2 in review with one anomaly and two
 * fields, job 3 delivered. */
static void make_store(const char *path)
{
    rk_store *s;
    char err[256];
    assert_int_equal(rk_store_open(path, 0, &s, err, sizeof err), 0);
    int64_t j1 = add_sub(s, "a.xml");
    int64_t j2 = add_sub(s, "b.xml");
    int64_t j3 = add_sub(s, "c.xml");
    assert_int_equal(j1, 1);
    assert_int_equal(rk_store_set_match(s, j2, "fischereischein", 3, "urn:x", "Antrag"), 0);
    assert_int_equal(rk_store_transition(s, j2, "received", "validated", "engine", NULL), 0);
    assert_int_equal(rk_store_transition(s, j2, "validated", "mapped", "engine", NULL), 0);
    rk_result r;
    rk_result_init(&r);
    r.fields = calloc(2, sizeof *r.fields);
    r.n_fields = 2;
    r.fields[0].name = strdup("nachname");
    r.fields[0].value = strdup("Müller");
    r.fields[0].source = strdup(" Müller\x1b[2J");
    r.fields[0].xpath = strdup("a:Antragsteller/a:F60000000227");
    r.fields[0].node = strdup("/a:Antrag/a:Antragsteller/a:F60000000227");
    r.fields[1].name = strdup("telefon"); /* value, source, node stay NULL */
    r.fields[1].xpath = strdup("a:Antragsteller/a:F60000000240");
    rk_result_add_anomaly(&r, "MINDESTALTER", "geburtsdatum", RK_SEV_BLOCK,
                          "Antragsteller ist jünger als 14 Jahre");
    assert_int_equal(rk_store_save_result(s, j2, &r), 0);
    rk_result_free(&r);
    assert_int_equal(rk_store_transition(s, j2, "mapped", "review", "engine", "1 Auffälligkeit"), 0);
    assert_int_equal(rk_store_set_match(s, j3, "fischereischein", 3, "urn:x", "Antrag"), 0);
    assert_int_equal(rk_store_transition(s, j3, NULL, "delivered", "connector:sqlite", NULL), 0);
    rk_store_close(s);
}

static void test_store_commands(void **state)
{
    (void)state;
    char db[300], line[512];
    snprintf(db, sizeof db, "%s/rekey.db", tmpdir);
    make_store(db);

    run_out r = RUN("status", "--json", "--db", db);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    const json_t *bs = json_object_get(o, "by_state");
    assert_int_equal(json_object_size(bs), 10);
    assert_int_equal(json_integer_value(json_object_get(bs, "received")), 1);
    assert_int_equal(json_integer_value(json_object_get(bs, "review")), 1);
    assert_int_equal(json_integer_value(json_object_get(bs, "delivered")), 1);
    assert_int_equal(json_integer_value(json_object_get(bs, "failed")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 3);
    json_decref(o);
    run_free(&r);

    /* the db from the environment; options before the command */
    setenv("REKEY_DB", db, 1);
    r = RUN("status");
    unsetenv("REKEY_DB");
    assert_int_equal(r.rc, 0);
    assert_string_equal(line_starting(r.out, "zur Klärung", line, sizeof line),
                        "zur Klärung                  review           1");
    assert_string_equal(line_starting(r.out, "abgelehnt", line, sizeof line),
                        "abgelehnt                    rejected         0");
    assert_string_equal(line_starting(r.out, "fischereischein", line, sizeof line),
                        "fischereischein   übertragen   delivered       1");
    assert_non_null(strstr(r.out, "\n                  zur Klärung  review          1\n"));
    run_free(&r);

    /* options before the command; the updated_at column is "now", so the
     * row is compared around it */
    r = RUN("--db", db, "list", "--state", "review");
    assert_int_equal(r.rc, 0);
    assert_string_equal(line_starting(r.out, "ID", line, sizeof line),
                        "ID  Verfahren        Status       Eingang              Letzte Änderung"
                        "      Versuche  Auffälligkeiten");
    line_starting(r.out, " 2", line, sizeof line);
    assert_true(strncmp(line, " 2  fischereischein  zur Klärung  26.11.2025 15:42:01  ", 56) == 0);
    assert_int_equal(strlen(line), 56 + 19 + 24); /* "ä" is two bytes */
    assert_string_equal(line + 56 + 19, "         0  MINDESTALTER");
    assert_null(strstr(r.out, " 1  ")); /* the filter held */
    run_free(&r);

    r = RUN("list", "--db", db, "--state", "zur Klärung"); /* the German name works too */
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "\n 2  fischereischein  zur Klärung  "));
    run_free(&r);

    r = RUN("list", "--db=" "/dev/null", "--json");
    assert_int_equal(r.rc, 1); /* not a rekey database */
    run_free(&r);

    r = RUN("list", "--json", "--limit", "2", "--db", db);
    assert_int_equal(r.rc, 0);
    o = json_loads(r.out, 0, &je);
    assert_true(json_is_array(o));
    assert_int_equal(json_array_size(o), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 0), "id")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 1), "id")), 2);
    json_decref(o);
    run_free(&r);

    r = RUN("list", "--db", db, "--state", "failed");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "Keine Anträge im Status „fehlgeschlagen“.\n");
    run_free(&r);

    r = RUN("show", "2", "--db", db);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(line_starting(r.out, "  Status", line, sizeof line),
                        "  Status           zur Klärung (review)");
    assert_string_equal(line_starting(r.out, "  Verfahren", line, sizeof line),
                        "  Verfahren        fischereischein (Version 3)");
    assert_string_equal(line_starting(r.out, "  Eingegangen", line, sizeof line),
                        "  Eingegangen      26.11.2025 15:42:01");
    assert_non_null(strstr(r.out, "\nAuffälligkeiten (1)\n"
                                  "  Art          Code          Feld          Meldung\n"
                                  "  blockierend  MINDESTALTER  geburtsdatum  Antragsteller ist "
                                  "jünger als 14 Jahre\n"));
    assert_non_null(strstr(r.out,
                           "\nFelder (2)\n"
                           "  Feld      Wert im Antrag  übernommener Wert  XPath"
                           "                           Knoten\n"
                           "  nachname   Müller\\x1b[2J  Müller             "
                           "a:Antragsteller/a:F60000000227  /a:Antrag/a:Antragsteller/a:F60000000227\n"
                           "  telefon   (fehlt)         (fehlt)            "
                           "a:Antragsteller/a:F60000000240\n"));
    assert_null(strchr(r.out, '\x1b')); /* the escape never reaches the terminal */
    assert_non_null(strstr(r.out, "\nVerlauf (4)\n"));
    assert_non_null(strstr(r.out, "  übernommen      zur Klärung     engine  1 Auffälligkeit\n"));
    run_free(&r);

    r = RUN("show", "2", "--json", "--db", db);
    assert_int_equal(r.rc, 0);
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "review");
    const json_t *f0 = json_array_get(json_object_get(o, "fields"), 0);
    assert_string_equal(json_string_value(json_object_get(f0, "source")), " Müller\x1b[2J");
    assert_int_equal(json_array_size(json_object_get(o, "events")), 4);
    json_decref(o);
    run_free(&r);

    r = RUN("show", "42", "--db", db);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    char abs[PATH_MAX], want[PATH_MAX + 100];
    assert_non_null(realpath(db, abs));
    snprintf(want, sizeof want, "rekeyctl: no job with id 42 in %s; see `rekeyctl list`\n", abs);
    assert_string_equal(r.err, want);
    run_free(&r);
}

/* ---- map ------------------------------------------------------------------ */

static const char mini_xsd[] =
    "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" "
    "targetNamespace=\"urn:test:mini:1\" elementFormDefault=\"qualified\">\n"
    " <xs:element name=\"Antrag\"><xs:complexType><xs:sequence>\n"
    "  <xs:element name=\"Name\" type=\"xs:string\"/>\n"
    "  <xs:element name=\"Geburtsdatum\" type=\"xs:date\"/>\n"
    " </xs:sequence></xs:complexType></xs:element>\n"
    "</xs:schema>\n";

static const char mini_job[] =
    "<job xmlns=\"urn:rekey:job:1\" xmlns:m=\"urn:test:mini:1\" name=\"mini\" version=\"2\">\n"
    " <title>Mini</title>\n"
    " <match root=\"m:Antrag\"/>\n"
    " <schema href=\"mini.xsd\"/>\n"
    " <map>\n"
    "  <field name=\"nachname\" from=\"m:Name\"><trim/><upper/></field>\n"
    "  <field name=\"geburtsdatum\" from=\"m:Geburtsdatum\"><date in=\"%Y-%m-%d\" "
    "out=\"%d.%m.%Y\"/></field>\n"
    " </map>\n"
    " <rules>\n"
    "  <rule code=\"MINDESTALTER\" field=\"geburtsdatum\" check=\"age-at-least 14\" "
    "severity=\"block\">Antragsteller ist jünger als 14 Jahre</rule>\n"
    " </rules>\n"
    " <connector plugin=\"sqlite\"><set key=\"database\">${target_db}</set>"
    "<set key=\"table\">t</set></connector>\n"
    "</job>\n";

static void write_doc(const char *path, const char *born)
{
    char text[512];
    snprintf(text, sizeof text,
             "<m:Antrag xmlns:m=\"urn:test:mini:1\"><m:Name>  Brandt </m:Name>"
             "<m:Geburtsdatum>%s</m:Geburtsdatum></m:Antrag>\n",
             born);
    write_text(path, text);
}

static void test_map(void **state)
{
    (void)state;
    char job[300], xsd[300], adult[300], child[300], born14[300], bad[300], other[300],
        broken[300];
    snprintf(job, sizeof job, "%s/mini.xml", tmpdir);
    snprintf(xsd, sizeof xsd, "%s/mini.xsd", tmpdir);
    snprintf(adult, sizeof adult, "%s/adult.xml", tmpdir);
    snprintf(child, sizeof child, "%s/child.xml", tmpdir);
    snprintf(born14, sizeof born14, "%s/born14.xml", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.xml", tmpdir);
    snprintf(other, sizeof other, "%s/other.xml", tmpdir);
    snprintf(broken, sizeof broken, "%s/broken.xml", tmpdir);
    write_text(xsd, mini_xsd);
    write_text(job, mini_job);
    write_doc(adult, "1998-04-12");
    write_doc(child, "2012-11-27");  /* one day short of 14 on 2026-11-26 */
    write_doc(born14, "2012-11-26"); /* 14 exactly */
    write_doc(bad, "zwölfter April");
    write_text(other, "<Fremd xmlns=\"urn:other\"><Name>x</Name></Fremd>\n");
    write_text(broken, "<m:Antrag xmlns:m=\"urn:test:mini:1\"><m:Name>x</m:Antrag>\n");

    /* a var the job needs and nobody gave */
    run_out r = RUN("map", job, adult);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "${target_db} is not defined"));
    assert_non_null(strstr(r.err, "rekeyctl: give job variables to map with --var NAME=VALUE\n"));
    run_free(&r);

    r = RUN("map", "--var", "target_db=/tmp/t.db", job, adult, "--today", "2026-11-26", "--json",
            "--db", "/ignored.db");
    assert_int_equal(r.rc, 0);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "job")), "mini");
    assert_true(json_is_true(json_object_get(o, "root_matches")));
    assert_true(json_is_true(json_object_get(o, "delivered")));
    assert_int_equal(json_array_size(json_object_get(o, "anomalies")), 0);
    const json_t *fields = json_object_get(o, "fields");
    assert_int_equal(json_array_size(fields), 2);
    const json_t *f = json_array_get(fields, 0);
    assert_string_equal(json_string_value(json_object_get(f, "name")), "nachname");
    assert_string_equal(json_string_value(json_object_get(f, "value")), "BRANDT");
    assert_string_equal(json_string_value(json_object_get(f, "source")), "  Brandt ");
    assert_string_equal(json_string_value(json_object_get(f, "xpath")), "m:Name");
    f = json_array_get(fields, 1);
    assert_string_equal(json_string_value(json_object_get(f, "value")), "12.04.1998");
    assert_string_equal(json_string_value(json_object_get(f, "source")), "1998-04-12");
    json_decref(o);
    run_free(&r);

    /* 14 today: passes; one day younger: held (exit 3) */
    r = RUN("map", job, born14, "--var=target_db=/tmp/t.db", "--today=2026-11-26");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "\nErgebnis: würde übertragen.\n"));
    assert_non_null(strstr(r.out, "\nAuffälligkeiten (0)\n  keine\n"));
    run_free(&r);

    r = RUN("map", job, child, "--var=target_db=/tmp/t.db", "--today=2026-11-26");
    assert_int_equal(r.rc, 3);
    assert_string_equal(r.err, "");
    assert_true(strncmp(r.out, "Probelauf: nichts wird gespeichert oder übertragen.\n", 52) == 0);
    assert_non_null(strstr(r.out, "  Verfahren      mini (Version 2) – Mini\n"));
    assert_non_null(strstr(r.out, "  Wurzelelement  {urn:test:mini:1}Antrag\n"));
    assert_non_null(strstr(r.out, "\nAuffälligkeiten (1)\n"
                                  "  Art          Code          Feld          Meldung\n"
                                  "  blockierend  MINDESTALTER  geburtsdatum  "
                                  "Antragsteller ist jünger als 14 Jahre\n"));
    assert_non_null(strstr(r.out, "  geburtsdatum  2012-11-27      27.11.2012         "
                                  "m:Geburtsdatum"));
    assert_non_null(strstr(r.out, "\nErgebnis: würde zur Klärung zurückgehalten "
                                  "(1 blockierende Auffälligkeit).\n"));
    run_free(&r);

    /* schema violation: held, with a SCHEMA anomaly */
    r = RUN("map", job, bad, "--var=target_db=/tmp/t.db", "--json");
    assert_int_equal(r.rc, 3);
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_true(json_is_false(json_object_get(o, "delivered")));
    const json_t *a = json_array_get(json_object_get(o, "anomalies"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "code")), "SCHEMA");
    assert_string_equal(json_string_value(json_object_get(a, "severity")), "block");
    json_decref(o);
    run_free(&r);

    /* a document of another kind: not this job's (exit 1) */
    r = RUN("map", job, other, "--var=target_db=/tmp/t.db");
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.out, "  Wurzelelement  {urn:other}Fremd – gehört nicht zu diesem "
                                  "Verfahren (erwartet {urn:test:mini:1}Antrag)\n"));
    assert_non_null(strstr(r.out, "\nErgebnis: dieses Verfahren würde das Dokument nicht "
                                  "annehmen.\n"));
    run_free(&r);
    r = RUN("map", job, other, "--var=target_db=/tmp/t.db", "--json");
    assert_int_equal(r.rc, 1);
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_true(json_is_false(json_object_get(o, "root_matches")));
    assert_true(json_is_false(json_object_get(o, "delivered")));
    json_decref(o);
    run_free(&r);

    /* not well-formed: exit 1, the reason on stderr, JSON still one object */
    r = RUN("map", job, broken, "--var=target_db=/tmp/t.db", "--json");
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "cannot be parsed (XML_MALFORMED)"));
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    a = json_array_get(json_object_get(o, "anomalies"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "code")), "XML_MALFORMED");
    assert_int_equal(json_array_size(json_object_get(o, "fields")), 0);
    json_decref(o);
    run_free(&r);

    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.xml", tmpdir);
    r = RUN("map", job, missing, "--var=target_db=/tmp/t.db");
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "cannot read"));
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_width),
        cmocka_unit_test(test_safe_text),
        cmocka_unit_test(test_fmt_iso),
        cmocka_unit_test(test_table_alignment),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_store_commands),
        cmocka_unit_test(test_map),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
