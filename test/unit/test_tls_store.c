/* Unit tests: the process-level TLS store (sessions and verified chains)
 * shared by the contexts of several configuration generations.
 *
 * Real handshakes over memory BIOs, with a client certificate, between
 * contexts built from different cfg_t that share one tls_store_t:
 *  - a session made on context A resumes on B when B's class has the same
 *    trust (bundle, verification parameters, identity config); it does not
 *    when the bundle or the identity config changed (a full handshake that
 *    succeeds, no alert), while the other classes' sessions still resume;
 *  - when B lists the classes in another order, B's identity is a rebased
 *    copy (B's class_idx, the same class name), made once per session;
 *  - the verify cache follows the same rule;
 *  - a smaller capacity evicts the least recently used entries, a larger one
 *    keeps them; expired sessions are not resumed (their own timeout, and the
 *    resuming context's shorter lifetime); libssl's remove callback takes a
 *    session out (a fatal alert in its handshake, SSL_CTX_remove_session);
 *  - many threads resuming on two contexts at once, while the capacity moves.
 */
#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../tls/store.h"
#include "../../tls/tls.h"
#include "check.h"
#include "pki_util.h"

typedef struct {
    int ok;                   /* the server completed the handshake with an identity */
    int reused;               /* ... resuming a session */
    int cached;               /* ... from the verify cache */
    int class_idx;
    char class_name[CFG_MAX_NAME];
    const tls_identity_t *id; /* compared, never dereferenced after the handshake */
    SSL_SESSION *server_sess; /* the server's session (a reference), if asked */
} result_t;

/* Runs one handshake; offers *sess when set, and replaces it with the
 * client's new session (TLS 1.3: after reading its ticket). */
static result_t handshake(tls_ctx_t *t, SSL_CTX *cctx, SSL_SESSION **sess, int keep_server_sess)
{
    result_t r = {0};
    r.class_idx = -1;
    SSL *s = SSL_new(tls_ctx_ssl(t)), *c = SSL_new(cctx);
    BIO *sb, *cb;
    BIO_new_bio_pair(&sb, 0, &cb, 0);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (sess && *sess)
        SSL_set_session(c, *sess);
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 50 && !(cdone && sdone); i++) {
        if (!cdone) {
            int rc = SSL_do_handshake(c);
            int e = SSL_get_error(c, rc);
            if (rc == 1)
                cdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                break;
        }
        if (!sdone) {
            int rs = SSL_do_handshake(s);
            int e = SSL_get_error(s, rs);
            if (rs == 1)
                sdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                break;
        }
    }
    if (cdone && sdone) {
        char b;
        SSL_read(c, &b, 1);   /* TLS 1.3: takes the ticket in (then wants more) */
        tls_identity_t *id = tls_identity_get(s);
        if (id) {
            r.ok = 1;
            r.class_idx = id->class_idx;
            snprintf(r.class_name, sizeof(r.class_name), "%s", id->class_name);
            r.id = id;
        }
        tls_identity_release(id);
        r.reused = SSL_session_reused(s);
        r.cached = tls_verify_cached(s);
        if (sess) {
            SSL_SESSION_free(*sess);
            *sess = SSL_get1_session(c);
        }
        if (keep_server_sess)
            r.server_sess = SSL_get1_session(s);
    }
    /* a clean end: nothing here is a TLS error that would evict a session */
    SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return r;
}

static tls_sess_stats_t sstats(tls_store_t *st)
{
    tls_sess_stats_t s;
    tls_store_sess_stats(st, &s);
    return s;
}

static tls_vcache_stats_t vstats(tls_store_t *st)
{
    tls_vcache_stats_t s;
    memset(&s, 0, sizeof(s));
    tls_store_vcache_stats(st, &s);
    return s;
}

/* A client offering a key share of the server's group (no HelloRetryRequest,
 * so one session lookup per TLS 1.3 handshake). */
static SSL_CTX *dev_client(const pair_t *p, int tls12)
{
    SSL_CTX *c = client(p->cert, p->key, NULL, tls12);
    SSL_CTX_set1_groups_list(c, "P-256");
    return c;
}

/* ------------------------------------------------------------ the setting */

