/* gateway/conn: one client connection, from TLS handshake to close.
 *
 * States: (proxy ->) handshake -> http -> closing (-> lingering). On a PROXY
 * protocol listener the connection first reads the header the load balancer
 * sends (proxy_step): its client address becomes the connection's peer for
 * everything after it (connection limits, logs, X-Forwarded-For, rate-limit
 * keys), and any problem closes the connection without a byte answered. In
 * http, the bytes
 * TLS delivers go to the request pipeline (gateway/request.c, gw_req_parse),
 * which parses one request at a time: the parser pauses at the end of each
 * request until its response has been produced, so pipelined requests are
 * answered in order. Bodies stream both ways; reading from one side stops
 * while the other side's buffer is above its high-water mark.
 *
 * gw_conn_io() is the one driver: it runs the handshake, flushes output, reads
 * input and re-arms events and the timer. conn_free() is the one teardown;
 * nothing else frees a connection. Functions here that may end in
 * conn_free() say so, and callers return right after them.
 */
#include "gateway.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../base/metrics.h"
#include "../policy/policy.h"
#include "conn_int.h"
#include "proxy_proto.h"

static void conn_free(gw_conn_t *c);
static void peer_names(gw_conn_t *c, const struct sockaddr_storage *peer);
static int64_t mono_us(void);

/* ---- helpers ---- */

char *gw_conn_ctx(const gw_conn_t *c, char *buf, size_t n)
{
    snprintf(buf, n, "w=%d conn=%llu peer=%s action=%s", c->w->id, (unsigned long long)c->cid,
             c->peer, c->action);
    return buf;
}

void gw_conn_arm(gw_conn_t *c, enum tkind k, uint64_t ms)
{
    c->tkind = k;
    if (k == T_NONE) {
        event_del(c->timer);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(c->timer, &tv);
}

void gw_conn_kick(gw_conn_t *c)
{
    event_active(c->kick, 0, 0);
}

static int can_read(const gw_conn_t *c)
{
    if (c->state != C_HTTP || c->paused || c->dead)
        return 0;
    if (evbuffer_get_length(c->out) > OUT_HIGH)
        return 0;
    if (c->x && ups_exchange_backlog(c->x) > UP_REQ_HIGH)
        return 0;
    return 1;
}

/* Reads and parses what the client sent, within the backpressure limits. */
static void do_read(gw_conn_t *c)
{
    char buf[READ_CHUNK];
    for (int rounds = 0; rounds < 8 && can_read(c); rounds++) {
        size_t held = evbuffer_get_length(c->in);
        if (held) {
            gw_req_parse(c, (const char *)evbuffer_pullup(c->in, (ssize_t)held), held, 1);
            continue;
        }
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n > 0) {
            if (c->tkind == T_BODY)
                gw_conn_arm(c, T_BODY, CFG(c)->timeouts.body_read_ms);
            gw_req_parse(c, buf, (size_t)n, 0);
            /* Nothing left inside TLS: whatever else the client sent is in
             * the socket, and the (level-triggered) read event says so.
             * Saves the read() that would return EAGAIN on every request. */
            if (!SSL_has_pending(c->ssl) && !evbuffer_get_length(c->in))
                return;
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            return;
        if (err == SSL_ERROR_WANT_WRITE) {
            c->want_write = 1;
            return;
        }
        /* closed by the client, or a TLS error: nothing more can be answered */
        c->tls_error = err == SSL_ERROR_SSL;
        if (c->req_active && !c->req_complete)
            CLOG_EV(c, PC_INFO, "connection_closed", "client closed the connection mid-request");
        else
            CLOG_EV(c, PC_DEBUG, "connection_closed", "client closed the connection");
        c->dead = 1;
        return;
    }
    if (can_read(c))
        gw_conn_kick(c);   /* more may be buffered inside TLS: come back after others had a turn */
}

/* ---- output ---- */

/* Sends what is queued; sets want_write when the socket is full. */
static void do_flush(gw_conn_t *c)
{
    size_t before = evbuffer_get_length(c->out);
    while (!c->dead) {
        size_t len = evbuffer_get_length(c->out);
        if (len == 0)
            break;
        size_t n = len > READ_CHUNK ? READ_CHUNK : len;
        const unsigned char *p = evbuffer_pullup(c->out, (ssize_t)n);
        ERR_clear_error();
        int w = SSL_write(c->ssl, p, (int)n);
        if (w > 0) {
            evbuffer_drain(c->out, (size_t)w);
            continue;
        }
        int err = SSL_get_error(c->ssl, w);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
            c->want_write = 1;
            break;
        }
        c->tls_error = err == SSL_ERROR_SSL;
        CLOG_EV(c, PC_DEBUG, "connection_closed", "write to client failed");
        c->dead = 1;
        return;
    }
    size_t after = evbuffer_get_length(c->out);
    if (after < before && c->tkind == T_SEND)
        gw_conn_arm(c, T_SEND, CFG(c)->timeouts.send_ms);
    if (c->x && after < OUT_HIGH / 2)
        ups_exchange_resume(c->x);
}

