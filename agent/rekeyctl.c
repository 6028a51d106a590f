/*
 * rekeyctl.c — the operator CLI of rekey.
 *
 *   rekeyctl status                 counts per state and per job
 *   rekeyctl list [filters]         the newest jobs
 *   rekeyctl show ID                one job: states, history, anomalies, fields
 *   rekeyctl map JOBFILE XMLFILE    dry run of a job on a document
 *
 * The read commands open the store read-only and print either aligned
 * tables for people (German labels, as clerks read them; see
 * /work/shared/glossary.md) or, with --json, the store's JSON and nothing
 * else on stdout.  `map` needs no database: it loads one job file, parses,
 * validates, maps and checks one document exactly as the engine would and
 * prints the record with its provenance; nothing is stored or delivered.
 *
 * Values that came from a citizen's document are shown on stdout (that is
 * what show and map are for) but with control characters escaped, so a
 * submission cannot drive the operator's terminal.  Nothing personal goes
 * to the log; rekeyctl logs only warnings and errors, to stderr.
 *
 * Exit codes: 0 ok; 1 not found, or a check failed; 2 usage error;
 * 3 (map only) the document would be held for review.
 *
 * The whole program runs through rkctl_main(argc, argv, out, err) so the
 * unit test (tests/unit/test_cli_format.c) can include this file with
 * RKCTL_NO_MAIN defined and drive it with memory streams.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libxml/tree.h>

#include "inbox.h"
#include "job.h"
#include "map.h"
#include "record.h"
#include "store.h"
#include "util.h"
#include "xmldoc.h"

enum {
    RKCTL_EXIT_OK = 0,
    RKCTL_EXIT_FAIL = 1,  /* not there, or a check failed */
    RKCTL_EXIT_USAGE = 2, /* the command line is wrong */
    RKCTL_EXIT_HELD = 3   /* map: the document would go to review */
};

#define RKCTL_DEFAULT_DB "./rekey.db"
#define RKCTL_DEFAULT_LIMIT 50

/* ---- commands and options ---------------------------------------------- */

typedef enum { CMD_NONE = 0, CMD_STATUS, CMD_LIST, CMD_SHOW, CMD_MAP, CMD_HELP } ctl_cmd;
#define CMD_BIT(c) (1u << (c))
#define CMDS_DB (CMD_BIT(CMD_STATUS) | CMD_BIT(CMD_LIST) | CMD_BIT(CMD_SHOW) | CMD_BIT(CMD_MAP))

static const char *const cmd_names[] = {
    [CMD_NONE] = "", [CMD_STATUS] = "status", [CMD_LIST] = "list",
    [CMD_SHOW] = "show", [CMD_MAP] = "map", [CMD_HELP] = "help",
};

enum { O_HELP, O_JSON, O_DB, O_STATE, O_JOB, O_LIMIT, O_VAR, O_TODAY, O_COUNT };

typedef struct opt_def {
    const char *name;
    int has_arg;
    unsigned cmds; /* commands that accept it (CMD_BIT mask) */
} opt_def;

static const opt_def opt_defs[O_COUNT] = {
    [O_HELP] = {"help", 0, ~0u},
    [O_JSON] = {"json", 0, CMDS_DB},
    [O_DB] = {"db", 1, CMDS_DB}, /* map accepts and ignores it */
    [O_STATE] = {"state", 1, CMD_BIT(CMD_LIST)},
    [O_JOB] = {"job", 1, CMD_BIT(CMD_LIST)},
    [O_LIMIT] = {"limit", 1, CMD_BIT(CMD_LIST)},
    [O_VAR] = {"var", 1, CMD_BIT(CMD_MAP)},
    [O_TODAY] = {"today", 1, CMD_BIT(CMD_MAP)},
};

