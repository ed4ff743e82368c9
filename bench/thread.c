/* thread: one worker thread: its event loop, the open-loop arrivals, the
 * end of the run and its statistics. Connections live in client.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "conn.h"

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

struct timeval bench_tv(uint64_t ns)
{
    struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000ULL),
                         .tv_usec = (suseconds_t)((ns % 1000000000ULL) / 1000)};
    return tv;
}

int thread_measuring(const bench_thread_t *t, uint64_t now)
{
    return now >= t->sh->measure_ns && now < t->sh->end_ns;
}

/* ---- open loop ---------------------------------------------------------- */

void thread_dispatch(bench_thread_t *t)
{
    const bench_shared_t *sh = t->sh;
    uint64_t now = now_ns();
    if (t->stopping)
        return;
    /* arrivals so far: at t0, t0 + interval, ... (none at or after end) */
    uint64_t arrived = (now - sh->t0_ns) / t->interval_ns + 1;
    if (sh->end_ns != UINT64_MAX) {
        uint64_t max_arr = (sh->end_ns - sh->t0_ns + t->interval_ns - 1) / t->interval_ns;
        if (arrived > max_arr)
            arrived = max_arr;
    }
    while (t->arrivals_done < arrived && t->nfree > 0) {
        uint64_t intended = sh->t0_ns + t->arrivals_done * t->interval_ns;
        if (t->quota && intended >= sh->measure_ns && t->issued >= t->quota)
            break;
        t->arrivals_done++;
        conn_begin(&t->conns[t->free_list[--t->nfree]], intended);
        if (t->stopping)
            return;
    }
    uint64_t next = sh->t0_ns + arrived * t->interval_ns;
    if (next < sh->end_ns && !(t->quota && t->issued >= t->quota && now >= sh->measure_ns)) {
        struct timeval tv = bench_tv(next > now ? next - now : 0);
        evtimer_add(t->rate_ev, &tv);
    }
}

static void rate_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    thread_dispatch(arg);
}

/* ---- thread lifecycle --------------------------------------------------- */

static void thread_finish(bench_thread_t *t, uint64_t now)
{
    if (t->stopping)
        return;
    t->stopping = 1;
    uint64_t from = t->sh->measure_ns;
    uint64_t to = now < t->sh->end_ns ? now : t->sh->end_ns;
    t->stats.elapsed_ns = to > from ? to - from : 0;
    if (t->sh->o->mode == MODE_IDLE)
        for (unsigned i = 0; i < t->nconns; i++)
            t->stats.idle_up += conn_is_up(&t->conns[i]);
    event_base_loopbreak(t->base);
}

void thread_check_done(bench_thread_t *t)
{
    if (t->quota && t->issued >= t->quota && t->finished >= t->issued)
        thread_finish(t, now_ns());
}

static void end_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bench_thread_t *t = arg;
    thread_finish(t, now_ns());
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bench_thread_t *t = arg;
    thread_finish(t, now_ns());
}

void bench_thread_stop(bench_thread_t *t)
{
    event_active(t->stop_ev, EV_READ, 0);
}

int bench_thread_init(bench_thread_t *t, char *err, size_t errlen)
{
    const bench_opts_t *o = t->sh->o;
    stats_init(&t->stats);
    struct event_config *cfg = event_config_new();
    if (cfg) {
        /* timerfd-backed timers: open-loop arrivals need better than 1 ms */
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        t->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (!t->base)
        t->base = event_base_new();
    if (!t->base) {
        snprintf(err, errlen, "cannot create an event base");
        return -1;
    }
    t->ctx = bench_tls_ctx(o, err, errlen);
    if (!t->ctx)
        return -1;
    conn_tls_callbacks(t->ctx, o->mode == MODE_RESUME);
    t->rbuf = malloc(RBUF_SIZE);
    t->conns = calloc(t->nconns, sizeof(conn_t));
    t->free_list = calloc(t->nconns, sizeof(unsigned));
    t->stop_ev = event_new(t->base, -1, 0, stop_cb, t);
    t->end_ev = evtimer_new(t->base, end_cb, t);
    t->rate_ev = evtimer_new(t->base, rate_cb, t);
    if (!t->rbuf || !t->conns || !t->free_list || !t->stop_ev || !t->end_ev || !t->rate_ev) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < t->nconns; i++)
        conn_init(&t->conns[i], t, i);
    if (t->rate > 0) {
        double iv = 1e9 / t->rate;
        t->interval_ns = iv < 1 ? 1 : (uint64_t)llround(iv);
    }
    return 0;
}

void *bench_thread_main(void *arg)
{
    bench_thread_t *t = arg;
    const bench_shared_t *sh = t->sh;
    uint64_t now = now_ns();
    event_add(t->stop_ev, NULL);
    if (sh->end_ns != UINT64_MAX) {
        struct timeval tv = bench_tv(sh->end_ns > now ? sh->end_ns - now : 0);
        evtimer_add(t->end_ev, &tv);
    }
    if (t->rate > 0 && sh->o->mode == MODE_IDLE) {
        /* steady arrival: connection i opens at i intervals after the start */
        for (unsigned i = 0; i < t->nconns && !t->stopping; i++)
            conn_start_after(&t->conns[i], i * t->interval_ns);
    } else if (t->rate > 0) {
        for (unsigned i = 0; i < t->nconns; i++)
            t->free_list[t->nfree++] = t->nconns - 1 - i;
        thread_dispatch(t);
    } else {
        for (unsigned i = 0; i < t->nconns && !t->stopping; i++)
            conn_start(&t->conns[i]);
    }
    if (!t->stopping)
        event_base_dispatch(t->base);
    thread_finish(t, now_ns());
    __atomic_store_n(&t->exited, 1, __ATOMIC_RELEASE);
    return NULL;
}

void bench_thread_free(bench_thread_t *t)
{
    if (t->conns) {
        for (unsigned i = 0; i < t->nconns; i++)
            conn_destroy(&t->conns[i]);
        free(t->conns);
    }
    free(t->free_list);
    free(t->rbuf);
    if (t->stop_ev)
        event_free(t->stop_ev);
    if (t->end_ev)
        event_free(t->end_ev);
    if (t->rate_ev)
        event_free(t->rate_ev);
    if (t->ctx)
        SSL_CTX_free(t->ctx);
    if (t->base)
        event_base_free(t->base);
}
