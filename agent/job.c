/*
 * job.c — see job.h.
 *
 * A job file is parsed with the network off, validated against
 * schemas/rekey-job.xsd (compiled once per process), and then walked into
 * an rk_job.  Everything that can be checked at load is checked here:
 * XPath syntax and namespace prefixes, regular expressions, references to
 * tables, code lists and fields, ${var} substitution.  A job that loads is
 * one that can run.
 */
#include "job.h"
#include "map.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "util.h"

#define JOB_NS "urn:rekey:job:1"
#define GC_MAX_FILE (8u << 20)

/* ---- libxml2 set-up ---------------------------------------------------- */

static xmlExternalEntityLoader default_loader;

/* Refuses every URL that is not a local file: parsers never touch the
 * network, whatever a document or schema asks for. */
static xmlParserInputPtr safe_loader(const char *url, const char *id,
                                     xmlParserCtxtPtr ctxt)
{
    if (url && strstr(url, "://") && strncmp(url, "file://", 7) != 0) {
        rk_warn("xml", "refused to load external resource over the network");
        return NULL;
    }
    return default_loader(url, id, ctxt);
}

/* libxml2 prints stray warnings to stderr unless told otherwise; every
 * error that matters is collected through a structured handler. */
static void quiet(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init_once(void)
{
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, quiet);
    default_loader = xmlGetExternalEntityLoader();
    xmlSetExternalEntityLoader(safe_loader);
}

void rk_xml_init(void) { pthread_once(&xml_once, xml_init_once); }

/* ---- error collection -------------------------------------------------- */

typedef struct errctx {
    char *buf;
    size_t len;
    int count;
} errctx;

static void err_add(errctx *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_add(errctx *e, const char *fmt, ...)
{
    if (e->count++ > 0 || !e->len)
        return; /* the first error is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->buf, e->len, fmt, ap);
    va_end(ap);
}

/* libxml2 structured error → "file:line: message" (first one only). */
static void xml_err(void *ctx, xmlErrorPtr xe)
{
    errctx *e = ctx;
    if (!xe || xe->level < XML_ERR_ERROR)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", xe->message ? xe->message : "error");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    err_add(e, "%s:%d: %s", xe->file ? xe->file : "?", xe->line, msg);
}

/* ---- the job schema ---------------------------------------------------- */

static pthread_mutex_t schema_lock = PTHREAD_MUTEX_INITIALIZER;
static xmlSchemaPtr job_schema;
static char job_schema_path[PATH_MAX];

/* Where schemas/rekey-job.xsd is: REKEY_JOB_SCHEMA, else beside the
 * binary's tree (<exe>/../schemas/), else an installed tree
 * (<exe>/../share/rekey/schemas/), else ./schemas/. */
static void find_job_schema(void)
{
    const char *env = getenv("REKEY_JOB_SCHEMA");
    if (env && *env) {
        snprintf(job_schema_path, sizeof job_schema_path, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            /* a path cut short by snprintf simply fails access() */
            if (snprintf(job_schema_path, sizeof job_schema_path,
                         "%s/../schemas/rekey-job.xsd", exe) > 0 &&
                access(job_schema_path, R_OK) == 0)
                return;
            if (snprintf(job_schema_path, sizeof job_schema_path,
                         "%s/../../schemas/rekey-job.xsd", exe) > 0 &&
                access(job_schema_path, R_OK) == 0)
                return;
            /* installed: PREFIX/{s,}bin and PREFIX/share/rekey/schemas */
            if (snprintf(job_schema_path, sizeof job_schema_path,
                         "%s/../share/rekey/schemas/rekey-job.xsd", exe) > 0 &&
                access(job_schema_path, R_OK) == 0)
                return;
        }
    }
    snprintf(job_schema_path, sizeof job_schema_path, "schemas/rekey-job.xsd");
}

static xmlSchemaPtr compile_schema(const char *path, errctx *e)
{
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(path);
    if (!pc) {
        err_add(e, "%s: cannot read schema", path);
        return NULL;
    }
    xmlSchemaSetParserStructuredErrors(pc, xml_err, e);
    xmlSchemaPtr sc = xmlSchemaParse(pc);
    xmlSchemaFreeParserCtxt(pc);
    if (!sc && e->count == 0)
        err_add(e, "%s: not a usable XML Schema", path);
    return sc;
}

static xmlSchemaPtr get_job_schema(errctx *e)
{
    pthread_mutex_lock(&schema_lock);
    if (!job_schema) {
        find_job_schema();
        job_schema = compile_schema(job_schema_path, e);
    }
    xmlSchemaPtr s = job_schema;
    pthread_mutex_unlock(&schema_lock);
    return s;
}

/* ---- small helpers ----------------------------------------------------- */

static int is_job_el(xmlNodePtr n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns &&
           strcmp((const char *)n->ns->href, JOB_NS) == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

static char *attr(xmlNodePtr n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    if (!v)
        return NULL;
    char *s = strdup((const char *)v);
    xmlFree(v);
    return s;
}

static char *text_of(xmlNodePtr n)
{
    xmlChar *v = xmlNodeGetContent(n);
    char *s = strdup(v ? (const char *)v : "");
    xmlFree(v);
    return s;
}

/* Path of href relative to the folder of base (absolute hrefs stay). */
static char *resolve_rel(const char *base, const char *href)
{
    if (href[0] == '/')
        return strdup(href);
    const char *slash = strrchr(base, '/');
    size_t dl = slash ? (size_t)(slash - base) : 1;
    const char *dir = slash ? base : ".";
    size_t n = dl + 1 + strlen(href) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%.*s/%s", (int)dl, dir, href);
    return p;
}

static void *grow(void *p, size_t n, size_t size)
{
    void *q = realloc(p, (n + 1) * size);
    if (!q)
        abort(); /* out of memory while loading configuration */
    memset((char *)q + n * size, 0, size);
    return q;
}

/* ${name} and ${env:NAME} substitution; unknown names are errors. */
static char *substitute(const char *in, const rk_vars *vars, const char *file, int line,
                        errctx *e)
{
    rk_buf b;
    rk_buf_init(&b, 65536);
    const char *p = in;
    while (*p) {
        const char *d = strstr(p, "${");
        if (!d) {
            rk_buf_append(&b, p, strlen(p));
            break;
        }
        rk_buf_append(&b, p, (size_t)(d - p));
        const char *end = strchr(d, '}');
        if (!end) {
            err_add(e, "%s:%d: unterminated ${ in connector setting", file, line);
            rk_buf_free(&b);
            return NULL;
        }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(end - d - 2), d + 2);
        const char *val = NULL;
        if (strncmp(name, "env:", 4) == 0) {
            val = getenv(name + 4);
        } else if (vars) {
            for (size_t i = 0; i < vars->n; i++)
                if (strcmp(vars->names[i], name) == 0)
                    val = vars->values[i];
        }
        if (!val) {
            err_add(e, "%s:%d: ${%s} is not defined (set it in the [vars] section of the "
                       "rekeyd configuration%s)",
                    file, line, name, strncmp(name, "env:", 4) == 0 ? " or the environment" : "");
            rk_buf_free(&b);
            return NULL;
        }
        rk_buf_append(&b, val, strlen(val));
        p = end + 1;
    }
    return rk_buf_take(&b);
}

/* ---- genericode -------------------------------------------------------- */

static xmlNodePtr child_named(xmlNodePtr n, const char *local)
{
    for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, local) == 0)
            return c;
    return NULL;
}

