/* base/dns: resolution at load (hosts file, a dead name server, a bounded
 * wait) and the name table's snapshots (intern, current, change, release). */
#include "check.h"

#include "../../base/dns.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pc_dns_sa_t v4(const char *ip, int port)
{
    pc_dns_sa_t s;
    memset(&s, 0, sizeof s);
    struct sockaddr_in *in = (struct sockaddr_in *)&s.sa;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &in->sin_addr);
    s.len = sizeof *in;
    return s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_resolve(void)
{
    char hosts[] = "/tmp/portcullis-dnstest-XXXXXX";
    int fd = mkstemp(hosts);
    const char *text = "127.0.0.9 two.test\n127.0.0.8 two.test\n127.0.0.7 one.test\n";
    CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "hosts file");
    close(fd);
    pc_dns_conf_t conf;
    memset(&conf, 0, sizeof conf);
    conf.nameservers[0] = v4("127.0.0.1", 9);   /* nothing answers there */
    conf.nnameservers = 1;
    conf.hosts_file = hosts;
    conf.timeout_ms = 200;
    conf.attempts = 1;
    pc_dns_query_t q[4];
    memset(q, 0, sizeof q);
    q[0].host = "two.test";
    q[0].port = 80;
    q[1].host = "one.test";
    q[1].port = 81;
    q[2].host = "nosuch.test";
    q[2].port = 82;
    q[3].host = "127.0.0.5";
    q[3].port = 83;
    char err[256] = "";
    double t0 = now_s();
    CHECK(pc_dns_resolve(&conf, q, 4, err, sizeof err) == 0, "resolve returns 0");
    double took = now_s() - t0;
    char t[64];
    CHECK(q[0].n == 2 && !strcmp(pc_dns_sa_text(&q[0].a[0], t, sizeof t), "127.0.0.8:80") &&
              !strcmp(pc_dns_sa_text(&q[0].a[1], t, sizeof t), "127.0.0.9:80"),
          "two addresses from the hosts file, sorted, with the port");
    CHECK(q[1].n == 1 && !strcmp(pc_dns_sa_text(&q[1].a[0], t, sizeof t), "127.0.0.7:81"),
          "one address");
    CHECK(q[2].n == 0 && q[2].err[0], "a name nobody answers for fails with a reason");
    CHECK(q[3].n == 1 && !strcmp(pc_dns_sa_text(&q[3].a[0], t, sizeof t), "127.0.0.5:83"),
          "an IP literal");
    CHECK(took < 1.5, "bounded by timeout x attempts + 1s");
    char ip[64];
    CHECK(pc_dns_sa_ip(&q[0].a[1], ip, sizeof ip) == 80 && !strcmp(ip, "127.0.0.9"),
          "pc_dns_sa_ip");
    conf.hosts_file = "/nonexistent/hosts";
    CHECK(pc_dns_resolve(&conf, q, 1, err, sizeof err) == -1 && strstr(err, "/nonexistent/hosts"),
          "an unreadable hosts file is an error");
    unlink(hosts);
}

static void test_table(void)
{
    pc_dns_sa_t a[2] = {v4("10.0.0.2", 80), v4("10.0.0.1", 80)};
    pc_dns_name_t *nm = pc_dns_intern("api.test", 80, a, 2);
    pc_dns_name_t *same = pc_dns_intern("api.test", 80, NULL, 0);
    pc_dns_name_t *other = pc_dns_intern("api.test", 81, a, 1);
    CHECK(nm && nm == same && other && other != nm, "one entry per host:port");
    pc_dns_addrs_t *c = NULL;
    char t[64];
    CHECK(pc_dns_current(nm, &c) == 1 && c->n == 2 &&
              !strcmp(pc_dns_sa_text(&c->a[0], t, sizeof t), "10.0.0.1:80"),
          "the first view: sorted");
    CHECK(pc_dns_current(nm, &c) == 0, "no change: no swap");
    pc_dns_sa_t b[2] = {v4("10.0.0.1", 80), v4("10.0.0.2", 80)};
    pc_dns_name_release(pc_dns_intern("api.test", 80, b, 2));
    CHECK(pc_dns_current(nm, &c) == 0, "the same set in another order is no change");
    pc_dns_addrs_t *held = NULL;
    pc_dns_current(nm, &held);   /* a second reader holds the old set */
    pc_dns_sa_t d = v4("10.0.0.3", 80);
    pc_dns_name_release(pc_dns_intern("api.test", 80, &d, 1));
    CHECK(pc_dns_current(nm, &c) == 1 && c->n == 1 &&
              !strcmp(pc_dns_sa_text(&c->a[0], t, sizeof t), "10.0.0.3:80"),
          "a new answer replaces the set");
    CHECK(held->n == 2, "an old set stays valid for its holder");
    pc_dns_addrs_release(held);
    pc_dns_connect_failed(nm);   /* before pc_dns_start: a no-op */
    pc_dns_addrs_release(c);
    pc_dns_name_release(same);
    pc_dns_name_release(nm);
    pc_dns_name_release(other);
    pc_dns_name_t *again = pc_dns_intern("api.test", 80, NULL, 0);
    pc_dns_addrs_t *e = NULL;
    CHECK(again && pc_dns_current(again, &e) == 1 && e->n == 0,
          "released entries are gone: a new one starts empty");
    pc_dns_addrs_release(e);
    pc_dns_name_release(again);
}

