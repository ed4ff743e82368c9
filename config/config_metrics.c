/* config/config_metrics: the metrics section.
 *
 *   metrics:
 *     address: 127.0.0.1:9445        # plain HTTP: /metrics, /healthz, /readyz
 *     token_env: PORTCULLIS_METRICS_TOKEN   # optional: /metrics then needs it
 *
 * The address must differ from every listener's and from admin.listen. Any
 * address may be used (scrapers often sit on a private network); the start
 * warns when it is not loopback and /metrics needs no token. */
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define DEFAULT_ADDRESS "127.0.0.1:9445"

static int same_addr(const cfg_addr_t *a, const cfg_addr_t *b)
{
    return a->text && b->text && a->addrlen == b->addrlen && !memcmp(&a->addr, &b->addr, a->addrlen);
}

/* The address of the metrics listener, checked against the others. */
static void metrics_address(cfgw_t *w, yaml_node_t *map, yaml_node_t *n, cfg_t *cfg)
{
    cfg_metrics_t *m = &cfg->metrics;
    if (n) {
        const char *why;
        const char *s = cfgw_scalar(w, n, "metrics.address", "an address \"host:port\"");
        cfg_addr_t addr;
        if (!s)
            return;
        if (cfgp_parse_addr(s, 0, 0, &addr, NULL, 0, NULL, &why) < 0) {
            cfgw_err(w, n, "metrics.address", "invalid address \"%.80s\": %s", s, why);
            return;
        }
        free(m->address.text);
        m->address = addr;
    }
    yaml_node_t *at = n ? n : map;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (same_addr(&cfg->listeners[i].addr, &m->address)) {
            cfgw_err(w, at, "metrics.address", "the metrics listener needs its own address "
                     "(listeners[%zu] uses %s)", i, cfg->listeners[i].addr.text);
            return;
        }
    if (cfg->admin.enabled && same_addr(&cfg->admin.listen, &m->address))
        cfgw_err(w, at, "metrics.address", "the metrics listener needs its own address "
                 "(admin.listen uses %s); the admin listener serves /metrics, /healthz and "
                 "/readyz itself", cfg->admin.listen.text);
}

void cfgm_parse_metrics(cfgw_t *w, yaml_node_t *n, cfg_t *cfg)
{
    enum { ADDRESS, TOKEN_ENV };
    cfgw_fld_t f[] = {{"address", NULL, NULL}, {"token_env", NULL, NULL}};
    cfg_metrics_t *m = &cfg->metrics;
    if (cfgw_map(w, n, "metrics", f, sizeof f / sizeof *f) < 0)
        return;
    m->enabled = 1;
    if (!m->address.text && cfg_parse_addr(DEFAULT_ADDRESS, 0, &m->address) < 0)
        abort();   /* a constant */
    metrics_address(w, n, f[ADDRESS].val, cfg);
    const char *s;
    if (f[TOKEN_ENV].val && (s = cfgw_scalar(w, f[TOKEN_ENV].val, "metrics.token_env",
                                             "an environment variable name"))) {
        if (!cfgp_valid_env_name(s)) {
            cfgw_err(w, f[TOKEN_ENV].val, "metrics.token_env", "expected an environment "
                     "variable name like PORTCULLIS_METRICS_TOKEN (not the token itself), got "
                     "\"%.60s\"", s);
        } else {
            free(m->token_env);
            m->token_env = cfgp_xstrdup(s);
        }
    }
}

void cfgm_free_metrics(cfg_t *cfg)
{
    free(cfg->metrics.address.text);
    free(cfg->metrics.token_env);
    cfg->metrics.address.text = NULL;
    cfg->metrics.token_env = NULL;
}
