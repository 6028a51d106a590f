/*
 * engine.c — see engine.h.
 *
 * Every unit of work is a witem that moves through queues:
 *
 *   intake:  claimed file → [pool: read, gunzip, hash, deflate]
 *            → commit (submission + job row) → archive file → process
 *   process: [pool: parse, match, validate, map, rules]
 *            → commit (duplicates, fields, anomalies, transitions) → deliver
 *   deliver: commit (ready → delivering) → [pool: connector deliver]
 *            → commit (delivered / retry_wait / failed / review)
 *
 * Only the loop thread touches the store, the queues and the counters;
 * pool threads see only their own witem and the immutable job.  The
 * registry is swapped on reload under a rwlock that workers hold while
 * they match a document to its job.
 */
#include "engine.h"

#include <errno.h>
#include <strings.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connector.h"
#include "inbox.h"
#include "job.h"
#include "map.h"
#include "metrics.h"
#include "record.h"
#include "store.h"
#include "util.h"
#include "xmlarena.h"
#include "xmldoc.h"

#define ACTOR "rekeyd"

typedef enum { W_INTAKE, W_PROCESS, W_DELIVER } wkind;
typedef enum { P_NONE, P_FAILED, P_SCHEMA, P_MAPPED, P_NOT_XML } poutcome;

typedef struct slot slot;

typedef struct witem {
    uv_work_t req;
    rk_engine *e;
    wkind kind;
    int phase;             /* W_DELIVER: 0 = begin, 1 = end */
    int tracked;           /* job_id is in the engine's held set */
    int fresh;             /* taken in by this process: no fields, anomalies,
                            * deliveries or key suffix in the store yet */
    int have_res;          /* W_DELIVER: res holds the record (from processing) */
    int quiet_source;      /* W_DELIVER: from the directory inbox, which is told
                            * nothing (no notice row to write) */
    int claimed;           /* W_INTAKE from the inbox: counted in intake_open */
    size_t n_anom0;        /* W_PROCESS: anomalies before the duplicate check */
    struct witem *round;   /* W_PROCESS: the delivery round started in its commit */
    struct witem *onext;   /* intake/process on the pool: next in submission order */
    int pool_done;         /* 1: back from the pool; 2: cancelled there */
    struct witem *next;
    int64_t job_id;
    int rc;
    char err[512];

    /* intake */
    char *source;          /* NULL: the directory inbox */
    char *media;           /* NULL: XML */
    rk_attachment_in *att; /* copies, owned */
    size_t n_att;
    rk_submit_cb ack;      /* networked sources: told after the commit */
    void *ack_arg;
    char *claimed_path;
    char *name;
    char *data;
    size_t len;
    char sha[65];
    void *z;
    size_t zlen;
    char uid[40];
    int64_t received_ms;

    /* process */
    rk_job *job;
    rk_result res;
    poutcome outcome;
    char *root_ns;
    char *root_name;
    char today[16];

    /* deliver: one round over the job's pending deliveries */
    char *job_name;
    const char *to_state;  /* set by commit_round_end, counted once committed */
    int64_t retry_due;     /* set by commit_round_end: the next retry, 0: none */
    struct dpart **parts;
    size_t n_parts;
    size_t outstanding;
} witem;

typedef struct wqueue {
    witem *head, *tail;
    size_t n;
} wqueue;

/* One delivery of a round: one record to one connector of the job. */
typedef struct dpart {
    uv_work_t req;        /* of the first part of a batch */
    struct dpart *next;   /* in its slot's queue, then the next of its batch */
    size_t batch_n;       /* first part of a batch: parts in it */
    witem *round;
    size_t ci;            /* index into round->job->connectors */
    slot *slot;
    rk_delivery d;        /* the delivery row: id, name, attempts, key */
    rk_deliver_status status;
    char message[1024];
    char target_id[256];
    int64_t retry_after_ms;
} dpart;

/* One connector instance per (job, connector name), delivering one record
 * at a time.  It is opened on a worker at its first delivery and reopened
 * when a reload brought a new version of the job. */
struct slot {
    slot *next;
    char *job_name;
    char *conn_name;
    rk_job *job;     /* the version conn was opened for (referenced) */
    rk_conn *conn;
    int busy;
    int paused;      /* after a FATAL answer, until rekeyctl resume or reload */
    dpart *head, *tail;
    size_t n;
};

/* A part not sent because its connector is paused (not an ABI status). */
#define PART_PAUSED ((rk_deliver_status)100)

/* The job ids the engine holds in memory (queued or in flight), so that
 * a sweep of the store never queues a job twice.  Open addressing with
 * linear probing and backward-shift deletion; 0 marks an empty slot (job
 * ids start at 1). */
typedef struct idset {
    int64_t *slot;
    size_t cap; /* a power of two */
    size_t n;
} idset;

static size_t id_hash(int64_t id, size_t cap)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & (cap - 1);
}

static int idset_has(const idset *s, int64_t id)
{
    if (!s->cap)
        return 0;
    for (size_t i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slot[i] == id)
            return 1;
        if (s->slot[i] == 0)
            return 0;
    }
}

static void idset_add(idset *s, int64_t id)
{
    if (idset_has(s, id))
        return;
    if ((s->n + 1) * 2 > s->cap) {
        idset bigger = {calloc(s->cap ? s->cap * 2 : 64, sizeof(int64_t)),
                        s->cap ? s->cap * 2 : 64, 0};
        if (!bigger.slot)
            abort();
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                idset_add(&bigger, s->slot[i]);
        free(s->slot);
        *s = bigger;
    }
    size_t i = id_hash(id, s->cap);
    while (s->slot[i])
        i = (i + 1) & (s->cap - 1);
    s->slot[i] = id;
    s->n++;
}

static void idset_del(idset *s, int64_t id)
{
    if (!s->cap)
        return;
    size_t i = id_hash(id, s->cap);
    while (s->slot[i] != id) {
        if (s->slot[i] == 0)
            return;
        i = (i + 1) & (s->cap - 1);
    }
    s->slot[i] = 0;
    s->n--;
    /* shift later members of the probe run back into the gap */
    for (size_t j = (i + 1) & (s->cap - 1); s->slot[j]; j = (j + 1) & (s->cap - 1)) {
        size_t home = id_hash(s->slot[j], s->cap);
        if (((j - home) & (s->cap - 1)) >= ((j - i) & (s->cap - 1))) {
            s->slot[i] = s->slot[j];
            s->slot[j] = 0;
            i = j;
        }
    }
}

typedef struct src_entry {
    struct src_entry *next;
    const rk_source_ops *ops;
    void *src;
    char *id;               /* its submissions' source, for outcomes */
} src_entry;

struct rk_engine {
    uv_loop_t *loop;
    const rk_config *cfg;
    int once;
    void (*done_cb)(void *, int);
    void *done_arg;

    rk_store *store;
    rk_registry *reg;
    pthread_rwlock_t reg_lock;
    rk_inbox *inbox;
    char source[1100];
    src_entry *sources;    /* networked sources */

    uv_check_t check;
    uv_timer_t commit_timer;  /* wakes the loop when a deferred commit is due */
    uint64_t commit_first_ms; /* uv_now when the oldest uncommitted item arrived */
    uint64_t stat_commits, stat_items, stat_flush_ns, stat_commit_ns, stat_post_ns; /* at stop */
    /* the writer thread: it runs one batch of commitq at a time (statements
     * and COMMIT) while the loop goes on; see "the commit cycle" */
    uv_thread_t writer;
    uv_async_t writer_done;   /* wakes the loop when a batch is written */
    pthread_mutex_t wmu;
    pthread_cond_t wcv;
    int writer_started;
    int writing;              /* loop: a batch is with the writer (until write_finish) */
    int wjob, wdone, wstop;   /* under wmu */
    wqueue wbatch;            /* the batch being written */
    int wok, wfailed;         /* its outcome, for write_finish */
    int reload_pending;       /* SIGHUP while writing: reload after the batch */
    uv_timer_t retry_timer;
    uv_timer_t watch_timer;   /* other writers (rekeyctl), deadlines, purge */
    int64_t data_version;
    int64_t last_overdue_ms;
    int64_t last_purge_ms;
    idset held;               /* job ids queued or in flight */
    idset notices_out;        /* notice ids handed to a source, not yet confirmed */
    idset notices_failed;     /* answered not ok: offered again only after a while */
    int64_t notices_failed_since;
    int64_t last_notice_ms;
    int64_t next_retry_ms;
    int handles_open;

    wqueue intake_wait;
    wqueue process_wait;
    wqueue commitq;
    witem *order_head, *order_tail; /* intake/process items on the pool, in the
                                     * order they were started */
    slot *slots;
    size_t inflight;       /* pool work items running */
    size_t intake_open;    /* inbox files claimed, not yet stored or refused */
    int inbox_held;        /* rk_inbox_hold(1) in force */
    size_t max_inflight;
    size_t process_highwater;
    /* the store could not be written (disk full, locked too long): intake
     * waits until intake_hold_until, then retries; the wait doubles */
    int64_t intake_hold_until, intake_hold_ms;
    char store_err[160];
    int resweep;              /* a result was not recorded: sweep again after the hold */

    int stopping;
    int finished;
    int status;
};

/* ---- queues ------------------------------------------------------------ */

static void q_push(wqueue *q, witem *w)
{
    w->next = NULL;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->n++;
}

static witem *q_pop(wqueue *q)
{
    witem *w = q->head;
    if (w) {
        q->head = w->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        w->next = NULL;
    }
    return w;
}

/* Queues a finished item for the next group commit. */
static void commit_push(rk_engine *e, witem *w)
{
    if (!e->commitq.head)
        e->commit_first_ms = uv_now(e->loop);
    q_push(&e->commitq, w);
}

static witem *witem_new(rk_engine *e, wkind kind)
{
    witem *w = calloc(1, sizeof *w);
    if (!w) {
        rk_error("engine", "out of memory");
        abort();
    }
    w->e = e;
    w->kind = kind;
    w->req.data = w;
    w->n_anom0 = (size_t)-1;
    rk_result_init(&w->res);
    return w;
}

static void witem_free(witem *w)
{
    if (w->claimed)
        w->e->intake_open--;
    if (w->tracked)
        idset_del(&w->e->held, w->job_id);
    for (size_t i = 0; i < w->n_att; i++) {
        free((void *)w->att[i].name);
        free((void *)w->att[i].media_type);
        free((void *)w->att[i].data);
    }
    free(w->att);
    free(w->media);
    free(w->source);
    free(w->claimed_path);
    free(w->name);
    free(w->data);
    free(w->z);
    free(w->root_ns);
    free(w->root_name);
    rk_result_free(&w->res);
    if (w->round)
        witem_free(w->round);
    if (w->job)
        rk_job_unref(w->job);
    for (size_t i = 0; i < w->n_parts; i++)
        free(w->parts[i]);
    free(w->parts);
    free(w->job_name);
    free(w);
}

