/*
 * job.h — job definitions: loading the job files of a folder, validating
 * them against schemas/rekey-job.xsd, and matching a submission to its job.
 *
 * A loaded rk_job is immutable and shared by the threads that validate,
 * map and check with it; it holds the compiled XSD of its documents, the
 * parsed field map, rules, lookup tables and code lists.  The registry
 * owns its jobs; a job handed out by rk_registry_match() is referenced
 * (rk_job_ref) and released by the caller with rk_job_unref(), so a
 * reload never frees a job that a worker still uses.
 */
#ifndef RK_JOB_H
#define RK_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

typedef enum {
    RK_SEV_WARN = 0,  /* annotates, lets the submission pass */
    RK_SEV_BLOCK = 1  /* holds the submission in review */
} rk_severity;

/* One step of a field's transform chain. */
typedef enum {
    RK_TX_TRIM,      /* strip leading/trailing white space, fold inner runs */
    RK_TX_UPPER,
    RK_TX_LOWER,
    RK_TX_DATE,      /* a = input strftime-style format, b = output format */
    RK_TX_DECIMAL,   /* n = places, a = decimal separator in output */
    RK_TX_CONCAT,    /* a = XPath of the other value, b = separator */
    RK_TX_DEFAULT,   /* a = value used when the current value is empty */
    RK_TX_LOOKUP,    /* a = table name; n = 1: unknown key is an anomaly */
    RK_TX_CODELIST,  /* a = code list name, b = column to return */
    RK_TX_REPLACE,   /* a = POSIX extended regex, b = replacement (\1..\9) */
    RK_TX_SPLIT      /* a = separator, n = 0-based index of the part */
} rk_transform_kind;

typedef struct rk_transform {
    rk_transform_kind kind;
    char *a;
    char *b;
    long n;
    void *compiled;  /* RK_TX_REPLACE: regex_t *; RK_TX_CONCAT: xmlXPathCompExpr * */
    struct rk_child_path *direct; /* RK_TX_CONCAT: a plain child path (map.h), or NULL */
    int line;        /* line in the job file, for messages */
} rk_transform;

typedef struct rk_field_def {
    char *name;       /* target field name */
    char *xpath;      /* XPath 1.0, evaluated with the root element as context */
    void *compiled;   /* xmlXPathCompExpr * */
    struct rk_child_path *direct; /* a plain child path, walked without XPath (map.h) */
    rk_transform *tx;
    size_t n_tx;
    int line;
} rk_field_def;

typedef enum {
    RK_RULE_REQUIRED,      /* field non-empty */
    RK_RULE_PATTERN,       /* field matches POSIX ERE arg (whole value) */
    RK_RULE_RANGE,         /* numeric lo <= value <= hi (num[0], num[1]) */
    RK_RULE_NOT_FUTURE,    /* date not after today */
    RK_RULE_AGE_AT_LEAST,  /* date of birth at least num[0] years ago */
    RK_RULE_FEE,           /* paid amount in field == table[arg][value of field2] */
    RK_RULE_DUPLICATE,     /* same key fields within num[0] days */
    RK_RULE_ONE_OF         /* value is one of the words in arg */
} rk_rule_kind;

typedef struct rk_rule {
    rk_rule_kind kind;
    char *code;       /* e.g. MINDESTALTER */
    char *field;      /* the field the rule names */
    rk_severity severity;
    char *message;    /* German, for clerks */
    char *arg;        /* pattern, table name, word list */
    char *field2;     /* RK_RULE_FEE: key field */
    char **keys;      /* RK_RULE_DUPLICATE: key fields */
    size_t n_keys;
    double num[2];
    void *compiled;   /* RK_RULE_PATTERN: regex_t * */
    int line;
} rk_rule;

/* A lookup table: key → value, in the job file. */
typedef struct rk_table {
    char *name;
    char **keys;
    char **values;
    size_t n;
} rk_table;

/* An OASIS genericode code list loaded from schemas/. */
typedef struct rk_codelist {
    char *name;       /* name used by the job */
    char *uri;        /* canonical URI of the list (listURI) */
    char *version;    /* listVersionID */
    char **columns;   /* column ids; columns[0] is the key column */
    size_t n_columns;
    char **cells;     /* n_rows * n_columns, row-major; NULL where empty */
    size_t n_rows;
} rk_codelist;

