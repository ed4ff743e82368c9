/* config_issuance.c: the optional "issuance" section (device certificates).
 *
 * Called by config.c once tls and identity have been read; every problem is
 * reported through the callback with the node it concerns, so it gets the
 * same "file:line:col: path: message" form as the rest of the config. The
 * signing CA, its key, the optional chain and the Play Integrity key files
 * are opened and checked here, so a gateway never starts with an issuance
 * setup that would fail on the first request. Nothing is kept open: the
 * issuance module loads the files again (issuance/issuance.h).
 */
#include "config_int.h"
#include "route.h"
#include "walk.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <yaml.h>

#define NF(a) (sizeof(a) / sizeof((a)[0]))
#define HOUR_MS 3600000ULL
#define DAY_MS 86400000ULL
#define F(n) {.name = (n)}

typedef struct {
    cfgw_t w;
    cfg_t *cfg;
} ictx_t;

static const char *const verdict_names[] = {"MEETS_BASIC_INTEGRITY", "MEETS_DEVICE_INTEGRITY",
                                            "MEETS_STRONG_INTEGRITY", "MEETS_VIRTUAL_INTEGRITY"};

/* ---------------------------------------------------------------- helpers */

/* Optional duration in min..max milliseconds; shown as lo_text..hi_text. */
static void idur(ictx_t *c, cfgw_fld_t *f, const char *parent, uint64_t min, uint64_t max,
                 const char *range, uint64_t *out)
{
    char p[CFGW_PATHLEN], msg[300];
    uint64_t v;
    if (!f->val)
        return;
    const char *s = cfgw_scalar(&c->w, f->val, cfgw_pk(p, parent, f->name),
                                "a duration like 500ms, 10s, 5m, 1h");
    if (!s)
        return;
    if (cfgp_check_number('d', s, 0, UINT64_MAX, &v, msg, sizeof msg) < 0)
        cfgw_err(&c->w, f->val, p, "%s", msg);
    else if (v < min || v > max)
        cfgw_err(&c->w, f->val, p, "must be %s, got \"%.60s\"", range, s);
    else
        *out = v;
}

/* An integrity level name (enum cfg_integrity) into *out. */
static void parse_level(ictx_t *c, yaml_node_t *n, const char *path, int *out)
{
    const char *names[CFG_INT__COUNT];
    for (int i = 0; i < CFG_INT__COUNT; i++)
        names[i] = cfg_integrity_name(i);
    cfgw_enum(&c->w, n, path, names, CFG_INT__COUNT, out);
}

/* issuance.lifetime_by_integrity: {none, basic, device, strong}, each a
 * lifetime within issuance.lifetime's bounds; a level not named keeps
 * issuance.lifetime (set before this runs). */
static void parse_lifetimes(ictx_t *c, yaml_node_t *n, cfg_issuance_t *is)
{
    cfgw_fld_t f[CFG_INT__COUNT];
    memset(f, 0, sizeof f);
    for (int i = 0; i < CFG_INT__COUNT; i++) {
        f[i].name = cfg_integrity_name(i);
        is->lifetime_by_integrity_ms[i] = is->lifetime_ms;
    }
    if (!n || cfgw_map(&c->w, n, "issuance.lifetime_by_integrity", f, NF(f)) < 0)
        return;
    for (int i = 0; i < CFG_INT__COUNT; i++)
        idur(c, &f[i], "issuance.lifetime_by_integrity", HOUR_MS, 90 * DAY_MS, "between 1h and 90d",
             &is->lifetime_by_integrity_ms[i]);
}

static char *ipath(ictx_t *c, cfgw_fld_t *f, const char *parent)
{
    char p[CFGW_PATHLEN];
    const char *s;
    if (!f->val || !(s = cfgw_scalar(&c->w, f->val, cfgw_pk(p, parent, f->name), "a file path")))
        return NULL;
    return cfgp_xstrdup(s);
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* All certificates of a PEM file (at least one); NULL with msg. */
static STACK_OF(X509) *read_certs(const char *path, char *msg, size_t len)
{
    BIO *b = cfg_open_file(path, msg, len);
    if (!b)
        return NULL;
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    while (sk && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            break;
        }
    }
    BIO_free(b);
    if (!sk || sk_X509_num(sk) == 0) {
        snprintf(msg, len, "\"%s\" holds no PEM certificate", path);
        sk_X509_pop_free(sk, X509_free);
        sk = NULL;
    }
    ERR_clear_error();
    return sk;
}

/* Standard base64 (whitespace ignored) into out; decoded length or -1. */
static long b64_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    char *clean = malloc(len + 1);
    size_t n = 0, pad = 0;
    if (!clean)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)s[i]))
            clean[n++] = s[i];
    clean[n] = '\0';
    if (n == 0 || n % 4 || n / 4 * 3 > cap) {
        free(clean);
        return -1;
    }
    pad = (clean[n - 1] == '=') + (n > 1 && clean[n - 2] == '=');
    int r = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)n);
    free(clean);
    return r < 0 ? -1 : (long)r - (long)pad;
}

/* ---------------------------------------------------------------- CA */

