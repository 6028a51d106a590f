/*
 * inbox.h — the directory inbox source.
 *
 * Watches a spool directory with uv_fs_event plus a periodic rescan
 * (network shares send no events).  A file is taken only when complete:
 * its size and mtime were the same on two looks at least settle_ms apart
 * (a file renamed into the inbox whose mtime is already settle_ms old is
 * taken at once).  Names starting with '.' are ignored, so writers may
 * write ".name.tmp" and rename.  Only *.xml and *.xml.gz are taken; any
 * other file goes to the error folder with a reason file.
 *
 * A file is claimed by an atomic rename into <inbox>/.claimed/, the new
 * name carrying this instance's id, so two rekeyd processes on one inbox
 * never take the same file.  The engine then reads it (rk_inbox_read, on
 * the thread pool), stores it durably, and only then calls rk_inbox_done
 * (archive or delete) — or rk_inbox_fail (error folder + NAME.reason).
 *
 * Ownership: strings passed to the claim callback are valid only during
 * the call; copy what you keep.  All functions but rk_inbox_read run on
 * the loop thread.
 */
#ifndef RK_INBOX_H
#define RK_INBOX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct rk_inbox_config {
    const char *path;          /* the spool directory (required) */
    const char *archive_dir;   /* where taken files go; NULL = delete them */
    const char *error_dir;     /* where refused files go (required) */
    unsigned settle_ms;        /* 500 in rekeyd's settings; 0 = take at once */
    unsigned rescan_ms;        /* default 2000 */
    size_t max_file_size;      /* bytes on disk, default 10 MiB */
    size_t max_decompressed;   /* bytes after gunzip, default 50 MiB */
    unsigned max_ratio;        /* decompressed / compressed, default 100 */
} rk_inbox_config;

typedef struct rk_inbox rk_inbox;

/* Called once per claimed file: claimed_path is the file's path under
 * .claimed/, name its original name in the inbox.  recovered is 1 for a
 * file an earlier, dead instance had claimed (it may already be stored)
 * and 0 for a file taken from the inbox now. */
typedef void (*rk_inbox_claim_cb)(rk_inbox *in, const char *claimed_path,
                                  const char *name, int recovered, void *arg);

/* Creates the inbox; creates .claimed/, the archive and error folders
 * when missing.  Files left in .claimed/ by an earlier run are reported
 * to cb on the first scan (the engine checks the store for them).
 * Returns 0 or a negative error, with a message in err. */
int rk_inbox_start(uv_loop_t *loop, const rk_inbox_config *cfg,
                   rk_inbox_claim_cb cb, void *arg, rk_inbox **out,
                   char *err, size_t errlen);

/* Scans now instead of waiting for the next rescan. */
void rk_inbox_scan(rk_inbox *in);

/* 1 when the last scan saw no candidate file (not even an unsettled one)
 * and every claimed file has been passed to the callback. */
int rk_inbox_idle(const rk_inbox *in);

/* Bounded claiming: while held, scans claim nothing (files that are
 * ready wait in the inbox, and the inbox is not idle); releasing the hold
 * scans at once.  The engine holds the inbox while it has claim_ahead
 * files taken in but not yet stored, so memory does not grow with the
 * backlog.  May be called from the claim callback. */
void rk_inbox_hold(rk_inbox *in, int hold);
/* At most n directory entries are looked at per scan (0 = all, the
 * default); with more files in the inbox it is not idle, and the next
 * scan follows at once unless the inbox is held. */
void rk_inbox_set_list_max(rk_inbox *in, size_t n);

/* Reads a claimed file, gunzipping *.gz with the configured caps.
 * Blocking: call it on the thread pool.  On failure returns a negative
 * error and writes the reason (English, for operators) into err.
 * *data is NUL-terminated; the caller frees it. */
int rk_inbox_read(const rk_inbox_config *cfg, const char *claimed_path,
                  const char *name, char **data, size_t *len,
                  char *err, size_t errlen);
/* Reads any file the same way (limits, gunzip) without changing it: a
 * claimed file is made 0600 by rk_inbox_read, a user's file given to
 * `rekeyctl map` keeps its mode. */
int rk_inbox_read_file(const rk_inbox_config *cfg, const char *path, char **data, size_t *len,
                       char *err, size_t errlen);

/* After durable intake: move to the archive folder (keeping the original
 * name, made unique) or delete.  0 or a negative error.  rk_inbox_read
 * made the file 0600 (when rekey may change its mode), so the archive
 * holds it so. */
int rk_inbox_done(rk_inbox *in, const char *claimed_path, const char *name);

/* The file could not be taken in: move it to the error folder and write
 * NAME.reason beside it.  0 or a negative error. */
int rk_inbox_fail(rk_inbox *in, const char *claimed_path, const char *name,
                  const char *reason);

/* Stops watching; close_cb (may be NULL) runs once every handle closed,
 * after which the inbox memory is freed. */
void rk_inbox_stop(rk_inbox *in, void (*close_cb)(void *arg), void *arg);

const rk_inbox_config *rk_inbox_config_of(const rk_inbox *in);

#endif /* RK_INBOX_H */
