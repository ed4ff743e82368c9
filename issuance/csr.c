/* csr.c: certificate requests: exactly one PEM block, proof of possession
 * and the key policy; the key-binding challenge of the request's key.
 * Contracts: issuance.h (iss_csr_check, iss_spki_sha256, iss_bind_challenge). */
#include "issuance.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

int iss_spki_sha256(EVP_PKEY *key, unsigned char spki_sha256[32])
{
    unsigned char *der = NULL;
    int n = key ? i2d_PUBKEY(key, &der) : -1;
    if (n <= 0)
        return -1;
    SHA256(der, (size_t)n, spki_sha256);
    OPENSSL_free(der);
    return 0;
}

int iss_bind_challenge(const char *nonce, EVP_PKEY *key, unsigned char challenge[32],
                       unsigned char spki_sha256[32])
{
    unsigned char buf[ISS_MAX_NONCE + SHA256_DIGEST_LENGTH];
    size_t nl = nonce ? strlen(nonce) : 0;
    if (!key || nl == 0 || nl > ISS_MAX_NONCE || iss_spki_sha256(key, spki_sha256) < 0)
        return -1;
    memcpy(buf, nonce, nl);
    memcpy(buf + nl, spki_sha256, SHA256_DIGEST_LENGTH);
    SHA256(buf, nl + SHA256_DIGEST_LENGTH, challenge);
    return 0;
}

int iss_csr_check(const char *pem, size_t len, const cfg_issuance_t *cfg, EVP_PKEY **pub,
                  const char **err)
{
    *pub = NULL;
    if (!pem || len == 0 || len > ISS_MAX_CSR || len > INT32_MAX) {
        *err = "CSR missing or too long";
        return -1;
    }
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    X509_REQ *req = NULL;
    int rc = -1;
    if (!b) {
        *err = "out of memory";
        return -1;
    }
    if (!PEM_read_bio(b, &name, &header, &data, &dlen)) {
        *err = "CSR is not PEM";
        goto out;
    }
    if (strcmp(name, "CERTIFICATE REQUEST") != 0 && strcmp(name, "NEW CERTIFICATE REQUEST") != 0) {
        *err = "PEM block is not a CERTIFICATE REQUEST";
        goto out;
    }
    if (header && *header) {
        *err = "CSR PEM must not carry headers";
        goto out;
    }
    {
        char *n2 = NULL, *h2 = NULL;
        unsigned char *d2 = NULL;
        long l2;
        int more = PEM_read_bio(b, &n2, &h2, &d2, &l2);
        OPENSSL_free(n2);
        OPENSSL_free(h2);
        OPENSSL_free(d2);
        if (more) {
            *err = "more than one PEM block; send exactly one CSR";
            goto out;
        }
    }
    const unsigned char *p = data;
    req = d2i_X509_REQ(NULL, &p, dlen);
    if (!req || p != data + dlen) {
        *err = "CSR is not a valid PKCS#10 request";
        goto out;
    }
    EVP_PKEY *k = X509_REQ_get0_pubkey(req);
    if (!k) {
        *err = "CSR public key cannot be decoded";
        goto out;
    }
    int type = EVP_PKEY_get_base_id(k);
    if (type == EVP_PKEY_EC) {
        char group[64] = "";
        size_t gl;
        if (!cfg->key_ec_p256) {
            *err = "key type not allowed: EC keys are disabled";
            goto out;
        }
        if (!EVP_PKEY_get_group_name(k, group, sizeof group, &gl) ||
            strcmp(group, "prime256v1") != 0) {
            *err = "key type not allowed: the only EC curve accepted is P-256";
            goto out;
        }
    } else if (type == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(k);
        if (!cfg->key_rsa) {
            *err = "key type not allowed: RSA keys are disabled (use EC P-256)";
            goto out;
        }
        if (bits < (int)cfg->rsa_min_bits) {
            *err = "RSA key too short";
            goto out;
        }
        if (bits > 16384) {
            *err = "RSA key too long";
            goto out;
        }
    } else {
        *err = cfg->key_ec_p256 ? "key type not allowed (use EC P-256)"
                                : "key type not allowed (use RSA)";
        goto out;
    }
    int mdnid = NID_undef, pknid = NID_undef;
    if (!OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &mdnid, &pknid) ||
        (mdnid != NID_sha256 && mdnid != NID_sha384 && mdnid != NID_sha512)) {
        *err = "CSR signature algorithm not allowed (use SHA-256 or stronger)";
        goto out;
    }
    if (X509_REQ_verify(req, k) != 1) {
        *err = "CSR signature does not verify (proof of possession failed)";
        goto out;
    }
    if (!EVP_PKEY_up_ref(k)) {
        *err = "out of memory";
        goto out;
    }
    *pub = k;
    rc = 0;
out:
    X509_REQ_free(req);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(b);
    ERR_clear_error();
    return rc;
}
