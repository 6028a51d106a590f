/*
 * api.c — see api.h.
 *
 *   GET  /api/v1/status                   counts per state and job, overdue jobs,
 *                                         paused connectors, sources with problems
 *   GET  /api/v1/jobs?FILTERS             jobs, newest first, paged (next link)
 *   GET  /api/v1/jobs/{id}                one job: submission, events, anomalies,
 *                                         fields with provenance, deliveries,
 *                                         corrections
 *   GET  /api/v1/jobs/{id}/document       the stored document (application/xml)
 *   POST /api/v1/jobs/{id}/fields/{name}  {"value": "..."}   correct a field
 *   POST /api/v1/jobs/{id}/approve
 *   POST /api/v1/jobs/{id}/reject         {"reason": "..."}
 *   POST /api/v1/jobs/{id}/retry
 *   POST /api/v1/jobs/{id}/replay         {"new_key": false}
 *   GET  /api/v1/events?since=&job=&after=&limit=   the audit trail, paged
 *   GET  /metrics   GET /healthz   GET /readyz
 *   POST /callbacks/fitconnect/{name}     FIT-Connect's announcement of new
 *                                         submissions (no token: the HMAC is
 *                                         the authentication)
 *
 * Errors are {"error": "message"} with a 4xx or 5xx status; a refused
 * decision carries the German sentence of the review module, the job's
 * state and its open anomalies beside it.
 */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inbox_fitconnect.h"
#include "metrics.h"
#include "util.h"

#define JOBS_LIMIT_DEFAULT 50
#define JOBS_LIMIT_MAX 500
#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_LIMIT_MAX 1000
#define STATUS_OVERDUE_MAX 100

struct rk_api {
    const rk_config *cfg;
    rk_store *store;
    rk_registry *reg;   /* loaded at the first decision */
};

