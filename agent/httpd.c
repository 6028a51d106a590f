/*
 * httpd.c — see httpd.h.
 *
 * How libmicrohttpd (MHD) runs inside the libuv loop: MHD is started with
 * MHD_USE_EPOLL and no internal thread, so all its sockets sit in one
 * epoll descriptor of its own.  That descriptor becomes readable when any
 * of them has something to do; a uv_poll watches it and calls MHD_run,
 * which does the work without blocking.  MHD also has deadlines (idle
 * connections, data it could not send at once): after every MHD_run the
 * uv_timer is set to MHD_get_timeout, which is 0 when MHD has work left
 * that epoll will not announce again (its sockets are edge-triggered).
 *
 * One request, as MHD delivers it to on_request:
 *   1st call   headers only: authenticate, route, check Content-Length;
 *              a refusal (401, 404, 405, 413) is answered here, before any
 *              of the body is read;
 *   next calls body chunks, appended to a buffer bounded by max_body
 *              (beyond it the rest is read and dropped, then 413);
 *   last call  upload_data_size 0: the handler runs and the response is
 *              queued.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "api.h"
#include "dash.h"
#include "metrics.h"

typedef struct route {
    struct route *next;
    char *method;
    char **seg;          /* pattern segments; "{}" = any */
    size_t n_seg;
    unsigned flags;
    rk_httpd_handler fn;
    void *arg;
} route;

struct rk_httpd {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    int closing;
    void (*done)(void *);
    void *done_arg;
    int port;
    size_t max_body;
    rk_tokens *tokens;
    route *routes, **routes_tail;
    rk_httpd_authn authn;
    void *authn_arg;
    rk_httpd_handler login;
    void *login_arg;
    int starting;              /* MHD messages go to start_err */
    char start_err[512];
};

/* What the server keeps of one request between MHD's calls. */
typedef struct req_ctx {
    rk_httpd *h;
    struct MHD_Connection *conn;
    const route *rt;
    char *path;                /* the decoded path, for handlers and the log */
    char *segbuf;              /* a copy cut into segments; args point into it */
    const char *args[RK_HTTPD_MAX_ARGS];
    size_t n_args;
    char actor[RK_TOKEN_NAME_MAX + 1];
    int authed;
    rk_buf body;
    int too_big;
    size_t dropped;            /* body bytes read and dropped after too_big */
} req_ctx;

/* ---- responses ------------------------------------------------------------ */

void rk_httpd_set_header(rk_httpd_resp *rs, const char *name, const char *value)
{
    if (rs->n_headers >= RK_HTTPD_MAX_HEADERS)
        return;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    rs->headers[rs->n_headers][0] = n;
    rs->headers[rs->n_headers][1] = v;
    rs->n_headers++;
}

void rk_httpd_json(rk_httpd_resp *rs, int status, json_t *v)
{
    rs->status = status;
    rs->content_type = "application/json";
    rs->body.len = 0;
    if (rs->body.data)
        rs->body.data[0] = '\0';
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text || rk_buf_append(&rs->body, text, strlen(text)) != 0 ||
        rk_buf_append(&rs->body, "\n", 1) != 0) {
        rs->status = 500;
        rs->body.len = 0;
        rk_buf_appendf(&rs->body, "{\"error\":\"the answer could not be built\"}\n");
    }
    free(text);
}

void rk_httpd_error(rk_httpd_resp *rs, int status, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(msg));
    rk_httpd_json(rs, status, o);
}

void rk_httpd_text(rk_httpd_resp *rs, int status, const char *content_type,
                  const char *text)
{
    rs->status = status;
    rs->content_type = content_type;
    rs->body.len = 0;
    if (rs->body.data)
        rs->body.data[0] = '\0';
    rk_buf_append(&rs->body, text, strlen(text));
}

static void response_init(rk_httpd_resp *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->status = 200;
    rs->content_type = "application/json";
    rk_buf_init(&rs->body, RK_HTTPD_MAX_RESPONSE);
}

static void response_free(rk_httpd_resp *rs)
{
    rk_buf_free(&rs->body);
    for (size_t i = 0; i < rs->n_headers; i++) {
        free(rs->headers[i][0]);
        free(rs->headers[i][1]);
    }
}

