/*
 * dash.c — see dash.h.
 *
 * Every page is written into the response buffer by hand: literal markup
 * from this file, and every value from the store, a form or a URL through
 * rk_html_escape (or url_part, whose output needs no escaping).  Nothing
 * else reaches the page; values come from citizens and are hostile.
 *
 * Sessions live in memory only: a restart logs everyone out, which is
 * what a clerk expects of a restarted service, and no session id is ever
 * written anywhere.  The log names the token's name at login and logout,
 * never a token, a session id or a value of a submission.
 */
#include "dash.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "store.h"
#include "xmldoc.h"

#define COOKIE "rekey_sid"
#define QUEUE_LIMIT_DEFAULT 50
#define QUEUE_LIMIT_MAX 200
#define OVERVIEW_ROWS 20
#define TOKEN_MAX 256

static const char csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct rk_dash {
    rk_api *api;
    rk_httpd *h;
    rk_sessions *sessions;
    int cookie_secure;
    size_t max_document;
};

/* ---- escaping and small writers -------------------------------------------- */

/* rk_html_escape of n bytes at text (which need not end in a NUL). */
static int escape_n(rk_buf *b, const char *text, size_t n)
{
    const char *run = text, *end = text + n;
    for (const char *p = text;; p++) {
        const char *rep = NULL;
        if (p < end) {
            switch (*p) {
            case '&': rep = "&amp;"; break;
            case '<': rep = "&lt;"; break;
            case '>': rep = "&gt;"; break;
            case '"': rep = "&quot;"; break;
            case '\'': rep = "&#39;"; break;
            default: continue;
            }
        }
        if (p > run && rk_buf_append(b, run, (size_t)(p - run)) != 0)
            return RK_E_LIMIT;
        if (p == end)
            return 0;
        if (rk_buf_append(b, rep, strlen(rep)) != 0)
            return RK_E_LIMIT;
        run = p + 1;
    }
}

int rk_html_escape(rk_buf *b, const char *text)
{
    return text ? escape_n(b, text, strlen(text)) : 0;
}

#define esc rk_html_escape

static void put(rk_buf *b, const char *s)
{
    rk_buf_append(b, s, strlen(s));
}

