/* issuance/flow: the challenge / issue / renew state machine behind the
 * module's internal routes (docs/issuance.md): <prefix>challenge,
 * <prefix>issue, <prefix>renew, hosted by the gateway's table
 * (policy/iroute.h).
 *
 * Each request is a small state machine on its worker: Redis round trips
 * (nonce, issuance records, revocation of the old certificate) go through
 * the worker's pol_redis connection, the platform's attester (attester.h)
 * verifies the token, at once or asynchronously; nothing blocks the loop. It sees the request only as
 * a pol_ireq_t and answers through its reply callback. The building blocks
 * (CSR checks, signing, attestation) are in issuance.h. */
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/metrics.h"
#include "issuance.h"
#include "../policy/revstore.h"
#include "../base/log.h"
#include "../policy/redis.h"
#include "attester.h"
#include "iss_int.h"

#define ISS_MAX_OPS 10

typedef struct {
    pol_ireq_t rq;              /* the request (a copy; its pointers are the host's) */
    const iss_gen_t *g;
    enum iss_kind kind;
    const cfg_issuance_t *cfg;
    iss_req_t req;
    int have_req;
    EVP_PKEY *pub;
    const cfg_platform_t *plat;
    char device_id[130];
    char summary[ISS_SUMMARY_MAX];
    char nonce[64];
    unsigned char challenge[ISS_CHALLENGE_BYTES];   /* the key binding (iss_bind_challenge) */
    unsigned char spki_sha256[32];
    int level;                  /* the verdict's (enum cfg_integrity); -1 before one */
    iss_issued_t issued;
    int have_issued;
    char *record;
    pol_revwrite_t rw;
    int have_rw;
    pol_redis_op_t *ops[ISS_MAX_OPS];
    int nops, pending, failed;
    void (*after)(void *iss);   /* runs when every pending command has answered */
    const iss_attester_t *attester;   /* of the verification in flight */
    void *aop;                  /* its state (attester.h), until done */
    char *att_state;            /* renewal: the device's stored attestation state, if any */
    char att_platform[33];      /* ... and the platform it was attested on ("" without) */
    char *att_new_state;        /* stateful attester: the verdict's state to store */
    uint64_t att_counter;       /* ... and its counter */
} flow_t;

static void flow_free(flow_t *s)
{
    for (int i = 0; i < s->nops; i++)
        pol_redis_cancel(s->ops[i]);
    if (s->aop)
        s->attester->cancel(s->aop);
    if (s->have_req)
        iss_req_free(&s->req);
    EVP_PKEY_free(s->pub);
    if (s->have_issued)
        iss_issued_free(&s->issued);
    if (s->have_rw)
        pol_revwrite_clear(&s->rw);
    free(s->record);
    free(s->att_state);
    free(s->att_new_state);
    free(s);
}

/* A line with the request's context (the connection's, from the host). */
#define FLOG(s, lvl, ev, ...)                                                          \
    do {                                                                               \
        if (pc_log_enabled(lvl)) {                                                     \
            char ctx_[192];                                                            \
            pc_log_ev(lvl, ev, (s)->rq.log_ctx((s)->rq.host, ctx_, sizeof(ctx_)), __VA_ARGS__); \
        }                                                                              \
    } while (0)

static const char *class_name(const flow_t *s)
{
    return s->rq.id ? s->rq.id->class_name : "";
}

/* Frees s, then answers: the reply may free the host. */
static void answer(flow_t *s, const pol_ireply_t *r)
{
    pol_ireq_t rq = s->rq;
    flow_free(s);
    rq.reply(rq.host, r);
}

/* ---- metrics: by platform (its configured name; "_none" before one is
 * known, or for a renewal without attestation) and attestation provider ---- */

static unsigned plat_id(const cfg_platform_t *p)
{
    return p ? p->mx : PC_ID_NONE;
}

static unsigned provider_id(const cfg_platform_t *p)
{
    const iss_attester_t *a = p ? iss_attester_find(p->provider) : NULL;
    if (a)
        return a->metric;
    return p && p->provider == CFG_ATTEST_REFUSE ? PC_PROV_REFUSE : PC_PROV_NONE;
}

