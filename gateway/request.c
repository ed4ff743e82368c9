/* gateway/request: the request pipeline of a client connection.
 *
 * What a connection (conn.c) hands over once its TLS layer has bytes:
 * llhttp and the line scan run over them (gw_req_parse), and a complete head
 * goes through the named stages of on_headers_complete, then the final stage
 * forwards it to the upstream (gw_conn_forward) or to the gateway's own
 * handler. Refusals, the gateway's own responses, the upstream callbacks and
 * the end of each request (finish_response) are here too. The connection
 * keeps the socket, TLS, the timer and the life cycle; the interface between
 * the two is gateway/conn_int.h. The stages work on the request state in
 * gw_conn_t (some also read llhttp's view of the head: method, version,
 * Content-Length, chunked).
 *
 * Functions here that may end in the connection's teardown say so
 * ("may free c"), and callers return right after them.
 */
#include <llhttp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../base/metrics.h"
#include "../policy/policy.h"
#include "conn_int.h"
#include "h1.h"

/* Request IDs need to be unique, not secret (a client may bring its own):
 * 64 random bits drawn once per thread, then a per-thread counter. Same
 * 32-hex-digit form as before, without a RAND_bytes call per request. */
static void new_request_id(char *out)
{
    static _Thread_local uint64_t prefix, counter;
    static const char hex[] = "0123456789abcdef";
    if (!prefix && (RAND_bytes((unsigned char *)&prefix, sizeof(prefix)) != 1 || !prefix))
        prefix = ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)&counter;
    uint64_t v[2] = {prefix, ++counter};
    for (int k = 0; k < 2; k++)
        for (int i = 15; i >= 0; i--) {
            out[k * 16 + i] = hex[v[k] & 15];
            v[k] >>= 4;
        }
    out[32] = '\0';
}

static int valid_request_id(const char *s, size_t n)
{
    if (n == 0 || n > 36)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* ---- responses the gateway produces itself ---- */

/* Queues the JSON error response of catalog entry e (its status and code;
 * msg, or the entry's message if NULL). close: the connection ends after
 * it. Every error the gateway answers on a client connection goes out here,
 * and is counted here. */
static void respond_error(gw_conn_t *c, enum pc_err e, const char *msg, int close, const char *extra)
{
    int status = pc_err_status(e);
    if (!msg)
        msg = pc_err_message(e);
    if ((unsigned)e < PC_E__CLIENT)   /* always; an admin-only entry is never counted as another */
        pc_count1(HTTP_ERRORS, e);
    c->resp_err = e;
    if (!c->request_id[0])
        new_request_id(c->request_id);
    if (c->retiring || c->close_after)
        close = 1;
    char body[640], esc[400];
    size_t k = 0;   /* messages may carry text from elsewhere: escape for JSON */
    for (const char *m = msg; *m && k + 7 < sizeof(esc); m++) {
        unsigned char ch = (unsigned char)*m;
        if (ch == '"' || ch == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            k += (size_t)snprintf(esc + k, sizeof(esc) - k, "\\u%04x", ch);
        } else {
            esc[k++] = (char)ch;
        }
    }
    esc[k] = '\0';
    int blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}\n",
                        pc_err_code(e), esc, c->request_id);
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                        "Cache-Control: no-store\r\nX-Request-Id: %s\r\n%s%s",
                        status, ups_reason(status), blen, c->request_id, extra ? extra : "",
                        close ? "Connection: close\r\n" : "");
    evbuffer_add(c->out, "\r\n", 2);
    if (strcmp(c->method, "HEAD") != 0)
        evbuffer_add(c->out, body, (size_t)blen);
    c->status = status;
    c->resp_head_sent = 1;
    c->resp_bytes += strcmp(c->method, "HEAD") != 0 ? (uint64_t)blen : 0;
    if (close)
        c->close_after = 1;
}

/* The access log's path: the target without its query (which may carry
 * credentials), cut at this many bytes. */
#define ACCESS_PATH_MAX 256

static int64_t us_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - t0->tv_sec) * 1000000 + (now.tv_nsec - t0->tv_nsec) / 1000;
}

/* The access log's upstream timing: the request goes upstream, its
 * response head arrives (or it fails). Nothing without logging.access. */
static void log_upstream_sent(gw_conn_t *c)
{
    c->log_up_have = 0;
    if (CFG(c)->logging.access)
        clock_gettime(CLOCK_MONOTONIC, &c->log_up_sent);
}

static void log_upstream_done(gw_conn_t *c, int head)
{
    if (!c->x)
        return;
    c->log_server = ups_exchange_server(c->x);
    if (head && CFG(c)->logging.access) {
        c->log_up_us = us_since(&c->log_up_sent);
        c->log_up_have = 1;
    }
}

