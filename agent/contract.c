/*
 * contract.c — `rekeyctl connector-test PLUGIN.so`: see contract.h.
 *
 * The plugin is loaded with the host's own loader (rk_plugin_load with a
 * path, so the same checks as in rekeyd apply) and its settings are
 * checked with the host's rk_settings_check.  The callbacks, however, are
 * called directly rather than through rk_conn_open/rk_conn_deliver: the
 * host re-terminates messages and logs through rekeyd's logger, and this
 * test wants to see exactly what the plugin wrote (a missing NUL, bytes
 * past the buffer) and everything it logs (to look for secrets).
 *
 * What is measured for leaks: after one warm-up cycle, N cycles of
 * open+close, then the number of open descriptors (/proc/self/fd), of
 * threads (/proc/self/task) and the heap in use (glibc's mallinfo2
 * uordblks).  Descriptors and threads must come back exactly; the heap
 * may grow by CT_HEAP_SLACK at most.  Under AddressSanitizer the heap is
 * not measured here (ASan has its own allocator); LeakSanitizer reports
 * leaks when the process exits instead (make check-asan).
 *
 * Secrets: every value this program prints passes through ct_say, which
 * replaces the values of secret settings (and the marker values of the
 * secrets check) by "***"; the secrets check then fails if any text the
 * connector produced (log lines, open errors, messages, target ids)
 * contained one.  Values shorter than CT_SECRET_MIN bytes are not
 * searched (a secret "1" would match everywhere).
 */
#include "contract.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "connector.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define CT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CT_ASAN 1
#endif
#endif
#ifndef CT_ASAN
#define CT_ASAN 0
#endif

#define CT_MSG_SIZE 2048          /* what the host hands deliver() */
#define CT_TID_SIZE 256
#define CT_ERR_SIZE 1024
#define CT_GUARD 64               /* guard bytes after each buffer */
#define CT_CYCLES 50
#define CT_HEAP_SLACK (64 * 1024) /* heap growth tolerated over all cycles */
#define CT_SECRET_MIN 4
#define CT_CAPTURE_MAX (4u * 1024 * 1024)
#define CT_SHOW 160               /* connector messages are cut to this in lines */

enum { CT_EXIT_OK = 0, CT_EXIT_FAIL = 1, CT_EXIT_USAGE = 2 };

static const char ct_usage[] =
    "usage: rekeyctl connector-test PLUGIN.so [--set KEY=VALUE]... [--job NAME]\n"
    "                               [--cycles N] [--json] [--verbose]\n"
    "\n"
    "Loads a connector plugin outside the daemon and checks the contract rekeyd\n"
    "relies on: ABI version and descriptor size, name, settings table, refusal\n"
    "of unknown and missing required settings, open/deliver/close with valid\n"
    "result codes and terminated messages, a repeated idempotency key, a NULL\n"
    "and a non-ASCII value, secrets never shown, no leaks over N open/close\n"
    "cycles.  One line per check, \"ok\" or \"FAIL\", then \"N passed, N failed\".\n"
    "\n"
    "It delivers up to five test records into the target the settings name:\n"
    "point it at a test target.\n"
    "\n"
    "  --set KEY=VALUE  a setting for open, as <set key=\"KEY\">VALUE</set> in a\n"
    "                   job (repeat for each setting)\n"
    "  --job NAME       the job name the connector is opened for (default contract)\n"
    "  --cycles N       open/close cycles of the leak check (default 50)\n"
    "  --json           print one JSON object only\n"
    "  --verbose        also print what the connector logs (secrets as ***)\n"
    "\n"
    "Exit status: 0 every check passed; 1 a check failed; 2 usage error.\n";

typedef struct ct {
    FILE *out, *err;
    int json, verbose;
    json_t *checks;           /* --json: the array of checks */
    int passed, failed;
    char plugin_path[PATH_MAX];
    const char *job;
    int cycles;
    rk_setting *set;          /* --set, copies */
    size_t n_set;
    const rk_connector *d;
    char **secrets;           /* values to hide and look for (copies) */
    size_t n_secrets;
    int redacted;             /* ct_say had to hide a secret */
    int scan_only;            /* leak cycles: search text at once, keep nothing */
    int leaked;               /* a secret was found while scan_only */
    pthread_mutex_t lock;     /* guards captured and printing */
    rk_buf captured;          /* everything the connector said */
    unsigned seq;             /* makes record keys unique within a run */
    char run[33];             /* random hex, unique per run */
} ct;

/* ---- output ------------------------------------------------------------- */

/* Copies text into a new string with every secret replaced by "***";
 * *hit is set when one was found.  Caller frees. */
static char *ct_redact(const ct *c, const char *text, int *hit)
{
    rk_buf b;
    rk_buf_init(&b, strlen(text) + 1);
    const char *p = text;
    while (*p) {
        size_t best = 0;
        for (size_t i = 0; i < c->n_secrets; i++) {
            size_t n = strlen(c->secrets[i]);
            if (n >= CT_SECRET_MIN && strncmp(p, c->secrets[i], n) == 0 && n > best)
                best = n;
        }
        if (best) {
            rk_buf_append(&b, "***", 3);
            p += best;
            *hit = 1;
        } else {
            rk_buf_append(&b, p, 1);
            p++;
        }
    }
    char *s = rk_buf_take(&b);
    return s ? s : strdup("");
}

