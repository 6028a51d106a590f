/*
 * inbox_parse.c — see inbox_parse.h.  The code was moved here unchanged
 * from inbox_http.c and inbox_fitconnect.c (which log what these return),
 * so that tests/fuzz/fuzz_httpinbox.c and fuzz_fitconnect.c reach it.
 */
#include "inbox_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void secret_free(char *p)
{
    if (p) {
        explicit_bzero(p, strlen(p));
        free(p);
    }
}

/* ---- OAuth2 ------------------------------------------------------------- */

int rk__oauth_token_parse(const char *body, size_t len, int want_bearer, char **token,
                          int64_t *life_ms)
{
    *token = NULL;
    *life_ms = 0;
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *at = root ? json_object_get(root, "access_token") : NULL;
    json_t *exp = root ? json_object_get(root, "expires_in") : NULL;
    json_t *type = root ? json_object_get(root, "token_type") : NULL;
    char *tok = NULL;
    if (json_is_string(at) && json_string_length(at) > 0 &&
        strlen(json_string_value(at)) == json_string_length(at)) {
        tok = strdup(json_string_value(at));
        for (char *p = tok; p && *p; p++)
            if ((unsigned char)*p < 0x21 || *p == 0x7f) {
                secret_free(tok);
                tok = NULL;
                break;
            }
    }
    if (!tok || (want_bearer && type &&
                 (!json_is_string(type) ||
                  strcasecmp(json_string_value(type), "bearer") != 0))) {
        secret_free(tok);
        json_decref(root);
        return -1;
    }
    /* expires_in comes from outside: capped so that "* 1000" and the
     * caller's now + life cannot overflow (found by fuzz_httpinbox with
     * expires_in 2^63-1: signed overflow, a refresh time in the past) */
    json_int_t secs = json_is_integer(exp) ? json_integer_value(exp) : 0;
    if (secs > RK__TOKEN_MAX_LIFE_S)
        secs = RK__TOKEN_MAX_LIFE_S;
    *life_ms = secs > 0 ? (int64_t)secs * 1000 : 3600000;
    *token = tok;
    json_decref(root);
    return 0;
}

void rk__oauth_error_code(const char *body, size_t len, char *code, size_t n)
{
    code[0] = '\0';
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *ec = root ? json_object_get(root, "error") : NULL;
    if (json_is_string(ec)) {
        const char *v = json_string_value(ec);
        size_t i = 0;
        for (; v[i] && i < n - 1 && ((v[i] >= 'a' && v[i] <= 'z') || v[i] == '_'); i++)
            code[i] = v[i];
        code[i] = '\0';
    }
    json_decref(root);
}

/* ---- generic HTTP inbox --------------------------------------------------- */

/* The member at a dotted path ("data.items"); "" or "." is the root. */
static json_t *jpath(json_t *root, const char *path)
{
    if (!path || !*path || strcmp(path, ".") == 0)
        return root;
    json_t *cur = root;
    const char *p = path;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!json_is_object(cur) || len == 0 || len > 255)
            return NULL;
        char key[256];
        memcpy(key, p, len);
        key[len] = '\0';
        cur = json_object_get(cur, key);
        p = dot ? dot + 1 : p + len;
    }
    return cur;
}

/* A string or integer as an id or cursor into out; 0 when usable. */
static int scalar_text(json_t *v, char *out, size_t n)
{
    if (json_is_string(v)) {
        const char *t = json_string_value(v);
        size_t len = json_string_length(v);
        if (len == 0 || len >= n || strlen(t) != len)
            return -1;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f)
                return -1;
        memcpy(out, t, len + 1);
        return 0;
    }
    if (json_is_integer(v)) {
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    return -1;
}

