/*
 * sqlite.c — the SQLite connector: one row per record in a table of a
 * target SQLite database.
 *
 * Settings (checked by the host; see docs/connectors.md):
 *   database         path of the target file (required; created if absent)
 *   table            table name, an identifier [A-Za-z_][A-Za-z0-9_]* (required)
 *   create_table     true: create the table and add missing columns (default)
 *   busy_timeout_ms  how long to wait for a lock before answering RETRY (5000;
 *                    tried again after 0.1 ms, doubling up to 2 ms)
 *
 * The table gets one TEXT column per field plus rk_idempotency_key TEXT
 * UNIQUE NOT NULL, rk_submission TEXT and rk_delivered_at TEXT (ISO 8601
 * UTC).  Because the field names are only known when the first record
 * arrives, the table is created lazily in deliver(); a later record with
 * a new field adds its column (ALTER TABLE ADD COLUMN).  Inserts use
 * ON CONFLICT(rk_idempotency_key) DO UPDATE, so a repeated delivery
 * leaves one row — with the values of the latest delivery, which is what
 * a replay after a corrected mapping needs — and answers OK with that
 * row's rowid.
 *
 * Names are never pasted into SQL unchecked: table and field names must
 * be identifiers as above (at most 63 bytes, not one of the rk_ columns
 * or SQLite's rowid aliases) and are double-quoted; values are bound.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "rekey_connector.h"

#define SQ_IDENT_MAX 63
#define SQ_STMT_CACHE 16

static const rk_setting_decl sq_settings[] = {
    {"database", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL,
     "path of the target SQLite database (created if absent)"},
    {"table", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL,
     "table that receives one row per record"},
    {"create_table", RK_SETTING_BOOL, 0, "true",
     "create the table and add columns for new fields"},
    {"busy_timeout_ms", RK_SETTING_INT, 0, "5000",
     "wait this long for a lock before answering RETRY"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

/* Columns the connector itself writes, and names SQLite gives the rowid;
 * a field may not use them (compared without case, as SQLite does). */
static const char *const sq_reserved[] = {"rk_idempotency_key", "rk_submission",
                                          "rk_delivered_at", "rowid", "oid", "_rowid_",
                                          NULL};

typedef struct sq_stmt {
    char *key;            /* the field names joined by ',' */
    sqlite3_stmt *stmt;   /* the prepared INSERT for that field set */
} sq_stmt;

/*
 * rekeyd opens one instance per job, and the jobs of a municipality often
 * share one target file.  SQLite lets one connection write at a time; the
 * others met SQLITE_BUSY and slept in sq_busy, polling (thousands of
 * 0.1-3 ms sleeps per 20,000 deliveries, each holding a worker thread
 * past the moment the lock was free).  The instances of one process that
 * write the same file (same device and inode) take a mutex of that file
 * around their write transaction instead: the next one starts the moment
 * the last one committed.  The busy handler still waits for writers of
 * other processes (the Fachverfahren itself, another rekeyd).
 */
typedef struct sq_file {
    struct sq_file *next;
    dev_t dev;
    ino_t ino;
    int refs;
    pthread_mutex_t mu;
} sq_file;

static pthread_mutex_t sq_files_mu = PTHREAD_MUTEX_INITIALIZER;
static sq_file *sq_files;

/* The lock of the file at path, shared with the other instances writing
 * it; NULL when it cannot be told (no such file yet, out of memory): the
 * instance then relies on the busy handler alone. */
static sq_file *sq_file_ref(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return NULL;
    pthread_mutex_lock(&sq_files_mu);
    sq_file *f = sq_files;
    while (f && !(f->dev == st.st_dev && f->ino == st.st_ino))
        f = f->next;
    if (!f && (f = calloc(1, sizeof *f)) != NULL) {
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        pthread_mutex_init(&f->mu, NULL);
        f->next = sq_files;
        sq_files = f;
    }
    if (f)
        f->refs++;
    pthread_mutex_unlock(&sq_files_mu);
    return f;
}

static void sq_file_unref(sq_file *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&sq_files_mu);
    if (--f->refs == 0) {
        sq_file **pp = &sq_files;
        while (*pp != f)
            pp = &(*pp)->next;
        *pp = f->next;
        pthread_mutex_destroy(&f->mu);
        free(f);
    }
    pthread_mutex_unlock(&sq_files_mu);
}

