/*
 * abi10.c — test plugin for the connector host: a connector built against
 * ABI 1.0, before deliver_batch was appended.  Its descriptor ends with
 * close(); the bytes after it (here a deliver_batch that aborts) are not
 * the plugin's to define, so the host must never read them.
 */
#include <stddef.h>
#include <stdlib.h>
#include "rekey_connector.h"

static int a_open(const rk_connector_open_args *args, void **inst, char *err, size_t n)
{
    (void)args;
    (void)err;
    (void)n;
    *inst = NULL;
    return 0;
}

static rk_deliver_status a_deliver(void *inst, const rk_record *rec, rk_deliver_result *res)
{
    (void)inst;
    (void)rec;
    (void)res;
    return RK_DELIVER_OK;
}

static void a_close(void *inst) { (void)inst; }

static void a_batch(void *inst, size_t n, const rk_record *const *r,
                    rk_deliver_result *const *res, rk_deliver_status *st)
{
    (void)inst;
    (void)n;
    (void)r;
    (void)res;
    (void)st;
    abort(); /* beyond the 1.0 descriptor: the host must not call it */
}

static const rk_connector desc = {
    .abi_version = (uint32_t)(1u << 16), /* 1.0 */
    .struct_size = (uint32_t)offsetof(rk_connector, deliver_batch),
    .name = "abi10",
    .version = "1",
    .description = "an ABI 1.0 connector",
    .settings = NULL,
    .open = a_open,
    .deliver = a_deliver,
    .close = a_close,
    .deliver_batch = a_batch,
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void) { return &desc; }
