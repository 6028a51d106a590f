/*
 * inbox.c — the directory inbox source; see inbox.h.
 *
 * Layout of a spool directory while rekeyd runs:
 *
 *   inbox/NAME.xml                 dropped by the portal, not yet taken
 *   inbox/.claimed/B/NAME.xml      claimed into the claim folder B
 *   inbox/.claimed/.owner.ID       held with flock() while ID runs
 *   archive/YYYY-MM-DD/B/NAME.xml  stored; B moved here as a whole
 *
 * A claim folder B is named "YYYYMMDDTHHMMSSZ-ID-N": the UTC time it was
 * made, the instance ID (12 hex) and a number.  It takes the files one
 * instance claims for at most BATCH_MS or BATCH_MAX files, and moves to
 * the archive with one rename once every file in it has been stored (or
 * sent to the error folder): one rename per file (the claim) instead of
 * two, the archive's rename being a tenth of the benchmark's CPU.  The
 * archive groups the folders by day (the day in B's name).  Without an
 * archive (delete) each file is unlinked when stored and the empty
 * folder removed.
 *
 * Scanning: the scan runs on the loop thread with plain opendir/readdir
 * and fstatat(AT_SYMLINK_NOFOLLOW).  Inbox folders are small (files
 * leave within milliseconds) and a scan needs the listing and the stat of
 * each name at once; uv_fs_scandir would give the names only and adds a
 * thread-pool round trip for no gain.  Symlinks are not regular files to
 * fstatat without following: a link (or a FIFO, a socket, a device) is
 * moved as it is to the error folder, so a link into /etc is never read;
 * the reader opens with O_NOFOLLOW in case one was swapped in after the
 * scan.  File names that could not be carried safely into the store and
 * the logs (control characters, not UTF-8, over MAX_NAME bytes) are
 * refused before the claim, and names in log lines are escaped.
 *
 * Crash recovery: claim folders left in .claimed/ by an instance that no
 * longer runs are re-claimed at start (an atomic rename of the folder to
 * a name of this instance: of two starting instances only one wins) and
 * their files reported on the first scan; the engine archives at once
 * those it had stored.  Files an older rekey left as .claimed/NAME.ID are
 * claimed into a folder the same way.  An instance is "running" while its
 * .owner.ID file is locked; so a second rekeyd starting on a shared inbox
 * does not take the files a first one is still working on.  When rekeyd
 * stops with a folder not yet finished (files it could not store), the
 * stored files move to the archive one by one and the rest stay for the
 * next start.
 */
#include "inbox.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COMP "inbox"
#define ID_BYTES 6
#define ID_HEX (2 * ID_BYTES)
#define DEBOUNCE_MS 5
#define MAX_UNIQUE 1000 /* NAME, NAME.1 .. NAME.999 in archive/error */
#define BATCH_MAX 1000   /* files per claim folder */
#define BATCH_MS 1000    /* a claim folder takes new files for this long */
#define BATCH_NAME 48    /* "YYYYMMDDTHHMMSSZ-" ID "-" N, NUL */
#define CLAIMED_DIR ".claimed" /* in the inbox folder */

#define DEF_RESCAN_MS 2000u
#define DEF_MAX_FILE ((size_t)10 * 1024 * 1024)
#define DEF_MAX_DECOMPRESSED ((size_t)50 * 1024 * 1024)
#define DEF_MAX_RATIO 100u

#define REASON_NOT_XML "not an XML submission: only .xml and .xml.gz are taken"
#define MAX_NAME 200    /* longest file name taken, bytes (room for suffixes) */
#define LOGNAME_MAX (4 * NAME_MAX + 8) /* a name escaped for a log line */

/* A file seen in the inbox but not yet taken. */
typedef struct seen_file {
    char *name;
    int64_t size;
    int64_t mtime_ns;
    uint64_t since_ms; /* monotonic ms when this size+mtime was first seen */
    int stuck;         /* the claim failed (not ENOENT): retried quietly */
    const char *special; /* not a regular file: what it is ("symbolic link") */
} seen_file;

/* A claim folder (.claimed/NAME/): see the top of this file.  done holds
 * the names of its stored files that are still in it (archive mode), for
 * the case that the folder cannot move as a whole. */
typedef struct batch {
    struct batch *next;
    char name[BATCH_NAME];
    uint64_t opened_ms;
    size_t claimed, finished;
    int closed; /* takes no more files */
    int stuck;  /* a finished file could not leave it (error folder, delete) */
    char **done;
    size_t ndone, capdone;
} batch;

/* A file re-claimed from a dead instance, reported on the first scan. */
typedef struct leftover {
    char *claimed_path;
    char *name;
} leftover;

struct rk_inbox {
    uv_loop_t *loop;
    rk_inbox_config cfg; /* defaults filled; strings point at the copies */
    char *path, *archive, *error, *claimed;
    int claimed_fd; /* .claimed/, for the claims' renames */
    char id[ID_HEX + 1];
    batch *batches; /* open and unfinished claim folders */
    batch *cur;     /* the one new claims go into, or NULL */
    unsigned batch_seq;
    char owner_path[PATH_MAX];
    int owner_fd;
    rk_inbox_claim_cb cb;
    void *arg;

    uv_fs_event_t watch;
    uv_timer_t rescan, debounce, settle;
    uint64_t last_scan_ms;  /* mono_ms of the last scan's start */
    int handles_open;
    int stopping;
    void (*close_cb)(void *arg);
    void *close_arg;

    int in_scan, scan_again, scanned_once, idle;
    int held;        /* rk_inbox_hold: settled files wait, nothing is claimed */
    size_t list_max; /* rk_inbox_set_list_max: entries one scan looks at, 0 = all */
    seen_file *seen; /* sorted by name */
    size_t nseen;
    leftover *left;
    size_t nleft, capleft;
};

/* ---- small helpers ----------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Writes "a/b" (and an optional suffix) into out; -ENAMETOOLONG when it
 * does not fit. */
static int join(char *out, size_t outlen, const char *dir, const char *name,
                const char *suffix)
{
    int n = snprintf(out, outlen, "%s/%s%s", dir, name, suffix ? suffix : "");
    if (n < 0 || (size_t)n >= outlen)
        return -ENAMETOOLONG;
    return 0;
}

static int ends_with_ci(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcasecmp(s + n - m, suf) == 0;
}

static int is_submission_name(const char *name)
{
    return ends_with_ci(name, ".xml") || ends_with_ci(name, ".xml.gz");
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when the
 * bytes there are not one: overlong forms, surrogates and code points
 * above U+10FFFF are invalid too. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x3Fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/*
 * A file name as it may appear in a log line: control characters, DEL,
 * the backslash and bytes that are not valid UTF-8 become \xHH.  Names
 * come from whoever can write into the inbox; unescaped, "a\nb.xml"
 * would forge a second log line and an ESC byte would drive the
 * operator's terminal.  Returns buf (LOGNAME_MAX bytes hold any name).
 */
static const char *log_name(const char *name, char *buf, size_t buflen)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strlen(name), o = 0;
    if (!buflen)
        return "";
    for (size_t i = 0; i < n;) {
        size_t k = s[i] < 0x20 || s[i] == 0x7F || s[i] == '\\' ? 0 : utf8_seq(s + i, n - i);
        if (k == 0) {
            if (o + 4 >= buflen)
                break;
            snprintf(buf + o, buflen - o, "\\x%02X", s[i]);
            o += 4;
            i++;
        } else {
            if (o + k >= buflen)
                break;
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        }
    }
    buf[o] = '\0';
    return buf;
}

/*
 * What is wrong with a file name that the rest of rekey could not carry
 * safely, or NULL.  Such a file is refused (error folder) before it is
 * claimed: its name would reach the database, rekeyctl, the dashboard
 * and the target as the submission's source reference.
 */
