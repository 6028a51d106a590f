/*
 * sources.c — starts the networked inbox sources named in the daemon's
 * settings (see engine.h: rk_sources_start).  The directory inbox is
 * started by the engine itself.
 *
 * All networked sources of one engine share one curl context (one curl
 * multi handle on the loop).  Each source is registered with the engine
 * through a small wrapper that counts the sources still running: when
 * the last one has stopped, the curl context is closed, and only then is
 * the engine told that this last source is done, so the engine's loop
 * closes with no handle left behind.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "curl_uv.h"
#include "engine.h"
#include "httpd.h"
#include "inbox_fitconnect.h"
#include "inbox_http.h"
#include "util.h"

typedef struct shared {
    rk_curl *curl;
    int live;               /* wrapped sources not yet stopped */
} shared;

typedef struct wrapped {
    shared *sh;
    const rk_source_ops *ops;
    void *src;
    void (*done)(void *);
    void *done_arg;
} wrapped;

static int w_idle(void *p)
{
    wrapped *w = p;
    return !w->ops->idle || w->ops->idle(w->src);
}

static void on_curl_closed(void *arg)
{
    wrapped *w = arg;
    void (*done)(void *) = w->done;
    void *done_arg = w->done_arg;
    free(w->sh);
    free(w);
    done(done_arg);
}

static void on_inner_stopped(void *arg)
{
    wrapped *w = arg;
    shared *sh = w->sh;
    if (--sh->live == 0) {
        rk_curl_close(sh->curl, on_curl_closed, w); /* w's done runs after it */
        return;
    }
    void (*done)(void *) = w->done;
    void *done_arg = w->done_arg;
    free(w);
    done(done_arg);
}

static void w_stop(void *p, void (*done)(void *), void *arg)
{
    wrapped *w = p;
    w->done = done;
    w->done_arg = arg;
    w->ops->stop(w->src, on_inner_stopped, w);
}

static void w_outcome(void *p, int64_t notice_id, const char *source_ref, int64_t job_id,
                      const char *state, const char *reason)
{
    wrapped *w = p;
    w->ops->outcome(w->src, notice_id, source_ref, job_id, state, reason);
}

static const rk_source_ops wrapped_ops = {"network", w_idle, w_stop, NULL};
/* for sources that are told what became of their submissions */
static const rk_source_ops wrapped_outcome_ops = {"network", w_idle, w_stop, w_outcome};

/* Registers src with the engine behind the counting wrapper; a source
 * with an outcome hook is registered under its source id (the `source`
 * of its submissions), so the engine can route outcomes to it. */
static int add(rk_engine *e, shared *sh, const rk_source_ops *ops, void *src,
               const char *source_id)
{
    wrapped *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->sh = sh;
    w->ops = ops;
    w->src = src;
    sh->live++;
    if (ops->outcome && source_id)
        rk_engine_add_source_id(e, &wrapped_outcome_ops, w, source_id);
    else
        rk_engine_add_source(e, &wrapped_ops, w);
    return 0;
}

static void on_unused_curl_closed(void *arg) { free(arg); }

int rk_sources_start(rk_engine *e, char *err, size_t errlen)
{
    const rk_config *cfg = rk_engine_config(e);
    int hrc = rk_httpd_start(e, err, errlen); /* [http]: the operator API */
    if (hrc)
        return hrc;
    if (cfg->n_http_inboxes == 0 && cfg->n_fitconnects == 0)
        return 0;
    shared *sh = calloc(1, sizeof *sh);
    if (!sh) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = rk_curl_init(rk_engine_loop(e), &sh->curl);
    if (rc) {
        snprintf(err, errlen, "cannot set up libcurl: %s", rk_strerror(rc));
        free(sh);
        return rc;
    }
    for (size_t i = 0; i < cfg->n_http_inboxes; i++) {
        rk_http_inbox *in = NULL;
        char why[512];
        rc = rk_http_inbox_start(e, sh->curl, &cfg->http_inboxes[i], &in, why, sizeof why);
        if (!rc) {
            rc = add(e, sh, &rk_http_inbox_ops, in, NULL);
            if (rc)
                rk_http_inbox_stop(in, NULL, NULL);
        }
        if (rc) {
            snprintf(err, errlen, "[http_inbox %s]: %s", cfg->http_inboxes[i].name,
                     rc == -ENOMEM ? "out of memory" : why);
            /* the sources added so far close the curl context when the
             * engine stops them; with none, close it here */
            if (sh->live == 0)
                rk_curl_close(sh->curl, on_unused_curl_closed, sh);
            return rc;
        }
    }
    for (size_t i = 0; i < cfg->n_fitconnects; i++) {
        rk_fitconnect *fc = NULL;
        char why[600];
        rc = rk_fitconnect_start(e, sh->curl, &cfg->fitconnects[i], &fc, why, sizeof why);
        if (!rc) {
            rc = add(e, sh, &rk_fitconnect_ops, fc, rk_fitconnect_source_id(fc));
            if (rc)
                rk_fitconnect_stop(fc, NULL, NULL);
        }
        if (rc) {
            snprintf(err, errlen, "[fitconnect %s]: %s", cfg->fitconnects[i].name,
                     rc == -ENOMEM ? "out of memory" : why);
            if (sh->live == 0)
                rk_curl_close(sh->curl, on_unused_curl_closed, sh);
            return rc;
        }
    }
    return 0;
}