static int ct_say(ct *c, int ok, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Reports one check: "ok   CHECK: DETAIL" or "FAIL CHECK: DETAIL" (or an
 * entry of the JSON array), with secrets hidden.  Returns ok, so callers
 * can write `return ct_say(...)`.
 */
static int ct_say(ct *c, int ok, const char *check, const char *fmt, ...)
{
    char raw[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    int hit = 0;
    char *detail = ct_redact(c, raw, &hit);
    if (hit)
        c->redacted = 1;
    if (ok)
        c->passed++;
    else
        c->failed++;
    pthread_mutex_lock(&c->lock);
    if (c->json) {
        json_array_append_new(c->checks, json_pack("{s:s, s:b, s:s}", "check", check, "ok", ok,
                                                   "detail", detail));
    } else {
        fprintf(c->out, "%s %s: %s\n", ok ? "ok  " : "FAIL", check, detail);
        fflush(c->out); /* a crash in the next check must not lose this line */
    }
    pthread_mutex_unlock(&c->lock);
    free(detail);
    return ok;
}

/* Keeps text the connector produced, for the secrets check. */
static void ct_capture(ct *c, const char *what, const char *text)
{
    if (c->scan_only) {
        /* keeping it would grow the heap the leak check measures */
        int hit = 0;
        free(ct_redact(c, text, &hit));
        if (hit)
            c->leaked = 1;
        return;
    }
    pthread_mutex_lock(&c->lock);
    rk_buf_appendf(&c->captured, "%s: %s\n", what, text);
    pthread_mutex_unlock(&c->lock);
}

/* The log callback handed to open(): captures every line and, with
 * --verbose, prints it (secrets hidden).  Any thread may call it. */
static void ct_log(void *ctx, int level, const char *message)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    ct *c = ctx;
    const char *lv = names[level < 0 ? 0 : level > 3 ? 3 : level];
    const char *m = message ? message : "";
    ct_capture(c, "log", m);
    if (c->verbose && !c->json) {
        int hit = 0;
        char *shown = ct_redact(c, m, &hit);
        pthread_mutex_lock(&c->lock);
        fprintf(c->out, "     log %s: %s\n", lv, shown);
        fflush(c->out);
        pthread_mutex_unlock(&c->lock);
        free(shown);
    }
}

/* A connector message cut for a report line, control characters as '?'. */
static void ct_show(char *dst, size_t dstsize, const char *msg)
{
    size_t i = 0;
    for (; msg[i] && i + 4 < dstsize && i < CT_SHOW; i++)
        dst[i] = (unsigned char)msg[i] < 0x20 ? '?' : msg[i];
    if (msg[i] && i + 4 < dstsize) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

/* ---- crashes ------------------------------------------------------------ */

/* The check in progress, for the crash message.  A plugin that crashes
 * takes this process with it; the handler names the check, then the
 * signal's default action runs (SA_RESETHAND).  Not installed under
 * AddressSanitizer, which reports crashes better itself. */
static const char *volatile ct_current = "load";

static void ct_on_crash(int sig)
{
    static const char a[] = "rekeyctl connector-test: the connector crashed during check '";
    static const char b[] = "'\n";
    const char *cur = ct_current;
    if (write(STDERR_FILENO, a, sizeof a - 1) < 0 ||
        write(STDERR_FILENO, cur, strlen(cur)) < 0 || write(STDERR_FILENO, b, sizeof b - 1) < 0) {
        /* nothing more can be done in a signal handler */
    }
    raise(sig);
}

/* ---- settings ----------------------------------------------------------- */

/* A copy of the --set list with key dropped (drop) or set to value
 * (value != NULL, added when absent).  The strings are shared with c->set
 * except the new value; free with ct_settings_free(list, n, value). */
static rk_setting *ct_settings_variant(const ct *c, const char *key, const char *value,
                                       size_t *n_out)
{
    rk_setting *v = calloc(c->n_set + 1, sizeof *v);
    if (!v)
        return NULL;
    size_t n = 0;
    int replaced = 0;
    for (size_t i = 0; i < c->n_set; i++) {
        if (key && strcmp(c->set[i].key, key) == 0) {
            if (!value)
                continue;
            v[n].key = c->set[i].key;
            v[n++].value = (char *)value;
            replaced = 1;
            continue;
        }
        v[n++] = c->set[i];
    }
    if (key && value && !replaced) {
        v[n].key = (char *)key;
        v[n++].value = (char *)value;
    }
    *n_out = n;
    return v;
}

/*
 * Checks settings with the host's rules and calls the plugin's open()
 * with this test's log callback.  Returns 0 and the instance (plus the
 * checked settings in *kv, which the caller frees after close), -1 when
 * the host refused the settings, 1 when open() refused; err says why.
 */
static int ct_open(ct *c, const rk_setting *s, size_t n, void **inst, rk_kv **kv, size_t *nkv,
                   char *err, size_t errlen)
{
    *inst = NULL;
    if (rk_settings_check(c->d, s, n, kv, nkv, err, errlen) != 0)
        return -1;
    rk_connector_open_args args = {
        .struct_size = sizeof args,
        .abi_version = RK_CONNECTOR_ABI_VERSION,
        .job_name = c->job,
        .settings = *kv,
        .n_settings = *nkv,
        .log = ct_log,
        .log_ctx = c,
    };
    char perr[CT_ERR_SIZE];
    memset(perr, 0, sizeof perr);
    if (c->d->open(&args, inst, perr, sizeof perr) != 0) {
        perr[sizeof perr - 1] = '\0';
        ct_capture(c, "open error", perr);
        char shown[CT_SHOW + 8];
        ct_show(shown, sizeof shown, perr[0] ? perr : "no reason given");
        snprintf(err, errlen, "%s", shown);
        rk_settings_free(*kv, *nkv);
        *kv = NULL;
        *nkv = 0;
        return 1;
    }
    return 0;
}

/* ---- deliveries --------------------------------------------------------- */

typedef struct ct_answer {
    int status;
    char msg[CT_MSG_SIZE + CT_GUARD];
    char tid[CT_TID_SIZE + CT_GUARD];
    const char *problem; /* NULL, or what the plugin did wrong with the buffers */
} ct_answer;

static const char *ct_status_name(int st)
{
    switch (st) {
    case RK_DELIVER_OK: return "OK";
    case RK_DELIVER_RETRY: return "RETRY";
    case RK_DELIVER_PERMANENT: return "PERMANENT";
    case RK_DELIVER_FATAL: return "FATAL";
    default: return "an invalid status";
    }
}

/* Checks that buf (size bytes, then CT_GUARD guard bytes) holds a NUL
 * within size and that the guard is untouched. */
static const char *ct_buffer_problem(const char *buf, size_t size, const char *what_nul,
                                     const char *what_past)
{
    for (size_t i = 0; i < CT_GUARD; i++)
        if ((unsigned char)buf[size + i] != 0xa5)
            return what_past;
    if (!memchr(buf, '\0', size))
        return what_nul;
    return NULL;
}

/*
 * One delivery, straight into the plugin, with buffers prepared so that
 * a missing NUL or a write past the end shows: the message starts empty
 * (as the ABI promises) and its remaining bytes are not NUL, and guard
 * bytes follow each buffer.
 */
static void ct_deliver(ct *c, void *inst, const rk_record *rec, ct_answer *a)
{
    memset(a->msg, 0x5a, CT_MSG_SIZE);
    memset(a->msg + CT_MSG_SIZE, 0xa5, CT_GUARD);
    memset(a->tid, 0x5a, CT_TID_SIZE);
    memset(a->tid + CT_TID_SIZE, 0xa5, CT_GUARD);
    a->msg[0] = '\0';
    a->tid[0] = '\0';
    rk_deliver_result res = {
        .struct_size = sizeof res,
        .message = a->msg,
        .message_size = CT_MSG_SIZE,
        .retry_after_ms = -1,
        .target_id = a->tid,
        .target_id_size = CT_TID_SIZE,
    };
    a->status = (int)c->d->deliver(inst, rec, &res);
    a->problem = NULL;
    if (a->status < RK_DELIVER_OK || a->status > RK_DELIVER_FATAL)
        a->problem = "answered a status outside the enum";
    if (!a->problem)
        a->problem = ct_buffer_problem(a->msg, CT_MSG_SIZE, "left the message without a NUL",
                                       "wrote past message_size");
    if (!a->problem)
        a->problem = ct_buffer_problem(a->tid, CT_TID_SIZE, "left the target id without a NUL",
                                       "wrote past target_id_size");
    /* from here on the buffers are read as strings */
    a->msg[CT_MSG_SIZE - 1] = '\0';
    a->tid[CT_TID_SIZE - 1] = '\0';
    ct_capture(c, "message", a->msg);
    ct_capture(c, "target id", a->tid);
}

/* A test record: three fields, a key unique to this run ("<32 hex>:JOB",
 * the host's format), a submission id unique to it too.  Strings live in
 * the caller's buffers. */
typedef struct ct_rec {
    char key[160];
    char sub[24];
    rk_kv fields[3];
    rk_record rec;
} ct_rec;

static void ct_rec_make(ct *c, ct_rec *r, const char *name, const char *ort, const char *hinweis)
{
    unsigned n = ++c->seq;
    snprintf(r->key, sizeof r->key, "%.24s%08x:%s", c->run, n, c->job);
    unsigned long long base = 0; /* the first 7 hex digits of the run: < 2^28 */
    for (int i = 0; i < 7; i++) {
        char h = c->run[i];
        base = base * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h - '0');
    }
    snprintf(r->sub, sizeof r->sub, "%llu", base * 16 + n);
    r->fields[0] = (rk_kv){"name", name};
    r->fields[1] = (rk_kv){"ort", ort};
    r->fields[2] = (rk_kv){"hinweis", hinweis};
    r->rec = (rk_record){
        .struct_size = sizeof(rk_record),
        .idempotency_key = r->key,
        .submission_id = r->sub,
        .job_name = c->job,
        .fields = r->fields,
        .n_fields = 3,
    };
}

/*
 * Reports one delivery.  want_ok: only OK passes; otherwise OK or
 * PERMANENT with a message (a target may refuse a NULL, say) passes.
 * Returns 1 when the check passed.
 */
static int ct_report(ct *c, const char *check, const ct_answer *a, int want_ok)
{
    char shown[CT_SHOW + 8], tid[CT_SHOW + 8];
    ct_show(shown, sizeof shown, a->msg);
    ct_show(tid, sizeof tid, a->tid);
    if (a->problem)
        return ct_say(c, 0, check, "the connector %s (status %d)", a->problem, a->status);
    if (a->status == RK_DELIVER_OK)
        return ct_say(c, 1, check, "OK, message '%s', target id '%s'", shown, tid);
    if (!want_ok && a->status == RK_DELIVER_PERMANENT && a->msg[0])
        return ct_say(c, 1, check, "PERMANENT with a message: '%s'", shown);
    return ct_say(c, 0, check, "answered %s%s: '%s'", ct_status_name(a->status),
                  a->status == RK_DELIVER_PERMANENT && !a->msg[0] ? " without a message" : "",
                  shown);
}

/* ---- leaks -------------------------------------------------------------- */

/* Entries of a /proc folder (without . and ..); -1 when unreadable.  For
 * /proc/self/fd the descriptor of the listing itself is left out. */
static long ct_count(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    if (strcmp(path, "/proc/self/fd") == 0)
        n--;
    closedir(d);
    return n;
}

/* Heap bytes in use; -1 when not measurable (AddressSanitizer). */
static long long ct_heap(void)
{
#if CT_ASAN
    return -1;
#else
    struct mallinfo2 mi = mallinfo2();
    return (long long)mi.uordblks;
#endif
}

/* One open+close with the given settings; 0, or -1 when open failed
 * (err says why). */
static int ct_cycle(ct *c, char *err, size_t errlen)
{
    void *inst;
    rk_kv *kv = NULL;
    size_t nkv = 0;
    if (ct_open(c, c->set, c->n_set, &inst, &kv, &nkv, err, errlen) != 0)
        return -1;
    c->d->close(inst);
    rk_settings_free(kv, nkv);
    return 0;
}

static void ct_check_leaks(ct *c)
{
    char err[CT_ERR_SIZE];
    ct_current = "leaks";
    if (ct_cycle(c, err, sizeof err) != 0) {
        ct_say(c, 0, "leaks", "open failed in the warm-up cycle: %s", err);
        return;
    }
    c->scan_only = 1;
    long fd0 = ct_count("/proc/self/fd"), th0 = ct_count("/proc/self/task");
    long long heap0 = ct_heap();
    int failed_at = 0;
    for (int i = 0; i < c->cycles && !failed_at; i++)
        if (ct_cycle(c, err, sizeof err) != 0)
            failed_at = i + 1;
    c->scan_only = 0;
    if (failed_at) {
        ct_say(c, 0, "leaks", "open failed in cycle %d of %d: %s", failed_at, c->cycles, err);
        return;
    }
    long fd1 = ct_count("/proc/self/fd"), th1 = ct_count("/proc/self/task");
    long long heap1 = ct_heap();
    char heap[96];
    if (heap0 < 0)
        snprintf(heap, sizeof heap, "heap not measured under AddressSanitizer (LeakSanitizer "
                                    "reports at exit)");
    else
        snprintf(heap, sizeof heap, "heap %+lld bytes", heap1 - heap0);
    int ok = fd1 == fd0 && th1 == th0 && (heap0 < 0 || heap1 - heap0 <= CT_HEAP_SLACK);
    ct_say(c, ok, "leaks", "%d x open/close: open fds %ld -> %ld, threads %ld -> %ld, %s%s",
           c->cycles, fd0, fd1, th0, th1, heap,
           ok ? "" : heap0 >= 0 && heap1 - heap0 > CT_HEAP_SLACK
                         ? " (more than 64 KiB)" : "");
}

/* ---- the checks --------------------------------------------------------- */

static int ct_name_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.';
}

