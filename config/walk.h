/* walk.h: helpers shared by the configuration readers (config.c,
 * config_policy.c, config_issuance.c) to walk a libyaml document.
 *
 * Every problem is handed to the context's error callback together with the
 * node it concerns and its key path ("routes[2].jwt.issuer"), so that all the
 * readers report in the same "file:line:col: path: message" form.
 */
#ifndef PORTCULLIS_CONFIG_WALK_H
#define PORTCULLIS_CONFIG_WALK_H

#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

/* Paths are built in CFGW_PATHLEN buffers; a (theoretical) overlong one is cut. */
#define CFGW_PATHLEN 256

typedef void (*cfgw_err_fn)(void *arg, const yaml_node_t *n, const char *path,
                            const char *msg);

typedef struct {
    yaml_document_t *doc;
    cfgw_err_fn fn;       /* receives every problem found */
    void *arg;            /* passed back to fn */
} cfgw_t;

/* One expected key of a mapping, filled in by cfgw_map(). */
typedef struct {
    const char *name;
    yaml_node_t *key, *val;
} cfgw_fld_t;

/* "parent.key" (just "key" if parent is empty) and "parent[i]", into buf. */
const char *cfgw_pk(char *buf, const char *parent, const char *key);
const char *cfgw_pi(char *buf, const char *parent, size_t i);

__attribute__((format(printf, 4, 5)))
void cfgw_err(cfgw_t *w, const yaml_node_t *n, const char *path, const char *fmt, ...);

yaml_node_t *cfgw_node(cfgw_t *w, int idx);

/* A scalar's text, or NULL after reporting "expected <what>, got ...". */
const char *cfgw_scalar(cfgw_t *w, yaml_node_t *n, const char *path, const char *what);

/* Matches the keys of mapping n against f[]; reports unknown and duplicate
 * keys. Returns -1 (after reporting) if n is not a mapping. */
int cfgw_map(cfgw_t *w, yaml_node_t *n, const char *path, cfgw_fld_t *f, size_t nf);

/* f->val, or NULL after reporting the key as missing from map. */
yaml_node_t *cfgw_require(cfgw_t *w, yaml_node_t *map, const char *path, cfgw_fld_t *f);

/* Items of a sequence with min..max entries; returns the count or -1.
 * cfgw_seq() reports a wrong count as "expected at least/at most ...",
 * cfgw_seq_range() as "expected min..max entries". */
long cfgw_seq(cfgw_t *w, yaml_node_t *n, const char *path, size_t min, size_t max,
              yaml_node_item_t **items);
long cfgw_seq_range(cfgw_t *w, yaml_node_t *n, const char *path, size_t min, size_t max,
                    yaml_node_item_t **items);

/* A number: kind 'u' integer, 'd' duration (ms), 's' size (bytes), in min..max. */
int cfgw_num(cfgw_t *w, yaml_node_t *n, const char *path, int kind, uint64_t min,
             uint64_t max, uint64_t *out);
int cfgw_bool(cfgw_t *w, yaml_node_t *n, const char *path, int *out);
/* The index of the scalar in names[0..nn). */
int cfgw_enum(cfgw_t *w, yaml_node_t *n, const char *path, const char *const *names,
              size_t nn, int *out);

/* Optional keys: nothing happens if the key is absent (the default is kept). */
void cfgw_opt_dur(cfgw_t *w, cfgw_fld_t *f, const char *parent, uint64_t max, uint64_t *out);
void cfgw_opt_u32(cfgw_t *w, cfgw_fld_t *f, const char *parent, uint64_t min, uint64_t max,
                  uint32_t *out);
void cfgw_opt_bool(cfgw_t *w, cfgw_fld_t *f, const char *parent, int *out);

#endif
