/*
 * xmldoc.c — parsing submitted documents safely and validating them
 * against the job's XSD.
 *
 * Everything here runs on worker threads, several at once.  Each call
 * therefore uses its own libxml2 parser or validation context and
 * collects errors through a callback bound to that context; nothing
 * touches libxml2's process-wide error handlers, and nothing is printed.
 */
#include "xmldoc.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>

#include "util.h"

#define SCHEMA_MAX_ANOMALIES 20
#define ERRMSG_MAX 512

/* Per-call state of rk_doc_parse, reached through ctxt->_private. */
struct parse_state {
    int doctype;            /* the parser met <!DOCTYPE */
    int have_error;         /* first error recorded */
    int line;
    int code;               /* libxml2's xmlParserErrors of that error */
    char message[ERRMSG_MAX];
};

/*
 * Copies a libxml2 message into out, dropping trailing white space
 * (libxml2 ends its messages with a newline) and turning inner line
 * breaks and tabs into blanks ("indicate encoding !\nBytes: ..."), so
 * that the message stays one line wherever it is shown.
 */
static void copy_trimmed(char *out, size_t outlen, const char *msg)
{
    if (!outlen)
        return;
    if (!msg)
        msg = "";
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r' ||
                     msg[n - 1] == ' ' || msg[n - 1] == '\t'))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (msg[i] == '\n' || msg[i] == '\r' || msg[i] == '\t') ? ' ' : msg[i];
    out[n] = '\0';
}

/*
 * Structured error callback of the parser context.  libxml2 hands it
 * ctxt->userData, which a fresh parser context sets to the context
 * itself.  Only the first error is kept: later ones are mostly
 * consequences of it ("Extra content at the end of the document").
 */
static void parse_error_cb(void *user, xmlErrorPtr err)
{
    xmlParserCtxtPtr ctxt = user;
    if (!ctxt || !err || err->level < XML_ERR_ERROR)
        return;
    struct parse_state *st = ctxt->_private;
    if (!st || st->have_error)
        return;
    st->have_error = 1;
    st->line = err->line;
    st->code = err->code;
    copy_trimmed(st->message, sizeof st->message, err->message);
}

/*
 * SAX hook called as soon as the parser has read "<!DOCTYPE name ...",
 * before the internal subset.  Stopping here means no entity declaration
 * of a hostile document (billion laughs, external entities) is ever
 * parsed, let alone expanded.
 */
static void parse_doctype_cb(void *user, const xmlChar *name,
                             const xmlChar *external_id, const xmlChar *system_id)
{
    (void)name;
    (void)external_id;
    (void)system_id;
    xmlParserCtxtPtr ctxt = user;
    struct parse_state *st = ctxt ? ctxt->_private : NULL;
    if (st)
        st->doctype = 1;
    if (ctxt)
        xmlStopParser(ctxt);
}

static int is_blank_input(const char *data, size_t len)
{
    size_t i = 0;
    if (!data)
        return 1;
    /* A UTF-8 byte order mark before nothing is still nothing. */
    if (len >= 3 && (unsigned char)data[0] == 0xEF &&
        (unsigned char)data[1] == 0xBB && (unsigned char)data[2] == 0xBF)
        i = 3;
    for (; i < len; i++)
        if (data[i] != ' ' && data[i] != '\t' && data[i] != '\r' && data[i] != '\n')
            return 0;
    return 1;
}

/*
 * The German message for a document libxml2 refused.  Three refusals get
 * words of their own because hostile or mis-encoded input ends there and
 * libxml2's English does not tell a clerk what to do: the nesting depth
 * (libxml2's fixed limit, 256 levels unless XML_PARSE_HUGE, which rekey
 * never sets), bytes that are not valid in the document's encoding, and
 * UTF-16 that neither a byte order mark nor the declaration announces
 * (its NUL bytes are then read as UTF-8).  Everything else quotes
 * libxml2.
 */
