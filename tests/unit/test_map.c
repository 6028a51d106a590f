/*
 * test_map.c — the field map: XPath with provenance, every transform on
 * both sides of its boundary, rk_date_parse, concurrent use of one job,
 * and one job file loaded through rk_job_load.
 *
 * Jobs are built by hand (job_* helpers below) the way job.c fills them:
 * XPaths compiled with xmlXPathCompile, replace patterns with
 * regcomp(REG_EXTENDED).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "job.h"
#include "map.h"
#include "record.h"
#include "util.h"
#include "xmlarena.h"
#include "xmldoc.h"

#define NS_A "urn:example:antrag:1"

/* ---- hand-built jobs ----------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static rk_job *job_new(void)
{
    rk_job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->refs = 1;
    j->name = strdup("testjob");
    j->n_ns = 1;
    j->ns_prefixes = calloc(1, sizeof(char *));
    j->ns_uris = calloc(1, sizeof(char *));
    j->ns_prefixes[0] = strdup("a");
    j->ns_uris[0] = strdup(NS_A);
    return j;
}

/* Adds a field; returns its index (pointers move when fields grow). */
static size_t job_field(rk_job *j, const char *name, const char *xpath)
{
    j->fields = realloc(j->fields, (j->n_fields + 1) * sizeof *j->fields);
    assert_non_null(j->fields);
    rk_field_def *f = &j->fields[j->n_fields];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    f->xpath = strdup(xpath);
    f->compiled = xmlXPathCompile((const xmlChar *)xpath);
    assert_non_null(f->compiled);
    return j->n_fields++;
}

static void tx_init(rk_transform *t, rk_transform_kind kind, const char *a, const char *b,
                    long n)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->a = dup_or_null(a);
    t->b = dup_or_null(b);
    t->n = n;
    if (kind == RK_TX_CONCAT) {
        t->compiled = xmlXPathCompile((const xmlChar *)a);
        assert_non_null(t->compiled);
    } else if (kind == RK_TX_REPLACE) {
        regex_t *re = malloc(sizeof *re);
        assert_non_null(re);
        assert_int_equal(regcomp(re, a, REG_EXTENDED), 0);
        t->compiled = re;
    }
}

static void tx_free(rk_transform *t)
{
    if (t->kind == RK_TX_CONCAT)
        xmlXPathFreeCompExpr(t->compiled);
    else if (t->kind == RK_TX_REPLACE && t->compiled) {
        regfree(t->compiled);
        free(t->compiled);
    }
    free(t->a);
    free(t->b);
}

static void job_tx(rk_job *j, size_t field, rk_transform_kind kind, const char *a,
                   const char *b, long n)
{
    rk_field_def *f = &j->fields[field];
    f->tx = realloc(f->tx, (f->n_tx + 1) * sizeof *f->tx);
    assert_non_null(f->tx);
    tx_init(&f->tx[f->n_tx++], kind, a, b, n);
}

/* A table from "k1", "v1", "k2", "v2", ..., NULL. */
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

/* The Geschlecht code list: columns code, name, kurz. */
static void job_codelist_geschlecht(rk_job *j)
{
    static const char *cells[] = {"m", "männlich", "M", "w", "weiblich", "W",
                                  "d", "divers",   "D", "x", NULL,       "X"};
    j->codelists = realloc(j->codelists, (j->n_codelists + 1) * sizeof *j->codelists);
    rk_codelist *cl = &j->codelists[j->n_codelists++];
    memset(cl, 0, sizeof *cl);
    cl->name = strdup("geschlecht");
    cl->uri = strdup("urn:xoev-de:xinneres:codeliste:geschlecht");
    cl->version = strdup("1.0");
    cl->n_columns = 3;
    cl->columns = calloc(3, sizeof(char *));
    cl->columns[0] = strdup("code");
    cl->columns[1] = strdup("name");
    cl->columns[2] = strdup("kurz");
    cl->n_rows = 4;
    cl->cells = calloc(12, sizeof(char *));
    for (size_t i = 0; i < 12; i++)
        cl->cells[i] = dup_or_null(cells[i]);
}

static void job_free(rk_job *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n_fields; i++) {
        rk_field_def *f = &j->fields[i];
        for (size_t k = 0; k < f->n_tx; k++)
            tx_free(&f->tx[k]);
        free(f->tx);
        xmlXPathFreeCompExpr(f->compiled);
        rk_child_path_free(f->direct);
        free(f->name);
        free(f->xpath);
    }
    free(j->fields);
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
    for (size_t i = 0; i < j->n_codelists; i++) {
        rk_codelist *cl = &j->codelists[i];
        for (size_t k = 0; k < cl->n_columns; k++)
            free(cl->columns[k]);
        for (size_t k = 0; k < cl->n_rows * cl->n_columns; k++)
            free(cl->cells[k]);
        free(cl->columns);
        free(cl->cells);
        free(cl->name);
        free(cl->uri);
        free(cl->version);
    }
    free(j->codelists);
    for (size_t i = 0; i < j->n_ns; i++) {
        free(j->ns_prefixes[i]);
        free(j->ns_uris[i]);
    }
    free(j->ns_prefixes);
    free(j->ns_uris);
    free(j->name);
    free(j);
}

/*
 * Runs a single transform on value through rk_map_transform (no
 * document).  Returns the new value (caller frees); anomalies go to r.
 */
static char *run1(const rk_job *job, rk_transform_kind kind, const char *a, const char *b,
                  long n, const char *value, rk_result *r)
{
    rk_transform t;
    tx_init(&t, kind, a, b, n);
    rk_field_def fd;
    memset(&fd, 0, sizeof fd);
    fd.name = "feld";
    fd.xpath = "x";
    fd.tx = &t;
    fd.n_tx = 1;
    char *out = rk_map_transform(job, &fd, NULL, value, r);
    tx_free(&t);
    return out;
}

/* Asserts that the transform turns in into want without any anomaly. */
#define TX_OK(job, kind, a, b, n, in, want)                                     \
    do {                                                                        \
        rk_result r_;                                                           \
        rk_result_init(&r_);                                                    \
        char *got_ = run1(job, kind, a, b, n, in, &r_);                         \
        assert_non_null(got_);                                                  \
        assert_string_equal(got_, want);                                        \
        assert_int_equal(r_.n_anomalies, 0);                                    \
        free(got_);                                                             \
        rk_result_free(&r_);                                                    \
    } while (0)