/* A connector setting as written in the job (values after ${var}
 * substitution). */
typedef struct rk_setting {
    char *key;
    char *value;
} rk_setting;

/* One delivery target of a job: a connector plugin with its settings.
 * A job delivers every record to each of its connectors; name tells
 * them apart (default: the plugin name). */
typedef struct rk_job_connector {
    char *name;
    char *plugin;
    rk_setting *settings;
    size_t n_settings;
    int line;
} rk_job_connector;

typedef struct rk_job {
    int refs;
    char *path;          /* the job file */
    char *name;
    char *title;         /* German display name (Antragsart), or NULL */
    long version;
    char *root_ns;       /* namespace URI of the root element ("" = none) */
    char *root_name;     /* local name of the root element */
    char *schema_path;   /* resolved XSD path */
    xmlSchemaPtr schema; /* compiled, shared read-only by validators */
    char **ns_prefixes;  /* prefixes declared on the job's root element */
    char **ns_uris;
    size_t n_ns;
    rk_field_def *fields;
    size_t n_fields;
    rk_rule *rules;
    size_t n_rules;
    rk_table *tables;
    size_t n_tables;
    rk_codelist *codelists;
    size_t n_codelists;
    rk_job_connector *connectors; /* at least one */
    size_t n_connectors;
    /* <review>: */
    int four_eyes;        /* approver must not be a corrector */
    int64_t deadline_ms;  /* processing deadline from receipt; 0 = none */
    char *reference;      /* mapped field holding the reference number, or NULL */
    int64_t retention_ms; /* automatic purge of finished jobs; 0 = never */
} rk_job;

/* Variables for ${name} substitution in connector settings; ${env:NAME}
 * reads the environment.  Owned by the caller. */
typedef struct rk_vars {
    const char **names;
    const char **values;
    size_t n;
} rk_vars;

/* Loads one job file.  On failure returns NULL and writes a message that
 * names the file and line into err.  The result has refs = 1. */
rk_job *rk_job_load(const char *path, const rk_vars *vars, char *err, size_t errlen);
void rk_job_ref(rk_job *job);
void rk_job_unref(rk_job *job);

const rk_table *rk_job_table(const rk_job *job, const char *name);
const rk_codelist *rk_job_codelist(const rk_job *job, const char *name);
/* Value of column in the row whose key column equals code; NULL if none. */
const char *rk_codelist_lookup(const rk_codelist *cl, const char *code,
                               const char *column);

/* The set of jobs loaded from one directory. */
typedef struct rk_registry rk_registry;

/* Loads every *.xml in dir.  Files that fail are reported through
 * rk_log and listed in *errors (one line each, caller frees; may be NULL)
 * but do not stop the others.  Returns NULL only on a failure to read dir. */
rk_registry *rk_registry_load(const char *dir, const rk_vars *vars, char **errors);
/* Reload: files that load replace their old version; a file that fails
 * keeps the old version of the same job name running. */
int rk_registry_reload(rk_registry *reg, const rk_vars *vars, char **errors);
void rk_registry_free(rk_registry *reg);
size_t rk_registry_count(const rk_registry *reg);
rk_job *rk_registry_at(const rk_registry *reg, size_t i); /* borrowed */
/* The job for a root element; referenced, release with rk_job_unref. */
rk_job *rk_registry_match(rk_registry *reg, const char *ns, const char *local);
rk_job *rk_registry_find(rk_registry *reg, const char *name);

/* A check run on every job a registry loads, after the file itself loaded
 * (the daemon checks the connector settings against the plugin's table).
 * A job that fails it is treated like a broken file: reported, not loaded,
 * and on reload its old version keeps running.  NULL: no check. */
typedef int (*rk_job_validator)(const rk_job *job, void *arg, char *err, size_t errlen);
void rk_registry_set_validator(rk_job_validator fn, void *arg);

/* Installs libxml2's global settings once: an external entity loader that
 * refuses the network and anything outside the local file system. */
void rk_xml_init(void);

#endif /* RK_JOB_H */
