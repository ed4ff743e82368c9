/* issued.c: the Redis schema of issuance records and the argument vectors
 * of Redis commands. Contracts: issued.h. */
#include "issued.h"

#include <stdio.h>
#include <string.h>

#include "revocation.h"


void pol_argv_reset(pol_argv_t *a)
{
    a->argc = 0;
    a->key[0] = a->num[0] = a->num2[0] = '\0';
}

void pol_argv_add(pol_argv_t *a, const char *s, size_t len)
{
    a->argv[a->argc] = s;
    a->argvlen[a->argc] = len;
    a->argc++;
}

void pol_argv_str(pol_argv_t *a, const char *s)
{
    pol_argv_add(a, s, strlen(s));
}

/* Sets a->key to prefix+name and adds it. Syscall-like. */
int pol_argv_key(pol_argv_t *a, const char *prefix, const char *name)
{
    int n = snprintf(a->key, sizeof a->key, "%s%s", prefix, name);
    if (n < 0 || (size_t)n >= sizeof a->key)
        return -1;
    pol_argv_add(a, a->key, (size_t)n);
    return 0;
}

void pol_argv_num(pol_argv_t *a, uint64_t v)
{
    char *buf = a->num[0] ? a->num2 : a->num;
    int n = snprintf(buf, sizeof a->num, "%llu", (unsigned long long)v);
    pol_argv_add(a, buf, (size_t)n);
}

/* Lowercase hex serial without leading zeros, 1..40 digits. */
int pol_serial_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 40 || (n > 1 && s[0] == '0'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}


int pol_device_id_valid(const char *s)
{
    return s && pol_device_id_valid_n(s, strlen(s));
}


int pol_issued_set_argv(pol_argv_t *a, const char *serial, const char *json, uint64_t ttl_s)
{
    pol_argv_reset(a);
    if (!pol_serial_valid(serial) || !json || ttl_s == 0)
        return -1;
    pol_argv_str(a, "SET");
    if (pol_argv_key(a, POL_ISSUED_KEY_PREFIX, serial) < 0)
        return -1;
    pol_argv_str(a, json);
    pol_argv_str(a, "EX");
    pol_argv_num(a, ttl_s);
    return 0;
}

int pol_issued_get_argv(pol_argv_t *a, const char *serial)
{
    pol_argv_reset(a);
    if (!pol_serial_valid(serial))
        return -1;
    pol_argv_str(a, "GET");
    return pol_argv_key(a, POL_ISSUED_KEY_PREFIX, serial);
}

int pol_device_sadd_argv(pol_argv_t *a, const char *device_id, const char *serial)
{
    pol_argv_reset(a);
    if (!pol_device_id_valid(device_id) || !pol_serial_valid(serial))
        return -1;
    pol_argv_str(a, "SADD");
    if (pol_argv_key(a, POL_DEVICE_KEY_PREFIX, device_id) < 0)
        return -1;
    pol_argv_str(a, serial);
    return 0;
}

int pol_device_expire_argv(pol_argv_t *a, const char *device_id, uint64_t ttl_s)
{
    pol_argv_reset(a);
    if (!pol_device_id_valid(device_id) || ttl_s == 0)
        return -1;
    pol_argv_str(a, "EXPIRE");
    if (pol_argv_key(a, POL_DEVICE_KEY_PREFIX, device_id) < 0)
        return -1;
    pol_argv_num(a, ttl_s);
    return 0;
}

int pol_device_members_argv(pol_argv_t *a, const char *device_id)
{
    pol_argv_reset(a);
    if (!pol_device_id_valid(device_id))
        return -1;
    pol_argv_str(a, "SMEMBERS");
    return pol_argv_key(a, POL_DEVICE_KEY_PREFIX, device_id);
}

int pol_issued_revocation_entry(const cfg_issuance_t *cfg, const char *serial, char *out,
                                size_t outlen)
{
    const char *err;
    if (!cfg || !pol_serial_valid(serial))
        return -1;
    return pol_rev_canon_serial(cfg->device_class, serial, out, outlen, &err);
}

/* ---- a stateful attester's per-device state (App Attest) ---- */

int pol_attest_set_argv(pol_argv_t *a, const char *device_id, const char *platform,
                        uint64_t counter, const char *state)
{
    pol_argv_reset(a);
    if (!pol_device_id_valid(device_id) || !platform || !state)
        return -1;
    pol_argv_str(a, "HSET");
    if (pol_argv_key(a, POL_ATTEST_KEY_PREFIX, device_id) < 0)
        return -1;
    pol_argv_str(a, "platform");
    pol_argv_str(a, platform);
    pol_argv_str(a, "counter");
    pol_argv_num(a, counter);
    pol_argv_str(a, "state");
    pol_argv_str(a, state);
    return 0;
}

int pol_attest_expire_argv(pol_argv_t *a, const char *device_id, uint64_t ttl_s)
{
    pol_argv_reset(a);
    if (!pol_device_id_valid(device_id) || ttl_s == 0)
        return -1;
    pol_argv_str(a, "EXPIRE");
    if (pol_argv_key(a, POL_ATTEST_KEY_PREFIX, device_id) < 0)
        return -1;
    pol_argv_num(a, ttl_s);
    return 0;
}

int pol_attest_get_argv(pol_argv_t *a, const char *device_id)
{
    pol_argv_reset(a);
    if (!pol_device_id_valid(device_id))
        return -1;
    pol_argv_str(a, "HMGET");
    if (pol_argv_key(a, POL_ATTEST_KEY_PREFIX, device_id) < 0)
        return -1;
    pol_argv_str(a, "platform");
    pol_argv_str(a, "counter");
    pol_argv_str(a, "state");
    return 0;
}

int pol_attest_cas_argv(pol_argv_t *a, const char *device_id, uint64_t counter, const char *state,
                        uint64_t ttl_s)
{
    pol_argv_reset(a);
    if (!pol_device_id_valid(device_id) || !state || ttl_s == 0)
        return -1;
    pol_argv_str(a, "EVAL");
    pol_argv_str(a, POL_ATTEST_CAS_LUA);
    pol_argv_str(a, "1");
    if (pol_argv_key(a, POL_ATTEST_KEY_PREFIX, device_id) < 0)
        return -1;
    pol_argv_num(a, counter);
    pol_argv_str(a, state);
    pol_argv_num(a, ttl_s);
    return 0;
}
