/* attest_play.c: Google Play Integrity verdicts, verified locally with the
 * keys from Play Console (no call to Google). Contracts: issuance.h; the provider play_integrity
 * of attester.h (iss_attest_play).
 *
 * A token is a JWE compact serialization (RFC 7516): protected header,
 * encrypted key, IV, ciphertext, tag. The content key is wrapped with
 * AES-256 key wrap (RFC 3394, "A256KW") under the decryption key and the
 * content is AES-256-GCM ("A256GCM") with the protected header's base64url
 * text as additional data. The plaintext is a JWS compact serialization
 * (RFC 7515) signed ES256 (ECDSA P-256 / SHA-256, raw r||s) whose payload is
 * the verdict JSON. Every other algorithm is refused before any key is used.
 */
#include "issuance.h"
#include "attester.h"
#include "../base/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>

struct iss_play_keys {
    unsigned char kek[32];
    EVP_PKEY *verify;
};

static const char *const verdict_names[] = {"MEETS_BASIC_INTEGRITY", "MEETS_DEVICE_INTEGRITY",
                                            "MEETS_STRONG_INTEGRITY", "MEETS_VIRTUAL_INTEGRITY"};
static const char *const missing_verdict[] = {
    "device integrity verdict missing MEETS_BASIC_INTEGRITY",
    "device integrity verdict missing MEETS_DEVICE_INTEGRITY",
    "device integrity verdict missing MEETS_STRONG_INTEGRITY",
    "device integrity verdict missing MEETS_VIRTUAL_INTEGRITY"};

#define CLOCK_SKEW_MS 60000

/* ---------------------------------------------------------------- keys */

/* Standard base64 with whitespace ignored; decoded length or -1. */
static long b64_std(const char *s, size_t len, unsigned char *out, size_t cap)
{
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int a = 0, b = 0;
    if (!ctx || len > INT32_MAX || cap < len * 3 / 4 + 3) {
        EVP_ENCODE_CTX_free(ctx);
        return -1;
    }
    EVP_DecodeInit(ctx);
    int ok = EVP_DecodeUpdate(ctx, out, &a, (const unsigned char *)s, (int)len) >= 0 &&
             EVP_DecodeFinal(ctx, out + a, &b) == 1;
    EVP_ENCODE_CTX_free(ctx);
    return ok ? (long)(a + b) : -1;
}

void iss_play_keys_free(iss_play_keys_t *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->kek, sizeof k->kek);
    EVP_PKEY_free(k->verify);
    free(k);
}

iss_play_keys_t *iss_play_keys_load(const cfg_play_integrity_t *cfg, char *err, size_t errlen)
{
    iss_play_keys_t *k = calloc(1, sizeof *k);
    size_t len;
    char *text = NULL;
    unsigned char buf[4096];
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!cfg || !cfg->decryption_key_file || !cfg->verification_key_file) {
        snprintf(err, errlen, "play_integrity: key files not configured");
        goto fail;
    }
    char why[512];
    if (!(text = cfg_read_file(cfg->decryption_key_file, CFG_MAX_KEY_FILE, &len, why, sizeof why))) {
        snprintf(err, errlen, "play_integrity.decryption_key_file: %s", why);
        goto fail;
    }
    if (b64_std(text, len, buf, sizeof buf) != 32) {
        snprintf(err, errlen, "play_integrity: \"%s\" does not hold a base64 AES-256 key",
                 cfg->decryption_key_file);
        goto fail;
    }
    memcpy(k->kek, buf, 32);
    OPENSSL_cleanse(buf, sizeof buf);
    OPENSSL_cleanse(text, len);
    free(text);
    if (!(text = cfg_read_file(cfg->verification_key_file, CFG_MAX_KEY_FILE, &len, why, sizeof why))) {
        snprintf(err, errlen, "play_integrity.verification_key_file: %s", why);
        goto fail;
    }
    if (strstr(text, "-----BEGIN PUBLIC KEY-----")) {
        BIO *b = BIO_new_mem_buf(text, (int)len);
        k->verify = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    } else {
        long n = b64_std(text, len, buf, sizeof buf);
        const unsigned char *p = buf;
        if (n > 0 && (k->verify = d2i_PUBKEY(NULL, &p, n)) && p != buf + n) {
            EVP_PKEY_free(k->verify);
            k->verify = NULL;
        }
    }
    char group[64] = "";
    size_t gl;
    if (!k->verify || EVP_PKEY_get_base_id(k->verify) != EVP_PKEY_EC ||
        !EVP_PKEY_get_group_name(k->verify, group, sizeof group, &gl) ||
        strcmp(group, "prime256v1") != 0) {
        snprintf(err, errlen, "play_integrity: \"%s\" does not hold an EC P-256 public key",
                 cfg->verification_key_file);
        goto fail;
    }
    free(text);
    ERR_clear_error();
    return k;
