/* gateway/metrics_http: the metrics listener (see metrics.h). */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/crypto.h>

#include "../base/log.h"
#include "../base/metrics.h"
#include "service.h"

struct gw_metrics_http {
    gw_proc_t *proc;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;   /* NULL once handed over */
    int handed_over;  /* a new process serves the socket: close after each answer */
    char *token;      /* NULL: /metrics needs none */
    size_t toklen;
};

const char *gw_metrics_token(const cfg_metrics_t *mc, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    if (!mc->token_env)
        return NULL;
    const char *tok = getenv(mc->token_env);
    if (!tok || !*tok) {
        snprintf(err, errlen, "metrics.token_env: the environment variable %s is unset or empty; "
                 "set it to the metrics bearer token, or remove metrics.token_env to serve "
                 "/metrics without one", mc->token_env);
        return NULL;
    }
    return tok;
}

static int is_loopback(const cfg_addr_t *a)
{
    if (a->addr.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->addr)->sin_addr.s_addr) >> 24) == 127;
    if (a->addr.ss_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(v6) || (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
    }
    return 0;
}

static void send_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (out)
        evbuffer_add_printf(out, "{\"error\":\"%s\",\"message\":\"%s\"}\n", code, msg);
    evhttp_send_reply(req, status, NULL, out);
    if (out)
        evbuffer_free(out);
}

/* 1 if /metrics may be answered: no token is configured, or the request
 * carries it. */
static int authorized(const gw_metrics_http_t *m, struct evhttp_request *req, int *given)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    *given = h != NULL;
    if (!m->token)
        return 1;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    return n == m->toklen && CRYPTO_memcmp(h, m->token, n) == 0;
}

/* ---- accept backoff ----
 * Out of descriptors (or memory), accept(2) on a listening socket fails and
 * leaves the connection queued, so libevent's level-triggered listener
 * would fail again on every turn of the loop (and, without an error
 * callback, log each time). As in the workers (worker.c): the listener is
 * disabled for limits.accept_backoff, every failure is counted in
 * portcullis_accept_errors_total, and an episode is logged once when it
 * begins and once when a whole backoff passed without a failure. A listener
 * handed over or freed has its timer freed with it, so it is never enabled
 * again after that. On the base's thread. */

enum { HB_ACCEPTING, HB_PAUSED, HB_PROBING };

typedef struct {
    struct evconnlistener *lev;   /* NULL: the slot is unused */
    struct event *timer;
    gw_proc_t *proc;
    int state;
    unsigned failures;            /* in the current episode */
} http_backoff_t;

static http_backoff_t http_backoff[GW_HTTP_KINDS];

static const char *kind_name(int kind)
{
    return kind == GW_HTTP_ADMIN ? "admin" : "metrics";
}

static uint64_t backoff_ms(gw_proc_t *p)
{
    gw_gen_t *g = gw_proc_current(p);
    uint64_t ms = g->cfg->limits.accept_backoff_ms;
    gw_gen_release(g);
    return ms;
}

static void backoff_arm(http_backoff_t *hb)
{
    uint64_t ms = backoff_ms(hb->proc);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (event_add(hb->timer, &tv) < 0)
        pc_log_ev(PC_ERR, "accept_paused", NULL, "%s listener: cannot arm the accept backoff timer; "
                  "it stays off", kind_name((int)(hb - http_backoff)));
}

static void on_http_accept_error(struct evconnlistener *lev, void *arg)
{
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    http_backoff_t *hb = NULL;
    for (int k = 0; k < GW_HTTP_KINDS; k++)
        if (http_backoff[k].lev == lev)
            hb = &http_backoff[k];
    unsigned reason = gw_accept_reason(e);
    pc_count1(ACCEPT_ERRORS, reason);
    if (!hb || gw_accept_lost_one(e))
        return;   /* that connection failed; the next one may not */
    evconnlistener_disable(lev);
    if (hb->state == HB_ACCEPTING)
        pc_log_ev(reason == PC_ACCEPT_OTHER ? PC_ERR : PC_WARN, "accept_paused", NULL,
                  "%s listener: accept: %s; paused for %llums at a time until it works again",
                  kind_name((int)(hb - http_backoff)), strerror(e),
                  (unsigned long long)backoff_ms(hb->proc));
    hb->failures++;
    hb->state = HB_PAUSED;
    backoff_arm(hb);
}

