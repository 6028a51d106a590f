/*
 * store.h — the SQLite store: queue, review store and audit log in one
 * WAL-mode database.  All SQL of rekey lives behind this interface, so a
 * second backend (PostgreSQL, for several instances) stays possible.
 *
 * One rk_store is one connection, used by one thread at a time (the loop
 * thread in rekeyd).  Writes outside an explicit rk_store_begin/commit
 * pair are committed at once; the engine wraps batches of transitions in
 * one transaction (group commit).
 *
 * Ownership: strings returned through out-parameters and json_t objects
 * are the caller's (free() / json_decref()).
 */
#ifndef RK_STORE_H
#define RK_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "record.h"

/* The states of a job (one submission in one job). */
#define RK_ST_RECEIVED "received"
#define RK_ST_VALIDATED "validated"
#define RK_ST_MAPPED "mapped"
#define RK_ST_READY "ready"
#define RK_ST_DELIVERING "delivering"
#define RK_ST_DELIVERED "delivered"
#define RK_ST_REVIEW "review"
#define RK_ST_RETRY_WAIT "retry_wait"
#define RK_ST_FAILED "failed"
#define RK_ST_REJECTED "rejected"
extern const char *const rk_states[]; /* all ten, NULL-terminated */
int rk_state_valid(const char *s);
const char *rk_state_german(const char *s); /* glossary word, or s */

typedef struct rk_store rk_store;

/* The schema version this rekey writes (PRAGMA user_version): the number
 * of migrations in store.c. */
#define RK_STORE_SCHEMA_VERSION 11

#define RK_STORE_READONLY 0x1 /* rekeyctl's read commands */
#define RK_STORE_SYNC_NORMAL 0x2 /* synchronous=NORMAL instead of FULL */

/* Opens (creating unless read-only) and migrates the database to the
 * current schema version.  Files are created 0600. */
int rk_store_open(const char *path, int flags, rk_store **out, char *err, size_t errlen);
void rk_store_close(rk_store *s);
const char *rk_store_errmsg(rk_store *s);
/* How long a statement waits for another process's lock before it fails
 * with SQLITE_BUSY (rk_store_open sets 10000 ms). */
void rk_store_set_busy_timeout(rk_store *s, int ms);
/* Moves WAL checkpoints off the committing thread: a commit that leaves
 * at least `pages` pages in the WAL wakes a thread of the store's own
 * (with its own connection) to checkpoint; at 16 times that the commit
 * checkpoints itself.  For the daemon's connection, whose commits run on
 * the event loop.  Stopped by rk_store_close. */
int rk_store_background_checkpoints(rk_store *s, int pages);
/* The last error with its cause named (disk full, locked) into out. */
void rk_store_describe_error(rk_store *s, char *out, size_t n);

int rk_store_begin(rk_store *s);
int rk_store_commit(rk_store *s);
int rk_store_rollback(rk_store *s);
/* A savepoint inside a transaction: _end keeps (keep = 1) or undoes what
 * was written since, so one item of a batch is all or nothing. */
int rk_store_savepoint(rk_store *s);
int rk_store_savepoint_end(rk_store *s, int keep);

/* A new submission as taken from a source. */
typedef struct rk_submission_in {
    const char *uid;        /* random hex, stable id for idempotency keys */
    const char *source;     /* e.g. "dir:/var/spool/rekey/inbox" */
    const char *source_ref; /* the source's name for it (file name) */
    const char *sha256;     /* of the uncompressed document */
    size_t size;            /* uncompressed size */
    const void *zpayload;   /* zlib-compressed document */
    size_t zlen;
    int64_t received_ms;
} rk_submission_in;

/* Stores a submission with its first job row (state received, no job
 * name yet) and the "received" event.  *job_id gets the job row id. */
int rk_store_add_submission(rk_store *s, const rk_submission_in *in,
                            const char *actor, int64_t *job_id);
/* The job row of a submission with this source and source_ref, if any
 * (used to recover claimed files after a crash). */
int rk_store_find_source_ref(rk_store *s, const char *source, const char *source_ref,
                             int64_t *job_id);

/* Loads and inflates the payload of the job's submission (max bytes);
 * *uid gets the submission uid (caller frees). */
int rk_store_load_payload(rk_store *s, int64_t job_id, size_t max,
                          char **data, size_t *len, char **uid);

/*
 * Moves a job along several states in one write of its row: path[0] is
 * the state it must be in (else RK_E_STATE), path[1..steps] the states it
 * passes, reason[i] the reason of the step into path[i + 1].  Each step
 * gets its event and log line, as rk_store_transition would write them,
 * but the row (and its state indexes) is written once, with the columns
 * the flags below name.  The states in between are never visible to a
 * reader: they exist inside one transaction.
 */