/* The settings table: names present, usable as --set keys and unique;
 * types in the enum; only known flags; defaults valid for their type;
 * help present.  The host refuses an unknown type at load already. */
static void ct_check_table(ct *c)
{
    ct_current = "settings table";
    size_t n = 0, req = 0, sec = 0;
    const rk_setting_decl *t = c->d->settings;
    for (; t && t->name; t++, n++) {
        const char *nm = t->name;
        for (const char *p = nm; *p; p++)
            if (!ct_name_char_ok(*p)) {
                ct_say(c, 0, "settings table", "setting '%.64s' has a character other than "
                                               "[A-Za-z0-9_.-] in its name", nm);
                return;
            }
        if (!nm[0]) {
            ct_say(c, 0, "settings table", "setting %zu has an empty name", n + 1);
            return;
        }
        for (const rk_setting_decl *u = c->d->settings; u != t; u++)
            if (strcmp(u->name, nm) == 0) {
                ct_say(c, 0, "settings table", "setting '%s' is declared twice", nm);
                return;
            }
        if (t->type != RK_SETTING_STRING && t->type != RK_SETTING_INT &&
            t->type != RK_SETTING_BOOL) {
            ct_say(c, 0, "settings table", "setting '%s' has unknown type %d", nm, (int)t->type);
            return;
        }
        if (t->flags & ~(RK_SETTING_REQUIRED | RK_SETTING_SECRET)) {
            ct_say(c, 0, "settings table", "setting '%s' has unknown flags 0x%x", nm,
                   (unsigned)t->flags);
            return;
        }
        if (t->default_value) {
            const char *v = t->default_value;
            int64_t iv;
            int bad = (t->type == RK_SETTING_INT &&
                       (!((v[0] >= '0' && v[0] <= '9') || v[0] == '-' || v[0] == '+') ||
                        rk_parse_int64(v, &iv) != 0)) ||
                      (t->type == RK_SETTING_BOOL && rk_parse_bool(v) < 0);
            if (bad) {
                ct_say(c, 0, "settings table", "the default of setting '%s' is not a valid %s",
                       nm, t->type == RK_SETTING_INT ? "integer" : "boolean");
                return;
            }
        }
        if (!t->help || !t->help[0]) {
            ct_say(c, 0, "settings table", "setting '%s' has no help text", nm);
            return;
        }
        req += (t->flags & RK_SETTING_REQUIRED) ? 1 : 0;
        sec += (t->flags & RK_SETTING_SECRET) ? 1 : 0;
    }
    ct_say(c, 1, "settings table",
           "%zu declared (%zu required, %zu secret): names unique, types and defaults valid, "
           "help present", n, req, sec);
}