static char dir[] = "/tmp/portcullis-tls-store-XXXXXX";
static char p_srv[128], p_dev[128], p_dev2[128], p_boot[128];
static pair_t root_dev, root_boot, root_extra, srv, dev_a, dev_b, boot_a;
static cfg_cert_t certs[1];

typedef struct {
    cfg_t cfg;
    cfg_class_t classes[2];
} gen_t;

/* A generation's config: classes "device" (bundle dev_file) and "bootstrap",
 * in that order unless swapped. */
static void gen_init(gen_t *g, const char *dev_file, int swapped, const char *prefix)
{
    memset(g, 0, sizeof(*g));
    int d = swapped ? 1 : 0, b = swapped ? 0 : 1;
    snprintf(g->classes[d].name, sizeof(g->classes[d].name), "device");
    g->classes[d].ca_file = (char *)dev_file;
    snprintf(g->classes[b].name, sizeof(g->classes[b].name), "bootstrap");
    g->classes[b].ca_file = p_boot;
    cfg_t *c = &g->cfg;
    c->tls.certs = certs;
    c->tls.ncerts = 1;
    c->tls.min_version = CFG_TLS12;
    c->tls.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    c->tls.ciphersuites = "TLS_AES_128_GCM_SHA256";
    c->tls.groups = "P-256";
    c->tls.session_cache_size = 100;
    c->tls.session_lifetime_ms = 3600000;
    c->tls.verify_cache_size = 100;
    c->tls.verify_cache_lifetime_ms = 3600000;
    c->tls.classes = g->classes;
    c->tls.nclasses = 2;
    c->identity.device_id_source = CFG_DEVID_SAN_URI;
    c->identity.device_id_prefix = (char *)prefix;
}

static tls_ctx_t *ctx_of(gen_t *g, tls_store_t *st)
{
    char err[256] = "";
    tls_ctx_t *t = tls_ctx_new(&g->cfg, st, err, sizeof(err));
    if (!t)
        printf("# tls_ctx_new: %s\n", err);
    return t;
}

static int setup(void)
{
    if (!mkdtemp(dir))
        return -1;
    snprintf(p_srv, sizeof(p_srv), "%s/server.pem", dir);
    snprintf(p_dev, sizeof(p_dev), "%s/device.pem", dir);
    snprintf(p_dev2, sizeof(p_dev2), "%s/device2.pem", dir);
    snprintf(p_boot, sizeof(p_boot), "%s/bootstrap.pem", dir);
    root_dev = make_pair("Device CA", 1, NULL, 1);
    root_boot = make_pair("Bootstrap CA", 2, NULL, 1);
    root_extra = make_pair("Another Device CA", 3, NULL, 1);
    srv = make_pair("localhost", 4, &root_dev, 0);
    dev_a = make_pair("device-a", 0x1234, &root_dev, 0);
    dev_b = make_pair("device-b", 0x5678, &root_dev, 0);
    boot_a = make_pair("boot-a", 0x9abc, &root_boot, 0);
    write_pem(p_srv, srv.cert, srv.key);
    write_pem(p_dev, root_dev.cert, NULL);
    write_pem(p_boot, root_boot.cert, NULL);
    /* the device bundle extended by one CA: another trust */
    FILE *f = fopen(p_dev2, "w");
    PEM_write_X509(f, root_dev.cert);
    PEM_write_X509(f, root_extra.cert);
    fclose(f);
    certs[0].cert_file = p_srv;
    certs[0].key_file = p_srv;
    return 0;
}

static void teardown(void)
{
    pair_t *pairs[] = {&root_dev, &root_boot, &root_extra, &srv, &dev_a, &dev_b, &boot_a};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        free_pair(pairs[i]);
    unlink(p_srv);
    unlink(p_dev);
    unlink(p_dev2);
    unlink(p_boot);
    rmdir(dir);
}

/* ------------------------------------------------------------ the tests */

