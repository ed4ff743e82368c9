/* Test helper: a test App Attest PKI (root, intermediate) and minted App
 * Attest attestation and assertion objects, with deliberate faults for the
 * mutation tests. Header-only (static functions) so that
 * test/tools/mint-appattest.c and test/unit/test_appattest.c share it without
 * linking the gateway; it encodes with libcbor's builders and shares no
 * code with the verifier (issuance/appattest.c).
 */
#ifndef PORTCULLIS_TOOLS_MINT_APPATTEST_H
#define PORTCULLIS_TOOLS_MINT_APPATTEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cbor.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define MINT_AA_NONCE_OID "1.2.840.113635.100.8.2"

static const unsigned char mint_aa_prod[16] = "appattest\0\0\0\0\0\0";
static const unsigned char mint_aa_dev[16] = {'a', 'p', 'p', 'a', 't', 't', 'e', 's',
                                              't', 'd', 'e', 'v', 'e', 'l', 'o', 'p'};

typedef struct {
    X509 *ca;                       /* issuer of the credential certificate (intermediate) */
    EVP_PKEY *ca_key;
    EVP_PKEY *key;                  /* the App Attest key (EC P-256) */
    const char *app_id;             /* rpIdHash = SHA-256(app_id) */
    const unsigned char *cdh;       /* client data hash, 32 bytes */
    uint32_t counter;               /* 0 for a genuine attestation */
    const unsigned char *aaguid;    /* 16 bytes; NULL: production */
    time_t not_before, not_after;   /* credential certificate */
    int extra_ext;                  /* an unknown non-critical extension */
    int critical_ext;               /* an unknown critical extension */
    size_t trailing;                /* bytes appended after the credential data */
    int bad_cred_id;                /* credentialId differs from the key id */
    int no_nonce;                   /* no nonce extension */
    size_t receipt_len;             /* a receipt of this many bytes; 0: a short one */
} mint_aa_opts_t;

static EVP_PKEY *mint_aa_key(void)
{
    return EVP_EC_gen("P-256");
}

static void mint_aa_sha256(const void *a, size_t alen, const void *b, size_t blen,
                           unsigned char out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned n = 32;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, a, alen);
    if (blen)
        EVP_DigestUpdate(c, b, blen);
    EVP_DigestFinal_ex(c, out, &n);
    EVP_MD_CTX_free(c);
}

/* The uncompressed point (65 bytes) of an EC P-256 key. */
static int mint_aa_point(EVP_PKEY *k, unsigned char out[65])
{
    size_t n = 0;
    if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, 65, &n) != 1 ||
        n != 65)
        return -1;
    return 0;
}

static void mint_aa_key_id(EVP_PKEY *k, unsigned char id[32])
{
    unsigned char pt[65];
    mint_aa_point(k, pt);
    mint_aa_sha256(pt, 65, NULL, 0, id);
}

static X509 *mint_aa_cert(const char *cn, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key,
                          time_t nb, time_t na, int ca)
{
    X509 *x = X509_new();
    unsigned char ser[16];
    RAND_bytes(ser, sizeof ser);
    ser[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(ser, sizeof ser, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_version(x, 2);
    X509_NAME *nm = X509_NAME_new();
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, nm);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : nm);
    X509_NAME_free(nm);
    ASN1_TIME_set(X509_getm_notBefore(x), nb);
    ASN1_TIME_set(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, pub);
    if (ca) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
        e = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    (void)issuer_key;
    return x;
}

static int mint_aa_sign(X509 *x, EVP_PKEY *k)
{
    return X509_sign(x, k, EVP_sha256()) > 0 ? 0 : -1;
}

/* A root (self-signed) and an intermediate it signs, valid nb..na. */
static int mint_aa_pki(time_t nb, time_t na, X509 **root, EVP_PKEY **root_key, X509 **inter,
                       EVP_PKEY **inter_key)
{
    *root_key = mint_aa_key();
    *inter_key = mint_aa_key();
    if (!*root_key || !*inter_key)
        return -1;
    *root = mint_aa_cert("Test App Attestation Root CA", *root_key, NULL, NULL, nb, na, 1);
    if (mint_aa_sign(*root, *root_key) < 0)
        return -1;
    *inter = mint_aa_cert("Test App Attestation CA 1", *inter_key, *root, *root_key, nb, na, 1);
    return mint_aa_sign(*inter, *root_key);
}

static void mint_aa_add_ext(X509 *x, const char *oid, int critical, const unsigned char *der,
                            size_t len)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(os, der, (int)len);
    X509_EXTENSION *e = X509_EXTENSION_create_by_OBJ(NULL, o, critical, os);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(o);
}

