/* issuance/iss_int: what the module's files share (iss.c builds it, flow.c
 * runs the requests on it). */
#ifndef PORTCULLIS_ISSUANCE_ISS_INT_H
#define PORTCULLIS_ISSUANCE_ISS_INT_H

#include "issuance.h"
#include "iss.h"

enum iss_kind { ISS_R_CHALLENGE = 0, ISS_R_ISSUE, ISS_R_RENEW, ISS_R_COUNT };

typedef struct {
    struct iss_gen *g;
    enum iss_kind kind;
} iss_route_arg_t;

struct iss_gen {
    const cfg_t *cfg;
    const cfg_issuance_t *is;
    iss_issuer_t *issuer;
    void **attest;                        /* per platform: its attester's instance
                                           * (NULL: refused, no attester) */
    char *paths[ISS_R_COUNT];             /* <path_prefix><name> */
    iss_route_arg_t args[ISS_R_COUNT];
};

/* The internal routes' handlers (pol_iroute_t start and cancel); arg is an
 * iss_route_arg_t. */
void iss_flow_start(void *arg, const pol_ireq_t *req, void **slot);
void iss_flow_cancel(void *state);

#endif
