/* config/config_listen: the client listeners.
 *
 *   listeners:
 *     - 127.0.0.1:8443                    # an address alone
 *     - address: "*:9443"                 # or a mapping
 *       proxy_protocol: v2                # off | v1 | v2 | any (default off)
 *       trusted_from: [10.0.0.0/8]        # required with proxy_protocol, only with it
 *       proxy_timeout: 5s                 # the whole header within it
 *       proxy_header_max: 4096            # the longest header taken, bytes
 *
 * A listener that reads the PROXY protocol believes the client address the
 * header names, so it fails closed: without trusted_from (or with an empty
 * list) it is an error, and trusted_from without proxy_protocol is one too
 * (it would trust nobody for nothing, and hide a typo). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define NF(a) (sizeof(a) / sizeof((a)[0]))
#define PROXY_TIMEOUT_DEFAULT_MS 5000
#define PROXY_TIMEOUT_MAX_MS 300000
#define PROXY_HEADER_MAX_DEFAULT 4096
#define PROXY_HEADER_MAX_MIN 107            /* the longest v1 line */
#define PROXY_HEADER_MAX_MAX (16 + 65535)   /* the longest v2 header */
#define MAX_TRUSTED 1024

/* ---------------------------------------------------------------- CIDR */

int cfg_parse_cidr(const char *s, cfg_cidr_t *out, const char **why)
{
    char host[64];
    const char *slash = s ? strchr(s, '/') : NULL;
    size_t hl = slash ? (size_t)(slash - s) : (s ? strlen(s) : 0);
    memset(out, 0, sizeof *out);
    if (hl == 0 || hl >= sizeof host) {
        *why = "expected an IP network like \"10.0.0.0/8\", \"fd00::/8\" or an address";
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
    } else {
        *why = "not a numeric IPv4 or IPv6 address (no brackets, no names)";
        return -1;
    }
    unsigned max = out->family == AF_INET ? 32 : 128;
    uint64_t bits = max;
    if (slash && (cfgp_parse_u64(slash + 1, &bits) < 0 || bits > max || (slash[1] == '0' && slash[2]))) {
        *why = out->family == AF_INET ? "prefix length must be 0..32" : "prefix length must be 0..128";
        return -1;
    }
    out->bits = (unsigned)bits;
    for (unsigned i = out->bits; i < max; i++)
        if (out->addr[i / 8] & (0x80u >> (i % 8))) {
            *why = "host bits are set after the prefix length (write the network address)";
            return -1;
        }
    return 0;
}

