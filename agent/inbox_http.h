/*
 * inbox_http.h — the generic HTTP inbox: a networked source that polls a
 * list endpoint for submission ids, fetches each new one, hands it to the
 * engine (rk_engine_submit, source "http:NAME", source_ref the id) and
 * acknowledges it upstream only after the engine reported it durable.
 * Settings: [http_inbox NAME] (config.h, docs/operations.md).
 *
 * Ownership: the source keeps pointers to the engine, the curl context and
 * its settings, which must outlive it; it frees itself after
 * rk_http_inbox_stop once its timer closed, then calls done.  The curl
 * context is shared with other sources and closed by the caller after the
 * source stopped.
 */
#ifndef RK_INBOX_HTTP_H
#define RK_INBOX_HTTP_H

#include <stddef.h>

#include "config.h"
#include "curl_uv.h"
#include "engine.h"

typedef struct rk_http_inbox rk_http_inbox;

/* Starts polling at once.  0, or a negative error with a reason in err. */
int rk_http_inbox_start(rk_engine *e, rk_curl *curl, const rk_http_inbox_config *cfg,
                        rk_http_inbox **out, char *err, size_t errlen);

/* 1 when --once may end: nothing in flight and the last poll found
 * nothing new, failed for a reason a retry will not fix (credentials,
 * 4xx, a malformed list), or failed more than once_retries times. */
int rk_http_inbox_idle(const rk_http_inbox *s);

/* Cancels every request in flight, closes the timer, frees the source and
 * then calls done(arg).  Submissions fetched but not yet acknowledged are
 * fetched again on the next start (the engine stores them once). */
void rk_http_inbox_stop(rk_http_inbox *s, void (*done)(void *arg), void *arg);

/* The engine's view (rk_engine_add_source). */
extern const rk_source_ops rk_http_inbox_ops;

#endif /* RK_INBOX_HTTP_H */
