/* mint-keyattest: Android key attestation chains for the tests, made at
 * test time with a test root (never Google's).
 *
 *   mint-keyattest --gen-ca DIR
 *       DIR/root.pem, root.key (self-signed test root), DIR/int.pem,
 *       int.key (an intermediate under it), EC P-256, valid 30 days.
 *   mint-keyattest --ca DIR [options]
 *       prints the chain as the app sends it: a JSON array of base64 DER
 *       certificates, leaf (the key's attestation certificate) first, then
 *       the intermediate and the root.
 *
 * Options of the leaf:
 *   --challenge STR          attestationChallenge (its ASCII bytes)
 *   --attest-level L, --km-level L   software | tee | strongbox (tee)
 *   --package NAME           attestationApplicationId package (repeatable;
 *                            com.example.app when none)
 *   --digest HEX             a signing certificate SHA-256 (repeatable)
 *   --boot S                 verified | self-signed | unverified | failed
 *   --purposes N,N           key purposes (2 = SIGN; default 2,3)
 *   --origin N               teeEnforced origin (0 GENERATED, the default;
 *                            2 IMPORTED, 4 SECURELY_IMPORTED ...)
 *   --device-locked 0|1      rootOfTrust deviceLocked (1)
 *   --key FILE               the attested key: a PEM private or public key
 *                            (default: a new EC P-256 key)
 *   --key-out FILE           writes the generated private key (PEM)
 *   --fault F                unknown-tags, dup-purpose, sw-only, no-appid,
 *                            no-rot, v2-rot, no-origin, sw-origin (origin
 *                            in softwareEnforced only), dup-origin
 *                            (KeyDescription faults);
 *                            no-extension, truncate (extension cut by one
 *                            byte), other-root (chain to a fresh root),
 *                            expired (leaf validity over), future-leaf
 *                            (leaf valid from an hour ahead), expired-int
 *                            (the intermediate, re-signed by the root,
 *                            expired a day ago), leaf-only
 *                            (no intermediate or root in the array),
 *                            int-keydesc (the intermediate, re-signed by
 *                            the root, carries a key description too)
 *   --der-out FILE           also writes the KeyDescription DER
 * Exit status: 0 success, 2 usage, 1 failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mint_keyattest.h"
#include "mint_pem.h"

#define DAY 86400L

static void usage(void)
{
    fprintf(stderr, "usage: mint-keyattest --gen-ca DIR\n"
                    "       mint-keyattest --ca DIR [--challenge S] [--attest-level L] "
                    "[--km-level L] [--package P]... [--digest HEX]... [--boot S] "
                    "[--purposes N,N] [--origin N] [--device-locked 0|1] [--key FILE] "
                    "[--key-out FILE] [--fault F]... "
                    "[--der-out FILE]\n");
    exit(2);
}

static void die(const char *what)
{
    fprintf(stderr, "mint-keyattest: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        die("key generation failed");
    return k;
}

static void set_name(X509_NAME *n, const char *cn)
{
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"portcullis test", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *val)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, val);
    if (!e || !X509_add_ext(x, e, -1))
        die("extension");
    X509_EXTENSION_free(e);
}

/* A certificate for pub under issuer (NULL: self-signed with key). */
static X509 *make_cert(const char *cn, EVP_PKEY *pub, X509 *issuer, int ca,
                       long from, long to)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    if (!x || !bn || !BN_rand(bn, 63, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        die("serial");
    BN_free(bn);
    X509_set_version(x, 2);
    set_name(X509_get_subject_name(x), cn);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_set_pubkey(x, pub);
    add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (issuer)
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    if (ca) {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
    }
    return x;
}

static void sign(X509 *x, EVP_PKEY *key)
{
    if (!X509_sign(x, key, EVP_sha256()))
        die("signing");
}

static void write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (mint_write_pem(dir, name, x, k) < 0)
        die(p);
}

static void *read_pem(const char *dir, const char *name, int is_key)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    void *r = is_key ? (void *)mint_read_key(p) : (void *)mint_read_cert(dir, name);
    if (!r)
        die(p);
    return r;
}

