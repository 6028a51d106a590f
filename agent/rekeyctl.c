/*
 * rekeyctl.c — the operator and review CLI of rekey.
 *
 *   rekeyctl status                 counts per state and per job, overdue first
 *   rekeyctl list [filters]         jobs, newest first, paged
 *   rekeyctl show ID                one job: states, history, anomalies, fields
 *   rekeyctl events [filters]       the audit trail as CSV or JSON
 *   rekeyctl review list|show|set|approve|reject   what clerks decide
 *   rekeyctl retry|replay|purge     what operators do
 *   rekeyctl map JOBFILE XMLFILE    dry run of a job on a document
 *
 * The read commands open the store read-only and print either aligned
 * tables for people (German labels, as clerks read them; see
 * /work/shared/glossary.md) or, with --json, the store's JSON and nothing
 * else on stdout.  The commands that decide (review set/approve/reject,
 * retry, replay, purge) open the store read-write and call the review
 * module (review.h), the same functions the dashboard calls; rekeyctl
 * holds no decision logic of its own.  They need the job definitions,
 * from the daemon's configuration (--config) or a job folder (--jobs).
 * A running rekeyd notices their commits by itself (SQLite's
 * data_version), so nothing has to be restarted or signalled.
 *
 * `map` needs no database: it loads one job file, parses, validates, maps
 * and checks one document exactly as the engine would and prints the
 * record with its provenance; nothing is stored or delivered.
 *
 * Values that came from a citizen's document are shown on stdout (that is
 * what show and map are for) but with control characters escaped, so a
 * submission cannot drive the operator's terminal.  Nothing personal goes
 * to the log; rekeyctl logs only warnings and errors, to stderr.
 *
 * Exit codes: 0 ok; 1 not found, refused (the state does not allow it,
 * four-eyes, still blocked), or a check failed; 2 usage error; 3 (map
 * only) the document would be held for review.
 *
 * The whole program runs through rkctl_main(argc, argv, out, err) so the
 * unit test (tests/unit/test_cli_format.c) can include this file with
 * RKCTL_NO_MAIN defined and drive it with memory streams.
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/tree.h>

#include "config.h"
#include "inbox.h"
#include "job.h"
#include "map.h"
#include "record.h"
#include "review.h"
#include "store.h"
#include "util.h"
#include "xmldoc.h"
#include "contract.h"
#include "tokens.h"
#include "watch.h"

enum {
    RKCTL_EXIT_OK = 0,
    RKCTL_EXIT_FAIL = 1,  /* not there, refused, or a check failed */
    RKCTL_EXIT_USAGE = 2, /* the command line is wrong */
    RKCTL_EXIT_HELD = 3   /* map: the document would go to review */
};

#define RKCTL_DEFAULT_DB "./rekey.db"
#define RKCTL_DEFAULT_LIMIT 50
#define RKCTL_PAGE 500          /* rows read per statement when walking a large set */
#define RKCTL_EVENTS_PAGE 1000  /* events read per statement by `events` */
#define RKCTL_MAX_ACTOR 64

/* ---- commands and options ---------------------------------------------- */

typedef enum {
    CMD_NONE = 0,
    CMD_STATUS,
    CMD_LIST,
    CMD_SHOW,
    CMD_EVENTS,
    CMD_REVIEW,     /* only the word: resolved to one of the CMD_RV_* below */
    CMD_RETRY,
    CMD_REPLAY,
    CMD_PURGE,
    CMD_RESUME,
    CMD_MAP,
    CMD_HELP,
    CMD_RV_LIST,    /* review subcommands: not top-level words */
    CMD_RV_SHOW,
    CMD_RV_SET,
    CMD_RV_APPROVE,
    CMD_RV_REJECT,
    CMD_COUNT
} ctl_cmd;
#define CMD_LAST_TOP CMD_HELP
#define CMD_BIT(c) (1u << (c))
#define CMDS_REVIEW                                                                          \
    (CMD_BIT(CMD_RV_LIST) | CMD_BIT(CMD_RV_SHOW) | CMD_BIT(CMD_RV_SET) |                     \
     CMD_BIT(CMD_RV_APPROVE) | CMD_BIT(CMD_RV_REJECT))
/* the commands that write: they open the store read-write */
#define CMDS_WRITE                                                                           \
    (CMD_BIT(CMD_RV_SET) | CMD_BIT(CMD_RV_APPROVE) | CMD_BIT(CMD_RV_REJECT) |                \
     CMD_BIT(CMD_RETRY) | CMD_BIT(CMD_REPLAY) | CMD_BIT(CMD_PURGE))
/* every command that works on the database */
#define CMDS_DB                                                                              \
    (CMD_BIT(CMD_STATUS) | CMD_BIT(CMD_LIST) | CMD_BIT(CMD_SHOW) | CMD_BIT(CMD_EVENTS) |     \
     CMD_BIT(CMD_RESUME) | CMDS_REVIEW | CMDS_WRITE)

static const char *const cmd_names[CMD_COUNT] = {
    [CMD_NONE] = "",
    [CMD_STATUS] = "status",
    [CMD_LIST] = "list",
    [CMD_SHOW] = "show",
    [CMD_EVENTS] = "events",
    [CMD_REVIEW] = "review",
    [CMD_RETRY] = "retry",
    [CMD_REPLAY] = "replay",
    [CMD_PURGE] = "purge",
    [CMD_RESUME] = "resume",
    [CMD_MAP] = "map",
    [CMD_HELP] = "help",
    [CMD_RV_LIST] = "review list",
    [CMD_RV_SHOW] = "review show",
    [CMD_RV_SET] = "review set",
    [CMD_RV_APPROVE] = "review approve",
    [CMD_RV_REJECT] = "review reject",
};

/* The help topic of a command: `rekeyctl help review` covers all of review. */
static const char *help_topic(ctl_cmd c)
{
    return (CMD_BIT(c) & CMDS_REVIEW) ? "review" : cmd_names[c];
}

enum {
    O_HELP, O_JSON, O_DB, O_CONFIG, O_JOBS, O_VAR, O_AS, O_STATE, O_JOB, O_LIMIT, O_BEFORE,
    O_SOURCE, O_SOURCE_REF, O_REF, O_CODE, O_SINCE, O_UNTIL, O_OVERDUE, O_TODAY, O_REASON,
    O_ALL_FAILED, O_NEW_KEY, O_YES, O_OLDER_THAN, O_DRY_RUN, O_FORMAT, O_COUNT
};

typedef struct opt_def {
    const char *name;
    int has_arg;
    unsigned cmds; /* commands that accept it (CMD_BIT mask) */
} opt_def;

static const opt_def opt_defs[O_COUNT] = {
    [O_HELP] = {"help", 0, ~0u},
    [O_JSON] = {"json", 0, CMDS_DB | CMD_BIT(CMD_MAP)},
    [O_DB] = {"db", 1, CMDS_DB | CMD_BIT(CMD_MAP)}, /* map accepts and ignores it */
    [O_CONFIG] = {"config", 1, CMDS_DB},
    [O_JOBS] = {"jobs", 1, CMDS_WRITE},
    [O_VAR] = {"var", 1, CMDS_WRITE | CMD_BIT(CMD_MAP)},
    [O_AS] = {"as", 1, CMDS_WRITE},
    [O_STATE] = {"state", 1, CMD_BIT(CMD_LIST)},
    [O_JOB] = {"job", 1, CMD_BIT(CMD_LIST) | CMD_BIT(CMD_RV_LIST) | CMD_BIT(CMD_RETRY) |
                             CMD_BIT(CMD_PURGE) | CMD_BIT(CMD_EVENTS)},
    [O_LIMIT] = {"limit", 1, CMD_BIT(CMD_LIST) | CMD_BIT(CMD_RV_LIST)},
    [O_BEFORE] = {"before", 1, CMD_BIT(CMD_LIST)},
    [O_SOURCE] = {"source", 1, CMD_BIT(CMD_LIST)},
    [O_SOURCE_REF] = {"source-ref", 1, CMD_BIT(CMD_LIST)},
    [O_REF] = {"ref", 1, CMD_BIT(CMD_LIST)},
    [O_CODE] = {"code", 1, CMD_BIT(CMD_LIST)},
    [O_SINCE] = {"since", 1, CMD_BIT(CMD_LIST) | CMD_BIT(CMD_EVENTS)},
    [O_UNTIL] = {"until", 1, CMD_BIT(CMD_LIST)},
    [O_OVERDUE] = {"overdue", 0, CMD_BIT(CMD_LIST) | CMD_BIT(CMD_RV_LIST)},
    [O_TODAY] = {"today", 1, CMD_BIT(CMD_MAP) | CMD_BIT(CMD_RV_SET) | CMD_BIT(CMD_RV_APPROVE)},
    [O_REASON] = {"reason", 1, CMD_BIT(CMD_RV_REJECT)},
    [O_ALL_FAILED] = {"all-failed", 0, CMD_BIT(CMD_RETRY)},
    [O_NEW_KEY] = {"new-key", 0, CMD_BIT(CMD_REPLAY)},
    [O_YES] = {"yes", 0, CMD_BIT(CMD_REPLAY)},
    [O_OLDER_THAN] = {"older-than", 1, CMD_BIT(CMD_PURGE)},
    [O_DRY_RUN] = {"dry-run", 0, CMD_BIT(CMD_PURGE)},
    [O_FORMAT] = {"format", 1, CMD_BIT(CMD_EVENTS)},
};

static const char usage_global[] =
    "usage: rekeyctl COMMAND [ARGS] [OPTIONS]\n"
    "\n"
    "The operator and review tool of rekey: look into the queue, decide about\n"
    "held submissions, retry, replay and purge, export the audit trail, and\n"
    "dry-run a job on a sample document.\n"
    "\n"
    "Looking:\n"
    "  status               counts per state and per job; overdue jobs first\n"
    "  list                 jobs, newest first, with filters and paging\n"
    "  show ID              one job: state, history, anomalies, mapped fields with\n"
    "                       the XPath each came from and the value in the document\n"
    "  events               the audit trail (Verlauf) as CSV or JSON\n"
    "  watch                live view: counts, rates, overdue, errors (see --help)\n"
    "Deciding (for clerks, in German):\n"
    "  review list          submissions held for review, overdue first\n"
    "  review show ID       why one is held: anomalies, document and mapped values\n"
    "  review set ID FIELD VALUE     correct one mapped field\n"
    "  review approve ID    approve: the rules run again, then it is delivered\n"
    "  review reject ID --reason TEXT   reject, with the reason\n"
    "Operations:\n"
    "  retry ID             a failed job is delivered again (--all-failed --job J)\n"
    "  replay ID            the stored document runs through the current job again\n"
    "  purge --older-than AGE   retention: deletes the personal data of finished jobs\n"
    "  resume JOB [CONNECTOR]   a connector paused after a fatal error works again\n"
    "  token add NAME       a bearer token for the HTTP API, shown once (token --help)\n"
    "Job authors:\n"
    "  map JOBFILE XMLFILE  dry run of one job on one document; stores and\n"
    "                       delivers nothing\n"
    "  connector-test SO    contract tests of a connector plugin (see --help)\n"
    "  help [COMMAND]       this text, or the usage of one command\n"
    "\n"
    "Options (before or after the arguments):\n"
    "  --config FILE   the rekeyd configuration: database, job folder and [vars]\n"
    "  --db PATH       the rekey database (default: the one in --config, else\n"
    "                  $REKEY_DB, else ./rekey.db)\n"
    "  --jobs DIR      the job folder (without --config), for the commands that decide\n"
    "  --var NAME=VALUE  a job variable, as in the configuration's [vars]\n"
    "  --as NAME       who acts (default: the user running rekeyctl)\n"
    "  --json          print JSON only\n"
    "  --help, -h      usage of the command\n"
    "\n"
    "Exit status: 0 ok; 1 not found, refused, or a check failed; 2 usage error;\n"
    "3 (map) the document would be held for review.\n";

static const char usage_review[] =
    "usage: rekeyctl review list [--job JOB] [--overdue] [--limit N]\n"
    "       rekeyctl review show ID\n"
    "       rekeyctl review set ID FIELD VALUE [--as NAME]\n"
    "       rekeyctl review approve ID [--as NAME]\n"
    "       rekeyctl review reject ID --reason TEXT [--as NAME]\n"
    "\n"
    "What clerks decide about submissions held for review (zur Klärung).  The\n"
    "output is German.\n"
    "\n"
    "  list     the held submissions, those past their processing deadline first\n"
    "           (marked \"Frist überschritten\"); --overdue: only those, including\n"
    "           failed ones; --limit N: at most N of the others (default 50, 0 = all)\n"
    "  show     each anomaly with code, severity and message (resolved ones\n"
    "           marked), every mapped field with the value in the document, its\n"
    "           XPath and the mapped value side by side (fields named by an open\n"
    "           anomaly marked !, corrected ones *), and the corrections\n"
    "  set      corrects one mapped field (old and new value are recorded); the\n"
    "           rules check the record again at once.  A VALUE that starts with\n"
    "           '-' goes after `--`.\n"
    "  approve  the rules run again on the corrected record: when one still\n"
    "           blocks, the submission stays held (exit 1, the remaining anomalies\n"
    "           are listed); otherwise it goes to the target.  With four-eyes in\n"
    "           the job, who corrected cannot approve.\n"
    "  reject   the submission is refused for good; the reason (Begründung) is\n"
    "           required.\n"
    "\n"
    "set, approve and reject need the job definitions and the database:\n"
    "  --config FILE     the rekeyd configuration (database, job folder, [vars])\n"
    "  --db PATH --jobs DIR [--var NAME=VALUE]...   the same, given one by one\n"
    "  --as NAME         who acts (default: the user running rekeyctl)\n"
    "  --today DATE      date rules run as if today were DATE (YYYY-MM-DD)\n"
    "  --json            print {\"ok\", \"id\", \"state\", \"message\"} only\n"
    "\n"
    "A running rekeyd delivers an approved submission within about a second;\n"
    "a stopped one does at its next start.\n"
    "\n"
    "Exit status: 0 done; 1 no such submission or field, or refused (not in\n"
    "review, four-eyes, still blocked); 2 usage error.\n";

