/* config_check.c: the parts of the configuration loader that do not walk
 * YAML: cfg_free(), the exported cfg_parse_* value parsers, checks of names,
 * hosts and numbers, the error list, and checks of the files and OpenSSL
 * strings named in the configuration (certificates, private keys, CA bundles,
 * cipher lists). config.c walks the YAML document and calls these.
 *
 * The checks return 0 on success, or -1 with a one-line reason written to
 * msg. Nothing here keeps state: the OpenSSL error queue is cleared after
 * every check so one failure cannot leak into the next message.
 */
#include "config_int.h"
#include "host.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <yaml.h>

#define DAY_MS 86400000ULL
#define NF(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- values */

int cfgp_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Digits followed by a suffix; the suffix is returned in *rest. */
static int parse_num_prefix(const char *s, uint64_t *out, const char **rest)
{
    uint64_t v = 0;
    const char *p = s;
    if (!s)
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (p == s)
        return -1;
    *out = v;
    *rest = p;
    return 0;
}

int cfg_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct { const char *u; uint64_t mul; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", DAY_MS},
    };
    uint64_t v;
    const char *u;
    if (parse_num_prefix(s, &v, &u) < 0)
        return -1;
    for (size_t i = 0; i < NF(units); i++) {
        if (strcmp(u, units[i].u) == 0) {
            if (v > UINT64_MAX / units[i].mul)
                return -1;
            *out = v * units[i].mul;
            return 0;
        }
    }
    return -1;
}

