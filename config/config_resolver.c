/* config_resolver.c: the resolver section, and the resolution of every DNS
 * name a configuration gives (upstream servers, redis.address, the http
 * verifier URLs) when it is loaded: at the start, for --check and on every
 * reload. All names are resolved in parallel (base/dns.h, on a private
 * event loop: the loader never runs on a worker loop), bounded by the
 * resolver's timeout x attempts; a name that does not resolve is an error
 * "file:line:col: <key path>: cannot resolve "<name>": <reason>", so a
 * gateway never starts, and a reload is never applied, with a name it
 * cannot reach. The answers become each name's first address set in the
 * process's name table, which re-resolves them while the gateway runs.
 *
 *   resolver:
 *     nameservers: [10.0.0.2, "[fd00::53]:5353"]   # default: /etc/resolv.conf
 *     hosts_file: /etc/hosts                      # default /etc/hosts
 *     interval: 30s      # re-resolve period, 1s..1d
 *     timeout: 2s        # one attempt, 100ms..30s
 *     attempts: 2        # per name server, 1..10
 */
#include "config_int.h"

#include <openssl/bio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NF(a) (sizeof(a) / sizeof((a)[0]))
#define F(n) {.name = (n)}
#define DAY_MS 86400000ULL

void cfgr_defaults(cfg_t *cfg)
{
    pc_dns_conf_t *r = &cfg->resolver;
    memset(r, 0, sizeof *r);
    r->interval_ms = 30000;
    r->timeout_ms = 2000;
    r->attempts = 2;
}

void cfgr_free(cfg_t *cfg)
{
    free(cfg->resolver.hosts_file);
    cfg->resolver.hosts_file = NULL;
}

static void parse_nameservers(cfgw_t *w, yaml_node_t *n, pc_dns_conf_t *r)
{
    yaml_node_item_t *it;
    char q[CFGW_PATHLEN];
    long cnt = cfgw_seq_range(w, n, "resolver.nameservers", 1, PC_DNS_MAX_NAMESERVERS, &it);
    for (long i = 0; i < cnt; i++) {
        yaml_node_t *item = cfgw_node(w, it[i]);
        const char *s = cfgw_scalar(w, item, cfgw_pi(q, "resolver.nameservers", (size_t)i),
                                    "a name server address \"ip\" or \"ip:port\"");
        cfg_addr_t a;
        const char *why;
        if (!s)
            continue;
        if (cfgp_parse_addr(s, 53, 0, &a, NULL, 0, NULL, &why) < 0) {
            cfgw_err(w, item, q, "invalid name server \"%.80s\": %s", s, why);
            continue;
        }
        memcpy(&r->nameservers[r->nnameservers].sa, &a.addr, a.addrlen);
        r->nameservers[r->nnameservers++].len = a.addrlen;
        cfgp_addr_free(&a);
    }
}

int cfgr_parse_resolver(cfgw_t *w, yaml_node_t *n, cfg_t *cfg)
{
    enum { NAMESERVERS, HOSTS, INTERVAL, TIMEOUT, ATTEMPTS };
    cfgw_fld_t f[] = {F("nameservers"), F("hosts_file"), F("interval"), F("timeout"),
                      F("attempts")};
    pc_dns_conf_t *r = &cfg->resolver;
    int ok = 1;
    uint64_t v;
    if (cfgw_map(w, n, "resolver", f, NF(f)) < 0)
        return -1;
    if (f[NAMESERVERS].val) {
        parse_nameservers(w, f[NAMESERVERS].val, r);
        ok &= r->nnameservers > 0;
    }
    if (f[HOSTS].val) {
        const char *s = cfgw_scalar(w, f[HOSTS].val, "resolver.hosts_file", "a file path");
        char msg[512];
        BIO *b = s ? cfg_open_file(s, msg, sizeof msg) : NULL;
        if (!b) {
            if (s)
                cfgw_err(w, f[HOSTS].val, "resolver.hosts_file", "%s", msg);
            ok = 0;
        } else {
            BIO_free(b);
            r->hosts_file = cfgp_xstrdup(s);
        }
    }
    if (f[INTERVAL].val) {
        if (cfgw_num(w, f[INTERVAL].val, "resolver.interval", 'd', 1000, DAY_MS, &v) == 0)
            r->interval_ms = v;
        else
            ok = 0;
    }
    if (f[TIMEOUT].val) {
        if (cfgw_num(w, f[TIMEOUT].val, "resolver.timeout", 'd', 100, 30000, &v) == 0)
            r->timeout_ms = v;
        else
            ok = 0;
    }
    if (f[ATTEMPTS].val) {
        if (cfgw_num(w, f[ATTEMPTS].val, "resolver.attempts", 'u', 1, 10, &v) == 0)
            r->attempts = (unsigned)v;
        else
            ok = 0;
    }
    return ok ? 0 : -1;
}