/* ---- PROXY protocol header ---- */

static const char *const pp_reason_names[PC_PP__N] = {
    [PC_PP_UNTRUSTED_PEER] = "untrusted_peer", [PC_PP_MALFORMED] = "malformed",
    [PC_PP_VERSION] = "version", [PC_PP_TOO_LONG] = "too_long", [PC_PP_TIMEOUT] = "timeout",
    [PC_PP_CLOSED] = "closed"};

/* The header is refused: closed unanswered, logged with the (real) peer and
 * the reason, counted. A peer that closes before sending any byte is what a
 * balancer's TCP health check does: logged at DEBUG only. */
static void proxy_refuse(gw_conn_t *c, int reason, const char *why)
{
    int quiet = reason == PC_PP_CLOSED && c->pp_len == 0;
    CLOG_EV(c, quiet ? PC_DEBUG : PC_INFO, "proxy_protocol_refused",
            "PROXY protocol header refused (%s): %s", pp_reason_names[reason], why);
    pc_count1(PROXY_REFUSALS, (unsigned)reason);
    c->dead = 1;
}

/* Why gw_pp_parse refused these bytes, as a metrics reason. */
static int proxy_reason(gw_conn_t *c, int code, size_t n)
{
    gw_pp_header_t other;
    unsigned accept = (unsigned)c->listen->proxy_protocol;
    if (code == GW_PP_ETOOBIG)
        return PC_PP_TOO_LONG;
    if (code == GW_PP_ENOTPROXY && accept != GW_PP_ANY &&
        gw_pp_parse(c->pp_buf, n, GW_PP_ANY, c->listen->proxy_header_max, &other) >= 0)
        return PC_PP_VERSION;   /* a header of the version this listener does not take */
    return PC_PP_MALFORMED;
}

/* The header is complete: its client becomes the connection's peer (PROXY
 * with addresses; LOCAL and UNKNOWN keep the real one), the per-IP
 * connection limits count that client, and the TLS handshake starts, its
 * timeout (and its duration) counted from now. */
static void proxy_done(gw_conn_t *c, const gw_pp_header_t *h)
{
    char via[sizeof c->peer];
    snprintf(via, sizeof via, "%s", c->peer);
    if (h->command == GW_PP_PROXY && h->family != GW_PP_UNSPEC) {
        c->peer_addr = h->src;
        peer_names(c, &c->peer_addr);
    }
    CLOG_EV(c, PC_DEBUG, "proxy_protocol", "PROXY v%d %s header from %s", h->version,
            h->command == GW_PP_LOCAL ? "LOCAL" : h->family == GW_PP_UNSPEC ? "UNKNOWN" : "PROXY",
            via);
    free(c->pp_buf);
    c->pp_buf = NULL;
    if (c->gen->connlimit) {
        const cfg_t *cfg = CFG(c);
        int counted = pol_connlimit_acquire(c->gen->connlimit, &cfg->connection_limits,
                                            &c->peer_addr, mono_us());
        if (counted < 0) {
            CLOG_EV(c, PC_DEBUG, "connection_refused", "connection refused by connection_limits (%s)",
                    counted == -1 ? "per_ip_rate" : "per_ip_concurrent");
            pc_count1(CONN_REFUSED, counted == -1 ? PC_REFUSE_PER_IP_RATE
                                                  : PC_REFUSE_PER_IP_CONCURRENCY);
            c->dead = 1;
            return;
        }
        c->counted = counted;
    }
    c->state = C_HANDSHAKE;
    c->action = "handshake";
    c->accepted_us = mono_us();
    gw_conn_arm(c, T_HANDSHAKE, CFG(c)->tls.handshake_timeout_ms);
}