static const char usage_global[] =
    "usage: rekeyctl COMMAND [ARGS] [OPTIONS]\n"
    "\n"
    "The operator tool of rekey: look into the queue, and dry-run a job on a\n"
    "sample document.\n"
    "\n"
    "Commands:\n"
    "  status               counts per state and per job\n"
    "  list                 the newest jobs (--state S, --job J, --limit N)\n"
    "  show ID              one job: state, history, anomalies, mapped fields with\n"
    "                       the XPath each came from and the value in the document\n"
    "  map JOBFILE XMLFILE  dry run of one job on one document; stores and\n"
    "                       delivers nothing\n"
    "  help [COMMAND]       this text, or the usage of one command\n"
    "\n"
    "Options (before or after the arguments):\n"
    "  --db PATH    the rekey database (default: $REKEY_DB, else ./rekey.db)\n"
    "  --json       print JSON only (an object, or an array for list)\n"
    "  --help, -h   usage of the command\n"
    "\n"
    "Exit status: 0 ok; 1 not found or a check failed; 2 usage error;\n"
    "3 (map) the document would be held for review.\n";

static const char *const usage_cmd[] = {
    [CMD_NONE] = "",
    [CMD_STATUS] =
        "usage: rekeyctl status [--db PATH] [--json]\n"
        "\n"
        "Counts of jobs per state, and per job (application type) and state.\n"
        "--json prints {\"by_state\": {STATE: N, ...}, \"by_job\": {JOB: {STATE: N}},\n"
        "\"total\": N}; every state appears in by_state, with 0 when empty.\n"
        "\n"
        "  --db PATH   the rekey database (default: $REKEY_DB, else ./rekey.db)\n"
        "  --json      print JSON only\n"
        "\n"
        "Exit status: 0 ok; 1 the database cannot be read; 2 usage error.\n",
    [CMD_LIST] =
        "usage: rekeyctl list [--state STATE] [--job JOB] [--limit N] [--db PATH] [--json]\n"
        "\n"
        "The newest jobs first, one line each: id, job, state, received, last\n"
        "change, delivery attempts, number of anomalies.\n"
        "\n"
        "  --state STATE  only this state: received, validated, mapped, ready,\n"
        "                 delivering, delivered, review, retry_wait, failed,\n"
        "                 rejected (the German name is accepted too)\n"
        "  --job JOB      only this job (the name in the job file)\n"
        "  --limit N      at most N lines (default 50; 0 = all)\n"
        "  --db PATH      the rekey database (default: $REKEY_DB, else ./rekey.db)\n"
        "  --json         print a JSON array only\n"
        "\n"
        "Exit status: 0 ok (also when nothing matches); 1 the database cannot be\n"
        "read; 2 usage error.\n",
    [CMD_SHOW] =
        "usage: rekeyctl show ID [--db PATH] [--json]\n"
        "\n"
        "One job (ID as printed by `rekeyctl list`): its state, the submission it\n"
        "belongs to, the history of its states (Verlauf), its anomalies\n"
        "(Auffälligkeiten) and each mapped field with the XPath it came from and\n"
        "the value in the document beside the mapped value.  Shows personal data.\n"
        "\n"
        "  --db PATH   the rekey database (default: $REKEY_DB, else ./rekey.db)\n"
        "  --json      print a JSON object only\n"
        "\n"
        "Exit status: 0 ok; 1 there is no job with this id, or the database cannot\n"
        "be read; 2 usage error.\n",
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
        "Prints the usage of rekeyctl, or of one command (status, list, show, map).\n",
};

/* The parsed command line.  Strings point into argv, except the var
 * names, which are copies (owned, freed by ctl_free). */
typedef struct ctl {
    FILE *out;
    FILE *err;
    ctl_cmd cmd;
    const char *cmd_word;  /* the command as typed */
    const char *db;
    int db_default;        /* 1 when db came from neither --db nor REKEY_DB */
    int json;
    int help;
    const char *state;
    const char *job;
    size_t limit;
    const char *today;
    const char **var_names;
    const char **var_values;
    size_t n_vars;
    const char **pos;      /* positional arguments after the command */
    size_t n_pos;
    const char *opt_seen[O_COUNT]; /* spelling of each option as first given */
} ctl;

/* Out of memory in a CLI: say so and stop.  Nothing is half-written,
 * since rekeyctl never writes. */
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
}

