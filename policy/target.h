/* policy/target: the one canonical spelling of a request target.
 *
 * A route is chosen by path, and the upstream decodes the path it receives.
 * If two spellings of a path decode alike on the upstream but differ as
 * bytes here, route policy can be bypassed (/%69nternal/, //internal/,
 * /x/..;/internal/). pol_target_canon() turns a target into its canonical
 * spelling or refuses it; the gateway matches routes on that spelling and
 * forwards exactly it, so what the policy saw is what the upstream gets.
 *
 * Depends on nothing but the C library: a fuzz target can call it alone.
 */
#ifndef PORTCULLIS_POLICY_TARGET_H
#define PORTCULLIS_POLICY_TARGET_H

#include <stddef.h>

/* Why a target is refused (pol_target_canon() returns one of these). */
enum pol_target_err {
    POL_TGT_NOT_ORIGIN = -1,     /* empty, or not starting with '/' (absolute-form, '*') */
    POL_TGT_BAD_BYTE = -2,       /* a control byte, space, DEL or byte >= 0x80 (path or query) */
    POL_TGT_FRAGMENT = -3,       /* a '#' */
    POL_TGT_BAD_ESCAPE = -4,     /* '%' not followed by two hex digits */
    POL_TGT_ENCODED_DELIM = -5,  /* %2F, %5C, %3B, %25, or an encoded control byte (%00-%1F, %7F) */
    POL_TGT_PARAM = -6,          /* ';' in the path (path parameters, "..;") */
    POL_TGT_BACKSLASH = -7,      /* '\' in the path */
    POL_TGT_BAD_CHAR = -8,       /* a character a path must percent-encode: " < > [ ] ^ ` { | } */
    POL_TGT_DOT_SEGMENT = -9,    /* a "." or ".." segment, in any spelling (%2E, .%2e, ...) */
    POL_TGT_SEGMENT_END = -10,   /* a segment ending in '.' or an encoded space ("internal.") */
    POL_TGT_EMPTY_SEGMENT = -11, /* "//" anywhere, a leading "//" included (unless merged) */
    POL_TGT_BAD_UTF8 = -12,      /* escaped bytes >= 0x80 that are not valid UTF-8 (%C0%AF) */
    POL_TGT_LOOKALIKE = -13,     /* an escaped character read as '.', '/', '\', ';', '%' or a control
                                  * after NFKC or best-fit mapping (%EF%BC%8F, pol_target_lookalike) */
    POL_TGT_NON_ASCII = -14,     /* an escaped byte >= 0x80, with POL_TGT_ASCII_ONLY */
    POL_TGT_NO_ROOM = -15,       /* out is shorter than the target (a caller error) */
};

/* Flags for pol_target_canon(). */
#define POL_TGT_MERGE_SLASHES 1u   /* merge runs of '/' into one instead of refusing them */
#define POL_TGT_ASCII_ONLY 2u      /* refuse every escaped byte >= 0x80 (http.path_non_ascii: refuse) */

/* Canonicalises the origin-form request target t (len bytes, as received).
 *
 * The canonical path: escapes of unreserved characters (ALPHA DIGIT - . _ ~)
 * decoded, every other escape kept with uppercase hex digits, and nothing
 * else changed (ASCII letter case is kept). Refused, whatever the spelling
 * after decoding: the cases of enum pol_target_err. The query (from the
 * first '?') is kept byte for byte; only its bytes are checked (no controls,
 * space, DEL, bytes >= 0x80 or '#').
 *
 * Returns the length of the canonical target (path, then the query as
 * received), >= 1, and stores the length of its path part in *path_len
 * (if path_len is not NULL); or a negative enum pol_target_err, with out
 * and *path_len unspecified. The canonical target is never longer than t.
 * out: NULL (only check), t itself (canonicalise in place), or a buffer of
 * outcap >= len bytes that does not overlap t. Nothing is NUL-terminated;
 * nothing is allocated; t is only read when out != t. */
long pol_target_canon(const char *t, size_t len, unsigned flags, char *out, size_t outcap,
                      size_t *path_len);

/* Whether the code point cp is a look-alike of a path delimiter: one an
 * upstream's NFKC (compatibility) normalisation or Windows best-fit mapping
 * turns into text with '.', '/', '\', ';', '%' or a control, or a C1
 * control itself (the exact list and why: target.c). A path with one,
 * escaped, is refused with POL_TGT_LOOKALIKE. Pure. */
int pol_target_lookalike(unsigned long cp);

/* A one-sentence, static description of a negative pol_target_canon()
 * result, for the client's error message. */
const char *pol_target_strerror(long rc);

#endif
