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

#define RK_FUZZ_NAME "fuzz_xmldoc"
#define RK_FUZZ_REPLAY_CLEANUP() xmlCleanupParser()
#include "replay_main.h"
