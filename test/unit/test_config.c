/* Unit tests: configuration loading and validation (config/config.c).
 *
 * Run from the repository root (or pass the root as argv[1]). PKI_DIR may
 * point at a directory holding server.crt, server.key, device-ca.crt and
 * bootstrap-ca.crt; without it a small PKI is made with the openssl CLI.
 *
 * Every .yaml file in test/unit/config_cases must fail to load, and the first error
 * line must contain the text of its first line, "# expect: <text>". In that
 * text " ... " separates parts that must appear in this order. Before loading,
 * ${PKI} is replaced by the PKI directory and ${TMP} by a scratch directory
 * that holds extra keys (other.key: a P-256 key matching no certificate,
 * rsa1024.key: a too-short RSA key) and device-ca-reissued.crt (the device
 * CA re-issued: same subject and key, another serial).
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "../../config/config.h"

static int passed, failed;

__attribute__((format(printf, 3, 4)))
static void check(int ok, const char *name, const char *fmt, ...)
{
    if (ok) {
        passed++;
        printf("ok - %s\n", name);
        return;
    }
    failed++;
    printf("not ok - %s: ", name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* snprintf that treats truncation as a broken test setup. */
__attribute__((format(printf, 3, 4)))
static void fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "test_config: string too long for its buffer: %.60s...\n", buf);
        exit(2);
    }
}

/* ------------------------------------------------------------- files */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static int write_all(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t len = strlen(text);
    int rc = fwrite(text, 1, len, f) == len ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

/* Returns a new string with every `from` replaced by `to`. */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
        n++;
    size_t len = strlen(s) + n * tl + 1;
    char *out = malloc(len), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!q)
            break;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    *o = '\0';
    return out;
}

static char *subst(const char *text, const char *pki, const char *tmp)
{
    char *a = replace_all(text, "${PKI}", pki);
    char *b = a ? replace_all(a, "${TMP}", tmp) : NULL;
    free(a);
    return b;
}

/* Writes text (after substitution) to dir/name; returns 0 on success. */
static int write_case(const char *dir, const char *name, const char *text, const char *pki,
                      const char *tmp, char *path, size_t pathlen)
{
    char *s = subst(text, pki, tmp);
    fmt(path, pathlen, "%s/%s", dir, name);
    int rc = s ? write_all(path, s) : -1;
    free(s);
    return rc;
}

/* ------------------------------------------------------------- PKI */

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static int make_pki(const char *dir)
{
    static const char cnf[] =
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
        "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost\n";
    char path[512], cmd[4096];
    fmt(path, sizeof path, "%s/openssl.cnf", dir);
    if (write_all(path, cnf) != 0)
        return -1;
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    fmt(cmd, sizeof cmd,
             "cd '%s' && "
             "openssl req -x509 -config openssl.cnf -extensions ca %s -keyout device-ca.key "
             "-out device-ca.crt -days 30 -subj '/CN=Test Device CA' 2>/dev/null && "
             "openssl req -x509 -config openssl.cnf -extensions ca %s -keyout bootstrap-ca.key "
             "-out bootstrap-ca.crt -days 30 -subj '/CN=Test Bootstrap CA' 2>/dev/null && "
             "openssl req -new -config openssl.cnf %s -keyout server.key -out server.csr "
             "-subj '/CN=localhost' 2>/dev/null && "
             "openssl x509 -req -in server.csr -CA device-ca.crt -CAkey device-ca.key "
             "-set_serial 2 -days 30 -extfile openssl.cnf -extensions leaf -out server.crt "
             "2>/dev/null",
             dir, ec, ec, ec);
    return run(cmd);
}

static int write_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "wb");
    int ok = f && k && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    if (f)
        fclose(f);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

static int make_extra_keys(const char *dir)
{
    char path[512];
    fmt(path, sizeof path, "%s/other.key", dir);
    if (write_key(path, EVP_EC_gen("P-256")) != 0)
        return -1;
    fmt(path, sizeof path, "%s/rsa1024.key", dir);
    return write_key(path, EVP_RSA_gen(1024));
}

/* ${TMP}/device-ca-reissued.crt: the PKI's device CA issued again (same
 * subject and key, another serial, hence another DER encoding). */
