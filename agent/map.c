/*
 * map.c — the declarative field map: XPath evaluation with provenance and
 * the transform chain.
 *
 * A job is shared read-only by the worker threads; everything mutable
 * (the XPath context, buffers) lives in the call.  Values are bounded by
 * RK_MAP_VALUE_MAX bytes: a longer value is refused with an anomaly
 * rather than cut.
 *
 * Out of memory aborts (as in record.c and job.c): the submission is
 * durable in the store and is processed again after the restart, which
 * is safer than a record with a silently missing value.
 */
#include "map.h"

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "util.h"
#include "xmlarena.h"

#define RK_MAP_VALUE_MAX (1024 * 1024)
/* Submitted values quoted in anomaly messages are cut to this many bytes. */
#define QUOTE_MAX 80

static void oom(void)
{
    rk_error("map", "out of memory; aborting");
    abort();
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = rk_strndup(s, n);
    if (!p)
        oom();
    return p;
}

static int is_empty(const char *s)
{
    return !s || !*s;
}

/* Length in bytes of the UTF-8 sequence starting at p (1 for stray bytes). */
static size_t utf8_len(const char *p)
{
    unsigned char c = (unsigned char)*p;
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
             : (c & 0xF8) == 0xF0 ? 4 : 1;
    for (size_t i = 1; i < n; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80)
            return 1;
    return n;
}

/*
 * Writes a submitted value for an anomaly message into out, cut after
 * QUOTE_MAX bytes at a character boundary and marked with "…".
 */
static void quote_value(char *out, size_t outlen, const char *v)
{
    size_t n = 0, len = strlen(v);
    while (n < len && n < QUOTE_MAX)
        n += utf8_len(v + n);
    if (n > len)
        n = len;
    snprintf(out, outlen, "%.*s%s", (int)n, v, n < len ? "…" : "");
}

/*
 * The strptime/strftime format as clerks know it: "%d.%m.%Y" becomes
 * "TT.MM.JJJJ".  Conversions without a German name stay as written.
 */
static void format_human(char *out, size_t outlen, const char *fmt)
{
    rk_buf b;
    rk_buf_init(&b, outlen ? outlen - 1 : 0);
    for (const char *p = fmt; *p; p++) {
        const char *w = NULL;
        if (*p == '%' && p[1]) {
            switch (p[1]) {
            case 'd': w = "TT"; break;
            case 'e': w = "T"; break;
            case 'm': w = "MM"; break;
            case 'Y': w = "JJJJ"; break;
            case 'y': w = "JJ"; break;
            case 'F': w = "JJJJ-MM-TT"; break;
            case 'H': w = "hh"; break;
            case 'M': w = "mm"; break;
            case 'S': w = "ss"; break;
            case '%': w = "%"; break;
            default: break;
            }
        }
        if (w) {
            if (rk_buf_append(&b, w, strlen(w)))
                break;
            p++;
        } else if (rk_buf_append(&b, p, 1)) {
            break;
        }
    }
    snprintf(out, outlen, "%s", b.data ? b.data : "");
    rk_buf_free(&b);
}

/* ---- XPath --------------------------------------------------------------- */

/* One XPath context per rk_map_apply call, with its last error. */
typedef struct xp_env {
    const rk_job *job;
    xmlDocPtr doc;
    xmlXPathContextPtr ctx;
    /* the parser put the element names into doc->dict: equal names are
     * equal pointers (compared as such in the child paths and node paths) */
    int interned;
    char err[256];
} xp_env;

/* XPath errors are collected, not printed by libxml2 on a worker thread. */
static void xp_error_cb(void *user, xmlErrorPtr e)
{
    xp_env *env = user;
    if (!env || !e || env->err[0])
        return;
    size_t n = e->message ? strlen(e->message) : 0;
    while (n && (e->message[n - 1] == '\n' || e->message[n - 1] == ' '))
        n--;
    snprintf(env->err, sizeof env->err, "%.*s", (int)n, e->message ? e->message : "");
}

/*
 * Creates the XPath context: the root element is the context node and the
 * job's namespace prefixes are registered.  0, or RK_E_FORMAT when the
 * document has no root element.
 */
/*
 * An XPath context per thread, kept between documents: a new context
 * registers every XPath function in a new hash table, which cost a
 * tenth of mapping a document.  Between documents it keeps its function
 * table; the document, node, namespaces and error state are set for
 * each one.  It has no object cache: in the daemon the objects come from
 * the document's region (xmlarena.h), where freeing costs nothing, and a
 * cache would keep them past the region's end.
 */
static pthread_key_t xp_key;
static pthread_once_t xp_once = PTHREAD_ONCE_INIT;
static int xp_key_ok;

