/*
 * curl_uv.c — see curl_uv.h.
 *
 * The wiring follows libcurl's multi_socket model (curl's
 * docs/examples/multi-uv.c), with the known pitfalls handled:
 *
 *  - CURLMOPT_TIMERFUNCTION with -1 stops the timer; 0 is started as 1 ms
 *    (never call curl_multi_socket_action from inside the timer function,
 *    and a 0 ms libuv timer restarted from its own callback would run
 *    again in the same loop phase);
 *  - after every curl_multi_socket_action, socket- or timer-driven,
 *    curl_multi_info_read is read until empty (a transfer that ends by its
 *    timeout is only reported there);
 *  - a poll context is freed only in the close callback of its uv_poll;
 *  - shutdown removes and cleans up every transfer, cleans up the multi
 *    handle (which may still call the socket and timer functions), closes
 *    the timer and the remaining polls, and frees the context only after
 *    the last close callback, so uv_loop_close returns 0.
 */
#include "curl_uv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct sockctx {
    uv_poll_t poll;
    curl_socket_t fd;
    rk_curl *c;
    struct sockctx *prev, *next; /* the context's open polls */
    int closing;
} sockctx;

typedef struct xfer {
    CURL *easy;
    rk_curl_done_cb cb;
    void *arg;
    struct xfer *prev, *next;
} xfer;

struct rk_curl {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    xfer *xfers;
    size_t n_xfers;
    sockctx *socks;
    int open_handles;   /* timer + polls whose close callback has not run */
    int closing;
    int in_dispatch;    /* depth of drain_info: defer the multi cleanup */
    int finished;       /* multi cleaned up, handles closing */
    void (*close_cb)(void *);
    void *close_arg;
};

static void finish_close(rk_curl *c);

/* ---- handles ----------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    rk_curl *c;
    if (h->type == UV_POLL) {
        sockctx *s = h->data;
        c = s->c;
        free(s);
    } else {
        c = h->data;
    }
    if (--c->open_handles == 0 && c->finished) {
        void (*cb)(void *) = c->close_cb;
        void *arg = c->close_arg;
        free(c);
        curl_global_cleanup();
        if (cb)
            cb(arg);
    }
}

static void sock_close(sockctx *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    rk_curl *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

/* ---- reporting finished transfers -------------------------------------- */

static void xfer_unlink(rk_curl *c, xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    c->n_xfers--;
}

/* Reads curl_multi_info_read until it is empty and calls the done
 * callback of every finished transfer.  Callbacks may start, cancel or
 * close: the multi handle stays valid until the outermost dispatch ends. */
static void drain_info(rk_curl *c)
{
    CURLMsg *msg;
    int left;
    c->in_dispatch++;
    while (c->multi && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result;
        xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, easy);
        if (!x)
            continue; /* not ours: cannot happen */
        xfer_unlink(c, x);
        rk_curl_done_cb cb = x->cb;
        void *arg = x->arg;
        free(x);
        cb(arg, easy, res);
    }
    c->in_dispatch--;
    if (c->closing && !c->in_dispatch && !c->finished)
        finish_close(c);
}

/* ---- libuv → libcurl --------------------------------------------------- */

/* A socket is ready (or failed): let libcurl act on it, then report. */
static void on_poll(uv_poll_t *h, int status, int events)
{
    sockctx *s = h->data;
    rk_curl *c = s->c;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_socket_t fd = s->fd; /* s may be closed (not freed) by the action */
    if (c->multi)
        curl_multi_socket_action(c->multi, fd, flags, &running);
    drain_info(c);
}

/* libcurl's timeout expired: the timer-driven action. */
static void on_timer(uv_timer_t *t)
{
    rk_curl *c = t->data;
    int running;
    if (c->multi)
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_info(c); /* a timeout ends transfers too: report them now */
}

