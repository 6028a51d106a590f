/*
 * test_config.c — agent/config.c: the default of every key, paths taken
 * relative to the configuration file's folder, `archive =` meaning delete,
 * errors that name FILE:LINE and the key (unknown keys and sections, bad
 * and out-of-range numbers, log_level and sync values), [vars] in order,
 * and the required [inbox] path.
 *
 * Each test writes its INI file into a fresh mkdtemp folder; expected
 * paths are built from that folder's realpath, as rk_config_load does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

typedef struct fixture {
    char dir[256];       /* realpath of the temp folder */
    char file[300];      /* dir/rekeyd.conf */
    char err[1024];
    rk_config cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    char tmpl[] = "/tmp/rk_config_XXXXXX", real[PATH_MAX];
    if (!mkdtemp(tmpl) || !realpath(tmpl, real) || strlen(real) >= sizeof f->dir)
        return -1;
    memcpy(f->dir, real, strlen(real) + 1);
    snprintf(f->file, sizeof f->file, "%s/rekeyd.conf", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rk_config_free(&f->cfg);
    unlink(f->file);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Writes text as the configuration and loads it; returns rk_config_load's rc. */
static int load(fixture *f, const char *text)
{
    FILE *fp = fopen(f->file, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    rk_config_free(&f->cfg);
    f->err[0] = '\0';
    return rk_config_load(f->file, &f->cfg, f->err, sizeof f->err);
}

/* dir + "/" + rel, for comparing resolved paths. */
static const char *in_dir(const fixture *f, const char *rel)
{
    static char buf[2][512];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s/%s", f->dir, rel);
    return buf[which];
}

/* Loads text, expects RK_E_CONFIG and exactly "FILE:line: msg". */
static void expect_error(fixture *f, const char *text, int line, const char *msg)
{
    assert_int_equal(load(f, text), RK_E_CONFIG);
    char want[2048];
    snprintf(want, sizeof want, "%s:%d: %s", f->file, line, msg);
    assert_string_equal(f->err, want);
}

static void test_defaults(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[inbox]\npath = in\n"), 0);
    rk_config *c = &f->cfg;
    assert_string_equal(c->path, f->file);
    assert_string_equal(c->database, in_dir(f, "rekey.db"));
    assert_string_equal(c->jobs_dir, in_dir(f, "jobs"));
    assert_null(c->plugin_path); /* rekeyd fills in <exe>/../connectors */
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->log_level, RK_LOG_LVL_INFO);
    assert_int_equal(c->sync_normal, 0);
    assert_int_equal(c->max_document, 52428800);
    assert_string_equal(c->inbox_path, in_dir(f, "in"));
    assert_string_equal(c->archive_dir, in_dir(f, "archive"));
    assert_string_equal(c->error_dir, in_dir(f, "error"));
    assert_ptr_equal(c->inbox.path, c->inbox_path);
    assert_ptr_equal(c->inbox.archive_dir, c->archive_dir);
    assert_ptr_equal(c->inbox.error_dir, c->error_dir);
    assert_int_equal(c->inbox.settle_ms, 500);
    assert_int_equal(c->inbox.rescan_ms, 2000);
    assert_int_equal(c->inbox.max_file_size, 10485760);
    assert_int_equal(c->inbox.max_decompressed, 52428800);
    assert_int_equal(c->inbox.max_ratio, 100);
    assert_int_equal(c->max_attempts, 5);
    assert_int_equal(c->backoff_initial_ms, 1000);
    assert_int_equal(c->backoff_max_ms, 300000);
    assert_int_equal(c->vars.n, 0);
}

static void test_every_key_set(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[rekeyd]\n"
                             "database = /var/lib/rekey/q.db\n"
                             "jobs = defs\n"
                             "plugin_path = /usr/lib/rekey/connectors\n"
                             "workers = 64\n"
                             "log_level = debug\n"
                             "sync = normal\n"
                             "max_document_size = 1024\n"
                             "[inbox]\n"
                             "path = /srv/in\n"
                             "archive = old\n"
                             "error = bad\n"
                             "settle_ms = 0\n"
                             "rescan_ms = 10\n"
                             "max_file_size = 1\n"
                             "max_decompressed_size = 2147483647\n"
                             "max_ratio = 100000\n"
                             "[delivery]\n"
                             "max_attempts = 1000\n"
                             "backoff_initial_ms = 0\n"
                             "backoff_max_ms = 604800000\n"),
                     0);
    rk_config *c = &f->cfg;
    assert_string_equal(c->database, "/var/lib/rekey/q.db"); /* absolute: kept */
    assert_string_equal(c->jobs_dir, in_dir(f, "defs"));
    assert_string_equal(c->plugin_path, "/usr/lib/rekey/connectors");
    assert_int_equal(c->workers, 64);
    assert_int_equal(c->log_level, RK_LOG_LVL_DEBUG);
    assert_int_equal(c->sync_normal, 1);
    assert_int_equal(c->max_document, 1024);
    assert_string_equal(c->inbox.path, "/srv/in");
    assert_string_equal(c->inbox.archive_dir, in_dir(f, "old"));
    assert_string_equal(c->inbox.error_dir, in_dir(f, "bad"));
    assert_int_equal(c->inbox.settle_ms, 0);
    assert_int_equal(c->inbox.rescan_ms, 10);
    assert_int_equal(c->inbox.max_file_size, 1);
    assert_int_equal(c->inbox.max_decompressed, 2147483647);
    assert_int_equal(c->inbox.max_ratio, 100000);
    assert_int_equal(c->max_attempts, 1000);
    assert_int_equal(c->backoff_initial_ms, 0);
    assert_int_equal(c->backoff_max_ms, 604800000);
}

