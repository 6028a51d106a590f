/*
 * replay_main.h — the plain main of a fuzz harness, for the builds without
 * libFuzzer (-DRK_FUZZ_REPLAY_MAIN: build/fuzz/replay_NAME, run by `make
 * check` through tests/system/test_fuzz_replay.py).
 *
 * Include it at the end of a harness after defining RK_FUZZ_NAME
 * ("fuzz_NAME").  It replays every file named on the command line; a folder
 * stands for the regular files directly inside it (no recursion, dot files
 * skipped).  Prints "fuzz_NAME: replayed N input(s)" on stdout, counting
 * the inputs that were read; exits 1 when an argument could not be read.
 * A broken contract aborts inside LLVMFuzzerTestOneInput.  A harness may
 * define RK_FUZZ_REPLAY_CLEANUP() (e.g. xmlCleanupParser()), run at the end
 * so leak checkers see library state released.
 */
#ifdef RK_FUZZ_REPLAY_MAIN
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "util.h"

static int replay_file(const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = rk_read_file(path, (size_t)64 << 20, &buf, &len);
    if (rc) {
        fprintf(stderr, RK_FUZZ_NAME ": %s: %s\n", path, rk_strerror(rc));
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, RK_FUZZ_NAME ": %s: not found\n", argv[i]);
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
    printf(RK_FUZZ_NAME ": replayed %d input(s)\n", n);
#ifdef RK_FUZZ_REPLAY_CLEANUP
    RK_FUZZ_REPLAY_CLEANUP();
#endif
    if (bad)
        fprintf(stderr, RK_FUZZ_NAME ": %d input(s) could not be read\n", bad);
    return bad ? 1 : 0;
}
#endif
