/* client: worker threads (thread.c) and their connections (client.c). */
#ifndef PORTCULLIS_BENCH_CLIENT_H
#define PORTCULLIS_BENCH_CLIENT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "args.h"
#include "stats.h"

/* Read-only state shared by every thread. */
typedef struct bench_shared {
    const bench_opts_t *o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *request;     /* the complete request, body included */
    size_t request_len;
    int head;                /* HEAD request: responses have no body */
    uint64_t t0_ns;          /* start (CLOCK_MONOTONIC) */
    uint64_t measure_ns;     /* t0 + warmup: statistics start here */
    uint64_t end_ns;         /* end of the run; UINT64_MAX with -n */
} bench_shared_t;

struct conn;

typedef struct bench_thread {
    unsigned id;
    const bench_shared_t *sh;
    unsigned nconns;
    uint64_t quota;          /* -n share, 0 for a timed run */
    double rate;             /* open loop: requests/s of this thread, 0 = closed loop */
    SSL_CTX *ctx;
    struct event_base *base;
    struct event *stop_ev;   /* activated from the main thread */
    struct event *end_ev;
    struct event *rate_ev;
    struct conn *conns;
    unsigned *free_list;     /* open loop: connections without a request */
    unsigned nfree;
    uint64_t issued;         /* measured requests started (-n accounting) */
    uint64_t finished;       /* measured requests finished, successfully or not */
    uint64_t arrivals_done;  /* open loop: arrivals dispatched */
    uint64_t interval_ns;    /* open loop: time between arrivals */
    int stopping;
    unsigned char *rbuf;
    bench_stats_t stats;
    pthread_t tid;
    int running;
    volatile int exited;
} bench_thread_t;

uint64_t now_ns(void);

/* A client SSL_CTX for the options; NULL with a message in err. */
SSL_CTX *bench_tls_ctx(const bench_opts_t *o, char *err, size_t errlen);

/* Creates the event base, the SSL_CTX and the connections. */
int bench_thread_init(bench_thread_t *t, char *err, size_t errlen);
void *bench_thread_main(void *arg);
/* Thread-safe: asks the thread to stop now. */
void bench_thread_stop(bench_thread_t *t);
void bench_thread_free(bench_thread_t *t);

#endif
