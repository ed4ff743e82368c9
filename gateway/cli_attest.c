/* gateway/cli_attest: `portcullis verify-attestation` (see cli_attest.h). */
#include "cli_attest.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "../config/config.h"
#include "../issuance/attester.h"
#include "../issuance/issuance.h"

#define CMD "verify-attestation"
#define CLI_NONCE_MAX 1024   /* --nonce: the gateway's are 43 characters; samples may differ */
#define CLI_KEY_ID_MAX 1024

/* ---------------------------------------------------------------- RFC 3339 */

/* The value of s[0..n) as n decimal digits, or -1. */
static int dec(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int gw_rfc3339_ms(const char *s, size_t len, int64_t *ms)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!s || len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    int y = dec(s, 4), mo = dec(s + 5, 2), d = dec(s + 8, 2);
    int h = dec(s + 11, 2), mi = dec(s + 14, 2), sec = dec(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
        sec > 60 || d > mdays[mo - 1] + (mo == 2 && leap(y)))
        return -1;
    size_t i = 19;
    int frac_ms = 0;
    if (s[i] == '.') {
        size_t n = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++)
            if (n < 3)
                frac_ms = frac_ms * 10 + (s[i] - '0');
        if (n < 1 || n > 9)
            return -1;
        for (; n < 3; n++)
            frac_ms *= 10;
    }
    int64_t off_s = 0;
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = dec(s + i + 1, 2), om = dec(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        off_s = (s[i] == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
        i += 6;
    }
    if (i != len)
        return -1;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_s;
    if (t < 0)
        return -1;
    *ms = t * 1000 + frac_ms;
    return 0;
}

/* ---------------------------------------------------------------- inputs */

int gw_b64_32(const char *s, size_t len, unsigned char out[32])
{
    char url[44];
    unsigned char buf[40];
    if (!s)
        return -1;
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len != 43)   /* 32 bytes: 43 characters without padding */
        return -1;
    /* one alphabet only: '+' '/' (base64) or '-' '_' (base64url), never both */
    int std = memchr(s, '+', len) || memchr(s, '/', len);
    int web = memchr(s, '-', len) || memchr(s, '_', len);
    if (std && web)
        return -1;
    for (size_t i = 0; i < len; i++)
        url[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    if (iss_b64url_decode(url, len, buf, sizeof buf) != 32)
        return -1;
    memcpy(out, buf, 32);
    return 0;
}

int gw_attest_body(const char *platform, const char *member, int is_json, const char *text,
                   size_t len, const char *nonce, const char *key_id, const char *csr,
                   json_t **out, const char **err)
{
    *out = NULL;
    if (len > 0 && text[len - 1] == '\n')
        len -= len > 1 && text[len - 2] == '\r' ? 2 : 1;
    json_t *o = json_object(), *tok = NULL;
    *err = "out of memory";
    if (!o || json_object_set_new(o, "platform", json_string(platform)) < 0)
        goto fail;
    if (member) {
        json_error_t je;
        if (is_json && !(tok = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je))) {
            *err = "the token file is not JSON";
            goto fail;
        }
        if (!is_json && !(tok = json_stringn(text, len))) {
            *err = "the token file is not UTF-8 text";
            goto fail;
        }
        if (json_object_set_new(o, member, tok) < 0)
            goto fail;
    }
    if ((nonce && json_object_set_new(o, "nonce", json_string(nonce)) < 0) ||
        (key_id && json_object_set_new(o, "key_id", json_string(key_id)) < 0) ||
        (csr && json_object_set_new(o, "csr", json_string(csr)) < 0))
        goto fail;
    *err = NULL;
    *out = o;
    return 0;
fail:
    json_decref(o);
    return -1;
}

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *config, *platform, *at, *nonce, *key_id, *csr, *cdh, *token_file;
    int64_t now_ms;
    unsigned char cdh_bytes[32];
} opts_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: portcullis " CMD " -c FILE --platform NAME --at RFC3339\n"
               "           [--nonce NONCE] [--key-id B64] [--csr FILE] [--client-data-hash B64] "
               "TOKEN_FILE\n"
               "Runs the platform's attestation provider on a saved token at time --at and\n"
               "prints the verdict as one JSON line. Exit status: 0 accepted, 1 refused,\n"
               "2 usage or configuration error. See docs/issuance.md.\n");
}

