/*
 * inbox_http.c — see inbox_http.h.
 *
 * One poll cycle:
 *
 *   [token]  OAuth2 client credentials, cached until shortly before expiry
 *   list     GET list_url, then each next page (cursor or link), collecting
 *            ids; an id already acknowledged in this run is skipped
 *   work     up to max_inflight submissions at once: fetch (GET fetch_url) →
 *            rk_engine_submit → (committed) → acknowledge (ack_method
 *            ack_url) → done
 *   wait     poll_interval_ms plus jitter; at once when the cycle stored
 *            something (there may be more); backoff when it failed
 *
 * Failure classes: a network error, a timeout, 408, 429 or 5xx is
 * transient: no new request is started, the ones in flight finish, and
 * the next cycle runs after a capped exponential backoff with jitter (at
 * least Retry-After).  A refused token or 401/403 is an authentication
 * error, a malformed list a permanent one: logged as errors, retried
 * after the same backoff.  A single submission that cannot be taken
 * (4xx on fetch, too large, empty) is set aside with its own backoff and
 * does not hold up the others.
 *
 * Everything runs on the loop thread.  Secrets (tokens, client secret,
 * key password) are never logged; bodies are never logged either, since
 * they carry citizens' data.
 */
#include "inbox_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "inbox_parse.h"
#include "metrics.h"
#include "util.h"

#define MAX_IDS_PER_POLL 10000 /* ids taken from one listing; more: next poll at once */
#define MAX_PAGES 1000
#define MAX_ID_LEN RK__HTTP_MAX_ID_LEN
#define MAX_RETRY_AFTER_MS 3600000LL
#define N_BUCKETS 1024

enum { K_NEW, K_STORED, K_ACKED, K_BAD };              /* what we know of an id */
enum { W_NONE, W_QUEUED, W_FETCHING, W_STORING, W_ACKING }; /* its step in this cycle */
enum { PH_WAIT, PH_LIST, PH_WORK };
enum { O_NONE, O_NOTHING, O_WORK, O_TRANSIENT, O_PERMANENT };
enum { C_OK, C_TRANSIENT, C_AUTH, C_SETUP, C_GONE, C_BAD };

typedef struct entry {
    rk_http_inbox *s;
    char *id;
    int known;
    int work;
    int fails;             /* K_BAD: consecutive failures */
    int64_t retry_at;      /* K_BAD: not before */
    unsigned gen;          /* the last cycle that listed it */
    rk_http *req;
    struct entry *hnext;   /* hash chain */
    struct entry *qnext;   /* work queue */
} entry;

struct rk_http_inbox {
    rk_engine *engine;
    rk_curl *curl;
    const rk_http_inbox_config *cfg;
    size_t max_document;
    char source[64];       /* "http:NAME", also the log component */
    char *list_log;        /* list_url and token_url as logged (no query) */
    char *token_log;
    uv_timer_t timer;

    entry *buckets[N_BUCKETS];
    size_t n_entries;
    entry *qhead, *qtail;

    int phase;
    unsigned gen;
    char *page_url;
    int pages;
    int list_complete;
    int more;              /* the listing hit MAX_IDS_PER_POLL or MAX_PAGES */
    size_t queued;         /* ids queued in this cycle */
    rk_http *list_req;
    int n_http;            /* fetches and acks in flight */
    int n_storing;         /* waiting for the engine's commit */
    int halt;              /* a failure: start nothing new in this cycle */
    int error_class;       /* O_TRANSIENT or O_PERMANENT when halted */
    int64_t retry_after_ms;
    int found;             /* submissions stored in this cycle */
    int outcome;           /* of the last finished cycle */
    int fails;             /* consecutive failed cycles */

    char *token;           /* OAuth2 access token (secret) */
    int64_t token_refresh_ms;
    rk_http *token_req;

    int stopping;
    void (*done)(void *);
    void *done_arg;
};

static void pump(rk_http_inbox *s);

/* ---- small helpers ----------------------------------------------------- */

static void secret_free(char *p)
{
    if (p) {
        explicit_bzero(p, strlen(p));
        free(p);
    }
}

static unsigned hash_id(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % N_BUCKETS;
}

