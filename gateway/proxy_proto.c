/* gateway/proxy_proto: PROXY protocol v1/v2 header parser (see proxy_proto.h).
 *
 * Both versions are read by one rule: a scan in byte order in which every
 * check needs only the bytes before the one it is at. NEED(i) stops the scan
 * before byte i is looked at: with GW_PP_ETOOBIG when byte i lies past the
 * limit (the header cannot end in time), with 0 (need more) when the caller
 * has not got it yet. So a prefix stops either at the same error as the whole
 * input or at a NEED, and the answer never changes as bytes are added. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define NEED(i)                       \
    do {                              \
        if ((size_t)(i) >= limit)     \
            return GW_PP_ETOOBIG;     \
        if ((size_t)(i) >= n)         \
            return 0;                 \
    } while (0)

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

const char *gw_pp_strerror(int code)
{
    switch (code) {
    case GW_PP_ENOTPROXY:  return "not a PROXY protocol header of an accepted version";
    case GW_PP_EV1:        return "malformed PROXY v1 header";
    case GW_PP_EV1ADDR:    return "bad address in PROXY v1 header";
    case GW_PP_EV1PORT:    return "bad port in PROXY v1 header";
    case GW_PP_EV2SIG:     return "bad PROXY v2 signature";
    case GW_PP_EV2VER:     return "bad PROXY v2 version";
    case GW_PP_EV2CMD:     return "bad PROXY v2 command";
    case GW_PP_EFAMILY:    return "unsupported PROXY v2 address family";
    case GW_PP_ETRANSPORT: return "unsupported PROXY v2 transport";
    case GW_PP_ELENGTH:    return "PROXY v2 length shorter than its addresses";
    case GW_PP_ETOOBIG:    return "PROXY header longer than the maximum";
    case GW_PP_ETLV:       return "malformed PROXY v2 TLV";
    case GW_PP_ECRC:       return "PROXY v2 CRC32C mismatch";
    default:               return "?";
    }
}

/* ---- CRC32C: reflected Castagnoli polynomial 0x82F63B78 ---- */