/* The platform a refusal counts under: the one in use, else the configured
 * one the request named (refused by configuration), else none. */
static const cfg_platform_t *refused_platform(const flow_t *s)
{
    if (s->plat)
        return s->plat;
    return s->have_req && s->req.platform[0] ? cfg_issuance_platform(s->cfg, s->req.platform) : NULL;
}

/* Ends the request with catalog entry e (its code and status) and msg. */
static void refuse(flow_t *s, enum pc_err e, const char *msg)
{
    char m[ISS_SUMMARY_MAX];
    snprintf(m, sizeof(m), "%s", msg);   /* msg may live in s */
    FLOG(s, PC_INFO, "issuance_refused", "issuance refused %s: %s (request_id=%s)", pc_err_code(e), m, s->rq.request_id);
    const cfg_platform_t *rp = refused_platform(s);
    pc_count3(ISS_REFUSALS, plat_id(rp), provider_id(rp), (unsigned)e);
    pol_ireply_t r = {.err = e, .message = m};
    answer(s, &r);
}

static void reply(flow_t *s, int status, char *json)
{
    pol_ireply_t r = {.status = status, .json = json, .err = PC_E_NONE};
    answer(s, &r);
    free(json);
}

/* ---- Redis commands, several in flight; `after` runs once all answered ---- */

typedef struct {
    flow_t *s;
    int slot;
    void (*check)(flow_t *s, const struct redisReply *r);   /* may set s->failed */
} flow_op_t;

static void on_cmd(void *arg, const struct redisReply *r, const char *err)
{
    flow_op_t *o = arg;
    flow_t *s = o->s;
    s->ops[o->slot] = NULL;
    if (err) {
        FLOG(s, PC_WARN, "issuance_error", "issuance: Redis: %s", err);
        s->failed = 1;
    } else if (o->check) {
        o->check(s, r);
    }
    free(o);
    if (--s->pending == 0) {
        s->nops = 0;
        s->after(s);   /* last: may end the request */
    }
}

static int send_cmd(flow_t *s, const pol_argv_t *a, void (*check)(flow_t *, const struct redisReply *))
{
    pol_redis_t *r = s->rq.redis;
    flow_op_t *o = calloc(1, sizeof(*o));
    if (!o || !r || s->nops == ISS_MAX_OPS) {
        free(o);
        return -1;
    }
    o->s = s;
    o->slot = s->nops;
    o->check = check;
    s->ops[s->nops] = pol_redis_command(r, a->argc, a->argv, a->argvlen, on_cmd, o);
    if (!s->ops[s->nops]) {
        free(o);
        return -1;
    }
    s->nops++;
    s->pending++;
    return 0;
}

/* ---- challenge ---- */

static void challenge_set(flow_t *s, const struct redisReply *r)
{
    if (r->type != REDIS_REPLY_STATUS)   /* nil: the NX found a key, or an odd reply */
        s->failed = 1;
}

static void challenge_done(void *arg)
{
    flow_t *s = arg;
    char *json = NULL;
    if (s->failed || iss_challenge_response_json(s->nonce, s->cfg->nonce_ttl_ms, &json) < 0) {
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the nonce store is unavailable");
        return;
    }
    pc_count(ISS_CHALLENGES);
    reply(s, 200, json);
}

static void start_challenge(flow_t *s)
{
    pol_argv_t a;
    if (iss_nonce_new(s->nonce) < 0 ||
        iss_nonce_set_argv(&a, s->nonce, class_name(s), s->cfg->nonce_ttl_ms) < 0) {
        refuse(s, PC_E_INTERNAL, "cannot make a nonce");
        return;
    }
    s->after = challenge_done;
    if (send_cmd(s, &a, challenge_set) < 0)
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the nonce store is unavailable");
}

/* ---- issue and renew ---- */

static void sign_and_record(flow_t *s);

static int is_renew(const flow_t *s)
{
    return s->kind == ISS_R_RENEW;
}