int rk__http_list_parse(const char *body, size_t len, const char *items,
                        const char *id_member, const char *next_path, rk__list_id_cb cb,
                        void *arg, char *cursor, size_t cursorlen, char *why, size_t whylen)
{
    cursor[0] = '\0';
    why[0] = '\0';
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!root) {
        if (body)
            snprintf(why, whylen, "not JSON (line %d: %s)", jerr.line, jerr.text);
        else
            snprintf(why, whylen, "no body");
        return RK__LIST_UNUSABLE;
    }
    json_t *arr = jpath(root, items);
    if (!json_is_array(arr)) {
        snprintf(why, whylen, "no array at list_items '%s'", items);
        json_decref(root);
        return RK__LIST_UNUSABLE;
    }
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it) {
        char id[RK__HTTP_MAX_ID_LEN + 1];
        json_t *v = json_is_object(it) ? json_object_get(it, id_member) : it;
        int rc = cb(arg, i, scalar_text(v, id, sizeof id) ? NULL : id);
        if (rc < 0) {
            snprintf(why, whylen, "%s", rc == -ENOMEM ? "out of memory" : "cannot take an id");
            json_decref(root);
            return RK__LIST_UNUSABLE;
        }
        if (rc > 0)
            break;
    }
    json_t *nx = jpath(root, next_path);
    int rc = 0;
    if (nx && !json_is_null(nx) && !(json_is_string(nx) && json_string_length(nx) == 0) &&
        scalar_text(nx, cursor, cursorlen) != 0) {
        cursor[0] = '\0';
        snprintf(why, whylen, "list_next '%s' is not a string or number", next_path);
        rc = RK__LIST_BAD_NEXT;
    }
    json_decref(root);
    return rc;
}

/* ---- FIT-Connect ----------------------------------------------------------- */

int rk__fc_is_uuid(const char *v)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        char ch = v[i];
        if (shape[i] == '-' ? ch != '-'
                            : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                                (ch >= 'A' && ch <= 'F')))
            return 0;
    }
    return v[sizeof shape - 1] == '\0';
}

/* A JSON string member that is a UUID, copied into out; 0 when it is. */
static int uuid_member(json_t *obj, const char *key, char *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) != RK__UUID_LEN ||
        !rk__fc_is_uuid(json_string_value(v)))
        return -1;
    memcpy(out, json_string_value(v), RK__UUID_LEN + 1);
    return 0;
}

long rk__fc_list_parse(const char *body, size_t len, const char *destination,
                       rk__fc_item_cb cb, void *arg, long *total, char *why, size_t whylen)
{
    *total = -1;
    why[0] = '\0';
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!root) {
        if (body)
            snprintf(why, whylen, "not JSON (line %d: %s)", jerr.line, jerr.text);
        else
            snprintf(why, whylen, "no body");
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(why, whylen, "not a JSON object");
        json_decref(root);
        return -1;
    }
    json_t *items = json_object_get(root, "submissions");
    if (!json_is_array(items)) {
        snprintf(why, whylen, "no array 'submissions'");
        json_decref(root);
        return -1;
    }
    json_t *tc = json_object_get(root, "totalCount");
    *total = json_is_integer(tc) ? (long)json_integer_value(tc) : -1;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        char id[RK__UUID_LEN + 1], case_id[RK__UUID_LEN + 1] = "";
        int rc;
        if (!json_is_object(it) || uuid_member(it, "submissionId", id)) {
            rc = cb(arg, i, RK__FC_ITEM_NO_ID, NULL, "");
        } else {
            json_t *dest = json_object_get(it, "destinationId");
            if (uuid_member(it, "caseId", case_id))
                case_id[0] = '\0';
            rc = cb(arg, i,
                    json_is_string(dest) && strcasecmp(json_string_value(dest), destination)
                        ? RK__FC_ITEM_OTHER_DEST
                        : RK__FC_ITEM_OK,
                    id, case_id);
        }
        if (rc < 0) {
            snprintf(why, whylen, "%s", rc == -ENOMEM ? "out of memory" : "cannot take an id");
            json_decref(root);
            return -1;
        }
        if (rc > 0)
            break;
    }
    long n = (long)json_array_size(items);
    json_decref(root);
    return n;
}

void rk__fc_submission_free(rk__fc_submission *sub)
{
    free(sub->meta_jwe);
    free(sub->data_jwe);
    free(sub->att_ids);
    memset(sub, 0, sizeof *sub);
}

