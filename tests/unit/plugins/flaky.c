/*
 * flaky.c — test plugin for the engine's policy: it answers what a control
 * file says (OK, RETRY, PERMANENT or FATAL; a missing file means OK) and
 * appends one line per deliver() call to a log file, so tests can change
 * the target's mood while rekeyd runs and count what reached it.
 *
 * Settings: control (path, required), log (path, required).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "rekey_connector.h"

static const rk_setting_decl settings[] = {
    {"control", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL, "file holding the answer"},
    {"log", RK_SETTING_STRING, RK_SETTING_REQUIRED, NULL, "file the calls are appended to"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

typedef struct flaky {
    char control[1024];
    char log[1024];
} flaky;

static int f_open(const rk_connector_open_args *a, void **inst, char *err, size_t n)
{
    flaky *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, n, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < a->n_settings; i++) {
        if (strcmp(a->settings[i].name, "control") == 0)
            snprintf(f->control, sizeof f->control, "%s", a->settings[i].value);
        if (strcmp(a->settings[i].name, "log") == 0)
            snprintf(f->log, sizeof f->log, "%s", a->settings[i].value);
    }
    *inst = f;
    return 0;
}

static rk_deliver_status f_deliver(void *inst, const rk_record *rec, rk_deliver_result *res)
{
    flaky *f = inst;
    char mood[32] = "OK";
    FILE *c = fopen(f->control, "r");
    if (c) {
        if (!fgets(mood, sizeof mood, c))
            snprintf(mood, sizeof mood, "OK");
        fclose(c);
    }
    mood[strcspn(mood, "\r\n ")] = '\0';
    FILE *l = fopen(f->log, "a");
    if (l) {
        fprintf(l, "%s %s\n", rec->idempotency_key, mood);
        fclose(l);
    }
    snprintf(res->message, res->message_size, "flaky says %s", mood);
    if (strcmp(mood, "FATAL") == 0)
        return RK_DELIVER_FATAL;
    if (strcmp(mood, "RETRY") == 0)
        return RK_DELIVER_RETRY;
    if (strcmp(mood, "PERMANENT") == 0)
        return RK_DELIVER_PERMANENT;
    if (strcmp(mood, "SLOW") == 0) {
        /* a slow target: the call takes 2 s, then succeeds */
        struct timespec ts = {2, 0};
        nanosleep(&ts, NULL);
    }
    return RK_DELIVER_OK;
}

static void f_close(void *inst) { free(inst); }

static const rk_connector desc = {
    RK_CONNECTOR_ABI_VERSION, sizeof(rk_connector), "flaky", "1", "test plugin", settings,
    f_open, f_deliver, f_close, NULL,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void) { return &desc; }