static void test_relative_paths(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[rekeyd]\ndatabase = data/rekey.db\njobs = ../jobs\n"
                             "plugin_path = ../connectors\n"
                             "[inbox]\npath = spool/in\nerror = /abs/err\n"),
                     0);
    assert_string_equal(f->cfg.database, in_dir(f, "data/rekey.db"));
    assert_string_equal(f->cfg.jobs_dir, in_dir(f, "../jobs"));
    assert_string_equal(f->cfg.plugin_path, in_dir(f, "../connectors"));
    assert_string_equal(f->cfg.inbox.path, in_dir(f, "spool/in"));
    assert_string_equal(f->cfg.inbox.error_dir, "/abs/err");
    /* loading through a relative path to the file gives the same result */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    rk_config c2;
    int rc = rk_config_load("rekeyd.conf", &c2, f->err, sizeof f->err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(c2.inbox.path, in_dir(f, "spool/in"));
    assert_string_equal(c2.path, f->file);
    rk_config_free(&c2);
}

/* plugin_path is colon-separated: every relative folder in it is relative
 * to the configuration file, not only the first one. */
static void test_plugin_path_each_element_resolved(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[rekeyd]\nplugin_path = a:/usr/lib/rekey:b\n"
                             "[inbox]\npath = in\n"),
                     0);
    char want[1024];
    snprintf(want, sizeof want, "%s/a:/usr/lib/rekey:%s/b", f->dir, f->dir);
    assert_string_equal(f->cfg.plugin_path, want);
}

static void test_archive_empty_means_delete(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[inbox]\npath = in\narchive =\n"), 0);
    assert_null(f->cfg.inbox.archive_dir);
    assert_string_equal(f->cfg.inbox.error_dir, in_dir(f, "error"));
}

static void test_unknown_key_and_section(void **state)
{
    fixture *f = *state;
    expect_error(f, "[rekeyd]\nworkers = 2\nworker = 3\n[inbox]\npath = in\n", 3,
                 "unknown setting 'worker' in section [rekeyd]");
    expect_error(f, "[inbox]\npath = in\n\n[delivry]\nmax_attempts = 3\n", 5,
                 "unknown setting 'max_attempts' in section [delivry]");
    /* a key that exists, but in another section */
    expect_error(f, "[inbox]\npath = in\nworkers = 2\n", 3,
                 "unknown setting 'workers' in section [inbox]");
    /* only the first error is reported */
    expect_error(f, "[inbox]\npath = in\nfoo = 1\nbar = 2\n", 3,
                 "unknown setting 'foo' in section [inbox]");
}

static void test_syntax_error(void **state)
{
    fixture *f = *state;
    expect_error(f, "[inbox]\npath = in\nthis line has no equals sign\n", 3,
                 "syntax error (expected [section] or key = value)");
}

static void test_bad_numbers_name_the_key(void **state)
{
    fixture *f = *state;
    expect_error(f, "[rekeyd]\nworkers = four\n[inbox]\npath = in\n", 2,
                 "workers must be a whole number from 1 to 64, not 'four'");
    expect_error(f, "[rekeyd]\nworkers = 2.5\n[inbox]\npath = in\n", 2,
                 "workers must be a whole number from 1 to 64, not '2.5'");
    expect_error(f, "[inbox]\npath = in\nmax_ratio = 100k\n", 3,
                 "max_ratio must be a whole number from 1 to 100000, not '100k'");
    expect_error(f, "[inbox]\npath = in\n[delivery]\nbackoff_max_ms =\n", 4,
                 "backoff_max_ms must be a whole number from 0 to 604800000, not ''");
}