fail:
    if (text)
        OPENSSL_cleanse(text, len);
    free(text);
    OPENSSL_cleanse(buf, sizeof buf);
    ERR_clear_error();
    iss_play_keys_free(k);
    return NULL;
}

/* ---------------------------------------------------------------- crypto */

/* RFC 3394 unwrap of a 40-byte wrapped key into 32 bytes. Syscall-like. */
static int unwrap_cek(const unsigned char kek[32], const unsigned char *in, size_t inlen,
                      unsigned char cek[32])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int a = 0, b = 0, ok;
    unsigned char out[48];
    if (!ctx || inlen != 40)
        ok = 0;
    else {
        EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_wrap(), NULL, kek, NULL) == 1 &&
             EVP_DecryptUpdate(ctx, out, &a, in, (int)inlen) == 1 &&
             EVP_DecryptFinal_ex(ctx, out + a, &b) == 1 && a + b == 32;
    }
    if (ok)
        memcpy(cek, out, 32);
    OPENSSL_cleanse(out, sizeof out);
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* AES-256-GCM decryption with a 12-byte IV and 16-byte tag; the plaintext
 * has the ciphertext's length. Syscall-like (-1 also on tag mismatch). */
static int gcm_decrypt(const unsigned char cek[32], const unsigned char *iv,
                       const unsigned char *aad, size_t aadlen, const unsigned char *ct,
                       size_t ctlen, const unsigned char *tag, unsigned char *pt)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, f = 0;
    int ok = ctx && aadlen <= INT32_MAX && ctlen <= INT32_MAX &&
             EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 &&
             EVP_DecryptInit_ex(ctx, NULL, NULL, cek, iv) == 1 &&
             EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) == 1 &&
             (ctlen == 0 || EVP_DecryptUpdate(ctx, pt, &n, ct, (int)ctlen) == 1) &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1 &&
             EVP_DecryptFinal_ex(ctx, pt + (ctlen ? n : 0), &f) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* ES256: raw r||s (64 bytes) over data. Boolean. */
static int es256_verify(EVP_PKEY *key, const unsigned char *data, size_t len,
                        const unsigned char sig[64])
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int derlen = -1, ok = 0;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL;
        derlen = i2d_ECDSA_SIG(es, &der);
    }
    if (derlen > 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, der, (size_t)derlen, data, len) == 1;
        EVP_MD_CTX_free(md);
    }
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    ERR_clear_error();
    return ok;
}

/* ---------------------------------------------------------------- parsing */

/* Splits s into exactly n dot-separated parts. Boolean. */
static int split(const char *s, size_t len, size_t n, const char **part, size_t *plen)
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (k == n)
                return 0;
            part[k] = s + start;
            plen[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k == n;
}

/* Decodes a base64url part into a new buffer (NUL-terminated, for JSON).
 * NULL if malformed. */
