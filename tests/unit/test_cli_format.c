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
                               "show, events, review, retry, replay, purge, resume, map, help\n"
                               "see `rekeyctl --help`\n");
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
/* A received job matched to job (root element Antrag in ns) by its first
 * step, to `to`, as the engine writes it. */
static void matched(rk_store *s, int64_t id, const char *actor, const char *to, const char *job,
                    long version, const char *ns)
{
    assert_int_equal(rk_store_advance(s, id, &(rk_advance){.actor = actor,
                                                           .path = {"received", to},
                                                           .steps = 1,
                                                           .match = 1,
                                                           .job = job,
                                                           .job_version = version,
                                                           .root_ns = ns,
                                                           .root_name = "Antrag"}),
                     0);
}

static void make_store(const char *path)
{
    rk_store *s;
    char err[256];
    assert_int_equal(rk_store_open(path, 0, &s, err, sizeof err), 0);
    int64_t j1 = add_sub(s, "a.xml");
    int64_t j2 = add_sub(s, "b.xml");
    int64_t j3 = add_sub(s, "c.xml");
    assert_int_equal(j1, 1);
    matched(s, j2, "engine", "validated", "fischereischein", 3, "urn:x");
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
    matched(s, j3, "connector:sqlite", "delivered", "fischereischein", 3, "urn:x");
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

/* ---- times, CSV, the review and operations commands ---------------------- */

static void test_parse_when(void **state)
{
    (void)state;
    char iso[40];
    setenv("TZ", "UTC", 1);
    tzset();
    assert_int_equal(parse_when("2026-11-26", 0, iso, sizeof iso), 0);
    assert_string_equal(iso, "2026-11-26T00:00:00.000Z");
    assert_int_equal(parse_when("26.11.2026", 0, iso, sizeof iso), 0);
    assert_string_equal(iso, "2026-11-26T00:00:00.000Z");
    assert_int_equal(parse_when("2026-11-26T15:42", 0, iso, sizeof iso), 0);
    assert_string_equal(iso, "2026-11-26T15:42:00.000Z");
    assert_int_equal(parse_when("26.11.2026 15:42:01", 0, iso, sizeof iso), 0);
    assert_string_equal(iso, "2026-11-26T15:42:01.000Z");
    /* local time is German time; Z means UTC */
    setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
    tzset();
    assert_int_equal(parse_when("2026-11-26", 0, iso, sizeof iso), 0);
    assert_string_equal(iso, "2026-11-25T23:00:00.000Z");
    assert_int_equal(parse_when("2026-07-01T12:00:00", 0, iso, sizeof iso), 0);
    assert_string_equal(iso, "2026-07-01T10:00:00.000Z");
    assert_int_equal(parse_when("2026-07-01T12:00:00Z", 0, iso, sizeof iso), 0);
    assert_string_equal(iso, "2026-07-01T12:00:00.000Z");
    setenv("TZ", "UTC", 1);
    tzset();
    /* an age: that long before now */
    assert_int_equal(parse_when("2d", INT64_C(1764171721000), iso, sizeof iso), 0);
    assert_string_equal(iso, "2025-11-24T15:42:01.000Z");
    assert_int_equal(parse_when("90m", INT64_C(1764171721000), iso, sizeof iso), 0);
    assert_string_equal(iso, "2025-11-26T14:12:01.000Z");
    /* refused, not rolled over or guessed */
    assert_int_equal(parse_when("31.02.2026", 0, iso, sizeof iso), RK_E_FORMAT);
    assert_int_equal(parse_when("2026-13-01", 0, iso, sizeof iso), RK_E_FORMAT);
    assert_int_equal(parse_when("26.11.2026Z", 0, iso, sizeof iso), RK_E_FORMAT);
    assert_int_equal(parse_when("gestern", 0, iso, sizeof iso), RK_E_FORMAT);
    assert_int_equal(parse_when("2026-11-26x", 0, iso, sizeof iso), RK_E_FORMAT);
    assert_int_equal(parse_when("", 0, iso, sizeof iso), RK_E_FORMAT);
}

static void test_csv_cell(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    json_t *v[] = {json_string("plain"), json_string("a,b"), json_string("sagt \"nein\""),
                   json_string("zwei\nZeilen"), json_integer(42), json_null(), json_string("")};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (i)
            fputc('|', f);
        csv_cell(f, v[i]);
        json_decref(v[i]);
    }
    csv_cell(f, NULL);
    fclose(f);
    assert_string_equal(text, "plain|\"a,b\"|\"sagt \"\"nein\"\"\"|\"zwei\nZeilen\"|42||");
    free(text);
}

