/* policy/revstore: revocation writes and listing in Redis (see revstore.h). */
#include "revstore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <jansson.h>

/* ================================================================ shared */

const char pol_revstore_oom[] = "out of memory";

static void set_cmd(pol_revcmd_t *c, int argc, const char *a0, const char *a1, const char *a2,
                    const char *a3)
{
    const char *a[5] = {a0, a1, a2, a3, NULL};
    c->argc = argc;
    for (int i = 0; i < 5; i++) {
        c->argv[i] = i < argc ? a[i] : NULL;
        c->argvlen[i] = i < argc ? strlen(a[i]) : 0;
    }
}

/* Characters (UTF-8 code points) in s. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

int pol_revwrite_build(pol_revwrite_t *w, const cfg_revocation_t *rc, int add,
                       const char *entry, const char *reason, int64_t now, const char **err)
{
    char canon[POL_REV_ENTRY_MAX];
    memset(w, 0, sizeof *w);
    if (!entry || pol_rev_canon_entry(entry, strlen(entry), canon, sizeof canon, err) < 0)
        return -1;
    /* a lift also removes the spelling given, as a writer may have stored it */
    int other = !add && strcmp(canon, entry) != 0;
    if (other && strlen(entry) >= sizeof w->spelling) {
        *err = "entry is too long";
        return -1;
    }
    if (reason && utf8_chars(reason) > POL_REVSTORE_REASON_MAX) {
        *err = "reason is longer than 200 characters";
        return -1;
    }
    int n1 = snprintf(w->metakey, sizeof w->metakey, "%s:meta", rc->key);
    int n2 = snprintf(w->message, sizeof w->message, "%c%s", add ? '+' : '-', canon);
    if (n1 < 0 || (size_t)n1 >= sizeof w->metakey || n2 < 0 ||
        (size_t)n2 >= sizeof w->message) {
        *err = "revocation key too long";
        return -1;
    }
    memcpy(w->entry, canon, strlen(canon) + 1);
    if (other)
        memcpy(w->spelling, entry, strlen(entry) + 1);
    if (add) {
        json_t *o = json_pack("{s:o, s:I}", "reason", reason ? json_string(reason) : json_null(),
                              "revoked_at", (json_int_t)now);
        w->meta = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!w->meta) {
            *err = reason ? "reason must be valid UTF-8" : pol_revstore_oom;
            return -1;
        }
    }
    set_cmd(&w->cmd[0], 1, "MULTI", NULL, NULL, NULL);
    if (add) {
        set_cmd(&w->cmd[1], 3, "SADD", rc->key, w->entry, NULL);
        set_cmd(&w->cmd[2], 4, "HSET", w->metakey, w->entry, w->meta);
    } else {
        set_cmd(&w->cmd[1], other ? 4 : 3, "SREM", rc->key, w->entry, w->spelling);
        set_cmd(&w->cmd[2], other ? 4 : 3, "HDEL", w->metakey, w->entry, w->spelling);
    }
    set_cmd(&w->cmd[3], 3, "PUBLISH", rc->channel, w->message, NULL);
    set_cmd(&w->cmd[4], 1, "EXEC", NULL, NULL, NULL);
    w->ncmd = 5;
    return 0;
}

void pol_revwrite_clear(pol_revwrite_t *w)
{
    free(w->meta);
    w->meta = NULL;
    w->ncmd = 0;
}

int pol_revwrite_result(const redisReply *r, int *changed, char *err, size_t errlen)
{
    *changed = 0;
    if (!r) {
        snprintf(err, errlen, "no reply from Redis");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis refused the transaction: %.*s", (int)r->len, r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        snprintf(err, errlen, "Redis aborted the transaction");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e && e->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis: %.*s", (int)e->len, e->str);
            return -1;
        }
    }
    if (r->element[0] && r->element[0]->type == REDIS_REPLY_INTEGER)
        *changed = r->element[0]->integer > 0;
    return 0;
}

void pol_revstore_result_clear(pol_revstore_result_t *r)
{
    for (size_t i = 0; i < r->nitems; i++) {
        free(r->items[i].entry);
        free(r->items[i].reason);
    }
    free(r->items);
    r->items = NULL;
    r->nitems = 0;
}

int pol_revstore_entry_problem(const cfg_t *cfg, const char *member, char *problem,
                               size_t len)
{
    char canon[POL_REV_ENTRY_MAX];
    const char *err = NULL;
    int form = 0;
    if (pol_rev_canon(member, strlen(member), canon, sizeof canon, &form, &err) < 0) {
        snprintf(problem, len, "%s", err);
        return -1;
    }
    return pol_rev_usable(cfg, canon, form, problem, len);
}

