/* upstream/http: HTTP/1.1 message heads as the proxy sees them.
 *
 * ups_hdrs_t collects the pieces llhttp hands out (a request target or a
 * status reason, then header names and values) into one fixed-size buffer
 * sized by the configured limit, so a head never grows memory past it and
 * never needs a copy. The rewrite functions turn a parsed head into the one
 * sent on the other side: hop-by-hop headers, client-sent copies of the
 * gateway's own headers and client-chosen trust headers dropped (see
 * ups_names_t), verified identity and forwarding headers added.
 */
#ifndef PORTCULLIS_UPSTREAM_HTTP_H
#define PORTCULLIS_UPSTREAM_HTTP_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"
#include "../tls/tls.h"

typedef struct {
    uint32_t off, len;
} ups_span_t;

typedef struct {
    ups_span_t name, value;
} ups_hdr_t;

enum ups_hdrs_err { UPS_HDRS_OK = 0, UPS_HDRS_TOO_BIG = 1, UPS_HDRS_TOO_MANY = 2, UPS_HDRS_NOMEM = 3 };

typedef struct {
    char *buf;
    uint32_t len, cap;
    ups_span_t first;  /* request target, or response reason phrase */
    ups_hdr_t *h;
    uint32_t n, maxn;
    int in_value;      /* last piece appended was a value */
    int err;           /* enum ups_hdrs_err; sticky until reset */
} ups_hdrs_t;

/* cap: total bytes of target + names + values; maxn: header count. */
int ups_hdrs_init(ups_hdrs_t *h, uint32_t cap, uint32_t maxn);
void ups_hdrs_free(ups_hdrs_t *h);
void ups_hdrs_reset(ups_hdrs_t *h);
/* Each returns 0, or -1 with h->err set. */
int ups_hdrs_first(ups_hdrs_t *h, const char *p, size_t n);
int ups_hdrs_field(ups_hdrs_t *h, const char *p, size_t n);
int ups_hdrs_value(ups_hdrs_t *h, const char *p, size_t n);
/* Keeps n more bytes (a value the gateway derived from the head, such as
 * the canonical Host) in the head's buffer, under its byte limit, in *s
 * (zeroed first). 0, or -1 with h->err set. */
int ups_hdrs_stash(ups_hdrs_t *h, ups_span_t *s, const char *p, size_t n);
/* Trims optional whitespace around every value; call once, when complete. */
void ups_hdrs_finish(ups_hdrs_t *h);

static inline const char *ups_str(const ups_hdrs_t *h, ups_span_t s)
{
    return h->buf + s.off;
}

/* Header names as an upstream may read them. CGI, WSGI, Rack, PHP and many
 * frameworks turn '-' into '_' (X-Device-Id and X_Device_Id both become
 * HTTP_X_DEVICE_ID), and lighttpd's CGI/FastCGI environment and Apache 2.2
 * turn every byte that is not a letter or digit into '_' (X.Device.Id,
 * X~Device~Id too). So two names are one header when they are equal after
 * ASCII lowercasing and mapping every byte other than A-Z a-z 0-9 to '-'.
 * Every comparison of header names in the gateway goes through ups_name_eq.
 * Pure functions, no allocation.
 * ups_name_eq: 1 if a (an bytes) and b (bn bytes) are one name, else 0.
 * ups_name_prefix: 1 if name (n bytes) begins with the NUL-terminated prefix
 * and is longer than it, else 0.
 * ups_name_odd: 1 if name (n bytes) has a byte other than A-Z a-z 0-9 and
 * '-' (so it has another spelling of the same name), else 0. */
int ups_name_eq(const char *a, size_t an, const char *b, size_t bn);
int ups_name_prefix(const char *name, size_t n, const char *prefix);
int ups_name_odd(const char *name, size_t n);
/* Index of the first header whose name is empty (": value", which llhttp 8
 * accepts even in strict mode: its field-name state takes zero token bytes
 * before ':'), or -1. No upstream or client may be sent such a line. */
int ups_hdrs_empty_name(const ups_hdrs_t *h);

