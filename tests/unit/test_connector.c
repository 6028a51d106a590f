/*
 * test_connector.c — the connector host (agent/connector.c) with the real
 * sqlite connector and the broken test plugins of tests/unit/plugins.
 *
 * Runs from the top of the build tree (the runner changes there; when
 * started elsewhere it finds the tree from its own path), because the
 * plugins are loaded from "connectors" and "tests/unit/plugins" exactly
 * as the daemon loads them.  Every target database lives in a temporary
 * folder that the group teardown removes.
 */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "connector.h"
#include "util.h"

#define PLUGINS "tests/unit/plugins"

static char tmpdir[] = "/tmp/rekey-conn-XXXXXX";

/* ---- helpers ------------------------------------------------------------ */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rk_plugin_unload_all();
    return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A path inside the temporary folder (static buffer per slot). */
static const char *tmp_path(const char *name)
{
    static char bufs[4][PATH_MAX];
    static int slot;
    char *b = bufs[slot++ % 4];
    snprintf(b, PATH_MAX, "%s/%s", tmpdir, name);
    return b;
}

static rk_plugin *load(const char *search, const char *name)
{
    char err[512] = "";
    rk_plugin *p = rk_plugin_load(search, name, err, sizeof err);
    if (!p)
        fail_msg("loading %s: %s", name, err);
    return p;
}

/* Loads a plugin that must be refused; returns the message (static). */
static const char *refused(const char *search, const char *name)
{
    static char err[512];
    err[0] = '\0';
    rk_plugin *p = rk_plugin_load(search, name, err, sizeof err);
    assert_null(p);
    return err;
}

/* Opens an sqlite instance on database/table with extra settings given as
 * key, value pairs ending with NULL. */
static rk_conn *open_sqlite(const char *database, const char *table, ...)
{
    rk_setting s[8];
    size_t n = 0;
    s[n++] = (rk_setting){"database", (char *)database};
    s[n++] = (rk_setting){"table", (char *)table};
    va_list ap;
    va_start(ap, table);
    const char *k;
    while ((k = va_arg(ap, const char *)) && n < 8) {
        s[n].key = (char *)k;
        s[n].value = va_arg(ap, char *);
        n++;
    }
    va_end(ap);
    char err[512] = "";
    rk_conn *c = rk_conn_open(load("connectors", "sqlite"), "fischereischein", s, n, err,
                              sizeof err);
    if (!c)
        fail_msg("open: %s", err);
    return c;
}

static rk_record mkrec(const char *key, const rk_kv *fields, size_t n)
{
    rk_record r = {sizeof r, key, "sub-0001", "fischereischein", fields, n};
    return r;
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
    rk_record r = mkrec(key, fields, n);
    a.st = rk_conn_deliver(c, &r, a.msg, sizeof a.msg, a.tid, sizeof a.tid, &a.retry_after);
    return a;
}

/* One integer from the target database (-1 on error). */
static long long q_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        print_error("q_int(%s): %s\n", sql, h ? sqlite3_errmsg(h) : "no handle");
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

/* One text value from the target database, copied into out ("<null>"
 * for NULL, "<error>" on error). */
static const char *q_text(const char *db, const char *sql)
{
    static char out[256];
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(out, sizeof out, "<error>");
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, sizeof out, "%s", t ? (const char *)t : "<null>");
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return out;
}

static void exec_sql(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    char *e = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    if (sqlite3_exec(h, sql, NULL, NULL, &e) != SQLITE_OK)
        fail_msg("%s: %s", sql, e);
    sqlite3_close(h);
}

/* ---- loading ------------------------------------------------------------ */

static void test_load_search_path(void **state)
{
    (void)state;
    rk_plugin *p = load("/nonexistent/rekey:connectors", "sqlite");
    const char *path = rk_plugin_path(p);
    assert_non_null(path);
    assert_int_equal(path[0], '/');
    const char *tail = "/connectors/sqlite/sqlite.so";
    assert_true(strlen(path) > strlen(tail));
    assert_string_equal(path + strlen(path) - strlen(tail), tail);
    assert_string_equal(rk_plugin_descriptor(p)->name, "sqlite");
    /* Cached per resolved path: another spelling gives the same plugin. */
    assert_ptr_equal(load("./connectors", "sqlite"), p);
    assert_ptr_equal(load(NULL, "connectors/sqlite/sqlite.so"), p);
    /* DIR/NAME.so is the second form of the search. */
    assert_string_equal(rk_plugin_descriptor(load(PLUGINS, "hostcheck"))->name, "hostcheck");
}

