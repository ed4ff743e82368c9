/* gateway/runtime: configuration generations, and the process state that
 * outlives them.
 *
 * A generation (gw_gen_t) is everything built from one configuration file:
 * the cfg_t, the TLS context, JWKS stores, the issuance CA and attestation
 * keys, header-name tables, upstream health, and the listening sockets it
 * names. One builder, gw_gen_build, makes it for the start, for `--check` and
 * for every reload; it builds completely or not at all, so a reload that
 * fails changes nothing. Generations are reference counted, as nginx keeps
 * old cycles: the process holds the current one, and each worker holds every
 * generation it still has connections of (see worker.c). The last release
 * frees it, from whichever thread that is.
 *
 * The process (gw_proc_t) holds what a reload must never reset: the
 * revocation mirror, the local rate limiter and the per-IP connection
 * limiter (both keep no config: each call passes the current limits), the
 * connection counters, and the listening sockets (shared by the generations
 * that name the same address, so a reload never closes a socket it keeps).
 *
 * Threads: gw_gen_build and gw_proc_publish run on the main thread only (one
 * reload at a time); gw_proc_current and gw_gen_release on any thread.
 */
#ifndef PORTCULLIS_RUNTIME_H
#define PORTCULLIS_RUNTIME_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "../config/config.h"
#include "../policy/iroute.h"
#include "../policy/jwt.h"
#include "../policy/mirror.h"
#include "../policy/ratelimit.h"
#include "../tls/tls.h"
#include "../upstream/http.h"
#include "../upstream/proxy.h"

typedef struct gw_listener gw_listener_t;
typedef struct gw_proc gw_proc_t;
typedef struct gw_file gw_file_t;

typedef struct gw_gen {
    uint64_t number;               /* 1 at the start, +1 per applied reload */
    int refs;                      /* atomic; gw_gen_acquire/release only */
    gw_proc_t *proc;               /* NULL for --check */
    cfg_t *cfg;
    tls_ctx_t *tls;
    ups_health_t *health;
    pol_rl_t *rl;                  /* the process's local limiter (not owned); NULL if unused */
    pol_connlimit_t *connlimit;    /* the process's connection limiter (not owned); NULL if unused */
    pol_jwks_store_t **jwks;       /* per route (NULL when it checks no JWT); shared by file */
    pol_jwks_store_t **jwks_files; /* the distinct stores, for refresh and free */
    size_t njwks_files;
    struct iss_gen *iss;           /* certificate issuance (issuance/iss.h); NULL if disabled */
    pol_iroute_t *iroutes;         /* the internal routes (gateway/iroute.c), as registered */
    size_t niroutes;
    char **claim_headers;          /* every header a token claim may be injected as */
    size_t nclaim_headers;
    ups_names_t *hnames;           /* which client request headers are forwarded */
    gw_listener_t **listeners;     /* per cfg->listeners[i]; NULL for --check */
    gw_file_t *files;              /* every file it was built from, with its digest */
    size_t nfiles;
    double build_ms;               /* how long gw_gen_build took */
} gw_gen_t;

/* The table of internal routes (policy/iroute.h). gw_iroutes_add is a
 * pol_iroute_add_fn whose table is the gw_gen_t (syscall-like); match
 * answers the entry whose path is the canonical path (without the query),
 * compared as routes are (cfg_path_eq, so http.path_case applies), or NULL. */
int gw_iroutes_add(void *table, const pol_iroute_t *route);
const pol_iroute_t *gw_iroute_match(const gw_gen_t *g, const char *path, size_t plen);

/* What a reload changed, for its log line and the admin answer. Strings are
 * owned by the struct (gw_changes_free). */
typedef struct {
    char **files, **routes_added, **routes_removed, **routes_changed, **classes,
         **listeners_added, **listeners_removed;
    size_t nfiles, nroutes_added, nroutes_removed, nroutes_changed, nclasses, nlisteners_added,
           nlisteners_removed;
} gw_changes_t;

/* ---- the process ---- */

/* The process state; its first generation's configuration becomes the
 * process's own (gw_proc_boot: the keys a reload may not change are read from
 * it). NULL on out of memory. */
