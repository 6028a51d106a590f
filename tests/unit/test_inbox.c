/*
 * test_inbox.c — the directory inbox source, on a real libuv loop and a
 * temporary folder.  Deterministic parts call rk_inbox_scan directly and
 * sleep past settle_ms; the event/timer path is checked by running the
 * loop.  Every test that starts an inbox ends by stopping it, running the
 * loop until it is empty and asserting uv_loop_close() == 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "inbox.h"
#include "util.h"

#define SETTLE 50
#define RESCAN 100
#define MAXC 256

/* ---- fixture ----------------------------------------------------------- */

typedef struct claim {
    rk_inbox *who;
    char name[128];
    char path[PATH_MAX];
} claim;

typedef struct fx {
    char dir[64];
    char inbox[PATH_MAX], error[PATH_MAX], archive[PATH_MAX];
    uv_loop_t loop;
    claim c[MAXC];
    int n;
    int dup_name; /* a name claimed twice */
    int recovered; /* claims reported as leftovers of a dead instance */
    rk_inbox *stop_on_claim;
    rk_inbox *scan_on_claim;
    int hold_at; /* rk_inbox_hold(in, 1) from the callback at this claim */
    int closed;
} fx;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/rk-inbox-XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    snprintf(f->inbox, sizeof f->inbox, "%s/inbox", f->dir);
    snprintf(f->error, sizeof f->error, "%s/error", f->dir);
    snprintf(f->archive, sizeof f->archive, "%s/archive", f->dir);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    rk_log_set_level(RK_LOG_LVL_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void on_claim(rk_inbox *in, const char *claimed_path, const char *name, int recovered,
                     void *arg)
{
    fx *f = arg;
    f->recovered += recovered;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->c[i].name, name) == 0)
            f->dup_name = 1;
    if (f->n < MAXC) {
        f->c[f->n].who = in;
        snprintf(f->c[f->n].name, sizeof f->c[f->n].name, "%s", name);
        snprintf(f->c[f->n].path, sizeof f->c[f->n].path, "%s", claimed_path);
    }
    f->n++;
    if (f->scan_on_claim) {
        rk_inbox *other = f->scan_on_claim;
        f->scan_on_claim = NULL;
        rk_inbox_scan(other);
    }
    if (f->hold_at && f->n == f->hold_at) {
        f->hold_at = 0;
        rk_inbox_hold(in, 1);
    }
    if (f->stop_on_claim == in)
        rk_inbox_stop(in, NULL, NULL);
}

static rk_inbox_config cfg_of(fx *f, int with_archive)
{
    rk_inbox_config c = {0};
    c.path = f->inbox;
    c.error_dir = f->error;
    c.archive_dir = with_archive ? f->archive : NULL;
    c.settle_ms = SETTLE;
    c.rescan_ms = RESCAN;
    return c;
}