static entry *entry_get(rk_http_inbox *s, const char *id, int create)
{
    unsigned b = hash_id(id);
    for (entry *e = s->buckets[b]; e; e = e->hnext)
        if (strcmp(e->id, id) == 0)
            return e;
    if (!create)
        return NULL;
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->id = strdup(id))) {
        free(e);
        return NULL;
    }
    e->s = s;
    e->hnext = s->buckets[b];
    s->buckets[b] = e;
    s->n_entries++;
    return e;
}

static void queue_push(rk_http_inbox *s, entry *e, int front)
{
    e->work = W_QUEUED;
    e->qnext = NULL;
    if (front) {
        e->qnext = s->qhead;
        s->qhead = e;
        if (!s->qtail)
            s->qtail = e;
    } else {
        if (s->qtail)
            s->qtail->qnext = e;
        else
            s->qhead = e;
        s->qtail = e;
    }
}

static entry *queue_pop(rk_http_inbox *s)
{
    entry *e = s->qhead;
    if (e) {
        s->qhead = e->qnext;
        if (!s->qhead)
            s->qtail = NULL;
        e->qnext = NULL;
    }
    return e;
}

/* Capped exponential backoff with jitter (between half and all of it). */
static int64_t backoff_ms(const rk_http_inbox_config *c, int fails)
{
    int64_t b = c->backoff_initial_ms;
    for (int i = 1; i < fails && b < c->backoff_max_ms; i++)
        b *= 2;
    if (b > c->backoff_max_ms)
        b = c->backoff_max_ms;
    int64_t half = b / 2;
    return half + (half > 0 ? (int64_t)(random() % (half + 1)) : 0);
}

static int classify(const rk_http_response *r)
{
    if (r->rc == RK_E_LIMIT)
        return C_BAD;
    switch (r->rc ? r->curl : CURLE_OK) {
    case CURLE_OK: break;
    case CURLE_PEER_FAILED_VERIFICATION: /* our TLS settings or the URL: no retry helps */
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return C_SETUP;
    default:
        return C_TRANSIENT;
    }
    if (r->status >= 200 && r->status < 300)
        return C_OK;
    if (r->status == 408 || r->status == 429 || r->status >= 500)
        return C_TRANSIENT;
    if (r->status == 401 || r->status == 403)
        return C_AUTH;
    if (r->status == 404 || r->status == 410)
        return C_GONE;
    return C_BAD;
}

/* What an operator should look at for a refusal. */
static const char *hint(int cls)
{
    return cls == C_SETUP ? "check ca_file, client_cert, client_key and the URLs"
                          : "check the credentials";
}

/* What went wrong, for the log: the network error or the HTTP status. */
static void describe(const rk_http_response *r, char *out, size_t n)
{
    if (r->rc)
        snprintf(out, n, "%s", r->error);
    else if (r->retry_after_ms > 0)
        snprintf(out, n, "HTTP %ld, Retry-After %lld s", r->status,
                 (long long)(r->retry_after_ms / 1000));
    else
        snprintf(out, n, "HTTP %ld", r->status);
}

/* The template with every {id} replaced by the escaped id (caller frees). */
static char *expand(const char *tmpl, const char *id)
{
    char *esc = rk_http_escape(id);
    if (!esc)
        return NULL;
    rk_buf b;
    rk_buf_init(&b, 16384);
    const char *p = tmpl, *hit;
    int rc = 0;
    while (!rc && (hit = strstr(p, "{id}")) != NULL) {
        rc = rk_buf_append(&b, p, (size_t)(hit - p));
        if (!rc)
            rc = rk_buf_append(&b, esc, strlen(esc));
        p = hit + 4;
    }
    if (!rc)
        rc = rk_buf_append(&b, p, strlen(p));
    free(esc);
    if (rc) {
        rk_buf_free(&b);
        return NULL;
    }
    return rk_buf_take(&b);
}

/* scheme://host:port of a URL, to keep paging on the configured server. */
static char *url_origin(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        size_t n = strlen(scheme) + strlen(host) + strlen(port) + 8;
        out = malloc(n);
        if (out)
            snprintf(out, n, "%s://%s:%s", scheme, host, port);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out;
}

/* scheme://host:port/path of a URL for the log: the query and any user
 * info may carry an API key.  Caller frees. */