static int has_header(const rk_httpd_resp *rs, const char *name)
{
    for (size_t i = 0; i < rs->n_headers; i++)
        if (strcasecmp(rs->headers[i][0], name) == 0)
            return 1;
    return 0;
}

/* Queues rs on the connection: MHD takes the body over
 * (MHD_RESPMEM_MUST_FREE: it calls free() when sent) and the rest of rs
 * is freed here. */
static enum MHD_Result send_response(req_ctx *c, const char *method, rk_httpd_resp *rs)
{
    size_t len = rs->body.len;
    char *body = rk_buf_take(&rs->body);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body ? body : (void *)"",
                                         body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        response_free(rs);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            rs->content_type ? rs->content_type : "application/json");
    if (!has_header(rs, MHD_HTTP_HEADER_CACHE_CONTROL))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    if (!has_header(rs, "Referrer-Policy"))
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    for (size_t i = 0; i < rs->n_headers; i++)
        MHD_add_response_header(r, rs->headers[i][0], rs->headers[i][1]);
    enum MHD_Result ok = MHD_queue_response(c->conn, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    rk_metrics_http_request(rs->status);
    rk_debug("http", "%s %s: %d%s%s", method, c->path ? c->path : "?", rs->status,
             c->authed ? " for " : "", c->authed ? c->actor : "");
    response_free(rs);
    return ok;
}

/* An answer decided by the server itself (401, 404, 405, 413, 500). */
static enum MHD_Result refuse(req_ctx *c, const char *method, int status, const char *allow,
                              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result refuse(req_ctx *c, const char *method, int status, const char *allow,
                              const char *fmt, ...)
{
    rk_httpd_resp rs;
    response_init(&rs);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rk_httpd_error(&rs, status, "%s", msg);
    if (status == 401)
        rk_httpd_set_header(&rs, "WWW-Authenticate", "Bearer realm=\"rekey\"");
    if (allow)
        rk_httpd_set_header(&rs, MHD_HTTP_HEADER_ALLOW, allow);
    return send_response(c, method, &rs);
}

/* ---- routing -------------------------------------------------------------- */

int rk_httpd_route(rk_httpd *h, const char *method, const char *pattern, unsigned flags,
                   rk_httpd_handler fn, void *arg)
{
    route *r = calloc(1, sizeof *r);
    if (!r || !(r->method = strdup(method)))
        goto oom;
    r->flags = flags;
    r->fn = fn;
    r->arg = arg;
    for (const char *p = pattern; *p;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char **g = realloc(r->seg, (r->n_seg + 1) * sizeof *g);
        if (!g)
            goto oom;
        r->seg = g;
        if (!(r->seg[r->n_seg] = rk_strndup(p, n)))
            goto oom;
        r->n_seg++;
        p += n;
    }
    *h->routes_tail = r;
    h->routes_tail = &r->next;
    return 0;
oom:
    if (r) {
        for (size_t i = 0; i < r->n_seg; i++)
            free(r->seg[i]);
        free(r->seg);
        free(r->method);
        free(r);
    }
    return -ENOMEM;
}

static void routes_free(rk_httpd *h)
{
    while (h->routes) {
        route *r = h->routes;
        h->routes = r->next;
        for (size_t i = 0; i < r->n_seg; i++)
            free(r->seg[i]);
        free(r->seg);
        free(r->method);
        free(r);
    }
    h->routes_tail = &h->routes;
}

/* Whether path's segments (segs, n) fit route r; fills args. */
static int route_fits(const route *r, char **segs, size_t n, const char **args,
                      size_t *n_args)
{
    if (r->n_seg != n)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r->seg[i], "{}") == 0) {
            if (k < RK_HTTPD_MAX_ARGS)
                args[k++] = segs[i];
        } else if (strcmp(r->seg[i], segs[i]) != 0) {
            return 0;
        }
    }
    *n_args = k;
    return 1;
}