static void xp_ctx_free(void *c) { xmlXPathFreeContext(c); }

static void xp_key_make(void) { xp_key_ok = pthread_key_create(&xp_key, xp_ctx_free) == 0; }

static int xp_open(xp_env *env, const rk_job *job, xmlDocPtr doc)
{
    memset(env, 0, sizeof *env);
    env->job = job;
    env->doc = doc;
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root)
        return RK_E_FORMAT;
    pthread_once(&xp_once, xp_key_make);
    env->ctx = xp_key_ok ? pthread_getspecific(xp_key) : NULL;
    if (env->ctx) {
        pthread_setspecific(xp_key, NULL); /* in use */
        env->ctx->doc = doc;
    } else {
        /* kept between documents, so not from a document's region; and
         * without the object cache, which would keep objects from it */
        int was_open = rk_xml_arena_pause();
        env->ctx = xmlXPathNewContext(doc);
        if (env->ctx)
            xmlXPathContextSetCache(env->ctx, 0, 0, 0);
        rk_xml_arena_resume(was_open);
        if (!env->ctx)
            oom();
    }
    /* all names or none: the parser interns them unless XML_PARSE_NODICT */
    env->interned = doc->dict && xmlDictOwns(doc->dict, root->name) == 1;
    env->ctx->node = root;
    env->ctx->contextSize = -1;
    env->ctx->proximityPosition = -1;
    env->ctx->error = xp_error_cb;
    env->ctx->userData = env;
    xmlResetError(&env->ctx->lastError);
    for (size_t i = 0; i < job->n_ns; i++)
        if (job->ns_prefixes[i] && *job->ns_prefixes[i] && job->ns_uris[i])
            xmlXPathRegisterNs(env->ctx, (const xmlChar *)job->ns_prefixes[i],
                               (const xmlChar *)job->ns_uris[i]);
    return 0;
}

static void xp_close(xp_env *env)
{
    xmlXPathContextPtr c = env->ctx;
    env->ctx = NULL;
    if (!c)
        return;
    xmlXPathRegisteredNsCleanup(c); /* the next document may be another job's */
    xmlResetError(&c->lastError);   /* its strings may be in a region */
    c->doc = NULL;
    c->node = NULL;
    c->userData = NULL;
    if (!xp_key_ok || pthread_getspecific(xp_key) || pthread_setspecific(xp_key, c) != 0)
        xmlXPathFreeContext(c);
}

/* Copies a libxml2-allocated string into malloc'd memory and frees it. */
static char *take_xml_string(xmlChar *s)
{
    if (!s)
        return NULL;
    char *p = xstrdup((const char *)s);
    xmlFree(s);
    return p;
}

/* The path of a node by local names, "/Antrag/Antragsteller/F60000000227",
 * with a position only where same-named siblings make one necessary.
 * xmlGetNodePath writes a bare star step
 * which tells a clerk nothing.  Returns a new string (caller frees). */
static char *node_path(xmlNodePtr n, int interned)
{
    /* the steps point into the document; the path is assembled once, in
     * one allocation (this runs for every field of every document) */
    struct {
        const char *name; /* "text()" for a text node */
        char at;          /* '@' for an attribute */
        int pos;          /* 0: no position needed */
    } step[64];
    size_t ns = 0, len = 1;
    for (xmlNodePtr cur = n; cur && cur->type != XML_DOCUMENT_NODE && ns < 64;
         cur = cur->parent) {
        int pos = 0;
        if (cur->type == XML_ELEMENT_NODE) {
            int total = 0;
            for (xmlNodePtr sib = cur->parent ? cur->parent->children : NULL; sib;
                 sib = sib->next) {
                if (sib->type != XML_ELEMENT_NODE ||
                    (interned ? sib->name != cur->name : !xmlStrEqual(sib->name, cur->name)))
                    continue;
                total++;
                if (sib == cur)
                    pos = total;
            }
            if (total < 2)
                pos = 0;
        } else if (cur->type != XML_ATTRIBUTE_NODE && cur->type != XML_TEXT_NODE &&
                   cur->type != XML_CDATA_SECTION_NODE) {
            continue;
        }
        int text = cur->type == XML_TEXT_NODE || cur->type == XML_CDATA_SECTION_NODE;
        step[ns].name = text ? "text()" : cur->name ? (const char *)cur->name : "?";
        step[ns].at = cur->type == XML_ATTRIBUTE_NODE ? '@' : 0;
        step[ns].pos = pos;
        len += 2 + strlen(step[ns].name) + (pos ? 13 : 0);
        ns++;
    }
    if (ns == 0)
        return NULL;
    char *out = malloc(len), *p = out;
    if (!out)
        oom();
    for (size_t i = ns; i-- > 0;) {
        *p++ = '/';
        if (step[i].at)
            *p++ = step[i].at;
        size_t l = strlen(step[i].name);
        memcpy(p, step[i].name, l);
        p += l;
        if (step[i].pos)
            p += snprintf(p, len - (size_t)(p - out), "[%d]", step[i].pos);
    }
    *p = '\0';
    return out;
}

