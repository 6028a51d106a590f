/*
 * fuzz_xmldoc.c — libFuzzer harness for the submission parser
 * (rk_doc_parse + rk_doc_root), the first code that sees outside input.
 *
 * Besides memory errors (found by the sanitizers) it checks the
 * contract: a document comes back with a root whose namespace and local
 * name are non-NULL, or NULL comes back with one of the three codes and a
 * non-empty German message.
 *
 * Built with -DRK_FUZZ_REPLAY_MAIN it gets a plain main that replays the
 * files (or the files in the folders) named on the command line, so CI
 * can run a corpus without clang's fuzzer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "job.h"
#include "util.h"
#include "xmldoc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        rk_log_set_level(RK_LOG_LVL_ERROR);
        rk_xml_init();
        initialised = 1;
    }
    const char *code = NULL;
    char msg[512];
    xmlDocPtr doc = rk_doc_parse((const char *)data, size, &code, msg, sizeof msg);
    if (doc) {
        const char *ns = NULL, *local = NULL;
        rk_doc_root(doc, &ns, &local);
        if (code || !ns || !local || !*local)
            abort();
        xmlFreeDoc(doc);
    } else {
        if (!code || (strcmp(code, "XML_EMPTY") != 0 && strcmp(code, "XML_MALFORMED") != 0 &&
                      strcmp(code, "XML_DOCTYPE") != 0))
            abort();
        if (!msg[0] || strlen(msg) >= sizeof msg)
            abort();
    }
    return 0;
}

#ifdef RK_FUZZ_REPLAY_MAIN
#include <dirent.h>
#include <sys/stat.h>

#define REPLAY_MAX_FILE (64u << 20)

/* Replays one file; 0 when it was read, -1 when it could not be. */
static int replay_file(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    int rc = rk_read_file(path, REPLAY_MAX_FILE, &data, &len);
    if (rc) {
        fprintf(stderr, "fuzz_xmldoc: %s: %s\n", path, rk_strerror(rc));
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    free(data);
    return 0;
}

/* Replays every regular file directly inside dir; returns the count or -1. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    int n = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (replay_file(path) == 0)
            n++;
        else
            bad = 1;
    }
    closedir(d);
    return bad ? -1 : n;
}

int main(int argc, char **argv)
{
    int total = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            failed = 1;
            continue;
        }
        int n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : (replay_file(argv[i]) == 0 ? 1 : -1);
        if (n < 0)
            failed = 1;
        else
            total += n;
    }
    printf("fuzz_xmldoc: replayed %d input(s)\n", total);
    xmlCleanupParser();
    return failed;
}
#endif
