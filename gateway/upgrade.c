/* gateway/upgrade: the listening-socket handover (see upgrade.h). */
#include "upgrade.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/metrics.h"
#include "service.h"

_Static_assert(GW_PROC_SOCK_ADMIN == GW_UPGRADE_HTTP_ADMIN &&
               GW_PROC_SOCK_METRICS == GW_UPGRADE_HTTP_METRICS, "listener indexes of the HTTP listeners");

/* The old process waits this long for HELLO after a connect, and for
 * READY after the last socket (the new process starts its workers and
 * loads the revocation mirror in between). */
#define HELLO_TIMEOUT_MS 5000
#define READY_TIMEOUT_MS 120000
/* A refused peer is logged at WARN at most this often (then at debug). */
#define REFUSED_WARN_EVERY_S 60

/* Sends message m, with fd attached when fd >= 0. Syscall-like. */
static ssize_t send_msg(int sock, const gw_upgrade_msg_t *m, int fd, int flags)
{
    unsigned char buf[GW_UPGRADE_MAX_MSG];
    size_t n = gw_upgrade_encode(m, buf, sizeof buf);
    if (n == 0) {
        errno = EINVAL;
        return -1;
    }
    struct iovec iov = {buf, n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.b;
        mh.msg_controllen = sizeof ctl.b;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
}

static ssize_t send_simple(int sock, int type, uint32_t value, int flags)
{
    gw_upgrade_msg_t m = {.type = type, .value = value};
    return send_msg(sock, &m, -1, flags);
}

/* Answers ERROR and closes. What the peer sent and we did not read is
 * dropped first: closing over unread input would reset the connection and
 * the peer would lose the answer. */
static void refuse_close(int sock, const char *why)
{
    size_t n = strlen(why);
    gw_upgrade_msg_t m = {.type = GW_UPGRADE_ERROR, .text = why,
                          .textlen = n > GW_UPGRADE_MAX_TEXT ? GW_UPGRADE_MAX_TEXT : n};
    (void)send_msg(sock, &m, -1, MSG_DONTWAIT);
    char buf[256];
    for (int i = 0; i < 64 && recv(sock, buf, sizeof buf, MSG_DONTWAIT) > 0; i++)
        ;
    close(sock);
}

/* addr ("/path" or "@name") as a sockaddr_un; its length, or 0. */
static socklen_t unix_addr(const char *addr, struct sockaddr_un *un)
{
    size_t n = strlen(addr);
    memset(un, 0, sizeof(*un));
    un->sun_family = AF_UNIX;
    if (n < 2 || n >= sizeof(un->sun_path))
        return 0;
    if (addr[0] == '@') {
        memcpy(un->sun_path + 1, addr + 1, n - 1);   /* sun_path[0] = 0: abstract */
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    memcpy(un->sun_path, addr, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

/* The peer's pid and uid; 1 if that uid may hand over: ours, root, or the
 * configuration's user: (ra; a gateway started as root drops to it, so the
 * running one may be that user while its successor starts as root). */
static int peer_allowed(int sock, const cfg_runas_t *ra, pid_t *pid, uid_t *uid)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return 0;
    *pid = cr.pid;
    *uid = cr.uid;
    return cr.uid == geteuid() || cr.uid == 0 || (ra->user && cr.uid == ra->uid);
}

/* The process this one started on SIGUSR2 (gateway/main.c), 0: none. */
static pid_t expected_child;   /* atomic */

void gw_upgrade_expect_child(pid_t pid)
{
    __atomic_store_n(&expected_child, pid, __ATOMIC_RELEASE);
}

/* The server's side. A process that dropped from root to user: shares
 * that uid with whatever else runs as it (a process of that user must not
 * be handed the listening sockets): it serves root, or a peer of its own
 * uid that is the very process it started on SIGUSR2. Otherwise as
 * peer_allowed. */
static int server_peer_allowed(int sock, const cfg_runas_t *ra, pid_t *pid, uid_t *uid)
{
    int ok = peer_allowed(sock, ra, pid, uid);
    if (!ok || !gw_service_dropped() || *uid == 0)
        return ok;
    pid_t child = __atomic_load_n(&expected_child, __ATOMIC_ACQUIRE);
    return child > 0 && *pid == child && *uid == geteuid();
}

/* "uid 1000 or root" / "uid 0, uid 65534 (user nobody) or root" */
static void allowed_text(const cfg_runas_t *ra, char *buf, size_t len)
{
    if (gw_service_dropped())
        snprintf(buf, len, "root, or the process this gateway started on SIGUSR2,");
    else if (ra->user && ra->uid != geteuid() && ra->uid != 0)
        snprintf(buf, len, "uid %ld, uid %ld (user %s) or root", (long)geteuid(), (long)ra->uid, ra->user);
    else
        snprintf(buf, len, "uid %ld or root", (long)geteuid());
}

/* ---------------------------------------------------------------- server */

enum { S_HELLO, S_SENDING, S_READY };

typedef struct {
    int fd;
    pid_t pid;
    int state;
    size_t next, total;   /* S_SENDING: the next socket to send, and how many */
    gw_proc_sock_t *socks;  /* the sockets, as they were at HELLO */
    struct event *rev, *wev, *timer;
} session_t;

struct gw_upgrade_server {
    struct event_base *base;
    char *addr;
    int lfd;
    struct event *lev;
    struct event *resume;   /* accept backoff: polls lfd again */
    unsigned accept_failures;   /* in the current backoff episode; 0: accepting */
    time_t refused_at;      /* CLOCK_MONOTONIC s of the last refused-peer WARN; 0: none */
    gw_proc_t *proc;
    gw_upgrade_ready_fn ready;
    void *arg;
    session_t *sess;   /* one handover at a time */
};

static void stop_listening(gw_upgrade_server_t *s)
{
    if (s->resume) {
        event_free(s->resume);   /* never polls again after the handover or drain */
        s->resume = NULL;
    }
    if (s->lev) {
        event_free(s->lev);
        s->lev = NULL;
    }
    if (s->lfd >= 0) {
        close(s->lfd);
        s->lfd = -1;
        if (s->addr[0] == '/')
            unlink(s->addr);
    }
}

static void session_end(gw_upgrade_server_t *s)
{
    session_t *x = s->sess;
    if (!x)
        return;
    event_free(x->rev);
    event_free(x->wev);
    event_free(x->timer);
    if (x->fd >= 0)
        close(x->fd);
    for (size_t i = x->next; x->socks && i < x->total; i++)
        if (x->socks[i].fd >= 0)
            close(x->socks[i].fd);
    free(x->socks);
    free(x);
    s->sess = NULL;
}

static void session_refuse(gw_upgrade_server_t *s, const char *why)
{
    pc_log_ev(PC_WARN, "upgrade", NULL, "upgrade: refused the handover to pid %ld: %s; this process keeps "
           "serving", (long)s->sess->pid, why);
    int fd = s->sess->fd;
    s->sess->fd = -1;
    session_end(s);   /* its events go before the socket does */
    refuse_close(fd, why);
}

static void arm_timer(session_t *x, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(x->timer, &tv);
}

/* Sends sockets from x->next on; waits for EV_WRITE when the peer's
 * buffer is full; sends END after the last. */
static void session_send(gw_upgrade_server_t *s)
{
    session_t *x = s->sess;
    while (x->next < x->total) {
        gw_proc_sock_t *k = &x->socks[x->next];
        int fd = k->fd;
        size_t li = k->listener, si = k->sock, ns = k->nsocks;
        const char *text = k->text;
        if (fd < 0) {
            session_refuse(s, "a listening socket is closing (shutdown?)");
            return;
        }
        gw_upgrade_msg_t m = {.type = GW_UPGRADE_LISTENER, .listener = (uint16_t)li,
                              .sock = (uint16_t)si, .nsocks = (uint16_t)ns, .text = text,
                              .textlen = strlen(text)};
        ssize_t r = li > 0xffff || ns > 0xffff ? (errno = ERANGE, -1)
                                               : send_msg(x->fd, &m, fd, MSG_DONTWAIT);
        int e = errno;
        if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
            event_add(x->wev, NULL);   /* this one again when the peer reads */
            return;
        }
        close(fd);
        k->fd = -1;
        if (r < 0) {
            char why[160];
            snprintf(why, sizeof why, "sending socket %zu: %s", x->next, strerror(e));
            session_refuse(s, why);
            return;
        }
        x->next++;
    }
    if (send_simple(x->fd, GW_UPGRADE_END, (uint32_t)x->total, MSG_DONTWAIT) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            event_add(x->wev, NULL);
            return;
        }
        session_refuse(s, "sending END failed");
        return;
    }
    pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: %zu listening sockets sent to pid %ld; waiting for it to "
           "serve", x->total, (long)x->pid);
    x->state = S_READY;
    arm_timer(x, READY_TIMEOUT_MS);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_upgrade_server_t *s = arg;
    if (s->sess && s->sess->state == S_SENDING)
        session_send(s);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_upgrade_server_t *s = arg;
    session_refuse(s, s->sess->state == S_HELLO     ? "no HELLO within 5s"
                      : s->sess->state == S_SENDING ? "the peer did not take the sockets within 5s"
                                                    : "no READY within 120s after the sockets");
}