/* The host's refusals: the given settings pass, an unknown key and each
 * missing required key (one without a default) are refused.  Returns 1
 * when the given settings pass (open can be tried). */
static int ct_check_refusals(ct *c)
{
    char err[CT_ERR_SIZE];
    rk_kv *kv;
    size_t nkv, n;
    ct_current = "given settings";
    int given_ok = rk_settings_check(c->d, c->set, c->n_set, &kv, &nkv, err, sizeof err) == 0;
    if (given_ok) {
        rk_buf keys;
        rk_buf_init(&keys, 512);
        for (size_t i = 0; i < c->n_set; i++)
            rk_buf_appendf(&keys, "%s%s", i ? ", " : "", c->set[i].key);
        ct_say(c, 1, "given settings", "%zu accepted%s%s%s", c->n_set, c->n_set ? " (" : "",
               keys.len ? keys.data : "", c->n_set ? ")" : "");
        rk_buf_free(&keys);
        rk_settings_free(kv, nkv);
    } else {
        ct_say(c, 0, "given settings", "%s", err);
    }

    ct_current = "unknown key";
    rk_setting *v = ct_settings_variant(c, "rk_contract_unknown", "1", &n);
    if (v) {
        if (rk_settings_check(c->d, v, n, &kv, &nkv, err, sizeof err) == 0) {
            rk_settings_free(kv, nkv);
            ct_say(c, 0, "unknown key", "a setting 'rk_contract_unknown' was accepted");
        } else if (!strstr(err, "rk_contract_unknown")) {
            ct_say(c, 0, "unknown key", "refused, but the message does not name the key: %s",
                   err);
        } else {
            ct_say(c, 1, "unknown key", "refused: %s", err);
        }
        free(v);
    }

    ct_current = "required keys";
    int any = 0;
    for (const rk_setting_decl *t = c->d->settings; t && t->name; t++) {
        if (!(t->flags & RK_SETTING_REQUIRED) || t->default_value)
            continue;
        any = 1;
        char check[96];
        snprintf(check, sizeof check, "required '%.64s'", t->name);
        v = ct_settings_variant(c, t->name, NULL, &n);
        if (!v)
            break;
        if (rk_settings_check(c->d, v, n, &kv, &nkv, err, sizeof err) == 0) {
            rk_settings_free(kv, nkv);
            ct_say(c, 0, check, "missing, but the settings were accepted");
        } else if (!strstr(err, t->name)) {
            ct_say(c, 0, check, "missing: refused, but the message does not name it: %s", err);
        } else {
            ct_say(c, 1, check, "missing: refused: %s", err);
        }
        free(v);
    }
    if (!any)
        ct_say(c, 1, "required keys", "none declared without a default");
    return given_ok;
}

