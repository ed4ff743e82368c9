/* config/host: the one canonical spelling of a Host header's host.
 *
 * A route may name a host, and an upstream (or a virtual-host server behind
 * it) reads the Host it receives. If two spellings of a host mean the same
 * name there but differ as bytes here (internal.example. with its trailing
 * dot, Internal.Example, internal%2Eexample), a host-specific route can be
 * bypassed. cfg_host_canon() turns a Host value into its canonical spelling
 * or refuses it; the gateway matches routes on that spelling and forwards
 * it, and the config loader requires routes[].host to be written so.
 *
 * Here (config is the lowest layer) because both the loader and the request
 * path use it. Depends on nothing but the C library: a fuzz target can call
 * it alone.
 */
#ifndef PORTCULLIS_CONFIG_HOST_H
#define PORTCULLIS_CONFIG_HOST_H

#include <stddef.h>

/* Why a Host is refused (cfg_host_canon() returns one of these). */
enum cfg_host_err {
    CFG_HOST_EMPTY = -1,      /* empty, or nothing before the ':' of a port */
    CFG_HOST_BAD_CHAR = -2,   /* a name byte other than a letter, digit, '-' or '.' ('%', '_', '@', space ...) */
    CFG_HOST_BAD_LABEL = -3,  /* an empty label ("a..b", ".a", "a.." ), a label over 63, or one starting or ending with '-' */
    CFG_HOST_TOO_LONG = -4,   /* a name longer than 253 characters (its one trailing dot not counted) */
    CFG_HOST_BAD_IPV4 = -5,   /* the last label is numeric (digits, or 0x...), but the name is not a dotted quad
                                 in canonical decimal (127.1, 0x7f.1, 127.0.0.01, 256.0.0.1, 2130706433) */
    CFG_HOST_BAD_IPV6 = -6,   /* '[' without its ']', or not an IPv6 address inside (a zone id, IPvFuture) */
    CFG_HOST_BAD_PORT = -7,   /* after the host: not ':' and 1 to 65535 in decimal digits */
    CFG_HOST_NO_ROOM = -8,    /* out is too small (a caller error; CFG_HOST_MAX + 1 bytes always do) */
};

/* The longest canonical host: a 253-character name (a bracketed IPv6
 * address is at most 47). */
#define CFG_HOST_MAX 253

/* Canonicalises the Host header value v (len bytes, as received: no
 * surrounding whitespace is skipped).
 *
 * Accepted: host [":" port], where host is
 *  - a name: labels of letters, digits and '-' (not first or last), 1 to
 *    63 each, at most 253 in all, with at most ONE trailing dot; or
 *  - an IPv4 address in dotted-quad canonical decimal (no leading zeros);
 *    a name whose last label is numeric must be one (as URL parsers read
 *    it as an address); or
 *  - an IPv6 address in brackets, in any spelling inet_pton() accepts;
 * and port is decimal digits with a value of 1 to 65535.
 *
 * The canonical host: letters lowercased, the trailing dot removed, an IPv6
 * address in its RFC 5952 form ("[::1]", "[2001:db8::1]"); the port is not
 * part of it. Everything else is refused, with one of enum cfg_host_err.
 *
 * Returns the length of the canonical host (>= 1), written NUL-terminated
 * to out (outcap bytes), and the port in *port (0 if none was sent; port
 * may be NULL); or a negative enum cfg_host_err, with out and *port
 * unspecified. out must not overlap v. Nothing is allocated. */
long cfg_host_canon(const char *v, size_t len, char *out, size_t outcap, unsigned *port);

/* A one-sentence, static description of a negative cfg_host_canon()
 * result, for the client's error message and config errors. */
const char *cfg_host_strerror(long rc);

#endif