gw_proc_t *gw_proc_new(void);
/* After every worker has stopped and released its generations. */
void gw_proc_free(gw_proc_t *p);
const cfg_t *gw_proc_boot(const gw_proc_t *p);
pol_mirror_t *gw_proc_mirror(gw_proc_t *p);
void gw_proc_set_mirror(gw_proc_t *p, pol_mirror_t *m);
/* Live client connections, and all accepted so far (atomics). */
uint32_t *gw_proc_nconns(gw_proc_t *p);
uint64_t *gw_proc_accepted(gw_proc_t *p);

/* Where the process is in its life, for /readyz: starting until every
 * worker accepts, serving, then draining from SIGTERM/SIGINT on (atomic;
 * set by the main thread, read by any). */
enum gw_phase { GW_PHASE_STARTING = 0, GW_PHASE_SERVING, GW_PHASE_DRAINING };
void gw_proc_set_phase(gw_proc_t *p, int phase);
int gw_proc_phase(gw_proc_t *p);
/* Unix time (with fraction) the process state was made, near exec. */
double gw_proc_started(const gw_proc_t *p);
/* Listeners of the current generation that still have an open socket. */
size_t gw_proc_open_listeners(gw_proc_t *p);

/* A new reference to the current generation (release it). */
gw_gen_t *gw_proc_current(gw_proc_t *p);
/* Makes gen (whose reference the process takes over) the current one;
 * returns the previous one, whose reference passes to the caller (NULL at
 * the start). */
gw_gen_t *gw_proc_publish(gw_proc_t *p, gw_gen_t *gen);
/* Generations alive (current and old ones still pinned by connections). */
unsigned gw_proc_live_generations(gw_proc_t *p);

/* The runtime counters shown by /admin/health. */
typedef struct {
    uint64_t generation, reloads, reload_failures;
    unsigned live;
    int have_last;          /* a reload was tried */
    int last_ok;
    time_t last_at;
    double last_build_ms;
} gw_reload_stats_t;
void gw_proc_reload_stats(gw_proc_t *p, gw_reload_stats_t *st);
void gw_proc_note_reload(gw_proc_t *p, int ok, double build_ms);

/* ---- generations ---- */

/* The one builder. Loads path and everything it names; with p, also checks
 * that no restart-only key differs from the running configuration. Returns
 * the generation (one reference, number not yet assigned: gw_proc_publish
 * does), or NULL with every problem in errs ("file:line:col: key: message"
 * from the config, "file: message" for the rest), having changed nothing.
 * p NULL: for --check. */
gw_gen_t *gw_gen_build(gw_proc_t *p, const char *path, cfg_errors_t *errs);
/* The listening sockets of a built generation (not for --check): those of
 * the current generation for the addresses it has, new ones for the others.
 * Binding depends on the moment, not on the file, so it is its own step
 * (the start exits 1 when it fails, 2 for the builder's problems). 0, or -1
 * with the reason in errs (nothing left open; release the generation). */
int gw_gen_listen(gw_gen_t *g, cfg_errors_t *errs);
/* A generation that is no longer current, once every worker has stopped
 * polling its sockets: it gives up its listeners, so a listener no current
 * generation names is closed now (new connections to it are refused) rather
 * than with the old generation's last connection. Main thread. */
void gw_gen_unlisten(gw_gen_t *g);
gw_gen_t *gw_gen_acquire(gw_gen_t *g);
void gw_gen_release(gw_gen_t *g);

/* A listener has gw_listener_slots() sockets: one per worker when this
 * process bound it, as many as the previous process had after a binary
 * upgrade. Slot j is polled by worker j % gw_listener_workers(), so with
 * fewer workers than sockets a worker polls several and none is left
 * unpolled. gw_listener_fd: the socket of a slot (-1 once its worker has
 * closed it). */
int gw_listener_fd(gw_listener_t *l, int slot);
int gw_listener_slots(const gw_listener_t *l);
int gw_listener_workers(const gw_listener_t *l);
const char *gw_listener_text(const gw_listener_t *l);
/* The worker polling slot stops accepting on it for good (drain): closes it. */
void gw_listener_close_fd(gw_listener_t *l, int slot);

/* Boolean-like (0: nothing holds it, -1 with err): does a live socket of
 * another process (or of this one) listen on a? Binds a socket with
 * SO_REUSEADDR and without SO_REUSEPORT, which only a listening socket on an
 * overlapping address refuses, and closes it. The refusal reads "listen on
 * <addr>: another process is already listening there (a second gateway?);
 * to replace a running gateway without dropping connections, start the new
 * one with --upgrade". Every listener this process does not hold yet is
 * probed before it is bound (at the start and when a reload adds one). */
