/* config.c: load the YAML configuration into a cfg_t, validating everything.
 *
 * The file is parsed with libyaml's document API and the node tree is walked
 * section by section. Every problem becomes one "file:line:col: path: message"
 * line; the walk goes on after an error so that all problems are reported at
 * once, and the lines are sorted by position before cfg_load() returns.
 */
#include "config_int.h"
#include "walk.h"
#include "../base/log.h"

#include <ctype.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <yaml.h>

#define MAX_ERRORS 100
#define MAX_CLASSES 32
#define MAX_CERTS 4
#define DAY_MS 86400000ULL
#define NF(a) (sizeof(a) / sizeof((a)[0]))

#define DEF_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEF_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define DEF_GROUPS "X25519:P-256:P-384"
#define DEF_PREFIX "urn:portcullis:device:"

_Static_assert((int)CFG_LOG_ERROR == (int)PC_ERR && (int)CFG_LOG_WARN == (int)PC_WARN &&
               (int)CFG_LOG_INFO == (int)PC_INFO && (int)CFG_LOG_DEBUG == (int)PC_DEBUG &&
               (int)CFG_LOG_TEXT == (int)PC_LOG_TEXT && (int)CFG_LOG_JSON == (int)PC_LOG_JSON,
               "config and base/log share the level and format values");

static const char *const hdr_keys[CFG_H__COUNT] = {
    "serial", "fingerprint", "subject", "issuer", "san_uri",
    "san_dns", "not_after", "class", "device_id", "integrity",
};
static const char *const hdr_defaults[CFG_H__COUNT] = {
    "X-Client-Cert-Serial", "X-Client-Cert-Fingerprint", "X-Client-Cert-Subject",
    "X-Client-Cert-Issuer", "X-Client-Cert-SAN-URI", "X-Client-Cert-SAN-DNS",
    "X-Client-Cert-Not-After", "X-Client-Cert-Class", "X-Device-Id", "X-Device-Integrity",
};

const char *const cfg_trust_headers[] = {
    "Forwarded", "X-Real-IP", "True-Client-IP", "X-Client-IP", "X-Cluster-Client-IP",
    "CF-Connecting-IP", "Fastly-Client-IP", "X-Original-URL", "X-Rewrite-URL",
    "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
    "X-Forwarded-Client-Cert", "Client-Cert", "Client-Cert-Chain", "X-Original-Host", "X-Host",
    "X-Original-Forwarded-For", "X-ProxyUser-Ip", "X-Originating-IP", "X-Remote-IP", "X-Remote-Addr",
    "X-Forwarded", "X-Client-Cert", "X-Url-Scheme", "Front-End-Https", "X-Scheme",
    NULL,
};

/* Each names every longer name that begins with it (X-Forwarded-Ssl, X-SSL-Client-Verify,
 * Ssl-Client-Cert, X-Client-Certificate, X-ARR-ClientCert, X-Amzn-Mtls-Clientcert, ...). */
const char *const cfg_trust_prefixes[] = {
    "X-Forwarded-", "X-Envoy-", "X-SSL-", "SSL-Client-", "X-Client-Cert", "X-ARR-", "X-Amzn-Mtls-", NULL,
};

static const char *const integrity_names[CFG_INT__COUNT] = {"none", "basic", "device", "strong"};
_Static_assert(CFG_INT__COUNT == CFG_INTEGRITY_LEVELS, "one integrity OID per level");

const char *cfg_integrity_name(int level)
{
    return level >= 0 && level < CFG_INT__COUNT ? integrity_names[level] : "unattested";
}

void cfg_integrity_classes_default(cfg_t *cfg)
{
    cfg_identity_t *id = &cfg->identity;
    const cfg_issuance_t *is = cfg->issuance;
    if (id->integrity_classes_set)
        return;
    id->integrity_classes = 0;
    if (is) {
        if (is->device_class_idx < cfg->tls.nclasses && is->device_class_idx < MAX_CLASSES &&
            !strcmp(cfg->tls.classes[is->device_class_idx].name, is->device_class))
            id->integrity_classes = 1u << is->device_class_idx;
        return;
    }
    for (size_t i = 0; i < cfg->tls.nclasses && i < MAX_CLASSES; i++)
        if (!strcmp(cfg->tls.classes[i].name, "device"))
            id->integrity_classes = 1u << i;
}

int cfg_integrity_parse(const char *s)
{
    for (int i = 0; s && i < CFG_INT__COUNT; i++)
        if (!strcmp(s, integrity_names[i]))
            return i;
    return -1;
}

size_t cfg_identity_prefix(const cfg_identity_t *id)
{
    const char *a = id->headers[CFG_H_SERIAL];
    size_t n = a ? strlen(a) : 0;
    for (size_t i = CFG_H_SERIAL + 1; i <= CFG_H_CLASS && n; i++) {
        const char *b = id->headers[i];
        size_t k = 0;
        while (k < n && b && b[k] && tolower((unsigned char)a[k]) == tolower((unsigned char)b[k]))
            k++;
        n = b ? k : 0;
    }
    while (n && a[n - 1] != '-')
        n--;
    /* at least two segments before the last '-', none empty: X-Client-Cert-, not X- */
    size_t seg = 0, segs = 0;
    for (size_t k = 0; k < n; k++) {
        if (a[k] != '-') {
            seg++;
            continue;
        }
        if (!seg)
            return 0;
        segs++;
        seg = 0;
    }
    return segs >= 2 ? n : 0;
}

typedef struct {
    cfg_errors_t *errs;
    size_t base;          /* errs->n on entry */
    uint64_t *pos;        /* line << 32 | column of each new error, for sorting */
    size_t cappos;
    int truncated;
    cfgw_t w;             /* the document; errors go to report() */
    cfg_t *cfg;
    SSL_CTX *ssl;                       /* throwaway, for cipher/group checks */
    STACK_OF(X509) *ca[MAX_CLASSES];    /* per class, for the one-class-per-CA check */
    int classes_ok, upstreams_ok;       /* names resolvable without cascading */
    yaml_node_t *http_forward;          /* http.forward_client_headers, read after routes */
} ctx_t;

/* ---------------------------------------------------------------- memory */

/* ---------------------------------------------------------------- errors */

static void add_error(ctx_t *c, size_t line, size_t col, const char *path, const char *msg)
{
    if (c->errs->n - c->base >= MAX_ERRORS)
        c->truncated = 1;
    else
        cfgp_push_error(c->errs, &c->pos, &c->cappos, c->errs->n - c->base, line, col,
                        path, msg);
}

/* The cfgw_t error callback: arg is the ctx_t. */
static void report(void *arg, const yaml_node_t *n, const char *path, const char *msg)
{
    size_t line = n ? n->start_mark.line + 1 : 1, col = n ? n->start_mark.column + 1 : 1;
    add_error(arg, line, col, path, msg);
}

/* ---------------------------------------------------------------- sections */

#define F(n) {.name = (n)}

/* flags: CFGP_ADDR_STAR, CFGP_ADDR_NAME (config_int.h) */
static int get_addr(ctx_t *c, yaml_node_t *n, const char *path, int flags,
                    cfg_addr_t *out, char *host, size_t hostlen, int *port)
{
    const char *why;
    const char *s = cfgw_scalar(&c->w, n, path, "an address \"host:port\"");
    if (!s)
        return -1;
    if (cfgp_parse_addr(s, 0, flags, out, host, hostlen, port, &why) < 0) {
        cfgw_err(&c->w, n, path, "invalid address \"%.80s\": %s", s, why);
        return -1;
    }
    cfgp_addr_where(out, n, path);
    return 0;
}

