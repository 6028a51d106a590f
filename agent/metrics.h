/*
 * metrics.h — rekey's Prometheus metrics.
 *
 * Counters and the processing histogram live in memory (one set per
 * process, guarded by a mutex, so any thread may count); they start at
 * zero with each start of rekeyd, as Prometheus expects of counters.
 * Gauges (jobs per state, overdue jobs, age of the oldest ready job,
 * paused connectors) are read from the store when /metrics is scraped, so
 * they also show what rekeyctl changed.
 *
 * Label values are copied; callers keep ownership of their strings.  The
 * number of series per metric is capped (RK_METRICS_MAX_SERIES): label
 * values come from configuration (sources, jobs, connectors), not from
 * documents, so the cap only guards against a mistake.
 */
#ifndef RK_METRICS_H
#define RK_METRICS_H

#include <stddef.h>
#include "store.h"
#include "util.h"

#define RK_METRICS_MAX_SERIES 2000

/* rekey_submissions_received_total{source}: a submission was stored. */
void rk_metrics_submission_received(const char *source);
/* rekey_transitions_total{job,to}: a job moved to state `to` (committed). */
void rk_metrics_transition(const char *job, const char *to);
/* rekey_processing_seconds: from receipt to ready or review. */
void rk_metrics_processing_observe(double seconds);
/* rekey_delivery_attempts_total{job,connector,result}; result is one of
 * "ok", "retry", "permanent", "fatal". */
void rk_metrics_delivery_attempt(const char *job, const char *connector, const char *result);
/* rekey_source_polls_total{source} / rekey_source_errors_total{source}:
 * one poll cycle of a networked source ended / ended failed. */
void rk_metrics_source_poll(const char *source);
void rk_metrics_source_error(const char *source);
/* What keeps a source from working (an authentication or set-up error
 * that retrying alone will not cure), or NULL when it works again.  Shown
 * as rekey_source_up{source} and by /readyz. */
void rk_metrics_source_health(const char *source, const char *problem);
/* Calls cb for each source with a problem; returns how many. */
size_t rk_metrics_source_problems(void (*cb)(const char *source, const char *problem,
                                             void *arg),
                                  void *arg);
/* rekey_http_requests_total{code}: an answer of the operator server. */
void rk_metrics_http_request(int status);

/* Appends the Prometheus text format (version 0.0.4) of every metric to
 * out; the gauges are read from store (NULL: left out).  0, or RK_E_DB
 * when the store cannot be read (the counters are in out all the same). */
int rk_metrics_render(rk_buf *out, rk_store *store);

/* Forgets every counter (unit tests). */
void rk_metrics_reset(void);

#endif /* RK_METRICS_H */
