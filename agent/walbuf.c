/*
 * walbuf.c — see walbuf.h.
 */
#include "walbuf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define VFS_NAME "rekey-walbuf"
/* the default VFS writes at most 128 KiB - 1 per call (unix seekAndWrite
 * masks the count with 0x1ffff): a larger buffer would be cut */
#define BUF_CAP (120 * 1024)
#define FRAME_HDR 24

typedef struct db_state db_state;

typedef struct {
    sqlite3_file base;
    sqlite3_file *real;   /* the default VFS's file, right after this struct */
    unsigned char *buf;   /* pending bytes for the file at offset `off` */
    size_t len;
    sqlite3_int64 off;
    int commit_hdr;       /* the last frame header written was a commit's */
    db_state *owner;      /* the database file of the connection writing it */
    const char *name;     /* SQLite's, valid until the file is closed */
} wal_file;

/* A main database file is the default VFS's own object, opened in place;
 * after it, in the room this VFS's file size leaves, this state: the
 * default methods, and the WAL its connection writes while it holds the
 * WAL's write lock.  Its xShmLock is ours: before the write lock is let
 * go, whatever the WAL still holds goes out (frames of a transaction that
 * rolled back: written while the lock is held, as SQLite itself would
 * have, they lie past the last commit, where the next writer overwrites
 * them; never after another connection has written there). */
struct db_state {
    const sqlite3_io_methods *base;
    const char *name; /* SQLite's, valid until the file is closed */
    wal_file *wal;
};

/* the WAL write lock's slot among the shared-memory locks (wal.c) */
#define WAL_WRITE_LOCK 0

static sqlite3_vfs *base_vfs;
static size_t db_state_at; /* offset of a db_state in a main database file */
static _Thread_local db_state *writing; /* holds a write lock on this thread */
static unsigned long n_parts, n_writes, n_unlock; /* rk_walbuf_counts */
static sqlite3_vfs walbuf_vfs;
static sqlite3_io_methods wal_methods;

/* Writes what is pending; 0 or the SQLite error. */
static int flush(wal_file *f)
{
    if (!f->len)
        return SQLITE_OK;
    int rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
    f->len = 0;
    __atomic_add_fetch(&n_writes, 1, __ATOMIC_RELAXED);
    return rc;
}

static int w_close(sqlite3_file *p)
{
    wal_file *f = (wal_file *)p;
    int rc = flush(f);
    if (f->owner && f->owner->wal == f)
        f->owner->wal = NULL;
    int rc2 = f->real->pMethods->xClose(f->real);
    free(f->buf);
    f->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int w_read(sqlite3_file *p, void *out, int n, sqlite3_int64 off)
{
    wal_file *f = (wal_file *)p;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, out, n, off);
}

