/*
 * util.c — see util.h.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libdeflate.h>
#include <openssl/evp.h>
#include <zlib.h>

const char *rk_strerror(int err)
{
    switch (err) {
    case RK_OK: return "success";
    case RK_E_LIMIT: return "a configured limit was exceeded";
    case RK_E_FORMAT: return "malformed input";
    case RK_E_CONFIG: return "configuration error";
    case RK_E_DB: return "database error";
    case RK_E_NOTFOUND: return "not found";
    case RK_E_PLUGIN: return "connector plugin error";
    case RK_E_STATE: return "not allowed in this state";
    default: break;
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

/* ---- logging ---------------------------------------------------------- */

static int log_level = RK_LOG_LVL_INFO;
static int log_format = RK_LOG_FMT_PLAIN;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread rk_buf *log_held; /* rk_log_hold: this thread's lines wait here */

/* One finished line: to stderr, or into the thread's held buffer. */
static void emit(const char *line)
{
    size_t n = strlen(line);
    if (log_held && rk_buf_append(log_held, line, n) == 0 &&
        rk_buf_append(log_held, "\n", 1) == 0)
        return;
    if (log_held) /* full: what is held first, then this line */
        rk_log_flush();
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&log_lock);
}

void rk_log_hold(rk_buf *buf) { log_held = buf; }

void rk_log_flush(void)
{
    if (!log_held || !log_held->len)
        return;
    pthread_mutex_lock(&log_lock);
    fwrite(log_held->data, 1, log_held->len, stderr);
    pthread_mutex_unlock(&log_lock);
    log_held->len = 0;
}

void rk_log_drop(void)
{
    if (log_held)
        log_held->len = 0;
}

void rk_log_set_level(int level) { log_level = level; }

void rk_log_set_format(int format) { log_format = format; }

int rk_log_level_parse(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, names[i]) == 0)
            return i;
    return -1;
}

int rk_log_format_parse(const char *s)
{
    if (s && strcmp(s, "plain") == 0)
        return RK_LOG_FMT_PLAIN;
    if (s && strcmp(s, "json") == 0)
        return RK_LOG_FMT_JSON;
    return -1;
}

/*
 * A JSON string of msg.  jansson refuses text that is not UTF-8 (a file
 * name in Latin-1, a message cut inside a character); then every byte
 * outside ASCII becomes '?', so the line stays one valid JSON object.
 * Quotes, backslashes and control characters are escaped by jansson.
 * Returns a new reference, or NULL when out of memory.
 */
static json_t *log_json_string(const char *msg, size_t len)
{
    json_t *j = json_stringn(msg, len);
    if (j)
        return j;
    char *copy = rk_strndup(msg, len);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    j = json_stringn(copy, len);
    free(copy);
    return j;
}

/*
 * Formats one log line and writes it to stderr under a lock, so lines of
 * worker threads never interleave.  Plain: "TIME LEVEL component: msg".
 * JSON (rk_log_set_format): {"ts","level","component","msg"} on one line,
 * the level in lower case as log_level spells it; when the JSON cannot be
 * built (out of memory) the plain line is written instead.
 */
void rk_log(int level, const char *component, const char *fmt, ...)
{
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static const char *lower[] = {"error", "warn", "info", "debug"};
    if (level > log_level)
        return;
    int li = level < 0 ? 0 : level > 3 ? 3 : level;
    char ts[32], line[2048];
    rk_time_iso(rk_now_ms(), ts, sizeof ts);
    va_list ap;
    va_start(ap, fmt);
    if (log_format == RK_LOG_FMT_JSON) {
        int m = vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        size_t len = m < 0 ? 0 : (size_t)m < sizeof line ? (size_t)m : sizeof line - 1;
        if (m > 0 && (size_t)m >= sizeof line) {
            /* cut short: drop a character the cut went through */
            while (len > 0 && ((unsigned char)line[len - 1] & 0xC0) == 0x80)
                len--;
            if (len > 0 && (unsigned char)line[len - 1] >= 0xC0)
                len--;
        }
        json_t *o = json_object();
        json_t *msg = log_json_string(line, len);
        char *text = NULL;
        if (o && msg && json_object_set_new(o, "ts", json_string(ts)) == 0 &&
            json_object_set_new(o, "level", json_string(lower[li])) == 0 &&
            json_object_set_new(o, "component",
                                log_json_string(component, strlen(component))) == 0 &&
            json_object_set(o, "msg", msg) == 0)
            text = json_dumps(o, JSON_COMPACT);
        json_decref(msg);
        json_decref(o);
        if (text) {
            emit(text);
            free(text);
            return;
        }
        char plain[2200];
        snprintf(plain, sizeof plain, "%s %s %s: %s", ts, names[li], component, line);
        emit(plain);
        return;
    }
    int n = snprintf(line, sizeof line, "%s %s %s: ", ts, names[li], component);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    emit(line);
}