static void on_ready_msg(gw_upgrade_server_t *s, uint32_t pid)
{
    session_t *x = s->sess;
    pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: pid %lu serves on every listener now; draining as on "
           "SIGTERM", (unsigned long)pid);
    stop_listening(s);   /* the new process binds the upgrade socket after DONE */
    s->ready(s->arg, (pid_t)pid);
    if (send_simple(x->fd, GW_UPGRADE_DONE, (uint32_t)getpid(), MSG_DONTWAIT) < 0)
        pc_log_ev(PC_WARN, "upgrade", NULL, "upgrade: could not confirm to pid %lu: %s", (unsigned long)pid,
               strerror(errno));
    session_end(s);
}

static void on_session_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    gw_upgrade_server_t *s = arg;
    session_t *x = s->sess;
    unsigned char buf[GW_UPGRADE_MAX_MSG + 1];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        pc_log_ev(x->state == S_HELLO ? PC_WARN : PC_ERR, "upgrade", NULL, "upgrade: pid %ld went away before "
               "it was ready (%s); this process keeps serving", (long)x->pid,
               n < 0 ? strerror(errno) : "connection closed");
        session_end(s);
        return;
    }
    gw_upgrade_msg_t m;
    int type = (size_t)n > GW_UPGRADE_MAX_MSG ? -1 : gw_upgrade_parse(buf, (size_t)n, &m);
    if (type < 0) {
        session_refuse(s, "malformed message");
        return;
    }
    if (x->state == S_HELLO && type == GW_UPGRADE_HELLO) {
        x->state = S_SENDING;
        x->next = 0;
        ssize_t total = gw_proc_sockets(s->proc, &x->socks);
        if (total < 0) {
            session_refuse(s, "out of memory");
            return;
        }
        x->total = (size_t)total;
        arm_timer(x, HELLO_TIMEOUT_MS);   /* a peer that stops reading frees the slot */
        if (x->total == 0) {
            session_refuse(s, "no listening socket to hand over (shutting down?)");
            return;
        }
        pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: pid %ld asks for the listening sockets", (long)x->pid);
        session_send(s);
    } else if (x->state == S_READY && type == GW_UPGRADE_READY) {
        on_ready_msg(s, m.value);
    } else {
        session_refuse(s, "message out of order");
    }
}