/* A work item for a job: the job is held in memory until it is freed. */
static witem *job_item(rk_engine *e, wkind kind, int64_t job_id)
{
    witem *w = witem_new(e, kind);
    w->job_id = job_id;
    w->tracked = 1;
    idset_add(&e->held, job_id);
    return w;
}

static void pump(rk_engine *e);
static void maybe_finish(rk_engine *e);
static void store_wait(rk_engine *e);
static int pump_notices(rk_engine *e);

/* ---- intake ------------------------------------------------------------ */

static void process_work(uv_work_t *req);

/* The name of the thread pool's threads (one string: rk_thread_name
 * compares the pointer) */
static const char WORKER_THREAD[] = "rk-worker";

/*
 * Intake and processing in one step: the file is read, hashed and
 * compressed, then parsed, validated, mapped and checked on the same pool
 * thread, and the submission, its job and the result go into one commit
 * (commit_item).  A document passes two group commits instead of three.
 * The file still leaves the inbox only after that commit.
 */
static void intake_work(uv_work_t *req)
{
    witem *w = req->data;
    rk_thread_name(WORKER_THREAD);
    const rk_config *cfg = w->e->cfg;
    int read_here = !w->data;
    if (read_here) { /* a file of the directory inbox; submitted data is in memory */
        w->rc = rk_inbox_read(&cfg->inbox, w->claimed_path, w->name, &w->data, &w->len,
                              w->err, sizeof w->err);
        if (w->rc)
            return;
    }
    rk_sha256_hex(w->data, w->len, w->sha);
    w->rc = rk_deflate(w->data, w->len, &w->z, &w->zlen);
    if (w->rc) {
        snprintf(w->err, sizeof w->err, "cannot compress the document: %s",
                 rk_strerror(w->rc));
        return;
    }
    w->received_ms = rk_now_ms();
    w->rc = rk_uid_new(w->received_ms, w->uid);
    if (w->rc)
        return;
    w->fresh = 1;
    process_work(req);
    if (read_here) {
        /* stored compressed (w->z) and processed: freed by the thread
         * that read it, not by the loop thread after the commit (a free
         * of another thread's block takes that thread's heap lock) */
        free(w->data);
        w->data = NULL;
    }
}

static void after_pool(uv_work_t *req, int status);

/* Starts an intake or process item on the pool; it is committed in this
 * order (see after_pool). */
static void pool_start(rk_engine *e, witem *w, uv_work_cb work)
{
    w->onext = NULL;
    w->pool_done = 0;
    if (e->order_tail)
        e->order_tail->onext = w;
    else
        e->order_head = w;
    e->order_tail = w;
    e->inflight++;
    uv_queue_work(e->loop, &w->req, work, after_pool);
}

/* Back from the pool.  Results are committed in the order the items were
 * started, not the order the workers finish them: job ids follow the
 * order files were claimed in, and of two duplicates the one received
 * later is the one held (DUPLIKAT), whichever worker was faster. */
static void after_pool(uv_work_t *req, int status)
{
    witem *w = req->data;
    rk_engine *e = w->e;
    e->inflight--;
    w->pool_done = status == UV_ECANCELED && w->kind == W_INTAKE ? 2 : 1;
    while (e->order_head && e->order_head->pool_done) {
        witem *x = e->order_head;
        e->order_head = x->onext;
        if (!e->order_head)
            e->order_tail = NULL;
        if (x->pool_done == 2)
            witem_free(x); /* the file stays claimed and is recovered next start */
        else
            commit_push(e, x);
    }
}

/* The inbox claimed a file.  A file that an earlier run already stored
 * (it crashed between commit and archive) is only archived now. */
static void on_claim(rk_inbox *in, const char *claimed_path, const char *name, int recovered,
                     void *arg)
{
    rk_engine *e = arg;
    if (e->stopping)
        return; /* stays in .claimed/ and is taken on the next start */
    int64_t job_id;
    if (recovered)
        store_wait(e);
    if (recovered && rk_store_find_source_ref(e->store, e->source, name, &job_id) == 0) {
        /* only when the claimed file is byte-identical could it be the same
         * submission; a re-used name with new content is a new submission */
        char *data = NULL;
        size_t len = 0;
        char err[256];
        char sha[65] = "";
        if (rk_inbox_read(&e->cfg->inbox, claimed_path, name, &data, &len, err, sizeof err) == 0)
            rk_sha256_hex(data, len, sha);
        free(data);
        char *stored = NULL, *uid = NULL;
        size_t slen = 0;
        char ssha[65] = "";
        if (rk_store_load_payload(e->store, job_id, e->cfg->max_document, &stored, &slen,
                                  &uid) == 0)
            rk_sha256_hex(stored, slen, ssha);
        free(stored);
        free(uid);
        if (sha[0] && strcmp(sha, ssha) == 0) {
            rk_info("intake", "job %lld: file was stored before a restart; archiving it now",
                    (long long)job_id);
            rk_inbox_done(e->inbox, claimed_path, name);
            return;
        }
    }
    witem *w = witem_new(e, W_INTAKE);
    w->claimed_path = strdup(claimed_path);
    w->name = strdup(name);
    w->claimed = 1;
    if (++e->intake_open >= e->cfg->claim_ahead && !e->inbox_held) {
        /* enough taken ahead of processing: the rest waits in the inbox */
        e->inbox_held = 1;
        rk_inbox_hold(in, 1);
    }
    q_push(&e->intake_wait, w);
    pump(e);
}

int rk_engine_submit(rk_engine *e, const char *source, const char *source_ref,
                     const void *data, size_t len, rk_submit_cb ack, void *arg)
{
    rk_submit_args a = {source, source_ref, data, len, NULL, NULL, 0};
    return rk_engine_submit2(e, &a, ack, arg);
}

/* XML media types go through the pipeline; anything else is held. */
static int media_is_xml(const char *m)
{
    if (!m || !*m)
        return 1;
    size_t n = strcspn(m, ";");
    return (n >= 4 && strncasecmp(m + n - 4, "/xml", 4) == 0) ||
           (n >= 4 && strncasecmp(m + n - 4, "+xml", 4) == 0);
}

int rk_engine_submit2(rk_engine *e, const rk_submit_args *a, rk_submit_cb ack, void *arg)
{
    if (e->stopping)
        return RK_E_STATE;
    if (a->len > e->cfg->max_document)
        return RK_E_LIMIT;
    witem *w = witem_new(e, W_INTAKE);
    w->source = strdup(a->source);
    w->name = strdup(a->source_ref);
    w->data = rk_strndup(a->data, a->len);
    w->len = a->len;
    w->media = a->media_type && !media_is_xml(a->media_type) ? strdup(a->media_type) : NULL;
    w->ack = ack;
    w->ack_arg = arg;
    int oom = !w->source || !w->name || !w->data ||
              (a->media_type && !media_is_xml(a->media_type) && !w->media);
    if (a->n_attachments) {
        w->att = calloc(a->n_attachments, sizeof *w->att);
        oom |= !w->att;
        for (size_t i = 0; w->att && i < a->n_attachments; i++) {
            const rk_attachment_in *in = &a->attachments[i];
            w->att[i].name = strdup(in->name ? in->name : "");
            w->att[i].media_type = in->media_type ? strdup(in->media_type) : NULL;
            w->att[i].data = rk_strndup(in->data, in->len);
            w->att[i].len = in->len;
            w->n_att++;
            oom |= !w->att[i].name || !w->att[i].data;
        }
    }
    if (oom) {
        witem_free(w);
        return -ENOMEM;
    }
    q_push(&e->intake_wait, w);
    pump(e);
    return 0;
}

static int commit_intake(rk_engine *e, witem *w)
{
    w->job_id = 0; /* stored by commit_process (again, after a rollback) */
    if (w->rc)
        return w->rc;
    if (w->source) {
        /* a source that fetched the same submission twice stores it once */
        int rc = rk_store_find_source_ref(e->store, w->source, w->name, &w->job_id);
        if (rc == 0) {
            w->phase = 1; /* mark: already stored, nothing to process */
            return 0;
        }
        if (rc != RK_E_NOTFOUND)
            return rc;
    }
    return 0;
}

/* The submission of an intake item with its job, in the last state of a
 * (one insert of the job row instead of an insert and an update), then
 * its media type and attachments. */
static int store_intake(rk_engine *e, witem *w, const rk_advance *a)
{
    rk_submission_in in = {
        .uid = w->uid,
        .source = w->source ? w->source : e->source,
        .source_ref = w->name,
        .sha256 = w->sha,
        .size = w->len,
        .zpayload = w->z,
        .zlen = w->zlen,
        .received_ms = w->received_ms,
    };
    int rc = rk_store_add_processed(e->store, &in, a, &w->job_id);
    if (!rc && w->media)
        rc = rk_store_set_media(e->store, w->job_id, w->media);
    for (size_t i = 0; !rc && i < w->n_att; i++)
        rc = rk_store_add_attachment(e->store, w->job_id, w->att[i].name,
                                     w->att[i].media_type, w->att[i].data, w->att[i].len);
    return rc;
}

/* Pauses intake after a failed store write, for 0.5 s doubling up to
 * 10 s, with one log line naming the cause each time. */
static void intake_hold(rk_engine *e)
{
    int64_t now = rk_now_ms();
    if (e->intake_hold_until > now)
        return; /* this batch already set the hold */
    e->intake_hold_ms = e->intake_hold_ms ? e->intake_hold_ms * 2 : 500;
    if (e->intake_hold_ms > 10000)
        e->intake_hold_ms = 10000;
    e->intake_hold_until = now + e->intake_hold_ms;
    rk_error("intake", "intake paused: the store cannot be written: %s; files stay claimed "
                       "in the inbox and are taken in again in %lld ms",
             e->store_err[0] ? e->store_err : "unknown error", (long long)e->intake_hold_ms);
}

static void post_process(rk_engine *e, witem *w, int committed);