static const char *name_problem(const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7F)
            return "the file name contains control characters; rename the file and put it "
                   "back";
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(s + i, n - i);
        if (!k)
            return "the file name is not valid UTF-8; rename the file and put it back";
        i += k;
    }
    if (n > MAX_NAME)
        return "the file name is longer than 200 bytes; rename the file and put it back";
    return NULL;
}

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000u; }

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mtime_ns_of(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Fills zero fields of a config with the documented defaults. */
static rk_inbox_config with_defaults(const rk_inbox_config *c)
{
    rk_inbox_config e = *c;
    /* settle_ms 0 is a setting of its own: take files at once (for
     * writers that always rename complete files in) */
    if (!e.rescan_ms)
        e.rescan_ms = DEF_RESCAN_MS;
    if (!e.max_file_size)
        e.max_file_size = DEF_MAX_FILE;
    if (!e.max_decompressed)
        e.max_decompressed = DEF_MAX_DECOMPRESSED;
    if (!e.max_ratio)
        e.max_ratio = DEF_MAX_RATIO;
    if (e.archive_dir && !e.archive_dir[0])
        e.archive_dir = NULL; /* "archive =" in the config: delete */
    return e;
}

/* mkdir -p with mode 0700 for every folder it creates.  Existing folders
 * keep their mode (an operator may have opened the inbox to a portal
 * user on purpose).  0 or -errno. */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -errno;
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Renames src to dst unless dst exists; -EEXIST then.  RENAME_NOREPLACE
 * where the file system has it; link+unlink where it does not (NFS):
 * link() fails atomically on an existing name; last a check-then-rename
 * for file systems without hard links.  -EXDEV is passed up. */
static int move_noreplace_at(int sdfd, const char *src, int ddfd, const char *dst)
{
    if (renameat2(sdfd, src, ddfd, dst, RENAME_NOREPLACE) == 0)
        return 0;
    int e = errno;
    if (e != EINVAL && e != ENOSYS && e != ENOTSUP)
        return -e;
    if (linkat(sdfd, src, ddfd, dst, 0) == 0) {
        if (unlinkat(sdfd, src, 0) == 0)
            return 0;
        e = errno;
        unlinkat(ddfd, dst, 0);
        return -e;
    }
    e = errno;
    if (e == EEXIST || e == ENOENT || e == EXDEV)
        return -e;
    struct stat st;
    if (fstatat(ddfd, dst, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    return renameat(sdfd, src, ddfd, dst) == 0 ? 0 : -errno;
}

static int move_noreplace(const char *src, const char *dst)
{
    return move_noreplace_at(AT_FDCWD, src, AT_FDCWD, dst);
}

/* Copies src into a new hidden temporary file in dir (0600, fsynced,
 * mtime kept), for moves across file systems.  The temp path goes to
 * tmp.  0 or -errno; -EXDEV for what is not a regular file. */
static int copy_to_temp(const char *src, const char *dir, char *tmp,
                        size_t tmplen)
{
    char hex[17];
    int rc = rk_random_hex(8, hex);
    if (rc)
        return rc;
    char base[32];
    snprintf(base, sizeof base, ".copy.%s.tmp", hex);
    if ((rc = join(tmp, tmplen, dir, base, NULL)) != 0)
        return rc;
    /* O_NONBLOCK and the S_ISREG check: a refused FIFO must not block the
     * loop thread in open() or read(); links fail with ELOOP.  Neither can
     * be copied: -EXDEV says why it stays where it is. */
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (in < 0)
        return errno == ELOOP ? -EXDEV : -errno;
    struct stat ist;
    if (fstat(in, &ist) != 0 || !S_ISREG(ist.st_mode)) {
        close(in);
        return -EXDEV;
    }
    int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = -errno;
        close(in);
        return rc;
    }
    char chunk[65536];
    for (;;) {
        ssize_t n = read(in, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, chunk + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -errno;
                break;
            }
            off += w;
        }
        if (rc)
            break;
    }
    struct stat st;
    if (!rc && fstat(in, &st) == 0) {
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        futimens(out, times);
    }
    if (!rc && fsync(out) != 0)
        rc = -errno;
    if (close(out) != 0 && !rc)
        rc = -errno;
    close(in);
    if (rc)
        unlink(tmp);
    return rc;
}

/* Moves src into dir under name, or name.1, name.2, ... when taken; an
 * existing file is never overwritten.  With avoid_reason, a candidate
 * whose CANDIDATE.reason exists is skipped too (the error folder pairs
 * each file with its reason).  The chosen path goes to dst.  Works
 * across file systems (copy, then remove src).  0 or -errno. */
static int move_unique(const char *src, const char *dir, const char *name,
                       int avoid_reason, char *dst, size_t dstlen)
{
    char tmp[PATH_MAX];
    const char *from = src;
    int copied = 0;
    int rc = -EEXIST;
    for (unsigned i = 0; i < MAX_UNIQUE;) {
        char suffix[16] = "";
        if (i)
            snprintf(suffix, sizeof suffix, ".%u", i);
        if ((rc = join(dst, dstlen, dir, name, suffix)) != 0)
            break;
        if (avoid_reason) {
            char rpath[PATH_MAX];
            struct stat st;
            int n = snprintf(rpath, sizeof rpath, "%s.reason", dst);
            if (n < 0 || (size_t)n >= sizeof rpath) {
                rc = -ENAMETOOLONG;
                break;
            }
            if (lstat(rpath, &st) == 0) {
                i++;
                rc = -EEXIST;
                continue;
            }
        }
        rc = move_noreplace(from, dst);
        if (rc == -EEXIST) {
            i++;
            continue;
        }
        if (rc == -EXDEV && !copied) {
            if ((rc = copy_to_temp(src, dir, tmp, sizeof tmp)) != 0)
                break;
            copied = 1;
            from = tmp;
            continue; /* same candidate, now from inside dir */
        }
        break;
    }
    if (copied) {
        if (rc == 0) {
            if (unlink(src) != 0)
                rc = -errno;
        } else {
            unlink(tmp);
        }
    }
    return rc;
}

/* Writes "reason\n" to path atomically: a 0600 temp file in the same
 * folder, fsync, rename.  0 or -errno. */
static int write_reason(const char *dir, const char *path, const char *reason)
{
    char hex[17], base[40], tmp[PATH_MAX];
    int rc = rk_random_hex(8, hex);
    if (rc)
        return rc;
    snprintf(base, sizeof base, ".reason.%s.tmp", hex);
    if ((rc = join(tmp, sizeof tmp, dir, base, NULL)) != 0)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t n = strlen(reason);
    const char *parts[2] = {reason, "\n"};
    size_t lens[2] = {n, 1};
    for (int p = 0; p < 2 && !rc; p++) {
        for (size_t off = 0; off < lens[p];) {
            ssize_t w = write(fd, parts[p] + off, lens[p] - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -errno;
                break;
            }
            off += (size_t)w;
        }
    }
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* Makes a file rekey moved into its error folder 0600, as if
 * rekey had written it (the portal may have dropped it 0644).  Best
 * effort: a file of another user keeps its mode, the folder (0700) still
 * guards it.  Opened with O_NOFOLLOW, so a refused symbolic link in the
 * error folder never passes the chmod on to its target. */
static void restrict_mode(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07177) != 0)
        (void)fchmod(fd, st.st_mode & 0600);
    close(fd);
}

/* Moves src into the error folder as ename (made unique) and writes
 * ename.reason beside it; shown is the name for the log line.  0 or
 * -errno (-ENOENT: src is gone, another instance took it). */
static int to_error(rk_inbox *in, const char *src, const char *ename, const char *shown,
                    const char *reason)
{
    char dst[PATH_MAX], rpath[PATH_MAX], lname[LOGNAME_MAX];
    log_name(shown, lname, sizeof lname);
    if (!reason)
        reason = "unknown reason";
    int rc = move_unique(src, in->error, ename, 1, dst, sizeof dst);
    if (rc) {
        if (rc != -ENOENT)
            rk_error(COMP, "instance %s: cannot move %s to the error folder: %s", in->id,
                     lname, rk_strerror(rc));
        return rc;
    }
    restrict_mode(dst);
    int n = snprintf(rpath, sizeof rpath, "%s.reason", dst);
    if (n < 0 || (size_t)n >= sizeof rpath)
        return -ENAMETOOLONG;
    rc = write_reason(in->error, rpath, reason);
    if (rc)
        rk_error(COMP, "instance %s: cannot write the reason file for %s: %s", in->id, lname,
                 rk_strerror(rc));
    else
        rk_warn(COMP, "instance %s: %s moved to the error folder: %s", in->id, lname, reason);
    return rc;
}

/* ---- claim folders ----------------------------------------------------- */

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->ndone; i++)
        free(b->done[i]);
    free(b->done);
    free(b);
}

