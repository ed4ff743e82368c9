/* gateway/worker: listening sockets and the per-worker event loop. */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/metrics.h"
#include "service.h"

struct gw_wgen {
    gw_worker_t *w;
    gw_gen_t *gen;          /* one reference, held until this is freed */
    ups_pool_t *pool;       /* upstream connections of this generation's upstreams */
    size_t nconns;
    struct event *grace;    /* an old generation: its connections retire (then every tick) */
    int retiring;
    gw_wgen_t *next;        /* in w->old */
};

struct gw_wlisten {
    gw_listener_t *l;
    int slot;                /* which of l's sockets (gw_listener_fd) */
    struct event *ev;
};

gw_gen_t *gw_wgen_gen(const gw_wgen_t *wg) { return wg->gen; }
ups_pool_t *gw_wgen_pool(const gw_wgen_t *wg) { return wg->pool; }

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The configuration (in gen) of the listener whose socket lfd is: its PROXY
 * protocol options are the current generation's, so a reload that changes
 * them applies to the connections accepted after it. */
static const cfg_listener_t *listener_cfg(const gw_gen_t *gen, int lfd)
{
    for (size_t i = 0; i < gen->cfg->nlisteners; i++)
        for (int j = 0; j < gw_listener_slots(gen->listeners[i]); j++)
            if (gw_listener_fd(gen->listeners[i], j) == lfd)
                return &gen->cfg->listeners[i];
    return NULL;
}

/* A PROXY protocol listener takes connections from its trusted_from peers
 * only: anyone else could claim any client address. 1: refused (closed,
 * counted). Logged at WARN at most once a minute (a balancer
 * missing from trusted_from is a misconfiguration to see), else at DEBUG:
 * a scan must not flood the log. */
static int untrusted_peer(const cfg_listener_t *lc, const struct sockaddr_storage *peer)
{
    static int64_t warned_us;   /* the process's last WARN of it (any worker) */
    if (lc->proxy_protocol == CFG_PP_OFF || cfg_cidr_match(lc->trusted, lc->ntrusted, peer))
        return 0;
    pc_count1(PROXY_REFUSALS, PC_PP_UNTRUSTED_PEER);
    int64_t now = mono_us(), last = __atomic_load_n(&warned_us, __ATOMIC_RELAXED);
    int warn = (!last || now - last >= 60 * 1000000LL) &&
               __atomic_compare_exchange_n(&warned_us, &last, now, 0, __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED);
    if (!warn && !pc_log_enabled(PC_DEBUG))
        return 1;
    char ip[INET6_ADDRSTRLEN] = "?";
    const void *a = peer->ss_family == AF_INET6
                    ? (const void *)&((const struct sockaddr_in6 *)peer)->sin6_addr
                    : (const void *)&((const struct sockaddr_in *)peer)->sin_addr;
    inet_ntop(peer->ss_family, a, ip, sizeof ip);
    pc_log_ev(warn ? PC_WARN : PC_DEBUG, "proxy_protocol_refused", NULL, "connection from %s "
              "refused: not in trusted_from of the PROXY protocol listener %s%s", ip, lc->addr.text,
              warn ? " (the next ones within a minute are logged at debug level only)" : "");
    return 1;
}

/* ---- accept backoff ----
 * accept4 failing for want of descriptors or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM) leaves the connection in the listen queue, so the
 * level-triggered listen event would fire again at once, forever: instead
 * the worker stops polling its listening sockets for limits.accept_backoff
 * (its connections keep being served), then tries again. Any other error
 * that is not about the one connection (EBADF, EINVAL, ...) would repeat
 * just the same and pauses too. An episode (the first failure until the
 * listen queue is seen empty) is logged once when it begins and once when
 * it ends; every failure is counted. */

/* pending network errors of the one connection (accept(2)): the next may work */
static int accept_net_error(int e)
{
    if (!gw_accept_lost_one(e))
        return 0;
    pc_count1(ACCEPT_ERRORS, PC_ACCEPT_OTHER);
    pc_log_ev(PC_DEBUG, "accept_error", NULL, "accept: %s (that connection is lost)", strerror(e));
    return 1;
}

