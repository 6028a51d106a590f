/*
 * pgtest_connector.c — the postgres connector through the connector host,
 * against a real PostgreSQL server.
 *
 * Not named test_*.c on purpose: it needs a server, so the plain unit run
 * does not pick it up.  tests/system/test_postgres_connector.py starts a
 * throw-away server (tests/system/pgserver.py), runs this binary with
 * REKEY_TEST_PG_CONNINFO set, and checks the rows again with psql.
 * Without REKEY_TEST_PG_CONNINFO every test FAILS: a run that silently
 * tested nothing would look like a pass.
 *
 * The tests run in order and leave their tables behind for the pytest
 * side: antrag holds key-1 (nachname Muster) and key-2 (nachname
 * Beispiel, telefon 0301234); wieder holds key-r1..key-r3; rk_s.antrag
 * holds key-s1.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "connector.h"
#include "util.h"

#define ENV_NAME "REKEY_TEST_PG_CONNINFO"

static const char *conninfo;
static PGconn *adm; /* the tests' own connection, to look behind the connector */

/* ---- helpers ------------------------------------------------------------ */

static void adm_exec(const char *sql)
{
    PGresult *r = PQexec(adm, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* The first value of the first row ("<null>", "<none>" without rows). */
static const char *adm_value(const char *sql)
{
    static char out[256];
    PGresult *r = PQexec(adm, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    if (PQntuples(r) == 0)
        snprintf(out, sizeof out, "<none>");
    else if (PQgetisnull(r, 0, 0))
        snprintf(out, sizeof out, "<null>");
    else
        snprintf(out, sizeof out, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

/* The rk_id of the row with this key, as text. */
static const char *id_of(const char *table, const char *key)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT rk_id FROM %s WHERE rk_idempotency_key = '%s'", table, key);
    return adm_value(sql);
}

static rk_plugin *pg_plugin(void)
{
    char err[512] = "";
    rk_plugin *p = rk_plugin_load("connectors", "postgres", err, sizeof err);
    if (!p)
        fail_msg("loading postgres: %s", err);
    return p;
}

/* Opens the connector on table with extra settings as key, value pairs
 * ending with NULL; the conninfo is the server's unless one is given. */
static rk_conn *open_pg(const char *table, ...)
{
    rk_setting s[8];
    size_t n = 0;
    s[n++] = (rk_setting){"conninfo", (char *)conninfo};
    s[n++] = (rk_setting){"table", (char *)table};
    va_list ap;
    va_start(ap, table);
    const char *k;
    while ((k = va_arg(ap, const char *)) && n < 8) {
        const char *v = va_arg(ap, const char *);
        if (strcmp(k, "conninfo") == 0) {
            s[0].value = (char *)v;
            continue;
        }
        s[n++] = (rk_setting){(char *)k, (char *)v};
    }
    va_end(ap);
    char err[512] = "";
    rk_conn *c = rk_conn_open(pg_plugin(), "fischereischein", s, n, err, sizeof err);
    if (!c)
        fail_msg("open: %s", err);
    return c;
}

typedef struct answer {
    rk_deliver_status st;
    char msg[512];
    char tid[64];
    int64_t retry_after;
} answer;

static answer deliver(rk_conn *c, const char *key, const rk_kv *fields, size_t n)
{
    answer a;
    memset(&a, 0, sizeof a);
    rk_record r = {sizeof r, key, "sub-0001", "fischereischein", fields, n};
    a.st = rk_conn_deliver(c, &r, a.msg, sizeof a.msg, a.tid, sizeof a.tid, &a.retry_after);
    return a;
}

static int group_setup(void **state)
{
    (void)state;
    conninfo = getenv(ENV_NAME);
    if (!conninfo || !conninfo[0]) {
        print_error("%s is not set: this test needs a PostgreSQL server; run it through "
                    "tests/system/test_postgres_connector.py\n", ENV_NAME);
        return -1;
    }
    adm = PQconnectdb(conninfo);
    if (PQstatus(adm) != CONNECTION_OK) {
        print_error("cannot connect with %s: %s\n", ENV_NAME, PQerrorMessage(adm));
        return -1;
    }
    PGresult *r = PQexec(adm, "SET client_min_messages = warning; "
                              "DROP TABLE IF EXISTS antrag, wieder, gesperrt, streng, typed, "
                              "fehlt, stapel; DROP SCHEMA IF EXISTS rk_s CASCADE");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (adm)
        PQfinish(adm);
    rk_plugin_unload_all();
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_pg_idempotent(void **state)
{
    (void)state;
    rk_conn *c = open_pg("antrag", NULL);
    rk_kv f[] = {{"nachname", "Muster"}, {"vorname", NULL}};
    answer a = deliver(c, "key-1", f, 2);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "1");
    assert_string_equal(a.msg, "inserted row rk_id 1");
    answer b = deliver(c, "key-1", f, 2);
    assert_int_equal(b.st, RK_DELIVER_OK);
    assert_string_equal(b.tid, "1");
    assert_string_equal(b.msg, "updated the row delivered before (rk_id 1)");
    rk_conn_close(c);

    /* A new instance (the daemon restarted) finds the row too. */
    c = open_pg("antrag", NULL);
    a = deliver(c, "key-1", f, 2);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "1");
    rk_conn_close(c);

    assert_string_equal(adm_value("SELECT count(*) FROM antrag"), "1");
    assert_string_equal(adm_value("SELECT nachname FROM antrag"), "Muster");
    assert_string_equal(adm_value("SELECT vorname FROM antrag"), "<null>");
    assert_string_equal(adm_value("SELECT rk_submission FROM antrag"), "sub-0001");
    assert_string_equal(adm_value("SELECT rk_delivered_at > now() - interval '1 minute' "
                                  "FROM antrag"), "t");
    assert_string_equal(adm_value("SELECT data_type FROM information_schema.columns WHERE "
                                  "table_name = 'antrag' AND column_name = 'nachname'"),
                        "text");
}

static void test_pg_new_field(void **state)
{
    (void)state;
    rk_conn *c = open_pg("antrag", NULL);
    rk_kv f[] = {{"nachname", "Beispiel"}, {"telefon", "0301234"}};
    answer a = deliver(c, "key-2", f, 2);
    assert_int_equal(a.st, RK_DELIVER_OK);
    /* rk_id is a sequence, which the earlier conflicting inserts advanced:
     * the answer is whatever the row got. */
    char id[32];
    snprintf(id, sizeof id, "%s", id_of("antrag", "key-2"));
    assert_string_equal(a.tid, id);
    assert_string_not_equal(a.tid, "1");
    a = deliver(c, "key-2", f, 2);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, id);
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT count(*) FROM information_schema.columns WHERE "
                                  "table_name = 'antrag' AND column_name = 'telefon'"), "1");
    assert_string_equal(adm_value("SELECT count(*) FROM antrag"), "2");
    assert_string_equal(adm_value("SELECT telefon FROM antrag WHERE rk_id = 1"), "<null>");
    assert_string_equal(adm_value("SELECT telefon FROM antrag WHERE nachname = 'Beispiel'"),
                        "0301234");
}

