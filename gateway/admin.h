/* gateway/admin: the admin HTTP listener (plain HTTP, loopback by default).
 *
 * Every request but the health probes must carry "Authorization: Bearer <token>", the token being
 * the value of the environment variable named by admin.token_env. Answers
 * are JSON; errors are {"error": "<code>", "message": "..."}.
 *
 *   POST   /admin/revocations           {"class","serial"} or {"fingerprint"},
 *                                       optional "reason"          -> 201;
 *                                       400 "unknown_class" for a class not in
 *                                       tls.classes (it could match nothing),
 *                                       400 "invalid_entry" for a form
 *                                       pol_rev_canon refuses
 *   POST   /admin/revocations           {"device_id"}, optional "reason": revokes
 *                                       the device entry "device-id=<id>" and
 *                                       every live certificate issued to it
 *                                       -> 200 {"device_id","entry","revoked":
 *                                       [entries],"certificates":n}
 *   DELETE /admin/revocations/<entry>   (or DELETE with the POST body; device_id
 *                                       lifts the device entry) -> 200
 *   GET    /admin/revocations?cursor=0&count=100                    -> 200
 *                                       (each entry with "problem": null, or
 *                                       why it cannot revoke anything here)
 *   GET    /admin/health                mirror status (with the count and a few
 *                                       examples of unusable entries), no Redis
 *                                       trip, the verify cache's counters, and
 *                                       the runtime: generation, reloads
 *   GET    /metrics                     Prometheus text format 0.0.4 (gateway/metrics.h)
 *   GET    /healthz, /readyz            without a token (gw_health_serve)
 *   POST   /admin/reload                re-reads the configuration and every file
 *                                       it names (docs/operations.md) -> 200
 *                                       with what changed, 422 reload_failed
 *                                       with every error, 409 while one runs
 *
 * Writes go to Redis through policy/revstore (MULTI/SADD/HSET/PUBLISH/EXEC);
 * a Redis failure answers 503 "redis_unavailable". The listener runs on the
 * event_base it is given and is used only from that base's thread: start it
 * before that thread runs the loop, free it after the loop has stopped.
 */
#ifndef PORTCULLIS_ADMIN_H
#define PORTCULLIS_ADMIN_H

#include <stddef.h>

#include <event2/event.h>

#include "../config/config.h"
#include "../policy/mirror.h"
#include "../tls/tls.h"
#include "runtime.h"

typedef struct gw_admin gw_admin_t;

/* Boolean-like: the listener, or NULL with a one-line reason in err (the
 * token variable is unset or empty, the address cannot be bound, ...). Its
 * settings come from the process's configuration (admin.* needs a restart);
 * what depends on the running configuration (the classes an entry may name,
 * the verify cache) is read from the current generation per request. The
 * process's mirror may be NULL (health then reports "revocation": null). */
gw_admin_t *gw_admin_start(struct event_base *base, gw_proc_t *proc, char *err, size_t errlen);
/* POST /admin/reload calls fn(arg) on the admin's thread; fn must not block:
 * the answer comes later through gw_admin_reload_done (on the same thread)
 * with the status and JSON body. Without fn the endpoint answers 503. */
typedef void (*gw_admin_reload_fn)(void *arg);
void gw_admin_set_reload(gw_admin_t *a, gw_admin_reload_fn fn, void *arg);
void gw_admin_reload_done(gw_admin_t *a, int status, const char *json);
/* Binary upgrade: takeover starts accepting on a listener started under
 * --upgrade (the new process serves now); handover (the old process, at
 * READY) stops accepting for good and closes each connection after its next
 * response (gw_metrics_http_takeover/handover). On the admin's thread. */
void gw_admin_takeover(gw_admin_t *a);
void gw_admin_handover(gw_admin_t *a);
/* Closes the listener and drops requests still waiting for Redis. */
void gw_admin_free(gw_admin_t *a);

#endif