/* Loads an OASIS genericode 1.0 file: identification, columns, rows. */
static int load_codelist(rk_codelist *cl, const char *path, errctx *e)
{
    char *data;
    size_t len;
    int rc = rk_read_file(path, GC_MAX_FILE, &data, &len);
    if (rc) {
        err_add(e, "%s: cannot read code list: %s", path, rk_strerror(rc));
        return rc;
    }
    xmlParserCtxtPtr pc = xmlNewParserCtxt();
    xmlDocPtr doc = pc ? xmlCtxtReadMemory(pc, data, (int)len, path, NULL,
                                           XML_PARSE_NONET | XML_PARSE_NOERROR |
                                               XML_PARSE_NOWARNING)
                       : NULL;
    free(data);
    if (!doc) {
        xmlErrorPtr xe = pc ? xmlCtxtGetLastError(pc) : NULL;
        err_add(e, "%s:%d: code list is not well-formed XML", path, xe ? xe->line : 0);
        xmlFreeParserCtxt(pc);
        return RK_E_CONFIG;
    }
    xmlFreeParserCtxt(pc);
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlNodePtr ident = child_named(root, "Identification");
    xmlNodePtr cols = child_named(root, "ColumnSet");
    xmlNodePtr list = child_named(root, "SimpleCodeList");
    if (!root || strcmp((const char *)root->name, "CodeList") != 0 || !cols || !list) {
        err_add(e, "%s: not a genericode code list (CodeList with ColumnSet and "
                   "SimpleCodeList expected)", path);
        xmlFreeDoc(doc);
        return RK_E_CONFIG;
    }
    xmlNodePtr u = child_named(ident, "CanonicalUri");
    xmlNodePtr v = child_named(ident, "Version");
    cl->uri = u ? text_of(u) : NULL;
    cl->version = v ? text_of(v) : NULL;
    for (xmlNodePtr c = cols->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "Column") != 0)
            continue;
        cl->columns = grow(cl->columns, cl->n_columns, sizeof *cl->columns);
        cl->columns[cl->n_columns++] = attr(c, "Id");
    }
    if (cl->n_columns == 0) {
        err_add(e, "%s: code list declares no columns", path);
        xmlFreeDoc(doc);
        return RK_E_CONFIG;
    }
    for (xmlNodePtr r = list->children; r; r = r->next) {
        if (r->type != XML_ELEMENT_NODE || strcmp((const char *)r->name, "Row") != 0)
            continue;
        size_t base = cl->n_rows * cl->n_columns;
        char **cells = realloc(cl->cells, (base + cl->n_columns) * sizeof *cells);
        if (!cells)
            abort();
        cl->cells = cells;
        memset(cells + base, 0, cl->n_columns * sizeof *cells);
        size_t pos = 0;
        for (xmlNodePtr val = r->children; val; val = val->next) {
            if (val->type != XML_ELEMENT_NODE || strcmp((const char *)val->name, "Value") != 0)
                continue;
            char *ref = attr(val, "ColumnRef");
            size_t col = pos;
            if (ref) {
                for (size_t k = 0; k < cl->n_columns; k++)
                    if (cl->columns[k] && strcmp(cl->columns[k], ref) == 0)
                        col = k;
                free(ref);
            }
            xmlNodePtr sv = child_named(val, "SimpleValue");
            if (col < cl->n_columns && sv && !cells[base + col])
                cells[base + col] = text_of(sv);
            pos++;
        }
        cl->n_rows++;
    }
    xmlFreeDoc(doc);
    return 0;
}

