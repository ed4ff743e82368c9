/* records.c: nonces (made, stored, consumed), device ids and the issuance
 * record. Contracts: issuance.h; the Redis keys of records: policy/issued.h. */
#include "issuance.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

/* ---------------------------------------------------------------- nonce */

int iss_nonce_new(char out[64])
{
    unsigned char raw[ISS_NONCE_BYTES];
    out[0] = '\0';
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    return iss_b64url_encode(raw, sizeof raw, out, 64);
}

int iss_nonce_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n != ISS_NONCE_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (iss_b64url_val((unsigned char)s[i]) < 0)
            return 0;
    return 1;
}

int iss_nonce_key(const char *nonce, char *out, size_t outlen)
{
    if (!iss_nonce_valid(nonce))
        return -1;
    int n = snprintf(out, outlen, ISS_NONCE_KEY_PREFIX "%s", nonce);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int iss_nonce_set_argv(pol_argv_t *a, const char *nonce, const char *class_name,
                       uint64_t ttl_ms)
{
    pol_argv_reset(a);
    if (!iss_nonce_valid(nonce) || !class_name || !*class_name || ttl_ms == 0)
        return -1;
    pol_argv_str(a, "SET");
    if (pol_argv_key(a, ISS_NONCE_KEY_PREFIX, nonce) < 0)
        return -1;
    pol_argv_str(a, class_name);
    pol_argv_str(a, "PX");
    pol_argv_num(a, ttl_ms);
    pol_argv_str(a, "NX");
    return 0;
}

int iss_nonce_getdel_argv(pol_argv_t *a, const char *nonce)
{
    pol_argv_reset(a);
    if (!iss_nonce_valid(nonce))
        return -1;
    pol_argv_str(a, "GETDEL");
    return pol_argv_key(a, ISS_NONCE_KEY_PREFIX, nonce);
}

int iss_nonce_check(const char *value, size_t len, const char *class_name, const char **err)
{
    if (!value) {
        *err = "nonce unknown, expired or already used";
        return 0;
    }
    if (!class_name || strlen(class_name) != len || memcmp(value, class_name, len) != 0) {
        *err = "nonce was issued to another client class";
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- device id */

int iss_device_id_new(char out[40])
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char raw[20];
    out[0] = '\0';
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < sizeof raw; i += 5) {
        uint64_t v = 0;
        for (size_t k = 0; k < 5; k++)
            v = (v << 8) | raw[i + k];
        for (int k = 7; k >= 0; k--)
            out[o++] = b32[(v >> (5 * k)) & 31];
    }
    out[o] = '\0';
    return 0;
}

/* ---------------------------------------------------------------- records */

int iss_record_json(const iss_issued_t *is, const char *device_id, const char *platform,
                          const char *attestation_summary, char **json_out)
{
    *json_out = NULL;
    if (!is || !device_id)
        return -1;
    char issued[32];
    struct tm tm;
    if (!gmtime_r(&is->issued_at, &tm) || !strftime(issued, sizeof issued, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return -1;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "serial", is->serial,
                          "device_id", device_id, "platform", platform ? platform : "",
                          "attestation", attestation_summary ? attestation_summary : "",
                          "integrity", cfg_integrity_name(is->level), "fingerprint", is->fingerprint, "issued_at", issued, "not_after",
                          is->not_after, "not_after_unix", (json_int_t)is->not_after_t);
    if (!o)
        return -1;
    *json_out = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    return *json_out ? 0 : -1;
}