static void access_fields(gw_conn_t *c, pc_logb_t *b, int64_t us)
{
    unsigned port = c->peer_addr.ss_family == AF_INET6
                        ? ntohs(((const struct sockaddr_in6 *)&c->peer_addr)->sin6_port)
                        : ntohs(((const struct sockaddr_in *)&c->peer_addr)->sin_port);
    /* the path without its query (it may carry credentials); a target not
     * in origin form (e.g. http://user:pass@host/, refused) is not logged */
    const char *target = c->hdrs.first.len ? ups_str(&c->hdrs, c->hdrs.first) : NULL;
    size_t plen = 0;
    if (target && (target[0] == '/' || (c->hdrs.first.len == 1 && target[0] == '*'))) {
        const char *q = memchr(target, '?', c->hdrs.first.len);   /* the head is not NUL-terminated */
        plen = q ? (size_t)(q - target) : c->hdrs.first.len;
    } else {
        target = NULL;
    }
    pc_logb_str(b, "request_id", c->request_id[0] ? c->request_id : NULL);
    char cid[24];   /* a string, as in the connection's other lines */
    snprintf(cid, sizeof cid, "%llu", (unsigned long long)c->cid);
    pc_logb_str(b, "conn", cid);
    pc_logb_str(b, "client_addr", c->peer_ip);
    pc_logb_uint(b, "client_port", port);
    pc_logb_str(b, "tls_version", c->ssl ? SSL_get_version(c->ssl) : NULL);
    pc_logb_bool(b, "tls_resumed", c->ssl && SSL_session_reused(c->ssl));
    pc_logb_str(b, "class", c->id ? c->id->class_name : NULL);
    pc_logb_str(b, "device_id", c->id ? c->id->device_id : NULL);
    pc_logb_str(b, "integrity", c->id && c->id->integrity >= 0 ? cfg_integrity_name(c->id->integrity) : NULL);
    pc_logb_str(b, "cert_serial", c->id ? c->id->serial : NULL);
    pc_logb_str(b, "method", c->method[0] ? c->method : NULL);
    pc_logb_strn(b, "path", target, plen > ACCESS_PATH_MAX ? ACCESS_PATH_MAX : plen);
    pc_logb_str(b, "route", c->route ? c->route->name : NULL);
    pc_logb_str(b, "upstream", c->route && !c->iroute ? c->route->upstream_name : NULL);
    pc_logb_str(b, "upstream_server", c->log_server);
    pc_logb_int(b, "status", c->status);
    pc_logb_str(b, "error", c->resp_err != PC_E_NONE ? pc_err_code(c->resp_err) : NULL);
    pc_logb_uint(b, "request_bytes", (unsigned long long)c->body_bytes);
    pc_logb_uint(b, "response_bytes", (unsigned long long)c->resp_bytes);
    pc_logb_ms(b, "duration_ms", (double)us / 1e3);
    if (c->log_up_have)
        pc_logb_ms(b, "upstream_ms", (double)c->log_up_us / 1e3);
    else
        pc_logb_str(b, "upstream_ms", NULL);
}

/* One access-log line (event "access") for the request just answered, then
 * the request's log fields are reset for the next one. */
static void access_log(gw_conn_t *c, int64_t us)
{
    pc_logb_t b;
    if (CFG(c)->logging.access && pc_logb_begin(&b, PC_INFO, "access")) {
        access_fields(c, &b, us);
        pc_logb_end(&b, NULL);
    }
    c->log_server = NULL;
    c->log_up_have = 0;
}

/* The request's metrics: HTTP_REQUESTS and HTTP_TIME by its route (_none
 * when none matched), class and status class; us: its duration. */
static void count_request(const gw_conn_t *c, int64_t us)
{
    const cfg_tls_t *tls = &CFG(c)->tls;
    unsigned route = c->route ? c->route->mx : PC_ID_NONE;
    unsigned cls = c->id && c->id->class_idx >= 0 && (size_t)c->id->class_idx < tls->nclasses
                       ? tls->classes[c->id->class_idx].mx : PC_ID_NONE;
    pc_count3(HTTP_REQUESTS, route, cls, pc_status_class(c->status));
    pc_observe1(HTTP_TIME, route, us > 0 ? (uint64_t)us : 0);
}

/* The response to the current request is complete (queued in c->out). */
static void finish_response(gw_conn_t *c)
{
    /* one clock read for both: CLOCK_MONOTONIC through the vDSO (no system
     * call), like c->started; the loop's cached time is wall time, and stale
     * by a loop turn for the short requests the histogram is about */
    int64_t us = us_since(&c->started);
    count_request(c, us);
    access_log(c, us);
    c->resp_active = 0;
    c->served++;
    /* a response whose head went out without Connection: close never
     * closes the connection under the client (it may be sending its next
     * request): retiring connections close once idle (gw_conn_retire) */
    if (c->close_after || !c->req_complete) {
        c->close_after = 1;
        c->state = C_CLOSING;
        c->action = "closing";
        return;
    }
    if (c->cert_expired && !evbuffer_get_length(c->in) && !SSL_has_pending(c->ssl)) {
        c->state = C_CLOSING;   /* no next request waiting to be told why */
        c->action = "closing expired";
        return;
    }
    /* ready for the next request: the parser resumes where it paused */
    c->req_active = c->head_done = c->req_complete = 0;
    c->resp_head_sent = c->discard = c->req_chunked = c->client_chunked = 0;
    c->status = 0;
    c->err = c->resp_err = PC_E_NONE;
    c->err_msg = NULL;
    c->route = NULL;
    c->request_id[0] = c->method[0] = '\0';
    c->body_bytes = c->resp_bytes = 0;
    c->expect_continue = 0;
    c->lines = GW_H1L_IDLE;
    c->iroute = NULL;
    c->handler_started = 0;
    if (c->body) {
        evbuffer_free(c->body);
        c->body = NULL;
    }
    gw_gate_reset(c);
    ups_hdrs_free(&c->hdrs);   /* an idle connection holds no head buffer */
    if (c->paused) {
        c->paused = 0;
        llhttp_resume(&c->parser);
    }
    c->action = "waiting for request";
    c->idle_since_ms = gw_conn_now_ms(c);
    gw_conn_arm(c, T_IDLE, CFG(c)->timeouts.idle_ms);
}

/* ---- upstream callbacks (see ups_ops_t) ---- */

static void up_head(void *arg, int status, const ups_hdrs_t *h, int framing, uint64_t clen)
{
    gw_conn_t *c = arg;
    int close = c->close_after || !c->req_complete || c->retiring;
    int cframing = framing;
    if (framing == UPS_FRAME_CHUNKED || framing == UPS_FRAME_EOF) {
        if (c->http_minor >= 1) {
            cframing = UPS_FRAME_CHUNKED;
            c->client_chunked = 1;
        } else {
            cframing = UPS_FRAME_EOF;   /* HTTP/1.0: the body ends when we close */
            close = 1;
        }
    }
    if (c->http_minor == 0)
        close = 1;
    ups_build_response_head(c->out, status, h, c->rl_headers && c->rl_headers[0] ? c->rl_headers : NULL, cframing, clen,
                            close);
    log_upstream_done(c, 1);
    if (close)
        c->close_after = 1;
    c->status = status;
    c->resp_head_sent = 1;
    c->action = "sending response";
    gw_conn_kick(c);
}