static void on_http_backoff(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_backoff_t *hb = arg;
    if (hb->state == HB_PAUSED) {
        hb->state = HB_PROBING;   /* an error within a backoff pauses it again */
        evconnlistener_enable(hb->lev);
        backoff_arm(hb);
    } else if (hb->state == HB_PROBING) {
        pc_log_ev(PC_INFO, "accept_resumed", NULL, "%s listener: accepting again after %u failure(s)",
                  kind_name((int)(hb - http_backoff)), hb->failures);
        hb->state = HB_ACCEPTING;
        hb->failures = 0;
    }
}

/* Forgets the listener of kind: its backoff timer goes, before the
 * listener does. */
static void backoff_forget(int kind)
{
    http_backoff_t *hb = &http_backoff[kind];
    if (hb->timer)
        event_free(hb->timer);
    memset(hb, 0, sizeof *hb);
}

static int backoff_watch(struct event_base *base, struct evconnlistener *lev, gw_proc_t *p, int kind)
{
    backoff_forget(kind);
    http_backoff_t *hb = &http_backoff[kind];
    if (!(hb->timer = evtimer_new(base, on_http_backoff, hb)))
        return -1;
    hb->lev = lev;
    hb->proc = p;
    evconnlistener_set_error_cb(lev, on_http_accept_error);
    return 0;
}

void gw_http_forget(int kind)
{
    if (kind >= 0 && kind < GW_HTTP_KINDS)
        backoff_forget(kind);
}

/* gw_http_listen without its error text: NULL with errno set. */
static struct evhttp_bound_socket *http_listen(struct event_base *base, struct evhttp *http,
                                               gw_proc_t *p, int kind, const cfg_addr_t *a)
{
    int deferred = 0;
    int fd = gw_proc_take_http(p, kind, &deferred);
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | (deferred ? LEV_OPT_DISABLED : 0);
    /* backlog 0: a received socket listens already */
    struct evconnlistener *lev =
        fd >= 0 ? evconnlistener_new(base, NULL, NULL, flags, 0, fd)
                : evconnlistener_new_bind(base, NULL, NULL, flags | LEV_OPT_REUSEABLE, 64,
                                          (const struct sockaddr *)&a->addr, (int)a->addrlen);
    if (!lev) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return NULL;
    }
    struct evhttp_bound_socket *b = evhttp_bind_listener(http, lev);
    if (!b) {
        evconnlistener_free(lev);
        errno = ENOMEM;
        return NULL;
    }
    if (backoff_watch(base, lev, p, kind) < 0) {
        evhttp_del_accept_socket(http, b);
        errno = ENOMEM;
        return NULL;
    }
    gw_proc_set_http_fd(p, kind, evconnlistener_get_fd(lev));
    return b;
}

struct evhttp_bound_socket *gw_http_listen(struct event_base *base, struct evhttp *http,
                                           gw_proc_t *p, int kind, const cfg_addr_t *a,
                                           char *err, size_t errlen)
{
    struct evhttp_bound_socket *b = http_listen(base, http, p, kind, a);
    if (!b)
        snprintf(err, errlen, "%s listener not started: cannot listen on %s (%s): %s",
                 kind == GW_HTTP_ADMIN ? "admin" : "metrics", a->text ? a->text : "?",
                 kind == GW_HTTP_ADMIN ? "admin.listen" : "metrics.address", strerror(errno));
    return b;
}

void gw_http_takeover(struct evhttp_bound_socket *b)
{
    if (b)
        evconnlistener_enable(evhttp_bound_socket_get_listener(b));
}

