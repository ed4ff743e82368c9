/* args: command-line parsing for portcullis-bench. */
#include "args.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DURATION_NS (30ULL * 24 * 3600 * 1000000000ULL) /* 30 days */
#define MAX_BODY_SIZE (1ULL << 30)

static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, BENCH_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Parses "123" or "1.5" at the start of s; returns the end, NULL if no digits. */
static const char *parse_decimal(const char *s, long double *out)
{
    long double v = 0;
    int digits = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        long double scale = 0.1L;
        while (*p >= '0' && *p <= '9') {
            v += (*p - '0') * scale;
            scale /= 10;
            p++;
            digits++;
        }
    }
    if (!digits)
        return NULL;
    *out = v;
    return p;
}

int parse_duration(const char *s, uint64_t *ns, char *err)
{
    if (!s || !*s)
        return fail(err, "empty duration (expected e.g. 10s, 500ms, 1m)");
    long double v;
    const char *p = parse_decimal(s, &v);
    if (!p)
        return fail(err, "invalid duration '%s' (expected e.g. 10s, 500ms, 1m)", s);
    long double mult;
    if (*p == '\0' || strcmp(p, "s") == 0)
        mult = 1e9L;
    else if (strcmp(p, "ms") == 0)
        mult = 1e6L;
    else if (strcmp(p, "us") == 0)
        mult = 1e3L;
    else if (strcmp(p, "m") == 0)
        mult = 60e9L;
    else if (strcmp(p, "h") == 0)
        mult = 3600e9L;
    else
        return fail(err, "invalid duration '%s': unknown unit '%s' (use us, ms, s, m or h)", s, p);
    long double r = v * mult + 0.5L;
    if (r > (long double)MAX_DURATION_NS)
        return fail(err, "duration '%s' is too long (at most 30 days)", s);
    *ns = (uint64_t)r;
    return 0;
}

int parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err)
{
    if (!s || !*s)
        return fail(err, "empty number");
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return fail(err, "invalid number '%s' (expected a non-negative integer)", s);
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE || v < min || v > max)
        return fail(err, "number '%s' out of range (%llu..%llu)", s, (unsigned long long)min,
                    (unsigned long long)max);
    *out = v;
    return 0;
}

int parse_rate(const char *s, double *out, char *err)
{
    long double v;
    const char *p = s ? parse_decimal(s, &v) : NULL;
    if (!p || *p)
        return fail(err, "invalid rate '%s' (expected requests per second, e.g. 1000 or 2.5)",
                    s ? s : "");
    if (v <= 0 || v > 1e8L)
        return fail(err, "rate '%s' out of range (greater than 0, at most 1e8)", s);
    *out = (double)v;
    return 0;
}

int parse_size(const char *s, uint64_t *out, char *err)
{
    if (!s || !*s)
        return fail(err, "empty size");
    const char *p = s;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > MAX_BODY_SIZE)
            break;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == s)
        return fail(err, "invalid size '%s' (expected bytes, e.g. 512, 4k, 1m)", s);
    uint64_t mult = 1;
    if (*p == 'k' || *p == 'K')
        mult = 1024, p++;
    else if (*p == 'm' || *p == 'M')
        mult = 1024 * 1024, p++;
    if (*p)
        return fail(err, "invalid size '%s' (expected bytes, e.g. 512, 4k, 1m)", s);
    if (v > MAX_BODY_SIZE / mult)
        return fail(err, "size '%s' is too large (at most 1g)", s);
    *out = v * mult;
    return 0;
}

static int bad_url_char(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f;
}

