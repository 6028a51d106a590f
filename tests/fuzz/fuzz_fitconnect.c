/*
 * fuzz_fitconnect.c — libFuzzer harness for what the FIT-Connect inbox
 * reads from the delivery service and from senders (agent/inbox_parse.c):
 *
 *   - rk__fc_list_parse, a page of GET /v1/submissions,
 *   - rk__fc_submission_parse, the answer of GET /v1/submissions/{id},
 *   - rk__fc_meta_check, the check of the decrypted metadata (the sender's
 *     JSON; decryption itself is fuzz_jwe's), with the lookups the
 *     decryption step makes after it (rk__fc_meta_attachment,
 *     rk__fc_sha512_of, rk__fc_str_member).
 *
 * Every input goes through all three, so the seeds in
 * tests/fuzz/corpus/fitconnect are plain JSON answers and metadata.  The
 * submission id and destination the answers are checked against are those
 * of the seeds (below).
 *
 * Contract besides "no crash": every item the list hands out is a UUID
 * (or flagged as having none) with a case id that is a UUID or ""; the
 * count is the array's size; a parsed submission has a UUID case id, a
 * metadata JWE, UUID attachment ids and at most max_attachments of them,
 * and a refused one a reason and nothing allocated; usable metadata has
 * each listed attachment found by its own id with a 128-hex hash; the same
 * input gives the same answer twice.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inbox_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SUBMISSION "7c1a0f9e-4d2b-4e8f-9a3c-1b2d3e4f5a6b"
#define DESTINATION "0f5a2c3d-8e7b-4a1c-9d6e-5b4a3c2d1e0f"
#define MAX_ATT 5

typedef struct items {
    size_t n, ok;
    unsigned long sum;
} items;

static int on_item(void *arg, size_t i, int status, const char *id, const char *case_id)
{
    items *t = arg;
    if (i != t->n)
        abort();
    t->n++;
    if (status == RK__FC_ITEM_NO_ID) {
        if (id)
            abort();
        return 0;
    }
    if (status != RK__FC_ITEM_OK && status != RK__FC_ITEM_OTHER_DEST)
        abort();
    if (!id || !rk__fc_is_uuid(id) || !case_id || (case_id[0] && !rk__fc_is_uuid(case_id)))
        abort();
    t->ok++;
    for (const char *p = id; *p; p++)
        t->sum = t->sum * 31 + (unsigned char)*p;
    t->sum += (unsigned)status;
    return 0;
}

static void list_checked(const char *body, size_t len)
{
    items a = {0}, b = {0};
    long total = 0, total2 = 0;
    char why[256], why2[256];
    long n = rk__fc_list_parse(body, len, DESTINATION, on_item, &a, &total, why, sizeof why);
    long n2 = rk__fc_list_parse(body, len, DESTINATION, on_item, &b, &total2, why2,
                                sizeof why2);
    if (n != n2 || total != total2 || a.n != b.n || a.sum != b.sum)
        abort();
    if (n >= 0 ? (size_t)n != a.n : (n != -1 || !why[0]))
        abort();
}

static void submission_checked(const char *body, size_t len)
{
    rk__fc_submission sub;
    char why[300];
    int rc = rk__fc_submission_parse(body, len, SUBMISSION, DESTINATION, MAX_ATT, &sub, why,
                                     sizeof why);
    if (rc == 0) {
        if (!rk__fc_is_uuid(sub.case_id) || !sub.meta_jwe || sub.n_att > MAX_ATT ||
            (sub.n_att && !sub.att_ids))
            abort();
        for (size_t i = 0; i < sub.n_att; i++)
            if (!rk__fc_is_uuid(sub.att_ids[i]))
                abort();
        rk__fc_submission_free(&sub);
    } else if (rc != -1 || !why[0] || sub.meta_jwe || sub.data_jwe || sub.att_ids) {
        abort();
    }
}

static void meta_checked(const char *body, size_t len)
{
    json_t *meta = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(meta)) {
        json_decref(meta);
        return; /* "kein valides JSON-Objekt": refused before the check */
    }
    const char *bad = rk__fc_meta_check(meta);
    const char *again = rk__fc_meta_check(meta);
    if (bad != again)
        abort();
    if (bad) {
        if (!bad[0])
            abort();
    } else {
        json_t *cs = json_object_get(meta, "contentStructure");
        json_t *d = json_object_get(cs, "data");
        json_t *alist = json_object_get(cs, "attachments");
        if (!json_is_object(cs))
            abort();
        if (d && (!rk__fc_sha512_of(json_object_get(d, "hash")) ||
                  !rk__fc_str_member(json_object_get(d, "submissionSchema"), "mimeType")))
            abort();
        size_t i;
        json_t *it;
        json_array_foreach(alist, i, it) {
            const char *aid = rk__fc_str_member(it, "attachmentId");
            if (!aid || rk__fc_meta_attachment(alist, aid) != it ||
                strlen(rk__fc_sha512_of(json_object_get(it, "hash"))) != 128 ||
                !rk__fc_str_member(it, "mimeType"))
                abort();
        }
    }
    json_decref(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size + 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    list_checked(body, size);
    submission_checked(body, size);
    meta_checked(body, size);
    free(body);
    return 0;
}

#define RK_FUZZ_NAME "fuzz_fitconnect"
#include "replay_main.h"