int pol_revstore_valid_cursor(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int pol_revscan_build(pol_revcmd_t *cmd, const cfg_revocation_t *rc, const char *cursor,
                      unsigned count, char countbuf[16])
{
    if (!pol_revstore_valid_cursor(cursor))
        return -1;
    if (count < 1)
        count = 1;
    if (count > POL_REVSTORE_COUNT_MAX)
        count = POL_REVSTORE_COUNT_MAX;
    snprintf(countbuf, 16, "%u", count);
    const char *a[5] = {"SSCAN", rc->key, cursor, "COUNT", countbuf};
    cmd->argc = 5;
    for (int i = 0; i < 5; i++) {
        cmd->argv[i] = a[i];
        cmd->argvlen[i] = strlen(a[i]);
    }
    return 0;
}

int pol_revscan_result(const redisReply *r, pol_revstore_result_t *res, char *err,
                       size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "no reply from Redis");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis: %.*s", (int)r->len, r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element[0] ||
        r->element[0]->type != REDIS_REPLY_STRING || !r->element[1] ||
        r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->len >= sizeof res->cursor) {
        snprintf(err, errlen, "unexpected SSCAN reply from Redis");
        return -1;
    }
    memcpy(res->cursor, r->element[0]->str, r->element[0]->len);
    res->cursor[r->element[0]->len] = '\0';
    if (!pol_revstore_valid_cursor(res->cursor) || strlen(res->cursor) != r->element[0]->len) {
        /* it is handed to the admin client and back to SSCAN: decimal only */
        res->cursor[0] = '\0';
        snprintf(err, errlen, "unexpected SSCAN cursor from Redis");
        return -1;
    }
    const redisReply *m = r->element[1];
    res->items = calloc(m->elements ? m->elements : 1, sizeof *res->items);
    if (!res->items) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < m->elements; i++) {
        const redisReply *e = m->element[i];
        if (!e || e->type != REDIS_REPLY_STRING)
            continue;
        char *s = malloc(e->len + 1);
        if (!s) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memcpy(s, e->str, e->len);
        s[e->len] = '\0';
        res->items[res->nitems++].entry = s;
    }
    return 0;
}

int pol_revmeta_build(const cfg_revocation_t *rc, const pol_revstore_result_t *r,
                      const char **argv, size_t *argvlen, char *metakey)
{
    snprintf(metakey, POL_REVSTORE_KEY_MAX, "%s:meta", rc->key);
    argv[0] = "HMGET";
    argv[1] = metakey;
    for (size_t i = 0; i < r->nitems; i++)
        argv[i + 2] = r->items[i].entry;
    for (size_t i = 0; i < r->nitems + 2; i++)
        argvlen[i] = strlen(argv[i]);
    return (int)r->nitems + 2;
}

int pol_revmeta_parse(const char *text, size_t len, char **reason, int64_t *revoked_at)
{
    json_error_t je;
    *reason = NULL;
    *revoked_at = 0;
    json_t *o = json_loadb(text, len, 0, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    json_t *rs = json_object_get(o, "reason"), *at = json_object_get(o, "revoked_at");
    if (json_is_string(rs))
        *reason = strdup(json_string_value(rs));
    if (json_is_integer(at))
        *revoked_at = (int64_t)json_integer_value(at);
    json_decref(o);
    return 0;
}

int pol_revmeta_result(const redisReply *r, pol_revstore_result_t *res, char *err,
                       size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "no reply from Redis");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis: %.*s", (int)r->len, r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != res->nitems) {
        snprintf(err, errlen, "unexpected HMGET reply from Redis");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e && e->type == REDIS_REPLY_STRING)
            pol_revmeta_parse(e->str, e->len, &res->items[i].reason, &res->items[i].revoked_at);
    }
    return 0;
}

/* ---------------------------------------------------------------- batch */

void pol_revbatch_clear(pol_revbatch_t *b)
{
    for (size_t i = 0; b->w && i < b->n; i++)
        pol_revwrite_clear(&b->w[i]);
    free(b->w);
    free(b->cmd);
    b->w = NULL;
    b->cmd = NULL;
    b->n = b->ncmd = 0;
}

int pol_revbatch_build(pol_revbatch_t *b, const cfg_revocation_t *rc,
                       const char *const *entries, size_t n, const char *reason, int64_t now,
                       const char **err)
{
    memset(b, 0, sizeof *b);
    if (n == 0 || n > (SIZE_MAX - 2) / 3) {
        *err = "nothing to revoke";
        return -1;
    }
    b->w = calloc(n, sizeof *b->w);
    b->cmd = calloc(3 * n + 2, sizeof *b->cmd);
    if (!b->w || !b->cmd) {
        pol_revbatch_clear(b);
        *err = pol_revstore_oom;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (pol_revwrite_build(&b->w[i], rc, 1, entries[i], reason, now, err) < 0) {
            pol_revbatch_clear(b);   /* b->n counts the entries built so far */
            return -1;
        }
        b->n = i + 1;
    }
    /* MULTI and EXEC are those of the first entry's write */
    b->cmd[b->ncmd++] = &b->w[0].cmd[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 1; j <= 3; j++)
            b->cmd[b->ncmd++] = &b->w[i].cmd[j];
    b->cmd[b->ncmd++] = &b->w[0].cmd[4];
    return 0;
}