static void check_ca(ictx_t *c, cfg_issuance_t *is, cfgw_fld_t *fcert, cfgw_fld_t *fkey,
                     cfgw_fld_t *fchain, const char *cls_ca_file, int cls_known)
{
    char msg[512];
    STACK_OF(X509) *sk = NULL, *bundle = NULL;
    X509 *ca = NULL;
    if (is->ca_cert_file) {
        const char *p = "issuance.ca_cert";
        if (!(sk = read_certs(is->ca_cert_file, msg, sizeof msg))) {
            cfgw_err(&c->w, fcert->val, p, "%s", msg);
        } else if (sk_X509_num(sk) != 1) {
            cfgw_err(&c->w, fcert->val, p,
                     "\"%s\" must hold exactly one certificate (the signing CA; "
                     "put intermediates above it in issuance.chain)", is->ca_cert_file);
        } else {
            ca = sk_X509_value(sk, 0);
            if (X509_check_ca(ca) < 1)
                cfgw_err(&c->w, fcert->val, p, "\"%s\" is not a CA certificate (basicConstraints "
                         "CA:TRUE is required)", is->ca_cert_file);
            else if ((X509_get_extension_flags(ca) & EXFLAG_KUSAGE) &&
                     !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN))
                cfgw_err(&c->w, fcert->val, p, "\"%s\" may not sign certificates (keyUsage lacks "
                         "keyCertSign)", is->ca_cert_file);
            else if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0)
                cfgw_err(&c->w, fcert->val, p, "\"%s\" has expired", is->ca_cert_file);
            else if (cls_known && cls_ca_file) {
                int found = 0;
                if ((bundle = read_certs(cls_ca_file, msg, sizeof msg)))
                    for (int i = 0; i < sk_X509_num(bundle) && !found; i++)
                        found = X509_cmp(sk_X509_value(bundle, i), ca) == 0;
                if (!found)
                    cfgw_err(&c->w, fcert->val, p,
                             "\"%s\" is not one of the CAs of class \"%s\" (%s): "
                             "certificates it signs would not be accepted", is->ca_cert_file,
                             is->device_class, cls_ca_file);
            }
        }
    }
    if (is->ca_key_file) {
        const char *p = "issuance.ca_key";
        BIO *b = cfg_open_file(is->ca_key_file, msg, sizeof msg);
        EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
        if (!b)
            cfgw_err(&c->w, fkey->val, p, "%s", msg);
        else if (!k)
            cfgw_err(&c->w, fkey->val, p, "\"%s\" is not an unencrypted PEM private key: %s",
                     is->ca_key_file, cfg_ossl_reason());
        else if (ca && X509_check_private_key(ca, k) != 1)
            cfgw_err(&c->w, fkey->val, p,
                     "key in \"%s\" does not match the CA certificate in \"%s\"",
                     is->ca_key_file, is->ca_cert_file);
        EVP_PKEY_free(k);
        BIO_free(b);
        ERR_clear_error();
    }
    if (is->chain_file) {
        STACK_OF(X509) *ch = read_certs(is->chain_file, msg, sizeof msg);
        if (!ch)
            cfgw_err(&c->w, fchain->val, "issuance.chain", "%s", msg);
        sk_X509_pop_free(ch, X509_free);
    }
    sk_X509_pop_free(bundle, X509_free);
    sk_X509_pop_free(sk, X509_free);
}

static void class_ref(ictx_t *c, yaml_node_t *sect, cfgw_fld_t *f, const char *path, char *name,
                      size_t *idx, int *known)
{
    const cfg_tls_t *t = &c->cfg->tls;
    const char *s = name;
    yaml_node_t *at = f->val ? f->val : sect;
    *known = 0;
    if (f->val && !(s = cfgw_scalar(&c->w, f->val, path, "a class name from tls.classes")))
        return;
    if (strlen(s) >= CFG_MAX_NAME) {
        cfgw_err(&c->w, at, path, "class name too long");
        return;
    }
    if (s != name)
        snprintf(name, CFG_MAX_NAME, "%s", s);
    for (size_t i = 0; i < t->nclasses; i++) {
        if (!strcmp(t->classes[i].name, s)) {
            *idx = i;
            *known = 1;
            return;
        }
    }
    if (t->nclasses) /* tls.classes itself broken: reported there */
        cfgw_err(&c->w, at, path, "class \"%.60s\" is not defined in tls.classes%s", s,
                 f->val ? "" : " (the default; set it to one of the defined classes)");
}

/* ---------------------------------------------------------------- platforms */

/* A SHA-256 digest as base64url (padding optional) or 64 hex digits. */
static int parse_digest(const char *s, unsigned char out[32])
{
    size_t n = strlen(s);
    if (n == 64) {
        for (size_t i = 0; i < 32; i++) {
            unsigned v = 0;
            for (int k = 0; k < 2; k++) {
                int ch = tolower((unsigned char)s[2 * i + (size_t)k]);
                if (!isxdigit(ch))
                    return -1;
                v = v * 16 + (unsigned)(isdigit(ch) ? ch - '0' : ch - 'a' + 10);
            }
            out[i] = (unsigned char)v;
        }
        return 0;
    }
    if (n == 44 && s[43] == '=')
        n = 43;
    if (n != 43)
        return -1;
    char b[45];
    unsigned char tmp[36];
    for (size_t i = 0; i < 43; i++) {
        char ch = s[i];
        if (ch == '-')
            ch = '+';
        else if (ch == '_')
            ch = '/';
        else if (!isalnum((unsigned char)ch))
            return -1;
        b[i] = ch;
    }
    b[43] = '=';
    b[44] = '\0';
    if (b64_decode(b, 44, tmp, sizeof tmp) != 32)
        return -1;
    memcpy(out, tmp, 32);
    return 0;
}

