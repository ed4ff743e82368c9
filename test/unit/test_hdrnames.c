/* Unit tests: header names as an upstream reads them (upstream/http.c).
 *
 * Every gateway-owned and trust header is tried in generated spellings:
 * lower, upper and mixed case, and for each of them each '-' replaced by a
 * separator one at a time, and all of them, for every tchar punctuation
 * byte (lighttpd and Apache 2.2 read every byte that is not a letter or
 * digit as '_', CGI/WSGI/Rack/PHP read '_' as '-'). A spelling of only
 * letters, digits and '-' is the gateway's (dropped); any other collides
 * (refused), whatever http.underscores_in_headers says.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../upstream/http.h"
#include "check.h"
#include "hdrs_util.h"

/* The gateway's own names (with the claim header below), as a client may send them. */
static const char *const owned_names[] = {
    "X-Client-Cert-Serial", "X-Client-Cert-Fingerprint", "X-Client-Cert-Subject",
    "X-Client-Cert-Issuer", "X-Client-Cert-SAN-URI", "X-Client-Cert-SAN-DNS",
    "X-Client-Cert-Not-After", "X-Client-Cert-Class", "X-Device-Id", "X-Device-Integrity", "X-Token-Subject",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "Content-Length",
    "Transfer-Encoding", "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade",
    "Proxy-Connection", "Proxy-Authorization", "Proxy-Anything", "Proxy", "Host", "Expect",
    /* under the identity headers' prefix X-Client-Cert- */
    "X-Client-Cert-Verify", "X-Client-Cert-Chain", "X-Client-Cert-Anything", NULL,
};

static const char *const trust_names[] = {
    "Forwarded", "X-Real-IP", "True-Client-IP", "X-Forwarded-Host", "X-Forwarded-Port",
    "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Original-URL", "X-Rewrite-URL",
    "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Forwarded-Client-Cert",
    "Client-Cert", "Client-Cert-Chain", "X-Original-Host", "X-Host", "X-Original-Forwarded-For",
    "X-ProxyUser-Ip", "X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "X-Envoy-Original-Path",
    "X-Envoy-Internal", "X-Envoy-Anything-Else", "X-SSL-Client-Verify", "X-SSL-Client-Cert",
    "Ssl-Client-Cert", "SSL-Client-Verify", "X-Client-Cert", "X-Client-Certificate", "X-ARR-ClientCert",
    "X-ARR-SSL", "X-Amzn-Mtls-Clientcert", "X-Amzn-Mtls-Clientcert-Leaf", "X-Forwarded", "X-Forwarded-Ssl",
    "X-Url-Scheme", "Front-End-Https", "X-Scheme", NULL,
};

/* Every tchar byte that is not a letter, digit or '-' (RFC 9110 token). */
static const char seps[] = "_.+~!*#$%&'^`|";

#define MAXV 512

/* Spellings of name: lower, upper, mixed (alternating), and for each of
 * those and each separator in seps every single '-' as the separator and
 * all '-' as it. Returns the count. */
static int variants(const char *name, char out[MAXV][80])
{
    int nv = 0;
    size_t n = strlen(name);
    for (int cs = 0; cs < 3; cs++) {
        char base[80];
        for (size_t i = 0; i <= n; i++) {
            int ch = (unsigned char)name[i];
            base[i] = (char)(cs == 0 ? tolower(ch) : cs == 1 ? toupper(ch)
                             : (i % 2 ? tolower(ch) : toupper(ch)));
        }
        snprintf(out[nv++], 80, "%s", base);
        for (const char *sep = seps; *sep; sep++) {
            int dashes = 0;
            for (size_t i = 0; i < n; i++) {
                if (base[i] != '-')
                    continue;
                dashes++;
                snprintf(out[nv], 80, "%s", base);
                out[nv++][i] = *sep;
            }
            if (dashes > 1) {
                snprintf(out[nv], 80, "%s", base);
                for (size_t i = 0; i < n; i++)
                    if (out[nv][i] == '-')
                        out[nv][i] = *sep;
                nv++;
            }
        }
    }
    return nv;
}