static const char *const usage_cmd[CMD_COUNT] = {
    [CMD_NONE] = "",
    [CMD_STATUS] =
        "usage: rekeyctl status [--db PATH | --config FILE] [--json]\n"
        "\n"
        "Counts of jobs per state, and per job (application type) and state.  When\n"
        "jobs in review or failed are past their processing deadline, a line\n"
        "\"Frist überschritten: N\" with their ids comes first.\n"
        "--json prints {\"by_state\": {STATE: N, ...}, \"by_job\": {JOB: {STATE: N}},\n"
        "\"total\": N, \"overdue\": [ID, ...]}; every state appears in by_state,\n"
        "with 0 when empty.\n"
        "\n"
        "  --db PATH      the rekey database (default: $REKEY_DB, else ./rekey.db)\n"
        "  --config FILE  take the database from the rekeyd configuration\n"
        "  --json         print JSON only\n"
        "\n"
        "Exit status: 0 ok; 1 the database cannot be read; 2 usage error.\n",
    [CMD_LIST] =
        "usage: rekeyctl list [FILTERS] [--limit N] [--before ID] [--db PATH] [--json]\n"
        "\n"
        "Jobs, newest first, one line each: id, job, state, received, last change,\n"
        "delivery attempts, open anomalies.  Filters combine:\n"
        "\n"
        "  --state STATE     received, validated, mapped, ready, delivering,\n"
        "                    delivered, review, retry_wait, failed, rejected (the\n"
        "                    German name is accepted too)\n"
        "  --job JOB         the job (the name in the job file)\n"
        "  --source SOURCE   the inbox source, e.g. dir:/var/spool/rekey/inbox\n"
        "  --source-ref ID   the source's id of the submission (file name, id)\n"
        "  --ref NUMBER      the reference number (the job's <review reference>)\n"
        "  --code CODE       has an open anomaly with this code\n"
        "  --since TIME      received at or after TIME\n"
        "  --until TIME      received before TIME\n"
        "  --overdue         in review or failed and past the processing deadline\n"
        "\n"
        "TIME is YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or TT.MM.JJJJ in local time (a\n"
        "trailing Z means UTC), or an age like 7d, 36h (that long ago).\n"
        "\n"
        "  --limit N    at most N lines (default 50; 0 = all)\n"
        "  --before ID  the next page: only jobs with an id below ID (the last\n"
        "               line says which id to give)\n"
        "  --db PATH    the rekey database (default: $REKEY_DB, else ./rekey.db)\n"
        "  --config FILE  take the database from the rekeyd configuration\n"
        "  --json       print a JSON array only\n"
        "\n"
        "Exit status: 0 ok (also when nothing matches); 1 the database cannot be\n"
        "read; 2 usage error.\n",
    [CMD_SHOW] =
        "usage: rekeyctl show ID [--db PATH] [--json]\n"
        "\n"
        "One job (ID as printed by `rekeyctl list`): its state, the submission it\n"
        "belongs to, the history of its states (Verlauf), its anomalies\n"
        "(Auffälligkeiten), each mapped field with the XPath it came from and the\n"
        "value in the document beside the mapped value, the corrections and the\n"
        "deliveries.  Shows personal data.\n"
        "\n"
        "  --db PATH   the rekey database (default: $REKEY_DB, else ./rekey.db)\n"
        "  --config FILE  take the database from the rekeyd configuration\n"
        "  --json      print a JSON object only\n"
        "\n"
        "Exit status: 0 ok; 1 there is no job with this id, or the database cannot\n"
        "be read; 2 usage error.\n",
    [CMD_EVENTS] =
        "usage: rekeyctl events [--since TIME] [--job JOB] [--format csv|json]\n"
        "\n"
        "The audit trail: every transition and decision, oldest first, with the\n"
        "job id, job, time (UTC), actor, from and to state and the reason.  It is\n"
        "read in pages, so a trail of any length streams.\n"
        "\n"
        "  --since TIME     only events at or after TIME (see `rekeyctl help list`)\n"
        "  --job JOB        only events of this job\n"
        "  --format csv     RFC 4180: a header line, then one line per event, CRLF\n"
        "                   line ends, fields with a comma, quote or line break\n"
        "                   quoted (the default)\n"
        "  --format json    a JSON array, one event object per line\n"
        "  --json           the same as --format json\n"
        "\n"
        "Exit status: 0 ok; 1 the database cannot be read; 2 usage error.\n",
    [CMD_REVIEW] = usage_review,
    [CMD_RETRY] =
        "usage: rekeyctl retry ID [--as NAME]\n"
        "       rekeyctl retry --all-failed --job JOB [--as NAME]\n"
        "\n"
        "A failed job (dead letter) goes back to ready with its attempts reset and\n"
        "is delivered again; one that failed before it was mapped is processed\n"
        "again.  --all-failed does so for every failed job of JOB and reports how\n"
        "many.  Needs --config FILE or --db PATH (--jobs is not needed).\n"
        "\n"
        "Exit status: 0 done; 1 no such job, or it is not failed; 2 usage error.\n",
    [CMD_REPLAY] =
        "usage: rekeyctl replay ID [--new-key [--yes]] [--as NAME]\n"
        "\n"
        "The stored document of a finished job runs through the current job\n"
        "definition again, as a new job linked to the original.  It is delivered\n"
        "with the original's idempotency keys, so the target updates its record\n"
        "instead of getting a second one.  --new-key gives the new job keys of its\n"
        "own: the target gets a second record.  That must be confirmed: with\n"
        "--yes, or by answering the question when rekeyctl runs on a terminal.\n"
        "Needs --config FILE or --db PATH.\n"
        "\n"
        "Exit status: 0 done (prints the new job's id); 1 no such job, still in\n"
        "progress, its document was purged, or not confirmed; 2 usage error.\n",
    [CMD_PURGE] =
        "usage: rekeyctl purge --older-than AGE [--job JOB] [--dry-run] [--as NAME]\n"
        "\n"
        "Retention (Löschung nach Aufbewahrungsfrist): for finished jobs\n"
        "(delivered, rejected, failed) whose last change is older than AGE, deletes\n"
        "the stored documents, mapped values and corrections and clears anomaly\n"
        "messages.  The event trail stays (ids, codes, actors).  Reports what was\n"
        "removed; --dry-run reports what would be and deletes nothing.\n"
        "\n"
        "  --older-than AGE  e.g. 90d, 12w, 36h (s, m, h, d, w)\n"
        "  --job JOB         only jobs of JOB\n"
        "\n"
        "Exit status: 0 done; 1 the database cannot be written; 2 usage error.\n",
    [CMD_RESUME] =
        "usage: rekeyctl resume JOB [CONNECTOR]\n"
        "\n"
        "A connector that answered FATAL (wrong credentials, a missing table, a\n"
        "refused certificate) is paused: nothing more is sent to it and its jobs\n"
        "wait in retry_wait.  `rekeyctl status` lists the paused connectors with\n"
        "the reason.  After fixing the cause, resume names the job and the\n"
        "connector (its name in the job file, default the plugin's name; without\n"
        "CONNECTOR: every paused connector of JOB).  The waiting jobs are due at\n"
        "once; a running rekeyd picks them up by itself.  A reload (SIGHUP)\n"
        "resumes all paused connectors too.\n"
        "\n"
        "Exit status: 0 resumed; 1 nothing of that name was paused; 2 usage error.\n",
    [CMD_MAP] =
        "usage: rekeyctl map JOBFILE XMLFILE [--var NAME=VALUE]... [--today YYYY-MM-DD] [--json]\n"
        "\n"
        "Dry run: loads the job file, reads the document as intake would (*.gz is\n"
        "unpacked, with the inbox's default size limits), parses it, checks\n"
        "that its root element is the job's, validates it against the job's XSD,\n"
        "maps the fields and runs the rules (dated today, local time).  Prints\n"
        "the record, the anomalies and the provenance of each field.  Nothing is\n"
        "stored or delivered and no database is needed (--db is ignored);\n"
        "duplicate rules need the database and are listed as not checked.\n"
        "\n"
        "  --var NAME=VALUE  value of ${NAME} in the job's connector settings\n"
        "                    (repeatable; the daemon takes them from [vars])\n"
        "  --today DATE      run the rules as if today were DATE (YYYY-MM-DD)\n"
        "  --json            print {\"job\", \"root_matches\", \"delivered\", \"fields\",\n"
        "                    \"anomalies\", \"unchecked\"} only\n"
        "\n"
        "Exit status: 0 the document would be delivered; 3 it would be held for\n"
        "review (blocking anomalies); 1 the job file does not load, the document\n"
        "cannot be read or parsed, or its root element is not the job's;\n"
        "2 usage error.\n",
    [CMD_HELP] =
        "usage: rekeyctl help [COMMAND]\n"
        "\n"
        "Prints the usage of rekeyctl, or of one command (status, list, show,\n"
        "events, review, retry, replay, purge, resume, map).\n",
    [CMD_RV_LIST] = usage_review,
    [CMD_RV_SHOW] = usage_review,
    [CMD_RV_SET] = usage_review,
    [CMD_RV_APPROVE] = usage_review,
    [CMD_RV_REJECT] = usage_review,
};

typedef enum { FMT_CSV = 0, FMT_JSON } ctl_format;

/* The parsed command line.  Strings point into argv, except the var
 * names, which are copies, and what the *_buf members hold (owned, freed
 * by ctl_free).  cfg is loaded when --config was given. */
typedef struct ctl {
    FILE *out;
    FILE *err;
    ctl_cmd cmd;
    const char *cmd_word;  /* the command as typed */
    const char *db;
    int db_default;        /* 1 when db came from neither --db nor REKEY_DB */
    int json;
    int help;
    const char *config;
    rk_config cfg;
    int have_cfg;
    const char *jobs_dir;
    const char *actor;     /* --as, else the OS user (actor_buf) */
    char actor_buf[RKCTL_MAX_ACTOR + 1];
    const char *state;
    const char *job;
    size_t limit;
    int64_t before_id;
    const char *source;
    const char *source_ref;
    const char *ref;
    const char *code;
    char since[40];        /* ISO 8601 UTC, "" = none */
    char until[40];
    int overdue;
    const char *today;
    const char *reason;
    int all_failed;
    int new_key;
    int yes;
    int64_t older_than_ms;
    const char *older_than;
    int dry_run;
    ctl_format format;
    const char **var_names;
    const char **var_values;
    size_t n_vars;
    const char **pos;      /* positional arguments after the command */
    size_t n_pos;
    const char *opt_seen[O_COUNT]; /* spelling of each option as first given */
} ctl;

/* Out of memory in a CLI: say so and stop.  A decision in progress is one
 * transaction that SQLite rolls back when the process ends. */
static void oom(void)
{
    fputs("rekeyctl: out of memory\n", stderr);
    exit(RKCTL_EXIT_FAIL);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom();
    return q;
}

static void ctl_free(ctl *c)
{
    for (size_t i = 0; i < c->n_vars; i++)
        free((char *)c->var_names[i]);
    free(c->var_names);
    free(c->var_values);
    free(c->pos);
    if (c->have_cfg)
        rk_config_free(&c->cfg);
    c->have_cfg = 0;
}

static ctl_cmd cmd_lookup(const char *s)
{
    for (int i = CMD_STATUS; i <= CMD_LAST_TOP; i++)
        if (strcmp(s, cmd_names[i]) == 0)
            return (ctl_cmd)i;
    return CMD_NONE;
}

static ctl_cmd review_lookup(const char *s)
{
    for (int i = CMD_RV_LIST; i < CMD_COUNT; i++)
        if (strcmp(s, cmd_names[i] + 7) == 0) /* after "review " */
            return (ctl_cmd)i;
    return CMD_NONE;
}

static int usage_error(ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "rekeyctl: <message>" and a hint where to find the usage;
 * returns the usage exit code. */
static int usage_error(ctl *c, const char *fmt, ...)
{
    va_list ap;
    fputs("rekeyctl: ", c->err);
    va_start(ap, fmt);
    vfprintf(c->err, fmt, ap);
    va_end(ap);
    /* while parsing, the command may be typed but not yet looked up */
    ctl_cmd cmd = c->cmd != CMD_NONE ? c->cmd : c->cmd_word ? cmd_lookup(c->cmd_word) : CMD_NONE;
    if (cmd != CMD_NONE && cmd != CMD_HELP)
        fprintf(c->err, "\nsee `rekeyctl help %s`\n", help_topic(cmd));
    else
        fputs("\nsee `rekeyctl --help`\n", c->err);
    return RKCTL_EXIT_USAGE;
}

/* English state name for an English or German one, or NULL. */
static const char *state_lookup(const char *s)
{
    for (size_t i = 0; rk_states[i]; i++)
        if (strcmp(s, rk_states[i]) == 0 || strcmp(s, rk_state_german(rk_states[i])) == 0)
            return rk_states[i];
    return NULL;
}

/*
 * A point in time as the operator writes it, into the store's form
 * (ISO 8601 UTC, "2026-11-26T15:42:01.000Z"): an age ("7d", "36h": that
 * long before now), a local date or date and time (YYYY-MM-DD,
 * YYYY-MM-DDTHH:MM[:SS], "YYYY-MM-DD HH:MM", TT.MM.JJJJ [HH:MM]), or
 * the same ISO forms with a trailing Z for UTC.  Impossible dates
 * (31.02.) are refused rather than rolled over.  0 or RK_E_FORMAT.
 */
static int parse_when(const char *s, int64_t now_ms, char *iso, size_t isolen)
{
    int64_t age;
    if (rk_duration_parse(s, &age) == 0) {
        rk_time_iso(now_ms - age, iso, isolen);
        return 0;
    }
    static const struct { const char *fmt; int iso; } forms[] = {
        {"%Y-%m-%dT%H:%M:%S", 1}, {"%Y-%m-%dT%H:%M", 1}, {"%Y-%m-%d %H:%M:%S", 1},
        {"%Y-%m-%d %H:%M", 1},    {"%Y-%m-%d", 1},       {"%d.%m.%Y %H:%M:%S", 0},
        {"%d.%m.%Y %H:%M", 0},    {"%d.%m.%Y", 0},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(s, forms[i].fmt, &tm);
        if (!end)
            continue;
        int utc = 0;
        if (forms[i].iso && end[0] == 'Z' && end[1] == '\0')
            utc = 1;
        else if (*end)
            continue;
        struct tm want = tm;
        time_t t;
        if (utc) {
            t = timegm(&tm);
        } else {
            tm.tm_isdst = -1;
            t = mktime(&tm);
        }
        if (t == (time_t)-1 || tm.tm_mday != want.tm_mday || tm.tm_mon != want.tm_mon)
            return RK_E_FORMAT;
        rk_time_iso((int64_t)t * 1000, iso, isolen);
        return 0;
    }
    return RK_E_FORMAT;
}

/* Who acts by default: the name of the effective user, else "uid:N". */
static void os_user(char *out, size_t outlen)
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw && pw->pw_name && *pw->pw_name)
        snprintf(out, outlen, "%s", pw->pw_name);
    else
        snprintf(out, outlen, "uid:%lu", (unsigned long)geteuid());
}

