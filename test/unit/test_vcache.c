/* Unit tests: the verified-chain cache table (tls/vcache.c), driven directly
 * with an injected clock: lookups compare the whole key, entries expire, the
 * clock going back is a miss, the least recently used entry makes room,
 * nothing but a live identity goes in, and references are counted right (also
 * under concurrent use).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tls/tls.h"
#include "../../tls/vcache.h"
#include "check.h"

/* ------------------------------------------------------------ the table */

static tls_identity_t *fake_id(const char *serial)
{
    tls_identity_t *id = calloc(1, sizeof(*id));
    id->refs = 1;
    snprintf(id->serial, sizeof(id->serial), "%s", serial);
    return id;
}

static int refs(const tls_identity_t *id)
{
    return __atomic_load_n(&id->refs, __ATOMIC_ACQUIRE);
}

static void key_of(unsigned char *k, unsigned v)
{
    memset(k, 0, TLS_VCACHE_KEY_LEN);
    k[0] = (unsigned char)v;
    k[1] = (unsigned char)(v >> 8);
    k[8] = 0xa5;
}

static tls_vcache_stats_t stats(tls_vcache_t *c)
{
    tls_vcache_stats_t st;
    tls_vcache_stats(c, &st);
    return st;
}

static void test_table(void)
{
    CHECK(tls_vcache_new(0) == NULL, "capacity 0 is refused");

    tls_vcache_t *c = tls_vcache_new(4);
    CHECK(c != NULL, "cache of 4");
    tls_identity_t *a = fake_id("a"), *b = fake_id("b");
    unsigned char ka[TLS_VCACHE_KEY_LEN], kb[TLS_VCACHE_KEY_LEN];
    key_of(ka, 1);
    memcpy(kb, ka, sizeof(kb));
    kb[TLS_VCACHE_KEY_LEN - 1] ^= 1;   /* same bucket, differs only in its last bit */

    CHECK(tls_vcache_lookup(c, ka, 1000) == NULL, "empty cache: miss");
    CHECK(tls_vcache_insert(c, ka, a, 1000, 5000) == 0, "insert");
    CHECK(refs(a) == 2, "the cache holds its own reference");
    tls_identity_t *got = tls_vcache_lookup(c, ka, 1000);
    CHECK(got == a && refs(a) == 3, "lookup: a new reference to the cached identity");
    tls_identity_release(got);
    CHECK(tls_vcache_lookup(c, kb, 1000) == NULL, "a key differing in its last bit is a miss");
    CHECK(tls_vcache_insert(c, kb, b, 1000, 5000) == 0, "insert the neighbour key");
    got = tls_vcache_lookup(c, kb, 1000);
    CHECK(got == b, "each key finds its own identity");
    tls_identity_release(got);
    got = tls_vcache_lookup(c, ka, 1000);
    CHECK(got == a, "... both ways");
    tls_identity_release(got);
    tls_vcache_stats_t st = stats(c);
    CHECK(st.hits == 3 && st.misses == 2 && st.entries == 2 && st.capacity == 4,
          "counters: 3 hits, 2 misses, 2 entries");

    /* failures and dead entries never go in */
    unsigned char kx[TLS_VCACHE_KEY_LEN];
    key_of(kx, 99);
    CHECK(tls_vcache_insert(c, kx, NULL, 1000, 5000) < 0, "no identity (a failed verification): refused");
    CHECK(tls_vcache_insert(c, kx, a, 1000, 1000) < 0 && refs(a) == 2,
          "deadline not after now (an expired chain): refused, no reference taken");
    CHECK(tls_vcache_lookup(c, kx, 1000) == NULL && stats(c).entries == 2, "nothing was inserted");

    /* expiry by the injected clock */
    got = tls_vcache_lookup(c, ka, 4999);
    CHECK(got == a, "hit 1 ms before the deadline");
    tls_identity_release(got);
    CHECK(tls_vcache_lookup(c, ka, 5000) == NULL, "miss at the deadline");
    st = stats(c);
    CHECK(st.entries == 1 && st.expired == 1 && refs(a) == 1,
          "the expired entry is removed and its reference dropped");
    CHECK(tls_vcache_lookup(c, ka, 1000) == NULL, "removed for good, even at an earlier time");
    CHECK(tls_vcache_lookup(c, kb, 999) == NULL && refs(b) == 1,
          "looked up before it was added (clock went back): miss, removed");

    /* replace, remove, flush */
    tls_vcache_insert(c, ka, a, 2000, 9000);
    tls_vcache_insert(c, ka, b, 2100, 9000);
    got = tls_vcache_lookup(c, ka, 2200);
    CHECK(got == b && refs(a) == 1 && stats(c).entries == 1,
          "inserting an existing key replaces its identity");
    tls_identity_release(got);
    tls_vcache_remove(c, ka);
    CHECK(tls_vcache_lookup(c, ka, 2200) == NULL && refs(b) == 1, "remove");
    tls_vcache_insert(c, ka, a, 2000, 9000);
    tls_vcache_insert(c, kb, b, 2000, 9000);
    tls_vcache_flush(c);
    st = stats(c);
    CHECK(st.entries == 0 && refs(a) == 1 && refs(b) == 1, "flush drops every entry");
    CHECK(tls_vcache_lookup(c, ka, 2200) == NULL && tls_vcache_lookup(c, kb, 2200) == NULL,
          "nothing found after a flush");
    tls_vcache_insert(c, ka, a, 2000, 9000);
    tls_vcache_free(c);
    CHECK(refs(a) == 1, "free drops the cache's references");

    /* capacity: least recently used goes first */
    c = tls_vcache_new(3);
    tls_identity_t *ids[5];
    unsigned char k[5][TLS_VCACHE_KEY_LEN];
    for (int i = 0; i < 5; i++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", i);
        ids[i] = fake_id(s);
        key_of(k[i], 100 + (unsigned)i);
    }
    for (int i = 0; i < 3; i++)
        tls_vcache_insert(c, k[i], ids[i], 1000, 9000);
    got = tls_vcache_lookup(c, k[0], 1001);   /* 0 becomes the most recent; 1 the oldest */
    tls_identity_release(got);
    tls_vcache_insert(c, k[3], ids[3], 1002, 9000);
    st = stats(c);
    CHECK(st.entries == 3 && st.evictions == 1, "full: one eviction to make room");
    CHECK(refs(ids[1]) == 1, "the least recently used entry was evicted");
    int present = 1;
    for (int i = 0; i < 4; i++) {
        got = tls_vcache_lookup(c, k[i], 1003);
        present &= (i == 1) ? got == NULL : got == ids[i];
        tls_identity_release(got);
    }
    CHECK(present, "the others are still there");
    tls_vcache_insert(c, k[4], ids[4], 1004, 9000);
    CHECK(refs(ids[0]) == 1 && stats(c).evictions == 2, "then the next least recently used");
    tls_vcache_free(c);
    for (int i = 0; i < 5; i++) {
        CHECK(refs(ids[i]) == 1, "reference count back to the owner's");
        tls_identity_release(ids[i]);
    }
    tls_identity_release(a);
    tls_identity_release(b);

    /* a capacity of one */
    c = tls_vcache_new(1);
    a = fake_id("a");
    tls_vcache_insert(c, ka, a, 1, 9);
    tls_vcache_insert(c, kb, a, 1, 9);
    got = tls_vcache_lookup(c, kb, 2);
    CHECK(got == a && tls_vcache_lookup(c, ka, 2) == NULL && refs(a) == 3,
          "capacity 1: the newer entry replaces the older");
    tls_identity_release(got);
    tls_vcache_free(c);
    CHECK(refs(a) == 1, "capacity 1: references released");
    tls_identity_release(a);
}

