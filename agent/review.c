/*
 * review.c — see review.h.
 *
 * Each action reads the job, checks that it is allowed, and writes its
 * changes and events in one transaction.  Rules are re-run with the same
 * code the daemon uses (map.h), on the record as it is now, corrections
 * included; duplicate rules are not re-run (the person decides about a
 * suspected duplicate by approving or rejecting it).
 */
#include "review.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "map.h"
#include "record.h"
#include "util.h"
#include "xmldoc.h"

/* Anomaly codes of transforms: a correction of the field resolves them. */
static const char *const transform_codes[] = {"DATUM_UNGUELTIG", "ZAHL_UNGUELTIG",
                                              "WERT_UNBEKANNT",  "CODE_UNBEKANNT",
                                              "XPATH_FEHLER",    "WERT_ZU_LANG"};
#define N_TRANSFORM_CODES (sizeof transform_codes / sizeof transform_codes[0])

static void say(char *msg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *msg, size_t n, const char *fmt, ...)
{
    if (!msg || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
}

static void today_of(const rk_review *rv, char *out, size_t n)
{
    if (rv->today) {
        snprintf(out, n, "%s", rv->today);
        return;
    }
    time_t t = rv->now_ms ? (time_t)(rv->now_ms / 1000) : time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
}

/* Loads the job row and, when need_def, its loaded definition
 * (referenced; the caller unrefs).  Writes the German refusal. */
static int load(const rk_review *rv, int64_t job_id, rk_job_info *ji, rk_job **def,
                char *msg, size_t n)
{
    int rc = rk_store_job_info(rv->store, job_id, ji);
    if (rc == RK_E_NOTFOUND) {
        say(msg, n, "Einen Antrag mit der Nummer %lld gibt es nicht.", (long long)job_id);
        return rc;
    }
    if (rc) {
        say(msg, n, "Datenbankfehler: %s", rk_store_errmsg(rv->store));
        return rc;
    }
    if (!def)
        return 0;
    *def = ji->job[0] && rv->reg ? rk_registry_find(rv->reg, ji->job) : NULL;
    if (!*def) {
        say(msg, n, "Die Antragsart %s des Antrags %lld ist nicht geladen (Verfahrensordner "
                    "prüfen).", ji->job[0] ? ji->job : "(keine)", (long long)job_id);
        return RK_E_CONFIG;
    }
    return 0;
}

static int refuse_state(const rk_job_info *ji, const char *want, char *msg, size_t n)
{
    say(msg, n, "Antrag %lld ist nicht %s (Status: %s).", (long long)ji->id, want,
        rk_state_german(ji->state));
    return RK_E_STATE;
}

static void clear_anomalies(rk_result *r)
{
    for (size_t i = 0; i < r->n_anomalies; i++) {
        free(r->anomalies[i].code);
        free(r->anomalies[i].field);
        free(r->anomalies[i].message);
    }
    free(r->anomalies);
    r->anomalies = NULL;
    r->n_anomalies = 0;
}

/* A job held for a schema violation has no mapped fields yet: map the
 * stored document now (the schema's findings stay as anomalies), so a
 * person can correct and approve it. */
static int ensure_mapped(const rk_review *rv, int64_t job_id, const rk_job *job, rk_result *r)
{
    int rc = rk_store_load_result(rv->store, job_id, r);
    if (rc || r->n_fields)
        return rc;
    char *data = NULL, *uid = NULL;
    size_t len;
    rc = rk_store_load_payload(rv->store, job_id, 64u << 20, &data, &len, &uid);
    free(uid);
    if (rc)
        return rc;
    const char *code;
    char m[256];
    xmlDocPtr doc = rk_doc_parse(data, len, &code, m, sizeof m);
    free(data);
    if (!doc)
        return RK_E_FORMAT;
    rk_result mapped;
    rk_result_init(&mapped);
    rc = rk_map_apply(job, doc, &mapped);
    xmlFreeDoc(doc);
    /* the schema's findings stay; the transforms' are added */
    if (!rc)
        rc = rk_store_save_fields(rv->store, job_id, &mapped);
    if (!rc)
        rc = rk_store_replace_open_anomalies(rv->store, job_id, NULL, 0, &mapped);
    rk_result_free(&mapped);
    if (!rc) {
        rk_result_free(r);
        rk_result_init(r);
        rc = rk_store_load_result(rv->store, job_id, r);
    }
    return rc;
}

/* Runs the job's rules (not duplicates) on the job's current record and
 * replaces the open anomalies of those rules with the findings.  Returns
 * the number of blocking findings, or a negative error.  first gets the
 * first blocking finding for the message. */
static int recheck(const rk_review *rv, int64_t job_id, const rk_job *job, rk_result *r,
                   char *first, size_t first_len)
{
    const char **codes = calloc(job->n_rules ? job->n_rules : 1, sizeof *codes);
    if (!codes)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < job->n_rules; i++)
        if (job->rules[i].kind != RK_RULE_DUPLICATE)
            codes[n++] = job->rules[i].code;
    clear_anomalies(r);
    char today[16];
    today_of(rv, today, sizeof today);
    int rc = rk_rules_check(job, r, today);
    /* duplicate checks are the engine's at intake; a person decides now */
    for (size_t i = 0; i < r->n_dups; i++)
        free(r->dups[i].key);
    free(r->dups);
    r->dups = NULL;
    r->n_dups = 0;
    if (!rc)
        rc = rk_store_replace_open_anomalies(rv->store, job_id, codes, n, r);
    free(codes);
    if (rc)
        return rc;
    int blocking = 0;
    for (size_t i = 0; i < r->n_anomalies; i++) {
        if (r->anomalies[i].severity != RK_SEV_BLOCK)
            continue;
        if (blocking++ == 0 && first)
            snprintf(first, first_len, "%s (%s): %s", r->anomalies[i].code,
                     r->anomalies[i].field ? r->anomalies[i].field : "-",
                     r->anomalies[i].message);
    }
    return blocking;
}