/* Takes the value of one option; checks what can be checked without
 * knowing the command.  Returns 0 or the usage exit code. */
static int opt_apply(ctl *c, int o, const char *spelled, const char *val)
{
    if (!c->opt_seen[o])
        c->opt_seen[o] = spelled;
    switch (o) {
    case O_HELP: c->help = 1; break;
    case O_JSON: c->json = 1; c->format = FMT_JSON; break;
    case O_DB:
        if (!*val)
            return usage_error(c, "--db needs a path, got an empty string");
        c->db = val;
        c->db_default = 0;
        break;
    case O_CONFIG:
        if (!*val)
            return usage_error(c, "--config needs a file, got an empty string");
        c->config = val;
        break;
    case O_JOBS:
        if (!*val)
            return usage_error(c, "--jobs needs a folder, got an empty string");
        c->jobs_dir = val;
        break;
    case O_AS: {
        size_t n = strlen(val);
        int ok = n > 0 && n <= RKCTL_MAX_ACTOR;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)val[i] >= 0x20 && val[i] != 0x7f;
        if (!ok)
            return usage_error(c, "--as needs a name of 1 to %d printable characters",
                               RKCTL_MAX_ACTOR);
        c->actor = val;
        break;
    }
    case O_STATE:
        c->state = state_lookup(val);
        if (!c->state)
            return usage_error(c,
                               "unknown state '%s' for --state; one of: received, validated, "
                               "mapped, ready, delivering, delivered, review, retry_wait, "
                               "failed, rejected",
                               val);
        break;
    case O_JOB: c->job = val; break;
    case O_LIMIT: {
        int64_t n;
        if (rk_parse_int64(val, &n) != 0 || n < 0 || n > 100000000)
            return usage_error(c, "--limit needs a whole number >= 0 (0 = all), got '%s'",
                               val);
        c->limit = (size_t)n;
        break;
    }
    case O_BEFORE:
        if (rk_parse_int64(val, &c->before_id) != 0 || c->before_id <= 0)
            return usage_error(c, "--before needs a job id (a whole number > 0), got '%s'", val);
        break;
    case O_SOURCE: c->source = val; break;
    case O_SOURCE_REF: c->source_ref = val; break;
    case O_REF: c->ref = val; break;
    case O_CODE: c->code = val; break;
    case O_SINCE:
    case O_UNTIL: {
        char *dst = o == O_SINCE ? c->since : c->until;
        if (parse_when(val, rk_now_ms(), dst, sizeof c->since) != 0)
            return usage_error(c,
                               "--%s needs a time: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z], "
                               "TT.MM.JJJJ or an age like 7d; got '%s'",
                               opt_defs[o].name, val);
        break;
    }
    case O_OVERDUE: c->overdue = 1; break;
    case O_REASON: c->reason = val; break;
    case O_ALL_FAILED: c->all_failed = 1; break;
    case O_NEW_KEY: c->new_key = 1; break;
    case O_YES: c->yes = 1; break;
    case O_OLDER_THAN:
        if (rk_duration_parse(val, &c->older_than_ms) != 0)
            return usage_error(c, "--older-than needs an age like 90d, 12w or 36h (units s, m, "
                                  "h, d, w), got '%s'", val);
        c->older_than = val;
        break;
    case O_DRY_RUN: c->dry_run = 1; break;
    case O_FORMAT:
        if (strcmp(val, "csv") == 0)
            c->format = FMT_CSV;
        else if (strcmp(val, "json") == 0)
            c->format = FMT_JSON;
        else
            return usage_error(c, "--format is csv or json, got '%s'", val);
        break;
    case O_VAR: {
        const char *eq = strchr(val, '=');
        if (!eq || eq == val)
            return usage_error(c, "--var needs NAME=VALUE, got '%s'", val);
        char *name = rk_strndup(val, (size_t)(eq - val));
        if (!name)
            oom();
        c->var_names = xrealloc(c->var_names, (c->n_vars + 1) * sizeof *c->var_names);
        c->var_values = xrealloc(c->var_values, (c->n_vars + 1) * sizeof *c->var_values);
        c->var_names[c->n_vars] = name;
        c->var_values[c->n_vars] = eq + 1;
        c->n_vars++;
        break;
    }
    case O_TODAY: {
        int y, m, d;
        char tail;
        if (sscanf(val, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || strlen(val) != 10 ||
            m < 1 || m > 12 || d < 1 || d > 31)
            return usage_error(c, "--today needs a date YYYY-MM-DD, got '%s'", val);
        c->today = val;
        break;
    }
    }
    return 0;
}

/*
 * Parses argv by hand: long options (--name VALUE or --name=VALUE) and -h
 * may stand anywhere, "--" ends the options, the first other word is the
 * command (for review, the second is its subcommand) and the rest are its
 * arguments.  getopt_long would need the command before it knows which
 * options are valid; checking them against the command afterwards gives
 * better messages ("--state does not apply to show").  Returns 0, or the
 * usage exit code after printing why.
 */
static int ctl_parse(ctl *c, int argc, char **argv)
{
    int only_pos = 0;
    c->pos = xrealloc(NULL, (size_t)(argc > 0 ? argc : 1) * sizeof *c->pos);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (!c->cmd_word)
                c->cmd_word = a;
            else
                c->pos[c->n_pos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0) {
            opt_apply(c, O_HELP, a, NULL);
            continue;
        }
        if (a[1] != '-')
            return usage_error(c, "unknown option '%s'", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int o = -1;
        for (int k = 0; k < O_COUNT; k++)
            if (strlen(opt_defs[k].name) == nlen && strncmp(opt_defs[k].name, name, nlen) == 0)
                o = k;
        if (o < 0)
            return usage_error(c, "unknown option '%.*s'", (int)(nlen + 2), a);
        const char *val = NULL;
        if (opt_defs[o].has_arg) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return usage_error(c, "option --%s needs a value", opt_defs[o].name);
        } else if (eq) {
            return usage_error(c, "option --%s takes no value", opt_defs[o].name);
        }
        int rc = opt_apply(c, o, a, val);
        if (rc)
            return rc;
    }
    if (c->cmd_word) {
        c->cmd = cmd_lookup(c->cmd_word);
        if (c->cmd == CMD_NONE)
            return usage_error(c, "unknown command '%s'; commands: status, list, show, events, "
                                  "review, retry, replay, purge, resume, map, help",
                               c->cmd_word);
    }
    if (c->cmd == CMD_REVIEW) {
        if (c->n_pos == 0) {
            if (c->help)
                return 0;
            return usage_error(c, "review needs what to do: list, show, set, approve or reject");
        }
        ctl_cmd sub = review_lookup(c->pos[0]);
        if (sub == CMD_NONE)
            return usage_error(c, "unknown review command '%s'; one of: list, show, set, "
                                  "approve, reject",
                               c->pos[0]);
        c->cmd = sub;
        memmove(c->pos, c->pos + 1, (c->n_pos - 1) * sizeof *c->pos);
        c->n_pos--;
    }
    if (c->help)
        return 0; /* --help wins over everything that follows */
    for (int k = 0; k < O_COUNT; k++)
        if (c->opt_seen[k] && c->cmd != CMD_NONE && !(opt_defs[k].cmds & CMD_BIT(c->cmd)))
            return usage_error(c, "option --%s does not apply to `rekeyctl %s`",
                               opt_defs[k].name, cmd_names[c->cmd]);
    return 0;
}

/* ---- text output helpers ----------------------------------------------- */

/* Width of a UTF-8 string in code points (good enough for Latin scripts;
 * combining marks and wide characters are rare in these fields). */
static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/*
 * A copy of s that is safe to print on a terminal: C0 controls, DEL and
 * the C1 controls (U+0080..U+009F) become visible escapes (\n, \t, \x1b,
 * \u0085), so a value in a citizen's document can neither break a table
 * nor send escape sequences to the operator's terminal.  NULL gives NULL.
 * The caller frees the result.
 */
static char *safe_text(const char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s);
    rk_buf b;
    rk_buf_init(&b, 6 * len + 16); /* the longest escape is 6 bytes per input byte */
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n')
            rc = rk_buf_append(&b, "\\n", 2);
        else if (ch == '\t')
            rc = rk_buf_append(&b, "\\t", 2);
        else if (ch == '\r')
            rc = rk_buf_append(&b, "\\r", 2);
        else if (ch < 0x20 || ch == 0x7f)
            rc = rk_buf_appendf(&b, "\\x%02x", ch);
        else if (ch == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
                 (unsigned char)s[i + 1] <= 0x9F) {
            rc = rk_buf_appendf(&b, "\\u%04x", (unsigned char)s[i + 1]);
            i++;
        } else
            rc = rk_buf_append(&b, &s[i], 1);
    }
    if (rc == 0 && b.len == 0)
        rc = rk_buf_append(&b, "", 0);
    char *out = rc == 0 ? rk_buf_take(&b) : NULL;
    rk_buf_free(&b);
    if (!out)
        oom();
    return out;
}

/* An aligned table: cells are copied through safe_text; NULL cells print
 * as empty.  Columns are separated by two spaces; the last column is not
 * padded, so long XPaths do not drag trailing blanks. */
#define TBL_MAX_COLS 8
typedef struct tbl {
    size_t ncols;
    int right[TBL_MAX_COLS]; /* 1 = right-aligned (numbers) */
    char **cells;            /* nrows * ncols, row-major, owned */
    size_t nrows;
} tbl;

static void tbl_init(tbl *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols < TBL_MAX_COLS ? ncols : TBL_MAX_COLS;
}

static void tbl_row(tbl *t, const char *const *cells)
{
    t->cells = xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof *t->cells);
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = safe_text(cells[i] ? cells[i] : "");
    t->nrows++;
}

static void tbl_print(const tbl *t, FILE *out, const char *indent)
{
    size_t w[TBL_MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t n = text_width(t->cells[r * t->ncols + i]);
            if (n > w[i])
                w[i] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        /* trailing empty cells are not printed, so lines carry no blanks */
        size_t last = t->ncols;
        while (last > 1 && !t->right[last - 1] && t->cells[r * t->ncols + last - 1][0] == '\0')
            last--;
        fputs(indent, out);
        for (size_t i = 0; i < last; i++) {
            const char *cell = t->cells[r * t->ncols + i];
            size_t pad = w[i] - text_width(cell);
            if (i > 0)
                fputs("  ", out);
            if (t->right[i])
                fprintf(out, "%*s%s", (int)pad, "", cell);
            else if (i + 1 < last)
                fprintf(out, "%s%*s", cell, (int)pad, "");
            else
                fputs(cell, out);
        }
        fputc('\n', out);
    }
}

static void tbl_free(tbl *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

/* Seconds since the epoch as local "TT.MM.JJJJ HH:MM:SS". */
static void fmt_time(time_t t, char *out, size_t outlen)
{
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(out, outlen, "%d.%m.%Y %H:%M:%S", &tm) == 0)
        snprintf(out, outlen, "%lld", (long long)t);
}

/*
 * The store's ISO 8601 UTC time ("2025-11-26T15:42:01.123Z") as local
 * "TT.MM.JJJJ HH:MM:SS".  A string of another shape is copied unchanged
 * rather than guessed at; NULL gives "-".
 */
static void fmt_iso(const char *iso, char *out, size_t outlen)
{
    if (!iso || !*iso) {
        snprintf(out, outlen, "-");
        return;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end && *end == '.') {
        end++;
        while (*end >= '0' && *end <= '9')
            end++;
    }
    if (!end || !(*end == '\0' || (end[0] == 'Z' && end[1] == '\0'))) {
        snprintf(out, outlen, "%s", iso);
        return;
    }
    fmt_time(timegm(&tm), out, outlen);
}

/* Milliseconds since the epoch as local "TT.MM.JJJJ HH:MM:SS". */
static void fmt_ms(int64_t ms, char *out, size_t outlen)
{
    fmt_time((time_t)(ms / 1000), out, outlen);
}

/* The string member key of o, or NULL (also for JSON null). */
static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Any scalar member as text into buf ("" for null or missing). */
static const char *jtext(const json_t *o, const char *key, char *buf, size_t buflen)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, buflen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, buflen, "%g", json_real_value(v));
    else if (json_is_true(v))
        snprintf(buf, buflen, "ja");
    else if (json_is_false(v))
        snprintf(buf, buflen, "nein");
    else
        buf[0] = '\0';
    return buf;
}

/* A value of a document or record for people: absent and empty differ. */
static const char *value_text(const char *v)
{
    if (!v)
        return "(fehlt)";
    if (!*v)
        return "(leer)";
    return v;
}

static const char *severity_german(const char *sev)
{
    if (sev && strcmp(sev, "block") == 0)
        return "blockierend";
    if (sev && strcmp(sev, "warn") == 0)
        return "Hinweis";
    return sev ? sev : "";
}

/* Prints v with two-space indentation and a newline; 0 or the failure
 * exit code. */
static int print_json(ctl *c, const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2));
    if (!s) {
        fputs("rekeyctl: cannot encode the result as JSON\n", c->err);
        return RKCTL_EXIT_FAIL;
    }
    fputs(s, c->out);
    fputc('\n', c->out);
    free(s);
    return RKCTL_EXIT_OK;
}

/* The fields table of show and map: name, document value, mapped value,
 * the job's XPath and the concrete node. */