int pol_revbatch_result(const redisReply *r, size_t n, int *changed, size_t *nchanged,
                        char *err, size_t errlen)
{
    *nchanged = 0;
    if (!r) {
        snprintf(err, errlen, "no reply from Redis");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis refused the transaction: %.*s", (int)r->len, r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || n == 0 || r->elements != 3 * n) {
        snprintf(err, errlen, "Redis aborted the transaction");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e && e->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis: %.*s", (int)e->len, e->str);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[3 * i];   /* the entry's SADD */
        int c = e && e->type == REDIS_REPLY_INTEGER && e->integer > 0;
        if (changed)
            changed[i] = c;
        *nchanged += (size_t)c;
    }
    return 0;
}

/* ---------------------------------------------------------------- device */

void pol_revdevice_clear(pol_revdevice_t *d)
{
    for (size_t i = 0; d->serials && i < d->nserials; i++)
        free(d->serials[i]);
    free(d->serials);
    free(d->gets);
    free(d->mget_argv);
    free(d->mget_argvlen);
    free(d->reason);
    pol_revbatch_clear(&d->batch);
    d->serials = NULL;
    d->gets = NULL;
    d->mget_argv = NULL;
    d->mget_argvlen = NULL;
    d->reason = NULL;
    d->nserials = 0;
    d->mget_argc = 0;
}

/* The transaction: the device entry, then entries[0..n-1]. 0, or -1. */
static int device_batch(pol_revdevice_t *d, char (*entries)[POL_REV_ENTRY_MAX], size_t n,
                        char *err, size_t errlen)
{
    const char **ptrs = calloc(n + 1, sizeof *ptrs);
    const char *berr = NULL;
    if (!ptrs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ptrs[0] = d->device_entry;
    for (size_t i = 0; i < n; i++)
        ptrs[i + 1] = entries[i];
    int rc = pol_revbatch_build(&d->batch, &d->cfg->revocation, ptrs, n + 1, d->reason, d->now,
                                &berr);
    if (rc < 0)
        snprintf(err, errlen, "%s", berr ? berr : "cannot build the transaction");
    else
        d->ncerts = n;
    free(ptrs);
    return rc;
}

int pol_revdevice_begin(pol_revdevice_t *d, const cfg_t *cfg, const char *device_id,
                        const char *reason, int64_t now, const char **err)
{
    memset(d, 0, sizeof *d);
    if (!device_id || !pol_device_id_valid(device_id) ||
        strlen(device_id) >= sizeof d->device_id ||
        pol_rev_canon_device(device_id, d->device_entry, sizeof d->device_entry, err) < 0 ||
        strcmp(d->device_entry + strlen(POL_REV_DEVICE_PREFIX), device_id) != 0) {
        *err = "device id must be 1..128 characters of A-Z a-z 0-9 . _ : @ -";
        return -1;
    }
    /* the reason is checked now (length, UTF-8), not after the lookups */
    pol_revwrite_t w;
    if (pol_revwrite_build(&w, &cfg->revocation, 1, d->device_entry, reason, now, err) < 0)
        return -1;
    pol_revwrite_clear(&w);
    if (cfg->issuance && pol_device_members_argv(&d->members, device_id) < 0) {
        *err = "device id is too long";
        return -1;
    }
    if (reason && !(d->reason = strdup(reason))) {
        *err = pol_revstore_oom;
        return -1;
    }
    memcpy(d->device_id, device_id, strlen(device_id) + 1);
    d->cfg = cfg;
    d->now = now;
    if (!cfg->issuance) {
        char msg[200];
        if (device_batch(d, NULL, 0, msg, sizeof msg) < 0) {
            pol_revdevice_clear(d);
            *err = pol_revstore_oom;
            return -1;
        }
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int pol_revdevice_members(pol_revdevice_t *d, const redisReply *r, char *err, size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "no reply from Redis");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis: %.*s", (int)r->len, r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "unexpected SMEMBERS reply from Redis");
        return -1;
    }
    if (r->elements == 0)
        return device_batch(d, NULL, 0, err, errlen);
    d->serials = calloc(r->elements, sizeof *d->serials);
    d->gets = calloc(r->elements, sizeof *d->gets);
    d->mget_argv = calloc(r->elements + 1, sizeof *d->mget_argv);
    d->mget_argvlen = calloc(r->elements + 1, sizeof *d->mget_argvlen);
    if (!d->serials || !d->gets || !d->mget_argv || !d->mget_argvlen) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        char *s;
        /* members that are not serials (written by someone else) are skipped */
        if (!e || e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 40 ||
            memchr(e->str, '\0', e->len))
            continue;
        if (!(s = malloc(e->len + 1))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memcpy(s, e->str, e->len);
        s[e->len] = '\0';
        d->serials[d->nserials++] = s;
    }
    qsort(d->serials, d->nserials, sizeof *d->serials, cmp_str);
    size_t kept = 0;
    for (size_t i = 0; i < d->nserials; i++) {
        if (pol_issued_get_argv(&d->gets[kept], d->serials[i]) < 0 || d->gets[kept].argc != 2) {
            free(d->serials[i]);
            continue;
        }
        d->serials[kept++] = d->serials[i];
    }
    d->nserials = kept;
    if (kept == 0)
        return device_batch(d, NULL, 0, err, errlen);
    d->mget_argv[0] = "MGET";
    d->mget_argvlen[0] = 4;
    for (size_t i = 0; i < kept; i++) {
        d->mget_argv[i + 1] = d->gets[i].argv[1];   /* portcullis:issued:<serial> */
        d->mget_argvlen[i + 1] = d->gets[i].argvlen[1];
    }
    d->mget_argc = (int)kept + 1;
    return 0;
}

/* 1 if the issuance record (JSON) is not known to belong to another device. */
static int record_matches(const pol_revdevice_t *d, const char *text, size_t len)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    json_t *id = json_is_object(o) ? json_object_get(o, "device_id") : NULL;
    int ok = !json_is_string(id) || strcmp(json_string_value(id), d->device_id) == 0;
    json_decref(o);
    return ok;
}