int rk_api_open(const rk_config *cfg, rk_api **out, char *err, size_t errlen)
{
    *out = NULL;
    rk_api *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->cfg = cfg;
    int rc = rk_store_open(cfg->database, cfg->sync_normal ? RK_STORE_SYNC_NORMAL : 0,
                           &a->store, err, errlen);
    if (rc) {
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void rk_api_close(rk_api *a)
{
    if (!a)
        return;
    if (a->reg)
        rk_registry_free(a->reg);
    rk_store_close(a->store);
    free(a);
}

rk_store *rk_api_store(rk_api *a)
{
    return a->store;
}

/* The job definitions; read at the first call, again when reload. */
static rk_registry *registry(rk_api *a, int reload)
{
    char *errors = NULL;
    if (!a->reg) {
        rk_info("api", "loading the job definitions from %s for decisions", a->cfg->jobs_dir);
        a->reg = rk_registry_load(a->cfg->jobs_dir, &a->cfg->vars, &errors);
    } else if (reload) {
        rk_info("api", "reading the job folder %s again", a->cfg->jobs_dir);
        rk_registry_reload(a->reg, &a->cfg->vars, &errors);
    }
    free(errors);
    return a->reg;
}

int rk_api_review(rk_api *a, const char *actor, rk_review *out)
{
    memset(out, 0, sizeof *out);
    out->store = a->store;
    out->reg = registry(a, 0);
    out->actor = actor;
    return out->reg ? 0 : RK_E_CONFIG;
}

/* ---- small helpers ------------------------------------------------------- */

int rk_api_parse_time(const char *s, int64_t now_ms, char *iso, size_t isolen)
{
    int64_t age;
    if (rk_duration_parse(s, &age) == 0) {
        rk_time_iso(now_ms - age, iso, isolen);
        return 0;
    }
    static const struct {
        const char *fmt;
        int iso;
    } forms[] = {
        {"%Y-%m-%dT%H:%M:%S", 1}, {"%Y-%m-%dT%H:%M", 1}, {"%Y-%m-%d %H:%M:%S", 1},
        {"%Y-%m-%d %H:%M", 1},    {"%Y-%m-%d", 1},       {"%d.%m.%Y %H:%M:%S", 0},
        {"%d.%m.%Y %H:%M", 0},    {"%d.%m.%Y", 0},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(s, forms[i].fmt, &tm);
        if (!end)
            continue;
        int utc = 0;
        if (forms[i].iso && end[0] == '.' && forms[i].fmt[strlen(forms[i].fmt) - 1] == 'S') {
            /* fractions of a second, as the API itself writes times */
            end++;
            while (*end >= '0' && *end <= '9')
                end++;
        }
        if (forms[i].iso && end[0] == 'Z' && end[1] == '\0')
            utc = 1;
        else if (*end)
            continue;
        struct tm want = tm;
        time_t t;
        if (utc) {
            t = timegm(&tm);
        } else {
            tm.tm_isdst = -1;
            t = mktime(&tm);
        }
        if (t == (time_t)-1 || tm.tm_mday != want.tm_mday || tm.tm_mon != want.tm_mon)
            return RK_E_FORMAT;
        rk_time_iso((int64_t)t * 1000, iso, isolen);
        return 0;
    }
    return RK_E_FORMAT;
}

/* The job id in the first {} of the route; 0 (and a 404 in rs) when it
 * is not a positive whole number. */
static int64_t job_id_arg(const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    int64_t id;
    if (rq->n_args < 1 || rk_parse_int64(rq->args[0], &id) != 0 || id <= 0) {
        rk_httpd_error(rs, 404, "no such job: the id must be a whole number above 0");
        return 0;
    }
    return id;
}

/* A whole-number query parameter within lo..hi, or dflt when absent;
 * -1 (and a 400 in rs) when it is malformed. */
static int64_t int_param(const rk_httpd_req *rq, rk_httpd_resp *rs, const char *name,
                         int64_t lo, int64_t hi, int64_t dflt)
{
    const char *v = rk_httpd_query(rq, name);
    if (!v)
        return dflt;
    int64_t n;
    if (rk_parse_int64(v, &n) != 0 || n < lo || n > hi) {
        rk_httpd_error(rs, 400, "%s must be a whole number from %lld to %lld", name,
                      (long long)lo, (long long)hi);
        return -1;
    }
    return n;
}

/* Appends "&name=value" (or "?name=value" first) with value
 * percent-encoded, for the next links. */
static void add_query(rk_buf *b, const char *name, const char *value)
{
    if (!value)
        return;
    rk_buf_appendf(b, "%c%s=", strchr(b->data ? b->data : "", '?') ? '&' : '?', name);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            rk_buf_append(b, p, 1);
        else
            rk_buf_appendf(b, "%%%02X", *p);
    }
}

/* Rejects query parameters the route does not know (a typo would
 * otherwise silently list everything).  1 when one was found (400 in rs). */
static int unknown_params(const rk_httpd_req *rq, rk_httpd_resp *rs,
                          const char *const *allowed)
{
    const char *bad = rk_httpd_query_unknown(rq, allowed);
    if (!bad)
        return 0;
    rk_buf list;
    rk_buf_init(&list, 1024);
    for (size_t i = 0; allowed[i]; i++)
        rk_buf_appendf(&list, "%s%s", i ? ", " : "", allowed[i]);
    rk_httpd_error(rs, 400, "unknown parameter '%s'; known: %s", bad, list.data);
    rk_buf_free(&list);
    return 1;
}

/* The JSON object of a request body; NULL (and a 400 in rs) when the body
 * is not one.  An empty body is an empty object when empty_ok. */
static json_t *body_object(const rk_httpd_req *rq, rk_httpd_resp *rs, int empty_ok)
{
    size_t i = 0;
    while (i < rq->body_len && (rq->body[i] == ' ' || rq->body[i] == '\n' ||
                                rq->body[i] == '\r' || rq->body[i] == '\t'))
        i++;
    if (i == rq->body_len) {
        if (empty_ok)
            return json_object();
        rk_httpd_error(rs, 400, "the request needs a JSON object as its body");
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        if (o)
            rk_httpd_error(rs, 400, "the body must be a JSON object");
        else
            rk_httpd_error(rs, 400, "the body is not JSON: %s (line %d)", je.text, je.line);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Members of a body other than the known ones are refused, like unknown
 * query parameters. */
static int unknown_members(json_t *o, rk_httpd_resp *rs, const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        size_t i = 0;
        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i]) {
            rk_httpd_error(rs, 400, "unknown member '%s' in the body", key);
            return 1;
        }
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

static void on_source_problem(const char *source, const char *problem, void *arg)
{
    json_t *o = json_object();
    json_object_set_new(o, "source", json_string(source));
    json_object_set_new(o, "problem", json_string(problem));
    json_array_append_new(arg, o);
}

static void h_status(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_api *a = arg;
    static const char *const none[] = {NULL};
    if (unknown_params(rq, rs, none))
        return;
    json_t *st = rk_store_status_json(a->store);
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.overdue = 1;
    f.limit = STATUS_OVERDUE_MAX;
    json_t *late = st ? rk_store_find_json(a->store, &f) : NULL;
    if (!st || !late) {
        json_decref(st);
        rk_httpd_error(rs, 500, "the database cannot be read: %s", rk_store_errmsg(a->store));
        return;
    }
    json_object_set_new(st, "overdue", late);
    json_t *src = json_array();
    rk_metrics_source_problems(on_source_problem, src);
    json_object_set_new(st, "source_problems", src);
    rk_httpd_json(rs, 200, st);
}

static void h_jobs(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_api *a = arg;
    static const char *const known[] = {"state", "job",   "source",  "source_ref",
                                        "ref",   "code",  "since",   "until",
                                        "overdue", "before", "limit", NULL};
    if (unknown_params(rq, rs, known))
        return;
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.state = rk_httpd_query(rq, "state");
    if (f.state && !rk_state_valid(f.state)) {
        rk_httpd_error(rs, 400, "unknown state '%s'; one of received, validated, mapped, ready, "
                               "delivering, delivered, review, retry_wait, failed, rejected",
                      f.state);
        return;
    }
    f.job = rk_httpd_query(rq, "job");
    f.source = rk_httpd_query(rq, "source");
    f.source_ref = rk_httpd_query(rq, "source_ref");
    f.reference = rk_httpd_query(rq, "ref");
    f.code = rk_httpd_query(rq, "code");
    char since[40], until[40];
    int64_t now = rk_now_ms();
    const char *s = rk_httpd_query(rq, "since"), *u = rk_httpd_query(rq, "until");
    if ((s && rk_api_parse_time(s, now, since, sizeof since) != 0) ||
        (u && rk_api_parse_time(u, now, until, sizeof until) != 0)) {
        rk_httpd_error(rs, 400, "since and until take YYYY-MM-DD[THH:MM[:SS]][Z], TT.MM.JJJJ "
                               "[HH:MM] or an age like 7d or 36h");
        return;
    }
    f.since = s ? since : NULL;
    f.until = u ? until : NULL;
    const char *od = rk_httpd_query(rq, "overdue");
    if (od) {
        int b = rk_parse_bool(od);
        if (b < 0) {
            rk_httpd_error(rs, 400, "overdue must be true or false");
            return;
        }
        f.overdue = b;
    }
    int64_t before = int_param(rq, rs, "before", 1, INT64_MAX, 0);
    int64_t limit = int_param(rq, rs, "limit", 1, JOBS_LIMIT_MAX, JOBS_LIMIT_DEFAULT);
    if (before < 0 || limit < 0)
        return;
    f.before_id = before;
    f.limit = (size_t)limit + 1; /* one more tells whether there is a next page */
    json_t *rows = rk_store_find_json(a->store, &f);
    if (!rows) {
        rk_httpd_error(rs, 500, "the database cannot be read: %s", rk_store_errmsg(a->store));
        return;
    }
    json_t *next = json_null();
    if (json_array_size(rows) > (size_t)limit) {
        json_array_remove(rows, (size_t)limit);
        char last[32];
        snprintf(last, sizeof last, "%lld",
                 (long long)json_integer_value(
                     json_object_get(json_array_get(rows, (size_t)limit - 1), "id")));
        rk_buf b;
        rk_buf_init(&b, 8192);
        rk_buf_appendf(&b, "/api/v1/jobs");
        for (size_t i = 0; known[i]; i++)
            if (strcmp(known[i], "before") != 0)
                add_query(&b, known[i], rk_httpd_query(rq, known[i]));
        add_query(&b, "before", last);
        json_decref(next);
        next = json_string(b.data);
        rk_buf_free(&b);
    }
    json_t *o = json_object();
    json_object_set_new(o, "jobs", rows);
    json_object_set_new(o, "next", next);
    rk_httpd_json(rs, 200, o);
}

static void h_job(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_api *a = arg;
    static const char *const none[] = {NULL};
    int64_t id = job_id_arg(rq, rs);
    if (!id || unknown_params(rq, rs, none))
        return;
    json_t *o = rk_store_show_json(a->store, id);
    if (!o) {
        rk_httpd_error(rs, 404, "no job %lld", (long long)id);
        return;
    }
    rk_httpd_json(rs, 200, o);
}

static void h_document(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_api *a = arg;
    int64_t id = job_id_arg(rq, rs);
    if (!id)
        return;
    char *data = NULL, *uid = NULL;
    size_t len = 0;
    int rc = rk_store_load_payload(a->store, id, a->cfg->max_document, &data, &len, &uid);
    free(uid);
    if (rc == RK_E_NOTFOUND) {
        rk_httpd_error(rs, 404, "no document for job %lld (no such job, or purged)",
                      (long long)id);
    } else if (rc) {
        rk_httpd_error(rs, 500, "the document of job %lld cannot be read: %s", (long long)id,
                      rk_strerror(rc));
    } else {
        rs->status = 200;
        rs->content_type = "application/xml";
        if (rk_buf_append(&rs->body, data, len) != 0)
            rk_httpd_error(rs, 500, "the document is too large to send");
    }
    free(data);
}

static void h_events(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_api *a = arg;
    static const char *const known[] = {"since", "job", "after", "limit", NULL};
    if (unknown_params(rq, rs, known))
        return;
    char since[40];
    const char *s = rk_httpd_query(rq, "since");
    if (s && rk_api_parse_time(s, rk_now_ms(), since, sizeof since) != 0) {
        rk_httpd_error(rs, 400, "since takes YYYY-MM-DD[THH:MM[:SS]][Z], TT.MM.JJJJ [HH:MM] "
                               "or an age like 7d or 36h");
        return;
    }
    int64_t after = int_param(rq, rs, "after", 0, INT64_MAX, 0);
    int64_t limit = int_param(rq, rs, "limit", 1, EVENTS_LIMIT_MAX, EVENTS_LIMIT_DEFAULT);
    if (after < 0 || limit < 0)
        return;
    json_t *rows = rk_store_events_json(a->store, s ? since : NULL, rk_httpd_query(rq, "job"),
                                        after, (size_t)limit + 1);
    if (!rows) {
        rk_httpd_error(rs, 500, "the database cannot be read: %s", rk_store_errmsg(a->store));
        return;
    }
    json_t *next = json_null();
    if (json_array_size(rows) > (size_t)limit) {
        json_array_remove(rows, (size_t)limit);
        char last[32];
        snprintf(last, sizeof last, "%lld",
                 (long long)json_integer_value(
                     json_object_get(json_array_get(rows, (size_t)limit - 1), "id")));
        rk_buf b;
        rk_buf_init(&b, 8192);
        rk_buf_appendf(&b, "/api/v1/events");
        add_query(&b, "since", s);
        add_query(&b, "job", rk_httpd_query(rq, "job"));
        add_query(&b, "limit", rk_httpd_query(rq, "limit"));
        add_query(&b, "after", last);
        json_decref(next);
        next = json_string(b.data);
        rk_buf_free(&b);
    }
    json_t *o = json_object();
    json_object_set_new(o, "events", rows);
    json_object_set_new(o, "next", next);
    rk_httpd_json(rs, 200, o);
}

/* ---- deciding ------------------------------------------------------------- */

enum { D_SET = RK_DECIDE_SET, D_APPROVE = RK_DECIDE_APPROVE, D_REJECT = RK_DECIDE_REJECT,
       D_RETRY = RK_DECIDE_RETRY, D_REPLAY = RK_DECIDE_REPLAY };

/*
 * Answers one decision about job id: 200 with {"ok": true, "id", "state",
 * "message", "anomalies"} (the open ones), or the refusal with the
 * review module's German sentence as "error" beside the same members:
 * 404 no such job or field, 409 not allowed in this state (or
 * four-eyes, or still blocked), 503 the job's definition is not loaded
 * or the database is busy, 500 otherwise.  extra (may be NULL) is merged
 * in and consumed.
 */
static void decision_reply(rk_api *a, rk_httpd_resp *rs, int64_t id, int rc,
                           const char *msg, json_t *extra, int ok_status)
{
    json_t *o = extra ? extra : json_object();
    json_t *show = rk_store_show_json(a->store, id);
    json_t *open = json_array();
    const char *state = NULL;
    if (show) {
        state = json_string_value(json_object_get(show, "state"));
        size_t i;
        json_t *an;
        json_array_foreach(json_object_get(show, "anomalies"), i, an) {
            if (json_is_null(json_object_get(an, "resolved_at")))
                json_array_append(open, an);
        }
    }
    json_object_set_new(o, "ok", json_boolean(rc == 0));
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "state", state ? json_string(state) : json_null());
    json_object_set_new(o, "message", json_string(msg));
    json_object_set_new(o, "anomalies", open);
    int status = ok_status;
    if (rc) {
        json_object_set_new(o, "error", json_string(msg));
        status = rc == RK_E_NOTFOUND ? 404
                 : rc == RK_E_STATE  ? 409
                 : rc == RK_E_FORMAT ? 400
                 : rc == RK_E_CONFIG ? 503
                 : rc == RK_E_DB     ? 503
                                     : 500;
    }
    json_decref(show);
    rk_httpd_json(rs, status, o);
}

/* The job name and state of id after a decision, for the metrics. */
static void count_transition(rk_api *a, int64_t id)
{
    rk_job_info ji;
    if (rk_store_job_info(a->store, id, &ji) == 0)
        rk_metrics_transition(ji.job, ji.state);
}

/* Runs one decision through the review module; when it fails because the
 * job's definition is not loaded, the job folder is read again and the
 * decision tried once more. */
static void count_transition(rk_api *a, int64_t id);
static const char *const action_names[] = {"field corrected", "approved", "rejected",
                                           "retried", "replayed"};

int rk_api_decide(rk_api *a, int kind, const char *actor, int64_t id, const char *s1,
                  const char *s2, int flag, int64_t *new_id, char *msg, size_t msglen)
{
    int rc = RK_E_CONFIG;
    for (int round = 0; round < 2 && rc == RK_E_CONFIG; round++) {
        rk_review rv;
        memset(&rv, 0, sizeof rv);
        rv.store = a->store;
        rv.reg = registry(a, round == 1);
        rv.actor = actor;
        msg[0] = '\0';
        if (!rv.reg && kind != D_REJECT && kind != D_RETRY && kind != D_REPLAY) {
            snprintf(msg, msglen, "Die Antragsarten aus %s konnten nicht geladen werden.",
                     a->cfg->jobs_dir);
            continue;
        }
        switch (kind) {
        case D_SET: rc = rk_review_set(&rv, id, s1, s2, msg, msglen); break;
        case D_APPROVE: rc = rk_review_approve(&rv, id, msg, msglen); break;
        case D_REJECT: rc = rk_review_reject(&rv, id, s1, msg, msglen); break;
        case D_RETRY: rc = rk_ops_retry(&rv, id, msg, msglen); break;
        default: rc = rk_ops_replay(&rv, id, flag, new_id, msg, msglen); break;
        }
    }
    if (rc && !msg[0])
        snprintf(msg, msglen, "%s", rk_strerror(rc));
    if (rc == 0) {
        rk_info("api", "job %lld: %s by %s", (long long)id, action_names[kind], actor);
        if (kind == D_APPROVE || kind == D_REJECT || kind == D_RETRY)
            count_transition(a, id);
    }
    return rc;
}

static void h_decide(rk_api *a, int kind, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    int64_t id = job_id_arg(rq, rs);
    if (!id)
        return;
    static const char *const none[] = {NULL};
    if (unknown_params(rq, rs, none))
        return;
    json_t *body = body_object(rq, rs, kind != D_SET && kind != D_REJECT);
    if (!body)
        return;
    static const char *const k_set[] = {"value", NULL}, *const k_reject[] = {"reason", NULL},
                             *const k_replay[] = {"new_key", NULL};
    const char *const *known = kind == D_SET      ? k_set
                               : kind == D_REJECT ? k_reject
                               : kind == D_REPLAY ? k_replay
                                                  : none;
    if (unknown_members(body, rs, known)) {
        json_decref(body);
        return;
    }
    const char *s1 = NULL, *s2 = NULL;
    int flag = 0;
    if (kind == D_SET) {
        json_t *v = json_object_get(body, "value");
        if (!v || !(json_is_string(v) || json_is_null(v))) {
            rk_httpd_error(rs, 400, "the body needs \"value\": the new value as a string (or "
                                   "null to clear it)");
            json_decref(body);
            return;
        }
        s1 = rq->n_args > 1 ? rq->args[1] : "";
        s2 = json_string_value(v); /* NULL for null */
    } else if (kind == D_REJECT) {
        s1 = json_string_value(json_object_get(body, "reason"));
        if (!s1 || !*s1) {
            rk_httpd_error(rs, 400, "a rejection needs \"reason\" (Begründung), e.g. "
                                   "{\"reason\": \"Zahlung nicht eingegangen\"}");
            json_decref(body);
            return;
        }
    } else if (kind == D_REPLAY) {
        json_t *nk = json_object_get(body, "new_key");
        if (nk && !json_is_boolean(nk)) {
            rk_httpd_error(rs, 400, "new_key must be true or false");
            json_decref(body);
            return;
        }
        flag = json_is_true(nk);
    }
    char msg[4096];
    int64_t new_id = 0;
    int rc = rk_api_decide(a, kind, rq->actor, id, s1, s2, flag, &new_id, msg, sizeof msg);
    json_decref(body);
    json_t *extra = NULL;
    int ok_status = 200;
    if (rc == 0 && kind == D_REPLAY) {
        extra = json_object();
        json_object_set_new(extra, "new_id", json_integer(new_id));
        char loc[64];
        snprintf(loc, sizeof loc, "/api/v1/jobs/%lld", (long long)new_id);
        rk_httpd_set_header(rs, "Location", loc);
        ok_status = 201;
    }
    decision_reply(a, rs, id, rc, msg, extra, ok_status);
}

static void h_set(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    h_decide(arg, D_SET, rq, rs);
}
static void h_approve(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    h_decide(arg, D_APPROVE, rq, rs);
}
static void h_reject(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    h_decide(arg, D_REJECT, rq, rs);
}
static void h_retry(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    h_decide(arg, D_RETRY, rq, rs);
}
static void h_replay(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    h_decide(arg, D_REPLAY, rq, rs);
}

/* ---- metrics and health ----------------------------------------------------- */

static void h_metrics(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_api *a = arg;
    (void)rq;
    rs->status = 200;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (rk_metrics_render(&rs->body, a->store) != 0)
        rk_httpd_text(rs, 500, "text/plain; charset=utf-8",
                     "the gauges cannot be read from the database\n");
}

static void h_healthz(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    (void)arg;
    (void)rq;
    rk_httpd_text(rs, 200, "text/plain; charset=utf-8", "ok\n");
}

static void on_pause_reason(const char *job, const char *connector, const char *reason,
                            void *arg)
{
    rk_buf_appendf(arg, "connector %s of job %s is paused: %s\n", connector, job,
                   reason ? reason : "(no reason recorded)");
}

static void on_source_reason(const char *source, const char *problem, void *arg)
{
    rk_buf_appendf(arg, "source %s does not work: %s\n", source, problem);
}

/*
 * Ready when the store takes a write (BEGIN IMMEDIATE, then ROLLBACK on
 * the API's own connection: nothing is written), no connector is paused
 * after a FATAL answer and no source is stopped by an error that
 * retrying will not cure.  Otherwise 503 with one line per reason.
 */
static void h_readyz(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    rk_api *a = arg;
    (void)rq;
    rk_buf why;
    rk_buf_init(&why, 1u << 16);
    if (rk_store_begin(a->store) != 0)
        rk_buf_appendf(&why, "the database cannot be written: %s\n",
                       rk_store_errmsg(a->store));
    else
        rk_store_rollback(a->store);
    if (rk_store_pauses(a->store, on_pause_reason, &why) != 0)
        rk_buf_appendf(&why, "the paused connectors cannot be read: %s\n",
                       rk_store_errmsg(a->store));
    rk_metrics_source_problems(on_source_reason, &why);
    if (why.len) {
        rk_buf text;
        rk_buf_init(&text, 1u << 17);
        rk_buf_appendf(&text, "not ready\n%s", why.data);
        rk_httpd_text(rs, 503, "text/plain; charset=utf-8", text.data);
        rk_buf_free(&text);
    } else {
        rk_httpd_text(rs, 200, "text/plain; charset=utf-8", "ready\n");
    }
    rk_buf_free(&why);
}

/* ---- FIT-Connect callbacks --------------------------------------------------- */

/*
 * POST /callbacks/fitconnect/{name}: registered RK_HTTPD_PUBLIC, since the
 * delivery service cannot send our bearer token; the HMAC-SHA512 over
 * timestamp "." body with the section's callback_secret is the
 * authentication (checked in constant time, at most five minutes off now,
 * by rk_fitconnect_callback).  The body was bounded by max_body before
 * this runs.  A refused callback is answered with no detail (the reason is
 * in the daemon's log) and changes nothing; a valid one makes the source
 * poll at once.
 */
static void h_fitconnect_callback(void *arg, const rk_httpd_req *rq, rk_httpd_resp *rs)
{
    (void)arg;
    rk_fitconnect *s = rk_fitconnect_find(rq->args[0]);
    if (!s) {
        rk_httpd_error(rs, 404, "no such FIT-Connect source");
        return;
    }
    char err[256];
    if (rk_fitconnect_callback(s, rk_httpd_header(rq, "callback-timestamp"),
                               rk_httpd_header(rq, "callback-authentication"), rq->body,
                               rq->body_len, err, sizeof err) != 0) {
        rk_httpd_error(rs, 401, "invalid callback");
        return;
    }
    rk_httpd_json(rs, 200, json_pack("{s:b}", "ok", 1));
}

int rk_api_mount(rk_api *a, rk_httpd *h)
{
    static const struct {
        const char *method, *pattern;
        unsigned flags;
        rk_httpd_handler fn;
    } routes[] = {
        {"GET", "/api/v1/status", 0, h_status},
        {"GET", "/api/v1/jobs", 0, h_jobs},
        {"GET", "/api/v1/jobs/{}", 0, h_job},
        {"GET", "/api/v1/jobs/{}/document", 0, h_document},
        {"POST", "/api/v1/jobs/{}/fields/{}", 0, h_set},
        {"POST", "/api/v1/jobs/{}/approve", 0, h_approve},
        {"POST", "/api/v1/jobs/{}/reject", 0, h_reject},
        {"POST", "/api/v1/jobs/{}/retry", 0, h_retry},
        {"POST", "/api/v1/jobs/{}/replay", 0, h_replay},
        {"GET", "/api/v1/events", 0, h_events},
        {"GET", "/healthz", RK_HTTPD_PUBLIC, h_healthz},
        {"GET", "/readyz", RK_HTTPD_PUBLIC, h_readyz},
        {"POST", "/callbacks/fitconnect/{}", RK_HTTPD_PUBLIC, h_fitconnect_callback},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = rk_httpd_route(h, routes[i].method, routes[i].pattern, routes[i].flags,
                                routes[i].fn, a);
        if (rc)
            return rc;
    }
    return rk_httpd_route(h, "GET", "/metrics", a->cfg->http.metrics_auth ? 0 : RK_HTTPD_PUBLIC,
                          h_metrics, a);
}