/* Asserts one blocking anomaly code for field "feld", the value left as in. */
#define TX_FAIL(job, kind, a, b, n, in, want_code)                              \
    do {                                                                        \
        rk_result r_;                                                           \
        rk_result_init(&r_);                                                    \
        char *got_ = run1(job, kind, a, b, n, in, &r_);                         \
        assert_non_null(got_);                                                  \
        assert_string_equal(got_, in);                                          \
        assert_int_equal(r_.n_anomalies, 1);                                    \
        assert_string_equal(r_.anomalies[0].code, want_code);                   \
        assert_string_equal(r_.anomalies[0].field, "feld");                     \
        assert_int_equal(r_.anomalies[0].severity, RK_SEV_BLOCK);               \
        assert_true(rk_result_blocked(&r_));                                    \
        free(got_);                                                             \
        rk_result_free(&r_);                                                    \
    } while (0)

static const char SAMPLE[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<a:Antrag xmlns:a=\"" NS_A "\" version=\"2\">\n"
    "  <a:Antragsteller>\n"
    "    <a:F60000000227>  Müller   Lüdenscheid \n </a:F60000000227>\n"
    "    <a:F60000000228>Anna</a:F60000000228>\n"
    "    <a:F60000000229>2001-05-03</a:F60000000229>\n"
    "    <a:Geschlecht><a:code>w</a:code></a:Geschlecht>\n"
    "    <a:Telefon>0711 123</a:Telefon>\n"
    "    <a:Telefon>0711 456</a:Telefon>\n"
    "  </a:Antragsteller>\n"
    "  <a:Gebuehr art=\"tag\">12,5</a:Gebuehr>\n"
    "  <a:Leer></a:Leer>\n"
    "</a:Antrag>\n";

static xmlDocPtr sample_doc(void)
{
    const char *code = NULL;
    char msg[256];
    xmlDocPtr doc = rk_doc_parse(SAMPLE, strlen(SAMPLE), &code, msg, sizeof msg);
    assert_non_null(doc);
    return doc;
}

/* ---- XPath and provenance ------------------------------------------------- */

/* Documents mapped one after another on one thread share an XPath
 * context: each sees only its own job's namespace prefixes, and a failed
 * expression leaves nothing behind for the next document. */
static void test_xpath_context_between_documents(void **state)
{
    (void)state;
    rk_job *a = job_new();
    job_field(a, "nachname", "a:Antragsteller/a:F60000000227");
    rk_job *b = job_new(); /* knows the namespace as "x", not as "a" */
    free(b->ns_prefixes[0]);
    b->ns_prefixes[0] = strdup("x");
    job_field(b, "nachname", "a:Antragsteller/a:F60000000227");
    rk_job *bad = job_new();
    job_field(bad, "kaputt", "$nichtda"); /* compiles, fails when evaluated */

    xmlDocPtr doc = sample_doc();
    for (int round = 0; round < 2; round++) {
        rk_result r;
        rk_result_init(&r);
        assert_int_equal(rk_map_apply(a, doc, &r), 0);
        assert_string_equal(rk_result_field(&r, "nachname")->node,
                            "/Antrag/Antragsteller/F60000000227");
        rk_result_free(&r);
        /* job b has no prefix "a": job a's must not linger */
        rk_result_init(&r);
        rk_map_apply(b, doc, &r);
        assert_null(rk_result_field(&r, "nachname")->value);
        assert_int_equal(r.n_anomalies, 1);
        assert_string_equal(r.anomalies[0].code, "XPATH_FEHLER");
        rk_result_free(&r);
        rk_result_init(&r);
        rk_map_apply(bad, doc, &r);
        assert_int_equal(r.n_anomalies, 1);
        assert_string_equal(r.anomalies[0].code, "XPATH_FEHLER");
        rk_result_free(&r);
    }
    xmlFreeDoc(doc);
    job_free(a);
    job_free(b);
    job_free(bad);
}

/* ---- helpers for the results of one job over the sample ------------------- */

/* A job over the sample: a trimmed value, a repeated element, an
 * attribute, a field with no node and one with an XPath number. */
static rk_job *job_sample(void)
{
    rk_job *j = job_new();
    size_t f = job_field(j, "nachname", "a:Antragsteller/a:F60000000227");
    job_tx(j, f, RK_TX_TRIM, NULL, NULL, 0);
    job_field(j, "telefon", "a:Antragsteller/a:Telefon");
    job_field(j, "art", "a:Gebuehr/@art");
    job_field(j, "fehlt", "a:Antragsteller/a:Geburtsort");
    job_field(j, "anzahl", "count(a:Antragsteller/a:Telefon)");
    return j;
}

/* The five strings of a field, in one order. */
static void field_texts(const rk_mapped_field *f, const char *t[5])
{
    t[0] = f->name;
    t[1] = f->value;
    t[2] = f->source;
    t[3] = f->xpath;
    t[4] = f->node;
}

/* a's strings equal b's (NULL where b's are NULL); each non-NULL one is
 * given to check (may be NULL), which asserts where it lies. */
static void assert_field_same(const rk_mapped_field *a, const rk_mapped_field *b,
                              void (*check)(const char *s, const void *arg), const void *arg)
{
    const char *got[5], *want[5];
    field_texts(a, got);
    field_texts(b, want);
    for (size_t k = 0; k < 5; k++) {
        if (!want[k]) {
            assert_null(got[k]);
            continue;
        }
        assert_string_equal(got[k], want[k]);
        if (check)
            check(got[k], arg);
    }
}

/* ---- one block for a result's strings (rk_result_pack_fields) ------------- */

/* Packing keeps every field's strings (NULLs stay NULL) and moves them
 * into one block, which rk_result_free frees with them; fields mapped
 * after packing are freed on their own, and packing again takes both
 * into a new block.  Leaks and double frees show under valgrind and
 * ASan (make check-valgrind, check-asan). */
struct packed_want {
    const rk_result *r;
    int own; /* freed on its own, outside the block */
};

static void check_packed(const char *str, const void *arg)
{
    const struct packed_want *w = arg;
    assert_int_equal(rk_result_owns_string(w->r, str), w->own);
}

static void test_pack_fields(void **state)
{
    (void)state;
    rk_job *j = job_sample();
    xmlDocPtr doc = sample_doc();
    rk_result ref, r;
    rk_result_init(&ref);
    rk_result_init(&r);
    assert_int_equal(rk_map_apply(j, doc, &ref), 0);
    assert_int_equal(rk_map_apply(j, doc, &r), 0);
    assert_null(r.strings);
    assert_int_equal(rk_result_pack_fields(&r), 0);
    assert_non_null(r.strings);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(r.n_fields, ref.n_fields * (size_t)(round + 1));
        for (size_t i = 0; i < r.n_fields; i++) {
            /* the first round's fields are packed; the second's are
             * packed only after the second rk_result_pack_fields */
            struct packed_want want = {&r, round == 1 && i >= ref.n_fields};
            assert_field_same(&r.fields[i], &ref.fields[i % ref.n_fields], check_packed, &want);
        }
        if (round == 0)
            assert_int_equal(rk_map_apply(j, doc, &r), 0); /* more, not packed */
    }
    rk_result_free(&r); /* fields inside and outside the block */
    assert_null(r.strings);
    /* packed again: the old block's strings and the new ones, one block */
    rk_result again;
    rk_result_init(&again);
    assert_int_equal(rk_map_apply(j, doc, &again), 0);
    assert_int_equal(rk_result_pack_fields(&again), 0);
    assert_int_equal(rk_map_apply(j, doc, &again), 0);
    assert_int_equal(rk_result_pack_fields(&again), 0);
    for (size_t i = 0; i < again.n_fields; i++) {
        assert_false(rk_result_owns_string(&again, again.fields[i].name));
        assert_string_equal(again.fields[i].name, ref.fields[i % ref.n_fields].name);
    }
    rk_result_free(&again);
    rk_result empty;
    rk_result_init(&empty);
    assert_int_equal(rk_result_pack_fields(&empty), 0);
    assert_null(empty.strings);
    rk_result_free(&empty);
    rk_result_free(&ref);
    xmlFreeDoc(doc);
    job_free(j);
}

