/*
 * test_store.c — agent/store.c: opening and migrating the database (0600,
 * WAL, user_version; newer and foreign files refused), submissions with
 * their first job row and event, payloads, state transitions and the
 * append-only audit log, results, duplicate keys, delivery bookkeeping,
 * pending jobs, the JSON read side and group commit.
 *
 * Each test gets a fresh database in a mkdtemp folder.  What the store
 * wrote is checked through a second, independent SQLite connection
 * ("side"), so the assertions do not trust the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "record.h"
#include "store.h"
#include "util.h"

/* Entries in store.c's migrations[].  store.h does not export the count;
 * when a migration is added, this number must follow (on purpose: the
 * test notices a schema change nobody meant to make). */
#ifdef RK_STORE_SCHEMA_VERSION
#define SCHEMA_VERSION RK_STORE_SCHEMA_VERSION
#else
#define SCHEMA_VERSION 3
#endif

#define DAY_MS 86400000LL
#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */

typedef struct fixture {
    char dir[256];
    char db[300];
    char err[1024];
    rk_store *s;
    sqlite3 *side;
    int n_subs;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/rk_store_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->db, sizeof f->db, "%s/rekey.db", f->dir);
    if (rk_store_open(f->db, 0, &f->s, f->err, sizeof f->err) != 0)
        return -1;
    if (sqlite3_open_v2(f->db, &f->side, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return -1;
    sqlite3_busy_timeout(f->side, 5000);
    *state = f;
    return 0;
}

static void rm_in_dir(const fixture *f, const char *name)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    unlink(p);
}

