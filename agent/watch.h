/*
 * watch.h — `rekeyctl watch`: a live view of the queue in the terminal,
 * for operators on a server without a browser.
 *
 *   rekeyctl watch [--db PATH | --config FILE] [--interval SECONDS] [--once]
 *
 * Every few seconds it clears the screen (plain ANSI escapes) and shows
 * the counts per state, how many jobs entered each state in the last
 * minute (from the event trail), the overdue jobs, the paused connectors
 * and the last errors, with the German labels of the glossary.  q or
 * Ctrl-C ends it.  --once prints one frame without escapes and exits.
 * It only reads: the store is opened read-only.
 *
 * Ownership: nothing crosses this API but the streams, which stay the
 * caller's.
 */
#ifndef RK_WATCH_H
#define RK_WATCH_H

#include <stdio.h>

/* argv[0] is "watch".  out/err stand for stdout/stderr; the keys are read
 * from standard input.  Exit status: 0 ended (q, Ctrl-C, SIGTERM or after
 * --once); 1 the database cannot be opened or read (--once); 2 usage. */
int rk_watch_main(int argc, char **argv, FILE *out, FILE *err);

#endif /* RK_WATCH_H */