/* ---- in a worker's region (xmlarena.h) ---------------------------------- */

/* The sample with n filler elements before its end: libxml2's blocks
 * for it outgrow a region's first chunk, so what follows it lands in
 * chunks the region's end frees. */
static char *big_sample(size_t n)
{
    const char *end = strstr(SAMPLE, "</a:Antrag>");
    assert_non_null(end);
    size_t head = (size_t)(end - SAMPLE), cap = head + n * 40 + 64, used = head;
    char *s = malloc(cap);
    assert_non_null(s);
    memcpy(s, SAMPLE, head);
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "<a:Fill>wert %zu</a:Fill>\n", i);
    used += (size_t)snprintf(s + used, cap - used, "%s", end);
    assert_true(used < cap);
    return s;
}

/* What a worker does, in the thread's region: the values and their node
 * paths are those made without it, none of them lies in the region, the
 * tree does.  Error strings that libxml2 keeps (the thread's last error,
 * the kept XPath context's) do not outlive a window: in rounds 0 and 2
 * they come after a large document, in chunks the window's end frees,
 * and the next round raises both errors again (which frees the old
 * strings: a crash, before the resets, for a block not malloc's). */
static void check_not_in_region(const char *str, const void *arg)
{
    (void)arg;
    assert_false(rk_xml_arena_owns(str));
}

static void test_map_in_region(void **state)
{
    (void)state;
    rk_job *j = job_sample();
    rk_job *bad = job_new();
    job_field(bad, "kaputt", "$nichtda"); /* compiles, fails when evaluated */

    rk_result ref;
    rk_result_init(&ref);
    xmlDocPtr doc = sample_doc();
    assert_false(rk_xml_arena_owns(doc));
    assert_int_equal(rk_map_apply(j, doc, &ref), 0);
    xmlFreeDoc(doc);

    char *big = big_sample(20000);
    const char *code = NULL;
    char msg[256];
    for (int round = 0; round < 3; round++) {
        rk_xml_arena_begin();
        if (round != 1) {
            xmlDocPtr bd = rk_doc_parse(big, strlen(big), &code, msg, sizeof msg);
            assert_non_null(bd);
            assert_true(rk_xml_arena_owns(bd));
            rk_result br;
            rk_result_init(&br);
            assert_int_equal(rk_map_apply(j, bd, &br), 0);
            assert_string_equal(rk_result_field(&br, "nachname")->value,
                                rk_result_field(&ref, "nachname")->value);
            rk_result_free(&br);
            rk_xml_free_doc(bd);
        }
        rk_result r;
        rk_result_init(&r);
        doc = sample_doc();
        assert_true(rk_xml_arena_owns(doc));
        rk_map_apply(bad, doc, &r);
        assert_int_equal(r.n_anomalies, 1);
        assert_string_equal(r.anomalies[0].code, "XPATH_FEHLER");
        rk_result_free(&r);
        assert_null(rk_doc_parse("<a><b></a>", 10, &code, msg, sizeof msg));
        assert_string_equal(code, "XML_MALFORMED");

        rk_result_init(&r);
        assert_int_equal(rk_map_apply(j, doc, &r), 0);
        assert_int_equal(r.n_fields, ref.n_fields);
        for (size_t i = 0; i < r.n_fields; i++)
            assert_field_same(&r.fields[i], &ref.fields[i], check_not_in_region, NULL);
        rk_xml_free_doc(doc);
        rk_xml_arena_end();
        rk_result_free(&r);
    }
    free(big);
    rk_result_free(&ref);
    job_free(j);
    job_free(bad);
}