static int teardown(void **state)
{
    fixture *f = *state;
    rk_store_close(f->s);
    sqlite3_close(f->side);
    const char *files[] = {"rekey.db", "rekey.db-wal", "rekey.db-shm", "other.db",
                           "other.db-wal", "other.db-shm", "text.db"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        rm_in_dir(f, files[i]);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* One integer from sql on the side connection (fails the test on error). */
static int64_t q_int(fixture *f, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(f->side, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("side query '%s': %s", sql, sqlite3_errmsg(f->side));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        fail_msg("side query '%s' returned no row", sql);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One text value from sql (NULL stays NULL); static buffer. */
static const char *q_text(fixture *f, const char *sql)
{
    static char buf[4][512];
    static int which;
    which = (which + 1) % 4;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(f->side, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("side query '%s': %s", sql, sqlite3_errmsg(f->side));
    if (sqlite3_step(st) != SQLITE_ROW)
        fail_msg("side query '%s' returned no row", sql);
    const unsigned char *t = sqlite3_column_text(st, 0);
    const char *out = NULL;
    if (t) {
        snprintf(buf[which], sizeof buf[which], "%s", (const char *)t);
        out = buf[which];
    }
    sqlite3_finalize(st);
    return out;
}

/* Runs sql on the side connection; returns the SQLite result code and
 * copies the error message into msg. */
static int side_exec(fixture *f, const char *sql, char *msg, size_t msglen)
{
    char *m = NULL;
    int rc = sqlite3_exec(f->side, sql, NULL, NULL, &m);
    if (msg)
        snprintf(msg, msglen, "%s", m ? m : "");
    sqlite3_free(m);
    return rc;
}

static int64_t count_where(fixture *f, const char *table, const char *where)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s%s%s", table, where ? " WHERE " : "",
             where ? where : "");
    return q_int(f, sql);
}

/* The matched job of a test job, written directly: the tests of queries
 * need jobs of several kinds in any state (the daemon writes these
 * columns with a transition, rk_store_advance). */
static void set_job(fixture *f, int64_t id, const char *job, long version)
{
    char sql[256], msg[256];
    snprintf(sql, sizeof sql, "UPDATE jobs SET job = '%s', job_version = %ld WHERE id = %lld",
             job, version, (long long)id);
    if (side_exec(f, sql, msg, sizeof msg) != SQLITE_OK)
        fail_msg("set_job: %s", msg);
}

/* Stores doc as a new submission taken from "dir:/in" at received_ms. */
static int64_t add_doc(fixture *f, const char *ref, const char *doc, int64_t received_ms)
{
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate(doc, strlen(doc), &z, &zlen), 0);
    char uid[40], sha[65];
    snprintf(uid, sizeof uid, "uid%04d", ++f->n_subs);
    rk_sha256_hex(doc, strlen(doc), sha);
    rk_submission_in in = {
        .uid = uid,
        .source = "dir:/in",
        .source_ref = ref,
        .sha256 = sha,
        .size = strlen(doc),
        .zpayload = z,
        .zlen = zlen,
        .received_ms = received_ms,
    };
    int64_t id = 0;
    int rc = rk_store_add_submission(f->s, &in, "test", &id);
    free(z);
    assert_int_equal(rc, 0);
    assert_true(id > 0);
    return id;
}

static int64_t add(fixture *f)
{
    char ref[32];
    snprintf(ref, sizeof ref, "f%d.xml", f->n_subs + 1);
    return add_doc(f, ref, "<A/>", T0);
}

static void set_field(rk_mapped_field *fl, const char *name, const char *value,
                      const char *source, const char *xpath, const char *node)
{
    fl->name = name ? strdup(name) : NULL;
    fl->value = value ? strdup(value) : NULL;
    fl->source = source ? strdup(source) : NULL;
    fl->xpath = xpath ? strdup(xpath) : NULL;
    fl->node = node ? strdup(node) : NULL;
}

/* ---- opening and migrating ---------------------------------------------------- */

static void test_open_creates_0600_wal_migrated(void **state)
{
    fixture *f = *state;
    struct stat st;
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_string_equal(q_text(f, "PRAGMA journal_mode"), "wal");
    assert_int_equal(q_int(f, "PRAGMA user_version"), SCHEMA_VERSION);
    const char *tables[] = {"submissions", "jobs",      "events",     "anomalies",
                            "fieldsets",   "job_fields", "dupkeys"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        char where[128];
        snprintf(where, sizeof where, "type = 'table' AND name = '%s'", tables[i]);
        if (count_where(f, "sqlite_master", where) != 1)
            fail_msg("table %s missing after migration", tables[i]);
    }
    /* the fields of every job, one row per field, as before migration 8 */
    assert_int_equal(count_where(f, "sqlite_master", "type = 'view' AND name = 'fields'"), 1);
    /* the sidecar files SQLite creates are not world-readable either */
    char wal[400];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    if (stat(wal, &st) == 0)
        assert_int_equal(st.st_mode & 0077, 0);
}

static void test_reopen_does_not_migrate_again(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    rk_store_close(f->s);
    f->s = NULL;

    /* capture the log: a migration announces itself at info level */
    char logpath[400];
    snprintf(logpath, sizeof logpath, "%s/log.txt", f->dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    rk_log_set_level(RK_LOG_LVL_INFO);
    int rc = rk_store_open(f->db, 0, &f->s, f->err, sizeof f->err);
    rk_log_set_level(RK_LOG_LVL_ERROR);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *log = NULL;
    size_t loglen = 0;
    assert_int_equal(rk_read_file(logpath, 1 << 20, &log, &loglen), 0);
    unlink(logpath);

    assert_int_equal(rc, 0);
    assert_null(strstr(log, "migrated"));
    free(log);
    assert_int_equal(q_int(f, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_int_equal(count_where(f, "jobs", NULL), 1);
    char *data = NULL, *uid = NULL;
    size_t len;
    assert_int_equal(rk_store_load_payload(f->s, id, 1024, &data, &len, &uid), 0);
    assert_string_equal(data, "<A/>");
    free(data);
    free(uid);
}

/* A database of schema 7 kept its fields one row per field: migration 8
 * moves them into one row per job and a field set per list of names and
 * XPaths, and the view reads them back as they were. */
static void test_fields_migrated_to_rows_per_job(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f), c = add(f);
    rk_store_close(f->s);
    f->s = NULL;
    char msg[256];
    int rc = side_exec(
        f,
        "DROP VIEW fields; DROP TABLE job_fields; DROP TABLE fieldsets;"
        "CREATE TABLE fields (job_id INTEGER NOT NULL REFERENCES jobs(id),"
        "  ord INTEGER NOT NULL, name TEXT NOT NULL, value TEXT, source TEXT, xpath TEXT,"
        "  node TEXT, PRIMARY KEY (job_id, ord)) WITHOUT ROWID;"
        /* inserted out of order on purpose */
        "INSERT INTO fields VALUES (1, 1, 'vorname', NULL, NULL, 'a:Vorname', NULL);"
        "INSERT INTO fields VALUES (1, 0, 'name', 'Müller', ' Müller', 'a:Name', '/A/Name');"
        "INSERT INTO fields VALUES (2, 0, 'name', 'Schulz \"Q\"', 'x', 'a:Name', '/A/Name');"
        "INSERT INTO fields VALUES (2, 1, 'vorname', 'Eva', 'Eva', 'a:Vorname', '/A/V');"
        "INSERT INTO fields VALUES (3, 0, 'plz', '12345', '12345', 'a:Plz', '/A/Plz');"
        "PRAGMA user_version = 7;",
        msg, sizeof msg);
    if (rc != SQLITE_OK)
        fail_msg("making a schema 7 database: %s", msg);
    assert_int_equal(rk_store_open(f->db, 0, &f->s, f->err, sizeof f->err), 0);
    assert_int_equal(q_int(f, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_int_equal(count_where(f, "fieldsets", NULL), 2); /* a and b share theirs */
    assert_int_equal(count_where(f, "job_fields", NULL), 3);
    assert_int_equal(count_where(f, "fields", NULL), 5);
    rk_result r;
    rk_result_init(&r);
    assert_int_equal(rk_store_load_result(f->s, a, &r), 0);
    assert_int_equal(r.n_fields, 2);
    assert_string_equal(r.fields[0].name, "name");
    assert_string_equal(r.fields[0].value, "Müller");
    assert_string_equal(r.fields[0].source, " Müller");
    assert_string_equal(r.fields[0].xpath, "a:Name");
    assert_string_equal(r.fields[0].node, "/A/Name");
    assert_string_equal(r.fields[1].name, "vorname");
    assert_null(r.fields[1].value);
    assert_null(r.fields[1].node);
    rk_result_free(&r);
    rk_result_init(&r);
    assert_int_equal(rk_store_load_result(f->s, b, &r), 0);
    assert_int_equal(r.n_fields, 2);
    assert_string_equal(r.fields[0].value, "Schulz \"Q\"");
    assert_string_equal(r.fields[1].node, "/A/V");
    rk_result_free(&r);
    assert_string_equal(q_text(f, "SELECT name || '=' || value FROM fields WHERE job_id = 3"),
                        "plz=12345");
    (void)c;
}

/* Schema 9: the deadline index only for held and failed jobs, and no
 * index of the events' times; the rows stay. */
static void test_schema9_indexes(void **state)
{
    fixture *f = *state;
    int64_t a = add(f);
    assert_int_equal(rk_store_transition(f->s, a, NULL, RK_ST_REVIEW, "t", NULL), 0);
    rk_store_close(f->s);
    f->s = NULL;
    char msg[256];
    if (side_exec(f, "DROP INDEX jobs_deadline; CREATE INDEX jobs_deadline ON jobs(state,"
                     " deadline_at); CREATE INDEX events_at ON events(at);"
                     " PRAGMA user_version = 8;", msg, sizeof msg) != SQLITE_OK)
        fail_msg("making a schema 8 database: %s", msg);
    assert_int_equal(rk_store_open(f->db, 0, &f->s, f->err, sizeof f->err), 0);
    assert_int_equal(q_int(f, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_int_equal(count_where(f, "sqlite_master", "name = 'events_at'"), 0);
    assert_int_equal(count_where(f, "sqlite_master", "name = 'jobs_deadline' AND sql LIKE"
                                                     " '%WHERE state IN (''review'',''failed'')'"),
                     1);
    assert_int_equal(count_where(f, "events", NULL), 2);
    assert_int_equal(count_where(f, "jobs", "state = 'review'"), 1);
}

/* Schema 10: the deliveries table copied with its state checked by
 * comparisons; rows and ids stay, a bad state is still refused, and
 * writing a row no longer builds a temporary b-tree for the check. */
static void test_schema10_delivery_check(void **state)
{
    fixture *f = *state;
    int64_t a = add(f);
    rk_delivery d;
    assert_int_equal(rk_store_delivery_get(f->s, a, "sqlite", "sqlite", "k1", &d), 0);
    assert_int_equal(rk_store_delivery_record(f->s, &d, "delivered", 1, NULL, "7"), 0);
    rk_store_close(f->s);
    f->s = NULL;
    char msg[256];
    if (side_exec(f, "DROP TABLE deliveries; CREATE TABLE deliveries ("
                     "  id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs(id),"
                     "  name TEXT NOT NULL, plugin TEXT NOT NULL,"
                     "  state TEXT NOT NULL CHECK (state IN ('pending','delivered','refused',"
                     "  'failed')), attempts INTEGER NOT NULL DEFAULT 0,"
                     "  idempotency_key TEXT NOT NULL, target_id TEXT, last_error TEXT,"
                     "  updated_at TEXT NOT NULL, UNIQUE (job_id, name));"
                     "INSERT INTO deliveries VALUES (5, 1, 'sqlite', 'sqlite', 'delivered', 1,"
                     "  'k1', '7', NULL, 't');"
                     "PRAGMA user_version = 9;", msg, sizeof msg) != SQLITE_OK)
        fail_msg("making a schema 9 database: %s", msg);
    assert_int_equal(rk_store_open(f->db, 0, &f->s, f->err, sizeof f->err), 0);
    assert_int_equal(q_int(f, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_string_equal(q_text(f, "SELECT id || '|' || job_id || '|' || state || '|' ||"
                                  " idempotency_key || '|' || target_id FROM deliveries"),
                        "5|1|delivered|k1|7");
    assert_int_equal(count_where(f, "sqlite_master", "name = 'deliveries_new'"), 0);
    assert_int_equal(side_exec(f, "INSERT INTO deliveries(job_id, name, plugin, state,"
                                  " idempotency_key, updated_at) VALUES (1, 'x', 'x', 'bogus',"
                                  " 'k2', 't')", msg, sizeof msg), SQLITE_CONSTRAINT);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->side, "EXPLAIN INSERT INTO deliveries(job_id, name,"
                                                 " plugin, state, idempotency_key, updated_at)"
                                                 " VALUES (1, 'y', 'y', 'pending', 'k3', 't')",
                                        -1, &st, NULL), SQLITE_OK);
    int ephemeral = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        ephemeral += strcmp((const char *)sqlite3_column_text(st, 1), "OpenEphemeral") == 0;
    sqlite3_finalize(st);
    assert_int_equal(ephemeral, 0);
}

static void test_newer_schema_refused(void **state)
{
    fixture *f = *state;
    rk_store_close(f->s);
    f->s = NULL;
    assert_int_equal(side_exec(f, "PRAGMA user_version = 99", NULL, 0), SQLITE_OK);
    rk_store *s = NULL;
    f->err[0] = '\0';
    assert_int_equal(rk_store_open(f->db, 0, &s, f->err, sizeof f->err), RK_E_DB);
    assert_null(s);
    char want[128];
    snprintf(want, sizeof want, "database schema version 99 is newer than this rekey (%d)",
             SCHEMA_VERSION);
    assert_non_null(strstr(f->err, want));
    /* refused without touching it */
    assert_int_equal(q_int(f, "PRAGMA user_version"), 99);
}

/* rekeyctl's read-only open must refuse a newer schema too: it would
 * otherwise read tables whose meaning it does not know. */
static void test_newer_schema_refused_readonly(void **state)
{
    fixture *f = *state;
    rk_store_close(f->s);
    f->s = NULL;
    assert_int_equal(side_exec(f, "PRAGMA user_version = 99", NULL, 0), SQLITE_OK);
    rk_store *s = NULL;
    f->err[0] = '\0';
    int rc = rk_store_open(f->db, RK_STORE_READONLY, &s, f->err, sizeof f->err);
    rk_store_close(s);
    assert_int_equal(rc, RK_E_DB);
    assert_non_null(strstr(f->err, "99"));
}

static void test_readonly_missing_file(void **state)
{
    fixture *f = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/missing.db", f->dir);
    rk_store *s = NULL;
    assert_int_equal(rk_store_open(path, RK_STORE_READONLY, &s, f->err, sizeof f->err),
                     -ENOENT);
    assert_null(s);
    char want[512];
    snprintf(want, sizeof want, "cannot open database %s: No such file or directory", path);
    assert_non_null(strstr(f->err, want));
    assert_non_null(strstr(f->err, "--db"));
    /* and it was not created */
    assert_int_equal(access(path, F_OK), -1);
}

static void test_readonly_foreign_files(void **state)
{
    fixture *f = *state;
    /* a SQLite database that rekey never migrated */
    char other[400];
    snprintf(other, sizeof other, "%s/other.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    rk_store *s = NULL;
    assert_int_equal(rk_store_open(other, RK_STORE_READONLY, &s, f->err, sizeof f->err),
                     RK_E_DB);
    assert_null(s);
    char want[512];
    snprintf(want, sizeof want, "%s is not a rekey database", other);
    assert_non_null(strstr(f->err, want));

    /* a text file */
    char text[400];
    snprintf(text, sizeof text, "%s/text.db", f->dir);
    FILE *fp = fopen(text, "w");
    assert_non_null(fp);
    fputs("this is not a database, just some text in a file\n", fp);
    fclose(fp);
    f->err[0] = '\0';
    assert_int_equal(rk_store_open(text, RK_STORE_READONLY, &s, f->err, sizeof f->err),
                     RK_E_DB);
    snprintf(want, sizeof want, "%s is not a rekey database", text);
    assert_non_null(strstr(f->err, want));
    /* read-write refuses it too, naming the file, and leaves it alone */
    f->err[0] = '\0';
    assert_int_equal(rk_store_open(text, 0, &s, f->err, sizeof f->err), RK_E_DB);
    assert_null(s);
    assert_non_null(strstr(f->err, text));
    char *data = NULL;
    size_t len;
    assert_int_equal(rk_read_file(text, 4096, &data, &len), 0);
    assert_string_equal(data, "this is not a database, just some text in a file\n");
    free(data);
}

static void test_readonly_open_reads(void **state)
{
    fixture *f = *state;
    add(f);
    rk_store *ro = NULL;
    assert_int_equal(rk_store_open(f->db, RK_STORE_READONLY, &ro, f->err, sizeof f->err), 0);
    json_t *st = rk_store_status_json(ro);
    assert_int_equal(json_integer_value(json_object_get(st, "total")), 1);
    json_decref(st);
    /* and cannot write */
    assert_int_equal(rk_store_transition(ro, 1, NULL, RK_ST_FAILED, "t", NULL), RK_E_DB);
    rk_store_close(ro);
    assert_string_equal(q_text(f, "SELECT state FROM jobs WHERE id = 1"), "received");
}

/* ---- submissions and payloads ----------------------------------------------- */

static void test_add_submission_rows(void **state)
{
    fixture *f = *state;
    int64_t id = add_doc(f, "antrag-1.xml", "<Antrag>x</Antrag>", T0 + 1234);
    assert_int_equal(count_where(f, "submissions", NULL), 1);
    assert_int_equal(count_where(f, "jobs", NULL), 1);
    assert_int_equal(count_where(f, "events", NULL), 1);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT state || '|' || COALESCE(job, '-') || '|' || attempts FROM jobs"
             " WHERE id = %lld", (long long)id);
    assert_string_equal(q_text(f, sql), "received|-|0");
    assert_string_equal(q_text(f, "SELECT uid || '|' || source || '|' || source_ref || '|'"
                                  " || received_at || '|' || size FROM submissions"),
                        "uid0001|dir:/in|antrag-1.xml|2026-01-01T00:00:01.234Z|18");
    char sha[65];
    rk_sha256_hex("<Antrag>x</Antrag>", 18, sha);
    assert_string_equal(q_text(f, "SELECT sha256 FROM submissions"), sha);
    snprintf(sql, sizeof sql,
             "SELECT COALESCE(from_state, 'NULL') || '|' || to_state || '|' || actor"
             " || '|' || reason FROM events WHERE job_id = %lld", (long long)id);
    assert_string_equal(q_text(f, sql), "NULL|received|test|taken from dir:/in");

    /* found again by source and name */
    int64_t found = 0;
    assert_int_equal(rk_store_find_source_ref(f->s, "dir:/in", "antrag-1.xml", &found), 0);
    assert_int_equal(found, id);
    assert_int_equal(rk_store_find_source_ref(f->s, "dir:/in", "other.xml", &found),
                     RK_E_NOTFOUND);
    assert_int_equal(rk_store_find_source_ref(f->s, "dir:/elsewhere", "antrag-1.xml", &found),
                     RK_E_NOTFOUND);
}

static void test_add_submission_duplicate_uid(void **state)
{
    fixture *f = *state;
    add(f);
    rk_submission_in in = {.uid = "uid0001", .source = "dir:/in", .source_ref = "again.xml",
                           .sha256 = "00", .size = 1, .zpayload = "x", .zlen = 1,
                           .received_ms = T0};
    int64_t id = 0;
    assert_int_equal(rk_store_add_submission(f->s, &in, "test", &id), RK_E_DB);
    assert_int_equal(count_where(f, "submissions", NULL), 1);
    assert_int_equal(count_where(f, "jobs", NULL), 1);
    assert_int_equal(count_where(f, "events", NULL), 1);
}

/* Group commit: each item of a batch runs in a savepoint, so an item whose
 * last write fails (here the "received" event) leaves no submission or job
 * row behind, while the items before and after it are committed. */
static void test_savepoint_item_all_or_nothing(void **state)
{
    fixture *f = *state;
    assert_int_equal(side_exec(f,
                               "CREATE TRIGGER test_fail BEFORE INSERT ON events"
                               " WHEN NEW.reason = 'taken from dir:/fail' BEGIN"
                               " SELECT RAISE(ABORT, 'simulated write failure'); END",
                               NULL, 0),
                     SQLITE_OK);
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_savepoint(f->s), 0);
    int64_t first = add(f);
    assert_int_equal(rk_store_savepoint_end(f->s, 1), 0);
    assert_int_equal(rk_store_savepoint(f->s), 0);
    rk_submission_in in = {.uid = "u-fail", .source = "dir:/fail", .source_ref = "a.xml",
                           .sha256 = "00", .size = 1, .zpayload = "x", .zlen = 1,
                           .received_ms = T0};
    int64_t id = 0;
    assert_int_equal(rk_store_add_submission(f->s, &in, "test", &id), RK_E_DB);
    assert_int_equal(rk_store_savepoint_end(f->s, 0), 0);
    assert_int_equal(rk_store_savepoint(f->s), 0);
    int64_t third = add(f);
    assert_int_equal(rk_store_savepoint_end(f->s, 1), 0);
    assert_int_equal(rk_store_commit(f->s), 0);

    assert_int_equal(count_where(f, "submissions", "uid = 'u-fail'"), 0);
    assert_int_equal(count_where(f, "submissions", NULL), 2);
    assert_int_equal(count_where(f, "jobs", NULL), 2);
    assert_int_equal(count_where(f, "events", NULL), 2);
    char where[64];
    snprintf(where, sizeof where, "id IN (%lld, %lld)", (long long)first, (long long)third);
    assert_int_equal(count_where(f, "jobs", where), 2);
}

static void test_payload_round_trip_and_purge(void **state)
{
    fixture *f = *state;
    char doc[3000];
    for (size_t i = 0; i < sizeof doc - 1; i++)
        doc[i] = (char)('A' + i % 23);
    doc[sizeof doc - 1] = '\0';
    int64_t id = add_doc(f, "big.xml", doc, T0);
    /* stored compressed, not as text */
    assert_true(q_int(f, "SELECT length(payload) FROM submissions") < 1000);

    char *data = NULL, *uid = NULL;
    size_t len = 0;
    assert_int_equal(rk_store_load_payload(f->s, id, sizeof doc, &data, &len, &uid), 0);
    assert_int_equal(len, strlen(doc));
    assert_string_equal(data, doc);
    assert_string_equal(uid, "uid0001");
    free(data);
    free(uid);
    /* over the caller's maximum */
    data = NULL;
    assert_int_equal(rk_store_load_payload(f->s, id, 100, &data, &len, NULL), RK_E_LIMIT);
    assert_null(data);
    /* no such job */
    assert_int_equal(rk_store_load_payload(f->s, id + 100, 1 << 20, &data, &len, NULL),
                     RK_E_NOTFOUND);
    /* purged */
    assert_int_equal(side_exec(f, "UPDATE submissions SET payload = NULL", NULL, 0),
                     SQLITE_OK);
    uid = NULL;
    assert_int_equal(rk_store_load_payload(f->s, id, 1 << 20, &data, &len, &uid),
                     RK_E_NOTFOUND);
    assert_null(data);
    assert_null(uid);
}

static void test_advance_match(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    assert_int_equal(rk_store_advance(f->s, id, &(rk_advance){.actor = "t",
                                                              .path = {"received", "validated"},
                                                              .steps = 1,
                                                              .match = 1,
                                                              .job = "fischereischein",
                                                              .job_version = 3,
                                                              .root_ns = "urn:a:1",
                                                              .root_name = "Antrag"}),
                     0);
    assert_string_equal(q_text(f, "SELECT job || '|' || job_version FROM jobs"),
                        "fischereischein|3");
    assert_string_equal(q_text(f, "SELECT root_ns || '|' || root_name FROM submissions"),
                        "urn:a:1|Antrag");
}

/* ---- transitions and the audit log ------------------------------------------ */

static void test_transition(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    assert_int_equal(side_exec(f, "UPDATE jobs SET updated_at = 'old'", NULL, 0), SQLITE_OK);
    assert_int_equal(rk_store_transition(f->s, id, RK_ST_RECEIVED, RK_ST_VALIDATED, "engine",
                                         "schema ok"),
                     0);
    assert_string_equal(q_text(f, "SELECT state FROM jobs"), "validated");
    assert_string_not_equal(q_text(f, "SELECT updated_at FROM jobs"), "old");
    assert_int_equal(count_where(f, "events", NULL), 2);
    assert_string_equal(q_text(f, "SELECT from_state || '>' || to_state || '|' || actor || '|'"
                                  " || reason FROM events ORDER BY id DESC LIMIT 1"),
                        "received>validated|engine|schema ok");
    /* from = NULL: any current state */
    assert_int_equal(rk_store_transition(f->s, id, NULL, RK_ST_REVIEW, "clerk", NULL), 0);
    assert_string_equal(q_text(f, "SELECT state FROM jobs"), "review");
    assert_null(q_text(f, "SELECT reason FROM events ORDER BY id DESC LIMIT 1"));
    assert_int_equal(count_where(f, "events", NULL), 3);
}

static void test_transition_wrong_from(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    assert_int_equal(side_exec(f, "UPDATE jobs SET updated_at = 'old'", NULL, 0), SQLITE_OK);
    assert_int_equal(rk_store_transition(f->s, id, RK_ST_READY, RK_ST_DELIVERING, "engine",
                                         NULL),
                     RK_E_STATE);
    assert_string_equal(q_text(f, "SELECT state FROM jobs"), "received");
    assert_string_equal(q_text(f, "SELECT updated_at FROM jobs"), "old");
    assert_int_equal(count_where(f, "events", NULL), 1);
    /* missing job */
    assert_int_equal(rk_store_transition(f->s, id + 1, NULL, RK_ST_FAILED, "engine", NULL),
                     RK_E_NOTFOUND);
    assert_int_equal(count_where(f, "events", NULL), 1);
}

/* Several states in one write: the row once, one event per step with
 * its reason, the match, reference, deadline and delivery columns. */
/* The path of a new document that passes every rule: received to
 * delivering, with its match, reference and a deadline of three days. */
static rk_advance to_delivery(void)
{
    return (rk_advance){.actor = "engine",
                        .path = {RK_ST_RECEIVED, RK_ST_VALIDATED, RK_ST_MAPPED, RK_ST_READY,
                                 RK_ST_DELIVERING},
                        .reason = {"xsd ok", "19 fields", "all rules passed", NULL},
                        .steps = 4,
                        .match = 1, .job = "fischereischein", .job_version = 3,
                        .root_ns = "urn:a:1", .root_name = "Antrag",
                        .meta = 1, .reference = "FS-2026-7", .deadline_ms = 3 * DAY_MS};
}

static void test_advance(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    assert_int_equal(side_exec(f, "UPDATE submissions SET received_at ="
                                  " '2026-01-01T00:00:00.000Z'", NULL, 0), SQLITE_OK);
    rk_advance a = to_delivery();
    assert_int_equal(rk_store_advance(f->s, id, &a), 0);
    assert_string_equal(q_text(f, "SELECT state || '|' || job || '|' || job_version || '|' ||"
                                  " reference || '|' || deadline_at FROM jobs"),
                        "delivering|fischereischein|3|FS-2026-7|1767484800000");
    assert_string_equal(q_text(f, "SELECT root_ns || '|' || root_name FROM submissions"),
                        "urn:a:1|Antrag");
    assert_string_equal(q_text(f, "SELECT group_concat(from_state || '>' || to_state || ':' ||"
                                  " coalesce(reason, '-'), ',') FROM (SELECT * FROM events"
                                  " WHERE from_state IS NOT NULL ORDER BY id)"),
                        "received>validated:xsd ok,validated>mapped:19 fields,"
                        "mapped>ready:all rules passed,ready>delivering:-");
    /* the end of a delivery round: state and delivery columns together */
    rk_advance d = {.actor = "engine", .path = {RK_ST_DELIVERING, RK_ST_DELIVERED},
                    .reason = {"sqlite: delivered"}, .steps = 1, .delivery = 1,
                    .attempts = 1, .target_id = "row-7"};
    assert_int_equal(rk_store_advance(f->s, id, &d), 0);
    assert_string_equal(q_text(f, "SELECT state || '|' || attempts || '|' || target_id || '|' ||"
                                  " coalesce(next_attempt_at, '-') FROM jobs"),
                        "delivered|1|row-7|-");
    assert_int_equal(count_where(f, "events", NULL), 6);
}

/* A submission taken in and processed in one transaction: its job row is
 * inserted in its last state, and the rows read as add_submission and
 * advance would have left them. */
static void test_add_processed(void **state)
{
    fixture *f = *state;
    const char *doc = "<A/>";
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate(doc, strlen(doc), &z, &zlen), 0);
    char sha[65];
    rk_sha256_hex(doc, strlen(doc), sha);
    rk_submission_in in = {.uid = "uid-p", .source = "dir:/in", .source_ref = "p.xml",
                           .sha256 = sha, .size = strlen(doc), .zpayload = z, .zlen = zlen,
                           .received_ms = T0 + 999};
    rk_advance a = to_delivery();
    /* a path that does not start at "received" writes nothing */
    rk_advance bad = a;
    bad.path[0] = RK_ST_VALIDATED;
    bad.path[1] = RK_ST_MAPPED;
    bad.steps = 1;
    int64_t id = 0;
    assert_int_equal(rk_store_add_processed(f->s, &in, &bad, &id), RK_E_STATE);
    assert_int_equal(count_where(f, "submissions", NULL), 0);
    rk_buf lines;
    rk_buf_init(&lines, 1 << 16);
    rk_log_set_level(RK_LOG_LVL_INFO);
    rk_log_hold(&lines);
    assert_int_equal(rk_store_add_processed(f->s, &in, &a, &id), 0);
    rk_buf_append(&lines, "", 1); /* a C string */
    rk_log_drop();
    rk_log_hold(NULL);
    rk_log_set_level(RK_LOG_LVL_ERROR);
    free(z);
    assert_true(id > 0);
    /* one log line for the new job: its receipt and every step */
    char want[300];
    snprintf(want, sizeof want, "INFO job: %lld: received (4 bytes, sha256 %.12s) ->"
             " validated -> mapped -> ready -> delivering by engine: xsd ok; 19 fields;"
             " all rules passed\n", (long long)id, sha);
    assert_non_null(strstr(lines.data, want));
    assert_null(strstr(strstr(lines.data, "INFO job:") + 1, "INFO job:"));
    rk_buf_free(&lines);
    /* the deadline counts from the second of receipt, as rk_store_advance's */
    assert_string_equal(q_text(f, "SELECT state || '|' || job || '|' || job_version || '|' ||"
                                  " reference || '|' || deadline_at || '|' || created_at ||"
                                  " '|' || attempts FROM jobs"),
                        "delivering|fischereischein|3|FS-2026-7|1767484800000|"
                        "2026-01-01T00:00:00.999Z|0");
    assert_string_equal(q_text(f, "SELECT root_ns || '|' || root_name || '|' || source_ref ||"
                                  " '|' || received_at FROM submissions"),
                        "urn:a:1|Antrag|p.xml|2026-01-01T00:00:00.999Z");
    assert_string_equal(q_text(f, "SELECT group_concat(coalesce(from_state, '-') || '>' ||"
                                  " to_state || ':' || coalesce(reason, '-'), ',') FROM"
                                  " (SELECT * FROM events ORDER BY id)"),
                        "->received:taken from dir:/in,received>validated:xsd ok,"
                        "validated>mapped:19 fields,mapped>ready:all rules passed,"
                        "ready>delivering:-");
    /* the payload reads back, and the job goes on as any other */
    char *data = NULL, *uid = NULL;
    size_t len = 0;
    assert_int_equal(rk_store_load_payload(f->s, id, 1 << 20, &data, &len, &uid), 0);
    assert_int_equal(len, strlen(doc));
    assert_memory_equal(data, doc, len);
    assert_string_equal(uid, "uid-p");
    free(data);
    free(uid);
    assert_int_equal(rk_store_transition(f->s, id, RK_ST_DELIVERING, RK_ST_DELIVERED, "engine",
                                         NULL), 0);
    /* held without a reference or a deadline: NULLs, as advance leaves them */
    rk_advance held = {.actor = "engine", .path = {RK_ST_RECEIVED, RK_ST_REVIEW},
                       .reason = {"SCHEMA"}, .steps = 1, .match = 1, .job = "x",
                       .job_version = 1, .root_ns = "", .root_name = "B", .meta = 1};
    in.uid = "uid-q";
    in.source_ref = "q.xml";
    in.zpayload = "";
    in.zlen = 0;
    assert_int_equal(rk_store_add_processed(f->s, &in, &held, &id), 0);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT state || '|' || coalesce(reference, '-') || '|' ||"
                              " coalesce(deadline_at, '-') FROM jobs WHERE id = %lld",
             (long long)id);
    assert_string_equal(q_text(f, sql), "review|-|-");
}

static void test_advance_refused(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    assert_int_equal(side_exec(f, "UPDATE jobs SET updated_at = 'old'", NULL, 0), SQLITE_OK);
    rk_advance a = {.actor = "engine", .path = {RK_ST_READY, RK_ST_DELIVERING},
                    .steps = 1, .match = 1, .job = "x", .root_ns = "urn:x", .root_name = "X"};
    assert_int_equal(rk_store_advance(f->s, id, &a), RK_E_STATE); /* it is received */
    assert_int_equal(rk_store_advance(f->s, id + 1, &a), RK_E_NOTFOUND);
    rk_advance bad = {.actor = "engine", .path = {RK_ST_RECEIVED, RK_ST_VALIDATED, "archived"},
                      .steps = 2};
    assert_int_equal(rk_store_advance(f->s, id, &bad), RK_E_STATE);
    bad.steps = 0;
    assert_int_equal(rk_store_advance(f->s, id, &bad), RK_E_STATE);
    assert_string_equal(q_text(f, "SELECT state || '|' || updated_at || '|' ||"
                                  " coalesce(job, '-') FROM jobs"),
                        "received|old|-");
    assert_null(q_text(f, "SELECT root_ns FROM submissions"));
    assert_int_equal(count_where(f, "events", NULL), 1);
}

/* With background checkpoints, the WAL is copied into the database file
 * by the store's own thread: no commit checkpoints (the hook replaced
 * SQLite's automatic one), yet the file grows and the WAL is reused. */
static void test_background_checkpoints(void **state)
{
    fixture *f = *state;
    assert_int_equal(rk_store_background_checkpoints(f->s, 4), 0);
    assert_int_not_equal(rk_store_background_checkpoints(f->s, 4), 0); /* once */
    struct stat st0;
    assert_int_equal(stat(f->db, &st0), 0);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(rk_store_begin(f->s), 0);
        for (int k = 0; k < 20; k++)
            add(f);
        assert_int_equal(rk_store_commit(f->s), 0);
    }
    /* the thread runs beside us: wait for the copy (at most 10 s) */
    struct stat st;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(stat(f->db, &st), 0);
        if (st.st_size > st0.st_size + 64 * 1024)
            break;
        usleep(10000);
    }
    assert_true(st.st_size > st0.st_size + 64 * 1024);
    assert_int_equal(q_int(f, "SELECT count(*) FROM jobs"), 800);
}

static void test_transition_invalid_state(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    assert_int_equal(rk_store_transition(f->s, id, NULL, "archived", "engine", NULL),
                     RK_E_STATE);
    assert_int_equal(rk_store_transition(f->s, id, NULL, "", "engine", NULL), RK_E_STATE);
    assert_int_equal(rk_store_transition(f->s, id, NULL, NULL, "engine", NULL), RK_E_STATE);
    assert_string_equal(q_text(f, "SELECT state FROM jobs"), "received");
    assert_int_equal(count_where(f, "events", NULL), 1);
}

static void test_states(void **state)
{
    (void)state;
    size_t n = 0;
    while (rk_states[n])
        n++;
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++)
        assert_true(rk_state_valid(rk_states[i]));
    assert_false(rk_state_valid("Received"));
    assert_false(rk_state_valid(NULL));
    assert_string_equal(rk_state_german(RK_ST_REVIEW), "zur Klärung");
    assert_string_equal(rk_state_german(RK_ST_DELIVERED), "übertragen");
    assert_string_equal(rk_state_german("other"), "other");
}

static void test_events_append_only(void **state)
{
    fixture *f = *state;
    add(f);
    char msg[256];
    int rc = side_exec(f, "UPDATE events SET reason = 'forged'", msg, sizeof msg);
    assert_int_not_equal(rc, SQLITE_OK);
    assert_non_null(strstr(msg, "append-only"));
    assert_string_equal(q_text(f, "SELECT reason FROM events"), "taken from dir:/in");
}

/* ---- results ---------------------------------------------------------------- */

static void test_save_result_replaces(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    int64_t other = add(f);
    rk_result r;
    rk_result_init(&r);
    r.fields = calloc(3, sizeof *r.fields);
    r.n_fields = 3;
    set_field(&r.fields[0], "nachname", "Muster", " Muster ", "a:Name", "/a:Antrag/a:Name");
    set_field(&r.fields[1], "vorname", NULL, NULL, "a:Vorname", NULL);
    set_field(&r.fields[2], "plz", "12345", "12345", "a:Plz", "/a:Antrag/a:Plz");
    rk_result_add_anomaly(&r, "PFLICHTFELD", "vorname", RK_SEV_BLOCK, "Vorname fehlt");
    rk_result_add_anomaly(&r, "HINWEIS", NULL, RK_SEV_WARN, "Hinweis %d", 7);
    assert_int_equal(rk_store_save_result(f->s, id, &r), 0);
    assert_int_equal(rk_store_save_result(f->s, other, &r), 0);
    rk_result_free(&r);
    assert_int_equal(count_where(f, "fields", "job_id = 1"), 3);
    assert_int_equal(count_where(f, "anomalies", "job_id = 1"), 2);

    /* second save replaces, it does not add */
    rk_result_init(&r);
    r.fields = calloc(1, sizeof *r.fields);
    r.n_fields = 1;
    set_field(&r.fields[0], "nachname", "Beispiel", "Beispiel", "a:Name", NULL);
    rk_result_add_anomaly(&r, "NEU", "nachname", RK_SEV_WARN, "neu");
    assert_int_equal(rk_store_save_result(f->s, id, &r), 0);
    rk_result_free(&r);
    assert_int_equal(count_where(f, "fields", "job_id = 1"), 1);
    assert_int_equal(count_where(f, "anomalies", "job_id = 1"), 1);
    assert_string_equal(q_text(f, "SELECT value FROM fields WHERE job_id = 1"), "Beispiel");
    assert_string_equal(q_text(f, "SELECT code FROM anomalies WHERE job_id = 1"), "NEU");
    /* the other job is untouched */
    assert_int_equal(count_where(f, "fields", "job_id = 2"), 3);
    assert_int_equal(count_where(f, "anomalies", "job_id = 2"), 2);

    /* an empty result clears both */
    rk_result_init(&r);
    assert_int_equal(rk_store_save_result(f->s, id, &r), 0);
    assert_int_equal(count_where(f, "fields", "job_id = 1"), 0);
    assert_int_equal(count_where(f, "anomalies", "job_id = 1"), 0);
}

/* Jobs whose results have the same names and XPaths share one field set;
 * a field set written in a transaction that was rolled back is written
 * again by the next result that needs it. */
static void test_field_sets_shared_and_rolled_back(void **state)
{
    fixture *f = *state;
    int64_t j[4] = {add(f), add(f), add(f), add(f)};
    rk_result r;
    rk_result_init(&r);
    r.fields = calloc(2, sizeof *r.fields);
    r.n_fields = 2;
    set_field(&r.fields[0], "name", "A", "A", "a:Name", "/A/Name");
    set_field(&r.fields[1], "ort", "B", "B", "a:Ort", "/A/Ort");
    assert_int_equal(rk_store_add_result(f->s, j[0], &r), 0);
    free(r.fields[0].value);
    r.fields[0].value = strdup("C");
    assert_int_equal(rk_store_add_result(f->s, j[1], &r), 0);
    assert_int_equal(count_where(f, "fieldsets", NULL), 1);
    assert_string_equal(q_text(f, "SELECT value FROM fields WHERE job_id = 2 AND ord = 0"), "C");

    /* another XPath is another field set, written in a transaction that
     * does not last */
    free(r.fields[1].xpath);
    r.fields[1].xpath = strdup("a:Wohnort");
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_add_result(f->s, j[2], &r), 0);
    assert_int_equal(rk_store_rollback(f->s), 0);
    assert_int_equal(count_where(f, "fieldsets", NULL), 1);
    assert_int_equal(rk_store_add_result(f->s, j[2], &r), 0);
    assert_int_equal(count_where(f, "fieldsets", NULL), 2);
    assert_string_equal(q_text(f, "SELECT xpath FROM fields WHERE job_id = 3 AND ord = 1"),
                        "a:Wohnort");

    /* the same inside a savepoint given up */
    free(r.fields[0].name);
    r.fields[0].name = strdup("nachname");
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_savepoint(f->s), 0);
    assert_int_equal(rk_store_add_result(f->s, j[3], &r), 0);
    assert_int_equal(rk_store_savepoint_end(f->s, 0), 0);
    assert_int_equal(rk_store_add_result(f->s, j[3], &r), 0);
    assert_int_equal(rk_store_commit(f->s), 0);
    rk_result_free(&r);
    assert_int_equal(count_where(f, "fieldsets", NULL), 3);
    assert_int_equal(count_where(f, "fields", "job_id = 4"), 2);
    assert_string_equal(q_text(f, "SELECT name FROM fields WHERE job_id = 4 AND ord = 0"),
                        "nachname");
    /* every job's row names an existing field set */
    assert_int_equal(count_where(f, "job_fields", "fieldset NOT IN (SELECT id FROM fieldsets)"),
                     0);
}

