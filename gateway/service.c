/* gateway/service: descriptor limit, privilege drop, sd_notify. */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/metrics.h"

/* ---- descriptors ---- */

/* Per event loop (a worker's, the control thread's): epoll and the
 * cross-thread notification descriptors of libevent. */
#define FDS_PER_LOOP 4
/* stdio, the log file, the admin and metrics listeners, the upgrade socket,
 * the signalfd and reload pipe, admin/metrics clients, files read on a
 * reload (certificates, keys, CAs, JWKS), DNS. */
#define FDS_MARGIN 128

typedef struct {
    uint64_t clients, pools, redis, listeners, other, total;
} fd_need_t;

static fd_need_t fd_need(const cfg_t *cfg)
{
    fd_need_t n = {0};
    uint64_t workers = cfg->workers > 0 ? (uint64_t)cfg->workers : 1;
    n.clients = 2 * (uint64_t)cfg->limits.max_connections;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        n.pools += workers * cfg->upstreams[i].keepalive * cfg_upstream_endpoints(&cfg->upstreams[i]);
    n.redis = workers + 2;   /* a worker's (rate limits, issuance), the revocation sync's two */
    n.listeners = workers * cfg->nlisteners;
    n.other = FDS_PER_LOOP * (workers + 1) + FDS_MARGIN;
    n.total = n.clients + n.pools + n.redis + n.listeners + n.other;
    return n;
}

uint64_t gw_service_fd_need(const cfg_t *cfg)
{
    return fd_need(cfg).total;
}

void gw_service_raise_nofile(const cfg_t *cfg, const char *when)
{
    fd_need_t n = fd_need(cfg);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        pc_log_ev(PC_WARN, "fd_limit", NULL, "%s: getrlimit(RLIMIT_NOFILE): %s", when, strerror(errno));
        return;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n.total) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > n.total ? (rlim_t)n.total : rl.rlim_max;
        rlim_t was = rl.rlim_cur;
        struct rlimit next = {want, rl.rlim_max};
        if (want > was && setrlimit(RLIMIT_NOFILE, &next) == 0) {
            rl.rlim_cur = want;
            pc_log_ev(PC_INFO, "fd_limit", NULL, "%s: descriptor limit (RLIMIT_NOFILE) raised from %llu to %llu",
                      when, (unsigned long long)was, (unsigned long long)want);
        } else if (want > was) {
            pc_log_ev(PC_WARN, "fd_limit", NULL, "%s: cannot raise the descriptor limit from %llu to %llu: %s",
                      when, (unsigned long long)was, (unsigned long long)want, strerror(errno));
        }
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n.total)
        pc_log_ev(PC_WARN, "fd_limit", NULL, "%s: the configuration may need %llu descriptors "
                  "(limits.max_connections x 2 = %llu, upstream keep-alive pools %llu, Redis %llu, "
                  "listening sockets %llu, other %llu) but RLIMIT_NOFILE allows %llu (hard limit %llu): "
                  "past that, accepting pauses for limits.accept_backoff; raise the hard limit "
                  "(systemd LimitNOFILE=, ulimit -Hn) or lower limits.max_connections",
                  when, (unsigned long long)n.total, (unsigned long long)n.clients,
                  (unsigned long long)n.pools, (unsigned long long)n.redis,
                  (unsigned long long)n.listeners, (unsigned long long)n.other,
                  (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
}

/* ---- accept errors ---- */

unsigned gw_accept_reason(int e)
{
    switch (e) {
    case EMFILE: return PC_ACCEPT_EMFILE;
    case ENFILE: return PC_ACCEPT_ENFILE;
    case ENOBUFS: return PC_ACCEPT_ENOBUFS;
    case ENOMEM: return PC_ACCEPT_ENOMEM;
    default: return PC_ACCEPT_OTHER;
    }
}

int gw_accept_lost_one(int e)
{
    switch (e) {
    case ENETDOWN: case EPROTO: case ENOPROTOOPT: case EHOSTDOWN: case ENONET:
    case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case EPERM: case ETIMEDOUT:
        return 1;
    default:
        return 0;
    }
}

/* ---- privilege drop ---- */

static int dropped_from_root;   /* atomic */

int gw_service_drop(const cfg_runas_t *ra, char *err, size_t errlen)
{
    if (!ra->user)
        return 0;
    uid_t euid = geteuid();
    if (euid != 0) {
        if (euid == ra->uid && getuid() == ra->uid && getegid() == ra->gid && getgid() == ra->gid)
            return 0;   /* started as that user already (systemd User=) */
        snprintf(err, errlen, "user: \"%s\" is set, but the gateway was started as uid %ld, not "
                 "root, so it cannot switch to it: start it as root, or as that user without "
                 "user:/group: (e.g. systemd User= with AmbientCapabilities=CAP_NET_BIND_SERVICE "
                 "for ports below 1024)", ra->user, (long)euid);
        return -1;
    }
    if (ra->uid == 0 && ra->gid == 0)
        return 0;   /* user: root */
    if (initgroups(ra->user, ra->gid) != 0) {
        snprintf(err, errlen, "user: initgroups(\"%s\"): %s", ra->user, strerror(errno));
        return -1;
    }
    if (setgid(ra->gid) != 0) {
        snprintf(err, errlen, "group: setgid(%ld): %s", (long)ra->gid, strerror(errno));
        return -1;
    }
    if (setuid(ra->uid) != 0) {
        snprintf(err, errlen, "user: setuid(%ld): %s", (long)ra->uid, strerror(errno));
        return -1;
    }
    if (ra->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "user: root could be regained after dropping to \"%s\"", ra->user);
        return -1;
    }
    __atomic_store_n(&dropped_from_root, ra->uid != 0, __ATOMIC_RELEASE);
    return 0;
}

int gw_service_dropped(void)
{
    return __atomic_load_n(&dropped_from_root, __ATOMIC_ACQUIRE);
}

/* ---- sd_notify ---- */

static int notify_fd = -1;
static struct sockaddr_un notify_sa;
static socklen_t notify_len;
static int notify_failed_logged;

void gw_service_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path || notify_fd >= 0)
        return;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof notify_sa.sun_path) {
        pc_log_ev(PC_WARN, "sd_notify", NULL, "NOTIFY_SOCKET \"%.120s\" is not a unix socket path or "
                  "@name; no readiness notifications", path);
        return;
    }
    memset(&notify_sa, 0, sizeof notify_sa);
    notify_sa.sun_family = AF_UNIX;
    memcpy(notify_sa.sun_path, path, len);
    if (path[0] == '@')
        notify_sa.sun_path[0] = '\0';   /* abstract namespace */
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    /* non-blocking: a service manager that does not read must not stall a
     * reload or the drain */
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (notify_fd < 0)
        pc_log_ev(PC_WARN, "sd_notify", NULL, "NOTIFY_SOCKET: socket: %s; no readiness notifications",
                  strerror(errno));
}

void gw_service_notify(const char *state)
{
    if (notify_fd < 0)
        return;
    ssize_t n = sendto(notify_fd, state, strlen(state), MSG_NOSIGNAL,
                       (const struct sockaddr *)&notify_sa, notify_len);
    if (n < 0 && !__atomic_exchange_n(&notify_failed_logged, 1, __ATOMIC_RELAXED)) {
        pc_log_ev(PC_WARN, "sd_notify", NULL, "NOTIFY_SOCKET: cannot send \"%.40s\": %s", state,
                  strerror(errno));
    }
}

void gw_service_notify_close(void)
{
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}
