/* policy/mirror: revocation mirror (table + usability) and its Redis sync. */
#include "mirror.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <pthread.h>
#include <stdio.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "../base/metrics.h"

/* ---- the table: 128-bit digests, linear probing, backward-shift delete ---- */

typedef struct {
    pol_rev_key_t *slots;   /* all-zero key = empty */
    size_t cap, n;          /* cap is a power of two; n <= cap / 2 */
} rtable_t;

static int key_empty(const pol_rev_key_t *k)
{
    return k->h[0] == 0 && k->h[1] == 0;
}

static int key_eq(const pol_rev_key_t *a, const pol_rev_key_t *b)
{
    return a->h[0] == b->h[0] && a->h[1] == b->h[1];
}

static int rt_init(rtable_t *t, size_t cap)
{
    t->slots = calloc(cap, sizeof(*t->slots));
    t->cap = t->slots ? cap : 0;
    t->n = 0;
    return t->slots ? 0 : -1;
}

static size_t rt_find(const rtable_t *t, const pol_rev_key_t *k)
{
    size_t mask = t->cap - 1, i = (size_t)k->h[0] & mask;
    while (!key_empty(&t->slots[i]) && !key_eq(&t->slots[i], k))
        i = (i + 1) & mask;
    return i;
}

static int rt_contains(const rtable_t *t, const pol_rev_key_t *k)
{
    return t->cap && !key_empty(&t->slots[rt_find(t, k)]);
}

static int rt_add(rtable_t *t, const pol_rev_key_t *k);

static int rt_grow(rtable_t *t)
{
    rtable_t g;
    if (rt_init(&g, t->cap * 2) < 0)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (!key_empty(&t->slots[i]))
            rt_add(&g, &t->slots[i]);
    free(t->slots);
    *t = g;
    return 0;
}

/* 1 added, 0 already there, -1 out of memory */
static int rt_add(rtable_t *t, const pol_rev_key_t *k)
{
    if ((t->n + 1) * 2 > t->cap && rt_grow(t) < 0)
        return -1;
    size_t i = rt_find(t, k);
    if (!key_empty(&t->slots[i]))
        return 0;
    t->slots[i] = *k;
    t->n++;
    return 1;
}

static int rt_del(rtable_t *t, const pol_rev_key_t *k)
{
    if (!t->cap)
        return 0;
    size_t mask = t->cap - 1, i = rt_find(t, k);
    if (key_empty(&t->slots[i]))
        return 0;
    /* backward shift: move later members of the run into the hole when
     * their home slot does not lie cyclically in (hole, j] */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (key_empty(&t->slots[j]))
            break;
        size_t home = (size_t)t->slots[j].h[0] & mask;
        int in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    memset(&t->slots[i], 0, sizeof(t->slots[i]));
    t->n--;
    return 1;
}

/* ---- the mirror ---- */

