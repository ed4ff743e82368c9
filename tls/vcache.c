/* tls/vcache: the verified-chain cache (see vcache.h).
 *
 * A chained hash table over a fixed array of entries, with the entries in use
 * on a doubly linked list from most to least recently used. Nothing is
 * allocated after tls_vcache_new() except by tls_vcache_resize(). The bucket
 * index comes from the first bytes of the key (a SHA-256, so already
 * uniform) mixed with a per-cache random seed; equality is always decided on
 * the whole key.
 */
#include "vcache.h"

#include "../base/metrics.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

typedef struct entry {
    unsigned char key[TLS_VCACHE_KEY_LEN];
    struct entry *hnext;          /* next in the bucket */
    struct entry *prev, *next;    /* LRU list; a free entry uses next only */
    tls_identity_t *id;           /* the cache's reference; NULL when free */
    uint64_t added_ms, expires_ms;
} entry_t;

struct tls_vcache {
    pthread_mutex_t mu;
    entry_t *slots;
    size_t capacity;
    entry_t **buckets;
    size_t mask;                  /* buckets - 1, a power of two minus one */
    uint64_t seed;
    entry_t *head, *tail;         /* most / least recently used */
    entry_t *free;
    tls_vcache_stats_t st;
};

static size_t buckets_for(size_t capacity)
{
    size_t nb = 1;
    while (nb < capacity)
        nb <<= 1;
    return nb;
}

tls_vcache_t *tls_vcache_new(size_t capacity)
{
    if (capacity > SIZE_MAX / 2 / sizeof(entry_t))
        return NULL;
    tls_vcache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    size_t nb = buckets_for(capacity);
    c->slots = capacity ? calloc(capacity, sizeof(*c->slots)) : NULL;
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if ((capacity && !c->slots) || !c->buckets || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->slots);
        free(c->buckets);
        free(c);
        return NULL;
    }
    c->capacity = c->st.capacity = capacity;
    c->mask = nb - 1;
    if (RAND_bytes((unsigned char *)&c->seed, sizeof(c->seed)) != 1)
        c->seed = 0x5bd1e9955bd1e995ULL;   /* only spreads buckets; any value is correct */
    for (size_t i = 0; i < capacity; i++)
        c->slots[i].next = i + 1 < capacity ? &c->slots[i + 1] : NULL;
    c->free = capacity ? &c->slots[0] : NULL;
    return c;
}

void tls_vcache_free(tls_vcache_t *c)
{
    if (!c)
        return;
    for (entry_t *e = c->head; e; e = e->next)
        tls_identity_release(e->id);
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c->buckets);
    free(c);
}

/* ---- under the lock ---- */

static entry_t **bucket(tls_vcache_t *c, const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    h = (h ^ c->seed) * 0x9e3779b97f4a7c15ULL;
    return &c->buckets[(h ^ (h >> 32)) & c->mask];
}

/* The link that points at the entry under key (*link is NULL if none). */
static entry_t **find(tls_vcache_t *c, const unsigned char *key)
{
    entry_t **link = bucket(c, key);
    while (*link && memcmp((*link)->key, key, TLS_VCACHE_KEY_LEN) != 0)
        link = &(*link)->hnext;
    return link;
}

