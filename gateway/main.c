/* gateway/main: command line, startup, signals, shutdown. */
#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "cli.h"
#include "gateway.h"
#include "../base/dns.h"
#include "../base/errors.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "metrics.h"
#include "service.h"
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
            "  SIGHUP           reload: re-read FILE and every file it names; applied\n"
            "                   only if all of it is valid (else logged, and the running\n"
            "                   configuration keeps serving); see docs/operations.md\n"
            "  SIGUSR1          reopen logging.file by its name (after logrotate\n"
            "                   renamed it); --check and the commands ignore it\n"
            "  SIGUSR2          binary upgrade: start the binary at the path this\n"
            "                   process was started from (a replaced file is the new\n"
            "                   binary) with the same arguments plus --upgrade; it\n"
            "                   takes over and this process drains (under systemd:\n"
            "                   systemctl kill -s USR2 portcullis); if it fails, this\n"
            "                   process keeps serving\n"
            "\n"
            "Under systemd (Type=notify) the gateway reports READY=1, RELOADING=1 and\n"
            "STOPPING=1 over $NOTIFY_SOCKET (contrib/portcullis.service).\n"
            "\n"
            "Exit status (gateway): 0 stopped by a signal, or --check found no\n"
            "problem; 2 usage or configuration error (what --check reports);\n"
            "1 any other failure to start (a listener cannot be bound or another\n"
            "process listens there, --upgrade finds no running gateway, ...).\n");
    gw_cli_exit_status(f);
    fprintf(f, "Configuration reference: docs/configuration.md\n");
}

/* The control thread runs the revocation sync, the admin listener and the
 * timers; the main thread takes signals and runs reloads. */
typedef struct {
    struct event_base *base;
    pol_revsync_t *sync;
    gw_admin_t *admin;
    gw_metrics_http_t *metrics;   /* the metrics listener; NULL without a metrics section */
    pthread_t thread;
    gw_worker_t *workers;
    int nworkers;
    gw_proc_t *proc;
    int reload_pipe[2];     /* the admin asks the main thread for a reload */
    pthread_mutex_t stop_mu;
    int stopping;           /* under stop_mu: the drain began, reloads are refused */
    gw_upgrade_server_t *ups;   /* the upgrade socket (gateway/upgrade.h); control thread */
    int handed_over;        /* atomic: a new process (--upgrade) serves; it is systemd's main now */
    pid_t upgrade_child;    /* main thread: the process SIGUSR2 started, until it exits or serves */
} control_t;

/* ---- SIGUSR2: the binary on disk takes over ---- */

/* The executable this process was started from, resolved at the start (so
 * that a file replaced since then is what SIGUSR2 runs), and the command
 * line. */
static char self_exe[4096];
static int self_argc;
static char **self_argv;

static void remember_self(int argc, char **argv)
{
    self_argc = argc;
    self_argv = argv;
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n > 0) {
        self_exe[n] = '\0';
        return;
    }
    char *r = realpath(argv[0], NULL);
    if (r && strlen(r) < sizeof self_exe)
        memcpy(self_exe, r, strlen(r) + 1);
    else
        self_exe[0] = '\0';
    free(r);
}

/* self_argv with --upgrade (once); NULL-terminated, or NULL. */
static char **upgrade_argv(void)
{
    char **v = calloc((size_t)self_argc + 2, sizeof *v);
    if (!v)
        return NULL;
    int n = 0, has = 0;
    for (int i = 0; i < self_argc; i++) {
        has |= strcmp(self_argv[i], "--upgrade") == 0;
        v[n++] = self_argv[i];
    }
    if (!has)
        v[n++] = "--upgrade";
    return v;
}

/* Forks and execs self_exe --upgrade: the child inherits the service's
 * cgroup, sandbox, uid, capabilities and $NOTIFY_SOCKET, so the service
 * manager follows it once this process sends MAINPID= (on_upgrade_ready).
 * A failed exec or a child that gives up leaves this process serving. */
