/* ratelimit.c: GCRA rate limits (local sharded table, Redis script helpers),
 * RateLimit headers, and the per-IP connection limiter. See ratelimit.h. */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define SHARDS 64
#define PROBE 16
#define RL_DEFAULT_ENTRIES (1024 * 1024)
#define CL_DEFAULT_ENTRIES (256 * 1024)

/* ---------------------------------------------------------------- keyed hash */

typedef struct {
    EVP_MAC_CTX *tmpl;   /* initialised with the random key; duplicated per use */
} khash_t;

static int khash_init(khash_t *k)
{
    unsigned char key[16];
    size_t outsize = 16;
    OSSL_PARAM params[3];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    k->tmpl = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    if (!k->tmpl || RAND_bytes(key, sizeof key) != 1)
        goto fail;
    params[0] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &outsize);
    params[1] = OSSL_PARAM_construct_end();
    /* The output size must be set before the key (it selects the variant). */
    if (EVP_MAC_CTX_set_params(k->tmpl, params) != 1 ||
        EVP_MAC_init(k->tmpl, key, sizeof key, NULL) != 1)
        goto fail;
    OPENSSL_cleanse(key, sizeof key);
    return 0;
fail:
    OPENSSL_cleanse(key, sizeof key);
    EVP_MAC_CTX_free(k->tmpl);
    k->tmpl = NULL;
    return -1;
}

/* 128-bit digest of (tag, data); never all-zero (zero marks a free slot).
 * The tag is length-prefixed, so no (tag, data) pair reads as another. */
static void khash(const khash_t *k, const void *tag, size_t taglen, const void *data, size_t len,
                  uint64_t out[2])
{
    unsigned char t[8], d[16];
    size_t dl = 0;
    for (int i = 0; i < 8; i++)
        t[i] = (unsigned char)((uint64_t)taglen >> (8 * i));
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->tmpl);
    if (!c || EVP_MAC_update(c, t, sizeof t) != 1 || (taglen && EVP_MAC_update(c, tag, taglen) != 1) ||
        EVP_MAC_update(c, data, len) != 1 || EVP_MAC_final(c, d, &dl, sizeof d) != 1 || dl != 16)
        abort();   /* only on allocation failure: nothing sensible to fall back to */
    EVP_MAC_CTX_free(c);
    memcpy(&out[0], d, 8);
    memcpy(&out[1], d + 8, 8);
    out[0] |= 1;
}

/* ---------------------------------------------------------------- GCRA */

static int64_t emission_us(uint64_t count, uint64_t period_ms)
{
    if (count == 0)
        return 1;
    uint64_t t = (period_ms * 1000 + count / 2) / count;
    return t ? (int64_t)t : 1;
}

static uint64_t ceil_s(int64_t us)
{
    return us <= 0 ? 0 : (uint64_t)((us + 999999) / 1000000);
}

/* One GCRA step on *tat. Boolean: 1 allowed (tat advanced), 0 limited. */
static int gcra(int64_t *tat, int64_t T, int64_t tau, int64_t now, int64_t *remaining,
                int64_t *reset_us, int64_t *retry_us)
{
    int64_t t = *tat > now ? *tat : now, nt = t + T;
    if (nt - now > tau) {
        *remaining = 0;
        *reset_us = t - now;
        *retry_us = nt - tau - now;
        return 0;
    }
    *tat = nt;
    *remaining = (tau - (nt - now)) / T;
    *reset_us = nt - now;
    *retry_us = 0;
    return 1;
}

static void fill(pol_rl_result_t *res, const cfg_rate_limit_t *l, int64_t remaining,
                 int64_t reset_us, int64_t retry_us)
{
    if (!res)
        return;
    res->limit = l->count;
    res->window_s = l->period_ms / 1000;
    res->remaining = remaining > 0 ? (uint64_t)remaining : 0;
    res->reset_s = ceil_s(reset_us);
    res->retry_after_s = retry_us > 0 ? ceil_s(retry_us) : 0;
    if (retry_us > 0 && res->retry_after_s == 0)
        res->retry_after_s = 1;
}

/* ---------------------------------------------------------------- local limiter */