struct pol_mirror {
    pthread_rwlock_t lock;
    rtable_t t;
    uint64_t gen;              /* atomic */
    int64_t usable_until_ms;   /* atomic; monotonic ms; INT64_MAX while current */
    /* written by the sync task only, read under the lock for status */
    const char *state;
    int ever_synced;
    int64_t stale_since_ms;
    int64_t last_sync_unix;
    double last_load_ms;
    int fail_closed;
    uint64_t max_staleness_ms;
    /* entries it cannot use (see pol_mirror_status_t) */
    size_t unusable;
    pol_mirror_bad_t bad[POL_MIRROR_EXAMPLES];
    size_t nbad;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pol_mirror_t *pol_mirror_new(const cfg_t *cfg)
{
    pol_mirror_t *m = calloc(1, sizeof(*m));
    if (!m || rt_init(&m->t, 1024) < 0) {
        free(m);
        return NULL;
    }
    pthread_rwlock_init(&m->lock, NULL);
    m->state = "loading";
    m->fail_closed = cfg->revocation.fail_closed;
    m->max_staleness_ms = cfg->revocation.max_staleness_ms;
    return m;
}

void pol_mirror_free(pol_mirror_t *m)
{
    if (!m)
        return;
    pthread_rwlock_destroy(&m->lock);
    free(m->t.slots);
    free(m);
}

int pol_mirror_contains(pol_mirror_t *m, const pol_rev_key_t *k)
{
    pthread_rwlock_rdlock(&m->lock);
    int r = rt_contains(&m->t, k);
    pthread_rwlock_unlock(&m->lock);
    return r;
}

int pol_mirror_contains_any(pol_mirror_t *m, const pol_rev_key_t *keys, size_t n)
{
    int r = 0;
    pthread_rwlock_rdlock(&m->lock);
    for (size_t i = 0; i < n && !r; i++)
        r = !key_empty(&keys[i]) && rt_contains(&m->t, &keys[i]);
    pthread_rwlock_unlock(&m->lock);
    return r;
}

int pol_mirror_usable(pol_mirror_t *m)
{
    return mono_ms() < __atomic_load_n(&m->usable_until_ms, __ATOMIC_ACQUIRE);
}

uint64_t pol_mirror_generation(pol_mirror_t *m)
{
    return __atomic_load_n(&m->gen, __ATOMIC_ACQUIRE);
}

void pol_mirror_status(pol_mirror_t *m, pol_mirror_status_t *st)
{
    pthread_rwlock_rdlock(&m->lock);
    st->entries = m->t.n;
    st->bytes = m->t.cap * sizeof(pol_rev_key_t);
    st->state = m->state;
    st->last_sync_unix = m->last_sync_unix;
    st->last_load_ms = m->last_load_ms;
    int64_t stale = m->stale_since_ms;
    st->unusable = m->unusable;
    st->nexamples = m->nbad;
    memcpy(st->examples, m->bad, m->nbad * sizeof m->bad[0]);
    pthread_rwlock_unlock(&m->lock);
    st->usable = pol_mirror_usable(m);
    st->staleness_s = stale ? (double)(mono_ms() - stale) / 1000.0 : 0.0;
    if (strcmp(st->state, "stale") == 0 && !st->usable)
        st->state = "unavailable";
}

/* Sets the state (under the lock) and recomputes usability. */
static void set_state(pol_mirror_t *m, const char *state)
{
    int64_t until;
    pthread_rwlock_wrlock(&m->lock);
    if (strcmp(state, "current") == 0) {
        m->stale_since_ms = 0;
        until = INT64_MAX;
    } else {
        if (!m->stale_since_ms)
            m->stale_since_ms = mono_ms();
        if (m->fail_closed || !m->ever_synced)
            until = 0;
        else
            until = m->stale_since_ms + (int64_t)m->max_staleness_ms;
    }
    m->state = state;
    pthread_rwlock_unlock(&m->lock);
    __atomic_store_n(&m->usable_until_ms, until, __ATOMIC_RELEASE);
}

/* ---- sync task ---- */

#define LIFTS_NAMED 8   /* lifts whose outcome is logged by name */

typedef struct pending {
    struct pending *next;
    int add;
    pol_rev_key_t k;
} pending_t;

struct pol_revsync {
    struct event_base *base;
    const cfg_t *cfg;          /* redis and revocation settings (restart-only) */
    char classes[32][CFG_MAX_NAME];  /* the running configuration's class names */
    size_t nclasses;
    pol_mirror_t *m;
    void (*on_change)(void *);
    void *arg;
    redisAsyncContext *sub, *cmd;
    int sub_ready, cmd_ready, subscribed;
    int was_connected;      /* both connections were set up once: later is a reconnect */
    int loading;
    rtable_t load;             /* the table being loaded */
    pending_t *pend, **pend_tail;   /* changes seen while loading, in order */
    struct timespec load_start;
    size_t load_bad;
    size_t load_unusable;      /* members the load could not use */
    pol_mirror_bad_t load_ex[POL_MIRROR_EXAMPLES];
    size_t load_nex;
    struct event *retry, *resync, *cmd_timer, *stale_timer;
    uint64_t backoff_ms;
    int stopping;
    /* redis.address: which of a name's addresses (base/dns.h) this round uses */
    pc_dns_addrs_t *dns;
    size_t turn;
    pc_dns_sa_t at;            /* the address this round connected to */
    int round_failed;          /* this round's address failed once: the next one is tried */
    /* lifts wait for a full load that starts after them (see apply) */
    int reload_after;          /* a lift arrived during the current load */
    size_t nlifted;            /* lifts awaiting their load, named in lifted[] */
    char lifted[LIFTS_NAMED][POL_REV_ENTRY_MAX];
    int lifted_in_load;        /* how many of lifted[] the current load confirms */
};

static void sync_fail(pol_revsync_t *s, const char *why);
static void start_load(pol_revsync_t *s);
static void connected(pol_revsync_t *s);

static void changed(pol_revsync_t *s)
{
    __atomic_add_fetch(&s->m->gen, 1, __ATOMIC_ACQ_REL);
    if (s->on_change)
        s->on_change(s->arg);
}

static void arm_ms(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(ev, &tv);
}

/* An example of an unusable entry: cut, and safe in a log line or JSON. */
static void bad_example(pol_mirror_bad_t *b, const char *text, size_t len, const char *problem)
{
    size_t n = len < sizeof(b->entry) - 4 ? len : sizeof(b->entry) - 4, i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        b->entry[i] = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    if (n < len)
        memcpy(b->entry + i, "...", 4);
    else
        b->entry[i] = '\0';
    snprintf(b->problem, sizeof(b->problem), "%s", problem);
}

/* Canonicalises one member of the set, or the entry of a message, and checks
 * that it can match here. 0 with the canonical entry in canon; -1 after
 * logging at error level, with the example in *ex. */
static int usable_entry(pol_revsync_t *s, const char *text, size_t len, int is_msg, char *canon,
                        size_t canonlen, int *add, pol_mirror_bad_t *ex, int quiet)
{
    const char *err = NULL;
    char why[200];
    int form = 0, r;
    if (is_msg)
        r = pol_rev_parse_message(text, len, canon, canonlen, &form, &err);
    else
        r = pol_rev_canon(text, len, canon, canonlen, &form, &err) < 0 ? -1 : 1;
    if (r >= 0 && add)
        *add = r;
    const char *names[32];
    for (size_t i = 0; i < s->nclasses; i++)
        names[i] = s->classes[i];
    if (r >= 0 && (r == 0 || pol_rev_usable_in(names, s->nclasses, canon, form, why, sizeof(why)) == 0))
        return 0;   /* a lift of an entry that can match nothing is harmless */
    bad_example(ex, text, len, r < 0 ? err : why);
    if (!quiet)
        pc_log_ev(PC_ERR, "revocation_sync", "action=revocation-sync", "unusable revocation %s \"%s\" (%s %s): %s; %s",
           is_msg ? "message" : "entry", ex->entry, is_msg ? "channel" : "set",
           is_msg ? s->cfg->revocation.channel : s->cfg->revocation.key, ex->problem,
           r < 0 ? "it revokes nothing" : "it is kept, and applies if a reload adds that class");
    return r < 0 ? -1 : 1;
}

static void count_unusable(pol_mirror_t *m, const pol_mirror_bad_t *ex)
{
    pthread_rwlock_wrlock(&m->lock);
    m->unusable++;
    if (m->nbad < POL_MIRROR_EXAMPLES)
        m->bad[m->nbad++] = *ex;
    pthread_rwlock_unlock(&m->lock);
}

/* A lift ("-X") is not applied from the message: the set may still hold X in
 * another spelling (an operator's SADD of "device:00ab" and a lift of
 * "device:ab" share one digest), and only the set knows. So a lift starts a
 * full load (or, during one, another right after it, since the SSCAN may have
 * passed X before the SREM) and the mirror keeps X until that load, which
 * keeps it exactly when some member still canonicalises to it. Loads are
 * coalesced: at most one running and one waiting, whatever the rate of
 * lifts. A revocation ("+X") is applied at once. */
static void request_lift(pol_revsync_t *s, const char *canon)
{
    if (s->nlifted < LIFTS_NAMED)
        snprintf(s->lifted[s->nlifted], sizeof s->lifted[0], "%s", canon);
    s->nlifted++;
    if (s->loading)
        s->reload_after = 1;
    else
        start_load(s);
}

/* After a load that started after the lifts named in lifted[0..n-1]: says
 * which were applied and which the set still holds in another spelling. */
static void report_lifts(pol_revsync_t *s, size_t n)
{
    size_t named = n < LIFTS_NAMED ? n : LIFTS_NAMED;
    for (size_t i = 0; i < named; i++) {
        pol_rev_key_t k = pol_rev_key(s->lifted[i], strlen(s->lifted[i]));
        if (pol_mirror_contains(s->m, &k))
            pc_log_ev(PC_WARN, "revocation_sync", "action=revocation-sync", "lift of %s: the set %s still holds "
                   "it in another spelling, so it stays revoked (list the set and lift the "
                   "member shown)", s->lifted[i], s->cfg->revocation.key);
        else
            pc_log_ev(PC_INFO, "revocation_sync", "action=revocation-sync", "lifted %s", s->lifted[i]);
    }
    memmove(s->lifted, s->lifted + named, (LIFTS_NAMED - named) * sizeof s->lifted[0]);
    s->nlifted -= n;
}

static void apply(pol_revsync_t *s, const char *msg, size_t len)
{
    char canon[POL_REV_ENTRY_MAX];
    pol_mirror_bad_t ex;
    int add = 0;
    int u = usable_entry(s, msg, len, 1, canon, sizeof(canon), &add, &ex, 0);
    if (u != 0) {
        count_unusable(s->m, &ex);
        changed(s);   /* the health counters moved */
        if (u < 0)
            return;   /* malformed: nothing to keep */
    }
    if (!add) {
        pc_log_ev(PC_INFO, "revocation_sync", "action=revocation-sync", "lift of %s announced: re-reading the set",
               canon);
        request_lift(s, canon);
        return;
    }
    pol_rev_key_t k = pol_rev_key(canon, strlen(canon));
    pthread_rwlock_wrlock(&s->m->lock);
    int r = rt_add(&s->m->t, &k);
    pthread_rwlock_unlock(&s->m->lock);
    if (r < 0)
        pc_log_ev(PC_ERR, "revocation_sync", "action=revocation-sync", "out of memory adding %s", canon);
    if (s->loading) {   /* replayed onto the new table when the load ends */
        pending_t *p = calloc(1, sizeof(*p));
        if (p) {
            p->add = add;
            p->k = k;
            *s->pend_tail = p;
            s->pend_tail = &p->next;
        } else {
            s->load_bad++;
        }
    }
    pc_log_ev(PC_INFO, "revocation_sync", "action=revocation-sync", "revoked %s", canon);
    changed(s);
}

static void on_sub_msg(redisAsyncContext *ac, void *r, void *priv)
{
    pol_revsync_t *s = priv;
    redisReply *rep = r;
    if (!ac->data || !rep || s->stopping)
        return;   /* the connection is being dropped */
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        s->subscribed = 1;
        pc_log_ev(PC_INFO, "revocation_sync", "action=revocation-sync", "subscribed to %s", s->cfg->revocation.channel);
        if (s->cmd_ready)
            connected(s);
    } else if (strcmp(kind, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        apply(s, rep->element[2]->str, rep->element[2]->len);
    }
}

static void free_pending(pol_revsync_t *s)
{
    while (s->pend) {
        pending_t *p = s->pend;
        s->pend = p->next;
        free(p);
    }
    s->pend_tail = &s->pend;
}

static void finish_load(pol_revsync_t *s)
{
    for (pending_t *p = s->pend; p; p = p->next)
        if ((p->add ? rt_add(&s->load, &p->k) : rt_del(&s->load, &p->k)) < 0)
            s->load_bad++;
    free_pending(s);
    s->loading = 0;
    event_del(s->cmd_timer);
    if (s->load_bad) {
        free(s->load.slots);
        memset(&s->load, 0, sizeof(s->load));
        sync_fail(s, "out of memory while loading the revocation set");
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - s->load_start.tv_sec) * 1e3 +
                (double)(now.tv_nsec - s->load_start.tv_nsec) / 1e6;
    pol_mirror_t *m = s->m;
    pthread_rwlock_wrlock(&m->lock);
    rtable_t old = m->t;
    m->t = s->load;
    m->ever_synced = 1;
    m->last_sync_unix = (int64_t)time(NULL);
    m->last_load_ms = ms;
    m->unusable = s->load_unusable;
    m->nbad = s->load_nex;
    memcpy(m->bad, s->load_ex, s->load_nex * sizeof s->load_ex[0]);
    size_t n = m->t.n;
    pthread_rwlock_unlock(&m->lock);
    free(old.slots);
    memset(&s->load, 0, sizeof(s->load));
    const char *was = m->state;
    set_state(m, "current");
    event_del(s->stale_timer);
    pc_log_ev(strcmp(was, "current") ? PC_INFO : PC_DEBUG, "revocation_sync", "action=revocation-sync",
           "revocation mirror current: %zu entries loaded in %.1f ms (%zu KiB)", n, ms,
           m->t.cap * sizeof(pol_rev_key_t) / 1024);
    if (s->load_unusable)
        pc_log_ev(PC_ERR, "revocation_sync", "action=revocation-sync",
               "revocation set %s holds %zu unusable entries that revoke nothing (see /admin/health)",
               s->cfg->revocation.key, s->load_unusable);
    s->backoff_ms = 0;
    changed(s);
    if (s->lifted_in_load)
        report_lifts(s, (size_t)s->lifted_in_load);
    arm_ms(s->resync, s->cfg->revocation.resync_interval_ms);
    if (s->reload_after) {   /* lifts that arrived during this load */
        s->reload_after = 0;
        start_load(s);
    }
}

static void on_sscan(redisAsyncContext *ac, void *r, void *priv)
{
    pol_revsync_t *s = priv;
    redisReply *rep = r;
    if (!ac->data || s->stopping || !s->loading)
        return;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY) {
        char why[96];
        snprintf(why, sizeof(why), "unexpected SSCAN reply (type %d, %zu elements)", rep ? rep->type : -1,
                 rep && rep->type == REDIS_REPLY_ARRAY ? rep->elements : (size_t)0);
        sync_fail(s, rep && rep->type == REDIS_REPLY_ERROR ? rep->str : why);
        return;
    }
    redisReply *items = rep->element[1];
    for (size_t i = 0; i < items->elements; i++) {
        redisReply *it = items->element[i];
        char canon[POL_REV_ENTRY_MAX];
        pol_mirror_bad_t ex;
        if (it->type != REDIS_REPLY_STRING) {
            bad_example(&ex, "", 0, "set member is not a string");
            pc_log_ev(PC_ERR, "revocation_sync", "action=revocation-sync", "unusable revocation entry in set %s: not a string",
                   s->cfg->revocation.key);
        }
        int u = it->type != REDIS_REPLY_STRING
                    ? -1 : usable_entry(s, it->str, it->len, 0, canon, sizeof(canon), NULL, &ex,
                                        s->load_unusable >= POL_MIRROR_EXAMPLES);
        if (u != 0) {
            if (s->load_nex < POL_MIRROR_EXAMPLES)
                s->load_ex[s->load_nex++] = ex;
            s->load_unusable++;
            if (u < 0)
                continue;
        }
        pol_rev_key_t k = pol_rev_key(canon, strlen(canon));
        if (rt_add(&s->load, &k) < 0)
            s->load_bad++;
    }
    const char *cursor = rep->element[0]->str;
    if (strcmp(cursor, "0") == 0) {
        finish_load(s);
        return;
    }
    arm_ms(s->cmd_timer, s->cfg->redis.command_timeout_ms);
    redisAsyncCommand(s->cmd, on_sscan, s, "SSCAN %s %s COUNT 1000", s->cfg->revocation.key, cursor);
}

