/* upstream/proxy: server choice, keep-alive pools, one request/response exchange. */
#include "proxy.h"

#include "../base/metrics.h"

#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UPS_READ_CHUNK 16384
#define UPS_OUT_HIGH (256 * 1024)   /* stop reading the upstream above this client backlog */
#define UPS_REQ_LOW (64 * 1024)     /* tell the client to send more below this */

/* Endpoints: every configured server is one endpoint, except a server
 * given as a DNS name, which is PC_DNS_MAX_ADDRS of them, one per slot of
 * its current address set (base/dns.h): slot j is its j-th address, and
 * slots past the set's size are skipped. Round robin, health (fail_timeout)
 * and the keep-alive pools are per endpoint, so every address of a name is
 * a server of its own. When a worker sees a name's set change it resets the
 * health of the name's endpoints and closes its pooled connections to them
 * (a slot may now be another address). */
struct ups_health {
    int64_t **down_until_ms;   /* [upstream][endpoint], monotonic ms; atomic */
    size_t **ep_server;        /* [upstream][endpoint]: index into servers */
    size_t **ep_slot;          /* [upstream][endpoint]: slot in a name's set; 0 for a literal */
    size_t **ep_first;         /* [upstream][server]: its first endpoint */
    size_t *nep;               /* [upstream]: endpoints */
    int *named;                /* [upstream]: 1 if a server is given by name */
    size_t n;
};

/* One upstream connection. Its read event stays registered for its whole
 * life, in use or idle, so moving between the pool and an exchange costs
 * no epoll_ctl; the write event is added only when a write would block. */
typedef struct ups_conn {
    int fd;
    size_t up, srv;
    uint64_t dns_version;       /* a name's endpoint: the set its address came from */
    struct event *rev, *wev;
    struct event *idle_timer;   /* keep-alive timeout while pooled */
    struct ups_pool *pool;
    struct ups_exchange *x;     /* the exchange using it; NULL while pooled */
    struct ups_conn *next, *prev;
} ups_conn_t;

struct ups_pool {
    struct event_base *base;
    const cfg_t *cfg;
    ups_health_t *health;
    uint32_t max_head;
    size_t *rr;            /* per upstream: round-robin cursor over its endpoints */
    ups_conn_t **idle;     /* per upstream*endpoint: list head */
    uint32_t *nidle;
    size_t *idx_base;      /* per upstream: first index into idle/nidle */
    pc_dns_addrs_t **dns;  /* per upstream*server: this worker's view of a name's set */
    size_t *srv_base;      /* per upstream: first index into dns */
};

enum xstate { X_CONNECTING, X_ACTIVE, X_DONE, X_FAILED };

