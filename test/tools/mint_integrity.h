/* Test helper: mints Play-Integrity-shaped tokens (JWE A256KW/A256GCM around
 * a JWS ES256) and writes test keys. Header-only (static functions) so that
 * test/tools/mint-integrity.c and test/unit/test_issuance.c share it without
 * linking the gateway: it implements its own encoding, independently of the
 * verifier in issuance/attest_play.c.
 */
#ifndef PORTCULLIS_TEST_MINT_INTEGRITY_H
#define PORTCULLIS_TEST_MINT_INTEGRITY_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

typedef struct {
    const unsigned char *kek;     /* 32-byte AES key (Play's "decryption key") */
    EVP_PKEY *signer;             /* EC P-256 private key (Play's signing key) */
    const char *nonce;            /* requestDetails.nonce */
    const char *package;          /* appIntegrity.packageName */
    const char *request_package;  /* requestDetails.requestPackageName; NULL: package */
    const char *cert_digest;      /* base64url SHA-256; NULL: none */
    const char *app_verdict;      /* "PLAY_RECOGNIZED" */
    const char *device_verdicts;  /* comma separated; "" for an empty list */
    int64_t timestamp_ms;
    const char *jwe_alg, *jwe_enc, *jws_alg;   /* header values; NULL: the real ones */
} mint_opts_t;

static void mint_b64url(const unsigned char *in, size_t len, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        out[o++] = t[in[i] >> 2];
        out[o++] = t[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        out[o++] = t[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
        out[o++] = t[in[i + 2] & 63];
    }
    if (len - i == 1) {
        out[o++] = t[in[i] >> 2];
        out[o++] = t[(in[i] & 3) << 4];
    } else if (len - i == 2) {
        out[o++] = t[in[i] >> 2];
        out[o++] = t[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        out[o++] = t[(in[i + 1] & 15) << 2];
    }
    out[o] = '\0';
}

static char *mint_b64url_dup(const unsigned char *in, size_t len)
{
    char *out = malloc(len / 3 * 4 + 8);
    if (out)
        mint_b64url(in, len, out);
    return out;
}

static char *mint_json_b64(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    char *r = s ? mint_b64url_dup((const unsigned char *)s, strlen(s)) : NULL;
    free(s);
    json_decref(o);
    return r;
}

/* ES256 signature as raw r||s. Boolean. */
static int mint_es256(EVP_PKEY *k, const char *data, unsigned char out[64])
{
    unsigned char der[128];
    size_t dl = sizeof der;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestSign(md, der, &dl, (const unsigned char *)data, strlen(data)) == 1;
    EVP_MD_CTX_free(md);
    const unsigned char *p = der;
    ECDSA_SIG *sig = ok ? d2i_ECDSA_SIG(NULL, &p, (long)dl) : NULL;
    ok = sig && BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32) == 32 &&
         BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok;
}

static json_t *mint_payload(const mint_opts_t *o)
{
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)o->timestamp_ms);
    json_t *dig = json_array(), *dv = json_array();
    if (o->cert_digest)
        json_array_append_new(dig, json_string(o->cert_digest));
    if (o->device_verdicts && *o->device_verdicts) {
        char *copy = strdup(o->device_verdicts), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(dv, json_string(t));
        free(copy);
    }
    return json_pack("{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:o, s:s}, s:{s:o}, s:{s:s}}",
                     "requestDetails", "requestPackageName",
                     o->request_package ? o->request_package : o->package, "timestampMillis",
                     ts, "nonce", o->nonce, "appIntegrity", "appRecognitionVerdict",
                     o->app_verdict, "packageName", o->package, "certificateSha256Digest",
                     dig, "versionCode", "42", "deviceIntegrity", "deviceRecognitionVerdict",
                     dv, "accountDetails", "appLicensingVerdict", "LICENSED");
}