static void test_provenance(void **state)
{
    (void)state;
    rk_job *j = job_sample();
    job_field(j, "ganz", "concat(a:Antragsteller/a:F60000000228, '!')");
    job_field(j, "leer", "a:Leer");
    job_field(j, "zweites", "a:Antragsteller/a:Telefon[2]/text()");

    xmlDocPtr doc = sample_doc();
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_map_apply(j, doc, &r), 0);
    assert_int_equal(r.n_fields, 8);
    assert_int_equal(r.n_anomalies, 0);

    const rk_mapped_field *f = rk_result_field(&r, "nachname");
    assert_non_null(f);
    assert_string_equal(f->value, "Müller Lüdenscheid");
    assert_string_equal(f->source, "  Müller   Lüdenscheid \n ");
    assert_string_equal(f->xpath, "a:Antragsteller/a:F60000000227");
    assert_string_equal(f->node, "/Antrag/Antragsteller/F60000000227");

    /* a node-set gives its first node in document order */
    f = rk_result_field(&r, "telefon");
    assert_string_equal(f->value, "0711 123");
    assert_string_equal(f->node, "/Antrag/Antragsteller/Telefon[1]");

    f = rk_result_field(&r, "art");
    assert_string_equal(f->value, "tag");
    assert_string_equal(f->node, "/Antrag/Gebuehr/@art");

    /* no match: absent, not empty */
    f = rk_result_field(&r, "fehlt");
    assert_null(f->value);
    assert_null(f->source);
    assert_null(f->node);
    assert_string_equal(f->xpath, "a:Antragsteller/a:Geburtsort");

    /* number and string expressions give their string, no node */
    f = rk_result_field(&r, "anzahl");
    assert_string_equal(f->value, "2");
    assert_null(f->node);
    f = rk_result_field(&r, "ganz");
    assert_string_equal(f->value, "Anna!");

    /* an empty element is present and empty */
    f = rk_result_field(&r, "leer");
    assert_string_equal(f->value, "");
    assert_string_equal(f->node, "/Antrag/Leer");

    /* a text node is a text() step, after the position of its element */
    f = rk_result_field(&r, "zweites");
    assert_string_equal(f->value, "0711 456");
    assert_string_equal(f->node, "/Antrag/Antragsteller/Telefon[2]/text()");

    rk_result_free(&r);
    xmlFreeDoc(doc);
    job_free(j);
}

static void test_xpath_error_is_anomaly(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_field(j, "x", "b:Undeclared"); /* prefix b is not declared on the job */
    job_field(j, "vorname", "a:Antragsteller/a:F60000000228");
    xmlDocPtr doc = sample_doc();
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_map_apply(j, doc, &r), 0);
    assert_int_equal(r.n_anomalies, 1);
    assert_string_equal(r.anomalies[0].code, "XPATH_FEHLER");
    assert_string_equal(r.anomalies[0].field, "x");
    assert_non_null(strstr(r.anomalies[0].message, "b:Undeclared"));
    assert_null(rk_result_field(&r, "x")->value);
    /* the other fields are still mapped */
    assert_string_equal(rk_result_field(&r, "vorname")->value, "Anna");
    rk_result_free(&r);
    xmlFreeDoc(doc);
    job_free(j);
}

static void test_no_root(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_field(j, "x", "a:X");
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_map_apply(j, doc, &r), RK_E_FORMAT);
    assert_int_equal(r.n_fields, 0);
    rk_result_free(&r);
    xmlFreeDoc(doc);
    job_free(j);
}

/* ---- transforms ------------------------------------------------------------ */

static void test_trim_upper_lower(void **state)
{
    (void)state;
    rk_job *j = job_new();
    TX_OK(j, RK_TX_TRIM, NULL, NULL, 0, " \t Anna \n Maria  ", "Anna Maria");
    TX_OK(j, RK_TX_TRIM, NULL, NULL, 0, "Anna", "Anna");
    TX_OK(j, RK_TX_TRIM, NULL, NULL, 0, "   ", "");
    TX_OK(j, RK_TX_TRIM, NULL, NULL, 0, "\xc2\xa0" "Anna\xc2\xa0\xc2\xa0Maria", "Anna Maria");
    TX_OK(j, RK_TX_UPPER, NULL, NULL, 0, "Müller-Lüdenscheid straße", "MÜLLER-LÜDENSCHEID STRAßE");
    TX_OK(j, RK_TX_UPPER, NULL, NULL, 0, "łukasz dvořák ÿ", "ŁUKASZ DVOŘÁK Ÿ");
    TX_OK(j, RK_TX_LOWER, NULL, NULL, 0, "ÄÖÜ ŁUKASZ Ÿ", "äöü łukasz ÿ");
    TX_OK(j, RK_TX_LOWER, NULL, NULL, 0, "ABC 123 €", "abc 123 €");
    job_free(j);
}

static void test_date(void **state)
{
    (void)state;
    rk_job *j = job_new();
    TX_OK(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, "2001-05-03", "03.05.2001");
    TX_OK(j, RK_TX_DATE, "%d.%m.%Y", "%Y-%m-%d", 0, "29.02.2000", "2000-02-29");
    TX_OK(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, " 2001-05-03\n", "03.05.2001");
    TX_OK(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, "2001-12-31", "31.12.2001");
    TX_FAIL(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, "2001-02-31", "DATUM_UNGUELTIG");
    TX_FAIL(j, RK_TX_DATE, "%d.%m.%Y", "%Y-%m-%d", 0, "29.02.2001", "DATUM_UNGUELTIG");
    TX_FAIL(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, "2001-13-01", "DATUM_UNGUELTIG");
    TX_FAIL(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, "2001-05-03x", "DATUM_UNGUELTIG");
    TX_FAIL(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, "03.05.2001", "DATUM_UNGUELTIG");

    /* the message names the value and the expected form in German */
    rk_result r;
    rk_result_init(&r);
    char *v = run1(j, RK_TX_DATE, "%d.%m.%Y", "%Y-%m-%d", 0, "31.02.2001", &r);
    assert_string_equal(r.anomalies[0].message,
                        "Feld feld: „31.02.2001“ ist kein gültiges Datum im Format TT.MM.JJJJ.");
    free(v);
    rk_result_free(&r);
    job_free(j);
}

static void test_decimal(void **state)
{
    (void)state;
    rk_job *j = job_new();
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "12", "12.00");
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "12.5", "12.50");
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "12,5", "12.50");
    TX_OK(j, RK_TX_DECIMAL, ",", NULL, 2, "12.5", "12,50");
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "2.675", "2.68");   /* no binary rounding */
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "2.674", "2.67");
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "9.995", "10.00");  /* carry */
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 0, "12.5", "13");
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "-3,1", "-3.10");
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, "-0.001", "0.00");
    TX_OK(j, RK_TX_DECIMAL, ".", NULL, 2, " 007 ", "7.00");
    TX_FAIL(j, RK_TX_DECIMAL, ".", NULL, 2, "1.234,50", "ZAHL_UNGUELTIG");
    TX_FAIL(j, RK_TX_DECIMAL, ".", NULL, 2, "12,", "ZAHL_UNGUELTIG");
    TX_FAIL(j, RK_TX_DECIMAL, ".", NULL, 2, ",5", "ZAHL_UNGUELTIG");
    TX_FAIL(j, RK_TX_DECIMAL, ".", NULL, 2, "12 €", "ZAHL_UNGUELTIG");
    TX_FAIL(j, RK_TX_DECIMAL, ".", NULL, 2, "zwölf", "ZAHL_UNGUELTIG");
    job_free(j);
}

