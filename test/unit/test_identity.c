/* Unit tests: identity extraction from a verified leaf certificate. */
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "../../tls/tls.h"
#include "check.h"

static X509 *make_cert(EVP_PKEY *key, const char *serial_hex, const char *cn, const char *san)
{
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, serial_hex);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_version(x, 2);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Example, Org", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_NAME *in = X509_get_issuer_name(x);
    X509_NAME_add_entry_by_txt(in, "CN", MBSTRING_ASC, (const unsigned char *)"Device CA", -1, -1, 0);
    ASN1_TIME_set_string(X509_getm_notBefore(x), "20260101000000Z");
    ASN1_TIME_set_string(X509_getm_notAfter(x), "20261201123456Z");
    X509_set_pubkey(x, key);
    if (san) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, key, EVP_sha256());
    return x;
}

int main(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    cfg_identity_t icfg;
    memset(&icfg, 0, sizeof(icfg));
    icfg.device_id_source = CFG_DEVID_SAN_URI;
    icfg.device_id_prefix = "urn:portcullis:device:";

    X509 *x = make_cert(key, "00ABCDEF0123", "device-1234",
                        "URI:https://example.com/a%2Cb,URI:urn:portcullis:device:device-1234,"
                        "DNS:device-1234.example,DNS:alt.example");
    tls_identity_t *id = tls_identity_from_cert(x, 0, "device", &icfg);
    CHECK(id != NULL, "extracted");
    CHECK(strcmp(id->serial, "abcdef0123") == 0, "serial lowercase hex, no leading zeros");
    unsigned char md[32];
    unsigned int mdlen;
    X509_digest(x, EVP_sha256(), md, &mdlen);
    char fp[65];
    for (int i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", md[i]);
    CHECK(strcmp(id->fingerprint, fp) == 0, "fingerprint is SHA-256 of the DER");
    unsigned char b64[48];
    EVP_EncodeBlock(b64, md, 32);
    for (int i = 0; i < 43; i++)
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    b64[43] = 0;
    CHECK(strlen(id->x5t_s256) == 43 && strcmp(id->x5t_s256, (char *)b64) == 0,
          "x5t#S256 is the base64url digest without padding");
    CHECK(strcmp(id->subject, "CN=device-1234,O=Example\\, Org") == 0, "subject in RFC 4514 order and escaping");
    CHECK(strcmp(id->issuer, "CN=Device CA") == 0, "issuer");
    CHECK(strcmp(id->san_uri, "https://example.com/a%252Cb,urn:portcullis:device:device-1234") == 0,
          "SAN URIs comma-joined, separator and percent escaped");
    CHECK(strcmp(id->san_dns, "device-1234.example,alt.example") == 0, "SAN DNS names");
    CHECK(id->device_id && strcmp(id->device_id, "device-1234") == 0, "device id from SAN URI prefix");
    CHECK(strcmp(id->not_after, "2026-12-01T12:34:56Z") == 0, "notAfter RFC 3339");
    CHECK(id->not_after_t == 1796128496, "notAfter as time_t");
    CHECK(strcmp(id->class_name, "device") == 0 && id->class_idx == 0, "class kept");
    tls_identity_release(id);
    X509_free(x);

    /* hostile values never produce a control character in a header value */
    x = make_cert(key, "1", "evil\r\nX-Device-Id: admin", "URI:urn:portcullis:device:a b\r\nX: y");
    id = tls_identity_from_cert(x, 1, "bootstrap", &icfg);
    CHECK(id != NULL, "hostile cert extracted");
    CHECK(!strpbrk(id->subject, "\r\n") && !strpbrk(id->san_uri, "\r\n "), "no CR/LF/space in values");
    CHECK(id->device_id == NULL, "device id with forbidden characters refused");
    CHECK(strcmp(id->serial, "1") == 0, "small serial");
    tls_identity_release(id);

    icfg.device_id_source = CFG_DEVID_CN;
    id = tls_identity_from_cert(x, 1, "bootstrap", &icfg);
    CHECK(id && id->device_id == NULL, "CN source: invalid CN gives no device id");
    tls_identity_release(id);
    X509_free(x);

    x = make_cert(key, "2", "phone-42", NULL);
    id = tls_identity_from_cert(x, 0, "device", &icfg);
    CHECK(id && id->device_id && strcmp(id->device_id, "phone-42") == 0, "CN source: device id from CN");
    CHECK(id && id->san_uri[0] == '\0' && id->san_dns[0] == '\0', "no SAN: empty lists");
    tls_identity_release(id);
    X509_free(x);

    /* a serial is carried whole or not at all: 20 octets fit, 21 do not,
     * and a negative one would read as its magnitude */
    x = make_cert(key, "8000000000000000000000000000000000000001", "s20", NULL);
    id = tls_identity_from_cert(x, 0, "device", &icfg);
    CHECK(id && strcmp(id->serial, "8000000000000000000000000000000000000001") == 0,
          "20-octet serial kept whole");
    tls_identity_release(id);
    X509_free(x);
    x = make_cert(key, "010000000000000000000000000000000000000001", "s21", NULL);
    CHECK(tls_identity_from_cert(x, 0, "device", &icfg) == NULL, "21-octet serial: no identity");
    X509_free(x);
    x = make_cert(key, "-5", "neg", NULL);
    CHECK(tls_identity_from_cert(x, 0, "device", &icfg) == NULL, "negative serial: no identity");
    X509_free(x);

    /* the effective notAfter is the earliest of the verified chain: an
     * intermediate that expires first ends the leaf's live and resumed
     * connections; the header keeps the leaf's own; CA certificates are
     * revocation keys by fingerprint only (one key each) */
    {
        X509 *leaf = make_cert(key, "1000", "phone-43", NULL);
        X509 *inter = make_cert(key, "1000", "Intermediate", NULL);
        X509 *root = make_cert(key, "1", "Root", NULL);
        ASN1_TIME_set_string(X509_getm_notAfter(inter), "20260601000000Z");
        STACK_OF(X509) *chain = sk_X509_new_null();
        sk_X509_push(chain, leaf);
        sk_X509_push(chain, inter);
        sk_X509_push(chain, root);
        id = tls_identity_from_cert(leaf, 0, "device", &icfg);
        CHECK(id && tls_identity_set_chain(id, chain) == 0, "chain set");
        CHECK(id && id->not_after_t == 1780272000, "effective notAfter: the intermediate's");
        CHECK(id && id->leaf_not_after_t == 1796128496 &&
              strcmp(id->not_after, "2026-12-01T12:34:56Z") == 0, "leaf notAfter kept");
        CHECK(id && id->nrev_chain == 2, "one revocation key per CA certificate");
        pol_rev_key_t k = pol_rev_key("device:1000", 11);
        int named = 0;
        for (size_t i = 0; id && i < id->nrev_chain; i++)
            named |= id->rev_chain[i].h[0] == k.h[0] && id->rev_chain[i].h[1] == k.h[1];
        CHECK(!named, "the intermediate is not named by <class>:<serial>");
        CHECK(tls_chain_not_after(chain, 1700000000) == 1700000000, "leaf earliest");
        ASN1_TIME_set_string(X509_getm_notAfter(root), "20260301000000Z");
        CHECK(tls_chain_not_after(chain, 1796128496) == 1772323200, "root earliest");
        sk_X509_pop(chain);
        CHECK(tls_chain_not_after(chain, 1796128496) == 1780272000, "without the root");
        sk_X509_pop(chain);
        CHECK(tls_chain_not_after(chain, 1796128496) == 1796128496, "leaf alone");
        tls_identity_release(id);
        sk_X509_free(chain);
        X509_free(leaf);
        X509_free(inter);
        X509_free(root);
    }

    EVP_PKEY_free(key);
    return check_done();
}
