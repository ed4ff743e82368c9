/* gateway/worker: a worker thread's event loop, listeners and drain. */
#ifndef PORTCULLIS_WORKER_H
#define PORTCULLIS_WORKER_H

#include "gateway.h"

/* Syscall-like: a bound, listening, non-blocking socket, or -1 with err. */
int gw_listen_socket(const cfg_addr_t *a, char *err, size_t errlen);

struct gw_lset;
/* Boolean-like (0 ok, -1 err): loop, listeners and pool; no thread yet. The
 * worker polls its share of ls's sockets (gw_lset_worker_fds: dup()s it owns
 * and closes when it drains). */
int gw_worker_init(gw_worker_t *w, int id, gw_runtime_t *rt, struct gw_lset *ls, char *err,
                   size_t errlen);
int gw_worker_start(gw_worker_t *w);
/* Thread-safe: asks the worker to drain and exit its loop. */
void gw_worker_stop(gw_worker_t *w);
/* Thread-safe: the revocation set changed; re-check live connections. */
void gw_worker_notify_revocation(gw_worker_t *w);
void gw_worker_join(gw_worker_t *w);
void gw_worker_free(gw_worker_t *w);

#endif