/*
 * ABI 1.1 deliver_batch, when the plugin offers it: three records in one
 * call, the third with the first one's key.  Each answer must be a valid
 * status with terminated buffers not written past; the first must be OK
 * (as a single delivery of a fresh record must); a repeated key that is
 * OK twice must name the same target id.  The host's buffers are
 * prepared as for one delivery (ct_deliver) and every status starts as
 * RETRY, as rekeyd hands them.
 */
static void ct_check_batch(ct *c, void *inst)
{
    ct_current = "deliver_batch";
    if (!RK_CONNECTOR_HAS_BATCH(c->d)) {
        ct_say(c, 1, "deliver_batch", "not offered: rekeyd delivers one record at a time");
        return;
    }
    enum { N = 3 };
    ct_answer *a = calloc(N, sizeof *a);
    ct_rec *r = calloc(N, sizeof *r);
    if (!a || !r) {
        ct_say(c, 0, "deliver_batch", "out of memory in the test");
        free(a);
        free(r);
        return;
    }
    ct_rec_make(c, &r[0], "Stapel", "Hamburg", "batch record 1");
    ct_rec_make(c, &r[1], "Reihe", "Bremen", "batch record 2");
    ct_rec_make(c, &r[2], "Stapel", "Hamburg", "batch record 1 again");
    memcpy(r[2].key, r[0].key, sizeof r[2].key);
    const rk_record *rp[N];
    rk_deliver_result res[N];
    rk_deliver_result *resp[N];
    rk_deliver_status st[N];
    for (int i = 0; i < N; i++) {
        r[i].rec.idempotency_key = r[i].key;
        r[i].rec.submission_id = r[i].sub;
        r[i].rec.fields = r[i].fields;
        rp[i] = &r[i].rec;
        memset(a[i].msg, 0x5a, CT_MSG_SIZE);
        memset(a[i].msg + CT_MSG_SIZE, 0xa5, CT_GUARD);
        memset(a[i].tid, 0x5a, CT_TID_SIZE);
        memset(a[i].tid + CT_TID_SIZE, 0xa5, CT_GUARD);
        a[i].msg[0] = '\0';
        a[i].tid[0] = '\0';
        res[i] = (rk_deliver_result){sizeof res[i], a[i].msg, CT_MSG_SIZE, -1, a[i].tid,
                                     CT_TID_SIZE};
        resp[i] = &res[i];
        st[i] = RK_DELIVER_RETRY;
    }
    c->d->deliver_batch(inst, N, rp, resp, st);
    const char *problem = NULL;
    int bad = -1;
    for (int i = 0; i < N && !problem; i++) {
        a[i].status = (int)st[i];
        if (a[i].status < RK_DELIVER_OK || a[i].status > RK_DELIVER_FATAL)
            problem = "answered a status outside the enum";
        if (!problem)
            problem = ct_buffer_problem(a[i].msg, CT_MSG_SIZE, "left a message without a NUL",
                                        "wrote past message_size");
        if (!problem)
            problem = ct_buffer_problem(a[i].tid, CT_TID_SIZE,
                                        "left a target id without a NUL",
                                        "wrote past target_id_size");
        if (problem)
            bad = i;
        a[i].msg[CT_MSG_SIZE - 1] = '\0';
        a[i].tid[CT_TID_SIZE - 1] = '\0';
        ct_capture(c, "message", a[i].msg);
        ct_capture(c, "target id", a[i].tid);
    }
    char shown[CT_SHOW + 8];
    if (problem) {
        ct_say(c, 0, "deliver_batch", "record %d: the connector %s", bad + 1, problem);
    } else if (a[0].status != RK_DELIVER_OK) {
        ct_show(shown, sizeof shown, a[0].msg);
        ct_say(c, 0, "deliver_batch", "record 1 answered %s: '%s'", ct_status_name(a[0].status),
               shown);
    } else if (a[2].status == RK_DELIVER_OK && a[0].tid[0] && a[2].tid[0] &&
               strcmp(a[0].tid, a[2].tid) != 0) {
        ct_say(c, 0, "deliver_batch", "the repeated key got target id '%.64s', the first "
                                      "delivery '%.64s'", a[2].tid, a[0].tid);
    } else {
        ct_say(c, 1, "deliver_batch", "%d records in one call: %s, %s, %s (the third with the "
                                      "first one's key)", N, ct_status_name(a[0].status),
               ct_status_name(a[1].status), ct_status_name(a[2].status));
    }
    free(a);
    free(r);
}

