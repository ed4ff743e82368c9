/* mint-jwt: makes signed JWTs (and a matching JWKS) for tests.
 *
 *   mint-jwt --key PEM --alg ES256|RS256|EdDSA [--kid K] [--iss I] [--aud A]
 *            [--sub S] [--exp-in SECONDS] [--nbf-in SECONDS]
 *            [--x5t-s256-of CERT.pem] [--write-jwks FILE]
 *
 * Prints the token on stdout. --exp-in may be negative (an expired token);
 * without it the token expires in 300 s. --x5t-s256-of adds the RFC 8705
 * confirmation claim cnf."x5t#S256" for that certificate. --write-jwks writes
 * the public key (with the kid, "use": "sig" and "alg") as a JWKS file.
 * Exits 0 on success, 2 on a usage or key error.
 *
 * Built with -DMINT_JWT_NO_MAIN, this file is a set of static helpers that
 * test/unit/test_jwt.c includes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* base64url without padding; malloc'd. */
static char *mj_b64url(const unsigned char *d, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    int len = EVP_EncodeBlock((unsigned char *)out, d, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return out;
}

/* Signature of msg in JWS form for key (EC: raw r||s; RSA: PKCS#1 v1.5
 * SHA-256; Ed25519: pure EdDSA). Returns the length or -1. */
static int mj_sign(EVP_PKEY *key, const char *msg, size_t mlen, unsigned char *sig, size_t cap)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int type = EVP_PKEY_get_base_id(key), rc = -1;
    unsigned char der[600];
    size_t dl = sizeof der;
    const EVP_MD *md = type == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
    if (!c || EVP_DigestSignInit(c, NULL, md, NULL, key) != 1 ||
        EVP_DigestSign(c, der, &dl, (const unsigned char *)msg, mlen) != 1)
        goto out;
    if (type == EVP_PKEY_EC) {
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
        if (!es || cap < 64) {
            ECDSA_SIG_free(es);
            goto out;
        }
        BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
        ECDSA_SIG_free(es);
        rc = 64;
    } else if (dl <= cap) {
        memcpy(sig, der, dl);
        rc = (int)dl;
    }
out:
    EVP_MD_CTX_free(c);
    return rc;
}

/* header_json.payload_json signed with key; malloc'd, NULL on error. */
static char *mj_token_raw(EVP_PKEY *key, const char *header_json, const char *payload_json)
{
    char *h = mj_b64url((const unsigned char *)header_json, strlen(header_json));
    char *p = mj_b64url((const unsigned char *)payload_json, strlen(payload_json));
    char *out = NULL, *s = NULL;
    unsigned char sig[600];
    int sl;
    size_t n = (h ? strlen(h) : 0) + (p ? strlen(p) : 0) + 2;
    char *msg = malloc(n);
    if (!h || !p || !msg)
        goto done;
    snprintf(msg, n, "%s.%s", h, p);
    if ((sl = mj_sign(key, msg, strlen(msg), sig, sizeof sig)) < 0 ||
        !(s = mj_b64url(sig, (size_t)sl)))
        goto done;
    n = strlen(msg) + strlen(s) + 2;
    if ((out = malloc(n)))
        snprintf(out, n, "%s.%s", msg, s);
done:
    free(h);
    free(p);
    free(msg);
    free(s);
    return out;
}

/* {"alg": alg, "typ": "JWT", "kid": kid} and the payload object, signed. */
static char *mj_token(EVP_PKEY *key, const char *alg, const char *kid, json_t *payload)
{
    json_t *hdr = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
    if (kid)
        json_object_set_new(hdr, "kid", json_string(kid));
    char *hs = json_dumps(hdr, JSON_COMPACT), *ps = json_dumps(payload, JSON_COMPACT);
    char *t = hs && ps ? mj_token_raw(key, hs, ps) : NULL;
    free(hs);
    free(ps);
    json_decref(hdr);
    return t;
}

static json_t *mj_b64_bn(EVP_PKEY *k, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    json_t *j = NULL;
    if (EVP_PKEY_get_bn_param(k, name, &bn) == 1) {
        int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
        char *s = n > 0 ? mj_b64url(buf, (size_t)n) : NULL;
        if (s)
            j = json_string(s);
        free(s);
    }
    BN_free(bn);
    return j;
}

/* The public JWK of key (with kid, "use": "sig" and "alg"), or NULL. */
static json_t *mj_jwk(EVP_PKEY *key, const char *kid)
{
    json_t *j = json_object();
    int type = EVP_PKEY_get_base_id(key);
    if (type == EVP_PKEY_EC) {
        json_object_set_new(j, "kty", json_string("EC"));
        json_object_set_new(j, "crv", json_string("P-256"));
        json_object_set_new(j, "x", mj_b64_bn(key, OSSL_PKEY_PARAM_EC_PUB_X, 32));
        json_object_set_new(j, "y", mj_b64_bn(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32));
        json_object_set_new(j, "alg", json_string("ES256"));
    } else if (type == EVP_PKEY_RSA) {
        json_object_set_new(j, "kty", json_string("RSA"));
        json_object_set_new(j, "n", mj_b64_bn(key, OSSL_PKEY_PARAM_RSA_N, 0));
        json_object_set_new(j, "e", mj_b64_bn(key, OSSL_PKEY_PARAM_RSA_E, 0));
        json_object_set_new(j, "alg", json_string("RS256"));
    } else if (type == EVP_PKEY_ED25519) {
        unsigned char x[32];
        size_t xl = sizeof x;
        char *s = EVP_PKEY_get_raw_public_key(key, x, &xl) == 1 ? mj_b64url(x, xl) : NULL;
        json_object_set_new(j, "kty", json_string("OKP"));
        json_object_set_new(j, "crv", json_string("Ed25519"));
        json_object_set_new(j, "x", s ? json_string(s) : json_null());
        json_object_set_new(j, "alg", json_string("EdDSA"));
        free(s);
    } else {
        json_decref(j);
        return NULL;
    }
    json_object_set_new(j, "use", json_string("sig"));
    if (kid)
        json_object_set_new(j, "kid", json_string(kid));
    return j;
}

