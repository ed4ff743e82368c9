/* gateway/runtime: the generation builder, generation lifetimes, the
 * process state that outlives them, and what a reload changed. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../issuance/iss.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "metrics.h"

struct gw_listener {
    gw_proc_t *proc;
    char *text;
    cfg_addr_t addr;        /* addr and addrlen (text is the field above) */
    int *fd;                /* per slot; -1 once its worker closed it */
    int nfd;                /* slots: at least nworkers (more after an upgrade) */
    int nworkers;           /* slot j is polled by worker j % nworkers */
    int refs;               /* generations naming it; under proc->mu */
};

/* A listening socket received from the previous process (binary upgrade),
 * until a listener of its address takes it. */
typedef struct {
    int fd;
    struct sockaddr_storage addr;
} gw_inherited_t;

struct gw_file {
    char *path;
    unsigned char sha[32];
    int readable;
};

struct gw_proc {
    pthread_mutex_t mu;     /* current, listeners, stats */
    cfg_t *boot;            /* the configuration of the start (restart-only keys) */
    pol_mirror_t *mirror;
    pol_rl_t *rl;
    pol_connlimit_t *connlimit;
    tls_store_t *store;     /* TLS sessions and verified chains, shared by every generation */
    gw_gen_t *current;
    gw_listener_t **listeners;   /* every listener some generation names */
    size_t nlisteners, caplisteners;
    unsigned live;               /* generations not yet freed */
    uint64_t generation, reloads, reload_failures;
    int have_last, last_ok;
    time_t last_at;
    double last_build_ms;
    uint32_t nconns;        /* atomic */
    uint64_t accepted;      /* atomic */
    gw_inherited_t *inherited;   /* gw_proc_adopt; main thread only */
    size_t ninherited, capinherited;
    int defer_listen;            /* upgrade: new sockets are bound, listen() comes later */
    int *deferred;               /* those sockets (owned by their listeners) */
    size_t ndeferred;
    int http_fd[GW_HTTP_KINDS];  /* the admin and metrics listeners' sockets (theirs); under mu */
    int http_inherited[GW_HTTP_KINDS];  /* received from the previous process; main thread */
    int http_defer;              /* upgrade: they accept only from the takeover on */
    int phase;                   /* enum gw_phase; atomic */
    double started;              /* Unix time of gw_proc_new */
};

void gw_errors_add(cfg_errors_t *errs, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (errs->n == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 8;
        char **m = realloc(errs->msgs, cap * sizeof *m);
        if (!m)
            return;
        errs->msgs = m;
        errs->cap = cap;
    }
    if ((errs->msgs[errs->n] = strdup(buf)) != NULL)
        errs->n++;
}

/* ---- the process ---- */

gw_proc_t *gw_proc_new(void)
{
    gw_proc_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (!(p->store = tls_store_new())) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    for (int k = 0; k < GW_HTTP_KINDS; k++)
        p->http_fd[k] = p->http_inherited[k] = -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    p->started = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    return p;
}

void gw_proc_set_phase(gw_proc_t *p, int phase)
{
    __atomic_store_n(&p->phase, phase, __ATOMIC_RELEASE);
}

int gw_proc_phase(gw_proc_t *p)
{
    return __atomic_load_n(&p->phase, __ATOMIC_ACQUIRE);
}

double gw_proc_started(const gw_proc_t *p)
{
    return p->started;
}

size_t gw_proc_open_listeners(gw_proc_t *p)
{
    size_t open = 0;
    pthread_mutex_lock(&p->mu);
    const gw_gen_t *g = p->current;
    for (size_t i = 0; g && g->listeners && i < g->cfg->nlisteners; i++) {
        const gw_listener_t *l = g->listeners[i];
        int any = 0;
        for (int k = 0; l && k < l->nfd && !any; k++)
            any = l->fd[k] >= 0;
        open += (size_t)any;
    }
    pthread_mutex_unlock(&p->mu);
    return open;
}

