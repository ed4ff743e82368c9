/* gateway/iroute: the table of internal routes of a generation (routes the
 * gateway answers itself, registered by the modules that answer them:
 * issuance/). The entry type and the handler's request and reply are the
 * neutral ones of policy/iroute.h; request.c runs them. Contracts:
 * runtime.h. */
#include <stdlib.h>
#include <string.h>

#include "../config/route.h"
#include "runtime.h"

int gw_iroutes_add(void *table, const pol_iroute_t *route)
{
    gw_gen_t *g = table;
    pol_iroute_t *v = realloc(g->iroutes, (g->niroutes + 1) * sizeof(*v));
    if (!v)
        return -1;
    g->iroutes = v;
    g->iroutes[g->niroutes++] = *route;
    return 0;
}

const pol_iroute_t *gw_iroute_match(const gw_gen_t *g, const char *path, size_t plen)
{
    for (size_t i = 0; i < g->niroutes; i++) {
        const pol_iroute_t *r = &g->iroutes[i];
        if (strlen(r->path) == plen && cfg_path_eq(g->cfg, path, r->path, plen))
            return r;
    }
    return NULL;
}
