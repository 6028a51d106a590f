/*
 * test_curl_uv.c — libcurl's multi interface on a libuv loop (curl_uv.c),
 * against a small HTTP server on 127.0.0.1 that runs in a thread of this
 * test (one thread per connection, plain sockets).
 *
 * Paths of the server:
 *   /ok/N        200 "hello N"
 *   /slow        answers after 3 s (or when the test ends)
 *   /big         200 with 1 MiB of 'x'
 *   /gzip        200, Content-Encoding: gzip, 200000 bytes of "abcd..." decoded
 *   /retry       429 with Retry-After: 7
 *   /echo        200 "METHOD|AUTHORIZATION|CONTENT-TYPE|BODY"
 *
 * Every test ends by closing the context, running the loop until it is
 * empty and asserting uv_loop_close() == 0: a leaked poll or timer fails.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "curl_uv.h"
#include "util.h"

/* ---- the test server --------------------------------------------------- */

static int srv_fd = -1;
static int srv_port;
static pthread_t srv_thread;
static atomic_int srv_stop;
static atomic_int srv_open;   /* connection threads running */

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        c += k;
        n -= (size_t)k;
    }
}

static void respond(int fd, int status, const char *extra, const void *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     status, len, extra ? extra : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

static void header_value(const char *req, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = strstr(req, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            const char *end = strstr(v, "\r\n");
            size_t len = end ? (size_t)(end - v) : strlen(v);
            if (len >= n)
                len = n - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return;
        }
    }
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[8192];
    size_t len = 0;
    char *end = NULL;
    while (len < sizeof req - 1 && !end) {
        ssize_t k = recv(fd, req + len, sizeof req - 1 - len, 0);
        if (k <= 0)
            goto out;
        len += (size_t)k;
        req[len] = '\0';
        end = strstr(req, "\r\n\r\n");
    }
    if (!end)
        goto out;
    char method[16] = "", path[256] = "";
    sscanf(req, "%15s %255s", method, path);
    char cl[32];
    header_value(req, "Content-Length", cl, sizeof cl);
    size_t want = cl[0] ? strtoul(cl, NULL, 10) : 0;
    size_t have = len - (size_t)(end + 4 - req);
    while (have < want && len < sizeof req - 1) {
        ssize_t k = recv(fd, req + len, sizeof req - 1 - len, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
        have += (size_t)k;
        req[len] = '\0';
    }
    if (strncmp(path, "/ok/", 4) == 0) {
        char body[64];
        int n = snprintf(body, sizeof body, "hello %s", path + 4);
        respond(fd, 200, NULL, body, (size_t)n);
    } else if (strcmp(path, "/slow") == 0) {
        for (int i = 0; i < 300 && !atomic_load(&srv_stop); i++)
            usleep(10000);
        respond(fd, 200, NULL, "late", 4);
    } else if (strcmp(path, "/big") == 0) {
        size_t n = 1u << 20;
        char *b = malloc(n);
        memset(b, 'x', n);
        respond(fd, 200, NULL, b, n);
        free(b);
    } else if (strcmp(path, "/gzip") == 0) {
        size_t n = 200000;
        unsigned char *plain = malloc(n), *z = malloc(n + 1024);
        for (size_t i = 0; i < n; i++)
            plain[i] = (unsigned char)('a' + i % 26);
        z_stream s;
        memset(&s, 0, sizeof s);
        deflateInit2(&s, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
        s.next_in = plain;
        s.avail_in = (uInt)n;
        s.next_out = z;
        s.avail_out = (uInt)(n + 1024);
        deflate(&s, Z_FINISH);
        size_t zl = s.total_out;
        deflateEnd(&s);
        respond(fd, 200, "Content-Encoding: gzip\r\n", z, zl);
        free(plain);
        free(z);
    } else if (strcmp(path, "/retry") == 0) {
        respond(fd, 429, "Retry-After: 7\r\n", "slow down", 9);
    } else if (strcmp(path, "/echo") == 0) {
        char auth[256], ct[128], out[9000];
        header_value(req, "Authorization", auth, sizeof auth);
        header_value(req, "Content-Type", ct, sizeof ct);
        int n = snprintf(out, sizeof out, "%s|%s|%s|%.*s", method, auth, ct, (int)have,
                         end + 4);
        respond(fd, 200, NULL, out, (size_t)n);
    } else {
        respond(fd, 404, NULL, "no", 2);
    }
out:
    close(fd);
    atomic_fetch_sub(&srv_open, 1);
    return NULL;
}

static void *srv_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(srv_fd, NULL, NULL);
        if (fd < 0) {
            if (atomic_load(&srv_stop))
                return NULL;
            continue;
        }
        pthread_t t;
        atomic_fetch_add(&srv_open, 1);
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) != 0) {
            atomic_fetch_sub(&srv_open, 1);
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}