int cfg_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mul = 1;
    const char *u;
    if (parse_num_prefix(s, &v, &u) < 0)
        return -1;
    if (*u) {
        if (u[1])
            return -1;
        switch (tolower((unsigned char)*u)) {
        case 'k': mul = 1ULL << 10; break;
        case 'm': mul = 1ULL << 20; break;
        case 'g': mul = 1ULL << 30; break;
        default: return -1;
        }
    }
    if (v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

/* A DNS host name: dot-separated labels of 1..63 letters, digits, '-' and
 * '_' (not starting or ending with '-'), at most 253 bytes, an optional
 * final dot, and not all digits and dots (that is a malformed IPv4). */
static int is_dns_name(const char *h)
{
    size_t len = strlen(h), label = 0;
    int alpha = 0;
    if (len == 0 || len > PC_DNS_MAX_HOST || h[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum(ch) && ch != '-' && ch != '_')
            return 0;
        if (ch == '-' && label == 0)
            return 0;
        alpha |= !isdigit(ch);
        if (++label > 63)
            return 0;
    }
    return alpha && h[len - 1] != '-';
}

/* Why h, not a DNS name, is too long to be one; NULL if it is not that. */
static const char *name_length_why(const char *h)
{
    if (strlen(h) > PC_DNS_MAX_HOST)
        return "host name is too long (a DNS name has at most 253 bytes)";
    size_t label = 0;
    for (const char *p = h; *p; p++)
        if (*p == '.')
            label = 0;
        else if (++label > 63)
            return "a label of the host name is too long (at most 63 bytes between dots)";
    return NULL;
}

void cfgp_addr_where(cfg_addr_t *a, const yaml_node_t *n, const char *path)
{
    if (!a->host)
        return;
    free(a->where);
    a->where = cfgp_xstrdup(path);
    a->line = n ? n->start_mark.line + 1 : 1;
    a->col = n ? n->start_mark.column + 1 : 1;
}

void cfgp_addr_free(cfg_addr_t *a)
{
    free(a->text);
    free(a->host);
    free(a->where);
    pc_dns_name_release(a->dns);
    memset(a, 0, sizeof *a);
}

/* What a host that is not allowed must be, for the flags of cfgp_parse_addr. */
static const char *bad_host_why(int flags)
{
    if (flags & CFGP_ADDR_NAME)
        return "host must be a numeric IP address, \"localhost\" or a DNS name";
    if (flags & CFGP_ADDR_STAR)
        return "host must be a numeric IP address, \"localhost\" or \"*\" (no DNS names here)";
    return "host must be a numeric IP address or \"localhost\" (no DNS names here)";
}

/* "host:port" or "[v6]:port". host: numeric IP, "localhost", (with
 * CFGP_ADDR_STAR) "*" = 0.0.0.0, or (with CFGP_ADDR_NAME) a DNS name, kept
 * in out->host with out->port for cfgr_resolve_names. host/port are also
 * returned as text for callers that keep them. */
int cfgp_parse_addr(const char *s, int default_port, int flags, cfg_addr_t *out,
                    char *hostbuf, size_t hostlen, int *port_out, const char **why)
{
    int allow_star = flags & CFGP_ADDR_STAR;
    char host[PC_DNS_MAX_HOST + 2];
    const char *portstr = NULL;
    int bracketed = 0;
    size_t hl;

    memset(out, 0, sizeof *out);
    *why = NULL;
    if (!s || !*s) {
        *why = "empty address";
        return -1;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']' after IPv6 address";
            return -1;
        }
        hl = (size_t)(rb - s - 1);
        if (rb[1] == ':')
            portstr = rb + 2;
        else if (rb[1] != '\0') {
            *why = "expected ':port' after ']'";
            return -1;
        }
        bracketed = 1;
        s++;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            *why = "IPv6 addresses must be in brackets, e.g. \"[::1]:8443\"";
            return -1;
        }
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (colon)
            portstr = colon + 1;
    }
    if (hl == 0) {
        *why = "missing host (use \"*:port\" for all IPv4 addresses)";
        return -1;
    }
    if (hl >= sizeof host) {
        *why = flags & CFGP_ADDR_NAME ? "host name is too long (a DNS name has at most 253 bytes)"
                                      : "host is too long";
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';

    int port;
    if (portstr) {
        uint64_t p;
        if (cfgp_parse_u64(portstr, &p) < 0 || p < 1 || p > 65535) {
            *why = "port must be a number 1..65535";
            return -1;
        }
        port = (int)p;
    } else if (default_port > 0 && default_port <= 65535) {
        port = default_port;
    } else {
        *why = "missing port (expected \"host:port\")";
        return -1;
    }

    if (!bracketed && strcmp(host, "*") == 0) {
        if (!allow_star) {
            *why = "\"*\" is only allowed for listeners; use a numeric IP or \"localhost\"";
            return -1;
        }
        struct sockaddr_in *in = (struct sockaddr_in *)&out->addr;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        in->sin_port = htons((uint16_t)port);
        out->addrlen = sizeof *in;
    } else if (!bracketed && (strcasecmp(host, "localhost") == 0 ||
                              strcasecmp(host, "localhost.") == 0)) {   /* the same name */
        struct sockaddr_in *in = (struct sockaddr_in *)&out->addr;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons((uint16_t)port);
        out->addrlen = sizeof *in;
    } else {
        struct addrinfo hints, *ai = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = bracketed ? AF_INET6 : AF_INET;
        hints.ai_flags = AI_NUMERICHOST;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai ||
            ai->ai_addrlen > sizeof out->addr) {
            if (ai)
                freeaddrinfo(ai);
            if (!bracketed && (flags & CFGP_ADDR_NAME) && is_dns_name(host)) {
                out->host = strdup(host);   /* resolved by cfgr_resolve_names */
                out->port = port;
                if (!out->host) {
                    *why = "out of memory";
                    return -1;
                }
                goto done;
            }
            const char *len_why = !bracketed && (flags & CFGP_ADDR_NAME) ? name_length_why(host) : NULL;
            *why = bracketed ? "not a numeric IPv6 address" : len_why ? len_why : bad_host_why(flags);
            return -1;
        }
        memcpy(&out->addr, ai->ai_addr, ai->ai_addrlen);
        out->addrlen = (socklen_t)ai->ai_addrlen;
        freeaddrinfo(ai);
        if (bracketed)
            ((struct sockaddr_in6 *)&out->addr)->sin6_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in *)&out->addr)->sin_port = htons((uint16_t)port);
    }
done:
    if (hostbuf)
        snprintf(hostbuf, hostlen, "%s", host);
    if (port_out)
        *port_out = port;
    out->port = port;
    out->text = strdup(s - bracketed);
    if (!out->text) {
        free(out->host);
        out->host = NULL;
        *why = "out of memory";
        return -1;
    }
    return 0;
}

int cfg_parse_addr(const char *s, int default_port, cfg_addr_t *out)
{
    const char *why;
    return cfgp_parse_addr(s, default_port, CFGP_ADDR_STAR, out, NULL, 0, NULL, &why);
}

/* ---------------------------------------------------------------- strings */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Joins names into buf: "a, b, c". */
void cfgp_join(char *buf, size_t len, const char *const *names, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++) {
        int w = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}