static void check_play_keys(ictx_t *c, cfg_play_integrity_t *pl, cfgw_fld_t *fdec,
                            cfgw_fld_t *fver, const char *p)
{
    char q[CFGW_PATHLEN], msg[512];
    size_t len;
    char *text;
    if (pl->decryption_key_file) {
        unsigned char key[64];
        cfgw_pk(q, p, "decryption_key_file");
        if (!(text = cfg_read_file(pl->decryption_key_file, CFG_MAX_KEY_FILE, &len, msg, sizeof msg)))
            cfgw_err(&c->w, fdec->val, q, "%s", msg);
        else if (b64_decode(text, len, key, sizeof key) != 32)
            cfgw_err(&c->w, fdec->val, q, "\"%s\" must hold the base64 AES-256 decryption key from "
                     "Play Console (32 bytes)", pl->decryption_key_file);
        OPENSSL_cleanse(key, sizeof key);
        if (text)
            OPENSSL_cleanse(text, len);
        free(text);
    }
    if (pl->verification_key_file) {
        EVP_PKEY *k = NULL;
        cfgw_pk(q, p, "verification_key_file");
        if (!(text = cfg_read_file(pl->verification_key_file, CFG_MAX_KEY_FILE, &len, msg, sizeof msg))) {
            cfgw_err(&c->w, fver->val, q, "%s", msg);
            return;
        }
        if (strstr(text, "-----BEGIN PUBLIC KEY-----")) {
            BIO *b = BIO_new_mem_buf(text, (int)len);
            k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
            BIO_free(b);
        } else {
            unsigned char der[4096];
            long n = b64_decode(text, len, der, sizeof der);
            const unsigned char *d = der;
            if (n > 0)
                k = d2i_PUBKEY(NULL, &d, n);
            if (k && d != der + n) {
                EVP_PKEY_free(k);
                k = NULL;
            }
        }
        char group[64] = "";
        size_t gl;
        if (k && EVP_PKEY_get_id(k) == EVP_PKEY_EC)
            EVP_PKEY_get_group_name(k, group, sizeof group, &gl);
        if (!k || strcmp(group, "prime256v1") != 0)
            cfgw_err(&c->w, fver->val, q,
                     "\"%s\" must hold the EC P-256 verification key from Play "
                     "Console (base64 DER, or a PEM public key)", pl->verification_key_file);
        EVP_PKEY_free(k);
        ERR_clear_error();
        free(text);
    }
}

static void parse_play(ictx_t *c, yaml_node_t *n, const char *p, cfg_play_integrity_t *pl)
{
    enum { PROVIDER, PKG, DEC, VER, DIGESTS, VERDICTS, MAX_AGE };
    cfgw_fld_t f[] = {F("provider"), F("package_name"), F("decryption_key_file"),
                      F("verification_key_file"), F("certificate_sha256_digests"),
                      F("required_device_verdicts"), F("max_age")};
    char q[CFGW_PATHLEN], r[CFGW_PATHLEN];
    const char *s;
    pl->device_verdicts = CFG_PLAY_MEETS_DEVICE;
    pl->max_age_ms = 300000;
    if (cfgw_map(&c->w, n, p, f, NF(f)) < 0)
        return;
    for (int i = PKG; i <= DIGESTS; i++)
        if (!f[i].val)
            cfgw_err(&c->w, n, p, "missing required key \"%s\" (provider play_integrity)",
                     f[i].name);
    if (f[PKG].val && (s = cfgw_scalar(&c->w, f[PKG].val, cfgw_pk(q, p, "package_name"),
                                       "an Android package name"))) {
        int ok = strlen(s) <= 255 && strchr(s, '.') && s[0] != '.';
        for (const char *t = s; ok && *t; t++)
            ok = isalnum((unsigned char)*t) || *t == '.' || *t == '_';
        if (!ok)
            cfgw_err(&c->w, f[PKG].val, q, "expected an Android package name like com.example.app, "
                     "got \"%.60s\"", s);
        else
            pl->package_name = cfgp_xstrdup(s);
    }
    pl->decryption_key_file = ipath(c, &f[DEC], p);
    pl->verification_key_file = ipath(c, &f[VER], p);
    check_play_keys(c, pl, &f[DEC], &f[VER], p);
    if (f[DIGESTS].val) {
        yaml_node_t *d = f[DIGESTS].val;
        cfgw_pk(q, p, "certificate_sha256_digests");
        if (d->type != YAML_SEQUENCE_NODE) {
            cfgw_err(&c->w, d, q, "expected a sequence of SHA-256 digests");
        } else {
            size_t cnt = (size_t)(d->data.sequence.items.top - d->data.sequence.items.start);
            if (cnt < 1 || cnt > CFG_PLAY_MAX_DIGESTS)
                cfgw_err(&c->w, d, q, "expected 1..%d digests, got %zu", CFG_PLAY_MAX_DIGESTS, cnt);
            for (size_t i = 0; i < cnt && i < CFG_PLAY_MAX_DIGESTS; i++) {
                yaml_node_t *m = cfgw_node(&c->w, d->data.sequence.items.start[i]);
                if (!m || !(s = cfgw_scalar(&c->w, m, cfgw_pi(r, q, i), "a SHA-256 digest")))
                    continue;
                if (parse_digest(s, pl->digests[pl->ndigests]) < 0)
                    cfgw_err(&c->w, m, r,
                             "expected the app signing certificate's SHA-256 as base64url "
                             "(43 characters) or hex (64 digits), got \"%.70s\"", s);
                else
                    pl->ndigests++;
            }
        }
    }
    if (f[VERDICTS].val) {
        yaml_node_t *d = f[VERDICTS].val;
        cfgw_pk(q, p, "required_device_verdicts");
        pl->device_verdicts = 0;
        if (d->type != YAML_SEQUENCE_NODE) {
            cfgw_err(&c->w, d, q,
                     "expected a sequence of verdicts (e.g. [MEETS_DEVICE_INTEGRITY]; [] "
                     "for none)");
        } else {
            size_t cnt = (size_t)(d->data.sequence.items.top - d->data.sequence.items.start);
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *m = cfgw_node(&c->w, d->data.sequence.items.start[i]);
                size_t k;
                if (!m || !(s = cfgw_scalar(&c->w, m, cfgw_pi(r, q, i), "a device verdict")))
                    continue;
                for (k = 0; k < NF(verdict_names) && strcmp(s, verdict_names[k]); k++)
                    ;
                if (k == NF(verdict_names))
                    cfgw_err(&c->w, m, r, "unknown device verdict \"%.60s\" (expected one of: "
                             "MEETS_BASIC_INTEGRITY, MEETS_DEVICE_INTEGRITY, "
                             "MEETS_STRONG_INTEGRITY, MEETS_VIRTUAL_INTEGRITY)", s);
                else
                    pl->device_verdicts |= 1u << k;
            }
        }
    }
    idur(c, &f[MAX_AGE], p, 1000, DAY_MS, "between 1s and 1d", &pl->max_age_ms);
}

