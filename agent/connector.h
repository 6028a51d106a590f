/*
 * connector.h — the connector host: loads plugins with dlopen, checks
 * their ABI version and declared settings, opens instances, and runs
 * deliveries.  Policy (retries, backoff, attempt limits, dead letter)
 * stays in the engine; this module only reports what the plugin said.
 *
 * Ownership: the host owns loaded plugins (rk_plugin) and instances
 * (rk_conn); an rk_conn is closed with rk_conn_close.  rk_conn_deliver
 * blocks and is called on a worker thread, never twice at once on the
 * same rk_conn (the engine serialises per instance).
 */
#ifndef RK_CONNECTOR_H
#define RK_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>
#include "rekey_connector.h"
#include "job.h"

typedef struct rk_plugin rk_plugin;
typedef struct rk_conn rk_conn;

/* Finds "NAME" as DIR/NAME/NAME.so or DIR/NAME.so for each DIR in the
 * colon-separated search path, or loads it directly when name contains a
 * '/'.  Checks the entry symbol, the ABI major version (the message names
 * both versions) and the descriptor size.  Plugins are cached per path. */
rk_plugin *rk_plugin_load(const char *search_path, const char *name,
                          char *err, size_t errlen);
const rk_connector *rk_plugin_descriptor(const rk_plugin *p);
const char *rk_plugin_path(const rk_plugin *p);
/* Unloads every cached plugin (at exit, after all instances closed). */
void rk_plugin_unload_all(void);

/* Checks settings against the plugin's table: unknown keys, missing
 * required keys and values of the wrong type are refused with a message
 * naming the key (never a secret value).  On success fills *out with
 * every declared setting, in table order, defaults applied (caller frees
 * with rk_settings_free). */
int rk_settings_check(const rk_connector *c, const rk_setting *in, size_t n_in,
                      rk_kv **out, size_t *n_out, char *err, size_t errlen);
void rk_settings_free(rk_kv *kv, size_t n);
/* 1 when key is declared secret by c. */
int rk_setting_is_secret(const rk_connector *c, const char *key);

/* Opens an instance for a job (checks the settings first). */
rk_conn *rk_conn_open(rk_plugin *p, const char *job_name,
                      const rk_setting *settings, size_t n,
                      char *err, size_t errlen);

/* Delivers one record.  message/target_id are filled from the plugin's
 * answer (always NUL-terminated); *retry_after_ms is -1 when the plugin
 * gave none.  An invalid status from the plugin is reported as FATAL. */
rk_deliver_status rk_conn_deliver(rk_conn *c, const rk_record *rec,
                                  char *message, size_t message_size,
                                  char *target_id, size_t target_id_size,
                                  int64_t *retry_after_ms);
/* 1 when the plugin delivers batches (ABI 1.1 deliver_batch). */
int rk_conn_can_batch(const rk_conn *c);
/* What the host reports per record of a batch; message and target_id are
 * the caller's buffers, filled as by rk_conn_deliver. */
typedef struct rk_conn_answer {
    rk_deliver_status status;
    char *message;
    size_t message_size;
    char *target_id;
    size_t target_id_size;
    int64_t retry_after_ms;
} rk_conn_answer;
/* Delivers n records with the plugin's deliver_batch (only when
 * rk_conn_can_batch); out[i] answers recs[i].  Blocking, like
 * rk_conn_deliver. */
void rk_conn_deliver_batch(rk_conn *c, size_t n, const rk_record *const *recs,
                           rk_conn_answer *out);
void rk_conn_close(rk_conn *c);
const rk_connector *rk_conn_descriptor(const rk_conn *c);

#endif /* RK_CONNECTOR_H */