static void test_load_not_found(void **state)
{
    (void)state;
    assert_string_equal(refused("/nonexistent/a::connectors", "nosuch"),
                        "connector 'nosuch' not found in plugin path (/nonexistent/a, connectors)");
    assert_non_null(strstr(refused(NULL, "connectors/rekey_connector.h"),
                           "connector 'rekey_connector.h' could not be loaded: "));
    assert_string_equal(refused("connectors", ".."), "connector name '..' is not a plain name");
    assert_string_equal(refused("", "sqlite"),
                        "connector 'sqlite' not found in plugin path (empty)");
}

static void test_plugins_refused(void **state)
{
    (void)state;
    assert_string_equal(refused(PLUGINS, "abi2"),
                        "connector 'abi2' was built for ABI 2.0, this rekey speaks ABI 1.1");
    const char *m = refused(PLUGINS, "noentry");
    assert_non_null(strstr(m, "connector 'noentry'"));
    assert_non_null(strstr(m, "does not export rk_connector_entry()"));
    char want[160];
    snprintf(want, sizeof want,
             "connector 'smallstruct' has a descriptor of %zu bytes, ABI 1 needs at least %zu",
             offsetof(rk_connector, deliver), offsetof(rk_connector, deliver_batch));
    assert_string_equal(refused(PLUGINS, "smallstruct"), want);
    assert_string_equal(refused(PLUGINS, "nulldesc"),
                        "connector 'nulldesc': rk_connector_entry() returned no descriptor");
    assert_string_equal(refused(PLUGINS, "nodeliver"),
                        "connector 'nodeliver' has no deliver in its descriptor");
    /* Loaded by path, the message names the file without ".so". */
    assert_string_equal(refused(NULL, PLUGINS "/abi2.so"),
                        "connector 'abi2' was built for ABI 2.0, this rekey speaks ABI 1.1");
}

/* A plugin built against ABI 1.0 loads and delivers one record at a
 * time: the host never reads past its descriptor for deliver_batch. */
static void test_abi10_plugin(void **state)
{
    (void)state;
    char err[512] = "";
    rk_conn *c = rk_conn_open(load(PLUGINS, "abi10"), "fischereischein", NULL, 0, err,
                              sizeof err);
    if (!c)
        fail_msg("open: %s", err);
    assert_false(rk_conn_can_batch(c));
    rk_kv f[] = {{"nachname", "Muster"}};
    assert_int_equal(deliver(c, "key-1", f, 1).st, RK_DELIVER_OK);
    rk_conn_close(c);
}

/* ---- settings ----------------------------------------------------------- */

static int check(const char *plugin_dir, const char *name, const rk_setting *in, size_t n,
                 rk_kv **out, size_t *n_out, char *err, size_t errlen)
{
    const rk_connector *d = rk_plugin_descriptor(load(plugin_dir, name));
    return rk_settings_check(d, in, n, out, n_out, err, errlen);
}

