/*
 * review.h — what people decide: clerks correct, approve or reject held
 * submissions; operators retry, replay and purge.  rekeyctl and the web
 * dashboard both call these functions; there is no second implementation
 * of a decision.
 *
 * Every action is one transaction on the store and leaves events in the
 * audit trail naming who acted.  rekeyd notices the changes by itself
 * (it watches the database's data_version) and delivers approved jobs
 * within about a second, whether it was running during the action or
 * starts later.
 *
 * Errors: RK_E_NOTFOUND (no such job or field), RK_E_STATE (the action is
 * not allowed in the job's state, or four-eyes refused it), RK_E_CONFIG
 * (the job's definition is not loaded), RK_E_DB.  Every function writes a
 * German sentence for the person who acted into msg, on success and on
 * failure ("Antrag 12 freigegeben.", "Antrag 12 ist nicht zur Klärung
 * (Status: übertragen).").
 */
#ifndef RK_REVIEW_H
#define RK_REVIEW_H

#include <stddef.h>
#include <stdint.h>
#include "job.h"
#include "store.h"

typedef struct rk_review {
    rk_store *store;      /* read-write */
    rk_registry *reg;     /* the job definitions (for rules and settings) */
    const char *actor;    /* who acts: the OS user, --as NAME, a token's name */
    const char *today;    /* "YYYY-MM-DD" for date rules; NULL = local today */
    int64_t now_ms;       /* 0 = the real clock (tests fix it) */
} rk_review;

/* Corrects one mapped field of a job in review: records old and new value
 * (table corrections, event "Feld korrigiert"), resolves the transform
 * anomalies of that field, and re-checks the rules at once (the anomalies
 * of rules are replaced by the new findings).  FIELD must be a field of
 * the job's map. */
int rk_review_set(const rk_review *rv, int64_t job_id, const char *field, const char *value,
                  char *msg, size_t msglen);

/* Approves a job in review.  The rules run again on the (corrected)
 * record; if any still blocks, the job stays in review with the remaining
 * anomalies and RK_E_STATE is returned.  Otherwise the anomalies the
 * person overrules (schema, transforms, duplicates, refusals by the
 * target) are marked resolved by the actor, refused deliveries become
 * pending again, and the job goes to ready.  With the job's four-eyes
 * setting, someone who corrected the job cannot approve it. */
int rk_review_approve(const rk_review *rv, int64_t job_id, char *msg, size_t msglen);

/* Rejects a job in review or failed: → rejected, with the reason in the
 * event.  The reason is required. */
int rk_review_reject(const rk_review *rv, int64_t job_id, const char *reason, char *msg,
                     size_t msglen);

/* failed → ready: attempts reset, failed deliveries pending again. */
int rk_ops_retry(const rk_review *rv, int64_t job_id, char *msg, size_t msglen);

/* Runs the stored payload of a job through the current job definition
 * again, as a new job (state received) linked to the original
 * (replay_of).  The new job delivers with the same idempotency keys as
 * the original, so the target updates instead of duplicating; new_key
 * gives it keys of its own (a second record in the target).
 * *new_job_id gets the new job's id. */
int rk_ops_replay(const rk_review *rv, int64_t job_id, int new_key, int64_t *new_job_id,
                  char *msg, size_t msglen);

/* What a purge removed (or would remove, dry run). */
typedef struct rk_purge_report {
    int64_t jobs;        /* finished jobs purged */
    int64_t payloads;    /* submissions whose document was deleted */
    int64_t fields;      /* mapped values deleted */
    int64_t corrections; /* corrections deleted */
    int64_t anomalies;   /* anomaly messages cleared (codes stay) */
} rk_purge_report;

/* Retention: for finished jobs (delivered, rejected, failed) last changed
 * before cutoff_ms — and, when job is not NULL, only of that job —
 * deletes the payloads, mapped values and corrections and clears anomaly
 * messages and source values; the event trail stays (it holds ids, codes
 * and actors only).  A payload shared with an unfinished job stays.  With
 * dry_run nothing is deleted and the report says what would be. */
int rk_ops_purge(const rk_review *rv, int64_t cutoff_ms, const char *job, int dry_run,
                 rk_purge_report *report, char *msg, size_t msglen);

/* Parses a duration like "90d", "36h", "15m", "30s" or "2w" into
 * milliseconds; 0 on success, RK_E_FORMAT otherwise. */
int rk_duration_parse(const char *s, int64_t *ms);

#endif /* RK_REVIEW_H */
