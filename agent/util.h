/*
 * util.h — small shared pieces: error codes, logging, bounded buffers,
 * time, hashing and zlib helpers.
 *
 * Ownership: functions that return char * or fill an rk_buf hand the
 * memory to the caller (free() / rk_buf_free()).
 */
#ifndef RK_UTIL_H
#define RK_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Errors are negative ints: negated errno values, or these. */
enum {
    RK_OK = 0,
    RK_E_LIMIT = -10001,   /* a configured size/ratio/depth limit was hit */
    RK_E_FORMAT = -10002,  /* the input is not what it claims to be */
    RK_E_CONFIG = -10003,  /* a setting or job definition is wrong */
    RK_E_DB = -10004,      /* SQLite reported an error */
    RK_E_NOTFOUND = -10005,
    RK_E_PLUGIN = -10006,  /* a connector could not be loaded or opened */
    RK_E_STATE = -10007    /* the operation is not allowed in this state */
};
const char *rk_strerror(int err);

/* Logging: one line per call to stderr, "TIME LEVEL component: message",
 * or with RK_LOG_FMT_JSON one JSON object per line:
 * {"ts": "2026-11-26T15:45:51.701Z", "level": "info", "component": "intake",
 *  "msg": "..."}.  Messages carry ids, job names and field names, never
 * personal data. */
enum { RK_LOG_LVL_ERROR = 0, RK_LOG_LVL_WARN, RK_LOG_LVL_INFO, RK_LOG_LVL_DEBUG };
enum { RK_LOG_FMT_PLAIN = 0, RK_LOG_FMT_JSON };
void rk_log_set_level(int level);
int rk_log_level_parse(const char *s); /* -1 when unknown */
void rk_log_set_format(int format);    /* RK_LOG_FMT_*; default plain */
int rk_log_format_parse(const char *s); /* "plain" | "json"; -1 when unknown */
void rk_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define rk_error(c, ...) rk_log(RK_LOG_LVL_ERROR, c, __VA_ARGS__)
#define rk_warn(c, ...) rk_log(RK_LOG_LVL_WARN, c, __VA_ARGS__)
#define rk_info(c, ...) rk_log(RK_LOG_LVL_INFO, c, __VA_ARGS__)
#define rk_debug(c, ...) rk_log(RK_LOG_LVL_DEBUG, c, __VA_ARGS__)

/* A growable byte buffer with a hard maximum fixed at init.  Appending
 * beyond max fails with RK_E_LIMIT and leaves the buffer unchanged.
 * data is always NUL-terminated (the NUL is not counted in len). */
typedef struct rk_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} rk_buf;
void rk_buf_init(rk_buf *b, size_t max);
int rk_buf_append(rk_buf *b, const void *p, size_t n);
int rk_buf_appendf(rk_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rk_buf_free(rk_buf *b);

/* Log lines of this thread go into buf instead of stderr until
 * rk_log_hold(NULL): a thread that logs many lines at once (the engine's
 * writer, per batch) writes them with one write(2) by rk_log_flush.
 * rk_log_drop forgets what is held (a batch rolled back).  A line that
 * does not fit flushes what is held and is written at once. */
void rk_log_hold(rk_buf *buf);
void rk_log_flush(void);
void rk_log_drop(void);
/* Hands the data to the caller and resets the buffer. */
char *rk_buf_take(rk_buf *b);

/* Wall-clock time in milliseconds since the epoch, and the same as an
 * ISO 8601 UTC string "YYYY-MM-DDTHH:MM:SS.mmmZ" (out >= 25 bytes). */
int64_t rk_now_ms(void);
void rk_time_iso(int64_t ms, char *out, size_t outlen);

/* Lowercase hex SHA-256 of data (out >= 65 bytes). */
void rk_sha256_hex(const void *data, size_t len, char *out);
/* n random bytes as lowercase hex (out >= 2n+1 bytes); 0 or -errno. */
/* n bytes as 2n lowercase hex digits and a NUL (out holds 2n + 1). */
void rk_hex_encode(const unsigned char *in, size_t n, char *out);

/* Names the calling thread (at most 15 bytes), as top -H, ps -L and perf
 * show it; once per thread for the pool's threads, which libuv makes. */
void rk_thread_name(const char *name);
int rk_random_hex(size_t n, char *out);
/* A submission uid: 32 lowercase hex digits, the first 12 the time ms
 * (milliseconds since the epoch), the other 20 random (80 bits).  Uids
 * made later sort after earlier ones, so the queue's unique index on them
 * grows at its end instead of touching a random page of a big index with
 * every document.  out holds 33 bytes. */
int rk_uid_new(int64_t ms, char *out);

/* zlib: compress src into a new buffer (*out, *outlen; caller frees). */
int rk_deflate(const void *src, size_t len, void **out, size_t *outlen);
/* Decompress zlib (gzip = 0) or gzip (gzip = 1) data.  Fails with
 * RK_E_LIMIT when the output would exceed max_out bytes or max_ratio
 * times the input size (0 = no ratio limit), and with RK_E_FORMAT on
 * corrupt or truncated input.  *out is NUL-terminated; caller frees. */
int rk_inflate(const void *src, size_t len, int gzip, size_t max_out,
               unsigned max_ratio, char **out, size_t *outlen);

/* strtol/strtoll with full-string and range checks; 0 or RK_E_FORMAT. */
int rk_parse_int64(const char *s, int64_t *out);
/* true/false/yes/no/on/off/1/0 → 1/0; -1 when unknown. */
int rk_parse_bool(const char *s);

/* Reads a whole file, refusing files larger than max (RK_E_LIMIT).
 * *out is NUL-terminated; caller frees. */
int rk_read_file(const char *path, size_t max, char **out, size_t *outlen);

/* Duplicate at most n bytes as a NUL-terminated string; NULL on ENOMEM. */
char *rk_strndup(const char *s, size_t n);

#endif /* RK_UTIL_H */
