/*
 * filedrop.c — the filedrop connector: each record becomes one file in
 * the import folder of a target system (CSV, XML or fixed-width text).
 *
 * Settings (checked by the host; every key is documented in
 * docs/connectors.md, section "The filedrop connector"):
 *   dir           the import folder (required; must exist and be writable)
 *   format        csv | xml | fixed (csv)
 *   columns       comma-separated field names: which fields, in which order
 *                 (default: every field, in the order of the job's map)
 *   encoding      utf-8 | iso-8859-15 (utf-8)
 *   line_end      crlf | lf (crlf)
 *   separator     CSV: one character, or "tab" (;)
 *   quote         CSV: minimal | all (minimal)
 *   header        CSV: a first line with the column names (true)
 *   xml_root      XML: name of the root element (record)
 *   widths        fixed: comma-separated widths in characters, one per column
 *   name_pattern  file name; {job} {submission} {key} {date} {ext}
 *                 ({job}-{submission}.{ext})
 *   tmp_dir       where files are written before they are published (dir)
 *   keys_dir      where the idempotency markers live (DIR/.rekey-keys)
 *   fsync_dir     fsync the folders after publishing (true)
 *   file_mode     permissions of the files, octal (0640)
 *
 * How a file appears: the content is rendered in memory (so every problem
 * with a value is found before anything touches the folder), written to a
 * hidden temporary file ".NAME.tmp-RANDOM" in tmp_dir (default: the
 * import folder itself), fsync'ed, and published under its final name with
 * link(), which never replaces an existing file.  A target that ignores
 * names starting with '.' therefore never sees half a file.
 *
 * Idempotency: after publishing, a marker keys_dir/SHA256(key) holding the
 * file name is created with O_EXCL; a delivery whose marker exists answers
 * OK without writing anything, even when the target has already taken the
 * file away.  If rekeyd stopped between publishing and the marker, the
 * repeated delivery finds its file name taken: when that file holds
 * exactly the bytes it would write, it is this record's (OK, the marker is
 * written now); otherwise another record has the name (PERMANENT, naming
 * the file).  The one case this cannot cover: a crash in that window AND
 * the target consuming the file before rekeyd runs again.
 */
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "rekey_connector.h"

#define FD_FILE_MAX (16u * 1024 * 1024) /* largest file one record may give */
#define FD_WIDTH_MAX 100000              /* largest width of a fixed column */
#define FD_NAME_MAX 255                  /* a file name, as on Linux file systems */