static void print_fields(ctl *c, const json_t *fields)
{
    size_t n = json_array_size(fields);
    fprintf(c->out, "\nFelder (%zu)\n", n);
    if (n == 0) {
        fputs("  keine\n", c->out);
        return;
    }
    tbl t;
    tbl_init(&t, 5);
    tbl_row(&t, (const char *const[]){"Feld", "Wert im Antrag", "übernommener Wert", "XPath",
                                      "Knoten"});
    size_t i;
    const json_t *f;
    json_array_foreach(fields, i, f) {
        tbl_row(&t, (const char *const[]){jstr(f, "name"), value_text(jstr(f, "source")),
                                          value_text(jstr(f, "value")), jstr(f, "xpath"),
                                          jstr(f, "node")});
    }
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);
}

/* The integer member key of o (0 when missing or not an integer). */
static int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* "erledigt (anna, 26.11.2026 16:20:00)" for a resolved anomaly, "offen"
 * for an open one, into buf. */
static const char *resolved_text(const json_t *a, char *buf, size_t n)
{
    const char *at = jstr(a, "resolved_at");
    if (!at) {
        snprintf(buf, n, "offen");
        return buf;
    }
    char when[64];
    fmt_iso(at, when, sizeof when);
    const char *by = jstr(a, "resolved_by");
    snprintf(buf, n, "erledigt (%s, %s)", by ? by : "?", when);
    return buf;
}

/* The anomalies table of show, review show and map.  A column "Stand"
 * (offen / erledigt by whom and when) appears when any anomaly was
 * resolved; open_only leaves the resolved ones out (what still holds a
 * submission). */
static void print_anomalies_to(FILE *out, const json_t *anomalies, int open_only)
{
    size_t n = 0, n_open = 0, i;
    const json_t *a;
    json_array_foreach(anomalies, i, a) {
        n++;
        n_open += jstr(a, "resolved_at") == NULL;
    }
    size_t shown = open_only ? n_open : n;
    if (!open_only && n_open < n)
        fprintf(out, "\nAuffälligkeiten (%zu, davon %zu offen)\n", n, n_open);
    else
        fprintf(out, "\n%s (%zu)\n", open_only ? "Offene Auffälligkeiten" : "Auffälligkeiten",
                shown);
    if (shown == 0) {
        fputs("  keine\n", out);
        return;
    }
    int with_state = !open_only && n_open < n;
    tbl t;
    tbl_init(&t, with_state ? 5 : 4);
    tbl_row(&t, (const char *const[]){"Art", "Code", "Feld", "Meldung", "Stand"});
    json_array_foreach(anomalies, i, a) {
        if (open_only && jstr(a, "resolved_at"))
            continue;
        const char *field = jstr(a, "field");
        const char *msg = jstr(a, "message");
        char st[256];
        tbl_row(&t, (const char *const[]){severity_german(jstr(a, "severity")), jstr(a, "code"),
                                          field ? field : "-",
                                          msg && *msg ? msg : "(gelöscht)",
                                          resolved_text(a, st, sizeof st)});
    }
    tbl_print(&t, out, "  ");
    tbl_free(&t);
}

static void print_anomalies(ctl *c, const json_t *anomalies)
{
    print_anomalies_to(c->out, anomalies, 0);
}

/* ---- opening the store ------------------------------------------------- */

/* Loads the rekeyd configuration named by --config, once: it gives the
 * database (unless --db overrides it), the job folder and [vars]. */
static int load_config(ctl *c)
{
    if (!c->config || c->have_cfg)
        return 0;
    char err[1024] = "";
    memset(&c->cfg, 0, sizeof c->cfg);
    if (rk_config_load(c->config, &c->cfg, err, sizeof err) != 0) {
        fprintf(c->err, "rekeyctl: %s\n", *err ? err : "the configuration cannot be read");
        return RKCTL_EXIT_FAIL;
    }
    c->have_cfg = 1;
    if (!c->opt_seen[O_DB]) {
        c->db = c->cfg.database;
        c->db_default = 0;
    }
    return 0;
}

/* Opens the store: read-only for the commands that look, read-write for
 * those that decide.  Those open only an existing database, so a typo in
 * --db cannot create an empty queue.  Prints why not and returns the
 * failure exit code when it cannot. */
static int open_store_mode(ctl *c, int write, rk_store **s)
{
    int rc = load_config(c);
    if (rc)
        return rc;
    char err[512] = "";
    struct stat st;
    if (write && stat(c->db, &st) != 0) {
        fprintf(c->err, "rekeyctl: no rekey database at %s (%s)\n", c->db, strerror(errno));
        rc = RK_E_NOTFOUND;
    } else {
        rc = rk_store_open(c->db, write ? 0 : RK_STORE_READONLY, s, err, sizeof err);
        if (rc)
            fprintf(c->err, "rekeyctl: %s\n", *err ? err : rk_strerror(rc));
    }
    if (rc) {
        if (c->db_default)
            fputs("rekeyctl: name the database with --db PATH, --config FILE or the REKEY_DB "
                  "variable\n",
                  c->err);
        return RKCTL_EXIT_FAIL;
    }
    return 0;
}

static int open_store(ctl *c, rk_store **s)
{
    return open_store_mode(c, 0, s);
}

static int read_failed(ctl *c, rk_store *s)
{
    fprintf(c->err, "rekeyctl: cannot read %s: %s\n", c->db, rk_store_errmsg(s));
    return RKCTL_EXIT_FAIL;
}

/*
 * Appends to out (a JSON array) the rows of rk_store_find_json(f) read
 * page by page with before_id, so a large queue is never read by one
 * statement: at most want rows (0 = all), leaving out overdue rows when
 * skip_overdue.  f->before_id and f->limit are used as cursor.  0, or -1
 * when the store cannot be read.  Returns in *more whether rows remain.
 */
static int collect_rows(rk_store *s, rk_list_filter *f, size_t want, int skip_overdue,
                        json_t *out, int *more)
{
    if (more)
        *more = 0;
    size_t got = 0;
    for (;;) {
        f->limit = RKCTL_PAGE;
        json_t *page = rk_store_find_json(s, f);
        if (!page)
            return -1;
        size_t n = json_array_size(page), i;
        json_t *o;
        json_array_foreach(page, i, o) {
            f->before_id = jint(o, "id");
            if (skip_overdue && json_is_true(json_object_get(o, "overdue")))
                continue;
            if (want && got == want) {
                if (more)
                    *more = 1;
                json_decref(page);
                return 0;
            }
            json_array_append(out, o);
            got++;
        }
        json_decref(page);
        if (n < RKCTL_PAGE)
            return 0;
    }
}

/* ---- status, list, show ------------------------------------------------ */

/* "12, 15, 17" for the ids in rows, which holds ids or objects with an
 * "id" (at most max, then "und N weitere"). */
static void id_list(const json_t *rows, size_t max, char *buf, size_t n)
{
    rk_buf b;
    rk_buf_init(&b, n > 0 ? n - 1 : 0);
    size_t i, total = json_array_size(rows);
    const json_t *o;
    json_array_foreach(rows, i, o) {
        if (i == max) {
            rk_buf_appendf(&b, " und %zu weitere", total - max);
            break;
        }
        int64_t id = json_is_integer(o) ? (int64_t)json_integer_value(o) : jint(o, "id");
        rk_buf_appendf(&b, "%s%lld", i ? ", " : "", (long long)id);
    }
    snprintf(buf, n, "%s", b.data ? b.data : "");
    rk_buf_free(&b);
}

/* status: overdue jobs first, counts per state (all ten, lifecycle order)
 * and per job. */
static int cmd_status(ctl *c)
{
    rk_store *s;
    if (open_store(c, &s))
        return RKCTL_EXIT_FAIL;
    json_t *st = rk_store_status_json(s);
    json_t *late = json_array();
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.overdue = 1;
    if (!st || collect_rows(s, &f, 0, 0, late, NULL) != 0) {
        int rc = read_failed(c, s);
        rk_store_close(s);
        json_decref(st);
        json_decref(late);
        return rc;
    }
    rk_store_close(s);
    if (c->json) {
        json_t *ids = json_array();
        size_t i;
        const json_t *o;
        json_array_foreach(late, i, o) json_array_append_new(ids, json_integer(jint(o, "id")));
        json_object_set_new(st, "overdue", ids);
        json_decref(late);
        int rc = print_json(c, st);
        json_decref(st);
        return rc;
    }
    const json_t *by_state = json_object_get(st, "by_state");
    const json_t *by_job = json_object_get(st, "by_job");
    char num[32];
    if (json_array_size(late) > 0) {
        char ids[512];
        id_list(late, 20, ids, sizeof ids);
        fprintf(c->out, "Frist überschritten: %zu\n  Anträge %s (rekeyctl review list --overdue)\n\n",
                json_array_size(late), ids);
    }
    json_decref(late);
    const json_t *paused = json_object_get(st, "paused");
    if (json_array_size(paused) > 0) {
        fprintf(c->out, "Angehaltene Anbindungen: %zu\n", json_array_size(paused));
        size_t i;
        const json_t *p;
        json_array_foreach(paused, i, p) {
            char *why = safe_text(jstr(p, "reason") ? jstr(p, "reason") : "");
            char *job = safe_text(jstr(p, "job") ? jstr(p, "job") : "?");
            char *conn = safe_text(jstr(p, "connector") ? jstr(p, "connector") : "?");
            fprintf(c->out, "  %s / %s: %s (rekeyctl resume %s %s)\n", job, conn, why, job, conn);
            free(why);
            free(job);
            free(conn);
        }
        fputc('\n', c->out);
    }
    /* networked sources: their last poll, last error and next poll */
    const json_t *sources = json_object_get(st, "sources");
    if (json_array_size(sources) > 0) {
        fputs("Quellen\n", c->out);
        tbl ts;
        tbl_init(&ts, 5);
        tbl_row(&ts, (const char *const[]){"Quelle", "Zustand", "letzter Abruf",
                                           "nächster Abruf", "letzter Fehler"});
        size_t i;
        const json_t *q;
        json_array_foreach(sources, i, q) {
            char last[64], next[64];
            fmt_iso(jstr(q, "last_poll_at"), last, sizeof last);
            fmt_iso(jstr(q, "next_poll_at"), next, sizeof next);
            json_int_t ok = json_integer_value(json_object_get(q, "ok"));
            char *src = safe_text(jstr(q, "source") ? jstr(q, "source") : "?");
            char *err = safe_text(jstr(q, "last_error") ? jstr(q, "last_error") : "-");
            tbl_row(&ts, (const char *const[]){src, ok ? "ok" : "gestört", last, next, err});
            free(src);
            free(err);
        }
        tbl_print(&ts, c->out, "  ");
        tbl_free(&ts);
        fputc('\n', c->out);
    }
    fprintf(c->out, "Anträge in %s: %s\n\n", c->db, jtext(st, "total", num, sizeof num));

    tbl t;
    tbl_init(&t, 3);
    t.right[2] = 1;
    tbl_row(&t, (const char *const[]){"Status", "state", "Anzahl"});
    for (size_t i = 0; rk_states[i]; i++)
        tbl_row(&t, (const char *const[]){rk_state_german(rk_states[i]), rk_states[i],
                                          jtext(by_state, rk_states[i], num, sizeof num)});
    tbl_print(&t, c->out, "");
    tbl_free(&t);

    if (json_object_size(by_job) > 0) {
        fputs("\nNach Verfahren\n", c->out);
        tbl_init(&t, 4);
        t.right[3] = 1;
        tbl_row(&t, (const char *const[]){"Verfahren", "Status", "state", "Anzahl"});
        const char *job;
        const json_t *counts;
        json_object_foreach((json_t *)by_job, job, counts) {
            int first = 1;
            for (size_t i = 0; rk_states[i]; i++) {
                const json_t *n = json_object_get(counts, rk_states[i]);
                if (!n || json_integer_value(n) == 0)
                    continue;
                tbl_row(&t, (const char *const[]){first ? job : "", rk_state_german(rk_states[i]),
                                                  rk_states[i],
                                                  jtext(counts, rk_states[i], num, sizeof num)});
                first = 0;
            }
        }
        tbl_print(&t, c->out, "");
        tbl_free(&t);
    }
    json_decref(st);
    return RKCTL_EXIT_OK;
}

/* The anomaly codes of a list row ("MINDESTALTER, DUPLIKAT"), or "-". */
static const char *codes_text(const json_t *o, char *buf, size_t n)
{
    const char *codes = jstr(o, "codes");
    if (!codes || !*codes)
        return "-";
    snprintf(buf, n, "%s", codes);
    for (char *p = buf; *p; p++)
        if (*p == ',')
            *p = ' ';
    return buf;
}

/* The filters of `list` as the store takes them. */
static void list_filter(const ctl *c, rk_list_filter *f)
{
    memset(f, 0, sizeof *f);
    f->state = c->state;
    f->job = c->job;
    f->source = c->source;
    f->source_ref = c->source_ref;
    f->reference = c->ref;
    f->code = c->code;
    f->since = c->since[0] ? c->since : NULL;
    f->until = c->until[0] ? c->until : NULL;
    f->overdue = c->overdue;
    f->before_id = c->before_id;
}

/* list: jobs, newest first, filtered; one page of --limit rows, read with
 * one statement (one row more than shown tells whether there is a next
 * page). */
