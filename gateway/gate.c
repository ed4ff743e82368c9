/* gateway/gate: the route checks after class and bearer presence: the
 * bearer token as a JWT (optionally bound to the certificate), then the
 * route's rate limits. Local limits answer at once; global limits ask Redis
 * (all at once, pipelined on the worker's connection) and the request waits,
 * paused, for every answer. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../base/metrics.h"
#include "conn_int.h"

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The token after "Bearer " (pol_check has validated the header). */
static const char *bearer_token(const gw_conn_t *c, size_t *len)
{
    int ai = ups_hdrs_find(&c->hdrs, "authorization");
    if (ai < 0) {
        *len = 0;
        return NULL;
    }
    const char *v = ups_str(&c->hdrs, c->hdrs.h[ai].value);
    size_t n = c->hdrs.h[ai].value.len, i = 0;
    if (n >= 7 && strncasecmp(v, "Bearer ", 7) == 0)
        i = 7;
    while (i < n && v[i] == ' ')
        i++;
    *len = n - i;
    return v + i;
}

static int check_jwt(gw_conn_t *c, int *rc)
{
    const cfg_route_t *r = c->route;
    pol_jwks_store_t *store = c->gen->jwks[r - c->gen->cfg->routes];
    size_t tlen;
    const char *tok = bearer_token(c, &tlen);
    pol_jwks_t *keys = pol_jwks_store_get(store);
    pol_jwt_result_t *res = calloc(1, sizeof(*res));
    if (!res || !keys) {   /* a store always holds a key set: only memory fails here */
        free(res);
        pol_jwks_release(keys);
        *rc = keys ? gw_conn_refuse(c, PC_E_OUT_OF_MEMORY, NULL, NULL)
                   : gw_conn_refuse(c, PC_E_INTERNAL, "no token keys are loaded", NULL);
        return GW_GATE_DENY;
    }
    int ok = pol_jwt_verify(r->jwt, keys, tok, tlen, c->id ? c->id->x5t_s256 : NULL, time(NULL), res);
    pol_jwks_release(keys);
    if (ok < 0) {
        pc_count1(AUTH_REFUSALS, res->reason);
        char extra[320];
        snprintf(extra, sizeof(extra),
                 "WWW-Authenticate: Bearer realm=\"portcullis\", error=\"invalid_token\", "
                 "error_description=\"%s\"\r\n", res->description);
        CLOG_EV(c, PC_INFO, "request_refused", "refused invalid_token: %s (request_id=%s)", res->description, c->request_id);
        *rc = gw_conn_refuse(c, PC_E_INVALID_TOKEN, res->description, extra);
        free(res);
        return GW_GATE_DENY;
    }
    c->jwt = res;
    return GW_GATE_ALLOW;
}

/* One decision of limit l (RL_DECISIONS): allowed (1) or limited (0). */
static void count_decision(const cfg_rate_limit_t *l, int allowed)
{
    pc_count2(RL_DECISIONS, l->mx, allowed ? PC_RL_ALLOWED : PC_RL_LIMITED);
}

/* Keeps the result with the least remaining quota, for the headers. */
static void note(gw_conn_t *c, const cfg_rate_limit_t *l, const pol_rl_result_t *res)
{
    if (!c->gate_tight_name || res->remaining < c->gate_tight.remaining) {
        c->gate_tight = *res;
        c->gate_tight_name = l->name;
    }
}

static int limited(gw_conn_t *c, const cfg_rate_limit_t *l, const pol_rl_result_t *res, int *rc)
{
    char extra[256];
    if (pol_rl_headers(res, l->name, extra, sizeof(extra)) < 0)
        extra[0] = '\0';
    CLOG_EV(c, PC_INFO, "request_refused", "refused rate_limited: limit %s (request_id=%s)", l->name, c->request_id);
    *rc = gw_conn_refuse(c, PC_E_RATE_LIMITED, NULL, extra);
    return GW_GATE_DENY;
}

static void finish_headers(gw_conn_t *c)
{
    if (!c->route->rate_limit_headers || !c->gate_tight_name)
        return;
    /* allocated the first time a route of this connection needs it */
    if (!c->rl_headers && !(c->rl_headers = calloc(1, GW_RL_HEADERS_LEN)))
        return;
    if (pol_rl_headers(&c->gate_tight, c->gate_tight_name, c->rl_headers, GW_RL_HEADERS_LEN) < 0)
        c->rl_headers[0] = '\0';
}

