/*
 * dash.h — the review dashboard of rekeyd: German HTML pages for clerks
 * (Sachbearbeitung) and operators (Betrieb), served by agent/httpd.c
 * beside the JSON API.
 *
 *   GET  /anmelden, POST /anmelden     the login form: a bearer token of the
 *                                      token file; a session cookie on success
 *   POST /abmelden                     logout
 *   GET  /                             Übersicht: counts, overdue jobs first,
 *                                      sources, recent failures
 *   GET  /antraege?status=&verfahren=&quelle=&suche=&vor=&anzahl=
 *                                      Warteschlange, filtered and paged
 *   GET  /antraege/{id}                one Antrag: values with provenance,
 *                                      anomalies, the document, Verlauf
 *   GET  /protokoll?seit=&verfahren=&nach=
 *                                      the audit trail of all jobs, paged
 *   POST /antraege/{id}/korrigieren    feld, wert
 *   POST /antraege/{id}/freigeben
 *   POST /antraege/{id}/ablehnen       grund
 *   POST /antraege/{id}/wiederholen    (retry of a failed one)
 *   POST /antraege/{id}/neu-verarbeiten  neuer_schluessel (replay)
 *   GET  /static/dash.css, /static/dash.js   compiled into the binary
 *
 * Every page needs a session; without one it answers a redirect to
 * /anmelden and no data.  Every POST (but the login) carries the session's
 * CSRF token in the form field csrf, compared in constant time, and an
 * Origin or Referer, when sent, must name this host; otherwise 403.  A
 * decision is asked for twice: the first POST answers a confirmation page,
 * the second (bestaetigt=ja) decides through rk_api_decide, i.e. the same
 * review module as the API and rekeyctl, as the token's name.
 *
 * Ownership: rk_dash_new returns an object the caller frees with
 * rk_dash_free after the server whose routes use it is closed.
 */
#ifndef RK_DASH_H
#define RK_DASH_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "httpd.h"
#include "util.h"

typedef struct rk_dash rk_dash;

typedef struct rk_dash_options {
    int64_t session_idle_ms; /* 0 = 30 minutes */
    int cookie_secure;       /* add Secure to the session cookie */
    size_t max_document;     /* largest document shown; 0 = 2 MiB */
    size_t max_sessions;     /* 0 = 1000 */
} rk_dash_options;

/* Adds the dashboard's routes to h (and its session authentication and
 * login redirect).  api and h must outlive the object.  0 or -ENOMEM. */
int rk_dash_new(rk_api *api, rk_httpd *h, const rk_dash_options *o, rk_dash **out);
void rk_dash_free(rk_dash *d);

/* The one HTML escaping of the dashboard: appends text to b with & < > "
 * and ' as character references, so the result is safe in element content
 * and in quoted attribute values.  NULL appends nothing.  0 or RK_E_LIMIT. */
int rk_html_escape(rk_buf *b, const char *text);

/* The reason of an event (the Grund of the Verlauf and the Protokoll) in
 * German, escaped as rk_html_escape does, appended to b: the engine and the
 * review module store it in English, and the stored text stays as written
 * (rekeyctl events and the API show it).  Variable parts (ids, codes, file
 * names, counts, a connector's message) are kept; a text the dashboard
 * does not know is appended unchanged.  NULL appends nothing.  0 or
 * RK_E_LIMIT. */
int rk_dash_reason_german(rk_buf *b, const char *reason);

/* ---- sessions (in memory; loop thread only) ---- */

#define RK_SESSION_ID_LEN 64 /* hex of 32 random bytes */

typedef struct rk_session {
    char sid[RK_SESSION_ID_LEN + 1];
    char csrf[RK_SESSION_ID_LEN + 1];
    char name[72];           /* the token's name: who acts */
    char token_hash[65];     /* SHA-256 of the token logged in with: the session
                              * ends when the token leaves the token file */
    int64_t created_ms, last_ms;
    char flash[2048];        /* the outcome of the last decision, shown once */
    int flash_error;
} rk_session;

typedef struct rk_sessions rk_sessions;

rk_sessions *rk_sessions_new(size_t max, int64_t idle_ms);
void rk_sessions_free(rk_sessions *s);
/* A new session for name with random id and CSRF token (RAND_bytes).
 * When the table is full, expired sessions go first, then the one idle
 * longest.  Borrowed pointer (valid until the next call), or NULL when no
 * random bytes could be had. */
rk_session *rk_sessions_add(rk_sessions *s, const char *name, int64_t now_ms);
/* The live session with this id (compared in constant time with every
 * entry), touched at now_ms; NULL when unknown or idle longer than the
 * expiry (an expired one is removed).  Borrowed. */
rk_session *rk_sessions_get(rk_sessions *s, const char *sid, int64_t now_ms);
/* Ends the session with this id; 1 when there was one. */
int rk_sessions_remove(rk_sessions *s, const char *sid);
size_t rk_sessions_count(const rk_sessions *s);

/* 1 when the two NUL-terminated tokens are equal, compared in constant
 * time (CRYPTO_memcmp) when their lengths are equal. */
int rk_token_equal(const char *a, const char *b);

/* The compiled-in assets. */
extern const char rk_dash_css[];
extern const char rk_dash_js[];

#endif /* RK_DASH_H */