static void state_store(flow_t *s);
static void start_attested(flow_t *s);
static int send_state_ttl(flow_t *s, uint64_t ttl);

static void attested(flow_t *s)
{
    FLOG(s, PC_INFO, "attestation_accepted", "attestation accepted: platform=%s %s (request_id=%s)", s->plat ? s->plat->name : "-",
         s->summary, s->rq.request_id);
    if (s->att_new_state) {
        state_store(s);   /* then signs */
        return;
    }
    sign_and_record(s);
}

/* A stateful attester's verdict: its state and counter, kept to store.
 * 0, or -1 after refusing. */
static int keep_state(flow_t *s, const iss_verdict_t *v)
{
    if (!s->attester->stateful || !v->state)
        return 0;
    if (!(s->att_new_state = strdup(v->state))) {
        refuse(s, PC_E_OUT_OF_MEMORY, "cannot keep the attestation state");
        return -1;
    }
    s->att_counter = v->counter;
    return 0;
}

static void on_verdict(void *arg, const iss_verdict_t *v)
{
    flow_t *s = arg;
    s->aop = NULL;
    if (v->err != PC_E_NONE) {
        refuse(s, v->err, v->message);
        return;
    }
    /* a platform that attests the key itself must have attested this one */
    if (v->key_attested && (!v->key_sha256 || CRYPTO_memcmp(v->key_sha256, s->spki_sha256, 32) != 0)) {
        refuse(s, PC_E_KEY_NOT_BOUND, "the attested key is not the CSR's key");
        return;
    }
    s->level = v->level;
    snprintf(s->summary, sizeof(s->summary), "%s", v->summary ? v->summary : "");
    if (keep_state(s, v) < 0)
        return;
    attested(s);
}

/* The provider's own token member on issue: a 400 naming it, before any
 * verification (a stateful provider's renewal carries its own proof).
 * 0, or -1 after refusing. */
static int token_present(flow_t *s, const iss_attester_t *a)
{
    if (!a->token_member || (is_renew(s) && a->stateful) || json_object_get(s->req.body, a->token_member))
        return 0;
    char m[64];
    snprintf(m, sizeof m, "missing \"%s\"", a->token_member);
    refuse(s, PC_E_BAD_REQUEST, m);
    return -1;
}

/* A renewal without a fresh attestation: the calling certificate's level
 * (none invents one), but only for the key it was given to. A level is a
 * statement about the key (where it was made, that it cannot leave), so a
 * new key of an attested caller needs a fresh attestation; an unattested
 * caller renews unattested with any key. */
static void renew_unattested(flow_t *s)
{
    const tls_identity_t *id = s->rq.id;
    snprintf(s->summary, sizeof(s->summary), "renewal without attestation");
    if (id->integrity >= 0) {
        if (iss_spki_sha256(s->pub, s->spki_sha256) < 0) {
            refuse(s, PC_E_INTERNAL, "cannot hash the CSR key");
            return;
        }
        if (CRYPTO_memcmp(s->spki_sha256, id->spki_sha256, sizeof(s->spki_sha256)) != 0) {
            refuse(s, PC_E_KEY_NOT_BOUND,
                   "a renewal with a new key needs a fresh attestation (the integrity level is about the key)");
            return;
        }
    }
    s->level = id->integrity;
    sign_and_record(s);
}

/* The platform's attester on the request's token (attester.h), or a
 * renewal without one. */