static void up_body(void *arg, const char *p, size_t n)
{
    gw_conn_t *c = arg;
    if (n == 0)
        return;
    if (c->client_chunked)
        evbuffer_add_printf(c->out, "%zx\r\n", n);
    evbuffer_add(c->out, p, n);
    if (c->client_chunked)
        evbuffer_add(c->out, "\r\n", 2);
    c->resp_bytes += n;
    gw_conn_kick(c);
}

static void up_done(void *arg)
{
    gw_conn_t *c = arg;
    if (c->client_chunked)
        evbuffer_add(c->out, "0\r\n\r\n", 5);
    ups_exchange_free(c->x);
    c->x = NULL;
    finish_response(c);
    gw_conn_io(c);   /* may free c */
}

static void up_fail(void *arg, enum pc_err e, const char *msg)
{
    gw_conn_t *c = arg;
    const char *srv = ups_exchange_server(c->x);
    log_upstream_done(c, 0);
    CLOG_EV(c, PC_WARN, "upstream_error", "upstream %s: %s (request_id=%s)", srv, msg, c->request_id);
    ups_exchange_free(c->x);
    c->x = NULL;
    if (c->resp_head_sent) {
        c->close_after = 1;   /* the client sees the body cut short */
    } else {
        respond_error(c, e, msg, !c->req_complete, NULL);
    }
    finish_response(c);
    gw_conn_io(c);   /* may free c */
}

static void up_drained(void *arg)
{
    gw_conn_kick(arg);
}

static size_t up_backlog(void *arg)
{
    gw_conn_t *c = arg;
    return evbuffer_get_length(c->out);
}

static const ups_ops_t up_ops = {up_head, up_body, up_done, up_fail, up_drained, up_backlog};

/* ---- request parsing (llhttp callbacks) ---- */

/* Stops parsing with catalog entry e (msg: a more precise message, or NULL
 * for the entry's): gw_req_parse answers it and closes. HPE_USER. */
static int stop(gw_conn_t *c, enum pc_err e, const char *msg)
{
    c->err = e;
    c->err_msg = msg;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    gw_conn_t *c = p->data;
    const cfg_limits_t *lim = &CFG(c)->limits;
    /* the whole head (target + names + values) is bounded by max_header_bytes */
    if (!c->hdrs.buf && ups_hdrs_init(&c->hdrs, lim->max_header_bytes, lim->max_headers) < 0)
        return stop(c, PC_E_OUT_OF_MEMORY, NULL);
    c->req_active = 1;
    c->action = "reading request head";
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    if (c->tkind != T_HEADER)
        gw_conn_arm(c, T_HEADER, CFG(c)->timeouts.header_read_ms);
    return 0;
}

static int hdrs_err(gw_conn_t *c, int is_url)
{
    if (c->hdrs.err == UPS_HDRS_TOO_MANY)
        return stop(c, PC_E_HEADERS_TOO_MANY, NULL);
    if (is_url)
        return stop(c, PC_E_URI_TOO_LONG, NULL);
    return stop(c, PC_E_HEADERS_TOO_LARGE, NULL);
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    gw_conn_t *c = p->data;
    return ups_hdrs_first(&c->hdrs, at, n) < 0 ? hdrs_err(c, 1) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    gw_conn_t *c = p->data;
    return ups_hdrs_field(&c->hdrs, at, n) < 0 ? hdrs_err(c, 0) : 0;
}

/* Line structure (see gw_h1_lines): llhttp 8 in strict mode accepts a bare
 * LF after the request line and in the empty line that ends the head or the
 * trailers, and joins obs-fold lines to the value. Every byte of a head and
 * of a trailer section goes through the scan before llhttp acts on it. */
static int lines_err(gw_conn_t *c, long r)
{
    if (!c->req_active)   /* refused before llhttp began the request */
        clock_gettime(CLOCK_MONOTONIC, &c->started);
    if (r == GW_H1_FOLD)
        return stop(c, PC_E_OBS_FOLD, NULL);
    return stop(c, PC_E_BAD_LINE_ENDING, NULL);
}

/* Goes on with a running scan over p..p+n: 0, or an llhttp error code. */
static int lines_scan(gw_conn_t *c, const char *p, size_t n)
{
    int was_done = c->lines == GW_H1L_DONE;
    long r = gw_h1_lines(&c->lines, p, n);
    if (r < 0)
        return lines_err(c, r);
    if (!was_done && c->lines == GW_H1L_DONE)
        c->msg_end = p + r;
    return 0;
}

/* The first bytes of a request that began after another one in the same
 * read (its scan did not start with the read): the scan starts where the
 * previous request ended, so the empty lines llhttp skipped are seen too. */
static int on_method(llhttp_t *p, const char *at, size_t n)
{
    gw_conn_t *c = p->data;
    (void)n;
    if (c->lines != GW_H1L_IDLE)
        return 0;
    const char *from = c->msg_end && c->msg_end >= c->parse_base && c->msg_end <= at ? c->msg_end : at;
    c->lines = GW_H1L_LEAD;
    return lines_scan(c, from, (size_t)(c->parse_end - from));
}

/* The last chunk: pause so that gw_req_parse() can scan the trailer section
 * from the position llhttp reports. */
static int on_chunk_header(llhttp_t *p)
{
    gw_conn_t *c = p->data;
    if (p->content_length != 0)
        return 0;
    c->trailer_pause = 1;
    return HPE_PAUSED;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    gw_conn_t *c = p->data;
    if (gw_h1_has_obs_text(at, n))
        return stop(c, PC_E_OBS_TEXT, NULL);
    return ups_hdrs_value(&c->hdrs, at, n) < 0 ? hdrs_err(c, 0) : 0;
}

