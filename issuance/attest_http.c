/* attest_http.c: the http attestation provider: an external verifier
 * service the gateway POSTs the token to. The protocol (the request and
 * the answer's parser) is pure; the call is asynchronous on the worker's
 * event loop (libevent's HTTP client). Contracts: issuance.h, attester.h. */
#include "issuance.h"
#include "attester.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "../base/dns.h"
#include "../base/metrics.h"

/* ---------------------------------------------------------------- http verifier */

int iss_http_verifier_body(const char *platform, const char *token, const char *nonce,
                           const unsigned char *challenge, const unsigned char *key_sha256,
                           char **json)
{
    char ch[ISS_NONCE_LEN + 2], key[ISS_NONCE_LEN + 2];
    *json = NULL;
    if (!platform || !token || !nonce || !challenge || !key_sha256 ||
        iss_b64url_encode(challenge, ISS_CHALLENGE_BYTES, ch, sizeof ch) < 0 ||
        iss_b64url_encode(key_sha256, 32, key, sizeof key) < 0)
        return -1;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "platform", platform, "integrity_token", token,
                          "nonce", nonce, "challenge", ch, "key_sha256", key);
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

/* The "level" member of an allowing answer: absent, basic (or max_level
 * if lower); else one of the four names, at most max_level. 0 with *level,
 * or -1 with *err and summary set. */
static int verifier_level(const json_t *lv, int max_level, int *level, char *summary, size_t n,
                          const char **err)
{
    char a[64];
    if (!lv) {
        *level = max_level < CFG_INT_BASIC ? max_level : CFG_INT_BASIC;
        return 0;
    }
    int l = json_is_string(lv) ? cfg_integrity_parse(json_string_value(lv)) : -1;
    if (l < 0) {
        if (json_is_string(lv))
            sanitize(a, sizeof a, json_string_value(lv), json_string_length(lv));
        else
            snprintf(a, sizeof a, "(not a string)");
        snprintf(summary, n, "verdict=\"allow\" level=\"%s\"", a);
        *err = "attestation verifier answered an unknown level (none, basic, device or strong)";
        return -1;
    }
    if (l > max_level) {
        snprintf(summary, n, "verdict=\"allow\" level=\"%s\" above max_level \"%s\"", cfg_integrity_name(l),
                 cfg_integrity_name(max_level));
        *err = "attestation verifier claimed a level above this platform's max_level";
        return -1;
    }
    *level = l;
    return 0;
}

int iss_http_verifier_parse(const char *body, size_t len, int max_level, char *summary, size_t n,
                            int *level, const char **err)
{
    json_error_t jerr;
    char a[128], b[128];
    if (n)
        summary[0] = '\0';
    *level = -1;
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
        if (strcmp(key, "verdict") && strcmp(key, "summary") && strcmp(key, "level") && !extra)
            extra = key;
    }
    int ok = json_is_string(verdict) && !strcmp(json_string_value(verdict), "allow") &&
             (!sum || json_is_string(sum)) && !extra;
    if (ok && verifier_level(json_object_get(root, "level"), max_level, level, summary, n, err) < 0) {
        json_decref(root);
        return -1;
    }
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

/* ---------------------------------------------------------------- the attester */

/* One call to the verifier, on the worker's loop. */
typedef struct {
    const cfg_platform_t *plat;
    iss_logctx_t log;
    iss_attest_done_fn done;
    void *arg;
    struct evhttp_connection *hc;
    struct event *cont;         /* continues after the verifier answered */
    int status;
    char *body;
    size_t len;
    char summary[ISS_SUMMARY_MAX];
} http_op_t;

static void op_free(void *op)
{
    http_op_t *o = op;
    if (!o)
        return;
    if (o->hc)
        evhttp_connection_free(o->hc);   /* also drops a request in flight */
    if (o->cont)
        event_free(o->cont);
    free(o->body);
    free(o);
}

/* Calls done with the verdict, then frees the call. */
static void finish(http_op_t *o, enum pc_err e, const char *message, const char *summary, int level)
{
    iss_verdict_t v = {.err = e, .message = message, .summary = summary, .level = level};
    o->done(o->arg, &v);
    op_free(o);
}