static void attest(flow_t *s)
{
    if (is_renew(s) && !s->req.platform[0]) {
        renew_unattested(s);
        return;
    }
    size_t pi = (size_t)(s->plat - s->cfg->platforms);
    const iss_attester_t *a = iss_attester_find(s->plat->provider);
    if (!a || !s->g->attest[pi]) {
        refuse(s, PC_E_PLATFORM_REFUSED, "this platform is not accepted");
        return;
    }
    if (token_present(s, a) < 0)
        return;
    if (iss_bind_challenge(s->req.nonce, s->pub, s->challenge, s->spki_sha256) < 0) {
        refuse(s, PC_E_INTERNAL, "cannot compute the key-binding challenge");
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    iss_attest_req_t rq = {
        .platform = s->plat,
        .body = s->req.body,
        .token = s->req.integrity_token,
        .token_len = s->req.token_len,
        .nonce = s->req.nonce,
        .challenge = s->challenge,
        .spki_sha256 = s->spki_sha256,
        .csr_key = s->pub,
        .renewal = is_renew(s),
        .state = s->att_state,
        .now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
        .base = s->rq.base,
        .log = {s->rq.log_ctx, s->rq.host},
    };
    s->attester = a;
    a->verify(s->g->attest[pi], &rq, on_verdict, s, &s->aop);   /* may end the request */
}

static void nonce_got(flow_t *s, const struct redisReply *r)
{
    const char *err = NULL;
    const char *v = r->type == REDIS_REPLY_STRING ? r->str : NULL;
    if (!iss_nonce_check(v, v ? r->len : 0, class_name(s), &err)) {
        s->failed = 2;
        snprintf(s->summary, sizeof(s->summary), "%s", err);
    }
}

static void nonce_done(void *arg)
{
    flow_t *s = arg;
    if (s->failed == 2) {
        refuse(s, PC_E_NONCE_INVALID, s->summary);
        return;
    }
    if (s->failed) {
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the nonce store is unavailable");
        return;
    }
    s->summary[0] = '\0';
    attest(s);
}

static void record_done(void *arg)
{
    flow_t *s = arg;
    char *json = NULL;
    if (s->failed) {   /* an unrecorded certificate is never handed out */
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the issuance records are unavailable");
        return;
    }
    if (iss_issue_response_json(&s->issued, s->device_id, &json) < 0) {
        refuse(s, PC_E_OUT_OF_MEMORY, "cannot build the response");
        return;
    }
    FLOG(s, PC_INFO, "certificate_issued", "certificate %s: device=%s serial=%s not_after=%s integrity=%s platform=%s attestation=%s%s (request_id=%s)",
         is_renew(s) ? "renewed" : "issued", s->device_id, s->issued.serial, s->issued.not_after,
         cfg_integrity_name(s->issued.level), s->plat ? s->plat->name : "-", s->summary,
         is_renew(s) && s->cfg->revoke_old_on_renew ? "; previous certificate revoked" : "", s->rq.request_id);
    pc_count3(ISS_CERTS, plat_id(s->plat), provider_id(s->plat), is_renew(s) ? PC_ISS_RENEWED : PC_ISS_ISSUED);
    reply(s, is_renew(s) ? 200 : 201, json);
}

/* The last check before signing, after any slow attestation: the device id
 * must not be revoked (revocation.md: device entries), nor the calling
 * certificate (the device's own on renewal, the bootstrap certificate on
 * issue), whose revocation may have landed while the attestation ran.
 * 0, or -1 after refusing. */
static int revocation_gate(flow_t *s)
{
    pol_rev_key_t k;
    pol_mirror_t *mirror = s->rq.mirror;
    if (!mirror)
        return 0;
    if (!pol_mirror_usable(mirror)) {
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "revocation status unknown (Redis unavailable)");
        return -1;
    }
    if (pol_rev_device_key(s->device_id, &k) < 0 || pol_mirror_contains(mirror, &k)) {
        refuse(s, PC_E_DEVICE_REVOKED, "this device id has been revoked");
        return -1;
    }
    if (tls_identity_revoked(s->rq.tls, s->rq.id)) {
        refuse(s, PC_E_CERTIFICATE_REVOKED, "the client certificate has been revoked");
        return -1;
    }
    return 0;
}

/* The device id the certificate is for: the caller's on renewal, a new
 * one on issue. 0, or -1 after refusing. */
static int choose_device_id(flow_t *s)
{
    if (!is_renew(s)) {
        if (s->device_id[0])
            return 0;   /* chosen already (a stateful attester's state is stored under it) */
        if (iss_device_id_new(s->device_id) < 0) {
            refuse(s, PC_E_INTERNAL, "cannot make a device id");
            return -1;
        }
        return 0;
    }
    if (!s->rq.id->device_id) {
        refuse(s, PC_E_CLASS_NOT_ALLOWED, "the client certificate carries no device id");
        return -1;
    }
    snprintf(s->device_id, sizeof(s->device_id), "%s", s->rq.id->device_id);
    return 0;
}

