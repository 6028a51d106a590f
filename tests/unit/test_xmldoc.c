/*
 * test_xmldoc.c — safe parsing of submissions (empty, malformed, DOCTYPE
 * in every hostile form, limits) and schema validation into SCHEMA
 * anomalies with line numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlschemas.h>

#include "job.h"
#include "record.h"
#include "util.h"
#include "xmldoc.h"

#define NS_A "urn:example:antrag:1"
#define DOCTYPE_MSG                                                                      \
    "Das Dokument enthält eine DOCTYPE-Deklaration; Entitäten sind aus "                \
    "Sicherheitsgründen nicht zulässig."

/* Parses text; returns the doc and fills code/msg. */
static xmlDocPtr parse(const char *text, const char **code, char *msg, size_t msglen)
{
    *code = NULL;
    return rk_doc_parse(text, strlen(text), code, msg, msglen);
}

static void expect_refused(const char *text, const char *want_code)
{
    const char *code;
    char msg[512];
    xmlDocPtr doc = parse(text, &code, msg, sizeof msg);
    assert_null(doc);
    assert_non_null(code);
    assert_string_equal(code, want_code);
    assert_true(msg[0] != '\0');
}

static void test_empty(void **state)
{
    (void)state;
    const char *code;
    char msg[256];
    assert_null(rk_doc_parse("", 0, &code, msg, sizeof msg));
    assert_string_equal(code, "XML_EMPTY");
    assert_string_equal(msg, "Das Dokument ist leer.");
    assert_null(rk_doc_parse(NULL, 0, &code, msg, sizeof msg));
    assert_string_equal(code, "XML_EMPTY");
    expect_refused(" \r\n\t\n", "XML_EMPTY");
    expect_refused("\xEF\xBB\xBF\n", "XML_EMPTY");
    /* one character more is no longer empty, just malformed */
    expect_refused(" x ", "XML_MALFORMED");
}

static void test_malformed(void **state)
{
    (void)state;
    const char *code;
    char msg[512];
    xmlDocPtr doc = parse("<?xml version=\"1.0\"?>\n<a>\n  <b></a>\n", &code, msg, sizeof msg);
    assert_null(doc);
    assert_string_equal(code, "XML_MALFORMED");
    assert_string_equal(msg, "Das Dokument ist kein wohlgeformtes XML (Zeile 3: Opening and "
                             "ending tag mismatch: b line 3 and a)");
    /* an entity that no DTD declares */
    doc = parse("<a>\n&ent;</a>", &code, msg, sizeof msg);
    assert_null(doc);
    assert_string_equal(code, "XML_MALFORMED");
    assert_non_null(strstr(msg, "(Zeile 2: Entity 'ent' not defined)"));
    /* an undeclared namespace prefix */
    expect_refused("<x:a/>", "XML_MALFORMED");
    /* truncated, text only, two roots */
    expect_refused("<a><b>", "XML_MALFORMED");
    expect_refused("just text", "XML_MALFORMED");
    expect_refused("<a/><b/>", "XML_MALFORMED");
    /* msg may be omitted */
    assert_null(rk_doc_parse("<a>", 3, &code, NULL, 0));
    assert_string_equal(code, "XML_MALFORMED");
}

/* The first error libxml2 reports, its message without the newline. */
struct first_error {
    int seen, line;
    char message[512];
};

static void keep_first_error(void *arg, xmlErrorPtr e)
{
    struct first_error *f = arg;
    if (f->seen || !e || e->level < XML_ERR_ERROR)
        return;
    f->seen = 1;
    f->line = e->line;
    snprintf(f->message, sizeof f->message, "%s", e->message ? e->message : "");
    size_t n = strlen(f->message);
    while (n && (f->message[n - 1] == '\n' || f->message[n - 1] == ' '))
        f->message[--n] = '\0';
}

