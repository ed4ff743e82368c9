/* client: the connection state machine.
 *
 * Every connection slot cycles through
 *   FREE -> CONNECTING -> HANDSHAKE -> WRITING -> READING -> (FREE | WRITING)
 * and, in idle mode, HANDSHAKE -> HOLD. OpenSSL is driven directly on a
 * non-blocking socket: whatever SSL_* asks for (WANT_READ / WANT_WRITE)
 * becomes the one event the slot waits for, and the operation that belongs
 * to the current state is retried when it fires. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conn.h"

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void conn_start_next(conn_t *c, int deferred, uint64_t delay_ns);

/* ---- OpenSSL callbacks ------------------------------------------------ */

static void info_cb(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_ALERT) || !(where & SSL_CB_READ))
        return;
    conn_t *c = SSL_get_app_data(ssl);
    if (!c || (ret & 0xff) == SSL3_AD_CLOSE_NOTIFY)
        return;
    const char *d = SSL_alert_desc_string_long(ret);
    if (!d || strcmp(d, "unknown") == 0) {
        /* TLS 1.3 alerts this OpenSSL has no text for */
        switch (ret & 0xff) {
        case 109: d = "missing extension"; break;
        case 115: d = "unknown PSK identity"; break;
        case 116: d = "certificate required"; break;
        case 120: d = "no application protocol"; break;
        default: d = "unknown"; break;
        }
    }
    c->alert = d;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    conn_t *c = SSL_get_app_data(ssl);
    if (!c)
        return 0;
    if (c->sess)
        SSL_SESSION_free(c->sess);
    c->sess = sess; /* the reference is ours now */
    return 1;
}

/* ---- low-level helpers -------------------------------------------------- */

static void wait_for(conn_t *c, short what)
{
    if (c->io_added)
        event_del(&c->io);
    event_assign(&c->io, c->t->base, c->fd, what, conn_io_cb, c);
    event_add(&c->io, NULL);
    c->io_added = 1;
}

static void err_text(conn_t *c, int sslerr, char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (c->alert) {
        snprintf(buf, n, "peer sent alert: %s", c->alert);
    } else if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, n, "%s", r ? r : "TLS error");
    } else if (sslerr == SSL_ERROR_SYSCALL && errno) {
        snprintf(buf, n, "%s", strerror(errno));
    } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, n, "connection closed by the peer");
    } else {
        snprintf(buf, n, "TLS error %d", sslerr);
    }
    ERR_clear_error();
}

/* Closes the connection; graceful sends close_notify (which also keeps the
 * session resumable). */
