/* upstream/http: head collection and rewriting. */
#include "http.h"

#include <stdlib.h>
#include <string.h>

int ups_hdrs_init(ups_hdrs_t *h, uint32_t cap, uint32_t maxn)
{
    memset(h, 0, sizeof(*h));
    h->buf = malloc(cap);
    h->h = malloc(sizeof(*h->h) * maxn);
    if (!h->buf || !h->h) {
        ups_hdrs_free(h);
        return -1;
    }
    h->cap = cap;
    h->maxn = maxn;
    return 0;
}

void ups_hdrs_free(ups_hdrs_t *h)
{
    free(h->buf);
    free(h->h);
    memset(h, 0, sizeof(*h));
}

void ups_hdrs_reset(ups_hdrs_t *h)
{
    h->len = 0;
    h->n = 0;
    h->in_value = 0;
    h->err = 0;
    h->first.off = h->first.len = 0;
}

static int append(ups_hdrs_t *h, ups_span_t *s, const char *p, size_t n)
{
    if (h->err)
        return -1;
    if (n > h->cap - h->len) {
        h->err = UPS_HDRS_TOO_BIG;
        return -1;
    }
    if (s->len == 0)
        s->off = h->len;
    memcpy(h->buf + h->len, p, n);
    h->len += (uint32_t)n;
    s->len += (uint32_t)n;
    return 0;
}

int ups_hdrs_first(ups_hdrs_t *h, const char *p, size_t n)
{
    return append(h, &h->first, p, n);
}

int ups_hdrs_stash(ups_hdrs_t *h, ups_span_t *s, const char *p, size_t n)
{
    s->off = s->len = 0;
    return append(h, s, p, n);
}

int ups_hdrs_field(ups_hdrs_t *h, const char *p, size_t n)
{
    if (h->err)
        return -1;
    if (h->n == 0 || h->in_value) {   /* a new header starts */
        if (h->n == h->maxn) {
            h->err = UPS_HDRS_TOO_MANY;
            return -1;
        }
        memset(&h->h[h->n++], 0, sizeof(ups_hdr_t));
        h->in_value = 0;
    }
    return append(h, &h->h[h->n - 1].name, p, n);
}

int ups_hdrs_value(ups_hdrs_t *h, const char *p, size_t n)
{
    if (h->err || h->n == 0)
        return -1;
    if (!h->in_value) {
        h->in_value = 1;
        h->h[h->n - 1].value.off = h->len;
    }
    return append(h, &h->h[h->n - 1].value, p, n);
}

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

void ups_hdrs_finish(ups_hdrs_t *h)
{
    for (uint32_t i = 0; i < h->n; i++) {
        ups_span_t *v = &h->h[i].value;
        while (v->len && ows(h->buf[v->off])) {
            v->off++;
            v->len--;
        }
        while (v->len && ows(h->buf[v->off + v->len - 1]))
            v->len--;
    }
}

/* How an upstream may read a header name's byte: ASCII letters lowercased,
 * digits as they are, every other byte as '-'. lighttpd's CGI/FastCGI
 * environment and Apache 2.2 turn every byte that is not a letter or digit
 * into '_', which CGI, WSGI, Rack and PHP read as '-'; so X_Device_Id,
 * X.Device.Id and X~Device~Id are all HTTP_X_DEVICE_ID. A constant table:
 * this runs for every byte of every header name of every request. */
#define FOLD(c) ((unsigned char)((c) >= 'A' && (c) <= 'Z' ? (c) + ('a' - 'A')                  \
                                 : ((c) >= 'a' && (c) <= 'z') || ((c) >= '0' && (c) <= '9') ? (c) \
                                                                                            : '-'))
#define FOLD4(c) FOLD(c), FOLD((c) + 1), FOLD((c) + 2), FOLD((c) + 3)
#define FOLD16(c) FOLD4(c), FOLD4((c) + 4), FOLD4((c) + 8), FOLD4((c) + 12)
#define FOLD64(c) FOLD16(c), FOLD16((c) + 16), FOLD16((c) + 32), FOLD16((c) + 48)
static const unsigned char name_fold[256] = {FOLD64(0), FOLD64(64), FOLD64(128), FOLD64(192)};
#undef FOLD64
#undef FOLD16
#undef FOLD4
#undef FOLD

int ups_name_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++)
        if (name_fold[(unsigned char)a[i]] != name_fold[(unsigned char)b[i]])
            return 0;
    return 1;
}

int ups_name_odd(const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (name_fold[(unsigned char)name[i]] == '-' && name[i] != '-')
            return 1;
    return 0;
}

static int has_prefix(const char *name, size_t n, const char *prefix, size_t pn)
{
    return n > pn && ups_name_eq(name, pn, prefix, pn);
}