static int cmd_list(ctl *c)
{
    rk_store *s;
    if (open_store(c, &s))
        return RKCTL_EXIT_FAIL;
    rk_list_filter f;
    list_filter(c, &f);
    f.limit = c->limit ? c->limit + 1 : 0;
    json_t *arr = rk_store_find_json(s, &f);
    if (!arr) {
        int rc = read_failed(c, s);
        rk_store_close(s);
        return rc;
    }
    rk_store_close(s);
    int more = c->limit && json_array_size(arr) > c->limit;
    if (more)
        json_array_remove(arr, c->limit);
    if (c->json) {
        int rc = print_json(c, arr);
        json_decref(arr);
        return rc;
    }
    size_t n = json_array_size(arr);
    if (n == 0) {
        int only_state_job = !c->source && !c->source_ref && !c->ref && !c->code &&
                             !c->since[0] && !c->until[0] && !c->overdue && !c->before_id;
        if (!only_state_job || (!c->state && !c->job)) {
            fputs(only_state_job ? "Keine Anträge.\n" : "Keine Anträge, auf die die Filter passen.\n",
                  c->out);
        } else {
            fputs("Keine Anträge", c->out);
            if (c->state)
                fprintf(c->out, " im Status „%s“", rk_state_german(c->state));
            if (c->job) {
                char *job = safe_text(c->job);
                fprintf(c->out, " im Verfahren %s", job);
                free(job);
            }
            fputs(".\n", c->out);
        }
        json_decref(arr);
        return RKCTL_EXIT_OK;
    }
    int with_ref = 0;
    size_t i;
    const json_t *o;
    json_array_foreach(arr, i, o) with_ref |= jstr(o, "reference") != NULL;
    tbl t;
    tbl_init(&t, with_ref ? 8 : 7);
    t.right[0] = 1;
    t.right[with_ref ? 6 : 5] = 1;
    if (with_ref)
        tbl_row(&t, (const char *const[]){"ID", "Verfahren", "Referenz", "Status", "Eingang",
                                          "Letzte Änderung", "Versuche", "Auffälligkeiten"});
    else
        tbl_row(&t, (const char *const[]){"ID", "Verfahren", "Status", "Eingang",
                                          "Letzte Änderung", "Versuche", "Auffälligkeiten"});
    json_array_foreach(arr, i, o) {
        char id[32], att[32], an[256], recv[64], upd[64], st[128];
        const char *job = jstr(o, "job");
        fmt_iso(jstr(o, "received_at"), recv, sizeof recv);
        fmt_iso(jstr(o, "updated_at"), upd, sizeof upd);
        snprintf(st, sizeof st, "%s%s", rk_state_german(jstr(o, "state")),
                 json_is_true(json_object_get(o, "overdue")) ? ", Frist überschritten" : "");
        const char *ref = jstr(o, "reference");
        if (with_ref)
            tbl_row(&t, (const char *const[]){jtext(o, "id", id, sizeof id), job ? job : "-",
                                              ref ? ref : "-", st, recv, upd,
                                              jtext(o, "attempts", att, sizeof att),
                                              codes_text(o, an, sizeof an)});
        else
            tbl_row(&t, (const char *const[]){jtext(o, "id", id, sizeof id), job ? job : "-", st,
                                              recv, upd, jtext(o, "attempts", att, sizeof att),
                                              codes_text(o, an, sizeof an)});
    }
    tbl_print(&t, c->out, "");
    tbl_free(&t);
    if (more)
        fprintf(c->out, "\n%zu Anträge gezeigt; die nächsten mit --before %lld (--limit 0 zeigt "
                        "alle).\n",
                n, (long long)jint(json_array_get(arr, n - 1), "id"));
    json_decref(arr);
    return RKCTL_EXIT_OK;
}

/* 1 when a show_json object is in review or failed past its deadline. */
static int show_overdue(const json_t *o)
{
    const char *deadline = jstr(o, "deadline_at"), *state = jstr(o, "state");
    if (!deadline || !state ||
        (strcmp(state, RK_ST_REVIEW) != 0 && strcmp(state, RK_ST_FAILED) != 0))
        return 0;
    char now[40];
    rk_time_iso(rk_now_ms(), now, sizeof now);
    return strcmp(deadline, now) < 0;
}

/* "29.11.2026 16:13:26" or "29.11.2026 16:13:26 – Frist überschritten". */
static const char *deadline_text(const json_t *o, char *buf, size_t n)
{
    char when[64];
    fmt_iso(jstr(o, "deadline_at"), when, sizeof when);
    snprintf(buf, n, "%s%s", when, show_overdue(o) ? " – Frist überschritten" : "");
    return buf;
}

/* Parses the job id argument of show, review, retry and replay; 0 or the
 * usage exit code. */
static int job_id_arg(ctl *c, size_t want_args, const char *shape, int64_t *id)
{
    if (c->n_pos == 0)
        return usage_error(c, "%s needs the id of a job (see `rekeyctl list`): rekeyctl %s",
                           cmd_names[c->cmd], shape);
    if (c->n_pos > want_args)
        return usage_error(c, "%s takes %s, got also '%s'", cmd_names[c->cmd],
                           want_args == 1 ? "one id" : "these arguments: ID FIELD VALUE",
                           c->pos[want_args]);
    if (rk_parse_int64(c->pos[0], id) != 0 || *id <= 0)
        return usage_error(c, "%s needs a numeric job id as printed by `rekeyctl list`, got '%s'",
                           cmd_names[c->cmd], c->pos[0]);
    return 0;
}

/* Reads one job for show and review show; prints why not. */
static json_t *load_show(ctl *c, int64_t id)
{
    rk_store *s;
    if (open_store(c, &s))
        return NULL;
    json_t *o = rk_store_show_json(s, id);
    rk_store_close(s);
    if (!o) {
        char abs[PATH_MAX];
        const char *where = realpath(c->db, abs) ? abs : c->db;
        fprintf(c->err, "rekeyctl: no job with id %lld in %s; see `rekeyctl list`\n",
                (long long)id, where);
    }
    return o;
}

/* The corrections table (Feld, alter Wert, neuer Wert, durch, Zeitpunkt). */
static void print_corrections(ctl *c, const json_t *corr)
{
    size_t n = json_array_size(corr), i;
    if (n == 0)
        return;
    fprintf(c->out, "\nKorrekturen (%zu)\n", n);
    tbl t;
    tbl_init(&t, 5);
    tbl_row(&t, (const char *const[]){"Feld", "alter Wert", "neuer Wert", "durch", "Zeitpunkt"});
    const json_t *k;
    json_array_foreach(corr, i, k) {
        char when[64];
        fmt_iso(jstr(k, "at"), when, sizeof when);
        tbl_row(&t, (const char *const[]){jstr(k, "field"), value_text(jstr(k, "old_value")),
                                          value_text(jstr(k, "new_value")), jstr(k, "actor"),
                                          when});
    }
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);
}

/* The German word for a delivery's state (the row in deliveries). */
static const char *delivery_german(const char *st)
{
    static const char *const words[][2] = {{"pending", "offen"},
                                           {"delivered", "übertragen"},
                                           {"refused", "abgewiesen"},
                                           {"failed", "fehlgeschlagen"}};
    for (size_t i = 0; st && i < sizeof words / sizeof words[0]; i++)
        if (strcmp(st, words[i][0]) == 0)
            return words[i][1];
    return st ? st : "";
}

/* show ID: everything the store knows about one job. */
static int cmd_show(ctl *c)
{
    int64_t id;
    int urc = job_id_arg(c, 1, "show ID", &id);
    if (urc)
        return urc;
    json_t *o = load_show(c, id);
    if (!o)
        return RKCTL_EXIT_FAIL;
    if (c->json) {
        int rc = print_json(c, o);
        json_decref(o);
        return rc;
    }

    char b1[64], b2[64], b3[64];
    const char *state = jstr(o, "state");
    fprintf(c->out, "Antrag %lld\n", (long long)id);
    tbl t;
    tbl_init(&t, 2);
    {
        const char *job = jstr(o, "job");
        char jobline[256];
        if (job)
            snprintf(jobline, sizeof jobline, "%s (Version %s)", job,
                     jtext(o, "job_version", b1, sizeof b1));
        else
            snprintf(jobline, sizeof jobline, "(noch keinem Verfahren zugeordnet)");
        tbl_row(&t, (const char *const[]){"Verfahren", jobline});
    }
    {
        char st[128];
        snprintf(st, sizeof st, "%s (%s)", rk_state_german(state), state ? state : "?");
        tbl_row(&t, (const char *const[]){"Status", st});
    }
    if (jstr(o, "reference"))
        tbl_row(&t, (const char *const[]){"Referenz", jstr(o, "reference")});
    fmt_iso(jstr(o, "received_at"), b1, sizeof b1);
    tbl_row(&t, (const char *const[]){"Eingegangen", b1});
    fmt_iso(jstr(o, "updated_at"), b2, sizeof b2);
    tbl_row(&t, (const char *const[]){"Letzte Änderung", b2});
    if (jstr(o, "deadline_at")) {
        char dl[128];
        tbl_row(&t, (const char *const[]){"Frist", deadline_text(o, dl, sizeof dl)});
    }
    tbl_row(&t, (const char *const[]){"Versuche", jtext(o, "attempts", b3, sizeof b3)});
    const json_t *next = json_object_get(o, "next_attempt_at");
    if (json_is_integer(next) && state && strcmp(state, RK_ST_RETRY_WAIT) == 0) {
        fmt_ms(json_integer_value(next), b3, sizeof b3);
        tbl_row(&t, (const char *const[]){"Nächster Versuch", b3});
    }
    if (jstr(o, "last_error"))
        tbl_row(&t, (const char *const[]){"Letzter Fehler", jstr(o, "last_error")});
    if (jstr(o, "target_id"))
        tbl_row(&t, (const char *const[]){"Kennung im Fachverfahren", jstr(o, "target_id")});
    if (jint(o, "replay_of")) {
        char rp[64];
        snprintf(rp, sizeof rp, "Antrag %lld", (long long)jint(o, "replay_of"));
        tbl_row(&t, (const char *const[]){"Wiederholung von", rp});
    }
    {
        char src[1024];
        snprintf(src, sizeof src, "%s, %s", jstr(o, "source") ? jstr(o, "source") : "?",
                 jstr(o, "source_ref") ? jstr(o, "source_ref") : "?");
        tbl_row(&t, (const char *const[]){"Quelle", src});
    }
    {
        char doc[1024], size[32];
        const char *ns = jstr(o, "root_ns"), *root = jstr(o, "root_name");
        const json_t *stored = json_object_get(o, "payload_stored");
        int kept = json_is_integer(stored) ? json_integer_value(stored) != 0 : 1;
        char rootbuf[512];
        if (root && ns && *ns)
            snprintf(rootbuf, sizeof rootbuf, "{%s}%s, ", ns, root);
        else if (root)
            snprintf(rootbuf, sizeof rootbuf, "%s, ", root);
        else
            rootbuf[0] = '\0';
        snprintf(doc, sizeof doc, "%s%s Bytes%s", rootbuf, jtext(o, "size", size, sizeof size),
                 kept ? "" : " (nach Aufbewahrungsfrist gelöscht)");
        tbl_row(&t, (const char *const[]){"Dokument", doc});
        tbl_row(&t, (const char *const[]){"SHA-256", jstr(o, "sha256")});
    }
    {
        char sub[128], sid[32];
        snprintf(sub, sizeof sub, "%s (uid %s)", jtext(o, "submission_id", sid, sizeof sid),
                 jstr(o, "uid") ? jstr(o, "uid") : "?");
        tbl_row(&t, (const char *const[]){"Einreichung", sub});
    }
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);

    print_anomalies(c, json_object_get(o, "anomalies"));
    print_fields(c, json_object_get(o, "fields"));
    print_corrections(c, json_object_get(o, "corrections"));

    const json_t *dls = json_object_get(o, "deliveries");
    size_t i;
    const json_t *e;
    if (json_array_size(dls) > 0) {
        fprintf(c->out, "\nÜbertragungen (%zu)\n", json_array_size(dls));
        tbl_init(&t, 5);
        tbl_row(&t, (const char *const[]){"Anbindung", "Stand", "Versuche",
                                          "Kennung im Fachverfahren", "Letzter Fehler"});
        json_array_foreach(dls, i, e) {
            char att[32];
            tbl_row(&t, (const char *const[]){jstr(e, "name"), delivery_german(jstr(e, "state")),
                                              jtext(e, "attempts", att, sizeof att),
                                              jstr(e, "target_id"), jstr(e, "last_error")});
        }
        tbl_print(&t, c->out, "  ");
        tbl_free(&t);
    }

    const json_t *events = json_object_get(o, "events");
    fprintf(c->out, "\nVerlauf (%zu)\n", json_array_size(events));
    tbl_init(&t, 5);
    tbl_row(&t, (const char *const[]){"Zeitpunkt", "von", "nach", "durch", "Grund"});
    json_array_foreach(events, i, e) {
        const char *from = jstr(e, "from_state");
        fmt_iso(jstr(e, "at"), b1, sizeof b1);
        tbl_row(&t, (const char *const[]){b1, from ? rk_state_german(from) : "-",
                                          rk_state_german(jstr(e, "to_state")), jstr(e, "actor"),
                                          jstr(e, "reason")});
    }
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);
    json_decref(o);
    return RKCTL_EXIT_OK;
}

/* ---- events: the audit trail ------------------------------------------- */

/* One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
 * line break, with quotes doubled; NULL is an empty field. */