static void post_intake(rk_engine *e, witem *w, int committed)
{
    if (w->ack) {
        /* a networked source: it acknowledges upstream only now */
        if (!committed && !w->rc)
            w->rc = RK_E_DB;
        w->ack(w->ack_arg, w->rc, w->rc ? 0 : w->job_id,
               w->rc ? (w->err[0] ? w->err : rk_strerror(w->rc)) : NULL);
        if (w->rc || w->phase == 1) {
            witem_free(w);
            return;
        }
    } else if (w->rc) {
        /* could not be taken in: error folder with the reason beside it */
        rk_inbox_fail(e->inbox, w->claimed_path, w->name, w->err);
        witem_free(w);
        return;
    } else if (!committed) {
        /* the store could not be written (SQLITE_FULL, SQLITE_BUSY after
         * the busy timeout): transient, so the file is not refused; it
         * stays claimed and is taken in again when the hold ends, without
         * a restart (a crash meanwhile: recovered at the next start).
         * --once has no timer to end a hold: it leaves the file claimed
         * for the next run, as before */
        if (e->once) {
            witem_free(w);
            return;
        }
        witem *again = witem_new(e, W_INTAKE);
        again->claimed_path = w->claimed_path;
        again->name = w->name;
        again->claimed = w->claimed; /* still open: counted in intake_open */
        w->claimed = 0;
        w->claimed_path = w->name = NULL;
        q_push(&e->intake_wait, again);
        intake_hold(e);
        witem_free(w);
        return;
    }
    if (!w->ack) {
        int rc = rk_inbox_done(e->inbox, w->claimed_path, w->name);
        if (rc)
            rk_warn("intake", "job %lld: stored, but the inbox file could not be archived: %s",
                    (long long)w->job_id, rk_strerror(rc));
    }
    rk_metrics_submission_received(w->source ? w->source : e->source);
    /* processed in the same commit: its next step, as for a job item */
    free(w->data);
    w->data = NULL;
    w->tracked = 1;
    idset_add(&e->held, w->job_id);
    post_process(e, w, 1);
}

/* ---- process ----------------------------------------------------------- */

static void process_doc(witem *w, rk_engine *e);

/* libxml2's allocations for the document come from the thread's region
 * (xmlarena.h): about a thousand mallocs and frees fewer per document,
 * and its tree is not walked to be freed */
static void process_work(uv_work_t *req)
{
    witem *w = req->data;
    rk_thread_name(WORKER_THREAD);
    rk_xml_arena_begin();
    process_doc(w, w->e);
    rk_xml_arena_end();
}

static void process_doc(witem *w, rk_engine *e)
{
    if (w->media) {
        w->outcome = P_NOT_XML;
        rk_result_add_anomaly(&w->res, "DATEN_KEIN_XML", NULL, RK_SEV_BLOCK,
                              "Die Einreichung enthält Daten vom Typ %.100s; keine Antragsart "
                              "verarbeitet sie. Bitte von Hand bearbeiten oder ablehnen.",
                              w->media);
        return;
    }
    const char *code = NULL;
    char msg[600];
    xmlDocPtr doc = rk_doc_parse(w->data, w->len, &code, msg, sizeof msg);
    if (!doc) {
        w->outcome = P_FAILED;
        rk_result_add_anomaly(&w->res, code ? code : "XML_MALFORMED", NULL, RK_SEV_BLOCK, "%s",
                              msg);
        return;
    }
    const char *ns, *local;
    rk_doc_root(doc, &ns, &local);
    w->root_ns = strdup(ns ? ns : "");
    w->root_name = strdup(local ? local : "");
    pthread_rwlock_rdlock(&e->reg_lock);
    w->job = rk_registry_match(e->reg, w->root_ns, w->root_name);
    pthread_rwlock_unlock(&e->reg_lock);
    if (!w->job) {
        w->outcome = P_FAILED;
        rk_result_add_anomaly(&w->res, "KEIN_VERFAHREN", NULL, RK_SEV_BLOCK,
                              "Für das Wurzelelement {%s}%s ist keine Antragsart eingerichtet.",
                              w->root_ns, w->root_name);
        rk_xml_free_doc(doc);
        return;
    }
    if (rk_doc_validate(w->job, doc, &w->res) > 0) {
        w->outcome = P_SCHEMA;
        rk_xml_free_doc(doc);
        return;
    }
    rk_map_apply(w->job, doc, &w->res);
    rk_rules_check(w->job, &w->res, w->today);
    w->outcome = P_MAPPED;
    rk_xml_free_doc(doc);
    /* the result is freed on another thread: one block for all its
     * fields' strings instead of five per field (docs/performance.md,
     * step 50); without memory for the block they stay as they are */
    (void)rk_result_pack_fields(&w->res);
    /* the JSON of the fields row here rather than on the writer thread,
     * which the backlog keeps busier (NULL: the store makes it there) */
    if (w->res.n_fields)
        w->res.values_json = rk_store_fields_json(&w->res);
}

/* The codes of the anomalies, for event reasons (codes only: messages
 * may quote the citizen's data and the event trail outlives payloads). */
static void anomaly_codes(const rk_result *r, int block_only, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->n_anomalies && used < n; i++) {
        if (block_only && r->anomalies[i].severity != RK_SEV_BLOCK)
            continue;
        int k = snprintf(out + used, n - used, "%s%s", used ? ", " : "", r->anomalies[i].code);
        if (k > 0)
            used += (size_t)k;
    }
}

/* Drops the anomalies the duplicate check added in an earlier, rolled
 * back attempt at committing this item. */
static void drop_dup_anomalies(witem *w)
{
    while (w->res.n_anomalies > w->n_anom0) {
        rk_anomaly *a = &w->res.anomalies[--w->res.n_anomalies];
        free(a->code);
        free(a->field);
        free(a->message);
    }
}

/* Writes the job's fields and anomalies: without deleting first when the
 * job is new (the common case; two statements fewer per document). */
static int save_result(rk_engine *e, witem *w)
{
    return w->fresh ? rk_store_add_result(e->store, w->job_id, &w->res)
                    : rk_store_save_result(e->store, w->job_id, &w->res);
}

/* The job after processing: its row with every state of path a (with the
 * submission, for an intake item not stored yet), its duplicate keys and
 * its result. */
static int write_processed(rk_engine *e, witem *w, const rk_advance *a, int64_t now_ms)
{
    int rc = w->job_id ? rk_store_advance(e->store, w->job_id, a) : store_intake(e, w, a);
    for (size_t i = 0; !rc && i < w->res.n_dups; i++)
        rc = rk_store_dup_add(e->store, w->job_id, w->res.dups[i].key, now_ms);
    return rc ? rc : save_result(e, w);
}

static int round_prepare(rk_engine *e, witem *w);

/* The job's row after processing, written once with every state it
 * passed (rk_store_advance): the match, and the reference and deadline
 * when meta. */
static rk_advance process_advance(const witem *w, int meta)
{
    rk_advance a = {.actor = ACTOR,
                    .path = {RK_ST_RECEIVED},
                    .match = 1,
                    .job = w->job ? w->job->name : NULL,
                    .job_version = w->job ? w->job->version : 0,
                    .root_ns = w->root_ns,
                    .root_name = w->root_name};
    if (meta && w->job) {
        const rk_mapped_field *ref =
            w->job->reference ? rk_result_field(&w->res, w->job->reference) : NULL;
        a.meta = (ref && ref->value) || w->job->deadline_ms;
        a.reference = ref ? ref->value : NULL;
        a.deadline_ms = w->job->deadline_ms;
    }
    return a;
}

static void advance_step(rk_advance *a, const char *to, const char *reason)
{
    a->reason[a->steps] = reason;
    a->path[++a->steps] = to;
}

static int commit_process(rk_engine *e, witem *w)
{
    rk_store *s = e->store;
    if (w->n_anom0 == (size_t)-1)
        w->n_anom0 = w->res.n_anomalies;
    else
        drop_dup_anomalies(w); /* committed again after a rollback */
    int rc;
    int64_t now = rk_now_ms();
    char codes[512];
    if (w->outcome == P_NOT_XML || w->outcome == P_FAILED) {
        rk_advance a = process_advance(w, 0);
        anomaly_codes(&w->res, 0, codes, sizeof codes);
        if (w->outcome == P_NOT_XML)
            advance_step(&a, RK_ST_REVIEW, "held: DATEN_KEIN_XML");
        else
            advance_step(&a, RK_ST_FAILED, codes);
        return write_processed(e, w, &a, now);
    }
    if (w->outcome == P_SCHEMA) {
        rk_advance a = process_advance(w, 0);
        a.meta = w->job->deadline_ms != 0;
        a.deadline_ms = w->job->deadline_ms;
        advance_step(&a, RK_ST_REVIEW, "SCHEMA: document violates the job's XSD");
        return write_processed(e, w, &a, now);
    }
    /* duplicates need the store, so they are checked here (a new job,
     * w->job_id 0, is not stored yet: its keys are recorded with it) */
    for (size_t i = 0; i < w->res.n_dups; i++) {
        const rk_rule *r = &w->job->rules[w->res.dups[i].rule];
        int64_t other = 0;
        rc = rk_store_dup_find(s, w->job_id, w->res.dups[i].key, r->num[0], now, &other);
        if (rc)
            return rc;
        if (other)
            rk_result_add_anomaly(&w->res, r->code, r->field, r->severity,
                                  "%s (vgl. Vorgang %lld)", r->message, (long long)other);
    }
    rk_advance a = process_advance(w, 1);
    char why[128], reason[600];
    advance_step(&a, RK_ST_VALIDATED, "valid against the job's XSD");
    snprintf(why, sizeof why, "%zu fields mapped by job %s version %ld", w->res.n_fields,
             w->job->name, w->job->version);
    advance_step(&a, RK_ST_MAPPED, why);
    if (rk_result_blocked(&w->res)) {
        anomaly_codes(&w->res, 1, codes, sizeof codes);
        snprintf(reason, sizeof reason, "held: %s", codes);
        advance_step(&a, RK_ST_REVIEW, reason);
        return write_processed(e, w, &a, now);
    }
    anomaly_codes(&w->res, 0, codes, sizeof codes);
    snprintf(reason, sizeof reason, "%s%s", codes[0] ? "passed with notes: " : "all rules passed",
             codes);
    advance_step(&a, RK_ST_READY, reason);
    /* ready → delivering in the same write: the delivery round starts
     * without a commit of its own (one group commit less per document;
     * still durable before any connector runs) */
    advance_step(&a, RK_ST_DELIVERING, NULL);
    if ((rc = write_processed(e, w, &a, now)) != 0)
        return rc;
    if (!w->round) {
        witem *d = witem_new(e, W_DELIVER);
        d->job_name = strdup(w->job->name);
        d->fresh = w->fresh;
        d->have_res = w->fresh; /* handed over in post_process */
        d->quiet_source = w->fresh && !w->source;
        memcpy(d->uid, w->uid, sizeof d->uid);
        if (!d->job_name) {
            witem_free(d);
            return -ENOMEM;
        }
        w->round = d;
    }
    w->round->job_id = w->job_id; /* an intake written again has a new id */
    return round_prepare(e, w->round);
}

static witem *enqueue_delivery(rk_engine *e, int64_t job_id, const char *job_name);
static void post_deliver(rk_engine *e, witem *w, int committed);