static void parse_workers(ctx_t *c, yaml_node_t *n)
{
    int is_auto = 1;
    if (n) {
        const char *s = cfgw_scalar(&c->w, n, "workers", "an integer 1..256 or \"auto\"");
        uint64_t v;
        if (s && strcmp(s, "auto") != 0) {
            is_auto = 0;
            if (cfgp_parse_u64(s, &v) < 0 || v < 1 || v > 256)
                cfgw_err(&c->w, n, "workers",
                         "expected an integer 1..256 or \"auto\", got \"%.60s\"", s);
            else
                c->cfg->workers = (int)v;
        }
    }
    if (is_auto) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->cfg->workers = cores < 1 ? 1 : cores > 256 ? 256 : (int)cores;
    }
}

static void parse_certs(ctx_t *c, yaml_node_t *n)
{
    cfg_tls_t *t = &c->cfg->tls;
    yaml_node_item_t *it;
    int types[MAX_CERTS] = {0};
    long cnt = cfgw_seq(&c->w, n, "tls.certificates", 1, MAX_CERTS, &it);
    if (cnt < 0)
        return;
    t->certs = cfgp_xcalloc((size_t)cnt, sizeof *t->certs);
    t->ncerts = (size_t)cnt;
    for (size_t i = 0; i < (size_t)cnt; i++) {
        char p[CFGW_PATHLEN], q[CFGW_PATHLEN], msg[768];
        yaml_node_t *item = cfgw_node(&c->w, it[i]);
        cfgw_fld_t f[] = {F("cert"), F("key")};
        cfgw_pi(p, "tls.certificates", i);
        if (cfgw_map(&c->w, item, p, f, NF(f)) < 0)
            continue;
        yaml_node_t *cn = cfgw_require(&c->w, item, p, &f[0]);
        yaml_node_t *kn = cfgw_require(&c->w, item, p, &f[1]);
        const char *cs = NULL, *ks;
        X509 *leaf = NULL;
        if (cn && (cs = cfgw_scalar(&c->w, cn, cfgw_pk(q, p, "cert"), "a file path"))) {
            t->certs[i].cert_file = cfgp_xstrdup(cs);
            if (cfgp_check_certs(cs, &leaf, msg, sizeof msg) < 0)
                cfgw_err(&c->w, cn, q, "%s", msg);
        }
        if (kn && (ks = cfgw_scalar(&c->w, kn, cfgw_pk(q, p, "key"), "a file path"))) {
            int type;
            t->certs[i].key_file = cfgp_xstrdup(ks);
            if (cfgp_check_key(ks, cs, leaf, &type, msg, sizeof msg) < 0) {
                cfgw_err(&c->w, kn, q, "%s", msg);
            } else if (leaf) {
                for (size_t j = 0; j < i; j++) {
                    if (types[j] == type) {
                        cfgw_err(&c->w, cn, cfgw_pk(q, p, "cert"),
                                 "tls.certificates[%zu] already has a %s "
                                 "key; use at most one certificate per key type", j,
                                 type == EVP_PKEY_EC ? "EC" : "RSA");
                        break;
                    }
                }
                types[i] = type;
            }
        }
        X509_free(leaf);
    }
}

static void parse_classes(ctx_t *c, yaml_node_t *n)
{
    cfg_tls_t *t = &c->cfg->tls;
    yaml_node_item_t *it;
    int ok = 1;
    long cnt = cfgw_seq(&c->w, n, "tls.classes", 1, MAX_CLASSES, &it);
    if (cnt < 0)
        return;
    t->classes = cfgp_xcalloc((size_t)cnt, sizeof *t->classes);
    t->nclasses = (size_t)cnt;
    for (size_t i = 0; i < (size_t)cnt; i++) {
        char p[CFGW_PATHLEN], q[CFGW_PATHLEN], msg[768];
        yaml_node_t *item = cfgw_node(&c->w, it[i]);
        cfgw_fld_t f[] = {F("name"), F("ca")};
        const char *s;
        cfgw_pi(p, "tls.classes", i);
        if (cfgw_map(&c->w, item, p, f, NF(f)) < 0) {
            ok = 0;
            continue;
        }
        yaml_node_t *nn = cfgw_require(&c->w, item, p, &f[0]);
        yaml_node_t *an = cfgw_require(&c->w, item, p, &f[1]);
        if (!nn || !(s = cfgw_scalar(&c->w, nn, cfgw_pk(q, p, "name"), "a class name"))) {
            ok = 0;
        } else if (!cfgp_is_name(s, 0)) {
            cfgw_err(&c->w, nn, q,
                     "invalid class name \"%.60s\": use 1..63 characters of a-z, 0-9, "
                     "_ and -", s);
            ok = 0;
        } else {
            long j = cfgp_find_name(t->classes[0].name, sizeof t->classes[0], i, s);
            if (j >= 0)
                cfgw_err(&c->w, nn, q, "duplicate class name \"%s\" (also tls.classes[%ld])", s, j);
            snprintf(t->classes[i].name, sizeof t->classes[i].name, "%s", s);
        }
        if (an && (s = cfgw_scalar(&c->w, an, cfgw_pk(q, p, "ca"), "a file path"))) {
            size_t other;
            int reissued;
            char subj[256];
            t->classes[i].ca_file = cfgp_xstrdup(s);
            if (cfgp_load_ca(s, &c->ca[i], msg, sizeof msg) < 0)
                cfgw_err(&c->w, an, q, "%s", msg);
            else if (cfgp_ca_overlap(c->ca, i, &other, &reissued, subj, sizeof subj))
                cfgw_err(&c->w, an, q,
                         "CA %s of class \"%s\" is also in tls.classes[%zu] (\"%s\")%s: a CA "
                         "may anchor only one class", subj, t->classes[i].name, other,
                         t->classes[other].name,
                         reissued ? " as another certificate with the same subject and public "
                                    "key (a re-issue)" : "");
        }
    }
    c->classes_ok = ok;
}

static void parse_tls_list(ctx_t *c, cfgw_fld_t *f, int kind, char **out)
{
    char p[CFGW_PATHLEN], msg[512];
    const char *s;
    if (!f->val || !(s = cfgw_scalar(&c->w, f->val, cfgw_pk(p, "tls", f->name),
                                     "a ':'-separated list")))
        return;
    if (!*s) {
        cfgw_err(&c->w, f->val, p, "must not be empty (omit the key to use the default)");
        return;
    }
    if (cfgp_check_tls_list(&c->ssl, kind, s, msg, sizeof msg) < 0) {
        cfgw_err(&c->w, f->val, p, "%s", msg);
        return;
    }
    free(*out);
    *out = cfgp_xstrdup(s);
}

static void parse_tls(ctx_t *c, yaml_node_t *n)
{
    enum { CERTS, MINV, CIPHERS, SUITES, GROUPS, HANDSHAKE, SCACHE, VCACHE, CLASSES };
    cfgw_fld_t f[] = {F("certificates"), F("min_version"), F("ciphers"), F("ciphersuites"),
                      F("groups"), F("handshake_timeout"), F("session_cache"),
                      F("verify_cache"), F("classes")};
    static const char *const versions[] = {"1.2", "1.3"};
    cfg_tls_t *t = &c->cfg->tls;
    int v;
    if (cfgw_map(&c->w, n, "tls", f, NF(f)) < 0)
        return;
    if (cfgw_require(&c->w, n, "tls", &f[CERTS]))
        parse_certs(c, f[CERTS].val);
    if (f[MINV].val && cfgw_enum(&c->w, f[MINV].val, "tls.min_version", versions, 2, &v) == 0)
        t->min_version = v ? CFG_TLS13 : CFG_TLS12;
    parse_tls_list(c, &f[CIPHERS], 0, &t->ciphers);
    parse_tls_list(c, &f[SUITES], 1, &t->ciphersuites);
    parse_tls_list(c, &f[GROUPS], 2, &t->groups);
    cfgw_opt_dur(&c->w, &f[HANDSHAKE], "tls", DAY_MS, &t->handshake_timeout_ms);
    if (f[SCACHE].val) {
        cfgw_fld_t s[] = {F("size"), F("lifetime")};
        if (cfgw_map(&c->w, f[SCACHE].val, "tls.session_cache", s, NF(s)) == 0) {
            cfgw_opt_u32(&c->w, &s[0], "tls.session_cache", 0, 10000000, &t->session_cache_size);
            cfgw_opt_dur(&c->w, &s[1], "tls.session_cache", DAY_MS, &t->session_lifetime_ms);
        }
    }
    if (f[VCACHE].val) {
        cfgw_fld_t s[] = {F("size"), F("lifetime")};
        if (cfgw_map(&c->w, f[VCACHE].val, "tls.verify_cache", s, NF(s)) == 0) {
            cfgw_opt_u32(&c->w, &s[0], "tls.verify_cache", 0, 1000000, &t->verify_cache_size);
            cfgw_opt_dur(&c->w, &s[1], "tls.verify_cache", DAY_MS, &t->verify_cache_lifetime_ms);
        }
    }
    if (cfgw_require(&c->w, n, "tls", &f[CLASSES]))
        parse_classes(c, f[CLASSES].val);
}

