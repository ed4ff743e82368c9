/* Shared by the unit tests that run real handshakes (test_vcache.c,
 * test_tls_store.c): a PKI made in memory with OpenSSL, PEM files for the
 * server's config, and client contexts presenting a certificate. */
#ifndef PORTCULLIS_TEST_PKI_UTIL_H
#define PORTCULLIS_TEST_PKI_UTIL_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} pair_t;

static inline X509 *make_cert(EVP_PKEY *pub, const char *cn, long serial, X509 *issuer,
                       EVP_PKEY *issuer_key, int ca, long valid_s)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Example Org", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), valid_s);
    X509_set_pubkey(x, pub);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    const char *ext[][2] = {
        {"basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
        {"keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
        {"extendedKeyUsage", ca ? NULL : "clientAuth,serverAuth"},
    };
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        if (!ext[i][1])
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, ext[i][0], ext[i][1]);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, issuer_key, EVP_sha256());
    return x;
}

static inline pair_t make_pair(const char *cn, long serial, const pair_t *issuer, int ca)
{
    pair_t p = {EVP_EC_gen("P-256"), NULL};
    p.cert = make_cert(p.key, cn, serial, issuer ? issuer->cert : NULL,
                       issuer ? issuer->key : p.key, ca, 30L * 86400);
    return p;
}

static inline void free_pair(pair_t *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
}

static inline void write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    if (cert)
        PEM_write_X509(f, cert);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* A client context presenting cert (and the extra chain certificates). */
static inline SSL_CTX *client(X509 *cert, EVP_PKEY *key, X509 *extra, int tls12)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    SSL_CTX_use_certificate(c, cert);
    SSL_CTX_use_PrivateKey(c, key);
    if (extra)
        SSL_CTX_add1_chain_cert(c, extra);
    if (tls12)
        SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    return c;
}

#endif
