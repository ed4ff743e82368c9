/* issuer.c: the issuing CA (loading it) and signing device certificates
 * with it. Contracts: issuance.h. Certificate requests are checked in csr.c.
 *
 * The issuer is immutable after iss_issuer_load(); the CA's extensions are
 * cached there, so signing only reads it and any number of threads may issue
 * at once (each signature uses its own digest context).
 */
#include "issuance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

struct iss_issuer {
    X509 *ca;
    EVP_PKEY *key;
    char *tail_pem;        /* CA + chain, PEM */
    size_t tail_len;
    const EVP_MD *md;      /* NULL for EdDSA CAs */
};

/* ---------------------------------------------------------------- loading */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* Appends the PEM of x to mem. Boolean. */
static int pem_append(BIO *mem, X509 *x)
{
    return PEM_write_bio_X509(mem, x) == 1;
}

void iss_issuer_free(iss_issuer_t *is)
{
    if (!is)
        return;
    X509_free(is->ca);
    EVP_PKEY_free(is->key);
    free(is->tail_pem);
    free(is);
}

X509 *iss_issuer_ca(const iss_issuer_t *is)
{
    return is ? is->ca : NULL;
}

iss_issuer_t *iss_issuer_load(const cfg_issuance_t *cfg, char *err, size_t errlen)
{
    iss_issuer_t *is = calloc(1, sizeof *is);
    BIO *b = NULL, *mem = NULL;
    if (!is) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!cfg || !cfg->ca_cert_file || !cfg->ca_key_file) {
        snprintf(err, errlen, "issuance: no CA configured");
        goto fail;
    }
    char why[512];
    if (!(b = cfg_open_file(cfg->ca_cert_file, why, sizeof why))) {
        snprintf(err, errlen, "issuance.ca_cert: %s", why);
        goto fail;
    }
    if (!(is->ca = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        snprintf(err, errlen, "issuance.ca_cert: \"%s\" is not a PEM certificate: %s",
                 cfg->ca_cert_file, cfg_ossl_reason());
        goto fail;
    }
    BIO_free(b);
    if (!(b = cfg_open_file(cfg->ca_key_file, why, sizeof why))) {
        snprintf(err, errlen, "issuance.ca_key: %s", why);
        goto fail;
    }
    if (!(is->key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL))) {
        snprintf(err, errlen, "issuance.ca_key: \"%s\" is not an unencrypted PEM private key: %s",
                 cfg->ca_key_file, cfg_ossl_reason());
        goto fail;
    }
    BIO_free(b);
    b = NULL;
    if (X509_check_private_key(is->ca, is->key) != 1) {
        snprintf(err, errlen, "issuance: the CA key does not match the CA certificate");
        goto fail;
    }
    if (X509_check_ca(is->ca) < 1) { /* also caches the extensions (SKI for AKI) */
        snprintf(err, errlen, "issuance: \"%s\" is not a CA certificate", cfg->ca_cert_file);
        goto fail;
    }
    int t = EVP_PKEY_get_base_id(is->key);
    if (t == EVP_PKEY_ED25519 || t == EVP_PKEY_ED448)
        is->md = NULL;
    else if (t == EVP_PKEY_EC && EVP_PKEY_get_bits(is->key) > 384)
        is->md = EVP_sha512();
    else if (t == EVP_PKEY_EC && EVP_PKEY_get_bits(is->key) > 256)
        is->md = EVP_sha384();
    else
        is->md = EVP_sha256();
    if (!(mem = BIO_new(BIO_s_mem())) || !pem_append(mem, is->ca))
        goto oom;
    if (cfg->chain_file) {
        X509 *x;
        int n = 0;
        if (!(b = cfg_open_file(cfg->chain_file, why, sizeof why))) {
            snprintf(err, errlen, "issuance.chain: %s", why);
            goto fail;
        }
        while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            int ok = pem_append(mem, x);
            X509_free(x);
            if (!ok)
                goto oom;
            n++;
        }
        if (n == 0) {
            snprintf(err, errlen, "issuance.chain: \"%s\" holds no PEM certificate: %s",
                     cfg->chain_file, cfg_ossl_reason());
            goto fail;
        }
    }
    char *data;
    long n = BIO_get_mem_data(mem, &data);
    if (n <= 0 || !(is->tail_pem = malloc((size_t)n + 1)))
        goto oom;
    memcpy(is->tail_pem, data, (size_t)n);
    is->tail_pem[n] = '\0';
    is->tail_len = (size_t)n;
    BIO_free(mem);
    BIO_free(b);
    ERR_clear_error();
    return is;
oom:
    snprintf(err, errlen, "issuance: out of memory");
fail:
    BIO_free(mem);
    BIO_free(b);
    ERR_clear_error();
    iss_issuer_free(is);
    return NULL;
}

/* ---------------------------------------------------------------- signing */

void iss_issued_free(iss_issued_t *out)
{
    if (!out)
        return;
    free(out->chain_pem);
    X509_free(out->cert);
    memset(out, 0, sizeof *out);
}

static int fmt_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    return gmtime_r(&t, &tm) && strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) ? 0 : -1;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

