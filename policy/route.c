/* policy: route matching and the per-route checks (class, integrity, bearer). */
#include "policy.h"

#include "../base/metrics.h"

#include <string.h>
#include <strings.h>

const cfg_route_t *pol_route(const cfg_t *cfg, const char *host, const char *path, size_t plen,
                             const char *method)
{
    return cfg_route_select(cfg, host, path, plen, method);
}

static void deny(pol_verdict_t *v, enum pc_err e, const char *msg, int challenge)
{
    v->err = e;
    v->message = msg;
    v->bearer_challenge = challenge;
}

/* A refusal of the bearer credential (401; 400 for two headers), counted by why (AUTH_REFUSALS). */
static void refuse_bearer(pol_verdict_t *v, enum pc_auth_reason why, enum pc_err e, const char *msg)
{
    deny(v, e, msg, 1);
    pc_count1(AUTH_REFUSALS, why);
}

void pol_check(const cfg_route_t *r, const tls_identity_t *id, const char *authz, size_t alen,
               int nauthz, pol_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    v->err = PC_E_NONE;
    if (!id || id->class_idx < 0 || id->class_idx >= 32 ||
        !(r->allow_classes & (1u << id->class_idx))) {
        deny(v, PC_E_CLASS_NOT_ALLOWED, pc_err_message(PC_E_CLASS_NOT_ALLOWED), 0);
        return;
    }
    /* an unattested certificate (-1) is below every level */
    if (r->need_integrity && id->integrity < r->min_integrity) {
        deny(v, PC_E_INTEGRITY_TOO_LOW, id->integrity < 0
             ? "this route requires an attested device certificate"
             : "the device certificate's integrity level is below this route's", 0);
        return;
    }
    if (!r->require_bearer)
        return;
    if (nauthz == 0) {
        refuse_bearer(v, PC_AUTH_MISSING, PC_E_MISSING_TOKEN, "an Authorization: Bearer token is required");
        return;
    }
    if (nauthz > 1) {
        refuse_bearer(v, PC_AUTH_MULTIPLE, PC_E_INVALID_REQUEST, "more than one Authorization header");
        return;
    }
    /* RFC 6750: "Bearer" (case-insensitive), one or more spaces, b64token */
    if (alen == 6 && strncasecmp(authz, "Bearer", 6) == 0) {   /* "Bearer " less its trailing OWS */
        refuse_bearer(v, PC_AUTH_MISSING, PC_E_MISSING_TOKEN, "the bearer token is empty");
        return;
    }
    if (alen < 7 || strncasecmp(authz, "Bearer ", 7) != 0) {
        refuse_bearer(v, PC_AUTH_NOT_BEARER, PC_E_MISSING_TOKEN, "the Authorization scheme must be Bearer");
        return;
    }
    size_t i = 7;
    while (i < alen && authz[i] == ' ')
        i++;
    if (i == alen) {
        refuse_bearer(v, PC_AUTH_MISSING, PC_E_MISSING_TOKEN, "the bearer token is empty");
        return;
    }
    for (; i < alen; i++) {
        char c = authz[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=')) {
            refuse_bearer(v, PC_AUTH_MALFORMED, PC_E_INVALID_TOKEN, "the bearer token is malformed");
            return;
        }
    }
}
