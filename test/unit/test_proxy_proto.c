/* Unit tests: the PROXY protocol header parser (gateway/proxy_proto). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/proxy_proto.h"
#include "check.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
/* The start of a TLS 1.2/1.3 ClientHello record, as a client sends it. */
static const uint8_t HELLO[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};

static int same_bytes(gw_pp_bytes_t a, gw_pp_bytes_t b, const uint8_t *base_a, const uint8_t *base_b)
{
    if (a.n != b.n || !a.p != !b.p)
        return 0;
    return !a.p || (a.p - base_a == b.p - base_b);
}

/* Do two results describe the same header (pointers at the same offsets)? */
static int same_header(const gw_pp_header_t *a, const uint8_t *ba, const gw_pp_header_t *b,
                       const uint8_t *bb)
{
    return a->version == b->version && a->command == b->command && a->family == b->family &&
           memcmp(&a->src, &b->src, sizeof a->src) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof a->dst) == 0 && a->ntlv == b->ntlv &&
           same_bytes(a->tlvs, b->tlvs, ba, bb) && same_bytes(a->alpn, b->alpn, ba, bb) &&
           same_bytes(a->authority, b->authority, ba, bb) &&
           same_bytes(a->unique_id, b->unique_id, ba, bb) &&
           same_bytes(a->netns, b->netns, ba, bb) && a->has_crc32c == b->has_crc32c &&
           a->has_ssl == b->has_ssl && a->ssl_client == b->ssl_client &&
           a->ssl_verify == b->ssl_verify && same_bytes(a->ssl_version, b->ssl_version, ba, bb) &&
           same_bytes(a->ssl_cn, b->ssl_cn, ba, bb) &&
           same_bytes(a->ssl_cipher, b->ssl_cipher, ba, bb) &&
           same_bytes(a->ssl_sig_alg, b->ssl_sig_alg, ba, bb) &&
           same_bytes(a->ssl_key_alg, b->ssl_key_alg, ba, bb);
}

/* Parses s[0..n) in one call and then every prefix, each from a buffer of
 * exactly that size (so ASan sees a read past it). Checks the one-shot
 * answer is `want`, every prefix answers 0 or `want`, and once a prefix
 * answers `want` every longer one does, with the same header; `decide`
 * (when not 0) is the length of the first prefix that must answer. */
static void sample_x(const char *name, const uint8_t *s, size_t n, unsigned accept, size_t max,
                     int want, size_t decide, gw_pp_header_t *out)
{
    char what[200];
    gw_pp_header_t one;
    memset(&one, 0, sizeof one);
    int r = gw_pp_parse(s, n, accept, max, &one);
    snprintf(what, sizeof what, "%s: one call gives %d (%s)", name, want, gw_pp_strerror(want));
    CHECK(r == want, what);
    if (r != want)
        printf("#   got %d (%s)\n", r, gw_pp_strerror(r));
    size_t first = 0;
    int ok = 1;
    for (size_t k = 0; k <= n; k++) {
        uint8_t *b = malloc(k ? k : 1);
        if (!b)
            abort();
        memcpy(b, s, k);
        gw_pp_header_t h;
        memset(&h, 0, sizeof h);
        int rk = gw_pp_parse(b, k, accept, max, &h);
        if (rk != 0 && !first)
            first = k;
        if ((first && rk != want) || (!first && rk != 0))
            ok = 0;
        if (rk > 0 && !same_header(&h, b, &one, s))
            ok = 0;
        free(b);
    }
    snprintf(what, sizeof what, "%s: growing prefixes give 0 then the same answer", name);
    CHECK(ok, what);
    if (want > 0) {   /* a 0 means every byte so far is the header's: it ends at want */
        snprintf(what, sizeof what, "%s: complete exactly at its last byte", name);
        CHECK(first == (size_t)want, what);
    }
    if (decide) {
        snprintf(what, sizeof what, "%s: decided after %zu bytes", name, decide);
        CHECK(first == decide, what);
        if (first != decide)
            printf("#   decided after %zu\n", first);
    }
    if (out)
        *out = one;
}

static void sample(const char *name, const uint8_t *s, size_t n, unsigned accept, int want,
                   gw_pp_header_t *out)
{
    sample_x(name, s, n, accept, GW_PP_MAX_DEFAULT, want, 0, out);
}

static void v1(const char *name, const char *line, unsigned accept, int want, gw_pp_header_t *out)
{
    sample(name, (const uint8_t *)line, strlen(line), accept, want, out);
}

static int is_in(const struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    struct in_addr a;
    return ss->ss_family == AF_INET && inet_pton(AF_INET, addr, &a) == 1 &&
           memcmp(&a, &s->sin_addr, 4) == 0 && ntohs(s->sin_port) == port;
}

static int is_in6(const struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    struct in6_addr a;
    return ss->ss_family == AF_INET6 && inet_pton(AF_INET6, addr, &a) == 1 &&
           memcmp(&a, &s->sin6_addr, 16) == 0 && ntohs(s->sin6_port) == port;
}

static int is_str(gw_pp_bytes_t b, const char *s)
{
    return b.p && b.n == strlen(s) && memcmp(b.p, s, b.n) == 0;
}

