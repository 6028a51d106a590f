/*
 * abi2.c — test plugin for the connector host: a descriptor from a
 * future ABI major version 2.  The host must refuse it, naming 2.0 and
 * its own version.
 */
#include "rekey_connector.h"

static int t_open(const rk_connector_open_args *a, void **inst, char *err, size_t n)
{
    (void)a; (void)err; (void)n;
    *inst = 0;
    return 0;
}
static rk_deliver_status t_deliver(void *inst, const rk_record *r, rk_deliver_result *res)
{
    (void)inst; (void)r; (void)res;
    return RK_DELIVER_OK;
}
static void t_close(void *inst) { (void)inst; }

static const rk_connector desc = {
    .abi_version = (2u << 16) | 0u,
    .struct_size = sizeof(rk_connector),
    .name = "abi2",
    .version = "0",
    .open = t_open,
    .deliver = t_deliver,
    .close = t_close,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void) { return &desc; }
