/*
 * template.c — a minimal, complete connector to copy when you write your
 * own.  Read connectors/template/README.md first; docs/connectors.md is
 * the full reference of the ABI.
 *
 * What it does: appends each record as one line of JSON to a file (the
 * setting `path`):
 *
 *   {"key":"…","submission":"42","job":"fischereischein","fields":{"nachname":"Brandt",…}}
 *
 * and it is idempotent: a record whose idempotency key is already in the
 * file is not written again.  The keys are read from the file when the
 * instance opens and kept in memory (a small hash set), so "is this key
 * already there?" is answered without reading the file again.
 *
 * Every connector is built the same way:
 *   1. a table of settings (rk_setting_decl), which the host checks before
 *      open() sees them;
 *   2. open():    check settings beyond their type, connect, allocate;
 *   3. deliver(): put one record into the target, answer one result code;
 *   4. close():   release everything open() made;
 *   5. a static descriptor and the one exported function
 *      rk_connector_entry() that returns it.
 *
 * Rules that keep a connector safe in rekeyd (docs/connectors.md):
 *   - include only rekey_connector.h, never anything from agent/;
 *   - everything except rk_connector_entry is static;
 *   - no global mutable state: two jobs may use this connector at the
 *     same time, each with its own instance, on different threads;
 *   - never sleep or loop to retry: answer RK_DELIVER_RETRY and the host
 *     decides when to try again;
 *   - never put field values, personal data or secrets into messages or
 *     log lines: ids, field names and counts only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rekey_connector.h" /* the whole contract: nothing from agent/ */

/* ---- 1. settings ---------------------------------------------------------
 *
 * One entry per key a job may write in <set key="…">.  The host refuses
 * unknown keys, missing REQUIRED keys and values of the wrong type, fills
 * in defaults, and hands open() one value per entry, in this order.
 * BOOL values arrive as "true"/"false", INT values as plain decimals.
 * A SECRET value is never printed or logged by the host — and must not be
 * by you either.  The table ends with an entry whose name is NULL.
 */
static const rk_setting_decl tp_settings[] = {
    {"path", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL,
     "file that receives one JSON line per record (created if absent)"},
    {"fsync", RK_SETTING_BOOL, 0, "true", "fsync the file before answering OK"},
    /* A secret, to show how they are declared.  A real connector would
     * send it to its target (an API token, a password); this one only
     * checks that it is not empty when given, and never shows it. */
    {"token", RK_SETTING_STRING, RK_SETTING_SECRET, NULL,
     "access token for the target (secret; unused by the template)"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

/* ---- the instance ------------------------------------------------------- */

/* A set of strings (the JSON-escaped keys already in the file): open
 * addressing, FNV-1a hash, doubled when half full.  Escaped forms are
 * compared, so the file never has to be un-escaped. */
typedef struct tp_set {
    char **slot;
    size_t cap, n;
} tp_set;

/* Everything one instance needs between open() and close().  The host
 * gives each job its own instance and never calls deliver() twice at the
 * same time on one instance, so no lock is needed here. */
typedef struct tp_inst {
    char *path;
    int fd;              /* the file, opened O_APPEND */
    int fsync;
    tp_set keys;
    void (*log)(void *, int, const char *); /* valid until close() */
    void *log_ctx;
} tp_inst;

static uint64_t tp_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int tp_set_has(const tp_set *s, const char *k)
{
    if (!s->cap)
        return 0;
    for (size_t i = tp_hash(k) & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1))
        if (strcmp(s->slot[i], k) == 0)
            return 1;
    return 0;
}

/* Adds a copy of k; 0, or -1 when memory runs out. */
static int tp_set_add(tp_set *s, const char *k)
{
    if (tp_set_has(s, k))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **slot = calloc(cap, sizeof *slot);
        if (!slot)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slot[i])
                continue;
            size_t j = tp_hash(s->slot[i]) & (cap - 1);
            while (slot[j])
                j = (j + 1) & (cap - 1);
            slot[j] = s->slot[i];
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    char *copy = strdup(k);
    if (!copy)
        return -1;
    size_t i = tp_hash(k) & (s->cap - 1);
    while (s->slot[i])
        i = (i + 1) & (s->cap - 1);
    s->slot[i] = copy;
    s->n++;
    return 0;
}

