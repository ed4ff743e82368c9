/* config_policy.c: the request-policy parts of the configuration: the
 * top-level rate_limits and connection_limits sections, and the per-route
 * rate_limits, rate_limit_headers and jwt keys.
 *
 * config.c walks the document and hands the relevant nodes here; problems are
 * reported through its error callback, so they join the same sorted
 * "file:line:col: path: message" list. cfgp_policy_free() releases what is
 * allocated here (called from cfg_free()).
 */
#include "config_int.h"
#include "walk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "../policy/jwt.h"

#define NF(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_LIMITS 1000
#define MAX_ROUTE_LIMITS CFG_ROUTE_MAX_LIMITS
#define MAX_AUDIENCES 16
#define MAX_BURST 1000000000ULL
#define MAX_RATE_PER_S 1000000ULL   /* the GCRA interval must be at least 1 microsecond */
#define HOUR_MS 3600000ULL

typedef struct {
    cfgw_t w;
    cfg_t *cfg;
} pctx_t;

#define F(n) {.name = (n)}

/* "<n>/s", "<n>/m" or "<n>/h"; at most 1,000,000 per second. */
static int get_rate(pctx_t *c, yaml_node_t *n, const char *path, uint64_t *count,
                    uint64_t *period_ms)
{
    const char *s = cfgw_scalar(&c->w, n, path, "a rate like \"100/s\", \"6000/m\" or \"1000/h\"");
    if (!s)
        return -1;
    const char *slash = strchr(s, '/');
    char num[24];
    uint64_t v, per;
    if (!slash || slash == s || (size_t)(slash - s) >= sizeof num || slash[1] == '\0' ||
        slash[2] != '\0' || !strchr("smh", slash[1])) {
        cfgw_err(&c->w, n, path,
                 "expected a rate \"<n>/s\", \"<n>/m\" or \"<n>/h\" (e.g. \"100/s\"), "
                 "got \"%.60s\"", s);
        return -1;
    }
    memcpy(num, s, (size_t)(slash - s));
    num[slash - s] = '\0';
    per = slash[1] == 's' ? 1000 : slash[1] == 'm' ? 60000 : HOUR_MS;
    if (cfgp_parse_u64(num, &v) < 0 || v < 1 || v > MAX_RATE_PER_S * (per / 1000)) {
        cfgw_err(&c->w, n, path, "the count in \"%.60s\" must be an integer from 1 up to %llu per "
                 "second", s, (unsigned long long)MAX_RATE_PER_S);
        return -1;
    }
    *count = v;
    *period_ms = per;
    return 0;
}

/* ---------------------------------------------------------------- rate_limits */