/* The tree as text with each element's line: what a parse gives. */
static char *tree_text(xmlDocPtr doc)
{
    xmlChar *dump = NULL;
    int n = 0;
    xmlDocDumpMemory(doc, &dump, &n);
    assert_non_null(dump);
    size_t cap = (size_t)n + 4096, used = (size_t)n;
    char *s = malloc(cap);
    assert_non_null(s);
    memcpy(s, dump, (size_t)n);
    xmlFree(dump);
    for (xmlNodePtr e = xmlDocGetRootElement(doc); e;) {
        if (e->type == XML_ELEMENT_NODE && used + 16 < cap)
            used += (size_t)snprintf(s + used, cap - used, " %ld", xmlGetLineNo(e));
        if (e->children)
            e = e->children;
        else {
            while (e && !e->next)
                e = e->parent;
            if (e)
                e = e->next;
        }
    }
    s[used] = '\0';
    return s;
}

/* rk_doc_parse reads small documents with blanks appended (xmldoc.c,
 * pad_fits): the tree, its text and every element's line are those of
 * the document as it came (libxml2 read with the same options), at the
 * end of the input and past the parser's 250 bytes of look-ahead, with
 * what may follow the root element, in UTF-8 with a byte order mark and
 * in ISO-8859-1; a document that does not parse gives its own message
 * (test_malformed; the same messages are asserted there). */
static void test_padded_parse_same_tree(void **state)
{
    (void)state;
    static char long_doc[4096];
    size_t n = (size_t)snprintf(long_doc, sizeof long_doc, "<a xmlns=\"" NS_A "\">\n");
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(long_doc + n, sizeof long_doc - n, "  <f%d>Wert %d</f%d>\n", i, i,
                              i);
    snprintf(long_doc + n, sizeof long_doc - n, "</a>");
    const char *docs[] = {
        "<a/>",
        "<a>text</a>\n",
        "<a><b>x</b><![CDATA[roh <>]]></a>",
        "<a>\n  <b>Zeile 2</b>\n</a>\n<!-- danach -->\n<?pi danach?>\n\n",
        "\xEF\xBB\xBF<a>mit BOM \xC3\xA4</a>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<a>M\xFCller</a>",
        "<a>   </a>   ",
        long_doc,
    };
    const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                        XML_PARSE_BIG_LINES | XML_PARSE_COMPACT;
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        const char *code;
        char msg[512];
        xmlDocPtr got = rk_doc_parse(docs[i], strlen(docs[i]), &code, msg, sizeof msg);
        assert_non_null(got);
        xmlDocPtr want = xmlReadMemory(docs[i], (int)strlen(docs[i]), NULL, NULL, options);
        assert_non_null(want);
        char *g = tree_text(got), *w = tree_text(want);
        assert_string_equal(g, w);
        free(g);
        free(w);
        xmlFreeDoc(got);
        xmlFreeDoc(want);
    }
    /* ends in the middle, at every length: the message is the one
     * libxml2 gives first for the document as it came */
    for (size_t cut = 1; cut < 40; cut++) {
        const char *code;
        char msg[512];
        char doc[64];
        snprintf(doc, sizeof doc, "%.*s", (int)cut, "<a>\n  <b x=\"1\">Text</b>\n</a>");
        xmlDocPtr got = rk_doc_parse(doc, strlen(doc), &code, msg, sizeof msg);
        struct first_error first = {0};
        xmlSetStructuredErrorFunc(&first, keep_first_error);
        xmlDocPtr want = xmlReadMemory(doc, (int)strlen(doc), NULL, NULL, options);
        xmlSetStructuredErrorFunc(NULL, NULL);
        assert_int_equal(got != NULL, want != NULL);
        if (!got) {
            assert_string_equal(code, "XML_MALFORMED");
            assert_true(first.seen);
            char text[600];
            snprintf(text, sizeof text, "(Zeile %d: %s)", first.line, first.message);
            assert_non_null(strstr(msg, text));
        }
        xmlFreeDoc(got);
        xmlFreeDoc(want);
    }
}