static void test_default_and_empty_pass_through(void **state)
{
    (void)state;
    rk_job *j = job_new();
    TX_OK(j, RK_TX_DEFAULT, "DE", NULL, 0, "", "DE");
    TX_OK(j, RK_TX_DEFAULT, "DE", NULL, 0, "AT", "AT");
    rk_result r;
    rk_result_init(&r);
    char *v = run1(j, RK_TX_DEFAULT, "DE", NULL, 0, NULL, &r);
    assert_string_equal(v, "DE");
    free(v);
    /* every other transform passes NULL and "" through, without anomaly */
    v = run1(j, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0, NULL, &r);
    assert_null(v);
    v = run1(j, RK_TX_DECIMAL, ".", NULL, 2, "", &r);
    assert_string_equal(v, "");
    free(v);
    v = run1(j, RK_TX_LOOKUP, "gebuehren", NULL, 1, "", &r);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(r.n_anomalies, 0);
    rk_result_free(&r);
    job_free(j);
}

static void test_lookup(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_table(j, "arten", "tag", "Tagesschein", "jahr", "Jahresschein", (char *)NULL);
    TX_OK(j, RK_TX_LOOKUP, "arten", NULL, 1, "jahr", "Jahresschein");
    TX_OK(j, RK_TX_LOOKUP, "arten", NULL, 0, "tag", "Tagesschein");
    /* not strict: an unknown key stays, no anomaly */
    TX_OK(j, RK_TX_LOOKUP, "arten", NULL, 0, "woche", "woche");
    /* strict: an unknown key is a blocking anomaly */
    TX_FAIL(j, RK_TX_LOOKUP, "arten", NULL, 1, "woche", "WERT_UNBEKANNT");
    TX_FAIL(j, RK_TX_LOOKUP, "arten", NULL, 1, "Tag", "WERT_UNBEKANNT"); /* case matters */
    rk_result r;
    rk_result_init(&r);
    char *v = run1(j, RK_TX_LOOKUP, "arten", NULL, 1, "woche", &r);
    assert_string_equal(r.anomalies[0].message,
                        "Feld feld: Der Wert „woche“ ist in der Tabelle arten nicht vorhanden.");
    free(v);
    rk_result_free(&r);
    job_free(j);
}

static void test_codelist(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_codelist_geschlecht(j);
    TX_OK(j, RK_TX_CODELIST, "geschlecht", NULL, 0, "w", "weiblich"); /* second column */
    TX_OK(j, RK_TX_CODELIST, "geschlecht", "kurz", 0, "d", "D");
    TX_OK(j, RK_TX_CODELIST, "geschlecht", "code", 0, "m", "m");
    TX_FAIL(j, RK_TX_CODELIST, "geschlecht", NULL, 0, "q", "CODE_UNBEKANNT");
    TX_FAIL(j, RK_TX_CODELIST, "geschlecht", NULL, 0, "W", "CODE_UNBEKANNT");
    /* a known code with an empty cell has no value to give */
    TX_FAIL(j, RK_TX_CODELIST, "geschlecht", NULL, 0, "x", "CODE_UNBEKANNT");
    job_free(j);
}

static void test_replace(void **state)
{
    (void)state;
    rk_job *j = job_new();
    /* groups, reordered */
    TX_OK(j, RK_TX_REPLACE, "([0-9]{2})\\.([0-9]{2})\\.([0-9]{4})", "\\3-\\2-\\1", 0,
          "am 03.05.2001 und 04.06.2002", "am 2001-05-03 und 2002-06-04");
    /* all matches */
    TX_OK(j, RK_TX_REPLACE, "[ /-]", "", 0, "0711 / 123-45", "071112345");
    /* no match: unchanged */
    TX_OK(j, RK_TX_REPLACE, "x", "y", 0, "abc", "abc");
    /* empty matches behave like sed s///g */
    TX_OK(j, RK_TX_REPLACE, "x*", "-", 0, "abc", "-a-b-c-");
    TX_OK(j, RK_TX_REPLACE, "c*", "-", 0, "abc", "-a-b-");
    /* anchors only at the start */
    TX_OK(j, RK_TX_REPLACE, "^0", "+49 ", 0, "0711 0", "+49 711 0");
    /* escaped backslash and unused group */
    TX_OK(j, RK_TX_REPLACE, "(a)|(b)", "[\\1\\2\\\\]", 0, "ab", "[a\\][b\\]");
    job_free(j);
}

static void test_split_and_concat(void **state)
{
    (void)state;
    rk_job *j = job_new();
    TX_OK(j, RK_TX_SPLIT, " ", NULL, 0, "Musterstraße 12a", "Musterstraße");
    TX_OK(j, RK_TX_SPLIT, " ", NULL, 1, "Musterstraße 12a", "12a");
    TX_OK(j, RK_TX_SPLIT, " ", NULL, 2, "Musterstraße 12a", ""); /* out of range */
    TX_OK(j, RK_TX_SPLIT, ", ", NULL, 1, "Müller, Anna, Dr.", "Anna");
    TX_OK(j, RK_TX_SPLIT, ";", NULL, 0, "ohne", "ohne");
    TX_OK(j, RK_TX_SPLIT, ";", NULL, 1, "ohne", "");

    /* concat in the map: empty parts are skipped */
    size_t f = job_field(j, "name", "a:Antragsteller/a:F60000000228");
    job_tx(j, f, RK_TX_CONCAT, "normalize-space(a:Antragsteller/a:F60000000227)", " ", 0);
    f = job_field(j, "name2", "a:Antragsteller/a:F60000000228");
    job_tx(j, f, RK_TX_CONCAT, "a:Leer", "/", 0);
    job_tx(j, f, RK_TX_CONCAT, "a:Fehlt", "/", 0);
    job_tx(j, f, RK_TX_CONCAT, "a:Gebuehr/@art", "/", 0);
    f = job_field(j, "name3", "a:Fehlt");
    job_tx(j, f, RK_TX_CONCAT, "a:Antragsteller/a:F60000000228", " ", 0);
    xmlDocPtr doc = sample_doc();
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_map_apply(j, doc, &r), 0);
    assert_int_equal(r.n_anomalies, 0);
    assert_string_equal(rk_result_field(&r, "name")->value, "Anna Müller Lüdenscheid");
    assert_string_equal(rk_result_field(&r, "name")->source, "Anna");
    assert_string_equal(rk_result_field(&r, "name2")->value, "Anna/tag");
    assert_null(rk_result_field(&r, "name3")->value); /* absent stays absent */

    /* rk_map_transform with the document runs concat too; without it not */
    char *v = rk_map_transform(j, &j->fields[0], doc, "Anne", &r);
    assert_string_equal(v, "Anne Müller Lüdenscheid");
    free(v);
    v = rk_map_transform(j, &j->fields[0], NULL, "Anne", &r);
    assert_string_equal(v, "Anne");
    free(v);
    rk_result_free(&r);
    xmlFreeDoc(doc);
    job_free(j);
}