static void post_process(rk_engine *e, witem *w, int committed)
{
    if (!committed) {
        witem_free(w);
        return;
    }
    const char *jn = w->job ? w->job->name : "";
    if (w->outcome == P_MAPPED) {
        rk_metrics_transition(jn, RK_ST_VALIDATED);
        rk_metrics_transition(jn, RK_ST_MAPPED);
        rk_metrics_transition(jn, rk_result_blocked(&w->res) ? RK_ST_REVIEW : RK_ST_READY);
    } else {
        rk_metrics_transition(jn, w->outcome == P_FAILED ? RK_ST_FAILED : RK_ST_REVIEW);
    }
    if (w->received_ms && w->outcome != P_FAILED)
        rk_metrics_processing_observe((double)(rk_now_ms() - w->received_ms) / 1000.0);
    if (w->outcome == P_MAPPED && !rk_result_blocked(&w->res) && w->round) {
        witem *d = w->round;
        w->round = NULL;
        w->tracked = 0; /* the delivery round holds the job from here */
        d->tracked = 1;
        if (d->have_res) {
            /* the record goes on in memory: the round does not read back
             * what was just written */
            rk_result_free(&d->res);
            d->res = w->res;
            rk_result_init(&w->res);
        }
        witem_free(w);
        post_deliver(e, d, 1); /* ready → delivering is committed */
        return;
    }
    witem_free(w);
}

/* ---- deliver ----------------------------------------------------------- */

static slot *slot_for(rk_engine *e, const char *job_name, const char *conn_name)
{
    for (slot *s = e->slots; s; s = s->next)
        if (strcmp(s->job_name, job_name) == 0 && strcmp(s->conn_name, conn_name) == 0)
            return s;
    slot *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->job_name = strdup(job_name);
    s->conn_name = strdup(conn_name);
    s->next = e->slots;
    e->slots = s;
    return s;
}

/* Queues a delivery round for a job in state ready.  The round first
 * commits ready → delivering (durable before any connector runs, so a
 * crash mid-delivery is seen and redelivered with the same keys). */
static witem *enqueue_delivery(rk_engine *e, int64_t job_id, const char *job_name)
{
    witem *w = job_item(e, W_DELIVER, job_id);
    w->job_name = strdup(job_name);
    commit_push(e, w);
    return w;
}

/* The record of a part, for the connector: kv (n_fields entries) is the
 * caller's, sub at least 32 bytes. */
static void part_record(dpart *p, rk_kv *kv, char *sub, rk_record *rec)
{
    witem *w = p->round;
    for (size_t i = 0; i < w->res.n_fields; i++) {
        kv[i].name = w->res.fields[i].name;
        kv[i].value = w->res.fields[i].value;
    }
    snprintf(sub, 32, "%lld", (long long)w->job_id);
    *rec = (rk_record){
        .struct_size = sizeof *rec,
        .idempotency_key = p->d.key,
        .submission_id = sub,
        .job_name = w->job->name,
        .fields = kv,
        .n_fields = w->res.n_fields,
    };
}

/* Delivers the batch that starts at head: with the connector's
 * deliver_batch when it has one (one transaction in the target for all
 * of them), else one record after the other.  After a FATAL answer the
 * rest of the batch is not sent (the slot is paused). */
static void deliver_work(uv_work_t *req)
{
    dpart *head = req->data;
    witem *w0 = head->round;
    slot *s = head->slot;
    rk_thread_name(WORKER_THREAD);
    const rk_job_connector *jc = &w0->job->connectors[head->ci];
    const rk_config *cfg = w0->e->cfg;
    if (!s->conn) {
        char err[512];
        rk_plugin *pl = rk_plugin_load(cfg->plugin_path, jc->plugin, err, sizeof err);
        if (pl)
            s->conn = rk_conn_open(pl, w0->job->name, jc->settings, jc->n_settings, err,
                                   sizeof err);
        if (!s->conn) {
            /* the target may be down (a database restarting): retried with
             * backoff like any transient failure, not a pause */
            for (dpart *p = head; p; p = p->next) {
                p->status = RK_DELIVER_RETRY;
                snprintf(p->message, sizeof p->message, "connector %s unavailable: %s",
                         jc->name, err);
            }
            return;
        }
    }
    size_t n = head->batch_n, nf = 0;
    for (dpart *p = head; p; p = p->next)
        nf += p->round->res.n_fields;
    rk_kv *kv = calloc(nf ? nf : 1, sizeof *kv);
    rk_record *recs = calloc(n, sizeof *recs);
    const rk_record **rp = calloc(n, sizeof *rp);
    rk_conn_answer *ans = calloc(n, sizeof *ans);
    char (*subs)[32] = calloc(n, sizeof *subs);
    if (!kv || !recs || !rp || !ans || !subs) {
        for (dpart *p = head; p; p = p->next) {
            p->status = RK_DELIVER_RETRY;
            snprintf(p->message, sizeof p->message, "out of memory");
        }
        goto out;
    }
    size_t i = 0, k = 0;
    for (dpart *p = head; p; p = p->next, i++) {
        part_record(p, kv + k, subs[i], &recs[i]);
        k += p->round->res.n_fields;
        rp[i] = &recs[i];
        ans[i] = (rk_conn_answer){RK_DELIVER_RETRY, p->message, sizeof p->message,
                                  p->target_id, sizeof p->target_id, -1};
    }
    if (rk_conn_can_batch(s->conn)) {
        rk_conn_deliver_batch(s->conn, n, rp, ans);
        i = 0;
        for (dpart *p = head; p; p = p->next, i++) {
            p->status = ans[i].status;
            p->retry_after_ms = ans[i].retry_after_ms;
        }
    } else {
        int fatal = 0;
        i = 0;
        for (dpart *p = head; p; p = p->next, i++) {
            if (fatal) {
                p->status = PART_PAUSED;
                continue;
            }
            p->status = rk_conn_deliver(s->conn, rp[i], p->message, sizeof p->message,
                                        p->target_id, sizeof p->target_id,
                                        &p->retry_after_ms);
            fatal = p->status == RK_DELIVER_FATAL;
        }
    }
out:
    free(kv);
    free(recs);
    free(rp);
    free(ans);
    free(subs);
}

/* Capped exponential backoff with full jitter: the n-th retry waits a
 * random time up to min(max, initial * 2^(n-1)), so many jobs failing at
 * once do not come back at once.  A connector's retry-after wins. */
static int64_t backoff_ms(const rk_config *cfg, int attempts, int64_t retry_after)
{
    if (retry_after >= 0)
        return retry_after;
    double d = (double)cfg->backoff_initial_ms;
    for (int i = 1; i < attempts && d < (double)cfg->backoff_max_ms; i++)
        d *= 2;
    if (d > (double)cfg->backoff_max_ms)
        d = (double)cfg->backoff_max_ms;
    int64_t cap = (int64_t)d;
    return cap > 0 ? (int64_t)(random() % (cap + 1)) : 0;
}

/* Round, phase 0 without the state: the job definition, the record,
 * and a delivery row per connector (the ones still pending become the
 * round's parts). */
static int round_prepare(rk_engine *e, witem *w)
{
    rk_store *s = e->store;
    /* committed again after a rollback: start over */
    for (size_t i = 0; i < w->n_parts; i++)
        free(w->parts[i]);
    free(w->parts);
    w->parts = NULL;
    w->n_parts = 0;
    if (w->job)
        rk_job_unref(w->job);
    pthread_rwlock_rdlock(&e->reg_lock);
    w->job = rk_registry_find(e->reg, w->job_name);
    pthread_rwlock_unlock(&e->reg_lock);
    if (!w->job) {
        rk_warn("deliver", "job %lld waits in state ready: job %s is not loaded",
                (long long)w->job_id, w->job_name);
        return RK_E_NOTFOUND;
    }
    rk_job_info ji;
    int rc;
    if (w->fresh && w->have_res && w->uid[0]) {
        /* taken in and mapped by this process: the uid and record are at
         * hand, and a new job has no key suffix (only replays do) */
        ji.key_suffix[0] = '\0';
    } else {
        if ((rc = rk_store_job_info(s, w->job_id, &ji)) != 0)
            return rc;
        snprintf(w->uid, sizeof w->uid, "%s", ji.uid);
        rk_result_free(&w->res);
        rk_result_init(&w->res);
        if ((rc = rk_store_load_result(s, w->job_id, &w->res)) != 0)
            return rc;
    }
    w->parts = calloc(w->job->n_connectors, sizeof *w->parts);
    if (!w->parts)
        return -ENOMEM;
    for (size_t i = 0; i < w->job->n_connectors; i++) {
        const rk_job_connector *jc = &w->job->connectors[i];
        /* stable for the submission, job and connector; a replay asked
         * for new keys adds its suffix */
        char key[160];
        snprintf(key, sizeof key, "%s:%s:%s%s%s", w->uid, w->job->name, jc->name,
                 ji.key_suffix[0] ? ":" : "", ji.key_suffix);
        rk_delivery d;
        /* a job taken in by this process has no delivery rows: each is
         * written with its first outcome (one statement less per job) */
        rc = w->fresh && w->have_res
                 ? rk_store_delivery_new(w->job_id, jc->name, jc->plugin, key, &d)
                 : rk_store_delivery_get(s, w->job_id, jc->name, jc->plugin, key, &d);
        if (rc != 0)
            return rc;
        if (strcmp(d.state, "pending") != 0)
            continue; /* delivered in an earlier round */
        dpart *p = calloc(1, sizeof *p);
        if (!p)
            return -ENOMEM;
        p->req.data = p;
        p->round = w;
        p->ci = i;
        p->d = d;
        p->retry_after_ms = -1;
        w->parts[w->n_parts++] = p;
    }
    return 0;
}

/* Round, phase 0: ready → delivering, and the pending deliveries with
 * the record they carry. */
static int commit_round_start(rk_engine *e, witem *w)
{
    int rc = round_prepare(e, w);
    return rc ? rc
              : rk_store_transition(e->store, w->job_id, RK_ST_READY, RK_ST_DELIVERING, ACTOR,
                                    NULL);
}

/* Round, phase 1: record each delivery and decide the job's state: all
 * delivered → delivered; any refused → review; any out of attempts →
 * failed; otherwise the ones left are retried after backoff. */