/* The route for (method, path): *rt gets the route whose method matches,
 * or NULL; allow lists the methods of routes whose pattern matches;
 * *public_path is 1 when one of those is public.  c->segbuf is cut into
 * segments in place and c->args point into it. */
static void route_find(req_ctx *c, const char *method, const route **rt, char *allow,
                       size_t allowlen, int *public_path)
{
    *rt = NULL;
    *public_path = 0;
    allow[0] = '\0';
    char *segs[32];
    size_t n = 0;
    for (char *p = c->segbuf; *p && n < 32;) {
        while (*p == '/')
            *p++ = '\0';
        if (!*p)
            break;
        segs[n++] = p;
        while (*p && *p != '/')
            p++;
    }
    if (n == 32)
        return; /* no route is that deep */
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    for (const route *r = c->h->routes; r; r = r->next) {
        const char *args[RK_HTTPD_MAX_ARGS];
        size_t na = 0;
        if (!route_fits(r, segs, n, args, &na))
            continue;
        if (r->flags & RK_HTTPD_PUBLIC)
            *public_path = 1;
        if (!*rt && strcmp(r->method, m) == 0) {
            *rt = r;
            memcpy(c->args, args, sizeof args);
            c->n_args = na;
        }
        if (!strstr(allow, r->method)) {
            size_t used = strlen(allow);
            snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", r->method);
        }
    }
}

/* ---- request accessors ------------------------------------------------------ */

const char *rk_httpd_query(const rk_httpd_req *rq, const char *name)
{
    req_ctx *c = rq->impl;
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *rk_httpd_header(const rk_httpd_req *rq, const char *name)
{
    req_ctx *c = rq->impl;
    return MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, name);
}

const char *rk_httpd_cookie(const rk_httpd_req *rq, const char *name)
{
    req_ctx *c = rq->impl;
    return MHD_lookup_connection_value(c->conn, MHD_COOKIE_KIND, name);
}

typedef struct unknown_ctx {
    const char *const *allowed;
    const char *found;
} unknown_ctx;

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value)
{
    (void)kind;
    (void)value;
    unknown_ctx *u = cls;
    for (size_t i = 0; u->allowed[i]; i++)
        if (strcmp(u->allowed[i], key) == 0)
            return MHD_YES;
    u->found = key;
    return MHD_NO;
}

const char *rk_httpd_query_unknown(const rk_httpd_req *rq, const char *const *allowed)
{
    req_ctx *c = rq->impl;
    unknown_ctx u = {allowed, NULL};
    MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, on_arg, &u);
    return u.found;
}

/* ---- forms ------------------------------------------------------------------ */

/* The post processor hands a value over in pieces (off > 0 continues the
 * field before); the pieces are joined and each whole field passed on. */
typedef struct form_ctx {
    rk_httpd_form_cb fn;
    void *arg;
    char *key;     /* the field being collected, NULL before the first */
    rk_buf val;
    int failed;
} form_ctx;

static void form_flush(form_ctx *f)
{
    if (f->key && !f->failed)
        f->fn(f->arg, f->key, f->val.data ? f->val.data : "", f->val.len);
    free(f->key);
    f->key = NULL;
    f->val.len = 0;
    if (f->val.data)
        f->val.data[0] = '\0';
}