static void test_v1(void)
{
    gw_pp_header_t h;
    const char *l4 = "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n";
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", l4, "\x16\x03\x01");
    v1("v1 TCP4, TLS after it", buf, GW_PP_ANY, (int)strlen(l4), &h);
    CHECK(h.version == 1 && h.command == GW_PP_PROXY && h.family == GW_PP_INET &&
              is_in(&h.src, "192.168.0.1", 56324) && is_in(&h.dst, "10.0.0.2", 443) &&
              h.ntlv == 0 && !h.tlvs.p,
          "v1 TCP4: addresses and ports");
    v1("v1 TCP4 only v1 accepted", l4, GW_PP_V1, (int)strlen(l4), NULL);
    v1("v1 TCP4 port 0", "PROXY TCP4 0.0.0.0 10.0.0.2 0 0\r\n", GW_PP_ANY, 33, &h);
    CHECK(is_in(&h.src, "0.0.0.0", 0) && is_in(&h.dst, "10.0.0.2", 0), "v1 TCP4 port 0: parsed");

    const char *l6 = "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
    v1("v1 TCP6", l6, GW_PP_ANY, (int)strlen(l6), &h);
    CHECK(h.family == GW_PP_INET6 && is_in6(&h.src, "2001:db8::1", 1) &&
              is_in6(&h.dst, "::1", 65535),
          "v1 TCP6: addresses and ports");
    const char *l6m = "PROXY TCP6 ::ffff:192.0.2.1 FE80::A:b 443 8443\r\n";
    v1("v1 TCP6 IPv4-mapped, upper-case hex", l6m, GW_PP_ANY, (int)strlen(l6m), &h);
    CHECK(is_in6(&h.src, "::ffff:192.0.2.1", 443) && is_in6(&h.dst, "fe80::a:b", 8443),
          "v1 TCP6 IPv4-mapped: addresses");

    v1("v1 UNKNOWN", "PROXY UNKNOWN\r\n", GW_PP_ANY, 15, &h);
    CHECK(h.command == GW_PP_PROXY && h.family == GW_PP_UNSPEC && h.src.ss_family == AF_UNSPEC,
          "v1 UNKNOWN: no addresses (the real peer stands)");
    v1("v1 UNKNOWN with ignored addresses", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\nX", GW_PP_ANY,
       35, &h);
    CHECK(h.family == GW_PP_UNSPEC, "v1 UNKNOWN with addresses: still the real peer");

    /* the specification's worst cases: 56, 104 and 107 bytes */
    const char *w4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    const char *w6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    const char *wu = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    v1("v1 longest TCP4 (56 bytes)", w4, GW_PP_ANY, 56, NULL);
    v1("v1 longest TCP6 (104 bytes)", w6, GW_PP_ANY, 104, NULL);
    v1("v1 longest UNKNOWN (107 bytes)", wu, GW_PP_ANY, 107, NULL);
    const char *l6v4 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 ::1 1 2\r\n";
    v1("v1 TCP6 longest address form", l6v4, GW_PP_ANY, (int)strlen(l6v4), NULL);

    /* as HAProxy 2.6 (send-proxy) sends them, data after */
    v1("HAProxy v1 TCP4", "PROXY TCP4 127.0.0.1 127.0.0.1 55576 18442\r\nhello", GW_PP_ANY, 44,
       &h);
    CHECK(is_in(&h.src, "127.0.0.1", 55576) && is_in(&h.dst, "127.0.0.1", 18442),
          "HAProxy v1 TCP4: addresses");
    v1("HAProxy v1 TCP6", "PROXY TCP6 ::1 ::1 38356 18442\r\nhello", GW_PP_ANY, 32, &h);
    CHECK(is_in6(&h.src, "::1", 38356), "HAProxy v1 TCP6: addresses");
}