static void fmt_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms % DAY_MS == 0)
        snprintf(buf, len, "%llud", (unsigned long long)(ms / DAY_MS));
    else if (ms % 3600000 == 0)
        snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llums", (unsigned long long)ms);
}


static void fmt_size(char *buf, size_t len, uint64_t v)
{
    if (v && v % (1ULL << 30) == 0)
        snprintf(buf, len, "%llug", (unsigned long long)(v >> 30));
    else if (v && v % (1ULL << 20) == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(v >> 20));
    else if (v && v % (1ULL << 10) == 0)
        snprintf(buf, len, "%lluk", (unsigned long long)(v >> 10));
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}


static int is_tchar(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

int cfgp_is_name(const char *s, int allow_upper)
{
    size_t n = strlen(s);
    if (n < 1 || n >= CFG_MAX_NAME)
        return 0;
    for (; *s; s++) {
        int ch = (unsigned char)*s;
        if (!(islower(ch) || isdigit(ch) || ch == '_' || ch == '-' ||
              (allow_upper && (isupper(ch) || ch == '.'))))
            return 0;
    }
    return 1;
}


/* "a, b, c" of up to n names, for "(defined: ...)" hints. */
void cfgp_name_list(char *buf, size_t len, const char *first, size_t stride, size_t n)
{
    const char *names[16] = {0};
    size_t k = n < NF(names) ? n : NF(names);
    for (size_t i = 0; i < k; i++)
        names[i] = first + i * stride;
    cfgp_join(buf, len, names, k);
    size_t used = strlen(buf);
    if (n > k && used + 6 < len)
        snprintf(buf + used, len - used, ", ...");
}


/* A header name of letters, digits and '-' only, 1..128 bytes: one that no
 * upstream reads as another spelling (see ups_name_eq). */
int cfgp_plain_header(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-')
            return 0;
    return 1;
}

int cfgp_valid_header(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}


static int method_sets_equal(const cfg_route_t *a, const cfg_route_t *b)
{
    if (a->nmethods != b->nmethods)
        return 0;
    for (size_t i = 0; i < a->nmethods; i++) {
        size_t j;
        for (j = 0; j < b->nmethods && strcmp(a->methods[i], b->methods[j]) != 0; j++)
            ;
        if (j == b->nmethods)
            return 0;
    }
    return 1;
}

/* Index of an earlier complete route with the same host, path and methods. */
long cfgp_find_dup_route(const cfg_route_t *routes, const unsigned char *complete, size_t i,
                         int nocase)
{
    const cfg_route_t *r = &routes[i];
    for (size_t j = 0; j < i; j++) {
        const cfg_route_t *o = &routes[j];
        if (complete[j] && (nocase ? strcasecmp(o->path, r->path) : strcmp(o->path, r->path)) == 0 &&
            (o->host == NULL) == (r->host == NULL) && (!o->host || !strcmp(o->host, r->host)) &&
            method_sets_equal(o, r))
            return (long)j;
    }
    return -1;
}

/* Index of name among n fixed-size records whose name starts at first. */
long cfgp_find_name(const char *first, size_t stride, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(first + i * stride, name) == 0)
            return (long)i;
    return -1;
}

/* Appends "file:line:col: path: msg" to e, and its position to (*pos)[idx]
 * (pos runs parallel to the errors of one load, idx counted from its first). */
void cfgp_push_error(cfg_errors_t *e, uint64_t **pos, size_t *cappos, size_t idx,
                     size_t line, size_t col, const char *path, const char *msg)
{
    const char *file = e->file ? e->file : "(config)";
    const char *p = (path && *path) ? path : "(root)";
    int len = snprintf(NULL, 0, "%s:%zu:%zu: %s: %s", file, line, col, p, msg);
    if (len < 0)
        return;
    char *s = malloc((size_t)len + 1);
    if (!s)
        abort();
    snprintf(s, (size_t)len + 1, "%s:%zu:%zu: %s: %s", file, line, col, p, msg);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        char **m = realloc(e->msgs, cap * sizeof *m);
        if (!m)
            abort();
        e->msgs = m;
        e->cap = cap;
    }
    if (idx >= *cappos) {
        size_t cap = *cappos ? *cappos * 2 : 16;
        uint64_t *q = realloc(*pos, cap * sizeof *q);
        if (!q)
            abort();
        *pos = q;
        *cappos = cap;
    }
    (*pos)[idx] = ((uint64_t)line << 32) | (col & 0xffffffffu);
    e->msgs[e->n++] = s;
}