/* Deliveries: a row made pending before the attempt (get), or written
 * with its first outcome (new, then record); either way one row per
 * (job, connector) with the key it was delivered under. */
static void test_delivery_rows(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f);
    rk_delivery d;
    assert_int_equal(rk_store_delivery_get(f->s, a, "sqlite", "sqlite", "k-a", &d), 0);
    assert_true(d.id > 0);
    assert_string_equal(d.state, "pending");
    assert_int_equal(count_where(f, "deliveries", "job_id = 1 AND state = 'pending'"), 1);
    assert_int_equal(rk_store_delivery_record(f->s, &d, "delivered", 1, NULL, "7"), 0);
    assert_string_equal(q_text(f, "SELECT state || '/' || attempts || '/' || target_id ||"
                                  " '/' || idempotency_key FROM deliveries WHERE job_id = 1"),
                        "delivered/1/7/k-a");

    /* in memory only until its outcome */
    rk_delivery n;
    assert_int_equal(rk_store_delivery_new(b, "ablage", "filedrop", "k-b", &n), 0);
    assert_int_equal(n.id, 0);
    assert_int_equal(count_where(f, "deliveries", "job_id = 2"), 0);
    /* written in a transaction that is rolled back: written again */
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_delivery_record(f->s, &n, "pending", 1, "target down", NULL), 0);
    assert_int_equal(rk_store_rollback(f->s), 0);
    assert_int_equal(count_where(f, "deliveries", "job_id = 2"), 0);
    assert_int_equal(rk_store_delivery_record(f->s, &n, "pending", 1, "target down", NULL), 0);
    assert_string_equal(q_text(f, "SELECT name || '/' || plugin || '/' || state || '/' ||"
                                  " attempts || '/' || last_error || '/' || idempotency_key"
                                  " FROM deliveries WHERE job_id = 2"),
                        "ablage/filedrop/pending/1/target down/k-b");
    /* a later outcome of the same delivery updates that row; the target
     * id stays when none is given, the key never changes */
    assert_int_equal(rk_store_delivery_record(f->s, &n, "delivered", 2, NULL, "ab/1"), 0);
    assert_int_equal(rk_store_delivery_record(f->s, &n, "delivered", 2, NULL, NULL), 0);
    assert_int_equal(count_where(f, "deliveries", "job_id = 2"), 1);
    assert_string_equal(q_text(f, "SELECT state || '/' || attempts || '/' ||"
                                  " coalesce(last_error, '-') || '/' || target_id"
                                  " FROM deliveries WHERE job_id = 2"),
                        "delivered/2/-/ab/1");
    /* and the next start finds it as rk_store_delivery_get */
    rk_delivery again;
    assert_int_equal(rk_store_delivery_get(f->s, b, "ablage", "filedrop", "other", &again), 0);
    assert_string_equal(again.state, "delivered");
    assert_string_equal(again.key, "k-b");
    assert_int_equal(again.attempts, 2);

    char longkey[300];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(rk_store_delivery_new(b, "x", "y", longkey, &n), RK_E_LIMIT);
}