static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t gw_pp_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc32c_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN ...\r\n" ---- */

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(uint8_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Can s[0..k) begin a dotted-quad IPv4 address (octets 0..255, no leading
 * zeros, at most four)? */
static int ipv4_prefix_ok(const uint8_t *s, size_t k)
{
    unsigned dots = 0, digits = 0, val = 0;
    for (size_t i = 0; i < k; i++) {
        if (s[i] == '.') {
            if (digits == 0 || ++dots > 3)
                return 0;
            digits = val = 0;
        } else if (is_digit(s[i])) {
            if (digits == 1 && val == 0)
                return 0;                       /* a leading zero */
            val = val * 10 + (unsigned)(s[i] - '0');
            if (++digits > 3 || val > 255)
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Can s[0..k) begin an IPv6 address in inet_pton's syntax? Checks the
 * characters, group lengths, ":::" and a second "::", and an embedded IPv4
 * tail; inet_pton has the last word when the field ends. */
static int ipv6_prefix_ok(const uint8_t *s, size_t k)
{
    size_t group = 0, dcolons = 0;       /* group: where the current group starts */
    int dotted = 0;                      /* the group is an IPv4 tail */
    if (k > INET6_ADDRSTRLEN - 1)
        return 0;
    for (size_t i = 0; i < k; i++) {
        if (s[i] == ':') {
            if (dotted)
                return 0;                /* an IPv4 tail ends the address */
            if (i >= 1 && s[i - 1] == ':' && (++dcolons > 1 || (i >= 2 && s[i - 2] == ':')))
                return 0;
            group = i + 1;
            continue;
        }
        if (s[i] == '.')
            dotted = 1;
        if ((dotted || i - group >= 4 || !is_hex(s[i])) &&
            !ipv4_prefix_ok(s + group, i + 1 - group))
            return 0;
    }
    return 1;
}

/* Reads the address field at *i up to `term`, into dst (in_addr or in6_addr).
 * 1 read, 0 need more, < 0 error. */
static int v1_addr(const uint8_t *p, size_t n, size_t limit, size_t *i, int af, uint8_t term,
                   void *dst)
{
    size_t start = *i;
    uint8_t c;
    for (;;) {
        NEED(*i);
        c = p[*i];
        if (c == ' ' || c == '\r' || c == '\n')
            break;
        size_t k = *i - start + 1;
        if (!(af == AF_INET ? ipv4_prefix_ok(p + start, k) : ipv6_prefix_ok(p + start, k)))
            return GW_PP_EV1ADDR;
        (*i)++;
    }
    if (c != term)
        return GW_PP_EV1;
    char buf[INET6_ADDRSTRLEN];
    size_t len = *i - start;
    if (len == 0 || len >= sizeof buf)
        return GW_PP_EV1ADDR;
    memcpy(buf, p + start, len);
    buf[len] = '\0';
    if (inet_pton(af, buf, dst) != 1)
        return GW_PP_EV1ADDR;
    (*i)++;
    return 1;
}

/* Reads the port field at *i up to `term`: 0..65535, "0" or no leading zero. */
static int v1_port(const uint8_t *p, size_t n, size_t limit, size_t *i, uint8_t term,
                   uint16_t *port)
{
    size_t start = *i;
    unsigned v = 0;
    uint8_t c;
    for (;;) {
        NEED(*i);
        c = p[*i];
        if (c == ' ' || c == '\r' || c == '\n')
            break;
        if (!is_digit(c) || (*i > start && p[start] == '0'))
            return GW_PP_EV1PORT;
        v = v * 10 + (unsigned)(c - '0');
        if (v > 65535)
            return GW_PP_EV1PORT;
        (*i)++;
    }
    if (c != term)
        return GW_PP_EV1;
    if (*i == start)
        return GW_PP_EV1PORT;
    *port = (uint16_t)v;
    (*i)++;
    return 1;
}

/* The protocol word after "PROXY ": *af AF_INET, AF_INET6 or AF_UNSPEC
 * (UNKNOWN); *i is left on the byte after it (a space or CR). */
static int v1_proto(const uint8_t *p, size_t n, size_t limit, size_t *i, int *af)
{
    static const char *const words[] = {"TCP4", "TCP6", "UNKNOWN"};
    static const int afs[] = {AF_INET, AF_INET6, AF_UNSPEC};
    size_t start = *i;
    for (;;) {
        NEED(*i);
        uint8_t c = p[*i];
        size_t k = *i - start;
        if (c == ' ' || c == '\r') {
            for (size_t w = 0; w < 3; w++)
                if (strlen(words[w]) == k && memcmp(words[w], p + start, k) == 0) {
                    *af = afs[w];
                    return 1;
                }
            return GW_PP_EV1;
        }
        int prefix = 0;
        for (size_t w = 0; w < 3; w++)
            if (strlen(words[w]) > k && memcmp(words[w], p + start, k) == 0 &&
                (uint8_t)words[w][k] == c)
                prefix = 1;
        if (!prefix)
            return GW_PP_EV1;
        (*i)++;
    }
}

/* CR LF at *i: the line's end. */
static int v1_crlf(const uint8_t *p, size_t n, size_t limit, size_t *i)
{
    NEED(*i);
    if (p[*i] != '\r')
        return GW_PP_EV1;
    (*i)++;
    NEED(*i);
    if (p[*i] != '\n')
        return GW_PP_EV1;
    (*i)++;
    return 1;
}

/* After "PROXY UNKNOWN": CRLF, or a space and printable ASCII up to CRLF
 * (the specification says to ignore it). */
static int v1_unknown(const uint8_t *p, size_t n, size_t limit, size_t *i)
{
    if (p[*i] == ' ') {
        for ((*i)++;; (*i)++) {
            NEED(*i);
            if (p[*i] == '\r')
                break;
            if (p[*i] < 0x20 || p[*i] > 0x7E)
                return GW_PP_EV1;
        }
    }
    return v1_crlf(p, n, limit, i);
}

static void set_in(struct sockaddr_storage *ss, const void *addr, uint16_t port)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET;
    memcpy(&s->sin_addr, addr, 4);
    s->sin_port = htons(port);
}

static void set_in6(struct sockaddr_storage *ss, const void *addr, uint16_t port)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    s->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, addr, 16);
    s->sin6_port = htons(port);
}

#define STEP(call)              \
    do {                        \
        int r_ = (call);        \
        if (r_ <= 0)            \
            return r_;          \
    } while (0)

static int v1_parse(const uint8_t *p, size_t n, size_t max_len, gw_pp_header_t *h)
{
    size_t limit = max_len < GW_PP_V1_MAX ? max_len : GW_PP_V1_MAX;
    size_t i;
    for (i = 0; i < 6; i++) {
        NEED(i);
        if (p[i] != (uint8_t)"PROXY "[i])
            return GW_PP_ENOTPROXY;
    }
    int af = AF_UNSPEC;
    STEP(v1_proto(p, n, limit, &i, &af));
    h->version = 1;
    h->command = GW_PP_PROXY;
    if (af == AF_UNSPEC) {
        STEP(v1_unknown(p, n, limit, &i));
        h->family = GW_PP_UNSPEC;
        return (int)i;
    }
    if (p[i] != ' ')
        return GW_PP_EV1;
    i++;
    uint8_t src[16], dst[16];
    uint16_t sport = 0, dport = 0;
    STEP(v1_addr(p, n, limit, &i, af, ' ', src));
    STEP(v1_addr(p, n, limit, &i, af, ' ', dst));
    STEP(v1_port(p, n, limit, &i, ' ', &sport));
    STEP(v1_port(p, n, limit, &i, '\r', &dport));
    NEED(i);
    if (p[i++] != '\n')
        return GW_PP_EV1;
    if (af == AF_INET) {
        h->family = GW_PP_INET;
        set_in(&h->src, src, sport);
        set_in(&h->dst, dst, dport);
    } else {
        h->family = GW_PP_INET6;
        set_in6(&h->src, src, sport);
        set_in6(&h->dst, dst, dport);
    }
    return (int)i;
}

/* ---- v2: 16-byte header, address block, TLVs ---- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Text the specification calls a string: no control characters (NUL included). */
static int text_ok(const uint8_t *v, size_t n, size_t min)
{
    if (n < min)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] == 0x7F)
            return 0;
    return 1;
}

