/*
 * config.c — see config.h.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "review.h"
#include "util.h"

typedef struct parse_state {
    rk_config *cfg;
    char *dir;         /* folder of the config file */
    char err[512];
    int err_line;
    int line;
} parse_state;

/* A path from the file: absolute as is, else relative to the file. */
static char *cfg_path(const parse_state *ps, const char *v)
{
    if (!*v || v[0] == '/')
        return strdup(v);
    size_t n = strlen(ps->dir) + strlen(v) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", ps->dir, v);
    return p;
}

static void set_str(char **dst, char *v)
{
    free(*dst);
    *dst = v;
}

static int set_int(parse_state *ps, const char *key, const char *v, int64_t lo, int64_t hi,
                   int64_t *out)
{
    int64_t n;
    if (rk_parse_int64(v, &n) || n < lo || n > hi) {
        snprintf(ps->err, sizeof ps->err, "%s must be a whole number from %lld to %lld, not '%s'",
                 key, (long long)lo, (long long)hi, v);
        return 0;
    }
    *out = n;
    return 1;
}

/* ---- [http_inbox NAME] ------------------------------------------------ */

#define HTTP_PREFIX "http_inbox"

/* The source named in a section header, created with its defaults on
 * first sight; NULL with ps->err set when the name is not usable. */
static rk_http_inbox_config *http_inbox_for(parse_state *ps, const char *section)
{
    rk_config *c = ps->cfg;
    const char *nm = section + strlen(HTTP_PREFIX);
    while (*nm == ' ' || *nm == '\t')
        nm++;
    size_t len = strlen(nm);
    while (len && (nm[len - 1] == ' ' || nm[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 40) {
        snprintf(ps->err, sizeof ps->err,
                 "section [%s] needs a name of 1 to 40 characters: [http_inbox NAME]", section);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = nm[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.')) {
            snprintf(ps->err, sizeof ps->err,
                     "the name in section [%s] may use letters, digits, '_', '-' and '.' only",
                     section);
            return NULL;
        }
    }
    for (size_t i = 0; i < c->n_http_inboxes; i++)
        if (strlen(c->http_inboxes[i].name) == len &&
            strncmp(c->http_inboxes[i].name, nm, len) == 0)
            return &c->http_inboxes[i];
    rk_http_inbox_config *arr =
        realloc(c->http_inboxes, (c->n_http_inboxes + 1) * sizeof *arr);
    if (!arr) {
        snprintf(ps->err, sizeof ps->err, "out of memory");
        return NULL;
    }
    c->http_inboxes = arr;
    rk_http_inbox_config *h = &arr[c->n_http_inboxes++];
    memset(h, 0, sizeof *h);
    h->name = rk_strndup(nm, len);
    h->list_items = strdup("submissions");
    h->list_id = strdup("id");
    h->list_next = strdup("next");
    h->cursor_param = strdup("cursor");
    h->ack_method = strdup("POST");
    h->poll_interval_ms = 30000;
    h->poll_jitter_ms = 1000;
    h->max_inflight = 4;
    h->timeout_ms = 60000;
    h->connect_timeout_ms = 10000;
    h->max_list_size = 1u << 20;
    h->backoff_initial_ms = 1000;
    h->backoff_max_ms = 300000;
    h->once_retries = 5;
    h->token_auth_basic = 1;
    return h;
}

static int is_http_url(const char *v)
{
    return strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0;
}

/* A secret or URL must not smuggle a line break into a request. */
static int has_ctl(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return 1;
    return 0;
}

/* A secret read from a file: one line, trailing whitespace dropped. */
static char *read_secret(parse_state *ps, const char *key, const char *value)
{
    char *path = cfg_path(ps, value);
    char *data = NULL;
    size_t len = 0;
    int rc = path ? rk_read_file(path, 65536, &data, &len) : -ENOMEM;
    if (rc) {
        snprintf(ps->err, sizeof ps->err, "%s: cannot read %s: %s", key, path ? path : value,
                 rk_strerror(rc));
        free(path);
        return NULL;
    }
    free(path);
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ' ||
                   data[len - 1] == '\t'))
        data[--len] = '\0';
    if (!len || has_ctl(data)) {
        snprintf(ps->err, sizeof ps->err, "%s: the file must hold one non-empty line", key);
        free(data);
        return NULL;
    }
    return data;
}

