/*
 * watch.c — see watch.h.
 *
 * One frame is built in memory from four reads of the store (counts and
 * paused connectors, overdue jobs, the newest failed and waiting jobs,
 * the new events) and written with one fwrite, so the screen does not
 * flicker line by line.  The rates come from the event trail: the first
 * frame reads the events of the last minute (where they begin is found by
 * bisection over the event ids), each later one only the events after the
 * last id it saw, and a window in memory keeps those of the last 60
 * seconds.
 *
 * The terminal is put into non-canonical mode without echo so a single q
 * ends the view; Ctrl-C still raises SIGINT.  The previous terminal mode
 * and signal handlers are restored on every way out.
 */
#include "watch.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "store.h"
#include "util.h"

#define WATCH_DEFAULT_INTERVAL 2
#define WATCH_MAX_INTERVAL 3600
#define WATCH_WINDOW_MS 60000
#define WATCH_EVENTS_PAGE 1000
#define WATCH_MAX_WINDOW 2000000 /* events kept for the rates (32 MB) */
#define WATCH_ERRORS 5           /* rows of "Letzte Fehler" */
#define WATCH_OVERDUE_IDS 10     /* ids named after "Frist überschritten" */
#define WATCH_FRAME_MAX (1u << 20)
#define WATCH_NSTATES 10

static const char usage_watch[] =
    "usage: rekeyctl watch [--db PATH | --config FILE] [--interval SECONDS] [--once]\n"
    "\n"
    "A live view of the queue for the terminal, redrawn every few seconds:\n"
    "the counts per state with how many jobs entered each state in the last\n"
    "minute, the counts per job, the overdue jobs (Frist überschritten), the\n"
    "paused connectors and the last errors.  q or Ctrl-C ends it.  It only\n"
    "reads the database, and may run beside rekeyd and other rekeyctl.\n"
    "\n"
    "  --db PATH           the rekey database (default: the one in --config,\n"
    "                      else $REKEY_DB, else ./rekey.db)\n"
    "  --config FILE       the rekeyd configuration, for its database\n"
    "  --interval SECONDS  time between two frames, 1 to 3600 (default 2)\n"
    "  --once              print one frame without screen control and exit\n"
    "  --help, -h          this text\n"
    "\n"
    "Exit status: 0 ended with q, Ctrl-C or after --once; 1 the database cannot\n"
    "be opened or read; 2 usage error.\n";

/* One transition into a state within the window. */
typedef struct watch_ev {
    int64_t at_ms;
    int state; /* index into rk_states */
} watch_ev;

typedef struct watch {
    FILE *out;
    FILE *err;
    const char *db;
    int db_default;
    const char *config;
    rk_config cfg;
    int have_cfg;
    int interval_s;
    int once;
    rk_store *store;
    int64_t last_event_id; /* events up to this id are in the window */
    int have_events;       /* the first read of the last minute is done */
    watch_ev *ev;          /* the window, oldest first */
    size_t n_ev, cap_ev;
    int64_t capped_until;  /* the window was full: until then the rates are
                            * lower bounds (what was dropped leaves the
                            * window a minute later) */
} watch;

static volatile sig_atomic_t watch_stop;
static volatile sig_atomic_t watch_resized;

static void on_stop_signal(int sig)
{
    (void)sig;
    watch_stop = 1;
}

static void on_winch(int sig)
{
    (void)sig;
    watch_resized = 1;
}

/* ---- small text helpers ------------------------------------------------- */

/* Width of a UTF-8 string in code points (Latin text: one column each). */
static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/*
 * Appends s to b as one terminal-safe line of at most max_cols columns:
 * C0 and C1 controls and DEL become '?', so a connector's message cannot
 * move the cursor or break the table; a longer text is cut at a code
 * point boundary and ends in "…".  NULL appends "-".
 */
static void put_safe(rk_buf *b, const char *s, size_t max_cols)
{
    if (!s)
        s = "-";
    size_t cols = 0, len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)s[i];
        size_t n = 1;
        if (ch >= 0xC0)
            while (i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80 && n < 4)
                n++;
        if (cols + 1 == max_cols && text_width(s + i) > 1) {
            rk_buf_append(b, "…", strlen("…"));
            return;
        }
        if (ch < 0x20 || ch == 0x7f || (ch == 0xC2 && n == 2 && (unsigned char)s[i + 1] <= 0x9F))
            rk_buf_append(b, "?", 1);
        else
            rk_buf_append(b, s + i, n);
        cols++;
        i += n;
    }
}