static int seen_once(unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return 0;
    *seen |= bit;
    return 1;
}

/* The SSL TLV's value: client, verify, then sub-TLVs that must fit in it. */
static int v2_ssl(const uint8_t *v, size_t n, gw_pp_header_t *h)
{
    if (n < 5)
        return GW_PP_ETLV;
    h->has_ssl = 1;
    h->ssl_client = v[0];
    h->ssl_verify = be32(v + 1);
    unsigned seen = 0;
    for (size_t off = 5; off < n;) {
        if (n - off < 3)
            return GW_PP_ETLV;
        uint8_t type = v[off];
        size_t len = be16(v + off + 1);
        if (len > n - off - 3)
            return GW_PP_ETLV;
        const uint8_t *val = v + off + 3;
        gw_pp_bytes_t *slot = NULL;
        switch (type) {
        case GW_PP2_SUBTYPE_SSL_VERSION: slot = &h->ssl_version; break;
        case GW_PP2_SUBTYPE_SSL_CN:      slot = &h->ssl_cn; break;
        case GW_PP2_SUBTYPE_SSL_CIPHER:  slot = &h->ssl_cipher; break;
        case GW_PP2_SUBTYPE_SSL_SIG_ALG: slot = &h->ssl_sig_alg; break;
        case GW_PP2_SUBTYPE_SSL_KEY_ALG: slot = &h->ssl_key_alg; break;
        default: break;
        }
        if (slot) {
            if (!seen_once(&seen, 1u << (type - GW_PP2_SUBTYPE_SSL_VERSION)) ||
                !text_ok(val, len, 1))
                return GW_PP_ETLV;
            slot->p = val;
            slot->n = len;
        }
        off += 3 + len;
    }
    return 1;
}