/* ---- plain child paths ----------------------------------------------------- */

/*
 * Nearly every field of a job reads an element by a path of child steps
 * ("fs:Antragsteller/fs:F60000000227").  libxml2's XPath evaluation of
 * such a path made a new parser context, value stack and node sets for
 * each field: a fifth of the instructions of processing a document.
 * Such a path is walked here instead, with XPath 1.0's meaning: a
 * prefixed step matches element children of that namespace and local
 * name, an unprefixed one element children in no namespace; the first
 * match in document order is the depth-first first.  Any other
 * expression (predicates, axes, functions, attributes, text()) still goes
 * to libxml2, and tests/unit/test_map.c compares the two.
 */
struct rk_child_path {
    size_t n;
    struct {
        char *uri; /* NULL: no namespace */
        char *name;
    } step[];
};

/* Length of the ASCII NCName at p (0 if none starts there). */
static size_t ncname_len(const char *p)
{
    size_t n = 0;
    if (!((p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z') || p[0] == '_'))
        return 0;
    while ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= 'a' && p[n] <= 'z') ||
           (p[n] >= '0' && p[n] <= '9') || p[n] == '_' || p[n] == '-' || p[n] == '.')
        n++;
    return n;
}

void rk_child_path_free(rk_child_path *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->step[i].uri);
        free(p->step[i].name);
    }
    free(p);
}

rk_child_path *rk_child_path_compile(const rk_job *job, const char *xpath)
{
    if (!xpath || !*xpath)
        return NULL;
    size_t steps = 1;
    for (const char *c = xpath; *c; c++)
        steps += *c == '/';
    if (steps > 32)
        return NULL;
    rk_child_path *p = calloc(1, sizeof *p + steps * sizeof p->step[0]);
    if (!p)
        oom();
    for (const char *c = xpath;;) {
        size_t a = ncname_len(c), b = 0;
        if (a && c[a] == ':' && !(b = ncname_len(c + a + 1))) {
            rk_child_path_free(p);
            return NULL;
        }
        const char *local = b ? c + a + 1 : c;
        size_t llen = b ? b : a, used = b ? a + 1 + b : a;
        if (!a || (c[used] != '/' && c[used] != '\0')) {
            rk_child_path_free(p);
            return NULL; /* not a name step: XPath does it */
        }
        const char *uri = NULL;
        for (size_t i = 0; b && i < job->n_ns; i++)
            if (job->ns_prefixes[i] && strlen(job->ns_prefixes[i]) == a &&
                strncmp(job->ns_prefixes[i], c, a) == 0)
                uri = job->ns_uris[i];
        if (b && (!uri || !*uri)) {
            rk_child_path_free(p);
            return NULL; /* undeclared prefix: XPath reports it */
        }
        p->step[p->n].uri = uri ? xstrdup(uri) : NULL;
        p->step[p->n].name = xstrndup(local, llen);
        p->n++;
        if (c[used] == '\0')
            return p;
        c += used + 1;
    }
}

/* The first element in document order below parent that step i.. of p
 * reaches.  With want (the steps' names as the document's dictionary
 * holds them) names compare as pointers. */
static xmlNodePtr child_path_first(xmlNodePtr parent, const rk_child_path *p, size_t i,
                                   const xmlChar *const *want)
{
    for (xmlNodePtr c = parent->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE ||
            (want ? c->name != want[i] : !xmlStrEqual(c->name, BAD_CAST p->step[i].name)))
            continue;
        if (p->step[i].uri ? !(c->ns && xmlStrEqual(c->ns->href, BAD_CAST p->step[i].uri))
                           : c->ns != NULL)
            continue;
        if (i + 1 == p->n)
            return c;
        xmlNodePtr hit = child_path_first(c, p, i + 1, want);
        if (hit)
            return hit;
    }
    return NULL;
}

/* The string value of a node as XPath's string() gives it, without
 * libxml2's buffer for the common case of an element holding one text
 * (or CDATA) node or nothing. */