static int add_san_uri(X509 *x, const char *prefix, const char *id)
{
    size_t pl = strlen(prefix), il = strlen(id);
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *uri = ASN1_IA5STRING_new();
    char *s = malloc(pl + il + 1);
    int ok = 0;
    if (gens && gn && uri && s) {
        memcpy(s, prefix, pl);
        memcpy(s + pl, id, il + 1);
        if (ASN1_STRING_set(uri, s, (int)(pl + il))) {
            GENERAL_NAME_set0_value(gn, GEN_URI, uri);
            uri = NULL;
            if (sk_GENERAL_NAME_push(gens, gn)) {
                gn = NULL;
                ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_APPEND) == 1;
            }
        }
    }
    free(s);
    ASN1_IA5STRING_free(uri);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    return ok;
}

/* certificatePolicies (non-critical) naming the one policy oid: the
 * integrity level the certificate records (tls_cert_integrity reads it). */
static int add_policy(X509 *x, const char *oid)
{
    CERTIFICATEPOLICIES *pols = CERTIFICATEPOLICIES_new();
    POLICYINFO *pi = POLICYINFO_new();
    int ok = 0;
    if (pols && pi) {
        ASN1_OBJECT_free(pi->policyid);
        if ((pi->policyid = OBJ_txt2obj(oid, 1)) && sk_POLICYINFO_push(pols, pi)) {
            pi = NULL;
            ok = X509_add1_ext_i2d(x, NID_certificate_policies, pols, 0, X509V3_ADD_APPEND) == 1;
        }
    }
    POLICYINFO_free(pi);
    CERTIFICATEPOLICIES_free(pols);
    return ok;
}

/* Random 16-byte serial with the top bit clear and the next one set: always
 * positive, always 127 bits (126 of them random). */
static int make_serial(X509 *x, char hex[41])
{
    unsigned char raw[16];
    static const char digits[] = "0123456789abcdef";
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    raw[0] = (unsigned char)((raw[0] & 0x7f) | 0x40);
    BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
    ASN1_INTEGER *ai = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = ai && X509_set_serialNumber(x, ai) == 1;
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    if (!ok)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[32] = '\0'; /* raw[0] >= 0x40: no leading zero */
    return 0;
}

int iss_issue_cert(iss_issuer_t *is, EVP_PKEY *pub, const char *device_id,
                   const char *san_uri_prefix, uint64_t lifetime_s, time_t now, int level,
                   const char *policy_oid, iss_issued_t *out, const char **err)
{
    X509 *x = NULL;
    X509_NAME *subj = NULL;
    BIO *mem = NULL;
    memset(out, 0, sizeof *out);
    *err = "certificate signing failed";
    if (!is || !pub || !pol_device_id_valid(device_id)) {
        *err = "invalid device id";
        return -1;
    }
    if (lifetime_s == 0 || lifetime_s > 10ULL * 365 * 86400) {
        *err = "invalid certificate lifetime";
        return -1;
    }
    const ASN1_TIME *ca_na = X509_get0_notAfter(is->ca);
    time_t nb = now - 300, na = now + (time_t)lifetime_s;
    struct tm tm;
    int capped = ASN1_TIME_cmp_time_t(ca_na, na) < 0;
    if (capped) {
        if (!ASN1_TIME_to_tm(ca_na, &tm))
            return -1;
        na = timegm(&tm);
        if (na <= now) {
            *err = "the issuing CA certificate has expired";
            return -1;
        }
    }
    if (!(x = X509_new()) || !X509_set_version(x, X509_VERSION_3) ||
        make_serial(x, out->serial) < 0 || !X509_set_issuer_name(x, X509_get_subject_name(is->ca)))
        goto fail;
    if (!(subj = X509_NAME_new()) ||
        !X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_ASC,
                                    (const unsigned char *)device_id, -1, -1, 0) ||
        !X509_set_subject_name(x, subj))
        goto fail;
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb) ||
        !(capped ? X509_set1_notAfter(x, ca_na) : X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na) != NULL) ||
        !X509_set_pubkey(x, pub))
        goto fail;
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, is->ca, x, NULL, NULL, 0);
    if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") ||
        !add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
        !add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always"))
        goto fail;
    if (san_uri_prefix && *san_uri_prefix && !add_san_uri(x, san_uri_prefix, device_id))
        goto fail;
    if (policy_oid && !add_policy(x, policy_oid))
        goto fail;
    if (X509_sign(x, is->key, is->md) <= 0)
        goto fail;

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!X509_digest(x, EVP_sha256(), md, &mdlen) || mdlen != 32)
        goto fail;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out->fingerprint + 2 * i, 3, "%02x", md[i]);
    out->not_before_t = nb;
    out->not_after_t = na;
    out->issued_at = now;
    out->level = policy_oid ? level : -1;
    if (fmt_time(nb, out->not_before, sizeof out->not_before) < 0 ||
        fmt_time(na, out->not_after, sizeof out->not_after) < 0)
        goto fail;
    if (!(mem = BIO_new(BIO_s_mem())) || !pem_append(mem, x))
        goto fail;
    char *data;
    long n = BIO_get_mem_data(mem, &data);
    if (n <= 0 || !(out->chain_pem = malloc((size_t)n + is->tail_len + 1)))
        goto fail;
    memcpy(out->chain_pem, data, (size_t)n);
    memcpy(out->chain_pem + n, is->tail_pem, is->tail_len + 1);
    out->cert = x;
    BIO_free(mem);
    X509_NAME_free(subj);
    ERR_clear_error();
    return 0;
fail:
    BIO_free(mem);
    X509_NAME_free(subj);
    X509_free(x);
    out->cert = NULL;
    iss_issued_free(out);
    ERR_clear_error();
    return -1;
}