static void parse_rate_limits(pctx_t *c, yaml_node_t *n)
{
    static const char *const keys[] = {"device_id", "fingerprint", "token", "ip", "route"};
    static const char *const scopes[] = {"local", "global"};
    static const char *const modes[] = {"fail_open", "fail_closed"};
    cfg_t *cfg = c->cfg;
    yaml_node_item_t *it;
    long cnt = cfgw_seq_range(&c->w, n, "rate_limits", 1, MAX_LIMITS, &it);
    if (cnt < 0)
        return;
    cfg->rate_limits = cfgp_xcalloc((size_t)cnt, sizeof *cfg->rate_limits);
    cfg->nrate_limits = (size_t)cnt;
    for (size_t i = 0; i < (size_t)cnt; i++) {
        enum { NAME, KEY, RATE, BURST, SCOPE, UNAVAILABLE };
        cfgw_fld_t f[] = {F("name"), F("key"), F("rate"), F("burst"), F("scope"),
                          F("on_redis_unavailable")};
        cfg_rate_limit_t *l = &cfg->rate_limits[i];
        yaml_node_t *item = cfgw_node(&c->w, it[i]);
        char p[CFGW_PATHLEN], q[CFGW_PATHLEN];
        const char *s;
        int v, ok = 1;
        uint64_t u;
        cfgw_pi(p, "rate_limits", i);
        if (cfgw_map(&c->w, item, p, f, NF(f)) < 0)
            continue;
        for (size_t k = NAME; k <= RATE; k++) {
            if (!f[k].val) {
                cfgw_err(&c->w, item, p, "missing required key \"%s\"", f[k].name);
                ok = 0;
            }
        }
        if (f[NAME].val && (s = cfgw_scalar(&c->w, f[NAME].val, cfgw_pk(q, p, "name"),
                                            "a rate limit name"))) {
            if (!cfgp_is_name(s, 1)) {
                cfgw_err(&c->w, f[NAME].val, q, "invalid rate limit name \"%.60s\": use 1..63 "
                         "characters of A-Z, a-z, 0-9, _, - and .", s);
                ok = 0;
            } else {
                long j = cfgp_find_name(cfg->rate_limits[0].name, sizeof *l, i, s);
                if (j >= 0) {
                    cfgw_err(&c->w, f[NAME].val, q, "duplicate rate limit name \"%s\" (also "
                             "rate_limits[%ld])", s, j);
                    ok = 0;
                }
            }
        } else {
            ok = 0;
        }
        if (f[KEY].val && cfgw_enum(&c->w, f[KEY].val, cfgw_pk(q, p, "key"), keys, NF(keys),
                                    &v) == 0)
            l->key = v;
        if (f[RATE].val && get_rate(c, f[RATE].val, cfgw_pk(q, p, "rate"), &l->count,
                                    &l->period_ms) < 0)
            ok = 0;
        l->burst = l->count;
        if (f[BURST].val &&
            cfgw_num(&c->w, f[BURST].val, cfgw_pk(q, p, "burst"), 'u', 1, MAX_BURST, &u) == 0)
            l->burst = u;
        if (f[SCOPE].val &&
            cfgw_enum(&c->w, f[SCOPE].val, cfgw_pk(q, p, "scope"), scopes, NF(scopes), &v) == 0)
            l->scope = v;
        if (f[UNAVAILABLE].val &&
            cfgw_enum(&c->w, f[UNAVAILABLE].val, cfgw_pk(q, p, "on_redis_unavailable"), modes,
                      NF(modes), &v) == 0) {
            l->fail_closed = v;
            if (l->scope != CFG_RL_GLOBAL)
                cfgw_err(&c->w, f[UNAVAILABLE].key, p, "on_redis_unavailable applies only to "
                         "scope: global");
        }
        if (ok)
            snprintf(l->name, sizeof l->name, "%s", (const char *)f[NAME].val->data.scalar.value);
        else
            l->name[0] = '\0';   /* marks the list as not resolvable (no cascading errors) */
    }
}

/* ---------------------------------------------------------------- connection_limits */

static void parse_conn_limits(pctx_t *c, yaml_node_t *n)
{
    cfg_connlimits_t *l = &c->cfg->connection_limits;
    cfgw_fld_t f[] = {F("per_ip_rate"), F("per_ip_burst"), F("per_ip_concurrent")};
    uint64_t v;
    if (cfgw_map(&c->w, n, "connection_limits", f, NF(f)) < 0)
        return;
    if (f[0].val && get_rate(c, f[0].val, "connection_limits.per_ip_rate", &l->per_ip_count,
                             &l->per_ip_period_ms) == 0)
        l->per_ip_burst = l->per_ip_count;
    if (f[1].val &&
        cfgw_num(&c->w, f[1].val, "connection_limits.per_ip_burst", 'u', 1, MAX_BURST, &v) == 0) {
        if (!f[0].val)
            cfgw_err(&c->w, f[1].key, "connection_limits", "per_ip_burst needs per_ip_rate");
        else
            l->per_ip_burst = v;
    }
    if (f[2].val && cfgw_num(&c->w, f[2].val, "connection_limits.per_ip_concurrent", 'u', 0,
                             1000000, &v) == 0)
        l->per_ip_concurrent = (uint32_t)v;
}

void cfgp_policy_top(cfgw_t *w, cfg_t *cfg, yaml_node_t *rate_limits,
                     yaml_node_t *conn_limits)
{
    pctx_t c = {.w = *w, .cfg = cfg};
    if (rate_limits)
        parse_rate_limits(&c, rate_limits);
    if (conn_limits)
        parse_conn_limits(&c, conn_limits);
}

/* ---------------------------------------------------------------- routes */

/* A limit keyed on the bearer token counts what the client sends: unless the
 * route validates tokens (jwt), any new string is a new key with a fresh
 * quota, and the limit limits nothing. */
static void token_key_needs_jwt(pctx_t *c, const cfg_rate_limit_t *l, yaml_node_t *m,
                                const char *q, int has_jwt)
{
    if (l->key != CFG_RL_TOKEN || has_jwt)
        return;
    cfgw_err(&c->w, m, q, "rate limit \"%s\" counts per bearer token, but this route does not "
             "validate tokens (no jwt section; require_bearer checks only that a token is "
             "present), so a client gets a fresh quota with every new string it sends; add a "
             "jwt section to the route, or use a limit with key device_id, fingerprint or ip",
             l->name);
}