static void test_ranges_both_sides(void **state)
{
    fixture *f = *state;
    /* workers: 1..64 */
    assert_int_equal(load(f, "[rekeyd]\nworkers = 1\n[inbox]\npath = in\n"), 0);
    assert_int_equal(f->cfg.workers, 1);
    expect_error(f, "[rekeyd]\nworkers = 0\n[inbox]\npath = in\n", 2,
                 "workers must be a whole number from 1 to 64, not '0'");
    expect_error(f, "[rekeyd]\nworkers = 65\n[inbox]\npath = in\n", 2,
                 "workers must be a whole number from 1 to 64, not '65'");
    /* rescan_ms: 10..3600000 */
    expect_error(f, "[inbox]\npath = in\nrescan_ms = 9\n", 3,
                 "rescan_ms must be a whole number from 10 to 3600000, not '9'");
    assert_int_equal(load(f, "[inbox]\npath = in\nrescan_ms = 3600000\n"), 0);
    assert_int_equal(f->cfg.inbox.rescan_ms, 3600000);
    expect_error(f, "[inbox]\npath = in\nrescan_ms = 3600001\n", 3,
                 "rescan_ms must be a whole number from 10 to 3600000, not '3600001'");
    /* settle_ms may be 0, not negative */
    expect_error(f, "[inbox]\npath = in\nsettle_ms = -1\n", 3,
                 "settle_ms must be a whole number from 0 to 3600000, not '-1'");
    /* max_document_size: 1024.. */
    expect_error(f, "[rekeyd]\nmax_document_size = 1023\n[inbox]\npath = in\n", 2,
                 "max_document_size must be a whole number from 1024 to 2147483647, "
                 "not '1023'");
    expect_error(f, "[inbox]\npath = in\nmax_file_size = 0\n", 3,
                 "max_file_size must be a whole number from 1 to 2147483647, not '0'");
    expect_error(f, "[inbox]\npath = in\nmax_decompressed_size = 2147483648\n", 3,
                 "max_decompressed_size must be a whole number from 1 to 2147483647, "
                 "not '2147483648'");
    expect_error(f, "[inbox]\npath = in\n[delivery]\nmax_attempts = 1001\n", 4,
                 "max_attempts must be a whole number from 1 to 1000, not '1001'");
    expect_error(f, "[inbox]\npath = in\n[delivery]\nbackoff_initial_ms = 86400001\n", 4,
                 "backoff_initial_ms must be a whole number from 0 to 86400000, "
                 "not '86400001'");
    expect_error(f, "[inbox]\npath = in\n[delivery]\nbackoff_max_ms = 604800001\n", 4,
                 "backoff_max_ms must be a whole number from 0 to 604800000, "
                 "not '604800001'");
    expect_error(f, "[inbox]\npath = in\nmax_ratio = 0\n", 3,
                 "max_ratio must be a whole number from 1 to 100000, not '0'");
}

static void test_log_level_and_sync(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *name;
        int level;
    } lv[] = {{"error", RK_LOG_LVL_ERROR},
              {"warn", RK_LOG_LVL_WARN},
              {"info", RK_LOG_LVL_INFO},
              {"debug", RK_LOG_LVL_DEBUG}};
    for (size_t i = 0; i < 4; i++) {
        char text[128];
        snprintf(text, sizeof text, "[rekeyd]\nlog_level = %s\n[inbox]\npath = in\n",
                 lv[i].name);
        assert_int_equal(load(f, text), 0);
        assert_int_equal(f->cfg.log_level, lv[i].level);
    }
    expect_error(f, "[rekeyd]\nlog_level = verbose\n[inbox]\npath = in\n", 2,
                 "log_level must be error, warn, info or debug, not 'verbose'");
    assert_int_equal(load(f, "[rekeyd]\nsync = full\n[inbox]\npath = in\n"), 0);
    assert_int_equal(f->cfg.sync_normal, 0);
    assert_int_equal(load(f, "[rekeyd]\nsync = normal\n[inbox]\npath = in\n"), 0);
    assert_int_equal(f->cfg.sync_normal, 1);
    expect_error(f, "[rekeyd]\nsync = off\n[inbox]\npath = in\n", 2,
                 "sync must be full or normal, not 'off'");
}