int rk__fc_submission_parse(const char *body, size_t len, const char *want_id,
                            const char *destination, int max_attachments,
                            rk__fc_submission *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    why[0] = '\0';
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *meta = root ? json_object_get(root, "encryptedMetadata") : NULL;
    json_t *data = root ? json_object_get(root, "encryptedData") : NULL;
    json_t *atts = root ? json_object_get(root, "attachments") : NULL;
    json_t *dest = root ? json_object_get(root, "destinationId") : NULL;
    char sid[RK__UUID_LEN + 1] = "", cid[RK__UUID_LEN + 1] = "";
    if (!json_is_object(root))
        snprintf(why, whylen, "the answer is not a JSON object");
    else if (uuid_member(root, "submissionId", sid) || strcasecmp(sid, want_id))
        snprintf(why, whylen, "the answer names another submissionId");
    else if (!json_is_string(dest) || strcasecmp(json_string_value(dest), destination))
        snprintf(why, whylen, "the answer names another destinationId");
    else if (uuid_member(root, "caseId", cid))
        snprintf(why, whylen, "the answer has no caseId");
    else if (!json_is_string(meta))
        snprintf(why, whylen, "the answer has no encryptedMetadata");
    else if (data && !json_is_null(data) && !json_is_string(data))
        snprintf(why, whylen, "encryptedData is not a string");
    else if (atts && !json_is_null(atts) && !json_is_array(atts))
        snprintf(why, whylen, "attachments is not an array");
    else if (json_array_size(atts) > (size_t)max_attachments)
        snprintf(why, whylen, "%zu attachments, more than max_attachments (%d)",
                 json_array_size(atts), max_attachments);
    if (!why[0]) {
        size_t n = json_array_size(atts);
        out->att_ids = n ? calloc(n, sizeof *out->att_ids) : NULL;
        out->n_att = n;
        if (n && !out->att_ids)
            snprintf(why, whylen, "out of memory");
        for (size_t i = 0; !why[0] && i < n; i++) {
            json_t *v = json_array_get(atts, i);
            if (!json_is_string(v) || json_string_length(v) != RK__UUID_LEN ||
                !rk__fc_is_uuid(json_string_value(v)))
                snprintf(why, whylen, "attachment %zu has no usable id", i);
            else
                memcpy(out->att_ids[i], json_string_value(v), RK__UUID_LEN + 1);
        }
    }
    if (!why[0]) {
        memcpy(out->case_id, cid, RK__UUID_LEN + 1);
        out->meta_jwe = strdup(json_string_value(meta));
        out->data_jwe = json_is_string(data) ? strdup(json_string_value(data)) : NULL;
        if (!out->meta_jwe || (json_is_string(data) && !out->data_jwe))
            snprintf(why, whylen, "out of memory");
    }
    json_decref(root);
    if (why[0]) {
        rk__fc_submission_free(out);
        return -1;
    }
    return 0;
}

const char *rk__fc_sha512_of(json_t *hash)
{
    json_t *t = json_object_get(hash, "type"), *c = json_object_get(hash, "content");
    if (!json_is_string(t) || strcmp(json_string_value(t), "sha512") != 0 ||
        !json_is_string(c) || json_string_length(c) != 128)
        return NULL;
    const char *h = json_string_value(c);
    for (size_t i = 0; i < 128; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f') ||
              (h[i] >= 'A' && h[i] <= 'F')))
            return NULL;
    return h;
}

const char *rk__fc_str_member(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) && json_string_length(v) > 0 &&
                   strlen(json_string_value(v)) == json_string_length(v)
               ? json_string_value(v)
               : NULL;
}

json_t *rk__fc_meta_attachment(json_t *list, const char *id)
{
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        const char *aid = rk__fc_str_member(it, "attachmentId");
        if (aid && strcasecmp(aid, id) == 0)
            return it;
    }
    return NULL;
}

const char *rk__fc_meta_check(json_t *meta)
{
    /* contentStructure: {data: {hash, submissionSchema: {mimeType}},
     * attachments: [{attachmentId, hash, mimeType, filename?}]} */
    json_t *cs = json_object_get(meta, "contentStructure");
    json_t *d = json_object_get(cs, "data");
    json_t *alist = json_object_get(cs, "attachments");
    const char *bad =
        !json_is_object(cs) ? "contentStructure fehlt"
        : d && !json_is_object(d) ? "contentStructure.data ist kein Objekt"
        : d && !rk__fc_sha512_of(json_object_get(d, "hash"))
            ? "contentStructure.data.hash ist kein SHA-512-Hashwert"
        : d && !rk__fc_str_member(json_object_get(d, "submissionSchema"), "mimeType")
            ? "contentStructure.data.submissionSchema.mimeType fehlt"
        : alist && !json_is_array(alist) ? "contentStructure.attachments ist keine Liste"
                                         : NULL;
    size_t i;
    json_t *it;
    json_array_foreach(alist, i, it) {
        if (bad)
            break;
        const char *aid = rk__fc_str_member(it, "attachmentId");
        if (!aid || !rk__fc_is_uuid(aid) || !rk__fc_sha512_of(json_object_get(it, "hash")) ||
            !rk__fc_str_member(it, "mimeType"))
            bad = "eine Anlage in contentStructure.attachments ist unvollständig";
        else if (rk__fc_meta_attachment(alist, aid) != it)
            bad = "eine Anlage steht zweimal in contentStructure.attachments";
    }
    return bad;
}
