/* policy/mirror: the in-memory mirror of the Redis revocation set, and the
 * task that keeps it current.
 *
 * pol_mirror_t is shared by every thread: workers look entries up (read
 * lock, no network); the sync task, on the control thread's event loop,
 * writes. The sync task loads the set with SSCAN after subscribing to the
 * channel, applies published revocations as they come, applies a published
 * lift by a full load that starts after it (another spelling of the entry
 * may still be in the set; see apply in mirror.c), re-syncs fully on every
 * reconnect and every revocation.resync_interval, and reconnects with
 * backoff. Whether the mirror may be trusted follows
 * revocation.on_redis_unavailable (see pol_mirror_usable).
 */
#ifndef PORTCULLIS_MIRROR_H
#define PORTCULLIS_MIRROR_H

#include <event2/event.h>
#include <stdint.h>

#include "../config/config.h"
#include "revocation.h"

typedef struct pol_mirror pol_mirror_t;

/* An entry of the set (or a message) the mirror could not use. */
#define POL_MIRROR_EXAMPLES 5
typedef struct {
    char entry[100];          /* as found, cut, control characters replaced */
    char problem[200];
} pol_mirror_bad_t;

typedef struct {
    size_t entries;
    size_t bytes;             /* memory held by the table */
    const char *state;        /* "loading", "current", "stale", "unavailable" */
    int usable;               /* new handshakes may rely on it */
    double staleness_s;       /* 0 while current */
    int64_t last_sync_unix;   /* last completed full load, 0 if none */
    double last_load_ms;      /* duration of that load */
    /* entries the mirror cannot use: members of the set found at the last
     * complete load, plus published messages since then, that do not
     * canonicalise or name a class this gateway does not have. Each is
     * logged at error level; the first few are kept as examples. */
    size_t unusable;
    pol_mirror_bad_t examples[POL_MIRROR_EXAMPLES];
    size_t nexamples;
} pol_mirror_status_t;

pol_mirror_t *pol_mirror_new(const cfg_t *cfg);
void pol_mirror_free(pol_mirror_t *m);

/* 1 if the key is revoked. */
int pol_mirror_contains(pol_mirror_t *m, const pol_rev_key_t *k);
/* 1 if one of keys[0..n-1] is revoked (all-zero keys are skipped), under
 * one read lock. */
int pol_mirror_contains_any(pol_mirror_t *m, const pol_rev_key_t *keys, size_t n);
/* 1 if the mirror may be relied on now (current, or stale within
 * max_staleness under serve_stale). */
int pol_mirror_usable(pol_mirror_t *m);
void pol_mirror_status(pol_mirror_t *m, pol_mirror_status_t *st);
/* Generation: bumped on every change; workers re-check live connections
 * when it moves. */
uint64_t pol_mirror_generation(pol_mirror_t *m);

/* Starts the sync task on base. on_change(arg) is called (on that thread)
 * after every change to the set, and whenever usability changes. */
typedef struct pol_revsync pol_revsync_t;
pol_revsync_t *pol_revsync_start(struct event_base *base, const cfg_t *cfg, pol_mirror_t *m,
                                 void (*on_change)(void *arg), void *arg);
void pol_revsync_stop(pol_revsync_t *s);
/* A reload changed the trust classes (on the sync's thread): a
 * "<class>:<serial>" entry is judged against these names from now on, and
 * the set is read again to recount the entries no class can match. Every
 * well-formed entry is in the mirror whatever its class, so a class a reload
 * adds is revocable from its first connection. */
void pol_revsync_set_classes(pol_revsync_t *s, const cfg_tls_t *tls);

#endif