static int http_inbox_key(parse_state *ps, const char *section, const char *name,
                          const char *value)
{
    rk_http_inbox_config *h = http_inbox_for(ps, section);
    int64_t n;
    if (!h)
        return 0;
#define KEY(k) (strcmp(name, k) == 0)
    if (KEY("list_url") || KEY("fetch_url") || KEY("ack_url") || KEY("token_url")) {
        if (!is_http_url(value) || has_ctl(value)) {
            snprintf(ps->err, sizeof ps->err, "%s must be an http:// or https:// URL", name);
            return 0;
        }
        if ((KEY("fetch_url") || KEY("ack_url")) && !strstr(value, "{id}")) {
            snprintf(ps->err, sizeof ps->err,
                     "%s must contain {id} (replaced by the submission id)", name);
            return 0;
        }
        char **dst = KEY("list_url") ? &h->list_url : KEY("fetch_url") ? &h->fetch_url
                     : KEY("ack_url") ? &h->ack_url : &h->token_url;
        set_str(dst, strdup(value));
    } else if (KEY("list_items") || KEY("list_next")) {
        set_str(KEY("list_items") ? &h->list_items : &h->list_next, strdup(value));
    } else if (KEY("list_id") || KEY("cursor_param")) {
        if (!*value) {
            snprintf(ps->err, sizeof ps->err, "%s must not be empty", name);
            return 0;
        }
        set_str(KEY("list_id") ? &h->list_id : &h->cursor_param, strdup(value));
    } else if (KEY("ack_method")) {
        if (strcmp(value, "POST") && strcmp(value, "PUT") && strcmp(value, "DELETE")) {
            snprintf(ps->err, sizeof ps->err, "ack_method must be POST, PUT or DELETE, not '%s'",
                     value);
            return 0;
        }
        set_str(&h->ack_method, strdup(value));
    } else if (KEY("poll_interval_ms")) {
        if (!set_int(ps, name, value, 100, 86400000, &h->poll_interval_ms))
            return 0;
    } else if (KEY("poll_jitter_ms")) {
        if (!set_int(ps, name, value, 0, 3600000, &h->poll_jitter_ms))
            return 0;
    } else if (KEY("max_inflight")) {
        if (!set_int(ps, name, value, 1, 64, &n))
            return 0;
        h->max_inflight = (int)n;
    } else if (KEY("timeout_ms")) {
        if (!set_int(ps, name, value, 100, 3600000, &h->timeout_ms))
            return 0;
    } else if (KEY("connect_timeout_ms")) {
        if (!set_int(ps, name, value, 100, 600000, &h->connect_timeout_ms))
            return 0;
    } else if (KEY("max_list_size")) {
        if (!set_int(ps, name, value, 1024, INT32_MAX, &n))
            return 0;
        h->max_list_size = (size_t)n;
    } else if (KEY("backoff_initial_ms")) {
        if (!set_int(ps, name, value, 10, 86400000, &h->backoff_initial_ms))
            return 0;
    } else if (KEY("backoff_max_ms")) {
        if (!set_int(ps, name, value, 10, 86400000, &h->backoff_max_ms))
            return 0;
    } else if (KEY("once_retries")) {
        if (!set_int(ps, name, value, 0, 1000, &n))
            return 0;
        h->once_retries = (int)n;
    } else if (KEY("auth")) {
        if (strcmp(value, "none") == 0)
            h->auth = RK_HTTP_AUTH_NONE;
        else if (strcmp(value, "bearer") == 0)
            h->auth = RK_HTTP_AUTH_BEARER;
        else if (strcmp(value, "oauth2") == 0)
            h->auth = RK_HTTP_AUTH_OAUTH2;
        else {
            snprintf(ps->err, sizeof ps->err, "auth must be none, bearer or oauth2, not '%s'",
                     value);
            return 0;
        }
    } else if (KEY("bearer_token") || KEY("client_secret") || KEY("client_id") ||
               KEY("client_key_password") || KEY("scope")) {
        char **dst = KEY("bearer_token") ? &h->bearer_token
                     : KEY("client_secret") ? &h->client_secret
                     : KEY("client_id") ? &h->client_id
                     : KEY("scope") ? &h->scope : &h->client_key_password;
        if (!*value || has_ctl(value)) {
            /* the value itself is never echoed: it may be a secret */
            snprintf(ps->err, sizeof ps->err, "%s must be one non-empty line", name);
            return 0;
        }
        set_str(dst, strdup(value));
    } else if (KEY("bearer_token_file") || KEY("client_secret_file")) {
        char *secret = read_secret(ps, name, value);
        if (!secret)
            return 0;
        set_str(KEY("bearer_token_file") ? &h->bearer_token : &h->client_secret, secret);
    } else if (KEY("token_auth")) {
        if (strcmp(value, "basic") && strcmp(value, "body")) {
            snprintf(ps->err, sizeof ps->err, "token_auth must be basic or body, not '%s'",
                     value);
            return 0;
        }
        h->token_auth_basic = strcmp(value, "basic") == 0;
    } else if (KEY("client_cert") || KEY("client_key") || KEY("ca_file")) {
        char **dst = KEY("client_cert") ? &h->client_cert
                     : KEY("client_key") ? &h->client_key : &h->ca_file;
        set_str(dst, *value ? cfg_path(ps, value) : NULL);
    } else {
        snprintf(ps->err, sizeof ps->err, "unknown setting '%s' in section [%s]", name,
                 section);
        return 0;
    }
#undef KEY
    return 1;
}