/* Framing and body rules of a request head; 0, or an llhttp error code.
 * - Transfer-Encoding must be one header with exactly the coding "chunked":
 *   other codings (gzip, "gzip, chunked", identity) are not implemented
 *   (501); chunked not last, or twice, is refused by llhttp (400). In an
 *   HTTP/1.0 request it is faulty framing (RFC 9112 section 6.1): 400.
 * - GET and HEAD carry no body: a Content-Length above 0 or any
 *   Transfer-Encoding is refused (400) and the connection closed; what a
 *   backend does with such a body is undefined, and one that ignores it
 *   reads it as the next request. DELETE, OPTIONS and the other methods may
 *   carry a body; it is forwarded with the gateway's own framing. */
static int framing_check(gw_conn_t *c)
{
    llhttp_t *p = &c->parser;
    const ups_hdrs_t *h = &c->hdrs;
    int nte = ups_hdrs_count(h, "transfer-encoding");
    if (nte && p->http_minor == 0)
        return stop(c, PC_E_BAD_FRAMING, NULL);
    if (nte) {
        int te = ups_hdrs_find(h, "transfer-encoding");
        if (nte != 1 || !gw_h1_only_chunked(ups_str(h, h->h[te].value), h->h[te].value.len))
            return stop(c, PC_E_UNSUPPORTED_TRANSFER_CODING, NULL);
    }
    if ((p->method == HTTP_GET || p->method == HTTP_HEAD) && (nte || p->content_length > 0))
        return stop(c, PC_E_BODY_NOT_ALLOWED, NULL);
    return 0;
}

/* Is any header value of h folded or carrying a bare CR/LF? llhttp refuses
 * obs-fold in strict mode; this guards the values we inject and forward. */
static int has_ctl(const ups_hdrs_t *h)
{
    for (uint32_t i = 0; i < h->n; i++) {
        const char *v = ups_str(h, h->h[i].value);
        for (uint32_t k = 0; k < h->h[i].value.len; k++)
            if (v[k] == '\r' || v[k] == '\n' || v[k] == '\0')
                return 1;
    }
    return 0;
}

/* Refuses the request; its body, if small, is read and dropped so the
 * connection can stay open. Returns the llhttp callback result. */
int gw_conn_refuse(gw_conn_t *c, enum pc_err e, const char *msg, const char *extra)
{
    llhttp_t *p = &c->parser;
    int has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    /* A client that sent Expect: 100-continue may never send the body it
     * announced once it sees a final status; reading on would take its next
     * request for that body. Such a refusal closes the connection. */
    int keep = !has_body || (!(p->flags & F_CHUNKED) && p->content_length <= DISCARD_MAX &&
                             ups_hdrs_find(&c->hdrs, "expect") < 0);
    respond_error(c, e, msg, !keep, extra);
    if (!keep)
        return HPE_PAUSED;   /* stop here; gw_conn_io closes after the flush */
    c->discard = 1;
    c->action = has_body ? "dropping refused request body" : "sending response";
    return 0;
}

/* An internal route's own rules (its table entry), checked after the
 * covering route's gate stages: the classes that may call it, its methods
 * and its body limit. 1 if refused (*rc as gw_conn_refuse, or an llhttp
 * error from stop()), 0 if the request may go on. */
static int internal_refused(gw_conn_t *c, int *rc)
{
    const pol_iroute_t *r = c->iroute;
    llhttp_t *p = &c->parser;
    int cls = c->id ? c->id->class_idx : -1;
    int ok_class = cls >= 0 && cls < 32 && (r->classes >> cls & 1u);
    int post_only = r->post_only;
    if (!ok_class)
        *rc = gw_conn_refuse(c, PC_E_CLASS_NOT_ALLOWED, NULL, NULL);
    else if (p->method != HTTP_POST && (post_only || p->method != HTTP_GET))
        *rc = gw_conn_refuse(c, PC_E_METHOD_NOT_ALLOWED,
                             post_only ? "this route takes POST" : "this route takes GET or POST",
                             post_only ? "Allow: POST\r\n" : "Allow: GET, POST\r\n");
    else if (!c->req_chunked && p->content_length > r->max_body)
        *rc = stop(c, PC_E_PAYLOAD_TOO_LARGE, NULL);
    else
        return 0;
    return 1;
}

/* The last stage of an internal route: its body is buffered (up to the
 * handler's limit) and the handler starts once the request is complete. */
static int internal_begin(gw_conn_t *c)
{
    llhttp_t *p = &c->parser;
    c->body = evbuffer_new();
    if (!c->body)
        return stop(c, PC_E_OUT_OF_MEMORY, NULL);
    if (c->expect_continue && (c->req_chunked || p->content_length > 0))
        evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->action = "reading request body";
    gw_conn_arm(c, T_BODY, CFG(c)->timeouts.body_read_ms);
    return 0;
}

/* Replaces the request target with its canonical spelling, in place (it
 * is never longer): routes match on it and it is what the upstream gets
 * (ups_build_request_head writes hdrs.first). Checked first, so a refused
 * target stays as received for the log. 0 and the path length in *plen,
 * or -1 with the 400 bad_path in c->err_*. */
static int canon_target(gw_conn_t *c, size_t *plen)
{
    const cfg_http_t *hc = &CFG(c)->http;
    unsigned flags = (hc->path_merge_slashes ? POL_TGT_MERGE_SLASHES : 0) |
                     (hc->path_ascii_only ? POL_TGT_ASCII_ONLY : 0);
    ups_hdrs_t *h = &c->hdrs;
    char *t = h->buf + h->first.off;
    long rc = pol_target_canon(t, h->first.len, flags, NULL, 0, NULL);
    if (rc >= 0)
        rc = pol_target_canon(t, h->first.len, flags, t, h->first.len, plen);
    if (rc < 0) {
        stop(c, PC_E_BAD_PATH, pol_target_strerror(rc));
        return -1;
    }
    h->first.len = (uint32_t)rc;
    return 0;
}

