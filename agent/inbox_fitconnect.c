/*
 * inbox_fitconnect.c — see inbox_fitconnect.h.
 *
 * One poll cycle, as in the generic HTTP inbox:
 *
 *   [token]  OAuth2 client credentials, cached until shortly before expiry
 *   list     GET /v1/submissions?destinationId=D&offset=N&limit=L, page by
 *            page until totalCount, collecting submission ids
 *   work     up to max_inflight submissions at once:
 *              GET /v1/submissions/{id}         metadata, data, attachment ids
 *              GET .../attachments/{aid}        one after the other
 *              decrypt and check (thread pool)
 *              rk_engine_submit2 → committed    (or: reject, not stored)
 *   wait     poll_interval_ms plus jitter; at once when the cycle stored
 *            something, an outcome needs a submission fetched again, or a
 *            valid callback arrived; backoff when it failed
 *
 * Events (accept-submission, reject-submission) have a lane of their own:
 * they are signed on the thread pool and POSTed to /v1/cases/{case}/events
 * whenever a slot is free, in or between cycles.  An accept goes out only
 * when the engine reports "delivered" through the outcome hook; the engine
 * keeps that notice until we confirm it, so an event lost to a crash is
 * sent after the restart.  A reject for a failed check goes out at once.
 *
 * Who is at fault decides what happens to a submission that cannot be
 * taken: the sender (undecryptable with our key, a hash that does not
 * match, unusable metadata, no data) → reject event with the FIT-Connect
 * problem, nothing stored, the sender is told and the delivery service
 * drops it; our side or the transport (a JWE for another key id, a local
 * size limit, a malformed server answer) → logged, set aside with
 * backoff, nothing sent: the submission waits on the server until the
 * operator fixed it.
 *
 * Failure classes of requests are those of inbox_http.c: network errors,
 * timeouts, 408, 429 and 5xx are transient (the cycle stops starting
 * requests and backs off, at least Retry-After); 401/403 drop the token.
 * Secrets, plaintexts and bodies are never logged; log lines name the
 * submission, case and attachment ids.
 */
#include "inbox_fitconnect.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "inbox_parse.h"
#include "jose.h"
#include "util.h"

#define UUID_LEN 36
#define TAG_LEN RK_JOSE_TAG_B64_LEN
#define MAX_IDS_PER_POLL 10000
#define MAX_PAGES 1000
#define MAX_METADATA (1u << 20)
#define MAX_RETRY_AFTER_MS 3600000LL
#define N_BUCKETS 1024
#define PROBLEM "https://schema.fitko.de/fit-connect/events/problems/"
/* a reviewer's rejection has no problem type in FIT-Connect's list */
#define PROBLEM_REVIEW "urn:rekey:problem:abgelehnt"

enum { K_NEW, K_STORED, K_DONE, K_BAD };      /* what we know of a submission */
enum { W_NONE, W_QUEUED, W_FETCH, W_ATTACH, W_VERIFY, W_STORING, W_SIGN, W_EVENT };
enum { PH_WAIT, PH_LIST, PH_WORK };
enum { O_NONE, O_NOTHING, O_WORK, O_TRANSIENT, O_PERMANENT };
enum { C_OK, C_TRANSIENT, C_AUTH, C_SETUP, C_GONE, C_BAD };
enum { EV_NONE, EV_ACCEPT, EV_REJECT };

typedef struct att {
    char id[UUID_LEN + 1];
    char *jwe;                 /* fetched, until verified */
    size_t jwe_len;
    char tag[TAG_LEN + 1];
} att;

typedef struct entry {
    rk_fitconnect *s;
    char id[UUID_LEN + 1];     /* submission id */
    char case_id[UUID_LEN + 1];
    int known;
    int work;
    int fails;                 /* consecutive failures (fetch or event) */
    int64_t retry_at;          /* K_BAD, or a failed event: not before */
    unsigned gen;              /* the last cycle that listed it */
    int missed;                /* complete listings in a row without it */
    int64_t job_id;

    char *meta_jwe, *data_jwe; /* fetched, until verified */
    att *att;
    size_t n_att, att_next;

    int have_tags;             /* verified: the tags below are those of the JWEs */
    char meta_tag[TAG_LEN + 1];
    char data_tag[TAG_LEN + 1];

    int event;                 /* EV_*: to send */
    json_t *problems;          /* EV_REJECT */
    int64_t notice_id;         /* the engine's notice this event answers, 0: none */
    char *set;                 /* the signed event while it is posted */
    rk_http *req;
    uv_work_t pool;            /* verify or sign */

    struct entry *hnext;       /* hash chain */
    struct entry *qnext;       /* work queue */
    struct entry *enext;       /* event queue */
    int in_evq;
} entry;

struct rk_fitconnect {
    rk_engine *engine;
    rk_curl *curl;
    const rk_fitconnect_config *cfg;
    rk_jose_key *dec_key;      /* loaded once */
    rk_jose_key *sig_key;
    const char *sig_kid;       /* borrowed: cfg or the key */
    size_t max_document;
    char source[64];           /* "fitconnect:NAME", also the log component */
    uv_timer_t timer;

    entry *buckets[N_BUCKETS];
    entry *qhead, *qtail;      /* submissions to fetch in this cycle */
    entry *ehead, *etail;      /* events to send */

    int phase;
    unsigned gen;
    long offset;               /* of the next list page */
    int pages;
    int list_complete;
    int shifted;               /* an event removed a submission while listing */
    int more;
    size_t queued;
    rk_http *list_req;
    int n_http;                /* fetches and events in flight */
    int n_pool;                /* verify and sign jobs on the thread pool */
    int n_storing;
    int halt;
    int error_class;
    int64_t retry_after_ms;
    int found;
    int again;                 /* poll again at once after this cycle */
    int outcome;
    int fails;

    char *token;               /* OAuth2 access token (secret) */
    int64_t token_refresh_ms;
    rk_http *token_req;

    int stopping;
    int timer_closed;
    void (*done)(void *);
    void *done_arg;
    struct rk_fitconnect *next_running; /* rk_fitconnect_find */
};

static rk_fitconnect *running; /* loop thread only */

static void pump(rk_fitconnect *s);
static void maybe_end(rk_fitconnect *s);
static void maybe_freed(rk_fitconnect *s);
static void arm(rk_fitconnect *s, int64_t delay);

/* ---- small helpers ----------------------------------------------------- */

static void secret_free(char *p)
{
    if (p) {
        explicit_bzero(p, strlen(p));
        free(p);
    }
}

#define is_uuid rk__fc_is_uuid

static unsigned hash_id(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)(*id | 0x20)) * 16777619u; /* ids compare case-blind */
    return h % N_BUCKETS;
}

static entry *entry_get(rk_fitconnect *s, const char *id, int create)
{
    unsigned b = hash_id(id);
    for (entry *e = s->buckets[b]; e; e = e->hnext)
        if (strcasecmp(e->id, id) == 0)
            return e;
    if (!create)
        return NULL;
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->s = s;
    memcpy(e->id, id, UUID_LEN + 1);
    e->hnext = s->buckets[b];
    s->buckets[b] = e;
    return e;
}