/* A failing step ends the chain and keeps the value before it. */
static void test_chain_stops_at_failure(void **state)
{
    (void)state;
    rk_job *j = job_new();
    job_table(j, "t", "x", "y", (char *)NULL);
    size_t f = job_field(j, "gebuehr", "a:Gebuehr");
    job_tx(j, f, RK_TX_TRIM, NULL, NULL, 0);
    job_tx(j, f, RK_TX_DECIMAL, ".", NULL, 2);
    job_tx(j, f, RK_TX_LOOKUP, "t", NULL, 1);
    f = job_field(j, "geb", "a:Antragsteller/a:F60000000229");
    job_tx(j, f, RK_TX_DATE, "%d.%m.%Y", "%Y-%m-%d", 0);
    job_tx(j, f, RK_TX_UPPER, NULL, NULL, 0);
    xmlDocPtr doc = sample_doc();
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_map_apply(j, doc, &r), 0);
    assert_int_equal(r.n_anomalies, 2);
    assert_string_equal(r.anomalies[0].code, "WERT_UNBEKANNT");
    assert_string_equal(r.anomalies[0].field, "gebuehr");
    assert_string_equal(rk_result_field(&r, "gebuehr")->value, "12.50");
    assert_string_equal(rk_result_field(&r, "gebuehr")->source, "12,5");
    assert_string_equal(r.anomalies[1].code, "DATUM_UNGUELTIG");
    assert_string_equal(rk_result_field(&r, "geb")->value, "2001-05-03");
    rk_result_free(&r);
    xmlFreeDoc(doc);
    job_free(j);
}