/* Checks what one key alone cannot: required keys and the auth set. */
static int http_inbox_check(const rk_http_inbox_config *h, char *err, size_t errlen)
{
    const char *missing = !h->list_url ? "list_url (the URL that lists submission ids)"
                          : !h->fetch_url ? "fetch_url (the URL of one submission, with {id})"
                          : NULL;
    if (!missing && h->auth == RK_HTTP_AUTH_BEARER && !h->bearer_token)
        missing = "bearer_token or bearer_token_file (auth = bearer)";
    if (!missing && h->auth == RK_HTTP_AUTH_OAUTH2)
        missing = !h->token_url ? "token_url (auth = oauth2)"
                  : !h->client_id ? "client_id (auth = oauth2)"
                  : !h->client_secret ? "client_secret or client_secret_file (auth = oauth2)"
                  : NULL;
    if (!missing && h->client_key && !h->client_cert)
        missing = "client_cert (client_key is set)";
    if (missing) {
        snprintf(err, errlen, "[http_inbox %s] %s is required", h->name, missing);
        return RK_E_CONFIG;
    }
    if (h->backoff_max_ms < h->backoff_initial_ms) {
        snprintf(err, errlen, "[http_inbox %s] backoff_max_ms is less than backoff_initial_ms",
                 h->name);
        return RK_E_CONFIG;
    }
    return 0;
}

static void http_inbox_free(rk_http_inbox_config *h)
{
    free(h->name);
    free(h->list_url);
    free(h->list_items);
    free(h->list_id);
    free(h->list_next);
    free(h->cursor_param);
    free(h->fetch_url);
    free(h->ack_url);
    free(h->ack_method);
    free(h->bearer_token);
    free(h->token_url);
    free(h->client_id);
    free(h->client_secret);
    free(h->scope);
    free(h->client_cert);
    free(h->client_key);
    free(h->client_key_password);
    free(h->ca_file);
}

/* ---- [fitconnect NAME] ------------------------------------------------ */

#define FC_PREFIX "fitconnect"

/* The destination named in a section header, created with its defaults
 * on first sight; NULL with ps->err set when the name is not usable. */
static rk_fitconnect_config *fitconnect_for(parse_state *ps, const char *section)
{
    rk_config *c = ps->cfg;
    const char *nm = section + strlen(FC_PREFIX);
    while (*nm == ' ' || *nm == '\t')
        nm++;
    size_t len = strlen(nm);
    while (len && (nm[len - 1] == ' ' || nm[len - 1] == '\t'))
        len--;
    int ok = len > 0 && len <= 40;
    for (size_t i = 0; ok && i < len; i++) {
        char ch = nm[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '-' || ch == '.';
    }
    if (!ok) {
        snprintf(ps->err, sizeof ps->err,
                 "section [%s] needs a name of 1 to 40 letters, digits, '_', '-' or '.': "
                 "[fitconnect NAME]", section);
        return NULL;
    }
    for (size_t i = 0; i < c->n_fitconnects; i++)
        if (strlen(c->fitconnects[i].name) == len &&
            strncmp(c->fitconnects[i].name, nm, len) == 0)
            return &c->fitconnects[i];
    rk_fitconnect_config *arr = realloc(c->fitconnects, (c->n_fitconnects + 1) * sizeof *arr);
    if (!arr) {
        snprintf(ps->err, sizeof ps->err, "out of memory");
        return NULL;
    }
    c->fitconnects = arr;
    rk_fitconnect_config *f = &arr[c->n_fitconnects++];
    memset(f, 0, sizeof *f);
    f->name = rk_strndup(nm, len);
    f->poll_interval_ms = 30000;
    f->poll_jitter_ms = 1000;
    f->page_size = 100;
    f->max_inflight = 4;
    f->timeout_ms = 60000;
    f->connect_timeout_ms = 10000;
    f->max_list_size = 1u << 20;
    f->max_submission_size = 100u << 20;
    f->max_attachments = 100;
    f->backoff_initial_ms = 1000;
    f->backoff_max_ms = 300000;
    f->once_retries = 5;
    return f;
}

/* 8-4-4-4-12 hex digits, as FIT-Connect writes every id. */
static int is_uuid(const char *v)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        char ch = v[i];
        if (shape[i] == '-' ? ch != '-'
                            : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                                (ch >= 'A' && ch <= 'F')))
            return 0;
    }
    return v[sizeof shape - 1] == '\0';
}

