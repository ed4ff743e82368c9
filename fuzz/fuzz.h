/* fuzz: helpers shared by the libFuzzer targets (docs/hacking.md).
 *
 * Every target is one file fuzz/fuzz_<name>.c defining LLVMFuzzerTestOneInput
 * (and, when it needs fixed keys or files, LLVMFuzzerInitialize). Targets
 * call the gateway's own parsers on the input; an input that breaks a stated
 * contract calls FUZZ_ASSERT, which aborts so libFuzzer keeps it as a crash.
 */
#ifndef PORTCULLIS_FUZZ_H
#define PORTCULLIS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "../config/config.h"
#include "../base/dns.h"
#include "../base/log.h"
#include "../issuance/issuance.h"
#include "../test/tools/mint_integrity.h"   /* mint_es256 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond, what)                                                   \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "fuzz contract broken: %s (%s:%d)\n", what, __FILE__, \
                    __LINE__);                                                    \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* The gateway logs to stderr; only errors are interesting while fuzzing. */
static inline void fuzz_quiet(void)
{
    pc_log_setup(PC_ERR, 0);
}

static char fuzz_dir_path[256];

static void fuzz_dir_remove(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
}

/* A private directory for files a target writes (keys, configs, inputs),
 * made once per process under $TMPDIR and removed at a normal exit. */
static inline const char *fuzz_dir(void)
{
    char *dir = fuzz_dir_path;
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof fuzz_dir_path, "%s/portcullis-fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return dir;
}

/* Writes n bytes to <fuzz_dir>/name; the path goes to out. Syscall-like. */
static inline int fuzz_write_file(const char *name, const void *data, size_t n, char *out,
                                  size_t outlen)
{
    snprintf(out, outlen, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(out, "wb");
    if (!f)
        return -1;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* NUL-terminated malloc'ed copy of the input. */
static inline char *fuzz_strndup(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* Pieces of the targets' configurations (@D@ is the generated PKI's
 * directory, see fuzz_config): the listener and the two trust classes; one
 * upstream "api" and the first route, which covers issuance; the issuing CA. */
#define FUZZ_CONFIG_TLS \
    "listeners:\n  - address: 127.0.0.1:8443\n" \
    "tls:\n" \
    "  certificates:\n    - cert: @D@/server.crt\n      key: @D@/server.key\n" \
    "  classes:\n" \
    "    - name: device\n      ca: @D@/device-ca.crt\n" \
    "    - name: bootstrap\n      ca: @D@/bootstrap-ca.crt\n"
#define FUZZ_CONFIG_API \
    "upstreams:\n  - name: api\n    servers: [127.0.0.1:9080]\n" \
    "routes:\n" \
    "  - {path: /certificates/, upstream: api, allow_classes: [bootstrap, device], require_bearer: false}\n"
#define FUZZ_CONFIG_CA \
    "issuance:\n" \
    "  ca_cert: @D@/device-ca.crt\n  ca_key: @D@/device-ca.key\n"

/* base64url without padding into out (4 * ceil(n / 3) + 1 bytes), by the
 * gateway's own encoder. */
static inline void fuzz_b64url(const unsigned char *in, size_t n, char *out)
{
    if (iss_b64url_encode(in, n, out, (n + 2) / 3 * 4 + 1) < 0)
        abort();
}

static inline char *fuzz_b64url_dup(const void *in, size_t n)
{
    char *out = malloc(n / 3 * 4 + 8);
    if (!out)
        abort();
    fuzz_b64url(in, n, out);
    return out;
}

/* "<b64url(a)>.<b64url(b)>.<b64url(ES256 signature of the first two)>",
 * malloc'ed: a JWS compact serialisation of header a and payload b. */
static inline char *fuzz_jws(EVP_PKEY *k, const void *a, size_t an, const void *b, size_t bn)
{
    char *ha = fuzz_b64url_dup(a, an), *hb = fuzz_b64url_dup(b, bn);
    size_t n = strlen(ha) + strlen(hb) + 2 + 90;
    char *out = malloc(n);
    unsigned char sig[64];
    char sig64[90];
    if (!out)
        abort();
    int l = snprintf(out, n, "%s.%s", ha, hb);
    if (l < 0 || !mint_es256(k, out, sig))   /* out is base64url text: no NUL inside */
        memset(sig, 0, sizeof sig);
    fuzz_b64url(sig, 64, sig64);
    snprintf(out + l, n - (size_t)l, ".%s", sig64);
    free(ha);
    free(hb);
    return out;
}

/* The EC P-256 private key signing.pem of fuzz_pki() (one reference kept). */
static inline const char *fuzz_pki(void);
static inline EVP_PKEY *fuzz_signing_key(void)
{
    static EVP_PKEY *k;
    const char *d = fuzz_pki();   /* which itself uses the key once it is made */
    if (!k) {
        char path[512];
        snprintf(path, sizeof path, "%s/signing.pem", d);
        FILE *f = fopen(path, "rb");
        k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
        if (f)
            fclose(f);
        if (!k)
            abort();
    }
    return k;
}

/* Test keys and certificates in fuzz_dir(), made once with the openssl
 * command line: server.crt/key, device-ca.crt/key, bootstrap-ca.crt/key
 * (self-signed CAs), decryption.key (base64 AES-256), signing.pem and
 * verification.key (EC P-256, base64 DER public key), and jwks.json (that
 * key as an ES256 JWK, kid "k1"). Returns fuzz_dir(). */
static inline const char *fuzz_pki(void)
{
    static int done;
    const char *d = fuzz_dir();
    if (done)
        return d;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; "
             "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-subj \"/CN=$1\" -days 3650 -keyout $1.key -out $1.crt "
             "-addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }; "
             "ca device-ca; ca bootstrap-ca; "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-subj /CN=localhost -days 3650 -keyout server.key -out server.crt "
             "-addext subjectAltName=DNS:localhost 2>/dev/null; "
             "openssl rand -base64 32 > decryption.key; "
             "openssl ecparam -genkey -name prime256v1 -noout -out signing.pem; "
             "openssl ec -in signing.pem -pubout -outform DER 2>/dev/null | openssl base64 -A "
             "> verification.key",
             d);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz: making the test PKI in %s failed\n", d);
        abort();
    }
    done = 1;
    /* jwks.json: the public half of signing.pem as an ES256 JWK, kid "k1" */
    EVP_PKEY *k = fuzz_signing_key();
    BIGNUM *x = NULL, *y = NULL;
    unsigned char bx[32], by[32];
    char jx[48], jy[48], jwks[300], path[512];
    if (!k || !EVP_PKEY_get_bn_param(k, "qx", &x) || !EVP_PKEY_get_bn_param(k, "qy", &y) ||
        BN_bn2binpad(x, bx, 32) != 32 || BN_bn2binpad(y, by, 32) != 32)
        abort();
    fuzz_b64url(bx, 32, jx);
    fuzz_b64url(by, 32, jy);
    int n = snprintf(jwks, sizeof jwks,
                     "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k1\",\"use\":\"sig\","
                     "\"alg\":\"ES256\",\"x\":\"%s\",\"y\":\"%s\"}]}\n", jx, jy);
    if (fuzz_write_file("jwks.json", jwks, (size_t)n, path, sizeof path) < 0)
        abort();
    BN_free(x);
    BN_free(y);
    return d;
}