static void malformed_message(const struct parse_state *st, const char *data, size_t len,
                              char *msg, size_t msglen)
{
    const char *m = st->message;
    const char *depth = strstr(m, "Excessive depth");
    if (depth) {
        const char *p = strchr(depth, ':');
        long levels = p ? strtol(p + 1, NULL, 10) : 0;
        if (levels > 0)
            snprintf(msg, msglen, "Das Dokument ist zu tief verschachtelt (Zeile %d): mehr "
                     "als %ld Ebenen sind nicht zulässig.", st->line, levels);
        else
            snprintf(msg, msglen, "Das Dokument ist zu tief verschachtelt (Zeile %d).",
                     st->line);
        return;
    }
    if (st->code == XML_ERR_INVALID_ENCODING || strstr(m, "not proper UTF-8")) {
        const char *bytes = strstr(m, "Bytes:");
        snprintf(msg, msglen, "Das Dokument enthält Bytes, die in seiner Zeichenkodierung "
                 "nicht gültig sind (Zeile %d%s%s). Ohne Angabe in der XML-Deklaration "
                 "gilt UTF-8.", st->line, bytes ? "; " : "", bytes ? bytes : "");
        return;
    }
    if (st->code == XML_ERR_INVALID_CHAR && len >= 4 &&
        ((data[0] != 0 && data[1] == 0) || (data[0] == 0 && data[1] != 0))) {
        snprintf(msg, msglen, "Das Dokument ist offenbar UTF-16, aber weder eine Byte Order "
                 "Mark noch die XML-Deklaration sagen das; so ist seine Zeichenkodierung "
                 "nicht erkennbar (Zeile %d: %s).", st->line, m);
        return;
    }
    snprintf(msg, msglen, "Das Dokument ist kein wohlgeformtes XML (Zeile %d: %s)", st->line,
             m);
}

/* Parses data with a new context (NULL in *ctxt when there is no
 * memory for one); the document or NULL, the context for its state. */
static xmlDocPtr read_doc(const char *data, size_t len, struct parse_state *st,
                          xmlParserCtxtPtr *ctxt)
{
    memset(st, 0, sizeof *st);
    xmlParserCtxtPtr c = xmlNewParserCtxt();
    if (!c || !c->sax) {
        xmlFreeParserCtxt(c);
        *ctxt = NULL;
        return NULL;
    }
    c->_private = st;
    c->sax->serror = parse_error_cb;
    c->sax->internalSubset = parse_doctype_cb;
    *ctxt = c;
    /* COMPACT keeps short texts inside their node (fewer allocations; the
     * tree is read, never changed, apart from the dashboard dropping
     * blank text nodes, which libxml2 frees correctly either way) */
    int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                  XML_PARSE_BIG_LINES | XML_PARSE_COMPACT;
    return xmlCtxtReadMemory(c, data, (int)len, NULL, NULL, options);
}

/* A well-formed document with a root element and no DOCTYPE. */
static int parsed_ok(xmlDocPtr doc, xmlParserCtxtPtr ctxt, const struct parse_state *st)
{
    return doc && ctxt && !st->doctype && !doc->intSubset && !doc->extSubset &&
           ctxt->wellFormed && ctxt->nsWellFormed && !st->have_error &&
           xmlDocGetRootElement(doc);
}

/*
 * Blanks after the root element are not part of the tree.  With PAD of
 * them after a document, libxml2's parser is never within its look-ahead
 * (INPUT_CHUNK, 250 bytes) of the end of its input while it reads the
 * document, where each step asked the input for more (xmlParserInputGrow:
 * 17,000 of the 110,000 instructions of parsing a 2 KB document;
 * docs/performance.md, step 49).  Only for documents up to PAD_MAX bytes
 * (a copy) in an encoding where a space is the byte 0x20: one that
 * begins with "<" or UTF-8's byte order mark, and not with "<" and a zero
 * byte (UTF-16 without a byte order mark).  A document that does not
 * parse is parsed again as it came, so a message names what it did.
 */
#define PAD 300
#define PAD_MAX ((size_t)256 * 1024)

static int pad_fits(const char *data, size_t len)
{
    const unsigned char *d = (const unsigned char *)data;
    if (len >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF)
        return 1;
    return len >= 2 && d[0] == '<' && d[1] != 0;
}

