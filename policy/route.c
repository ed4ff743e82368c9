/* policy: route matching and the per-route checks (class, bearer). */
#include "policy.h"

#include <string.h>
#include <strings.h>

const cfg_route_t *pol_route(const cfg_t *cfg, const char *host, const char *path, size_t plen,
                             const char *method)
{
    return cfg_route_select(cfg, host, path, plen, method);
}

static void deny(pol_verdict_t *v, int status, const char *code, const char *msg, int challenge)
{
    v->status = status;
    v->code = code;
    v->message = msg;
    v->bearer_challenge = challenge;
}

void pol_check(const cfg_route_t *r, const tls_identity_t *id, const char *authz, size_t alen,
               int nauthz, pol_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    if (!id || id->class_idx < 0 || id->class_idx >= 32 ||
        !(r->allow_classes & (1u << id->class_idx))) {
        deny(v, 403, "forbidden_class", "the client certificate's class may not use this route", 0);
        return;
    }
    if (!r->require_bearer)
        return;
    if (nauthz == 0) {
        deny(v, 401, "missing_token", "an Authorization: Bearer token is required", 1);
        return;
    }
    if (nauthz > 1) {
        deny(v, 401, "invalid_request", "more than one Authorization header", 1);
        return;
    }
    /* RFC 6750: "Bearer" (case-insensitive), one or more spaces, b64token */
    if (alen < 7 || strncasecmp(authz, "Bearer ", 7) != 0) {
        deny(v, 401, "missing_token", "the Authorization scheme must be Bearer", 1);
        return;
    }
    size_t i = 7;
    while (i < alen && authz[i] == ' ')
        i++;
    if (i == alen) {
        deny(v, 401, "missing_token", "the bearer token is empty", 1);
        return;
    }
    for (; i < alen; i++) {
        char c = authz[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=')) {
            deny(v, 401, "invalid_token", "the bearer token is malformed", 1);
            return;
        }
    }
}
