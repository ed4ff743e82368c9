/* config/route: route selection (see route.h). */
#include "route.h"

#include <string.h>
#include <strings.h>

int cfg_path_eq(const cfg_t *cfg, const char *a, const char *b, size_t n)
{
    return (cfg->http.path_case_insensitive ? strncasecmp(a, b, n) : memcmp(a, b, n)) == 0;
}

/* How much of path prefix p covers: its length, its length less the
 * trailing slash (the "/x/" covers "/x" rule), or 0 if it does not. */
static size_t covered(const cfg_t *cfg, const char *p, const char *path, size_t plen)
{
    size_t n = strlen(p);
    if (n == 0)
        return 0;
    if (n <= plen && cfg_path_eq(cfg, p, path, n) &&
        (n == plen || p[n - 1] == '/' || path[n] == '/'))
        return n;
    if (n >= 2 && p[n - 1] == '/' && plen == n - 1 && cfg_path_eq(cfg, p, path, plen))
        return n - 1;
    return 0;
}

static int method_ok(const cfg_route_t *r, const char *method)
{
    if (!r->nmethods)
        return 1;
    for (size_t m = 0; m < r->nmethods; m++)
        if (strcmp(r->methods[m], method) == 0)
            return 1;
    return 0;
}

const cfg_route_t *cfg_route_select(const cfg_t *cfg, const char *host, const char *path,
                                    size_t plen, const char *method)
{
    const cfg_route_t *best = NULL;
    size_t best_len = 0;
    int best_full = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const cfg_route_t *r = &cfg->routes[i];
        if (r->host && (!host || strcmp(r->host, host) != 0))
            continue;
        size_t n = covered(cfg, r->path, path, plen);
        if (!n || !method_ok(r, method))
            continue;
        int full = n == strlen(r->path);
        if (best && (n < best_len ||
                     (n == best_len && ((!r->host && best->host) ||
                                        (!r->host == !best->host && (!full || best_full))))))
            continue;
        best = r;
        best_len = n;
        best_full = full;
    }
    return best;
}