/* A job of many fields (more than SQLite's functions take arguments):
 * its fields are stored and read back like any other's, in order, and a
 * second job shares the field set. */
static void test_many_fields(void **state)
{
    fixture *f = *state;
    enum { N = 300 };
    int64_t a = add(f), b = add(f);
    rk_result r;
    rk_result_init(&r);
    r.fields = calloc(N, sizeof *r.fields);
    r.n_fields = N;
    for (int i = 0; i < N; i++) {
        char name[32], value[32], xpath[32];
        snprintf(name, sizeof name, "feld_%03d", i);
        snprintf(value, sizeof value, "Wert \"%d\" ä", i);
        snprintf(xpath, sizeof xpath, "a:F%03d", i);
        set_field(&r.fields[i], name, i % 7 ? value : NULL, value, xpath, i % 7 ? "/A/F" : NULL);
    }
    assert_int_equal(rk_store_add_result(f->s, a, &r), 0);
    assert_int_equal(rk_store_add_result(f->s, b, &r), 0);
    rk_result_free(&r);
    assert_int_equal(count_where(f, "fieldsets", NULL), 1);
    assert_int_equal(count_where(f, "fields", "job_id = 2"), N);
    rk_result back;
    rk_result_init(&back);
    assert_int_equal(rk_store_load_result(f->s, b, &back), 0);
    assert_int_equal(back.n_fields, N);
    assert_string_equal(back.fields[0].name, "feld_000");
    assert_null(back.fields[0].value);
    assert_null(back.fields[0].node);
    assert_string_equal(back.fields[0].source, "Wert \"0\" ä");
    assert_string_equal(back.fields[299].name, "feld_299");
    assert_string_equal(back.fields[299].value, "Wert \"299\" ä");
    assert_string_equal(back.fields[299].xpath, "a:F299");
    assert_string_equal(back.fields[299].node, "/A/F");
    rk_result_free(&back);
}