/* Stable sort of msgs[0..n) by pos (line, then column). */
void cfgp_sort_errors(char **msgs, uint64_t *pos, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint64_t p = pos[i];
        char *s = msgs[i];
        size_t j = i;
        for (; j > 0 && pos[j - 1] > p; j--) {
            pos[j] = pos[j - 1];
            msgs[j] = msgs[j - 1];
        }
        pos[j] = p;
        msgs[j] = s;
    }
}

int cfgp_valid_env_name(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}


void cfg_errors_free(cfg_errors_t *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    free(errs->file);
    memset(errs, 0, sizeof *errs);
}



void cfg_free(cfg_t *cfg)
{
    if (!cfg)
        return;
    cfgp_policy_free(cfg);
    free(cfg->path);
    free(cfg->upgrade_socket);
    cfgl_free_listeners(cfg);
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        free(cfg->tls.certs[i].cert_file);
        free(cfg->tls.certs[i].key_file);
    }
    free(cfg->tls.certs);
    free(cfg->tls.ciphers);
    free(cfg->tls.ciphersuites);
    free(cfg->tls.groups);
    for (size_t i = 0; i < cfg->tls.nclasses; i++)
        free(cfg->tls.classes[i].ca_file);
    free(cfg->tls.classes);
    free(cfg->identity.device_id_prefix);
    for (size_t i = 0; i < CFG_H__COUNT; i++)
        free(cfg->identity.headers[i]);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        for (size_t k = 0; k < cfg->upstreams[i].nservers; k++)
            cfgp_addr_free(&cfg->upstreams[i].servers[k]);
        free(cfg->upstreams[i].servers);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cfg_route_t *r = &cfg->routes[i];
        free(r->host);
        free(r->path);
        for (size_t k = 0; k < r->nmethods; k++)
            free(r->methods[k]);
        free(r->methods);
    }
    free(cfg->routes);
    free(cfg->redis.host);
    cfgp_addr_free(&cfg->redis.addr);
    cfgr_free(cfg);
    free(cfg->redis.password_env);
    free(cfg->revocation.key);
    free(cfg->revocation.channel);
    free(cfg->admin.listen.text);
    free(cfg->admin.token_env);
    cfgm_free_metrics(cfg);
    cfgs_free_runas(cfg);
    free(cfg->logging.file);
    for (size_t i = 0; i < cfg->http.nforward_client_headers; i++)
        free(cfg->http.forward_client_headers[i]);
    free(cfg->http.forward_client_headers);
    cfg_issuance_free(cfg->issuance);
    free(cfg);
}