static void test_settings_defaults(void **state)
{
    (void)state;
    rk_setting in[] = {{"table", "t"}, {"database", "/x.db"}};
    rk_kv *kv = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_int_equal(check("connectors", "sqlite", in, 2, &kv, &n, err, sizeof err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(kv[0].name, "database");
    assert_string_equal(kv[0].value, "/x.db");
    assert_string_equal(kv[1].name, "table");
    assert_string_equal(kv[1].value, "t");
    assert_string_equal(kv[2].name, "create_table");
    assert_string_equal(kv[2].value, "true");
    assert_string_equal(kv[3].name, "busy_timeout_ms");
    assert_string_equal(kv[3].value, "5000");
    rk_settings_free(kv, n);
}

static void test_settings_unknown(void **state)
{
    (void)state;
    rk_setting in[] = {{"database", "/x.db"}, {"table", "t"}, {"foo", "1"}};
    rk_kv *kv = (rk_kv *)1;
    size_t n = 99;
    char err[512] = "";
    assert_int_equal(check("connectors", "sqlite", in, 3, &kv, &n, err, sizeof err),
                     RK_E_CONFIG);
    assert_null(kv);
    assert_int_equal(n, 0);
    assert_string_equal(err, "unknown setting 'foo' for connector 'sqlite'; known: database, "
                             "table, create_table, busy_timeout_ms");
}

static void test_settings_missing_and_twice(void **state)
{
    (void)state;
    rk_kv *kv = NULL;
    size_t n = 0;
    char err[512] = "";
    rk_setting only_db[] = {{"database", "/x.db"}};
    assert_int_equal(check("connectors", "sqlite", only_db, 1, &kv, &n, err, sizeof err),
                     RK_E_CONFIG);
    assert_string_equal(err, "missing required setting 'table' for connector 'sqlite'");
    rk_setting twice[] = {{"database", "/x.db"}, {"table", "a"}, {"table", "b"}};
    assert_int_equal(check("connectors", "sqlite", twice, 3, &kv, &n, err, sizeof err),
                     RK_E_CONFIG);
    assert_string_equal(err, "setting 'table' of connector 'sqlite' is given twice");
    assert_null(kv);
}

static void test_settings_int(void **state)
{
    (void)state;
    rk_kv *kv = NULL;
    size_t n = 0;
    char err[512] = "";
    static const char *bad[] = {"12abc", "", " 5", "5 ", "0x10", "9223372036854775808",
                                "-9223372036854775809", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_setting in[] = {{"database", "/x.db"}, {"table", "t"},
                           {"busy_timeout_ms", (char *)bad[i]}};
        err[0] = '\0';
        assert_int_equal(check("connectors", "sqlite", in, 3, &kv, &n, err, sizeof err),
                         RK_E_CONFIG);
        char want[256];
        snprintf(want, sizeof want,
                 "setting 'busy_timeout_ms' of connector 'sqlite' must be an integer (got '%s')",
                 bad[i]);
        assert_string_equal(err, want);
    }
    /* Both ends of int64_t are accepted, and values arrive canonical. */
    static const char *good[][2] = {{"9223372036854775807", "9223372036854775807"},
                                    {"-9223372036854775808", "-9223372036854775808"},
                                    {"+250", "250"},
                                    {"007", "7"}};
    for (size_t i = 0; i < 4; i++) {
        rk_setting in[] = {{"database", "/x.db"}, {"table", "t"},
                           {"busy_timeout_ms", (char *)good[i][0]}};
        assert_int_equal(check("connectors", "sqlite", in, 3, &kv, &n, err, sizeof err), 0);
        assert_string_equal(kv[3].value, good[i][1]);
        rk_settings_free(kv, n);
    }
}

static void test_settings_bool(void **state)
{
    (void)state;
    rk_kv *kv = NULL;
    size_t n = 0;
    char err[512] = "";
    rk_setting in[] = {{"database", "/x.db"}, {"table", "t"}, {"create_table", "maybe"}};
    assert_int_equal(check("connectors", "sqlite", in, 3, &kv, &n, err, sizeof err),
                     RK_E_CONFIG);
    assert_string_equal(err, "setting 'create_table' of connector 'sqlite' must be "
                             "true/false/yes/no/on/off/1/0 (got 'maybe')");
    static const char *vals[][2] = {{"YES", "true"}, {"off", "false"}, {"0", "false"},
                                    {"1", "true"}};
    for (size_t i = 0; i < 4; i++) {
        in[2].value = (char *)vals[i][0];
        assert_int_equal(check("connectors", "sqlite", in, 3, &kv, &n, err, sizeof err), 0);
        assert_string_equal(kv[2].value, vals[i][1]);
        rk_settings_free(kv, n);
    }
}

/* A secret value never appears in a message, not even a wrong one. */
static void test_settings_secret(void **state)
{
    (void)state;
    const rk_connector *hc = rk_plugin_descriptor(load(PLUGINS, "hostcheck"));
    assert_int_equal(rk_setting_is_secret(hc, "token"), 1);
    assert_int_equal(rk_setting_is_secret(hc, "pin"), 1);
    assert_int_equal(rk_setting_is_secret(hc, "note"), 0);
    assert_int_equal(rk_setting_is_secret(hc, "nosuch"), 0);
    const rk_connector *pg = rk_plugin_descriptor(load("connectors", "postgres"));
    assert_int_equal(rk_setting_is_secret(pg, "conninfo"), 1);
    assert_int_equal(rk_setting_is_secret(pg, "table"), 0);

    rk_kv *kv = NULL;
    size_t n = 0;
    char err[512] = "";
    rk_setting in[] = {{"token", "s3cr3t-token"}, {"pin", "12x9"}};
    assert_int_equal(rk_settings_check(hc, in, 2, &kv, &n, err, sizeof err), RK_E_CONFIG);
    assert_string_equal(err, "setting 'pin' of connector 'hostcheck' must be an integer");
    assert_null(strstr(err, "12x9"));

    /* A plugin's open() failure reaches the caller with the job's name,
     * and with the secret's value redacted wherever the plugin's message
     * repeats it (here the token "refuse" happens to be part of a word). */
    rk_setting refuse[] = {{"token", "refuse"}};
    assert_null(rk_conn_open(load(PLUGINS, "hostcheck"), "jobx", refuse, 1, err, sizeof err));
    assert_string_equal(err, "connector 'hostcheck' could not open for job 'jobx': "
                             "the token was [redacted]d");
}

/* ---- the host around deliver() ------------------------------------------ */

/* open() logs through the host with the component "connector:NAME". */
static void test_log_callback(void **state)
{
    (void)state;
    const char *logf = tmp_path("stderr.log");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(logf, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    rk_setting in[] = {{"token", "t"}, {"verbose", "on"}};
    char err[512] = "";
    rk_conn *c = rk_conn_open(load(PLUGINS, "hostcheck"), "jobx", in, 2, err, sizeof err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_non_null(c);
    rk_conn_close(c);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rk_read_file(logf, 65536, &text, &len), 0);
    assert_non_null(strstr(text, " INFO connector:hostcheck: open job=jobx verbose=true\n"));
    free(text);
}

static void test_deliver_normalised(void **state)
{
    (void)state;
    rk_setting in[] = {{"token", "t"}};
    char err[512] = "";
    rk_conn *c = rk_conn_open(load(PLUGINS, "hostcheck"), "jobx", in, 1, err, sizeof err);
    assert_non_null(c);
    assert_string_equal(rk_conn_descriptor(c)->name, "hostcheck");

    rk_kv ok[] = {{"retry_after", "1500"}};
    answer a = deliver(c, "k1", ok, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.msg, "ok");
    assert_string_equal(a.tid, "T-k1");
    assert_int_equal(a.retry_after, -1); /* only a RETRY carries it */

    rk_kv retry[] = {{"status", "1"}, {"retry_after", "1500"}};
    a = deliver(c, "k2", retry, 2);
    assert_int_equal(a.st, RK_DELIVER_RETRY);
    assert_int_equal(a.retry_after, 1500);
    assert_string_equal(a.tid, ""); /* only an OK carries a target id */

    rk_kv retry_neg[] = {{"status", "1"}, {"retry_after", "-7"}};
    a = deliver(c, "k2", retry_neg, 2);
    assert_int_equal(a.st, RK_DELIVER_RETRY);
    assert_int_equal(a.retry_after, -1);

    rk_kv perm[] = {{"status", "2"}};
    a = deliver(c, "k3", perm, 1);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.tid, "");

    rk_kv invalid[] = {{"status", "7"}};
    a = deliver(c, "k4", invalid, 1);
    assert_int_equal(a.st, RK_DELIVER_FATAL);
    assert_string_equal(a.msg, "connector 'hostcheck' answered invalid status 7");
    rk_kv negative[] = {{"status", "-1"}};
    a = deliver(c, "k4", negative, 1);
    assert_int_equal(a.st, RK_DELIVER_FATAL);
    assert_string_equal(a.msg, "connector 'hostcheck' answered invalid status -1");

    /* A message without its NUL is cut at the host's buffer and then at
     * the caller's, both times terminated. */
    rk_kv fill[] = {{"fill", "1"}, {"target", "0123456789012345678901234567890123456789"}};
    rk_record r = mkrec("k5", fill, 2);
    char msg[64], tid[8];
    memset(msg, '#', sizeof msg);
    memset(tid, '#', sizeof tid);
    int64_t ra = 0;
    assert_int_equal(rk_conn_deliver(c, &r, msg, sizeof msg, tid, sizeof tid, &ra), RK_DELIVER_OK);
    assert_int_equal(strlen(msg), sizeof msg - 1);
    assert_int_equal(strspn(msg, "x"), sizeof msg - 1);
    assert_string_equal(tid, "0123456");
    /* No buffers at all is allowed too. */
    assert_int_equal(rk_conn_deliver(c, &r, NULL, 0, NULL, 0, NULL), RK_DELIVER_OK);
    rk_conn_close(c);

    assert_int_equal(rk_conn_deliver(NULL, &r, msg, sizeof msg, tid, sizeof tid, &ra),
                     RK_DELIVER_FATAL);
    assert_string_equal(msg, "no connector instance or no record");
}

/* ---- the sqlite connector ----------------------------------------------- */

static void test_sqlite_idempotent(void **state)
{
    (void)state;
    const char *db = tmp_path("idem.db");
    rk_conn *c = open_sqlite(db, "antrag", NULL);
    rk_kv f[] = {{"nachname", "Muster"}, {"vorname", NULL}, {"gebuehr", "12.50"}};
    answer a = deliver(c, "key-1", f, 3);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "1");
    assert_string_equal(a.msg, "inserted row 1");
    answer b = deliver(c, "key-1", f, 3);
    assert_int_equal(b.st, RK_DELIVER_OK);
    assert_string_equal(b.tid, "1");
    assert_string_equal(b.msg, "updated the row delivered before (row 1)");
    rk_conn_close(c);

    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 1);
    assert_string_equal(q_text(db, "SELECT nachname FROM antrag"), "Muster");
    assert_string_equal(q_text(db, "SELECT vorname FROM antrag"), "<null>");
    assert_string_equal(q_text(db, "SELECT gebuehr FROM antrag"), "12.50");
    assert_string_equal(q_text(db, "SELECT rk_idempotency_key FROM antrag"), "key-1");
    assert_string_equal(q_text(db, "SELECT rk_submission FROM antrag"), "sub-0001");
    const char *when = q_text(db, "SELECT rk_delivered_at FROM antrag");
    assert_int_equal(strlen(when), 20);
    assert_int_equal(when[10], 'T');
    assert_int_equal(when[19], 'Z');
    assert_string_equal(q_text(db, "PRAGMA journal_mode"), "wal");
    /* A new instance (the daemon restarted) still finds the row; a
     * repeated key with new values (a replay after a corrected mapping)
     * updates it instead of adding a second row. */
    c = open_sqlite(db, "antrag", NULL);
    rk_kv g[] = {{"nachname", "MUSTER"}, {"vorname", "Erika"}, {"gebuehr", "12.50"}};
    a = deliver(c, "key-1", g, 3);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "1");
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 1);
    assert_string_equal(q_text(db, "SELECT nachname FROM antrag"), "MUSTER");
    assert_string_equal(q_text(db, "SELECT vorname FROM antrag"), "Erika");
}

