/* Unit tests of the socket-free parts of portcullis-bench: histogram,
 * argument parsing (durations, numbers, URLs, headers, whole command lines)
 * and the HTTP response parser. Prints "ok - ..." / "not ok - ..." lines
 * and "N passed, N failed"; exits non-zero on failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "hist.h"
#include "httpresp.h"

static int npass, nfail;

static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void check(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf(cond ? "ok - " : "not ok - ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (cond)
        npass++;
    else
        nfail++;
}

static int within(double got, double want, double rel)
{
    return fabs(got - want) <= rel * want;
}

/* ---- histogram ---------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ULL;
static double rnd(void) /* uniform in [0,1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_hist_distribution(const char *name, uint64_t *v, size_t n)
{
    hist_t *h = malloc(sizeof(*h));
    hist_init(h);
    for (size_t i = 0; i < n; i++)
        hist_record(h, v[i]);
    qsort(v, n, sizeof(*v), cmp_u64);
    static const double ps[] = {50, 90, 99, 99.9};
    for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
        size_t rank = (size_t)ceil(ps[k] / 100.0 * (double)n);
        double exact = (double)v[rank - 1];
        double got = (double)hist_percentile(h, ps[k]);
        check(within(got, exact, 0.01), "hist %s: p%g = %.0f, exact %.0f (within 1%%)", name,
              ps[k], got, exact);
    }
    check(h->min == v[0] && h->max == v[n - 1], "hist %s: exact min and max", name);
    free(h);
}

static void test_hist(void)
{
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof(*v));

    for (size_t i = 0; i < n; i++)
        v[i] = 1 + (uint64_t)(rnd() * 100000); /* uniform 1 us .. 100 ms */
    test_hist_distribution("uniform", v, n);

    for (size_t i = 0; i < n; i++)
        v[i] = 1 + (uint64_t)(-log(1 - rnd()) * 2000); /* exponential, mean 2 ms */
    test_hist_distribution("exponential", v, n);

    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)exp(rnd() * log(1e8)); /* log-uniform 1 us .. 100 s */
    test_hist_distribution("log-uniform", v, n);

    /* every bucket's relative width is below 1 % from 256 us on */
    int ok = 1;
    for (unsigned i = HIST_LINEAR; i < HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        hist_bucket_range(i, &lo, &hi);
        if (hi > HIST_MAX_US)
            break;
        if ((double)(hi - lo + 1) / (double)lo > 0.008)
            ok = 0;
        if (hist_bucket_of(lo) != i || hist_bucket_of(hi) != i)
            ok = 0;
    }
    check(ok, "hist: bucket bounds are consistent and narrower than 0.8%%");

    hist_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));
    hist_init(a);
    hist_init(b);
    hist_init(all);
    for (uint64_t i = 1; i <= 1000; i++) {
        hist_record(i % 2 ? a : b, i * 100);
        hist_record(all, i * 100);
    }
    hist_merge(a, b);
    check(a->count == 1000 && a->min == 100 && a->max == 100000, "hist merge: count, min, max");
    check(memcmp(a->buckets, all->buckets, sizeof(a->buckets)) == 0 &&
              hist_percentile(a, 50) == hist_percentile(all, 50) &&
              hist_percentile(a, 99) == hist_percentile(all, 99),
          "hist merge: same as recording everything in one histogram");
    check(within((double)hist_percentile(a, 50), 50000, 0.01), "hist merge: p50 of 100..100000");
    check(within(hist_mean(a), 50050, 1e-9), "hist: mean");

    hist_t *e = malloc(sizeof(*e));
    hist_init(e);
    check(hist_percentile(e, 50) == 0 && e->count == 0, "hist: empty histogram gives 0");
    hist_merge(a, e);
    check(a->count == 1000 && a->min == 100, "hist: merging an empty histogram changes nothing");
    hist_record(e, 0);
    hist_record(e, 500000000000ULL); /* 500000 s */
    check(e->min == HIST_MIN_US && e->max == HIST_MAX_US, "hist: out-of-range values are clamped");
    check(hist_percentile(e, 100) == HIST_MAX_US && hist_percentile(e, 1) == HIST_MIN_US,
          "hist: clamped values land in the first and last bucket");
    hist_init(e);
    hist_record(e, 1234);
    check(hist_percentile(e, 50) == 1234 && hist_percentile(e, 99.9) == 1234,
          "hist: a single value is reported exactly");
    for (int i = 0; i < 99; i++)
        hist_record(e, 10);
    check(hist_percentile(e, 50) == 10 && hist_percentile(e, 99) == 10 &&
              hist_percentile(e, 100) == 1234,
          "hist: small values are exact");
    free(a);
    free(b);
    free(all);
    free(e);
    free(v);
}