/* Drops what was fetched for a verification. */
static void parts_free(entry *e)
{
    free(e->meta_jwe);
    free(e->data_jwe);
    e->meta_jwe = e->data_jwe = NULL;
    for (size_t i = 0; i < e->n_att; i++) {
        free(e->att[i].jwe);
        e->att[i].jwe = NULL;
    }
}

static void entry_free(entry *e)
{
    parts_free(e);
    free(e->att);
    json_decref(e->problems);
    free(e->set);
    free(e);
}

static void queue_push(rk_fitconnect *s, entry *e)
{
    e->work = W_QUEUED;
    e->qnext = NULL;
    if (s->qtail)
        s->qtail->qnext = e;
    else
        s->qhead = e;
    s->qtail = e;
}

static entry *queue_pop(rk_fitconnect *s)
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

/* Queues the entry's event for the event lane (once). */
static void event_push(rk_fitconnect *s, entry *e)
{
    if (e->in_evq || e->event == EV_NONE)
        return;
    e->in_evq = 1;
    e->enext = NULL;
    if (s->etail)
        s->etail->enext = e;
    else
        s->ehead = e;
    s->etail = e;
}

static entry *event_pop(rk_fitconnect *s)
{
    entry *e = s->ehead;
    if (e) {
        s->ehead = e->enext;
        if (!s->ehead)
            s->etail = NULL;
        e->enext = NULL;
        e->in_evq = 0;
    }
    return e;
}

/* The entry has what its event needs: the case id for a reject, the
 * authentication tags for an accept. */
static int sendable(const entry *e)
{
    return e->event == EV_REJECT ? e->case_id[0] != '\0'
           : e->event == EV_ACCEPT ? e->have_tags
                                   : 0;
}

/* Capped exponential backoff with jitter (between half and all of it). */
static int64_t backoff_ms(const rk_fitconnect_config *c, int fails)
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
    case CURLE_PEER_FAILED_VERIFICATION:
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

