/*
 * config.h — rekeyd's own settings (an INI file read with inih).
 *
 * Every key has a default; unknown sections and keys are errors naming
 * the line, so a typo never silently falls back to a default.  Relative
 * paths are taken relative to the folder of the configuration file.
 * docs/operations.md documents every key with an example.
 *
 * Ownership: rk_config_load fills a caller-provided struct whose strings
 * it owns; rk_config_free releases them.
 */
#ifndef RK_CONFIG_H
#define RK_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "inbox.h"
#include "job.h"

/* One [http_inbox NAME] section: a generic HTTP inbox polled by
 * agent/inbox_http.c.  docs/operations.md ("HTTP inbox") documents each
 * key.  Strings are owned by the rk_config; NULL when not set. */
enum { RK_HTTP_AUTH_NONE = 0, RK_HTTP_AUTH_BEARER, RK_HTTP_AUTH_OAUTH2 };
typedef struct rk_http_inbox_config {
    char *name;                 /* NAME: the source is "http:NAME" */
    char *list_url;             /* required: GET, answers JSON with the ids */
    char *list_items;           /* dotted path to the id array, default "submissions" */
    char *list_id;              /* member with the id in object items, default "id" */
    char *list_next;            /* dotted path to the next cursor or link, default "next" */
    char *cursor_param;         /* query parameter for a bare cursor, default "cursor" */
    char *fetch_url;            /* required: GET, "{id}" replaced */
    char *ack_url;              /* "{id}" replaced; NULL: no acknowledgement */
    char *ack_method;           /* POST (default), PUT or DELETE */
    int64_t poll_interval_ms;   /* default 30000 */
    int64_t poll_jitter_ms;     /* default 1000: up to this much is added */
    int max_inflight;           /* submissions in hand at once, default 4 */
    int64_t timeout_ms;         /* per request, default 60000 */
    int64_t connect_timeout_ms; /* default 10000 */
    size_t max_list_size;       /* lists, tokens, acks; default 1 MiB */
    int64_t backoff_initial_ms; /* default 1000 */
    int64_t backoff_max_ms;     /* default 300000 */
    int once_retries;           /* failed polls before --once gives up, default 5 */
    int auth;                   /* RK_HTTP_AUTH_*, default none */
    char *bearer_token;         /* secret */
    char *token_url;            /* OAuth2 client credentials */
    char *client_id;
    char *client_secret;        /* secret */
    char *scope;
    int token_auth_basic;       /* token_auth = basic (1, default) | body (0) */
    char *client_cert;          /* TLS client certificate (PEM) */
    char *client_key;
    char *client_key_password;  /* secret */
    char *ca_file;
} rk_http_inbox_config;

/* One [fitconnect NAME] section: a FIT-Connect destination received by
 * agent/inbox_fitconnect.c.  docs/fitconnect.md documents each key.
 * Strings are owned by the rk_config; NULL when not set. */
typedef struct rk_fitconnect_config {
    char *name;                 /* NAME: the source is "fitconnect:NAME" */
    char *api_url;              /* required: Submission API base URL (no trailing /) */
    char *token_url;            /* required: OAuth2 token endpoint */
    char *client_id;            /* required */
    char *client_secret;        /* required; secret */
    char *scope;
    int token_auth_basic;       /* token_auth = body (0, default) | basic (1) */
    char *destination_id;       /* required: the destination's UUID */
    char *decryption_key;       /* required: private RSA-OAEP-256 key file (JWK or PEM) */
    char *signing_key;          /* required: private PS512 key file (JWK or PEM) */
    char *signing_kid;          /* kid of the signing key; needed when the file has none */
    char *callback_secret;      /* secret; NULL: every callback is refused */
    char *ca_file;              /* PEM bundle to verify the servers; NULL: system */
    int64_t poll_interval_ms;   /* default 30000 */
    int64_t poll_jitter_ms;     /* default 1000 */
    int page_size;              /* limit per list page, default 100 (1..500) */
    int max_inflight;           /* submissions in hand at once, default 4 */
    int64_t timeout_ms;         /* per request, default 60000 */
    int64_t connect_timeout_ms; /* default 10000 */
    size_t max_list_size;       /* list pages, tokens, events; default 1 MiB */
    size_t max_submission_size; /* data and attachments decrypted, default 100 MiB */
    int max_attachments;        /* per submission, default 100 */
    int64_t backoff_initial_ms; /* default 1000 */
    int64_t backoff_max_ms;     /* default 300000 */
    int once_retries;           /* failed polls before --once gives up, default 5 */
} rk_fitconnect_config;