static void test_v1_errors(void)
{
    v1("v1 lower-case PROXY", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", GW_PP_ANY, GW_PP_ENOTPROXY,
       NULL);
    sample_x("plain HTTP", (const uint8_t *)"GET / HTTP/1.1\r\n", 16, GW_PP_ANY, 4096,
             GW_PP_ENOTPROXY, 1, NULL);
    sample_x("HTTP POST", (const uint8_t *)"POST / HTTP/1.1\r\n", 17, GW_PP_ANY, 4096,
             GW_PP_ENOTPROXY, 2, NULL);
    sample_x("PROXYX", (const uint8_t *)"PROXYX", 6, GW_PP_ANY, 4096, GW_PP_ENOTPROXY, 6, NULL);
    v1("v1 on a v2-only listener", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", GW_PP_V2,
       GW_PP_ENOTPROXY, NULL);
    v1("v1 unknown protocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 lower-case protocol", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 protocol cut short", "PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 protocol too long", "PROXY TCP44 1.2.3.4 5.6.7.8 1 2\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 two spaces after PROXY", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", GW_PP_ANY, GW_PP_EV1,
       NULL);
    v1("v1 TCP4 without addresses", "PROXY TCP4\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 missing destination port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", GW_PP_ANY, GW_PP_EV1,
       NULL);
    v1("v1 space before CRLF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 CR CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 tab for a space", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", GW_PP_ANY, GW_PP_EV1ADDR,
       NULL);
    v1("v1 LF in an address", "PROXY TCP4 1.2.3.4\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 UNKNOWN then a letter", "PROXY UNKNOWNX\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 UNKNOWN with a control byte", "PROXY UNKNOWN a\tb\r\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 UNKNOWN bare LF", "PROXY UNKNOWN\n", GW_PP_ANY, GW_PP_EV1, NULL);
    v1("v1 UNKNOWN LF in the ignored part", "PROXY UNKNOWN a\nb\r\n", GW_PP_ANY, GW_PP_EV1, NULL);

    static const char *const bad4[] = {"256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5",
                                       "1..2.3", ".1.2.3", "1.2.3.", "::1", "1.2.3.4a",
                                       "1.2.3.1000", "0x1.2.3.4", ""};
    for (size_t i = 0; i < sizeof bad4 / sizeof bad4[0]; i++) {
        char line[128], name[96];
        snprintf(line, sizeof line, "PROXY TCP4 %s 5.6.7.8 1 2\r\n", bad4[i]);
        snprintf(name, sizeof name, "v1 TCP4 bad source \"%s\"", bad4[i]);
        v1(name, line, GW_PP_ANY, GW_PP_EV1ADDR, NULL);
        snprintf(line, sizeof line, "PROXY TCP4 5.6.7.8 %s 1 2\r\n", bad4[i]);
        snprintf(name, sizeof name, "v1 TCP4 bad destination \"%s\"", bad4[i]);
        v1(name, line, GW_PP_ANY, GW_PP_EV1ADDR, NULL);
    }
    static const char *const bad6[] = {"1.2.3.4", ":::1", "1::2::3", "12345::", "::1%eth0",
                                       "::ffff:1.2.3.256", "::1.2.3.4:5", "g::1", "1:2:3:4:5:6:7:8:9",
                                       "::ffff:01.2.3.4", ""};
    for (size_t i = 0; i < sizeof bad6 / sizeof bad6[0]; i++) {
        char line[128], name[96];
        snprintf(line, sizeof line, "PROXY TCP6 %s ::1 1 2\r\n", bad6[i]);
        snprintf(name, sizeof name, "v1 TCP6 bad source \"%s\"", bad6[i]);
        v1(name, line, GW_PP_ANY, GW_PP_EV1ADDR, NULL);
    }
    static const char *const badp[] = {"65536", "01", "00", "-1", "1a", "+1", "99999", ""};
    for (size_t i = 0; i < sizeof badp / sizeof badp[0]; i++) {
        char line[128], name[96];
        snprintf(line, sizeof line, "PROXY TCP4 1.2.3.4 5.6.7.8 %s 2\r\n", badp[i]);
        snprintf(name, sizeof name, "v1 bad source port \"%s\"", badp[i]);
        v1(name, line, GW_PP_ANY, GW_PP_EV1PORT, NULL);
        snprintf(line, sizeof line, "PROXY TCP4 1.2.3.4 5.6.7.8 1 %s\r\n", badp[i]);
        snprintf(name, sizeof name, "v1 bad destination port \"%s\"", badp[i]);
        v1(name, line, GW_PP_ANY, GW_PP_EV1PORT, NULL);
    }
    /* refused at the first byte that makes it wrong, not at the line's end */
    sample_x("v1 bad octet decided at its digit", (const uint8_t *)"PROXY TCP4 1.2.3.256 ", 21,
             GW_PP_ANY, 4096, GW_PP_EV1ADDR, 20, NULL);
    sample_x("v1 port over 65535 decided at its digit", (const uint8_t *)"PROXY TCP4 1.2.3.4 1.2.3.4 65536",
             32, GW_PP_ANY, 4096, GW_PP_EV1PORT, 32, NULL);

    /* 108 bytes: one over the specification's limit, refused at byte 108 */
    char big[160];
    snprintf(big, sizeof big, "PROXY UNKNOWN %092d\r\n", 0);
    CHECK(strlen(big) == 108, "the oversized v1 sample is 108 bytes");
    sample_x("v1 of 108 bytes", (const uint8_t *)big, strlen(big), GW_PP_ANY, 4096, GW_PP_ETOOBIG,
             107, NULL);
    char inf[300];
    memset(inf, 'a', sizeof inf);
    memcpy(inf, "PROXY UNKNOWN ", 14);
    sample_x("v1 with no CRLF", (const uint8_t *)inf, sizeof inf, GW_PP_ANY, 4096, GW_PP_ETOOBIG,
             107, NULL);
    const char *l4 = "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n";
    size_t n4 = strlen(l4);
    sample_x("v1 one byte over max_len", (const uint8_t *)l4, n4, GW_PP_ANY, n4 - 1,
             GW_PP_ETOOBIG, n4 - 1, NULL);
    sample_x("v1 exactly max_len", (const uint8_t *)l4, n4, GW_PP_ANY, n4, (int)n4, n4, NULL);
}

/* Builds a v2 header: signature, ver_cmd, fam, then body (addresses and
 * TLVs) with the length field set from blen. Returns the total length. */