int pol_revdevice_records(pol_revdevice_t *d, const redisReply *r, char *err, size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "no reply from Redis");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis: %.*s", (int)r->len, r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != d->nserials) {
        snprintf(err, errlen, "unexpected MGET reply from Redis");
        return -1;
    }
    char (*entries)[POL_REV_ENTRY_MAX] = calloc(d->nserials ? d->nserials : 1, sizeof *entries);
    size_t n = 0;
    if (!entries) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < d->nserials; i++) {
        const redisReply *e = r->element[i];
        if (!e || e->type != REDIS_REPLY_STRING || !record_matches(d, e->str, e->len))
            continue;   /* expired (nil), or not this device's */
        if (pol_issued_revocation_entry(d->cfg->issuance, d->serials[i], entries[n],
                                        sizeof entries[n]) < 0)
            continue;
        n++;
    }
    int rc = device_batch(d, entries, n, err, errlen);
    free(entries);
    return rc;
}

/* ================================================================ async */

enum op_kind { OP_WRITE, OP_LIST, OP_DEVICE };

typedef struct op {
    pol_revstore_t *s;
    struct op *prev, *next;      /* in s->ops */
    enum op_kind kind;
    pol_revstore_cb cb;
    void *arg;
    struct event *timer;         /* command timeout, or the deferred failure */
    int refs;                    /* hiredis callbacks outstanding, +1 while issuing */
    int done;                    /* cb has been called (or dropped) */
    size_t nreplies;             /* replies seen, in order */
    char err[256];
    pol_revwrite_t w;
    pol_revstore_result_t res;
    char cursor[24];
    char countbuf[16];
    pol_revcmd_t scan;
    pol_revdevice_t dev;         /* OP_DEVICE */
    uint64_t timeout_ms;
    int cb_pending;              /* finished while starting: cb runs from the timer */
    int cb_ok;
} op_t;

struct pol_revstore {
    struct event_base *base;
    const cfg_t *cfg;
    redisAsyncContext *ac;       /* NULL: not connected */
    int connected;
    struct event *conn_timer;
    char conn_err[200];          /* why the current / last connection failed */
    op_t *ops;
    int freeing;
    int starting;                /* inside op_start(): callbacks are deferred */
    pc_dns_addrs_t *dns;         /* redis.address given as a name: its addresses, in turn */
    size_t turn;
    pc_dns_sa_t at;              /* the address ac connected to */
};

/* The address in use failed: the next connect tries the name's next one,
 * and the name is resolved again. */
static void address_failed(pol_revstore_t *s)
{
    s->turn++;
    pc_dns_connect_failed(s->cfg->redis.addr.dns);
}

static void op_release(op_t *op)
{
    if (--op->refs > 0 || !op->done || op->cb_pending)
        return;
    pol_revstore_t *s = op->s;
    if (op->prev)
        op->prev->next = op->next;
    else
        s->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    if (op->timer)
        event_free(op->timer);
    pol_revwrite_clear(&op->w);
    pol_revdevice_clear(&op->dev);
    pol_revstore_result_clear(&op->res);
    free(op);
}

/* Calls the callback once; the op lives on until its replies are in. */
static void op_finish(op_t *op, int ok, const char *err)
{
    if (op->done)
        return;
    op->done = 1;
    if (op->timer)
        event_del(op->timer);
    if (op->s->starting) {
        /* never call back from inside pol_revstore_add/remove/list */
        op->cb_pending = 1;
        op->cb_ok = ok;
        if (!ok && err != op->err)
            snprintf(op->err, sizeof op->err, "%s", err ? err : "Redis error");
        event_active(op->timer, EV_TIMEOUT, 0);
        return;
    }
    if (!op->s->freeing && op->cb)
        op->cb(ok, ok ? NULL : (err && *err ? err : "Redis error"), &op->res, op->arg);
}

