/*
 * test_review.c — the decisions of people (agent/review.c): every action,
 * and every refusal, checked in the store.
 *
 * Jobs are built the way the engine builds them: the bundled job files,
 * the bundled samples, parse + validate + map + rules, stored with the
 * store's own functions.  "today" is fixed so the age rule is stable.
 */
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

#include "job.h"
#include "map.h"
#include "review.h"
#include "store.h"
#include "util.h"
#include "xmldoc.h"

#define TODAY "2026-11-26"

typedef struct fx {
    char dir[64];
    char db[128];
    rk_store *store;
    rk_registry *reg;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/rk-review-XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    snprintf(f->db, sizeof f->db, "%s/q.db", f->dir);
    char err[512];
    rk_log_set_level(-1);
    if (rk_store_open(f->db, RK_STORE_SYNC_NORMAL, &f->store, err, sizeof err))
        return -1;
    const char *names[] = {"target_db"};
    const char *values[] = {"/nonexistent/t.db"};
    rk_vars vars = {names, values, 1};
    rk_xml_init();
    f->reg = rk_registry_load("jobs", &vars, NULL);
    if (!f->reg || rk_registry_count(f->reg) < 3)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rk_store_close(f->store);
    rk_registry_free(f->reg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Stores a sample and processes it like the engine: returns the job id;
 * the job ends in review or ready. */
static int64_t make_job(fx *f, const char *sample)
{
    char path[256], *data;
    size_t len;
    snprintf(path, sizeof path, "tests/data/samples/%s", sample);
    assert_int_equal(rk_read_file(path, 1u << 20, &data, &len), 0);
    void *z;
    size_t zlen;
    assert_int_equal(rk_deflate(data, len, &z, &zlen), 0);
    char uid[40], sha[65];
    rk_random_hex(16, uid);
    rk_sha256_hex(data, len, sha);
    rk_submission_in in = {uid, "dir:/test", sample, sha, len, z, zlen, rk_now_ms()};
    int64_t id;
    assert_int_equal(rk_store_add_submission(f->store, &in, "test", &id), 0);
    free(z);

    const char *code;
    char msg[256];
    xmlDocPtr doc = rk_doc_parse(data, len, &code, msg, sizeof msg);
    free(data);
    assert_non_null(doc);
    const char *ns, *local;
    rk_doc_root(doc, &ns, &local);
    rk_job *job = rk_registry_match(f->reg, ns, local);
    assert_non_null(job);
    rk_result r;
    rk_result_init(&r);
    int schema = rk_doc_validate(job, doc, &r);
    if (!schema) {
        rk_map_apply(job, doc, &r);
        rk_rules_check(job, &r, TODAY);
    }
    /* the match with the first step, as the engine writes it; ns and
     * local point into doc: recorded before it is freed */
    assert_int_equal(rk_store_advance(f->store, id,
                                      &(rk_advance){.actor = schema ? "test" : "t",
                                                    .path = {"received",
                                                             schema ? "review" : "validated"},
                                                    .reason = {schema ? "S" : NULL},
                                                    .steps = 1,
                                                    .match = 1,
                                                    .job = job->name,
                                                    .job_version = job->version,
                                                    .root_ns = ns,
                                                    .root_name = local}),
                     0);
    xmlFreeDoc(doc);
    assert_int_equal(rk_store_save_result(f->store, id, &r), 0);
    if (!schema) {
        assert_int_equal(rk_store_transition(f->store, id, "validated", "mapped", "t", NULL), 0);
        assert_int_equal(rk_store_transition(f->store, id, "mapped",
                                             rk_result_blocked(&r) ? "review" : "ready", "t",
                                             NULL),
                         0);
    }
    rk_result_free(&r);
    rk_job_unref(job);
    return id;
}

static rk_review reviewer(fx *f, const char *who)
{
    rk_review rv = {f->store, f->reg, who, TODAY, 0};
    return rv;
}

/* An integer from SQL with one int parameter, read with a second
 * connection (what another process would see). */
static int64_t q(fx *f, const char *sql, int64_t a)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, a);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static char *qs(fx *f, const char *sql, int64_t a)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char *v = NULL;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, a);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v ? v : strdup("<none>");
}

static void assert_state(fx *f, int64_t id, const char *want)
{
    char *s = qs(f, "SELECT state FROM jobs WHERE id = ?", id);
    assert_string_equal(s, want);
    free(s);
}

