/* Unit tests: route matching, request-target and Host checks, route policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config_int.h"
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

static char canon_buf[4096];

/* The canonical target of t (NUL-terminated in canon_buf), or NULL if refused;
 * *rc gets pol_target_canon's result. */
static const char *canon(const char *t, unsigned flags, long *rc)
{
    size_t plen = 0;
    long n = pol_target_canon(t, strlen(t), flags, canon_buf, sizeof(canon_buf) - 1, &plen);
    if (rc)
        *rc = n;
    if (n < 0)
        return NULL;
    canon_buf[n] = '\0';
    return canon_buf;
}

static const cfg_route_t *match(const cfg_t *cfg, const char *host, const char *target, const char *method)
{
    size_t plen = 0;
    long n = pol_target_canon(target, strlen(target), 0, canon_buf, sizeof(canon_buf), &plen);
    return n < 0 ? NULL : pol_route(cfg, host, canon_buf, plen, method);
}

/* t is accepted and canonicalised to exactly want (separate buffer and in place) */
static int canon_is(const char *t, unsigned flags, const char *want)
{
    long rc;
    const char *got = canon(t, flags, &rc);
    if (!got || strcmp(got, want) != 0) {
        fprintf(stderr, "  %s -> %s (rc %ld), want %s\n", t, got ? got : "(refused)", rc, want);
        return 0;
    }
    char inplace[4096];
    size_t len = strlen(t), plen = 0;
    memcpy(inplace, t, len);
    long n = pol_target_canon(inplace, len, flags, inplace, len, &plen);
    if (n != (long)strlen(want) || memcmp(inplace, want, (size_t)n) != 0) {
        fprintf(stderr, "  in place: %s -> %.*s\n", t, (int)(n < 0 ? 0 : n), inplace);
        return 0;
    }
    const char *q = strchr(want, '?');
    if (plen != (q ? (size_t)(q - want) : strlen(want))) {
        fprintf(stderr, "  %s: path length %zu\n", t, plen);
        return 0;
    }
    return pol_target_canon(t, len, flags, NULL, 0, NULL) == n;
}

