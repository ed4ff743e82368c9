/* gateway/main: command line, startup, signals, shutdown. */
#include <errno.h>
#include <event2/thread.h>
#include <getopt.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../policy/issuance.h"
#include "admin.h"
#include "cli.h"
#include "gateway.h"
#include "listeners.h"
#include "log.h"
#include "upgrade.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: portcullis -c FILE          run the gateway in the foreground\n"
            "       portcullis --check -c FILE  validate FILE and everything the start needs\n"
            "                                   (certificate, key and JWKS files, issuance keys,\n"
            "                                   the admin token variable); print OK (exit 0)\n"
            "                                   or every error (exit 2)\n"
            "       portcullis -c FILE --upgrade\n"
            "                                   take over the listening sockets of the gateway\n"
            "                                   running on upgrade_socket, serve, then have it\n"
            "                                   drain (binary upgrade, docs/operations.md)\n");
    gw_cli_synopsis(f, NULL, 0);
    fprintf(f,
            "       portcullis --version\n"
            "       portcullis --help\n"
            "\n"
            "Signals (to a running gateway):\n"
            "  SIGTERM, SIGINT  stop accepting, let in-flight requests finish (up to\n"
            "                   timeouts.drain; idle connections close after\n"
            "                   timeouts.drain_idle), then exit 0\n"
            "  SIGHUP           validate FILE again and log the verdict; the running\n"
            "                   configuration is kept (no live reload: restart to apply)\n"
            "\n"
            "Exit status (gateway): 0 stopped by a signal, or --check found no\n"
            "problem; 2 usage or configuration error (what --check reports);\n"
            "1 any other failure to start (a listener cannot be bound or another\n"
            "process listens there, --upgrade finds no running gateway, ...).\n");
    gw_cli_exit_status(f);
    fprintf(f, "Configuration reference: docs/configuration.md\n");
}

/* The control thread runs the revocation sync (and the admin listener). */
typedef struct {
    struct event_base *base;
    pol_revsync_t *sync;
    gw_admin_t *admin;
    pthread_t thread;
    gw_worker_t *workers;
    int nworkers;
} control_t;

static void on_revocation_change(void *arg)
{
    control_t *ctl = arg;
    for (int i = 0; i < ctl->nworkers; i++)
        gw_worker_notify_revocation(&ctl->workers[i]);
}

/* One problem found while preparing the start: "FILE: message" on stderr. */
static void problem(int *nerr, const char *path, const char *msg)
{
    fprintf(stderr, "%s: %s\n", path, msg);
    (*nerr)++;
}

/* The JWKS stores (one per distinct file) and the token-claim header names.
 * Adds one problem per file that cannot be used. */
static void jwks_setup(gw_runtime_t *rt, const char *path, int *nerr)
{
    const cfg_t *cfg = rt->cfg;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const cfg_jwt_t *j = cfg->routes[i].jwt;
        if (!j)
            continue;
        size_t k = 0;
        while (k < i && !(cfg->routes[k].jwt && strcmp(cfg->routes[k].jwt->jwks_file, j->jwks_file) == 0))
            k++;
        if (k < i) {
            rt->jwks[i] = rt->jwks[k];   /* NULL too, if that file failed: reported once */
        } else {
            char e[256], msg[512];
            rt->jwks[i] = pol_jwks_store_new(j->jwks_file, e, sizeof(e));
            if (!rt->jwks[i]) {
                snprintf(msg, sizeof msg, "routes[%zu].jwt.jwks_file: %s", i, e);
                problem(nerr, path, msg);
            } else {
                rt->jwks_files[rt->njwks_files++] = rt->jwks[i];
            }
        }
        /* a claim header is the gateway's on every route: stripped everywhere */
        for (k = 0; k < j->nclaims; k++) {
            size_t m = 0;
            while (m < rt->nclaim_headers && strcasecmp(rt->claim_headers[m], j->claims[k].header))
                m++;
            if (m == rt->nclaim_headers)
                rt->claim_headers[rt->nclaim_headers++] = j->claims[k].header;
        }
    }
}