/* open, four deliveries, a batch when offered, close. */
static void ct_check_instance(ct *c)
{
    char err[CT_ERR_SIZE];
    void *inst;
    rk_kv *kv = NULL;
    size_t nkv = 0;
    ct_current = "open";
    int rc = ct_open(c, c->set, c->n_set, &inst, &kv, &nkv, err, sizeof err);
    if (rc != 0) {
        ct_say(c, 0, "open", "%s%s", rc < 0 ? "settings refused: " : "refused: ", err);
        return;
    }
    ct_say(c, 1, "open", "opened for job '%s'", c->job);

    ct_answer *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    ct_rec *r = malloc(sizeof *r);
    if (!a || !b || !r) {
        ct_say(c, 0, "deliver", "out of memory in the test");
    } else {
        ct_current = "deliver";
        ct_rec_make(c, r, "Mustermann", "Berlin", "rekey contract test");
        ct_deliver(c, inst, &r->rec, a);
        ct_report(c, "deliver", a, 1);

        ct_current = "same key again";
        ct_deliver(c, inst, &r->rec, b);
        if (!b->problem && a->status == RK_DELIVER_OK && b->status == RK_DELIVER_OK &&
            a->tid[0] && b->tid[0] && strcmp(a->tid, b->tid) != 0) {
            char t1[CT_SHOW + 8], t2[CT_SHOW + 8];
            ct_show(t1, sizeof t1, a->tid);
            ct_show(t2, sizeof t2, b->tid);
            ct_say(c, 0, "same key again",
                   "OK, but target id '%s' differs from the first delivery's '%s'", t2, t1);
        } else if (!b->problem && b->status == RK_DELIVER_PERMANENT && b->msg[0]) {
            char shown[CT_SHOW + 8];
            ct_show(shown, sizeof shown, b->msg);
            ct_say(c, 1, "same key again",
                   "PERMANENT with a message: '%s' (docs/connectors.md asks for OK)", shown);
        } else {
            ct_report(c, "same key again", b, 1);
        }

        ct_current = "NULL value";
        ct_rec_make(c, r, "Beispiel", NULL, "a field without value");
        ct_deliver(c, inst, &r->rec, a);
        ct_report(c, "NULL value", a, 0);

        ct_current = "non-ASCII value";
        ct_rec_make(c, r, "Müßig-Öztürk", "Köln", "äöü ÄÖÜ ß €");
        ct_deliver(c, inst, &r->rec, a);
        ct_report(c, "non-ASCII value", a, 0);

        ct_check_batch(c, inst);
    }
    free(a);
    free(b);
    free(r);

    ct_current = "close";
    c->d->close(inst);
    rk_settings_free(kv, nkv);
    ct_say(c, 1, "close", "returned");
}

/*
 * Secrets: for each secret setting, an open (and, if it opens, one
 * delivery) with a recognisable marker value in its place; then every
 * text the connector produced in the whole run is searched for the
 * markers and for the secret values given with --set.
 */