static int fitconnect_key(parse_state *ps, const char *section, const char *name,
                          const char *value)
{
    rk_fitconnect_config *f = fitconnect_for(ps, section);
    int64_t n;
    if (!f)
        return 0;
#define KEY(k) (strcmp(name, k) == 0)
    if (KEY("api_url") || KEY("token_url")) {
        if (!is_http_url(value) || has_ctl(value) || strchr(value, '?')) {
            snprintf(ps->err, sizeof ps->err,
                     "%s must be an http:// or https:// URL without a query", name);
            return 0;
        }
        char *v = strdup(value);
        size_t len = v ? strlen(v) : 0;
        while (KEY("api_url") && len > 8 && v[len - 1] == '/')
            v[--len] = '\0'; /* paths are appended as /v1/... */
        set_str(KEY("api_url") ? &f->api_url : &f->token_url, v);
    } else if (KEY("destination_id")) {
        if (!is_uuid(value)) {
            snprintf(ps->err, sizeof ps->err, "destination_id must be a UUID, not '%s'", value);
            return 0;
        }
        set_str(&f->destination_id, strdup(value));
    } else if (KEY("client_id") || KEY("client_secret") || KEY("scope") ||
               KEY("signing_kid") || KEY("callback_secret")) {
        char **dst = KEY("client_id") ? &f->client_id
                     : KEY("client_secret") ? &f->client_secret
                     : KEY("scope") ? &f->scope
                     : KEY("signing_kid") ? &f->signing_kid : &f->callback_secret;
        if (!*value || has_ctl(value)) {
            /* the value itself is never echoed: it may be a secret */
            snprintf(ps->err, sizeof ps->err, "%s must be one non-empty line", name);
            return 0;
        }
        set_str(dst, strdup(value));
    } else if (KEY("client_secret_file") || KEY("callback_secret_file")) {
        char *secret = read_secret(ps, name, value);
        if (!secret)
            return 0;
        set_str(KEY("client_secret_file") ? &f->client_secret : &f->callback_secret, secret);
    } else if (KEY("decryption_key") || KEY("signing_key") || KEY("ca_file")) {
        if (!*value) {
            snprintf(ps->err, sizeof ps->err, "%s must name a file", name);
            return 0;
        }
        char **dst = KEY("decryption_key") ? &f->decryption_key
                     : KEY("signing_key") ? &f->signing_key : &f->ca_file;
        set_str(dst, cfg_path(ps, value));
    } else if (KEY("token_auth")) {
        if (strcmp(value, "basic") && strcmp(value, "body")) {
            snprintf(ps->err, sizeof ps->err, "token_auth must be body or basic, not '%s'",
                     value);
            return 0;
        }
        f->token_auth_basic = strcmp(value, "basic") == 0;
    } else if (KEY("poll_interval_ms")) {
        if (!set_int(ps, name, value, 100, 86400000, &f->poll_interval_ms))
            return 0;
    } else if (KEY("poll_jitter_ms")) {
        if (!set_int(ps, name, value, 0, 3600000, &f->poll_jitter_ms))
            return 0;
    } else if (KEY("page_size")) {
        if (!set_int(ps, name, value, 1, 500, &n))
            return 0;
        f->page_size = (int)n;
    } else if (KEY("max_inflight")) {
        if (!set_int(ps, name, value, 1, 64, &n))
            return 0;
        f->max_inflight = (int)n;
    } else if (KEY("timeout_ms")) {
        if (!set_int(ps, name, value, 100, 3600000, &f->timeout_ms))
            return 0;
    } else if (KEY("connect_timeout_ms")) {
        if (!set_int(ps, name, value, 100, 600000, &f->connect_timeout_ms))
            return 0;
    } else if (KEY("max_list_size")) {
        if (!set_int(ps, name, value, 1024, INT32_MAX, &n))
            return 0;
        f->max_list_size = (size_t)n;
    } else if (KEY("max_submission_size")) {
        if (!set_int(ps, name, value, 1024, INT32_MAX, &n))
            return 0;
        f->max_submission_size = (size_t)n;
    } else if (KEY("max_attachments")) {
        if (!set_int(ps, name, value, 0, 1000, &n))
            return 0;
        f->max_attachments = (int)n;
    } else if (KEY("backoff_initial_ms")) {
        if (!set_int(ps, name, value, 10, 86400000, &f->backoff_initial_ms))
            return 0;
    } else if (KEY("backoff_max_ms")) {
        if (!set_int(ps, name, value, 10, 86400000, &f->backoff_max_ms))
            return 0;
    } else if (KEY("once_retries")) {
        if (!set_int(ps, name, value, 0, 1000, &n))
            return 0;
        f->once_retries = (int)n;
    } else {
        snprintf(ps->err, sizeof ps->err, "unknown setting '%s' in section [%s]", name,
                 section);
        return 0;
    }
#undef KEY
    return 1;
}

