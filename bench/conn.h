/* conn: one connection slot of a thread (private to client.c and thread.c). */
#ifndef PORTCULLIS_BENCH_CONN_H
#define PORTCULLIS_BENCH_CONN_H

#include <stdint.h>
#include <sys/time.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

#include "client.h"
#include "httpresp.h"

#define RBUF_SIZE 16384

enum { C_FREE, C_CONNECTING, C_HANDSHAKE, C_WRITING, C_READING, C_HOLD };
enum { HS_NONE, HS_FULL, HS_RESUMED };

typedef struct conn {
    bench_thread_t *t;
    unsigned idx;
    int state;
    int fd;
    SSL *ssl;
    SSL_SESSION *sess;       /* resume mode: the session to offer next time */
    struct event io;
    struct event timer;      /* request / handshake timeout */
    struct event kick;       /* deferred start of the next request */
    int io_added;
    int in_request;
    int measured;            /* the current request counts in the statistics */
    int hs_counted;          /* HS_* counted for the current connection */
    int hs_done;             /* the handshake of the current connection completed */
    unsigned responses;      /* complete responses on the current connection */
    int up;                  /* idle mode: handshake done, still open */
    uint64_t start_ns;       /* latency is measured from here */
    size_t woff;
    const char *alert;       /* description of the last alert the peer sent */
    resp_parser_t *rp;
} conn_t;

/* client.c */
void conn_tls_callbacks(SSL_CTX *ctx, int resume);
void conn_init(conn_t *c, bench_thread_t *t, unsigned idx);
void conn_start(conn_t *c);                  /* closed loop / idle: start soon */
void conn_start_after(conn_t *c, uint64_t delay_ns);  /* idle with --rate: start then */
void conn_begin(conn_t *c, uint64_t start);  /* a request, latency counted from start */
void conn_destroy(conn_t *c);
static inline int conn_is_up(const conn_t *c)
{
    return c->up;
}

/* thread.c */
struct timeval bench_tv(uint64_t ns);
int thread_measuring(const bench_thread_t *t, uint64_t now);
void thread_dispatch(bench_thread_t *t);
void thread_check_done(bench_thread_t *t);

#endif