int parse_url(const char *s, bench_url_t *u, char *err)
{
    memset(u, 0, sizeof(*u));
    static const char want[] = "expected https://host:port/path";
    if (!s || !*s)
        return fail(err, "empty URL (%s)", want);
    for (const char *p = s; *p; p++)
        if (bad_url_char((unsigned char)*p))
            return fail(err, "URL '%s' contains a space or control/non-ASCII character", s);
    const char *sep = strstr(s, "://");
    if (!sep)
        return fail(err, "URL '%s' has no scheme (%s)", s, want);
    if ((size_t)(sep - s) != 5 || strncasecmp(s, "https", 5) != 0)
        return fail(err, "URL '%s': only the https scheme is supported (%s)", s, want);
    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?#");
    const char *rest = a + alen;
    if (alen == 0)
        return fail(err, "URL '%s' has no host (%s)", s, want);
    if (memchr(a, '@', alen))
        return fail(err, "URL '%s': user information (user@host) is not supported", s);
    const char *hs, *he, *port;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', alen);
        if (!rb)
            return fail(err, "URL '%s': unterminated IPv6 address (missing ']')", s);
        hs = a + 1;
        he = rb;
        if (rb + 1 == a + alen)
            return fail(err, "URL '%s' has no port (%s)", s, want);
        if (rb[1] != ':')
            return fail(err, "URL '%s': unexpected characters after the IPv6 address", s);
        port = rb + 2;
    } else {
        const char *colon = memchr(a, ':', alen);
        if (!colon)
            return fail(err, "URL '%s' has no port (%s)", s, want);
        hs = a;
        he = colon;
        port = colon + 1;
    }
    size_t hlen = (size_t)(he - hs);
    size_t plen = (size_t)(a + alen - port);
    if (hlen == 0)
        return fail(err, "URL '%s' has an empty host (%s)", s, want);
    if (hlen >= sizeof(u->host))
        return fail(err, "URL '%s': host is too long", s);
    memcpy(u->host, hs, hlen);
    if (a[0] == '[') {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, u->host, &a6) != 1)
            return fail(err, "URL '%s': '%s' is not a valid IPv6 address", s, u->host);
        u->host_is_ip = 1;
    } else {
        for (size_t i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)u->host[i];
            if (!isalnum(c) && c != '-' && c != '.' && c != '_')
                return fail(err, "URL '%s': invalid character '%c' in host", s, c);
        }
        struct in_addr a4;
        u->host_is_ip = inet_pton(AF_INET, u->host, &a4) == 1;
    }
    if (plen == 0)
        return fail(err, "URL '%s' has an empty port (%s)", s, want);
    if (plen > 5)
        return fail(err, "URL '%s': port out of range (1..65535)", s);
    unsigned long pv = 0;
    for (size_t i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9')
            return fail(err, "URL '%s': port '%.*s' is not a number", s, (int)plen, port);
        pv = pv * 10 + (unsigned long)(port[i] - '0');
    }
    if (pv < 1 || pv > 65535)
        return fail(err, "URL '%s': port out of range (1..65535)", s);
    snprintf(u->port, sizeof(u->port), "%lu", pv);
    if (*rest == '#')
        return fail(err, "URL '%s': fragments (#...) are not sent; remove it", s);
    size_t rlen = strcspn(rest, "#");
    if (rest[rlen] == '#')
        return fail(err, "URL '%s': fragments (#...) are not sent; remove it", s);
    if (rlen + 2 > sizeof(u->path))
        return fail(err, "URL '%s': path is too long", s);
    if (rlen == 0)
        strcpy(u->path, "/");
    else if (rest[0] == '?')
        snprintf(u->path, sizeof(u->path), "/%.*s", (int)rlen, rest);
    else
        memcpy(u->path, rest, rlen);
    if (u->host_is_ip && a[0] == '[')
        snprintf(u->authority, sizeof(u->authority), "[%s]:%s", u->host, u->port);
    else
        snprintf(u->authority, sizeof(u->authority), "%s:%s", u->host, u->port);
    return 0;
}

