/* gateway/metrics: the /metrics exposition, /healthz and /readyz (see metrics.h). */
#include "metrics.h"

#include <dirent.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "gateway.h"

/* ---- process figures (Linux /proc) ---- */

static double resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    int n = f ? fscanf(f, "%lu %lu", &size, &rss) : 0;
    if (f)
        fclose(f);
    return n == 2 ? (double)rss * (double)sysconf(_SC_PAGESIZE) : 0.0;
}

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0.0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return (double)(n ? n - 1 : 0);   /* less the directory's own descriptor */
}

static double max_fds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0.0;
    return rl.rlim_cur == RLIM_INFINITY ? 1e18 : (double)rl.rlim_cur;
}

static void gauge(pc_buf_t *out, const char *name, const char *help, double v)
{
    pc_metrics_family(out, name, "gauge", help);
    pc_metrics_sample(out, name, "", v);
}

/* ---- the gauges ---- */

static void render_revocation(gw_proc_t *p, pc_buf_t *out)
{
    static const char *const states[] = {"loading", "current", "stale", "unavailable"};
    pol_mirror_t *m = gw_proc_mirror(p);
    if (!m)
        return;
    pol_mirror_status_t st;
    pol_mirror_status(m, &st);
    gauge(out, "portcullis_revocation_entries", "Entries in the revocation mirror.",
          (double)st.entries);
    gauge(out, "portcullis_revocation_generation",
          "Changes applied to the revocation mirror since the start.",
          (double)pol_mirror_generation(m));
    double stale = st.staleness_s;
    if (strcmp(st.state, "loading") == 0) {
        /* never loaded (the mirror says "loading" only then): not current since the start */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        stale = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - gw_proc_started(p);
    }
    gauge(out, "portcullis_revocation_staleness_seconds",
          "Seconds since the revocation mirror was last known current (0 while current).",
          stale > 0 ? stale : 0.0);
    pc_metrics_family(out, "portcullis_revocation_sync_state", "gauge",
                      "State of the revocation sync: 1 for the current state, 0 for the others.");
    for (size_t i = 0; i < sizeof states / sizeof *states; i++) {
        char lab[64];
        snprintf(lab, sizeof lab, "state=\"%s\"", states[i]);
        pc_metrics_sample(out, "portcullis_revocation_sync_state", lab,
                          strcmp(st.state, states[i]) == 0 ? 1.0 : 0.0);
    }
}

static void render_generation(gw_gen_t *g, pc_buf_t *out)
{
    tls_vcache_stats_t vs = {0};
    tls_sess_stats_t ss = {0};
    if (tls_ctx_vcache_stats(g->tls, &vs) < 0)
        vs.entries = 0;   /* disabled */
    tls_store_sess_stats(tls_ctx_store(g->tls), &ss);
    gauge(out, "portcullis_tls_verify_cache_entries", "Verified chains in the verify cache.",
          (double)vs.entries);
    gauge(out, "portcullis_tls_session_cache_entries", "Sessions in the TLS session store.",
          (double)ss.entries);
    const char *name = "portcullis_upstream_servers_skipped";
    pc_metrics_family(out, name, "gauge", "Servers of an upstream marked failed and skipped "
                      "until their fail_timeout ends.");
    for (size_t i = 0; i < g->cfg->nupstreams; i++) {
        char esc[160], lab[192];
        pc_metrics_label_esc(esc, sizeof esc, g->cfg->upstreams[i].name);
        snprintf(lab, sizeof lab, "upstream=\"%s\"", esc);
        pc_metrics_sample(out, name, lab, (double)ups_health_skipped(g->health, g->cfg, i));
    }
    gauge(out, "portcullis_config_generation",
          "Number of the configuration generation in use (1 at the start, +1 per applied reload).",
          (double)g->number);
}

static void render_process(gw_proc_t *p, pc_buf_t *out)
{
    char esc[128], lab[192];
    pc_metrics_label_esc(esc, sizeof esc, OpenSSL_version(OPENSSL_VERSION_STRING));
    snprintf(lab, sizeof lab, "version=\"%s\",openssl=\"%s\"", PORTCULLIS_VERSION, esc);
    pc_metrics_family(out, "portcullis_build_info", "gauge",
                      "Always 1; the labels say the gateway and OpenSSL versions.");
    pc_metrics_sample(out, "portcullis_build_info", lab, 1.0);
    gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", resident_bytes());
    gauge(out, "process_open_fds", "Open file descriptors.", open_fds());
    gauge(out, "process_max_fds", "Maximum number of open file descriptors (RLIMIT_NOFILE).",
          max_fds());
    gauge(out, "process_start_time_seconds", "Start time of the process since the Unix epoch "
          "in seconds.", gw_proc_started(p));
}

