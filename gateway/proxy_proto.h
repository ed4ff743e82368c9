/* gateway/proxy_proto: the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2) that an L4 load balancer sends before a client's first
 * TLS byte. A pure function over bytes: no allocation, no I/O, no state
 * outside what the caller passes in; what it returns points into the input. */
#ifndef PORTCULLIS_PROXY_PROTO_H
#define PORTCULLIS_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Which versions a listener accepts (gw_pp_parse's accept). */
#define GW_PP_V1 1u
#define GW_PP_V2 2u
#define GW_PP_ANY (GW_PP_V1 | GW_PP_V2)

#define GW_PP_V1_MAX 107u              /* the longest v1 line, CRLF included */
#define GW_PP_V2_MAX (16u + 65535u)    /* the longest v2 header the format can say */
#define GW_PP_MAX_DEFAULT 4096u        /* a sensible max_len for a listener */

/* Errors (negative returns of gw_pp_parse), one per reason; gw_pp_strerror
 * names each one. */
#define GW_PP_ENOTPROXY  (-1)   /* does not start like a header of an accepted version */
#define GW_PP_EV1        (-2)   /* v1: not "PROXY TCP4|TCP6|UNKNOWN", or bad spaces/CRLF */
#define GW_PP_EV1ADDR    (-3)   /* v1: an address that is not one of the protocol's family */
#define GW_PP_EV1PORT    (-4)   /* v1: a port that is not 0..65535 without leading zeros */
#define GW_PP_EV2SIG     (-5)   /* v2: starts with \r but the 12-byte signature differs */
#define GW_PP_EV2VER     (-6)   /* v2: version nibble is not 2 */
#define GW_PP_EV2CMD     (-7)   /* v2: command is neither LOCAL nor PROXY */
#define GW_PP_EFAMILY    (-8)   /* v2 PROXY: UNIX DGRAM or an undefined family */
#define GW_PP_ETRANSPORT (-9)   /* v2 PROXY: transport DGRAM, or not STREAM for INET/INET6 */
#define GW_PP_ELENGTH    (-10)  /* v2 PROXY: length shorter than the family's addresses */
#define GW_PP_ETOOBIG    (-11)  /* longer than max_len (or than v1's 107 bytes) */
#define GW_PP_ETLV       (-12)  /* v2: a TLV that overruns, repeats or has a bad value */
#define GW_PP_ECRC       (-13)  /* v2: the CRC32C TLV does not match the header */

enum gw_pp_command { GW_PP_LOCAL = 0, GW_PP_PROXY = 1 };

/* GW_PP_UNSPEC: no client address in the header (v1 UNKNOWN, v2 UNSPEC, every
 * LOCAL): the connection's real peer stands. */
enum gw_pp_family { GW_PP_UNSPEC = 0, GW_PP_INET = 1, GW_PP_INET6 = 2 };

/* Bytes inside the parsed input; p NULL and n 0 when absent. */
typedef struct {
    const uint8_t *p;
    size_t n;
} gw_pp_bytes_t;

/* The v2 TLV types that gw_pp_parse knows (proxy-protocol.txt 2.2). */
#define GW_PP2_TYPE_ALPN 0x01
#define GW_PP2_TYPE_AUTHORITY 0x02
#define GW_PP2_TYPE_CRC32C 0x03
#define GW_PP2_TYPE_NOOP 0x04
#define GW_PP2_TYPE_UNIQUE_ID 0x05
#define GW_PP2_TYPE_SSL 0x20
#define GW_PP2_SUBTYPE_SSL_VERSION 0x21
#define GW_PP2_SUBTYPE_SSL_CN 0x22
#define GW_PP2_SUBTYPE_SSL_CIPHER 0x23
#define GW_PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define GW_PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define GW_PP2_TYPE_NETNS 0x30

/* The SSL TLV's client bits. */
#define GW_PP2_CLIENT_SSL 0x01
#define GW_PP2_CLIENT_CERT_CONN 0x02
#define GW_PP2_CLIENT_CERT_SESS 0x04

typedef struct {
    int version;                     /* 1 or 2 */
    enum gw_pp_command command;
    enum gw_pp_family family;
    /* Source (the client) and destination, ports included; ss_family is
     * AF_INET or AF_INET6 as family says, AF_UNSPEC (all zero) when UNSPEC. */
    struct sockaddr_storage src, dst;
    /* v2 PROXY only (v1 and LOCAL have none): every TLV, walked and bounded. */
    gw_pp_bytes_t tlvs;              /* the whole TLV area, for gw_pp_tlv_next */
    unsigned ntlv;                   /* how many TLVs it holds */
    gw_pp_bytes_t alpn, authority, unique_id, netns;
    int has_crc32c;                  /* a CRC32C TLV was present (and matched) */
    int has_ssl;                     /* an SSL TLV was present: the fields below */
    uint8_t ssl_client;              /* GW_PP2_CLIENT_* bits */
    uint32_t ssl_verify;             /* 0: the client's certificate verified */
    gw_pp_bytes_t ssl_version, ssl_cn, ssl_cipher, ssl_sig_alg, ssl_key_alg;
} gw_pp_header_t;

/* Parses a PROXY protocol header at the start of p[0..n).
 *   accept   GW_PP_V1, GW_PP_V2 or GW_PP_ANY: the versions taken;
 *   max_len  the longest header taken, in bytes (v1 is bounded by 107 too);
 *   out      the header, set only when the return is > 0.
 * Returns:
 *   > 0  the header is complete and is that many bytes (what follows is the
 *        client's own stream, e.g. its TLS ClientHello);
 *   0    p[0..n) is a strict prefix of a header that may still be valid:
 *        call again with more bytes (the same ones first). Every one of the
 *        n bytes belongs to the header, so a caller peeking at a socket may
 *        consume them all, and on > 0 exactly the rest of the header;
 *   < 0  a GW_PP_E* code: the bytes cannot begin a valid header.
 * The answer is decided by the bytes in order: every prefix of an input gets
 * 0 or the input's own answer, so feeding growing prefixes gives the same
 * result as one call with all of them, at the first byte that decides it
 * (a TLS record, 0x16, is GW_PP_ENOTPROXY at its first byte). Never reads
 * p[n] or beyond. A v2 header's CRC32C, when present, is checked once the
 * header is complete. LOCAL (v2) is accepted whatever its family, and its
 * address block and TLVs are skipped, as the specification says. */
int gw_pp_parse(const uint8_t *p, size_t n, unsigned accept, size_t max_len,
                gw_pp_header_t *out);

/* A short reason for a gw_pp_parse code, for logs ("?" for others). */
const char *gw_pp_strerror(int code);

/* Walks the TLVs of a header gw_pp_parse returned: *pos starts at 0.
 * Returns 1 with the next TLV's type and value (a pointer into the input),
 * 0 when there are no more. */
int gw_pp_tlv_next(const gw_pp_header_t *h, size_t *pos, uint8_t *type, gw_pp_bytes_t *value);

/* CRC32C (Castagnoli) of p[0..n), continuing from crc (0 to start). */
uint32_t gw_pp_crc32c(uint32_t crc, const uint8_t *p, size_t n);

#endif