static void accept_pause(gw_worker_t *w, const cfg_t *cfg, int e)
{
    unsigned reason = gw_accept_reason(e);
    pc_count1(ACCEPT_ERRORS, reason);
    for (size_t i = 0; i < w->nls; i++)
        if (w->ls[i].ev)
            event_del(w->ls[i].ev);
    if (w->accept_pauses++ == 0) {
        w->accept_paused_at_us = mono_us();
        pc_log_ev(reason == PC_ACCEPT_OTHER ? PC_ERR : PC_WARN, "accept_paused", NULL,
                  "worker %d: accept: %s; not accepting new connections for %llums at a time until "
                  "it works again (%zu connections open in this worker; see limits.max_connections "
                  "and the descriptor limit, docs/operations.md)", w->id, strerror(e),
                  (unsigned long long)cfg->limits.accept_backoff_ms, w->nconns);
    }
    struct timeval tv = {(time_t)(cfg->limits.accept_backoff_ms / 1000),
                         (suseconds_t)((cfg->limits.accept_backoff_ms % 1000) * 1000)};
    if (event_add(w->accept_resume, &tv) < 0)   /* retrying at once would spin */
        pc_log_ev(PC_ERR, "accept_paused", NULL, "worker %d: cannot arm the accept backoff timer; "
                  "its listening sockets stay off", w->id);
}

/* The backoff is over: poll the listening sockets again (not while draining:
 * on_stop freed their events). */
static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    if (w->draining)
        return;
    for (size_t i = 0; i < w->nls; i++)
        if (w->ls[i].ev)
            event_add(w->ls[i].ev, NULL);
}

static void accept_recovered(gw_worker_t *w)
{
    if (!w->accept_pauses)
        return;
    pc_log_ev(PC_INFO, "accept_resumed", NULL, "worker %d: accepting again after %u pause(s) over %lldms",
              w->id, w->accept_pauses, (long long)((mono_us() - w->accept_paused_at_us) / 1000));
    w->accept_pauses = 0;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    gw_worker_t *w = arg;
    gw_wgen_t *wg = w->cur;
    const cfg_t *cfg = wg->gen->cfg;
    uint32_t *nconns = gw_proc_nconns(w->proc);
    const cfg_listener_t *lc = listener_cfg(wg->gen, lfd);
    if (!lc)   /* cannot be (w->ls follows w->cur's listeners); fail closed */
        pc_log_ev(PC_ERR, "internal", NULL, "worker %d: a socket of no listener of generation %llu; "
                  "its connections are closed", w->id, (unsigned long long)wg->gen->number);
    for (int i = 0; i < 64 && !w->draining; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) {
                accept_recovered(w);   /* the queue is empty: any backoff episode is over */
                return;
            }
            if (accept_net_error(e))
                continue;   /* that connection failed; the next one may not */
            accept_pause(w, cfg, e);
            return;
        }
        if (!lc || untrusted_peer(lc, &peer)) {
            close(fd);
            continue;
        }
        int counted = 0;
        /* on a PROXY listener the limits count the client its header names (conn.c) */
        if (wg->gen->connlimit && lc->proxy_protocol == CFG_PP_OFF) {
            counted = pol_connlimit_acquire(wg->gen->connlimit, &cfg->connection_limits, &peer, mono_us());
            if (counted < 0) {
                /* before any TLS work: a flood from one address costs an accept and a close */
                pc_log_ev(PC_DEBUG, "connection_refused", NULL, "connection refused by connection_limits (%s)",
                       counted == -1 ? "per_ip_rate" : "per_ip_concurrent");
                pc_count1(CONN_REFUSED, counted == -1 ? PC_REFUSE_PER_IP_RATE
                                                      : PC_REFUSE_PER_IP_CONCURRENCY);
                close(fd);
                continue;
            }
        }
        uint32_t n = __atomic_add_fetch(nconns, 1, __ATOMIC_RELAXED);
        if (n > cfg->limits.max_connections) {
            __atomic_sub_fetch(nconns, 1, __ATOMIC_RELAXED);
            if (counted)
                pol_connlimit_release(wg->gen->connlimit, &peer);
            pc_log_ev(PC_WARN, "connection_refused", NULL, "max_connections (%u) reached; connection refused",
                   cfg->limits.max_connections);
            pc_count1(CONN_REFUSED, PC_REFUSE_MAX_CONNECTIONS);
            close(fd);
            continue;
        }
        __atomic_add_fetch(gw_proc_accepted(w->proc), 1, __ATOMIC_RELAXED);
        pc_count(CONN_ACCEPTED);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        wg->nconns++;
        gw_conn_new(w, wg, fd, &peer, counted, lc);
    }
}

/* ---- generations ---- */

static int needs_redis(const cfg_t *cfg)
{
    int need = cfg->issuance != NULL;   /* nonces and issuance records */
    for (size_t i = 0; i < cfg->nrate_limits; i++)
        need |= cfg->rate_limits[i].scope == CFG_RL_GLOBAL;
    return need;
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_wgen_t *wg = arg;
    if (!wg->retiring)
        pc_log_ev(PC_INFO, "reload_grace_over", NULL, "worker %d: reload grace over for generation %llu: closing its %zu "
               "connections between requests", wg->w->id, (unsigned long long)wg->gen->number,
               wg->nconns);
    wg->retiring = 1;
    if (gw_conn_retire(wg->w, wg) > 0) {
        struct timeval tick = {0, GW_RETIRE_TICK_MS * 1000};
        event_add(wg->grace, &tick);
    }
}

