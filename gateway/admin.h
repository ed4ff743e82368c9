/* gateway/admin: the admin HTTP listener (plain HTTP, loopback by default).
 *
 * Every request must carry "Authorization: Bearer <token>", the token being
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
 *                                       trip, and the verify cache's counters
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

typedef struct gw_admin gw_admin_t;

/* The admin bearer token: the value of the variable admin.token_env names.
 * Returns it, or NULL with a one-line reason in err (unset or empty). The
 * start and `--check` both call this, so they cannot disagree. */
const char *gw_admin_token(const cfg_admin_t *ac, char *err, size_t errlen);

/* Boolean-like: the listener, or NULL with a one-line reason in err (the
 * token variable is unset or empty, the address cannot be bound, ...).
 * mirror may be NULL (health then reports "revocation": null), and so may tls
 * (health then reports "verify_cache": null, as when the cache is disabled). */
gw_admin_t *gw_admin_start(struct event_base *base, const cfg_t *cfg, pol_mirror_t *mirror,
                           tls_ctx_t *tls, char *err, size_t errlen);
/* Closes the listener and drops requests still waiting for Redis. */
void gw_admin_free(gw_admin_t *a);

#endif