/* The fields row made on a worker thread (rk_store_fields_json into
 * values_json) is byte for byte the text SQLite's json_array writes for
 * the same values: quotes, backslashes, every control character, UTF-8,
 * empty strings and NULLs. */
static void test_values_json_as_sqlite(void **state)
{
    fixture *f = *state;
    static const char *vals[] = {"Müller", "\"zitiert\"", "a\\b", "", "Zeile 1\nZeile 2",
                                 "\t\r\b\f\x01\x1f\x7f", "Kaiserstraße 236 – Hof", "/x/y"};
    enum { N = sizeof vals / sizeof *vals };
    rk_result r;
    rk_result_init(&r);
    r.fields = calloc(N, sizeof *r.fields);
    r.n_fields = N;
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        set_field(&r.fields[i], name, vals[i], i % 3 ? vals[N - 1 - i] : NULL, "a:X",
                  i % 2 ? "/A/X" : NULL);
    }
    int64_t in_sql = add(f), made = add(f);
    assert_int_equal(rk_store_add_result(f->s, in_sql, &r), 0);
    r.values_json = rk_store_fields_json(&r);
    assert_non_null(r.values_json);
    assert_int_equal(rk_store_add_result(f->s, made, &r), 0);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->side, "SELECT (SELECT data FROM job_fields WHERE"
                                        " job_id = ?1), (SELECT data FROM job_fields WHERE"
                                        " job_id = ?2), json_valid((SELECT data FROM"
                                        " job_fields WHERE job_id = ?2))",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, in_sql);
    sqlite3_bind_int64(st, 2, made);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 1), r.values_json);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), r.values_json);
    assert_int_equal(sqlite3_column_int(st, 2), 1);
    sqlite3_finalize(st);
    rk_result back;
    rk_result_init(&back);
    assert_int_equal(rk_store_load_result(f->s, made, &back), 0);
    assert_int_equal(back.n_fields, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(back.fields[i].value, vals[i]);
        if (i % 3)
            assert_string_equal(back.fields[i].source, vals[N - 1 - i]);
        else
            assert_null(back.fields[i].source);
        if (i % 2)
            assert_string_equal(back.fields[i].node, "/A/X");
        else
            assert_null(back.fields[i].node);
    }
    rk_result_free(&back);
    rk_result_free(&r);
}

static void test_load_result_round_trip(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    rk_result r;
    rk_result_init(&r);
    r.fields = calloc(2, sizeof *r.fields);
    r.n_fields = 2;
    set_field(&r.fields[0], "nachname", "Müller", " Müller", "a:Name", "/a:Antrag/a:Name");
    set_field(&r.fields[1], "vorname", NULL, NULL, "a:Vorname", NULL);
    rk_result_add_anomaly(&r, "PFLICHTFELD", "vorname", RK_SEV_BLOCK, "Vorname fehlt");
    rk_result_add_anomaly(&r, "HINWEIS", NULL, RK_SEV_WARN, "Bitte prüfen");
    assert_int_equal(rk_store_save_result(f->s, id, &r), 0);
    rk_result_free(&r);
    assert_int_equal(rk_store_add_anomaly(f->s, id, "SPAETER", "nachname", RK_SEV_WARN,
                                          "nachgetragen"),
                     0);

    rk_result back;
    rk_result_init(&back);
    assert_int_equal(rk_store_load_result(f->s, id, &back), 0);
    assert_int_equal(back.n_fields, 2);
    assert_string_equal(back.fields[0].name, "nachname");
    assert_string_equal(back.fields[0].value, "Müller");
    assert_string_equal(back.fields[0].source, " Müller");
    assert_string_equal(back.fields[0].xpath, "a:Name");
    assert_string_equal(back.fields[0].node, "/a:Antrag/a:Name");
    assert_string_equal(back.fields[1].name, "vorname");
    assert_null(back.fields[1].value);
    assert_null(back.fields[1].source);
    assert_null(back.fields[1].node);
    assert_int_equal(back.n_anomalies, 3);
    assert_string_equal(back.anomalies[0].code, "PFLICHTFELD");
    assert_string_equal(back.anomalies[0].field, "vorname");
    assert_int_equal(back.anomalies[0].severity, RK_SEV_BLOCK);
    assert_string_equal(back.anomalies[0].message, "Vorname fehlt");
    assert_string_equal(back.anomalies[1].code, "HINWEIS");
    assert_null(back.anomalies[1].field);
    assert_int_equal(back.anomalies[1].severity, RK_SEV_WARN);
    assert_string_equal(back.anomalies[1].message, "Bitte prüfen");
    assert_string_equal(back.anomalies[2].code, "SPAETER");
    assert_true(rk_result_blocked(&back));
    rk_result_free(&back);

    /* a job without results loads empty */
    int64_t other = add(f);
    rk_result_init(&back);
    assert_int_equal(rk_store_load_result(f->s, other, &back), 0);
    assert_int_equal(back.n_fields, 0);
    assert_int_equal(back.n_anomalies, 0);
}

/* ---- duplicates ------------------------------------------------------------- */

static void test_dup_check_window(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f), c = add(f), d = add(f), e = add(f);
    int64_t other = -1;
    assert_int_equal(rk_store_dup_check(f->s, a, "K", 30, T0, &other), 0);
    assert_int_equal(other, 0); /* the first one */
    assert_int_equal(rk_store_dup_check(f->s, b, "K", 30, T0 + 10 * DAY_MS, &other), 0);
    assert_int_equal(other, a);
    /* the newest earlier one is reported */
    assert_int_equal(rk_store_dup_check(f->s, c, "K", 30, T0 + 20 * DAY_MS, &other), 0);
    assert_int_equal(other, b);
    /* exactly 30 days after c: still inside; one ms later: outside */
    assert_int_equal(rk_store_dup_check(f->s, d, "K", 30, T0 + 50 * DAY_MS, &other), 0);
    assert_int_equal(other, c);
    assert_int_equal(rk_store_dup_check(f->s, e, "K", 30, T0 + 80 * DAY_MS + 1, &other), 0);
    assert_int_equal(other, 0);
    /* another key never matches */
    assert_int_equal(rk_store_dup_check(f->s, e, "L", 365, T0 + 80 * DAY_MS, &other), 0);
    assert_int_equal(other, 0);
    /* a job never duplicates itself */
    assert_int_equal(rk_store_dup_check(f->s, e, "L", 365, T0 + 81 * DAY_MS, &other), 0);
    assert_int_equal(other, 0);
    assert_int_equal(count_where(f, "dupkeys", "key = 'K'"), 5);
}

/* The look-up for a job not stored yet (a new submission, job id 0)
 * finds the other jobs of the key; the key is recorded once the job is. */