typedef struct {
    uint64_t h[2];      /* 0,0: never used */
    int64_t tat;        /* free again once tat <= now */
} rl_entry_t;

typedef struct {
    pthread_mutex_t mu;
    rl_entry_t *e;
    size_t cap;
} __attribute__((aligned(64))) rl_shard_t;

struct pol_rl {
    khash_t hash;
    uint64_t evictions;  /* atomic */
    rl_shard_t shards[SHARDS];
};

pol_rl_t *pol_rl_new(size_t max_entries)
{
    pol_rl_t *rl;
    if (posix_memalign((void **)&rl, 64, sizeof *rl) != 0)
        return NULL;
    memset(rl, 0, sizeof *rl);
    size_t per = ((max_entries ? max_entries : RL_DEFAULT_ENTRIES) + SHARDS - 1) / SHARDS;
    if (per < PROBE)
        per = PROBE;
    int ok = khash_init(&rl->hash) == 0;
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&rl->shards[i].mu, NULL);
        rl->shards[i].cap = per;
        if (ok && !(rl->shards[i].e = calloc(per, sizeof(rl_entry_t))))
            ok = 0;
    }
    if (!ok) {
        pol_rl_free(rl);
        return NULL;
    }
    return rl;
}

void pol_rl_free(pol_rl_t *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_destroy(&rl->shards[i].mu);
        free(rl->shards[i].e);
    }
    EVP_MAC_CTX_free(rl->hash.tmpl);
    free(rl);
}

uint64_t pol_rl_evictions(pol_rl_t *rl)
{
    return __atomic_load_n(&rl->evictions, __ATOMIC_RELAXED);
}

int pol_rl_check(pol_rl_t *rl, const cfg_rate_limit_t *l, const void *key, size_t klen,
                 int64_t now_us, pol_rl_result_t *res)
{
    uint64_t h[2];
    int64_t remaining, reset_us, retry_us;
    int64_t T = emission_us(l->count, l->period_ms);
    int64_t tau = T * (int64_t)(l->burst ? l->burst : 1);
    khash(&rl->hash, l->name, strnlen(l->name, sizeof l->name), key, klen, h);
    rl_shard_t *s = &rl->shards[h[1] % SHARDS];
    size_t start = (size_t)(h[0] >> 1) % s->cap;
    rl_entry_t *hit = NULL, *freeslot = NULL, *oldest = NULL;

    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < PROBE; i++) {
        rl_entry_t *e = &s->e[(start + i) % s->cap];
        if (e->h[0] == h[0] && e->h[1] == h[1]) {
            hit = e;
            break;
        }
        if (e->h[0] == 0 && e->h[1] == 0) {
            if (!freeslot)
                freeslot = e;
            break;   /* slots are never emptied, so the key is not further on */
        }
        if (e->tat <= now_us) {
            if (!freeslot)
                freeslot = e;
        } else if (!oldest || e->tat < oldest->tat) {
            oldest = e;
        }
    }
    if (!hit) {
        hit = freeslot;
        if (!hit) {
            hit = oldest;
            __atomic_add_fetch(&rl->evictions, 1, __ATOMIC_RELAXED);
        }
        hit->h[0] = h[0];
        hit->h[1] = h[1];
        hit->tat = now_us;
    }
    int ok = gcra(&hit->tat, T, tau, now_us, &remaining, &reset_us, &retry_us);
    pthread_mutex_unlock(&s->mu);
    fill(res, l, remaining, reset_us, retry_us);
    return ok;
}

/* ---------------------------------------------------------------- keys */