static enum MHD_Result on_form_data(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data,
                                    uint64_t off, size_t size)
{
    (void)kind;
    (void)filename;
    (void)content_type;
    (void)transfer_encoding;
    form_ctx *f = cls;
    if (off == 0 || !f->key || strcmp(f->key, key) != 0) {
        form_flush(f);
        if (!(f->key = strdup(key))) {
            f->failed = 1;
            return MHD_NO;
        }
    }
    if (size && rk_buf_append(&f->val, data, size) != 0) {
        f->failed = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

int rk_httpd_form(const rk_httpd_req *rq, rk_httpd_form_cb fn, void *arg)
{
    req_ctx *c = rq->impl;
    form_ctx f;
    memset(&f, 0, sizeof f);
    f.fn = fn;
    f.arg = arg;
    rk_buf_init(&f.val, rq->body_len + 1);
    struct MHD_PostProcessor *pp = MHD_create_post_processor(c->conn, 1024, on_form_data, &f);
    if (!pp) {
        rk_buf_free(&f.val);
        return RK_E_FORMAT; /* not a form content type */
    }
    if (rq->body_len && MHD_post_process(pp, rq->body, rq->body_len) != MHD_YES)
        f.failed = 1;
    if (MHD_destroy_post_processor(pp) != MHD_YES)
        f.failed = 1;
    form_flush(&f);
    rk_buf_free(&f.val);
    return f.failed ? RK_E_FORMAT : 0;
}

int rk_httpd_token_check(rk_httpd *h, const char *token, char *name, size_t namelen)
{
    return rk_tokens_check(h->tokens, token, name, namelen);
}

int rk_httpd_token_hash_check(rk_httpd *h, const char *hash, char *name, size_t namelen)
{
    return rk_tokens_check_hash(h->tokens, hash, name, namelen);
}

/* ---- authentication ------------------------------------------------------- */

/* The bearer token of the request checked against the token file, else
 * the extra authenticator (session cookie).  Fills c->actor. */
static int authenticate(req_ctx *c, const rk_httpd_req *rq)
{
    const char *a = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    if (a) {
        while (*a == ' ')
            a++;
        if (strncasecmp(a, "Bearer ", 7) != 0)
            return 0;
        a += 7;
        while (*a == ' ')
            a++;
        char tok[512];
        size_t n = strlen(a);
        while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
            n--;
        if (n == 0 || n >= sizeof tok)
            return 0;
        memcpy(tok, a, n);
        tok[n] = '\0';
        int ok = rk_tokens_check(c->h->tokens, tok, c->actor, sizeof c->actor);
        explicit_bzero(tok, sizeof tok);
        return ok;
    }
    if (c->h->authn)
        return c->h->authn(c->h->authn_arg, rq, c->actor, sizeof c->actor);
    return 0;
}

/* ---- MHD callbacks ---------------------------------------------------------- */

static void fill_request(req_ctx *c, const char *method, rk_httpd_req *rq)
{
    memset(rq, 0, sizeof *rq);
    rq->method = strcmp(method, "HEAD") == 0 ? "GET" : method;
    rq->path = c->path;
    memcpy(rq->args, c->args, sizeof rq->args);
    rq->n_args = c->n_args;
    rq->body = c->body.data ? c->body.data : "";
    rq->body_len = c->body.len;
    rq->actor = c->authed ? c->actor : NULL;
    rq->impl = c;
}

/* The first call for a request: everything that can be refused without
 * reading the body is refused here. */
static enum MHD_Result on_headers(req_ctx *c, const char *url, const char *method)
{
    c->path = strdup(url);
    c->segbuf = strdup(url);
    if (!c->path || !c->segbuf)
        return MHD_NO; /* on_completed frees what there is */
    rk_httpd_req rq;
    fill_request(c, method, &rq);
    c->authed = authenticate(c, &rq);
    const route *rt;
    char allow[128];
    int public_path;
    route_find(c, method, &rt, allow, sizeof allow, &public_path);
    if (!c->authed && !(rt && (rt->flags & RK_HTTPD_PUBLIC)) && !(public_path && !rt)) {
        if (rt && (rt->flags & RK_HTTPD_PAGE) && c->h->login) {
            rk_httpd_resp rs;
            response_init(&rs);
            fill_request(c, method, &rq);
            c->h->login(c->h->login_arg, &rq, &rs);
            return send_response(c, method, &rs);
        }
        return refuse(c, method, 401, NULL, "a valid token is needed: Authorization: Bearer "
                                            "TOKEN (rekeyctl token add NAME makes one)");
    }
    if (!rt && allow[0])
        return refuse(c, method, 405, allow, "%s is not allowed here; allowed: %s", method,
                      allow);
    if (!rt)
        return refuse(c, method, 404, NULL, "no such resource: %s", c->path);
    const char *cl = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t len;
    if (cl && rk_parse_int64(cl, &len) == 0 && len > (int64_t)c->h->max_body)
        return refuse(c, method, 413, NULL, "the request body is larger than %zu bytes",
                      c->h->max_body);
    c->rt = rt;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    rk_httpd *h = cls;
    req_ctx *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return MHD_NO;
        c->h = h;
        c->conn = conn;
        rk_buf_init(&c->body, h->max_body);
        *con_cls = c;
        return on_headers(c, url, method);
    }
    if (!c->rt) {
        /* answered at the headers already (MHD reads no body after an early
         * answer, so this is only a guard) */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!c->too_big && rk_buf_append(&c->body, upload_data, n) != 0)
            c->too_big = 1;
        if (c->too_big) {
            c->dropped += n;
            /* a sender that goes on and on is cut off */
            if (c->dropped > 4 * h->max_body + (1u << 20))
                return MHD_NO;
        }
        return MHD_YES;
    }
    if (c->too_big)
        return refuse(c, method, 413, NULL, "the request body is larger than %zu bytes",
                      h->max_body);
    rk_httpd_req rq;
    fill_request(c, method, &rq);
    rk_httpd_resp rs;
    response_init(&rs);
    c->rt->fn(c->rt->arg, &rq, &rs);
    return send_response(c, method, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    req_ctx *c = *con_cls;
    if (!c)
        return;
    rk_buf_free(&c->body);
    free(c->path);
    free(c->segbuf);
    free(c);
    *con_cls = NULL;
}

/* MHD's own messages: kept for the error of a failed start, afterwards
 * only at debug level (they may name paths of requests). */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    rk_httpd *h = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    if (h->starting)
        snprintf(h->start_err, sizeof h->start_err, "%s", msg);
    else
        rk_debug("http", "libmicrohttpd: %s", msg);
}