static int bind_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return fd;
}

static int group_setup(void **state)
{
    (void)state;
    rk_log_set_level(RK_LOG_LVL_ERROR);
    srv_fd = bind_loopback(&srv_port);
    if (srv_fd < 0 || listen(srv_fd, 256) != 0)
        return -1;
    return pthread_create(&srv_thread, NULL, srv_main, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    atomic_store(&srv_stop, 1);
    shutdown(srv_fd, SHUT_RDWR);
    pthread_join(srv_thread, NULL);
    close(srv_fd);
    for (int i = 0; i < 500 && atomic_load(&srv_open); i++)
        usleep(10000);
    return 0;
}

/* ---- fixture ----------------------------------------------------------- */

#define MAXR 64

typedef struct result {
    int called;
    int rc;
    CURLcode curl;
    long status;
    int64_t retry_after_ms;
    char *body;
    size_t len;
    int64_t at_ms;
} result;

typedef struct fx {
    uv_loop_t loop;
    rk_curl *c;
    int closed;
    result r[MAXR];
    int n_done;
    int close_in_cb;   /* rk_curl_close from the first done callback */
} fx;

typedef struct slotref {
    fx *f;
    int i;
} slotref;
static slotref refs[MAXR];

static void on_closed(void *arg)
{
    fx *f = arg;
    f->closed++;
}

static void on_resp(void *arg, rk_http_response *resp)
{
    slotref *s = arg;
    result *r = &s->f->r[s->i];
    r->called++;
    r->rc = resp->rc;
    r->curl = resp->curl;
    r->status = resp->status;
    r->retry_after_ms = resp->retry_after_ms;
    r->body = resp->body; /* taken */
    r->len = resp->len;
    resp->body = NULL;
    r->at_ms = rk_now_ms();
    s->f->n_done++;
    if (s->f->close_in_cb && s->f->n_done == 1)
        rk_curl_close(s->f->c, on_closed, s->f);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f || uv_loop_init(&f->loop) != 0)
        return -1;
    if (rk_curl_init(&f->loop, &f->c) != 0)
        return -1;
    for (int i = 0; i < MAXR; i++) {
        refs[i].f = f;
        refs[i].i = i;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    for (int i = 0; i < MAXR; i++)
        free(f->r[i].body);
    free(f);
    return 0;
}

/* Closes the context, runs the loop empty and checks nothing leaked. */
static void close_and_check(fx *f)
{
    if (!f->closed)
        rk_curl_close(f->c, on_closed, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void get(fx *f, int i, const char *path, long timeout_ms, size_t max)
{
    char url[256], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv_port, path);
    rk_http_request rq = {.url = url, .max_response = max, .timeout_ms = timeout_ms,
                          .connect_timeout_ms = 2000};
    assert_int_equal(rk_http_start(f->c, &rq, on_resp, &refs[i], NULL, err, sizeof err), 0);
}

/* ---- tests ------------------------------------------------------------- */

/* Many transfers at once; when they are done the loop has nothing active
 * (libcurl's -1 stopped the timer, every socket was removed), so uv_run
 * returns while the context is still open. */
static void test_parallel(void **state)
{
    fx *f = *state;
    int n = 48;
    for (int i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof path, "/ok/%d", i);
        get(f, i, path, 10000, 4096);
    }
    assert_int_equal(rk_curl_running(f->c), (size_t)n);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->n_done, n);
    assert_int_equal(rk_curl_running(f->c), 0);
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "hello %d", i);
        assert_int_equal(f->r[i].called, 1);
        assert_int_equal(f->r[i].rc, 0);
        assert_int_equal(f->r[i].status, 200);
        assert_string_equal(f->r[i].body, want);
        assert_int_equal(f->r[i].len, strlen(want));
    }
    assert_int_equal(uv_loop_alive(&f->loop), 0);
    assert_int_equal(f->closed, 0);
    /* the context stays usable after going quiet */
    get(f, n, "/ok/again", 10000, 4096);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_string_equal(f->r[n].body, "hello again");
    close_and_check(f);
}

/* A transfer that ends by its timeout is reported through the timer
 * path only (nothing else happens on the loop). */