/* ---- parts of a job ---------------------------------------------------- */

typedef struct loadctx {
    rk_job *job;
    const char *file;
    errctx *e;
    xmlXPathContextPtr trial; /* for trial evaluation of XPaths */
} loadctx;

/* Compiles an XPath and evaluates it once on an empty document, which
 * catches undefined namespace prefixes and unknown functions at load. */
static void *compile_xpath(loadctx *lc, const char *expr, int line)
{
    xmlXPathCompExprPtr c = xmlXPathCtxtCompile(lc->trial, (const xmlChar *)expr);
    if (!c) {
        err_add(lc->e, "%s:%d: invalid XPath expression '%s'", lc->file, line, expr);
        return NULL;
    }
    xmlXPathObjectPtr r = xmlXPathCompiledEval(c, lc->trial);
    if (!r) {
        err_add(lc->e, "%s:%d: XPath '%s' cannot be evaluated (undeclared namespace "
                       "prefix? prefixes must be declared on <job>)", lc->file, line, expr);
        xmlXPathFreeCompExpr(c);
        return NULL;
    }
    xmlXPathFreeObject(r);
    return c;
}

static void *compile_regex(loadctx *lc, const char *pat, int anchored, int line)
{
    regex_t *re = malloc(sizeof *re);
    if (!re)
        abort();
    char *full = NULL;
    if (anchored) {
        size_t n = strlen(pat) + 5;
        full = malloc(n);
        if (!full)
            abort();
        snprintf(full, n, "^(%s)$", pat);
    }
    int rc = regcomp(re, full ? full : pat, REG_EXTENDED | (anchored ? REG_NOSUB : 0));
    free(full);
    if (rc) {
        char msg[128];
        regerror(rc, re, msg, sizeof msg);
        err_add(lc->e, "%s:%d: invalid regular expression '%s': %s", lc->file, line, pat, msg);
        free(re);
        return NULL;
    }
    return re;
}

static int has_field(const rk_job *job, const char *name)
{
    for (size_t i = 0; i < job->n_fields; i++)
        if (strcmp(job->fields[i].name, name) == 0)
            return 1;
    return 0;
}

static void parse_transform(loadctx *lc, rk_field_def *fd, xmlNodePtr t)
{
    static const struct {
        const char *name;
        rk_transform_kind kind;
    } kinds[] = {{"trim", RK_TX_TRIM},       {"upper", RK_TX_UPPER},
                 {"lower", RK_TX_LOWER},     {"date", RK_TX_DATE},
                 {"decimal", RK_TX_DECIMAL}, {"concat", RK_TX_CONCAT},
                 {"default", RK_TX_DEFAULT}, {"lookup", RK_TX_LOOKUP},
                 {"codelist", RK_TX_CODELIST}, {"replace", RK_TX_REPLACE},
                 {"split", RK_TX_SPLIT}};
    int line = (int)xmlGetLineNo(t);
    fd->tx = grow(fd->tx, fd->n_tx, sizeof *fd->tx);
    rk_transform *tx = &fd->tx[fd->n_tx++];
    tx->line = line;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp((const char *)t->name, kinds[i].name) == 0)
            tx->kind = kinds[i].kind;
    char *tmp;
    switch (tx->kind) {
    case RK_TX_DATE:
        tx->a = attr(t, "in");
        tx->b = attr(t, "out");
        if (!tx->a)
            tx->a = strdup("%Y-%m-%d");
        if (!tx->b)
            tx->b = strdup("%Y-%m-%d");
        break;
    case RK_TX_DECIMAL:
        tmp = attr(t, "places");
        tx->n = tmp ? strtol(tmp, NULL, 10) : 2;
        free(tmp);
        tx->a = attr(t, "point");
        if (!tx->a)
            tx->a = strdup(".");
        break;
    case RK_TX_CONCAT:
        tx->a = attr(t, "from");
        tx->b = attr(t, "separator");
        if (!tx->b)
            tx->b = strdup(" ");
        tx->compiled = compile_xpath(lc, tx->a, line);
        if (tx->compiled)
            tx->direct = rk_child_path_compile(lc->job, tx->a);
        break;
    case RK_TX_DEFAULT:
        tx->a = attr(t, "value");
        break;
    case RK_TX_LOOKUP:
        tx->a = attr(t, "table");
        tmp = attr(t, "strict");
        tx->n = !tmp || strcmp(tmp, "true") == 0 || strcmp(tmp, "1") == 0;
        free(tmp);
        if (!rk_job_table(lc->job, tx->a))
            err_add(lc->e, "%s:%d: lookup names table '%s', which the job does not define",
                    lc->file, line, tx->a);
        break;
    case RK_TX_CODELIST: {
        tx->a = attr(t, "list");
        tx->b = attr(t, "column");
        const rk_codelist *cl = rk_job_codelist(lc->job, tx->a);
        if (!cl) {
            err_add(lc->e, "%s:%d: codelist transform names list '%s', which the job does "
                           "not declare with <codelist>", lc->file, line, tx->a);
        } else if (tx->b) {
            int found = 0;
            for (size_t i = 0; i < cl->n_columns; i++)
                found |= cl->columns[i] && strcmp(cl->columns[i], tx->b) == 0;
            if (!found)
                err_add(lc->e, "%s:%d: code list '%s' has no column '%s'", lc->file, line,
                        tx->a, tx->b);
        } else if (cl->n_columns < 2) {
            err_add(lc->e, "%s:%d: code list '%s' has only one column; name one with column=",
                    lc->file, line, tx->a);
        }
        break;
    }
    case RK_TX_REPLACE:
        tx->a = attr(t, "pattern");
        tx->b = attr(t, "with");
        tx->compiled = compile_regex(lc, tx->a, 0, line);
        break;
    case RK_TX_SPLIT:
        tx->a = attr(t, "separator");
        tmp = attr(t, "index");
        tx->n = tmp ? strtol(tmp, NULL, 10) : 0;
        free(tmp);
        break;
    default:
        break;
    }
}