static const rk_setting_decl fd_settings[] = {
    {"dir", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL,
     "import folder of the target system (must exist and be writable)"},
    {"format", RK_SETTING_STRING, 0, "csv", "csv, xml or fixed"},
    {"columns", RK_SETTING_STRING, 0, NULL,
     "comma-separated field names to write, in this order (default: all, map order)"},
    {"encoding", RK_SETTING_STRING, 0, "utf-8", "utf-8 or iso-8859-15"},
    {"line_end", RK_SETTING_STRING, 0, "crlf", "crlf or lf"},
    {"separator", RK_SETTING_STRING, 0, ";", "CSV: the field separator, one character or 'tab'"},
    {"quote", RK_SETTING_STRING, 0, "minimal",
     "CSV: minimal (only fields that need it) or all"},
    {"header", RK_SETTING_BOOL, 0, "true", "CSV: first line names the columns"},
    {"xml_root", RK_SETTING_STRING, 0, "record", "XML: name of the root element"},
    {"widths", RK_SETTING_STRING, 0, NULL,
     "fixed: comma-separated column widths in characters (required for fixed)"},
    {"name_pattern", RK_SETTING_STRING, 0, "{job}-{submission}.{ext}",
     "file name; placeholders {job} {submission} {key} {date} {ext}"},
    {"tmp_dir", RK_SETTING_STRING, 0, NULL,
     "folder for files being written, on the same file system as dir (default: dir)"},
    {"keys_dir", RK_SETTING_STRING, 0, NULL,
     "folder for the idempotency markers (default: DIR/.rekey-keys)"},
    {"fsync_dir", RK_SETTING_BOOL, 0, "true", "fsync the folders after publishing a file"},
    {"file_mode", RK_SETTING_STRING, 0, "0640", "permissions of the files written, octal"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

typedef enum { FD_CSV, FD_XML, FD_FIXED } fd_format;

typedef struct fd_inst {
    char *dir;
    char *tmp_dir;        /* where temporary files go: tmp_dir or dir */
    char *keys_dir;
    fd_format format;
    char sep;
    int quote_all;
    int latin9;           /* encoding iso-8859-15 */
    iconv_t cd;           /* UTF-8 → ISO-8859-15, when latin9 */
    int header;
    const char *eol;
    char **columns;       /* NULL: every field of the record */
    size_t n_columns;
    size_t *widths;
    size_t n_widths;
    char *xml_root;
    char *pattern;
    int fsync_dir;
    mode_t mode;
    void (*log)(void *, int, const char *);
    void *log_ctx;
} fd_inst;

/* ---- small helpers ------------------------------------------------------ */

static void fd_msg(rk_deliver_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fd_msg(rk_deliver_result *r, const char *fmt, ...)
{
    if (!r->message || r->message_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, r->message_size, fmt, ap);
    va_end(ap);
}

static void fd_log(fd_inst *in, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fd_log(fd_inst *in, int level, const char *fmt, ...)
{
    if (!in->log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    in->log(in->log_ctx, level, line);
}

/* A growable output buffer with a hard maximum (FD_FILE_MAX).  A failed
 * append sets err (ENOMEM or EFBIG) and every later append is a no-op, so
 * callers check once at the end. */
typedef struct fd_buf {
    char *p;
    size_t len, cap;
    int err;
} fd_buf;

static void fd_add(fd_buf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (n > FD_FILE_MAX - b->len) {
        b->err = EFBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->err = ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void fd_adds(fd_buf *b, const char *s) { fd_add(b, s, strlen(s)); }

/*
 * Decodes one UTF-8 sequence at s (n bytes left).  Returns its length and
 * the code point in *cp, or 0 for anything that is not well-formed UTF-8
 * (overlong forms, surrogates, beyond U+10FFFF, cut short).
 */
static size_t fd_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Counts the characters of a UTF-8 string; (size_t)-1 when malformed. */
static size_t fd_utf8_chars(const char *s)
{
    size_t n = strlen(s), count = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (n > 0) {
        uint32_t cp;
        size_t l = fd_utf8_next(p, n, &cp);
        if (!l)
            return (size_t)-1;
        p += l;
        n -= l;
        count++;
    }
    return count;
}

/*
 * Appends UTF-8 text in the output encoding.  For UTF-8 the text is only
 * checked; for ISO-8859-15 it goes through iconv, and a character the
 * encoding lacks is refused naming the field and the character's code
 * point — never replaced by '?' — except in XML (xml_refs), where it is
 * written as a character reference &#xHEX; and so kept exactly.  Returns
 * RK_DELIVER_OK or PERMANENT with the message written.
 */
static rk_deliver_status fd_put(fd_inst *in, fd_buf *b, const char *s, size_t n,
                                const char *field, int xml_refs, rk_deliver_result *res)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = fd_utf8_next(u + i, n - i, &cp);
        if (!l) {
            fd_msg(res, "field '%s' is not valid UTF-8", field);
            return RK_DELIVER_PERMANENT;
        }
        i += l;
    }
    if (!in->latin9) {
        fd_add(b, s, n);
        return RK_DELIVER_OK;
    }
    iconv(in->cd, NULL, NULL, NULL, NULL); /* back to the initial state */
    char *ip = (char *)s;
    size_t ileft = n;
    while (ileft > 0 && !b->err) {
        char chunk[1024];
        char *op = chunk;
        size_t oleft = sizeof chunk;
        size_t r = iconv(in->cd, &ip, &ileft, &op, &oleft);
        int e = errno;
        fd_add(b, chunk, (size_t)(op - chunk));
        if (r != (size_t)-1 || e == E2BIG)
            continue;
        uint32_t cp = 0;
        size_t l = fd_utf8_next((unsigned char *)ip, ileft, &cp);
        if (e == EILSEQ && l && xml_refs) {
            char ref[16];
            snprintf(ref, sizeof ref, "&#x%X;", (unsigned)cp);
            fd_adds(b, ref);
            ip += l;
            ileft -= l;
            continue;
        }
        if (e == EILSEQ && l) {
            fd_msg(res, "field '%s' has a character that ISO-8859-15 cannot represent (U+%04X)",
                   field, (unsigned)cp);
            return RK_DELIVER_PERMANENT;
        }
        fd_msg(res, "field '%s' could not be converted to ISO-8859-15: %s", field, strerror(e));
        return RK_DELIVER_PERMANENT;
    }
    return RK_DELIVER_OK;
}

/* The value of a field of the record; *found says whether it is there. */
static const char *fd_field(const rk_record *rec, const char *name, int *found)
{
    for (size_t i = 0; i < rec->n_fields; i++) {
        if (rec->fields[i].name && strcmp(rec->fields[i].name, name) == 0) {
            *found = 1;
            return rec->fields[i].value;
        }
    }
    *found = 0;
    return NULL;
}

/* 1 when s is an XML name we are willing to write: [A-Za-z_][A-Za-z0-9_.-]*. */
static int fd_xml_name_ok(const char *s)
{
    if (!s || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return 0;
    return strlen(s) <= 128 && strncasecmp(s, "xml", 3) != 0;
}

/* ---- rendering ---------------------------------------------------------- */

/* The columns of this record: the names from the setting, or the fields. */
typedef struct fd_cols {
    const char **names;
    const char **values;
    size_t n;
} fd_cols;

/*
 * Resolves the output columns against the record.  A name in `columns`
 * that the record lacks is refused naming it: the fields are only known
 * now, and every record of the job will fail the same way, but the clerk
 * and the operator see the name at once.  The arrays are new; the strings
 * belong to the instance or the record (fd_cols_free releases the arrays).
 */
static rk_deliver_status fd_cols_get(fd_inst *in, const rk_record *rec, fd_cols *c,
                                     rk_deliver_result *res)
{
    size_t n = in->columns ? in->n_columns : rec->n_fields;
    c->n = n;
    c->names = calloc(n ? n : 1, sizeof *c->names);
    c->values = calloc(n ? n : 1, sizeof *c->values);
    if (!c->names || !c->values) {
        fd_msg(res, "out of memory");
        return RK_DELIVER_RETRY;
    }
    for (size_t i = 0; i < n; i++) {
        if (in->columns) {
            int found;
            c->names[i] = in->columns[i];
            c->values[i] = fd_field(rec, in->columns[i], &found);
            if (!found) {
                fd_msg(res, "column '%s' of setting 'columns' is not a field of job '%s'",
                       in->columns[i], rec->job_name ? rec->job_name : "?");
                return RK_DELIVER_PERMANENT;
            }
        } else {
            c->names[i] = rec->fields[i].name ? rec->fields[i].name : "";
            c->values[i] = rec->fields[i].value;
        }
    }
    if (in->format == FD_FIXED && in->n_widths != n) {
        fd_msg(res, "setting 'widths' has %zu entries but the record has %zu columns",
               in->n_widths, n);
        return RK_DELIVER_PERMANENT;
    }
    return RK_DELIVER_OK;
}

static void fd_cols_free(fd_cols *c)
{
    free(c->names);
    free(c->values);
}

/* One CSV cell: quoted (RFC 4180, quotes doubled) when quote=all or when
 * it holds the separator, a quote, CR or LF.  NULL is an empty cell,
 * unquoted even with quote=all, so NULL and "" stay apart there. */
static rk_deliver_status fd_csv_cell(fd_inst *in, fd_buf *b, const char *v, const char *field,
                                     rk_deliver_result *res)
{
    if (!v)
        return RK_DELIVER_OK;
    int q = in->quote_all;
    for (const char *p = v; *p && !q; p++)
        q = *p == in->sep || *p == '"' || *p == '\r' || *p == '\n';
    if (!q)
        return fd_put(in, b, v, strlen(v), field, 0, res);
    fd_buf t = {0};
    fd_add(&t, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"')
            fd_add(&t, "\"\"", 2); /* RFC 4180: a quote inside is doubled */
        else
            fd_add(&t, p, 1);
    }
    fd_add(&t, "\"", 1);
    rk_deliver_status st = t.err ? RK_DELIVER_PERMANENT
                                 : fd_put(in, b, t.p, t.len, field, 0, res);
    if (t.err)
        fd_msg(res, "field '%s' is too large for one file", field);
    free(t.p);
    return st;
}

static rk_deliver_status fd_render_csv(fd_inst *in, const fd_cols *c, fd_buf *b,
                                       rk_deliver_result *res)
{
    rk_deliver_status st = RK_DELIVER_OK;
    char sep[2] = {in->sep, '\0'};
    if (in->header) {
        for (size_t i = 0; i < c->n && st == RK_DELIVER_OK; i++) {
            if (i)
                fd_adds(b, sep);
            st = fd_csv_cell(in, b, c->names[i], c->names[i], res);
        }
        fd_adds(b, in->eol);
    }
    for (size_t i = 0; i < c->n && st == RK_DELIVER_OK; i++) {
        if (i)
            fd_adds(b, sep);
        st = fd_csv_cell(in, b, c->values[i], c->names[i], res);
    }
    fd_adds(b, in->eol);
    return st;
}

/*
 * XML: one element per column, text escaped (& < > and CR as &#13;, so a
 * parser gives back the exact value).  Characters XML 1.0 forbids (most
 * C0 controls) cannot be written at all and are refused naming the field.
 * NULL and "" both become an empty element.
 */
static rk_deliver_status fd_render_xml(fd_inst *in, const fd_cols *c, fd_buf *b,
                                       rk_deliver_result *res)
{
    fd_adds(b, "<?xml version=\"1.0\" encoding=\"");
    fd_adds(b, in->latin9 ? "ISO-8859-15" : "UTF-8");
    fd_adds(b, "\"?>");
    fd_adds(b, in->eol);
    fd_adds(b, "<");
    fd_adds(b, in->xml_root);
    fd_adds(b, ">");
    fd_adds(b, in->eol);
    for (size_t i = 0; i < c->n; i++) {
        const char *name = c->names[i];
        const char *v = c->values[i];
        if (!fd_xml_name_ok(name)) {
            fd_msg(res, "field name '%.64s' cannot be an XML element name", name);
            return RK_DELIVER_PERMANENT;
        }
        fd_buf t = {0};
        for (const char *p = v ? v : ""; *p; p++) {
            unsigned char ch = (unsigned char)*p;
            if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') {
                free(t.p);
                fd_msg(res, "field '%s' has a control character that XML cannot hold", name);
                return RK_DELIVER_PERMANENT;
            }
            switch (ch) {
            case '&': fd_adds(&t, "&amp;"); break;
            case '<': fd_adds(&t, "&lt;"); break;
            case '>': fd_adds(&t, "&gt;"); break;
            case '\r': fd_adds(&t, "&#13;"); break;
            default: fd_add(&t, p, 1); break;
            }
        }
        fd_adds(b, "  <");
        fd_adds(b, name);
        if (!t.len) {
            fd_adds(b, "/>");
        } else {
            fd_adds(b, ">");
            rk_deliver_status st = t.err ? RK_DELIVER_PERMANENT
                                         : fd_put(in, b, t.p, t.len, name, 1, res);
            if (t.err)
                fd_msg(res, "field '%s' is too large for one file", name);
            if (st != RK_DELIVER_OK) {
                free(t.p);
                return st;
            }
            fd_adds(b, "</");
            fd_adds(b, name);
            fd_adds(b, ">");
        }
        free(t.p);
        fd_adds(b, in->eol);
    }
    fd_adds(b, "</");
    fd_adds(b, in->xml_root);
    fd_adds(b, ">");
    fd_adds(b, in->eol);
    return RK_DELIVER_OK;
}

/* Fixed width: each value padded with spaces to its width in characters;
 * a longer value, or one with a line break, is refused naming the field
 * (never cut). */
static rk_deliver_status fd_render_fixed(fd_inst *in, const fd_cols *c, fd_buf *b,
                                         rk_deliver_result *res)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *v = c->values[i] ? c->values[i] : "";
        if (strchr(v, '\r') || strchr(v, '\n')) {
            fd_msg(res, "field '%s' has a line break, which a fixed-width line cannot hold",
                   c->names[i]);
            return RK_DELIVER_PERMANENT;
        }
        size_t chars = fd_utf8_chars(v);
        if (chars == (size_t)-1) {
            fd_msg(res, "field '%s' is not valid UTF-8", c->names[i]);
            return RK_DELIVER_PERMANENT;
        }
        if (chars > in->widths[i]) {
            fd_msg(res, "field '%s' has %zu characters, more than its width %zu", c->names[i],
                   chars, in->widths[i]);
            return RK_DELIVER_PERMANENT;
        }
        rk_deliver_status st = fd_put(in, b, v, strlen(v), c->names[i], 0, res);
        if (st != RK_DELIVER_OK)
            return st;
        for (size_t k = chars; k < in->widths[i] && !b->err; k++)
            fd_add(b, " ", 1);
    }
    fd_adds(b, in->eol);
    return RK_DELIVER_OK;
}

/* ---- names -------------------------------------------------------------- */

/* Lowercase hex SHA-256 of s into out (65 bytes); 0 or -1. */
static int fd_sha256_hex(const char *s, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static const char *const fd_placeholders[] = {"job", "submission", "key", "date", "ext", NULL};

/*
 * Checks a name pattern when the instance opens: only the known
 * placeholders, braces balanced, no '/', not starting with '.' (hidden
 * names are ours: temporary files and markers), no "..".  Returns NULL or
 * what is wrong.
 */
static const char *fd_pattern_problem(const char *pat)
{
    if (!pat[0])
        return "is empty";
    if (pat[0] == '.')
        return "starts with '.' (hidden names are kept for temporary files)";
    if (strchr(pat, '/'))
        return "contains '/'";
    if (strstr(pat, ".."))
        return "contains '..'";
    for (const char *p = pat; *p; p++) {
        if (*p == '}')
            return "has a '}' without '{'";
        if (*p != '{')
            continue;
        const char *end = strchr(p, '}');
        if (!end)
            return "has a '{' without '}'";
        int known = 0;
        for (size_t i = 0; fd_placeholders[i]; i++)
            if (strlen(fd_placeholders[i]) == (size_t)(end - p - 1) &&
                strncmp(p + 1, fd_placeholders[i], (size_t)(end - p - 1)) == 0)
                known = 1;
        if (!known)
            return "has an unknown placeholder (known: {job} {submission} {key} {date} {ext})";
        p = end;
    }
    return NULL;
}

/*
 * Builds the file name for a record into out.  The values put in are
 * checked too: a job name or submission id with a '/' (which the host
 * never hands over, but this is the last line before the file system)
 * gives PERMANENT, as does a result that is hidden, "..", or too long.
 */
static rk_deliver_status fd_name(fd_inst *in, const rk_record *rec, const char *keyhash,
                                 char *out, size_t outlen, rk_deliver_result *res)
{
    char date[16];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y%m%d", &tm);
    const char *ext = in->format == FD_CSV ? "csv" : in->format == FD_XML ? "xml" : "txt";
    char key32[33];
    snprintf(key32, sizeof key32, "%.32s", keyhash);
    size_t len = 0;
    for (const char *p = in->pattern; *p; p++) {
        const char *add = NULL;
        char one[2] = {*p, '\0'};
        if (*p == '{') {
            const char *end = strchr(p, '}');
            size_t n = (size_t)(end - p - 1);
            add = strncmp(p + 1, "job", n) == 0 && n == 3           ? rec->job_name
                  : strncmp(p + 1, "submission", n) == 0 && n == 10 ? rec->submission_id
                  : strncmp(p + 1, "key", n) == 0 && n == 3         ? key32
                  : strncmp(p + 1, "date", n) == 0 && n == 4        ? date
                                                                    : ext;
            p = end;
        } else {
            add = one;
        }
        if (!add)
            add = "";
        size_t n = strlen(add);
        if (len + n >= outlen || len + n > FD_NAME_MAX) {
            fd_msg(res, "file name from name_pattern would be longer than %d bytes", FD_NAME_MAX);
            return RK_DELIVER_PERMANENT;
        }
        memcpy(out + len, add, n);
        len += n;
    }
    out[len] = '\0';
    if (!len || out[0] == '.' || strchr(out, '/') || strstr(out, "..")) {
        fd_msg(res, "name_pattern gives an unusable file name for submission %s",
               rec->submission_id ? rec->submission_id : "?");
        return RK_DELIVER_PERMANENT;
    }
    return RK_DELIVER_OK;
}

/* ---- the file system ---------------------------------------------------- */

/* The answer for a failed system call: the folder gone (ENOENT, ENOTDIR)
 * makes the instance unusable — open() checks it again and says so;
 * everything else (ENOSPC, EIO, EACCES, EDQUOT, ...) may pass. */
static rk_deliver_status fd_fail(rk_deliver_result *res, int e, const char *what,
                                 const char *path)
{
    fd_msg(res, "%s '%s': %s", what, path, strerror(e));
    return (e == ENOENT || e == ENOTDIR) ? RK_DELIVER_FATAL : RK_DELIVER_RETRY;
}

/* Writes all of data to fd; 0 or errno. */
static int fd_write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of a folder, so a new name in it survives a power cut.  File
 * systems that cannot (EINVAL) are let be. */
static int fd_sync_dir(const char *dir)
{
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        return errno;
    int rc = fsync(d) == 0 || errno == EINVAL ? 0 : errno;
    close(d);
    return rc;
}

/* 1 when the file at path holds exactly data; 0 when it differs; -errno
 * when it cannot be read. */
static int fd_same_content(const char *path, const char *data, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int same = -EIO;
    if (fstat(fd, &st) != 0) {
        same = -errno;
    } else if ((size_t)st.st_size != n) {
        same = 0;
    } else {
        char buf[8192];
        size_t off = 0;
        same = 1;
        while (off < n) {
            ssize_t r = read(fd, buf, n - off < sizeof buf ? n - off : sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                same = r < 0 ? -errno : 0;
                break;
            }
            if (memcmp(buf, data + off, (size_t)r) != 0) {
                same = 0;
                break;
            }
            off += (size_t)r;
        }
    }
    close(fd);
    return same;
}

/*
 * Reads the marker of a key: 1 and the file name it names in name (may be
 * empty when rekeyd stopped while writing it), 0 when there is none, or
 * -errno.
 */
static int fd_marker_read(const char *path, char *name, size_t namelen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    ssize_t r;
    do
        r = read(fd, name, namelen - 1);
    while (r < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (r < 0)
        return -e;
    name[r] = '\0';
    name[strcspn(name, "\n")] = '\0';
    return 1;
}

/*
 * Publishes tmp as final without ever replacing a file.  link() first;
 * on file systems without hard links (some network shares) renameat2
 * with RENAME_NOREPLACE, and where that is missing too a check for the
 * name followed by rename() (racy only against other writers of the same
 * name, which the host's one-delivery-per-instance rule excludes for one
 * job).  Returns 0 (published; *moved says tmp is gone), EEXIST, or an
 * errno.
 */
static int fd_publish(const char *tmp, const char *final, int *moved)
{
    *moved = 0;
    if (link(tmp, final) == 0)
        return 0;
    int e = errno;
    if (e != EPERM && e != EOPNOTSUPP && e != ENOSYS && e != EMLINK)
        return e;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0) {
        *moved = 1;
        return 0;
    }
    e = errno;
    if (e != EINVAL && e != ENOSYS && e != EOPNOTSUPP)
        return e;
    struct stat st;
    if (lstat(final, &st) == 0)
        return EEXIST;
    if (errno != ENOENT)
        return errno;
    if (rename(tmp, final) != 0)
        return errno;
    *moved = 1;
    return 0;
}

/* ---- the ABI ------------------------------------------------------------ */

static const char *fd_setting(const rk_connector_open_args *a, const char *name)
{
    for (size_t i = 0; i < a->n_settings; i++)
        if (strcmp(a->settings[i].name, name) == 0)
            return a->settings[i].value;
    return NULL;
}

static void fd_close(void *instance);

/* Splits a comma-separated list into trimmed, non-empty items (new
 * strings in *out).  Returns the count, or -1 (empty item, no memory). */
static long fd_split(const char *s, char ***out)
{
    *out = NULL;
    long n = 0;
    const char *p = s;
    while (1) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *a = p, *z = end;
        while (a < z && (*a == ' ' || *a == '\t'))
            a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        char **grown = realloc(*out, (size_t)(n + 1) * sizeof *grown);
        char *item = z > a ? strndup(a, (size_t)(z - a)) : NULL;
        if (!grown || !item) {
            free(item);
            if (grown)
                *out = grown;
            for (long i = 0; i < n; i++)
                free((*out)[i]);
            free(*out);
            *out = NULL;
            return -1;
        }
        *out = grown;
        (*out)[n++] = item;
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

static void fd_free_list(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

/* Checks that dir is an existing, writable folder; 0 or -1 with err. */
static int fd_check_dir(const char *what, const char *dir, struct stat *st, char *err,
                        size_t err_size)
{
    if (stat(dir, st) != 0) {
        snprintf(err, err_size, "%s '%s' cannot be used: %s", what, dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st->st_mode)) {
        snprintf(err, err_size, "%s '%s' is not a folder", what, dir);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, err_size, "%s '%s' is not writable by this process: %s", what, dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Checks every setting beyond its type and prepares the instance: the
 * folders exist and are writable (tmp_dir on the same file system as
 * dir, since link() cannot cross file systems), the markers folder exists
 * (created when missing), the iconv converter is ready.  Everything is
 * copied; the instance belongs to the host until close().
 */
static int fd_open(const rk_connector_open_args *args, void **instance, char *err,
                   size_t err_size)
{
    const char *dir = fd_setting(args, "dir");
    const char *format = fd_setting(args, "format");
    const char *columns = fd_setting(args, "columns");
    const char *encoding = fd_setting(args, "encoding");
    const char *line_end = fd_setting(args, "line_end");
    const char *separator = fd_setting(args, "separator");
    const char *quote = fd_setting(args, "quote");
    const char *header = fd_setting(args, "header");
    const char *xml_root = fd_setting(args, "xml_root");
    const char *widths = fd_setting(args, "widths");
    const char *pattern = fd_setting(args, "name_pattern");
    const char *tmp_dir = fd_setting(args, "tmp_dir");
    const char *keys_dir = fd_setting(args, "keys_dir");
    const char *fsync_dir = fd_setting(args, "fsync_dir");
    const char *file_mode = fd_setting(args, "file_mode");

    fd_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    in->cd = (iconv_t)-1;
    in->log = args->log;
    in->log_ctx = args->log_ctx;
    in->header = !header || strcmp(header, "true") == 0;
    in->fsync_dir = !fsync_dir || strcmp(fsync_dir, "true") == 0;
    struct stat st_dir, st_tmp;

    if (!dir || !dir[0]) {
        snprintf(err, err_size, "setting 'dir' is empty");
        goto fail;
    }
    if (fd_check_dir("folder", dir, &st_dir, err, err_size) != 0)
        goto fail;
    if (!format || strcmp(format, "csv") == 0) {
        in->format = FD_CSV;
    } else if (strcmp(format, "xml") == 0) {
        in->format = FD_XML;
    } else if (strcmp(format, "fixed") == 0) {
        in->format = FD_FIXED;
    } else {
        snprintf(err, err_size, "setting 'format' must be csv, xml or fixed (got '%.32s')", format);
        goto fail;
    }
    if (!encoding || strcasecmp(encoding, "utf-8") == 0 || strcasecmp(encoding, "utf8") == 0) {
        in->latin9 = 0;
    } else if (strcasecmp(encoding, "iso-8859-15") == 0 || strcasecmp(encoding, "latin-9") == 0 ||
               strcasecmp(encoding, "latin9") == 0) {
        in->latin9 = 1;
        in->cd = iconv_open("ISO-8859-15", "UTF-8");
        if (in->cd == (iconv_t)-1) {
            snprintf(err, err_size, "iconv cannot convert UTF-8 to ISO-8859-15: %s",
                     strerror(errno));
            goto fail;
        }
    } else {
        snprintf(err, err_size, "setting 'encoding' must be utf-8 or iso-8859-15 (got '%.32s')",
                 encoding);
        goto fail;
    }
    if (!line_end || strcmp(line_end, "crlf") == 0) {
        in->eol = "\r\n";
    } else if (strcmp(line_end, "lf") == 0) {
        in->eol = "\n";
    } else {
        snprintf(err, err_size, "setting 'line_end' must be crlf or lf (got '%.32s')", line_end);
        goto fail;
    }
    if (!separator || strcmp(separator, "tab") == 0 || strcmp(separator, "\t") == 0) {
        in->sep = separator ? '\t' : ';';
    } else if (strlen(separator) == 1 && (unsigned char)separator[0] >= 0x20 &&
               (unsigned char)separator[0] < 0x7f && separator[0] != '"') {
        in->sep = separator[0];
    } else {
        snprintf(err, err_size,
                 "setting 'separator' must be one ASCII character other than '\"', or 'tab'");
        goto fail;
    }
    if (!quote || strcmp(quote, "minimal") == 0) {
        in->quote_all = 0;
    } else if (strcmp(quote, "all") == 0) {
        in->quote_all = 1;
    } else {
        snprintf(err, err_size, "setting 'quote' must be minimal or all (got '%.32s')", quote);
        goto fail;
    }
    if (!(in->xml_root = strdup(xml_root ? xml_root : "record")) ||
        !(in->dir = strdup(dir)) || !(in->pattern = strdup(pattern ? pattern : "")))
        goto oom;
    if (!fd_xml_name_ok(in->xml_root)) {
        snprintf(err, err_size, "setting 'xml_root' must be an XML name ([A-Za-z_][A-Za-z0-9_.-]*)");
        goto fail;
    }
    if (columns && columns[0]) {
        char **list;
        long n = fd_split(columns, &list);
        if (n < 0) {
            snprintf(err, err_size, "setting 'columns' has an empty entry");
            goto fail;
        }
        in->columns = list;
        in->n_columns = (size_t)n;
        for (size_t i = 0; i < in->n_columns; i++)
            for (size_t j = 0; j < i; j++)
                if (strcmp(list[i], list[j]) == 0) {
                    snprintf(err, err_size, "setting 'columns' names '%.64s' twice", list[i]);
                    goto fail;
                }
    }
    if (widths && widths[0]) {
        char **list;
        long n = fd_split(widths, &list);
        if (n < 0) {
            snprintf(err, err_size, "setting 'widths' has an empty entry");
            goto fail;
        }
        in->widths = calloc((size_t)n, sizeof *in->widths);
        if (!in->widths) {
            fd_free_list(list, (size_t)n);
            goto oom;
        }
        in->n_widths = (size_t)n;
        for (long i = 0; i < n; i++) {
            char *end;
            errno = 0;
            long w = strtol(list[i], &end, 10);
            if (errno || *end || end == list[i] || w < 1 || w > FD_WIDTH_MAX) {
                snprintf(err, err_size,
                         "setting 'widths': entry %ld ('%.16s') is not a width from 1 to %d",
                         i + 1, list[i], FD_WIDTH_MAX);
                fd_free_list(list, (size_t)n);
                goto fail;
            }
            in->widths[i] = (size_t)w;
        }
        fd_free_list(list, (size_t)n);
    }
    if (in->format == FD_FIXED && !in->widths) {
        snprintf(err, err_size, "format fixed needs the setting 'widths'");
        goto fail;
    }
    if (in->format == FD_FIXED && in->columns && in->n_columns != in->n_widths) {
        snprintf(err, err_size, "setting 'widths' has %zu entries but 'columns' names %zu",
                 in->n_widths, in->n_columns);
        goto fail;
    }
    const char *problem = fd_pattern_problem(in->pattern);
    if (problem) {
        snprintf(err, err_size, "setting 'name_pattern' %s", problem);
        goto fail;
    }
    if (!strstr(in->pattern, "{submission}") && !strstr(in->pattern, "{key}"))
        fd_log(in, RK_LOG_WARN,
               "name_pattern has neither {submission} nor {key}: two records may want the "
               "same file name, and the second is then refused");
    if (tmp_dir && tmp_dir[0]) {
        if (fd_check_dir("tmp_dir", tmp_dir, &st_tmp, err, err_size) != 0)
            goto fail;
        if (st_tmp.st_dev != st_dir.st_dev) {
            snprintf(err, err_size, "tmp_dir '%s' is not on the same file system as '%s'",
                     tmp_dir, dir);
            goto fail;
        }
        if (!(in->tmp_dir = strdup(tmp_dir)))
            goto oom;
    } else if (!(in->tmp_dir = strdup(dir))) {
        goto oom;
    }
    if (keys_dir && keys_dir[0]) {
        in->keys_dir = strdup(keys_dir);
    } else {
        size_t n = strlen(dir) + sizeof "/.rekey-keys";
        if ((in->keys_dir = malloc(n)))
            snprintf(in->keys_dir, n, "%s/.rekey-keys", dir);
    }
    if (!in->keys_dir)
        goto oom;
    if (mkdir(in->keys_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "cannot create the markers folder '%s': %s", in->keys_dir,
                 strerror(errno));
        goto fail;
    }
    struct stat st_keys;
    if (fd_check_dir("keys_dir", in->keys_dir, &st_keys, err, err_size) != 0)
        goto fail;
    {
        const char *fm = file_mode ? file_mode : "0640";
        char *end;
        errno = 0;
        long m = strtol(fm, &end, 8);
        if (errno || *end || end == fm || fm[0] == '-' || m > 0777) {
            snprintf(err, err_size, "setting 'file_mode' must be octal permissions like 0640");
            goto fail;
        }
        in->mode = (mode_t)m;
    }
    fd_log(in, RK_LOG_INFO, "job '%s': files into '%s' as %s (%s), names '%s'",
           args->job_name ? args->job_name : "?", in->dir,
           in->format == FD_CSV ? "csv" : in->format == FD_XML ? "xml" : "fixed",
           in->latin9 ? "iso-8859-15" : "utf-8", in->pattern);
    *instance = in;
    return 0;
oom:
    snprintf(err, err_size, "out of memory");
fail:
    fd_close(in);
    return -1;
}

/*
 * Delivers one record: marker check, render, write the temporary file,
 * fsync, publish, fsync the folder, write the marker.  See the comment
 * at the top for why this order is idempotent.
 */
static rk_deliver_status fd_deliver(void *instance, const rk_record *rec,
                                    rk_deliver_result *res)
{
    fd_inst *in = instance;
    if (!rec->idempotency_key || !rec->idempotency_key[0]) {
        fd_msg(res, "record has no idempotency key");
        return RK_DELIVER_PERMANENT;
    }
    char hash[65];
    if (fd_sha256_hex(rec->idempotency_key, hash) != 0) {
        fd_msg(res, "cannot hash the idempotency key (libcrypto)");
        return RK_DELIVER_RETRY;
    }
    char marker[PATH_MAX], name[FD_NAME_MAX + 1];
    if ((size_t)snprintf(marker, sizeof marker, "%s/%s", in->keys_dir, hash) >= sizeof marker) {
        fd_msg(res, "path of the marker is too long");
        return RK_DELIVER_FATAL;
    }
    int m = fd_marker_read(marker, name, sizeof name);
    if (m < 0)
        return fd_fail(res, -m, "cannot read the marker", marker);
    if (m == 1) {
        fd_msg(res, "already delivered as '%s'", name);
        snprintf(res->target_id, res->target_id_size, "%s", name);
        return RK_DELIVER_OK;
    }

    fd_cols cols = {0};
    fd_buf b = {0};
    char final[PATH_MAX], tmp[PATH_MAX];
    int tfd = -1, tmp_exists = 0;
    rk_deliver_status st = fd_cols_get(in, rec, &cols, res);
    if (st == RK_DELIVER_OK)
        st = in->format == FD_CSV   ? fd_render_csv(in, &cols, &b, res)
             : in->format == FD_XML ? fd_render_xml(in, &cols, &b, res)
                                    : fd_render_fixed(in, &cols, &b, res);
    if (st == RK_DELIVER_OK && b.err) {
        fd_msg(res, b.err == EFBIG ? "record is larger than %u bytes as a file"
                                   : "out of memory rendering the record (%u bytes at most)",
               FD_FILE_MAX);
        st = b.err == EFBIG ? RK_DELIVER_PERMANENT : RK_DELIVER_RETRY;
    }
    if (st == RK_DELIVER_OK)
        st = fd_name(in, rec, hash, name, sizeof name, res);
    if (st != RK_DELIVER_OK)
        goto out;

    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec;
        memcpy(rnd, &v, sizeof rnd);
    }
    char suffix[16];
    snprintf(suffix, sizeof suffix, "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5]);
    /* ".NAME.tmp-RANDOM" when it fits in one name, else a short form */
    int n1 = snprintf(final, sizeof final, "%s/%s", in->dir, name);
    int n2 = strlen(name) + 18 <= FD_NAME_MAX
                 ? snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%s", in->tmp_dir, name, suffix)
                 : snprintf(tmp, sizeof tmp, "%s/.rekey.tmp-%s", in->tmp_dir, suffix);
    if (n1 < 0 || (size_t)n1 >= sizeof final || n2 < 0 || (size_t)n2 >= sizeof tmp) {
        fd_msg(res, "path of the file is too long");
        st = RK_DELIVER_PERMANENT;
        goto out;
    }
    tfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, in->mode);
    if (tfd < 0) {
        st = fd_fail(res, errno, "cannot create a temporary file in", in->tmp_dir);
        goto out;
    }
    tmp_exists = 1;
    int e = fchmod(tfd, in->mode) != 0 ? errno : 0; /* exactly file_mode, whatever the umask */
    if (!e)
        e = fd_write_all(tfd, b.p ? b.p : "", b.len);
    if (!e && fsync(tfd) != 0)
        e = errno;
    if (close(tfd) != 0 && !e)
        e = errno;
    tfd = -1;
    if (e) {
        st = fd_fail(res, e, "cannot write a temporary file in", in->tmp_dir);
        goto out;
    }

    int moved = 0;
    e = fd_publish(tmp, final, &moved);
    if (moved)
        tmp_exists = 0;
    int published = e == 0;
    if (e == EEXIST) {
        int same = fd_same_content(final, b.p ? b.p : "", b.len);
        if (same < 0) {
            st = fd_fail(res, -same, "cannot read the existing file", final);
            goto out;
        }
        if (!same) {
            fd_msg(res, "file name '%s' is already taken by a different record; "
                        "check name_pattern", name);
            st = RK_DELIVER_PERMANENT;
            goto out;
        }
        /* the same bytes: this record, published before the marker was */
    } else if (e) {
        st = fd_fail(res, e, "cannot publish the file as", final);
        goto out;
    }
    if (tmp_exists && unlink(tmp) == 0)
        tmp_exists = 0;
    if (published && in->fsync_dir && (e = fd_sync_dir(in->dir)) != 0) {
        st = fd_fail(res, e, "cannot fsync the folder", in->dir);
        goto out;
    }

    int mfd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (mfd < 0 && errno != EEXIST) {
        st = fd_fail(res, errno, "cannot create the marker", marker);
        goto out;
    }
    if (mfd >= 0) {
        char line[FD_NAME_MAX + 2];
        snprintf(line, sizeof line, "%s\n", name);
        e = fd_write_all(mfd, line, strlen(line));
        if (!e && fsync(mfd) != 0)
            e = errno;
        if (close(mfd) != 0 && !e)
            e = errno;
        if (!e && in->fsync_dir)
            e = fd_sync_dir(in->keys_dir);
        if (e) {
            st = fd_fail(res, e, "cannot write the marker", marker);
            goto out;
        }
    }
    fd_msg(res, published ? "wrote '%s' (%zu bytes)" : "already delivered as '%s' (%zu bytes)",
           name, b.len);
    snprintf(res->target_id, res->target_id_size, "%s", name);
    st = RK_DELIVER_OK;
out:
    if (tfd >= 0)
        close(tfd);
    if (tmp_exists)
        unlink(tmp);
    fd_cols_free(&cols);
    free(b.p);
    return st;
}

static void fd_close(void *instance)
{
    fd_inst *in = instance;
    if (!in)
        return;
    if (in->cd != (iconv_t)-1)
        iconv_close(in->cd);
    free(in->dir);
    free(in->tmp_dir);
    free(in->keys_dir);
    fd_free_list(in->columns, in->n_columns);
    free(in->widths);
    free(in->xml_root);
    free(in->pattern);
    free(in);
}

static const rk_connector fd_descriptor = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "filedrop",
    .version = "1.0.0",
    .description = "writes each record as one file (CSV, XML or fixed width) into an import folder",
    .settings = fd_settings,
    .open = fd_open,
    .deliver = fd_deliver,
    .close = fd_close,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void)
{
    return &fd_descriptor;
}