static void test_sqlite_new_field(void **state)
{
    (void)state;
    const char *db = tmp_path("newfield.db");
    rk_conn *c = open_sqlite(db, "antrag", NULL);
    rk_kv f1[] = {{"nachname", "Muster"}};
    assert_int_equal(deliver(c, "key-1", f1, 1).st, RK_DELIVER_OK);
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('antrag') "
                               "WHERE name = 'telefon'"), 0);
    rk_kv f2[] = {{"nachname", "Beispiel"}, {"telefon", "0301234"}};
    answer a = deliver(c, "key-2", f2, 2);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "2");
    /* Field order differs from the table's: a second cached statement. */
    rk_kv f3[] = {{"telefon", "0401234"}, {"nachname", "Dritte"}};
    a = deliver(c, "key-3", f3, 2);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "3");
    rk_conn_close(c);

    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('antrag') "
                               "WHERE name = 'telefon' AND type = 'TEXT'"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 3);
    assert_string_equal(q_text(db, "SELECT telefon FROM antrag WHERE rowid = 1"), "<null>");
    assert_string_equal(q_text(db, "SELECT telefon FROM antrag WHERE rowid = 2"), "0301234");
    assert_string_equal(q_text(db, "SELECT nachname FROM antrag WHERE rowid = 3"), "Dritte");
}