static void test_dup_find_before_the_job(void **state)
{
    fixture *f = *state;
    int64_t a = add(f);
    int64_t other = -1;
    assert_int_equal(rk_store_dup_check(f->s, a, "K", 30, T0, &other), 0);
    assert_int_equal(rk_store_dup_find(f->s, 0, "K", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, a);
    assert_int_equal(rk_store_dup_find(f->s, 0, "L", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, 0);
    int64_t b = add(f);
    assert_int_equal(rk_store_dup_add(f->s, b, "K", T0 + DAY_MS), 0);
    assert_int_equal(rk_store_dup_find(f->s, 0, "K", 30, T0 + 2 * DAY_MS, &other), 0);
    assert_int_equal(other, b);
    assert_int_equal(count_where(f, "dupkeys", "key = 'K'"), 2);
}

static void test_dup_check_ignores_rejected(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f), c = add(f);
    int64_t other = -1;
    assert_int_equal(rk_store_dup_check(f->s, a, "K", 30, T0, &other), 0);
    assert_int_equal(rk_store_transition(f->s, a, NULL, RK_ST_REJECTED, "clerk", "doppelt"), 0);
    assert_int_equal(rk_store_dup_check(f->s, b, "K", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, 0);
    /* a job that is not rejected still counts */
    assert_int_equal(rk_store_dup_check(f->s, c, "K", 30, T0 + 2 * DAY_MS, &other), 0);
    assert_int_equal(other, b);
}

/* Keys committed by another connection are found: outside a
 * transaction and inside the next write transaction, after the set was
 * read (it is held in memory, read on from the highest id seen). */
static void test_dup_sees_other_connections(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f), c = add(f);
    int64_t other = -1;
    assert_int_equal(rk_store_dup_find(f->s, 0, "K", 30, T0, &other), 0);
    assert_int_equal(other, 0); /* the set is read now, empty */
    char sql[256], msg[256];
    snprintf(sql, sizeof sql, "INSERT INTO dupkeys(key, job_id, at_ms) VALUES ('K', %lld, %lld)",
             (long long)a, (long long)T0);
    assert_int_equal(side_exec(f, sql, msg, sizeof msg), SQLITE_OK);
    assert_int_equal(rk_store_dup_find(f->s, 0, "K", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, a);
    snprintf(sql, sizeof sql, "INSERT INTO dupkeys(key, job_id, at_ms) VALUES ('L', %lld, %lld)",
             (long long)b, (long long)T0);
    assert_int_equal(side_exec(f, sql, msg, sizeof msg), SQLITE_OK);
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_dup_find(f->s, c, "L", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, b);
    assert_int_equal(rk_store_dup_add(f->s, c, "L", T0 + DAY_MS), 0);
    assert_int_equal(rk_store_commit(f->s), 0);
    /* a key whose row went (a purge) is not found, though still in memory */
    snprintf(sql, sizeof sql, "DELETE FROM dupkeys WHERE job_id = %lld", (long long)a);
    assert_int_equal(side_exec(f, sql, msg, sizeof msg), SQLITE_OK);
    assert_int_equal(rk_store_dup_find(f->s, 0, "K", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, 0);
    /* the newest of several candidates */
    assert_int_equal(rk_store_dup_find(f->s, 0, "L", 30, T0 + 2 * DAY_MS, &other), 0);
    assert_int_equal(other, c);
}

/* The set read inside a transaction that rolls back had seen its rows;
 * their ids are free again and another connection may take them, so the
 * set is read anew: the other connection's key is found. */
static void test_dup_set_read_in_rolled_back_txn(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f);
    int64_t other = -1;
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_dup_add(f->s, a, "K", T0), 0);
    assert_int_equal(rk_store_dup_find(f->s, 0, "Z", 30, T0, &other), 0); /* reads the set */
    assert_int_equal(rk_store_rollback(f->s), 0);
    char sql[256], msg[256];
    snprintf(sql, sizeof sql, "INSERT INTO dupkeys(key, job_id, at_ms) VALUES ('K', %lld, %lld)",
             (long long)b, (long long)T0);
    assert_int_equal(side_exec(f, sql, msg, sizeof msg), SQLITE_OK);
    assert_int_equal(q_int(f, "SELECT max(id) FROM dupkeys"), 1); /* the id came back */
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_dup_find(f->s, a, "K", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, b);
    assert_int_equal(rk_store_commit(f->s), 0);
    /* the same after a savepoint rolled back, and in the set kept over a
     * rollback that undid nothing it had read */
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_savepoint(f->s), 0);
    assert_int_equal(rk_store_dup_add(f->s, a, "M", T0), 0);
    assert_int_equal(rk_store_dup_find(f->s, a, "M", 30, T0, &other), 0);
    assert_int_equal(rk_store_savepoint_end(f->s, 0), 0);
    assert_int_equal(rk_store_dup_find(f->s, 0, "M", 30, T0, &other), 0);
    assert_int_equal(other, 0); /* the row was rolled back */
    assert_int_equal(rk_store_commit(f->s), 0);
}

/* The set in memory keeps the keys of the window, not of the whole
 * history: a full table drops the older ones; a look-up with a longer
 * window reads the table again and finds them. */
static void test_dup_set_keeps_the_window(void **state)
{
    fixture *f = *state;
    int64_t now = rk_now_ms(), t0 = now - 400 * DAY_MS, other = -1;
    enum { N = 2000 };
    int64_t jobs[N];
    char key[32];
    assert_int_equal(rk_store_dup_find(f->s, 0, "none", 30, t0, &other), 0); /* reads the set */
    assert_int_equal(rk_store_begin(f->s), 0);
    for (int i = 0; i < N; i++) { /* five keys a day over 400 days */
        int64_t t = t0 + (int64_t)i * (400 * DAY_MS / N);
        jobs[i] = add(f);
        snprintf(key, sizeof key, "K%d", i);
        assert_int_equal(rk_store_dup_find(f->s, jobs[i], key, 30, t, &other), 0);
        assert_int_equal(other, 0);
        assert_int_equal(rk_store_dup_add(f->s, jobs[i], key, t), 0);
    }
    assert_int_equal(rk_store_commit(f->s), 0);
    size_t n = 0;
    assert_int_equal(rk_store_dup_prepare(f->s, 30, &n), 0);
    assert_true(n > 150 && n <= 640); /* a month and the table's room, not 2,000 */
    snprintf(key, sizeof key, "K%d", N - 1);
    assert_int_equal(rk_store_dup_find(f->s, 0, key, 30, now, &other), 0);
    assert_int_equal(other, jobs[N - 1]);
    assert_int_equal(rk_store_dup_find(f->s, 0, "K0", 401, now, &other), 0);
    assert_int_equal(other, jobs[0]);
    assert_int_equal(rk_store_dup_prepare(f->s, 401, &n), 0);
    assert_int_equal(n, N);
}

/* Schema 11: the keys of a schema 10 file keep their ids, the index by
 * key gives way to one by job, and the ids are never given again. */