static void route_limits(pctx_t *c, cfg_route_t *r, const char *path, yaml_node_t *n,
                         int has_jwt)
{
    cfg_t *cfg = c->cfg;
    yaml_node_item_t *it;
    char q[CFGW_PATHLEN], list[512];
    int resolvable = 1;
    long cnt = cfgw_seq_range(&c->w, n, path, 1, MAX_ROUTE_LIMITS, &it);
    if (cnt < 0)
        return;
    for (size_t i = 0; i < cfg->nrate_limits; i++)
        if (!cfg->rate_limits[i].name[0])
            resolvable = 0;
    r->rate_limits = cfgp_xcalloc((size_t)cnt, sizeof *r->rate_limits);
    for (size_t i = 0; i < (size_t)cnt; i++) {
        yaml_node_t *m = cfgw_node(&c->w, it[i]);
        const char *s = cfgw_scalar(&c->w, m, cfgw_pi(q, path, i), "a name from rate_limits");
        if (!s || !resolvable)
            continue;
        long k = cfg->nrate_limits ? cfgp_find_name(cfg->rate_limits[0].name,
                                                    sizeof cfg->rate_limits[0],
                                                    cfg->nrate_limits, s)
                                   : -1;
        if (k < 0) {
            if (cfg->nrate_limits) {
                cfgp_name_list(list, sizeof list, cfg->rate_limits[0].name,
                               sizeof cfg->rate_limits[0], cfg->nrate_limits);
                cfgw_err(&c->w, m, q,
                         "rate limit \"%.60s\" is not defined in rate_limits (defined: %s)",
                         s, list);
            } else {
                cfgw_err(&c->w, m, q, "rate limit \"%.60s\" is not defined (there is no top-level "
                         "rate_limits list)", s);
            }
            continue;
        }
        size_t j;
        for (j = 0; j < r->nrate_limits && r->rate_limits[j] != (size_t)k; j++)
            ;
        if (j < r->nrate_limits) {
            cfgw_err(&c->w, m, q, "rate limit \"%s\" is listed twice", s);
            continue;
        }
        token_key_needs_jwt(c, &cfg->rate_limits[k], m, q, has_jwt);
        r->rate_limits[r->nrate_limits++] = (size_t)k;
    }
}

/* Header names the gateway sets or controls itself. */
static int reserved_header(const char *h)
{
    static const char *const names[] = {
        "Host", "Authorization", "Content-Length", "Transfer-Encoding", "Connection",
        "Keep-Alive", "Upgrade", "TE", "Trailer", "Proxy-Authorization", "Proxy-Connection",
        "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "Cookie", "Expect",
    };
    for (size_t i = 0; i < NF(names); i++)
        if (strcasecmp(h, names[i]) == 0)
            return 1;
    return 0;
}

