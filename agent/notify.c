/*
 * notify.c — see notify.h.
 */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "util.h"

int rk_notify_enabled(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
}

/*
 * Sends "HEAD\nSTATUS=status" (or only HEAD, or only the status when head
 * is NULL).  The status is cut at 200 bytes and newlines in it become
 * spaces, since a newline would start another assignment.  A failed send
 * is logged at debug level only: systemd may simply not be listening.
 */
static void notify_send(const char *head, const char *status)
{
    if (!rk_notify_enabled())
        return;
    char msg[256];
    int n;
    if (status)
        n = snprintf(msg, sizeof msg, "%s%sSTATUS=%.200s", head ? head : "", head ? "\n" : "",
                     status);
    else
        n = snprintf(msg, sizeof msg, "%s", head ? head : "");
    if (n <= 0)
        return;
    if (status) {
        char *st = strstr(msg, "STATUS=") + 7;
        for (char *p = st; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    int rc = sd_notify(0, msg);
    if (rc < 0)
        rk_debug("notify", "sd_notify failed: %s", strerror(-rc));
}

void rk_notify_ready(const char *status) { notify_send("READY=1", status); }

void rk_notify_reloading(const char *status) { notify_send("RELOADING=1", status); }

void rk_notify_stopping(const char *status) { notify_send("STOPPING=1", status); }

void rk_notify_status(const char *fmt, ...)
{
    if (!rk_notify_enabled())
        return;
    char status[201];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(status, sizeof status, fmt, ap);
    va_end(ap);
    notify_send(NULL, status);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    notify_send("WATCHDOG=1", NULL);
}

/*
 * The keep-alive runs at half the interval systemd gave (the advice of
 * sd_watchdog_enabled(3)), at least every 10 ms.  The first WATCHDOG=1 is
 * sent at once so a short WatchdogSec cannot fire while the first period
 * runs.  The timer is unreferenced: the engine decides when the loop ends.
 */
int rk_notify_init(rk_notify *n, uv_loop_t *loop)
{
    memset(n, 0, sizeof *n);
    if (!rk_notify_enabled())
        return 0;
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    n->interval_ms = usec / 2000;
    if (n->interval_ms < 10)
        n->interval_ms = 10;
    int rc = uv_timer_init(loop, &n->watchdog);
    if (rc)
        return rc;
    n->timer_open = 1;
    n->watchdog.data = n;
    uv_unref((uv_handle_t *)&n->watchdog);
    rc = uv_timer_start(&n->watchdog, on_watchdog, 0, n->interval_ms);
    if (rc)
        return rc;
    rk_info("notify", "systemd watchdog: keep-alive every %llu ms",
            (unsigned long long)n->interval_ms);
    return 0;
}

void rk_notify_close(rk_notify *n)
{
    if (!n->timer_open)
        return;
    n->timer_open = 0;
    uv_timer_stop(&n->watchdog);
    uv_close((uv_handle_t *)&n->watchdog, NULL);
}