/* Checks what one key alone cannot: the required keys. */
static int fitconnect_check(const rk_fitconnect_config *f, char *err, size_t errlen)
{
    const char *missing =
        !f->api_url          ? "api_url (the Submission API, e.g. "
                               "https://submission-api-testing.fit-connect.fitko.dev)"
        : !f->token_url      ? "token_url (the OAuth2 token endpoint)"
        : !f->client_id      ? "client_id"
        : !f->client_secret  ? "client_secret or client_secret_file"
        : !f->destination_id ? "destination_id (the UUID of the destination)"
        : !f->decryption_key ? "decryption_key (the private encryption key, JWK or PEM)"
        : !f->signing_key    ? "signing_key (the private signature key, JWK or PEM)"
                             : NULL;
    if (missing) {
        snprintf(err, errlen, "[fitconnect %s] %s is required", f->name, missing);
        return RK_E_CONFIG;
    }
    if (f->backoff_max_ms < f->backoff_initial_ms) {
        snprintf(err, errlen, "[fitconnect %s] backoff_max_ms is less than backoff_initial_ms",
                 f->name);
        return RK_E_CONFIG;
    }
    return 0;
}

/* Frees one section; secrets are wiped first. */
static void fitconnect_free(rk_fitconnect_config *f)
{
    char *secrets[] = {f->client_secret, f->callback_secret};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (secrets[i])
            explicit_bzero(secrets[i], strlen(secrets[i]));
    free(f->name);
    free(f->api_url);
    free(f->token_url);
    free(f->client_id);
    free(f->client_secret);
    free(f->scope);
    free(f->destination_id);
    free(f->decryption_key);
    free(f->signing_key);
    free(f->signing_kid);
    free(f->callback_secret);
    free(f->ca_file);
}

/* ---- [http] ------------------------------------------------------------ */

/* "ADDRESS:PORT" with a numeric IPv4 address or a bracketed IPv6 one
 * ("[::1]:8650"); a host name is refused, so starting never waits for a
 * resolver.  Fills host, port and ipv6; 0, or 0 with ps->err set. */
static int parse_listen(parse_state *ps, const char *v, rk_http_config *h)
{
    const char *host = v, *colon;
    size_t hlen;
    int ipv6 = 0;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':')
            goto bad;
        host = v + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
        ipv6 = 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon || strchr(v, ':') != colon)
            goto bad;
        hlen = (size_t)(colon - v);
    }
    char addr[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    if (hlen == 0 || hlen >= sizeof addr)
        goto bad;
    memcpy(addr, host, hlen);
    addr[hlen] = '\0';
    if (inet_pton(ipv6 ? AF_INET6 : AF_INET, addr, bin) != 1)
        goto bad;
    int64_t port;
    if (rk_parse_int64(colon + 1, &port) || port < 0 || port > 65535)
        goto bad;
    set_str(&h->listen, strdup(v));
    set_str(&h->listen_host, strdup(addr));
    h->listen_port = (int)port;
    h->listen_ipv6 = ipv6;
    return 1;
bad:
    snprintf(ps->err, sizeof ps->err,
             "listen must be ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:%d or "
             "[::1]:%d, not '%s'",
             RK_HTTP_DEFAULT_PORT, RK_HTTP_DEFAULT_PORT, v);
    return 0;
}