int cfgp_check_number(int kind, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                      char *msg, size_t len)
{
    uint64_t v;
    char a[32], b[32];
    if (kind == 'd') {
        if (cfgp_parse_u64(s, &v) == 0) {
            snprintf(msg, len, "missing unit in \"%.40s\": expected a duration like 500ms, "
                     "10s, 5m, 1h (e.g. \"%.20ss\")", s, s);
            return -1;
        }
        if (cfg_parse_duration_ms(s, &v) < 0) {
            snprintf(msg, len, "expected a duration like 500ms, 10s, 5m, 1h (units: ms, s, "
                     "m, h, d), got \"%.60s\"", s);
            return -1;
        }
        if (v < min || v > max) {
            fmt_ms(a, sizeof a, max);
            snprintf(msg, len, "duration must be %sat most %s, got \"%.60s\"",
                     min ? "more than 0 and " : "", a, s);
            return -1;
        }
    } else if (kind == 's') {
        if (cfg_parse_size(s, &v) < 0) {
            snprintf(msg, len, "expected a size like 512, 16k, 10m, 1g (bytes, k, m, g), "
                     "got \"%.60s\"", s);
            return -1;
        }
        if (v < min || v > max) {
            fmt_size(a, sizeof a, min);
            fmt_size(b, sizeof b, max);
            snprintf(msg, len, "size must be between %s and %s, got \"%.60s\"", a, b, s);
            return -1;
        }
    } else if (cfgp_parse_u64(s, &v) < 0 || v < min || v > max) {
        snprintf(msg, len, "expected an integer %llu..%llu, got \"%.60s\"",
                 (unsigned long long)min, (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

void cfgp_unknown_key(const char *key, const char *const *names, size_t n, char *msg,
                      size_t len)
{
    char list[512], hint[96] = "";
    size_t best = 3; /* suggest only close matches */
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(key, names[i]);
        if (d < best) {
            best = d;
            snprintf(hint, sizeof hint, "; did you mean \"%s\"?", names[i]);
        }
    }
    cfgp_join(list, sizeof list, names, n);
    snprintf(msg, len, "unknown key \"%.60s\" (expected one of: %s)%s", key, list, hint);
}

/* Route host: a DNS name or [IPv6] literal, without port; returned lowercased. */
char *cfgp_route_host(const char *s, char *msg, size_t len)
{
    char canon[CFG_HOST_MAX + 1];
    unsigned port = 0;
    long n = cfg_host_canon(s, strlen(s), canon, sizeof canon, &port);
    if (n < 0) {
        snprintf(msg, len, "invalid host \"%.60s\": %s (expected a host name like "
                 "api.example.com)", s, cfg_host_strerror(n));
        return NULL;
    }
    if (port) {
        snprintf(msg, len, "host must not include a port (routes match the Host header "
                 "without its port), got \"%.60s\"", s);
        return NULL;
    }
    if (strcmp(canon, s) != 0) {
        snprintf(msg, len, "host \"%.60s\" is not in canonical form (requests are matched on "
                 "the canonical Host: lowercase, no trailing dot, IPv6 as RFC 5952); write "
                 "\"%s\"", s, canon);
        return NULL;
    }
    char *h = strdup(s);
    if (!h)
        abort();
    return h;
}

/* Whether two of names[0..n) are equal ignoring case; *i < *j name the first pair. */
int cfgp_same_names(char *const *names, size_t n, size_t *i, size_t *j)
{
    for (*j = 1; *j < n; (*j)++)
        for (*i = 0; *i < *j; (*i)++)
            if (strcasecmp(names[*i], names[*j]) == 0)
                return 1;
    return 0;
}

/* No spaces, control characters or DEL. */
int cfgp_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* Bytes a canonical request path carries only as an escape (a raw one is
 * refused, and the escape is not decoded): a route may name them as %XX. */
static int escape_only(unsigned v)
{
    return v >= 0x80 || (v && strchr(" \"#<>?[]^`{|}", (int)v));
}

static int upper_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A route must be written as pol_target_canon() spells request paths, or
 * a request that means the same path could never match it (and would take
 * a shorter, perhaps less strict, route). */
const char *cfgp_route_path_error(const char *s)
{
    static const char bad_char[] =
        "may contain only letters, digits, '-', '.', '_', '~', '/' and %XX (uppercase hex) for "
        "bytes a request path must escape (space \" # < > ? [ ] ^ ` { | } and 0x80-0xFF): "
        "requests are matched in canonical form";
    size_t seg_n = 0;
    int all_dots = 1, end_bad = 0;
    for (size_t i = 1;; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '/' || ch == '\0') {
            if (ch == '/' && seg_n == 0)
                return "must not contain \"//\" (an empty segment)";
            if (seg_n && ((all_dots && seg_n <= 2) || end_bad))
                return "must not have a '.' or '..' segment, or a segment ending in '.' or %20";
            if (ch == '\0')
                return NULL;
            seg_n = 0;
            all_dots = 1;
            end_bad = 0;
        } else if (ch == '%') {
            int hi = upper_hex(s[i + 1]), lo = hi < 0 ? -1 : upper_hex(s[i + 2]);
            if (lo < 0 || !escape_only((unsigned)(hi * 16 + lo)))
                return bad_char;
            i += 2;
            seg_n++;
            all_dots = 0;
            end_bad = hi * 16 + lo == 0x20;
        } else if (isalnum(ch) || strchr("-._~", ch)) {
            seg_n++;
            all_dots = all_dots && ch == '.';
            end_bad = ch == '.';
        } else {
            return bad_char;
        }
    }
}

/* ---------------------------------------------------------------- YAML */

/* A plain scalar that YAML reads as null: "", "~", "null". */
int cfgp_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

/* "a mapping", "a sequence", "nothing" or the quoted scalar, for "got ..." */
const char *cfgp_describe(const yaml_node_t *n, char *buf, size_t len)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a sequence";
    if (cfgp_is_null(n))
        return "nothing";
    snprintf(buf, len, "\"%.60s\"", (const char *)n->data.scalar.value);
    return buf;
}

void cfgp_syntax_msg(const yaml_parser_t *parser, char *msg, size_t len)
{
    const char *problem = parser->problem ? parser->problem : "cannot parse the file";
    if (parser->context)
        snprintf(msg, len, "YAML syntax error: %s (%s at line %zu)", problem, parser->context,
                 (size_t)parser->context_mark.line + 1);
    else
        snprintf(msg, len, "YAML syntax error: %s", problem);
}

/* ---------------------------------------------------------------- files */

/* Whether two CA certificates are the same CA: the same subject and the
 * same public key. A re-issued CA (new validity, serial or extensions) is
 * another DER encoding of the same CA: it verifies the same chains. */
static int same_ca(X509 *a, X509 *b)
{
    if (X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) != 0)
        return 0;
    EVP_PKEY *ka = X509_get0_pubkey(a), *kb = X509_get0_pubkey(b);
    return ka && kb && EVP_PKEY_eq(ka, kb) == 1;
}

