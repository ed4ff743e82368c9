/* policy/iroute: the contract between the gateway and a module that answers
 * requests itself (an internal route: issuance/'s challenge, issue, renew).
 *
 * The gateway owns the table of internal routes of a generation
 * (gateway/iroute.c) and runs every request that matches one through the
 * same pipeline as a proxied request (route policy, gate); then it checks the
 * entry's own rules (classes, methods, body size), buffers the body and calls
 * start. The module sees only the neutral request below and answers through
 * its reply callback; it never touches the connection. Types only: nothing
 * here is implemented in policy/.
 *
 * Threads: start, the reply and cancel all run on the connection's worker.
 */
#ifndef PORTCULLIS_POLICY_IROUTE_H
#define PORTCULLIS_POLICY_IROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "../base/errors.h"
#include "../config/config.h"
#include "../tls/tls.h"
#include "mirror.h"
#include "redis.h"

struct event_base;

/* An internal route's answer. err == PC_E_NONE: status with json (NULL for
 * no body) and headers (CRLF-terminated lines, or NULL). Otherwise the JSON
 * error of catalog entry err with message (NULL: the entry's), answered and
 * counted as every other error of the gateway. */
typedef struct {
    int status;
    const char *json;
    const char *headers;
    enum pc_err err;
    const char *message;
} pol_ireply_t;

/* What a handler sees of the request. Every pointer stays valid until the
 * handler has replied or been cancelled; the body only during start. */
typedef struct pol_ireq {
    const char *body;               /* the whole buffered body (not NUL-terminated) */
    size_t body_len;
    const tls_identity_t *id;       /* the caller's verified identity */
    const char *peer_ip;            /* the client's address (after PROXY) */
    const char *request_id;
    const cfg_t *cfg;               /* the generation's configuration */
    tls_ctx_t *tls;                 /* its TLS context (revocation checks) */
    struct event_base *base;        /* the worker's loop */
    pol_redis_t *redis;             /* the worker's Redis connection, or NULL */
    pol_mirror_t *mirror;           /* the revocation mirror, or NULL when none */
    /* Answers the request, exactly once (from start or a later event of
     * this worker). The host may be freed by it: touch nothing after. */
    void (*reply)(void *host, const pol_ireply_t *r);
    /* The host's log context for this request (the connection's), in buf. */
    char *(*log_ctx)(const void *host, char *buf, size_t n);
    void *host;                     /* the gateway's, for reply and log_ctx */
} pol_ireq_t;

/* One internal route, as registered by its module. */
typedef struct pol_iroute {
    const char *path;               /* the whole canonical path (no query),
                                     * compared as routes are (cfg_path_eq) */
    uint32_t classes;               /* bit i: class index i may call it (else 403) */
    int post_only;                  /* 1: POST only; 0: GET or POST (else 405) */
    uint64_t max_body;              /* body limit in bytes (else 413) */
    void *arg;                      /* the module's, for start */
    /* Starts the handler. It first stores its state in *slot (the gateway
     * passes that to cancel, and forgets it once the reply is given), then
     * answers through req->reply, now or later. req is the caller's: copy
     * what outlives the call. */
    void (*start)(void *arg, const pol_ireq_t *req, void **slot);
    /* The connection went away before the reply: free the state, cancel
     * everything in flight, never reply. */
    void (*cancel)(void *state);
} pol_iroute_t;

/* How a module adds its routes to the gateway's table (the table and the
 * entry are the gateway's and the caller's: the entry is copied, path must
 * live as long as the table's generation). Syscall-like. */
typedef int (*pol_iroute_add_fn)(void *table, const pol_iroute_t *route);

#endif
