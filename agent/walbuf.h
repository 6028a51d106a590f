/*
 * walbuf.h — an SQLite VFS that gathers the writes of a commit into its
 * write-ahead log (WAL) into one write(2).
 *
 * SQLite writes each WAL frame as two calls, a 24-byte header and the
 * page; a group commit of hundreds of documents made a thousand and more
 * pwrite(2)s.  This VFS passes every file through to the default VFS
 * except the WAL files, whose contiguous writes it keeps in a buffer and
 * writes at the end of each commit (the frame whose header carries the
 * database size), before SQLite publishes the commit in the wal-index
 * for other connections, and before any read, sync, size, truncation,
 * file control or close of the file.  Nothing committed waits in memory:
 * a crash loses only frames of a transaction that had not committed.
 * Frames of a transaction that rolled back go out before the connection
 * lets go of the WAL's write lock (the main database file's xShmLock is
 * this VFS's), never after another connection wrote there; only frames
 * written while this thread's connection holds that lock wait at all.
 */
#ifndef RK_WALBUF_H
#define RK_WALBUF_H

/* The name of the VFS for sqlite3_open_v2 (registered on first use, not
 * as the default), or NULL when it could not be registered. */
const char *rk_walbuf_vfs(void);

/* Frame headers and pages taken into buffers, the writes that took them
 * to the files, and of those the ones made as a write lock was let go
 * (frames of a transaction that rolled back), since the start (tests). */
void rk_walbuf_counts(unsigned long *parts, unsigned long *writes, unsigned long *at_unlock);

#endif
