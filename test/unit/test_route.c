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
    CHECK(match(&cfg, NULL, "/api/v2", "GET") == &rs[2], "/api/v2/ also covers /api/v2");
    CHECK(match(&cfg, "api.example.com", "/api/x", "GET") == &rs[3], "host route wins at equal length");
    CHECK(match(&cfg, "other.example.com", "/api/x", "GET") == &rs[1], "host route skipped for other hosts");
    CHECK(match(&cfg, NULL, "/certificates/new", "POST") == &rs[4], "method route matches its method");
    CHECK(match(&cfg, NULL, "/certificates/new", "GET") == NULL,
          "a method route does not fall through to a shorter prefix for other methods");
    {
        cfg_route_choice_t ch;
        cfg_route_choose(&cfg, NULL, "/certificates/new", 17, "GET", &ch);
        CHECK(ch.status == 405 && !ch.route && strcmp(ch.allow, "POST") == 0, "405 with Allow: POST");
        cfg_route_choose(&cfg, NULL, "/nothing", 8, "GET", &ch);
        CHECK(ch.status == 0 && ch.route == &rs[0] && !ch.allow[0], "served: status 0, no Allow");
    }

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
    /* look-alikes of the delimiters (NFKC or best-fit), in several spellings */
    {
        static const unsigned long named[] = {0x2024, 0x2025, 0x2026, 0x2044, 0x2215, 0x2216, 0xFE52,
                                              0xFE54, 0xFE68, 0xFF0E, 0xFF0F, 0xFF1B, 0xFF3C, 0xFF05,
                                              0x037E, 0xFE6A, 0x2100, 0x2488, 0x249B, 0x1F100, 0x00A5,
                                              0x20A9, 0x0085, 0x0080, 0x009F, 0x29F5};
        /* '@' stands for the escaped look-alike */
        static const char *const shapes[] = {"/@", "/@internal", "/a/b@/c", "/@@", "/x%7E@%41",
                                             "/caf%C3%A9@", "/@?q=1", "/a@/%2e", "/%69@%2e%2e"};
        int bad = 0;
        for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
            unsigned long cp = named[i];
            unsigned char u[4];
            size_t n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (n == 2)
                u[0] = (unsigned char)(0xC0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 0x3F));
            else if (n == 3)
                u[0] = (unsigned char)(0xE0 | cp >> 12), u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)),
                u[2] = (unsigned char)(0x80 | (cp & 0x3F));
            else
                u[0] = (unsigned char)(0xF0 | cp >> 18), u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F)),
                u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (unsigned char)(0x80 | (cp & 0x3F));
            bad += !pol_target_lookalike(cp);
            for (int sp = 0; sp < 3; sp++) {   /* upper, lower, mixed hex case */
                static const char up[] = "0123456789ABCDEF", lo[] = "0123456789abcdef";
                char e[16] = "";
                for (size_t k = 0; k < n; k++) {
                    const char *hx = sp == 0 ? up : sp == 1 ? lo : (k & 1 ? lo : up);
                    e[3 * k] = '%', e[3 * k + 1] = hx[u[k] >> 4], e[3 * k + 2] = hx[u[k] & 15];
                    e[3 * k + 3] = 0;
                }
                for (size_t h = 0; h < sizeof(shapes) / sizeof(shapes[0]); h++) {
                    char t[128];
                    size_t w = 0;
                    for (const char *q = shapes[h]; *q; q++) {
                        size_t add = *q == '@' ? strlen(e) : 1;
                        memcpy(t + w, *q == '@' ? e : q, add);
                        w += add;
                    }
                    t[w] = 0;
                    bad += !refused(t, 0, POL_TGT_LOOKALIKE) || !refused(t, POL_TGT_MERGE_SLASHES, POL_TGT_LOOKALIKE) ||
                           !refused(t, POL_TGT_ASCII_ONLY, POL_TGT_NON_ASCII);
                }
            }
        }
        CHECK(bad == 0, "every listed look-alike refused in every spelling (hex case, position, next to escapes)");
    }
    CHECK(refused("/%ef%bc%8finternal", 0, POL_TGT_LOOKALIKE), "%EF%BC%8F (U+FF0F) refused");
    CHECK(refused("/a/%E2%80%A5/b", 0, POL_TGT_LOOKALIKE), "U+2025 TWO DOT LEADER as a segment refused");
    CHECK(refused("/%EF%BC%8E%EF%BC%8E/internal", 0, POL_TGT_LOOKALIKE), "fullwidth '..' segment refused");
    CHECK(refused("/%ef%bc", 0, POL_TGT_BAD_UTF8), "a truncated look-alike is bad UTF-8");
    CHECK(!pol_target_lookalike(0x3002) && !pol_target_lookalike(0xFF61) && !pol_target_lookalike(0xE9) &&
              !pol_target_lookalike(0x7F) && !pol_target_lookalike(0x2E) && !pol_target_lookalike(0xA0) &&
              !pol_target_lookalike(0x1F600) && !pol_target_lookalike(0x10FFFF) && !pol_target_lookalike(0xFF49),
          "ordinary characters (and U+3002) are not look-alikes");
    CHECK(canon_is("/%E3%80%82/caf%c3%a9/%F0%9F%98%80", 0, "/%E3%80%82/caf%C3%A9/%F0%9F%98%80"),
          "U+3002, accented letters and emoji are accepted by default");
    CHECK(canon_is("/%EF%BD%89nternal", 0, "/%EF%BD%89nternal"), "letter look-alikes accepted by default");
    CHECK(refused("/caf%C3%A9", POL_TGT_ASCII_ONLY, POL_TGT_NON_ASCII), "ASCII_ONLY: UTF-8 escape refused");
    CHECK(refused("/%EF%BD%89nternal", POL_TGT_ASCII_ONLY, POL_TGT_NON_ASCII), "ASCII_ONLY: letter look-alike refused");
    CHECK(refused("/%c0%af", POL_TGT_ASCII_ONLY, POL_TGT_NON_ASCII), "ASCII_ONLY: any byte >= 0x80 refused");
    CHECK(canon_is("/a%7e%20b?q=%C3%A9", POL_TGT_ASCII_ONLY, "/a~%20b?q=%C3%A9"),
          "ASCII_ONLY: ASCII escapes and the query unaffected");
    CHECK(refused("*", 0, POL_TGT_NOT_ORIGIN), "the asterisk form is not a path");

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

    /* Host: accepted spellings map to exactly one canonical host */
    static const struct {
        const char *in, *want;
        unsigned port;
    } hosts[] = {
        {"internal.example", "internal.example", 0},
        {"Internal.EXAMPLE", "internal.example", 0},
        {"internal.example.", "internal.example", 0},
        {"internal.example.:8443", "internal.example", 8443},
        {"INTERNAL.example.:08443", "internal.example", 8443},
        {"API.Example.com:8443", "api.example.com", 8443},
        {"localhost", "localhost", 0},
        {"a-b.c-d", "a-b.c-d", 0},
        {"xn--bcher-kva.example", "xn--bcher-kva.example", 0},
        {"1.example", "1.example", 0},
        {"0x7f.example", "0x7f.example", 0},
        {"127.0.0.1", "127.0.0.1", 0},
        {"127.0.0.1.", "127.0.0.1", 0},
        {"127.0.0.1:1", "127.0.0.1", 1},
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"255.255.255.255", "255.255.255.255", 0},
        {"[::1]", "[::1]", 0},
        {"[::1]:8443", "[::1]", 8443},
        {"[0:0:0:0:0:0:0:1]", "[::1]", 0},
        {"[2001:DB8::1]", "[2001:db8::1]", 0},
        {"[2001:0db8:0000:0000:0000:0000:0000:0001]:443", "[2001:db8::1]", 443},
        {"[1::2:3:4:5:6:7]", "[1:0:2:3:4:5:6:7]", 0},   /* RFC 5952: one zero group is not "::" */
        {"[::FFFF:127.0.0.1]", "[::ffff:127.0.0.1]", 0},
    };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        char out[CFG_HOST_MAX + 1];
        unsigned port = 99999;
        long n = cfg_host_canon(hosts[i].in, strlen(hosts[i].in), out, sizeof out, &port);
        int ok = n == (long)strlen(hosts[i].want) && !strcmp(out, hosts[i].want) && port == hosts[i].port;
        if (!ok)
            fprintf(stderr, "  host %s -> %s (rc %ld, port %u), want %s port %u\n", hosts[i].in,
                    n >= 0 ? out : "(refused)", n, port, hosts[i].want, hosts[i].port);
        CHECK(ok, "host canonical form");
    }
    char label63[70], name253[300], name254[300];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    snprintf(name253, sizeof name253, "%s.%s.%s.%.61s", label63, label63, label63, label63);
    snprintf(name254, sizeof name254, "%s.%s.%s.%.62s", label63, label63, label63, label63);
    char label64[80];
    snprintf(label64, sizeof label64, "%sa.example", label63);
    CHECK(strlen(name253) == 253 && cfg_host_canon(name253, 253, canon_buf, 254, NULL) == 253,
          "253-character name accepted");
    const struct {
        const char *in;
        long want;
    } bad_hosts[] = {
        {"", CFG_HOST_EMPTY},
        {":8443", CFG_HOST_EMPTY},
        {"internal%2Eexample", CFG_HOST_BAD_CHAR},
        {"internal%2eexample", CFG_HOST_BAD_CHAR},
        {"internal_example", CFG_HOST_BAD_CHAR},
        {"user@internal.example", CFG_HOST_BAD_CHAR},
        {"a b", CFG_HOST_BAD_CHAR},
        {" internal.example", CFG_HOST_BAD_CHAR},
        {"internal.example ", CFG_HOST_BAD_CHAR},
        {"internal.example\t", CFG_HOST_BAD_CHAR},
        {"internal.example/x", CFG_HOST_BAD_CHAR},
        {"internal.example,other", CFG_HOST_BAD_CHAR},
        {"internal\\example", CFG_HOST_BAD_CHAR},
        {"int\xc3\xa9rnal.example", CFG_HOST_BAD_CHAR},
        {"internal.example..", CFG_HOST_BAD_LABEL},
        {"internal..example", CFG_HOST_BAD_LABEL},
        {".internal.example", CFG_HOST_BAD_LABEL},
        {".", CFG_HOST_BAD_LABEL},
        {"-internal.example", CFG_HOST_BAD_LABEL},
        {"internal-.example", CFG_HOST_BAD_LABEL},
        {label64, CFG_HOST_BAD_LABEL},
        {name254, CFG_HOST_TOO_LONG},
        {"127.1", CFG_HOST_BAD_IPV4},
        {"0x7f.1", CFG_HOST_BAD_IPV4},
        {"0x7f000001", CFG_HOST_BAD_IPV4},
        {"0x7F.0.0.1", CFG_HOST_BAD_IPV4},
        {"2130706433", CFG_HOST_BAD_IPV4},
        {"127.0.0.01", CFG_HOST_BAD_IPV4},
        {"0127.0.0.1", CFG_HOST_BAD_IPV4},
        {"256.0.0.1", CFG_HOST_BAD_IPV4},
        {"1.2.3.4.5", CFG_HOST_BAD_IPV4},
        {"example.123", CFG_HOST_BAD_IPV4},
        {"example.0x", CFG_HOST_BAD_IPV4},
        {"[::1", CFG_HOST_BAD_IPV6},
        {"[]", CFG_HOST_BAD_IPV6},
        {"[::1%25eth0]", CFG_HOST_BAD_IPV6},
        {"[fe80::1%eth0]", CFG_HOST_BAD_IPV6},
        {"[v1.x]", CFG_HOST_BAD_IPV6},
        {"[127.0.0.1]", CFG_HOST_BAD_IPV6},
        {"[1:2:3:4:5:6:7:8:9]", CFG_HOST_BAD_IPV6},
        {"[::1]x", CFG_HOST_BAD_PORT},
        {"[::1]:", CFG_HOST_BAD_PORT},
        {"internal.example:", CFG_HOST_BAD_PORT},
        {"internal.example:0", CFG_HOST_BAD_PORT},
        {"internal.example:65536", CFG_HOST_BAD_PORT},
        {"internal.example:99999999999", CFG_HOST_BAD_PORT},
        {"internal.example:+80", CFG_HOST_BAD_PORT},
        {"internal.example:80:80", CFG_HOST_BAD_PORT},
        {"internal.example:80 ", CFG_HOST_BAD_PORT},
        {"internal.example:http", CFG_HOST_BAD_PORT},
    };
    for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        char out[CFG_HOST_MAX + 1];
        long n = cfg_host_canon(bad_hosts[i].in, strlen(bad_hosts[i].in), out, sizeof out, NULL);
        if (n != bad_hosts[i].want)
            fprintf(stderr, "  host \"%s\": rc %ld, want %ld\n", bad_hosts[i].in, n, bad_hosts[i].want);
        CHECK(n == bad_hosts[i].want, "host refused with its reason");
        CHECK(strcmp(cfg_host_strerror(n), "the Host header is malformed") != 0, "host error has a message");
    }
    CHECK(cfg_host_canon("a\0b", 3, canon_buf, 10, NULL) == CFG_HOST_BAD_CHAR, "NUL in host refused");
    CHECK(cfg_host_canon("internal.example", 16, canon_buf, 16, NULL) == CFG_HOST_NO_ROOM, "no room: refused");
    CHECK(cfg_host_canon("[::1]", 5, canon_buf, 5, NULL) == CFG_HOST_NO_ROOM, "no room (IPv6): refused");

    /* a host-specific route takes every spelling of its host (the gateway
     * matches on the canonical host) */
    cfg_route_t rs3[2] = {
        route("internal.example", "/", NULL, 1, 1),
        route(NULL, "/", NULL, 3, 0),
    };
    cfg_t c3;
    memset(&c3, 0, sizeof(c3));
    c3.routes = rs3;
    c3.nroutes = 2;
    static const char *const spellings[] = {"internal.example", "INTERNAL.Example", "internal.example.",
                                            "internal.example.:8443", "Internal.Example.:443"};
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        char hc[CFG_HOST_MAX + 1];
        CHECK(cfg_host_canon(spellings[i], strlen(spellings[i]), hc, sizeof hc, NULL) > 0 &&
                  match(&c3, hc, "/x", "GET") == &rs3[0], "every spelling of the host takes its route");
    }

    /* a prefix ending in '/' also covers the path without the slash */
    cfg_route_t rs4[5] = {
        route(NULL, "/", NULL, 3, 0),
        route(NULL, "/internal/", NULL, 1, 1),
        route(NULL, "/exact/", NULL, 1, 1),
        route(NULL, "/exact", NULL, 2, 0),
        route("h.example", "/hosted/", NULL, 1, 1),
    };
    cfg_t c4;
    memset(&c4, 0, sizeof(c4));
    c4.routes = rs4;
    c4.nroutes = 5;
    CHECK(match(&c4, NULL, "/internal", "GET") == &rs4[1], "/internal/ covers /internal");
    CHECK(match(&c4, NULL, "/internal?x=1", "GET") == &rs4[1], "/internal/ covers /internal?query");
    CHECK(match(&c4, NULL, "/internal/", "GET") == &rs4[1], "/internal/ covers itself");
    CHECK(match(&c4, NULL, "/internal/x", "GET") == &rs4[1], "/internal/ covers below it");
    CHECK(match(&c4, NULL, "/internals", "GET") == &rs4[0], "/internal/ does not cover /internals");
    CHECK(match(&c4, NULL, "/interna", "GET") == &rs4[0], "/internal/ does not cover /interna");
    CHECK(match(&c4, NULL, "/INTERNAL", "GET") == &rs4[0], "case-sensitive: /INTERNAL is another path");
    CHECK(match(&c4, NULL, "/exact", "GET") == &rs4[3], "an exact /exact route beats /exact/'s slash-less match");
    CHECK(match(&c4, NULL, "/exact/", "GET") == &rs4[2], "/exact/ wins for /exact/");
    CHECK(match(&c4, NULL, "/exact/x", "GET") == &rs4[2], "/exact/ wins below it");
    CHECK(match(&c4, "h.example", "/hosted", "GET") == &rs4[4], "host route: /hosted/ covers /hosted");
    CHECK(match(&c4, "other.example", "/hosted", "GET") == &rs4[0], "host route skipped for other hosts");
    c4.http.path_case_insensitive = 1;
    CHECK(match(&c4, NULL, "/INTERNAL", "GET") == &rs4[1], "insensitive: /internal/ covers /INTERNAL");
    cfg_route_t rs5[2] = {route("h.example", "/a", NULL, 1, 1), route(NULL, "/a/", NULL, 2, 0)};
    cfg_t c5;
    memset(&c5, 0, sizeof(c5));
    c5.routes = rs5;
    c5.nroutes = 2;
    CHECK(match(&c5, "h.example", "/a", "GET") == &rs5[0], "at equal length the host route wins");
    CHECK(cfg_path_eq(&c5, "/Certificates/", "/certificates/", 14) == 0, "cfg_path_eq: exact by default");
    c5.http.path_case_insensitive = 1;
    CHECK(cfg_path_eq(&c5, "/Certificates/", "/certificates/", 14) == 1, "cfg_path_eq: insensitive folds case");

    /* a host named by a route chooses only among its own routes (server,
     * then location): a longer generic prefix never takes its requests, a
     * method its routes exclude is 405, a path they do not cover 404 */
    static char *get_only[] = {"GET"}, *put_get[] = {"PUT", "GET"};
    cfg_route_t rs6[6] = {
        route("internal.example", "/", NULL, 1, 0),
        route(NULL, "/certificates/", NULL, 3, 0),
        route(NULL, "/", NULL, 3, 0),
        route("admin.example", "/", NULL, 4, 0),
        route("narrow.example", "/only/", NULL, 1, 0),
        route("admin.example", "/rw/", NULL, 4, 0),
    };
    rs6[3].methods = get_only;
    rs6[3].nmethods = 1;
    rs6[5].methods = put_get;
    rs6[5].nmethods = 2;
    cfg_t c6;
    memset(&c6, 0, sizeof(c6));
    c6.routes = rs6;
    c6.nroutes = 6;
    cfg_route_choice_t ch6;
    CHECK(match(&c6, "internal.example", "/certificates/x", "GET") == &rs6[0],
          "host confinement: a longer generic prefix does not take a named host's request");
    CHECK(match(&c6, "other.example", "/certificates/x", "GET") == &rs6[1], "other hosts: generic routes");
    CHECK(match(&c6, NULL, "/x", "GET") == &rs6[2], "no host: generic routes");
    CHECK(match(&c6, "admin.example", "/x", "GET") == &rs6[3], "named host, its method: its route");
    cfg_route_choose(&c6, "admin.example", "/x", 2, "POST", &ch6);
    CHECK(!ch6.route && ch6.status == 405 && strcmp(ch6.allow, "GET") == 0 &&
              ch6.host_set == rs6[3].host,
          "named host, method its route excludes: 405 Allow: GET, no generic fall-through");
    cfg_route_choose(&c6, "admin.example", "/rw/a", 5, "DELETE", &ch6);
    CHECK(ch6.status == 405 && strcmp(ch6.allow, "PUT, GET") == 0,
          "405 names the methods of the longest covering prefix only");
    CHECK(match(&c6, "admin.example", "/rw/a", "PUT") == &rs6[5], "longest prefix of the host, its method");
    cfg_route_choose(&c6, "narrow.example", "/x", 2, "GET", &ch6);
    CHECK(!ch6.route && ch6.status == 404 && !ch6.allow[0],
          "named host, path none of its routes cover: 404, not the generic /");
    cfg_route_choose(&c6, "narrow.example", "/certificates/issue", 19, "POST", &ch6);
    CHECK(ch6.status == 404, "named host without a route for the issuance prefix: 404");
    CHECK(cfg_route_host_set(&c6, "admin.example") == rs6[3].host && !cfg_route_host_set(&c6, "x.example") &&
              !cfg_route_host_set(&c6, NULL),
          "cfg_route_host_set: the first route's host, or NULL (generic)");
    /* duplicate methods across routes of one length are listed once */
    cfg_route_t rs7[2] = {route(NULL, "/a", "GET", 1, 0), route(NULL, "/a", "GET", 2, 0)};
    rs7[1].methods = put_get;
    rs7[1].nmethods = 2;
    cfg_t c7;
    memset(&c7, 0, sizeof(c7));
    c7.routes = rs7;
    c7.nroutes = 2;
    cfg_route_choose(&c7, NULL, "/a", 2, "POST", &ch6);
    CHECK(ch6.status == 405 && strcmp(ch6.allow, "GET, PUT") == 0, "Allow lists each method once");

    /* policy */
    tls_identity_t dev = {.class_idx = 0}, boot = {.class_idx = 1};
    pol_verdict_t v;
    pol_check(&rs[1], &dev, "Bearer abc.def-_~+/=", 20, 1, &v);
    CHECK(v.err == PC_E_NONE, "device with bearer allowed");
    pol_check(&rs[1], &boot, "Bearer abc", 10, 1, &v);
    CHECK(v.err == PC_E_CLASS_NOT_ALLOWED, "bootstrap on device route: 403");
    pol_check(&rs[4], &boot, NULL, 0, 0, &v);
    CHECK(v.err == PC_E_NONE, "bootstrap on issuance route allowed without bearer");
    pol_check(&rs[1], &dev, NULL, 0, 0, &v);
    CHECK(v.err == PC_E_MISSING_TOKEN && v.bearer_challenge, "missing token: 401 with challenge");
    pol_check(&rs[1], &dev, "Basic dXNlcg==", 14, 1, &v);
    CHECK(v.err == PC_E_MISSING_TOKEN, "Basic scheme: 401");
    pol_check(&rs[1], &dev, "Bearer ", 7, 1, &v);
    CHECK(v.err == PC_E_MISSING_TOKEN, "empty bearer: 401");
    pol_check(&rs[1], &dev, "Bearer    ", 10, 1, &v);
    CHECK(v.err == PC_E_MISSING_TOKEN, "blank bearer: 401");
    pol_check(&rs[1], &dev, "bearer abc", 10, 1, &v);
    CHECK(v.err == PC_E_NONE, "scheme is case-insensitive");
    pol_check(&rs[1], &dev, "Bearer a b", 10, 1, &v);
    CHECK(v.err == PC_E_INVALID_TOKEN, "token with a space: 401");
    pol_check(&rs[1], &dev, "Bearer abc", 10, 2, &v);
    CHECK(v.err == PC_E_INVALID_REQUEST, "two Authorization headers: 400 invalid_request");
    pol_check(&rs[1], NULL, "Bearer abc", 10, 1, &v);
    CHECK(v.err == PC_E_CLASS_NOT_ALLOWED, "no identity: 403");
    return check_done();
}