static void test_correct_then_approve(void **state)
{
    fx *f = *state;
    int64_t id = make_job(f, "fischereischein-10-mindestalter.xml");
    assert_state(f, id, "review");
    rk_review rv = reviewer(f, "mueller");
    char msg[1024];

    /* approving as it is: the age rule still blocks */
    assert_int_equal(rk_review_approve(&rv, id, msg, sizeof msg), RK_E_STATE);
    assert_non_null(strstr(msg, "bleibt zur Klärung: MINDESTALTER (geburtsdatum)"));
    assert_state(f, id, "review");
    assert_int_equal(q(f, "SELECT count(*) FROM anomalies WHERE job_id = ? AND code ="
                          " 'MINDESTALTER' AND resolved_at IS NULL", id), 1);

    /* a correction is recorded with old and new value and re-checked at once */
    char *old = qs(f, "SELECT value FROM fields WHERE job_id = ? AND name = 'geburtsdatum'", id);
    assert_int_equal(rk_review_set(&rv, id, "geburtsdatum", "1990-01-01", msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "neuer Wert: 1990-01-01"));
    assert_int_equal(q(f, "SELECT count(*) FROM anomalies WHERE job_id = ? AND code ="
                          " 'MINDESTALTER' AND resolved_at IS NULL", id), 0);
    char *corr = qs(f, "SELECT old_value || '>' || new_value || '>' || actor FROM corrections"
                       " WHERE job_id = ?", id);
    char want[128];
    snprintf(want, sizeof want, "%s>1990-01-01>mueller", old);
    assert_string_equal(corr, want);
    free(corr);
    free(old);
    char *ev = qs(f, "SELECT actor || ':' || reason FROM events WHERE job_id = ?"
                     " ORDER BY id DESC LIMIT 1", id);
    assert_non_null(strstr(ev, "mueller:Feld korrigiert: geburtsdatum"));
    assert_null(strstr(ev, "1990")); /* values stay out of the event trail */
    free(ev);

    assert_int_equal(rk_review_approve(&rv, id, msg, sizeof msg), 0);
    assert_state(f, id, "ready");
    char *last = qs(f, "SELECT from_state || '>' || to_state || ':' || actor FROM events"
                       " WHERE job_id = ? ORDER BY id DESC LIMIT 1", id);
    assert_string_equal(last, "review>ready:mueller");
    free(last);
    /* approving again: not in review any more */
    assert_int_equal(rk_review_approve(&rv, id, msg, sizeof msg), RK_E_STATE);
    assert_non_null(strstr(msg, "nicht zur Klärung"));
}

static void test_refusals_change_nothing(void **state)
{
    fx *f = *state;
    int64_t held = make_job(f, "fischereischein-10-mindestalter.xml");
    int64_t ready = make_job(f, "fischereischein-01-erstausstellung.xml");
    rk_review rv = reviewer(f, "mueller");
    char msg[1024];
    int64_t events = q(f, "SELECT count(*) FROM events WHERE ? >= 0", 0);

    assert_int_equal(rk_review_set(&rv, held, "schuhgroesse", "42", msg, sizeof msg),
                     RK_E_NOTFOUND);
    assert_non_null(strstr(msg, "Das Feld schuhgroesse gibt es"));
    assert_int_equal(rk_review_set(&rv, ready, "nachname", "X", msg, sizeof msg), RK_E_STATE);
    assert_int_equal(rk_review_approve(&rv, ready, msg, sizeof msg), RK_E_STATE);
    assert_int_equal(rk_ops_retry(&rv, ready, msg, sizeof msg), RK_E_STATE);
    assert_non_null(strstr(msg, "nicht fehlgeschlagen"));
    assert_int_equal(rk_review_reject(&rv, held, "", msg, sizeof msg), RK_E_FORMAT);
    assert_int_equal(rk_review_approve(&rv, 99999, msg, sizeof msg), RK_E_NOTFOUND);
    assert_int_equal(rk_ops_replay(&rv, ready, 0, &(int64_t){0}, msg, sizeof msg), RK_E_STATE);

    assert_int_equal(q(f, "SELECT count(*) FROM events WHERE ? >= 0", 0), events);
    assert_int_equal(q(f, "SELECT count(*) FROM corrections WHERE ? >= 0", 0), 0);
    assert_state(f, held, "review");
    assert_state(f, ready, "ready");
}