/* Renewal with issuance.revoke_old_on_renew: the revocation of the calling
 * certificate, queued behind the records. Syscall-like. */
static int send_revoke_old(flow_t *s)
{
    const tls_identity_t *id = s->rq.id;
    char entry[POL_REV_ENTRY_MAX];
    const char *err = NULL;
    snprintf(entry, sizeof(entry), "%s:%s", id->class_name, id->serial);
    if (pol_revwrite_build(&s->rw, &s->rq.cfg->revocation, 1, entry, "renewed", (int64_t)time(NULL), &err) < 0)
        return -1;
    s->have_rw = 1;
    for (size_t i = 0; i < s->rw.ncmd; i++) {
        pol_argv_t a;
        memset(&a, 0, sizeof(a));
        a.argc = s->rw.cmd[i].argc;
        for (int k = 0; k < a.argc; k++) {
            a.argv[k] = s->rw.cmd[i].argv[k];
            a.argvlen[k] = s->rw.cmd[i].argvlen[k];
        }
        if (send_cmd(s, &a, NULL) < 0)
            return -1;
    }
    return 0;
}

/* The lifetime of a certificate at level (issuance.lifetime_by_integrity;
 * issuance.lifetime for an unattested one), and the longest any may get. */
static uint64_t lifetime_ms(const cfg_issuance_t *is, int level)
{
    uint64_t v = level >= 0 && level < CFG_INT__COUNT ? is->lifetime_by_integrity_ms[level] : 0;
    return v ? v : is->lifetime_ms;
}

static uint64_t longest_lifetime_ms(const cfg_issuance_t *is)
{
    uint64_t m = is->lifetime_ms;
    for (int i = 0; i < CFG_INT__COUNT; i++)
        m = lifetime_ms(is, i) > m ? lifetime_ms(is, i) : m;
    return m;
}

/* The TTL (seconds) of a device's set and of its attestation state: they
 * outlive each of its certificates, whatever their levels, also when a
 * renewal is refused after the state's counter moved. */
static uint64_t device_ttl_s(const cfg_issuance_t *is)
{
    return longest_lifetime_ms(is) / 1000;
}

/* Signs the certificate, recording s->level (its OID from
 * identity.integrity_policies; none when unattested), then stores its
 * record (and, on renewal, the old certificate's revocation); record_done
 * answers once Redis has. */
static void sign_and_record(flow_t *s)
{
    const cfg_t *cfg = s->rq.cfg;
    const char *err = NULL;
    if (choose_device_id(s) < 0 || revocation_gate(s) < 0)
        return;
    const char *prefix = cfg->identity.device_id_source == CFG_DEVID_SAN_URI ? cfg->identity.device_id_prefix : NULL;
    int lv = s->level >= 0 && s->level < CFG_INT__COUNT ? s->level : -1;
    const char *oid = lv >= 0 ? cfg->identity.integrity_oids[lv].text : NULL;
    uint64_t ttl = lifetime_ms(s->cfg, lv) / 1000;
    if (iss_issue_cert(s->g->issuer, s->pub, s->device_id, prefix, ttl, time(NULL), lv, oid, &s->issued,
                       &err) < 0) {
        refuse(s, PC_E_INTERNAL, err ? err : "signing failed");
        return;
    }
    s->have_issued = 1;
    pol_argv_t a1, a2, a3;
    if (iss_record_json(&s->issued, s->device_id, s->plat ? s->plat->name : "", s->summary, &s->record) < 0 ||
        pol_issued_set_argv(&a1, s->issued.serial, s->record, ttl) < 0 ||
        pol_device_sadd_argv(&a2, s->device_id, s->issued.serial) < 0 ||
        pol_device_expire_argv(&a3, s->device_id, device_ttl_s(s->cfg)) < 0) {
        refuse(s, PC_E_INTERNAL, "cannot build the issuance record");
        return;
    }
    s->after = record_done;
    s->failed = 0;
    int bad = send_cmd(s, &a1, NULL) < 0 || send_cmd(s, &a2, NULL) < 0 || send_cmd(s, &a3, NULL) < 0;
    if (!bad && is_renew(s) && s->cfg->revoke_old_on_renew)
        bad = send_revoke_old(s) < 0;
    if (!bad)
        bad = send_state_ttl(s, device_ttl_s(s->cfg)) < 0;
    if (bad) {
        /* the commands already sent answer first; record_done then refuses */
        s->failed = 1;
        if (s->pending == 0)
            refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the issuance records are unavailable");
    }
}