static void parse_http(ictx_t *c, yaml_node_t *n, const char *p, cfg_http_verifier_t *h)
{
    cfgw_fld_t f[] = {F("provider"), F("url"), F("timeout"), F("max_level")};
    char q[CFGW_PATHLEN], host[PC_DNS_MAX_HOST + 2], auth[300];
    const char *s, *why;
    h->timeout_ms = 3000;
    h->max_level = CFG_INT_DEVICE;
    if (cfgw_map(&c->w, n, p, f, NF(f)) < 0)
        return;
    if (f[3].val)
        parse_level(c, f[3].val, cfgw_pk(q, p, "max_level"), &h->max_level);
    if (!f[1].val)
        cfgw_err(&c->w, n, p, "missing required key \"url\" (provider http)");
    else if ((s = cfgw_scalar(&c->w, f[1].val, cfgw_pk(q, p, "url"),
                              "a URL like http://127.0.0.1:9100/verify"))) {
        const char *rest = s + 7, *slash;
        size_t al;
        int port;
        if (!strncmp(s, "https://", 8)) {
            cfgw_err(&c->w, f[1].val, q,
                     "https is not supported: the verifier is reached over plain "
                     "http on loopback or an internal network (http://host:port/path)");
        } else if (strncmp(s, "http://", 7) != 0 || !cfgp_printable(s) || strlen(s) > 1024) {
            cfgw_err(&c->w, f[1].val, q, "expected a URL like http://127.0.0.1:9100/verify, got "
                     "\"%.80s\"", s);
        } else if ((al = ((slash = strchr(rest, '/')) ? (size_t)(slash - rest) : strlen(rest))) == 0 ||
                   al >= sizeof auth || memchr(rest, '@', al) || strpbrk(rest, "?#")) {
            cfgw_err(&c->w, f[1].val, q, "expected http://host:port/path (no user info, query or "
                     "fragment), got \"%.80s\"", s);
        } else {
            memcpy(auth, rest, al);
            auth[al] = '\0';
            if (cfgp_parse_addr(auth, 80, CFGP_ADDR_NAME, &h->addr, host, sizeof host, &port,
                                &why) < 0) {
                cfgw_err(&c->w, f[1].val, q, "invalid verifier address \"%.80s\": %s", auth, why);
            } else {
                cfgp_addr_where(&h->addr, f[1].val, q);
                h->url = cfgp_xstrdup(s);
                h->host = cfgp_xstrdup(auth);
                h->port = port;
                h->path = cfgp_xstrdup(slash ? slash : "/");
            }
        }
    }
    idur(c, &f[2], p, 1, 60000, "between 1ms and 60s", &h->timeout_ms);
}

