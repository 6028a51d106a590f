/*
 * hostcheck.c — test plugin for the connector host: a well-formed
 * connector whose answers are steered by the record, so the tests can
 * see how the host treats them.
 *
 * Settings: token (string, required, secret), pin (int, secret,
 * default 0), verbose (bool, default false), note (string, optional).
 * open() logs "open job=JOB verbose=V" through the host and
 * refuses when token is "refuse".
 * deliver() looks at the fields:
 *   status=N        answer N (even one outside the enum)
 *   retry_after=N   set retry_after_ms
 *   fill=1          fill the whole message buffer without a NUL
 *   target=ID       write ID as target id (default "T-" + the key)
 * and otherwise answers OK with the message "ok".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rekey_connector.h"

static const rk_setting_decl settings[] = {
    {"token", RK_SETTING_STRING, RK_SETTING_REQUIRED | RK_SETTING_SECRET, NULL, "a secret"},
    {"pin", RK_SETTING_INT, RK_SETTING_SECRET, "0", "a secret number"},
    {"verbose", RK_SETTING_BOOL, 0, "false", "log more"},
    {"note", RK_SETTING_STRING, 0, NULL, "free text"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

static const char *get(const rk_kv *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

static int t_open(const rk_connector_open_args *a, void **inst, char *err, size_t n)
{
    const char *token = get(a->settings, a->n_settings, "token");
    if (token && strcmp(token, "refuse") == 0) {
        snprintf(err, n, "the token was refused");
        return -1;
    }
    char line[256];
    snprintf(line, sizeof line, "open job=%s verbose=%s", a->job_name,
             get(a->settings, a->n_settings, "verbose"));
    a->log(a->log_ctx, RK_LOG_INFO, line);
    *inst = malloc(1);
    return *inst ? 0 : -1;
}

static rk_deliver_status t_deliver(void *inst, const rk_record *r, rk_deliver_result *res)
{
    (void)inst;
    const char *status = get(r->fields, r->n_fields, "status");
    const char *ra = get(r->fields, r->n_fields, "retry_after");
    const char *fill = get(r->fields, r->n_fields, "fill");
    const char *target = get(r->fields, r->n_fields, "target");
    snprintf(res->message, res->message_size, "ok");
    if (fill && strcmp(fill, "1") == 0)
        memset(res->message, 'x', res->message_size);
    if (ra)
        res->retry_after_ms = strtoll(ra, NULL, 10);
    if (target)
        snprintf(res->target_id, res->target_id_size, "%s", target);
    else
        snprintf(res->target_id, res->target_id_size, "T-%s", r->idempotency_key);
    return status ? (rk_deliver_status)strtol(status, NULL, 10) : RK_DELIVER_OK;
}

static void t_close(void *inst) { free(inst); }

static const rk_connector desc = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "hostcheck",
    .version = "0",
    .description = "test plugin",
    .settings = settings,
    .open = t_open,
    .deliver = t_deliver,
    .close = t_close,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void) { return &desc; }
