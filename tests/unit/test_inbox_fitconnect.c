/*
 * test_inbox_fitconnect.c — the parts of the FIT-Connect source that need
 * no server: the callback check the operator API calls
 * (rk_fitconnect_callback_check: MAC, age, missing headers, no secret) and
 * the [fitconnect NAME] settings (defaults, key paths relative to the
 * configuration file, required keys, a destination id that is no UUID).
 * The source itself is tested against a fake delivery service in
 * tests/system/test_fitconnect.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "inbox_fitconnect.h"
#include "jose.h"
#include "util.h"

#define DEST "7d3c1f0e-5a4b-4c2d-9e8f-0a1b2c3d4e5f"

/* ---- callbacks --------------------------------------------------------- */

static const char body[] = "{\"type\":\"https://schema.fitko.de/fit-connect/callbacks/"
                           "new-submissions\",\"submissionIds\":[]}";

static rk_fitconnect_config cb_cfg(char *secret)
{
    rk_fitconnect_config c;
    memset(&c, 0, sizeof c);
    c.name = "portal";
    c.callback_secret = secret;
    return c;
}

static void test_callback_valid_and_tampered(void **state)
{
    (void)state;
    char secret[] = "cb-secret-1234";
    rk_fitconnect_config c = cb_cfg(secret);
    char mac[129], err[256];
    assert_int_equal(rk_callback_mac(secret, strlen(secret), "1767225600", body,
                                     strlen(body), mac, sizeof mac), 0);
    assert_int_equal(rk_fitconnect_callback_check(&c, "1767225600", mac, body, strlen(body),
                                                  1767225600 + 10, err, sizeof err), 0);
    /* another body, another timestamp, another secret: refused */
    assert_int_equal(rk_fitconnect_callback_check(&c, "1767225600", mac, body,
                                                  strlen(body) - 1, 1767225600, err,
                                                  sizeof err), RK_JOSE_E_MAC);
    assert_int_equal(rk_fitconnect_callback_check(&c, "1767225601", mac, body, strlen(body),
                                                  1767225600, err, sizeof err), RK_JOSE_E_MAC);
    char other[] = "cb-secret-1235";
    rk_fitconnect_config c2 = cb_cfg(other);
    assert_int_equal(rk_fitconnect_callback_check(&c2, "1767225600", mac, body, strlen(body),
                                                  1767225600, err, sizeof err), RK_JOSE_E_MAC);
}

static void test_callback_age(void **state)
{
    (void)state;
    char secret[] = "cb-secret-1234";
    rk_fitconnect_config c = cb_cfg(secret);
    char mac[129], err[256];
    assert_int_equal(rk_callback_mac(secret, strlen(secret), "1767225600", body,
                                     strlen(body), mac, sizeof mac), 0);
    /* five minutes is the limit on both sides */
    assert_int_equal(rk_fitconnect_callback_check(&c, "1767225600", mac, body, strlen(body),
                                                  1767225600 + 300, err, sizeof err), 0);
    assert_int_equal(rk_fitconnect_callback_check(&c, "1767225600", mac, body, strlen(body),
                                                  1767225600 + 301, err, sizeof err),
                     RK_JOSE_E_STALE);
    assert_int_equal(rk_fitconnect_callback_check(&c, "1767225600", mac, body, strlen(body),
                                                  1767225600 - 301, err, sizeof err),
                     RK_JOSE_E_STALE);
}

static void test_callback_refused_without_secret_or_headers(void **state)
{
    (void)state;
    char secret[] = "cb-secret-1234";
    rk_fitconnect_config none = cb_cfg(NULL);
    rk_fitconnect_config c = cb_cfg(secret);
    char err[256];
    assert_int_equal(rk_fitconnect_callback_check(&none, "1767225600", "00", body,
                                                  strlen(body), 1767225600, err, sizeof err),
                     RK_E_CONFIG);
    assert_non_null(strstr(err, "[fitconnect portal] has no callback_secret"));
    assert_int_equal(rk_fitconnect_callback_check(&c, NULL, "00", body, strlen(body),
                                                  1767225600, err, sizeof err), RK_E_FORMAT);
    assert_non_null(strstr(err, "callback-timestamp"));
    assert_int_equal(rk_fitconnect_callback_check(&c, "1767225600", NULL, body, strlen(body),
                                                  1767225600, err, sizeof err), RK_E_FORMAT);
    assert_non_null(strstr(err, "callback-authentication"));
}

/* ---- settings ---------------------------------------------------------- */

