/* fuzz_issuance: the certificate-issuance request path (issuance/issuance.c as
 * issuance/flow.c calls it).
 *
 * Byte 0 picks the mode; the rest is the input.
 *   0: an issue request body: iss_issue_parse, then (as start_issue) the
 *      CSR check, the platform and the nonce command of what it parsed.
 *   1, 2: a renew request body (2: renew_requires_attestation).
 *   3: a PEM certificate request alone: iss_csr_check.
 *   4: an http verifier's response body: iss_http_verifier_parse.
 *   5: a nonce as stored in Redis, and as a client sends it:
 *      iss_nonce_check, iss_nonce_valid, iss_nonce_key, pol_device_id_valid.
 * Contracts: syscall-like results; a parsed request has a NUL-terminated
 * CSR of at most ISS_MAX_CSR bytes; an accepted CSR has a public key.
 */
#include "../issuance/issuance.h"

#include "fuzz.h"

static const char config_text[] =
    FUZZ_CONFIG_TLS
    FUZZ_CONFIG_API
    "  - {path: /, upstream: api, allow_classes: [device]}\n"
    FUZZ_CONFIG_CA
    "  key_policy: {ec_p256: true, rsa: true, rsa_min_bits: 2048}\n"
    "  platforms:\n"
    "    android:\n      provider: play_integrity\n      package_name: com.example.app\n"
    "      decryption_key_file: @D@/decryption.key\n"
    "      verification_key_file: @D@/verification.key\n"
    "      certificate_sha256_digests: [ZHVtbXktY2VydGlmaWNhdGUtZGlnZXN0LTAxMjM0NTY]\n"
    "    ios: {provider: http, url: \"http://127.0.0.1:9100/verify\"}\n"
    "    huawei: {provider: refuse}\n";

static cfg_t *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    cfg = fuzz_config(config_text);
    return 0;
}

static void check_csr(const char *pem, size_t len)
{
    EVP_PKEY *pub = NULL;
    const char *err = NULL;
    int rc = iss_csr_check(pem, len, cfg->issuance, &pub, &err);
    FUZZ_ASSERT(rc == 0 || rc == -1, "iss_csr_check: not syscall-like");
    FUZZ_ASSERT(rc == 0 ? pub != NULL : err != NULL, "iss_csr_check: result and outputs disagree");
    EVP_PKEY_free(pub);
}

static void check_req(int rc, iss_req_t *r, const char *err, int renew)
{
    FUZZ_ASSERT(rc == 0 || rc == -1, "request parser: not syscall-like");
    if (rc < 0) {
        FUZZ_ASSERT(err != NULL, "request refused without a reason");
        return;
    }
    FUZZ_ASSERT(r->csr && strlen(r->csr) == r->csr_len && r->csr_len <= ISS_MAX_CSR,
                "parsed CSR not NUL-terminated or too long");
    FUZZ_ASSERT(!r->integrity_token || strlen(r->integrity_token) == r->token_len,
                "parsed token length wrong");
    check_csr(r->csr, r->csr_len);
    const char *perr = NULL;
    if (!renew || r->integrity_token) {
        const cfg_platform_t *p = iss_platform(cfg->issuance, r->platform, &perr);
        FUZZ_ASSERT(p || perr, "platform refused without a reason");
        pol_argv_t a;
        int nrc = iss_nonce_getdel_argv(&a, r->nonce);
        FUZZ_ASSERT(nrc == 0 || nrc == -1, "iss_nonce_getdel_argv: not syscall-like");
    }
    iss_req_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *s = fuzz_strndup(data + 1, n);   /* for the functions taking C strings */
    iss_req_t r;
    const char *err = NULL;
    switch (data[0] % 6) {
    case 0:
        memset(&r, 0, sizeof r);
        check_req(iss_issue_parse(in, n, &r, &err), &r, err, 0);
        break;
    case 1:
    case 2:
        memset(&r, 0, sizeof r);
        check_req(iss_renew_parse(in, n, data[0] % 6 == 2, &r, &err), &r, err, 1);
        break;
    case 3:
        check_csr(in, n);
        break;
    case 4: {
        char summary[ISS_SUMMARY_MAX];
        int level = -2;
        int rc = iss_http_verifier_parse(in, n, CFG_INT_DEVICE, summary, sizeof summary, &level, &err);
        FUZZ_ASSERT(rc == 0 || (rc == -1 && err), "iss_http_verifier_parse: not syscall-like");
        FUZZ_ASSERT(rc == 0 ? level >= CFG_INT_NONE && level <= CFG_INT_DEVICE : level == -1,
                    "iss_http_verifier_parse: level out of contract");
        FUZZ_ASSERT(strlen(summary) < sizeof summary, "summary not terminated");
        for (const char *c = summary; *c; c++)
            FUZZ_ASSERT((unsigned char)*c >= 0x20 && *c != 0x7f, "summary not sanitized");
        break;
    }
    default: {
        int rc = iss_nonce_check(in, n, "bootstrap", &err);
        FUZZ_ASSERT(rc == 1 || (rc == 0 && err), "iss_nonce_check: not boolean");
        char key[POL_ARGV_KEY_MAX];
        if (iss_nonce_valid(s))
            FUZZ_ASSERT(iss_nonce_key(s, key, sizeof key) == 0, "a valid nonce has no key");
        (void)pol_device_id_valid(s);
    }
    }
    free(s);
    return 0;
}