static int odd(const char *name)
{
    return strpbrk(name, seps) != NULL;
}

static int cls(const ups_names_t *t, const ups_hdrs_t *h, const char *name)
{
    return ups_name_class(t, h, name, strlen(name));
}

static void test_compare(void)
{
    CHECK(ups_name_eq("X-Device-Id", 11, "x-device-id", 11), "case-insensitive");
    CHECK(ups_name_eq("X_Device_Id", 11, "x-device-id", 11), "_ equals -");
    CHECK(ups_name_eq("x-device-id", 11, "X_DEVICE_ID", 11), "- equals _, both ways");
    CHECK(ups_name_eq("X-Device_Id", 11, "x_device-id", 11), "mixed _ and -");
    CHECK(!ups_name_eq("X-Device-Id", 11, "X-Device-Ie", 11), "one letter differs");
    CHECK(!ups_name_eq("X-Device-Id", 11, "X-Device-Idx", 12), "lengths differ");
    CHECK(!ups_name_eq("X-Device-Id", 11, "XDevice-Id", 10), "- is not optional");
    CHECK(ups_name_eq("", 0, "", 0), "empty names are equal");
    for (const char *sep = seps; *sep; sep++) {
        char a[] = "X-Device-Id", one[] = "X-Device-Id";
        a[1] = a[8] = *sep;
        one[8] = *sep;
        CHECK(ups_name_eq(a, 11, "x-device-id", 11) && ups_name_eq(one, 11, "X-DEVICE-ID", 11),
              "every tchar punctuation byte equals -");
        CHECK(!ups_name_eq(a, 11, "X-DeviceXId", 11) && !ups_name_eq(a, 11, "X-Device0Id", 11),
              "punctuation equals no letter or digit");
        CHECK(ups_name_odd(a, 11) && ups_name_odd(one, 11), "a name with punctuation is odd");
    }
    CHECK(ups_name_eq("X.Device.Id", 11, "X~Device_Id", 11), "any two separators are one");
    CHECK(!ups_name_odd("X-Device-Id9", 12) && !ups_name_odd("", 0), "letters, digits, - are not odd");
    for (int ch = 0; ch < 256; ch++) {
        char c = (char)ch, l = (char)tolower(ch);
        int alnum = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (alnum ? !ups_name_eq(&c, 1, &l, 1) || ups_name_eq(&c, 1, "-", 1) || ups_name_odd(&c, 1)
                  : !ups_name_eq(&c, 1, "-", 1) || (ch != '-') != ups_name_odd(&c, 1)) {
            printf("# byte 0x%02x folds wrongly\n", ch);
            CHECK(0, "the fold table");
        }
    }
    CHECK(!ups_name_eq("a", 1, "1", 1) && !ups_name_eq("a", 1, "b", 1), "letters and digits stay apart");
    CHECK(ups_name_eq("\xc0", 1, "\xe0", 1) && !ups_name_eq("\xc0", 1, "a", 1),
          "bytes >= 0x80 read as -, not as letters");
    CHECK(ups_name_prefix("X-Forwarded-Host", 16, "x-forwarded-"), "prefix");
    CHECK(ups_name_prefix("x_forwarded_host", 16, "x-forwarded-"), "prefix with _");
    CHECK(!ups_name_prefix("X-Forwarded-", 12, "x-forwarded-"), "the prefix alone is not a match");
    CHECK(!ups_name_prefix("X-Forward", 9, "x-forwarded-"), "shorter than the prefix");
    CHECK(ups_name_prefix("X.Envoy.Internal", 16, "x-envoy-"), "prefix with .");
}