struct ups_exchange {
    ups_pool_t *pool;
    const ups_ops_t *ops;
    void *c;
    size_t up, srv;
    ups_conn_t *uc;        /* NULL until connected or taken from the pool */
    int fd;
    enum xstate state;
    int reused;            /* the connection came from the pool */
    int retryable;         /* no body: may be re-sent on a fresh connection once */
    int head_request;
    int request_done;
    int got_bytes;         /* any response byte seen */
    int head_seen;         /* final (non-1xx) response head delivered */
    int complete;          /* response complete */
    int read_paused;
    int want_drained;
    int eof_framing;       /* response ends at EOF: never reusable */
    struct evbuffer *out;
    struct evbuffer *head_copy;   /* for the one retry */
    struct event *rev, *wev, *timer;
    llhttp_t parser;
    ups_hdrs_t hdrs;
    /* for the metrics: what happened, read when it fails (fail_kind) */
    int connected;         /* the current connection is up (activate) */
    int timed_out;         /* the failure is the exchange's timer */
    int bad_response;      /* the response did not parse */
    int sock_err;          /* errno of a failed connect */
    struct timespec sent;  /* CLOCK_MONOTONIC when the exchange became active */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* ---- health ---- */

ups_health_t *ups_health_new(const cfg_t *cfg)
{
    ups_health_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->n = cfg->nupstreams;
    h->down_until_ms = calloc(h->n, sizeof(*h->down_until_ms));
    h->ep_server = calloc(h->n, sizeof(*h->ep_server));
    h->ep_slot = calloc(h->n, sizeof(*h->ep_slot));
    h->ep_first = calloc(h->n, sizeof(*h->ep_first));
    h->nep = calloc(h->n, sizeof(*h->nep));
    h->named = calloc(h->n, sizeof(*h->named));
    if (!h->down_until_ms || !h->ep_server || !h->ep_slot || !h->ep_first || !h->nep ||
        !h->named) {
        ups_health_free(h);
        return NULL;
    }
    for (size_t i = 0; i < h->n; i++) {
        const cfg_upstream_t *u = &cfg->upstreams[i];
        size_t n = cfg_upstream_endpoints(u);
        for (size_t k = 0; k < u->nservers; k++)
            h->named[i] |= u->servers[k].dns != NULL;
        h->nep[i] = n;
        h->down_until_ms[i] = calloc(n, sizeof(int64_t));
        h->ep_server[i] = calloc(n, sizeof(size_t));
        h->ep_slot[i] = calloc(n, sizeof(size_t));
        h->ep_first[i] = calloc(u->nservers, sizeof(size_t));
        if (!h->down_until_ms[i] || !h->ep_server[i] || !h->ep_slot[i] || !h->ep_first[i]) {
            ups_health_free(h);
            return NULL;
        }
        size_t e = 0;
        for (size_t k = 0; k < u->nservers; k++) {
            h->ep_first[i][k] = e;
            for (size_t j = 0; j < cfg_addr_endpoints(&u->servers[k]); j++, e++) {
                h->ep_server[i][e] = k;
                h->ep_slot[i][e] = j;
            }
        }
    }
    return h;
}

void ups_health_free(ups_health_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        if (h->down_until_ms)
            free(h->down_until_ms[i]);
        if (h->ep_server)
            free(h->ep_server[i]);
        if (h->ep_slot)
            free(h->ep_slot[i]);
        if (h->ep_first)
            free(h->ep_first[i]);
    }
    free(h->down_until_ms);
    free(h->ep_server);
    free(h->ep_slot);
    free(h->ep_first);
    free(h->nep);
    free(h->named);
    free(h);
}

size_t ups_health_skipped(ups_health_t *h, const cfg_t *cfg, size_t up)
{
    if (!h || up >= h->n || up >= cfg->nupstreams)
        return 0;
    int64_t now = now_ms();
    size_t n = 0;
    for (size_t e = 0; e < h->nep[up]; e++)
        n += __atomic_load_n(&h->down_until_ms[up][e], __ATOMIC_RELAXED) > now;
    return n;
}

static const cfg_addr_t *ep_cfg(const ups_pool_t *p, size_t up, size_t e)
{
    return &p->cfg->upstreams[up].servers[p->health->ep_server[up][e]];
}

static void mark_failed(ups_pool_t *p, size_t up, size_t e)
{
    int64_t until = now_ms() + (int64_t)p->cfg->upstreams[up].fail_timeout_ms;
    __atomic_store_n(&p->health->down_until_ms[up][e], until, __ATOMIC_RELAXED);
    pc_dns_connect_failed(ep_cfg(p, up, e)->dns);   /* a name: resolve it again soon */
}

/* The address of endpoint e of upstream up, or 0 when it has none now (a
 * slot past its name's current set). */
static int ep_addr(const ups_pool_t *p, size_t up, size_t e, pc_dns_sa_t *out)
{
    const cfg_addr_t *a = ep_cfg(p, up, e);
    if (!a->dns) {
        memcpy(&out->sa, &a->addr, sizeof out->sa);
        out->len = a->addrlen;
        return 1;
    }
    const pc_dns_addrs_t *set = p->dns[p->srv_base[up] + p->health->ep_server[up][e]];
    size_t j = p->health->ep_slot[up][e];
    if (!set || j >= set->n)
        return 0;
    *out = set->a[j];
    return 1;
}