static void test_doctype_internal_entities(void **state)
{
    (void)state;
    /* billion laughs */
    const char *lol =
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE lolz [\n"
        " <!ENTITY lol \"lol\">\n"
        " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
        " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
        " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
        " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
        " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
        " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
        " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
        " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
        " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
        "]>\n"
        "<lolz>&lol9;</lolz>\n";
    const char *code;
    char msg[512];
    assert_null(parse(lol, &code, msg, sizeof msg));
    assert_string_equal(code, "XML_DOCTYPE");
    assert_string_equal(msg, DOCTYPE_MSG);

    /* an entity loop, which libxml2 itself would report differently */
    assert_null(parse("<!DOCTYPE a [<!ENTITY x \"&y;\"><!ENTITY y \"&x;\">]><a>&x;</a>", &code,
                      msg, sizeof msg));
    assert_string_equal(code, "XML_DOCTYPE");
    /* a harmless-looking DOCTYPE is refused just the same */
    expect_refused("<!DOCTYPE a><a/>", "XML_DOCTYPE");
    expect_refused("<!DOCTYPE a [<!ELEMENT a (#PCDATA)>]><a>x</a>", "XML_DOCTYPE");
}

static void test_doctype_external_entity(void **state)
{
    (void)state;
    expect_refused("<?xml version=\"1.0\"?>\n"
                   "<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n"
                   "<a>&e;</a>",
                   "XML_DOCTYPE");
    expect_refused("<!DOCTYPE a [<!ENTITY % p SYSTEM \"http://127.0.0.1:9/x.dtd\"> %p;]><a/>",
                   "XML_DOCTYPE");
    expect_refused("<!DOCTYPE a SYSTEM \"http://127.0.0.1:9/x.dtd\"><a/>", "XML_DOCTYPE");
    expect_refused("<!DOCTYPE a PUBLIC \"-//X//DTD X//EN\" \"/etc/passwd\"><a/>",
                   "XML_DOCTYPE");
}

static void test_valid_root(void **state)
{
    (void)state;
    const char *code;
    char msg[256];
    xmlDocPtr doc = parse("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                          "<a:Antrag xmlns:a=\"" NS_A "\"><a:X><![CDATA[1 < 2]]></a:X></a:Antrag>",
                          &code, msg, sizeof msg);
    assert_non_null(doc);
    assert_null(code);
    const char *ns = NULL, *local = NULL;
    rk_doc_root(doc, &ns, &local);
    assert_string_equal(ns, NS_A);
    assert_string_equal(local, "Antrag");
    /* CDATA stays a CDATA section */
    xmlNodePtr x = xmlDocGetRootElement(doc)->children;
    assert_non_null(x);
    assert_int_equal(x->children->type, XML_CDATA_SECTION_NODE);
    assert_string_equal((const char *)x->children->content, "1 < 2");
    xmlFreeDoc(doc);

    doc = parse("<Antrag xmlns=\"" NS_A "\"/>", &code, msg, sizeof msg);
    rk_doc_root(doc, &ns, &local);
    assert_string_equal(ns, NS_A);
    assert_string_equal(local, "Antrag");
    xmlFreeDoc(doc);

    doc = parse("\xEF\xBB\xBF<Antrag/>", &code, msg, sizeof msg);
    assert_non_null(doc);
    rk_doc_root(doc, &ns, &local);
    assert_string_equal(ns, "");
    assert_string_equal(local, "Antrag");
    xmlFreeDoc(doc);

    /* other encodings are read as declared */
    const char latin1[] = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><n>M\xfcller</n>";
    doc = parse(latin1, &code, msg, sizeof msg);
    assert_non_null(doc);
    xmlChar *content = xmlNodeGetContent(xmlDocGetRootElement(doc));
    assert_string_equal((const char *)content, "Müller");
    xmlFree(content);
    xmlFreeDoc(doc);

    rk_doc_root(NULL, &ns, &local);
    assert_string_equal(ns, "");
    assert_string_equal(local, "");
}

/* libxml2's default depth limit (256) holds: no XML_PARSE_HUGE. */
static void test_depth_limit(void **state)
{
    (void)state;
    rk_buf b;
    for (int depth = 250; depth <= 300; depth += 50) {
        rk_buf_init(&b, 1 << 20);
        for (int i = 0; i < depth; i++)
            assert_int_equal(rk_buf_append(&b, "<a>", 3), 0);
        for (int i = 0; i < depth; i++)
            assert_int_equal(rk_buf_append(&b, "</a>", 4), 0);
        const char *code;
        char msg[512];
        xmlDocPtr doc = rk_doc_parse(b.data, b.len, &code, msg, sizeof msg);
        if (depth == 250) {
            assert_non_null(doc);
            xmlFreeDoc(doc);
        } else {
            assert_null(doc);
            assert_string_equal(code, "XML_MALFORMED");
        }
        rk_buf_free(&b);
    }
}

/* ---- schema validation ---------------------------------------------------- */

static const char XSD[] =
    "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"\n"
    "  targetNamespace=\"" NS_A "\" elementFormDefault=\"qualified\">\n"
    "  <xs:element name=\"Antrag\">\n"
    "    <xs:complexType>\n"
    "      <xs:sequence>\n"
    "        <xs:element name=\"Name\" type=\"xs:string\"/>\n"
    "        <xs:element name=\"Geburtsdatum\" type=\"xs:date\"/>\n"
    "        <xs:element name=\"Wert\" type=\"xs:int\" minOccurs=\"0\" maxOccurs=\"unbounded\"/>\n"
    "      </xs:sequence>\n"
    "      <xs:attribute name=\"version\" type=\"xs:int\"/>\n"
    "    </xs:complexType>\n"
    "  </xs:element>\n"
    "</xs:schema>\n";

static void quiet(void *ctx, xmlErrorPtr e)
{
    (void)ctx;
    (void)e;
}

static int setup_schema(void **state)
{
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewMemParserCtxt(XSD, (int)strlen(XSD));
    xmlSchemaSetParserStructuredErrors(pc, quiet, NULL);
    rk_job *job = calloc(1, sizeof *job);
    job->name = "antrag";
    job->schema = xmlSchemaParse(pc);
    xmlSchemaFreeParserCtxt(pc);
    if (!job->schema) {
        free(job);
        return -1;
    }
    *state = job;
    return 0;
}

static int teardown_schema(void **state)
{
    rk_job *job = *state;
    xmlSchemaFree(job->schema);
    free(job);
    return 0;
}

static xmlDocPtr parse_ok(const char *text)
{
    const char *code;
    char msg[512];
    xmlDocPtr doc = rk_doc_parse(text, strlen(text), &code, msg, sizeof msg);
    if (!doc)
        fail_msg("parse: %s %s", code, msg);
    return doc;
}

static void test_schema_valid(void **state)
{
    rk_job *job = *state;
    xmlDocPtr doc = parse_ok("<Antrag xmlns=\"" NS_A "\" version=\"1\">\n"
                             "  <Name>Müller</Name>\n"
                             "  <Geburtsdatum>2001-05-03</Geburtsdatum>\n"
                             "</Antrag>\n");
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_doc_validate(job, doc, &r), 0);
    assert_int_equal(r.n_anomalies, 0);
    rk_result_free(&r);
    xmlFreeDoc(doc);
}

