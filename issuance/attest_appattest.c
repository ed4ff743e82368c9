/* attest_appattest.c: the provider app_attest (Apple App Attest), local and
 * synchronous. Contracts: attester.h (iss_attest_app_attest); the objects
 * and checks are appattest.h.
 *
 * Issue: the body's "attestation" (base64 CBOR attestation object) and
 * "key_id" (base64, the app's keyId) are checked for clientDataHash = the
 * request's challenge (SHA-256(nonce || SHA-256(CSR SPKI))). The verdict's
 * state is the device's App Attest key, counter 0, receipt, app id and key
 * id; the flow stores it (portcullis:attest:<device_id>).
 *
 * Renewal: the body's "assertion" (base64 CBOR assertion object) is checked
 * against the stored state for the same challenge; the verdict's counter is
 * the assertion's, which the flow stores only if it is still above the
 * stored one (a replayed assertion is refused there). */
#include "attester.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../base/metrics.h"
#include "appattest.h"

typedef struct {
    const cfg_platform_t *plat;
    X509_STORE *roots;
} aa_inst_t;

static void *aa_load(const cfg_platform_t *platform, char *err, size_t errlen)
{
    aa_inst_t *in = calloc(1, sizeof(*in));
    if (!in) {
        snprintf(err, errlen, "app_attest: out of memory");
        return NULL;
    }
    in->plat = platform;
    in->roots = iss_aa_roots_load(platform->appattest.root_ca_file, err, errlen);
    if (!in->roots) {
        free(in);
        return NULL;
    }
    return in;
}

static void aa_free(void *inst)
{
    aa_inst_t *in = inst;
    if (!in)
        return;
    X509_STORE_free(in->roots);
    free(in);
}

static void aa_cancel(void *op)
{
    (void)op;
}

/* The base64 member name of the body decoded into out (cap bytes): its
 * length, or -1 with *msg naming it. */
static long member_b64(const json_t *body, const char *name, unsigned char *out, size_t cap,
                       const char **msg, const char *missing, const char *bad)
{
    const json_t *v = json_object_get(body, name);
    if (!v || !json_is_string(v)) {
        *msg = missing;
        return -1;
    }
    long n = iss_aa_b64_decode(json_string_value(v), json_string_length(v), out, cap);
    if (n <= 0)
        *msg = bad;
    return n <= 0 ? -1 : n;
}

/* The verdict (the flow logs a refusal with its message). */
static void answer(iss_attest_done_fn done, void *arg, enum pc_err e, const char *msg,
                   const iss_aa_result_t *res, int renewal)
{
    char summary[256];
    iss_verdict_t v = {.err = e, .message = msg};
    if (e == PC_E_NONE) {
        snprintf(summary, sizeof(summary), "app_attest %s%s app_id=%s counter=%u",
                 res->development ? "development" : "production", renewal ? " assertion" : "",
                 res->app_id, res->counter);
        v.summary = summary;
        v.level = res->development ? CFG_INT_BASIC : CFG_INT_STRONG;
        v.app_id = res->app_id;
        v.key_sha256 = res->spki_sha256;
        v.key_attested = 0;   /* the App Attest key, not the CSR's: bound by the challenge */
        v.state = res->state;
        v.counter = res->counter;
    }
    done(arg, &v);
}

static void aa_verify(void *inst, const iss_attest_req_t *req, iss_attest_done_fn done, void *arg,
                      void **op)
{
    aa_inst_t *in = inst;
    iss_aa_result_t res;
    const char *msg = NULL;
    enum pc_err e;
    *op = NULL;
    memset(&res, 0, sizeof(res));
    unsigned char *buf = malloc(ISS_AA_MAX_OBJECT);
    if (!buf) {
        answer(done, arg, PC_E_OUT_OF_MEMORY, "out of memory", NULL, 0);
        return;
    }
    long n;
    if (!req->challenge) {   /* the CLI without --csr/--nonce or --client-data-hash: its usage error */
        e = PC_E_KEY_NOT_BOUND;
        msg = "no challenge to check the App Attest object against";
    } else if (req->renewal) {
        if (!req->state) {
            e = PC_E_ATTESTATION_FAILED;
            msg = "no App Attest key is stored for this device";
        } else if ((n = member_b64(req->body, "assertion", buf, ISS_AA_MAX_ASSERTION, &msg,
                                   "member \"assertion\" (base64 App Attest assertion) is required",
                                   "member \"assertion\" is not base64 of at most 4096 bytes")) < 0) {
            e = PC_E_BAD_REQUEST;
        } else {
            e = iss_aa_verify_assertion(&in->plat->appattest, req->state, buf, (size_t)n, req->challenge, &res, &msg);
        }
    } else {
        unsigned char kid[64];
        long kn;
        if ((n = member_b64(req->body, "attestation", buf, ISS_AA_MAX_OBJECT, &msg,
                            "member \"attestation\" (base64 App Attest attestation object) is required",
                            "member \"attestation\" is not base64 of at most 32768 bytes")) < 0 ||
            (kn = member_b64(req->body, "key_id", kid, sizeof(kid), &msg,
                             "member \"key_id\" (base64 App Attest key id) is required",
                             "member \"key_id\" is not base64")) < 0)
            e = PC_E_BAD_REQUEST;
        else
            e = iss_aa_verify_attestation(&in->plat->appattest, in->roots, buf, (size_t)n,
                                          req->challenge, kid, (size_t)kn, req->now_ms, &res, &msg);
    }
    free(buf);
    answer(done, arg, e, msg, &res, req->renewal);
    iss_aa_result_clear(&res);
}

const iss_attester_t iss_attest_app_attest = {
    .name = "app_attest",
    .provider = CFG_ATTEST_APP_ATTEST,
    .metric = PC_PROV_APP_ATTEST,
    .token_member = "attestation",
    .token_is_json = 0,
    .stateful = 1,
    .load = aa_load,
    .verify = aa_verify,
    .cancel = aa_cancel,
    .free = aa_free,
};