static void idle_close(struct ups_conn *uc);

/* The version of the set endpoint e's address comes from in this worker's
 * view (0 for an address given as such). */
static uint64_t ep_version(const ups_pool_t *p, size_t up, size_t e)
{
    if (!ep_cfg(p, up, e)->dns)
        return 0;
    const pc_dns_addrs_t *set = p->dns[p->srv_base[up] + p->health->ep_server[up][e]];
    return set ? set->version : 0;
}

/* This worker's view of every name of upstream up becomes current (one
 * atomic load per name while nothing changed); a name whose set changed
 * gets its endpoints' health reset and its pooled connections closed. */
static void refresh_names(ups_pool_t *p, size_t up)
{
    const cfg_upstream_t *u = &p->cfg->upstreams[up];
    for (size_t k = 0; p->health->named[up] && k < u->nservers; k++) {
        if (!u->servers[k].dns ||
            !pc_dns_current(u->servers[k].dns, &p->dns[p->srv_base[up] + k]))
            continue;
        size_t first = p->health->ep_first[up][k];
        for (size_t e = first; e < first + PC_DNS_MAX_ADDRS; e++) {
            __atomic_store_n(&p->health->down_until_ms[up][e], 0, __ATOMIC_RELAXED);
            while (p->idle[p->idx_base[up] + e])
                idle_close(p->idle[p->idx_base[up] + e]);
        }
    }
}

/* Round robin over endpoints with an address and not marked failed; if all
 * are marked, the one whose mark ends first (a dead upstream is retried
 * rather than never). */
static size_t pick_server(ups_pool_t *p, size_t up)
{
    size_t nep = p->health->nep[up];
    int64_t now = now_ms(), best_until = INT64_MAX;
    size_t best = 0;
    pc_dns_sa_t sa;
    refresh_names(p, up);
    for (size_t k = 0; k < nep; k++) {
        size_t s = (p->rr[up] + k) % nep;
        if (!ep_addr(p, up, s, &sa))
            continue;
        int64_t until = __atomic_load_n(&p->health->down_until_ms[up][s], __ATOMIC_RELAXED);
        if (until <= now) {
            p->rr[up] = s + 1;
            return s;
        }
        if (until < best_until) {
            best_until = until;
            best = s;
        }
    }
    p->rr[up] = best + 1;
    return best;
}

/* ---- pool ---- */

ups_pool_t *ups_pool_new(struct event_base *base, const cfg_t *cfg, ups_health_t *health,
                         uint32_t max_head)
{
    ups_pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base = base;
    p->cfg = cfg;
    p->health = health;
    p->max_head = max_head;
    p->rr = calloc(cfg->nupstreams, sizeof(*p->rr));
    p->idx_base = calloc(cfg->nupstreams, sizeof(*p->idx_base));
    p->srv_base = calloc(cfg->nupstreams, sizeof(*p->srv_base));
    size_t total = 0, nsrv = 0;
    for (size_t i = 0; i < cfg->nupstreams && p->idx_base && p->srv_base; i++) {
        p->idx_base[i] = total;
        p->srv_base[i] = nsrv;
        total += health->nep[i];
        nsrv += cfg->upstreams[i].nservers;
    }
    p->idle = calloc(total, sizeof(*p->idle));
    p->nidle = calloc(total, sizeof(*p->nidle));
    p->dns = calloc(nsrv, sizeof(*p->dns));
    if (!p->rr || !p->idx_base || !p->srv_base || !p->idle || !p->nidle || (nsrv && !p->dns)) {
        ups_pool_free(p);
        return NULL;
    }
    return p;
}