static void start_load(pol_revsync_t *s)
{
    if (s->loading || !s->cmd_ready || !s->subscribed)
        return;
    free(s->load.slots);
    if (rt_init(&s->load, 1024) < 0) {
        sync_fail(s, "out of memory");
        return;
    }
    s->loading = 1;
    s->reload_after = 0;
    s->lifted_in_load = (int)s->nlifted;   /* every lift so far came before this load */
    s->load_bad = 0;
    s->load_unusable = 0;
    s->load_nex = 0;
    free_pending(s);
    clock_gettime(CLOCK_MONOTONIC, &s->load_start);
    arm_ms(s->cmd_timer, s->cfg->redis.command_timeout_ms);
    redisAsyncCommand(s->cmd, on_sscan, s, "SSCAN %s 0 COUNT 1000", s->cfg->revocation.key);
}

/* Both connections are set up (subscribed, database selected): the load
 * starts. Every time after the first is a reconnect after a loss. */
static void connected(pol_revsync_t *s)
{
    if (s->was_connected)
        pc_count1(REDIS_RECONNECTS, PC_REDIS_REVOCATION);
    s->was_connected = 1;
    start_load(s);
}

static void drop_connections(pol_revsync_t *s);
static void sync_connect(pol_revsync_t *s);

static void on_resync(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pol_revsync_t *s = arg;
    if (cfg_addr_moved(&s->cfg->redis.addr, &s->dns, &s->at)) {
        /* the name moved while the old server stays up: follow it. The
         * table keeps serving; the new connection loads it afresh. */
        char t[64];
        pc_log_ev(PC_INFO, "revocation_sync", "action=revocation-sync", "Redis %s:%d no longer "
                  "resolves to %s: reconnecting", s->cfg->redis.host, s->cfg->redis.port,
                  pc_dns_sa_text(&s->at, t, sizeof t));
        s->turn = 0;
        drop_connections(s);
        sync_connect(s);
        return;
    }
    start_load(s);
}