/* Index of the first header with that name (by ups_name_eq), or -1. */
int ups_hdrs_find(const ups_hdrs_t *h, const char *name);
/* Counts headers with that name. */
int ups_hdrs_count(const ups_hdrs_t *h, const char *name);

/* True if name (n bytes) is hop-by-hop: the fixed RFC 9110 list, or a token
 * listed in any Connection header of h. */
int ups_is_hop_by_hop(const ups_hdrs_t *h, const char *name, size_t n);

/* Which client request headers reach the upstream (built once per config).
 * The gateway owns: the identity headers, token claim headers, Host,
 * X-Forwarded-For/-Proto, X-Request-Id, Expect, the framing and hop-by-hop
 * headers (Proxy and Proxy-* included); a client's copies are dropped and
 * the gateway sets its own; so is every name under the identity headers'
 * common prefix (cfg_identity_prefix: X-Client-Cert-*), whatever the
 * allow-list says. Client-chosen trust headers (cfg_trust_headers, and the
 * names under cfg_trust_prefixes: X-Forwarded-*, X-SSL-*, ...) are dropped unless
 * http.forward_client_headers lists them. An odd name (ups_name_odd: a byte
 * other than A-Z a-z 0-9 -, such as '_' or '.') is refused if it reads as
 * any of those, else handled by http.underscores_in_headers. */
typedef struct ups_names ups_names_t;

enum ups_name_class {
    UPS_NAME_PASS = 0,    /* end to end: forwarded as sent */
    UPS_NAME_OWNED,       /* the gateway's own or hop-by-hop: dropped */
    UPS_NAME_TRUST,       /* a trust header not allow-listed: dropped */
    UPS_NAME_UNDERSCORE,  /* odd name, reads as nothing above: per the option */
    UPS_NAME_COLLISION,   /* odd name that reads as an owned or trust header */
    UPS_NAME_EMPTY,       /* an empty name (ups_names_check only) */
};

/* icfg, claims and http must outlive the table. NULL: out of memory. */
ups_names_t *ups_names_new(const cfg_identity_t *icfg, const char *const *claims, size_t nclaims,
                           const cfg_http_t *http);
void ups_names_free(ups_names_t *t);
/* The class of a client header name (n bytes); h gives the Connection
 * header's tokens, which are hop-by-hop too. */
int ups_name_class(const ups_names_t *t, const ups_hdrs_t *h, const char *name, size_t n);
/* Checks every name of a request head: 0 if it may go on, else
 * UPS_NAME_EMPTY (an empty name), UPS_NAME_COLLISION (any collision), or
 * UPS_NAME_UNDERSCORE when the option is refuse, with *bad the index of the
 * first such header. */
int ups_names_check(const ups_names_t *t, const ups_hdrs_t *h, int *bad);

typedef struct {
    const char *name, *value;
} ups_kv_t;

typedef struct {
    const char *method;
    int http_minor;          /* of the client's request: 0 or 1 */
    int chunked;             /* request body is chunked (re-encoded upstream) */
    uint64_t content_length; /* when !chunked */
    const char *peer_ip;
    const char *request_id;
    const tls_identity_t *id;
    const cfg_identity_t *icfg;
    const ups_names_t *names;  /* which client headers are forwarded */
    const char *host;          /* the Host value to send (canonical); NULL: as received */
    const ups_kv_t *add;       /* verified token claims, as headers */
    size_t nadd;
} ups_req_meta_t;

/* Appends the upstream request head (request line to blank line). */
int ups_build_request_head(struct evbuffer *out, const ups_hdrs_t *h, const ups_req_meta_t *m);

enum ups_framing { UPS_FRAME_NONE = 0, UPS_FRAME_LENGTH, UPS_FRAME_CHUNKED, UPS_FRAME_EOF };

/* Appends the client response head: status line from status/reason in h,
 * end-to-end headers of h, extra (CRLF-terminated lines, or NULL), the
 * given framing, and Connection: close if close is set. */
int ups_build_response_head(struct evbuffer *out, int status, const ups_hdrs_t *h,
                            const char *extra, int framing, uint64_t content_length, int close);

/* Standard reason phrase for a status code ("Unknown" if none). */
const char *ups_reason(int status);

#endif