static void test_usage_new_commands(void **state)
{
    (void)state;
    run_out r = RUN("review");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "rekeyctl: review needs what to do: list, show, set, approve or "
                               "reject\nsee `rekeyctl help review`\n");
    run_free(&r);

    r = RUN("review", "frob", "1");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "unknown review command 'frob'; one of: list, show, set, "));
    run_free(&r);

    r = RUN("review", "--help");
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "usage: rekeyctl review list", 27) == 0);
    run_free(&r);
    r = RUN("review", "approve", "-h");
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "usage: rekeyctl review list", 27) == 0);
    run_free(&r);
    r = RUN("help", "purge");
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "usage: rekeyctl purge --older-than AGE", 38) == 0);
    run_free(&r);

    r = RUN("review", "reject", "3", "--db", "/nonexistent/x.db");
    assert_int_equal(r.rc, 2); /* the reason is checked before anything is opened */
    assert_non_null(strstr(r.err, "review reject needs a reason (Begründung): --reason TEXT"));
    run_free(&r);

    r = RUN("review", "approve", "3", "--reason", "x");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "rekeyctl: option --reason does not apply to `rekeyctl review "
                               "approve`\nsee `rekeyctl help review`\n");
    run_free(&r);

    r = RUN("review", "set", "3", "nachname");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "review set needs ID FIELD VALUE"));
    run_free(&r);

    r = RUN("review", "show", "x");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "review show needs a numeric job id"));
    run_free(&r);

    r = RUN("review", "approve", "3", "--as", "");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--as needs a name of 1 to 64 printable characters"));
    run_free(&r);

    r = RUN("purge");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "purge needs the age of what to delete: --older-than AGE"));
    run_free(&r);
    r = RUN("purge", "--older-than", "90");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--older-than needs an age like 90d"));
    run_free(&r);

    r = RUN("retry", "--all-failed");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "retry --all-failed needs the job: --job JOB"));
    run_free(&r);
    r = RUN("retry", "4", "--all-failed", "--job", "x");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "either an id or --all-failed, not both"));
    run_free(&r);

    r = RUN("replay", "4", "--yes");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--yes confirms --new-key"));
    run_free(&r);

    r = RUN("events", "--format", "xml");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--format is csv or json, got 'xml'"));
    run_free(&r);
    r = RUN("list", "--since", "31.02.2026");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--since needs a time"));
    run_free(&r);
    r = RUN("list", "--before", "0");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--before needs a job id"));
    run_free(&r);
    r = RUN("status", "--jobs", "/tmp");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "option --jobs does not apply to `rekeyctl status`"));
    run_free(&r);

    r = RUN("status", "--config", "/nonexistent/rekeyd.ini");
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "cannot read configuration /nonexistent/rekeyd.ini"));
    run_free(&r);
}

/* A store for the mini job: job 1 in review, overdue (deadline a day
 * after receipt in 2025), reference A-1; job 2 in review without a
 * deadline; job 3 delivered.  Both held ones: nachname BRANDT, born
 * 27.11.2012 (MINDESTALTER on 2026-11-26). */