/* The issuance CA and every platform's attestation keys. */
static void issuance_setup(gw_runtime_t *rt, const char *path, int *nerr)
{
    const cfg_issuance_t *is = rt->cfg->issuance;
    char err[512];
    if (!is)
        return;
    if (!(rt->issuer = pol_issuer_load(is, err, sizeof err)))
        problem(nerr, path, err);
    rt->play_keys = calloc(is->nplatforms ? is->nplatforms : 1, sizeof(*rt->play_keys));
    if (!rt->play_keys) {
        problem(nerr, path, "out of memory");
        return;
    }
    for (size_t i = 0; i < is->nplatforms; i++) {
        const cfg_platform_t *pl = &is->platforms[i];
        if (pl->provider == CFG_ATTEST_PLAY_INTEGRITY &&
            !(rt->play_keys[i] = pol_play_keys_load(&pl->play, err, sizeof err)))
            problem(nerr, path, err);
        if (pl->provider == CFG_ATTEST_NONE)
            gw_log(GW_WARN, NULL, "INSECURE: issuance.platforms.%s uses provider none: certificates are "
                   "issued WITHOUT any attestation (insecure_dev: true). Never run this in production.",
                   pl->name);
    }
}

/* Everything the start needs beyond cfg_load(), in the order the start
 * needs it: the TLS contexts, the admin token, the request-policy state
 * (limiters, JWKS files, claim headers) and the issuance keys. The start
 * and `--check` both call this, so a config that passes --check starts
 * (binding the listeners and reaching Redis are left to the start: they
 * depend on the moment, not on the file). Prints every problem as
 * "FILE: message" and returns how many there were; on 0, rt holds the
 * state (freed by policy_free and tls_ctx_free either way). */
static int prepare(gw_runtime_t *rt, const char *path)
{
    const cfg_t *cfg = rt->cfg;
    char err[512];
    int nerr = 0;
    if (!(rt->tls = tls_ctx_new(cfg, err, sizeof(err))))
        problem(&nerr, path, err);
    if (cfg->admin.enabled && !gw_admin_token(&cfg->admin, err, sizeof err))
        problem(&nerr, path, err);
    if (cfg->nrate_limits && !(rt->rl = pol_rl_new(cfg->rate_limits, cfg->nrate_limits, 0)))
        problem(&nerr, path, "cannot allocate the rate limiter");
    const cfg_connlimits_t *cl = &cfg->connection_limits;
    if ((cl->per_ip_count || cl->per_ip_concurrent) && !(rt->connlimit = pol_connlimit_new(cl, 0)))
        problem(&nerr, path, "cannot allocate the connection limiter");
    rt->jwks = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*rt->jwks));
    rt->jwks_files = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*rt->jwks_files));
    size_t nclaims = 0;
    for (size_t i = 0; i < cfg->nroutes; i++)
        nclaims += cfg->routes[i].jwt ? cfg->routes[i].jwt->nclaims : 0;
    rt->claim_headers = calloc(nclaims ? nclaims : 1, sizeof(char *));
    if (!rt->jwks || !rt->jwks_files || !rt->claim_headers)
        problem(&nerr, path, "out of memory");
    else
        jwks_setup(rt, path, &nerr);
    rt->hnames = ups_names_new(&cfg->identity, (const char *const *)rt->claim_headers,
                               rt->nclaim_headers, &cfg->http);
    if (!rt->hnames)
        problem(&nerr, path, "out of memory");
    issuance_setup(rt, path, &nerr);
    return nerr;
}

static void policy_free(gw_runtime_t *rt)
{
    if (rt->play_keys && rt->cfg->issuance)
        for (size_t i = 0; i < rt->cfg->issuance->nplatforms; i++)
            pol_play_keys_free(rt->play_keys[i]);
    free(rt->play_keys);
    pol_issuer_free(rt->issuer);
    pol_rl_free(rt->rl);
    pol_connlimit_free(rt->connlimit);
    for (size_t i = 0; i < rt->njwks_files; i++)
        pol_jwks_store_free(rt->jwks_files[i]);
    free(rt->jwks_files);
    free(rt->jwks);
    free(rt->claim_headers);
    ups_names_free(rt->hnames);
}

/* JWKS files are re-read when they change; a bad file keeps the old keys. */
static void on_jwks_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_runtime_t *rt = arg;
    for (size_t i = 0; i < rt->njwks_files; i++) {
        char err[256];
        int r = pol_jwks_store_refresh(rt->jwks_files[i], err, sizeof(err));
        if (r > 0)
            gw_log(GW_INFO, NULL, "JWKS reloaded");
        else if (r < 0)
            gw_log(GW_ERR, NULL, "JWKS reload failed, keeping the previous keys: %s", err);
    }
}

/* A burst of handshakes leaves glibc's heaps holding what the handshakes
 * freed (record and handshake buffers, certificate decoding) between the
 * connections that stayed open: about a quarter of the memory of an idle
 * connection after a burst (docs/performance.md). Once a whole tick passes
 * without a new connection, that memory goes back to the system. Under a
 * steady stream of connections this never runs, so their allocations never
 * fault pages in again. */