#define RK_ADV_MAX_STEPS 5
typedef struct rk_advance {
    const char *actor;
    const char *path[RK_ADV_MAX_STEPS + 1];
    const char *reason[RK_ADV_MAX_STEPS];
    size_t steps;
    int match; /* job, job_version; the submission's root_ns, root_name */
    const char *job, *root_ns, *root_name;
    long job_version;
    int meta; /* reference, deadline_at (deadline_ms after receipt; 0: none) */
    const char *reference;
    int64_t deadline_ms;
    int delivery; /* attempts, next_attempt_at (0: none), last_error, target_id (NULL or
                   * "": the one before stays) */
    int attempts;
    int64_t next_attempt_ms;
    const char *last_error, *target_id;
    int quiet_source; /* 1: the job's source answers nobody (the caller knows it came
                       * from the directory inbox): no notice of a final state */
} rk_advance;
int rk_store_advance(rk_store *s, int64_t job_id, const rk_advance *a);

/* Stores a submission taken in and processed in the same transaction:
 * the submission (with a->root_ns and root_name when a->match) and its
 * job row, inserted at once in the last state of a->path (path[0] is
 * "received"), with the columns a's flags name, and the events of
 * "received" and of every step, as rk_store_add_submission followed by
 * rk_store_advance would write them; only the job row and its indexes
 * are written once instead of twice.  *job_id gets the job row id. */
int rk_store_add_processed(rk_store *s, const rk_submission_in *in, const rk_advance *a,
                           int64_t *job_id);

/* Moves a job to state `to`, appending an event.  When from is not NULL
 * the job must be in that state, else RK_E_STATE. */
int rk_store_transition(rk_store *s, int64_t job_id, const char *from, const char *to,
                        const char *actor, const char *reason);

/* Replaces the mapped fields of a job with those of r. */
int rk_store_save_fields(rk_store *s, int64_t job_id, const rk_result *r);
/* Replaces the mapped fields and anomalies of a job with those of r. */
int rk_store_save_result(rk_store *s, int64_t job_id, const rk_result *r);
/* The same for a job that has no fields and anomalies yet (processed for
 * the first time since its intake): writes without deleting first. */
int rk_store_add_result(rk_store *s, int64_t job_id, const rk_result *r);
/* r's field values as the store writes them (JSON text, the caller
 * frees; NULL when out of memory).  Needs no connection: a worker thread
 * makes it and puts it into r->values_json, so that the writer thread
 * binds one text instead of building it in SQL. */
char *rk_store_fields_json(const rk_result *r);
/* Appends one anomaly. */
int rk_store_add_anomaly(rk_store *s, int64_t job_id, const char *code,
                         const char *field, rk_severity sev, const char *message);
/* Loads the mapped fields (name, value) and anomalies into r. */
int rk_store_load_result(rk_store *s, int64_t job_id, rk_result *r);

/* Records a duplicate key for the job and reports in *other the newest
 * other job (not rejected) with the same key within `days`, or 0. */
int rk_store_dup_check(rk_store *s, int64_t job_id, const char *key, double days,
                       int64_t now_ms, int64_t *other);
/* The two halves of it: the look-up (job_id 0: a job not stored yet, of
 * a new submission) and the record of the key. */
int rk_store_dup_find(rk_store *s, int64_t job_id, const char *key, double days,
                      int64_t now_ms, int64_t *other);
int rk_store_dup_add(rk_store *s, int64_t job_id, const char *key, int64_t now_ms);
/* The duplicate keys are looked up in memory (26-51 bytes per key; keys
 * older than the longest window looked up are dropped when the table
 * fills); this reads those of the last `days` now (it happens at the
 * first look-up otherwise) and reports in *n_keys how many it holds. */
int rk_store_dup_prepare(rk_store *s, double days, size_t *n_keys);

/* One delivery of a job to one of its connectors.  States: pending (not
 * yet in the target), delivered, refused (PERMANENT), failed (attempts
 * used up). */
typedef struct rk_delivery {
    int64_t id;      /* 0: not written yet (rk_store_delivery_new) */
    int64_t job_id;
    char name[64];
    char plugin[64];
    char state[16];
    int attempts;
    char key[160];   /* the idempotency key, fixed when the row is made */
} rk_delivery;
/* The delivery row of (job, name), created pending with key when missing. */
int rk_store_delivery_get(rk_store *s, int64_t job_id, const char *name, const char *plugin,
                          const char *key, rk_delivery *out);
/* A pending delivery for a job that has no delivery rows yet (one this
 * process took in and is delivering for the first time): made in memory
 * only, its row is written with its first outcome by
 * rk_store_delivery_record.  A crash before that leaves the job in
 * `delivering` without the row, which the next start makes as
 * rk_store_delivery_get does, with the same key.  Returns RK_E_LIMIT
 * when a name or the key does not fit. */
