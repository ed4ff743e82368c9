/* config/route: route selection (see route.h). */
#include "route.h"

#include <stdio.h>
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

const char *cfg_route_host_set(const cfg_t *cfg, const char *host)
{
    if (!host)
        return NULL;
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].host && strcmp(cfg->routes[i].host, host) == 0)
            return cfg->routes[i].host;
    return NULL;
}

/* Whether route r belongs to the set of host set (NULL: the generic set). */
static int in_set(const cfg_route_t *r, const char *set)
{
    return set ? r->host && strcmp(r->host, set) == 0 : !r->host;
}

/* Appends each method of r not yet in allow (a ", "-separated list of
 * cap bytes); a method that does not fit is left out. */
static void add_allow(char *allow, size_t cap, const cfg_route_t *r)
{
    for (size_t m = 0; m < r->nmethods; m++) {
        const char *s = r->methods[m];
        size_t have = strlen(allow), n = strlen(s);
        int dup = 0;
        for (const char *p = allow; *p && !dup; p += strcspn(p, ","), p += *p ? 2 : 0)
            dup = strncmp(p, s, n) == 0 && (p[n] == ',' || p[n] == '\0');
        if (dup || have + n + 3 > cap)
            continue;
        snprintf(allow + have, cap - have, "%s%s", have ? ", " : "", s);
    }
}

void cfg_route_choose(const cfg_t *cfg, const char *host, const char *path, size_t plen,
                      const char *method, cfg_route_choice_t *out)
{
    const char *set = cfg_route_host_set(cfg, host);
    size_t best_len = 0;
    memset(out, 0, sizeof *out);
    out->host_set = set;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        size_t n = in_set(&cfg->routes[i], set) ? covered(cfg, cfg->routes[i].path, path, plen) : 0;
        if (n > best_len)
            best_len = n;
    }
    if (!best_len) {
        out->status = 404;
        return;
    }
    int best_full = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const cfg_route_t *r = &cfg->routes[i];
        if (!in_set(r, set) || covered(cfg, r->path, path, plen) != best_len)
            continue;
        if (!method_ok(r, method)) {
            add_allow(out->allow, sizeof out->allow, r);
            continue;
        }
        int full = best_len == strlen(r->path);
        if (!out->route || (full && !best_full)) {
            out->route = r;
            best_full = full;
        }
    }
    if (out->route)
        out->allow[0] = '\0';
    else
        out->status = 405;
}

const cfg_route_t *cfg_route_select(const cfg_t *cfg, const char *host, const char *path,
                                    size_t plen, const char *method)
{
    cfg_route_choice_t ch;
    cfg_route_choose(cfg, host, path, plen, method, &ch);
    return ch.route;
}