static void test_vars_in_order(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[vars]\n"
                             "target_db = /abs/fachverfahren.db\n"
                             "pg_conninfo = host=/run/postgresql dbname=fv\n"
                             "empty =\n"
                             "[inbox]\npath = in\n"),
                     0);
    const rk_vars *v = &f->cfg.vars;
    assert_int_equal(v->n, 3);
    assert_string_equal(v->names[0], "target_db");
    assert_string_equal(v->values[0], "/abs/fachverfahren.db"); /* values are not paths */
    assert_string_equal(v->names[1], "pg_conninfo");
    assert_string_equal(v->values[1], "host=/run/postgresql dbname=fv");
    assert_string_equal(v->names[2], "empty");
    assert_string_equal(v->values[2], "");
    /* a relative-looking value stays as written */
    assert_int_equal(load(f, "[vars]\nrel = data/x.db\n[inbox]\npath = in\n"), 0);
    assert_string_equal(f->cfg.vars.values[0], "data/x.db");
}

static void test_inbox_path_required(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[rekeyd]\nworkers = 2\n"), RK_E_CONFIG);
    char want[512];
    snprintf(want, sizeof want, "%s: [inbox] path is required (the folder rekeyd watches)",
             f->file);
    assert_string_equal(f->err, want);
    /* the failed load left nothing to free behind */
    assert_null(f->cfg.database);
    assert_null(f->cfg.path);
}

/* The dashboard's keys of [http]: defaults, values, both sides of the
 * session_idle range, and refusals that name the key. */
static void test_http_dashboard_keys(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[inbox]\npath = in\n[http]\nlisten = 127.0.0.1:0\n"), 0);
    assert_int_equal(f->cfg.http.dashboard, 1);
    assert_int_equal(f->cfg.http.session_idle_ms, 30 * 60000);
    assert_int_equal(f->cfg.http.cookie_secure, 0);
    assert_int_equal(load(f, "[inbox]\npath = in\n[http]\ndashboard = false\n"
                             "session_idle = 8h\ncookie_secure = yes\n"),
                     0);
    assert_int_equal(f->cfg.http.enabled, 1);
    assert_int_equal(f->cfg.http.dashboard, 0);
    assert_int_equal(f->cfg.http.session_idle_ms, 8 * 3600000);
    assert_int_equal(f->cfg.http.cookie_secure, 1);
    assert_int_equal(load(f, "[inbox]\npath = in\n[http]\nsession_idle = 1s\n"), 0);
    assert_int_equal(f->cfg.http.session_idle_ms, 1000);
    assert_int_equal(load(f, "[inbox]\npath = in\n[http]\nsession_idle = 7d\n"), 0);
    assert_int_equal(f->cfg.http.session_idle_ms, 7 * 86400000LL);
    expect_error(f, "[inbox]\npath = in\n[http]\nsession_idle = 8d\n", 4,
                 "session_idle must be a duration from 1s to 7d, e.g. 30m or 8h, not '8d'");
    expect_error(f, "[inbox]\npath = in\n[http]\nsession_idle = 0s\n", 4,
                 "session_idle must be a duration from 1s to 7d, e.g. 30m or 8h, not '0s'");
    expect_error(f, "[inbox]\npath = in\n[http]\nsession_idle = 30\n", 4,
                 "session_idle must be a duration from 1s to 7d, e.g. 30m or 8h, not '30'");
    expect_error(f, "[inbox]\npath = in\n[http]\ncookie_secure = ja\n", 4,
                 "cookie_secure must be true or false, not 'ja'");
    expect_error(f, "[inbox]\npath = in\n[http]\ndashboard = 2\n", 4,
                 "dashboard must be true or false, not '2'");
}

static void test_missing_file(void **state)
{
    fixture *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/nope.conf", f->dir);
    rk_config c;
    char err[1024];
    assert_true(rk_config_load(path, &c, err, sizeof err) < 0);
    assert_non_null(strstr(err, "cannot read configuration"));
    assert_non_null(strstr(err, "nope.conf"));
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    rk_log_set_level(RK_LOG_LVL_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_every_key_set),
        T(test_relative_paths),
        T(test_plugin_path_each_element_resolved),
        T(test_archive_empty_means_delete),
        T(test_unknown_key_and_section),
        T(test_syntax_error),
        T(test_bad_numbers_name_the_key),
        T(test_ranges_both_sides),
        T(test_log_level_and_sync),
        T(test_vars_in_order),
        T(test_inbox_path_required),
        T(test_missing_file),
        T(test_http_dashboard_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
