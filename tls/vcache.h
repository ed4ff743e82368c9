/* tls/vcache: the verified-chain cache.
 *
 * Maps the SHA-256 of a client's presented certificate chain to the identity
 * built when that chain last passed X509_verify_cert, so a device that
 * reconnects with the same certificate skips chain building and the CA's
 * signature check. What may go in, and when an entry stops counting, is
 * decided by tls.c (see the cert-verify callback there); this file is only
 * the bounded, thread-safe table:
 *
 *  - fixed capacity, least recently used entry evicted when full;
 *  - the full 32-byte key is compared on every lookup;
 *  - every entry has a deadline; an entry looked up at or after it (or before
 *    the time it was added: the clock went back) is removed and is a miss;
 *  - one mutex, held only for the table operation: hashing, verification and
 *    the final release of an identity happen outside it.
 *
 * Times are milliseconds on the caller's clock (tls.c passes wall-clock time,
 * the clock certificate validity is measured against), so tests inject them.
 *
 * The cache belongs to the process (tls_store_t), not to one configuration:
 * its capacity changes with tls_vcache_resize, and an identity found under
 * one context is used by another only when the caller's accept function says
 * so (tls.c compares the class trust digests).
 */
#ifndef PORTCULLIS_TLS_VCACHE_H
#define PORTCULLIS_TLS_VCACHE_H

#include <stddef.h>
#include <stdint.h>

#define TLS_VCACHE_KEY_LEN 32   /* SHA-256 */

struct tls_identity;
typedef struct tls_vcache tls_vcache_t;

typedef struct {
    size_t capacity;
    size_t entries;
    uint64_t hits;
    uint64_t misses;      /* lookups that found nothing usable (expired ones included) */
    uint64_t evictions;   /* entries dropped to make room */
    uint64_t expired;     /* entries dropped because their deadline had passed */
} tls_vcache_stats_t;

/* A cache of capacity entries, or NULL (out of memory). A cache of capacity
 * 0 holds nothing (every lookup misses, every insert is refused) until it is
 * resized. */
tls_vcache_t *tls_vcache_new(size_t capacity);
void tls_vcache_free(tls_vcache_t *c);

/* A new reference to the identity cached under key (release it with
 * tls_identity_release), or NULL: no entry, or one whose deadline has passed
 * at now_ms, which is removed. */
struct tls_identity *tls_vcache_lookup(tls_vcache_t *c, const unsigned char *key,
                                       uint64_t now_ms);

/* Decides, under the cache's lock, whether an identity found may be used:
 * a value >= 0 (the caller's meaning: tls.c returns the class index) to use
 * it, -1 to count the lookup as a miss (the entry stays). Must be cheap and
 * must not call back into the cache. */
typedef int (*tls_vcache_accept_fn)(const struct tls_identity *id, void *arg);

/* tls_vcache_lookup, with an entry added max_age_ms or longer before now_ms
 * also expired (UINT64_MAX: no such bound; the caller's own lifetime when it
 * is shorter than the one the entry was inserted with), and the found
 * identity passed to accept (NULL: accept everything, *verdict 0). A new
 * reference, with *verdict set to what accept returned, or NULL
 * (*verdict -1). */
struct tls_identity *tls_vcache_lookup_if(tls_vcache_t *c, const unsigned char *key,
                                          uint64_t now_ms, uint64_t max_age_ms,
                                          tls_vcache_accept_fn accept, void *arg,
                                          int *verdict);

/* Boolean-like: 0 if the entry under key held old and now holds repl (the
 * cache takes a reference to repl and drops its reference to old; the
 * deadline is kept), -1 if it no longer held old (nothing changed). */
int tls_vcache_replace(tls_vcache_t *c, const unsigned char *key, struct tls_identity *old,
                       struct tls_identity *repl);

/* Boolean-like: 0 when the cache now has room for capacity entries (0: it
 * holds nothing), keeping the most recently used entries that fit and
 * dropping the rest (counted as evictions); -1 out of memory, nothing
 * changed. */
int tls_vcache_resize(tls_vcache_t *c, size_t capacity);

/* Boolean-like: 0 if id is now cached under key until expires_ms (the cache
 * takes its own reference; an entry already under key is replaced), -1 if
 * nothing was inserted (id NULL, or expires_ms not after now_ms). When the
 * cache is full the least recently used entry makes room. */
int tls_vcache_insert(tls_vcache_t *c, const unsigned char *key, struct tls_identity *id,
                      uint64_t now_ms, uint64_t expires_ms);

/* Drops the entry under key, if any. */
void tls_vcache_remove(tls_vcache_t *c, const unsigned char *key);

/* Drops every entry (counters are kept). */
void tls_vcache_flush(tls_vcache_t *c);

void tls_vcache_stats(tls_vcache_t *c, tls_vcache_stats_t *st);

#endif