/* Whether a CA of class i is also in an earlier class (same_ca); names it in
 * subj, the earlier class in *other, and sets *reissued when the two
 * certificates differ (a re-issue rather than a copy). */
int cfgp_ca_overlap(STACK_OF(X509) *const *cas, size_t i, size_t *other, int *reissued,
                    char *subj, size_t len)
{
    for (size_t j = 0; j < i; j++) {
        for (int a = 0; cas[i] && cas[j] && a < sk_X509_num(cas[i]); a++) {
            X509 *x = sk_X509_value(cas[i], a);
            for (int b = 0; b < sk_X509_num(cas[j]); b++) {
                X509 *y = sk_X509_value(cas[j], b);
                if (same_ca(x, y)) {
                    cfgp_subject(x, subj, len);
                    *other = j;
                    *reissued = X509_cmp(x, y) != 0;
                    ERR_clear_error();
                    return 1;
                }
            }
        }
    }
    ERR_clear_error();
    return 0;
}

const char *cfg_ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown OpenSSL error";
}

/* fopen + fstat: the stream of a regular file, or NULL with the reason. */
static FILE *open_regular(const char *path, char *msg, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, len, "cannot read \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(msg, len, "cannot read \"%s\": not a regular file", path);
        fclose(f);
        return NULL;
    }
    return f;
}

BIO *cfg_open_file(const char *path, char *msg, size_t len)
{
    FILE *f = open_regular(path, msg, len);
    if (!f)
        return NULL;
    BIO *b = BIO_new_fp(f, BIO_CLOSE);
    if (!b) {
        snprintf(msg, len, "cannot read \"%s\": %s", path, cfg_ossl_reason());
        fclose(f);
        ERR_clear_error();
    }
    return b;
}

char *cfg_read_file(const char *path, size_t max, size_t *lenp, char *msg, size_t len)
{
    FILE *f = open_regular(path, msg, len);
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (!buf) {
        snprintf(msg, len, "cannot read \"%s\": out of memory", path);
    } else if (rerr) {
        snprintf(msg, len, "cannot read \"%s\": %s", path, strerror(rerr));
    } else if (n > max) {
        snprintf(msg, len, "cannot read \"%s\": larger than %zu bytes", path, max);
    } else {
        buf[n] = '\0';
        *lenp = n;
        return buf;
    }
    if (buf)
        OPENSSL_cleanse(buf, n);
    free(buf);
    return NULL;
}

void cfgp_subject(X509 *x, char *buf, size_t len)
{
    if (!X509_NAME_oneline(X509_get_subject_name(x), buf, (int)len))
        snprintf(buf, len, "?");
}

/* All certificates of a PEM file, in order; NULL with msg on error. */
static STACK_OF(X509) *read_certs(const char *path, char *msg, size_t len)
{
    BIO *b = cfg_open_file(path, msg, len);
    if (!b)
        return NULL;
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!sk) {
        snprintf(msg, len, "out of memory");
        BIO_free(b);
        return NULL;
    }
    ERR_clear_error();
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!x) {
            unsigned long e = ERR_peek_last_error();
            if (sk_X509_num(sk) > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM &&
                ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                break; /* clean end of file */
            if (sk_X509_num(sk) == 0)
                snprintf(msg, len, "\"%s\" is not a PEM certificate file: %s", path,
                         cfg_ossl_reason());
            else
                snprintf(msg, len, "certificate #%d in \"%s\" cannot be parsed: %s",
                         sk_X509_num(sk) + 1, path, cfg_ossl_reason());
            sk_X509_pop_free(sk, X509_free);
            sk = NULL;
            break;
        }
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            snprintf(msg, len, "out of memory");
            sk_X509_pop_free(sk, X509_free);
            sk = NULL;
            break;
        }
    }
    ERR_clear_error();
    BIO_free(b);
    return sk;
}

