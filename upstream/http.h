/* upstream/http: HTTP/1.1 message heads as the proxy sees them.
 *
 * ups_hdrs_t collects the pieces llhttp hands out (a request target or a
 * status reason, then header names and values) into one fixed-size buffer
 * sized by the configured limit, so a head never grows memory past it and
 * never needs a copy. The rewrite functions turn a parsed head into the one
 * sent on the other side: hop-by-hop headers dropped, client-sent identity
 * headers dropped, verified identity and forwarding headers added.
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
/* Trims optional whitespace around every value; call once, when complete. */
void ups_hdrs_finish(ups_hdrs_t *h);

static inline const char *ups_str(const ups_hdrs_t *h, ups_span_t s)
{
    return h->buf + s.off;
}

/* Index of the first header with that name (case-insensitive), or -1. */
int ups_hdrs_find(const ups_hdrs_t *h, const char *name);
/* Counts headers with that name. */
int ups_hdrs_count(const ups_hdrs_t *h, const char *name);

/* True if name (n bytes) is hop-by-hop: the fixed RFC 9110 list, or a token
 * listed in any Connection header of h. */
int ups_is_hop_by_hop(const ups_hdrs_t *h, const char *name, size_t n);

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
    const char *const *strip;  /* more header names the gateway owns (e.g. token claims) */
    size_t nstrip;
    const ups_kv_t *add;       /* verified values for some of them */
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
