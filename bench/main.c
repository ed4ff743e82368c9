/* portcullis-bench: a load generator for mTLS-terminating HTTPS servers.
 *
 * main: options, setup checks (files, address, a first connection), the
 * worker threads, the global deadline and the report. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "args.h"
#include "client.h"
#include "stats.h"

#define PROG "portcullis-bench"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(2, "cannot read --body %s: %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            die(1, "out of memory reading %s", path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    if (ferror(f))
        die(2, "cannot read --body %s: %s", path, strerror(errno));
    fclose(f);
    *len = n;
    return buf;
}

static int has_header(const bench_opts_t *o, const char *name)
{
    for (unsigned i = 0; i < o->nheaders; i++)
        if (strcasecmp(o->headers[i].name, name) == 0)
            return 1;
    return 0;
}

static char *build_request(const bench_opts_t *o, size_t *len)
{
    const char *body = NULL;
    size_t blen = 0;
    char *bodybuf = NULL;
    if (o->body_file) {
        bodybuf = read_file(o->body_file, &blen);
        body = bodybuf;
    } else if (o->body_size_given) {
        blen = (size_t)o->body_size;
        bodybuf = malloc(blen ? blen : 1);
        if (!bodybuf)
            die(1, "out of memory for a %zu-byte body", blen);
        memset(bodybuf, 'x', blen);
        body = bodybuf;
    }
    size_t hcap = 4096 + strlen(o->url.path);
    for (unsigned i = 0; i < o->nheaders; i++)
        hcap += strlen(o->headers[i].name) + strlen(o->headers[i].value) + 4;
    char *req = malloc(hcap + blen);
    if (!req)
        die(1, "out of memory");
    size_t n = 0;
    n += (size_t)snprintf(req + n, hcap - n, "%s %s HTTP/1.1\r\n", o->method, o->url.path);
    if (!has_header(o, "Host"))
        n += (size_t)snprintf(req + n, hcap - n, "Host: %s\r\n", o->url.authority);
    if (!has_header(o, "User-Agent"))
        n += (size_t)snprintf(req + n, hcap - n, "User-Agent: " PROG "\r\n");
    for (unsigned i = 0; i < o->nheaders; i++)
        n += (size_t)snprintf(req + n, hcap - n, "%s: %s\r\n", o->headers[i].name,
                              o->headers[i].value);
    if (body && !has_header(o, "Content-Length"))
        n += (size_t)snprintf(req + n, hcap - n, "Content-Length: %zu\r\n", blen);
    if ((o->mode == MODE_FULL || o->mode == MODE_RESUME) && !has_header(o, "Connection"))
        n += (size_t)snprintf(req + n, hcap - n, "Connection: close\r\n");
    n += (size_t)snprintf(req + n, hcap - n, "\r\n");
    if (blen)
        memcpy(req + n, body, blen);
    free(bodybuf);
    *len = n + blen;
    return req;
}

/* One plain TCP connection with a time limit: is anybody listening? */
static int probe(const struct addrinfo *ai, uint64_t timeout_ns, char *why, size_t n)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, n, "socket: %s", strerror(errno));
        return -1;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int ms = (int)(timeout_ns / 1000000ULL);
        int pr = poll(&p, 1, ms > 0 ? ms : 1);
        if (pr == 0) {
            snprintf(why, n, "no answer within %.3f s", (double)timeout_ns / 1e9);
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        rc = soerr ? -1 : 0;
        errno = soerr;
    }
    if (rc < 0)
        snprintf(why, n, "%s", strerror(errno));
    close(fd);
    return rc;
}

static void resolve_and_probe(const bench_opts_t *o, bench_shared_t *sh)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC}, *res = NULL;
    int g = getaddrinfo(o->url.host, o->url.port, &hints, &res);
    if (g != 0)
        die(1, "cannot resolve host '%s': %s", o->url.host, gai_strerror(g));
    char why[200] = "no address";
    uint64_t tmo = o->timeout_ns < 5000000000ULL ? o->timeout_ns : 5000000000ULL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (probe(ai, tmo, why, sizeof(why)) == 0) {
            memcpy(&sh->addr, ai->ai_addr, ai->ai_addrlen);
            sh->addrlen = ai->ai_addrlen;
            freeaddrinfo(res);
            return;
        }
    }
    freeaddrinfo(res);
    die(1, "cannot connect to %s: %s", o->url.authority, why);
}