/* identity.integrity_policies: {none, basic, device, strong}, each a
 * dotted OID (default CFG_INTEGRITY_ARC.<level>), all four distinct. */
static void parse_integrity_policies(ctx_t *c, yaml_node_t *n)
{
    cfg_identity_t *id = &c->cfg->identity;
    cfgw_fld_t f[CFG_INT__COUNT];
    char p[CFGW_PATHLEN];
    memset(f, 0, sizeof f);
    for (int i = 0; i < CFG_INT__COUNT; i++)
        f[i].name = integrity_names[i];
    if (cfgw_map(&c->w, n, "identity.integrity_policies", f, NF(f)) < 0)
        return;
    for (int i = 0; i < CFG_INT__COUNT; i++) {
        const char *s, *why;
        cfg_oid_t o;
        if (!f[i].val ||
            !(s = cfgw_scalar(&c->w, f[i].val, cfgw_pk(p, "identity.integrity_policies", integrity_names[i]),
                              "a dotted OID like 1.3.6.1.4.1.55555.1.2 (quote it)")))
            continue;
        if (cfg_oid_parse(s, &o, &why) < 0) {
            cfgw_err(&c->w, f[i].val, p, "\"%.60s\" %s", s, why);
            continue;
        }
        id->integrity_oids[i] = o;
    }
    for (int i = 0; i < CFG_INT__COUNT; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(id->integrity_oids[i].text, id->integrity_oids[j].text)) {
                int at = f[i].val ? i : j;
                cfgw_err(&c->w, f[at].val, cfgw_pk(p, "identity.integrity_policies", integrity_names[at]),
                         "OID %s is also the one of level %s; each level needs its own",
                         id->integrity_oids[at].text, integrity_names[at == i ? j : i]);
            }
}

static void parse_class_list(ctx_t *c, yaml_node_t *n, const char *path, size_t min, uint32_t *mask);

static void parse_identity(ctx_t *c, yaml_node_t *n)
{
    cfg_identity_t *id = &c->cfg->identity;
    cfgw_fld_t f[] = {F("device_id"), F("headers"), F("integrity_policies"), F("integrity_classes")};
    yaml_node_t *set[CFG_H__COUNT] = {0};
    char p[CFGW_PATHLEN];
    if (cfgw_map(&c->w, n, "identity", f, NF(f)) < 0)
        return;
    if (f[2].val)
        parse_integrity_policies(c, f[2].val);
    if (f[3].val) {   /* after tls.classes; [] is allowed: no class records levels */
        id->integrity_classes_set = 1;
        parse_class_list(c, f[3].val, "identity.integrity_classes", 0, &id->integrity_classes);
    }
    if (f[0].val) {
        static const char *const sources[] = {"san_uri", "cn"};
        cfgw_fld_t d[] = {F("source"), F("prefix")};
        int v;
        const char *s;
        if (cfgw_map(&c->w, f[0].val, "identity.device_id", d, NF(d)) == 0) {
            if (d[0].val && cfgw_enum(&c->w, d[0].val, "identity.device_id.source", sources, 2,
                                      &v) == 0)
                id->device_id_source = v ? CFG_DEVID_CN : CFG_DEVID_SAN_URI;
            if (d[1].val && (s = cfgw_scalar(&c->w, d[1].val, "identity.device_id.prefix",
                                             "a string (quote it; \"\" for none)"))) {
                free(id->device_id_prefix);
                id->device_id_prefix = cfgp_xstrdup(s);
            }
        }
    }
    if (f[1].val) {
        cfgw_fld_t h[CFG_H__COUNT];
        memset(h, 0, sizeof h);
        for (size_t i = 0; i < CFG_H__COUNT; i++)
            h[i].name = hdr_keys[i];
        if (cfgw_map(&c->w, f[1].val, "identity.headers", h, NF(h)) < 0)
            return;
        for (size_t i = 0; i < CFG_H__COUNT; i++) {
            const char *s;
            if (!h[i].val ||
                !(s = cfgw_scalar(&c->w, h[i].val, cfgw_pk(p, "identity.headers", hdr_keys[i]),
                                  "an HTTP header name")))
                continue;
            if (!cfgp_plain_header(s)) {   /* an upstream may read _ or . as - */
                cfgw_err(&c->w, h[i].val, p,
                         "invalid header name \"%.60s\": use letters, digits and "
                         "- (e.g. X-Client-Cert-Serial)", s);
                continue;
            }
            free(id->headers[i]);
            id->headers[i] = cfgp_xstrdup(s);
            set[i] = h[i].val;
        }
    }
    size_t i, j;
    if (cfgp_same_names(id->headers, CFG_H__COUNT, &i, &j)) {
        size_t at = set[j] ? j : i;
        cfgw_err(&c->w, set[at], cfgw_pk(p, "identity.headers", hdr_keys[at]),
                 "header \"%s\" is also used for identity.headers.%s; each needs its own name",
                 id->headers[at], hdr_keys[at == j ? i : j]);
    }
}

static void parse_limits(ctx_t *c, yaml_node_t *n)
{
    cfg_limits_t *l = &c->cfg->limits;
    cfgw_fld_t f[] = {F("max_connections"), F("max_header_bytes"), F("max_headers"),
                      F("max_body_bytes"), F("lingering_close_bytes"), F("accept_backoff")};
    uint64_t v;
    if (cfgw_map(&c->w, n, "limits", f, NF(f)) < 0)
        return;
    cfgw_opt_u32(&c->w, &f[0], "limits", 1, 1000000, &l->max_connections);
    if (f[1].val &&
        cfgw_num(&c->w, f[1].val, "limits.max_header_bytes", 's', 1024, 1024 * 1024, &v) == 0)
        l->max_header_bytes = (uint32_t)v;
    cfgw_opt_u32(&c->w, &f[2], "limits", 1, 10000, &l->max_headers);
    if (f[3].val)
        cfgw_num(&c->w, f[3].val, "limits.max_body_bytes", 's', 0, UINT64_MAX, &l->max_body_bytes);
    if (f[4].val)
        cfgw_num(&c->w, f[4].val, "limits.lingering_close_bytes", 's', 1024, 1024ULL * 1024 * 1024,
                 &l->lingering_close_bytes);
    if (f[5].val)   /* a worker out of descriptors stops accepting this long */
        cfgw_num(&c->w, f[5].val, "limits.accept_backoff", 'd', 1, 10000, &l->accept_backoff_ms);
}

