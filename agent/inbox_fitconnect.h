/*
 * inbox_fitconnect.h — the receiving side of FIT-Connect, the federal
 * delivery service: a networked source that lists the submissions waiting
 * for one destination (Zustellpunkt), fetches and decrypts each one with
 * the destination's key, checks the hashes its metadata declares, hands the
 * data and attachments to the engine (rk_engine_submit2, source
 * "fitconnect:NAME", source_ref the submission id) and, once the engine
 * reports the outcome, tells the delivery service with a signed Security
 * Event Token: accept-submission after delivery, reject-submission after a
 * reviewer's rejection.  A submission that fails decryption or a hash
 * check is rejected at once, with the FIT-Connect problem, and not stored.
 * Settings: [fitconnect NAME] (config.h, docs/fitconnect.md).
 *
 * Everything runs on the loop thread except decryption and signing, which
 * run on the libuv thread pool.
 *
 * Ownership: the source keeps pointers to the engine, the curl context and
 * its settings, which must outlive it.  It loads its two keys once at
 * start and frees them with itself, after rk_fitconnect_stop, once its
 * timer closed and its pool work returned; then it calls done.  The curl
 * context is shared with other sources and closed by the caller.
 */
#ifndef RK_INBOX_FITCONNECT_H
#define RK_INBOX_FITCONNECT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "curl_uv.h"
#include "engine.h"

typedef struct rk_fitconnect rk_fitconnect;

/* Loads the decryption and signing keys and starts polling at once.
 * 0, or a negative error with a reason in err (a key that cannot be
 * loaded, a signing key without kid and no signing_kid). */
int rk_fitconnect_start(rk_engine *e, rk_curl *curl, const rk_fitconnect_config *cfg,
                        rk_fitconnect **out, char *err, size_t errlen);

/* "fitconnect:NAME", the source id its submissions are stored under. */
const char *rk_fitconnect_source_id(const rk_fitconnect *s);

/* The running source of section [fitconnect NAME], or NULL (for the
 * operator API, which receives the callbacks).  Loop thread only. */
rk_fitconnect *rk_fitconnect_find(const char *name);

/* 1 when --once may end: nothing in flight, no event waiting to be sent,
 * and the last poll found nothing new, failed for a reason a retry will
 * not fix, or failed more than once_retries times. */
int rk_fitconnect_idle(const rk_fitconnect *s);

/* The engine's outcome hook (rk_source_ops.outcome): the job of
 * submission source_ref was "delivered" (an accept-submission event is
 * sent) or "rejected" by a reviewer (a reject-submission event is sent;
 * the reviewer's Begruendung in reason is NOT sent: events are readable by
 * the delivery service, and the reason may name the citizen).  The source
 * confirms with rk_engine_notice_done(notice_id) once the delivery
 * service took the event; the same notice offered again while it is being
 * handled is ignored.  After a restart the submission is fetched again
 * first (the event needs its case id and authentication tags). */
void rk_fitconnect_outcome(rk_fitconnect *s, int64_t notice_id, const char *source_ref,
                           int64_t job_id, const char *state, const char *reason);

/* Checks a FIT-Connect callback against cfg's callback_secret: the
 * headers callback-timestamp and callback-authentication and the raw
 * body.  0, RK_E_CONFIG (no callback_secret configured), RK_E_FORMAT (a
 * header missing), or rk_callback_verify's RK_JOSE_E_MAC / RK_JOSE_E_STALE
 * (more than five minutes off now, Unix seconds); err says which. */
int rk_fitconnect_callback_check(const rk_fitconnect_config *cfg, const char *timestamp,
                                 const char *mac, const void *body, size_t len, int64_t now,
                                 char *err, size_t errlen);

/* A callback arrived (the operator API calls this): checked as above
 * with the current time; when valid, the source polls at once (or right
 * after the poll running now).  An invalid callback changes nothing. */
int rk_fitconnect_callback(rk_fitconnect *s, const char *timestamp, const char *mac,
                           const void *body, size_t len, char *err, size_t errlen);

/* Cancels every request in flight, waits for pool work, closes the
 * timer, frees the source and then calls done(arg).  Submissions not yet
 * answered with an event are listed and fetched again on the next start;
 * the engine stores each once and offers its unsent outcomes again. */
void rk_fitconnect_stop(rk_fitconnect *s, void (*done)(void *arg), void *arg);

/* The engine's view (rk_engine_add_source_id, with the source id). */
extern const rk_source_ops rk_fitconnect_ops;

#endif /* RK_INBOX_FITCONNECT_H */