static gw_wgen_t *wgen_new(gw_worker_t *w, gw_gen_t *gen)
{
    gw_wgen_t *wg = calloc(1, sizeof *wg);
    if (!wg)
        return NULL;
    const cfg_t *cfg = gen->cfg;
    wg->w = w;
    wg->gen = gen;
    wg->pool = ups_pool_new(w->base, cfg, gen->health, cfg->limits.max_header_bytes * 4);
    wg->grace = evtimer_new(w->base, on_grace, wg);
    if (!wg->pool || !wg->grace) {
        ups_pool_free(wg->pool);
        if (wg->grace)
            event_free(wg->grace);
        free(wg);
        return NULL;
    }
    return wg;
}

/* Only with no connection left. Releases the worker's reference. */
static void wgen_free(gw_wgen_t *wg)
{
    event_free(wg->grace);
    ups_pool_free(wg->pool);
    gw_gen_release(wg->gen);
    free(wg);
}

/* A generation that is no longer the worker's current one: freed now if it
 * has no connection, else kept until its last one, its idle connections
 * closed after the new generation's timeouts.reload_grace. */
static void wgen_retire(gw_worker_t *w, gw_wgen_t *wg, uint64_t grace_ms)
{
    if (wg->nconns == 0) {
        wgen_free(wg);
        return;
    }
    wg->next = w->old;
    w->old = wg;
    struct timeval tv = {(time_t)(grace_ms / 1000), (suseconds_t)((grace_ms % 1000) * 1000)};
    event_add(wg->grace, &tv);
}

void gw_wgen_conn_closed(gw_worker_t *w, gw_wgen_t *wg)
{
    if (--wg->nconns || wg == w->cur)
        return;
    for (gw_wgen_t **pp = &w->old; *pp; pp = &(*pp)->next)
        if (*pp == wg) {
            *pp = wg->next;
            break;
        }
    wgen_free(wg);
}

/* The sockets to accept on become gen's listeners (this worker's slots of
 * each: slot j of a listener is polled by worker j % its worker count): a
 * socket both have keeps its event; a removed one is no longer polled (its
 * socket is closed when the last generation naming it goes). 0, or -1
 * (nothing changed). */
static int listeners_sync(gw_worker_t *w, gw_gen_t *gen)
{
    size_t n = 0;
    for (size_t i = 0; i < gen->cfg->nlisteners; i++) {
        gw_listener_t *l = gen->listeners[i];
        for (int j = w->id; j < gw_listener_slots(l); j += gw_listener_workers(l))
            n++;
    }
    gw_wlisten_t *ls = calloc(n ? n : 1, sizeof *ls);
    if (!ls)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < gen->cfg->nlisteners; i++) {
        gw_listener_t *l = gen->listeners[i];
        for (int j = w->id; j < gw_listener_slots(l); j += gw_listener_workers(l)) {
            ls[m].l = l;
            ls[m].slot = j;
            m++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < w->nls && !ls[i].ev; k++)
            if (w->ls[k].l == ls[i].l && w->ls[k].slot == ls[i].slot) {
                ls[i].ev = w->ls[k].ev;
                w->ls[k].ev = NULL;
            }
        int fd = gw_listener_fd(ls[i].l, ls[i].slot);
        if (!ls[i].ev && fd >= 0) {
            ls[i].ev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_accept, w);
            if (!ls[i].ev || event_add(ls[i].ev, NULL) < 0)
                goto fail;
        }
    }
    for (size_t k = 0; k < w->nls; k++)
        if (w->ls[k].ev)
            event_free(w->ls[k].ev);   /* removed from the configuration */
    free(w->ls);
    w->ls = ls;
    w->nls = n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < w->nls && ls[i].ev; k++)
            if (w->ls[k].l == ls[i].l && w->ls[k].slot == ls[i].slot && !w->ls[k].ev) {
                w->ls[k].ev = ls[i].ev;   /* hand the kept ones back */
                ls[i].ev = NULL;
            }
        if (ls[i].ev)
            event_free(ls[i].ev);
    }
    free(ls);
    return -1;
}

static void worker_redis(gw_worker_t *w, const cfg_t *cfg)
{
    if (!w->redis && needs_redis(cfg) && !(w->redis = pol_redis_new(w->base, &gw_proc_boot(w->proc)->redis)))
        pc_log_ev(PC_ERR, "out_of_memory", NULL, "worker %d: out of memory for the Redis connection", w->id);
}