static void sha256(const void *a, size_t alen, unsigned char out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(a, alen, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        abort();
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pol_rl_key(const cfg_rate_limit_t *l, const tls_identity_t *id, const char *peer_ip,
               const char *bearer, size_t blen, const cfg_route_t *route,
               unsigned char out[32], size_t *outlen)
{
    switch (l->key) {
    case CFG_RL_DEVICE_ID:
        if (!id)
            return -1;
        if (!id->device_id || !*id->device_id) {
            /* counted per certificate: "\0" + fingerprint, which no device
             * id hashes to (a device id never contains a NUL byte) */
            char fb[1 + sizeof(id->fingerprint)];
            size_t n = strnlen(id->fingerprint, sizeof(id->fingerprint));
            if (n != 64)
                return -1;
            fb[0] = '\0';
            memcpy(fb + 1, id->fingerprint, n);
            sha256(fb, 1 + n, out);
        } else {
            sha256(id->device_id, strlen(id->device_id), out);
        }
        *outlen = 32;
        return 0;
    case CFG_RL_FINGERPRINT:
        if (!id || strlen(id->fingerprint) != 64)
            return -1;
        for (size_t i = 0; i < 32; i++) {
            int hi = hexval(id->fingerprint[2 * i]), lo = hexval(id->fingerprint[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            out[i] = (unsigned char)(hi << 4 | lo);
        }
        *outlen = 32;
        return 0;
    case CFG_RL_TOKEN:
        if (!bearer || blen == 0)
            return -1;
        sha256(bearer, blen, out);
        *outlen = 32;
        return 0;
    case CFG_RL_IP:
        if (!peer_ip)
            return -1;
        if (inet_pton(AF_INET, peer_ip, out) == 1) {
            *outlen = 4;
            return 0;
        }
        if (inet_pton(AF_INET6, peer_ip, out) == 1) {
            *outlen = 16;
            return 0;
        }
        return -1;
    case CFG_RL_ROUTE: {
        if (!route || !route->path)
            return -1;
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        unsigned int n = 0;
        int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
        const char *host = route->host ? route->host : "";
        ok = ok && EVP_DigestUpdate(c, host, strlen(host) + 1) == 1 &&
             EVP_DigestUpdate(c, route->path, strlen(route->path) + 1) == 1;
        for (size_t i = 0; ok && i < route->nmethods; i++)
            ok = EVP_DigestUpdate(c, route->methods[i], strlen(route->methods[i]) + 1) == 1;
        ok = ok && EVP_DigestFinal_ex(c, out, &n) == 1 && n == 32;
        EVP_MD_CTX_free(c);
        if (!ok)
            return -1;
        *outlen = 32;
        return 0;
    }
    default:
        return -1;
    }
}

/* ---------------------------------------------------------------- headers */

int pol_rl_headers(const pol_rl_result_t *r, const char *limit_name, char *out, size_t outlen)
{
    int n;
    if (!outlen)
        return -1;
    if (r->retry_after_s > 0)
        n = snprintf(out, outlen,
                     "RateLimit-Policy: \"%s\";q=%llu;w=%llu\r\n"
                     "RateLimit: \"%s\";r=%llu;t=%llu\r\n"
                     "Retry-After: %llu\r\n",
                     limit_name, (unsigned long long)r->limit, (unsigned long long)r->window_s,
                     limit_name, (unsigned long long)r->remaining,
                     (unsigned long long)r->reset_s, (unsigned long long)r->retry_after_s);
    else
        n = snprintf(out, outlen,
                     "RateLimit-Policy: \"%s\";q=%llu;w=%llu\r\n"
                     "RateLimit: \"%s\";r=%llu;t=%llu\r\n",
                     limit_name, (unsigned long long)r->limit, (unsigned long long)r->window_s,
                     limit_name, (unsigned long long)r->remaining,
                     (unsigned long long)r->reset_s);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return -1;
    }
    return n;
}

/* ---------------------------------------------------------------- global (Redis) */

const char pol_rl_lua[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = T * tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]))\n"
    "if not tat or tat < now then tat = now end\n"
    "local nt = tat + T\n"
    "if nt - now > tau then\n"
    "  return {0, 0, tat - now, nt - tau - now}\n"
    "end\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', nt), 'PX', math.ceil((nt - now) / 1000))\n"
    "return {1, math.floor((tau - (nt - now)) / T), nt - now, 0}\n";

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void pol_rl_lua_sha1(char out[41])
{
    unsigned char md[20];
    unsigned int n = 0;
    if (EVP_Digest(pol_rl_lua, sizeof pol_rl_lua - 1, md, &n, EVP_sha1(), NULL) != 1 || n != 20)
        abort();
    hex(md, 20, out);
}

int pol_rl_redis_cmd(const cfg_rate_limit_t *l, const void *key, size_t klen, int use_eval,
                     pol_rl_redis_cmd_t *cmd)
{
    unsigned char md[32];
    char hx[65];
    memset(cmd, 0, sizeof *cmd);
    if (!l || !key || !l->count || !l->name[0])
        return -1;
    sha256(key, klen, md);
    hex(md, 32, hx);
    int n1 = snprintf(cmd->keyname, sizeof cmd->keyname, "portcullis:rl:%s:%s", l->name, hx);
    int n2 = snprintf(cmd->t_us, sizeof cmd->t_us, "%lld",
                      (long long)emission_us(l->count, l->period_ms));
    int n3 = snprintf(cmd->burst, sizeof cmd->burst, "%llu",
                      (unsigned long long)(l->burst ? l->burst : 1));
    if (n1 < 0 || (size_t)n1 >= sizeof cmd->keyname || n2 < 0 || n3 < 0)
        return -1;
    pol_rl_lua_sha1(cmd->sha);
    cmd->argv[0] = use_eval ? "EVAL" : "EVALSHA";
    cmd->argv[1] = use_eval ? pol_rl_lua : cmd->sha;
    cmd->argv[2] = "1";
    cmd->argv[3] = cmd->keyname;
    cmd->argv[4] = cmd->t_us;
    cmd->argv[5] = cmd->burst;
    for (int i = 0; i < 6; i++)
        cmd->argvlen[i] = strlen(cmd->argv[i]);
    return 0;
}

int pol_rl_redis_parse(const cfg_rate_limit_t *l, const struct redisReply *reply,
                       pol_rl_result_t *res)
{
    if (!reply)
        return -1;
    if (reply->type == REDIS_REPLY_ERROR)
        return reply->str && strncmp(reply->str, "NOSCRIPT", 8) == 0 ? -2 : -1;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4)
        return -1;
    long long v[4];
    for (size_t i = 0; i < 4; i++) {
        if (!reply->element[i] || reply->element[i]->type != REDIS_REPLY_INTEGER)
            return -1;
        v[i] = reply->element[i]->integer;
    }
    if ((v[0] != 0 && v[0] != 1) || v[1] < 0 || v[2] < 0 || v[3] < 0)
        return -1;
    fill(res, l, v[1], v[2], v[0] ? 0 : (v[3] > 0 ? v[3] : 1));
    return (int)v[0];
}