static char *string_value(xmlNodePtr n)
{
    if (n->type == XML_ELEMENT_NODE) {
        xmlNodePtr c = n->children;
        if (!c)
            return xstrdup("");
        if (!c->next && (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE))
            return xstrdup(c->content ? (const char *)c->content : "");
    }
    char *v = take_xml_string(xmlXPathCastNodeToString(n));
    return v ? v : xstrdup("");
}

/* The first element a plain child path reaches from the root, or NULL. */
static xmlNodePtr child_path_eval(const xp_env *env, const rk_child_path *p)
{
    xmlNodePtr root = xmlDocGetRootElement(env->doc);
    const xmlChar *want[16];
    if (!env->interned || p->n > sizeof want / sizeof *want)
        return child_path_first(root, p, 0, NULL);
    for (size_t i = 0; i < p->n; i++)
        if (!(want[i] = xmlDictExists(env->doc->dict, BAD_CAST p->step[i].name, -1)))
            return NULL; /* no element of the document has that name */
    return child_path_first(root, p, 0, want);
}

/*
 * Evaluates one expression (compiled if the job compiled it, else from
 * its text) against the root element.  On success returns 0 and sets
 * *value (NULL for an empty node-set) and, for a node-set, *node to the
 * path of its first node in document order; both are the caller's.
 * Returns -1 when evaluation failed (message in env->err).
 */
static int xp_eval(xp_env *env, const rk_child_path *direct, void *compiled,
                   const char *xpath, char **value, char **node)
{
    *value = NULL;
    if (node)
        *node = NULL;
    env->err[0] = '\0';
    if (direct) {
        xmlNodePtr first = child_path_eval(env, direct);
        if (first) {
            *value = string_value(first);
            if (node)
                *node = node_path(first, env->interned);
        }
        return 0;
    }
    env->ctx->node = xmlDocGetRootElement(env->doc);
    xmlXPathObjectPtr obj =
        compiled ? xmlXPathCompiledEval((xmlXPathCompExprPtr)compiled, env->ctx)
                 : xmlXPathEval((const xmlChar *)(xpath ? xpath : ""), env->ctx);
    if (!obj) {
        if (!env->err[0])
            snprintf(env->err, sizeof env->err, "Auswertung fehlgeschlagen");
        return -1;
    }
    if (obj->type == XPATH_NODESET || obj->type == XPATH_XSLT_TREE) {
        xmlNodeSetPtr ns = obj->nodesetval;
        if (ns && ns->nodeNr > 0) {
            xmlXPathNodeSetSort(ns);
            xmlNodePtr first = ns->nodeTab[0];
            *value = string_value(first);
            if (node && first->type != XML_NAMESPACE_DECL)
                *node = node_path(first, env->interned);
        }
    } else {
        *value = take_xml_string(xmlXPathCastToString(obj));
        if (!*value)
            *value = xstrdup("");
    }
    xmlXPathFreeObject(obj);
    return 0;
}

static void xp_failed(const xp_env *env, const rk_field_def *fd, const char *xpath,
                      rk_result *r)
{
    rk_warn("map", "job %s, field %s: XPath '%s' failed: %s", env->job->name,
            fd->name, xpath ? xpath : "", env->err);
    rk_result_add_anomaly(r, "XPATH_FEHLER", fd->name, RK_SEV_BLOCK,
                          "Feld %s: Der Ausdruck „%s“ der Antragsart konnte nicht "
                          "ausgewertet werden (%s).",
                          fd->name, xpath ? xpath : "", env->err);
}

/* ---- transforms ---------------------------------------------------------- */

/* Outcome of one transform step. */
enum { TX_OK = 0, TX_FAILED = 1 };

static int is_space_at(const char *p, size_t *n)
{
    if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        *n = 1;
        return 1;
    }
    if ((unsigned char)p[0] == 0xC2 && (unsigned char)p[1] == 0xA0) { /* NBSP */
        *n = 2;
        return 1;
    }
    return 0;
}

/*
 * trim: strips white space at both ends and folds inner runs into one
 * blank.  XML white space and the no-break space (common in text pasted
 * into web forms) count as white space.
 */
static char *tx_trim(const char *v)
{
    size_t len = strlen(v), o = 0, n;
    char *out = malloc(len + 1);
    if (!out)
        oom();
    int pending = 0;
    for (const char *p = v; *p;) {
        if (is_space_at(p, &n)) {
            pending = o > 0;
            p += n;
            continue;
        }
        if (pending)
            out[o++] = ' ';
        pending = 0;
        out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

/*
 * Case mapping of one code point for Latin-1 and Latin Extended-A, which
 * covers German and the names of most EU citizens.  ß has no one-letter
 * capital in common use and stays as it is.
 */
static unsigned map_case(unsigned c, int upper)
{
    if (c < 0x80) {
        if (upper && c >= 'a' && c <= 'z')
            return c - 32;
        if (!upper && c >= 'A' && c <= 'Z')
            return c + 32;
        return c;
    }
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        return upper ? c : c + 0x20;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7)
        return upper ? c - 0x20 : c;
    if (c == 0xFF)
        return upper ? 0x178 : c;
    if (c == 0x178)
        return upper ? c : 0xFF;
    /* Latin Extended-A: pairs of capital and small letter. */
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) {
        unsigned cap = c & ~1u;
        return upper ? cap : cap + 1;
    }
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) {
        unsigned cap = (c & 1u) ? c : c - 1;
        return upper ? cap : cap + 1;
    }
    return c;
}