int ups_name_prefix(const char *name, size_t n, const char *prefix)
{
    return has_prefix(name, n, prefix, strlen(prefix));
}

int ups_hdrs_empty_name(const ups_hdrs_t *h)
{
    for (uint32_t i = 0; i < h->n; i++)
        if (h->h[i].name.len == 0)
            return (int)i;
    return -1;
}

static int name_is(const ups_hdrs_t *h, uint32_t i, const char *name, size_t n)
{
    return ups_name_eq(ups_str(h, h->h[i].name), h->h[i].name.len, name, n);
}

static int is_named(const char *name, size_t n, const char *want)
{
    return want && ups_name_eq(name, n, want, strlen(want));
}

int ups_hdrs_find(const ups_hdrs_t *h, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < h->n; i++)
        if (name_is(h, i, name, n))
            return (int)i;
    return -1;
}

int ups_hdrs_count(const ups_hdrs_t *h, const char *name)
{
    size_t n = strlen(name);
    int c = 0;
    for (uint32_t i = 0; i < h->n; i++)
        c += name_is(h, i, name, n);
    return c;
}

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate", NULL,
};

/* Is name listed as a token in a Connection header value? */
static int in_connection(const ups_hdrs_t *h, const char *name, size_t n)
{
    for (uint32_t i = 0; i < h->n; i++) {
        if (!name_is(h, i, "connection", 10))
            continue;
        const char *v = ups_str(h, h->h[i].value), *end = v + h->h[i].value.len;
        while (v < end) {
            while (v < end && (*v == ',' || ows(*v)))
                v++;
            const char *t = v;
            while (v < end && *v != ',' && !ows(*v))
                v++;
            if (ups_name_eq(t, (size_t)(v - t), name, n))
                return 1;
        }
    }
    return 0;
}

static int in_list(const char *const *list, const char *name, size_t n)
{
    for (int i = 0; list[i]; i++)
        if (is_named(name, n, list[i]))
            return 1;
    return 0;
}

int ups_is_hop_by_hop(const ups_hdrs_t *h, const char *name, size_t n)
{
    return in_list(hop_by_hop, name, n) || in_connection(h, name, n);
}

/* ---- which client headers are forwarded ---- */

/* One entry per name the table knows, owned names first (they win). */
enum { N_OWNED = 1, N_TRUST, N_ALLOWED };

typedef struct {
    const char *name;
    size_t len;
    int kind;
} name_entry_t;

struct ups_names {
    name_entry_t *e;
    size_t ne;
    const char *idp;           /* the identity headers' common prefix (cfg_identity_prefix) */
    size_t idp_len;            /* 0: none */
    int underscores;           /* enum cfg_underscores */
};

/* Request headers the gateway always sets or consumes itself, besides the
 * hop-by-hop ones. "proxy": a CGI upstream reads it as HTTP_PROXY (httpoxy). */
static const char *const owned_fixed[] = {
    "host", "content-length", "expect", "x-forwarded-for", "x-forwarded-proto",
    "x-request-id", "proxy", NULL,
};

static void put_entry(ups_names_t *t, const char *name, int kind)
{
    t->e[t->ne].name = name;
    t->e[t->ne].len = strlen(name);
    t->e[t->ne++].kind = kind;
}

static int is_allowed(const cfg_http_t *http, const char *name)
{
    for (size_t i = 0; i < http->nforward_client_headers; i++)
        if (is_named(name, strlen(name), http->forward_client_headers[i]))
            return 1;
    return 0;
}

ups_names_t *ups_names_new(const cfg_identity_t *icfg, const char *const *claims, size_t nclaims,
                           const cfg_http_t *http)
{
    size_t cap = sizeof(hop_by_hop) / sizeof(hop_by_hop[0]) + sizeof(owned_fixed) / sizeof(owned_fixed[0]) +
                 CFG_H__COUNT + nclaims + http->nforward_client_headers;
    for (size_t i = 0; cfg_trust_headers[i]; i++)
        cap++;
    ups_names_t *t = calloc(1, sizeof(*t));
    if (!t || !(t->e = calloc(cap, sizeof(*t->e)))) {
        free(t);
        return NULL;
    }
    for (size_t i = 0; hop_by_hop[i]; i++)
        put_entry(t, hop_by_hop[i], N_OWNED);
    for (size_t i = 0; owned_fixed[i]; i++)
        put_entry(t, owned_fixed[i], N_OWNED);
    for (size_t i = 0; i < CFG_H__COUNT; i++)
        if (icfg->headers[i])
            put_entry(t, icfg->headers[i], N_OWNED);
    for (size_t i = 0; i < nclaims; i++)
        put_entry(t, claims[i], N_OWNED);
    /* allow-listed ones first: X-Forwarded-Host is no entry of the trust list */
    for (size_t i = 0; i < http->nforward_client_headers; i++)
        put_entry(t, http->forward_client_headers[i], N_ALLOWED);
    for (size_t i = 0; cfg_trust_headers[i]; i++)
        if (!is_allowed(http, cfg_trust_headers[i]))
            put_entry(t, cfg_trust_headers[i], N_TRUST);
    t->idp = icfg->headers[CFG_H_SERIAL];
    t->idp_len = cfg_identity_prefix(icfg);
    t->underscores = http->underscores_in_headers;
    return t;
}