/* Parses the check attribute of a rule ("age-at-least 14", ...). */
static void parse_rule(loadctx *lc, xmlNodePtr n)
{
    rk_job *job = lc->job;
    int line = (int)xmlGetLineNo(n);
    job->rules = grow(job->rules, job->n_rules, sizeof *job->rules);
    rk_rule *r = &job->rules[job->n_rules++];
    r->line = line;
    r->code = attr(n, "code");
    r->field = attr(n, "field");
    char *sev = attr(n, "severity");
    r->severity = sev && strcmp(sev, "warn") == 0 ? RK_SEV_WARN : RK_SEV_BLOCK;
    free(sev);
    r->message = text_of(n);
    /* trim the message */
    char *m = r->message;
    size_t ml = strlen(m);
    while (ml && (m[ml - 1] == ' ' || m[ml - 1] == '\n' || m[ml - 1] == '\t'))
        m[--ml] = '\0';
    size_t lead = strspn(m, " \n\t");
    memmove(m, m + lead, ml - lead + 1);

    char *check = attr(n, "check");
    char *sp = strchr(check, ' ');
    const char *rest = sp ? sp + 1 : "";
    if (sp)
        *sp = '\0';
    if (strcmp(check, "required") == 0) {
        r->kind = RK_RULE_REQUIRED;
    } else if (strcmp(check, "not-future") == 0) {
        r->kind = RK_RULE_NOT_FUTURE;
    } else if (strcmp(check, "pattern") == 0) {
        r->kind = RK_RULE_PATTERN;
        r->arg = strdup(rest);
        r->compiled = compile_regex(lc, rest, 1, line);
    } else if (strcmp(check, "range") == 0) {
        r->kind = RK_RULE_RANGE;
        char lo[64], hi[64];
        char *end1, *end2;
        if (sscanf(rest, "%63s %63s", lo, hi) == 2) {
            for (char *c = lo; *c; c++)
                if (*c == ',')
                    *c = '.';
            for (char *c = hi; *c; c++)
                if (*c == ',')
                    *c = '.';
            r->num[0] = strtod(lo, &end1);
            r->num[1] = strtod(hi, &end2);
            if (*end1 || *end2 || r->num[0] > r->num[1])
                err_add(lc->e, "%s:%d: range needs two numbers LO HI with LO <= HI", lc->file,
                        line);
        }
    } else if (strcmp(check, "age-at-least") == 0) {
        r->kind = RK_RULE_AGE_AT_LEAST;
        r->num[0] = strtod(rest, NULL);
    } else if (strcmp(check, "one-of") == 0) {
        r->kind = RK_RULE_ONE_OF;
        r->arg = strdup(rest);
    } else if (strcmp(check, "fee") == 0) {
        r->kind = RK_RULE_FEE;
        char table[64], key[64];
        if (sscanf(rest, "%63s %63s", table, key) == 2) {
            r->arg = strdup(table);
            r->field2 = strdup(key);
            if (!rk_job_table(job, table))
                err_add(lc->e, "%s:%d: fee rule names table '%s', which the job does not "
                               "define", lc->file, line, table);
            else if (!has_field(job, key))
                err_add(lc->e, "%s:%d: fee rule names key field '%s', which the map does "
                               "not define", lc->file, line, key);
        }
    } else if (strcmp(check, "duplicate") == 0) {
        r->kind = RK_RULE_DUPLICATE;
        char *copy = strdup(rest);
        char *save = NULL;
        char *tok = strtok_r(copy, " ", &save);
        r->num[0] = tok ? strtod(tok, NULL) : 0;
        while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
            r->keys = grow(r->keys, r->n_keys, sizeof *r->keys);
            r->keys[r->n_keys++] = strdup(tok);
            if (!has_field(job, tok))
                err_add(lc->e, "%s:%d: duplicate rule names field '%s', which the map does "
                               "not define", lc->file, line, tok);
        }
        free(copy);
    }
    free(check);
    if (r->kind != RK_RULE_DUPLICATE && !r->field)
        err_add(lc->e, "%s:%d: rule %s needs field=", lc->file, line, r->code);
    else if (r->field && !has_field(job, r->field))
        err_add(lc->e, "%s:%d: rule %s names field '%s', which the map does not define",
                lc->file, line, r->code, r->field);
}