/* One complete TLV's value, by type; unknown types (and NOOP) pass. */
static int v2_tlv_value(uint8_t type, const uint8_t *v, size_t len, gw_pp_header_t *h)
{
    switch (type) {
    case GW_PP2_TYPE_ALPN:
        if (len < 1 || len > 255)
            return GW_PP_ETLV;
        h->alpn = (gw_pp_bytes_t){v, len};
        return 1;
    case GW_PP2_TYPE_AUTHORITY:
        if (!text_ok(v, len, 1))
            return GW_PP_ETLV;
        h->authority = (gw_pp_bytes_t){v, len};
        return 1;
    case GW_PP2_TYPE_UNIQUE_ID:
        if (len > 128)
            return GW_PP_ETLV;
        h->unique_id = (gw_pp_bytes_t){v, len};
        return 1;
    case GW_PP2_TYPE_NETNS:
        if (!text_ok(v, len, 1))
            return GW_PP_ETLV;
        for (size_t i = 0; i < len; i++)
            if (v[i] > 0x7E)
                return GW_PP_ETLV;     /* US-ASCII */
        h->netns = (gw_pp_bytes_t){v, len};
        return 1;
    case GW_PP2_TYPE_SSL:
        return v2_ssl(v, len, h);
    default:
        return 1;
    }
}

/* Bit for the types that may appear once; 0 for those that may repeat. */
static unsigned tlv_once_bit(uint8_t type)
{
    switch (type) {
    case GW_PP2_TYPE_ALPN:      return 1u << 0;
    case GW_PP2_TYPE_AUTHORITY: return 1u << 1;
    case GW_PP2_TYPE_CRC32C:    return 1u << 2;
    case GW_PP2_TYPE_UNIQUE_ID: return 1u << 3;
    case GW_PP2_TYPE_SSL:       return 1u << 4;
    case GW_PP2_TYPE_NETNS:     return 1u << 5;
    default:                    return 0;
    }
}

/* Walks the TLVs in p[start..total), as far as p[0..n) goes; *crc_at gets
 * the offset of the CRC32C value (0: none). 1 all walked, 0 need more. */
static int v2_tlvs(const uint8_t *p, size_t n, size_t start, size_t total, size_t *crc_at,
                   gw_pp_header_t *h)
{
    unsigned seen = 0;
    for (size_t off = start; off < total;) {
        if (total - off < 3)
            return GW_PP_ETLV;
        if (n < off + 3)
            return 0;
        uint8_t type = p[off];
        size_t len = be16(p + off + 1);
        if (len > total - off - 3)
            return GW_PP_ETLV;
        unsigned bit = tlv_once_bit(type);
        if (bit && !seen_once(&seen, bit))
            return GW_PP_ETLV;
        if (type == GW_PP2_TYPE_CRC32C && len != 4)
            return GW_PP_ETLV;
        if (n < off + 3 + len)
            return 0;
        if (type == GW_PP2_TYPE_CRC32C)
            *crc_at = off + 3;
        STEP(v2_tlv_value(type, p + off + 3, len, h));
        h->ntlv++;
        off += 3 + len;
    }
    return 1;
}

/* The family/transport byte of a PROXY command: its address block's length. */
static int v2_family(uint8_t fam, size_t *addr_len, enum gw_pp_family *family)
{
    switch (fam) {
    case 0x00: *addr_len = 0;  *family = GW_PP_UNSPEC; return 1;
    case 0x11: *addr_len = 12; *family = GW_PP_INET;   return 1;
    case 0x21: *addr_len = 36; *family = GW_PP_INET6;  return 1;
    /* a UNIX stream socket's client (HAProxy's v2 for a unix-socket frontend,
     * where its v1 says UNKNOWN): no IP address to take, so like UNSPEC the
     * real peer stands; its 216 bytes of paths are skipped */
    case 0x31: *addr_len = 216; *family = GW_PP_UNSPEC; return 1;
    default:
        /* UNIX DGRAM and the undefined families; else a transport that is not
         * STREAM (DGRAM, UNSPEC with an address family, undefined ones) */
        return (fam >> 4) > 2 ? GW_PP_EFAMILY : GW_PP_ETRANSPORT;
    }
}