void ups_names_free(ups_names_t *t)
{
    if (!t)
        return;
    free(t->e);
    free(t);
}

/* The kind of name: owned under the identity prefix (no allow-list entry
 * overrides that), else the table's entry, else by prefix; 0: none. */
static int lookup(const ups_names_t *t, const char *name, size_t n)
{
    if (t->idp_len && has_prefix(name, n, t->idp, t->idp_len))
        return N_OWNED;
    for (size_t i = 0; i < t->ne; i++)
        if (t->e[i].len == n && ups_name_eq(name, n, t->e[i].name, n))
            return t->e[i].kind;
    if (ups_name_prefix(name, n, "proxy-"))
        return N_OWNED;
    for (size_t i = 0; cfg_trust_prefixes[i]; i++)
        if (ups_name_prefix(name, n, cfg_trust_prefixes[i]))
            return N_TRUST;
    return 0;
}

int ups_name_class(const ups_names_t *t, const ups_hdrs_t *h, const char *name, size_t n)
{
    int us = ups_name_odd(name, n);
    int kind = lookup(t, name, n);
    if (kind && us)
        return UPS_NAME_COLLISION;
    if (kind)
        return kind == N_OWNED ? UPS_NAME_OWNED : kind == N_TRUST ? UPS_NAME_TRUST : UPS_NAME_PASS;
    if (in_connection(h, name, n))
        return UPS_NAME_OWNED;
    return us ? UPS_NAME_UNDERSCORE : UPS_NAME_PASS;
}

int ups_names_check(const ups_names_t *t, const ups_hdrs_t *h, int *bad)
{
    int first_us = -1;
    if ((*bad = ups_hdrs_empty_name(h)) >= 0)
        return UPS_NAME_EMPTY;
    for (uint32_t i = 0; i < h->n; i++) {
        const char *name = ups_str(h, h->h[i].name);
        size_t n = h->h[i].name.len;
        if (!ups_name_odd(name, n))
            continue;   /* only a name with a byte other than A-Z a-z 0-9 - can be refused */
        int k = ups_name_class(t, h, name, n);
        if (k == UPS_NAME_COLLISION) {
            *bad = (int)i;
            return UPS_NAME_COLLISION;
        }
        if (k == UPS_NAME_UNDERSCORE && first_us < 0)
            first_us = (int)i;
    }
    if (first_us >= 0 && t->underscores == CFG_US_REFUSE) {
        *bad = first_us;
        return UPS_NAME_UNDERSCORE;
    }
    return 0;
}

/* Is the client's header forwarded as sent? */
static int forwarded(const ups_names_t *t, const ups_hdrs_t *h, const char *name, size_t n)
{
    int k = ups_name_class(t, h, name, n);
    return k == UPS_NAME_PASS || (k == UPS_NAME_UNDERSCORE && t->underscores == CFG_US_ALLOW);
}

/* A head is assembled in a stack buffer and handed to the evbuffer in one
 * add; only a head larger than the buffer spills in several. No printf. */
typedef struct {
    struct evbuffer *out;
    size_t len;
    int err;
    char buf[4096];
} head_t;