void gw_proc_free(gw_proc_t *p)
{
    if (!p)
        return;
    gw_gen_release(p->current);
    tls_store_free(p->store);   /* after the last generation's context */
    pol_rl_free(p->rl);
    pol_connlimit_free(p->connlimit);
    free(p->listeners);   /* each freed with its last generation */
    gw_proc_drop_inherited(p);
    for (int k = 0; k < GW_HTTP_KINDS; k++)
        if (p->http_inherited[k] >= 0)
            close(p->http_inherited[k]);
    free(p->inherited);
    free(p->deferred);
    cfg_free(p->boot);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

const cfg_t *gw_proc_boot(const gw_proc_t *p) { return p->boot; }
pol_mirror_t *gw_proc_mirror(gw_proc_t *p) { return p->mirror; }
uint32_t *gw_proc_nconns(gw_proc_t *p) { return &p->nconns; }
uint64_t *gw_proc_accepted(gw_proc_t *p) { return &p->accepted; }

void gw_proc_set_mirror(gw_proc_t *p, pol_mirror_t *m)
{
    p->mirror = m;
    if (p->current)
        tls_ctx_set_mirror(p->current->tls, m);
}

gw_gen_t *gw_proc_current(gw_proc_t *p)
{
    pthread_mutex_lock(&p->mu);
    gw_gen_t *g = gw_gen_acquire(p->current);
    pthread_mutex_unlock(&p->mu);
    return g;
}

gw_gen_t *gw_proc_publish(gw_proc_t *p, gw_gen_t *gen)
{
    pthread_mutex_lock(&p->mu);
    gen->number = ++p->generation;
    gw_gen_t *old = p->current;
    p->current = gen;
    pthread_mutex_unlock(&p->mu);
    /* the newest sizes; a verify cache that cannot grow keeps its size */
    if (tls_store_configure(p->store, gen->cfg) < 0)
        pc_log_ev(PC_WARN, "config_warning", NULL, "tls.verify_cache: out of memory for %u entries; keeping the "
               "previous size", gen->cfg->tls.verify_cache_size);
    return old;
}

unsigned gw_proc_live_generations(gw_proc_t *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned n = p->live;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void gw_proc_reload_stats(gw_proc_t *p, gw_reload_stats_t *st)
{
    pthread_mutex_lock(&p->mu);
    *st = (gw_reload_stats_t){.generation = p->generation, .reloads = p->reloads,
                              .reload_failures = p->reload_failures, .live = p->live,
                              .have_last = p->have_last, .last_ok = p->last_ok,
                              .last_at = p->last_at, .last_build_ms = p->last_build_ms};
    pthread_mutex_unlock(&p->mu);
}

void gw_proc_note_reload(gw_proc_t *p, int ok, double build_ms)
{
    pc_count1(RELOADS, ok ? PC_RELOAD_OK : PC_RELOAD_FAILED);
    pthread_mutex_lock(&p->mu);
    if (ok)
        p->reloads++;
    else
        p->reload_failures++;
    p->have_last = 1;
    p->last_ok = ok;
    p->last_at = time(NULL);
    p->last_build_ms = build_ms;
    pthread_mutex_unlock(&p->mu);
}

/* ---- listeners ---- */

#define GW_LISTEN_BACKLOG 1024

/* Syscall-like: a bound (and with listen_now, listening) non-blocking
 * socket, or -1 with err. */
static int gw_listen_socket(const cfg_addr_t *a, int listen_now, char *err, size_t errlen)
{
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket for %s: %s", a->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* one socket per worker: the kernel spreads new connections over them */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* TLS clients speak first: wake us when the ClientHello is there */
    int defer = 5;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0 ||
        (listen_now && listen(fd, GW_LISTEN_BACKLOG) < 0)) {
        snprintf(err, errlen, "listen on %s: %s", a->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

const char *gw_admin_token(const cfg_admin_t *ac, char *err, size_t errlen)
{
    const char *tok = ac->token_env ? getenv(ac->token_env) : NULL;
    if (!tok || !*tok) {
        snprintf(err, errlen, "admin.token_env: the environment variable %s is unset or empty; "
                 "set it to the admin bearer token", ac->token_env ? ac->token_env : "(none)");
        return NULL;
    }
    return tok;
}

int gw_listener_fd(gw_listener_t *l, int slot)
{
    return slot >= 0 && slot < l->nfd ? l->fd[slot] : -1;
}

int gw_listener_slots(const gw_listener_t *l)
{
    return l->nfd;
}

int gw_listener_workers(const gw_listener_t *l)
{
    return l->nworkers;
}

int gw_listen_probe(const cfg_addr_t *a, char *err, size_t errlen)
{
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket for %s: %s", a->text, strerror(errno));
        return -1;
    }
    int one = 1, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* SO_REUSEADDR lets the bind pass over TIME_WAIT and accepted
     * connections of an old process, never over a listening socket */
    if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0) {
        if (errno == EADDRINUSE)
            snprintf(err, errlen, "listen on %s: another process is already listening there "
                     "(a second gateway?); to replace a running gateway without dropping "
                     "connections, start the new one with --upgrade", a->text);
        else
            snprintf(err, errlen, "listen on %s: %s", a->text, strerror(errno));
        rc = -1;
    }
    close(fd);
    return rc;
}

static int same_addr(const struct sockaddr_storage *a, const cfg_addr_t *b)
{
    if (a->ss_family != b->addr.ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)&b->addr;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)&b->addr;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

/* Boolean-like: fd is a listening TCP socket (its address into *ss). */
static int listening_tcp(int fd, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof(*ss);
    int type = 0, acc = 0;
    socklen_t il = sizeof(int), al = sizeof(int);
    memset(ss, 0, sizeof(*ss));
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &il) == 0 && type == SOCK_STREAM &&
           getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == 0 && acc &&
           getsockname(fd, (struct sockaddr *)ss, &len) == 0 &&
           (ss->ss_family == AF_INET || ss->ss_family == AF_INET6);
}

int gw_proc_adopt(gw_proc_t *p, const cfg_t *cfg, int fd, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (!listening_tcp(fd, &ss)) {
        snprintf(err, errlen, "not a listening TCP socket");
        close(fd);
        return -1;
    }
    size_t i = 0;
    while (i < cfg->nlisteners && !same_addr(&ss, &cfg->listeners[i].addr))
        i++;
    if (i == cfg->nlisteners) {
        snprintf(err, errlen, "its address is not among the configured listeners");
        close(fd);
        return -1;
    }
    if (p->ninherited == p->capinherited) {
        size_t cap = p->capinherited ? p->capinherited * 2 : 16;
        gw_inherited_t *n = realloc(p->inherited, cap * sizeof *n);
        if (!n) {
            snprintf(err, errlen, "out of memory");
            close(fd);
            return -1;
        }
        p->inherited = n;
        p->capinherited = cap;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    p->inherited[p->ninherited].fd = fd;
    p->inherited[p->ninherited++].addr = ss;
    return (int)i;
}

int gw_proc_adopt_http(gw_proc_t *p, const cfg_t *cfg, int fd, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (!listening_tcp(fd, &ss)) {
        snprintf(err, errlen, "not a listening TCP socket");
        close(fd);
        return -1;
    }
    int kind = cfg->admin.enabled && same_addr(&ss, &cfg->admin.listen)        ? GW_HTTP_ADMIN
               : cfg->metrics.enabled && same_addr(&ss, &cfg->metrics.address) ? GW_HTTP_METRICS
                                                                               : -1;
    if (kind < 0 || p->http_inherited[kind] >= 0) {
        snprintf(err, errlen, "its address is neither admin.listen nor metrics.address here");
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    p->http_inherited[kind] = fd;
    return kind;
}

int gw_proc_take_http(gw_proc_t *p, int kind, int *deferred)
{
    int fd = p->http_inherited[kind];
    p->http_inherited[kind] = -1;
    *deferred = p->http_defer;
    return fd;
}

void gw_proc_set_http_fd(gw_proc_t *p, int kind, int fd)
{
    pthread_mutex_lock(&p->mu);
    p->http_fd[kind] = fd;
    pthread_mutex_unlock(&p->mu);
}

void gw_proc_drop_inherited(gw_proc_t *p)
{
    for (size_t i = 0; i < p->ninherited; i++)
        close(p->inherited[i].fd);
    p->ninherited = 0;
}

/* The inherited sockets of address a, moved into out (room for all of
 * them); how many. */
static int take_inherited(gw_proc_t *p, const cfg_addr_t *a, int *out)
{
    int n = 0;
    size_t k = 0;
    for (size_t i = 0; i < p->ninherited; i++) {
        if (same_addr(&p->inherited[i].addr, a))
            out[n++] = p->inherited[i].fd;
        else
            p->inherited[k++] = p->inherited[i];
    }
    p->ninherited = k;
    return n;
}

ssize_t gw_proc_sockets(gw_proc_t *p, gw_proc_sock_t **out)
{
    size_t n = 0, k = 0;
    *out = NULL;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; p->current && i < p->current->cfg->nlisteners; i++)
        n += (size_t)p->current->listeners[i]->nfd;
    size_t nhttp = 0;
    for (int kind = 0; n && kind < GW_HTTP_KINDS; kind++)
        nhttp += p->http_fd[kind] >= 0;
    n += nhttp;
    gw_proc_sock_t *v = n ? calloc(n, sizeof *v) : NULL;
    for (size_t i = 0; v && i < p->current->cfg->nlisteners; i++) {
        gw_listener_t *l = p->current->listeners[i];
        for (int j = 0; j < l->nfd; j++, k++) {
            v[k].fd = l->fd[j] >= 0 ? fcntl(l->fd[j], F_DUPFD_CLOEXEC, 0) : -1;
            v[k].listener = i;
            v[k].sock = (size_t)j;
            v[k].nsocks = (size_t)l->nfd;
            snprintf(v[k].text, sizeof v[k].text, "%s", p->current->cfg->listeners[i].addr.text);
        }
    }
    for (int kind = 0; v && kind < GW_HTTP_KINDS; kind++) {
        if (p->http_fd[kind] < 0)
            continue;
        const cfg_addr_t *a = kind == GW_HTTP_ADMIN ? &p->boot->admin.listen : &p->boot->metrics.address;
        v[k].fd = fcntl(p->http_fd[kind], F_DUPFD_CLOEXEC, 0);
        v[k].listener = kind == GW_HTTP_ADMIN ? GW_PROC_SOCK_ADMIN : GW_PROC_SOCK_METRICS;
        v[k].sock = 0;
        v[k].nsocks = 1;
        snprintf(v[k].text, sizeof v[k].text, "%s", a->text ? a->text : "?");
        k++;
    }
    pthread_mutex_unlock(&p->mu);
    if (n && !v)
        return -1;
    *out = v;
    return (ssize_t)n;
}

const char *gw_listener_text(const gw_listener_t *l)
{
    return l->text;
}

void gw_listener_close_fd(gw_listener_t *l, int worker)
{
    pthread_mutex_lock(&l->proc->mu);
    if (worker >= 0 && worker < l->nfd && l->fd[worker] >= 0) {
        close(l->fd[worker]);
        l->fd[worker] = -1;
    }
    pthread_mutex_unlock(&l->proc->mu);
}

static void listener_free(gw_listener_t *l)
{
    for (int i = 0; i < l->nfd; i++)
        if (l->fd[i] >= 0)
            close(l->fd[i]);
    free(l->fd);
    free(l->text);
    free(l);
}

/* A new listener: the sockets of its address received from the previous
 * process (gw_proc_adopt), and bound ones up to one per worker; an address
 * nothing was received for is probed first (gw_listen_probe). NULL with
 * the reason in errs. */
static int defer_push(gw_proc_t *p, int fd)
{
    int *v = realloc(p->deferred, (p->ndeferred + 1) * sizeof *v);
    if (!v)
        return -1;
    p->deferred = v;
    p->deferred[p->ndeferred++] = fd;
    return 0;
}

void gw_proc_defer_listen(gw_proc_t *p)
{
    p->defer_listen = 1;
    p->http_defer = 1;
}

int gw_proc_listen_deferred(gw_proc_t *p, char *err, size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < p->ndeferred && rc == 0; i++)
        if (listen(p->deferred[i], GW_LISTEN_BACKLOG) < 0) {
            snprintf(err, errlen, "listen: %s", strerror(errno));
            rc = -1;
        }
    free(p->deferred);
    p->deferred = NULL;
    p->ndeferred = 0;
    p->defer_listen = 0;
    return rc;
}

static gw_listener_t *listener_open(gw_proc_t *p, const cfg_addr_t *a, int nworkers,
                                    cfg_errors_t *errs, const char *path)
{
    gw_listener_t *l = calloc(1, sizeof *l);
    size_t room = (size_t)nworkers + p->ninherited;
    if (!l || !(l->text = strdup(a->text)) || !(l->fd = malloc(room * sizeof(int)))) {
        gw_errors_add(errs, "%s: out of memory", path);
        if (l) {
            free(l->text);
            free(l);
        }
        return NULL;
    }
    l->proc = p;
    l->addr.addr = a->addr;
    l->addr.addrlen = a->addrlen;
    l->nworkers = nworkers;
    l->nfd = take_inherited(p, a, l->fd);
    char err[512];
    if (l->nfd == 0 && gw_listen_probe(a, err, sizeof err) < 0) {
        gw_errors_add(errs, "%s: %s", path, err);
        listener_free(l);
        return NULL;
    }
    while (l->nfd < nworkers) {
        if ((l->fd[l->nfd] = gw_listen_socket(a, !p->defer_listen, err, sizeof err)) < 0 ||
            (p->defer_listen && defer_push(p, l->fd[l->nfd]) < 0)) {
            if (l->fd[l->nfd] >= 0)
                close(l->fd[l->nfd]);
            gw_errors_add(errs, "%s: %s", path, l->fd[l->nfd] >= 0 ? "out of memory" : err);
            listener_free(l);
            return NULL;
        }
        l->nfd++;
    }
    return l;
}

/* The listener objects of cfg: the current generation's for an address it
 * already has, new sockets for the others. 0, or -1 with errs (nothing
 * kept open). Called on the main thread, the only one that adds them. */
static int listeners_attach(gw_proc_t *p, gw_gen_t *g, cfg_errors_t *errs)
{
    const cfg_t *cfg = g->cfg;
    int nworkers = p->boot ? p->boot->workers : cfg->workers;
    g->listeners = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof *g->listeners);
    if (!g->listeners) {
        gw_errors_add(errs, "%s: out of memory", cfg->path);
        return -1;
    }
    gw_gen_t *cur = p->current;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        gw_listener_t *l = NULL;
        for (size_t k = 0; cur && k < cur->cfg->nlisteners && !l; k++)
            if (same_addr(&cur->listeners[k]->addr.addr, &cfg->listeners[i].addr))
                l = cur->listeners[k];   /* the same address, however it is written */
        if (l) {
            pthread_mutex_lock(&p->mu);
            l->refs++;
            pthread_mutex_unlock(&p->mu);
        } else if (!(l = listener_open(p, &cfg->listeners[i].addr, nworkers, errs, cfg->path))) {
            return -1;   /* gen_free releases those attached so far */
        } else {
            l->refs = 1;
        }
        g->listeners[i] = l;
    }
    return 0;
}