static void parse_platforms(ictx_t *c, yaml_node_t *n, cfg_issuance_t *is)
{
    static const char *const providers[] = {"refuse", "play_integrity", "http", "none",
                                            "android_key_attestation", "app_attest"};
    char b[80], known[200];
    cfgp_join(known, sizeof known, providers, NF(providers));
    if (n->type != YAML_MAPPING_NODE) {
        cfgw_err(&c->w, n, "issuance.platforms", "expected a mapping of platform name to provider "
                 "settings, got %s", cfgp_describe(n, b, sizeof b));
        return;
    }
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (cnt > 64) {
        cfgw_err(&c->w, n, "issuance.platforms", "at most 64 platforms, got %zu", cnt);
        return;
    }
    is->platforms = calloc(cnt ? cnt : 1, sizeof *is->platforms);
    if (!is->platforms)
        abort();
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *pair = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = cfgw_node(&c->w, pair->key), *v = cfgw_node(&c->w, pair->value);
        char p[CFGW_PATHLEN], q[CFGW_PATHLEN];
        const char *name, *s;
        if (!k || !v || !(name = cfgw_scalar(&c->w, k, "issuance.platforms", "a platform name")))
            continue;
        size_t nl = strlen(name);
        int ok = nl >= 1 && nl <= 32;
        for (size_t j = 0; ok && j < nl; j++)
            ok = islower((unsigned char)name[j]) || isdigit((unsigned char)name[j]) ||
                 name[j] == '_';
        if (!ok) {
            cfgw_err(&c->w, k, "issuance.platforms", "invalid platform name \"%.60s\": use 1..32 "
                     "characters of a-z, 0-9 and _", name);
            continue;
        }
        if (cfg_issuance_platform(is, name)) {
            cfgw_err(&c->w, k, "issuance.platforms", "duplicate platform \"%s\"", name);
            continue;
        }
        snprintf(p, sizeof p, "issuance.platforms.%s", name);
        cfg_platform_t *pl = &is->platforms[is->nplatforms++];
        snprintf(pl->name, sizeof pl->name, "%s", name);
        pl->provider = CFG_ATTEST_REFUSE;
        yaml_node_t *pv = NULL;
        if (v->type == YAML_MAPPING_NODE)
            for (yaml_node_pair_t *x = v->data.mapping.pairs.start; x < v->data.mapping.pairs.top; x++) {
                yaml_node_t *xk = cfgw_node(&c->w, x->key);
                if (xk && xk->type == YAML_SCALAR_NODE &&
                    !strcmp((const char *)xk->data.scalar.value, "provider"))
                    pv = cfgw_node(&c->w, x->value);
            }
        if (v->type != YAML_MAPPING_NODE) {
            cfgw_err(&c->w, v, p, "expected a mapping with a provider, got %s",
                     cfgp_describe(v, b, sizeof b));
            continue;
        }
        if (!pv) {
            cfgw_err(&c->w, v, p, "missing required key \"provider\" (one of: %s)", known);
            continue;
        }
        size_t j;
        if (!(s = cfgw_scalar(&c->w, pv, cfgw_pk(q, p, "provider"), "a provider name")))
            continue;
        for (j = 0; j < NF(providers) && strcmp(s, providers[j]); j++)
            ;
        if (j == NF(providers)) {
            cfgw_err(&c->w, pv, q, "expected one of: %s, got \"%.60s\"", known, s);
            continue;
        }
        pl->provider = (int)j;
        if (j == CFG_ATTEST_PLAY_INTEGRITY) {
            parse_play(c, v, p, &pl->play);
        } else if (j == CFG_ATTEST_HTTP) {
            parse_http(c, v, p, &pl->http);
        } else if (j == CFG_ATTEST_ANDROID_KEY) {
            cfga_parse_android(&c->w, c->cfg, v, p, pl);
        } else if (j == CFG_ATTEST_APP_ATTEST) {
            cfgi_parse_app_attest(&c->w, v, p, &pl->appattest);
        } else {
            cfgw_fld_t f[] = {F("provider")};
            cfgw_map(&c->w, v, p, f, NF(f));
            if (j == CFG_ATTEST_NONE && !is->insecure_dev)
                cfgw_err(&c->w, pv, q, "provider none issues certificates without any attestation; "
                         "it is only allowed with issuance.insecure_dev: true (never in production)");
        }
    }
}

int cfgi_parse_digest(const char *s, unsigned char out[32])
{
    return parse_digest(s, out);
}

void cfgi_parse_play(cfgw_t *w, cfg_t *cfg, yaml_node_t *n, const char *p,
                     cfg_play_integrity_t *pl)
{
    ictx_t c = {.w = *w, .cfg = cfg};
    parse_play(&c, n, p, pl);
}

/* ---------------------------------------------------------------- covering routes */

/* The issuance endpoints are answered by the gateway, but only after the
 * gate of the route that matches them, exactly as a proxied request: class,
 * bearer (and JWT), rate limits. That route must therefore exist, and let
 * through the class each endpoint serves; otherwise issuance could never
 * work, so the configuration is refused rather than left to fail at run
 * time. */

/* One endpoint with one method: some host set (a host named by routes, or
 * the generic set serving every other host) must reach a route that allows
 * cls. The route is the one a request for that host takes
 * (cfg_route_select, which chooses only among the host's own routes), so a
 * host with routes of its own is checked on those alone. 0, or -1 after
 * reporting. */
/* Reports why endpoint ep with method cannot work: any is the first
 * covering route found (it refuses cls), else allow the methods the first
 * set covering ep by path takes ("" if no set covers it), aset that set's
 * host (NULL: the generic set). */