static void test_schema_violation(void **state)
{
    rk_job *job = *state;
    xmlDocPtr doc = parse_ok("<Antrag xmlns=\"" NS_A "\" version=\"1\">\n"
                             "  <Name>Müller</Name>\n"
                             "\n"
                             "  <Geburtsdatum>2001-02-31</Geburtsdatum>\n"
                             "</Antrag>\n");
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_doc_validate(job, doc, &r), 1);
    assert_int_equal(r.n_anomalies, 1);
    assert_string_equal(r.anomalies[0].code, "SCHEMA");
    assert_string_equal(r.anomalies[0].field, "Geburtsdatum");
    assert_int_equal(r.anomalies[0].severity, RK_SEV_BLOCK);
    assert_string_equal(r.anomalies[0].message,
                        "Schemaverletzung in Zeile 4: Element '{" NS_A "}Geburtsdatum': "
                        "'2001-02-31' is not a valid value of the atomic type 'xs:date'.");
    assert_true(rk_result_blocked(&r));
    rk_result_free(&r);
    xmlFreeDoc(doc);

    /* a missing element and a bad attribute: the field is the element */
    doc = parse_ok("<Antrag xmlns=\"" NS_A "\" version=\"eins\">\n"
                   "  <Name>Müller</Name>\n"
                   "</Antrag>\n");
    rk_result_init(&r);
    assert_int_equal(rk_doc_validate(job, doc, &r), 2);
    assert_int_equal(r.n_anomalies, 2);
    assert_string_equal(r.anomalies[0].field, "Antrag");
    assert_non_null(strstr(r.anomalies[0].message, "Schemaverletzung in Zeile 1: "));
    assert_non_null(strstr(r.anomalies[0].message, "attribute 'version'"));
    assert_string_equal(r.anomalies[1].field, "Antrag");
    assert_non_null(strstr(r.anomalies[1].message, "Missing child element(s)"));
    rk_result_free(&r);
    xmlFreeDoc(doc);
}

