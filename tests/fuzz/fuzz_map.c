/*
 * fuzz_map.c — libFuzzer harness for the field map and the rules.
 *
 * Loads jobs/besucherparkausweis.xml once (target_db=/nonexistent; the
 * harness runs from the repo root) and runs each input through what a
 * worker does with a submission, in the worker's region for libxml2
 * (xmlarena.h): rk_doc_parse, rk_doc_validate, rk_map_apply,
 * rk_rules_check with a fixed today, rk_xml_free_doc; the result is
 * checked and freed after the region's end (under ASan a value left
 * pointing into the region would be reported there).  The
 * schema check does not stop the map, so invalid documents reach the
 * transforms (dates, decimals, lookups) and the fee and range rules too.
 *
 * Contract besides "no crash": rk_map_apply on a parsed document returns
 * 0 and adds one mapped field per field of the job, each with its name
 * and XPath; every anomaly has a code and a non-empty message.
 *
 * Built with -DRK_FUZZ_REPLAY_MAIN it gets a plain main that replays the
 * files (or the files in the folders) named on the command line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "job.h"
#include "map.h"
#include "record.h"
#include "util.h"
#include "xmlarena.h"
#include "xmldoc.h"

#define MAP_JOB "jobs/besucherparkausweis.xml"
#define MAP_TODAY "2026-11-24"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static rk_job *map_job;

static void init_once(void)
{
    rk_log_set_level(RK_LOG_LVL_ERROR);
    rk_xml_init();
    static const char *names[] = {"target_db"};
    static const char *values[] = {"/nonexistent"};
    rk_vars vars = {names, values, 1};
    char err[1024];
    map_job = rk_job_load(MAP_JOB, &vars, err, sizeof err);
    if (!map_job) {
        fprintf(stderr, "fuzz_map: %s (run from the repository root)\n", err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        init_once();
        initialised = 1;
    }
    const char *code = NULL;
    char msg[512];
    rk_xml_arena_begin();
    xmlDocPtr doc = rk_doc_parse((const char *)data, size, &code, msg, sizeof msg);
    if (!doc) {
        rk_xml_arena_end();
        return 0;
    }
    rk_result r;
    rk_result_init(&r);
    rk_doc_validate(map_job, doc, &r);
    int rc = rk_map_apply(map_job, doc, &r);
    rk_rules_check(map_job, &r, MAP_TODAY);
    rk_xml_free_doc(doc);
    rk_xml_arena_end();
    if (rc != 0 || r.n_fields != map_job->n_fields)
        abort();
    for (size_t i = 0; i < r.n_fields; i++)
        if (!r.fields[i].name || !r.fields[i].xpath)
            abort();
    for (size_t i = 0; i < r.n_anomalies; i++)
        if (!r.anomalies[i].code || !r.anomalies[i].message || !r.anomalies[i].message[0])
            abort();
    rk_result_free(&r);
    return 0;
}

#define RK_FUZZ_NAME "fuzz_map"
#define RK_FUZZ_REPLAY_CLEANUP() xmlCleanupParser()
#include "replay_main.h"