static void test_sqlite_identifiers(void **state)
{
    (void)state;
    const char *db = tmp_path("ident.db");
    rk_conn *c = open_sqlite(db, "antrag", NULL);
    rk_kv good[] = {{"nachname", "Muster"}};
    assert_int_equal(deliver(c, "key-1", good, 1).st, RK_DELIVER_OK);

    rk_kv evil[] = {{"nachname", "x"}, {"a\" TEXT); DROP TABLE antrag; --", "x"}};
    answer a = deliver(c, "key-2", evil, 2);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "field name 'a\" TEXT); DROP TABLE antrag; --' is not an "
                               "identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)");
    rk_kv digit[] = {{"1abc", "x"}};
    assert_int_equal(deliver(c, "key-3", digit, 1).st, RK_DELIVER_PERMANENT);
    rk_kv reserved[] = {{"RK_Submission", "x"}};
    a = deliver(c, "key-4", reserved, 1);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "field name 'RK_Submission' is reserved by the sqlite connector");
    rk_kv dup[] = {{"nachname", "a"}, {"NACHNAME", "b"}};
    a = deliver(c, "key-5", dup, 2);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "field 'NACHNAME' appears twice in the record");
    a = deliver(c, "", good, 1);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "record has no idempotency key");
    /* 63 bytes is the longest name; 64 is refused. */
    char n63[64], n64[65];
    memset(n63, 'a', 63);
    n63[63] = '\0';
    memset(n64, 'b', 64);
    n64[64] = '\0';
    rk_kv longest[] = {{n63, "x"}};
    assert_int_equal(deliver(c, "key-6", longest, 1).st, RK_DELIVER_OK);
    rk_kv toolong[] = {{n64, "x"}};
    assert_int_equal(deliver(c, "key-7", toolong, 1).st, RK_DELIVER_PERMANENT);
    /* names checked once per list of names: a list that reads like one
     * checked before ("nachname," "vorname,") is checked on its own */
    rk_kv two[] = {{"nachname", "a"}, {"vorname", "b"}};
    assert_int_equal(deliver(c, "key-8", two, 2).st, RK_DELIVER_OK);
    rk_kv joined[] = {{"nachname,vorname", "x"}};
    a = deliver(c, "key-9", joined, 1);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_non_null(strstr(a.msg, "is not an identifier"));
    assert_int_equal(deliver(c, "key-10", two, 2).st, RK_DELIVER_OK);
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 4);
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('antrag')"), 6);

    /* The table name is checked when the instance opens. */
    rk_setting s[] = {{"database", (char *)db}, {"table", "antrag; DROP TABLE antrag"}};
    char err[512] = "";
    assert_null(rk_conn_open(load("connectors", "sqlite"), "jobx", s, 2, err, sizeof err));
    assert_string_equal(err, "connector 'sqlite' could not open for job 'jobx': table name "
                             "'antrag; DROP TABLE antrag' is not an identifier "
                             "([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)");
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 4);
}