static void upgrade_by_signal(control_t *ctl)
{
    if (ctl->upgrade_child > 0) {
        pc_log_ev(PC_WARN, "upgrade", NULL, "SIGUSR2: pid %ld is taking over already; ignored",
                  (long)ctl->upgrade_child);
        return;
    }
    char **argv = self_exe[0] ? upgrade_argv() : NULL;
    int pfd[2] = {-1, -1};
    if (!argv || pipe2(pfd, O_CLOEXEC) != 0) {
        pc_log_ev(PC_ERR, "upgrade", NULL, "SIGUSR2: %s; this process keeps serving",
                  !self_exe[0] ? "the path of this process's executable is unknown" : strerror(errno));
        free(argv);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {   /* only async-signal-safe calls until the exec */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(self_exe, argv);
        int e = errno;
        ssize_t w = write(pfd[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    int e = pid < 0 ? errno : 0;
    close(pfd[1]);
    if (pid > 0) {
        ssize_t r;
        while ((r = read(pfd[0], &e, sizeof e)) < 0 && errno == EINTR)
            ;
        if (r != (ssize_t)sizeof e)
            e = 0;   /* closed by the exec: it runs */
    }
    close(pfd[0]);
    free(argv);
    if (pid < 0 || e) {
        pc_log_ev(PC_ERR, "upgrade", NULL, "SIGUSR2: cannot %s %s: %s; this process keeps serving",
                  pid < 0 ? "fork to run" : "execute", self_exe, strerror(e));
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return;
    }
    ctl->upgrade_child = pid;
    gw_upgrade_expect_child(pid);
    pc_log_ev(PC_INFO, "upgrade", NULL, "SIGUSR2: started pid %ld (%s --upgrade) to take over",
              (long)pid, self_exe);
}

/* SIGCHLD: the process SIGUSR2 started exited without taking over. */
static void reap_upgrade_child(control_t *ctl)
{
    int st;
    if (ctl->upgrade_child <= 0 || waitpid(ctl->upgrade_child, &st, WNOHANG) != ctl->upgrade_child)
        return;
    char how[48];
    if (WIFEXITED(st))
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(st));
    else
        snprintf(how, sizeof how, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: pid %ld (started on SIGUSR2) ended (%s) without "
              "taking over; this process keeps serving", (long)ctl->upgrade_child, how);
    ctl->upgrade_child = 0;
    gw_upgrade_expect_child(0);
}

static void on_revocation_change(void *arg)
{
    control_t *ctl = arg;
    for (int i = 0; i < ctl->nworkers; i++)
        gw_worker_notify_revocation(&ctl->workers[i]);
}

/* JWKS files are re-read when they change; a bad file keeps the old keys. */
static void on_jwks_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    control_t *ctl = arg;
    gw_gen_t *g = gw_proc_current(ctl->proc);
    for (size_t i = 0; i < g->njwks_files; i++) {
        char err[256];
        int r = pol_jwks_store_refresh(g->jwks_files[i], err, sizeof(err));
        if (r > 0)
            pc_log_ev(PC_INFO, "jwks_reload", NULL, "JWKS reloaded");
        else if (r < 0)
            pc_log_ev(PC_ERR, "jwks_reload_failed", NULL, "JWKS reload failed, keeping the previous keys: %s", err);
    }
    gw_gen_release(g);
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
    gw_proc_t *proc;
    uint64_t seen;      /* accepted connections at the last tick */
    uint64_t trimmed;   /* accepted connections at the last trim */
} trim_t;

static void on_trim_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    trim_t *t = arg;
    uint64_t now = __atomic_load_n(gw_proc_accepted(t->proc), __ATOMIC_RELAXED);
    if (now != t->seen) {
        t->seen = now;   /* still arriving: not now */
        return;
    }
    if (now == t->trimmed)
        return;          /* nothing new since the last trim */
    int released = malloc_trim(0);
    pc_log_ev(PC_DEBUG, "memory_trim", NULL, "memory: heaps trimmed after %llu new connections (%s)",
           (unsigned long long)(now - t->trimmed), released ? "memory returned" : "nothing to return");
    t->trimmed = now;
}

static void *control_main(void *arg)
{
    control_t *ctl = arg;
    pc_metrics_thread_attach();
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
        pc_log_ev(PC_ERR, "revocation_not_loaded", NULL, "revocation mirror not loaded yet (Redis %s:%d unreachable?): "
               "new handshakes are refused until it is", cfg->redis.host, cfg->redis.port);
}

static void print_errors(const cfg_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
}

/* ---- reload ---- */

/* A reload's answer for the admin API, delivered on the control thread. */
typedef struct {
    gw_admin_t *admin;
    int status;
    char *json;
} answer_t;

static void deliver_answer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    answer_t *ans = arg;
    gw_admin_reload_done(ans->admin, ans->status, ans->json);
    free(ans->json);
    free(ans);
}

static void answer_admin(control_t *ctl, int status, json_t *body)
{
    answer_t *ans = calloc(1, sizeof *ans);
    if (ans) {
        ans->admin = ctl->admin;
        ans->status = status;
        ans->json = body ? json_dumps(body, JSON_COMPACT) : NULL;
    }
    json_decref(body);
    struct timeval now = {0, 0};
    if (!ans || event_base_once(ctl->base, -1, EV_TIMEOUT, deliver_answer, ans, &now) != 0) {
        pc_log_ev(PC_ERR, "reload_error", NULL, "reload: out of memory for the admin answer");
        if (ans)
            free(ans->json);
        free(ans);
    }
}

/* A reload's error answer for the admin API: catalog entry e with msg and
 * the running generation (NULL if out of memory). */
static json_t *reload_error(enum pc_err e, const char *msg, uint64_t generation)
{
    return json_pack("{s:s, s:s, s:I}", "error", pc_err_code(e), "message", msg, "generation",
                     (json_int_t)generation);
}

static json_t *shutting_down_json(void)
{
    return json_pack("{s:s, s:s}", "error", pc_err_code(PC_E_SHUTTING_DOWN), "message",
                     "the gateway is shutting down; nothing was reloaded");
}

/* Runs on the admin's thread: hands the request to the main thread, or
 * answers at once once the drain has begun. */
static void ask_reload(void *arg)
{
    control_t *ctl = arg;
    char b = 'r';
    pthread_mutex_lock(&ctl->stop_mu);
    int stopping = ctl->stopping;
    if (!stopping && write(ctl->reload_pipe[1], &b, 1) != 1)
        pc_log_ev(PC_ERR, "reload_error", NULL, "reload: cannot reach the main thread: %s", strerror(errno));
    pthread_mutex_unlock(&ctl->stop_mu);
    if (stopping) {
        json_t *o = shutting_down_json();
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        gw_admin_reload_done(ctl->admin, pc_err_status(PC_E_SHUTTING_DOWN), text);
        free(text);
        json_decref(o);
    }
}