static void test_timeout(void **state)
{
    fx *f = *state;
    int64_t t0 = rk_now_ms();
    get(f, 0, "/slow", 300, 4096);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->r[0].called, 1);
    assert_int_equal(f->r[0].rc, -ETIMEDOUT);
    assert_int_equal(f->r[0].curl, CURLE_OPERATION_TIMEDOUT);
    int64_t took = f->r[0].at_ms - t0;
    assert_true(took >= 250);
    assert_true(took < 2500);
    close_and_check(f);
}

static void test_closed_port(void **state)
{
    fx *f = *state;
    int port;
    int fd = bind_loopback(&port); /* bound, never listening: refused */
    assert_true(fd >= 0);
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", port);
    rk_http_request rq = {.url = url, .max_response = 100, .timeout_ms = 5000};
    assert_int_equal(rk_http_start(f->c, &rq, on_resp, &refs[0], NULL, err, sizeof err), 0);
    get(f, 1, "/ok/1", 5000, 100); /* a good one beside it is unaffected */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    close(fd);
    assert_int_equal(f->r[0].rc, -EIO);
    assert_int_equal(f->r[0].curl, CURLE_COULDNT_CONNECT);
    assert_int_equal(f->r[0].status, 0);
    assert_null(f->r[0].body);
    assert_int_equal(f->r[1].rc, 0);
    assert_string_equal(f->r[1].body, "hello 1");
    close_and_check(f);
}

static void on_tick_close(uv_timer_t *t)
{
    fx *f = t->data;
    rk_curl_close(f->c, on_closed, f);
    uv_close((uv_handle_t *)t, NULL);
}

typedef struct raw {
    int called;
    CURLcode res;
} raw;

static void on_raw_done(void *arg, CURL *easy, CURLcode res)
{
    raw *r = arg;
    r->called++;
    r->res = res;
    curl_easy_cleanup(easy);
}

static size_t discard(char *p, size_t s, size_t n, void *a)
{
    (void)p; (void)a;
    return s * n;
}

/* Shutdown with transfers in flight: every one is cancelled and told so,
 * the handles close and the loop closes cleanly. */
static void test_cancel_on_shutdown(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 6; i++)
        get(f, i, "/slow", 20000, 4096);
    get(f, 6, "/ok/fast", 20000, 4096);
    /* a bare easy handle through the lower layer */
    raw r = {0, CURLE_OK};
    CURL *easy = curl_easy_init();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow", srv_port);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    assert_int_equal(rk_curl_start(f->c, easy, on_raw_done, &r), 0);
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = f;
    uv_timer_start(&t, on_tick_close, 300, 0);
    int64_t t0 = rk_now_ms();
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(rk_now_ms() - t0 < 2000); /* did not wait for the server */
    assert_int_equal(f->closed, 1);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(f->r[i].called, 1);
        assert_int_equal(f->r[i].rc, -ECANCELED);
        assert_null(f->r[i].body);
    }
    assert_int_equal(f->r[6].rc, 0); /* finished before the shutdown */
    assert_int_equal(r.called, 1);
    assert_int_equal(r.res, CURLE_ABORTED_BY_CALLBACK);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* rk_curl_close from inside a done callback, others still in flight. */
static void test_close_from_callback(void **state)
{
    fx *f = *state;
    f->close_in_cb = 1;
    get(f, 0, "/ok/first", 20000, 4096);
    for (int i = 1; i < 5; i++)
        get(f, i, "/slow", 20000, 4096);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->closed, 1);
    assert_int_equal(f->r[0].rc, 0);
    for (int i = 1; i < 5; i++)
        assert_int_equal(f->r[i].rc, -ECANCELED);
    assert_int_equal(f->n_done, 5);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* A start after close fails and never calls back. */