/* A writer holding the lock longer than busy_timeout_ms makes RETRY. */
static void test_sqlite_busy(void **state)
{
    (void)state;
    const char *db = tmp_path("busy.db");
    rk_conn *c = open_sqlite(db, "antrag", "busy_timeout_ms", "50", NULL);
    rk_kv f[] = {{"nachname", "Muster"}};
    assert_int_equal(deliver(c, "key-1", f, 1).st, RK_DELIVER_OK);

    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    answer a = deliver(c, "key-2", f, 1);
    assert_int_equal(a.st, RK_DELIVER_RETRY);
    assert_string_equal(a.msg, "insert into 'antrag' failed: database is locked");
    assert_int_equal(a.retry_after, -1);
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);

    a = deliver(c, "key-2", f, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "2");
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 2);
}

/* Holds the target's write lock for a while, then lets go. */
static void *hold_lock(void *arg)
{
    sqlite3 *h = arg;
    usleep(30000);
    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    return NULL;
}

/* A lock released within busy_timeout_ms: the connector waits for it
 * (its own busy handler) and the record goes in. */
static void test_sqlite_busy_wait(void **state)
{
    (void)state;
    const char *db = tmp_path("busywait.db");
    rk_conn *c = open_sqlite(db, "antrag", "busy_timeout_ms", "10000", NULL);
    rk_kv f[] = {{"nachname", "Muster"}};
    assert_int_equal(deliver(c, "key-1", f, 1).st, RK_DELIVER_OK);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hold_lock, h), 0);
    answer a = deliver(c, "key-2", f, 1);
    pthread_join(t, NULL);
    sqlite3_close(h);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "2");
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 2);
}

/* Two instances writing one target file from two threads, as rekeyd's
 * workers do for two jobs with one Fachverfahren. */
typedef struct twin {
    rk_conn *c;
    const char *prefix;
    int ok, other;
} twin;

static void *twin_deliver(void *arg)
{
    twin *t = arg;
    rk_kv f[] = {{"nachname", "Muster"}};
    for (int b = 0; b < 100; b++) {
        char keys[5][32];
        rk_record r[5];
        const rk_record *rp[5];
        char msg[5][256];
        rk_conn_answer out[5];
        for (int i = 0; i < 5; i++) {
            snprintf(keys[i], sizeof keys[i], "%s-%d-%d", t->prefix, b, i);
            r[i] = mkrec(keys[i], f, 1);
            rp[i] = &r[i];
            out[i] = (rk_conn_answer){RK_DELIVER_RETRY, msg[i], sizeof msg[i], NULL, 0, 0};
        }
        rk_conn_deliver_batch(t->c, 5, rp, out);
        for (int i = 0; i < 5; i++)
            out[i].status == RK_DELIVER_OK ? t->ok++ : t->other++;
    }
    return NULL;
}

/* The instances of one process that write the same file take turns by a
 * lock of their own instead of meeting SQLite's busy lock: with
 * busy_timeout_ms = 0 (no waiting for a lock at all) two threads
 * delivering at once through two instances never get RETRY, and every
 * row is there.  (Without that lock, half of the records met the other
 * instance's write transaction and answered RETRY.) */
static void test_sqlite_instances_share_file(void **state)
{
    (void)state;
    const char *db = tmp_path("shared.db");
    twin a = {open_sqlite(db, "antrag", "busy_timeout_ms", "0", NULL), "a", 0, 0};
    twin b = {open_sqlite(db, "antrag", "busy_timeout_ms", "0", NULL), "b", 0, 0};
    /* the table exists before the race (its creation is a write too) */
    rk_kv f[] = {{"nachname", "Muster"}};
    assert_int_equal(deliver(a.c, "first", f, 1).st, RK_DELIVER_OK);
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, twin_deliver, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, twin_deliver, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.other + b.other, 0);
    assert_int_equal(a.ok, 500);
    assert_int_equal(b.ok, 500);
    rk_conn_close(a.c);
    /* the lock outlives one instance's close: the other still writes */
    assert_int_equal(deliver(b.c, "last", f, 1).st, RK_DELIVER_OK);
    rk_conn_close(b.c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag"), 1002);
    assert_int_equal(q_int(db, "SELECT count(*) FROM antrag WHERE rk_idempotency_key "
                               "LIKE 'b-%'"), 500);
}