static int bad_usage(const char *what, const char *arg)
{
    fprintf(stderr, "portcullis " CMD ": %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    usage(stderr);
    return 2;
}

/* 0, 1 (--help, done) or 2 after printing the problem. */
static int parse_args(opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"platform", required_argument, NULL, 'p'},
        {"at", required_argument, NULL, 'a'},
        {"nonce", required_argument, NULL, 'n'},
        {"key-id", required_argument, NULL, 'k'},
        {"csr", required_argument, NULL, 'r'},
        {"client-data-hash", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 0;   /* glibc: re-initialise */
    while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->config = optarg; break;
        case 'p': o->platform = optarg; break;
        case 'a': o->at = optarg; break;
        case 'n': o->nonce = optarg; break;
        case 'k': o->key_id = optarg; break;
        case 'r': o->csr = optarg; break;
        case 'd': o->cdh = optarg; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 < argc)
        return bad_usage("one TOKEN_FILE only; unexpected argument", argv[optind + 1]);
    if (optind == argc)
        return bad_usage("TOKEN_FILE is required (the token as the app sends it)", NULL);
    o->token_file = argv[optind];
    if (!o->config)
        return bad_usage("-c FILE is required", NULL);
    if (!o->platform || !*o->platform)
        return bad_usage("--platform NAME is required", NULL);
    if (!o->at)
        return bad_usage("--at RFC3339 is required (the time to verify at, e.g. "
                         "2026-12-02T10:00:00Z)", NULL);
    if (gw_rfc3339_ms(o->at, strlen(o->at), &o->now_ms) < 0)
        return bad_usage("--at is not an RFC 3339 date-time such as 2026-12-02T10:00:00Z", o->at);
    if (o->nonce && (!*o->nonce || strlen(o->nonce) > CLI_NONCE_MAX))
        return bad_usage("--nonce must be 1..1024 characters", NULL);
    if (o->key_id && (!*o->key_id || strlen(o->key_id) > CLI_KEY_ID_MAX))
        return bad_usage("--key-id must be 1..1024 characters", NULL);
    if (o->cdh && gw_b64_32(o->cdh, strlen(o->cdh), o->cdh_bytes) < 0)
        return bad_usage("--client-data-hash must be the base64 of 32 bytes", o->cdh);
    if (o->csr && !o->nonce)
        return bad_usage("--csr needs --nonce: the challenge is SHA-256(nonce || SHA-256(SPKI))", NULL);
    return 0;
}

/* ---------------------------------------------------------------- the run */

/* Everything the verdict said, copied out of done (its pointers live only
 * there). */
typedef struct {
    int done;
    iss_verdict_t v;
    char message[ISS_SUMMARY_MAX], summary[ISS_SUMMARY_MAX], app_id[ISS_SUMMARY_MAX];
    unsigned char key[32];
    struct event_base *base;
} result_t;

static void on_verdict(void *arg, const iss_verdict_t *v)
{
    result_t *r = arg;
    r->done = 1;
    r->v = *v;
    snprintf(r->message, sizeof r->message, "%s", v->message ? v->message : "");
    snprintf(r->summary, sizeof r->summary, "%s", v->summary ? v->summary : "");
    snprintf(r->app_id, sizeof r->app_id, "%s", v->app_id ? v->app_id : "");
    r->v.message = r->message;
    r->v.summary = r->summary;
    r->v.app_id = v->app_id ? r->app_id : NULL;
    if (v->key_sha256)
        memcpy(r->key, v->key_sha256, 32);
    r->v.key_sha256 = v->key_sha256 ? r->key : NULL;
    r->v.state = NULL;
    if (r->base)
        event_base_loopbreak(r->base);
}

static char *log_ctx(const void *host, char *buf, size_t n)
{
    snprintf(buf, n, "%s", (const char *)host);
    return buf;
}

static void hex32(const unsigned char *b, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Prints the one JSON line; the exit status (0 accepted, 1 refused). */
static int print_verdict(const result_t *r, const char *platform, const char *provider,
                         const unsigned char *csr_key)
{
    json_t *o;
    if (r->v.err == PC_E_NONE) {
        char hex[65];
        const unsigned char *k = r->v.key_sha256 ? r->v.key_sha256 : csr_key;
        if (k)
            hex32(k, hex);
        o = json_pack("{s:b, s:s, s:s, s:s, s:o, s:o, s:s}", "ok", 1, "platform", platform,
                      "provider", provider, "level", cfg_integrity_name(r->v.level), "app_id",
                      r->v.app_id ? json_string(r->v.app_id) : json_null(), "key_sha256",
                      k ? json_string(hex) : json_null(), "summary", r->v.summary);
    } else {
        o = json_pack("{s:b, s:s, s:s}", "ok", 0, "reason", pc_err_code(r->v.err), "detail",
                      r->message[0] ? r->message : pc_err_message(r->v.err));
    }
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    if (!line) {
        fprintf(stderr, "portcullis " CMD ": out of memory\n");
        return 2;
    }
    printf("%s\n", line);
    free(line);
    return r->v.err == PC_E_NONE ? 0 : 1;
}

static int refused(enum pc_err e, const char *detail)
{
    result_t r = {.v = {.err = e}};
    snprintf(r.message, sizeof r.message, "%s", detail);
    return print_verdict(&r, "", "", NULL);
}

static cfg_t *load_config(const char *path)
{
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        if (errs.n == 0)
            fprintf(stderr, "%s: could not be loaded\n", path);
    }
    cfg_errors_free(&errs);
    return cfg;
}