void gw_metrics_render(gw_proc_t *p, pc_buf_t *out)
{
    pc_metrics_render(out);
    gauge(out, "portcullis_connections_open", "Client connections open now.",
          (double)__atomic_load_n(gw_proc_nconns(p), __ATOMIC_RELAXED));
    render_revocation(p, out);
    gw_gen_t *g = gw_proc_current(p);
    if (g) {
        render_generation(g, out);
        gw_gen_release(g);
    }
    render_process(p, out);
}

/* ---- answers ---- */

static void reply(struct evhttp_request *req, int status, const char *reason, const char *ctype,
                  const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (out)
        evbuffer_add(out, body, len);
    evhttp_send_reply(req, status, reason, out);
    if (out)
        evbuffer_free(out);
}

void gw_metrics_serve(gw_proc_t *p, struct evhttp_request *req)
{
    pc_buf_t b = {0};
    gw_metrics_render(p, &b);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    if (b.oom || !out) {
        evhttp_add_header(h, "Content-Type", "application/json");
        if (out)
            evbuffer_add_printf(out, "{\"error\":\"%s\",\"message\":\"%s\"}\n",
                                pc_err_code(PC_E_OUT_OF_MEMORY), pc_err_message(PC_E_OUT_OF_MEMORY));
        evhttp_send_reply(req, pc_err_status(PC_E_OUT_OF_MEMORY), NULL, out);
    } else {
        evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        evhttp_add_header(h, "Cache-Control", "no-store");
        evbuffer_add(out, b.p ? b.p : "", b.len);
        evhttp_send_reply(req, 200, "OK", out);
    }
    if (out)
        evbuffer_free(out);
    pc_buf_free(&b);
}

size_t gw_ready_reasons(gw_proc_t *p, const char **reasons, size_t max)
{
    size_t n = 0;
#define ADD(r)              \
    do {                    \
        if (n < max)        \
            reasons[n] = r; \
        n++;                \
    } while (0)
    int phase = gw_proc_phase(p);
    if (phase == GW_PHASE_STARTING)
        ADD("starting");
    else if (phase == GW_PHASE_DRAINING)
        ADD("draining");
    else if (gw_proc_open_listeners(p) == 0)
        ADD("no_listeners");
    pol_mirror_t *m = gw_proc_mirror(p);
    if (!m) {
        ADD("revocation_not_loaded");
    } else if (!pol_mirror_usable(m)) {
        pol_mirror_status_t st;
        pol_mirror_status(m, &st);
        ADD(strcmp(st.state, "loading") == 0 ? "revocation_not_loaded" : "revocation_stale");
    }
#undef ADD
    return n;
}

int gw_health_path(struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD))
        return 0;
    return !strcmp(path, "/healthz") ? 1 : !strcmp(path, "/readyz") ? 2 : 0;
}

void gw_health_serve(gw_proc_t *p, struct evhttp_request *req, int ready)
{
    static const char ok[] = "{\"status\":\"ok\"}\n";
    static const char is_ready[] = "{\"status\":\"ready\"}\n";
    if (!ready) {
        reply(req, 200, "OK", "application/json", ok, sizeof ok - 1);
        return;
    }
    const char *reasons[GW_READY_REASONS_MAX];
    size_t n = gw_ready_reasons(p, reasons, GW_READY_REASONS_MAX);
    if (n == 0) {
        reply(req, 200, "OK", "application/json", is_ready, sizeof is_ready - 1);
        return;
    }
    char body[512];
    size_t len = (size_t)snprintf(body, sizeof body, "{\"status\":\"not_ready\",\"reasons\":[");
    for (size_t i = 0; i < n && i < GW_READY_REASONS_MAX && len < sizeof body; i++)
        len += (size_t)snprintf(body + len, sizeof body - len, "%s\"%s\"", i ? "," : "", reasons[i]);
    if (len < sizeof body)
        len += (size_t)snprintf(body + len, sizeof body - len, "]}\n");
    if (len >= sizeof body)
        len = sizeof body - 1;
    reply(req, 503, "Service Unavailable", "application/json", body, len);
}

void gw_http_setup(struct evhttp *http, ev_ssize_t max_body, ev_ssize_t max_headers, int timeout_s,
                   void (*cb)(struct evhttp_request *, void *), void *arg)
{
    evhttp_set_max_body_size(http, max_body);
    evhttp_set_max_headers_size(http, max_headers);
    evhttp_set_timeout(http, timeout_s);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, cb, arg);
}