/* The one Host header (checked by the caller) in its canonical spelling
 * (cfg_host_canon), kept in the head's buffer (c->host), its port into
 * c->host_port: routes match on the host, and the upstream gets host[:port]
 * (the port only if the client sent one). 0, or -1 with the 400 bad_host in c->err_*. */
static int canon_host(gw_conn_t *c)
{
    ups_hdrs_t *h = &c->hdrs;
    int hi = ups_hdrs_find(h, "host");
    char host[CFG_HOST_MAX + 1];
    long n = cfg_host_canon(ups_str(h, h->h[hi].value), h->h[hi].value.len, host, sizeof host,
                            &c->host_port);
    if (n < 0) {
        stop(c, PC_E_BAD_HOST, cfg_host_strerror(n));
        return -1;
    }
    if (ups_hdrs_stash(h, &c->host, host, (size_t)n + 1) < 0) {
        hdrs_err(c, 0);
        return -1;
    }
    return 0;
}

/* The request has passed every stage of its route's gate (route match,
 * class, bearer, JWT, rate limits): the final stage either forwards it to
 * the route's upstream or runs the gateway's own handler. 0, or an llhttp
 * error code with the reason in c->err_*. */
static int gate_passed(gw_conn_t *c)
{
    return c->iroute ? internal_begin(c) : gw_conn_forward(c);
}

/* A header name an upstream may read as one the gateway sets or drops
 * (X_Device_Id or X.Device.Id as X-Device-Id) is refused before anything reads the head,
 * the request id included. Returns 0, or the llhttp stop code. */
static int names_refused(gw_conn_t *c)
{
    const ups_hdrs_t *h = &c->hdrs;
    int bad, r = ups_names_check(c->gen->hnames, h, &bad);
    if (!r)
        return 0;
    if (r == UPS_NAME_EMPTY) {
        CLOG_EV(c, PC_INFO, "request_refused", "empty header name refused");
        return stop(c, PC_E_BAD_HEADER_NAME, NULL);
    }
    uint32_t n = h->h[bad].name.len;
    CLOG_EV(c, PC_INFO, "request_refused", "header name \"%.*s\" refused", (int)(n > 100 ? 100 : n), ups_str(h, h->h[bad].name));
    if (r == UPS_NAME_COLLISION)
        return stop(c, PC_E_HEADER_NAME_COLLISION, NULL);
    return stop(c, PC_E_UNDERSCORE_IN_HEADER, NULL);
}

/* Whether the certificate's notAfter has passed, by the event loop's cached
 * clock: no system call per request. Between requests the worker's expiry
 * timer closes the connection; this catches a head that arrives first. */
static int cert_expired(gw_conn_t *c)
{
    struct timeval now;
    if (c->cert_expired)
        return 1;
    if (event_base_gettimeofday_cached(c->w->base, &now) != 0)
        return 0;
    return c->id->not_after_t <= now.tv_sec;
}

/* ---- the request pipeline ----
 *
 * on_headers_complete runs a complete request head through these stages,
 * in order. Contract of every stage: STAGE_NEXT (-1) to go on to the next
 * stage, or the llhttp callback result that ends the pipeline here (0 with
 * the connection set to discard a refused body or to stream to the
 * upstream, HPE_PAUSED, or HPE_USER with the reason in c->err_*). The
 * facts one stage derives for a later one travel in head_t. */
#define STAGE_NEXT (-1)

typedef struct {
    size_t plen;       /* length of the canonical target's path */
    int cont;          /* Expect: 100-continue was sent */
} head_t;

/* What the parser knows of the head; the header list made searchable. */
static int stage_facts(gw_conn_t *c, head_t *hd)
{
    llhttp_t *p = &c->parser;
    (void)hd;
    c->head_done = 1;
    c->resp_active = 1;
    c->http_minor = p->http_minor;
    c->req_chunked = (p->flags & F_CHUNKED) != 0;
    if (!llhttp_should_keep_alive(p))
        c->close_after = 1;   /* Connection: close, or HTTP/1.0 without keep-alive */
    snprintf(c->method, sizeof(c->method), "%s", llhttp_method_name(p->method));
    ups_hdrs_finish(&c->hdrs);
    return STAGE_NEXT;
}

/* Header names first (nothing reads a header before), then the request
 * id: the client's if it is well formed, else a new one. */
static int stage_names(gw_conn_t *c, head_t *hd)
{
    const ups_hdrs_t *h = &c->hdrs;
    (void)hd;
    if (names_refused(c))
        return HPE_USER;
    int rid = ups_hdrs_find(h, "x-request-id");
    if (rid >= 0 && valid_request_id(ups_str(h, h->h[rid].value), h->h[rid].value.len))
        snprintf(c->request_id, sizeof(c->request_id), "%.*s", (int)h->h[rid].value.len,
                 ups_str(h, h->h[rid].value));
    else
        new_request_id(c->request_id);
    return STAGE_NEXT;
}

/* Version, framing, control bytes, methods and upgrades not served. */
static int stage_framing(gw_conn_t *c, head_t *hd)
{
    llhttp_t *p = &c->parser;
    (void)hd;
    if (p->http_major != 1)
        return stop(c, PC_E_HTTP_VERSION, NULL);
    if (framing_check(c))
        return HPE_USER;
    if (has_ctl(&c->hdrs))
        return stop(c, PC_E_BAD_HEADER, NULL);
    if (p->method == HTTP_CONNECT || p->method == HTTP_TRACE)
        return stop(c, PC_E_METHOD_NOT_ALLOWED, "this method is not served");
    if (p->upgrade || (p->flags & F_UPGRADE))
        return stop(c, PC_E_UPGRADE_REFUSED, NULL);
    return STAGE_NEXT;
}

/* The Host header and the target, each in its canonical form. The
 * asterisk form (RFC 9112 3.2.4) asks about the server as a whole, which no
 * route describes: OPTIONS * gets 501 not_implemented; any other method
 * with '*' is a bad_path (the target is not a path). */