static size_t mk2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t blen)
{
    memcpy(out, SIG, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    if (blen)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

/* Appends a TLV to body at *n. */
static void tlv(uint8_t *body, size_t *n, uint8_t type, const void *v, size_t len)
{
    body[(*n)++] = type;
    body[(*n)++] = (uint8_t)(len >> 8);
    body[(*n)++] = (uint8_t)len;
    if (len)
        memcpy(body + *n, v, len);
    *n += len;
}

/* Sets the CRC32C TLV whose value starts at crc_at in h[0..n). */
static void set_crc(uint8_t *h, size_t n, size_t crc_at)
{
    memset(h + crc_at, 0, 4);
    uint32_t c = gw_pp_crc32c(0, h, n);
    h[crc_at] = (uint8_t)(c >> 24);
    h[crc_at + 1] = (uint8_t)(c >> 16);
    h[crc_at + 2] = (uint8_t)(c >> 8);
    h[crc_at + 3] = (uint8_t)c;
}

static const uint8_t A4[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb};

static void a6(uint8_t *b)
{
    struct in6_addr s, d;
    inet_pton(AF_INET6, "2001:db8::1", &s);
    inet_pton(AF_INET6, "2001:db8::2", &d);
    memcpy(b, &s, 16);
    memcpy(b + 16, &d, 16);
    b[32] = 0x30, b[33] = 0x39, b[34] = 0x01, b[35] = 0xbb;   /* 12345, 443 */
}

static void test_v2(void)
{
    uint8_t h[600], body[512];
    gw_pp_header_t r;
    size_t n = mk2(h, 0x21, 0x11, A4, 12);
    memcpy(h + n, HELLO, sizeof HELLO);
    sample("v2 PROXY INET, TLS after it", h, n + sizeof HELLO, GW_PP_ANY, 28, &r);
    CHECK(r.version == 2 && r.command == GW_PP_PROXY && r.family == GW_PP_INET &&
              is_in(&r.src, "192.0.2.1", 56324) && is_in(&r.dst, "198.51.100.7", 443) &&
              r.ntlv == 0 && !r.tlvs.p && !r.has_crc32c && !r.has_ssl,
          "v2 PROXY INET: addresses and ports, no TLVs");
    sample("v2 PROXY INET only v2 accepted", h, n, GW_PP_V2, 28, NULL);

    a6(body);
    n = mk2(h, 0x21, 0x21, body, 36);
    sample("v2 PROXY INET6", h, n, GW_PP_ANY, 52, &r);
    CHECK(r.family == GW_PP_INET6 && is_in6(&r.src, "2001:db8::1", 12345) &&
              is_in6(&r.dst, "2001:db8::2", 443),
          "v2 PROXY INET6: addresses and ports");

    n = mk2(h, 0x21, 0x00, NULL, 0);
    sample("v2 PROXY UNSPEC", h, n, GW_PP_ANY, 16, &r);
    CHECK(r.command == GW_PP_PROXY && r.family == GW_PP_UNSPEC && r.src.ss_family == AF_UNSPEC,
          "v2 PROXY UNSPEC: the real peer stands");
    size_t bn = 0;
    tlv(body, &bn, GW_PP2_TYPE_AUTHORITY, "a.example", 9);
    n = mk2(h, 0x21, 0x00, body, bn);
    sample("v2 PROXY UNSPEC with a TLV", h, n, GW_PP_ANY, (int)n, &r);
    CHECK(r.family == GW_PP_UNSPEC && is_str(r.authority, "a.example") && r.ntlv == 1,
          "v2 PROXY UNSPEC: TLVs right after the header");

    n = mk2(h, 0x20, 0x00, NULL, 0);
    sample("v2 LOCAL UNSPEC", h, n, GW_PP_ANY, 16, &r);
    CHECK(r.command == GW_PP_LOCAL && r.family == GW_PP_UNSPEC, "v2 LOCAL: command and family");
    n = mk2(h, 0x20, 0x11, A4, 12);
    sample("v2 LOCAL INET", h, n, GW_PP_ANY, 28, &r);
    CHECK(r.command == GW_PP_LOCAL && r.family == GW_PP_UNSPEC && r.src.ss_family == AF_UNSPEC,
          "v2 LOCAL INET: the addresses are ignored");
    a6(body);
    n = mk2(h, 0x20, 0x21, body, 36);
    sample("v2 LOCAL INET6", h, n, GW_PP_ANY, 52, &r);
    CHECK(r.command == GW_PP_LOCAL && r.family == GW_PP_UNSPEC, "v2 LOCAL INET6: ignored");
    n = mk2(h, 0x20, 0x31, (const uint8_t *)"garbage", 7);
    sample("v2 LOCAL with a UNIX family and a short block", h, n, GW_PP_ANY, 23, &r);
    CHECK(r.command == GW_PP_LOCAL && r.ntlv == 0, "v2 LOCAL: the block is skipped");
    n = mk2(h, 0x20, 0x11, (const uint8_t *)"\x05", 1);
    sample("v2 LOCAL INET with a short block", h, n, GW_PP_ANY, 17, NULL);

    /* exactly at the maximum, and the format's own maximum */
    static uint8_t huge[16 + 65535];
    memset(body, 0, sizeof body);
    memcpy(body, A4, 12);
    bn = 12;
    tlv(body, &bn, GW_PP2_TYPE_NOOP, huge, 85);
    n = mk2(h, 0x21, 0x11, body, bn);
    sample_x("v2 at max_len", h, n, GW_PP_ANY, n, (int)n, n, NULL);
    memcpy(huge, SIG, 12);
    huge[12] = 0x21, huge[13] = 0x11, huge[14] = 0xff, huge[15] = 0xff;
    memcpy(huge + 16, A4, 12);
    huge[28] = GW_PP2_TYPE_NOOP, huge[29] = 0xff, huge[30] = 0xff - 15;
    CHECK(gw_pp_parse(huge, sizeof huge, GW_PP_ANY, GW_PP_V2_MAX, &r) == (int)sizeof huge &&
              r.ntlv == 1,
          "v2 of 16 + 65535 bytes with max_len GW_PP_V2_MAX");
    CHECK(gw_pp_parse(huge, sizeof huge, GW_PP_ANY, SIZE_MAX, &r) == (int)sizeof huge,
          "v2 of 16 + 65535 bytes with an unbounded max_len");
}

static void test_v2_tlvs(void)
{
    uint8_t h[600], body[512], ssl[200];
    gw_pp_header_t r;
    size_t bn = 12, sn = 0, n;
    memcpy(body, A4, 12);
    tlv(body, &bn, GW_PP2_TYPE_ALPN, "h2", 2);
    tlv(body, &bn, GW_PP2_TYPE_AUTHORITY, "api.example.com", 15);
    tlv(body, &bn, GW_PP2_TYPE_UNIQUE_ID, "id-42", 5);
    tlv(body, &bn, GW_PP2_TYPE_NOOP, "\0\0\0", 3);
    tlv(body, &bn, GW_PP2_TYPE_NOOP, NULL, 0);
    tlv(body, &bn, 0xE0, "custom", 6);
    tlv(body, &bn, GW_PP2_TYPE_NETNS, "blue", 4);
    ssl[0] = GW_PP2_CLIENT_SSL | GW_PP2_CLIENT_CERT_CONN;
    memcpy(ssl + 1, "\0\0\0\x02", 4);
    sn = 5;
    tlv(ssl, &sn, GW_PP2_SUBTYPE_SSL_VERSION, "TLSv1.3", 7);
    tlv(ssl, &sn, GW_PP2_SUBTYPE_SSL_CN, "device-7", 8);
    tlv(ssl, &sn, GW_PP2_SUBTYPE_SSL_CIPHER, "TLS_AES_128_GCM_SHA256", 22);
    tlv(ssl, &sn, GW_PP2_SUBTYPE_SSL_SIG_ALG, "ecdsa-with-SHA256", 17);
    tlv(ssl, &sn, GW_PP2_SUBTYPE_SSL_KEY_ALG, "EC256", 5);
    tlv(ssl, &sn, 0x2F, "x", 1);                     /* unknown subtype: skipped */
    tlv(body, &bn, GW_PP2_TYPE_SSL, ssl, sn);
    size_t crc_at = 16 + bn + 3;
    tlv(body, &bn, GW_PP2_TYPE_CRC32C, "\0\0\0\0", 4);
    n = mk2(h, 0x21, 0x11, body, bn);
    set_crc(h, n, crc_at);
    sample("v2 every TLV type, CRC32C good", h, n, GW_PP_ANY, (int)n, &r);
    CHECK(is_str(r.alpn, "h2") && is_str(r.authority, "api.example.com") &&
              is_str(r.unique_id, "id-42") && is_str(r.netns, "blue") && r.has_crc32c &&
              r.has_ssl && r.ssl_client == 3 && r.ssl_verify == 2 &&
              is_str(r.ssl_version, "TLSv1.3") && is_str(r.ssl_cn, "device-7") &&
              is_str(r.ssl_cipher, "TLS_AES_128_GCM_SHA256") &&
              is_str(r.ssl_sig_alg, "ecdsa-with-SHA256") && is_str(r.ssl_key_alg, "EC256") &&
              r.ntlv == 9,
          "v2 TLVs: every field, pointing into the input");
    CHECK(r.alpn.p == h + 16 + 12 + 3 && r.tlvs.p == h + 28 && r.tlvs.n == n - 28,
          "v2 TLVs: no copies");
    size_t pos = 0, count = 0, custom = 0;
    uint8_t type;
    gw_pp_bytes_t v;
    while (gw_pp_tlv_next(&r, &pos, &type, &v)) {
        count++;
        if (type == 0xE0 && v.n == 6 && memcmp(v.p, "custom", 6) == 0)
            custom = 1;
    }
    CHECK(count == 9 && custom && pos == r.tlvs.n, "gw_pp_tlv_next walks every TLV");

    h[20] ^= 1;   /* a source address bit, after the CRC was set */
    sample("v2 CRC32C bad (address changed)", h, n, GW_PP_ANY, GW_PP_ECRC, NULL);
    h[20] ^= 1;
    h[crc_at + 3] ^= 0x80;
    sample_x("v2 CRC32C bad (value changed)", h, n, GW_PP_ANY, 4096, GW_PP_ECRC, n, NULL);
    h[crc_at + 3] ^= 0x80;
    CHECK(gw_pp_parse(h, n, GW_PP_ANY, 4096, &r) == (int)n, "v2 CRC32C good again");
}

/* As HAProxy 2.6 sends them (send-proxy-v2 with proxy-v2-options ssl,
 * cert-cn, ssl-cipher, cert-sig, cert-key, authority, crc32c, unique-id;
 * and crc32c alone over IPv6), with the first bytes after the header. */
static const char HAP_TLS[] =
    "0d0a0d0a000d0a515549540a2111007b7f0000017f000001b692480903000428a19ddd010002683202000f6170"
    "692e6578616d706c652e636f6d0500076162632d3132332000440100000000210007544c5376312e3325000545"
    "4332353624001165636473612d776974682d534841323536230016544c535f4145535f3235365f47434d5f5348"
    "413338340a";
static const char HAP_V6[] =
    "0d0a0d0a000d0a515549540a2121002b000000000000000000000000000000010000000000000000000000000000"
    "0001b29a480b03000407ea25e668656c6c6f";

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    for (; s[0] && s[1]; s += 2) {
        unsigned b;
        sscanf(s, "%2x", &b);
        out[n++] = (uint8_t)b;
    }
    return n;
}

static void test_haproxy(void)
{
    uint8_t b[400];
    gw_pp_header_t r;
    size_t n = unhex(HAP_TLS, b);
    sample("HAProxy v2 with SSL TLVs and CRC32C", b, n, GW_PP_ANY, 139, &r);
    CHECK(r.family == GW_PP_INET && is_in(&r.src, "127.0.0.1", 46738) &&
              is_in(&r.dst, "127.0.0.1", 18441) && r.has_crc32c && is_str(r.alpn, "h2") &&
              is_str(r.authority, "api.example.com") && is_str(r.unique_id, "abc-123") &&
              r.has_ssl && r.ssl_client == GW_PP2_CLIENT_SSL && r.ssl_verify == 0 &&
              is_str(r.ssl_version, "TLSv1.3") && is_str(r.ssl_key_alg, "EC256") &&
              is_str(r.ssl_sig_alg, "ecdsa-with-SHA256") &&
              is_str(r.ssl_cipher, "TLS_AES_256_GCM_SHA384") && !r.ssl_cn.p,
          "HAProxy v2: every field");
    b[45] ^= 0x20;   /* inside the authority: the CRC no longer matches */
    sample("HAProxy v2 altered", b, n, GW_PP_ANY, GW_PP_ECRC, NULL);
    n = unhex(HAP_V6, b);
    sample("HAProxy v2 INET6 with CRC32C", b, n, GW_PP_ANY, 59, &r);
    CHECK(r.family == GW_PP_INET6 && is_in6(&r.src, "::1", 45722) &&
              is_in6(&r.dst, "::1", 18443) && r.has_crc32c && r.ntlv == 1,
          "HAProxy v2 INET6: addresses and CRC32C");
}

static void test_v2_errors(void)
{
    uint8_t h[600], body[512];
    size_t n, bn;

    sample_x("TLS ClientHello", HELLO, sizeof HELLO, GW_PP_ANY, 4096, GW_PP_ENOTPROXY, 1, NULL);
    sample_x("TLS ClientHello, v1 listener", HELLO, sizeof HELLO, GW_PP_V1, 4096, GW_PP_ENOTPROXY,
             1, NULL);
    sample_x("TLS ClientHello, v2 listener", HELLO, sizeof HELLO, GW_PP_V2, 4096, GW_PP_ENOTPROXY,
             1, NULL);
    n = mk2(h, 0x21, 0x11, A4, 12);
    sample_x("v2 on a v1-only listener", h, n, GW_PP_V1, 4096, GW_PP_ENOTPROXY, 1, NULL);
    sample_x("nothing accepted", h, n, 0, 4096, GW_PP_ENOTPROXY, 1, NULL);

    for (size_t i = 1; i < 12; i++) {
        char name[64];
        n = mk2(h, 0x21, 0x11, A4, 12);
        h[i] ^= 0x40;
        snprintf(name, sizeof name, "v2 signature byte %zu wrong", i);
        sample_x(name, h, n, GW_PP_ANY, 4096, GW_PP_EV2SIG, i + 1, NULL);
    }
    static const uint8_t vers[] = {0x01, 0x11, 0x31, 0xF1};
    for (size_t i = 0; i < sizeof vers; i++) {
        char name[64];
        n = mk2(h, vers[i], 0x11, A4, 12);
        snprintf(name, sizeof name, "v2 version/command 0x%02x", vers[i]);
        sample_x(name, h, n, GW_PP_ANY, 4096, GW_PP_EV2VER, 13, NULL);
    }
    static const uint8_t cmds[] = {0x22, 0x2F};
    for (size_t i = 0; i < sizeof cmds; i++) {
        char name[64];
        n = mk2(h, cmds[i], 0x11, A4, 12);
        snprintf(name, sizeof name, "v2 command 0x%02x", cmds[i]);
        sample_x(name, h, n, GW_PP_ANY, 4096, GW_PP_EV2CMD, 13, NULL);
    }
    memset(body, 0, 216);
    n = mk2(h, 0x21, 0x31, body, 216);
    gw_pp_header_t r;
    sample("v2 PROXY UNIX stream", h, n, GW_PP_ANY, 232, &r);
    CHECK(r.command == GW_PP_PROXY && r.family == GW_PP_UNSPEC && r.src.ss_family == AF_UNSPEC,
          "v2 PROXY UNIX stream: no address taken (the real peer stands)");
    static const uint8_t fams[] = {0x32, 0x30, 0x41, 0xF1};
    for (size_t i = 0; i < sizeof fams; i++) {
        char name[64];
        memset(body, 0, 216);
        n = mk2(h, 0x21, fams[i], body, 216);
        snprintf(name, sizeof name, "v2 PROXY family 0x%02x", fams[i]);
        sample_x(name, h, n, GW_PP_ANY, 4096, GW_PP_EFAMILY, 14, NULL);
    }
    static const uint8_t trs[] = {0x12, 0x22, 0x10, 0x20, 0x01, 0x02, 0x13, 0x1F};
    for (size_t i = 0; i < sizeof trs; i++) {
        char name[64];
        n = mk2(h, 0x21, trs[i], A4, 12);
        snprintf(name, sizeof name, "v2 PROXY family/transport 0x%02x", trs[i]);
        sample_x(name, h, n, GW_PP_ANY, 4096, GW_PP_ETRANSPORT, 14, NULL);
    }
    n = mk2(h, 0x21, 0x11, A4, 8);
    sample_x("v2 INET with 8 address bytes", h, n, GW_PP_ANY, 4096, GW_PP_ELENGTH, 16, NULL);
    a6(body);
    n = mk2(h, 0x21, 0x21, body, 35);
    sample_x("v2 INET6 with 35 address bytes", h, n, GW_PP_ANY, 4096, GW_PP_ELENGTH, 16, NULL);
    n = mk2(h, 0x21, 0x21, A4, 12);
    sample_x("v2 INET6 with INET's 12 bytes", h, n, GW_PP_ANY, 4096, GW_PP_ELENGTH, 16, NULL);

    /* oversized: refused when the length field arrives, not after the body */
    n = mk2(h, 0x21, 0x11, A4, 12);
    h[14] = 0x13, h[15] = 0x89;       /* 5001 */
    sample_x("v2 length over max_len", h, n, GW_PP_ANY, 4096, GW_PP_ETOOBIG, 16, NULL);
    n = mk2(h, 0x21, 0x11, A4, 12);
    sample_x("v2 one byte over max_len", h, n, GW_PP_ANY, 27, GW_PP_ETOOBIG, 16, NULL);
    sample_x("v2 max_len under 16", h, n, GW_PP_ANY, 10, GW_PP_ETOOBIG, 10, NULL);
    n = mk2(h, 0x20, 0x00, NULL, 0);
    h[14] = 0xff, h[15] = 0xff;
    sample_x("v2 LOCAL over max_len", h, n, GW_PP_ANY, 4096, GW_PP_ETOOBIG, 16, NULL);

    /* TLVs */
    struct { const char *name; uint8_t type; const char *v; size_t len; } bad[] = {
        {"v2 empty ALPN", GW_PP2_TYPE_ALPN, "", 0},
        {"v2 empty AUTHORITY", GW_PP2_TYPE_AUTHORITY, "", 0},
        {"v2 AUTHORITY with a NUL", GW_PP2_TYPE_AUTHORITY, "a\0b", 3},
        {"v2 AUTHORITY with CRLF", GW_PP2_TYPE_AUTHORITY, "a\r\nb", 4},
        {"v2 NETNS not ASCII", GW_PP2_TYPE_NETNS, "n\x80", 2},
        {"v2 CRC32C of 3 bytes", GW_PP2_TYPE_CRC32C, "abc", 3},
        {"v2 CRC32C of 5 bytes", GW_PP2_TYPE_CRC32C, "abcde", 5},
        {"v2 SSL of 4 bytes", GW_PP2_TYPE_SSL, "\1\0\0\0", 4},
        {"v2 SSL sub-TLV overruns", GW_PP2_TYPE_SSL, "\1\0\0\0\0\x22\0\x09" "abc", 11},
        {"v2 SSL sub-TLV header cut", GW_PP2_TYPE_SSL, "\1\0\0\0\0\x22\0", 7},
        {"v2 SSL CN twice", GW_PP2_TYPE_SSL, "\1\0\0\0\0\x22\0\1a\x22\0\1b", 13},
        {"v2 SSL empty version", GW_PP2_TYPE_SSL, "\1\0\0\0\0\x21\0\0", 8},
        {"v2 SSL CN with a NUL", GW_PP2_TYPE_SSL, "\1\0\0\0\0\x22\0\2a\0", 10},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bn = 12;
        memcpy(body, A4, 12);
        tlv(body, &bn, bad[i].type, bad[i].v, bad[i].len);
        n = mk2(h, 0x21, 0x11, body, bn);
        sample(bad[i].name, h, n, GW_PP_ANY, GW_PP_ETLV, NULL);
    }
    char uid[129];
    memset(uid, 'u', sizeof uid);
    bn = 12;
    tlv(body, &bn, GW_PP2_TYPE_UNIQUE_ID, uid, 128);
    n = mk2(h, 0x21, 0x11, body, bn);
    sample("v2 UNIQUE_ID of 128 bytes", h, n, GW_PP_ANY, (int)n, NULL);
    bn = 12;
    tlv(body, &bn, GW_PP2_TYPE_UNIQUE_ID, uid, 129);
    n = mk2(h, 0x21, 0x11, body, bn);
    sample("v2 UNIQUE_ID of 129 bytes", h, n, GW_PP_ANY, GW_PP_ETLV, NULL);

    static const uint8_t twice[] = {GW_PP2_TYPE_ALPN, GW_PP2_TYPE_AUTHORITY, GW_PP2_TYPE_UNIQUE_ID,
                                    GW_PP2_TYPE_NETNS, GW_PP2_TYPE_SSL, GW_PP2_TYPE_CRC32C};
    for (size_t i = 0; i < sizeof twice; i++) {
        char name[64];
        bn = 12;
        tlv(body, &bn, twice[i], "\1\0\0\0\0", twice[i] == GW_PP2_TYPE_CRC32C ? 4 : 5);
        tlv(body, &bn, GW_PP2_TYPE_NOOP, NULL, 0);
        size_t second = 16 + bn;
        tlv(body, &bn, twice[i], "\1\0\0\0\0", twice[i] == GW_PP2_TYPE_CRC32C ? 4 : 5);
        n = mk2(h, 0x21, 0x11, body, bn);
        snprintf(name, sizeof name, "v2 TLV 0x%02x twice", twice[i]);
        /* decided by the second one's type, before its value or the CRC */
        if (twice[i] == GW_PP2_TYPE_CRC32C || twice[i] == GW_PP2_TYPE_SSL ||
            twice[i] == GW_PP2_TYPE_ALPN || twice[i] == GW_PP2_TYPE_UNIQUE_ID)
            sample_x(name, h, n, GW_PP_ANY, 4096, GW_PP_ETLV, second + 3, NULL);
        else
            sample(name, h, n, GW_PP_ANY, GW_PP_ETLV, NULL);   /* first value already bad */
    }

    /* a TLV longer than what is left: refused at its header, before the rest */
    bn = 12;
    tlv(body, &bn, GW_PP2_TYPE_NOOP, "abcd", 4);
    n = mk2(h, 0x21, 0x11, body, bn + 40);   /* length says 40 more bytes follow */
    memset(h + n - 40, 0, 40);
    h[n - 40] = 0xE1, h[n - 39] = 0, h[n - 38] = 38;   /* 3 + 38 = 41 > 40 */
    sample_x("v2 TLV overruns the header", h, n, GW_PP_ANY, 4096, GW_PP_ETLV, n - 37, NULL);
    h[n - 38] = 37;
    sample_x("v2 TLV that ends exactly there", h, n, GW_PP_ANY, 4096, (int)n, n, NULL);
    bn = 12;
    tlv(body, &bn, GW_PP2_TYPE_NOOP, "abcd", 4);
    body[bn++] = GW_PP2_TYPE_NOOP;
    body[bn++] = 0;
    n = mk2(h, 0x21, 0x11, body, bn);
    sample_x("v2 2 bytes after the last TLV", h, n, GW_PP_ANY, 4096, GW_PP_ETLV, n - 2, NULL);
    n = mk2(h, 0x21, 0x11, body, bn - 1);
    sample_x("v2 1 byte after the last TLV", h, n, GW_PP_ANY, 4096, GW_PP_ETLV, n - 1, NULL);
}

static void test_misc(void)
{
    CHECK(gw_pp_crc32c(0, (const uint8_t *)"123456789", 9) == 0xE3069283u,
          "CRC32C check value of \"123456789\"");
    uint32_t c = gw_pp_crc32c(0, (const uint8_t *)"1234", 4);
    CHECK(gw_pp_crc32c(c, (const uint8_t *)"56789", 5) == 0xE3069283u, "CRC32C in pieces");
    CHECK(gw_pp_crc32c(0, NULL, 0) == 0, "CRC32C of nothing");

    int distinct = 1;
    for (int a = -13; a <= -1; a++) {
        if (strcmp(gw_pp_strerror(a), "?") == 0)
            distinct = 0;
        for (int b = a + 1; b <= -1; b++)
            if (strcmp(gw_pp_strerror(a), gw_pp_strerror(b)) == 0)
                distinct = 0;
    }
    CHECK(distinct && strcmp(gw_pp_strerror(-14), "?") == 0 && strcmp(gw_pp_strerror(5), "?") == 0,
          "a distinct reason per error code");

    gw_pp_header_t r;
    memset(&r, 0x5a, sizeof r);
    CHECK(gw_pp_parse((const uint8_t *)"", 0, GW_PP_ANY, 4096, &r) == 0, "no bytes: need more");
    CHECK(gw_pp_parse((const uint8_t *)"PROXY TCP4 ", 11, GW_PP_ANY, 4096, &r) == 0 &&
              r.version == 0x5a5a5a5a,
          "out untouched unless the header is complete");
}

int main(void)
{
    test_v1();
    test_v1_errors();
    test_v2();
    test_v2_tlvs();
    test_haproxy();
    test_v2_errors();
    test_misc();
    return check_done();
}