void gw_http_handover(struct evhttp *http, struct evhttp_bound_socket **b, gw_proc_t *p, int kind)
{
    if (!*b)
        return;
    gw_proc_set_http_fd(p, kind, -1);
    backoff_forget(kind);   /* never enabled again */
    evhttp_del_accept_socket(http, *b);   /* frees the listener: closes our copy */
    *b = NULL;
}

void gw_metrics_http_takeover(gw_metrics_http_t *m)
{
    if (m)
        gw_http_takeover(m->bound);
}

void gw_metrics_http_handover(gw_metrics_http_t *m)
{
    if (!m)
        return;
    m->handed_over = 1;
    gw_http_handover(m->http, &m->bound, m->proc, GW_HTTP_METRICS);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    gw_metrics_http_t *m = arg;
    if (m->handed_over)   /* the client's next connection reaches the new process */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int known = path && (!strcmp(path, "/metrics") || !strcmp(path, "/healthz") ||
                         !strcmp(path, "/readyz"));
    if (!known) {
        send_error(req, 404, "not_found", "this listener serves /metrics, /healthz and /readyz");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        send_error(req, 405, "method_not_allowed", "method not allowed on this path");
        return;
    }
    if (strcmp(path, "/metrics") != 0) {
        gw_health_serve(m->proc, req, strcmp(path, "/readyz") == 0);
        return;
    }
    int given = 0;
    if (!authorized(m, req, &given)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          given ? "Bearer realm=\"portcullis-metrics\", error=\"invalid_token\""
                                : "Bearer realm=\"portcullis-metrics\"");
        send_error(req, 401, "unauthorized", given ? "invalid metrics token"
                                                   : "a metrics bearer token is required");
        return;
    }
    gw_metrics_serve(m->proc, req);
}

gw_metrics_http_t *gw_metrics_http_start(struct event_base *base, gw_proc_t *p, char *err,
                                         size_t errlen)
{
    const cfg_metrics_t *mc = &gw_proc_boot(p)->metrics;
    char why[256];
    const char *tok = gw_metrics_token(mc, why, sizeof why);
    if (!tok && why[0]) {
        snprintf(err, errlen, "metrics listener not started: %s", why);
        return NULL;
    }
    gw_metrics_http_t *m = calloc(1, sizeof *m);
    if (!m || (tok && !(m->token = strdup(tok)))) {
        free(m);
        snprintf(err, errlen, "metrics listener not started: out of memory");
        return NULL;
    }
    m->toklen = tok ? strlen(tok) : 0;
    m->proc = p;
    if (!(m->http = evhttp_new(base))) {
        snprintf(err, errlen, "metrics listener not started: out of memory");
        gw_metrics_http_free(m);
        return NULL;
    }
    if (!(m->bound = gw_http_listen(base, m->http, p, GW_HTTP_METRICS, &mc->address, err, errlen))) {
        gw_metrics_http_free(m);
        return NULL;
    }
    gw_http_setup(m->http, 0, 8192, 10, on_request, m);
    pc_log(PC_INFO, "component=metrics", "metrics listener on %s (plain HTTP; /metrics %s)",
           mc->address.text, m->token ? "needs the metrics token" : "needs no token");
    if (!m->token && !is_loopback(&mc->address))
        pc_log(PC_WARN, "component=metrics", "metrics listener on %s is not a loopback address "
               "and /metrics needs no token: anyone who can reach it reads the gateway's "
               "metrics; set metrics.token_env or restrict access to the scrapers",
               mc->address.text);
    return m;
}

void gw_metrics_http_free(gw_metrics_http_t *m)
{
    if (!m)
        return;
    if (m->bound) {
        gw_proc_set_http_fd(m->proc, GW_HTTP_METRICS, -1);
        gw_http_forget(GW_HTTP_METRICS);
    }
    if (m->http)
        evhttp_free(m->http);
    if (m->token) {
        OPENSSL_cleanse(m->token, m->toklen);
        free(m->token);
    }
    free(m);
}