static int http_key(parse_state *ps, const char *name, const char *value)
{
    rk_http_config *h = &ps->cfg->http;
    int64_t n;
    h->enabled = 1;
    if (strcmp(name, "listen") == 0)
        return parse_listen(ps, value, h);
    if (strcmp(name, "token_file") == 0) {
        if (!*value) {
            snprintf(ps->err, sizeof ps->err, "token_file must name a file");
            return 0;
        }
        set_str(&h->token_file, cfg_path(ps, value));
        return 1;
    }
    if (strcmp(name, "max_body") == 0) {
        if (!set_int(ps, name, value, 1024, 16 << 20, &n))
            return 0;
        h->max_body = (size_t)n;
        return 1;
    }
    if (strcmp(name, "metrics_auth") == 0) {
        int b = rk_parse_bool(value);
        if (b < 0) {
            snprintf(ps->err, sizeof ps->err, "metrics_auth must be true or false, not '%s'",
                     value);
            return 0;
        }
        h->metrics_auth = b;
        return 1;
    }
    if (strcmp(name, "dashboard") == 0 || strcmp(name, "cookie_secure") == 0) {
        int b = rk_parse_bool(value);
        if (b < 0) {
            snprintf(ps->err, sizeof ps->err, "%s must be true or false, not '%s'", name,
                     value);
            return 0;
        }
        *(name[0] == 'd' ? &h->dashboard : &h->cookie_secure) = b;
        return 1;
    }
    if (strcmp(name, "session_idle") == 0) {
        int64_t ms;
        if (rk_duration_parse(value, &ms) != 0 || ms < 1000 || ms > 7 * 86400000LL) {
            snprintf(ps->err, sizeof ps->err,
                     "session_idle must be a duration from 1s to 7d, e.g. 30m or 8h, not '%s'",
                     value);
            return 0;
        }
        h->session_idle_ms = ms;
        return 1;
    }
    snprintf(ps->err, sizeof ps->err, "unknown setting '%s' in section [http]", name);
    return 0;
}