static void on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sync_fail(arg, "Redis did not answer in time");
}

static void on_stale_limit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pol_revsync_t *s = arg;
    pc_log_ev(PC_ERR, "revocation_sync", "action=revocation-sync",
           "revocation mirror older than max_staleness: failing closed (new handshakes refused)");
    changed(s);
}

/* Handshake replies (AUTH, SELECT): any error is fatal for this attempt. */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *priv)
{
    pol_revsync_t *s = priv;
    redisReply *rep = r;
    if (!ac->data || s->stopping)
        return;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        sync_fail(s, rep ? rep->str : "no reply to AUTH/SELECT");
}

static void on_select(redisAsyncContext *ac, void *r, void *priv)
{
    pol_revsync_t *s = priv;
    redisReply *rep = r;
    if (!ac->data || s->stopping)
        return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        sync_fail(s, rep ? rep->str : "no reply to SELECT");
        return;
    }
    s->cmd_ready = 1;
    event_del(s->cmd_timer);
    if (s->subscribed)
        connected(s);
}

/* The address in use failed to connect or dropped us: the next round tries
 * the name's next address, and asks for the name to be resolved again. */
static void address_failed(pol_revsync_t *s)
{
    if (s->round_failed)
        return;
    s->round_failed = 1;
    s->turn++;
    pc_dns_connect_failed(s->cfg->redis.addr.dns);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    pol_revsync_t *s = ac->data;
    if (!s)
        return;
    if (status != REDIS_OK && !s->stopping)
        address_failed(s);
    if (ac == s->sub)
        s->sub = NULL;
    else if (ac == s->cmd)
        s->cmd = NULL;
    if (!s->stopping)
        sync_fail(s, status == REDIS_OK ? "disconnected" : (ac->errstr[0] ? ac->errstr : "connection lost"));
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    pol_revsync_t *s = ac->data;
    if (status != REDIS_OK) {
        if (ac == s->sub)
            s->sub = NULL;   /* hiredis frees a context whose connect failed */
        else if (ac == s->cmd)
            s->cmd = NULL;
        if (!s->stopping) {
            address_failed(s);
            sync_fail(s, ac->errstr[0] ? ac->errstr : "connect failed");
        }
        return;
    }
    if (ac == s->sub)
        s->sub_ready = 1;
}