static void test_classes(const ups_names_t *t, const ups_hdrs_t *h)
{
    char v[MAXV][80];
    int bad = 0, total = 0;
    for (int i = 0; owned_names[i]; i++) {
        int nv = variants(owned_names[i], v);
        for (int k = 0; k < nv; k++, total++) {
            int want = odd(v[k]) ? UPS_NAME_COLLISION : UPS_NAME_OWNED;
            if (cls(t, h, v[k]) != want) {
                printf("# %s: class %d, expected %d\n", v[k], cls(t, h, v[k]), want);
                bad++;
            }
        }
    }
    for (int i = 0; trust_names[i]; i++) {
        int nv = variants(trust_names[i], v);
        for (int k = 0; k < nv; k++, total++) {
            int allowed = !strcasecmp(trust_names[i], "X-Real-IP");
            int want = odd(v[k]) ? UPS_NAME_COLLISION
                     : allowed ? UPS_NAME_PASS : UPS_NAME_TRUST;
            if (cls(t, h, v[k]) != want) {
                printf("# %s: class %d, expected %d\n", v[k], cls(t, h, v[k]), want);
                bad++;
            }
        }
    }
    printf("# %d spellings\n", total);
    CHECK(total > 5000, "thousands of spellings generated");
    CHECK(bad == 0, "every spelling of an owned or trust name: dropped, or refused with punctuation");
    static const char *const review[] = {
        "X.Device.Id", "X+Device+Id", "X~Device~Id", "X!Client!Cert!Serial", "X.Forwarded.For",
        "X*Request*Id", "X.Real.IP", "Client.Cert", "Content.Length", "Transfer.Encoding",
        "X.Envoy.Original.Path", "X-Envoy.Internal", "X|Original|Host", "Proxy.Connection", NULL,
    };
    for (int i = 0; review[i]; i++)
        if (cls(t, h, review[i]) != UPS_NAME_COLLISION) {
            printf("# %s: class %d\n", review[i], cls(t, h, review[i]));
            CHECK(0, "a punctuation spelling of an owned or trust name collides");
        }
    CHECK(cls(t, h, "X_Device_Id") == UPS_NAME_COLLISION, "X_Device_Id collides");
    CHECK(cls(t, h, "X-Client-Cert_Serial") == UPS_NAME_COLLISION, "X-Client-Cert_Serial collides");
    CHECK(cls(t, h, "X_Forwarded_For") == UPS_NAME_COLLISION, "X_Forwarded_For collides");
    CHECK(cls(t, h, "Transfer_Encoding") == UPS_NAME_COLLISION, "Transfer_Encoding collides");
    CHECK(cls(t, h, "Content_Length") == UPS_NAME_COLLISION, "Content_Length collides");
    CHECK(cls(t, h, "X_Request_Id") == UPS_NAME_COLLISION, "X_Request_Id collides");
    CHECK(cls(t, h, "X_Token_Subject") == UPS_NAME_COLLISION, "a claim header collides");
    CHECK(cls(t, h, "X_Real_IP") == UPS_NAME_COLLISION, "an allow-listed trust header still collides with _");
    CHECK(cls(t, h, "X_Forwarded_Anything") == UPS_NAME_COLLISION, "any X-Forwarded-* collides with _");
    CHECK(cls(t, h, "X-App") == UPS_NAME_PASS, "an ordinary header passes");
    CHECK(cls(t, h, "X_App") == UPS_NAME_UNDERSCORE, "another name with _");
    CHECK(cls(t, h, "_") == UPS_NAME_UNDERSCORE, "a lone _");
    CHECK(cls(t, h, "X.App") == UPS_NAME_UNDERSCORE && cls(t, h, "X~App") == UPS_NAME_UNDERSCORE &&
              cls(t, h, "a'b") == UPS_NAME_UNDERSCORE,
          "other names with punctuation: per the underscores option");
    CHECK(cls(t, h, "Via") == UPS_NAME_PASS, "Via (informational) passes");
    CHECK(cls(t, h, "X-Envoy") == UPS_NAME_PASS && cls(t, h, "X-Envoy-") == UPS_NAME_PASS,
          "X-Envoy and X-Envoy- alone are no X-Envoy-*");
    CHECK(cls(t, h, "X-Envoy-Upstream-Rq-Timeout-Ms") == UPS_NAME_TRUST, "any X-Envoy-* is a trust header");
    CHECK(cls(t, h, "X-Hop") == UPS_NAME_OWNED && cls(t, h, "x_hop") == UPS_NAME_OWNED,
          "a Connection-listed name is hop-by-hop, in either spelling");
    CHECK(cls(t, h, "Authorization") == UPS_NAME_PASS && cls(t, h, "Cookie") == UPS_NAME_PASS,
          "Authorization and Cookie pass");
    CHECK(cls(t, h, "X-Forwarded") == UPS_NAME_TRUST, "X-Forwarded alone is a trust header");
    CHECK(cls(t, h, "X-Forwardedx") == UPS_NAME_PASS, "X-Forwarded is no prefix without its '-'");
    CHECK(cls(t, h, "X-SSL") == UPS_NAME_PASS && cls(t, h, "X-ARR-") == UPS_NAME_PASS &&
              cls(t, h, "SSL-Client") == UPS_NAME_PASS && cls(t, h, "X-Amzn-Mtls") == UPS_NAME_PASS,
          "a trust prefix alone is no name under it");
    CHECK(cls(t, h, "X-Client-Cert-") == UPS_NAME_TRUST, "X-Client-Cert-: the X-Client-Cert* rule");
    CHECK(cls(t, h, "X-Client-Certs") == UPS_NAME_TRUST, "X-Client-Cert with any suffix");
    CHECK(cls(t, h, "X-Client-Cer") == UPS_NAME_PASS && cls(t, h, "X-Client") == UPS_NAME_PASS,
          "shorter names pass");
}