static void listeners_release(gw_gen_t *g)
{
    if (!g || !g->listeners)
        return;
    gw_proc_t *p = g->proc;
    for (size_t i = 0; i < g->cfg->nlisteners && g->listeners[i]; i++) {
        gw_listener_t *l = g->listeners[i];
        pthread_mutex_lock(&p->mu);
        int last = --l->refs == 0;
        pthread_mutex_unlock(&p->mu);
        if (last)
            listener_free(l);
    }
    free(g->listeners);
    g->listeners = NULL;
}

void gw_gen_unlisten(gw_gen_t *g)
{
    listeners_release(g);
}

/* ---- the files a generation is built from ---- */

static int file_digest(const char *path, unsigned char sha[32])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[16384];
    size_t n;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(md, buf, n) == 1;
    unsigned int len = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, sha, &len) == 1 && len == 32;
    EVP_MD_CTX_free(md);
    fclose(f);
    OPENSSL_cleanse(buf, sizeof buf);
    return ok ? 0 : -1;
}

static void add_file(gw_gen_t *g, size_t *cap, const char *path)
{
    if (!path || !*path)
        return;
    for (size_t i = 0; i < g->nfiles; i++)
        if (strcmp(g->files[i].path, path) == 0)
            return;
    if (g->nfiles == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        gw_file_t *f = realloc(g->files, nc * sizeof *f);
        if (!f)
            return;
        g->files = f;
        *cap = nc;
    }
    gw_file_t *f = &g->files[g->nfiles];
    if (!(f->path = strdup(path)))
        return;
    f->readable = file_digest(path, f->sha) == 0;
    g->nfiles++;
}