/* base64url(SHA-256(DER)) of the first certificate in a PEM file; malloc'd. */
__attribute__((unused)) static char *mj_x5t_s256(const char *pem)
{
    FILE *f = fopen(pem, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    unsigned char md[32];
    unsigned int n = 0;
    char *out = NULL;
    if (f)
        fclose(f);
    if (x && X509_digest(x, EVP_sha256(), md, &n) == 1 && n == 32)
        out = mj_b64url(md, 32);
    X509_free(x);
    return out;
}

#ifndef MINT_JWT_NO_MAIN

static int usage(void)
{
    fprintf(stderr, "usage: mint-jwt --key PEM --alg ES256|RS256|EdDSA [--kid K] [--iss I] "
                    "[--aud A] [--sub S] [--exp-in SECONDS] [--nbf-in SECONDS] "
                    "[--x5t-s256-of CERT.pem] [--write-jwks FILE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *keyf = NULL, *alg = NULL, *kid = NULL, *iss = NULL, *aud = NULL, *sub = NULL;
    const char *cert = NULL, *jwks = NULL, *exp_in = "300", *nbf_in = NULL;
    for (int i = 1; i < argc; i++) {
        const char **dst = NULL;
        if (!strcmp(argv[i], "--key"))
            dst = &keyf;
        else if (!strcmp(argv[i], "--alg"))
            dst = &alg;
        else if (!strcmp(argv[i], "--kid"))
            dst = &kid;
        else if (!strcmp(argv[i], "--iss"))
            dst = &iss;
        else if (!strcmp(argv[i], "--aud"))
            dst = &aud;
        else if (!strcmp(argv[i], "--sub"))
            dst = &sub;
        else if (!strcmp(argv[i], "--exp-in"))
            dst = &exp_in;
        else if (!strcmp(argv[i], "--nbf-in"))
            dst = &nbf_in;
        else if (!strcmp(argv[i], "--x5t-s256-of"))
            dst = &cert;
        else if (!strcmp(argv[i], "--write-jwks"))
            dst = &jwks;
        if (!dst || i + 1 >= argc)
            return usage();
        *dst = argv[++i];
    }
    if (!keyf || !alg)
        return usage();
    FILE *f = fopen(keyf, "r");
    EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!key) {
        fprintf(stderr, "mint-jwt: cannot read a private key from %s\n", keyf);
        return 2;
    }
    int type = EVP_PKEY_get_base_id(key);
    if (!((!strcmp(alg, "ES256") && type == EVP_PKEY_EC) ||
          (!strcmp(alg, "RS256") && type == EVP_PKEY_RSA) ||
          (!strcmp(alg, "EdDSA") && type == EVP_PKEY_ED25519))) {
        fprintf(stderr, "mint-jwt: --alg %s does not match the key type\n", alg);
        EVP_PKEY_free(key);
        return 2;
    }
    long long now = (long long)time(NULL);
    json_t *pl = json_pack("{s:I}", "exp", (json_int_t)(now + strtoll(exp_in, NULL, 10)));
    json_object_set_new(pl, "iat", json_integer((json_int_t)now));
    if (nbf_in)
        json_object_set_new(pl, "nbf", json_integer((json_int_t)(now + strtoll(nbf_in, NULL, 10))));
    if (iss)
        json_object_set_new(pl, "iss", json_string(iss));
    if (aud)
        json_object_set_new(pl, "aud", json_string(aud));
    if (sub)
        json_object_set_new(pl, "sub", json_string(sub));
    int rc = 0;
    if (cert) {
        char *x5t = mj_x5t_s256(cert);
        if (!x5t) {
            fprintf(stderr, "mint-jwt: cannot read a certificate from %s\n", cert);
            rc = 2;
        } else {
            json_object_set_new(pl, "cnf", json_pack("{s:s}", "x5t#S256", x5t));
        }
        free(x5t);
    }
    if (rc == 0 && jwks) {
        json_t *set = json_pack("{s:[o]}", "keys", mj_jwk(key, kid));
        if (!set || json_dump_file(set, jwks, JSON_INDENT(2)) != 0) {
            fprintf(stderr, "mint-jwt: cannot write %s\n", jwks);
            rc = 2;
        }
        json_decref(set);
    }
    char *tok = rc == 0 ? mj_token(key, alg, kid, pl) : NULL;
    if (rc == 0 && !tok) {
        fprintf(stderr, "mint-jwt: signing failed\n");
        rc = 2;
    }
    if (tok)
        printf("%s\n", tok);
    free(tok);
    json_decref(pl);
    EVP_PKEY_free(key);
    return rc;
}

#endif