/*
 * upper/lower: UTF-8 aware for two-byte sequences (U+0080..U+07FF); every
 * mapping above stays within two bytes, so the length never changes.
 * Other bytes are copied unchanged.
 */
static char *tx_case(const char *v, int upper)
{
    char *out = xstrdup(v);
    for (unsigned char *p = (unsigned char *)out; *p;) {
        if (*p < 0x80) {
            *p = (unsigned char)map_case(*p, upper);
            p++;
        } else if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            unsigned c = ((unsigned)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
            unsigned m = map_case(c, upper);
            if (m >= 0x80 && m < 0x800) {
                p[0] = (unsigned char)(0xC0 | (m >> 6));
                p[1] = (unsigned char)(0x80 | (m & 0x3F));
            }
            p += 2;
        } else {
            p += utf8_len((const char *)p);
        }
    }
    return out;
}

/*
 * date: parses v with strptime(in) (the whole value, white space around
 * allowed) and formats it with strftime(out).  Impossible dates such as
 * 31.02. are refused by normalising with timegm and comparing.  Returns
 * a new string or NULL when v is no date in that format.
 */
static char *tx_date(const char *v, const char *in, const char *outfmt)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_mday = 1;
    tm.tm_year = 70;
    const char *rest = strptime(v, in ? in : "%Y-%m-%d", &tm);
    if (!rest)
        return NULL;
    while (*rest == ' ' || *rest == '\t' || *rest == '\n' || *rest == '\r')
        rest++;
    if (*rest)
        return NULL;
    struct tm norm = tm;
    norm.tm_isdst = 0;
    (void)timegm(&norm); /* normalises; also fills in the weekday for %a */
    if (norm.tm_year != tm.tm_year || norm.tm_mon != tm.tm_mon ||
        norm.tm_mday != tm.tm_mday || norm.tm_hour != tm.tm_hour ||
        norm.tm_min != tm.tm_min || norm.tm_sec != tm.tm_sec)
        return NULL;
    char buf[256];
    size_t n = strftime(buf, sizeof buf, outfmt ? outfmt : "%Y-%m-%d", &norm);
    if (n == 0)
        return NULL;
    return xstrndup(buf, n);
}

/*
 * decimal: "12", "12.5", "12,5", "-3", with one optional decimal
 * separator ('.' or ',') and no thousands separators, rounded half away
 * from zero to places digits and written with point as separator.  The
 * arithmetic is done on the digit string, so no binary rounding creeps
 * in (2.675 → 2.68).  Returns NULL when v is no such number.
 */
static char *tx_decimal(const char *v, long places, const char *point)
{
    enum { MAXDIG = 60 };
    const char *p = v;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    int neg = 0;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    const char *ip = p;
    while (*p >= '0' && *p <= '9')
        p++;
    size_t il = (size_t)(p - ip);
    const char *fp = p;
    size_t fl = 0;
    if (*p == '.' || *p == ',') {
        fp = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        fl = (size_t)(p - fp);
        if (fl == 0)
            return NULL;
    }
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p || il == 0 || il > MAXDIG || fl > MAXDIG)
        return NULL;
    if (places < 0 || places > 9)
        places = 2;
    while (il > 1 && *ip == '0') { /* leading zeros */
        ip++;
        il--;
    }

    /* digits = integer part + places fraction digits, then round. */
    char dig[MAXDIG + 12];
    size_t nd = 0;
    dig[nd++] = '0'; /* room for a carry */
    memcpy(dig + nd, ip, il);
    nd += il;
    for (long i = 0; i < places; i++)
        dig[nd++] = (size_t)i < fl ? fp[i] : '0';
    if ((size_t)places < fl && fp[places] >= '5') {
        size_t i = nd;
        while (i-- > 0) {
            if (dig[i] == '9') {
                dig[i] = '0';
            } else {
                dig[i]++;
                break;
            }
        }
    }
    size_t start = dig[0] == '0' ? 1 : 0;
    int zero = 1;
    for (size_t i = start; i < nd; i++)
        zero &= dig[i] == '0';

    rk_buf b;
    rk_buf_init(&b, 256);
    size_t intdig = nd - start - (size_t)places;
    if (neg && !zero)
        rk_buf_append(&b, "-", 1);
    rk_buf_append(&b, dig + start, intdig);
    if (places > 0) {
        rk_buf_append(&b, point && *point ? point : ".", 1);
        rk_buf_append(&b, dig + start + intdig, (size_t)places);
    }
    return rk_buf_take(&b);
}

