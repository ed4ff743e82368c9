/* gateway/listeners: the process's listening sockets (see listeners.h). */
#include "listeners.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker.h"

typedef struct {
    int *fds;
    size_t n, cap;
} slot_t;

struct gw_lset {
    pthread_mutex_t mu;
    const cfg_t *cfg;
    slot_t *slots;   /* one per cfg->listeners[i] */
    int closed;
};

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

gw_lset_t *gw_lset_new(const cfg_t *cfg)
{
    gw_lset_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = cfg;
    s->slots = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*s->slots));
    if (!s->slots) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void close_all(gw_lset_t *s)
{
    for (size_t i = 0; i < s->cfg->nlisteners; i++) {
        for (size_t j = 0; j < s->slots[i].n; j++)
            close(s->slots[i].fds[j]);
        s->slots[i].n = 0;
    }
}

void gw_lset_free(gw_lset_t *s)
{
    if (!s)
        return;
    close_all(s);
    for (size_t i = 0; i < s->cfg->nlisteners; i++)
        free(s->slots[i].fds);
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Appends fd to slot i; -1 (fd not taken) without memory. Lock held. */
static int push(slot_t *sl, int fd)
{
    if (sl->n == sl->cap) {
        size_t cap = sl->cap ? sl->cap * 2 : 4;
        int *p = realloc(sl->fds, cap * sizeof(*p));
        if (!p)
            return -1;
        sl->fds = p;
        sl->cap = cap;
    }
    sl->fds[sl->n++] = fd;
    return 0;
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

int gw_lset_adopt(gw_lset_t *s, int fd, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0, acc = 0;
    socklen_t il = sizeof(int), al = sizeof(int);
    memset(&ss, 0, sizeof(ss));
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &il) < 0 || type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        snprintf(err, errlen, "not a listening TCP socket");
        close(fd);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    int idx = -1;
    for (size_t i = 0; i < s->cfg->nlisteners && idx < 0; i++)
        if (same_addr(&ss, &s->cfg->listeners[i]))
            idx = (int)i;
    if (idx < 0)
        snprintf(err, errlen, "its address is not among the configured listeners");
    else if (s->closed || push(&s->slots[idx], fd) < 0) {
        snprintf(err, errlen, s->closed ? "the listener set is closed" : "out of memory");
        idx = -1;
    }
    pthread_mutex_unlock(&s->mu);
    if (idx < 0)
        close(fd);
    else
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return idx;
}

int gw_lset_fill(gw_lset_t *s, size_t n, int probe, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cfg->nlisteners && rc == 0; i++) {
        slot_t *sl = &s->slots[i];
        if (sl->n == 0 && probe && gw_listen_probe(&s->cfg->listeners[i], err, errlen) < 0)
            rc = -1;
        while (rc == 0 && sl->n < n) {
            int fd = gw_listen_socket(&s->cfg->listeners[i], err, errlen);
            if (fd < 0 || push(sl, fd) < 0) {
                if (fd >= 0) {
                    close(fd);
                    snprintf(err, errlen, "out of memory");
                }
                rc = -1;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int gw_lset_worker_fds(gw_lset_t *s, int worker, int nworkers, int **fds, size_t *n,
                       char *err, size_t errlen)
{
    int rc = 0;
    size_t total = 0, k = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cfg->nlisteners; i++)
        total += s->slots[i].n;
    int *out = calloc(total ? total : 1, sizeof(int));
    if (!out)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < s->cfg->nlisteners; i++)
        for (size_t j = (size_t)worker; rc == 0 && j < s->slots[i].n; j += (size_t)nworkers) {
            int d = fcntl(s->slots[i].fds[j], F_DUPFD_CLOEXEC, 0);
            if (d < 0)
                rc = -1;
            else
                out[k++] = d;
        }
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        snprintf(err, errlen, "listening sockets: %s", out ? strerror(errno) : "out of memory");
        while (k)
            close(out[--k]);
        free(out);
        return -1;
    }
    *fds = out;
    *n = k;
    return 0;
}

size_t gw_lset_count(gw_lset_t *s)
{
    size_t total = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cfg->nlisteners; i++)
        total += s->slots[i].n;
    pthread_mutex_unlock(&s->mu);
    return total;
}

int gw_lset_get(gw_lset_t *s, size_t idx, int *fd, size_t *listener, size_t *sock,
                size_t *nsocks, const char **text)
{
    int rc = -1;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cfg->nlisteners; i++) {
        if (idx >= s->slots[i].n) {
            idx -= s->slots[i].n;
            continue;
        }
        *fd = fcntl(s->slots[i].fds[idx], F_DUPFD_CLOEXEC, 0);
        *listener = i;
        *sock = idx;
        *nsocks = s->slots[i].n;
        *text = s->cfg->listeners[i].text;
        rc = *fd < 0 ? -1 : 0;
        break;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void gw_lset_close(gw_lset_t *s)
{
    pthread_mutex_lock(&s->mu);
    close_all(s);
    s->closed = 1;
    pthread_mutex_unlock(&s->mu);
}