static rk_inbox *start(fx *f, int with_archive)
{
    rk_inbox_config c = cfg_of(f, with_archive);
    rk_inbox *in = NULL;
    char err[256] = "";
    int rc = rk_inbox_start(&f->loop, &c, on_claim, f, &in, err, sizeof err);
    if (rc)
        print_error("rk_inbox_start: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(in);
    return in;
}

static void on_stop_timer(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop for about ms milliseconds. */
static void run_for(fx *f, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    uv_timer_start(&t, on_stop_timer, ms, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Runs the loop until n claims were seen or max_ms passed. */
static void run_until_claims(fx *f, int n, unsigned max_ms)
{
    uint64_t end = uv_hrtime() / 1000000 + max_ms;
    while (f->n < n && uv_hrtime() / 1000000 < end)
        run_for(f, 10);
}

static void on_closed(void *arg) { (*(int *)arg)++; }

/* Stops the inboxes, runs the loop empty, asserts nothing leaked. */
static void finish(fx *f, rk_inbox *a, rk_inbox *b)
{
    int want = 0;
    f->closed = 0;
    if (a) {
        rk_inbox_stop(a, on_closed, &f->closed);
        want++;
    }
    if (b) {
        rk_inbox_stop(b, on_closed, &f->closed);
        want++;
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->closed, want);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void msleep(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void write_path(const char *path, const char *mode, const void *data, size_t len)
{
    FILE *fp = fopen(path, mode);
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
    assert_true(snprintf(out, n, "%s/%s", dir, name) < (int)n);
}

static void set_old(const char *path)
{
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 10;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Writes dir/name the way a careful writer does: a dot temp file, an
 * old mtime (so it counts as settled at the first look), then rename. */
static void drop(const char *dir, const char *name, const void *data, size_t len)
{
    char tmp[PATH_MAX], dst[PATH_MAX], base[160];
    snprintf(base, sizeof base, ".%s.tmp", name);
    path_in(tmp, sizeof tmp, dir, base);
    path_in(dst, sizeof dst, dir, name);
    write_path(tmp, "wb", data, len);
    set_old(tmp);
    assert_int_equal(rename(tmp, dst), 0);
}

/* Reads a whole file into a static buffer ("" when missing). */
static const char *slurp(const char *path)
{
    static char buf[8192];
    buf[0] = '\0';
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* The leading decimal number of s ("07.xml" -> 7); -1 when none. */
static int num_of(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return end == s || v < 0 || v > 100000 ? -1 : (int)v;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Reads the instance id of a running inbox from its owner file. */
static void owner_id(const char *claimed_dir, char *id, size_t n)
{
    DIR *d = opendir(claimed_dir);
    assert_non_null(d);
    struct dirent *de;
    id[0] = '\0';
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, ".owner.", 7) == 0)
            snprintf(id, n, "%s", de->d_name + 7);
    closedir(d);
    assert_int_equal(strlen(id), 12);
}

/* The claim folder of a claimed path, asserted to be INBOX/.claimed/B/NAME
 * with B "YYYYMMDDTHHMMSSZ-ID-N" (ID: 12 hex digits, id_out when given). */
static void folder_of(const fx *f, const claim *c, char *out, size_t n, char *id_out)
{
    char pre[PATH_MAX];
    path_in(pre, sizeof pre, f->inbox, ".claimed/");
    assert_int_equal(strncmp(c->path, pre, strlen(pre)), 0);
    const char *b = c->path + strlen(pre), *slash = strchr(b, '/');
    assert_non_null(slash);
    assert_string_equal(slash + 1, c->name);
    size_t len = (size_t)(slash - b);
    assert_true(len < n && len >= 16 + 1 + 12 + 2);
    memcpy(out, b, len);
    out[len] = '\0';
    for (size_t i = 0; i < 16; i++)
        assert_true(i == 8 ? out[i] == 'T' : i == 15 ? out[i] == 'Z'
                                                      : out[i] >= '0' && out[i] <= '9');
    assert_int_equal(out[16], '-');
    for (size_t i = 17; i < 29; i++)
        assert_non_null(strchr("0123456789abcdef", out[i]));
    assert_int_equal(out[29], '-');
    assert_true(out[30] >= '1' && out[30] <= '9');
    if (id_out) {
        memcpy(id_out, out + 17, 12);
        id_out[12] = '\0';
    }
}

/* Drops "a.xml" and "b.xml" (<a/>, <b/>), claims both in one scan into one
 * claim folder (its name to b); returns the index in f->c of a.xml. */
static int claim_pair(fx *f, rk_inbox *in, char *b, size_t n)
{
    f->n = 0;
    drop(f->inbox, "a.xml", "<a/>", 4);
    drop(f->inbox, "b.xml", "<b/>", 4);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 2);
    int ia = strcmp(f->c[0].name, "a.xml") == 0 ? 0 : 1;
    assert_string_equal(f->c[1 - ia].name, "b.xml");
    char other[64];
    folder_of(f, &f->c[ia], b, n, NULL);
    folder_of(f, &f->c[1 - ia], other, sizeof other, NULL);
    assert_string_equal(b, other);
    return ia;
}

/* ARCHIVE/YYYY-MM-DD/B/NAME: where a stored file of claim folder B goes. */
static void archived(char *out, size_t n, const char *archive, const char *b, const char *name)
{
    assert_true(snprintf(out, n, "%s/%.4s-%.2s-%.2s/%s/%s", archive, b, b + 4, b + 6, b, name) <
                (int)n);
}

static void gzip_mem(const void *src, size_t len, unsigned char **out, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    *out = malloc(cap);
    assert_non_null(*out);
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)len;
    zs.next_out = *out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outlen = cap - zs.avail_out;
    deflateEnd(&zs);
}

/* ---- tests ------------------------------------------------------------- */

/* A file written in place is taken only once its size and mtime held
 * still for settle_ms, and then exactly once, complete. */
static void test_settles_before_taken(void **state)
{
    fx *f = *state;
    rk_inbox *in = start(f, 0);
    char a[PATH_MAX];
    path_in(a, sizeof a, f->inbox, "a.xml");

    write_path(a, "wb", "<a>part one", 11);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 0);           /* fresh mtime: not settled */
    assert_int_equal(rk_inbox_idle(in), 0);
    msleep(SETTLE + 10);
    write_path(a, "ab", " part two</a>", 13);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 0);           /* size changed since the last look */
    msleep(10);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 0);           /* unchanged, but only 10 ms */
    msleep(SETTLE + 10);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 1);           /* two looks >= settle_ms apart */
    assert_string_equal(f->c[0].name, "a.xml");
    assert_false(exists(a));
    char folder[64];
    folder_of(f, &f->c[0], folder, sizeof folder, NULL);
    char *data = NULL;
    size_t len = 0;
    char err[200] = "";
    rk_inbox_config c = cfg_of(f, 0);
    assert_int_equal(rk_inbox_read(&c, f->c[0].path, f->c[0].name, &data, &len, err, sizeof err), 0);
    assert_int_equal(len, 24);
    assert_string_equal(data, "<a>part one part two</a>");
    free(data);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 1);
    assert_int_equal(rk_inbox_idle(in), 1);

    /* The same through the loop: fs events, debounce and settle timer. */
    char b[PATH_MAX];
    path_in(b, sizeof b, f->inbox, "b.xml");
    write_path(b, "wb", "<b>", 3);
    run_for(f, 25);
    assert_int_equal(f->n, 1);
    write_path(b, "ab", "x", 1);
    run_for(f, 25);
    assert_int_equal(f->n, 1);
    write_path(b, "ab", "</b>", 4);
    run_until_claims(f, 2, 1500);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->c[1].name, "b.xml");
    assert_string_equal(slurp(f->c[1].path), "<b>x</b>");
    run_for(f, RESCAN + 20);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->dup_name, 0);
    assert_int_equal(rk_inbox_idle(in), 1);
    finish(f, in, NULL);
}

/* A file renamed in with an old mtime is taken at the first look; one
 * renamed in fresh is taken after settle_ms, through the loop alone. */
static void test_renamed_in(void **state)
{
    fx *f = *state;
    rk_inbox *in = start(f, 0);
    drop(f->inbox, "old.xml", "<old/>", 6);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 1);
    assert_string_equal(f->c[0].name, "old.xml");
    assert_string_equal(slurp(f->c[0].path), "<old/>");

    char tmp[PATH_MAX], dst[PATH_MAX];
    path_in(tmp, sizeof tmp, f->inbox, ".new.xml.part");
    path_in(dst, sizeof dst, f->inbox, "new.xml");
    write_path(tmp, "wb", "<new/>", 6);
    run_for(f, 30);
    assert_int_equal(f->n, 1);            /* dot names are never taken */
    assert_int_equal(rename(tmp, dst), 0);
    run_until_claims(f, 2, 1000);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->c[1].name, "new.xml");
    assert_string_equal(slurp(f->c[1].path), "<new/>");
    finish(f, in, NULL);
}