/* Every address of cfg that holds a name, into out (NULL: only counted). */
static size_t named_addrs(cfg_t *cfg, cfg_addr_t **out)
{
    size_t n = 0;
#define ADD(a) do { if ((a)->host && !(a)->dns) { if (out) out[n] = (a); n++; } } while (0)
    for (size_t i = 0; i < cfg->nupstreams; i++)
        for (size_t k = 0; k < cfg->upstreams[i].nservers; k++)
            ADD(&cfg->upstreams[i].servers[k]);
    ADD(&cfg->redis.addr);
    for (size_t i = 0; cfg->issuance && i < cfg->issuance->nplatforms; i++)
        ADD(&cfg->issuance->platforms[i].http.addr);
#undef ADD
    return n;
}

static void report_at(cfgw_t *w, const cfg_addr_t *a, const char *why)
{
    yaml_node_t at;
    memset(&at, 0, sizeof at);
    at.start_mark.line = a->line ? a->line - 1 : 0;
    at.start_mark.column = a->col ? a->col - 1 : 0;
    char msg[512];
    snprintf(msg, sizeof msg, "cannot resolve \"%s\": %s", a->host, why);
    w->fn(w->arg, &at, a->where ? a->where : "", msg);
}

void cfgr_resolve_names(cfgw_t *w, cfg_t *cfg)
{
    size_t n = named_addrs(cfg, NULL);
    if (n == 0)
        return;
    cfg_addr_t **addrs = cfgp_xcalloc(n, sizeof *addrs);
    pc_dns_query_t *q = cfgp_xcalloc(n, sizeof *q);
    char err[256];
    named_addrs(cfg, addrs);
    for (size_t i = 0; i < n; i++) {
        q[i].host = addrs[i]->host;
        q[i].port = addrs[i]->port;
    }
    if (pc_dns_resolve(&cfg->resolver, q, n, err, sizeof err) < 0) {
        report_at(w, addrs[0], err);
    } else {
        for (size_t i = 0; i < n; i++) {
            cfg_addr_t *a = addrs[i];
            if (q[i].n == 0) {
                report_at(w, a, q[i].err);
                continue;
            }
            memcpy(&a->addr, &q[i].a[0].sa, q[i].a[0].len);
            a->addrlen = q[i].a[0].len;
            if (!(a->dns = pc_dns_intern(a->host, a->port, q[i].a, q[i].n)))
                report_at(w, a, "out of memory");
        }
    }
    free(q);
    free(addrs);
}

size_t cfg_addr_pick(const cfg_addr_t *a, pc_dns_addrs_t **cache, size_t turn, pc_dns_sa_t *out)
{
    if (!a->dns) {
        memcpy(&out->sa, &a->addr, sizeof out->sa);
        out->len = a->addrlen;
        return 1;
    }
    pc_dns_current(a->dns, cache);
    if (!*cache || (*cache)->n == 0)
        return 0;
    *out = (*cache)->a[turn % (*cache)->n];
    return (*cache)->n;
}

void cfg_release_reloadable_names(cfg_t *cfg)
{
    for (size_t i = 0; i < cfg->nupstreams; i++)
        for (size_t k = 0; k < cfg->upstreams[i].nservers; k++) {
            pc_dns_name_release(cfg->upstreams[i].servers[k].dns);
            cfg->upstreams[i].servers[k].dns = NULL;
        }
    for (size_t i = 0; cfg->issuance && i < cfg->issuance->nplatforms; i++) {
        pc_dns_name_release(cfg->issuance->platforms[i].http.addr.dns);
        cfg->issuance->platforms[i].http.addr.dns = NULL;
    }
}

size_t cfg_addr_endpoints(const cfg_addr_t *a)
{
    return a->dns ? PC_DNS_MAX_ADDRS : 1;
}

size_t cfg_upstream_endpoints(const cfg_upstream_t *u)
{
    size_t n = 0;
    for (size_t k = 0; k < u->nservers; k++)
        n += cfg_addr_endpoints(&u->servers[k]);
    return n;
}

int cfg_addr_moved(const cfg_addr_t *a, pc_dns_addrs_t **cache, const pc_dns_sa_t *at)
{
    if (!a->dns)
        return 0;
    pc_dns_current(a->dns, cache);
    if (!*cache || (*cache)->n == 0)
        return 0;   /* no address: keep what works */
    for (size_t i = 0; i < (*cache)->n; i++)
        if ((*cache)->a[i].len == at->len && !memcmp(&(*cache)->a[i].sa, &at->sa, at->len))
            return 0;
    return 1;
}
