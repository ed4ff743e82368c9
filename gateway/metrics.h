/* gateway/metrics: the /metrics exposition. The counters of base/metrics
 * (summed over every thread), then the gauges read at scrape time from
 * their owners: connections, the revocation mirror, the caches, upstream
 * health, the runtime and the process. */
#ifndef PORTCULLIS_GW_METRICS_H
#define PORTCULLIS_GW_METRICS_H

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>

#include "../base/metrics.h"
#include "runtime.h"

/* Appends the whole exposition (Prometheus text format 0.0.4) to out. */
void gw_metrics_render(gw_proc_t *p, pc_buf_t *out);
/* Answers req with the exposition: 200 text/plain; version=0.0.4, or 503
 * JSON out_of_memory. Runs on the caller's (an evhttp listener's) thread. */
void gw_metrics_serve(gw_proc_t *p, struct evhttp_request *req);

/* Why the gateway is not ready to serve, into reasons[0..max) (static
 * strings, docs/operations.md): "starting" (the workers do not accept
 * yet), "draining" (SIGTERM/SIGINT or a binary upgrade: it is stopping),
 * "no_listeners" (serving, but no listener of the running configuration
 * has an open socket), "revocation_not_loaded" (the mirror was never
 * loaded), "revocation_stale" (the mirror may not be relied on: not current
 * under fail_closed, or older than max_staleness under serve_stale).
 * Returns the count (0: ready); any thread. */
#define GW_READY_REASONS_MAX 8
size_t gw_ready_reasons(gw_proc_t *p, const char **reasons, size_t max);
/* Answers GET /healthz (ready 0: 200 {"status":"ok"}) or GET /readyz
 * (ready 1: 200 {"status":"ready"}, or 503 {"status":"not_ready",
 * "reasons":[...]}). Never needs a token. */
void gw_health_serve(gw_proc_t *p, struct evhttp_request *req, int ready);
/* 1 for a GET or HEAD of /healthz, 2 of /readyz, else 0. */
int gw_health_path(struct evhttp_request *req);

/* The metrics listener (metrics section; gateway/metrics_http.c): plain
 * HTTP on the control thread's base serving GET /metrics (with
 * Authorization: Bearer <token> when metrics.token_env is set), /healthz
 * and /readyz. Settings from the process's configuration (restart-only).
 * NULL with a one-line reason in err. Start it before the base's loop runs,
 * free it after it stopped. */
typedef struct gw_metrics_http gw_metrics_http_t;
gw_metrics_http_t *gw_metrics_http_start(struct event_base *base, gw_proc_t *p, char *err,
                                         size_t errlen);
void gw_metrics_http_free(gw_metrics_http_t *m);
/* Binary upgrade (gateway/upgrade.h) while the metrics listener runs:
 * takeover (the new process, once it serves) starts accepting on a listener
 * started under --upgrade; handover (the old process, at READY) stops
 * accepting for good (the new process holds the same socket) and closes each
 * connection after its next response. On the base's thread. */
void gw_metrics_http_takeover(gw_metrics_http_t *m);
void gw_metrics_http_handover(gw_metrics_http_t *m);

/* The listening socket of a plain-HTTP listener of kind (enum gw_http_kind)
 * at a, attached to http: the one the previous process handed over
 * (gw_proc_take_http), else a new one bound to a (SO_REUSEADDR only, so a
 * live listener of another process there is refused). Under --upgrade it
 * does not accept until gw_http_takeover. Registered with the process for
 * the next handover. NULL with the reason in err ("admin listener not
 * started: cannot listen on ADDR (admin.listen): Address already in use"). */
struct evhttp_bound_socket *gw_http_listen(struct event_base *base, struct evhttp *http,
                                           gw_proc_t *p, int kind, const cfg_addr_t *a,
                                           char *err, size_t errlen);
void gw_http_takeover(struct evhttp_bound_socket *b);
/* Out of descriptors, accepting on the listener of kind pauses for
 * limits.accept_backoff (counted in portcullis_accept_errors_total); this
 * frees that backoff's timer: call it before the listener itself is freed
 * (gw_http_handover does). */
void gw_http_forget(int kind);
/* What both plain-HTTP listeners set: the body and head limits, the
 * connection timeout, every method allowed (the handler answers 405 with
 * Allow), and the handler. */
void gw_http_setup(struct evhttp *http, ev_ssize_t max_body, ev_ssize_t max_headers, int timeout_s,
                   void (*cb)(struct evhttp_request *, void *), void *arg);
/* Stops accepting on *b and closes this process's copy of its socket; *b
 * becomes NULL. Connections already accepted go on. */
void gw_http_handover(struct evhttp *http, struct evhttp_bound_socket **b, gw_proc_t *p, int kind);

/* The metrics bearer token: NULL with *err empty when metrics.token_env is
 * unset (no token needed); NULL with a reason in err when it names an unset
 * or empty variable (the start and --check refuse that); else the token. */
const char *gw_metrics_token(const cfg_metrics_t *mc, char *err, size_t errlen);

#endif