static void put(head_t *b, const void *p, size_t n)
{
    if (b->len + n > sizeof(b->buf)) {
        if (b->len && evbuffer_add(b->out, b->buf, b->len) < 0)
            b->err = 1;
        b->len = 0;
        if (n > sizeof(b->buf)) {
            if (evbuffer_add(b->out, p, n) < 0)
                b->err = 1;
            return;
        }
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

static void put_str(head_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_u64(head_t *b, uint64_t v)
{
    char t[20];
    int i = (int)sizeof(t);
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, t + i, sizeof(t) - (size_t)i);
}

static void put_field(head_t *b, const char *name, size_t nlen, const char *val, size_t vlen)
{
    put(b, name, nlen);
    PUT_LIT(b, ": ");
    put(b, val, vlen);
    PUT_LIT(b, "\r\n");
}

static void add_hdr(head_t *b, const char *name, const char *val)
{
    if (name && val)
        put_field(b, name, strlen(name), val, strlen(val));
}

static int head_done(head_t *b)
{
    PUT_LIT(b, "\r\n");
    if (b->len && evbuffer_add(b->out, b->buf, b->len) < 0)
        b->err = 1;
    return b->err ? -1 : 0;
}

int ups_build_request_head(struct evbuffer *out, const ups_hdrs_t *h, const ups_req_meta_t *m)
{
    head_t b0, *b = &b0;
    b->out = out;
    b->len = 0;
    b->err = 0;
    put_str(b, m->method);
    PUT_LIT(b, " ");
    put(b, ups_str(h, h->first), h->first.len);
    PUT_LIT(b, " HTTP/1.1\r\n");

    /* Host first, exactly once (the caller has checked there is one), in
     * the canonical spelling the route was chosen on when the caller has it. */
    int host = ups_hdrs_find(h, "host");
    if (m->host)
        put_field(b, "Host", 4, m->host, strlen(m->host));
    else if (host >= 0)
        put_field(b, "Host", 4, ups_str(h, h->h[host].value), h->h[host].value.len);
    for (uint32_t i = 0; i < h->n; i++) {
        const char *name = ups_str(h, h->h[i].name);
        size_t n = h->h[i].name.len;
        if (!forwarded(m->names, h, name, n))
            continue;
        put_field(b, name, n, ups_str(h, h->h[i].value), h->h[i].value.len);
    }

    const tls_identity_t *id = m->id;
    char *const *hn = m->icfg->headers;
    if (id) {
        add_hdr(b, hn[CFG_H_SERIAL], id->serial);
        add_hdr(b, hn[CFG_H_FINGERPRINT], id->fingerprint);
        add_hdr(b, hn[CFG_H_SUBJECT], id->subject);
        add_hdr(b, hn[CFG_H_ISSUER], id->issuer);
        if (id->san_uri[0])
            add_hdr(b, hn[CFG_H_SAN_URI], id->san_uri);
        if (id->san_dns[0])
            add_hdr(b, hn[CFG_H_SAN_DNS], id->san_dns);
        add_hdr(b, hn[CFG_H_NOT_AFTER], id->not_after);
        add_hdr(b, hn[CFG_H_CLASS], id->class_name);
        add_hdr(b, hn[CFG_H_DEVICE_ID], id->device_id);
        if (id->integrity >= 0)
            add_hdr(b, hn[CFG_H_INTEGRITY], cfg_integrity_name(id->integrity));
    }
    for (size_t i = 0; i < m->nadd; i++)
        add_hdr(b, m->add[i].name, m->add[i].value);
    add_hdr(b, "X-Forwarded-For", m->peer_ip);
    add_hdr(b, "X-Forwarded-Proto", "https");
    add_hdr(b, "X-Request-Id", m->request_id);
    if (m->chunked)
        PUT_LIT(b, "Transfer-Encoding: chunked\r\n");
    else if (m->content_length ||
             /* a body-less request keeps an explicit zero when it had one */
             ups_hdrs_find(h, "content-length") >= 0) {
        PUT_LIT(b, "Content-Length: ");
        put_u64(b, m->content_length);
        PUT_LIT(b, "\r\n");
    }
    return head_done(b);
}

int ups_build_response_head(struct evbuffer *out, int status, const ups_hdrs_t *h,
                            const char *extra, int framing, uint64_t content_length, int close)
{
    head_t b0, *b = &b0;
    b->out = out;
    b->len = 0;
    b->err = 0;
    PUT_LIT(b, "HTTP/1.1 ");
    put_u64(b, (uint64_t)status);
    PUT_LIT(b, " ");
    if (h && h->first.len)
        put(b, ups_str(h, h->first), h->first.len);
    else
        put_str(b, ups_reason(status));
    PUT_LIT(b, "\r\n");
    for (uint32_t i = 0; h && i < h->n; i++) {
        const char *name = ups_str(h, h->h[i].name);
        size_t n = h->h[i].name.len;
        if (ups_is_hop_by_hop(h, name, n) ||
            (framing != UPS_FRAME_NONE && is_named(name, n, "content-length")))
            continue;
        put_field(b, name, n, ups_str(h, h->h[i].value), h->h[i].value.len);
    }
    if (extra)
        put_str(b, extra);
    if (framing == UPS_FRAME_LENGTH) {
        PUT_LIT(b, "Content-Length: ");
        put_u64(b, content_length);
        PUT_LIT(b, "\r\n");
    } else if (framing == UPS_FRAME_CHUNKED) {
        PUT_LIT(b, "Transfer-Encoding: chunked\r\n");
    }
    if (close)
        PUT_LIT(b, "Connection: close\r\n");
    return head_done(b);
}

const char *ups_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
