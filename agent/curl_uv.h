/*
 * curl_uv.h — libcurl's multi interface on a libuv loop.
 *
 * One rk_curl per loop holds one curl multi handle, driven by
 * curl_multi_socket_action from a uv_poll per socket and one uv_timer for
 * libcurl's timeout, all on the loop thread.  Two layers:
 *
 *   rk_curl_start   runs an easy handle the caller set up; the done
 *                   callback gets the handle back.
 *   rk_http_start   one HTTP request described by a struct (method, URL,
 *                   headers, body, auth, TLS client certificate, size limit,
 *                   timeouts); the callback gets status, body and
 *                   Retry-After.  Used by the networked inbox sources.
 *
 * Threading: every function must be called on the loop thread, and none
 * from inside a libcurl callback (write, header, ...).  Callbacks run on
 * the loop thread.
 *
 * Ownership: rk_curl_init returns a context the caller closes with
 * rk_curl_close; the memory is freed after the last libuv handle closed,
 * then close_cb runs.  An easy handle given to rk_curl_start belongs to
 * the context until its done callback, which hands it back (the callback
 * cleans it up or reuses it).  An rk_http belongs to the context; the
 * response passed to its callback is valid during the callback only,
 * except for a body the callback takes (sets resp->body to NULL and frees
 * it later).
 */
#ifndef RK_CURL_UV_H
#define RK_CURL_UV_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>

typedef struct rk_curl rk_curl;

/* Creates the context for loop (curl_global_init included).  0 or a
 * negative error; *out is set on success. */
int rk_curl_init(uv_loop_t *loop, rk_curl **out);

/* The transfer of easy is over: result is libcurl's code, or
 * CURLE_ABORTED_BY_CALLBACK when rk_curl_close cancelled it.  easy is
 * removed from the multi handle and is the caller's again. */
typedef void (*rk_curl_done_cb)(void *arg, CURL *easy, CURLcode result);

/* Adds easy to the multi handle.  The context sets CURLOPT_PRIVATE (the
 * caller must not use it).  Returns 0, or a negative error (closing:
 * RK_E_STATE; curl refused the handle: -EINVAL) and then never calls
 * done_cb and easy stays the caller's. */
int rk_curl_start(rk_curl *c, CURL *easy, rk_curl_done_cb done_cb, void *arg);

/* Removes a running transfer without calling its done callback; easy is
 * the caller's again.  RK_E_NOTFOUND when easy is not running here. */
int rk_curl_cancel(rk_curl *c, CURL *easy);

/* Number of transfers running. */
size_t rk_curl_running(const rk_curl *c);

/* Cancels every running transfer (their done callbacks run, with
 * CURLE_ABORTED_BY_CALLBACK, before this returns or, when called from a
 * done callback, before that dispatch returns), cleans up the multi
 * handle, closes the timer and every poll handle, frees the context once
 * their close callbacks ran, then calls close_cb(arg).  After this call
 * rk_curl_start fails with RK_E_STATE. */
void rk_curl_close(rk_curl *c, void (*close_cb)(void *arg), void *arg);

/* ---- one HTTP request ------------------------------------------------- */

typedef struct rk_http rk_http;

typedef struct rk_http_request {
    const char *method;          /* NULL: GET, or POST when body is set */
    const char *url;             /* http:// or https:// only */
    const char *const *headers;  /* NULL-terminated "Name: value" lines, or NULL */
    const void *body;            /* request body (copied), or NULL */
    size_t body_len;
    const char *content_type;    /* of the body; NULL: none sent */
    const char *bearer;          /* "Authorization: Bearer ..." (secret), or NULL */
    const char *username;        /* HTTP Basic (secret password), or NULL */
    const char *password;
    const char *client_cert;     /* PEM file of a TLS client certificate, or NULL */
    const char *client_key;      /* its key (PEM); NULL: in client_cert */
    const char *client_key_password; /* secret, or NULL */
    const char *ca_file;         /* PEM bundle to verify the server; NULL: system */
    size_t max_response;         /* limit of the decoded body; required (> 0) */
    long timeout_ms;             /* whole request; 0: none */
    long connect_timeout_ms;     /* 0: libcurl's default */
    int accept_encoding;         /* 1: offer gzip/deflate and decode the answer */
} rk_http_request;

typedef struct rk_http_response {
    /* 0: an HTTP answer arrived (any status: look at status).  Otherwise
     * RK_E_LIMIT (the body exceeded max_response), -ETIMEDOUT, -ECANCELED
     * (rk_curl_close) or -EIO (any other network or TLS failure); error
     * says what happened without secrets. */
    int rc;
    CURLcode curl;
    long status;                 /* HTTP status, 0 when none */
    int64_t retry_after_ms;      /* from Retry-After (seconds or a date); -1: none or 0 */
    char *body;                  /* NUL-terminated decoded body, or NULL */
    size_t len;
    const char *content_type;    /* or NULL */
    char error[CURL_ERROR_SIZE + 64];
} rk_http_response;

typedef void (*rk_http_cb)(void *arg, rk_http_response *resp);

/* Starts one request.  On success returns 0 and sets *out (may be NULL)
 * to a handle valid until the callback runs or rk_http_cancel.  On error
 * (closing, bad request, out of memory) returns a negative error with a
 * reason in err and never calls cb. */
int rk_http_start(rk_curl *c, const rk_http_request *req, rk_http_cb cb, void *arg,
                  rk_http **out, char *err, size_t errlen);

/* Cancels a running request; its callback is not called. */
void rk_http_cancel(rk_http *h);

/* The query-string or path escape of s as a new string (caller frees),
 * or NULL on ENOMEM. */
char *rk_http_escape(const char *s);

#endif /* RK_CURL_UV_H */