/* ip: an IP literal (hiredis would resolve a name with a blocking getaddrinfo) */
static redisAsyncContext *connect_one(pol_revsync_t *s, const char *ip, int port)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, port);
    if (!ac)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    const char *pw = s->cfg->redis.password_env ? getenv(s->cfg->redis.password_env) : NULL;
    if (pw && *pw)
        redisAsyncCommand(ac, on_setup_reply, s, "AUTH %s", pw);
    return ac;
}

static void sync_connect(pol_revsync_t *s)
{
    pc_dns_sa_t sa;
    char ip[64];
    s->sub_ready = s->cmd_ready = s->subscribed = 0;
    s->round_failed = 0;
    if (!cfg_addr_pick(&s->cfg->redis.addr, &s->dns, s->turn, &sa)) {
        sync_fail(s, "the Redis name has no address");
        return;
    }
    s->at = sa;
    int port = pc_dns_sa_ip(&sa, ip, sizeof ip);
    s->sub = connect_one(s, ip, port);
    s->cmd = connect_one(s, ip, port);
    if (!s->sub || !s->cmd) {
        sync_fail(s, "cannot create a Redis connection");
        return;
    }
    redisAsyncCommand(s->sub, on_sub_msg, s, "SUBSCRIBE %s", s->cfg->revocation.channel);
    redisAsyncCommand(s->cmd, on_select, s, "SELECT %d", s->cfg->redis.db);
    /* the connect and setup are bounded by the connect timeout */
    arm_ms(s->cmd_timer, s->cfg->redis.connect_timeout_ms + s->cfg->redis.command_timeout_ms);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pol_revsync_t *s = arg;
    if (!s->sub && !s->cmd)
        sync_connect(s);
}

