/*
 * noentry.c — test plugin for the connector host: a shared object that
 * does not export rk_connector_entry (a typo in the name).
 */
#include "rekey_connector.h"

RK_CONNECTOR_EXPORT int rk_connector_entyr(void);
RK_CONNECTOR_EXPORT int rk_connector_entyr(void) { return 1; }