/* Every file the configuration names, in the order it names them. */
static void collect_files(gw_gen_t *g)
{
    const cfg_t *cfg = g->cfg;
    size_t cap = 0;
    add_file(g, &cap, cfg->path);
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        add_file(g, &cap, cfg->tls.certs[i].cert_file);
        add_file(g, &cap, cfg->tls.certs[i].key_file);
    }
    for (size_t i = 0; i < cfg->tls.nclasses; i++)
        add_file(g, &cap, cfg->tls.classes[i].ca_file);
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].jwt)
            add_file(g, &cap, cfg->routes[i].jwt->jwks_file);
    const cfg_issuance_t *is = cfg->issuance;
    if (!is)
        return;
    add_file(g, &cap, is->ca_cert_file);
    add_file(g, &cap, is->ca_key_file);
    add_file(g, &cap, is->chain_file);
    for (size_t i = 0; i < is->nplatforms; i++)
        if (is->platforms[i].provider == CFG_ATTEST_PLAY_INTEGRITY) {
            add_file(g, &cap, is->platforms[i].play.decryption_key_file);
            add_file(g, &cap, is->platforms[i].play.verification_key_file);
        }
}

static const gw_file_t *find_file(const gw_gen_t *g, const char *path)
{
    for (size_t i = 0; i < g->nfiles; i++)
        if (strcmp(g->files[i].path, path) == 0)
            return &g->files[i];
    return NULL;
}

/* ---- the builder ---- */