/*
 * Appends the replacement text of one match: \0..\9 name groups, "\\" is
 * a backslash, any other escaped character stands for itself.
 */
static int append_replacement(rk_buf *b, const char *with, const char *subject,
                              const regmatch_t *m, size_t nm)
{
    int rc = 0;
    for (const char *w = with ? with : ""; *w && !rc; w++) {
        if (*w == '\\' && w[1] >= '0' && w[1] <= '9') {
            size_t g = (size_t)(w[1] - '0');
            if (g < nm && m[g].rm_so >= 0)
                rc = rk_buf_append(b, subject + m[g].rm_so,
                                   (size_t)(m[g].rm_eo - m[g].rm_so));
            w++;
        } else if (*w == '\\' && w[1]) {
            rc = rk_buf_append(b, w + 1, 1);
            w++;
        } else {
            rc = rk_buf_append(b, w, 1);
        }
    }
    return rc;
}

/*
 * replace: every match of the POSIX ERE is replaced (like sed s///g: an
 * empty match right after a match is skipped, empty matches elsewhere
 * insert the replacement).  The regex_t is shared between threads;
 * regexec does not modify it.  Returns 0 with *out set, or RK_E_LIMIT
 * when the result would exceed RK_MAP_VALUE_MAX.
 */
static int tx_replace(const rk_transform *tx, const char *v, char **out)
{
    regex_t local;
    const regex_t *re = tx->compiled;
    if (!re) {
        if (regcomp(&local, tx->a ? tx->a : "", REG_EXTENDED) != 0) {
            *out = xstrdup(v);
            return 0;
        }
        re = &local;
    }
    rk_buf b;
    rk_buf_init(&b, RK_MAP_VALUE_MAX);
    regmatch_t m[10];
    const char *p = v;
    int eflags = 0, prev_nonempty = 0, rc = 0;
    while (!rc && regexec(re, p, 10, m, eflags) == 0) {
        size_t so = (size_t)m[0].rm_so, eo = (size_t)m[0].rm_eo;
        eflags = REG_NOTBOL;
        if (so == eo && so == 0 && prev_nonempty) {
            if (!*p)
                break;
            size_t n = utf8_len(p);
            rc = rk_buf_append(&b, p, n);
            p += n;
            prev_nonempty = 0;
            continue;
        }
        rc = rk_buf_append(&b, p, so);
        if (!rc)
            rc = append_replacement(&b, tx->b, p, m, 10);
        if (rc)
            break;
        if (so == eo) {
            if (!p[eo]) {
                p += eo;
                break;
            }
            size_t n = utf8_len(p + eo);
            rc = rk_buf_append(&b, p + eo, n);
            p += eo + n;
            prev_nonempty = 0;
        } else {
            p += eo;
            prev_nonempty = 1;
        }
    }
    if (!rc)
        rc = rk_buf_append(&b, p, strlen(p));
    if (re == &local)
        regfree(&local);
    if (rc) {
        rk_buf_free(&b);
        if (rc == -ENOMEM)
            oom();
        return rc;
    }
    *out = rk_buf_take(&b);
    return 0;
}

/* split: part number index (0-based) of v cut at sep; "" when out of range. */
static char *tx_split(const char *v, const char *sep, long index)
{
    size_t sl = sep ? strlen(sep) : 0;
    if (sl == 0)
        return xstrdup(index == 0 ? v : "");
    const char *p = v;
    for (long i = 0; i < index; i++) {
        const char *q = strstr(p, sep);
        if (!q)
            return xstrdup("");
        p = q + sl;
    }
    const char *q = strstr(p, sep);
    return xstrndup(p, q ? (size_t)(q - p) : strlen(p));
}

/* lookup: the table's value for key, or NULL. */
static const char *table_get(const rk_table *t, const char *key)
{
    for (size_t i = 0; t && i < t->n; i++)
        if (t->keys[i] && strcmp(t->keys[i], key) == 0)
            return t->values[i];
    return NULL;
}

