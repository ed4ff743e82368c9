/* gateway: process, workers, listeners and client connections.
 *
 * One process runs N worker threads. Each worker owns an event loop, its own
 * SO_REUSEPORT listening sockets, its upstream pool and its connections; no
 * connection is ever touched by two threads. Shared across workers: the
 * immutable config, the TLS context (and so the session cache), upstream
 * health, and the connection count.
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

#define PORTCULLIS_VERSION "0.1.0"

typedef struct gw_conn gw_conn_t;

typedef struct {
    cfg_t *cfg;
    tls_ctx_t *tls;
    pol_mirror_t *mirror;
    ups_health_t *health;
    pol_rl_t *rl;                  /* local limiter for every named limit; NULL if none */
    pol_connlimit_t *connlimit;    /* per-IP connection limits; NULL if none */
    pol_jwks_store_t **jwks;       /* per route (NULL when it checks no JWT); shared by file */
    pol_jwks_store_t **jwks_files; /* the distinct stores, for refresh and free */
    size_t njwks_files;
    struct pol_issuer *issuer;     /* certificate issuance: the signing CA; NULL if disabled */
    struct pol_play_keys **play_keys;  /* per issuance platform (NULL unless play_integrity) */
    char **claim_headers;          /* every header a token claim may be injected as */
    size_t nclaim_headers;
    ups_names_t *hnames;           /* which client request headers are forwarded */
    uint32_t nconns;       /* live client connections, all workers; atomic */
    uint64_t accepted;     /* client connections accepted so far, all workers; atomic */
} gw_runtime_t;

typedef struct gw_worker {
    int id;
    gw_runtime_t *rt;
    struct event_base *base;
    int *lfds;               /* the listening sockets it polls (gw_lset_worker_fds): at
                              * least one per configured listener */
    size_t nlfds;
    struct event **lev;
    struct event *stop_ev;   /* activated by the main thread on SIGTERM/SIGINT */
    struct event *drain_timer;
    struct event *drain_idle_timer;  /* timeouts.drain_idle after the drain began */
    struct event *rev_ev;    /* activated by the control thread when the revocation set changes */
    struct event *expiry_ev; /* fires at the earliest notAfter of its connections' certificates */
    time_t expiry_at;        /* the notAfter expiry_ev is armed for; 0: not armed */
    ups_pool_t *pool;
    pol_redis_t *redis;      /* for global rate limits; NULL if none are configured */
    gw_conn_t *conns;        /* every live connection of this worker */
    size_t nconns;
    int draining;
    uint64_t next_id;
    pthread_t thread;
} gw_worker_t;

/* Takes ownership of an accepted, non-blocking socket. */
void gw_conn_new(gw_worker_t *w, int fd, const struct sockaddr_storage *peer);
/* Closes connections whose certificate is now revoked (busy ones after
 * their response). */
void gw_conn_revocation_scan(gw_worker_t *w);
/* Closes connections whose certificate's notAfter is at or before now
 * (a request in progress completes first; see conn.c). Returns the earliest
 * notAfter among the others, 0 if none. */
time_t gw_conn_expiry_scan(gw_worker_t *w, time_t now);
/* A connection with a certificate valid until not_after joined worker w. */
void gw_worker_watch_expiry(gw_worker_t *w, time_t not_after);
/* Drain: busy connections close after their response, handshakes complete
 * (their first response closes), idle ones close now when
 * timeouts.drain_idle is 0, else at gw_conn_drain_idle(). */
void gw_conn_drain_all(gw_worker_t *w);
/* timeouts.drain_idle after the drain began: idle connections close now. */
void gw_conn_drain_idle(gw_worker_t *w);
/* Drain timeout or exit: every connection closes now. */
void gw_conn_close_all(gw_worker_t *w);

#endif
