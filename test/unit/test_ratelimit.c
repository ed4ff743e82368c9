/* Unit tests: the local GCRA limiter, key extraction, RateLimit headers, the
 * connection limiter, and the global (Redis) script against a real
 * redis-server started here on a free loopback port (skipped, with a message,
 * when redis-server is not installed). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "../../policy/ratelimit.h"
#include "check.h"

#define T0 1000000000000LL   /* a fake monotonic clock, in microseconds */

static cfg_rate_limit_t mk(const char *name, int key, uint64_t count, uint64_t period_ms,
                           uint64_t burst)
{
    cfg_rate_limit_t l;
    memset(&l, 0, sizeof l);
    snprintf(l.name, sizeof l.name, "%s", name);
    l.key = key;
    l.count = count;
    l.period_ms = period_ms;
    l.burst = burst;
    return l;
}

/* ---------------------------------------------------------------- local */

typedef struct {
    pol_rl_t *rl;
    const cfg_rate_limit_t *l;
    const char *key;
    int tries;
    int allowed;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    for (int i = 0; i < h->tries; i++)
        h->allowed += pol_rl_check(h->rl, h->l, h->key, strlen(h->key), T0, NULL);
    return NULL;
}

static void test_threads(void)
{
    cfg_rate_limit_t l[] = {mk("a", CFG_RL_IP, 10, 1000, 5), mk("b", CFG_RL_IP, 6000, 60000, 1000)};
    pol_rl_t *rl = pol_rl_new(0);
    CHECK(rl != NULL, "local: limiter created");
    for (size_t idx = 0; idx < 2; idx++) {
        hammer_t h[4];
        pthread_t th[4];
        int total = 0;
        for (int i = 0; i < 4; i++) {
            h[i] = (hammer_t){.rl = rl, .l = &l[idx], .key = "one-key", .tries = 2000};
            pthread_create(&th[i], NULL, hammer, &h[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            total += h[i].allowed;
        }
        char name[100];
        snprintf(name, sizeof name, "local: 4 threads, one key, fixed clock: exactly burst "
                 "(%llu) allowed", (unsigned long long)l[idx].burst);
        if (total != (int)l[idx].burst)
            printf("# allowed %d\n", total);
        CHECK(total == (int)l[idx].burst, name);
    }
    pol_rl_free(rl);
}

static void test_refill(void)
{
    cfg_rate_limit_t l[] = {mk("ten", CFG_RL_IP, 10, 1000, 5)};
    pol_rl_t *rl = pol_rl_new(0);
    pol_rl_result_t r;
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        ok &= pol_rl_check(rl, &l[0], "k", 1, T0, &r) == 1;
        ok &= r.remaining == (uint64_t)(4 - i) && r.limit == 10 && r.window_s == 1 &&
              r.retry_after_s == 0;
    }
    CHECK(ok, "local: burst of 5 allowed, remaining 4..0");
    CHECK(r.reset_s == 1, "local: reset after a full burst of 10/s is 1s (0.5s rounded up)");
    CHECK(pol_rl_check(rl, &l[0], "k", 1, T0, &r) == 0 && r.remaining == 0 &&
              r.retry_after_s == 1 && r.reset_s == 1,
          "local: 6th limited, Retry-After 1");
    CHECK(pol_rl_check(rl, &l[0], "k", 1, T0 + 99999, &r) == 0, "local: still limited after 99.999ms");
    CHECK(pol_rl_check(rl, &l[0], "k", 1, T0 + 100000, &r) == 1 && r.remaining == 0,
          "local: one more after 100ms (rate 10/s)");
    CHECK(pol_rl_check(rl, &l[0], "k", 1, T0 + 100000, &r) == 0, "local: then limited again");
    CHECK(pol_rl_check(rl, &l[0], "k", 1, T0 + 10000000, &r) == 1 && r.remaining == 4,
          "local: full burst again after idling");

    /* sustained: 1ms steps over 10s */
    int allowed = 0;
    for (int64_t t = 0; t < 10000000; t += 1000)
        allowed += pol_rl_check(rl, &l[0], "s", 1, T0 + t, NULL);
    if (allowed != 104)
        printf("# allowed %d\n", allowed);
    CHECK(allowed == 104, "local: 10s of attempts every 1ms: burst 5 + 99 refills");

    /* independence */
    CHECK(pol_rl_check(rl, &l[0], "other", 5, T0 + 100000, &r) == 1 && r.remaining == 4,
          "local: another key is independent");
    pol_rl_free(rl);

    cfg_rate_limit_t two[] = {mk("x", CFG_RL_IP, 1, 3600000, 1), mk("y", CFG_RL_IP, 1, 3600000, 1)};
    rl = pol_rl_new(0);
    CHECK(pol_rl_check(rl, &two[0], "k", 1, T0, &r) == 1 && pol_rl_check(rl, &two[0], "k", 1, T0, &r) == 0 &&
              r.retry_after_s == 3600 && r.window_s == 3600,
          "local: 1/h: second request waits 3600s");
    CHECK(pol_rl_check(rl, &two[1], "k", 1, T0, &r) == 1, "local: same key, other limit independent");
    pol_rl_free(rl);
}

/* A reload passes new parameters for the same limit name: the key keeps
 * what it spent, a tighter limit applies to it at once, and a renamed limit
 * is a fresh budget. */
static void test_reconfigured(void)
{
    cfg_rate_limit_t before = mk("api", CFG_RL_IP, 10, 1000, 10), after = mk("api", CFG_RL_IP, 10, 1000, 4),
                     other = mk("api2", CFG_RL_IP, 10, 1000, 4);
    pol_rl_t *rl = pol_rl_new(0);
    pol_rl_result_t r;
    int ok = 1;
    for (int i = 0; i < 3; i++)
        ok &= pol_rl_check(rl, &before, "k", 1, T0, &r) == 1;
    CHECK(ok && r.remaining == 7, "reload: 3 of a burst of 10 spent");
    CHECK(pol_rl_check(rl, &after, "k", 1, T0, &r) == 1 && r.remaining == 0,
          "reload: burst cut to 4: the 4th request passes with 0 remaining (3 spent carried over)");
    CHECK(pol_rl_check(rl, &after, "k", 1, T0, &r) == 0 && r.retry_after_s == 1,
          "reload: the 5th is limited under the tighter limit");
    CHECK(pol_rl_check(rl, &other, "k", 1, T0, &r) == 1 && r.remaining == 3,
          "reload: another limit name is another budget");
    pol_rl_free(rl);
}

static void test_eviction(void)
{
    cfg_rate_limit_t l[] = {mk("h", CFG_RL_IP, 1, 3600000, 1)};
    pol_rl_t *rl = pol_rl_new(1024);
    int all = 1;
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        all &= pol_rl_check(rl, &l[0], key, strlen(key), T0, NULL) == 1;
    }
    uint64_t ev = pol_rl_evictions(rl);
    CHECK(all, "eviction: every new key gets its burst when the table is full (fail open)");
    CHECK(ev >= 5000 - 1024 && ev < 5000, "eviction: live entries evicted once 1024 are used");
    /* the last key inserted is still tracked */
    CHECK(pol_rl_check(rl, &l[0], key, strlen(key), T0, NULL) == 0, "eviction: recent key kept");
    /* once their TAT has passed, entries are reused without eviction */
    for (int i = 0; i < 300; i++) {   /* ~5 per shard of 16 slots */
        snprintf(key, sizeof key, "late-%d", i);
        pol_rl_check(rl, &l[0], key, strlen(key), T0 + 3600000001LL, NULL);
    }
    CHECK(pol_rl_evictions(rl) == ev, "eviction: expired entries reused first");
    pol_rl_free(rl);
}

