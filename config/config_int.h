/* config/config_int: what the config's source files share, and nothing
 * else includes. One declaration of each helper, so a signature cannot
 * drift between the file that defines it and the files that call it. */
#ifndef PORTCULLIS_CONFIG_INT_H
#define PORTCULLIS_CONFIG_INT_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <yaml.h>

#include "config.h"
#include "walk.h"

/* Allocation that cannot fail (config loading aborts on out of memory). */
void *cfgp_xcalloc(size_t n, size_t sz);
char *cfgp_xstrdup(const char *s);

/* config_check.c: value checks, messages, errors; config_policy.c and
 * config_issuance.c: their sections */
int cfgp_parse_u64(const char *s, uint64_t *out);
/* flags of cfgp_parse_addr: "*" allowed (listeners), a DNS name allowed
 * (out->host set; resolved later by cfgr_resolve_names). */
#define CFGP_ADDR_STAR 1
#define CFGP_ADDR_NAME 2
int cfgp_parse_addr(const char *s, int default_port, int flags, cfg_addr_t *out,
                    char *hostbuf, size_t hostlen, int *port_out, const char **why);
/* Records where a parsed address was written (for its resolution error). */
void cfgp_addr_where(cfg_addr_t *a, const yaml_node_t *n, const char *path);
void cfgp_addr_free(cfg_addr_t *a);
int cfgp_check_certs(const char *path, X509 **leaf, char *msg, size_t len);
int cfgp_check_key(const char *path, const char *cert_path, X509 *leaf,
                   int *key_type, char *msg, size_t len);
int cfgp_load_ca(const char *path, STACK_OF(X509) **out, char *msg, size_t len);
int cfgp_check_tls_list(SSL_CTX **ctx, int kind, const char *val, char *msg, size_t len);
void cfgp_subject(X509 *x, char *buf, size_t len);
int cfgp_is_name(const char *s, int allow_upper);
void cfgp_name_list(char *buf, size_t len, const char *first, size_t stride, size_t n);
int cfgp_valid_header(const char *s);
int cfgp_plain_header(const char *s);
long cfgp_find_dup_route(const cfg_route_t *routes, const unsigned char *complete, size_t i,
                         int nocase);
/* NULL if s (a route path or issuance.path_prefix) is in the one spelling a
 * canonical request path can have; else why not ("must not ..."). */
const char *cfgp_route_path_error(const char *s);
long cfgp_find_name(const char *first, size_t stride, size_t n, const char *name);
int cfgp_ca_overlap(STACK_OF(X509) *const *cas, size_t i, size_t *other, int *reissued,
                    char *subj, size_t len);
void cfgp_push_error(cfg_errors_t *e, uint64_t **pos, size_t *cappos, size_t idx,
                     size_t line, size_t col, const char *path, const char *msg);
void cfgp_sort_errors(char **msgs, uint64_t *pos, size_t n);
int cfgp_valid_env_name(const char *s);
char *cfgp_route_host(const char *s, char *msg, size_t len);
int cfgp_is_null(const yaml_node_t *n);
void cfgp_syntax_msg(const yaml_parser_t *parser, char *msg, size_t len);
int cfgp_same_names(char *const *names, size_t n, size_t *i, size_t *j);
int cfgp_printable(const char *s);
void cfgp_policy_top(cfgw_t *w, cfg_t *cfg, yaml_node_t *rate_limits,
                     yaml_node_t *conn_limits);
void cfgp_policy_route(cfgw_t *w, cfg_t *cfg, cfg_route_t *r, const char *path,
                       yaml_node_t *route, yaml_node_t *rate_limits, yaml_node_t *headers,
                       yaml_node_t *jwt);
void cfgp_policy_free(cfg_t *cfg);
void cfgi_parse_issuance(cfgw_t *w, yaml_node_t *n, cfg_t *cfg);
/* config_issuance.c, for the provider sections in their own files: a
 * SHA-256 digest as 64 hex digits or base64url (0 / -1), and a
 * play_integrity section (its keys and files) at path p into *pl. */
int cfgi_parse_digest(const char *s, unsigned char out[32]);
void cfgi_parse_play(cfgw_t *w, cfg_t *cfg, yaml_node_t *n, const char *p,
                     cfg_play_integrity_t *pl);
/* config_attest_android.c: provider android_key_attestation at path p of
 * platform pl; cfga_android_free frees what it set. */
void cfga_parse_android(cfgw_t *w, cfg_t *cfg, yaml_node_t *n, const char *p,
                        cfg_platform_t *pl);
void cfga_android_free(cfg_android_key_t *a);
/* config_attest_apple.c: the section p of a platform with provider
 * app_attest (n: its mapping); the free releases what it set. */
void cfgi_parse_app_attest(cfgw_t *w, yaml_node_t *n, const char *p, cfg_app_attest_t *aa);
void cfgi_free_app_attest(cfg_app_attest_t *aa);
/* config_metrics.c: the metrics section (after listeners and admin, whose
 * addresses it must not take); cfgm_free_metrics frees what it set. */
void cfgm_parse_metrics(cfgw_t *w, yaml_node_t *n, cfg_t *cfg);
void cfgm_free_metrics(cfg_t *cfg);
/* config_listen.c: the listeners section (a list of addresses or mappings). */
void cfgl_parse_listeners(cfgw_t *w, yaml_node_t *n, cfg_t *cfg);
void cfgl_free_listeners(cfg_t *cfg);
/* config_service.c: the top-level user and group keys (either node may be
 * NULL); cfgs_free_runas frees what it set. */
void cfgs_parse_runas(cfgw_t *w, yaml_node_t *user, yaml_node_t *group, cfg_t *cfg);
void cfgs_free_runas(cfg_t *cfg);
/* config_resolver.c: the resolver section (defaults first, in
 * cfgr_defaults), then, once everything is read, every DNS name the
 * configuration gives resolved in parallel; a name that does not resolve is
 * an error at its position. cfgr_free frees what they set. */
void cfgr_defaults(cfg_t *cfg);
int cfgr_parse_resolver(cfgw_t *w, yaml_node_t *n, cfg_t *cfg);   /* -1: it has errors */
void cfgr_resolve_names(cfgw_t *w, cfg_t *cfg);
void cfgr_free(cfg_t *cfg);
void cfgp_join(char *buf, size_t len, const char *const *names, size_t n);
int cfgp_check_number(int kind, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                      char *msg, size_t len);
void cfgp_unknown_key(const char *key, const char *const *names, size_t n, char *msg,
                      size_t len);
const char *cfgp_describe(const yaml_node_t *n, char *buf, size_t len);

#endif