static void test_start_after_close(void **state)
{
    fx *f = *state;
    rk_curl_close(f->c, on_closed, f);
    char err[128];
    rk_http_request rq = {.url = "http://127.0.0.1:1/", .max_response = 10};
    assert_int_equal(rk_http_start(f->c, &rq, on_resp, &refs[0], NULL, err, sizeof err),
                     RK_E_STATE);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->r[0].called, 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Size limits: raw and after gzip decoding; a body at the limit passes. */
static void test_limits_and_gzip(void **state)
{
    fx *f = *state;
    get(f, 0, "/big", 10000, 1000);
    get(f, 1, "/big", 10000, 1u << 20);           /* exactly at the limit */
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/gzip", srv_port);
    rk_http_request rq = {.url = url, .max_response = 300000, .accept_encoding = 1};
    assert_int_equal(rk_http_start(f->c, &rq, on_resp, &refs[2], NULL, err, sizeof err), 0);
    rq.max_response = 100000; /* decoded size counts, not the wire size */
    assert_int_equal(rk_http_start(f->c, &rq, on_resp, &refs[3], NULL, err, sizeof err), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->r[0].rc, RK_E_LIMIT);
    assert_null(f->r[0].body);
    assert_int_equal(f->r[1].rc, 0);
    assert_int_equal(f->r[1].len, 1u << 20);
    assert_int_equal(f->r[2].rc, 0);
    assert_int_equal(f->r[2].len, 200000);
    assert_memory_equal(f->r[2].body, "abcdefghijklmnopqrstuvwxyzabc", 29);
    assert_int_equal(f->r[2].body[199999], 'a' + 199999 % 26);
    assert_int_equal(f->r[3].rc, RK_E_LIMIT);
    close_and_check(f);
}

static void test_retry_after(void **state)
{
    fx *f = *state;
    get(f, 0, "/retry", 10000, 1000);
    get(f, 1, "/ok/x", 10000, 1000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->r[0].rc, 0);
    assert_int_equal(f->r[0].status, 429);
    assert_int_equal(f->r[0].retry_after_ms, 7000);
    assert_string_equal(f->r[0].body, "slow down");
    assert_int_equal(f->r[1].retry_after_ms, -1);
    close_and_check(f);
}

/* Methods, bodies and the two auth styles reach the server as meant. */
static void test_methods_and_auth(void **state)
{
    fx *f = *state;
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", srv_port);
    rk_http_request a = {.url = url, .max_response = 4096, .bearer = "tok-123"};
    rk_http_request b = {.url = url, .max_response = 4096, .method = "POST",
                         .body = "grant_type=client_credentials", .body_len = 29,
                         .content_type = "application/x-www-form-urlencoded",
                         .username = "cid", .password = "sec"};
    rk_http_request c = {.url = url, .max_response = 4096, .method = "DELETE"};
    rk_http_request d = {.url = url, .max_response = 4096, .method = "PUT"};
    rk_http_request e = {.url = url, .max_response = 4096, .method = "POST"};
    const char *hdr[] = {"Accept: application/json", NULL};
    a.headers = hdr;
    assert_int_equal(rk_http_start(f->c, &a, on_resp, &refs[0], NULL, err, sizeof err), 0);
    assert_int_equal(rk_http_start(f->c, &b, on_resp, &refs[1], NULL, err, sizeof err), 0);
    assert_int_equal(rk_http_start(f->c, &c, on_resp, &refs[2], NULL, err, sizeof err), 0);
    assert_int_equal(rk_http_start(f->c, &d, on_resp, &refs[3], NULL, err, sizeof err), 0);
    assert_int_equal(rk_http_start(f->c, &e, on_resp, &refs[4], NULL, err, sizeof err), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_string_equal(f->r[0].body, "GET|Bearer tok-123||");
    /* "cid:sec" in base64 */
    assert_string_equal(f->r[1].body, "POST|Basic Y2lkOnNlYw==|application/x-www-form-urlencoded|"
                                      "grant_type=client_credentials");
    assert_string_equal(f->r[2].body, "DELETE|||");
    assert_string_equal(f->r[3].body, "PUT|||");
    assert_true(strncmp(f->r[4].body, "POST|||", 7) == 0);
    close_and_check(f);
}

/* A cancelled request never calls back; the others finish. */
static void test_cancel_one(void **state)
{
    fx *f = *state;
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow", srv_port);
    rk_http_request rq = {.url = url, .max_response = 100};
    rk_http *h = NULL;
    assert_int_equal(rk_http_start(f->c, &rq, on_resp, &refs[0], &h, err, sizeof err), 0);
    assert_non_null(h);
    get(f, 1, "/ok/1", 10000, 100);
    rk_http_cancel(h);
    assert_int_equal(rk_curl_running(f->c), 1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->r[0].called, 0);
    assert_int_equal(f->r[1].rc, 0);
    /* refused requests: no URL, a protocol other than http(s) */
    rk_http_request bad = {.url = NULL, .max_response = 10};
    assert_int_equal(rk_http_start(f->c, &bad, on_resp, &refs[2], NULL, err, sizeof err),
                     -EINVAL);
    rk_http_request file = {.url = "file:///etc/passwd", .max_response = 10000};
    assert_int_equal(rk_http_start(f->c, &file, on_resp, &refs[3], NULL, err, sizeof err), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->r[2].called, 0);
    assert_int_equal(f->r[3].rc, -EIO);
    assert_int_equal(f->r[3].curl, CURLE_UNSUPPORTED_PROTOCOL);
    close_and_check(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_on_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_after_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_methods_and_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_one, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