static void jwt_claims(pctx_t *c, cfg_jwt_t *j, const char *path, yaml_node_t *n)
{
    char b[80], q[CFGW_PATHLEN];
    const cfg_identity_t *id = &c->cfg->identity;
    if (n->type != YAML_MAPPING_NODE) {
        cfgw_err(&c->w, n, path, "expected a mapping of claim name to header name, got %s",
                 cfgp_describe(n, b, sizeof b));
        return;
    }
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (cnt > CFG_JWT_MAX_CLAIMS) {
        cfgw_err(&c->w, n, path, "at most %d claims, got %zu", CFG_JWT_MAX_CLAIMS, cnt);
        return;
    }
    j->claims = cfgp_xcalloc(cnt, sizeof *j->claims);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cfgw_node(&c->w, p->key), *v = cfgw_node(&c->w, p->value);
        const char *cs, *hs;
        if (!k || !v || !(cs = cfgw_scalar(&c->w, k, path, "a claim name")))
            continue;
        if (strlen(cs) > 64 || !cfgp_printable(cs)) {
            cfgw_err(&c->w, k, path, "invalid claim name \"%.60s\": 1..64 printable characters",
                     cs);
            continue;
        }
        if (!(hs = cfgw_scalar(&c->w, v, cfgw_pk(q, path, cs), "an HTTP header name")))
            continue;
        if (!cfgp_plain_header(hs)) {   /* an upstream may read _ or . as - */
            cfgw_err(&c->w, v, q, "invalid header name \"%.60s\": use letters, digits and - "
                     "(e.g. X-Token-Subject)", hs);
            continue;
        }
        int bad = 0;
        for (size_t i = 0; !bad && i < CFG_H__COUNT; i++) {
            if (id->headers[i] && strcasecmp(id->headers[i], hs) == 0) {
                cfgw_err(&c->w, v, q,
                         "header \"%s\" is already an identity header (identity.headers); "
                         "use another name", hs);
                bad = 1;
            }
        }
        if (!bad && reserved_header(hs)) {
            cfgw_err(&c->w, v, q,
                     "header \"%s\" is set by the gateway or the client's own request; "
                     "use another name", hs);
            bad = 1;
        }
        for (size_t i = 0; !bad && i < j->nclaims; i++) {
            if (strcmp(j->claims[i].claim, cs) == 0) {
                cfgw_err(&c->w, k, path, "duplicate claim \"%s\"", cs);
                bad = 1;
            } else if (strcasecmp(j->claims[i].header, hs) == 0) {
                cfgw_err(&c->w, v, q, "header \"%s\" is also used for claim \"%s\"", hs,
                         j->claims[i].claim);
                bad = 1;
            }
        }
        if (bad)
            continue;
        j->claims[j->nclaims].claim = cfgp_xstrdup(cs);
        j->claims[j->nclaims].header = cfgp_xstrdup(hs);
        j->nclaims++;
    }
}

static void parse_jwt(pctx_t *c, cfg_route_t *r, const char *path, yaml_node_t *n)
{
    static const char *const algs[] = {"ES256", "RS256", "EdDSA"};
    static const uint32_t bits[] = {CFG_JWT_ES256, CFG_JWT_RS256, CFG_JWT_EDDSA};
    enum { JWKS, ISSUER, AUDIENCE, LEEWAY, ALGS, BIND, CLAIMS };
    cfgw_fld_t f[] = {F("jwks_file"), F("issuer"), F("audience"), F("leeway"), F("algorithms"),
                      F("bind_to_certificate"), F("claims_to_headers")};
    char q[CFGW_PATHLEN], msg[600];
    const char *s;
    yaml_node_item_t *it;
    long cnt;
    if (cfgw_map(&c->w, n, path, f, NF(f)) < 0)
        return;
    cfg_jwt_t *j = r->jwt = cfgp_xcalloc(1, sizeof *r->jwt);
    j->leeway_ms = 30000;
    j->algorithms = CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA;

    if (f[ISSUER].val && (s = cfgw_scalar(&c->w, f[ISSUER].val, cfgw_pk(q, path, "issuer"),
                                          "a string"))) {
        if (!*s || strlen(s) > 1024 || !cfgp_printable(s))
            cfgw_err(&c->w, f[ISSUER].val, q,
                     "expected 1..1024 printable characters without spaces");
        else
            j->issuer = cfgp_xstrdup(s);
    }
    if (f[AUDIENCE].val) {
        yaml_node_t *a = f[AUDIENCE].val;
        cfgw_pk(q, path, "audience");
        if (a->type == YAML_SCALAR_NODE) {
            if ((s = cfgw_scalar(&c->w, a, q, "a string or a list of strings")) && *s) {
                j->audiences = cfgp_xcalloc(1, sizeof *j->audiences);
                j->audiences[j->naudiences++] = cfgp_xstrdup(s);
            } else if (s) {
                cfgw_err(&c->w, a, q, "the audience must not be empty");
            }
        } else if ((cnt = cfgw_seq_range(&c->w, a, q, 1, MAX_AUDIENCES, &it)) > 0) {
            char base[CFGW_PATHLEN];
            snprintf(base, sizeof base, "%s", q);
            j->audiences = cfgp_xcalloc((size_t)cnt, sizeof *j->audiences);
            for (size_t i = 0; i < (size_t)cnt; i++) {
                yaml_node_t *m = cfgw_node(&c->w, it[i]);
                if ((s = cfgw_scalar(&c->w, m, cfgw_pi(q, base, i), "a string")) && *s)
                    j->audiences[j->naudiences++] = cfgp_xstrdup(s);
                else if (s)
                    cfgw_err(&c->w, m, q, "the audience must not be empty");
            }
        }
    }
    if (f[LEEWAY].val)
        cfgw_num(&c->w, f[LEEWAY].val, cfgw_pk(q, path, "leeway"), 'd', 0, HOUR_MS, &j->leeway_ms);
    if (f[ALGS].val && (cnt = cfgw_seq_range(&c->w, f[ALGS].val, cfgw_pk(q, path, "algorithms"), 1,
                                             3, &it)) > 0) {
        char base[CFGW_PATHLEN];
        snprintf(base, sizeof base, "%s", q);
        j->algorithms = 0;
        for (size_t i = 0; i < (size_t)cnt; i++) {
            int v;
            yaml_node_t *m = cfgw_node(&c->w, it[i]);
            if (cfgw_enum(&c->w, m, cfgw_pi(q, base, i), algs, NF(algs), &v) < 0)
                continue;
            if (j->algorithms & bits[v])
                cfgw_err(&c->w, m, q, "duplicate algorithm \"%s\"", algs[v]);
            j->algorithms |= bits[v];
        }
        if (!j->algorithms)
            j->algorithms = CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA;
    }
    if (f[BIND].val)
        cfgw_bool(&c->w, f[BIND].val, cfgw_pk(q, path, "bind_to_certificate"),
                  &j->bind_to_certificate);
    if (f[CLAIMS].val) {
        jwt_claims(c, j, cfgw_pk(q, path, "claims_to_headers"), f[CLAIMS].val);
    } else {
        j->claims = cfgp_xcalloc(1, sizeof *j->claims);
        j->claims[0].claim = cfgp_xstrdup("sub");
        j->claims[0].header = cfgp_xstrdup("X-Token-Subject");
        j->nclaims = 1;
    }
    if (!f[JWKS].val) {
        cfgw_err(&c->w, n, path, "missing required key \"jwks_file\"");
    } else if ((s = cfgw_scalar(&c->w, f[JWKS].val, cfgw_pk(q, path, "jwks_file"),
                                "a file path"))) {
        j->jwks_file = cfgp_xstrdup(s);
        pol_jwks_t *keys = pol_jwks_load(s, msg, sizeof msg);
        if (!keys) {
            cfgw_err(&c->w, f[JWKS].val, q, "%s", msg);
        } else {
            if (!(pol_jwks_algorithms(keys) & j->algorithms))
                cfgw_err(&c->w, f[JWKS].val, q, "\"%.200s\" has no key for the allowed algorithms "
                         "(EC P-256 for ES256, RSA for RS256, Ed25519 for EdDSA)", s);
            pol_jwks_release(keys);
        }
    }
}