static void parse_timeouts(ctx_t *c, yaml_node_t *n)
{
    cfg_timeouts_t *t = &c->cfg->timeouts;
    cfgw_fld_t f[] = {F("header_read"), F("body_read"), F("idle"), F("send"), F("drain"),
                      F("lingering_close"), F("reload_grace"), F("drain_idle")};
    uint64_t *out[] = {&t->header_read_ms, &t->body_read_ms, &t->idle_ms, &t->send_ms,
                       &t->drain_ms};
    if (cfgw_map(&c->w, n, "timeouts", f, NF(f)) < 0)
        return;
    for (size_t i = 0; i < NF(out); i++)
        cfgw_opt_dur(&c->w, &f[i], "timeouts", DAY_MS, out[i]);
    if (f[5].val)   /* 0 turns lingering off */
        cfgw_num(&c->w, f[5].val, "timeouts.lingering_close", 'd', 0, 600000, &t->lingering_close_ms);
    if (f[6].val)   /* 0: idle connections of an old generation close at once */
        cfgw_num(&c->w, f[6].val, "timeouts.reload_grace", 'd', 0, DAY_MS, &t->reload_grace_ms);
    if (f[7].val)   /* 0 closes idle connections at once */
        cfgw_num(&c->w, f[7].val, "timeouts.drain_idle", 'd', 0, 600000, &t->drain_idle_ms);
}

static void parse_upstreams(ctx_t *c, yaml_node_t *n)
{
    cfg_t *cfg = c->cfg;
    yaml_node_item_t *it;
    int ok = 1;
    long cnt = cfgw_seq(&c->w, n, "upstreams", 1, 10000, &it);
    if (cnt < 0)
        return;
    cfg->upstreams = cfgp_xcalloc((size_t)cnt, sizeof *cfg->upstreams);
    cfg->nupstreams = (size_t)cnt;
    for (size_t i = 0; i < (size_t)cnt; i++) {
        enum { NAME, SERVERS, CONNECT, RESPONSE, FAIL, KEEPALIVE, KA_TIMEOUT };
        cfgw_fld_t f[] = {F("name"), F("servers"), F("connect_timeout"), F("response_timeout"),
                          F("fail_timeout"), F("keepalive"), F("keepalive_timeout")};
        cfg_upstream_t *u = &cfg->upstreams[i];
        yaml_node_t *item = cfgw_node(&c->w, it[i]), *v;
        char p[CFGW_PATHLEN], q[CFGW_PATHLEN];
        const char *s;
        u->connect_timeout_ms = 2000;
        u->response_timeout_ms = 30000;
        u->fail_timeout_ms = 10000;
        u->keepalive = 32;
        u->keepalive_timeout_ms = 60000;
        cfgw_pi(p, "upstreams", i);
        if (cfgw_map(&c->w, item, p, f, NF(f)) < 0) {
            ok = 0;
            continue;
        }
        if (!(v = cfgw_require(&c->w, item, p, &f[NAME])) ||
            !(s = cfgw_scalar(&c->w, v, cfgw_pk(q, p, "name"), "an upstream name"))) {
            ok = 0;
        } else if (!cfgp_is_name(s, 1)) {
            cfgw_err(&c->w, v, q,
                     "invalid upstream name \"%.60s\": use 1..63 characters of A-Z, a-z, "
                     "0-9, _, - and .", s);
            ok = 0;
        } else {
            long j = cfgp_find_name(cfg->upstreams[0].name, sizeof cfg->upstreams[0], i, s);
            if (j >= 0)
                cfgw_err(&c->w, v, q, "duplicate upstream name \"%s\" (also upstreams[%ld])", s, j);
            snprintf(u->name, sizeof u->name, "%s", s);
        }
        yaml_node_item_t *sit;
        long ns;
        if ((v = cfgw_require(&c->w, item, p, &f[SERVERS])) &&
            (ns = cfgw_seq(&c->w, v, cfgw_pk(q, p, "servers"), 1, 1024, &sit)) > 0) {
            char base[CFGW_PATHLEN];
            snprintf(base, sizeof base, "%s", q);
            u->servers = cfgp_xcalloc((size_t)ns, sizeof *u->servers);
            u->nservers = (size_t)ns;
            for (size_t k = 0; k < (size_t)ns; k++)
                get_addr(c, cfgw_node(&c->w, sit[k]), cfgw_pi(q, base, k), CFGP_ADDR_NAME,
                         &u->servers[k], NULL, 0, NULL);
        }
        cfgw_opt_dur(&c->w, &f[CONNECT], p, DAY_MS, &u->connect_timeout_ms);
        cfgw_opt_dur(&c->w, &f[RESPONSE], p, DAY_MS, &u->response_timeout_ms);
        cfgw_opt_dur(&c->w, &f[FAIL], p, DAY_MS, &u->fail_timeout_ms);
        cfgw_opt_u32(&c->w, &f[KEEPALIVE], p, 0, 10000, &u->keepalive);
        cfgw_opt_dur(&c->w, &f[KA_TIMEOUT], p, DAY_MS, &u->keepalive_timeout_ms);
    }
    c->upstreams_ok = ok;
}

/* Route methods; returns 0 if all valid. */
static int parse_methods(ctx_t *c, yaml_node_t *n, const char *path, cfg_route_t *r)
{
    yaml_node_item_t *it;
    char q[CFGW_PATHLEN];
    int ok = 1;
    long cnt = cfgw_seq(&c->w, n, path, 1, 64, &it);
    if (cnt < 0)
        return -1;
    r->methods = cfgp_xcalloc((size_t)cnt, sizeof *r->methods);
    r->nmethods = (size_t)cnt;
    for (size_t i = 0; i < (size_t)cnt; i++) {
        yaml_node_t *m = cfgw_node(&c->w, it[i]);
        const char *s = cfgw_scalar(&c->w, m, cfgw_pi(q, path, i), "an HTTP method like GET");
        if (!s) {
            ok = 0;
            continue;
        }
        if (!cfgp_valid_header(s) || strpbrk(s, "abcdefghijklmnopqrstuvwxyz")) {
            cfgw_err(&c->w, m, q,
                     "invalid method \"%.60s\": expected an uppercase token like GET or "
                     "POST", s);
            ok = 0;
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (r->methods[j] && strcmp(r->methods[j], s) == 0) {
                cfgw_err(&c->w, m, q, "duplicate method \"%s\"", s);
                ok = 0;
                break;
            }
        }
        r->methods[i] = cfgp_xstrdup(s);
    }
    return ok ? 0 : -1;
}

/* A sequence of at least min class names from tls.classes at path, into
 * the bitmask *mask. */
static void parse_class_list(ctx_t *c, yaml_node_t *n, const char *path, size_t min, uint32_t *mask)
{
    cfg_tls_t *t = &c->cfg->tls;
    yaml_node_item_t *it;
    char q[CFGW_PATHLEN], list[512];
    long cnt = cfgw_seq(&c->w, n, path, min, MAX_CLASSES, &it);
    for (size_t i = 0; cnt > 0 && i < (size_t)cnt; i++) {
        yaml_node_t *m = cfgw_node(&c->w, it[i]);
        const char *s = cfgw_scalar(&c->w, m, cfgw_pi(q, path, i), "a class name from tls.classes");
        if (!s || !c->classes_ok)
            continue;
        long k = cfgp_find_name(t->classes[0].name, sizeof t->classes[0], t->nclasses, s);
        if (k >= 0) {
            *mask |= 1u << k;
            continue;
        }
        cfgp_name_list(list, sizeof list, t->classes[0].name, sizeof t->classes[0], t->nclasses);
        cfgw_err(&c->w, m, q, "class \"%.60s\" is not defined in tls.classes (defined: %s)", s,
                 list);
    }
}

/* Sets r->name: the name given, or "<host><path>" (cut to fit) for metrics
 * labels and logs. Syscall-like: 0, or -1 after reporting the error. */