static void conn_close(conn_t *c, int graceful)
{
    if (c->io_added) {
        event_del(&c->io);
        c->io_added = 0;
    }
    if (c->ssl) {
        if (graceful) {
            ERR_clear_error();
            SSL_shutdown(c->ssl);
        }
        ERR_clear_error();
        SSL_set_app_data(c->ssl, NULL);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->up = 0;
    c->hs_counted = HS_NONE;
    c->hs_done = 0;
    c->responses = 0;
    c->alert = NULL;
}

/* The current request is over (done or failed): account and go on. */
static void request_done(conn_t *c, int deferred, uint64_t delay_ns)
{
    bench_thread_t *t = c->t;
    event_del(&c->timer);
    if (c->in_request) {
        c->in_request = 0;
        if (c->measured)
            t->finished++;
    }
    if (t->stopping)
        return;
    thread_check_done(t);
    if (t->stopping)
        return;
    if (t->rate > 0) {
        if (c->fd >= 0 && c->state == C_FREE)
            wait_for(c, EV_READ); /* notice a close by the server while idle */
        t->free_list[t->nfree++] = c->idx;
        if (deferred) {
            /* after a failure: no recursion through dispatch */
            struct timeval tv = bench_tv(delay_ns);
            evtimer_add(t->rate_ev, &tv);
        } else {
            thread_dispatch(t);
        }
    } else {
        conn_start_next(c, deferred, delay_ns);
    }
}

static void conn_fail(conn_t *c, int kind, const char *msg)
{
    bench_thread_t *t = c->t;
    uint64_t now = now_ns();
    char m2[STATS_SAMPLE_LEN];
    if (c->alert && (kind == ERR_HANDSHAKE || kind == ERR_CLOSED || kind == ERR_PROTOCOL))
        kind = ERR_TLS_ALERT;
    /* A TLS 1.3 client finishes its handshake before the server has checked
     * the client certificate: a rejection arrives later, as an alert, or as
     * a reset when the request was already on its way (the reset discards
     * the alert). Either way the handshake did not succeed. */
    int early = c->ssl && c->hs_done && c->responses == 0 &&
                (!c->rp || c->state != C_READING || resp_idle(c->rp)) &&
                SSL_version(c->ssl) == TLS1_3_VERSION;
    if (early && kind == ERR_CLOSED) {
        kind = ERR_HANDSHAKE;
        snprintf(m2, sizeof(m2), "closed before any response, right after the handshake (%s)",
                 msg ? msg : "?");
        msg = m2;
    }
    if ((kind == ERR_TLS_ALERT || kind == ERR_HANDSHAKE) && c->responses == 0 &&
        c->hs_counted != HS_NONE && thread_measuring(t, now)) {
        if (c->hs_counted == HS_FULL && t->stats.hs_full)
            t->stats.hs_full--;
        else if (c->hs_counted == HS_RESUMED && t->stats.hs_resumed)
            t->stats.hs_resumed--;
    }
    if (c->in_request ? c->measured : thread_measuring(t, now)) {
        stats_error(&t->stats, kind, msg);
        if (kind == ERR_TLS_ALERT && c->alert)
            stats_alert(&t->stats, c->alert);
    }
    conn_close(c, 0);
    c->state = C_FREE;
    request_done(c, 1, kind == ERR_CONNECT ? 10000000ULL : 0);
}

/* ---- the state machine -------------------------------------------------- */

static void do_handshake(conn_t *c);
static void do_write(conn_t *c);
static void do_read(conn_t *c);
static void do_hold(conn_t *c);

static void conn_connect(conn_t *c)
{
    const bench_shared_t *sh = c->t->sh;
    int fd = socket(sh->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        char m[128];
        snprintf(m, sizeof(m), "socket: %s", strerror(errno));
        conn_fail(c, ERR_CONNECT, m);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->state = C_CONNECTING;
    if (connect(fd, (const struct sockaddr *)&sh->addr, sh->addrlen) == 0) {
        conn_io_cb(fd, EV_WRITE, c);
        return;
    }
    if (errno != EINPROGRESS) {
        conn_fail(c, ERR_CONNECT, strerror(errno));
        return;
    }
    wait_for(c, EV_WRITE);
}

static void conn_connected(conn_t *c)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr) {
        conn_fail(c, ERR_CONNECT, strerror(soerr));
        return;
    }
    const bench_opts_t *o = c->t->sh->o;
    c->ssl = SSL_new(c->t->ctx);
    if (!c->ssl) {
        conn_fail(c, ERR_HANDSHAKE, "SSL_new failed");
        return;
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    if (!o->url.host_is_ip)
        SSL_set_tlsext_host_name(c->ssl, o->url.host);
    if (o->cacert) {
        if (o->url.host_is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->url.host);
        else
            SSL_set1_host(c->ssl, o->url.host);
    }
    if (o->mode == MODE_RESUME && c->sess)
        SSL_set_session(c->ssl, c->sess);
    c->state = C_HANDSHAKE;
    do_handshake(c);
}

static void begin_write(conn_t *c)
{
    c->state = C_WRITING;
    c->woff = 0;
    do_write(c);
}

static void do_handshake(conn_t *c)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        bench_thread_t *t = c->t;
        int reused = SSL_session_reused(c->ssl);
        c->hs_done = 1;
        if (thread_measuring(t, now_ns())) {
            if (reused)
                t->stats.hs_resumed++;
            else
                t->stats.hs_full++;
            c->hs_counted = reused ? HS_RESUMED : HS_FULL;
        }
        if (t->sh->o->mode == MODE_IDLE) {
            event_del(&c->timer);
            c->in_request = 0;
            c->up = 1;
            c->state = C_HOLD;
            do_hold(c);
        } else {
            begin_write(c);
        }
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        wait_for(c, EV_READ);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        wait_for(c, EV_WRITE);
    } else {
        char m[STATS_SAMPLE_LEN];
        err_text(c, e, m, sizeof(m));
        conn_fail(c, ERR_HANDSHAKE, m);
    }
}