/* ---- the job ----------------------------------------------------------- */

static void free_job(rk_job *job)
{
    if (!job)
        return;
    free(job->path);
    free(job->name);
    free(job->title);
    free(job->root_ns);
    free(job->root_name);
    free(job->schema_path);
    if (job->schema)
        xmlSchemaFree(job->schema);
    for (size_t i = 0; i < job->n_ns; i++) {
        free(job->ns_prefixes[i]);
        free(job->ns_uris[i]);
    }
    free(job->ns_prefixes);
    free(job->ns_uris);
    for (size_t i = 0; i < job->n_fields; i++) {
        rk_field_def *f = &job->fields[i];
        free(f->name);
        free(f->xpath);
        if (f->compiled)
            xmlXPathFreeCompExpr(f->compiled);
        rk_child_path_free(f->direct);
        for (size_t k = 0; k < f->n_tx; k++) {
            rk_transform *t = &f->tx[k];
            rk_child_path_free(t->direct);
            if (t->compiled && t->kind == RK_TX_CONCAT)
                xmlXPathFreeCompExpr(t->compiled);
            if (t->compiled && t->kind == RK_TX_REPLACE) {
                regfree(t->compiled);
                free(t->compiled);
            }
            free(t->a);
            free(t->b);
        }
        free(f->tx);
    }
    free(job->fields);
    for (size_t i = 0; i < job->n_rules; i++) {
        rk_rule *r = &job->rules[i];
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
    free(job->rules);
    for (size_t i = 0; i < job->n_tables; i++) {
        rk_table *t = &job->tables[i];
        for (size_t k = 0; k < t->n; k++) {
            free(t->keys[k]);
            free(t->values[k]);
        }
        free(t->keys);
        free(t->values);
        free(t->name);
    }
    free(job->tables);
    for (size_t i = 0; i < job->n_codelists; i++) {
        rk_codelist *c = &job->codelists[i];
        free(c->name);
        free(c->uri);
        free(c->version);
        for (size_t k = 0; k < c->n_columns; k++)
            free(c->columns[k]);
        free(c->columns);
        for (size_t k = 0; k < c->n_rows * c->n_columns; k++)
            free(c->cells[k]);
        free(c->cells);
    }
    free(job->codelists);
    for (size_t c = 0; c < job->n_connectors; c++) {
        rk_job_connector *jc = &job->connectors[c];
        free(jc->name);
        free(jc->plugin);
        for (size_t i = 0; i < jc->n_settings; i++) {
            free(jc->settings[i].key);
            free(jc->settings[i].value);
        }
        free(jc->settings);
    }
    free(job->connectors);
    free(job->reference);
    free(job);
}

static pthread_mutex_t ref_lock = PTHREAD_MUTEX_INITIALIZER;

void rk_job_ref(rk_job *job)
{
    pthread_mutex_lock(&ref_lock);
    job->refs++;
    pthread_mutex_unlock(&ref_lock);
}

void rk_job_unref(rk_job *job)
{
    if (!job)
        return;
    pthread_mutex_lock(&ref_lock);
    int left = --job->refs;
    pthread_mutex_unlock(&ref_lock);
    if (left == 0)
        free_job(job);
}

const rk_table *rk_job_table(const rk_job *job, const char *name)
{
    for (size_t i = 0; name && i < job->n_tables; i++)
        if (strcmp(job->tables[i].name, name) == 0)
            return &job->tables[i];
    return NULL;
}

const rk_codelist *rk_job_codelist(const rk_job *job, const char *name)
{
    for (size_t i = 0; name && i < job->n_codelists; i++)
        if (strcmp(job->codelists[i].name, name) == 0)
            return &job->codelists[i];
    return NULL;
}

const char *rk_codelist_lookup(const rk_codelist *cl, const char *code, const char *column)
{
    size_t col = 1;
    if (column) {
        col = cl->n_columns;
        for (size_t i = 0; i < cl->n_columns; i++)
            if (cl->columns[i] && strcmp(cl->columns[i], column) == 0)
                col = i;
    }
    if (!code || col >= cl->n_columns)
        return NULL;
    for (size_t r = 0; r < cl->n_rows; r++) {
        const char *key = cl->cells[r * cl->n_columns];
        if (key && strcmp(key, code) == 0)
            return cl->cells[r * cl->n_columns + col];
    }
    return NULL;
}

/* A duration attribute ("3d", schema-checked) in ms; 0 when absent. */
static int64_t duration_attr(xmlNodePtr n, const char *name)
{
    char *v = attr(n, name);
    if (!v)
        return 0;
    char *end;
    long long k = strtoll(v, &end, 10);
    int64_t unit = *end == 's' ? 1000 : *end == 'm' ? 60000 : *end == 'h' ? 3600000
                 : *end == 'd' ? 86400000LL : *end == 'w' ? 7 * 86400000LL : 0;
    free(v);
    return (int64_t)k * unit;
}

/* Walks a schema-valid job document into job. */
static void build_job(loadctx *lc, xmlNodePtr root, const rk_vars *vars)
{
    rk_job *job = lc->job;
    job->name = attr(root, "name");
    char *ver = attr(root, "version");
    job->version = ver ? strtol(ver, NULL, 10) : 1;
    free(ver);
    for (xmlNsPtr ns = root->nsDef; ns; ns = ns->next) {
        if (!ns->prefix)
            continue;
        job->ns_prefixes = grow(job->ns_prefixes, job->n_ns, sizeof(char *));
        job->ns_uris = grow(job->ns_uris, job->n_ns, sizeof(char *));
        job->ns_prefixes[job->n_ns] = strdup((const char *)ns->prefix);
        job->ns_uris[job->n_ns] = strdup((const char *)ns->href);
        job->n_ns++;
        xmlXPathRegisterNs(lc->trial, ns->prefix, ns->href);
    }
    for (xmlNodePtr n = root->children; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        int line = (int)xmlGetLineNo(n);
        if (is_job_el(n, "title")) {
            job->title = text_of(n);
        } else if (is_job_el(n, "match")) {
            char *q = attr(n, "root");
            char *colon = strchr(q, ':');
            if (colon) {
                *colon = '\0';
                xmlNsPtr ns = xmlSearchNs(n->doc, n, (const xmlChar *)q);
                if (!ns)
                    err_add(lc->e, "%s:%d: prefix '%s' of match root is not declared",
                            lc->file, line, q);
                job->root_ns = strdup(ns ? (const char *)ns->href : "");
                job->root_name = strdup(colon + 1);
            } else {
                job->root_ns = strdup("");
                job->root_name = strdup(q);
            }
            free(q);
        } else if (is_job_el(n, "schema")) {
            char *href = attr(n, "href");
            job->schema_path = resolve_rel(lc->file, href);
            free(href);
            if (lc->e->count == 0) {
                /* the schema's own error names the XSD; say which job
                 * file and line asked for it */
                char why[700] = "";
                errctx se = {why, sizeof why, 0};
                job->schema = compile_schema(job->schema_path, &se);
                if (!job->schema)
                    err_add(lc->e, "%s:%d: cannot use the schema %s: %s", lc->file, line,
                            job->schema_path, why[0] ? why : "not a usable XML Schema");
            }
        } else if (is_job_el(n, "codelist")) {
            job->codelists = grow(job->codelists, job->n_codelists, sizeof *job->codelists);
            rk_codelist *cl = &job->codelists[job->n_codelists++];
            cl->name = attr(n, "name");
            char *href = attr(n, "href");
            char *path = resolve_rel(lc->file, href);
            load_codelist(cl, path, lc->e);
            free(href);
            free(path);
        } else if (is_job_el(n, "table")) {
            job->tables = grow(job->tables, job->n_tables, sizeof *job->tables);
            rk_table *t = &job->tables[job->n_tables++];
            t->name = attr(n, "name");
            for (xmlNodePtr e = n->children; e; e = e->next) {
                if (!is_job_el(e, "entry"))
                    continue;
                t->keys = grow(t->keys, t->n, sizeof(char *));
                t->values = grow(t->values, t->n, sizeof(char *));
                t->keys[t->n] = attr(e, "key");
                t->values[t->n] = attr(e, "value");
                t->n++;
            }
        } else if (is_job_el(n, "map")) {
            for (xmlNodePtr f = n->children; f; f = f->next) {
                if (!is_job_el(f, "field"))
                    continue;
                int fl = (int)xmlGetLineNo(f);
                char *fname = attr(f, "name");
                if (has_field(job, fname))
                    err_add(lc->e, "%s:%d: field '%s' is mapped twice", lc->file, fl, fname);
                job->fields = grow(job->fields, job->n_fields, sizeof *job->fields);
                rk_field_def *fd = &job->fields[job->n_fields++];
                fd->name = fname;
                fd->line = fl;
                fd->xpath = attr(f, "from");
                fd->compiled = compile_xpath(lc, fd->xpath, fl);
                if (fd->compiled)
                    fd->direct = rk_child_path_compile(job, fd->xpath);
                for (xmlNodePtr t = f->children; t; t = t->next)
                    if (t->type == XML_ELEMENT_NODE)
                        parse_transform(lc, fd, t);
            }
        } else if (is_job_el(n, "rules")) {
            for (xmlNodePtr r = n->children; r; r = r->next)
                if (is_job_el(r, "rule"))
                    parse_rule(lc, r);
        } else if (is_job_el(n, "review")) {
            char *v = attr(n, "four-eyes");
            job->four_eyes = v && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
            free(v);
            job->deadline_ms = duration_attr(n, "deadline");
            job->retention_ms = duration_attr(n, "retention");
            job->reference = attr(n, "reference");
            if (job->reference && !has_field(job, job->reference))
                err_add(lc->e, "%s:%d: review reference names field '%s', which the map does "
                               "not define", lc->file, line, job->reference);
        } else if (is_job_el(n, "connector")) {
            job->connectors = grow(job->connectors, job->n_connectors, sizeof *job->connectors);
            rk_job_connector *jc = &job->connectors[job->n_connectors++];
            jc->line = line;
            jc->plugin = attr(n, "plugin");
            jc->name = attr(n, "name");
            if (!jc->name)
                jc->name = strdup(jc->plugin);
            for (size_t k = 0; k + 1 < job->n_connectors; k++)
                if (strcmp(job->connectors[k].name, jc->name) == 0)
                    err_add(lc->e, "%s:%d: a second connector named '%s'; give each "
                                   "connector of a job its own name=", lc->file, line,
                            jc->name);
            for (xmlNodePtr s = n->children; s; s = s->next) {
                if (!is_job_el(s, "set"))
                    continue;
                jc->settings = grow(jc->settings, jc->n_settings, sizeof *jc->settings);
                rk_setting *st = &jc->settings[jc->n_settings++];
                st->key = attr(s, "key");
                char *raw = text_of(s);
                st->value = substitute(raw, vars, lc->file, (int)xmlGetLineNo(s), lc->e);
                free(raw);
            }
        }
    }
}

rk_job *rk_job_load(const char *path, const rk_vars *vars, char *err, size_t errlen)
{
    rk_xml_init();
    if (errlen)
        err[0] = '\0';
    errctx e = {err, errlen, 0};
    xmlSchemaPtr js = get_job_schema(&e);
    if (!js) {
        if (e.count == 0)
            err_add(&e, "cannot load the job schema %s", job_schema_path);
        return NULL;
    }
    char *data;
    size_t len;
    int rc = rk_read_file(path, 4u << 20, &data, &len);
    if (rc) {
        snprintf(err, errlen, "%s: cannot read job file: %s", path, rk_strerror(rc));
        return NULL;
    }
    xmlParserCtxtPtr pc = xmlNewParserCtxt();
    if (!pc) {
        free(data);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    xmlDocPtr doc = xmlCtxtReadMemory(pc, data, (int)len, path, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR |
                                          XML_PARSE_NOWARNING);
    free(data);
    if (!doc) {
        xmlErrorPtr xe = xmlCtxtGetLastError(pc);
        xml_err(&e, xe);
        if (e.count == 0)
            err_add(&e, "%s: not well-formed XML", path);
        xmlFreeParserCtxt(pc);
        return NULL;
    }
    xmlFreeParserCtxt(pc);
    if (doc->intSubset) {
        snprintf(err, errlen, "%s: job files must not carry a DOCTYPE", path);
        xmlFreeDoc(doc);
        return NULL;
    }
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(js);
    xmlSchemaSetValidStructuredErrors(vc, xml_err, &e);
    rc = xmlSchemaValidateDoc(vc, doc);
    xmlSchemaFreeValidCtxt(vc);
    if (rc != 0) {
        if (e.count == 0)
            err_add(&e, "%s: not a valid job definition", path);
        xmlFreeDoc(doc);
        return NULL;
    }
    rk_job *job = calloc(1, sizeof *job);
    xmlDocPtr trial_doc = xmlReadMemory("<x/>", 4, NULL, NULL, XML_PARSE_NONET);
    xmlXPathContextPtr trial = xmlXPathNewContext(trial_doc);
    if (!job || !trial) {
        snprintf(err, errlen, "%s: out of memory", path);
        free(job);
        xmlXPathFreeContext(trial);
        xmlFreeDoc(trial_doc);
        xmlFreeDoc(doc);
        return NULL;
    }
    trial->node = xmlDocGetRootElement(trial_doc);
    job->refs = 1;
    job->path = strdup(path);
    loadctx lc = {job, path, &e, trial};
    build_job(&lc, xmlDocGetRootElement(doc), vars);
    xmlXPathFreeContext(trial);
    xmlFreeDoc(trial_doc);
    xmlFreeDoc(doc);
    if (e.count) {
        free_job(job);
        return NULL;
    }
    return job;
}

/* ---- the registry ------------------------------------------------------ */

static rk_job_validator validator;
static void *validator_arg;

void rk_registry_set_validator(rk_job_validator fn, void *arg)
{
    validator = fn;
    validator_arg = arg;
}

struct rk_registry {
    char *dir;
    rk_job **jobs;
    size_t n;
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads the folder's job files in name order into a new array.  Errors
 * are appended to errs, one line each. */
static int load_dir(const char *dir, const rk_vars *vars, rk_job ***out, size_t *n_out,
                    rk_buf *errs)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 5 || strcmp(de->d_name + l - 4, ".xml") != 0)
            continue;
        names = grow(names, n, sizeof *names);
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    rk_job **jobs = NULL;
    size_t nj = 0;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX], err[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rk_job *job = rk_job_load(path, vars, err, sizeof err);
        if (job && validator && validator(job, validator_arg, err, sizeof err) != 0) {
            rk_job_unref(job);
            job = NULL;
        }
        if (!job) {
            rk_error("jobs", "%s", err);
            rk_buf_appendf(errs, "%s\n", err);
        } else {
            int dup = 0;
            for (size_t k = 0; k < nj; k++) {
                if (strcmp(jobs[k]->name, job->name) == 0 ||
                    (strcmp(jobs[k]->root_ns, job->root_ns) == 0 &&
                     strcmp(jobs[k]->root_name, job->root_name) == 0)) {
                    rk_error("jobs", "%s: job '%s' clashes with %s (same name or same "
                             "root element); not loaded", path, job->name, jobs[k]->path);
                    rk_buf_appendf(errs,
                                   "%s: job '%s' clashes with %s (same name or same root "
                                   "element); not loaded\n", path, job->name, jobs[k]->path);
                    dup = 1;
                    break;
                }
            }
            if (dup) {
                rk_job_unref(job);
            } else {
                jobs = grow(jobs, nj, sizeof *jobs);
                jobs[nj++] = job;
                rk_info("jobs", "loaded job %s version %ld from %s", job->name, job->version,
                        names[i]);
            }
        }
        free(names[i]);
    }
    free(names);
    *out = jobs;
    *n_out = nj;
    return 0;
}

