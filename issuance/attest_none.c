/* attest_none.c: the provider none: no attestation at all, so anyone with
 * the bootstrap certificate gets a device certificate. For development
 * only: the configuration refuses it unless issuance.insecure_dev is true
 * (config/config_issuance.c), and loading it logs a warning.
 * Contracts: attester.h (iss_attest_none). */
#include "attester.h"

#include "../base/metrics.h"

static void *none_load(const cfg_platform_t *platform, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    pc_log_ev(PC_WARN, "config_warning", NULL, "INSECURE: issuance.platforms.%s uses provider none: certificates are "
              "issued WITHOUT any attestation (insecure_dev: true). Never run this in production.",
              platform->name);
    return (void *)platform;
}

static void none_attest(void *inst, const iss_attest_req_t *req, iss_attest_done_fn done, void *arg,
                        void **op)
{
    (void)inst;
    (void)req;
    *op = NULL;
    iss_verdict_t v = {.err = PC_E_NONE, .summary = "none (insecure_dev)", .level = CFG_INT_NONE};
    done(arg, &v);
}

static void none_cancel(void *op)
{
    (void)op;
}

static void none_free(void *inst)
{
    (void)inst;
}

const iss_attester_t iss_attest_none = {
    .name = "none",
    .provider = CFG_ATTEST_NONE,
    .metric = PC_PROV_NONE,
    .load = none_load,
    .verify = none_attest,
    .cancel = none_cancel,
    .free = none_free,
};