static int route_name(ctx_t *c, cfg_route_t *r, size_t i, yaml_node_t *v, const char *p)
{
    char q[CFGW_PATHLEN];
    const char *s;
    if (!v) {
        if (r->path)
            snprintf(r->name, sizeof r->name, "%s%s", r->host ? r->host : "", r->path);
        return 0;
    }
    if (!(s = cfgw_scalar(&c->w, v, cfgw_pk(q, p, "name"), "a route name")))
        return -1;
    if (!cfgp_is_name(s, 1)) {
        cfgw_err(&c->w, v, q, "invalid route name \"%.60s\": use 1..63 characters of A-Z, a-z, "
                 "0-9, _, - and .", s);
        return -1;
    }
    long j = cfgp_find_name(c->cfg->routes[0].name, sizeof c->cfg->routes[0], i, s);
    if (j >= 0) {
        cfgw_err(&c->w, v, q, "duplicate route name \"%s\" (also routes[%ld])", s, j);
        return -1;
    }
    snprintf(r->name, sizeof r->name, "%s", s);
    return 0;
}

static void parse_routes(ctx_t *c, yaml_node_t *n)
{
    cfg_t *cfg = c->cfg;
    yaml_node_item_t *it;
    long cnt = cfgw_seq(&c->w, n, "routes", 1, 100000, &it);
    if (cnt < 0)
        return;
    cfg->routes = cfgp_xcalloc((size_t)cnt, sizeof *cfg->routes);
    cfg->nroutes = (size_t)cnt;
    unsigned char *complete = cfgp_xcalloc((size_t)cnt, 1);
    for (size_t i = 0; i < (size_t)cnt; i++) {
        enum { PATH, HOST, METHODS, UPSTREAM, CLASSES, BEARER, RL, RL_HEADERS, JWT, NAME, MIN_INT };
        cfgw_fld_t f[] = {F("path"), F("host"), F("methods"), F("upstream"), F("allow_classes"),
                          F("require_bearer"), F("rate_limits"), F("rate_limit_headers"),
                          F("jwt"), F("name"), F("min_integrity")};
        cfg_route_t *r = &cfg->routes[i];
        yaml_node_t *item = cfgw_node(&c->w, it[i]), *v;
        char p[CFGW_PATHLEN], q[CFGW_PATHLEN], list[512], msg[300];
        const char *s, *why;
        int ok = 1;
        r->require_bearer = 1;
        cfgw_pi(p, "routes", i);
        if (cfgw_map(&c->w, item, p, f, NF(f)) < 0)
            continue;
        if ((v = cfgw_require(&c->w, item, p, &f[PATH])) &&
            (s = cfgw_scalar(&c->w, v, cfgw_pk(q, p, "path"), "a path starting with '/'"))) {
            if (s[0] != '/')
                cfgw_err(&c->w, v, q, "path must start with '/', got \"%.60s\"", s);
            else if (!cfgp_printable(s))
                cfgw_err(&c->w, v, q, "path must not contain spaces or control characters");
            else if ((why = cfgp_route_path_error(s)))
                cfgw_err(&c->w, v, q, "path \"%.60s\" %s", s, why);
            else
                r->path = cfgp_xstrdup(s);
        }
        if (f[HOST].val && (s = cfgw_scalar(&c->w, f[HOST].val, cfgw_pk(q, p, "host"),
                                            "a host name")) &&
            !(r->host = cfgp_route_host(s, msg, sizeof msg)))
            cfgw_err(&c->w, f[HOST].val, q, "%s", msg);
        if (f[HOST].val && !r->host)
            ok = 0;
        if (f[METHODS].val && parse_methods(c, f[METHODS].val, cfgw_pk(q, p, "methods"), r) < 0)
            ok = 0;
        if ((v = cfgw_require(&c->w, item, p, &f[UPSTREAM])) &&
            (s = cfgw_scalar(&c->w, v, cfgw_pk(q, p, "upstream"), "an upstream name"))) {
            long k = -1;
            snprintf(r->upstream_name, sizeof r->upstream_name, "%s", s);
            if (cfg->nupstreams)
                k = cfgp_find_name(cfg->upstreams[0].name, sizeof cfg->upstreams[0],
                                   cfg->nupstreams, s);
            if (k >= 0) {
                r->upstream = (size_t)k;
            } else if (c->upstreams_ok) {
                cfgp_name_list(list, sizeof list, cfg->upstreams[0].name,
                               sizeof cfg->upstreams[0], cfg->nupstreams);
                cfgw_err(&c->w, v, q, "upstream \"%.60s\" is not defined (defined: %s)", s, list);
            }
        }
        if ((v = cfgw_require(&c->w, item, p, &f[CLASSES])))
            parse_class_list(c, v, cfgw_pk(q, p, "allow_classes"), 1, &r->allow_classes);
        cfgw_opt_bool(&c->w, &f[BEARER], p, &r->require_bearer);
        if (f[MIN_INT].val && cfgw_enum(&c->w, f[MIN_INT].val, cfgw_pk(q, p, "min_integrity"),
                                        integrity_names, CFG_INT__COUNT, &r->min_integrity) == 0)
            r->need_integrity = 1;
        cfgp_policy_route(&c->w, cfg, r, p, item, f[RL].val, f[RL_HEADERS].val, f[JWT].val);

        if (route_name(c, r, i, f[NAME].val, p) < 0)
            ok = 0;
        if (!ok || !r->path)
            continue;
        complete[i] = 1;
        long j = cfgp_find_dup_route(cfg->routes, complete, i, cfg->http.path_case_insensitive);
        if (j >= 0)
            cfgw_err(&c->w, f[PATH].val, cfgw_pk(q, p, "path"),
                     "duplicate route: same host, path and "
                     "methods as routes[%ld]", j);
    }
    free(complete);
}

static void parse_redis(ctx_t *c, yaml_node_t *n)
{
    cfg_redis_t *r = &c->cfg->redis;
    cfgw_fld_t f[] = {F("address"), F("password_env"), F("db"), F("connect_timeout"),
                      F("command_timeout")};
    const char *s;
    uint64_t v;
    if (cfgw_map(&c->w, n, "redis", f, NF(f)) < 0)
        return;
    if (f[0].val) {
        cfg_addr_t a;
        char host[PC_DNS_MAX_HOST + 2];
        int port;
        if (get_addr(c, f[0].val, "redis.address", CFGP_ADDR_NAME, &a, host, sizeof host,
                     &port) == 0) {
            cfgp_addr_free(&r->addr);
            r->addr = a;
            free(r->host);
            r->host = cfgp_xstrdup(host);
            r->port = port;
        }
    }
    if (f[1].val && (s = cfgw_scalar(&c->w, f[1].val, "redis.password_env",
                                     "an environment variable name"))) {
        if (!cfgp_valid_env_name(s))
            cfgw_err(&c->w, f[1].val, "redis.password_env", "expected an environment variable name "
                     "like PORTCULLIS_REDIS_PASSWORD (not the password itself), got \"%.60s\"", s);
        else
            r->password_env = cfgp_xstrdup(s);
    }
    if (f[2].val && cfgw_num(&c->w, f[2].val, "redis.db", 'u', 0, 15, &v) == 0)
        r->db = (int)v;
    cfgw_opt_dur(&c->w, &f[3], "redis", DAY_MS, &r->connect_timeout_ms);
    cfgw_opt_dur(&c->w, &f[4], "redis", DAY_MS, &r->command_timeout_ms);
}

/* A Redis key or channel name: printable, no spaces, 1..200 bytes. */
static void opt_redis_name(ctx_t *c, cfgw_fld_t *f, const char *parent, char **out)
{
    char p[CFGW_PATHLEN];
    const char *s;
    if (!f->val || !(s = cfgw_scalar(&c->w, f->val, cfgw_pk(p, parent, f->name),
                                     "a Redis key name")))
        return;
    if (strlen(s) > 200 || !cfgp_printable(s)) {
        cfgw_err(&c->w, f->val, p,
                 "expected a Redis key name of 1..200 characters without spaces or "
                 "control characters, got \"%.60s\"", s);
        return;
    }
    free(*out);
    *out = cfgp_xstrdup(s);
}

