/* config_attest_apple.c: the section of a platform with provider app_attest
 * (Apple App Attest; issuance/attest_appattest.c, docs/configuration.md):
 *
 *   ios: {provider: app_attest, app_ids: ["TEAMID.bundle.id", ...],
 *         root_ca: FILE, environment: production | development | any}
 *
 * The root CA file is opened and checked here (PEM, every certificate a CA),
 * so a gateway never starts with a root it cannot use; the provider loads it
 * again. Errors go through the walker with the node they concern. */
#include "config_int.h"
#include "walk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define NF(a) (sizeof(a) / sizeof((a)[0]))

/* Boolean: "TEAMID.bundle.id": a 10-character Team ID of [A-Z0-9], '.', a
 * bundle id of [A-Za-z0-9-] labels separated by single dots. */
static int app_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 12 || n > CFG_AA_APP_ID_MAX || s[10] != '.')
        return 0;
    for (size_t i = 0; i < 10; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    for (size_t i = 11; i < n; i++) {
        char c = s[i];
        int label = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        if (!label && !(c == '.' && s[i - 1] != '.' && i + 1 < n))
            return 0;
    }
    return 1;
}

static void parse_app_ids(cfgw_t *w, yaml_node_t *n, const char *p, cfg_app_attest_t *aa)
{
    char q[CFGW_PATHLEN], r[CFGW_PATHLEN];
    yaml_node_item_t *items;
    cfgw_pk(q, p, "app_ids");
    long cnt = cfgw_seq_range(w, n, q, 1, CFG_AA_MAX_APP_IDS, &items);
    if (cnt < 0)
        return;
    aa->app_ids = cfgp_xcalloc((size_t)cnt, sizeof *aa->app_ids);
    for (long i = 0; i < cnt; i++) {
        yaml_node_t *m = cfgw_node(w, items[i]);
        const char *s;
        if (!m || !(s = cfgw_scalar(w, m, cfgw_pi(r, q, (size_t)i), "an app id TEAMID.bundle.id")))
            continue;
        if (!app_id_valid(s)) {
            cfgw_err(w, m, r, "expected an app id like ABCDE12345.com.example.app (Team ID: 10 "
                     "characters A-Z 0-9, then the bundle id), got \"%.80s\"", s);
            continue;
        }
        size_t k;
        for (k = 0; k < aa->napp_ids && strcmp(aa->app_ids[k], s); k++)
            ;
        if (k < aa->napp_ids) {
            cfgw_err(w, m, r, "app id \"%.80s\" is listed twice", s);
            continue;
        }
        snprintf(aa->app_ids[aa->napp_ids++], CFG_AA_APP_ID_MAX + 1, "%s", s);
    }
}

/* The root CA file: PEM certificates, at least one, each a CA. */
static void check_root(cfgw_t *w, yaml_node_t *n, const char *q, const char *path)
{
    char msg[512];
    BIO *b = cfg_open_file(path, msg, sizeof msg);
    if (!b) {
        cfgw_err(w, n, q, "%s", msg);
        return;
    }
    X509 *x;
    int cnt = 0, bad = 0;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        cnt++;
        bad += X509_check_ca(x) < 1;
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (cnt == 0)
        cfgw_err(w, n, q, "\"%s\" holds no PEM certificate (expected the Apple App Attestation "
                 "Root CA)", path);
    else if (bad)
        cfgw_err(w, n, q, "\"%s\" holds a certificate that is not a CA (basicConstraints CA:TRUE "
                 "is required)", path);
}

void cfgi_parse_app_attest(cfgw_t *w, yaml_node_t *n, const char *p, cfg_app_attest_t *aa)
{
    enum { PROVIDER, APP_IDS, ROOT, ENV };
    cfgw_fld_t f[] = {{.name = "provider"}, {.name = "app_ids"}, {.name = "root_ca"},
                      {.name = "environment"}};
    static const char *const envs[] = {"production", "development", "any"};
    char q[CFGW_PATHLEN];
    const char *s;
    aa->environment = CFG_AA_PRODUCTION;
    if (cfgw_map(w, n, p, f, NF(f)) < 0)
        return;
    for (int i = APP_IDS; i <= ROOT; i++)
        if (!f[i].val)
            cfgw_err(w, n, p, "missing required key \"%s\" (provider app_attest)", f[i].name);
    if (f[APP_IDS].val)
        parse_app_ids(w, f[APP_IDS].val, p, aa);
    if (f[ROOT].val && (s = cfgw_scalar(w, f[ROOT].val, cfgw_pk(q, p, "root_ca"), "a file path"))) {
        aa->root_ca_file = cfgp_xstrdup(s);
        check_root(w, f[ROOT].val, q, s);
    }
    if (f[ENV].val)
        cfgw_enum(w, f[ENV].val, cfgw_pk(q, p, "environment"), envs, NF(envs), &aa->environment);
}

void cfgi_free_app_attest(cfg_app_attest_t *aa)
{
    free(aa->app_ids);
    free(aa->root_ca_file);
    memset(aa, 0, sizeof *aa);
}