int cfgp_check_certs(const char *path, X509 **leaf, char *msg, size_t len)
{
    *leaf = NULL;
    STACK_OF(X509) *sk = read_certs(path, msg, len);
    if (!sk)
        return -1;
    *leaf = sk_X509_shift(sk);
    sk_X509_pop_free(sk, X509_free);
    return 0;
}

/* Never prompt for a pass phrase: encrypted keys are rejected. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

int cfgp_check_key(const char *path, const char *cert_path, X509 *leaf,
                   int *key_type, char *msg, size_t len)
{
    *key_type = 0;
    BIO *b = cfg_open_file(path, msg, len);
    if (!b)
        return -1;
    ERR_clear_error();
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!k) {
        snprintf(msg, len,
                 "\"%s\" is not an unencrypted PEM private key: %s", path, cfg_ossl_reason());
        ERR_clear_error();
        return -1;
    }
    int rc = 0;
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_EC) {
        char group[80] = "";
        size_t glen = 0;
        if (!EVP_PKEY_get_group_name(k, group, sizeof group, &glen))
            snprintf(group, sizeof group, "unknown");
        if (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0) {
            snprintf(msg, len, "EC key in \"%s\" uses curve %s (use P-256 or P-384)",
                     path, group);
            rc = -1;
        }
    } else if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(k);
        if (bits < 2048) {
            snprintf(msg, len, "RSA key in \"%s\" has %d bits (use at least 2048)",
                     path, bits);
            rc = -1;
        }
    } else {
        const char *t = EVP_PKEY_get0_type_name(k);
        snprintf(msg, len, "key in \"%s\" has unsupported type %s (use EC P-256/P-384 "
                 "or RSA >= 2048)", path, t ? t : "unknown");
        rc = -1;
    }
    if (rc == 0 && leaf && X509_check_private_key(leaf, k) != 1) {
        snprintf(msg, len, "key in \"%s\" does not match the certificate in \"%s\": %s",
                 path, cert_path, cfg_ossl_reason());
        rc = -1;
    }
    if (rc == 0)
        *key_type = id;
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

int cfgp_load_ca(const char *path, STACK_OF(X509) **out, char *msg, size_t len)
{
    *out = NULL;
    STACK_OF(X509) *sk = read_certs(path, msg, len);
    if (!sk)
        return -1;
    for (int i = 0; i < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i);
        if (X509_check_ca(x) < 1) {
            char subj[256];
            cfgp_subject(x, subj, sizeof subj);
            snprintf(msg, len, "certificate #%d in \"%s\" (%s) is not a CA certificate "
                     "(it needs basicConstraints CA:TRUE)", i + 1, path, subj);
            sk_X509_pop_free(sk, X509_free);
            ERR_clear_error();
            return -1;
        }
    }
    ERR_clear_error();
    *out = sk;
    return 0;
}

/* Next element of a ':' (or ',') separated list; returns its length, 0 at end. */
static size_t next_elem(const char **p, const char **start)
{
    const char *s = *p;
    while (*s == ':' || *s == ',' || *s == ' ')
        s++;
    *start = s;
    while (*s && *s != ':' && *s != ',' && *s != ' ')
        s++;
    *p = s;
    return (size_t)(s - *start);
}