void cfgp_policy_route(cfgw_t *w, cfg_t *cfg, cfg_route_t *r, const char *path,
                       yaml_node_t *route, yaml_node_t *rate_limits, yaml_node_t *headers,
                       yaml_node_t *jwt)
{
    pctx_t c = {.w = *w, .cfg = cfg};
    char q[CFGW_PATHLEN];
    (void)route;
    if (rate_limits)
        route_limits(&c, r, cfgw_pk(q, path, "rate_limits"), rate_limits, jwt != NULL);
    if (headers)
        cfgw_bool(&c.w, headers, cfgw_pk(q, path, "rate_limit_headers"), &r->rate_limit_headers);
    if (jwt) {
        cfgw_pk(q, path, "jwt");
        if (!r->require_bearer)
            cfgw_err(&c.w, jwt, q, "jwt needs require_bearer: true (the token to validate is the "
                     "bearer token)");
        else
            parse_jwt(&c, r, q, jwt);
    }
}

/* ---------------------------------------------------------------- free */

static void jwt_free(cfg_jwt_t *j)
{
    if (!j)
        return;
    free(j->jwks_file);
    free(j->issuer);
    for (size_t i = 0; i < j->naudiences; i++)
        free(j->audiences[i]);
    free(j->audiences);
    for (size_t i = 0; i < j->nclaims; i++) {
        free(j->claims[i].claim);
        free(j->claims[i].header);
    }
    free(j->claims);
    free(j);
}

/* Idempotent: everything freed is reset. */
void cfgp_policy_free(cfg_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nroutes && cfg->routes; i++) {
        cfg_route_t *r = &cfg->routes[i];
        free(r->rate_limits);
        r->rate_limits = NULL;
        r->nrate_limits = 0;
        jwt_free(r->jwt);
        r->jwt = NULL;
    }
    free(cfg->rate_limits);
    cfg->rate_limits = NULL;
    cfg->nrate_limits = 0;
}