/* ---- libcurl → libuv --------------------------------------------------- */

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer, anything else (re)starts it
 * as a one-shot; the action itself runs later from on_timer. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    rk_curl *c = userp;
    if (timeout_ms < 0 || c->finished) {
        uv_timer_stop(&c->timer);
        return 0;
    }
    uv_timer_start(&c->timer, on_timer, timeout_ms > 0 ? (uint64_t)timeout_ms : 1, 0);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch a socket for what libcurl wants, or stop
 * watching it (REMOVE: the poll is closed and freed in its close
 * callback).  The poll context is attached to the socket with
 * curl_multi_assign. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    rk_curl *c = userp;
    sockctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_close(s);
            if (c->multi)
                curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (c->finished)
        return -1; /* the multi handle is being cleaned up */
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        int rc = uv_poll_init_socket(c->loop, &s->poll, fd);
        if (rc == UV_EEXIST) {
            /* a stale poll on a reused descriptor number: close it first */
            for (sockctx *o = c->socks; o; o = o->next)
                if (o->fd == fd) {
                    sock_close(o);
                    break;
                }
            rc = uv_poll_init_socket(c->loop, &s->poll, fd);
        }
        if (rc) {
            rk_error("curl", "cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
            free(s);
            return -1;
        }
        s->fd = fd;
        s->c = c;
        s->poll.data = s;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        c->open_handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    int rc = uv_poll_start(&s->poll, events, on_poll);
    if (rc) {
        rk_error("curl", "cannot poll socket %d: %s", (int)fd, uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- public ------------------------------------------------------------ */

int rk_curl_init(uv_loop_t *loop, rk_curl **out)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    rk_curl *c = calloc(1, sizeof *c);
    if (!c) {
        curl_global_cleanup();
        return -ENOMEM;
    }
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        curl_global_cleanup();
        return -ENOMEM;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    *out = c;
    return 0;
}

int rk_curl_start(rk_curl *c, CURL *easy, rk_curl_done_cb done_cb, void *arg)
{
    if (c->closing)
        return RK_E_STATE;
    xfer *x = calloc(1, sizeof *x);
    if (!x)
        return -ENOMEM;
    x->easy = easy;
    x->cb = done_cb;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)x);
    /* linked first: adding may already call the socket function */
    x->next = c->xfers;
    if (c->xfers)
        c->xfers->prev = x;
    c->xfers = x;
    c->n_xfers++;
    CURLMcode mc = curl_multi_add_handle(c->multi, easy);
    if (mc != CURLM_OK) {
        xfer_unlink(c, x);
        free(x);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        rk_error("curl", "cannot start a transfer: %s", curl_multi_strerror(mc));
        return -EINVAL;
    }
    return 0;
}

int rk_curl_cancel(rk_curl *c, CURL *easy)
{
    for (xfer *x = c->xfers; x; x = x->next) {
        if (x->easy != easy)
            continue;
        if (c->multi)
            curl_multi_remove_handle(c->multi, easy);
        xfer_unlink(c, x);
        free(x);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        return 0;
    }
    return RK_E_NOTFOUND;
}

size_t rk_curl_running(const rk_curl *c) { return c->n_xfers; }

/* Cleans up the multi handle and closes every handle; runs once, outside
 * any dispatch.  curl_multi_cleanup may still call the socket function
 * (REMOVE) and the timer function (-1): both are safe while finished. */
static void finish_close(rk_curl *c)
{
    c->finished = 1;
    CURLM *m = c->multi;
    curl_multi_cleanup(m);
    c->multi = NULL;
    while (c->socks)
        sock_close(c->socks); /* sockets curl never asked to remove */
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void rk_curl_close(rk_curl *c, void (*close_cb)(void *arg), void *arg)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_cb = close_cb;
    c->close_arg = arg;
    uv_timer_stop(&c->timer);
    while (c->xfers) {
        xfer *x = c->xfers;
        CURL *easy = x->easy;
        curl_multi_remove_handle(c->multi, easy);
        xfer_unlink(c, x);
        rk_curl_done_cb cb = x->cb;
        void *cb_arg = x->arg;
        free(x);
        cb(cb_arg, easy, CURLE_ABORTED_BY_CALLBACK);
    }
    if (!c->in_dispatch)
        finish_close(c);
}

/* ---- one HTTP request ------------------------------------------------- */

struct rk_http {
    rk_curl *c;
    CURL *easy;
    struct curl_slist *headers;
    rk_buf body;
    int over_limit;
    rk_http_cb cb;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
};

