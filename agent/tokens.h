/*
 * tokens.h — the bearer tokens of the operator HTTP server.
 *
 * The token file holds one line per token, `NAME:SHA256HEX`: the name is
 * who acts in the audit trail, the hash is the lowercase hex SHA-256 of
 * the token.  The tokens themselves are never stored; `rekeyctl token add
 * NAME` prints a new random token once and appends its hash.  Blank lines
 * and lines starting with '#' are ignored.
 *
 * Ownership: rk_tokens_open returns a set the caller frees with
 * rk_tokens_free.  A set is used by one thread (the loop thread).
 */
#ifndef RK_TOKENS_H
#define RK_TOKENS_H

#include <stddef.h>
#include <stdio.h>

#define RK_TOKEN_NAME_MAX 64

typedef struct rk_tokens rk_tokens;

/* A set reading path.  The file is read at the first check and again
 * whenever it changed (size, time or inode), so tokens added or removed
 * while rekeyd runs count at once.  A missing file is an empty set. */
int rk_tokens_open(const char *path, rk_tokens **out);
void rk_tokens_free(rk_tokens *t);

/* 1 when token is one of the set, with its name copied into name; 0
 * otherwise.  The SHA-256 of the token is compared with every entry in
 * constant time, so the answer time does not tell how much matched. */
int rk_tokens_check(rk_tokens *t, const char *token, char *name, size_t namelen);

/* The same for a token given by its SHA-256 (lowercase hex): whether a
 * token seen before is still in the file (the dashboard's sessions). */
int rk_tokens_check_hash(rk_tokens *t, const char *hash, char *name, size_t namelen);

/* Number of usable entries after the last read (for the start-up log). */
size_t rk_tokens_count(rk_tokens *t);

/* 1 when name is usable as a token name: 1..64 of A-Z a-z 0-9 . _ @ -. */
int rk_token_name_valid(const char *name);

/* `rekeyctl token add|list|remove ...` (argv[0] is "token"); the exit
 * code as rekeyctl's: 0 ok, 1 refused or failed, 2 usage. */
int rk_tokens_main(int argc, char **argv, FILE *out, FILE *err);

#endif /* RK_TOKENS_H */