/* ---- parsing ------------------------------------------------------------ */

static void test_duration(void)
{
    static const struct {
        const char *s;
        uint64_t ns;
    } good[] = {
        {"10s", 10000000000ULL}, {"500ms", 500000000ULL}, {"1m", 60000000000ULL},
        {"2h", 7200000000000ULL}, {"250us", 250000ULL}, {"1.5s", 1500000000ULL},
        {"3", 3000000000ULL},    {"0", 0},              {"0.5ms", 500000ULL},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ns = 1;
        char err[BENCH_ERRLEN] = "";
        int rc = parse_duration(good[i].s, &ns, err);
        check(rc == 0 && ns == good[i].ns, "duration '%s' = %llu ns", good[i].s,
              (unsigned long long)good[i].ns);
    }
    static const char *bad[] = {"", "s", "-1s", "10 s", "10sec", "1.2.3s", "ms", "10S", "abc",
                                "1e3s", "99999999h"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ns = 0;
        char err[BENCH_ERRLEN] = "";
        int rc = parse_duration(bad[i], &ns, err);
        check(rc == -1 && err[0], "duration '%s' is rejected (%s)", bad[i], err);
    }
}

static void test_numbers(void)
{
    uint64_t v = 0;
    char err[BENCH_ERRLEN];
    check(parse_count("10", 1, 100, &v, err) == 0 && v == 10, "number '10'");
    check(parse_count("1", 1, 100, &v, err) == 0 && v == 1, "number '1' at the minimum");
    check(parse_count("100", 1, 100, &v, err) == 0 && v == 100, "number '100' at the maximum");
    static const char *bad[] = {"", "0", "101", "-1", "+5", "1.5", "10k", " 1", "1 ", "0x10",
                                "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        check(parse_count(bad[i], 1, 100, &v, err) == -1 && err[0], "number '%s' is rejected (%s)",
              bad[i], err);
    }
    double r = 0;
    check(parse_rate("1000", &r, err) == 0 && r == 1000, "rate '1000'");
    check(parse_rate("2.5", &r, err) == 0 && r == 2.5, "rate '2.5'");
    check(parse_rate("0", &r, err) == -1, "rate '0' is rejected");
    check(parse_rate("-5", &r, err) == -1, "rate '-5' is rejected");
    check(parse_rate("fast", &r, err) == -1, "rate 'fast' is rejected");
    uint64_t sz = 0;
    check(parse_size("512", &sz, err) == 0 && sz == 512, "size '512'");
    check(parse_size("4k", &sz, err) == 0 && sz == 4096, "size '4k'");
    check(parse_size("1m", &sz, err) == 0 && sz == 1048576, "size '1m'");
    check(parse_size("0", &sz, err) == 0 && sz == 0, "size '0'");
    check(parse_size("1x", &sz, err) == -1, "size '1x' is rejected");
    check(parse_size("2048m", &sz, err) == -1, "size '2048m' is rejected (too large)");
}

