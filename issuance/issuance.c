/* issuance.c: request parsing and the JSON answers of the issuance routes,
 * base64url. Nonces, device ids and records are in records.c, certificate
 * requests in csr.c, signing in issuer.c, the attesters in attest_*.c.
 * Contracts: issuance.h.
 */
#include "issuance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "../policy/revocation.h"

/* ---------------------------------------------------------------- errors */

const char *iss_error_code(enum pc_err e)
{
    return pc_err_code(e);
}

int iss_error_status(enum pc_err e)
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

int iss_error_json(enum pc_err e, const char *message, const char *request_id, char **json)
{
    return dump_line(json_pack("{s:s, s:s, s:s}", "error", pc_err_code(e), "message",
                               message ? message : pc_err_message(e), "request_id",
                               request_id ? request_id : ""),
                     json);
}

/* ---------------------------------------------------------------- base64url */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int iss_b64url_encode(const unsigned char *in, size_t len, char *out, size_t outcap)
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

int iss_b64url_val(unsigned char ch)
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

long iss_b64url_decode(const char *s, size_t len, unsigned char *out, size_t outcap)
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len % 4 == 1 || outcap < len * 3 / 4 + 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = iss_b64url_val((unsigned char)s[i]);
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

int iss_challenge_response_json(const char *nonce, uint64_t ttl_ms, char **json)
{
    *json = NULL;
    if (!iss_nonce_valid(nonce))
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
    if (n < 1 || n > ISS_MAX_PLATFORM)
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

void iss_req_free(iss_req_t *r)
{
    if (!r)
        return;
    free(r->csr);
    if (r->integrity_token)
        OPENSSL_cleanse(r->integrity_token, r->token_len);
    free(r->integrity_token);
    json_decref(r->body);
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

/* csr is always required; platform and nonce too when attest_required,
 * else both or none; integrity_token is checked when present (the
 * attester requires its own member). Syscall-like. */
static int parse_req(const char *body, size_t len, int attest_required, iss_req_t *out,
                     const char **err)
{
    static const char *const names[4] = {"csr", "platform", "integrity_token", "nonce"};
    static const size_t maxlen[4] = {ISS_MAX_CSR, ISS_MAX_PLATFORM, ISS_MAX_TOKEN,
                                     ISS_MAX_NONCE};
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
    if (have[2] && !have[1] && !have[3]) {
        *err = "\"integrity_token\" needs \"platform\" and \"nonce\"";
        goto out;
    }
    if (attest_required || have[1] || have[3]) {
        for (int i = 1; i < 4; i += 2)
            if (!have[i]) {
                *err = attest_required ? missing_err[i]
                                       : "\"platform\" and \"nonce\" go together: give both or none";
                goto out;
            }
        if (!valid_platform(v[1], l[1])) {
            *err = size_err[1];
            goto out;
        }
        if (have[2] && !printable_ascii(v[2], l[2])) {
            *err = "\"integrity_token\" must be printable ASCII";
            goto out;
        }
        for (size_t i = 0; i < l[3]; i++)
            if (iss_b64url_val((unsigned char)v[3][i]) < 0) {
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
    }
    if (have[2]) {
        if (!(out->integrity_token = dup_n(v[2], l[2]))) {
            *err = "out of memory";
            iss_req_free(out);
            goto out;
        }
        out->token_len = l[2];
    }
    out->body = json_incref(root);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int iss_issue_parse(const char *body, size_t len, iss_req_t *out, const char **err)
{
    return parse_req(body, len, 1, out, err);
}

int iss_renew_parse(const char *body, size_t len, int need_attestation, iss_req_t *out,
                    const char **err)
{
    return parse_req(body, len, need_attestation ? 1 : 0, out, err);
}

const cfg_platform_t *iss_platform(const cfg_issuance_t *cfg, const char *platform,
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

int iss_issue_response_json(const iss_issued_t *is, const char *device_id, char **json)
{
    *json = NULL;
    if (!is || !is->chain_pem || !device_id)
        return -1;
    return dump_line(json_pack("{s:s, s:s, s:s, s:s, s:s}", "certificate_chain", is->chain_pem,
                               "not_after", is->not_after, "device_id", device_id, "serial",
                               is->serial, "integrity", cfg_integrity_name(is->level)),
                     json);
}