/* Out of descriptors (or memory), accept4 leaves the connection queued and
 * the level-triggered event would fire again at once: as in the workers
 * (worker.c), the socket is not polled for limits.accept_backoff, each
 * failure is counted, an episode is logged when it begins and ends. */
static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_upgrade_server_t *s = arg;
    if (s->lev && event_add(s->lev, NULL) < 0)
        pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: cannot poll the upgrade socket %s again", s->addr);
}

static void accept_failed(gw_upgrade_server_t *s, int e)
{
    pc_count1(ACCEPT_ERRORS, gw_accept_reason(e));
    if (gw_accept_lost_one(e))
        return;
    gw_gen_t *g = gw_proc_current(s->proc);
    uint64_t ms = g->cfg->limits.accept_backoff_ms;
    gw_gen_release(g);
    if (s->accept_failures++ == 0)
        pc_log_ev(PC_WARN, "accept_paused", NULL, "upgrade socket %s: accept: %s; paused for %llums "
                  "at a time until it works again", s->addr, strerror(e), (unsigned long long)ms);
    event_del(s->lev);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (event_add(s->resume, &tv) < 0)
        pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: cannot arm the accept backoff timer; the upgrade "
                  "socket %s stays off", s->addr);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    gw_upgrade_server_t *s = arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR && e != ECONNABORTED)
            accept_failed(s, e);
        return;
    }
    if (s->accept_failures) {
        pc_log_ev(PC_INFO, "accept_resumed", NULL, "upgrade socket %s: accepting again after %u "
                  "failure(s)", s->addr, s->accept_failures);
        s->accept_failures = 0;
    }
    pid_t pid = 0;
    uid_t uid = (uid_t)-1;
    const cfg_runas_t *ra = &gw_proc_boot(s->proc)->runas;
    if (!server_peer_allowed(fd, ra, &pid, &uid)) {
        char who[128];
        allowed_text(ra, who, sizeof who);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int warn = s->refused_at == 0 || now.tv_sec - s->refused_at >= REFUSED_WARN_EVERY_S;
        if (warn)
            s->refused_at = now.tv_sec ? now.tv_sec : 1;
        pc_log_ev(warn ? PC_WARN : PC_DEBUG, "upgrade", NULL, "upgrade: refused a peer on %s (pid %ld, "
                  "uid %ld): only %s may take over this gateway%s", s->addr, (long)pid, (long)uid, who,
                  warn ? " (the next ones within a minute are logged at debug level only)" : "");
        refuse_close(fd, uid == geteuid() ? "refused: not the process this gateway started"
                                          : "refused: not the gateway's uid");
        return;
    }
    if (s->sess) {
        pc_log_ev(PC_WARN, "upgrade", NULL, "upgrade: refused pid %ld: a handover to pid %ld is in progress",
               (long)pid, (long)s->sess->pid);
        refuse_close(fd, "another upgrade is in progress");
        return;
    }
    session_t *x = calloc(1, sizeof(*x));
    if (x) {
        x->fd = fd;
        x->pid = pid;
        x->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_session_read, s);
        x->wev = event_new(s->base, fd, EV_WRITE, on_writable, s);
        x->timer = evtimer_new(s->base, on_timeout, s);
    }
    if (!x || !x->rev || !x->wev || !x->timer || event_add(x->rev, NULL) < 0) {
        if (x) {
            s->sess = x;
            session_end(s);
        } else {
            close(fd);
        }
        pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: out of memory for a handover");
        return;
    }
    s->sess = x;
    arm_timer(x, HELLO_TIMEOUT_MS);
}