static char *url_for_log(const char *url)
{
    CURLU *u = curl_url();
    char *path = NULL, *out = NULL;
    char *origin = url_origin(url);
    if (u && origin && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        size_t n = strlen(origin) + strlen(path) + 1;
        out = malloc(n);
        if (out)
            snprintf(out, n, "%s%s", origin, path);
    }
    curl_free(path);
    curl_url_cleanup(u);
    free(origin);
    return out ? out : strdup("(unparsable URL)");
}

/* The URL of the next page: a link (absolute, or relative to the page
 * just read) must stay on the list_url's server, since requests carry the
 * credentials; anything else is a cursor for cursor_param. */
static char *next_url(rk_http_inbox *s, const char *next, char *why, size_t whylen)
{
    const rk_http_inbox_config *c = s->cfg;
    if (strncmp(next, "http://", 7) == 0 || strncmp(next, "https://", 8) == 0 ||
        next[0] == '/' || next[0] == '?') {
        CURLU *u = curl_url();
        char *out = NULL;
        if (u && curl_url_set(u, CURLUPART_URL, s->page_url, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_URL, next, 0) == CURLUE_OK)
            curl_url_get(u, CURLUPART_URL, &out, 0);
        curl_url_cleanup(u);
        if (!out) {
            snprintf(why, whylen, "the next link is not a valid URL");
            return NULL;
        }
        char *a = url_origin(out), *b = url_origin(c->list_url);
        int same = a && b && strcasecmp(a, b) == 0;
        free(a);
        free(b);
        char *copy = same ? strdup(out) : NULL;
        curl_free(out);
        if (!same)
            snprintf(why, whylen, "the next link points to another server than list_url");
        return copy;
    }
    char *esc = rk_http_escape(next);
    if (!esc)
        return NULL;
    size_t n = strlen(c->list_url) + strlen(c->cursor_param) + strlen(esc) + 3;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s%c%s=%s", c->list_url, strchr(c->list_url, '?') ? '&' : '?',
                 c->cursor_param, esc);
    free(esc);
    return out;
}

/* The request fields every call shares: auth, TLS, timeouts. */
static void request_base(rk_http_inbox *s, rk_http_request *rq, const char *url, size_t max)
{
    const rk_http_inbox_config *c = s->cfg;
    static const char *const accept_json[] = {"Accept: application/json", NULL};
    memset(rq, 0, sizeof *rq);
    rq->url = url;
    rq->max_response = max;
    rq->timeout_ms = (long)c->timeout_ms;
    rq->connect_timeout_ms = (long)c->connect_timeout_ms;
    rq->accept_encoding = 1;
    rq->headers = accept_json;
    rq->client_cert = c->client_cert;
    rq->client_key = c->client_key;
    rq->client_key_password = c->client_key_password;
    rq->ca_file = c->ca_file;
    if (c->auth == RK_HTTP_AUTH_BEARER)
        rq->bearer = c->bearer_token;
    else if (c->auth == RK_HTTP_AUTH_OAUTH2)
        rq->bearer = s->token;
}

/* ---- the cycle --------------------------------------------------------- */

/* Stop starting requests in this cycle; end it once nothing is in flight. */
static void fail_cycle(rk_http_inbox *s, int cls, int64_t retry_after_ms)
{
    s->halt = 1;
    if (cls == O_PERMANENT || s->error_class != O_PERMANENT)
        s->error_class = cls;
    if (retry_after_ms > s->retry_after_ms)
        s->retry_after_ms = retry_after_ms;
}

static void on_timer(uv_timer_t *t);

static void arm(rk_http_inbox *s, int64_t delay)
{
    if (!s->stopping)
        uv_timer_start(&s->timer, on_timer, (uint64_t)(delay > 0 ? delay : 0), 0);
}

/* Ends the cycle: forgets ids the complete listing no longer has, and
 * decides when the next one runs. */