/* cfg_identity_prefix: the certificate headers' common prefix, cut after
 * its last '-', when it has two segments or more. */
static void test_prefix(void)
{
    cfg_identity_t icfg;
    default_icfg(&icfg);
    CHECK(cfg_identity_prefix(&icfg) == 14, "default: X-Client-Cert-");
    char *acme[CFG_H__COUNT] = {"X-Acme-Id-Serial", "x-acme-id-fp", "X-ACME-Id-Subject", "X-Acme-Id-Issuer",
                                "X-Acme-Id-Uri", "X-Acme-Id-Dns", "X-Acme-Id-Expires", "X-Acme-Idclass",
                                "X-Device", "X-Device-Integrity"};
    for (int i = 0; i < CFG_H__COUNT; i++)
        icfg.headers[i] = acme[i];
    CHECK(cfg_identity_prefix(&icfg) == 7, "case-insensitive, cut after the last '-': X-Acme-");
    icfg.headers[CFG_H_CLASS] = "X-Cert-Class";
    CHECK(cfg_identity_prefix(&icfg) == 0, "X- alone is no prefix");
    icfg.headers[CFG_H_CLASS] = "Acme-Class";
    CHECK(cfg_identity_prefix(&icfg) == 0, "no common prefix");
    default_icfg(&icfg);
    icfg.headers[CFG_H_DEVICE_ID] = "Device";
    CHECK(cfg_identity_prefix(&icfg) == 14, "the device-id header does not count");
    char *dd[CFG_H__COUNT] = {"A--S", "A--F", "A--Su", "A--I", "A--U", "A--D", "A--N", "A--C", "D", "I"};
    for (int i = 0; i < CFG_H__COUNT; i++)
        icfg.headers[i] = dd[i];
    CHECK(cfg_identity_prefix(&icfg) == 0, "an empty segment: no prefix");

    /* the identity prefix wins over an allow-list entry; another identity prefix moves it */
    char *allow[] = {"X-Client-Cert-Chain", "X-SSL-Client-Verify"};
    cfg_http_t hc = {.underscores_in_headers = CFG_US_DROP, .forward_client_headers = allow,
                     .nforward_client_headers = 2};
    default_icfg(&icfg);
    ups_names_t *t = ups_names_new(&icfg, NULL, 0, &hc);
    ups_hdrs_t h;
    ups_hdrs_init(&h, 256, 8);
    CHECK(cls(t, &h, "X-Client-Cert-Chain") == UPS_NAME_OWNED, "the identity prefix is never allow-listed");
    CHECK(cls(t, &h, "X-SSL-Client-Verify") == UPS_NAME_PASS, "a trust prefix name is allow-listable");
    CHECK(cls(t, &h, "X-SSL-Client-Cert") == UPS_NAME_TRUST, "another X-SSL-* is still dropped");
    ups_names_free(t);
    for (int i = 0; i < CFG_H__COUNT; i++)
        icfg.headers[i] = acme[i];
    icfg.headers[CFG_H_CLASS] = "X-Acme-Id-Class";
    t = ups_names_new(&icfg, NULL, 0, &hc);
    CHECK(cls(t, &h, "X-Acme-Id-Anything") == UPS_NAME_OWNED && cls(t, &h, "X_Acme_Id_Anything") == UPS_NAME_COLLISION,
          "a configured prefix is owned, in every spelling");
    CHECK(cls(t, &h, "X-Client-Cert-Verify") == UPS_NAME_TRUST, "X-Client-Cert-* is then a trust header");
    CHECK(cls(t, &h, "X-Acme-Id-") == UPS_NAME_PASS, "the prefix alone is no name under it");
    ups_names_free(t);
    ups_hdrs_free(&h);
}