int main(int argc, char **argv)
{
    bench_opts_t o;
    char err[BENCH_ERRLEN];
    int pr = bench_parse_args(argc, argv, &o, err);
    if (pr == 1) {
        bench_usage(stdout);
        return 0;
    }
    if (pr < 0) {
        fprintf(stderr, PROG ": %s\n", err);
        fprintf(stderr, "usage: " PROG " [options] https://host:port/path (see --help)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* one descriptor per connection: raise the soft limit when needed */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)o.connections + 64) {
        rlim_t want = (rlim_t)o.connections + 64;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want)
            fprintf(stderr, PROG ": warning: only %llu file descriptors for %u connections\n",
                    (unsigned long long)rl.rlim_cur, o.connections);
    }
    if (evthread_use_pthreads() != 0)
        die(1, "libevent has no pthreads support");

    /* check the certificate files before anything else */
    char terr[512];
    SSL_CTX *probe_ctx = bench_tls_ctx(&o, terr, sizeof(terr));
    if (!probe_ctx)
        die(2, "%s", terr);
    SSL_CTX_free(probe_ctx);

    bench_shared_t sh;
    memset(&sh, 0, sizeof(sh));
    sh.o = &o;
    size_t reqlen = 0;
    char *req = o.mode == MODE_IDLE ? NULL : build_request(&o, &reqlen);
    sh.request = req;
    sh.request_len = reqlen;
    sh.head = strcmp(o.method, "HEAD") == 0;
    resolve_and_probe(&o, &sh);

    unsigned nthreads = o.threads;
    if (o.total_requests && o.total_requests < nthreads)
        nthreads = (unsigned)o.total_requests;
    bench_thread_t *th = calloc(nthreads, sizeof(*th));
    if (!th)
        die(1, "out of memory");
    for (unsigned i = 0; i < nthreads; i++) {
        bench_thread_t *t = &th[i];
        t->id = i;
        t->sh = &sh;
        t->nconns = o.connections / nthreads + (i < o.connections % nthreads);
        if (o.total_requests)
            t->quota = o.total_requests / nthreads + (i < o.total_requests % nthreads);
        if (o.rate > 0)
            t->rate = o.rate * t->nconns / o.connections;
        if (bench_thread_init(t, terr, sizeof(terr)) != 0)
            die(1, "%s", terr);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    sh.t0_ns = now_ns();
    sh.measure_ns = sh.t0_ns + o.warmup_ns;
    sh.end_ns = o.total_requests ? UINT64_MAX : sh.measure_ns + o.duration_ns;
    uint64_t deadline = UINT64_MAX;
    if (!o.total_requests || o.duration_given)
        deadline = sh.measure_ns + o.duration_ns + o.timeout_ns + 5000000000ULL;

    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&th[i].tid, NULL, bench_thread_main, &th[i]) != 0)
            die(1, "cannot start thread %u: %s", i, strerror(errno));
        th[i].running = 1;
    }

    /* watchdog: Ctrl-C or the global deadline stops the threads */
    int stopped = 0;
    uint64_t stop_at = 0;
    for (;;) {
        unsigned alive = 0;
        for (unsigned i = 0; i < nthreads; i++)
            alive += !__atomic_load_n(&th[i].exited, __ATOMIC_ACQUIRE);
        if (!alive)
            break;
        uint64_t now = now_ns();
        if (!stopped && (interrupted || now >= deadline)) {
            if (!interrupted)
                fprintf(stderr, PROG ": global deadline reached; stopping\n");
            for (unsigned i = 0; i < nthreads; i++)
                bench_thread_stop(&th[i]);
            stopped = 1;
            stop_at = now;
        }
        if (stopped && now - stop_at > 3000000000ULL) {
            fprintf(stderr, PROG ": threads did not stop; giving up\n");
            _exit(1);
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }

    bench_stats_t *total = malloc(sizeof(*total));
    if (!total)
        die(1, "out of memory");
    stats_init(total);
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(th[i].tid, NULL);
        stats_merge(total, &th[i].stats);
        bench_thread_free(&th[i]);
    }
    o.threads = nthreads;
    if (o.json)
        report_json(stdout, &o, total);
    else
        report_text(stdout, &o, total);
    fflush(stdout);
    free(total);
    free(th);
    free(req);
    bench_opts_free(&o);
    return interrupted ? 130 : 0;
}