/* kind: 0 = TLS 1.2 cipher list, 1 = TLS 1.3 ciphersuites, 2 = groups. */
int cfgp_check_tls_list(SSL_CTX **ctxp, int kind, const char *val, char *msg, size_t len)
{
    if (!*ctxp) {
        *ctxp = SSL_CTX_new(TLS_method());
        if (!*ctxp) {
            snprintf(msg, len, "cannot create an SSL context: %s", cfg_ossl_reason());
            ERR_clear_error();
            return -1;
        }
    }
    SSL_CTX *ctx = *ctxp;
    const char *p = val, *e;
    size_t n;
    char elem[128];
    int rc = 0;

    ERR_clear_error();
    if (kind == 0) {
        if (!SSL_CTX_set_cipher_list(ctx, val)) {
            snprintf(msg, len, "no usable TLS 1.2 cipher in \"%s\": %s", val, cfg_ossl_reason());
            rc = -1;
        }
        /* OpenSSL skips unknown names in a list; check each positive term alone. */
        while (rc == 0 && (n = next_elem(&p, &e)) > 0) {
            if (*e == '!' || *e == '-' || *e == '+' || *e == '@')
                continue;
            snprintf(elem, sizeof elem, "%.*s", (int)n, e);
            if (!SSL_CTX_set_cipher_list(ctx, elem)) {
                snprintf(msg, len, "unknown TLS 1.2 cipher \"%s\" (see `openssl ciphers -v`)",
                         elem);
                rc = -1;
            }
        }
    } else if (kind == 1) {
        if (!SSL_CTX_set_ciphersuites(ctx, val)) {
            snprintf(msg, len, "invalid TLS 1.3 ciphersuites \"%s\": %s", val, cfg_ossl_reason());
            rc = -1;
        }
        STACK_OF(SSL_CIPHER) *have = rc == 0 ? SSL_CTX_get_ciphers(ctx) : NULL;
        while (rc == 0 && (n = next_elem(&p, &e)) > 0) {
            snprintf(elem, sizeof elem, "%.*s", (int)n, e);
            int found = 0;
            for (int i = 0; have && i < sk_SSL_CIPHER_num(have); i++) {
                const SSL_CIPHER *c = sk_SSL_CIPHER_value(have, i);
                const char *std = SSL_CIPHER_standard_name(c);
                if (std && strcmp(std, elem) == 0 &&
                    strcmp(SSL_CIPHER_get_version(c), "TLSv1.3") == 0)
                    found = 1;
            }
            if (!found) {
                snprintf(msg, len, "unknown TLS 1.3 ciphersuite \"%s\" (known: "
                         "TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "
                         "TLS_CHACHA20_POLY1305_SHA256)", elem);
                rc = -1;
            }
        }
    } else {
        while (rc == 0 && (n = next_elem(&p, &e)) > 0) {
            snprintf(elem, sizeof elem, "%.*s", (int)n, e);
            if (!SSL_CTX_set1_groups_list(ctx, elem)) {
                snprintf(msg, len, "unknown group \"%s\" (e.g. X25519, P-256, P-384)", elem);
                rc = -1;
            }
        }
        if (rc == 0 && !SSL_CTX_set1_groups_list(ctx, val)) {
            snprintf(msg, len, "invalid group list \"%s\": %s", val, cfg_ossl_reason());
            rc = -1;
        }
    }
    ERR_clear_error();
    return rc;
}

void *cfgp_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        abort();
    return p;
}

char *cfgp_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

/* ---------------------------------------------------------------- OIDs */

int cfg_oid_parse(const char *s, cfg_oid_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    size_t len = s ? strlen(s) : 0, arcs = 0;
    unsigned long head[2] = {0, 0};   /* the first two arcs (capped: both are small) */
    if (len == 0 || len >= sizeof out->text) {
        *why = len ? "is too long" : "is empty";
        return -1;
    }
    for (size_t i = 0; i <= len; arcs++) {
        size_t j = i;
        while (s[j] >= '0' && s[j] <= '9')
            j++;
        if (j == i || (s[j] != '.' && s[j] != '\0')) {
            *why = "is not a dotted decimal OID such as 1.3.6.1.4.1.55555.1";
            return -1;
        }
        if (s[i] == '0' && j - i > 1) {
            *why = "has an arc with a leading zero";
            return -1;
        }
        for (size_t k = i; arcs < 2 && k < j; k++)
            head[arcs] = head[arcs] > 1000 ? head[arcs] : head[arcs] * 10 + (unsigned long)(s[k] - '0');
        i = j + 1;
    }
    if (arcs < 2) {
        *why = "needs at least two arcs";
        return -1;
    }
    if (head[0] > 2) {
        *why = "must begin with arc 0, 1 or 2";
        return -1;
    }
    if (head[0] < 2 && head[1] >= 40) {   /* X.660: 0.n and 1.n stop at 39 */
        *why = "has a second arc above 39 under arc 0 or 1";
        return -1;
    }
    int n = a2d_ASN1_OBJECT(out->der, (int)sizeof out->der, s, (int)len);
    ERR_clear_error();
    if (n <= 0) {
        *why = "is too long to encode";
        return -1;
    }
    out->der_len = (size_t)n;
    memcpy(out->text, s, len + 1);
    return 0;
}