static void drop_conn(pol_revstore_t *s, const char *why)
{
    redisAsyncContext *ac = s->ac;
    if (why && !s->conn_err[0])
        snprintf(s->conn_err, sizeof s->conn_err, "%s", why);
    if (s->conn_timer)
        event_del(s->conn_timer);
    if (!ac)
        return;
    s->ac = NULL;
    s->connected = 0;
    ac->data = NULL;
    redisAsyncFree(ac);   /* pending callbacks run now (or after the current one) */
}

/* Message for an op that got no reply (connection failed or closed). The
 * callbacks of a context only ever run for the newest connection, whose
 * failure (if known) is in conn_err. */
static void lost_msg(pol_revstore_t *s, const redisAsyncContext *ac, char *buf, size_t len)
{
    const cfg_redis_t *r = &s->cfg->redis;
    if (s->conn_err[0])
        snprintf(buf, len, "%s", s->conn_err);
    else if (ac && ac->err && ac->errstr)
        snprintf(buf, len, "Redis %s:%d: %s", r->host, r->port, ac->errstr);
    else
        snprintf(buf, len, "connection to Redis %s:%d lost", r->host, r->port);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    pol_revstore_t *s = ac->data;
    if (!s || s->ac != ac)
        return;
    if (s->conn_timer)
        event_del(s->conn_timer);
    if (status != REDIS_OK) {
        snprintf(s->conn_err, sizeof s->conn_err, "cannot connect to Redis %s:%d: %s",
                 s->cfg->redis.host, s->cfg->redis.port, ac->errstr ? ac->errstr : "error");
        address_failed(s);
        s->ac = NULL;         /* hiredis frees the context after this */
        s->connected = 0;
        return;
    }
    s->connected = 1;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    pol_revstore_t *s = ac->data;
    if (!s || s->ac != ac)
        return;
    if (status != REDIS_OK)
        address_failed(s);
    if (!s->conn_err[0])
        snprintf(s->conn_err, sizeof s->conn_err, "connection to Redis %s:%d lost%s%s",
                 s->cfg->redis.host, s->cfg->redis.port, ac->errstr ? ": " : "",
                 ac->errstr ? ac->errstr : "");
    s->ac = NULL;
    s->connected = 0;
}

static void on_conn_timeout(evutil_socket_t fd, short what, void *arg)
{
    pol_revstore_t *s = arg;
    (void)fd;
    (void)what;
    if (s->ac && !s->connected) {
        snprintf(s->conn_err, sizeof s->conn_err, "cannot connect to Redis %s:%d: timed out "
                 "after %" PRIu64 "ms", s->cfg->redis.host, s->cfg->redis.port,
                 s->cfg->redis.connect_timeout_ms);
        address_failed(s);
        drop_conn(s, NULL);
    }
}

/* AUTH / SELECT replies: an error makes the connection unusable. */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    pol_revstore_t *s = ac->data;
    redisReply *r = reply;
    const char *what = priv;
    if (!s || s->ac != ac || !r || r->type != REDIS_REPLY_ERROR)
        return;
    snprintf(s->conn_err, sizeof s->conn_err, "Redis %s failed: %.*s", what, (int)r->len,
             r->str);
    drop_conn(s, NULL);
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* Connects if needed; 0, or -1 with s->conn_err set. idle: no other op is
 * out, so a connection to an address the name no longer has is replaced
 * (nothing waits on it). */
static int ensure_conn(pol_revstore_t *s, int idle)
{
    const cfg_redis_t *r = &s->cfg->redis;
    if (s->ac && idle && cfg_addr_moved(&r->addr, &s->dns, &s->at)) {
        drop_conn(s, NULL);
        s->turn = 0;
    }
    if (s->ac)
        return 0;
    s->conn_err[0] = '\0';
    pc_dns_sa_t sa;
    char ip[64];
    if (!cfg_addr_pick(&r->addr, &s->dns, s->turn, &sa)) {
        snprintf(s->conn_err, sizeof s->conn_err, "cannot connect to Redis %s:%d: the name has "
                 "no address", r->host, r->port);
        return -1;
    }
    /* an IP literal: given a name, hiredis would block in getaddrinfo */
    s->at = sa;
    int port = pc_dns_sa_ip(&sa, ip, sizeof ip);
    redisAsyncContext *ac = redisAsyncConnect(ip, port);
    if (!ac) {
        snprintf(s->conn_err, sizeof s->conn_err, "cannot connect to Redis: out of memory");
        return -1;
    }
    if (ac->err) {
        snprintf(s->conn_err, sizeof s->conn_err, "cannot connect to Redis %s:%d: %s",
                 r->host, r->port, ac->errstr);
        redisAsyncFree(ac);
        return -1;
    }
    ac->data = s;
    if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
        snprintf(s->conn_err, sizeof s->conn_err, "cannot attach the Redis connection");
        ac->data = NULL;
        redisAsyncFree(ac);
        return -1;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->connected = 0;
    struct timeval tv = ms_tv(r->connect_timeout_ms);
    event_add(s->conn_timer, &tv);

    const char *pw = r->password_env ? getenv(r->password_env) : NULL;
    if (pw && *pw) {
        const char *argv[2] = {"AUTH", pw};
        size_t argvlen[2] = {4, strlen(pw)};
        redisAsyncCommandArgv(ac, on_setup_reply, (void *)"AUTH", 2, argv, argvlen);
    }
    if (r->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *argv[2] = {"SELECT", db};
        size_t argvlen[2] = {6, strlen(db)};
        redisAsyncCommandArgv(ac, on_setup_reply, (void *)"SELECT", 2, argv, argvlen);
    }
    return 0;
}

