/* Unit tests: device-certificate issuance (issuance/issuance.c, records.c, csr.c, issuer.c,
 * attest_play.c). The PKI (root CA -> issuing CA) and the Play Integrity
 * keys are made in a scratch directory at run time; tokens are minted with
 * test/tools/mint_integrity.h, which shares no code with the verifier.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "../../issuance/attester.h"
#include "../../issuance/iss.h"
#include "../../issuance/issuance.h"
#include "../../tls/tls.h"
#include "../tools/mint_integrity.h"
#include "check.h"

static char tmpdir[] = "/tmp/portcullis-isstest-XXXXXX";
static char ca_path[512], key_path[512], chain_path[512];
static X509 *root_cert, *ca_cert;
static EVP_PKEY *root_key, *ca_key;

#define PREFIX "urn:portcullis:device:"

/* ---------------------------------------------------------------- helpers */

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *v)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, v);
    int ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

/* A CA certificate for key, signed by issuer (NULL: self-signed). */
static X509 *make_ca(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, long days)
{
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(rand() & 0xffff) + 1);
    X509_set_version(x, X509_VERSION_3);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
    X509_set_pubkey(x, key);
    add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (issuer)
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    X509_sign(x, ikey ? ikey : key, EVP_sha256());
    return x;
}

static int write_pem_cert(const char *path, X509 *a, X509 *b)
{
    FILE *f = fopen(path, "wb");
    int ok = f && PEM_write_X509(f, a) && (!b || PEM_write_X509(f, b));
    return (f && fclose(f) == 0 && ok) ? 0 : -1;
}

static int write_pem_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "wb");
    int ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return (f && fclose(f) == 0 && ok) ? 0 : -1;
}

static int setup_pki(void)
{
    root_key = EVP_EC_gen("P-256");
    ca_key = EVP_EC_gen("P-256");
    root_cert = make_ca(root_key, "Test Root", NULL, NULL, 60);
    ca_cert = make_ca(ca_key, "Test Issuing CA", root_cert, root_key, 30);
    path_in(ca_path, sizeof ca_path, "ca.pem");
    path_in(key_path, sizeof key_path, "ca.key");
    path_in(chain_path, sizeof chain_path, "chain.pem");
    return root_cert && ca_cert && write_pem_cert(ca_path, ca_cert, NULL) == 0 &&
                   write_pem_key(key_path, ca_key) == 0 &&
                   write_pem_cert(chain_path, root_cert, NULL) == 0
               ? 0
               : -1;
}

static cfg_issuance_t base_cfg(void)
{
    cfg_issuance_t c;
    memset(&c, 0, sizeof c);
    c.ca_cert_file = ca_path;
    c.ca_key_file = key_path;
    c.chain_file = chain_path;
    snprintf(c.device_class, sizeof c.device_class, "device");
    snprintf(c.bootstrap_class, sizeof c.bootstrap_class, "bootstrap");
    c.lifetime_ms = 7 * 86400000ULL;
    c.nonce_ttl_ms = 120000;
    c.key_ec_p256 = 1;
    c.rsa_min_bits = 2048;
    c.max_body_bytes = 65536;
    return c;
}

/* A PEM CSR for key (signed with md); caller frees. tamper: change the
 * subject after signing so the signature no longer matches. */
