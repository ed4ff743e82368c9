/* issuance.c: nonces, request parsing, device ids, Redis argv vectors, the
 * JSON documents of the issuance routes, and the http verifier protocol.
 * Certificate requests and signing are in issuer.c, Play Integrity in
 * attest_play.c. Contracts: issuance.h.
 */
#include "issuance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "../policy/revocation.h"

/* ---------------------------------------------------------------- errors */

const char *pol_iss_error_code(enum pc_err e)
{
    return pc_err_code(e);
}

int pol_iss_error_status(enum pc_err e)
{
    return pc_err_status(e);
}

/* json_dumps of obj plus "\n"; consumes obj. Syscall-like. */
static int dump_line(json_t *obj, char **json)
{
    *json = NULL;
    if (!obj)
        return -1;
    char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(obj);
    if (!s)
        return -1;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return -1;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *json = t;
    return 0;
}

int pol_issue_error_json(enum pc_err e, const char *message, const char *request_id, char **json)
{
    return dump_line(json_pack("{s:s, s:s, s:s}", "error", pc_err_code(e), "message",
                               message ? message : pc_err_message(e), "request_id",
                               request_id ? request_id : ""),
                     json);
}

/* ---------------------------------------------------------------- base64url */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int pol_iss_b64url_encode(const unsigned char *in, size_t len, char *out, size_t outcap)
{
    size_t need = (len + 2) / 3 * 4 + 1, o = 0;
    if (outcap < need)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t rem = len - i;
        if (rem > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (rem > 2)
            v |= in[i + 2];
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        if (rem > 1)
            out[o++] = b64u[(v >> 6) & 63];
        if (rem > 2)
            out[o++] = b64u[v & 63];
    }
    out[o] = '\0';
    return 0;
}

static int b64u_val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

long pol_iss_b64url_decode(const char *s, size_t len, unsigned char *out, size_t outcap)
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len % 4 == 1 || outcap < len * 3 / 4 + 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64u_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical trailing bits */
        return -1;
    return (long)o;
}

/* ---------------------------------------------------------------- argv */

static void argv_reset(pol_argv_t *a)
{
    a->argc = 0;
    a->key[0] = a->num[0] = '\0';
}

static void argv_add(pol_argv_t *a, const char *s, size_t len)
{
    a->argv[a->argc] = s;
    a->argvlen[a->argc] = len;
    a->argc++;
}

static void argv_str(pol_argv_t *a, const char *s)
{
    argv_add(a, s, strlen(s));
}

/* Sets a->key to prefix+name and adds it. Syscall-like. */
static int argv_key(pol_argv_t *a, const char *prefix, const char *name)
{
    int n = snprintf(a->key, sizeof a->key, "%s%s", prefix, name);
    if (n < 0 || (size_t)n >= sizeof a->key)
        return -1;
    argv_add(a, a->key, (size_t)n);
    return 0;
}

static void argv_num(pol_argv_t *a, uint64_t v)
{
    int n = snprintf(a->num, sizeof a->num, "%llu", (unsigned long long)v);
    argv_add(a, a->num, (size_t)n);
}

