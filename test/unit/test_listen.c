/* Unit tests: listener objects (config/config_listen.c): the CIDR parser and
 * matcher, and a listeners section that mixes the string and mapping forms. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"
#include "check.h"
#include "pki_util.h"

static struct sockaddr_storage ip(const char *s)
{
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    if (strchr(s, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
        in6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, s, &in6->sin6_addr);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&a;
        in->sin_family = AF_INET;
        inet_pton(AF_INET, s, &in->sin_addr);
    }
    return a;
}

static int matches(const char *net, const char *addr)
{
    cfg_cidr_t c;
    const char *why;
    struct sockaddr_storage a = ip(addr);
    return cfg_parse_cidr(net, &c, &why) == 0 && cfg_cidr_match(&c, 1, &a);
}

static int bad(const char *net, const char *want)
{
    cfg_cidr_t c;
    const char *why = NULL;
    return cfg_parse_cidr(net, &c, &why) < 0 && why && strstr(why, want);
}

static void test_cidr(void)
{
    CHECK(matches("10.0.0.0/8", "10.255.1.2"), "v4 /8 matches inside");
    CHECK(!matches("10.0.0.0/8", "11.0.0.1"), "v4 /8 does not match outside");
    CHECK(matches("192.168.4.0/22", "192.168.7.255"), "v4 /22 last address");
    CHECK(!matches("192.168.4.0/22", "192.168.8.0"), "v4 /22 next network");
    CHECK(matches("127.0.0.1", "127.0.0.1"), "bare v4 address is a /32");
    CHECK(!matches("127.0.0.1", "127.0.0.2"), "bare v4 address: only itself");
    CHECK(matches("0.0.0.0/0", "8.8.8.8"), "v4 /0 matches every IPv4 address");
    CHECK(!matches("0.0.0.0/0", "::1"), "v4 /0 does not match IPv6");
    CHECK(matches("10.0.0.0/8", "::ffff:10.1.2.3"), "v4 network matches a v4-mapped peer");
    CHECK(matches("fd00::/8", "fd12:3456::1"), "v6 /8 matches inside");
    CHECK(!matches("fd00::/8", "fe80::1"), "v6 /8 does not match outside");
    CHECK(matches("::1", "::1"), "bare v6 address is a /128");
    CHECK(!matches("::1", "127.0.0.1"), "v6 host does not match v4");
    CHECK(matches("2001:db8::/33", "2001:db8:7fff::1"), "v6 /33 inside");
    CHECK(!matches("2001:db8::/33", "2001:db8:8000::1"), "v6 /33 outside");
    CHECK(bad("10.0.0.0/33", "0..32"), "v4 prefix over 32");
    CHECK(bad("::/129", "0..128"), "v6 prefix over 128");
    CHECK(bad("10.0.0.0/", "0..32"), "empty prefix");
    CHECK(bad("10.0.0.0/08", "0..32"), "prefix with a leading zero");
    CHECK(bad("10.0.0.0/-1", "0..32"), "negative prefix");
    CHECK(bad("10.1.0.0/8", "host bits"), "v4 host bits set");
    CHECK(bad("fd00::1/64", "host bits"), "v6 host bits set");
    CHECK(bad("[::1]/128", "numeric"), "brackets refused");
    CHECK(bad("lb.internal/32", "numeric"), "a name refused");
    CHECK(bad("", "expected"), "empty refused");
    CHECK(bad("/8", "expected"), "prefix without address refused");

    cfg_cidr_t two[2];
    const char *why;
    struct sockaddr_storage a = ip("172.16.9.9"), b = ip("172.32.0.1");
    CHECK(cfg_parse_cidr("10.0.0.0/8", &two[0], &why) == 0 &&
              cfg_parse_cidr("172.16.0.0/12", &two[1], &why) == 0 && cfg_cidr_match(two, 2, &a) &&
              !cfg_cidr_match(two, 2, &b),
          "a list matches any of its networks");
    struct sockaddr_storage none;
    memset(&none, 0, sizeof none);
    CHECK(!cfg_cidr_match(two, 2, &none), "AF_UNSPEC matches nothing");
}

static const char *const tail =
    "tls:\n"
    "  certificates:\n"
    "    - cert: %s/server.crt\n"
    "      key: %s/server.key\n"
    "  classes:\n"
    "    - name: device\n"
    "      ca: %s/device-ca.crt\n"
    "upstreams:\n"
    "  - name: api\n"
    "    servers: [127.0.0.1:9080]\n"
    "routes:\n"
    "  - path: /\n"
    "    upstream: api\n"
    "    allow_classes: [device]\n";

static void test_section(const char *pki)
{
    char path[] = "/tmp/portcullis-listen-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        CHECK(0, "scratch config file");
        return;
    }
    fprintf(f, "listeners:\n"
               "  - 127.0.0.1:8443\n"
               "  - address: \"[::1]:8444\"\n"
               "  - address: 127.0.0.1:8445\n"
               "    proxy_protocol: v2\n"
               "    trusted_from: [10.0.0.0/8, \"::1\"]\n"
               "  - address: 127.0.0.1:8446\n"
               "    proxy_protocol: any\n"
               "    trusted_from: [127.0.0.0/8]\n"
               "    proxy_timeout: 750ms\n"
               "    proxy_header_max: 1k\n");
    fprintf(f, tail, pki, pki, pki);
    fclose(f);
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    CHECK(cfg != NULL, "listeners in both forms load");
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            printf("#   %s\n", errs.msgs[i]);
    } else {
        const cfg_listener_t *l = cfg->listeners;
        CHECK(cfg->nlisteners == 4, "four listeners");
        CHECK(!strcmp(l[0].addr.text, "127.0.0.1:8443") && l[0].proxy_protocol == CFG_PP_OFF &&
                  l[0].ntrusted == 0 && l[0].proxy_timeout_ms == 5000 &&
                  l[0].proxy_header_max == 4096,
              "a string is an address with the defaults");
        CHECK(!strcmp(l[1].addr.text, "[::1]:8444") && l[1].addr.addr.ss_family == AF_INET6 &&
                  l[1].proxy_protocol == CFG_PP_OFF,
              "a mapping with only an address");
        CHECK(l[2].proxy_protocol == CFG_PP_V2 && l[2].ntrusted == 2 &&
                  l[2].trusted[0].family == AF_INET && l[2].trusted[0].bits == 8 &&
                  l[2].trusted[1].family == AF_INET6 && l[2].trusted[1].bits == 128 &&
                  l[2].proxy_timeout_ms == 5000,
              "proxy_protocol v2 with two trusted networks");
        CHECK(l[3].proxy_protocol == CFG_PP_ANY && l[3].proxy_timeout_ms == 750 &&
                  l[3].proxy_header_max == 1024,
              "proxy_protocol any with its timeout and header bound");
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
    unlink(path);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_cidr();
    char dir[] = "/tmp/portcullis-listen-pki-XXXXXX", a[256], b[256], k[256];
    if (!mkdtemp(dir)) {
        CHECK(0, "scratch directory");
        return check_done();
    }
    pair_t ca = make_pair("Test Device CA", 1, NULL, 1);
    pair_t srv = make_pair("localhost", 2, &ca, 0);
    snprintf(a, sizeof a, "%s/device-ca.crt", dir);
    snprintf(b, sizeof b, "%s/server.crt", dir);
    snprintf(k, sizeof k, "%s/server.key", dir);
    write_pem(a, ca.cert, NULL);
    write_pem(b, srv.cert, NULL);
    write_pem(k, NULL, srv.key);
    test_section(dir);
    unlink(a);
    unlink(b);
    unlink(k);
    rmdir(dir);
    free_pair(&srv);
    free_pair(&ca);
    return check_done();
}