static void idle_unlink(ups_conn_t *uc)
{
    ups_pool_t *p = uc->pool;
    size_t k = p->idx_base[uc->up] + uc->srv;
    if (uc->prev)
        uc->prev->next = uc->next;
    else
        p->idle[k] = uc->next;
    if (uc->next)
        uc->next->prev = uc->prev;
    uc->next = uc->prev = NULL;
    p->nidle[k]--;
}

static void uc_close(ups_conn_t *uc)
{
    event_free(uc->rev);
    event_free(uc->wev);
    event_free(uc->idle_timer);
    close(uc->fd);
    free(uc);
}

static void idle_close(ups_conn_t *uc)
{
    idle_unlink(uc);
    uc_close(uc);
}

static void x_read(evutil_socket_t fd, short what, void *arg);
static void x_write(evutil_socket_t fd, short what, void *arg);

/* The read event of a connection: its exchange's, or, while pooled, EOF or
 * stray bytes that end it. */
static void uc_readable(evutil_socket_t fd, short what, void *arg)
{
    ups_conn_t *uc = arg;
    if (uc->x)
        x_read(fd, what, uc->x);
    else
        idle_close(uc);
}

static void uc_writable(evutil_socket_t fd, short what, void *arg)
{
    ups_conn_t *uc = arg;
    if (uc->x)
        x_write(fd, what, uc->x);
    else
        event_del(uc->wev);
}

static void idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    idle_close(arg);
}

void ups_pool_free(ups_pool_t *p)
{
    if (!p)
        return;
    size_t total = 0, nsrv = 0;
    for (size_t i = 0; i < p->cfg->nupstreams; i++) {
        total += p->health->nep[i];
        nsrv += p->cfg->upstreams[i].nservers;
    }
    for (size_t k = 0; p->idle && k < total; k++)
        while (p->idle[k])
            idle_close(p->idle[k]);
    for (size_t k = 0; p->dns && k < nsrv; k++)
        pc_dns_addrs_release(p->dns[k]);
    free(p->dns);
    free(p->srv_base);
    free(p->rr);
    free(p->idx_base);
    free(p->idle);
    free(p->nidle);
    free(p);
}

/* A pooled connection to (up, srv), most recently used first, or NULL.
 * A server's close while pooled was seen by its read event; one arriving
 * just now is caught by the exchange's retry. */
static ups_conn_t *pool_take(ups_pool_t *p, size_t up, size_t srv)
{
    size_t k = p->idx_base[up] + srv;
    ups_conn_t *uc = p->idle[k];
    if (!uc)
        return NULL;
    idle_unlink(uc);
    event_del(uc->idle_timer);
    return uc;
}

static void pool_put(ups_conn_t *uc)
{
    ups_pool_t *p = uc->pool;
    const cfg_upstream_t *u = &p->cfg->upstreams[uc->up];
    size_t k = p->idx_base[uc->up] + uc->srv;
    uc->x = NULL;
    /* a connection to an address its name no longer has is not kept */
    if (p->nidle[k] >= u->keepalive || uc->dns_version != ep_version(p, uc->up, uc->srv)) {
        uc_close(uc);
        return;
    }
    event_del(uc->wev);
    event_add(uc->rev, NULL);   /* a no-op unless reading had been paused */
    uc->next = p->idle[k];
    if (uc->next)
        uc->next->prev = uc;
    p->idle[k] = uc;
    p->nidle[k]++;
    struct timeval tv = tv_ms(u->keepalive_timeout_ms);
    event_add(uc->idle_timer, &tv);
}

/* ---- exchange ---- */

static void x_timeout(evutil_socket_t fd, short what, void *arg);

static int on_status(llhttp_t *hp, const char *at, size_t n)
{
    ups_exchange_t *x = hp->data;
    return ups_hdrs_first(&x->hdrs, at, n) < 0 ? -1 : 0;
}

static int on_hfield(llhttp_t *hp, const char *at, size_t n)
{
    ups_exchange_t *x = hp->data;
    return ups_hdrs_field(&x->hdrs, at, n) < 0 ? -1 : 0;
}

