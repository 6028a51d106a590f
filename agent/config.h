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

typedef struct rk_config {
    char *path;           /* the file read */
    char *database;       /* [rekeyd] database, default rekey.db */
    char *jobs_dir;       /* [rekeyd] jobs, default jobs */
    char *plugin_path;    /* [rekeyd] plugin_path, default <exe>/../connectors */
    int workers;          /* [rekeyd] workers, default 4 */
    int log_level;        /* [rekeyd] log_level, default info */
    int sync_normal;      /* [rekeyd] sync = full|normal, default full */
    size_t max_document;  /* [rekeyd] max_document_size, default 50 MiB */

    char *inbox_path;     /* [inbox] path (required) */
    char *archive_dir;    /* [inbox] archive, default archive; "" = delete */
    char *error_dir;      /* [inbox] error, default error */
    rk_inbox_config inbox; /* points into the strings above */

    int max_attempts;     /* [delivery] max_attempts, default 5 */
    int64_t backoff_initial_ms; /* [delivery] backoff_initial_ms, default 1000 */
    int64_t backoff_max_ms;     /* [delivery] backoff_max_ms, default 300000 */

    rk_vars vars;         /* [vars] name = value */
} rk_config;

/* Reads path.  On failure returns non-zero with "FILE:LINE: reason" in err. */
int rk_config_load(const char *path, rk_config *cfg, char *err, size_t errlen);
void rk_config_free(rk_config *cfg);

#endif /* RK_CONFIG_H */
