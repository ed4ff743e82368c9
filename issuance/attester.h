/* issuance/attester: the interface every attestation provider implements
 * (docs/issuance.md). A provider is one file (attest_<name>.c) defining one
 * iss_attester_t, listed in attesters.c, plus its section under a platform
 * of issuance.platforms in the configuration (config/config_issuance.c).
 *
 * The flow (flow.c) loads one instance per configured platform when a
 * generation is built, and for every issue or attested renew request calls
 * verify with the request and its key-binding challenge: SHA-256(nonce ‖
 * SHA-256(SPKI DER of the CSR key)), which the attestation must cover
 * (iss_bind_challenge, docs/issuance.md "Binding the key"). verify answers through done,
 * exactly once: at once (a local check) or later from an event on
 * req->base's loop (a call to a service). cancel stops a verification in
 * flight (done is then never called). An instance is immutable after load
 * and shared by every worker; per-request state lives in what verify
 * allocates.
 */
#ifndef PORTCULLIS_ISSUANCE_ATTESTER_H
#define PORTCULLIS_ISSUANCE_ATTESTER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "../base/errors.h"
#include "../base/log.h"
#include "../config/config.h"

struct event_base;

/* Where an attester's log lines say they come from (the request's
 * connection): fn(host, buf, n) writes the context into buf. */
typedef struct {
    char *(*fn)(const void *host, char *buf, size_t n);
    const void *host;
} iss_logctx_t;

#define ISS_LOG(lc, lvl, ev, ...)                                              \
    do {                                                                       \
        if (pc_log_enabled(lvl)) {                                             \
            char ctx_[192];                                                    \
            pc_log_ev(lvl, ev, (lc)->fn((lc)->host, ctx_, sizeof(ctx_)), __VA_ARGS__); \
        }                                                                      \
    } while (0)

/* One verification. The strings live until done has been called or the
 * verification cancelled. */
typedef struct {
    const cfg_platform_t *platform;   /* its configuration (name, provider section) */
    const json_t *body;               /* the whole request object: a provider reads
                                       * its own members (token_member and others) */
    const char *token;                /* "integrity_token" when the body has it, else NULL */
    size_t token_len;
    const char *nonce;                /* the server nonce (43 base64url characters) */
    const unsigned char *challenge;   /* 32 bytes: SHA-256(nonce ‖ spki_sha256); NULL only
                                       * in the CLI when it cannot be computed: a provider
                                       * that needs it then refuses PC_E_KEY_NOT_BOUND,
                                       * which the CLI reports as a usage error */
    const unsigned char *spki_sha256; /* 32 bytes: SHA-256 of the CSR key's SPKI DER (NULL likewise) */
    EVP_PKEY *csr_key;                /* the CSR's key (NULL in the CLI without --csr) */
    int renewal;                      /* 1: <prefix>renew over the device class */
    const char *state;                /* renewal of a stateful provider: the state its
                                       * verdict returned at issue (NULL: none stored) */
    int64_t now_ms;                   /* the wall clock, ms since the epoch */
    struct event_base *base;          /* the worker's loop, for asynchronous providers */
    iss_logctx_t log;
} iss_attest_req_t;

/* The outcome. err == PC_E_NONE: accepted, summary says what the platform
 * vouched for (stored in the issuance record and logged), level how
 * strongly. Otherwise refused with catalog entry err
 * (PC_E_ATTESTATION_FAILED: the token does not prove the device;
 * PC_E_KEY_NOT_BOUND: it was made for another challenge or another key;
 * PC_E_BAD_REQUEST: a member of the provider's is missing or malformed;
 * PC_E_ISSUANCE_UNAVAILABLE: the verifier could not be asked;
 * PC_E_OUT_OF_MEMORY) and message, a static text naming the failed check
 * that never quotes the token. Every pointer is valid during done only. */
typedef struct {
    enum pc_err err;
    const char *message;
    const char *summary;
    int level;                        /* enum cfg_integrity */
    const char *app_id;               /* package name or TeamID.bundle id; NULL: unknown */
    const unsigned char *key_sha256;  /* 32 bytes: SHA-256 of the SPKI DER of the key the
                                       * platform attested itself; NULL: it attests no key */
    int key_attested;                 /* 1: key_sha256 must be the CSR key's, else the
                                       * flow refuses PC_E_KEY_NOT_BOUND */
    const char *state;                /* stateful providers: a JSON object to hand back at
                                       * renewal (iss_attest_req_t.state); NULL: none */
    uint64_t counter;                 /* with state: strictly increasing across renewals */
} iss_verdict_t;

typedef void (*iss_attest_done_fn)(void *arg, const iss_verdict_t *v);

typedef struct iss_attester {
    const char *name;        /* the provider's name in the configuration */
    int provider;            /* enum cfg_attest_provider */
    unsigned metric;         /* its label in the issuance metrics (PC_PROV_*) */
    const char *token_member;   /* the request member holding its token, required on
                                 * issue ("integrity_token", "attestation"); NULL: none */
    int token_is_json;          /* 1: that member is a JSON value, not a string (the
                                 * CLI then reads its token file as JSON) */
    int stateful;               /* 1: the flow keeps verdict.state at issue and hands
                                 * it back on renewal (req->state) */
    /* Loads what the platform's section names (keys, addresses). The
     * instance, or NULL with a one-line reason in err. */
    void *(*load)(const cfg_platform_t *platform, char *err, size_t errlen);
    /* Starts a verification: first stores its per-request state in *op
     * (NULL when it needs none), then calls done(arg, verdict) once, now
     * or later. */
    void (*verify)(void *inst, const iss_attest_req_t *req, iss_attest_done_fn done, void *arg,
                   void **op);
    /* Stops the verification *op before its done (NULL: a no-op). */
    void (*cancel)(void *op);
    void (*free)(void *inst);   /* NULL is a no-op */
} iss_attester_t;

/* The attester of a provider (enum cfg_attest_provider), or NULL for
 * CFG_ATTEST_REFUSE and unknown values (attesters.c). */
const iss_attester_t *iss_attester_find(int provider);

extern const iss_attester_t iss_attest_play;   /* attest_play.c: play_integrity */
extern const iss_attester_t iss_attest_http;   /* attest_http.c: http */
extern const iss_attester_t iss_attest_none;   /* attest_none.c: none (insecure_dev) */
extern const iss_attester_t iss_attest_android;   /* attest_android.c: android_key_attestation */
extern const iss_attester_t iss_attest_app_attest;   /* attest_appattest.c: app_attest */

#endif