static int on_hvalue(llhttp_t *hp, const char *at, size_t n)
{
    ups_exchange_t *x = hp->data;
    return ups_hdrs_value(&x->hdrs, at, n) < 0 ? -1 : 0;
}

/* UPS_TIME: request sent -> final response head. CLOCK_MONOTONIC is a vDSO
 * read (the loop's cached time would take the event base's lock). */
static void observe_head(const ups_exchange_t *x)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - x->sent.tv_sec) * 1000000 +
                 (now.tv_nsec - x->sent.tv_nsec) / 1000;
    pc_observe1(UPS_TIME, x->pool->cfg->upstreams[x->up].mx, us > 0 ? (uint64_t)us : 0);
}

static int on_headers_complete(llhttp_t *hp)
{
    ups_exchange_t *x = hp->data;
    int status = hp->status_code;
    if (ups_hdrs_empty_name(&x->hdrs) >= 0)
        return -1;   /* ": value" is relayed to no client: 502, as any invalid head */
    if (status < 200) {
        if (status == 101)
            return -1;   /* no protocol upgrades through the gateway */
        return 0;        /* interim response: dropped, the final one follows */
    }
    ups_hdrs_finish(&x->hdrs);
    int framing;
    uint64_t clen = 0;
    if (x->head_request || status == 204 || status == 304)
        framing = UPS_FRAME_NONE;
    else if (hp->flags & F_CHUNKED)
        framing = UPS_FRAME_CHUNKED;
    else if (hp->flags & F_CONTENT_LENGTH) {
        framing = UPS_FRAME_LENGTH;
        clen = hp->content_length;
    } else {
        framing = UPS_FRAME_EOF;
        x->eof_framing = 1;
    }
    x->head_seen = 1;
    observe_head(x);
    event_del(x->timer);   /* the response timeout now guards gaps between reads */
    x->ops->head(x->c, status, &x->hdrs, framing, clen);
    return framing == UPS_FRAME_NONE ? 1 : 0;
}