/* authData: rpIdHash, flags AT, counter, aaguid, credentialId, COSE key,
 * trailing bytes. malloc'ed, *len set. */
static unsigned char *mint_aa_authdata(const mint_aa_opts_t *o, size_t *len)
{
    unsigned char pt[65], id[32];
    unsigned char *cose = NULL;
    size_t cose_len = 0;
    mint_aa_point(o->key, pt);
    mint_aa_key_id(o->key, id);
    if (o->bad_cred_id)
        id[0] ^= 1;
    cbor_item_t *m = cbor_new_definite_map(5);
    cbor_map_add(m, (struct cbor_pair){cbor_move(cbor_build_uint8(1)), cbor_move(cbor_build_uint8(2))});
    cbor_map_add(m, (struct cbor_pair){cbor_move(cbor_build_uint8(3)), cbor_move(cbor_build_negint8(6))});
    cbor_map_add(m, (struct cbor_pair){cbor_move(cbor_build_negint8(0)), cbor_move(cbor_build_uint8(1))});
    cbor_map_add(m, (struct cbor_pair){cbor_move(cbor_build_negint8(1)), cbor_move(cbor_build_bytestring(pt + 1, 32))});
    cbor_map_add(m, (struct cbor_pair){cbor_move(cbor_build_negint8(2)), cbor_move(cbor_build_bytestring(pt + 33, 32))});
    size_t cap = 0;
    cose_len = cbor_serialize_alloc(m, &cose, &cap);
    cbor_decref(&m);
    size_t n = 37 + 16 + 2 + 32 + cose_len + o->trailing;
    unsigned char *ad = calloc(1, n);
    mint_aa_sha256(o->app_id, strlen(o->app_id), NULL, 0, ad);
    ad[32] = 0x40 | (o->trailing ? 0x80 : 0);   /* AT; ED when something follows */
    ad[33] = (unsigned char)(o->counter >> 24);
    ad[34] = (unsigned char)(o->counter >> 16);
    ad[35] = (unsigned char)(o->counter >> 8);
    ad[36] = (unsigned char)o->counter;
    memcpy(ad + 37, o->aaguid ? o->aaguid : mint_aa_prod, 16);
    ad[53] = 0;
    ad[54] = 32;
    memcpy(ad + 55, id, 32);
    memcpy(ad + 87, cose, cose_len);
    if (o->trailing) {   /* an extensions map, then filler */
        ad[87 + cose_len] = 0xa0;
        memset(ad + 88 + cose_len, 0, o->trailing - 1);
    }
    free(cose);
    *len = n;
    return ad;
}

/* The credential certificate for authData ad. */
static X509 *mint_aa_cred_cert(const mint_aa_opts_t *o, const unsigned char *ad, size_t adlen)
{
    unsigned char id[32], nonce[32], ext[38] = {0x30, 0x24, 0xa1, 0x22, 0x04, 0x20};
    char cn[65];
    mint_aa_key_id(o->key, id);
    for (int i = 0; i < 32; i++)
        snprintf(cn + 2 * i, 3, "%02x", id[i]);
    X509 *x = mint_aa_cert(cn, o->key, o->ca, o->ca_key, o->not_before, o->not_after, 0);
    mint_aa_sha256(ad, adlen, o->cdh, 32, nonce);
    memcpy(ext + 6, nonce, 32);
    if (o->extra_ext) {
        static const unsigned char v[] = {0x30, 0x03, 0x02, 0x01, 0x07};
        mint_aa_add_ext(x, "1.2.840.113635.100.8.7", 0, v, sizeof v);
    }
    if (!o->no_nonce)
        mint_aa_add_ext(x, MINT_AA_NONCE_OID, 0, ext, sizeof ext);
    if (o->extra_ext) {
        static const unsigned char v[] = {0x04, 0x02, 0x31, 0x37};
        mint_aa_add_ext(x, "1.2.840.113635.100.8.5", 0, v, sizeof v);
    }
    if (o->critical_ext) {
        static const unsigned char v[] = {0x05, 0x00};
        mint_aa_add_ext(x, "1.2.840.113635.100.8.99", 1, v, sizeof v);
    }
    mint_aa_sign(x, o->ca_key);
    return x;
}

static cbor_item_t *mint_aa_der(X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    cbor_item_t *b = cbor_build_bytestring(der, (size_t)n);
    OPENSSL_free(der);
    return b;
}