static int w_write(sqlite3_file *p, const void *data, int n, sqlite3_int64 off)
{
    wal_file *f = (wal_file *)p;
    /* only a frame's header or page is kept (the WAL's own header at
     * offset 0, and anything that does not continue the pending bytes,
     * goes out at once after them) */
    int frame_part = off > 0 && n > 0 && (size_t)n <= BUF_CAP;
    if (f->len && (!frame_part || off != f->off + (sqlite3_int64)f->len ||
                   f->len + (size_t)n > BUF_CAP)) {
        int rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (!frame_part)
        return f->real->pMethods->xWrite(f->real, data, n, off);
    if (!f->owner && writing && f->name && writing->name &&
        strncmp(f->name, writing->name, strlen(writing->name)) == 0) {
        f->owner = writing; /* the database file of this WAL, locked on this thread */
        writing->wal = f;
    }
    /* without the write lock's owner nothing may wait in the buffer */
    if (!f->owner || (!f->buf && !(f->buf = malloc(BUF_CAP))))
        return f->real->pMethods->xWrite(f->real, data, n, off);
    if (!f->len)
        f->off = off;
    memcpy(f->buf + f->len, data, (size_t)n);
    f->len += (size_t)n;
    __atomic_add_fetch(&n_parts, 1, __ATOMIC_RELAXED);
    if (n == FRAME_HDR) {
        /* bytes 4-7 of a frame header: the database size after the
         * commit for the last frame of one, else 0 */
        const unsigned char *h = data;
        f->commit_hdr = (h[4] | h[5] | h[6] | h[7]) != 0;
        return SQLITE_OK;
    }
    if (f->commit_hdr) { /* the page of a commit frame: the commit is whole */
        f->commit_hdr = 0;
        return flush(f);
    }
    return SQLITE_OK;
}

static int w_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    wal_file *f = (wal_file *)p;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int w_sync(sqlite3_file *p, int flags)
{
    wal_file *f = (wal_file *)p;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int w_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
    wal_file *f = (wal_file *)p;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int w_lock(sqlite3_file *p, int l)
{
    return ((wal_file *)p)->real->pMethods->xLock(((wal_file *)p)->real, l);
}

static int w_unlock(sqlite3_file *p, int l)
{
    return ((wal_file *)p)->real->pMethods->xUnlock(((wal_file *)p)->real, l);
}

static int w_check_reserved(sqlite3_file *p, int *out)
{
    wal_file *f = (wal_file *)p;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int w_file_control(sqlite3_file *p, int op, void *arg)
{
    wal_file *f = (wal_file *)p;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int w_sector_size(sqlite3_file *p)
{
    wal_file *f = (wal_file *)p;
    return f->real->pMethods->xSectorSize(f->real);
}

static int w_device_characteristics(sqlite3_file *p)
{
    wal_file *f = (wal_file *)p;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static db_state *state_of(sqlite3_file *p) { return (db_state *)((char *)p + db_state_at); }

static int d_shm_lock(sqlite3_file *p, int ofst, int n, int flags)
{
    db_state *d = state_of(p);
    int write_lock = ofst == WAL_WRITE_LOCK && n == 1 && (flags & SQLITE_SHM_EXCLUSIVE);
    if (write_lock && (flags & SQLITE_SHM_UNLOCK)) {
        if (d->wal && d->wal->len) {
            __atomic_add_fetch(&n_unlock, 1, __ATOMIC_RELAXED);
            flush(d->wal); /* an error here changes nothing the lock protects */
        }
        if (writing == d)
            writing = NULL;
        return d->base->xShmLock(p, ofst, n, flags);
    }
    int rc = d->base->xShmLock(p, ofst, n, flags);
    if (rc == SQLITE_OK && write_lock && (flags & SQLITE_SHM_LOCK))
        writing = d;
    return rc;
}

/* A database file closed with its write lock still noted (SQLite lets
 * it go first; this only keeps no pointer to a closed file). */
static int d_close(sqlite3_file *p)
{
    db_state *d = state_of(p);
    if (writing == d)
        writing = NULL;
    if (d->wal) {
        flush(d->wal);
        d->wal->owner = NULL;
        d->wal = NULL;
    }
    return d->base->xClose(p);
}

/* The default VFS's methods for main database files, each with our
 * xShmLock and xClose: the unix VFS has a few sets (by locking style),
 * so one copy per set seen. */
static pthread_mutex_t copies_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const sqlite3_io_methods *base;
    sqlite3_io_methods ours;
} copies[8];

static const sqlite3_io_methods *db_methods(const sqlite3_io_methods *base)
{
    const sqlite3_io_methods *out = NULL;
    pthread_mutex_lock(&copies_mu);
    for (size_t i = 0; i < sizeof copies / sizeof *copies && !out; i++) {
        if (copies[i].base == base) {
            out = &copies[i].ours;
        } else if (!copies[i].base) {
            copies[i].base = base;
            copies[i].ours = *base;
            copies[i].ours.xShmLock = d_shm_lock;
            copies[i].ours.xClose = d_close;
            out = &copies[i].ours;
        }
    }
    pthread_mutex_unlock(&copies_mu);
    return out;
}

/* A WAL file gets its own methods, a main database file our xShmLock;
 * every other file is the default VFS's own object, opened in place
 * (this VFS's file size holds it). */
static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *out_flags)
{
    if (flags & SQLITE_OPEN_MAIN_DB) {
        int rc = base_vfs->xOpen(base_vfs, name, p, flags, out_flags);
        if (rc != SQLITE_OK || !p->pMethods || p->pMethods->iVersion < 2 ||
            !p->pMethods->xShmLock)
            return rc;
        const sqlite3_io_methods *ours = db_methods(p->pMethods);
        if (ours) { /* else: its writes are not gathered (no owner) */
            db_state *d = state_of(p);
            d->base = p->pMethods;
            d->name = name;
            d->wal = NULL;
            p->pMethods = ours;
        }
        return SQLITE_OK;
    }
    if (!(flags & SQLITE_OPEN_WAL))
        return base_vfs->xOpen(base_vfs, name, p, flags, out_flags);
    wal_file *f = (wal_file *)p;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)&f[1];
    f->name = name;
    int rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods) {
        /* SQLite calls no method of a file whose open failed */
        if (f->real->pMethods)
            f->real->pMethods->xClose(f->real);
        p->pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    p->pMethods = &wal_methods;
    return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *n, int s) { return base_vfs->xDelete(base_vfs, n, s); }
static int v_access(sqlite3_vfs *v, const char *n, int f, int *o) { return base_vfs->xAccess(base_vfs, n, f, o); }
static int v_full(sqlite3_vfs *v, const char *n, int l, char *o) { return base_vfs->xFullPathname(base_vfs, n, l, o); }
static void *v_dlopen(sqlite3_vfs *v, const char *n) { return base_vfs->xDlOpen(base_vfs, n); }
static void v_dlerror(sqlite3_vfs *v, int l, char *o) { base_vfs->xDlError(base_vfs, l, o); }
static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *s))(void) { return base_vfs->xDlSym(base_vfs, h, s); }
static void v_dlclose(sqlite3_vfs *v, void *h) { base_vfs->xDlClose(base_vfs, h); }
static int v_random(sqlite3_vfs *v, int n, char *o) { return base_vfs->xRandomness(base_vfs, n, o); }
static int v_sleep(sqlite3_vfs *v, int us) { return base_vfs->xSleep(base_vfs, us); }
static int v_time(sqlite3_vfs *v, double *o) { return base_vfs->xCurrentTime(base_vfs, o); }
static int v_lasterr(sqlite3_vfs *v, int n, char *o) { return base_vfs->xGetLastError(base_vfs, n, o); }
static int v_time64(sqlite3_vfs *v, sqlite3_int64 *o) { return base_vfs->xCurrentTimeInt64(base_vfs, o); }

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int registered;