/* Reads the header: peeks at what the socket holds after the bytes read so
 * far, and consumes only bytes of the header (gw_pp_parse says every byte
 * of an incomplete header is one), so the client's first TLS bytes, even in
 * the same segment, stay in the socket for OpenSSL; an incomplete header
 * leaves nothing unread behind, so the level-triggered read event does not
 * fire again until more arrives. */
static void proxy_step(gw_conn_t *c)
{
    size_t max = c->listen->proxy_header_max;
    ssize_t k = recv(c->fd, c->pp_buf + c->pp_len, max - c->pp_len, MSG_PEEK);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (k <= 0) {
        proxy_refuse(c, PC_PP_CLOSED, c->pp_len ? "closed in the middle of the header"
                                                : "closed before sending a header");
        return;
    }
    size_t n = c->pp_len + (size_t)k;
    gw_pp_header_t h;
    int r = gw_pp_parse(c->pp_buf, n, (unsigned)c->listen->proxy_protocol, max, &h);
    if (r < 0) {
        proxy_refuse(c, proxy_reason(c, r, n),
                     c->pp_buf[0] == 0x16 ? "a TLS record where the PROXY header must be"
                                          : gw_pp_strerror(r));
        return;
    }
    size_t take = r > 0 ? (size_t)r - c->pp_len : (size_t)k;
    if (r == 0 && n == max) {
        proxy_refuse(c, PC_PP_TOO_LONG, gw_pp_strerror(GW_PP_ETOOBIG));
        return;
    }
    /* the bytes were peeked, so this read returns exactly them */
    ssize_t got = recv(c->fd, c->pp_buf + c->pp_len, take, 0);
    if (got != (ssize_t)take) {
        proxy_refuse(c, PC_PP_CLOSED, "the header could not be read");
        return;
    }
    c->pp_len += take;
    if (r > 0)
        proxy_done(c, &h);   /* which reads h (pointing into pp_buf) before freeing pp_buf */
}

/* ---- handshake ---- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A handshake that ended without a connection: counted once, by reason
 * (enum pc_tls_fail). */
static void handshake_failed(gw_conn_t *c, int reason)
{
    pc_count1(TLS_FAILURES, (unsigned)reason);
    c->dead = 1;
}

/* Why a handshake libssl gave up on failed, when no certificate check
 * said so: the client sent no certificate, any other TLS error (garbage,
 * no common version or cipher, an alert from the client), or the client
 * closed the connection (other). */
static int handshake_error_reason(int err)
{
    if (err != SSL_ERROR_SSL)
        return PC_TLSF_OTHER;
    unsigned long e;
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
            return PC_TLSF_NO_CERTIFICATE;
    return PC_TLSF_PROTOCOL_ERROR;
}

/* A completed handshake, by class, TLS version and result, and its time
 * since the accept. */
static void handshake_count(gw_conn_t *c)
{
    const cfg_tls_t *t = &CFG(c)->tls;
    unsigned cls = c->id->class_idx >= 0 && (size_t)c->id->class_idx < t->nclasses
                   ? t->classes[c->id->class_idx].mx : PC_ID_NONE;
    int v = SSL_version(c->ssl);
    unsigned ver = v == TLS1_3_VERSION ? PC_TLSV_13 : v == TLS1_2_VERSION ? PC_TLSV_12 : PC_TLSV_OTHER;
    unsigned res = SSL_session_reused(c->ssl) ? PC_HS_RESUMED
                   : tls_verify_cached(c->ssl) ? PC_HS_CACHED_CHAIN : PC_HS_FULL;
    pc_count3(TLS_HANDSHAKES, cls, ver, res);
    int64_t us = mono_us() - c->accepted_us;
    pc_observe(TLS_HS_TIME, us > 0 ? (uint64_t)us : 0);
}

/* The handshake is complete: the identity it verified, if still valid,
 * and the connection on to its first request. */