static char *make_csr(EVP_PKEY *key, const EVP_MD *md, int tamper)
{
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_REQ_get_subject_name(r);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"evil-admin", -1,
                               -1, 0);
    X509_REQ_set_pubkey(r, key);
    /* requested extensions must be ignored */
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
    sk_X509_EXTENSION_push(exts, e);
    X509_REQ_add_extensions(r, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (X509_REQ_sign(r, key, md) <= 0) {
        X509_REQ_free(r);
        return NULL;
    }
    if (tamper) {
        X509_NAME *m = X509_NAME_new();
        X509_NAME_add_entry_by_txt(m, "CN", MBSTRING_ASC, (const unsigned char *)"tampered", -1,
                                   -1, 0);
        X509_REQ_set_subject_name(r, m);
        X509_NAME_free(m);
    }
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, r);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)len);
    BIO_free(b);
    X509_REQ_free(r);
    return out;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- nonce, ids */

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_nonce(void)
{
    static char many[1000][64];
    char n[64], key[128];
    int ok = 1;
    CHECK(iss_nonce_new(n) == 0 && strlen(n) == ISS_NONCE_LEN, "nonce: 43 characters");
    for (const char *p = n; *p; p++)
        ok &= (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_';
    CHECK(ok, "nonce: base64url alphabet, no padding");
    CHECK(iss_nonce_valid(n), "nonce: valid");
    CHECK(!iss_nonce_valid("short") && !iss_nonce_valid(NULL), "nonce: short refused");
    char bad[64];
    snprintf(bad, sizeof bad, "%s", n);
    bad[5] = '+';
    CHECK(!iss_nonce_valid(bad), "nonce: '+' refused");
    ok = 1;
    for (int i = 0; i < 1000; i++)
        ok &= iss_nonce_new(many[i]) == 0;
    qsort(many, 1000, sizeof many[0], cmp_str);
    for (int i = 1; i < 1000; i++)
        ok &= strcmp(many[i - 1], many[i]) != 0;
    CHECK(ok, "nonce: 1000 distinct");

    CHECK(iss_nonce_key(n, key, sizeof key) == 0 && !strncmp(key, "portcullis:nonce:", 17) &&
              !strcmp(key + 17, n),
          "nonce: redis key");
    pol_argv_t a;
    CHECK(iss_nonce_set_argv(&a, n, "bootstrap", 120000) == 0 && a.argc == 6 &&
              !strcmp(a.argv[0], "SET") && !strcmp(a.argv[1], key) &&
              !strcmp(a.argv[2], "bootstrap") && !strcmp(a.argv[3], "PX") &&
              !strcmp(a.argv[4], "120000") && !strcmp(a.argv[5], "NX") &&
              a.argvlen[1] == strlen(key),
          "nonce: SET argv");
    CHECK(iss_nonce_getdel_argv(&a, n) == 0 && a.argc == 2 && !strcmp(a.argv[0], "GETDEL") &&
              !strcmp(a.argv[1], key),
          "nonce: GETDEL argv");
    CHECK(iss_nonce_getdel_argv(&a, "x y") < 0, "nonce: GETDEL argv refuses a bad nonce");
    char *json = NULL;
    CHECK(iss_challenge_response_json(n, 120000, &json) == 0 && json &&
              strstr(json, "\"expires_in\":120") && strstr(json, n) && json[strlen(json) - 1] == '\n',
          "nonce: challenge answer JSON");
    free(json);
    const char *err = NULL;
    CHECK(iss_nonce_check("bootstrap", 9, "bootstrap", &err) == 1, "nonce: consumed by its class");
    CHECK(iss_nonce_check(NULL, 0, "bootstrap", &err) == 0 && strstr(err, "already used"),
          "nonce: unknown/replayed refused");
    CHECK(iss_nonce_check("device", 6, "bootstrap", &err) == 0 && strstr(err, "another"),
          "nonce: other class refused");
}

static void test_device_id(void)
{
    char a[40], b[40];
    int ok = 1;
    CHECK(iss_device_id_new(a) == 0 && iss_device_id_new(b) == 0 && strlen(a) == 32 &&
              strcmp(a, b) != 0,
          "device id: 32 characters, distinct");
    for (const char *p = a; *p; p++)
        ok &= (*p >= 'a' && *p <= 'z') || (*p >= '2' && *p <= '7');
    CHECK(ok && pol_device_id_valid(a), "device id: lowercase base32, valid for tls");
    CHECK(!pol_device_id_valid("a b") && !pol_device_id_valid("") &&
              pol_device_id_valid("Dev-1.x:y@z_"),
          "device id: validity rules");
}

/* ---------------------------------------------------------------- request */

static int parse_fails(const char *body, const char *want)
{
    iss_req_t r;
    const char *err = NULL;
    int rc = iss_issue_parse(body, strlen(body), &r, &err);
    if (rc == 0)
        iss_req_free(&r);
    if (rc == 0 || !err || (want && !strstr(err, want))) {
        printf("#   got rc=%d err=%s\n", rc, err ? err : "(null)");
        return 0;
    }
    return 1;
}

static void test_parse(void)
{
    iss_req_t r;
    const char *err = NULL;
    const char *good = "{\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\\nAA\\n\",\"platform\":"
                       "\"android\",\"integrity_token\":\"a.b.c.d.e\",\"nonce\":\"abc_-9\","
                       "\"extra\":1}";
    int rc = iss_issue_parse(good, strlen(good), &r, &err);
    CHECK(rc == 0 && !strcmp(r.platform, "android") && !strcmp(r.nonce, "abc_-9") &&
              r.integrity_token && !strcmp(r.integrity_token, "a.b.c.d.e") && r.token_len == 9 &&
              r.csr && strstr(r.csr, "BEGIN CERTIFICATE REQUEST") && r.csr_len == strlen(r.csr),
          "parse: good request");
    if (rc == 0)
        iss_req_free(&r);
    CHECK(parse_fails("{\"platform\":\"android\",\"integrity_token\":\"t\",\"nonce\":\"n\"}",
                      "missing \"csr\""), "parse: missing csr");
    CHECK(parse_fails("{\"csr\":\"c\",\"integrity_token\":\"t\",\"nonce\":\"n\"}",
                      "missing \"platform\""), "parse: missing platform");
    const char *other_token = "{\"csr\":\"c\",\"platform\":\"android\",\"nonce\":\"n\",\"attestation\":[1]}";
    rc = iss_issue_parse(other_token, strlen(other_token), &r, &err);
    CHECK(rc == 0 && !r.integrity_token && json_is_array(json_object_get(r.body, "attestation")),
          "parse: integrity_token is optional here (the provider requires its own member); the body is kept");
    if (rc == 0)
        iss_req_free(&r);
    CHECK(parse_fails("{\"csr\":\"c\",\"integrity_token\":\"t\"}", "needs \"platform\" and \"nonce\""),
          "parse: a token without platform and nonce refused");
    CHECK(parse_fails("{\"csr\":\"c\",\"platform\":\"android\",\"integrity_token\":\"t\"}",
                      "missing \"nonce\""), "parse: missing nonce");
    CHECK(parse_fails("{\"csr\":1,\"platform\":\"android\",\"integrity_token\":\"t\",\"nonce\":\"n\"}",
                      "\"csr\" must be a string"), "parse: csr number refused");
    CHECK(parse_fails("{\"csr\":\"c\",\"platform\":null,\"integrity_token\":\"t\",\"nonce\":\"n\"}",
                      "\"platform\" must be a string"), "parse: platform null refused");
    CHECK(parse_fails("{\"csr\":\"c\",\"platform\":\"a\",\"integrity_token\":[\"t\"],\"nonce\":\"n\"}",
                      "\"integrity_token\" must be a string"), "parse: token array refused");
    CHECK(parse_fails("{\"csr\":\"c\",\"platform\":\"a\",\"integrity_token\":\"t\",\"nonce\":{}}",
                      "\"nonce\" must be a string"), "parse: nonce object refused");
    CHECK(parse_fails("{\"csr\":\"c\",\"platform\":\"Android\",\"integrity_token\":\"t\",\"nonce\":\"n\"}",
                      "platform"), "parse: uppercase platform refused");
    CHECK(parse_fails("{\"csr\":\"c\",\"platform\":\"a\",\"integrity_token\":\"t\",\"nonce\":\"n+/\"}",
                      "nonce"), "parse: non-base64url nonce refused");
    CHECK(parse_fails("[1,2]", "object"), "parse: array body refused");
    CHECK(parse_fails("{\"csr\":\"c\"", "JSON"), "parse: truncated JSON refused");
    CHECK(parse_fails("{\"csr\":\"c\",\"csr\":\"d\",\"platform\":\"a\",\"integrity_token\":\"t\","
                      "\"nonce\":\"n\"}", "JSON"), "parse: duplicate member refused");
    CHECK(parse_fails("", "empty"), "parse: empty body refused");

    /* oversize fields */
    size_t big = 20000;
    char *body = malloc(2 * big), *fill = malloc(big + 1);
    memset(fill, 'A', big);
    struct { size_t csr, plat, tok, nonce; const char *name, *want; } sz[] = {
        {8193, 7, 10, 10, "parse: csr > 8k refused", "csr"},
        {10, 33, 10, 10, "parse: platform > 32 refused", "platform"},
        {10, 7, 16385, 10, "parse: token > 16k refused", "integrity_token"},
        {10, 7, 10, 65, "parse: nonce > 64 refused", "nonce"},
        {8192, 32, 16384, 64, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        char plat[40];
        memset(plat, 'a', sz[i].plat);
        plat[sz[i].plat] = '\0';
        snprintf(body, 2 * big,
                 "{\"csr\":\"%.*s\",\"platform\":\"%s\",\"integrity_token\":\"%.*s\","
                 "\"nonce\":\"%.*s\"}",
                 (int)sz[i].csr, fill, plat, (int)sz[i].tok, fill, (int)sz[i].nonce, fill);
        if (sz[i].name) {
            CHECK(parse_fails(body, sz[i].want), sz[i].name);
        } else {
            rc = iss_issue_parse(body, strlen(body), &r, &err);
            CHECK(rc == 0, "parse: every field at its limit accepted");
            if (rc == 0)
                iss_req_free(&r);
        }
    }
    free(body);
    free(fill);

    const char *renew = "{\"csr\":\"c\"}";
    rc = iss_renew_parse(renew, strlen(renew), 0, &r, &err);
    CHECK(rc == 0 && r.integrity_token == NULL && !r.platform[0] && !r.nonce[0],
          "renew parse: csr alone accepted without attestation");
    if (rc == 0)
        iss_req_free(&r);
    rc = iss_renew_parse(renew, strlen(renew), 1, &r, &err);
    CHECK(rc < 0 && strstr(err, "missing"), "renew parse: attestation required");
    const char *partial = "{\"csr\":\"c\",\"platform\":\"android\"}";
    rc = iss_renew_parse(partial, strlen(partial), 0, &r, &err);
    CHECK(rc < 0 && strstr(err, "go together"), "renew parse: partial attestation refused");
}

static void test_platforms(void)
{
    cfg_issuance_t c = base_cfg();
    cfg_platform_t p[3];
    memset(p, 0, sizeof p);
    snprintf(p[0].name, sizeof p[0].name, "android");
    p[0].provider = CFG_ATTEST_PLAY_INTEGRITY;
    snprintf(p[1].name, sizeof p[1].name, "ios");
    p[1].provider = CFG_ATTEST_REFUSE;
    snprintf(p[2].name, sizeof p[2].name, "dev");
    p[2].provider = CFG_ATTEST_NONE;
    c.platforms = p;
    c.nplatforms = 3;
    const char *err = NULL;
    CHECK(iss_platform(&c, "android", &err) == &p[0], "platform: configured one found");
    CHECK(!iss_platform(&c, "ios", &err) && strstr(err, "refused"), "platform: refuse");
    CHECK(!iss_platform(&c, "huawei", &err) && strstr(err, "not configured"),
          "platform: unknown refused");
    CHECK(!iss_platform(&c, "dev", &err), "platform: none refused without insecure_dev");
    c.insecure_dev = 1;
    CHECK(iss_platform(&c, "dev", &err) == &p[2], "platform: none with insecure_dev");
}

/* ---------------------------------------------------------------- CSR */

static int csr_result(EVP_PKEY *key, const EVP_MD *md, int tamper, const cfg_issuance_t *c,
                      const char *want)
{
    char *pem = make_csr(key, md, tamper);
    EVP_PKEY *pub = NULL;
    const char *err = NULL;
    if (!pem)
        return -2;
    int rc = iss_csr_check(pem, strlen(pem), c, &pub, &err);
    free(pem);
    if (rc == 0) {
        int same = EVP_PKEY_eq(pub, key) == 1;
        EVP_PKEY_free(pub);
        return want ? 0 : same ? 1 : 0;
    }
    if (want && err && strstr(err, want))
        return 1;
    printf("#   rc=%d err=%s\n", rc, err ? err : "(null)");
    return 0;
}

static void test_csr(void)
{
    cfg_issuance_t c = base_cfg();
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *p384 = EVP_EC_gen("P-384");
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *rsa1k = EVP_RSA_gen(1024);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CHECK(csr_result(ec, EVP_sha256(), 0, &c, NULL) == 1, "csr: EC P-256 accepted, key returned");
    CHECK(csr_result(ec, EVP_sha256(), 1, &c, "does not verify") == 1,
          "csr: tampered request (bad signature) refused");
    CHECK(csr_result(rsa, EVP_sha256(), 0, &c, "RSA keys are disabled") == 1,
          "csr: RSA refused by default policy");
    c.key_rsa = 1;
    CHECK(csr_result(rsa, EVP_sha256(), 0, &c, NULL) == 1, "csr: RSA 2048 allowed by policy");
    CHECK(csr_result(rsa1k, EVP_sha256(), 0, &c, "too short") == 1,
          "csr: RSA 1024 refused (min bits)");
    c.rsa_min_bits = 3072;
    CHECK(csr_result(rsa, EVP_sha256(), 0, &c, "too short") == 1,
          "csr: RSA 2048 refused with rsa_min_bits 3072");
    c = base_cfg();
    CHECK(csr_result(p384, EVP_sha384(), 0, &c, "P-256") == 1, "csr: EC P-384 refused");
    CHECK(csr_result(ed, NULL, 0, &c, "key type not allowed") == 1, "csr: Ed25519 refused");
    int r = csr_result(ec, EVP_sha1(), 0, &c, "signature algorithm");
    CHECK(r == 1 || r == -2, "csr: SHA-1 signature refused");
    c.key_ec_p256 = 0;
    c.key_rsa = 1;
    CHECK(csr_result(ec, EVP_sha256(), 0, &c, "EC keys are disabled") == 1,
          "csr: EC refused when disabled");
    c = base_cfg();

    char *a = make_csr(ec, EVP_sha256(), 0), *b = make_csr(ec, EVP_sha256(), 0);
    size_t la = strlen(a), lb = strlen(b);
    char *two = malloc(la + lb + 1);
    memcpy(two, a, la);
    memcpy(two + la, b, lb + 1);
    EVP_PKEY *pub = NULL;
    const char *err = NULL;
    CHECK(iss_csr_check(two, la + lb, &c, &pub, &err) < 0 && strstr(err, "more than one"),
          "csr: two CSRs refused");
    CHECK(iss_csr_check("garbage", 7, &c, &pub, &err) < 0 && pub == NULL,
          "csr: garbage refused");
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, ca_cert);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    CHECK(iss_csr_check(data, (size_t)n, &c, &pub, &err) < 0 && strstr(err, "not a CERTIFICATE"),
          "csr: a certificate instead of a CSR refused");
    BIO_free(bio);
    /* corrupt the base64 body */
    char *bad = strdup(a);
    bad[40] = bad[40] == 'A' ? 'B' : 'A';
    bad[41] = bad[41] == 'A' ? 'B' : 'A';
    CHECK(iss_csr_check(bad, strlen(bad), &c, &pub, &err) < 0, "csr: corrupted DER refused");
    free(bad);
    free(two);
    free(a);
    free(b);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa1k);
    EVP_PKEY_free(ed);
}