static void make_review_store(const char *path)
{
    rk_store *s;
    char err[256];
    assert_int_equal(rk_store_open(path, 0, &s, err, sizeof err), 0);
    for (int k = 1; k <= 3; k++) {
        char ref[16];
        snprintf(ref, sizeof ref, "m%d.xml", k);
        int64_t id = add_sub(s, ref);
        assert_int_equal(id, k);
        matched(s, id, "rekeyd", "validated", "mini", 2, "urn:test:mini:1");
        assert_int_equal(rk_store_transition(s, id, "validated", "mapped", "rekeyd", NULL), 0);
        rk_result r;
        rk_result_init(&r);
        r.fields = calloc(2, sizeof *r.fields);
        r.n_fields = 2;
        r.fields[0].name = strdup("nachname");
        r.fields[0].value = strdup("BRANDT");
        r.fields[0].source = strdup("  Brandt ");
        r.fields[0].xpath = strdup("m:Name");
        r.fields[1].name = strdup("geburtsdatum");
        r.fields[1].value = strdup("27.11.2012");
        r.fields[1].source = strdup("2012-11-27");
        r.fields[1].xpath = strdup("m:Geburtsdatum");
        if (k < 3)
            rk_result_add_anomaly(&r, "MINDESTALTER", "geburtsdatum", RK_SEV_BLOCK,
                                  "Antragsteller ist jünger als 14 Jahre");
        assert_int_equal(rk_store_save_result(s, id, &r), 0);
        rk_result_free(&r);
        /* the first with a reference and a deadline of one day */
        assert_int_equal(rk_store_advance(s, id, &(rk_advance){.actor = "rekeyd",
                                                               .path = {"mapped", k < 3 ? "review"
                                                                                        : "ready"},
                                                               .steps = 1,
                                                               .meta = k == 1,
                                                               .reference = "A-1",
                                                               .deadline_ms = 86400000}),
                         0);
        if (k == 3) {
            assert_int_equal(rk_store_transition(s, id, "ready", "delivering", "rekeyd", NULL), 0);
            assert_int_equal(rk_store_transition(s, id, "delivering", "delivered", "rekeyd",
                                                 "sqlite: delivered, target id 1"),
                             0);
        }
    }
    rk_store_close(s);
}

/* The number of rows of a query on the database at path. */
static long count_rows(const char *path, const char *sql)
{
    rk_store *s;
    char err[256];
    assert_int_equal(rk_store_open(path, RK_STORE_READONLY, &s, err, sizeof err), 0);
    json_t *o = NULL;
    long n = -1;
    if (strcmp(sql, "corrections") == 0) {
        o = rk_store_show_json(s, 1);
        n = (long)json_array_size(json_object_get(o, "corrections"));
    } else if (strcmp(sql, "events") == 0) {
        o = rk_store_events_json(s, NULL, NULL, 0, 0);
        n = (long)json_array_size(o);
    }
    json_decref(o);
    rk_store_close(s);
    return n;
}

static const char *job_state(const char *path, int64_t id, char *buf, size_t n)
{
    rk_store *s;
    char err[256];
    assert_int_equal(rk_store_open(path, RK_STORE_READONLY, &s, err, sizeof err), 0);
    rk_job_info ji;
    assert_int_equal(rk_store_job_info(s, id, &ji), 0);
    snprintf(buf, n, "%s", ji.state);
    rk_store_close(s);
    return buf;
}