static int prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (!rest)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int cfg_cidr_match(const cfg_cidr_t *nets, size_t n, const struct sockaddr_storage *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t v4[4], v6[16];
    int has4 = 0, has6 = 0;
    if (a->ss_family == AF_INET) {
        memcpy(v4, &((const struct sockaddr_in *)a)->sin_addr, 4);
        has4 = 1;
    } else if (a->ss_family == AF_INET6) {
        memcpy(v6, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
        has6 = 1;
        if (!memcmp(v6, mapped, sizeof mapped)) {
            memcpy(v4, v6 + 12, 4);
            has4 = 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (nets[i].family == AF_INET && has4 && prefix_eq(v4, nets[i].addr, nets[i].bits))
            return 1;
        if (nets[i].family == AF_INET6 && has6 && prefix_eq(v6, nets[i].addr, nets[i].bits))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- listeners */

static void trusted_from(cfgw_t *w, yaml_node_t *n, const char *parent, cfg_listener_t *l)
{
    char p[CFGW_PATHLEN], q[CFGW_PATHLEN];
    yaml_node_item_t *it;
    cfgw_pk(p, parent, "trusted_from");
    long cnt = cfgw_seq(w, n, p, 0, MAX_TRUSTED, &it);
    if (cnt < 0)
        return;
    if (cnt == 0) {
        cfgw_err(w, n, p, "an empty list trusts no peer: list the load balancers' networks "
                 "(or remove proxy_protocol)");
        return;
    }
    l->trusted = cfgp_xcalloc((size_t)cnt, sizeof *l->trusted);
    for (size_t i = 0; i < (size_t)cnt; i++) {
        yaml_node_t *item = cfgw_node(w, it[i]);
        const char *why, *s = cfgw_scalar(w, item, cfgw_pi(q, p, i), "an IP network like \"10.0.0.0/8\"");
        if (!s)
            continue;
        if (cfg_parse_cidr(s, &l->trusted[l->ntrusted], &why) < 0)
            cfgw_err(w, item, q, "invalid network \"%.80s\": %s", s, why);
        else
            l->ntrusted++;
    }
}

/* The PROXY protocol keys of a listener's mapping f[1..]. */
static void proxy_options(cfgw_t *w, const char *p, cfgw_fld_t *f, cfg_listener_t *l)
{
    enum { PROTO = 1, TRUSTED, TIMEOUT, HMAX };
    static const char *const modes[] = {"off", "v1", "v2", "any"};
    char q[CFGW_PATHLEN];
    int mode = CFG_PP_OFF;
    uint64_t v;
    if (f[PROTO].val && cfgw_enum(w, f[PROTO].val, cfgw_pk(q, p, "proxy_protocol"), modes,
                                  NF(modes), &mode) < 0)
        return;   /* reported; the keys that depend on it are not judged */
    l->proxy_protocol = mode;   /* the index is the enum's value */
    if (mode == CFG_PP_OFF) {
        for (int k = TRUSTED; k <= HMAX; k++)
            if (f[k].val)
                cfgw_err(w, f[k].key, cfgw_pk(q, p, f[k].name),
                         "only with proxy_protocol v1, v2 or any");
        return;
    }
    cfgw_opt_dur(w, &f[TIMEOUT], p, PROXY_TIMEOUT_MAX_MS, &l->proxy_timeout_ms);
    if (f[HMAX].val && cfgw_num(w, f[HMAX].val, cfgw_pk(q, p, "proxy_header_max"), 's',
                                PROXY_HEADER_MAX_MIN, PROXY_HEADER_MAX_MAX, &v) == 0)
        l->proxy_header_max = (uint32_t)v;
    if (!f[TRUSTED].val)
        cfgw_err(w, f[PROTO].val, cfgw_pk(q, p, "proxy_protocol"),
                 "needs trusted_from: the networks of the load balancers allowed to send "
                 "a PROXY header (anyone else could claim any client address)");
    else
        trusted_from(w, f[TRUSTED].val, p, l);
}

/* Can a peer of the listener's family (its socket is one family only:
 * IPv6 listeners are IPV6_V6ONLY) be in one of its trusted networks? */
static int family_trusted(const cfg_listener_t *l)
{
    for (size_t i = 0; i < l->ntrusted; i++)
        if (l->trusted[i].family == l->addr.addr.ss_family)
            return 1;
    return 0;
}

/* One item: an address string, or a mapping. 0, or -1 (reported). */
static int listener_item(cfgw_t *w, yaml_node_t *item, const char *p, cfg_listener_t *l,
                         yaml_node_t **addr_node)
{
    char q[CFGW_PATHLEN];
    cfgw_fld_t f[] = {{"address", NULL, NULL}, {"proxy_protocol", NULL, NULL},
                      {"trusted_from", NULL, NULL}, {"proxy_timeout", NULL, NULL},
                      {"proxy_header_max", NULL, NULL}};
    const char *why, *s;
    l->proxy_timeout_ms = PROXY_TIMEOUT_DEFAULT_MS;
    l->proxy_header_max = PROXY_HEADER_MAX_DEFAULT;
    *addr_node = item;
    const char *path = p;
    if (item && item->type != YAML_SCALAR_NODE) {
        if (cfgw_map(w, item, p, f, NF(f)) < 0 || !cfgw_require(w, item, p, &f[0]))
            return -1;
        proxy_options(w, p, f, l);
        *addr_node = f[0].val;
        path = cfgw_pk(q, p, "address");
    }
    s = cfgw_scalar(w, *addr_node, path, "an address \"host:port\" or a mapping with address");
    if (!s)
        return -1;
    if (cfgp_parse_addr(s, 0, CFGP_ADDR_STAR, &l->addr, NULL, 0, NULL, &why) < 0) {
        cfgw_err(w, *addr_node, path, "invalid address \"%.80s\": %s", s, why);
        return -1;
    }
    if (l->ntrusted && !family_trusted(l)) {
        char q2[CFGW_PATHLEN];
        cfgw_err(w, f[2].val, cfgw_pk(q2, p, "trusted_from"), "no network of the listener's "
                 "family (%s): no balancer could ever connect", l->addr.addr.ss_family == AF_INET6
                 ? "IPv6" : "IPv4");
    }
    return 0;
}

void cfgl_parse_listeners(cfgw_t *w, yaml_node_t *n, cfg_t *cfg)
{
    yaml_node_item_t *it;
    long cnt = cfgw_seq(w, n, "listeners", 1, 1024, &it);
    if (cnt < 0)
        return;
    cfg->listeners = cfgp_xcalloc((size_t)cnt, sizeof *cfg->listeners);
    cfg->nlisteners = (size_t)cnt;
    for (size_t i = 0; i < (size_t)cnt; i++) {
        char p[CFGW_PATHLEN];
        yaml_node_t *an, *item = cfgw_node(w, it[i]);
        cfg_listener_t *l = &cfg->listeners[i];
        cfgw_pi(p, "listeners", i);
        if (listener_item(w, item, p, l, &an) < 0)
            continue;
        for (size_t j = 0; j < i; j++) {
            const cfg_addr_t *a = &l->addr, *b = &cfg->listeners[j].addr;
            if (b->text && b->addrlen == a->addrlen && !memcmp(&b->addr, &a->addr, a->addrlen)) {
                char q[CFGW_PATHLEN];
                cfgw_err(w, an, an == item ? p : cfgw_pk(q, p, "address"),
                         "duplicate listener address (also listeners[%zu])", j);
                break;
            }
        }
    }
}

void cfgl_free_listeners(cfg_t *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        cfgp_addr_free(&cfg->listeners[i].addr);
        free(cfg->listeners[i].trusted);
    }
    free(cfg->listeners);
    cfg->listeners = NULL;
    cfg->nlisteners = 0;
}