/* ---------------------------------------------------------------- issuing */

static int ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static STACK_OF(X509) *parse_chain(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        sk_X509_push(sk, x);
    ERR_clear_error();
    BIO_free(b);
    return sk;
}

static void check_leaf(iss_issued_t *out, EVP_PKEY *pub, const char *id, time_t now)
{
    X509 *x = out->cert;
    char want_uri[128];
    snprintf(want_uri, sizeof want_uri, PREFIX "%s", id);

    CHECK(X509_get_version(x) == X509_VERSION_3, "issue: version 3");
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);
    for (char *p = hex; p && *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
    CHECK(bn && !BN_is_negative(bn) && BN_num_bits(bn) >= 64, "issue: serial positive, >= 64 bits");
    CHECK(hex && !strcmp(hex, out->serial) && out->serial[0] != '0',
          "issue: serial text canonical lowercase hex");
    OPENSSL_free(hex);
    BN_free(bn);

    X509_NAME *s = X509_get_subject_name(x);
    char cn[128] = "";
    X509_NAME_get_text_by_NID(s, NID_commonName, cn, sizeof cn);
    CHECK(X509_NAME_entry_count(s) == 1 && !strcmp(cn, id), "issue: subject is CN=device id only");
    CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca_cert)) == 0,
          "issue: issuer is the CA's subject");
    CHECK(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), now - 300) == 0,
          "issue: notBefore = now - 5 min");
    CHECK(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), now + 7 * 86400) == 0 &&
              out->not_after_t == now + 7 * 86400,
          "issue: notAfter = now + lifetime");
    CHECK(strlen(out->not_after) == 20 && out->not_after[10] == 'T' && out->not_after[19] == 'Z',
          "issue: not_after is RFC 3339");

    uint32_t flags = X509_get_extension_flags(x);
    CHECK(X509_get_ext_count(x) == 6, "issue: exactly six extensions");
    CHECK(!(flags & EXFLAG_CA) && (flags & EXFLAG_BCONS) && ext_critical(x, NID_basic_constraints),
          "issue: basicConstraints critical CA:FALSE");
    CHECK(X509_get_key_usage(x) == KU_DIGITAL_SIGNATURE && ext_critical(x, NID_key_usage),
          "issue: keyUsage critical digitalSignature only");
    CHECK(X509_get_extended_key_usage(x) == XKU_SSL_CLIENT && !ext_critical(x, NID_ext_key_usage),
          "issue: extendedKeyUsage clientAuth only");
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int san_ok = gens && sk_GENERAL_NAME_num(gens) == 1;
    if (san_ok) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
        san_ok = g->type == GEN_URI &&
                 !strcmp((const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                         want_uri);
    }
    GENERAL_NAMES_free(gens);
    CHECK(san_ok, "issue: SAN is exactly URI:<prefix><device id>");
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    CHECK(ski != NULL, "issue: subjectKeyIdentifier present");
    CHECK(aki && ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(ca_cert)) == 0,
          "issue: authorityKeyIdentifier = CA's SKI");
    CHECK(EVP_PKEY_eq(X509_get0_pubkey(x), pub) == 1, "issue: public key from the CSR");
    CHECK(X509_verify(x, ca_key) == 1, "issue: signed by the CA key");

    unsigned char md[32];
    unsigned int mdl;
    char fp[65];
    X509_digest(x, EVP_sha256(), md, &mdl);
    for (int i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", md[i]);
    CHECK(!strcmp(fp, out->fingerprint), "issue: fingerprint = SHA-256 of the DER");

    STACK_OF(X509) *chain = parse_chain(out->chain_pem);
    CHECK(sk_X509_num(chain) == 3 && X509_cmp(sk_X509_value(chain, 0), x) == 0 &&
              X509_cmp(sk_X509_value(chain, 1), ca_cert) == 0 &&
              X509_cmp(sk_X509_value(chain, 2), root_cert) == 0,
          "issue: chain is leaf, CA, extra chain");
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, root_cert);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    sk_X509_push(untrusted, sk_X509_value(chain, 1));
    X509_STORE_CTX_init(ctx, st, sk_X509_value(chain, 0), untrusted);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    int v = X509_verify_cert(ctx);
    if (v != 1)
        printf("#   verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    CHECK(v == 1, "issue: leaf verifies to the root with purpose sslclient");
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    sk_X509_free(untrusted);
    sk_X509_pop_free(chain, X509_free);

    cfg_identity_t icfg;
    memset(&icfg, 0, sizeof icfg);
    icfg.device_id_source = CFG_DEVID_SAN_URI;
    icfg.device_id_prefix = (char *)PREFIX;
    tls_identity_t *tid = tls_identity_from_cert(x, 0, "device", &icfg);
    CHECK(tid && tid->device_id && !strcmp(tid->device_id, id) &&
              !strcmp(tid->serial, out->serial) && !strcmp(tid->fingerprint, out->fingerprint) &&
              tid->not_after_t == out->not_after_t,
          "issue: tls identity gives the device id, serial, fingerprint, not-after");
    if (tid)
        tls_identity_release(tid);
    icfg.device_id_source = CFG_DEVID_CN;
    tid = tls_identity_from_cert(x, 0, "device", &icfg);
    CHECK(tid && tid->device_id && !strcmp(tid->device_id, id),
          "issue: tls identity from the CN gives the device id too");
    if (tid)
        tls_identity_release(tid);
}