static void end_cycle(rk_http_inbox *s)
{
    const rk_http_inbox_config *c = s->cfg;
    entry *e;
    while ((e = queue_pop(s)) != NULL)
        e->work = W_NONE; /* not reached: taken up by the next cycle */
    if (s->list_complete && !s->halt) {
        for (size_t b = 0; b < N_BUCKETS; b++) {
            entry **pp = &s->buckets[b];
            while ((e = *pp) != NULL) {
                if (e->gen != s->gen && e->work == W_NONE) {
                    *pp = e->hnext;
                    free(e->id);
                    free(e);
                    s->n_entries--;
                } else {
                    pp = &e->hnext;
                }
            }
        }
    }
    free(s->page_url);
    s->page_url = NULL;
    s->phase = PH_WAIT;
    int64_t delay;
    rk_metrics_source_poll(s->source);
    if (s->halt) {
        rk_metrics_source_error(s->source);
        /* a permanent error (refused credentials, an unusable answer)
         * needs a person: /readyz and rekey_source_up show it until a
         * poll works again */
        if (s->error_class == O_PERMANENT)
            rk_metrics_source_health(s->source,
                                     "polls fail with an error retrying will not cure "
                                     "(refused credentials or an unusable answer; see the "
                                     "log)");
        s->fails++;
        s->outcome = s->error_class ? s->error_class : O_TRANSIENT;
        delay = backoff_ms(c, s->fails);
        int64_t ra = s->retry_after_ms > MAX_RETRY_AFTER_MS ? MAX_RETRY_AFTER_MS
                                                             : s->retry_after_ms;
        if (ra > delay)
            delay = ra;
        rk_warn(s->source, "poll failed (%d in a row); next try in %lld ms", s->fails,
                (long long)delay);
        char why[200];
        snprintf(why, sizeof why, "poll failed (%d in a row)%s; see the log", s->fails,
                 s->error_class == O_PERMANENT ? ", an error retrying will not cure" : "");
        rk_engine_source_health(s->engine, s->source, 0, why, rk_now_ms() + delay);
    } else {
        rk_metrics_source_health(s->source, NULL);
        s->fails = 0;
        if (s->found || s->more) {
            s->outcome = O_WORK;
            delay = 0; /* there may be more: look again at once */
        } else {
            s->outcome = O_NOTHING;
            delay = c->poll_interval_ms +
                    (c->poll_jitter_ms ? (int64_t)(random() % (c->poll_jitter_ms + 1)) : 0);
        }
        rk_debug(s->source, "poll done: %d stored; next poll in %lld ms", s->found,
                 (long long)delay);
        rk_engine_source_health(s->engine, s->source, 1, NULL, rk_now_ms() + delay);
    }
    arm(s, delay);
}

static void maybe_end(rk_http_inbox *s)
{
    if (s->stopping || s->phase == PH_WAIT || s->token_req)
        return;
    if (s->phase == PH_LIST && !s->list_req && s->halt)
        end_cycle(s);
    else if (s->phase == PH_WORK && !s->n_http && !s->n_storing && (s->halt || !s->qhead))
        end_cycle(s);
}

static void start_cycle(rk_http_inbox *s)
{
    s->gen++;
    s->phase = PH_LIST;
    free(s->page_url);
    s->page_url = strdup(s->cfg->list_url);
    s->pages = 0;
    s->list_complete = 0;
    s->more = 0;
    s->queued = 0;
    s->halt = 0;
    s->error_class = 0;
    s->retry_after_ms = -1;
    s->found = 0;
    if (!s->page_url) {
        fail_cycle(s, O_TRANSIENT, -1);
        maybe_end(s);
        return;
    }
    pump(s);
}

static void on_timer(uv_timer_t *t)
{
    start_cycle(t->data);
}

/* ---- token ------------------------------------------------------------- */

/* The token answer: keeps the access token and the time to renew it, or
 * logs why there is none (only the OAuth2 error code, never the body). */
static void on_token(void *arg, rk_http_response *r)
{
    rk_http_inbox *s = arg;
    s->token_req = NULL;
    int cls = classify(r);
    if (cls != C_OK) {
        char what[CURL_ERROR_SIZE + 80];
        describe(r, what, sizeof what);
        if (cls == C_TRANSIENT) {
            rk_warn(s->source, "token request failed (%s)", what);
            fail_cycle(s, O_TRANSIENT, r->retry_after_ms);
        } else {
            /* the OAuth2 error code is a registered word, safe to log */
            char code[64] = "";
            rk__oauth_error_code(r->body, r->body ? strlen(r->body) : 0, code, sizeof code);
            rk_error(s->source, "token request refused by %s (%s%s%s): %s", s->token_log,
                     what, code[0] ? ", error " : "", code,
                     cls == C_SETUP ? hint(cls) : "check client_id and client_secret");
            fail_cycle(s, O_PERMANENT, r->retry_after_ms);
        }
        maybe_end(s);
        return;
    }
    char *token = NULL;
    int64_t life = 0;
    if (rk__oauth_token_parse(r->body, r->len, 1, &token, &life) != 0) {
        rk_error(s->source, "the token endpoint answered without a usable bearer access_token");
        fail_cycle(s, O_PERMANENT, -1);
        maybe_end(s);
        return;
    }
    /* renew a fifth of the lifetime (at most a minute) before it ends */
    int64_t margin = life / 5 < 60000 ? life / 5 : 60000;
    secret_free(s->token);
    s->token = token;
    s->token_refresh_ms = rk_now_ms() + life - margin;
    rk_info(s->source, "got an access token, valid for %lld s", (long long)(life / 1000));
    pump(s);
}