static void test_check(ups_names_t *t, ups_hdrs_t *h)
{
    int bad = -1;
    CHECK(ups_names_check(t, h, &bad) == 0, "a head without _ passes");
    add(h, "X_App", "1");
    CHECK(ups_names_check(t, h, &bad) == 0, "drop mode: another name with _ passes the check");
    add(h, "X.App", "1");
    CHECK(ups_names_check(t, h, &bad) == 0, "drop mode: another name with . passes the check");
    add(h, "X_Device_Id", "evil");
    bad = -1;
    CHECK(ups_names_check(t, h, &bad) == UPS_NAME_COLLISION && bad == (int)h->n - 1,
          "a collision is found, and which header");

    ups_hdrs_t e;
    ups_hdrs_init(&e, 256, 8);
    ups_hdrs_first(&e, "/", 1);
    add(&e, "Host", "h");
    add(&e, "X_Device_Id", "x");
    add(&e, "", "evil");
    ups_hdrs_finish(&e);
    bad = -1;
    CHECK(ups_hdrs_empty_name(&e) == 2, "the empty name is found");
    CHECK(ups_names_check(t, &e, &bad) == UPS_NAME_EMPTY && bad == 2, "an empty name is refused first");
    ups_hdrs_free(&e);
    CHECK(ups_hdrs_empty_name(h) == -1, "no empty name");
}

static int has_line(const char *s, const char *line)
{
    return strstr(s, line) != NULL;
}