static void csv_cell(FILE *out, const json_t *v)
{
    char num[32];
    const char *s = NULL;
    if (json_is_string(v)) {
        s = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = num;
    }
    if (!s)
        return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/*
 * events: the trail, oldest first, read RKCTL_EVENTS_PAGE events at a
 * time (after_id paging) and written as it is read, so an export of
 * millions of events needs the memory of one page.  CSV is the default
 * since the export goes to spreadsheets and archives.
 */
static int cmd_events(ctl *c)
{
    static const char *const cols[] = {"id", "job_id", "job", "at", "actor",
                                       "from_state", "to_state", "reason"};
    const size_t ncols = sizeof cols / sizeof cols[0];
    rk_store *s;
    if (open_store(c, &s))
        return RKCTL_EXIT_FAIL;
    if (c->format == FMT_CSV) {
        for (size_t k = 0; k < ncols; k++)
            fprintf(c->out, "%s%s", k ? "," : "", cols[k]);
        fputs("\r\n", c->out);
    } else {
        fputs("[", c->out);
    }
    int64_t after = 0;
    size_t total = 0;
    for (;;) {
        json_t *page = rk_store_events_json(s, c->since[0] ? c->since : NULL, c->job, after,
                                            RKCTL_EVENTS_PAGE);
        if (!page) {
            if (c->format == FMT_JSON)
                fputs("\n]\n", c->out);
            int rc = read_failed(c, s);
            rk_store_close(s);
            return rc;
        }
        size_t i, n = json_array_size(page);
        const json_t *e;
        json_array_foreach(page, i, e) {
            after = jint(e, "id");
            if (c->format == FMT_CSV) {
                for (size_t k = 0; k < ncols; k++) {
                    if (k)
                        fputc(',', c->out);
                    csv_cell(c->out, json_object_get(e, cols[k]));
                }
                fputs("\r\n", c->out);
            } else {
                char *line = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (!line)
                    oom();
                fprintf(c->out, "%s\n  %s", total ? "," : "", line);
                free(line);
            }
            total++;
        }
        json_decref(page);
        if (n < RKCTL_EVENTS_PAGE)
            break;
    }
    if (c->format == FMT_JSON)
        fputs(total ? "\n]\n" : "]\n", c->out);
    rk_store_close(s);
    return RKCTL_EXIT_OK;
}

/* ---- deciding: review and operations ----------------------------------- */

/* What a deciding command works with: the store (read-write), the job
 * definitions when it needs them, and who acts. */
typedef struct wctx {
    rk_store *store;
    rk_registry *reg;
    rk_review rv;
} wctx;

static void wctx_close(wctx *w)
{
    if (w->reg)
        rk_registry_free(w->reg);
    if (w->store)
        rk_store_close(w->store);
    memset(w, 0, sizeof *w);
}

/*
 * Opens the store read-write and, when a job folder is known (--jobs, or
 * the configuration's), loads the job definitions with the
 * configuration's [vars] and --var (which wins).  need_jobs: the command
 * cannot work without them (set and approve run the rules).  Job files
 * that do not load are reported as warnings; the others work.  Returns 0
 * or the exit code after saying why.
 */
static int wctx_open(ctl *c, wctx *w, int need_jobs)
{
    memset(w, 0, sizeof *w);
    int rc = load_config(c);
    if (rc)
        return rc;
    const char *dir = c->jobs_dir ? c->jobs_dir : c->have_cfg ? c->cfg.jobs_dir : NULL;
    if (!dir && need_jobs)
        return usage_error(c,
                           "%s needs the job definitions: give --config FILE (the rekeyd "
                           "configuration) or --jobs DIR",
                           cmd_names[c->cmd]);
    if (open_store_mode(c, 1, &w->store))
        return RKCTL_EXIT_FAIL;
    if (dir) {
        /* [vars] first, then --var, so a --var of the same name wins */
        size_t nc = c->have_cfg ? c->cfg.vars.n : 0, n = 0;
        const char **names = xrealloc(NULL, (nc + c->n_vars) * sizeof *names);
        const char **values = xrealloc(NULL, (nc + c->n_vars) * sizeof *values);
        for (size_t i = 0; i < nc + c->n_vars; i++) {
            const char *name = i < nc ? c->cfg.vars.names[i] : c->var_names[i - nc];
            const char *value = i < nc ? c->cfg.vars.values[i] : c->var_values[i - nc];
            size_t k = 0;
            while (k < n && strcmp(names[k], name) != 0)
                k++;
            names[k] = name;
            values[k] = value;
            if (k == n)
                n++;
        }
        rk_vars vars = {names, values, n};
        char *errors = NULL;
        rk_xml_init();
        rk_log_set_level(-1); /* the errors are printed below, once */
        w->reg = rk_registry_load(dir, &vars, &errors);
        rk_log_set_level(RK_LOG_LVL_WARN);
        free(names);
        free(values);
        if (!w->reg) {
            fprintf(c->err, "rekeyctl: cannot read the job folder %s\n", dir);
            wctx_close(w);
            return RKCTL_EXIT_FAIL;
        }
        if (errors) {
            for (char *line = errors, *nl; *line; line = nl + 1) {
                nl = strchr(line, '\n');
                if (!nl)
                    nl = line + strlen(line) - 1;
                else
                    *nl = '\0';
                fprintf(c->err, "rekeyctl: warning: job not loaded: %s\n", line);
            }
            if (strstr(errors, "is not defined"))
                fputs("rekeyctl: give job variables with --config FILE or --var NAME=VALUE\n",
                      c->err);
            free(errors);
        }
    }
    if (!c->actor) {
        os_user(c->actor_buf, sizeof c->actor_buf);
        c->actor = c->actor_buf;
    }
    w->rv.store = w->store;
    w->rv.reg = w->reg;
    w->rv.actor = c->actor;
    w->rv.today = c->today;
    w->rv.now_ms = 0;
    return 0;
}

/* The open anomalies of a job (from the store), or NULL; state gets the
 * job's state ("" when there is no such job). */
static json_t *open_anomalies(rk_store *s, int64_t id, char *state, size_t statelen)
{
    state[0] = '\0';
    json_t *o = rk_store_show_json(s, id);
    if (!o)
        return NULL;
    json_t *all = json_object_get(o, "anomalies"), *open = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(all, i, a) {
        if (!jstr(a, "resolved_at"))
            json_array_append(open, a);
    }
    snprintf(state, statelen, "%s", jstr(o, "state") ? jstr(o, "state") : "");
    json_decref(o);
    return open;
}

/*
 * Reports one decision about job id.  rc and msg are what the review
 * module answered: the German sentence goes to stdout when it was done,
 * to stderr when it was refused; a job that stays in review lists its
 * open anomalies beside it.  With --json one object {"ok", "id", "state",
 * "message", "anomalies"} (plus what extra holds, which is consumed).
 * Returns the exit code.
 */
static int report(ctl *c, wctx *w, int64_t id, int rc, const char *msg, json_t *extra)
{
    char state[16];
    json_t *open = open_anomalies(w->store, id, state, sizeof state);
    int show_open = strcmp(state, RK_ST_REVIEW) == 0 && json_array_size(open) > 0;
    if (c->json) {
        json_t *o = extra ? extra : json_object();
        json_object_set_new(o, "ok", json_boolean(rc == 0));
        json_object_set_new(o, "id", json_integer(id));
        json_object_set_new(o, "state", *state ? json_string(state) : json_null());
        json_object_set_new(o, "message", json_string(msg));
        json_object_set_new(o, "anomalies", open ? open : json_array());
        print_json(c, o);
        json_decref(o);
        return rc == 0 ? RKCTL_EXIT_OK : RKCTL_EXIT_FAIL;
    }
    json_decref(extra);
    /* the message may quote a value from the citizen's document */
    char *text = safe_text(msg);
    if (rc == 0) {
        fprintf(c->out, "%s\n", text);
        /* after a correction: what still holds the submission */
        if (show_open && c->cmd == CMD_RV_SET)
            print_anomalies_to(c->out, open, 1);
    } else {
        fprintf(c->err, "rekeyctl: %s\n", text);
        if (show_open && c->cmd == CMD_RV_APPROVE)
            print_anomalies_to(c->err, open, 1);
    }
    free(text);
    json_decref(open);
    return rc == 0 ? RKCTL_EXIT_OK : RKCTL_EXIT_FAIL;
}

/* review set|approve|reject ID ... */
static int cmd_review_decide(ctl *c)
{
    int64_t id;
    int rc;
    if (c->cmd == CMD_RV_SET && c->n_pos < 3)
        rc = usage_error(c, "review set needs ID FIELD VALUE, e.g. rekeyctl review set 12 "
                            "geburtsdatum 2001-04-12");
    else if (c->cmd == CMD_RV_SET)
        rc = job_id_arg(c, 3, "review set ID FIELD VALUE", &id);
    else if (c->cmd == CMD_RV_APPROVE)
        rc = job_id_arg(c, 1, "review approve ID", &id);
    else
        rc = job_id_arg(c, 1, "review reject ID --reason TEXT", &id);
    if (rc)
        return rc;
    if (c->cmd == CMD_RV_REJECT && (!c->reason || !*c->reason))
        return usage_error(c, "review reject needs a reason (Begründung): --reason TEXT, e.g. "
                              "--reason \"Zahlung nicht eingegangen\"");
    wctx w;
    if ((rc = wctx_open(c, &w, c->cmd != CMD_RV_REJECT)) != 0)
        return rc;
    char msg[4096] = "";
    if (c->cmd == CMD_RV_SET)
        rc = rk_review_set(&w.rv, id, c->pos[1], c->pos[2], msg, sizeof msg);
    else if (c->cmd == CMD_RV_APPROVE)
        rc = rk_review_approve(&w.rv, id, msg, sizeof msg);
    else
        rc = rk_review_reject(&w.rv, id, c->reason, msg, sizeof msg);
    if (rc && !*msg)
        snprintf(msg, sizeof msg, "%s", rk_strerror(rc));
    int code = report(c, &w, id, rc, msg, NULL);
    wctx_close(&w);
    return code;
}

/* review list: the held submissions, overdue ones first; --overdue: only
 * those past the deadline, in review or failed. */
static int cmd_review_list(ctl *c)
{
    if (c->n_pos > 0)
        return usage_error(c, "review list takes no arguments, got '%s'", c->pos[0]);
    rk_store *s;
    if (open_store(c, &s))
        return RKCTL_EXIT_FAIL;
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.job = c->job;
    f.state = c->overdue ? NULL : RK_ST_REVIEW;
    f.overdue = 1;
    json_t *rows = json_array();
    int more = 0;
    int rc = collect_rows(s, &f, 0, 0, rows, NULL);
    size_t n_late = json_array_size(rows);
    if (rc == 0 && !c->overdue) {
        memset(&f, 0, sizeof f);
        f.job = c->job;
        f.state = RK_ST_REVIEW;
        rc = collect_rows(s, &f, c->limit, 1, rows, &more);
    }
    if (rc) {
        rc = read_failed(c, s);
        rk_store_close(s);
        json_decref(rows);
        return rc;
    }
    rk_store_close(s);
    if (c->json) {
        rc = print_json(c, rows);
        json_decref(rows);
        return rc;
    }
    size_t n = json_array_size(rows);
    char *job = c->job ? safe_text(c->job) : NULL;
    char jobpart[256] = "";
    if (job)
        snprintf(jobpart, sizeof jobpart, " (Antragsart %s)", job);
    free(job);
    if (n == 0) {
        fprintf(c->out, "%s%s.\n",
                c->overdue ? "Keine Anträge mit überschrittener Frist" : "Keine Anträge zur Klärung",
                jobpart);
        json_decref(rows);
        return RKCTL_EXIT_OK;
    }
    if (c->overdue)
        fprintf(c->out, "Frist überschritten%s: %zu\n\n", jobpart, n);
    else if (n_late)
        fprintf(c->out, "Zur Klärung%s: %zu%s, davon Frist überschritten: %zu\n\n", jobpart, n,
                more ? " gezeigt" : "", n_late);
    else
        fprintf(c->out, "Zur Klärung%s: %zu%s\n\n", jobpart, n, more ? " gezeigt" : "");
    tbl t;
    tbl_init(&t, 7);
    t.right[0] = 1;
    tbl_row(&t, (const char *const[]){"ID", "Antragsart", "Referenz", "Status", "Eingang",
                                      "Frist", "Auffälligkeiten"});
    size_t i;
    const json_t *o;
    json_array_foreach(rows, i, o) {
        char id[32], recv[64], dl[128], an[256];
        fmt_iso(jstr(o, "received_at"), recv, sizeof recv);
        if (jstr(o, "deadline_at")) {
            fmt_iso(jstr(o, "deadline_at"), dl, sizeof dl);
            if (json_is_true(json_object_get(o, "overdue")))
                snprintf(dl + strlen(dl), sizeof dl - strlen(dl), " Frist überschritten");
        } else {
            snprintf(dl, sizeof dl, "-");
        }
        const char *ref = jstr(o, "reference");
        tbl_row(&t, (const char *const[]){jtext(o, "id", id, sizeof id),
                                          jstr(o, "job") ? jstr(o, "job") : "-", ref ? ref : "-",
                                          rk_state_german(jstr(o, "state")), recv, dl,
                                          codes_text(o, an, sizeof an)});
    }
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);
    if (more)
        fputs("\nWeitere Anträge zur Klärung: --limit 0 zeigt alle.\n", c->out);
    fputs("\nEinzelheiten: rekeyctl review show ID\n", c->out);
    json_decref(rows);
    return RKCTL_EXIT_OK;
}

/* review show ID: what a clerk needs to decide. */
static int cmd_review_show(ctl *c)
{
    int64_t id;
    int rc = job_id_arg(c, 1, "review show ID", &id);
    if (rc)
        return rc;
    json_t *o = load_show(c, id);
    if (!o)
        return RKCTL_EXIT_FAIL;
    if (c->json) {
        rc = print_json(c, o);
        json_decref(o);
        return rc;
    }
    const char *state = jstr(o, "state");
    char b1[128], b2[64];
    fprintf(c->out, "Antrag %lld – %s\n", (long long)id, rk_state_german(state));
    tbl t;
    tbl_init(&t, 2);
    {
        const char *job = jstr(o, "job");
        char jl[256];
        if (job)
            snprintf(jl, sizeof jl, "%s (Version %s)", job, jtext(o, "job_version", b2, sizeof b2));
        else
            snprintf(jl, sizeof jl, "(keine)");
        tbl_row(&t, (const char *const[]){"Antragsart", jl});
    }
    if (jstr(o, "reference"))
        tbl_row(&t, (const char *const[]){"Referenz", jstr(o, "reference")});
    fmt_iso(jstr(o, "received_at"), b1, sizeof b1);
    tbl_row(&t, (const char *const[]){"Eingegangen", b1});
    if (jstr(o, "deadline_at"))
        tbl_row(&t, (const char *const[]){"Frist", deadline_text(o, b1, sizeof b1)});
    if (jint(o, "replay_of")) {
        snprintf(b1, sizeof b1, "Antrag %lld", (long long)jint(o, "replay_of"));
        tbl_row(&t, (const char *const[]){"Wiederholung von", b1});
    }
    tbl_row(&t, (const char *const[]){"Quelle", jstr(o, "source_ref")});
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);

    const json_t *anomalies = json_object_get(o, "anomalies");
    print_anomalies(c, anomalies);

    /* fields: ! = named by an open anomaly, * = corrected */
    const json_t *fields = json_object_get(o, "fields");
    const json_t *corr = json_object_get(o, "corrections");
    size_t i, k;
    const json_t *f, *a;
    fprintf(c->out, "\nFelder (%zu; ! = von einer offenen Auffälligkeit genannt, "
                    "* = korrigiert)\n",
            json_array_size(fields));
    if (json_array_size(fields) == 0) {
        fputs("  keine (beim Korrigieren oder Freigeben wird das Dokument übernommen)\n",
              c->out);
    } else {
        tbl_init(&t, 5);
        tbl_row(&t, (const char *const[]){"", "Feld", "Wert im Antrag", "übernommener Wert",
                                          "XPath"});
        json_array_foreach(fields, i, f) {
            const char *name = jstr(f, "name");
            int flagged = 0, corrected = 0;
            json_array_foreach(anomalies, k, a) flagged |=
                !jstr(a, "resolved_at") && name && jstr(a, "field") &&
                strcmp(jstr(a, "field"), name) == 0;
            json_array_foreach(corr, k, a) corrected |=
                name && jstr(a, "field") && strcmp(jstr(a, "field"), name) == 0;
            char mark[4];
            snprintf(mark, sizeof mark, "%s%s", flagged ? "!" : "", corrected ? "*" : "");
            tbl_row(&t, (const char *const[]){mark, name, value_text(jstr(f, "source")),
                                              value_text(jstr(f, "value")), jstr(f, "xpath")});
        }
        tbl_print(&t, c->out, "  ");
        tbl_free(&t);
    }
    print_corrections(c, corr);

    if (state && strcmp(state, RK_ST_REVIEW) == 0)
        fprintf(c->out,
                "\nEntscheiden:\n"
                "  rekeyctl review set %lld FELD WERT            Feld korrigieren\n"
                "  rekeyctl review approve %lld                  freigeben\n"
                "  rekeyctl review reject %lld --reason \"...\"    ablehnen\n",
                (long long)id, (long long)id, (long long)id);
    json_decref(o);
    return RKCTL_EXIT_OK;
}