/* The drain begins: a reload asked and not yet run is answered 503. */
static void refuse_reloads(control_t *ctl)
{
    char buf[64];
    pthread_mutex_lock(&ctl->stop_mu);
    ctl->stopping = 1;
    int asked = read(ctl->reload_pipe[0], buf, sizeof buf) > 0;
    pthread_mutex_unlock(&ctl->stop_mu);
    if (asked)
        answer_admin(ctl, pc_err_status(PC_E_SHUTTING_DOWN), shutting_down_json());
}

static json_t *strv_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *changes_json(const gw_changes_t *ch)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "files", strv_json(ch->files, ch->nfiles),
                     "routes_added", strv_json(ch->routes_added, ch->nroutes_added),
                     "routes_removed", strv_json(ch->routes_removed, ch->nroutes_removed),
                     "routes_changed", strv_json(ch->routes_changed, ch->nroutes_changed),
                     "classes_changed", strv_json(ch->classes, ch->nclasses),
                     "listeners_added", strv_json(ch->listeners_added, ch->nlisteners_added),
                     "listeners_removed", strv_json(ch->listeners_removed, ch->nlisteners_removed));
}

/* The revocation sync judges "<class>:<serial>" entries by the running
 * classes: told on its own thread, the generation held until then. */
typedef struct {
    pol_revsync_t *sync;
    gw_gen_t *gen;
} classes_t;

static void on_classes(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    classes_t *cl = arg;
    pol_revsync_set_classes(cl->sync, &cl->gen->cfg->tls);
    gw_gen_release(cl->gen);
    free(cl);
}

static int same_class_names(const cfg_t *a, const cfg_t *b)
{
    if (a->tls.nclasses != b->tls.nclasses)
        return 0;
    for (size_t i = 0; i < a->tls.nclasses; i++)
        if (strcmp(a->tls.classes[i].name, b->tls.classes[i].name) != 0)
            return 0;
    return 1;
}

/* The upgrade socket follows the running configuration (its default name
 * derives from listeners[0]): a reload that changes it moves it, on the
 * control thread, the old one kept if the new name cannot be bound. */
typedef struct {
    control_t *ctl;
    gw_gen_t *gen;
} move_t;

static void on_upgrade_ready(void *arg, pid_t pid);

static void on_move_upgrade(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    move_t *mv = arg;
    control_t *ctl = mv->ctl;
    char err[512];
    gw_upgrade_server_t *next = gw_upgrade_server_start(ctl->base, mv->gen->cfg->upgrade_socket, ctl->proc,
                                                        on_upgrade_ready, ctl, err, sizeof err);
    if (next) {
        pc_log_ev(PC_INFO, "upgrade_socket", NULL, "upgrade socket now %s", mv->gen->cfg->upgrade_socket);
        gw_upgrade_server_free(ctl->ups);
        ctl->ups = next;
    } else {
        pc_log_ev(PC_ERR, "upgrade_socket", NULL, "%s; --upgrade still finds this gateway on the previous name", err);
    }
    gw_gen_release(mv->gen);
    free(mv);
}

static void move_upgrade_socket(control_t *ctl, gw_gen_t *gen)
{
    move_t *mv = calloc(1, sizeof *mv);
    struct timeval now = {0, 0};
    if (mv) {
        mv->ctl = ctl;
        mv->gen = gw_gen_acquire(gen);
    }
    if (!mv || event_base_once(ctl->base, -1, EV_TIMEOUT, on_move_upgrade, mv, &now) != 0) {
        pc_log_ev(PC_ERR, "reload_error", NULL, "reload: out of memory moving the upgrade socket");
        if (mv)
            gw_gen_release(mv->gen);
        free(mv);
    }
}

static void tell_sync_classes(control_t *ctl, gw_gen_t *gen)
{
    classes_t *cl = calloc(1, sizeof *cl);
    struct timeval now = {0, 0};
    if (cl) {
        cl->sync = ctl->sync;
        cl->gen = gw_gen_acquire(gen);
    }
    if (!cl || event_base_once(ctl->base, -1, EV_TIMEOUT, on_classes, cl, &now) != 0) {
        pc_log_ev(PC_ERR, "reload_error", NULL, "reload: out of memory telling the revocation sync the new classes");
        if (cl)
            gw_gen_release(cl->gen);
        free(cl);
    }
}

/* Every worker gives new connections the published generation, or the
 * wait gives up (logged: a stuck worker would be a bug). */
#define SWITCH_WAIT_MS 10000

