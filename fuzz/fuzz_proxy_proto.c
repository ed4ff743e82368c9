/* fuzz_proxy_proto: the PROXY protocol header parser (gw_pp_parse).
 *
 * The input is what a client connection sends first. gw_pp_parse runs on
 * all of it and then on every prefix (each copied into a buffer of exactly
 * its size, so a read past the given length is an ASan report), and the
 * target checks the stated contract: every prefix answers 0 or the whole
 * input's answer, and once one answers every longer one does the same; a
 * header's length is at most the input's and max_len (107 for v1); the
 * header alone parses to itself and one byte less needs more; a max_len one
 * byte short refuses it as too big; what the result points to lies inside
 * the header; gw_pp_tlv_next walks exactly ntlv TLVs; errors are known codes.
 * Input layout: byte 0 bits 0-1 the accepted versions (GW_PP_V1/V2 bits),
 * bits 2-4 max_len (4096, 107, 16, 28, 52, 200, 16+65535, unbounded);
 * byte 1 the prefix step past the first 1024 bytes; the rest is the stream.
 */
#include "../gateway/proxy_proto.h"

#include "fuzz.h"

static const size_t max_lens[8] = {4096, 107, 16, 28, 52, 200, GW_PP_V2_MAX, SIZE_MAX};

static int parse_copy(const uint8_t *s, size_t k, unsigned accept, size_t max, gw_pp_header_t *h)
{
    uint8_t *b = malloc(k ? k : 1);
    if (!b)
        abort();
    memcpy(b, s, k);
    int r = gw_pp_parse(b, k, accept, max, h);
    free(b);
    return r;
}

static int inside(gw_pp_bytes_t b, const uint8_t *p, size_t n)
{
    return !b.p ? b.n == 0 : (b.p >= p && b.n <= n && (size_t)(b.p - p) <= n - b.n);
}

static void check_header(const gw_pp_header_t *h, const uint8_t *p, size_t r)
{
    FUZZ_ASSERT(h->version == 1 || h->version == 2, "version is 1 or 2");
    FUZZ_ASSERT(h->version == 2 || r <= GW_PP_V1_MAX, "a v1 header is at most 107 bytes");
    FUZZ_ASSERT(h->command == GW_PP_PROXY || (h->version == 2 && h->family == GW_PP_UNSPEC),
                "LOCAL only in v2, with no family");
    int af = h->family == GW_PP_INET ? AF_INET : h->family == GW_PP_INET6 ? AF_INET6 : AF_UNSPEC;
    FUZZ_ASSERT(h->src.ss_family == af && h->dst.ss_family == af,
                "the addresses are of the header's family");
    const gw_pp_bytes_t all[] = {h->tlvs, h->alpn, h->authority, h->unique_id, h->netns,
                                 h->ssl_version, h->ssl_cn, h->ssl_cipher, h->ssl_sig_alg,
                                 h->ssl_key_alg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        FUZZ_ASSERT(inside(all[i], p, r), "a TLV lies inside the header");
    FUZZ_ASSERT(h->unique_id.n <= 128, "UNIQUE_ID is at most 128 bytes");
    size_t pos = 0;
    unsigned count = 0;
    uint8_t type;
    gw_pp_bytes_t v;
    while (gw_pp_tlv_next(h, &pos, &type, &v)) {
        FUZZ_ASSERT(inside(v, h->tlvs.p, h->tlvs.n), "gw_pp_tlv_next stays inside the TLVs");
        count++;
    }
    FUZZ_ASSERT(count == h->ntlv && pos == h->tlvs.n, "gw_pp_tlv_next walks ntlv TLVs, all");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned accept = data[0] & 3;
    size_t max = max_lens[(data[0] >> 2) & 7];
    size_t step = 1 + data[1];
    const uint8_t *p = data + 2;
    size_t n = size - 2;

    gw_pp_header_t h;   /* the input itself ends at p[n]: its pointers stay valid */
    int r = gw_pp_parse(p, n, accept, max, &h);
    FUZZ_ASSERT(r <= 0 || ((size_t)r <= n && (size_t)r <= max), "consumed <= length and max_len");
    FUZZ_ASSERT(r >= 0 || strcmp(gw_pp_strerror(r), "?") != 0, "an error is a known code");

    int decided = 0;
    for (size_t k = 0; k < n; k += k < 1024 ? 1 : step) {
        gw_pp_header_t hk;
        int rk = parse_copy(p, k, accept, max, &hk);
        if (rk != 0)
            decided = 1;
        FUZZ_ASSERT(decided ? rk == r : rk == 0,
                    "a prefix answers 0 until it answers as the whole input");
    }
    if (r <= 0)
        return 0;
    check_header(&h, p, (size_t)r);
    gw_pp_header_t h2;
    FUZZ_ASSERT(parse_copy(p, (size_t)r, accept, max, &h2) == r, "the header alone is enough");
    FUZZ_ASSERT(h2.version == h.version && h2.family == h.family && h2.ntlv == h.ntlv &&
                    memcmp(&h2.src, &h.src, sizeof h.src) == 0 &&
                    memcmp(&h2.dst, &h.dst, sizeof h.dst) == 0,
                "the header alone gives the same result");
    FUZZ_ASSERT(parse_copy(p, (size_t)r - 1, accept, max, &h2) == 0,
                "one byte less than the header needs more");
    FUZZ_ASSERT(parse_copy(p, n, accept, (size_t)r - 1, &h2) == GW_PP_ETOOBIG,
                "a max_len one byte short is too big");
    return 0;
}