/* Binds addr; a path whose socket nobody answers on is a leftover and is
 * replaced. Syscall-like. */
static int bind_upgrade(const char *addr, char *err, size_t errlen)
{
    struct sockaddr_un un;
    socklen_t len = unix_addr(addr, &un);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!len || fd < 0) {
        snprintf(err, errlen, "upgrade socket %s: %s", addr, len ? strerror(errno) : "bad address");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int r = bind(fd, (struct sockaddr *)&un, len);
    if (r < 0 && errno == EADDRINUSE && addr[0] == '/') {
        int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        struct stat st;
        if (probe >= 0 && connect(probe, (struct sockaddr *)&un, len) < 0 &&
            errno == ECONNREFUSED && lstat(addr, &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(addr);
            r = bind(fd, (struct sockaddr *)&un, len);
        } else {
            errno = EADDRINUSE;
        }
        if (probe >= 0)
            close(probe);
    }
    if (r < 0 || listen(fd, 4) < 0) {
        snprintf(err, errlen, "upgrade socket %s: %s%s", addr, strerror(errno),
                 errno == EADDRINUSE ? " (another gateway with the same upgrade_socket?)" : "");
        close(fd);
        return -1;
    }
    if (addr[0] == '/')
        chmod(addr, 0600);
    return fd;
}

gw_upgrade_server_t *gw_upgrade_server_start(struct event_base *base, const char *addr,
                                             gw_proc_t *proc, gw_upgrade_ready_fn ready,
                                             void *arg, char *err, size_t errlen)
{
    gw_upgrade_server_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->addr = strdup(addr))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base = base;
    s->proc = proc;
    s->ready = ready;
    s->arg = arg;
    s->lfd = bind_upgrade(addr, err, errlen);
    if (s->lfd < 0 ||
        !(s->lev = event_new(base, s->lfd, EV_READ | EV_PERSIST, on_accept, s)) ||
        !(s->resume = evtimer_new(base, on_accept_resume, s)) || event_add(s->lev, NULL) < 0) {
        if (s->lfd >= 0)
            snprintf(err, errlen, "upgrade socket %s: event setup failed", addr);
        gw_upgrade_server_free(s);
        return NULL;
    }
    return s;
}