/* Several threads sharing one small cache: afterwards every reference the
 * cache took has been given back. (ASan/UBSan build; a race would also show
 * as a corrupted list.) */
#define NTHREADS 4
#define NKEYS 97
static tls_vcache_t *shared;
static tls_identity_t *shared_ids[NKEYS];

static void *hammer(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    unsigned char key[TLS_VCACHE_KEY_LEN];
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned v = (seed >> 8) % NKEYS;
        key_of(key, v);
        uint64_t now = 1000 + (uint64_t)(i % 50);
        tls_identity_t *got = tls_vcache_lookup(shared, key, now);
        if (got) {
            if (got != shared_ids[v])
                abort();
            tls_identity_release(got);
        } else {
            tls_vcache_insert(shared, key, shared_ids[v], now, now + 30 + v % 20);
        }
        if (i % 997 == 0)
            tls_vcache_remove(shared, key);
    }
    return NULL;
}

static void test_threads(void)
{
    shared = tls_vcache_new(32);
    for (int i = 0; i < NKEYS; i++)
        shared_ids[i] = fake_id("t");
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, hammer, (void *)(size_t)(i + 1));
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    tls_vcache_stats_t st = stats(shared);
    CHECK(st.entries <= 32 && st.hits + st.misses == NTHREADS * 20000ULL,
          "threads: bounded, every lookup counted");
    tls_vcache_free(shared);
    int ok = 1;
    for (int i = 0; i < NKEYS; i++) {
        ok &= refs(shared_ids[i]) == 1;
        tls_identity_release(shared_ids[i]);
    }
    CHECK(ok, "threads: every reference given back");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_table();
    test_threads();
    return check_done();
}