static void do_write(conn_t *c)
{
    const bench_shared_t *sh = c->t->sh;
    while (c->woff < sh->request_len) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_write_ex(c->ssl, sh->request + c->woff, sh->request_len - c->woff, &n);
        if (r == 1) {
            c->woff += n;
            if (c->measured)
                c->t->stats.bytes_written += n;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            wait_for(c, EV_READ);
        } else if (e == SSL_ERROR_WANT_WRITE) {
            wait_for(c, EV_WRITE);
        } else {
            char m[STATS_SAMPLE_LEN];
            err_text(c, e, m, sizeof(m));
            conn_fail(c, ERR_CLOSED, m);
        }
        return;
    }
    if (!c->rp) {
        c->rp = malloc(sizeof(*c->rp));
        if (!c->rp) {
            conn_fail(c, ERR_PROTOCOL, "out of memory");
            return;
        }
    }
    resp_init(c->rp, sh->head);
    c->state = C_READING;
    do_read(c);
}

static void response_done(conn_t *c)
{
    bench_thread_t *t = c->t;
    resp_parser_t *rp = c->rp;
    uint64_t now = now_ns();
    c->responses++;
    /* counted: started after the warm-up, completed before the end */
    if (c->measured && now < t->sh->end_ns) {
        t->stats.requests++;
        hist_record(&t->stats.lat, (now - c->start_ns) / 1000);
        if (rp->status < 200 || rp->status > 299) {
            char m[64];
            snprintf(m, sizeof(m), "HTTP status %d", rp->status);
            stats_error(&t->stats, ERR_HTTP_STATUS, m);
            if (rp->status >= 0 && rp->status < 600)
                t->stats.status[rp->status]++;
        }
    }
    bench_mode_t mode = t->sh->o->mode;
    if (mode == MODE_FULL || mode == MODE_RESUME || rp->conn_close)
        conn_close(c, 1);
    c->state = C_FREE;
    request_done(c, 0, 0);
}

static void do_read(conn_t *c)
{
    bench_thread_t *t = c->t;
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, t->rbuf, RBUF_SIZE, &n);
        if (r == 1) {
            if (c->measured)
                t->stats.bytes_read += n;
            size_t used = 0;
            int pr = resp_feed(c->rp, (const char *)t->rbuf, n, &used);
            if (pr == RESP_ERROR) {
                conn_fail(c, ERR_PROTOCOL, c->rp->error);
                return;
            }
            if (pr == RESP_DONE) {
                if (used < n) {
                    conn_fail(c, ERR_PROTOCOL, "data after the end of the response");
                    return;
                }
                response_done(c);
                return;
            }
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            wait_for(c, EV_READ);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            wait_for(c, EV_WRITE);
            return;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0 &&
                                           ERR_peek_error() == 0)) {
            if (resp_eof(c->rp) == RESP_DONE) {
                c->rp->conn_close = 1;
                response_done(c);
            } else {
                conn_fail(c, c->alert ? ERR_TLS_ALERT : ERR_CLOSED, c->rp->error);
            }
            return;
        }
        char m[STATS_SAMPLE_LEN];
        err_text(c, e, m, sizeof(m));
        conn_fail(c, e == SSL_ERROR_SSL ? ERR_PROTOCOL : ERR_CLOSED, m);
        return;
    }
}

/* Idle mode: hold the connection, notice a close or an alert. */
static void do_hold(conn_t *c)
{
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, c->t->rbuf, RBUF_SIZE, &n);
        if (r == 1)
            continue; /* unexpected data: ignore */
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            wait_for(c, EV_READ);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            wait_for(c, EV_WRITE);
            return;
        }
        char m[STATS_SAMPLE_LEN];
        err_text(c, e, m, sizeof(m));
        conn_fail(c, ERR_CLOSED, m);
        return;
    }
}

