/* config_attest_android.c: a platform with provider android_key_attestation
 * (docs/configuration.md, issuance.platforms):
 *
 *   android:
 *     provider: android_key_attestation
 *     roots: [google-roots.pem]            # PEM, at least one CA certificate
 *     packages:
 *       - {name: com.example.app, signing_sha256: [<hex or base64url>, ...]}
 *     min_security_level: tee              # tee | strongbox
 *     allow_unverified_boot: false
 *     revocation_status_file: status.json  # optional, Google's format
 *     require: [android_key_attestation, play_integrity]   # optional
 *     play_integrity: {package_name: ..., decryption_key_file: ..., ...}
 *
 * The roots are read and checked here; the status file is read here and
 * parsed when the issuance generation is loaded (issuance/attest_android.c),
 * whose refusal also refuses the start or the reload.
 */
#include "config_int.h"
#include "walk.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>
#include <yaml.h>

#define NF(a) (sizeof(a) / sizeof((a)[0]))
#define F(n) {.name = (n)}
#define MAX_STATUS_FILE (64u << 20)   /* Google's list is a few hundred kB */

static void parse_roots(cfgw_t *w, yaml_node_t *n, const char *p, cfg_android_key_t *a)
{
    char q[CFGW_PATHLEN], r[CFGW_PATHLEN], msg[512];
    yaml_node_item_t *items;
    long cnt = cfgw_seq_range(w, n, cfgw_pk(q, p, "roots"), 1, CFG_ANDROID_MAX_ROOTS, &items);
    for (long i = 0; i < cnt; i++) {
        yaml_node_t *m = cfgw_node(w, items[i]);
        const char *s;
        STACK_OF(X509) *sk = NULL;
        if (!m || !(s = cfgw_scalar(w, m, cfgw_pi(r, q, (size_t)i), "a PEM file of root CAs")))
            continue;
        if (cfgp_load_ca(s, &sk, msg, sizeof msg) < 0)
            cfgw_err(w, m, r, "%s", msg);
        else
            a->roots[a->nroots++] = cfgp_xstrdup(s);
        sk_X509_pop_free(sk, X509_free);
    }
}

static int package_name_ok(const char *s)
{
    int ok = strlen(s) <= 255 && strchr(s, '.') && s[0] != '.';
    for (const char *t = s; ok && *t; t++)
        ok = isalnum((unsigned char)*t) || *t == '.' || *t == '_';
    return ok;
}

static void parse_package(cfgw_t *w, yaml_node_t *n, const char *p, cfg_android_key_t *a)
{
    cfgw_fld_t f[] = {F("name"), F("signing_sha256")};
    char q[CFGW_PATHLEN], r[CFGW_PATHLEN];
    const char *s;
    yaml_node_item_t *items;
    if (cfgw_map(w, n, p, f, NF(f)) < 0)
        return;
    cfg_android_package_t *pk = &a->packages[a->npackages];
    if (cfgw_require(w, n, p, &f[0]) &&
        (s = cfgw_scalar(w, f[0].val, cfgw_pk(q, p, "name"), "an Android package name"))) {
        if (!package_name_ok(s))
            cfgw_err(w, f[0].val, q, "expected an Android package name like com.example.app, "
                     "got \"%.60s\"", s);
        else
            for (size_t i = 0; i < a->npackages; i++)
                if (a->packages[i].name && !strcmp(a->packages[i].name, s))
                    cfgw_err(w, f[0].val, q, "duplicate package \"%.60s\"", s);
        pk->name = cfgp_xstrdup(s);
    }
    if (!cfgw_require(w, n, p, &f[1]))
        goto out;
    long cnt = cfgw_seq_range(w, f[1].val, cfgw_pk(q, p, "signing_sha256"), 1,
                              CFG_PLAY_MAX_DIGESTS, &items);
    for (long i = 0; i < cnt; i++) {
        yaml_node_t *m = cfgw_node(w, items[i]);
        if (!m || !(s = cfgw_scalar(w, m, cfgw_pi(r, q, (size_t)i), "a SHA-256 digest")))
            continue;
        if (cfgi_parse_digest(s, pk->digests[pk->ndigests]) < 0)
            cfgw_err(w, m, r, "expected the app signing certificate's SHA-256 as hex (64 "
                     "digits) or base64url (43 characters), got \"%.70s\"", s);
        else
            pk->ndigests++;
    }
out:
    a->npackages++;   /* owned by a even when incomplete (freed with it) */
}

static void parse_packages(cfgw_t *w, yaml_node_t *n, const char *p, cfg_android_key_t *a)
{
    char q[CFGW_PATHLEN], r[CFGW_PATHLEN];
    yaml_node_item_t *items;
    long cnt = cfgw_seq_range(w, n, cfgw_pk(q, p, "packages"), 1, CFG_ANDROID_MAX_PACKAGES,
                              &items);
    for (long i = 0; i < cnt; i++) {
        yaml_node_t *m = cfgw_node(w, items[i]);
        if (m)
            parse_package(w, m, cfgw_pi(r, q, (size_t)i), a);
    }
}

