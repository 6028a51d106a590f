/*
 * connector.c — the connector host: see connector.h.
 *
 * The host trusts nothing a plugin hands back: the descriptor is checked
 * field by field before it is used, messages are read from buffers the
 * host owns and re-terminated after every call, and a status outside the
 * ABI's enum becomes FATAL.  Settings are checked against the plugin's
 * declared table before open() sees them, so a connector never has to
 * parse an integer or a boolean itself (the host hands it canonical
 * "123" and "true"/"false").
 */
#include "connector.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

/* Message and target-id buffers handed to deliver().  Big enough for any
 * sensible database error; what the caller asked for is copied out of
 * them, truncated to the caller's size. */
#define RK_CONN_MSG_MAX 2048
#define RK_CONN_TID_MAX 256

/* The smallest descriptor the host accepts: version 1 ends with close(). */
#define RK_CONNECTOR_V1_SIZE \
    (offsetof(rk_connector, close) + sizeof(((rk_connector *)0)->close))

struct rk_plugin {
    char *path;               /* resolved with realpath(): the cache key */
    char *name;               /* the name it was asked for, for messages */
    void *handle;             /* dlopen handle */
    const rk_connector *desc; /* owned by the shared object */
    struct rk_plugin *next;
};

struct rk_conn {
    rk_plugin *plugin;
    void *instance;           /* the connector's, from open() */
    char *job_name;
    char component[96];       /* "connector:NAME", the log component */
    rk_kv *settings;          /* checked settings, kept until close */
    size_t n_settings;
};

static pthread_mutex_t plugins_lock = PTHREAD_MUTEX_INITIALIZER;
static rk_plugin *plugins; /* the cache, guarded by plugins_lock */

/* ---- loading ------------------------------------------------------------ */

/* 1 when path names an existing regular file. */
static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A plugin name without a '/' must be a plain word, so that "NAME" can
 * never walk out of the search path ("..", empty, hidden files). */
