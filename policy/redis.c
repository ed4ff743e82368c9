/* policy/redis: an asynchronous Redis connection with timeouts and cancel. */
#include "redis.h"

#include "../base/metrics.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pol_redis_op {
    pol_redis_t *r;
    pol_redis_cb cb;        /* NULL once completed or cancelled */
    void *arg;
    struct event *timer;
    int sent;               /* hiredis owns a callback for it: it frees the op */
    pol_redis_op_t *next, *prev;   /* pending list */
};

struct pol_redis {
    struct event_base *base;
    const cfg_redis_t *rc;
    redisAsyncContext *ac;
    pol_redis_op_t *pending;
    int ever_connected;     /* a later connect is a reconnect (REDIS_RECONNECTS) */
    pc_dns_addrs_t *dns;    /* redis.address given as a name: its addresses, tried in turn */
    size_t turn;
    pc_dns_sa_t at;         /* the address ac connected to */
    redisAsyncContext *old; /* after the name moved: the previous connection, closing once
                               its sent commands are answered */
};

/* The address in use failed: the next connect tries the name's next one,
 * and the name is resolved again. */
static void address_failed(pol_redis_t *r)
{
    r->turn++;
    pc_dns_connect_failed(r->rc->addr.dns);
}

static void unlink_op(pol_redis_op_t *op)
{
    pol_redis_t *r = op->r;
    if (!r)
        return;
    if (op->prev)
        op->prev->next = op->next;
    else
        r->pending = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
    op->r = NULL;
}

/* Completes an op once: its callback runs (unless cancelled). */
static void complete(pol_redis_op_t *op, const struct redisReply *reply, const char *err)
{
    pol_redis_cb cb = op->cb;
    op->cb = NULL;
    if (op->timer)
        event_del(op->timer);
    unlink_op(op);
    if (cb)
        cb(op->arg, reply, err);
}

static void op_free(pol_redis_op_t *op)
{
    if (op->timer)
        event_free(op->timer);
    free(op);
}

/* Drops the connection: hiredis calls every pending callback with NULL. */
static void drop(pol_redis_t *r)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    r->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
}

/* The previous connection, now: its pending callbacks run with NULL. */
static void drop_old(pol_redis_t *r)
{
    redisAsyncContext *ac = r->old;
    r->old = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    pol_redis_op_t *op = priv;
    redisReply *rep = reply;
    if (op->cb) {
        if (!rep)
            complete(op, NULL, "the Redis connection was lost");
        else if (rep->type == REDIS_REPLY_ERROR)
            complete(op, NULL, rep->str);
        else
            complete(op, rep, NULL);
    }
    op_free(op);   /* hiredis calls this exactly once per sent command */
}

static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    redisReply *rep = reply;
    pol_redis_t *r = ac->data;
    if (r && rep && rep->type == REDIS_REPLY_ERROR)
        drop(r);   /* AUTH or SELECT refused: the pending commands fail */
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    pol_redis_t *r = ac->data;
    if (status != REDIS_OK && r && r->ac == ac) {
        r->ac = NULL;   /* hiredis frees it, calling pending callbacks with NULL */
        address_failed(r);
    }
    if (status == REDIS_OK && r && r->ac == ac) {
        if (r->ever_connected)
            pc_count1(REDIS_RECONNECTS, PC_REDIS_WORKER);
        r->ever_connected = 1;
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    pol_redis_t *r = ac->data;
    if (r && r->old == ac)
        r->old = NULL;   /* hiredis frees it */
    if (r && r->ac == ac) {
        r->ac = NULL;
        if (status != REDIS_OK)
            address_failed(r);
    }
}

static int ensure(pol_redis_t *r)
{
    pc_dns_sa_t sa;
    char ip[64];
    if (r->ac && !cfg_addr_moved(&r->rc->addr, &r->dns, &r->at))
        return 0;
    if (r->ac) {
        /* the name moved while the old server stays up: new commands go to
         * the new address; the old connection answers what it was sent,
         * then closes (redisAsyncDisconnect), so nothing is lost */
        if (r->old)
            drop_old(r);
        r->old = r->ac;
        r->ac = NULL;
        r->turn = 0;
        redisAsyncDisconnect(r->old);
    }
    if (!cfg_addr_pick(&r->rc->addr, &r->dns, r->turn, &sa))
        return -1;
    r->at = sa;
    /* an IP literal: given a name, hiredis would block in getaddrinfo */
    int port = pc_dns_sa_ip(&sa, ip, sizeof ip);
    redisAsyncContext *ac = redisAsyncConnect(ip, port);
    if (!ac)
        return -1;
    if (ac->err) {
        redisAsyncFree(ac);
        return -1;
    }
    ac->data = r;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    const char *pw = r->rc->password_env ? getenv(r->rc->password_env) : NULL;
    if (pw && *pw)
        redisAsyncCommand(ac, on_setup, NULL, "AUTH %s", pw);
    if (r->rc->db)
        redisAsyncCommand(ac, on_setup, NULL, "SELECT %d", r->rc->db);
    r->ac = ac;
    return 0;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pol_redis_op_t *op = arg;
    pol_redis_t *r = op->r;
    int sent = op->sent;
    complete(op, NULL, sent ? "Redis did not answer in time" : "Redis is unreachable");
    if (!sent) {
        op_free(op);
        return;
    }
    /* a late answer must never be taken for another command's */
    if (r)
        drop(r);
}

pol_redis_op_t *pol_redis_command(pol_redis_t *r, int argc, const char *const *argv,
                                  const size_t *argvlen, pol_redis_cb cb, void *arg)
{
    pol_redis_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->cb = cb;
    op->arg = arg;
    op->r = r;
    op->timer = evtimer_new(r->base, on_timeout, op);
    if (!op->timer) {
        free(op);
        return NULL;
    }
    op->next = r->pending;
    if (r->pending)
        r->pending->prev = op;
    r->pending = op;
    uint64_t ms = r->rc->connect_timeout_ms + r->rc->command_timeout_ms;
    if (ensure(r) == 0 && redisAsyncCommandArgv(r->ac, on_reply, op, argc, (const char **)argv, argvlen) == REDIS_OK) {
        op->sent = 1;
    } else {
        ms = 0;   /* fail on the next loop turn, never from inside this call */
        drop(r);
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(op->timer, &tv);
    return op;
}

void pol_redis_cancel(pol_redis_op_t *op)
{
    if (!op || !op->cb)
        return;
    op->cb = NULL;
    event_del(op->timer);
    unlink_op(op);
    if (!op->sent)
        op_free(op);
    /* a sent op is freed when hiredis calls on_reply */
}

pol_redis_t *pol_redis_new(struct event_base *base, const cfg_redis_t *rc)
{
    pol_redis_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->base = base;
    r->rc = rc;
    return r;
}

void pol_redis_free(pol_redis_t *r)
{
    if (!r)
        return;
    while (r->pending)
        pol_redis_cancel(r->pending);
    drop(r);   /* frees the sent ops through on_reply */
    if (r->old)
        drop_old(r);
    pc_dns_addrs_release(r->dns);
    free(r);
}