static int v2_crc_ok(const uint8_t *p, size_t total, size_t crc_at)
{
    static const uint8_t zero[4] = {0};
    uint32_t c = gw_pp_crc32c(0, p, crc_at);
    c = gw_pp_crc32c(c, zero, 4);
    c = gw_pp_crc32c(c, p + crc_at + 4, total - crc_at - 4);
    return c == be32(p + crc_at);
}

static void v2_addrs(const uint8_t *a, gw_pp_header_t *h)
{
    if (h->family == GW_PP_INET) {
        set_in(&h->src, a, be16(a + 8));
        set_in(&h->dst, a + 4, be16(a + 10));
    } else if (h->family == GW_PP_INET6) {
        set_in6(&h->src, a, be16(a + 32));
        set_in6(&h->dst, a + 16, be16(a + 34));
    }
}

static int v2_parse(const uint8_t *p, size_t n, size_t max_len, gw_pp_header_t *h)
{
    size_t limit = max_len < GW_PP_V2_MAX ? max_len : GW_PP_V2_MAX;
    for (size_t i = 0; i < sizeof v2_sig; i++) {
        NEED(i);
        if (p[i] != v2_sig[i])
            return GW_PP_EV2SIG;
    }
    NEED(12);
    if (p[12] >> 4 != 2)
        return GW_PP_EV2VER;
    if ((p[12] & 0x0F) > 1)
        return GW_PP_EV2CMD;
    h->version = 2;
    h->command = (p[12] & 0x0F) ? GW_PP_PROXY : GW_PP_LOCAL;
    NEED(13);
    size_t addr_len = 0;
    if (h->command == GW_PP_PROXY)
        STEP(v2_family(p[13], &addr_len, &h->family));
    NEED(15);
    size_t total = 16 + (size_t)be16(p + 14);
    if (total > limit)
        return GW_PP_ETOOBIG;
    if (total < 16 + addr_len)
        return GW_PP_ELENGTH;
    if (h->command == GW_PP_LOCAL) {      /* the block is discarded, family and all */
        h->family = GW_PP_UNSPEC;
        return n < total ? 0 : (int)total;
    }
    if (n < 16 + addr_len)
        return 0;
    size_t crc_at = 0;
    STEP(v2_tlvs(p, n, 16 + addr_len, total, &crc_at, h));
    if (n < total)
        return 0;
    if (crc_at && !v2_crc_ok(p, total, crc_at))
        return GW_PP_ECRC;
    h->has_crc32c = crc_at != 0;
    if (total > 16 + addr_len)
        h->tlvs = (gw_pp_bytes_t){p + 16 + addr_len, total - 16 - addr_len};
    v2_addrs(p + 16, h);
    return (int)total;
}

int gw_pp_parse(const uint8_t *p, size_t n, unsigned accept, size_t max_len,
                gw_pp_header_t *out)
{
    if (n == 0)
        return 0;
    gw_pp_header_t h;
    memset(&h, 0, sizeof h);
    int r;
    if (p[0] == 'P' && (accept & GW_PP_V1))
        r = v1_parse(p, n, max_len, &h);
    else if (p[0] == v2_sig[0] && (accept & GW_PP_V2))
        r = v2_parse(p, n, max_len, &h);
    else
        r = GW_PP_ENOTPROXY;
    if (r > 0)
        *out = h;
    return r;
}

int gw_pp_tlv_next(const gw_pp_header_t *h, size_t *pos, uint8_t *type, gw_pp_bytes_t *value)
{
    const uint8_t *t = h->tlvs.p;
    size_t n = h->tlvs.n;
    if (!t || *pos + 3 > n)
        return 0;
    size_t len = be16(t + *pos + 1);
    if (len > n - *pos - 3)
        return 0;                         /* not one gw_pp_parse returned */
    *type = t[*pos];
    *value = (gw_pp_bytes_t){t + *pos + 3, len};
    *pos += 3 + len;
    return 1;
}
