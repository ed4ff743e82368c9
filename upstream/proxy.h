/* upstream/proxy: upstream servers, keep-alive pools and request exchanges.
 *
 * A ups_pool_t belongs to one worker (one event loop) and holds that worker's
 * idle keep-alive connections. Server health (a failed server is skipped for
 * fail_timeout) is shared by all workers through ups_health_t.
 *
 * A ups_exchange_t carries one request to a server and its response back.
 * The gateway writes the request (head, then framed body bytes) into it and
 * is called back through ups_ops_t. Callbacks must not free the exchange,
 * except done() and fail(), which are always the last thing the exchange
 * does in that event and after which it is not touched again.
 */
#ifndef PORTCULLIS_UPSTREAM_PROXY_H
#define PORTCULLIS_UPSTREAM_PROXY_H

#include <event2/event.h>
#include <event2/buffer.h>

#include "../base/errors.h"
#include "../config/config.h"
#include "http.h"

typedef struct ups_health ups_health_t;
typedef struct ups_pool ups_pool_t;
typedef struct ups_exchange ups_exchange_t;

typedef struct {
    /* Response head parsed; framing is enum ups_framing as the upstream sent it. */
    void (*head)(void *c, int status, const ups_hdrs_t *h, int framing, uint64_t clen);
    void (*body)(void *c, const char *p, size_t n);
    void (*done)(void *c);   /* response complete */
    /* The exchange failed: before the head, e is the catalog entry (502 or
     * 504, base/errors.def) the gateway answers with msg; after the head,
     * the client connection must close. */
    void (*fail)(void *c, enum pc_err e, const char *msg);
    void (*drained)(void *c);      /* request backlog below low water again */
    size_t (*backlog)(void *c);    /* bytes the client has not been sent yet */
} ups_ops_t;

ups_health_t *ups_health_new(const cfg_t *cfg);
void ups_health_free(ups_health_t *h);
/* Servers of upstream up (of cfg, the configuration h was made for) marked
 * failed now, so skipped until their fail_timeout ends. Any thread. */
size_t ups_health_skipped(ups_health_t *h, const cfg_t *cfg, size_t up);

ups_pool_t *ups_pool_new(struct event_base *base, const cfg_t *cfg, ups_health_t *health,
                         uint32_t max_response_head);
void ups_pool_free(ups_pool_t *p);

/* Starts an exchange on upstream index `up`, taking the request head.
 * has_body: more bytes will come through ups_exchange_send (and the request
 * cannot be retried on another connection). head_request: no response body. */
ups_exchange_t *ups_exchange_start(ups_pool_t *p, size_t up, struct evbuffer *head, int has_body,
                                   int head_request, const ups_ops_t *ops, void *c);
void ups_exchange_send(ups_exchange_t *x, const void *data, size_t n);
/* Writes what was queued (head and body so far) now, in one go. The
 * gateway calls it after parsing each batch of input, so bytes of a request
 * it refuses in that batch never leave. */
void ups_exchange_flush(ups_exchange_t *x);
size_t ups_exchange_backlog(const ups_exchange_t *x);
/* The client has room again: read the response again. */
void ups_exchange_resume(ups_exchange_t *x);
/* The client's request body is complete; a done exchange is only reusable if
 * this was called. */
void ups_exchange_request_done(ups_exchange_t *x);
/* Ends the exchange: the connection goes back to the pool if the response
 * was complete and the connection is clean, else it is closed. */
void ups_exchange_free(ups_exchange_t *x);
/* "host:port" of the server in use, for logs. */
const char *ups_exchange_server(const ups_exchange_t *x);

#endif