/* The main thread published a new generation: new connections get it. */
static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    gw_gen_t *gen = gw_proc_current(w->proc);
    if (w->draining || gen == w->cur->gen) {
        /* draining: it polls no socket and takes no new connection */
        __atomic_store_n(&w->gen_seen, gen->number, __ATOMIC_RELEASE);
        gw_gen_release(gen);
        return;
    }
    gw_wgen_t *wg = wgen_new(w, gen);
    if (!wg || listeners_sync(w, gen) < 0) {
        pc_log_ev(PC_ERR, "out_of_memory", NULL, "worker %d: out of memory switching to generation %llu; new "
               "connections stay on generation %llu", w->id, (unsigned long long)gen->number,
               (unsigned long long)w->cur->gen->number);
        if (wg)
            wgen_free(wg);   /* releases gen */
        else
            gw_gen_release(gen);
        return;   /* not answered: the main thread keeps the old sockets open */
    }
    gw_wgen_t *old = w->cur;
    w->cur = wg;
    worker_redis(w, gen->cfg);
    wgen_retire(w, old, gen->cfg->timeouts.reload_grace_ms);
    __atomic_store_n(&w->gen_seen, gen->number, __ATOMIC_RELEASE);
}

static void on_retire_tick(evutil_socket_t fd, short what, void *arg);

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    if (w->draining)
        return;
    w->draining = 1;
    for (size_t i = 0; i < w->nls; i++) {
        if (w->ls[i].ev) {
            event_free(w->ls[i].ev);
            w->ls[i].ev = NULL;
        }
        gw_listener_close_fd(w->ls[i].l, w->ls[i].slot);
    }
    const cfg_t *cfg = w->cur->gen->cfg;
    struct timeval tv = {(time_t)(cfg->timeouts.drain_ms / 1000),
                         (suseconds_t)((cfg->timeouts.drain_ms % 1000) * 1000)};
    event_add(w->drain_timer, &tv);
    gw_conn_drain_all(w);
    struct timeval tick = {0, GW_RETIRE_TICK_MS * 1000};
    event_add(w->retire_ev, &tick);
}

/* Draining: connections retire as they become idle and quiet. */
static void on_retire_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    if (gw_conn_retire(w, NULL) > 0) {
        struct timeval tick = {0, GW_RETIRE_TICK_MS * 1000};
        event_add(w->retire_ev, &tick);
    }
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

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker_t *w = arg;
    pc_log_ev(PC_WARN, "drain_timeout", NULL, "worker %d: drain timeout; closing %zu connections", w->id, w->nconns);
    event_base_loopbreak(w->base);
}

int gw_worker_init(gw_worker_t *w, int id, gw_proc_t *proc, gw_gen_t *gen, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->proc = proc;
    w->base = event_base_new();
    if (!w->base || !(w->cur = wgen_new(w, gw_gen_acquire(gen)))) {
        if (w->base)
            gw_gen_release(gen);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->gen_seen = gen->number;
    if (listeners_sync(w, gen) < 0) {
        snprintf(err, errlen, "event setup failed");
        return -1;
    }
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->reload_ev = event_new(w->base, -1, 0, on_reload, w);
    w->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
    w->retire_ev = evtimer_new(w->base, on_retire_tick, w);
    w->rev_ev = event_new(w->base, -1, 0, on_revocation, w);
    w->expiry_ev = evtimer_new(w->base, on_expiry, w);
    w->accept_resume = evtimer_new(w->base, on_accept_resume, w);
    worker_redis(w, gen->cfg);
    if (!w->stop_ev || !w->reload_ev || !w->drain_timer || !w->retire_ev || !w->rev_ev || !w->expiry_ev ||
        !w->accept_resume ||
        (needs_redis(gen->cfg) && !w->redis)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    gw_worker_t *w = arg;
    pc_metrics_thread_attach();   /* this worker's own counters */
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

void gw_worker_reload(gw_worker_t *w)
{
    event_active(w->reload_ev, 0, 0);
}

uint64_t gw_worker_generation(gw_worker_t *w)
{
    return __atomic_load_n(&w->gen_seen, __ATOMIC_ACQUIRE);
}

/* After the loop has ended and every connection is closed. */
void gw_worker_free(gw_worker_t *w)
{
    for (size_t i = 0; i < w->nls; i++)
        if (w->ls[i].ev)
            event_free(w->ls[i].ev);
    free(w->ls);
    struct event *evs[] = {w->stop_ev, w->reload_ev, w->drain_timer, w->retire_ev, w->rev_ev,
                           w->expiry_ev, w->accept_resume};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    while (w->old) {
        gw_wgen_t *wg = w->old;
        w->old = wg->next;
        wgen_free(wg);
    }
    if (w->cur)
        wgen_free(w->cur);
    pol_redis_free(w->redis);
    if (w->base)
        event_base_free(w->base);
}
