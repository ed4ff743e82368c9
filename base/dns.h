/* base/dns: names, not only addresses, for what the gateway connects to.
 *
 * Two uses, one resolver (libevent's evdns; never a blocking getaddrinfo):
 *
 * 1. pc_dns_resolve: the configuration loader resolves every name a
 *    configuration gives, all in parallel, on a private event loop, bounded
 *    by the resolver's timeout x attempts. It runs on the thread that loads
 *    the configuration (start, --check, reload), never on a worker loop.
 *
 * 2. The process's name table: every host:port a loaded configuration names
 *    is interned (pc_dns_intern, refcounted: a reload that keeps a name keeps
 *    its entry). Once pc_dns_start has given it the control thread's event
 *    loop, that loop re-resolves each name every `interval`, and soon after a
 *    connect failure (pc_dns_connect_failed: rate-limited, once a second per
 *    name at most). A name whose answer changes gets a new address set; one
 *    that stops resolving keeps its last good set (logged at WARN once per
 *    change, counted in portcullis_dns_failures_total).
 *
 * Address sets are immutable refcounted snapshots (pc_dns_addrs_t), sorted,
 * so the same answer in another order is no change. Readers keep their own
 * reference in a cache slot and call pc_dns_current: on the hot path that is
 * one atomic load of the name's version and a compare; only when the version
 * moved does it take the table's mutex to swap the reference (so a worker
 * never locks while the answer stays the same, and a snapshot is freed by
 * whichever thread drops its last reference).
 */
#ifndef PORTCULLIS_DNS_H
#define PORTCULLIS_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;

/* Most addresses kept per name: the lowest of the whole answer, sorted
 * (so the set does not change when a server rotates a longer answer). */
#define PC_DNS_MAX_ADDRS 8
#define PC_DNS_MAX_NAMESERVERS 8
#define PC_DNS_MAX_HOST 253
#define PC_DNS_HOSTS_FILE "/etc/hosts"   /* resolver.hosts_file unset */

typedef struct {
    struct sockaddr_storage sa;
    socklen_t len;
} pc_dns_sa_t;

/* resolver: section (config/config_resolver.c). */
typedef struct {
    pc_dns_sa_t nameservers[PC_DNS_MAX_NAMESERVERS];
    size_t nnameservers;   /* 0: the ones of /etc/resolv.conf */
    char *hosts_file;      /* NULL: /etc/hosts */
    uint64_t interval_ms;  /* re-resolve period */
    uint64_t timeout_ms;   /* one attempt */
    unsigned attempts;     /* per name server */
} pc_dns_conf_t;

/* One name to resolve at load: host and port in, addresses or err out. */
typedef struct {
    const char *host;
    int port;
    pc_dns_sa_t a[PC_DNS_MAX_ADDRS];
    size_t n;              /* 0 on failure, err then says why */
    char err[160];
} pc_dns_query_t;

/* Resolves q[0..n) in parallel, at most conf's timeout x attempts (plus a
 * second) in all. Returns 0 once every query is answered or failed (each
 * says which in q[i].n and q[i].err), or -1 with err filled if the resolver
 * itself cannot be set up (a name server list that evdns refuses, ...). */
int pc_dns_resolve(const pc_dns_conf_t *conf, pc_dns_query_t *q, size_t n, char *err,
                   size_t errlen);

/* Replaces what pc_dns_resolve does (same contract) with fn; NULL: evdns
 * again. For fuzz targets and tests that must never send a query: set it
 * once, before any configuration is loaded (not thread-safe). */
typedef int (*pc_dns_resolve_fn)(const pc_dns_conf_t *conf, pc_dns_query_t *q, size_t n,
                                 char *err, size_t errlen);
void pc_dns_set_resolve_hook(pc_dns_resolve_fn fn);

/* An immutable address set; refs and the table's pointer to it are the
 * table's business. version: the name's set counter when it was made. */
typedef struct pc_dns_addrs {
    int refs;
    uint64_t version;
    size_t n;
    pc_dns_sa_t a[PC_DNS_MAX_ADDRS];
} pc_dns_addrs_t;

typedef struct pc_dns_name pc_dns_name_t;

/* The table's entry for host:port, made on first use, with a reference the
 * caller releases. a[0..n), when n > 0, is a fresh answer (the loader's):
 * it replaces the entry's set if it differs. NULL on out of memory.
 * Any thread. */
pc_dns_name_t *pc_dns_intern(const char *host, int port, const pc_dns_sa_t *a, size_t n);
void pc_dns_name_release(pc_dns_name_t *nm);
const char *pc_dns_name_host(const pc_dns_name_t *nm);

/* Makes *cache (NULL at first, or a set of nm from an earlier call) nm's
 * current set, taking a reference to it and dropping the old one. Returns 1
 * if *cache changed, 0 if not. Any thread. */
int pc_dns_current(pc_dns_name_t *nm, pc_dns_addrs_t **cache);
void pc_dns_addrs_release(pc_dns_addrs_t *a);

/* A connection to one of nm's addresses failed: re-resolve it soon (on the
 * control loop; at most once a second per name). Any thread; no-op before
 * pc_dns_start. */
void pc_dns_connect_failed(pc_dns_name_t *nm);

/* Starts re-resolving on base (the control thread's loop, made after
 * evthread_use_pthreads). Returns 0, or -1 with err filled. pc_dns_stop,
 * after that loop ended, frees the resolver (names stay until released). */
int pc_dns_start(struct event_base *base, const pc_dns_conf_t *conf, char *err, size_t errlen);
void pc_dns_stop(void);

/* "a.b.c.d:port" or "[v6]:port" of sa, into buf (at least 64 bytes). */
const char *pc_dns_sa_text(const pc_dns_sa_t *sa, char *buf, size_t len);
/* The IP literal of sa (no brackets), into ip (at least 46 bytes); returns
 * its port. For client libraries that take a host string (hiredis): given a
 * literal they never resolve. */
int pc_dns_sa_ip(const pc_dns_sa_t *sa, char *ip, size_t len);

#endif
