/* tls/store: what TLS keeps across configuration generations.
 *
 * One tls_store_t per process, shared by every tls_ctx_t (one per
 * configuration generation) and by every worker thread:
 *
 *  - the server-side session store. Each context's SSL_CTX uses it through
 *    SSL_CTX_sess_set_new_cb/get_cb/remove_cb with OpenSSL's own cache
 *    disabled (SSL_SESS_CACHE_NO_INTERNAL), so a session made under one
 *    generation can be resumed under the next. A bounded hash table keyed by
 *    session id: least recently used entry evicted at capacity, an entry
 *    past SSL_SESSION_get_time + get_timeout (or the resuming context's own
 *    lifetime) dropped when it is looked up, and one SSL_SESSION reference
 *    held per entry;
 *  - the verify cache (tls/vcache.h).
 *
 * Whether a session or a cached verification made under one context may be
 * used by another is decided by tls.c (class trust digests); the store only
 * asks its caller's accept function, under its lock.
 *
 * Threads: every function may be called from any thread at any time; one
 * mutex guards the session table (held for the table operation only: no
 * crypto, no allocation by OpenSSL, and sessions are freed after it is
 * dropped), the verify cache has its own.
 * Lifetime: the store outlives every tls_ctx_t attached to it (free the
 * contexts first); what it holds points into no configuration.
 */
#ifndef PORTCULLIS_TLS_STORE_H
#define PORTCULLIS_TLS_STORE_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"
#include "vcache.h"

typedef struct tls_store tls_store_t;

typedef struct {
    size_t capacity;
    size_t entries;
    uint64_t hits;        /* lookups that returned a session (rebased ones included) */
    uint64_t misses;      /* lookups that found nothing usable (the three below included) */
    uint64_t expired;     /* entries dropped on lookup: past their timeout */
    uint64_t mismatched;  /* found, but made under a class trust the context does not have */
    uint64_t evictions;   /* entries dropped to make room (capacity reached or shrunk) */
    uint64_t removed;     /* entries dropped at OpenSSL's request (remove callback) */
    uint64_t rebased;     /* entries replaced by a copy for another context's class index */
} tls_sess_stats_t;

/* An empty store of capacity 0 (nothing is kept until tls_store_configure),
 * or NULL (out of memory). */
tls_store_t *tls_store_new(void);
/* Frees every session and cached verification; no context may use it after. */
void tls_store_free(tls_store_t *s);

/* Applies cfg's capacities (tls.session_cache.size, tls.verify_cache.size;
 * 0 disables that part): a smaller capacity evicts the least recently used
 * entries, a larger one keeps every entry. Boolean-like: 0, or -1 out of
 * memory for the verify cache (its old capacity stays; the session capacity
 * is applied either way). Called by whoever builds a generation, once the
 * whole generation was built, so a failed build changes nothing. */
int tls_store_configure(tls_store_t *s, const cfg_t *cfg);

void tls_store_sess_stats(tls_store_t *s, tls_sess_stats_t *st);
/* 0 and the verify cache's counters, or -1 when its capacity is 0. */
int tls_store_vcache_stats(tls_store_t *s, tls_vcache_stats_t *st);
/* The verify cache (never NULL; capacity 0 when disabled). */
tls_vcache_t *tls_store_vcache(tls_store_t *s);

/* ---- the session table, for tls.c's OpenSSL callbacks ---- */

/* Boolean: 1 if the store took over the caller's reference to sess (it is
 * kept under its session id; an entry already under that id is replaced),
 * 0 if it did not (capacity 0, no id, out of memory: the caller keeps it). */
int tls_store_sess_add(tls_store_t *s, SSL_SESSION *sess);

/* Decides, under the store's lock, whether a session found may be used by the
 * caller: >= 0 to use it (the value is the caller's: tls.c returns the class
 * index), -1 for a miss (the entry stays for the contexts that can use it).
 * Must be cheap and must not call back into the store. */
typedef int (*tls_sess_accept_fn)(const SSL_SESSION *sess, void *arg);

/* A new reference to the session under id, with *verdict what accept
 * returned; or NULL (*verdict -1): none, refused by accept, or expired (at
 * SSL_SESSION_get_time + min(SSL_SESSION_get_timeout, max_life_s) or later,
 * or created in the future: the entry is dropped). */
SSL_SESSION *tls_store_sess_get(tls_store_t *s, const unsigned char *id, size_t len,
                                long max_life_s, tls_sess_accept_fn accept, void *arg,
                                int *verdict);

/* Boolean-like: 0 if the entry under old's id held old and now holds repl
 * (the store takes a reference to repl and drops its reference to old), -1
 * if it did not (nothing changed). */
int tls_store_sess_replace(tls_store_t *s, SSL_SESSION *old, SSL_SESSION *repl);

/* Drops the entry under id, if any (OpenSSL's remove callback). */
void tls_store_sess_remove(tls_store_t *s, const unsigned char *id, size_t len);

#endif
