/* ratelimit: request rate limits (GCRA), local and Redis-backed, the IETF
 * RateLimit response headers, and the per-IP connection limiter.
 *
 * GCRA (generic cell rate algorithm): a limit of `count` per `period` with
 * burst B has the emission interval T = period / count (in microseconds,
 * rounded to the nearest) and the tolerance tau = B * T. Each key keeps one
 * number, its theoretical arrival time TAT. A request at `now` computes
 * tat' = max(TAT, now) + T; it is allowed (and TAT := tat') when
 * tat' - now <= tau, and limited otherwise (TAT unchanged). So from an idle
 * key exactly B requests pass at once, then one every T.
 *
 * Result fields (pol_rl_result_t):
 *   limit         count, the quota per window
 *   window_s      the window (period) in seconds
 *   remaining     requests that would be allowed right now without waiting
 *   reset_s       seconds (rounded up) until the key is back to a full burst
 *   retry_after_s seconds (rounded up, >= 1) until a request would pass;
 *                 0 when the request was allowed
 *
 * Threads: pol_rl_t and pol_connlimit_t may be shared by all worker threads;
 * they are sharded hash tables with one mutex per shard, so a decision is
 * exact for the whole process. Raw keys are never stored: entries hold a
 * 128-bit SipHash of (limit index, key bytes) under a random key made when
 * the limiter is created.
 */
#ifndef PORTCULLIS_POLICY_RATELIMIT_H
#define PORTCULLIS_POLICY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../config/config.h"
#include "../tls/tls.h"

struct redisReply;

typedef struct {
    uint64_t limit;
    uint64_t window_s;
    uint64_t remaining;
    uint64_t reset_s;
    uint64_t retry_after_s;
} pol_rl_result_t;

/* ---------------------------------------------------------------- local */

typedef struct pol_rl pol_rl_t;

/* A local limiter for every local limit, holding at most max_entries keys in
 * total (0: a default of 1,048,576; rounded up to a multiple of the shard
 * count). Memory is allocated once, here (about 32 bytes per entry). It keeps
 * no config: each check passes its limit, and a key's state is found by the
 * limit's name and the key, so a limiter outlives configurations (a reload
 * keeps every budget; a limit tightened applies to what was spent). NULL on
 * allocation or RNG failure. */
pol_rl_t *pol_rl_new(size_t max_entries);
void pol_rl_free(pol_rl_t *rl);

/* One request of the key (key bytes, e.g. from pol_rl_key) against limit l
 * at now_us (a monotonic clock in microseconds). Boolean: 1 allowed, 0
 * limited; res (may be NULL) is filled either way.
 *
 * Memory bound: an entry whose TAT is not after now is free (the key is back
 * to a full burst, so forgetting it changes nothing). A new key takes a free
 * slot within a short probe window; if every slot there is live, the entry
 * that becomes free soonest is evicted (counted in pol_rl_evictions). An
 * evicted key starts again with a full burst, so under memory pressure a limit
 * can admit more than configured, never less: the limiter fails open per key
 * rather than refusing clients it cannot track. */
int pol_rl_check(pol_rl_t *rl, const cfg_rate_limit_t *l, const void *key, size_t klen,
                 int64_t now_us, pol_rl_result_t *res);

/* Live-entry evictions so far (for metrics/logging). */
uint64_t pol_rl_evictions(pol_rl_t *rl);

/* The key of limit l for one request, written to out (up to 32 bytes):
 *   device_id    SHA-256 of id->device_id; for a certificate without a
 *                device id (a bootstrap certificate), SHA-256 of a NUL byte
 *                and the fingerprint's hex: counted per certificate instead,
 *                never as one of the device ids
 *   fingerprint  the 32-byte certificate SHA-256 (id->fingerprint decoded)
 *   token        SHA-256 of the bearer token (bearer: the credential without
 *                "Bearer "; the raw token is never kept)
 *   ip           the 4- or 16-byte address parsed from peer_ip
 *   route        SHA-256 of the route's host, path and methods
 * Syscall-like: 0, or -1 "no key" only for input the gateway never passes
 * (no identity, no bearer token on a route whose jwt check has passed,
 * unparsable peer_ip, no route). The gate refuses a request without a key
 * for one of its limits (500): a limit is never skipped. */
int pol_rl_key(const cfg_rate_limit_t *l, const tls_identity_t *id, const char *peer_ip,
               const char *bearer, size_t blen, const cfg_route_t *route,
               unsigned char out[32], size_t *outlen);

/* ---------------------------------------------------------------- headers */