/* ---------------------------------------------------------------- connection limiter */

typedef struct {
    unsigned char key[16];   /* IPv4 as ::ffff:a.b.c.d, IPv6 as its /64 */
    unsigned char used;
    uint32_t open;           /* counted connections (only with per_ip_concurrent) */
    int64_t tat;
} cl_entry_t;

typedef struct {
    pthread_mutex_t mu;
    cl_entry_t *e;
    size_t cap;
} __attribute__((aligned(64))) cl_shard_t;

struct pol_connlimit {
    khash_t hash;
    cl_shard_t shards[SHARDS];
};

pol_connlimit_t *pol_connlimit_new(size_t max_entries)
{
    pol_connlimit_t *cl;
    if (posix_memalign((void **)&cl, 64, sizeof *cl) != 0)
        return NULL;
    memset(cl, 0, sizeof *cl);
    size_t per = ((max_entries ? max_entries : CL_DEFAULT_ENTRIES) + SHARDS - 1) / SHARDS;
    if (per < PROBE)
        per = PROBE;
    int ok = khash_init(&cl->hash) == 0;
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&cl->shards[i].mu, NULL);
        cl->shards[i].cap = per;
        if (ok && !(cl->shards[i].e = calloc(per, sizeof(cl_entry_t))))
            ok = 0;
    }
    if (!ok) {
        pol_connlimit_free(cl);
        return NULL;
    }
    return cl;
}

void pol_connlimit_free(pol_connlimit_t *cl)
{
    if (!cl)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_destroy(&cl->shards[i].mu);
        free(cl->shards[i].e);
    }
    EVP_MAC_CTX_free(cl->hash.tmpl);
    free(cl);
}