/* A new claim folder's name: "YYYYMMDDTHHMMSSZ-ID-N". */
static void batch_name(rk_inbox *in, char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;
    char ts[24];
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, outlen, "%s-%s-%u", ts, in->id, ++in->batch_seq);
}

/* The owner's ID of a claim folder's name (id_out: ID_HEX + 1 bytes);
 * 0 when the name is not one. */
static int batch_owner(const char *name, char *id_out)
{
    size_t n = strlen(name);
    if (n < 16 + 1 + ID_HEX + 2 || n >= BATCH_NAME || name[8] != 'T' || name[15] != 'Z' ||
        name[16] != '-' || name[17 + ID_HEX] != '-')
        return 0;
    for (size_t i = 0; i < 16; i++)
        if (i != 8 && i != 15 && (name[i] < '0' || name[i] > '9'))
            return 0;
    for (size_t i = 17; i < 17 + ID_HEX; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    for (size_t i = 18 + ID_HEX; i < n; i++)
        if (name[i] < '0' || name[i] > '9')
            return 0;
    memcpy(id_out, name + 17, ID_HEX);
    id_out[ID_HEX] = '\0';
    return 1;
}

/* archive/YYYY-MM-DD/B for the folder B (its day from B's name; today's
 * for a name without one).  0 or -ENAMETOOLONG. */
static int batch_archive_dir(const rk_inbox *in, const char *bname, char *out, size_t outlen)
{
    char day[16], id[ID_HEX + 1];
    if (batch_owner(bname, id)) {
        snprintf(day, sizeof day, "%.4s-%.2s-%.2s", bname, bname + 4, bname + 6);
    } else {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(day, sizeof day, "%Y-%m-%d", &tm);
    }
    int n = snprintf(out, outlen, "%s/%s/%s", in->archive, day, bname);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* Moves one stored file of folder bname to archive/DAY/bname/ (made
 * unique there, copied across file systems).  0 or -errno, logged. */
static int archive_one(rk_inbox *in, const char *bname, const char *src, const char *name)
{
    char dir[PATH_MAX], dst[PATH_MAX], lname[LOGNAME_MAX];
    int rc = batch_archive_dir(in, bname, dir, sizeof dir);
    if (!rc)
        rc = mkdir_p(dir);
    if (!rc)
        rc = move_unique(src, dir, name, 0, dst, sizeof dst);
    if (rc)
        rk_error(COMP, "instance %s: cannot archive %s: %s", in->id,
                 log_name(name, lname, sizeof lname), rk_strerror(rc));
    return rc;
}

/* Moves the stored files of b to the archive one by one (its folder
 * could not move whole, or holds files not yet stored) and removes the
 * folder when that leaves it empty. */
static void batch_archive_each(rk_inbox *in, batch *b)
{
    for (size_t i = 0; i < b->ndone; i++) {
        char src[PATH_MAX];
        if (snprintf(src, sizeof src, "%s/%s/%s", in->claimed, b->name, b->done[i]) <
            (int)sizeof src)
            archive_one(in, b->name, src, b->done[i]);
        free(b->done[i]);
    }
    b->ndone = 0;
    (void)unlinkat(in->claimed_fd, b->name, AT_REMOVEDIR); /* fails when not empty */
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 when the folder holds exactly the stored files b knows (one listing
 * per folder): anything else in it — a file put there by hand, a file
 * counted twice — keeps it from moving whole. */
static int batch_exact(rk_inbox *in, batch *b)
{
    int fd = openat(in->claimed_fd, b->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    qsort(b->done, b->ndone, sizeof *b->done, str_cmp);
    size_t n = 0;
    int exact = 1;
    struct dirent *de;
    while (exact && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        const char *key = de->d_name;
        exact = bsearch(&key, b->done, b->ndone, sizeof *b->done, str_cmp) != NULL;
        n++;
    }
    closedir(d);
    if (exact && n != b->ndone)
        exact = 0; /* a name counted twice */
    if (!exact)
        rk_warn(COMP, "instance %s: claim folder %s does not hold just its stored files; "
                "they go to the archive one by one and the rest stays for the next start",
                in->id, b->name);
    return exact;
}

/* The whole folder to archive/DAY/B with one rename (a second folder of
 * that name: B.1, ...).  Across file systems, or when the rename fails,
 * file by file. */
static void batch_archive(rk_inbox *in, batch *b)
{
    char dst[PATH_MAX], src[PATH_MAX];
    if (!batch_exact(in, b)) {
        batch_archive_each(in, b);
        return;
    }
    int rc = batch_archive_dir(in, b->name, dst, sizeof dst);
    if (!rc) {
        char *slash = strrchr(dst, '/');
        *slash = '\0';
        rc = mkdir_p(dst); /* the day's folder */
        *slash = '/';
    }
    if (!rc)
        rc = join(src, sizeof src, in->claimed, b->name, NULL);
    if (!rc) {
        size_t dl = strlen(dst);
        for (unsigned i = 0; i < MAX_UNIQUE; i++) {
            if (i && snprintf(dst + dl, sizeof dst - dl, ".%u", i) >= (int)(sizeof dst - dl)) {
                rc = -ENAMETOOLONG;
                break;
            }
            if ((rc = move_noreplace(src, dst)) != -EEXIST)
                break;
        }
    }
    if (!rc) {
        for (size_t i = 0; i < b->ndone; i++)
            free(b->done[i]);
        b->ndone = 0;
        return;
    }
    if (rc != -EXDEV)
        rk_warn(COMP, "instance %s: cannot move claim folder %s to the archive (%s); "
                "moving its files one by one", in->id, b->name, rk_strerror(rc));
    batch_archive_each(in, b);
}

static void batch_unlink(rk_inbox *in, batch *b)
{
    for (batch **pp = &in->batches; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    if (in->cur == b)
        in->cur = NULL;
    batch_free(b);
}

/* A closed folder whose files are all finished leaves .claimed/: to the
 * archive as a whole, or removed (delete mode, or nothing in it).  With
 * a file that could not leave (stuck), the stored ones go one by one
 * and the folder stays for the next start. */
static void batch_settle(rk_inbox *in, batch *b)
{
    if (!b->closed || b->finished < b->claimed)
        return;
    if (!in->archive || b->ndone == 0) {
        if (unlinkat(in->claimed_fd, b->name, AT_REMOVEDIR) != 0 && errno != ENOENT &&
            !b->stuck)
            rk_warn(COMP, "instance %s: cannot remove claim folder %s: %s", in->id, b->name,
                    strerror(errno));
    } else if (b->stuck) {
        batch_archive_each(in, b);
    } else {
        batch_archive(in, b);
    }
    batch_unlink(in, b);
}

static void batch_close(rk_inbox *in, batch *b)
{
    b->closed = 1;
    if (in->cur == b)
        in->cur = NULL;
    batch_settle(in, b);
}

/* Closes the folder new claims go into when it is BATCH_MS old. */
static void batch_age(rk_inbox *in)
{
    if (in->cur && mono_ms() - in->cur->opened_ms >= BATCH_MS)
        batch_close(in, in->cur);
}

/* A new, empty claim folder (not yet in the list).  NULL on failure,
 * with -errno in *rc. */
static batch *batch_make(rk_inbox *in, int *rc)
{
    batch *b = calloc(1, sizeof *b);
    if (!b) {
        *rc = -ENOMEM;
        return NULL;
    }
    b->opened_ms = mono_ms();
    for (int tries = 0; tries < 100; tries++) {
        batch_name(in, b->name, sizeof b->name);
        if (mkdirat(in->claimed_fd, b->name, 0700) == 0) {
            *rc = 0;
            return b;
        }
        if (errno != EEXIST)
            break;
    }
    *rc = -errno;
    free(b);
    return NULL;
}

/* The folder a new claim goes into (made when there is none, or the
 * current one is full or old). */
static batch *batch_current(rk_inbox *in, int *rc)
{
    batch_age(in);
    if (in->cur && in->cur->claimed >= BATCH_MAX)
        batch_close(in, in->cur);
    if (in->cur) {
        *rc = 0;
        return in->cur;
    }
    batch *b = batch_make(in, rc);
    if (!b)
        return NULL;
    b->next = in->batches;
    in->batches = b;
    in->cur = b;
    return b;
}

/* The open claim folder of a claimed path (.claimed/B/NAME), or NULL. */
static batch *batch_of(rk_inbox *in, const char *claimed_path)
{
    size_t cl = strlen(in->claimed);
    if (strncmp(claimed_path, in->claimed, cl) != 0 || claimed_path[cl] != '/')
        return NULL;
    const char *bn = claimed_path + cl + 1;
    const char *slash = strchr(bn, '/');
    if (!slash)
        return NULL;
    for (batch *b = in->batches; b; b = b->next)
        if (strlen(b->name) == (size_t)(slash - bn) && memcmp(b->name, bn, slash - bn) == 0)
            return b;
    return NULL;
}

/* One claimed file of b is finished: gone (stored and deleted, or moved
 * to the error folder), kept as stored for the archive (name), or stuck
 * in the folder. */
static void batch_finish(rk_inbox *in, batch *b, const char *keep_name, int stuck)
{
    b->finished++;
    if (stuck)
        b->stuck = 1;
    if (keep_name) {
        if (b->ndone == b->capdone) {
            size_t nc = b->capdone ? b->capdone * 2 : 64;
            char **p = realloc(b->done, nc * sizeof *p);
            if (p) {
                b->done = p;
                b->capdone = nc;
            }
        }
        char *n = b->ndone < b->capdone ? rk_strndup(keep_name, strlen(keep_name)) : NULL;
        if (n)
            b->done[b->ndone++] = n;
        else
            b->stuck = 1; /* out of memory: the folder stays, nothing is lost */
    }
    if (b == in->cur)
        batch_age(in);
    else
        batch_settle(in, b);
}

/* A claimed file was refused (to_error gave rc): finished in its folder,
 * stuck when it is still there, so that the folder does not carry a
 * refused file into the archive. */
static void refused_from_folder(rk_inbox *in, const char *cpath, int rc)
{
    batch *b = batch_of(in, cpath);
    if (b)
        batch_finish(in, b, NULL, rc != 0 && access(cpath, F_OK) == 0);
}

/* Renames src_name (relative to src_dfd) into the current claim folder
 * as name; the claimed path goes to out.  A name the folder already has
 * (claimed twice while the first is in flight) goes into a new folder.
 * 0, -ENOENT (gone: another instance took it) or another -errno.  Only
 * this instance creates its folders, so a name collision can only be
 * its own; the rename decides between competing instances. */
static int claim_into(rk_inbox *in, int src_dfd, const char *src_name, const char *name,
                      char *out, size_t outlen)
{
    int rc = 0;
    for (int tries = 0; tries < 4; tries++) {
        batch *b = batch_current(in, &rc);
        if (!b)
            return rc;
        char rel[PATH_MAX];
        if (snprintf(rel, sizeof rel, "%s/%s", b->name, name) >= (int)sizeof rel)
            return -ENAMETOOLONG;
        rc = move_noreplace_at(src_dfd, src_name, in->claimed_fd, rel);
        if (rc == 0) {
            b->claimed++;
            return join(out, outlen, in->claimed, rel, NULL);
        }
        if (rc == -ENOENT && faccessat(in->claimed_fd, b->name, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
            /* the folder itself is gone (removed by hand): a new one */
            rk_warn(COMP, "instance %s: claim folder %s disappeared", in->id, b->name);
            b->claimed = b->finished; /* its files went with it */
            b->stuck = 1;
            batch_close(in, b);
            continue;
        }
        if (rc != -EEXIST)
            return rc;
        batch_close(in, b);
    }
    return rc;
}

/* Splits a claimed file name "NAME.ID" or "NAME.ID-N" into NAME (a new
 * string, caller frees) and ID (id_out, ID_HEX+1 bytes).  A name without
 * such a suffix (put there by hand) is returned whole with id "". */
static char *parse_claimed_name(const char *fname, char *id_out)
{
    id_out[0] = '\0';
    const char *dot = strrchr(fname, '.');
    if (dot && dot != fname) {
        const char *p = dot + 1;
        size_t k = 0;
        while (k < ID_HEX && ((p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f')))
            k++;
        const char *q = p + k;
        int ok = k == ID_HEX && (*q == '\0' || q[0] == '-');
        if (ok && q[0] == '-') {
            q++;
            ok = *q != '\0';
            for (; *q && ok; q++)
                ok = *q >= '0' && *q <= '9';
        }
        if (ok) {
            memcpy(id_out, p, ID_HEX);
            id_out[ID_HEX] = '\0';
            return rk_strndup(fname, (size_t)(dot - fname));
        }
    }
    return rk_strndup(fname, strlen(fname));
}

/* ---- instance ownership (flock on .claimed/.owner.ID) ------------------ */

/* Creates this instance's owner file, locked before it becomes visible
 * under its final name (a temp name, then rename), so another starting
 * instance never sees it unlocked.  Without lock support the instance
 * runs anyway, with a warning: leftovers are then taken unconditionally. */
static void owner_create(rk_inbox *in)
{
    char tmp[PATH_MAX], base[48];
    in->owner_fd = -1;
    in->owner_path[0] = '\0';
    snprintf(base, sizeof base, ".ownertmp.%s", in->id);
    if (join(tmp, sizeof tmp, in->claimed, base, NULL) != 0)
        return;
    snprintf(base, sizeof base, ".owner.%s", in->id);
    if (join(in->owner_path, sizeof in->owner_path, in->claimed, base, NULL) != 0) {
        in->owner_path[0] = '\0';
        return;
    }
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, in->owner_path) != 0) {
        rk_warn(COMP, "instance %s: no owner lock in %s (%s); a second rekeyd "
                "starting on this inbox could take files in flight",
                in->id, in->claimed, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        in->owner_path[0] = '\0';
        return;
    }
    in->owner_fd = fd;
}

/* 1 when the instance id still runs (its owner file is locked). */
static int owner_alive(const rk_inbox *in, const char *id)
{
    if (!id[0])
        return 0;
    if (strcmp(id, in->id) == 0)
        return 1;
    char path[PATH_MAX], base[48];
    snprintf(base, sizeof base, ".owner.%s", id);
    if (join(path, sizeof path, in->claimed, base, NULL) != 0)
        return 0;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    int alive = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return alive;
}

/* Removes owner files of instances that no longer run (while holding
 * their lock, so a live one is never removed). */
static void owner_sweep(rk_inbox *in)
{
    DIR *d = opendir(in->claimed);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, ".owner.", 7) != 0 || strcmp(de->d_name + 7, in->id) == 0)
            continue;
        char path[PATH_MAX];
        if (join(path, sizeof path, in->claimed, de->d_name, NULL) != 0)
            continue;
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            unlink(path);
        close(fd);
    }
    closedir(d);
}

/* ---- leftovers --------------------------------------------------------- */

/* Queues a re-claimed file for the first scan.  0 or -ENOMEM. */
static int leftover_add(rk_inbox *in, const char *cpath, const char *name)
{
    if (in->nleft == in->capleft) {
        size_t nc = in->capleft ? in->capleft * 2 : 8;
        leftover *p = realloc(in->left, nc * sizeof *p);
        if (!p)
            return -ENOMEM;
        in->left = p;
        in->capleft = nc;
    }
    char *cp = rk_strndup(cpath, strlen(cpath));
    char *n = rk_strndup(name, strlen(name));
    if (!cp || !n) {
        free(cp);
        free(n);
        return -ENOMEM;
    }
    in->left[in->nleft].claimed_path = cp;
    in->left[in->nleft].name = n;
    in->nleft++;
    char lname[LOGNAME_MAX];
    rk_info(COMP, "instance %s: re-claimed %s left by an earlier run", in->id,
            log_name(name, lname, sizeof lname));
    return 0;
}

/* Takes over the claim folder old of a dead instance: renamed to a new
 * folder of this one (closed: it takes no new files), its files queued.
 * 0 (also when another instance was faster) or -ENOMEM. */
static int leftover_folder(rk_inbox *in, const char *old)
{
    batch *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->opened_ms = mono_ms();
    b->closed = 1;
    int r = -EEXIST;
    for (int tries = 0; tries < 100 && r == -EEXIST; tries++) {
        batch_name(in, b->name, sizeof b->name);
        r = move_noreplace_at(in->claimed_fd, old, in->claimed_fd, b->name);
    }
    if (r) {
        if (r == -ENOENT)
            rk_debug(COMP, "instance %s: claim folder %s taken by another instance", in->id,
                     old);
        else
            rk_warn(COMP, "instance %s: cannot re-claim claim folder %s: %s", in->id, old,
                    rk_strerror(r));
        free(b);
        return 0;
    }
    b->next = in->batches;
    in->batches = b;
    int fd = openat(in->claimed_fd, b->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        rk_warn(COMP, "instance %s: cannot read claim folder %s: %s", in->id, b->name,
                strerror(errno));
        b->stuck = 1; /* stays for the next start */
        batch_settle(in, b);
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && !rc) {
        struct stat st;
        char cpath[PATH_MAX];
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_name[0] == '.' || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode) ||
            snprintf(cpath, sizeof cpath, "%s/%s/%s", in->claimed, b->name, de->d_name) >=
                (int)sizeof cpath) {
            /* only rekeyd puts files here, by their inbox names: whatever
             * else is in the folder keeps it from moving to the archive
             * unseen (stuck: the stored files go one by one) */
            if (!b->stuck) {
                char lname[LOGNAME_MAX];
                rk_warn(COMP, "instance %s: claim folder %s holds %s, which rekeyd did not "
                        "put there; the folder stays in %s", in->id, b->name,
                        log_name(de->d_name, lname, sizeof lname), in->claimed);
            }
            b->stuck = 1;
            continue;
        }
        if ((rc = leftover_add(in, cpath, de->d_name)) == 0)
            b->claimed++;
    }
    closedir(d);
    batch_settle(in, b); /* an empty folder goes at once */
    return rc;
}

/* Re-claims what instances that no longer run left in .claimed/ — their
 * claim folders, and files an older rekey left as NAME.ID — and queues
 * the files for the first scan.  Runs inside rk_inbox_start, before any
 * handle exists, so it may fail cleanly (-ENOMEM) or skip single files. */
static int leftovers_collect(rk_inbox *in)
{
    DIR *d = opendir(in->claimed);
    if (!d)
        return -errno;
    int dfd = dirfd(d);
    int rc = 0;
    struct dirent *de;
    /* Collect the names first: the renames below add entries. */
    char **names = NULL;
    size_t nnames = 0, capn = 0;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
            continue;
        if (nnames == capn) {
            size_t nc = capn ? capn * 2 : 16;
            char **p = realloc(names, nc * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            names = p;
            capn = nc;
        }
        /* a folder is marked by a '/' at the end */
        size_t n = strlen(de->d_name);
        if (!(names[nnames] = malloc(n + 2))) {
            rc = -ENOMEM;
            break;
        }
        memcpy(names[nnames], de->d_name, n);
        names[nnames][n] = S_ISDIR(st.st_mode) ? '/' : '\0';
        names[nnames][n + 1] = '\0';
        nnames++;
    }
    closedir(d);
    for (size_t i = 0; i < nnames && !rc; i++) {
        char oid[ID_HEX + 1], lname[LOGNAME_MAX];
        size_t n = strlen(names[i]);
        if (names[i][n - 1] == '/') {
            names[i][n - 1] = '\0';
            if (!batch_owner(names[i], oid)) {
                rk_warn(COMP, "instance %s: %s/%s is not a claim folder; left alone", in->id,
                        in->claimed, log_name(names[i], lname, sizeof lname));
                continue;
            }
            if (owner_alive(in, oid))
                rk_debug(COMP, "instance %s: claim folder %s belongs to running instance %s",
                         in->id, names[i], oid);
            else
                rc = leftover_folder(in, names[i]);
            continue;
        }
        char *orig = parse_claimed_name(names[i], oid);
        if (!orig) {
            rc = -ENOMEM;
            break;
        }
        if (owner_alive(in, oid)) {
            rk_debug(COMP, "instance %s: %s belongs to running instance %s", in->id,
                     log_name(names[i], lname, sizeof lname), oid);
            free(orig);
            continue;
        }
        char cpath[PATH_MAX];
        int r = claim_into(in, in->claimed_fd, names[i], orig, cpath, sizeof cpath);
        if (r == -ENOENT) {
            rk_debug(COMP, "instance %s: leftover %s taken by another instance", in->id,
                     log_name(names[i], lname, sizeof lname));
        } else if (r) {
            rk_warn(COMP, "instance %s: cannot re-claim leftover %s: %s", in->id,
                    log_name(names[i], lname, sizeof lname), rk_strerror(r));
        } else {
            rc = leftover_add(in, cpath, orig);
        }
        free(orig);
    }
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    /* files re-claimed one by one went into one new folder: it takes no
     * more (no timer runs yet to close it) */
    if (in->cur)
        batch_close(in, in->cur);
    return rc;
}

/* ---- scanning ---------------------------------------------------------- */

static int seen_cmp(const void *a, const void *b)
{
    return strcmp(((const seen_file *)a)->name, ((const seen_file *)b)->name);
}

static seen_file *seen_find(seen_file *tab, size_t n, const char *name)
{
    if (n == 0)
        return NULL; /* bsearch wants a non-NULL base even for n == 0 */
    seen_file key = {.name = (char *)name};
    return bsearch(&key, tab, n, sizeof *tab, seen_cmp);
}

static void seen_free(seen_file *tab, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(tab[i].name);
    free(tab);
}

/* The name a refused file gets in the error folder: its own, or for a
 * name longer than MAX_NAME its first MAX_NAME bytes (cut at a character
 * boundary) and "~", so that NAME.N.reason still fits in NAME_MAX.  out
 * holds at least MAX_NAME + 2 bytes. */
static void error_name(const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    if (n <= MAX_NAME && n < outlen) {
        memcpy(out, name, n + 1);
        return;
    }
    n = MAX_NAME < outlen - 2 ? MAX_NAME : outlen - 2;
    while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
        n--;
    memcpy(out, name, n);
    out[n] = '~';
    out[n + 1] = '\0';
}

/* Refuses the file at path (claimed or still in the inbox): error folder
 * plus reason.  0, -ENOENT (another instance took it) or -errno. */
static int refuse(rk_inbox *in, const char *path, const char *name, const char *reason)
{
    char ename[MAX_NAME + 2];
    error_name(name, ename, sizeof ename);
    return to_error(in, path, ename, name, reason);
}

/* Hands one claimed file on: to the callback, or to the error folder
 * when its name is not *.xml / *.xml.gz or cannot be carried safely
 * (a leftover claimed by an older rekey may have such a name). */
static void deliver(rk_inbox *in, const char *cpath, const char *name, int recovered)
{
    const char *why = name_problem(name);
    if (why || !is_submission_name(name)) {
        int rc = refuse(in, cpath, name, why ? why : REASON_NOT_XML);
        refused_from_folder(in, cpath, rc);
        return;
    }
    char lname[LOGNAME_MAX];
    rk_debug(COMP, "instance %s: claimed %s", in->id, log_name(name, lname, sizeof lname));
    in->cb(in, cpath, name, recovered, in->arg);
}

/* Claims a settled file and hands it on.  A file whose name is refused
 * goes straight from the inbox to the error folder: an overlong name
 * would not even fit the claim suffix.  0 (taken or refused), -ENOENT
 * (another instance took it) or another error (logged once, retried
 * quietly on later scans: stuck). */
static int take(rk_inbox *in, int inbox_fd, const char *name, int stuck)
{
    char cpath[PATH_MAX], lname[LOGNAME_MAX];
    const char *why = name_problem(name);
    if (why) {
        if (join(cpath, sizeof cpath, in->path, name, NULL) != 0)
            return -ENAMETOOLONG;
        return refuse(in, cpath, name, why);
    }
    int rc = claim_into(in, inbox_fd, name, name, cpath, sizeof cpath);
    if (rc == -ENOENT) {
        rk_debug(COMP, "instance %s: %s was taken by another instance", in->id,
                 log_name(name, lname, sizeof lname));
        return rc;
    }
    if (rc) {
        rk_log(stuck ? RK_LOG_LVL_DEBUG : RK_LOG_LVL_ERROR, COMP,
               "instance %s: cannot claim %s: %s", in->id,
               log_name(name, lname, sizeof lname), rk_strerror(rc));
        return rc;
    }
    deliver(in, cpath, name, 0);
    return 0;
}

/* An inbox entry that is neither a regular file nor a folder (a symbolic
 * link, a FIFO, a socket, a device): moved, as it is, to the error folder
 * with a reason, never opened or followed.  A link into /etc or a FIFO
 * that would block a reader thus never reaches a reader.  A symbolic
 * link to a folder is skipped like a folder (an operator may keep the
 * archive or error folder in the inbox as a link). */
static int take_special(rk_inbox *in, const char *name, const char *what)
{
    char path[PATH_MAX], reason[160];
    if (join(path, sizeof path, in->path, name, NULL) != 0)
        return -ENAMETOOLONG;
    snprintf(reason, sizeof reason, "%s: not followed or read; only regular files are "
             "taken", what);
    return refuse(in, path, name, reason);
}

static void report_leftovers(rk_inbox *in)
{
    while (in->nleft && !in->stopping) {
        leftover lo = in->left[--in->nleft];
        deliver(in, lo.claimed_path, lo.name, 1);
        free(lo.claimed_path);
        free(lo.name);
    }
}

static const char SKIP[] = "";

/* NULL for a regular file; for anything else the words for the reason
 * file ("symbolic link"), or SKIP for an entry the scan leaves alone: a
 * symbolic link to a folder.  The link's target is only stat()ed, never
 * opened. */
static const char *special_kind(int dfd, const char *name, const struct stat *st)
{
    if (S_ISREG(st->st_mode))
        return NULL;
    if (S_ISLNK(st->st_mode)) {
        struct stat t;
        if (fstatat(dfd, name, &t, 0) == 0 && S_ISDIR(t.st_mode))
            return SKIP;
        return "symbolic link";
    }
    if (S_ISFIFO(st->st_mode))
        return "FIFO (named pipe)";
    if (S_ISSOCK(st->st_mode))
        return "socket";
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
        return "device file";
    return "not a regular file";
}

static void on_timer(uv_timer_t *t);

/* One look at the inbox: list regular files (no dot names), take the
 * settled ones, remember the rest with the time their size+mtime was
 * first seen, and arm the settle timer for the earliest one. */
static void scan_once(rk_inbox *in)
{
    DIR *d = opendir(in->path);
    if (!d) {
        rk_error(COMP, "instance %s: cannot read inbox %s: %s", in->id, in->path,
                 strerror(errno));
        in->idle = 0;
        return;
    }
    int dfd = dirfd(d);
    seen_file *cur = NULL;
    size_t ncur = 0, cap = 0;
    struct dirent *de;
    int oom = 0, truncated = 0;
    size_t counted = 0; /* entries counted against list_max */
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.')
            continue; /* ., .., .claimed and writers' temp files */
        if (in->list_max && counted >= in->list_max) {
            /* a backlog: look at the first list_max files only (each scan
             * would otherwise stat the whole backlog to claim a part of
             * it); the rest are listed by the next scan */
            truncated = 1;
            break;
        }
        if (in->cfg.settle_ms == 0 && de->d_type == DT_REG) {
            /* taken at once whatever its size and time: the listing
             * already says it is a regular file (the reader checks again
             * on the open file), so no stat per file of a backlog */
            memset(&st, 0, sizeof st);
            st.st_mode = S_IFREG;
        } else if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                   S_ISDIR(st.st_mode)) {
            continue; /* gone, or a folder (archive/error may live inside) */
        }
        const char *special = special_kind(dfd, de->d_name, &st);
        if (special == SKIP)
            continue;
        if (in->list_max) {
            /* files that cannot be claimed do not use up the budget, or
             * list_max of them would hide the rest of the inbox */
            const seen_file *known = seen_find(in->seen, in->nseen, de->d_name);
            if (!known || !known->stuck)
                counted++;
        }
        if (ncur == cap) {
            size_t nc = cap ? cap * 2 : 16;
            seen_file *p = realloc(cur, nc * sizeof *p);
            if (!p) {
                oom = 1;
                break;
            }
            cur = p;
            cap = nc;
        }
        cur[ncur].name = rk_strndup(de->d_name, strlen(de->d_name));
        if (!cur[ncur].name) {
            oom = 1;
            break;
        }
        cur[ncur].size = (int64_t)st.st_size;
        cur[ncur].mtime_ns = mtime_ns_of(&st);
        cur[ncur].since_ms = 0;
        cur[ncur].stuck = 0;
        cur[ncur].special = special;
        ncur++;
    }
    if (oom) {
        closedir(d);
        rk_error(COMP, "instance %s: out of memory while scanning", in->id);
        seen_free(cur, ncur);
        in->idle = 0;
        return;
    }
    if (ncur)
        qsort(cur, ncur, sizeof *cur, seen_cmp);

    uint64_t now = mono_ms();
    int64_t wnow = wall_ns();
    uint64_t settle = in->cfg.settle_ms;
    uint64_t due = UINT64_MAX;
    size_t pending = 0, keep = 0, deferred = 0, taken = 0;
    for (size_t i = 0; i < ncur; i++) {
        seen_file f = cur[i];
        seen_file *old = seen_find(in->seen, in->nseen, f.name);
        int settled;
        if (f.special) {
            /* nothing to wait for: it has no content rekey would read */
            int rc = in->stopping || (old && old->stuck) ? -EAGAIN
                                                          : take_special(in, f.name, f.special);
            if (rc == 0 || rc == -ENOENT) {
                free(f.name);
                continue;
            }
            f.stuck = 1;
            cur[keep++] = f;
            continue;
        }
        if (old && old->size == f.size && old->mtime_ns == f.mtime_ns) {
            f.since_ms = old->since_ms;
            f.stuck = old->stuck;
            settled = now - f.since_ms >= settle;
        } else {
            f.since_ms = now;
            /* first look (or changed): settled only if untouched for long */
            settled = !old && wnow - f.mtime_ns >= (int64_t)settle * 1000000;
        }
        if (settled && in->held) {
            /* the engine has enough to do: the file waits for the scan
             * that rk_inbox_hold(in, 0) runs (held may be set by the
             * claim callback in the middle of this loop) */
            deferred++;
        } else if (settled && !in->stopping) {
            int rc = take(in, dfd, f.name, f.stuck);
            if (rc == 0 || rc == -ENOENT) {
                taken++;
                free(f.name);
                continue;
            }
            f.stuck = 1;
        } else if (!settled) {
            pending++;
            if (f.since_ms + settle < due)
                due = f.since_ms + settle;
        }
        cur[keep++] = f; /* compaction keeps the name order */
    }
    closedir(d); /* open until here: the claims rename relative to it */
    seen_free(in->seen, in->nseen);
    in->seen = cur;
    in->nseen = keep;
    in->idle = pending == 0 && deferred == 0 && !truncated && in->nleft == 0;
    if (truncated && taken && !in->held && !in->stopping)
        in->scan_again = 1; /* the next part of the backlog, unless held */
    if (in->stopping)
        return;
    if (pending) {
        uint64_t t = mono_ms();
        uint64_t delay = due > t ? due - t : 1;
        if (delay > settle)
            delay = settle;
        uv_timer_start(&in->settle, on_timer, delay, 0);
    } else {
        uv_timer_stop(&in->settle);
    }
}

/* Runs a scan now; a scan requested from inside the claim callback runs
 * again right after the current one instead of nesting. */
static void scan(rk_inbox *in)
{
    if (in->stopping)
        return;
    if (in->in_scan) {
        in->scan_again = 1;
        return;
    }
    in->in_scan = 1;
    in->last_scan_ms = mono_ms();
    batch_age(in); /* the rescan timer ends a folder's time for new files */
    do {
        in->scan_again = 0;
        report_leftovers(in);
        if (in->held && in->scanned_once) {
            /* nothing may be claimed now: a listing would only stat files
             * (every claim's rename sends a change event); the release of
             * the hold scans */
            in->idle = 0;
            break;
        }
        if (!in->stopping)
            scan_once(in);
        in->scanned_once = 1;
    } while (in->scan_again && !in->stopping);
    in->in_scan = 0;
}

static void on_timer(uv_timer_t *t) { scan(t->data); }

void rk_inbox_set_list_max(rk_inbox *in, size_t n) { in->list_max = n; }

void rk_inbox_hold(rk_inbox *in, int hold)
{
    int was = in->held;
    in->held = hold != 0;
    if (was && !in->held)
        scan(in);
}

/* A change in the inbox: scan at once when the last scan is more than
 * DEBOUNCE_MS ago, else when it will be, so a lone file is taken without
 * waiting and a burst of events (a writer appending, fifty files dropped
 * at once) costs one scan per DEBOUNCE_MS.  A file still being written
 * is kept out by settle_ms, not by this delay. */
static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    rk_inbox *in = h->data;
    (void)events;
    if (in->stopping)
        return;
    if (status < 0) {
        rk_warn(COMP, "instance %s: change events for %s failed (%s); the rescan "
                "every %u ms goes on", in->id, in->path, uv_strerror(status),
                in->cfg.rescan_ms);
        return;
    }
    if (filename && filename[0] == '.')
        return; /* temp files, .claimed */
    if (!uv_is_active((uv_handle_t *)&in->debounce)) {
        uint64_t next = in->last_scan_ms + DEBOUNCE_MS, now = mono_ms();
        uv_timer_start(&in->debounce, on_timer, next > now ? next - now : 0, 0);
    }
}