static void test_pg_identifiers(void **state)
{
    (void)state;
    rk_conn *c = open_pg("antrag", NULL);
    rk_kv evil[] = {{"nachname", "x"}, {"a\" TEXT); DROP TABLE antrag; --", "x"}};
    answer a = deliver(c, "key-3", evil, 2);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "field name 'a\" TEXT); DROP TABLE antrag; --' is not an "
                               "identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)");
    rk_kv reserved[] = {{"rk_id", "5"}};
    a = deliver(c, "key-3", reserved, 1);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "field name 'rk_id' is reserved by the postgres connector");
    rk_kv sys[] = {{"xmin", "5"}};
    assert_int_equal(deliver(c, "key-3", sys, 1).st, RK_DELIVER_PERMANENT);
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT count(*) FROM antrag"), "2");

    rk_setting s[] = {{"conninfo", (char *)conninfo}, {"table", "antrag\"; DROP TABLE antrag"}};
    char err[512] = "";
    assert_null(rk_conn_open(pg_plugin(), "jobx", s, 2, err, sizeof err));
    assert_non_null(strstr(err, "is not an identifier or schema.identifier"));

    /* schema.table is two identifiers. */
    adm_exec("CREATE SCHEMA rk_s");
    c = open_pg("rk_s.antrag", NULL);
    rk_kv f[] = {{"nachname", "Schema"}};
    a = deliver(c, "key-s1", f, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "1");
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT nachname FROM rk_s.antrag"), "Schema");
    assert_string_equal(adm_value("SELECT count(*) FROM antrag"), "2");
}