/* resolver.hosts_file unset: /etc/hosts is read (not only "localhost"). */
static void test_default_hosts(void)
{
    char name[256] = "", line[1024];
    FILE *f = fopen("/etc/hosts", "r");
    while (f && !name[0] && fgets(line, sizeof line, f)) {
        char ip[64], h[256];
        if (line[0] == '#' || sscanf(line, "%63s %255s", ip, h) != 2 || !strchr(ip, '.') ||
            !strcmp(h, "localhost") || !strncmp(h, "localhost.", 10))
            continue;
        snprintf(name, sizeof name, "%s", h);
    }
    if (f)
        fclose(f);
    pc_dns_conf_t conf;
    memset(&conf, 0, sizeof conf);
    conf.nameservers[0] = v4("127.0.0.1", 9);   /* nothing answers there */
    conf.nnameservers = 1;
    conf.timeout_ms = 200;
    conf.attempts = 1;
    pc_dns_query_t q[2];
    memset(q, 0, sizeof q);
    q[0].host = "localhost";
    q[0].port = 80;
    q[1].host = name;
    q[1].port = 80;
    char err[256] = "";
    CHECK(pc_dns_resolve(&conf, q, name[0] ? 2 : 1, err, sizeof err) == 0, "resolve returns 0");
    CHECK(q[0].n >= 1, "localhost resolves with the default hosts file");
    if (name[0])
        CHECK(q[1].n >= 1, "a name of /etc/hosts resolves with the default hosts file");
    else
        fprintf(stderr, "test_dns: /etc/hosts has no IPv4 name but localhost; skipped\n");
}

/* More addresses than PC_DNS_MAX_ADDRS: the lowest are kept, whatever the
 * order of the answer. */
static void test_many_addrs(void)
{
    char hosts[] = "/tmp/portcullis-dnstest-XXXXXX";
    int fd = mkstemp(hosts);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    const int order[10] = {10, 9, 1, 8, 2, 7, 3, 6, 4, 5};
    for (int i = 0; f && i < 10; i++)
        fprintf(f, "127.0.1.%d many.test\n", order[i]);
    CHECK(f && fclose(f) == 0, "hosts file");
    pc_dns_conf_t conf;
    memset(&conf, 0, sizeof conf);
    conf.nameservers[0] = v4("127.0.0.1", 9);
    conf.nnameservers = 1;
    conf.hosts_file = hosts;
    conf.timeout_ms = 200;
    conf.attempts = 1;
    pc_dns_query_t q;
    memset(&q, 0, sizeof q);
    q.host = "many.test";
    q.port = 80;
    char err[256] = "", t[64], want[64];
    CHECK(pc_dns_resolve(&conf, &q, 1, err, sizeof err) == 0 && q.n == PC_DNS_MAX_ADDRS,
          "ten addresses: PC_DNS_MAX_ADDRS kept");
    int ok = 1;
    for (size_t i = 0; i < q.n; i++) {
        snprintf(want, sizeof want, "127.0.1.%zu:80", i + 1);
        ok &= !strcmp(pc_dns_sa_text(&q.a[i], t, sizeof t), want);
    }
    CHECK(ok, "the lowest eight, sorted (127.0.1.1 .. 127.0.1.8)");
    unlink(hosts);
}

/* A resolver that cannot be made (here: a hosts file that is gone) fails
 * pc_dns_start only when a name needs it. */
static void test_start_without_names(void)
{
    struct event_base *base = event_base_new();
    pc_dns_conf_t conf;
    memset(&conf, 0, sizeof conf);
    conf.nameservers[0] = v4("127.0.0.1", 9);
    conf.nnameservers = 1;
    conf.hosts_file = "/nonexistent/hosts";
    conf.interval_ms = 1000;
    conf.timeout_ms = 200;
    conf.attempts = 1;
    char err[256] = "x";
    CHECK(pc_dns_start(base, &conf, err, sizeof err) == 0 && err[0] == '\0',
          "no names: the start does not need a resolver");
    pc_dns_stop();
    pc_dns_name_t *nm = pc_dns_intern("api.test", 80, NULL, 0);
    CHECK(pc_dns_start(base, &conf, err, sizeof err) == -1 && strstr(err, "/nonexistent/hosts"),
          "a name: a resolver that cannot be made fails the start");
    pc_dns_stop();
    pc_dns_name_release(nm);
    event_base_free(base);
}

int main(void)
{
    test_resolve();
    test_default_hosts();
    test_many_addrs();
    test_table();
    test_start_without_names();
    return check_done();
}