/* Appends s left-aligned in a field of w columns (no cut). */
static void put_left(rk_buf *b, const char *s, size_t w)
{
    size_t n = text_width(s);
    rk_buf_append(b, s, strlen(s));
    for (; n < w; n++)
        rk_buf_append(b, " ", 1);
}

/* Appends the number v right-aligned in w columns. */
static void put_num(rk_buf *b, long long v, int w)
{
    rk_buf_appendf(b, "%*lld", w, v);
}

/* "2026-11-26T15:45:51.701Z" (UTC) → ms since the epoch; -1 when it is
 * not such a time. */
static int64_t iso_to_ms(const char *iso)
{
    int y, mo, d, h, mi, s, ms = 0;
    if (!iso || sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &y, &mo, &d, &h, &mi, &s, &ms) < 6)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return (int64_t)t * 1000 + ms;
}

/* ms since the epoch as local "TT.MM.JJJJ HH:MM:SS" (out >= 20 bytes). */
static void fmt_local(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || !localtime_r(&t, &tm) || strftime(out, outlen, "%d.%m.%Y %H:%M:%S", &tm) == 0)
        snprintf(out, outlen, "-");
}

static int state_index(const char *s)
{
    for (int i = 0; s && rk_states[i]; i++)
        if (strcmp(s, rk_states[i]) == 0)
            return i;
    return -1;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static long long jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

/* Columns of the terminal on fd, or 100 when it is not one. */
static size_t term_cols(int fd)
{
    struct winsize ws;
    if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    return 100;
}

/* ---- reading the store -------------------------------------------------- */

/* The time of the first event after id after (-2: none; -1: unreadable). */
static int64_t event_at_after(watch *w, int64_t after)
{
    json_t *one = rk_store_events_json(w->store, NULL, NULL, after, 1);
    if (!one)
        return -1;
    json_t *e = json_array_get(one, 0);
    int64_t at = e ? iso_to_ms(jstr(e, "at")) : -2;
    json_decref(one);
    return at;
}

/*
 * The event id after which the events of the last minute begin, found by
 * bisection over the ids (each probe is one lookup by rowid), so the
 * first frame does not scan a trail of millions.  Event times grow with
 * their ids (both are taken when the event is written); should the clock
 * have stepped back, the rate may miss a few events for one minute.
 * 0 or -1 when the store cannot be read; *start gets the id.
 */
static int window_start(watch *w, int64_t since_ms, int64_t *start)
{
    *start = 0;
    int64_t at = event_at_after(w, 0);
    if (at == -1)
        return -1;
    if (at == -2 || at >= since_ms)
        return 0;
    int64_t lo = 0, hi = 1024; /* f(lo) < since; find hi with f(hi) >= since or none */
    for (;;) {
        at = event_at_after(w, hi);
        if (at == -1)
            return -1;
        if (at == -2 || at >= since_ms)
            break;
        lo = hi;
        if (hi > INT64_MAX / 2)
            break;
        hi *= 2;
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        at = event_at_after(w, mid);
        if (at == -1)
            return -1;
        if (at != -2 && at < since_ms)
            lo = mid;
        else
            hi = mid;
    }
    *start = lo;
    return 0;
}

/*
 * Brings the window of recent transitions up to date: reads the events
 * after the last one seen (the first time, those of the last minute),
 * keeps each that entered a state (from differs from to: a correction
 * in review is a note, not a transition), and drops what is older than a
 * minute.  0, or -1 when the store cannot be read.
 */
static int window_update(watch *w, int64_t now_ms)
{
    char since[32];
    rk_time_iso(now_ms - WATCH_WINDOW_MS, since, sizeof since);
    if (!w->have_events && window_start(w, now_ms - WATCH_WINDOW_MS, &w->last_event_id) != 0)
        return -1;
    for (;;) {
        json_t *page = rk_store_events_json(w->store, w->have_events ? NULL : since, NULL,
                                            w->last_event_id, WATCH_EVENTS_PAGE);
        if (!page)
            return -1;
        size_t i, n = json_array_size(page);
        json_t *e;
        json_array_foreach(page, i, e) {
            long long id = jint(e, "id");
            if (id > w->last_event_id)
                w->last_event_id = id;
            const char *from = jstr(e, "from_state"), *to = jstr(e, "to_state");
            int st = state_index(to);
            int64_t at = iso_to_ms(jstr(e, "at"));
            if (st < 0 || at < 0 || (from && strcmp(from, to) == 0))
                continue;
            if (w->n_ev == w->cap_ev) {
                if (w->cap_ev >= WATCH_MAX_WINDOW) {
                    w->capped_until = now_ms + WATCH_WINDOW_MS;
                    continue;
                }
                size_t cap = w->cap_ev ? w->cap_ev * 2 : 1024;
                watch_ev *p = realloc(w->ev, cap * sizeof *p);
                if (!p) {
                    w->capped_until = now_ms + WATCH_WINDOW_MS;
                    continue;
                }
                w->ev = p;
                w->cap_ev = cap;
            }
            w->ev[w->n_ev++] = (watch_ev){at, st};
        }
        json_decref(page);
        if (n < WATCH_EVENTS_PAGE)
            break;
    }
    w->have_events = 1;
    size_t keep = 0;
    for (size_t i = 0; i < w->n_ev; i++)
        if (w->ev[i].at_ms >= now_ms - WATCH_WINDOW_MS)
            w->ev[keep++] = w->ev[i];
    w->n_ev = keep;
    return 0;
}

/* Orders rows by "updated_at", newest first (ISO strings sort as times). */
static int by_updated_desc(const void *a, const void *b)
{
    const char *x = jstr(*(json_t *const *)a, "updated_at");
    const char *y = jstr(*(json_t *const *)b, "updated_at");
    return strcmp(y ? y : "", x ? x : "");
}

/*
 * The newest failed and retry_wait jobs (at most WATCH_ERRORS), newest
 * change first, each with "message": the job's last error, else its open
 * anomaly codes, else the reason of its last event.  A new array, or
 * NULL when the store cannot be read.
 */
static json_t *last_errors(watch *w)
{
    static const char *const states[] = {RK_ST_FAILED, RK_ST_RETRY_WAIT};
    json_t *rows[2 * WATCH_ERRORS];
    size_t n = 0;
    for (size_t k = 0; k < 2; k++) {
        rk_list_filter f;
        memset(&f, 0, sizeof f);
        f.state = states[k];
        f.limit = WATCH_ERRORS;
        json_t *page = rk_store_find_json(w->store, &f);
        if (!page) {
            while (n)
                json_decref(rows[--n]);
            return NULL;
        }
        size_t i;
        json_t *o;
        json_array_foreach(page, i, o) rows[n++] = json_incref(o);
        json_decref(page);
    }
    qsort(rows, n, sizeof rows[0], by_updated_desc);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        if (i < WATCH_ERRORS) {
            json_t *show = rk_store_show_json(w->store, jint(rows[i], "id"));
            const char *msg = show ? jstr(show, "last_error") : NULL;
            if (!msg || !*msg)
                msg = jstr(rows[i], "codes");
            if ((!msg || !*msg) && show) {
                json_t *evs = json_object_get(show, "events");
                msg = jstr(json_array_get(evs, json_array_size(evs) - 1), "reason");
            }
            json_object_set_new(rows[i], "message", json_string(msg && *msg ? msg : "-"));
            json_decref(show);
            json_array_append(out, rows[i]);
        }
        json_decref(rows[i]);
    }
    return out;
}