static int make_reissued_ca(const char *pki, const char *dir)
{
    char path[512];
    fmt(path, sizeof path, "%s/device-ca.crt", pki);
    FILE *f = fopen(path, "rb");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    fmt(path, sizeof path, "%s/device-ca.key", pki);
    f = fopen(path, "rb");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    int ok = x && k && ASN1_INTEGER_set(X509_get_serialNumber(x), 0x5e15) == 1 &&
             X509_sign(x, k, EVP_sha256()) > 0;
    fmt(path, sizeof path, "%s/device-ca-reissued.crt", dir);
    f = ok ? fopen(path, "wb") : NULL;
    ok = f && PEM_write_X509(f, x) == 1;
    if (f)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

/* A JWKS with one Ed25519 key (the RFC 8037 example public key), for jwt. */
static int make_jwks(const char *dir)
{
    char path[512];
    fmt(path, sizeof path, "%s/jwks.json", dir);
    return write_all(path, "{\"keys\": [{\"kty\": \"OKP\", \"crv\": \"Ed25519\", "
                           "\"kid\": \"k1\", \"use\": \"sig\", "
                           "\"x\": \"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}\n");
}

/* Play Integrity test keys: ${TMP}/play-decryption.key (base64 of 32 bytes)
 * and ${TMP}/play-verification.key (base64 DER of an EC P-256 public key). */
static int make_play_keys(const char *dir)
{
    char path[512], b64[256];
    unsigned char raw[32], *der = NULL;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    int dl = k ? i2d_PUBKEY(k, &der) : -1;
    EVP_PKEY_free(k);
    if (dl <= 0 || dl > 180)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (unsigned char)(i * 7 + 1);
    EVP_EncodeBlock((unsigned char *)b64, raw, sizeof raw);
    fmt(path, sizeof path, "%s/play-decryption.key", dir);
    int rc = write_all(path, b64);
    EVP_EncodeBlock((unsigned char *)b64, der, dl);
    OPENSSL_free(der);
    fmt(path, sizeof path, "%s/play-verification.key", dir);
    return rc == 0 && write_all(path, b64) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------- parsers */

static void test_durations(void)
{
    static const struct { const char *s; uint64_t ms; } good[] = {
        {"500ms", 500}, {"10s", 10000}, {"5m", 300000}, {"1h", 3600000},
        {"2d", 172800000}, {"0s", 0}, {"007s", 7000},
        {"18446744073709551615ms", UINT64_MAX},
    };
    static const char *const bad[] = {
        "", "10", "s", "-5s", "+5s", "5 s", " 5s", "5s ", "1.5s", "10x", "10sec", "5S",
        "0x10s", "18446744073709551616ms", "18446744073709551615s", "99999999999999999999d",
    };
    char name[128];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 12345;
        int rc = cfg_parse_duration_ms(good[i].s, &v);
        fmt(name, sizeof name, "duration \"%s\"", good[i].s);
        check(rc == 0 && v == good[i].ms, name, "rc=%d value=%llu", rc, (unsigned long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 12345;
        int rc = cfg_parse_duration_ms(bad[i], &v);
        fmt(name, sizeof name, "duration \"%s\" rejected", bad[i]);
        check(rc == -1 && v == 12345, name, "rc=%d value=%llu", rc, (unsigned long long)v);
    }
}

static void test_sizes(void)
{
    static const struct { const char *s; uint64_t v; } good[] = {
        {"0", 0}, {"512", 512}, {"16k", 16384}, {"16K", 16384}, {"10m", 10485760},
        {"10M", 10485760}, {"1g", 1073741824}, {"1G", 1073741824},
        {"17179869183g", 17179869183ULL << 30},
    };
    static const char *const bad[] = {
        "", "k", "-1", "+1", "1kb", "1t", "1 k", "1.5k", "0x10",
        "18446744073709551616", "17179869184g", "99999999999999999999",
    };
    char name[128];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 12345;
        int rc = cfg_parse_size(good[i].s, &v);
        fmt(name, sizeof name, "size \"%s\"", good[i].s);
        check(rc == 0 && v == good[i].v, name, "rc=%d value=%llu", rc, (unsigned long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 12345;
        int rc = cfg_parse_size(bad[i], &v);
        fmt(name, sizeof name, "size \"%s\" rejected", bad[i]);
        check(rc == -1 && v == 12345, name, "rc=%d value=%llu", rc, (unsigned long long)v);
    }
}

static int addr_is(const cfg_addr_t *a, int family, const char *ip, int port)
{
    char buf[INET6_ADDRSTRLEN] = "";
    if (a->addr.ss_family != family)
        return 0;
    if (family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->addr;
        inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        return a->addrlen == sizeof *in && ntohs(in->sin_port) == port && !strcmp(buf, ip);
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->addr;
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return a->addrlen == sizeof *in6 && ntohs(in6->sin6_port) == port && !strcmp(buf, ip);
}

static void test_addresses(void)
{
    static const struct { const char *s; int def; int family; const char *ip; int port; } good[] = {
        {"127.0.0.1:8443", 0, AF_INET, "127.0.0.1", 8443},
        {"[::1]:8443", 0, AF_INET6, "::1", 8443},
        {"*:8443", 0, AF_INET, "0.0.0.0", 8443},
        {"localhost:80", 0, AF_INET, "127.0.0.1", 80},
        {"localhost.:80", 0, AF_INET, "127.0.0.1", 80},   /* the same name, fully qualified */
        {"LocalHost.:81", 0, AF_INET, "127.0.0.1", 81},
        {"10.1.2.3:1", 0, AF_INET, "10.1.2.3", 1},
        {"10.1.2.3:65535", 0, AF_INET, "10.1.2.3", 65535},
        {"127.0.0.1", 6379, AF_INET, "127.0.0.1", 6379},
        {"[2001:db8::5]", 443, AF_INET6, "2001:db8::5", 443},
    };
    static const struct { const char *s; int def; } bad[] = {
        {"127.0.0.1:0", 0}, {"127.0.0.1:70000", 0}, {"127.0.0.1:65536", 0},
        {"127.0.0.1:-1", 0}, {"127.0.0.1:", 0}, {"127.0.0.1", 0}, {"::1:8443", 0},
        {"::1", 443}, {"[::1", 0}, {"[::1]8443", 0}, {"[127.0.0.1]:80", 0},
        {"example.com:80", 0}, {"256.1.1.1:80", 0}, {":8443", 0}, {"", 0},
        {"1.2.3.4:80x", 0}, {"1.2.3.4:99999999999999999999", 0}, {"[*]:80", 0},
    };
    char name[128];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cfg_addr_t a;
        int rc = cfg_parse_addr(good[i].s, good[i].def, &a);
        fmt(name, sizeof name, "address \"%s\"", good[i].s);
        check(rc == 0 && addr_is(&a, good[i].family, good[i].ip, good[i].port) && a.text &&
                  !strcmp(a.text, good[i].s),
              name, "rc=%d", rc);
        if (rc == 0)
            free(a.text);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg_addr_t a;
        int rc = cfg_parse_addr(bad[i].s, bad[i].def, &a);
        fmt(name, sizeof name, "address \"%s\" rejected", bad[i].s);
        check(rc == -1 && a.text == NULL, name, "rc=%d", rc);
        if (rc == 0)
            free(a.text);
    }
}

/* ------------------------------------------------------------- loading */

static const char *first_error(const cfg_errors_t *e)
{
    return e->n ? e->msgs[0] : "(no error)";
}

static void test_example(const char *root, const char *pki, const char *tmp)
{
    char path[1024], dir[1024];
    fmt(path, sizeof path, "%s/config/example.yaml", root);
    char *text = read_all(path);
    check(text != NULL, "example.yaml readable", "%s: %s", path, strerror(errno));
    if (!text)
        return;
    fmt(dir, sizeof dir, "%s/", pki);
    char *s = replace_all(text, "run/pki/", dir);
    free(text);
    write_case(tmp, "example.yaml", s ? s : "", pki, tmp, path, sizeof path);
    free(s);

    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg != NULL && errs.n == 0, "example.yaml loads", "%zu errors, first: %s", errs.n,
          first_error(&errs));
    if (cfg) {
        check(cfg->workers >= 1 && cfg->workers <= 256, "example: workers auto resolved",
              "workers=%d", cfg->workers);
        check(cfg->nlisteners == 1 && !strcmp(cfg->listeners[0].addr.text, "127.0.0.1:8443") &&
                  addr_is(&cfg->listeners[0].addr, AF_INET, "127.0.0.1", 8443),
              "example: listener", "nlisteners=%zu", cfg->nlisteners);
        check(cfg->tls.ncerts == 1 && strstr(cfg->tls.certs[0].cert_file, "server.crt") &&
                  strstr(cfg->tls.certs[0].key_file, "server.key"),
              "example: certificate", "ncerts=%zu", cfg->tls.ncerts);
        check(cfg->tls.nclasses == 2 && !strcmp(cfg->tls.classes[0].name, "device") &&
                  !strcmp(cfg->tls.classes[1].name, "bootstrap") &&
                  strstr(cfg->tls.classes[1].ca_file, "bootstrap-ca.crt"),
              "example: classes", "nclasses=%zu", cfg->tls.nclasses);
        check(cfg->nupstreams == 1 && !strcmp(cfg->upstreams[0].name, "demo") &&
                  cfg->upstreams[0].nservers == 1 &&
                  addr_is(&cfg->upstreams[0].servers[0], AF_INET, "127.0.0.1", 9080),
              "example: upstream", "nupstreams=%zu", cfg->nupstreams);
        check(cfg->nroutes == 2 && !strcmp(cfg->routes[0].path, "/certificates/") &&
                  cfg->routes[0].allow_classes == 3 && cfg->routes[0].require_bearer == 0 &&
                  cfg->routes[0].upstream == 0 && !strcmp(cfg->routes[0].upstream_name, "demo") &&
                  cfg->routes[1].allow_classes == 1 && cfg->routes[1].require_bearer == 1 &&
                  cfg->routes[1].host == NULL && cfg->routes[1].nmethods == 0,
              "example: routes", "nroutes=%zu", cfg->nroutes);
        check(cfg->redis.password_env && !strcmp(cfg->redis.password_env,
                                                 "PORTCULLIS_REDIS_PASSWORD") &&
                  !strcmp(cfg->redis.host, "127.0.0.1") && cfg->redis.port == 6379,
              "example: redis", "host=%s", cfg->redis.host);
        check(cfg->limits.max_header_bytes == 16384 &&
                  cfg->limits.max_body_bytes == 64ULL << 20,
              "example: sizes", "max_header_bytes=%u", cfg->limits.max_header_bytes);
        check(cfg->path && !strcmp(cfg->path, path), "example: path kept", "path=%s",
              cfg->path ? cfg->path : "(null)");
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

static const char minimal_yaml[] =
    "listeners:\n"
    "  - address: 127.0.0.1:8443\n"
    "tls:\n"
    "  certificates:\n"
    "    - cert: ${PKI}/server.crt\n"
    "      key: ${PKI}/server.key\n"
    "  classes:\n"
    "    - name: device\n"
    "      ca: ${PKI}/device-ca.crt\n"
    "upstreams:\n"
    "  - name: api\n"
    "    servers: [127.0.0.1:9080]\n"
    "routes:\n"
    "  - path: /\n"
    "    upstream: api\n"
    "    allow_classes: [device]\n";

static void test_defaults(const char *pki, const char *tmp)
{
    static const char *const hdrs[CFG_H__COUNT] = {
        "X-Client-Cert-Serial", "X-Client-Cert-Fingerprint", "X-Client-Cert-Subject",
        "X-Client-Cert-Issuer", "X-Client-Cert-SAN-URI", "X-Client-Cert-SAN-DNS",
        "X-Client-Cert-Not-After", "X-Client-Cert-Class", "X-Device-Id", "X-Device-Integrity",
    };
    char path[1024];
    cfg_errors_t errs = {0};
    write_case(tmp, "minimal.yaml", minimal_yaml, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg != NULL, "minimal config loads", "first error: %s", first_error(&errs));
    if (cfg) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (cores > 256)
            cores = 256;
        check(cfg->workers == (cores < 1 ? 1 : cores), "default workers = cores",
              "workers=%d cores=%ld", cfg->workers, cores);
        cfg_tls_t *t = &cfg->tls;
        check(t->min_version == CFG_TLS12, "default min_version 1.2", "%#x", t->min_version);
        check(!strcmp(t->ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"),
              "default ciphers", "%s", t->ciphers);
        check(!strcmp(t->ciphersuites, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                       "TLS_CHACHA20_POLY1305_SHA256"),
              "default ciphersuites", "%s", t->ciphersuites);
        check(!strcmp(t->groups, "X25519:P-256:P-384"), "default groups", "%s", t->groups);
        check(t->handshake_timeout_ms == 10000 && t->session_cache_size == 20480 &&
                  t->session_lifetime_ms == 3600000,
              "default handshake/session cache", "%llu %u %llu",
              (unsigned long long)t->handshake_timeout_ms, t->session_cache_size,
              (unsigned long long)t->session_lifetime_ms);
        check(t->verify_cache_size == 10000 && t->verify_cache_lifetime_ms == 3600000,
              "default verify cache", "%u %llu", t->verify_cache_size,
              (unsigned long long)t->verify_cache_lifetime_ms);
        cfg_identity_t *id = &cfg->identity;
        int hdr_ok = 1;
        for (int i = 0; i < CFG_H__COUNT; i++)
            hdr_ok &= id->headers[i] && !strcmp(id->headers[i], hdrs[i]);
        check(id->device_id_source == CFG_DEVID_SAN_URI &&
                  !strcmp(id->device_id_prefix, "urn:portcullis:device:") && hdr_ok,
              "default identity", "prefix=%s", id->device_id_prefix);
        cfg_limits_t *l = &cfg->limits;
        check(l->max_connections == 10000 && l->max_header_bytes == 16384 &&
                  l->max_headers == 100 && l->max_body_bytes == 64ULL << 20,
              "default limits", "%u %u %u %llu", l->max_connections, l->max_header_bytes,
              l->max_headers, (unsigned long long)l->max_body_bytes);
        cfg_timeouts_t *to = &cfg->timeouts;
        check(to->header_read_ms == 10000 && to->body_read_ms == 30000 && to->idle_ms == 60000 &&
                  to->send_ms == 30000 && to->drain_ms == 30000,
              "default timeouts", "%llu", (unsigned long long)to->header_read_ms);
        cfg_upstream_t *u = &cfg->upstreams[0];
        check(u->connect_timeout_ms == 2000 && u->response_timeout_ms == 30000 &&
                  u->fail_timeout_ms == 10000 && u->keepalive == 32 &&
                  u->keepalive_timeout_ms == 60000,
              "default upstream settings", "keepalive=%u", u->keepalive);
        check(cfg->routes[0].require_bearer == 1 && cfg->routes[0].allow_classes == 1 &&
                  cfg->routes[0].host == NULL && cfg->routes[0].methods == NULL,
              "default route settings", "require_bearer=%d", cfg->routes[0].require_bearer);
        cfg_redis_t *r = &cfg->redis;
        check(!strcmp(r->host, "127.0.0.1") && r->port == 6379 && r->password_env == NULL &&
                  r->db == 0 && r->connect_timeout_ms == 1000 && r->command_timeout_ms == 1000,
              "default redis", "host=%s port=%d", r->host, r->port);
        cfg_revocation_t *rv = &cfg->revocation;
        check(rv->key && !strcmp(rv->key, "portcullis:revoked") && rv->channel &&
                  !strcmp(rv->channel, "portcullis:revocations") &&
                  rv->resync_interval_ms == 300000 && rv->fail_closed == 1 &&
                  rv->max_staleness_ms == 300000,
              "default revocation", "key=%s fail_closed=%d", rv->key ? rv->key : "(null)",
              rv->fail_closed);
        cfg_admin_t *ad = &cfg->admin;
        check(ad->enabled == 0 && ad->listen.text && !strcmp(ad->listen.text, "127.0.0.1:9444") &&
                  addr_is(&ad->listen, AF_INET, "127.0.0.1", 9444) && ad->token_env &&
                  !strcmp(ad->token_env, "PORTCULLIS_ADMIN_TOKEN") &&
                  ad->max_body_bytes == 65536,
              "default admin (disabled)", "enabled=%d", ad->enabled);
        check(cfg->logging.level == CFG_LOG_INFO && cfg->logging.format == CFG_LOG_TEXT &&
                  cfg->logging.access == 1 && cfg->logging.buffer == 256 * 1024 && !cfg->logging.file,
              "default logging", "level=%d", cfg->logging.level);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

static const char full_yaml[] =
    "workers: 4\n"
    "listeners:\n"
    "  - address: \"[::1]:8443\"\n"
    "  - address: \"*:9443\"\n"
    "tls:\n"
    "  certificates:\n"
    "    - {cert: ${PKI}/server.crt, key: ${PKI}/server.key}\n"
    "  min_version: \"1.3\"\n"
    "  ciphers: ECDHE-ECDSA-AES128-GCM-SHA256\n"
    "  ciphersuites: TLS_AES_256_GCM_SHA384\n"
    "  groups: P-256\n"
    "  handshake_timeout: 1500ms\n"
    "  session_cache: {size: 0, lifetime: 24h}\n"
    "  verify_cache: {size: 1000000, lifetime: 90s}\n"
    "  classes:\n"
    "    - {name: device, ca: ${PKI}/device-ca.crt}\n"
    "    - {name: boot-strap_2, ca: ${PKI}/bootstrap-ca.crt}\n"
    "identity:\n"
    "  device_id: {source: cn, prefix: \"\"}\n"
    "  headers:\n"
    "    serial: X-Serial\n"
    "    device_id: X-Dev\n"
    "limits: {max_connections: 1, max_header_bytes: 1k, max_headers: 10000, "
    "max_body_bytes: 0}\n"
    "timeouts: {header_read: 1d, body_read: 1ms, idle: 2m, send: 3s, drain: 4h}\n"
    "upstreams:\n"
    "  - name: a\n"
    "    servers: [127.0.0.1:1]\n"
    "  - name: B.svc\n"
    "    servers: [\"[::1]:9000\", localhost:9001]\n"
    "    keepalive: 0\n"
    "    keepalive_timeout: 5s\n"
    "routes:\n"
    "  - path: /api/\n"
    "    host: api.example.com\n"
    "    methods: [GET, POST]\n"
    "    upstream: B.svc\n"
    "    allow_classes: [boot-strap_2]\n"
    "  - path: /api/\n"
    "    host: api.example.com\n"
    "    methods: [PUT]\n"
    "    upstream: a\n"
    "    allow_classes: [device, boot-strap_2]\n"
    "    require_bearer: false\n"
    "redis: {address: \"[::1]:6380\", db: 15, password_env: REDIS_PW}\n"
    "revocation: {key: \"rev:set\", channel: rev-chan, resync_interval: 1s,\n"
    "             on_redis_unavailable: serve_stale, max_staleness: 1h}\n"
    "admin: {listen: \"[::1]:9555\", token_env: ADMIN_TOK, max_body_bytes: 1k}\n"
    "logging: {level: debug, format: json, access: false, buffer: 1m, file: /tmp/pc-cfg-test.log}\n";

static void test_full(const char *pki, const char *tmp)
{
    char path[1024];
    cfg_errors_t errs = {0};
    write_case(tmp, "full.yaml", full_yaml, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg != NULL, "full config loads", "%zu errors, first: %s", errs.n,
          first_error(&errs));
    if (cfg) {
        check(cfg->workers == 4, "workers 4", "workers=%d", cfg->workers);
        check(cfg->nlisteners == 2 && addr_is(&cfg->listeners[0].addr, AF_INET6, "::1", 8443) &&
                  addr_is(&cfg->listeners[1].addr, AF_INET, "0.0.0.0", 9443) &&
                  !strcmp(cfg->listeners[1].addr.text, "*:9443"),
              "listeners v6 and wildcard", "nlisteners=%zu", cfg->nlisteners);
        cfg_tls_t *t = &cfg->tls;
        check(t->min_version == CFG_TLS13 && !strcmp(t->groups, "P-256") &&
                  !strcmp(t->ciphersuites, "TLS_AES_256_GCM_SHA384") &&
                  t->handshake_timeout_ms == 1500 && t->session_cache_size == 0 &&
                  t->session_lifetime_ms == 86400000,
              "tls settings", "min_version=%#x", t->min_version);
        check(t->verify_cache_size == 1000000 && t->verify_cache_lifetime_ms == 90000,
              "tls verify cache settings", "%u %llu", t->verify_cache_size,
              (unsigned long long)t->verify_cache_lifetime_ms);
        check(cfg->identity.device_id_source == CFG_DEVID_CN &&
                  !strcmp(cfg->identity.device_id_prefix, "") &&
                  !strcmp(cfg->identity.headers[CFG_H_SERIAL], "X-Serial") &&
                  !strcmp(cfg->identity.headers[CFG_H_DEVICE_ID], "X-Dev") &&
                  !strcmp(cfg->identity.headers[CFG_H_CLASS], "X-Client-Cert-Class"),
              "identity settings", "prefix=\"%s\"", cfg->identity.device_id_prefix);
        check(cfg->limits.max_connections == 1 && cfg->limits.max_header_bytes == 1024 &&
                  cfg->limits.max_headers == 10000 && cfg->limits.max_body_bytes == 0,
              "limits settings", "%u", cfg->limits.max_header_bytes);
        check(cfg->timeouts.header_read_ms == 86400000 && cfg->timeouts.body_read_ms == 1 &&
                  cfg->timeouts.idle_ms == 120000 && cfg->timeouts.send_ms == 3000 &&
                  cfg->timeouts.drain_ms == 14400000,
              "timeouts settings", "%llu", (unsigned long long)cfg->timeouts.header_read_ms);
        cfg_upstream_t *u = &cfg->upstreams[1];
        check(cfg->nupstreams == 2 && !strcmp(u->name, "B.svc") && u->nservers == 2 &&
                  addr_is(&u->servers[0], AF_INET6, "::1", 9000) &&
                  addr_is(&u->servers[1], AF_INET, "127.0.0.1", 9001) && u->keepalive == 0 &&
                  u->keepalive_timeout_ms == 5000,
              "upstream settings", "nupstreams=%zu", cfg->nupstreams);
        cfg_route_t *r0 = &cfg->routes[0], *r1 = &cfg->routes[1];
        check(cfg->nroutes == 2 && !strcmp(r0->host, "api.example.com") && r0->nmethods == 2 &&
                  !strcmp(r0->methods[0], "GET") && !strcmp(r0->methods[1], "POST") &&
                  r0->upstream == 1 && r0->allow_classes == 2 && r0->require_bearer == 1 &&
                  r1->upstream == 0 && r1->allow_classes == 3 && r1->require_bearer == 0,
              "route settings (same host and path with other methods)",
              "nroutes=%zu", cfg->nroutes);
        check(!strcmp(cfg->redis.host, "::1") && cfg->redis.port == 6380 &&
                  cfg->redis.db == 15 && !strcmp(cfg->redis.password_env, "REDIS_PW"),
              "redis settings", "host=%s", cfg->redis.host);
        check(!strcmp(cfg->revocation.key, "rev:set") &&
                  !strcmp(cfg->revocation.channel, "rev-chan") &&
                  cfg->revocation.resync_interval_ms == 1000 &&
                  cfg->revocation.fail_closed == 0 &&
                  cfg->revocation.max_staleness_ms == 3600000,
              "revocation settings", "key=%s", cfg->revocation.key);
        check(cfg->admin.enabled == 1 && addr_is(&cfg->admin.listen, AF_INET6, "::1", 9555) &&
                  !strcmp(cfg->admin.token_env, "ADMIN_TOK") && cfg->admin.max_body_bytes == 1024,
              "admin settings", "enabled=%d", cfg->admin.enabled);
        check(cfg->logging.level == CFG_LOG_DEBUG && cfg->logging.format == CFG_LOG_JSON &&
                  cfg->logging.access == 0 && cfg->logging.buffer == 1024 * 1024 &&
                  cfg->logging.file && !strcmp(cfg->logging.file, "/tmp/pc-cfg-test.log"),
              "logging settings", "level=%d", cfg->logging.level);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

/* Rate limits, connection limits and JWT settings: defaults. */
static void test_policy_defaults(const char *pki, const char *tmp)
{
    char path[1024], text[4096];
    cfg_errors_t errs = {0};
    write_case(tmp, "policy-min.yaml", minimal_yaml, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg != NULL, "policy defaults: minimal config loads", "first error: %s",
          first_error(&errs));
    if (cfg) {
        cfg_connlimits_t *c = &cfg->connection_limits;
        check(cfg->rate_limits == NULL && cfg->nrate_limits == 0, "default: no rate limits",
              "n=%zu", cfg->nrate_limits);
        check(c->per_ip_count == 0 && c->per_ip_burst == 0 && c->per_ip_concurrent == 0,
              "default: connection limits unlimited", "count=%llu",
              (unsigned long long)c->per_ip_count);
        cfg_route_t *r = &cfg->routes[0];
        check(r->nrate_limits == 0 && r->rate_limits == NULL && r->rate_limit_headers == 0 &&
                  r->jwt == NULL,
              "default: route without rate limits, headers or jwt", "n=%zu", r->nrate_limits);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);

    /* the defaults inside rate_limits[] and jwt */
    fmt(text, sizeof text, "%s    rate_limits: [r]\n    jwt: {jwks_file: ${TMP}/jwks.json}\n"
        "rate_limits:\n  - {name: r, key: ip, rate: 6000/m}\n", minimal_yaml);
    write_case(tmp, "policy-def.yaml", text, pki, tmp, path, sizeof path);
    cfg = cfg_load(path, &errs);
    check(cfg != NULL, "policy defaults: rate limit and jwt with defaults load",
          "first error: %s", first_error(&errs));
    if (cfg) {
        cfg_rate_limit_t *l = &cfg->rate_limits[0];
        check(cfg->nrate_limits == 1 && !strcmp(l->name, "r") && l->key == CFG_RL_IP &&
                  l->count == 6000 && l->period_ms == 60000 && l->burst == 6000 &&
                  l->scope == CFG_RL_LOCAL && l->fail_closed == 0,
              "default: burst = count, scope local, fail_open", "burst=%llu scope=%d",
              (unsigned long long)l->burst, l->scope);
        cfg_jwt_t *j = cfg->routes[0].jwt;
        check(j && strstr(j->jwks_file, "jwks.json") && j->issuer == NULL &&
                  j->naudiences == 0 && j->leeway_ms == 30000 &&
                  j->algorithms == (CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA) &&
                  j->bind_to_certificate == 0 && j->nclaims == 1 &&
                  !strcmp(j->claims[0].claim, "sub") &&
                  !strcmp(j->claims[0].header, "X-Token-Subject"),
              "default: jwt leeway 30s, all algorithms, sub -> X-Token-Subject", "jwt=%p",
              (void *)j);
        check(cfg->routes[0].nrate_limits == 1 && cfg->routes[0].rate_limits[0] == 0,
              "route rate limit resolved", "n=%zu", cfg->routes[0].nrate_limits);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

static const char policy_yaml[] =
    "rate_limits:\n"
    "  - {name: per-device, key: device_id, rate: 100/s, burst: 20}\n"
    "  - {name: per-token, key: token, rate: 6000/m, scope: global}\n"
    "  - {name: Fleet.wide, key: route, rate: 1000/h, scope: global,\n"
    "     on_redis_unavailable: fail_closed}\n"
    "  - {name: fp, key: fingerprint, rate: 1/s}\n"
    "connection_limits: {per_ip_rate: 20/s, per_ip_burst: 40, per_ip_concurrent: 100}\n"
    "upstreams:\n"
    "  - name: api\n"
    "    servers: [127.0.0.1:9080]\n"
    "routes:\n"
    "  - path: /api/\n"
    "    upstream: api\n"
    "    allow_classes: [device]\n"
    "    rate_limits: [per-token, per-device, Fleet.wide]\n"
    "    rate_limit_headers: true\n"
    "    jwt:\n"
    "      jwks_file: ${TMP}/jwks.json\n"
    "      issuer: https://issuer.example\n"
    "      audience: [api, mobile]\n"
    "      leeway: 0s\n"
    "      algorithms: [EdDSA, ES256]\n"
    "      bind_to_certificate: true\n"
    "      claims_to_headers: {sub: X-User, tenant: X-Tenant}\n"
    "  - path: /other/\n"
    "    upstream: api\n"
    "    allow_classes: [device]\n"
    "    jwt: {jwks_file: ${TMP}/jwks.json, audience: one, claims_to_headers: {}}\n";

static void test_policy(const char *pki, const char *tmp)
{
    char path[1024], text[4096];
    cfg_errors_t errs = {0};
    const char *cut = strstr(minimal_yaml, "upstreams:");
    fmt(text, sizeof text, "%.*s%s", (int)(cut - minimal_yaml), minimal_yaml, policy_yaml);
    write_case(tmp, "policy.yaml", text, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg != NULL, "policy config loads", "%zu errors, first: %s", errs.n,
          first_error(&errs));
    if (!cfg) {
        cfg_errors_free(&errs);
        return;
    }
    cfg_rate_limit_t *l = cfg->rate_limits;
    check(cfg->nrate_limits == 4 && !strcmp(l[0].name, "per-device") &&
              l[0].key == CFG_RL_DEVICE_ID && l[0].count == 100 && l[0].period_ms == 1000 &&
              l[0].burst == 20 && l[0].scope == CFG_RL_LOCAL,
          "rate_limits[0]: device_id 100/s burst 20 local", "n=%zu", cfg->nrate_limits);
    check(cfg->nrate_limits == 4 && l[1].key == CFG_RL_TOKEN && l[1].count == 6000 &&
              l[1].period_ms == 60000 && l[1].burst == 6000 && l[1].scope == CFG_RL_GLOBAL &&
              l[1].fail_closed == 0,
          "rate_limits[1]: token 6000/m global fail_open", "scope=%d", l[1].scope);
    check(cfg->nrate_limits == 4 && !strcmp(l[2].name, "Fleet.wide") && l[2].key == CFG_RL_ROUTE &&
              l[2].period_ms == 3600000 && l[2].fail_closed == 1 &&
              l[3].key == CFG_RL_FINGERPRINT && l[3].burst == 1,
          "rate_limits[2..3]: route 1000/h fail_closed, fingerprint 1/s", "fail_closed=%d",
          l[2].fail_closed);
    cfg_connlimits_t *c = &cfg->connection_limits;
    check(c->per_ip_count == 20 && c->per_ip_period_ms == 1000 && c->per_ip_burst == 40 &&
              c->per_ip_concurrent == 100,
          "connection_limits parsed", "count=%llu burst=%llu",
          (unsigned long long)c->per_ip_count, (unsigned long long)c->per_ip_burst);
    cfg_route_t *r = &cfg->routes[0];
    check(r->nrate_limits == 3 && r->rate_limits[0] == 1 && r->rate_limits[1] == 0 &&
              r->rate_limits[2] == 2 && r->rate_limit_headers == 1,
          "route rate_limits resolved in order, headers on", "n=%zu", r->nrate_limits);
    cfg_jwt_t *j = r->jwt;
    check(j && !strcmp(j->issuer, "https://issuer.example") && j->naudiences == 2 &&
              !strcmp(j->audiences[0], "api") && !strcmp(j->audiences[1], "mobile") &&
              j->leeway_ms == 0 && j->algorithms == (CFG_JWT_EDDSA | CFG_JWT_ES256) &&
              j->bind_to_certificate == 1 && j->nclaims == 2 &&
              !strcmp(j->claims[0].claim, "sub") && !strcmp(j->claims[0].header, "X-User") &&
              !strcmp(j->claims[1].claim, "tenant") && !strcmp(j->claims[1].header, "X-Tenant"),
          "route jwt settings", "jwt=%p", (void *)j);
    cfg_jwt_t *j2 = cfg->routes[1].jwt;
    check(j2 && j2->naudiences == 1 && !strcmp(j2->audiences[0], "one") && j2->nclaims == 0 &&
              cfg->routes[1].nrate_limits == 0 && cfg->routes[1].rate_limit_headers == 0,
          "jwt: audience as a string, empty claims_to_headers", "jwt=%p", (void *)j2);
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

/* An empty admin mapping enables the admin listener with its defaults. */
static void test_admin_defaults(const char *pki, const char *tmp)
{
    char path[1024], text[2048];
    cfg_errors_t errs = {0};
    fmt(text, sizeof text, "%sadmin: {}\nrevocation: {}\n", minimal_yaml);
    write_case(tmp, "admin.yaml", text, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg != NULL, "admin: {} loads", "first error: %s", first_error(&errs));
    if (cfg) {
        check(cfg->admin.enabled == 1 && !strcmp(cfg->admin.listen.text, "127.0.0.1:9444") &&
                  addr_is(&cfg->admin.listen, AF_INET, "127.0.0.1", 9444) &&
                  !strcmp(cfg->admin.token_env, "PORTCULLIS_ADMIN_TOKEN") &&
                  cfg->admin.max_body_bytes == 65536,
              "admin: {} enables the listener with defaults", "enabled=%d", cfg->admin.enabled);
        check(cfg->revocation.fail_closed == 1 && cfg->revocation.resync_interval_ms == 300000,
              "revocation: {} keeps the defaults", "fail_closed=%d", cfg->revocation.fail_closed);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

/* A non-loopback admin.listen loads only with admin.allow_remote: true;
 * every loopback spelling loads without it. */
static void test_admin_remote(const char *pki, const char *tmp)
{
    static const struct { const char *listen; const char *extra; int ok; } cases[] = {
        {"0.0.0.0:9444", "", 0},
        {"\"[::]:9444\"", "", 0},
        {"10.1.2.3:9444", "", 0},
        {"\"[::ffff:10.0.0.1]:9444\"", "", 0},
        {"0.0.0.0:9444", ", allow_remote: false", 0},
        {"0.0.0.0:9444", ", allow_remote: true", 1},
        {"\"[::]:9444\"", ", allow_remote: true", 1},
        {"127.0.0.1:9444", "", 1},
        {"127.3.4.5:9444", "", 1},
        {"localhost:9444", "", 1},
        {"\"[::1]:9444\"", "", 1},
        {"\"[::ffff:127.0.0.1]:9444\"", "", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024], text[2048], name[160];
        cfg_errors_t errs = {0};
        fmt(text, sizeof text, "%sadmin: {listen: %s%s}\n", minimal_yaml, cases[i].listen,
            cases[i].extra);
        write_case(tmp, "admin_remote.yaml", text, pki, tmp, path, sizeof path);
        cfg_t *cfg = cfg_load(path, &errs);
        fmt(name, sizeof name, "admin.listen %s%s %s", cases[i].listen, cases[i].extra,
            cases[i].ok ? "loads" : "is refused");
        if (cases[i].ok)
            check(cfg != NULL && cfg->admin.allow_remote == (cases[i].extra[0] != 0), name,
                  "first error: %s", first_error(&errs));
        else
            check(!cfg && errs.n == 1 && strstr(errs.msgs[0], "admin.listen: ") &&
                      strstr(errs.msgs[0], "is not a loopback address") &&
                      strstr(errs.msgs[0], "hint: ") && strstr(errs.msgs[0], "allow_remote: true"),
                  name, "errors=%zu first: %s", errs.n, first_error(&errs));
        cfg_free(cfg);
        cfg_errors_free(&errs);
    }
}

/* The issuance section: absent = disabled; defaults; every setting. */
static void test_issuance(const char *pki, const char *tmp)
{
    static const char defaults[] =
        "issuance:\n"
        "  ca_cert: ${PKI}/device-ca.crt\n"
        "  ca_key: ${PKI}/device-ca.key\n"
        "  platforms:\n"
        "    android:\n"
        "      provider: play_integrity\n"
        "      package_name: com.example.app\n"
        "      decryption_key_file: ${TMP}/play-decryption.key\n"
        "      verification_key_file: ${TMP}/play-verification.key\n"
        "      certificate_sha256_digests:\n"
        "        - ZHVtbXktY2VydGlmaWNhdGUtZGlnZXN0LTAxMjM0NTY\n"
        "        - \"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\"\n"
        "    ios: {provider: http, url: \"http://127.0.0.1:9100/verify\"}\n"
        "    huawei: {provider: refuse}\n";
    static const char full[] =
        "issuance:\n"
        "  path_prefix: /v1/certs/\n"
        "  ca_cert: ${PKI}/device-ca.crt\n"
        "  ca_key: ${PKI}/device-ca.key\n"
        "  chain: ${PKI}/bootstrap-ca.crt\n"
        "  device_class: device\n"
        "  bootstrap_class: bootstrap\n"
        "  lifetime: 1h\n"
        "  nonce_ttl: 10s\n"
        "  key_policy: {ec_p256: false, rsa: true, rsa_min_bits: 3072}\n"
        "  renew_requires_attestation: true\n"
        "  revoke_old_on_renew: true\n"
        "  max_body_bytes: 32k\n"
        "  insecure_dev: true\n"
        "  platforms:\n"
        "    android:\n"
        "      provider: play_integrity\n"
        "      package_name: com.example.app\n"
        "      decryption_key_file: ${TMP}/play-decryption.key\n"
        "      verification_key_file: ${TMP}/play-verification.key\n"
        "      certificate_sha256_digests: [ZHVtbXktY2VydGlmaWNhdGUtZGlnZXN0LTAxMjM0NTY]\n"
        "      required_device_verdicts: [MEETS_STRONG_INTEGRITY, MEETS_BASIC_INTEGRITY]\n"
        "      max_age: 1m\n"
        "    ios: {provider: http, url: \"http://localhost:9100\", timeout: 500ms}\n"
        "    dev_2: {provider: none}\n";
    char path[1024], text[4096];
    cfg_errors_t errs = {0};
    char *classes = replace_all(minimal_yaml, "      ca: ${PKI}/device-ca.crt\n",
                                "      ca: ${PKI}/device-ca.crt\n"
                                "    - name: bootstrap\n"
                                "      ca: ${PKI}/bootstrap-ca.crt\n");
    /* the routes that cover the issuance endpoints (the defaults' and full's prefixes) */
    char base[2048];
    fmt(base, sizeof base, "%s%s", classes,
        "  - {path: /certificates/, upstream: api, allow_classes: [bootstrap, device]}\n"
        "  - {path: /v1/certs/, upstream: api, allow_classes: [bootstrap, device]}\n");
    free(classes);

    fmt(text, sizeof text, "%s", base);
    write_case(tmp, "iss0.yaml", text, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg && cfg->issuance == NULL, "issuance: absent = disabled", "first error: %s",
          first_error(&errs));
    cfg_free(cfg);
    cfg_errors_free(&errs);

    fmt(text, sizeof text, "%s%s", base, defaults);
    write_case(tmp, "iss1.yaml", text, pki, tmp, path, sizeof path);
    cfg = cfg_load(path, &errs);
    check(cfg && cfg->issuance, "issuance: minimal section loads", "first error: %s",
          first_error(&errs));
    if (cfg && cfg->issuance) {
        const cfg_issuance_t *is = cfg->issuance;
        check(!strcmp(is->path_prefix, "/certificates/") && strstr(is->ca_cert_file, "device-ca.crt") &&
                  strstr(is->ca_key_file, "device-ca.key") && is->chain_file == NULL &&
                  !strcmp(is->device_class, "device") && is->device_class_idx == 0 &&
                  !strcmp(is->bootstrap_class, "bootstrap") && is->bootstrap_class_idx == 1,
              "issuance defaults: prefix, files, classes", "prefix=%s", is->path_prefix);
        check(is->lifetime_ms == 7 * 86400000ULL && is->nonce_ttl_ms == 120000 &&
                  is->key_ec_p256 == 1 && is->key_rsa == 0 && is->rsa_min_bits == 2048 &&
                  is->renew_requires_attestation == 0 && is->revoke_old_on_renew == 0 &&
                  is->max_body_bytes == 65536 && is->insecure_dev == 0,
              "issuance defaults: lifetime, nonce_ttl, key policy, renew, body, insecure_dev",
              "lifetime=%llu", (unsigned long long)is->lifetime_ms);
        const cfg_platform_t *a = cfg_issuance_platform(is, "android");
        const cfg_platform_t *i = cfg_issuance_platform(is, "ios");
        const cfg_platform_t *h = cfg_issuance_platform(is, "huawei");
        check(is->nplatforms == 3 && a && a->provider == CFG_ATTEST_PLAY_INTEGRITY &&
                  !strcmp(a->play.package_name, "com.example.app") && a->play.ndigests == 2 &&
                  a->play.digests[1][0] == 0x00 && a->play.digests[1][1] == 0x11 &&
                  a->play.digests[1][31] == 0xff && a->play.digests[0][0] == 'd' &&
                  a->play.device_verdicts == CFG_PLAY_MEETS_DEVICE &&
                  a->play.max_age_ms == 300000,
              "issuance defaults: play_integrity", "nplatforms=%zu", is->nplatforms);
        check(i && i->provider == CFG_ATTEST_HTTP && !strcmp(i->http.url,
                                                             "http://127.0.0.1:9100/verify") &&
                  !strcmp(i->http.host, "127.0.0.1:9100") && i->http.port == 9100 &&
                  !strcmp(i->http.path, "/verify") && i->http.timeout_ms == 3000 &&
                  h && h->provider == CFG_ATTEST_REFUSE && !cfg_issuance_platform(is, "x"),
              "issuance defaults: http, refuse", "ios=%p", (const void *)i);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);

    fmt(text, sizeof text, "%s%s", base, full);
    write_case(tmp, "iss2.yaml", text, pki, tmp, path, sizeof path);
    cfg = cfg_load(path, &errs);
    check(cfg && cfg->issuance, "issuance: every setting loads", "first error: %s",
          first_error(&errs));
    if (cfg && cfg->issuance) {
        const cfg_issuance_t *is = cfg->issuance;
        const cfg_platform_t *a = cfg_issuance_platform(is, "android");
        const cfg_platform_t *i = cfg_issuance_platform(is, "ios");
        const cfg_platform_t *d = cfg_issuance_platform(is, "dev_2");
        check(!strcmp(is->path_prefix, "/v1/certs/") && is->chain_file &&
                  is->lifetime_ms == 3600000 && is->nonce_ttl_ms == 10000 &&
                  is->key_ec_p256 == 0 && is->key_rsa == 1 && is->rsa_min_bits == 3072 &&
                  is->renew_requires_attestation == 1 && is->revoke_old_on_renew == 1 &&
                  is->max_body_bytes == 32768 && is->insecure_dev == 1,
              "issuance settings", "lifetime=%llu", (unsigned long long)is->lifetime_ms);
        check(a && a->play.device_verdicts == (CFG_PLAY_MEETS_STRONG | CFG_PLAY_MEETS_BASIC) &&
                  a->play.max_age_ms == 60000 && i && i->http.port == 9100 &&
                  !strcmp(i->http.path, "/") && i->http.timeout_ms == 500 && d &&
                  d->provider == CFG_ATTEST_NONE,
              "issuance platform settings", "android=%p", (const void *)a);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

/* Integrity levels: identity.integrity_policies, routes' min_integrity,
 * issuance.lifetime_by_integrity and the http verifier's max_level, with
 * their defaults. */
static void test_integrity(const char *pki, const char *tmp)
{
    static const char section[] =
        "issuance:\n"
        "  ca_cert: ${PKI}/device-ca.crt\n"
        "  ca_key: ${PKI}/device-ca.key\n"
        "  lifetime: 2d\n"
        "%s"
        "  platforms:\n"
        "    ios: {provider: http, url: \"http://127.0.0.1:9100/verify\"%s}\n";
    char *classes = replace_all(minimal_yaml, "      ca: ${PKI}/device-ca.crt\n",
                                "      ca: ${PKI}/device-ca.crt\n"
                                "    - name: bootstrap\n"
                                "      ca: ${PKI}/bootstrap-ca.crt\n");
    char text[4096], path[1024], iss[1024];
    cfg_errors_t errs = {0};
    fmt(iss, sizeof iss, section, "", "");
    fmt(text, sizeof text, "%s%s%s", classes,
        "  - {path: /certificates/, upstream: api, allow_classes: [bootstrap, device]}\n", iss);
    write_case(tmp, "int0.yaml", text, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg && cfg->issuance, "integrity defaults load", "first error: %s", first_error(&errs));
    if (cfg && cfg->issuance) {
        int ok = 1;
        for (int i = 0; i < CFG_INT__COUNT; i++) {
            char want[CFG_OID_TEXT_MAX];
            fmt(want, sizeof want, "2.25.189217713610360413943209378316248556528.%d", i);
            ok &= !strcmp(cfg->identity.integrity_oids[i].text, want) && cfg->identity.integrity_oids[i].der_len > 0 &&
                  cfg->issuance->lifetime_by_integrity_ms[i] == 2 * 86400000ULL;
        }
        check(ok && !strcmp(cfg->identity.headers[CFG_H_INTEGRITY], "X-Device-Integrity"),
              "integrity defaults: OIDs under the UUID arc, header, lifetimes = issuance.lifetime", "%s",
              cfg->identity.integrity_oids[0].text);
        check(!cfg->routes[0].need_integrity && !cfg->routes[1].need_integrity &&
                  cfg_issuance_platform(cfg->issuance, "ios")->http.max_level == CFG_INT_DEVICE,
              "integrity defaults: no min_integrity, http max_level device", "%d", cfg->routes[0].need_integrity);        check(cfg->identity.integrity_classes == 1u && !cfg->identity.integrity_classes_set,
              "integrity defaults: levels read for the issuance device class only", "%#x",
              cfg->identity.integrity_classes);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);

    fmt(iss, sizeof iss, section, "  lifetime_by_integrity: {strong: 7d, basic: 1d, none: 1h}\n",
        ", max_level: strong");
    fmt(text, sizeof text, "%s%s%s%s", classes,
        "  - {path: /certificates/, upstream: api, allow_classes: [bootstrap, device]}\n"
        "  - {path: /strong/, upstream: api, allow_classes: [device], min_integrity: strong}\n"
        "  - {path: /none/, upstream: api, allow_classes: [device], min_integrity: none}\n"
        "identity:\n"
        "  integrity_policies: {none: 1.3.6.1.4.1.55555.7.0, strong: \"1.3.6.1.4.1.55555.7.3\"}\n"
        "  headers: {integrity: X-Attested-Level}\n"
        "  integrity_classes: [device]\n", iss, "");
    write_case(tmp, "int1.yaml", text, pki, tmp, path, sizeof path);
    cfg = cfg_load(path, &errs);
    check(cfg && cfg->issuance, "integrity settings load", "first error: %s", first_error(&errs));
    if (cfg && cfg->issuance) {
        const cfg_oid_t *o = cfg->identity.integrity_oids;
        const uint64_t *l = cfg->issuance->lifetime_by_integrity_ms;
        check(!strcmp(o[0].text, "1.3.6.1.4.1.55555.7.0") && !strcmp(o[3].text, "1.3.6.1.4.1.55555.7.3") &&
                  !strcmp(o[1].text, "2.25.189217713610360413943209378316248556528.1") &&
                  !strcmp(cfg->identity.headers[CFG_H_INTEGRITY], "X-Attested-Level"),
              "integrity settings: OIDs given and defaults kept, header name", "%s", o[0].text);
        check(cfg->routes[2].need_integrity && cfg->routes[2].min_integrity == CFG_INT_STRONG &&
                  cfg->routes[3].need_integrity && cfg->routes[3].min_integrity == CFG_INT_NONE,
              "integrity settings: min_integrity strong and none", "%d", cfg->routes[2].min_integrity);
        check(l[CFG_INT_STRONG] == 7 * 86400000ULL && l[CFG_INT_DEVICE] == 2 * 86400000ULL &&
                  l[CFG_INT_BASIC] == 86400000ULL && l[CFG_INT_NONE] == 3600000ULL &&
                  cfg_issuance_platform(cfg->issuance, "ios")->http.max_level == CFG_INT_STRONG,
              "integrity settings: lifetimes per level (device keeps issuance.lifetime), max_level strong", "%llu",
              (unsigned long long)l[CFG_INT_DEVICE]);
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);

    /* without issuance: the class named "device"; an explicit [] reads no level */
    static const char *const ic[] = {"", "identity:\n  integrity_classes: []\n",
                                     "identity:\n  integrity_classes: [bootstrap, device]\n"};
    static const uint32_t want_ic[] = {1u, 0u, 3u};
    for (int k = 0; k < 3; k++) {
        char name[32];
        fmt(text, sizeof text, "%s%s", classes, ic[k]);
        fmt(name, sizeof name, "int-classes%d.yaml", k);
        write_case(tmp, name, text, pki, tmp, path, sizeof path);
        cfg = cfg_load(path, &errs);
        check(cfg && cfg->identity.integrity_classes == want_ic[k] && cfg->identity.integrity_classes_set == (k > 0),
              k == 0 ? "integrity_classes without issuance: default the class named device"
              : k == 1 ? "integrity_classes: [] reads no class's level" : "integrity_classes: a list of classes",
              "mask %#x, first error: %s", cfg ? cfg->identity.integrity_classes : 0, first_error(&errs));
        cfg_free(cfg);
        cfg_errors_free(&errs);
    }
    free(classes);
}

/* The issuance endpoints go through the gate of the route that covers them:
 * such a route must exist and allow the endpoint's class, for some Host. */
static void test_issuance_routes(const char *pki, const char *tmp)
{
    static const char issuance[] =
        "issuance:\n"
        "  ca_cert: ${PKI}/device-ca.crt\n"
        "  ca_key: ${PKI}/device-ca.key\n"
        "  platforms: {huawei: {provider: refuse}}\n";
    static const struct {
        const char *routes, *want, *name;
    } v[] = {
        {"  - {path: /certificates/, host: issuance.example, upstream: api,\n"
         "     allow_classes: [bootstrap, device]}\n",
         NULL, "issuance: a covering route for one host is enough"},
        {"  - {path: /certificates/, upstream: api, allow_classes: [bootstrap, device],\n"
         "     require_bearer: true, rate_limits: [per-ip]}\n",
         NULL, "issuance: a covering route with bearer and rate limits loads"},
        {"  - {path: /certificates/challenge, upstream: api, allow_classes: [bootstrap]}\n"
         "  - {path: /certificates/issue, upstream: api, allow_classes: [bootstrap]}\n"
         "  - {path: /certificates/renew, upstream: api, allow_classes: [device]}\n",
         NULL, "issuance: one route per endpoint loads"},
        {"  - {path: /certificates/, upstream: api, methods: [GET], allow_classes: [bootstrap]}\n",
         "issuance: no route takes POST /certificates/challenge on any host: the longest routes "
         "covering it (generic routes) take only GET (a request with POST is refused with 405 there; a shorter "
         "prefix is never tried)",
         "issuance: a GET-only route refuses the POST endpoints (no fall-through to /)"},
        {"  - {path: /certificates, upstream: api, allow_classes: [bootstrap, device]}\n", NULL,
         "issuance: a prefix without the trailing slash covers by segment"},
        {"  - {path: /certificates/iss, upstream: api, allow_classes: [bootstrap]}\n",
         "the route that covers POST /certificates/challenge",
         "issuance: a prefix that ends inside a segment does not cover it"},
        {"  - {path: /certificates/, upstream: api, allow_classes: [bootstrap]}\n",
         "the route that covers POST /certificates/renew, does not allow class \"device\" "
         "(issuance.device_class)", "issuance: renew needs the device class"},
        {"  - {path: /certificates/, upstream: api, methods: [POST],\n"
         "     allow_classes: [bootstrap, device]}\n",
         "issuance: no route takes GET /certificates/challenge on any host: the longest routes "
         "covering it (generic routes) take only POST",
         "issuance: a POST-only route refuses GET /certificates/challenge (no fall-through to /)"},
        {"  - {path: /certificates/, upstream: api, methods: [GET, POST],\n"
         "     allow_classes: [bootstrap, device]}\n",
         NULL, "issuance: a route for GET and POST covers every endpoint"},
        {"  - {path: /certificates/challenge/, upstream: api, allow_classes: [bootstrap]}\n"
         "  - {path: /certificates/issue/, upstream: api, allow_classes: [bootstrap]}\n"
         "  - {path: /certificates/renew/, upstream: api, allow_classes: [device]}\n",
         NULL, "issuance: a prefix ending in '/' covers the path without it"},
    };
    char *classes = replace_all(minimal_yaml, "      ca: ${PKI}/device-ca.crt\n",
                                "      ca: ${PKI}/device-ca.crt\n"
                                "    - name: bootstrap\n"
                                "      ca: ${PKI}/bootstrap-ca.crt\n");
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char path[1024], text[4096];
        cfg_errors_t errs = {0};
        fmt(text, sizeof text, "%s%s%s%s", classes, v[i].routes, issuance,
            "rate_limits: [{name: per-ip, key: ip, rate: 10/s}]\n");
        write_case(tmp, "issroutes.yaml", text, pki, tmp, path, sizeof path);
        cfg_t *cfg = cfg_load(path, &errs);
        if (!v[i].want)
            check(cfg != NULL, v[i].name, "first error: %s", first_error(&errs));
        else
            check(!cfg && errs.n == 1 && strstr(errs.msgs[0], v[i].want), v[i].name,
                  "%zu errors, first: %s", errs.n, first_error(&errs));
        cfg_free(cfg);
        cfg_errors_free(&errs);
    }
    free(classes);
}

/* Every limit a route may list can be global: each is asked in Redis. */
static void test_route_limit_count(const char *pki, const char *tmp)
{
    char path[1024], text[8192], list[256], defs[4096];
    size_t ln = 0, dn = 0;
    cfg_errors_t errs = {0};
    for (int i = 0; i < CFG_ROUTE_MAX_LIMITS; i++) {
        fmt(list + ln, sizeof list - ln, "%sg%d", i ? ", " : "", i);
        ln += strlen(list + ln);
        fmt(defs + dn, sizeof defs - dn, "  - {name: g%d, key: ip, rate: %d/s, scope: global}\n",
            i, i + 1);
        dn += strlen(defs + dn);
    }
    fmt(text, sizeof text, "%s    rate_limits: [%s]\nrate_limits:\n%s", minimal_yaml, list, defs);
    write_case(tmp, "limits16.yaml", text, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    check(cfg && cfg->routes[0].nrate_limits == CFG_ROUTE_MAX_LIMITS &&
              cfg->routes[0].rate_limits[CFG_ROUTE_MAX_LIMITS - 1] == CFG_ROUTE_MAX_LIMITS - 1,
          "a route may list 16 global rate limits", "first error: %s", first_error(&errs));
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

/* Several independent problems are all reported, in file order. */
static void test_many_errors(const char *pki, const char *tmp)
{
    static const char text[] =
        "logging: {level: loud}\n"                 /* 1 */
        "listeners:\n"
        "  - address: 127.0.0.1:0\n"               /* 3 */
        "tls:\n"
        "  certificates:\n"
        "    - cert: ${PKI}/server.crt\n"
        "      key: ${PKI}/server.key\n"
        "  classes:\n"
        "    - name: device\n"
        "      ca: ${PKI}/device-ca.crt\n"
        "upstreams:\n"
        "  - name: api\n"
        "    servers: [127.0.0.1:9080]\n"
        "    connect_timeout: 2\n"                 /* 14 */
        "routes:\n"
        "  - path: /\n"
        "    upstream: api\n"
        "    allow_classes: [device]\n"
        "    require_bearer: yes\n";               /* 19 */
    char path[1024];
    cfg_errors_t errs = {0};
    write_case(tmp, "many.yaml", text, pki, tmp, path, sizeof path);
    cfg_t *cfg = cfg_load(path, &errs);
    int ok = cfg == NULL && errs.n == 4 && strstr(errs.msgs[0], ":1:18: logging.level:") &&
             strstr(errs.msgs[1], ":3:14: listeners[0].address:") &&
             strstr(errs.msgs[2], ":14:22: upstreams[0].connect_timeout:") &&
             strstr(errs.msgs[3], ":19:21: routes[0].require_bearer:");
    check(ok, "all errors collected in file order", "n=%zu first=%s", errs.n,
          first_error(&errs));
    if (!ok)
        for (size_t i = 0; i < errs.n; i++)
            printf("#   %s\n", errs.msgs[i]);
    cfg_free(cfg);
    cfg_errors_free(&errs);

    /* no errs list: still NULL, nothing leaked */
    check(cfg_load(path, NULL) == NULL, "NULL errs accepted", "returned a config");

    cfg = cfg_load("/nonexistent/portcullis.yaml", &errs);
    check(cfg == NULL && errs.n == 1 && strstr(errs.msgs[0], "cannot open"),
          "missing config file", "first=%s", first_error(&errs));
    cfg_errors_free(&errs);
}

/* ------------------------------------------------------------- cases */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether hay contains the " ... "-separated parts of want, in order. */
static int contains_parts(const char *hay, const char *want)
{
    char *copy = strdup(want), *part = copy;
    const char *at = hay;
    int ok = copy != NULL;
    while (ok && part) {
        char *next = strstr(part, " ... ");
        if (next) {
            *next = '\0';
            next += 5;
        }
        const char *found = strstr(at, part);
        if (!found)
            ok = 0;
        else
            at = found + strlen(part);
        part = next;
    }
    free(copy);
    return ok;
}

static void run_case(const char *casedir, const char *name, const char *pki, const char *tmp,
                     const char *outdir)
{
    char src[1024], path[1024], want[512] = "", test[300];
    fmt(src, sizeof src, "%s/%s", casedir, name);
    fmt(test, sizeof test, "case %s", name);
    char *text = read_all(src);
    if (!text) {
        check(0, test, "cannot read %s", src);
        return;
    }
    if (strncmp(text, "# expect: ", 10) == 0) {
        size_t n = strcspn(text + 10, "\n");
        fmt(want, sizeof want, "%.*s", (int)n, text + 10);
    }
    if (!*want) {
        check(0, test, "first line must be \"# expect: <text>\"");
        free(text);
        return;
    }
    write_case(outdir, name, text, pki, tmp, path, sizeof path);
    free(text);
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    if (cfg)
        check(0, test, "loaded without error (expected: %s)", want);
    else
        check(errs.n > 0 && contains_parts(errs.msgs[0], want), test,
              "expected first error to contain \"%s\", got \"%s\"", want, first_error(&errs));
    cfg_free(cfg);
    cfg_errors_free(&errs);
}

static void test_cases(const char *root, const char *pki, const char *tmp)
{
    char casedir[1024], outdir[1024];
    fmt(casedir, sizeof casedir, "%s/test/unit/config_cases", root);
    fmt(outdir, sizeof outdir, "%s/cases", tmp);
    if (mkdir(outdir, 0700) != 0) {
        check(0, "case directory", "mkdir %s: %s", outdir, strerror(errno));
        return;
    }
    DIR *d = opendir(casedir);
    if (!d) {
        check(0, "config_cases directory", "%s: %s", casedir, strerror(errno));
        return;
    }
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < sizeof names / sizeof names[0]) {
        size_t len = strlen(de->d_name);
        if (len > 5 && !strcmp(de->d_name + len - 5, ".yaml"))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    check(n >= 20, "at least 20 case files", "found %zu", n);
    for (size_t i = 0; i < n; i++) {
        if (names[i])
            run_case(casedir, names[i], pki, tmp, outdir);
        free(names[i]);
    }
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    char tmp[] = "/tmp/portcullis-cfgtest-XXXXXX";
    char pkibuf[64], cmd[256];
    const char *pki = getenv("PKI_DIR");

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!mkdtemp(tmp)) {
        printf("not ok - scratch directory: %s\n0 passed, 1 failed\n", strerror(errno));
        return 1;
    }
    if (!pki || !*pki) {
        fmt(pkibuf, sizeof pkibuf, "%s/pki", tmp);
        pki = pkibuf;
        check(mkdir(pki, 0700) == 0 && make_pki(pki) == 0, "generate test PKI",
              "openssl CLI failed in %s", pki);
    }
    check(make_extra_keys(tmp) == 0, "generate extra keys", "in %s", tmp);
    check(make_reissued_ca(pki, tmp) == 0, "re-issue the device CA", "in %s", tmp);
    check(make_play_keys(tmp) == 0, "generate Play Integrity test keys", "in %s", tmp);
    check(make_jwks(tmp) == 0, "write a JWKS file", "in %s", tmp);

    test_durations();
    test_sizes();
    test_addresses();
    test_example(root, pki, tmp);
    test_defaults(pki, tmp);
    test_admin_defaults(pki, tmp);
    test_admin_remote(pki, tmp);
    test_full(pki, tmp);
    test_policy_defaults(pki, tmp);
    test_policy(pki, tmp);
    test_issuance(pki, tmp);
    test_integrity(pki, tmp);
    test_issuance_routes(pki, tmp);
    test_route_limit_count(pki, tmp);
    test_many_errors(pki, tmp);
    test_cases(root, pki, tmp);

    fmt(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmp);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