/* Ends the transaction: commit when rc == 0, else roll back. */
static int finish(const rk_review *rv, int rc, char *msg, size_t n)
{
    if (rc == 0 && rk_store_commit(rv->store) == 0)
        return 0;
    if (rc == 0) {
        say(msg, n, "Datenbankfehler: %s", rk_store_errmsg(rv->store));
        rc = RK_E_DB;
    }
    rk_store_rollback(rv->store);
    return rc;
}

int rk_review_set(const rk_review *rv, int64_t job_id, const char *field, const char *value,
                  char *msg, size_t msglen)
{
    rk_job_info ji;
    rk_job *job = NULL;
    int rc = load(rv, job_id, &ji, &job, msg, msglen);
    if (rc)
        return rc;
    if (strcmp(ji.state, RK_ST_REVIEW) != 0) {
        rk_job_unref(job);
        return refuse_state(&ji, "zur Klärung", msg, msglen);
    }
    int known = 0;
    for (size_t i = 0; i < job->n_fields; i++)
        known |= strcmp(job->fields[i].name, field) == 0;
    if (!known) {
        rk_buf b;
        rk_buf_init(&b, 8192);
        for (size_t i = 0; i < job->n_fields; i++)
            rk_buf_appendf(&b, "%s%s", i ? ", " : "", job->fields[i].name);
        say(msg, msglen, "Das Feld %s gibt es in der Antragsart %s nicht. Felder: %s", field,
            job->name, b.data ? b.data : "");
        rk_buf_free(&b);
        rk_job_unref(job);
        return RK_E_NOTFOUND;
    }
    if ((rc = rk_store_begin(rv->store)) != 0) {
        rk_job_unref(job);
        say(msg, msglen, "Die Datenbank ist belegt; bitte erneut versuchen.");
        return rc;
    }
    rk_result r;
    rk_result_init(&r);
    char *old = NULL, first[600] = "";
    rc = ensure_mapped(rv, job_id, job, &r);
    if (!rc)
        rc = rk_store_set_field(rv->store, job_id, field, value, rv->actor, &old);
    if (!rc)
        rc = rk_store_resolve_anomalies(rv->store, job_id, field, transform_codes,
                                        N_TRANSFORM_CODES, rv->actor);
    rk_result_free(&r);
    rk_result_init(&r);
    if (!rc)
        rc = rk_store_load_result(rv->store, job_id, &r);
    int blocking = rc ? rc : recheck(rv, job_id, job, &r, first, sizeof first);
    rk_result_free(&r);
    if (blocking < 0) {
        if (!msg[0] || rc == 0)
            say(msg, msglen, "Die Korrektur konnte nicht gespeichert werden (%s).",
                rk_strerror(blocking));
        rc = blocking;
    } else {
        rc = 0;
        int open = rk_store_open_blocking(rv->store, job_id);
        say(msg, msglen, "Feld %s korrigiert (alter Wert: %s, neuer Wert: %s). %s", field,
            old ? old : "-", value ? value : "-",
            open ? "Es bestehen noch blockierende Auffälligkeiten." :
                   "Keine blockierenden Auffälligkeiten mehr; der Antrag kann freigegeben "
                   "werden.");
    }
    free(old);
    rk_job_unref(job);
    return finish(rv, rc, msg, msglen);
}

