/*
 * smallstruct.c — test plugin for the connector host: the descriptor
 * claims fewer bytes than ABI 1 needs (a plugin built against a header
 * that never existed, or a corrupted one).
 */
#include <stddef.h>
#include "rekey_connector.h"

static const rk_connector desc = {
    .abi_version = RK_CONNECTOR_ABI_VERSION,
    .struct_size = (uint32_t)offsetof(rk_connector, deliver),
    .name = "smallstruct",
};

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void) { return &desc; }
