/*
 * rekeyd — the rekey daemon.
 *
 *   rekeyd --config FILE [--once]
 *
 * Runs the engine on one libuv loop until SIGTERM/SIGINT (which drain:
 * what is in flight finishes and is committed, nothing is left half-done)
 * or, with --once, until the inbox is empty and the queue idle.  SIGHUP
 * reloads the job folder.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>
#include <libxml/parser.h>

#include "config.h"
#include "connector.h"
#include "engine.h"
#include "util.h"

typedef struct daemon_state {
    uv_signal_t sigterm, sigint, sighup;
    rk_engine *engine;
    int status;
    int done;
} daemon_state;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rekeyd --config FILE [--once]\n"
            "\n"
            "  -c, --config FILE  daemon settings (see docs/operations.md)\n"
            "      --once         process the inbox until it is empty and the queue is\n"
            "                     idle, then exit 0\n"
            "      --check        load the settings and the jobs, report, and exit\n"
            "  -h, --help         this text\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the jobs.\n");
}

static void on_engine_done(void *arg, int status)
{
    daemon_state *d = arg;
    d->done = 1;
    d->status = status;
    d->engine = NULL;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *d = h->data;
    if (!d->engine)
        return;
    if (signum == SIGHUP) {
        rk_info("rekeyd", "SIGHUP: reloading jobs");
        rk_engine_reload(d->engine);
    } else {
        rk_info("rekeyd", "signal %d: draining", signum);
        rk_engine_stop(d->engine);
    }
}

/* --check: load the jobs with the daemon's connector check and report
 * each one; non-zero when a file or a connector setting is wrong. */
static int check_config(const rk_config *cfg)
{
    char *errors = NULL;
    rk_log_set_level(-1); /* the errors are printed once, below */
    rk_registry_set_validator(rk_engine_check_connector, (void *)cfg);
    rk_registry *reg = rk_registry_load(cfg->jobs_dir, &cfg->vars, &errors);
    if (!reg) {
        fprintf(stderr, "rekeyd: cannot read the job folder %s\n", cfg->jobs_dir);
        return 1;
    }
    for (size_t i = 0; i < rk_registry_count(reg); i++) {
        rk_job *j = rk_registry_at(reg, i);
        printf("job %-24s ok: version %ld, root {%s}%s, connector", j->name, j->version,
               j->root_ns, j->root_name);
        for (size_t c = 0; c < j->n_connectors; c++)
            printf("%s %s (%s)", c ? "," : "", j->connectors[c].name, j->connectors[c].plugin);
        putchar('\n');
    }
    int bad = errors != NULL;
    if (errors)
        fprintf(stderr, "%s", errors);
    free(errors);
    rk_registry_free(reg);
    return bad;
}

/* The default plugin path: <folder of this binary>/../connectors. */
static char *default_plugin_path(void)
{
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return strdup("connectors");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    size_t len = strlen(exe) + 16;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/../connectors", exe);
    return p;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    int once = 0, check = 0, c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'o': once = 1; break;
        case 'k': check = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config_path || optind < argc) {
        fprintf(stderr, "rekeyd: %s\n", config_path ? "unexpected argument" :
                                                      "--config FILE is required");
        usage(stderr);
        return 2;
    }
    umask(077); /* the spool and the database are the service user's only */
    rk_config cfg;
    char err[1024];
    if (rk_config_load(config_path, &cfg, err, sizeof err)) {
        fprintf(stderr, "rekeyd: %s\n", err);
        return 2;
    }
    rk_log_set_level(cfg.log_level);
    if (!cfg.plugin_path)
        cfg.plugin_path = default_plugin_path();
    rk_xml_init();
    if (check) {
        int rc = check_config(&cfg);
        rk_plugin_unload_all();
        rk_config_free(&cfg);
        xmlCleanupParser();
        return rc;
    }
    char threads[16];
    snprintf(threads, sizeof threads, "%d", cfg.workers);
    setenv("UV_THREADPOOL_SIZE", threads, 1);

    uv_loop_t loop;
    uv_loop_init(&loop);
    daemon_state d;
    memset(&d, 0, sizeof d);
    uv_signal_init(&loop, &d.sigterm);
    uv_signal_init(&loop, &d.sigint);
    uv_signal_init(&loop, &d.sighup);
    d.sigterm.data = d.sigint.data = d.sighup.data = &d;
    int rc = rk_engine_start(&loop, &cfg, once, on_engine_done, &d, &d.engine, err, sizeof err);
    if (rc) {
        fprintf(stderr, "rekeyd: %s\n", err);
        uv_close((uv_handle_t *)&d.sigterm, NULL);
        uv_close((uv_handle_t *)&d.sigint, NULL);
        uv_close((uv_handle_t *)&d.sighup, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        rk_config_free(&cfg);
        return 1;
    }
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sighup, on_signal, SIGHUP);
    rk_info("rekeyd", "running: inbox %s, %s", cfg.inbox_path, once ? "--once" : "until SIGTERM");
    uv_run(&loop, UV_RUN_DEFAULT);
    int lc = uv_loop_close(&loop);
    if (lc)
        rk_error("rekeyd", "event loop closed with open handles: %s", uv_strerror(lc));
    rk_plugin_unload_all();
    rk_config_free(&cfg);
    xmlCleanupParser();
    return d.status || lc ? 1 : 0;
}