/* Response header lines for one limit, following
 * draft-ietf-httpapi-ratelimit-headers-08 (October 2024):
 *   RateLimit-Policy: "<name>";q=<limit>;w=<window_s>\r\n
 *   RateLimit: "<name>";r=<remaining>;t=<reset_s>\r\n
 * plus "Retry-After: <retry_after_s>\r\n" when r->retry_after_s > 0 (a
 * limited request). limit_name must be a config name (no quotes/backslashes).
 * With several limits on a route, pass the one with the least remaining (the
 * one that refused the request, for a 429). Syscall-like: the length written
 * (NUL-terminated), or -1 if outlen is too small (out is then ""). */
int pol_rl_headers(const pol_rl_result_t *r, const char *limit_name, char *out, size_t outlen);

/* ---------------------------------------------------------------- global */

/* The Lua GCRA script for scope: global. KEYS[1] the key; ARGV[1] the
 * emission interval T in microseconds; ARGV[2] the burst. The script reads
 * the clock with Redis TIME, so every gateway sharing the Redis decides on
 * the same clock whatever the skew between gateway hosts (it calls
 * redis.replicate_commands() when the server has it, needed for TIME in a
 * script that writes on Redis < 5; a no-op on Redis 7). It replies
 * {allowed (1/0), remaining, reset_us, retry_after_us}; the key expires when
 * its TAT passes. */
extern const char pol_rl_lua[];

/* SHA-1 hex of pol_rl_lua, for EVALSHA. */
void pol_rl_lua_sha1(char out[41]);

/* EVALSHA/EVAL arguments for one decision, for redisCommandArgv /
 * redisAsyncCommandArgv (argc is always 6; hiredis formats the command
 * before it returns, so the struct may live on the caller's stack). */
typedef struct {
    const char *argv[6];
    size_t argvlen[6];
    char keyname[14 + CFG_MAX_NAME + 1 + 64 + 1];   /* portcullis:rl:<name>:<hex> */
    char sha[41];
    char t_us[24], burst[24];
} pol_rl_redis_cmd_t;

/* Builds "EVALSHA <sha> 1 portcullis:rl:<limit name>:<hex SHA-256 of key>
 * <T> <burst>" (use_eval 0), or the same with EVAL and the script text
 * (use_eval 1, after a NOSCRIPT reply). Syscall-like: 0, or -1 on bad input. */
int pol_rl_redis_cmd(const cfg_rate_limit_t *l, const void *key, size_t klen, int use_eval,
                     pol_rl_redis_cmd_t *cmd);

/* Interprets the script's reply. Tri-state: 1 allowed, 0 limited (res
 * filled), -1 error (no reply, error reply, unexpected shape): treat as Redis
 * unavailable; -2 NOSCRIPT: send the same command again with use_eval 1. */
int pol_rl_redis_parse(const cfg_rate_limit_t *l, const struct redisReply *reply,
                       pol_rl_result_t *res);

/* ---------------------------------------------------------------- connections */

typedef struct pol_connlimit pol_connlimit_t;

/* A connection limiter tracking at most max_entries addresses (0: default
 * 262,144). IPv4 peers are keyed by address, IPv6 peers by their /64 prefix
 * (one subscriber usually holds a whole /64, so per-address limits would be
 * trivial to dodge). Like pol_rl_t it keeps no config: the limits are passed
 * on each acquire, so its counts outlive a reload. NULL on allocation
 * failure. */
pol_connlimit_t *pol_connlimit_new(size_t max_entries);
void pol_connlimit_free(pol_connlimit_t *cl);

/* On accept, before any TLS work, under the limits of cfg. Tri-state: 1 ok
 * and counted (the caller must call pol_connlimit_release once when the
 * connection closes), 0 ok and not counted (no release: cfg has no
 * concurrency limit, the address is not IPv4/IPv6, or the table is full), -1
 * over the new connection rate, -2 over the concurrent connections (close
 * the socket; no release).
 * When full, entries without open connections whose rate state has expired
 * are reused, then the one without open connections that expires soonest is
 * evicted; if every entry in the probe window has open connections the
 * address is accepted untracked (fail open: 0). */
int pol_connlimit_acquire(pol_connlimit_t *cl, const cfg_connlimits_t *cfg,
                          const struct sockaddr_storage *peer, int64_t now_us);
void pol_connlimit_release(pol_connlimit_t *cl, const struct sockaddr_storage *peer);

/* Open connections counted for peer's key (for tests and the admin API). */
uint32_t pol_connlimit_count(pol_connlimit_t *cl, const struct sockaddr_storage *peer);

#endif