static int on_body(llhttp_t *hp, const char *at, size_t n)
{
    ups_exchange_t *x = hp->data;
    x->ops->body(x->c, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *hp)
{
    ups_exchange_t *x = hp->data;
    if (!x->head_seen) {   /* an interim response ended */
        ups_hdrs_reset(&x->hdrs);
        return 0;
    }
    x->complete = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_status = on_status,
    .on_header_field = on_hfield,
    .on_header_value = on_hvalue,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void arm_timer(ups_exchange_t *x, uint64_t ms)
{
    struct timeval tv = tv_ms(ms);
    event_add(x->timer, &tv);
}

static void close_fd(ups_exchange_t *x)
{
    if (!x->uc)
        return;
    uc_close(x->uc);
    x->uc = NULL;
    x->rev = x->wev = NULL;
    x->fd = -1;
}

static void use_conn(ups_exchange_t *x, ups_conn_t *uc)
{
    uc->x = x;
    x->uc = uc;
    x->fd = uc->fd;
    x->rev = uc->rev;
    x->wev = uc->wev;
}

/* A new connection object for fd (which it owns from now on). */
static int attach_fd(ups_exchange_t *x, int fd)
{
    ups_conn_t *uc = calloc(1, sizeof(*uc));
    if (!uc) {
        close(fd);
        return -1;
    }
    uc->fd = fd;
    uc->up = x->up;
    uc->srv = x->srv;
    uc->dns_version = ep_version(x->pool, x->up, x->srv);
    uc->pool = x->pool;
    uc->rev = event_new(x->pool->base, fd, EV_READ | EV_PERSIST, uc_readable, uc);
    uc->wev = event_new(x->pool->base, fd, EV_WRITE | EV_PERSIST, uc_writable, uc);
    uc->idle_timer = evtimer_new(x->pool->base, idle_timeout, uc);
    if (!uc->rev || !uc->wev || !uc->idle_timer) {
        if (uc->rev)
            event_free(uc->rev);
        if (uc->wev)
            event_free(uc->wev);
        if (uc->idle_timer)
            event_free(uc->idle_timer);
        close(fd);
        free(uc);
        return -1;
    }
    use_conn(x, uc);
    return 0;
}

/* Opens a new connection; 0 if under way, -1 on immediate failure. */
static int connect_server(ups_exchange_t *x)
{
    pc_dns_sa_t a;
    x->connected = 0;
    if (!ep_addr(x->pool, x->up, x->srv, &a)) {
        x->sock_err = EADDRNOTAVAIL;
        return -1;
    }
    int fd = socket(a.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        x->sock_err = errno;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&a.sa, a.len) < 0 && errno != EINPROGRESS) {
        x->sock_err = errno;
        close(fd);
        return -1;
    }
    if (attach_fd(x, fd) < 0)
        return -1;
    event_add(x->rev, NULL);   /* registered once, for the connection's life */
    x->state = X_CONNECTING;
    x->reused = 0;
    event_add(x->wev, NULL);
    arm_timer(x, x->pool->cfg->upstreams[x->up].connect_timeout_ms);
    return 0;
}

static void flush_request(ups_exchange_t *x);
static int write_some(ups_exchange_t *x);

/* flush: write now (the socket is almost always writable, so no EPOLLOUT
 * round); the gateway instead calls ups_exchange_flush once it has parsed
 * all it received, so a request it then refuses is never sent. */
static void activate(ups_exchange_t *x, int flush)
{
    x->state = X_ACTIVE;
    x->connected = 1;
    clock_gettime(CLOCK_MONOTONIC, &x->sent);
    pc_count2(UPS_CONNS, x->pool->cfg->upstreams[x->up].mx, x->reused ? PC_UPC_REUSED : PC_UPC_NEW);
    arm_timer(x, x->pool->cfg->upstreams[x->up].response_timeout_ms);
    if (flush)
        flush_request(x);
}

/* What a failing exchange counts as (UPS_FAILURES), before its
 * connection is closed: connecting (not yet connected) it timed out, was
 * refused, was reset as it completed, or failed otherwise (unreachable, no
 * socket); connected, it timed out waiting, got a response that did not
 * parse, or the connection broke (reset, closed, cut short). */
static unsigned fail_kind(const ups_exchange_t *x)
{
    if (!x->connected) {
        if (x->timed_out && x->fd >= 0)
            return PC_UPF_CONNECT_TIMEOUT;
        if (x->sock_err == ECONNRESET)
            return PC_UPF_RESET;
        return x->sock_err == ECONNREFUSED ? PC_UPF_CONNECT_REFUSED : PC_UPF_CONNECT_ERROR;
    }
    if (x->timed_out)
        return PC_UPF_RESPONSE_TIMEOUT;
    return x->bad_response ? PC_UPF_BAD_RESPONSE : PC_UPF_RESET;
}

/* Ends the exchange with catalog entry e (msg: what happened, for the log
 * and the client). */
static void fail(ups_exchange_t *x, enum pc_err e, const char *msg)
{
    x->state = X_FAILED;
    event_del(x->timer);
    pc_count2(UPS_FAILURES, x->pool->cfg->upstreams[x->up].mx, fail_kind(x));
    close_fd(x);
    x->ops->fail(x->c, e, msg);   /* last: may free x */
}

/* A reused keep-alive connection died before answering: the server closed
 * it as we picked it. Re-send on a fresh connection if nothing else can
 * have happened; else report. */
static void broken(ups_exchange_t *x, const char *msg)
{
    if (x->reused && x->retryable && !x->got_bytes && x->head_copy) {
        close_fd(x);
        evbuffer_drain(x->out, evbuffer_get_length(x->out));
        evbuffer_add_buffer(x->out, x->head_copy);
        evbuffer_free(x->head_copy);
        x->head_copy = NULL;
        if (connect_server(x) == 0)
            return;
    }
    if (!x->got_bytes)
        mark_failed(x->pool, x->up, x->srv);
    fail(x, PC_E_BAD_GATEWAY, msg);
}

static void x_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ups_exchange_t *x = arg;
    x->timed_out = 1;
    if (x->state == X_CONNECTING && x->fd < 0) {
        fail(x, PC_E_UPSTREAM_UNAVAILABLE, "the upstream could not be reached");
    } else if (x->state == X_CONNECTING) {
        mark_failed(x->pool, x->up, x->srv);
        fail(x, PC_E_UPSTREAM_CONNECT_TIMEOUT, "the upstream did not accept the connection in time");
    } else {
        fail(x, PC_E_UPSTREAM_TIMEOUT, "the upstream did not respond in time");
    }
}

