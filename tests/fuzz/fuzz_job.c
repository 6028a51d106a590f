/*
 * fuzz_job.c — libFuzzer harness for loading job definitions
 * (rk_job_load: parsing the job file, validating it against
 * schemas/rekey-job.xsd, compiling XPaths, regexes, tables and rules).
 *
 * rk_job_load takes a path, so each input is written to
 * <tmpdir>/jobs/fuzz-job.xml, where <tmpdir> is a private mkdtemp folder
 * in /tmp that also holds a symlink schemas -> <repo>/schemas.  Relative
 * hrefs like ../schemas/besucherparkausweis/antrag.xsd in the seeds thus
 * resolve as they do in jobs/, and the fuzzer gets past the schema
 * element into fields and rules.  REKEY_JOB_SCHEMA is set to the absolute
 * <repo>/schemas/rekey-job.xsd; the harness runs from the repo root.
 *
 * Contract besides "no crash": a load either returns a job with refs 1,
 * a name and at least one connector and an empty error... or NULL with a
 * non-empty message.
 *
 * Built with -DRK_FUZZ_REPLAY_MAIN it gets a plain main that replays the
 * files (or the files in the folders) named on the command line.
 */
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>

#include "job.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char tmp_dir[] = "/tmp/rk-fuzz-job-XXXXXX";
static char job_file[sizeof tmp_dir + 32];
static char link_path[sizeof tmp_dir + 32];
static char jobs_dir[sizeof tmp_dir + 32];

static void cleanup(void)
{
    unlink(job_file);
    unlink(link_path);
    rmdir(jobs_dir);
    rmdir(tmp_dir);
}

static void init_once(void)
{
    char cwd[PATH_MAX], schema[PATH_MAX + 64], schemas[PATH_MAX + 16];
    if (!getcwd(cwd, sizeof cwd)) {
        perror("fuzz_job: getcwd");
        abort();
    }
    snprintf(schema, sizeof schema, "%s/schemas/rekey-job.xsd", cwd);
    snprintf(schemas, sizeof schemas, "%s/schemas", cwd);
    if (access(schema, R_OK) != 0) {
        fprintf(stderr, "fuzz_job: %s missing: run from the repository root\n", schema);
        abort();
    }
    setenv("REKEY_JOB_SCHEMA", schema, 1);
    if (!mkdtemp(tmp_dir)) {
        perror("fuzz_job: mkdtemp");
        abort();
    }
    snprintf(jobs_dir, sizeof jobs_dir, "%s/jobs", tmp_dir);
    snprintf(link_path, sizeof link_path, "%s/schemas", tmp_dir);
    snprintf(job_file, sizeof job_file, "%s/jobs/fuzz-job.xml", tmp_dir);
    if (mkdir(jobs_dir, 0700) != 0 || symlink(schemas, link_path) != 0) {
        perror("fuzz_job: temp tree");
        abort();
    }
    atexit(cleanup);
    rk_log_set_level(RK_LOG_LVL_ERROR);
    rk_xml_init();
}

static void write_input(const uint8_t *data, size_t size)
{
    int fd = open(job_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(job_file);
        abort();
    }
    while (size) {
        ssize_t w = write(fd, data, size);
        if (w <= 0) {
            perror(job_file);
            abort();
        }
        data += w;
        size -= (size_t)w;
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        init_once();
        initialised = 1;
    }
    write_input(data, size);
    static const char *names[] = {"target_db", "target_url"};
    static const char *values[] = {"/nonexistent", "http://127.0.0.1:9/"};
    rk_vars vars = {names, values, 2};
    char err[1024];
    err[0] = '\0';
    rk_job *job = rk_job_load(job_file, &vars, err, sizeof err);
    if (job) {
        if (job->refs != 1 || !job->name || job->n_connectors == 0)
            abort();
        rk_job_unref(job);
    } else if (!err[0] || strlen(err) >= sizeof err) {
        abort();
    }
    return 0;
}

#define RK_FUZZ_NAME "fuzz_job"
#define RK_FUZZ_REPLAY_CLEANUP() xmlCleanupParser()
#include "replay_main.h"