/* ---- the loop ------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Runs MHD and sets the timer to when it wants to run next. */
static void run(rk_httpd *h)
{
    if (h->closing)
        return;
    MHD_run(h->d);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *t)
{
    run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run(p->data);
}

int rk_httpd_port(const rk_httpd *h)
{
    return h->port;
}

void rk_httpd_set_authn(rk_httpd *h, rk_httpd_authn fn, void *arg)
{
    h->authn = fn;
    h->authn_arg = arg;
}

void rk_httpd_set_login(rk_httpd *h, rk_httpd_handler fn, void *arg)
{
    h->login = fn;
    h->login_arg = arg;
}

static void on_handle_closed(uv_handle_t *hd)
{
    rk_httpd *h = hd->data;
    if (--h->open_handles > 0)
        return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    routes_free(h);
    rk_tokens_free(h->tokens);
    free(h);
    if (done)
        done(arg);
}

void rk_httpd_close(rk_httpd *h, void (*done)(void *), void *arg)
{
    h->closing = 1;
    h->done = done;
    h->done_arg = arg;
    /* the poll handle leaves libuv's epoll set before MHD closes the
     * descriptor it watches */
    uv_close((uv_handle_t *)&h->poll, on_handle_closed);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    if (h->d)
        MHD_stop_daemon(h->d); /* closes every connection: on_completed frees each */
    h->d = NULL;
}

