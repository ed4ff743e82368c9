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

/* The route for a request with canonical host (config/host.h; NULL: none
 * matched by any route, e.g. for the load-time check), canonical path
 * (path[0..plen), no query) and method; NULL if none.
 *
 * A route matches when its host is NULL or equal to host, its methods are
 * empty or name method, and its path prefix p covers the path:
 *  - p equals the path, or the path continues p at a segment boundary
 *    ("/api" covers "/api" and "/api/x", not "/apix");
 *  - a p ending in '/' covers anything below it ("/x/" covers "/x/y"),
 *    and also the path without that slash ("/x/" covers "/x"), as
 *    frameworks with non-strict routing serve both alike.
 * Of the matching routes the one with the longest covered prefix wins (the
 * slash-less match of "/x/" counts as "/x"); at equal length a route naming
 * the host wins, then one that matched its prefix in full, then the first
 * listed. */
const cfg_route_t *cfg_route_select(const cfg_t *cfg, const char *host, const char *path,
                                    size_t plen, const char *method);

#endif