static int switch_workers(control_t *ctl, uint64_t number)
{
    for (int i = 0; i < ctl->nworkers; i++)
        gw_worker_reload(&ctl->workers[i]);
    for (int waited = 0; waited < SWITCH_WAIT_MS; waited++) {
        int all = 1;
        for (int i = 0; i < ctl->nworkers && all; i++)
            all = gw_worker_generation(&ctl->workers[i]) >= number;
        if (all)
            return 0;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pc_log_ev(PC_ERR, "reload_error", NULL, "reload: a worker did not switch to generation %llu within %d ms",
           (unsigned long long)number, SWITCH_WAIT_MS);
    return -1;
}

/* After the drop to user:, a file the gateway cannot read any more is the
 * usual reason a reload fails: said in so many words. */
static void note_dropped(const cfg_t *boot, const cfg_errors_t *errs)
{
    if (!boot->runas.user || geteuid() == 0)
        return;
    for (size_t i = 0; i < errs->n; i++)
        if (strstr(errs->msgs[i], strerror(EACCES))) {
            pc_log_ev(PC_ERR, "reload_failed", NULL, "reload: the gateway runs as user %s (uid %ld, "
                      "the configuration's user:): every file the configuration names must be readable "
                      "by that user (logging.file writable, and its directory writable for a new "
                      "file after a rotation)", boot->runas.user, (long)geteuid());
            return;
        }
}

static void reload_refused(control_t *ctl, const gw_gen_t *cur, const cfg_errors_t *errs,
                           double ms, int from_admin)
{
    gw_proc_note_reload(ctl->proc, 0, ms);
    pc_log_ev(PC_ERR, "reload_failed", NULL, "reload: refused, generation %llu keeps serving: %zu problem(s)",
           (unsigned long long)cur->number, errs->n);
    for (size_t i = 0; i < errs->n; i++)
        pc_log_config_error(PC_ERR, "reload: ", errs->msgs[i]);
    note_dropped(gw_proc_boot(ctl->proc), errs);
    if (from_admin) {
        char msg[160];
        snprintf(msg, sizeof msg, "the configuration was not applied; the running one "
                 "(generation %llu) keeps serving", (unsigned long long)cur->number);
        json_t *o = reload_error(PC_E_RELOAD_FAILED, msg, cur->number);
        if (o && json_object_set_new(o, "errors", strv_json(errs->msgs, errs->n)) < 0) {
            json_decref(o);   /* out of memory: answered as such */
            o = NULL;
        }
        answer_admin(ctl, pc_err_status(PC_E_RELOAD_FAILED), o);
    }
}

/* Lines go to the configuration's logging.file (stderr without one): a
 * reload may name another file; one that cannot be opened refuses it. The
 * same file is opened again by its name (as on SIGUSR1, after a manual
 * rotation); if that fails the reload goes on with the file in use. */
static int switch_log_file(const cfg_t *cfg, cfg_errors_t *errs)
{
    char err[600];
    int r = pc_log_file(cfg->logging.file, err, sizeof err);
    if (r == 1 && cfg->logging.file && pc_log_reopen(err, sizeof err) < 0)
        pc_log_ev(PC_ERR, "log_reopen_failed", NULL, "reload: %s; still writing to the previous file", err);
    if (r >= 0)
        return 0;
    gw_errors_add(errs, "%s: logging.file: %s", cfg->path, err);
    return -1;
}

/* SIGUSR1: the log file again by its name (logrotate renamed it). */
static void reopen_log(void)
{
    char err[600];
    int r = pc_log_reopen(err, sizeof err);
    if (r == 0)
        pc_log_ev(PC_INFO, "log_reopened", NULL, "SIGUSR1: log file reopened");
    else if (r > 0)
        pc_log_ev(PC_INFO, "log_reopened", NULL, "SIGUSR1: logging to stderr (no logging.file): nothing to reopen");
    else
        pc_log_ev(PC_ERR, "log_reopen_failed", NULL, "SIGUSR1: %s; still writing to the previous file", err);
}

/* Builds the new generation completely, then switches to it; on any
 * problem nothing changes. */
static void reload_run(control_t *ctl, const char *path, int from_admin)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cfg_errors_t errs = {0};
    gw_gen_t *cur = gw_proc_current(ctl->proc);
    gw_gen_t *gen = gw_gen_build(ctl->proc, path, &errs);
    if (gen && gw_gen_listen(gen, &errs) < 0) {
        gw_gen_release(gen);
        gen = NULL;
    }
    if (gen && switch_log_file(gen->cfg, &errs) < 0) {   /* the last step that may refuse */
        gw_gen_release(gen);
        gen = NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (!gen) {
        reload_refused(ctl, cur, &errs, ms, from_admin);
        gw_gen_release(cur);
        cfg_errors_free(&errs);
        return;
    }
    gw_changes_t ch;
    if (gw_changes_compute(cur, gen, &ch) < 0)
        pc_log_ev(PC_WARN, "reload_error", NULL, "reload: out of memory listing the changes");
    pc_log_setup(gen->cfg->logging.level, gen->cfg->logging.format);
    if (!same_class_names(cur->cfg, gen->cfg))
        tell_sync_classes(ctl, gen);
    if (strcmp(cur->cfg->upgrade_socket, gen->cfg->upgrade_socket) != 0)
        move_upgrade_socket(ctl, gen);   /* ctl->ups is the control thread's */
    gw_service_raise_nofile(gen->cfg, "reload");   /* limits.max_connections may have grown */
    gw_gen_t *old = gw_proc_publish(ctl->proc, gen);
    uint64_t number = gen->number;   /* gen is the process's now */
    int switched = switch_workers(ctl, number) == 0;
    if (switched)
        gw_gen_unlisten(old);   /* nobody polls its sockets: those it alone named close */
    gw_gen_release(old);
    gw_proc_note_reload(ctl->proc, 1, ms);
    char summary[1024];
    gw_changes_summary(&ch, summary, sizeof summary);
    pc_log_ev(PC_INFO, "reload", NULL, "reload: generation %llu applied in %.1f ms (%s)", (unsigned long long)number,
           ms, summary);
    if (from_admin && !switched)
        answer_admin(ctl, pc_err_status(PC_E_RELOAD_INCOMPLETE),
                     reload_error(PC_E_RELOAD_INCOMPLETE, "the new configuration is published, but a worker "
                                  "did not switch to it (see the log)", number));
    else if (from_admin)
        answer_admin(ctl, 200, json_pack("{s:I, s:f, s:o}", "generation", (json_int_t)number,
                                          "build_ms", ms, "changed", changes_json(&ch)));
    gw_changes_free(&ch);
    gw_gen_release(cur);
    cfg_errors_free(&errs);
}

/* A reload, told to the service manager (sd_notify): RELOADING=1, then
 * READY=1 whether it was applied or refused (the gateway serves either way). */
static void reload(control_t *ctl, const char *path, int from_admin)
{
    char msg[96];
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
    gw_service_notify(msg);
    reload_run(ctl, path, from_admin);
    gw_gen_t *g = gw_proc_current(ctl->proc);
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=serving, configuration generation %llu",
             (unsigned long long)g->number);
    gw_gen_release(g);
    gw_service_notify(msg);
}

