/*
 * inbox_parse.h — private: the parsers of the answers the networked inboxes
 * get from outside (OAuth2 token endpoints, the generic HTTP inbox's list
 * pages, FIT-Connect's submission lists, submissions and metadata).
 *
 * They live apart from inbox_http.c and inbox_fitconnect.c so that the
 * libFuzzer harnesses in tests/fuzz/ can feed them bytes without a loop,
 * curl or a store; the inboxes call them with the answer they received.
 * Nothing here logs, keeps state or does I/O.  Not a public API (hence the
 * double underscores).
 *
 * Ownership: inputs are borrowed; what a function hands out through an
 * out-parameter is new and belongs to the caller (see each function).
 */
#ifndef RK_INBOX_PARSE_H
#define RK_INBOX_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define RK__UUID_LEN 36

/* ---- OAuth2 token endpoint --------------------------------------------- */

/* Parses a token answer (status 2xx).  0 with *token (new, free with
 * explicit_bzero + free: it is a secret) and *life_ms (expires_in in ms,
 * 3600000 when absent, capped at RK__TOKEN_MAX_LIFE_S); -1 when there is no
 * usable access_token (missing, empty, with NUL or control characters or
 * blanks), or when want_bearer is set and a token_type other than
 * "bearer" (any case) is given. */
#define RK__TOKEN_MAX_LIFE_S (366LL * 24 * 3600)
int rk__oauth_token_parse(const char *body, size_t len, int want_bearer, char **token,
                          int64_t *life_ms);

/* The OAuth2 "error" code of a refusal, when it is a registered-looking
 * word ([a-z_], cut at the first other character and at n - 1), into code
 * (n >= 1); "" otherwise.  Safe to log: never the description. */
void rk__oauth_error_code(const char *body, size_t len, char *code, size_t n);

/* ---- generic HTTP inbox list page ---------------------------------------- */

#define RK__HTTP_MAX_ID_LEN 200

/* Called for item i of a list page with its id (NULL when the item has no
 * usable id: not a non-empty string without control characters of at
 * most RK__HTTP_MAX_ID_LEN bytes, nor an integer).  Returns 0 to go on, 1
 * to stop taking items (the page still counts), or a negative error. */
typedef int (*rk__list_id_cb)(void *arg, size_t i, const char *id);

enum { RK__LIST_UNUSABLE = -1, RK__LIST_BAD_NEXT = -2 };

/* Parses one list page: the array at dotted path items ("" or "." is the
 * root), each element an object with member id_member or a scalar id, and
 * the next-page link or cursor at dotted path next_path.  cb sees every
 * item in order.  Returns 0 with cursor = the next link/cursor ("" when
 * there is none: absent, null or ""), RK__LIST_UNUSABLE (not JSON, no
 * array, cb failed) or RK__LIST_BAD_NEXT (a next that is not a usable
 * string or number), with a reason in why. */
int rk__http_list_parse(const char *body, size_t len, const char *items,
                        const char *id_member, const char *next_path, rk__list_id_cb cb,
                        void *arg, char *cursor, size_t cursorlen, char *why, size_t whylen);

/* ---- FIT-Connect ---------------------------------------------------------- */

/* 1 when v is a UUID in 8-4-4-4-12 hex form (either case), NUL after. */
int rk__fc_is_uuid(const char *v);

enum { RK__FC_ITEM_OK = 0, RK__FC_ITEM_NO_ID = 1, RK__FC_ITEM_OTHER_DEST = 2 };

/* Called for item i of a submission list: status RK__FC_ITEM_*; id is the
 * submissionId (NULL with RK__FC_ITEM_NO_ID), case_id its caseId or "" when
 * absent or not a UUID.  Returns 0 to go on, 1 to stop, or a negative
 * error. */
typedef int (*rk__fc_item_cb)(void *arg, size_t i, int status, const char *id,
                              const char *case_id);

/* Parses a page of GET /v1/submissions: {"submissions": [{submissionId,
 * destinationId?, caseId?}...], "totalCount"?}.  An item whose
 * destinationId is a string other than destination (any case) is
 * RK__FC_ITEM_OTHER_DEST.  Returns the number of items (>= 0) with *total
 * (-1 when totalCount is not an integer), or -1 with a reason in why. */
long rk__fc_list_parse(const char *body, size_t len, const char *destination,
                       rk__fc_item_cb cb, void *arg, long *total, char *why, size_t whylen);

/* One submission as GET /v1/submissions/{id} describes it. */
typedef struct rk__fc_submission {
    char case_id[RK__UUID_LEN + 1];
    char *meta_jwe;                    /* new */
    char *data_jwe;                    /* new, NULL when absent */
    char (*att_ids)[RK__UUID_LEN + 1]; /* new, n_att of them */
    size_t n_att;
} rk__fc_submission;

/* Parses and checks the answer for submission want_id: a JSON object
 * (duplicate keys refused) naming want_id and destination (any case), with
 * a caseId, a string encryptedMetadata, encryptedData a string or absent,
 * attachments an array of at most max_attachments UUIDs.  0 and *out
 * filled (free with rk__fc_submission_free), or -1 with a reason in why
 * and *out empty. */
int rk__fc_submission_parse(const char *body, size_t len, const char *want_id,
                            const char *destination, int max_attachments,
                            rk__fc_submission *out, char *why, size_t whylen);
void rk__fc_submission_free(rk__fc_submission *sub);

/* The checks of decrypted metadata (contentStructure with data hash and
 * submissionSchema.mimeType, attachments each with a UUID, a hash, a
 * mimeType, none twice).  NULL when usable, else the German reason for the
 * schema-violation problem (static text). */
const char *rk__fc_meta_check(json_t *meta);
/* {"type": "sha512", "content": 128 hex digits}: the hex, or NULL. */
const char *rk__fc_sha512_of(json_t *hash);
/* A non-empty string member without NUL, or NULL. */
const char *rk__fc_str_member(json_t *o, const char *k);
/* The element of the metadata's attachment list with attachmentId id (any
 * case), or NULL. */
json_t *rk__fc_meta_attachment(json_t *list, const char *id);

#endif /* RK_INBOX_PARSE_H */