/* Overdue jobs (review or failed past their deadline), newest first:
 * the count in *count and the first ids as text in ids. */
static int overdue(watch *w, size_t *count, char *ids, size_t idslen)
{
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.overdue = 1;
    *count = 0;
    rk_buf b;
    rk_buf_init(&b, idslen ? idslen - 1 : 0);
    for (;;) {
        f.limit = 500;
        json_t *page = rk_store_find_json(w->store, &f);
        if (!page) {
            rk_buf_free(&b);
            return -1;
        }
        size_t i, n = json_array_size(page);
        json_t *o;
        json_array_foreach(page, i, o) {
            f.before_id = jint(o, "id");
            if (*count < WATCH_OVERDUE_IDS)
                rk_buf_appendf(&b, "%s%lld", *count ? ", " : "", jint(o, "id"));
            (*count)++;
        }
        json_decref(page);
        if (n < 500)
            break;
    }
    if (*count > WATCH_OVERDUE_IDS)
        rk_buf_appendf(&b, " und %zu weitere", *count - WATCH_OVERDUE_IDS);
    snprintf(ids, idslen, "%s", b.data ? b.data : "");
    rk_buf_free(&b);
    return 0;
}

/* ---- one frame ---------------------------------------------------------- */

/*
 * Builds one frame into b.  Returns 0, or -1 with the store's message in
 * b (the caller shows it: the live view keeps going, --once fails).
 */
