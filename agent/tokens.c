/*
 * tokens.c — see tokens.h.
 *
 * Why hashes: the token file sits beside the configuration and ends up in
 * backups; with only SHA-256 hashes in it, a copy of the file lets nobody
 * in.  Tokens are 256 random bits, so a plain (unsalted) hash is enough:
 * there is no dictionary to try.
 */
#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "util.h"

#define TOKEN_FILE_MAX (1u << 20)
#define TOKEN_BYTES 32 /* random bytes; the token is their hex */

typedef struct token_entry {
    char name[RK_TOKEN_NAME_MAX + 1];
    char hash[65];
} token_entry;

struct rk_tokens {
    char *path;
    token_entry *e;
    size_t n;
    int loaded;
    struct stat st; /* of the file as last read */
    int have_st;
};

int rk_token_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > RK_TOKEN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

static int is_hash(const char *s, size_t n)
{
    if (n != 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/*
 * Splits one line of the file into name and hash.  Returns 1 for an
 * entry, 0 for a blank or comment line, -1 for a malformed line.  The
 * line is not NUL-terminated (len bytes); a trailing CR is ignored.
 */
static int parse_line(const char *line, size_t len, token_entry *out)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == len || line[i] == '#')
        return 0;
    const char *colon = memchr(line + i, ':', len - i);
    if (!colon)
        return -1;
    size_t nlen = (size_t)(colon - (line + i));
    size_t hlen = len - (size_t)(colon + 1 - line);
    if (nlen == 0 || nlen > RK_TOKEN_NAME_MAX || !is_hash(colon + 1, hlen))
        return -1;
    memcpy(out->name, line + i, nlen);
    out->name[nlen] = '\0';
    if (!rk_token_name_valid(out->name))
        return -1;
    memcpy(out->hash, colon + 1, 64);
    out->hash[64] = '\0';
    return 1;
}

/*
 * Parses the text of a token file into a new array (*out, *n; caller
 * frees).  Malformed lines are skipped; when path is not NULL each is
 * logged with its line number (never its content: it may hold a token
 * pasted by mistake).
 */
static int parse_file(const char *path, const char *data, size_t len, token_entry **out,
                      size_t *n)
{
    token_entry *arr = NULL;
    size_t cnt = 0, cap = 0;
    int lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (data + pos)) : len - pos;
        lineno++;
        token_entry te;
        int r = parse_line(data + pos, l, &te);
        if (r < 0 && path)
            rk_warn("http", "%s:%d: not NAME:SHA256HEX; line ignored", path, lineno);
        if (r > 0) {
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 16;
                token_entry *g = realloc(arr, nc * sizeof *g);
                if (!g) {
                    free(arr);
                    return -ENOMEM;
                }
                arr = g;
                cap = nc;
            }
            arr[cnt++] = te;
        }
        pos += l + (nl ? 1 : 0);
    }
    *out = arr;
    *n = cnt;
    return 0;
}

int rk_tokens_open(const char *path, rk_tokens **out)
{
    rk_tokens *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        return -ENOMEM;
    }
    *out = t;
    return 0;
}

void rk_tokens_free(rk_tokens *t)
{
    if (!t)
        return;
    free(t->e);
    free(t->path);
    free(t);
}

static int same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads the file again when it changed since the last read.  A file that
 * cannot be read leaves an empty set: no token works then. */
static void refresh(rk_tokens *t)
{
    struct stat st;
    int have = stat(t->path, &st) == 0;
    if (t->loaded && have == t->have_st && (!have || same_stat(&st, &t->st)))
        return;
    free(t->e);
    t->e = NULL;
    t->n = 0;
    t->loaded = 1;
    t->have_st = have;
    if (!have) {
        rk_warn("http", "token file %s: %s; every request needing a token is refused "
                        "(add one with `rekeyctl token add NAME`)",
                t->path, strerror(errno));
        return;
    }
    t->st = st;
    char *data = NULL;
    size_t len = 0;
    int rc = rk_read_file(t->path, TOKEN_FILE_MAX, &data, &len);
    if (rc) {
        rk_error("http", "token file %s cannot be read: %s; every request needing a token "
                         "is refused",
                 t->path, rk_strerror(rc));
        return;
    }
    if (parse_file(t->path, data, len, &t->e, &t->n) != 0)
        rk_error("http", "token file %s: out of memory", t->path);
    free(data);
    rk_info("http", "token file %s: %zu tokens", t->path, t->n);
}

size_t rk_tokens_count(rk_tokens *t)
{
    refresh(t);
    return t->n;
}

int rk_tokens_check(rk_tokens *t, const char *token, char *name, size_t namelen)
{
    if (!token || !*token) {
        refresh(t);
        return 0;
    }
    char hash[65];
    rk_sha256_hex(token, strlen(token), hash);
    int ok = rk_tokens_check_hash(t, hash, name, namelen);
    OPENSSL_cleanse(hash, sizeof hash);
    return ok;
}

