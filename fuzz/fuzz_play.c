/* fuzz_play: the Play Integrity token path (issuance/attest_play.c
 * iss_play_verify), with test keys from fuzz_pki().
 *
 * Byte 0 picks the mode; the rest is the input.
 *   0: the input is the token (JWE compact) itself.
 *   1: the input is the JWS compact the token carries; it is encrypted
 *      (A256KW + A256GCM) with the test decryption key.
 *   2: the input is "<JWS header JSON>\n<payload JSON>"; it is signed with
 *      the test signing key (ES256) and encrypted, so the payload checks
 *      (nonce, package, verdicts, digests, timestamp) are reached.
 * Contract: 0 with a non-empty summary, or -1 with *err and an empty summary.
 */
#include <openssl/rand.h>

#include "../issuance/issuance.h"

#include "fuzz.h"

#define NONCE "bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Utbm9uY2UtMDE"
#define NOW_MS 1800000000000LL

static cfg_play_integrity_t pcfg = {
    .package_name = "com.example.app",
    .ndigests = 1,
    .device_verdicts = CFG_PLAY_MEETS_DEVICE,
    .max_age_ms = 300000,
};
static iss_play_keys_t *keys;
static unsigned char kek[32];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    static char dec[512], ver[512];
    const char *d = fuzz_pki();
    snprintf(dec, sizeof dec, "%s/decryption.key", d);
    snprintf(ver, sizeof ver, "%s/verification.key", d);
    pcfg.decryption_key_file = dec;
    pcfg.verification_key_file = ver;
    memcpy(pcfg.digests[0], "dummy-certificate-digest-0123456", 32);
    char err[256];
    if (!(keys = iss_play_keys_load(&pcfg, err, sizeof err))) {
        fprintf(stderr, "fuzz_play: %s\n", err);
        abort();
    }
    /* the same AES key, for sealing */
    FILE *f = fopen(dec, "rb");
    char b64[128] = "";
    size_t n = f ? fread(b64, 1, sizeof b64 - 1, f) : 0;
    if (f)
        fclose(f);
    while (n && (b64[n - 1] == '\n' || b64[n - 1] == '\r'))
        n--;
    unsigned char raw[64];
    if (EVP_DecodeBlock(raw, (unsigned char *)b64, (int)n) < 32)
        abort();
    memcpy(kek, raw, 32);
    return 0;
}

/* JWE compact (A256KW, A256GCM) of content; malloc'ed. */
static char *seal(const char *content, size_t n)
{
    static const char hdr[] = "{\"alg\":\"A256KW\",\"enc\":\"A256GCM\"}";
    char *eh = fuzz_b64url_dup(hdr, strlen(hdr));
    unsigned char cek[32], iv[12], tag[16], wrapped[48];
    unsigned char *ct = malloc(n + 16);
    int wl = 0, f = 0, cl = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!ct || !c || RAND_bytes(cek, 32) != 1 || RAND_bytes(iv, 12) != 1)
        abort();
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL) != 1 ||
        EVP_EncryptUpdate(c, wrapped, &wl, cek, 32) != 1 ||
        EVP_EncryptFinal_ex(c, wrapped + wl, &f) != 1 || wl + f != 40)
        abort();
    EVP_CIPHER_CTX_free(c);
    if (!(c = EVP_CIPHER_CTX_new()) ||
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, cek, iv) != 1 ||
        EVP_EncryptUpdate(c, NULL, &wl, (const unsigned char *)eh, (int)strlen(eh)) != 1 ||
        EVP_EncryptUpdate(c, ct, &cl, (const unsigned char *)content, (int)n) != 1 ||
        EVP_EncryptFinal_ex(c, ct + cl, &f) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
    char *e64 = fuzz_b64url_dup(wrapped, 40), *i64 = fuzz_b64url_dup(iv, 12);
    char *c64 = fuzz_b64url_dup(ct, (size_t)(cl + f)), *t64 = fuzz_b64url_dup(tag, 16);
    size_t total = strlen(eh) + strlen(e64) + strlen(i64) + strlen(c64) + strlen(t64) + 5;
    char *out = malloc(total);
    if (!out)
        abort();
    snprintf(out, total, "%s.%s.%s.%s.%s", eh, e64, i64, c64, t64);
    free(eh), free(e64), free(i64), free(c64), free(t64), free(ct);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > ISS_MAX_TOKEN)
        return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    char *token;
    switch (data[0] % 3) {
    case 0:
        token = fuzz_strndup(in, n);
        break;
    case 1:
        token = seal((const char *)in, n);
        break;
    default: {
        const uint8_t *nl = memchr(in, '\n', n);
        size_t hl = nl ? (size_t)(nl - in) : n;
        char *jws = fuzz_jws(fuzz_signing_key(), in, hl, nl ? nl + 1 : in + n, nl ? n - hl - 1 : 0);
        token = seal(jws, strlen(jws));
        free(jws);
    }
    }
    size_t tl = data[0] % 3 == 0 ? n : strlen(token);
    char summary[ISS_SUMMARY_MAX];
    const char *err = NULL;
    int rc = iss_play_verify(&pcfg, keys, token, tl, NONCE, NOW_MS, summary, sizeof summary, NULL, NULL, &err);
    FUZZ_ASSERT(rc == 0 || rc == -1, "iss_play_verify: not syscall-like");
    if (rc == 0)
        FUZZ_ASSERT(summary[0] && strlen(summary) < sizeof summary, "accepted without a summary");
    else
        FUZZ_ASSERT(err && !summary[0], "refused without a reason, or with a summary");
    free(token);
    return 0;
}