static int refused(const char *t, unsigned flags, long want)
{
    long rc = pol_target_canon(t, strlen(t), flags, NULL, 0, NULL);
    if (rc != want)
        fprintf(stderr, "  %s: rc %ld, want %ld\n", t, rc, want);
    return rc == want;
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

    /* request targets: accepted ones map to exactly the canonical form */
    CHECK(canon_is("/a/b?c=d", 0, "/a/b?c=d"), "plain target unchanged");
    CHECK(canon_is("/", 0, "/"), "root");
    CHECK(canon_is("/api/", 0, "/api/"), "trailing slash kept");
    CHECK(canon_is("/%69nternal/x", 0, "/internal/x"), "encoded letter decoded");
    CHECK(canon_is("/%49NTERNAL", 0, "/INTERNAL"), "encoded capital decoded, case kept");
    CHECK(canon_is("/%7Euser/%7e", 0, "/~user/~"), "encoded tilde decoded");
    CHECK(canon_is("/a%2Db%5fc%30", 0, "/a-b_c0"), "encoded - _ digit decoded");
    CHECK(canon_is("/a%2Eb", 0, "/a.b"), "encoded dot inside a segment decoded");
    CHECK(canon_is("/.well-known/x", 0, "/.well-known/x"), "leading dot in a segment allowed");
    CHECK(canon_is("/a..b/c", 0, "/a..b/c"), "dots inside a segment allowed");
    CHECK(canon_is("/a%20b", 0, "/a%20b"), "space escape kept");
    CHECK(canon_is("/a%3fb%23c%7b", 0, "/a%3Fb%23c%7B"), "other escapes: hex uppercased");
    CHECK(canon_is("/a%21b%40", 0, "/a%21b%40"), "escaped sub-delims stay escaped");
    CHECK(canon_is("/a!$&'()*+,=:@b", 0, "/a!$&'()*+,=:@b"), "raw sub-delims, ':' and '@' allowed");
    CHECK(canon_is("/caf%c3%a9", 0, "/caf%C3%A9"), "UTF-8 escapes kept, uppercased");
    CHECK(canon_is("/%F0%9F%98%80", 0, "/%F0%9F%98%80"), "4-byte UTF-8 escape");
    CHECK(canon_is("/%7Ea?x=%7e&y=../;%2f//", 0, "/~a?x=%7e&y=../;%2f//"), "query kept byte for byte");
    CHECK(canon_is("/?a=../b", 0, "/?a=../b"), "dots in the query are not path segments");
    CHECK(canon_is("/a?", 0, "/a?"), "empty query kept");
    CHECK(canon_is("//internal/", POL_TGT_MERGE_SLASHES, "/internal/"), "merge: leading //");
    CHECK(canon_is("/a//b///c//", POL_TGT_MERGE_SLASHES, "/a/b/c/"), "merge: inner and trailing //");
    CHECK(canon_is("/a//b?x=//", POL_TGT_MERGE_SLASHES, "/a/b?x=//"), "merge leaves the query");

    CHECK(refused("", 0, POL_TGT_NOT_ORIGIN), "empty target refused");
    CHECK(refused("http://x/a", 0, POL_TGT_NOT_ORIGIN), "absolute-form refused");
    CHECK(refused("*", 0, POL_TGT_NOT_ORIGIN), "asterisk-form refused");
    CHECK(refused("a/b", 0, POL_TGT_NOT_ORIGIN), "relative path refused");
    CHECK(refused("/a#f", 0, POL_TGT_FRAGMENT), "fragment refused");
    CHECK(refused("/a?b#f", 0, POL_TGT_FRAGMENT), "fragment after a query refused");
    CHECK(refused("/a\x01", 0, POL_TGT_BAD_BYTE), "control byte refused");
    CHECK(refused("/a b", 0, POL_TGT_BAD_BYTE), "space refused");
    CHECK(refused("/a\x7f", 0, POL_TGT_BAD_BYTE), "DEL refused");
    CHECK(refused("/caf\xc3\xa9", 0, POL_TGT_BAD_BYTE), "raw byte >= 0x80 refused");
    CHECK(refused("/a?q=\xc3\xa9", 0, POL_TGT_BAD_BYTE), "raw byte >= 0x80 in the query refused");
    CHECK(refused("/a?q=\t", 0, POL_TGT_BAD_BYTE), "control in the query refused");
    CHECK(refused("/a%2", 0, POL_TGT_BAD_ESCAPE), "truncated escape refused");
    CHECK(refused("/a%", 0, POL_TGT_BAD_ESCAPE), "bare % refused");
    CHECK(refused("/a%zz", 0, POL_TGT_BAD_ESCAPE), "bad escape refused");
    CHECK(refused("/a%2?x", 0, POL_TGT_BAD_ESCAPE), "escape cut by the query refused");
    CHECK(refused("/a%2fb", 0, POL_TGT_ENCODED_DELIM), "%2f refused");
    CHECK(refused("/a%2Fb", 0, POL_TGT_ENCODED_DELIM), "%2F refused");
    CHECK(refused("/a%5cb", 0, POL_TGT_ENCODED_DELIM), "%5c refused");
    CHECK(refused("/a%3bb", 0, POL_TGT_ENCODED_DELIM), "%3b refused");
    CHECK(refused("/a%00", 0, POL_TGT_ENCODED_DELIM), "%00 refused");
    CHECK(refused("/a%0a", 0, POL_TGT_ENCODED_DELIM), "encoded LF refused");
    CHECK(refused("/a%7f", 0, POL_TGT_ENCODED_DELIM), "encoded DEL refused");
    CHECK(refused("/%2569nternal", 0, POL_TGT_ENCODED_DELIM), "%25 (double encoding) refused");
    CHECK(refused("/a;b", 0, POL_TGT_PARAM), "; refused");
    CHECK(refused("/x/..;/internal/", 0, POL_TGT_PARAM), "..; refused");
    CHECK(refused("/api;jsessionid=1/x", 0, POL_TGT_PARAM), ";param refused");
    CHECK(refused("/a\\b", 0, POL_TGT_BACKSLASH), "backslash refused");
    CHECK(refused("/a\"b", 0, POL_TGT_BAD_CHAR), "raw quote refused");
    const char *badc = "<>[]^`{|}";
    for (const char *b = badc; *b; b++) {
        char t[8] = {'/', 'a', *b, 0};
        CHECK(refused(t, 0, POL_TGT_BAD_CHAR), "raw character that must be escaped refused");
    }
    const char *dots[] = {"/a/../b", "/a/./b", "/a/..", "/a/.", "/.", "/..", "/./", "/%2e%2E/b",
                          "/a/%2e", "/a/.%2e/b", "/a/%2e./b", "/a/%2E%2E", "/x/%2e%2e/internal"};
    for (size_t i = 0; i < sizeof(dots) / sizeof(dots[0]); i++)
        CHECK(refused(dots[i], 0, POL_TGT_DOT_SEGMENT), "dot segment refused in any spelling");
    CHECK(refused("/a/../b", POL_TGT_MERGE_SLASHES, POL_TGT_DOT_SEGMENT), "dot segment refused when merging");
    const char *ends[] = {"/internal./x", "/internal.", "/a/.../b", "/a%2e/", "/internal%20/",
                          "/a/b.%2E"};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        CHECK(refused(ends[i], 0, POL_TGT_SEGMENT_END), "segment ending in '.' or encoded space refused");
    const char *empties[] = {"//", "//internal/", "/a//b", "/a//", "///"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++)
        CHECK(refused(empties[i], 0, POL_TGT_EMPTY_SEGMENT), "empty segment refused by default");
    const char *utf8[] = {"/%C0%AF", "/%E0%80%AF", "/%c3", "/%c3/", "/%c3a", "/%80", "/%ED%A0%80",
                          "/%F4%90%80%80", "/%F5%80%80%80", "/%FF", "/%c3%c3", "/%e2%82"};
    for (size_t i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++)
        CHECK(refused(utf8[i], 0, POL_TGT_BAD_UTF8), "invalid UTF-8 escapes refused");
    char small[4];
    CHECK(pol_target_canon("/abcdef", 7, 0, small, sizeof(small), NULL) == POL_TGT_NO_ROOM,
          "too small an output buffer refused");
    for (long rc = -1; rc >= POL_TGT_NO_ROOM; rc--)
        CHECK(pol_target_strerror(rc) && strlen(pol_target_strerror(rc)) > 10, "every reason has a message");

    /* properties over generated targets: checking alone, canonicalising
     * into a buffer and in place agree; the canonical form is no longer
     * than the target and is its own canonical form */
    {
        static const char al[] = "/%.;\\?#aA~2eEfF0c3C/..%2e";
        unsigned seed = 1, bad = 0, accepted = 0;
        char t[40], o[40], ip[40], o2[40];
        for (int it = 0; it < 200000; it++) {
            seed = seed * 1103515245u + 12345u;
            size_t len = 1 + (seed >> 16) % 24;
            t[0] = '/';
            for (size_t i = 1; i < len; i++) {
                seed = seed * 1103515245u + 12345u;
                unsigned r = (seed >> 16) % 40;
                t[i] = r < sizeof(al) - 1 ? al[r] : (char)((seed >> 8) & 0xff);
            }
            unsigned f = it & 1 ? POL_TGT_MERGE_SLASHES : 0;
            size_t pl = 0, pl2 = 0;
            long n = pol_target_canon(t, len, f, o, sizeof(o), &pl);
            memcpy(ip, t, len);
            long k = pol_target_canon(ip, len, f, ip, len, NULL);
            bad += pol_target_canon(t, len, f, NULL, 0, NULL) != n || k != n ||
                   (n >= 0 && memcmp(ip, o, (size_t)n) != 0);
            if (n < 0)
                continue;
            accepted++;
            long n2 = pol_target_canon(o, (size_t)n, 0, o2, sizeof(o2), &pl2);
            bad += (size_t)n > len || n2 != n || memcmp(o, o2, (size_t)n) != 0 || pl2 != pl;
        }
        CHECK(bad == 0 && accepted > 10000, "generated targets: check, copy and in place agree; idempotent");
    }

    /* a route path the config accepts is its own canonical form, so a
     * request can always be spelled to match it; the config refuses the rest */
    const char *rpaths[] = {"/", "/api", "/api/", "/a.b/c-d_e~f/", "/.well-known/", "/caf%C3%A9/",
                            "/a%20b", "/%7B%7D", "/a%7e", "/%7E", "/a%2F", "/a%21", "/a!", "/a:b",
                            "/a@b", "/a;b", "/a//b", "//", "/a/../b", "/a/./", "/a.", "/a%20/",
                            "/a..b", "/...", "/a\\b", "/a%", "/a%2", "/a%zz", "/a%c3%a9"};
    for (size_t i = 0; i < sizeof(rpaths) / sizeof(rpaths[0]); i++) {
        const char *why = cfgp_route_path_error(rpaths[i]);
        const char *got = canon(rpaths[i], 0, NULL);
        if (!why)
            CHECK(got && strcmp(got, rpaths[i]) == 0, "config-accepted route path is canonical");
        else
            CHECK(!got || strcmp(got, rpaths[i]) != 0 || strpbrk(rpaths[i], "!:@") || strstr(rpaths[i], "%21"),
                  "config refuses only paths that are not canonical (or have two spellings)");
    }
    CHECK(cfgp_route_path_error("/api/") == NULL && cfgp_route_path_error("/caf%C3%A9/") == NULL,
          "ordinary route paths accepted");
    CHECK(cfgp_route_path_error("/a%7E") && cfgp_route_path_error("/a%21") && cfgp_route_path_error("/a!"),
          "route paths with two request spellings refused");

    /* the bypass spellings cannot reach the route they spell */
    cfg_route_t rs2[3] = {
        route(NULL, "/", NULL, 1, 1),
        route(NULL, "/internal/", NULL, 2, 1),
        route(NULL, "/certificates/", NULL, 3, 0),
    };
    cfg_t c2;
    memset(&c2, 0, sizeof(c2));
    c2.routes = rs2;
    c2.nroutes = 3;
    CHECK(match(&c2, NULL, "/%69nternal/x", "GET") == &rs2[1], "/%69nternal/ takes /internal/");
    CHECK(match(&c2, NULL, "/%69%6E%74%65%72%6E%61%6C/x", "GET") == &rs2[1], "fully encoded takes /internal/");
    CHECK(match(&c2, NULL, "//internal/", "GET") == NULL, "//internal/ refused");
    CHECK(match(&c2, NULL, "/certificates/..;/internal/", "GET") == NULL, "..; refused");
    CHECK(match(&c2, NULL, "/INTERNAL/x", "GET") == &rs2[0], "case-sensitive by default");
    c2.http.path_case_insensitive = 1;
    CHECK(match(&c2, NULL, "/INTERNAL/x", "GET") == &rs2[1], "path_case insensitive: /INTERNAL/ takes /internal/");
    CHECK(match(&c2, NULL, "/%49nTeRnAl/x", "GET") == &rs2[1], "insensitive: encoded and mixed case");
    CHECK(match(&c2, NULL, "/Certificates/x", "GET") == &rs2[2], "insensitive: /Certificates/");
    CHECK(match(&c2, NULL, "/internals", "GET") == &rs2[0], "insensitive: still at a segment boundary");

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
