/*
 * httpd.h — the operator HTTP server of rekeyd: libmicrohttpd driven from
 * the libuv loop, a small router, and bearer-token authentication.
 *
 * libmicrohttpd runs without a thread of its own (MHD_USE_EPOLL, no
 * internal polling thread): its epoll descriptor is watched by a uv_poll
 * and its timeout by a uv_timer, and both call MHD_run.  So every request
 * is answered on the loop thread, in a handler that may use the loop's
 * store connections like any other loop callback — and must not block
 * for long, since the loop waits meanwhile.
 *
 * A handler gets the request (method, path, the {} segments of its route,
 * the body, who is authenticated) and fills a response (status, content
 * type, body, a few headers).  Routes need a valid token unless they are
 * registered RK_HTTPD_PUBLIC; without one the answer is 401 and nothing
 * else.  Request bodies longer than max_body are refused with 413 before
 * a handler sees them.
 *
 * Ownership: the server owns its routes and requests; the strings of a
 * request live until the handler returns; the response body is the
 * server's to send and free.
 */
#ifndef RK_HTTPD_H
#define RK_HTTPD_H

#include <stddef.h>
#include <jansson.h>
#include <uv.h>

#include "engine.h"
#include "tokens.h"
#include "util.h"

typedef struct rk_httpd rk_httpd;

#define RK_HTTPD_MAX_ARGS 4
#define RK_HTTPD_MAX_HEADERS 8
#define RK_HTTPD_MAX_RESPONSE (256u << 20) /* a response body larger than this is a 500 */

typedef struct rk_httpd_req {
    const char *method;     /* "GET", "POST", ...; HEAD is routed as GET */
    const char *path;       /* decoded, without the query */
    const char *args[RK_HTTPD_MAX_ARGS]; /* the {} segments of the route, in order */
    size_t n_args;
    const char *body;       /* NUL-terminated, "" when none */
    size_t body_len;
    const char *actor;      /* the name of the token (or session) used; NULL on a
                             * public route requested without one */
    void *impl;             /* the server's */
} rk_httpd_req;

typedef struct rk_httpd_resp {
    int status;               /* default 200 */
    const char *content_type; /* a static string; default "application/json" */
    rk_buf body;
    size_t n_headers;
    char *headers[RK_HTTPD_MAX_HEADERS][2];
} rk_httpd_resp;

typedef void (*rk_httpd_handler)(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs);

/* Route flags. */
#define RK_HTTPD_PUBLIC 0x1 /* no authentication needed */
#define RK_HTTPD_PAGE 0x2   /* a dashboard page: unauthenticated requests go to the
                            * login handler (rk_httpd_set_login) instead of a 401 */

typedef struct rk_httpd_options {
    const char *host;       /* numeric IPv4/IPv6 address */
    int port;               /* 0 = any free port (see rk_httpd_port) */
    int ipv6;
    size_t max_body;        /* request bodies; 0 = 65536 */
    const char *token_file; /* NAME:SHA256 lines (tokens.h) */
    unsigned max_connections; /* 0 = 64 */
    unsigned timeout_s;     /* idle connections are closed after this; 0 = 30 */
} rk_httpd_options;

/* Starts listening; requests are served once the loop runs.  On failure
 * returns non-zero with the reason in err. */
int rk_httpd_new(uv_loop_t *loop, const rk_httpd_options *o, rk_httpd **out, char *err,
                 size_t errlen);
/* The port listened on (useful with port 0). */
int rk_httpd_port(const rk_httpd *h);
/* Closes the listening socket and every connection; done(arg) runs once
 * the loop handles are closed and the server is freed. */
void rk_httpd_close(rk_httpd *h, void (*done)(void *arg), void *arg);

/* Adds a route: method ("GET", "POST", ...) and a pattern of '/'-separated
 * segments where "{}" stands for any one non-empty segment, e.g.
 * "/api/v1/jobs/{}/fields/{}".  The first route that matches path and
 * method wins; a path that matches only with another method is a 405 with
 * an Allow header.  0 or -ENOMEM. */
int rk_httpd_route(rk_httpd *h, const char *method, const char *pattern, unsigned flags,
                   rk_httpd_handler fn, void *arg);

/* Another way to authenticate, tried when a request has no bearer token
 * (the dashboard's session cookie): returns 1 and the actor's name in
 * name when rq is authenticated. */
typedef int (*rk_httpd_authn)(void *arg, const rk_httpd_req *rq, char *name, size_t namelen);
void rk_httpd_set_authn(rk_httpd *h, rk_httpd_authn fn, void *arg);
/* The handler for unauthenticated requests to RK_HTTPD_PAGE routes (e.g. a
 * redirect to the login page); without one they get the 401. */
void rk_httpd_set_login(rk_httpd *h, rk_httpd_handler fn, void *arg);

/* ---- for handlers ---- */

/* A query parameter (decoded), a request header or a cookie; NULL when
 * absent.  Borrowed: valid until the handler returns. */
const char *rk_httpd_query(const rk_httpd_req *rq, const char *name);
const char *rk_httpd_header(const rk_httpd_req *rq, const char *name);
const char *rk_httpd_cookie(const rk_httpd_req *rq, const char *name);
/* The first query parameter whose name is not in allowed (NULL-terminated),
 * or NULL when all are known. */
const char *rk_httpd_query_unknown(const rk_httpd_req *rq, const char *const *allowed);

/* The fields of a form body (application/x-www-form-urlencoded or
 * multipart/form-data), decoded by libmicrohttpd's post processor: fn
 * runs once per field, in body order, with the whole value (NUL-terminated,
 * len bytes; files of a multipart body are passed like fields).  The body
 * was bounded by max_body before the handler ran.  0, or RK_E_FORMAT when
 * the body is not a form or cannot be parsed. */
typedef void (*rk_httpd_form_cb)(void *arg, const char *name, const char *value, size_t len);
int rk_httpd_form(const rk_httpd_req *rq, rk_httpd_form_cb fn, void *arg);

/* 1 when token is one of the server's bearer tokens (tokens.h), with its
 * name copied into name; 0 otherwise.  For the dashboard's login form. */
int rk_httpd_token_check(rk_httpd *h, const char *token, char *name, size_t namelen);
/* The same for a token's SHA-256 (hex): whether it is still in the file. */
int rk_httpd_token_hash_check(rk_httpd *h, const char *hash, char *name, size_t namelen);

/* Adds a response header (copied); at most RK_HTTPD_MAX_HEADERS.  A
 * handler's Cache-Control or Referrer-Policy replaces the server's
 * default (no-store, no-referrer). */
void rk_httpd_set_header(rk_httpd_resp *rs, const char *name, const char *value);
/* Sets status and a JSON body; takes the reference to v. */
void rk_httpd_json(rk_httpd_resp *rs, int status, json_t *v);
/* Sets status and the JSON error body {"error": "message"}. */
void rk_httpd_error(rk_httpd_resp *rs, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets status, content type (static string) and a text body. */
void rk_httpd_text(rk_httpd_resp *rs, int status, const char *content_type,
                  const char *text);

/* ---- in rekeyd ---- */

/* Starts the server of the configuration's [http] section (with the JSON
 * API, /metrics, /healthz and /readyz of agent/api.c) and registers it
 * with the engine as a source, so the engine closes it when it stops.
 * Does nothing when [http] is not configured.  0 or the reason in err. */
int rk_httpd_start(rk_engine *e, char *err, size_t errlen);

#endif /* RK_HTTPD_H */
