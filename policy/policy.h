/* policy: which route a request takes, and whether it may take it.
 *
 * Policy answers allow / deny(reason); it never touches sockets. The gateway
 * acts on the answer.
 */
#ifndef PORTCULLIS_POLICY_H
#define PORTCULLIS_POLICY_H

#include <stddef.h>

#include "../base/errors.h"
#include "../config/config.h"
#include "../config/host.h"
#include "../config/route.h"
#include "../tls/tls.h"
#include "target.h"

typedef struct {
    enum pc_err err;        /* PC_E_NONE = allow; else the catalog entry to answer
                             * (its status and code, base/errors.def) */
    const char *message;    /* human-readable, more precise than the entry's */
    int bearer_challenge;   /* add WWW-Authenticate: Bearer */
} pol_verdict_t;

/* Request targets are canonicalised by pol_target_canon() (target.h);
 * routes match on the canonical path. */

/* The Host header is canonicalised by cfg_host_canon() (config/host.h);
 * routes match on the canonical host. */

/* The route for a request: cfg_route_select() (config/route.h), the one
 * route choice, which the load-time issuance check also uses. host is the
 * canonical host (NULL: none), path the canonical path (pol_target_canon),
 * without the query. */
const cfg_route_t *pol_route(const cfg_t *cfg, const char *host, const char *path, size_t plen,
                             const char *method);

/* Applies the route's policy to a request, in this order: the class
 * (allow_classes, PC_E_CLASS_NOT_ALLOWED), the certificate's integrity
 * level (min_integrity; an unattested identity, integrity -1, is below
 * every level: PC_E_INTEGRITY_TOO_LOW), then the bearer token's presence
 * and syntax. Fills v (v->err PC_E_NONE = allow). */
void pol_check(const cfg_route_t *r, const tls_identity_t *id, const char *authz, size_t alen,
               int nauthz, pol_verdict_t *v);

#endif
