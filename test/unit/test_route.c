/* Unit tests: route matching, request-target and Host checks, route policy. */
#include <stdlib.h>
#include <string.h>

#include "../../policy/policy.h"
#include "check.h"

static cfg_route_t route(const char *host, const char *path, const char *method, uint32_t classes, int bearer)
{
    cfg_route_t r;
    memset(&r, 0, sizeof(r));
    r.host = (char *)host;
    r.path = (char *)path;
    if (method) {
        static char *m[8];
        static int nm;
        m[nm] = (char *)method;
        r.methods = &m[nm++];
        r.nmethods = 1;
    }
    r.allow_classes = classes;
    r.require_bearer = bearer;
    return r;
}

static const cfg_route_t *match(const cfg_t *cfg, const char *host, const char *target, const char *method)
{
    long n = pol_target_path(target, strlen(target));
    return n < 0 ? NULL : pol_route(cfg, host, target, (size_t)n, method);
}

int main(void)
{
    cfg_route_t rs[6] = {
        route(NULL, "/", NULL, 1, 1),
        route(NULL, "/api", NULL, 1, 1),
        route(NULL, "/api/v2/", NULL, 1, 1),
        route("api.example.com", "/api", NULL, 1, 1),
        route(NULL, "/certificates/", "POST", 3, 0),
        route(NULL, "/exact", NULL, 1, 1),
    };
    cfg_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.routes = rs;
    cfg.nroutes = 6;

    CHECK(match(&cfg, NULL, "/api", "GET") == &rs[1], "prefix matches itself");
    CHECK(match(&cfg, NULL, "/api/x?q=1", "GET") == &rs[1], "prefix matches below a segment");
    CHECK(match(&cfg, NULL, "/apix", "GET") == &rs[0], "prefix does not match inside a segment");
    CHECK(match(&cfg, NULL, "/api?x", "GET") == &rs[1], "query is not part of the path");
    CHECK(match(&cfg, NULL, "/api/v2/users", "GET") == &rs[2], "longest prefix wins");
    CHECK(match(&cfg, NULL, "/api/v2", "GET") == &rs[1], "/api/v2/ needs the slash");
    CHECK(match(&cfg, "api.example.com", "/api/x", "GET") == &rs[3], "host route wins at equal length");
    CHECK(match(&cfg, "other.example.com", "/api/x", "GET") == &rs[1], "host route skipped for other hosts");
    CHECK(match(&cfg, NULL, "/certificates/new", "POST") == &rs[4], "method route matches its method");
    CHECK(match(&cfg, NULL, "/certificates/new", "GET") == &rs[0], "method route skipped for other methods");

    cfg_t only_api = cfg;
    only_api.routes = &rs[1];
    only_api.nroutes = 1;
    CHECK(match(&only_api, NULL, "/other", "GET") == NULL, "no route: NULL (404)");

    /* request targets */
    CHECK(pol_target_path("/a/b?c=d", 8) == 4, "path length excludes query");
    CHECK(pol_target_path("/a/../b", 7) < 0, "dot-dot segment refused");
    CHECK(pol_target_path("/a/./b", 6) < 0, "dot segment refused");
    CHECK(pol_target_path("/a/..", 5) < 0, "trailing dot-dot refused");
    CHECK(pol_target_path("/a/%2e%2E/b", 11) < 0, "encoded dots refused");
    CHECK(pol_target_path("/a%2fb", 6) < 0, "encoded slash refused");
    CHECK(pol_target_path("/a%5cb", 6) < 0, "encoded backslash refused");
    CHECK(pol_target_path("/a\\b", 4) < 0, "backslash refused");
    CHECK(pol_target_path("/a%2", 4) < 0, "truncated escape refused");
    CHECK(pol_target_path("/a%zz", 5) < 0, "bad escape refused");
    CHECK(pol_target_path("/a%20b", 6) == 6, "ordinary escape allowed");
    CHECK(pol_target_path("/a..b/c", 7) == 7, "dots inside a segment allowed");
    CHECK(pol_target_path("http://x/a", 10) < 0, "absolute-form refused");
    CHECK(pol_target_path("*", 1) < 0, "asterisk-form refused");
    CHECK(pol_target_path("/a#f", 4) < 0, "fragment refused");
    CHECK(pol_target_path("/?a=../b", 8) == 1, "dots in the query are not path segments");

    char host[64];
    CHECK(pol_host("API.Example.com:8443", 20, host, sizeof(host)) == 0 && strcmp(host, "api.example.com") == 0,
          "host lowercased, port dropped");
    CHECK(pol_host("[::1]:8443", 10, host, sizeof(host)) == 0 && strcmp(host, "[::1]") == 0, "IPv6 literal host");
    CHECK(pol_host("a b", 3, host, sizeof(host)) < 0, "space in host refused");
    CHECK(pol_host("a:x", 3, host, sizeof(host)) < 0, "non-numeric port refused");
    CHECK(pol_host("", 0, host, sizeof(host)) < 0, "empty host refused");
    CHECK(pol_host("user@a", 6, host, sizeof(host)) < 0, "userinfo refused");

    /* policy */
    tls_identity_t dev = {.class_idx = 0}, boot = {.class_idx = 1};
    pol_verdict_t v;
    pol_check(&rs[1], &dev, "Bearer abc.def-_~+/=", 20, 1, &v);
    CHECK(v.status == 0, "device with bearer allowed");
    pol_check(&rs[1], &boot, "Bearer abc", 10, 1, &v);
    CHECK(v.status == 403, "bootstrap on device route: 403");
    pol_check(&rs[4], &boot, NULL, 0, 0, &v);
    CHECK(v.status == 0, "bootstrap on issuance route allowed without bearer");
    pol_check(&rs[1], &dev, NULL, 0, 0, &v);
    CHECK(v.status == 401 && v.bearer_challenge, "missing token: 401 with challenge");
    pol_check(&rs[1], &dev, "Basic dXNlcg==", 14, 1, &v);
    CHECK(v.status == 401, "Basic scheme: 401");
    pol_check(&rs[1], &dev, "Bearer ", 7, 1, &v);
    CHECK(v.status == 401, "empty bearer: 401");
    pol_check(&rs[1], &dev, "Bearer    ", 10, 1, &v);
    CHECK(v.status == 401, "blank bearer: 401");
    pol_check(&rs[1], &dev, "bearer abc", 10, 1, &v);
    CHECK(v.status == 0, "scheme is case-insensitive");
    pol_check(&rs[1], &dev, "Bearer a b", 10, 1, &v);
    CHECK(v.status == 401, "token with a space: 401");
    pol_check(&rs[1], &dev, "Bearer abc", 10, 2, &v);
    CHECK(v.status == 401, "two Authorization headers: 401");
    pol_check(&rs[1], NULL, "Bearer abc", 10, 1, &v);
    CHECK(v.status == 403, "no identity: 403");
    return check_done();
}