static int commit_round_end(rk_engine *e, witem *w)
{
    rk_store *s = e->store;
    int rc = 0, refused = 0, failed = 0, retry = 0, paused = 0, max_attempts = 0;
    int64_t due = 0;
    char first_target[256] = "";
    rk_buf why;
    rk_buf_init(&why, 4096);
    for (size_t i = 0; i < w->n_parts && !rc; i++) {
        dpart *p = w->parts[i];
        const char *name = p->d.name;
        if (p->status == RK_DELIVER_FATAL || p->status == PART_PAUSED) {
            /* the connector, not the record: no attempt is counted, the
             * delivery waits until the connector is resumed */
            paused++;
            if (p->status == RK_DELIVER_FATAL)
                rc = rk_store_pause_set(s, w->job->name, name, p->message);
            if (!rc)
                rc = rk_store_delivery_record(s, &p->d, "pending", p->d.attempts,
                                           p->status == RK_DELIVER_FATAL ? p->message : NULL,
                                           NULL);
            rk_buf_appendf(&why, "%s%s: connector paused%s%s", why.len ? "; " : "", name,
                           p->status == RK_DELIVER_FATAL ? ": " : "",
                           p->status == RK_DELIVER_FATAL ? p->message : "");
            if (p->d.attempts > max_attempts)
                max_attempts = p->d.attempts;
            continue;
        }
        int attempts = p->d.attempts + 1;
        if (attempts > max_attempts)
            max_attempts = attempts;
        switch (p->status) {
        case RK_DELIVER_OK:
            rc = rk_store_delivery_record(s, &p->d, "delivered", attempts, NULL, p->target_id);
            if (!first_target[0])
                snprintf(first_target, sizeof first_target, "%s", p->target_id);
            rk_buf_appendf(&why, "%s%s: delivered%s%s", why.len ? "; " : "", name,
                           p->target_id[0] ? ", target id " : "", p->target_id);
            break;
        case RK_DELIVER_PERMANENT:
            refused++;
            rc = rk_store_delivery_record(s, &p->d, "refused", attempts, p->message, NULL);
            if (!rc)
                rc = rk_store_add_anomaly(s, w->job_id, "ANBINDUNG_ABGELEHNT", NULL,
                                          RK_SEV_BLOCK, p->message);
            rk_buf_appendf(&why, "%s%s: refused by the target", why.len ? "; " : "", name);
            break;
        default: /* RETRY: the record is fine, the target is not (yet) */
            if (attempts >= e->cfg->max_attempts) {
                failed++;
                rc = rk_store_delivery_record(s, &p->d, "failed", attempts, p->message, NULL);
                rk_buf_appendf(&why, "%s%s: attempts used up (%d): %s", why.len ? "; " : "",
                               name, attempts, p->message);
            } else {
                retry++;
                rc = rk_store_delivery_record(s, &p->d, "pending", attempts, p->message, NULL);
                int64_t t = rk_now_ms() + backoff_ms(e->cfg, attempts, p->retry_after_ms);
                if (!due || t < due)
                    due = t;
                rk_buf_appendf(&why, "%s%s: attempt %d: %s", why.len ? "; " : "", name,
                               attempts, p->message);
            }
            break;
        }
    }
    const char *last_error = NULL;
    for (size_t i = 0; i < w->n_parts; i++)
        if (w->parts[i]->status != RK_DELIVER_OK)
            last_error = w->parts[i]->message;
    /* retry_wait without a due time waits for a paused connector */
    const char *to = refused          ? RK_ST_REVIEW
                     : failed         ? RK_ST_FAILED
                     : retry || paused ? RK_ST_RETRY_WAIT
                                      : RK_ST_DELIVERED;
    if (!rc)
        rc = rk_store_advance(s, w->job_id,
                              &(rk_advance){.actor = ACTOR,
                                            .path = {RK_ST_DELIVERING, to},
                                            .reason = {why.len ? why.data : "nothing left to deliver"},
                                            .steps = 1,
                                            .delivery = 1,
                                            .attempts = max_attempts,
                                            .next_attempt_ms = retry ? due : 0,
                                            .last_error = last_error,
                                            .target_id = first_target,
                                            .quiet_source = w->quiet_source});
    w->to_state = to;
    w->retry_due = !rc && retry && strcmp(to, RK_ST_RETRY_WAIT) == 0 ? due : 0;
    rk_buf_free(&why);
    return rc;
}

static int commit_deliver(rk_engine *e, witem *w)
{
    return w->phase == 0 ? commit_round_start(e, w) : commit_round_end(e, w);
}

static void after_part(uv_work_t *req, int status)
{
    dpart *head = req->data;
    slot *sl = head->slot;
    rk_engine *e = head->round->e;
    (void)status;
    e->inflight--;
    sl->busy = 0;
    dpart *next;
    for (dpart *p = head; p; p = next) {
        next = p->next;
        if (p->status == RK_DELIVER_FATAL) {
            if (sl->conn)
                rk_conn_close(sl->conn); /* reopened after the resume */
            sl->conn = NULL;
            if (!sl->paused)
                rk_error("deliver", "connector %s of job %s answered FATAL and is paused: %s; "
                                    "resume with `rekeyctl resume %s %s` or SIGHUP",
                         sl->conn_name, sl->job_name, p->message, sl->job_name,
                         sl->conn_name);
            sl->paused = 1;
        }
        witem *w = p->round;
        if (--w->outstanding == 0)
            commit_push(e, w); /* phase 1 */
    }
}

static void arm_retry_timer(rk_engine *e);

static void post_deliver(rk_engine *e, witem *w, int committed)
{
    if (w->phase == 0) {
        if (!committed) {
            witem_free(w); /* stays ready; picked up again by a later sweep or start */
            return;
        }
        w->phase = 1;
        rk_metrics_transition(w->job->name, RK_ST_DELIVERING);
        if (w->n_parts == 0) {
            commit_push(e, w); /* everything was delivered before */
            return;
        }
        w->outstanding = 0;
        for (size_t i = 0; i < w->n_parts; i++) {
            dpart *p = w->parts[i];
            p->slot = slot_for(e, w->job->name, p->d.name);
            if (p->slot->paused) {
                p->status = PART_PAUSED;
                continue;
            }
            w->outstanding++;
            p->next = NULL;
            if (p->slot->tail)
                p->slot->tail->next = p;
            else
                p->slot->head = p;
            p->slot->tail = p;
            p->slot->n++;
        }
        if (w->outstanding == 0)
            commit_push(e, w); /* every connector of the job is paused */
        return;
    }
    if (committed && w->to_state) {
        static const char *const result[] = {[RK_DELIVER_OK] = "ok",
                                             [RK_DELIVER_RETRY] = "retry",
                                             [RK_DELIVER_PERMANENT] = "permanent",
                                             [RK_DELIVER_FATAL] = "fatal"};
        for (size_t i = 0; i < w->n_parts; i++) {
            dpart *p = w->parts[i];
            if ((unsigned)p->status < sizeof result / sizeof result[0] && result[p->status])
                rk_metrics_delivery_attempt(w->job->name, p->d.name, result[p->status]);
        }
        rk_metrics_transition(w->job->name, w->to_state);
        if (w->retry_due && (e->next_retry_ms == 0 || w->retry_due < e->next_retry_ms))
            e->next_retry_ms = w->retry_due;
    }
    witem_free(w);
    arm_retry_timer(e);
}

/* Starts the next queued deliveries of each idle connector instance: up
 * to [delivery] batch of them in one work item (one deliver_batch call
 * when the connector has it). */
static void pump_slots(rk_engine *e)
{
    for (slot *s = e->slots; s; s = s->next) {
        while (!s->busy && s->head) {
            dpart *p = s->head;
            if (s->paused) {
                /* paused while this part waited: it is not sent */
                s->head = p->next;
                if (!s->head)
                    s->tail = NULL;
                s->n--;
                p->status = PART_PAUSED;
                if (--p->round->outstanding == 0)
                    commit_push(e, p->round);
                continue;
            }
            /* a batch holds parts of one version of the job */
            size_t n = 1;
            dpart *last = p;
            while (n < e->cfg->deliver_batch && last->next &&
                   last->next->round->job == p->round->job) {
                last = last->next;
                n++;
            }
            s->head = last->next;
            if (!s->head)
                s->tail = NULL;
            s->n -= n;
            last->next = NULL;
            p->batch_n = n;
            if (s->job != p->round->job) {
                /* first use, or a reload brought a new version of the job */
                if (s->conn)
                    rk_conn_close(s->conn);
                s->conn = NULL;
                if (s->job)
                    rk_job_unref(s->job);
                s->job = p->round->job;
                rk_job_ref(s->job);
            }
            s->busy = 1;
            e->inflight++;
            uv_queue_work(e->loop, &p->req, deliver_work, after_part);
        }
    }
}

/* ---- retries ----------------------------------------------------------- */

typedef struct due_ctx {
    rk_engine *e;
    int64_t now;
    int64_t next;
} due_ctx;

static int on_retry_due(const rk_pending *p, void *arg)
{
    due_ctx *d = arg;
    if (p->next_attempt_ms == 0)
        return 0; /* waits for a paused connector to be resumed */
    if (p->next_attempt_ms > d->now) {
        if (d->next == 0 || p->next_attempt_ms < d->next)
            d->next = p->next_attempt_ms;
        return 0;
    }
    if (idset_has(&d->e->held, p->job_id))
        return 0;
    if (rk_store_transition(d->e->store, p->job_id, RK_ST_RETRY_WAIT, RK_ST_READY, ACTOR,
                            "retry due") == 0) {
        rk_metrics_transition(p->job, RK_ST_READY);
        enqueue_delivery(d->e, p->job_id, p->job);
    }
    return 0;
}

static void on_retry_timer(uv_timer_t *t)
{
    rk_engine *e = t->data;
    if (e->writing) { /* see store_wait: never block the loop for a timer */
        uv_timer_start(&e->retry_timer, on_retry_timer, 5, 0);
        return;
    }
    static const char *const st[] = {RK_ST_RETRY_WAIT, NULL};
    due_ctx d = {e, rk_now_ms(), 0};
    e->next_retry_ms = 0;
    rk_store_pending(e->store, st, 0, on_retry_due, &d);
    e->next_retry_ms = d.next;
    arm_retry_timer(e);
    pump(e);
}

static void arm_retry_timer(rk_engine *e)
{
    if (e->stopping || e->once || !e->next_retry_ms)
        return;
    int64_t wait = e->next_retry_ms - rk_now_ms();
    uv_timer_start(&e->retry_timer, on_retry_timer, (uint64_t)(wait > 0 ? wait : 0), 0);
}

/* ---- other writers, deadlines, retention -------------------------------- */

/* A job the store has in a runnable state that the engine does not hold:
 * queued by someone else (rekeyctl approve, retry, replay). */
static int on_sweep_row(const rk_pending *p, void *arg)
{
    rk_engine *e = arg;
    if (idset_has(&e->held, p->job_id))
        return 0;
    if (strcmp(p->state, RK_ST_DELIVERING) == 0) {
        /* only asked for after a failed commit (resweep): delivered, but
         * the result could not be recorded; as after a crash, the same
         * idempotency key makes the second delivery harmless */
        if (rk_store_transition(e->store, p->job_id, RK_ST_DELIVERING, RK_ST_READY, ACTOR,
                                "result not recorded; delivering again with the same key") ==
            0) {
            enqueue_delivery(e, p->job_id, p->job);
        } else { /* still not writable: again after the next hold */
            rk_store_describe_error(e->store, e->store_err, sizeof e->store_err);
            e->resweep = 1;
            intake_hold(e);
        }
    } else if (strcmp(p->state, RK_ST_READY) == 0) {
        rk_info("engine", "job %lld: ready (decided outside the daemon)", (long long)p->job_id);
        enqueue_delivery(e, p->job_id, p->job);
    } else if (strcmp(p->state, RK_ST_RECEIVED) == 0) {
        q_push(&e->process_wait, job_item(e, W_PROCESS, p->job_id));
    } else if (strcmp(p->state, RK_ST_RETRY_WAIT) == 0 && p->next_attempt_ms) {
        if (e->next_retry_ms == 0 || p->next_attempt_ms < e->next_retry_ms)
            e->next_retry_ms = p->next_attempt_ms;
    }
    return 0;
}