static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int parse_header(const char *s, bench_header_t *h, char *err)
{
    h->name = h->value = NULL;
    if (!s)
        return fail(err, "empty header");
    const char *colon = strchr(s, ':');
    if (!colon)
        return fail(err, "header '%s' has no ':' (expected 'Name: value')", s);
    if (colon == s)
        return fail(err, "header '%s' has an empty name (expected 'Name: value')", s);
    for (const char *p = s; p < colon; p++)
        if (!is_tchar((unsigned char)*p))
            return fail(err, "header '%s': invalid character in the name", s);
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vlen = strlen(v);
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(err, "header '%.40s': control character in the value", s);
    }
    h->name = strndup(s, (size_t)(colon - s));
    h->value = strndup(v, vlen);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        h->name = h->value = NULL;
        return fail(err, "out of memory");
    }
    return 0;
}

const char *bench_mode_name(bench_mode_t m)
{
    switch (m) {
    case MODE_FULL: return "full";
    case MODE_RESUME: return "resume";
    case MODE_KEEPALIVE: return "keepalive";
    case MODE_IDLE: return "idle";
    }
    return "?";
}

const char *bench_resume_kind_name(resume_kind_t k)
{
    switch (k) {
    case RESUME_TLS13: return "tls13";
    case RESUME_TLS12_ID: return "tls12-id";
    case RESUME_TLS12_TICKET: return "tls12-ticket";
    }
    return "?";
}

void bench_usage(FILE *out)
{
    fputs(
        "usage: portcullis-bench [options] https://host:port/path\n"
        "  -c N                 connections (default 10)\n"
        "  -t N                 threads (default 1)\n"
        "  -d DURATION          run time, e.g. 10s, 500ms, 1m (default 10s)\n"
        "  -n N                 total requests instead of a duration (wins over -d)\n"
        "  --cert FILE          client certificate (PEM)\n"
        "  --key FILE           client private key (PEM; default: --cert)\n"
        "  --cacert FILE        verify the server against these CAs (default: no check)\n"
        "  -H 'Name: value'     request header (repeatable)\n"
        "  -m METHOD            request method (default GET)\n"
        "  --body FILE          request body from a file\n"
        "  --body-size N        request body of N bytes (e.g. 512, 4k, 1m)\n"
        "  --mode MODE          full | resume | keepalive | idle (default keepalive)\n"
        "  --resume-kind KIND   tls13 | tls12-id | tls12-ticket (resume mode; default tls13)\n"
        "  --tls VERSION        1.2 | 1.3: highest TLS version (default 1.3)\n"
        "  --rate R             open loop: R requests/s in total at constant arrival\n"
        "                       (idle mode: the connections open at R/s instead of at once)\n"
        "  --timeout DURATION   per request (default 10s)\n"
        "  --warmup DURATION    run this long first, excluded from the statistics\n"
        "  --json               print the report as one JSON object\n"
        "  -h, --help           this text\n"
        "exit status: 0 done, 1 runtime failure, 2 usage error\n",
        out);
}

/* Option table: name (long), short char, takes a value. */
enum {
    OPT_C = 1, OPT_T, OPT_D, OPT_N, OPT_CERT, OPT_KEY, OPT_CACERT, OPT_H, OPT_M, OPT_BODY,
    OPT_BODY_SIZE, OPT_MODE, OPT_RESUME, OPT_TLS, OPT_RATE, OPT_TIMEOUT, OPT_JSON,
    OPT_WARMUP, OPT_HELP
};

static const struct {
    const char *lng;
    char shrt;
    int id;
    int has_arg;
} options[] = {
    {"connections", 'c', OPT_C, 1}, {"threads", 't', OPT_T, 1},
    {"duration", 'd', OPT_D, 1},    {"requests", 'n', OPT_N, 1},
    {"cert", 0, OPT_CERT, 1},       {"key", 0, OPT_KEY, 1},
    {"cacert", 0, OPT_CACERT, 1},   {"header", 'H', OPT_H, 1},
    {"method", 'm', OPT_M, 1},      {"body", 0, OPT_BODY, 1},
    {"body-size", 0, OPT_BODY_SIZE, 1}, {"mode", 0, OPT_MODE, 1},
    {"resume-kind", 0, OPT_RESUME, 1},  {"tls", 0, OPT_TLS, 1},
    {"rate", 0, OPT_RATE, 1},       {"timeout", 0, OPT_TIMEOUT, 1},
    {"json", 0, OPT_JSON, 0},       {"warmup", 0, OPT_WARMUP, 1},
    {"help", 'h', OPT_HELP, 0},
};

