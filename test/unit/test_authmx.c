/* Unit tests: every bearer refusal of pol_check and every JWT refusal counts
 * once in AUTH_REFUSALS, under its reason, and nothing else counts there. */
#include <stdio.h>
#include <string.h>

#include "../../base/metrics.h"
#include "../../policy/jwt.h"
#include "../../policy/policy.h"
#include "check.h"

static uint64_t refusals(unsigned reason)
{
    return pc_metrics_read(PC_M_AUTH_REFUSALS + reason);
}

static uint64_t all_refusals(void)
{
    uint64_t n = 0;
    for (unsigned r = 0; r < PC_AUTH__N; r++)
        n += refusals(r);
    return n;
}

/* pol_check on a bearer route with header value authz (nauthz copies):
 * status (401, or 400 for two headers) counted once under want, or allowed and counted nowhere. */
static int counts_as(const char *authz, int nauthz, int want_status, int want_reason)
{
    cfg_route_t r = {.allow_classes = 1, .require_bearer = 1};
    tls_identity_t dev = {.class_idx = 0};
    pol_verdict_t v;
    uint64_t before = want_reason >= 0 ? refusals((unsigned)want_reason) : 0, all = all_refusals();
    pol_check(&r, &dev, authz, authz ? strlen(authz) : 0, nauthz, &v);
    if ((v.err == PC_E_NONE ? 0 : pc_err_status(v.err)) != want_status)
        return 0;
    if (want_reason < 0)
        return all_refusals() == all;
    return refusals((unsigned)want_reason) == before + 1 && all_refusals() == all + 1;
}

int main(void)
{
    pc_metrics_init();
    CHECK(counts_as(NULL, 0, 401, PC_AUTH_MISSING), "no Authorization: missing");
    CHECK(counts_as("Bearer", 1, 401, PC_AUTH_MISSING),
          "\"Bearer\" (a blank token after OWS trimming): missing, not another scheme");
    CHECK(counts_as("Bearer    ", 1, 401, PC_AUTH_MISSING), "blank token: missing");
    CHECK(counts_as("Basic dXNlcg==", 1, 401, PC_AUTH_NOT_BEARER), "Basic: not_bearer");
    CHECK(counts_as("Bearerabc", 1, 401, PC_AUTH_NOT_BEARER), "no space after the scheme: not_bearer");
    CHECK(counts_as("Bearer abc", 2, 400, PC_AUTH_MULTIPLE), "two headers: multiple");
    CHECK(counts_as("Bearer a,b", 1, 401, PC_AUTH_MALFORMED), "bad token characters: malformed");
    CHECK(counts_as("Bearer abc.def", 1, 0, -1), "a well-formed token is not counted");

    cfg_route_t r = {.allow_classes = 2, .require_bearer = 1};
    tls_identity_t dev = {.class_idx = 0};
    pol_verdict_t v;
    uint64_t all = all_refusals();
    pol_check(&r, &dev, NULL, 0, 0, &v);
    CHECK(v.err == PC_E_CLASS_NOT_ALLOWED && all_refusals() == all, "a class refusal is not a bearer refusal");

    cfg_jwt_t jc = {.algorithms = CFG_JWT_ES256};
    pol_jwt_result_t res;
    all = all_refusals();
    CHECK(pol_jwt_verify(&jc, NULL, "a.b.c", 5, NULL, 0, &res) < 0 && res.reason == PC_AUTH_OTHER,
          "JWT without keys: reason other");
    CHECK(all_refusals() == all, "pol_jwt_verify reports the reason and counts nothing (the gate does)");
    pc_metrics_shutdown();
    return check_done();
}