static void on_overdue(int64_t job_id, const char *job, void *arg)
{
    (void)arg;
    rk_warn("deadline", "job %lld (%s): Bearbeitungsfrist überschritten", (long long)job_id,
            job);
}

static void on_pause_row(const char *job, const char *connector, const char *reason,
                         void *arg)
{
    (void)reason;
    slot_for(arg, job, connector)->paused = 1;
}

/* The paused connectors as the store has them (rekeyctl resume clears). */
static void load_pauses(rk_engine *e)
{
    for (slot *s = e->slots; s; s = s->next)
        s->paused = 0;
    rk_store_pauses(e->store, on_pause_row, e);
}

/* Runs every 500 ms: when another connection committed (PRAGMA
 * data_version moved), picks up jobs it made runnable; once a minute warns
 * about overdue jobs (again daily per job); once an hour purges what the
 * jobs' retention allows. */
static void on_watch(uv_timer_t *t)
{
    rk_engine *e = t->data;
    if (e->stopping || e->writing) /* writing: at the next tick (see store_wait) */
        return;
    int64_t dv = rk_store_data_version(e->store);
    /* resweep: results that could not be recorded (disk full, locked) left
     * their jobs received or ready; take them up again once the hold ends */
    if (dv != e->data_version || (e->resweep && rk_now_ms() >= e->intake_hold_until)) {
        static const char *const st[] = {RK_ST_RECEIVED, RK_ST_READY, RK_ST_RETRY_WAIT, NULL};
        static const char *const st_re[] = {RK_ST_RECEIVED, RK_ST_READY, RK_ST_RETRY_WAIT,
                                            RK_ST_DELIVERING, NULL};
        int re = e->resweep && rk_now_ms() >= e->intake_hold_until;
        e->data_version = dv;
        e->resweep = 0;
        load_pauses(e);
        rk_store_pending(e->store, re ? st_re : st, 0, on_sweep_row, e);
        arm_retry_timer(e);
        pump(e);
    }
    pump_notices(e);
    int64_t now = rk_now_ms();
    if (e->intake_wait.head && e->intake_hold_until && now >= e->intake_hold_until)
        pump(e); /* an intake hold ended */
    if (now - e->last_overdue_ms >= 60000) {
        e->last_overdue_ms = now;
        rk_store_overdue_sweep(e->store, now, on_overdue, e);
    }
    if (now - e->last_purge_ms >= 3600000) {
        e->last_purge_ms = now;
        pthread_rwlock_rdlock(&e->reg_lock);
        for (size_t i = 0; i < rk_registry_count(e->reg); i++) {
            const rk_job *j = rk_registry_at(e->reg, i);
            if (!j->retention_ms)
                continue;
            rk_purge_counts c;
            if (rk_store_begin(e->store) == 0) {
                int rc = rk_store_purge(e->store, now - j->retention_ms, j->name, 0, ACTOR, &c);
                if (rc || rk_store_commit(e->store)) {
                    rk_store_rollback(e->store);
                    rk_error("purge", "job %s: retention purge failed", j->name);
                } else if (c.jobs) {
                    rk_info("purge", "job %s: purged %lld finished jobs older than the "
                                     "retention time", j->name, (long long)c.jobs);
                }
            }
        }
        pthread_rwlock_unlock(&e->reg_lock);
    }
}

/* ---- the commit cycle -------------------------------------------------- */

static int commit_item(rk_engine *e, witem *w)
{
    int rc;
    switch (w->kind) {
    case W_INTAKE:
        /* the result of processing goes with the submission (see
         * intake_work), unless it could not be taken in or a source
         * fetched it twice (already stored: phase 1) */
        rc = commit_intake(e, w);
        return rc || w->rc || w->phase == 1 ? rc : commit_process(e, w);
    case W_PROCESS: return commit_process(e, w);
    default: return commit_deliver(e, w);
    }
}

/* An item whose failure is its own result, not a failed write: an intake
 * that could not read its file writes nothing and goes to the error
 * folder. */
static int item_failed(const witem *w, int rc)
{
    return rc && !(w->kind == W_INTAKE && w->rc);
}

/*
 * Commits every finished item in one transaction (group commit: one
 * fsync for hundreds of transitions).  The items are written without
 * savepoints, as the common case is that all of them succeed; when one
 * fails, the transaction is rolled back and the batch written again with
 * a savepoint around each item, so a failing item leaves no half of its
 * writes behind and does not undo the others.  commit_* functions are
 * written to be run twice.
 *
 * This runs on the writer thread.  The commit_* functions touch only
 * their item, the store and the registry (under reg_lock); what follows a
 * commit (archiving inbox files, queueing the next step, metrics, timers)
 * is write_finish's, on the loop thread.  While a batch is with the
 * writer the loop goes on claiming, processing and delivering; the
 * results meet in commitq and make the next batch, so batches grow with
 * the load by themselves.  The loop uses the store only when the writer
 * is idle: see store_wait() below.
 */
static void write_batch(rk_engine *e)
{
    uint64_t t0 = uv_hrtime();
    wqueue *batch = &e->wbatch;
    /* the batch's log lines (one per item and step) leave in one write */
    rk_buf lines;
    rk_buf_init(&lines, 1 << 20);
    rk_log_hold(&lines);
    int txn = rk_store_begin(e->store) == 0, failed = 0;
    int isolate = 0;
    if (!txn) /* locked or full: writing item by item would commit each alone */
        rk_store_describe_error(e->store, e->store_err, sizeof e->store_err);
    for (witem *w = batch->head; txn && w; w = w->next) {
        if (item_failed(w, commit_item(e, w))) {
            isolate = 1;
            break;
        }
    }
    if (isolate) {
        rk_store_rollback(e->store);
        rk_log_drop(); /* those steps did not happen; they are logged again below */
        txn = rk_store_begin(e->store) == 0;
        for (witem *w = batch->head; txn && w; w = w->next) {
            rk_store_savepoint(e->store);
            int rc = commit_item(e, w);
            rk_store_savepoint_end(e->store, !item_failed(w, rc));
            if (item_failed(w, rc)) {
                rk_store_describe_error(e->store, e->store_err, sizeof e->store_err);
                rk_error("engine", "job %lld: could not record the result: %s",
                         (long long)w->job_id, e->store_err);
                /* not w->rc: for an intake that would send the file to
                 * the error folder, but the store failed, not the file;
                 * it stays claimed and is taken in again (post_intake) */
                w->phase |= 0x100; /* mark: not committed */
                failed = 1;
            }
        }
        if (!txn)
            rk_store_describe_error(e->store, e->store_err, sizeof e->store_err);
    }
    uint64_t t1 = uv_hrtime();
    int ok = txn && rk_store_commit(e->store) == 0;
    e->stat_commit_ns += uv_hrtime() - t1;
    e->stat_commits++;
    e->stat_items += batch->n;
    if (!ok) {
        if (txn)
            rk_store_describe_error(e->store, e->store_err, sizeof e->store_err);
        rk_error("engine", "commit of %zu results failed: %s", batch->n, e->store_err);
        failed = 1;
        if (txn)
            rk_store_rollback(e->store);
    }
    rk_log_flush();
    rk_log_hold(NULL);
    rk_buf_free(&lines);
    e->wok = ok;
    e->wfailed = failed;
    e->stat_flush_ns += uv_hrtime() - t0;
}

static void writer_main(void *arg)
{
    rk_engine *e = arg;
    rk_thread_name("rk-writer");
    pthread_mutex_lock(&e->wmu);
    for (;;) {
        while (!e->wjob && !e->wstop)
            pthread_cond_wait(&e->wcv, &e->wmu);
        if (e->wstop)
            break;
        pthread_mutex_unlock(&e->wmu);
        write_batch(e);
        pthread_mutex_lock(&e->wmu);
        e->wjob = 0;
        e->wdone = 1;
        pthread_cond_broadcast(&e->wcv);
        /* under the lock: write_finish takes it before the loop can close
         * the handle at shutdown, so this send is never on a closed one */
        uv_async_send(&e->writer_done);
    }
    pthread_mutex_unlock(&e->wmu);
}

/* Hands commitq to the writer thread as the next batch. */
static void flush(rk_engine *e)
{
    if (!e->commitq.head || e->writing)
        return;
    uv_timer_stop(&e->commit_timer);
    e->wbatch = e->commitq;
    memset(&e->commitq, 0, sizeof e->commitq);
    e->writing = 1;
    pthread_mutex_lock(&e->wmu);
    e->wjob = 1;
    e->wdone = 0;
    pthread_cond_signal(&e->wcv);
    pthread_mutex_unlock(&e->wmu);
}

/*
 * The loop thread uses the store only while the writer is idle, and only
 * after write_finish ran what follows the last batch, so it never sees a
 * committed job that the engine's memory does not know yet.  Timers
 * (retry, watch) and reload wait for that by trying again later; the
 * notices of sources are pumped at a later turn.  What cannot wait (a
 * recovered file in an inbox scan, a source recording its answer or its
 * health, all nested in other modules' callbacks) blocks here until the
 * writer is done: a few milliseconds, or up to busy_timeout_ms while
 * another process holds the database.  Those touch nothing the batch's
 * follow-up changes.
 */
static void store_wait(rk_engine *e)
{
    if (!e->writing)
        return;
    pthread_mutex_lock(&e->wmu);
    while (!e->wdone)
        pthread_cond_wait(&e->wcv, &e->wmu);
    pthread_mutex_unlock(&e->wmu);
}

/* What follows a written batch, on the loop thread: the hold of intake
 * after a failed write, and each item's next step.  Does nothing while
 * the writer is still at it. */
static void write_finish(rk_engine *e)
{
    if (!e->writing)
        return;
    pthread_mutex_lock(&e->wmu);
    int done = e->wdone;
    e->wdone = 0;
    pthread_mutex_unlock(&e->wmu);
    if (!done)
        return;
    e->writing = 0;
    int ok = e->wok, failed = e->wfailed;
    if (failed && !e->once) {
        e->resweep = 1;
        intake_hold(e);
    } else if (!failed && e->intake_hold_ms) {
        rk_info("intake", "intake resumed: the store can be written again");
        e->intake_hold_ms = 0;
    }
    uint64_t t2 = uv_hrtime();
    wqueue batch = e->wbatch;
    memset(&e->wbatch, 0, sizeof e->wbatch);
    witem *w;
    while ((w = q_pop(&batch)) != NULL) {
        int committed = ok && !(w->phase & 0x100);
        w->phase &= 0xff;
        switch (w->kind) {
        case W_INTAKE: post_intake(e, w, committed); break;
        case W_PROCESS: post_process(e, w, committed); break;
        default: post_deliver(e, w, committed); break;
        }
    }
    e->stat_post_ns += uv_hrtime() - t2;
    if (e->reload_pending)
        rk_engine_reload(e);
}

