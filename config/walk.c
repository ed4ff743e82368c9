/* walk.c: walking the YAML document of the configuration (see walk.h). */
#include "walk.h"
#include "config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NF(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- paths */

const char *cfgw_pk(char *buf, const char *parent, const char *key)
{
    int n = (!parent || !*parent) ? snprintf(buf, CFGW_PATHLEN, "%s", key)
                                  : snprintf(buf, CFGW_PATHLEN, "%s.%s", parent, key);
    if (n < 0)
        buf[0] = '\0';
    return buf;
}

const char *cfgw_pi(char *buf, const char *parent, size_t i)
{
    if (snprintf(buf, CFGW_PATHLEN, "%s[%zu]", parent, i) < 0)
        buf[0] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- errors */

void cfgw_err(cfgw_t *w, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->fn(w->arg, n, path, msg);
}

/* ---------------------------------------------------------------- nodes */

yaml_node_t *cfgw_node(cfgw_t *w, int idx)
{
    return yaml_document_get_node(w->doc, idx);
}

const char *cfgw_scalar(cfgw_t *w, yaml_node_t *n, const char *path, const char *what)
{
    char b[80];
    if (n->type != YAML_SCALAR_NODE || cfgp_is_null(n)) {
        cfgw_err(w, n, path, "expected %s, got %s", what, cfgp_describe(n, b, sizeof b));
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

int cfgw_map(cfgw_t *w, yaml_node_t *n, const char *path, cfgw_fld_t *f, size_t nf)
{
    char b[80];
    if (n->type != YAML_MAPPING_NODE) {
        cfgw_err(w, n, path, "expected a mapping, got %s", cfgp_describe(n, b, sizeof b));
        return -1;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cfgw_node(w, p->key), *v = cfgw_node(w, p->value);
        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            cfgw_err(w, k, path, "a key must be a plain string, got %s",
                     cfgp_describe(k, b, sizeof b));
            continue;
        }
        const char *ks = (const char *)k->data.scalar.value;
        size_t i;
        for (i = 0; i < nf && strcmp(f[i].name, ks) != 0; i++)
            ;
        if (i == nf) {
            const char *names[32];
            char msg[700];
            size_t nn = nf < NF(names) ? nf : NF(names);
            for (size_t j = 0; j < nn; j++)
                names[j] = f[j].name;
            cfgp_unknown_key(ks, names, nn, msg, sizeof msg);
            cfgw_err(w, k, path, "%s", msg);
        } else if (f[i].key) {
            cfgw_err(w, k, path, "duplicate key \"%s\" (first given at line %zu)", ks,
                     (size_t)f[i].key->start_mark.line + 1);
        } else {
            f[i].key = k;
            f[i].val = v;
        }
    }
    return 0;
}

yaml_node_t *cfgw_require(cfgw_t *w, yaml_node_t *map, const char *path, cfgw_fld_t *f)
{
    if (!f->val)
        cfgw_err(w, map, path, "missing required key \"%s\"", f->name);
    return f->val;
}

static long seq_items(cfgw_t *w, yaml_node_t *n, const char *path, size_t min, size_t max,
                      int as_range, yaml_node_item_t **items)
{
    char b[80];
    if (n->type != YAML_SEQUENCE_NODE) {
        cfgw_err(w, n, path, "expected a sequence, got %s", cfgp_describe(n, b, sizeof b));
        return -1;
    }
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (as_range && (cnt < min || cnt > max)) {
        cfgw_err(w, n, path, "expected %zu..%zu entries, got %zu", min, max, cnt);
        return -1;
    }
    if (cnt < min) {
        cfgw_err(w, n, path, "expected at least %zu entr%s, got %zu", min,
                 min == 1 ? "y" : "ies", cnt);
        return -1;
    }
    if (cnt > max) {
        cfgw_err(w, n, path, "expected at most %zu entries, got %zu", max, cnt);
        return -1;
    }
    *items = n->data.sequence.items.start;
    return (long)cnt;
}

long cfgw_seq(cfgw_t *w, yaml_node_t *n, const char *path, size_t min, size_t max,
              yaml_node_item_t **items)
{
    return seq_items(w, n, path, min, max, 0, items);
}

long cfgw_seq_range(cfgw_t *w, yaml_node_t *n, const char *path, size_t min, size_t max,
                    yaml_node_item_t **items)
{
    return seq_items(w, n, path, min, max, 1, items);
}

/* ---------------------------------------------------------------- scalars */

int cfgw_num(cfgw_t *w, yaml_node_t *n, const char *path, int kind, uint64_t min,
             uint64_t max, uint64_t *out)
{
    char msg[300];
    const char *s = cfgw_scalar(w, n, path, kind == 'd' ? "a duration like 500ms, 10s, 5m, 1h"
                                            : kind == 's' ? "a size like 512, 16k, 10m, 1g"
                                                          : "an integer");
    if (!s)
        return -1;
    if (cfgp_check_number(kind, s, min, max, out, msg, sizeof msg) < 0) {
        cfgw_err(w, n, path, "%s", msg);
        return -1;
    }
    return 0;
}

int cfgw_bool(cfgw_t *w, yaml_node_t *n, const char *path, int *out)
{
    const char *s = cfgw_scalar(w, n, path, "true or false");
    if (!s)
        return -1;
    if (strcmp(s, "true") == 0)
        *out = 1;
    else if (strcmp(s, "false") == 0)
        *out = 0;
    else {
        cfgw_err(w, n, path, "expected true or false, got \"%.60s\"", s);
        return -1;
    }
    return 0;
}

int cfgw_enum(cfgw_t *w, yaml_node_t *n, const char *path, const char *const *names,
              size_t nn, int *out)
{
    char list[256], what[300];
    cfgp_join(list, sizeof list, names, nn);
    snprintf(what, sizeof what, "one of: %s", list);
    const char *s = cfgw_scalar(w, n, path, what);
    if (!s)
        return -1;
    for (size_t i = 0; i < nn; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    cfgw_err(w, n, path, "expected %s, got \"%.60s\"", what, s);
    return -1;
}

/* ---------------------------------------------------------------- optional keys */

void cfgw_opt_dur(cfgw_t *w, cfgw_fld_t *f, const char *parent, uint64_t max, uint64_t *out)
{
    char p[CFGW_PATHLEN];
    if (f->val)
        cfgw_num(w, f->val, cfgw_pk(p, parent, f->name), 'd', 1, max, out);
}

void cfgw_opt_u32(cfgw_t *w, cfgw_fld_t *f, const char *parent, uint64_t min, uint64_t max,
                  uint32_t *out)
{
    char p[CFGW_PATHLEN];
    uint64_t v;
    if (f->val && cfgw_num(w, f->val, cfgw_pk(p, parent, f->name), 'u', min, max, &v) == 0)
        *out = (uint32_t)v;
}

void cfgw_opt_bool(cfgw_t *w, cfgw_fld_t *f, const char *parent, int *out)
{
    char p[CFGW_PATHLEN];
    if (f->val)
        cfgw_bool(w, f->val, cfgw_pk(p, parent, f->name), out);
}