static ctl_cmd cmd_lookup(const char *s)
{
    for (int i = CMD_STATUS; i <= CMD_HELP; i++)
        if (strcmp(s, cmd_names[i]) == 0)
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
        fprintf(c->err, "\nsee `rekeyctl help %s`\n", cmd_names[cmd]);
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

/* Takes the value of one option; checks what can be checked without
 * knowing the command.  Returns 0 or the usage exit code. */
static int opt_apply(ctl *c, int o, const char *spelled, const char *val)
{
    if (!c->opt_seen[o])
        c->opt_seen[o] = spelled;
    switch (o) {
    case O_HELP: c->help = 1; break;
    case O_JSON: c->json = 1; break;
    case O_DB:
        if (!*val)
            return usage_error(c, "--db needs a path, got an empty string");
        c->db = val;
        c->db_default = 0;
        break;
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
        if (rk_parse_int64(val, &n) != 0 || n < 0)
            return usage_error(c, "--limit needs a whole number >= 0 (0 = all), got '%s'",
                               val);
        c->limit = (size_t)n;
        break;
    }
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
 * command and the rest are its arguments.  getopt_long would need the
 * command before it knows which options are valid; checking them against
 * the command afterwards gives better messages ("--state does not apply
 * to show").  Returns 0, or the usage exit code after printing why.
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
            return usage_error(c, "unknown command '%s'; commands: status, list, show, map, help",
                               c->cmd_word);
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

/* The anomalies table of show and map. */
static void print_anomalies(ctl *c, const json_t *anomalies)
{
    size_t n = json_array_size(anomalies);
    fprintf(c->out, "\nAuffälligkeiten (%zu)\n", n);
    if (n == 0) {
        fputs("  keine\n", c->out);
        return;
    }
    tbl t;
    tbl_init(&t, 4);
    tbl_row(&t, (const char *const[]){"Art", "Code", "Feld", "Meldung"});
    size_t i;
    const json_t *a;
    json_array_foreach(anomalies, i, a) {
        const char *field = jstr(a, "field");
        tbl_row(&t, (const char *const[]){severity_german(jstr(a, "severity")), jstr(a, "code"),
                                          field ? field : "-", jstr(a, "message")});
    }
    tbl_print(&t, c->out, "  ");
    tbl_free(&t);
}

/* ---- the store commands ------------------------------------------------ */

/* Opens the store read-only; prints why not and returns the failure exit
 * code when it cannot. */
static int open_store(ctl *c, rk_store **s)
{
    char err[512] = "";
    int rc = rk_store_open(c->db, RK_STORE_READONLY, s, err, sizeof err);
    if (rc) {
        fprintf(c->err, "rekeyctl: %s\n", *err ? err : rk_strerror(rc));
        if (c->db_default)
            fputs("rekeyctl: name the database with --db PATH or the REKEY_DB variable\n",
                  c->err);
        return RKCTL_EXIT_FAIL;
    }
    return 0;
}

static int read_failed(ctl *c, rk_store *s)
{
    fprintf(c->err, "rekeyctl: cannot read %s: %s\n", c->db, rk_store_errmsg(s));
    return RKCTL_EXIT_FAIL;
}

/* status: counts per state (all ten, lifecycle order) and per job. */
static int cmd_status(ctl *c)
{
    rk_store *s;
    if (open_store(c, &s))
        return RKCTL_EXIT_FAIL;
    json_t *st = rk_store_status_json(s);
    if (!st) {
        int rc = read_failed(c, s);
        rk_store_close(s);
        return rc;
    }
    rk_store_close(s);
    if (c->json) {
        int rc = print_json(c, st);
        json_decref(st);
        return rc;
    }
    const json_t *by_state = json_object_get(st, "by_state");
    const json_t *by_job = json_object_get(st, "by_job");
    char num[32];
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

/* list: the newest jobs, filtered. */
static int cmd_list(ctl *c)
{
    rk_store *s;
    if (open_store(c, &s))
        return RKCTL_EXIT_FAIL;
    json_t *arr = rk_store_list_json(s, c->state, c->job, c->limit);
    if (!arr) {
        int rc = read_failed(c, s);
        rk_store_close(s);
        return rc;
    }
    rk_store_close(s);
    if (c->json) {
        int rc = print_json(c, arr);
        json_decref(arr);
        return rc;
    }
    size_t n = json_array_size(arr);
    if (n == 0) {
        fputs("Keine Anträge", c->out);
        if (c->state)
            fprintf(c->out, " im Status „%s“", rk_state_german(c->state));
        if (c->job) {
            char *job = safe_text(c->job);
            fprintf(c->out, " im Verfahren %s", job);
            free(job);
        }
        fputs(".\n", c->out);
        json_decref(arr);
        return RKCTL_EXIT_OK;
    }
    tbl t;
    tbl_init(&t, 7);
    t.right[0] = t.right[5] = 1;
    tbl_row(&t, (const char *const[]){"ID", "Verfahren", "Status", "Eingang", "Letzte Änderung",
                                      "Versuche", "Auffälligkeiten"});
    size_t i;
    const json_t *o;
    json_array_foreach(arr, i, o) {
        char id[32], att[32], an[256], recv[64], upd[64];
        const char *job = jstr(o, "job");
        fmt_iso(jstr(o, "received_at"), recv, sizeof recv);
        fmt_iso(jstr(o, "updated_at"), upd, sizeof upd);
        tbl_row(&t, (const char *const[]){jtext(o, "id", id, sizeof id), job ? job : "-",
                                          rk_state_german(jstr(o, "state")), recv, upd,
                                          jtext(o, "attempts", att, sizeof att),
                                          codes_text(o, an, sizeof an)});
    }
    tbl_print(&t, c->out, "");
    tbl_free(&t);
    if (c->limit && n == c->limit)
        fprintf(c->out, "\nDie neuesten %zu; --limit N zeigt mehr, --limit 0 alle.\n", n);
    json_decref(arr);
    return RKCTL_EXIT_OK;
}

/* show ID: everything the store knows about one job. */
static int cmd_show(ctl *c)
{
    if (c->n_pos == 0)
        return usage_error(c, "show needs the id of a job (see `rekeyctl list`)");
    if (c->n_pos > 1)
        return usage_error(c, "show takes one id, got also '%s'", c->pos[1]);
    int64_t id;
    if (rk_parse_int64(c->pos[0], &id) != 0 || id <= 0)
        return usage_error(c, "show needs a numeric job id as printed by `rekeyctl list`, got '%s'",
                           c->pos[0]);
    rk_store *s;
    if (open_store(c, &s))
        return RKCTL_EXIT_FAIL;
    json_t *o = rk_store_show_json(s, id);
    rk_store_close(s);
    if (!o) {
        char abs[PATH_MAX];
        const char *where = realpath(c->db, abs) ? abs : c->db;
        fprintf(c->err, "rekeyctl: no job with id %lld in %s; see `rekeyctl list`\n",
                (long long)id, where);
        return RKCTL_EXIT_FAIL;
    }
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
    fmt_iso(jstr(o, "received_at"), b1, sizeof b1);
    tbl_row(&t, (const char *const[]){"Eingegangen", b1});
    fmt_iso(jstr(o, "updated_at"), b2, sizeof b2);
    tbl_row(&t, (const char *const[]){"Letzte Änderung", b2});
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

    const json_t *events = json_object_get(o, "events");
    fprintf(c->out, "\nVerlauf (%zu)\n", json_array_size(events));
    tbl_init(&t, 5);
    tbl_row(&t, (const char *const[]){"Zeitpunkt", "von", "nach", "durch", "Grund"});
    size_t i;
    const json_t *e;
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
    int rc = rk_inbox_read(&icfg, xmlfile, NULL, &data, &len, err, sizeof err);
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
        return usage_error(c, "no help for '%s'; commands: status, list, show, map, help",
                           c->pos[0]);
    fputs(usage_cmd[which], c->out);
    return RKCTL_EXIT_OK;
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
    if (c.cmd != CMD_MAP && c.cmd != CMD_SHOW && c.cmd != CMD_HELP && c.n_pos > 0) {
        rc = usage_error(&c, "%s takes no arguments, got '%s'", cmd_names[c.cmd], c.pos[0]);
        ctl_free(&c);
        return rc;
    }
    switch (c.cmd) {
    case CMD_NONE:
        fputs(usage_global, c.err);
        rc = RKCTL_EXIT_USAGE;
        break;
    case CMD_STATUS: rc = cmd_status(&c); break;
    case CMD_LIST: rc = cmd_list(&c); break;
    case CMD_SHOW: rc = cmd_show(&c); break;
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
