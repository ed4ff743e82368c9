/* base/dns: resolution with evdns, the process's name table (base/dns.h). */
#include "dns.h"

#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define KICK_MIN_MS 1000   /* connect failures re-resolve a name at most this often */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *pc_dns_sa_text(const pc_dns_sa_t *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa->sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa->sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
    }
    return buf;
}

int pc_dns_sa_ip(const pc_dns_sa_t *sa, char *ip, size_t len)
{
    if (sa->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa->sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)len);
        return ntohs(s6->sin6_port);
    }
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa->sa;
    inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)len);
    return ntohs(s4->sin_port);
}

static int sa_cmp(const void *x, const void *y)
{
    const pc_dns_sa_t *a = x, *b = y;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(&a->sa, &b->sa, a->len);
}

/* The TCP addresses of an evdns answer, deduplicated and sorted, into
 * out; returns how many. Every address of the answer is looked at and the
 * lowest PC_DNS_MAX_ADDRS are kept, so a name with more addresses than that
 * gives the same set whatever order (or rotation) the server answers in. */
static size_t collect(const struct evutil_addrinfo *res, pc_dns_sa_t *out)
{
    size_t n = 0;
    for (const struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof out[0].sa)
            continue;
        pc_dns_sa_t s;
        memset(&s, 0, sizeof s);
        memcpy(&s.sa, ai->ai_addr, ai->ai_addrlen);
        s.len = (socklen_t)ai->ai_addrlen;
        /* out[0..n) stays sorted: find s's place, skip a duplicate, and
         * drop the highest when full */
        size_t at = 0;
        while (at < n && sa_cmp(&out[at], &s) < 0)
            at++;
        if ((at < n && sa_cmp(&out[at], &s) == 0) || at == PC_DNS_MAX_ADDRS)
            continue;
        size_t keep = n < PC_DNS_MAX_ADDRS ? n : PC_DNS_MAX_ADDRS - 1;
        memmove(&out[at + 1], &out[at], (keep - at) * sizeof *out);
        out[at] = s;
        n = keep + 1;
    }
    return n;
}

/* evdns's own messages ("Nameserver ... has failed") go to the log at
 * DEBUG: what matters is said once per name by this module. */
static void evdns_log(int is_warn, const char *msg)
{
    (void)is_warn;
    pc_log_ev(PC_DEBUG, "dns", NULL, "evdns: %s", msg);
}

static void set_evdns_log(void)
{
    evdns_set_log_fn(evdns_log);
}

/* An evdns_base on base with conf's name servers, hosts file and timing. */
static struct evdns_base *make_resolver(struct event_base *base, const pc_dns_conf_t *conf,
                                        char *err, size_t errlen)
{
    static pthread_once_t log_once = PTHREAD_ONCE_INIT;
    pthread_once(&log_once, set_evdns_log);   /* a global of libevent's */
    struct evdns_base *db = evdns_base_new(base, 0);
    char v[32];
    if (!db) {
        snprintf(err, errlen, "cannot create a DNS resolver (out of memory)");
        return NULL;
    }
    if (conf->nnameservers == 0) {
        /* search list and options too; the hosts file is loaded below */
        int rc = evdns_base_resolv_conf_parse(db, DNS_OPTIONS_ALL & ~DNS_OPTION_HOSTSFILE,
                                              "/etc/resolv.conf");
        if (rc != 0 && rc != 1 && rc != 6) {   /* 1: no file, 6: no servers: 127.0.0.1 */
            snprintf(err, errlen, "cannot read /etc/resolv.conf (evdns error %d)", rc);
            evdns_base_free(db, 0);
            return NULL;
        }
    }
    for (size_t i = 0; i < conf->nnameservers; i++) {
        if (evdns_base_nameserver_sockaddr_add(db, (const struct sockaddr *)&conf->nameservers[i].sa,
                                               conf->nameservers[i].len, 0) != 0) {
            char t[64];
            snprintf(err, errlen, "cannot use name server %s",
                     pc_dns_sa_text(&conf->nameservers[i], t, sizeof t));
            evdns_base_free(db, 0);
            return NULL;
        }
    }
    /* evdns_base_load_hosts(db, NULL) only adds localhost: name the file.
     * The default one may be missing (localhost is still added then). */
    if (evdns_base_load_hosts(db, conf->hosts_file ? conf->hosts_file : PC_DNS_HOSTS_FILE) != 0 &&
        conf->hosts_file) {
        snprintf(err, errlen, "cannot read the hosts file \"%s\"", conf->hosts_file);
        evdns_base_free(db, 0);
        return NULL;
    }
    snprintf(v, sizeof v, "%.3f", (double)conf->timeout_ms / 1000.0);
    evdns_base_set_option(db, "timeout:", v);
    evdns_base_set_option(db, "getaddrinfo-allow-skew:", v);
    snprintf(v, sizeof v, "%u", conf->attempts ? conf->attempts : 1);
    evdns_base_set_option(db, "attempts:", v);
    return db;
}