/* Collects the (decoded) body; past max_response the transfer ends. */
static size_t on_http_write(char *p, size_t size, size_t n, void *arg)
{
    rk_http *h = arg;
    size_t len = size * n;
    if (rk_buf_append(&h->body, p, len)) {
        h->over_limit = 1;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

static void http_free(rk_http *h)
{
    if (h->easy)
        curl_easy_cleanup(h->easy);
    curl_slist_free_all(h->headers);
    rk_buf_free(&h->body);
    free(h);
}

/* Turns a finished transfer into an rk_http_response for the callback,
 * then frees the request (the body unless the callback took it). */
static void on_http_done(void *arg, CURL *easy, CURLcode res)
{
    rk_http *h = arg;
    rk_http_response r;
    memset(&r, 0, sizeof r);
    r.curl = res;
    r.retry_after_ms = -1;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &ct);
    r.content_type = ct;
    curl_off_t ra = -1;
    /* libcurl reports 0 both for no header and for "Retry-After: 0" */
    if (r.status && curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
        r.retry_after_ms = (int64_t)ra * 1000;
    if (res == CURLE_OK) {
        r.rc = 0;
    } else if (h->over_limit || res == CURLE_FILESIZE_EXCEEDED) {
        r.rc = RK_E_LIMIT;
        snprintf(r.error, sizeof r.error, "the answer is larger than the limit of %zu bytes",
                 h->body.max);
    } else if (res == CURLE_ABORTED_BY_CALLBACK) {
        r.rc = -ECANCELED;
        snprintf(r.error, sizeof r.error, "cancelled at shutdown");
    } else {
        r.rc = res == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
        snprintf(r.error, sizeof r.error, "%s", h->errbuf[0] ? h->errbuf : curl_easy_strerror(res));
    }
    if (r.rc == 0) {
        r.len = h->body.len; /* taken before rk_buf_take resets it */
        r.body = h->body.data ? rk_buf_take(&h->body) : strdup("");
        if (!r.body) {
            r.rc = -ENOMEM;
            r.len = 0;
            snprintf(r.error, sizeof r.error, "out of memory");
        }
    }
    h->cb(h->arg, &r);
    free(r.body);
    http_free(h);
}

int rk_http_start(rk_curl *c, const rk_http_request *req, rk_http_cb cb, void *arg,
                  rk_http **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (c->closing) {
        snprintf(err, errlen, "shutting down");
        return RK_E_STATE;
    }
    if (!req->url || !req->max_response) {
        snprintf(err, errlen, "no URL or no size limit");
        return -EINVAL;
    }
    rk_http *h = calloc(1, sizeof *h);
    if (!h || !(h->easy = curl_easy_init())) {
        free(h);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->c = c;
    h->cb = cb;
    h->arg = arg;
    rk_buf_init(&h->body, req->max_response);
    CURL *e = h->easy;
    int bad = 0;
#define SET(opt, val) bad |= curl_easy_setopt(e, opt, val) != CURLE_OK
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, h->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_http_write);
    SET(CURLOPT_WRITEDATA, h);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_response);
    if (req->timeout_ms > 0)
        SET(CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (req->connect_timeout_ms > 0)
        SET(CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    if (req->accept_encoding)
        SET(CURLOPT_ACCEPT_ENCODING, "");
    if (req->body) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, req->body);
    }
    const char *method = req->method ? req->method : req->body ? "POST" : "GET";
    if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") == 0) {
        if (!req->body) {
            SET(CURLOPT_POSTFIELDSIZE, 0L);
            SET(CURLOPT_COPYPOSTFIELDS, "");
        }
    } else {
        if (!req->body && strcmp(method, "DELETE") != 0) {
            SET(CURLOPT_POSTFIELDSIZE, 0L); /* PUT, PATCH with an empty body */
            SET(CURLOPT_COPYPOSTFIELDS, "");
        }
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    if (req->bearer) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        SET(CURLOPT_XOAUTH2_BEARER, req->bearer);
    } else if (req->username) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, req->username);
        SET(CURLOPT_PASSWORD, req->password ? req->password : "");
    }
    if (req->client_cert) {
        SET(CURLOPT_SSLCERT, req->client_cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        if (req->client_key)
            SET(CURLOPT_SSLKEY, req->client_key);
        if (req->client_key_password)
            SET(CURLOPT_KEYPASSWD, req->client_key_password);
    }
    if (req->ca_file)
        SET(CURLOPT_CAINFO, req->ca_file);
#undef SET
    struct curl_slist *l = NULL;
    if (req->content_type || strcmp(method, "GET") != 0) {
        /* "Content-Type:" removes libcurl's form default for a bare POST/PUT */
        char line[256];
        snprintf(line, sizeof line, "Content-Type:%s%s", req->content_type ? " " : "",
                 req->content_type ? req->content_type : "");
        if (!(l = curl_slist_append(h->headers, line)))
            bad = 1;
        else
            h->headers = l;
    }
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        if (!(l = curl_slist_append(h->headers, req->headers[i]))) {
            bad = 1;
            break;
        }
        h->headers = l;
    }
    if (!bad && h->headers)
        bad = curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers) != CURLE_OK;
    if (bad) {
        snprintf(err, errlen, "libcurl refused an option of the request");
        http_free(h);
        return -EINVAL;
    }
    int rc = rk_curl_start(c, e, on_http_done, h);
    if (rc) {
        snprintf(err, errlen, "cannot start the request: %s", rk_strerror(rc));
        http_free(h);
        return rc;
    }
    if (out)
        *out = h;
    return 0;
}

void rk_http_cancel(rk_http *h)
{
    rk_curl_cancel(h->c, h->easy);
    http_free(h);
}

char *rk_http_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e)
        return NULL;
    char *copy = strdup(e);
    curl_free(e);
    return copy;
}