/* The configured platform, or NULL after printing why (exit 2). */
static const cfg_platform_t *find_platform(const cfg_t *cfg, const opts_t *o)
{
    if (!cfg->issuance) {
        fprintf(stderr, "portcullis " CMD ": %s has no issuance section\n", o->config);
        return NULL;
    }
    const cfg_platform_t *p = cfg_issuance_platform(cfg->issuance, o->platform);
    if (!p) {
        fprintf(stderr, "portcullis " CMD ": --platform %s: not in issuance.platforms of %s "
                "(configured:", o->platform, o->config);
        for (size_t i = 0; i < cfg->issuance->nplatforms; i++)
            fprintf(stderr, " %s", cfg->issuance->platforms[i].name);
        fprintf(stderr, ")\n");
    }
    return p;
}

/* What one run holds; freed by run_free. */
typedef struct {
    cfg_t *cfg;
    char *token, *csr_pem;
    size_t token_len, csr_len;
    EVP_PKEY *pub;
    json_t *body;
    const iss_attester_t *a;
    void *inst;
    struct event_base *base;
    unsigned char challenge[32], spki[32];
    int have_challenge, have_spki;
} run_t;

static void run_free(run_t *r)
{
    if (r->a && r->inst && r->a->free)
        r->a->free(r->inst);
    if (r->base)
        event_base_free(r->base);
    json_decref(r->body);
    EVP_PKEY_free(r->pub);
    free(r->token);
    free(r->csr_pem);
    cfg_free(r->cfg);
}

/* Reads the token and the CSR files. 0, or 2 after printing the file's problem. */
static int read_inputs(run_t *r, const opts_t *o)
{
    char msg[256];
    if (!(r->token = cfg_read_file(o->token_file, r->cfg->issuance->max_body_bytes, &r->token_len,
                                   msg, sizeof msg))) {
        fprintf(stderr, "portcullis " CMD ": TOKEN_FILE %s: %s\n", o->token_file, msg);
        return 2;
    }
    if (o->csr && !(r->csr_pem = cfg_read_file(o->csr, ISS_MAX_CSR, &r->csr_len, msg, sizeof msg))) {
        fprintf(stderr, "portcullis " CMD ": --csr %s: %s\n", o->csr, msg);
        return 2;
    }
    return 0;
}

/* The key binding: the CSR's key and the challenge. 0; 1 after printing a
 * refusal (the CSR would be refused); 2 after printing a usage problem. */
static int bind_key(run_t *r, const opts_t *o)
{
    const char *err = NULL;
    if (r->csr_pem) {
        if (iss_csr_check(r->csr_pem, r->csr_len, r->cfg->issuance, &r->pub, &err) < 0)
            return refused(PC_E_INVALID_CSR, err);
        if (iss_bind_challenge(o->nonce, r->pub, r->challenge, r->spki) < 0) {
            fprintf(stderr, "portcullis " CMD ": cannot compute the key-binding challenge\n");
            return 2;
        }
        r->have_challenge = r->have_spki = 1;
    }
    if (o->cdh) {   /* given directly: it overrides the computed one */
        memcpy(r->challenge, o->cdh_bytes, 32);
        r->have_challenge = 1;
    }
    /* the http verifier is sent the key's hash beside the challenge */
    if (r->a->provider == CFG_ATTEST_HTTP && !r->have_spki) {
        fprintf(stderr, "portcullis " CMD ": platform %s (provider http) sends the verifier the "
                "challenge and the CSR key's hash: give --csr FILE and --nonce NONCE\n", o->platform);
        return 2;
    }
    return 0;
}