static void ct_check_secrets(ct *c)
{
    ct_current = "secrets";
    size_t n_secret = 0;
    rk_buf names;
    rk_buf_init(&names, 1024);
    for (const rk_setting_decl *t = c->d->settings; t && t->name; t++) {
        if (!(t->flags & RK_SETTING_SECRET))
            continue;
        n_secret++;
        char hex[17], marker[64];
        if (rk_random_hex(8, hex) != 0)
            snprintf(hex, sizeof hex, "%08x", (unsigned)getpid());
        snprintf(marker, sizeof marker, "rkSECRET%s", hex);
        char **grown = realloc(c->secrets, (c->n_secrets + 1) * sizeof *grown);
        if (!grown)
            break;
        c->secrets = grown;
        if (!(c->secrets[c->n_secrets] = strdup(marker)))
            break;
        c->n_secrets++;
        rk_buf_appendf(&names, "%s'%s'", names.len ? ", " : "", t->name);

        size_t n;
        rk_setting *v = ct_settings_variant(c, t->name, marker, &n);
        if (!v)
            break;
        void *inst;
        rk_kv *kv = NULL;
        size_t nkv = 0;
        char err[CT_ERR_SIZE];
        if (ct_open(c, v, n, &inst, &kv, &nkv, err, sizeof err) == 0) {
            ct_answer *a = malloc(sizeof *a);
            ct_rec *r = malloc(sizeof *r);
            if (a && r) {
                ct_rec_make(c, r, "Geheim", "Bonn", "secret marker run");
                ct_deliver(c, inst, &r->rec, a);
            }
            free(a);
            free(r);
            c->d->close(inst);
            rk_settings_free(kv, nkv);
        }
        free(v);
    }
    int hit = 0;
    char *scrubbed = ct_redact(c, c->captured.data ? c->captured.data : "", &hit);
    free(scrubbed);
    if (hit || c->redacted || c->leaked)
        ct_say(c, 0, "secrets",
               "a secret value (or the marker put in its place) appeared in what the connector "
               "logged or answered (shown here as ***)");
    else if (n_secret)
        ct_say(c, 1, "secrets", "%s never shown, also with a marker value in place", names.data);
    else
        ct_say(c, 1, "secrets", "no secret settings declared; logs and messages checked for "
                                "nothing");
    rk_buf_free(&names);
}

/* Loads the plugin and runs every check in order.  Returns 0 when the
 * plugin loaded. */
static int ct_run(ct *c)
{
    char err[CT_ERR_SIZE];
    ct_current = "load";
    rk_plugin *p = rk_plugin_load(NULL, c->plugin_path, err, sizeof err);
    if (!p) {
        ct_say(c, 0, "load", "%s", err);
        return -1;
    }
    c->d = rk_plugin_descriptor(p);
    ct_say(c, 1, "load", "%s", rk_plugin_path(p));

    ct_current = "abi";
    uint32_t v = c->d->abi_version;
    ct_say(c, 1, "abi", "version %u.%u, descriptor %u bytes%s",
           (unsigned)RK_CONNECTOR_ABI_MAJOR_OF(v), (unsigned)RK_CONNECTOR_ABI_MINOR_OF(v),
           (unsigned)c->d->struct_size,
           RK_CONNECTOR_ABI_MINOR_OF(v) > RK_CONNECTOR_ABI_MINOR
               ? " (a newer minor version: this rekey uses the fields it knows)" : "");

    ct_current = "name";
    const char *base = strrchr(c->plugin_path, '/');
    base = base ? base + 1 : c->plugin_path;
    size_t blen = strlen(base);
    if (blen > 3 && strcmp(base + blen - 3, ".so") == 0)
        blen -= 3;
    if (strlen(c->d->name) == blen && strncmp(c->d->name, base, blen) == 0)
        ct_say(c, 1, "name", "'%s' matches the file name", c->d->name);
    else
        ct_say(c, 0, "name", "the descriptor says '%.64s' but the file is '%.*s.so': rekeyd "
                             "finds a connector by its file name", c->d->name, (int)blen, base);

    ct_check_table(c);
    if (ct_check_refusals(c)) {
        ct_check_instance(c);
        ct_check_leaks(c);
    }
    ct_check_secrets(c);
    ct_current = "done";
    return 0;
}

/* ---- the command -------------------------------------------------------- */