typedef struct {
    gw_conn_t *c;
    size_t limit;             /* index into cfg rate_limits */
    unsigned char key[32];
    size_t klen;
    int slot;                 /* index into c->gate_q */
    int eval;                 /* resent with EVAL after NOSCRIPT */
    pol_redis_op_t *op;
} gate_q_t;

static int send_global(gate_q_t *q);

/* Every global limit of a route gets its own question: none falls back to a
 * per-process count for want of a slot. */
_Static_assert(sizeof(((gw_conn_t *)0)->gate_q) / sizeof(void *) >= CFG_ROUTE_MAX_LIMITS,
               "one question slot per rate limit a route may list");

/* Cancels the questions still outstanding: their callbacks will not run. */
static void drop_questions(gw_conn_t *c)
{
    for (int k = 0; k < c->gate_nq; k++) {
        gate_q_t *q = c->gate_q[k];
        if (q) {
            pol_redis_cancel(q->op);
            free(q);
            c->gate_q[k] = NULL;
        }
    }
    c->gate_nq = c->gate_pending = c->gate_refused = 0;
}

/* One global limit answered (or Redis failed). */
static void on_global(void *arg, const struct redisReply *reply, const char *err)
{
    gate_q_t *q = arg;
    gw_conn_t *c = q->c;
    const cfg_rate_limit_t *l = &c->gen->cfg->rate_limits[q->limit];
    q->op = NULL;
    pol_rl_result_t res;
    /* pol_redis reports error replies as err: NOSCRIPT means "send EVAL" */
    int v = err ? (strncmp(err, "NOSCRIPT", 8) == 0 ? -2 : -1) : pol_rl_redis_parse(l, reply, &res);
    if (v == -2 && !q->eval) {   /* the script is not cached there yet */
        q->eval = 1;
        if (send_global(q) == 0)
            return;
        v = -1;
    }
    if (v < 0) {
        pc_count(RL_REDIS_ERRORS);
        if (l->fail_closed) {
            CLOG_EV(c, PC_WARN, "ratelimit_redis_unavailable", "rate limit %s: Redis unavailable (%s): failing closed", l->name,
                 err ? err : "bad reply");
            if (!c->gate_refused) {
                c->gate_refused = 1;
                c->gate_rc = gw_conn_refuse(c, PC_E_RATE_LIMIT_UNAVAILABLE, NULL, "Retry-After: 1\r\n");
            }
            v = 0;
        } else {
            CLOG_EV(c, PC_WARN, "ratelimit_redis_unavailable", "rate limit %s: Redis unavailable (%s): using the local limiter", l->name,
                 err ? err : "bad reply");
            pc_count1(RL_FALLBACKS, l->mx);
            v = pol_rl_check(c->gen->rl, l, q->key, q->klen, now_us(), &res);
            count_decision(l, v);
        }
    } else {
        count_decision(l, v);
    }
    if (v == 0 && !c->gate_refused) {
        c->gate_refused = 1;
        limited(c, l, &res, &c->gate_rc);
    } else if (v == 1) {
        note(c, l, &res);
    }
    c->gate_q[q->slot] = NULL;
    free(q);
    if (--c->gate_pending > 0)
        return;
    if (!c->gate_refused)
        finish_headers(c);
    gw_conn_gate_done(c, c->gate_refused ? c->gate_rc : 0);   /* last: may free c */
}

static int send_global(gate_q_t *q)
{
    gw_conn_t *c = q->c;
    const cfg_rate_limit_t *l = &c->gen->cfg->rate_limits[q->limit];
    pol_rl_redis_cmd_t cmd;
    if (!c->w->redis || pol_rl_redis_cmd(l, q->key, q->klen, q->eval, &cmd) < 0)
        return -1;
    q->op = pol_redis_command(c->w->redis, 6, cmd.argv, cmd.argvlen, on_global, q);
    return q->op ? 0 : -1;
}

/* Cancels the first n questions sent for this request, before a refusal. */
static void drop_sent(gw_conn_t *c, int n)
{
    c->gate_nq = n;
    drop_questions(c);
}

