/*
 * postgres.c — the PostgreSQL connector: one row per record in a table of
 * a PostgreSQL database, through libpq.
 *
 * Settings (checked by the host; see docs/connectors.md):
 *   conninfo           libpq connection string or URI (required, secret:
 *                      it may carry a password, so it is never printed)
 *   table              TABLE or SCHEMA.TABLE, each part an identifier
 *                      [A-Za-z_][A-Za-z0-9_]* (required)
 *   create_table       true: create the table and add missing columns (default)
 *   connect_timeout_s  libpq connect_timeout (default 10)
 *
 * The table gets rk_id BIGSERIAL PRIMARY KEY, one TEXT column per field,
 * rk_idempotency_key TEXT UNIQUE NOT NULL, rk_submission TEXT and
 * rk_delivered_at TIMESTAMPTZ DEFAULT now().  It is created at the first
 * delivery (the fields are known then); a later record with a new field
 * adds its column with ADD COLUMN IF NOT EXISTS.  Inserts use
 * ON CONFLICT (rk_idempotency_key) DO UPDATE ... RETURNING rk_id, so a
 * repeated delivery leaves one row — with the values of the latest
 * delivery, which a replay after a corrected mapping needs — and answers
 * OK with its rk_id.
 *
 * Answers: a lost connection is reset once and the delivery tried again,
 * else RETRY; SQLSTATE classes 08, 40, 53, 55, 57, 58 and XX are RETRY;
 * 22, 23 and 42 are PERMANENT; 28 and 3D (authentication, no such
 * database) are FATAL.  Messages carry the SQLSTATE and the server's
 * primary message, except for class 22 whose messages quote the value
 * (personal data): those name only the column.
 */
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rekey_connector.h"

#define PG_IDENT_MAX 63 /* NAMEDATALEN - 1: longer names are cut by the server */