/* retry ID, or retry --all-failed --job JOB. */
static int cmd_retry(ctl *c)
{
    int rc;
    wctx w;
    char msg[2048] = "";
    if (!c->all_failed) {
        int64_t id;
        if ((rc = job_id_arg(c, 1, "retry ID (or retry --all-failed --job JOB)", &id)) != 0)
            return rc;
        if ((rc = wctx_open(c, &w, 0)) != 0)
            return rc;
        rc = rk_ops_retry(&w.rv, id, msg, sizeof msg);
        if (rc && !*msg)
            snprintf(msg, sizeof msg, "%s", rk_strerror(rc));
        int code = report(c, &w, id, rc, msg, NULL);
        wctx_close(&w);
        return code;
    }
    if (c->n_pos > 0)
        return usage_error(c, "retry takes either an id or --all-failed, not both");
    if (!c->job)
        return usage_error(c, "retry --all-failed needs the job: --job JOB");
    if ((rc = wctx_open(c, &w, 0)) != 0)
        return rc;
    rk_list_filter f;
    memset(&f, 0, sizeof f);
    f.state = RK_ST_FAILED;
    f.job = c->job;
    json_t *rows = json_array();
    if (collect_rows(w.store, &f, 0, 0, rows, NULL) != 0) {
        rc = read_failed(c, w.store);
        json_decref(rows);
        wctx_close(&w);
        return rc;
    }
    json_t *done = json_array(), *refused = json_array();
    size_t i;
    const json_t *o;
    /* oldest first, as they failed */
    for (i = json_array_size(rows); i-- > 0;) {
        o = json_array_get(rows, i);
        int64_t id = jint(o, "id");
        msg[0] = '\0';
        rc = rk_ops_retry(&w.rv, id, msg, sizeof msg);
        if (rc == 0) {
            json_array_append_new(done, json_integer(id));
        } else {
            json_t *r = json_object();
            json_object_set_new(r, "id", json_integer(id));
            json_object_set_new(r, "message", json_string(*msg ? msg : rk_strerror(rc)));
            json_array_append_new(refused, r);
        }
    }
    json_decref(rows);
    wctx_close(&w);
    int code = json_array_size(refused) ? RKCTL_EXIT_FAIL : RKCTL_EXIT_OK;
    if (c->json) {
        json_t *out = json_object();
        json_object_set_new(out, "ok", json_boolean(code == RKCTL_EXIT_OK));
        json_object_set_new(out, "job", json_string(c->job));
        json_object_set_new(out, "retried", done);
        json_object_set_new(out, "refused", refused);
        print_json(c, out);
        json_decref(out);
        return code;
    }
    char *job = safe_text(c->job);
    size_t n = json_array_size(done);
    if (n == 0 && json_array_size(refused) == 0) {
        fprintf(c->out, "Keine fehlgeschlagenen Anträge der Antragsart %s.\n", job);
    } else {
        char ids[512] = "";
        id_list(done, 20, ids, sizeof ids);
        fprintf(c->out, "%zu fehlgeschlagene %s der Antragsart %s %s erneut versucht%s%s%s\n", n,
                n == 1 ? "Antrag" : "Anträge", job, n == 1 ? "wird" : "werden", n ? " (" : "",
                ids, n ? ")." : ".");
        json_array_foreach(refused, i, o) {
            char *text = safe_text(jstr(o, "message"));
            fprintf(c->err, "rekeyctl: %s\n", text);
            free(text);
        }
    }
    free(job);
    json_decref(done);
    json_decref(refused);
    return code;
}

/* Set by the unit test: -1 = ask isatty(0); in = where the answer is read
 * (NULL = stdin). */
static int ctl_tty_override = -1;
static FILE *ctl_in_override;

/* Asks on the terminal whether a replay with new keys is meant; 1 = yes. */
static int confirm_new_key(ctl *c, int64_t id)
{
    int tty = ctl_tty_override >= 0 ? ctl_tty_override : isatty(STDIN_FILENO);
    if (!tty) {
        fprintf(c->err,
                "rekeyctl: --new-key gives the target a second record of job %lld; there is no "
                "terminal to ask, so confirm it with --yes\n",
                (long long)id);
        return 0;
    }
    fprintf(c->err,
            "Antrag %lld mit neuem Schlüssel wiederholen? Das Fachverfahren erhält einen zweiten "
            "Datensatz. [j/N] ",
            (long long)id);
    fflush(c->err);
    char line[64];
    FILE *in = ctl_in_override ? ctl_in_override : stdin;
    if (fgets(line, sizeof line, in) &&
        (line[0] == 'j' || line[0] == 'J' || line[0] == 'y' || line[0] == 'Y'))
        return 1;
    fputs("Abgebrochen; nichts wurde geändert.\n", c->err);
    return 0;
}

/* replay ID [--new-key [--yes]] */
static int cmd_replay(ctl *c)
{
    int64_t id;
    int rc = job_id_arg(c, 1, "replay ID [--new-key --yes]", &id);
    if (rc)
        return rc;
    if (c->yes && !c->new_key)
        return usage_error(c, "--yes confirms --new-key; a replay without --new-key needs no "
                              "confirmation");
    if (c->new_key && !c->yes && !confirm_new_key(c, id))
        return RKCTL_EXIT_FAIL;
    wctx w;
    if ((rc = wctx_open(c, &w, 0)) != 0)
        return rc;
    char msg[2048] = "";
    int64_t new_id = 0;
    rc = rk_ops_replay(&w.rv, id, c->new_key, &new_id, msg, sizeof msg);
    if (rc && !*msg)
        snprintf(msg, sizeof msg, "%s", rk_strerror(rc));
    json_t *extra = NULL;
    if (c->json) {
        extra = json_object();
        json_object_set_new(extra, "new_id", rc == 0 ? json_integer(new_id) : json_null());
    }
    int code = report(c, &w, id, rc, msg, extra);
    wctx_close(&w);
    return code;
}

/* purge --older-than AGE [--job JOB] [--dry-run] */
static int cmd_purge(ctl *c)
{
    if (c->n_pos > 0)
        return usage_error(c, "purge takes no arguments, got '%s'", c->pos[0]);
    if (!c->older_than)
        return usage_error(c, "purge needs the age of what to delete: --older-than AGE, e.g. "
                              "--older-than 90d");
    wctx w;
    int rc = wctx_open(c, &w, 0);
    if (rc)
        return rc;
    int64_t cutoff = rk_now_ms() - c->older_than_ms;
    rk_purge_report rep;
    char msg[1024] = "";
    rc = rk_ops_purge(&w.rv, cutoff, c->job, c->dry_run, &rep, msg, sizeof msg);
    wctx_close(&w);
    if (rc) {
        fprintf(c->err, "rekeyctl: %s\n", *msg ? msg : rk_strerror(rc));
        return RKCTL_EXIT_FAIL;
    }
    char cut_iso[40], cut[64];
    rk_time_iso(cutoff, cut_iso, sizeof cut_iso);
    fmt_ms(cutoff, cut, sizeof cut);
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "ok", json_true());
        json_object_set_new(o, "dry_run", json_boolean(c->dry_run));
        json_object_set_new(o, "cutoff", json_string(cut_iso));
        json_object_set_new(o, "job", c->job ? json_string(c->job) : json_null());
        json_object_set_new(o, "jobs", json_integer(rep.jobs));
        json_object_set_new(o, "payloads", json_integer(rep.payloads));
        json_object_set_new(o, "fields", json_integer(rep.fields));
        json_object_set_new(o, "corrections", json_integer(rep.corrections));
        json_object_set_new(o, "anomalies", json_integer(rep.anomalies));
        json_object_set_new(o, "message", json_string(msg));
        rc = print_json(c, o);
        json_decref(o);
        return rc;
    }
    char *job = c->job ? safe_text(c->job) : NULL;
    fprintf(c->out, "Löschung nach Aufbewahrungsfrist%s\n",
            c->dry_run ? " – Probelauf: nichts wurde gelöscht." : "");
    fprintf(c->out, "Abgeschlossene Anträge (übertragen, abgelehnt, fehlgeschlagen)%s%s, zuletzt "
                    "geändert vor dem %s.\n\n%s:\n",
            job ? " der Antragsart " : "", job ? job : "", cut,
            c->dry_run ? "Würde löschen" : "Gelöscht");
    free(job);
    tbl t;
    tbl_init(&t, 2);
    t.right[1] = 1;
    char n[5][32];
    snprintf(n[0], sizeof n[0], "%lld", (long long)rep.jobs);
    snprintf(n[1], sizeof n[1], "%lld", (long long)rep.payloads);
    snprintf(n[2], sizeof n[2], "%lld", (long long)rep.fields);
    snprintf(n[3], sizeof n[3], "%lld", (long long)rep.corrections);
    snprintf(n[4], sizeof n[4], "%lld", (long long)rep.anomalies);
    tbl_row(&t, (const char *const[]){"Anträge", n[0]});
    tbl_row(&t, (const char *const[]){"Dokumente", n[1]});
    tbl_row(&t, (const char *const[]){"übernommene Werte", n[2]});
    tbl_row(&t, (const char *const[]){"Korrekturen", n[3]});
    tbl_row(&t, (const char *const[]){"Meldungen", n[4]});
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);
    fputs("\nDer Verlauf (Protokoll) bleibt erhalten.\n", c->out);
    return RKCTL_EXIT_OK;
}
/* resume JOB [CONNECTOR]: a paused connector works again. */
static int cmd_resume(ctl *c)
{
    if (c->n_pos == 0 || c->n_pos > 2)
        return usage_error(c, "resume needs the job and optionally the connector: rekeyctl "
                              "resume JOB [CONNECTOR]");
    const char *job = c->pos[0], *conn = c->n_pos > 1 ? c->pos[1] : NULL;
    rk_store *s;
    if (open_store_mode(c, 1, &s))
        return RKCTL_EXIT_FAIL;
    int64_t cleared = 0;
    int rc = rk_store_begin(s);
    if (!rc)
        rc = rk_store_pause_clear(s, job, conn, rk_now_ms(), &cleared);
    if (!rc)
        rc = rk_store_commit(s);
    else
        rk_store_rollback(s);
    if (rc) {
        fprintf(c->err, "rekeyctl: cannot write %s: %s\n", c->db, rk_store_errmsg(s));
        rk_store_close(s);
        return RKCTL_EXIT_FAIL;
    }
    rk_store_close(s);
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "ok", json_boolean(cleared > 0));
        json_object_set_new(o, "job", json_string(job));
        json_object_set_new(o, "connector", conn ? json_string(conn) : json_null());
        json_object_set_new(o, "resumed", json_integer(cleared));
        print_json(c, o);
        json_decref(o);
        return cleared ? RKCTL_EXIT_OK : RKCTL_EXIT_FAIL;
    }
    char *j = safe_text(job), *k = conn ? safe_text(conn) : NULL;
    if (cleared == 0) {
        if (k)
            fprintf(c->err, "rekeyctl: die Anbindung %s der Antragsart %s ist nicht angehalten.\n",
                    k, j);
        else
            fprintf(c->err, "rekeyctl: keine Anbindung der Antragsart %s ist angehalten.\n", j);
    } else {
        fprintf(c->out, "%lld %s der Antragsart %s wieder aufgenommen; wartende Anträge werden "
                        "übertragen.\n",
                (long long)cleared, cleared == 1 ? "Anbindung" : "Anbindungen", j);
    }
    free(j);
    free(k);
    return cleared ? RKCTL_EXIT_OK : RKCTL_EXIT_FAIL;
}

/* ---- map: the dry run -------------------------------------------------- */

static json_t *jstr_or_null(const char *s)
{
    json_t *v = s ? json_string(s) : NULL;
    return v ? v : json_null();
}

static json_t *anomaly_json(const char *code, const char *field, rk_severity sev,
                            const char *message)
{
    json_t *a = json_object();
    json_object_set_new(a, "code", jstr_or_null(code));
    json_object_set_new(a, "field", jstr_or_null(field));
    json_object_set_new(a, "severity", json_string(sev == RK_SEV_BLOCK ? "block" : "warn"));
    json_object_set_new(a, "message", jstr_or_null(message));
    return a;
}

/* The dry run's outcome as the JSON object `map --json` prints; the human
 * output is rendered from the same object.  The caller owns it. */
