/* gateway: process, workers, listeners and client connections.
 *
 * One process runs N worker threads. Each worker owns an event loop, its own
 * SO_REUSEPORT listening sockets, its upstream pools and its connections; no
 * connection is ever touched by two threads. Shared across workers: the
 * process state and the configuration generations (runtime.h): each
 * connection pins the generation it was accepted under until it closes.
 */
#ifndef PORTCULLIS_GATEWAY_H
#define PORTCULLIS_GATEWAY_H

#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "../config/config.h"
#include "../policy/jwt.h"
#include "../policy/ratelimit.h"
#include "../policy/redis.h"
#include "../tls/tls.h"
#include "../upstream/proxy.h"
#include "runtime.h"

#define PORTCULLIS_VERSION "0.1.0"

typedef struct gw_conn gw_conn_t;

typedef struct gw_wgen gw_wgen_t;      /* a worker's share of one generation (worker.c) */
typedef struct gw_wlisten gw_wlisten_t;  /* a listening socket a worker polls (worker.c) */

typedef struct gw_worker {
    int id;
    gw_proc_t *proc;
    struct event_base *base;
    gw_wgen_t *cur;          /* the generation new connections get; this thread only */
    gw_wgen_t *old;          /* older generations with connections left */
    gw_wlisten_t *ls;        /* the sockets it accepts on (cur's listeners) */
    size_t nls;
    uint64_t gen_seen;       /* number of cur's generation; atomic (read by main) */
    struct event *stop_ev;   /* activated by the main thread on SIGTERM/SIGINT */
    struct event *reload_ev; /* activated by the main thread after a reload */
    struct event *drain_timer;
    struct event *retire_ev; /* draining: connections retire as they become quiet */
    struct event *rev_ev;    /* activated by the control thread when the revocation set changes */
    struct event *expiry_ev; /* fires at the earliest notAfter of its connections' certificates */
    time_t expiry_at;        /* the notAfter expiry_ev is armed for; 0: not armed */
    pol_redis_t *redis;      /* for global rate limits and issuance; NULL until one needs it */
    gw_conn_t *conns;        /* every live connection of this worker */
    size_t nconns;
    int draining;
    uint64_t next_id;
    pthread_t thread;
    struct event *accept_resume; /* accept backoff (worker.c): polls the listeners again */
    unsigned accept_pauses;      /* pauses in the current episode; 0: accepting normally */
    int64_t accept_paused_at_us; /* monotonic start of the episode */
} gw_worker_t;

/* Takes ownership of an accepted, non-blocking socket, for worker generation
 * wg, that came in on listener lc (of wg's configuration); counted: 1 when
 * the connection limiter counted it (to release at close). On a PROXY
 * protocol listener the connection reads its header first, then applies
 * connection_limits to the client it names (counted is 0 then). */
void gw_conn_new(gw_worker_t *w, gw_wgen_t *wg, int fd, const struct sockaddr_storage *peer,
                 int counted, const cfg_listener_t *lc);
/* A connection of wg closed (conn.c tells worker.c, which frees an old
 * generation's share with its last connection). */
void gw_wgen_conn_closed(gw_worker_t *w, gw_wgen_t *wg);
/* What conn.c needs of a worker generation. */
gw_gen_t *gw_wgen_gen(const gw_wgen_t *wg);
ups_pool_t *gw_wgen_pool(const gw_wgen_t *wg);
/* Retires the connections of wg (NULL: all, for the drain): each response
 * from now on says Connection: close and ends its connection; one idle
 * (nothing buffered) for timeouts.drain_idle closes now. So a connection is
 * not closed while a request of its client may be on the way; the caller
 * calls it again (every GW_RETIRE_TICK_MS) while it returns a count of
 * connections left. A connection in its handshake completes it first. */
#define GW_RETIRE_TICK_MS 100
size_t gw_conn_retire(gw_worker_t *w, gw_wgen_t *wg);
/* Closes connections whose certificate is now revoked (busy ones after
 * their response). */
void gw_conn_revocation_scan(gw_worker_t *w);
/* Closes connections whose certificate's notAfter is at or before now
 * (a request in progress completes first; see conn.c). Returns the earliest
 * notAfter among the others, 0 if none. */
time_t gw_conn_expiry_scan(gw_worker_t *w, time_t now);
/* A connection with a certificate valid until not_after joined worker w. */
void gw_worker_watch_expiry(gw_worker_t *w, time_t not_after);
/* Drain: gw_conn_retire for every connection; the worker repeats it. */
void gw_conn_drain_all(gw_worker_t *w);
/* Drain timeout or exit: every connection closes now. */
void gw_conn_close_all(gw_worker_t *w);

#endif