static void test_four_eyes(void **state)
{
    fx *f = *state;
    int64_t id = make_job(f, "fischereischein-10-mindestalter.xml");
    rk_job *job = rk_registry_find(f->reg, "fischereischein");
    job->four_eyes = 1;
    rk_review a = reviewer(f, "mueller"), b = reviewer(f, "schmidt");
    char msg[1024];
    assert_int_equal(rk_review_set(&a, id, "geburtsdatum", "1990-01-01", msg, sizeof msg), 0);
    assert_int_equal(rk_review_approve(&a, id, msg, sizeof msg), RK_E_STATE);
    assert_non_null(strstr(msg, "Vier-Augen-Prinzip: mueller hat diesen Antrag korrigiert"));
    assert_state(f, id, "review");
    assert_int_equal(rk_review_approve(&b, id, msg, sizeof msg), 0);
    assert_state(f, id, "ready");
    job->four_eyes = 0;
    rk_job_unref(job);
}

static void test_reject_keeps_reason_out_of_trail(void **state)
{
    fx *f = *state;
    int64_t id = make_job(f, "besucherparkausweis-11-zahlung-offen.xml");
    assert_state(f, id, "review");
    rk_review rv = reviewer(f, "mueller");
    char msg[1024];
    assert_int_equal(rk_review_reject(&rv, id, "Zahlung von Frau Muster fehlt", msg, sizeof msg),
                     0);
    assert_state(f, id, "rejected");
    char *r = qs(f, "SELECT message FROM anomalies WHERE job_id = ? AND code = 'ABGELEHNT'", id);
    assert_string_equal(r, "Zahlung von Frau Muster fehlt");
    free(r);
    assert_int_equal(q(f, "SELECT count(*) FROM events WHERE job_id = ? AND reason LIKE"
                          " '%Muster%'", id), 0);
    assert_int_equal(rk_review_reject(&rv, id, "nochmal", msg, sizeof msg), RK_E_STATE);
}

static void test_retry_failed(void **state)
{
    fx *f = *state;
    int64_t id = make_job(f, "besucherparkausweis-01-tag.xml");
    rk_delivery d;
    assert_int_equal(rk_store_delivery_get(f->store, id, "sqlite", "sqlite", "k", &d), 0);
    assert_int_equal(rk_store_delivery_set(f->store, d.id, "failed", 5, "down", NULL), 0);
    assert_int_equal(rk_store_transition(f->store, id, "ready", "failed", "t", "down"), 0);
    rk_review rv = reviewer(f, "ops");
    char msg[1024];
    assert_int_equal(rk_ops_retry(&rv, id, msg, sizeof msg), 0);
    assert_state(f, id, "ready");
    assert_int_equal(q(f, "SELECT attempts FROM deliveries WHERE job_id = ?", id), 0);
    char *st = qs(f, "SELECT state FROM deliveries WHERE job_id = ?", id);
    assert_string_equal(st, "pending");
    free(st);
    assert_int_equal(q(f, "SELECT attempts FROM jobs WHERE id = ?", id), 0);
}

static void test_replay_links_and_keys(void **state)
{
    fx *f = *state;
    int64_t id = make_job(f, "besucherparkausweis-01-tag.xml");
    assert_int_equal(rk_store_transition(f->store, id, "ready", "delivering", "t", NULL), 0);
    assert_int_equal(rk_store_transition(f->store, id, "delivering", "delivered", "t", NULL), 0);
    rk_review rv = reviewer(f, "ops");
    char msg[1024];
    int64_t a = 0, b = 0;
    assert_int_equal(rk_ops_replay(&rv, id, 0, &a, msg, sizeof msg), 0);
    assert_int_equal(rk_ops_replay(&rv, id, 1, &b, msg, sizeof msg), 0);
    assert_true(a > id && b > a);
    assert_state(f, a, "received");
    assert_int_equal(q(f, "SELECT replay_of FROM jobs WHERE id = ?", a), id);
    rk_job_info ia, ib, io;
    assert_int_equal(rk_store_job_info(f->store, a, &ia), 0);
    assert_int_equal(rk_store_job_info(f->store, b, &ib), 0);
    assert_int_equal(rk_store_job_info(f->store, id, &io), 0);
    assert_int_equal(ia.submission_id, io.submission_id);
    assert_string_equal(ia.key_suffix, "");     /* same keys: the target updates */
    assert_int_equal(strlen(ib.key_suffix), 16); /* new keys: a second record */
}