static void sq_file_lock(sq_file *f)
{
    if (f)
        pthread_mutex_lock(&f->mu);
}

static void sq_file_unlock(sq_file *f)
{
    if (f)
        pthread_mutex_unlock(&f->mu);
}

typedef struct sq_inst {
    sqlite3 *db;
    sq_file *file;        /* the target file's write lock in this process */
    char *table;          /* validated identifier */
    int create_table;
    int busy_ms;
    int64_t busy_since_us; /* sq_busy: when the current wait began */
    int wal_pending;      /* WAL not yet switched on: another writer was busy */
    char **cols;          /* the table's columns, when cols_known */
    size_t n_cols;
    int cols_known;
    sq_stmt cache[SQ_STMT_CACHE];
    size_t n_cache;
    void (*log)(void *, int, const char *);
    void *log_ctx;
} sq_inst;

/* ---- helpers ------------------------------------------------------------ */

static void sq_log(sq_inst *in, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sq_log(sq_inst *in, int level, const char *fmt, ...)
{
    if (!in->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    in->log(in->log_ctx, level, line);
}

static void sq_msg(rk_deliver_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sq_msg(rk_deliver_result *r, const char *fmt, ...)
{
    if (!r->message || r->message_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, r->message_size, fmt, ap);
    va_end(ap);
}

/* 1 when s is [A-Za-z_][A-Za-z0-9_]* and at most SQ_IDENT_MAX bytes. */
static int sq_ident_ok(const char *s)
{
    if (!s || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return n <= SQ_IDENT_MAX;
}

static int sq_reserved_name(const char *s)
{
    for (size_t i = 0; sq_reserved[i]; i++)
        if (strcasecmp(s, sq_reserved[i]) == 0)
            return 1;
    return 0;
}

/* A small growable string for building SQL; only ever holds validated
 * identifiers and fixed text.  Returns -1 when memory runs out. */
typedef struct sq_str {
    char *s;
    size_t len, cap;
} sq_str;

static int sq_str_add(sq_str *b, const char *t)
{
    size_t n = strlen(t);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            return -1;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, t, n + 1);
    b->len += n;
    return 0;
}

/* Appends "ident" (quoted; ident is already validated, so it holds no '"'). */
static int sq_str_ident(sq_str *b, const char *ident)
{
    return sq_str_add(b, "\"") || sq_str_add(b, ident) || sq_str_add(b, "\"") ? -1 : 0;
}

/*
 * Maps an SQLite result code to an answer.  Locks, I/O and full disks are
 * transient; a file that cannot be opened, is not a database or is read
 * only makes the instance unusable; constraint and other SQL errors are
 * about this record.
 */
static rk_deliver_status sq_status(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_SCHEMA:
    case SQLITE_INTERRUPT:
        return RK_DELIVER_RETRY;
    case SQLITE_CANTOPEN:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_MISUSE:
        return RK_DELIVER_FATAL;
    default:
        return RK_DELIVER_PERMANENT;
    }
}

/* Forgets the column list and every prepared statement, so the next
 * delivery reads the table afresh (after an error the table may have
 * changed under us). */
static void sq_forget(sq_inst *in)
{
    for (size_t i = 0; i < in->n_cols; i++)
        free(in->cols[i]);
    free(in->cols);
    in->cols = NULL;
    in->n_cols = 0;
    in->cols_known = 0;
    for (size_t i = 0; i < in->n_cache; i++) {
        sqlite3_finalize(in->cache[i].stmt);
        free(in->cache[i].key);
    }
    in->n_cache = 0;
}

static int sq_has_col(const sq_inst *in, const char *name)
{
    for (size_t i = 0; i < in->n_cols; i++)
        if (strcasecmp(in->cols[i], name) == 0)
            return 1;
    return 0;
}

/* Reads the table's columns with PRAGMA table_info (none when the table
 * does not exist).  Returns an SQLite result code. */
static int sq_read_cols(sq_inst *in)
{
    sq_forget(in);
    sq_str q = {0};
    if (sq_str_add(&q, "PRAGMA table_info(") || sq_str_ident(&q, in->table) ||
        sq_str_add(&q, ")")) {
        free(q.s);
        return SQLITE_NOMEM;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(in->db, q.s, -1, &st, NULL);
    free(q.s);
    if (rc != SQLITE_OK)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        char **cols = realloc(in->cols, (in->n_cols + 1) * sizeof *cols);
        if (!cols || !name) {
            if (cols)
                in->cols = cols;
            sqlite3_finalize(st);
            return SQLITE_NOMEM;
        }
        in->cols = cols;
        if (!(in->cols[in->n_cols] = strdup(name))) {
            sqlite3_finalize(st);
            return SQLITE_NOMEM;
        }
        in->n_cols++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return rc;
    in->cols_known = 1;
    return SQLITE_OK;
}

/* Runs one statement without results; returns an SQLite result code. */
static int sq_exec(sq_inst *in, const char *sql)
{
    return sqlite3_exec(in->db, sql, NULL, NULL, NULL);
}

/* ALTER TABLE t ADD COLUMN "name" type.  A column that appeared in the
 * meantime (another writer) counts as success. */
static int sq_add_col(sq_inst *in, const char *name, const char *type)
{
    sq_str q = {0};
    if (sq_str_add(&q, "ALTER TABLE ") || sq_str_ident(&q, in->table) ||
        sq_str_add(&q, " ADD COLUMN ") || sq_str_ident(&q, name) || sq_str_add(&q, " ") ||
        sq_str_add(&q, type)) {
        free(q.s);
        return SQLITE_NOMEM;
    }
    int rc = sq_exec(in, q.s);
    free(q.s);
    if (rc == SQLITE_ERROR && strstr(sqlite3_errmsg(in->db), "duplicate column"))
        rc = SQLITE_OK;
    if (rc == SQLITE_OK)
        sq_log(in, RK_LOG_INFO, "added column '%s' to table '%s'", name, in->table);
    return rc;
}

/*
 * Makes sure the table exists and has a column for every field of the
 * record and the three rk_ columns.  Returns OK, or the answer to give
 * with the message already written.
 */
static rk_deliver_status sq_ensure_table(sq_inst *in, const rk_record *rec,
                                         rk_deliver_result *res)
{
    int rc = SQLITE_OK;
    if (!in->cols_known && (rc = sq_read_cols(in)) != SQLITE_OK)
        goto sqlerr;
    if (in->n_cols == 0) {
        if (!in->create_table) {
            sq_msg(res, "table '%s' does not exist and create_table is off", in->table);
            return RK_DELIVER_FATAL;
        }
        sq_str q = {0};
        int bad = sq_str_add(&q, "CREATE TABLE IF NOT EXISTS ") || sq_str_ident(&q, in->table) ||
                  sq_str_add(&q, " (");
        for (size_t i = 0; i < rec->n_fields && !bad; i++)
            bad = sq_str_ident(&q, rec->fields[i].name) || sq_str_add(&q, " TEXT, ");
        bad = bad || sq_str_add(&q, "rk_idempotency_key TEXT UNIQUE NOT NULL, "
                                    "rk_submission TEXT, rk_delivered_at TEXT)");
        if (bad) {
            free(q.s);
            rc = SQLITE_NOMEM;
            goto sqlerr;
        }
        rc = sq_exec(in, q.s);
        free(q.s);
        if (rc != SQLITE_OK)
            goto sqlerr;
        sq_log(in, RK_LOG_INFO, "created table '%s' with %zu field columns", in->table,
               rec->n_fields);
        if ((rc = sq_read_cols(in)) != SQLITE_OK)
            goto sqlerr;
    }
    static const char *const own[][2] = {{"rk_idempotency_key", "TEXT"},
                                         {"rk_submission", "TEXT"},
                                         {"rk_delivered_at", "TEXT"}};
    int added = 0;
    for (size_t i = 0; i < 3; i++) {
        if (sq_has_col(in, own[i][0]))
            continue;
        if (!in->create_table) {
            sq_msg(res, "table '%s' has no column '%s' and create_table is off", in->table,
                   own[i][0]);
            return RK_DELIVER_FATAL;
        }
        if ((rc = sq_add_col(in, own[i][0], own[i][1])) != SQLITE_OK)
            goto sqlerr;
        if (i == 0) {
            /* ADD COLUMN cannot add UNIQUE; an index serves ON CONFLICT. */
            char idx[SQ_IDENT_MAX + 16];
            snprintf(idx, sizeof idx, "%s_rk_key", in->table);
            sq_str q2 = {0};
            if (sq_str_add(&q2, "CREATE UNIQUE INDEX IF NOT EXISTS ") || sq_str_ident(&q2, idx) ||
                sq_str_add(&q2, " ON ") || sq_str_ident(&q2, in->table) ||
                sq_str_add(&q2, "(rk_idempotency_key)")) {
                free(q2.s);
                rc = SQLITE_NOMEM;
                goto sqlerr;
            }
            rc = sq_exec(in, q2.s);
            free(q2.s);
            if (rc != SQLITE_OK)
                goto sqlerr;
        }
        added = 1;
    }
    for (size_t i = 0; i < rec->n_fields; i++) {
        const char *f = rec->fields[i].name;
        if (sq_has_col(in, f))
            continue;
        if (!in->create_table) {
            sq_msg(res, "table '%s' has no column for field '%s' and create_table is off",
                   in->table, f);
            return RK_DELIVER_PERMANENT;
        }
        if ((rc = sq_add_col(in, f, "TEXT")) != SQLITE_OK)
            goto sqlerr;
        added = 1;
    }
    if (added && (rc = sq_read_cols(in)) != SQLITE_OK)
        goto sqlerr;
    return RK_DELIVER_OK;
sqlerr:
    sq_msg(res, "preparing table '%s' failed: %s", in->table,
           rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(in->db));
    sq_forget(in);
    return sq_status(rc);
}

/* The cached INSERT for this record's field set, prepared on first use.
 * When the cache is full the oldest entry goes. */
/* The cached INSERT for the record's field names (the cache key is the
 * names, each followed by a comma), or NULL; allocates nothing. */
static sqlite3_stmt *sq_cached_stmt(const sq_inst *in, const rk_record *rec)
{
    for (size_t c = 0; c < in->n_cache; c++) {
        const char *p = in->cache[c].key;
        size_t i = 0;
        for (; i < rec->n_fields; i++) {
            const char *name = rec->fields[i].name ? rec->fields[i].name : "";
            size_t l = strcspn(name, ","); /* a name with a comma is no identifier */
            if (name[l] || strncmp(p, name, l) != 0 || p[l] != ',')
                break;
            p += l + 1;
        }
        if (i == rec->n_fields && *p == '\0')
            return in->cache[c].stmt;
    }
    return NULL;
}

static int sq_insert_stmt(sq_inst *in, const rk_record *rec, sqlite3_stmt **out)
{
    sq_str key = {0};
    for (size_t i = 0; i < rec->n_fields; i++)
        if (sq_str_add(&key, rec->fields[i].name) || sq_str_add(&key, ",")) {
            free(key.s);
            return SQLITE_NOMEM;
        }
    const char *k = key.s ? key.s : "";
    for (size_t i = 0; i < in->n_cache; i++) {
        if (strcmp(in->cache[i].key, k) == 0) {
            free(key.s);
            *out = in->cache[i].stmt;
            return SQLITE_OK;
        }
    }
    sq_str q = {0};
    int bad = sq_str_add(&q, "INSERT INTO ") || sq_str_ident(&q, in->table) || sq_str_add(&q, " (");
    for (size_t i = 0; i < rec->n_fields && !bad; i++)
        bad = sq_str_ident(&q, rec->fields[i].name) || sq_str_add(&q, ", ");
    bad = bad || sq_str_add(&q, "rk_idempotency_key, rk_submission, rk_delivered_at) VALUES (");
    for (size_t i = 0; i < rec->n_fields && !bad; i++)
        bad = sq_str_add(&q, "?, ");
    bad = bad || sq_str_add(&q, "?, ?, ?) ON CONFLICT(rk_idempotency_key) DO UPDATE SET ");
    for (size_t i = 0; i < rec->n_fields && !bad; i++)
        bad = sq_str_ident(&q, rec->fields[i].name) || sq_str_add(&q, " = excluded.") ||
              sq_str_ident(&q, rec->fields[i].name) || sq_str_add(&q, ", ");
    bad = bad || sq_str_add(&q, "rk_delivered_at = excluded.rk_delivered_at RETURNING rowid");
    char *keycopy = bad ? NULL : strdup(k);
    free(key.s);
    if (bad || !keycopy) {
        free(q.s);
        free(keycopy);
        return SQLITE_NOMEM;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(in->db, q.s, -1, &st, NULL);
    free(q.s);
    if (rc != SQLITE_OK) {
        free(keycopy);
        return rc;
    }
    if (in->n_cache == SQ_STMT_CACHE) {
        sqlite3_finalize(in->cache[0].stmt);
        free(in->cache[0].key);
        memmove(&in->cache[0], &in->cache[1], (SQ_STMT_CACHE - 1) * sizeof in->cache[0]);
        in->n_cache--;
    }
    in->cache[in->n_cache].key = keycopy;
    in->cache[in->n_cache].stmt = st;
    in->n_cache++;
    *out = st;
    return SQLITE_OK;
}

/* ---- the ABI ------------------------------------------------------------ */

static const char *sq_setting(const rk_connector_open_args *a, const char *name)
{
    for (size_t i = 0; i < a->n_settings; i++)
        if (strcmp(a->settings[i].name, name) == 0)
            return a->settings[i].value;
    return NULL;
}

static void sq_close(void *instance);

static int64_t sq_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Waits for another writer's lock, up to busy_timeout_ms.  SQLite's own
 * handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25, 50 and
 * then 100 ms between tries: with one connector instance per job on the
 * same target file, a batch that met another's 2 ms commit slept 10 to
 * 50 ms, the whole tail of rekey's delivery latency.  This one tries
 * again after 0.1 ms, doubling up to 2 ms.
 */
static int sq_busy(void *arg, int tries)
{
    sq_inst *in = arg;
    int64_t now = sq_now_us();
    if (tries == 0)
        in->busy_since_us = now;
    if (now - in->busy_since_us >= (int64_t)in->busy_ms * 1000)
        return 0;
    long ns = 100000L << (tries < 5 ? tries : 5); /* 0.1, 0.2, … 3.2 ms */
    struct timespec d = {0, ns < 2000000L ? ns : 2000000L};
    nanosleep(&d, NULL);
    return 1;
}

/*
 * Opens the target database (creating the file), sets the busy timeout
 * and WAL mode.  The table is not touched yet: its columns come from the
 * first record.  The instance is owned by the host until close().
 */
static int sq_open(const rk_connector_open_args *args, void **instance, char *err,
                   size_t err_size)
{
    const char *database = sq_setting(args, "database");
    const char *table = sq_setting(args, "table");
    const char *create = sq_setting(args, "create_table");
    const char *busy = sq_setting(args, "busy_timeout_ms");
    if (!database || !database[0]) {
        snprintf(err, err_size, "setting 'database' is empty");
        return -1;
    }
    if (!sq_ident_ok(table) || sq_reserved_name(table)) {
        snprintf(err, err_size,
                 "table name '%.64s' is not an identifier ([A-Za-z_][A-Za-z0-9_]*, "
                 "at most %d bytes)", table ? table : "", SQ_IDENT_MAX);
        return -1;
    }
    sq_inst *in = calloc(1, sizeof *in);
    if (!in || !(in->table = strdup(table))) {
        free(in);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    /* The host hands canonical values: "true"/"false" and plain decimal. */
    in->create_table = !create || strcmp(create, "true") == 0;
    long long b = busy ? strtoll(busy, NULL, 10) : 5000;
    in->busy_ms = b < 0 ? 0 : b > 3600000 ? 3600000 : (int)b;
    in->log = args->log;
    in->log_ctx = args->log_ctx;

    int rc = sqlite3_open_v2(database, &in->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_handler(in->db, sq_busy, in);
    if (rc == SQLITE_OK)
        in->file = sq_file_ref(database); /* the file exists once opened */
    if (rc == SQLITE_OK) {
        sq_file_lock(in->file);
        /* switching to WAL needs the database to itself: when another
         * instance is creating the same new target at this moment, it is
         * done at the first delivery instead (which answers RETRY while
         * it stays busy) rather than failing the open */
        rc = sqlite3_exec(in->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
            in->wal_pending = 1;
            rc = SQLITE_OK;
        }
        sq_file_unlock(in->file);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "cannot open target database '%s': %s", database,
                 in->db ? sqlite3_errmsg(in->db) : sqlite3_errstr(rc));
        sq_close(in);
        return -1;
    }
    sqlite3_extended_result_codes(in->db, 1);
    *instance = in;
    return 0;
}

/* Checks the record's names before any SQL is built from them. */
static rk_deliver_status sq_check_record(const rk_record *rec, rk_deliver_result *res)
{
    if (!rec->idempotency_key || !rec->idempotency_key[0]) {
        sq_msg(res, "record has no idempotency key");
        return RK_DELIVER_PERMANENT;
    }
    for (size_t i = 0; i < rec->n_fields; i++) {
        const char *f = rec->fields[i].name;
        if (!sq_ident_ok(f)) {
            sq_msg(res, "field name '%.64s' is not an identifier ([A-Za-z_][A-Za-z0-9_]*, "
                        "at most %d bytes)", f ? f : "", SQ_IDENT_MAX);
            return RK_DELIVER_PERMANENT;
        }
        if (sq_reserved_name(f)) {
            sq_msg(res, "field name '%s' is reserved by the sqlite connector", f);
            return RK_DELIVER_PERMANENT;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcasecmp(rec->fields[j].name, f) == 0) {
                sq_msg(res, "field '%s' appears twice in the record", f);
                return RK_DELIVER_PERMANENT;
            }
        }
    }
    return RK_DELIVER_OK;
}

/* Switches to WAL when open() could not (another writer was busy). */
static int sq_wal(sq_inst *in, rk_deliver_result *res)
{
    if (in->wal_pending) {
        if (sqlite3_exec(in->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
            sq_msg(res, "target database is busy: %s", sqlite3_errmsg(in->db));
            return -1;
        }
        in->wal_pending = 0;
    }
    return 0;
}

/*
 * Inserts the record (in the caller's transaction, or on its own).  A new
 * row answers OK with its rowid; a key that is already there answers OK
 * with the existing row's rowid (the earlier delivery went in, this one
 * changes nothing).  A failed INSERT leaves nothing behind: SQLite undoes
 * one statement that fails, and the transaction around it stays open
 * unless the error was one that ends it (I/O, full disk), which the
 * caller checks with sqlite3_get_autocommit.
 */
static rk_deliver_status sq_put(sq_inst *in, const rk_record *rec, rk_deliver_result *res)
{
    rk_deliver_status st;
    int rc = SQLITE_OK;
    /* a list of field names with a statement was checked, and its columns
     * made, when the statement was: the records of a job all have one */
    sqlite3_stmt *ins = sq_cached_stmt(in, rec);
    if (!rec->idempotency_key || !rec->idempotency_key[0]) {
        sq_msg(res, "record has no idempotency key");
        return RK_DELIVER_PERMANENT;
    }
    if (!ins) {
        if ((st = sq_check_record(rec, res)) != RK_DELIVER_OK ||
            (st = sq_ensure_table(in, rec, res)) != RK_DELIVER_OK)
            return st;
        if ((rc = sq_insert_stmt(in, rec, &ins)) != SQLITE_OK)
            goto sqlerr;
    }
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* SQLITE_STATIC: the record and now outlive the step, and the
     * bindings are cleared before this returns (a copy of each value was
     * a malloc, a memcpy and a free per field of every record) */
    int k = 1;
    for (size_t i = 0; i < rec->n_fields && rc == SQLITE_OK; i++, k++)
        rc = rec->fields[i].value
                 ? sqlite3_bind_text(ins, k, rec->fields[i].value, -1, SQLITE_STATIC)
                 : sqlite3_bind_null(ins, k);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(ins, k++, rec->idempotency_key, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = rec->submission_id
                 ? sqlite3_bind_text(ins, k++, rec->submission_id, -1, SQLITE_STATIC)
                 : sqlite3_bind_null(ins, k++);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(ins, k, now, -1, SQLITE_STATIC);
    /* the upsert returns the row's rowid whether it inserted or updated;
     * only an insert moves last_insert_rowid */
    sqlite3_int64 before = sqlite3_last_insert_rowid(in->db), rowid = 0;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(ins);
        if (rc == SQLITE_ROW) {
            rowid = sqlite3_column_int64(ins, 0);
            rc = sqlite3_step(ins);
        }
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    int inserted = rc == SQLITE_OK && sqlite3_last_insert_rowid(in->db) != before;
    sqlite3_reset(ins);
    sqlite3_clear_bindings(ins);
    if (rc != SQLITE_OK)
        goto sqlerr;
    if (inserted)
        sq_msg(res, "inserted row %lld", (long long)rowid);
    else
        sq_msg(res, "updated the row delivered before (row %lld)", (long long)rowid);
    if (res->target_id && res->target_id_size > 0)
        snprintf(res->target_id, res->target_id_size, "%lld", (long long)rowid);
    return RK_DELIVER_OK;

sqlerr:
    /* sqlite3_errmsg names the table and column for constraint failures
     * ("NOT NULL constraint failed: t.name"), never the values. */
    sq_msg(res, "insert into '%s' failed: %s", in->table,
           rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(in->db));
    st = sq_status(rc);
    sq_forget(in);
    return st;
}

static rk_deliver_status sq_deliver(void *instance, const rk_record *rec,
                                    rk_deliver_result *res)
{
    sq_inst *in = instance;
    sq_file_lock(in->file);
    rk_deliver_status st = sq_wal(in, res) ? RK_DELIVER_RETRY : sq_put(in, rec, res);
    sq_file_unlock(in->file);
    return st;
}

/*
 * ABI 1.1: all records in one transaction, so one commit (one fsync with
 * the target's synchronous = FULL) carries the whole batch.  A record
 * refused (PERMANENT) is left out and the others go in.  An error about
 * the database rather than the record (busy, I/O, full disk: RETRY or
 * FATAL) rolls the whole transaction back and answers it for every record
 * written so far and every one not yet tried.  A failed COMMIT turns every
 * OK into RETRY: nothing of the batch is in the target.
 */
static void sq_write_batch(sq_inst *in, size_t n, const rk_record *const *records,
                           rk_deliver_result *const *results, rk_deliver_status *status)
{
    if (sq_wal(in, results[0])) {
        for (size_t i = 0; i < n; i++) {
            status[i] = RK_DELIVER_RETRY;
            if (i)
                sq_msg(results[i], "%s", results[0]->message);
        }
        return;
    }
    int rc = sqlite3_exec(in->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rk_deliver_status st = sq_status(rc);
        for (size_t i = 0; i < n; i++) {
            status[i] = st;
            sq_msg(results[i], "cannot begin a transaction in the target: %s",
                   sqlite3_errmsg(in->db));
        }
        return;
    }
    size_t i = 0;
    rk_deliver_status abort_st = RK_DELIVER_OK;
    for (; i < n; i++) {
        status[i] = sq_put(in, records[i], results[i]);
        if (status[i] == RK_DELIVER_RETRY || status[i] == RK_DELIVER_FATAL ||
            sqlite3_get_autocommit(in->db)) {
            abort_st = status[i] == RK_DELIVER_FATAL ? RK_DELIVER_FATAL : RK_DELIVER_RETRY;
            status[i] = abort_st; /* the transaction ended under it: not the record's fault */
            break;
        }
    }
    if (abort_st == RK_DELIVER_OK) {
        rc = sqlite3_exec(in->db, "COMMIT", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return;
        abort_st = sq_status(rc) == RK_DELIVER_FATAL ? RK_DELIVER_FATAL : RK_DELIVER_RETRY;
        sq_log(in, RK_LOG_WARN, "commit of %zu records failed: %s", n,
               sqlite3_errmsg(in->db));
        i = n;
    }
    /* nothing of this batch is in the target */
    char why[600];
    snprintf(why, sizeof why, "%s", i < n ? results[i]->message : sqlite3_errmsg(in->db));
    if (!sqlite3_get_autocommit(in->db))
        sqlite3_exec(in->db, "ROLLBACK", NULL, NULL, NULL);
    sq_forget(in);
    for (size_t j = 0; j < n; j++) {
        if (j == i)
            continue; /* answered with its own message */
        if (j < i && status[j] == RK_DELIVER_PERMANENT)
            continue;
        status[j] = abort_st;
        sq_msg(results[j], "not written: the batch was rolled back (%s)", why);
        if (results[j]->target_id && results[j]->target_id_size)
            results[j]->target_id[0] = '\0';
    }
}

/* The batch under the target file's lock (see sq_file). */
static void sq_deliver_batch(void *instance, size_t n, const rk_record *const *records,
                             rk_deliver_result *const *results, rk_deliver_status *status)
{
    sq_inst *in = instance;
    sq_file_lock(in->file);
    sq_write_batch(in, n, records, results, status);
    sq_file_unlock(in->file);
}

static void sq_close(void *instance)
{
    sq_inst *in = instance;
    if (!in)
        return;
    sq_forget(in);
    sqlite3_close_v2(in->db);
    sq_file_unref(in->file);
    free(in->table);
    free(in);
}

static const rk_connector sq_descriptor = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "sqlite",
    .version = "1.1.0",
    .description = "inserts one row per record into a table of an SQLite database",
    .settings = sq_settings,
    .open = sq_open,
    .deliver = sq_deliver,
    .close = sq_close,
    .deliver_batch = sq_deliver_batch,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void)
{
    return &sq_descriptor;
}