static int frame_build(watch *w, rk_buf *b, size_t cols)
{
    int64_t now = rk_now_ms();
    char when[32], ids[256];
    json_t *st = rk_store_status_json(w->store);
    json_t *errs = st ? last_errors(w) : NULL;
    size_t n_overdue = 0;
    if (!st || !errs || overdue(w, &n_overdue, ids, sizeof ids) != 0 ||
        window_update(w, now) != 0) {
        rk_buf_appendf(b, "rekeyctl watch: %s kann nicht gelesen werden: %s\n", w->db,
                       rk_store_errmsg(w->store));
        json_decref(st);
        json_decref(errs);
        return -1;
    }
    long long rate[WATCH_NSTATES] = {0};
    for (size_t i = 0; i < w->n_ev; i++)
        if (w->ev[i].state >= 0 && w->ev[i].state < WATCH_NSTATES)
            rate[w->ev[i].state]++;

    fmt_local(now, when, sizeof when);
    const char *title = "rekey – Warteschlange";
    put_left(b, title, cols > 20 + 19 + 2 ? cols - 20 : text_width(title) + 2);
    rk_buf_appendf(b, "%s\n", when);
    rk_buf_append(b, "Datenbank: ", strlen("Datenbank: "));
    put_safe(b, w->db, cols > 12 ? cols - 11 : 1);
    rk_buf_append(b, "\n", 1);
    if (!w->once)
        rk_buf_appendf(b, "Aktualisierung alle %d s; beenden mit q oder Strg-C\n", w->interval_s);
    rk_buf_append(b, "\n", 1);

    /* counts per state and the transitions of the last minute */
    const json_t *by_state = json_object_get(st, "by_state");
    const size_t lw = 28;
    put_left(b, "Status", lw);
    rk_buf_appendf(b, "%8s  %s\n", "Anzahl", now < w->capped_until ? "letzte Minute (mindestens)"
                                                           : "letzte Minute");
    for (int i = 0; rk_states[i] && i < WATCH_NSTATES; i++) {
        put_left(b, rk_state_german(rk_states[i]), lw);
        put_num(b, jint(by_state, rk_states[i]), 8);
        rk_buf_appendf(b, "  %13lld\n", rate[i]);
    }
    put_left(b, "gesamt", lw);
    put_num(b, jint(st, "total"), 8);
    rk_buf_append(b, "\n\n", 2);

    /* per job: what needs a person, and what went through */
    const json_t *by_job = json_object_get(st, "by_job");
    if (json_object_size(by_job) > 0) {
        put_left(b, "Verfahren", lw);
        rk_buf_appendf(b, "%8s  %11s  %14s  %10s\n", "gesamt", "zur Klärung", "fehlgeschlagen",
                       "übertragen");
        const char *job;
        const json_t *counts;
        json_object_foreach((json_t *)by_job, job, counts) {
            long long total = 0;
            const char *k;
            const json_t *v;
            json_object_foreach((json_t *)counts, k, v) total += json_integer_value(v);
            size_t before = b->len;
            put_safe(b, job, lw - 1);
            size_t used = text_width(b->data + before);
            for (; used < lw; used++)
                rk_buf_append(b, " ", 1);
            rk_buf_appendf(b, "%8lld  %11lld  %14lld  %10lld\n", total,
                           jint(counts, RK_ST_REVIEW), jint(counts, RK_ST_FAILED),
                           jint(counts, RK_ST_DELIVERED));
        }
        rk_buf_append(b, "\n", 1);
    }

    /* what needs a person first */
    if (n_overdue)
        rk_buf_appendf(b, "Frist überschritten: %zu (Anträge %s)\n", n_overdue, ids);
    else
        rk_buf_appendf(b, "Frist überschritten: keine\n");
    const json_t *paused = json_object_get(st, "paused");
    if (json_array_size(paused) == 0) {
        rk_buf_appendf(b, "Angehaltene Anbindungen: keine\n");
    } else {
        rk_buf_appendf(b, "Angehaltene Anbindungen: %zu\n", json_array_size(paused));
        size_t i;
        const json_t *p;
        json_array_foreach(paused, i, p) {
            rk_buf_append(b, "  ", 2);
            size_t before = b->len;
            rk_buf_appendf(b, "%s / %s: ", jstr(p, "job") ? jstr(p, "job") : "?",
                           jstr(p, "connector") ? jstr(p, "connector") : "?");
            size_t used = 2 + text_width(b->data + before);
            put_safe(b, jstr(p, "reason"), cols > used + 10 ? cols - used : 10);
            rk_buf_append(b, "\n", 1);
        }
    }
    rk_buf_append(b, "\n", 1);

    /* the last errors */
    if (json_array_size(errs) == 0) {
        rk_buf_appendf(b, "Letzte Fehler: keine\n");
    } else {
        rk_buf_appendf(b, "Letzte Fehler\n");
        size_t jw = 10, sw = 6; /* the widths of the headers */
        size_t i;
        const json_t *e;
        json_array_foreach(errs, i, e) {
            const char *job = jstr(e, "job") ? jstr(e, "job") : "-";
            const char *state = rk_state_german(jstr(e, "state"));
            if (text_width(job) > jw)
                jw = text_width(job) > 24 ? 24 : text_width(job);
            if (text_width(state) > sw)
                sw = text_width(state);
        }
        /* the message on a line of its own, so it gets the whole width */
        rk_buf_appendf(b, "  %6s  ", "ID");
        put_left(b, "Antragsart", jw + 2);
        put_left(b, "Status", sw + 2);
        rk_buf_appendf(b, "Zeit / Meldung\n");
        json_array_foreach(errs, i, e) {
            char t[32];
            fmt_local(iso_to_ms(jstr(e, "updated_at")), t, sizeof t);
            rk_buf_appendf(b, "  %6lld  ", jint(e, "id"));
            size_t before = b->len;
            put_safe(b, jstr(e, "job"), jw);
            for (size_t used = text_width(b->data + before); used < jw + 2; used++)
                rk_buf_append(b, " ", 1);
            put_left(b, rk_state_german(jstr(e, "state")), sw + 2);
            rk_buf_appendf(b, "%s\n%10s", t, "");
            put_safe(b, jstr(e, "message"), cols > 10 + 20 ? cols - 10 : 20);
            rk_buf_append(b, "\n", 1);
        }
    }
    json_decref(st);
    json_decref(errs);
    return 0;
}

