/* policy: which route a request takes, and whether it may take it.
 *
 * Policy answers allow / deny(reason); it never touches sockets. The gateway
 * acts on the answer.
 */
#ifndef PORTCULLIS_POLICY_H
#define PORTCULLIS_POLICY_H

#include <stddef.h>

#include "../config/config.h"
#include "../tls/tls.h"
#include "target.h"

typedef struct {
    int status;             /* 0 = allow; else the HTTP status to answer */
    const char *code;       /* machine-readable error code */
    const char *message;    /* human-readable */
    int bearer_challenge;   /* add WWW-Authenticate: Bearer */
} pol_verdict_t;

/* Request targets are canonicalised by pol_target_canon() (target.h);
 * routes match on the canonical path. */

/* Host header value to a bare lowercase host (port dropped) in out; -1 if
 * malformed. */
int pol_host(const char *v, size_t len, char *out, size_t outlen);

/* Longest-prefix route for host (NULL: none sent) / path / method; NULL if
 * none. A prefix matches at a segment boundary: "/api" matches "/api" and
 * "/api/x", not "/apix"; a prefix ending in '/' matches anything below it.
 * Among equally long prefixes, a route naming the host wins. path is the
 * canonical path (pol_target_canon); with http.path_case: insensitive,
 * prefixes are compared ignoring ASCII case. */
const cfg_route_t *pol_route(const cfg_t *cfg, const char *host, const char *path, size_t plen,
                             const char *method);

/* Applies the route's policy to a request; fills v (v->status 0 = allow). */
void pol_check(const cfg_route_t *r, const tls_identity_t *id, const char *authz, size_t alen,
               int nauthz, pol_verdict_t *v);

#endif