static int plugin_name_ok(const char *name)
{
    if (!name[0] || name[0] == '.' || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

/*
 * Finds the shared object for name: DIR/NAME/NAME.so, then DIR/NAME.so,
 * for each DIR of the colon-separated search path, in order.  Writes the
 * candidate into out (size outlen); returns 0 when found, RK_E_NOTFOUND
 * otherwise (err then lists where it looked).
 */
static int plugin_find(const char *search_path, const char *name, char *out,
                       size_t outlen, char *err, size_t errlen)
{
    rk_buf tried;
    rk_buf_init(&tried, 1024);
    const char *p = search_path ? search_path : "";
    while (1) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        if (dlen > 0) {
            int n = snprintf(out, outlen, "%.*s/%s/%s.so", (int)dlen, p, name, name);
            if (n > 0 && (size_t)n < outlen && is_file(out)) {
                rk_buf_free(&tried);
                return 0;
            }
            n = snprintf(out, outlen, "%.*s/%s.so", (int)dlen, p, name);
            if (n > 0 && (size_t)n < outlen && is_file(out)) {
                rk_buf_free(&tried);
                return 0;
            }
            (void)rk_buf_appendf(&tried, "%s%.*s", tried.len ? ", " : "", (int)dlen, p);
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    snprintf(err, errlen, "connector '%s' not found in plugin path (%s)", name,
             tried.len ? tried.data : "empty");
    rk_buf_free(&tried);
    return RK_E_NOTFOUND;
}

/*
 * Checks a descriptor fresh from the entry function.  The order matters:
 * the first two fields are the only ones every version shares, so the
 * major version and the size are checked before anything else is read.
 */
static int descriptor_check(const char *name, const rk_connector *d, char *err,
                            size_t errlen)
{
    if (!d) {
        snprintf(err, errlen, "connector '%s': %s() returned no descriptor", name,
                 RK_CONNECTOR_ENTRY_SYMBOL);
        return RK_E_PLUGIN;
    }
    uint32_t major = RK_CONNECTOR_ABI_MAJOR_OF(d->abi_version);
    if (major != RK_CONNECTOR_ABI_MAJOR) {
        snprintf(err, errlen,
                 "connector '%s' was built for ABI %u.%u, this rekey speaks ABI %u.%u",
                 name, (unsigned)major, (unsigned)RK_CONNECTOR_ABI_MINOR_OF(d->abi_version),
                 (unsigned)RK_CONNECTOR_ABI_MAJOR, (unsigned)RK_CONNECTOR_ABI_MINOR);
        return RK_E_PLUGIN;
    }
    if (d->struct_size < RK_CONNECTOR_V1_SIZE) {
        snprintf(err, errlen,
                 "connector '%s' has a descriptor of %u bytes, ABI %u needs at least %zu",
                 name, (unsigned)d->struct_size, (unsigned)RK_CONNECTOR_ABI_MAJOR,
                 (size_t)RK_CONNECTOR_V1_SIZE);
        return RK_E_PLUGIN;
    }
    const char *missing = !d->name ? "name" : !d->open ? "open" : !d->deliver ? "deliver"
                          : !d->close ? "close" : NULL;
    if (missing) {
        snprintf(err, errlen, "connector '%s' has no %s in its descriptor", name, missing);
        return RK_E_PLUGIN;
    }
    for (const rk_setting_decl *s = d->settings; s && s->name; s++) {
        if (s->type != RK_SETTING_STRING && s->type != RK_SETTING_INT &&
            s->type != RK_SETTING_BOOL) {
            snprintf(err, errlen, "connector '%s' declares setting '%s' with unknown type %d",
                     name, s->name, (int)s->type);
            return RK_E_PLUGIN;
        }
    }
    return 0;
}

/*
 * Loads (or finds in the cache) the plugin called name.  The whole load
 * runs under the cache lock: loads are rare (start, reload) and this way
 * two threads asking for the same plugin get the same rk_plugin.  A
 * refused plugin is not cached, so a fixed file is picked up next time.
 * The result is owned by the cache (rk_plugin_unload_all).
 */
rk_plugin *rk_plugin_load(const char *search_path, const char *name, char *err,
                          size_t errlen)
{
    char cand[PATH_MAX], real[PATH_MAX], shown[128];
    if (!name || !name[0]) {
        snprintf(err, errlen, "no connector name given");
        return NULL;
    }
    if (strchr(name, '/')) {
        /* Loaded directly; messages use the file name without ".so". */
        const char *base = strrchr(name, '/') + 1;
        size_t blen = strlen(base);
        if (blen > 3 && strcmp(base + blen - 3, ".so") == 0)
            blen -= 3;
        snprintf(shown, sizeof shown, "%.*s", (int)blen, base);
        if ((size_t)snprintf(cand, sizeof cand, "%s", name) >= sizeof cand) {
            snprintf(err, errlen, "connector path too long");
            return NULL;
        }
    } else {
        if (!plugin_name_ok(name)) {
            snprintf(err, errlen, "connector name '%.64s' is not a plain name", name);
            return NULL;
        }
        snprintf(shown, sizeof shown, "%s", name);
        if (plugin_find(search_path, name, cand, sizeof cand, err, errlen) != 0)
            return NULL;
    }
    if (!realpath(cand, real)) {
        snprintf(err, errlen, "connector '%s': %s: %s", shown, cand, strerror(errno));
        return NULL;
    }

    pthread_mutex_lock(&plugins_lock);
    for (rk_plugin *p = plugins; p; p = p->next) {
        if (strcmp(p->path, real) == 0) {
            pthread_mutex_unlock(&plugins_lock);
            return p;
        }
    }
    rk_plugin *p = NULL;
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *de = dlerror();
        snprintf(err, errlen, "connector '%s' could not be loaded: %s", shown,
                 de ? de : "unknown dlopen error");
        goto out;
    }
    rk_connector_entry_fn entry;
    /* ISO C forbids converting void * to a function pointer; POSIX
     * requires dlsym results to be usable so.  memcpy says it plainly. */
    void *sym = dlsym(h, RK_CONNECTOR_ENTRY_SYMBOL);
    if (!sym) {
        snprintf(err, errlen, "connector '%s' (%s) does not export %s()", shown, real,
                 RK_CONNECTOR_ENTRY_SYMBOL);
        dlclose(h);
        goto out;
    }
    memcpy(&entry, &sym, sizeof entry);
    const rk_connector *d = entry();
    if (descriptor_check(shown, d, err, errlen) != 0) {
        dlclose(h);
        goto out;
    }
    p = calloc(1, sizeof *p);
    if (!p || !(p->path = strdup(real)) || !(p->name = strdup(shown))) {
        if (p) {
            free(p->path);
            free(p);
            p = NULL;
        }
        dlclose(h);
        snprintf(err, errlen, "out of memory loading connector '%s'", shown);
        goto out;
    }
    p->handle = h;
    p->desc = d;
    p->next = plugins;
    plugins = p;
    rk_debug("connector", "loaded connector '%s' %s (ABI %u.%u) from %s", d->name,
             d->version ? d->version : "?", (unsigned)RK_CONNECTOR_ABI_MAJOR_OF(d->abi_version),
             (unsigned)RK_CONNECTOR_ABI_MINOR_OF(d->abi_version), real);
out:
    pthread_mutex_unlock(&plugins_lock);
    return p;
}

const rk_connector *rk_plugin_descriptor(const rk_plugin *p) { return p ? p->desc : NULL; }

const char *rk_plugin_path(const rk_plugin *p) { return p ? p->path : NULL; }

/* Unloads every cached plugin.  Callers close all instances first: after
 * this the plugins' code is gone. */
void rk_plugin_unload_all(void)
{
    pthread_mutex_lock(&plugins_lock);
    rk_plugin *p = plugins;
    plugins = NULL;
    pthread_mutex_unlock(&plugins_lock);
    while (p) {
        rk_plugin *next = p->next;
        dlclose(p->handle);
        free(p->path);
        free(p->name);
        free(p);
        p = next;
    }
}

/* ---- settings ----------------------------------------------------------- */

static const rk_setting_decl *decl_find(const rk_connector *c, const char *key)
{
    for (const rk_setting_decl *s = c->settings; s && s->name; s++)
        if (strcmp(s->name, key) == 0)
            return s;
    return NULL;
}

int rk_setting_is_secret(const rk_connector *c, const char *key)
{
    const rk_setting_decl *s = (c && key) ? decl_find(c, key) : NULL;
    return s && (s->flags & RK_SETTING_SECRET) ? 1 : 0;
}

/*
 * Checks one value against its declared type and writes its canonical
 * form into canon (integers as plain decimal, booleans as "true" or
 * "false", strings unchanged: canon is then unused and *use_canon 0).
 * The message names the key and, unless the setting is secret, shows the
 * value (cut at 64 bytes).
 */
static int value_check(const rk_connector *c, const rk_setting_decl *s, const char *v,
                       int is_default, char *canon, size_t canon_size, int *use_canon,
                       char *err, size_t errlen)
{
    *use_canon = 0;
    char shown[96] = "";
    if (!(s->flags & RK_SETTING_SECRET))
        snprintf(shown, sizeof shown, " (got '%.64s')", v);
    const char *what = is_default ? "the default of setting" : "setting";
    if (s->type == RK_SETTING_INT) {
        int64_t iv;
        /* strtoll would also take leading blanks; the ABI says "a base-10
         * integer", so the first character must be a sign or a digit. */
        if (!((v[0] >= '0' && v[0] <= '9') || v[0] == '-' || v[0] == '+') ||
            rk_parse_int64(v, &iv) != 0) {
            snprintf(err, errlen, "%s '%s' of connector '%s' must be an integer%s", what,
                     s->name, c->name, shown);
            return RK_E_CONFIG;
        }
        snprintf(canon, canon_size, "%lld", (long long)iv);
        *use_canon = 1;
    } else if (s->type == RK_SETTING_BOOL) {
        int bv = rk_parse_bool(v);
        if (bv < 0) {
            snprintf(err, errlen,
                     "%s '%s' of connector '%s' must be true/false/yes/no/on/off/1/0%s",
                     what, s->name, c->name, shown);
            return RK_E_CONFIG;
        }
        snprintf(canon, canon_size, "%s", bv ? "true" : "false");
        *use_canon = 1;
    }
    return 0;
}

/* Writes "known: a, b, c" (or "it declares no settings") into out. */
static void known_list(const rk_connector *c, char *out, size_t outlen)
{
    rk_buf b;
    rk_buf_init(&b, outlen > 0 ? outlen - 1 : 0);
    for (const rk_setting_decl *s = c->settings; s && s->name; s++)
        if (rk_buf_appendf(&b, "%s%s", b.len ? ", " : "known: ", s->name) != 0)
            break;
    snprintf(out, outlen, "%s", b.len ? b.data : "it declares no settings");
    rk_buf_free(&b);
}

/*
 * Checks the job's settings against the plugin's table; on success *out
 * is a new array with one entry per declared setting, in table order,
 * with defaults applied and values in canonical form (names and values
 * are copies; rk_settings_free releases them).  On failure *out is NULL
 * and err names the key.
 */
int rk_settings_check(const rk_connector *c, const rk_setting *in, size_t n_in,
                      rk_kv **out, size_t *n_out, char *err, size_t errlen)
{
    *out = NULL;
    *n_out = 0;
    for (size_t i = 0; i < n_in; i++) {
        if (!in[i].key || !in[i].key[0]) {
            snprintf(err, errlen, "a setting of connector '%s' has no name", c->name);
            return RK_E_CONFIG;
        }
        const rk_setting_decl *s = decl_find(c, in[i].key);
        if (!s) {
            char known[512];
            known_list(c, known, sizeof known);
            snprintf(err, errlen, "unknown setting '%.64s' for connector '%s'; %s",
                     in[i].key, c->name, known);
            return RK_E_CONFIG;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(in[j].key, in[i].key) == 0) {
                snprintf(err, errlen, "setting '%s' of connector '%s' is given twice",
                         s->name, c->name);
                return RK_E_CONFIG;
            }
        }
    }

    size_t n = 0;
    for (const rk_setting_decl *s = c->settings; s && s->name; s++)
        n++;
    rk_kv *kv = calloc(n ? n : 1, sizeof *kv);
    if (!kv) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t k = 0;
    for (const rk_setting_decl *s = c->settings; s && s->name; s++, k++) {
        const char *v = NULL;
        int is_default = 0;
        for (size_t i = 0; i < n_in; i++)
            if (strcmp(in[i].key, s->name) == 0)
                v = in[i].value;
        if (!v) {
            v = s->default_value;
            is_default = 1;
        }
        if (!v && (s->flags & RK_SETTING_REQUIRED)) {
            snprintf(err, errlen, "missing required setting '%s' for connector '%s'", s->name,
                     c->name);
            rk_settings_free(kv, k);
            return RK_E_CONFIG;
        }
        char canon[32];
        int use_canon = 0;
        if (v && value_check(c, s, v, is_default, canon, sizeof canon, &use_canon, err,
                             errlen) != 0) {
            rk_settings_free(kv, k);
            return RK_E_CONFIG;
        }
        kv[k].name = strdup(s->name);
        kv[k].value = v ? strdup(use_canon ? canon : v) : NULL;
        if (!kv[k].name || (v && !kv[k].value)) {
            snprintf(err, errlen, "out of memory");
            rk_settings_free(kv, k + 1);
            return -ENOMEM;
        }
    }
    *out = kv;
    *n_out = n;
    return 0;
}

void rk_settings_free(rk_kv *kv, size_t n)
{
    if (!kv)
        return;
    for (size_t i = 0; i < n; i++) {
        free((char *)kv[i].name);
        free((char *)kv[i].value);
    }
    free(kv);
}

/* ---- instances ---------------------------------------------------------- */

/* The log callback handed to open(): ctx is the instance's component
 * string ("connector:NAME"), which lives as long as the instance. */
/* Replaces, in buf, every occurrence of a secret setting's value (4
 * characters or more: shorter ones would blank out ordinary words) with
 * "[redacted]".  A target that echoes a token or password in its answer
 * must not put it into logs, the queue or the event trail. */
static void redact(const rk_connector *d, const rk_kv *kv, size_t n, char *buf, size_t size)
{
    if (!buf || !size || !*buf)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *v = kv[i].value;
        if (!v || strlen(v) < 4 || !rk_setting_is_secret(d, kv[i].name) || !strstr(buf, v))
            continue;
        rk_buf out;
        rk_buf_init(&out, size);
        size_t vl = strlen(v);
        const char *p = buf;
        for (const char *hit; (hit = strstr(p, v)) != NULL; p = hit + vl) {
            rk_buf_append(&out, p, (size_t)(hit - p));
            rk_buf_append(&out, "[redacted]", 10);
        }
        rk_buf_append(&out, p, strlen(p));
        snprintf(buf, size, "%s", out.data ? out.data : "");
        rk_buf_free(&out);
    }
}