/* The conninfo is secret: no message shows it, not even a broken one. */
static void test_pg_secret_never_shown(void **state)
{
    (void)state;
    char err[512] = "";
    rk_setting down[] = {{"conninfo", "host=/nonexistent/rekey port=1 dbname=x "
                                      "password=geheim-123"},
                         {"table", "t"},
                         {"connect_timeout_s", "2"}};
    assert_null(rk_conn_open(pg_plugin(), "jobx", down, 3, err, sizeof err));
    assert_non_null(strstr(err, "connector 'postgres' could not open for job 'jobx': "
                                "cannot connect to the target database: "));
    assert_null(strstr(err, "geheim-123"));

    rk_setting broken[] = {{"conninfo", "password=geheim-123 bogus"}, {"table", "t"}};
    assert_null(rk_conn_open(pg_plugin(), "jobx", broken, 2, err, sizeof err));
    assert_string_equal(err, "connector 'postgres' could not open for job 'jobx': setting "
                             "'conninfo' is not a valid libpq connection string");

    rk_setting badint[] = {{"conninfo", "password=geheim-123"}, {"table", "t"},
                           {"connect_timeout_s", "zehn"}};
    assert_null(rk_conn_open(pg_plugin(), "jobx", badint, 3, err, sizeof err));
    assert_string_equal(err, "setting 'connect_timeout_s' of connector 'postgres' must be "
                             "an integer (got 'zehn')");
}

/* A constraint of the target (class 23) or a value of the wrong type
 * (class 22) is PERMANENT; the message never shows the value. */
static void test_pg_constraint_and_type(void **state)
{
    (void)state;
    adm_exec("CREATE TABLE streng (rk_id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, "
             "rk_idempotency_key TEXT UNIQUE NOT NULL, rk_submission TEXT, "
             "rk_delivered_at TIMESTAMPTZ NOT NULL DEFAULT now())");
    rk_conn *c = open_pg("streng", NULL);
    rk_kv nul[] = {{"name", NULL}};
    answer a = deliver(c, "key-1", nul, 1);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "insert into 'streng' failed (SQLSTATE 23502): null value in "
                               "column \"name\" of relation \"streng\" violates not-null "
                               "constraint");
    rk_conn_close(c);

    adm_exec("CREATE TABLE typed (rk_id BIGSERIAL PRIMARY KEY, alter_jahre INTEGER, "
             "rk_idempotency_key TEXT UNIQUE NOT NULL, rk_submission TEXT, "
             "rk_delivered_at TIMESTAMPTZ NOT NULL DEFAULT now())");
    c = open_pg("typed", NULL);
    rk_kv wrong[] = {{"alter_jahre", "Mustermann"}};
    a = deliver(c, "key-1", wrong, 1);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "insert into 'typed': a value does not fit its column's type "
                               "(SQLSTATE 22P02)");
    assert_null(strstr(a.msg, "Mustermann"));
    rk_kv right[] = {{"alter_jahre", "42"}};
    a = deliver(c, "key-2", right, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT count(*) FROM streng"), "0");
    assert_string_equal(adm_value("SELECT alter_jahre FROM typed"), "42");
}

/* ABI 1.1: a batch in one transaction; the refused record is rolled back
 * to its savepoint and the others go in; a repeated key in the batch
 * updates its row. */
static void test_pg_batch(void **state)
{
    (void)state;
    adm_exec("CREATE TABLE stapel (rk_id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, "
             "rk_idempotency_key TEXT UNIQUE NOT NULL, rk_submission TEXT, "
             "rk_delivered_at TIMESTAMPTZ NOT NULL DEFAULT now())");
    rk_conn *c = open_pg("stapel", NULL);
    assert_true(rk_conn_can_batch(c));
    rk_kv g1[] = {{"name", "Muster"}}, bad[] = {{"name", NULL}}, g2[] = {{"name", "Probe"}};
    rk_record r[4] = {{sizeof r[0], "key-1", "sub-1", "fischereischein", g1, 1},
                      {sizeof r[0], "key-2", "sub-2", "fischereischein", bad, 1},
                      {sizeof r[0], "key-3", "sub-3", "fischereischein", g2, 1},
                      {sizeof r[0], "key-1", "sub-1", "fischereischein", g2, 1}};
    const rk_record *rp[4] = {&r[0], &r[1], &r[2], &r[3]};
    answer a[4];
    rk_conn_answer out[4];
    memset(a, 0, sizeof a);
    for (int i = 0; i < 4; i++)
        out[i] = (rk_conn_answer){RK_DELIVER_RETRY, a[i].msg, sizeof a[i].msg, a[i].tid,
                                  sizeof a[i].tid, 0};
    rk_conn_deliver_batch(c, 4, rp, out);
    assert_int_equal(out[0].status, RK_DELIVER_OK);
    assert_int_equal(out[1].status, RK_DELIVER_PERMANENT);
    assert_non_null(strstr(a[1].msg, "SQLSTATE 23502"));
    assert_int_equal(out[2].status, RK_DELIVER_OK);
    assert_int_equal(out[3].status, RK_DELIVER_OK);
    assert_string_equal(a[3].tid, a[0].tid);
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT count(*) FROM stapel"), "2");
    assert_string_equal(adm_value("SELECT name FROM stapel WHERE rk_idempotency_key = 'key-1'"),
                        "Probe");
}