static void test_records(iss_issued_t *out, const char *id)
{
    char *json = NULL;
    CHECK(iss_record_json(out, id, "android", "PLAY_RECOGNIZED;MEETS_DEVICE_INTEGRITY",
                                &json) == 0, "record: JSON built");
    json_error_t je;
    json_t *o = json ? json_loads(json, 0, &je) : NULL;
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "serial")), out->serial) &&
              !strcmp(json_string_value(json_object_get(o, "device_id")), id) &&
              !strcmp(json_string_value(json_object_get(o, "platform")), "android") &&
              !strcmp(json_string_value(json_object_get(o, "attestation")),
                      "PLAY_RECOGNIZED;MEETS_DEVICE_INTEGRITY") &&
              !strcmp(json_string_value(json_object_get(o, "not_after")), out->not_after) &&
              json_integer_value(json_object_get(o, "not_after_unix")) == out->not_after_t &&
              !strcmp(json_string_value(json_object_get(o, "fingerprint")), out->fingerprint) &&
              !strcmp(json_string_value(json_object_get(o, "integrity")), cfg_integrity_name(out->level)),
          "record: fields");
    json_decref(o);

    pol_argv_t a;
    char key[128];
    snprintf(key, sizeof key, "portcullis:issued:%s", out->serial);
    CHECK(pol_issued_set_argv(&a, out->serial, json, 604800) == 0 && a.argc == 5 &&
              !strcmp(a.argv[0], "SET") && !strcmp(a.argv[1], key) && a.argv[2] == json &&
              !strcmp(a.argv[3], "EX") && !strcmp(a.argv[4], "604800"),
          "record: SET issued argv");
    CHECK(pol_issued_get_argv(&a, out->serial) == 0 && a.argc == 2 && !strcmp(a.argv[1], key),
          "record: GET issued argv");
    snprintf(key, sizeof key, "portcullis:device:%s", id);
    CHECK(pol_device_sadd_argv(&a, id, out->serial) == 0 && a.argc == 3 &&
              !strcmp(a.argv[0], "SADD") && !strcmp(a.argv[1], key) &&
              !strcmp(a.argv[2], out->serial),
          "record: SADD device argv");
    CHECK(pol_device_expire_argv(&a, id, 604800) == 0 && a.argc == 3 &&
              !strcmp(a.argv[0], "EXPIRE") && !strcmp(a.argv[1], key) &&
              !strcmp(a.argv[2], "604800"),
          "record: EXPIRE device argv");
    CHECK(pol_device_members_argv(&a, id) == 0 && !strcmp(a.argv[0], "SMEMBERS"),
          "record: SMEMBERS device argv");
    CHECK(pol_issued_set_argv(&a, "00ab", json, 1) < 0 && pol_device_sadd_argv(&a, "a b", "1") < 0,
          "record: bad serial / device id refused");
    free(json);
    cfg_issuance_t c = base_cfg();
    char entry[POL_REV_ENTRY_MAX], want[80];
    snprintf(want, sizeof want, "device:%s", out->serial);
    CHECK(pol_issued_revocation_entry(&c, out->serial, entry, sizeof entry) == 0 &&
              !strcmp(entry, want),
          "record: revocation entry <device class>:<serial>");

    CHECK(iss_issue_response_json(out, id, &json) == 0, "response: JSON built");
    o = json ? json_loads(json, 0, &je) : NULL;
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "certificate_chain")), out->chain_pem) &&
              !strcmp(json_string_value(json_object_get(o, "not_after")), out->not_after) &&
              !strcmp(json_string_value(json_object_get(o, "device_id")), id) &&
              !strcmp(json_string_value(json_object_get(o, "serial")), out->serial) &&
              !strcmp(json_string_value(json_object_get(o, "integrity")), cfg_integrity_name(out->level)) &&
              json_object_size(o) == 5,
          "response: certificate_chain, not_after, device_id, serial, integrity");
    json_decref(o);
    free(json);

    CHECK(iss_error_json(PC_E_NONCE_INVALID, "nonce \"x\" used", "rid-1", &json) == 0,
          "error JSON built");
    o = json ? json_loads(json, 0, &je) : NULL;
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "error")), "nonce_invalid") &&
              !strcmp(json_string_value(json_object_get(o, "message")), "nonce \"x\" used") &&
              !strcmp(json_string_value(json_object_get(o, "request_id")), "rid-1"),
          "error JSON: gateway error shape, escaped");
    json_decref(o);
    free(json);
    CHECK(iss_error_status(PC_E_INVALID_CSR) == 400 &&
              iss_error_status(PC_E_ATTESTATION_FAILED) == 403 &&
              iss_error_status(PC_E_PAYLOAD_TOO_LARGE) == 413 &&
              iss_error_status(PC_E_ISSUANCE_UNAVAILABLE) == 503 &&
              iss_error_status(PC_E_INTERNAL) == 500 &&
              !strcmp(iss_error_code(PC_E_PLATFORM_REFUSED), "platform_refused") &&
              !strcmp(iss_error_code(PC_E_BAD_REQUEST), "bad_request") &&
              !strcmp(iss_error_code(PC_E_CLASS_NOT_ALLOWED), "class_not_allowed") &&
              !strcmp(iss_error_code((enum pc_err)99999), "internal"),
          "error codes and statuses");
}

typedef struct {
    iss_issuer_t *is;
    EVP_PKEY *pub;
    int ok;
} thr_t;