/* Folds control characters (libpq's "\n\t" among them) to spaces, so a
 * connector's message stays one log line and one table cell. */
static void fold_controls(char *buf)
{
    for (unsigned char *p = (unsigned char *)buf; p && *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

static void conn_log(void *ctx, int level, const char *message)
{
    rk_conn *c = ctx;
    if (level < RK_LOG_ERROR)
        level = RK_LOG_ERROR;
    if (level > RK_LOG_DEBUG)
        level = RK_LOG_DEBUG;
    char line[2048];
    snprintf(line, sizeof line, "%s", message ? message : "");
    if (c)
        redact(c->plugin->desc, c->settings, c->n_settings, line, sizeof line);
    fold_controls(line);
    rk_log(level, c ? c->component : "connector", "%s", line);
}

/*
 * Checks the settings, then calls the plugin's open().  The checked
 * settings stay with the instance until rk_conn_close: the ABI only
 * promises them for the call, but keeping them costs nothing and spares
 * a careless connector a use-after-free.  Returns a new instance owned by
 * the caller (rk_conn_close), or NULL with a message in err.
 */
rk_conn *rk_conn_open(rk_plugin *p, const char *job_name, const rk_setting *settings,
                      size_t n, char *err, size_t errlen)
{
    if (!p) {
        snprintf(err, errlen, "no connector");
        return NULL;
    }
    const rk_connector *d = p->desc;
    rk_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->plugin = p;
    snprintf(c->component, sizeof c->component, "connector:%s", d->name);
    c->job_name = strdup(job_name ? job_name : "");
    if (!c->job_name) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return NULL;
    }
    if (rk_settings_check(d, settings, n, &c->settings, &c->n_settings, err, errlen) != 0) {
        free(c->job_name);
        free(c);
        return NULL;
    }
    rk_connector_open_args args = {
        .struct_size = sizeof args,
        .abi_version = RK_CONNECTOR_ABI_VERSION,
        .job_name = c->job_name,
        .settings = c->settings,
        .n_settings = c->n_settings,
        .log = conn_log,
        .log_ctx = c,
    };
    char perr[1024] = "";
    void *inst = NULL;
    if (d->open(&args, &inst, perr, sizeof perr) != 0) {
        perr[sizeof perr - 1] = '\0';
        redact(d, c->settings, c->n_settings, perr, sizeof perr);
        fold_controls(perr);
        snprintf(err, errlen, "connector '%s' could not open for job '%s': %s", d->name,
                 c->job_name, perr[0] ? perr : "no reason given");
        rk_settings_free(c->settings, c->n_settings);
        free(c->job_name);
        free(c);
        return NULL;
    }
    c->instance = inst;
    return c;
}

/* Copies a host buffer out to the caller's, cut to fit, NUL-terminated. */
static void copy_out(char *dst, size_t dstsize, const char *src)
{
    if (dst && dstsize > 0)
        snprintf(dst, dstsize, "%s", src);
}

/*
 * Runs one delivery.  The plugin writes into buffers on this stack frame
 * (never straight into the caller's), which are re-terminated after the
 * call, so a plugin that forgets the NUL cannot make the host read past
 * them.  The answer is normalised: an unknown status becomes FATAL,
 * retry_after only survives a RETRY, target_id only an OK.
 */
/* Checks and cleans what the plugin answered for one record and copies
 * it out: an invalid status becomes FATAL, secrets are redacted, control
 * characters folded, a target id kept only with OK. */
static rk_deliver_status answer(rk_conn *c, const rk_record *rec, int raw, char *msg,
                                size_t msg_size, char *tid, size_t tid_size,
                                int64_t res_retry_after, char *message, size_t message_size,
                                char *target_id, size_t target_id_size,
                                int64_t *retry_after_ms)
{
    rk_deliver_status st;
    int64_t ra = -1;
    msg[msg_size - 1] = '\0';
    tid[tid_size - 1] = '\0';
    switch (raw) {
    case RK_DELIVER_OK:
    case RK_DELIVER_RETRY:
    case RK_DELIVER_PERMANENT:
    case RK_DELIVER_FATAL:
        st = (rk_deliver_status)raw;
        break;
    default:
        rk_error(c->component, "job '%s' submission %s: connector answered invalid status %d",
                 c->job_name, rec->submission_id ? rec->submission_id : "?", raw);
        snprintf(msg, msg_size, "connector '%s' answered invalid status %d",
                 c->plugin->desc->name, raw);
        st = RK_DELIVER_FATAL;
        break;
    }
    redact(c->plugin->desc, c->settings, c->n_settings, msg, msg_size);
    redact(c->plugin->desc, c->settings, c->n_settings, tid, tid_size);
    fold_controls(msg);
    fold_controls(tid);
    if (st == RK_DELIVER_RETRY && res_retry_after >= 0)
        ra = res_retry_after;
    if (st != RK_DELIVER_OK)
        tid[0] = '\0';
    copy_out(message, message_size, msg);
    copy_out(target_id, target_id_size, tid);
    if (retry_after_ms)
        *retry_after_ms = ra;
    return st;
}

rk_deliver_status rk_conn_deliver(rk_conn *c, const rk_record *rec, char *message,
                                  size_t message_size, char *target_id,
                                  size_t target_id_size, int64_t *retry_after_ms)
{
    char msg[RK_CONN_MSG_MAX] = "";
    char tid[RK_CONN_TID_MAX] = "";

    if (!c || !rec) {
        copy_out(message, message_size, "no connector instance or no record");
        copy_out(target_id, target_id_size, "");
        if (retry_after_ms)
            *retry_after_ms = -1;
        return RK_DELIVER_FATAL;
    }
    rk_record r = *rec;
    r.struct_size = sizeof r;
    rk_deliver_result res = {
        .struct_size = sizeof res,
        .message = msg,
        .message_size = sizeof msg,
        .retry_after_ms = -1,
        .target_id = tid,
        .target_id_size = sizeof tid,
    };
    int raw = (int)c->plugin->desc->deliver(c->instance, &r, &res);
    return answer(c, rec, raw, msg, sizeof msg, tid, sizeof tid, res.retry_after_ms, message,
                  message_size, target_id, target_id_size, retry_after_ms);
}

int rk_conn_can_batch(const rk_conn *c)
{
    return c && RK_CONNECTOR_HAS_BATCH(c->plugin->desc);
}

/* One record of a batch: the plugin's view and the host's buffers. */
typedef struct batch_slot {
    rk_record rec;
    rk_deliver_result res;
    char msg[RK_CONN_MSG_MAX];
    char tid[RK_CONN_TID_MAX];
} batch_slot;

void rk_conn_deliver_batch(rk_conn *c, size_t n, const rk_record *const *recs,
                           rk_conn_answer *out)
{
    if (n == 0)
        return;
    batch_slot *b = calloc(n, sizeof *b);
    const rk_record **rp = calloc(n, sizeof *rp);
    rk_deliver_result **resp = calloc(n, sizeof *resp);
    rk_deliver_status *st = calloc(n, sizeof *st);
    if (!c || !rk_conn_can_batch(c) || !b || !rp || !resp || !st) {
        for (size_t i = 0; i < n; i++) {
            out[i].status = RK_DELIVER_RETRY;
            copy_out(out[i].message, out[i].message_size,
                     c ? "out of memory" : "no connector instance");
            copy_out(out[i].target_id, out[i].target_id_size, "");
            out[i].retry_after_ms = -1;
        }
        free(b);
        free(rp);
        free(resp);
        free(st);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        b[i].rec = *recs[i];
        b[i].rec.struct_size = sizeof b[i].rec;
        b[i].res = (rk_deliver_result){
            .struct_size = sizeof b[i].res,
            .message = b[i].msg,
            .message_size = sizeof b[i].msg,
            .retry_after_ms = -1,
            .target_id = b[i].tid,
            .target_id_size = sizeof b[i].tid,
        };
        rp[i] = &b[i].rec;
        resp[i] = &b[i].res;
        st[i] = RK_DELIVER_RETRY;
    }
    c->plugin->desc->deliver_batch(c->instance, n, rp, resp, st);
    for (size_t i = 0; i < n; i++) {
        if (st[i] == RK_DELIVER_RETRY && !b[i].msg[0])
            snprintf(b[i].msg, sizeof b[i].msg, "connector '%s' left the record unanswered",
                     c->plugin->desc->name);
        out[i].status = answer(c, recs[i], (int)st[i], b[i].msg, sizeof b[i].msg, b[i].tid,
                               sizeof b[i].tid, b[i].res.retry_after_ms, out[i].message,
                               out[i].message_size, out[i].target_id, out[i].target_id_size,
                               &out[i].retry_after_ms);
    }
    free(b);
    free(rp);
    free(resp);
    free(st);
}

void rk_conn_close(rk_conn *c)
{
    if (!c)
        return;
    c->plugin->desc->close(c->instance);
    rk_settings_free(c->settings, c->n_settings);
    free(c->job_name);
    free(c);
}

const rk_connector *rk_conn_descriptor(const rk_conn *c) { return c ? c->plugin->desc : NULL; }