/* Loads a config from text, where every "@D@" stands for fuzz_pki()'s
 * directory; aborts with the errors if it does not load. */
/* Names, offline: a target never sends a DNS query (pc_dns_set_resolve_hook).
 * A name that starts with "nosuch" does not resolve; any other resolves to
 * 192.0.2.1 and 192.0.2.2. */
static inline int fuzz_offline_resolve(const pc_dns_conf_t *conf, pc_dns_query_t *q, size_t n,
                                       char *err, size_t errlen)
{
    (void)conf, (void)err, (void)errlen;
    for (size_t i = 0; i < n; i++) {
        q[i].n = 0;
        snprintf(q[i].err, sizeof q[i].err, "no such name");
        if (strncmp(q[i].host, "nosuch", 6) == 0)
            continue;
        for (int k = 0; k < 2; k++) {
            struct sockaddr_in *in = (struct sockaddr_in *)&q[i].a[k].sa;
            memset(&q[i].a[k], 0, sizeof q[i].a[k]);
            in->sin_family = AF_INET;
            in->sin_port = htons((uint16_t)q[i].port);
            in->sin_addr.s_addr = htonl(0xC0000201u + (uint32_t)k);   /* 192.0.2.1, .2 */
            q[i].a[k].len = sizeof *in;
        }
        q[i].n = 2;
        q[i].err[0] = '\0';
    }
    return 0;
}

static inline cfg_t *fuzz_config(const char *text)
{
    pc_dns_set_resolve_hook(fuzz_offline_resolve);
    const char *d = fuzz_pki();
    size_t dl = strlen(d), n = 0;
    char *out = malloc(strlen(text) * (dl + 1) + 1);
    if (!out)
        abort();
    for (const char *p = text; *p;) {
        if (strncmp(p, "@D@", 3) == 0) {
            memcpy(out + n, d, dl);
            n += dl;
            p += 3;
        } else {
            out[n++] = *p++;
        }
    }
    char path[512];
    if (fuzz_write_file("fixed.yaml", out, n, path, sizeof path) < 0)
        abort();
    free(out);
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "fuzz config: %s\n", errs.msgs[i]);
        abort();
    }
    cfg_errors_free(&errs);
    return cfg;
}

#endif