static void drop_connections(pol_revsync_t *s)
{
    redisAsyncContext *sub = s->sub, *cmd = s->cmd;
    s->sub = s->cmd = NULL;
    /* Free, not Disconnect: pending callbacks run with NULL replies and see
     * that the connection is gone; the disconnect callback finds no owner. */
    if (sub) {
        sub->data = NULL;
        redisAsyncFree(sub);
    }
    if (cmd) {
        cmd->data = NULL;
        redisAsyncFree(cmd);
    }
}

static void sync_fail(pol_revsync_t *s, const char *why)
{
    if (s->stopping)
        return;
    int was_current = strcmp(s->m->state, "current") == 0;
    int was_loading = s->loading;
    s->loading = 0;
    free_pending(s);
    free(s->load.slots);
    memset(&s->load, 0, sizeof(s->load));
    event_del(s->cmd_timer);
    event_del(s->resync);
    drop_connections(s);
    s->sub_ready = s->cmd_ready = s->subscribed = 0;
    if (!s->m->ever_synced)
        set_state(s->m, "loading");
    else
        set_state(s->m, "stale");
    const cfg_revocation_t *rc = &s->cfg->revocation;
    if (was_current || (was_loading && s->backoff_ms == 0)) {
        if (rc->fail_closed || !s->m->ever_synced)
            pc_log_ev(PC_ERR, "revocation_sync", "action=revocation-sync",
                   "Redis unavailable (%s): revocation mirror not current; failing closed (new handshakes refused)", why);
        else
            pc_log_ev(PC_WARN, "revocation_sync", "action=revocation-sync",
                   "Redis unavailable (%s): serving the last revocation mirror for up to %llu ms", why,
                   (unsigned long long)rc->max_staleness_ms);
        if (!rc->fail_closed && s->m->ever_synced) {
            event_del(s->stale_timer);
            arm_ms(s->stale_timer, rc->max_staleness_ms);
        }
        changed(s);
    } else {
        pc_log_ev(PC_DEBUG, "revocation_sync", "action=revocation-sync", "Redis still unavailable: %s", why);
    }
    /* exponential backoff, 100 ms .. 5 s, plus up to half of it at random
     * from the OpenSSL RNG (seeded per process: rand() was not, so a fleet
     * retried in lockstep after a Redis restart) */
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
    if (s->backoff_ms > 5000)
        s->backoff_ms = 5000;
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (uint32_t)getpid();
    arm_ms(s->retry, s->backoff_ms + r % (s->backoff_ms / 2 + 1));
}

