/*
 * record.h — the outcome of processing one submission with one job: the
 * mapped fields with their provenance and the anomalies found on the way.
 *
 * Ownership: an rk_result owns all its strings; rk_result_free releases
 * them.  Results are built on worker threads and handed to the loop
 * thread whole.  A worker packs the fields' strings into one block
 * (rk_result_pack_fields) before it hands the result on: the thread
 * that frees it then frees one block, not five strings per field made by
 * another thread.
 */
#ifndef RK_RECORD_H
#define RK_RECORD_H

#include <stddef.h>
#include "job.h"

typedef struct rk_anomaly {
    char *code;      /* e.g. SCHEMA, PFLICHTFELD, MINDESTALTER */
    char *field;     /* target field name, or NULL */
    char *message;   /* German, for clerks; may contain submitted values */
    rk_severity severity;
} rk_anomaly;

typedef struct rk_mapped_field {
    char *name;
    char *value;     /* after transforms; NULL when nothing was found */
    char *source;    /* the value in the submission before transforms */
    char *xpath;     /* the job's expression */
    char *node;      /* the concrete node path (xmlGetNodePath), or NULL */
} rk_mapped_field;

/* A duplicate-rule key computed on a worker, checked against the store on
 * the loop thread. */
typedef struct rk_dup_check {
    size_t rule;     /* index into job->rules */
    char *key;       /* hex SHA-256 of job name and key values */
} rk_dup_check;

typedef struct rk_result {
    rk_mapped_field *fields;
    size_t n_fields;
    rk_anomaly *anomalies;
    size_t n_anomalies;
    rk_dup_check *dups;
    size_t n_dups;
    /* the fields' values as the store keeps them ([[value, source, node],
     * ...]), made on a worker thread (rk_store_fields_json) so that the
     * writer thread only binds it; NULL: the store makes it.  Whoever
     * changes fields after it was made frees it and sets it NULL. */
    char *values_json;
    /* the block the fields' strings were packed into (NULL: none); a
     * string inside it is freed with it, not on its own.  Whoever
     * replaces a field's string frees the old one only if it lies outside
     * (rk_result_owns_string). */
    char *strings;
    size_t strings_len;
} rk_result;

void rk_result_init(rk_result *r);
void rk_result_free(rk_result *r);

/* Copies the strings of every field into one new block and frees them
 * (a block from an earlier call too); the fields then point into it.
 * 0, or -ENOMEM with the fields as they were. */
int rk_result_pack_fields(rk_result *r);

/* Whether p is a field string freed on its own (not in the block). */
int rk_result_owns_string(const rk_result *r, const char *p);
/* Adds an anomaly (copies the strings); message is printf-style. */
void rk_result_add_anomaly(rk_result *r, const char *code, const char *field,
                           rk_severity sev, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The mapped field by name, or NULL. */
const rk_mapped_field *rk_result_field(const rk_result *r, const char *name);
/* 1 when any anomaly has severity block. */
int rk_result_blocked(const rk_result *r);

#endif /* RK_RECORD_H */