/* require: [android_key_attestation, play_integrity?]. */
static void parse_require(cfgw_t *w, yaml_node_t *n, const char *p, cfg_android_key_t *a)
{
    static const char *const names[] = {"android_key_attestation", "play_integrity"};
    char q[CFGW_PATHLEN], r[CFGW_PATHLEN];
    yaml_node_item_t *items;
    int seen[2] = {0, 0};
    long cnt = cfgw_seq_range(w, n, cfgw_pk(q, p, "require"), 1, 2, &items);
    for (long i = 0; i < cnt; i++) {
        yaml_node_t *m = cfgw_node(w, items[i]);
        int k;
        if (!m || cfgw_enum(w, m, cfgw_pi(r, q, (size_t)i), names, NF(names), &k) < 0)
            continue;
        if (seen[k]++)
            cfgw_err(w, m, r, "\"%s\" listed twice", names[k]);
    }
    if (cnt > 0 && !seen[0])
        cfgw_err(w, n, q, "must list android_key_attestation (the provider of this platform)");
    a->with_play = seen[1] > 0;
}

static void parse_status_file(cfgw_t *w, cfgw_fld_t *f, const char *p, cfg_android_key_t *a)
{
    char q[CFGW_PATHLEN], msg[512];
    const char *s;
    size_t len;
    if (!f->val || !(s = cfgw_scalar(w, f->val, cfgw_pk(q, p, f->name), "a file path")))
        return;
    char *text = cfg_read_file(s, MAX_STATUS_FILE, &len, msg, sizeof msg);
    if (!text)
        cfgw_err(w, f->val, q, "%s", msg);
    else
        a->revocation_status_file = cfgp_xstrdup(s);
    free(text);
}

/* The key node (want_key) or the value node of `key` in mapping m, or NULL. */
static yaml_node_t *map_find(cfgw_t *w, yaml_node_t *m, const char *key, int want_key)
{
    if (m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *x = m->data.mapping.pairs.start; x < m->data.mapping.pairs.top; x++) {
        yaml_node_t *k = cfgw_node(w, x->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
            return want_key ? k : cfgw_node(w, x->value);
    }
    return NULL;
}

/* play_integrity.package_name (node n) must be one of packages[].name:
 * both checks must vouch for the same app. */
static void check_play_package(cfgw_t *w, yaml_node_t *n, const char *q, const cfg_platform_t *pl)
{
    const char *name = pl->play.package_name;
    char r[CFGW_PATHLEN];
    if (!n || !name)
        return;   /* missing or malformed: already reported */
    for (size_t i = 0; i < pl->android.npackages; i++)
        if (pl->android.packages[i].name && !strcmp(pl->android.packages[i].name, name))
            return;
    cfgw_err(w, n, cfgw_pk(r, q, "package_name"), "\"%.60s\" is not one of packages[].name "
             "(the Play Integrity token and the key attestation must vouch for the same app)",
             name);
}

void cfga_parse_android(cfgw_t *w, cfg_t *cfg, yaml_node_t *n, const char *p, cfg_platform_t *pl)
{
    enum { PROVIDER, ROOTS, PACKAGES, LEVEL, UNVERIFIED, STATUS, REQUIRE, PLAY };
    cfgw_fld_t f[] = {F("provider"), F("roots"), F("packages"), F("min_security_level"),
                      F("allow_unverified_boot"), F("revocation_status_file"), F("require"),
                      F("play_integrity")};
    static const char *const levels[] = {"tee", "strongbox"};
    cfg_android_key_t *a = &pl->android;
    char q[CFGW_PATHLEN];
    a->min_level = 1;
    if (cfgw_map(w, n, p, f, NF(f)) < 0)
        return;
    if (cfgw_require(w, n, p, &f[ROOTS]))
        parse_roots(w, f[ROOTS].val, p, a);
    if (cfgw_require(w, n, p, &f[PACKAGES]))
        parse_packages(w, f[PACKAGES].val, p, a);
    int lv;
    if (f[LEVEL].val &&
        cfgw_enum(w, f[LEVEL].val, cfgw_pk(q, p, "min_security_level"), levels, NF(levels), &lv) == 0)
        a->min_level = lv + 1;
    cfgw_opt_bool(w, &f[UNVERIFIED], p, &a->allow_unverified_boot);
    parse_status_file(w, &f[STATUS], p, a);
    if (f[REQUIRE].val)
        parse_require(w, f[REQUIRE].val, p, a);
    cfgw_pk(q, p, "play_integrity");
    if (a->with_play && !f[PLAY].val) {
        cfgw_err(w, f[REQUIRE].val, cfgw_pk(q, p, "require"), "lists play_integrity, so "
                 "the play_integrity settings are required (play_integrity: {package_name, "
                 "decryption_key_file, verification_key_file, certificate_sha256_digests})");
    } else if (f[PLAY].val && !a->with_play) {
        cfgw_err(w, f[PLAY].key, q, "given, but require does not list play_integrity (add "
                 "require: [android_key_attestation, play_integrity], or remove these settings)");
    } else if (f[PLAY].val) {
        yaml_node_t *xk = map_find(w, f[PLAY].val, "provider", 1);
        if (xk)
            cfgw_err(w, xk, q, "takes no provider (it is the Play Integrity check of this "
                     "platform)");
        cfgi_parse_play(w, cfg, f[PLAY].val, q, &pl->play);
        check_play_package(w, map_find(w, f[PLAY].val, "package_name", 0), q, pl);
    }
}

void cfga_android_free(cfg_android_key_t *a)
{
    for (size_t i = 0; i < a->nroots; i++)
        free(a->roots[i]);
    for (size_t i = 0; i < a->npackages; i++)
        free(a->packages[i].name);
    free(a->revocation_status_file);
    memset(a, 0, sizeof *a);
}