int rk_store_delivery_new(int64_t job_id, const char *name, const char *plugin, const char *key,
                          rk_delivery *out);
/* Records the outcome of an attempt; target_id NULL keeps the old one. */
int rk_store_delivery_set(rk_store *s, int64_t delivery_id, const char *state, int attempts,
                          const char *last_error, const char *target_id);
/* The same for d: its row is updated, or written when d was never
 * written (id 0).  d itself is not changed, so a transaction rolled back
 * and written again writes the row again. */
int rk_store_delivery_record(rk_store *s, const rk_delivery *d, const char *state, int attempts,
                             const char *last_error, const char *target_id);

/* A job the engine must pick up (at start, or when due). */
typedef struct rk_pending {
    int64_t job_id;
    char state[16];
    char job[64];   /* "" when not matched yet */
    int attempts;
    int64_t next_attempt_ms;
    char uid[40];
} rk_pending;
/* Calls cb for each job in one of the given states (NULL-terminated),
 * oldest first, at most limit (0 = all).  Stops early when cb returns
 * non-zero. */
int rk_store_pending(rk_store *s, const char *const *states, size_t limit,
                     int (*cb)(const rk_pending *p, void *arg), void *arg);

/* Read side, for rekeyctl and the operator API. */
/* {"by_state": {state: n, ... all states}, "by_job": {job: {state: n}},
 *  "total": n, "paused": [{job, connector, reason, paused_at}],
 *  "sources": [{source, ok, last_poll_at, ...}] (rk_store_source_health)} */
json_t *rk_store_status_json(rk_store *s);
/* [{"id", "job", "state", "received_at", "updated_at", "attempts",
 *   "anomalies": n, "codes": "A,B" or null}], newest first; state/job
 *   may be NULL. */
json_t *rk_store_list_json(rk_store *s, const char *state, const char *job, size_t limit);
/* ---- review and operations (used by agent/review.c) ---- */

typedef struct rk_job_info {
    int64_t id;
    int64_t submission_id;
    char job[64];        /* "" when no job took it */
    char state[16];
    char uid[40];        /* the submission's uid */
    char key_suffix[40]; /* "" unless a replay asked for new keys */
    int64_t replay_of;   /* 0 when not a replay */
    int64_t deadline_at; /* ms, 0 = none */
    int attempts;
} rk_job_info;
int rk_store_job_info(rk_store *s, int64_t job_id, rk_job_info *out);
/* An event that changes no state (from = to = the current state). */
int rk_store_note(rk_store *s, int64_t job_id, const char *actor, const char *reason);
/* Sets a mapped value of a job in review, recording old and new in
 * corrections and an event; RK_E_STATE when the job is not in review,
 * RK_E_NOTFOUND when it has no such field.  *old_value (may be NULL)
 * gets the previous value (caller frees). */
int rk_store_set_field(rk_store *s, int64_t job_id, const char *field, const char *value,
                       const char *actor, char **old_value);
/* 1 when actor corrected a field of the job. */
int rk_store_has_corrected(rk_store *s, int64_t job_id, const char *actor);
/* Deletes the job's open anomalies with one of codes and adds r's. */
int rk_store_replace_open_anomalies(rk_store *s, int64_t job_id, const char *const *codes,
                                    size_t n_codes, const rk_result *r);
/* Marks open anomalies resolved by actor: of field (NULL = any) with one
 * of codes (NULL/0 = any code). */
int rk_store_resolve_anomalies(rk_store *s, int64_t job_id, const char *field,
                               const char *const *codes, size_t n_codes, const char *actor);
/* Number of open (unresolved) blocking anomalies. */
int rk_store_open_blocking(rk_store *s, int64_t job_id);
/* Deliveries in from_state become pending with attempts 0 (job too). */
int rk_store_reset_deliveries(rk_store *s, int64_t job_id, const char *from_state);
/* A new job (state received) for the same submission, linked by
 * replay_of; new_key gives it idempotency keys of its own. */
int rk_store_add_replay(rk_store *s, int64_t job_id, int new_key, const char *actor,
                        int64_t *new_id);
typedef struct rk_purge_counts {
    int64_t jobs, payloads, fields, corrections, anomalies;
} rk_purge_counts;
/* Retention purge of finished jobs changed before cutoff_ms (see
 * review.h: rk_ops_purge); counts what is (or would be) removed. */
int rk_store_purge(rk_store *s, int64_t cutoff_ms, const char *job, int dry_run,
                   const char *actor, rk_purge_counts *out);