int rk_review_approve(const rk_review *rv, int64_t job_id, char *msg, size_t msglen)
{
    rk_job_info ji;
    rk_job *job = NULL;
    int rc = load(rv, job_id, &ji, &job, msg, msglen);
    if (rc)
        return rc;
    if (strcmp(ji.state, RK_ST_REVIEW) != 0) {
        rk_job_unref(job);
        return refuse_state(&ji, "zur Klärung", msg, msglen);
    }
    if (job->four_eyes && rk_store_has_corrected(rv->store, job_id, rv->actor)) {
        say(msg, msglen, "Vier-Augen-Prinzip: %s hat diesen Antrag korrigiert und kann ihn "
                         "daher nicht freigeben. Die Freigabe muss eine andere Person "
                         "erteilen.", rv->actor);
        rk_job_unref(job);
        return RK_E_STATE;
    }
    if ((rc = rk_store_begin(rv->store)) != 0) {
        rk_job_unref(job);
        say(msg, msglen, "Die Datenbank ist belegt; bitte erneut versuchen.");
        return rc;
    }
    rk_result r;
    rk_result_init(&r);
    char first[600] = "";
    rc = ensure_mapped(rv, job_id, job, &r);
    int blocking = rc ? rc : recheck(rv, job_id, job, &r, first, sizeof first);
    rk_result_free(&r);
    if (blocking < 0) {
        rc = blocking;
        say(msg, msglen, "Die Regeln konnten nicht geprüft werden (%s).", rk_strerror(rc));
    } else if (blocking > 0) {
        /* the re-checked anomalies are kept: the clerk sees what is left */
        rc = rk_store_note(rv->store, job_id, rv->actor,
                           "Freigabe abgelehnt: Regeln blockieren weiterhin");
        rk_job_unref(job);
        if (rk_store_commit(rv->store)) {
            rk_store_rollback(rv->store);
            return RK_E_DB;
        }
        say(msg, msglen, "Antrag %lld bleibt zur Klärung: %s", (long long)job_id, first);
        return rc ? rc : RK_E_STATE;
    } else {
        /* what the rules do not decide, the person decides by approving */
        rc = rk_store_resolve_anomalies(rv->store, job_id, NULL, NULL, 0, rv->actor);
        if (!rc)
            rc = rk_store_reset_deliveries(rv->store, job_id, "refused");
        if (!rc)
            rc = rk_store_transition(rv->store, job_id, RK_ST_REVIEW, RK_ST_READY, rv->actor,
                                     "freigegeben");
        if (!rc)
            say(msg, msglen, "Antrag %lld freigegeben; er wird an das Fachverfahren "
                             "übertragen.", (long long)job_id);
    }
    rk_job_unref(job);
    return finish(rv, rc, msg, msglen);
}

