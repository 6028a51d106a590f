/*
 * metrics.c — see metrics.h.
 *
 * Each counter metric is a family with up to three labels and a list of
 * series.  Lists, not hash tables: the label values come from the
 * configuration (a few sources, jobs and connectors, ten states), so a
 * family has tens of series and a linear search is cheaper than hashing.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

typedef struct series {
    struct series *next;
    char *labels[3];
    double value;
} series;

typedef struct family {
    const char *name;
    const char *help;
    int nlabels;
    const char *label_names[3];
    series *head;
    size_t n;
    int warned; /* the series cap was hit and logged */
} family;

enum { F_RECEIVED, F_TRANSITIONS, F_ATTEMPTS, F_POLLS, F_ERRORS, F_HTTP, F_COUNT };

static family families[F_COUNT] = {
    [F_RECEIVED] = {"rekey_submissions_received_total",
                    "Submissions stored, by source.", 1, {"source"}, NULL, 0, 0},
    [F_TRANSITIONS] = {"rekey_transitions_total",
                       "State changes of jobs made by this rekeyd, by job and new state.", 2,
                       {"job", "to"}, NULL, 0, 0},
    [F_ATTEMPTS] = {"rekey_delivery_attempts_total",
                    "Delivery attempts, by job, connector and result (ok, retry, permanent, "
                    "fatal).",
                    3, {"job", "connector", "result"}, NULL, 0, 0},
    [F_POLLS] = {"rekey_source_polls_total", "Poll cycles of networked sources.", 1,
                 {"source"}, NULL, 0, 0},
    [F_ERRORS] = {"rekey_source_errors_total", "Poll cycles of networked sources that failed.",
                  1, {"source"}, NULL, 0, 0},
    [F_HTTP] = {"rekey_http_requests_total",
                "Requests answered by the operator HTTP server, by status code.", 1, {"code"},
                NULL, 0, 0},
};

/* Upper bounds of the processing histogram, in seconds. */
static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                1,     2.5,  5,     10,   30,  60,  300};
#define N_BOUNDS (sizeof bounds / sizeof bounds[0])
static uint64_t hist_bucket[N_BOUNDS]; /* not cumulative: rendering sums */
static uint64_t hist_count;
static double hist_sum;

typedef struct health {
    struct health *next;
    char *source;
    char *problem; /* NULL: works */
} health;
static health *healths;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int labels_equal(const series *s, int n, const char *const *v)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s->labels[i], v[i] ? v[i] : "") != 0)
            return 0;
    return 1;
}

/* Adds d to the series of f with label values v (created at 0 when new).
 * Called with mu held. */
static void add_locked(family *f, const char *const *v, double d)
{
    for (series *s = f->head; s; s = s->next) {
        if (labels_equal(s, f->nlabels, v)) {
            s->value += d;
            return;
        }
    }
    if (f->n >= RK_METRICS_MAX_SERIES) {
        if (!f->warned)
            rk_warn("metrics", "%s has %d series; new label values are not counted",
                    f->name, RK_METRICS_MAX_SERIES);
        f->warned = 1;
        return;
    }
    series *s = calloc(1, sizeof *s);
    if (!s)
        return;
    for (int i = 0; i < f->nlabels; i++) {
        s->labels[i] = strdup(v[i] ? v[i] : "");
        if (!s->labels[i]) {
            for (int k = 0; k < i; k++)
                free(s->labels[k]);
            free(s);
            return;
        }
    }
    s->value = d;
    /* appended, so the output keeps the order of first use */
    series **pp = &f->head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    f->n++;
}

static void count(int fam, const char *a, const char *b, const char *c)
{
    const char *v[3] = {a, b, c};
    pthread_mutex_lock(&mu);
    add_locked(&families[fam], v, 1);
    pthread_mutex_unlock(&mu);
}

void rk_metrics_submission_received(const char *source)
{
    count(F_RECEIVED, source, NULL, NULL);
}

void rk_metrics_transition(const char *job, const char *to)
{
    count(F_TRANSITIONS, job, to, NULL);
}

void rk_metrics_delivery_attempt(const char *job, const char *connector, const char *result)
{
    count(F_ATTEMPTS, job, connector, result);
}

void rk_metrics_source_poll(const char *source)
{
    count(F_POLLS, source, NULL, NULL);
}

void rk_metrics_source_error(const char *source)
{
    count(F_ERRORS, source, NULL, NULL);
}

void rk_metrics_http_request(int status)
{
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    count(F_HTTP, code, NULL, NULL);
}

