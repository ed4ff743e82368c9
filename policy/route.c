/* policy: route matching and the per-route checks (class, bearer). */
#include "policy.h"

#include <string.h>
#include <strings.h>

int pol_host(const char *v, size_t len, char *out, size_t outlen)
{
    size_t n = len;
    if (len && v[0] == '[') {   /* IPv6 literal */
        const char *e = memchr(v, ']', len);
        if (!e)
            return -1;
        n = (size_t)(e - v) + 1;
        if (n < len && v[n] != ':')
            return -1;
    } else {
        const char *c = memchr(v, ':', len);
        if (c)
            n = (size_t)(c - v);
    }
    if (n == 0 || n >= outlen)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '/' || ch == '@' || ch == ',')
            return -1;
        out[i] = (char)((ch >= 'A' && ch <= 'Z') ? ch + 32 : ch);
    }
    out[n] = '\0';
    for (size_t i = n + 1; i < len; i++)   /* the port, if any, is digits */
        if (v[i] < '0' || v[i] > '9')
            return -1;
    return 0;
}

static int prefix_match(const char *prefix, const char *path, size_t plen, int nocase)
{
    size_t n = strlen(prefix);
    if (n > plen || (nocase ? strncasecmp(prefix, path, n) : memcmp(prefix, path, n)) != 0)
        return 0;
    return n == plen || prefix[n - 1] == '/' || path[n] == '/';
}

const cfg_route_t *pol_route(const cfg_t *cfg, const char *host, const char *path, size_t plen,
                             const char *method)
{
    const cfg_route_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const cfg_route_t *r = &cfg->routes[i];
        if (r->host && (!host || strcmp(r->host, host) != 0))
            continue;
        if (!prefix_match(r->path, path, plen, cfg->http.path_case_insensitive))
            continue;
        if (r->nmethods) {
            size_t m = 0;
            while (m < r->nmethods && strcmp(r->methods[m], method) != 0)
                m++;
            if (m == r->nmethods)
                continue;
        }
        size_t n = strlen(r->path);
        if (!best || n > best_len || (n == best_len && r->host && !best->host)) {
            best = r;
            best_len = n;
        }
    }
    return best;
}

static void deny(pol_verdict_t *v, int status, const char *code, const char *msg, int challenge)
{
    v->status = status;
    v->code = code;
    v->message = msg;
    v->bearer_challenge = challenge;
}

void pol_check(const cfg_route_t *r, const tls_identity_t *id, const char *authz, size_t alen,
               int nauthz, pol_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    if (!id || id->class_idx < 0 || id->class_idx >= 32 ||
        !(r->allow_classes & (1u << id->class_idx))) {
        deny(v, 403, "forbidden_class", "the client certificate's class may not use this route", 0);
        return;
    }
    if (!r->require_bearer)
        return;
    if (nauthz == 0) {
        deny(v, 401, "missing_token", "an Authorization: Bearer token is required", 1);
        return;
    }
    if (nauthz > 1) {
        deny(v, 401, "invalid_request", "more than one Authorization header", 1);
        return;
    }
    /* RFC 6750: "Bearer" (case-insensitive), one or more spaces, b64token */
    if (alen < 7 || strncasecmp(authz, "Bearer ", 7) != 0) {
        deny(v, 401, "missing_token", "the Authorization scheme must be Bearer", 1);
        return;
    }
    size_t i = 7;
    while (i < alen && authz[i] == ' ')
        i++;
    if (i == alen) {
        deny(v, 401, "missing_token", "the bearer token is empty", 1);
        return;
    }
    for (; i < alen; i++) {
        char c = authz[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=')) {
            deny(v, 401, "invalid_token", "the bearer token is malformed", 1);
            return;
        }
    }
}
