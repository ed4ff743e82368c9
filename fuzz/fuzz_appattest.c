/* fuzz_appattest: the App Attest CBOR parsers and checks
 * (issuance/appattest.c), with a test PKI and objects minted at start by
 * test/tools/mint_appattest.h (nothing checked in holds a certificate).
 *
 * Byte 0 picks the mode; the rest is the input.
 *   0: an attestation object (iss_aa_attestation_parse).
 *   1: an assertion object (iss_aa_assertion_parse).
 *   2: authenticator data, credential data required if byte 1 is odd.
 *   3: patches to a minted, valid attestation object: each 3 bytes (offset
 *      big endian 16 bits, byte) overwrite it, then the whole check runs.
 *   4: the same on a minted assertion, checked against the minted state.
 *   5: base64 text (iss_aa_b64_decode): canonical, or refused.
 * Contract: 0 with every pointer inside the input (or the object's own
 * decoded copy) and the parsed lengths consistent, or -1 with *err and a
 * cleared struct; a check answers PC_E_NONE with a state, or a refusal with
 * a message and a cleared result.
 */
#include "../issuance/appattest.h"
#include "../test/tools/mint_appattest.h"

#include "fuzz.h"

#define APP "ABCDE12345.com.example.app"

static X509_STORE *roots;
static unsigned char cdh[32], key_id[32];
static unsigned char *att, *asr;
static size_t att_len, asr_len;
static char *state;
static int64_t now_ms;
static char ids[1][CFG_AA_APP_ID_MAX + 1] = {APP};
static cfg_app_attest_t cfg = {.app_ids = ids, .napp_ids = 1, .environment = CFG_AA_PRODUCTION};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    time_t now = time(NULL);
    X509 *root, *inter;
    EVP_PKEY *rk, *ik, *key = mint_aa_key();
    if (mint_aa_pki(now - 86400, now + 30 * 86400, &root, &rk, &inter, &ik) < 0 || !key)
        abort();
    roots = X509_STORE_new();
    X509_STORE_add_cert(roots, root);
    memset(cdh, 7, sizeof cdh);
    mint_aa_key_id(key, key_id);
    mint_aa_opts_t o = {.ca = inter, .ca_key = ik, .key = key, .app_id = APP, .cdh = cdh,
                        .not_before = now - 3600, .not_after = now + 86400, .trailing = 3};
    att = mint_aa_attestation(&o, &att_len);
    asr = mint_aa_assertion(key, APP, cdh, 1, &asr_len);
    now_ms = (int64_t)now * 1000;
    iss_aa_result_t res;
    const char *msg;
    if (iss_aa_verify_attestation(&cfg, roots, att, att_len, cdh, key_id, 32, now_ms, &res, &msg) != PC_E_NONE)
        abort();
    state = strdup(res.state);
    iss_aa_result_clear(&res);
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(key);
    return 0;
}

static int inside(const unsigned char *p, size_t n, const unsigned char *buf, size_t len)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void check_ad(const iss_aa_authdata_t *ad, const unsigned char *buf, size_t len)
{
    FUZZ_ASSERT(ad->rp_id_hash == buf && len >= 37, "rpIdHash at the start");
    if (ad->has_cred) {
        FUZZ_ASSERT(inside(ad->aaguid, 16, buf, len), "aaguid inside");
        FUZZ_ASSERT(inside(ad->cred_id, ad->cred_id_len, buf, len), "credentialId inside");
        FUZZ_ASSERT(inside(ad->cose_key, ad->cose_key_len, buf, len), "COSE key inside");
        FUZZ_ASSERT((size_t)(ad->cose_key - buf) + ad->cose_key_len + ad->trailing == len, "lengths add up");
    }
}

static void patched(const uint8_t *d, size_t n, const unsigned char *orig, size_t olen, int assertion)
{
    unsigned char *b = malloc(olen);
    memcpy(b, orig, olen);
    for (size_t i = 0; i + 3 <= n; i += 3)
        b[((size_t)d[i] << 8 | d[i + 1]) % olen] = d[i + 2];
    iss_aa_result_t res;
    const char *msg = NULL;
    enum pc_err e = assertion ? iss_aa_verify_assertion(&cfg, state, b, olen, cdh, &res, &msg)
                              : iss_aa_verify_attestation(&cfg, roots, b, olen, cdh, key_id, 32, now_ms, &res, &msg);
    if (e == PC_E_NONE)
        FUZZ_ASSERT(res.state != NULL, "accepted with a state");
    else
        FUZZ_ASSERT(msg != NULL && res.state == NULL, "refused with a message, no state");
    iss_aa_result_clear(&res);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    const char *err = NULL;
    switch (data[0] % 6) {
    case 0: {
        iss_aa_attestation_t a;
        if (iss_aa_attestation_parse(in, n, &a, &err) == 0) {
            FUZZ_ASSERT(a.nx5c >= 2 && a.nx5c <= ISS_AA_MAX_CERTS && a.ad.has_cred, "x5c count");
            check_ad(&a.ad, a.auth_data, a.auth_data_len);
        } else {
            FUZZ_ASSERT(err && !a.cbor_ && !a.nx5c, "refused and cleared");
        }
        iss_aa_attestation_clear(&a);
        break;
    }
    case 1: {
        iss_aa_assertion_t a;
        if (iss_aa_assertion_parse(in, n, &a, &err) == 0)
            check_ad(&a.ad, a.auth_data, a.auth_data_len);
        else
            FUZZ_ASSERT(err && !a.cbor_, "refused and cleared");
        iss_aa_assertion_clear(&a);
        break;
    }
    case 2: {
        iss_aa_authdata_t ad;
        int need = n > 0 && (in[0] & 1);
        if (iss_aa_authdata_parse(in, n, need, &ad, &err) == 0) {
            check_ad(&ad, in, n);
            FUZZ_ASSERT(!need || ad.has_cred, "credential when required");
        } else {
            FUZZ_ASSERT(err && !ad.rp_id_hash, "refused and cleared");
        }
        break;
    }
    case 3:
        patched(in, n, att, att_len, 0);
        break;
    case 4:
        patched(in, n, asr, asr_len, 1);
        break;
    default: {
        unsigned char out[96];
        size_t d = n;
        while (d > 0 && in[d - 1] == '=')
            d--;
        long got = iss_aa_b64_decode((const char *)in, n, out, sizeof out);
        FUZZ_ASSERT(got < 0 || ((size_t)got == d * 3 / 4 && (size_t)got <= sizeof out),
                    "canonical base64: the length of its data characters");
        if (got >= 0) {   /* re-encoded, it is the input's text (one text per value) */
            unsigned char enc[132];
            size_t el = (size_t)EVP_EncodeBlock(enc, out, (int)got);
            while (el > 0 && enc[el - 1] == '=')
                el--;
            int same = el == d;
            for (size_t i = 0; same && i < d; i++)
                same = enc[i] == (in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i]);
            FUZZ_ASSERT(same, "canonical base64: decoded and re-encoded, the same text");
        }
        break;
    }
    }
    return 0;
}
