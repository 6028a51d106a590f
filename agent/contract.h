/*
 * contract.h — `rekeyctl connector-test`: the contract tests of a
 * connector plugin, run outside the daemon.
 *
 * Loads one connector shared object through the host (connector.h) and
 * checks what rekeyd relies on: the ABI version and descriptor size, the
 * name, the settings table, that the host refuses unknown keys and
 * missing required keys, open/deliver/close with valid result codes and
 * terminated messages, a repeated idempotency key, a NULL and a non-ASCII
 * value, that secret values never show, and that open/close leaks no
 * descriptors, threads or heap.  One line per check; see
 * docs/connectors.md ("Testing a connector: rekeyctl connector-test").
 *
 * Ownership: nothing crosses this API but the streams, which stay the
 * caller's.
 */
#ifndef RK_CONTRACT_H
#define RK_CONTRACT_H

#include <stdio.h>

/* Runs `connector-test` with argv[0] being the word "connector-test"
 * (argv as rekeyctl received it, less the program name).  out gets the
 * report, err usage errors.  Returns 0 when every check passed, 1 when
 * one failed, 2 on a usage error. */
int rk_contract_main(int argc, char **argv, FILE *out, FILE *err);

#endif /* RK_CONTRACT_H */