/*
 * Runs fd's transform chain on value.  env may be NULL (no document):
 * concat then leaves the value as it is.  Transforms skip NULL and empty
 * values, except default.  A transform that cannot apply adds its
 * anomaly and ends the chain; the value stays as it was before that
 * step, so the clerk sees what could not be converted.  Returns a new
 * string or NULL.
 */
static char *run_chain(const rk_job *job, const rk_field_def *fd, xp_env *env,
                       const char *value, rk_result *r)
{
    char *cur = value ? xstrdup(value) : NULL;
    char q[QUOTE_MAX * 2 + 8];
    for (size_t i = 0; i < fd->n_tx; i++) {
        const rk_transform *tx = &fd->tx[i];
        char *next = NULL;
        int status = TX_OK;
        if (tx->kind != RK_TX_DEFAULT && is_empty(cur))
            continue;
        switch (tx->kind) {
        case RK_TX_TRIM:
            next = tx_trim(cur);
            break;
        case RK_TX_UPPER:
        case RK_TX_LOWER:
            next = tx_case(cur, tx->kind == RK_TX_UPPER);
            break;
        case RK_TX_DATE:
            next = tx_date(cur, tx->a, tx->b);
            if (!next) {
                char human[64];
                format_human(human, sizeof human, tx->a ? tx->a : "%Y-%m-%d");
                quote_value(q, sizeof q, cur);
                rk_result_add_anomaly(r, "DATUM_UNGUELTIG", fd->name, RK_SEV_BLOCK,
                                      "Feld %s: „%s“ ist kein gültiges Datum im Format %s.",
                                      fd->name, q, human);
                status = TX_FAILED;
            }
            break;
        case RK_TX_DECIMAL:
            next = tx_decimal(cur, tx->n, tx->a);
            if (!next) {
                quote_value(q, sizeof q, cur);
                rk_result_add_anomaly(r, "ZAHL_UNGUELTIG", fd->name, RK_SEV_BLOCK,
                                      "Feld %s: „%s“ ist keine gültige Zahl.", fd->name, q);
                status = TX_FAILED;
            }
            break;
        case RK_TX_CONCAT: {
            if (!env)
                continue;
            char *other = NULL;
            if (xp_eval(env, tx->direct, tx->compiled, tx->a, &other, NULL) != 0) {
                xp_failed(env, fd, tx->a, r);
                status = TX_FAILED;
                break;
            }
            if (is_empty(other)) {
                free(other);
                continue;
            }
            rk_buf b;
            rk_buf_init(&b, RK_MAP_VALUE_MAX);
            const char *sep = tx->b ? tx->b : " ";
            int rc = rk_buf_appendf(&b, "%s%s%s", cur, sep, other);
            free(other);
            if (rc == RK_E_LIMIT) {
                rk_result_add_anomaly(r, "WERT_ZU_LANG", fd->name, RK_SEV_BLOCK,
                                      "Feld %s: Der Wert ist länger als %d Bytes.", fd->name,
                                      RK_MAP_VALUE_MAX);
                status = TX_FAILED;
            } else if (rc) {
                oom();
            } else {
                next = rk_buf_take(&b);
            }
            rk_buf_free(&b);
            break;
        }
        case RK_TX_DEFAULT:
            if (!is_empty(cur))
                continue;
            next = xstrdup(tx->a ? tx->a : "");
            break;
        case RK_TX_LOOKUP: {
            const char *hit = table_get(rk_job_table(job, tx->a), cur);
            if (hit) {
                next = xstrdup(hit);
            } else if (tx->n) {
                quote_value(q, sizeof q, cur);
                rk_result_add_anomaly(r, "WERT_UNBEKANNT", fd->name, RK_SEV_BLOCK,
                                      "Feld %s: Der Wert „%s“ ist in der Tabelle %s nicht "
                                      "vorhanden.",
                                      fd->name, q, tx->a ? tx->a : "");
                status = TX_FAILED;
            } else {
                continue; /* not strict: the value is kept */
            }
            break;
        }
        case RK_TX_CODELIST: {
            const rk_codelist *cl = rk_job_codelist(job, tx->a);
            const char *hit = cl ? rk_codelist_lookup(cl, cur, tx->b) : NULL;
            if (hit) {
                next = xstrdup(hit);
            } else {
                quote_value(q, sizeof q, cur);
                rk_result_add_anomaly(r, "CODE_UNBEKANNT", fd->name, RK_SEV_BLOCK,
                                      "Feld %s: Der Schlüssel „%s“ ist in der Codeliste %s "
                                      "nicht vorhanden.",
                                      fd->name, q, tx->a ? tx->a : "");
                status = TX_FAILED;
            }
            break;
        }
        case RK_TX_REPLACE:
            if (tx_replace(tx, cur, &next) != 0) {
                rk_result_add_anomaly(r, "WERT_ZU_LANG", fd->name, RK_SEV_BLOCK,
                                      "Feld %s: Der Wert ist länger als %d Bytes.", fd->name,
                                      RK_MAP_VALUE_MAX);
                status = TX_FAILED;
            }
            break;
        case RK_TX_SPLIT:
            next = tx_split(cur, tx->a, tx->n);
            break;
        }
        if (status == TX_FAILED) {
            free(next);
            break;
        }
        free(cur);
        cur = next;
    }
    return cur;
}