/* A constraint of the target other than the key: PERMANENT, naming the
 * column, never the value. */
static void test_sqlite_constraint(void **state)
{
    (void)state;
    const char *db = tmp_path("strict.db");
    exec_sql(db, "CREATE TABLE streng (name TEXT NOT NULL, plz TEXT CHECK (length(plz) = 5), "
                 "rk_idempotency_key TEXT UNIQUE NOT NULL, rk_submission TEXT, "
                 "rk_delivered_at TEXT)");
    rk_conn *c = open_sqlite(db, "streng", NULL);
    rk_kv nul[] = {{"name", NULL}, {"plz", "12345"}};
    answer a = deliver(c, "key-1", nul, 2);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "insert into 'streng' failed: NOT NULL constraint failed: "
                               "streng.name");
    rk_kv plz[] = {{"name", "Musterfrau"}, {"plz", "1234"}};
    a = deliver(c, "key-2", plz, 2);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_non_null(strstr(a.msg, "CHECK constraint failed"));
    assert_null(strstr(a.msg, "Musterfrau"));
    rk_kv good[] = {{"name", "Musterfrau"}, {"plz", "12345"}};
    a = deliver(c, "key-3", good, 2);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "1");
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM streng"), 1);
}

/* ABI 1.1: a batch goes in as one transaction; a record the target
 * refuses is left out without keeping the others out; a repeated key
 * updates its row; a locked target answers RETRY for every record and
 * leaves nothing behind. */
static void test_sqlite_batch(void **state)
{
    (void)state;
    const char *db = tmp_path("batch.db");
    exec_sql(db, "CREATE TABLE stapel (name TEXT NOT NULL, "
                 "rk_idempotency_key TEXT UNIQUE NOT NULL, rk_submission TEXT, "
                 "rk_delivered_at TEXT)");
    rk_conn *c = open_sqlite(db, "stapel", "busy_timeout_ms", "50", NULL);
    assert_true(rk_conn_can_batch(c));
    rk_kv good1[] = {{"name", "Muster"}}, bad[] = {{"name", NULL}}, good2[] = {{"name", "Probe"}};
    rk_record r[4] = {mkrec("key-1", good1, 1), mkrec("key-2", bad, 1), mkrec("key-3", good2, 1),
                      mkrec("key-1", good2, 1)};
    const rk_record *rp[4] = {&r[0], &r[1], &r[2], &r[3]};
    answer a[4];
    rk_conn_answer out[4];
    memset(a, 0, sizeof a);
    for (int i = 0; i < 4; i++)
        out[i] = (rk_conn_answer){RK_DELIVER_RETRY, a[i].msg, sizeof a[i].msg, a[i].tid,
                                  sizeof a[i].tid, 0};
    rk_conn_deliver_batch(c, 4, rp, out);
    assert_int_equal(out[0].status, RK_DELIVER_OK);
    assert_string_equal(a[0].tid, "1");
    assert_int_equal(out[1].status, RK_DELIVER_PERMANENT);
    assert_string_equal(a[1].msg, "insert into 'stapel' failed: NOT NULL constraint failed: "
                                  "stapel.name");
    assert_string_equal(a[1].tid, "");
    assert_int_equal(out[2].status, RK_DELIVER_OK);
    assert_string_equal(a[2].tid, "2");
    assert_int_equal(out[3].status, RK_DELIVER_OK); /* key-1 again, in the same batch */
    assert_string_equal(a[3].tid, "1");
    assert_int_equal(q_int(db, "SELECT count(*) FROM stapel"), 2);
    assert_string_equal(q_text(db, "SELECT name FROM stapel WHERE rk_idempotency_key = 'key-1'"),
                        "Probe");

    /* locked by another writer: nothing goes in, everything is RETRY */
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    rk_record r2[2] = {mkrec("key-4", good1, 1), mkrec("key-5", good2, 1)};
    const rk_record *rp2[2] = {&r2[0], &r2[1]};
    for (int i = 0; i < 2; i++)
        out[i] = (rk_conn_answer){RK_DELIVER_OK, a[i].msg, sizeof a[i].msg, a[i].tid,
                                  sizeof a[i].tid, 0};
    rk_conn_deliver_batch(c, 2, rp2, out);
    assert_int_equal(out[0].status, RK_DELIVER_RETRY);
    assert_int_equal(out[1].status, RK_DELIVER_RETRY);
    assert_non_null(strstr(a[1].msg, "locked"));
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    rk_conn_deliver_batch(c, 2, rp2, out);
    assert_int_equal(out[0].status, RK_DELIVER_OK);
    assert_int_equal(out[1].status, RK_DELIVER_OK);
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM stapel"), 4);
}