static void on_op_timer(evutil_socket_t fd, short what, void *arg)
{
    op_t *op = arg;
    pol_revstore_t *s = op->s;
    (void)fd;
    (void)what;
    if (op->cb_pending) {
        op->cb_pending = 0;
        if (!s->freeing && op->cb)
            op->cb(op->cb_ok, op->cb_ok ? NULL : op->err, &op->res, op->arg);
        op->refs++;
        op_release(op);
        return;
    }
    if (op->done)
        return;
    op->refs++;
    if (!op->err[0])
        snprintf(op->err, sizeof op->err, "Redis %s:%d did not answer within %" PRIu64 "ms",
                 s->cfg->redis.host, s->cfg->redis.port, op->timeout_ms);
    op_finish(op, 0, op->err);
    if (s->ac && op->refs > 1)
        drop_conn(s, "Redis command timed out");   /* its replies would come out of turn */
    op_release(op);
}

/* Fails op from the event loop (never inside the caller's call). */
static void op_fail_later(op_t *op, const char *msg)
{
    if (msg != op->err)
        snprintf(op->err, sizeof op->err, "%s", msg);
    event_active(op->timer, EV_TIMEOUT, 0);
}

static void on_write_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    op_t *op = priv;
    redisReply *r = reply;
    size_t i = op->nreplies++;
    if (!op->done) {
        if (!r) {
            lost_msg(op->s, ac, op->err, sizeof op->err);
            op_finish(op, 0, op->err);
        } else if (i + 1 < op->w.ncmd && r->type == REDIS_REPLY_ERROR) {
            snprintf(op->err, sizeof op->err, "Redis: %.*s", (int)r->len, r->str);
            op_finish(op, 0, op->err);
        } else if (i + 1 == op->w.ncmd) {
            int changed = 0;
            if (pol_revwrite_result(r, &changed, op->err, sizeof op->err) < 0) {
                op_finish(op, 0, op->err);
            } else {
                op->res.changed = changed;
                op_finish(op, 1, NULL);
            }
        }
    }
    op_release(op);
}

static void on_meta_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    op_t *op = priv;
    if (!op->done) {
        if (!reply) {
            lost_msg(op->s, ac, op->err, sizeof op->err);
            op_finish(op, 0, op->err);
        } else if (pol_revmeta_result(reply, &op->res, op->err, sizeof op->err) < 0) {
            op_finish(op, 0, op->err);
        } else {
            op_finish(op, 1, NULL);
        }
    }
    op_release(op);
}

static void on_scan_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    op_t *op = priv;
    pol_revstore_t *s = op->s;
    if (op->done) {
        op_release(op);
        return;
    }
    if (!reply) {
        lost_msg(s, ac, op->err, sizeof op->err);
        op_finish(op, 0, op->err);
    } else if (pol_revscan_result(reply, &op->res, op->err, sizeof op->err) < 0) {
        op_finish(op, 0, op->err);
    } else if (op->res.nitems == 0) {
        op_finish(op, 1, NULL);
    } else {
        size_t n = op->res.nitems + 2;
        const char **argv = calloc(n, sizeof *argv);
        size_t *argvlen = calloc(n, sizeof *argvlen);
        char metakey[POL_REVSTORE_KEY_MAX];
        int rc = -1;
        if (argv && argvlen && s->ac == ac) {
            int argc = pol_revmeta_build(&s->cfg->revocation, &op->res, argv, argvlen, metakey);
            op->refs++;
            rc = redisAsyncCommandArgv(ac, on_meta_reply, op, argc, argv, argvlen);
            if (rc != REDIS_OK)
                op->refs--;
        }
        free(argv);
        free(argvlen);
        if (rc != REDIS_OK)
            op_finish(op, 0, "cannot send HMGET to Redis");
    }
    op_release(op);
}

