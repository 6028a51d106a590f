/*
 * map.h — the declarative field map and the rules.
 *
 * rk_map_apply evaluates each field's XPath (root element as context, the
 * job's namespace prefixes registered) and runs its transform chain; it
 * records the source value, the XPath and the node path of every field
 * (provenance).  A transform that cannot apply (a date that does not
 * parse, a code not in its list) adds an anomaly instead of guessing.
 *
 * rk_rules_check runs the job's rules over the mapped fields.  Duplicate
 * rules need the store: they add an rk_dup_check to the result, and the
 * engine asks the store on the loop thread.
 *
 * Both are pure functions of their inputs, safe on worker threads; the
 * result is the caller's (rk_result_free).
 */
#ifndef RK_MAP_H
#define RK_MAP_H

#include <libxml/tree.h>
#include "job.h"
#include "record.h"

int rk_map_apply(const rk_job *job, xmlDocPtr doc, rk_result *r);

/* A plain child path: "p:A/p:B/C", element name steps only, each prefix
 * one of the job's.  rk_map_apply walks it from the root element instead
 * of running libxml2's XPath machinery, with the same result (the first
 * matching element in document order, its string value and node path).
 * rk_child_path_compile returns NULL for any other expression (or an
 * undeclared prefix): that one goes through libxml2's XPath. */
typedef struct rk_child_path rk_child_path;
rk_child_path *rk_child_path_compile(const rk_job *job, const char *xpath);
void rk_child_path_free(rk_child_path *p);

/* today is "YYYY-MM-DD" (the engine passes the local date; tests fix it). */
int rk_rules_check(const rk_job *job, rk_result *r, const char *today);

/* Runs the transform chain of field fd on value (used by the map and by
 * corrections in review); doc may be NULL when no CONCAT is involved.
 * Returns a new string or NULL, adding anomalies to r. */
char *rk_map_transform(const rk_job *job, const rk_field_def *fd, xmlDocPtr doc,
                       const char *value, rk_result *r);

/* Parses a date in ISO (YYYY-MM-DD) or German (TT.MM.JJJJ) form into
 * y/m/d; 0 on success, -1 when it is no valid date. */
int rk_date_parse(const char *s, int *y, int *m, int *d);

#endif /* RK_MAP_H */
