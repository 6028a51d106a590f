/*
 * notify.h — telling systemd how rekeyd is doing (sd_notify, libsystemd).
 *
 * Under a unit with Type=notify, systemd passes NOTIFY_SOCKET; rekeyd
 * sends READY=1 once the engine started, RELOADING=1 and READY=1 around
 * a reload (SIGHUP), STOPPING=1 when it drains,
 * STATUS= lines for `systemctl status`, and WATCHDOG=1 from a timer on
 * the loop at half of WATCHDOG_USEC when the unit sets WatchdogSec=.
 * The keep-alive comes from the loop itself, so a loop that hangs stops
 * feeding the watchdog and systemd restarts rekeyd.  Without
 * NOTIFY_SOCKET every call is a no-op and no timer is started.
 *
 * Ownership: the caller owns the rk_notify (usually on its stack or in
 * its state) and must call rk_notify_close before the loop is closed;
 * the timer needs no memory of its own.
 */
#ifndef RK_NOTIFY_H
#define RK_NOTIFY_H

#include <stdint.h>
#include <uv.h>

typedef struct rk_notify {
    uv_timer_t watchdog;   /* WATCHDOG=1 every interval_ms */
    uint64_t interval_ms;  /* 0: no watchdog */
    int timer_open;        /* the timer was initialised and not yet closed */
} rk_notify;

/* Starts the watchdog timer on loop when NOTIFY_SOCKET and WATCHDOG_USEC
 * are set for this process (WATCHDOG_PID, when set, must be ours); the
 * timer does not keep the loop alive by itself.  Returns 0, or a
 * negative libuv error when the timer could not be started. */
int rk_notify_init(rk_notify *n, uv_loop_t *loop);
/* READY=1 with a STATUS= line (status may be NULL). */
void rk_notify_ready(const char *status);
/* RELOADING=1 with a STATUS= line; send rk_notify_ready when done. */
void rk_notify_reloading(const char *status);
/* STOPPING=1 with a STATUS= line (status may be NULL). */
void rk_notify_stopping(const char *status);
/* A STATUS= line only (printf format; newlines become spaces). */
void rk_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Closes the watchdog timer (safe to call twice, or without init). */
void rk_notify_close(rk_notify *n);
/* 1 when NOTIFY_SOCKET is set (a service manager is listening). */
int rk_notify_enabled(void);

#endif /* RK_NOTIFY_H */
