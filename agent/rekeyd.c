/*
 * rekeyd — the rekey daemon.
 *
 *   rekeyd --config FILE [--once | --check] [--allow-root]
 *
 * Runs the engine on one libuv loop until SIGTERM/SIGINT (which drain:
 * what is in flight finishes and is committed, nothing is left half-done)
 * or, with --once, until the inbox is empty and the queue idle.  SIGHUP
 * reloads the job folder.
 *
 * It refuses to run as root (see root_refused): the daemon reads files
 * anyone with write access to the inbox can drop and loads connector
 * plugins, and nothing it does needs root.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>
#include <libxml/parser.h>

#include "config.h"
#include "connector.h"
#include "engine.h"
#include "notify.h"
#include "util.h"

typedef struct daemon_state {
    uv_signal_t sigterm, sigint, sighup;
    rk_notify notify; /* systemd: READY/STOPPING/WATCHDOG (notify.h) */
    rk_engine *engine;
    int status;
    int done;
} daemon_state;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rekeyd --config FILE [--once | --check] [--allow-root]\n"
            "\n"
            "  -c, --config FILE  daemon settings (see docs/operations.md)\n"
            "      --once         process the inbox until it is empty and the queue is\n"
            "                     idle, then exit 0\n"
            "      --check        load the settings and the jobs, report, and exit\n"
            "      --allow-root   run even as root (also: REKEY_ALLOW_ROOT=1); meant for\n"
            "                     containers and test machines only\n"
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
    rk_notify_close(&d->notify);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *d = h->data;
    if (!d->engine)
        return;
    if (signum == SIGHUP) {
        rk_info("rekeyd", "SIGHUP: reloading jobs");
        rk_notify_reloading("reloading the jobs (SIGHUP)");
        rk_engine_reload(d->engine);
        rk_notify_ready("running; jobs reloaded");
    } else {
        rk_info("rekeyd", "signal %d: draining", signum);
        rk_notify_stopping("draining: finishing what is in flight");
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

/*
 * 1 when rekeyd must not start: it runs as root (effective uid 0) and was
 * not told that this is intended, by --allow-root or by REKEY_ALLOW_ROOT
 * set to anything but "" or "0" (for test machines and containers, whose
 * scripts cannot easily add a flag to every start).  As root, a symbolic
 * link or a hard link dropped into the inbox, a plugin in a writable
 * plugin_path or a job variable naming a system file would reach what
 * only root may touch; as a service user they reach nothing.
 */
static int root_refused(int allow_root)
{
    if (geteuid() != 0 || allow_root)
        return 0;
    const char *env = getenv("REKEY_ALLOW_ROOT");
    return !(env && env[0] && strcmp(env, "0") != 0);
}

/* The default plugin path: the build tree's <folder of this binary>/
 * ../connectors, then an installed tree's ../lib/rekey/connectors. */
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
    size_t len = 2 * strlen(exe) + 48;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/../connectors:%s/../lib/rekey/connectors", exe, exe);
    return p;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"allow-root", no_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    int once = 0, check = 0, allow_root = 0, c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'o': once = 1; break;
        case 'k': check = 1; break;
        case 'r': allow_root = 1; break;
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
    if (root_refused(allow_root)) {
        fprintf(stderr, "rekeyd: refusing to run as root: start it as the service user "
                        "(see docs/security.md), or pass --allow-root\n");
        return 1;
    }
    umask(077); /* the spool and the database are the service user's only */
    rk_config cfg;
    char err[1024];
    if (rk_config_load(config_path, &cfg, err, sizeof err)) {
        fprintf(stderr, "rekeyd: %s\n", err);
        return 2;
    }
    rk_log_set_level(cfg.log_level);
    rk_log_set_format(cfg.log_format);
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
        rk_notify_status("could not start: %s", err);
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
    /* the engine is up: tell systemd (Type=notify) and feed its watchdog
     * from this loop; on_engine_done closes the timer */
    rc = rk_notify_init(&d.notify, &loop);
    if (rc)
        rk_warn("rekeyd", "systemd watchdog timer: %s", uv_strerror(rc));
    rk_notify_ready("running: taking submissions");
    uv_run(&loop, UV_RUN_DEFAULT);
    int lc = uv_loop_close(&loop);
    if (lc)
        rk_error("rekeyd", "event loop closed with open handles: %s", uv_strerror(lc));
    rk_plugin_unload_all();
    rk_config_free(&cfg);
    xmlCleanupParser();
    return d.status || lc ? 1 : 0;
}