static void parse_revocation(ctx_t *c, yaml_node_t *n)
{
    static const char *const modes[] = {"fail_closed", "serve_stale"};
    enum { KEY, CHANNEL, RESYNC, UNAVAILABLE, STALENESS };
    cfg_revocation_t *r = &c->cfg->revocation;
    cfgw_fld_t f[] = {F("key"), F("channel"), F("resync_interval"), F("on_redis_unavailable"),
                      F("max_staleness")};
    uint64_t v;
    int mode;
    if (cfgw_map(&c->w, n, "revocation", f, NF(f)) < 0)
        return;
    opt_redis_name(c, &f[KEY], "revocation", &r->key);
    opt_redis_name(c, &f[CHANNEL], "revocation", &r->channel);
    if (f[RESYNC].val &&
        cfgw_num(&c->w, f[RESYNC].val, "revocation.resync_interval", 'd', 1, DAY_MS, &v) == 0) {
        if (v < 1000)
            cfgw_err(&c->w, f[RESYNC].val, "revocation.resync_interval",
                     "must be at least 1s (a full "
                     "re-sync reads the whole set), got \"%.60s\"",
                     (const char *)f[RESYNC].val->data.scalar.value);
        else
            r->resync_interval_ms = v;
    }
    if (f[UNAVAILABLE].val && cfgw_enum(&c->w, f[UNAVAILABLE].val,
                                        "revocation.on_redis_unavailable",
                                        modes, NF(modes), &mode) == 0)
        r->fail_closed = mode == 0;
    cfgw_opt_dur(&c->w, &f[STALENESS], "revocation", DAY_MS, &r->max_staleness_ms);
}

/* 1 when a is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
static int addr_is_loopback(const cfg_addr_t *a)
{
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->addr;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->addr.ss_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(v6) || (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
    }
    return 0;
}

static void parse_admin(ctx_t *c, yaml_node_t *n)
{
    enum { LISTEN, TOKEN_ENV, MAX_BODY, ALLOW_REMOTE };
    cfg_t *cfg = c->cfg;
    cfg_admin_t *a = &cfg->admin;
    cfgw_fld_t f[] = {F("listen"), F("token_env"), F("max_body_bytes"), F("allow_remote")};
    const char *s;
    uint64_t v;
    if (cfgw_map(&c->w, n, "admin", f, NF(f)) < 0)
        return;
    a->enabled = 1;
    cfgw_opt_bool(&c->w, &f[ALLOW_REMOTE], "admin", &a->allow_remote);
    if (f[LISTEN].val) {
        cfg_addr_t addr;
        if (get_addr(c, f[LISTEN].val, "admin.listen", 0, &addr, NULL, 0, NULL) == 0) {
            free(a->listen.text);
            a->listen = addr;
            /* plain HTTP with a bearer token: reachable from loopback only, unless asked */
            if (!a->allow_remote && !addr_is_loopback(&addr))
                cfgw_err(&c->w, f[LISTEN].val, "admin.listen", "%s is not a loopback address, and "
                         "the admin API is plain HTTP (the token would cross the network in clear "
                         "text); hint: listen on 127.0.0.1 or [::1] and reach it through an "
                         "authenticated tunnel, or set admin.allow_remote: true to accept the risk",
                         addr.text);
        }
    }
    for (size_t i = 0; a->listen.text && i < cfg->nlisteners; i++) {
        cfg_addr_t *l = &cfg->listeners[i].addr;
        if (l->text && l->addrlen == a->listen.addrlen &&
            !memcmp(&l->addr, &a->listen.addr, l->addrlen)) {
            cfgw_err(&c->w, f[LISTEN].val ? f[LISTEN].val : n, "admin.listen", "the admin listener "
                     "needs its own address (listeners[%zu] uses %s)", i, l->text);
            break;
        }
    }
    if (f[TOKEN_ENV].val && (s = cfgw_scalar(&c->w, f[TOKEN_ENV].val, "admin.token_env",
                                             "an environment variable name"))) {
        if (!cfgp_valid_env_name(s)) {
            cfgw_err(&c->w, f[TOKEN_ENV].val, "admin.token_env", "expected an environment variable "
                     "name like PORTCULLIS_ADMIN_TOKEN (not the token itself), got \"%.60s\"", s);
        } else {
            free(a->token_env);
            a->token_env = cfgp_xstrdup(s);
        }
    }
    if (f[MAX_BODY].val &&
        cfgw_num(&c->w, f[MAX_BODY].val, "admin.max_body_bytes", 's', 1024, 16 * 1024 * 1024,
                 &v) == 0)
        a->max_body_bytes = (uint32_t)v;
}

/* Why the log file path cannot be used (checked at load, so --check and a
 * reload say so), or NULL: an existing file that is not a directory and is
 * writable, or a new name in a writable directory. */
static const char *log_file_problem(const char *path, char *buf, size_t len)
{
    struct stat st;
    if (!*path || strlen(path) > 4000 || !cfgp_printable(path))
        return "expected a file name (printable, at most 4000 bytes)";
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return "is a directory";
        if (access(path, W_OK) != 0) {
            snprintf(buf, len, "cannot write \"%s\": %s", path, strerror(errno));
            return buf;
        }
        return NULL;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int e = stat(dir, &st) != 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR
            : access(dir, W_OK | X_OK) != 0 ? errno : 0;
    if (e) {
        snprintf(buf, len, "cannot create \"%s\": %s", path, strerror(e));
        return buf;
    }
    return NULL;
}

static void parse_logging(ctx_t *c, yaml_node_t *n)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    static const char *const formats[] = {"text", "json"};
    cfg_logging_t *l = &c->cfg->logging;
    cfgw_fld_t f[] = {F("level"), F("format"), F("access"), F("buffer"), F("file")};
    if (cfgw_map(&c->w, n, "logging", f, NF(f)) < 0)
        return;
    if (f[0].val)
        cfgw_enum(&c->w, f[0].val, "logging.level", levels, NF(levels), &l->level);
    if (f[1].val)
        cfgw_enum(&c->w, f[1].val, "logging.format", formats, NF(formats), &l->format);
    cfgw_opt_bool(&c->w, &f[2], "logging", &l->access);
    if (f[3].val)
        cfgw_num(&c->w, f[3].val, "logging.buffer", 's', PC_LOG_BUFFER_MIN, PC_LOG_BUFFER_MAX, &l->buffer);
    const char *s;
    if (f[4].val && (s = cfgw_scalar(&c->w, f[4].val, "logging.file", "a file name"))) {
        char buf[4200];
        const char *why = log_file_problem(s, buf, sizeof buf);
        if (why)
            cfgw_err(&c->w, f[4].val, "logging.file", "%s", why);
        else
            l->file = cfgp_xstrdup(s);
    }
}

/* Why name cannot be in http.forward_client_headers, or NULL if it can:
 * only the trust headers the gateway would drop may be listed. */
static const char *forward_refusal(const cfg_t *cfg, const char *name)
{
    if (!cfgp_plain_header(name))
        return "is not a header name of letters, digits and -";
    if (!strcasecmp(name, "X-Forwarded-For") || !strcasecmp(name, "X-Forwarded-Proto"))
        return "is set by the gateway itself";
    for (size_t i = 0; i < CFG_H__COUNT; i++)
        if (!strcasecmp(name, cfg->identity.headers[i]))
            return "is an identity header (identity.headers)";
    for (size_t i = 0; i < cfg->nroutes; i++)
        for (size_t k = 0; cfg->routes[i].jwt && k < cfg->routes[i].jwt->nclaims; k++)
            if (!strcasecmp(name, cfg->routes[i].jwt->claims[k].header))
                return "is a token claim header (claims_to_headers)";
    size_t ip = cfg_identity_prefix(&cfg->identity);
    if (ip && strlen(name) > ip && !strncasecmp(name, cfg->identity.headers[CFG_H_SERIAL], ip))
        return "begins with the identity headers' prefix (identity.headers), which the gateway owns";
    for (size_t i = 0; cfg_trust_prefixes[i]; i++) {
        size_t pn = strlen(cfg_trust_prefixes[i]);
        if (strlen(name) > pn && !strncasecmp(name, cfg_trust_prefixes[i], pn))
            return NULL;
    }
    for (size_t i = 0; cfg_trust_headers[i]; i++)
        if (!strcasecmp(name, cfg_trust_headers[i]))
            return NULL;
    return "is not a header the gateway drops (see docs/configuration.md, http)";
}