/* ---- the command -------------------------------------------------------- */

static int usage_error(watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(watch *w, const char *fmt, ...)
{
    va_list ap;
    fputs("rekeyctl: ", w->err);
    va_start(ap, fmt);
    vfprintf(w->err, fmt, ap);
    va_end(ap);
    fputs("\nsee `rekeyctl watch --help`\n", w->err);
    return 2;
}

/* Parses the options of watch (argv[0] is "watch"): --name VALUE or
 * --name=VALUE.  Returns 0, 2 after a usage error, or -1 for --help. */
static int watch_parse(watch *w, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return -1;
        if (strcmp(a, "--once") == 0) {
            w->once = 1;
            continue;
        }
        const char *names[] = {"--db", "--config", "--interval"};
        int o = -1;
        const char *val = NULL;
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(a, names[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                o = k;
                if (a[n] == '=')
                    val = a + n + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    return usage_error(w, "option %s needs a value", names[k]);
            }
        }
        if (o < 0)
            return usage_error(w, a[0] == '-' ? "unknown option '%s' for watch"
                                              : "watch takes no arguments, got '%s'",
                               a);
        if (!*val)
            return usage_error(w, "%s needs a value, got an empty string", names[o]);
        if (o == 0) {
            w->db = val;
            w->db_default = 0;
        } else if (o == 1) {
            w->config = val;
        } else {
            int64_t n;
            if (rk_parse_int64(val, &n) != 0 || n < 1 || n > WATCH_MAX_INTERVAL)
                return usage_error(w, "--interval needs whole seconds from 1 to %d, got '%s'",
                                   WATCH_MAX_INTERVAL, val);
            w->interval_s = (int)n;
        }
    }
    return 0;
}

/* Opens the store read-only: --db, else the database of --config, else
 * $REKEY_DB, else ./rekey.db.  Prints why not; 0 or 1. */