static void set_classes(pol_revsync_t *s, const cfg_tls_t *tls)
{
    s->nclasses = tls->nclasses < 32 ? tls->nclasses : 32;
    for (size_t i = 0; i < s->nclasses; i++)
        snprintf(s->classes[i], sizeof s->classes[i], "%s", tls->classes[i].name);
}

void pol_revsync_set_classes(pol_revsync_t *s, const cfg_tls_t *tls)
{
    set_classes(s, tls);
    if (s->loading)
        s->reload_after = 1;   /* the load running now used the old names */
    else if (s->cmd_ready)
        start_load(s);          /* recount what the set holds for these classes */
}

pol_revsync_t *pol_revsync_start(struct event_base *base, const cfg_t *cfg, pol_mirror_t *m,
                                 void (*on_change)(void *arg), void *arg)
{
    pol_revsync_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->base = base;
    s->cfg = cfg;
    set_classes(s, &cfg->tls);
    s->m = m;
    s->on_change = on_change;
    s->arg = arg;
    s->pend_tail = &s->pend;
    s->retry = evtimer_new(base, on_retry, s);
    s->resync = evtimer_new(base, on_resync, s);
    s->cmd_timer = evtimer_new(base, on_cmd_timeout, s);
    s->stale_timer = evtimer_new(base, on_stale_limit, s);
    if (!s->retry || !s->resync || !s->cmd_timer || !s->stale_timer) {
        pol_revsync_stop(s);
        return NULL;
    }
    pc_log_ev(PC_INFO, "revocation_sync", "action=revocation-sync", "revocation set %s on redis %s:%d db %d; on_redis_unavailable: %s",
           cfg->revocation.key, cfg->redis.host, cfg->redis.port, cfg->redis.db,
           cfg->revocation.fail_closed ? "fail_closed" : "serve_stale");
    sync_connect(s);
    return s;
}

void pol_revsync_stop(pol_revsync_t *s)
{
    if (!s)
        return;
    s->stopping = 1;
    drop_connections(s);
    free_pending(s);
    free(s->load.slots);
    if (s->retry)
        event_free(s->retry);
    if (s->resync)
        event_free(s->resync);
    if (s->cmd_timer)
        event_free(s->cmd_timer);
    if (s->stale_timer)
        event_free(s->stale_timer);
    pc_dns_addrs_release(s->dns);
    free(s);
}