static int apply(bench_opts_t *o, int id, const char *name, const char *v, char *err)
{
    uint64_t n;
    char e2[BENCH_ERRLEN];
    switch (id) {
    case OPT_C:
        if (parse_count(v, 1, 1000000, &n, e2))
            return fail(err, "%s: %s", name, e2);
        o->connections = (unsigned)n;
        return 0;
    case OPT_T:
        if (parse_count(v, 1, 1024, &n, e2))
            return fail(err, "%s: %s", name, e2);
        o->threads = (unsigned)n;
        return 0;
    case OPT_D:
        if (parse_duration(v, &o->duration_ns, e2))
            return fail(err, "%s: %s", name, e2);
        if (o->duration_ns == 0)
            return fail(err, "%s: the duration must be greater than 0", name);
        o->duration_given = 1;
        return 0;
    case OPT_N:
        if (parse_count(v, 1, UINT64_MAX / 2, &o->total_requests, e2))
            return fail(err, "%s: %s", name, e2);
        return 0;
    case OPT_CERT: o->cert = v; return 0;
    case OPT_KEY: o->key = v; return 0;
    case OPT_CACERT: o->cacert = v; return 0;
    case OPT_H:
        if (o->nheaders >= BENCH_MAX_HEADERS)
            return fail(err, "%s: too many headers (at most %d)", name, BENCH_MAX_HEADERS);
        if (parse_header(v, &o->headers[o->nheaders], e2))
            return fail(err, "%s: %s", name, e2);
        o->nheaders++;
        return 0;
    case OPT_M:
        if (!*v || strlen(v) >= sizeof(o->method))
            return fail(err, "%s: invalid method '%s'", name, v);
        for (const char *p = v; *p; p++)
            if (!is_tchar((unsigned char)*p))
                return fail(err, "%s: invalid method '%s'", name, v);
        strcpy(o->method, v);
        return 0;
    case OPT_BODY: o->body_file = v; return 0;
    case OPT_BODY_SIZE:
        if (parse_size(v, &o->body_size, e2))
            return fail(err, "%s: %s", name, e2);
        o->body_size_given = 1;
        return 0;
    case OPT_MODE:
        if (!strcmp(v, "full")) o->mode = MODE_FULL;
        else if (!strcmp(v, "resume")) o->mode = MODE_RESUME;
        else if (!strcmp(v, "keepalive")) o->mode = MODE_KEEPALIVE;
        else if (!strcmp(v, "idle")) o->mode = MODE_IDLE;
        else return fail(err, "%s: unknown mode '%s' (full, resume, keepalive or idle)", name, v);
        return 0;
    case OPT_RESUME:
        if (!strcmp(v, "tls13")) o->resume_kind = RESUME_TLS13;
        else if (!strcmp(v, "tls12-id")) o->resume_kind = RESUME_TLS12_ID;
        else if (!strcmp(v, "tls12-ticket")) o->resume_kind = RESUME_TLS12_TICKET;
        else return fail(err, "%s: unknown kind '%s' (tls13, tls12-id or tls12-ticket)", name, v);
        o->resume_kind_given = 1;
        return 0;
    case OPT_TLS:
        if (!strcmp(v, "1.2")) o->tls_max = 12;
        else if (!strcmp(v, "1.3")) o->tls_max = 13;
        else return fail(err, "%s: unknown TLS version '%s' (1.2 or 1.3)", name, v);
        return 0;
    case OPT_RATE:
        if (parse_rate(v, &o->rate, e2))
            return fail(err, "%s: %s", name, e2);
        return 0;
    case OPT_TIMEOUT:
        if (parse_duration(v, &o->timeout_ns, e2))
            return fail(err, "%s: %s", name, e2);
        if (o->timeout_ns < 1000000)
            return fail(err, "%s: the timeout must be at least 1ms", name);
        return 0;
    case OPT_WARMUP:
        if (parse_duration(v, &o->warmup_ns, e2))
            return fail(err, "%s: %s", name, e2);
        return 0;
    }
    return fail(err, "internal error: option %d", id);
}