#define MATCH(s, k) (strcmp(section, s) == 0 && strcmp(name, k) == 0)

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse_state *ps = user;
    rk_config *c = ps->cfg;
    int64_t n;
    if (ps->err[0])
        return 0;
    if (strcmp(section, "vars") == 0) {
        size_t k = c->vars.n;
        const char **names = realloc((void *)c->vars.names, (k + 1) * sizeof *names);
        const char **values = names ? realloc((void *)c->vars.values, (k + 1) * sizeof *values)
                                    : NULL;
        if (names)
            c->vars.names = names;
        if (!names || !values)
            return 0;
        c->vars.values = values;
        names[k] = strdup(name);
        values[k] = strdup(value);
        c->vars.n++;
        return 1;
    }
    if (strncmp(section, HTTP_PREFIX, strlen(HTTP_PREFIX)) == 0 &&
        (section[strlen(HTTP_PREFIX)] == '\0' || section[strlen(HTTP_PREFIX)] == ' ' ||
         section[strlen(HTTP_PREFIX)] == '\t'))
        return http_inbox_key(ps, section, name, value);
    if (strncmp(section, FC_PREFIX, strlen(FC_PREFIX)) == 0 &&
        (section[strlen(FC_PREFIX)] == '\0' || section[strlen(FC_PREFIX)] == ' ' ||
         section[strlen(FC_PREFIX)] == '\t'))
        return fitconnect_key(ps, section, name, value);
    if (strcmp(section, "http") == 0)
        return http_key(ps, name, value);
    if (MATCH("rekeyd", "database"))
        set_str(&c->database, cfg_path(ps, value));
    else if (MATCH("rekeyd", "jobs"))
        set_str(&c->jobs_dir, cfg_path(ps, value));
    else if (MATCH("rekeyd", "plugin_path")) {
        /* each folder of the colon-separated list is relative to the file */
        rk_buf b;
        rk_buf_init(&b, 65536);
        const char *p = value;
        for (;;) {
            const char *colon = strchr(p, ':');
            size_t len = colon ? (size_t)(colon - p) : strlen(p);
            char *part = rk_strndup(p, len);
            char *abs = part ? cfg_path(ps, part) : NULL;
            if (abs && *abs)
                rk_buf_appendf(&b, "%s%s", b.len ? ":" : "", abs);
            free(part);
            free(abs);
            if (!colon)
                break;
            p = colon + 1;
        }
        set_str(&c->plugin_path, rk_buf_take(&b));
    }
    else if (MATCH("rekeyd", "workers")) {
        if (!set_int(ps, "workers", value, 1, 64, &n))
            return 0;
        c->workers = (int)n;
    } else if (MATCH("rekeyd", "log_level")) {
        c->log_level = rk_log_level_parse(value);
        if (c->log_level < 0) {
            snprintf(ps->err, sizeof ps->err,
                     "log_level must be error, warn, info or debug, not '%s'", value);
            return 0;
        }
    } else if (MATCH("rekeyd", "log_format")) {
        c->log_format = rk_log_format_parse(value);
        if (c->log_format < 0) {
            snprintf(ps->err, sizeof ps->err, "log_format must be plain or json, not '%s'",
                     value);
            return 0;
        }
    } else if (MATCH("rekeyd", "sync")) {
        if (strcmp(value, "full") && strcmp(value, "normal")) {
            snprintf(ps->err, sizeof ps->err, "sync must be full or normal, not '%s'", value);
            return 0;
        }
        c->sync_normal = strcmp(value, "normal") == 0;
    } else if (MATCH("rekeyd", "busy_timeout_ms")) {
        if (!set_int(ps, "busy_timeout_ms", value, 100, 600000, &n))
            return 0;
        c->busy_timeout_ms = (int)n;
    } else if (MATCH("rekeyd", "max_document_size")) {
        if (!set_int(ps, "max_document_size", value, 1024, INT32_MAX, &n))
            return 0;
        c->max_document = (size_t)n;
    } else if (MATCH("rekeyd", "commit_max_items")) {
        if (!set_int(ps, "commit_max_items", value, 1, 100000, &n))
            return 0;
        c->commit_max_items = (size_t)n;
    } else if (MATCH("rekeyd", "commit_max_ms")) {
        if (!set_int(ps, "commit_max_ms", value, 0, 10000, &n))
            return 0;
        c->commit_max_ms = (uint64_t)n;
    } else if (MATCH("inbox", "claim_ahead")) {
        if (!set_int(ps, "claim_ahead", value, 1, 1000000, &n))
            return 0;
        c->claim_ahead = (size_t)n;
    } else if (MATCH("delivery", "batch")) {
        if (!set_int(ps, "batch", value, 1, 10000, &n))
            return 0;
        c->deliver_batch = (size_t)n;
    } else if (MATCH("inbox", "path"))
        set_str(&c->inbox_path, cfg_path(ps, value));
    else if (MATCH("inbox", "archive"))
        set_str(&c->archive_dir, cfg_path(ps, value));
    else if (MATCH("inbox", "error"))
        set_str(&c->error_dir, cfg_path(ps, value));
    else if (MATCH("inbox", "settle_ms")) {
        if (!set_int(ps, "settle_ms", value, 0, 3600000, &n))
            return 0;
        c->inbox.settle_ms = (unsigned)n;
    } else if (MATCH("inbox", "rescan_ms")) {
        if (!set_int(ps, "rescan_ms", value, 10, 3600000, &n))
            return 0;
        c->inbox.rescan_ms = (unsigned)n;
    } else if (MATCH("inbox", "max_file_size")) {
        if (!set_int(ps, "max_file_size", value, 1, INT32_MAX, &n))
            return 0;
        c->inbox.max_file_size = (size_t)n;
    } else if (MATCH("inbox", "max_decompressed_size")) {
        if (!set_int(ps, "max_decompressed_size", value, 1, INT32_MAX, &n))
            return 0;
        c->inbox.max_decompressed = (size_t)n;
    } else if (MATCH("inbox", "max_ratio")) {
        if (!set_int(ps, "max_ratio", value, 1, 100000, &n))
            return 0;
        c->inbox.max_ratio = (unsigned)n;
    } else if (MATCH("delivery", "max_attempts")) {
        if (!set_int(ps, "max_attempts", value, 1, 1000, &n))
            return 0;
        c->max_attempts = (int)n;
    } else if (MATCH("delivery", "backoff_initial_ms")) {
        if (!set_int(ps, "backoff_initial_ms", value, 0, 86400000, &c->backoff_initial_ms))
            return 0;
    } else if (MATCH("delivery", "backoff_max_ms")) {
        if (!set_int(ps, "backoff_max_ms", value, 0, 7 * 86400000LL, &c->backoff_max_ms))
            return 0;
    } else {
        snprintf(ps->err, sizeof ps->err, "unknown setting '%s' in section [%s]", name,
                 section);
        return 0;
    }
    return 1;
}