static void test_digests(void)
{
    tls_store_t *st = tls_store_new();
    gen_t ga, gb, gc, gd, ge, gf, gg;
    gen_init(&ga, p_dev, 0, "urn:dev:");
    gen_init(&gb, p_dev, 0, "urn:dev:");
    gen_init(&gc, p_dev, 1, "urn:dev:");
    gen_init(&gd, p_dev2, 0, "urn:dev:");
    gen_init(&ge, p_dev, 0, "urn:other:");
    gen_init(&gf, p_dev, 0, "urn:dev:");
    gf.cfg.tls.min_version = CFG_TLS13;
    gen_init(&gg, p_dev, 0, "urn:dev:");
    gg.cfg.identity.integrity_classes = ga.cfg.identity.integrity_classes ^ 1u;   /* class 0 in or out */
    tls_ctx_t *a = ctx_of(&ga, st), *b = ctx_of(&gb, st), *c = ctx_of(&gc, st),
              *d = ctx_of(&gd, st), *e = ctx_of(&ge, st), *f = ctx_of(&gf, st), *g = ctx_of(&gg, st);
    if (!a || !b || !c || !d || !e || !f || !g) {
        CHECK(0, "contexts built");
        goto out;
    }
    const size_t L = TLS_CLASS_DIGEST_LEN;
    CHECK(!memcmp(tls_ctx_class_digest(a, 0), tls_ctx_class_digest(b, 0), L) &&
              !memcmp(tls_ctx_class_digest(a, 1), tls_ctx_class_digest(b, 1), L),
          "digest: two contexts of the same config agree");
    CHECK(memcmp(tls_ctx_class_digest(a, 0), tls_ctx_class_digest(a, 1), L) != 0,
          "digest: two classes differ");
    CHECK(!memcmp(tls_ctx_class_digest(a, 0), tls_ctx_class_digest(c, 1), L) &&
              !memcmp(tls_ctx_class_digest(a, 1), tls_ctx_class_digest(c, 0), L),
          "digest: follows the class, not its position");
    CHECK(memcmp(tls_ctx_class_digest(a, 0), tls_ctx_class_digest(d, 0), L) != 0 &&
              !memcmp(tls_ctx_class_digest(a, 1), tls_ctx_class_digest(d, 1), L),
          "digest: a changed bundle changes its class's digest only");
    CHECK(memcmp(tls_ctx_class_digest(a, 0), tls_ctx_class_digest(e, 0), L) != 0,
          "digest: identity.device_id_prefix is part of it");
    CHECK(memcmp(tls_ctx_class_digest(a, 0), tls_ctx_class_digest(f, 0), L) != 0,
          "digest: tls.min_version is part of it");
    CHECK(memcmp(tls_ctx_class_digest(a, 0), tls_ctx_class_digest(g, 0), L) != 0 &&
              !memcmp(tls_ctx_class_digest(a, 1), tls_ctx_class_digest(g, 1), L),
          "digest: the class's membership of identity.integrity_classes is part of it (its only)");
    CHECK(tls_ctx_class_digest(a, 2) == NULL, "digest: out of range is NULL");
out:
    tls_ctx_free(a);
    tls_ctx_free(b);
    tls_ctx_free(c);
    tls_ctx_free(d);
    tls_ctx_free(e);
    tls_ctx_free(f);
    tls_ctx_free(g);
    tls_store_free(st);
}

/* A session of A on B (same trust), C (classes swapped), D (device bundle
 * changed), E (identity config changed). */
