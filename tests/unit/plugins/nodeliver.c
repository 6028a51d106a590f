/*
 * nodeliver.c — test plugin for the connector host: a v1 descriptor
 * without a deliver callback.
 */
#include "rekey_connector.h"

static int t_open(const rk_connector_open_args *a, void **inst, char *err, size_t n)
{
    (void)a; (void)err; (void)n;
    *inst = 0;
    return 0;
}
static void t_close(void *inst) { (void)inst; }

static const rk_connector desc = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = sizeof(rk_connector),
    .name = "nodeliver",
    .version = "0",
    .open = t_open,
    .close = t_close,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void) { return &desc; }
