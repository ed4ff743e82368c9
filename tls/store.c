/* tls/store: the process-level session store and verify cache (store.h).
 *
 * The session table is a chained hash table whose bucket array doubles as it
 * fills (tls.session_cache.size may be ten million: nothing is reserved up
 * front), with the entries on a doubly linked list from most to least
 * recently used. An entry is allocated when a session is added, before the
 * lock is taken. Session ids are chosen by the server (RAND_bytes), so a
 * client cannot place entries in one bucket; the hash mixes every byte of the
 * id with a per-store random seed anyway, and equality is always decided on
 * the whole id.
 */
#include "store.h"

#include "../base/metrics.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIN_BUCKETS 1024

typedef struct sess_entry {
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    size_t idlen;
    uint64_t hash;
    SSL_SESSION *sess;                /* the store's reference */
    struct sess_entry *hnext;         /* next in the bucket */
    struct sess_entry *prev, *next;   /* LRU list, most recent first */
} sess_entry_t;

struct tls_store {
    pthread_mutex_t mu;
    sess_entry_t **buckets;
    size_t nbuckets;                  /* a power of two */
    sess_entry_t *head, *tail;
    uint64_t seed;
    tls_sess_stats_t st;              /* st.capacity is the bound */
    tls_vcache_t *vcache;
};

tls_store_t *tls_store_new(void)
{
    tls_store_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->nbuckets = MIN_BUCKETS;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    s->vcache = tls_vcache_new(0);
    if (!s->buckets || !s->vcache || pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->buckets);
        tls_vcache_free(s->vcache);
        free(s);
        return NULL;
    }
    if (RAND_bytes((unsigned char *)&s->seed, sizeof(s->seed)) != 1)
        s->seed = 0x2545f4914f6cdd1dULL;   /* only spreads buckets; any value is correct */
    return s;
}

void tls_store_free(tls_store_t *s)
{
    if (!s)
        return;
    for (sess_entry_t *e = s->head, *n; e; e = n) {
        n = e->next;
        SSL_SESSION_free(e->sess);
        free(e);
    }
    tls_vcache_free(s->vcache);
    pthread_mutex_destroy(&s->mu);
    free(s->buckets);
    free(s);
}

/* ---- under the lock ---- */

