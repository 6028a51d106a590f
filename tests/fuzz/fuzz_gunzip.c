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

#ifdef RK_FUZZ_REPLAY_MAIN
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

/* Runs one file through the harness; 0 or -1 when it cannot be read. */
static int replay_file(const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = rk_read_file(path, (size_t)64 << 20, &buf, &len);
    if (rc) {
        fprintf(stderr, "fuzz_gunzip: %s: %s\n", path, rk_strerror(rc));
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    free(buf);
    return 0;
}

/* Replays every file named on the command line; a folder stands for the
 * regular files directly inside it.  Prints "fuzz_gunzip: replayed N
 * input(s)" on stdout, the same line as the other harnesses, counting only
 * the inputs that were read; exits 1 when any argument could not be read. */
int main(int argc, char **argv)
{
    int n = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "fuzz_gunzip: %s: not found\n", argv[i]);
            bad++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[i]) == 0)
                n++;
            else
                bad++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            bad++;
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char path[4096];
            if (de->d_name[0] == '.')
                continue;
            int k = snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            if (k < 0 || (size_t)k >= sizeof path || stat(path, &st) != 0 ||
                !S_ISREG(st.st_mode))
                continue;
            if (replay_file(path) == 0)
                n++;
            else
                bad++;
        }
        closedir(d);
    }
    printf("fuzz_gunzip: replayed %d input(s)\n", n);
    if (bad)
        fprintf(stderr, "fuzz_gunzip: %d input(s) could not be read\n", bad);
    return bad ? 1 : 0;
}
#endif