void gw_upgrade_server_stop(gw_upgrade_server_t *s)
{
    if (s && !s->sess)
        stop_listening(s);   /* a handover in progress ends by itself */
}

void gw_upgrade_server_free(gw_upgrade_server_t *s)
{
    if (!s)
        return;
    session_end(s);
    stop_listening(s);
    free(s->addr);
    free(s);
}

/* ---------------------------------------------------------------- client */

struct gw_upgrade_client {
    int fd;
    char addr[CFG_UPGRADE_SOCKET_MAX + 1];
    uint64_t timeout_ms;
};

void gw_upgrade_client_free(gw_upgrade_client_t *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c);
}

/* Receives one message (and at most one fd) within the timeout. Returns its
 * type, or -1 with err. *fd is -1 unless one came. */
static int recv_one(gw_upgrade_client_t *c, gw_upgrade_msg_t *m, unsigned char *buf, int *fd,
                    char *err, size_t errlen)
{
    *fd = -1;
    struct pollfd p = {c->fd, POLLIN, 0};
    int pr = poll(&p, 1, (int)c->timeout_ms);
    if (pr <= 0) {
        snprintf(err, errlen, "the running gateway on %s did not answer within %llu ms", c->addr,
                 (unsigned long long)c->timeout_ms);
        return -1;
    }
    union {
        char b[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, GW_UPGRADE_MAX_MSG + 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                        .msg_controllen = sizeof ctl.b};
    ssize_t n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    int nfds = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); n >= 0 && h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
            if (nfds++ == 0)
                *fd = f;
            else
                close(f);   /* more than one: malformed, closed below */
        }
    }
    int type = -1;
    if (n < 0)
        snprintf(err, errlen, "reading from %s: %s", c->addr, strerror(errno));
    else if (n == 0)
        snprintf(err, errlen, "the running gateway on %s closed the connection", c->addr);
    else if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || nfds > 1 ||
             (type = gw_upgrade_parse(buf, (size_t)n, m)) < 0 ||
             (type == GW_UPGRADE_LISTENER) != (nfds == 1)) {
        snprintf(err, errlen, "the running gateway on %s sent a malformed message", c->addr);
        type = -1;
    }
    if (type < 0 && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    return type;
}

static gw_upgrade_client_t *fetch_fail(gw_upgrade_client_t *c)
{
    gw_upgrade_client_free(c);
    return NULL;
}