/* The JWKS stores (one per distinct file) and the token-claim header names. */
static void jwks_setup(gw_gen_t *g, cfg_errors_t *errs)
{
    const cfg_t *cfg = g->cfg;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const cfg_jwt_t *j = cfg->routes[i].jwt;
        if (!j)
            continue;
        size_t k = 0;
        while (k < i && !(cfg->routes[k].jwt && strcmp(cfg->routes[k].jwt->jwks_file, j->jwks_file) == 0))
            k++;
        if (k < i) {
            g->jwks[i] = g->jwks[k];   /* NULL too, if that file failed: reported once */
        } else {
            char e[256];
            if (!(g->jwks[i] = pol_jwks_store_new(j->jwks_file, e, sizeof(e))))
                gw_errors_add(errs, "%s: routes[%zu].jwt.jwks_file: %s", cfg->path, i, e);
            else
                g->jwks_files[g->njwks_files++] = g->jwks[i];
        }
        /* a claim header is the gateway's on every route: stripped everywhere */
        for (k = 0; k < j->nclaims; k++) {
            size_t m = 0;
            while (m < g->nclaim_headers && strcasecmp(g->claim_headers[m], j->claims[k].header))
                m++;
            if (m == g->nclaim_headers)
                g->claim_headers[g->nclaim_headers++] = j->claims[k].header;
        }
    }
}

typedef struct {
    cfg_errors_t *errs;
    const char *path;
} iss_report_t;

static void iss_report(void *arg, const char *msg)
{
    iss_report_t *r = arg;
    gw_errors_add(r->errs, "%s: %s", r->path, msg);
}

/* The issuance module (its CA and attesters) and its internal routes. */
static void issuance_setup(gw_gen_t *g, cfg_errors_t *errs)
{
    iss_report_t rep = {errs, g->cfg->path};
    if (!g->cfg->issuance)
        return;
    if ((g->iss = iss_gen_load(g->cfg, iss_report, &rep)) && iss_gen_routes(g->iss, gw_iroutes_add, g) < 0)
        gw_errors_add(errs, "%s: out of memory", g->cfg->path);
}

/* The request-policy state: JWKS files, claim headers, header names. */
static void policy_setup(gw_gen_t *g, cfg_errors_t *errs)
{
    const cfg_t *cfg = g->cfg;
    size_t nr = cfg->nroutes ? cfg->nroutes : 1, nclaims = 0;
    for (size_t i = 0; i < cfg->nroutes; i++)
        nclaims += cfg->routes[i].jwt ? cfg->routes[i].jwt->nclaims : 0;
    g->jwks = calloc(nr, sizeof(*g->jwks));
    g->jwks_files = calloc(nr, sizeof(*g->jwks_files));
    g->claim_headers = calloc(nclaims ? nclaims : 1, sizeof(char *));
    if (!g->jwks || !g->jwks_files || !g->claim_headers) {
        gw_errors_add(errs, "%s: out of memory", cfg->path);
        return;
    }
    jwks_setup(g, errs);
    g->hnames = ups_names_new(&cfg->identity, (const char *const *)g->claim_headers,
                              g->nclaim_headers, &cfg->http);
    if (!g->hnames)
        gw_errors_add(errs, "%s: out of memory", cfg->path);
}

/* The process-wide limiters a configuration needs, made on first need and
 * kept for the life of the process. */
static void limiters_setup(gw_proc_t *p, gw_gen_t *g, cfg_errors_t *errs)
{
    const cfg_t *cfg = g->cfg;
    const cfg_connlimits_t *cl = &cfg->connection_limits;
    if (cfg->nrate_limits && !p->rl && !(p->rl = pol_rl_new(0)))
        gw_errors_add(errs, "%s: cannot allocate the rate limiter", cfg->path);
    if ((cl->per_ip_count || cl->per_ip_concurrent) && !p->connlimit &&
        !(p->connlimit = pol_connlimit_new(0)))
        gw_errors_add(errs, "%s: cannot allocate the connection limiter", cfg->path);
    g->rl = cfg->nrate_limits ? p->rl : NULL;
    g->connlimit = cl->per_ip_count || cl->per_ip_concurrent ? p->connlimit : NULL;
}