static int ct_usage_error(ct *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ct_usage_error(ct *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rekeyctl: ", c->err);
    vfprintf(c->err, fmt, ap);
    va_end(ap);
    fputs("\n(see `rekeyctl connector-test --help`)\n", c->err);
    return CT_EXIT_USAGE;
}

/* Adds "KEY=VALUE" to the settings (copies); 0, or the usage exit code. */
static int ct_add_set(ct *c, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return ct_usage_error(c, "--set needs KEY=VALUE, got '%.64s'", kv);
    rk_setting *grown = realloc(c->set, (c->n_set + 1) * sizeof *grown);
    if (!grown)
        return ct_usage_error(c, "out of memory");
    c->set = grown;
    char *key = rk_strndup(kv, (size_t)(eq - kv));
    char *value = strdup(eq + 1);
    if (!key || !value) {
        free(key);
        free(value);
        return ct_usage_error(c, "out of memory");
    }
    c->set[c->n_set].key = key;
    c->set[c->n_set].value = value;
    c->n_set++;
    return 0;
}

static void ct_free(ct *c)
{
    for (size_t i = 0; i < c->n_set; i++) {
        free(c->set[i].key);
        free(c->set[i].value);
    }
    free(c->set);
    for (size_t i = 0; i < c->n_secrets; i++)
        free(c->secrets[i]);
    free(c->secrets);
    rk_buf_free(&c->captured);
    json_decref(c->checks);
    pthread_mutex_destroy(&c->lock);
}

/* Parses the command line into c; 0, 1 for --help (done), or the usage
 * exit code. */
static int ct_parse(ct *c, int argc, char **argv)
{
    const char *plugin = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(ct_usage, c->out);
            return 1;
        } else if (strcmp(a, "--json") == 0) {
            c->json = 1;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            c->verbose = 1;
        } else if (strncmp(a, "--set=", 6) == 0) {
            if (ct_add_set(c, a + 6))
                return CT_EXIT_USAGE;
        } else if (strcmp(a, "--set") == 0 || strcmp(a, "--job") == 0 ||
                   strcmp(a, "--cycles") == 0) {
            if (i + 1 >= argc)
                return ct_usage_error(c, "option %s needs a value", a);
            const char *val = argv[++i];
            if (strcmp(a, "--set") == 0) {
                if (ct_add_set(c, val))
                    return CT_EXIT_USAGE;
            } else if (strcmp(a, "--job") == 0) {
                if (!val[0])
                    return ct_usage_error(c, "--job needs a name");
                c->job = val;
            } else {
                int64_t n;
                if (rk_parse_int64(val, &n) != 0 || n < 1 || n > 10000)
                    return ct_usage_error(c, "--cycles needs a number from 1 to 10000, got '%s'",
                                          val);
                c->cycles = (int)n;
            }
        } else if (a[0] == '-' && a[1]) {
            return ct_usage_error(c, "unknown option '%s'", a);
        } else if (plugin) {
            return ct_usage_error(c, "connector-test takes one plugin, got also '%s'", a);
        } else {
            plugin = a;
        }
    }
    if (!plugin)
        return ct_usage_error(c, "connector-test needs the path of a connector (.so)");
    /* with a '/' the host loads exactly this file instead of searching */
    int n = snprintf(c->plugin_path, sizeof c->plugin_path, "%s%s",
                     strchr(plugin, '/') ? "" : "./", plugin);
    if (n < 0 || (size_t)n >= sizeof c->plugin_path)
        return ct_usage_error(c, "plugin path too long");
    return 0;
}

/*
 * The command.  Every value given for a secret setting is registered for
 * hiding before anything runs, so not even a refusal message can show it.
 */
int rk_contract_main(int argc, char **argv, FILE *out, FILE *err)
{
    ct c;
    memset(&c, 0, sizeof c);
    c.out = out;
    c.err = err;
    c.job = "contract";
    c.cycles = CT_CYCLES;
    pthread_mutex_init(&c.lock, NULL);
    rk_buf_init(&c.captured, CT_CAPTURE_MAX);
    int rc = ct_parse(&c, argc, argv);
    if (rc) {
        ct_free(&c);
        return rc == 1 ? CT_EXIT_OK : rc;
    }
    if (rk_random_hex(16, c.run) != 0)
        snprintf(c.run, sizeof c.run, "%016llx%016llx", (unsigned long long)getpid(),
                 (unsigned long long)rk_now_ms());
    if (c.json)
        c.checks = json_array();
    struct sigaction crash = {0}, old[5];
    static const int sigs[5] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    crash.sa_handler = ct_on_crash;
    crash.sa_flags = SA_RESETHAND;
    sigemptyset(&crash.sa_mask);
    for (int i = 0; i < 5 && !CT_ASAN; i++)
        sigaction(sigs[i], &crash, &old[i]);

    /* The values given for secret settings are hidden in everything
     * printed from the start (ct_run loads the plugin again: from the
     * host's cache, or to report why it cannot be loaded). */
    char lerr[CT_ERR_SIZE];
    rk_plugin *p = rk_plugin_load(NULL, c.plugin_path, lerr, sizeof lerr);
    if (p) {
        const rk_connector *d = rk_plugin_descriptor(p);
        for (size_t i = 0; i < c.n_set; i++) {
            if (!rk_setting_is_secret(d, c.set[i].key))
                continue;
            char **grown = realloc(c.secrets, (c.n_secrets + 1) * sizeof *grown);
            if (!grown)
                break;
            c.secrets = grown;
            if (!(c.secrets[c.n_secrets] = strdup(c.set[i].value)))
                break;
            c.n_secrets++;
        }
    }
    ct_run(&c);
    if (!c.json) {
        fprintf(c.out, "%d passed, %d failed\n", c.passed, c.failed);
    } else {
        json_t *o = json_pack("{s:s, s:s?, s:O, s:i, s:i}", "plugin", c.plugin_path, "name",
                              c.d ? c.d->name : NULL, "checks", c.checks, "passed", c.passed,
                              "failed", c.failed);
        char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        if (s)
            fprintf(c.out, "%s\n", s);
        free(s);
        json_decref(o);
    }
    fflush(c.out);
    for (int i = 0; i < 5 && !CT_ASAN; i++)
        sigaction(sigs[i], &old[i], NULL);
    rc = c.failed || c.passed == 0 ? CT_EXIT_FAIL : CT_EXIT_OK;
    ct_free(&c);
    rk_plugin_unload_all();
    return rc;
}