static void *issue_thread(void *arg)
{
    thr_t *t = arg;
    t->ok = 1;
    for (int i = 0; i < 20; i++) {
        char id[40];
        iss_issued_t out;
        const char *err;
        iss_device_id_new(id);
        if (iss_issue_cert(t->is, t->pub, id, PREFIX, 3600, time(NULL), -1, NULL, &out, &err) != 0 ||
            X509_verify(out.cert, ca_key) != 1)
            t->ok = 0;
        iss_issued_free(&out);
    }
    return NULL;
}

static void test_issue(void)
{
    cfg_issuance_t c = base_cfg();
    char err[256] = "";
    iss_issuer_t *is = iss_issuer_load(&c, err, sizeof err);
    CHECK(is != NULL, "issuer: loads CA, key and chain");
    if (!is) {
        printf("#   %s\n", err);
        return;
    }
    EVP_PKEY *pub = NULL;
    const char *e = NULL;
    EVP_PKEY *devkey = EVP_EC_gen("P-256");
    char *pem = make_csr(devkey, EVP_sha256(), 0);
    CHECK(iss_csr_check(pem, strlen(pem), &c, &pub, &e) == 0, "issue: CSR accepted");
    free(pem);
    char id[40];
    iss_device_id_new(id);
    time_t now = time(NULL);
    iss_issued_t out, out2;
    int rc = iss_issue_cert(is, pub, id, PREFIX, 7 * 86400, now, -1, NULL, &out, &e);
    CHECK(rc == 0 && out.cert && out.chain_pem, "issue: certificate signed");
    if (rc == 0) {
        check_leaf(&out, pub, id, now);
        test_records(&out, id);
        rc = iss_issue_cert(is, pub, id, PREFIX, 7 * 86400, now, -1, NULL, &out2, &e);
        CHECK(rc == 0 && strcmp(out.serial, out2.serial) != 0,
              "issue: renewal keeps the device id with a new serial");
        if (rc == 0)
            iss_issued_free(&out2);
        iss_issued_free(&out);
    }

    /* a lifetime beyond the CA's notAfter is capped */
    rc = iss_issue_cert(is, pub, id, PREFIX, 90 * 86400, now, -1, NULL, &out, &e);
    CHECK(rc == 0 && ASN1_TIME_compare(X509_get0_notAfter(out.cert),
                                       X509_get0_notAfter(ca_cert)) == 0,
          "issue: notAfter capped at the CA's");
    if (rc == 0)
        iss_issued_free(&out);
    rc = iss_issue_cert(is, pub, id, PREFIX, 3600, now + 40 * 86400, -1, NULL, &out, &e);
    CHECK(rc < 0 && strstr(e, "expired"), "issue: refused once the CA has expired");
    rc = iss_issue_cert(is, pub, "bad id", PREFIX, 3600, now, -1, NULL, &out, &e);
    CHECK(rc < 0 && strstr(e, "device id"), "issue: invalid device id refused");
    /* the level goes into certificatePolicies (non-critical), and back out */
    cfg_identity_t icfg;
    memset(&icfg, 0, sizeof icfg);
    for (int i = 0; i < CFG_INT__COUNT; i++) {
        char oid[CFG_OID_TEXT_MAX];
        snprintf(oid, sizeof oid, "%s.%d", CFG_INTEGRITY_ARC, i);
        cfg_oid_parse(oid, &icfg.integrity_oids[i], &e);
    }
    rc = iss_issue_cert(is, pub, id, PREFIX, 3600, now, CFG_INT_DEVICE, icfg.integrity_oids[CFG_INT_DEVICE].text,
                        &out, &e);
    int crit = -1, pos = rc == 0 ? X509_get_ext_by_NID(out.cert, NID_certificate_policies, -1) : -1;
    if (pos >= 0)
        crit = X509_EXTENSION_get_critical(X509_get_ext(out.cert, pos));
    CHECK(rc == 0 && out.level == CFG_INT_DEVICE && pos >= 0 && crit == 0 &&
              tls_cert_integrity(out.cert, &icfg) == CFG_INT_DEVICE,
          "issue: the level recorded as a non-critical certificatePolicies OID, read back");
    if (rc == 0) {
        test_records(&out, id);
        iss_issued_free(&out);
    }
    rc = iss_issue_cert(is, pub, id, PREFIX, 3600, now, CFG_INT_STRONG, NULL, &out, &e);
    CHECK(rc == 0 && out.level == -1 && X509_get_ext_by_NID(out.cert, NID_certificate_policies, -1) < 0 &&
              tls_cert_integrity(out.cert, &icfg) == -1,
          "issue: without an OID no policy: unattested");
    if (rc == 0)
        iss_issued_free(&out);
    rc = iss_issue_cert(is, pub, id, "", 3600, now, -1, NULL, &out, &e);
    CHECK(rc == 0 && X509_get_ext_by_NID(out.cert, NID_subject_alt_name, -1) < 0,
          "issue: no SAN when the prefix is empty");
    if (rc == 0)
        iss_issued_free(&out);

    thr_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i].is = is;
        t[i].pub = pub;
        pthread_create(&th[i], NULL, issue_thread, &t[i]);
    }
    int all = 1;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        all &= t[i].ok;
    }
    CHECK(all, "issue: 4 threads share one issuer");
    EVP_PKEY_free(pub);
    EVP_PKEY_free(devkey);
    iss_issuer_free(is);

    /* loading errors */
    c.ca_key_file = chain_path;
    is = iss_issuer_load(&c, err, sizeof err);
    CHECK(!is && strstr(err, "issuance.ca_key: \"") &&
              strstr(err, "is not an unencrypted PEM private key: "),
          "issuer: a non-key file refused");
    char other[512];
    path_in(other, sizeof other, "other.key");
    EVP_PKEY *ok = EVP_EC_gen("P-256");
    write_pem_key(other, ok);
    EVP_PKEY_free(ok);
    c.ca_key_file = other;
    is = iss_issuer_load(&c, err, sizeof err);
    CHECK(!is && strstr(err, "does not match"), "issuer: mismatched key refused");

    /* an unreadable file: the key path, the file and why */
    char missing[512], want[700];
    path_in(missing, sizeof missing, "no-such-dir/ca.key");
    c.ca_key_file = missing;
    is = iss_issuer_load(&c, err, sizeof err);
    snprintf(want, sizeof want, "issuance.ca_key: cannot read \"%s\": No such file or directory",
             missing);
    CHECK(!is && !strcmp(err, want), "issuer: a missing key file says which and why");
    if (is || strcmp(err, want))
        printf("#   got: %s\n", err);
    path_in(missing, sizeof missing, "");
    c.ca_key_file = other;
    c.ca_cert_file = missing;
    is = iss_issuer_load(&c, err, sizeof err);
    snprintf(want, sizeof want, "issuance.ca_cert: cannot read \"%s\": not a regular file", missing);
    CHECK(!is && !strcmp(err, want), "issuer: a directory as CA certificate says why");
    if (is || strcmp(err, want))
        printf("#   got: %s\n", err);
    c.ca_cert_file = other;
    is = iss_issuer_load(&c, err, sizeof err);
    CHECK(!is && strstr(err, "issuance.ca_cert: \"") && strstr(err, "is not a PEM certificate: no start line"),
          "issuer: a key as CA certificate gives the OpenSSL reason");
    if (is || !strstr(err, "no start line"))
        printf("#   got: %s\n", err);
}

/* ---------------------------------------------------------------- Play Integrity */

static unsigned char kek[32], kek2[32];
static EVP_PKEY *signer, *signer2;
static cfg_play_integrity_t play;
static iss_play_keys_t *pkeys;
static const char *digest_b64 = "ZHVtbXktY2VydGlmaWNhdGUtZGlnZXN0LTAxMjM0NTY";