static void handshake_done(gw_conn_t *c)
{
    c->id = tls_identity_get(c->ssl);
    if (!c->id) {
        CLOG_EV(c, PC_WARN, "tls_handshake_failed", "handshake completed without a verified identity; closing");
        handshake_failed(c, PC_TLSF_OTHER);
        return;
    }
    c->rev_gen = pol_mirror_generation(gw_proc_mirror(c->w->proc));
    int rs = tls_identity_revocation(c->gen->tls, c->id);
    if (rs != TLS_REV_OK) {
        /* a full handshake was refused in verify_cb already; this is a
         * resumption (or a revocation that landed in between) */
        CLOG_EV(c, PC_INFO, "tls_refused", "%s refused: serial=%s class=%s %s", SSL_session_reused(c->ssl) ? "resumed session" : "handshake",
             c->id->serial, c->id->class_name,
             rs == TLS_REV_REVOKED ? "certificate revoked" : "revocation status unknown (Redis unavailable)");
        if (rs == TLS_REV_REVOKED)
            SSL_CTX_remove_session(SSL_get_SSL_CTX(c->ssl), SSL_get_session(c->ssl));
        c->tls_error = 1;
        handshake_failed(c, rs == TLS_REV_REVOKED ? PC_TLSF_REVOKED : PC_TLSF_REVOCATION_UNKNOWN);
        return;
    }
    if (c->id->not_after_t <= time(NULL)) {
        CLOG_EV(c, PC_INFO, "tls_refused", "resumed session refused: certificate serial=%s expired at %s",
             c->id->serial, c->id->not_after);
        handshake_failed(c, PC_TLSF_EXPIRED);
        return;
    }
    handshake_count(c);
    gw_worker_watch_expiry(c->w, c->id->not_after_t);
    c->state = C_HTTP;
    c->action = "waiting for request";
    c->idle_since_ms = gw_conn_now_ms(c);
    CLOG_EV(c, PC_DEBUG, "tls_handshake", "handshake done: %s %s%s class=%s serial=%s device=%s", SSL_get_version(c->ssl),
         SSL_get_cipher_name(c->ssl),
         SSL_session_reused(c->ssl) ? " resumed" : tls_verify_cached(c->ssl) ? " chain-cached" : "",
         c->id->class_name, c->id->serial, c->id->device_id ? c->id->device_id : "-");
    gw_conn_arm(c, T_HEADER, CFG(c)->timeouts.header_read_ms);
}

static void handshake(gw_conn_t *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        handshake_done(c);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ)
        return;
    if (err == SSL_ERROR_WANT_WRITE) {
        c->want_write = 1;
        return;
    }
    const char *why = tls_verify_failure(c->ssl);
    unsigned long e = ERR_peek_error();
    if (!why)
        why = e ? ERR_reason_error_string(e) : (err == SSL_ERROR_SYSCALL ? "connection closed" : "failed");
    CLOG_EV(c, PC_INFO, "tls_handshake_failed", "handshake failed: %s", why ? why : "unknown");
    int reason = tls_verify_failure_reason(c->ssl);
    handshake_failed(c, reason >= 0 ? reason : handshake_error_reason(err));
}

/* ---- lingering close ---- */

/* Might the client still be sending? Its request was not fully read, input
 * is held or buffered, or the socket has bytes waiting. Closing a socket
 * with unread input sends a reset, and a client that writes its whole body
 * before reading (OkHttp, URLSession) then loses the response. */
static int input_pending(gw_conn_t *c)
{
    int avail = 0;
    if (c->req_active && !c->req_complete)
        return 1;
    if (evbuffer_get_length(c->in) || SSL_has_pending(c->ssl))
        return 1;
    return ioctl(c->fd, FIONREAD, &avail) == 0 && avail > 0;
}

/* Lingering: close_notify goes out (it may wait for the socket), then the
 * write side is shut, then input is read and dropped until the client
 * closes, timeouts.lingering_close passes or limits.lingering_close_bytes
 * have been dropped. The bytes are not TLS-decrypted: nothing is answered. */
static void linger_step(gw_conn_t *c)
{
    if (!c->linger_wr) {
        ERR_clear_error();
        int r = SSL_shutdown(c->ssl);
        if (r < 0) {
            int err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_WRITE) {
                c->want_write = 1;
                return;
            }
            if (err != SSL_ERROR_WANT_READ) {   /* the TLS layer failed: just close */
                c->dead = 1;
                return;
            }
        }
        shutdown(c->fd, SHUT_WR);
        c->linger_wr = 1;
    }
    char buf[READ_CHUNK];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n > 0) {
            c->linger_bytes += (uint64_t)n;
            if (c->linger_bytes >= CFG(c)->limits.lingering_close_bytes) {
                CLOG_EV(c, PC_DEBUG, "connection_closed", "lingering close: %llu bytes dropped, closing",
                     (unsigned long long)c->linger_bytes);
                c->dead = 1;
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        c->dead = 1;   /* the client closed (or reset): done */
        return;
    }
}

