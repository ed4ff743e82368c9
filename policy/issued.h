/* policy/issued: the Redis schema of issuance records, which issuance
 * (issuance/) writes and revocation by device id (revstore.c) reads:
 *
 *   portcullis:issued:<serial>     the record of one issued certificate (JSON)
 *   portcullis:device:<device_id>  the set of serials issued to a device id
 *   portcullis:attest:<device_id>  a stateful attester's state for the device
 *                                  (hash: platform, counter, state; App Attest)
 *
 * and the argument vectors for hiredis that every Redis command of the
 * issuance and revocation code is built in. Nothing here does I/O.
 * Return conventions are stated per function ("syscall-like": 0 / -1;
 * "boolean": 1 / 0). */
#ifndef PORTCULLIS_POLICY_ISSUED_H
#define PORTCULLIS_POLICY_ISSUED_H

#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"

#define POL_ARGV_KEY_MAX 200
#define POL_ARGV_MAX 8

/* An argument vector for redisAsyncCommandArgv(). Variable parts that are
 * not the caller's strings (keys, numbers) are stored inside the struct, so
 * the struct and the strings passed in must live until the command is
 * queued (hiredis copies them then). */
typedef struct {
    int argc;
    const char *argv[POL_ARGV_MAX];
    size_t argvlen[POL_ARGV_MAX];
    char key[POL_ARGV_KEY_MAX];
    char num[24];
    char num2[24];
} pol_argv_t;

/* Argument vector builders. reset empties a; str and add append a string
 * the caller keeps alive; key appends prefix+name, stored in a->key
 * (syscall-like: -1 when it does not fit); num appends v, stored in a->num
 * (the second number in a->num2). At most one key and two numbers per
 * vector, POL_ARGV_MAX arguments. */
void pol_argv_reset(pol_argv_t *a);
void pol_argv_add(pol_argv_t *a, const char *s, size_t len);
void pol_argv_str(pol_argv_t *a, const char *s);
int pol_argv_key(pol_argv_t *a, const char *prefix, const char *name);
void pol_argv_num(pol_argv_t *a, uint64_t v);

#define POL_ISSUED_KEY_PREFIX "portcullis:issued:"
#define POL_DEVICE_KEY_PREFIX "portcullis:device:"
#define POL_ATTEST_KEY_PREFIX "portcullis:attest:"

/* Boolean: the C string s is a device id (pol_device_id_valid_n). */
int pol_device_id_valid(const char *s);
/* Boolean: s is a certificate serial as the issuer writes it (lowercase
 * hex without leading zeros, 1..40 digits). */
int pol_serial_valid(const char *s);

/* SET portcullis:issued:<serial> <json> EX <ttl_s>. Syscall-like. */
int pol_issued_set_argv(pol_argv_t *a, const char *serial, const char *json, uint64_t ttl_s);
/* GET portcullis:issued:<serial>. Syscall-like. */
int pol_issued_get_argv(pol_argv_t *a, const char *serial);
/* SADD portcullis:device:<device_id> <serial>. Syscall-like. */
int pol_device_sadd_argv(pol_argv_t *a, const char *device_id, const char *serial);
/* EXPIRE portcullis:device:<device_id> <ttl_s>. Syscall-like. */
int pol_device_expire_argv(pol_argv_t *a, const char *device_id, uint64_t ttl_s);
/* SMEMBERS portcullis:device:<device_id> (revoke by device id). Syscall-like. */
int pol_device_members_argv(pol_argv_t *a, const char *device_id);
/* HSET portcullis:attest:<device_id> platform <platform> counter <counter>
 * state <state>: a stateful attester's state at issue. Syscall-like. */
int pol_attest_set_argv(pol_argv_t *a, const char *device_id, const char *platform,
                        uint64_t counter, const char *state);
/* EXPIRE portcullis:attest:<device_id> <ttl_s>. Syscall-like. */
int pol_attest_expire_argv(pol_argv_t *a, const char *device_id, uint64_t ttl_s);
/* HMGET portcullis:attest:<device_id> platform counter state (renewal).
 * Syscall-like. */
int pol_attest_get_argv(pol_argv_t *a, const char *device_id);
/* EVAL of POL_ATTEST_CAS_LUA on portcullis:attest:<device_id>: stores
 * counter and state and renews the TTL only if counter is strictly above
 * the stored counter, atomically. Replies 1 stored, 0 not increasing (a
 * replay), -1 no state for the device. Syscall-like. */
int pol_attest_cas_argv(pol_argv_t *a, const char *device_id, uint64_t counter, const char *state,
                        uint64_t ttl_s);
#define POL_ATTEST_CAS_LUA                                                            \
    "local c = redis.call('HGET', KEYS[1], 'counter') "                                \
    "if not c then return -1 end "                                                     \
    "if tonumber(ARGV[1]) <= tonumber(c) then return 0 end "                           \
    "redis.call('HSET', KEYS[1], 'counter', ARGV[1], 'state', ARGV[2]) "               \
    "redis.call('EXPIRE', KEYS[1], ARGV[3]) "                                          \
    "return 1"

/* The revocation entry "<device_class>:<serial>" (policy/revocation.h) of a
 * certificate issued here. Syscall-like. */
int pol_issued_revocation_entry(const cfg_issuance_t *cfg, const char *serial, char *out,
                                size_t outlen);

#endif
