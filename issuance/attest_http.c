/* attest_http.c: the http attestation provider: an external verifier
 * service the gateway POSTs the token to. The protocol (the request and
 * the answer's parser) is pure; the call is asynchronous on the worker's
 * event loop (libevent's HTTP client). Contracts: issuance.h, attester.h. */
#include "issuance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---------------------------------------------------------------- http verifier */

int iss_http_verifier_body(const char *platform, const char *token, const char *nonce,
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

int iss_http_verifier_request(const cfg_http_verifier_t *cfg, const char *json, char **req,
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

int iss_http_verifier_parse(const char *body, size_t len, char *summary, size_t n,
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