/* ---------------------------------------------------------------- keys */

static void sha(const void *d, size_t n, unsigned char out[32])
{
    unsigned int l;
    EVP_Digest(d, n, out, &l, EVP_sha256(), NULL);
}

static void test_keys(void)
{
    tls_identity_t id;
    unsigned char k[32], want[32];
    size_t n = 0;
    memset(&id, 0, sizeof id);
    snprintf(id.fingerprint, sizeof id.fingerprint, "%s",
             "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    cfg_rate_limit_t dev = mk("d", CFG_RL_DEVICE_ID, 1, 1000, 1);
    /* no device id (a bootstrap certificate): counted per certificate */
    char fb[65] = {0};
    memcpy(fb + 1, id.fingerprint, 64);
    sha(fb, 65, want);
    CHECK(pol_rl_key(&dev, &id, NULL, NULL, 0, NULL, k, &n) == 0 && n == 32 && !memcmp(k, want, 32),
          "key: device_id missing -> SHA-256 of NUL + fingerprint");
    id.device_id = "";
    CHECK(pol_rl_key(&dev, &id, NULL, NULL, 0, NULL, k, &n) == 0 && n == 32 && !memcmp(k, want, 32),
          "key: empty device_id -> counted per certificate too");
    id.device_id = id.fingerprint;
    sha(id.fingerprint, 64, want);
    unsigned char kd[32];
    CHECK(pol_rl_key(&dev, &id, NULL, NULL, 0, NULL, kd, &n) == 0 && !memcmp(kd, want, 32) &&
              memcmp(kd, k, 32) != 0,
          "key: a device id spelled as a fingerprint is not that certificate's fallback key");
    tls_identity_t id2 = id;
    id2.device_id = NULL;
    id2.fingerprint[63] = 'e';
    CHECK(pol_rl_key(&dev, &id2, NULL, NULL, 0, NULL, kd, &n) == 0 && memcmp(kd, k, 32) != 0,
          "key: two certificates without a device id count apart");
    id.device_id = NULL;
    id.fingerprint[10] = '\0';
    CHECK(pol_rl_key(&dev, &id, NULL, NULL, 0, NULL, k, &n) == -1,
          "key: no device id and a malformed fingerprint -> no key");
    snprintf(id.fingerprint, sizeof id.fingerprint, "%s",
             "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    CHECK(pol_rl_key(&dev, NULL, NULL, NULL, 0, NULL, k, &n) == -1, "key: no identity -> no key");
    id.device_id = "dev-123";
    sha("dev-123", 7, want);
    CHECK(pol_rl_key(&dev, &id, NULL, NULL, 0, NULL, k, &n) == 0 && n == 32 && !memcmp(k, want, 32),
          "key: device_id hashed");
    cfg_rate_limit_t fp = mk("f", CFG_RL_FINGERPRINT, 1, 1000, 1);
    CHECK(pol_rl_key(&fp, &id, NULL, NULL, 0, NULL, k, &n) == 0 && n == 32 && k[0] == 0x00 &&
              k[1] == 0x11 && k[31] == 0xff,
          "key: fingerprint decoded to 32 bytes");
    cfg_rate_limit_t tok = mk("t", CFG_RL_TOKEN, 1, 1000, 1);
    sha("secret-token", 12, want);
    CHECK(pol_rl_key(&tok, &id, NULL, "secret-token", 12, NULL, k, &n) == 0 && n == 32 &&
              !memcmp(k, want, 32),
          "key: token is SHA-256 of the token");
    CHECK(pol_rl_key(&tok, &id, NULL, NULL, 0, NULL, k, &n) == -1, "key: no bearer -> no key");
    cfg_rate_limit_t ip = mk("i", CFG_RL_IP, 1, 1000, 1);
    CHECK(pol_rl_key(&ip, NULL, "192.0.2.7", NULL, 0, NULL, k, &n) == 0 && n == 4 && k[0] == 192 &&
              k[3] == 7,
          "key: IPv4 address");
    CHECK(pol_rl_key(&ip, NULL, "2001:db8::1", NULL, 0, NULL, k, &n) == 0 && n == 16 &&
              k[0] == 0x20 && k[15] == 1,
          "key: IPv6 address");
    CHECK(pol_rl_key(&ip, NULL, "nope", NULL, 0, NULL, k, &n) == -1, "key: bad IP -> no key");
    cfg_route_t r1, r2;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    r1.path = "/api/";
    r2.path = "/api/";
    r2.host = "example.com";
    unsigned char k2[32];
    size_t n2;
    cfg_rate_limit_t rt = mk("r", CFG_RL_ROUTE, 1, 1000, 1);
    CHECK(pol_rl_key(&rt, NULL, NULL, NULL, 0, &r1, k, &n) == 0 &&
              pol_rl_key(&rt, NULL, NULL, NULL, 0, &r2, k2, &n2) == 0 && n == 32 &&
              memcmp(k, k2, 32) != 0,
          "key: routes differing by host have different keys");
    CHECK(pol_rl_key(&rt, NULL, NULL, NULL, 0, NULL, k, &n) == -1, "key: no route -> no key");
}

/* ---------------------------------------------------------------- headers */

static void test_headers(void)
{
    char buf[512];
    pol_rl_result_t r = {.limit = 100, .window_s = 60, .remaining = 42, .reset_s = 7};
    int n = pol_rl_headers(&r, "api-per-device", buf, sizeof buf);
    const char *want = "RateLimit-Policy: \"api-per-device\";q=100;w=60\r\n"
                       "RateLimit: \"api-per-device\";r=42;t=7\r\n";
    CHECK(n == (int)strlen(want) && !strcmp(buf, want), "headers: allowed response");
    r.remaining = 0;
    r.retry_after_s = 3;
    n = pol_rl_headers(&r, "x", buf, sizeof buf);
    want = "RateLimit-Policy: \"x\";q=100;w=60\r\nRateLimit: \"x\";r=0;t=7\r\nRetry-After: 3\r\n";
    CHECK(n == (int)strlen(want) && !strcmp(buf, want), "headers: limited response has Retry-After");
    CHECK(pol_rl_headers(&r, "x", buf, 20) == -1 && buf[0] == '\0', "headers: short buffer -> -1");
}

/* ---------------------------------------------------------------- connections */

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &a->sin_addr);
    }
    return ss;
}