int rk_review_reject(const rk_review *rv, int64_t job_id, const char *reason, char *msg,
                     size_t msglen)
{
    if (!reason || !*reason) {
        say(msg, msglen, "Eine Ablehnung braucht eine Begründung.");
        return RK_E_FORMAT;
    }
    rk_job_info ji;
    int rc = load(rv, job_id, &ji, NULL, msg, msglen);
    if (rc)
        return rc;
    if (strcmp(ji.state, RK_ST_REVIEW) != 0 && strcmp(ji.state, RK_ST_FAILED) != 0)
        return refuse_state(&ji, "zur Klärung oder fehlgeschlagen", msg, msglen);
    if ((rc = rk_store_begin(rv->store)) != 0) {
        say(msg, msglen, "Die Datenbank ist belegt; bitte erneut versuchen.");
        return rc;
    }
    /* the Begründung may name the citizen: it is kept with the anomalies,
     * which the retention purge clears, not in the event trail */
    rc = rk_store_add_anomaly(rv->store, job_id, "ABGELEHNT", NULL, RK_SEV_BLOCK, reason);
    if (!rc)
        rc = rk_store_resolve_anomalies(rv->store, job_id, NULL, NULL, 0, rv->actor);
    if (!rc)
        rc = rk_store_transition(rv->store, job_id, ji.state, RK_ST_REJECTED, rv->actor,
                                 "abgelehnt (Begründung bei den Auffälligkeiten)");
    if (!rc)
        say(msg, msglen, "Antrag %lld abgelehnt.", (long long)job_id);
    return finish(rv, rc, msg, msglen);
}

int rk_ops_retry(const rk_review *rv, int64_t job_id, char *msg, size_t msglen)
{
    rk_job_info ji;
    int rc = load(rv, job_id, &ji, NULL, msg, msglen);
    if (rc)
        return rc;
    if (strcmp(ji.state, RK_ST_FAILED) != 0)
        return refuse_state(&ji, "fehlgeschlagen", msg, msglen);
    if ((rc = rk_store_begin(rv->store)) != 0) {
        say(msg, msglen, "Die Datenbank ist belegt; bitte erneut versuchen.");
        return rc;
    }
    rk_result r;
    rk_result_init(&r);
    rc = rk_store_load_result(rv->store, job_id, &r);
    int mapped = r.n_fields > 0;
    rk_result_free(&r);
    if (!rc && mapped) {
        /* a delivery failed: deliver the pending and failed ones again */
        rc = rk_store_reset_deliveries(rv->store, job_id, "failed");
        if (!rc)
            rc = rk_store_transition(rv->store, job_id, RK_ST_FAILED, RK_ST_READY, rv->actor,
                                     "retry: attempts reset");
        if (!rc)
            say(msg, msglen, "Antrag %lld wird erneut übertragen.", (long long)job_id);
    } else if (!rc) {
        /* processing failed (no job, unreadable): process it again, e.g.
         * after a job for its root element was added */
        rc = rk_store_reset_deliveries(rv->store, job_id, "failed");
        if (!rc)
            rc = rk_store_transition(rv->store, job_id, RK_ST_FAILED, RK_ST_RECEIVED,
                                     rv->actor, "retry: processing again");
        if (!rc)
            say(msg, msglen, "Antrag %lld wird erneut verarbeitet.", (long long)job_id);
    }
    return finish(rv, rc, msg, msglen);
}