/* ---- public API -------------------------------------------------------- */

static void inbox_free(rk_inbox *in)
{
    if (!in)
        return;
    seen_free(in->seen, in->nseen);
    for (size_t i = 0; i < in->nleft; i++) {
        free(in->left[i].claimed_path);
        free(in->left[i].name);
    }
    free(in->left);
    while (in->batches) {
        batch *b = in->batches;
        in->batches = b->next;
        batch_free(b);
    }
    if (in->claimed_fd >= 0)
        close(in->claimed_fd);
    free(in->path);
    free(in->archive);
    free(in->error);
    free(in->claimed);
    free(in);
}

static void owner_release(rk_inbox *in)
{
    if (in->owner_fd >= 0) {
        unlink(in->owner_path);
        close(in->owner_fd);
        in->owner_fd = -1;
    }
}

/* Same device and inode: the two paths are one folder. */
static int same_dir(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Everything that can fail happens before the first handle is
 * initialised, so an error return leaves nothing to close. */
int rk_inbox_start(uv_loop_t *loop, const rk_inbox_config *cfg, rk_inbox_claim_cb cb,
                   void *arg, rk_inbox **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg || !cfg->path || !cfg->path[0]) {
        set_err(err, errlen, "inbox.path is not set");
        return RK_E_CONFIG;
    }
    if (!cfg->error_dir || !cfg->error_dir[0]) {
        set_err(err, errlen, "inbox.error is not set");
        return RK_E_CONFIG;
    }
    if (!cb) {
        set_err(err, errlen, "inbox: no claim callback");
        return RK_E_CONFIG;
    }
    rk_inbox *in = calloc(1, sizeof *in);
    if (!in) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    in->owner_fd = -1;
    in->claimed_fd = -1;
    in->loop = loop;
    in->cb = cb;
    in->arg = arg;
    in->cfg = with_defaults(cfg);
    in->path = rk_strndup(cfg->path, strlen(cfg->path));
    in->error = rk_strndup(cfg->error_dir, strlen(cfg->error_dir));
    if (in->cfg.archive_dir)
        in->archive = rk_strndup(cfg->archive_dir, strlen(cfg->archive_dir));
    size_t cl = strlen(cfg->path) + sizeof "/" CLAIMED_DIR;
    in->claimed = malloc(cl);
    if (!in->path || !in->error || !in->claimed || (in->cfg.archive_dir && !in->archive)) {
        inbox_free(in);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(in->claimed, cl, "%s/" CLAIMED_DIR, cfg->path);
    in->cfg.path = in->path;
    in->cfg.error_dir = in->error;
    in->cfg.archive_dir = in->archive;

    const char *dirs[4] = {in->path, in->claimed, in->error, in->archive};
    const char *keys[4] = {"inbox.path", "inbox.path", "inbox.error", "inbox.archive"};
    for (int i = 0; i < 4; i++) {
        int rc;
        if (dirs[i] && (rc = mkdir_p(dirs[i])) != 0) {
            set_err(err, errlen, "%s: cannot create folder %s: %s", keys[i], dirs[i],
                    rk_strerror(rc));
            inbox_free(in);
            return rc;
        }
    }
    if (same_dir(in->path, in->error) || (in->archive && same_dir(in->path, in->archive))) {
        set_err(err, errlen, "inbox.error and inbox.archive must not be the inbox folder "
                "itself (%s)", in->path);
        inbox_free(in);
        return RK_E_CONFIG;
    }
    int rc = rk_random_hex(ID_BYTES, in->id);
    if (rc) {
        set_err(err, errlen, "inbox: no random instance id: %s", rk_strerror(rc));
        inbox_free(in);
        return rc;
    }
    in->claimed_fd = open(in->claimed, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (in->claimed_fd < 0) {
        rc = -errno;
        set_err(err, errlen, "inbox.path: cannot open folder %s: %s", in->claimed,
                rk_strerror(rc));
        inbox_free(in);
        return rc;
    }
    owner_create(in);
    if ((rc = leftovers_collect(in)) != 0) {
        set_err(err, errlen, "inbox: cannot read %s: %s", in->claimed, rk_strerror(rc));
        owner_release(in);
        inbox_free(in);
        return rc;
    }
    owner_sweep(in);

    uv_timer_init(loop, &in->rescan);
    uv_timer_init(loop, &in->debounce);
    uv_timer_init(loop, &in->settle);
    uv_fs_event_init(loop, &in->watch);
    in->rescan.data = in->debounce.data = in->settle.data = in->watch.data = in;
    in->handles_open = 4;
    int wrc = uv_fs_event_start(&in->watch, on_fs_event, in->path, 0);
    if (wrc)
        rk_warn(COMP, "instance %s: no change events for %s (%s); rescanning every %u ms",
                in->id, in->path, uv_strerror(wrc), in->cfg.rescan_ms);
    uv_timer_start(&in->debounce, on_timer, 0, 0); /* the first scan */
    uv_timer_start(&in->rescan, on_timer, in->cfg.rescan_ms, in->cfg.rescan_ms);
    rk_info(COMP, "instance %s: watching %s (settle %u ms, rescan %u ms)", in->id, in->path,
            in->cfg.settle_ms, in->cfg.rescan_ms);
    *out = in;
    return 0;
}

void rk_inbox_scan(rk_inbox *in)
{
    if (in)
        scan(in);
}

int rk_inbox_idle(const rk_inbox *in)
{
    return in && in->scanned_once && in->idle && in->nleft == 0;
}

const rk_inbox_config *rk_inbox_config_of(const rk_inbox *in) { return &in->cfg; }

/*
 * Reads a claimed file whole, refusing more than max bytes.  Opened with
 * O_NOFOLLOW and O_NONBLOCK and checked to be a regular file on the open
 * descriptor: the scan saw a regular file, but whoever can write to the
 * inbox could have put a symbolic link or a FIFO in its place since.  A
 * file whose size or mtime changed while it was read (a writer still at
 * work in place, despite inbox.settle_ms) is refused rather than stored
 * half old, half new; a rename over the path does not matter, the
 * descriptor keeps the file it opened.  0 or a negative error with the
 * reason in err.
 */
static int read_claimed(const char *path, size_t max, int restrict_it, char **out,
                        size_t *outlen, char *err, size_t errlen)
{
    /* O_NOATIME: reading a new file would otherwise write its inode (its
     * access time), a journalled write per document; allowed only for
     * the file's owner, so a file of another user is opened without it */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            set_err(err, errlen, "symbolic link: not followed or read; only regular files "
                    "are taken");
        else
            set_err(err, errlen, "cannot read the file: %s", strerror(e));
        return -e;
    }
    struct stat a, b;
    if (fstat(fd, &a) != 0) {
        int e = errno;
        close(fd);
        set_err(err, errlen, "cannot read the file: %s", strerror(e));
        return -e;
    }
    if (!S_ISREG(a.st_mode)) {
        close(fd);
        set_err(err, errlen, "not a regular file: not read; only regular files are taken");
        return RK_E_FORMAT;
    }
    if ((uint64_t)a.st_size > max) {
        close(fd);
        set_err(err, errlen, "file is %lld bytes, limit is %zu (inbox.max_file_size)",
                (long long)a.st_size, max);
        return RK_E_LIMIT;
    }
    /* a claimed file: 0600, as if rekey had written it (the portal may
     * have dropped it 0644): done here, on the open file, so that the
     * archive keeps it
     * without opening the file again on the loop thread (see
     * restrict_mode); best effort, as there */
    if (restrict_it && (a.st_mode & 07177))
        (void)fchmod(fd, a.st_mode & 0600);
    /* one buffer of the size fstat gave, read into directly; one byte
     * more shows a file that grew, and the second fstat below any change
     * (so a read that gave the whole size ends the loop: the read that
     * would return 0 at the end of the file was a system call per file) */
    size_t cap = (size_t)a.st_size + 1;
    char *data = malloc(cap + 1);
    if (!data) {
        close(fd);
        set_err(err, errlen, "cannot read the file: out of memory");
        return -ENOMEM;
    }
    size_t len = 0;
    int rc = 0;
    while (len < cap) {
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            set_err(err, errlen, "cannot read the file: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == (size_t)a.st_size && a.st_size > 0)
            break;
    }
    data[len] = '\0';
    if (!rc && (fstat(fd, &b) != 0 || b.st_size != a.st_size || (uint64_t)b.st_size != len ||
                b.st_mtim.tv_sec != a.st_mtim.tv_sec || b.st_mtim.tv_nsec != a.st_mtim.tv_nsec)) {
        set_err(err, errlen, "the file changed while it was read (a writer still at work? "
                "write NAME.tmp and rename, or raise inbox.settle_ms)");
        rc = RK_E_FORMAT;
    }
    close(fd);
    if (rc) {
        free(data);
        return rc;
    }
    *outlen = len;
    *out = data;
    return 0;
}

/* Bounded read plus gunzip.  The reasons name the setting that refused
 * the file, so an operator reading error/NAME.reason knows what to
 * change.  The ratio check mirrors rk_inflate's own output cap to tell
 * the two limits apart. */
static int read_file(const rk_inbox_config *cfg, const char *claimed_path, const char *name,
                     int restrict_it, char **data, size_t *len, char *err, size_t errlen)
{
    rk_inbox_config c = with_defaults(cfg);
    char *raw = NULL;
    size_t rawlen = 0;
    *data = NULL;
    *len = 0;
    int rc = read_claimed(claimed_path, c.max_file_size, restrict_it, &raw, &rawlen, err,
                          errlen);
    if (rc)
        return rc;
    if (rawlen == 0) {
        free(raw);
        set_err(err, errlen, "empty file");
        return RK_E_FORMAT;
    }
    if (!ends_with_ci(name ? name : claimed_path, ".gz")) {
        *data = raw;
        *len = rawlen;
        return 0;
    }
    char *outp = NULL;
    size_t outlen = 0;
    rc = rk_inflate(raw, rawlen, 1, c.max_decompressed, c.max_ratio, &outp, &outlen);
    if (rc == RK_E_LIMIT) {
        size_t limit = c.max_decompressed;
        if (c.max_ratio && rawlen <= SIZE_MAX / c.max_ratio && rawlen * c.max_ratio < limit)
            limit = rawlen * c.max_ratio;
        if (limit < 64)
            limit = 64;
        if (limit < c.max_decompressed)
            set_err(err, errlen, "decompressed data exceeds inbox.max_ratio (%u times the "
                    "%zu compressed bytes)", c.max_ratio, rawlen);
        else
            set_err(err, errlen, "decompressed size exceeds inbox.max_decompressed_size "
                    "(%zu bytes)", c.max_decompressed);
    } else if (rc == RK_E_FORMAT) {
        set_err(err, errlen, "gzip data is truncated or corrupt");
    } else if (rc) {
        set_err(err, errlen, "cannot decompress the file: %s", rk_strerror(rc));
    } else if (outlen == 0) {
        free(outp);
        set_err(err, errlen, "empty file (the gzip data holds no bytes)");
        rc = RK_E_FORMAT;
    }
    free(raw);
    if (rc)
        return rc;
    *data = outp;
    *len = outlen;
    return 0;
}

int rk_inbox_read(const rk_inbox_config *cfg, const char *claimed_path, const char *name,
                  char **data, size_t *len, char *err, size_t errlen)
{
    return read_file(cfg, claimed_path, name, 1, data, len, err, errlen);
}

int rk_inbox_read_file(const rk_inbox_config *cfg, const char *path, char **data, size_t *len,
                       char *err, size_t errlen)
{
    return read_file(cfg, path, NULL, 0, data, len, err, errlen);
}

/* A name from the claim callback never holds '/'; refuse one that does
 * rather than move a file somewhere else. */
static int bad_name(const char *name)
{
    return !name || !name[0] || strchr(name, '/') || strcmp(name, ".") == 0 ||
           strcmp(name, "..") == 0;
}

/* The folder part of a claimed path (.claimed/B/NAME), for a file whose
 * folder is no longer tracked (it cannot happen while rekeyd runs as
 * meant: kept for safety). */
static void folder_of(const rk_inbox *in, const char *claimed_path, char *out, size_t outlen)
{
    size_t cl = strlen(in->claimed);
    out[0] = '\0';
    if (strncmp(claimed_path, in->claimed, cl) != 0 || claimed_path[cl] != '/')
        return;
    const char *bn = claimed_path + cl + 1, *slash = strchr(bn, '/');
    if (slash && (size_t)(slash - bn) < outlen) {
        memcpy(out, bn, (size_t)(slash - bn));
        out[slash - bn] = '\0';
    }
}

int rk_inbox_done(rk_inbox *in, const char *claimed_path, const char *name)
{
    if (bad_name(name))
        return -EINVAL;
    batch *b = batch_of(in, claimed_path);
    if (!in->archive) {
        if (unlink(claimed_path) != 0) {
            int e = -errno;
            char lname[LOGNAME_MAX];
            rk_error(COMP, "instance %s: cannot delete %s after intake: %s", in->id,
                     log_name(name, lname, sizeof lname), strerror(-e));
            if (b)
                batch_finish(in, b, NULL, 1);
            return e;
        }
        if (b)
            batch_finish(in, b, NULL, 0);
        return 0;
    }
    if (b) {
        /* it leaves with its folder (the mode was restricted when the
         * file was read: read_claimed) */
        batch_finish(in, b, name, 0);
        return 0;
    }
    char bname[BATCH_NAME];
    folder_of(in, claimed_path, bname, sizeof bname);
    return archive_one(in, bname[0] ? bname : "unsorted", claimed_path, name);
}

int rk_inbox_fail(rk_inbox *in, const char *claimed_path, const char *name,
                  const char *reason)
{
    if (bad_name(name))
        return -EINVAL;
    int rc = to_error(in, claimed_path, name, name, reason);
    refused_from_folder(in, claimed_path, rc);
    return rc;
}

static void on_close(uv_handle_t *h)
{
    rk_inbox *in = h->data;
    if (--in->handles_open > 0)
        return;
    void (*cb)(void *) = in->close_cb;
    void *arg = in->close_arg;
    if (cb)
        cb(arg);
    inbox_free(in);
}

/* Closing may happen inside the claim callback: the scan in progress
 * sees `stopping`, claims nothing more and touches no handle; the memory
 * lives until the last close callback, which libuv runs later. */
void rk_inbox_stop(rk_inbox *in, void (*close_cb)(void *arg), void *arg)
{
    if (!in || in->stopping)
        return;
    in->stopping = 1;
    in->close_cb = close_cb;
    in->close_arg = arg;
    /* folders whose files are all stored leave as a whole; of the others
     * the stored files go one by one, the rest stay for the next start */
    while (in->batches) {
        batch *b = in->batches;
        b->closed = 1;
        if (b->finished < b->claimed) {
            if (in->archive)
                batch_archive_each(in, b);
            batch_unlink(in, b);
        } else {
            batch_settle(in, b);
        }
    }
    owner_release(in);
    rk_info(COMP, "instance %s: stopped watching %s", in->id, in->path);
    uv_close((uv_handle_t *)&in->watch, on_close);
    uv_close((uv_handle_t *)&in->rescan, on_close);
    uv_close((uv_handle_t *)&in->debounce, on_close);
    uv_close((uv_handle_t *)&in->settle, on_close);
}