static void endpoint_err(ictx_t *c, yaml_node_t *at, const char *path, const char *ep,
                         const char *method, const cfg_route_t *any, const char *allow,
                         const char *aset, size_t cls, const char *cls_key)
{
    const cfg_t *cfg = c->cfg;
    const cfg_issuance_t *is = cfg->issuance;
    if (any)
        cfgw_err(&c->w, at, path, "routes[%zu] (path \"%s\"%s%s), the route that covers %s %s, "
                 "does not allow class \"%s\" (%s), so that endpoint could never succeed; add it "
                 "to that route's allow_classes or add a route for %s", (size_t)(any - cfg->routes),
                 any->path, any->host ? ", host " : "", any->host ? any->host : "", method, ep,
                 cfg->tls.classes[cls].name, cls_key, is->path_prefix);
    else if (*allow)
        cfgw_err(&c->w, at, path, "no route takes %s %s on any host: the longest routes covering "
                 "it (%s%s) take only %s (a request with %s is refused with 405 there; a shorter "
                 "prefix is never tried); add %s to their methods or add a route for %s", method,
                 ep, aset ? "host " : "generic routes", aset ? aset : "", allow, method, method,
                 is->path_prefix);
    else
        cfgw_err(&c->w, at, path, "no route takes %s (%s) on any host: the issuance endpoints go "
                 "through the gate of the route that covers them for the request's host (classes, "
                 "bearer, jwt, rate limits; a host named by routes uses only its own); add "
                 "a route such as {path: %s, upstream: <any>, allow_classes: [%s, %s], "
                 "require_bearer: false}", ep, method, is->path_prefix, is->bootstrap_class,
                 is->device_class);
}

static int check_endpoint(ictx_t *c, yaml_node_t *at, const char *path, const char *name,
                          const char *method, size_t cls, const char *cls_key)
{
    const cfg_t *cfg = c->cfg;
    const cfg_route_t *any = NULL, *gated = NULL;
    char ep[260], allow[CFG_ROUTE_ALLOW_MAX] = "";
    const char *aset = NULL;
    /* a class outside identity.integrity_classes (the bootstrap class always)
     * is unattested, so a min_integrity on its route refuses it always */
    int unattested = !(cfg->identity.integrity_classes & (1u << cls));
    snprintf(ep, sizeof ep, "%s%s", cfg->issuance->path_prefix, name);
    for (size_t h = 0; h <= cfg->nroutes; h++) {   /* h == nroutes: the generic set */
        const char *host = h < cfg->nroutes ? cfg->routes[h].host : NULL;
        if (h < cfg->nroutes && (!host || cfg_route_host_set(cfg, host) != host))
            continue;   /* generic, or a host already checked at its first route */
        cfg_route_choice_t ch;
        cfg_route_choose(cfg, host, ep, strlen(ep), method, &ch);
        if (ch.route && (ch.route->allow_classes & (1u << cls))) {
            if (!(unattested && ch.route->need_integrity))
                return 0;
            gated = gated ? gated : ch.route;
            continue;
        }
        if (ch.route && !any)
            any = ch.route;
        if (ch.status == 405 && !*allow) {
            snprintf(allow, sizeof allow, "%s", ch.allow);
            aset = ch.host_set;
        }
    }
    if (gated)
        cfgw_err(&c->w, at, path, "routes[%zu] (path \"%s\"%s%s), the route that covers %s %s, "
                 "sets min_integrity: %s, which class \"%s\" (%s) never meets: its certificates "
                 "record no integrity level (only those of identity.integrity_classes do); remove min_integrity there or "
                 "add a route for %s without it", (size_t)(gated - cfg->routes), gated->path,
                 gated->host ? ", host " : "", gated->host ? gated->host : "", method, ep,
                 cfg_integrity_name(gated->min_integrity), cfg->tls.classes[cls].name, cls_key,
                 cfg->issuance->path_prefix);
    else
        endpoint_err(c, at, path, ep, method, any, allow, aset, cls, cls_key);
    return -1;
}

/* Every endpoint with every method it takes (challenge: POST and GET;
 * issue, renew: POST), for every class it serves. The first that cannot
 * work is reported: the others usually fail for the same reason. */
static void check_routes(ictx_t *c, yaml_node_t *at, const char *path)
{
    const cfg_t *cfg = c->cfg;
    const cfg_issuance_t *is = cfg->issuance;
    if (!cfg->nroutes)
        return;   /* routes missing or broken: reported there */
    if (is->bootstrap_class_idx >= cfg->tls.nclasses || is->device_class_idx >= cfg->tls.nclasses)
        return;   /* tls.classes missing or broken, or the class unknown: reported there */
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (!cfg->routes[i].path)
            return;
    static const char *const challenge_methods[] = {"POST", "GET"};
    for (size_t m = 0; m < 2; m++) {
        if (check_endpoint(c, at, path, "challenge", challenge_methods[m],
                           is->bootstrap_class_idx, "issuance.bootstrap_class") < 0 ||
            (is->renew_requires_attestation &&
             check_endpoint(c, at, path, "challenge", challenge_methods[m],
                            is->device_class_idx, "issuance.device_class") < 0))
            return;
    }
    if (check_endpoint(c, at, path, "issue", "POST", is->bootstrap_class_idx,
                       "issuance.bootstrap_class") < 0)
        return;
    check_endpoint(c, at, path, "renew", "POST", is->device_class_idx, "issuance.device_class");
}

/* Counts the problems of the section (the covering-route check runs only on
 * a section without any, so it never repeats an earlier error). */
typedef struct {
    cfgw_err_fn fn;
    void *arg;
    size_t n;
} errcount_t;

static void count_err(void *arg, const yaml_node_t *n, const char *path, const char *msg)
{
    errcount_t *e = arg;
    e->n++;
    e->fn(e->arg, n, path, msg);
}

/* ---------------------------------------------------------------- section */