static void test_schema_cap(void **state)
{
    rk_job *job = *state;
    rk_buf b;
    rk_buf_init(&b, 1 << 20);
    rk_buf_appendf(&b, "<Antrag xmlns=\"%s\">\n<Name>x</Name>\n<Geburtsdatum>2001-05-03"
                       "</Geburtsdatum>\n", NS_A);
    for (int i = 0; i < 25; i++)
        rk_buf_appendf(&b, "<Wert>w%d</Wert>\n", i);
    rk_buf_appendf(&b, "</Antrag>\n");
    xmlDocPtr doc = parse_ok(b.data);
    rk_buf_free(&b);
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_doc_validate(job, doc, &r), 25);
    assert_int_equal(r.n_anomalies, 20);
    assert_string_equal(r.anomalies[0].field, "Wert");
    assert_non_null(strstr(r.anomalies[0].message, "Schemaverletzung in Zeile 4: "));
    assert_non_null(strstr(r.anomalies[18].message, "Schemaverletzung in Zeile 22: "));
    assert_string_equal(r.anomalies[19].message,
                        "6 weitere Schemaverletzungen werden nicht einzeln aufgeführt.");
    assert_null(r.anomalies[19].field);
    rk_result_free(&r);
    xmlFreeDoc(doc);
}

static void test_schema_none(void **state)
{
    (void)state;
    rk_job nojob;
    memset(&nojob, 0, sizeof nojob);
    xmlDocPtr doc = parse_ok("<a/>");
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_doc_validate(&nojob, doc, &r), 0);
    assert_int_equal(r.n_anomalies, 0);
    rk_result_free(&r);
    xmlFreeDoc(doc);
}

struct vt_arg {
    rk_job *job;
    int ok;
};

static void *validate_worker(void *p)
{
    struct vt_arg *a = p;
    a->ok = 1;
    for (int i = 0; i < 200; i++) {
        const char *text = (i % 2)
            ? "<Antrag xmlns=\"" NS_A "\"><Name>a</Name><Geburtsdatum>2001-05-03</Geburtsdatum></Antrag>"
            : "<Antrag xmlns=\"" NS_A "\"><Name>a</Name><Geburtsdatum>x</Geburtsdatum></Antrag>";
        const char *code;
        char msg[256];
        xmlDocPtr doc = rk_doc_parse(text, strlen(text), &code, msg, sizeof msg);
        if (!doc) {
            a->ok = 0;
            continue;
        }
        rk_result r;
        rk_result_init(&r);
        int n = rk_doc_validate(a->job, doc, &r);
        if (n != (i % 2 ? 0 : 1) || r.n_anomalies != (size_t)n)
            a->ok = 0;
        if (n && strcmp(r.anomalies[0].field, "Geburtsdatum") != 0)
            a->ok = 0;
        rk_result_free(&r);
        xmlFreeDoc(doc);
        /* and a hostile one in between */
        if (rk_doc_parse("<!DOCTYPE a><a/>", 16, &code, msg, sizeof msg) ||
            strcmp(code, "XML_DOCTYPE") != 0)
            a->ok = 0;
    }
    return NULL;
}

static void test_threads(void **state)
{
    rk_job *job = *state;
    pthread_t t[4];
    struct vt_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].job = job;
        assert_int_equal(pthread_create(&t[i], NULL, validate_worker, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(args[i].ok);
    }
}

int main(void)
{
    rk_xml_init();
    rk_log_set_level(RK_LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_padded_parse_same_tree),
        cmocka_unit_test(test_doctype_internal_entities),
        cmocka_unit_test(test_doctype_external_entity),
        cmocka_unit_test(test_valid_root),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_schema_none),
        cmocka_unit_test_setup_teardown(test_schema_valid, setup_schema, teardown_schema),
        cmocka_unit_test_setup_teardown(test_schema_violation, setup_schema, teardown_schema),
        cmocka_unit_test_setup_teardown(test_schema_cap, setup_schema, teardown_schema),
        cmocka_unit_test_setup_teardown(test_threads, setup_schema, teardown_schema),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return failed;
}