static int gen_ca(const char *dir)
{
    EVP_PKEY *rk = new_key(), *ik = new_key();
    X509 *root = make_cert("Test Attestation Root", rk, NULL, 1, -DAY, 30 * DAY);
    sign(root, rk);
    X509 *in = make_cert("Test Attestation Intermediate", ik, root, 1, -DAY, 30 * DAY);
    sign(in, rk);
    write_pem(dir, "root.pem", root, NULL);
    write_pem(dir, "root.key", NULL, rk);
    write_pem(dir, "int.pem", in, NULL);
    write_pem(dir, "int.key", NULL, ik);
    X509_free(root);
    X509_free(in);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
    return 0;
}

static int parse_level(const char *s)
{
    if (!strcmp(s, "software"))
        return 0;
    if (!strcmp(s, "tee"))
        return 1;
    if (!strcmp(s, "strongbox"))
        return 2;
    usage();
    return -1;
}

static int parse_boot(const char *s)
{
    static const char *const n[] = {"verified", "self-signed", "unverified", "failed"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, n[i]))
            return i;
    usage();
    return -1;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(path);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    if (!k) {
        rewind(f);
        k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    }
    fclose(f);
    if (!k)
        die("--key: not a PEM key");
    ERR_clear_error();
    return k;
}

static void b64_der(X509 *x, int first)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0)
        die("DER");
    char *b = malloc((size_t)n * 2 + 8);
    if (!b)
        die("memory");
    EVP_EncodeBlock((unsigned char *)b, der, n);
    printf("%s\"%s\"", first ? "" : ",", b);
    free(b);
    OPENSSL_free(der);
}

typedef struct {
    kd_opts_t kd;
    const char *ca, *key, *key_out, *der_out;
    int no_ext, truncate, other_root, expired, future_leaf, expired_int, leaf_only, int_keydesc;
    unsigned char digests[4][32];
    int purposes[16];
} args_t;

static void parse_fault(args_t *a, const char *f)
{
    static const struct {
        const char *name;
        unsigned bit;
    } kdf[] = {{"unknown-tags", KD_F_UNKNOWN_TAGS}, {"dup-purpose", KD_F_DUP_PURPOSE},
               {"sw-only", KD_F_SW_ONLY},           {"no-appid", KD_F_NO_APPID},
               {"no-rot", KD_F_NO_ROT},             {"v2-rot", KD_F_V2_ROT},
               {"no-origin", KD_F_NO_ORIGIN},       {"sw-origin", KD_F_SW_ORIGIN},
               {"dup-origin", KD_F_DUP_ORIGIN}};
    for (size_t i = 0; i < sizeof kdf / sizeof kdf[0]; i++)
        if (!strcmp(f, kdf[i].name)) {
            a->kd.faults |= kdf[i].bit;
            return;
        }
    if (!strcmp(f, "no-extension"))
        a->no_ext = 1;
    else if (!strcmp(f, "truncate"))
        a->truncate = 1;
    else if (!strcmp(f, "other-root"))
        a->other_root = 1;
    else if (!strcmp(f, "expired"))
        a->expired = 1;
    else if (!strcmp(f, "future-leaf"))
        a->future_leaf = 1;
    else if (!strcmp(f, "expired-int"))
        a->expired_int = 1;
    else if (!strcmp(f, "leaf-only"))
        a->leaf_only = 1;
    else if (!strcmp(f, "int-keydesc"))
        a->int_keydesc = 1;
    else
        usage();
}