/* The [http] section: the operator HTTP server (agent/httpd.c, API and
 * metrics in agent/api.c).  Any key in the section turns the server on.
 * docs/operations.md ("Operator API and metrics") documents each key. */
#define RK_HTTP_DEFAULT_PORT 8650
typedef struct rk_http_config {
    int enabled;          /* the section has at least one key */
    char *listen;         /* as written, default "127.0.0.1:8650" */
    char *listen_host;    /* numeric IPv4 or IPv6 address, without brackets */
    int listen_port;      /* 0..65535; 0 = any free port (the log names it) */
    int listen_ipv6;
    char *token_file;     /* default <config folder>/tokens */
    size_t max_body;      /* request bodies, default 65536 */
    int metrics_auth;     /* /metrics needs a token, default 1 */
    int dashboard;        /* the review dashboard at / (agent/dash.c), default 1 */
    int64_t session_idle_ms; /* a dashboard session ends after this idle time, default 30 min */
    int cookie_secure;    /* the session cookie gets Secure, default 0 */
} rk_http_config;

typedef struct rk_config {
    char *path;           /* the file read */
    char *database;       /* [rekeyd] database, default rekey.db */
    char *jobs_dir;       /* [rekeyd] jobs, default jobs */
    char *plugin_path;    /* [rekeyd] plugin_path, default <exe>/../connectors */
    int workers;          /* [rekeyd] workers, default 4 */
    int log_level;        /* [rekeyd] log_level, default info */
    int log_format;       /* [rekeyd] log_format = plain|json (RK_LOG_FMT_*), default plain */
    int sync_normal;      /* [rekeyd] sync = full|normal, default full */
    int busy_timeout_ms;  /* [rekeyd] busy_timeout_ms, default 10000 */
    size_t max_document;  /* [rekeyd] max_document_size, default 50 MiB */
    size_t commit_max_items; /* [rekeyd] commit_max_items, default 512 */
    uint64_t commit_max_ms;  /* [rekeyd] commit_max_ms, default 5 */
    size_t claim_ahead;   /* [inbox] claim_ahead: files taken ahead of processing, 1024 */
    size_t deliver_batch; /* [delivery] batch: records per deliver_batch call, 256 */

    char *inbox_path;     /* [inbox] path (required) */
    char *archive_dir;    /* [inbox] archive, default archive; "" = delete */
    char *error_dir;      /* [inbox] error, default error */
    rk_inbox_config inbox; /* points into the strings above */

    int max_attempts;     /* [delivery] max_attempts, default 5 */
    int64_t backoff_initial_ms; /* [delivery] backoff_initial_ms, default 1000 */
    int64_t backoff_max_ms;     /* [delivery] backoff_max_ms, default 300000 */

    rk_vars vars;         /* [vars] name = value */

    rk_http_inbox_config *http_inboxes; /* [http_inbox NAME] sections */
    size_t n_http_inboxes;

    rk_fitconnect_config *fitconnects; /* [fitconnect NAME] sections */
    size_t n_fitconnects;

    rk_http_config http;  /* [http] */
} rk_config;

/* Reads path.  On failure returns non-zero with "FILE:LINE: reason" in err. */
int rk_config_load(const char *path, rk_config *cfg, char *err, size_t errlen);
void rk_config_free(rk_config *cfg);

#endif /* RK_CONFIG_H */
