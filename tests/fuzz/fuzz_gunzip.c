/*
 * fuzz_gunzip.c — libFuzzer harness for rk_inflate, the decompressor the
 * inbox runs on every *.xml.gz a portal drops (outside input).
 *
 * Each input is inflated as gzip and as zlib with small caps, so bombs
 * hit the limits quickly.  Checked beyond "no crash": a success returns
 * a NUL-terminated buffer no longer than the cap, and the same input
 * gives the same answer twice.
 *
 * `make fuzz` builds it with clang's libFuzzer (build/fuzz/fuzz_gunzip,
 * from this file, agent/util.c, zlib and libcrypto) and runs it on a copy
 * of tests/fuzz/corpus/gunzip; `make all` builds the replay binary
 * build/fuzz/replay_gunzip (-DRK_FUZZ_REPLAY_MAIN), which takes files or
 * folders:  build/fuzz/replay_gunzip tests/fuzz/corpus/gunzip
 * See tests/fuzz/README.md.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CAP_OUT ((size_t)1 << 20)
#define CAP_RATIO 100u

static void inflate_checked(const uint8_t *data, size_t size, int gzip, unsigned ratio)
{
    char *out = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    int rc = rk_inflate(data, size, gzip, CAP_OUT, ratio, &out, &len);
    int rc2 = rk_inflate(data, size, gzip, CAP_OUT, ratio, &again, &len2);
    if (rc != rc2)
        abort();
    if (rc == 0) {
        if (!out || len > CAP_OUT || out[len] != '\0')
            abort();
        if (len2 != len || memcmp(out, again, len) != 0)
            abort();
    } else if (rc != RK_E_FORMAT && rc != RK_E_LIMIT) {
        abort(); /* only ENOMEM would be legitimate, and caps keep us small */
    }
    free(out);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    inflate_checked(data, size, 1, CAP_RATIO);
    inflate_checked(data, size, 1, 0);
    inflate_checked(data, size, 0, CAP_RATIO);
    return 0;
}

#define RK_FUZZ_NAME "fuzz_gunzip"
#include "replay_main.h"