static void parse_args(args_t *a, int argc, char **argv)
{
    size_t np = 0, nd = 0;
    a->kd.attest_version = 200;
    a->kd.attest_level = a->kd.km_level = 1;
    a->kd.device_locked = 1;
    a->kd.challenge = (const unsigned char *)"";
    a->purposes[0] = 2;
    a->purposes[1] = 3;
    a->kd.npurposes = 2;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(o, "--ca"))
            a->ca = v;
        else if (!strcmp(o, "--challenge")) {
            a->kd.challenge = (const unsigned char *)v;
            a->kd.challenge_len = strlen(v);
        } else if (!strcmp(o, "--attest-level"))
            a->kd.attest_level = parse_level(v);
        else if (!strcmp(o, "--km-level"))
            a->kd.km_level = parse_level(v);
        else if (!strcmp(o, "--package") && np < 3)
            a->kd.packages[np++] = v;
        else if (!strcmp(o, "--digest") && nd < 3) {
            if (mint_hex32(v, a->digests[nd]) < 0)
                usage();
            a->kd.digests[nd] = a->digests[nd];
            nd++;
        } else if (!strcmp(o, "--boot"))
            a->kd.boot_state = parse_boot(v);
        else if (!strcmp(o, "--purposes")) {
            char *end;
            a->kd.npurposes = 0;
            for (const char *s = v; *s && a->kd.npurposes < 16; s = *end ? end + 1 : end) {
                a->purposes[a->kd.npurposes++] = (int)strtol(s, &end, 10);
                if (end == s)
                    usage();
            }
        } else if (!strcmp(o, "--origin"))
            a->kd.origin = strtol(v, NULL, 10);
        else if (!strcmp(o, "--device-locked"))
            a->kd.device_locked = !strcmp(v, "1");
        else if (!strcmp(o, "--key"))
            a->key = v;
        else if (!strcmp(o, "--key-out"))
            a->key_out = v;
        else if (!strcmp(o, "--der-out"))
            a->der_out = v;
        else if (!strcmp(o, "--fault"))
            parse_fault(a, v);
        else
            usage();
    }
    a->kd.purposes = a->purposes;
    if (!np)
        a->kd.packages[0] = "com.example.app";
    if (!a->ca)
        usage();
}

static void add_keydesc(X509 *leaf, const args_t *a)
{
    unsigned char *der;
    size_t len;
    kd_build(&a->kd, &der, &len);
    if (a->der_out) {
        FILE *f = fopen(a->der_out, "wb");
        if (!f || fwrite(der, 1, len, f) != len)
            die(a->der_out);
        fclose(f);
    }
    if (a->truncate)
        len--;
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.4.1.11129.2.1.17", 1);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    X509_EXTENSION *e = NULL;
    if (!oid || !os || !ASN1_OCTET_STRING_set(os, der, (int)len) ||
        !(e = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os)) || !X509_add_ext(leaf, e, -1))
        die("KeyDescription extension");
    X509_EXTENSION_free(e);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(oid);
    free(der);
}

static int mint(int argc, char **argv)
{
    args_t a;
    memset(&a, 0, sizeof a);
    parse_args(&a, argc, argv);
    X509 *root = read_pem(a.ca, "root.pem", 0), *in = read_pem(a.ca, "int.pem", 0);
    EVP_PKEY *ik = read_pem(a.ca, "int.key", 1);
    if (a.other_root) {   /* the same names, other keys: a chain to an unknown root */
        EVP_PKEY *rk = new_key();
        X509_free(root);
        X509_free(in);
        EVP_PKEY_free(ik);
        ik = new_key();
        root = make_cert("Test Attestation Root", rk, NULL, 1, -DAY, 30 * DAY);
        sign(root, rk);
        in = make_cert("Test Attestation Intermediate", ik, root, 1, -DAY, 30 * DAY);
        sign(in, rk);
        EVP_PKEY_free(rk);
    }
    if (a.int_keydesc || a.expired_int) {   /* the same intermediate key, re-signed */
        EVP_PKEY *rk = read_pem(a.ca, "root.key", 1);
        X509_free(in);
        in = a.expired_int ? make_cert("Test Attestation Intermediate", ik, root, 1, -3 * DAY, -DAY)
                           : make_cert("Test Attestation Intermediate", ik, root, 1, -DAY, 30 * DAY);
        if (a.int_keydesc)
            add_keydesc(in, &a);
        sign(in, rk);
        EVP_PKEY_free(rk);
    }
    EVP_PKEY *key = a.key ? load_key(a.key) : new_key();
    if (a.key_out && !a.key) {
        FILE *f = fopen(a.key_out, "w");
        if (!f || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
            die(a.key_out);
        fclose(f);
    }
    long from = a.expired ? -3 * DAY : a.future_leaf ? 3600 : -3600;
    long to = a.expired ? -DAY : DAY;
    X509 *leaf = make_cert("Android Keystore Key", key, in, 0, from, to);
    if (!a.no_ext)
        add_keydesc(leaf, &a);
    sign(leaf, ik);
    printf("[");
    b64_der(leaf, 1);
    if (!a.leaf_only) {
        b64_der(in, 0);
        b64_der(root, 0);
    }
    printf("]\n");
    X509_free(leaf);
    X509_free(in);
    X509_free(root);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(key);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--gen-ca"))
        return gen_ca(argv[2]);
    if (argc < 3)
        usage();
    return mint(argc, argv);
}