int gw_listen_probe(const cfg_addr_t *a, char *err, size_t errlen);

/* ---- binary upgrade (gateway/upgrade.h) ---- */

/* A listening socket received from the previous process: kept for the
 * listener of its bound address in cfg (the next gw_gen_listen takes it
 * instead of binding a new one). Returns that listener's index, or -1 with
 * err, fd closed (not a listening TCP socket, or an address cfg lacks).
 * Main thread, before gw_gen_listen. */
int gw_proc_adopt(gw_proc_t *p, const cfg_t *cfg, int fd, char *err, size_t errlen);
/* Closes received sockets no listener took (not those of gw_proc_adopt_http). */
void gw_proc_drop_inherited(gw_proc_t *p);

/* The plain-HTTP listeners (admin, metrics) are handed over too, so an
 * upgrade on the same configuration needs no second address for them. */
enum gw_http_kind { GW_HTTP_ADMIN = 0, GW_HTTP_METRICS = 1, GW_HTTP_KINDS = 2 };
/* A listening socket the previous process served admin or metrics on: kept
 * for the listener of cfg with its bound address (admin.listen or
 * metrics.address). Returns that listener's kind, or -1 with err, fd closed
 * (not a listening TCP socket, or neither address). Main thread, before the
 * listeners start. */
int gw_proc_adopt_http(gw_proc_t *p, const cfg_t *cfg, int fd, char *err, size_t errlen);
/* The socket adopted for kind (the caller's now), or -1: bind one. *deferred
 * is 1 under --upgrade: the listener must not accept before the takeover
 * (the old process serves until READY). Main thread, as the listener
 * starts (before the control thread runs). */
int gw_proc_take_http(gw_proc_t *p, int kind, int *deferred);
/* The socket the listener of kind accepts on (its own; -1: none, or it
 * stopped), for gw_proc_sockets. */
void gw_proc_set_http_fd(gw_proc_t *p, int kind, int fd);
/* With --upgrade, sockets this process binds itself (more workers, new
 * addresses) join the kernel's SO_REUSEPORT group only once it can serve:
 * gw_proc_defer_listen before gw_gen_listen binds them without listen();
 * gw_proc_listen_deferred listens on them (0, or -1 with err), just before
 * the workers start. If the upgrade is given up first, nothing was queued
 * on them, so nothing is reset. Main thread. */
void gw_proc_defer_listen(gw_proc_t *p);
int gw_proc_listen_deferred(gw_proc_t *p, char *err, size_t errlen);

/* One listening socket of the current generation, for the upgrade
 * handover: a duplicate (the caller's to close), which listener it is (its
 * index in listeners[], or GW_PROC_SOCK_ADMIN / GW_PROC_SOCK_METRICS), its
 * index among that listener's sockets and their count, and the address text. */
#define GW_PROC_SOCK_ADMIN ((size_t)0xfffe)
#define GW_PROC_SOCK_METRICS ((size_t)0xffff)
typedef struct {
    int fd;
    size_t listener, sock, nsocks;
    char text[208];
} gw_proc_sock_t;
/* Every listening socket of the current generation, then those of the
 * admin and metrics listeners (none when there is no client socket left),
 * duplicated in one hold
 * of the lock (a reload cannot change the set midway): *out is the caller's
 * (close each fd that is >= 0, then free it). The count, or -1 when out of
 * memory. */
ssize_t gw_proc_sockets(gw_proc_t *p, gw_proc_sock_t **out);

/* What changed from old to new (old may be NULL: nothing is compared). 0, or
 * -1 out of memory. */
int gw_changes_compute(const gw_gen_t *old, const gw_gen_t *gen, gw_changes_t *ch);
/* One line: "files: a, b; routes: +1 -1 ~0; classes: device; listeners: +0 -0"
 * (routes added, removed, and with other settings; classes whose trust
 * changed, added or removed). */
void gw_changes_summary(const gw_changes_t *ch, char *out, size_t len);
void gw_changes_free(gw_changes_t *ch);

/* The admin bearer token: the value of the variable admin.token_env names.
 * Returns it, or NULL with a one-line reason in err (unset or empty). The
 * start and `--check` both call this, so they cannot disagree. */
const char *gw_admin_token(const cfg_admin_t *ac, char *err, size_t errlen);

/* Adds one message to an error list (cfg_errors_t's own format). */
void gw_errors_add(cfg_errors_t *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