static void test_sqlite_no_create(void **state)
{
    (void)state;
    const char *db = tmp_path("nocreate.db");
    rk_conn *c = open_sqlite(db, "fehlt", "create_table", "false", NULL);
    rk_kv f[] = {{"name", "x"}};
    answer a = deliver(c, "key-1", f, 1);
    assert_int_equal(a.st, RK_DELIVER_FATAL);
    assert_string_equal(a.msg, "table 'fehlt' does not exist and create_table is off");
    rk_conn_close(c);

    exec_sql(db, "CREATE TABLE fertig (name TEXT, rk_idempotency_key TEXT UNIQUE NOT NULL, "
                 "rk_submission TEXT, rk_delivered_at TEXT)");
    c = open_sqlite(db, "fertig", "create_table", "no", NULL);
    rk_kv more[] = {{"name", "x"}, {"ort", "y"}};
    a = deliver(c, "key-1", more, 2);
    assert_int_equal(a.st, RK_DELIVER_PERMANENT);
    assert_string_equal(a.msg, "table 'fertig' has no column for field 'ort' and "
                               "create_table is off");
    assert_int_equal(deliver(c, "key-1", f, 1).st, RK_DELIVER_OK);
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM fertig"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('fertig')"), 4);
}

/* An existing table without the rk_ columns gets them (and the unique
 * index that ON CONFLICT needs) when create_table is on. */
static void test_sqlite_existing_table(void **state)
{
    (void)state;
    const char *db = tmp_path("legacy.db");
    exec_sql(db, "CREATE TABLE alt (name TEXT); INSERT INTO alt VALUES ('vorher')");
    rk_conn *c = open_sqlite(db, "alt", NULL);
    rk_kv f[] = {{"name", "neu"}};
    answer a = deliver(c, "key-1", f, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "2");
    a = deliver(c, "key-1", f, 1);
    assert_int_equal(a.st, RK_DELIVER_OK);
    assert_string_equal(a.tid, "2");
    rk_conn_close(c);
    assert_int_equal(q_int(db, "SELECT count(*) FROM alt"), 2);
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_index_list('alt') "
                               "WHERE \"unique\" = 1"), 1);
}

static void test_sqlite_cannot_open(void **state)
{
    (void)state;
    rk_setting s[] = {{"database", "/nonexistent/rekey/target.db"}, {"table", "t"}};
    char err[512] = "";
    assert_null(rk_conn_open(load("connectors", "sqlite"), "jobx", s, 2, err, sizeof err));
    assert_string_equal(err, "connector 'sqlite' could not open for job 'jobx': cannot open "
                             "target database '/nonexistent/rekey/target.db': unable to "
                             "open database file");

    /* A file that is not a database is refused when the instance opens
     * (setting WAL mode reads the header). */
    const char *db = tmp_path("notadb.db");
    FILE *fp = fopen(db, "w");
    assert_non_null(fp);
    for (int i = 0; i < 64; i++)
        fputs("this is not an SQLite database, only text. ", fp);
    fclose(fp);
    rk_setting s2[] = {{"database", (char *)db}, {"table", "t"}};
    assert_null(rk_conn_open(load("connectors", "sqlite"), "jobx", s2, 2, err, sizeof err));
    assert_non_null(strstr(err, "notadb.db': file is not a database"));
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
    for (int up = 0; up < 3; up++) { /* tests/unit/test_connector → top */
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
        cmocka_unit_test(test_load_search_path),
        cmocka_unit_test(test_load_not_found),
        cmocka_unit_test(test_plugins_refused),
        cmocka_unit_test(test_abi10_plugin),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_settings_unknown),
        cmocka_unit_test(test_settings_missing_and_twice),
        cmocka_unit_test(test_settings_int),
        cmocka_unit_test(test_settings_bool),
        cmocka_unit_test(test_settings_secret),
        cmocka_unit_test(test_log_callback),
        cmocka_unit_test(test_deliver_normalised),
        cmocka_unit_test(test_sqlite_idempotent),
        cmocka_unit_test(test_sqlite_new_field),
        cmocka_unit_test(test_sqlite_identifiers),
        cmocka_unit_test(test_sqlite_busy),
        cmocka_unit_test(test_sqlite_busy_wait),
        cmocka_unit_test(test_sqlite_instances_share_file),
        cmocka_unit_test(test_sqlite_constraint),
        cmocka_unit_test(test_sqlite_batch),
        cmocka_unit_test(test_sqlite_no_create),
        cmocka_unit_test(test_sqlite_existing_table),
        cmocka_unit_test(test_sqlite_cannot_open),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