static int stage_target(gw_conn_t *c, head_t *hd)
{
    const ups_hdrs_t *h = &c->hdrs;
    if (ups_hdrs_count(h, "host") != 1)
        return stop(c, PC_E_BAD_HOST, NULL);
    if (canon_host(c) < 0)
        return HPE_USER;
    if (c->parser.method == HTTP_OPTIONS && h->first.len == 1 && h->buf[h->first.off] == '*')
        return stop(c, PC_E_NOT_IMPLEMENTED, NULL);
    return canon_target(c, &hd->plen) < 0 ? HPE_USER : STAGE_NEXT;
}

/* The body's announced size and the one expectation served. */
static int stage_body(gw_conn_t *c, head_t *hd)
{
    const ups_hdrs_t *h = &c->hdrs;
    uint64_t max = CFG(c)->limits.max_body_bytes;
    if (!c->req_chunked && max && c->parser.content_length > max)
        return stop(c, PC_E_PAYLOAD_TOO_LARGE, NULL);
    int expect = ups_hdrs_find(h, "expect");
    if (expect >= 0) {
        if (h->h[expect].value.len != 12 || strncasecmp(ups_str(h, h->h[expect].value), "100-continue", 12))
            return stop(c, PC_E_EXPECTATION_FAILED, NULL);
        hd->cont = 1;
    }
    return STAGE_NEXT;
}

/* The client certificate still valid: not expired, and not revoked (checked
 * again only when the revocation set has changed since the last check).
 * Either refusal closes the connection after the flush. */
static int stage_cert(gw_conn_t *c, head_t *hd)
{
    (void)hd;
    if (cert_expired(c)) {
        CLOG_EV(c, PC_INFO, "request_refused", "request refused: certificate serial=%s expired at %s (request_id=%s)",
             c->id->serial, c->id->not_after, c->request_id);
        respond_error(c, PC_E_CERTIFICATE_EXPIRED, NULL, 1, NULL);
        return HPE_PAUSED;
    }
    uint64_t gen = pol_mirror_generation(gw_proc_mirror(c->w->proc));
    if (gen != c->rev_gen) {
        c->rev_gen = gen;
        if (tls_identity_revoked(c->gen->tls, c->id)) {
            if (!c->revoked)
                pc_count(CONN_REVOKED);   /* it closes after this answer */
            c->revoked = 1;
            CLOG_EV(c, PC_INFO, "request_refused", "request refused: certificate serial=%s revoked (request_id=%s)", c->id->serial,
                 c->request_id);
            respond_error(c, PC_E_CERTIFICATE_REVOKED, NULL, 1, NULL);
            return HPE_PAUSED;
        }
    }
    return STAGE_NEXT;
}

/* The route for host and canonical path: among the routes of the host's
 * set only (cfg_route_choose); 405 with Allow when the longest covering
 * prefix does not take the method, never another route. */
static int stage_route(gw_conn_t *c, head_t *hd)
{
    cfg_route_choice_t ch;
    c->action = "routing";
    cfg_route_choose(CFG(c), ups_str(&c->hdrs, c->host), ups_str(&c->hdrs, c->hdrs.first), hd->plen,
                     c->method, &ch);
    c->route = ch.route;
    if (ch.status == 405) {
        char allow[CFG_ROUTE_ALLOW_MAX + 16];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", ch.allow);
        return gw_conn_refuse(c, PC_E_METHOD_NOT_ALLOWED, "this route does not take this method", allow);
    }
    if (!c->route)
        return gw_conn_refuse(c, PC_E_NO_ROUTE, NULL, NULL);
    return STAGE_NEXT;
}

/* The route's class, integrity-level and bearer-presence rules (pol_check). */
static int stage_policy(gw_conn_t *c, head_t *hd)
{
    const ups_hdrs_t *h = &c->hdrs;
    int ai = ups_hdrs_find(h, "authorization");
    pol_verdict_t v;
    pol_check(c->route, c->id, ai >= 0 ? ups_str(h, h->h[ai].value) : NULL,
              ai >= 0 ? h->h[ai].value.len : 0, ups_hdrs_count(h, "authorization"), &v);
    if (v.err != PC_E_NONE) {
        const char *code = pc_err_code(v.err);
        CLOG_EV(c, PC_INFO, "request_refused", "refused %s: %s (request_id=%s)", code, v.message, c->request_id);
        char chal[200];
        int bare = v.err == PC_E_MISSING_TOKEN;
        if (v.bearer_challenge)
            snprintf(chal, sizeof(chal), "WWW-Authenticate: Bearer realm=\"portcullis\"%s%s%s\r\n",
                     bare ? "" : ", error=\"", bare ? "" : code, bare ? "" : "\"");
        return gw_conn_refuse(c, v.err, v.message, v.bearer_challenge ? chal : NULL);
    }
    c->expect_continue = hd->cont;
    return STAGE_NEXT;
}

/* An internal route (the generation's table, gateway/iroute.c) passes the
 * same gate, then its own rules. */
static int stage_internal(gw_conn_t *c, head_t *hd)
{
    int rc = 0;
    c->iroute = gw_iroute_match(c->gen, ups_str(&c->hdrs, c->hdrs.first), hd->plen);
    return c->iroute && internal_refused(c, &rc) ? rc : STAGE_NEXT;
}

/* JWT and rate limits (gateway/gate.c); a global limit pauses the request
 * until Redis answers, and gw_conn_gate_done() resumes it. */
static int stage_gate(gw_conn_t *c, head_t *hd)
{
    int rc = 0;
    (void)hd;
    switch (gw_gate_start(c, &rc)) {
    case GW_GATE_DENY:
        return rc;
    case GW_GATE_PENDING:
        c->action = "waiting for a rate-limit decision";
        gw_conn_arm(c, T_NONE, 0);
        return HPE_PAUSED;
    default:
        return STAGE_NEXT;
    }
}