static int str_diff(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* One error for a restart-only key that differs ("changed" with both
 * values when they are short, e.g. numbers). */
static void restart_key(cfg_errors_t *errs, const char *file, const char *key, int differs,
                        const char *was, const char *now)
{
    if (!differs)
        return;
    if (was && now)
        gw_errors_add(errs, "%s: %s: changed from %s to %s; this key needs a restart (the reload "
                      "was refused)", file, key, was, now);
    else
        gw_errors_add(errs, "%s: %s: changed; this key needs a restart (the reload was refused)",
                      file, key);
}

static const char *num(char *buf, size_t len, uint64_t v)
{
    snprintf(buf, len, "%llu", (unsigned long long)v);
    return buf;
}

/* Keys whose change a reload cannot apply (the workers, the revocation
 * sync and its Redis connections, the admin listener): one error each. */
static void restart_only(const cfg_t *run, const cfg_t *next, cfg_errors_t *errs)
{
    const char *f = next->path;
    char a[32], b[32], x[300], y[300];
    restart_key(errs, f, "workers", run->workers != next->workers, num(a, sizeof a, (uint64_t)run->workers),
                num(b, sizeof b, (uint64_t)next->workers));
    restart_key(errs, f, "logging.buffer", run->logging.buffer != next->logging.buffer,
                num(a, sizeof a, run->logging.buffer), num(b, sizeof b, next->logging.buffer));
    const cfg_redis_t *r = &run->redis, *n = &next->redis;
    snprintf(x, sizeof x, "%s:%d", r->host, r->port);
    snprintf(y, sizeof y, "%s:%d", n->host, n->port);
    restart_key(errs, f, "redis.address", strcmp(x, y) != 0, x, y);
    restart_key(errs, f, "redis.password_env", str_diff(r->password_env, n->password_env), NULL, NULL);
    restart_key(errs, f, "redis.db", r->db != n->db, num(a, sizeof a, (uint64_t)r->db),
                num(b, sizeof b, (uint64_t)n->db));
    restart_key(errs, f, "redis.connect_timeout", r->connect_timeout_ms != n->connect_timeout_ms, NULL, NULL);
    restart_key(errs, f, "redis.command_timeout", r->command_timeout_ms != n->command_timeout_ms, NULL, NULL);
    const cfg_revocation_t *v = &run->revocation, *w = &next->revocation;
    restart_key(errs, f, "revocation.key", str_diff(v->key, w->key), v->key, w->key);
    restart_key(errs, f, "revocation.channel", str_diff(v->channel, w->channel), v->channel, w->channel);
    restart_key(errs, f, "revocation.resync_interval", v->resync_interval_ms != w->resync_interval_ms,
                NULL, NULL);
    restart_key(errs, f, "revocation.on_redis_unavailable", v->fail_closed != w->fail_closed,
                v->fail_closed ? "fail_closed" : "serve_stale", w->fail_closed ? "fail_closed" : "serve_stale");
    restart_key(errs, f, "revocation.max_staleness", v->max_staleness_ms != w->max_staleness_ms, NULL, NULL);
    restart_key(errs, f, "user", str_diff(run->runas.user, next->runas.user), run->runas.user,
                next->runas.user);   /* the process dropped to it at the start */
    restart_key(errs, f, "group", str_diff(run->runas.group, next->runas.group), run->runas.group,
                next->runas.group);
    const cfg_metrics_t *mr = &run->metrics, *mn = &next->metrics;
    restart_key(errs, f, "metrics", mr->enabled != mn->enabled, mr->enabled ? "present" : "absent",
                mn->enabled ? "present" : "absent");
    if (mr->enabled && mn->enabled) {
        restart_key(errs, f, "metrics.address", str_diff(mr->address.text, mn->address.text),
                    mr->address.text, mn->address.text);
        restart_key(errs, f, "metrics.token_env", str_diff(mr->token_env, mn->token_env), NULL, NULL);
    }
    const cfg_admin_t *p = &run->admin, *q = &next->admin;
    restart_key(errs, f, "admin", p->enabled != q->enabled, p->enabled ? "present" : "absent",
                q->enabled ? "present" : "absent");
    if (!p->enabled || !q->enabled)
        return;
    restart_key(errs, f, "admin.listen", str_diff(p->listen.text, q->listen.text), p->listen.text,
                q->listen.text);
    restart_key(errs, f, "admin.token_env", str_diff(p->token_env, q->token_env), NULL, NULL);
    restart_key(errs, f, "admin.max_body_bytes", p->max_body_bytes != q->max_body_bytes, NULL, NULL);
    restart_key(errs, f, "admin.allow_remote", p->allow_remote != q->allow_remote, NULL, NULL);
    /* resolver: the control loop's evdns_base is made once (base/dns.h) */
    const pc_dns_conf_t *ra = &run->resolver, *rb = &next->resolver;
    int ns_diff = ra->nnameservers != rb->nnameservers;
    for (size_t i = 0; !ns_diff && i < ra->nnameservers; i++)
        ns_diff = ra->nameservers[i].len != rb->nameservers[i].len ||
                  memcmp(&ra->nameservers[i].sa, &rb->nameservers[i].sa, ra->nameservers[i].len);
    restart_key(errs, f, "resolver.nameservers", ns_diff, NULL, NULL);
    restart_key(errs, f, "resolver.hosts_file", str_diff(ra->hosts_file, rb->hosts_file), NULL, NULL);
    restart_key(errs, f, "resolver.interval", ra->interval_ms != rb->interval_ms, NULL, NULL);
    restart_key(errs, f, "resolver.timeout", ra->timeout_ms != rb->timeout_ms, NULL, NULL);
    restart_key(errs, f, "resolver.attempts", ra->attempts != rb->attempts,
                num(a, sizeof a, ra->attempts), num(b, sizeof b, rb->attempts));
}

static void gen_free(gw_gen_t *g)
{
    iss_gen_free(g->iss);
    free(g->iroutes);
    for (size_t i = 0; i < g->njwks_files; i++)
        pol_jwks_store_free(g->jwks_files[i]);
    free(g->jwks_files);
    free(g->jwks);
    free(g->claim_headers);
    ups_names_free(g->hnames);
    ups_health_free(g->health);
    tls_ctx_free(g->tls);
    listeners_release(g);
    for (size_t i = 0; i < g->nfiles; i++)
        free(g->files[i].path);
    free(g->files);
    if (g->proc) {
        pthread_mutex_lock(&g->proc->mu);
        g->proc->live--;
        int boot = g->cfg == g->proc->boot;
        pthread_mutex_unlock(&g->proc->mu);
        if (!boot)
            cfg_free(g->cfg);
        else   /* kept for its restart-only keys: its other names go */
            cfg_release_reloadable_names(g->cfg);
    } else {
        cfg_free(g->cfg);
    }
    free(g);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Gives every name a metrics label may carry its id (base/metrics.h), once
 * the generation is sure to be used: ids are stable across reloads. */
static void intern_names(cfg_t *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        cfg->routes[i].mx = pc_metrics_intern(PC_DYN_ROUTE, cfg->routes[i].name);
    for (size_t i = 0; i < cfg->tls.nclasses; i++)
        cfg->tls.classes[i].mx = pc_metrics_intern(PC_DYN_CLASS, cfg->tls.classes[i].name);
    for (size_t i = 0; i < cfg->nupstreams; i++)
        cfg->upstreams[i].mx = pc_metrics_intern(PC_DYN_UPSTREAM, cfg->upstreams[i].name);
    for (size_t i = 0; i < cfg->nrate_limits; i++)
        cfg->rate_limits[i].mx = pc_metrics_intern(PC_DYN_LIMIT, cfg->rate_limits[i].name);
    for (size_t i = 0; cfg->issuance && i < cfg->issuance->nplatforms; i++)
        cfg->issuance->platforms[i].mx = pc_metrics_intern(PC_DYN_PLATFORM,
                                                           cfg->issuance->platforms[i].name);
}

gw_gen_t *gw_gen_build(gw_proc_t *p, const char *path, cfg_errors_t *errs)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t before = errs->n;
    cfg_t *cfg = cfg_load(path, errs);
    if (!cfg) {
        if (errs->n == before)
            gw_errors_add(errs, "%s: could not be loaded", path);
        return NULL;
    }
    gw_gen_t *g = calloc(1, sizeof *g);
    if (!g) {
        cfg_free(cfg);
        gw_errors_add(errs, "%s: out of memory", path);
        return NULL;
    }
    g->refs = 1;
    g->cfg = cfg;
    collect_files(g);   /* before the loaders read them: a change meanwhile shows next time */
    if (p && p->boot)
        restart_only(p->boot, cfg, errs);
    else if (p)   /* the start: what the build logs is in the configured format */
        pc_log_setup(cfg->logging.level, cfg->logging.format);
    char err[512];
    if (errs->n == before && !(g->tls = tls_ctx_new(cfg, p ? p->store : NULL, err, sizeof(err))))
        gw_errors_add(errs, "%s: %s", path, err);
    if (cfg->admin.enabled && !gw_admin_token(&cfg->admin, err, sizeof err))
        gw_errors_add(errs, "%s: %s", path, err);
    if (cfg->metrics.enabled && !gw_metrics_token(&cfg->metrics, err, sizeof err) && err[0])
        gw_errors_add(errs, "%s: %s", path, err);
    policy_setup(g, errs);
    issuance_setup(g, errs);
    if (!(g->health = ups_health_new(cfg)))
        gw_errors_add(errs, "%s: out of memory", path);
    if (p && errs->n == before)
        limiters_setup(p, g, errs);
    if (p && errs->n == before) {
        g->proc = p;
        pthread_mutex_lock(&p->mu);
        p->live++;
        if (!p->boot)
            p->boot = cfg;   /* the start: its restart-only keys are the process's */
        pthread_mutex_unlock(&p->mu);
        if (p->mirror)
            tls_ctx_set_mirror(g->tls, p->mirror);
    }
    if (errs->n != before) {
        gen_free(g);
        return NULL;
    }
    if (p)
        intern_names(cfg);
    g->build_ms = ms_since(&t0);
    return g;
}

int gw_gen_listen(gw_gen_t *g, cfg_errors_t *errs)
{
    return listeners_attach(g->proc, g, errs);
}

gw_gen_t *gw_gen_acquire(gw_gen_t *g)
{
    if (g)
        __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    return g;
}

void gw_gen_release(gw_gen_t *g)
{
    if (g && __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) == 0)
        gen_free(g);
}

