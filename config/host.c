/* config/host: Host canonicalisation (see host.h). */
#include "host.h"

#include <arpa/inet.h>
#include <string.h>

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* Whether label s[0..n) is numeric as a URL parser's IPv4 check reads it:
 * decimal digits, or "0x" followed by hex digits (none included). */
static int numeric_label(const char *s, size_t n)
{
    int hex = n >= 2 && s[0] == '0' && (s[1] | 0x20) == 'x';
    if (n == 0)
        return 0;
    for (size_t i = hex ? 2 : 0; i < n; i++)
        if (!(hex ? is_hex((unsigned char)s[i]) : is_digit((unsigned char)s[i])))
            return 0;
    return 1;
}

/* Whether s[0..n) (lowercased, no trailing dot) is a dotted quad in
 * canonical decimal: four labels of 0..255, no leading zeros. */
static int canonical_quad(const char *s, size_t n)
{
    int parts = 0;
    size_t i = 0;
    while (i <= n) {
        size_t b = i;
        unsigned v = 0;
        while (i < n && is_digit((unsigned char)s[i]) && i - b < 4)
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t d = i - b;
        if (d == 0 || d > 3 || v > 255 || (d > 1 && s[b] == '0') || ++parts > 4)
            return 0;
        if (i == n)
            break;
        if (s[i] != '.')
            return 0;
        i++;
    }
    return parts == 4;
}

/* A name: checked and lowercased into out. Its length, or a negative error. */
static long canon_name(const char *v, size_t n, char *out, size_t outcap)
{
    if (n && v[n - 1] == '.')
        n--;   /* one trailing dot: the same name (a fully qualified spelling) */
    if (n == 0)
        return CFG_HOST_BAD_LABEL;
    size_t lab = 0;   /* start of the current label */
    for (size_t i = 0; i <= n; i++) {
        unsigned char ch = i < n ? (unsigned char)v[i] : '.';
        if (ch == '.') {
            if (i == lab || i - lab > 63 || v[lab] == '-' || v[i - 1] == '-')
                return CFG_HOST_BAD_LABEL;
            lab = i + 1;
        } else if (!(is_digit(ch) || ch == '-' || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))) {
            return CFG_HOST_BAD_CHAR;
        }
    }
    if (n > CFG_HOST_MAX)
        return CFG_HOST_TOO_LONG;
    if (n + 1 > outcap)
        return CFG_HOST_NO_ROOM;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    out[n] = '\0';
    size_t last = n;
    while (last > 0 && out[last - 1] != '.')
        last--;
    if (numeric_label(out + last, n - last) && !canonical_quad(out, n))
        return CFG_HOST_BAD_IPV4;
    return (long)n;
}

/* "[...]" of n bytes (brackets included): the RFC 5952 form into out. */
static long canon_ipv6(const char *v, size_t n, char *out, size_t outcap)
{
    char in[INET6_ADDRSTRLEN];
    unsigned char a[16];
    if (n < 3 || n - 2 >= sizeof in)
        return CFG_HOST_BAD_IPV6;
    for (size_t i = 1; i < n - 1; i++)
        if (!is_hex((unsigned char)v[i]) && v[i] != ':' && v[i] != '.')
            return CFG_HOST_BAD_IPV6;   /* a zone id ('%'), IPvFuture ('v1.x') */
    memcpy(in, v + 1, n - 2);
    in[n - 2] = '\0';
    if (inet_pton(AF_INET6, in, a) != 1)
        return CFG_HOST_BAD_IPV6;
    char txt[INET6_ADDRSTRLEN];
    if (!inet_ntop(AF_INET6, a, txt, sizeof txt))
        return CFG_HOST_BAD_IPV6;
    size_t t = strlen(txt);
    if (t + 3 > outcap)
        return CFG_HOST_NO_ROOM;
    out[0] = '[';
    memcpy(out + 1, txt, t);
    out[t + 1] = ']';
    out[t + 2] = '\0';
    return (long)t + 2;
}

/* ":" port of n bytes (the colon included): its value, or 0 if refused. */
static unsigned parse_port(const char *p, size_t n)
{
    unsigned v = 0;
    if (n < 2)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (!is_digit((unsigned char)p[i]))
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
        if (v > 65535)
            return 0;
    }
    return v;
}

long cfg_host_canon(const char *v, size_t len, char *out, size_t outcap, unsigned *port)
{
    size_t n;   /* bytes of the host part */
    if (len && v[0] == '[') {
        const char *e = memchr(v, ']', len);
        if (!e)
            return CFG_HOST_BAD_IPV6;
        n = (size_t)(e - v) + 1;
        if (n < len && v[n] != ':')
            return CFG_HOST_BAD_PORT;
    } else {
        const char *c = memchr(v, ':', len);
        n = c ? (size_t)(c - v) : len;
    }
    if (n == 0)
        return CFG_HOST_EMPTY;
    unsigned p = 0;
    if (n < len && !(p = parse_port(v + n, len - n)))
        return CFG_HOST_BAD_PORT;
    long rc = v[0] == '[' ? canon_ipv6(v, n, out, outcap) : canon_name(v, n, out, outcap);
    if (rc >= 0 && port)
        *port = p;
    return rc;
}

const char *cfg_host_strerror(long rc)
{
    switch (rc) {
    case CFG_HOST_EMPTY:
        return "the Host header is empty";
    case CFG_HOST_BAD_CHAR:
        return "the Host header's name may contain only letters, digits, '-' and '.'";
    case CFG_HOST_BAD_LABEL:
        return "the Host header's name has an empty label, a label longer than 63 "
               "characters, or a label starting or ending with '-'";
    case CFG_HOST_TOO_LONG:
        return "the Host header's name is longer than 253 characters";
    case CFG_HOST_BAD_IPV4:
        return "the Host header's name ends in a number but is not an IPv4 address in "
               "dotted-quad decimal without leading zeros";
    case CFG_HOST_BAD_IPV6:
        return "the Host header's bracketed address is not an IPv6 address";
    case CFG_HOST_BAD_PORT:
        return "the Host header's port is not a decimal number from 1 to 65535";
    case CFG_HOST_NO_ROOM:
        return "the host is too long";
    default:
        return "the Host header is malformed";
    }
}