/* ---- bounded buffers --------------------------------------------------- */

void rk_buf_init(rk_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

static int buf_reserve(rk_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return RK_E_LIMIT;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int rk_buf_append(rk_buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int rk_buf_appendf(rk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return RK_E_FORMAT;
    int rc = buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void rk_buf_free(rk_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *rk_buf_take(rk_buf *b)
{
    char *p = b->data;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- time, hashing, randomness ---------------------------------------- */

int64_t rk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rk_time_iso(int64_t ms, char *out, size_t outlen)
{
    /* the writer stamps every row of a batch: the date and time of the
     * last second a thread formatted are kept (gmtime_r and strftime cost
     * more than the rest of a stamp) */
    static __thread time_t last_t = -1;
    static __thread char base[24];
    time_t t = (time_t)(ms / 1000);
    if (t != last_t || !base[0]) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
        last_t = t;
    }
    /* the milliseconds by hand: snprintf was most of a stamp's cost */
    char stamp[32];
    size_t n = strlen(base);
    memcpy(stamp, base, n);
    int frac = (int)(ms % 1000);
    if (frac < 0)
        frac += 1000;
    stamp[n] = '.';
    stamp[n + 1] = (char)('0' + frac / 100);
    stamp[n + 2] = (char)('0' + frac / 10 % 10);
    stamp[n + 3] = (char)('0' + frac % 10);
    stamp[n + 4] = 'Z';
    stamp[n + 5] = '\0';
    if (outlen) {
        size_t m = n + 5 < outlen ? n + 5 : outlen - 1;
        memcpy(out, stamp, m);
        out[m] = '\0';
    }
}

void rk_thread_name(const char *name)
{
    static _Thread_local const char *named;
    if (named == name)
        return;
    named = name;
    (void)pthread_setname_np(pthread_self(), name);
}

void rk_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* OpenSSL 3 looks the algorithm up in its provider tables on every
 * EVP_Digest with EVP_sha256() (an implicit fetch: more work than hashing
 * a 2 KB document); fetched once, it is looked up once per process. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

void rk_sha256_hex(const void *data, size_t len, char *out)
{
    pthread_once(&sha256_once, sha256_fetch);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, sha256_md ? sha256_md : EVP_sha256(), NULL))
        mdlen = 0;
    rk_hex_encode(md, mdlen, out);
}

/* The random part of uids comes from a per-thread pool that one
 * getrandom() fills for 64 uids: a system call per document was 5 % of
 * the system calls of a backlog.  Uids are names, not secrets (tokens and
 * keys take rk_random_hex, which asks the kernel each time). */
#define UID_RANDOM 10
#define UID_POOL (64 * UID_RANDOM)

int rk_uid_new(int64_t ms, char *out)
{
    static __thread unsigned char pool[UID_POOL];
    static __thread size_t used = UID_POOL;
    if (used == UID_POOL) {
        /* more than 256 bytes may come in parts (a signal in between) */
        size_t got = 0;
        while (got < sizeof pool) {
            ssize_t n = getrandom(pool + got, sizeof pool - got, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n < 0 ? -errno : -EIO;
            got += (size_t)n;
        }
        used = 0;
    }
    unsigned long long t = (unsigned long long)ms & 0xffffffffffffULL;
    unsigned char be[6];
    for (int i = 5; i >= 0; i--, t >>= 8)
        be[i] = (unsigned char)(t & 0xff);
    rk_hex_encode(be, sizeof be, out);
    rk_hex_encode(pool + used, UID_RANDOM, out + 12);
    memset(pool + used, 0, UID_RANDOM); /* each byte is used once */
    used += UID_RANDOM;
    return 0;
}

int rk_random_hex(size_t n, char *out)
{
    unsigned char buf[64];
    if (n > sizeof buf)
        return RK_E_LIMIT;
    if (getrandom(buf, n, 0) != (ssize_t)n)
        return -errno;
    rk_hex_encode(buf, n, out);
    return 0;
}

/* ---- zlib -------------------------------------------------------------- */

/* Compression with libdeflate: the same zlib stream (rk_inflate, i.e.
 * zlib, reads it, and payloads stored before read as they were), at half
 * the CPU of zlib's deflate for documents of a few KB, which is all it
 * compresses (13 against 27 us for a 1.6 KB submission at level 6 on the
 * benchmark's machine; level 1 takes 8 us for 2 % more bytes).  A
 * compressor holds a few hundred KB of tables: one per thread, made on
 * first use and freed when the thread ends. */
#define DEFLATE_LEVEL 1

static pthread_key_t deflate_key;
static pthread_once_t deflate_once = PTHREAD_ONCE_INIT;
static int deflate_key_ok;

static void deflate_free(void *c) { libdeflate_free_compressor(c); }

static void deflate_key_make(void)
{
    deflate_key_ok = pthread_key_create(&deflate_key, deflate_free) == 0;
}

int rk_deflate(const void *src, size_t len, void **out, size_t *outlen)
{
    pthread_once(&deflate_once, deflate_key_make);
    struct libdeflate_compressor *c = deflate_key_ok ? pthread_getspecific(deflate_key) : NULL;
    if (!c) {
        if (!(c = libdeflate_alloc_compressor(DEFLATE_LEVEL)))
            return -ENOMEM;
        if (!deflate_key_ok || pthread_setspecific(deflate_key, c) != 0) {
            libdeflate_free_compressor(c);
            return -ENOMEM;
        }
    }
    size_t bound = libdeflate_zlib_compress_bound(c, len);
    void *p = malloc(bound ? bound : 1);
    if (!p)
        return -ENOMEM;
    size_t n = libdeflate_zlib_compress(c, src, len, p, bound);
    if (n == 0) { /* cannot happen with the bound's room */
        free(p);
        return RK_E_FORMAT;
    }
    *out = p;
    *outlen = n;
    return 0;
}

/* Streams through inflate so that a bomb is stopped at the cap instead of
 * being allocated first. */
int rk_inflate(const void *src, size_t len, int gzip, size_t max_out,
               unsigned max_ratio, char **out, size_t *outlen)
{
    size_t limit = max_out;
    if (max_ratio && len <= SIZE_MAX / max_ratio && len * max_ratio < limit)
        limit = len * max_ratio;
    if (limit < 64)
        limit = 64; /* a tiny input may still hold a short document */
    if (limit > max_out)
        limit = max_out;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK)
        return -ENOMEM;
    rk_buf b;
    rk_buf_init(&b, limit);
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)len;
    unsigned char chunk[16384];
    int zrc;
    int rc = 0;
    do {
        zs.next_out = chunk;
        zs.avail_out = sizeof chunk;
        zrc = inflate(&zs, Z_NO_FLUSH);
        if (zrc != Z_OK && zrc != Z_STREAM_END) {
            rc = RK_E_FORMAT;
            break;
        }
        size_t got = sizeof chunk - zs.avail_out;
        if ((rc = rk_buf_append(&b, chunk, got)) != 0)
            break;
        if (zrc == Z_OK && got == 0 && zs.avail_in == 0) {
            rc = RK_E_FORMAT; /* truncated: input ended before the stream */
            break;
        }
    } while (zrc != Z_STREAM_END);
    inflateEnd(&zs);
    if (rc) {
        rk_buf_free(&b);
        return rc;
    }
    *outlen = b.len;
    *out = rk_buf_take(&b);
    return 0;
}

/* ---- parsing, files, strings ------------------------------------------ */

int rk_parse_int64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return RK_E_FORMAT;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return RK_E_FORMAT;
    *out = v;
    return 0;
}

int rk_parse_bool(const char *s)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    if (!s)
        return -1;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

int rk_read_file(const char *path, size_t max, char **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return RK_E_LIMIT;
    }
    rk_buf b;
    rk_buf_init(&b, max);
    char chunk[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        if ((rc = rk_buf_append(&b, chunk, (size_t)n)) != 0)
            break;
    }
    close(fd);
    if (rc) {
        rk_buf_free(&b);
        return rc;
    }
    *outlen = b.len;
    *out = rk_buf_take(&b);
    return 0;
}

char *rk_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