static void parse_forward_list(ctx_t *c, yaml_node_t *n, const char *path)
{
    cfg_http_t *h = &c->cfg->http;
    yaml_node_item_t *it;
    char q[CFGW_PATHLEN];
    long cnt = cfgw_seq(&c->w, n, path, 0, 64, &it);
    if (cnt <= 0)
        return;
    h->forward_client_headers = cfgp_xcalloc((size_t)cnt, sizeof(char *));
    for (size_t i = 0; i < (size_t)cnt; i++) {
        yaml_node_t *m = cfgw_node(&c->w, it[i]);
        const char *s = cfgw_scalar(&c->w, m, cfgw_pi(q, path, i), "a header name");
        const char *why;
        if (!s)
            continue;
        if ((why = forward_refusal(c->cfg, s))) {
            cfgw_err(&c->w, m, q, "\"%.60s\" %s", s, why);
            continue;
        }
        size_t k = 0;
        while (k < h->nforward_client_headers && strcasecmp(h->forward_client_headers[k], s))
            k++;
        if (k < h->nforward_client_headers) {
            cfgw_err(&c->w, m, q, "duplicate header \"%.60s\"", s);
            continue;
        }
        h->forward_client_headers[h->nforward_client_headers++] = cfgp_xstrdup(s);
    }
}

/* The http section, in two steps: path_* and underscores_in_headers before
 * routes (path_case decides which routes are duplicates), the forward list
 * after identity and routes, whose header names it checks against. The
 * map's keys are checked once, in the first step. */
static void parse_http(ctx_t *c, yaml_node_t *n)
{
    static const char *const cases[] = {"sensitive", "insensitive"};
    static const char *const empties[] = {"refuse", "merge"};
    static const char *const modes[] = {"drop", "allow", "refuse"};
    static const char *const non_ascii[] = {"allow", "refuse"};
    cfg_http_t *h = &c->cfg->http;
    cfgw_fld_t f[] = {F("path_case"), F("path_empty_segments"), F("underscores_in_headers"),
                      F("forward_client_headers"), F("path_non_ascii")};
    if (cfgw_map(&c->w, n, "http", f, NF(f)) < 0)
        return;
    if (f[0].val)
        cfgw_enum(&c->w, f[0].val, "http.path_case", cases, NF(cases), &h->path_case_insensitive);
    if (f[1].val)
        cfgw_enum(&c->w, f[1].val, "http.path_empty_segments", empties, NF(empties),
                  &h->path_merge_slashes);
    if (f[2].val)
        cfgw_enum(&c->w, f[2].val, "http.underscores_in_headers", modes, NF(modes),
                  &h->underscores_in_headers);
    c->http_forward = f[3].val;
    if (f[4].val)
        cfgw_enum(&c->w, f[4].val, "http.path_non_ascii", non_ascii, NF(non_ascii), &h->path_ascii_only);
}

