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
} canon_t;

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
 * (no overlong forms, no surrogates, nothing above U+10FFFF)? */
static int utf8_byte(canon_t *s, unsigned char v)
{
    if (s->utf8_need) {
        if (v < s->utf8_lo || v > s->utf8_hi)
            return -1;
        s->utf8_need--;
        s->utf8_lo = 0x80;
        s->utf8_hi = 0xBF;
        return 0;
    }
    s->utf8_lo = 0x80;
    s->utf8_hi = 0xBF;
    if (v >= 0xC2 && v <= 0xDF)
        s->utf8_need = 1;
    else if (v >= 0xE0 && v <= 0xEF)
        s->utf8_need = 2;
    else if (v >= 0xF0 && v <= 0xF4)
        s->utf8_need = 3;
    else
        return -1;
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
static long escape(canon_t *s, const char *p)
{
    int hi = hexval((unsigned char)p[1]), lo = hexval((unsigned char)p[2]);
    if (hi < 0 || lo < 0)
        return POL_TGT_BAD_ESCAPE;
    unsigned char v = (unsigned char)(hi * 16 + lo);
    if (v < 0x20 || v == 0x7f || v == '/' || v == '\\' || v == ';' || v == '%')
        return POL_TGT_ENCODED_DELIM;
    if (v >= 0x80) {
        if (utf8_byte(s, v) < 0)
            return POL_TGT_BAD_UTF8;
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
            rc = escape(s, e);
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
    default:
        return "the request target is not acceptable";
    }
}