/* The attestation object (CBOR), malloc'ed, *len set. */
static unsigned char *mint_aa_attestation(const mint_aa_opts_t *o, size_t *len)
{
    size_t adlen;
    unsigned char *ad = mint_aa_authdata(o, &adlen);
    X509 *cred = mint_aa_cred_cert(o, ad, adlen);
    static const unsigned char receipt[] = "test receipt: not an Apple receipt";
    cbor_item_t *x5c = cbor_new_definite_array(2);
    cbor_array_push(x5c, cbor_move(mint_aa_der(cred)));
    cbor_array_push(x5c, cbor_move(mint_aa_der(o->ca)));
    cbor_item_t *stmt = cbor_new_definite_map(2);
    cbor_map_add(stmt, (struct cbor_pair){cbor_move(cbor_build_string("x5c")), cbor_move(x5c)});
    unsigned char *big = o->receipt_len ? calloc(1, o->receipt_len) : NULL;
    cbor_map_add(stmt, (struct cbor_pair){cbor_move(cbor_build_string("receipt")),
                                          cbor_move(big ? cbor_build_bytestring(big, o->receipt_len)
                                                        : cbor_build_bytestring(receipt, sizeof receipt - 1))});
    free(big);
    cbor_item_t *top = cbor_new_definite_map(3);
    cbor_map_add(top, (struct cbor_pair){cbor_move(cbor_build_string("fmt")),
                                         cbor_move(cbor_build_string("apple-appattest"))});
    cbor_map_add(top, (struct cbor_pair){cbor_move(cbor_build_string("attStmt")), cbor_move(stmt)});
    cbor_map_add(top, (struct cbor_pair){cbor_move(cbor_build_string("authData")),
                                         cbor_move(cbor_build_bytestring(ad, adlen))});
    unsigned char *out = NULL;
    size_t cap = 0;
    *len = cbor_serialize_alloc(top, &out, &cap);
    cbor_decref(&top);
    X509_free(cred);
    free(ad);
    return out;
}

/* The same attestation object re-encoded with authData's flags byte changed
 * (a bit no check reads), so only the nonce can tell. malloc'ed. */
static unsigned char *mint_aa_reencode(const unsigned char *obj, size_t len, size_t *outlen)
{
    struct cbor_load_result r;
    cbor_item_t *top = cbor_load(obj, len, &r);
    struct cbor_pair *p = cbor_map_handle(top);
    for (size_t i = 0; i < cbor_map_size(top); i++) {
        if (cbor_string_length(p[i].key) == 8 && !memcmp(cbor_string_handle(p[i].key), "authData", 8)) {
            size_t n = cbor_bytestring_length(p[i].value);
            unsigned char *ad = malloc(n);
            memcpy(ad, cbor_bytestring_handle(p[i].value), n);
            ad[32] ^= 0x04;   /* UV */
            cbor_decref(&p[i].value);
            p[i].value = cbor_build_bytestring(ad, n);
            free(ad);
        }
    }
    unsigned char *out = NULL;
    size_t cap = 0;
    *outlen = cbor_serialize_alloc(top, &out, &cap);
    cbor_decref(&top);
    return out;
}

/* An assertion by key for cdh: authenticatorData (rpIdHash, flags 0,
 * counter) and the ECDSA signature over SHA-256(authenticatorData || cdh).
 * malloc'ed CBOR, *len set. */
static unsigned char *mint_aa_assertion(EVP_PKEY *key, const char *app_id,
                                        const unsigned char cdh[32], uint32_t counter, size_t *len)
{
    unsigned char ad[37], nonce[32], sig[80];
    size_t siglen = sizeof sig;
    mint_aa_sha256(app_id, strlen(app_id), NULL, 0, ad);
    ad[32] = 0;
    ad[33] = (unsigned char)(counter >> 24);
    ad[34] = (unsigned char)(counter >> 16);
    ad[35] = (unsigned char)(counter >> 8);
    ad[36] = (unsigned char)counter;
    mint_aa_sha256(ad, 37, cdh, 32, nonce);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, key);
    EVP_DigestSign(c, sig, &siglen, nonce, 32);
    EVP_MD_CTX_free(c);
    cbor_item_t *top = cbor_new_definite_map(2);
    cbor_map_add(top, (struct cbor_pair){cbor_move(cbor_build_string("signature")),
                                         cbor_move(cbor_build_bytestring(sig, siglen))});
    cbor_map_add(top, (struct cbor_pair){cbor_move(cbor_build_string("authenticatorData")),
                                         cbor_move(cbor_build_bytestring(ad, 37))});
    unsigned char *out = NULL;
    size_t cap = 0;
    *len = cbor_serialize_alloc(top, &out, &cap);
    cbor_decref(&top);
    return out;
}

#endif
