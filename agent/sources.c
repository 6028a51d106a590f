/*
 * sources.c — starts the networked inbox sources named in the daemon's
 * settings (see engine.h: rk_sources_start).  The directory inbox is
 * started by the engine itself.  No networked source exists yet, so
 * there is nothing to start.
 */
#include "engine.h"

int rk_sources_start(rk_engine *e, char *err, size_t errlen)
{
    (void)e;
    (void)err;
    (void)errlen;
    return 0;
}