void rk_metrics_processing_observe(double seconds)
{
    if (!(seconds >= 0)) /* also NaN */
        seconds = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < N_BOUNDS; i++) {
        if (seconds <= bounds[i]) {
            hist_bucket[i]++;
            break;
        }
    }
    hist_count++;
    hist_sum += seconds;
    pthread_mutex_unlock(&mu);
}

void rk_metrics_source_health(const char *source, const char *problem)
{
    pthread_mutex_lock(&mu);
    health *h = healths;
    while (h && strcmp(h->source, source) != 0)
        h = h->next;
    if (!h && (h = calloc(1, sizeof *h)) != NULL) {
        h->source = strdup(source);
        if (!h->source) {
            free(h);
            h = NULL;
        } else {
            h->next = healths;
            healths = h;
        }
    }
    if (h) {
        free(h->problem);
        h->problem = problem ? strdup(problem) : NULL;
    }
    pthread_mutex_unlock(&mu);
}

size_t rk_metrics_source_problems(void (*cb)(const char *, const char *, void *), void *arg)
{
    size_t n = 0;
    pthread_mutex_lock(&mu);
    for (health *h = healths; h; h = h->next) {
        if (h->problem) {
            n++;
            if (cb)
                cb(h->source, h->problem, arg);
        }
    }
    pthread_mutex_unlock(&mu);
    return n;
}

void rk_metrics_reset(void)
{
    pthread_mutex_lock(&mu);
    for (int f = 0; f < F_COUNT; f++) {
        while (families[f].head) {
            series *s = families[f].head;
            families[f].head = s->next;
            for (int i = 0; i < families[f].nlabels; i++)
                free(s->labels[i]);
            free(s);
        }
        families[f].n = 0;
        families[f].warned = 0;
    }
    memset(hist_bucket, 0, sizeof hist_bucket);
    hist_count = 0;
    hist_sum = 0;
    while (healths) {
        health *h = healths;
        healths = h->next;
        free(h->source);
        free(h->problem);
        free(h);
    }
    pthread_mutex_unlock(&mu);
}

/* ---- rendering ------------------------------------------------------------ */

/* A label value in the text format: backslash, double quote and line
 * feed escaped. */
static void put_label(rk_buf *b, const char *name, const char *v, int first)
{
    rk_buf_appendf(b, "%s%s=\"", first ? "" : ",", name);
    for (; *v; v++) {
        if (*v == '\\')
            rk_buf_append(b, "\\\\", 2);
        else if (*v == '"')
            rk_buf_append(b, "\\\"", 2);
        else if (*v == '\n')
            rk_buf_append(b, "\\n", 2);
        else
            rk_buf_append(b, v, 1);
    }
    rk_buf_append(b, "\"", 1);
}

