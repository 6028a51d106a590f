/*
 * rekey_connector.h — the connector ABI, version 1.1.
 *
 * A connector is a shared object that moves one mapped record at a time
 * into a target system (a Fachverfahren).  It exports exactly one symbol,
 * rk_connector_entry(), which returns a pointer to a static descriptor.
 * This header is the whole contract: a connector never includes anything
 * from agent/.  docs/connectors.md explains every field in prose.
 *
 * Versioning rules (they are why the structs look the way they do):
 *   - every struct the host and a connector exchange begins with its size
 *     (and the descriptor also with the ABI version), so either side can
 *     tell which fields the other one knows;
 *   - fields are only ever appended, never inserted, removed or retyped;
 *   - a change that cannot follow these rules raises the major version,
 *     and the host refuses a plugin whose major version differs from its
 *     own, naming both versions.
 *
 * Ownership: everything the host passes in is owned by the host and valid
 * only for the duration of the call; everything in the descriptor is owned
 * by the connector and must stay valid while the shared object is loaded.
 *
 * Threading: open() and close() run on a host thread with no delivery in
 * progress on that instance.  deliver() is blocking and runs on a worker
 * thread; the host never calls deliver() concurrently on the same
 * instance, but different instances may deliver in parallel.  A connector
 * never sleeps or loops to retry: it reports RETRY and the host decides.
 */
#ifndef REKEY_CONNECTOR_H
#define REKEY_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RK_CONNECTOR_ABI_MAJOR 1
#define RK_CONNECTOR_ABI_MINOR 1 /* 1.1: deliver_batch */
#define RK_CONNECTOR_ABI_VERSION \
    ((uint32_t)((RK_CONNECTOR_ABI_MAJOR << 16) | RK_CONNECTOR_ABI_MINOR))
#define RK_CONNECTOR_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)
#define RK_CONNECTOR_ABI_MINOR_OF(v) ((uint32_t)(v) & 0xffffu)

/* The one symbol a connector exports. */
#define RK_CONNECTOR_ENTRY_SYMBOL "rk_connector_entry"

/* Types of declared settings.  The host checks a value against its type
 * before open() sees it: INT is a base-10 integer that fits int64_t,
 * BOOL is one of true/false/yes/no/on/off/1/0. */
typedef enum {
    RK_SETTING_STRING = 0,
    RK_SETTING_INT = 1,
    RK_SETTING_BOOL = 2
} rk_setting_type;

/* Flags of declared settings. */
#define RK_SETTING_REQUIRED 0x1u /* open() is refused when the job omits it */
#define RK_SETTING_SECRET 0x2u   /* never printed or logged by the host */

/* One declared setting.  A connector's table ends with an entry whose name
 * is NULL.  Keys a job sets that are not in the table are refused. */
typedef struct rk_setting_decl {
    const char *name;
    rk_setting_type type;
    uint32_t flags;
    const char *default_value; /* NULL: no default */
    const char *help;          /* one line, shown by the host's tools */
} rk_setting_decl;

/* A name and a value, used for settings and for the fields of a record.
 * value may be NULL (a setting without value and default, or a field that
 * mapped to nothing). */
typedef struct rk_kv {
    const char *name;
    const char *value;
} rk_kv;

/* Log levels for rk_connector_open_args.log. */
#define RK_LOG_ERROR 0
#define RK_LOG_WARN 1
#define RK_LOG_INFO 2
#define RK_LOG_DEBUG 3

/* What open() receives.  settings holds every declared setting in the
 * order of the connector's table, with defaults filled in; values have
 * been checked and normalised (booleans as true/false, integers as plain
 * decimals). */
typedef struct rk_connector_open_args {
    uint32_t struct_size;
    uint32_t abi_version;   /* the host's RK_CONNECTOR_ABI_VERSION */
    const char *job_name;   /* the job this instance delivers for */
    const rk_kv *settings;
    size_t n_settings;
    /* Log through the host (ids and field names only, never personal
     * data or secrets).  May be called from any thread. */
    void (*log)(void *log_ctx, int level, const char *message);
    void *log_ctx;
} rk_connector_open_args;