/* A keep-alive connection without a request became readable (open loop). */
static void do_idle_check(conn_t *c)
{
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, c->t->rbuf, RBUF_SIZE, &n);
        if (r == 1)
            continue;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            wait_for(c, EV_READ);
            return;
        }
        /* closed (or broken) while idle: reconnect with the next request */
        conn_close(c, e == SSL_ERROR_ZERO_RETURN);
        return;
    }
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *c = arg;
    c->io_added = 0; /* the events are not persistent */
    switch (c->state) {
    case C_CONNECTING: conn_connected(c); break;
    case C_HANDSHAKE: do_handshake(c); break;
    case C_WRITING: do_write(c); break;
    case C_READING: do_read(c); break;
    case C_HOLD: do_hold(c); break;
    case C_FREE:
        if (c->ssl)
            do_idle_check(c);
        break;
    }
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *c = arg;
    char m[96];
    snprintf(m, sizeof(m), "no %s within %.3f s",
             c->state == C_CONNECTING ? "connection"
             : c->state == C_HANDSHAKE ? "handshake"
             : "response",
             (double)c->t->sh->o->timeout_ns / 1e9);
    conn_fail(c, ERR_TIMEOUT, m);
}

/* Starts a request whose latency counts from start (its intended time). */
void conn_begin(conn_t *c, uint64_t start)
{
    bench_thread_t *t = c->t;
    if (c->io_added) { /* the idle watch of a kept-alive connection */
        event_del(&c->io);
        c->io_added = 0;
    }
    c->in_request = 1;
    c->start_ns = start;
    c->measured = thread_measuring(t, start);
    if (c->measured)
        t->issued++;
    struct timeval tv = bench_tv(t->sh->o->timeout_ns);
    event_add(&c->timer, &tv);
    if (t->sh->o->mode == MODE_FULL || t->sh->o->mode == MODE_RESUME)
        conn_close(c, 1); /* never reuse (should already be closed) */
    if (c->fd < 0)
        conn_connect(c);
    else
        begin_write(c);
}

/* May the thread start another (measured) request now? */
static int may_issue(bench_thread_t *t, uint64_t now)
{
    if (t->stopping || now >= t->sh->end_ns)
        return 0;
    if (t->quota && t->issued >= t->quota && now >= t->sh->measure_ns)
        return 0;
    return 1;
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *c = arg;
    bench_thread_t *t = c->t;
    uint64_t now = now_ns();
    if (t->sh->o->mode == MODE_IDLE) {
        if (!t->stopping && now < t->sh->end_ns) {
            c->in_request = 1;
            c->measured = 0;
            struct timeval tv = bench_tv(t->sh->o->timeout_ns);
            event_add(&c->timer, &tv);
            conn_connect(c);
        }
        return;
    }
    if (may_issue(t, now))
        conn_begin(c, now);
}

static void conn_start_next(conn_t *c, int deferred, uint64_t delay_ns)
{
    bench_thread_t *t = c->t;
    if (t->sh->o->mode == MODE_IDLE) {
        /* idle mode: a failed connection is retried while the run lasts */
        struct timeval tv = bench_tv(delay_ns ? delay_ns : 1000000ULL);
        evtimer_add(&c->kick, &tv);
        return;
    }
    if (deferred) {
        struct timeval tv = bench_tv(delay_ns);
        evtimer_add(&c->kick, &tv);
        return;
    }
    uint64_t now = now_ns();
    if (may_issue(t, now))
        conn_begin(c, now);
}

/* ---- setup and teardown ------------------------------------------------- */

void conn_tls_callbacks(SSL_CTX *ctx, int resume)
{
    SSL_CTX_set_info_callback(ctx, info_cb);
    if (resume)
        SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
}

void conn_init(conn_t *c, bench_thread_t *t, unsigned idx)
{
    memset(c, 0, sizeof(*c));
    c->t = t;
    c->idx = idx;
    c->fd = -1;
    c->state = C_FREE;
    evtimer_assign(&c->timer, t->base, conn_timeout_cb, c);
    evtimer_assign(&c->kick, t->base, kick_cb, c);
}

void conn_start(conn_t *c)
{
    conn_start_after(c, 0);
}

void conn_start_after(conn_t *c, uint64_t delay_ns)
{
    struct timeval tv = bench_tv(delay_ns);
    evtimer_add(&c->kick, &tv);
}

void conn_destroy(conn_t *c)
{
    event_del(&c->timer);
    event_del(&c->kick);
    conn_close(c, 0);
    if (c->sess)
        SSL_SESSION_free(c->sess);
    c->sess = NULL;
    free(c->rp);
    c->rp = NULL;
}