/* Only for numbers and this file's own strings: never for values. */
static void putf(rk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(rk_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        rk_buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A value percent-encoded for a URL's query (unreserved characters stay);
 * the result contains no character that HTML would need escaped. */
static void url_part(rk_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            rk_buf_append(b, p, 1);
        else
            putf(b, "%%%02X", *p);
    }
}

/* ---- the Grund of the Verlauf in German ------------------------------------- */

/*
 * The engine and the review module write the reason of each event in
 * English (rekeyctl events, the API and the tests read that stored text, and
 * the audit trail stays as written); the clerk reads German.  So the page
 * translates when it renders: every reason text the code writes is a pattern
 * here with its German template.
 *
 * Patterns: "%s" stands for any text (possibly empty, matched as short as
 * the rest of the pattern allows), "%d" for one or more digits, "%n" for a
 * connector's name (no space, ':' or ';').  Templates: "%1".."%3" put the
 * captured parts back, in the pattern's order.  Literal and captured parts
 * are both escaped, so a file name or a connector's message is shown but
 * never taken as markup.  A text no pattern matches is shown unchanged.
 *
 * A delivery round writes one part per connector, joined by "; "
 * ("sqlite: delivered, target id 2; rest: attempt 3: HTTP 503"); each part
 * is translated on its own.  A connector's message (after "NAME: ...: ")
 * comes from the plugin and stays as it is.
 */
typedef struct reason_pat {
    const char *en, *de;
} reason_pat;

/* the texts of a whole event (agent/engine.c, agent/store.c, agent/review.c);
 * the longer of two patterns with the same start comes first */
static const reason_pat k_reasons[] = {
    {"taken from %s", "eingegangen aus %1"},
    {"valid against the job's XSD", "gültig nach dem XSD der Antragsart"},
    {"SCHEMA: document violates the job's XSD",
     "SCHEMA: das Dokument verletzt das XSD der Antragsart"},
    {"%d fields mapped by job %s version %d", "%1 Felder übernommen (Antragsart %2, Version %3)"},
    {"held: %s", "zur Klärung angehalten: %1"},
    {"all rules passed", "alle Regeln erfüllt"},
    {"passed with notes: %s", "Regeln erfüllt, mit Hinweisen: %1"},
    {"nothing left to deliver", "nichts mehr zu übertragen"},
    {"retry due", "neuer Versuch fällig"},
    {"result not recorded; delivering again with the same key",
     "Ergebnis nicht gespeichert; erneute Übertragung mit demselben Schlüssel"},
    {"interrupted delivery; delivering again with the same key",
     "Übertragung unterbrochen; erneute Übertragung mit demselben Schlüssel"},
    {"interrupted processing; processing again",
     "Verarbeitung unterbrochen; erneute Verarbeitung"},
    {"retry: attempts reset", "erneuter Versuch: Zahl der Versuche zurückgesetzt"},
    {"retry: processing again", "erneuter Versuch: erneute Verarbeitung"},
    {"replay of job %d with new idempotency keys",
     "erneute Verarbeitung von Antrag %1 mit neuem Schlüssel"},
    {"replay of job %d", "erneute Verarbeitung von Antrag %1"},
    {"replayed as job %d", "erneut verarbeitet als Antrag %1"},
    {"purged after the retention time", "Löschung nach Aufbewahrungsfrist"},
};

/* one connector's part of a delivery round's reason (commit_round_end) */
static const reason_pat k_parts[] = {
    {"%n: delivered, target id %s", "übertragen an %1 (Kennung im Fachverfahren: %2)"},
    {"%n: delivered", "übertragen an %1"},
    {"%n: refused by the target", "vom Fachverfahren abgelehnt (Anbindung %1)"},
    {"%n: connector paused: %s", "Anbindung %1 angehalten: %2"},
    {"%n: connector paused", "Anbindung %1 angehalten"},
    {"%n: attempts used up (%d): %s", "Übertragung an %1: alle %2 Versuche verbraucht: %3"},
    {"%n: attempt %d: %s", "Übertragung an %1: Versuch %2: %3"},
};

#define REASON_CAPS 3

typedef struct span {
    const char *p;
    size_t n;
} span;

static int name_char(char c)
{
    return c && c != ' ' && c != ':' && c != ';';
}

/* 1 when [s, end) matches pat entirely; cap[k..] get the captured parts. */
static int reason_match(const char *pat, const char *s, const char *end, span *cap, int k)
{
    for (;;) {
        if (pat[0] == '%' && (pat[1] == 'd' || pat[1] == 'n')) {
            const char *e = s;
            while (e < end && (pat[1] == 'd' ? (*e >= '0' && *e <= '9') : name_char(*e)))
                e++;
            if (e == s || k >= REASON_CAPS)
                return 0;
            cap[k++] = (span){s, (size_t)(e - s)};
            s = e;
            pat += 2;
            continue;
        }
        if (pat[0] == '%' && pat[1] == 's') {
            if (k >= REASON_CAPS)
                return 0;
            for (const char *e = s;; e++) { /* as short as the rest allows */
                if (reason_match(pat + 2, e, end, cap, k + 1)) {
                    cap[k] = (span){s, (size_t)(e - s)};
                    return 1;
                }
                if (e == end)
                    return 0;
            }
        }
        if (!*pat)
            return s == end;
        if (s == end || *pat != *s)
            return 0;
        pat++;
        s++;
    }
}

/* Appends the template de with its "%1".."%3" filled from cap, escaped. */
static int reason_fill(rk_buf *b, const char *de, const span *cap)
{
    const char *run = de;
    for (const char *p = de;; p++) {
        int slot = *p == '%' && p[1] >= '1' && p[1] < '1' + REASON_CAPS;
        if (!slot && *p)
            continue;
        if (p > run && escape_n(b, run, (size_t)(p - run)) != 0)
            return RK_E_LIMIT;
        if (!*p)
            return 0;
        const span *c = &cap[p[1] - '1'];
        if (c->p && escape_n(b, c->p, c->n) != 0)
            return RK_E_LIMIT;
        p++;
        run = p + 1;
    }
}

/* The pattern of table t (n entries) that [s, end) matches, or NULL. */
static const reason_pat *reason_find(const reason_pat *t, size_t n, const char *s,
                                     const char *end, span *cap)
{
    for (size_t i = 0; i < n; i++) {
        memset(cap, 0, REASON_CAPS * sizeof *cap);
        if (reason_match(t[i].en, s, end, cap, 0))
            return &t[i];
    }
    return NULL;
}

/* Where the next connector's part starts: after a "; " that is followed by
 * "NAME: " and one of the words a part begins with; NULL when none. */
static const char *reason_next_part(const char *s, const char *end)
{
    static const char *const k_words[] = {"delivered", "refused by the target",
                                          "connector paused", "attempts used up (", "attempt "};
    for (const char *p = s; p + 2 <= end; p++) {
        if (p[0] != ';' || p[1] != ' ')
            continue;
        const char *q = p + 2;
        while (q < end && name_char(*q))
            q++;
        if (q == p + 2 || end - q < 2 || q[0] != ':' || q[1] != ' ')
            continue;
        q += 2;
        for (size_t i = 0; i < sizeof k_words / sizeof k_words[0]; i++) {
            size_t l = strlen(k_words[i]);
            if ((size_t)(end - q) >= l && memcmp(q, k_words[i], l) == 0)
                return p;
        }
    }
    return NULL;
}

/* The parts of a delivery round's reason: with b NULL only checks that
 * every part matches; otherwise appends them translated.  0 when every
 * part matched (and was written), 1 when one did not, or RK_E_LIMIT. */
static int reason_parts(rk_buf *b, const char *s, const char *end)
{
    for (;;) {
        const char *stop = reason_next_part(s, end);
        const char *e = stop ? stop : end;
        span cap[REASON_CAPS];
        const reason_pat *r = reason_find(k_parts, sizeof k_parts / sizeof k_parts[0], s, e, cap);
        if (!r)
            return 1;
        if (b && reason_fill(b, r->de, cap) != 0)
            return RK_E_LIMIT;
        if (!stop)
            return 0;
        if (b && rk_buf_append(b, "; ", 2) != 0)
            return RK_E_LIMIT;
        s = stop + 2;
    }
}

int rk_dash_reason_german(rk_buf *b, const char *reason)
{
    if (!reason)
        return 0;
    const char *end = reason + strlen(reason);
    if (reason_parts(NULL, reason, end) == 0)
        return reason_parts(b, reason, end) ? RK_E_LIMIT : 0;
    span cap[REASON_CAPS];
    const reason_pat *r =
        reason_find(k_reasons, sizeof k_reasons / sizeof k_reasons[0], reason, end, cap);
    return r ? reason_fill(b, r->de, cap) : rk_html_escape(b, reason);
}

/* The Grund column: German, or "–" when the event has none. */
static void put_reason(rk_buf *b, const char *reason)
{
    if (reason)
        rk_dash_reason_german(b, reason);
    else
        put(b, "–");
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static long long jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* An ISO 8601 UTC time of the store as local "TT.MM.JJJJ HH:MM"; the
 * input itself when it is not one. */
static void put_time(rk_buf *b, const char *iso)
{
    if (!iso || !*iso) {
        put(b, "–");
        return;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(iso, "%Y-%m-%d %H:%M:%S", &tm);
    }
    if (!end) {
        esc(b, iso);
        return;
    }
    time_t t = timegm(&tm);
    struct tm lt;
    char out[32];
    if (t == (time_t)-1 || !localtime_r(&t, &lt) ||
        strftime(out, sizeof out, "%d.%m.%Y %H:%M", &lt) == 0) {
        esc(b, iso);
        return;
    }
    put(b, out);
}

static const char *severity_german(const char *s)
{
    if (s && strcmp(s, "block") == 0)
        return "blockierend";
    if (s && strcmp(s, "warn") == 0)
        return "Hinweis";
    return s ? s : "–";
}

static const char *delivery_german(const char *s)
{
    static const char *const map[][2] = {{"pending", "ausstehend"},
                                         {"delivered", "übertragen"},
                                         {"refused", "vom Fachverfahren abgewiesen"},
                                         {"failed", "fehlgeschlagen"}};
    for (size_t i = 0; s && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(s, map[i][0]) == 0)
            return map[i][1];
    return s ? s : "–";
}

/* ---- sessions -------------------------------------------------------------- */

struct rk_sessions {
    rk_session *v;
    size_t n, max;
    int64_t idle_ms;
};

rk_sessions *rk_sessions_new(size_t max, int64_t idle_ms)
{
    rk_sessions *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->max = max ? max : 1000;
    s->idle_ms = idle_ms > 0 ? idle_ms : 30 * 60000;
    s->v = calloc(s->max, sizeof *s->v);
    if (!s->v) {
        free(s);
        return NULL;
    }
    return s;
}

void rk_sessions_free(rk_sessions *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s->v, s->max * sizeof *s->v);
    free(s->v);
    free(s);
}

size_t rk_sessions_count(const rk_sessions *s)
{
    return s->n;
}

static void session_drop(rk_sessions *s, size_t i)
{
    s->v[i] = s->v[s->n - 1];
    OPENSSL_cleanse(&s->v[s->n - 1], sizeof s->v[0]);
    s->n--;
}

static int random_hex(char *out, size_t outlen)
{
    unsigned char raw[RK_SESSION_ID_LEN / 2];
    if (outlen < RK_SESSION_ID_LEN + 1 || RAND_bytes(raw, (int)sizeof raw) != 1)
        return -EIO;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[RK_SESSION_ID_LEN] = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

rk_session *rk_sessions_add(rk_sessions *s, const char *name, int64_t now_ms)
{
    for (size_t i = s->n; i-- > 0;)
        if (now_ms - s->v[i].last_ms > s->idle_ms)
            session_drop(s, i);
    if (s->n == s->max) {
        size_t oldest = 0;
        for (size_t i = 1; i < s->n; i++)
            if (s->v[i].last_ms < s->v[oldest].last_ms)
                oldest = i;
        session_drop(s, oldest);
    }
    rk_session *x = &s->v[s->n];
    memset(x, 0, sizeof *x);
    if (random_hex(x->sid, sizeof x->sid) != 0 || random_hex(x->csrf, sizeof x->csrf) != 0) {
        OPENSSL_cleanse(x, sizeof *x);
        return NULL;
    }
    snprintf(x->name, sizeof x->name, "%s", name);
    x->created_ms = x->last_ms = now_ms;
    s->n++;
    return x;
}

int rk_token_equal(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    size_t n = strlen(a);
    if (n != strlen(b) || n == 0)
        return 0;
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* The index of the session with this id, or -1: every entry is compared
 * in constant time, so how long it takes says nothing about the id. */
static long session_find(rk_sessions *s, const char *sid)
{
    if (!sid || strlen(sid) != RK_SESSION_ID_LEN)
        return -1;
    long found = -1;
    for (size_t i = 0; i < s->n; i++)
        if (CRYPTO_memcmp(s->v[i].sid, sid, RK_SESSION_ID_LEN) == 0)
            found = (long)i;
    return found;
}

rk_session *rk_sessions_get(rk_sessions *s, const char *sid, int64_t now_ms)
{
    long i = session_find(s, sid);
    if (i < 0)
        return NULL;
    if (now_ms - s->v[i].last_ms > s->idle_ms) {
        session_drop(s, (size_t)i);
        return NULL;
    }
    s->v[i].last_ms = now_ms;
    return &s->v[i];
}

int rk_sessions_remove(rk_sessions *s, const char *sid)
{
    long i = session_find(s, sid);
    if (i < 0)
        return 0;
    session_drop(s, (size_t)i);
    return 1;
}

/* ---- requests and responses ------------------------------------------------ */

/* The live session of the request's cookie, or NULL.  A session whose
 * token was removed from the token file (rekeyctl token remove) ends here,
 * at its next request. */
static rk_session *session_of(rk_dash *d, const rk_httpd_req *rq)
{
    rk_session *s = rk_sessions_get(d->sessions, rk_httpd_cookie(rq, COOKIE), rk_now_ms());
    char name[RK_TOKEN_NAME_MAX + 1];
    if (s && !rk_httpd_token_hash_check(d->h, s->token_hash, name, sizeof name)) {
        rk_info("dash", "session of %s ended: its token was removed", s->name);
        rk_sessions_remove(d->sessions, s->sid);
        return NULL;
    }
    return s;
}

/* The paths a session cookie opens: the dashboard's, never the API's
 * (which needs a bearer token, so a cookie can never be ridden into it). */
static int dash_path(const char *p)
{
    return strcmp(p, "/") == 0 || strcmp(p, "/antraege") == 0 ||
           strncmp(p, "/antraege/", 10) == 0 || strcmp(p, "/abmelden") == 0 ||
           strcmp(p, "/protokoll") == 0;
}

static int authn(void *arg, const rk_httpd_req *rq, char *name, size_t namelen)
{
    rk_dash *d = arg;
    if (!dash_path(rq->path))
        return 0;
    rk_session *s = session_of(d, rq);
    if (!s)
        return 0;
    snprintf(name, namelen, "%s", s->name);
    return 1;
}

static void page_headers(rk_httpd_resp *rs, int status)
{
    rs->status = status;
    rs->content_type = "text/html; charset=utf-8";
    rk_httpd_set_header(rs, "Content-Security-Policy", csp);
    /* same-origin, not no-referrer: browsers send "Origin: null" with a
     * form POST under no-referrer, and the Origin check needs the real one */
    rk_httpd_set_header(rs, "Referrer-Policy", "same-origin");
}

static void redirect(rk_httpd_resp *rs, const char *location)
{
    rs->status = 303;
    rs->content_type = "text/html; charset=utf-8";
    rs->body.len = 0;
    rk_httpd_set_header(rs, "Location", location);
    rk_httpd_set_header(rs, "Content-Security-Policy", csp);
    put(&rs->body, "<!DOCTYPE html><html lang=\"de\"><head><meta charset=\"utf-8\"><title>"
                   "Weiterleitung</title></head><body><p><a href=\"");
    esc(&rs->body, location);
    put(&rs->body, "\">Weiter</a></p></body></html>\n");
}

enum { NAV_NONE, NAV_OVERVIEW, NAV_QUEUE, NAV_REVIEW, NAV_LOG };

/* The start of every page up to <main>; s NULL on the login page (no
 * navigation, no logout). */
static void page_begin(rk_buf *b, const char *title, const rk_session *s, int nav)
{
    put(b, "<!DOCTYPE html>\n<html lang=\"de\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    esc(b, title);
    put(b, " – rekey</title>\n<link rel=\"stylesheet\" href=\"/static/dash.css\">\n"
           "<script src=\"/static/dash.js\" defer></script>\n</head>\n<body>\n"
           "<a class=\"skip\" href=\"#inhalt\">Zum Inhalt springen</a>\n<header>\n"
           "<p class=\"brand\">rekey – Antragseingang</p>\n");
    if (s) {
        static const struct {
            int id;
            const char *href, *label;
        } items[] = {{NAV_OVERVIEW, "/", "Übersicht"},
                     {NAV_QUEUE, "/antraege", "Warteschlange"},
                     {NAV_REVIEW, "/antraege?status=review", "Zur Klärung"},
                     {NAV_LOG, "/protokoll", "Protokoll"}};
        put(b, "<nav aria-label=\"Hauptnavigation\"><ul>\n");
        for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
            putf(b, "<li><a href=\"%s\"%s>%s</a></li>\n", items[i].href,
                 nav == items[i].id ? " aria-current=\"page\"" : "", items[i].label);
        put(b, "</ul></nav>\n<form method=\"post\" action=\"/abmelden\">"
               "<input type=\"hidden\" name=\"csrf\" value=\"");
        put(b, s->csrf); /* hex */
        put(b, "\"><span>Angemeldet als ");
        esc(b, s->name);
        put(b, "</span> <button type=\"submit\">Abmelden</button></form>\n");
    }
    put(b, "</header>\n<main id=\"inhalt\">\n");
}

static void page_end(rk_buf *b)
{
    put(b, "</main>\n</body>\n</html>\n");
}

/* A short page with a heading and one message (errors, refusals). */
static void message_page(rk_httpd_resp *rs, int status, const rk_session *s, const char *title,
                         const char *text)
{
    rs->body.len = 0;
    page_headers(rs, status);
    page_begin(&rs->body, title, s, NAV_NONE);
    put(&rs->body, "<h1>");
    esc(&rs->body, title);
    put(&rs->body, "</h1>\n<p class=\"msg error\" role=\"alert\">");
    esc(&rs->body, text);
    put(&rs->body, "</p>\n<p><a href=\"/\">Zur Übersicht</a></p>\n");
    page_end(&rs->body);
}

/* The flash message of the session (outcome of the last decision), once. */
static void put_flash(rk_buf *b, rk_session *s)
{
    if (!s || !s->flash[0])
        return;
    putf(b, "<p class=\"msg%s\" role=\"%s\" tabindex=\"-1\">", s->flash_error ? " error" : "",
         s->flash_error ? "alert" : "status");
    esc(b, s->flash);
    put(b, "</p>\n");
    s->flash[0] = '\0';
    s->flash_error = 0;
}

/* ---- forms ----------------------------------------------------------------- */

enum { F_CSRF, F_FELD, F_WERT, F_GRUND, F_BEST, F_NEUKEY, F_TOKEN, F_WEITER, F_N };
static const char *const form_keys[F_N] = {"csrf",       "feld",     "wert",
                                           "grund",      "bestaetigt", "neuer_schluessel",
                                           "token",      "weiter"};

typedef struct form {
    char *v[F_N];
    int bad; /* a field twice, a NUL inside a value, no memory */
} form;

static void on_field(void *arg, const char *name, const char *value, size_t len)
{
    form *f = arg;
    for (size_t i = 0; i < F_N; i++) {
        if (strcmp(name, form_keys[i]) != 0)
            continue;
        if (f->v[i] || memchr(value, '\0', len)) {
            f->bad = 1;
            return;
        }
        if (!(f->v[i] = rk_strndup(value, len)))
            f->bad = 1;
        return;
    }
}

static void form_free(form *f)
{
    for (size_t i = 0; i < F_N; i++) {
        if (f->v[i] && i == F_TOKEN)
            OPENSSL_cleanse(f->v[i], strlen(f->v[i]));
        free(f->v[i]);
    }
}

/* Origin (or else Referer), when the browser sends one, must name the
 * host the request was sent to.  Behind a TLS proxy the proxy passes the
 * Host header on, so scheme is not compared, only host and port. */
static int origin_ok(const rk_httpd_req *rq)
{
    const char *o = rk_httpd_header(rq, "Origin");
    const char *src = o ? o : rk_httpd_header(rq, "Referer");
    if (!src)
        return 1;
    const char *host = rk_httpd_header(rq, "Host");
    const char *p = strstr(src, "://");
    if (!host || !*host || !p)
        return 0;
    p += 3;
    size_t hl = strlen(host);
    if (strncasecmp(p, host, hl) != 0)
        return 0;
    return p[hl] == '\0' || p[hl] == '/';
}

static const char csrf_refusal[] =
    "Die Anfrage wurde abgelehnt: Das Formular ist abgelaufen oder stammt nicht von dieser "
    "Seite. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.";

/*
 * The start of every state-changing request but the login: reads the
 * form, checks Origin/Referer and the session's CSRF token (constant
 * time).  Returns the session, or NULL with a 403 (or 400) page in rs.
 */
static rk_session *post_begin(rk_dash *d, const rk_httpd_req *rq, rk_httpd_resp *rs, form *f)
{
    memset(f, 0, sizeof *f);
    int rc = rk_httpd_form(rq, on_field, f);
    rk_session *s = session_of(d, rq);
    if (!origin_ok(rq) || !s || !rk_token_equal(f->v[F_CSRF], s->csrf)) {
        rk_info("dash", "%s %s refused: %s", rq->method, rq->path,
                !origin_ok(rq) ? "foreign Origin/Referer"
                : !s           ? "no session"
                               : "CSRF token missing or wrong");
        message_page(rs, 403, s, "Anfrage abgelehnt", csrf_refusal);
        return NULL;
    }
    if (rc || f->bad) {
        message_page(rs, 400, s, "Formular fehlerhaft",
                     "Das Formular konnte nicht gelesen werden. Bitte die Seite neu laden.");
        return NULL;
    }
    return s;
}

/* ---- login and logout ------------------------------------------------------ */

/* A path to return to after the login: ours only (one leading '/', no
 * scheme or host, no backslash); "/" otherwise. */
static const char *safe_next(const char *w)
{
    if (!w || w[0] != '/' || w[1] == '/' || strchr(w, '\\') || strlen(w) > 512)
        return "/";
    for (const unsigned char *p = (const unsigned char *)w; *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            return "/";
    return dash_path(w) || strncmp(w, "/antraege?", 10) == 0 ||
                   strncmp(w, "/protokoll?", 11) == 0
               ? w
               : "/";
}

static void login_page(rk_httpd_resp *rs, int status, const char *next, const char *error,
                       const char *notice)
{
    rk_buf *b = &rs->body;
    b->len = 0;
    page_headers(rs, status);
    page_begin(b, "Anmelden", NULL, NAV_NONE);
    put(b, "<h1>Anmelden</h1>\n");
    if (error) {
        put(b, "<p class=\"msg error\" role=\"alert\" id=\"anmelde-fehler\">");
        esc(b, error);
        put(b, "</p>\n");
    } else if (notice) {
        put(b, "<p class=\"msg\" role=\"status\">");
        esc(b, notice);
        put(b, "</p>\n");
    }
    put(b, "<p>Melden Sie sich mit Ihrem persönlichen Zugangsschlüssel an. Der Betrieb "
           "erstellt ihn mit <code>rekeyctl token add NAME</code>.</p>\n"
           "<form method=\"post\" action=\"/anmelden\">\n"
           "<label for=\"token\">Zugangsschlüssel</label>\n"
           "<input type=\"password\" id=\"token\" name=\"token\" required "
           "autocomplete=\"current-password\" spellcheck=\"false\"");
    if (error)
        put(b, " aria-describedby=\"anmelde-fehler\" aria-invalid=\"true\"");
    put(b, ">\n<input type=\"hidden\" name=\"weiter\" value=\"");
    esc(b, safe_next(next));
    put(b, "\">\n<div><button type=\"submit\">Anmelden</button></div>\n</form>\n");
    page_end(b);
}

/* Unauthenticated requests to a page: to the login form, and back after. */
static void h_login_redirect(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    (void)arg;
    rk_buf loc;
    rk_buf_init(&loc, 2048);
    put(&loc, "/anmelden");
    if (strcmp(rq->method, "GET") == 0 && strcmp(rq->path, "/") != 0) {
        put(&loc, "?weiter=");
        url_part(&loc, safe_next(rq->path));
    }
    redirect(rs, loc.data);
    rk_buf_free(&loc);
}

static void h_login_get(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    (void)arg;
    const char *bye = rk_httpd_query(rq, "abgemeldet");
    login_page(rs, 200, rk_httpd_query(rq, "weiter"), NULL,
               bye ? "Sie sind abgemeldet." : NULL);
}

static void set_cookie(rk_dash *d, rk_httpd_resp *rs, const char *sid, int clear)
{
    char c[256];
    snprintf(c, sizeof c, "%s=%s; HttpOnly; SameSite=Strict; Path=/%s%s", COOKIE, sid,
             clear ? "; Max-Age=0" : "", d->cookie_secure ? "; Secure" : "");
    rk_httpd_set_header(rs, "Set-Cookie", c);
    OPENSSL_cleanse(c, sizeof c);
}

static void h_login_post(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_dash *d = arg;
    form f;
    memset(&f, 0, sizeof f);
    int rc = rk_httpd_form(rq, on_field, &f);
    if (!origin_ok(rq)) {
        message_page(rs, 403, NULL, "Anfrage abgelehnt", csrf_refusal);
        form_free(&f);
        return;
    }
    char name[RK_TOKEN_NAME_MAX + 1] = "";
    const char *tok = f.v[F_TOKEN];
    int ok = !rc && !f.bad && tok && *tok && strlen(tok) < TOKEN_MAX &&
             rk_httpd_token_check(d->h, tok, name, sizeof name);
    if (!ok) {
        rk_info("dash", "login refused");
        login_page(rs, 403, f.v[F_WEITER], "Der Zugangsschlüssel ist nicht gültig.", NULL);
        form_free(&f);
        return;
    }
    rk_session *s = rk_sessions_add(d->sessions, name, rk_now_ms());
    if (s)
        rk_sha256_hex(tok, strlen(tok), s->token_hash);
    if (!s) {
        login_page(rs, 500, f.v[F_WEITER],
                   "Die Anmeldung ist gerade nicht möglich (keine Zufallszahlen).", NULL);
        form_free(&f);
        return;
    }
    rk_info("dash", "login: %s", name);
    set_cookie(d, rs, s->sid, 0);
    redirect(rs, safe_next(f.v[F_WEITER]));
    form_free(&f);
}

static void h_logout(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_dash *d = arg;
    form f;
    rk_session *s = post_begin(d, rq, rs, &f);
    if (s) {
        rk_info("dash", "logout: %s", s->name);
        rk_sessions_remove(d->sessions, s->sid);
        set_cookie(d, rs, "", 1);
        redirect(rs, "/anmelden?abgemeldet=1");
    }
    form_free(&f);
}

/* ---- assets ---------------------------------------------------------------- */

static void h_css(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    (void)arg;
    (void)rq;
    rk_httpd_text(rs, 200, "text/css; charset=utf-8", rk_dash_css);
    rk_httpd_set_header(rs, "Cache-Control", "max-age=3600");
}

static void h_js(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    (void)arg;
    (void)rq;
    rk_httpd_text(rs, 200, "text/javascript; charset=utf-8", rk_dash_js);
    rk_httpd_set_header(rs, "Cache-Control", "max-age=3600");
}

/* ---- lists ----------------------------------------------------------------- */

/* A table of jobs (rows of rk_store_find_json). */
static void jobs_table(rk_buf *b, json_t *rows, const char *caption)
{
    put(b, "<table>\n<caption>");
    esc(b, caption);
    put(b, "</caption>\n<thead><tr><th scope=\"col\">Nr.</th><th scope=\"col\">Antragsart</th>"
           "<th scope=\"col\">Status</th><th scope=\"col\">Eingang</th>"
           "<th scope=\"col\">Referenz</th><th scope=\"col\">Quelle</th>"
           "<th scope=\"col\">Auffälligkeiten</th><th scope=\"col\">Bearbeitungsfrist</th>"
           "</tr></thead>\n<tbody>\n");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        long long id = jint(r, "id");
        putf(b, "<tr><th scope=\"row\"><a href=\"/antraege/%lld\">Antrag %lld</a></th><td>", id,
             id);
        esc(b, jstr(r, "job") ? jstr(r, "job") : "–");
        put(b, "</td><td>");
        esc(b, rk_state_german(jstr(r, "state")));
        put(b, "</td><td>");
        put_time(b, jstr(r, "received_at"));
        put(b, "</td><td>");
        esc(b, jstr(r, "reference") ? jstr(r, "reference") : "–");
        put(b, "</td><td>");
        esc(b, jstr(r, "source"));
        if (jstr(r, "source_ref")) {
            put(b, "<br><code>");
            esc(b, jstr(r, "source_ref"));
            put(b, "</code>");
        }
        put(b, "</td><td>");
        if (jstr(r, "codes")) {
            put(b, "<code>");
            esc(b, jstr(r, "codes"));
            put(b, "</code>");
        } else {
            put(b, "–");
        }
        put(b, "</td><td>");
        if (jstr(r, "deadline_at"))
            put_time(b, jstr(r, "deadline_at"));
        else
            put(b, "–");
        if (json_is_true(json_object_get(r, "overdue")))
            put(b, " <span class=\"overdue\">Frist überschritten</span>");
        put(b, "</td></tr>\n");
    }
    if (json_array_size(rows) == 0)
        put(b, "<tr><td colspan=\"8\">Keine Anträge.</td></tr>\n");
    put(b, "</tbody>\n</table>\n");
}

static long long state_count(json_t *o, const char *state)
{
    return (long long)json_integer_value(json_object_get(o, state));
}

static void h_overview(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_dash *d = arg;
    rk_session *s = session_of(d, rq);
    rk_store *st = rk_api_store(d->api);
    json_t *status = rk_store_status_json(st);
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.overdue = 1;
    f.limit = OVERVIEW_ROWS;
    json_t *late = status ? rk_store_find_json(st, &f) : NULL;
    memset(&f, 0, sizeof f);
    f.state = RK_ST_FAILED;
    f.limit = OVERVIEW_ROWS;
    json_t *failed = late ? rk_store_find_json(st, &f) : NULL;
    if (!failed) {
        json_decref(status);
        json_decref(late);
        message_page(rs, 500, s, "Fehler", "Die Datenbank kann gerade nicht gelesen werden.");
        return;
    }
    rk_buf *b = &rs->body;
    b->len = 0;
    page_headers(rs, 200);
    page_begin(b, "Übersicht", s, NAV_OVERVIEW);
    put(b, "<h1>Übersicht</h1>\n");
    put_flash(b, s);

    put(b, "<h2 id=\"frist\">Frist überschritten</h2>\n");
    if (json_array_size(late))
        jobs_table(b, late, "Anträge, deren Bearbeitungsfrist überschritten ist (älteste "
                            "Fristen zuerst bearbeiten)");
    else
        put(b, "<p>Keine Bearbeitungsfrist ist überschritten.</p>\n");

    json_t *by_state = json_object_get(status, "by_state");
    put(b, "<h2>Anträge nach Status</h2>\n<table>\n<caption>Anzahl der Anträge je Status "
           "(gesamt ");
    putf(b, "%lld", jint(status, "total"));
    put(b, ")</caption>\n<thead><tr><th scope=\"col\">Status</th>"
           "<th scope=\"col\" class=\"num\">Anzahl</th></tr></thead>\n<tbody>\n");
    static const char *const order[] = {RK_ST_REVIEW,     RK_ST_FAILED,    RK_ST_RETRY_WAIT,
                                        RK_ST_RECEIVED,   RK_ST_VALIDATED, RK_ST_MAPPED,
                                        RK_ST_READY,      RK_ST_DELIVERING, RK_ST_DELIVERED,
                                        RK_ST_REJECTED};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        putf(b, "<tr><th scope=\"row\"><a href=\"/antraege?status=%s\">", order[i]);
        esc(b, rk_state_german(order[i]));
        putf(b, "</a></th><td class=\"num\">%lld</td></tr>\n", state_count(by_state, order[i]));
    }
    put(b, "</tbody>\n</table>\n");

    put(b, "<h2>Anträge nach Antragsart</h2>\n<table>\n<caption>Anzahl je Antragsart und "
           "Status</caption>\n<thead><tr><th scope=\"col\">Antragsart</th>"
           "<th scope=\"col\" class=\"num\">zur Klärung</th>"
           "<th scope=\"col\" class=\"num\">fehlgeschlagen</th>"
           "<th scope=\"col\" class=\"num\">in Bearbeitung</th>"
           "<th scope=\"col\" class=\"num\">übertragen</th>"
           "<th scope=\"col\" class=\"num\">abgelehnt</th>"
           "<th scope=\"col\" class=\"num\">gesamt</th></tr></thead>\n<tbody>\n");
    const char *job;
    json_t *counts;
    json_object_foreach(json_object_get(status, "by_job"), job, counts) {
        long long all = 0, busy = 0;
        const char *k;
        json_t *v;
        json_object_foreach(counts, k, v) {
            all += (long long)json_integer_value(v);
            if (strcmp(k, RK_ST_REVIEW) && strcmp(k, RK_ST_FAILED) && strcmp(k, RK_ST_DELIVERED) &&
                strcmp(k, RK_ST_REJECTED))
                busy += (long long)json_integer_value(v);
        }
        put(b, "<tr><th scope=\"row\"><a href=\"/antraege?verfahren=");
        url_part(b, job);
        put(b, "\">");
        esc(b, job);
        putf(b, "</a></th><td class=\"num\">%lld</td><td class=\"num\">%lld</td>"
                "<td class=\"num\">%lld</td><td class=\"num\">%lld</td><td class=\"num\">%lld"
                "</td><td class=\"num\">%lld</td></tr>\n",
             state_count(counts, RK_ST_REVIEW), state_count(counts, RK_ST_FAILED), busy,
             state_count(counts, RK_ST_DELIVERED), state_count(counts, RK_ST_REJECTED), all);
    }
    put(b, "</tbody>\n</table>\n");

    put(b, "<h2>Eingangsquellen und Anbindungen</h2>\n");
    json_t *sources = json_object_get(status, "sources");
    if (json_array_size(sources)) {
        put(b, "<table>\n<caption>Zustand der abgerufenen Eingangsquellen</caption>\n"
               "<thead><tr><th scope=\"col\">Quelle</th><th scope=\"col\">Zustand</th>"
               "<th scope=\"col\">letzter Abruf</th><th scope=\"col\">zuletzt erfolgreich</th>"
               "<th scope=\"col\">letzter Fehler</th>"
               "<th scope=\"col\" class=\"num\">Fehlversuche in Folge</th></tr></thead>\n"
               "<tbody>\n");
        size_t i;
        json_t *r;
        json_array_foreach(sources, i, r) {
            int ok = jint(r, "ok") != 0;
            put(b, "<tr><th scope=\"row\">");
            esc(b, jstr(r, "source"));
            putf(b, "</th><td%s>%s</td><td>", ok ? "" : " class=\"overdue\"",
                 ok ? "in Ordnung" : "gestört");
            put_time(b, jstr(r, "last_poll_at"));
            put(b, "</td><td>");
            put_time(b, jstr(r, "last_ok_at"));
            put(b, "</td><td>");
            esc(b, jstr(r, "last_error") ? jstr(r, "last_error") : "–");
            putf(b, "</td><td class=\"num\">%lld</td></tr>\n", jint(r, "fails"));
        }
        put(b, "</tbody>\n</table>\n");
    } else {
        put(b, "<p>Keine abgerufenen Eingangsquellen (nur Eingangsordner).</p>\n");
    }
    json_t *paused = json_object_get(status, "paused");
    if (json_array_size(paused)) {
        put(b, "<table>\n<caption>Angehaltene Anbindungen (rekeyctl resume setzt sie "
               "fort)</caption>\n<thead><tr><th scope=\"col\">Antragsart</th>"
               "<th scope=\"col\">Anbindung</th><th scope=\"col\">Grund</th>"
               "<th scope=\"col\">seit</th></tr></thead>\n<tbody>\n");
        size_t i;
        json_t *r;
        json_array_foreach(paused, i, r) {
            put(b, "<tr><th scope=\"row\">");
            esc(b, jstr(r, "job"));
            put(b, "</th><td>");
            esc(b, jstr(r, "connector"));
            put(b, "</td><td>");
            esc(b, jstr(r, "reason") ? jstr(r, "reason") : "–");
            put(b, "</td><td>");
            put_time(b, jstr(r, "paused_at"));
            put(b, "</td></tr>\n");
        }
        put(b, "</tbody>\n</table>\n");
    } else {
        put(b, "<p>Alle Anbindungen an die Fachverfahren arbeiten.</p>\n");
    }

    put(b, "<h2>Letzte Fehlschläge</h2>\n");
    if (json_array_size(failed))
        jobs_table(b, failed, "Zuletzt fehlgeschlagene Anträge (neueste zuerst)");
    else
        put(b, "<p>Keine fehlgeschlagenen Anträge.</p>\n");
    page_end(b);
    json_decref(status);
    json_decref(late);
    json_decref(failed);
}

/* A query parameter of the queue, "" counted as absent. */
static const char *qparam(const rk_httpd_req *rq, const char *name)
{
    const char *v = rk_httpd_query(rq, name);
    return v && *v ? v : NULL;
}

/*
 * One paging link of the queue as a list item: the same filters (and page
 * size when one was asked for, limit > 0), older than job `vor` when it is
 * not 0.  attrs is put into the <a> tag as it is.
 */
static void queue_link(rk_buf *b, const rk_list_filter *f, const char *text, int64_t limit,
                       long long vor, const char *attrs, const char *label)
{
    rk_buf q;
    rk_buf_init(&q, 4096);
    put(&q, "/antraege?status=");
    url_part(&q, f->state);
    put(&q, "&verfahren=");
    url_part(&q, f->job);
    put(&q, "&quelle=");
    url_part(&q, f->source);
    put(&q, "&suche=");
    url_part(&q, text);
    if (f->overdue)
        put(&q, "&frist=1");
    if (limit > 0)
        putf(&q, "&anzahl=%lld", (long long)limit);
    if (vor)
        putf(&q, "&vor=%lld", vor);
    put(b, "<li><a href=\"");
    esc(b, q.data);
    putf(b, "\"%s>", attrs);
    put(b, label);
    put(b, "</a></li>\n");
    rk_buf_free(&q);
}

static void h_queue(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_dash *d = arg;
    rk_session *s = session_of(d, rq);
    rk_store *st = rk_api_store(d->api);
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.state = qparam(rq, "status");
    f.job = qparam(rq, "verfahren");
    f.source = qparam(rq, "quelle");
    const char *text = qparam(rq, "suche");
    const char *ov = qparam(rq, "frist");
    f.overdue = ov && strcmp(ov, "1") == 0;
    int64_t before = 0, limit = QUEUE_LIMIT_DEFAULT;
    const char *bv = qparam(rq, "vor"), *lv = qparam(rq, "anzahl");
    if ((f.state && !rk_state_valid(f.state)) ||
        (bv && (rk_parse_int64(bv, &before) != 0 || before < 1)) ||
        (lv && (rk_parse_int64(lv, &limit) != 0 || limit < 1 || limit > QUEUE_LIMIT_MAX)) ||
        (text && strlen(text) > 200)) {
        message_page(rs, 400, s, "Ungültiger Filter",
                     "Ein Filter der Warteschlange ist ungültig. Bitte die Auswahl neu "
                     "treffen.");
        return;
    }
    f.before_id = before;
    f.limit = (size_t)limit + 1;
    json_t *rows = rk_store_search_json(st, &f, text);
    json_t *status = rows ? rk_store_status_json(st) : NULL;
    if (!status) {
        json_decref(rows);
        message_page(rs, 500, s, "Fehler", "Die Datenbank kann gerade nicht gelesen werden.");
        return;
    }
    int more = json_array_size(rows) > (size_t)limit;
    if (more)
        json_array_remove(rows, (size_t)limit);

    rk_buf *b = &rs->body;
    b->len = 0;
    page_headers(rs, 200);
    int review_only = f.state && strcmp(f.state, RK_ST_REVIEW) == 0 && !f.job && !f.source &&
                      !text && !f.overdue;
    page_begin(b, "Warteschlange", s, review_only ? NAV_REVIEW : NAV_QUEUE);
    put(b, "<h1>Warteschlange</h1>\n");
    put_flash(b, s);
    put(b, "<form method=\"get\" action=\"/antraege\" class=\"filters\" role=\"search\" "
           "aria-label=\"Anträge filtern\">\n<div><label for=\"f-status\">Status</label>\n"
           "<select id=\"f-status\" name=\"status\"><option value=\"\">alle</option>\n");
    for (size_t i = 0; rk_states[i]; i++) {
        putf(b, "<option value=\"%s\"%s>", rk_states[i],
             f.state && strcmp(f.state, rk_states[i]) == 0 ? " selected" : "");
        esc(b, rk_state_german(rk_states[i]));
        put(b, "</option>\n");
    }
    put(b, "</select></div>\n<div><label for=\"f-verfahren\">Antragsart</label>\n"
           "<select id=\"f-verfahren\" name=\"verfahren\"><option value=\"\">alle</option>\n");
    const char *job;
    json_t *counts;
    json_object_foreach(json_object_get(status, "by_job"), job, counts) {
        (void)counts;
        put(b, "<option value=\"");
        esc(b, job);
        put(b, "\"");
        if (f.job && strcmp(f.job, job) == 0)
            put(b, " selected");
        put(b, ">");
        esc(b, job);
        put(b, "</option>\n");
    }
    put(b, "</select></div>\n<div><label for=\"f-quelle\">Quelle</label>\n"
           "<input type=\"text\" id=\"f-quelle\" name=\"quelle\" value=\"");
    esc(b, f.source);
    put(b, "\" aria-describedby=\"f-quelle-hilfe\"><br><small id=\"f-quelle-hilfe\">z. B. "
           "<code>http:portal</code></small></div>\n<div><label for=\"f-suche\">Suche</label>\n"
           "<input type=\"text\" id=\"f-suche\" name=\"suche\" value=\"");
    esc(b, text);
    put(b, "\" aria-describedby=\"f-suche-hilfe\"><br><small id=\"f-suche-hilfe\">Nummer, "
           "Referenz oder Dateiname</small></div>\n<div><input type=\"checkbox\" id=\"f-frist\" "
           "name=\"frist\" value=\"1\"");
    if (f.overdue)
        put(b, " checked");
    put(b, "> <label for=\"f-frist\" class=\"inline\">Nur Frist überschritten</label></div>\n"
           "<div><button type=\"submit\">Filtern</button></div>\n</form>\n");

    char cap[128];
    snprintf(cap, sizeof cap, "%zu Anträge auf dieser Seite, neueste zuerst%s",
             json_array_size(rows), before ? " (ältere Seite)" : "");
    jobs_table(b, rows, cap);

    put(b, "<nav aria-label=\"Seiten\"><ul>\n");
    if (before)
        queue_link(b, &f, text, lv ? limit : 0, 0, "", "Neueste Anträge");
    if (more)
        queue_link(b, &f, text, lv ? limit : 0,
                   jint(json_array_get(rows, (size_t)limit - 1), "id"), " rel=\"next\"",
                   "Ältere Anträge");
    put(b, "</ul></nav>\n");
    page_end(b);
    json_decref(rows);
    json_decref(status);
}

/* ---- Protokoll: the audit trail of every job ---------------------------------- */

#define LOG_LIMIT 100
#define LOG_LIMIT_MAX 1000

/*
 * The events of a time window (seit: an age like 1d or 8h, or a date;
 * default the last 24 hours), of one Antragsart or all, oldest first in
 * pages of LOG_LIMIT (anzahl; nach = the last id shown), as rk_store_events_json
 * reads them for the API and `rekeyctl events`.
 */
static void h_log(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_dash *d = arg;
    rk_session *s = session_of(d, rq);
    const char *seit = qparam(rq, "seit");
    const char *job = qparam(rq, "verfahren");
    const char *nv = qparam(rq, "nach"), *lv = qparam(rq, "anzahl");
    char since[40];
    int64_t after = 0, limit = LOG_LIMIT;
    if (rk_api_parse_time(seit ? seit : "1d", rk_now_ms(), since, sizeof since) != 0 ||
        (nv && (rk_parse_int64(nv, &after) != 0 || after < 0)) ||
        (lv && (rk_parse_int64(lv, &limit) != 0 || limit < 1 || limit > LOG_LIMIT_MAX)) ||
        (job && strlen(job) > 200)) {
        message_page(rs, 400, s, "Ungültiger Filter",
                     "Der Zeitraum ist ungültig: ein Alter wie 8h oder 7d, oder ein Datum "
                     "wie 26.11.2026.");
        return;
    }
    json_t *rows =
        rk_store_events_json(rk_api_store(d->api), since, job, after, (size_t)limit + 1);
    if (!rows) {
        message_page(rs, 500, s, "Fehler", "Die Datenbank kann gerade nicht gelesen werden.");
        return;
    }
    int more = json_array_size(rows) > (size_t)limit;
    if (more)
        json_array_remove(rows, (size_t)limit);
    rk_buf *b = &rs->body;
    b->len = 0;
    page_headers(rs, 200);
    page_begin(b, "Protokoll", s, NAV_LOG);
    put(b, "<h1>Protokoll</h1>\n<form method=\"get\" action=\"/protokoll\" class=\"filters\" "
           "role=\"search\" aria-label=\"Protokoll filtern\">\n<div><label for=\"p-seit\">"
           "Zeitraum seit</label>\n<input type=\"text\" id=\"p-seit\" name=\"seit\" value=\"");
    esc(b, seit ? seit : "1d");
    put(b, "\" aria-describedby=\"p-seit-hilfe\"><br><small id=\"p-seit-hilfe\">ein Alter wie "
           "<code>8h</code> oder <code>7d</code>, oder ein Datum wie <code>26.11.2026</code>"
           "</small></div>\n<div><label for=\"p-verfahren\">Antragsart</label>\n"
           "<input type=\"text\" id=\"p-verfahren\" name=\"verfahren\" value=\"");
    esc(b, job);
    put(b, "\"></div>\n<div><button type=\"submit\">Anzeigen</button></div>\n</form>\n"
           "<table>\n<caption>Alle Schritte aller Anträge im Zeitraum, älteste zuerst"
           "</caption>\n<thead><tr><th scope=\"col\">Zeit</th><th scope=\"col\">Antrag</th>"
           "<th scope=\"col\">Antragsart</th><th scope=\"col\">Wer</th>"
           "<th scope=\"col\">von</th><th scope=\"col\">nach</th><th scope=\"col\">Grund</th>"
           "</tr></thead>\n<tbody>\n");
    size_t i;
    json_t *e;
    json_array_foreach(rows, i, e) {
        put(b, "<tr><th scope=\"row\">");
        put_time(b, jstr(e, "at"));
        putf(b, "</th><td><a href=\"/antraege/%lld\">Antrag %lld</a></td><td>",
             jint(e, "job_id"), jint(e, "job_id"));
        esc(b, jstr(e, "job") ? jstr(e, "job") : "–");
        put(b, "</td><td>");
        esc(b, jstr(e, "actor"));
        put(b, "</td><td>");
        esc(b, jstr(e, "from_state") ? rk_state_german(jstr(e, "from_state")) : "–");
        put(b, "</td><td>");
        esc(b, rk_state_german(jstr(e, "to_state")));
        put(b, "</td><td>");
        put_reason(b, jstr(e, "reason"));
        put(b, "</td></tr>\n");
    }
    if (json_array_size(rows) == 0)
        put(b, "<tr><td colspan=\"7\">Keine Einträge im Zeitraum.</td></tr>\n");
    put(b, "</tbody>\n</table>\n");
    if (more) {
        rk_buf q;
        rk_buf_init(&q, 4096);
        put(&q, "/protokoll?seit=");
        url_part(&q, seit ? seit : "1d");
        put(&q, "&verfahren=");
        url_part(&q, job);
        if (lv)
            putf(&q, "&anzahl=%lld", (long long)limit);
        putf(&q, "&nach=%lld", jint(json_array_get(rows, (size_t)limit - 1), "id"));
        put(b, "<nav aria-label=\"Seiten\"><ul><li><a href=\"");
        esc(b, q.data);
        put(b, "\" rel=\"next\">Weitere Einträge</a></li></ul></nav>\n");
        rk_buf_free(&q);
    }
    page_end(b);
    json_decref(rows);
}

/* ---- one Antrag -------------------------------------------------------------- */

static int64_t id_arg(const rk_httpd_req *rq)
{
    int64_t id;
    if (rq->n_args < 1 || rk_parse_int64(rq->args[0], &id) != 0 || id <= 0)
        return 0;
    return id;
}

/* Removes whitespace-only text nodes, so the dump indents the elements. */
static void strip_blanks(xmlNodePtr n)
{
    for (xmlNodePtr c = n->children; c;) {
        xmlNodePtr next = c->next;
        if (c->type == XML_TEXT_NODE && xmlIsBlankNode(c)) {
            xmlUnlinkNode(c);
            xmlFreeNode(c);
        } else if (c->type == XML_ELEMENT_NODE) {
            strip_blanks(c);
        }
        c = next;
    }
}

/* The stored document, pretty-printed when it is XML, always escaped. */
static void put_document(rk_dash *d, rk_buf *b, int64_t id)
{
    rk_store *st = rk_api_store(d->api);
    char *data = NULL, *uid = NULL;
    size_t len = 0;
    int rc = rk_store_load_payload(st, id, d->max_document, &data, &len, &uid);
    free(uid);
    if (rc == RK_E_NOTFOUND) {
        put(b, "<p>Das Dokument ist nicht mehr gespeichert (Löschung nach "
               "Aufbewahrungsfrist).</p>\n");
        return;
    }
    if (rc == RK_E_LIMIT) {
        putf(b, "<p>Das Dokument ist für die Anzeige zu groß (über %zu KiB); "
                "<code>rekeyctl show</code> oder die API liefern es.</p>\n",
             d->max_document >> 10);
        return;
    }
    if (rc) {
        put(b, "<p>Das Dokument kann nicht gelesen werden.</p>\n");
        return;
    }
    char *media = rk_store_media(st, id);
    int xml = !media || strstr(media, "xml");
    free(media);
    xmlChar *pretty = NULL;
    int plen = 0;
    if (xml) {
        const char *code;
        char m[256];
        xmlDocPtr doc = rk_doc_parse(data, len, &code, m, sizeof m);
        if (doc) {
            xmlNodePtr root = xmlDocGetRootElement(doc);
            if (root)
                strip_blanks(root);
            xmlDocDumpFormatMemoryEnc(doc, &pretty, &plen, "UTF-8", 1);
            xmlFreeDoc(doc);
        }
    }
    put(b, "<pre class=\"doc\" tabindex=\"0\" aria-label=\"Dokument des Antrags\"><code>");
    esc(b, pretty ? (const char *)pretty : data);
    put(b, "</code></pre>\n");
    xmlFree(pretty);
    free(data);
}

/* 1 when an open anomaly names field. */
static int field_flagged(json_t *anomalies, const char *field, rk_buf *codes)
{
    int hit = 0;
    size_t i;
    json_t *a;
    json_array_foreach(anomalies, i, a) {
        const char *f = jstr(a, "field");
        if (!f || strcmp(f, field) != 0 || !json_is_null(json_object_get(a, "resolved_at")))
            continue;
        if (hit++)
            put(codes, ", ");
        esc(codes, jstr(a, "code"));
    }
    return hit;
}

static void hidden(rk_buf *b, const char *name, const char *value)
{
    putf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
    esc(b, value);
    put(b, "\">\n");
}

static void action_forms(rk_buf *b, const rk_session *s, long long id, const char *state,
                         json_t *fields)
{
    int review = strcmp(state, RK_ST_REVIEW) == 0, failed = strcmp(state, RK_ST_FAILED) == 0;
    int finished = review || failed || strcmp(state, RK_ST_DELIVERED) == 0 ||
                   strcmp(state, RK_ST_REJECTED) == 0;
    put(b, "<h2 id=\"aktionen\">Aktionen</h2>\n");
    if (!finished) {
        put(b, "<p>Der Antrag ist in Bearbeitung; Aktionen sind erst danach möglich.</p>\n");
        return;
    }
    put(b, "<div class=\"actions\">\n");
    if (review && json_array_size(fields)) {
        putf(b, "<form method=\"post\" action=\"/antraege/%lld/korrigieren\">\n"
                "<fieldset><legend>Feld korrigieren</legend>\n",
             id);
        hidden(b, "csrf", s->csrf);
        put(b, "<label for=\"korr-feld\">Feld</label>\n<select id=\"korr-feld\" name=\"feld\" "
               "required>\n");
        size_t i;
        json_t *fl;
        json_array_foreach(fields, i, fl) {
            put(b, "<option value=\"");
            esc(b, jstr(fl, "name"));
            put(b, "\" data-wert=\"");
            esc(b, jstr(fl, "value") ? jstr(fl, "value") : "");
            put(b, "\">");
            esc(b, jstr(fl, "name"));
            put(b, "</option>\n");
        }
        put(b, "</select>\n<label for=\"korr-wert\">neuer Wert</label>\n"
               "<input type=\"text\" id=\"korr-wert\" name=\"wert\" autocomplete=\"off\">\n"
               "<div><button type=\"submit\" id=\"btn-korrigieren\">Korrigieren</button></div>\n"
               "</fieldset></form>\n");
    }
    if (review) {
        putf(b, "<form method=\"post\" action=\"/antraege/%lld/freigeben\">\n"
                "<fieldset><legend>Freigeben</legend>\n<p>Die Regeln werden erneut geprüft; "
                "danach wird der Antrag an das Fachverfahren übertragen.</p>\n",
             id);
        hidden(b, "csrf", s->csrf);
        put(b, "<button type=\"submit\" id=\"btn-freigeben\">Freigeben</button>\n"
               "</fieldset></form>\n");
    }
    if (failed) {
        putf(b, "<form method=\"post\" action=\"/antraege/%lld/wiederholen\">\n"
                "<fieldset><legend>Erneut versuchen</legend>\n<p>Die Versuche werden "
                "zurückgesetzt und der Antrag erneut übertragen.</p>\n",
             id);
        hidden(b, "csrf", s->csrf);
        put(b, "<button type=\"submit\" id=\"btn-wiederholen\">Erneut versuchen</button>\n"
               "</fieldset></form>\n");
    }
    if (review || failed) {
        putf(b, "<form method=\"post\" action=\"/antraege/%lld/ablehnen\">\n"
                "<fieldset><legend>Ablehnen</legend>\n",
             id);
        hidden(b, "csrf", s->csrf);
        put(b, "<label for=\"grund\">Begründung</label>\n<textarea id=\"grund\" name=\"grund\" "
               "required></textarea>\n<div><button type=\"submit\" class=\"danger\" "
               "id=\"btn-ablehnen\">Ablehnen</button></div>\n</fieldset></form>\n");
    }
    putf(b, "<form method=\"post\" action=\"/antraege/%lld/neu-verarbeiten\">\n"
            "<fieldset><legend>Neu verarbeiten</legend>\n<p>Das gespeicherte Dokument wird mit "
            "der aktuellen Antragsart als neuer Antrag verarbeitet; das Fachverfahren "
            "aktualisiert den vorhandenen Datensatz.</p>\n",
         id);
    hidden(b, "csrf", s->csrf);
    put(b, "<input type=\"checkbox\" id=\"neuer-schluessel\" name=\"neuer_schluessel\" "
           "value=\"1\"> <label for=\"neuer-schluessel\" class=\"inline\">als neuen "
           "Datensatz übertragen</label>\n"
           "<div><button type=\"submit\" class=\"secondary\" id=\"btn-neu\">Neu verarbeiten"
           "</button></div>\n</fieldset></form>\n");
    put(b, "</div>\n");
}

static void h_job(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_dash *d = arg;
    rk_session *s = session_of(d, rq);
    int64_t id = id_arg(rq);
    json_t *o = id ? rk_store_show_json(rk_api_store(d->api), id) : NULL;
    if (!o) {
        message_page(rs, 404, s, "Nicht gefunden", "Diesen Antrag gibt es nicht.");
        return;
    }
    rk_buf *b = &rs->body;
    b->len = 0;
    page_headers(rs, 200);
    char title[64];
    snprintf(title, sizeof title, "Antrag %lld", (long long)id);
    page_begin(b, title, s, NAV_NONE);
    const char *state = jstr(o, "state") ? jstr(o, "state") : "";
    putf(b, "<h1>Antrag %lld</h1>\n", (long long)id);
    put_flash(b, s);
    put(b, "<dl class=\"facts\">\n<dt>Antragsart</dt><dd>");
    esc(b, jstr(o, "job") ? jstr(o, "job") : "–");
    put(b, "</dd>\n<dt>Status</dt><dd id=\"status\">");
    esc(b, rk_state_german(state));
    put(b, "</dd>\n<dt>eingegangen</dt><dd>");
    put_time(b, jstr(o, "received_at"));
    put(b, "</dd>\n<dt>Referenz</dt><dd>");
    esc(b, jstr(o, "reference") ? jstr(o, "reference") : "–");
    put(b, "</dd>\n<dt>Quelle</dt><dd>");
    esc(b, jstr(o, "source"));
    put(b, " <code>");
    esc(b, jstr(o, "source_ref"));
    put(b, "</code></dd>\n<dt>Bearbeitungsfrist</dt><dd>");
    put_time(b, jstr(o, "deadline_at"));
    if (jstr(o, "deadline_at") && (!strcmp(state, RK_ST_REVIEW) || !strcmp(state, RK_ST_FAILED))) {
        char now[40];
        rk_time_iso(rk_now_ms(), now, sizeof now);
        if (strcmp(jstr(o, "deadline_at"), now) < 0)
            put(b, " <span class=\"overdue\">Frist überschritten</span>");
    }
    putf(b, "</dd>\n<dt>Versuche</dt><dd>%lld</dd>\n", jint(o, "attempts"));
    if (jstr(o, "last_error")) {
        put(b, "<dt>letzter Fehler</dt><dd>");
        esc(b, jstr(o, "last_error"));
        put(b, "</dd>\n");
    }
    if (jint(o, "replay_of"))
        putf(b, "<dt>neu verarbeitet aus</dt><dd><a href=\"/antraege/%lld\">Antrag %lld</a>"
                "</dd>\n",
             jint(o, "replay_of"), jint(o, "replay_of"));
    put(b, "</dl>\n");

    json_t *anomalies = json_object_get(o, "anomalies");
    put(b, "<h2>Auffälligkeiten</h2>\n");
    if (json_array_size(anomalies)) {
        put(b, "<table>\n<caption>Auffälligkeiten des Antrags; offene sind hervorgehoben"
               "</caption>\n<thead><tr><th scope=\"col\">Code</th><th scope=\"col\">Feld</th>"
               "<th scope=\"col\">Schwere</th><th scope=\"col\">Meldung</th>"
               "<th scope=\"col\">Stand</th></tr></thead>\n<tbody>\n");
        size_t i;
        json_t *a;
        json_array_foreach(anomalies, i, a) {
            int open = json_is_null(json_object_get(a, "resolved_at"));
            const char *sev = jstr(a, "severity");
            putf(b, "<tr%s><th scope=\"row\"><code>", open ? " class=\"open\"" : "");
            esc(b, jstr(a, "code"));
            put(b, "</code></th><td>");
            esc(b, jstr(a, "field") ? jstr(a, "field") : "–");
            putf(b, "</td><td class=\"sev-%s\">", sev && !strcmp(sev, "block") ? "block" : "warn");
            esc(b, severity_german(sev));
            put(b, "</td><td>");
            esc(b, jstr(a, "message") ? jstr(a, "message") : "–");
            put(b, "</td><td>");
            if (open) {
                put(b, "offen");
            } else {
                put(b, "erledigt von ");
                esc(b, jstr(a, "resolved_by") ? jstr(a, "resolved_by") : "–");
                put(b, " am ");
                put_time(b, jstr(a, "resolved_at"));
            }
            put(b, "</td></tr>\n");
        }
        put(b, "</tbody>\n</table>\n");
    } else {
        put(b, "<p>Keine Auffälligkeiten.</p>\n");
    }

    json_t *fields = json_object_get(o, "fields");
    put(b, "<h2>Felder</h2>\n");
    if (json_array_size(fields)) {
        put(b, "<table>\n<caption>Wert im Antrag und übernommener Wert je Feld, mit der "
               "Herkunft (XPath); Felder mit offener Auffälligkeit sind markiert</caption>\n"
               "<thead><tr><th scope=\"col\">Feld</th><th scope=\"col\">Wert im Antrag</th>"
               "<th scope=\"col\">übernommener Wert</th><th scope=\"col\">XPath</th>"
               "<th scope=\"col\">Auffälligkeit</th></tr></thead>\n<tbody>\n");
        size_t i;
        json_t *fl;
        json_array_foreach(fields, i, fl) {
            rk_buf codes;
            rk_buf_init(&codes, 4096);
            int flagged = field_flagged(anomalies, jstr(fl, "name"), &codes);
            putf(b, "<tr%s><th scope=\"row\">", flagged ? " class=\"marked\"" : "");
            esc(b, jstr(fl, "name"));
            put(b, "</th><td>");
            esc(b, jstr(fl, "source") ? jstr(fl, "source") : "–");
            put(b, "</td><td>");
            esc(b, jstr(fl, "value") ? jstr(fl, "value") : "–");
            put(b, "</td><td><code>");
            esc(b, jstr(fl, "xpath") ? jstr(fl, "xpath") : "–");
            put(b, "</code></td><td>");
            if (flagged) {
                put(b, "<strong>markiert:</strong> <code>");
                rk_buf_append(b, codes.data, codes.len); /* escaped above */
                put(b, "</code>");
            } else {
                put(b, "–");
            }
            put(b, "</td></tr>\n");
            rk_buf_free(&codes);
        }
        put(b, "</tbody>\n</table>\n");
    } else {
        put(b, "<p>Noch keine übernommenen Felder.</p>\n");
    }

    if (s)
        action_forms(b, s, (long long)id, state, fields);

    json_t *corr = json_object_get(o, "corrections");
    if (json_array_size(corr)) {
        put(b, "<h2>Korrekturen</h2>\n<table>\n<caption>Korrigierte Felder</caption>\n"
               "<thead><tr><th scope=\"col\">Feld</th><th scope=\"col\">alter Wert</th>"
               "<th scope=\"col\">neuer Wert</th><th scope=\"col\">von</th>"
               "<th scope=\"col\">am</th></tr></thead>\n<tbody>\n");
        size_t i;
        json_t *c;
        json_array_foreach(corr, i, c) {
            put(b, "<tr><th scope=\"row\">");
            esc(b, jstr(c, "field"));
            put(b, "</th><td>");
            esc(b, jstr(c, "old_value") ? jstr(c, "old_value") : "–");
            put(b, "</td><td>");
            esc(b, jstr(c, "new_value") ? jstr(c, "new_value") : "–");
            put(b, "</td><td>");
            esc(b, jstr(c, "actor"));
            put(b, "</td><td>");
            put_time(b, jstr(c, "at"));
            put(b, "</td></tr>\n");
        }
        put(b, "</tbody>\n</table>\n");
    }

    json_t *dels = json_object_get(o, "deliveries");
    if (json_array_size(dels)) {
        put(b, "<h2>Übertragungen</h2>\n<table>\n<caption>Übertragungen an die Fachverfahren"
               "</caption>\n<thead><tr><th scope=\"col\">Anbindung</th>"
               "<th scope=\"col\">Stand</th><th scope=\"col\" class=\"num\">Versuche</th>"
               "<th scope=\"col\">Kennung im Fachverfahren</th>"
               "<th scope=\"col\">letzter Fehler</th></tr></thead>\n<tbody>\n");
        size_t i;
        json_t *c;
        json_array_foreach(dels, i, c) {
            put(b, "<tr><th scope=\"row\">");
            esc(b, jstr(c, "name"));
            put(b, "</th><td>");
            esc(b, delivery_german(jstr(c, "state")));
            putf(b, "</td><td class=\"num\">%lld</td><td>", jint(c, "attempts"));
            esc(b, jstr(c, "target_id") ? jstr(c, "target_id") : "–");
            put(b, "</td><td>");
            esc(b, jstr(c, "last_error") ? jstr(c, "last_error") : "–");
            put(b, "</td></tr>\n");
        }
        put(b, "</tbody>\n</table>\n");
    }

    put(b, "<h2>Verlauf</h2>\n<table id=\"verlauf\">\n<caption>Protokoll aller Schritte, "
           "älteste zuerst</caption>\n<thead><tr><th scope=\"col\">Zeit</th>"
           "<th scope=\"col\">Wer</th><th scope=\"col\">von</th><th scope=\"col\">nach</th>"
           "<th scope=\"col\">Grund</th></tr></thead>\n<tbody>\n");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(o, "events"), i, e) {
        put(b, "<tr><th scope=\"row\">");
        put_time(b, jstr(e, "at"));
        put(b, "</th><td>");
        esc(b, jstr(e, "actor"));
        put(b, "</td><td>");
        esc(b, jstr(e, "from_state") ? rk_state_german(jstr(e, "from_state")) : "–");
        put(b, "</td><td>");
        esc(b, rk_state_german(jstr(e, "to_state")));
        put(b, "</td><td>");
        put_reason(b, jstr(e, "reason"));
        put(b, "</td></tr>\n");
    }
    put(b, "</tbody>\n</table>\n");

    put(b, "<h2>Dokument</h2>\n");
    put_document(d, b, id);
    page_end(b);
    json_decref(o);
}

/* ---- decisions -------------------------------------------------------------- */

static const struct {
    const char *legend, *confirm_button, *question;
} actions[] = {
    [RK_DECIDE_SET] = {"Feld korrigieren", "Ja, korrigieren", "Feld korrigieren?"},
    [RK_DECIDE_APPROVE] = {"Freigeben", "Ja, freigeben",
                           "Antrag freigeben? Die Regeln werden erneut geprüft; danach wird "
                           "der Antrag an das Fachverfahren übertragen."},
    [RK_DECIDE_REJECT] = {"Ablehnen", "Ja, ablehnen", "Antrag ablehnen?"},
    [RK_DECIDE_RETRY] = {"Erneut versuchen", "Ja, erneut versuchen",
                         "Antrag erneut übertragen? Die Versuche werden zurückgesetzt."},
    [RK_DECIDE_REPLAY] = {"Neu verarbeiten", "Ja, neu verarbeiten",
                          "Das Dokument als neuen Antrag verarbeiten?"},
};
static const char *const action_paths[] = {"korrigieren", "freigeben", "ablehnen",
                                           "wiederholen", "neu-verarbeiten"};

/* The page asking to confirm a decision, with every field of the form
 * carried over. */
static void confirm_page(rk_dash *d, rk_httpd_resp *rs, const rk_session *s, int kind,
                         int64_t id, const form *f)
{
    rk_buf *b = &rs->body;
    b->len = 0;
    page_headers(rs, 200);
    page_begin(b, "Bitte bestätigen", s, NAV_NONE);
    putf(b, "<h1>Antrag %lld: %s</h1>\n<p>", (long long)id, actions[kind].legend);
    esc(b, actions[kind].question);
    put(b, "</p>\n");
    if (kind == RK_DECIDE_SET) {
        const char *old = NULL;
        json_t *o = rk_store_show_json(rk_api_store(d->api), id);
        size_t i;
        json_t *fl;
        json_array_foreach(o ? json_object_get(o, "fields") : NULL, i, fl)
            if (f->v[F_FELD] && jstr(fl, "name") && !strcmp(jstr(fl, "name"), f->v[F_FELD]))
                old = jstr(fl, "value");
        put(b, "<dl><dt>Feld</dt><dd>");
        esc(b, f->v[F_FELD]);
        put(b, "</dd><dt>alter Wert</dt><dd>");
        esc(b, old ? old : "–");
        put(b, "</dd><dt>neuer Wert</dt><dd>");
        esc(b, f->v[F_WERT] && *f->v[F_WERT] ? f->v[F_WERT] : "– (leer)");
        put(b, "</dd></dl>\n");
        json_decref(o);
    } else if (kind == RK_DECIDE_REJECT) {
        put(b, "<dl><dt>Begründung</dt><dd>");
        esc(b, f->v[F_GRUND]);
        put(b, "</dd></dl>\n");
    } else if (kind == RK_DECIDE_REPLAY && f->v[F_NEUKEY]) {
        put(b, "<p>Der neue Antrag wird als eigener Datensatz übertragen.</p>\n");
    }
    putf(b, "<form method=\"post\" action=\"/antraege/%lld/%s\">\n", (long long)id,
         action_paths[kind]);
    hidden(b, "csrf", s->csrf);
    if (f->v[F_FELD])
        hidden(b, "feld", f->v[F_FELD]);
    if (f->v[F_WERT])
        hidden(b, "wert", f->v[F_WERT]);
    if (f->v[F_GRUND])
        hidden(b, "grund", f->v[F_GRUND]);
    if (f->v[F_NEUKEY])
        hidden(b, "neuer_schluessel", "1");
    hidden(b, "bestaetigt", "ja");
    putf(b, "<button type=\"submit\" id=\"btn-bestaetigen\"%s>%s</button>\n"
            "<p><a href=\"/antraege/%lld\">Abbrechen und zurück zum Antrag</a></p>\n</form>\n",
         kind == RK_DECIDE_REJECT ? " class=\"danger\"" : "", actions[kind].confirm_button,
         (long long)id);
    page_end(b);
}

static void decide_action(rk_dash *d, int kind, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    form f;
    rk_session *s = post_begin(d, rq, rs, &f);
    if (!s) {
        form_free(&f);
        return;
    }
    int64_t id = id_arg(rq);
    if (!id) {
        message_page(rs, 404, s, "Nicht gefunden", "Diesen Antrag gibt es nicht.");
        form_free(&f);
        return;
    }
    char back[64];
    snprintf(back, sizeof back, "/antraege/%lld", (long long)id);
    const char *missing = NULL;
    if (kind == RK_DECIDE_SET && (!f.v[F_FELD] || !*f.v[F_FELD]))
        missing = "Bitte das Feld wählen, das korrigiert werden soll.";
    if (kind == RK_DECIDE_REJECT) {
        const char *g = f.v[F_GRUND] ? f.v[F_GRUND] : "";
        while (*g == ' ' || *g == '\n' || *g == '\r' || *g == '\t')
            g++;
        if (!*g)
            missing = "Eine Ablehnung braucht eine Begründung.";
    }
    if (missing) {
        snprintf(s->flash, sizeof s->flash, "%s", missing);
        s->flash_error = 1;
        redirect(rs, back);
        form_free(&f);
        return;
    }
    if (!f.v[F_BEST] || strcmp(f.v[F_BEST], "ja") != 0) {
        confirm_page(d, rs, s, kind, id, &f);
        form_free(&f);
        return;
    }
    char actor[sizeof s->name];
    snprintf(actor, sizeof actor, "%s", s->name);
    const char *s1 = NULL, *s2 = NULL;
    if (kind == RK_DECIDE_SET) {
        s1 = f.v[F_FELD];
        s2 = f.v[F_WERT] && *f.v[F_WERT] ? f.v[F_WERT] : NULL;
    } else if (kind == RK_DECIDE_REJECT) {
        s1 = f.v[F_GRUND];
    }
    char msg[2048];
    int64_t new_id = 0;
    int rc = rk_api_decide(d->api, kind, actor, id, s1, s2, f.v[F_NEUKEY] != NULL, &new_id,
                           msg, sizeof msg);
    /* the decision may have taken a moment: the session is looked up again */
    s = session_of(d, rq);
    if (s) {
        snprintf(s->flash, sizeof s->flash, "%s", msg);
        s->flash_error = rc != 0;
    }
    if (rc == 0 && kind == RK_DECIDE_REPLAY && new_id > 0)
        snprintf(back, sizeof back, "/antraege/%lld", (long long)new_id);
    redirect(rs, back);
    form_free(&f);
}

static void h_set(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    decide_action(arg, RK_DECIDE_SET, rq, rs);
}
static void h_approve(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    decide_action(arg, RK_DECIDE_APPROVE, rq, rs);
}
static void h_reject(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    decide_action(arg, RK_DECIDE_REJECT, rq, rs);
}
static void h_retry(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    decide_action(arg, RK_DECIDE_RETRY, rq, rs);
}
static void h_replay(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    decide_action(arg, RK_DECIDE_REPLAY, rq, rs);
}

/* ---- set-up ------------------------------------------------------------------ */

int rk_dash_new(rk_api *api, rk_httpd *h, const rk_dash_options *o, rk_dash **out)
{
    *out = NULL;
    rk_dash *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->api = api;
    d->h = h;
    d->cookie_secure = o->cookie_secure;
    d->max_document = o->max_document ? o->max_document : (2u << 20);
    d->sessions = rk_sessions_new(o->max_sessions, o->session_idle_ms);
    if (!d->sessions) {
        free(d);
        return -ENOMEM;
    }
    static const struct {
        const char *method, *pattern;
        unsigned flags;
        rk_httpd_handler fn;
    } routes[] = {
        {"GET", "/anmelden", RK_HTTPD_PUBLIC, h_login_get},
        {"POST", "/anmelden", RK_HTTPD_PUBLIC, h_login_post},
        {"GET", "/static/dash.css", RK_HTTPD_PUBLIC, h_css},
        {"GET", "/static/dash.js", RK_HTTPD_PUBLIC, h_js},
        {"POST", "/abmelden", RK_HTTPD_PAGE, h_logout},
        {"GET", "/", RK_HTTPD_PAGE, h_overview},
        {"GET", "/antraege", RK_HTTPD_PAGE, h_queue},
        {"GET", "/protokoll", RK_HTTPD_PAGE, h_log},
        {"GET", "/antraege/{}", RK_HTTPD_PAGE, h_job},
        {"POST", "/antraege/{}/korrigieren", RK_HTTPD_PAGE, h_set},
        {"POST", "/antraege/{}/freigeben", RK_HTTPD_PAGE, h_approve},
        {"POST", "/antraege/{}/ablehnen", RK_HTTPD_PAGE, h_reject},
        {"POST", "/antraege/{}/wiederholen", RK_HTTPD_PAGE, h_retry},
        {"POST", "/antraege/{}/neu-verarbeiten", RK_HTTPD_PAGE, h_replay},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = rk_httpd_route(h, routes[i].method, routes[i].pattern, routes[i].flags,
                                routes[i].fn, d);
        if (rc) {
            rk_dash_free(d);
            return rc;
        }
    }
    rk_httpd_set_authn(h, authn, d);
    rk_httpd_set_login(h, h_login_redirect, d);
    *out = d;
    return 0;
}

void rk_dash_free(rk_dash *d)
{
    if (!d)
        return;
    rk_sessions_free(d->sessions);
    free(d);
}