/* Lowercase hex serial without leading zeros, 1..40 digits. */
static int valid_serial(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 40 || (n > 1 && s[0] == '0'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- nonce */

int pol_nonce_new(char out[64])
{
    unsigned char raw[POL_NONCE_BYTES];
    out[0] = '\0';
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    return pol_iss_b64url_encode(raw, sizeof raw, out, 64);
}

int pol_nonce_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n != POL_NONCE_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (b64u_val((unsigned char)s[i]) < 0)
            return 0;
    return 1;
}

int pol_nonce_key(const char *nonce, char *out, size_t outlen)
{
    if (!pol_nonce_valid(nonce))
        return -1;
    int n = snprintf(out, outlen, POL_NONCE_KEY_PREFIX "%s", nonce);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int pol_nonce_set_argv(pol_argv_t *a, const char *nonce, const char *class_name,
                       uint64_t ttl_ms)
{
    argv_reset(a);
    if (!pol_nonce_valid(nonce) || !class_name || !*class_name || ttl_ms == 0)
        return -1;
    argv_str(a, "SET");
    if (argv_key(a, POL_NONCE_KEY_PREFIX, nonce) < 0)
        return -1;
    argv_str(a, class_name);
    argv_str(a, "PX");
    argv_num(a, ttl_ms);
    argv_str(a, "NX");
    return 0;
}

int pol_nonce_getdel_argv(pol_argv_t *a, const char *nonce)
{
    argv_reset(a);
    if (!pol_nonce_valid(nonce))
        return -1;
    argv_str(a, "GETDEL");
    return argv_key(a, POL_NONCE_KEY_PREFIX, nonce);
}

int pol_nonce_check(const char *value, size_t len, const char *class_name, const char **err)
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

int pol_challenge_response_json(const char *nonce, uint64_t ttl_ms, char **json)
{
    *json = NULL;
    if (!pol_nonce_valid(nonce))
        return -1;
    return dump_line(json_pack("{s:s, s:I}", "nonce", nonce, "expires_in",
                               (json_int_t)((ttl_ms + 999) / 1000)),
                     json);
}

/* ---------------------------------------------------------------- request */

static int printable_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int valid_platform(const char *s, size_t n)
{
    if (n < 1 || n > POL_ISS_MAX_PLATFORM)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* A string member: 1 found (value/len set), 0 absent, -1 wrong type. */
static int member(json_t *obj, const char *name, const char **value, size_t *len)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return -1;
    *value = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

void pol_issue_req_free(pol_issue_req_t *r)
{
    if (!r)
        return;
    free(r->csr);
    if (r->integrity_token)
        OPENSSL_cleanse(r->integrity_token, r->token_len);
    free(r->integrity_token);
    memset(r, 0, sizeof *r);
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* csr is always required; platform, integrity_token and nonce too when
 * attest_required, else all three or none. Syscall-like. */
static int parse_req(const char *body, size_t len, int attest_required, pol_issue_req_t *out,
                     const char **err)
{
    static const char *const names[4] = {"csr", "platform", "integrity_token", "nonce"};
    static const size_t maxlen[4] = {POL_ISS_MAX_CSR, POL_ISS_MAX_PLATFORM, POL_ISS_MAX_TOKEN,
                                     POL_ISS_MAX_NONCE};
    const char *v[4] = {0};
    size_t l[4] = {0};
    int have[4] = {0};
    json_error_t jerr;

    memset(out, 0, sizeof *out);
    if (!body || len == 0) {
        *err = "empty request body (expected a JSON object)";
        return -1;
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        *err = "request body is not valid JSON (or repeats a member)";
        return -1;
    }
    if (!json_is_object(root)) {
        *err = "request body must be a JSON object";
        json_decref(root);
        return -1;
    }
    static const char *const type_err[4] = {"\"csr\" must be a string",
                                            "\"platform\" must be a string",
                                            "\"integrity_token\" must be a string",
                                            "\"nonce\" must be a string"};
    static const char *const size_err[4] = {"\"csr\" is empty or longer than 8192 bytes",
                                            "\"platform\" must be 1..32 characters of a-z, 0-9, _",
                                            "\"integrity_token\" is empty or longer than 16384 bytes",
                                            "\"nonce\" is malformed"};
    static const char *const missing_err[4] = {"missing \"csr\"", "missing \"platform\"",
                                               "missing \"integrity_token\"",
                                               "missing \"nonce\""};
    int rc = -1;
    for (int i = 0; i < 4; i++) {
        have[i] = member(root, names[i], &v[i], &l[i]);
        if (have[i] < 0) {
            *err = type_err[i];
            goto out;
        }
        if (have[i] && (l[i] == 0 || l[i] > maxlen[i])) {
            *err = size_err[i];
            goto out;
        }
    }
    if (!have[0]) {
        *err = missing_err[0];
        goto out;
    }
    int nattest = have[1] + have[2] + have[3];
    if (attest_required || nattest) {
        for (int i = 1; i < 4; i++)
            if (!have[i]) {
                *err = attest_required ? missing_err[i]
                                       : "\"platform\", \"integrity_token\" and \"nonce\" go "
                                         "together: give all three or none";
                goto out;
            }
        if (!valid_platform(v[1], l[1])) {
            *err = size_err[1];
            goto out;
        }
        if (!printable_ascii(v[2], l[2])) {
            *err = "\"integrity_token\" must be printable ASCII";
            goto out;
        }
        for (size_t i = 0; i < l[3]; i++)
            if (b64u_val((unsigned char)v[3][i]) < 0) {
                *err = size_err[3];
                goto out;
            }
    }
    for (size_t i = 0; i < l[0]; i++) {
        unsigned char ch = (unsigned char)v[0][i];
        if ((ch < 0x20 && ch != '\n' && ch != '\r' && ch != '\t') || ch > 0x7e) {
            *err = "\"csr\" must be PEM text";
            goto out;
        }
    }
    if (!(out->csr = dup_n(v[0], l[0]))) {
        *err = "out of memory";
        goto out;
    }
    out->csr_len = l[0];
    if (have[1]) {
        memcpy(out->platform, v[1], l[1]);
        out->platform[l[1]] = '\0';
        memcpy(out->nonce, v[3], l[3]);
        out->nonce[l[3]] = '\0';
        if (!(out->integrity_token = dup_n(v[2], l[2]))) {
            *err = "out of memory";
            pol_issue_req_free(out);
            goto out;
        }
        out->token_len = l[2];
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int pol_issue_parse(const char *body, size_t len, pol_issue_req_t *out, const char **err)
{
    return parse_req(body, len, 1, out, err);
}

int pol_renew_parse(const char *body, size_t len, int need_attestation, pol_issue_req_t *out,
                    const char **err)
{
    return parse_req(body, len, need_attestation ? 1 : 0, out, err);
}

const cfg_platform_t *pol_issue_platform(const cfg_issuance_t *cfg, const char *platform,
                                         const char **err)
{
    const cfg_platform_t *p = cfg_issuance_platform(cfg, platform);
    if (!p) {
        *err = "platform not configured";
        return NULL;
    }
    if (p->provider == CFG_ATTEST_REFUSE ||
        (p->provider == CFG_ATTEST_NONE && !cfg->insecure_dev)) {
        *err = "platform refused by configuration";
        return NULL;
    }
    return p;
}

/* ---------------------------------------------------------------- device id */

int pol_device_id_new(char out[40])
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

int pol_device_id_valid(const char *s)
{
    return s && pol_device_id_valid_n(s, strlen(s));
}

/* ---------------------------------------------------------------- records */

int pol_issue_record_json(const pol_issued_t *is, const char *device_id, const char *platform,
                          const char *attestation_summary, char **json_out)
{
    *json_out = NULL;
    if (!is || !device_id)
        return -1;
    char issued[32];
    struct tm tm;
    if (!gmtime_r(&is->issued_at, &tm) || !strftime(issued, sizeof issued, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return -1;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "serial", is->serial,
                          "device_id", device_id, "platform", platform ? platform : "",
                          "attestation", attestation_summary ? attestation_summary : "",
                          "fingerprint", is->fingerprint, "issued_at", issued, "not_after",
                          is->not_after, "not_after_unix", (json_int_t)is->not_after_t);
    if (!o)
        return -1;
    *json_out = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    return *json_out ? 0 : -1;
}

int pol_issued_set_argv(pol_argv_t *a, const char *serial, const char *json, uint64_t ttl_s)
{
    argv_reset(a);
    if (!valid_serial(serial) || !json || ttl_s == 0)
        return -1;
    argv_str(a, "SET");
    if (argv_key(a, POL_ISSUED_KEY_PREFIX, serial) < 0)
        return -1;
    argv_str(a, json);
    argv_str(a, "EX");
    argv_num(a, ttl_s);
    return 0;
}

int pol_issued_get_argv(pol_argv_t *a, const char *serial)
{
    argv_reset(a);
    if (!valid_serial(serial))
        return -1;
    argv_str(a, "GET");
    return argv_key(a, POL_ISSUED_KEY_PREFIX, serial);
}

int pol_device_sadd_argv(pol_argv_t *a, const char *device_id, const char *serial)
{
    argv_reset(a);
    if (!pol_device_id_valid(device_id) || !valid_serial(serial))
        return -1;
    argv_str(a, "SADD");
    if (argv_key(a, POL_DEVICE_KEY_PREFIX, device_id) < 0)
        return -1;
    argv_str(a, serial);
    return 0;
}

int pol_device_expire_argv(pol_argv_t *a, const char *device_id, uint64_t ttl_s)
{
    argv_reset(a);
    if (!pol_device_id_valid(device_id) || ttl_s == 0)
        return -1;
    argv_str(a, "EXPIRE");
    if (argv_key(a, POL_DEVICE_KEY_PREFIX, device_id) < 0)
        return -1;
    argv_num(a, ttl_s);
    return 0;
}

int pol_device_members_argv(pol_argv_t *a, const char *device_id)
{
    argv_reset(a);
    if (!pol_device_id_valid(device_id))
        return -1;
    argv_str(a, "SMEMBERS");
    return argv_key(a, POL_DEVICE_KEY_PREFIX, device_id);
}

int pol_issued_revocation_entry(const cfg_issuance_t *cfg, const char *serial, char *out,
                                size_t outlen)
{
    const char *err;
    if (!cfg || !valid_serial(serial))
        return -1;
    return pol_rev_canon_serial(cfg->device_class, serial, out, outlen, &err);
}

int pol_issue_response_json(const pol_issued_t *is, const char *device_id, char **json)
{
    *json = NULL;
    if (!is || !is->chain_pem || !device_id)
        return -1;
    return dump_line(json_pack("{s:s, s:s, s:s, s:s}", "certificate_chain", is->chain_pem,
                               "not_after", is->not_after, "device_id", device_id, "serial",
                               is->serial),
                     json);
}

/* ---------------------------------------------------------------- http verifier */

int pol_http_verifier_body(const char *platform, const char *token, const char *nonce,
                           char **json)
{
    *json = NULL;
    if (!platform || !token || !nonce)
        return -1;
    json_t *o = json_pack("{s:s, s:s, s:s}", "platform", platform, "integrity_token", token,
                          "nonce", nonce);
    if (!o)
        return -1;
    *json = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    return *json ? 0 : -1;
}

int pol_http_verifier_request(const cfg_http_verifier_t *cfg, const char *json, char **req,
                              size_t *reqlen)
{
    *req = NULL;
    *reqlen = 0;
    if (!cfg || !cfg->path || !cfg->host || !json)
        return -1;
    size_t jl = strlen(json);
    size_t cap = strlen(cfg->path) + strlen(cfg->host) + jl + 200;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    int n = snprintf(buf, cap,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Accept: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
                     "\r\n%s",
                     cfg->path, cfg->host, jl, json);
    if (n < 0 || (size_t)n >= cap) {
        free(buf);
        return -1;
    }
    *req = buf;
    *reqlen = (size_t)n;
    return 0;
}

/* Copies at most 120 characters of s into out, replacing anything that is
 * not printable ASCII (and quotes and backslashes) with '?'. */
static void sanitize(char *out, size_t n, const char *s, size_t len)
{
    size_t o = 0;
    if (!n)
        return;
    for (size_t i = 0; i < len && o + 1 < n && i < 120; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[o++] = (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    out[o] = '\0';
}

int pol_http_verifier_parse(const char *body, size_t len, char *summary, size_t n,
                            const char **err)
{
    json_error_t jerr;
    char a[128], b[128];
    if (n)
        summary[0] = '\0';
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!root || !json_is_object(root)) {
        sanitize(a, sizeof a, body ? body : "", body ? len : 0);
        snprintf(summary, n, "body=\"%s\"", a);
        *err = "attestation verifier answered with something other than a JSON object";
        json_decref(root);
        return -1;
    }
    json_t *verdict = json_object_get(root, "verdict");
    json_t *sum = json_object_get(root, "summary");
    json_t *reason = json_object_get(root, "reason");
    const char *extra = NULL, *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "verdict") && strcmp(key, "summary") && !extra)
            extra = key;
    }
    int ok = json_is_string(verdict) && !strcmp(json_string_value(verdict), "allow") &&
             (!sum || json_is_string(sum)) && !extra;
    if (ok) {
        const char *s = sum ? json_string_value(sum) : "allow";
        sanitize(summary, n, s, strlen(s));
        json_decref(root);
        return 0;
    }
    if (json_is_string(verdict))
        sanitize(a, sizeof a, json_string_value(verdict), json_string_length(verdict));
    else
        snprintf(a, sizeof a, "%s", verdict ? "(not a string)" : "(missing)");
    b[0] = '\0';
    if (json_is_string(reason))
        sanitize(b, sizeof b, json_string_value(reason), json_string_length(reason));
    else if (json_is_string(sum))
        sanitize(b, sizeof b, json_string_value(sum), json_string_length(sum));
    if (json_is_string(verdict) && !strcmp(json_string_value(verdict), "allow")) {
        char k[64];
        sanitize(k, sizeof k, extra ? extra : "summary", strlen(extra ? extra : "summary"));
        snprintf(summary, n, "verdict=\"allow\" unexpected member \"%s\"", k);
        *err = "attestation verifier answer has unexpected members";
    } else {
        snprintf(summary, n, "verdict=\"%s\"%s%s%s", a, *b ? " reason=\"" : "", b, *b ? "\"" : "");
        *err = "attestation verifier did not allow";
    }
    json_decref(root);
    return -1;
}
