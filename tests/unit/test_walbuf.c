/*
 * test_walbuf.c — agent/walbuf.c: the VFS that gathers a commit's WAL
 * frames into few writes.  A big transaction and its rollback, a commit
 * seen by a connection of the default VFS right after it (synchronous =
 * NORMAL, so nothing but the flush at the commit frame puts it into the
 * file), and a process killed inside a transaction: what was committed
 * is there, the rest is not, and the database is whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "walbuf.h"

typedef struct {
    char dir[64];
    char db[96];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/rk_walbuf_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof f->db, "%s/t.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    const char *ext[] = {"", "-wal", "-shm"};
    char p[128];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->db, ext[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

static int64_t q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void integrity_ok(sqlite3 *db)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

static sqlite3 *open_walbuf(const fixture *f, int spill)
{
    sqlite3 *db = NULL;
    const char *vfs = rk_walbuf_vfs();
    assert_non_null(vfs);
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                     vfs), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, b BLOB)");
    /* a small page cache: a big transaction spills frames before its
     * commit, and reads some of them back */
    if (spill)
        exec_ok(db, "PRAGMA cache_size=20");
    return db;
}

static sqlite3 *open_plain(const fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void insert(sqlite3 *db, int from, int n)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE s(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM s WHERE i < %d)"
             " INSERT INTO t SELECT i, randomblob(2000) FROM s",
             from, from + n - 1);
    exec_ok(db, sql);
}

/* A commit of about 1,000 frames reaches the file in a few dozen writes,
 * and a plain connection sees all of it at once. */
static void test_commit_gathered_and_seen(void **state)
{
    fixture *f = *state;
    sqlite3 *w = open_walbuf(f, 0), *r = open_plain(f);
    unsigned long p0, w0, p1, w1, u;
    rk_walbuf_counts(&p0, &w0, &u);
    exec_ok(w, "BEGIN");
    insert(w, 1, 2000);
    exec_ok(w, "COMMIT");
    rk_walbuf_counts(&p1, &w1, &u);
    assert_true(p1 - p0 >= 2000);             /* headers and pages of ~1,000 frames */
    print_message("%lu frame parts in %lu writes\n", p1 - p0, w1 - w0);
    assert_true((w1 - w0) * 20 <= p1 - p0);   /* in at most a twentieth of the writes */
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 2000);
    assert_int_equal(q_int(r, "SELECT sum(length(b)) FROM t"), 2000 * 2000);
    /* small commits one after the other, each seen right away */
    for (int i = 0; i < 20; i++) {
        insert(w, 3000 + i, 1);
        assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 2001 + i);
    }
    exec_ok(r, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 2020);
    insert(w, 5000, 3); /* after the WAL was reset by the other connection */
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 2023);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(r, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A transaction that spilled frames and rolled back leaves nothing; the
 * next commit writes over its frames. */
static void test_rollback_after_spill(void **state)
{
    fixture *f = *state;
    sqlite3 *w = open_walbuf(f, 1), *r = open_plain(f);
    insert(w, 1, 10);
    exec_ok(w, "BEGIN");
    insert(w, 100, 1500);
    exec_ok(w, "ROLLBACK");
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 10);
    exec_ok(w, "BEGIN");
    insert(w, 200, 300);
    exec_ok(w, "UPDATE t SET b = randomblob(100) WHERE id < 5"); /* pages written again */
    exec_ok(w, "COMMIT");
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 310);
    assert_int_equal(q_int(r, "SELECT count(*) FROM t WHERE length(b) = 100"), 4);
    sqlite3_close(w);
    /* what the WAL holds is read back by a fresh connection */
    assert_int_equal(q_int(r, "PRAGMA wal_checkpoint"), 0);
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 310);
    sqlite3_close(r);
}

/* Two connections of this VFS on one database: one rolls back a
 * transaction whose spilled frames were read back (SQLite's rollback
 * does), the other commits where those were, the first writes again. */
static void test_rollback_then_other_writer(void **state)
{
    fixture *f = *state;
    sqlite3 *a = open_walbuf(f, 1), *b = open_walbuf(f, 0), *r = open_plain(f);
    for (int round = 0; round < 3; round++) {
        exec_ok(a, "BEGIN");
        insert(a, 100000 + round * 10000, 40 + round * 7);
        exec_ok(a, "ROLLBACK");
        insert(b, 1 + round * 1000, 3 + round); /* commits where a's frames were */
        insert(a, 50000 + round * 1000, 2);      /* a writes again */
    }
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 3 + 4 + 5 + 3 * 2);
    assert_int_equal(q_int(r, "SELECT count(*) FROM t WHERE id >= 100000"), 0);
    integrity_ok(r);
    sqlite3_close(a);
    sqlite3_close(b);
    sqlite3_close(r);
    r = open_plain(f); /* the WAL read from the file by a new connection */
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 18);
    sqlite3_close(r);
}

/* Frames still in the buffer when a transaction rolls back (a spill that
 * nothing read back; written here through the WAL file itself) go out
 * before the write lock is let go, past the last commit, so the next
 * writer's commit overwrites them, not the other way round. */
static void test_rolled_back_frames_leave_with_the_lock(void **state)
{
    fixture *f = *state;
    sqlite3 *a = open_walbuf(f, 0), *b = open_walbuf(f, 0), *r = open_plain(f);
    insert(a, 1, 1);
    exec_ok(a, "BEGIN IMMEDIATE"); /* takes the WAL's write lock */
    sqlite3_file *wal = NULL;
    assert_int_equal(sqlite3_file_control(a, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal),
                     SQLITE_OK);
    assert_non_null(wal);
    sqlite3_int64 end = 0;
    assert_int_equal(wal->pMethods->xFileSize(wal, &end), SQLITE_OK);
    unsigned char hdr[24] = {0, 0, 0, 2}, page[4096];
    memset(page, 0xAB, sizeof page);
    unsigned long p, w, u0, u1;
    rk_walbuf_counts(&p, &w, &u0);
    assert_int_equal(wal->pMethods->xWrite(wal, hdr, sizeof hdr, end), SQLITE_OK);
    assert_int_equal(wal->pMethods->xWrite(wal, page, sizeof page, end + 24), SQLITE_OK);
    exec_ok(a, "ROLLBACK");
    rk_walbuf_counts(&p, &w, &u1);
    assert_int_equal(u1 - u0, 1); /* written as the lock was let go */
    insert(b, 10, 1);             /* one frame, exactly where the page was */
    insert(a, 20, 1);
    insert(b, 30, 3);
    assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 6);
    integrity_ok(r);
    sqlite3_close(a);
    sqlite3_close(b);
    sqlite3_close(r);
}

/* A process killed right after a commit, or inside the next transaction
 * (frames spilled and buffered), keeps the commit and loses only the
 * open transaction; the database is whole. */
static void test_killed_after_commit(void **state)
{
    fixture *f = *state;
    for (int inside = 0; inside <= 1; inside++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* synchronous = NORMAL: no sync at the commit puts it into the file */
            sqlite3 *w = open_walbuf(f, 1);
            insert(w, 1 + inside * 100, 100);
            if (inside) {
                exec_ok(w, "BEGIN");
                insert(w, 1000, 1000);
            }
            raise(SIGKILL);
            _exit(1);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        sqlite3 *r = open_plain(f);
        assert_int_equal(q_int(r, "SELECT count(*) FROM t"), 100 * (inside + 1));
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(r, "PRAGMA integrity_check", -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        sqlite3_close(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_gathered_and_seen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_after_spill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_then_other_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolled_back_frames_leave_with_the_lock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_killed_after_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