gw_upgrade_client_t *gw_upgrade_fetch(const char *addr, gw_proc_t *proc, const cfg_t *cfg,
                                      uint64_t timeout_ms, char *err, size_t errlen)
{
    struct sockaddr_un un;
    socklen_t len = unix_addr(addr, &un);
    gw_upgrade_client_t *c = calloc(1, sizeof(*c));
    if (!c || !len || strlen(addr) >= sizeof c->addr) {
        snprintf(err, errlen, "upgrade socket %s: %s", addr, c ? "bad address" : "out of memory");
        free(c);
        return NULL;
    }
    memcpy(c->addr, addr, strlen(addr) + 1);
    c->timeout_ms = timeout_ms;
    c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)((timeout_ms % 1000) * 1000)};
    if (c->fd >= 0)
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&un, len) < 0) {
        snprintf(err, errlen, "--upgrade: no running gateway answers on the upgrade socket %s "
                 "(%s); start without --upgrade, or set upgrade_socket to the running "
                 "gateway's", addr, strerror(errno));
        return fetch_fail(c);
    }
    pid_t pid = 0;
    uid_t uid = 0;
    if (!peer_allowed(c->fd, &cfg->runas, &pid, &uid)) {
        char who[128];
        allowed_text(&cfg->runas, who, sizeof who);
        snprintf(err, errlen, "--upgrade: the process on %s (pid %ld) runs as uid %ld, not as "
                 "%s: refused", addr, (long)pid, (long)uid, who);
        return fetch_fail(c);
    }
    if (send_simple(c->fd, GW_UPGRADE_HELLO, (uint32_t)getpid(), 0) < 0) {
        snprintf(err, errlen, "--upgrade: sending to %s: %s", addr, strerror(errno));
        return fetch_fail(c);
    }
    unsigned char buf[GW_UPGRADE_MAX_MSG + 1];
    size_t got = 0, adopted = 0, nhttp = 0;
    for (;;) {
        gw_upgrade_msg_t m;
        int fd;
        char why[256];
        int type = recv_one(c, &m, buf, &fd, why, sizeof why);
        if (type < 0 || type == GW_UPGRADE_ERROR || (type != GW_UPGRADE_LISTENER &&
                                                      type != GW_UPGRADE_END)) {
            if (type == GW_UPGRADE_ERROR)
                snprintf(why, sizeof why, "the running gateway (pid %ld) refused: %.*s",
                         (long)pid, (int)m.textlen, m.text);
            else if (type > 0)
                snprintf(why, sizeof why, "unexpected message %d from %s", type, addr);
            snprintf(err, errlen, "--upgrade: %s", why);
            return fetch_fail(c);
        }
        if (type == GW_UPGRADE_END) {
            if (m.value != got) {
                snprintf(err, errlen, "--upgrade: %s announced %lu sockets, sent %zu", addr,
                         (unsigned long)m.value, got);
                return fetch_fail(c);
            }
            break;
        }
        got++;
        if (m.listener >= GW_UPGRADE_HTTP_ADMIN) {
            nhttp++;
            int kind = gw_proc_adopt_http(proc, cfg, fd, why, sizeof why);
            if (kind < 0)
                pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: the %s listener %.*s of the running gateway: "
                          "%s; closed (it stops when the old process drains)",
                          m.listener == GW_UPGRADE_HTTP_ADMIN ? "admin" : "metrics",
                          (int)m.textlen, m.text, why);
            else
                pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: took over the %s listener %.*s",
                          kind == GW_HTTP_ADMIN ? "admin" : "metrics", (int)m.textlen, m.text);
        } else if (gw_proc_adopt(proc, cfg, fd, why, sizeof why) < 0) {
            pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: listener %.*s of the running gateway: %s; closed (it "
                   "stops when the old process drains)", (int)m.textlen, m.text, why);
        } else {
            adopted++;
        }
    }
    pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: received %zu listening sockets from pid %ld (%zu on this "
           "configuration's listeners)", got - nhttp, (long)pid, adopted);
    return c;
}

int gw_upgrade_ready(gw_upgrade_client_t *c, char *err, size_t errlen)
{
    int rc = -1;
    unsigned char buf[GW_UPGRADE_MAX_MSG + 1];
    gw_upgrade_msg_t m;
    int fd;
    char why[256] = "";
    if (send_simple(c->fd, GW_UPGRADE_READY, (uint32_t)getpid(), 0) < 0)
        snprintf(err, errlen, "upgrade: sending READY to %s: %s", c->addr, strerror(errno));
    else if (recv_one(c, &m, buf, &fd, why, sizeof why) != GW_UPGRADE_DONE)
        snprintf(err, errlen, "upgrade: no confirmation from the old process: %s",
                 why[0] ? why : "unexpected message");
    else
        rc = 0;
    gw_upgrade_client_free(c);
    return rc;
}