/* ---- what changed ---- */

static int push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof **v);
    if (!nv)
        return -1;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

/* A route as the reload reports it: host (or "*" for any), path, a space,
 * methods (or "*"), e.g. "api.example.com/v1/ GET,POST". */
static void route_text(const cfg_route_t *r, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "%s%s ", r->host ? r->host : "*", r->path);
    if (!r->nmethods && n < len)
        snprintf(out + n, len - n, "*");
    for (size_t i = 0; i < r->nmethods && n < len; i++)
        n += (size_t)snprintf(out + n, len - n, "%s%s", i ? "," : "", r->methods[i]);
}

/* What a route does once chosen: upstream, classes, token and JWT
 * checks, limits, headers. Two routes with the same route_text and another
 * of these changed. */
static void route_settings(const cfg_t *cfg, const cfg_route_t *r, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "up=%s bearer=%d rlh=%d jwt=%s classes=", r->upstream_name,
                                r->require_bearer, r->rate_limit_headers,
                                r->jwt ? r->jwt->jwks_file : "-");
    for (size_t i = 0; i < cfg->tls.nclasses && i < 32 && n < len; i++)
        if (r->allow_classes & (1u << i))
            n += (size_t)snprintf(out + n, len - n, "%s,", cfg->tls.classes[i].name);
    for (size_t i = 0; i < r->nrate_limits && n < len; i++) {
        const cfg_rate_limit_t *l = &cfg->rate_limits[r->rate_limits[i]];
        n += (size_t)snprintf(out + n, len - n, " limit=%s:%d:%llu/%llu:%llu:%d:%d", l->name, l->key,
                              (unsigned long long)l->count, (unsigned long long)l->period_ms,
                              (unsigned long long)l->burst, l->scope, l->fail_closed);
    }
}

/* The route of cfg written as text, or NULL. */
static const cfg_route_t *find_route(const cfg_t *cfg, const char *text)
{
    char buf[1024];
    for (size_t i = 0; i < cfg->nroutes; i++) {
        route_text(&cfg->routes[i], buf, sizeof buf);
        if (strcmp(buf, text) == 0)
            return &cfg->routes[i];
    }
    return NULL;
}