static void on_writer_done(uv_async_t *h)
{
    (void)h; /* on_check, right after this, finishes the batch and starts the next */
}

static void writer_stop(rk_engine *e)
{
    if (!e->writer_started)
        return;
    pthread_mutex_lock(&e->wmu);
    e->wstop = 1;
    pthread_cond_signal(&e->wcv);
    pthread_mutex_unlock(&e->wmu);
    uv_thread_join(&e->writer);
    e->writer_started = 0;
}

static void on_commit_timer(uv_timer_t *t)
{
    (void)t; /* only wakes the loop: on_check commits after it */
}

/*
 * Whether the queued results are committed now or wait for more.  A
 * commit waits while work is still running on the pool, up to
 * commit_max_ms after its oldest item and commit_max_items items, so one
 * commit carries the results of many documents; with nothing running
 * there is nothing to wait for.  Waiting arms a timer so the loop wakes.
 */
static int commit_due(rk_engine *e)
{
    if (!e->commitq.head || e->writing)
        return 0;
    if (e->stopping || e->inflight == 0 || e->commitq.n >= e->cfg->commit_max_items)
        return 1;
    uint64_t age = uv_now(e->loop) - e->commit_first_ms;
    if (age >= e->cfg->commit_max_ms)
        return 1;
    if (!uv_is_active((uv_handle_t *)&e->commit_timer))
        uv_timer_start(&e->commit_timer, on_commit_timer, e->cfg->commit_max_ms - age, 0);
    return 0;
}

static void local_today(char *out, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
}

/* Starts as much queued work as the limits allow. */
static void pump(rk_engine *e)
{
    if (e->stopping) {
        pump_slots(e); /* rounds already delivering are finished while draining */
        return;
    }
    while (e->inflight < e->max_inflight && e->process_wait.head) {
        if (!e->process_wait.head->data && e->writing)
            break; /* its payload is read when the writer is idle */
        witem *w = q_pop(&e->process_wait);
        if (!w->data) {
            char *uid = NULL;
            int rc = rk_store_load_payload(e->store, w->job_id, e->cfg->max_document,
                                           &w->data, &w->len, &uid);
            free(uid);
            w->media = rk_store_media(e->store, w->job_id);
            if (rc) {
                rk_error("process", "job %lld: payload cannot be read: %s",
                         (long long)w->job_id, rk_strerror(rc));
                witem_free(w);
                continue;
            }
        }
        local_today(w->today, sizeof w->today);
        pool_start(e, w, process_work);
    }
    while (e->inflight < e->max_inflight && e->intake_wait.head &&
           e->process_wait.n < e->process_highwater && rk_now_ms() >= e->intake_hold_until) {
        witem *w = q_pop(&e->intake_wait);
        local_today(w->today, sizeof w->today);
        pool_start(e, w, intake_work);
    }
    pump_slots(e);
    if (e->inbox_held && e->inbox && e->intake_open <= e->cfg->claim_ahead / 2) {
        e->inbox_held = 0;
        rk_inbox_hold(e->inbox, 0); /* claims the next files now */
    }
}

static int engine_idle(rk_engine *e)
{
    if (e->inflight || e->commitq.head || e->writing || e->process_wait.head ||
        e->intake_wait.head)
        return 0;
    for (slot *s = e->slots; s; s = s->next)
        if (s->busy || s->head)
            return 0;
    return 1;
}

static int sources_idle(rk_engine *e)
{
    for (src_entry *s = e->sources; s; s = s->next)
        if (s->ops->idle && !s->ops->idle(s->src))
            return 0;
    return 1;
}

void rk_engine_add_source_id(rk_engine *e, const rk_source_ops *ops, void *src,
                             const char *source_id)
{
    src_entry *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->ops = ops;
    s->src = src;
    s->id = source_id ? strdup(source_id) : NULL;
    s->next = e->sources;
    e->sources = s;
}

void rk_engine_add_source(rk_engine *e, const rk_source_ops *ops, void *src)
{
    rk_engine_add_source_id(e, ops, src, NULL);
}