/* The main thread: signals and reload requests until SIGTERM/SIGINT. */
static int serve(control_t *ctl, const char *path, const sigset_t *sigs)
{
    int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        pc_log_ev(PC_ERR, "signal_error", NULL, "signalfd: %s", strerror(errno));
        return SIGTERM;
    }
    struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = ctl->reload_pipe[0], .events = POLLIN}};
    for (;;) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            pc_log_ev(PC_ERR, "signal_error", NULL, "poll: %s", strerror(errno));
            close(sfd);
            return SIGTERM;
        }
        if (pf[1].revents & POLLIN) {
            char buf[64];
            if (read(ctl->reload_pipe[0], buf, sizeof buf) > 0)
                reload(ctl, path, 1);
        }
        struct signalfd_siginfo si;
        if ((pf[0].revents & POLLIN) && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            if (si.ssi_signo == SIGHUP) {
                pc_log_ev(PC_INFO, "reload_asked", NULL, "SIGHUP: reloading %s", path);
                reload(ctl, path, 0);
                continue;
            }
            if (si.ssi_signo == SIGUSR1) {
                reopen_log();
                continue;
            }
            if (si.ssi_signo == SIGUSR2) {
                upgrade_by_signal(ctl);
                continue;
            }
            if (si.ssi_signo == SIGCHLD) {
                reap_upgrade_child(ctl);
                continue;
            }
            close(sfd);
            return (int)si.ssi_signo;
        }
    }
}

/* Starts the control thread: the revocation sync, then the admin listener. */
static void control_start(control_t *ctl, const cfg_t *cfg, pol_mirror_t *mirror)
{
    char err[512];
    if (pc_dns_start(ctl->base, &cfg->resolver, err, sizeof err) < 0) {   /* names re-resolved */
        pc_log_ev(PC_ERR, "startup_error", NULL, "resolver: %s", err);
        exit(1);
    }
    ctl->sync = pol_revsync_start(ctl->base, cfg, mirror, on_revocation_change, ctl);
    if (cfg->admin.enabled) {
        ctl->admin = gw_admin_start(ctl->base, ctl->proc, err, sizeof(err));
        if (!ctl->admin) {
            pc_log_ev(PC_ERR, "startup_error", NULL, "admin listener: %s", err);
            exit(1);
        }
        gw_admin_set_reload(ctl->admin, ask_reload, ctl);
    }
    if (cfg->metrics.enabled && !(ctl->metrics = gw_metrics_http_start(ctl->base, ctl->proc, err,
                                                                       sizeof(err)))) {
        pc_log(PC_ERR, NULL, "%s", err);
        exit(1);
    }
    if (!ctl->sync || pthread_create(&ctl->thread, NULL, control_main, ctl) != 0) {
        pc_log_ev(PC_ERR, "startup_error", NULL, "cannot start the revocation sync");
        exit(1);
    }
}

/* The upgrade server's READY (control thread): a new process serves on
 * every listener, so this one drains exactly as on SIGTERM. */
static void on_upgrade_ready(void *arg, pid_t new_pid)
{
    control_t *ctl = arg;
    char msg[96];
    /* systemd follows the new process from now on (NotifyAccess=main
     * suffices: this is the main process still); before DONE, so that it
     * arrives before the new process's READY=1 */
    snprintf(msg, sizeof msg, "MAINPID=%ld\nSTATUS=handed over to pid %ld; draining", (long)new_pid,
             (long)new_pid);
    gw_service_notify(msg);
    __atomic_store_n(&ctl->handed_over, 1, __ATOMIC_RELEASE);
    gw_admin_handover(ctl->admin);   /* the new process accepts on the same sockets */
    gw_metrics_http_handover(ctl->metrics);
    kill(getpid(), SIGTERM);
}

/* --upgrade, once this process serves: its admin and metrics listeners
 * start accepting (on the control thread, which owns them). */
static void on_takeover(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    control_t *ctl = arg;
    gw_admin_takeover(ctl->admin);
    gw_metrics_http_takeover(ctl->metrics);
}

