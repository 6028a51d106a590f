/*
 * engine.h — the pipeline of rekeyd on one libuv loop.
 *
 * intake (inbox → store) → process (parse, match, validate, map, check on
 * the thread pool) → deliver (connector on the thread pool).  Results come
 * back to the loop thread and are committed in batches: every result that
 * arrived in one loop iteration goes into one transaction (group commit),
 * and what must follow a commit (archiving the source file, starting the
 * next stage) runs only after it.
 *
 * Ownership: the engine keeps pointers to loop and cfg, which must outlive
 * it; it frees itself after rk_engine_stop once its last handle closed
 * and then calls the done callback.
 */
#ifndef RK_ENGINE_H
#define RK_ENGINE_H

#include <uv.h>
#include "config.h"

typedef struct rk_engine rk_engine;

/* once: exit (via done_cb) as soon as the inbox is empty and nothing is in
 * flight.  done_cb(arg, status) runs when the engine has stopped; status is
 * 0 after a clean drain. */
int rk_engine_start(uv_loop_t *loop, const rk_config *cfg, int once,
                    void (*done_cb)(void *arg, int status), void *arg,
                    rk_engine **out, char *err, size_t errlen);

/* Drain: take no new files, finish and commit what is in flight, leave
 * the rest in its durable state for the next start, then stop. */
void rk_engine_stop(rk_engine *e);

/* Re-reads the job folder; broken files keep their old version. */
void rk_engine_reload(rk_engine *e);

/* The job validator the engine installs (rk_registry_set_validator): the
 * job's connector loads and accepts its settings.  arg is the rk_config. */
int rk_engine_check_connector(const rk_job *job, void *arg, char *err, size_t errlen);

#endif /* RK_ENGINE_H */