static void put_head(rk_buf *b, const char *name, const char *help, const char *type)
{
    rk_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample value: integers without a fraction, the rest with enough
 * digits to round-trip. */
static void put_value(rk_buf *b, double v)
{
    if (v == floor(v) && fabs(v) < 9.0e15)
        rk_buf_appendf(b, " %.0f\n", v);
    else
        rk_buf_appendf(b, " %.17g\n", v);
}

static void render_counters(rk_buf *b)
{
    for (int f = 0; f < F_COUNT; f++) {
        const family *fa = &families[f];
        put_head(b, fa->name, fa->help, "counter");
        for (const series *s = fa->head; s; s = s->next) {
            rk_buf_appendf(b, "%s{", fa->name);
            for (int i = 0; i < fa->nlabels; i++)
                put_label(b, fa->label_names[i], s->labels[i], i == 0);
            rk_buf_append(b, "}", 1);
            put_value(b, s->value);
        }
    }
    put_head(b, "rekey_processing_seconds",
             "Time from receipt of a submission until it is ready for delivery or held "
             "for review.",
             "histogram");
    uint64_t cum = 0;
    for (size_t i = 0; i < N_BOUNDS; i++) {
        cum += hist_bucket[i];
        rk_buf_appendf(b, "rekey_processing_seconds_bucket{le=\"%g\"} %llu\n", bounds[i],
                       (unsigned long long)cum);
    }
    rk_buf_appendf(b, "rekey_processing_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)hist_count);
    rk_buf_appendf(b, "rekey_processing_seconds_sum");
    put_value(b, hist_sum);
    rk_buf_appendf(b, "rekey_processing_seconds_count %llu\n", (unsigned long long)hist_count);
    put_head(b, "rekey_source_up",
             "1 while a networked source works, 0 while an error that retrying alone "
             "will not cure stops it.",
             "gauge");
    for (const health *h = healths; h; h = h->next) {
        rk_buf_append(b, "rekey_source_up{", 16);
        put_label(b, "source", h->source, 1);
        rk_buf_appendf(b, "} %d\n", h->problem ? 0 : 1);
    }
}

/* "YYYY-MM-DDTHH:MM:SS[.mmm]Z" as milliseconds; 0 when unparsable. */
static int64_t iso_ms(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!end)
        return 0;
    int64_t ms = (int64_t)timegm(&tm) * 1000;
    if (end[0] == '.' && end[1] >= '0' && end[1] <= '9')
        ms += strtol(end + 1, NULL, 10) % 1000;
    return ms;
}

static int first_ready(const rk_pending *p, void *arg)
{
    *(int64_t *)arg = p->job_id;
    return 1;
}

static void on_pause(const char *job, const char *connector, const char *reason, void *arg)
{
    (void)reason;
    rk_buf *b = arg;
    rk_buf_append(b, "rekey_connector_paused{", 23);
    put_label(b, "job", job, 1);
    put_label(b, "connector", connector, 0);
    rk_buf_append(b, "} 1\n", 4);
}

/*
 * The gauges, read from the store: jobs per state, overdue jobs, the age
 * of the ready job first in line, paused connectors.  Each read is one
 * statement (the overdue ones paged), so a scrape never holds the
 * database for long.
 */
static int render_gauges(rk_buf *b, rk_store *s)
{
    int rc = 0;
    json_t *st = rk_store_status_json(s);
    put_head(b, "rekey_jobs", "Jobs in the queue, by state.", "gauge");
    if (st) {
        json_t *by = json_object_get(st, "by_state");
        for (size_t i = 0; rk_states[i]; i++) {
            json_t *v = json_object_get(by, rk_states[i]);
            rk_buf_appendf(b, "rekey_jobs{state=\"%s\"} %lld\n", rk_states[i],
                           (long long)(v ? json_integer_value(v) : 0));
        }
        json_decref(st);
    } else {
        rc = RK_E_DB;
    }

    int64_t overdue = 0;
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.overdue = 1;
    f.limit = 1000;
    for (;;) {
        json_t *page = rk_store_find_json(s, &f);
        if (!page) {
            rc = RK_E_DB;
            break;
        }
        size_t n = json_array_size(page);
        overdue += (int64_t)n;
        if (n)
            f.before_id = (int64_t)json_integer_value(
                json_object_get(json_array_get(page, n - 1), "id"));
        json_decref(page);
        if (n < f.limit)
            break;
    }
    put_head(b, "rekey_overdue_jobs",
             "Jobs in review or failed past their processing deadline (Bearbeitungsfrist).",
             "gauge");
    rk_buf_appendf(b, "rekey_overdue_jobs %lld\n", (long long)overdue);

    /* the ready job with the lowest id is the next to be delivered; its
     * age counts from when it became ready */
    static const char *const ready[] = {RK_ST_READY, NULL};
    int64_t first = 0;
    double age = 0;
    if (rk_store_pending(s, ready, 1, first_ready, &first) != 0)
        rc = RK_E_DB;
    if (first) {
        memset(&f, 0, sizeof f);
        f.state = RK_ST_READY;
        f.before_id = first + 1;
        f.limit = 1;
        json_t *row = rk_store_find_json(s, &f);
        const char *upd = json_string_value(json_object_get(json_array_get(row, 0), "updated_at"));
        int64_t since = iso_ms(upd);
        if (since) {
            age = (double)(rk_now_ms() - since) / 1000.0;
            if (age < 0)
                age = 0;
        }
        json_decref(row);
    }
    put_head(b, "rekey_oldest_ready_age_seconds",
             "How long the ready job first in line for delivery has waited (0 when none).",
             "gauge");
    rk_buf_appendf(b, "rekey_oldest_ready_age_seconds %.3f\n", age);

    put_head(b, "rekey_connector_paused",
             "1 for each connector paused after a fatal answer, until it is resumed.",
             "gauge");
    if (rk_store_pauses(s, on_pause, b) != 0)
        rc = RK_E_DB;
    return rc;
}

int rk_metrics_render(rk_buf *out, rk_store *store)
{
    pthread_mutex_lock(&mu);
    render_counters(out);
    pthread_mutex_unlock(&mu);
    return store ? render_gauges(out, store) : 0;
}