/* Bounded claiming: a scan looks at list_max files at a time (and goes on
 * with the next ones while it claims), a hold set from the callback
 * stops it at once, the held inbox is not idle and claims nothing on its
 * rescans, and releasing the hold claims the rest. */
static void test_hold_and_list_max(void **state)
{
    fx *f = *state;
    rk_inbox *in = start(f, 0);
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%02d.xml", i);
        drop(f->inbox, name, "<a/>", 4);
    }
    rk_inbox_set_list_max(in, 6);
    f->hold_at = 8;
    rk_inbox_scan(in);
    assert_int_equal(f->n, 8);
    assert_false(rk_inbox_idle(in));
    run_for(f, 3 * RESCAN);
    assert_int_equal(f->n, 8);   /* held: the rescans claim nothing */
    assert_false(rk_inbox_idle(in));
    assert_int_equal(count_entries(f->inbox), 12 + 1); /* and .claimed */
    rk_inbox_hold(in, 0);
    assert_int_equal(f->n, 20);
    assert_false(f->dup_name);
    run_for(f, 2 * RESCAN);
    assert_true(rk_inbox_idle(in));
    finish(f, in, NULL);
}

/* Two instances on one folder and one loop: fifty files, fifty claims,
 * no name twice.  The first claim of A makes B scan from inside A's scan,
 * so A then finds most of its listed names gone (ENOENT) and must skip
 * them silently. */
static void test_two_inboxes_claim_once(void **state)
{
    fx *f = *state;
    rk_inbox *a = start(f, 0);
    rk_inbox *b = start(f, 0);
    for (int i = 0; i < 50; i++) {
        char name[32], body[32];
        snprintf(name, sizeof name, "s%02d.xml", i);
        int n = snprintf(body, sizeof body, "<s n=\"%d\"/>", i);
        drop(f->inbox, name, body, (size_t)n);
    }
    f->scan_on_claim = b;
    rk_inbox_scan(a);
    run_until_claims(f, 50, 1500);
    run_for(f, RESCAN + 20);
    assert_int_equal(f->n, 50);
    assert_int_equal(f->dup_name, 0);
    int by_a = 0, by_b = 0;
    for (int i = 0; i < 50; i++) {
        char want[32];
        int k = num_of(f->c[i].name + 1);
        snprintf(want, sizeof want, "<s n=\"%d\"/>", k);
        assert_string_equal(slurp(f->c[i].path), want);
        by_a += f->c[i].who == a;
        by_b += f->c[i].who == b;
    }
    assert_true(by_a >= 1);
    assert_true(by_b >= 1);
    assert_int_equal(by_a + by_b, 50);
    assert_int_equal(count_entries(f->inbox), 1); /* only .claimed */
    finish(f, a, b);
}

/* Two real processes race for 200 files; each claims at most once. */
static void test_two_processes_claim_once(void **state)
{
    fx *f = *state;
    assert_int_equal(mkdir(f->inbox, 0700), 0);
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%03d.xml", i);
        drop(f->inbox, name, "<p/>", 4);
    }
    char out_child[PATH_MAX];
    path_in(out_child, sizeof out_child, f->dir, "child.txt");
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        uv_loop_t loop;
        fx *cf = calloc(1, sizeof *cf);
        memcpy(cf->inbox, f->inbox, sizeof cf->inbox);
        memcpy(cf->error, f->error, sizeof cf->error);
        uv_loop_init(&loop);
        rk_inbox_config cc = cfg_of(cf, 0);
        rk_inbox *in = NULL;
        if (rk_inbox_start(&loop, &cc, on_claim, cf, &in, NULL, 0) != 0)
            _exit(3);
        rk_inbox_scan(in);
        rk_inbox_stop(in, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        FILE *fp = fopen(out_child, "w");
        for (int i = 0; fp && i < cf->n && i < MAXC; i++)
            fprintf(fp, "%s\n", cf->c[i].name);
        if (!fp || fclose(fp) != 0)
            _exit(4);
        _exit(uv_loop_close(&loop) == 0 && !cf->dup_name ? 0 : 5);
    }
    close(go[0]);
    rk_inbox *in = start(f, 0);
    assert_int_equal(write(go[1], "g", 1), 1);
    close(go[1]);
    rk_inbox_scan(in);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    rk_inbox_scan(in);

    static int seen[200];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < f->n; i++)
        seen[num_of(f->c[i].name + 1)]++;
    FILE *fp = fopen(out_child, "r");
    assert_non_null(fp);
    char line[64];
    int child_n = 0;
    while (fgets(line, sizeof line, fp)) {
        seen[num_of(line + 1)]++;
        child_n++;
    }
    fclose(fp);
    assert_int_equal(f->n + child_n, 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(seen[i], 1);
    finish(f, in, NULL);
}

/* A folder "folder.xml" in the inbox and a symbolic link "link.xml" to a
 * file outside it (path in target), which must never be read. */
static void drop_folder_and_link(fx *f, char *target, size_t targetlen)
{
    char p[PATH_MAX];
    path_in(p, sizeof p, f->inbox, "folder.xml");
    assert_int_equal(mkdir(p, 0700), 0);
    path_in(target, targetlen, f->dir, "outside.xml");
    write_path(target, "wb", "<secret/>", 9);
    path_in(p, sizeof p, f->inbox, "link.xml");
    assert_int_equal(symlink(target, p), 0);
}

/* Dot files, folders and symlinks are not candidates. */
static void test_ignored_entries(void **state)
{
    fx *f = *state;
    rk_inbox *in = start(f, 0);
    char p[PATH_MAX], target[PATH_MAX];
    drop(f->inbox, ".hidden.xml", "<h/>", 4);
    path_in(p, sizeof p, f->inbox, ".partial");
    write_path(p, "wb", "x", 1);
    set_old(p);
    drop_folder_and_link(f, target, sizeof target);
    rk_inbox_scan(in);
    run_for(f, SETTLE + 30);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 0);
    assert_int_equal(rk_inbox_idle(in), 1);
    /* links go to the error folder as they are (never followed); dot
     * files and folders stay */
    assert_int_equal(count_entries(f->inbox), 4); /* .hidden, .partial, folder, .claimed */
    assert_int_equal(count_entries(f->error), 2); /* link.xml + link.xml.reason */
    char moved[PATH_MAX];
    struct stat lst;
    path_in(moved, sizeof moved, f->error, "link.xml");
    assert_int_equal(lstat(moved, &lst), 0);
    assert_true(S_ISLNK(lst.st_mode));
    assert_string_equal(slurp(target), "<secret/>"); /* the outside file is untouched */
    finish(f, in, NULL);
}