static unsigned char *dec(const char *s, size_t len, size_t *outlen)
{
    size_t cap = len * 3 / 4 + 3;
    unsigned char *out = malloc(cap + 1);
    long n = out ? iss_b64url_decode(s, len, out, cap) : -1;
    if (n < 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *outlen = (size_t)n;
    return out;
}

/* The JSON object in a decoded header; checks "alg" (and "enc" when given)
 * and refuses "crit" and "zip". Boolean. */
static int header_ok(const char *b64, size_t len, const char *alg, const char *enc)
{
    size_t n;
    unsigned char *h = len <= 2048 ? dec(b64, len, &n) : NULL;
    json_error_t e;
    json_t *o = h ? json_loadb((const char *)h, n, JSON_REJECT_DUPLICATES, &e) : NULL;
    int ok = json_is_object(o) && json_is_string(json_object_get(o, "alg")) &&
             !strcmp(json_string_value(json_object_get(o, "alg")), alg) &&
             !json_object_get(o, "crit") && !json_object_get(o, "zip");
    if (ok && enc)
        ok = json_is_string(json_object_get(o, "enc")) &&
             !strcmp(json_string_value(json_object_get(o, "enc")), enc);
    json_decref(o);
    free(h);
    return ok;
}

static const char *get_str(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(json_object_get(o, a), b);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* timestampMillis: a decimal string (as Play sends it) or an integer. */
static int get_millis(json_t *o, int64_t *out)
{
    json_t *v = json_object_get(json_object_get(o, "requestDetails"), "timestampMillis");
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return *out >= 0 ? 0 : -1;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    int64_t r = 0;
    if (!*s || strlen(s) > 18)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        r = r * 10 + (*s - '0');
    }
    *out = r;
    return 0;
}

/* Compares two nonces, ignoring base64 '=' padding on the returned one. */
static int nonce_eq(const char *got, const char *want)
{
    size_t gl = strlen(got), wl = strlen(want);
    while (gl > 0 && got[gl - 1] == '=')
        gl--;
    return gl == wl && CRYPTO_memcmp(got, want, wl) == 0;
}

static const char nonce_mismatch[] = "the token's nonce is not this request's key-binding challenge";

/* The payload checks; summary and level on success. Syscall-like. */
static int check_payload(const cfg_play_integrity_t *cfg, json_t *p, const char *expected_nonce,
                         int64_t now_ms, char *summary, size_t summary_len, int *level,
                         const char **err)
{
    const char *s;
    if (!json_is_object(p)) {
        *err = "attestation payload is not a JSON object";
        return -1;
    }
    if (!(s = get_str(p, "requestDetails", "nonce")) || !expected_nonce ||
        !nonce_eq(s, expected_nonce)) {
        *err = nonce_mismatch;
        return -1;
    }
    if (!(s = get_str(p, "requestDetails", "requestPackageName")) ||
        strcmp(s, cfg->package_name) != 0) {
        *err = "attestation request package name mismatch";
        return -1;
    }
    if (!(s = get_str(p, "appIntegrity", "packageName")) || strcmp(s, cfg->package_name) != 0) {
        if (!s && (s = get_str(p, "appIntegrity", "appRecognitionVerdict")) &&
            strcmp(s, "PLAY_RECOGNIZED") != 0)
            *err = "app not recognized by Play";
        else
            *err = "attestation app package name mismatch";
        return -1;
    }
    if (!(s = get_str(p, "appIntegrity", "appRecognitionVerdict")) ||
        strcmp(s, "PLAY_RECOGNIZED") != 0) {
        *err = "app not recognized by Play";
        return -1;
    }
    json_t *digests = json_object_get(json_object_get(p, "appIntegrity"),
                                      "certificateSha256Digest");
    int found = 0;
    for (size_t i = 0; json_is_array(digests) && i < json_array_size(digests) && !found; i++) {
        json_t *d = json_array_get(digests, i);
        unsigned char raw[40];
        if (!json_is_string(d) || json_string_length(d) > 48 ||
            iss_b64url_decode(json_string_value(d), json_string_length(d), raw,
                                  sizeof raw) != 32)
            continue;
        for (size_t k = 0; k < cfg->ndigests && !found; k++)
            found = CRYPTO_memcmp(raw, cfg->digests[k], 32) == 0;
    }
    if (!found) {
        *err = "app signing certificate not in the allow-list";
        return -1;
    }
    json_t *dv = json_object_get(json_object_get(p, "deviceIntegrity"),
                                 "deviceRecognitionVerdict");
    uint32_t have = 0;
    for (size_t i = 0; json_is_array(dv) && i < json_array_size(dv); i++) {
        json_t *v = json_array_get(dv, i);
        for (size_t k = 0; json_is_string(v) && k < 4; k++)
            if (!strcmp(json_string_value(v), verdict_names[k]))
                have |= 1u << k;
    }
    for (size_t k = 0; k < 4; k++)
        if ((cfg->device_verdicts & (1u << k)) && !(have & (1u << k))) {
            *err = missing_verdict[k];
            return -1;
        }
    int64_t ts;
    if (get_millis(p, &ts) < 0) {
        *err = "attestation timestamp missing or malformed";
        return -1;
    }
    if (ts > now_ms + CLOCK_SKEW_MS) {
        *err = "attestation timestamp in the future";
        return -1;
    }
    if (now_ms - ts > (int64_t)cfg->max_age_ms) {
        *err = "attestation too old";
        return -1;
    }
    *level = have & (CFG_PLAY_MEETS_DEVICE | CFG_PLAY_MEETS_STRONG) ? CFG_INT_DEVICE : CFG_INT_BASIC;
    /* summary: the app verdict and the device verdicts Play gave, in its order */
    int n = snprintf(summary, summary_len, "PLAY_RECOGNIZED;");
    int first = 1;
    for (size_t i = 0; json_is_array(dv) && i < json_array_size(dv) && n >= 0; i++) {
        json_t *v = json_array_get(dv, i);
        for (size_t k = 0; json_is_string(v) && k < 4; k++) {
            if (strcmp(json_string_value(v), verdict_names[k]) != 0)
                continue;
            size_t used = strlen(summary);
            if (used < summary_len)
                snprintf(summary + used, summary_len - used, "%s%s", first ? "" : ",",
                         verdict_names[k]);
            first = 0;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- verify */

int iss_play_verify(const cfg_play_integrity_t *cfg, iss_play_keys_t *keys, const char *token,
                    size_t len, const char *expected_nonce, int64_t now_ms, char *summary,
                    size_t summary_len, int *level, enum pc_err *why, const char **err)
{
    const char *part[5], *jp[3];
    size_t plen[5], jl[3];
    unsigned char *ek = NULL, *iv = NULL, *ct = NULL, *tag = NULL, *pt = NULL;
    unsigned char *sig = NULL, *payload = NULL, cek[32];
    size_t ekl, ivl, ctl, tagl, sigl, payl;
    json_t *pj = NULL;
    int rc = -1;

    if (summary_len)
        summary[0] = '\0';
    if (!cfg || !keys || !token || len == 0 || len > ISS_MAX_TOKEN) {
        *err = "attestation token missing or too long";
        return -1;
    }
    if (!split(token, len, 5, part, plen)) {
        *err = "attestation token is not a JWE (expected 5 parts)";
        return -1;
    }
    if (!header_ok(part[0], plen[0], "A256KW", NULL)) {
        *err = "attestation JWE alg must be A256KW";
        return -1;
    }
    if (!header_ok(part[0], plen[0], "A256KW", "A256GCM")) {
        *err = "attestation JWE enc must be A256GCM";
        return -1;
    }
    *err = "attestation JWE is malformed";
    if (!(ek = dec(part[1], plen[1], &ekl)) || !(iv = dec(part[2], plen[2], &ivl)) ||
        !(ct = dec(part[3], plen[3], &ctl)) || !(tag = dec(part[4], plen[4], &tagl)) ||
        ekl != 40 || ivl != 12 || tagl != 16 || ctl == 0)
        goto out;
    if (unwrap_cek(keys->kek, ek, ekl, cek) < 0) {
        *err = "attestation key unwrap failed (wrong decryption key?)";
        goto out;
    }
    if (!(pt = malloc(ctl + 1)))
        goto out;
    if (gcm_decrypt(cek, iv, (const unsigned char *)part[0], plen[0], ct, ctl, tag, pt) < 0) {
        *err = "attestation decryption failed (GCM tag mismatch)";
        goto out;
    }
    pt[ctl] = '\0';
    if (!split((const char *)pt, ctl, 3, jp, jl)) {
        *err = "attestation content is not a JWS (expected 3 parts)";
        goto out;
    }
    if (!header_ok(jp[0], jl[0], "ES256", NULL)) {
        *err = "attestation JWS alg must be ES256";
        goto out;
    }
    if (!(sig = dec(jp[2], jl[2], &sigl)) || sigl != 64) {
        *err = "attestation signature malformed";
        goto out;
    }
    if (!es256_verify(keys->verify, pt, jl[0] + 1 + jl[1], sig)) {
        *err = "attestation signature invalid";
        goto out;
    }
    json_error_t je;
    if (!(payload = dec(jp[1], jl[1], &payl)) ||
        !(pj = json_loadb((const char *)payload, payl, JSON_REJECT_DUPLICATES, &je))) {
        *err = "attestation payload is not JSON";
        goto out;
    }
    int lv = CFG_INT_BASIC;
    rc = check_payload(cfg, pj, expected_nonce, now_ms, summary, summary_len, &lv, err);
    if (rc == 0 && level)
        *level = lv;
out:
    if (rc < 0 && why)
        *why = *err == nonce_mismatch ? PC_E_KEY_NOT_BOUND : PC_E_ATTESTATION_FAILED;
    OPENSSL_cleanse(cek, sizeof cek);
    if (pt)
        OPENSSL_cleanse(pt, ctl);
    json_decref(pj);
    free(ek);
    free(iv);
    free(ct);
    free(tag);
    free(pt);
    free(sig);
    free(payload);
    if (rc < 0 && summary_len)
        summary[0] = '\0';
    return rc;
}

/* ---------------------------------------------------------------- the attester */

typedef struct {
    const cfg_play_integrity_t *cfg;
    iss_play_keys_t *keys;
} play_inst_t;

static void *play_load(const cfg_platform_t *platform, char *err, size_t errlen)
{
    play_inst_t *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    in->cfg = &platform->play;
    if (!(in->keys = iss_play_keys_load(&platform->play, err, errlen))) {
        free(in);
        return NULL;
    }
    return in;
}

static void play_free(void *inst)
{
    play_inst_t *in = inst;
    if (!in)
        return;
    iss_play_keys_free(in->keys);
    free(in);
}

/* Local and synchronous: done is called before verify returns. */
static void play_attest(void *inst, const iss_attest_req_t *req, iss_attest_done_fn done, void *arg,
                        void **op)
{
    play_inst_t *in = inst;
    char summary[ISS_SUMMARY_MAX], expect[ISS_NONCE_LEN + 2];
    const char *err = "the key-binding challenge is unknown (no CSR key)";
    *op = NULL;
    iss_verdict_t v = {.err = PC_E_NONE, .summary = summary};
    if (!req->challenge || iss_b64url_encode(req->challenge, ISS_CHALLENGE_BYTES, expect, sizeof expect) < 0 ||
        iss_play_verify(in->cfg, in->keys, req->token, req->token_len, expect, req->now_ms, summary,
                        sizeof summary, &v.level, &v.err, &err) < 0) {
        if (v.err == PC_E_NONE)
            v.err = PC_E_KEY_NOT_BOUND;
        v.message = err;
        v.summary = NULL;
    }
    done(arg, &v);
}

static void play_cancel(void *op)
{
    (void)op;
}

const iss_attester_t iss_attest_play = {
    .name = "play_integrity",
    .provider = CFG_ATTEST_PLAY_INTEGRITY,
    .metric = PC_PROV_PLAY_INTEGRITY,
    .token_member = "integrity_token",
    .load = play_load,
    .verify = play_attest,
    .cancel = play_cancel,
    .free = play_free,
};