static void gai_hints(struct evutil_addrinfo *h)
{
    memset(h, 0, sizeof *h);
    h->ai_family = AF_UNSPEC;
    h->ai_socktype = SOCK_STREAM;
    h->ai_protocol = IPPROTO_TCP;
    h->ai_flags = EVUTIL_AI_ADDRCONFIG;
}

static void answer_text(int result, size_t n, char *err, size_t len)
{
    if (result == 0 && n == 0)
        snprintf(err, len, "no IPv4 or IPv6 address");
    else if (result == EVUTIL_EAI_CANCEL)
        snprintf(err, len, "no answer in time");
    else if (result == EVUTIL_EAI_NONAME)
        snprintf(err, len, "no such name");
    else if (result == EVUTIL_EAI_AGAIN)
        snprintf(err, len, "no answer from the name servers (unreachable or timed out)");
    else if (result == EVUTIL_EAI_FAIL)
        snprintf(err, len, "the name servers failed to answer");
    else
        snprintf(err, len, "%s", evutil_gai_strerror(result));
}

/* ---------------------------------------------------------------- at load */

typedef struct {
    pc_dns_query_t *q;
    struct evdns_getaddrinfo_request *req;
    size_t *pending;
    int done;
} load_req_t;

static void load_answer(int result, struct evutil_addrinfo *res, void *arg)
{
    load_req_t *r = arg;
    r->q->n = result == 0 ? collect(res, r->q->a) : 0;
    if (!r->q->n)
        answer_text(result, 0, r->q->err, sizeof r->q->err);
    if (res)
        evutil_freeaddrinfo(res);
    r->done = 1;
    r->req = NULL;
    (*r->pending)--;
}

static void load_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

static pc_dns_resolve_fn resolve_hook;

void pc_dns_set_resolve_hook(pc_dns_resolve_fn fn)
{
    resolve_hook = fn;
}