/* settle_ms = 0 takes files from the listing without a stat per file:
 * a fresh regular file is taken on the first scan, and what is not a
 * regular file is still told apart (links and FIFOs to error/, folders
 * and dot files left), as with a settle time. */
static void test_settle_zero_listing(void **state)
{
    fx *f = *state;
    rk_inbox_config c = cfg_of(f, 0);
    c.settle_ms = 0;
    rk_inbox *in = NULL;
    char err[256] = "";
    assert_int_equal(rk_inbox_start(&f->loop, &c, on_claim, f, &in, err, sizeof err), 0);
    char p[PATH_MAX], target[PATH_MAX];
    drop(f->inbox, "fresh.xml", "<a/>", 4); /* just written: no settle wait */
    drop(f->inbox, ".partial.xml", "<p", 2);
    drop_folder_and_link(f, target, sizeof target);
    path_in(p, sizeof p, f->inbox, "pipe.xml");
    assert_int_equal(mkfifo(p, 0600), 0);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 1);
    assert_string_equal(f->c[0].name, "fresh.xml");
    assert_int_equal(rk_inbox_idle(in), 1);
    assert_int_equal(count_entries(f->inbox), 3); /* .partial.xml, folder.xml, .claimed */
    assert_int_equal(count_entries(f->error), 4); /* link + pipe, each with a reason */
    path_in(p, sizeof p, f->error, "link.xml.reason");
    assert_non_null(strstr(slurp(p), "symbolic link"));
    path_in(p, sizeof p, f->error, "pipe.xml.reason");
    assert_non_null(strstr(slurp(p), "FIFO"));
    /* held: files wait, and are taken once the hold ends */
    rk_inbox_hold(in, 1);
    drop(f->inbox, "later.xml", "<b/>", 4);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 1);
    assert_int_equal(rk_inbox_idle(in), 0);
    rk_inbox_hold(in, 0);
    run_for(f, 20);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->c[1].name, "later.xml");
    finish(f, in, NULL);
}

/* Names other than *.xml / *.xml.gz go to error/ with a reason; the
 * suffix test ignores case. */
static void test_non_xml_refused(void **state)
{
    fx *f = *state;
    rk_inbox *in = start(f, 0);
    drop(f->inbox, "note.txt", "hello", 5);
    drop(f->inbox, "UPPER.XML", "<u/>", 4);
    drop(f->inbox, "packed.Xml.Gz", "gz", 2);
    drop(f->inbox, "data.gz", "gz", 2);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->c[0].name, "UPPER.XML");
    assert_string_equal(f->c[1].name, "packed.Xml.Gz");

    char p[PATH_MAX];
    path_in(p, sizeof p, f->error, "note.txt");
    assert_string_equal(slurp(p), "hello");
    path_in(p, sizeof p, f->error, "note.txt.reason");
    assert_string_equal(slurp(p),
                        "not an XML submission: only .xml and .xml.gz are taken\n");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    path_in(p, sizeof p, f->error, "data.gz.reason");
    assert_true(exists(p));
    assert_int_equal(count_entries(f->error), 4);

    /* A second note.txt does not overwrite the first. */
    drop(f->inbox, "note.txt", "again", 5);
    rk_inbox_scan(in);
    path_in(p, sizeof p, f->error, "note.txt");
    assert_string_equal(slurp(p), "hello");
    path_in(p, sizeof p, f->error, "note.txt.1");
    assert_string_equal(slurp(p), "again");
    path_in(p, sizeof p, f->error, "note.txt.1.reason");
    assert_true(exists(p));
    assert_int_equal(count_entries(f->error), 6);
    assert_int_equal(f->n, 2);
    finish(f, in, NULL);
}

/* rk_inbox_read: plain, gzip, truncated gzip, ratio bomb, size cap,
 * file size cap on both sides of the boundary, empty files. */