/* Runs verify on a private loop; 0 with *res filled, or 2 after printing. */
static int verify(run_t *r, const opts_t *o, const cfg_platform_t *p, result_t *res)
{
    json_t *t = json_object_get(r->body, "integrity_token");
    iss_attest_req_t rq = {
        .platform = p,
        .body = r->body,
        .token = json_is_string(t) ? json_string_value(t) : NULL,
        .token_len = json_is_string(t) ? json_string_length(t) : 0,
        .nonce = o->nonce ? o->nonce : "",
        .challenge = r->have_challenge ? r->challenge : NULL,
        .spki_sha256 = r->have_spki ? r->spki : NULL,
        .csr_key = r->pub,
        .now_ms = o->now_ms,
        .base = r->base,
        .log = {log_ctx, CMD},
    };
    void *op = NULL;
    res->base = r->base;
    r->a->verify(r->inst, &rq, on_verdict, res, &op);
    if (!res->done)   /* asynchronous: until on_verdict breaks the loop, or no event is left */
        event_base_dispatch(r->base);
    if (!res->done) {
        if (r->a->cancel)
            r->a->cancel(op);
        fprintf(stderr, "portcullis " CMD ": the provider gave no verdict\n");
        return 2;
    }
    return 0;
}

static int run(run_t *r, const opts_t *o)
{
    if (!(r->cfg = load_config(o->config)))
        return 2;
    const cfg_platform_t *p = find_platform(r->cfg, o);
    if (!p)
        return 2;
    if (p->provider == CFG_ATTEST_REFUSE)
        return refused(PC_E_PLATFORM_REFUSED, "platform refused by configuration");
    if (!(r->a = iss_attester_find(p->provider))) {
        fprintf(stderr, "portcullis " CMD ": platform %s: no attester for its provider\n", p->name);
        return 2;
    }
    int rc = read_inputs(r, o);
    if (rc != 0)
        return rc;
    const char *err = NULL;
    if (gw_attest_body(p->name, r->a->token_member, r->a->token_is_json, r->token, r->token_len,
                       o->nonce, o->key_id, r->csr_pem, &r->body, &err) < 0) {
        fprintf(stderr, "portcullis " CMD ": TOKEN_FILE %s: %s\n", o->token_file, err);
        return 2;
    }
    if ((rc = bind_key(r, o)) != 0)
        return rc;
    /* android_key_attestation compares attestationChallenge with the nonce
     * itself (and, with play_integrity, binds the Play token to the key) */
    int android = p->provider == CFG_ATTEST_ANDROID_KEY;
    if (android && !o->nonce) {
        fprintf(stderr, "portcullis " CMD ": platform %s (provider android_key_attestation) "
                "checks attestationChallenge = the nonce: give --nonce NONCE\n", p->name);
        return 2;
    }
    if (android && p->android.with_play && !r->have_challenge) {
        fprintf(stderr, "portcullis " CMD ": platform %s (provider android_key_attestation, "
                "require play_integrity) needs the key-binding challenge: give --csr FILE and "
                "--nonce NONCE (or --client-data-hash B64)\n", p->name);
        return 2;
    }
    char msg[256] = "";
    if (!(r->inst = r->a->load(p, msg, sizeof msg))) {
        fprintf(stderr, "portcullis " CMD ": platform %s (provider %s): %s\n", p->name, r->a->name, msg);
        return 2;
    }
    if (!(r->base = event_base_new())) {
        fprintf(stderr, "portcullis " CMD ": cannot make an event loop\n");
        return 2;
    }
    result_t res = {0};
    if ((rc = verify(r, o, p, &res)) != 0)
        return rc;
    /* without a challenge, a refusal for want of key binding is the command's, not the token's */
    if (res.v.err == PC_E_KEY_NOT_BOUND && !r->have_challenge && !android) {
        fprintf(stderr, "portcullis " CMD ": platform %s (provider %s) needs the key-binding "
                "challenge: give --csr FILE and --nonce NONCE (or --client-data-hash B64) (%s)\n",
                p->name, r->a->name, res.message);
        return 2;
    }
    /* a platform that attests the key itself must have attested the CSR's (as the flow) */
    if (res.v.err == PC_E_NONE && res.v.key_attested &&
        (!res.v.key_sha256 || (r->have_spki && CRYPTO_memcmp(res.v.key_sha256, r->spki, 32) != 0))) {
        res.v.err = PC_E_KEY_NOT_BOUND;
        snprintf(res.message, sizeof res.message, "%s",
                 res.v.key_sha256 ? "the attested key is not the CSR's key" : "the platform attested no key");
    }
    return print_verdict(&res, p->name, r->a->name, r->have_spki ? r->spki : NULL);
}

int gw_attest_cli_main(int argc, char **argv)
{
    opts_t o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(&o, argc, argv);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    run_t r;
    memset(&r, 0, sizeof r);
    rc = run(&r, &o);
    run_free(&r);
    return rc;
}