static src_entry *source_by_id(rk_engine *e, const char *id)
{
    for (src_entry *s = e->sources; s; s = s->next)
        if (s->id && s->ops->outcome && strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

typedef struct notice_ctx {
    rk_engine *e;
    int offered;  /* handed to a source now */
    int waiting;  /* unsent for a registered source (offered or in flight) */
} notice_ctx;

static int on_notice(const rk_notice *n, void *arg)
{
    notice_ctx *c = arg;
    src_entry *src = source_by_id(c->e, n->source);
    if (!src)
        return 0; /* no such source running now: it stays for a later start */
    if (idset_has(&c->e->notices_failed, n->id))
        return 0; /* the source could not send it lately: not counted, not offered */
    c->waiting++;
    if (idset_has(&c->e->notices_out, n->id))
        return 0;
    idset_add(&c->e->notices_out, n->id);
    c->offered++;
    src->ops->outcome(src->src, n->id, n->source_ref, n->job_id, n->state, n->reason);
    return 0;
}

/* Offers unsent notices to their sources; returns how many notices for
 * running sources are unsent (offered now or earlier). */
static int pump_notices(rk_engine *e)
{
    int any = 0;
    for (src_entry *s = e->sources; s; s = s->next)
        any |= s->id && s->ops->outcome;
    if (!any || e->stopping || e->writing) /* writing: at a later turn of the loop */
        return 0;
    e->last_notice_ms = rk_now_ms();
    /* a notice its source failed to send is offered again a minute later
     * (the daemon); --once leaves it for the next run instead of waiting */
    if (!e->once && e->notices_failed.n && e->last_notice_ms - e->notices_failed_since > 60000) {
        free(e->notices_failed.slot);
        memset(&e->notices_failed, 0, sizeof e->notices_failed);
    }
    notice_ctx c = {e, 0, 0};
    rk_store_notices(e->store, 256, on_notice, &c);
    return c.waiting;
}

void rk_engine_notice_done(rk_engine *e, int64_t notice_id, int ok, const char *error)
{
    idset_del(&e->notices_out, notice_id);
    if (!ok) {
        if (e->notices_failed.n == 0)
            e->notices_failed_since = rk_now_ms();
        idset_add(&e->notices_failed, notice_id);
    }
    if (!e->store)
        return;
    store_wait(e);
    if (rk_store_notice_done(e->store, notice_id, ok, error))
        rk_error("engine", "notice %lld: cannot record the source's answer",
                 (long long)notice_id);
    else if (!ok)
        rk_warn("engine", "notice %lld: the source could not tell its sender: %s",
                (long long)notice_id, error ? error : "?");
}

void rk_engine_source_health(rk_engine *e, const char *source_id, int ok, const char *error,
                             int64_t next_poll_ms)
{
    if (e->store)
        store_wait(e);
    if (e->store && rk_store_source_health(e->store, source_id, ok, error, next_poll_ms))
        rk_warn("engine", "%s: cannot record the source's health", source_id);
}

uv_loop_t *rk_engine_loop(rk_engine *e) { return e->loop; }

const rk_config *rk_engine_config(rk_engine *e) { return e->cfg; }

static void on_check(uv_check_t *h)
{
    rk_engine *e = h->data;
    write_finish(e);
    if (commit_due(e))
        flush(e);
    pump(e);
    if (commit_due(e)) {
        /* pump queued work for commit and left the pool idle: at once */
        flush(e);
        pump(e);
    }
    if (!e->stopping && rk_now_ms() - e->last_notice_ms >= 100)
        pump_notices(e);
    /* --once is done when nothing is queued or in flight anywhere and
     * every notice a running source should send has been confirmed */
    if (e->once && !e->stopping && engine_idle(e) && e->inbox && rk_inbox_idle(e->inbox) &&
        sources_idle(e) && e->notices_out.n == 0 && pump_notices(e) == 0) {
        rk_info("engine", "--once: inbox empty and queue idle");
        rk_engine_stop(e);
    }
    maybe_finish(e);
}

/* ---- start-up recovery ------------------------------------------------- */

static int on_pending(const rk_pending *p, void *arg)
{
    rk_engine *e = arg;
    if (strcmp(p->state, RK_ST_DELIVERING) == 0) {
        /* crashed mid-delivery: the same idempotency key makes the second
         * delivery harmless */
        rk_store_transition(e->store, p->job_id, RK_ST_DELIVERING, RK_ST_READY, ACTOR,
                            "interrupted delivery; delivering again with the same key");
        enqueue_delivery(e, p->job_id, p->job);
    } else if (strcmp(p->state, RK_ST_READY) == 0) {
        enqueue_delivery(e, p->job_id, p->job);
    } else if (strcmp(p->state, RK_ST_RETRY_WAIT) == 0) {
        if (p->next_attempt_ms &&
            (e->next_retry_ms == 0 || p->next_attempt_ms < e->next_retry_ms))
            e->next_retry_ms = p->next_attempt_ms;
    } else {
        if (strcmp(p->state, RK_ST_RECEIVED) != 0)
            rk_store_transition(e->store, p->job_id, p->state, RK_ST_RECEIVED, ACTOR,
                                "interrupted processing; processing again");
        q_push(&e->process_wait, job_item(e, W_PROCESS, p->job_id));
    }
    return 0;
}

/* Reads the duplicate keys of the jobs' longest window into memory now
 * (rk_store_dup_prepare), not at the first document that needs them:
 * at start and after a reload, which may bring a longer window. */
static void dup_prepare(rk_engine *e)
{
    double days = 0;
    for (size_t i = 0; i < rk_registry_count(e->reg); i++) {
        const rk_job *job = rk_registry_at(e->reg, i);
        for (size_t r = 0; r < job->n_rules; r++)
            if (job->rules[r].kind == RK_RULE_DUPLICATE && job->rules[r].num[0] > days)
                days = job->rules[r].num[0];
    }
    if (days <= 0)
        return;
    int64_t t0 = rk_now_ms();
    size_t n = 0;
    int rc = rk_store_dup_prepare(e->store, days, &n);
    if (rc)
        rk_warn("store", "reading the duplicate keys failed (%s); they are read at the"
                " first look-up", rk_strerror(rc));
    else
        rk_info("store", "duplicate keys of the last %g days: %zu in memory (%lld ms)", days,
                n, (long long)(rk_now_ms() - t0));
}

static void recover(rk_engine *e)
{
    static const char *const st[] = {RK_ST_RECEIVED, RK_ST_VALIDATED, RK_ST_MAPPED,
                                     RK_ST_READY, RK_ST_DELIVERING, RK_ST_RETRY_WAIT, NULL};
    rk_store_pending(e->store, st, 0, on_pending, e);
    size_t n = e->process_wait.n;
    for (slot *s = e->slots; s; s = s->next)
        n += s->n;
    if (n)
        rk_info("engine", "resuming %zu unfinished jobs from the queue", n);
    if (e->once && e->next_retry_ms)
        rk_info("engine", "--once: retries already due run now; later ones are left for "
                          "the next run");
}

/* ---- life cycle -------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    rk_engine *e = h->data;
    if (--e->handles_open == 0 && e->finished) {
        void (*cb)(void *, int) = e->done_cb;
        void *arg = e->done_arg;
        int status = e->status;
        pthread_rwlock_destroy(&e->reg_lock);
        pthread_cond_destroy(&e->wcv);
        pthread_mutex_destroy(&e->wmu);
        free(e->held.slot);
        free(e->notices_out.slot);
        free(e->notices_failed.slot);
        free(e);
        if (cb)
            cb(arg, status);
    }
}

static void on_inbox_closed(void *arg)
{
    rk_engine *e = arg;
    e->inbox = NULL;
    on_handle_closed((uv_handle_t *)&e->check); /* the inbox counted as one handle */
}

static void on_source_closed(void *arg)
{
    rk_engine *e = arg;
    on_handle_closed((uv_handle_t *)&e->check); /* each source counted as one handle */
}

/* Once stopping and nothing is in flight: close everything. */
static void maybe_finish(rk_engine *e)
{
    if (!e->stopping || e->finished || e->inflight || e->commitq.head || e->writing)
        return;
    for (slot *s = e->slots; s; s = s->next)
        if (s->busy || s->head)
            return;
    e->finished = 1;
    witem *w;
    while ((w = q_pop(&e->intake_wait)) != NULL)
        witem_free(w); /* still in .claimed/: recovered on the next start */
    while ((w = q_pop(&e->process_wait)) != NULL)
        witem_free(w); /* still received: processed on the next start */
    while (e->slots) {
        slot *s = e->slots;
        e->slots = s->next;
        /* queued parts belong to rounds whose other parts finished or
         * never started: those jobs stay delivering and are delivered
         * again, with the same keys, on the next start */
        while (s->head) {
            dpart *p = s->head;
            s->head = p->next;
            if (--p->round->outstanding == 0)
                witem_free(p->round);
        }
        if (s->conn)
            rk_conn_close(s->conn);
        if (s->job)
            rk_job_unref(s->job);
        free(s->job_name);
        free(s->conn_name);
        free(s);
    }
    writer_stop(e);
    rk_store_close(e->store);
    e->store = NULL;
    rk_registry_free(e->reg);
    e->reg = NULL;
    if (e->stat_commits)
        rk_info("engine", "%llu group commits of %.1f items on average; %.3f s on the writer "
                          "thread: %.3f s writing, %.3f s in COMMIT; %.3f s on the loop "
                          "thread in what follows the commits",
                (unsigned long long)e->stat_commits,
                (double)e->stat_items / (double)e->stat_commits, e->stat_flush_ns / 1e9,
                (e->stat_flush_ns - e->stat_commit_ns) / 1e9, e->stat_commit_ns / 1e9,
                e->stat_post_ns / 1e9);
    rk_info("engine", "stopped");
    while (e->sources) {
        src_entry *src = e->sources;
        e->sources = src->next;
        e->handles_open++;
        src->ops->stop(src->src, on_source_closed, e);
        free(src->id);
        free(src);
    }
    uv_close((uv_handle_t *)&e->check, on_handle_closed);
    uv_close((uv_handle_t *)&e->commit_timer, on_handle_closed);
    uv_close((uv_handle_t *)&e->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&e->watch_timer, on_handle_closed);
    uv_close((uv_handle_t *)&e->writer_done, on_handle_closed);
    if (e->inbox)
        rk_inbox_stop(e->inbox, on_inbox_closed, e);
    else
        on_inbox_closed(e);
}

void rk_engine_stop(rk_engine *e)
{
    if (e->stopping)
        return;
    e->stopping = 1;
    uv_timer_stop(&e->retry_timer);
    uv_timer_stop(&e->watch_timer);
    rk_info("engine", "draining: %zu in flight", e->inflight);
    maybe_finish(e);
}

void rk_engine_reload(rk_engine *e)
{
    if (e->writing) { /* after the batch: write_finish calls again */
        e->reload_pending = 1;
        return;
    }
    e->reload_pending = 0;
    char *errors = NULL;
    pthread_rwlock_wrlock(&e->reg_lock);
    int rc = rk_registry_reload(e->reg, &e->cfg->vars, &errors);
    pthread_rwlock_unlock(&e->reg_lock);
    if (rc)
        rk_error("jobs", "reload failed: %s; the running jobs stay", rk_strerror(rc));
    else
        rk_info("jobs", "reloaded: %zu jobs%s", rk_registry_count(e->reg),
                errors ? " (some files have errors, see above)" : "");
    free(errors);
    dup_prepare(e);
    /* connector instances reopen when a round of the new version arrives;
     * a reload also resumes paused connectors */
    int64_t cleared = 0;
    if (rk_store_pause_clear(e->store, NULL, NULL, rk_now_ms(), &cleared) == 0 && cleared) {
        rk_info("deliver", "reload resumed %lld paused connectors", (long long)cleared);
        load_pauses(e);
        static const char *const st[] = {RK_ST_RETRY_WAIT, NULL};
        rk_store_pending(e->store, st, 0, on_sweep_row, e);
        arm_retry_timer(e);
    }
}

/* Job validator: the connector exists and takes the job's settings, so
 * a typo in a setting is a load error, not a failure at every delivery. */
int rk_engine_check_connector(const rk_job *job, void *arg, char *err, size_t errlen)
{
    const rk_config *cfg = arg;
    for (size_t i = 0; i < job->n_connectors; i++) {
        const rk_job_connector *jc = &job->connectors[i];
        char msg[900];
        rk_plugin *p = rk_plugin_load(cfg->plugin_path, jc->plugin, msg, sizeof msg);
        if (!p) {
            snprintf(err, errlen, "%s:%d: %s", job->path, jc->line, msg);
            return RK_E_PLUGIN;
        }
        rk_kv *kv = NULL;
        size_t n = 0;
        int rc = rk_settings_check(rk_plugin_descriptor(p), jc->settings, jc->n_settings, &kv,
                                   &n, msg, sizeof msg);
        rk_settings_free(kv, n);
        if (rc) {
            snprintf(err, errlen, "%s:%d: connector %s: %s", job->path, jc->line, jc->name,
                     msg);
            return rc;
        }
    }
    return 0;
}

int rk_engine_start(uv_loop_t *loop, const rk_config *cfg, int once,
                    void (*done_cb)(void *, int), void *arg, rk_engine **out, char *err,
                    size_t errlen)
{
    rk_xml_init();
    rk_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->loop = loop;
    e->cfg = cfg;
    e->once = once;
    e->done_cb = done_cb;
    e->done_arg = arg;
    /* enough work in flight that the pool stays busy while the loop thread
     * commits, and that a group commit has hundreds of items to carry:
     * every document passes four commits, so the documents in the pipeline
     * bound the throughput (the benchmark: x4 and 32 waiting to be
     * processed gave 1,200 docs/s, x16 and 512 gave 1,450-1,900) */
    e->max_inflight = (size_t)cfg->workers * 16;
    e->process_highwater = cfg->commit_max_items;
    pthread_rwlock_init(&e->reg_lock, NULL);
    snprintf(e->source, sizeof e->source, "dir:%s", cfg->inbox_path);
    srandom((unsigned)rk_now_ms());

    int rc = rk_store_open(cfg->database, cfg->sync_normal ? RK_STORE_SYNC_NORMAL : 0,
                           &e->store, err, errlen);
    if (rc)
        goto fail;
    char *errors = NULL;
    rk_registry_set_validator(rk_engine_check_connector, (void *)cfg);
    e->reg = rk_registry_load(cfg->jobs_dir, &cfg->vars, &errors);
    free(errors);
    if (!e->reg) {
        snprintf(err, errlen, "cannot read the job folder %s", cfg->jobs_dir);
        rc = RK_E_CONFIG;
        goto fail;
    }
    if (rk_registry_count(e->reg) == 0)
        rk_warn("jobs", "no job loaded from %s: every submission will fail with "
                        "KEIN_VERFAHREN", cfg->jobs_dir);
    if (cfg->busy_timeout_ms > 0) /* 0: a config built in code; store's default */
        rk_store_set_busy_timeout(e->store, cfg->busy_timeout_ms);
    /* the loop thread commits; the WAL checkpoints (copy and fsync of the
     * database file) run beside it (1000 pages: SQLite's own default) */
    rk_store_background_checkpoints(e->store, 1000);
    uv_check_init(loop, &e->check);
    e->check.data = e;
    uv_check_start(&e->check, on_check);
    uv_timer_init(loop, &e->commit_timer);
    e->commit_timer.data = e;
    uv_timer_init(loop, &e->retry_timer);
    e->retry_timer.data = e;
    uv_timer_init(loop, &e->watch_timer);
    e->watch_timer.data = e;
    uv_async_init(loop, &e->writer_done, on_writer_done);
    e->writer_done.data = e;
    e->handles_open = 6; /* check, commit, retry and watch timers, writer, inbox */
    pthread_mutex_init(&e->wmu, NULL);
    pthread_cond_init(&e->wcv, NULL);
    if (uv_thread_create(&e->writer, writer_main, e) != 0) {
        snprintf(err, errlen, "cannot start the writer thread");
        e->stopping = 1;
        *out = NULL;
        e->done_cb = NULL;
        maybe_finish(e);
        return RK_E_STATE;
    }
    e->writer_started = 1;
    e->data_version = rk_store_data_version(e->store);
    e->last_purge_ms = rk_now_ms() - 3600000 + 60000; /* first purge a minute after start */
    load_pauses(e);
    recover(e);
    dup_prepare(e);
    rc = rk_inbox_start(loop, &cfg->inbox, on_claim, e, &e->inbox, err, errlen);
    if (rc) {
        /* no inbox: close what was opened and report */
        e->stopping = 1;
        *out = NULL;
        e->done_cb = NULL;
        maybe_finish(e);
        return rc;
    }
    /* a scan looks at no more files than may be claimed ahead */
    rk_inbox_set_list_max(e->inbox, cfg->claim_ahead);
    *out = e;
    rc = rk_sources_start(e, err, errlen);
    if (rc) {
        *out = NULL;
        e->done_cb = NULL;
        rk_engine_stop(e);
        return rc;
    }
    if (once && e->next_retry_ms && e->next_retry_ms <= rk_now_ms())
        on_retry_timer(&e->retry_timer); /* --once takes the retries already due */
    arm_retry_timer(e);
    if (!once)
        uv_timer_start(&e->watch_timer, on_watch, 500, 500);
    return 0;
fail:
    rk_store_close(e->store);
    pthread_rwlock_destroy(&e->reg_lock);
    free(e);
    return rc;
}