static void lru_unlink(tls_vcache_t *c, entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(tls_vcache_t *c, entry_t *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

/* Unlinks the entry *link points at and returns its identity reference,
 * which the caller releases once the lock is dropped. */
static tls_identity_t *drop(tls_vcache_t *c, entry_t **link)
{
    entry_t *e = *link;
    tls_identity_t *id = e->id;
    *link = e->hnext;
    lru_unlink(c, e);
    e->hnext = NULL;
    e->id = NULL;
    e->next = c->free;
    c->free = e;
    c->st.entries--;
    return id;
}

/* ---- operations ---- */

tls_identity_t *tls_vcache_lookup_if(tls_vcache_t *c, const unsigned char *key, uint64_t now_ms,
                                     uint64_t max_age_ms, tls_vcache_accept_fn accept, void *arg,
                                     int *verdict)
{
    tls_identity_t *got = NULL, *old = NULL;
    *verdict = -1;
    pthread_mutex_lock(&c->mu);
    entry_t **link = find(c, key);
    entry_t *e = *link;
    if (e && (now_ms < e->added_ms || now_ms >= e->expires_ms ||
              now_ms - e->added_ms >= max_age_ms)) {
        old = drop(c, link);
        c->st.expired++;
        e = NULL;
    }
    if (e && (*verdict = accept ? accept(e->id, arg) : 0) < 0)
        e = NULL;   /* made under a trust this caller does not share: a miss */
    if (e) {
        if (e != c->head) {
            lru_unlink(c, e);
            lru_push_front(c, e);
        }
        got = e->id;
        __atomic_add_fetch(&got->refs, 1, __ATOMIC_ACQ_REL);
        c->st.hits++;
        pc_count1(TLS_VCACHE, PC_CACHE_HIT);   /* the caller's thread: its own counters */
    } else {
        c->st.misses++;
        pc_count1(TLS_VCACHE, PC_CACHE_MISS);
    }
    pthread_mutex_unlock(&c->mu);
    tls_identity_release(old);
    return got;
}

tls_identity_t *tls_vcache_lookup(tls_vcache_t *c, const unsigned char *key, uint64_t now_ms)
{
    int verdict;
    return tls_vcache_lookup_if(c, key, now_ms, UINT64_MAX, NULL, NULL, &verdict);
}

int tls_vcache_replace(tls_vcache_t *c, const unsigned char *key, tls_identity_t *old,
                       tls_identity_t *repl)
{
    int rc = -1;
    __atomic_add_fetch(&repl->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&c->mu);
    entry_t *e = *find(c, key);
    if (e && e->id == old) {
        e->id = repl;
        rc = 0;
    }
    pthread_mutex_unlock(&c->mu);
    tls_identity_release(rc == 0 ? old : repl);
    return rc;
}

int tls_vcache_insert(tls_vcache_t *c, const unsigned char *key, tls_identity_t *id,
                      uint64_t now_ms, uint64_t expires_ms)
{
    if (!id || expires_ms <= now_ms)
        return -1;
    tls_identity_t *old = NULL;
    __atomic_add_fetch(&id->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&c->mu);
    if (c->capacity == 0) {
        pthread_mutex_unlock(&c->mu);
        tls_identity_release(id);
        return -1;
    }
    entry_t *e = *find(c, key);
    if (e) {
        /* verified again meanwhile (two handshakes raced): keep the newer */
        old = e->id;
        lru_unlink(c, e);
    } else {
        if (!c->free) {
            old = drop(c, find(c, c->tail->key));
            c->st.evictions++;
        }
        e = c->free;
        c->free = e->next;
        memcpy(e->key, key, TLS_VCACHE_KEY_LEN);
        entry_t **b = bucket(c, key);
        e->hnext = *b;
        *b = e;
        c->st.entries++;
    }
    e->id = id;
    e->added_ms = now_ms;
    e->expires_ms = expires_ms;
    lru_push_front(c, e);
    pthread_mutex_unlock(&c->mu);
    tls_identity_release(old);
    return 0;
}

void tls_vcache_remove(tls_vcache_t *c, const unsigned char *key)
{
    tls_identity_t *old = NULL;
    pthread_mutex_lock(&c->mu);
    entry_t **link = find(c, key);
    if (*link)
        old = drop(c, link);
    pthread_mutex_unlock(&c->mu);
    tls_identity_release(old);
}

void tls_vcache_flush(tls_vcache_t *c)
{
    /* Rare (a change of trust), so the references are released under the
     * lock rather than collected: releasing is a free(), never crypto. */
    pthread_mutex_lock(&c->mu);
    while (c->head)
        tls_identity_release(drop(c, find(c, c->head->key)));
    pthread_mutex_unlock(&c->mu);
}

/* Moves the entries, most recent first, into new arrays of the new size;
 * whatever does not fit is released. Rare (a configuration change), so the
 * releases happen under the lock, as in tls_vcache_flush. */
int tls_vcache_resize(tls_vcache_t *c, size_t capacity)
{
    if (capacity > SIZE_MAX / 2 / sizeof(entry_t))
        return -1;
    pthread_mutex_lock(&c->mu);
    int same = c->capacity == capacity;
    pthread_mutex_unlock(&c->mu);
    if (same)
        return 0;   /* configure runs on one thread: the capacity cannot move meanwhile */
    size_t nb = buckets_for(capacity);
    entry_t *slots = capacity ? calloc(capacity, sizeof(*slots)) : NULL;
    entry_t **buckets = calloc(nb, sizeof(*buckets));
    if ((capacity && !slots) || !buckets) {
        free(slots);
        free(buckets);
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    entry_t *old_slots = c->slots, **old_buckets = c->buckets, *e = c->head;
    c->slots = slots;
    c->buckets = buckets;
    c->mask = nb - 1;
    c->capacity = c->st.capacity = capacity;
    c->head = c->tail = NULL;
    size_t k = 0;
    for (; e; e = e->next) {
        if (k == capacity) {
            tls_identity_release(e->id);
            c->st.evictions++;
            continue;
        }
        entry_t *n = &slots[k++];
        memcpy(n->key, e->key, TLS_VCACHE_KEY_LEN);
        n->id = e->id;
        n->added_ms = e->added_ms;
        n->expires_ms = e->expires_ms;
        entry_t **b = bucket(c, n->key);
        n->hnext = *b;
        *b = n;
        n->prev = c->tail;   /* appended: the order, most recent first, is kept */
        n->next = NULL;
        if (c->tail)
            c->tail->next = n;
        else
            c->head = n;
        c->tail = n;
    }
    c->st.entries = k;
    c->free = NULL;
    for (size_t i = capacity; i > k; i--) {
        slots[i - 1].next = c->free;
        c->free = &slots[i - 1];
    }
    pthread_mutex_unlock(&c->mu);
    free(old_slots);
    free(old_buckets);
    return 0;
}

void tls_vcache_stats(tls_vcache_t *c, tls_vcache_stats_t *st)
{
    pthread_mutex_lock(&c->mu);
    *st = c->st;
    pthread_mutex_unlock(&c->mu);
}
