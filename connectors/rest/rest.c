/*
 * rest.c — the REST connector: one HTTP(S) request per record.
 *
 * Each record goes to one configured URL with one configured method (POST,
 * PUT or PATCH), as a JSON object of field name -> string or null, or as a
 * flat XML document with one child element per field.  The idempotency key
 * travels in a header (Idempotency-Key by default), so a target that honours
 * it turns rekey's at-least-once delivery into an exactly-once effect.
 *
 * Settings (checked by the host; every one is documented with its default in
 * docs/connectors.md, section "The rest connector"):
 *   url, method, format, xml_root, headers, bearer_token, username, password,
 *   client_cert, client_key, client_key_password, tls_verify, ca_file,
 *   idempotency_header, id_from, timeout_ms, connect_timeout_ms,
 *   follow_redirects.
 *
 * Answers: 2xx -> OK (target id from the body by JSON pointer or from a
 * header); 408, 409, 425, 429, 5xx and transport errors (DNS, connect, TLS
 * handshake, timeouts, a connection that drops) -> RETRY, honouring
 * Retry-After; a failed certificate verification, 3xx without
 * follow_redirects, 401 and 407, unreadable certificate files -> FATAL (the
 * configuration of the instance is wrong, every record would fail alike);
 * every other 4xx -> PERMANENT with the target's own message.
 *
 * libcurl: one easy handle per instance, reused, so consecutive deliveries
 * of a job share a kept-alive connection.  curl_global_init() runs once per
 * process, from the first open(), under pthread_once (open() runs on the
 * host's worker threads, and libcurl's global init must not run twice
 * concurrently).  curl_global_cleanup() is never called: the host keeps the
 * shared object loaded until it exits.
 *
 * Secrets (bearer_token, password, client_key_password, headers) are handed
 * to libcurl, which copies them, and are never kept, logged or put in a
 * message by this file.  A URL with user information is refused in open(),
 * because libcurl's error texts may quote the URL.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rekey_connector.h"

#define RS_VERSION "1.0.0"
#define RS_RESPONSE_MAX (1024u * 1024u)    /* response bodies read at most */
#define RS_REQUEST_MAX (16u * 1024u * 1024u) /* a record's body at most */
#define RS_TARGET_MSG_MAX 300              /* bytes of the target's message kept */
#define RS_RETRY_AFTER_MAX_MS 86400000LL   /* Retry-After is capped at one day */
#define RS_TIMEOUT_MAX_MS 3600000LL
#define RS_NAME_MAX 64