int cfg_upgrade_default(const char *listener_text, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    char digits[17];
    if (!EVP_Digest(listener_text, strlen(listener_text), md, &mdlen, EVP_sha256(), NULL) ||
        mdlen < 8)
        return -1;
    for (size_t i = 0; i < 8; i++) {
        digits[2 * i] = hex[md[i] >> 4];
        digits[2 * i + 1] = hex[md[i] & 15];
    }
    digits[16] = '\0';
    int n = snprintf(out, outlen, "@portcullis-upgrade-%s", digits);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* upgrade_socket: "@name" (an abstract unix socket) or an absolute path,
 * printable ASCII, at most CFG_UPGRADE_SOCKET_MAX bytes. Absent: the default
 * from the first listener (set once listeners are read). */
static void parse_upgrade_socket(ctx_t *c, yaml_node_t *n)
{
    cfg_t *cfg = c->cfg;
    if (n) {
        const char *s = cfgw_scalar(&c->w, n, "upgrade_socket",
                                    "an absolute path or \"@name\" (abstract unix socket)");
        if (!s)
            return;
        size_t len = strlen(s);
        int printable = 1;
        for (size_t i = 0; i < len; i++)
            printable &= s[i] > 0x20 && s[i] < 0x7f;
        if (len < 2 || (s[0] != '@' && s[0] != '/'))
            cfgw_err(&c->w, n, "upgrade_socket", "expected an absolute path or \"@name\" "
                     "(abstract unix socket), got \"%.80s\"", s);
        else if (len > CFG_UPGRADE_SOCKET_MAX)
            cfgw_err(&c->w, n, "upgrade_socket", "too long: %zu bytes, at most %d (a unix "
                     "socket address)", len, CFG_UPGRADE_SOCKET_MAX);
        else if (!printable)
            cfgw_err(&c->w, n, "upgrade_socket", "only printable ASCII without spaces is allowed");
        else
            cfg->upgrade_socket = cfgp_xstrdup(s);
        return;
    }
    char def[64];
    if (cfg->nlisteners && cfg->listeners[0].addr.text &&
        cfg_upgrade_default(cfg->listeners[0].addr.text, def, sizeof def) == 0)
        cfg->upgrade_socket = cfgp_xstrdup(def);
}

static void parse_root(ctx_t *c, yaml_node_t *root)
{
    enum { WORKERS, LISTENERS, TLS, IDENTITY, LIMITS, TIMEOUTS, UPSTREAMS, ROUTES, REDIS,
           REVOCATION, ADMIN, LOGGING, RATE_LIMITS, CONN_LIMITS,
           ISSUANCE, HTTP, UPGRADE_SOCKET, METRICS, USER, GROUP, RESOLVER };
    cfgw_fld_t f[] = {F("workers"), F("listeners"), F("tls"), F("identity"), F("limits"),
                      F("timeouts"), F("upstreams"), F("routes"), F("redis"), F("revocation"),
                      F("admin"), F("logging"), F("rate_limits"), F("connection_limits"),
                      F("issuance"), F("http"), F("upgrade_socket"), F("metrics"),
                      F("user"), F("group"), F("resolver")};
    if (cfgw_map(&c->w, root, "", f, NF(f)) < 0)
        return;
    parse_workers(c, f[WORKERS].val);
    if (cfgw_require(&c->w, root, "", &f[LISTENERS]))
        cfgl_parse_listeners(&c->w, f[LISTENERS].val, c->cfg);
    if (cfgw_require(&c->w, root, "", &f[TLS]))
        parse_tls(c, f[TLS].val);
    if (f[IDENTITY].val)
        parse_identity(c, f[IDENTITY].val);
    if (f[LIMITS].val)
        parse_limits(c, f[LIMITS].val);
    if (f[TIMEOUTS].val)
        parse_timeouts(c, f[TIMEOUTS].val);
    if (f[HTTP].val)
        parse_http(c, f[HTTP].val);
    if (cfgw_require(&c->w, root, "", &f[UPSTREAMS]))
        parse_upstreams(c, f[UPSTREAMS].val);
    /* before routes, which refer to rate limits by name */
    cfgp_policy_top(&c->w, c->cfg, f[RATE_LIMITS].val, f[CONN_LIMITS].val);
    if (cfgw_require(&c->w, root, "", &f[ROUTES]))
        parse_routes(c, f[ROUTES].val);
    if (c->http_forward)
        parse_forward_list(c, c->http_forward, "http.forward_client_headers");
    if (f[REDIS].val)
        parse_redis(c, f[REDIS].val);
    if (f[REVOCATION].val)
        parse_revocation(c, f[REVOCATION].val);
    if (f[ADMIN].val)
        parse_admin(c, f[ADMIN].val);
    if (f[LOGGING].val)
        parse_logging(c, f[LOGGING].val);
    if (f[METRICS].val)   /* after listeners and admin */
        cfgm_parse_metrics(&c->w, f[METRICS].val, c->cfg);
    if (f[ISSUANCE].val) /* after tls and identity, which it refers to */
        cfgi_parse_issuance(&c->w, f[ISSUANCE].val, c->cfg);
    cfg_integrity_classes_default(c->cfg);   /* after issuance, whose device class it is */
    parse_upgrade_socket(c, f[UPGRADE_SOCKET].val);   /* after listeners: the default */
    cfgs_parse_runas(&c->w, f[USER].val, f[GROUP].val, c->cfg);
    /* last: every name is known (not with a resolver section in error) */
    if (!f[RESOLVER].val || cfgr_parse_resolver(&c->w, f[RESOLVER].val, c->cfg) == 0)
        cfgr_resolve_names(&c->w, c->cfg);
}

/* ---------------------------------------------------------------- load */

static void cfg_defaults(cfg_t *cfg)
{
    cfg->workers = 1; /* "auto" is resolved in parse_workers() */
    cfg->tls.min_version = CFG_TLS12;
    cfg->tls.ciphers = cfgp_xstrdup(DEF_CIPHERS);
    cfg->tls.ciphersuites = cfgp_xstrdup(DEF_SUITES);
    cfg->tls.groups = cfgp_xstrdup(DEF_GROUPS);
    cfg->tls.handshake_timeout_ms = 10000;
    cfg->tls.session_cache_size = 20480;
    cfg->tls.session_lifetime_ms = 3600000;
    cfg->tls.verify_cache_size = 10000;
    cfg->tls.verify_cache_lifetime_ms = 3600000;
    cfg->identity.device_id_source = CFG_DEVID_SAN_URI;
    cfg->identity.device_id_prefix = cfgp_xstrdup(DEF_PREFIX);
    for (size_t i = 0; i < CFG_H__COUNT; i++)
        cfg->identity.headers[i] = cfgp_xstrdup(hdr_defaults[i]);
    for (int i = 0; i < CFG_INT__COUNT; i++) {
        char oid[CFG_OID_TEXT_MAX];
        const char *why;
        snprintf(oid, sizeof oid, "%s.%d", CFG_INTEGRITY_ARC, i);
        if (cfg_oid_parse(oid, &cfg->identity.integrity_oids[i], &why) < 0)
            abort();   /* a constant */
    }
    cfg->limits.max_connections = 10000;
    cfg->limits.max_header_bytes = 16 * 1024;
    cfg->limits.max_headers = 100;
    cfg->limits.max_body_bytes = 64ULL * 1024 * 1024;
    cfg->timeouts.header_read_ms = 10000;
    cfg->timeouts.body_read_ms = 30000;
    cfg->timeouts.idle_ms = 60000;
    cfg->timeouts.send_ms = 30000;
    cfg->timeouts.drain_ms = 30000;
    cfg->timeouts.drain_idle_ms = 1000;
    cfg->timeouts.lingering_close_ms = 5000;
    cfg->timeouts.reload_grace_ms = 30000;
    cfg->limits.lingering_close_bytes = 16ULL * 1024 * 1024;
    cfg->limits.accept_backoff_ms = 100;
    cfg->redis.host = cfgp_xstrdup("127.0.0.1");
    cfg->redis.port = 6379;
    if (cfg_parse_addr("127.0.0.1:6379", 0, &cfg->redis.addr) < 0)
        abort();
    cfgr_defaults(cfg);
    cfg->redis.password_env = NULL;
    cfg->redis.db = 0;
    cfg->redis.connect_timeout_ms = 1000;
    cfg->redis.command_timeout_ms = 1000;
    cfg->revocation.key = cfgp_xstrdup("portcullis:revoked");
    cfg->revocation.channel = cfgp_xstrdup("portcullis:revocations");
    cfg->revocation.resync_interval_ms = 300000;
    cfg->revocation.fail_closed = 1;
    cfg->revocation.max_staleness_ms = 300000;
    cfg->admin.enabled = 0; /* set when the admin section is present */
    if (cfg_parse_addr("127.0.0.1:9444", 0, &cfg->admin.listen) < 0)
        abort();
    cfg->admin.token_env = cfgp_xstrdup("PORTCULLIS_ADMIN_TOKEN");
    cfg->admin.max_body_bytes = 64 * 1024;
    cfg->logging.level = CFG_LOG_INFO;
    cfg->logging.format = CFG_LOG_TEXT;
    cfg->logging.access = 1;
    cfg->logging.buffer = PC_LOG_BUFFER_DEFAULT;
}

cfg_t *cfg_load(const char *path, cfg_errors_t *errs)
{
    cfg_errors_t local;
    ctx_t c;
    cfg_t *cfg = NULL;
    FILE *fp = NULL;
    char msg[512];

    memset(&local, 0, sizeof local);
    if (!errs)
        errs = &local;
    free(errs->file);
    errs->file = cfgp_xstrdup(path ? path : "(null)");
    memset(&c, 0, sizeof c);
    c.w.fn = report;
    c.w.arg = &c;
    c.errs = errs;
    c.base = errs->n;

    struct stat st;
    if (!path || !(fp = fopen(path, "rb")) || fstat(fileno(fp), &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        snprintf(msg, sizeof msg, "cannot open the configuration file: %s",
                 !path ? "no path given" : fp ? "not a regular file" : strerror(errno));
        if (fp)
            fclose(fp);
        add_error(&c, 1, 1, "", msg);
    } else {
        yaml_parser_t parser;
        yaml_document_t doc;
        if (!yaml_parser_initialize(&parser))
            abort();
        yaml_parser_set_input_file(&parser, fp);
        if (!yaml_parser_load(&parser, &doc)) {
            cfgp_syntax_msg(&parser, msg, sizeof msg);
            add_error(&c, (size_t)parser.problem_mark.line + 1,
                      (size_t)parser.problem_mark.column + 1, "(yaml)", msg);
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&doc);
            cfg = cfgp_xcalloc(1, sizeof *cfg);
            cfg->path = cfgp_xstrdup(path);
            cfg_defaults(cfg);
            c.w.doc = &doc;
            c.cfg = cfg;
            if (!root || cfgp_is_null(root)) {
                add_error(&c, 1, 1, "", "the configuration is empty (expected a mapping with "
                          "at least listeners, tls, upstreams and routes)");
            } else {
                yaml_document_t more;
                parse_root(&c, root);
                if (!yaml_parser_load(&parser, &more)) {
                    cfgp_syntax_msg(&parser, msg, sizeof msg);
            add_error(&c, (size_t)parser.problem_mark.line + 1,
                      (size_t)parser.problem_mark.column + 1, "(yaml)", msg);
                } else {
                    yaml_node_t *r2 = yaml_document_get_root_node(&more);
                    if (r2)
                        cfgw_err(&c.w, r2, "(yaml)", "more than one YAML document in the file; "
                                 "expected exactly one");
                    yaml_document_delete(&more);
                }
            }
            yaml_document_delete(&doc);
        }
        yaml_parser_delete(&parser);
        fclose(fp);
    }

    SSL_CTX_free(c.ssl);
    for (size_t i = 0; i < MAX_CLASSES; i++)
        sk_X509_pop_free(c.ca[i], X509_free);
    if (errs->n > c.base)   /* msgs is NULL while no error was ever added */
        cfgp_sort_errors(errs->msgs + c.base, c.pos, errs->n - c.base);
    if (c.truncated) {
        c.base = errs->n; /* lift the limit for this last line */
        add_error(&c, 1, 1, "", "too many errors; only the first ones are shown");
    }
    free(c.pos);
    if (errs->n > c.base || c.truncated) {
        cfg_free(cfg);
        cfg = NULL;
    }
    if (errs == &local)
        cfg_errors_free(&local);
    return cfg;
}