static void test_sessions_across(int tls12)
{
    const char *v = tls12 ? "TLS 1.2" : "TLS 1.3";
    char name[160];
    tls_store_t *st = tls_store_new();
    gen_t ga, gb, gc, gd, ge;
    gen_init(&ga, p_dev, 0, "urn:dev:");
    gen_init(&gb, p_dev, 0, "urn:dev:");
    gen_init(&gc, p_dev, 1, "urn:dev:");
    gen_init(&gd, p_dev2, 0, "urn:dev:");
    gen_init(&ge, p_dev, 0, "urn:other:");
    tls_store_configure(st, &ga.cfg);
    tls_ctx_t *a = ctx_of(&ga, st), *b = ctx_of(&gb, st), *c = ctx_of(&gc, st),
              *d = ctx_of(&gd, st), *e = ctx_of(&ge, st);
    SSL_CTX *cdev = dev_client(&dev_a, tls12);
    SSL_CTX *cboot = dev_client(&boot_a, tls12);
    SSL_SESSION *s = NULL, *sb = NULL;

    result_t r = handshake(a, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: full handshake on A, class device at 0", v);
    CHECK(r.ok && !r.reused && r.class_idx == 0 && !strcmp(r.class_name, "device"), name);
    CHECK(sstats(st).entries == 1, "one session in the store");
    r = handshake(b, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: A's session resumes on B (same trust), same class", v);
    CHECK(r.ok && r.reused && r.class_idx == 0 && !strcmp(r.class_name, "device"), name);

    /* C lists bootstrap first: device is at 1 there */
    r = handshake(c, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: resumes on C (classes reordered) with a rebased identity", v);
    CHECK(r.ok && r.reused && r.class_idx == 1 && !strcmp(r.class_name, "device") &&
              sstats(st).rebased == 1,
          name);
    r = handshake(c, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: on C again: resumed, class_idx 1, no new copy", v);
    CHECK(r.ok && r.reused && r.class_idx == 1 && sstats(st).rebased == 1, name);
    if (tls12) {
        /* TLS 1.2 offers the same session id each time: the copy stored in
         * place of the original is what every later resumption gets */
        result_t r2 = handshake(c, cdev, &s, 0);
        CHECK(r2.ok && r2.reused && r2.id == r.id && sstats(st).rebased == 1,
              "TLS 1.2: the rebased copy is made once and shared");
    }
    r = handshake(a, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: and back on A: resumed with class_idx 0", v);
    CHECK(r.ok && r.reused && r.class_idx == 0 && !strcmp(r.class_name, "device"), name);

    /* the bootstrap session before D */
    r = handshake(a, cboot, &sb, 0);
    CHECK(r.ok && !r.reused && r.class_idx == 1 && !strcmp(r.class_name, "bootstrap"),
          "bootstrap client: full handshake on A, class bootstrap at 1");

    /* D: the device bundle changed */
    uint64_t mism = sstats(st).mismatched;
    r = handshake(d, cdev, &s, 0);
    snprintf(name, sizeof name,
             "%s: device bundle changed: not resumed, a full handshake that succeeds", v);
    CHECK(r.ok && !r.reused && r.class_idx == 0 && sstats(st).mismatched == mism + 1, name);
    r = handshake(d, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: the session made on D resumes on D", v);
    CHECK(r.ok && r.reused, name);
    r = handshake(d, cboot, &sb, 0);
    snprintf(name, sizeof name, "%s: the bootstrap class, unchanged on D, still resumes", v);
    CHECK(r.ok && r.reused && r.class_idx == 1 && !strcmp(r.class_name, "bootstrap"), name);

    /* E: another device_id_prefix shapes identities differently */
    r = handshake(e, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: identity config changed: not resumed, full handshake", v);
    CHECK(r.ok && !r.reused, name);

    SSL_SESSION_free(s);
    SSL_SESSION_free(sb);
    SSL_CTX_free(cdev);
    SSL_CTX_free(cboot);
    /* the contexts go first; sessions stay in the store until it goes */
    tls_ctx_free(a);
    tls_ctx_free(b);
    tls_ctx_free(c);
    tls_ctx_free(d);
    snprintf(name, sizeof name, "%s: sessions outlive the contexts that made them", v);
    CHECK(sstats(st).entries >= 2, name);
    tls_ctx_free(e);
    tls_store_free(st);
}

static void test_vcache_across(void)
{
    tls_store_t *st = tls_store_new();
    gen_t ga, gb, gc, gd;
    gen_init(&ga, p_dev, 0, "urn:dev:");
    gen_init(&gb, p_dev, 0, "urn:dev:");
    gen_init(&gc, p_dev, 1, "urn:dev:");
    gen_init(&gd, p_dev2, 0, "urn:dev:");
    tls_store_configure(st, &ga.cfg);
    tls_ctx_t *a = ctx_of(&ga, st), *b = ctx_of(&gb, st), *c = ctx_of(&gc, st),
              *d = ctx_of(&gd, st);
    SSL_CTX *cdev = dev_client(&dev_a, 0);

    /* fresh handshakes (no session offered): only the verify cache helps */
    result_t r = handshake(a, cdev, NULL, 0);
    CHECK(r.ok && !r.cached && vstats(st).entries == 1, "verify cache: A verifies in full, caches");
    r = handshake(b, cdev, NULL, 0);
    CHECK(r.ok && r.cached && r.class_idx == 0, "verify cache: a hit on B (same trust)");
    r = handshake(c, cdev, NULL, 0);
    CHECK(r.ok && r.cached && r.class_idx == 1 && !strcmp(r.class_name, "device"),
          "verify cache: a hit on C with a rebased identity (class_idx 1)");
    const tls_identity_t *rebased = r.id;
    r = handshake(c, cdev, NULL, 0);
    CHECK(r.ok && r.cached && r.class_idx == 1 && r.id == rebased,
          "verify cache: the rebased identity replaced the entry (made once)");
    uint64_t misses = vstats(st).misses;
    r = handshake(d, cdev, NULL, 0);
    CHECK(r.ok && !r.cached && r.class_idx == 0 && vstats(st).misses == misses + 1,
          "verify cache: bundle changed: verified again (a miss), accepted");
    r = handshake(d, cdev, NULL, 0);
    CHECK(r.ok && r.cached && vstats(st).entries == 1,
          "verify cache: D's verification replaced the entry; a hit on D");
    r = handshake(a, cdev, NULL, 0);
    CHECK(r.ok && !r.cached, "verify cache: and A no longer takes D's entry");
    r = handshake(b, cdev, NULL, 0);
    CHECK(r.ok && r.cached, "verify cache: A's new entry is a hit on B");
    gen_t gs;
    gen_init(&gs, p_dev, 0, "urn:dev:");
    gs.cfg.tls.verify_cache_lifetime_ms = 1;
    tls_ctx_t *sh = ctx_of(&gs, st);
    usleep(5000);
    r = handshake(sh, cdev, NULL, 0);
    CHECK(r.ok && !r.cached,
          "verify cache: a context with a shorter lifetime does not take an older entry");
    tls_ctx_free(sh);

    SSL_CTX_free(cdev);
    tls_ctx_free(a);
    tls_ctx_free(b);
    tls_ctx_free(c);
    tls_ctx_free(d);
    tls_store_free(st);
}

static void test_capacity(void)
{
    tls_store_t *st = tls_store_new();
    gen_t g;
    gen_init(&g, p_dev, 0, "urn:dev:");
    tls_ctx_t *t = ctx_of(&g, st);
    SSL_CTX *cdev = dev_client(&dev_a, 1), *cb = dev_client(&dev_b, 1);
    SSL_SESSION *s[3] = {NULL, NULL, NULL};

    result_t r = handshake(t, cdev, &s[0], 0);
    CHECK(r.ok && sstats(st).entries == 0 && sstats(st).capacity == 0,
          "an unconfigured store keeps nothing");
    r = handshake(t, cdev, &s[0], 0);
    CHECK(r.ok && !r.reused, "... so nothing resumes");
    tls_store_configure(st, &g.cfg);
    for (int i = 0; i < 3; i++) {
        SSL_SESSION_free(s[i]);
        s[i] = NULL;
        handshake(t, i == 1 ? cb : cdev, &s[i], 0);
    }
    CHECK(sstats(st).entries == 3 && vstats(st).entries == 2, "three sessions, two chains");
    gen_t small = g;
    small.cfg.tls.session_cache_size = 1;
    small.cfg.tls.verify_cache_size = 1;
    tls_store_configure(st, &small.cfg);
    tls_sess_stats_t ss = sstats(st);
    CHECK(ss.entries == 1 && ss.capacity == 1 && ss.evictions == 2,
          "sessions: capacity 3 -> 1 evicts the two least recently used");
    CHECK(vstats(st).entries == 1 && vstats(st).capacity == 1 && vstats(st).evictions == 1,
          "verify cache: capacity 2 -> 1 evicts one");
    r = handshake(t, cdev, &s[0], 0);
    CHECK(r.ok && !r.reused, "an evicted session is not resumed");
    /* s[0]'s new session is now the only one (the newest evicts s[2]) */
    tls_store_configure(st, &g.cfg);
    CHECK(sstats(st).entries == 1 && sstats(st).capacity == 100 && vstats(st).entries == 1,
          "growing keeps what is there");
    r = handshake(t, cdev, &s[0], 0);
    CHECK(r.ok && r.reused, "... and it resumes");
    r = handshake(t, cb, NULL, 0);
    CHECK(r.ok && r.cached == 0, "the evicted chain (device-b) is verified again");
    r = handshake(t, cdev, NULL, 0);
    CHECK(r.ok && r.cached, "the chain kept through shrink and growth (device-a) is a hit");

    gen_t off = g;
    off.cfg.tls.session_cache_size = 0;
    off.cfg.tls.verify_cache_size = 0;
    tls_store_configure(st, &off.cfg);
    tls_vcache_stats_t vs;
    CHECK(sstats(st).entries == 0 && tls_store_vcache_stats(st, &vs) < 0 &&
              tls_ctx_vcache_stats(t, &vs) < 0,
          "size 0 disables both: everything dropped, the verify cache reads as disabled");
    r = handshake(t, cdev, &s[0], 0);
    CHECK(r.ok && !r.reused && !r.cached && sstats(st).entries == 0,
          "disabled: full handshake, full verification, nothing kept");

    for (int i = 0; i < 3; i++)
        SSL_SESSION_free(s[i]);
    SSL_CTX_free(cdev);
    SSL_CTX_free(cb);
    tls_ctx_free(t);
    tls_store_free(st);
}

static void test_expiry(void)
{
    tls_store_t *st = tls_store_new();
    gen_t ga, gshort;
    gen_init(&ga, p_dev, 0, "urn:dev:");
    gen_init(&gshort, p_dev, 0, "urn:dev:");
    gshort.cfg.tls.session_lifetime_ms = 60000;
    tls_store_configure(st, &ga.cfg);
    tls_ctx_t *a = ctx_of(&ga, st), *sh = ctx_of(&gshort, st);
    SSL_CTX *cdev = dev_client(&dev_a, 1);
    SSL_SESSION *s = NULL;

    /* TLS 1.2: the server's session is the stored object; age it */
    result_t r = handshake(a, cdev, &s, 1);
    SSL_SESSION_set_time(r.server_sess, (long)time(NULL) - 7200);
    SSL_SESSION_free(r.server_sess);
    r = handshake(a, cdev, &s, 0);
    CHECK(r.ok && !r.reused && sstats(st).expired == 1,
          "a session past its timeout is not resumed (and dropped)");

    r = handshake(a, cdev, &s, 1);
    SSL_SESSION_set_time(r.server_sess, (long)time(NULL) - 120);
    SSL_SESSION_free(r.server_sess);
    SSL_SESSION *copy = SSL_SESSION_dup(s);   /* offered twice */
    r = handshake(a, cdev, &copy, 0);
    CHECK(r.ok && r.reused, "2 minutes old, lifetime 1h: resumed");
    r = handshake(sh, cdev, &s, 0);
    CHECK(r.ok && !r.reused && sstats(st).expired == 2,
          "the same session on a context whose lifetime is 1 minute: not resumed");

    SSL_SESSION_free(s);
    SSL_SESSION_free(copy);
    SSL_CTX_free(cdev);
    tls_ctx_free(a);
    tls_ctx_free(sh);
    tls_store_free(st);
}

static void test_remove(int tls12)
{
    const char *v = tls12 ? "TLS 1.2" : "TLS 1.3";
    char name[160];
    tls_store_t *st = tls_store_new();
    gen_t g;
    gen_init(&g, p_dev, 0, "urn:dev:");
    tls_store_configure(st, &g.cfg);
    tls_ctx_t *t = ctx_of(&g, st);
    SSL_CTX *cdev = dev_client(&dev_a, tls12);
    SSL_SESSION *s = NULL;

    /* a resumption refused with a fatal alert (certificate_expired from
     * resume_cb: the identity is made to look expired) */
    result_t r = handshake(t, cdev, &s, 1);
    size_t before = sstats(st).entries;
    SSL *probe = SSL_new(tls_ctx_ssl(t));   /* reads the identity of the server's session */
    SSL_set_session(probe, r.server_sess);
    tls_identity_t *sid = tls_identity_get(probe);
    time_t keep = sid ? sid->not_after_t : 0;
    if (sid)
        sid->not_after_t = 1;   /* a test's hand on the shared identity */
    SSL_SESSION *offered = SSL_SESSION_dup(s);
    SSL_SESSION_free(r.server_sess);
    r = handshake(t, cdev, &offered, 0);
    tls_sess_stats_t ss = sstats(st);
    snprintf(name, sizeof name, "%s: a resumption ended by a fatal alert removes the session", v);
    CHECK(!r.ok && ss.removed == 1 && ss.entries == before - 1, name);
    if (sid)
        sid->not_after_t = keep;
    tls_identity_release(sid);
    SSL_free(probe);
    r = handshake(t, cdev, &s, 1);
    snprintf(name, sizeof name, "%s: offered again: a full handshake", v);
    CHECK(r.ok && !r.reused, name);

    /* SSL_CTX_remove_session (the gateway's call for a revoked identity) */
    before = sstats(st).entries;
    SSL_CTX_remove_session(tls_ctx_ssl(t), r.server_sess);
    SSL_SESSION_free(r.server_sess);
    snprintf(name, sizeof name, "%s: SSL_CTX_remove_session takes it out of the store", v);
    CHECK(sstats(st).removed == 2 && sstats(st).entries == before - 1, name);
    r = handshake(t, cdev, &s, 0);
    snprintf(name, sizeof name, "%s: ... and it does not resume", v);
    CHECK(r.ok && !r.reused, name);

    SSL_SESSION_free(s);
    SSL_SESSION_free(offered);
    SSL_CTX_free(cdev);
    tls_ctx_free(t);
    tls_store_free(st);
}

/* ------------------------------------------------------------ threads */

typedef struct {
    tls_ctx_t *ctx[2];
    SSL_CTX *client;
    int resumed, failed;
} worker_arg_t;

static void *worker(void *arg)
{
    worker_arg_t *w = arg;
    SSL_SESSION *s = NULL;
    for (int i = 0; i < 60; i++) {
        result_t r = handshake(w->ctx[(i / 3) % 2], w->client, &s, 0);
        w->resumed += r.reused;
        w->failed += !r.ok;
        if (r.ok && r.class_idx != ((i / 3) % 2))
            w->failed++;   /* device is at 0 on the first context, 1 on the second */
    }
    SSL_SESSION_free(s);
    return NULL;
}

static void test_threads(void)
{
    tls_store_t *st = tls_store_new();
    gen_t ga, gc;
    gen_init(&ga, p_dev, 0, "urn:dev:");
    gen_init(&gc, p_dev, 1, "urn:dev:");
    tls_store_configure(st, &ga.cfg);
    tls_ctx_t *a = ctx_of(&ga, st), *c = ctx_of(&gc, st);
    enum { N = 4 };
    pthread_t th[N];
    worker_arg_t w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker_arg_t){{a, c}, dev_client(i % 2 ? &dev_a : &dev_b, i >= 2), 0, 0};
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    gen_t small = ga;
    for (int k = 0; k < 20; k++) {   /* the capacity moves under them */
        small.cfg.tls.session_cache_size = k % 2 ? 2 : 100;
        small.cfg.tls.verify_cache_size = k % 2 ? 1 : 100;
        tls_store_configure(st, &small.cfg);
        usleep(2000);
    }
    tls_store_configure(st, &ga.cfg);
    int resumed = 0, failed = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        resumed += w[i].resumed;
        failed += w[i].failed;
        SSL_CTX_free(w[i].client);
    }
    CHECK(failed == 0, "threads: every handshake succeeded with the context's class index");
    CHECK(resumed > 0, "threads: sessions resumed across the two contexts");
    tls_ctx_free(a);
    tls_ctx_free(c);
    tls_store_free(st);   /* ASan: every session and identity released exactly once */
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (setup() < 0) {
        CHECK(0, "scratch directory");
        return check_done();
    }
    test_digests();
    test_sessions_across(0);
    test_sessions_across(1);
    test_vcache_across();
    test_capacity();
    test_expiry();
    test_remove(0);
    test_remove(1);
    test_threads();
    teardown();
    return check_done();
}