int rk_tokens_check_hash(rk_tokens *t, const char *hash, char *name, size_t namelen)
{
    refresh(t);
    if (!hash || strlen(hash) != 64)
        return 0;
    /* every entry is compared, whatever matched before: the time taken
     * depends on the number of entries only */
    size_t hit = t->n;
    for (size_t i = 0; i < t->n; i++) {
        int eq = CRYPTO_memcmp(hash, t->e[i].hash, 64) == 0;
        if (eq && hit == t->n)
            hit = i;
    }
    if (hit == t->n)
        return 0;
    snprintf(name, namelen, "%s", t->e[hit].name);
    return 1;
}

/* ---- rekeyctl token ------------------------------------------------------ */

static const char token_usage[] =
    "usage: rekeyctl token add NAME (--config FILE | --file PATH)\n"
    "       rekeyctl token list (--config FILE | --file PATH)\n"
    "       rekeyctl token remove NAME (--config FILE | --file PATH)\n"
    "\n"
    "Bearer tokens of rekeyd's operator HTTP server (API, metrics).  The token\n"
    "file holds NAME:SHA256 lines, never the tokens themselves.\n"
    "  add NAME      makes a new random token, appends its hash under NAME and\n"
    "                prints the token on stdout: it is shown only this once.\n"
    "                NAME is who acts in the audit trail (1 to 64 of A-Z a-z\n"
    "                0-9 . _ @ -).\n"
    "  list          the names in the file\n"
    "  remove NAME   deletes NAME's token; requests with it are refused at once\n"
    "\n"
    "  --config FILE   the rekeyd configuration: its [http] token_file\n"
    "                  (default: the file 'tokens' beside the configuration)\n"
    "  --file PATH     the token file itself\n"
    "\n"
    "rekeyd reads the file again when it changes: no restart is needed.\n"
    "Exit status: 0 done; 1 refused (name taken or unknown, file not writable);\n"
    "2 usage error.\n";

static int usage_err(FILE *err, const char *msg)
{
    fprintf(err, "rekeyctl: %s\nrekeyctl: see `rekeyctl token --help`\n", msg);
    return 2;
}

/* Reads the whole file behind fd (opened and locked by the caller). */
static int read_fd(int fd, rk_buf *b)
{
    char chunk[8192];
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return 0;
        int rc = rk_buf_append(b, chunk, (size_t)n);
        if (rc)
            return rc;
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * token add: under an exclusive lock on the file, refuses a name that is
 * there already, then appends NAME:HASH and syncs.  Only after the line
 * is on disk is the token printed, so a token that was shown always works.
 */
static int token_add(const char *path, const char *name, FILE *out, FILE *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(err, "rekeyctl: cannot open the token file %s: %s\n", path, strerror(errno));
        return 1;
    }
    rk_buf b;
    rk_buf_init(&b, TOKEN_FILE_MAX);
    token_entry *e = NULL;
    size_t n = 0;
    int rc = flock(fd, LOCK_EX) == 0 ? 0 : -errno;
    if (!rc)
        rc = read_fd(fd, &b);
    if (!rc)
        rc = parse_file(NULL, b.data ? b.data : "", b.len, &e, &n);
    if (rc) {
        fprintf(err, "rekeyctl: cannot read the token file %s: %s\n", path, rk_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].name, name) == 0) {
            fprintf(err, "rekeyctl: the token file %s has a token named %s already; remove "
                         "it first (rekeyctl token remove %s)\n",
                    path, name, name);
            rc = 1;
            goto out;
        }
    }
    char token[2 * TOKEN_BYTES + 1], hash[65], line[RK_TOKEN_NAME_MAX + 80];
    if ((rc = rk_random_hex(TOKEN_BYTES, token)) != 0) {
        fprintf(err, "rekeyctl: no random numbers: %s\n", rk_strerror(rc));
        goto out;
    }
    rk_sha256_hex(token, strlen(token), hash);
    int k = snprintf(line, sizeof line, "%s%s:%s\n",
                     b.len && b.data[b.len - 1] != '\n' ? "\n" : "", name, hash);
    rc = write_all(fd, line, (size_t)k);
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (rc) {
        fprintf(err, "rekeyctl: cannot write the token file %s: %s\n", path, rk_strerror(rc));
        goto out;
    }
    fprintf(out, "%s\n", token);
    fflush(out);
    explicit_bzero(token, sizeof token);
    fprintf(err, "rekeyctl: token %s added to %s; it is shown only this once. Send it as "
                 "\"Authorization: Bearer TOKEN\".\n",
            name, path);
out:
    free(e);
    rk_buf_free(&b);
    close(fd);
    return rc ? 1 : 0;
}