/*
 * Parses a submitted document from memory.  Returns a new xmlDoc (the
 * caller frees it with xmlFreeDoc) or NULL with *code and msg set.
 *
 * Options: no network, no entity substitution, no DTD loading, default
 * size and depth limits (no XML_PARSE_HUGE), CDATA kept as such, big line
 * numbers so messages about long documents name the right line.  A
 * DOCTYPE is refused outright (see parse_doctype_cb).  A document with
 * undeclared namespace prefixes counts as malformed: the job's XPath
 * could not address it reliably.
 */
xmlDocPtr rk_doc_parse(const char *data, size_t len, const char **code,
                       char *msg, size_t msglen)
{
    const char *dummy_code;
    if (!code)
        code = &dummy_code;
    if (msg && msglen)
        msg[0] = '\0';
    *code = NULL;

    if (is_blank_input(data, len)) {
        *code = "XML_EMPTY";
        if (msg)
            snprintf(msg, msglen, "Das Dokument ist leer.");
        return NULL;
    }
    if (len > INT_MAX) {
        *code = "XML_MALFORMED";
        if (msg)
            snprintf(msg, msglen, "Das Dokument ist zu groß, um es als XML zu lesen.");
        return NULL;
    }

    rk_xml_init(); /* libxml2 wants its global set-up done once, first */
    struct parse_state st;
    xmlParserCtxtPtr ctxt = NULL;
    xmlDocPtr doc = NULL;
    if (len <= PAD_MAX && pad_fits(data, len)) {
        /* as it came, plus blanks at the end: the same tree */
        char *padded = xmlMalloc(len + PAD);
        if (padded) {
            memcpy(padded, data, len);
            memset(padded + len, ' ', PAD);
            doc = read_doc(padded, len + PAD, &st, &ctxt);
            xmlFree(padded);
            if (!parsed_ok(doc, ctxt, &st)) {
                /* parsed again as it came, for the message it gives */
                xmlFreeDoc(doc);
                xmlFreeParserCtxt(ctxt);
                doc = NULL;
                ctxt = NULL;
            }
        }
    }
    if (!ctxt)
        doc = read_doc(data, len, &st, &ctxt);
    if (!ctxt) {
        *code = "XML_MALFORMED";
        if (msg)
            snprintf(msg, msglen, "Das Dokument konnte nicht gelesen werden (kein Speicher).");
        return NULL;
    }

    if (st.doctype || (doc && (doc->intSubset || doc->extSubset))) {
        xmlFreeDoc(doc);
        xmlFreeParserCtxt(ctxt);
        *code = "XML_DOCTYPE";
        if (msg)
            snprintf(msg, msglen, "Das Dokument enthält eine DOCTYPE-Deklaration; "
                                  "Entitäten sind aus Sicherheitsgründen nicht zulässig.");
        return NULL;
    }

    if (!parsed_ok(doc, ctxt, &st)) {
        if (!st.have_error) {
            xmlErrorPtr last = xmlCtxtGetLastError(ctxt);
            if (last && last->message) {
                st.line = last->line;
                st.code = last->code;
                copy_trimmed(st.message, sizeof st.message, last->message);
            } else {
                st.line = ctxt->input ? ctxt->input->line : 0;
                snprintf(st.message, sizeof st.message, "unbekannter Fehler");
            }
        }
        xmlFreeDoc(doc);
        xmlFreeParserCtxt(ctxt);
        *code = "XML_MALFORMED";
        if (msg && msglen)
            malformed_message(&st, data, len, msg, msglen);
        return NULL;
    }
    xmlFreeParserCtxt(ctxt);
    return doc;
}

/* Namespace URI ("" when none) and local name of the root element, both
 * borrowed from doc; "" and "" when there is no root. */
void rk_doc_root(xmlDocPtr doc, const char **ns, const char **local)
{
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (ns)
        *ns = (root && root->ns && root->ns->href) ? (const char *)root->ns->href : "";
    if (local)
        *local = (root && root->name) ? (const char *)root->name : "";
}

/* One schema violation remembered for the result. */
struct schema_err {
    int line;
    char field[128];
    char message[ERRMSG_MAX];
};

/* Per-call state of rk_doc_validate. */
struct validate_state {
    int total;                                      /* violations seen */
    struct schema_err errs[SCHEMA_MAX_ANOMALIES];   /* the first ones */
};