static void test_url(void)
{
    bench_url_t u;
    char err[BENCH_ERRLEN];
    check(parse_url("https://127.0.0.1:8443/path?q=1", &u, err) == 0 &&
              !strcmp(u.host, "127.0.0.1") && !strcmp(u.port, "8443") &&
              !strcmp(u.path, "/path?q=1") && u.host_is_ip &&
              !strcmp(u.authority, "127.0.0.1:8443"),
          "url https://127.0.0.1:8443/path?q=1");
    check(parse_url("https://localhost:443", &u, err) == 0 && !strcmp(u.path, "/") &&
              !u.host_is_ip && !strcmp(u.host, "localhost"),
          "url without a path gets '/'");
    check(parse_url("HTTPS://gw.example.com:8443/a/b", &u, err) == 0 &&
              !strcmp(u.host, "gw.example.com") && !strcmp(u.path, "/a/b"),
          "url scheme is case-insensitive");
    check(parse_url("https://[::1]:8443/x", &u, err) == 0 && !strcmp(u.host, "::1") &&
              u.host_is_ip && !strcmp(u.authority, "[::1]:8443"),
          "url with an IPv6 literal");
    check(parse_url("https://h:1?x=1", &u, err) == 0 && !strcmp(u.path, "/?x=1"),
          "url with a query and no path");
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"", "empty"},
        {"http://127.0.0.1:80/", "https"},
        {"127.0.0.1:8443/", "scheme"},
        {"https://127.0.0.1/", "port"},
        {"https://127.0.0.1:/", "port"},
        {"https://127.0.0.1:0/", "range"},
        {"https://127.0.0.1:65536/", "range"},
        {"https://127.0.0.1:84x3/", "not a number"},
        {"https://:8443/", "host"},
        {"https:///", "host"},
        {"https://user@host:1/", "user"},
        {"https://[::1/", "IPv6"},
        {"https://[zz]:1/", "IPv6"},
        {"https://[::1]8443/", "after"},
        {"https://ho st:1/", "space"},
        {"https://host:1/a b", "space"},
        {"https://h*st:1/", "character"},
        {"https://host:1/#frag", "fragment"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        int rc = parse_url(bad[i].url, &u, err);
        check(rc == -1 && strstr(err, bad[i].why), "url '%s' is rejected, saying '%s' (%s)",
              bad[i].url, bad[i].why, err);
    }
}

static void test_header(void)
{
    bench_header_t h;
    char err[BENCH_ERRLEN];
    check(parse_header("Authorization: Bearer abc", &h, err) == 0 &&
              !strcmp(h.name, "Authorization") && !strcmp(h.value, "Bearer abc"),
          "header 'Authorization: Bearer abc'");
    free(h.name);
    free(h.value);
    check(parse_header("X-Empty:", &h, err) == 0 && !strcmp(h.name, "X-Empty") && !strcmp(h.value, ""),
          "header with an empty value");
    free(h.name);
    free(h.value);
    check(parse_header("X-A:\t v:w  ", &h, err) == 0 && !strcmp(h.value, "v:w"),
          "header value is trimmed and may contain ':'");
    free(h.name);
    free(h.value);
    static const char *bad[] = {"NoColon", ": value", "Bad Name: v", "X\tY: v", "X: a\r\nY: b",
                                "X: a\nb", "Na(me): v"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        char shown[64];
        size_t k = 0;
        for (const char *c = bad[i]; *c && k + 3 < sizeof(shown); c++) {
            if (*c == '\r' || *c == '\n' || *c == '\t') {
                shown[k++] = '\\';
                shown[k++] = *c == '\r' ? 'r' : *c == '\n' ? 'n' : 't';
            } else {
                shown[k++] = *c;
            }
        }
        shown[k] = 0;
        check(parse_header(bad[i], &h, err) == -1 && err[0] && !h.name,
              "header '%s' is rejected", shown);
    }
}