/* The table key of a peer; -1 for families that are not limited. */
static int peer_key(const struct sockaddr_storage *p, unsigned char k[16])
{
    memset(k, 0, 16);
    if (p->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)p;
        k[10] = k[11] = 0xff;
        memcpy(k + 12, &a->sin_addr, 4);
        return 0;
    }
    if (p->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)p;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            memcpy(k, &a->sin6_addr, 16);   /* an IPv4 client on a dual-stack socket */
        else
            memcpy(k, &a->sin6_addr, 8);
        return 0;
    }
    return -1;
}

/* Finds (create: or makes) the entry of k; called with the shard locked. */
static cl_entry_t *cl_find(pol_connlimit_t *cl, cl_shard_t *s, const unsigned char k[16],
                           uint64_t h, int64_t now, int create)
{
    cl_entry_t *freeslot = NULL, *oldest = NULL;
    size_t start = (size_t)h % s->cap;
    for (size_t i = 0; i < PROBE; i++) {
        cl_entry_t *e = &s->e[(start + i) % s->cap];
        if (e->used && memcmp(e->key, k, 16) == 0)
            return e;
        if (!e->used) {
            if (!freeslot)
                freeslot = e;
            break;
        }
        if (e->open == 0) {
            if (e->tat <= now) {
                if (!freeslot)
                    freeslot = e;
            } else if (!oldest || e->tat < oldest->tat) {
                oldest = e;
            }
        }
    }
    (void)cl;
    if (!create)
        return NULL;
    cl_entry_t *e = freeslot ? freeslot : oldest;
    if (e) {
        memcpy(e->key, k, 16);
        e->used = 1;
        e->open = 0;
        e->tat = now;
    }
    return e;
}

static cl_shard_t *cl_shard(pol_connlimit_t *cl, const unsigned char k[16], uint64_t *slot)
{
    uint64_t h[2];
    khash(&cl->hash, NULL, 0, k, 16, h);
    *slot = h[0] >> 1;
    return &cl->shards[h[1] % SHARDS];
}

int pol_connlimit_acquire(pol_connlimit_t *cl, const cfg_connlimits_t *cfg,
                          const struct sockaddr_storage *peer, int64_t now_us)
{
    unsigned char k[16];
    uint64_t slot;
    uint32_t maxc = cfg->per_ip_concurrent;
    if ((!cfg->per_ip_count && !maxc) || peer_key(peer, k) < 0)
        return 0;
    int64_t T = 0, tau = 0;
    if (cfg->per_ip_count) {
        T = emission_us(cfg->per_ip_count, cfg->per_ip_period_ms ? cfg->per_ip_period_ms : 1000);
        tau = T * (int64_t)(cfg->per_ip_burst ? cfg->per_ip_burst : cfg->per_ip_count);
    }
    cl_shard_t *s = cl_shard(cl, k, &slot);
    int rc = 0;
    int64_t rem, reset, retry;
    pthread_mutex_lock(&s->mu);
    cl_entry_t *e = cl_find(cl, s, k, slot, now_us, 1);
    if (!e)
        rc = 0;   /* table full of addresses with open connections: fail open */
    else if (maxc && e->open >= maxc)
        rc = -2;
    else if (cfg->per_ip_count && !gcra(&e->tat, T, tau, now_us, &rem, &reset, &retry))
        rc = -1;
    else if (maxc && ++e->open)
        rc = 1;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void pol_connlimit_release(pol_connlimit_t *cl, const struct sockaddr_storage *peer)
{
    unsigned char k[16];
    uint64_t slot;
    if (peer_key(peer, k) < 0)
        return;
    cl_shard_t *s = cl_shard(cl, k, &slot);
    pthread_mutex_lock(&s->mu);
    cl_entry_t *e = cl_find(cl, s, k, slot, 0, 0);
    if (e && e->open > 0)
        e->open--;
    pthread_mutex_unlock(&s->mu);
}

uint32_t pol_connlimit_count(pol_connlimit_t *cl, const struct sockaddr_storage *peer)
{
    unsigned char k[16];
    uint64_t slot;
    uint32_t n = 0;
    if (peer_key(peer, k) < 0)
        return 0;
    cl_shard_t *s = cl_shard(cl, k, &slot);
    pthread_mutex_lock(&s->mu);
    cl_entry_t *e = cl_find(cl, s, k, slot, 0, 0);
    if (e)
        n = e->open;
    pthread_mutex_unlock(&s->mu);
    return n;
}