static void test_pg_no_create(void **state)
{
    (void)state;
    rk_conn *c = open_pg("fehlt", "create_table", "false", NULL);
    rk_kv f[] = {{"name", "x"}};
    answer a = deliver(c, "key-1", f, 1);
    assert_int_equal(a.st, RK_DELIVER_FATAL);
    assert_string_equal(a.msg, "table 'fehlt' does not exist and create_table is off");
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT to_regclass('fehlt') IS NULL"), "t");
}

/* Ends every backend of the connector (application_name "rekey") and
 * waits until they are gone: pg_terminate_backend with a timeout waits.
 * bool_and over no rows is NULL, so a connector without a backend fails. */
static void kill_connector_backends(void)
{
    assert_string_equal(adm_value("SELECT bool_and(ok) FROM (SELECT pg_terminate_backend(pid, "
                                  "5000) AS ok FROM pg_stat_activity WHERE application_name = "
                                  "'rekey' AND pid <> pg_backend_pid()) t"), "t");
}

/* A lost connection is reset once within the same delivery; when the
 * server takes no connections the answer is RETRY, and once it does
 * again the next delivery goes through. */
static void test_pg_reconnect(void **state)
{
    (void)state;
    rk_conn *c = open_pg("wieder", NULL);
    rk_kv f[] = {{"nachname", "Eins"}};
    assert_int_equal(deliver(c, "key-r1", f, 1).st, RK_DELIVER_OK);

    kill_connector_backends();
    answer a = deliver(c, "key-r2", f, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, id_of("wieder", "key-r2"));

    /* A database cannot refuse connections while one is using it, so
     * that switch goes through the server's "postgres" database. */
    char db[128], sql[256];
    snprintf(db, sizeof db, "%s", adm_value("SELECT current_database()"));
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {conninfo, "postgres", NULL};
    PGconn *other = PQconnectdbParams(keys, vals, 1);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS false", db);
    PQclear(PQexec(other, sql));
    kill_connector_backends();
    a = deliver(c, "key-r3", f, 1);
    snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db);
    PGresult *r = PQexec(other, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(other);
    assert_int_equal(a.st, RK_DELIVER_RETRY);
    assert_non_null(strstr(a.msg, "connection to the target database lost: "));
    assert_null(strstr(a.msg, "password"));
    assert_int_equal(a.retry_after, -1);
    assert_string_equal(adm_value("SELECT count(*) FROM wieder"), "2");

    a = deliver(c, "key-r3", f, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, id_of("wieder", "key-r3"));
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT count(*) FROM wieder"), "3");
}

/* A lock that outlasts lock_timeout (SQLSTATE 55P03) is transient. */
static void test_pg_lock_retry(void **state)
{
    (void)state;
    char ci[1024];
    snprintf(ci, sizeof ci, "%s options='-c lock_timeout=200'", conninfo);
    rk_conn *c = open_pg("gesperrt", "conninfo", ci, NULL);
    rk_kv f[] = {{"nachname", "Eins"}};
    assert_int_equal(deliver(c, "key-1", f, 1).st, RK_DELIVER_OK);
    adm_exec("BEGIN");
    adm_exec("LOCK TABLE gesperrt IN ACCESS EXCLUSIVE MODE");
    answer a = deliver(c, "key-2", f, 1);
    adm_exec("COMMIT");
    assert_int_equal(a.st, RK_DELIVER_RETRY);
    assert_string_equal(a.msg, "insert into 'gesperrt' failed (SQLSTATE 55P03): canceling "
                               "statement due to lock timeout");
    a = deliver(c, "key-2", f, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, id_of("gesperrt", "key-2"));
    rk_conn_close(c);
    assert_string_equal(adm_value("SELECT count(*) FROM gesperrt"), "2");
}

/* Run from the top of the build tree, wherever the binary was started. */
static void chdir_to_tree(void)
{
    if (access("connectors/rekey_connector.h", R_OK) == 0)
        return;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return;
    exe[n] = '\0';
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            return;
        *slash = '\0';
    }
    if (chdir(exe) != 0)
        fprintf(stderr, "cannot change to %s\n", exe);
}

int main(void)
{
    chdir_to_tree();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg_idempotent),
        cmocka_unit_test(test_pg_new_field),
        cmocka_unit_test(test_pg_identifiers),
        cmocka_unit_test(test_pg_secret_never_shown),
        cmocka_unit_test(test_pg_constraint_and_type),
        cmocka_unit_test(test_pg_batch),
        cmocka_unit_test(test_pg_no_create),
        cmocka_unit_test(test_pg_reconnect),
        cmocka_unit_test(test_pg_lock_retry),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    /* A group setup that fails (no server) must fail the run too. */
    return failed ? 1 : 0;
}
