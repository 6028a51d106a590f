/*
 * nulldesc.c — test plugin for the connector host: the entry function
 * returns NULL.
 */
#include "rekey_connector.h"

RK_CONNECTOR_EXPORT const rk_connector *rk_connector_entry(void) { return NULL; }
