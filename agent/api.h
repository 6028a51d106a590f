/*
 * api.h — the operator JSON API under /api/v1/, /metrics, /healthz and
 * /readyz, served by agent/httpd.c.
 *
 * The API works on the store through a connection of its own, opened
 * read-write like rekeyctl's; every decision goes through the review
 * module (review.h) with the token's name as the actor, and the engine
 * picks the change up by itself (data_version), as it does for rekeyctl.
 * The engine's own connection is never touched.
 *
 * Job definitions (needed to correct and approve) are loaded from the
 * configuration's job folder at the first decision; when a decision finds
 * its job not loaded, the folder is read again once (a job added later
 * and announced to rekeyd with SIGHUP).  A job changed in place is seen by
 * the API only after a restart.
 *
 * Ownership: rk_api_open returns an object the caller frees with
 * rk_api_close, after the server whose routes use it is closed.
 */
#ifndef RK_API_H
#define RK_API_H

#include <stddef.h>
#include "config.h"
#include "httpd.h"
#include "review.h"
#include "store.h"

typedef struct rk_api rk_api;

/* Opens the API's store connection.  cfg must outlive the object. */
int rk_api_open(const rk_config *cfg, rk_api **out, char *err, size_t errlen);
void rk_api_close(rk_api *a);

/* Adds the routes of the API, /metrics (public when [http] metrics_auth
 * is false), /healthz and /readyz (public) to h.  0 or -ENOMEM. */
int rk_api_mount(rk_api *a, rk_httpd *h);

/* For the dashboard: the API's store connection (loop thread only), and
 * a review context acting as actor with the loaded job definitions.
 * rk_api_review returns RK_E_CONFIG when the job folder cannot be read. */
rk_store *rk_api_store(rk_api *a);
int rk_api_review(rk_api *a, const char *actor, rk_review *out);

/* One decision about job id through the review module (review.h), as
 * actor: the API's endpoints and the dashboard's forms both come here.
 * kind is one of RK_DECIDE_*; s1/s2/flag are the action's arguments
 * (SET: field, value (NULL clears); REJECT: reason; REPLAY: flag =
 * new_key, *new_id gets the new job).  When the job's definition is not
 * loaded the job folder is read again and the decision tried once more.
 * A success is logged (ids and the actor, no values) and counted in the
 * metrics.  Returns the review module's code with its German sentence in
 * msg. */
enum { RK_DECIDE_SET, RK_DECIDE_APPROVE, RK_DECIDE_REJECT, RK_DECIDE_RETRY, RK_DECIDE_REPLAY };
int rk_api_decide(rk_api *a, int kind, const char *actor, int64_t id, const char *s1,
                  const char *s2, int flag, int64_t *new_id, char *msg, size_t msglen);

/* "2026-11-26", "2026-11-26T15:42[:01]" (local time; a trailing Z: UTC),
 * "26.11.2026 [15:42]", or an age like "7d" or "36h" (that long before
 * now_ms), into the store's ISO 8601 UTC form.  0 or RK_E_FORMAT. */
int rk_api_parse_time(const char *s, int64_t now_ms, char *iso, size_t isolen);

#endif /* RK_API_H */