/* token list: the names, one per line. */
static int token_list(const char *path, FILE *out, FILE *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = rk_read_file(path, TOKEN_FILE_MAX, &data, &len);
    if (rc == -ENOENT) {
        fprintf(err, "rekeyctl: no token file at %s yet (rekeyctl token add NAME makes it)\n",
                path);
        return 1;
    }
    token_entry *e = NULL;
    size_t n = 0;
    if (!rc)
        rc = parse_file(NULL, data, len, &e, &n);
    free(data);
    if (rc) {
        fprintf(err, "rekeyctl: cannot read the token file %s: %s\n", path, rk_strerror(rc));
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s\n", e[i].name);
    free(e);
    return 0;
}

/*
 * token remove: writes the file without NAME's lines to PATH.tmp (0600)
 * and renames it over the file, holding the lock on the old file, so a
 * reader sees the old or the new file, never half of one.
 */
static int token_remove(const char *path, const char *name, FILE *out, FILE *err)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(err, "rekeyctl: cannot open the token file %s: %s\n", path, strerror(errno));
        return 1;
    }
    rk_buf b, nb;
    rk_buf_init(&b, TOKEN_FILE_MAX);
    rk_buf_init(&nb, TOKEN_FILE_MAX);
    char tmp[4200];
    int tfd = -1, removed = 0;
    int rc = flock(fd, LOCK_EX) == 0 ? 0 : -errno;
    if (!rc)
        rc = read_fd(fd, &b);
    if (rc) {
        fprintf(err, "rekeyctl: cannot read the token file %s: %s\n", path, rk_strerror(rc));
        goto out;
    }
    for (size_t pos = 0; pos < b.len;) {
        const char *nl = memchr(b.data + pos, '\n', b.len - pos);
        size_t l = nl ? (size_t)(nl - (b.data + pos)) : b.len - pos;
        token_entry te;
        if (parse_line(b.data + pos, l, &te) > 0 && strcmp(te.name, name) == 0) {
            removed++;
        } else {
            rk_buf_append(&nb, b.data + pos, l);
            rk_buf_append(&nb, "\n", 1);
        }
        pos += l + (nl ? 1 : 0);
    }
    if (!removed) {
        fprintf(err, "rekeyctl: the token file %s has no token named %s\n", path, name);
        rc = 1;
        goto out;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    tfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    rc = tfd < 0 ? -errno : write_all(tfd, nb.data ? nb.data : "", nb.len);
    if (!rc && fsync(tfd) != 0)
        rc = -errno;
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (rc) {
        fprintf(err, "rekeyctl: cannot write the token file %s: %s\n", path, rk_strerror(rc));
        unlink(tmp);
        goto out;
    }
    fprintf(out, "token %s removed from %s\n", name, path);
out:
    if (tfd >= 0)
        close(tfd);
    rk_buf_free(&b);
    rk_buf_free(&nb);
    close(fd);
    return rc ? 1 : 0;
}

int rk_tokens_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *config = NULL, *file = NULL, *pos[3] = {NULL, NULL, NULL};
    size_t npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(token_usage, out);
            return 0;
        }
        const char **dst = NULL;
        const char *val = NULL;
        if (strncmp(a, "--config", 8) == 0 && (a[8] == '\0' || a[8] == '='))
            dst = &config;
        else if (strncmp(a, "--file", 6) == 0 && (a[6] == '\0' || a[6] == '='))
            dst = &file;
        if (dst) {
            const char *eq = strchr(a, '=');
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            if (!val || !*val)
                return usage_err(err, "--config and --file need a path");
            *dst = val;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            fprintf(err, "rekeyctl: unknown option '%s' for token\n", a);
            return usage_err(err, "options: --config FILE, --file PATH");
        }
        if (npos == 3)
            return usage_err(err, "too many arguments");
        pos[npos++] = a;
    }
    if (npos == 0)
        return usage_err(err, "token needs what to do: add NAME, list or remove NAME");
    int add = strcmp(pos[0], "add") == 0, rem = strcmp(pos[0], "remove") == 0,
        list = strcmp(pos[0], "list") == 0;
    if (!add && !rem && !list) {
        fprintf(err, "rekeyctl: unknown token command '%s'\n", pos[0]);
        return usage_err(err, "one of: add NAME, list, remove NAME");
    }
    if ((add || rem) && npos != 2)
        return usage_err(err, add ? "token add needs one NAME, e.g. rekeyctl token add "
                                    "anna.schmidt --config /etc/rekey/rekeyd.ini"
                                  : "token remove needs one NAME");
    if (list && npos != 1)
        return usage_err(err, "token list takes no arguments");
    if ((add || rem) && !rk_token_name_valid(pos[1]))
        return usage_err(err, "a token name has 1 to 64 of A-Z a-z 0-9 . _ @ -");
    if (!config == !file)
        return usage_err(err, "name the token file: --config FILE (the rekeyd configuration) "
                              "or --file PATH");
    rk_config cfg;
    char why[1024] = "";
    const char *path = file;
    if (config) {
        if (rk_config_load(config, &cfg, why, sizeof why) != 0) {
            fprintf(err, "rekeyctl: %s\n", why[0] ? why : "the configuration cannot be read");
            return 1;
        }
        path = cfg.http.token_file;
    }
    int rc = add ? token_add(path, pos[1], out, err)
             : rem ? token_remove(path, pos[1], out, err)
                   : token_list(path, out, err);
    if (config)
        rk_config_free(&cfg);
    return rc;
}
