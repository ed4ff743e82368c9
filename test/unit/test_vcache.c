/* Unit tests: the verified-chain cache.
 *
 * Part one drives the table directly with an injected clock: lookups compare
 * the whole key, entries expire, the clock going back is a miss, the least
 * recently used entry makes room, nothing but a live identity goes in, and
 * references are counted right (also under concurrent use).
 *
 * Part two runs real handshakes through tls_ctx_new()'s SSL_CTX over memory
 * BIOs, with a PKI made here: a chain verified once is a hit the next time;
 * a chain that fails is refused every time and never cached; a certificate
 * with the same to-be-signed part but another signature, or the same leaf
 * without its intermediate, is not a hit.
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tls/tls.h"
#include "../../tls/vcache.h"
#include "check.h"
#include "pki_util.h"

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

static int accept_none(const tls_identity_t *id, void *arg)
{
    (void)id;
    (void)arg;
    return -1;
}

static int accept_seven(const tls_identity_t *id, void *arg)
{
    (void)id;
    (void)arg;
    return 7;
}

/* Resizing keeps the most recently used entries, in their order; a
 * conditional lookup and an in-place replacement. */
static void test_resize(void)
{
    tls_vcache_t *c = tls_vcache_new(4);
    unsigned char k[5][TLS_VCACHE_KEY_LEN];
    tls_identity_t *ids[5];
    for (int i = 0; i < 4; i++) {
        key_of(k[i], 100 + (unsigned)i);
        ids[i] = fake_id("r");
        tls_vcache_insert(c, k[i], ids[i], 1000, 9000);   /* 3 is the most recent */
    }
    tls_identity_release(tls_vcache_lookup(c, k[0], 1001));   /* now 0, 3, 2, 1 */
    CHECK(tls_vcache_resize(c, 2) == 0 && stats(c).entries == 2 && stats(c).capacity == 2 &&
              stats(c).evictions == 2 && refs(ids[1]) == 1 && refs(ids[2]) == 1,
          "resize 4 -> 2: the two most recent stay, the others are released");
    CHECK(tls_vcache_resize(c, 6) == 0 && stats(c).entries == 2 && stats(c).capacity == 6,
          "resize 2 -> 6: every entry kept");
    key_of(k[4], 200);
    ids[4] = fake_id("n");
    for (int i = 1; i < 5; i++)
        if (i != 3)
            tls_vcache_insert(c, k[i], ids[i], 1002, 9000);
    CHECK(stats(c).entries == 5 && stats(c).evictions == 2, "room for the new capacity");
    tls_vcache_resize(c, 1);
    tls_identity_t *got = tls_vcache_lookup(c, k[4], 1003);
    CHECK(got == ids[4] && stats(c).entries == 1, "resize to 1: the most recent is the one kept");
    tls_identity_release(got);

    int verdict = 0;
    CHECK(tls_vcache_lookup_if(c, k[4], 1003, UINT64_MAX, accept_none, NULL, &verdict) == NULL &&
              verdict == -1 && stats(c).entries == 1,
          "lookup_if: refused by accept is a miss, the entry stays");
    got = tls_vcache_lookup_if(c, k[4], 1003, UINT64_MAX, accept_seven, NULL, &verdict);
    CHECK(got == ids[4] && verdict == 7, "lookup_if: accept's verdict is passed back");
    tls_identity_release(got);
    tls_identity_t *repl = fake_id("x");
    CHECK(tls_vcache_replace(c, k[4], ids[0], repl) < 0 && refs(repl) == 1,
          "replace: refused when the entry holds another identity");
    CHECK(tls_vcache_replace(c, k[4], ids[4], repl) == 0 && refs(repl) == 2 && refs(ids[4]) == 1,
          "replace: swaps the reference");
    got = tls_vcache_lookup(c, k[4], 8999);
    CHECK(got == repl, "replace: the deadline is kept");
    tls_identity_release(got);
    CHECK(tls_vcache_lookup(c, k[4], 9000) == NULL, "replace: ... and still ends the entry");
    tls_vcache_insert(c, k[4], repl, 5000, 9000);
    CHECK(tls_vcache_lookup_if(c, k[4], 5999, 1000, NULL, NULL, &verdict) == repl &&
              refs(repl) == 3,
          "lookup_if: younger than max_age: a hit");
    tls_identity_release(repl);
    CHECK(tls_vcache_lookup_if(c, k[4], 6000, 1000, NULL, NULL, &verdict) == NULL &&
              stats(c).entries == 0,
          "lookup_if: max_age old: expired, dropped (a shorter lifetime of the caller)");

    tls_vcache_resize(c, 0);
    CHECK(stats(c).entries == 0 && tls_vcache_insert(c, k[0], ids[0], 1, 9) < 0,
          "resize to 0: empty, and inserts are refused");
    tls_vcache_free(c);
    for (int i = 0; i < 5; i++) {
        CHECK(refs(ids[i]) == 1, "resize: references back to the owner's");
        tls_identity_release(ids[i]);
    }
    tls_identity_release(repl);
}

