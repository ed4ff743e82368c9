/* fuzz_target: request-target checks and route matching alone
 * (policy/route.c pol_target_path, pol_host, pol_route), faster than
 * fuzz_request for the path rules.
 *
 * Input: "<host>\n<method>\n<target>". Contract of pol_target_path: -1, or
 * the length n of the path (the target up to '?'), and then the path starts
 * with '/', has no control byte, space or '\', no "." or ".." segment, and
 * no %XX escape of '.', '/', '\' or NUL. A matched route's prefix is a
 * prefix of the path at a segment boundary.
 */
#include "../policy/policy.h"

#include "fuzz.h"

static cfg_t *cfg;

static const char config_text[] =
    "listeners:\n  - address: 127.0.0.1:8443\n"
    "tls:\n"
    "  certificates:\n    - cert: @D@/server.crt\n      key: @D@/server.key\n"
    "  classes:\n"
    "    - name: device\n      ca: @D@/device-ca.crt\n"
    "    - name: bootstrap\n      ca: @D@/bootstrap-ca.crt\n"
    "upstreams:\n  - name: api\n    servers: [127.0.0.1:9080]\n"
    "routes:\n"
    "  - {path: /certificates/, upstream: api, allow_classes: [bootstrap, device], require_bearer: false}\n"
    "  - {path: /internal/, upstream: api, allow_classes: [device]}\n"
    "  - {path: /internal/public, upstream: api, allow_classes: [bootstrap]}\n"
    "  - {host: api.example.com, path: /api, methods: [GET, POST], upstream: api, allow_classes: [device]}\n"
    "  - {host: \"[::1]\", path: /v6, upstream: api, allow_classes: [device]}\n"
    "  - {path: /, upstream: api, allow_classes: [device]}\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    cfg = fuzz_config(config_text);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void check_path(const char *t, size_t len, long n)
{
    FUZZ_ASSERT(n >= -1 && n <= (long)len, "pol_target_path: length out of range");
    if (n < 0)
        return;
    size_t p = (size_t)n;
    FUZZ_ASSERT(p >= 1 && t[0] == '/', "accepted path does not start with '/'");
    FUZZ_ASSERT(p == len || t[p] == '?', "path does not end at the query");
    size_t seg = 1;
    for (size_t i = 0; i < len; i++)
        FUZZ_ASSERT((unsigned char)t[i] > 0x20 && t[i] != 0x7f, "control byte or space accepted");
    for (size_t i = 1; i <= p; i++) {
        if (i == p || t[i] == '/') {
            size_t k = i - seg;
            FUZZ_ASSERT(!(k == 1 && t[seg] == '.') && !(k == 2 && t[seg] == '.' && t[seg + 1] == '.'),
                        "dot segment accepted");
            seg = i + 1;
            continue;
        }
        FUZZ_ASSERT(t[i] != '\\' && t[i] != '#', "backslash or fragment accepted");
        if (t[i] == '%') {
            FUZZ_ASSERT(i + 2 < p || (i + 2 < len && i + 2 < p), "truncated escape accepted");
            int h = hexval(t[i + 1]), l = hexval(t[i + 2]);
            FUZZ_ASSERT(h >= 0 && l >= 0, "bad escape accepted");
            int c = h * 16 + l;
            FUZZ_ASSERT(c != '.' && c != '/' && c != '\\' && c != 0, "encoded separator accepted");
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_strndup(data, size);
    char *nl1 = memchr(s, '\n', size);
    char *nl2 = nl1 ? memchr(nl1 + 1, '\n', size - (size_t)(nl1 + 1 - s)) : NULL;
    if (!nl2) {
        free(s);
        return 0;
    }
    *nl1 = *nl2 = '\0';
    const char *hostv = s, *method = nl1 + 1, *t = nl2 + 1;
    size_t tlen = size - (size_t)(t - s);
    char host[256];
    int hr = pol_host(hostv, strlen(hostv), host, sizeof host);
    FUZZ_ASSERT(hr == 0 || hr == -1, "pol_host: not syscall-like");
    if (hr == 0)
        for (const char *c = host; *c; c++)
            FUZZ_ASSERT(*c > 0x20 && *c < 0x7f && !(*c >= 'A' && *c <= 'Z'), "host not lowercase printable");
    long n = pol_target_path(t, tlen);
    check_path(t, tlen, n);
    if (n >= 0) {
        const cfg_route_t *r = pol_route(cfg, hr == 0 ? host : NULL, t, (size_t)n, method);
        if (r) {
            size_t pl = strlen(r->path);
            FUZZ_ASSERT(pl <= (size_t)n && memcmp(r->path, t, pl) == 0 &&
                            (pl == (size_t)n || r->path[pl - 1] == '/' || t[pl] == '/'),
                        "route prefix does not match the path at a segment boundary");
        }
    }
    free(s);
    return 0;
}