static int on_headers_complete(llhttp_t *p)
{
    static int (*const pipeline[])(gw_conn_t *, head_t *) = {
        stage_facts, stage_names, stage_framing, stage_target, stage_body,
        stage_cert,  stage_route, stage_policy,  stage_internal, stage_gate,
    };
    gw_conn_t *c = p->data;
    head_t hd = {.cont = 0};
    for (size_t i = 0; i < sizeof(pipeline) / sizeof(pipeline[0]); i++) {
        int rc = pipeline[i](c, &hd);
        if (rc != STAGE_NEXT)
            return rc;
    }
    return gate_passed(c);
}

/* The head the upstream gets, into head: the canonical target and Host, the
 * identity and the token's claims, the gateway's own framing. */
static void forward_head(gw_conn_t *c, struct evbuffer *head)
{
    const cfg_t *cfg = CFG(c);
    llhttp_t *p = &c->parser;
    char host[CFG_HOST_MAX + 8];
    snprintf(host, sizeof host, c->host_port ? "%s:%u" : "%s", ups_str(&c->hdrs, c->host), c->host_port);
    ups_req_meta_t m = {
        .method = c->method,
        .http_minor = p->http_minor,
        .chunked = c->req_chunked,
        .content_length = c->req_chunked ? 0 : p->content_length,
        .peer_ip = c->peer_ip,
        .request_id = c->request_id,
        .id = c->id,
        .icfg = &cfg->identity,
        .names = c->gen->hnames,
        .host = host,
    };
    ups_kv_t claims[CFG_JWT_MAX_CLAIMS];
    if (c->jwt) {
        for (size_t i = 0; i < c->jwt->nclaims && i < CFG_JWT_MAX_CLAIMS; i++) {
            claims[i].name = c->jwt->claims[i].header;
            claims[i].value = c->jwt->claims[i].value;
        }
        m.add = claims;
        m.nadd = c->jwt->nclaims;
    }
    ups_build_request_head(head, &c->hdrs, &m);
}

int gw_conn_forward(gw_conn_t *c)
{
    const cfg_t *cfg = CFG(c);
    llhttp_t *p = &c->parser;
    struct evbuffer *head = evbuffer_new();
    if (!head)
        return stop(c, PC_E_OUT_OF_MEMORY, NULL);
    forward_head(c, head);
    int has_body = c->req_chunked || p->content_length > 0;
    c->x = ups_exchange_start(gw_wgen_pool(c->wg), c->route->upstream, head, has_body, p->method == HTTP_HEAD,
                              &up_ops, c);
    evbuffer_free(head);
    log_upstream_sent(c);
    if (!c->x)
        return stop(c, PC_E_OUT_OF_MEMORY, NULL);
    if (c->expect_continue && has_body)
        evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->action = has_body ? "reading request body" : "waiting for upstream";
    if (has_body)
        gw_conn_arm(c, T_BODY, cfg->timeouts.body_read_ms);
    else
        gw_conn_arm(c, T_NONE, 0);
    return 0;
}

void gw_conn_reply(gw_conn_t *c, int status, const char *json, const char *extra)
{
    size_t blen = json ? strlen(json) : 0;
    c->handler = NULL;
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nX-Request-Id: %s\r\n%s%s%s\r\n",
                        status, ups_reason(status), blen, c->request_id, extra ? extra : "",
                        c->rl_headers ? c->rl_headers : "",
                        c->close_after || c->retiring ? "Connection: close\r\n" : "");
    if (c->retiring)
        c->close_after = 1;
    if (blen)
        evbuffer_add(c->out, json, blen);
    c->status = status;
    c->resp_head_sent = 1;
    c->resp_bytes += blen;
    finish_response(c);
    gw_conn_kick(c);   /* never re-entered from inside gw_conn_io */
}

void gw_conn_reply_error(gw_conn_t *c, enum pc_err e, const char *msg)
{
    c->handler = NULL;
    respond_error(c, e, msg, 0, NULL);
    finish_response(c);
    gw_conn_kick(c);
}