/* Ends the control thread, then what ran on it. */
static void control_stop(control_t *ctl)
{
    event_base_loopbreak(ctl->base);
    pthread_join(ctl->thread, NULL);
    gw_admin_free(ctl->admin);
    ctl->admin = NULL;
    gw_metrics_http_free(ctl->metrics);
    ctl->metrics = NULL;
    pc_dns_stop();
    pol_revsync_stop(ctl->sync);
    ctl->sync = NULL;
}

/* With --upgrade, this process takes over only when it can serve: the
 * revocation mirror is loaded (or every handshake would be refused) and no
 * SIGTERM/SIGINT is waiting (an operator who stops the new process during
 * the handover wants the old one to stay). */
static int upgrade_may_take_over(pol_mirror_t *mirror, const sigset_t *sigs)
{
    sigset_t pending;
    sigpending(&pending);
    int stop = 0;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGHUP && sig != SIGUSR1 && sig != SIGUSR2 && sig != SIGCHLD &&
            sigismember(sigs, sig) && sigismember(&pending, sig))
            stop = 1;
    if (stop)
        pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: stopped by a signal during the handover; not taking over: "
               "the running gateway keeps serving");
    else if (!pol_mirror_usable(mirror))
        pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: the revocation mirror could not be loaded, so this process "
               "would refuse every handshake; not taking over: the running gateway keeps serving");
    return !stop && pol_mirror_usable(mirror);
}

/* Workers made but never started: freed; returns 0 (none left). */
static int stop_unstarted(gw_worker_t *workers, int n)
{
    for (int i = 0; i < n; i++)
        gw_worker_free(&workers[i]);
    return 0;
}

/* The drain began: the upgrade socket closes, so a new gateway may start.
 * On the control thread, which owns ctl->ups once it runs. */
static void stop_upgrade_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    control_t *ctl = arg;
    gw_upgrade_server_stop(ctl->ups);
}

/* At most this long at exit for the log writer to write what is buffered
 * (a destination nobody reads must not hang the exit). */
#define LOG_STOP_WAIT_MS 5000

static void stop_log(void)
{
    pc_log_stop(LOG_STOP_WAIT_MS);
}

/* From here on lines go through the writer thread, to logging.file. */
static int start_log(const cfg_t *cfg)
{
    char err[600];
    if (pc_log_file(cfg->logging.file, err, sizeof err) < 0) {
        fprintf(stderr, "%s: logging.file: %s\n", cfg->path, err);
        return -1;
    }
    if (pc_log_start((size_t)cfg->logging.buffer) < 0)
        pc_log_ev(PC_WARN, "log_writer", NULL, "cannot start the log writer thread; lines are written "
                  "synchronously");
    atexit(stop_log);   /* also on exit(1) from a failed start */
    return 0;
}

/* user:/group: once every listener, the admin and metrics listeners, the
 * upgrade socket and the log file are open; a gateway that cannot drop does
 * not start. */
static void drop_privileges(const cfg_t *cfg)
{
    char err[512];
    /* the log file root created becomes the user's: reloads (which check
     * that it is writable) and SIGUSR1 (which opens it again) work after
     * the drop, as in nginx */
    if (cfg->runas.user && geteuid() == 0 && cfg->logging.file &&
        pc_log_chown(cfg->runas.uid, cfg->runas.gid, err, sizeof err) < 0)
        pc_log_ev(PC_WARN, "privileges", NULL, "%s: reloads and SIGUSR1 will fail once running as "
                  "user %s", err, cfg->runas.user);
    if (gw_service_drop(&cfg->runas, err, sizeof err) < 0) {
        pc_log_ev(PC_ERR, "startup_error", NULL, "%s", err);
        exit(1);
    }
    if (cfg->runas.user)
        pc_log_ev(PC_INFO, "privileges", NULL, "running as user %s (uid %ld, gid %ld): certificates, keys, "
                  "CA and JWKS files must be readable by it for reloads; logging.file is its own, and "
                  "its directory must be writable by it for SIGUSR1 after a rotation renamed the file",
                  cfg->runas.user, (long)getuid(), (long)getgid());
    if (cfg->runas.user && cfg->runas.uid == 65534)
        pc_log_ev(PC_WARN, "privileges", NULL, "user: %s (uid 65534) is shared by other daemons, and "
                  "any process of a uid can signal, trace and read the memory (private keys) of "
                  "another: run the gateway as a user of its own (useradd --system portcullis)",
                  cfg->runas.user);
}

/* READY=1 for the service manager. After --upgrade it comes once the old
 * process confirmed (it sent MAINPID=<this pid> before that); when it did
 * not, with MAINPID= of this process itself (which serves). */
static void notify_ready(int upgraded, int confirmed)
{
    char msg[128];
    if (upgraded && confirmed)
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=serving (took over by --upgrade)");
    else if (upgraded)
        snprintf(msg, sizeof msg, "MAINPID=%ld\nREADY=1\nSTATUS=serving (took over by --upgrade)",
                 (long)getpid());
    else
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=serving, configuration generation 1");
    gw_service_notify(msg);
}

/* The gateway: the first generation, the workers, the control thread, then
 * signals until SIGTERM/SIGINT, and the drain. With upgrade, the listening
 * sockets come from the running gateway (gateway/upgrade.h). */
