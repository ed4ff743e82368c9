/* fuzz_target: the request-target and Host canonicalisers and route
 * matching alone (pol_target_canon, cfg_host_canon, pol_route), faster than
 * fuzz_request for the path rules.
 *
 * Input: "<host>\n<method>\n<target>". A canonical host is lowercase,
 * without a trailing dot, and canonicalises to itself.
 * Contract of pol_target_canon: a pol_target_err, or a canonical target no
 * longer than the input, the same whether checked only, written to a buffer
 * or written in place, that canonicalises to itself, and whose path has,
 * after decoding, no "." or ".." segment, no empty segment (unless merging
 * is asked for), no ';', '\' or segment ending in '.', no escape of an
 * unreserved character and only uppercase escapes; its escaped bytes >= 0x80
 * are well-formed UTF-8 with no look-alike of a delimiter (the ones the
 * review named, U+FF0F and the rest, listed here independently of
 * policy/target.c), and there are none at all with POL_TGT_ASCII_ONLY.
 * A matched route's prefix is a prefix of the path at a segment boundary.
 */
#include "../policy/policy.h"
#include "../config/host.h"
#include "../policy/target.h"

#include "fuzz.h"

static cfg_t *cfg;

static const char config_text[] =
    FUZZ_CONFIG_TLS
    FUZZ_CONFIG_API
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


static int unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Look-alikes of '.', '/', '\', ';', '%' that must never pass (NFKC or best-fit). */
static const unsigned long named_lookalikes[] = {
    0x0085, 0x00A5, 0x037E, 0x2024, 0x2025, 0x2026, 0x2044, 0x20A9, 0x2100, 0x2215, 0x2216, 0x2488,
    0xFE52, 0xFE54, 0xFE68, 0xFE6A, 0xFF05, 0xFF0E, 0xFF0F, 0xFF1B, 0xFF3C, 0x1F100,
};

/* The escaped bytes >= 0x80 of a canonical path, decoded from UTF-8 (the
 * decoder's validity is trusted; its result is checked): no named look-alike. */
static void check_code_points(const char *p, size_t n, unsigned flags)
{
    unsigned long cp = 0;
    int need = 0;
    for (size_t i = 0; i + 2 < n; i++) {
        if (p[i] != '%')
            continue;
        int v = hexval(p[i + 1]) * 16 + hexval(p[i + 2]);
        if (v < 0x80) {
            FUZZ_ASSERT(need == 0, "an ASCII escape inside a UTF-8 sequence in a canonical path");
            continue;
        }
        FUZZ_ASSERT(!(flags & POL_TGT_ASCII_ONLY), "escaped byte >= 0x80 passed with POL_TGT_ASCII_ONLY");
        if (need == 0) {
            need = v >= 0xF0 ? 3 : v >= 0xE0 ? 2 : 1;
            cp = (unsigned long)v & (need == 3 ? 0x07u : need == 2 ? 0x0Fu : 0x1Fu);
            continue;
        }
        cp = cp << 6 | ((unsigned long)v & 0x3Fu);
        if (--need)
            continue;
        for (size_t k = 0; k < sizeof(named_lookalikes) / sizeof(named_lookalikes[0]); k++)
            FUZZ_ASSERT(cp != named_lookalikes[k], "a look-alike of a delimiter in a canonical path");
        FUZZ_ASSERT(!(cp >= 0x80 && cp <= 0x9F), "a C1 control in a canonical path");
    }
    FUZZ_ASSERT(need == 0, "a truncated UTF-8 sequence in a canonical path");
}

/* Checks a canonical path (p, n bytes) segment by segment, decoded. */
static void check_canon_path(const char *p, size_t n, unsigned flags)
{
    check_code_points(p, n, flags);
    FUZZ_ASSERT(n >= 1 && p[0] == '/', "canonical path does not start with '/'");
    size_t seg = 1;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && p[i] != '/') {
            FUZZ_ASSERT(p[i] != ';' && p[i] != '\\' && p[i] != '#' && p[i] != '?',
                        "';', '\\', '#' or '?' in a canonical path");
            FUZZ_ASSERT((unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f,
                        "control, space or non-ASCII byte in a canonical path");
            if (p[i] == '%') {
                FUZZ_ASSERT(i + 2 < n, "truncated escape in a canonical path");
                int h = hexval(p[i + 1]), l = hexval(p[i + 2]);
                FUZZ_ASSERT(h >= 0 && l >= 0, "bad escape in a canonical path");
                FUZZ_ASSERT(!(p[i + 1] >= 'a' && p[i + 1] <= 'f') && !(p[i + 2] >= 'a' && p[i + 2] <= 'f'),
                            "lowercase escape in a canonical path");
                int c = h * 16 + l;
                FUZZ_ASSERT(!unreserved(c), "escaped unreserved character in a canonical path");
                FUZZ_ASSERT(c != '/' && c != '\\' && c != ';' && c != '%' && c >= 0x20 && c != 0x7f,
                            "encoded delimiter or control byte in a canonical path");
            }
            continue;
        }
        /* a segment p[seg, i): decoded, it is never "", ".", ".." and never ends in '.' */
        size_t k = i - seg;
        FUZZ_ASSERT(k > 0 || i == n, "empty segment in a canonical path");
        if (k > 0) {
            FUZZ_ASSERT(!(k == 1 && p[seg] == '.') && !(k == 2 && p[seg] == '.' && p[seg + 1] == '.'),
                        "dot segment in a canonical path");
            FUZZ_ASSERT(p[i - 1] != '.', "segment ending in '.' in a canonical path");
        }
        seg = i + 1;
    }
}