/* The last response is out: close, lingering if the client may still be
 * sending and lingering is enabled. */
static void close_or_linger(gw_conn_t *c)
{
    uint64_t ms = CFG(c)->timeouts.lingering_close_ms;
    if (!ms || c->tls_error || !input_pending(c)) {
        SSL_shutdown(c->ssl);   /* close_notify; best effort on a non-blocking socket */
        c->dead = 1;
        return;
    }
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    c->state = C_LINGER;
    c->action = "lingering close";
    gw_conn_arm(c, T_LINGER, ms);
    linger_step(c);
}

/* ---- the driver ---- */

void gw_conn_io(gw_conn_t *c)
{
    c->want_write = 0;
    if (c->state == C_PROXY && !c->dead)
        proxy_step(c);
    if (c->state == C_HANDSHAKE && !c->dead)
        handshake(c);
    if (c->state != C_HANDSHAKE && c->state != C_PROXY && !c->dead) {
        do_flush(c);
        do_read(c);
        do_flush(c);
    }
    if (!c->dead && c->state == C_LINGER)
        linger_step(c);
    if (!c->dead && c->state == C_CLOSING && evbuffer_get_length(c->out) == 0 && !c->want_write)
        close_or_linger(c);
    if (c->dead) {
        conn_free(c);
        return;
    }
    if (c->want_write || (c->state != C_HANDSHAKE && evbuffer_get_length(c->out)))
        event_add(c->wev, NULL);
    else
        event_del(c->wev);
    /* The read event is left registered while reading pauses for a response
     * (a request/response turn then costs no epoll_ctl); it is removed
     * only if the client sends while we may not read (see on_readable). */
    if ((c->state == C_PROXY || c->state == C_HANDSHAKE || c->state == C_LINGER || can_read(c)) &&
        c->rev_off) {
        event_add(c->rev, NULL);
        c->rev_off = 0;
    } else if (c->state == C_CLOSING && !c->rev_off) {
        event_del(c->rev);
        c->rev_off = 1;
    }
    /* a stalled write is bounded by the send timeout */
    if (evbuffer_get_length(c->out) && c->tkind != T_SEND && c->tkind != T_HANDSHAKE &&
        (c->state == C_CLOSING || c->tkind == T_NONE || c->tkind == T_IDLE))
        gw_conn_arm(c, T_SEND, CFG(c)->timeouts.send_ms);
    else if (!evbuffer_get_length(c->out) && c->tkind == T_SEND)
        gw_conn_arm(c, c->resp_active ? T_NONE : T_IDLE, CFG(c)->timeouts.idle_ms);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_io(arg);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_t *c = arg;
    if (c->state != C_PROXY && c->state != C_HANDSHAKE && c->state != C_LINGER && !can_read(c) &&
        !c->rev_off) {
        event_del(c->rev);   /* input waits in the socket until we can take it */
        c->rev_off = 1;
    }
    gw_conn_io(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_t *c = arg;
    switch (c->tkind) {
    case T_PROXY:
        proxy_refuse(c, PC_PP_TIMEOUT, "the header did not arrive within proxy_timeout");
        break;
    case T_HANDSHAKE:
        CLOG_EV(c, PC_INFO, "tls_handshake_failed", "handshake timed out");
        handshake_failed(c, PC_TLSF_HANDSHAKE_TIMEOUT);
        break;
    case T_HEADER:
    case T_BODY:
        if (c->req_active && !c->resp_head_sent) {
            CLOG_EV(c, PC_INFO, "request_timeout", "request timed out");
            gw_req_abort(c, PC_E_REQUEST_TIMEOUT, NULL);
        } else {
            c->dead = 1;   /* nothing was asked: just close */
        }
        break;
    case T_IDLE:
        c->state = C_CLOSING;
        c->action = "closing idle";
        break;
    case T_SEND:
        CLOG_EV(c, PC_INFO, "send_timeout", "client stopped reading; closing");
        c->dead = 1;
        break;
    case T_LINGER:
        CLOG_EV(c, PC_DEBUG, "connection_closed", "lingering close: time is up after %llu bytes dropped",
             (unsigned long long)c->linger_bytes);
        c->dead = 1;
        break;
    case T_NONE:
        break;
    }
    c->tkind = T_NONE;
    gw_conn_io(c);
}

/* ---- life cycle ---- */

/* c->peer_ip, and c->peer as ip:port or [ip]:port, from the peer's address. */
static void peer_names(gw_conn_t *c, const struct sockaddr_storage *peer)
{
    uint16_t port = 0;
    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)peer;
        inet_ntop(AF_INET6, &a->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
        port = ntohs(a->sin6_port);
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", c->peer_ip, port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &a->sin_addr, c->peer_ip, sizeof(c->peer_ip));
        port = ntohs(a->sin_port);
        snprintf(c->peer, sizeof(c->peer), "%s:%u", c->peer_ip, port);
    }
}