/* Sends one command of op on ac from a reply callback; 0, or -1. */
static int op_send(op_t *op, redisAsyncContext *ac, redisCallbackFn *fn, int argc,
                   const char **argv, const size_t *argvlen)
{
    if (op->s->ac != ac)
        return -1;
    op->refs++;
    if (redisAsyncCommandArgv(ac, fn, op, argc, argv, argvlen) != REDIS_OK) {
        op->refs--;
        return -1;
    }
    return 0;
}

static void on_batch_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    op_t *op = priv;
    redisReply *r = reply;
    const pol_revbatch_t *b = &op->dev.batch;
    size_t i = op->nreplies++;
    if (!op->done) {
        if (!r) {
            lost_msg(op->s, ac, op->err, sizeof op->err);
            op_finish(op, 0, op->err);
        } else if (i + 1 < b->ncmd && r->type == REDIS_REPLY_ERROR) {
            snprintf(op->err, sizeof op->err, "Redis: %.*s", (int)r->len, r->str);
            op_finish(op, 0, op->err);
        } else if (i + 1 == b->ncmd) {
            size_t nchanged = 0;
            if (pol_revbatch_result(r, b->n, NULL, &nchanged, op->err, sizeof op->err) < 0) {
                op_finish(op, 0, op->err);
            } else if (!(op->res.items = calloc(b->n, sizeof *op->res.items))) {
                op_finish(op, 0, pol_revstore_oom);
            } else {
                for (size_t k = 0; k < b->n; k++)
                    if ((op->res.items[op->res.nitems].entry = strdup(b->w[k].entry)))
                        op->res.nitems++;
                op->res.changed = (int)nchanged;
                op->res.certificates = op->dev.ncerts;
                op_finish(op, 1, NULL);
            }
        }
    }
    op_release(op);
}

/* Sends the device transaction d->batch on ac. */
static void send_device_batch(op_t *op, redisAsyncContext *ac)
{
    pol_revdevice_t *d = &op->dev;
    int failed = 0;
    op->nreplies = 0;
    for (size_t i = 0; i < d->batch.ncmd && !failed; i++) {
        pol_revcmd_t *c = d->batch.cmd[i];
        failed = op_send(op, ac, on_batch_reply, c->argc, c->argv, c->argvlen) < 0;
    }
    if (failed) {
        /* a half-sent MULTI must not stay on the connection */
        if (op->s->ac == ac)
            drop_conn(op->s, "cannot send to Redis");
        op_finish(op, 0, "cannot send the transaction to Redis");
    }
}

static void on_records_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    op_t *op = priv;
    pol_revdevice_t *d = &op->dev;
    if (op->done) {
        op_release(op);
        return;
    }
    if (!reply) {
        lost_msg(op->s, ac, op->err, sizeof op->err);
        op_finish(op, 0, op->err);
    } else if (pol_revdevice_records(d, reply, op->err, sizeof op->err) < 0) {
        op_finish(op, 0, op->err);
    } else {
        send_device_batch(op, ac);
    }
    op_release(op);
}

static void on_members_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    op_t *op = priv;
    pol_revdevice_t *d = &op->dev;
    if (op->done) {
        op_release(op);
        return;
    }
    if (!reply) {
        lost_msg(op->s, ac, op->err, sizeof op->err);
        op_finish(op, 0, op->err);
    } else if (pol_revdevice_members(d, reply, op->err, sizeof op->err) < 0) {
        op_finish(op, 0, op->err);
    } else if (d->mget_argc == 0) {
        send_device_batch(op, ac);   /* no certificate issued to it: the device entry */
    } else if (op_send(op, ac, on_records_reply, d->mget_argc, d->mget_argv,
                       d->mget_argvlen) < 0) {
        op_finish(op, 0, "cannot send MGET to Redis");
    }
    op_release(op);
}

static op_t *op_new(pol_revstore_t *s, enum op_kind kind, pol_revstore_cb cb, void *arg)
{
    op_t *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->s = s;
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    op->timer = evtimer_new(s->base, on_op_timer, op);
    if (!op->timer) {
        free(op);
        return NULL;
    }
    op->next = s->ops;
    if (s->ops)
        s->ops->prev = op;
    s->ops = op;
    op->refs = 1;   /* released at the end of start() */
    return op;
}

