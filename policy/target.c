/* policy/target: request-target canonicalisation (see target.h). */
#include "target.h"

#include <string.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

static int is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_unreserved(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 pchar, less ';' and the escapes: what may stand raw in a segment. */
static int is_raw_ok(unsigned char c)
{
    return is_unreserved(c) || (c && strchr("!$&'()*+,=:@", c));
}

/* Where the canonical path is written, and what the current segment and
 * the pending UTF-8 sequence look like. */
typedef struct {
    char *out;          /* NULL: only check */
    size_t w;           /* bytes of canonical path so far */
    size_t seg_n;       /* characters of the current segment (an escape counts 1) */
    int seg_all_dots;   /* every character of the segment is '.' */
    int seg_end_bad;    /* the segment's last character is '.' or an encoded space */
    int utf8_need;      /* continuation bytes still expected */
    unsigned char utf8_lo, utf8_hi;  /* the range of the next continuation byte */
    unsigned long cp;   /* the code point of the pending UTF-8 sequence, so far */
} canon_t;

/* Look-alikes of the path delimiters, as inclusive ranges, sorted.
 *
 * A backend that NFKC-normalises a decoded path, or passes it to a Windows
 * "ANSI" API (best-fit mapping), reads these as '.', '/', '\', ';', '%' or a
 * control: the characters whose escapes are refused (or, for '.', that make
 * dot segments and segment ends), so each would spell a path other than the
 * one routed on (%EF%BC%8F as '/', %E2%80%A5 as "..").
 *
 * - every code point whose NFKC form contains one of them (Unicode 14:
 *   U+037E, U+2024-2026, U+2100-2101, U+2105-2106, U+2488-249B, U+33C2,
 *   U+33C7, U+33D8, U+FE14, U+FE19, U+FE30, U+FE52, U+FE54, U+FE68, U+FE6A,
 *   U+FF05, U+FF0E, U+FF0F, U+FF1B, U+FF3C, U+1F100);
 * - the C1 controls U+0080-009F (NFKC leaves them, but they are controls);
 * - best-fit or look-alike separators with no NFKC mapping: U+00A5 YEN SIGN
 *   and U+20A9 WON SIGN (best-fit to byte 0x5C, the backslash, in code
 *   pages 932 and 949), U+2044 FRACTION SLASH and U+2215 DIVISION SLASH
 *   (best-fit '/'), U+2216 SET MINUS (best-fit '\'), U+29F5 REVERSE SOLIDUS
 *   OPERATOR, U+29F8 BIG SOLIDUS, U+29F9 BIG REVERSE SOLIDUS.
 *
 * Not listed: U+3002 IDEOGRAPHIC FULL STOP and U+FF61 (neither NFKC nor
 * best-fit makes them '.'; only IDNA does, for host names, and CJK text
 * uses them). Look-alikes of letters (U+FF49 for 'i') are left to
 * http.path_non_ascii: refuse. */
static const struct {
    unsigned long lo, hi;
} lookalikes[] = {
    {0x0080, 0x009F}, {0x00A5, 0x00A5}, {0x037E, 0x037E}, {0x2024, 0x2026},
    {0x2044, 0x2044}, {0x20A9, 0x20A9}, {0x2100, 0x2101}, {0x2105, 0x2106},
    {0x2215, 0x2216}, {0x2488, 0x249B}, {0x29F5, 0x29F5}, {0x29F8, 0x29F9},
    {0x33C2, 0x33C2}, {0x33C7, 0x33C7}, {0x33D8, 0x33D8}, {0xFE14, 0xFE14},
    {0xFE19, 0xFE19}, {0xFE30, 0xFE30}, {0xFE52, 0xFE52}, {0xFE54, 0xFE54},
    {0xFE68, 0xFE68}, {0xFE6A, 0xFE6A}, {0xFF05, 0xFF05}, {0xFF0E, 0xFF0F},
    {0xFF1B, 0xFF1B}, {0xFF3C, 0xFF3C}, {0x1F100, 0x1F100},
};

int pol_target_lookalike(unsigned long cp)
{
    size_t lo = 0, hi = sizeof(lookalikes) / sizeof(lookalikes[0]);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < lookalikes[mid].lo)
            hi = mid;
        else if (cp > lookalikes[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static void emit(canon_t *s, char ch)
{
    if (s->out)
        s->out[s->w] = ch;
    s->w++;
}

static void emit_escape(canon_t *s, unsigned char v)
{
    static const char hex[] = "0123456789ABCDEF";
    emit(s, '%');
    emit(s, hex[v >> 4]);
    emit(s, hex[v & 15]);
}

/* One decoded character of a segment: ch, and whether it was escaped. */
static void seg_char(canon_t *s, unsigned char ch, int escaped)
{
    s->seg_n++;
    s->seg_all_dots = s->seg_all_dots && ch == '.';
    s->seg_end_bad = ch == '.' || (escaped && ch == ' ');
}

/* The current segment has ended (at a '/' or the end of the path). */
static long seg_end(canon_t *s)
{
    if (s->utf8_need)
        return POL_TGT_BAD_UTF8;
    if (s->seg_n && s->seg_all_dots && s->seg_n <= 2)
        return POL_TGT_DOT_SEGMENT;
    if (s->seg_n && s->seg_end_bad)
        return POL_TGT_SEGMENT_END;
    s->seg_n = 0;
    s->seg_all_dots = 1;
    s->seg_end_bad = 0;
    return 0;
}

/* An escaped byte >= 0x80: the next byte of a well-formed UTF-8 sequence
 * (no overlong forms, no surrogates, nothing above U+10FFFF)? 0, or
 * POL_TGT_BAD_UTF8, or POL_TGT_LOOKALIKE when it completes a look-alike. */
static long utf8_byte(canon_t *s, unsigned char v)
{
    if (s->utf8_need) {
        if (v < s->utf8_lo || v > s->utf8_hi)
            return POL_TGT_BAD_UTF8;
        s->utf8_need--;
        s->utf8_lo = 0x80;
        s->utf8_hi = 0xBF;
        s->cp = s->cp << 6 | (v & 0x3Fu);
        return !s->utf8_need && pol_target_lookalike(s->cp) ? POL_TGT_LOOKALIKE : 0;
    }
    s->utf8_lo = 0x80;
    s->utf8_hi = 0xBF;
    if (v >= 0xC2 && v <= 0xDF)
        s->utf8_need = 1, s->cp = v & 0x1Fu;
    else if (v >= 0xE0 && v <= 0xEF)
        s->utf8_need = 2, s->cp = v & 0x0Fu;
    else if (v >= 0xF0 && v <= 0xF4)
        s->utf8_need = 3, s->cp = v & 0x07u;
    else
        return POL_TGT_BAD_UTF8;
    if (v == 0xE0)
        s->utf8_lo = 0xA0;
    else if (v == 0xED)
        s->utf8_hi = 0x9F;
    else if (v == 0xF0)
        s->utf8_lo = 0x90;
    else if (v == 0xF4)
        s->utf8_hi = 0x8F;
    return 0;
}

/* The escape at p[0..2] ('%' and, as checked by the caller, two bytes). */
static long escape(canon_t *s, const char *p, unsigned flags)
{
    int hi = hexval((unsigned char)p[1]), lo = hexval((unsigned char)p[2]);
    if (hi < 0 || lo < 0)
        return POL_TGT_BAD_ESCAPE;
    unsigned char v = (unsigned char)(hi * 16 + lo);
    if (v < 0x20 || v == 0x7f || v == '/' || v == '\\' || v == ';' || v == '%')
        return POL_TGT_ENCODED_DELIM;
    if (v >= 0x80) {
        long rc = (flags & POL_TGT_ASCII_ONLY) ? POL_TGT_NON_ASCII : utf8_byte(s, v);
        if (rc < 0)
            return rc;
    } else if (s->utf8_need) {
        return POL_TGT_BAD_UTF8;
    }
    if (is_unreserved(v))
        emit(s, (char)v);
    else
        emit_escape(s, v);
    seg_char(s, v, 1);
    return 0;
}

/* A raw path byte other than '/' and '%'. */
static long raw(canon_t *s, unsigned char ch)
{
    if (ch == ';')
        return POL_TGT_PARAM;
    if (ch == '\\')
        return POL_TGT_BACKSLASH;
    if (!is_raw_ok(ch))
        return POL_TGT_BAD_CHAR;
    if (s->utf8_need)
        return POL_TGT_BAD_UTF8;
    emit(s, (char)ch);
    seg_char(s, ch, 0);
    return 0;
}

/* The path t[0..plen), t[0] == '/'. 0, or an error. */
static long canon_path(canon_t *s, const char *t, size_t plen, unsigned flags)
{
    emit(s, '/');
    for (size_t i = 1; i < plen;) {
        unsigned char ch = (unsigned char)t[i];
        long rc = 0;
        if (ch == '/') {
            if (s->seg_n == 0) {   /* the segment before is empty */
                if (!(flags & POL_TGT_MERGE_SLASHES))
                    return POL_TGT_EMPTY_SEGMENT;
                i++;
                continue;
            }
            if ((rc = seg_end(s)) < 0)
                return rc;
            emit(s, '/');
            i++;
            continue;
        }
        if (ch == '%') {
            if (plen - i < 3)
                return POL_TGT_BAD_ESCAPE;
            /* read before writing: in place, out may overwrite t[i] */
            char e[3] = {t[i], t[i + 1], t[i + 2]};
            rc = escape(s, e, flags);
            i += 3;
        } else {
            rc = raw(s, ch);
            i++;
        }
        if (rc < 0)
            return rc;
    }
    return seg_end(s);
}

long pol_target_canon(const char *t, size_t len, unsigned flags, char *out, size_t outcap,
                      size_t *path_len)
{
    if (len == 0 || t[0] != '/')
        return POL_TGT_NOT_ORIGIN;
    if (out && outcap < len)
        return POL_TGT_NO_ROOM;
    size_t plen = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return POL_TGT_BAD_BYTE;
        if (ch == '#')
            return POL_TGT_FRAGMENT;
        if (ch == '?' && plen == len)
            plen = i;
    }
    canon_t s = {.out = out, .seg_all_dots = 1};
    long rc = canon_path(&s, t, plen, flags);
    if (rc < 0)
        return rc;
    if (path_len)
        *path_len = s.w;
    if (out && plen < len)
        memmove(out + s.w, t + plen, len - plen);   /* the query, as received */
    return (long)(s.w + (len - plen));
}

const char *pol_target_strerror(long rc)
{
    switch (rc) {
    case POL_TGT_NOT_ORIGIN:
        return "the request target must be a path starting with '/'";
    case POL_TGT_BAD_BYTE:
        return "the request target contains a control character, space or non-ASCII byte";
    case POL_TGT_FRAGMENT:
        return "the request target contains a fragment ('#')";
    case POL_TGT_BAD_ESCAPE:
        return "the request path contains a '%' that is not followed by two hex digits";
    case POL_TGT_ENCODED_DELIM:
        return "the request path contains an encoded '/', '\\', ';', '%' or control character";
    case POL_TGT_PARAM:
        return "the request path contains ';' (path parameters are not accepted)";
    case POL_TGT_BACKSLASH:
        return "the request path contains '\\'";
    case POL_TGT_BAD_CHAR:
        return "the request path contains a character that must be percent-encoded";
    case POL_TGT_DOT_SEGMENT:
        return "the request path contains a '.' or '..' segment";
    case POL_TGT_SEGMENT_END:
        return "a segment of the request path ends in '.' or an encoded space";
    case POL_TGT_EMPTY_SEGMENT:
        return "the request path contains an empty segment ('//')";
    case POL_TGT_BAD_UTF8:
        return "the request path's percent-encoded bytes are not valid UTF-8";
    case POL_TGT_LOOKALIKE:
        return "the request path contains an encoded character that reads as '.', '/', '\\', ';', '%' "
               "or a control character after Unicode normalisation (e.g. U+FF0F FULLWIDTH SOLIDUS)";
    case POL_TGT_NON_ASCII:
        return "the request path contains percent-encoded non-ASCII bytes (not accepted here)";
    default:
        return "the request target is not acceptable";
    }
}
