/* gateway/metrics: the /metrics exposition. The counters of base/metrics
 * (summed over every thread), then the gauges read at scrape time from
 * their owners: connections, the revocation mirror, the caches, upstream
 * health, the runtime and the process. */
#ifndef PORTCULLIS_GW_METRICS_H
#define PORTCULLIS_GW_METRICS_H

#include <event2/http.h>

#include "../base/metrics.h"
#include "runtime.h"

/* Appends the whole exposition (Prometheus text format 0.0.4) to out. */
void gw_metrics_render(gw_proc_t *p, pc_buf_t *out);
/* Answers req with the exposition: 200 text/plain; version=0.0.4, or 503
 * JSON out_of_memory. Runs on the caller's (an evhttp listener's) thread. */
void gw_metrics_serve(gw_proc_t *p, struct evhttp_request *req);

#endif