static void test_purge_keeps_trail(void **state)
{
    fx *f = *state;
    int64_t id = make_job(f, "besucherparkausweis-01-tag.xml");
    int64_t held = make_job(f, "besucherparkausweis-11-zahlung-offen.xml");
    assert_int_equal(rk_store_transition(f->store, id, "ready", "delivering", "t", NULL), 0);
    assert_int_equal(rk_store_transition(f->store, id, "delivering", "delivered", "t", NULL), 0);
    rk_review rv = reviewer(f, "ops");
    rk_purge_report rep;
    char msg[1024];
    int64_t future = rk_now_ms() + 1000;
    int64_t events = q(f, "SELECT count(*) FROM events WHERE job_id = ?", id);

    assert_int_equal(rk_ops_purge(&rv, future, NULL, 1, &rep, msg, sizeof msg), 0);
    assert_int_equal(rep.jobs, 1); /* only the finished one */
    assert_int_equal(rep.payloads, 1);
    assert_true(rep.fields > 5);
    assert_non_null(strstr(msg, "Würde löschen"));
    assert_int_equal(q(f, "SELECT count(*) FROM fields WHERE job_id = ?", id), rep.fields);

    assert_int_equal(rk_ops_purge(&rv, future, NULL, 0, &rep, msg, sizeof msg), 0);
    assert_int_equal(q(f, "SELECT count(*) FROM fields WHERE job_id = ?", id), 0);
    assert_int_equal(q(f, "SELECT payload IS NULL FROM submissions s JOIN jobs j ON"
                          " j.submission_id = s.id WHERE j.id = ?", id), 1);
    assert_int_equal(q(f, "SELECT count(*) FROM events WHERE job_id = ?", id), events + 1);
    /* the job in review keeps everything */
    assert_true(q(f, "SELECT count(*) FROM fields WHERE job_id = ?", held) > 5);
    assert_int_equal(q(f, "SELECT payload IS NULL FROM submissions s JOIN jobs j ON"
                          " j.submission_id = s.id WHERE j.id = ?", held), 0);
    /* nothing left to purge; a replay of a purged job is refused */
    assert_int_equal(rk_ops_purge(&rv, future, NULL, 0, &rep, msg, sizeof msg), 0);
    assert_int_equal(rep.jobs, 0);
    int64_t nid;
    assert_int_equal(rk_ops_replay(&rv, id, 0, &nid, msg, sizeof msg), RK_E_STATE);
    assert_non_null(strstr(msg, "nicht mehr gespeichert"));
}

static void test_schema_invalid_can_be_mapped_and_approved(void **state)
{
    fx *f = *state;
    int64_t id = make_job(f, "gewerbeanmeldung-11-schema.xml");
    assert_state(f, id, "review");
    assert_int_equal(q(f, "SELECT count(*) FROM fields WHERE job_id = ?", id), 0);
    rk_review rv = reviewer(f, "mueller");
    char msg[1024];
    /* the sample's only fault is an undeclared element no field uses: the
     * record is mapped from the document for the decision, no rule blocks,
     * and the approver overrules the schema finding */
    assert_int_equal(rk_review_approve(&rv, id, msg, sizeof msg), 0);
    assert_true(q(f, "SELECT count(*) FROM fields WHERE job_id = ?", id) > 5);
    assert_state(f, id, "ready");
    assert_true(q(f, "SELECT count(*) FROM anomalies WHERE job_id = ? AND code = 'SCHEMA'"
                     " AND resolved_by = 'mueller'", id) > 0);
    assert_int_equal(q(f, "SELECT count(*) FROM anomalies WHERE job_id = ?"
                          " AND resolved_at IS NULL", id), 0);
}

static void test_duration_parse(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(rk_duration_parse("90d", &ms), 0);
    assert_int_equal(ms, 90LL * 86400000);
    assert_int_equal(rk_duration_parse("36h", &ms), 0);
    assert_int_equal(ms, 36LL * 3600000);
    assert_int_equal(rk_duration_parse("2w", &ms), 0);
    assert_int_equal(ms, 14LL * 86400000);
    assert_int_equal(rk_duration_parse("15m", &ms), 0);
    assert_int_equal(rk_duration_parse("30s", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(rk_duration_parse("90", &ms), RK_E_FORMAT);
    assert_int_equal(rk_duration_parse("d", &ms), RK_E_FORMAT);
    assert_int_equal(rk_duration_parse("-1d", &ms), RK_E_FORMAT);
    assert_int_equal(rk_duration_parse("3dd", &ms), RK_E_FORMAT);
    assert_int_equal(rk_duration_parse("", &ms), RK_E_FORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_correct_then_approve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_four_eyes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_keeps_reason_out_of_trail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_links_and_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_keeps_trail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_invalid_can_be_mapped_and_approved, setup,
                                        teardown),
        cmocka_unit_test(test_duration_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