int rk_ops_replay(const rk_review *rv, int64_t job_id, int new_key, int64_t *new_job_id,
                  char *msg, size_t msglen)
{
    rk_job_info ji;
    int rc = load(rv, job_id, &ji, NULL, msg, msglen);
    if (rc)
        return rc;
    static const char *const busy[] = {RK_ST_RECEIVED, RK_ST_VALIDATED, RK_ST_MAPPED,
                                       RK_ST_READY, RK_ST_DELIVERING, RK_ST_RETRY_WAIT};
    for (size_t i = 0; i < sizeof busy / sizeof busy[0]; i++)
        if (strcmp(ji.state, busy[i]) == 0) {
            say(msg, msglen, "Antrag %lld ist noch in Bearbeitung (Status: %s); eine "
                             "Wiederholung ist erst danach möglich.", (long long)job_id,
                rk_state_german(ji.state));
            return RK_E_STATE;
        }
    char *data = NULL, *uid = NULL;
    size_t len;
    rc = rk_store_load_payload(rv->store, job_id, 64u << 20, &data, &len, &uid);
    free(data);
    free(uid);
    if (rc) {
        say(msg, msglen, "Das Dokument von Antrag %lld ist nicht mehr gespeichert "
                         "(Löschung nach Aufbewahrungsfrist).", (long long)job_id);
        return RK_E_STATE;
    }
    if ((rc = rk_store_begin(rv->store)) != 0) {
        say(msg, msglen, "Die Datenbank ist belegt; bitte erneut versuchen.");
        return rc;
    }
    rc = rk_store_add_replay(rv->store, job_id, new_key, rv->actor, new_job_id);
    if (!rc)
        say(msg, msglen, "Antrag %lld wird als Antrag %lld erneut verarbeitet%s.",
            (long long)job_id, (long long)*new_job_id,
            new_key ? " (mit neuem Schlüssel: das Fachverfahren erhält einen zweiten "
                      "Datensatz)" : "");
    return finish(rv, rc, msg, msglen);
}

int rk_ops_purge(const rk_review *rv, int64_t cutoff_ms, const char *job, int dry_run,
                 rk_purge_report *report, char *msg, size_t msglen)
{
    memset(report, 0, sizeof *report);
    int rc = rk_store_begin(rv->store);
    if (rc) {
        say(msg, msglen, "Die Datenbank ist belegt; bitte erneut versuchen.");
        return rc;
    }
    rk_purge_counts c;
    rc = rk_store_purge(rv->store, cutoff_ms, job, dry_run, rv->actor, &c);
    if (!rc) {
        report->jobs = c.jobs;
        report->payloads = c.payloads;
        report->fields = c.fields;
        report->corrections = c.corrections;
        report->anomalies = c.anomalies;
        say(msg, msglen, "%s %lld abgeschlossene Anträge: %lld Dokumente, %lld übernommene "
                         "Werte, %lld Korrekturen, %lld Meldungen.",
            dry_run ? "Würde löschen:" : "Gelöscht:", (long long)c.jobs,
            (long long)c.payloads, (long long)c.fields, (long long)c.corrections,
            (long long)c.anomalies);
    }
    if (dry_run) {
        rk_store_rollback(rv->store);
        return rc;
    }
    return finish(rv, rc, msg, msglen);
}

int rk_duration_parse(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return RK_E_FORMAT;
    char *end;
    long long n = strtoll(s, &end, 10);
    if (end == s || n < 0 || n > 100000000LL || end[0] == '\0' || end[1] != '\0')
        return RK_E_FORMAT;
    int64_t unit;
    switch (*end) {
    case 's': unit = 1000; break;
    case 'm': unit = 60000; break;
    case 'h': unit = 3600000; break;
    case 'd': unit = 86400000LL; break;
    case 'w': unit = 7 * 86400000LL; break;
    default: return RK_E_FORMAT;
    }
    *ms = (int64_t)n * unit;
    return 0;
}