/* Connects if needed and sends the op's commands. */
static void op_start(op_t *op)
{
    pol_revstore_t *s = op->s;
    const cfg_redis_t *r = &s->cfg->redis;
    s->starting = 1;
    if (ensure_conn(s, s->ops == op && !op->next) < 0) {
        op_fail_later(op, s->conn_err);
        s->starting = 0;
        op_release(op);
        return;
    }
    op->timeout_ms = r->command_timeout_ms + (s->connected ? 0 : r->connect_timeout_ms);
    struct timeval tv = ms_tv(op->timeout_ms);
    event_add(op->timer, &tv);
    redisAsyncContext *ac = s->ac;
    int failed = 0;
    if (op->kind == OP_WRITE) {
        for (size_t i = 0; i < op->w.ncmd && !failed; i++) {
            pol_revcmd_t *c = &op->w.cmd[i];
            op->refs++;
            if (redisAsyncCommandArgv(ac, on_write_reply, op, c->argc, c->argv,
                                      c->argvlen) != REDIS_OK) {
                op->refs--;
                failed = 1;
            }
        }
    } else if (op->kind == OP_DEVICE && op->dev.batch.n > 0) {
        /* no issuance: the device entry alone, no lookup */
        for (size_t i = 0; i < op->dev.batch.ncmd && !failed; i++) {
            pol_revcmd_t *c = op->dev.batch.cmd[i];
            op->refs++;
            if (redisAsyncCommandArgv(ac, on_batch_reply, op, c->argc, c->argv,
                                      c->argvlen) != REDIS_OK) {
                op->refs--;
                failed = 1;
            }
        }
    } else if (op->kind == OP_DEVICE) {
        op->refs++;
        if (redisAsyncCommandArgv(ac, on_members_reply, op, op->dev.members.argc,
                                  op->dev.members.argv, op->dev.members.argvlen) != REDIS_OK) {
            op->refs--;
            failed = 1;
        }
    } else {
        op->refs++;
        if (redisAsyncCommandArgv(ac, on_scan_reply, op, op->scan.argc, op->scan.argv,
                                  op->scan.argvlen) != REDIS_OK) {
            op->refs--;
            failed = 1;
        }
    }
    if (failed) {
        /* a half-sent MULTI must not stay on the connection */
        drop_conn(s, "cannot send to Redis");
        if (!op->done)
            op_fail_later(op, "cannot send the command to Redis");
    }
    s->starting = 0;
    op_release(op);
}

pol_revstore_t *pol_revstore_new(struct event_base *base, const cfg_t *cfg)
{
    pol_revstore_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base = base;
    s->cfg = cfg;
    s->conn_timer = evtimer_new(base, on_conn_timeout, s);
    if (!s->conn_timer) {
        free(s);
        return NULL;
    }
    return s;
}

void pol_revstore_free(pol_revstore_t *s)
{
    if (!s)
        return;
    s->freeing = 1;
    drop_conn(s, "shutting down");       /* runs and releases pending callbacks */
    while (s->ops) {                     /* ops waiting for a deferred failure */
        op_t *op = s->ops;
        op->done = 1;
        op->cb_pending = 0;
        op->refs = 1;
        op_release(op);
    }
    event_free(s->conn_timer);
    pc_dns_addrs_release(s->dns);
    free(s);
}

static int write_op(pol_revstore_t *s, int add, const char *entry, const char *reason,
                    pol_revstore_cb cb, void *arg, const char **err)
{
    op_t *op = op_new(s, OP_WRITE, cb, arg);
    if (!op) {
        *err = pol_revstore_oom;
        return -1;
    }
    if (pol_revwrite_build(&op->w, &s->cfg->revocation, add, entry, reason,
                           (int64_t)time(NULL), err) < 0) {
        op->done = 1;
        op_release(op);
        return -1;
    }
    op_start(op);
    return 0;
}

int pol_revstore_add(pol_revstore_t *s, const char *entry, const char *reason,
                     pol_revstore_cb cb, void *arg, const char **err)
{
    return write_op(s, 1, entry, reason, cb, arg, err);
}

int pol_revstore_remove(pol_revstore_t *s, const char *entry, pol_revstore_cb cb, void *arg,
                        const char **err)
{
    return write_op(s, 0, entry, NULL, cb, arg, err);
}

int pol_revstore_list(pol_revstore_t *s, const char *cursor, unsigned count,
                      pol_revstore_cb cb, void *arg, const char **err)
{
    if (!pol_revstore_valid_cursor(cursor)) {
        *err = "cursor must be a decimal number";
        return -1;
    }
    op_t *op = op_new(s, OP_LIST, cb, arg);
    if (!op) {
        *err = pol_revstore_oom;
        return -1;
    }
    snprintf(op->cursor, sizeof op->cursor, "%s", cursor);
    pol_revscan_build(&op->scan, &s->cfg->revocation, op->cursor, count, op->countbuf);
    op_start(op);
    return 0;
}

int pol_revstore_revoke_device(pol_revstore_t *s, const char *device_id, const char *reason,
                               pol_revstore_cb cb, void *arg, const char **err)
{
    op_t *op = op_new(s, OP_DEVICE, cb, arg);
    if (!op) {
        *err = pol_revstore_oom;
        return -1;
    }
    if (pol_revdevice_begin(&op->dev, s->cfg, device_id, reason, (int64_t)time(NULL), err) < 0) {
        op->done = 1;
        op_release(op);
        return -1;
    }
    op_start(op);
    return 0;
}
