/*
 * config.c — see config.h.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

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
    } else if (MATCH("rekeyd", "sync")) {
        if (strcmp(value, "full") && strcmp(value, "normal")) {
            snprintf(ps->err, sizeof ps->err, "sync must be full or normal, not '%s'", value);
            return 0;
        }
        c->sync_normal = strcmp(value, "normal") == 0;
    } else if (MATCH("rekeyd", "max_document_size")) {
        if (!set_int(ps, "max_document_size", value, 1024, INT32_MAX, &n))
            return 0;
        c->max_document = (size_t)n;
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
    c->log_level = RK_LOG_LVL_INFO;
    c->max_document = 50u << 20;
    c->inbox.settle_ms = 500;
    c->inbox.rescan_ms = 2000;
    c->inbox.max_file_size = 10u << 20;
    c->inbox.max_decompressed = 50u << 20;
    c->inbox.max_ratio = 100;
    c->max_attempts = 5;
    c->backoff_initial_ms = 1000;
    c->backoff_max_ms = 300000;

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
    memset(c, 0, sizeof *c);
}