static long check_target(const char *t, size_t len, unsigned flags, size_t *plen)
{
    size_t pl = 0, pl2 = 0, pl3 = 0;
    long rc = pol_target_canon(t, len, flags, NULL, 0, NULL);
    char *out = malloc(len + 1), *inplace = malloc(len + 1);
    if (!out || !inplace)
        abort();
    long rc2 = pol_target_canon(t, len, flags, out, len, &pl);
    memcpy(inplace, t, len);
    long rc3 = pol_target_canon(inplace, len, flags, inplace, len, &pl2);
    FUZZ_ASSERT(rc == rc2 && rc == rc3, "check-only, buffer and in-place results differ");
    FUZZ_ASSERT(rc >= POL_TGT_NO_ROOM && rc != 0 && rc <= (long)len, "result out of range");
    if (rc > 0) {
        FUZZ_ASSERT(pl == pl2 && memcmp(out, inplace, (size_t)rc) == 0, "buffer and in-place outputs differ");
        FUZZ_ASSERT(pl >= 1 && pl <= (size_t)rc && (pl == (size_t)rc || out[pl] == '?'),
                    "path length does not end at the query");
        const char *q = memchr(t, '?', len);
        size_t qlen = q ? len - (size_t)(q - t) : 0;
        FUZZ_ASSERT((size_t)rc - pl == qlen && memcmp(out + pl, q ? q : "", qlen) == 0,
                    "the query was changed");
        check_canon_path(out, pl, flags);
        char *again = malloc((size_t)rc);
        if (!again)
            abort();
        long r4 = pol_target_canon(out, (size_t)rc, 0, again, (size_t)rc, &pl3);
        FUZZ_ASSERT(r4 == rc && pl3 == pl && memcmp(again, out, (size_t)rc) == 0,
                    "a canonical target does not canonicalise to itself");
        free(again);
    } else {
        const char *why = pol_target_strerror(rc);
        FUZZ_ASSERT(why && *why, "a refusal without an error text");
    }
    free(inplace);
    *plen = pl;
    if (rc > 0)
        memcpy((char *)t, out, (size_t)rc);   /* callers route on the canonical spelling */
    free(out);
    return rc;
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
    const char *hostv = s, *method = nl1 + 1;
    char *t = nl2 + 1;
    size_t tlen = size - (size_t)(t - s);
    char host[256];
    unsigned port = 0, port2 = 0;
    char again[256];
    long hc = cfg_host_canon(hostv, strlen(hostv), host, sizeof host, &port);
    FUZZ_ASSERT(hc >= CFG_HOST_NO_ROOM && hc != 0 && hc <= CFG_HOST_MAX + 2, "cfg_host_canon: result out of range");
    int hr = hc > 0 ? 0 : -1;
    if (hc > 0) {
        FUZZ_ASSERT(strlen(host) == (size_t)hc && port <= 65535, "canonical host length or port wrong");
        FUZZ_ASSERT(host[hc - 1] != '.', "canonical host ends in '.'");
        for (const char *c = host; *c; c++)
            FUZZ_ASSERT(*c > 0x20 && *c < 0x7f && !(*c >= 'A' && *c <= 'Z'), "host not lowercase printable");
        FUZZ_ASSERT(cfg_host_canon(host, (size_t)hc, again, sizeof again, &port2) == hc &&
                        strcmp(again, host) == 0 && port2 == 0,
                    "a canonical host does not canonicalise to itself");
    } else {
        FUZZ_ASSERT(cfg_host_strerror(hc) && *cfg_host_strerror(hc), "a refused host without a reason");
    }
    size_t pl = 0;
    unsigned flags = ((data[0] & 1) ? POL_TGT_MERGE_SLASHES : 0) | ((data[0] & 2) ? POL_TGT_ASCII_ONLY : 0);
    long n = check_target(t, tlen, flags, &pl);
    n = n > 0 ? (long)pl : -1;
    if (n >= 0) {
        const cfg_route_t *r = pol_route(cfg, hr == 0 ? host : NULL, t, (size_t)n, method);
        if (r) {
            size_t rl = strlen(r->path);
            int covers = rl <= (size_t)n && memcmp(r->path, t, rl) == 0 &&
                         (rl == (size_t)n || r->path[rl - 1] == '/' || t[rl] == '/');
            /* cfg_route_select: a prefix "/x/" also covers "/x" */
            covers = covers || (rl > 1 && r->path[rl - 1] == '/' && (size_t)n == rl - 1 &&
                                memcmp(r->path, t, (size_t)n) == 0);
            FUZZ_ASSERT(covers, "route prefix does not match the path at a segment boundary");
        }
    }
    free(s);
    return 0;
}