/* Writes text (after an [inbox] section) to a fresh folder and loads it. */
static int load(const char *text, char *dir, size_t dirlen, rk_config *cfg, char *err,
                size_t errlen)
{
    char tmpl[] = "/tmp/rk_fc_XXXXXX", real[PATH_MAX], file[PATH_MAX + 16];
    if (!mkdtemp(tmpl) || !realpath(tmpl, real))
        return -1;
    snprintf(dir, dirlen, "%s", real);
    snprintf(file, sizeof file, "%s/rekeyd.ini", real);
    FILE *f = fopen(file, "w");
    if (!f)
        return -1;
    fprintf(f, "[inbox]\npath = inbox\n%s", text);
    fclose(f);
    int rc = rk_config_load(file, cfg, err, errlen);
    unlink(file);
    rmdir(real);
    return rc;
}

static void test_settings_defaults_and_paths(void **state)
{
    (void)state;
    char dir[PATH_MAX], err[1024], want[PATH_MAX + 32];
    rk_config cfg;
    int rc = load("[fitconnect portal]\n"
                  "api_url = https://submission-api-testing.fit-connect.fitko.dev/\n"
                  "token_url = https://auth-testing.fit-connect.fitko.dev/token\n"
                  "client_id = abc\nclient_secret = s3cret\n"
                  "destination_id = " DEST "\n"
                  "decryption_key = keys/enc.jwk.json\nsigning_key = /etc/rekey/sig.pem\n"
                  "signing_kid = sig-2026\n",
                  dir, sizeof dir, &cfg, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.n_fitconnects, 1);
    const rk_fitconnect_config *f = &cfg.fitconnects[0];
    assert_string_equal(f->name, "portal");
    assert_string_equal(f->api_url, "https://submission-api-testing.fit-connect.fitko.dev");
    assert_string_equal(f->destination_id, DEST);
    snprintf(want, sizeof want, "%s/keys/enc.jwk.json", dir);
    assert_string_equal(f->decryption_key, want);
    assert_string_equal(f->signing_key, "/etc/rekey/sig.pem");
    assert_string_equal(f->signing_kid, "sig-2026");
    assert_null(f->callback_secret);
    assert_int_equal(f->token_auth_basic, 0);
    assert_int_equal(f->poll_interval_ms, 30000);
    assert_int_equal(f->poll_jitter_ms, 1000);
    assert_int_equal(f->page_size, 100);
    assert_int_equal(f->max_inflight, 4);
    assert_int_equal(f->timeout_ms, 60000);
    assert_int_equal(f->connect_timeout_ms, 10000);
    assert_int_equal(f->max_list_size, 1u << 20);
    assert_int_equal(f->max_submission_size, 100u << 20);
    assert_int_equal(f->max_attachments, 100);
    assert_int_equal(f->backoff_initial_ms, 1000);
    assert_int_equal(f->backoff_max_ms, 300000);
    assert_int_equal(f->once_retries, 5);
    rk_config_free(&cfg);
}

static void test_settings_refused(void **state)
{
    (void)state;
    char dir[PATH_MAX], err[1024];
    rk_config cfg;
    static const char base[] = "[fitconnect portal]\napi_url = https://a.example\n"
                               "token_url = https://a.example/token\nclient_id = abc\n"
                               "client_secret = s\ndecryption_key = e\nsigning_key = s\n";
    assert_int_not_equal(load(base, dir, sizeof dir, &cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "[fitconnect portal] destination_id (the UUID of the "
                                "destination) is required"));
    char text[1024];
    snprintf(text, sizeof text, "%sdestination_id = 7d3c1f0e-5a4b-4c2d-9e8f\n", base);
    assert_int_not_equal(load(text, dir, sizeof dir, &cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "destination_id must be a UUID"));
    snprintf(text, sizeof text, "%sdestination_id = " DEST "\npage_size = 501\n", base);
    assert_int_not_equal(load(text, dir, sizeof dir, &cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "page_size must be a whole number from 1 to 500"));
    snprintf(text, sizeof text, "%sdestination_id = " DEST "\nlist_url = https://x\n", base);
    assert_int_not_equal(load(text, dir, sizeof dir, &cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "unknown setting 'list_url' in section [fitconnect portal]"));
    snprintf(text, sizeof text, "%sdestination_id = " DEST "\napi_url = https://x/?a=1\n", base);
    assert_int_not_equal(load(text, dir, sizeof dir, &cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "api_url must be an http:// or https:// URL without a query"));
    assert_int_not_equal(load("[fitconnect bad name!]\napi_url = https://x\n", dir, sizeof dir,
                              &cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "needs a name of 1 to 40"));
    /* the secret itself is never echoed */
    snprintf(text, sizeof text, "%sdestination_id = " DEST "\ncallback_secret =\n", base);
    assert_int_not_equal(load(text, dir, sizeof dir, &cfg, err, sizeof err), 0);
    assert_non_null(strstr(err, "callback_secret must be one non-empty line"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_callback_valid_and_tampered),
        cmocka_unit_test(test_callback_age),
        cmocka_unit_test(test_callback_refused_without_secret_or_headers),
        cmocka_unit_test(test_settings_defaults_and_paths),
        cmocka_unit_test(test_settings_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