/* Routes of b that a lacks (changed NULL), or that both have with other
 * settings (into changed). */
static int routes_diff(const cfg_t *a, const cfg_t *b, char ***out, size_t *n, char ***changed,
                       size_t *nchanged)
{
    char buf[1024], sa[2048], sb[2048];
    for (size_t i = 0; i < b->nroutes; i++) {
        route_text(&b->routes[i], buf, sizeof buf);
        const cfg_route_t *ra = find_route(a, buf);
        if (!ra && push(out, n, buf) < 0)
            return -1;
        if (!ra || !changed)
            continue;
        route_settings(a, ra, sa, sizeof sa);
        route_settings(b, &b->routes[i], sb, sizeof sb);
        if (strcmp(sa, sb) != 0 && push(changed, nchanged, buf) < 0)
            return -1;
    }
    return 0;
}

static int has_listener(const cfg_t *cfg, const cfg_addr_t *a)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (same_addr(&a->addr, &cfg->listeners[i].addr))
            return 1;
    return 0;
}

static int listeners_diff(const cfg_t *a, const cfg_t *b, char ***out, size_t *n)
{
    for (size_t i = 0; i < b->nlisteners; i++)
        if (!has_listener(a, &b->listeners[i].addr) && push(out, n, b->listeners[i].addr.text) < 0)
            return -1;
    return 0;
}

/* A file of gen is changed when old did not read it or its content differs. */
static int file_changed(const gw_gen_t *old, const gw_file_t *f)
{
    const gw_file_t *o = find_file(old, f->path);
    return !o || o->readable != f->readable || memcmp(o->sha, f->sha, 32) != 0;
}

/* A class changed: new, or its trust digest differs (bundle content,
 * verification parameters, identity settings: what decides whether its
 * sessions resume under the new generation). */
static int class_changed(const gw_gen_t *old, const gw_gen_t *gen, size_t idx)
{
    const cfg_tls_t *ot = &old->cfg->tls;
    const char *name = gen->cfg->tls.classes[idx].name;
    for (size_t i = 0; i < ot->nclasses; i++) {
        if (strcmp(ot->classes[i].name, name) != 0)
            continue;
        const unsigned char *a = tls_ctx_class_digest(old->tls, i), *b = tls_ctx_class_digest(gen->tls, idx);
        return !a || !b || memcmp(a, b, 32) != 0;
    }
    return 1;
}

int gw_changes_compute(const gw_gen_t *old, const gw_gen_t *gen, gw_changes_t *ch)
{
    memset(ch, 0, sizeof *ch);
    if (!old)
        return 0;
    for (size_t i = 0; i < gen->nfiles; i++)
        if (file_changed(old, &gen->files[i]) && push(&ch->files, &ch->nfiles, gen->files[i].path) < 0)
            return -1;
    for (size_t i = 0; i < gen->cfg->tls.nclasses; i++)
        if (class_changed(old, gen, i) && push(&ch->classes, &ch->nclasses, gen->cfg->tls.classes[i].name) < 0)
            return -1;
    for (size_t i = 0; i < old->cfg->tls.nclasses; i++) {   /* removed ones changed too */
        const char *name = old->cfg->tls.classes[i].name;
        size_t k = 0;
        while (k < gen->cfg->tls.nclasses && strcmp(gen->cfg->tls.classes[k].name, name) != 0)
            k++;
        if (k == gen->cfg->tls.nclasses && push(&ch->classes, &ch->nclasses, name) < 0)
            return -1;
    }
    if (routes_diff(old->cfg, gen->cfg, &ch->routes_added, &ch->nroutes_added, &ch->routes_changed,
                    &ch->nroutes_changed) < 0 ||
        routes_diff(gen->cfg, old->cfg, &ch->routes_removed, &ch->nroutes_removed, NULL, NULL) < 0 ||
        listeners_diff(old->cfg, gen->cfg, &ch->listeners_added, &ch->nlisteners_added) < 0 ||
        listeners_diff(gen->cfg, old->cfg, &ch->listeners_removed, &ch->nlisteners_removed) < 0)
        return -1;
    return 0;
}

static size_t join(char *out, size_t len, size_t n, char *const *v, size_t count)
{
    if (!count)
        return n < len ? n + (size_t)snprintf(out + n, len - n, "none") : n;
    for (size_t i = 0; i < count && n < len; i++) {
        const char *s = strrchr(v[i], '/');
        n += (size_t)snprintf(out + n, len - n, "%s%s", i ? ", " : "", s && s[1] ? s + 1 : v[i]);
    }
    return n;
}

void gw_changes_summary(const gw_changes_t *ch, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "files: ");
    n = join(out, len, n, ch->files, ch->nfiles);
    if (n < len)
        n += (size_t)snprintf(out + n, len - n, "; routes: +%zu -%zu ~%zu; classes: ", ch->nroutes_added,
                              ch->nroutes_removed, ch->nroutes_changed);
    n = join(out, len, n, ch->classes, ch->nclasses);
    if (n < len)
        snprintf(out + n, len - n, "; listeners: +%zu -%zu", ch->nlisteners_added, ch->nlisteners_removed);
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void gw_changes_free(gw_changes_t *ch)
{
    strv_free(ch->files, ch->nfiles);
    strv_free(ch->routes_added, ch->nroutes_added);
    strv_free(ch->routes_removed, ch->nroutes_removed);
    strv_free(ch->routes_changed, ch->nroutes_changed);
    strv_free(ch->classes, ch->nclasses);
    strv_free(ch->listeners_added, ch->nlisteners_added);
    strv_free(ch->listeners_removed, ch->nlisteners_removed);
    memset(ch, 0, sizeof *ch);
}