/* ---- stateful attesters (App Attest): the device's state in Redis,
 * portcullis:attest:<device_id> (policy/issued.h) ---- */

static void state_got(flow_t *s, const struct redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        s->failed = 1;
        return;
    }
    const struct redisReply *pl = r->element[0], *st = r->element[2];
    if (pl->type != REDIS_REPLY_STRING)
        return;   /* no state: a device that never attested with a stateful provider */
    /* a platform name that cannot be configured still marks a stateful device */
    int fits = pl->len > 0 && pl->len < sizeof(s->att_platform);
    snprintf(s->att_platform, sizeof(s->att_platform), "%s", fits ? pl->str : "?");
    if (st->type == REDIS_REPLY_STRING && !(s->att_state = strndup(st->str, st->len)))
        s->failed = 1;
}

static void state_got_done(void *arg)
{
    flow_t *s = arg;
    if (s->failed) {
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the attestation state store is unavailable");
        return;
    }
    if (s->att_platform[0] && !s->req.platform[0]) {
        refuse(s, PC_E_ATTESTATION_FAILED, "this device renews with an App Attest assertion");
        return;
    }
    start_attested(s);
}

/* A device with stored state (it attested with a stateful provider: App
 * Attest) renews only on that platform, with that provider's proof,
 * whatever the request names. 0, or -1 after refusing. */
static int stored_platform_check(flow_t *s)
{
    const iss_attester_t *a = iss_attester_find(s->plat->provider);
    if (!s->att_platform[0])
        return 0;
    if (strcmp(s->att_platform, s->plat->name) != 0 || !a || !a->stateful) {
        refuse(s, PC_E_ATTESTATION_FAILED, "this device was attested for another platform");
        return -1;
    }
    return 0;
}

/* Every renewal first reads the device's attestation state (one HMGET),
 * then goes on (state_got_done): the platform and proof a device that
 * attested with a stateful provider must renew with do not depend on what
 * the request names, nor on renew_requires_attestation. */
static void state_get(flow_t *s)
{
    pol_argv_t a;
    if (choose_device_id(s) < 0)
        return;
    if (pol_attest_get_argv(&a, s->device_id) < 0) {
        refuse(s, PC_E_CLASS_NOT_ALLOWED, "the client certificate carries no valid device id");
        return;
    }
    s->after = state_got_done;
    s->failed = 0;
    if (send_cmd(s, &a, state_got) < 0)
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the attestation state store is unavailable");
}

static void state_cas(flow_t *s, const struct redisReply *r)
{
    if (r->type != REDIS_REPLY_INTEGER)
        s->failed = 1;
    else if (r->integer != 1)
        s->failed = r->integer == 0 ? 2 : 3;
}

static void state_stored(void *arg)
{
    flow_t *s = arg;
    if (s->failed == 2) {
        refuse(s, PC_E_ATTESTATION_FAILED, "assertion counter not increasing");
        return;
    }
    if (s->failed == 3) {
        refuse(s, PC_E_ATTESTATION_FAILED, "no App Attest key is stored for this device");
        return;
    }
    if (s->failed) {
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the attestation state store is unavailable");
        return;
    }
    sign_and_record(s);
}

/* After a stateful attester's verdict: on issue, the state under a new
 * device id (which the certificate then gets); on renewal, the new counter
 * and state only if the counter is still above the stored one (EVAL, one
 * atomic step: two renewals racing with one assertion cannot both pass).
 * Then signing. */