int rk_config_load(const char *path, rk_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    parse_state ps;
    memset(&ps, 0, sizeof ps);
    ps.cfg = c;
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        snprintf(err, errlen, "cannot read configuration %s: %s", path, strerror(errno));
        return -errno;
    }
    c->path = strdup(abs);
    ps.dir = strdup(abs);
    char *slash = strrchr(ps.dir, '/');
    if (slash)
        *(slash == ps.dir ? slash + 1 : slash) = '\0';

    c->database = cfg_path(&ps, "rekey.db");
    c->jobs_dir = cfg_path(&ps, "jobs");
    c->archive_dir = cfg_path(&ps, "archive");
    c->error_dir = cfg_path(&ps, "error");
    c->workers = 4;
    c->busy_timeout_ms = 10000;
    c->log_level = RK_LOG_LVL_INFO;
    c->max_document = 50u << 20;
    c->inbox.settle_ms = 500;
    c->inbox.rescan_ms = 2000;
    c->inbox.max_file_size = 10u << 20;
    c->inbox.max_decompressed = 50u << 20;
    c->inbox.max_ratio = 100;
    c->max_attempts = 5;
    c->commit_max_items = 512;
    c->commit_max_ms = 5;
    c->claim_ahead = 1024;
    c->deliver_batch = 256;
    c->backoff_initial_ms = 1000;
    c->backoff_max_ms = 300000;
    c->http.token_file = cfg_path(&ps, "tokens");
    c->http.max_body = 65536;
    c->http.metrics_auth = 1;
    c->http.dashboard = 1;
    c->http.session_idle_ms = 30 * 60000;
    c->http.listen_port = RK_HTTP_DEFAULT_PORT;
    c->http.listen_host = strdup("127.0.0.1");
    {
        char def[32];
        snprintf(def, sizeof def, "127.0.0.1:%d", RK_HTTP_DEFAULT_PORT);
        c->http.listen = strdup(def);
    }

    int line = ini_parse(abs, handler, &ps);
    free(ps.dir);
    if (line < 0) {
        snprintf(err, errlen, "cannot read configuration %s", abs);
        rk_config_free(c);
        return -EIO;
    }
    if (line > 0 || ps.err[0]) {
        snprintf(err, errlen, "%s:%d: %s", abs, line,
                 ps.err[0] ? ps.err : "syntax error (expected [section] or key = value)");
        rk_config_free(c);
        return RK_E_CONFIG;
    }
    if (!c->inbox_path) {
        snprintf(err, errlen, "%s: [inbox] path is required (the folder rekeyd watches)", abs);
        rk_config_free(c);
        return RK_E_CONFIG;
    }
    for (size_t i = 0; i < c->n_http_inboxes; i++) {
        char why[512];
        if (http_inbox_check(&c->http_inboxes[i], why, sizeof why)) {
            snprintf(err, errlen, "%s: %s", abs, why);
            rk_config_free(c);
            return RK_E_CONFIG;
        }
    }
    for (size_t i = 0; i < c->n_fitconnects; i++) {
        char why[512];
        if (fitconnect_check(&c->fitconnects[i], why, sizeof why)) {
            snprintf(err, errlen, "%s: %s", abs, why);
            rk_config_free(c);
            return RK_E_CONFIG;
        }
    }
    c->inbox.path = c->inbox_path;
    c->inbox.archive_dir = c->archive_dir && *c->archive_dir ? c->archive_dir : NULL;
    c->inbox.error_dir = c->error_dir;
    return 0;
}

void rk_config_free(rk_config *c)
{
    free(c->path);
    free(c->database);
    free(c->jobs_dir);
    free(c->plugin_path);
    free(c->inbox_path);
    free(c->archive_dir);
    free(c->error_dir);
    for (size_t i = 0; i < c->vars.n; i++) {
        free((void *)c->vars.names[i]);
        free((void *)c->vars.values[i]);
    }
    free((void *)c->vars.names);
    free((void *)c->vars.values);
    for (size_t i = 0; i < c->n_http_inboxes; i++)
        http_inbox_free(&c->http_inboxes[i]);
    free(c->http_inboxes);
    for (size_t i = 0; i < c->n_fitconnects; i++)
        fitconnect_free(&c->fitconnects[i]);
    free(c->fitconnects);
    free(c->http.listen);
    free(c->http.listen_host);
    free(c->http.token_file);
    memset(c, 0, sizeof *c);
}