static void test_schema11_dupkeys(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f);
    rk_store_close(f->s);
    f->s = NULL;
    char sql[512], msg[256];
    snprintf(sql, sizeof sql,
             "DROP TABLE dupkeys; CREATE TABLE dupkeys (key TEXT NOT NULL,"
             "  job_id INTEGER NOT NULL REFERENCES jobs(id), at_ms INTEGER NOT NULL);"
             "CREATE INDEX dupkeys_key ON dupkeys(key, at_ms);"
             "INSERT INTO dupkeys(rowid, key, job_id, at_ms) VALUES (7, 'K', %lld, %lld);"
             "PRAGMA user_version = 10;", (long long)a, (long long)T0);
    if (side_exec(f, sql, msg, sizeof msg) != SQLITE_OK)
        fail_msg("making a schema 10 database: %s", msg);
    assert_int_equal(rk_store_open(f->db, 0, &f->s, f->err, sizeof f->err), 0);
    assert_int_equal(q_int(f, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_string_equal(q_text(f, "SELECT id || '|' || key || '|' || at_ms FROM dupkeys"),
                        "7|K|1767225600000");
    assert_int_equal(count_where(f, "sqlite_master", "name = 'dupkeys_key'"), 0);
    assert_int_equal(count_where(f, "sqlite_master", "name = 'dupkeys_job'"), 1);
    int64_t other = -1;
    assert_int_equal(rk_store_dup_check(f->s, b, "K", 30, T0 + DAY_MS, &other), 0);
    assert_int_equal(other, a);
    /* a deleted last row's id is not given again */
    assert_int_equal(side_exec(f, "DELETE FROM dupkeys WHERE id = 8", msg, sizeof msg),
                     SQLITE_OK);
    assert_int_equal(rk_store_dup_add(f->s, b, "N", T0), 0);
    assert_int_equal(q_int(f, "SELECT id FROM dupkeys WHERE key = 'N'"), 9);
}

/* ---- delivery bookkeeping and pending jobs ------------------------------------ */

/* The end of a delivery round: state and delivery columns in one write. */
static int end_round(fixture *f, int64_t id, const char *from, const char *to, int attempts,
                     int64_t next_ms, const char *error, const char *target)
{
    return rk_store_advance(f->s, id, &(rk_advance){.actor = "t",
                                                     .path = {from, to},
                                                     .steps = 1,
                                                     .delivery = 1,
                                                     .attempts = attempts,
                                                     .next_attempt_ms = next_ms,
                                                     .last_error = error,
                                                     .target_id = target});
}

static void test_advance_delivery(void **state)
{
    fixture *f = *state;
    int64_t id = add(f);
    assert_int_equal(end_round(f, id, "received", "retry_wait", 1, T0 + 5000,
                               "connection refused", "row-17"),
                     0);
    assert_string_equal(q_text(f, "SELECT state || '|' || attempts || '|' || next_attempt_at"
                                  " || '|' || last_error || '|' || target_id FROM jobs"),
                        "retry_wait|1|1767225605000|connection refused|row-17");
    /* NULL or empty target keeps the earlier one; 0 clears the time */
    assert_int_equal(end_round(f, id, "retry_wait", "delivering", 2, 0, NULL, NULL), 0);
    assert_string_equal(q_text(f, "SELECT attempts || '|' || COALESCE(next_attempt_at, 'N')"
                                  " || '|' || COALESCE(last_error, 'N') || '|' || target_id"
                                  " FROM jobs"),
                        "2|N|N|row-17");
    assert_int_equal(end_round(f, id, "delivering", "retry_wait", 3, 0, NULL, ""), 0);
    assert_string_equal(q_text(f, "SELECT target_id FROM jobs"), "row-17");
    assert_int_equal(end_round(f, id, "retry_wait", "delivered", 3, 0, NULL, "row-18"), 0);
    assert_string_equal(q_text(f, "SELECT state || '|' || target_id FROM jobs"),
                        "delivered|row-18");
}

typedef struct seen {
    int n;
    int stop_after; /* 0 = never */
    rk_pending p[16];
} seen;

static int collect(const rk_pending *p, void *arg)
{
    seen *s = arg;
    if (s->n < 16)
        s->p[s->n] = *p;
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_pending(void **state)
{
    fixture *f = *state;
    int64_t id[6];
    for (int i = 0; i < 6; i++)
        id[i] = add(f);
    /* 0, 3: ready; 1, 4: retry_wait; 2: delivered; 5: received */
    assert_int_equal(rk_store_transition(f->s, id[0], NULL, RK_ST_READY, "t", NULL), 0);
    assert_int_equal(rk_store_transition(f->s, id[3], NULL, RK_ST_READY, "t", NULL), 0);
    assert_int_equal(end_round(f, id[1], RK_ST_RECEIVED, RK_ST_RETRY_WAIT, 2, T0 + 777,
                               "timeout", NULL),
                     0);
    set_job(f, id[1], "fischereischein", 1);
    assert_int_equal(rk_store_transition(f->s, id[4], NULL, RK_ST_RETRY_WAIT, "t", NULL), 0);
    assert_int_equal(rk_store_transition(f->s, id[2], NULL, RK_ST_DELIVERED, "t", NULL), 0);

    const char *const want[] = {RK_ST_READY, RK_ST_RETRY_WAIT, NULL};
    seen s = {0};
    assert_int_equal(rk_store_pending(f->s, want, 0, collect, &s), 0);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.p[0].job_id, id[0]);
    assert_int_equal(s.p[1].job_id, id[1]);
    assert_int_equal(s.p[2].job_id, id[3]);
    assert_int_equal(s.p[3].job_id, id[4]);
    assert_string_equal(s.p[0].state, "ready");
    assert_string_equal(s.p[0].job, "");
    assert_string_equal(s.p[0].uid, "uid0001");
    assert_string_equal(s.p[1].state, "retry_wait");
    assert_string_equal(s.p[1].job, "fischereischein");
    assert_int_equal(s.p[1].attempts, 2);
    assert_int_equal(s.p[1].next_attempt_ms, T0 + 777);
    assert_string_equal(s.p[1].uid, "uid0002");

    /* stops when the callback says so */
    seen s2 = {.stop_after = 2};
    assert_int_equal(rk_store_pending(f->s, want, 0, collect, &s2), 0);
    assert_int_equal(s2.n, 2);
    assert_int_equal(s2.p[1].job_id, id[1]);
    /* limit */
    seen s3 = {0};
    assert_int_equal(rk_store_pending(f->s, want, 3, collect, &s3), 0);
    assert_int_equal(s3.n, 3);
    /* one state only */
    const char *const recv[] = {RK_ST_RECEIVED, NULL};
    seen s4 = {0};
    assert_int_equal(rk_store_pending(f->s, recv, 0, collect, &s4), 0);
    assert_int_equal(s4.n, 1);
    assert_int_equal(s4.p[0].job_id, id[5]);
}

/* ---- the read side ------------------------------------------------------------ */

static void test_status_json_empty(void **state)
{
    fixture *f = *state;
    json_t *o = rk_store_status_json(f->s);
    assert_non_null(o);
    json_t *by_state = json_object_get(o, "by_state");
    assert_int_equal(json_object_size(by_state), 10);
    for (size_t i = 0; rk_states[i]; i++) {
        json_t *v = json_object_get(by_state, rk_states[i]);
        assert_non_null(v);
        assert_int_equal(json_integer_value(v), 0);
    }
    assert_int_equal(json_object_size(json_object_get(o, "by_job")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 0);
    json_decref(o);
}

static void test_status_json_counts(void **state)
{
    fixture *f = *state;
    int64_t a = add(f), b = add(f), c = add(f), d = add(f);
    (void)d;
    set_job(f, a, "fisch", 1);
    set_job(f, b, "fisch", 1);
    set_job(f, c, "park", 1);
    assert_int_equal(rk_store_transition(f->s, b, NULL, RK_ST_DELIVERED, "t", NULL), 0);
    assert_int_equal(rk_store_transition(f->s, c, NULL, RK_ST_REVIEW, "t", NULL), 0);
    json_t *o = rk_store_status_json(f->s);
    json_t *bs = json_object_get(o, "by_state");
    assert_int_equal(json_integer_value(json_object_get(bs, "received")), 2);
    assert_int_equal(json_integer_value(json_object_get(bs, "delivered")), 1);
    assert_int_equal(json_integer_value(json_object_get(bs, "review")), 1);
    assert_int_equal(json_integer_value(json_object_get(bs, "failed")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 4);
    json_t *bj = json_object_get(o, "by_job");
    assert_int_equal(json_object_size(bj), 3);
    json_t *fisch = json_object_get(bj, "fisch");
    assert_int_equal(json_object_size(fisch), 2);
    assert_int_equal(json_integer_value(json_object_get(fisch, "received")), 1);
    assert_int_equal(json_integer_value(json_object_get(fisch, "delivered")), 1);
    json_t *park = json_object_get(bj, "park");
    assert_int_equal(json_object_size(park), 1);
    assert_int_equal(json_integer_value(json_object_get(park, "review")), 1);
    json_t *none = json_object_get(bj, "(ohne Verfahren)");
    assert_int_equal(json_integer_value(json_object_get(none, "received")), 1);
    json_decref(o);
}

/* The ids of rk_store_find_json(f), newest first, as "3,2,1". */
static const char *found(fixture *f, rk_list_filter flt)
{
    static char out[256];
    json_t *rows = rk_store_find_json(f->s, &flt);
    assert_non_null(rows);
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(rows); i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%lld", i ? "," : "",
                              (long long)json_integer_value(
                                  json_object_get(json_array_get(rows, i), "id")));
    json_decref(rows);
    return out;
}

/* Each filter of the job list alone and together (the WHERE clause holds
 * only the filters given, so that SQLite can use the indexes). */
static void test_find_filters(void **state)
{
    fixture *f = *state;
    int64_t a = add_doc(f, "a.xml", "<A/>", T0);
    int64_t b = add_doc(f, "b.xml", "<A/>", T0 + DAY_MS);
    int64_t c = add_doc(f, "a.xml", "<A/>", T0 + 2 * DAY_MS); /* the name again */
    char msg[256];
    if (side_exec(f, "UPDATE submissions SET source = 'http:portal' WHERE id = 3;"
                     "UPDATE jobs SET reference = 'FS-1' WHERE id IN (1, 3);"
                     "UPDATE jobs SET reference = 'FS-2', deadline_at = 1 WHERE id = 2",
                  msg, sizeof msg) != SQLITE_OK)
        fail_msg("%s", msg);
    set_job(f, a, "fisch", 1);
    set_job(f, b, "park", 1);
    set_job(f, c, "fisch", 1);
    assert_int_equal(rk_store_transition(f->s, b, NULL, RK_ST_REVIEW, "t", NULL), 0);
    assert_int_equal(rk_store_add_anomaly(f->s, c, "A1", "x", RK_SEV_BLOCK, "m"), 0);
    (void)a;
    assert_string_equal(found(f, (rk_list_filter){0}), "3,2,1");
    assert_string_equal(found(f, (rk_list_filter){.state = RK_ST_REVIEW}), "2");
    assert_string_equal(found(f, (rk_list_filter){.job = "fisch"}), "3,1");
    assert_string_equal(found(f, (rk_list_filter){.source = "dir:/in"}), "2,1");
    assert_string_equal(found(f, (rk_list_filter){.source_ref = "a.xml"}), "3,1");
    assert_string_equal(found(f, (rk_list_filter){.source = "http:portal",
                                                  .source_ref = "a.xml"}), "3");
    assert_string_equal(found(f, (rk_list_filter){.source_ref = "nope.xml"}), "");
    assert_string_equal(found(f, (rk_list_filter){.reference = "FS-1"}), "3,1");
    assert_string_equal(found(f, (rk_list_filter){.reference = "FS-1", .job = "fisch",
                                                  .source = "dir:/in"}), "1");
    assert_string_equal(found(f, (rk_list_filter){.code = "A1"}), "3");
    assert_string_equal(found(f, (rk_list_filter){.since = "2026-01-02"}), "3,2");
    assert_string_equal(found(f, (rk_list_filter){.until = "2026-01-02"}), "1");
    assert_string_equal(found(f, (rk_list_filter){.overdue = 1}), "2");
    assert_string_equal(found(f, (rk_list_filter){.before_id = 3}), "2,1");
    assert_string_equal(found(f, (rk_list_filter){.limit = 2}), "3,2");
    assert_string_equal(found(f, (rk_list_filter){.state = RK_ST_REVIEW, .job = "fisch"}), "");
}

static void test_list_json(void **state)
{
    fixture *f = *state;
    int64_t id[5];
    for (int i = 0; i < 5; i++)
        id[i] = add(f);
    for (int i = 0; i < 5; i++)
        set_job(f, id[i], i < 3 ? "fisch" : "park", 1);
    assert_int_equal(rk_store_transition(f->s, id[1], NULL, RK_ST_REVIEW, "t", NULL), 0);
    assert_int_equal(rk_store_transition(f->s, id[4], NULL, RK_ST_REVIEW, "t", NULL), 0);
    assert_int_equal(rk_store_add_anomaly(f->s, id[1], "A1", "x", RK_SEV_BLOCK, "m"), 0);
    assert_int_equal(rk_store_add_anomaly(f->s, id[1], "B2", NULL, RK_SEV_WARN, "m"), 0);

    json_t *all = rk_store_list_json(f->s, NULL, NULL, 0);
    assert_int_equal(json_array_size(all), 5);
    /* newest first */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 0), "id")), id[4]);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 4), "id")), id[0]);
    json_decref(all);

    json_t *rev = rk_store_list_json(f->s, RK_ST_REVIEW, NULL, 0);
    assert_int_equal(json_array_size(rev), 2);
    json_decref(rev);

    json_t *rf = rk_store_list_json(f->s, RK_ST_REVIEW, "fisch", 0);
    assert_int_equal(json_array_size(rf), 1);
    json_t *row = json_array_get(rf, 0);
    assert_int_equal(json_integer_value(json_object_get(row, "id")), id[1]);
    assert_string_equal(json_string_value(json_object_get(row, "job")), "fisch");
    assert_string_equal(json_string_value(json_object_get(row, "state")), "review");
    assert_int_equal(json_integer_value(json_object_get(row, "anomalies")), 2);
    const char *codes = json_string_value(json_object_get(row, "codes"));
    assert_non_null(codes);
    assert_true(strcmp(codes, "A1,B2") == 0 || strcmp(codes, "B2,A1") == 0);
    assert_string_equal(json_string_value(json_object_get(row, "received_at")),
                        "2026-01-01T00:00:00.000Z");
    assert_int_equal(json_integer_value(json_object_get(row, "attempts")), 0);
    assert_non_null(json_object_get(row, "updated_at"));
    json_decref(rf);

    json_t *park = rk_store_list_json(f->s, NULL, "park", 0);
    assert_int_equal(json_array_size(park), 2);
    assert_true(json_is_null(json_object_get(json_array_get(park, 1), "codes")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(park, 1), "anomalies")),
                     0);
    json_decref(park);

    json_t *lim = rk_store_list_json(f->s, NULL, NULL, 2);
    assert_int_equal(json_array_size(lim), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lim, 1), "id")), id[3]);
    json_decref(lim);

    json_t *none = rk_store_list_json(f->s, RK_ST_FAILED, NULL, 0);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
}

