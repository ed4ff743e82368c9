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

/* A cache of capacity >= 1 entries, or NULL (out of memory, capacity 0). */
tls_vcache_t *tls_vcache_new(size_t capacity);
void tls_vcache_free(tls_vcache_t *c);

/* A new reference to the identity cached under key (release it with
 * tls_identity_release), or NULL: no entry, or one whose deadline has passed
 * at now_ms, which is removed. */
struct tls_identity *tls_vcache_lookup(tls_vcache_t *c, const unsigned char *key,
                                       uint64_t now_ms);

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