/* One record to deliver. */
typedef struct rk_record {
    uint32_t struct_size;
    /* Stable for the submission and job: delivering the same record twice
     * must have the effect of delivering it once. */
    const char *idempotency_key;
    const char *submission_id; /* the host's id, for messages */
    const char *job_name;
    const rk_kv *fields;       /* in the order of the job's field map */
    size_t n_fields;
} rk_record;

/* The answer of deliver(). */
typedef enum {
    RK_DELIVER_OK = 0,        /* the record is in the target */
    RK_DELIVER_RETRY = 1,     /* transient: try again later */
    RK_DELIVER_PERMANENT = 2, /* this record can never go in */
    RK_DELIVER_FATAL = 3      /* the instance is unusable: host closes it */
} rk_deliver_status;

/* Host-owned result buffers a connector fills in deliver(). */
typedef struct rk_deliver_result {
    uint32_t struct_size;
    char *message;        /* human-readable reason; always NUL-terminated */
    size_t message_size;  /* capacity of message, including the NUL */
    int64_t retry_after_ms; /* RETRY only: wait at least this; -1 = host's backoff */
    char *target_id;      /* OK only: the target's own id for the record, optional */
    size_t target_id_size;
} rk_deliver_result;

/* The descriptor.  abi_version and struct_size come first and stay first
 * in every version. */
typedef struct rk_connector {
    uint32_t abi_version; /* RK_CONNECTOR_ABI_VERSION the plugin was built with */
    uint32_t struct_size; /* sizeof(rk_connector) the plugin was built with */
    const char *name;     /* short name, equal to the plugin's folder name */
    const char *version;  /* the connector's own version string */
    const char *description;
    const rk_setting_decl *settings; /* NULL-name terminated */

    /* Create an instance.  On failure return non-zero and write a message
     * (no secrets) into err.  *instance is the connector's to define. */
    int (*open)(const rk_connector_open_args *args, void **instance,
                char *err, size_t err_size);

    /* Deliver one record.  Blocking; runs on a worker thread. */
    rk_deliver_status (*deliver)(void *instance, const rk_record *record,
                                 rk_deliver_result *result);

    /* Release the instance.  Never fails. */
    void (*close)(void *instance);

    /* ---- ABI 1.1 ------------------------------------------------------ */

    /* Optional (NULL: the host calls deliver() once per record).  Delivers
     * n records (n >= 1) in one go, typically in one transaction of the
     * target, and answers each one: status[i] and results[i] mean for
     * records[i] what deliver()'s answer and result mean for one record.
     * The host sets every status[i] to RETRY with an empty message before
     * the call, so a record the connector does not answer is tried again.
     * An OK must be durable in the target when the call returns: when the
     * closing commit fails, the connector turns the OKs of the records it
     * wrote into RETRY.  One record that can never go in (PERMANENT) must
     * not keep the others out.  FATAL for any record makes the host close
     * the instance; records answered OK are delivered, the rest are tried
     * again after a resume.  Idempotency keys work as with deliver().
     * Same threading as deliver(): a worker thread, never concurrently
     * on one instance.  The arrays and what they point to are the host's,
     * valid during the call.  The host only calls it when the plugin's
     * abi_version minor is at least 1 and struct_size covers the field. */
    void (*deliver_batch)(void *instance, size_t n, const rk_record *const *records,
                          rk_deliver_result *const *results, rk_deliver_status *status);
} rk_connector;

/* 1 when the descriptor d has a deliver_batch the host may call. */
#define RK_CONNECTOR_HAS_BATCH(d)                                             \
    (RK_CONNECTOR_ABI_MINOR_OF((d)->abi_version) >= 1 &&                     \
     (d)->struct_size >= offsetof(rk_connector, deliver_batch) +             \
                             sizeof((d)->deliver_batch) &&                    \
     (d)->deliver_batch != NULL)

typedef const rk_connector *(*rk_connector_entry_fn)(void);

/* Declare the entry point in a connector:
 *     RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void)
 */
#if defined(__GNUC__)
#define RK_CONNECTOR_EXPORT __attribute__((visibility("default")))
#else
#define RK_CONNECTOR_EXPORT
#endif

#ifdef __cplusplus
}
#endif
#endif /* REKEY_CONNECTOR_H */
