/* gateway/worker: listening sockets and the per-worker event loop. */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "listeners.h"
#include "log.h"

int gw_listen_socket(const cfg_addr_t *a, char *err, size_t errlen)
{
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket for %s: %s", a->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* one socket per worker: the kernel spreads new connections over them */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* TLS clients speak first: wake us when the ClientHello is there */
    int defer = 5;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0 || listen(fd, 1024) < 0) {
        snprintf(err, errlen, "listen on %s: %s", a->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    gw_worker_t *w = arg;
    const cfg_t *cfg = w->rt->cfg;
    for (int i = 0; i < 64 && !w->draining; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            gw_log(GW_ERR, NULL, "accept: %s", strerror(errno));
            return;   /* EMFILE and friends: the next event retries */
        }
        if (w->rt->connlimit) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int r = pol_connlimit_acquire(w->rt->connlimit, &peer, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
            if (r < 0) {
                /* before any TLS work: a flood from one address costs an accept and a close */
                gw_log(GW_DEBUG, NULL, "connection refused by connection_limits (%s)",
                       r == -1 ? "per_ip_rate" : "per_ip_concurrent");
                close(fd);
                continue;
            }
        }
        uint32_t n = __atomic_add_fetch(&w->rt->nconns, 1, __ATOMIC_RELAXED);
        if (n > cfg->limits.max_connections) {
            __atomic_sub_fetch(&w->rt->nconns, 1, __ATOMIC_RELAXED);
            if (w->rt->connlimit)
                pol_connlimit_release(w->rt->connlimit, &peer);
            gw_log(GW_WARN, NULL, "max_connections (%u) reached; connection refused",
                   cfg->limits.max_connections);
            close(fd);
            continue;
        }
        __atomic_add_fetch(&w->rt->accepted, 1, __ATOMIC_RELAXED);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        gw_conn_new(w, fd, &peer);
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    if (w->draining)
        return;
    w->draining = 1;
    for (size_t i = 0; i < w->nlfds; i++) {
        event_del(w->lev[i]);
        close(w->lfds[i]);
        w->lfds[i] = -1;
    }
    struct timeval tv = {(time_t)(w->rt->cfg->timeouts.drain_ms / 1000),
                         (suseconds_t)((w->rt->cfg->timeouts.drain_ms % 1000) * 1000)};
    event_add(w->drain_timer, &tv);
    uint64_t idle = w->rt->cfg->timeouts.drain_idle_ms;   /* within the drain */
    if (idle > w->rt->cfg->timeouts.drain_ms)
        idle = w->rt->cfg->timeouts.drain_ms;
    struct timeval itv = {(time_t)(idle / 1000), (suseconds_t)((idle % 1000) * 1000)};
    if (idle)
        event_add(w->drain_idle_timer, &itv);
    gw_conn_drain_all(w);
}

static void on_revocation(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_revocation_scan(arg);
}

/* The expiry timer never waits longer than this, so a wall clock that was
 * set forward is noticed within it (libevent timers follow the monotonic
 * clock, notAfter the wall clock). */
#define EXPIRY_RECHECK_MS 60000

static void arm_expiry(gw_worker_t *w, time_t at)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ms = ((int64_t)at - now.tv_sec) * 1000 - now.tv_nsec / 1000000;
    if (ms < 0)
        ms = 0;
    if (ms > EXPIRY_RECHECK_MS)
        ms = EXPIRY_RECHECK_MS;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    w->expiry_at = at;
    event_add(w->expiry_ev, &tv);
}

void gw_worker_watch_expiry(gw_worker_t *w, time_t not_after)
{
    if (!w->expiry_at || not_after < w->expiry_at)
        arm_expiry(w, not_after);
}

static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    w->expiry_at = 0;
    time_t next = gw_conn_expiry_scan(w, time(NULL));
    if (next)
        arm_expiry(w, next);
}

static void on_drain_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_drain_idle(arg);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    gw_log(GW_WARN, NULL, "worker %d: drain timeout; closing %zu connections", w->id, w->nconns);
    event_base_loopbreak(w->base);
}

int gw_worker_init(gw_worker_t *w, int id, gw_runtime_t *rt, struct gw_lset *ls, char *err,
                   size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->rt = rt;
    const cfg_t *cfg = rt->cfg;
    w->base = event_base_new();
    if (!w->base)
        goto oom;
    if (gw_lset_worker_fds(ls, id, cfg->workers, &w->lfds, &w->nlfds, err, errlen) < 0)
        return -1;
    w->lev = calloc(w->nlfds ? w->nlfds : 1, sizeof(*w->lev));
    if (!w->lev)
        goto oom;
    for (size_t i = 0; i < w->nlfds; i++) {
        w->lev[i] = event_new(w->base, w->lfds[i], EV_READ | EV_PERSIST, on_accept, w);
        if (!w->lev[i] || event_add(w->lev[i], NULL) < 0) {
            snprintf(err, errlen, "event setup failed");
            return -1;
        }
    }
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
    w->drain_idle_timer = evtimer_new(w->base, on_drain_idle, w);
    w->rev_ev = event_new(w->base, -1, 0, on_revocation, w);
    w->expiry_ev = evtimer_new(w->base, on_expiry, w);
    w->pool = ups_pool_new(w->base, cfg, rt->health, cfg->limits.max_header_bytes * 4);
    int need_redis = cfg->issuance != NULL;   /* nonces and issuance records */
    for (size_t i = 0; i < cfg->nrate_limits; i++)
        need_redis |= cfg->rate_limits[i].scope == CFG_RL_GLOBAL;
    if (need_redis && !(w->redis = pol_redis_new(w->base, &cfg->redis))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!w->stop_ev || !w->drain_timer || !w->drain_idle_timer || !w->rev_ev || !w->expiry_ev || !w->pool)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void *worker_main(void *arg)
{
    gw_worker_t *w = arg;
    event_base_dispatch(w->base);
    gw_conn_close_all(w);
    return NULL;
}

int gw_worker_start(gw_worker_t *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w);
}

void gw_worker_stop(gw_worker_t *w)
{
    event_active(w->stop_ev, 0, 0);
}

void gw_worker_notify_revocation(gw_worker_t *w)
{
    event_active(w->rev_ev, 0, 0);
}

void gw_worker_join(gw_worker_t *w)
{
    pthread_join(w->thread, NULL);
}

void gw_worker_free(gw_worker_t *w)
{
    for (size_t i = 0; i < w->nlfds; i++) {
        if (w->lev && w->lev[i])
            event_free(w->lev[i]);
        if (w->lfds[i] >= 0)
            close(w->lfds[i]);
    }
    free(w->lev);
    free(w->lfds);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->drain_idle_timer)
        event_free(w->drain_idle_timer);
    if (w->rev_ev)
        event_free(w->rev_ev);
    if (w->expiry_ev)
        event_free(w->expiry_ev);
    pol_redis_free(w->redis);
    ups_pool_free(w->pool);
    if (w->base)
        event_base_free(w->base);
}