rk_registry *rk_registry_load(const char *dir, const rk_vars *vars, char **errors)
{
    rk_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    reg->dir = strdup(dir);
    rk_buf errs;
    rk_buf_init(&errs, 1u << 20);
    int rc = load_dir(dir, vars, &reg->jobs, &reg->n, &errs);
    if (rc) {
        rk_error("jobs", "cannot read job folder %s: %s", dir, rk_strerror(rc));
        rk_buf_free(&errs);
        free(reg->dir);
        free(reg);
        return NULL;
    }
    if (errors)
        *errors = errs.len ? rk_buf_take(&errs) : NULL;
    rk_buf_free(&errs);
    return reg;
}

int rk_registry_reload(rk_registry *reg, const rk_vars *vars, char **errors)
{
    rk_buf errs;
    rk_buf_init(&errs, 1u << 20);
    rk_job **fresh;
    size_t nf;
    int rc = load_dir(reg->dir, vars, &fresh, &nf, &errs);
    if (rc) {
        rk_buf_free(&errs);
        return rc;
    }
    /* A job that failed to load now keeps its old version: a broken
     * edit never takes down a job that was working.  Its file name is
     * what ties old and new together. */
    for (size_t i = 0; i < reg->n; i++) {
        rk_job *old = reg->jobs[i];
        int replaced = 0;
        for (size_t k = 0; k < nf; k++)
            replaced |= strcmp(fresh[k]->name, old->name) == 0 ||
                        strcmp(fresh[k]->path, old->path) == 0;
        /* the file is still there but nothing loaded from it: broken */
        if (!replaced && access(old->path, F_OK) == 0) {
            rk_warn("jobs", "keeping the running version %ld of job %s", old->version,
                    old->name);
            fresh = grow(fresh, nf, sizeof *fresh);
            fresh[nf++] = old;
            rk_job_ref(old);
        }
    }
    for (size_t i = 0; i < reg->n; i++)
        rk_job_unref(reg->jobs[i]);
    free(reg->jobs);
    reg->jobs = fresh;
    reg->n = nf;
    if (errors)
        *errors = errs.len ? rk_buf_take(&errs) : NULL;
    rk_buf_free(&errs);
    return 0;
}

void rk_registry_free(rk_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        rk_job_unref(reg->jobs[i]);
    free(reg->jobs);
    free(reg->dir);
    free(reg);
}

size_t rk_registry_count(const rk_registry *reg) { return reg->n; }

rk_job *rk_registry_at(const rk_registry *reg, size_t i) { return i < reg->n ? reg->jobs[i] : NULL; }

rk_job *rk_registry_match(rk_registry *reg, const char *ns, const char *local)
{
    for (size_t i = 0; i < reg->n; i++) {
        rk_job *j = reg->jobs[i];
        if (strcmp(j->root_ns, ns ? ns : "") == 0 && strcmp(j->root_name, local) == 0) {
            rk_job_ref(j);
            return j;
        }
    }
    return NULL;
}

rk_job *rk_registry_find(rk_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->n; i++) {
        if (strcmp(reg->jobs[i]->name, name) == 0) {
            rk_job_ref(reg->jobs[i]);
            return reg->jobs[i];
        }
    }
    return NULL;
}
