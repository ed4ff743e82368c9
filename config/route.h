/* config/route: which route a request takes.
 *
 * The one route choice of the gateway: the request router (pol_route) and
 * the load-time check that the issuance endpoints are covered
 * (config_issuance.c) both call cfg_route_select(), and the issuance
 * endpoints are recognised with cfg_path_eq(), the comparison routes use. So
 * what --check promises is what a request gets, and http.path_case applies
 * to every path the gateway compares.
 */
#ifndef PORTCULLIS_CONFIG_ROUTE_H
#define PORTCULLIS_CONFIG_ROUTE_H

#include <stddef.h>

#include "config.h"

/* Whether the n bytes at a and b are the same path characters: equal, or
 * equal ignoring ASCII case under http.path_case: insensitive. */
int cfg_path_eq(const cfg_t *cfg, const char *a, const char *b, size_t n);

/* The host set a request for canonical host chooses its route from: the
 * routes naming that host if any route does (the returned pointer is that
 * routes[].host), else NULL, the generic set (the routes without a host).
 * host NULL: the generic set. */
const char *cfg_route_host_set(const cfg_t *cfg, const char *host);

/* The longest Allow list cfg_route_choose() writes (methods that do not fit
 * are left out of it). */
#define CFG_ROUTE_ALLOW_MAX 256

typedef struct {
    const cfg_route_t *route;   /* the route serving the request; NULL: refused */
    int status;                 /* 0 (route set); 404: no route of the host set covers
                                   the path; 405: some do, none takes the method */
    const char *host_set;       /* cfg_route_host_set(): the host named, NULL: generic */
    char allow[CFG_ROUTE_ALLOW_MAX]; /* for 405: the methods the covering routes take,
                                        "GET, PUT"; "" otherwise */
} cfg_route_choice_t;

/* The route for a request with canonical host (config/host.h; NULL: none,
 * e.g. for the load-time check of the generic set), canonical path
 * (path[0..plen), no query) and method, into *out. Pure, no allocation.
 *
 * First the host chooses the set (as nginx chooses the server, then the
 * location): when any route names the host, ONLY the routes naming it;
 * otherwise only the routes without a host. A route of another set is never
 * taken, whatever its prefix or methods.
 *
 * Within the set, a route's path prefix p covers the path when
 *  - p equals the path, or the path continues p at a segment boundary
 *    ("/api" covers "/api" and "/api/x", not "/apix");
 *  - a p ending in '/' covers anything below it ("/x/" covers "/x/y"),
 *    and also the path without that slash ("/x/" covers "/x"), as
 *    frameworks with non-strict routing serve both alike.
 * The longest covered prefix wins (the slash-less match of "/x/" counts as
 * "/x"). Of the routes covering that length, those whose methods are empty
 * or name method take the request: one that matched its prefix in full
 * first, then the first listed. If none takes the method the result is 405
 * with the methods they take: a shorter prefix is never tried. */
void cfg_route_choose(const cfg_t *cfg, const char *host, const char *path, size_t plen,
                      const char *method, cfg_route_choice_t *out);

/* cfg_route_choose()'s route (NULL for 404 and 405). */
const cfg_route_t *cfg_route_select(const cfg_t *cfg, const char *host, const char *path,
                                    size_t plen, const char *method);

#endif