/* The token, malloc'ed; NULL on error. */
static char *mint_token(const mint_opts_t *o)
{
    char *jh = NULL, *jp = NULL, *signing = NULL, *jws = NULL, *eh = NULL, *out = NULL;
    unsigned char sig[64], cek[32], iv[12], tag[16], wrapped[48];
    char sig64[100];
    unsigned char *ct = NULL;
    int n = 0, f = 0, wl = 0;
    EVP_CIPHER_CTX *c = NULL;

    jh = mint_json_b64(json_pack("{s:s, s:s}", "alg", o->jws_alg ? o->jws_alg : "ES256",
                                 "typ", "JWT"));
    jp = mint_json_b64(mint_payload(o));
    if (!jh || !jp)
        goto out;
    size_t sl = strlen(jh) + strlen(jp) + 2;
    if (!(signing = malloc(sl)))
        goto out;
    snprintf(signing, sl, "%s.%s", jh, jp);
    if (!mint_es256(o->signer, signing, sig))
        goto out;
    mint_b64url(sig, 64, sig64);
    size_t jl = sl + strlen(sig64) + 1;
    if (!(jws = malloc(jl)))
        goto out;
    snprintf(jws, jl, "%s.%s", signing, sig64);

    eh = mint_json_b64(json_pack("{s:s, s:s}", "alg", o->jwe_alg ? o->jwe_alg : "A256KW",
                                 "enc", o->jwe_enc ? o->jwe_enc : "A256GCM"));
    if (!eh || RAND_bytes(cek, 32) != 1 || RAND_bytes(iv, 12) != 1)
        goto out;
    /* wrap the content key */
    if (!(c = EVP_CIPHER_CTX_new()))
        goto out;
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL, o->kek, NULL) != 1 ||
        EVP_EncryptUpdate(c, wrapped, &wl, cek, 32) != 1 ||
        EVP_EncryptFinal_ex(c, wrapped + wl, &f) != 1 || wl + f != 40)
        goto out;
    EVP_CIPHER_CTX_free(c);
    /* encrypt the JWS */
    size_t ptl = strlen(jws);
    if (!(ct = malloc(ptl + 16)) || !(c = EVP_CIPHER_CTX_new()) ||
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, cek, iv) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)eh, (int)strlen(eh)) != 1 ||
        EVP_EncryptUpdate(c, ct, &n, (const unsigned char *)jws, (int)ptl) != 1 ||
        EVP_EncryptFinal_ex(c, ct + n, &f) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        goto out;
    size_t total = strlen(eh) + 100 + (ptl / 3 + 2) * 4 + 40;
    if (!(out = malloc(total)))
        goto out;
    char ekb[80], ivb[24], tagb[32];
    char *ctb = mint_b64url_dup(ct, (size_t)n + (size_t)f);
    mint_b64url(wrapped, 40, ekb);
    mint_b64url(iv, 12, ivb);
    mint_b64url(tag, 16, tagb);
    if (!ctb) {
        free(out);
        out = NULL;
        goto out;
    }
    snprintf(out, total, "%s.%s.%s.%s.%s", eh, ekb, ivb, ctb, tagb);
    free(ctb);
out:
    EVP_CIPHER_CTX_free(c);
    free(jh);
    free(jp);
    free(signing);
    free(jws);
    free(eh);
    free(ct);
    return out;
}

/* Standard base64 of data, one line, NUL-terminated, malloc'ed. */
static char *mint_b64std(const unsigned char *data, size_t len)
{
    char *out = malloc(len / 3 * 4 + 8);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* Creates dir/name for writing with mode (0600 for secrets), never
 * replacing an existing file (O_EXCL) and never wider than mode whatever the
 * umask. NULL with errno set on error. */
static FILE *mint_create(const char *dir, const char *name, mode_t mode)
{
    char path[1024];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "wb");
    if (!f)
        close(fd);
    return f;
}

static int mint_write(const char *dir, const char *name, const char *text, mode_t mode)
{
    FILE *f = mint_create(dir, name, mode);
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Writes decryption.key (base64 AES-256) and signing.pem (EC P-256 private
 * key), both 0600, and verification.key (base64 DER public key, 0644) into
 * dir; none of them may exist yet. Syscall-like (errno set on error). */
static int mint_gen_keys(const char *dir)
{
    unsigned char kek[32];
    unsigned char *der = NULL;
    char *b = NULL;
    int rc = -1, dl;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    FILE *f = NULL;
    if (!k || RAND_bytes(kek, sizeof kek) != 1)
        goto out;
    if (!(b = mint_b64std(kek, sizeof kek)))
        goto out;
    size_t bl = strlen(b);
    b[bl] = '\n';
    b[bl + 1] = '\0';
    if (mint_write(dir, "decryption.key", b, 0600) < 0)
        goto out;
    free(b);
    b = NULL;
    if (!(f = mint_create(dir, "signing.pem", 0600)) ||
        PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1)
        goto out;
    if ((dl = i2d_PUBKEY(k, &der)) <= 0 || !(b = mint_b64std(der, (size_t)dl)))
        goto out;
    bl = strlen(b);
    b[bl] = '\n';
    b[bl + 1] = '\0';
    if (mint_write(dir, "verification.key", b, 0644) < 0)
        goto out;
    rc = 0;
out:
    if (f && fclose(f) != 0)
        rc = -1;
    OPENSSL_free(der);
    free(b);
    EVP_PKEY_free(k);
    return rc;
}

#endif
