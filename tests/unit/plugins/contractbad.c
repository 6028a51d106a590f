/*
 * contractbad.c — test plugin for `rekeyctl connector-test`: a connector
 * that breaks one rule of the contract, chosen by the environment
 * variable RK_CONTRACT_SIN when the plugin loads (rk_connector_entry).
 * Without it (or with "none") it is well-formed and passes every check,
 * which shows that each failure comes from the sin alone.
 *
 * Settings: token (string, required, secret), note (string, optional).
 *
 * Sins (tests/system/test_contract.py expects the failing check of each):
 *   dup_setting   the table declares 'note' twice          → settings table
 *   no_help       a setting without help text               → settings table
 *   bad_default   an INT setting with the default "ten"     → settings table
 *   wrong_name    descriptor name differs from the file     → name
 *   refuse_open   open() always fails                       → open
 *   log_secret    open() logs the token                     → secrets
 *   msg_secret    deliver() puts the token in its message   → secrets
 *   fd_leak       open() leaves a descriptor open           → leaks
 *   mem_leak      open() leaves 8 KiB allocated             → leaks
 *   bad_status    deliver() answers 7                       → deliver
 *   no_nul        deliver() fills the message without NUL  → deliver
 *   overflow      deliver() writes past message_size       → deliver
 *   second_fatal  a repeated key answers FATAL              → same key again
 *   new_tid       a repeated key answers another target id  → same key again
 *   null_retry    a NULL value answers RETRY                → NULL value
 *   ascii_only    a non-ASCII value answers PERMANENT "" → non-ASCII value
 *   null_crash    a NULL value is passed to strlen (crash)  → NULL value
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "rekey_connector.h"

static const rk_setting_decl good[] = {
    {"token", RK_SETTING_STRING, RK_SETTING_REQUIRED | RK_SETTING_SECRET, NULL, "a secret"},
    {"note", RK_SETTING_STRING, 0, NULL, "free text"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};
static const rk_setting_decl dup_setting[] = {
    {"token", RK_SETTING_STRING, RK_SETTING_REQUIRED | RK_SETTING_SECRET, NULL, "a secret"},
    {"note", RK_SETTING_STRING, 0, NULL, "free text"},
    {"note", RK_SETTING_STRING, 0, NULL, "free text, again"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};
static const rk_setting_decl no_help[] = {
    {"token", RK_SETTING_STRING, RK_SETTING_REQUIRED | RK_SETTING_SECRET, NULL, "a secret"},
    {"note", RK_SETTING_STRING, 0, NULL, NULL},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};
static const rk_setting_decl bad_default[] = {
    {"token", RK_SETTING_STRING, RK_SETTING_REQUIRED | RK_SETTING_SECRET, NULL, "a secret"},
    {"note", RK_SETTING_INT, 0, "ten", "a number"},
    {NULL, RK_SETTING_STRING, 0, NULL, NULL},
};

static const char *the_sin = "none"; /* set once, at load */

static int is(const char *s) { return strcmp(the_sin, s) == 0; }

typedef struct inst {
    char *token;
    char *keys[16]; /* keys delivered, for the repeat answers */
    size_t n_keys;
    void *leak;
} inst;

static int t_open(const rk_connector_open_args *a, void **out, char *err, size_t n)
{
    const char *token = NULL;
    for (size_t i = 0; i < a->n_settings; i++)
        if (strcmp(a->settings[i].name, "token") == 0)
            token = a->settings[i].value;
    if (is("refuse_open")) {
        snprintf(err, n, "refusing on purpose");
        return -1;
    }
    if (is("log_secret")) {
        char line[256];
        snprintf(line, sizeof line, "connecting with token %s", token ? token : "");
        a->log(a->log_ctx, RK_LOG_INFO, line);
    }
    if (is("fd_leak") && open("/dev/null", O_RDONLY) < 0)
        return -1;
    if (is("mem_leak")) {
        void *p = malloc(8192);
        if (p)
            memset(p, 1, 8192);
        (void)p; /* lost on purpose */
    }
    inst *in = calloc(1, sizeof *in);
    if (!in || !(in->token = strdup(token ? token : ""))) {
        free(in);
        return -1;
    }
    *out = in;
    return 0;
}

static const char *field(const rk_record *r, const char *name, int *found)
{
    *found = 0;
    for (size_t i = 0; i < r->n_fields; i++)
        if (strcmp(r->fields[i].name, name) == 0) {
            *found = 1;
            return r->fields[i].value;
        }
    return NULL;
}

static rk_deliver_status t_deliver(void *p, const rk_record *r, rk_deliver_result *res)
{
    inst *in = p;
    int repeat = 0, found;
    for (size_t i = 0; i < in->n_keys; i++)
        if (strcmp(in->keys[i], r->idempotency_key) == 0)
            repeat = 1;
    if (!repeat && in->n_keys < 16)
        in->keys[in->n_keys++] = strdup(r->idempotency_key);
    const char *ort = field(r, "ort", &found);
    int has_null = found && !ort;
    int non_ascii = 0;
    for (size_t i = 0; i < r->n_fields; i++)
        for (const char *s = r->fields[i].value; s && *s; s++)
            non_ascii |= (unsigned char)*s >= 0x80;

    if (is("null_crash") && has_null) {
        const char *volatile v = ort; /* volatile: the compiler must really read NULL */
        return strlen(v) > 0 ? RK_DELIVER_OK : RK_DELIVER_RETRY;
    }
    if (is("bad_status"))
        return (rk_deliver_status)7;
    if (is("no_nul")) {
        memset(res->message, 'x', res->message_size);
        return RK_DELIVER_OK;
    }
    if (is("overflow")) {
        memset(res->message, 'x', res->message_size + 8);
        return RK_DELIVER_OK;
    }
    if (is("msg_secret")) {
        snprintf(res->message, res->message_size, "sent with token %s", in->token);
        return RK_DELIVER_OK;
    }
    if (repeat && is("second_fatal")) {
        snprintf(res->message, res->message_size, "duplicate");
        return RK_DELIVER_FATAL;
    }
    if (is("null_retry") && has_null) {
        snprintf(res->message, res->message_size, "cannot store NULL");
        return RK_DELIVER_RETRY;
    }
    if (is("ascii_only") && non_ascii)
        return RK_DELIVER_PERMANENT;
    snprintf(res->message, res->message_size, repeat ? "already there" : "stored");
    snprintf(res->target_id, res->target_id_size, "T-%s%s", r->submission_id,
             repeat && is("new_tid") ? "-again" : "");
    return RK_DELIVER_OK;
}

static void t_close(void *p)
{
    inst *in = p;
    if (!in)
        return;
    for (size_t i = 0; i < in->n_keys; i++)
        free(in->keys[i]);
    free(in->token);
    free(in);
}

static rk_connector desc = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "contractbad",
    .version = "0",
    .description = "test plugin for rekeyctl connector-test",
    .settings = good,
    .open = t_open,
    .deliver = t_deliver,
    .close = t_close,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void)
{
    const char *s = getenv("RK_CONTRACT_SIN");
    the_sin = s && *s ? s : "none";
    desc.settings = is("dup_setting") ? dup_setting : is("no_help") ? no_help
                    : is("bad_default") ? bad_default : good;
    desc.name = is("wrong_name") ? "contract_bad" : "contractbad";
    return &desc;
}