#define TRIM_TICK_MS 1000

typedef struct {
    gw_runtime_t *rt;
    uint64_t seen;      /* rt->accepted at the last tick */
    uint64_t trimmed;   /* rt->accepted at the last trim */
} trim_t;

static void on_trim_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    trim_t *t = arg;
    uint64_t now = __atomic_load_n(&t->rt->accepted, __ATOMIC_RELAXED);
    if (now != t->seen) {
        t->seen = now;   /* still arriving: not now */
        return;
    }
    if (now == t->trimmed)
        return;          /* nothing new since the last trim */
    int released = malloc_trim(0);
    gw_log(GW_DEBUG, NULL, "memory: heaps trimmed after %llu new connections (%s)",
           (unsigned long long)(now - t->trimmed), released ? "memory returned" : "nothing to return");
    t->trimmed = now;
}

/* The upgrade server's READY (control thread): a new process serves on
 * every listener, so this one drains exactly as on SIGTERM. */
static void on_upgrade_ready(void *arg, pid_t new_pid)
{
    (void)arg;
    (void)new_pid;
    kill(getpid(), SIGTERM);
}

static void *control_main(void *arg)
{
    control_t *ctl = arg;
    event_base_loop(ctl->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* Waits (bounded) for the first revocation load, so a gateway that can
 * reach Redis never refuses its first clients for want of a mirror. */
static void wait_for_mirror(const cfg_t *cfg, pol_mirror_t *m)
{
    uint64_t limit = cfg->redis.connect_timeout_ms + 2 * cfg->redis.command_timeout_ms + 1000;
    for (uint64_t waited = 0; waited < limit && !pol_mirror_usable(m); waited += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!pol_mirror_usable(m))
        gw_log(GW_ERR, NULL, "revocation mirror not loaded yet (Redis %s:%d unreachable?): "
               "new handshakes are refused until it is", cfg->redis.host, cfg->redis.port);
}

static cfg_t *load(const char *path)
{
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        if (errs.n == 0)
            fprintf(stderr, "%s: could not be loaded\n", path);
    }
    cfg_errors_free(&errs);
    return cfg;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 't'},
        {"upgrade", no_argument, NULL, 'u'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc > 1 && gw_cli_is_command(argv[1]))
        return gw_cli_main(argv[1], argc - 1, argv + 1);
    const char *path = NULL;
    int check = 0, upgrade = 0, o;
    while ((o = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 't': check = 1; break;
        case 'u': upgrade = 1; break;
        case 'V': printf("portcullis %s (%s)\n", PORTCULLIS_VERSION, OpenSSL_version(OPENSSL_VERSION)); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }

    cfg_t *cfg = load(path);
    if (!cfg)
        return 2;
    gw_runtime_t rt = {.cfg = cfg};
    char err[512];
    gw_log_setup(cfg->logging.level, cfg->logging.format);
    int problems = prepare(&rt, path);
    if (problems || check) {
        if (!problems)
            printf("OK\n");
        policy_free(&rt);
        tls_ctx_free(rt.tls);
        cfg_free(cfg);
        return problems ? 2 : 0;
    }

    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);   /* workers inherit: only main takes signals */

    rt.health = ups_health_new(cfg);
    rt.mirror = pol_mirror_new(cfg);
    gw_worker_t *workers = calloc((size_t)cfg->workers, sizeof(*workers));
    control_t ctl = {.base = event_base_new(), .workers = workers, .nworkers = cfg->workers};
    if (!rt.health || !rt.mirror || !workers || !ctl.base) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    tls_ctx_set_mirror(rt.tls, rt.mirror);
    struct event *jwks_timer = event_new(ctl.base, -1, EV_PERSIST, on_jwks_timer, &rt);
    struct timeval five = {5, 0};
    if (rt.njwks_files && jwks_timer)
        event_add(jwks_timer, &five);
    trim_t trim = {.rt = &rt};
    struct event *trim_timer = event_new(ctl.base, -1, EV_PERSIST, on_trim_timer, &trim);
    struct timeval tick = {TRIM_TICK_MS / 1000, (TRIM_TICK_MS % 1000) * 1000};
    if (!trim_timer || event_add(trim_timer, &tick) != 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    /* The listening sockets: the running gateway's (--upgrade), or bound
     * here after checking that no other process listens there. */
    gw_lset_t *ls = gw_lset_new(cfg);
    gw_upgrade_client_t *upc = NULL;
    gw_upgrade_server_t *ups = NULL;
    if (!ls || (upgrade && !(upc = gw_upgrade_fetch(cfg->upgrade_socket, ls, GW_UPGRADE_TIMEOUT_MS,
                                                    err, sizeof err))) ||
        gw_lset_fill(ls, (size_t)cfg->workers, 1, err, sizeof err) < 0 ||
        (!upgrade && !(ups = gw_upgrade_server_start(ctl.base, cfg->upgrade_socket, ls,
                                                     on_upgrade_ready, &ctl, err, sizeof err)))) {
        gw_log(GW_ERR, NULL, "%s", ls ? err : "out of memory");
        exit(1);
    }
    int n = 0, rc = 0;
    for (; n < cfg->workers; n++) {
        if (gw_worker_init(&workers[n], n, &rt, ls, err, sizeof(err)) < 0) {
            gw_log(GW_ERR, NULL, "worker %d: %s", n, err);
            gw_worker_free(&workers[n]);
            rc = 1;
            break;
        }
    }
    if (rc == 0) {
        ctl.sync = pol_revsync_start(ctl.base, cfg, rt.mirror, on_revocation_change, &ctl);
        if (cfg->admin.enabled) {
            ctl.admin = gw_admin_start(ctl.base, cfg, rt.mirror, rt.tls, err, sizeof(err));
            if (!ctl.admin) {
                gw_log(GW_ERR, NULL, "admin listener: %s", err);
                exit(1);
            }
        }
        if (!ctl.sync || pthread_create(&ctl.thread, NULL, control_main, &ctl) != 0) {
            gw_log(GW_ERR, NULL, "cannot start the revocation sync");
            exit(1);
        }
        wait_for_mirror(cfg, rt.mirror);
        for (int i = 0; i < n; i++)
            if (gw_worker_start(&workers[i]) != 0) {
                gw_log(GW_ERR, NULL, "cannot start worker %d", i);
                exit(1);
            }
        for (size_t i = 0; i < cfg->nlisteners; i++)
            gw_log(GW_INFO, NULL, "listening on %s (%d workers, %zu routes, %zu trust classes)",
                   cfg->listeners[i].text, cfg->workers, cfg->nroutes, cfg->tls.nclasses);
        if (upc) {
            /* serving now: the old process may drain; then its upgrade socket is ours */
            if (gw_upgrade_ready(upc, err, sizeof err) < 0)
                gw_log(GW_ERR, NULL, "%s", err);
            else
                gw_log(GW_INFO, NULL, "upgrade: the old process confirmed; it drains and exits");
            if (!(ups = gw_upgrade_server_start(ctl.base, cfg->upgrade_socket, ls,
                                                on_upgrade_ready, &ctl, err, sizeof err)))
                gw_log(GW_ERR, NULL, "%s; a later --upgrade cannot take over this process", err);
            upc = NULL;
        }
        for (;;) {
            int sig = 0;
            if (sigwait(&sigs, &sig) != 0)
                continue;
            if (sig == SIGHUP) {
                /* Validate only: a bad file never replaces the running config. */
                cfg_t *next = load(path);
                gw_log(next ? GW_WARN : GW_ERR, NULL,
                       next ? "SIGHUP: %s is valid; live reload is not supported, restart to apply it"
                            : "SIGHUP: %s is invalid; keeping the running configuration",
                       path);
                cfg_free(next);
                continue;
            }
            gw_log(GW_INFO, NULL, "%s: draining (up to %llums)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   (unsigned long long)cfg->timeouts.drain_ms);
            break;
        }
        gw_lset_close(ls);   /* with the workers' copies, the last ones (unless handed over) */
        for (int i = 0; i < n; i++)
            gw_worker_stop(&workers[i]);
        for (int i = 0; i < n; i++)
            gw_worker_join(&workers[i]);
        event_base_loopbreak(ctl.base);
        pthread_join(ctl.thread, NULL);
        gw_upgrade_server_free(ups);
        gw_admin_free(ctl.admin);
        pol_revsync_stop(ctl.sync);
        gw_log(GW_INFO, NULL, "stopped");
    }
    for (int i = 0; i < n; i++)
        gw_worker_free(&workers[i]);
    free(workers);
    gw_upgrade_client_free(upc);
    if (rc)
        gw_upgrade_server_free(ups);
    gw_lset_free(ls);
    if (jwks_timer)
        event_free(jwks_timer);
    event_free(trim_timer);
    event_base_free(ctl.base);
    pol_mirror_free(rt.mirror);
    policy_free(&rt);
    ups_health_free(rt.health);
    tls_ctx_free(rt.tls);
    cfg_free(cfg);
    return rc;
}