/* Connectors paused after a FATAL answer (per job and connector name). */
int rk_store_pause_set(rk_store *s, const char *job, const char *connector, const char *reason);
/* Resumes paused connectors (job/connector NULL = all): the jobs waiting
 * for them become due at now_ms.  *cleared gets how many were paused. */
int rk_store_pause_clear(rk_store *s, const char *job, const char *connector, int64_t now_ms,
                         int64_t *cleared);
int rk_store_pauses(rk_store *s, void (*cb)(const char *job, const char *connector,
                                            const char *reason, void *arg), void *arg);

/* Networked sources.  The media type of a submission (NULL = XML). */
int rk_store_set_media(rk_store *s, int64_t job_id, const char *media_type);
char *rk_store_media(rk_store *s, int64_t job_id); /* caller frees; NULL = XML */
/* An attachment of the job's submission, stored zlib-compressed with its
 * SHA-256; the retention purge deletes its data with the payload. */
int rk_store_add_attachment(rk_store *s, int64_t job_id, const char *name,
                            const char *media_type, const void *data, size_t len);

/* What a source is told about its submissions: a notice is written with
 * every transition to delivered or rejected of a submission from a source
 * that answers its sender (source "fitconnect:…"), and stays unsent until
 * the source confirms (rk_store_notice_done with ok). */
typedef struct rk_notice {
    int64_t id;
    int64_t job_id;
    const char *source;     /* e.g. "fitconnect:portal" */
    const char *source_ref; /* the source's id of the submission */
    const char *state;      /* delivered | rejected */
    const char *reason;     /* the Begruendung of a rejection, or NULL */
    int attempts;
} rk_notice;
/* Calls cb for unsent notices, oldest first (strings valid during cb). */
int rk_store_notices(rk_store *s, size_t limit,
                     int (*cb)(const rk_notice *n, void *arg), void *arg);
int rk_store_notice_done(rk_store *s, int64_t id, int ok, const char *error);

/* A networked source's health after a poll: ok, or the error; when it
 * polls next (ms).  Shown by rk_store_status_json under "sources": source,
 * ok, last_poll_at, last_ok_at, last_error (the latest, kept after a
 * recovery), fails (in a row), next_poll_at. */
int rk_store_source_health(rk_store *s, const char *source, int ok, const char *error,
                           int64_t next_poll_ms);

/* SQLite's data_version: changes when another connection committed. */
int64_t rk_store_data_version(rk_store *s);

/* Filters of rk_store_find_json; NULL/0 members do not filter. */
typedef struct rk_list_filter {
    const char *state;
    const char *job;
    const char *source;      /* e.g. "dir:/var/spool/rekey/inbox", "http:portal" */
    const char *source_ref;  /* the source's id of a submission (file name, id) */
    const char *reference;   /* the job's reference field (e.g. Antragsnummer) */
    const char *code;        /* has an open anomaly with this code */
    const char *since;       /* received at or after, ISO 8601 (prefix ok: 2026-11-26) */
    const char *until;       /* received before, ISO 8601 */
    int overdue;             /* only jobs in review/failed past their deadline */
    int64_t now_ms;          /* for overdue; 0 = now */
    int64_t before_id;       /* paging: only ids below this (newest first) */
    size_t limit;            /* 0 = no limit */
} rk_list_filter;
/* Like rk_store_list_json with every filter, plus "reference", "source",
 * "source_ref", "deadline_at" (ISO or null) and "overdue" (bool) per row;
 * rows newest first, read with one statement (never the whole queue). */
json_t *rk_store_find_json(rk_store *s, const rk_list_filter *f);
/* The same rows for the dashboard's queue, filtered by state, job,
 * source, overdue and paging of f plus a free-text term (NULL/"" = none):
 * the job's number, or a part of its reference or source_ref. */
json_t *rk_store_search_json(rk_store *s, const rk_list_filter *f, const char *text);

/* The audit trail: events (newest last) with job id, job name, at, actor,
 * from, to, reason; since is ISO 8601 (or NULL), job NULL for all, after_id
 * for paging (events with id > after_id), limit 0 = all. */
json_t *rk_store_events_json(rk_store *s, const char *since, const char *job,
                             int64_t after_id, size_t limit);

/* Jobs in review/failed past their deadline that were not warned about
 * in the last 24 hours: calls cb per job and records the warning. */
int rk_store_overdue_sweep(rk_store *s, int64_t now_ms,
                           void (*cb)(int64_t job_id, const char *job, void *arg), void *arg);

/* One job with its submission, events, anomalies, fields, deliveries and
 * corrections; NULL when there is no such job. */
json_t *rk_store_show_json(rk_store *s, int64_t job_id);

#endif /* RK_STORE_H */