/* Writes what can be written now; the write event is registered only while
 * the socket is full. Syscall-like: 0, or -1 when the connection failed
 * (the caller decides, in event context, what that means). */
static int write_some(ups_exchange_t *x)
{
    while (evbuffer_get_length(x->out)) {
        int n = evbuffer_write(x->out, x->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(x->wev, NULL);
                return 0;
            }
            return -1;
        }
        if (n == 0)
            break;
    }
    if (evbuffer_get_length(x->out) == 0)
        event_del(x->wev);
    if (x->want_drained && evbuffer_get_length(x->out) < UPS_REQ_LOW) {
        x->want_drained = 0;
        x->ops->drained(x->c);   /* only schedules: never frees x */
    }
    return 0;
}

/* Outside the exchange's own events (from the gateway's request parsing) a
 * failure is never reported synchronously: the write event reports it. */
static void flush_request(ups_exchange_t *x)
{
    if (x->state == X_ACTIVE && write_some(x) < 0)
        event_active(x->wev, EV_WRITE, 0);
}

static void x_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    ups_exchange_t *x = arg;
    if (x->state == X_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            x->sock_err = err ? err : errno;
            mark_failed(x->pool, x->up, x->srv);
            fail(x, PC_E_UPSTREAM_UNAVAILABLE, err == ECONNREFUSED ? "the upstream refused the connection"
                                                                    : "the upstream could not be reached");
            return;
        }
        activate(x, 1);
        return;
    }
    if (write_some(x) < 0) {
        if (x->head_seen || x->got_bytes)   /* it answered early; read the answer */
            event_del(x->wev);
        else
            broken(x, "the upstream closed the connection");   /* may free x */
    }
}

static void x_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    ups_exchange_t *x = arg;
    char buf[UPS_READ_CHUNK];
    for (int rounds = 0; rounds < 4; rounds++) {
        if (x->ops->backlog(x->c) > UPS_OUT_HIGH) {
            /* the client is slow, not the upstream: its send timeout rules */
            x->read_paused = 1;
            event_del(x->rev);
            event_del(x->timer);
            return;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            if (n == 0 && x->head_seen) {
                llhttp_errno_t fe = llhttp_finish(&x->parser);
                if ((fe == HPE_OK || fe == HPE_PAUSED) && x->complete)
                    break;   /* a response delimited by EOF has ended */
            }
            if (!x->head_seen)
                broken(x, n == 0 ? "the upstream closed the connection without a response"
                                 : "the upstream connection failed");
            else
                fail(x, PC_E_BAD_GATEWAY, "the upstream response was cut short");
            return;
        }
        x->got_bytes = 1;
        if (x->head_seen)
            arm_timer(x, x->pool->cfg->upstreams[x->up].response_timeout_ms);
        llhttp_errno_t e = llhttp_execute(&x->parser, buf, (size_t)n);
        if (e == HPE_PAUSED) {
            /* complete; any byte after the response means the connection is not clean */
            const char *pos = llhttp_get_error_pos(&x->parser);
            if (pos && pos < buf + n)
                x->eof_framing = 1;
            break;
        }
        if (e != HPE_OK) {
            x->bad_response = 1;
            if (!x->head_seen)
                mark_failed(x->pool, x->up, x->srv);
            fail(x, PC_E_BAD_GATEWAY,
                 x->hdrs.err ? "the upstream response head is too large" : "the upstream sent an invalid response");
            return;
        }
    }
    if (x->complete) {
        x->state = X_DONE;
        event_del(x->timer);
        x->ops->done(x->c);   /* last: may free x */
    }
}