/*
 * Runs the transform chain of fd on value, for the map and for a clerk's
 * correction in review.  doc may be NULL when the chain has no concat
 * (with a NULL doc a concat step leaves the value unchanged).  Returns a
 * new string (caller frees) or NULL; anomalies go to r.
 */
char *rk_map_transform(const rk_job *job, const rk_field_def *fd, xmlDocPtr doc,
                       const char *value, rk_result *r)
{
    xp_env env;
    int have_env = 0;
    for (size_t i = 0; doc && i < fd->n_tx; i++)
        if (fd->tx[i].kind == RK_TX_CONCAT) {
            have_env = xp_open(&env, job, doc) == 0;
            break;
        }
    char *out = run_chain(job, fd, have_env ? &env : NULL, value, r);
    if (have_env)
        xp_close(&env);
    return out;
}

/*
 * Maps doc with job's field map into r: per field, the XPath value of the
 * root element (source), the transformed value, the expression and the
 * node path (provenance).  One XPath context serves all fields of the
 * call.  Returns 0, or RK_E_FORMAT when doc has no root element.
 */
int rk_map_apply(const rk_job *job, xmlDocPtr doc, rk_result *r)
{
    xp_env env;
    int rc = xp_open(&env, job, doc);
    if (rc)
        return rc;
    if (job->n_fields) {
        rk_mapped_field *grown =
            realloc(r->fields, (r->n_fields + job->n_fields) * sizeof *grown);
        if (!grown)
            oom();
        r->fields = grown;
    }
    for (size_t i = 0; i < job->n_fields; i++) {
        const rk_field_def *fd = &job->fields[i];
        char *source = NULL, *node = NULL, *value = NULL;
        if (xp_eval(&env, fd->direct, fd->compiled, fd->xpath, &source, &node) != 0) {
            xp_failed(&env, fd, fd->xpath, r);
        } else if (source && strlen(source) > RK_MAP_VALUE_MAX) {
            rk_result_add_anomaly(r, "WERT_ZU_LANG", fd->name, RK_SEV_BLOCK,
                                  "Feld %s: Der Wert ist länger als %d Bytes.", fd->name,
                                  RK_MAP_VALUE_MAX);
            free(source);
            source = NULL;
        } else {
            value = run_chain(job, fd, &env, source, r);
        }
        rk_mapped_field *mf = &r->fields[r->n_fields++];
        mf->name = xstrdup(fd->name);
        mf->value = value;
        mf->source = source;
        mf->xpath = xstrdup(fd->xpath ? fd->xpath : "");
        mf->node = node;
    }
    xp_close(&env);
    return 0;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

/*
 * Parses "YYYY-MM-DD" or "TT.MM.JJJJ" (exactly these digit counts, white
 * space around allowed) into y/m/d.  0 on success, -1 when s is no valid
 * calendar date.
 */
int rk_date_parse(const char *s, int *y, int *m, int *d)
{
    if (!s)
        return -1;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n != 10)
        return -1;
    int yy, mm, dd;
    if (s[4] == '-' && s[7] == '-' && all_digits(s, 4) && all_digits(s + 5, 2) &&
        all_digits(s + 8, 2)) {
        yy = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
        mm = (s[5] - '0') * 10 + (s[6] - '0');
        dd = (s[8] - '0') * 10 + (s[9] - '0');
    } else if (s[2] == '.' && s[5] == '.' && all_digits(s, 2) && all_digits(s + 3, 2) &&
               all_digits(s + 6, 4)) {
        dd = (s[0] - '0') * 10 + (s[1] - '0');
        mm = (s[3] - '0') * 10 + (s[4] - '0');
        yy = (s[6] - '0') * 1000 + (s[7] - '0') * 100 + (s[8] - '0') * 10 + (s[9] - '0');
    } else {
        return -1;
    }
    if (yy < 1 || mm < 1 || mm > 12 || dd < 1 || dd > days_in_month(yy, mm))
        return -1;
    if (y)
        *y = yy;
    if (m)
        *m = mm;
    if (d)
        *d = dd;
    return 0;
}