static const rk_setting_decl pg_settings[] = {
    {"conninfo", RK_SETTING_STRING, RK_SETTING_REQUIRED | RK_SETTING_SECRET, NULL,
     "libpq connection string, e.g. host=db dbname=fachverfahren user=rekey"},
    {"table", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL,
     "table (or schema.table) that receives one row per record"},
    {"create_table", RK_SETTING_BOOL, 0, "true",
     "create the table and add columns for new fields"},
    {"connect_timeout_s", RK_SETTING_INT, 0, "10", "seconds to wait for a connection"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

/* Columns the connector writes itself, and PostgreSQL's system columns. */
static const char *const pg_reserved[] = {"rk_id", "rk_idempotency_key", "rk_submission",
                                          "rk_delivered_at", "oid", "tableoid", "xmin",
                                          "xmax", "cmin", "cmax", "ctid", NULL};

typedef struct pg_inst {
    PGconn *conn;
    char *qtable;          /* the quoted table: "t" or "s"."t" */
    char *table;           /* as configured, for messages */
    int create_table;
    char **cols;           /* columns known to exist, when cols_known */
    size_t n_cols;
    int cols_known;
    void (*log)(void *, int, const char *);
    void *log_ctx;
} pg_inst;

/* ---- helpers ------------------------------------------------------------ */

static void pg_log(pg_inst *in, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pg_log(pg_inst *in, int level, const char *fmt, ...)
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

static void pg_msg(rk_deliver_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pg_msg(rk_deliver_result *r, const char *fmt, ...)
{
    if (!r->message || r->message_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, r->message_size, fmt, ap);
    va_end(ap);
}

/* Notices ("relation already exists, skipping") are expected; drop them
 * instead of letting libpq print them on stderr. */
static void pg_notice(void *arg, const char *message) { (void)arg; (void)message; }

/* 1 when s[0..n) is [A-Za-z_][A-Za-z0-9_]* and at most PG_IDENT_MAX bytes. */
static int pg_ident_okn(const char *s, size_t n)
{
    if (!s || n == 0 || n > PG_IDENT_MAX ||
        !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

static int pg_ident_ok(const char *s) { return s && pg_ident_okn(s, strlen(s)); }

static int pg_reserved_name(const char *s)
{
    for (size_t i = 0; pg_reserved[i]; i++)
        if (strcmp(s, pg_reserved[i]) == 0)
            return 1;
    return 0;
}

/* A small growable string for SQL; holds fixed text and validated,
 * quoted identifiers only (values always travel as parameters). */
typedef struct pg_str {
    char *s;
    size_t len, cap;
    int oom;
} pg_str;

static void pg_add(pg_str *b, const char *t)
{
    size_t n = strlen(t);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, t, n + 1);
    b->len += n;
}

static void pg_add_ident(pg_str *b, const char *ident)
{
    pg_add(b, "\"");
    pg_add(b, ident);
    pg_add(b, "\"");
}

/* What one SQL step came to: OK, or an answer with its message written. */
typedef struct pg_outcome {
    rk_deliver_status st;
    int conn_lost;         /* the connection was bad afterwards */
} pg_outcome;

/*
 * Classifies a failed result.  Writes the message (never the conninfo,
 * never a value) and returns the answer.  res may be NULL (libpq could
 * not even build a result: out of memory or no connection).  ddl: the
 * statement created a table or column, where a unique violation or
 * "already exists" means another writer raced us, which is transient.
 */
static pg_outcome pg_fail(pg_inst *in, PGresult *res, const char *what, int ddl,
                          rk_deliver_result *out)
{
    pg_outcome o = {RK_DELIVER_RETRY, 0};
    if (PQstatus(in->conn) != CONNECTION_OK) {
        o.conn_lost = 1;
        pg_msg(out, "%s: connection to the target database lost", what);
        return o;
    }
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *column = res ? PQresultErrorField(res, PG_DIAG_COLUMN_NAME) : NULL;
    if (!state || strlen(state) != 5) {
        pg_msg(out, "%s failed: %s", what, res ? "no SQLSTATE" : "out of memory");
        return o;
    }
    char cls[3] = {state[0], state[1], '\0'};
    if (!strcmp(cls, "22")) {
        o.st = RK_DELIVER_PERMANENT;
        if (column)
            pg_msg(out, "%s: the value of field '%s' does not fit its column (SQLSTATE %s)",
                   what, column, state);
        else
            pg_msg(out, "%s: a value does not fit its column's type (SQLSTATE %s)", what,
                   state);
        return o;
    }
    if (ddl && (!strcmp(cls, "23") || !strcmp(state, "42P07") || !strcmp(state, "42701")))
        o.st = RK_DELIVER_RETRY; /* another writer created the same table or column */
    else if (!strcmp(cls, "23") || !strcmp(cls, "42"))
        o.st = RK_DELIVER_PERMANENT;
    else if (!strcmp(cls, "28") || !strcmp(cls, "3D"))
        o.st = RK_DELIVER_FATAL;
    else
        o.st = RK_DELIVER_RETRY; /* 08 40 53 55 57 58 XX and anything unknown */
    pg_msg(out, "%s failed (SQLSTATE %s): %s", what, state, primary ? primary : "no message");
    return o;
}

static void pg_forget_cols(pg_inst *in)
{
    for (size_t i = 0; i < in->n_cols; i++)
        free(in->cols[i]);
    free(in->cols);
    in->cols = NULL;
    in->n_cols = 0;
    in->cols_known = 0;
}

static int pg_has_col(const pg_inst *in, const char *name)
{
    for (size_t i = 0; i < in->n_cols; i++)
        if (strcmp(in->cols[i], name) == 0)
            return 1;
    return 0;
}

/* Remembers that a column exists; 0 or -1 when memory runs out. */
static int pg_note_col(pg_inst *in, const char *name)
{
    char **cols = realloc(in->cols, (in->n_cols + 1) * sizeof *cols);
    if (!cols)
        return -1;
    in->cols = cols;
    if (!(cols[in->n_cols] = strdup(name)))
        return -1;
    in->n_cols++;
    return 0;
}

/* Runs a statement whose result is a command status (or rows, when
 * want_rows).  On success returns the result (caller PQclear's it);
 * otherwise fills *o and the message and returns NULL. */
static PGresult *pg_run_ddl(pg_inst *in, const char *sql, int nparams,
                            const char *const *params, int want_rows, int ddl, const char *what,
                            rk_deliver_result *out, pg_outcome *o)
{
    PGresult *r = PQexecParams(in->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType es = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (es == (want_rows ? PGRES_TUPLES_OK : PGRES_COMMAND_OK))
        return r;
    *o = pg_fail(in, r, what, ddl, out);
    PQclear(r);
    return NULL;
}


static PGresult *pg_run(pg_inst *in, const char *sql, int nparams, const char *const *params,
                        int want_rows, const char *what, rk_deliver_result *out,
                        pg_outcome *o)
{
    return pg_run_ddl(in, sql, nparams, params, want_rows, 0, what, out, o);
}

/*
 * Reads the table's columns from the catalogue (none when the table does
 * not exist).  to_regclass resolves the name as the INSERT will, through
 * the search_path.
 */
static pg_outcome pg_read_cols(pg_inst *in, rk_deliver_result *out)
{
    pg_outcome o = {RK_DELIVER_OK, 0};
    pg_forget_cols(in);
    const char *params[1] = {in->qtable};
    PGresult *r = pg_run(in,
                         "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
                         "AND attnum > 0 AND NOT attisdropped",
                         1, params, 1, "reading the columns of the target table", out, &o);
    if (!r)
        return o;
    for (int i = 0; i < PQntuples(r); i++) {
        if (pg_note_col(in, PQgetvalue(r, i, 0)) != 0) {
            PQclear(r);
            pg_msg(out, "out of memory");
            o.st = RK_DELIVER_RETRY;
            return o;
        }
    }
    PQclear(r);
    in->cols_known = 1;
    return o;
}

/*
 * Makes sure the table exists with the rk_ columns and a column for every
 * field of the record.  Only names not seen yet cost a statement, so the
 * ACCESS EXCLUSIVE lock of ALTER TABLE is taken once per new field.
 */
static pg_outcome pg_ensure_table(pg_inst *in, const rk_record *rec, rk_deliver_result *out)
{
    pg_outcome o = {RK_DELIVER_OK, 0};
    PGresult *r;
    if (!in->cols_known) {
        o = pg_read_cols(in, out);
        if (o.st != RK_DELIVER_OK || o.conn_lost)
            return o;
    }
    if (in->n_cols == 0) {
        if (!in->create_table) {
            pg_msg(out, "table '%s' does not exist and create_table is off", in->table);
            o.st = RK_DELIVER_FATAL;
            return o;
        }
        pg_str q = {0};
        pg_add(&q, "CREATE TABLE IF NOT EXISTS ");
        pg_add(&q, in->qtable);
        pg_add(&q, " (rk_id BIGSERIAL PRIMARY KEY");
        for (size_t i = 0; i < rec->n_fields; i++) {
            pg_add(&q, ", ");
            pg_add_ident(&q, rec->fields[i].name);
            pg_add(&q, " TEXT");
        }
        pg_add(&q, ", rk_idempotency_key TEXT UNIQUE NOT NULL, rk_submission TEXT, "
                   "rk_delivered_at TIMESTAMPTZ NOT NULL DEFAULT now())");
        if (q.oom) {
            free(q.s);
            pg_msg(out, "out of memory");
            o.st = RK_DELIVER_RETRY;
            return o;
        }
        r = pg_run_ddl(in, q.s, 0, NULL, 0, 1, "creating the target table", out, &o);
        free(q.s);
        if (!r)
            return o;
        PQclear(r);
        pg_log(in, RK_LOG_INFO, "created table '%s' with %zu field columns", in->table,
               rec->n_fields);
        o = pg_read_cols(in, out);
        if (o.st != RK_DELIVER_OK || o.conn_lost)
            return o;
    }
    static const char *const own[][2] = {
        {"rk_id", "BIGSERIAL"},
        {"rk_idempotency_key", "TEXT"},
        {"rk_submission", "TEXT"},
        {"rk_delivered_at", "TIMESTAMPTZ NOT NULL DEFAULT now()"}};
    for (size_t i = 0; i < 4 + rec->n_fields; i++) {
        const char *name = i < 4 ? own[i][0] : rec->fields[i - 4].name;
        const char *type = i < 4 ? own[i][1] : "TEXT";
        if (pg_has_col(in, name))
            continue;
        if (!in->create_table) {
            if (i < 4)
                pg_msg(out, "table '%s' has no column '%s' and create_table is off", in->table,
                       name);
            else
                pg_msg(out, "table '%s' has no column for field '%s' and create_table is off",
                       in->table, name);
            o.st = i < 4 ? RK_DELIVER_FATAL : RK_DELIVER_PERMANENT;
            return o;
        }
        pg_str q = {0};
        pg_add(&q, "ALTER TABLE ");
        pg_add(&q, in->qtable);
        pg_add(&q, " ADD COLUMN IF NOT EXISTS ");
        pg_add_ident(&q, name);
        pg_add(&q, " ");
        pg_add(&q, type);
        if (i == 1) /* ADD COLUMN ... UNIQUE creates the index ON CONFLICT needs */
            pg_add(&q, " UNIQUE");
        if (q.oom) {
            free(q.s);
            pg_msg(out, "out of memory");
            o.st = RK_DELIVER_RETRY;
            return o;
        }
        char what[128];
        snprintf(what, sizeof what, "adding column '%s'", name);
        r = pg_run_ddl(in, q.s, 0, NULL, 0, 1, what, out, &o);
        free(q.s);
        if (!r)
            return o;
        PQclear(r);
        if (pg_note_col(in, name) != 0) {
            pg_msg(out, "out of memory");
            o.st = RK_DELIVER_RETRY;
            return o;
        }
        pg_log(in, RK_LOG_INFO, "added column '%s' to table '%s'", name, in->table);
    }
    return o;
}

/* ---- the ABI ------------------------------------------------------------ */

static const char *pg_setting(const rk_connector_open_args *a, const char *name)
{
    for (size_t i = 0; i < a->n_settings; i++)
        if (strcmp(a->settings[i].name, name) == 0)
            return a->settings[i].value;
    return NULL;
}

static void pg_close(void *instance);

/* Copies libpq's error message without its trailing newline.  libpq's
 * connection errors name host, port and user, never the password. */
static void pg_conn_error(PGconn *c, char *out, size_t outlen)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    size_t n = strlen(m);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    snprintf(out, outlen, "%.*s", (int)n, m);
}

/*
 * Validates the settings and connects.  The conninfo goes to libpq as an
 * expandable dbname, followed by connect_timeout, so the setting wins
 * over a connect_timeout inside the string without the connector ever
 * editing (or printing) the secret string.
 */
static int pg_open(const rk_connector_open_args *args, void **instance, char *err,
                   size_t err_size)
{
    const char *conninfo = pg_setting(args, "conninfo");
    const char *table = pg_setting(args, "table");
    const char *create = pg_setting(args, "create_table");
    const char *timeout = pg_setting(args, "connect_timeout_s");
    if (!conninfo || !conninfo[0]) {
        snprintf(err, err_size, "setting 'conninfo' is empty");
        return -1;
    }
    const char *dot = table ? strchr(table, '.') : NULL;
    int table_ok = dot ? pg_ident_okn(table, (size_t)(dot - table)) && pg_ident_ok(dot + 1)
                       : pg_ident_ok(table);
    if (!table_ok) {
        snprintf(err, err_size,
                 "table name '%.64s' is not an identifier or schema.identifier "
                 "([A-Za-z_][A-Za-z0-9_]*, at most %d bytes each)",
                 table ? table : "", PG_IDENT_MAX);
        return -1;
    }
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    if (!opts) {
        /* libpq's message may quote the string, password included. */
        PQfreemem(errmsg);
        snprintf(err, err_size, "setting 'conninfo' is not a valid libpq connection string");
        return -1;
    }
    PQconninfoFree(opts);

    pg_inst *in = calloc(1, sizeof *in);
    size_t ql = strlen(table) + 8;
    if (!in || !(in->table = strdup(table)) || !(in->qtable = malloc(ql))) {
        if (in)
            free(in->table);
        free(in);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (dot)
        snprintf(in->qtable, ql, "\"%.*s\".\"%s\"", (int)(dot - table), table, dot + 1);
    else
        snprintf(in->qtable, ql, "\"%s\"", table);
    in->create_table = !create || strcmp(create, "true") == 0;
    in->log = args->log;
    in->log_ctx = args->log_ctx;

    const char *keys[] = {"application_name", "dbname", "connect_timeout", NULL};
    const char *vals[] = {"rekey", conninfo, timeout ? timeout : "10", NULL};
    in->conn = PQconnectdbParams(keys, vals, 1);
    if (!in->conn || PQstatus(in->conn) != CONNECTION_OK) {
        char m[512];
        pg_conn_error(in->conn, m, sizeof m);
        snprintf(err, err_size, "cannot connect to the target database: %s", m);
        pg_close(in);
        return -1;
    }
    PQsetNoticeProcessor(in->conn, pg_notice, NULL);
    *instance = in;
    return 0;
}

/* Checks the record's names before any SQL is built from them. */
static rk_deliver_status pg_check_record(const rk_record *rec, rk_deliver_result *res)
{
    if (!rec->idempotency_key || !rec->idempotency_key[0]) {
        pg_msg(res, "record has no idempotency key");
        return RK_DELIVER_PERMANENT;
    }
    for (size_t i = 0; i < rec->n_fields; i++) {
        const char *f = rec->fields[i].name;
        if (!pg_ident_ok(f)) {
            pg_msg(res, "field name '%.64s' is not an identifier ([A-Za-z_][A-Za-z0-9_]*, "
                        "at most %d bytes)", f ? f : "", PG_IDENT_MAX);
            return RK_DELIVER_PERMANENT;
        }
        if (pg_reserved_name(f)) {
            pg_msg(res, "field name '%s' is reserved by the postgres connector", f);
            return RK_DELIVER_PERMANENT;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(rec->fields[j].name, f) == 0) {
                pg_msg(res, "field '%s' appears twice in the record", f);
                return RK_DELIVER_PERMANENT;
            }
        }
    }
    return RK_DELIVER_OK;
}

/*
 * One attempt: table, insert, and the existing row's id on a conflict.
 * Safe to repeat after a reset because the insert is idempotent.
 */
static pg_outcome pg_attempt(pg_inst *in, const rk_record *rec, rk_deliver_result *res)
{
    pg_outcome o = pg_ensure_table(in, rec, res);
    if (o.st != RK_DELIVER_OK || o.conn_lost)
        return o;

    size_t np = rec->n_fields + 2;
    const char **params = calloc(np, sizeof *params);
    pg_str q = {0};
    if (!params) {
        pg_msg(res, "out of memory");
        o.st = RK_DELIVER_RETRY;
        return o;
    }
    pg_add(&q, "INSERT INTO ");
    pg_add(&q, in->qtable);
    pg_add(&q, " (");
    for (size_t i = 0; i < rec->n_fields; i++) {
        pg_add_ident(&q, rec->fields[i].name);
        pg_add(&q, ", ");
        params[i] = rec->fields[i].value;
    }
    pg_add(&q, "rk_idempotency_key, rk_submission) VALUES (");
    for (size_t i = 0; i < np; i++) {
        char ph[24];
        snprintf(ph, sizeof ph, "%s$%zu", i ? ", " : "", i + 1);
        pg_add(&q, ph);
    }
    pg_add(&q, ") ON CONFLICT (rk_idempotency_key) DO UPDATE SET ");
    for (size_t i = 0; i < rec->n_fields; i++) {
        pg_add_ident(&q, rec->fields[i].name);
        pg_add(&q, " = EXCLUDED.");
        pg_add_ident(&q, rec->fields[i].name);
        pg_add(&q, ", ");
    }
    /* xmax = 0 only for a row this statement inserted */
    pg_add(&q, "rk_delivered_at = now() RETURNING rk_id, (xmax = 0)");
    params[rec->n_fields] = rec->idempotency_key;
    params[rec->n_fields + 1] = rec->submission_id;
    if (q.oom || np > 65535) {
        free(q.s);
        free(params);
        pg_msg(res, q.oom ? "out of memory" : "record has too many fields");
        o.st = q.oom ? RK_DELIVER_RETRY : RK_DELIVER_PERMANENT;
        return o;
    }
    char what[128];
    snprintf(what, sizeof what, "insert into '%s'", in->table);
    PGresult *r = pg_run(in, q.s, (int)np, params, 1, what, res, &o);
    free(q.s);
    free(params);
    if (!r) {
        /* The table may have changed under us: read it again next time. */
        pg_forget_cols(in);
        return o;
    }
    int fresh = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    if (PQntuples(r) != 1) {
        PQclear(r);
        pg_str s = {0};
        pg_add(&s, "SELECT rk_id FROM ");
        pg_add(&s, in->qtable);
        pg_add(&s, " WHERE rk_idempotency_key = $1");
        const char *kp[1] = {rec->idempotency_key};
        r = s.oom ? NULL : pg_run(in, s.s, 1, kp, 1, what, res, &o);
        if (s.oom) {
            pg_msg(res, "out of memory");
            o.st = RK_DELIVER_RETRY;
        }
        free(s.s);
        if (!r)
            return o;
        if (PQntuples(r) != 1) {
            PQclear(r);
            pg_msg(res, "row for the idempotency key vanished during the insert");
            o.st = RK_DELIVER_RETRY;
            return o;
        }
    }
    const char *id = PQgetvalue(r, 0, 0);
    if (res->target_id && res->target_id_size > 0)
        snprintf(res->target_id, res->target_id_size, "%s", id);
    pg_msg(res, fresh ? "inserted row rk_id %s" : "updated the row delivered before (rk_id %s)",
           id);
    PQclear(r);
    o.st = RK_DELIVER_OK;
    return o;
}

/*
 * Delivers one record.  A connection found broken (before or during the
 * attempt) is reset once and the attempt repeated; if that does not help
 * the answer is RETRY and the host's backoff takes over.
 */
static rk_deliver_status pg_deliver(void *instance, const rk_record *rec,
                                    rk_deliver_result *res)
{
    pg_inst *in = instance;
    rk_deliver_status st = pg_check_record(rec, res);
    if (st != RK_DELIVER_OK)
        return st;
    int reset = 0;
    if (PQstatus(in->conn) != CONNECTION_OK) {
        PQreset(in->conn);
        reset = 1;
        pg_forget_cols(in);
        if (PQstatus(in->conn) != CONNECTION_OK) {
            char m[256];
            pg_conn_error(in->conn, m, sizeof m);
            pg_msg(res, "no connection to the target database: %s", m);
            return RK_DELIVER_RETRY;
        }
    }
    pg_outcome o = pg_attempt(in, rec, res);
    if (o.conn_lost && !reset) {
        pg_log(in, RK_LOG_WARN, "connection to the target database lost; reconnecting");
        PQreset(in->conn);
        pg_forget_cols(in);
        if (PQstatus(in->conn) != CONNECTION_OK) {
            char m[256];
            pg_conn_error(in->conn, m, sizeof m);
            pg_msg(res, "connection to the target database lost: %s", m);
            return RK_DELIVER_RETRY;
        }
        o = pg_attempt(in, rec, res);
    }
    return o.conn_lost ? RK_DELIVER_RETRY : o.st;
}

/* Runs a transaction-control statement; 0, or -1 with *o and res's
 * message set. */
static int pg_txn(pg_inst *in, const char *sql, rk_deliver_result *res, pg_outcome *o)
{
    PGresult *r = pg_run(in, sql, 0, NULL, 0, sql, res, o);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/*
 * ABI 1.1: the records of a batch in one transaction, so one commit of
 * the target carries them all.  Each record is written under a savepoint:
 * PostgreSQL aborts the whole transaction at the first failed statement,
 * so a record the target refuses (PERMANENT) is rolled back to its
 * savepoint and the others go in.  An error about the connection or the
 * database (RETRY, FATAL) rolls the transaction back and answers that for
 * every record not refused; a failed COMMIT turns the OKs into RETRY.
 * No reconnect-and-repeat inside a batch: the host sends it again.
 */
static void pg_deliver_batch(void *instance, size_t n, const rk_record *const *records,
                             rk_deliver_result *const *results, rk_deliver_status *status)
{
    pg_inst *in = instance;
    if (PQstatus(in->conn) != CONNECTION_OK) {
        PQreset(in->conn);
        pg_forget_cols(in);
    }
    pg_outcome o = {RK_DELIVER_OK, 0};
    size_t i = n, bad = n;
    char why[600] = "";
    if (PQstatus(in->conn) != CONNECTION_OK) {
        char m[256];
        pg_conn_error(in->conn, m, sizeof m);
        snprintf(why, sizeof why, "no connection to the target database: %s", m);
        o.st = RK_DELIVER_RETRY;
    } else if (pg_txn(in, "BEGIN", results[0], &o) == 0) {
        for (i = 0; i < n; i++) {
            status[i] = pg_check_record(records[i], results[i]);
            if (status[i] != RK_DELIVER_OK)
                continue; /* refused before anything was written */
            if (pg_txn(in, "SAVEPOINT rk_record", results[i], &o) != 0) {
                bad = i;
                break;
            }
            pg_outcome a = pg_attempt(in, records[i], results[i]);
            if (a.conn_lost || a.st == RK_DELIVER_RETRY || a.st == RK_DELIVER_FATAL) {
                o = a;
                if (o.conn_lost)
                    o.st = RK_DELIVER_RETRY;
                bad = i;
                break;
            }
            status[i] = a.st;
            if (pg_txn(in, a.st == RK_DELIVER_OK ? "RELEASE SAVEPOINT rk_record"
                                                 : "ROLLBACK TO SAVEPOINT rk_record",
                       results[i], &o) != 0) {
                bad = i;
                break;
            }
        }
        if (i == n) {
            rk_deliver_result *r0 = results[0];
            char keep[1024];
            snprintf(keep, sizeof keep, "%s", r0->message ? r0->message : "");
            if (pg_txn(in, "COMMIT", r0, &o) == 0)
                return;
            snprintf(why, sizeof why, "%s", r0->message ? r0->message : "commit failed");
            if (r0->message && r0->message_size)
                snprintf(r0->message, r0->message_size, "%s", keep);
            bad = n;
        } else {
            snprintf(why, sizeof why, "%s",
                     bad < n && results[bad]->message ? results[bad]->message : "");
        }
        if (PQstatus(in->conn) == CONNECTION_OK) {
            PGresult *r = PQexec(in->conn, "ROLLBACK");
            PQclear(r);
        }
        pg_forget_cols(in);
    } else {
        snprintf(why, sizeof why, "%s", results[0]->message ? results[0]->message : "");
        bad = n;
    }
    /* nothing of this batch is in the target */
    rk_deliver_status st = o.st == RK_DELIVER_FATAL ? RK_DELIVER_FATAL : RK_DELIVER_RETRY;
    for (size_t j = 0; j < n; j++) {
        if (j == bad) {
            status[j] = st;
            continue; /* answered with its own message */
        }
        if (j < i && j < bad && status[j] == RK_DELIVER_PERMANENT)
            continue;
        status[j] = st;
        pg_msg(results[j], "not written: the batch was rolled back (%s)", why);
        if (results[j]->target_id && results[j]->target_id_size)
            results[j]->target_id[0] = '\0';
    }
}

static void pg_close(void *instance)
{
    pg_inst *in = instance;
    if (!in)
        return;
    pg_forget_cols(in);
    PQfinish(in->conn);
    free(in->qtable);
    free(in->table);
    free(in);
}

static const rk_connector pg_descriptor = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "postgres",
    .version = "1.1.0",
    .description = "inserts one row per record into a table of a PostgreSQL database",
    .settings = pg_settings,
    .open = pg_open,
    .deliver = pg_deliver,
    .close = pg_close,
    .deliver_batch = pg_deliver_batch,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void)
{
    return &pg_descriptor;
}