/* 1 when a request must wait for a token (and one is requested). */
static int need_token(rk_http_inbox *s)
{
    const rk_http_inbox_config *c = s->cfg;
    if (c->auth != RK_HTTP_AUTH_OAUTH2)
        return 0;
    if (s->token && rk_now_ms() < s->token_refresh_ms)
        return 0;
    if (s->token_req)
        return 1;
    if (s->n_http || s->list_req)
        return 1; /* let the requests carrying the old token finish first */
    rk_buf body;
    rk_buf_init(&body, 8192);
    int rc = rk_buf_appendf(&body, "grant_type=client_credentials");
    if (!rc && c->scope) {
        char *e = rk_http_escape(c->scope);
        rc = e ? rk_buf_appendf(&body, "&scope=%s", e) : -ENOMEM;
        free(e);
    }
    if (!rc && !c->token_auth_basic) {
        char *id = rk_http_escape(c->client_id), *sec = rk_http_escape(c->client_secret);
        rc = id && sec ? rk_buf_appendf(&body, "&client_id=%s&client_secret=%s", id, sec)
                       : -ENOMEM;
        free(id);
        secret_free(sec);
    }
    rk_http_request rq;
    request_base(s, &rq, c->token_url, c->max_list_size);
    rq.bearer = NULL;
    rq.method = "POST";
    rq.body = body.data;
    rq.body_len = body.len;
    rq.content_type = "application/x-www-form-urlencoded";
    if (c->token_auth_basic) {
        rq.username = c->client_id;
        rq.password = c->client_secret;
    }
    char err[256];
    if (!rc)
        rc = rk_http_start(s->curl, &rq, on_token, s, &s->token_req, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s", rk_strerror(rc));
    if (body.data)
        explicit_bzero(body.data, body.len);
    rk_buf_free(&body);
    if (rc) {
        rk_error(s->source, "cannot request a token: %s", err);
        fail_cycle(s, O_TRANSIENT, -1);
        return 1;
    }
    return 1;
}

/* A 401 with a token from the token endpoint: it may have been revoked;
 * the next cycle asks for a new one. */
static void drop_token(rk_http_inbox *s)
{
    if (s->cfg->auth == RK_HTTP_AUTH_OAUTH2) {
        secret_free(s->token);
        s->token = NULL;
    }
}

/* ---- listing ----------------------------------------------------------- */

/* Takes one id of a list page into the cycle (rk__list_id_cb): 0 to go
 * on, 1 when the poll has all it takes, -ENOMEM. */
static int take_id(void *arg, size_t i, const char *id)
{
    rk_http_inbox *s = arg;
    if (!id) {
        rk_warn(s->source, "list item %zu has no usable id (member '%s'); skipped", i,
                s->cfg->list_id);
        return 0;
    }
    entry *e = entry_get(s, id, 1);
    if (!e)
        return -ENOMEM;
    if (e->gen == s->gen) {
        rk_debug(s->source, "submission %s listed twice; taken once", id);
        return 0;
    }
    e->gen = s->gen;
    if (e->known == K_ACKED)
        return 0;
    if (e->known == K_BAD && rk_now_ms() < e->retry_at)
        return 0;
    if (s->queued >= MAX_IDS_PER_POLL) {
        s->more = 1; /* the rest is taken by the next poll, at once */
        return 1;
    }
    queue_push(s, e, 0);
    s->queued++;
    return 0;
}

/* One list page: takes its ids, then reads the next page or, after the
 * last one, starts the work phase.  Paging links are followed only on
 * list_url's server. */
static void on_list(void *arg, rk_http_response *r)
{
    rk_http_inbox *s = arg;
    s->list_req = NULL;
    int cls = classify(r);
    char what[CURL_ERROR_SIZE + 80];
    if (cls != C_OK) {
        describe(r, what, sizeof what);
        if (cls == C_TRANSIENT) {
            rk_warn(s->source, "listing failed (%s)", what);
            fail_cycle(s, O_TRANSIENT, r->retry_after_ms);
        } else if (cls == C_AUTH || cls == C_SETUP) {
            rk_error(s->source, "listing refused (%s): %s", what, hint(cls));
            if (cls == C_AUTH)
                drop_token(s);
            fail_cycle(s, O_PERMANENT, r->retry_after_ms);
        } else {
            rk_error(s->source, "listing failed (%s)", what);
            fail_cycle(s, O_PERMANENT, r->retry_after_ms);
        }
        maybe_end(s);
        return;
    }
    char why[256] = "", cursor[2048];
    int prc = rk__http_list_parse(r->body, r->len, s->cfg->list_items, s->cfg->list_id,
                                  s->cfg->list_next, take_id, s, cursor, sizeof cursor, why,
                                  sizeof why);
    if (prc == RK__LIST_UNUSABLE) {
        rk_error(s->source, "list answer from %s is unusable: %s", s->list_log, why);
        fail_cycle(s, O_PERMANENT, -1);
        maybe_end(s);
        return;
    }
    s->pages++;
    char *next = NULL;
    if (prc == 0 && cursor[0])
        next = next_url(s, cursor, why, sizeof why);
    if (prc != 0 || (cursor[0] && !next)) {
        rk_error(s->source, "paging stops: %s", why);
        fail_cycle(s, O_PERMANENT, -1);
        maybe_end(s);
        return;
    }
    if (next && strcmp(next, s->page_url) == 0) {
        rk_warn(s->source, "the list answered its own page as the next one; paging stops");
        free(next);
        next = NULL;
    }
    if (next && s->pages >= MAX_PAGES) {
        rk_warn(s->source, "more than %d list pages; the rest waits for the next poll",
                MAX_PAGES);
        free(next);
        next = NULL;
        s->more = 1;
    }
    if (next && s->more) {
        free(next);
        next = NULL;
    }
    if (next) {
        free(s->page_url);
        s->page_url = next;
    } else {
        s->list_complete = !s->more;
        s->phase = PH_WORK;
        if (s->queued)
            rk_info(s->source, "%zu submissions to fetch or acknowledge", s->queued);
    }
    pump(s);
}

/* ---- fetch, store, acknowledge ----------------------------------------- */

/* One submission cannot be taken: set it aside with its own backoff. */
static void set_aside(entry *e, const char *why)
{
    rk_http_inbox *s = e->s;
    e->known = K_BAD;
    e->fails++;
    int64_t wait = backoff_ms(s->cfg, e->fails);
    e->retry_at = rk_now_ms() + wait;
    rk_error(s->source, "submission %s: %s; tried again in %lld s", e->id, why,
             (long long)(wait / 1000));
}

static void on_ack(void *arg, rk_http_response *r);

/* Sends the acknowledgement of a stored submission. */
static void start_ack(entry *e)
{
    rk_http_inbox *s = e->s;
    char *url = expand(s->cfg->ack_url, e->id);
    rk_http_request rq;
    request_base(s, &rq, url, s->cfg->max_list_size);
    rq.method = s->cfg->ack_method;
    char err[256];
    int rc = url ? rk_http_start(s->curl, &rq, on_ack, e, &e->req, err, sizeof err) : -ENOMEM;
    free(url);
    if (rc) {
        rk_error(s->source, "submission %s: cannot send the acknowledgement", e->id);
        e->work = W_NONE;
        fail_cycle(s, O_TRANSIENT, -1);
        return;
    }
    e->work = W_ACKING;
    s->n_http++;
}

/* The acknowledgement answer: done, set aside, or repeated next poll. */
static void on_ack(void *arg, rk_http_response *r)
{
    entry *e = arg;
    rk_http_inbox *s = e->s;
    e->req = NULL;
    e->work = W_NONE;
    s->n_http--;
    int cls = classify(r);
    char what[CURL_ERROR_SIZE + 80];
    describe(r, what, sizeof what);
    if (cls == C_OK || cls == C_GONE) {
        e->known = K_ACKED;
        if (cls == C_GONE)
            rk_info(s->source, "submission %s: acknowledgement answered %s; taken as done",
                    e->id, what);
        else
            rk_info(s->source, "submission %s: acknowledged", e->id);
    } else if (cls == C_BAD) {
        /* refused for this one: set aside; it is fetched again later and
         * the engine knows it is stored */
        char why[CURL_ERROR_SIZE + 120];
        snprintf(why, sizeof why, "acknowledgement refused (%s)", what);
        set_aside(e, why);
    } else {
        /* stored: only the acknowledgement is repeated next time */
        rk_warn(s->source, "submission %s: acknowledgement failed (%s)", e->id, what);
        if (cls == C_AUTH)
            drop_token(s);
        fail_cycle(s, cls == C_TRANSIENT ? O_TRANSIENT : O_PERMANENT, r->retry_after_ms);
    }
    pump(s);
}

/* The engine committed the submission (rc 0) or could not store it; only
 * now may the acknowledgement go out. */
static void on_stored(void *arg, int rc, int64_t job_id, const char *msg)
{
    entry *e = arg;
    rk_http_inbox *s = e->s;
    s->n_storing--;
    e->work = W_NONE;
    if (s->stopping)
        return;
    if (rc) {
        rk_error(s->source, "submission %s could not be stored: %s", e->id,
                 msg ? msg : rk_strerror(rc));
        fail_cycle(s, O_TRANSIENT, -1);
    } else {
        rk_info(s->source, "submission %s stored as job %lld", e->id, (long long)job_id);
        s->found++;
        e->fails = 0;
        if (s->cfg->ack_url) {
            e->known = K_STORED;
            queue_push(s, e, 1); /* the acknowledgement goes first */
        } else {
            e->known = K_ACKED;
        }
    }
    pump(s);
}

/* A fetched document goes to the engine; the answer decides between
 * storing, setting this one aside and failing the poll. */
static void on_fetch(void *arg, rk_http_response *r)
{
    entry *e = arg;
    rk_http_inbox *s = e->s;
    e->req = NULL;
    e->work = W_NONE;
    s->n_http--;
    int cls = classify(r);
    char what[CURL_ERROR_SIZE + 80];
    describe(r, what, sizeof what);
    if (cls == C_OK && r->len == 0) {
        set_aside(e, "the server answered an empty document");
    } else if (cls == C_OK) {
        int rc = rk_engine_submit(s->engine, s->source, e->id, r->body, r->len, on_stored, e);
        if (rc == 0) {
            e->work = W_STORING;
            s->n_storing++;
        } else if (rc == RK_E_LIMIT) {
            set_aside(e, "larger than max_document_size");
        } else if (rc != RK_E_STATE) { /* RK_E_STATE: draining; fetched again next start */
            rk_error(s->source, "submission %s: cannot hand it on: %s", e->id,
                     rk_strerror(rc));
            fail_cycle(s, O_TRANSIENT, -1);
        }
    } else if (cls == C_TRANSIENT) {
        rk_warn(s->source, "submission %s: fetch failed (%s)", e->id, what);
        fail_cycle(s, O_TRANSIENT, r->retry_after_ms);
    } else if (cls == C_AUTH || cls == C_SETUP) {
        rk_error(s->source, "submission %s: fetch refused (%s): %s", e->id, what, hint(cls));
        if (cls == C_AUTH)
            drop_token(s);
        fail_cycle(s, O_PERMANENT, r->retry_after_ms);
    } else {
        char why[CURL_ERROR_SIZE + 120];
        snprintf(why, sizeof why, "fetch failed (%s)", what);
        set_aside(e, why);
    }
    pump(s);
}

/* GETs one document (size limit: max_document_size, gzip decoded). */
static void start_fetch(entry *e)
{
    rk_http_inbox *s = e->s;
    char *url = expand(s->cfg->fetch_url, e->id);
    rk_http_request rq;
    request_base(s, &rq, url, s->max_document);
    rq.headers = NULL; /* documents are XML, not JSON */
    char err[256];
    int rc = url ? rk_http_start(s->curl, &rq, on_fetch, e, &e->req, err, sizeof err) : -ENOMEM;
    free(url);
    if (rc) {
        rk_error(s->source, "submission %s: cannot start the fetch", e->id);
        e->work = W_NONE;
        fail_cycle(s, O_TRANSIENT, -1);
        return;
    }
    e->work = W_FETCHING;
    s->n_http++;
}

/* ---- the driver -------------------------------------------------------- */

/* Starts whatever the cycle may start now; ends it when all is done. */
static void pump(rk_http_inbox *s)
{
    if (s->stopping)
        return;
    if (s->phase == PH_LIST && !s->list_req && !s->halt) {
        if (need_token(s)) {
            maybe_end(s);
            return;
        }
        rk_http_request rq;
        request_base(s, &rq, s->page_url, s->cfg->max_list_size);
        char err[256];
        int rc = rk_http_start(s->curl, &rq, on_list, s, &s->list_req, err, sizeof err);
        if (rc) {
            rk_error(s->source, "cannot start the listing: %s", err);
            fail_cycle(s, O_TRANSIENT, -1);
        }
    }
    if (s->phase == PH_WORK) {
        /* documents waiting for the store count too: memory stays bounded */
        while (!s->halt && s->qhead && s->n_http + s->n_storing < s->cfg->max_inflight) {
            if (need_token(s))
                break;
            entry *e = queue_pop(s);
            if (e->known == K_STORED)
                start_ack(e);
            else
                start_fetch(e);
        }
    }
    maybe_end(s);
}

/* ---- life cycle -------------------------------------------------------- */

static void free_all(rk_http_inbox *s)
{
    for (size_t b = 0; b < N_BUCKETS; b++) {
        entry *e = s->buckets[b];
        while (e) {
            entry *next = e->hnext;
            free(e->id);
            free(e);
            e = next;
        }
    }
    free(s->page_url);
    free(s->list_log);
    free(s->token_log);
    secret_free(s->token);
    free(s);
}

int rk_http_inbox_start(rk_engine *eng, rk_curl *curl, const rk_http_inbox_config *cfg,
                        rk_http_inbox **out, char *err, size_t errlen)
{
    rk_http_inbox *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->engine = eng;
    s->curl = curl;
    s->cfg = cfg;
    s->max_document = rk_engine_config(eng)->max_document;
    snprintf(s->source, sizeof s->source, "http:%s", cfg->name);
    s->phase = PH_WAIT;
    s->outcome = O_NONE;
    uv_timer_init(rk_engine_loop(eng), &s->timer);
    s->timer.data = s;
    s->list_log = url_for_log(cfg->list_url);
    s->token_log = cfg->token_url ? url_for_log(cfg->token_url) : NULL;
    rk_info(s->source, "polling %s every %lld ms%s", s->list_log ? s->list_log : "",
            (long long)cfg->poll_interval_ms,
            cfg->auth == RK_HTTP_AUTH_OAUTH2   ? ", OAuth2 client credentials"
            : cfg->auth == RK_HTTP_AUTH_BEARER ? ", bearer token"
                                               : "");
    arm(s, 0);
    *out = s;
    return 0;
}

int rk_http_inbox_idle(const rk_http_inbox *s)
{
    if (s->phase != PH_WAIT)
        return 0;
    switch (s->outcome) {
    case O_NOTHING:
    case O_PERMANENT: return 1;
    case O_TRANSIENT: return s->fails > s->cfg->once_retries;
    default: return 0;
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    rk_http_inbox *s = h->data;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free_all(s);
    if (done)
        done(arg);
}

void rk_http_inbox_stop(rk_http_inbox *s, void (*done)(void *arg), void *arg)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->done = done;
    s->done_arg = arg;
    if (s->list_req)
        rk_http_cancel(s->list_req);
    if (s->token_req)
        rk_http_cancel(s->token_req);
    s->list_req = s->token_req = NULL;
    /* entries waiting for the engine are never called back once the
     * engine stops its sources; their submissions are fetched again */
    for (size_t b = 0; b < N_BUCKETS; b++)
        for (entry *e = s->buckets[b]; e; e = e->hnext)
            if (e->req) {
                rk_http_cancel(e->req);
                e->req = NULL;
            }
    s->n_http = 0;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static int ops_idle(void *src) { return rk_http_inbox_idle(src); }

static void ops_stop(void *src, void (*done)(void *), void *arg)
{
    rk_http_inbox_stop(src, done, arg);
}

const rk_source_ops rk_http_inbox_ops = {"http", ops_idle, ops_stop, NULL};
