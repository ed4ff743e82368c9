/* iss.c: the issuance module's generation state (the CA, every platform's
 * attester instance) and its internal routes. Contracts: iss.h. */
#include "attester.h"
#include "iss_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h"

void iss_gen_free(iss_gen_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; g->attest && i < g->is->nplatforms; i++) {
        const iss_attester_t *a = iss_attester_find(g->is->platforms[i].provider);
        if (a && g->attest[i])
            a->free(g->attest[i]);
    }
    free(g->attest);
    iss_issuer_free(g->issuer);
    for (int k = 0; k < ISS_R_COUNT; k++)
        free(g->paths[k]);
    free(g);
}

/* Every platform's attester instance. 0, or -1 after reporting. */
static int load_platforms(iss_gen_t *g, void (*report)(void *, const char *), void *arg)
{
    const cfg_issuance_t *is = g->is;
    char err[512];
    int rc = 0;
    g->attest = calloc(is->nplatforms ? is->nplatforms : 1, sizeof(*g->attest));
    if (!g->attest) {
        report(arg, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < is->nplatforms; i++) {
        const cfg_platform_t *pl = &is->platforms[i];
        const iss_attester_t *a = iss_attester_find(pl->provider);
        if (a && !(g->attest[i] = a->load(pl, err, sizeof err))) {
            report(arg, err);
            rc = -1;
        }
    }
    return rc;
}

iss_gen_t *iss_gen_load(const cfg_t *cfg, void (*report)(void *arg, const char *msg), void *arg)
{
    char err[512];
    int rc = 0;
    iss_gen_t *g = calloc(1, sizeof *g);
    if (!g) {
        report(arg, "out of memory");
        return NULL;
    }
    g->cfg = cfg;
    g->is = cfg->issuance;
    if (!(g->issuer = iss_issuer_load(g->is, err, sizeof err))) {
        report(arg, err);
        rc = -1;
    }
    if (load_platforms(g, report, arg) < 0)
        rc = -1;
    if (rc < 0) {
        iss_gen_free(g);
        return NULL;
    }
    return g;
}

int iss_gen_routes(iss_gen_t *g, pol_iroute_add_fn add, void *table)
{
    static const char *const names[ISS_R_COUNT] = {"challenge", "issue", "renew"};
    const cfg_issuance_t *is = g->is;
    uint32_t dev = 1u << is->device_class_idx, boot = 1u << is->bootstrap_class_idx;
    const uint32_t classes[ISS_R_COUNT] = {dev | boot, boot, dev};
    for (int k = 0; k < ISS_R_COUNT; k++) {
        size_t n = strlen(is->path_prefix) + strlen(names[k]) + 1;
        if (!g->paths[k] && !(g->paths[k] = malloc(n)))
            return -1;
        snprintf(g->paths[k], n, "%s%s", is->path_prefix, names[k]);
        g->args[k].g = g;
        g->args[k].kind = (enum iss_kind)k;
        pol_iroute_t r = {
            .path = g->paths[k],
            .classes = classes[k],
            .post_only = k != ISS_R_CHALLENGE,
            .max_body = is->max_body_bytes,
            .arg = &g->args[k],
            .start = iss_flow_start,
            .cancel = iss_flow_cancel,
        };
        if (add(table, &r) < 0)
            return -1;
    }
    return 0;
}
