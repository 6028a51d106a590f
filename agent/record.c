/*
 * record.c — the result of processing one submission with one job: mapped
 * fields with provenance, anomalies and pending duplicate checks.
 *
 * An rk_result owns every string it holds; rk_result_free releases them
 * and leaves the result empty (ready for reuse).
 */
#include "record.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void rk_result_init(rk_result *r)
{
    memset(r, 0, sizeof *r);
}

int rk_result_owns_string(const rk_result *r, const char *p)
{
    return p && !(r->strings && p >= r->strings && p < r->strings + r->strings_len);
}

/* A field's strings, in one order for packing and freeing. */
static void field_strings(rk_mapped_field *f, char **s[5])
{
    s[0] = &f->name;
    s[1] = &f->value;
    s[2] = &f->source;
    s[3] = &f->xpath;
    s[4] = &f->node;
}

static void free_field(rk_result *r, rk_mapped_field *f)
{
    char **s[5];
    field_strings(f, s);
    for (int k = 0; k < 5; k++)
        if (rk_result_owns_string(r, *s[k]))
            free(*s[k]);
}

int rk_result_pack_fields(rk_result *r)
{
    size_t total = 0;
    char **s[5];
    for (size_t i = 0; i < r->n_fields; i++) {
        field_strings(&r->fields[i], s);
        for (int k = 0; k < 5; k++)
            if (*s[k])
                total += strlen(*s[k]) + 1;
    }
    if (!total)
        return 0;
    char *block = malloc(total), *o = block;
    if (!block)
        return -ENOMEM;
    for (size_t i = 0; i < r->n_fields; i++) {
        field_strings(&r->fields[i], s);
        for (int k = 0; k < 5; k++) {
            if (!*s[k])
                continue;
            size_t n = strlen(*s[k]) + 1;
            memcpy(o, *s[k], n);
            if (rk_result_owns_string(r, *s[k]))
                free(*s[k]);
            *s[k] = o;
            o += n;
        }
    }
    free(r->strings);
    r->strings = block;
    r->strings_len = total;
    return 0;
}

void rk_result_free(rk_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_fields; i++)
        free_field(r, &r->fields[i]);
    free(r->strings);
    free(r->fields);
    free(r->values_json);
    for (size_t i = 0; i < r->n_anomalies; i++) {
        free(r->anomalies[i].code);
        free(r->anomalies[i].field);
        free(r->anomalies[i].message);
    }
    free(r->anomalies);
    for (size_t i = 0; i < r->n_dups; i++)
        free(r->dups[i].key);
    free(r->dups);
    rk_result_init(r);
}

/*
 * Out of memory while recording an anomaly.  The function returns void, so
 * the caller cannot see the failure; silently dropping a blocking anomaly
 * would let a doubtful submission through to the Fachverfahren.  Aborting
 * is the safe choice: the submission is durable in the store and is
 * processed again after the restart.
 */
static void anomaly_oom(void)
{
    rk_error("record", "out of memory while recording an anomaly; aborting");
    abort();
}

/*
 * Appends an anomaly; code, field and the formatted message are copied.
 * The message may carry submitted values, so it is never logged here.
 */
void rk_result_add_anomaly(rk_result *r, const char *code, const char *field,
                           rk_severity sev, const char *fmt, ...)
{
    rk_anomaly *grown = realloc(r->anomalies, (r->n_anomalies + 1) * sizeof *grown);
    if (!grown)
        anomaly_oom();
    r->anomalies = grown;

    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *msg = malloc((size_t)n + 1);
    if (!msg)
        anomaly_oom();
    va_start(ap, fmt);
    if (vsnprintf(msg, (size_t)n + 1, fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);

    rk_anomaly *a = &r->anomalies[r->n_anomalies];
    a->code = strdup(code ? code : "");
    a->field = field ? strdup(field) : NULL;
    a->message = msg;
    a->severity = sev;
    if (!a->code || (field && !a->field))
        anomaly_oom();
    r->n_anomalies++;
}

/* First mapped field called name; borrowed from r. */
const rk_mapped_field *rk_result_field(const rk_result *r, const char *name)
{
    if (!r || !name)
        return NULL;
    for (size_t i = 0; i < r->n_fields; i++)
        if (r->fields[i].name && strcmp(r->fields[i].name, name) == 0)
            return &r->fields[i];
    return NULL;
}

int rk_result_blocked(const rk_result *r)
{
    for (size_t i = 0; i < r->n_anomalies; i++)
        if (r->anomalies[i].severity == RK_SEV_BLOCK)
            return 1;
    return 0;
}