/* Sends limit li's question to Redis as slot c->gate_q[*npending]. 0 if
 * sent (*npending grown), -1 if Redis cannot even be asked. */
static int ask_global(gw_conn_t *c, size_t li, const unsigned char *key, size_t klen, int *npending)
{
    gate_q_t *q = calloc(1, sizeof(*q));
    if (!q)
        return -1;
    q->c = c;
    q->limit = li;
    memcpy(q->key, key, klen);
    q->klen = klen;
    q->slot = *npending;
    if (send_global(q) < 0) {
        free(q);
        return -1;
    }
    c->gate_q[(*npending)++] = q;
    return 0;
}

/* Limit li of the route for this request: counted here (local, or a global
 * one falling back to the local limiter) or asked of Redis (*npending
 * grown). GW_GATE_ALLOW, or GW_GATE_DENY with *rc, the questions already
 * sent cancelled. A limit is never skipped. */
static int gate_limit(gw_conn_t *c, size_t li, const char *tok, size_t tlen, int64_t now,
                      int *npending, int *rc)
{
    const cfg_rate_limit_t *l = &c->gen->cfg->rate_limits[li];
    unsigned char key[32];
    size_t klen;
    if (pol_rl_key(l, c->id, c->peer_ip, tok, tlen, c->route, key, &klen) < 0) {
        drop_sent(c, *npending);
        CLOG_EV(c, PC_ERR, "ratelimit_no_key", "rate limit %s: the request has no key for it: refused (request_id=%s)",
             l->name, c->request_id);
        *rc = gw_conn_refuse(c, PC_E_RATE_LIMIT_KEY, NULL, NULL);
        return GW_GATE_DENY;
    }
    /* always a slot (nrate_limits <= CFG_ROUTE_MAX_LIMITS, asserted above);
     * the bound only keeps memory safe */
    if (l->scope == CFG_RL_GLOBAL && *npending < (int)(sizeof(c->gate_q) / sizeof(c->gate_q[0]))) {
        if (ask_global(c, li, key, klen, npending) == 0)
            return GW_GATE_ALLOW;
        /* Redis cannot even be asked: as when it is unavailable */
        pc_count(RL_REDIS_ERRORS);
        if (l->fail_closed) {
            drop_sent(c, *npending);
            CLOG_EV(c, PC_WARN, "ratelimit_redis_unavailable", "rate limit %s: Redis unavailable: failing closed", l->name);
            *rc = gw_conn_refuse(c, PC_E_RATE_LIMIT_UNAVAILABLE, NULL, "Retry-After: 1\r\n");
            return GW_GATE_DENY;
        }
        pc_count1(RL_FALLBACKS, l->mx);
    }
    pol_rl_result_t res;
    int allowed = pol_rl_check(c->gen->rl, l, key, klen, now, &res);
    count_decision(l, allowed);
    if (!allowed) {
        drop_sent(c, *npending);
        return limited(c, l, &res, rc);
    }
    note(c, l, &res);
    return GW_GATE_ALLOW;
}

int gw_gate_start(gw_conn_t *c, int *rc)
{
    const cfg_route_t *r = c->route;
    c->gate_tight_name = NULL;
    if (c->rl_headers)
        c->rl_headers[0] = '\0';
    if (r->jwt && check_jwt(c, rc) == GW_GATE_DENY)
        return GW_GATE_DENY;
    if (!r->nrate_limits)
        return GW_GATE_ALLOW;

    size_t tlen;
    const char *tok = bearer_token(c, &tlen);
    int64_t now = now_us();
    int npending = 0;
    for (size_t i = 0; i < r->nrate_limits; i++)
        if (gate_limit(c, r->rate_limits[i], tok, tlen, now, &npending, rc) == GW_GATE_DENY)
            return GW_GATE_DENY;
    if (npending == 0) {
        finish_headers(c);
        return GW_GATE_ALLOW;
    }
    c->gate_nq = npending;
    c->gate_pending = npending;
    c->gate_refused = 0;
    return GW_GATE_PENDING;
}

void gw_gate_reset(gw_conn_t *c)
{
    drop_questions(c);
    free(c->jwt);
    c->jwt = NULL;
    if (c->rl_headers)
        c->rl_headers[0] = '\0';
}