typedef struct {
    pol_connlimit_t *cl;
    const cfg_connlimits_t *cfg;
    struct sockaddr_storage peer;
    int ok;
} chammer_t;

static void *chammer(void *arg)
{
    chammer_t *h = arg;
    for (int i = 0; i < 1000; i++)
        h->ok += pol_connlimit_acquire(h->cl, h->cfg, &h->peer, T0) == 0;
    return NULL;
}

static void test_connlimit(void)
{
    cfg_connlimits_t c = {.per_ip_count = 2, .per_ip_period_ms = 1000, .per_ip_burst = 2,
                          .per_ip_concurrent = 3};
    pol_connlimit_t *cl = pol_connlimit_new(0);
    struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");
    CHECK(pol_connlimit_acquire(cl, &c, &a, T0) == 1 && pol_connlimit_acquire(cl, &c, &a, T0) == 1,
          "conn: burst of 2 new connections");
    CHECK(pol_connlimit_acquire(cl, &c, &a, T0) == -1, "conn: third at once over the rate (-1)");
    CHECK(pol_connlimit_acquire(cl, &c, &b, T0) == 1, "conn: another IPv4 address independent");
    CHECK(pol_connlimit_acquire(cl, &c, &a, T0 + 500000) == 1, "conn: one more after 0.5s (2/s)");
    CHECK(pol_connlimit_count(cl, &a) == 3, "conn: 3 open counted");
    CHECK(pol_connlimit_acquire(cl, &c, &a, T0 + 5000000) == -2, "conn: fourth concurrent refused (-2)");
    pol_connlimit_release(cl, &a);
    CHECK(pol_connlimit_count(cl, &a) == 2 && pol_connlimit_acquire(cl, &c, &a, T0 + 5000000) == 1,
          "conn: accepted again after a release");
    for (int i = 0; i < 5; i++)
        pol_connlimit_release(cl, &a);
    CHECK(pol_connlimit_count(cl, &a) == 0, "conn: extra releases do not underflow");

    struct sockaddr_storage v6a = addr("2001:db8:1:2::1"), v6b = addr("2001:db8:1:2:ffff::9"),
                            v6c = addr("2001:db8:1:3::1"), m4 = addr("::ffff:192.0.2.2");
    CHECK(pol_connlimit_acquire(cl, &c, &v6a, T0) == 1 && pol_connlimit_acquire(cl, &c, &v6b, T0) == 1 &&
              pol_connlimit_acquire(cl, &c, &v6a, T0) == -1,
          "conn: IPv6 addresses in one /64 share a limit");
    CHECK(pol_connlimit_acquire(cl, &c, &v6c, T0) == 1, "conn: another /64 is independent");
    CHECK(pol_connlimit_count(cl, &m4) == 1, "conn: v4-mapped IPv6 counts as the IPv4 address");
    struct sockaddr_storage un;
    memset(&un, 0, sizeof un);
    un.ss_family = AF_UNIX;
    CHECK(pol_connlimit_acquire(cl, &c, &un, T0) == 0, "conn: non-IP peers not limited (nor counted)");
    pol_connlimit_free(cl);

    cfg_connlimits_t none = {0};
    cl = pol_connlimit_new(0);
    int all = 1;
    for (int i = 0; i < 100; i++)
        all &= pol_connlimit_acquire(cl, &none, &a, T0) == 0;
    CHECK(all, "conn: default config is unlimited");
    pol_connlimit_free(cl);

    cfg_connlimits_t rate = {.per_ip_count = 50, .per_ip_period_ms = 1000, .per_ip_burst = 50};
    cl = pol_connlimit_new(0);
    chammer_t h[4];
    pthread_t th[4];
    int total = 0;
    for (int i = 0; i < 4; i++) {
        h[i] = (chammer_t){.cl = cl, .cfg = &rate, .peer = a};
        pthread_create(&th[i], NULL, chammer, &h[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += h[i].ok;
    }
    CHECK(total == 50, "conn: 4 threads, one IP, fixed clock: exactly the burst of 50");
    pol_connlimit_free(cl);

    /* bounded table: open connections are never evicted; full -> fail open */
    cfg_connlimits_t conc = {.per_ip_concurrent = 1};
    cl = pol_connlimit_new(16);
    int accepted = 0;
    char ip[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.1", i / 250, i % 250);
        struct sockaddr_storage p = addr(ip);
        accepted += pol_connlimit_acquire(cl, &conc, &p, T0) >= 0;
    }
    CHECK(accepted == 3000, "conn: a full table fails open for new addresses");
    struct sockaddr_storage first = addr("10.0.0.1");
    CHECK(pol_connlimit_acquire(cl, &conc, &first, T0) == -2,
          "conn: an address with an open connection stays tracked");
    pol_connlimit_free(cl);
}

/* ---------------------------------------------------------------- redis */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static redisReply *run(redisContext *c, pol_rl_redis_cmd_t *cmd)
{
    return redisCommandArgv(c, 6, cmd->argv, cmd->argvlen);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_parse_helpers(void)
{
    cfg_rate_limit_t l = mk("p", CFG_RL_IP, 10, 1000, 5);
    pol_rl_result_t r;
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = "NOSCRIPT No matching script"};
    CHECK(pol_rl_redis_parse(&l, &e, &r) == -2, "parse: NOSCRIPT -> -2");
    e.str = "ERR something";
    CHECK(pol_rl_redis_parse(&l, &e, &r) == -1, "parse: error reply -> -1");
    CHECK(pol_rl_redis_parse(&l, NULL, &r) == -1, "parse: no reply -> -1");
    redisReply i[4] = {{.type = REDIS_REPLY_INTEGER, .integer = 0},
                       {.type = REDIS_REPLY_INTEGER, .integer = 0},
                       {.type = REDIS_REPLY_INTEGER, .integer = 400000},
                       {.type = REDIS_REPLY_INTEGER, .integer = 1500000}};
    redisReply *el[4] = {&i[0], &i[1], &i[2], &i[3]};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 4, .element = el};
    CHECK(pol_rl_redis_parse(&l, &arr, &r) == 0 && r.retry_after_s == 2 && r.reset_s == 1 &&
              r.limit == 10 && r.window_s == 1 && r.remaining == 0,
          "parse: limited reply");
    i[0].integer = 1;
    i[1].integer = 3;
    i[3].integer = 0;
    CHECK(pol_rl_redis_parse(&l, &arr, &r) == 1 && r.remaining == 3 && r.retry_after_s == 0,
          "parse: allowed reply");
    arr.elements = 3;
    CHECK(pol_rl_redis_parse(&l, &arr, &r) == -1, "parse: wrong element count -> -1");
    arr.elements = 4;
    i[2].type = REDIS_REPLY_STRING;
    CHECK(pol_rl_redis_parse(&l, &arr, &r) == -1, "parse: wrong element type -> -1");

    pol_rl_redis_cmd_t cmd;
    unsigned char key[4] = {192, 0, 2, 1};
    CHECK(pol_rl_redis_cmd(&l, key, 4, 0, &cmd) == 0 && !strcmp(cmd.argv[0], "EVALSHA") &&
              strlen(cmd.argv[1]) == 40 && !strcmp(cmd.argv[2], "1") &&
              !strncmp(cmd.keyname, "portcullis:rl:p:", 16) && strlen(cmd.keyname) == 16 + 64 &&
              !strcmp(cmd.argv[4], "100000") && !strcmp(cmd.argv[5], "5") &&
              cmd.argvlen[3] == strlen(cmd.keyname),
          "cmd: EVALSHA argv (key name, T in us, burst)");
    CHECK(pol_rl_redis_cmd(&l, key, 4, 1, &cmd) == 0 && !strcmp(cmd.argv[0], "EVAL") &&
              cmd.argv[1] == pol_rl_lua,
          "cmd: EVAL argv carries the script");
}

static void test_redis(void)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        printf("# SKIP redis-server not found: the global (Redis) limiter tests did not run\n");
        return;
    }
    int port = free_port();
    char dir[] = "/tmp/portcullis-rltest-XXXXXX", cmdline[2048], pidfile[128];
    if (port < 0 || !mkdtemp(dir)) {
        CHECK(0, "redis: scratch port and directory");
        return;
    }
    snprintf(pidfile, sizeof pidfile, "%s/redis.pid", dir);
    snprintf(cmdline, sizeof cmdline, "redis-server --port %d --bind 127.0.0.1 --save '' "
             "--appendonly no --daemonize yes --dir %s --pidfile %s --logfile %s/redis.log",
             port, dir, pidfile, dir);
    CHECK(system(cmdline) == 0, "redis: redis-server started");
    redisContext *c = NULL;
    for (int i = 0; i < 100; i++) {
        c = redisConnect("127.0.0.1", port);
        if (c && !c->err)
            break;
        redisFree(c);
        c = NULL;
        sleep_ms(50);
    }
    CHECK(c != NULL, "redis: connected");
    if (!c)
        goto stop;

    cfg_rate_limit_t l = mk("burst", CFG_RL_IP, 1, 3600000, 5);
    pol_rl_result_t r;
    pol_rl_redis_cmd_t cmd;
    pol_rl_redis_cmd(&l, "1.2.3.4", 7, 0, &cmd);
    redisReply *rep = run(c, &cmd);
    CHECK(pol_rl_redis_parse(&l, rep, &r) == -2, "redis: EVALSHA before load -> NOSCRIPT");
    freeReplyObject(rep);

    char sha[41];
    pol_rl_lua_sha1(sha);
    rep = redisCommand(c, "SCRIPT LOAD %s", pol_rl_lua);
    CHECK(rep && rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, sha),
          "redis: SCRIPT LOAD returns pol_rl_lua_sha1");
    freeReplyObject(rep);

    int ok = 1;
    for (int i = 0; i < 5; i++) {
        rep = run(c, &cmd);
        ok &= pol_rl_redis_parse(&l, rep, &r) == 1 && r.remaining == (uint64_t)(4 - i);
        freeReplyObject(rep);
    }
    CHECK(ok, "redis: burst of 5 allowed, remaining 4..0");
    rep = run(c, &cmd);
    CHECK(pol_rl_redis_parse(&l, rep, &r) == 0 && r.retry_after_s >= 3599 &&
              r.retry_after_s <= 3600 && r.reset_s >= 17999 && r.reset_s <= 18000 &&
              r.limit == 1 && r.window_s == 3600 && r.remaining == 0,
          "redis: 6th limited, Retry-After 3600s (1/h), reset 5h");
    freeReplyObject(rep);
    rep = redisCommand(c, "PTTL %s", cmd.keyname);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 3599000 &&
              rep->integer <= 3600000 * 5,
          "redis: key expires when its TAT passes");
    freeReplyObject(rep);

    /* EVAL (after NOSCRIPT) works the same way */
    pol_rl_redis_cmd_t ev;
    pol_rl_redis_cmd(&l, "5.6.7.8", 7, 1, &ev);
    rep = run(c, &ev);
    CHECK(pol_rl_redis_parse(&l, rep, &r) == 1 && r.remaining == 4, "redis: EVAL form allowed");
    freeReplyObject(rep);

    /* refill at the rate: 10/s burst 2 */
    cfg_rate_limit_t f = mk("fast", CFG_RL_IP, 10, 1000, 2);
    pol_rl_redis_cmd(&f, "k", 1, 0, &cmd);
    int a = 0;
    for (int i = 0; i < 4; i++) {
        rep = run(c, &cmd);
        a += pol_rl_redis_parse(&f, rep, &r) == 1;
        freeReplyObject(rep);
    }
    CHECK(a == 2, "redis: 10/s burst 2: two of four allowed at once");
    sleep_ms(150);
    rep = run(c, &cmd);
    int first = pol_rl_redis_parse(&f, rep, &r);
    freeReplyObject(rep);
    rep = run(c, &cmd);
    int second = pol_rl_redis_parse(&f, rep, &r);
    freeReplyObject(rep);
    CHECK(first == 1 && second == 0, "redis: one refilled after 150ms, then limited");

    /* sustained: attempts every 10ms for 1s allow ~ burst + 10 */
    cfg_rate_limit_t s = mk("sustained", CFG_RL_IP, 10, 1000, 1);
    pol_rl_redis_cmd(&s, "k", 1, 0, &cmd);
    a = 0;
    for (int i = 0; i < 100; i++) {
        rep = run(c, &cmd);
        a += pol_rl_redis_parse(&s, rep, &r) == 1;
        freeReplyObject(rep);
        sleep_ms(10);
    }
    printf("# sustained: %d allowed in ~1s at 10/s\n", a);
    CHECK(a >= 9 && a <= 12, "redis: about 10 per second allowed under sustained load");
    redisFree(c);
stop:
    snprintf(cmdline, sizeof cmdline, "kill $(cat %s) 2>/dev/null; sleep 0.2; rm -rf '%s'",
             pidfile, dir);
    if (system(cmdline) != 0)
        fprintf(stderr, "warning: could not stop redis-server in %s\n", dir);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_threads();
    test_refill();
    test_reconfigured();
    test_eviction();
    test_keys();
    test_headers();
    test_connlimit();
    test_parse_helpers();
    test_redis();
    return check_done();
}