static void tp_set_free(tp_set *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slot[i]);
    free(s->slot);
    s->slot = NULL;
    s->cap = s->n = 0;
}

/* A growable string for one line.  Records are small; a line is capped at
 * 4 MiB so a runaway record cannot eat the daemon's memory. */
#define TP_LINE_MAX (4u * 1024 * 1024)
typedef struct tp_str {
    char *p;
    size_t len, cap;
    int bad; /* set once an append failed; later appends do nothing */
} tp_str;

static void tp_add(tp_str *b, const char *s, size_t n)
{
    if (b->bad || n > TP_LINE_MAX - b->len) {
        b->bad = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->bad = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Appends s as a JSON string ("…" with \" \\ and \u00XX escapes).  NULL
 * becomes null: a field that mapped to nothing. */
static void tp_add_json(tp_str *b, const char *s)
{
    if (!s) {
        tp_add(b, "null", 4);
        return;
    }
    tp_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            tp_add(b, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            tp_add(b, esc, 6);
        } else {
            tp_add(b, p, 1); /* UTF-8 passes through: the ABI promises UTF-8 */
        }
    }
    tp_add(b, "\"", 1);
}

/* The escaped key as it appears in a line: "key":"<escaped>" — used both
 * when writing and for the set, so the two always agree. */
static char *tp_escaped_key(const char *key)
{
    tp_str b = {0};
    tp_add_json(&b, key);
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* Writes all of data; 0 or errno. */
static int tp_write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Reads the file once at open: collects the key of every complete line
 * into the set, and cuts off an incomplete last line (rekeyd stopped in
 * the middle of a write — that delivery never answered OK, so it will
 * come again and write the whole line).  0, or an errno.
 */
static int tp_load_keys(tp_inst *in)
{
    struct stat st;
    if (fstat(in->fd, &st) != 0)
        return errno;
    int d = dup(in->fd); /* the stream closes its own descriptor */
    if (d < 0)
        return errno;
    FILE *f = fdopen(d, "r");
    if (!f) {
        int e = errno;
        close(d);
        return e;
    }
    rewind(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    off_t complete = 0; /* bytes up to the end of the last full line */
    int rc = 0;
    static const char prefix[] = "{\"key\":";
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n')
            break; /* the incomplete tail */
        complete += n;
        if (strncmp(line, prefix, sizeof prefix - 1) != 0)
            continue; /* not ours: left alone */
        /* the escaped key runs from the opening quote to the first
         * unescaped quote */
        char *k = line + sizeof prefix - 1, *p = k + 1;
        while (*p && *p != '"')
            p += (*p == '\\' && p[1]) ? 2 : 1;
        if (*p != '"')
            continue;
        p[1] = '\0';
        if (tp_set_add(&in->keys, k) != 0) {
            rc = ENOMEM;
            break;
        }
    }
    free(line);
    fclose(f);
    if (!rc && complete < st.st_size && ftruncate(in->fd, complete) != 0)
        rc = errno;
    return rc;
}

/* ---- 2. open ------------------------------------------------------------
 *
 * Called once per job before its first delivery (and again after a FATAL
 * answer or a reload).  args and everything in it belong to the host and
 * live only during this call: copy what you keep.  On failure, write a
 * short reason into err (without secrets) and return non-zero; the host
 * reports "connector 'template' could not open for job 'JOB': <reason>"
 * and treats the delivery like FATAL (tried again later).
 */
static const char *tp_setting(const rk_connector_open_args *a, const char *name)
{
    for (size_t i = 0; i < a->n_settings; i++)
        if (strcmp(a->settings[i].name, name) == 0)
            return a->settings[i].value; /* NULL: not set and no default */
    return NULL;
}

static void tp_close(void *instance);

static int tp_open(const rk_connector_open_args *args, void **instance, char *err,
                   size_t err_size)
{
    const char *path = tp_setting(args, "path");   /* REQUIRED: never NULL here */
    const char *fsync_s = tp_setting(args, "fsync"); /* "true" or "false" */
    const char *token = tp_setting(args, "token");   /* SECRET: never print it */

    /* The host checked types; meaning is ours to check. */
    if (!path || !path[0]) {
        snprintf(err, err_size, "setting 'path' is empty");
        return -1;
    }
    if (token && !token[0]) {
        /* Say which setting is wrong, never its value. */
        snprintf(err, err_size, "setting 'token' is empty");
        return -1;
    }
    tp_inst *in = calloc(1, sizeof *in);
    if (!in || !(in->path = strdup(path))) {
        free(in);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    in->fd = -1;
    in->fsync = !fsync_s || strcmp(fsync_s, "true") == 0;
    in->log = args->log;       /* keep the log callback: valid until close() */
    in->log_ctx = args->log_ctx;

    /* O_APPEND: every write() lands at the end, also when several
     * instances (jobs) share the file.  O_CLOEXEC: not inherited by
     * programs the daemon might start. */
    in->fd = open(in->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (in->fd < 0) {
        snprintf(err, err_size, "cannot open '%s': %s", in->path, strerror(errno));
        tp_close(in);
        return -1;
    }
    int e = tp_load_keys(in);
    if (e) {
        snprintf(err, err_size, "cannot read the keys in '%s': %s", in->path, strerror(e));
        tp_close(in);
        return -1;
    }
    /* Log ids, names and counts — never values or secrets. */
    char line[512];
    snprintf(line, sizeof line, "job '%s': appending to '%s' (%zu records already there)",
             args->job_name ? args->job_name : "?", in->path, in->keys.n);
    args->log(args->log_ctx, RK_LOG_INFO, line);
    *instance = in; /* any pointer; the host hands it back to deliver/close */
    return 0;
}

/* ---- 3. deliver ---------------------------------------------------------
 *
 * Blocking, on a worker thread.  record and result belong to the host and
 * live only during the call.  Write a one-line message (no values) with
 * snprintf(result->message, result->message_size, …) and, for OK, the
 * target's own id into result->target_id.
 *
 * The four answers and what the host does with each (docs/connectors.md,
 * section 4):
 *   RK_DELIVER_OK         the record is in the target, now or from an
 *                         earlier delivery of the same key → delivered.
 *   RK_DELIVER_RETRY      transient (disk full, I/O error, target busy):
 *                         tried again after backoff; after max_attempts
 *                         the record goes to the dead letter ("failed").
 *                         result->retry_after_ms may ask for a delay.
 *   RK_DELIVER_PERMANENT  this record can never go in as it is → held for
 *                         review with the message as its anomaly.  Never
 *                         for "already there": that is OK.
 *   RK_DELIVER_FATAL      this instance is unusable → the host closes it,
 *                         and counts the attempt like RETRY; the next
 *                         delivery opens a new instance.
 */
static rk_deliver_status tp_deliver(void *instance, const rk_record *rec,
                                    rk_deliver_result *res)
{
    tp_inst *in = instance;

    /* PERMANENT: something about this record. */
    if (!rec->idempotency_key || !rec->idempotency_key[0]) {
        snprintf(res->message, res->message_size, "record has no idempotency key");
        return RK_DELIVER_PERMANENT;
    }

    /* FATAL: the file we hold was deleted or replaced under us; appending
     * to the old inode would lose the record.  A fresh open() finds the
     * new file. */
    struct stat st_fd, st_path;
    if (fstat(in->fd, &st_fd) != 0 || st_fd.st_nlink == 0 || stat(in->path, &st_path) != 0 ||
        st_fd.st_ino != st_path.st_ino || st_fd.st_dev != st_path.st_dev) {
        snprintf(res->message, res->message_size,
                 "'%s' was removed or replaced; reopening it", in->path);
        return RK_DELIVER_FATAL;
    }

    char *key = tp_escaped_key(rec->idempotency_key);
    if (!key) {
        snprintf(res->message, res->message_size, "out of memory");
        return RK_DELIVER_RETRY; /* RETRY: nothing wrong with the record */
    }

    /* OK without writing: the key is already in the file (an earlier
     * delivery went in, rekeyd just did not learn of it).  Same key, one
     * effect — and the answer is OK, never PERMANENT. */
    if (tp_set_has(&in->keys, key)) {
        free(key);
        snprintf(res->message, res->message_size, "already delivered (submission %s)",
                 rec->submission_id ? rec->submission_id : "?");
        snprintf(res->target_id, res->target_id_size, "%s",
                 rec->submission_id ? rec->submission_id : "");
        return RK_DELIVER_OK;
    }

    /* Build the whole line first, then write it with one write(): with
     * O_APPEND, lines of two instances never interleave. */
    tp_str b = {0};
    tp_add(&b, "{\"key\":", 7);
    tp_add(&b, key, strlen(key));
    tp_add(&b, ",\"submission\":", 14);
    tp_add_json(&b, rec->submission_id);
    tp_add(&b, ",\"job\":", 7);
    tp_add_json(&b, rec->job_name);
    tp_add(&b, ",\"fields\":{", 11);
    for (size_t i = 0; i < rec->n_fields; i++) {
        if (i)
            tp_add(&b, ",", 1);
        tp_add_json(&b, rec->fields[i].name);
        tp_add(&b, ":", 1);
        tp_add_json(&b, rec->fields[i].value); /* NULL → null */
    }
    tp_add(&b, "}}\n", 3);
    if (b.bad) {
        free(b.p);
        free(key);
        /* PERMANENT: this record is too large; others are fine. */
        snprintf(res->message, res->message_size, "record is larger than %u bytes as a line",
                 TP_LINE_MAX);
        return RK_DELIVER_PERMANENT;
    }

    int e = tp_write_all(in->fd, b.p, b.len);
    if (!e && in->fsync && fsync(in->fd) != 0)
        e = errno;
    free(b.p);
    if (e) {
        free(key);
        /* RETRY: disk full, I/O error, quota: may pass.  A half-written
         * line is cut off by the next open(); the set is unchanged, so the
         * next attempt writes the line again.  (A real connector would
         * also answer FATAL here when the target is gone for good.) */
        snprintf(res->message, res->message_size, "cannot append to '%s': %s", in->path,
                 strerror(e));
        return RK_DELIVER_RETRY;
    }
    /* Only now, with the line durable, is the key "in the target". */
    if (tp_set_add(&in->keys, key) != 0) {
        /* The line is written; a missing set entry only means a repeat
         * would write it again.  Answer FATAL so the host reopens and
         * reloads the keys from the file. */
        free(key);
        snprintf(res->message, res->message_size, "out of memory recording the key");
        return RK_DELIVER_FATAL;
    }
    free(key);
    snprintf(res->message, res->message_size, "appended submission %s to '%s'",
             rec->submission_id ? rec->submission_id : "?", in->path);
    /* target_id: how someone finds the record in the target. */
    snprintf(res->target_id, res->target_id_size, "%s",
             rec->submission_id ? rec->submission_id : "");
    return RK_DELIVER_OK;
}

/* ---- 4. close ------------------------------------------------------------
 *
 * Releases everything open() made.  Cannot fail; called on rekeyd's main
 * thread, never during a delivery on this instance, with whatever open()
 * stored in *instance.
 */
static void tp_close(void *instance)
{
    tp_inst *in = instance;
    if (!in)
        return;
    if (in->fd >= 0)
        close(in->fd);
    tp_set_free(&in->keys);
    free(in->path);
    free(in);
}

/* ---- 5. the descriptor and the entry point ------------------------------
 *
 * name must equal the folder and the file name (connectors/template/
 * template.so): rekeyd finds the plugin by that name.  abi_version and
 * struct_size come from the header you compile against — never write
 * numbers by hand.
 */
static const rk_connector tp_descriptor = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "template",
    .version = "1.0.0",
    .description = "example: appends each record as one JSON line to a file",
    .settings = tp_settings,
    .open = tp_open,
    .deliver = tp_deliver,
    .close = tp_close,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void)
{
    return &tp_descriptor;
}