static void opts_defaults(bench_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->connections = 10;
    o->threads = 1;
    o->duration_ns = 10ULL * 1000000000ULL;
    strcpy(o->method, "GET");
    o->mode = MODE_KEEPALIVE;
    o->resume_kind = RESUME_TLS13;
    o->tls_max = 13;
    o->timeout_ns = 10ULL * 1000000000ULL;
}

static int validate(bench_opts_t *o, int tls_given, char *err)
{
    if (o->threads > o->connections)
        return fail(err, "-t %u is more than -c %u: every thread needs a connection",
                    o->threads, o->connections);
    if (o->body_file && o->body_size_given)
        return fail(err, "--body and --body-size are mutually exclusive");
    if (o->key && !o->cert)
        return fail(err, "--key given without --cert");
    if (o->cert && !o->key)
        o->key = o->cert;
    if (o->resume_kind_given && o->mode != MODE_RESUME)
        return fail(err, "--resume-kind only applies to --mode resume");
    if (o->mode == MODE_RESUME && tls_given) {
        int want = o->resume_kind == RESUME_TLS13 ? 13 : 12;
        if (o->tls_max != want)
            return fail(err, "--tls %s contradicts --resume-kind %s", o->tls_max == 13 ? "1.3" : "1.2",
                        bench_resume_kind_name(o->resume_kind));
    }
    if (o->mode == MODE_RESUME)
        o->tls_max = o->resume_kind == RESUME_TLS13 ? 13 : 12;
    if (o->mode == MODE_IDLE && o->total_requests)
        return fail(err, "--mode idle sends no requests: -n does not apply");
    return 0;
}

int bench_parse_args(int argc, char **argv, bench_opts_t *o, char *err)
{
    opts_defaults(o);
    const char *url = NULL;
    int tls_given = 0, only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (url)
                return fail(err, "more than one URL given ('%s' and '%s')", url, a);
            url = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_positional = 1;
            continue;
        }
        int idx = -1;
        const char *val = NULL;
        char name[64];
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t nlen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++)
                if (strlen(options[k].lng) == nlen && !strncmp(options[k].lng, a + 2, nlen))
                    idx = (int)k;
            if (idx < 0)
                return fail(err, "unknown option '%.*s'", (int)(nlen + 2), a);
            snprintf(name, sizeof(name), "--%s", options[idx].lng);
            if (eq) {
                if (!options[idx].has_arg)
                    return fail(err, "%s takes no value", name);
                val = eq + 1;
            }
        } else {
            for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++)
                if (options[k].shrt && options[k].shrt == a[1])
                    idx = (int)k;
            if (idx < 0)
                return fail(err, "unknown option '-%c'", a[1]);
            snprintf(name, sizeof(name), "-%c", a[1]);
            if (a[2]) {
                if (!options[idx].has_arg)
                    return fail(err, "%s takes no value", name);
                val = a + 2;
            }
        }
        int id = options[idx].id;
        if (id == OPT_HELP)
            return 1;
        if (id == OPT_JSON) {
            o->json = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return fail(err, "%s needs a value", name);
            val = argv[++i];
        }
        if (id == OPT_TLS)
            tls_given = 1;
        if (apply(o, id, name, val, err))
            return -1;
    }
    if (!url)
        return fail(err, "no URL given (expected https://host:port/path)");
    char e2[BENCH_ERRLEN];
    if (parse_url(url, &o->url, e2))
        return fail(err, "%s", e2);
    return validate(o, tls_given, err);
}

void bench_opts_free(bench_opts_t *o)
{
    for (unsigned i = 0; i < o->nheaders; i++) {
        free(o->headers[i].name);
        free(o->headers[i].value);
    }
    o->nheaders = 0;
}