static int load_kek_file(const char *path, unsigned char out[32])
{
    FILE *f = fopen(path, "rb");
    char buf[128] = "";
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    while (n && (buf[n - 1] == '\n'))
        n--;
    unsigned char tmp[64];
    return n == 44 && EVP_DecodeBlock(tmp, (unsigned char *)buf, 44) == 33
               ? (memcpy(out, tmp, 32), 0)
               : -1;
}

static int setup_play(void)
{
    char dir[600], path[700];
    path_in(dir, sizeof dir, "play");
    if (mkdir(dir, 0700) != 0 || mint_gen_keys(dir) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/decryption.key", dir);
    if (load_kek_file(path, kek) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/signing.pem", dir);
    FILE *f = fopen(path, "rb");
    signer = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    signer2 = EVP_EC_gen("P-256");
    RAND_bytes(kek2, sizeof kek2);
    memset(&play, 0, sizeof play);
    play.package_name = (char *)"com.example.app";
    snprintf(path, sizeof path, "%s/decryption.key", dir);
    play.decryption_key_file = strdup(path);
    snprintf(path, sizeof path, "%s/verification.key", dir);
    play.verification_key_file = strdup(path);
    unsigned char raw[40];
    if (iss_b64url_decode(digest_b64, strlen(digest_b64), raw, sizeof raw) != 32)
        return -1;
    memset(play.digests[0], 0x11, 32);
    memcpy(play.digests[1], raw, 32);
    play.ndigests = 2;
    play.device_verdicts = CFG_PLAY_MEETS_DEVICE;
    play.max_age_ms = 300000;
    char e[256];
    pkeys = iss_play_keys_load(&play, e, sizeof e);
    if (!pkeys)
        printf("#   %s\n", e);
    return signer && pkeys ? 0 : -1;
}

static mint_opts_t good_opts(const char *nonce)
{
    mint_opts_t o;
    memset(&o, 0, sizeof o);
    o.kek = kek;
    o.signer = signer;
    o.nonce = nonce;
    o.package = "com.example.app";
    o.cert_digest = digest_b64;
    o.app_verdict = "PLAY_RECOGNIZED";
    o.device_verdicts = "MEETS_DEVICE_INTEGRITY,MEETS_BASIC_INTEGRITY";
    o.timestamp_ms = now_ms() - 2000;
    return o;
}

/* Runs the verifier on a token minted with o; returns 1 if the result is
 * as wanted (want NULL: accepted). */
static int play_case(const mint_opts_t *o, const char *nonce, const char *want)
{
    char *tok = mint_token(o), summary[ISS_SUMMARY_MAX];
    const char *err = NULL;
    if (!tok) {
        printf("#   minting failed\n");
        return 0;
    }
    int rc = iss_play_verify(&play, pkeys, tok, strlen(tok), nonce, now_ms(), summary,
                             sizeof summary, NULL, NULL, &err);
    int ok = want ? rc < 0 && err && !strcmp(err, want) : rc == 0;
    if (!ok)
        printf("#   rc=%d err=%s\n", rc, err ? err : "(null)");
    free(tok);
    return ok;
}

static void test_play(void)
{
    char nonce[64], other[64], summary[ISS_SUMMARY_MAX];
    const char *err = NULL;
    iss_nonce_new(nonce);
    iss_nonce_new(other);
    mint_opts_t o = good_opts(nonce);
    char *tok = mint_token(&o);
    int rc = tok ? iss_play_verify(&play, pkeys, tok, strlen(tok), nonce, now_ms(), summary,
                                   sizeof summary, NULL, NULL, &err)
                 : -1;
    if (rc != 0)
        printf("#   err=%s\n", err ? err : "(null)");
    CHECK(rc == 0 && !strcmp(summary, "PLAY_RECOGNIZED;MEETS_DEVICE_INTEGRITY,MEETS_BASIC_INTEGRITY"),
          "play: valid token accepted, summary");

    /* tampered ciphertext: change one character in the middle of part 4 */
    if (tok) {
        char *p = tok;
        for (int k = 0; k < 3; k++)
            p = strchr(p, '.') + 1;
        size_t cl = strcspn(p, ".");
        p[cl / 2] = p[cl / 2] == 'A' ? 'B' : 'A';
        rc = iss_play_verify(&play, pkeys, tok, strlen(tok), nonce, now_ms(), summary,
                             sizeof summary, NULL, NULL, &err);
        CHECK(rc < 0 && !strcmp(err, "attestation decryption failed (GCM tag mismatch)") &&
                  !summary[0],
              "play: tampered ciphertext refused (GCM tag)");
        free(tok);
    }

    CHECK(play_case(&o, other, "the token's nonce is not this request's key-binding challenge"),
          "play: wrong nonce refused");
    o.package = "com.evil.app";
    CHECK(play_case(&o, nonce, "attestation request package name mismatch"),
          "play: wrong package refused");
    o.request_package = "com.example.app";
    CHECK(play_case(&o, nonce, "attestation app package name mismatch"),
          "play: wrong app package refused");
    o = good_opts(nonce);
    o.app_verdict = "UNRECOGNIZED_VERSION";
    CHECK(play_case(&o, nonce, "app not recognized by Play"), "play: not PLAY_RECOGNIZED refused");
    o = good_opts(nonce);
    o.cert_digest = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    CHECK(play_case(&o, nonce, "app signing certificate not in the allow-list"),
          "play: digest not in allow-list refused");
    o.cert_digest = NULL;
    CHECK(play_case(&o, nonce, "app signing certificate not in the allow-list"),
          "play: no digest refused");
    o = good_opts(nonce);
    o.device_verdicts = "MEETS_BASIC_INTEGRITY";
    CHECK(play_case(&o, nonce, "device integrity verdict missing MEETS_DEVICE_INTEGRITY"),
          "play: missing device verdict refused");
    o.device_verdicts = "";
    CHECK(play_case(&o, nonce, "device integrity verdict missing MEETS_DEVICE_INTEGRITY"),
          "play: empty device verdict refused");
    play.device_verdicts = CFG_PLAY_MEETS_DEVICE | CFG_PLAY_MEETS_STRONG;
    o = good_opts(nonce);
    CHECK(play_case(&o, nonce, "device integrity verdict missing MEETS_STRONG_INTEGRITY"),
          "play: configured STRONG verdict required");
    play.device_verdicts = 0;
    o.device_verdicts = "";
    CHECK(play_case(&o, nonce, NULL), "play: no verdict required when configured so");
    play.device_verdicts = CFG_PLAY_MEETS_DEVICE;
    o = good_opts(nonce);
    o.timestamp_ms = now_ms() - 301000;
    CHECK(play_case(&o, nonce, "attestation too old"), "play: too old refused");
    o.timestamp_ms = now_ms() + 120000;
    CHECK(play_case(&o, nonce, "attestation timestamp in the future"),
          "play: future timestamp refused");
    o = good_opts(nonce);
    o.kek = kek2;
    CHECK(play_case(&o, nonce, "attestation key unwrap failed (wrong decryption key?)"),
          "play: wrong decryption key refused");
    o = good_opts(nonce);
    o.signer = signer2;
    CHECK(play_case(&o, nonce, "attestation signature invalid"),
          "play: JWS signed by another key refused");
    o = good_opts(nonce);
    o.jwe_alg = "RSA-OAEP-256";
    CHECK(play_case(&o, nonce, "attestation JWE alg must be A256KW"), "play: JWE alg RSA-OAEP refused");
    o.jwe_alg = "dir";
    CHECK(play_case(&o, nonce, "attestation JWE alg must be A256KW"), "play: JWE alg dir refused");
    o = good_opts(nonce);
    o.jwe_enc = "A128GCM";
    CHECK(play_case(&o, nonce, "attestation JWE enc must be A256GCM"), "play: JWE enc A128GCM refused");
    o = good_opts(nonce);
    o.jws_alg = "RS256";
    CHECK(play_case(&o, nonce, "attestation JWS alg must be ES256"), "play: JWS alg RS256 refused");
    o.jws_alg = "none";
    CHECK(play_case(&o, nonce, "attestation JWS alg must be ES256"), "play: JWS alg none refused");
    o.jws_alg = "HS256";
    CHECK(play_case(&o, nonce, "attestation JWS alg must be ES256"), "play: JWS alg HS256 refused");

    const char *bad[] = {"a.b.c.d", "a.b.c.d.e.f", "", "....", "!!!.a.b.c.d"};
    int all = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        all &= iss_play_verify(&play, pkeys, bad[i], strlen(bad[i]), nonce, now_ms(), summary,
                               sizeof summary, NULL, NULL, &err) < 0 && !strstr(err, bad[i][0] ? bad[i] : "@");
    CHECK(all, "play: malformed tokens refused, not echoed");

    /* the verification key as PEM works too */
    char pempath[600], e2[256];
    path_in(pempath, sizeof pempath, "play/verification.pem");
    FILE *f = fopen(pempath, "wb");
    PEM_write_PUBKEY(f, signer);
    fclose(f);
    cfg_play_integrity_t p2 = play;
    p2.verification_key_file = pempath;
    iss_play_keys_t *k2 = iss_play_keys_load(&p2, e2, sizeof e2);
    CHECK(k2 != NULL, "play: PEM verification key loads");
    iss_play_keys_free(k2);
    p2.verification_key_file = ca_path;
    k2 = iss_play_keys_load(&p2, e2, sizeof e2);
    CHECK(!k2 && strstr(e2, "EC P-256"), "play: a certificate as verification key refused");
    iss_play_keys_free(k2);
    p2.decryption_key_file = ca_path;
    k2 = iss_play_keys_load(&p2, e2, sizeof e2);
    CHECK(!k2 && strstr(e2, "AES-256"), "play: bad decryption key file refused");
    char missing[600], want[800];
    path_in(missing, sizeof missing, "play/missing.key");
    p2.decryption_key_file = missing;
    k2 = iss_play_keys_load(&p2, e2, sizeof e2);
    snprintf(want, sizeof want, "play_integrity.decryption_key_file: cannot read \"%s\": "
             "No such file or directory", missing);
    CHECK(!k2 && !strcmp(e2, want), "play: a missing decryption key file says which and why");
    if (k2 || strcmp(e2, want))
        printf("#   got: %s\n", e2);
}

/* ---------------------------------------------------------------- http verifier */

/* ---------------------------------------------------------------- seams */

typedef struct {
    pol_iroute_t r[4];
    size_t n;
} rtable_t;

static int table_add(void *table, const pol_iroute_t *route)
{
    rtable_t *t = table;
    if (t->n == 4)
        return -1;
    t->r[t->n++] = *route;
    return 0;
}

typedef struct {
    int calls;
    enum pc_err err;
    char summary[ISS_SUMMARY_MAX];
} verdict_seen_t;

static void on_done(void *arg, const iss_verdict_t *v)
{
    verdict_seen_t *seen = arg;
    seen->calls++;
    seen->err = v->err;
    snprintf(seen->summary, sizeof seen->summary, "%s", v->summary ? v->summary : "");
}

static int reports;

static void count_report(void *arg, const char *msg)
{
    (void)arg;
    printf("#   reported: %s\n", msg);
    reports++;
}

/* The module's generation: its three internal routes as the gateway's
 * table gets them, and the attesters behind the interface. */
static void test_seams(void)
{
    cfg_issuance_t c = base_cfg();
    cfg_platform_t p[4];
    memset(p, 0, sizeof p);
    snprintf(p[0].name, sizeof p[0].name, "android");
    p[0].provider = CFG_ATTEST_PLAY_INTEGRITY;
    p[0].play = play;
    snprintf(p[1].name, sizeof p[1].name, "ios");
    p[1].provider = CFG_ATTEST_REFUSE;
    snprintf(p[2].name, sizeof p[2].name, "dev");
    p[2].provider = CFG_ATTEST_NONE;
    snprintf(p[3].name, sizeof p[3].name, "web");
    p[3].provider = CFG_ATTEST_HTTP;
    c.platforms = p;
    c.nplatforms = 4;
    c.insecure_dev = 1;
    c.path_prefix = (char *)"/certificates/";
    c.device_class_idx = 0;
    c.bootstrap_class_idx = 2;
    cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.issuance = &c;

    CHECK(iss_attester_find(CFG_ATTEST_PLAY_INTEGRITY) == &iss_attest_play &&
          iss_attester_find(CFG_ATTEST_HTTP) == &iss_attest_http &&
          iss_attester_find(CFG_ATTEST_NONE) == &iss_attest_none &&
          !iss_attester_find(CFG_ATTEST_REFUSE) && !iss_attester_find(99),
          "attesters: one per provider, none for refuse");

    reports = 0;
    iss_gen_t *g = iss_gen_load(&cfg, count_report, NULL);
    CHECK(g && reports == 0, "module: loads the CA and every platform's attester");
    rtable_t t;
    memset(&t, 0, sizeof t);
    CHECK(g && iss_gen_routes(g, table_add, &t) == 0 && t.n == 3, "module: registers three routes");
    if (t.n == 3) {
        CHECK(!strcmp(t.r[0].path, "/certificates/challenge") && t.r[0].classes == (1u | 4u) &&
              !t.r[0].post_only, "route challenge: device and bootstrap, GET or POST");
        CHECK(!strcmp(t.r[1].path, "/certificates/issue") && t.r[1].classes == 4u && t.r[1].post_only,
              "route issue: bootstrap, POST");
        CHECK(!strcmp(t.r[2].path, "/certificates/renew") && t.r[2].classes == 1u && t.r[2].post_only,
              "route renew: device, POST");
        CHECK(t.r[0].max_body == 65536 && t.r[0].start && t.r[0].cancel, "routes: body limit, handlers");
    }
    iss_gen_free(g);

    /* the Play Integrity attester through the interface: synchronous */
    void *inst = NULL, *op = (void *)&op;
    char e[256];
    inst = iss_attest_play.load(&p[0], e, sizeof e);
    CHECK(inst != NULL, "play attester: loads its keys");
    char nonce[64], bound[64];
    iss_nonce_new(nonce);
    unsigned char ch[32], spki[32], other_ch[32];
    EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");
    CHECK(iss_bind_challenge(nonce, k1, ch, spki) == 0 && iss_bind_challenge(nonce, k2, other_ch, spki) == 0 &&
              memcmp(ch, other_ch, 32) != 0 && iss_bind_challenge("", k1, ch, spki) < 0 &&
              iss_bind_challenge(nonce, NULL, ch, spki) < 0 && iss_bind_challenge(nonce, k1, ch, spki) == 0,
          "bind: the challenge depends on the key; no nonce or no key is refused");
    iss_b64url_encode(ch, 32, bound, sizeof bound);
    mint_opts_t o = good_opts(bound);   /* the app passes the challenge as Play's nonce */
    char *tok = mint_token(&o);
    verdict_seen_t seen = {0};
    iss_attest_req_t rq = {.platform = &p[0], .token = tok, .token_len = tok ? strlen(tok) : 0,
                           .nonce = nonce, .challenge = ch, .spki_sha256 = spki, .now_ms = now_ms()};
    if (inst && tok) {
        iss_attest_play.verify(inst, &rq, on_done, &seen, &op);
        CHECK(seen.calls == 1 && seen.err == PC_E_NONE && strstr(seen.summary, "PLAY_RECOGNIZED") && !op,
              "play attester: accepted, done called once before verify returns");
        memset(&seen, 0, sizeof seen);
        rq.challenge = other_ch;   /* the same token with another CSR key */
        iss_attest_play.verify(inst, &rq, on_done, &seen, &op);
        CHECK(seen.calls == 1 && seen.err == PC_E_KEY_NOT_BOUND, "play attester: a token for another key refused key_not_bound");
        memset(&seen, 0, sizeof seen);
        rq.challenge = NULL;
        iss_attest_play.verify(inst, &rq, on_done, &seen, &op);
        CHECK(seen.calls == 1 && seen.err == PC_E_KEY_NOT_BOUND, "play attester: no challenge, no verdict");
    }
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    free(tok);
    iss_attest_play.free(inst);

    inst = iss_attest_none.load(&p[2], e, sizeof e);
    memset(&seen, 0, sizeof seen);
    iss_attest_none.verify(inst, &rq, on_done, &seen, &op);
    CHECK(seen.calls == 1 && seen.err == PC_E_NONE && !strcmp(seen.summary, "none (insecure_dev)"),
          "none attester: accepts, says so");
    iss_attest_none.free(inst);

    /* every failure is reported, the module is not built */
    p[0].play.verification_key_file = (char *)"/nonexistent/verification.key";
    c.ca_key_file = (char *)"/nonexistent/ca.key";
    reports = 0;
    g = iss_gen_load(&cfg, count_report, NULL);
    CHECK(!g && reports == 2, "module: a bad CA key and a bad Play key both reported, nothing built");
}

static void test_http(void)
{
    char *json = NULL, summary[200];
    const char *err = NULL;
    const unsigned char ch[32] = {1, 2, 3}, key[32] = {0xff};
    CHECK(iss_http_verifier_body("android", "tok\"en", "nonce1", ch, key, &json) == 0,
          "http: body built");
    json_error_t je;
    json_t *o = json ? json_loads(json, 0, &je) : NULL;
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "platform")), "android") &&
              !strcmp(json_string_value(json_object_get(o, "integrity_token")), "tok\"en") &&
              !strcmp(json_string_value(json_object_get(o, "nonce")), "nonce1") &&
              !strcmp(json_string_value(json_object_get(o, "challenge")), "AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") &&
              !strcmp(json_string_value(json_object_get(o, "key_sha256")), "_wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
          "http: body fields");
    json_decref(o);
    cfg_http_verifier_t hc;
    memset(&hc, 0, sizeof hc);
    hc.host = (char *)"127.0.0.1:9100";
    hc.path = (char *)"/verify";
    char *req = NULL;
    size_t rl = 0;
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", strlen(json));
    CHECK(iss_http_verifier_request(&hc, json, &req, &rl) == 0 && rl == strlen(req) &&
              !strncmp(req, "POST /verify HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n", 45) &&
              strstr(req, cl) && strstr(req, "\r\n\r\n") &&
              !strcmp(strstr(req, "\r\n\r\n") + 4, json),
          "http: request framed");
    free(req);
    free(json);

    struct { const char *body; int rc; const char *summary; const char *name; int level; } cases[] = {
        {"{\"verdict\":\"allow\",\"summary\":\"ios:ok\"}", 0, "ios:ok", "http: allow with summary", CFG_INT_BASIC},
        {"{\"verdict\":\"allow\"}", 0, "allow", "http: allow without summary: level basic", CFG_INT_BASIC},
        {"{\"verdict\":\"allow\",\"level\":\"device\"}", 0, "allow", "http: level device taken", CFG_INT_DEVICE},
        {"{\"verdict\":\"allow\",\"level\":\"none\"}", 0, "allow", "http: level none taken", CFG_INT_NONE},
        {"{\"verdict\":\"allow\",\"level\":\"strong\"}", -1, "above max_level \"device\"",
         "http: level above max_level refused", 0},
        {"{\"verdict\":\"allow\",\"level\":\"Device\"}", -1, "level=\"Device\"", "http: unknown level refused", 0},
        {"{\"verdict\":\"allow\",\"level\":2}", -1, "(not a string)", "http: non-string level refused", 0},
        {"{\"verdict\":\"deny\",\"level\":\"device\"}", -1, "verdict=\"deny\"", "http: deny with a level still refused", 0},
        {"{\"verdict\":\"deny\",\"reason\":\"jailbroken\"}", -1, "verdict=\"deny\" reason=\"jailbroken\"",
         "http: deny refused, named", 0},
        {"{\"verdict\":\"Allow\"}", -1, "verdict=\"Allow\"", "http: 'Allow' refused", 0},
        {"{\"verdict\":\"allow\",\"extra\":1}", -1, "unexpected member \"extra\"",
         "http: extra member refused", 0},
        {"{\"verdict\":\"allow\",\"summary\":5}", -1, NULL, "http: non-string summary refused", 0},
        {"{\"verdict\":true}", -1, "(not a string)", "http: boolean verdict refused", 0},
        {"{}", -1, "(missing)", "http: missing verdict refused", 0},
        {"allow", -1, "body=\"allow\"", "http: non-JSON refused", 0},
        {"{\"verdict\":\"no\\\"pe\\u0001\"}", -1, "verdict=\"no?pe?\"", "http: answer sanitized", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int level = -2;
        int rc = iss_http_verifier_parse(cases[i].body, strlen(cases[i].body), CFG_INT_DEVICE, summary,
                                         sizeof summary, &level, &err);
        int ok = rc == cases[i].rc && (!cases[i].summary || strstr(summary, cases[i].summary)) &&
                 (rc == 0 ? level == cases[i].level : level == -1);
        if (!ok)
            printf("#   rc=%d summary=%s\n", rc, summary);
        CHECK(ok, cases[i].name);
    }
    int level = -2;
    const char *strong = "{\"verdict\":\"allow\",\"level\":\"strong\"}", *plain = "{\"verdict\":\"allow\"}";
    CHECK(iss_http_verifier_parse(strong, strlen(strong), CFG_INT_STRONG, summary, sizeof summary, &level, &err) == 0 &&
              level == CFG_INT_STRONG,
          "http: strong taken when max_level is strong");
    CHECK(iss_http_verifier_parse(plain, strlen(plain), CFG_INT_NONE, summary, sizeof summary, &level, &err) == 0 &&
              level == CFG_INT_NONE,
          "http: no level under max_level none: none, never above the cap");
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    srand((unsigned)time(NULL));
    if (!mkdtemp(tmpdir)) {
        printf("not ok - scratch directory\n0 passed, 1 failed\n");
        return 1;
    }
    CHECK(setup_pki() == 0, "setup: test PKI");
    CHECK(setup_play() == 0, "setup: Play Integrity test keys");

    test_nonce();
    test_device_id();
    test_parse();
    test_platforms();
    test_csr();
    test_issue();
    if (pkeys)
        test_play();
    if (pkeys)
        test_seams();
    test_http();

    iss_play_keys_free(pkeys);
    free(play.decryption_key_file);
    free(play.verification_key_file);
    EVP_PKEY_free(signer);
    EVP_PKEY_free(signer2);
    X509_free(root_cert);
    X509_free(ca_cert);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(ca_key);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return check_done();
}