static const rk_setting_decl rs_settings[] = {
    {"url", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL,
     "http:// or https:// address each record is sent to (no user:password@)"},
    {"method", RK_SETTING_STRING, 0, "POST", "POST, PUT or PATCH"},
    {"format", RK_SETTING_STRING, 0, "json", "body format: json or xml"},
    {"xml_root", RK_SETTING_STRING, 0, "record", "root element of XML bodies"},
    {"headers", RK_SETTING_STRING, RK_SETTING_SECRET, NULL,
     "extra request headers, one 'Name: value' per line"},
    {"bearer_token", RK_SETTING_STRING, RK_SETTING_SECRET, NULL,
     "sent as Authorization: Bearer TOKEN"},
    {"username", RK_SETTING_STRING, 0, NULL, "user name for HTTP basic authentication"},
    {"password", RK_SETTING_STRING, RK_SETTING_SECRET, NULL,
     "password for HTTP basic authentication"},
    {"client_cert", RK_SETTING_STRING, 0, NULL, "PEM file of the TLS client certificate"},
    {"client_key", RK_SETTING_STRING, 0, NULL,
     "PEM file of the client certificate's private key (default: in client_cert)"},
    {"client_key_password", RK_SETTING_STRING, RK_SETTING_SECRET, NULL,
     "pass phrase of an encrypted client_key"},
    {"tls_verify", RK_SETTING_BOOL, 0, "true",
     "verify the target's certificate and host name"},
    {"ca_file", RK_SETTING_STRING, 0, NULL,
     "PEM file of the CA certificates to trust (default: the system's)"},
    {"idempotency_header", RK_SETTING_STRING, 0, "Idempotency-Key",
     "header that carries the idempotency key; empty: not sent"},
    {"id_from", RK_SETTING_STRING, 0, NULL,
     "where the target's id is: json:/json/pointer or header:Name"},
    {"timeout_ms", RK_SETTING_INT, 0, "30000", "limit for the whole request"},
    {"connect_timeout_ms", RK_SETTING_INT, 0, "10000", "limit for connecting"},
    {"follow_redirects", RK_SETTING_BOOL, 0, "false", "follow 3xx redirects (at most 5)"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

typedef enum { RS_ID_NONE, RS_ID_JSON, RS_ID_HEADER } rs_id_kind;

/* A growable byte buffer with a hard maximum set at creation. */
typedef struct rs_buf {
    char *data;
    size_t len, cap, max;
    int over; /* an append would have passed max */
} rs_buf;

typedef struct rs_inst {
    CURL *h;
    char *where;        /* "POST https://host:port/path", for messages */
    int xml;            /* format = xml */
    char *xml_root;
    char **headers;     /* "Name: value" lines (secret: never printed) */
    size_t n_headers;
    int own_content_type; /* headers sets Content-Type itself */
    char *idem_header;  /* NULL: not sent */
    rs_id_kind id_kind;
    char *id_ref;       /* the JSON pointer or the header name */
    char errbuf[CURL_ERROR_SIZE];
    rs_buf resp;        /* the response body of the current request */
    void (*log)(void *, int, const char *);
    void *log_ctx;
} rs_inst;

/* ---- process-wide set-up ------------------------------------------------ */

static pthread_once_t rs_once = PTHREAD_ONCE_INIT;
static CURLcode rs_global_rc = CURLE_FAILED_INIT;

static void rs_global_init(void)
{
    rs_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ------------------------------------------------------ */

static void rs_log(rs_inst *in, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rs_log(rs_inst *in, int level, const char *fmt, ...)
{
    if (!in->log)
        return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    in->log(in->log_ctx, level, line);
}

static void rs_fmt(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rs_fmt(char *dst, size_t size, const char *fmt, ...)
{
    if (!dst || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

static const char *rs_setting(const rk_connector_open_args *a, const char *name)
{
    for (size_t i = 0; i < a->n_settings; i++)
        if (a->settings[i].name && strcmp(a->settings[i].name, name) == 0)
            return a->settings[i].value;
    return NULL;
}

/* A setting that is set and not empty. */
static const char *rs_setting_ne(const rk_connector_open_args *a, const char *name)
{
    const char *v = rs_setting(a, name);
    return v && v[0] ? v : NULL;
}

static void rs_buf_init(rs_buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

/* Appends n bytes, keeping a NUL after them.  Returns -1 when the buffer
 * would pass its maximum (b->over is then set) or memory runs out. */
static int rs_buf_add(rs_buf *b, const char *s, size_t n)
{
    if (n > b->max - b->len) {
        b->over = 1;
        return -1;
    }
    if (!b->data || b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int rs_buf_str(rs_buf *b, const char *s)
{
    return rs_buf_add(b, s, strlen(s));
}

static void rs_buf_free(rs_buf *b)
{
    free(b->data);
    rs_buf_init(b, b->max);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes available), or
 * 0 when the bytes there are not one: overlong forms, surrogates and code
 * points above U+10FFFF count as invalid.  *cp receives the code point. */
static size_t rs_utf8_seq(const unsigned char *s, size_t n, unsigned long *cp)
{
    unsigned char c = s[0];
    size_t len;
    unsigned long v, min;
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
    if (len > n)
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

/*
 * Copies text from a target (an error message, an id, a libcurl error) into
 * dst for a message or a target id: control characters (C0, DEL, C1)
 * become spaces, runs of spaces fold into one, invalid UTF-8 bytes become
 * '?', leading and trailing spaces go.  At most max bytes of src are read;
 * the copy is cut at a character boundary to fit dst, marked with "..." when
 * anything was left out.  Returns the length written.
 */
static size_t rs_clean(char *dst, size_t dst_size, const char *src, size_t n, size_t max)
{
    if (!dst || dst_size == 0)
        return 0;
    dst[0] = '\0';
    if (!src)
        return 0;
    int cut = n > max;
    if (cut)
        n = max;
    const unsigned char *s = (const unsigned char *)src;
    size_t room = dst_size - 1, o = 0, i = 0;
    int space = 0;
    while (i < n) {
        unsigned long cp;
        size_t k = rs_utf8_seq(s + i, n - i, &cp);
        const char *out = (const char *)s + i;
        size_t on = k;
        if (k == 0) {
            unsigned char c = s[i];
            size_t want = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                          : (c & 0xf8) == 0xf0 ? 4 : 1;
            if (cut && i + want > n)
                break; /* a character cut by max, not a broken one */
            k = on = 1;
            out = "?";
        } else if (cp <= 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
            space = 1;
            i += k;
            continue;
        }
        int sp = space && o > 0;
        if (on + (size_t)sp > room - o) {
            cut = 1;
            break;
        }
        if (sp)
            dst[o++] = ' ';
        space = 0;
        memcpy(dst + o, out, on);
        o += on;
        i += k;
    }
    if (cut) {
        /* make room for "...", cutting at a character boundary */
        while (o > 0 && o + 3 > room) {
            o--;
            while (o > 0 && ((unsigned char)dst[o] & 0xc0) == 0x80)
                o--;
        }
        if (o + 3 <= room) {
            memcpy(dst + o, "...", 3);
            o += 3;
        }
    }
    dst[o] = '\0';
    return o;
}

/* RFC 9110 token characters (header names). */
static int rs_tchar(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int rs_token_ok(const char *s, size_t n)
{
    if (n == 0 || n > RS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!rs_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* An XML element name as rekey's field names are: ASCII letter or '_'
 * first, then letters, digits, '_', '-', '.'; no ':' (no namespace). */
static int rs_xml_name_ok(const char *s)
{
    if (!s || !(isalpha((unsigned char)s[0]) || s[0] == '_') || strlen(s) > RS_NAME_MAX)
        return 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.') ||
            (unsigned char)*p >= 0x80)
            return 0;
    return 1;
}

/* 1 when s holds a control character (C0 or DEL), so it could not go into
 * a header line as it is. */
static int rs_has_ctl(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 1;
    return 0;
}

/* ---- JSON pointer (RFC 6901) --------------------------------------------- */

/* Checks the syntax of a JSON pointer: "" or "/" tokens, '~' only as ~0
 * or ~1. */
static int rs_pointer_ok(const char *p)
{
    if (p[0] && p[0] != '/')
        return 0;
    for (; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return 0;
    return 1;
}

/*
 * Resolves pointer p (already checked by rs_pointer_ok) in root.  Returns
 * a borrowed reference into root, or NULL when a step is missing.  Array
 * steps take a decimal index without leading zeros ("-" never exists).
 */
static json_t *rs_pointer_get(json_t *root, const char *p)
{
    json_t *cur = root;
    char tok[512];
    while (cur && *p) {
        p++; /* the '/' */
        size_t n = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~')
                c = *p++ == '1' ? '/' : '~';
            if (n + 1 >= sizeof tok)
                return NULL;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, n);
        } else if (json_is_array(cur)) {
            if (n == 0 || (n > 1 && tok[0] == '0') || n > 9)
                return NULL;
            size_t idx = 0;
            for (size_t i = 0; i < n; i++) {
                if (tok[i] < '0' || tok[i] > '9')
                    return NULL;
                idx = idx * 10 + (size_t)(tok[i] - '0');
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

/* ---- open / close ------------------------------------------------------- */

static void rs_close(void *instance)
{
    rs_inst *in = instance;
    if (!in)
        return;
    if (in->h)
        curl_easy_cleanup(in->h);
    free(in->where);
    free(in->xml_root);
    for (size_t i = 0; i < in->n_headers; i++) {
        /* header lines may hold API keys: wipe before freeing */
        size_t n = strlen(in->headers[i]);
        volatile char *v = in->headers[i];
        for (size_t k = 0; k < n; k++)
            v[k] = 0;
        free(in->headers[i]);
    }
    free(in->headers);
    free(in->idem_header);
    free(in->id_ref);
    rs_buf_free(&in->resp);
    free(in);
}

/*
 * Parses the URL with libcurl's URL API: scheme http or https, a host, no
 * user information.  Sets in->where to "METHOD scheme://host[:port]/path"
 * (query and fragment left out: they may carry keys).  Messages never
 * quote the URL itself.
 */
static int rs_parse_url(rs_inst *in, const char *url, const char *method, char *err,
                        size_t err_size)
{
    if (rs_has_ctl(url)) {
        rs_fmt(err, err_size, "setting 'url' holds a control character");
        return -1;
    }
    CURLU *u = curl_url();
    if (!u) {
        rs_fmt(err, err_size, "out of memory");
        return -1;
    }
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL,
         *pass = NULL;
    int rc = -1;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rs_fmt(err, err_size, "setting 'url' is not a usable URL: %s", curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK) {
        rs_fmt(err, err_size,
               "setting 'url' carries a user name or password (user:password@host); "
               "use the settings username and password or bearer_token instead");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        rs_fmt(err, err_size, "setting 'url' must start with http:// or https://");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
        rs_fmt(err, err_size, "setting 'url' has no host");
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0); /* only when given */
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    size_t n = strlen(method) + strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) +
               (path ? strlen(path) : 0) + 8;
    in->where = malloc(n);
    if (!in->where) {
        rs_fmt(err, err_size, "out of memory");
        goto out;
    }
    snprintf(in->where, n, "%s %s://%s%s%s%s", method, scheme, host, port ? ":" : "",
             port ? port : "", path ? path : "/");
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(pass);
    curl_url_cleanup(u);
    return rc;
}

/*
 * Splits the headers setting into "Name: value" lines.  Lines are
 * separated by LF; spaces and tabs around a line and around its value are
 * dropped; empty lines are skipped.  A CR or any other control character
 * is refused (no header injection), as are names that are not tokens,
 * empty values, and headers the connector or libcurl must own.  The value
 * is secret: messages name the line number and the header name only.
 */
static int rs_parse_headers(rs_inst *in, const char *spec, int have_auth, char *err,
                            size_t err_size)
{
    static const char *const owned[] = {"Host", "Content-Length", "Transfer-Encoding",
                                        "Connection", "Expect", "TE", "Upgrade",
                                        "Keep-Alive", "Proxy-Connection", NULL};
    int line = 0;
    const char *p = spec;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *next = e ? e + 1 : p + n;
        line++;
        while (n > 0 && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0) {
            p = next;
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                rs_fmt(err, err_size,
                       "setting 'headers', line %d: holds a control character (CR or "
                       "other); give one header per line, separated by line feeds",
                       line);
                return -1;
            }
        }
        const char *colon = memchr(p, ':', n);
        size_t name_len = colon ? (size_t)(colon - p) : 0;
        if (!colon || !rs_token_ok(p, name_len)) {
            rs_fmt(err, err_size,
                   "setting 'headers', line %d: not 'Name: value' with a header name of "
                   "letters, digits and -", line);
            return -1;
        }
        const char *v = colon + 1;
        size_t vn = n - name_len - 1;
        while (vn > 0 && (*v == ' ' || *v == '\t'))
            v++, vn--;
        if (vn == 0) {
            rs_fmt(err, err_size, "setting 'headers', line %d: header '%.*s' has no value",
                   line, (int)name_len, p);
            return -1;
        }
        for (size_t k = 0; owned[k]; k++)
            if (strlen(owned[k]) == name_len && strncasecmp(p, owned[k], name_len) == 0) {
                rs_fmt(err, err_size,
                       "setting 'headers', line %d: header '%s' is set by the connector",
                       line, owned[k]);
                return -1;
            }
        if (name_len == 13 && strncasecmp(p, "Authorization", 13) == 0 && have_auth) {
            rs_fmt(err, err_size,
                   "setting 'headers', line %d: Authorization given twice (also by "
                   "bearer_token or username)", line);
            return -1;
        }
        if (in->idem_header && strlen(in->idem_header) == name_len &&
            strncasecmp(p, in->idem_header, name_len) == 0) {
            rs_fmt(err, err_size,
                   "setting 'headers', line %d: header '%s' carries the idempotency key "
                   "and is set by the connector", line, in->idem_header);
            return -1;
        }
        if (name_len == 12 && strncasecmp(p, "Content-Type", 12) == 0)
            in->own_content_type = 1;
        char **hs = realloc(in->headers, (in->n_headers + 1) * sizeof *hs);
        if (!hs) {
            rs_fmt(err, err_size, "out of memory");
            return -1;
        }
        in->headers = hs;
        size_t len = name_len + 2 + vn;
        char *h = malloc(len + 1);
        if (!h) {
            rs_fmt(err, err_size, "out of memory");
            return -1;
        }
        memcpy(h, p, name_len);
        memcpy(h + name_len, ": ", 2);
        memcpy(h + name_len + 2, v, vn);
        h[len] = '\0';
        in->headers[in->n_headers++] = h;
        p = next;
    }
    return 0;
}

/* Reads a millisecond setting (already a plain decimal) and checks its
 * range 1 .. RS_TIMEOUT_MAX_MS. */
static int rs_ms(const rk_connector_open_args *a, const char *name, long long dflt,
                 long *out, char *err, size_t err_size)
{
    const char *v = rs_setting(a, name);
    long long ms = v ? strtoll(v, NULL, 10) : dflt;
    if (ms < 1 || ms > RS_TIMEOUT_MAX_MS) {
        rs_fmt(err, err_size, "setting '%s' must be between 1 and %lld (got %lld)", name,
               RS_TIMEOUT_MAX_MS, ms);
        return -1;
    }
    *out = (long)ms;
    return 0;
}

/* A file setting must name a readable file; the message names the setting
 * and the path (paths are not secret). */
static int rs_readable(const char *setting, const char *path, char *err, size_t err_size)
{
    if (access(path, R_OK) != 0) {
        rs_fmt(err, err_size, "setting '%s': cannot read '%s': %s", setting, path,
               strerror(errno));
        return -1;
    }
    return 0;
}

static size_t rs_on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    rs_inst *in = userdata;
    size_t n = size * nmemb;
    if (n == 0)
        return 0;
    /* past the limit libcurl ends the transfer with CURLE_WRITE_ERROR */
    return rs_buf_add(&in->resp, ptr, n) == 0 ? n : 0;
}

#define RS_SETOPT(opt, val)                                                       \
    do {                                                                          \
        if (cc == CURLE_OK)                                                       \
            cc = curl_easy_setopt(in->h, opt, val);                               \
    } while (0)

/*
 * Checks the settings beyond their types and sets up the easy handle with
 * everything that stays the same for every request.  The secrets go to
 * libcurl (which copies them) and are not kept here.
 */
static int rs_open(const rk_connector_open_args *args, void **instance, char *err,
                   size_t err_size)
{
    pthread_once(&rs_once, rs_global_init);
    if (rs_global_rc != CURLE_OK) {
        rs_fmt(err, err_size, "libcurl could not be initialised: %s",
               curl_easy_strerror(rs_global_rc));
        return -1;
    }
    const char *url = rs_setting(args, "url");
    const char *method = rs_setting(args, "method");
    const char *format = rs_setting(args, "format");
    const char *xml_root = rs_setting(args, "xml_root");
    const char *headers = rs_setting_ne(args, "headers");
    const char *bearer = rs_setting(args, "bearer_token");
    const char *user = rs_setting(args, "username");
    const char *pass = rs_setting(args, "password");
    const char *cert = rs_setting_ne(args, "client_cert");
    const char *key = rs_setting_ne(args, "client_key");
    const char *keypass = rs_setting(args, "client_key_password");
    const char *verify = rs_setting(args, "tls_verify");
    const char *ca = rs_setting_ne(args, "ca_file");
    const char *idem = rs_setting(args, "idempotency_header");
    const char *id_from = rs_setting_ne(args, "id_from");
    const char *follow = rs_setting(args, "follow_redirects");

    if (!url || !url[0]) {
        rs_fmt(err, err_size, "setting 'url' is empty");
        return -1;
    }
    const char *m = NULL;
    if (!method || strcasecmp(method, "POST") == 0)
        m = "POST";
    else if (strcasecmp(method, "PUT") == 0)
        m = "PUT";
    else if (strcasecmp(method, "PATCH") == 0)
        m = "PATCH";
    if (!m) {
        rs_fmt(err, err_size, "setting 'method' must be POST, PUT or PATCH (got '%.32s')",
               method);
        return -1;
    }
    int xml = 0;
    if (format && strcasecmp(format, "xml") == 0)
        xml = 1;
    else if (format && strcasecmp(format, "json") != 0) {
        rs_fmt(err, err_size, "setting 'format' must be json or xml (got '%.32s')", format);
        return -1;
    }
    if (xml && !rs_xml_name_ok(xml_root ? xml_root : "record")) {
        rs_fmt(err, err_size,
               "setting 'xml_root' must be an XML name without prefix ([A-Za-z_][A-Za-z0-9_.-]*, "
               "at most %d bytes)", RS_NAME_MAX);
        return -1;
    }
    if (bearer && (!bearer[0] || strpbrk(bearer, " \t") || rs_has_ctl(bearer))) {
        rs_fmt(err, err_size, "setting 'bearer_token' is empty or holds a space or control "
                              "character");
        return -1;
    }
    if (user && !pass) {
        rs_fmt(err, err_size, "setting 'username' needs 'password'");
        return -1;
    }
    if (pass && !user) {
        rs_fmt(err, err_size, "setting 'password' needs 'username'");
        return -1;
    }
    if (user && (!user[0] || strchr(user, ':') || rs_has_ctl(user) || rs_has_ctl(pass))) {
        rs_fmt(err, err_size,
               "setting 'username' must not be empty or hold ':', and neither it nor "
               "'password' a control character");
        return -1;
    }
    if (bearer && user) {
        rs_fmt(err, err_size, "give either bearer_token or username/password, not both");
        return -1;
    }
    if (key && !cert) {
        rs_fmt(err, err_size, "setting 'client_key' needs 'client_cert'");
        return -1;
    }
    if (keypass && !cert) {
        rs_fmt(err, err_size, "setting 'client_key_password' needs 'client_cert'");
        return -1;
    }
    if ((cert && rs_readable("client_cert", cert, err, err_size)) ||
        (key && rs_readable("client_key", key, err, err_size)) ||
        (ca && rs_readable("ca_file", ca, err, err_size)))
        return -1;
    if (idem && idem[0] && !rs_token_ok(idem, strlen(idem))) {
        rs_fmt(err, err_size, "setting 'idempotency_header' is not a header name");
        return -1;
    }
    rs_id_kind id_kind = RS_ID_NONE;
    const char *id_ref = NULL;
    if (id_from && strncmp(id_from, "json:", 5) == 0) {
        id_kind = RS_ID_JSON;
        id_ref = id_from + 5;
        if (!rs_pointer_ok(id_ref) || strlen(id_ref) > 500) {
            rs_fmt(err, err_size,
                   "setting 'id_from': '%.64s' is not a JSON pointer (RFC 6901: empty, or "
                   "'/' steps with ~0 for '~' and ~1 for '/')", id_ref);
            return -1;
        }
    } else if (id_from && strncmp(id_from, "header:", 7) == 0) {
        id_kind = RS_ID_HEADER;
        id_ref = id_from + 7;
        if (!rs_token_ok(id_ref, strlen(id_ref))) {
            rs_fmt(err, err_size, "setting 'id_from': '%.64s' is not a header name", id_ref);
            return -1;
        }
    } else if (id_from) {
        rs_fmt(err, err_size,
               "setting 'id_from' must be json:/pointer or header:Name (got '%.64s')",
               id_from);
        return -1;
    }
    long timeout_ms, connect_ms;
    if (rs_ms(args, "timeout_ms", 30000, &timeout_ms, err, err_size) ||
        rs_ms(args, "connect_timeout_ms", 10000, &connect_ms, err, err_size))
        return -1;

    rs_inst *in = calloc(1, sizeof *in);
    if (!in) {
        rs_fmt(err, err_size, "out of memory");
        return -1;
    }
    in->log = args->log;
    in->log_ctx = args->log_ctx;
    in->xml = xml;
    rs_buf_init(&in->resp, RS_RESPONSE_MAX);
    in->id_kind = id_kind;
    if ((xml && !(in->xml_root = strdup(xml_root ? xml_root : "record"))) ||
        (idem && idem[0] && !(in->idem_header = strdup(idem))) ||
        (id_ref && !(in->id_ref = strdup(id_ref)))) {
        rs_fmt(err, err_size, "out of memory");
        rs_close(in);
        return -1;
    }
    if (rs_parse_url(in, url, m, err, err_size) ||
        (headers && rs_parse_headers(in, headers, bearer || user, err, err_size))) {
        rs_close(in);
        return -1;
    }
    in->h = curl_easy_init();
    if (!in->h) {
        rs_fmt(err, err_size, "libcurl could not create a handle");
        rs_close(in);
        return -1;
    }
    CURLcode cc = CURLE_OK;
    RS_SETOPT(CURLOPT_URL, url);
    RS_SETOPT(CURLOPT_NOSIGNAL, 1L);
    RS_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    RS_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    RS_SETOPT(CURLOPT_ERRORBUFFER, in->errbuf);
    RS_SETOPT(CURLOPT_WRITEFUNCTION, rs_on_body);
    RS_SETOPT(CURLOPT_WRITEDATA, in);
    RS_SETOPT(CURLOPT_USERAGENT, "rekey-rest/" RS_VERSION);
    RS_SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
    RS_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    RS_SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    if (strcmp(m, "POST") != 0)
        RS_SETOPT(CURLOPT_CUSTOMREQUEST, m);
    if (follow && strcmp(follow, "true") == 0) {
        RS_SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
        RS_SETOPT(CURLOPT_MAXREDIRS, 5L);
        RS_SETOPT(CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL); /* a POST stays a POST */
    }
    int noverify = verify && strcmp(verify, "false") == 0;
    RS_SETOPT(CURLOPT_SSL_VERIFYPEER, noverify ? 0L : 1L);
    RS_SETOPT(CURLOPT_SSL_VERIFYHOST, noverify ? 0L : 2L);
    if (ca)
        RS_SETOPT(CURLOPT_CAINFO, ca);
    if (cert) {
        RS_SETOPT(CURLOPT_SSLCERT, cert);
        RS_SETOPT(CURLOPT_SSLCERTTYPE, "PEM");
        if (key)
            RS_SETOPT(CURLOPT_SSLKEY, key);
        if (keypass)
            RS_SETOPT(CURLOPT_KEYPASSWD, keypass);
    }
    if (bearer) {
        /* libcurl writes the Authorization header itself and, with
         * follow_redirects, keeps it from other hosts */
        RS_SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        RS_SETOPT(CURLOPT_XOAUTH2_BEARER, bearer);
    } else if (user) {
        RS_SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        RS_SETOPT(CURLOPT_USERNAME, user);
        RS_SETOPT(CURLOPT_PASSWORD, pass);
    }
    if (cc != CURLE_OK) {
        rs_fmt(err, err_size, "libcurl refused an option: %s", curl_easy_strerror(cc));
        rs_close(in);
        return -1;
    }
    rs_log(in, RK_LOG_INFO, "%s as %s%s%s%s", in->where, xml ? "xml" : "json",
           bearer ? ", bearer token" : user ? ", basic auth" : "",
           cert ? ", client certificate" : "", id_kind != RS_ID_NONE ? ", id from response" : "");
    if (noverify)
        rs_log(in, RK_LOG_WARN,
               "tls_verify is off: the target's certificate is not checked (job %s)",
               args->job_name ? args->job_name : "?");
    *instance = in;
    return 0;
}

/* ---- request bodies ------------------------------------------------------ */

/*
 * Builds the JSON body: an object of field name -> string or null, in the
 * order of the map, nothing else.  Returns OK, or PERMANENT with a message
 * for a field that is not valid UTF-8 or appears twice.
 */
static rk_deliver_status rs_body_json(const rk_record *rec, rs_buf *out,
                                      rk_deliver_result *res)
{
    json_t *o = json_object();
    if (!o) {
        rs_fmt(res->message, res->message_size, "out of memory");
        return RK_DELIVER_RETRY;
    }
    for (size_t i = 0; i < rec->n_fields; i++) {
        const char *name = rec->fields[i].name;
        const char *value = rec->fields[i].value;
        if (!name || !name[0] || json_object_get(o, name)) {
            rs_fmt(res->message, res->message_size, "field '%.64s' is empty or twice in the "
                   "record", name ? name : "");
            json_decref(o);
            return RK_DELIVER_PERMANENT;
        }
        json_t *v = value ? json_string(value) : json_null();
        if (!v || json_object_set_new(o, name, v) != 0) {
            rs_fmt(res->message, res->message_size,
                   "field '%.64s' is not valid UTF-8 and cannot go into JSON", name);
            json_decref(o);
            return RK_DELIVER_PERMANENT;
        }
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) {
        rs_fmt(res->message, res->message_size, "out of memory");
        return RK_DELIVER_RETRY;
    }
    int rc = rs_buf_str(out, s);
    free(s);
    if (rc) {
        rs_fmt(res->message, res->message_size, out->over ? "record larger than %u bytes"
                                                           : "out of memory",
               RS_REQUEST_MAX);
        return out->over ? RK_DELIVER_PERMANENT : RK_DELIVER_RETRY;
    }
    return RK_DELIVER_OK;
}

/* Appends text escaped for XML content.  Returns -1 for memory or size,
 * -2 for invalid UTF-8 or a character XML 1.0 cannot carry (C0 controls
 * other than tab, LF and CR; U+FFFE, U+FFFF).  CR is written as &#13; so
 * that it survives the target's end-of-line normalisation. */
static int rs_xml_text(rs_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), start = 0, i = 0;
    while (i < n) {
        unsigned long cp;
        size_t k = rs_utf8_seq(p + i, n - i, &cp);
        if (k == 0 || (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') ||
            cp == 0xfffe || cp == 0xffff)
            return -2;
        const char *esc = cp == '&' ? "&amp;" : cp == '<' ? "&lt;" : cp == '>' ? "&gt;"
                          : cp == '\r' ? "&#13;" : NULL;
        if (esc) {
            if (rs_buf_add(b, s + start, i - start) || rs_buf_str(b, esc))
                return -1;
            start = i + k;
        }
        i += k;
    }
    return rs_buf_add(b, s + start, n - start);
}

/*
 * Builds the XML body:
 *   <?xml version="1.0" encoding="UTF-8"?>
 *   <record><nachname>Brandt</nachname><telefon xsi:nil="true"/>...</record>
 * A field that mapped to nothing is an empty element with xsi:nil="true"
 * (the xsi namespace is declared on the root only when one is there).
 * Written by hand rather than with libxml2's writer because characters XML
 * cannot carry must be refused with the field's name, not written.
 */
static rk_deliver_status rs_body_xml(const rs_inst *in, const rk_record *rec, rs_buf *out,
                                     rk_deliver_result *res)
{
    int nil = 0, rc = 0;
    for (size_t i = 0; i < rec->n_fields; i++) {
        if (!rs_xml_name_ok(rec->fields[i].name)) {
            rs_fmt(res->message, res->message_size, "field name '%.64s' is not an XML name",
                   rec->fields[i].name ? rec->fields[i].name : "");
            return RK_DELIVER_PERMANENT;
        }
        nil |= rec->fields[i].value == NULL;
    }
    rc |= rs_buf_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    rc |= rs_buf_str(out, in->xml_root);
    if (nil)
        rc |= rs_buf_str(out, " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"");
    rc |= rs_buf_str(out, ">");
    for (size_t i = 0; i < rec->n_fields && rc == 0; i++) {
        const char *name = rec->fields[i].name;
        rc |= rs_buf_str(out, "<") | rs_buf_str(out, name);
        if (!rec->fields[i].value) {
            rc |= rs_buf_str(out, " xsi:nil=\"true\"/>");
            continue;
        }
        rc |= rs_buf_str(out, ">");
        if (rc == 0) {
            int x = rs_xml_text(out, rec->fields[i].value);
            if (x == -2) {
                rs_fmt(res->message, res->message_size,
                       "field '%s' holds invalid UTF-8 or a control character XML cannot "
                       "carry", name);
                return RK_DELIVER_PERMANENT;
            }
            rc |= x;
        }
        rc |= rs_buf_str(out, "</") | rs_buf_str(out, name) | rs_buf_str(out, ">");
    }
    rc |= rs_buf_str(out, "</") | rs_buf_str(out, in->xml_root) | rs_buf_str(out, ">\n");
    if (rc) {
        rs_fmt(res->message, res->message_size, out->over ? "record larger than %u bytes"
                                                           : "out of memory",
               RS_REQUEST_MAX);
        return out->over ? RK_DELIVER_PERMANENT : RK_DELIVER_RETRY;
    }
    return RK_DELIVER_OK;
}

/* ---- answers ------------------------------------------------------------- */

/* The value of response header name of the last request, or NULL. */
static const char *rs_header(rs_inst *in, const char *name)
{
    struct curl_header *hh = NULL;
    if (curl_easy_header(in->h, name, 0, CURLH_HEADER, -1, &hh) != CURLHE_OK || !hh)
        return NULL;
    return hh->value;
}

/*
 * Retry-After of the last response in milliseconds: delay-seconds or an
 * HTTP-date (parsed by curl_getdate), capped at one day; a date in the past
 * gives 0.  -1 when the header is absent or unreadable: the host's backoff.
 */
static int64_t rs_retry_after(rs_inst *in)
{
    const char *v = rs_header(in, "Retry-After");
    if (!v)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        char *end;
        errno = 0;
        long long s = strtoll(v, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end)
            return -1;
        if (errno == ERANGE || s > RS_RETRY_AFTER_MAX_MS / 1000)
            return RS_RETRY_AFTER_MAX_MS;
        return (int64_t)s * 1000;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return -1;
    double d = difftime(t, time(NULL));
    if (d <= 0)
        return 0;
    if (d * 1000 > (double)RS_RETRY_AFTER_MAX_MS)
        return RS_RETRY_AFTER_MAX_MS;
    return (int64_t)d * 1000;
}

/*
 * The target's explanation for a refusal, cleaned for a message: a string
 * at /message, /error, /error/message, /detail or /title of a JSON body,
 * else the first RS_TARGET_MSG_MAX bytes of the body.  "no message" for an
 * empty body.
 */
static void rs_target_message(rs_inst *in, char *dst, size_t dst_size)
{
    if (in->resp.over) {
        rs_fmt(dst, dst_size, "response body over %u bytes, not read", RS_RESPONSE_MAX);
        return;
    }
    if (in->resp.len == 0) {
        rs_fmt(dst, dst_size, "no message");
        return;
    }
    static const char *const where[] = {"/message", "/error", "/error/message", "/detail",
                                        "/title", NULL};
    json_t *j = json_loadb(in->resp.data, in->resp.len, JSON_DECODE_ANY, NULL);
    if (j) {
        for (size_t i = 0; where[i]; i++) {
            json_t *v = rs_pointer_get(j, where[i]);
            if (json_is_string(v) && json_string_length(v) > 0 &&
                rs_clean(dst, dst_size, json_string_value(v), json_string_length(v),
                         RS_TARGET_MSG_MAX) > 0) {
                json_decref(j);
                return;
            }
        }
        json_decref(j);
    }
    if (rs_clean(dst, dst_size, in->resp.data, in->resp.len, RS_TARGET_MSG_MAX) == 0)
        rs_fmt(dst, dst_size, "no message");
}

/*
 * Fills result->target_id from the 2xx response per id_from.  An id that
 * is not there, not a string or integer, or too long is logged (names
 * only) and left out: the record is in the target all the same.
 */
static void rs_target_id(rs_inst *in, const rk_record *rec, rk_deliver_result *res)
{
    if (in->id_kind == RS_ID_NONE || !res->target_id || res->target_id_size == 0)
        return;
    const char *sub = rec->submission_id ? rec->submission_id : "?";
    char num[32];
    const char *val = NULL;
    size_t len = 0;
    json_t *j = NULL;
    if (in->id_kind == RS_ID_HEADER) {
        val = rs_header(in, in->id_ref);
        len = val ? strlen(val) : 0;
        if (!val) {
            rs_log(in, RK_LOG_WARN, "job %s: the answer has no header %s for the target id",
                   sub, in->id_ref);
            return;
        }
    } else {
        if (in->resp.over || in->resp.len == 0 ||
            !(j = json_loadb(in->resp.data, in->resp.len, JSON_DECODE_ANY, NULL))) {
            rs_log(in, RK_LOG_WARN, "job %s: the answer's body is %s, no target id at %s",
                   sub, in->resp.over ? "too large" : in->resp.len ? "not JSON" : "empty",
                   in->id_ref[0] ? in->id_ref : "(the whole body)");
            return;
        }
        json_t *v = rs_pointer_get(j, in->id_ref);
        if (json_is_string(v)) {
            val = json_string_value(v);
            len = json_string_length(v);
        } else if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            val = num;
            len = strlen(num);
        } else {
            rs_log(in, RK_LOG_WARN, "job %s: no string or integer at %s in the answer", sub,
                   in->id_ref[0] ? in->id_ref : "(the whole body)");
            json_decref(j);
            return;
        }
    }
    if (len >= res->target_id_size) {
        rs_log(in, RK_LOG_WARN, "job %s: the target id is longer than %zu bytes; not kept",
               sub, res->target_id_size - 1);
    } else {
        rs_clean(res->target_id, res->target_id_size, val, len, len);
    }
    json_decref(j);
}

/* Status classes of HTTP answers that are not 2xx. */
static rk_deliver_status rs_http_status(long code)
{
    if (code == 408 || code == 409 || code == 425 || code == 429 || code >= 500)
        return RK_DELIVER_RETRY;
    if (code == 401 || code == 407 || (code >= 300 && code < 400))
        return RK_DELIVER_FATAL;
    if (code >= 400)
        return RK_DELIVER_PERMANENT;
    return RK_DELIVER_RETRY; /* 1xx as final answer, or nonsense */
}

/*
 * Classifies a transfer that failed before a complete answer.  Failed
 * certificate checks and unusable local TLS files are FATAL (configuration);
 * everything else, DNS, connect, TLS handshake, timeouts, dropped
 * connections, is RETRY.
 */
static rk_deliver_status rs_transport(rs_inst *in, CURLcode cc, rk_deliver_result *res)
{
    char why[CURL_ERROR_SIZE + 8];
    const char *raw = in->errbuf[0] ? in->errbuf : curl_easy_strerror(cc);
    rs_clean(why, sizeof why, raw, strlen(raw), sizeof why);
    switch (cc) {
    case CURLE_PEER_FAILED_VERIFICATION:
        rs_fmt(res->message, res->message_size,
               "%s: TLS certificate verification failed: %s (set ca_file to the CA of the "
               "target's certificate)", in->where, why);
        return RK_DELIVER_FATAL;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CIPHER:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_LOGIN_DENIED:
        rs_fmt(res->message, res->message_size, "%s failed: %s", in->where, why);
        return RK_DELIVER_FATAL;
    default:
        rs_fmt(res->message, res->message_size, "%s failed: %s", in->where, why);
        return RK_DELIVER_RETRY;
    }
}

/* ---- deliver ------------------------------------------------------------- */

/*
 * Sends one record and classifies the answer.  The body and the header
 * list live for this call only; the easy handle, its connection and the
 * response buffer stay with the instance.
 */
static rk_deliver_status rs_deliver(void *instance, const rk_record *rec,
                                    rk_deliver_result *res)
{
    rs_inst *in = instance;
    const char *key = rec->idempotency_key;
    if (in->idem_header && (!key || !key[0] || rs_has_ctl(key) || strlen(key) > 512)) {
        rs_fmt(res->message, res->message_size,
               "record has no idempotency key usable in a header");
        return RK_DELIVER_PERMANENT;
    }
    rs_buf body;
    rs_buf_init(&body, RS_REQUEST_MAX);
    rk_deliver_status st = in->xml ? rs_body_xml(in, rec, &body, res)
                                   : rs_body_json(rec, &body, res);
    if (st != RK_DELIVER_OK) {
        rs_buf_free(&body);
        return st;
    }

    struct curl_slist *hl = NULL, *t;
    int ok = 1;
#define RS_HDR(s) (ok && ((t = curl_slist_append(hl, (s))) ? (hl = t, 1) : (ok = 0)))
    if (!in->own_content_type)
        RS_HDR(in->xml ? "Content-Type: application/xml; charset=utf-8"
                       : "Content-Type: application/json");
    RS_HDR("Expect:"); /* no 100-continue round trip */
    for (size_t i = 0; i < in->n_headers; i++)
        RS_HDR(in->headers[i]);
    if (in->idem_header) {
        size_t n = strlen(in->idem_header) + strlen(key) + 3;
        char *line = malloc(n);
        if (line) {
            snprintf(line, n, "%s: %s", in->idem_header, key);
            RS_HDR(line);
            free(line);
        } else {
            ok = 0;
        }
    }
#undef RS_HDR
    if (!ok) {
        curl_slist_free_all(hl);
        rs_buf_free(&body);
        rs_fmt(res->message, res->message_size, "out of memory");
        return RK_DELIVER_RETRY;
    }

    in->resp.len = 0;
    in->resp.over = 0;
    if (in->resp.data)
        in->resp.data[0] = '\0';
    in->errbuf[0] = '\0';
    CURLcode cc = CURLE_OK;
    RS_SETOPT(CURLOPT_HTTPHEADER, hl);
    RS_SETOPT(CURLOPT_POSTFIELDS, body.data ? body.data : "");
    RS_SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    if (cc == CURLE_OK)
        cc = curl_easy_perform(in->h);
    long code = 0;
    curl_easy_getinfo(in->h, CURLINFO_RESPONSE_CODE, &code);
    /* the list and the body die here: libcurl must not see them again */
    curl_easy_setopt(in->h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(in->h, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hl);
    rs_buf_free(&body);

    if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && in->resp.over && code >= 200)) {
        st = rs_transport(in, cc, res);
    } else if (code >= 200 && code < 300) {
        st = RK_DELIVER_OK;
        rs_target_id(in, rec, res);
        rs_fmt(res->message, res->message_size, "HTTP %ld%s%s%s", code,
               res->target_id && res->target_id[0] ? ", target id " : "",
               res->target_id ? res->target_id : "",
               in->resp.over ? " (response body over 1 MiB, not read)" : "");
    } else {
        st = rs_http_status(code);
        char tmsg[RS_TARGET_MSG_MAX + 8];
        if (code >= 300 && code < 400) {
            const char *loc = rs_header(in, "Location");
            char where[256];
            rs_clean(where, sizeof where, loc ? loc : "", loc ? strlen(loc) : 0, 200);
            rs_fmt(res->message, res->message_size,
                   "%s: HTTP %ld redirect%s%s; set url to the new address or "
                   "follow_redirects = true", in->where, code, loc ? " to " : "", where);
        } else {
            rs_target_message(in, tmsg, sizeof tmsg);
            rs_fmt(res->message, res->message_size, "%s: HTTP %ld: %s", in->where, code,
                   tmsg);
        }
        if (st == RK_DELIVER_RETRY)
            res->retry_after_ms = rs_retry_after(in);
    }
    /* do not hold up to 1 MiB per idle instance */
    if (in->resp.cap > 64 * 1024)
        rs_buf_free(&in->resp);
    return st;
}

static const rk_connector rs_descriptor = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "rest",
    .version = RS_VERSION,
    .description = "sends each record as JSON or XML to an HTTP(S) endpoint",
    .settings = rs_settings,
    .open = rs_open,
    .deliver = rs_deliver,
    .close = rs_close,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void)
{
    return &rs_descriptor;
}