int pc_dns_resolve(const pc_dns_conf_t *conf, pc_dns_query_t *q, size_t n, char *err,
                   size_t errlen)
{
    if (n == 0)
        return 0;
    if (resolve_hook)
        return resolve_hook(conf, q, n, err, errlen);
    struct event_base *base = event_base_new();
    load_req_t *r = calloc(n, sizeof *r);
    struct evdns_base *db = base && r ? make_resolver(base, conf, err, errlen) : NULL;
    int expired = 0;
    struct event *timer = base ? evtimer_new(base, load_deadline, &expired) : NULL;
    if (!db || !timer) {
        if (!base || !r || !timer)
            snprintf(err, errlen, "cannot create a DNS resolver (out of memory)");
        if (db)
            evdns_base_free(db, 0);
        if (timer)
            event_free(timer);
        if (base)
            event_base_free(base);
        free(r);
        return -1;
    }
    uint64_t limit = conf->timeout_ms * (conf->attempts ? conf->attempts : 1) + 1000;
    struct timeval tv = {(time_t)(limit / 1000), (suseconds_t)(limit % 1000) * 1000};
    evtimer_add(timer, &tv);
    size_t pending = n;
    struct evutil_addrinfo hints;
    gai_hints(&hints);
    for (size_t i = 0; i < n; i++) {
        char port[8];
        snprintf(port, sizeof port, "%d", q[i].port);
        q[i].n = 0;
        q[i].err[0] = '\0';
        r[i].q = &q[i];
        r[i].pending = &pending;
        /* may answer at once (hosts file, numeric) and return NULL */
        struct evdns_getaddrinfo_request *req =
            evdns_getaddrinfo(db, q[i].host, port, &hints, load_answer, &r[i]);
        if (!r[i].done)
            r[i].req = req;
    }
    while (pending && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    for (size_t i = 0; i < n; i++)
        if (!r[i].done && r[i].req)
            evdns_getaddrinfo_cancel(r[i].req);   /* answers with EVUTIL_EAI_CANCEL */
    while (pending && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;   /* 1: nothing left that could answer */
    for (size_t i = 0; i < n; i++)
        if (!r[i].done)
            answer_text(EVUTIL_EAI_CANCEL, 0, q[i].err, sizeof q[i].err);
    event_free(timer);
    evdns_base_free(db, 0);
    event_base_free(base);
    free(r);
    return 0;
}

/* ---------------------------------------------------------------- the table */

struct pc_dns_name {
    pc_dns_name_t *next;
    char host[PC_DNS_MAX_HOST + 1];
    int port;
    int refs;                 /* table.mu */
    pc_dns_addrs_t *cur;      /* table.mu; never NULL */
    uint64_t version;         /* atomic; cur->version */
    int64_t last_kick_ms;     /* atomic */
    int kicked;               /* atomic: re-resolve at the next kick */
    int in_flight;            /* control loop: a query is out (it holds a reference) */
    struct evdns_getaddrinfo_request *req;   /* control loop: that query, if it did not answer at once */
    int failing;              /* control loop: the last query failed */
};

static struct {
    pthread_mutex_t mu;
    pc_dns_name_t *names;
    struct event_base *base;  /* control loop, once started */
    struct evdns_base *db;
    struct event *timer;
    struct event *kick;       /* atomic pointer: NULL before start and after stop */
    size_t in_flight;         /* control loop: queries out */
    pc_dns_conf_t conf;       /* control loop: for a resolver made later (hosts_file = hosts) */
    int db_failed;            /* control loop: making it later failed (warned once) */
    char *hosts;              /* control loop: the hosts file, read again when it changes */
    struct stat hosts_st;     /* control loop: as last read (st_ino 0: none was there) */
} table = {.mu = PTHREAD_MUTEX_INITIALIZER};

void pc_dns_addrs_release(pc_dns_addrs_t *a)
{
    if (a && __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(a);
}

static int same_set(const pc_dns_addrs_t *a, const pc_dns_sa_t *s, size_t n)
{
    if (a->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (sa_cmp(&a->a[i], &s[i]) != 0)
            return 0;
    return 1;
}

/* Under table.mu: nm's set becomes s[0..n) (sorted) unless it is that
 * already. Returns 1 if it changed, 0 if not, -1 on out of memory. */
static int set_locked(pc_dns_name_t *nm, const pc_dns_sa_t *s, size_t n)
{
    if (nm->cur && same_set(nm->cur, s, n))
        return 0;
    pc_dns_addrs_t *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    a->refs = 1;
    a->n = n;
    memcpy(a->a, s, n * sizeof *s);
    a->version = __atomic_load_n(&nm->version, __ATOMIC_RELAXED) + 1;   /* writers hold table.mu */
    pc_dns_addrs_t *old = nm->cur;
    nm->cur = a;
    __atomic_store_n(&nm->version, a->version, __ATOMIC_RELEASE);
    pc_dns_addrs_release(old);
    return 1;
}

pc_dns_name_t *pc_dns_intern(const char *host, int port, const pc_dns_sa_t *a, size_t n)
{
    pc_dns_sa_t sorted[PC_DNS_MAX_ADDRS];
    if (strlen(host) > PC_DNS_MAX_HOST)
        return NULL;
    n = n > PC_DNS_MAX_ADDRS ? PC_DNS_MAX_ADDRS : n;
    if (n)
        memcpy(sorted, a, n * sizeof *a);
    qsort(sorted, n, sizeof *sorted, sa_cmp);
    pthread_mutex_lock(&table.mu);
    pc_dns_name_t *nm = table.names;
    while (nm && (nm->port != port || strcmp(nm->host, host) != 0))
        nm = nm->next;
    if (nm) {
        nm->refs++;
        if (n)
            set_locked(nm, sorted, n);
    } else if ((nm = calloc(1, sizeof *nm))) {
        snprintf(nm->host, sizeof nm->host, "%s", host);
        nm->port = port;
        nm->refs = 1;
        if (set_locked(nm, sorted, n) < 0) {
            free(nm);
            nm = NULL;
        } else {
            nm->next = table.names;
            table.names = nm;
        }
    }
    pthread_mutex_unlock(&table.mu);
    return nm;
}

void pc_dns_name_release(pc_dns_name_t *nm)
{
    if (!nm)
        return;
    pthread_mutex_lock(&table.mu);
    if (--nm->refs > 0) {
        pthread_mutex_unlock(&table.mu);
        return;
    }
    pc_dns_name_t **pp = &table.names;
    while (*pp && *pp != nm)
        pp = &(*pp)->next;
    if (*pp)
        *pp = nm->next;
    pthread_mutex_unlock(&table.mu);
    pc_dns_addrs_release(nm->cur);
    free(nm);
}

const char *pc_dns_name_host(const pc_dns_name_t *nm)
{
    return nm->host;
}

int pc_dns_current(pc_dns_name_t *nm, pc_dns_addrs_t **cache)
{
    uint64_t v = __atomic_load_n(&nm->version, __ATOMIC_ACQUIRE);
    if (*cache && (*cache)->version == v)
        return 0;
    pthread_mutex_lock(&table.mu);
    pc_dns_addrs_t *a = nm->cur;
    __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&table.mu);
    pc_dns_addrs_t *old = *cache;
    *cache = a;
    pc_dns_addrs_release(old);
    return old != a;
}

void pc_dns_connect_failed(pc_dns_name_t *nm)
{
    struct event *kick = __atomic_load_n(&table.kick, __ATOMIC_ACQUIRE);
    if (!nm || !kick)
        return;
    int64_t now = mono_ms(), last = __atomic_load_n(&nm->last_kick_ms, __ATOMIC_RELAXED);
    if (now - last < KICK_MIN_MS ||
        !__atomic_compare_exchange_n(&nm->last_kick_ms, &last, now, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    __atomic_store_n(&nm->kicked, 1, __ATOMIC_RELEASE);
    event_active(kick, EV_TIMEOUT, 1);
}

/* ---------------------------------------------------------------- control loop */

static void log_set(const pc_dns_name_t *nm, const pc_dns_sa_t *s, size_t n, const char *what)
{
    char list[PC_DNS_MAX_ADDRS * 56 + 8] = "", t[64], ctx[PC_DNS_MAX_HOST + 32];
    size_t off = 0;
    for (size_t i = 0; i < n && off < sizeof list; i++) {
        int k = snprintf(list + off, sizeof list - off, "%s%s", i ? " " : "",
                         pc_dns_sa_text(&s[i], t, sizeof t));
        off += k > 0 ? (size_t)k : 0;
    }
    snprintf(ctx, sizeof ctx, "name=%s:%d", nm->host, nm->port);
    pc_log_ev(PC_INFO, "dns_changed", ctx, "%s:%d %s: %s", nm->host, nm->port, what, list);
}

static void rt_answer(int result, struct evutil_addrinfo *res, void *arg)
{
    pc_dns_name_t *nm = arg;
    pc_dns_sa_t s[PC_DNS_MAX_ADDRS];
    size_t n = result == 0 ? collect(res, s) : 0;
    if (res)
        evutil_freeaddrinfo(res);
    nm->in_flight = 0;
    nm->req = NULL;
    table.in_flight--;
    struct event *kick = __atomic_load_n(&table.kick, __ATOMIC_ACQUIRE);
    if (!kick) {
        pc_dns_name_release(nm);   /* pc_dns_stop cancelled it */
        return;
    }
    if (__atomic_load_n(&nm->kicked, __ATOMIC_ACQUIRE))
        event_active(kick, EV_TIMEOUT, 1);   /* a failure came while this was out */
    if (n == 0) {
        char why[160], ctx[PC_DNS_MAX_HOST + 32];
        pc_count(DNS_FAILURES);
        if (!nm->failing) {
            answer_text(result, n, why, sizeof why);
            snprintf(ctx, sizeof ctx, "name=%s:%d", nm->host, nm->port);
            pc_log_ev(PC_WARN, "dns_failed", ctx, "cannot resolve \"%s\": %s; keeping its last "
                      "addresses", nm->host, why);
        }
        nm->failing = 1;
    } else {
        pthread_mutex_lock(&table.mu);
        int changed = set_locked(nm, s, n);
        pthread_mutex_unlock(&table.mu);
        if (changed > 0) {
            pc_count(DNS_CHANGES);
            log_set(nm, s, n, "now resolves to");
        } else if (nm->failing) {
            log_set(nm, s, n, "resolves again, to");
        }
        nm->failing = 0;
    }
    pc_dns_name_release(nm);
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The hosts file changed since the resolver read it (edited, replaced,
 * removed): read it again, so the control loop answers as a configuration
 * load (which reads it afresh) does. A file that cannot be read leaves
 * only localhost, as at start without one. */
static void rt_reload_hosts(void)
{
    struct stat st;
    if (stat(table.hosts, &st) != 0)
        memset(&st, 0, sizeof st);
    if (same_file(&st, &table.hosts_st))
        return;
    table.hosts_st = st;
    evdns_base_clear_host_addresses(table.db);
    if (evdns_base_load_hosts(table.db, table.hosts) != 0)
        pc_log_ev(PC_WARN, "dns_hosts", NULL, "cannot read the hosts file \"%s\"", table.hosts);
    else
        pc_log_ev(PC_INFO, "dns_hosts", NULL, "the hosts file \"%s\" changed: read again",
                  table.hosts);
}

/* Queries every name (all: the periodic timer) or the kicked ones. */
static void rt_resolve(int all)
{
    if (!table.db) {   /* none at start (no names then): made once one is needed */
        pthread_mutex_lock(&table.mu);
        int any = table.names != NULL;
        pthread_mutex_unlock(&table.mu);
        char err[256];
        if (!any || !(table.db = make_resolver(table.base, &table.conf, err, sizeof err))) {
            if (any && !table.db_failed)
                pc_log_ev(PC_WARN, "dns_failed", NULL, "cannot start the DNS resolver: %s", err);
            table.db_failed = any;
            return;
        }
        table.db_failed = 0;
    }
    rt_reload_hosts();
    pc_dns_name_t **list = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&table.mu);
    for (pc_dns_name_t *nm = table.names; nm; nm = nm->next) {
        if (nm->in_flight)
            continue;   /* a kick stays set: its answer kicks again */
        int kicked = __atomic_exchange_n(&nm->kicked, 0, __ATOMIC_ACQ_REL);
        if (!all && !kicked)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            pc_dns_name_t **l = realloc(list, nc * sizeof *l);
            if (!l)
                break;
            list = l;
            cap = nc;
        }
        nm->refs += 2;        /* the query's, and this loop's until it kept req */
        nm->in_flight = 1;
        table.in_flight++;
        list[n++] = nm;
    }
    pthread_mutex_unlock(&table.mu);
    struct evutil_addrinfo hints;
    gai_hints(&hints);
    for (size_t i = 0; i < n; i++) {   /* outside the mutex: an answer may come at once */
        char port[8];
        snprintf(port, sizeof port, "%d", list[i]->port);
        struct evdns_getaddrinfo_request *req =
            evdns_getaddrinfo(table.db, list[i]->host, port, &hints, rt_answer, list[i]);
        if (list[i]->in_flight)
            list[i]->req = req;   /* for pc_dns_stop to cancel */
        pc_dns_name_release(list[i]);
    }
    free(list);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    rt_resolve(1);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    rt_resolve(0);
}

int pc_dns_start(struct event_base *base, const pc_dns_conf_t *conf, char *err, size_t errlen)
{
    struct timeval tv = {(time_t)(conf->interval_ms / 1000),
                         (suseconds_t)(conf->interval_ms % 1000) * 1000};
    table.base = base;
    free(table.hosts);
    table.hosts = strdup(conf->hosts_file ? conf->hosts_file : PC_DNS_HOSTS_FILE);
    if (!table.hosts || stat(table.hosts, &table.hosts_st) != 0)
        memset(&table.hosts_st, 0, sizeof table.hosts_st);   /* before make_resolver reads it */
    if (!table.hosts) {
        snprintf(err, errlen, "cannot start the DNS resolver (out of memory)");
        return -1;
    }
    table.conf = *conf;
    table.conf.hosts_file = conf->hosts_file ? table.hosts : NULL;
    if (!(table.db = make_resolver(base, conf, err, errlen))) {
        /* a configuration without names must not fail on a resolver it
         * does not use (a broken /etc/resolv.conf, ...): it is made when a
         * reload brings a name */
        pthread_mutex_lock(&table.mu);
        int any = table.names != NULL;
        pthread_mutex_unlock(&table.mu);
        if (any)
            return -1;
        pc_log_ev(PC_DEBUG, "dns", NULL, "no DNS resolver yet (no names are used): %s", err);
        err[0] = '\0';
    }
    table.timer = event_new(base, -1, EV_PERSIST, on_timer, NULL);
    struct event *kick = event_new(base, -1, 0, on_kick, NULL);
    if (!table.timer || !kick || event_add(table.timer, &tv) != 0) {
        snprintf(err, errlen, "cannot start the DNS resolver (out of memory)");
        if (kick)
            event_free(kick);
        return -1;
    }
    __atomic_store_n(&table.kick, kick, __ATOMIC_RELEASE);
    return 0;
}

void pc_dns_stop(void)
{
    struct event *kick = __atomic_exchange_n(&table.kick, NULL, __ATOMIC_ACQ_REL);
    if (kick)
        event_free(kick);
    if (table.timer)
        event_free(table.timer);
    table.timer = NULL;
    if (table.db) {
        /* Every query still out is cancelled; its callback (deferred by
         * evdns) runs on the loop, releases its reference and frees what
         * evdns holds for it. Then nothing is left for evdns_base_free. */
        pthread_mutex_lock(&table.mu);
        for (pc_dns_name_t *nm = table.names; nm; nm = nm->next)
            if (nm->in_flight && nm->req)
                evdns_getaddrinfo_cancel(nm->req);
        pthread_mutex_unlock(&table.mu);
        for (int i = 0; table.in_flight && i < 1000; i++)
            event_base_loop(table.base, EVLOOP_NONBLOCK);
        evdns_base_free(table.db, 0);
    }
    table.db = NULL;
    table.base = NULL;
    free(table.hosts);
    table.hosts = NULL;
}