static int parse_line(const char *line, bench_opts_t *o, char *err)
{
    char buf[1024];
    char *argv[64];
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    argv[argc++] = "portcullis-bench";
    for (char *tok = strtok(buf, " "); tok && argc < 63; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    err[0] = 0;
    int rc = bench_parse_args(argc, argv, o, err);
    if (rc != 0)
        bench_opts_free(o);
    return rc;
}

static void test_args(void)
{
    bench_opts_t o;
    char err[BENCH_ERRLEN];
    check(parse_line("https://127.0.0.1:8443/", &o, err) == 0 && o.connections == 10 &&
              o.threads == 1 && o.duration_ns == 10000000000ULL && o.mode == MODE_KEEPALIVE &&
              !strcmp(o.method, "GET") && o.tls_max == 13 && o.timeout_ns == 10000000000ULL &&
              !o.json && o.rate == 0 && o.total_requests == 0,
          "args: defaults");
    bench_opts_free(&o);
    check(parse_line("-c 100 -t 4 -d 500ms --json -H X-A:1 -H X-B:2 -m POST --body-size 4k "
                     "--mode full --tls 1.2 --rate 50 --timeout 2s --warmup 1s "
                     "--cert c.pem --key k.pem --cacert ca.pem https://h:1/p",
                     &o, err) == 0 &&
              o.connections == 100 && o.threads == 4 && o.duration_ns == 500000000ULL && o.json &&
              o.nheaders == 2 && !strcmp(o.headers[1].name, "X-B") && !strcmp(o.method, "POST") &&
              o.body_size == 4096 && o.mode == MODE_FULL && o.tls_max == 12 && o.rate == 50 &&
              o.timeout_ns == 2000000000ULL && o.warmup_ns == 1000000000ULL &&
              !strcmp(o.cert, "c.pem") && !strcmp(o.key, "k.pem") && !strcmp(o.cacert, "ca.pem"),
          "args: every option");
    bench_opts_free(&o);
    check(parse_line("-c8 --duration=2s --mode=resume --resume-kind=tls12-id https://h:1/", &o,
                     err) == 0 &&
              o.connections == 8 && o.duration_ns == 2000000000ULL && o.mode == MODE_RESUME &&
              o.resume_kind == RESUME_TLS12_ID && o.tls_max == 12,
          "args: -cN, --opt=value, resume kind sets the TLS version");
    bench_opts_free(&o);
    check(parse_line("-n 1000 -d 5s --cert both.pem https://h:1/", &o, err) == 0 &&
              o.total_requests == 1000 && o.duration_given && !strcmp(o.key, "both.pem"),
          "args: -n with -d; --key defaults to --cert");
    bench_opts_free(&o);
    check(parse_line("--help", &o, err) == 1, "args: --help");
    static const struct {
        const char *line, *why;
    } bad[] = {
        {"", "no URL"},
        {"https://h:1/ https://h:2/", "more than one URL"},
        {"-c 0 https://h:1/", "-c"},
        {"-c ten https://h:1/", "-c"},
        {"-t 4 -c 2 https://h:1/", "-t"},
        {"-d 0s https://h:1/", "greater than 0"},
        {"-d https://h:1/", "duration"},
        {"--mode fast https://h:1/", "unknown mode"},
        {"--resume-kind tls13 https://h:1/", "--resume-kind"},
        {"--mode resume --resume-kind tls12-id --tls 1.3 https://h:1/", "contradicts"},
        {"--tls 1.1 https://h:1/", "TLS version"},
        {"--body f --body-size 1 https://h:1/", "mutually exclusive"},
        {"--key k.pem https://h:1/", "--key"},
        {"--mode idle -n 5 https://h:1/", "idle"},
        {"--frobnicate https://h:1/", "unknown option"},
        {"-x https://h:1/", "unknown option"},
        {"-H NoColon https://h:1/", "-H"},
        {"-m GE/T https://h:1/", "method"},
        {"--timeout 0 https://h:1/", "timeout"},
        {"--json=1 https://h:1/", "no value"},
        {"https://h:1/ -c", "needs a value"},
        {"http://h:1/", "https"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_line(bad[i].line, &o, err);
        check(rc == -1 && strstr(err, bad[i].why), "args '%s' rejected, saying '%s' (%s)",
              bad[i].line, bad[i].why, err);
    }
}

/* ---- HTTP responses ----------------------------------------------------- */

/* Feeds s in pieces of step bytes; returns the final RESP_* result. */
static int feed(resp_parser_t *p, const char *s, size_t step, size_t *used_total)
{
    size_t len = strlen(s), off = 0;
    int rc = RESP_MORE;
    *used_total = 0;
    while (off < len && rc == RESP_MORE) {
        size_t n = len - off < step ? len - off : step, used = 0;
        rc = resp_feed(p, s + off, n, &used);
        off += used;
        *used_total += used;
        if (rc == RESP_MORE && used != n)
            return RESP_ERROR;
    }
    return rc;
}

static void test_http(void)
{
    resp_parser_t *p = malloc(sizeof(*p));
    size_t used;
    static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
    static const char ch[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\n";
    size_t steps[] = {1, 3, 7, 1000};
    for (size_t i = 0; i < 4; i++) {
        resp_init(p, 0);
        int rc = feed(p, cl, steps[i], &used);
        check(rc == RESP_DONE && used == strlen(cl) && p->status == 200 && !p->conn_close,
              "http: Content-Length body, fed %zu bytes at a time", steps[i]);
        resp_init(p, 0);
        rc = feed(p, ch, steps[i], &used);
        check(rc == RESP_DONE && used == strlen(ch) && p->chunked == 1,
              "http: chunked body with extension and trailer, fed %zu at a time", steps[i]);
    }
    char two[256];
    snprintf(two, sizeof(two), "%s%s", cl, cl);
    resp_init(p, 0);
    check(feed(p, two, 1000, &used) == RESP_DONE && used == strlen(cl),
          "http: stops at the end of the response");
    resp_init(p, 0);
    check(feed(p, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
               1000, &used) == RESP_DONE &&
              p->status == 401 && p->conn_close,
          "http: 401 with Connection: close");
    resp_init(p, 0);
    check(feed(p, "HTTP/1.1 204 No Content\r\n\r\n", 1000, &used) == RESP_DONE && p->status == 204,
          "http: 204 has no body");
    resp_init(p, 1);
    check(feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 1000, &used) == RESP_DONE,
          "http: a response to HEAD has no body");
    resp_init(p, 0);
    check(feed(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
               5, &used) == RESP_DONE &&
              p->status == 200,
          "http: interim 100 Continue is skipped");
    resp_init(p, 0);
    check(feed(p, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 1000, &used) == RESP_DONE &&
              p->conn_close,
          "http: HTTP/1.0 without keep-alive closes");
    resp_init(p, 0);
    check(feed(p, "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
               1000, &used) == RESP_DONE &&
              p->conn_close,
          "http: Connection token list is case-insensitive");
    resp_init(p, 0);
    int rc = feed(p, "HTTP/1.1 200 OK\r\n\r\nbody until close", 4, &used);
    check(rc == RESP_MORE && resp_eof(p) == RESP_DONE && p->conn_close,
          "http: body without length ends at close");
    resp_init(p, 0);
    rc = feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 1000, &used);
    check(rc == RESP_MORE && resp_eof(p) == RESP_ERROR && strstr(p->error, "mid-response"),
          "http: close before the end of the body is an error");
    resp_init(p, 0);
    check(resp_idle(p) && resp_eof(p) == RESP_ERROR, "http: close before any response is an error");
    static const char *bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        resp_init(p, 0);
        rc = feed(p, bad[i], 1000, &used);
        check(rc == RESP_ERROR && p->error, "http: malformed response %zu rejected (%s)", i,
              p->error ? p->error : "-");
    }
    char *longline = malloc(RESP_LINE_MAX + 64);
    snprintf(longline, RESP_LINE_MAX + 64, "HTTP/1.1 200 OK\r\nX: ");
    size_t l = strlen(longline);
    memset(longline + l, 'a', RESP_LINE_MAX);
    longline[l + RESP_LINE_MAX] = 0;
    resp_init(p, 0);
    check(feed(p, longline, 1000, &used) == RESP_ERROR, "http: over-long header line rejected");
    free(longline);
    free(p);
}

int main(void)
{
    test_hist();
    test_duration();
    test_numbers();
    test_url();
    test_header();
    test_args();
    test_http();
    printf("%d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