static void test_read_limits(void **state)
{
    fx *f = *state;
    assert_int_equal(mkdir(f->inbox, 0700), 0);
    rk_inbox_config c = cfg_of(f, 0);
    char p[PATH_MAX], err[256];
    char *data = NULL;
    size_t len = 0;
    const char *xml = "<Antrag><Name>x</Name></Antrag>";

    path_in(p, sizeof p, f->inbox, "plain");
    write_path(p, "wb", xml, strlen(xml));
    /* an access time older than the change: reading would set it (relatime),
     * a journalled inode write per document; rekey's own file is read
     * without touching it */
    struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_nsec = UTIME_OMIT}};
    assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
    /* dropped 0644 by the portal: made 0600 while read, so that the
     * archive holds it so (rk_inbox_done does not open it again) */
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(rk_inbox_read(&c, p, "a.xml", &data, &len, err, sizeof err), 0);
    assert_int_equal(len, strlen(xml));
    assert_string_equal(data, xml);
    free(data);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_atim.tv_sec, 1000000000);
    assert_int_equal(st.st_mode & 07777, 0600);

    unsigned char *gz;
    size_t gzlen;
    gzip_mem(xml, strlen(xml), &gz, &gzlen);
    path_in(p, sizeof p, f->inbox, "gz");
    write_path(p, "wb", gz, gzlen);
    assert_int_equal(rk_inbox_read(&c, p, "a.XML.GZ", &data, &len, err, sizeof err), 0);
    assert_string_equal(data, xml);
    assert_int_equal(len, strlen(xml));
    free(data);

    write_path(p, "wb", gz, gzlen - 9); /* cut inside the trailer */
    err[0] = '\0';
    assert_int_equal(rk_inbox_read(&c, p, "a.xml.gz", &data, &len, err, sizeof err), RK_E_FORMAT);
    assert_null(data);
    assert_string_equal(err, "gzip data is truncated or corrupt");
    write_path(p, "wb", "not gzip at all", 15);
    assert_int_equal(rk_inbox_read(&c, p, "a.xml.gz", &data, &len, err, sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "gzip data is truncated or corrupt");
    free(gz);

    /* 1 MiB of zeros packs into about 1 KiB: ratio ~1000 > 100. */
    size_t big = 1024 * 1024;
    char *zeros = calloc(1, big);
    gzip_mem(zeros, big, &gz, &gzlen);
    write_path(p, "wb", gz, gzlen);
    assert_int_equal(rk_inbox_read(&c, p, "bomb.xml.gz", &data, &len, err, sizeof err), RK_E_LIMIT);
    char want[200];
    snprintf(want, sizeof want, "decompressed data exceeds inbox.max_ratio (100 times the %zu compressed bytes)", gzlen);
    assert_string_equal(err, want);
    /* with a generous ratio the size cap answers instead */
    rk_inbox_config c2 = c;
    c2.max_ratio = 100000;
    c2.max_decompressed = 4096;
    assert_int_equal(rk_inbox_read(&c2, p, "bomb.xml.gz", &data, &len, err, sizeof err), RK_E_LIMIT);
    assert_string_equal(err, "decompressed size exceeds inbox.max_decompressed_size (4096 bytes)");
    c2.max_decompressed = big; /* exactly fits */
    assert_int_equal(rk_inbox_read(&c2, p, "bomb.xml.gz", &data, &len, err, sizeof err), 0);
    assert_int_equal(len, big);
    free(data);
    free(gz);
    free(zeros);

    rk_inbox_config c3 = c;
    c3.max_file_size = 100;
    char hundred[101];
    memset(hundred, 'x', sizeof hundred);
    write_path(p, "wb", hundred, 101);
    assert_int_equal(rk_inbox_read(&c3, p, "big.xml", &data, &len, err, sizeof err), RK_E_LIMIT);
    assert_string_equal(err, "file is 101 bytes, limit is 100 (inbox.max_file_size)");
    write_path(p, "wb", hundred, 100);
    assert_int_equal(rk_inbox_read(&c3, p, "big.xml", &data, &len, err, sizeof err), 0);
    assert_int_equal(len, 100);
    free(data);

    write_path(p, "wb", "", 0);
    assert_int_equal(rk_inbox_read(&c, p, "e.xml", &data, &len, err, sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "empty file");
    assert_int_equal(rk_inbox_read(&c, p, "e.xml.gz", &data, &len, err, sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "empty file");
    gzip_mem("", 0, &gz, &gzlen);
    write_path(p, "wb", gz, gzlen);
    free(gz);
    assert_int_equal(rk_inbox_read(&c, p, "e.xml.gz", &data, &len, err, sizeof err), RK_E_FORMAT);
    assert_string_equal(err, "empty file (the gzip data holds no bytes)");

    path_in(p, sizeof p, f->inbox, "missing");
    assert_int_equal(rk_inbox_read(&c, p, "m.xml", &data, &len, err, sizeof err), -ENOENT);
    assert_string_equal(err, "cannot read the file: No such file or directory");
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* done(): a claim folder leaves for ARCHIVE/DAY/B as a whole once it
 * takes no more files (full, BATCH_MS old, or stopped) and all its files
 * are finished; a file refused from it stays out of the archive; the
 * same name claimed twice goes into a second folder; without an archive
 * the file is deleted and the folder removed.  Created folders are 0700,
 * existing archive files untouched. */
static void test_done_archives(void **state)
{
    fx *f = *state;
    assert_int_equal(mkdir(f->archive, 0700), 0);
    char p[PATH_MAX], b0[64], b1[64], id[16], id1[16];
    path_in(p, sizeof p, f->archive, "a.xml");
    write_path(p, "wb", "old", 3);
    rk_inbox *in = start(f, 1);

    struct stat st;
    assert_int_equal(stat(f->inbox, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(f->error, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    path_in(p, sizeof p, f->inbox, ".claimed");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    drop(f->inbox, "a.xml", "new1", 4);
    drop(f->inbox, "x.xml", "<x/>", 4);
    rk_inbox_scan(in);
    drop(f->inbox, "a.xml", "new2", 4);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 3);
    folder_of(f, &f->c[0], b0, sizeof b0, id);
    folder_of(f, &f->c[1], p, sizeof p, NULL);
    assert_string_equal(p, b0); /* a.xml and x.xml: one folder */
    folder_of(f, &f->c[2], b1, sizeof b1, id1);
    assert_string_not_equal(b0, b1); /* a.xml again: a new folder */
    assert_string_equal(id, id1);
    char owner[32];
    path_in(p, sizeof p, f->inbox, ".claimed");
    owner_id(p, owner, sizeof owner);
    assert_string_equal(id, owner);
    assert_int_equal(stat(f->c[2].path, &st), 0);
    path_in(p, sizeof p, f->inbox, ".claimed");
    char bdir[PATH_MAX];
    path_in(bdir, sizeof bdir, p, b1);
    assert_int_equal(stat(bdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_string_equal(slurp(f->c[0].path), "new1");
    assert_string_equal(slurp(f->c[2].path), "new2");

    /* b0 is closed (the second a.xml opened b1): its last file finished,
     * it moves at once, without the refused x.xml */
    assert_int_equal(rk_inbox_done(in, f->c[0].path, "a.xml"), 0);
    assert_true(exists(f->c[0].path)); /* x.xml still in work */
    assert_int_equal(rk_inbox_fail(in, f->c[1].path, "x.xml", "kaputt"), 0);
    assert_false(exists(f->c[0].path));
    archived(p, sizeof p, f->archive, b0, "a.xml");
    assert_string_equal(slurp(p), "new1");
    archived(p, sizeof p, f->archive, b0, "");
    assert_int_equal(count_entries(p), 1);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    path_in(p, sizeof p, f->error, "x.xml");
    assert_string_equal(slurp(p), "<x/>");

    /* b1 still takes files: its finished file waits for BATCH_MS */
    assert_int_equal(rk_inbox_done(in, f->c[2].path, "a.xml"), 0);
    assert_true(exists(f->c[2].path));
    msleep(1050);
    rk_inbox_scan(in);
    assert_false(exists(f->c[2].path));
    assert_false(exists(bdir));
    archived(p, sizeof p, f->archive, b1, "a.xml");
    assert_string_equal(slurp(p), "new2");
    path_in(p, sizeof p, f->archive, "a.xml");
    assert_string_equal(slurp(p), "old");
    assert_int_equal(count_entries(f->archive), 2); /* a.xml and the day */
    assert_int_equal(rk_inbox_done(in, f->c[0].path, "a.xml"), -ENOENT);
    assert_int_equal(rk_inbox_done(in, f->c[0].path, "../a.xml"), -EINVAL);

    /* stopped with a folder not finished: the stored file goes alone, the
     * other stays for the next start, which reports it from a new folder */
    int ip = claim_pair(f, in, b0, sizeof b0);
    assert_int_equal(rk_inbox_done(in, f->c[ip].path, "a.xml"), 0);
    char qpath[PATH_MAX];
    snprintf(qpath, sizeof qpath, "%s", f->c[1 - ip].path);
    finish(f, in, NULL);
    archived(p, sizeof p, f->archive, b0, "a.xml");
    assert_string_equal(slurp(p), "<a/>");
    assert_string_equal(slurp(qpath), "<b/>");
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->n = 0;
    in = start(f, 1);
    run_until_claims(f, 1, 1000);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->recovered, 1);
    assert_string_equal(f->c[0].name, "b.xml");
    folder_of(f, &f->c[0], b1, sizeof b1, NULL);
    assert_string_not_equal(b0, b1);
    assert_false(exists(qpath));
    assert_int_equal(rk_inbox_done(in, f->c[0].path, "b.xml"), 0);
    archived(p, sizeof p, f->archive, b1, "b.xml"); /* a recovered folder is closed */
    assert_string_equal(slurp(p), "<b/>");
    finish(f, in, NULL);
    path_in(p, sizeof p, f->inbox, ".claimed");
    assert_int_equal(count_entries(p), 0); /* and the owner file went at stop */

    /* no archive: delete */
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->n = 0;
    f->recovered = 0;
    in = start(f, 0);
    drop(f->inbox, "b.xml", "b", 1);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 1);
    assert_int_equal(rk_inbox_done(in, f->c[0].path, "b.xml"), 0);
    assert_false(exists(f->c[0].path));
    assert_int_equal(rk_inbox_config_of(in)->archive_dir, NULL);
    assert_int_equal(rk_inbox_config_of(in)->max_ratio, 100);
    finish(f, in, NULL);
    path_in(p, sizeof p, f->inbox, ".claimed");
    assert_int_equal(count_entries(p), 0);
    archived(p, sizeof p, f->archive, b1, "");
    assert_int_equal(count_entries(p), 1);
}

/* An archive on another file system (EXDEV): the folder cannot move with
 * one rename, so its files are copied into OTHER/DAY/B/ and the claimed
 * ones removed; still no overwrite.  Skipped without a separate tmpfs. */
static void test_done_across_filesystems(void **state)
{
    fx *f = *state;
    char other[64] = "/dev/shm/rk-archive-XXXXXX";
    struct stat s1, s2;
    if (stat("/dev/shm", &s2) != 0 || stat(f->dir, &s1) != 0 || s1.st_dev == s2.st_dev ||
        !mkdtemp(other)) {
        assert_int_equal(uv_loop_close(&f->loop), 0);
        skip();
    }
    rk_inbox_config c = cfg_of(f, 0);
    c.archive_dir = other;
    rk_inbox *in = NULL;
    assert_int_equal(rk_inbox_start(&f->loop, &c, on_claim, f, &in, NULL, 0), 0);
    drop(f->inbox, "a.xml", "one", 3);
    rk_inbox_scan(in);
    drop(f->inbox, "a.xml", "two", 3);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 2);
    char b0[64], b1[64], p[PATH_MAX];
    folder_of(f, &f->c[0], b0, sizeof b0, NULL);
    folder_of(f, &f->c[1], b1, sizeof b1, NULL);
    assert_int_equal(rk_inbox_done(in, f->c[0].path, "a.xml"), 0);
    assert_int_equal(rk_inbox_done(in, f->c[1].path, "a.xml"), 0);
    assert_false(exists(f->c[0].path)); /* its folder was closed */
    finish(f, in, NULL);
    assert_false(exists(f->c[1].path));
    archived(p, sizeof p, other, b0, "a.xml");
    assert_string_equal(slurp(p), "one");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    archived(p, sizeof p, other, b1, "a.xml");
    assert_string_equal(slurp(p), "two");
    archived(p, sizeof p, other, b0, "");
    assert_int_equal(count_entries(p), 1); /* no temp file left */
    path_in(p, sizeof p, f->inbox, ".claimed");
    assert_int_equal(count_entries(p), 0);
    nftw(other, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* fail(): error/NAME plus NAME.reason (0600, text + newline), no temp
 * file left behind; an existing NAME.reason is never overwritten. */
static void test_fail_writes_reason(void **state)
{
    fx *f = *state;
    rk_inbox *in = start(f, 0);
    char p[PATH_MAX];
    path_in(p, sizeof p, f->error, "x.xml.reason");
    write_path(p, "wb", "someone else's file", 19);
    drop(f->inbox, "x.xml", "<x/>", 4);
    rk_inbox_scan(in);
    assert_int_equal(f->n, 1);
    assert_int_equal(rk_inbox_fail(in, f->c[0].path, "x.xml",
                                   "schema: element Antrag: missing child Name"), 0);
    assert_false(exists(f->c[0].path));
    path_in(p, sizeof p, f->error, "x.xml.reason");
    assert_string_equal(slurp(p), "someone else's file");
    path_in(p, sizeof p, f->error, "x.xml.1");
    assert_string_equal(slurp(p), "<x/>");
    path_in(p, sizeof p, f->error, "x.xml.1.reason");
    assert_string_equal(slurp(p), "schema: element Antrag: missing child Name\n");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_entries(f->error), 3);
    finish(f, in, NULL);
}

/* Leftovers in .claimed/ from dead instances — their claim folders and
 * files an older rekey left as NAME.ID — are re-claimed at start into
 * folders of the new instance and reported on the first scan under their
 * original names; what a running instance claimed stays where it is, as
 * does a folder that is not a claim folder; stale owner files are swept. */
static void test_leftovers_reported(void **state)
{
    fx *f = *state;
    rk_inbox *a = start(f, 0);
    char claimed[PATH_MAX], id_a[32], p[PATH_MAX];
    path_in(claimed, sizeof claimed, f->inbox, ".claimed");
    owner_id(claimed, id_a, sizeof id_a);
    run_for(f, 30); /* a's first scan: nothing */
    assert_int_equal(f->n, 0);

    char busy[64];
    snprintf(busy, sizeof busy, "busy.xml.%s", id_a);
    path_in(p, sizeof p, claimed, busy);
    write_path(p, "wb", "<busy/>", 7);
    path_in(p, sizeof p, claimed, "old.xml.0123456789ab");
    write_path(p, "wb", "<old/>", 6);
    path_in(p, sizeof p, claimed, "twice.xml.0123456789ab-2");
    write_path(p, "wb", "<twice/>", 8);
    path_in(p, sizeof p, claimed, "byhand.xml");
    write_path(p, "wb", "<hand/>", 7);
    path_in(p, sizeof p, claimed, "junk.txt.0123456789ab");
    write_path(p, "wb", "junk", 4);
    path_in(p, sizeof p, claimed, ".owner.0123456789ab");
    write_path(p, "wb", "", 0);
    /* claim folders: of the dead instance, of the running a, and one that
     * is not a claim folder at all */
    char dead[PATH_MAX], live[PATH_MAX], livename[64], stray[PATH_MAX];
    path_in(dead, sizeof dead, claimed, "20261127T101500Z-0123456789ab-7");
    assert_int_equal(mkdir(dead, 0700), 0);
    path_in(p, sizeof p, dead, "dead.xml");
    write_path(p, "wb", "<dead/>", 7);
    snprintf(livename, sizeof livename, "20261127T101500Z-%s-3", id_a);
    path_in(live, sizeof live, claimed, livename);
    assert_int_equal(mkdir(live, 0700), 0);
    path_in(p, sizeof p, live, "live.xml");
    write_path(p, "wb", "<live/>", 7);
    path_in(stray, sizeof stray, claimed, "stray");
    assert_int_equal(mkdir(stray, 0700), 0);
    path_in(p, sizeof p, stray, "s.xml");
    write_path(p, "wb", "<s/>", 4);

    rk_inbox *b = start(f, 0);
    assert_int_equal(f->n, 0); /* start never calls the callback */
    assert_int_equal(rk_inbox_idle(b), 0);
    run_until_claims(f, 4, 1000);
    run_for(f, 30);
    assert_int_equal(f->n, 4);
    assert_int_equal(f->recovered, 4); /* all four flagged as leftovers */
    int seen_old = 0, seen_twice = 0, seen_hand = 0, seen_dead = 0;
    char id_b[32] = "", folder[64], fid[16];
    for (int i = 0; i < 4; i++) {
        assert_ptr_equal(f->c[i].who, b);
        folder_of(f, &f->c[i], folder, sizeof folder, fid);
        if (strcmp(f->c[i].name, "dead.xml") == 0) {
            seen_dead++;
            assert_string_equal(slurp(f->c[i].path), "<dead/>");
            assert_string_not_equal(folder, "20261127T101500Z-0123456789ab-7");
        } else if (strcmp(f->c[i].name, "old.xml") == 0) {
            seen_old++;
            assert_string_equal(slurp(f->c[i].path), "<old/>");
            snprintf(id_b, sizeof id_b, "%s", fid);
        } else if (strcmp(f->c[i].name, "twice.xml") == 0) {
            seen_twice++;
            assert_string_equal(slurp(f->c[i].path), "<twice/>");
        } else if (strcmp(f->c[i].name, "byhand.xml") == 0) {
            seen_hand++;
            assert_string_equal(slurp(f->c[i].path), "<hand/>");
        }
    }
    assert_int_equal(seen_old + seen_twice + seen_hand + seen_dead, 4);
    assert_int_equal(seen_old * seen_twice * seen_hand * seen_dead, 1);
    assert_int_equal(strlen(id_b), 12);
    assert_string_not_equal(id_b, id_a);
    for (int i = 0; i < 4; i++) {
        folder_of(f, &f->c[i], folder, sizeof folder, fid);
        assert_string_equal(fid, id_b);
    }
    assert_false(exists(dead));
    path_in(p, sizeof p, live, "live.xml");
    assert_string_equal(slurp(p), "<live/>"); /* a still runs */
    path_in(p, sizeof p, stray, "s.xml");
    assert_string_equal(slurp(p), "<s/>");     /* not rekey's: left alone */
    path_in(p, sizeof p, claimed, "old.xml.0123456789ab");
    assert_false(exists(p));
    path_in(p, sizeof p, claimed, busy);
    assert_string_equal(slurp(p), "<busy/>");      /* a still runs */
    path_in(p, sizeof p, claimed, ".owner.0123456789ab");
    assert_false(exists(p));                        /* stale: swept */
    path_in(p, sizeof p, f->error, "junk.txt");
    assert_string_equal(slurp(p), "junk");
    path_in(p, sizeof p, f->error, "junk.txt.reason");
    assert_string_equal(slurp(p), "not an XML submission: only .xml and .xml.gz are taken\n");
    assert_int_equal(rk_inbox_idle(b), 1);
    finish(f, a, b);
}

/* A claim folder of a dead instance that holds something rekeyd does not
 * put there (here a symbolic link) does not move to the archive whole:
 * its stored file goes alone, the folder stays with the stranger. */
static void test_claim_folder_with_stranger(void **state)
{
    fx *f = *state;
    char claimed[PATH_MAX], dead[PATH_MAX], p[PATH_MAX], b[64];
    path_in(claimed, sizeof claimed, f->inbox, ".claimed");
    assert_int_equal(mkdir(f->inbox, 0700), 0);
    assert_int_equal(mkdir(claimed, 0700), 0);
    path_in(dead, sizeof dead, claimed, "20261127T101500Z-0123456789ab-7");
    assert_int_equal(mkdir(dead, 0700), 0);
    path_in(p, sizeof p, dead, "d.xml");
    write_path(p, "wb", "<d/>", 4);
    path_in(p, sizeof p, dead, "l.xml");
    assert_int_equal(symlink("/etc/passwd", p), 0);
    rk_inbox *in = start(f, 1);
    run_until_claims(f, 1, 1000);
    run_for(f, 30);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->recovered, 1);
    assert_string_equal(f->c[0].name, "d.xml");
    folder_of(f, &f->c[0], b, sizeof b, NULL);
    assert_int_equal(rk_inbox_done(in, f->c[0].path, "d.xml"), 0);
    archived(p, sizeof p, f->archive, b, "d.xml");
    assert_string_equal(slurp(p), "<d/>");
    path_in(p, sizeof p, claimed, b);
    assert_int_equal(count_entries(p), 1); /* the link stayed */
    char link[PATH_MAX];
    path_in(link, sizeof link, p, "l.xml");
    char target[64] = "";
    assert_true(readlink(link, target, sizeof target - 1) > 0);
    assert_string_equal(target, "/etc/passwd");
    finish(f, in, NULL);
}

/* A claim folder is listed before it moves whole: a file put into it by
 * hand, or a stored file reported twice while another is still in work,
 * keeps it in .claimed/ — the stored file goes alone and the rest is
 * taken again by the next start. */
static void test_claim_folder_checked_before_it_moves(void **state)
{
    fx *f = *state;
    char p[PATH_MAX], b[64], claimed[PATH_MAX];
    rk_inbox *in = start(f, 1);
    int ia = claim_pair(f, in, b, sizeof b);
    path_in(claimed, sizeof claimed, f->inbox, ".claimed");
    path_in(p, sizeof p, claimed, b);
    char stray[PATH_MAX];
    path_in(stray, sizeof stray, p, "fremd.xml");
    write_path(stray, "wb", "<fremd/>", 8);
    assert_int_equal(rk_inbox_done(in, f->c[ia].path, "a.xml"), 0);
    assert_int_equal(rk_inbox_done(in, f->c[ia].path, "a.xml"), 0); /* twice */
    finish(f, in, NULL);
    archived(p, sizeof p, f->archive, b, "a.xml");
    assert_string_equal(slurp(p), "<a/>");
    assert_string_equal(slurp(f->c[1 - ia].path), "<b/>");
    assert_string_equal(slurp(stray), "<fremd/>");

    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->n = 0;
    f->recovered = 0;
    in = start(f, 1);
    run_until_claims(f, 2, 1000);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->recovered, 2);
    int ib = strcmp(f->c[0].name, "b.xml") == 0 ? 0 : 1;
    assert_string_equal(f->c[ib].name, "b.xml");
    assert_string_equal(f->c[1 - ib].name, "fremd.xml");
    finish(f, in, NULL);
}

/* Stopping from inside the claim callback ends the scan: nothing more
 * is claimed and the handles still close cleanly. */
static void test_stop_inside_callback(void **state)
{
    fx *f = *state;
    rk_inbox *in = start(f, 0);
    drop(f->inbox, "a.xml", "a", 1);
    drop(f->inbox, "b.xml", "b", 1);
    drop(f->inbox, "c.xml", "c", 1);
    f->stop_on_claim = in;
    f->closed = 0;
    run_for(f, 50);
    assert_int_equal(f->n, 1);
    assert_int_equal(count_entries(f->inbox), 3); /* two left + .claimed */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Configuration errors come back with a message and nothing to close. */
static void test_start_errors(void **state)
{
    fx *f = *state;
    rk_inbox_config c = cfg_of(f, 0);
    rk_inbox *in = (rk_inbox *)1;
    char err[256] = "";
    c.error_dir = NULL;
    assert_int_equal(rk_inbox_start(&f->loop, &c, on_claim, f, &in, err, sizeof err), RK_E_CONFIG);
    assert_null(in);
    assert_string_equal(err, "inbox.error is not set");
    c.error_dir = f->inbox;
    assert_int_equal(rk_inbox_start(&f->loop, &c, on_claim, f, &in, err, sizeof err), RK_E_CONFIG);
    assert_non_null(strstr(err, "must not be the inbox folder itself"));
    char file[PATH_MAX];
    path_in(file, sizeof file, f->dir, "plainfile");
    write_path(file, "wb", "x", 1);
    c.error_dir = f->error;
    c.path = file;
    assert_true(rk_inbox_start(&f->loop, &c, on_claim, f, &in, err, sizeof err) < 0);
    assert_non_null(strstr(err, "inbox.path: cannot create folder"));
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_settles_before_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renamed_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_and_list_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_inboxes_claim_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_processes_claim_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settle_zero_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_xml_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_archives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_across_filesystems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_writes_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftovers_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_folder_with_stranger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_folder_checked_before_it_moves, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