/* api_url + the formatted path, as a new string. */
static char *api(const rk_fitconnect *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *api(const rk_fitconnect *s, const char *fmt, ...)
{
    rk_buf b;
    rk_buf_init(&b, 8192);
    int rc = rk_buf_append(&b, s->cfg->api_url, strlen(s->cfg->api_url));
    if (!rc) {
        char path[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(path, sizeof path, fmt, ap);
        va_end(ap);
        rc = n < 0 || (size_t)n >= sizeof path ? RK_E_LIMIT : rk_buf_append(&b, path, (size_t)n);
    }
    if (rc) {
        rk_buf_free(&b);
        return NULL;
    }
    return rk_buf_take(&b);
}

/* The request fields every call shares: bearer token, TLS, timeouts. */
static void request_base(rk_fitconnect *s, rk_http_request *rq, const char *url, size_t max)
{
    const rk_fitconnect_config *c = s->cfg;
    static const char *const accept_json[] = {"Accept: application/json", NULL};
    memset(rq, 0, sizeof *rq);
    rq->url = url;
    rq->max_response = max;
    rq->timeout_ms = (long)c->timeout_ms;
    rq->connect_timeout_ms = (long)c->connect_timeout_ms;
    rq->accept_encoding = 1;
    rq->headers = accept_json;
    rq->ca_file = c->ca_file;
    rq->bearer = s->token;
}

/* Largest answer for a submission: data and metadata as base64url JWEs. */
static size_t max_submission_answer(const rk_fitconnect *s)
{
    return s->max_document / 3 * 4 + 4 * MAX_METADATA;
}

/* ---- the cycle --------------------------------------------------------- */

static void fail_cycle(rk_fitconnect *s, int cls, int64_t retry_after_ms)
{
    s->halt = 1;
    if (cls == O_PERMANENT || s->error_class != O_PERMANENT)
        s->error_class = cls;
    if (retry_after_ms > s->retry_after_ms)
        s->retry_after_ms = retry_after_ms;
}

static void on_timer(uv_timer_t *t);

static void arm(rk_fitconnect *s, int64_t delay)
{
    if (!s->stopping)
        uv_timer_start(&s->timer, on_timer, (uint64_t)(delay > 0 ? delay : 0), 0);
}

/* One submission cannot be taken for a reason on our side or the
 * transport's: set aside with its own backoff; nothing is sent. */
static void set_aside(entry *e, const char *why)
{
    rk_fitconnect *s = e->s;
    e->known = K_BAD;
    e->work = W_NONE;
    e->fails++;
    int64_t wait = backoff_ms(s->cfg, e->fails);
    e->retry_at = rk_now_ms() + wait;
    parts_free(e);
    rk_error(s->source, "submission %s: %s; tried again in %lld s", e->id, why,
             (long long)(wait / 1000));
}

/* Ends the cycle: forgets submissions a complete listing no longer has
 * (unless an outcome waits for one), and decides when the next runs. */
static void end_cycle(rk_fitconnect *s)
{
    const rk_fitconnect_config *c = s->cfg;
    entry *e;
    while ((e = queue_pop(s)) != NULL)
        e->work = W_NONE;
    /* offset paging skips ids when submissions vanish meanwhile (our own
     * events remove them): such a listing is not trusted for forgetting */
    if (s->list_complete && !s->halt && !s->shifted) {
        for (size_t b = 0; b < N_BUCKETS; b++) {
            entry **pp = &s->buckets[b];
            while ((e = *pp) != NULL) {
                /* one stored and waiting for its outcome is forgotten only
                 * when two listings in a row missed it */
                if (e->gen != s->gen && e->work == W_NONE && !e->in_evq && !e->notice_id &&
                    (e->known != K_STORED || ++e->missed >= 2)) {
                    *pp = e->hnext;
                    entry_free(e);
                } else {
                    pp = &e->hnext;
                }
            }
        }
    }
    s->phase = PH_WAIT;
    int64_t delay;
    if (s->halt) {
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
        s->fails = 0;
        if (s->found || s->more || s->again) {
            s->outcome = O_WORK;
            delay = 0;
        } else {
            s->outcome = O_NOTHING;
            delay = c->poll_interval_ms +
                    (c->poll_jitter_ms ? (int64_t)(random() % (c->poll_jitter_ms + 1)) : 0);
        }
        rk_debug(s->source, "poll done: %d stored; next poll in %lld ms", s->found,
                 (long long)delay);
        rk_engine_source_health(s->engine, s->source, 1, NULL, rk_now_ms() + delay);
    }
    s->again = 0;
    arm(s, delay);
}

static void maybe_end(rk_fitconnect *s)
{
    if (s->stopping || s->phase == PH_WAIT || s->token_req)
        return;
    if (s->phase == PH_LIST && !s->list_req && s->halt) {
        end_cycle(s);
        return;
    }
    if (s->phase != PH_WORK || s->n_storing || (!s->halt && s->qhead))
        return;
    /* the cycle's own work is over when no submission is being fetched
     * or verified; the event lane runs on */
    for (size_t b = 0; b < N_BUCKETS; b++)
        for (entry *e = s->buckets[b]; e; e = e->hnext)
            if (e->work == W_FETCH || e->work == W_ATTACH || e->work == W_VERIFY ||
                e->work == W_STORING)
                return;
    end_cycle(s);
}

static void start_cycle(rk_fitconnect *s)
{
    s->gen++;
    s->phase = PH_LIST;
    s->offset = 0;
    s->pages = 0;
    s->list_complete = 0;
    s->shifted = 0;
    s->more = 0;
    s->queued = 0;
    s->halt = 0;
    s->error_class = 0;
    s->retry_after_ms = -1;
    s->found = 0;
    /* events that failed earlier are due again */
    int64_t now = rk_now_ms();
    for (size_t b = 0; b < N_BUCKETS; b++)
        for (entry *e = s->buckets[b]; e; e = e->hnext)
            if (sendable(e) && e->work == W_NONE && !e->in_evq && now >= e->retry_at)
                event_push(s, e);
    pump(s);
}

static void on_timer(uv_timer_t *t)
{
    start_cycle(t->data);
}

/* ---- token ------------------------------------------------------------- */

static void drop_token(rk_fitconnect *s)
{
    secret_free(s->token);
    s->token = NULL;
}

/* The token answer: keeps the access token and when to renew it, or logs
 * why there is none (only the OAuth2 error code, never the body). */
static void on_token(void *arg, rk_http_response *r)
{
    rk_fitconnect *s = arg;
    s->token_req = NULL;
    int cls = classify(r);
    if (cls != C_OK) {
        char what[CURL_ERROR_SIZE + 80];
        describe(r, what, sizeof what);
        if (cls == C_TRANSIENT) {
            rk_warn(s->source, "token request failed (%s)", what);
            fail_cycle(s, O_TRANSIENT, r->retry_after_ms);
        } else {
            char code[64] = "";
            rk__oauth_error_code(r->body, r->body ? strlen(r->body) : 0, code, sizeof code);
            rk_error(s->source, "token request refused (%s%s%s): check client_id, "
                                "client_secret and token_auth",
                     what, code[0] ? ", error " : "", code);
            fail_cycle(s, O_PERMANENT, r->retry_after_ms);
        }
        maybe_end(s);
        pump(s);
        return;
    }
    char *token = NULL;
    int64_t life = 0;
    if (rk__oauth_token_parse(r->body, r->len, 0, &token, &life) != 0) {
        rk_error(s->source, "the token endpoint answered without a usable access_token");
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

/* 1 when a request must wait for a token (one is requested if none is on
 * its way and no request with the old token is still running). */
static int need_token(rk_fitconnect *s)
{
    const rk_fitconnect_config *c = s->cfg;
    if (s->token && rk_now_ms() < s->token_refresh_ms)
        return 0;
    if (s->token_req)
        return 1;
    if (s->n_http || s->list_req)
        return 1;
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
    }
    return 1;
}

/* A refusal of the token: the next request asks for a new one. */
static void refused(rk_fitconnect *s, const char *what, const char *during)
{
    rk_error(s->source, "%s refused (%s): check the client's rights on the destination",
             during, what);
    drop_token(s);
}

/* ---- listing ----------------------------------------------------------- */

/* Outcomes of submissions this run has not fetched (after a restart) and
 * the listing did not show: each is fetched directly, since a paged
 * listing can miss an id while others vanish; a 404 then settles it. */
static void queue_unlisted(rk_fitconnect *s)
{
    for (size_t b = 0; b < N_BUCKETS; b++)
        for (entry *e = s->buckets[b]; e; e = e->hnext)
            if (e->notice_id && e->gen != s->gen && e->work == W_NONE && !e->in_evq &&
                !sendable(e) && e->known != K_DONE) {
                e->gen = s->gen;
                queue_push(s, e);
                s->queued++;
            }
}

/* Takes one item of a list page into the cycle (rk__fc_item_cb): 0 to go
 * on, 1 when the poll has all it takes, -ENOMEM. */
static int take_item(void *arg, size_t i, int status, const char *id, const char *case_id)
{
    rk_fitconnect *s = arg;
    if (status == RK__FC_ITEM_NO_ID) {
        rk_warn(s->source, "list item %zu has no usable submissionId; skipped", i);
        return 0;
    }
    if (status == RK__FC_ITEM_OTHER_DEST) {
        rk_warn(s->source, "submission %s is listed for another destination; skipped", id);
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
    e->missed = 0;
    if (!e->case_id[0] && case_id[0])
        memcpy(e->case_id, case_id, UUID_LEN + 1);
    if (e->known == K_DONE || e->work != W_NONE || e->in_evq)
        return 0; /* done, or being handled */
    if (sendable(e)) {
        if (rk_now_ms() >= e->retry_at)
            event_push(s, e); /* e.g. a reviewer's reject after a restart */
        return 0;
    }
    if (e->known == K_STORED || (e->event == EV_REJECT && !e->notice_id))
        return 0; /* waits for its outcome, or for its reject to go out */
    if (e->known == K_BAD && rk_now_ms() < e->retry_at)
        return 0;
    if (s->queued >= MAX_IDS_PER_POLL) {
        s->more = 1;
        return 1;
    }
    queue_push(s, e);
    s->queued++;
    return 0;
}

static char *list_url(rk_fitconnect *s)
{
    return api(s, "/v1/submissions?destinationId=%s&offset=%ld&limit=%d",
               s->cfg->destination_id, s->offset, s->cfg->page_size);
}

/* One list page: its ids join the cycle; then the next page, or the work. */
static void on_list(void *arg, rk_http_response *r)
{
    rk_fitconnect *s = arg;
    s->list_req = NULL;
    int cls = classify(r);
    char what[CURL_ERROR_SIZE + 80];
    if (cls != C_OK) {
        describe(r, what, sizeof what);
        if (cls == C_TRANSIENT) {
            rk_warn(s->source, "listing failed (%s)", what);
            fail_cycle(s, O_TRANSIENT, r->retry_after_ms);
        } else {
            if (cls == C_AUTH)
                refused(s, what, "listing");
            else
                rk_error(s->source, "listing failed (%s)", what);
            fail_cycle(s, O_PERMANENT, r->retry_after_ms);
        }
        maybe_end(s);
        return;
    }
    char why[256] = "";
    long total = -1;
    long n = rk__fc_list_parse(r->body, r->len, s->cfg->destination_id, take_item, s, &total,
                               why, sizeof why);
    if (n < 0) {
        rk_error(s->source, "list answer is unusable: %s", why);
        fail_cycle(s, O_PERMANENT, -1);
        maybe_end(s);
        return;
    }
    s->pages++;
    s->offset += n;
    int last = n == 0 || (total >= 0 ? s->offset >= total : n < s->cfg->page_size);
    if (!last && s->pages >= MAX_PAGES) {
        rk_warn(s->source, "more than %d list pages; the rest waits for the next poll",
                MAX_PAGES);
        s->more = 1;
    }
    if (last || s->more) {
        s->list_complete = !s->more;
        s->phase = PH_WORK;
        queue_unlisted(s);
        if (s->queued)
            rk_info(s->source, "%zu submissions to fetch", s->queued);
    }
    pump(s);
}

/* ---- fetch ------------------------------------------------------------- */

static void start_attachment(entry *e);
static void start_verify(entry *e);

/* The answer to GET /v1/submissions/{id}: keeps the parts, then fetches
 * the attachments one by one. */
static void on_fetch(void *arg, rk_http_response *r)
{
    entry *e = arg;
    rk_fitconnect *s = e->s;
    e->req = NULL;
    e->work = W_NONE;
    s->n_http--;
    int cls = classify(r);
    char what[CURL_ERROR_SIZE + 80], why[CURL_ERROR_SIZE + 160] = "";
    describe(r, what, sizeof what);
    if (cls == C_TRANSIENT) {
        rk_warn(s->source, "submission %s: fetch failed (%s)", e->id, what);
        fail_cycle(s, O_TRANSIENT, r->retry_after_ms);
    } else if (cls == C_AUTH || cls == C_SETUP) {
        refused(s, what, "fetch");
        fail_cycle(s, O_PERMANENT, r->retry_after_ms);
    } else if (cls == C_GONE) {
        rk_info(s->source, "submission %s: gone from the delivery service (%s): already "
                           "accepted or rejected", e->id, what);
        e->known = K_DONE;
        if (e->notice_id) {
            rk_engine_notice_done(s->engine, e->notice_id, 1, NULL);
            e->notice_id = 0;
            e->event = EV_NONE;
        }
    } else if (cls != C_OK) {
        snprintf(why, sizeof why, "fetch failed (%s)", what);
        set_aside(e, why);
    } else {
        rk__fc_submission sub;
        if (rk__fc_submission_parse(r->body, r->len, e->id, s->cfg->destination_id,
                                    s->cfg->max_attachments, &sub, why, sizeof why) == 0) {
            att *a = sub.n_att ? calloc(sub.n_att, sizeof *a) : NULL;
            if (sub.n_att && !a) {
                snprintf(why, sizeof why, "out of memory");
            } else {
                for (size_t i = 0; i < sub.n_att; i++)
                    memcpy(a[i].id, sub.att_ids[i], UUID_LEN + 1);
                parts_free(e);
                free(e->att);
                e->have_tags = 0; /* until these parts are verified */
                e->att = a;
                e->n_att = sub.n_att;
                e->att_next = 0;
                memcpy(e->case_id, sub.case_id, UUID_LEN + 1);
                e->meta_jwe = sub.meta_jwe; /* taken over */
                e->data_jwe = sub.data_jwe;
                sub.meta_jwe = sub.data_jwe = NULL;
            }
            rk__fc_submission_free(&sub);
        }
        if (why[0])
            set_aside(e, why);
        else if (e->n_att)
            start_attachment(e);
        else
            start_verify(e);
    }
    pump(s);
}

/* GETs the submission (size limit: the largest data plus metadata). */
static void start_fetch(entry *e)
{
    rk_fitconnect *s = e->s;
    char *url = api(s, "/v1/submissions/%s", e->id);
    rk_http_request rq;
    request_base(s, &rq, url, max_submission_answer(s));
    char err[256];
    int rc = url ? rk_http_start(s->curl, &rq, on_fetch, e, &e->req, err, sizeof err) : -ENOMEM;
    free(url);
    if (rc) {
        rk_error(s->source, "submission %s: cannot start the fetch", e->id);
        e->work = W_NONE;
        fail_cycle(s, O_TRANSIENT, -1);
        return;
    }
    e->work = W_FETCH;
    s->n_http++;
}

static void on_attachment(void *arg, rk_http_response *r)
{
    entry *e = arg;
    rk_fitconnect *s = e->s;
    e->req = NULL;
    e->work = W_NONE;
    s->n_http--;
    att *a = &e->att[e->att_next];
    int cls = classify(r);
    char what[CURL_ERROR_SIZE + 80], why[CURL_ERROR_SIZE + 160];
    describe(r, what, sizeof what);
    if (cls == C_OK && r->len > 0) {
        a->jwe = r->body; /* taken */
        a->jwe_len = r->len;
        r->body = NULL;
        while (a->jwe_len && (a->jwe[a->jwe_len - 1] == '\n' || a->jwe[a->jwe_len - 1] == '\r'))
            a->jwe[--a->jwe_len] = '\0';
        if (++e->att_next < e->n_att)
            start_attachment(e);
        else
            start_verify(e);
    } else if (cls == C_TRANSIENT) {
        rk_warn(s->source, "submission %s: attachment %s: fetch failed (%s)", e->id, a->id,
                what);
        parts_free(e);
        fail_cycle(s, O_TRANSIENT, r->retry_after_ms);
    } else if (cls == C_AUTH || cls == C_SETUP) {
        parts_free(e);
        refused(s, what, "attachment fetch");
        fail_cycle(s, O_PERMANENT, r->retry_after_ms);
    } else {
        snprintf(why, sizeof why, "attachment %s: fetch failed (%s)", a->id,
                 cls == C_OK ? "empty answer" : what);
        set_aside(e, why);
    }
    pump(s);
}

/* GETs the next attachment (compact JWE, application/jose). */
static void start_attachment(entry *e)
{
    rk_fitconnect *s = e->s;
    static const char *const accept_jose[] = {"Accept: application/jose", NULL};
    char *url = api(s, "/v1/submissions/%s/attachments/%s", e->id, e->att[e->att_next].id);
    rk_http_request rq;
    request_base(s, &rq, url, s->cfg->max_submission_size / 3 * 4 + 65536);
    rq.headers = accept_jose;
    char err[256];
    int rc = url ? rk_http_start(s->curl, &rq, on_attachment, e, &e->req, err, sizeof err)
                 : -ENOMEM;
    free(url);
    if (rc) {
        rk_error(s->source, "submission %s: cannot start an attachment fetch", e->id);
        parts_free(e);
        e->work = W_NONE;
        fail_cycle(s, O_TRANSIENT, -1);
        return;
    }
    e->work = W_ATTACH;
    s->n_http++;
}

/* ---- decrypt and check (thread pool) ------------------------------------ */

typedef struct att_out {
    char *name;            /* the file name the metadata gives, else the id */
    char *media_type;
    unsigned char *data;
    size_t len;
} att_out;

typedef struct verify {
    entry *e;
    /* inputs, borrowed from the entry and the source (unchanged meanwhile) */
    const rk_jose_key *key;
    size_t max_document, max_total;
    /* results */
    int local;             /* not the sender's fault: set aside */
    char why[300];
    json_t *problems;      /* the sender's faults, or NULL */
    char meta_tag[TAG_LEN + 1], data_tag[TAG_LEN + 1];
    unsigned char *data;
    size_t data_len;
    char *media_type;
    att_out *att;
    size_t n_att;
} verify;

static void problem(verify *v, const char *type, const char *title, const char *instance,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void problem(verify *v, const char *type, const char *title, const char *instance,
                    const char *fmt, ...)
{
    char detail[300], full[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, PROBLEM "%s", type);
    if (!v->problems)
        v->problems = json_array();
    json_array_append_new(v->problems, json_pack("{s:s, s:s, s:s, s:s}", "type", full,
                                                 "title", title, "detail", detail,
                                                 "instance", instance));
}

#define sha512_of rk__fc_sha512_of
#define str_member rk__fc_str_member
#define meta_attachment rk__fc_meta_attachment

/* Runs on the pool: decrypts metadata, data and attachments, checks the
 * metadata's structure and every SHA-512 it declares, and collects every
 * problem to report (FIT-Connect wants them all in one reject). */
static void verify_work(uv_work_t *req)
{
    verify *v = req->data;
    entry *e = v->e;
    char err[300], kid[256] = "", tag[TAG_LEN + 1];
    /* a metadata JWE for another key id: our key is not the one the
     * sender used; that may be our mistake, so nothing is rejected */
    const char *ours = rk_jose_key_kid(v->key);
    if (rk_jwe_peek(e->meta_jwe, strlen(e->meta_jwe), kid, sizeof kid, tag, sizeof tag, err,
                    sizeof err) == 0 &&
        kid[0] && ours && strcmp(kid, ours) != 0) {
        v->local = 1;
        snprintf(v->why, sizeof v->why,
                 "encrypted for key id '%.60s', but decryption_key has key id '%.60s'; "
                 "check decryption_key (nothing is rejected)", kid, ours);
        return;
    }
    rk_jwe_result mres = {0};
    if (rk_jwe_decrypt(v->key, e->meta_jwe, strlen(e->meta_jwe), MAX_METADATA, &mres, err,
                       sizeof err) != 0) {
        problem(v, "encryption-issue", "Entschlüsselungs-Fehler", "metadata",
                "Der Metadatensatz konnte nicht entschlüsselt werden.");
        return;
    }
    memcpy(v->meta_tag, mres.tag, sizeof v->meta_tag);
    json_t *meta = json_loadb((const char *)mres.plaintext, mres.len, JSON_REJECT_DUPLICATES,
                              NULL);
    rk_jwe_result_free(&mres);
    if (!json_is_object(meta)) {
        json_decref(meta);
        problem(v, "syntax-violation", "Syntax-Fehler", "metadata",
                "Der Metadatensatz ist kein valides JSON-Objekt.");
        return;
    }
    json_t *d = json_object_get(json_object_get(meta, "contentStructure"), "data");
    json_t *alist = json_object_get(json_object_get(meta, "contentStructure"), "attachments");
    const char *bad = rk__fc_meta_check(meta);
    if (bad) {
        problem(v, "schema-violation", "Schema-Fehler", "metadata",
                "Der Metadatensatz ist nicht schema-valide: %s.", bad);
        json_decref(meta);
        return;
    }
    /* the attachments sent must be the ones the metadata describes */
    int mismatch = json_array_size(alist) != e->n_att;
    for (size_t k = 0; !mismatch && k < e->n_att; k++)
        mismatch = !meta_attachment(alist, e->att[k].id);
    if (mismatch) {
        problem(v, "attachments-mismatch", "Anlagen stimmen nicht überein", "metadata",
                "Die Anlagen der Einreichung weichen von der Liste im Metadatensatz ab.");
        json_decref(meta);
        return;
    }
    size_t total = 0;
    if (!d || !e->data_jwe) {
        problem(v, "missing-data", "Fachdaten fehlen", "data",
                d ? "Der Metadatensatz beschreibt Fachdaten, die Einreichung enthält keine."
                  : "Die Einreichung enthält keine Fachdaten; rekey verarbeitet nur "
                    "Einreichungen mit Fachdaten.");
    } else {
        rk_jwe_result dres = {0};
        int rc = rk_jwe_decrypt(v->key, e->data_jwe, strlen(e->data_jwe), v->max_document,
                                &dres, err, sizeof err);
        if (rc == RK_E_LIMIT) {
            v->local = 1;
            snprintf(v->why, sizeof v->why, "the data is larger than max_document_size");
        } else if (rc) {
            problem(v, "encryption-issue", "Entschlüsselungs-Fehler", "data",
                    "Der Fachdatensatz konnte nicht entschlüsselt werden.");
        } else if (!rk_sha512_matches(dres.plaintext, dres.len,
                                      sha512_of(json_object_get(d, "hash")))) {
            problem(v, "hash-mismatch", "Prüfsumme stimmt nicht", "data",
                    "Der Hashwert des Fachdatensatzes stimmt nicht.");
        } else {
            memcpy(v->data_tag, dres.tag, sizeof v->data_tag);
            v->data = dres.plaintext;
            v->data_len = dres.len;
            total = dres.len;
            dres.plaintext = NULL;
            v->media_type =
                strdup(str_member(json_object_get(d, "submissionSchema"), "mimeType"));
        }
        rk_jwe_result_free(&dres);
    }
    v->att = e->n_att ? calloc(e->n_att, sizeof *v->att) : NULL;
    for (size_t k = 0; v->att && !v->local && k < e->n_att; k++) {
        att *a = &e->att[k];
        json_t *m = meta_attachment(alist, a->id);
        char inst[UUID_LEN + 16];
        snprintf(inst, sizeof inst, "attachment:%s", a->id);
        rk_jwe_result ares = {0};
        size_t room = total < v->max_total ? v->max_total - total : 0;
        int rc = rk_jwe_decrypt(v->key, a->jwe, a->jwe_len, room, &ares, err, sizeof err);
        if (rc == RK_E_LIMIT) {
            v->local = 1;
            snprintf(v->why, sizeof v->why,
                     "data and attachments are larger than max_submission_size");
        } else if (rc) {
            problem(v, "encryption-issue", "Entschlüsselungs-Fehler", inst,
                    "Die Anlage %s konnte nicht entschlüsselt werden.", a->id);
        } else if (!rk_sha512_matches(ares.plaintext, ares.len,
                                      sha512_of(json_object_get(m, "hash")))) {
            problem(v, "hash-mismatch", "Prüfsumme stimmt nicht", inst,
                    "Der Hashwert der Anlage %s stimmt nicht.", a->id);
        } else {
            const char *fn = str_member(m, "filename");
            att_out *o = &v->att[v->n_att++];
            o->name = strdup(fn ? fn : a->id);
            o->media_type = strdup(str_member(m, "mimeType"));
            o->data = ares.plaintext;
            o->len = ares.len;
            ares.plaintext = NULL;
            memcpy(a->tag, ares.tag, sizeof a->tag);
            total += o->len;
        }
        rk_jwe_result_free(&ares);
    }
    if (e->n_att && !v->att) {
        v->local = 1;
        snprintf(v->why, sizeof v->why, "out of memory");
    }
    json_decref(meta);
}

static void verify_free(verify *v)
{
    json_decref(v->problems);
    free(v->data);
    free(v->media_type);
    for (size_t i = 0; i < v->n_att; i++) {
        free(v->att[i].name);
        free(v->att[i].media_type);
        free(v->att[i].data);
    }
    free(v->att);
    free(v);
}

static void on_stored(void *arg, int rc, int64_t job_id, const char *msg);

/* Back on the loop: set aside, reject, or hand the submission to the
 * engine (data, media type and attachments in one commit). */
static void after_verify(uv_work_t *req, int status)
{
    verify *v = req->data;
    entry *e = v->e;
    rk_fitconnect *s = e->s;
    s->n_pool--;
    e->work = W_NONE;
    parts_free(e);
    if (s->stopping || status) {
        verify_free(v);
        maybe_freed(s);
        return;
    }
    if (v->local) {
        set_aside(e, v->why);
    } else if (v->problems) {
        /* the sender's fault: told with a reject, nothing stored */
        size_t i;
        json_t *p;
        json_array_foreach(v->problems, i, p)
            rk_error(s->source, "submission %s (case %s): %s (%s); it is rejected", e->id,
                     e->case_id, json_string_value(json_object_get(p, "type")) +
                                     strlen(PROBLEM),
                     json_string_value(json_object_get(p, "instance")));
        json_decref(e->problems);
        e->problems = v->problems;
        v->problems = NULL;
        e->event = EV_REJECT;
        e->fails = 0;
        event_push(s, e);
    } else {
        memcpy(e->meta_tag, v->meta_tag, sizeof e->meta_tag);
        memcpy(e->data_tag, v->data_tag, sizeof e->data_tag);
        e->have_tags = 1;
        rk_attachment_in *ins = v->n_att ? calloc(v->n_att, sizeof *ins) : NULL;
        for (size_t i = 0; ins && i < v->n_att; i++)
            ins[i] = (rk_attachment_in){v->att[i].name, v->att[i].media_type, v->att[i].data,
                                        v->att[i].len};
        rk_submit_args a = {s->source, e->id, v->data, v->data_len, v->media_type, ins,
                            v->n_att};
        int rc = v->n_att && !ins ? -ENOMEM : rk_engine_submit2(s->engine, &a, on_stored, e);
        free(ins);
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
    }
    verify_free(v);
    maybe_end(s);
    pump(s);
}

static void start_verify(entry *e)
{
    rk_fitconnect *s = e->s;
    verify *v = calloc(1, sizeof *v);
    if (!v) {
        set_aside(e, "out of memory");
        return;
    }
    v->e = e;
    v->key = s->dec_key;
    v->max_document = s->max_document;
    v->max_total = s->cfg->max_submission_size;
    e->pool.data = v;
    if (uv_queue_work(rk_engine_loop(s->engine), &e->pool, verify_work, after_verify)) {
        free(v);
        set_aside(e, "cannot queue the decryption");
        return;
    }
    e->work = W_VERIFY;
    s->n_pool++;
}

/* The engine committed the submission (rc 0; also when it was stored
 * before) or could not store it. */
static void on_stored(void *arg, int rc, int64_t job_id, const char *msg)
{
    entry *e = arg;
    rk_fitconnect *s = e->s;
    s->n_storing--;
    e->work = W_NONE;
    if (s->stopping)
        return;
    if (rc) {
        rk_error(s->source, "submission %s could not be stored: %s", e->id,
                 msg ? msg : rk_strerror(rc));
        fail_cycle(s, O_TRANSIENT, -1);
    } else {
        rk_info(s->source, "submission %s (case %s) stored as job %lld", e->id, e->case_id,
                (long long)job_id);
        s->found++;
        e->fails = 0;
        e->known = K_STORED;
        e->job_id = job_id;
        if (e->event != EV_NONE)
            event_push(s, e); /* its outcome came first (after a restart) */
    }
    maybe_end(s);
    pump(s);
}

/* ---- events ------------------------------------------------------------ */

typedef struct sign_job {
    entry *e;
    const rk_jose_key *key;
    const char *kid;
    json_t *payload;
    char *set;
    char err[256];
} sign_job;

static void sign_work(uv_work_t *req)
{
    sign_job *j = req->data;
    rk_set_sign(j->key, j->kid, j->payload, &j->set, j->err, sizeof j->err);
}

static void on_event(void *arg, rk_http_response *r);

/* Back on the loop with the signed SET: POST it to the case's events. */
static void after_sign(uv_work_t *req, int status)
{
    sign_job *j = req->data;
    entry *e = j->e;
    rk_fitconnect *s = e->s;
    s->n_pool--;
    e->work = W_NONE;
    json_decref(j->payload);
    if (s->stopping || status || !j->set) {
        if (!s->stopping && !status) {
            rk_error(s->source, "submission %s: cannot sign the event: %s", e->id, j->err);
            e->retry_at = rk_now_ms() + backoff_ms(s->cfg, ++e->fails);
        }
        free(j->set);
        free(j);
        maybe_freed(s);
        return;
    }
    free(e->set);
    e->set = j->set;
    free(j);
    static const char *const hdr[] = {"Accept: application/json", NULL};
    char *url = api(s, "/v1/cases/%s/events", e->case_id);
    rk_http_request rq;
    request_base(s, &rq, url, s->cfg->max_list_size);
    rq.headers = hdr;
    rq.method = "POST";
    rq.body = e->set;
    rq.body_len = strlen(e->set);
    rq.content_type = "application/jose";
    char err[256];
    int rc = url ? rk_http_start(s->curl, &rq, on_event, e, &e->req, err, sizeof err) : -ENOMEM;
    free(url);
    if (rc) {
        rk_error(s->source, "submission %s: cannot send the event", e->id);
        e->retry_at = rk_now_ms() + backoff_ms(s->cfg, ++e->fails);
    } else {
        e->work = W_EVENT;
        s->n_http++;
    }
    pump(s);
}

/* Builds the event of an entry (accept with the authentication tags, or
 * reject with the problems) and has it signed on the pool. */
static void start_event(entry *e)
{
    rk_fitconnect *s = e->s;
    rk_set_ids ids = {s->cfg->destination_id, e->id, e->case_id};
    int64_t iat = (int64_t)time(NULL);
    json_t *payload = NULL;
    char err[256];
    int rc;
    if (e->event == EV_ACCEPT) {
        rk_set_attachment_tag *tags = e->n_att ? calloc(e->n_att, sizeof *tags) : NULL;
        for (size_t i = 0; tags && i < e->n_att; i++)
            tags[i] = (rk_set_attachment_tag){e->att[i].id, e->att[i].tag};
        rc = e->n_att && !tags
                 ? -ENOMEM
                 : rk_set_build_accept(&ids, iat, e->meta_tag, e->data_tag[0] ? e->data_tag : NULL,
                                       tags, e->n_att, &payload, err, sizeof err);
        free(tags);
    } else {
        rc = rk_set_build_reject(&ids, iat, e->problems, &payload, err, sizeof err);
    }
    sign_job *j = rc ? NULL : calloc(1, sizeof *j);
    if (j) {
        j->e = e;
        j->key = s->sig_key;
        j->kid = s->sig_kid;
        j->payload = payload;
        e->pool.data = j;
        if (uv_queue_work(rk_engine_loop(s->engine), &e->pool, sign_work, after_sign) == 0) {
            e->work = W_SIGN;
            s->n_pool++;
            return;
        }
        free(j);
    }
    json_decref(payload);
    rk_error(s->source, "submission %s: cannot build the event: %s", e->id,
             rc ? err : "out of memory");
    e->retry_at = rk_now_ms() + backoff_ms(s->cfg, ++e->fails);
}

/* The delivery service's answer to an event. */
static void on_event(void *arg, rk_http_response *r)
{
    entry *e = arg;
    rk_fitconnect *s = e->s;
    e->req = NULL;
    e->work = W_NONE;
    s->n_http--;
    free(e->set);
    e->set = NULL;
    int cls = classify(r);
    char what[CURL_ERROR_SIZE + 80];
    describe(r, what, sizeof what);
    const char *kind = e->event == EV_ACCEPT ? "accept-submission" : "reject-submission";
    if (cls == C_OK || cls == C_GONE) {
        if (cls == C_OK)
            rk_info(s->source, "submission %s (case %s, job %lld): %s sent", e->id, e->case_id,
                    (long long)e->job_id, kind);
        else
            rk_warn(s->source, "submission %s: %s answered %s; the case is gone, taken as done",
                    e->id, kind, what);
        e->known = K_DONE;
        e->event = EV_NONE;
        e->fails = 0;
        if (s->phase == PH_LIST)
            s->shifted = 1;
        json_decref(e->problems);
        e->problems = NULL;
        if (e->notice_id)
            rk_engine_notice_done(s->engine, e->notice_id, 1, NULL);
        e->notice_id = 0;
    } else {
        if (cls == C_AUTH)
            refused(s, what, kind);
        else
            rk_warn(s->source, "submission %s: %s failed (%s)", e->id, kind, what);
        int64_t wait = backoff_ms(s->cfg, ++e->fails);
        if (r->retry_after_ms > wait)
            wait = r->retry_after_ms > MAX_RETRY_AFTER_MS ? MAX_RETRY_AFTER_MS : r->retry_after_ms;
        e->retry_at = rk_now_ms() + wait;
        if (e->notice_id) {
            char why[CURL_ERROR_SIZE + 120];
            snprintf(why, sizeof why, "%s: %s", kind, what);
            rk_engine_notice_done(s->engine, e->notice_id, 0, why);
        }
    }
    pump(s);
}

void rk_fitconnect_outcome(rk_fitconnect *s, int64_t notice_id, const char *source_ref,
                           int64_t job_id, const char *state, const char *reason)
{
    (void)reason; /* the Begruendung stays here: see inbox_fitconnect.h */
    if (s->stopping)
        return; /* offered again after the next start */
    if (!source_ref || !is_uuid(source_ref)) {
        rk_error(s->source, "job %lld: '%s' is not a submission id; nothing to tell",
                 (long long)job_id, source_ref ? source_ref : "");
        rk_engine_notice_done(s->engine, notice_id, 1, NULL);
        return;
    }
    int ev = strcmp(state, "delivered") == 0 ? EV_ACCEPT
             : strcmp(state, "rejected") == 0 ? EV_REJECT
                                              : EV_NONE;
    entry *e = entry_get(s, source_ref, 1);
    if (!e) {
        rk_engine_notice_done(s->engine, notice_id, 0, "out of memory");
        return;
    }
    if (e->notice_id == notice_id)
        return; /* offered again while we still work on it */
    if (ev == EV_NONE || e->known == K_DONE) {
        rk_engine_notice_done(s->engine, notice_id, 1, NULL);
        return;
    }
    if (e->notice_id && e->notice_id != notice_id)
        rk_engine_notice_done(s->engine, e->notice_id, 1, NULL); /* superseded */
    e->notice_id = notice_id;
    e->job_id = job_id;
    e->fails = 0;
    e->retry_at = 0;
    if (ev == EV_REJECT) {
        json_decref(e->problems);
        e->problems = json_pack("[{s:s, s:s, s:s, s:s}]", "type", PROBLEM_REVIEW, "title",
                                "Einreichung abgelehnt", "detail",
                                "Die Einreichung wurde bei der Prüfung durch die Behörde "
                                "abgelehnt.",
                                "instance", "submission");
    }
    e->event = ev;
    rk_info(s->source, "submission %s: job %lld %s; %s follows", e->id, (long long)job_id,
            state, ev == EV_ACCEPT ? "accept-submission" : "reject-submission");
    if (e->work != W_NONE && e->work != W_QUEUED)
        return; /* being fetched or stored: sent when that is done */
    if (e->known == K_STORED && e->have_tags) {
        event_push(s, e);
        pump(s);
    } else if (s->phase == PH_WAIT) {
        /* not fetched in this run (a restart): the event needs its case id
         * and tags, so the submission is fetched again, at once */
        arm(s, 0);
    } else {
        s->again = 1;
    }
}

/* ---- callbacks ----------------------------------------------------------- */

int rk_fitconnect_callback_check(const rk_fitconnect_config *cfg, const char *timestamp,
                                 const char *mac, const void *body, size_t len, int64_t now,
                                 char *err, size_t errlen)
{
    if (!cfg->callback_secret) {
        snprintf(err, errlen, "[fitconnect %s] has no callback_secret: callbacks are refused",
                 cfg->name);
        return RK_E_CONFIG;
    }
    if (!timestamp || !mac) {
        snprintf(err, errlen, "the header %s is missing",
                 !timestamp ? "callback-timestamp" : "callback-authentication");
        return RK_E_FORMAT;
    }
    return rk_callback_verify(cfg->callback_secret, strlen(cfg->callback_secret), timestamp,
                              mac, body, len, now, err, errlen);
}

int rk_fitconnect_callback(rk_fitconnect *s, const char *timestamp, const char *mac,
                           const void *body, size_t len, char *err, size_t errlen)
{
    int rc = rk_fitconnect_callback_check(s->cfg, timestamp, mac, body, len,
                                          (int64_t)time(NULL), err, errlen);
    if (rc) {
        rk_warn(s->source, "callback ignored: %s", err);
        return rc;
    }
    rk_info(s->source, "callback: submissions are waiting; polling now");
    if (s->phase == PH_WAIT)
        arm(s, 0);
    else
        s->again = 1;
    return 0;
}

/* ---- the driver -------------------------------------------------------- */

/* Starts whatever may start now: the list page, events, fetches. */
static void pump(rk_fitconnect *s)
{
    if (s->stopping)
        return;
    if (s->phase == PH_LIST && !s->list_req && !s->halt && !need_token(s)) {
        char *url = list_url(s);
        rk_http_request rq;
        request_base(s, &rq, url, s->cfg->max_list_size);
        char err[256];
        int rc = url ? rk_http_start(s->curl, &rq, on_list, s, &s->list_req, err, sizeof err)
                     : -ENOMEM;
        free(url);
        if (rc) {
            rk_error(s->source, "cannot start the listing");
            fail_cycle(s, O_TRANSIENT, -1);
        }
    }
    /* memory stays bounded: documents being verified or stored count */
    while (s->ehead && s->n_http + s->n_pool + s->n_storing < s->cfg->max_inflight &&
           !need_token(s))
        start_event(event_pop(s));
    while (s->phase == PH_WORK && !s->halt && s->qhead &&
           s->n_http + s->n_pool + s->n_storing < s->cfg->max_inflight && !need_token(s))
        start_fetch(queue_pop(s));
    maybe_end(s);
}

/* ---- life cycle -------------------------------------------------------- */

static void free_all(rk_fitconnect *s)
{
    for (size_t b = 0; b < N_BUCKETS; b++) {
        entry *e = s->buckets[b];
        while (e) {
            entry *next = e->hnext;
            entry_free(e);
            e = next;
        }
    }
    for (rk_fitconnect **pp = &running; *pp; pp = &(*pp)->next_running)
        if (*pp == s) {
            *pp = s->next_running;
            break;
        }
    rk_jose_key_free(s->dec_key);
    rk_jose_key_free(s->sig_key);
    secret_free(s->token);
    free(s);
}

int rk_fitconnect_start(rk_engine *eng, rk_curl *curl, const rk_fitconnect_config *cfg,
                        rk_fitconnect **out, char *err, size_t errlen)
{
    rk_fitconnect *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char why[300];
    int rc = rk_jose_key_load(cfg->decryption_key, RK_JOSE_KEY_PRIVATE, &s->dec_key, why,
                              sizeof why);
    if (rc) {
        snprintf(err, errlen, "decryption_key %s: %s", cfg->decryption_key, why);
        free_all(s);
        return rc;
    }
    rc = rk_jose_key_load(cfg->signing_key, RK_JOSE_KEY_PRIVATE, &s->sig_key, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "signing_key %s: %s", cfg->signing_key, why);
        free_all(s);
        return rc;
    }
    /* a JWK that names its alg is used for that alg only: two key files
     * mixed up are reported now, not as a failure per submission */
    const char *da = rk_jose_key_alg(s->dec_key), *sa = rk_jose_key_alg(s->sig_key);
    if ((da && strcmp(da, "RSA-OAEP-256")) || (sa && strcmp(sa, "PS512"))) {
        snprintf(err, errlen, "%s %s is a key for alg %s; decryption_key must be the "
                              "RSA-OAEP-256 key and signing_key the PS512 key",
                 da && strcmp(da, "RSA-OAEP-256") ? "decryption_key" : "signing_key",
                 da && strcmp(da, "RSA-OAEP-256") ? cfg->decryption_key : cfg->signing_key,
                 da && strcmp(da, "RSA-OAEP-256") ? da : sa);
        free_all(s);
        return RK_E_CONFIG;
    }
    s->sig_kid = cfg->signing_kid ? cfg->signing_kid : rk_jose_key_kid(s->sig_key);
    if (!s->sig_kid) {
        snprintf(err, errlen, "signing_key %s has no kid: set signing_kid (the key id the "
                              "delivery service knows the key by)", cfg->signing_key);
        free_all(s);
        return RK_E_CONFIG;
    }
    s->engine = eng;
    s->curl = curl;
    s->cfg = cfg;
    s->max_document = rk_engine_config(eng)->max_document;
    snprintf(s->source, sizeof s->source, "fitconnect:%s", cfg->name);
    s->phase = PH_WAIT;
    s->outcome = O_NONE;
    uv_timer_init(rk_engine_loop(eng), &s->timer);
    s->timer.data = s;
    s->next_running = running;
    running = s;
    rk_info(s->source, "receiving for destination %s from %s every %lld ms", cfg->destination_id,
            cfg->api_url, (long long)cfg->poll_interval_ms);
    arm(s, 0);
    *out = s;
    return 0;
}

const char *rk_fitconnect_source_id(const rk_fitconnect *s) { return s->source; }

rk_fitconnect *rk_fitconnect_find(const char *name)
{
    for (rk_fitconnect *s = running; s; s = s->next_running)
        if (!s->stopping && strcmp(s->cfg->name, name) == 0)
            return s;
    return NULL;
}

int rk_fitconnect_idle(const rk_fitconnect *s)
{
    if (s->phase != PH_WAIT || s->n_http || s->n_pool || s->n_storing || s->ehead)
        return 0;
    /* an event still to send keeps --once running, unless it failed often */
    for (size_t b = 0; b < N_BUCKETS; b++)
        for (const entry *e = s->buckets[b]; e; e = e->hnext)
            if (e->event != EV_NONE && e->fails <= s->cfg->once_retries)
                return 0;
    switch (s->outcome) {
    case O_NOTHING:
    case O_PERMANENT: return 1;
    case O_TRANSIENT: return s->fails > s->cfg->once_retries;
    default: return 0;
    }
}

/* The source is freed once its timer closed and no pool work runs. */
static void maybe_freed(rk_fitconnect *s)
{
    if (!s->stopping || !s->timer_closed || s->n_pool)
        return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free_all(s);
    if (done)
        done(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    rk_fitconnect *s = h->data;
    s->timer_closed = 1;
    maybe_freed(s);
}

void rk_fitconnect_stop(rk_fitconnect *s, void (*done)(void *arg), void *arg)
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
    for (size_t b = 0; b < N_BUCKETS; b++)
        for (entry *e = s->buckets[b]; e; e = e->hnext) {
            if (e->req) {
                rk_http_cancel(e->req);
                e->req = NULL;
            }
            if (e->work == W_VERIFY || e->work == W_SIGN)
                uv_cancel((uv_req_t *)&e->pool); /* runs after_* with UV_ECANCELED if queued */
        }
    s->n_http = 0;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static int ops_idle(void *src) { return rk_fitconnect_idle(src); }

static void ops_stop(void *src, void (*done)(void *), void *arg)
{
    rk_fitconnect_stop(src, done, arg);
}

static void ops_outcome(void *src, int64_t notice_id, const char *source_ref, int64_t job_id,
                        const char *state, const char *reason)
{
    rk_fitconnect_outcome(src, notice_id, source_ref, job_id, state, reason);
}

const rk_source_ops rk_fitconnect_ops = {"fitconnect", ops_idle, ops_stop, ops_outcome};