/* An issuance section with every default set. */
static cfg_issuance_t *issuance_defaults(void)
{
    cfg_issuance_t *is = calloc(1, sizeof *is);
    if (!is)
        abort();
    is->path_prefix = cfgp_xstrdup("/certificates/");
    snprintf(is->device_class, sizeof is->device_class, "device");
    snprintf(is->bootstrap_class, sizeof is->bootstrap_class, "bootstrap");
    is->lifetime_ms = 7 * DAY_MS;
    is->nonce_ttl_ms = 120000;
    is->key_ec_p256 = 1;
    is->key_rsa = 0;
    is->rsa_min_bits = 2048;
    is->max_body_bytes = 64 * 1024;
    return is;
}

/* issuance.path_prefix: a canonical path ending in '/'. */
static void parse_prefix(ictx_t *c, yaml_node_t *val, cfg_issuance_t *is)
{
    const char *s;
    if (!val || !(s = cfgw_scalar(&c->w, val, "issuance.path_prefix", "a path like /certificates/")))
        return;
    if (s[0] != '/' || s[strlen(s) - 1] != '/' || !cfgp_printable(s) || strlen(s) > 200 ||
        strpbrk(s, "?#%") || cfgp_route_path_error(s)) {
        cfgw_err(&c->w, val, "issuance.path_prefix", "expected a path that starts and "
                 "ends with '/', like /certificates/, in canonical form (letters, digits, "
                 "'-', '.', '_', '~', no \"//\" or dot segments), got \"%.60s\"", s);
        return;
    }
    free(is->path_prefix);
    is->path_prefix = cfgp_xstrdup(s);
}

/* issuance.device_class and bootstrap_class: known classes, not the same
 * one. Whether the device class is known goes to *dev_known. */
static void parse_classes(ictx_t *c, yaml_node_t *n, cfgw_fld_t *dev, cfgw_fld_t *boot,
                          cfg_issuance_t *is, int *dev_known)
{
    int boot_known;
    class_ref(c, n, dev, "issuance.device_class", is->device_class, &is->device_class_idx,
              dev_known);
    class_ref(c, n, boot, "issuance.bootstrap_class", is->bootstrap_class,
              &is->bootstrap_class_idx, &boot_known);
    if (*dev_known && boot_known && is->device_class_idx == is->bootstrap_class_idx)
        cfgw_err(&c->w, boot->val ? boot->val : n, "issuance.bootstrap_class",
                 "must differ from issuance.device_class (\"%s\"): the bootstrap certificate is "
                 "shipped in every app and must never reach the API", is->device_class);
}

/* identity.integrity_classes against the issuance classes: the device
 * class's levels are read (issued certificates record them), the bootstrap
 * class's never (its certificate ships in every app). The default is set
 * here, before the route checks rely on it. */
static void check_integrity_classes(ictx_t *c, yaml_node_t *n, cfgw_fld_t *dev, cfgw_fld_t *boot,
                                    const cfg_issuance_t *is)
{
    const cfg_identity_t *id = &c->cfg->identity;
    cfg_integrity_classes_default(c->cfg);
    if (!id->integrity_classes_set)
        return;
    const cfg_tls_t *t = &c->cfg->tls;
    int boot_known = is->bootstrap_class_idx < t->nclasses &&
                     !strcmp(t->classes[is->bootstrap_class_idx].name, is->bootstrap_class);
    if (boot_known && is->bootstrap_class_idx < 32 && (id->integrity_classes & (1u << is->bootstrap_class_idx)))
        cfgw_err(&c->w, boot->val ? boot->val : n, "issuance.bootstrap_class",
                 "class \"%s\" is listed in identity.integrity_classes: the bootstrap certificate is "
                 "shipped in every app, so a level it names says nothing about a device; remove it there",
                 is->bootstrap_class);
    else if (is->device_class_idx < 32 && !(id->integrity_classes & (1u << is->device_class_idx)))
        cfgw_err(&c->w, dev->val ? dev->val : n, "issuance.device_class",
                 "class \"%s\" is not listed in identity.integrity_classes, so the levels of the "
                 "certificates issued to it would never be read; add it there", is->device_class);
}

/* issuance.key_policy: the key types a CSR may carry; at least one. */
static void parse_key_policy(ictx_t *c, yaml_node_t *val, cfg_issuance_t *is)
{
    cfgw_fld_t k[] = {F("ec_p256"), F("rsa"), F("rsa_min_bits")};
    const char *s;
    char msg[300];
    uint64_t v;
    if (!val || cfgw_map(&c->w, val, "issuance.key_policy", k, NF(k)) < 0)
        return;
    cfgw_opt_bool(&c->w, &k[0], "issuance.key_policy", &is->key_ec_p256);
    cfgw_opt_bool(&c->w, &k[1], "issuance.key_policy", &is->key_rsa);
    if (k[2].val && (s = cfgw_scalar(&c->w, k[2].val, "issuance.key_policy.rsa_min_bits",
                                     "an integer"))) {
        if (cfgp_check_number('u', s, 2048, 16384, &v, msg, sizeof msg) < 0)
            cfgw_err(&c->w, k[2].val, "issuance.key_policy.rsa_min_bits", "%s", msg);
        else
            is->rsa_min_bits = (uint32_t)v;
    }
    if (!is->key_ec_p256 && !is->key_rsa)
        cfgw_err(&c->w, val, "issuance.key_policy", "allows no key type; enable "
                 "ec_p256 or rsa");
}

