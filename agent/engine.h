/*
 * engine.h — the pipeline of rekeyd on one libuv loop.
 *
 * intake with processing (read, hash, compress, parse, match, validate,
 * map, check: one step on the thread pool) → deliver (connector on the
 * thread pool, many records per call when the connector has
 * deliver_batch).  Results come back to the loop thread and are committed
 * in batches (group commit) by the engine's writer thread while the loop
 * goes on: while work is running a batch waits up to [rekeyd]
 * commit_max_ms for more results, up to commit_max_items of them, and what
 * must follow a commit (archiving the source file, starting the next
 * stage) runs on the loop thread only after it.  The
 * directory inbox is held while [inbox] claim_ahead files are taken and
 * not yet stored.
 *
 * Ownership: the engine keeps pointers to loop and cfg, which must outlive
 * it; it frees itself after rk_engine_stop once its last handle closed
 * and then calls the done callback.
 */
#ifndef RK_ENGINE_H
#define RK_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "config.h"

typedef struct rk_engine rk_engine;

/* once: exit (via done_cb) as soon as the inbox is empty and nothing is in
 * flight.  done_cb(arg, status) runs when the engine has stopped; status is
 * 0 after a clean drain. */
int rk_engine_start(uv_loop_t *loop, const rk_config *cfg, int once,
                    void (*done_cb)(void *arg, int status), void *arg,
                    rk_engine **out, char *err, size_t errlen);

/* Drain: take no new files, finish and commit what is in flight, leave
 * the rest in its durable state for the next start, then stop. */
void rk_engine_stop(rk_engine *e);

/* Re-reads the job folder; broken files keep their old version. */
void rk_engine_reload(rk_engine *e);

/* ---- sources other than the directory inbox ---------------------------
 *
 * A networked source (HTTP inbox, FIT-Connect) hands each document to the
 * engine with rk_engine_submit and acknowledges it upstream only in its
 * ack callback, which runs on the loop thread after the submission is
 * committed (rc 0, job_id set) or could not be stored (rc < 0, reason in
 * msg).  A document whose (source, source_ref) is already stored is not
 * stored again: ack gets rc 0 and the existing job id, so a source that
 * fetches the same submission twice stores it once.  data is copied. */
typedef void (*rk_submit_cb)(void *arg, int rc, int64_t job_id, const char *msg);
int rk_engine_submit(rk_engine *e, const char *source, const char *source_ref,
                     const void *data, size_t len, rk_submit_cb ack, void *arg);

/* The same with a media type and attachments, stored in the same commit.
 * A document whose media type is not XML (e.g. "application/json") is
 * stored and held for review with the anomaly DATEN_KEIN_XML: no job
 * processes anything but XML.  Everything is copied. */
typedef struct rk_attachment_in {
    const char *name;        /* the source's id or file name of the attachment */
    const char *media_type;  /* or NULL */
    const void *data;
    size_t len;
} rk_attachment_in;
typedef struct rk_submit_args {
    const char *source;
    const char *source_ref;
    const void *data;
    size_t len;
    const char *media_type;  /* NULL, or an XML type: the normal pipeline */
    const rk_attachment_in *attachments;
    size_t n_attachments;
} rk_submit_args;
int rk_engine_submit2(rk_engine *e, const rk_submit_args *a, rk_submit_cb ack, void *arg);

/* What the engine needs of a source: whether it has nothing left to do
 * (for --once) and how to stop it (drain).  stop must call done(done_arg)
 * once every handle of the source is closed. */
typedef struct rk_source_ops {
    const char *name;
    int (*idle)(void *src);
    void (*stop)(void *src, void (*done)(void *done_arg), void *done_arg);
    /* Optional: a submission of this source was delivered or rejected
     * (state "delivered" or "rejected"; reason: the Begruendung of a
     * rejection, or NULL).  The source tells its sender and then calls
     * rk_engine_notice_done with notice_id; until it confirms, the notice
     * is offered again (after a restart too), so it must be harmless to
     * send twice.  Strings are valid during the call only. */
    void (*outcome)(void *src, int64_t notice_id, const char *source_ref, int64_t job_id,
                    const char *state, const char *reason);
} rk_source_ops;
/* Registers a source; the engine stops it when it stops. */
void rk_engine_add_source(rk_engine *e, const rk_source_ops *ops, void *src);
/* Registers a source that stores under the source id `source_id` (the
 * `source` of its rk_engine_submit calls, e.g. "fitconnect:portal") and
 * wants to hear outcomes through ops->outcome. */
void rk_engine_add_source_id(rk_engine *e, const rk_source_ops *ops, void *src,
                             const char *source_id);
/* The source has told its sender (ok = 1) or could not (ok = 0: offered
 * again later, error kept with the notice).  Loop thread only. */
void rk_engine_notice_done(rk_engine *e, int64_t notice_id, int ok, const char *error);
/* A networked source reports each poll: ok, or the error (no secrets,
 * no personal data), and when it polls next (ms since the epoch).  Kept
 * in the store for rekeyctl status.  Loop thread only. */
void rk_engine_source_health(rk_engine *e, const char *source_id, int ok, const char *error,
                             int64_t next_poll_ms);
uv_loop_t *rk_engine_loop(rk_engine *e);
const rk_config *rk_engine_config(rk_engine *e);

/* Starts the sources configured in cfg other than the directory inbox
 * (agent/sources.c).  Called by rk_engine_start. */
int rk_sources_start(rk_engine *e, char *err, size_t errlen);

/* The job validator the engine installs (rk_registry_set_validator): the
 * job's connector loads and accepts its settings.  arg is the rk_config. */
int rk_engine_check_connector(const rk_job *job, void *arg, char *err, size_t errlen);

#endif /* RK_ENGINE_H */