void gw_conn_gate_done(gw_conn_t *c, int rc)
{
    if (rc == 0 && !c->resp_head_sent)
        rc = gate_passed(c);
    if (rc != 0 && rc != HPE_PAUSED) {   /* forwarding failed */
        respond_error(c, c->err != PC_E_NONE ? c->err : PC_E_INTERNAL, c->err_msg, 1, NULL);
        rc = HPE_PAUSED;
    }
    if (rc == HPE_PAUSED) {   /* refused, closing: nothing more is read */
        finish_response(c);
    } else {                  /* forwarded, or refused with the body dropped */
        c->paused = 0;
        llhttp_resume(&c->parser);
        /* a request without a body completes without another byte: let the
         * parser take its non-consuming steps now (held bytes, if any, are
         * parsed after this, in order, by gw_conn_io) */
        if (evbuffer_get_length(c->in) == 0)
            gw_req_parse(c, "", 0, 0);
    }
    gw_conn_io(c);   /* may free c */
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    gw_conn_t *c = p->data;
    c->body_bytes += n;
    c->msg_end = at + n;
    if (c->discard)
        return c->body_bytes > DISCARD_MAX ? stop(c, PC_E_PAYLOAD_TOO_LARGE, "the refused request's body is too large to drop") : 0;
    if (c->body) {   /* an internal route: buffered for its handler */
        if (c->body_bytes > c->iroute->max_body)
            return stop(c, PC_E_PAYLOAD_TOO_LARGE, NULL);
        evbuffer_add(c->body, at, n);
        return 0;
    }
    uint64_t max = CFG(c)->limits.max_body_bytes;
    if (max && c->body_bytes > max)
        return stop(c, PC_E_PAYLOAD_TOO_LARGE, NULL);
    if (c->req_chunked) {
        char hdr[24];
        int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
        ups_exchange_send(c->x, hdr, (size_t)hl);
        ups_exchange_send(c->x, at, n);
        ups_exchange_send(c->x, "\r\n", 2);
    } else {
        ups_exchange_send(c->x, at, n);
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    gw_conn_t *c = p->data;
    c->req_complete = 1;
    if (c->x) {
        if (c->req_chunked)
            ups_exchange_send(c->x, "0\r\n\r\n", 5);
        ups_exchange_request_done(c->x);
        c->action = "waiting for upstream";
        gw_conn_arm(c, T_NONE, 0);
    }
    if (c->body && !c->discard) {
        c->action = "answering";
        gw_conn_arm(c, T_NONE, 0);
        c->handler_started = 1;
        return HPE_PAUSED;   /* gw_req_parse starts the handler once llhttp has returned */
    }
    if (c->discard && !c->close_after) {
        /* the refusal is already queued: on to the next request */
        finish_response(c);
        return 0;
    }
    return HPE_PAUSED;   /* the next request waits for this response */
}

static const llhttp_settings_t req_settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

/* ---- internal routes: the neutral request and reply (policy/iroute.h) ---- */

static void ireq_reply(void *host, const pol_ireply_t *r)
{
    gw_conn_t *c = host;
    if (r->err != PC_E_NONE)
        gw_conn_reply_error(c, r->err, r->message);
    else
        gw_conn_reply(c, r->status, r->json, r->headers);
}

static char *ireq_log_ctx(const void *host, char *buf, size_t n)
{
    return gw_conn_ctx(host, buf, n);
}

/* The internal route's request is complete (head and c->body): its handler
 * starts, and answers through ireq_reply, now or later. */
static void iroute_start(gw_conn_t *c)
{
    size_t len = evbuffer_get_length(c->body);
    const char *body = (const char *)evbuffer_pullup(c->body, (ssize_t)len);
    pol_ireq_t rq = {
        .body = body ? body : "",
        .body_len = len,
        .id = c->id,
        .peer_ip = c->peer_ip,
        .request_id = c->request_id,
        .cfg = CFG(c),
        .tls = c->gen->tls,
        .base = c->w->base,
        .redis = c->w->redis,
        .mirror = gw_proc_mirror(c->w->proc),
        .reply = ireq_reply,
        .log_ctx = ireq_log_ctx,
        .host = c,
    };
    c->handler = NULL;
    c->iroute->start(c->iroute->arg, &rq, &c->handler);
}

/* ---- input from the connection ---- */

/* llhttp over data, with the line scan ahead of it: a read between requests
 * starts a scan, one inside a head or trailer section goes on with it; the
 * pause at the last chunk starts the trailers' scan and llhttp resumes. */
static llhttp_errno_t execute(gw_conn_t *c, const char *data, size_t n)
{
    if (c->lines == GW_H1L_IDLE && !c->req_active && n)
        c->lines = GW_H1L_LEAD;
    if (lines_scan(c, data, n))
        return HPE_USER;
    llhttp_errno_t e = llhttp_execute(&c->parser, data, n);
    while (e == HPE_PAUSED && c->trailer_pause) {
        c->trailer_pause = 0;
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t rest = (size_t)(data + n - pos);
        c->lines = GW_H1L_BOL;
        if (lines_scan(c, pos, rest))
            return HPE_USER;
        llhttp_resume(&c->parser);
        e = llhttp_execute(&c->parser, pos, rest);
    }
    return e;
}

/* Runs the parser over data. Leftover bytes after a pause are kept in c->in. */
void gw_req_parse(gw_conn_t *c, const char *data, size_t n, int from_in)
{
    c->parse_base = data;
    c->parse_end = data + n;
    c->msg_end = NULL;
    llhttp_errno_t e = execute(c, data, n);
    size_t used = n;
    if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        used = pos ? (size_t)(pos - data) : n;
        c->paused = 1;
    }
    if (from_in)
        evbuffer_drain(c->in, used);
    else if (used < n && e == HPE_PAUSED)
        evbuffer_add(c->in, data + used, n - used);
    if (c->x && (e == HPE_OK || e == HPE_PAUSED))
        ups_exchange_flush(c->x);   /* only what parsed cleanly leaves */
    if (e == HPE_OK)
        return;
    if (e == HPE_PAUSED) {
        if (c->resp_active && !c->x && c->resp_head_sent && c->close_after)
            finish_response(c);   /* refused, connection closing */
        else if (c->handler_started == 1) {
            c->handler_started = 2;
            iroute_start(c);   /* answers through ireq_reply, now or later */
        }
        return;
    }
    /* a protocol error, or a limit a callback enforced */
    enum pc_err err = c->err != PC_E_NONE ? c->err : PC_E_BAD_REQUEST;
    const char *msg = c->err_msg ? c->err_msg : pc_err_message(err);
    CLOG_EV(c, PC_INFO, "request_refused", "refused %s: %s (%s)", pc_err_code(err), msg,
         c->err != PC_E_NONE ? "limit" : llhttp_get_error_reason(&c->parser));
    gw_req_abort(c, err, msg);
}

/* ---- what the connection calls ---- */

void gw_req_init(gw_conn_t *c)
{
    llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
    c->parser.data = c;
    c->err = c->resp_err = PC_E_NONE;
}

void gw_req_abort(gw_conn_t *c, enum pc_err e, const char *msg)
{
    if (c->x) {
        ups_exchange_free(c->x);
        c->x = NULL;
    }
    if (!c->resp_head_sent)
        respond_error(c, e, msg, 1, NULL);
    c->close_after = 1;
    c->resp_active = 1;
    finish_response(c);
}

void gw_req_free(gw_conn_t *c)
{
    if (c->x)
        ups_exchange_free(c->x);
    c->x = NULL;
    gw_gate_reset(c);
    if (c->handler_started == 2 && c->handler)
        c->iroute->cancel(c->handler);
    c->handler = NULL;
    if (c->body)
        evbuffer_free(c->body);
    c->body = NULL;
    ups_hdrs_free(&c->hdrs);
    free(c->rl_headers);
    c->rl_headers = NULL;
}