void gw_conn_new(gw_worker_t *w, gw_wgen_t *wg, int fd, const struct sockaddr_storage *peer,
                 int counted, const cfg_listener_t *lc)
{
    gw_gen_t *gen = gw_wgen_gen(wg);
    gw_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        __atomic_sub_fetch(gw_proc_nconns(w->proc), 1, __ATOMIC_RELAXED);
        if (counted)
            pol_connlimit_release(gen->connlimit, peer);
        close(fd);
        gw_wgen_conn_closed(w, wg);
        return;
    }
    c->w = w;
    c->gen = gen;
    c->wg = wg;
    c->counted = counted;
    c->listen = lc;
    c->fd = fd;
    c->cid = ++w->next_id;
    c->peer_addr = *peer;
    c->action = "handshake";
    c->state = C_HANDSHAKE;
    c->accepted_us = mono_us();
    c->parser.data = c;
    peer_names(c, peer);
    c->ssl = SSL_new(tls_ctx_ssl(gen->tls));
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->rev_off = 1;
    c->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, on_io, c);
    c->timer = evtimer_new(w->base, on_timer, c);
    c->kick = event_new(w->base, -1, 0, on_io, c);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    const cfg_t *cfg = gen->cfg;
    int proxy = lc && lc->proxy_protocol != CFG_PP_OFF;
    if (proxy) {
        c->state = C_PROXY;
        c->action = "PROXY header";
        c->pp_buf = malloc(lc->proxy_header_max);
    }
    int ok = c->ssl && c->rev && c->wev && c->timer && c->kick && c->in && c->out &&
             (!proxy || c->pp_buf) && SSL_set_fd(c->ssl, fd) == 1;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    if (!ok) {
        pc_log_ev(PC_ERR, "out_of_memory", NULL, "out of memory for a new connection");
        c->dead = 1;
        conn_free(c);
        return;
    }
    gw_req_init(c);
    SSL_set_accept_state(c->ssl);
    if (proxy)
        gw_conn_arm(c, T_PROXY, lc->proxy_timeout_ms);
    else
        gw_conn_arm(c, T_HANDSHAKE, cfg->tls.handshake_timeout_ms);
    gw_conn_io(c);
}

static void conn_free(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    gw_req_free(c);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->timer)
        event_free(c->timer);
    if (c->kick)
        event_free(c->kick);
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    /* OpenSSL drops a session from the cache when its connection ends
     * without close_notify; mobile clients often just close the socket.
     * Keep the session unless the TLS layer itself failed. */
    if (c->ssl && c->state != C_PROXY && c->state != C_HANDSHAKE && !c->tls_error)
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    free(c->pp_buf);
    SSL_free(c->ssl);
    tls_identity_release(c->id);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    __atomic_sub_fetch(gw_proc_nconns(w->proc), 1, __ATOMIC_RELAXED);
    if (c->counted)
        pol_connlimit_release(c->gen->connlimit, &c->peer_addr);
    gw_wgen_t *wg = c->wg;
    free(c);
    gw_wgen_conn_closed(w, wg);   /* may free the generation: nothing of c after this */
    if (w->draining && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

void gw_conn_revocation_scan(gw_worker_t *w)
{
    gw_conn_t *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (!c->id || c->state != C_HTTP || c->revoked || !tls_identity_revoked(c->gen->tls, c->id))
            continue;
        c->revoked = 1;
        pc_count(CONN_REVOKED);
        CLOG_EV(c, PC_INFO, "revoked_connection_closed", "certificate serial=%s class=%s revoked: closing the connection%s", c->id->serial,
             c->id->class_name, c->resp_active ? " after the response in progress" : "");
        if (c->req_active || c->resp_active) {
            c->close_after = 1;
        } else {
            c->state = C_CLOSING;
            c->action = "closing revoked";
        }
        gw_conn_kick(c);
    }
}