static uint64_t hash_id(const tls_store_t *s, const unsigned char *id, size_t len)
{
    uint64_t h = s->seed ^ len;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w = 0;
        memcpy(&w, id + i, len - i < 8 ? len - i : 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    return h;
}

/* The link that points at the entry under id (*link is NULL if none). */
static sess_entry_t **find(tls_store_t *s, const unsigned char *id, size_t len, uint64_t h)
{
    sess_entry_t **link = &s->buckets[h & (s->nbuckets - 1)];
    while (*link && ((*link)->idlen != len || memcmp((*link)->id, id, len) != 0))
        link = &(*link)->hnext;
    return link;
}

static void lru_unlink(tls_store_t *s, sess_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(tls_store_t *s, sess_entry_t *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
}

/* Unlinks the entry *link points at and puts it on *gone, whose sessions the
 * caller frees once the lock is dropped (sess_free_list). */
static void drop(tls_store_t *s, sess_entry_t **link, sess_entry_t **gone)
{
    sess_entry_t *e = *link;
    *link = e->hnext;
    lru_unlink(s, e);
    e->hnext = *gone;
    *gone = e;
    s->st.entries--;
}

static void drop_entry(tls_store_t *s, sess_entry_t *e, sess_entry_t **gone)
{
    drop(s, find(s, e->id, e->idlen, e->hash), gone);
}

/* Doubles the bucket array when there are more entries than buckets; on
 * out of memory the chains just grow longer. */
static void maybe_grow(tls_store_t *s)
{
    if (s->st.entries <= s->nbuckets || s->nbuckets > SIZE_MAX / 2 / sizeof(*s->buckets))
        return;
    size_t nb = s->nbuckets * 2;
    sess_entry_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (sess_entry_t *e = s->buckets[i], *n; e; e = n) {
            n = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

static int expired(const SSL_SESSION *sess, time_t now, long max_life_s)
{
    long t = SSL_SESSION_get_time(sess), life = SSL_SESSION_get_timeout(sess);
    if (max_life_s >= 0 && max_life_s < life)
        life = max_life_s;
    return now < t || now - t >= life;
}

static void evict_to(tls_store_t *s, size_t cap, sess_entry_t **gone)
{
    while (s->st.entries > cap) {
        drop_entry(s, s->tail, gone);
        s->st.evictions++;
    }
}

/* ---- outside the lock ---- */

static void sess_free_list(sess_entry_t *gone)
{
    for (sess_entry_t *n; gone; gone = n) {
        n = gone->hnext;
        SSL_SESSION_free(gone->sess);
        free(gone);
    }
}

int tls_store_sess_add(tls_store_t *s, SSL_SESSION *sess)
{
    unsigned int len = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &len);
    if (!id || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return 0;
    sess_entry_t *e = calloc(1, sizeof(*e)), *gone = NULL;
    if (!e)
        return 0;
    memcpy(e->id, id, len);
    e->idlen = len;
    e->hash = hash_id(s, id, len);
    e->sess = sess;
    time_t now = time(NULL);
    pthread_mutex_lock(&s->mu);
    if (s->st.capacity == 0) {
        pthread_mutex_unlock(&s->mu);
        free(e);
        return 0;
    }
    sess_entry_t **link = find(s, id, len, e->hash);
    if (*link)
        drop(s, link, &gone);   /* the same id again: the newer wins */
    /* Sessions nobody resumes would sit until evicted: the oldest two go if
     * they are past their time, so the table drains as it is used. */
    for (int i = 0; i < 2 && s->tail && expired(s->tail->sess, now, -1); i++) {
        drop_entry(s, s->tail, &gone);
        s->st.expired++;
    }
    evict_to(s, s->st.capacity - 1, &gone);
    link = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->hnext = *link;
    *link = e;
    lru_push_front(s, e);
    s->st.entries++;
    maybe_grow(s);
    pthread_mutex_unlock(&s->mu);
    sess_free_list(gone);
    return 1;
}

SSL_SESSION *tls_store_sess_get(tls_store_t *s, const unsigned char *id, size_t len,
                                long max_life_s, tls_sess_accept_fn accept, void *arg,
                                int *verdict)
{
    SSL_SESSION *got = NULL;
    sess_entry_t *gone = NULL;
    *verdict = -1;
    uint64_t h = hash_id(s, id, len);
    time_t now = time(NULL);
    pthread_mutex_lock(&s->mu);
    sess_entry_t **link = find(s, id, len, h), *e = *link;
    if (e && expired(e->sess, now, max_life_s)) {
        drop(s, link, &gone);
        s->st.expired++;
        e = NULL;
    } else if (e && (*verdict = accept(e->sess, arg)) < 0) {
        s->st.mismatched++;
        e = NULL;
    }
    if (e) {
        if (e != s->head) {
            lru_unlink(s, e);
            lru_push_front(s, e);
        }
        got = e->sess;
        SSL_SESSION_up_ref(got);   /* under the lock: no one can free it meanwhile */
        s->st.hits++;
        pc_count1(TLS_SCACHE, PC_CACHE_HIT);   /* the caller's thread: its own counters */
    } else {
        s->st.misses++;
        pc_count1(TLS_SCACHE, PC_CACHE_MISS);
    }
    pthread_mutex_unlock(&s->mu);
    sess_free_list(gone);
    return got;
}

int tls_store_sess_replace(tls_store_t *s, SSL_SESSION *old, SSL_SESSION *repl)
{
    unsigned int len = 0;
    const unsigned char *id = SSL_SESSION_get_id(old, &len);
    int rc = -1;
    if (!id || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return -1;
    uint64_t h = hash_id(s, id, len);
    SSL_SESSION_up_ref(repl);
    pthread_mutex_lock(&s->mu);
    sess_entry_t *e = *find(s, id, len, h);
    if (e && e->sess == old) {
        e->sess = repl;
        s->st.rebased++;
        rc = 0;
    }
    pthread_mutex_unlock(&s->mu);
    SSL_SESSION_free(rc == 0 ? old : repl);
    return rc;
}

void tls_store_sess_remove(tls_store_t *s, const unsigned char *id, size_t len)
{
    sess_entry_t *gone = NULL;
    if (len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return;
    uint64_t h = hash_id(s, id, len);
    pthread_mutex_lock(&s->mu);
    sess_entry_t **link = find(s, id, len, h);
    if (*link) {
        drop(s, link, &gone);
        s->st.removed++;
    }
    pthread_mutex_unlock(&s->mu);
    sess_free_list(gone);
}

int tls_store_configure(tls_store_t *s, const cfg_t *cfg)
{
    sess_entry_t *gone = NULL;
    pthread_mutex_lock(&s->mu);
    s->st.capacity = cfg->tls.session_cache_size;
    evict_to(s, s->st.capacity, &gone);
    pthread_mutex_unlock(&s->mu);
    sess_free_list(gone);
    return tls_vcache_resize(s->vcache, cfg->tls.verify_cache_size);
}

void tls_store_sess_stats(tls_store_t *s, tls_sess_stats_t *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    pthread_mutex_unlock(&s->mu);
}

int tls_store_vcache_stats(tls_store_t *s, tls_vcache_stats_t *st)
{
    tls_vcache_stats(s->vcache, st);
    return st->capacity ? 0 : -1;
}

tls_vcache_t *tls_store_vcache(tls_store_t *s)
{
    return s->vcache;
}