static void verifier_continue(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_op_t *o = arg;
    if (o->status != 200) {
        ISS_LOG(&o->log, PC_WARN, "attestation_error", "attestation verifier %s: %s", o->plat->http.host,
                o->status ? "unexpected status" : "no answer");
        finish(o, PC_E_ISSUANCE_UNAVAILABLE, "the attestation verifier is unavailable", NULL, -1);
        return;
    }
    const char *err = NULL;
    int level = -1;
    if (iss_http_verifier_parse(o->body, o->len, o->plat->http.max_level, o->summary, sizeof(o->summary),
                                &level, &err) < 0) {
        ISS_LOG(&o->log, PC_INFO, "attestation_refused", "attestation verifier refused: %s", o->summary);
        finish(o, PC_E_ATTESTATION_FAILED, err, NULL, -1);
        return;
    }
    finish(o, PC_E_NONE, NULL, o->summary, level);
}

static void on_verifier(struct evhttp_request *req, void *arg)
{
    http_op_t *o = arg;
    o->status = req ? evhttp_request_get_response_code(req) : 0;
    if (!o->status)   /* no answer: its address may have moved */
        pc_dns_connect_failed(o->plat->http.addr.dns);
    if (req && o->status == 200) {
        struct evbuffer *b = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(b);
        o->body = malloc(n + 1);
        if (o->body) {
            evbuffer_copyout(b, o->body, n);
            o->body[n] = '\0';
            o->len = n;
        } else {
            o->status = 0;
        }
    }
    /* continue outside libevent's HTTP callback, which owns req and hc */
    event_active(o->cont, 0, 0);
}

static void http_attest(void *inst, const iss_attest_req_t *rq, iss_attest_done_fn done, void *arg,
                        void **op)
{
    (void)inst;
    const cfg_http_verifier_t *h = &rq->platform->http;
    char *json = NULL;
    struct evhttp_request *req = NULL;
    http_op_t *o = calloc(1, sizeof *o);
    *op = o;
    if (!o) {
        iss_verdict_t v = {.err = PC_E_OUT_OF_MEMORY, .message = "cannot call the attestation verifier (out of memory)"};
        done(arg, &v);
        return;
    }
    o->plat = rq->platform;
    o->log = rq->log;
    o->done = done;
    o->arg = arg;
    o->cont = event_new(rq->base, -1, 0, verifier_continue, o);
    /* an IP literal (evhttp without an evdns_base would resolve a name with a
     * blocking getaddrinfo): a name's addresses are taken in turn */
    static __thread size_t turn;
    char ip[64] = "";
    int port = 0;
    pc_dns_addrs_t *cache = NULL;
    pc_dns_sa_t sa;
    if (cfg_addr_pick(&h->addr, &cache, turn++, &sa))
        port = pc_dns_sa_ip(&sa, ip, sizeof ip);
    pc_dns_addrs_release(cache);
    o->hc = ip[0] ? evhttp_connection_base_new(rq->base, NULL, ip, (unsigned short)port) : NULL;
    if (!o->cont || !o->hc ||
        iss_http_verifier_body(o->plat->name, rq->token, rq->nonce, rq->challenge, rq->spki_sha256, &json) < 0 ||
        !(req = evhttp_request_new(on_verifier, o))) {
        free(json);
        finish(o, PC_E_OUT_OF_MEMORY, "cannot call the attestation verifier (out of memory)", NULL, -1);
        return;
    }
    struct timeval tv = {(time_t)(h->timeout_ms / 1000), (suseconds_t)((h->timeout_ms % 1000) * 1000)};
    evhttp_connection_set_timeout_tv(o->hc, &tv);
    evhttp_connection_set_retries(o->hc, 0);
    struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
    evhttp_add_header(hdrs, "Host", h->host);   /* as configured: host[:port] */
    evhttp_add_header(hdrs, "Content-Type", "application/json");
    evhttp_add_header(hdrs, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(req), json, strlen(json));
    free(json);
    if (evhttp_make_request(o->hc, req, EVHTTP_REQ_POST, h->path) < 0)   /* frees req on failure */
        finish(o, PC_E_ISSUANCE_UNAVAILABLE, "the attestation verifier is unavailable", NULL, -1);
}

/* Nothing to load: the verifier's address is the configuration's. */
static void *http_load(const cfg_platform_t *platform, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return (void *)platform;
}

static void http_free(void *inst)
{
    (void)inst;
}

const iss_attester_t iss_attest_http = {
    .name = "http",
    .provider = CFG_ATTEST_HTTP,
    .metric = PC_PROV_HTTP,
    .token_member = "integrity_token",
    .load = http_load,
    .verify = http_attest,
    .cancel = op_free,
    .free = http_free,
};