/* An idle connection closes now, with close_notify. A request in progress
 * was authorised while the certificate was valid: it completes, then the
 * connection closes; a request whose head is read after notAfter (one
 * pipelined behind it, say) is refused with 403 certificate_expired. */
time_t gw_conn_expiry_scan(gw_worker_t *w, time_t now)
{
    time_t next = 0;
    for (gw_conn_t *c = w->conns; c; c = c->next) {
        if (!c->id || c->state != C_HTTP || c->cert_expired)
            continue;
        if (c->id->not_after_t > now) {
            if (!next || c->id->not_after_t < next)
                next = c->id->not_after_t;
            continue;
        }
        int busy = c->req_active || c->resp_active;
        CLOG_EV(c, PC_INFO, "expired_connection_closed", "certificate serial=%s class=%s expired at %s: closing the connection%s",
             c->id->serial, c->id->class_name, c->id->not_after,
             busy ? " after the request in progress" : "");
        if (busy) {
            c->cert_expired = 1;
        } else {
            c->state = C_CLOSING;
            c->action = "closing expired";
        }
        gw_conn_kick(c);
    }
    return next;
}

int64_t gw_conn_now_ms(const gw_conn_t *c)
{
    struct timeval tv;
    event_base_gettimeofday_cached(c->w->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Idle and quiet for timeouts.drain_idle: nothing buffered either way,
 * not even in the kernel (the client has the last response, and no byte of
 * a next request has arrived), so a client that was about to send one
 * would have done so. The idle time counts from when the last response
 * was seen delivered: a slow reader is not idle while it still reads. */
static int quiet(gw_conn_t *c, int64_t now)
{
    if (c->state != C_HTTP || c->req_active || c->resp_active)
        return 0;
    int unsent = 0, unread = 0;
    if (evbuffer_get_length(c->out) || ioctl(c->fd, SIOCOUTQ, &unsent) != 0 || unsent > 0 ||
        evbuffer_get_length(c->in) || SSL_has_pending(c->ssl) || ioctl(c->fd, FIONREAD, &unread) != 0 ||
        unread > 0) {
        c->idle_since_ms = now;   /* still delivering, or a request is arriving */
        return 0;
    }
    return now - c->idle_since_ms >= (int64_t)CFG(c)->timeouts.drain_idle_ms;
}

size_t gw_conn_retire(gw_worker_t *w, gw_wgen_t *wg)
{
    size_t left = 0;
    struct timeval tv;
    event_base_gettimeofday_cached(w->base, &tv);
    int64_t now = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    gw_conn_t *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if ((wg && c->wg != wg) || c->state == C_LINGER || c->state == C_CLOSING)
            continue;
        c->retiring = 1;   /* the next response says Connection: close */
        if (quiet(c, now)) {
            c->state = C_CLOSING;
            c->action = w->draining ? "closing for shutdown" : "closing for reload";
            gw_conn_kick(c);
        } else {
            left++;        /* a handshake, a request, or idle only since just now */
        }
    }
    return left;
}

void gw_conn_drain_all(gw_worker_t *w)
{
    if (gw_conn_retire(w, NULL) == 0 && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

/* timeouts.drain is over: a request that has no response byte yet gets a
 * 503, written as far as the socket takes it without waiting. */
static void answer_shutdown(gw_conn_t *c)
{
    gw_req_abort(c, PC_E_SHUTTING_DOWN, NULL);
    do_flush(c);
    if (!c->dead && evbuffer_get_length(c->out) == 0) {
        SSL_shutdown(c->ssl);
        shutdown(c->fd, SHUT_WR);
        /* unread input would turn the close into a reset that may take the
         * 503 with it: drop what is there */
        char buf[READ_CHUNK];
        for (int i = 0; i < 64 && read(c->fd, buf, sizeof(buf)) > 0; i++)
            ;
    }
}

void gw_conn_close_all(gw_worker_t *w)
{
    while (w->conns) {
        gw_conn_t *c = w->conns;
        if (c->state == C_HTTP && c->req_active && !c->resp_head_sent) {
            CLOG_EV(c, PC_WARN, "shutdown", "shutdown: request still running when the drain time ended; 503");
            answer_shutdown(c);
        } else if (c->state == C_HTTP && c->resp_active) {
            CLOG_EV(c, PC_WARN, "shutdown", "closed by shutdown before its response completed");
        }
        conn_free(c);
    }
}