int rk_httpd_new(uv_loop_t *loop, const rk_httpd_options *o, rk_httpd **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    rk_httpd *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->loop = loop;
    h->routes_tail = &h->routes;
    h->max_body = o->max_body ? o->max_body : 65536;
    int rc = rk_tokens_open(o->token_file, &h->tokens);
    if (rc) {
        free(h);
        return rc;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (o->ipv6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o->port);
        rc = inet_pton(AF_INET6, o->host, &a6->sin6_addr) == 1 ? 0 : RK_E_CONFIG;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o->port);
        rc = inet_pton(AF_INET, o->host, &a4->sin_addr) == 1 ? 0 : RK_E_CONFIG;
    }
    if (rc) {
        snprintf(err, errlen, "listen address %s is not a numeric address", o->host);
        rk_tokens_free(h->tokens);
        free(h);
        return rc;
    }
    h->starting = 1;
    h->d = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (o->ipv6 ? MHD_USE_IPv6 : 0),
        (uint16_t)o->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32u << 10),
        MHD_OPTION_CONNECTION_LIMIT, o->max_connections ? o->max_connections : 64u,
        MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s ? o->timeout_s : 30u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        h, MHD_OPTION_END);
    h->starting = 0;
    if (!h->d) {
        snprintf(err, errlen, "cannot listen on %s%s%s:%d: %s", o->ipv6 ? "[" : "", o->host,
                 o->ipv6 ? "]" : "", o->port,
                 h->start_err[0] ? h->start_err : "libmicrohttpd did not start");
        rk_tokens_free(h->tokens);
        free(h);
        return RK_E_CONFIG;
    }
    const union MHD_DaemonInfo *ep = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : o->port;
    if (!ep || uv_poll_init(loop, &h->poll, ep->epoll_fd) != 0) {
        snprintf(err, errlen, "libmicrohttpd gave no epoll descriptor to watch");
        MHD_stop_daemon(h->d);
        rk_tokens_free(h->tokens);
        free(h);
        return RK_E_CONFIG;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h;
    h->timer.data = h;
    h->open_handles = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    uv_timer_start(&h->timer, on_timer, 0, 0); /* a first run, whatever MHD has to do */
    *out = h;
    return 0;
}

/* ---- rekeyd: the [http] section as an engine source ----------------------- */

typedef struct http_source {
    rk_httpd *h;
    rk_api *api;
    rk_dash *dash;  /* NULL with dashboard = false */
    void (*done)(void *);
    void *done_arg;
} http_source;

static int src_idle(void *p)
{
    (void)p;
    return 1; /* requests never hold up --once or a drain */
}

static void src_closed(void *p)
{
    http_source *s = p;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    rk_dash_free(s->dash);
    rk_api_close(s->api);
    free(s);
    rk_info("http", "closed");
    if (done)
        done(arg);
}

static void src_stop(void *p, void (*done)(void *), void *arg)
{
    http_source *s = p;
    s->done = done;
    s->done_arg = arg;
    rk_httpd_close(s->h, src_closed, s);
}

static const rk_source_ops http_source_ops = {.name = "http", .idle = src_idle,
                                              .stop = src_stop};

int rk_httpd_start(rk_engine *e, char *err, size_t errlen)
{
    const rk_config *cfg = rk_engine_config(e);
    const rk_http_config *hc = &cfg->http;
    if (!hc->enabled)
        return 0;
    http_source *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char why[512] = "";
    int rc = rk_api_open(cfg, &s->api, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "[http]: %s", why[0] ? why : rk_strerror(rc));
        free(s);
        return rc;
    }
    rk_httpd_options o = {
        .host = hc->listen_host,
        .port = hc->listen_port,
        .ipv6 = hc->listen_ipv6,
        .max_body = hc->max_body,
        .token_file = hc->token_file,
    };
    rc = rk_httpd_new(rk_engine_loop(e), &o, &s->h, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "[http]: %s", why[0] ? why : rk_strerror(rc));
        rk_api_close(s->api);
        free(s);
        return rc;
    }
    rc = rk_api_mount(s->api, s->h);
    if (!rc && hc->dashboard) {
        rk_dash_options dopt = {.session_idle_ms = hc->session_idle_ms,
                                .cookie_secure = hc->cookie_secure};
        rc = rk_dash_new(s->api, s->h, &dopt, &s->dash);
    }
    if (rc) {
        snprintf(err, errlen, "[http]: cannot set up the routes: %s", rk_strerror(rc));
        rk_httpd_close(s->h, NULL, NULL);
        rk_dash_free(s->dash);
        rk_api_close(s->api);
        free(s);
        return rc;
    }
    size_t ntok = rk_tokens_count(s->h->tokens);
    rk_info("http", "listening on %s%s%s:%d (%sAPI /api/v1/, /metrics%s, /healthz, /readyz; "
                    "%zu tokens)",
            hc->listen_ipv6 ? "[" : "", hc->listen_host, hc->listen_ipv6 ? "]" : "",
            rk_httpd_port(s->h), s->dash ? "dashboard /, " : "",
            hc->metrics_auth ? "" : " without token", ntok);
    rk_engine_add_source(e, &http_source_ops, s);
    return 0;
}
