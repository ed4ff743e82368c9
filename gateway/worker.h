/* gateway/worker: a worker thread's event loop, listeners and drain. */
#ifndef PORTCULLIS_WORKER_H
#define PORTCULLIS_WORKER_H

#include "gateway.h"

/* Boolean-like (0 ok, -1 err): loop, listeners and pool for generation gen
 * (the worker takes its own reference); no thread yet. */
int gw_worker_init(gw_worker_t *w, int id, gw_proc_t *proc, gw_gen_t *gen, char *err, size_t errlen);
int gw_worker_start(gw_worker_t *w);
/* Thread-safe: asks the worker to drain and exit its loop. */
void gw_worker_stop(gw_worker_t *w);
/* Thread-safe: the revocation set changed; re-check live connections. */
void gw_worker_notify_revocation(gw_worker_t *w);
/* Thread-safe: a new generation was published; the worker switches to it. */
void gw_worker_reload(gw_worker_t *w);
/* The number of the generation the worker gives new connections (atomic):
 * equal to the published one once it has switched. */
uint64_t gw_worker_generation(gw_worker_t *w);
void gw_worker_join(gw_worker_t *w);
void gw_worker_free(gw_worker_t *w);

#endif