/* issuance.max_body_bytes: a size from 16k to 1m. */
static void parse_max_body(ictx_t *c, yaml_node_t *val, cfg_issuance_t *is)
{
    const char *s;
    char msg[300];
    uint64_t v;
    if (!val || !(s = cfgw_scalar(&c->w, val, "issuance.max_body_bytes", "a size like 64k")))
        return;
    if (cfgp_check_number('s', s, 16 * 1024, 1024 * 1024, &v, msg, sizeof msg) < 0)
        cfgw_err(&c->w, val, "issuance.max_body_bytes", "%s", msg);
    else
        is->max_body_bytes = v;
}

void cfgi_parse_issuance(cfgw_t *w, yaml_node_t *n, cfg_t *cfg)
{
    enum { PREFIX, CA_CERT, CA_KEY, CHAIN, DEVICE, BOOTSTRAP, LIFETIME, NONCE_TTL, KEYPOL,
           RENEW_ATT, REVOKE_OLD, MAX_BODY, INSECURE, PLATFORMS, LIFETIME_BY };
    cfgw_fld_t f[] = {F("path_prefix"), F("ca_cert"), F("ca_key"), F("chain"), F("device_class"),
                      F("bootstrap_class"), F("lifetime"), F("nonce_ttl"), F("key_policy"),
                      F("renew_requires_attestation"), F("revoke_old_on_renew"),
                      F("max_body_bytes"), F("insecure_dev"), F("platforms"),
                      F("lifetime_by_integrity")};
    errcount_t errs = {.fn = w->fn, .arg = w->arg};
    ictx_t c = {.w = {.doc = w->doc, .fn = count_err, .arg = &errs}, .cfg = cfg};
    int dev_known;

    if (cfgw_map(&c.w, n, "issuance", f, NF(f)) < 0)
        return;
    cfg_issuance_t *is = cfg->issuance = issuance_defaults();
    parse_prefix(&c, f[PREFIX].val, is);
    cfgw_opt_bool(&c.w, &f[INSECURE], "issuance", &is->insecure_dev);
    for (int i = CA_CERT; i <= CA_KEY; i++)
        if (!f[i].val)
            cfgw_err(&c.w, n, "issuance", "missing required key \"%s\"", f[i].name);
    is->ca_cert_file = ipath(&c, &f[CA_CERT], "issuance");
    is->ca_key_file = ipath(&c, &f[CA_KEY], "issuance");
    is->chain_file = ipath(&c, &f[CHAIN], "issuance");
    parse_classes(&c, n, &f[DEVICE], &f[BOOTSTRAP], is, &dev_known);
    if (dev_known)
        check_integrity_classes(&c, n, &f[DEVICE], &f[BOOTSTRAP], is);
    check_ca(&c, is, &f[CA_CERT], &f[CA_KEY], &f[CHAIN],
             dev_known ? cfg->tls.classes[is->device_class_idx].ca_file : NULL, dev_known);
    if (cfg->identity.device_id_source == CFG_DEVID_SAN_URI &&
        (!cfg->identity.device_id_prefix || !strchr(cfg->identity.device_id_prefix, ':')))
        cfgw_err(&c.w, n, "issuance", "issued certificates carry the device id as a SAN URI "
                 "<identity.device_id.prefix><id>; set identity.device_id.prefix to a URI prefix "
                 "such as \"urn:portcullis:device:\"");
    idur(&c, &f[LIFETIME], "issuance", HOUR_MS, 90 * DAY_MS, "between 1h and 90d",
         &is->lifetime_ms);
    parse_lifetimes(&c, f[LIFETIME_BY].val, is);
    idur(&c, &f[NONCE_TTL], "issuance", 10000, HOUR_MS, "between 10s and 1h",
         &is->nonce_ttl_ms);
    parse_key_policy(&c, f[KEYPOL].val, is);
    cfgw_opt_bool(&c.w, &f[RENEW_ATT], "issuance", &is->renew_requires_attestation);
    cfgw_opt_bool(&c.w, &f[REVOKE_OLD], "issuance", &is->revoke_old_on_renew);
    parse_max_body(&c, f[MAX_BODY].val, is);
    if (!f[PLATFORMS].val)
        cfgw_err(&c.w, n, "issuance",
                 "missing required key \"platforms\" (e.g. platforms: {android: "
                 "{provider: play_integrity, ...}})");
    else
        parse_platforms(&c, f[PLATFORMS].val, is);
    if (!errs.n)
        check_routes(&c, f[PREFIX].val ? f[PREFIX].val : n,
                     f[PREFIX].val ? "issuance.path_prefix" : "issuance");
}

/* ---------------------------------------------------------------- access */

const cfg_platform_t *cfg_issuance_platform(const cfg_issuance_t *is, const char *name)
{
    if (!is || !name)
        return NULL;
    for (size_t i = 0; i < is->nplatforms; i++)
        if (!strcmp(is->platforms[i].name, name))
            return &is->platforms[i];
    return NULL;
}

void cfg_issuance_free(cfg_issuance_t *is)
{
    if (!is)
        return;
    free(is->path_prefix);
    free(is->ca_cert_file);
    free(is->ca_key_file);
    free(is->chain_file);
    for (size_t i = 0; i < is->nplatforms; i++) {
        cfg_platform_t *p = &is->platforms[i];
        free(p->play.package_name);
        free(p->play.decryption_key_file);
        free(p->play.verification_key_file);
        free(p->http.url);
        free(p->http.host);
        free(p->http.path);
        cfgp_addr_free(&p->http.addr);
        cfga_android_free(&p->android);
        cfgi_free_app_attest(&p->appattest);
    }
    free(is->platforms);
    free(is);
}