static void setup(void)
{
    base_vfs = sqlite3_vfs_find(NULL);
    if (!base_vfs || base_vfs->iVersion < 2)
        return;
    wal_methods = (sqlite3_io_methods){
        .iVersion = 1,
        .xClose = w_close,
        .xRead = w_read,
        .xWrite = w_write,
        .xTruncate = w_truncate,
        .xSync = w_sync,
        .xFileSize = w_file_size,
        .xLock = w_lock,
        .xUnlock = w_unlock,
        .xCheckReservedLock = w_check_reserved,
        .xFileControl = w_file_control,
        .xSectorSize = w_sector_size,
        .xDeviceCharacteristics = w_device_characteristics,
    };
    db_state_at = ((size_t)base_vfs->szOsFile + 15) & ~(size_t)15;
    size_t room = sizeof(wal_file) > sizeof(db_state) + 16 ? sizeof(wal_file)
                                                            : sizeof(db_state) + 16;
    walbuf_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)(room + (size_t)base_vfs->szOsFile),
        .mxPathname = base_vfs->mxPathname,
        .zName = VFS_NAME,
        .xOpen = v_open,
        .xDelete = v_delete,
        .xAccess = v_access,
        .xFullPathname = v_full,
        .xDlOpen = v_dlopen,
        .xDlError = v_dlerror,
        .xDlSym = v_dlsym,
        .xDlClose = v_dlclose,
        .xRandomness = v_random,
        .xSleep = v_sleep,
        .xCurrentTime = v_time,
        .xGetLastError = v_lasterr,
        .xCurrentTimeInt64 = v_time64,
    };
    registered = sqlite3_vfs_register(&walbuf_vfs, 0) == SQLITE_OK;
}

void rk_walbuf_counts(unsigned long *parts, unsigned long *writes, unsigned long *at_unlock)
{
    *at_unlock = __atomic_load_n(&n_unlock, __ATOMIC_RELAXED);
    *parts = __atomic_load_n(&n_parts, __ATOMIC_RELAXED);
    *writes = __atomic_load_n(&n_writes, __ATOMIC_RELAXED);
}

const char *rk_walbuf_vfs(void)
{
    pthread_once(&once, setup);
    return registered ? VFS_NAME : NULL;
}