static void test_date_parse(void **state)
{
    (void)state;
    int y = 0, m = 0, d = 0;
    assert_int_equal(rk_date_parse("2001-05-03", &y, &m, &d), 0);
    assert_int_equal(y, 2001);
    assert_int_equal(m, 5);
    assert_int_equal(d, 3);
    assert_int_equal(rk_date_parse("03.05.2001", &y, &m, &d), 0);
    assert_int_equal(y * 10000 + m * 100 + d, 20010503);
    assert_int_equal(rk_date_parse("29.02.2000", &y, &m, &d), 0);
    assert_int_equal(rk_date_parse("2024-02-29", &y, &m, &d), 0);
    assert_int_equal(rk_date_parse("31.12.1999", &y, &m, &d), 0);
    assert_int_equal(rk_date_parse("31.02.2001", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse("29.02.1900", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse("2001-04-31", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse("2001-00-10", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse("2001-5-3", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse("3.5.2001", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse("2001/05/03", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse("", &y, &m, &d), -1);
    assert_int_equal(rk_date_parse(NULL, &y, &m, &d), -1);
}

/* ---- threads ---------------------------------------------------------------- */

struct thread_arg {
    const rk_job *job;
    int ok;
};

static void *map_worker(void *p)
{
    struct thread_arg *a = p;
    a->ok = 1;
    for (int i = 0; i < 200; i++) {
        xmlDocPtr doc = sample_doc();
        rk_result r;
        rk_result_init(&r);
        if (rk_map_apply(a->job, doc, &r) != 0 || r.n_anomalies != 0)
            a->ok = 0;
        const rk_mapped_field *f = rk_result_field(&r, "name");
        if (!f || !f->value || strcmp(f->value, "Anna Müller Lüdenscheid") != 0)
            a->ok = 0;
        f = rk_result_field(&r, "geb");
        if (!f || !f->value || strcmp(f->value, "03.05.2001") != 0)
            a->ok = 0;
        f = rk_result_field(&r, "tel");
        if (!f || !f->value || strcmp(f->value, "0711123") != 0)
            a->ok = 0;
        rk_result_free(&r);
        xmlFreeDoc(doc);
    }
    return NULL;
}

static void test_threads_share_job(void **state)
{
    (void)state;
    rk_job *j = job_new();
    size_t f = job_field(j, "name", "a:Antragsteller/a:F60000000228");
    job_tx(j, f, RK_TX_CONCAT, "normalize-space(a:Antragsteller/a:F60000000227)", " ", 0);
    f = job_field(j, "geb", "a:Antragsteller/a:F60000000229");
    job_tx(j, f, RK_TX_DATE, "%Y-%m-%d", "%d.%m.%Y", 0);
    f = job_field(j, "tel", "a:Antragsteller/a:Telefon");
    job_tx(j, f, RK_TX_REPLACE, " ", "", 0);
    pthread_t t[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].job = j;
        assert_int_equal(pthread_create(&t[i], NULL, map_worker, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(args[i].ok);
    }
    job_free(j);
}

/* ---- a job file through the real loader ------------------------------------ */

/* ---- plain child paths ---------------------------------------------------- */

static const char PATHS_DOC[] =
    "<a:Antrag xmlns:a=\"" NS_A "\" xmlns:b=\"urn:b\">\n"
    "  <a:P><a:Q>eins</a:Q></a:P>\n"
    "  <a:P><a:Q>zwei</a:Q><a:Q>drei</a:Q></a:P>\n"
    "  <a:R><a:S>vier <x>fünf</x> sechs<!-- nicht --></a:S></a:R>\n"
    "  <P><Q>ohne</Q></P>\n"
    "  <b:P><a:Q>fremd</a:Q></b:P>\n"
    "  <a:T xmlns=\"" NS_A "\"><Q>vorgabe</Q></a:T>\n"
    "  <a:U><a:V/></a:U>\n"
    "  <a:W><![CDATA[roh<>]]></a:W>\n"
    "  <a:W2>a&amp;b<!-- c -->d<![CDATA[e]]></a:W2>\n"
    "  <a:X><a:Y><a:Z>tief1</a:Z></a:Y></a:X><a:X><a:Y><a:Z>tief2</a:Z></a:Y></a:X>\n"
    "  <a:X2><a:Y/></a:X2><a:X2><a:Y><a:Z>spaet</a:Z></a:Y></a:X2>\n"
    "</a:Antrag>\n";

/* A walked child path gives what libxml2's XPath gives for the same
 * path ("./" in front makes it an expression the walk does not take):
 * the value, and the node path of the first match in document order. */
static void test_child_path_equals_xpath(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "a:P/a:Q", "a:P", "a:R/a:S", "P/Q", "P", "b:P/a:Q", "a:T/a:Q", "a:T/Q",
        "a:U/a:V", "a:U", "a:W", "a:Fehlt/a:Q", "a:P/a:Q/a:Z", "a:Antrag",
        "a:X/a:Y/a:Z", "a:X2/a:Y/a:Z", "a:X2/a:Y", "x", "a:R/a:S/x", "a:W2",
    };
    const size_t n = sizeof paths / sizeof paths[0];
    rk_job *j = job_new();
    j->ns_prefixes = realloc(j->ns_prefixes, 2 * sizeof(char *));
    j->ns_uris = realloc(j->ns_uris, 2 * sizeof(char *));
    j->ns_prefixes[1] = strdup("b");
    j->ns_uris[1] = strdup("urn:b");
    j->n_ns = 2;
    for (size_t i = 0; i < n; i++) {
        char name[32], xp[64];
        snprintf(name, sizeof name, "d%zu", i);
        size_t f = job_field(j, name, paths[i]);
        j->fields[f].direct = rk_child_path_compile(j, paths[i]);
        assert_non_null(j->fields[f].direct);
        snprintf(name, sizeof name, "x%zu", i);
        snprintf(xp, sizeof xp, "./%s", paths[i]);
        f = job_field(j, name, xp);
        assert_null(rk_child_path_compile(j, xp));
        /* the string value computed by libxml2 alone */
        snprintf(name, sizeof name, "s%zu", i);
        snprintf(xp, sizeof xp, "string(./%s)", paths[i]);
        job_field(j, name, xp);
    }
    const char *code = NULL;
    char msg[256];
    xmlDocPtr doc = rk_doc_parse(PATHS_DOC, strlen(PATHS_DOC), &code, msg, sizeof msg);
    assert_non_null(doc);
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_map_apply(j, doc, &r), 0);
    assert_int_equal(r.n_anomalies, 0);
    for (size_t i = 0; i < n; i++) {
        char dn[32], xn[32];
        snprintf(dn, sizeof dn, "d%zu", i);
        snprintf(xn, sizeof xn, "x%zu", i);
        const rk_mapped_field *d = rk_result_field(&r, dn), *x = rk_result_field(&r, xn);
        assert_non_null(d);
        assert_non_null(x);
        if (!x->source) {
            assert_null(d->source);
            assert_null(d->node);
            continue;
        }
        assert_non_null(d->source);
        assert_string_equal(d->source, x->source);
        assert_string_equal(d->node, x->node);
        char sn[32];
        snprintf(sn, sizeof sn, "s%zu", i);
        assert_string_equal(d->source, rk_result_field(&r, sn)->source);
    }
    /* and what they are, so that both cannot be wrong alike */
    assert_string_equal(rk_result_field(&r, "d0")->source, "eins");
    assert_string_equal(rk_result_field(&r, "d2")->source, "vier fünf sechs");
    assert_string_equal(rk_result_field(&r, "d3")->source, "ohne");
    assert_string_equal(rk_result_field(&r, "d6")->source, "vorgabe");
    assert_null(rk_result_field(&r, "d7")->source);
    assert_string_equal(rk_result_field(&r, "d8")->source, "");
    assert_string_equal(rk_result_field(&r, "d10")->source, "roh<>");
    assert_string_equal(rk_result_field(&r, "d19")->source, "a&bde");
    assert_string_equal(rk_result_field(&r, "d15")->source, "spaet");
    assert_string_equal(rk_result_field(&r, "d15")->node, "/Antrag/X2[2]/Y/Z");
    assert_string_equal(rk_result_field(&r, "d1")->node, "/Antrag/P[1]");
    rk_result_free(&r);
    xmlFreeDoc(doc);
    job_free(j);
}

/* Everything but name steps with declared prefixes is left to XPath. */
static void test_child_path_refuses(void **state)
{
    (void)state;
    rk_job *j = job_new();
    static const char *const others[] = {
        "", "./a:P", "a:P[1]", "@x", "a:P/@x", "a:P/text()", "//a:P", "/a:Antrag/a:P",
        "c:P", "a:", "a:P/", "/", "a:P | a:Q", "a :P", "a:P ", "\xc3\xa4", "a:P/../a:Q",
        "count(a:P)", "a:*", "a:P//a:Q", "1a", "a:b:c",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        rk_child_path *p = rk_child_path_compile(j, others[i]);
        if (p)
            fail_msg("'%s' must be left to XPath", others[i]);
    }
    rk_child_path *p = rk_child_path_compile(j, "a:P/Q-1/a:R_2.x");
    assert_non_null(p);
    rk_child_path_free(p);
    job_free(j);
}

static int write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs(text, fp);
    return fclose(fp);
}

static void test_loaded_job(void **state)
{
    (void)state;
    char dir[] = "/tmp/rk_test_map_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char xsd[512], jobf[512], gc[512];
    snprintf(xsd, sizeof xsd, "%s/antrag.xsd", dir);
    snprintf(jobf, sizeof jobf, "%s/job.xml", dir);
    snprintf(gc, sizeof gc, "%s/geschlecht.gc", dir);
    assert_int_equal(write_file(xsd,
        "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"\n"
        "  targetNamespace=\"" NS_A "\" elementFormDefault=\"qualified\">\n"
        "  <xs:element name=\"Antrag\"><xs:complexType><xs:sequence>\n"
        "    <xs:any processContents=\"skip\" minOccurs=\"0\" maxOccurs=\"unbounded\"/>\n"
        "  </xs:sequence><xs:anyAttribute processContents=\"skip\"/></xs:complexType></xs:element>\n"
        "</xs:schema>\n"), 0);
    assert_int_equal(write_file(gc,
        "<gc:CodeList xmlns:gc=\"http://docs.oasis-open.org/codelist/ns/genericode/1.0/\">\n"
        "  <Identification><ShortName>geschlecht</ShortName><Version>1.0</Version>\n"
        "    <CanonicalUri>urn:xoev-de:xinneres:codeliste:geschlecht</CanonicalUri>\n"
        "    <CanonicalVersionUri>urn:xoev-de:xinneres:codeliste:geschlecht_1.0</CanonicalVersionUri>\n"
        "  </Identification>\n"
        "  <ColumnSet>\n"
        "    <Column Id=\"code\" Use=\"required\"><ShortName>Schluessel</ShortName><Data Type=\"string\"/></Column>\n"
        "    <Column Id=\"name\" Use=\"required\"><ShortName>Wert</ShortName><Data Type=\"string\"/></Column>\n"
        "    <Key Id=\"k\"><ShortName>k</ShortName><ColumnRef Ref=\"code\"/></Key>\n"
        "  </ColumnSet>\n"
        "  <SimpleCodeList>\n"
        "    <Row><Value ColumnRef=\"code\"><SimpleValue>w</SimpleValue></Value>"
        "<Value ColumnRef=\"name\"><SimpleValue>weiblich</SimpleValue></Value></Row>\n"
        "    <Row><Value ColumnRef=\"code\"><SimpleValue>m</SimpleValue></Value>"
        "<Value ColumnRef=\"name\"><SimpleValue>männlich</SimpleValue></Value></Row>\n"
        "  </SimpleCodeList>\n"
        "</gc:CodeList>\n"), 0);
    assert_int_equal(write_file(jobf,
        "<job xmlns=\"urn:rekey:job:1\" xmlns:a=\"" NS_A "\" name=\"testjob\" version=\"1\">\n"
        "  <match root=\"a:Antrag\"/>\n"
        "  <schema href=\"antrag.xsd\"/>\n"
        "  <codelist name=\"geschlecht\" href=\"geschlecht.gc\"/>\n"
        "  <table name=\"arten\"><entry key=\"tag\" value=\"Tagesschein\"/></table>\n"
        "  <map>\n"
        "    <field name=\"nachname\" from=\"a:Antragsteller/a:F60000000227\"><trim/><upper/></field>\n"
        "    <field name=\"geburtsdatum\" from=\"a:Antragsteller/a:F60000000229\">"
        "<date in=\"%Y-%m-%d\" out=\"%d.%m.%Y\"/></field>\n"
        "    <field name=\"geschlecht\" from=\"a:Antragsteller/a:Geschlecht/a:code\">"
        "<codelist list=\"geschlecht\"/></field>\n"
        "    <field name=\"art\" from=\"a:Gebuehr/@art\"><lookup table=\"arten\"/></field>\n"
        "    <field name=\"betrag\" from=\"a:Gebuehr\"><decimal places=\"2\" point=\",\"/></field>\n"
        "    <field name=\"telefon\" from=\"a:Antragsteller/a:Telefon\">"
        "<replace pattern=\"([0-9]+) ([0-9]+)\" with=\"\\2/\\1\"/></field>\n"
        "    <field name=\"name\" from=\"a:Antragsteller/a:F60000000228\">"
        "<concat from=\"a:Antragsteller/a:Geschlecht/a:code\" separator=\"-\"/>"
        "<split separator=\"-\" index=\"1\"/></field>\n"
        "  </map>\n"
        "  <connector plugin=\"sqlite\"><set key=\"table\">t</set></connector>\n"
        "</job>\n"), 0);
    char err[512] = "";
    rk_job *job = rk_job_load(jobf, NULL, err, sizeof err);
    if (!job)
        fail_msg("rk_job_load: %s", err);
    xmlDocPtr doc = sample_doc();
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_doc_validate(job, doc, &r), 0);
    assert_int_equal(rk_map_apply(job, doc, &r), 0);
    assert_int_equal(r.n_anomalies, 0);
    assert_string_equal(rk_result_field(&r, "nachname")->value, "MÜLLER LÜDENSCHEID");
    assert_string_equal(rk_result_field(&r, "geburtsdatum")->value, "03.05.2001");
    assert_string_equal(rk_result_field(&r, "geschlecht")->value, "weiblich");
    assert_string_equal(rk_result_field(&r, "art")->value, "Tagesschein");
    assert_string_equal(rk_result_field(&r, "betrag")->value, "12,50");
    assert_string_equal(rk_result_field(&r, "telefon")->value, "123/0711");
    assert_string_equal(rk_result_field(&r, "name")->value, "w");
    /* plain child paths are walked without XPath (the concat's too);
     * the attribute goes to libxml2 */
    assert_non_null(job->fields[0].direct);
    assert_non_null(job->fields[2].direct);
    assert_null(job->fields[3].direct);
    assert_non_null(job->fields[6].direct);
    assert_non_null(job->fields[6].tx[0].direct);
    rk_result_free(&r);
    xmlFreeDoc(doc);
    rk_job_unref(job);
    unlink(xsd);
    unlink(jobf);
    unlink(gc);
    rmdir(dir);
}

int main(void)
{
    rk_xml_init();
    rk_log_set_level(RK_LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provenance),
        cmocka_unit_test(test_xpath_context_between_documents),
        cmocka_unit_test(test_xpath_error_is_anomaly),
        cmocka_unit_test(test_no_root),
        cmocka_unit_test(test_trim_upper_lower),
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_decimal),
        cmocka_unit_test(test_default_and_empty_pass_through),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_codelist),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_split_and_concat),
        cmocka_unit_test(test_chain_stops_at_failure),
        cmocka_unit_test(test_date_parse),
        cmocka_unit_test(test_threads_share_job),
        cmocka_unit_test(test_loaded_job),
        cmocka_unit_test(test_child_path_equals_xpath),
        cmocka_unit_test(test_child_path_refuses),
        cmocka_unit_test(test_map_in_region),
        cmocka_unit_test(test_pack_fields),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return failed;
}