static void test_show_json(void **state)
{
    fixture *f = *state;
    assert_null(rk_store_show_json(f->s, 1));
    int64_t id = add_doc(f, "show.xml", "<Antrag/>", T0);
    assert_null(rk_store_show_json(f->s, id + 1));
    assert_int_equal(rk_store_advance(f->s, id, &(rk_advance){.actor = "engine",
                                                              .path = {RK_ST_RECEIVED,
                                                                       RK_ST_REVIEW},
                                                              .reason = {"blockiert"},
                                                              .steps = 1,
                                                              .match = 1,
                                                              .job = "fisch",
                                                              .job_version = 2,
                                                              .root_ns = "urn:f",
                                                              .root_name = "Antrag",
                                                              .delivery = 1,
                                                              .attempts = 1,
                                                              .last_error = "oops",
                                                              .target_id = "T-1"}),
                     0);
    rk_result r;
    rk_result_init(&r);
    r.fields = calloc(1, sizeof *r.fields);
    r.n_fields = 1;
    set_field(&r.fields[0], "nachname", "Muster", "Muster", "a:Name", "/a:Antrag/a:Name");
    rk_result_add_anomaly(&r, "PFLICHTFELD", "vorname", RK_SEV_BLOCK, "Vorname fehlt");
    assert_int_equal(rk_store_save_result(f->s, id, &r), 0);
    rk_result_free(&r);

    json_t *o = rk_store_show_json(f->s, id);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), id);
    assert_string_equal(json_string_value(json_object_get(o, "job")), "fisch");
    assert_int_equal(json_integer_value(json_object_get(o, "job_version")), 2);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "review");
    assert_string_equal(json_string_value(json_object_get(o, "uid")), "uid0001");
    assert_string_equal(json_string_value(json_object_get(o, "source_ref")), "show.xml");
    assert_string_equal(json_string_value(json_object_get(o, "root_name")), "Antrag");
    assert_string_equal(json_string_value(json_object_get(o, "target_id")), "T-1");
    assert_string_equal(json_string_value(json_object_get(o, "last_error")), "oops");
    assert_int_equal(json_integer_value(json_object_get(o, "size")), 9);
    assert_int_equal(json_integer_value(json_object_get(o, "payload_stored")), 1);

    json_t *ev = json_object_get(o, "events");
    assert_int_equal(json_array_size(ev), 2);
    assert_true(json_is_null(json_object_get(json_array_get(ev, 0), "from_state")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "to_state")),
                        "received");
    json_t *e1 = json_array_get(ev, 1);
    assert_string_equal(json_string_value(json_object_get(e1, "from_state")), "received");
    assert_string_equal(json_string_value(json_object_get(e1, "to_state")), "review");
    assert_string_equal(json_string_value(json_object_get(e1, "actor")), "engine");
    assert_string_equal(json_string_value(json_object_get(e1, "reason")), "blockiert");

    json_t *an = json_object_get(o, "anomalies");
    assert_int_equal(json_array_size(an), 1);
    json_t *a0 = json_array_get(an, 0);
    assert_string_equal(json_string_value(json_object_get(a0, "code")), "PFLICHTFELD");
    assert_string_equal(json_string_value(json_object_get(a0, "field")), "vorname");
    assert_string_equal(json_string_value(json_object_get(a0, "severity")), "block");
    assert_string_equal(json_string_value(json_object_get(a0, "message")), "Vorname fehlt");

    json_t *fl = json_object_get(o, "fields");
    assert_int_equal(json_array_size(fl), 1);
    json_t *f0 = json_array_get(fl, 0);
    assert_string_equal(json_string_value(json_object_get(f0, "name")), "nachname");
    assert_string_equal(json_string_value(json_object_get(f0, "value")), "Muster");
    assert_string_equal(json_string_value(json_object_get(f0, "xpath")), "a:Name");
    json_decref(o);

    /* purged payload shows as not stored */
    assert_int_equal(side_exec(f, "UPDATE submissions SET payload = NULL", NULL, 0),
                     SQLITE_OK);
    o = rk_store_show_json(f->s, id);
    assert_int_equal(json_integer_value(json_object_get(o, "payload_stored")), 0);
    json_decref(o);
}

/* ---- group commit --------------------------------------------------------------- */

static void test_group_commit_rollback(void **state)
{
    fixture *f = *state;
    int64_t existing = add(f);
    assert_int_equal(rk_store_begin(f->s), 0);
    int64_t id = add(f);
    static const char *const cycle[] = {RK_ST_VALIDATED, RK_ST_MAPPED, RK_ST_READY,
                                        RK_ST_DELIVERING, RK_ST_RETRY_WAIT};
    for (int i = 0; i < 200; i++) {
        assert_int_equal(rk_store_transition(f->s, id, NULL, cycle[i % 5], "t", NULL), 0);
        assert_int_equal(rk_store_transition(f->s, existing, NULL, cycle[i % 5], "t", NULL),
                         0);
    }
    /* nothing is visible to another connection before the commit */
    assert_int_equal(count_where(f, "jobs", NULL), 1);
    assert_int_equal(count_where(f, "events", NULL), 1);
    assert_int_equal(rk_store_rollback(f->s), 0);
    assert_int_equal(count_where(f, "jobs", NULL), 1);
    assert_int_equal(count_where(f, "submissions", NULL), 1);
    assert_int_equal(count_where(f, "events", NULL), 1);
    assert_string_equal(q_text(f, "SELECT state FROM jobs"), "received");
    /* and the store works normally afterwards; a commit makes it visible */
    assert_int_equal(rk_store_begin(f->s), 0);
    assert_int_equal(rk_store_transition(f->s, existing, RK_ST_RECEIVED, RK_ST_VALIDATED, "t",
                                         NULL),
                     0);
    assert_int_equal(rk_store_commit(f->s), 0);
    assert_string_equal(q_text(f, "SELECT state FROM jobs"), "validated");
    assert_int_equal(count_where(f, "events", NULL), 2);
}

/* Stores doc from a networked source. */
static int64_t add_net(fixture *f, const char *ref)
{
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate("<A/>", 4, &z, &zlen), 0);
    char uid[40], sha[65];
    snprintf(uid, sizeof uid, "net%04d", ++f->n_subs);
    rk_sha256_hex("<A/>", 4, sha);
    rk_submission_in in = {uid, "fitconnect:p", ref, sha, 4, z, zlen, T0};
    int64_t id = 0;
    assert_int_equal(rk_store_add_submission(f->s, &in, "test", &id), 0);
    free(z);
    return id;
}

typedef struct notices_seen {
    int n;
    int64_t id[8];
    char state[8][16];
    char ref[8][32];
    char reason[8][64];
} notices_seen;

static int on_notice_row(const rk_notice *n, void *arg)
{
    notices_seen *ns = arg;
    if (ns->n < 8) {
        ns->id[ns->n] = n->id;
        snprintf(ns->state[ns->n], sizeof ns->state[0], "%s", n->state);
        snprintf(ns->ref[ns->n], sizeof ns->ref[0], "%s", n->source_ref);
        snprintf(ns->reason[ns->n], sizeof ns->reason[0], "%s", n->reason ? n->reason : "-");
    }
    ns->n++;
    return 0;
}

/* Delivered and rejected submissions of a networked source leave a notice
 * (in the transition's transaction); the directory inbox's do not; a sent
 * notice is not offered again and its reason is cleared. */
static void test_notices_for_networked_sources(void **state)
{
    fixture *f = *state;
    int64_t dir = add(f);
    int64_t a = add_net(f, "sub-a");
    int64_t b = add_net(f, "sub-b");
    assert_int_equal(rk_store_transition(f->s, dir, NULL, "delivered", "t", NULL), 0);
    assert_int_equal(rk_store_transition(f->s, a, NULL, "delivered", "t", NULL), 0);
    assert_int_equal(rk_store_add_anomaly(f->s, b, "ABGELEHNT", NULL, RK_SEV_BLOCK,
                                          "Unterlagen fehlen"), 0);
    assert_int_equal(rk_store_transition(f->s, b, NULL, "rejected", "t", NULL), 0);
    notices_seen ns = {0};
    assert_int_equal(rk_store_notices(f->s, 0, on_notice_row, &ns), 0);
    assert_int_equal(ns.n, 2);
    assert_string_equal(ns.ref[0], "sub-a");
    assert_string_equal(ns.state[0], "delivered");
    assert_string_equal(ns.reason[0], "-");
    assert_string_equal(ns.ref[1], "sub-b");
    assert_string_equal(ns.state[1], "rejected");
    assert_string_equal(ns.reason[1], "Unterlagen fehlen");
    /* a failed attempt keeps it; a confirmed one is gone and its reason cleared */
    assert_int_equal(rk_store_notice_done(f->s, ns.id[1], 0, "portal down"), 0);
    assert_int_equal(rk_store_notice_done(f->s, ns.id[0], 1, NULL), 0);
    notices_seen again = {0};
    assert_int_equal(rk_store_notices(f->s, 0, on_notice_row, &again), 0);
    assert_int_equal(again.n, 1);
    assert_string_equal(again.ref[0], "sub-b");
    assert_int_equal(count_where(f, "notices", "attempts = 1 AND last_error = 'portal down'"), 1);
    assert_int_equal(count_where(f, "notices", "sent_at IS NOT NULL AND reason IS NULL"), 1);

    /* rk_store_advance looks the source up, unless the caller says the
     * job came from a source that answers nobody (it is trusted) */
    int64_t c = add_net(f, "sub-c"), d = add_net(f, "sub-d");
    assert_int_equal(rk_store_advance(f->s, c, &(rk_advance){.actor = "t",
                                                             .path = {"received", "delivered"},
                                                             .steps = 1}),
                     0);
    assert_int_equal(rk_store_advance(f->s, d, &(rk_advance){.actor = "t",
                                                             .path = {"received", "delivered"},
                                                             .steps = 1,
                                                             .quiet_source = 1}),
                     0);
    assert_int_equal(count_where(f, "notices", "source_ref = 'sub-c'"), 1);
    assert_int_equal(count_where(f, "notices", "source_ref = 'sub-d'"), 0);
}

static void test_media_and_attachments(void **state)
{
    fixture *f = *state;
    int64_t id = add_net(f, "sub-json");
    char *m = rk_store_media(f->s, id);
    assert_null(m); /* XML unless said otherwise */
    assert_int_equal(rk_store_set_media(f->s, id, "application/json"), 0);
    m = rk_store_media(f->s, id);
    assert_string_equal(m, "application/json");
    free(m);
    assert_int_equal(rk_store_add_attachment(f->s, id, "att-1", "application/pdf", "%PDF-1.4", 8),
                     0);
    /* sha256sum of "%PDF-1.4" */
    assert_int_equal(count_where(f, "attachments", "name = 'att-1' AND size = 8 AND"
                                 " media_type = 'application/pdf' AND sha256 ="
                                 " 'e16fa5d9b51928755db85b917f0297babaf22c7a47e97d9212adab56e61ba04e'"), 1);
    assert_int_equal(count_where(f, "attachments", "data IS NOT NULL"), 1);
}

int main(void)
{
    rk_log_set_level(RK_LOG_LVL_ERROR);
    umask(022);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_notices_for_networked_sources),
        T(test_media_and_attachments),
        T(test_open_creates_0600_wal_migrated),
        T(test_reopen_does_not_migrate_again),
        T(test_fields_migrated_to_rows_per_job),
        T(test_schema9_indexes),
        T(test_schema10_delivery_check),
        T(test_newer_schema_refused),
        T(test_newer_schema_refused_readonly),
        T(test_readonly_missing_file),
        T(test_readonly_foreign_files),
        T(test_readonly_open_reads),
        T(test_add_submission_rows),
        T(test_add_submission_duplicate_uid),
        T(test_savepoint_item_all_or_nothing),
        T(test_payload_round_trip_and_purge),
        T(test_advance_match),
        T(test_transition),
        T(test_transition_wrong_from),
        T(test_advance),
        T(test_add_processed),
    T(test_advance_refused),
        T(test_background_checkpoints),
        T(test_transition_invalid_state),
        cmocka_unit_test(test_states),
        T(test_events_append_only),
        T(test_save_result_replaces),
        T(test_field_sets_shared_and_rolled_back),
        T(test_delivery_rows),
        T(test_many_fields),
        T(test_values_json_as_sqlite),
        T(test_load_result_round_trip),
        T(test_dup_check_window),
        T(test_dup_find_before_the_job),
    T(test_dup_check_ignores_rejected),
        T(test_dup_sees_other_connections),
        T(test_dup_set_read_in_rolled_back_txn),
        T(test_dup_set_keeps_the_window),
        T(test_schema11_dupkeys),
        T(test_advance_delivery),
        T(test_pending),
        T(test_status_json_empty),
        T(test_status_json_counts),
        T(test_find_filters),
        T(test_list_json),
        T(test_show_json),
        T(test_group_commit_rollback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