static void test_build(const cfg_identity_t *icfg)
{
    static const char *const claims[] = {"X-Token-Subject"};
    char *allow[] = {"X-Real-IP", "X-Forwarded-Host"};
    cfg_http_t hc = {.underscores_in_headers = CFG_US_DROP, .forward_client_headers = allow,
                     .nforward_client_headers = 2};
    ups_hdrs_t h;
    ups_hdrs_init(&h, 4096, 64);
    ups_hdrs_first(&h, "/", 1);
    add(&h, "Host", "h");
    add(&h, "X_App", "under");
    add(&h, "X.Dot", "dot");
    add(&h, "X-Real-IP", "1.2.3.4");
    add(&h, "X-Original-Host", "evil.example");
    add(&h, "X-Envoy-Internal", "true");
    add(&h, "X-ProxyUser-Ip", "6.6.6.6");
    add(&h, "Via", "1.1 edge");
    add(&h, "X-Forwarded-Host", "evil.example");
    add(&h, "X-Forwarded-Port", "1");
    add(&h, "Forwarded", "for=6.6.6.6");
    add(&h, "True-Client-IP", "6.6.6.6");
    add(&h, "X-Original-URL", "/admin");
    add(&h, "X-HTTP-Method-Override", "DELETE");
    add(&h, "Client-Cert", ":abc:");
    add(&h, "Proxy", "http://evil:1");
    add(&h, "X-App", "kept");
    ups_hdrs_finish(&h);
    struct evbuffer *b = evbuffer_new();
    ups_req_meta_t m = {.method = "GET", .http_minor = 1, .peer_ip = "127.0.0.1",
                        .request_id = "r", .icfg = icfg};
    for (int mode = CFG_US_DROP; mode <= CFG_US_ALLOW; mode++) {
        hc.underscores_in_headers = mode;
        ups_names_t *t = ups_names_new(icfg, claims, 1, &hc);
        m.names = t;
        ups_build_request_head(b, &h, &m);
        char *s = head_text(b);
        if (mode == CFG_US_DROP)
            CHECK(!strstr(s, "X_App") && !strstr(s, "X.Dot"), "drop: a name with _ or . is not forwarded");
        else
            CHECK(has_line(s, "X_App: under\r\n") && has_line(s, "X.Dot: dot\r\n"),
                  "allow: a name with _ or . is forwarded");
        CHECK(!strstr(s, "X-Original-Host") && !strstr(s, "X-Envoy") && !strstr(s, "ProxyUser"),
              "X-Original-Host, X-Envoy-*, X-ProxyUser-Ip are dropped");
        CHECK(has_line(s, "Via: 1.1 edge\r\n"), "Via is forwarded");
        CHECK(has_line(s, "X-Real-IP: 1.2.3.4\r\n") && has_line(s, "X-Forwarded-Host: evil.example\r\n"),
              "allow-listed trust headers are forwarded");
        CHECK(!strstr(s, "X-Forwarded-Port") && !strstr(s, "Forwarded: for") && !strstr(s, "True-Client") &&
                  !strstr(s, "X-Original-URL") && !strstr(s, "Override") && !strstr(s, "Client-Cert:") &&
                  !strstr(s, "evil:1"),
              "other trust headers and Proxy are dropped");
        CHECK(has_line(s, "X-App: kept\r\n"), "an ordinary header is forwarded");
        free(s);
        ups_names_free(t);
    }
    hc.underscores_in_headers = CFG_US_REFUSE;
    ups_names_t *t = ups_names_new(icfg, claims, 1, &hc);
    int bad = -1;
    CHECK(ups_names_check(t, &h, &bad) == UPS_NAME_UNDERSCORE && bad == 1,
          "refuse: a name with _ is refused, and which one");
    ups_names_free(t);
    evbuffer_free(b);
    ups_hdrs_free(&h);
}

int main(void)
{
    cfg_identity_t icfg;
    default_icfg(&icfg);
    static const char *const claims[] = {"X-Token-Subject"};
    char *allow[] = {"X-Real-IP"};
    cfg_http_t hc = {.underscores_in_headers = CFG_US_DROP, .forward_client_headers = allow,
                     .nforward_client_headers = 1};
    ups_names_t *t = ups_names_new(&icfg, claims, 1, &hc);
    CHECK(t != NULL, "names table");

    ups_hdrs_t h;
    ups_hdrs_init(&h, 4096, 64);
    ups_hdrs_first(&h, "/", 1);
    add(&h, "Host", "h");
    add(&h, "Connection", "keep-alive, X-Hop");
    ups_hdrs_finish(&h);

    test_compare();
    test_prefix();
    test_classes(t, &h);
    test_check(t, &h);
    test_build(&icfg);
    ups_names_free(t);
    ups_hdrs_free(&h);
    return check_done();
}