static int watch_open(watch *w, int db_given)
{
    char err[1024] = "";
    if (w->config) {
        memset(&w->cfg, 0, sizeof w->cfg);
        if (rk_config_load(w->config, &w->cfg, err, sizeof err) != 0) {
            fprintf(w->err, "rekeyctl: %s\n", *err ? err : "the configuration cannot be read");
            return 1;
        }
        w->have_cfg = 1;
        if (!db_given) {
            w->db = w->cfg.database;
            w->db_default = 0;
        }
    }
    int rc = rk_store_open(w->db, RK_STORE_READONLY, &w->store, err, sizeof err);
    if (rc) {
        fprintf(w->err, "rekeyctl: %s\n", *err ? err : rk_strerror(rc));
        if (w->db_default)
            fputs("rekeyctl: name the database with --db PATH, --config FILE or the REKEY_DB "
                  "variable\n",
                  w->err);
        w->store = NULL;
        return 1;
    }
    return 0;
}

/*
 * Waits up to ms for a key, a signal or a resize.  Returns 1 when the
 * view should end (q, Ctrl-C, SIGTERM, end of input is not one of them:
 * a closed stdin only stops the reading of keys).
 */
static int wait_key(int *stdin_open, int ms)
{
    int64_t end = rk_now_ms() + ms;
    while (!watch_stop && !watch_resized) {
        int64_t left = end - rk_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&p, *stdin_open ? 1 : 0, (int)left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (r == 0)
            return 0;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char keys[64];
            ssize_t n = read(STDIN_FILENO, keys, sizeof keys);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                *stdin_open = 0; /* end of input: keep showing, stop reading */
                continue;
            }
            for (ssize_t i = 0; i < n; i++)
                if (keys[i] == 'q' || keys[i] == 'Q' || keys[i] == 3 /* ^C without ISIG */)
                    return 1;
        }
    }
    return 1 - watch_resized; /* a resize redraws at once */
}

/*
 * The live view: raw keys on a terminal, SIGINT/SIGTERM end it, SIGWINCH
 * redraws.  Everything it changed is put back before it returns.
 */
static int watch_live(watch *w)
{
    struct termios saved, raw;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    struct sigaction sa, old_int, old_term, old_winch;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop_signal; /* no SA_RESTART: poll returns at once */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, &old_winch);
    watch_stop = watch_resized = 0;

    int stdin_open = 1;
    fputs("\033[?25l", w->out); /* hide the cursor while drawing */
    while (!watch_stop) {
        watch_resized = 0;
        rk_buf b;
        rk_buf_init(&b, WATCH_FRAME_MAX);
        rk_buf_append(&b, "\033[H\033[2J", 7); /* home, clear screen */
        frame_build(w, &b, term_cols(fileno(w->out)));
        fwrite(b.data, 1, b.len, w->out);
        fflush(w->out);
        rk_buf_free(&b);
        if (wait_key(&stdin_open, w->interval_s * 1000))
            break;
    }
    fputs("\033[?25h\n", w->out);
    fflush(w->out);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGWINCH, &old_winch, NULL);
    if (tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    return 0;
}

int rk_watch_main(int argc, char **argv, FILE *out, FILE *err)
{
    watch w;
    memset(&w, 0, sizeof w);
    w.out = out;
    w.err = err;
    w.interval_s = WATCH_DEFAULT_INTERVAL;
    const char *env = getenv("REKEY_DB");
    w.db = env && *env ? env : "./rekey.db";
    w.db_default = !(env && *env);
    int rc = watch_parse(&w, argc, argv);
    if (rc < 0) {
        fputs(usage_watch, out);
        return 0;
    }
    if (rc)
        return rc;
    int db_given = 0;
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--db", 4) == 0 && (argv[i][4] == '\0' || argv[i][4] == '='))
            db_given = 1;
    rc = watch_open(&w, db_given);
    if (rc == 0) {
        if (w.once) {
            rk_buf b;
            rk_buf_init(&b, WATCH_FRAME_MAX);
            if (frame_build(&w, &b, term_cols(fileno(out))) != 0) {
                fputs(b.data, err);
                rc = 1;
            } else {
                fwrite(b.data, 1, b.len, out);
            }
            rk_buf_free(&b);
        } else {
            rc = watch_live(&w);
        }
    }
    if (w.store)
        rk_store_close(w.store);
    if (w.have_cfg)
        rk_config_free(&w.cfg);
    free(w.ev);
    return rc;
}