static json_t *map_json(const rk_job *job, int root_matches, int delivered, const rk_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "job", json_string(job->name));
    json_object_set_new(o, "root_matches", json_boolean(root_matches));
    json_object_set_new(o, "delivered", json_boolean(delivered));
    json_t *fields = json_array();
    json_t *anomalies = json_array();
    json_t *unchecked = json_array();
    for (size_t i = 0; r && i < r->n_fields; i++) {
        const rk_mapped_field *f = &r->fields[i];
        json_t *fo = json_object();
        json_object_set_new(fo, "name", jstr_or_null(f->name));
        json_object_set_new(fo, "value", jstr_or_null(f->value));
        json_object_set_new(fo, "source", jstr_or_null(f->source));
        json_object_set_new(fo, "xpath", jstr_or_null(f->xpath));
        json_object_set_new(fo, "node", jstr_or_null(f->node));
        json_array_append_new(fields, fo);
    }
    for (size_t i = 0; r && i < r->n_anomalies; i++) {
        const rk_anomaly *a = &r->anomalies[i];
        json_array_append_new(anomalies, anomaly_json(a->code, a->field, a->severity, a->message));
    }
    for (size_t i = 0; r && i < r->n_dups; i++)
        if (r->dups[i].rule < job->n_rules)
            json_array_append_new(unchecked, json_string(job->rules[r->dups[i].rule].code));
    json_object_set_new(o, "fields", fields);
    json_object_set_new(o, "anomalies", anomalies);
    json_object_set_new(o, "unchecked", unchecked);
    return o;
}

/* "{ns}local", or "local" without a namespace, into buf. */
static const char *qname(const char *ns, const char *local, char *buf, size_t buflen)
{
    if (ns && *ns)
        snprintf(buf, buflen, "{%s}%s", ns, local ? local : "");
    else
        snprintf(buf, buflen, "%s", local ? local : "");
    return buf;
}

/* The human form of the dry run. */
static void map_print(ctl *c, const rk_job *job, const char *xmlfile, const char *root_ns,
                      const char *root_name, const json_t *o)
{
    int root_matches = json_is_true(json_object_get(o, "root_matches"));
    int delivered = json_is_true(json_object_get(o, "delivered"));
    const json_t *anomalies = json_object_get(o, "anomalies");
    char b1[512], b2[512];

    fputs("Probelauf: nichts wird gespeichert oder übertragen.\n\n", c->out);
    tbl t;
    tbl_init(&t, 2);
    {
        char jl[512];
        snprintf(jl, sizeof jl, "%s (Version %ld)%s%s", job->name, job->version,
                 job->title ? " – " : "", job->title ? job->title : "");
        tbl_row(&t, (const char *const[]){"Verfahren", jl});
    }
    tbl_row(&t, (const char *const[]){"Dokument", xmlfile});
    {
        char rl[1200];
        if (root_matches)
            snprintf(rl, sizeof rl, "%s", qname(root_ns, root_name, b1, sizeof b1));
        else
            snprintf(rl, sizeof rl, "%s – gehört nicht zu diesem Verfahren (erwartet %s)",
                     qname(root_ns, root_name, b1, sizeof b1),
                     qname(job->root_ns, job->root_name, b2, sizeof b2));
        tbl_row(&t, (const char *const[]){"Wurzelelement", rl});
    }
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);

    print_anomalies(c, anomalies);
    print_fields(c, json_object_get(o, "fields"));

    const json_t *unchecked = json_object_get(o, "unchecked");
    if (json_array_size(unchecked) > 0) {
        fputs("\nNicht geprüft (Dublettenprüfung braucht die Datenbank):", c->out);
        size_t i;
        const json_t *u;
        json_array_foreach(unchecked, i, u) fprintf(c->out, " %s", json_string_value(u));
        fputc('\n', c->out);
    }

    size_t blocking = 0, i;
    const json_t *a;
    json_array_foreach(anomalies, i, a) {
        const char *sev = jstr(a, "severity");
        if (sev && strcmp(sev, "block") == 0)
            blocking++;
    }
    fputs("\nErgebnis: ", c->out);
    if (!root_matches)
        fputs("dieses Verfahren würde das Dokument nicht annehmen.\n", c->out);
    else if (delivered)
        fputs("würde übertragen.\n", c->out);
    else
        fprintf(c->out, "würde zur Klärung zurückgehalten (%zu blockierende %s).\n", blocking,
                blocking == 1 ? "Auffälligkeit" : "Auffälligkeiten");
}

/* Today's local date as YYYY-MM-DD. */
static void today_local(char *out, size_t outlen)
{
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm) || strftime(out, outlen, "%Y-%m-%d", &tm) == 0)
        snprintf(out, outlen, "1970-01-01");
}

/*
 * map JOBFILE XMLFILE: the engine's validate → map → check on one
 * document, in this process, with nothing stored.  Validation errors do
 * not stop the mapping, so a job author sees every problem at once.
 */
static int cmd_map(ctl *c)
{
    if (c->n_pos != 2)
        return usage_error(c, "map needs a job file and a document: rekeyctl map JOBFILE XMLFILE%s",
                           c->n_pos > 2 ? " (got more arguments)" : "");
    const char *jobfile = c->pos[0], *xmlfile = c->pos[1];
    rk_xml_init();

    char err[1024] = "";
    rk_vars vars = {c->var_names, c->var_values, c->n_vars};
    rk_job *job = rk_job_load(jobfile, &vars, err, sizeof err);
    if (!job) {
        fprintf(c->err, "rekeyctl: %s\n", *err ? err : "the job file does not load");
        if (strstr(err, "is not defined"))
            fputs("rekeyctl: give job variables to map with --var NAME=VALUE\n", c->err);
        return RKCTL_EXIT_FAIL;
    }

    /* read as intake reads: same size limits, *.gz unpacked with the
     * same caps (the inbox defaults, since map has no daemon config) */
    char *data = NULL;
    size_t len = 0;
    rk_inbox_config icfg;
    memset(&icfg, 0, sizeof icfg);
    int rc = rk_inbox_read_file(&icfg, xmlfile, &data, &len, err, sizeof err);
    if (rc) {
        fprintf(c->err, "rekeyctl: cannot read %s: %s\n", xmlfile, err);
        rk_job_unref(job);
        return RKCTL_EXIT_FAIL;
    }
    const char *code = NULL;
    char msg[1024] = "";
    xmlDocPtr doc = rk_doc_parse(data, len, &code, msg, sizeof msg);
    free(data);
    if (!doc) {
        fprintf(c->err, "rekeyctl: %s cannot be parsed (%s): %s\n", xmlfile,
                code ? code : "XML_MALFORMED", msg);
        if (c->json) {
            json_t *o = map_json(job, 0, 0, NULL);
            json_array_append_new(json_object_get(o, "anomalies"),
                                  anomaly_json(code ? code : "XML_MALFORMED", NULL, RK_SEV_BLOCK,
                                               msg));
            print_json(c, o);
            json_decref(o);
        }
        rk_job_unref(job);
        return RKCTL_EXIT_FAIL;
    }

    const char *root_ns = "", *root_name = "";
    rk_doc_root(doc, &root_ns, &root_name);
    int root_matches = strcmp(root_ns ? root_ns : "", job->root_ns ? job->root_ns : "") == 0 &&
                       strcmp(root_name ? root_name : "", job->root_name) == 0;

    char today[16];
    if (c->today)
        snprintf(today, sizeof today, "%s", c->today);
    else
        today_local(today, sizeof today);

    rk_result r;
    rk_result_init(&r);
    int step_rc = 0;
    const char *step = NULL;
    if ((rc = rk_doc_validate(job, doc, &r)) < 0) {
        step = "validation";
        step_rc = rc;
    } else if ((rc = rk_map_apply(job, doc, &r)) < 0) {
        step = "mapping";
        step_rc = rc;
    } else if ((rc = rk_rules_check(job, &r, today)) < 0) {
        step = "rule check";
        step_rc = rc;
    }
    if (step) {
        fprintf(c->err, "rekeyctl: %s of %s with job %s failed: %s\n", step, xmlfile, job->name,
                rk_strerror(step_rc));
        rk_result_free(&r);
        xmlFreeDoc(doc);
        rk_job_unref(job);
        return RKCTL_EXIT_FAIL;
    }

    int delivered = root_matches && !rk_result_blocked(&r);
    json_t *o = map_json(job, root_matches, delivered, &r);
    int out_rc = c->json ? print_json(c, o) : RKCTL_EXIT_OK;
    if (!c->json)
        map_print(c, job, xmlfile, root_ns, root_name, o);
    json_decref(o);
    rk_result_free(&r);
    xmlFreeDoc(doc);
    rk_job_unref(job);
    if (out_rc)
        return out_rc;
    if (!root_matches)
        return RKCTL_EXIT_FAIL;
    return delivered ? RKCTL_EXIT_OK : RKCTL_EXIT_HELD;
}

/* ---- entry ------------------------------------------------------------- */

static int cmd_help(ctl *c)
{
    if (c->n_pos == 0) {
        fputs(usage_global, c->out);
        return RKCTL_EXIT_OK;
    }
    ctl_cmd which = cmd_lookup(c->pos[0]);
    if (which == CMD_NONE)
        return usage_error(c, "no help for '%s'; commands: status, list, show, events, review, "
                              "retry, replay, purge, resume, map, help",
                           c->pos[0]);
    fputs(usage_cmd[which], c->out);
    return RKCTL_EXIT_OK;
}

/*
 * Commands with a parser of their own (watch, connector-test, token): returns
 * the index of the command word when it is the first word that is neither an
 * option nor an option's value, else 0.  Options before it are known global
 * ones (--db FILE, --config FILE), so their values are skipped.
 */
static int delegated_at(int argc, char **argv)
{
    static const char *const own[] = {"watch", "connector-test", "token"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            return 0;
        if (a[0] == '-') {
            if (strncmp(a, "--", 2) != 0 || strchr(a, '='))
                continue;
            for (int k = 0; k < O_COUNT; k++)
                if (strcmp(opt_defs[k].name, a + 2) == 0 && opt_defs[k].has_arg)
                    i++; /* its value */
            continue;
        }
        for (size_t k = 0; k < sizeof own / sizeof own[0]; k++)
            if (strcmp(a, own[k]) == 0)
                return i;
        return 0;
    }
    return 0;
}

/*
 * The whole CLI: parses argv, runs the command and returns the exit code.
 * out and err stand for stdout and stderr (tests pass memory streams).
 */
int rkctl_main(int argc, char **argv, FILE *out, FILE *err);
int rkctl_main(int argc, char **argv, FILE *out, FILE *err)
{
    ctl c;
    memset(&c, 0, sizeof c);
    c.out = out;
    c.err = err;
    c.limit = RKCTL_DEFAULT_LIMIT;
    const char *env = getenv("REKEY_DB");
    if (env && *env) {
        c.db = env;
    } else {
        c.db = RKCTL_DEFAULT_DB;
        c.db_default = 1;
    }
    rk_log_set_level(RK_LOG_LVL_WARN);
    int at = delegated_at(argc, argv);
    if (at > 0) {
        /* the command word first, then every other word in its order, so
         * `rekeyctl --db X watch` means `rekeyctl watch --db X` */
        char **args = xrealloc(NULL, (size_t)argc * sizeof *args);
        int n = 0;
        args[n++] = argv[at];
        for (int i = 1; i < argc; i++)
            if (i != at)
                args[n++] = argv[i];
        int drc;
        if (strcmp(argv[at], "connector-test") == 0) /* agent/contract.c */
            drc = rk_contract_main(n, args, out, err);
        else if (strcmp(argv[at], "token") == 0) /* agent/tokens.c */
            drc = rk_tokens_main(n, args, out, err);
        else /* watch: agent/watch.c */
            drc = rk_watch_main(n, args, out, err);
        free(args);
        return drc;
    }

    int rc = ctl_parse(&c, argc, argv);
    if (rc) {
        ctl_free(&c);
        return rc;
    }
    if (c.help) {
        fputs(c.cmd == CMD_NONE ? usage_global : usage_cmd[c.cmd], c.out);
        ctl_free(&c);
        return RKCTL_EXIT_OK;
    }
    static const unsigned takes_args = CMD_BIT(CMD_MAP) | CMD_BIT(CMD_SHOW) | CMD_BIT(CMD_HELP) |
                                       CMDS_REVIEW | CMD_BIT(CMD_RETRY) | CMD_BIT(CMD_REPLAY) |
                                       CMD_BIT(CMD_PURGE) | CMD_BIT(CMD_RESUME);
    if (!(CMD_BIT(c.cmd) & takes_args) && c.n_pos > 0) {
        rc = usage_error(&c, "%s takes no arguments, got '%s'", cmd_names[c.cmd], c.pos[0]);
        ctl_free(&c);
        return rc;
    }
    switch (c.cmd) {
    case CMD_NONE:
    case CMD_COUNT:
        fputs(usage_global, c.err);
        rc = RKCTL_EXIT_USAGE;
        break;
    case CMD_REVIEW: /* resolved to a subcommand by ctl_parse */
        rc = usage_error(&c, "review needs what to do: list, show, set, approve or reject");
        break;
    case CMD_STATUS: rc = cmd_status(&c); break;
    case CMD_LIST: rc = cmd_list(&c); break;
    case CMD_SHOW: rc = cmd_show(&c); break;
    case CMD_EVENTS: rc = cmd_events(&c); break;
    case CMD_RV_LIST: rc = cmd_review_list(&c); break;
    case CMD_RV_SHOW: rc = cmd_review_show(&c); break;
    case CMD_RV_SET:
    case CMD_RV_APPROVE:
    case CMD_RV_REJECT: rc = cmd_review_decide(&c); break;
    case CMD_RETRY: rc = cmd_retry(&c); break;
    case CMD_REPLAY: rc = cmd_replay(&c); break;
    case CMD_PURGE: rc = cmd_purge(&c); break;
    case CMD_RESUME: rc = cmd_resume(&c); break;
    case CMD_MAP: rc = cmd_map(&c); break;
    case CMD_HELP: rc = cmd_help(&c); break;
    }
    fflush(c.out);
    ctl_free(&c);
    return rc;
}

#ifndef RKCTL_NO_MAIN
int main(int argc, char **argv)
{
    return rkctl_main(argc, argv, stdout, stderr);
}
#endif