ups_exchange_t *ups_exchange_start(ups_pool_t *p, size_t up, struct evbuffer *head, int has_body,
                                   int head_request, const ups_ops_t *ops, void *c)
{
    ups_exchange_t *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->pool = p;
    x->ops = ops;
    x->c = c;
    x->up = up;
    x->fd = -1;
    x->head_request = head_request;
    x->retryable = !has_body;
    x->out = evbuffer_new();
    x->timer = evtimer_new(p->base, x_timeout, x);
    if (!x->out || !x->timer || ups_hdrs_init(&x->hdrs, p->max_head, 256) < 0)
        goto fail;
    llhttp_init(&x->parser, HTTP_RESPONSE, &resp_settings);
    x->parser.data = x;
    if (x->retryable) {
        x->head_copy = evbuffer_new();
        if (!x->head_copy)
            goto fail;
        size_t hl = evbuffer_get_length(head);
        if (evbuffer_add(x->head_copy, evbuffer_pullup(head, (ssize_t)hl), hl) < 0)
            goto fail;
    }
    evbuffer_add_buffer(x->out, head);

    x->srv = pick_server(p, up);
    ups_conn_t *uc = pool_take(p, up, x->srv);
    if (uc) {
        use_conn(x, uc);
        x->reused = 1;
        activate(x, 0);
        return x;
    }
    if (connect_server(x) < 0) {
        /* refused at once: report through the loop so the caller sees one path */
        mark_failed(p, up, x->srv);
        x->state = X_CONNECTING;
        struct timeval zero = {0, 0};
        event_add(x->timer, &zero);
    }
    return x;
fail:
    ups_exchange_free(x);
    return NULL;
}

void ups_exchange_send(ups_exchange_t *x, const void *data, size_t n)
{
    evbuffer_add(x->out, data, n);
    if (evbuffer_get_length(x->out) >= UPS_REQ_LOW)
        x->want_drained = 1;
}

void ups_exchange_flush(ups_exchange_t *x)
{
    flush_request(x);
}

size_t ups_exchange_backlog(const ups_exchange_t *x)
{
    return evbuffer_get_length(x->out);
}

void ups_exchange_resume(ups_exchange_t *x)
{
    if (x->read_paused && x->fd >= 0 && x->state == X_ACTIVE) {
        x->read_paused = 0;
        event_add(x->rev, NULL);
        arm_timer(x, x->pool->cfg->upstreams[x->up].response_timeout_ms);
        event_active(x->rev, EV_READ, 0);
    }
}

void ups_exchange_request_done(ups_exchange_t *x)
{
    x->request_done = 1;
}

void ups_exchange_free(ups_exchange_t *x)
{
    if (!x)
        return;
    /* not after HEAD: a server that wrongly sends a body would desynchronise
     * the next exchange on the connection */
    int reusable = x->state == X_DONE && x->complete && x->request_done && !x->eof_framing &&
                   !x->head_request &&
                   evbuffer_get_length(x->out) == 0 && llhttp_should_keep_alive(&x->parser) &&
                   x->fd >= 0;
    if (reusable) {
        pool_put(x->uc);
        x->uc = NULL;
        x->fd = -1;
    } else {
        close_fd(x);
    }
    if (x->timer)
        event_free(x->timer);
    if (x->out)
        evbuffer_free(x->out);
    if (x->head_copy)
        evbuffer_free(x->head_copy);
    ups_hdrs_free(&x->hdrs);
    free(x);
}

const char *ups_exchange_server(const ups_exchange_t *x)
{
    return ep_cfg(x->pool, x->up, x->srv)->text;
}