/*
 * Structured error callback of the validation context.  Keeps the first
 * SCHEMA_MAX_ANOMALIES violations and counts all.  The field is the
 * local name of the element concerned (the owning element for an
 * attribute).
 */
static void validate_error_cb(void *user, xmlErrorPtr err)
{
    struct validate_state *st = user;
    if (!st || !err || err->level < XML_ERR_ERROR)
        return;
    int i = st->total++;
    if (i >= SCHEMA_MAX_ANOMALIES)
        return;
    struct schema_err *e = &st->errs[i];
    memset(e, 0, sizeof *e);
    xmlNodePtr node = err->node;
    if (node && node->type == XML_ATTRIBUTE_NODE)
        node = node->parent;
    if (node && node->type == XML_ELEMENT_NODE && node->name)
        snprintf(e->field, sizeof e->field, "%s", (const char *)node->name);
    e->line = err->line;
    if (e->line <= 0 && node)
        e->line = (int)xmlGetLineNo(node);
    copy_trimmed(e->message, sizeof e->message, err->message);
}

/*
 * Validates doc against job->schema with a validation context of its
 * own (the compiled schema is shared read-only between threads).  Each
 * violation becomes a blocking SCHEMA anomaly, at most
 * SCHEMA_MAX_ANOMALIES of them; when there are more, the last one says
 * how many were left out.  Returns the number of violations (0 when the
 * job has no schema).
 */
int rk_doc_validate(const rk_job *job, xmlDocPtr doc, rk_result *r)
{
    if (!job || !job->schema || !doc)
        return 0;
    xmlSchemaValidCtxtPtr vctxt = xmlSchemaNewValidCtxt(job->schema);
    if (!vctxt) {
        rk_result_add_anomaly(r, "SCHEMA", NULL, RK_SEV_BLOCK,
                              "Die Schemaprüfung konnte nicht durchgeführt werden "
                              "(kein Speicher).");
        return 1;
    }
    /* not zeroed: the callback clears each entry it fills (the
     * entries are 13 KB; zeroing them was 13 % of validating) */
    struct validate_state *st = malloc(sizeof *st);
    if (!st) {
        xmlSchemaFreeValidCtxt(vctxt);
        rk_result_add_anomaly(r, "SCHEMA", NULL, RK_SEV_BLOCK,
                              "Die Schemaprüfung konnte nicht durchgeführt werden "
                              "(kein Speicher).");
        return 1;
    }
    st->total = 0;
    xmlSchemaSetValidStructuredErrors(vctxt, validate_error_cb, st);
    int rc = xmlSchemaValidateDoc(vctxt, doc);
    xmlSchemaFreeValidCtxt(vctxt);

    int total = st->total;
    if (rc == 0 && total == 0) {
        free(st);
        return 0;
    }
    if (total == 0) {
        /* libxml2 failed without naming a violation (internal error). */
        rk_result_add_anomaly(r, "SCHEMA", NULL, RK_SEV_BLOCK,
                              "Die Schemaprüfung ist fehlgeschlagen, ohne eine "
                              "Schemaverletzung zu nennen.");
        free(st);
        return 1;
    }
    int shown = total < SCHEMA_MAX_ANOMALIES ? total : SCHEMA_MAX_ANOMALIES;
    for (int i = 0; i < shown; i++) {
        struct schema_err *e = &st->errs[i];
        const char *field = e->field[0] ? e->field : NULL;
        if (i == SCHEMA_MAX_ANOMALIES - 1 && total > SCHEMA_MAX_ANOMALIES) {
            rk_result_add_anomaly(r, "SCHEMA", NULL, RK_SEV_BLOCK,
                                  "%d weitere Schemaverletzungen werden nicht "
                                  "einzeln aufgeführt.",
                                  total - (SCHEMA_MAX_ANOMALIES - 1));
        } else if (e->line > 0) {
            rk_result_add_anomaly(r, "SCHEMA", field, RK_SEV_BLOCK,
                                  "Schemaverletzung in Zeile %d: %s", e->line, e->message);
        } else {
            rk_result_add_anomaly(r, "SCHEMA", field, RK_SEV_BLOCK,
                                  "Schemaverletzung: %s", e->message);
        }
    }
    free(st);
    return total;
}