static int run(const char *path, int upgrade)
{
    gw_proc_t *proc = gw_proc_new();
    if (!proc) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    cfg_errors_t errs = {0};
    gw_gen_t *gen = gw_gen_build(proc, path, &errs);
    int rc = gen ? 0 : 2;
    gw_upgrade_client_t *upc = NULL;
    char err[512];
    if (gen)   /* before a socket is received or bound, or the log file opened */
        gw_service_raise_nofile(gen->cfg, "start");
    if (gen && upgrade && !(upc = gw_upgrade_fetch(gen->cfg->upgrade_socket, proc, gen->cfg,
                                                   GW_UPGRADE_TIMEOUT_MS, err, sizeof err))) {
        gw_errors_add(&errs, "%s", err);
        gw_gen_release(gen);
        gen = NULL;
        rc = 1;
    }
    if (gen && upc)
        gw_proc_defer_listen(proc);   /* its own new sockets listen once it can serve */
    if (gen && gw_gen_listen(gen, &errs) < 0) {
        gw_gen_release(gen);
        gen = NULL;
        rc = 1;
    }
    gw_proc_drop_inherited(proc);   /* received for no listener */
    print_errors(&errs);
    cfg_errors_free(&errs);
    if (!gen) {
        gw_upgrade_client_free(upc);
        gw_proc_free(proc);
        return rc;
    }
    const cfg_t *cfg = gw_proc_boot(proc);
    pc_log_setup(cfg->logging.level, cfg->logging.format);
    if (start_log(cfg) < 0) {
        gw_gen_release(gen);
        gw_upgrade_client_free(upc);
        gw_proc_free(proc);
        return 1;
    }
    gw_service_notify_init();   /* before the drop: $NOTIFY_SOCKET may be root's */
    gw_proc_publish(proc, gen);   /* generation 1; the process holds the reference */

    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    sigaddset(&sigs, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);   /* workers inherit: only main takes signals */

    pol_mirror_t *mirror = pol_mirror_new(cfg);
    gw_worker_t *workers = calloc((size_t)cfg->workers, sizeof(*workers));
    control_t ctl = {.base = event_base_new(), .workers = workers, .nworkers = cfg->workers,
                     .proc = proc, .reload_pipe = {-1, -1}, .stop_mu = PTHREAD_MUTEX_INITIALIZER};
    if (!mirror || !workers || !ctl.base || pipe2(ctl.reload_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    gw_proc_set_mirror(proc, mirror);
    struct event *jwks_timer = event_new(ctl.base, -1, EV_PERSIST, on_jwks_timer, &ctl);
    struct timeval five = {5, 0};
    trim_t trim = {.proc = proc};
    struct event *trim_timer = event_new(ctl.base, -1, EV_PERSIST, on_trim_timer, &trim);
    struct timeval tick = {TRIM_TICK_MS / 1000, (TRIM_TICK_MS % 1000) * 1000};
    if (!jwks_timer || event_add(jwks_timer, &five) != 0 || !trim_timer ||
        event_add(trim_timer, &tick) != 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    /* not fatal: a gateway whose upgrade socket name another process holds
     * serves; only a later --upgrade cannot take it over */
    if (!upc && !(ctl.ups = gw_upgrade_server_start(ctl.base, cfg->upgrade_socket, proc,
                                                    on_upgrade_ready, &ctl, err, sizeof err)))
        pc_log_ev(PC_ERR, "upgrade_socket", NULL, "%s; this gateway serves, but a later --upgrade cannot take it over", err);
    int n = 0;
    for (; n < cfg->workers; n++) {
        if (gw_worker_init(&workers[n], n, proc, gen, err, sizeof(err)) < 0) {
            pc_log_ev(PC_ERR, "startup_error", NULL, "worker %d: %s", n, err);
            gw_worker_free(&workers[n]);
            rc = 1;
            break;
        }
    }
    if (rc == 0) {
        control_start(&ctl, cfg, mirror);
        drop_privileges(cfg);   /* every socket and file of the start is open */
        wait_for_mirror(cfg, mirror);
        if (upc && (!upgrade_may_take_over(mirror, &sigs) || gw_proc_listen_deferred(proc, err, sizeof err) < 0)) {
            if (pol_mirror_usable(mirror))
                pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: %s; not taking over", err);
            gw_upgrade_client_free(upc);   /* the old process keeps serving */
            upc = NULL;
            n = stop_unstarted(workers, n);
            control_stop(&ctl);
            rc = 1;
        }
    }
    if (rc == 0) {
        for (int i = 0; i < n; i++)
            if (gw_worker_start(&workers[i]) != 0) {
                pc_log_ev(PC_ERR, "startup_error", NULL, "cannot start worker %d", i);
                exit(1);
            }
        for (size_t i = 0; i < gen->cfg->nlisteners; i++)
            pc_log_ev(PC_INFO, "listening", NULL, "listening on %s (%d workers, %zu routes, %zu trust classes; generation 1)",
                   gen->cfg->listeners[i].addr.text, cfg->workers, gen->cfg->nroutes, gen->cfg->tls.nclasses);
        if (upc && !upgrade_may_take_over(mirror, &sigs)) {
            gw_upgrade_client_free(upc);   /* the old process keeps serving; this one drains */
            upc = NULL;
            rc = 1;
            kill(getpid(), SIGTERM);
        }
        int ready_sent = 0;   /* STOPPING=1 only after READY=1 */
        if (rc == 0) {   /* a refused takeover drains at once: never ready */
            gw_proc_set_phase(proc, GW_PHASE_SERVING);   /* /readyz: every worker accepts */
            if (!upc) {
                notify_ready(0, 0);
                ready_sent = 1;
            }
        }
        if (upc) {
            /* serving now: the old process may drain; then its upgrade socket is ours */
            struct timeval now = {0, 0};
            if (event_base_once(ctl.base, -1, EV_TIMEOUT, on_takeover, &ctl, &now) != 0)
                pc_log_ev(PC_ERR, "upgrade", NULL, "upgrade: out of memory starting the admin and "
                          "metrics listeners; they stay closed");
            int confirmed = gw_upgrade_ready(upc, err, sizeof err) == 0;
            if (!confirmed)
                pc_log_ev(PC_ERR, "upgrade", NULL, "%s", err);
            else
                pc_log_ev(PC_INFO, "upgrade", NULL, "upgrade: the old process confirmed; it drains and exits");
            notify_ready(1, confirmed);
            ready_sent = 1;
            if (!(ctl.ups = gw_upgrade_server_start(ctl.base, cfg->upgrade_socket, proc,
                                                    on_upgrade_ready, &ctl, err, sizeof err)))
                pc_log_ev(PC_ERR, "upgrade_socket", NULL, "%s; a later --upgrade cannot take over this process", err);
            upc = NULL;
        }
        int sig = serve(&ctl, path, &sigs);
        /* never ready (an upgrade given up late): not the service's process;
         * after a handover the new process is the service */
        if (ready_sent && !__atomic_load_n(&ctl.handed_over, __ATOMIC_ACQUIRE))
            gw_service_notify("STOPPING=1");
        gw_proc_set_phase(proc, GW_PHASE_DRAINING);
        refuse_reloads(&ctl);
        struct timeval now = {0, 0};
        if (event_base_once(ctl.base, -1, EV_TIMEOUT, stop_upgrade_socket, &ctl, &now) != 0)
            pc_log_ev(PC_WARN, "draining", NULL, "upgrade socket left open during the drain (out of memory)");
        gw_gen_t *last = gw_proc_current(proc);
        pc_log_ev(PC_INFO, "draining", NULL, "%s: draining (up to %llums)", sig == SIGINT ? "SIGINT" : "SIGTERM",
               (unsigned long long)last->cfg->timeouts.drain_ms);
        gw_gen_release(last);
        for (int i = 0; i < n; i++)
            gw_worker_stop(&workers[i]);
        for (int i = 0; i < n; i++)
            gw_worker_join(&workers[i]);
        control_stop(&ctl);
        gw_upgrade_server_free(ctl.ups);   /* after its thread */
        ctl.ups = NULL;
        pc_log_ev(PC_INFO, "stopped", NULL, "stopped");
    }
    for (int i = 0; i < n; i++)
        gw_worker_free(&workers[i]);
    free(workers);
    gw_upgrade_client_free(upc);
    gw_upgrade_server_free(ctl.ups);
    event_free(jwks_timer);
    event_free(trim_timer);
    event_base_free(ctl.base);
    close(ctl.reload_pipe[0]);
    close(ctl.reload_pipe[1]);
    gw_proc_free(proc);   /* the last generation, its listeners, the limiters */
    pol_mirror_free(mirror);
    gw_service_notify_close();
    return rc;
}

/* SIGHUP and SIGUSR1 from the first instruction on wait blocked, so one
 * that arrives while the gateway starts (building the configuration, an
 * upgrade's fetch, binding) never ends it: serve() takes them from its
 * signalfd. A check or a CLI command has no log file to reopen and
 * ignores SIGUSR1 (logrotate may signal every process of that name);
 * SIGHUP is its default again (a closed terminal ends it). */
static void hold_signals(void)
{
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGHUP);
    sigaddset(&held, SIGUSR1);
    sigaddset(&held, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &held, NULL);
}

static void one_shot_signals(void)
{
    signal(SIGUSR1, SIG_IGN);   /* discards one already pending */
    signal(SIGUSR2, SIG_IGN);
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGHUP);
    sigaddset(&held, SIGUSR1);
    sigaddset(&held, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &held, NULL);
}

int main(int argc, char **argv)
{
    hold_signals();
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 't'},
        {"upgrade", no_argument, NULL, 'u'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc > 1 && gw_cli_is_command(argv[1])) {
        one_shot_signals();
        return gw_cli_main(argv[1], argc - 1, argv + 1);
    }
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

    if (check) {
        one_shot_signals();
        cfg_errors_t errs = {0};
        gw_gen_t *g = gw_gen_build(NULL, path, &errs);
        print_errors(&errs);
        cfg_errors_free(&errs);
        if (g)
            printf("OK\n");
        gw_gen_release(g);
        return g ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);   /* a log line to a closed pipe at the start fails, not the process */
    pc_metrics_init();
    remember_self(argc, argv);
    int rc = run(path, upgrade);
    pc_log_stop(LOG_STOP_WAIT_MS);   /* what is buffered is written before the exit */
    pc_metrics_shutdown();   /* every thread has stopped */
    return rc;
}