static void state_store(flow_t *s)
{
    pol_argv_t a, b;
    uint64_t ttl = device_ttl_s(s->cfg);
    s->after = state_stored;
    s->failed = 0;
    if (is_renew(s)) {
        if (pol_attest_cas_argv(&a, s->device_id, s->att_counter, s->att_new_state, ttl) < 0 ||
            send_cmd(s, &a, state_cas) < 0)
            refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the attestation state store is unavailable");
        return;
    }
    if (choose_device_id(s) < 0)
        return;
    if (pol_attest_set_argv(&a, s->device_id, s->plat->name, s->att_counter, s->att_new_state) < 0 ||
        pol_attest_expire_argv(&b, s->device_id, ttl) < 0) {
        refuse(s, PC_E_INTERNAL, "cannot build the attestation state");
        return;
    }
    if (send_cmd(s, &a, NULL) < 0 || send_cmd(s, &b, NULL) < 0) {
        s->failed = 1;
        if (s->pending == 0)
            refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the attestation state store is unavailable");
    }
}

/* With the records: the device's attestation state lives as long as its
 * device set, also across renewals without an assertion (EXPIRE of a
 * missing key is a no-op). Syscall-like. */
static int send_state_ttl(flow_t *s, uint64_t ttl)
{
    pol_argv_t a;
    if (!s->att_new_state && !is_renew(s))
        return 0;
    return pol_attest_expire_argv(&a, s->device_id, ttl) < 0 ? -1 : send_cmd(s, &a, NULL);
}

static void start_issue(flow_t *s)
{
    size_t len = s->rq.body_len;
    const char *body = s->rq.body;
    const char *err = NULL;
    int renew = is_renew(s);
    int r = renew ? iss_renew_parse(body ? body : "", len, s->cfg->renew_requires_attestation, &s->req, &err)
                  : iss_issue_parse(body ? body : "", len, &s->req, &err);
    if (r < 0) {
        refuse(s, PC_E_BAD_REQUEST, err);
        return;
    }
    s->have_req = 1;
    if (iss_csr_check(s->req.csr, s->req.csr_len, s->cfg, &s->pub, &err) < 0) {
        refuse(s, PC_E_INVALID_CSR, err);
        return;
    }
    if (renew)
        state_get(s);   /* then start_attested */
    else
        start_attested(s);
}

/* After the request's checks (and, on renewal, the device's state): the
 * platform, then the nonce, then its attester. */
static void start_attested(flow_t *s)
{
    const char *err = NULL;
    if (is_renew(s) && !s->req.platform[0]) {
        attest(s);   /* renewal without a fresh attestation */
        return;
    }
    s->plat = iss_platform(s->cfg, s->req.platform, &err);
    if (!s->plat) {
        refuse(s, PC_E_PLATFORM_REFUSED, err);
        return;
    }
    if (is_renew(s) && stored_platform_check(s) < 0)
        return;
    pol_argv_t a;
    if (iss_nonce_getdel_argv(&a, s->req.nonce) < 0) {
        refuse(s, PC_E_NONCE_INVALID, "malformed nonce");
        return;
    }
    s->after = nonce_done;
    if (send_cmd(s, &a, nonce_got) < 0)
        refuse(s, PC_E_ISSUANCE_UNAVAILABLE, "the nonce store is unavailable");
}

void iss_flow_start(void *arg, const pol_ireq_t *req, void **slot)
{
    const iss_route_arg_t *ra = arg;
    flow_t *s = calloc(1, sizeof(*s));
    if (!s) {
        pol_ireply_t r = {.err = PC_E_OUT_OF_MEMORY};
        req->reply(req->host, &r);
        return;
    }
    s->rq = *req;   /* its body is read during this call only (start_issue) */
    s->g = ra->g;
    s->kind = ra->kind;
    s->level = -1;
    s->cfg = ra->g->is;
    *slot = s;
    if (s->kind == ISS_R_CHALLENGE)
        start_challenge(s);
    else
        start_issue(s);
}

void iss_flow_cancel(void *state)
{
    flow_free(state);
}