static void test_review_commands(void **state)
{
    (void)state;
    char db[300], jobs[300], xsd[300], job[300], line[512], st[16];
    snprintf(db, sizeof db, "%s/review.db", tmpdir);
    snprintf(jobs, sizeof jobs, "%s/jobs", tmpdir);
    assert_int_equal(mkdir(jobs, 0700), 0);
    snprintf(xsd, sizeof xsd, "%s/jobs/mini.xsd", tmpdir);
    snprintf(job, sizeof job, "%s/jobs/mini.xml", tmpdir);
    write_text(xsd, mini_xsd);
    write_text(job, mini_job);
    make_review_store(db);

    /* status: the overdue one first */
    run_out r = RUN("status", "--db", db);
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "Frist überschritten: 1\n  Anträge 1 (rekeyctl review list "
                               "--overdue)\n\nAnträge in ", 76) == 0);
    run_free(&r);

    /* review list: overdue first and marked */
    r = RUN("review", "list", "--db", db);
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "Zur Klärung: 2, davon Frist überschritten: 1\n\n", 48) == 0);
    assert_string_equal(line_starting(r.out, "   1", line, sizeof line),
                        "   1  mini        A-1       zur Klärung  26.11.2025 15:42:01  "
                        "27.11.2025 15:42:01 Frist überschritten  MINDESTALTER");
    assert_string_equal(line_starting(r.out, "   2", line, sizeof line),
                        "   2  mini        -         zur Klärung  26.11.2025 15:42:01  "
                        "-                                        MINDESTALTER");
    assert_true(strstr(r.out, "   1  mini") < strstr(r.out, "   2  mini"));
    run_free(&r);
    r = RUN("review", "list", "--db", db, "--overdue", "--json");
    assert_int_equal(r.rc, 0);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    assert_int_equal(json_array_size(o), 1);
    assert_int_equal(jint(json_array_get(o, 0), "id"), 1);
    json_decref(o);
    run_free(&r);

    /* review show: the field a rule named is marked */
    r = RUN("review", "show", "1", "--db", db);
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "Antrag 1 – zur Klärung\n", 25) == 0);
    assert_string_equal(line_starting(r.out, "  Frist", line, sizeof line),
                        "  Frist        27.11.2025 15:42:01 – Frist überschritten");
    assert_string_equal(line_starting(r.out, "  Referenz", line, sizeof line),
                        "  Referenz     A-1");
    assert_non_null(strstr(r.out, "\n"
                                  "     Feld          Wert im Antrag  übernommener Wert  XPath\n"
                                  "     nachname        Brandt        BRANDT             m:Name\n"
                                  "  !  geburtsdatum  2012-11-27      27.11.2012         "
                                  "m:Geburtsdatum\n"));
    run_free(&r);

    /* deciding needs the job definitions */
    r = RUN("review", "approve", "1", "--db", db);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "review approve needs the job definitions: give --config FILE"));
    run_free(&r);

    /* approve without a correction: still blocked, nothing but a note */
    long ev0 = count_rows(db, "events");
    r = RUN("review", "approve", "2", "--db", db, "--jobs", jobs, "--var", "target_db=/tmp/t.db",
            "--as", "anna", "--today", "2026-11-26");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_true(strncmp(r.err, "rekeyctl: Antrag 2 bleibt zur Klärung: MINDESTALTER "
                               "(geburtsdatum): Antragsteller ist jünger als 14 Jahre\n", 101) == 0);
    assert_non_null(strstr(r.err, "\nOffene Auffälligkeiten (1)\n"));
    assert_string_equal(job_state(db, 2, st, sizeof st), "review");
    assert_int_equal(count_rows(db, "events"), ev0 + 1);
    run_free(&r);

    /* correct, then approve as another person */
    r = RUN("review", "set", "1", "geburtsdatum", "12.04.1998", "--db", db, "--jobs", jobs,
            "--var", "target_db=/tmp/t.db", "--as", "anna", "--today", "2026-11-26");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, "Feld geburtsdatum korrigiert (alter Wert: 27.11.2012, neuer "
                               "Wert: 12.04.1998). Keine blockierenden Auffälligkeiten mehr; der "
                               "Antrag kann freigegeben werden.\n");
    assert_int_equal(count_rows(db, "corrections"), 1);
    run_free(&r);
    /* a value with an escape sequence never reaches the terminal as one */
    r = RUN("review", "set", "1", "nachname", "Brandt\x1b[2J", "--db", db, "--jobs", jobs,
            "--var", "target_db=/tmp/t.db", "--as", "anna");
    assert_int_equal(r.rc, 0);
    assert_null(strchr(r.out, '\x1b'));
    assert_non_null(strstr(r.out, "neuer Wert: Brandt\\x1b[2J)"));
    run_free(&r);
    r = RUN("review", "set", "1", "nachname", "BRANDT", "--db", db, "--jobs", jobs, "--var",
            "target_db=/tmp/t.db", "--as", "anna");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_rows(db, "corrections"), 3);
    run_free(&r);
    r = RUN("review", "show", "1", "--db", db);
    assert_non_null(strstr(r.out, "\n  *  geburtsdatum  2012-11-27      12.04.1998         "
                                  "m:Geburtsdatum\n"));
    assert_non_null(strstr(r.out, "\nKorrekturen (3)\n"
                                  "  Feld          alter Wert     neuer Wert     durch  Zeitpunkt\n"
                                  "  geburtsdatum  27.11.2012     12.04.1998     anna   "));
    assert_non_null(strstr(r.out, "\n  nachname      BRANDT         Brandt\\x1b[2J  anna   "));
    assert_null(strchr(r.out, '\x1b'));
    run_free(&r);
    r = RUN("review", "set", "1", "vorname", "x", "--db", db, "--jobs", jobs, "--var",
            "target_db=/tmp/t.db");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "rekeyctl: Das Feld vorname gibt es in der Antragsart mini nicht. "
                               "Felder: nachname, geburtsdatum\n");
    assert_int_equal(count_rows(db, "corrections"), 3);
    run_free(&r);
    r = RUN("review", "approve", "1", "--db", db, "--jobs", jobs, "--var", "target_db=/tmp/t.db",
            "--as", "bernd", "--today", "2026-11-26", "--json");
    assert_int_equal(r.rc, 0);
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "ok")));
    assert_string_equal(json_string_value(json_object_get(o, "state")), "ready");
    assert_string_equal(json_string_value(json_object_get(o, "message")),
                        "Antrag 1 freigegeben; er wird an das Fachverfahren übertragen.");
    json_decref(o);
    run_free(&r);

    /* reject: no job definitions needed */
    r = RUN("review", "reject", "2", "--db", db, "--reason", "zu jung", "--as", "anna");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "Antrag 2 abgelehnt.\n");
    assert_string_equal(job_state(db, 2, st, sizeof st), "rejected");
    run_free(&r);

    r = RUN("status", "--db", db);
    assert_true(strncmp(r.out, "Anträge in ", 11) == 0); /* nothing overdue any more */
    run_free(&r);

    /* retry: refused for a job that did not fail */
    r = RUN("retry", "3", "--db", db);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "rekeyctl: Antrag 3 ist nicht fehlgeschlagen (Status: "
                               "übertragen).\n");
    run_free(&r);

    /* replay --new-key: asked on a terminal; no terminal, no replay */
    ctl_tty_override = 1;
    ctl_in_override = fmemopen((void *)"n\n", 2, "r");
    r = RUN("replay", "3", "--new-key", "--db", db);
    fclose(ctl_in_override);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Antrag 3 mit neuem Schlüssel wiederholen? Das Fachverfahren "
                               "erhält einen zweiten Datensatz. [j/N] Abgebrochen; nichts wurde "
                               "geändert.\n");
    run_free(&r);
    ctl_tty_override = 0;
    r = RUN("replay", "3", "--new-key", "--db", db);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "there is no terminal to ask, so confirm it with --yes"));
    run_free(&r);
    ctl_tty_override = 1;
    ctl_in_override = fmemopen((void *)"j\n", 2, "r");
    r = RUN("replay", "3", "--new-key", "--db", db, "--as", "olaf");
    fclose(ctl_in_override);
    ctl_in_override = NULL;
    ctl_tty_override = -1;
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Antrag 3 wird als Antrag 4 erneut verarbeitet (mit neuem "
                                  "Schlüssel"));
    assert_string_equal(job_state(db, 4, st, sizeof st), "received");
    run_free(&r);

    /* purge, dry run: counts what is finished (3 delivered, 2 rejected) */
    r = RUN("purge", "--older-than", "0s", "--dry-run", "--db", db, "--json");
    assert_int_equal(r.rc, 0);
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_int_equal(jint(o, "jobs"), 2);
    assert_int_equal(jint(o, "fields"), 4);
    assert_true(json_is_true(json_object_get(o, "dry_run")));
    json_decref(o);
    run_free(&r);

    /* events: CSV with a header, RFC 4180 quoting; the same as JSON */
    long n_ev = count_rows(db, "events");
    r = RUN("events", "--db", db);
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "id,job_id,job,at,actor,from_state,to_state,reason\r\n", 51) == 0);
    long lines = 0;
    for (const char *p = r.out; (p = strstr(p, "\r\n")) != NULL; p += 2)
        lines++;
    assert_int_equal(lines, n_ev + 1);
    assert_non_null(strstr(r.out, ",rekeyd,delivering,delivered,\"sqlite: delivered, target id "
                                  "1\"\r\n"));
    assert_non_null(strstr(r.out, ",mini,"));
    assert_non_null(strstr(r.out, ",bernd,review,ready,"));
    run_free(&r);
    r = RUN("events", "--db", db, "--format", "json");
    assert_int_equal(r.rc, 0);
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_int_equal((long)json_array_size(o), n_ev);
    assert_int_equal(jint(json_array_get(o, 0), "id"), 1);
    json_decref(o);
    run_free(&r);
    /* the replay (job 4) carries its job's name from the start: --job
     * finds all of the job's events, the replay's included */
    r = RUN("events", "--db", db, "--format", "json", "--job", "mini");
    o = json_loads(r.out, 0, &je);
    assert_non_null(o);
    assert_int_equal((long)json_array_size(o), n_ev);
    size_t i;
    const json_t *e;
    json_array_foreach(o, i, e) assert_string_equal(json_string_value(json_object_get(e, "job")),
                                                    "mini");
    json_decref(o);
    run_free(&r);
    r = RUN("events", "--db", db, "--json", "--job", "other");
    assert_string_equal(r.out, "[]\n");
    run_free(&r);

    /* list: the reference column, paging with the hint */
    r = RUN("list", "--db", db, "--limit", "2");
    assert_int_equal(r.rc, 0);
    assert_true(strncmp(r.out, "ID  Verfahren  Status", 21) == 0); /* no reference on 4, 3 */
    assert_non_null(strstr(r.out, "\n2 Anträge gezeigt; die nächsten mit --before 3 (--limit 0 "
                                  "zeigt alle).\n"));
    run_free(&r);
    r = RUN("list", "--db", db, "--limit", "2", "--before", "3", "--json");
    o = json_loads(r.out, 0, &je);
    assert_int_equal(json_array_size(o), 2);
    assert_int_equal(jint(json_array_get(o, 0), "id"), 2);
    assert_int_equal(jint(json_array_get(o, 1), "id"), 1);
    json_decref(o);
    run_free(&r);
    r = RUN("list", "--db", db, "--limit", "2", "--before", "2");
    assert_null(strstr(r.out, "--before")); /* the last page has no hint */
    assert_true(strncmp(r.out, "ID  Verfahren  Referenz  Status", 31) == 0);
    assert_non_null(strstr(r.out, "\n 1  mini       A-1       bereit zur Übertragung  "));
    run_free(&r);
    /* a connector paused after FATAL: status says so, resume ends it */
    {
        rk_store *ps;
        char perr[256];
        assert_int_equal(rk_store_open(db, 0, &ps, perr, sizeof perr), 0);
        assert_int_equal(rk_store_pause_set(ps, "mini", "sqlite", "no such table: t"), 0);
        rk_store_close(ps);
    }
    r = RUN("status", "--db", db);
    assert_true(strncmp(r.out, "Angehaltene Anbindungen: 1\n  mini / sqlite: no such table: t "
                               "(rekeyctl resume mini sqlite)\n\n", 85) == 0);
    run_free(&r);
    r = RUN("resume", "mini", "other", "--db", db);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "rekeyctl: die Anbindung other der Antragsart mini ist nicht "
                               "angehalten.\n");
    run_free(&r);
    r = RUN("resume", "mini", "sqlite", "--db", db);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "1 Anbindung der Antragsart mini wieder aufgenommen; wartende "
                               "Anträge werden übertragen.\n");
    run_free(&r);
    r = RUN("status", "--db", db, "--json");
    o = json_loads(r.out, 0, &je);
    assert_int_equal(json_array_size(json_object_get(o, "paused")), 0);
    json_decref(o);
    run_free(&r);
    r = RUN("resume", "--db", db);
    assert_int_equal(r.rc, 2);
    run_free(&r);

    r = RUN("list", "--db", db, "--ref", "A-1", "--json");
    o = json_loads(r.out, 0, &je);
    assert_int_equal(json_array_size(o), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(o, 0), "reference")),
                        "A-1");
    json_decref(o);
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
        cmocka_unit_test(test_parse_when),
        cmocka_unit_test(test_csv_cell),
        cmocka_unit_test(test_usage_new_commands),
        cmocka_unit_test(test_review_commands),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