static void test_table(void)
{
    tls_vcache_t *z = tls_vcache_new(0);
    {
        unsigned char k0[TLS_VCACHE_KEY_LEN];
        key_of(k0, 1);
        tls_identity_t *zi = fake_id("aa");
        CHECK(z && tls_vcache_insert(z, k0, zi, 1, 9) < 0 && tls_vcache_lookup(z, k0, 2) == NULL &&
                  refs(zi) == 1,
              "capacity 0: holds nothing (insert refused, lookup misses, no reference kept)");
        tls_identity_release(zi);
        tls_vcache_free(z);
    }

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
    test_resize();
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

/* ------------------------------------------------------------ handshakes */

typedef struct {
    int ok;                /* the server completed the handshake */
    int cached;            /* ... from the verify cache */
    char serial[41];       /* the identity it attached */
    char fingerprint[65];
} result_t;

/* One fresh full handshake (no session offered) over a BIO pair. */
static result_t handshake(tls_ctx_t *t, SSL_CTX *cctx)
{
    result_t r = {0};
    SSL *s = SSL_new(tls_ctx_ssl(t)), *c = SSL_new(cctx);
    BIO *sb, *cb;
    BIO_new_bio_pair(&sb, 0, &cb, 0);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    int cdone = 0;
    for (int i = 0; i < 50; i++) {
        if (!cdone) {
            int rc = SSL_do_handshake(c);
            int e = SSL_get_error(c, rc);
            if (rc == 1)
                cdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                break;
        }
        int rs = SSL_do_handshake(s);
        if (rs == 1) {
            r.ok = 1;
            break;
        }
        int e = SSL_get_error(s, rs);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            break;
    }
    if (r.ok) {
        tls_identity_t *id = tls_identity_get(s);
        r.ok = id != NULL;
        if (id) {
            snprintf(r.serial, sizeof(r.serial), "%s", id->serial);
            snprintf(r.fingerprint, sizeof(r.fingerprint), "%s", id->fingerprint);
        }
        tls_identity_release(id);
    }
    r.cached = tls_verify_cached(s);
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return r;
}

static tls_vcache_stats_t ctx_stats(tls_ctx_t *t)
{
    tls_vcache_stats_t st;
    memset(&st, 0, sizeof(st));
    tls_ctx_vcache_stats(t, &st);
    return st;
}

static void test_handshakes(void)
{
    char dir[] = "/tmp/portcullis-vcache-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "scratch directory");
        return;
    }
    char p_srv[96], p_ca[96];
    snprintf(p_srv, sizeof(p_srv), "%s/server.pem", dir);
    snprintf(p_ca, sizeof(p_ca), "%s/ca.pem", dir);

    pair_t root = make_pair("Test Device CA", 1, NULL, 1);
    pair_t other = make_pair("Other CA", 2, NULL, 1);
    pair_t inter = make_pair("Test Intermediate CA", 3, &root, 1);
    pair_t srv = make_pair("localhost", 4, &root, 0);
    pair_t a = make_pair("device-a", 0x1234, &root, 0);
    pair_t b = make_pair("device-b", 0x5678, &root, 0);
    pair_t viaint = make_pair("device-i", 0x9abc, &inter, 0);
    pair_t wrong = make_pair("device-a", 0x1234, &other, 0);   /* untrusted CA */
    /* a's exact to-be-signed part (same subject, serial, issuer name, key),
     * signed by a key that is not the CA's: only the signature differs */
    X509 *forged = X509_dup(a.cert);
    X509_sign(forged, other.key, EVP_sha256());

    write_pem(p_srv, srv.cert, srv.key);
    write_pem(p_ca, root.cert, NULL);

    cfg_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg_cert_t certs[1] = {{p_srv, p_srv}};
    cfg_class_t classes[1];
    memset(classes, 0, sizeof(classes));
    snprintf(classes[0].name, sizeof(classes[0].name), "device");
    classes[0].ca_file = p_ca;
    cfg.tls.certs = certs;
    cfg.tls.ncerts = 1;
    cfg.tls.min_version = CFG_TLS12;
    cfg.tls.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    cfg.tls.ciphersuites = "TLS_AES_128_GCM_SHA256";
    cfg.tls.groups = "P-256";
    cfg.tls.session_cache_size = 100;
    cfg.tls.session_lifetime_ms = 3600000;
    cfg.tls.verify_cache_size = 100;
    cfg.tls.verify_cache_lifetime_ms = 3600000;
    cfg.tls.classes = classes;
    cfg.tls.nclasses = 1;
    cfg.identity.device_id_source = CFG_DEVID_SAN_URI;
    cfg.identity.device_id_prefix = "urn:portcullis:device:";

    char err[256] = "";
    tls_ctx_t *t = tls_ctx_new(&cfg, NULL, err, sizeof(err));
    CHECK(t != NULL, "tls_ctx_new with a verify cache");
    if (!t) {
        printf("# %s\n", err);
        return;
    }
    SSL_CTX *ca = client(a.cert, a.key, NULL, 0), *ca12 = client(a.cert, a.key, NULL, 1);
    SSL_CTX *cb = client(b.cert, b.key, NULL, 0);
    SSL_CTX *ci = client(viaint.cert, viaint.key, inter.cert, 0);
    SSL_CTX *ci_alone = client(viaint.cert, viaint.key, NULL, 0);
    SSL_CTX *cw = client(wrong.cert, wrong.key, NULL, 0);
    SSL_CTX *cf = client(forged, a.key, NULL, 0);

    result_t r1 = handshake(t, ca);
    tls_vcache_stats_t st = ctx_stats(t);
    CHECK(r1.ok && !r1.cached && st.misses == 1 && st.entries == 1,
          "first handshake: verified in full, then cached");
    result_t r2 = handshake(t, ca);
    st = ctx_stats(t);
    CHECK(r2.ok && r2.cached && st.hits == 1 && st.entries == 1,
          "same certificate, fresh handshake: a cache hit");
    CHECK(!strcmp(r2.serial, "1234") && !strcmp(r2.fingerprint, r1.fingerprint),
          "the hit carries the same identity");
    result_t r3 = handshake(t, ca12);
    CHECK(r3.ok && r3.cached && ctx_stats(t).hits == 2, "also a hit over TLS 1.2");

    result_t rf = handshake(t, cf);
    st = ctx_stats(t);
    CHECK(!rf.ok && !rf.cached && st.hits == 2 && st.entries == 1,
          "same to-be-signed part, another signature: not a hit, refused");
    rf = handshake(t, cf);
    CHECK(!rf.ok && !rf.cached && ctx_stats(t).entries == 1, "... and refused again, never cached");

    for (int i = 0; i < 2; i++) {
        result_t rw = handshake(t, cw);
        st = ctx_stats(t);
        CHECK(!rw.ok && !rw.cached && st.entries == 1 && st.hits == 2,
              "untrusted CA: refused, never cached (each time)");
    }

    result_t rb = handshake(t, cb);
    CHECK(rb.ok && !rb.cached && !strcmp(rb.serial, "5678") && ctx_stats(t).entries == 2,
          "another certificate: its own entry");

    result_t ri = handshake(t, ci);
    CHECK(ri.ok && !ri.cached && ctx_stats(t).entries == 3, "leaf + intermediate: verified, cached");
    ri = handshake(t, ci);
    CHECK(ri.ok && ri.cached, "leaf + intermediate again: a hit");
    for (int i = 0; i < 2; i++) {
        ri = handshake(t, ci_alone);
        CHECK(!ri.ok && !ri.cached,
              "the same leaf without its intermediate: not a hit, refused (the key is the chain)");
    }

    tls_ctx_vcache_flush(t);
    CHECK(ctx_stats(t).entries == 0, "flush empties the cache");
    r1 = handshake(t, ca);
    CHECK(r1.ok && !r1.cached, "after a flush: verified in full again");
    tls_ctx_free(t);

    /* size 1: every new chain evicts the previous one */
    cfg.tls.verify_cache_size = 1;
    t = tls_ctx_new(&cfg, NULL, err, sizeof(err));
    handshake(t, ca);
    handshake(t, cb);
    r1 = handshake(t, ca);
    st = ctx_stats(t);
    CHECK(r1.ok && !r1.cached && st.evictions == 2 && st.entries == 1 && st.capacity == 1,
          "capacity 1: evicted entries are verified in full again");
    tls_ctx_free(t);

    /* size 0: no cache, verification as without it */
    cfg.tls.verify_cache_size = 0;
    t = tls_ctx_new(&cfg, NULL, err, sizeof(err));
    tls_vcache_stats_t none;
    CHECK(t && tls_ctx_vcache_stats(t, &none) < 0, "size 0: no cache");
    r1 = handshake(t, ca);
    r2 = handshake(t, ca);
    CHECK(r1.ok && r2.ok && !r2.cached, "size 0: every handshake verified in full");
    CHECK(!handshake(t, cw).ok, "size 0: untrusted CA still refused");
    tls_ctx_free(t);

    SSL_CTX *all[] = {ca, ca12, cb, ci, ci_alone, cw, cf};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        SSL_CTX_free(all[i]);
    X509_free(forged);
    pair_t *pairs[] = {&root, &other, &inter, &srv, &a, &b, &viaint, &wrong};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        free_pair(pairs[i]);
    unlink(p_srv);
    unlink(p_ca);
    rmdir(dir);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_table();
    test_threads();
    test_handshakes();
    return check_done();
}
