/* gateway/h1: checks of HTTP/1.1 request framing that llhttp (8.x, strict)
 * leaves to the caller. Pure functions over bytes: no allocation, no state
 * outside what the caller passes in. */
#ifndef PORTCULLIS_H1_H
#define PORTCULLIS_H1_H

#include <stddef.h>
#include <stdint.h>

/* Where a line scan is. A scan starts in GW_H1L_LEAD (before a request
 * line: empty lines may come first) or GW_H1L_BOL (at the start of a
 * trailer section) and ends in GW_H1L_DONE after the empty line that ends
 * the section. GW_H1L_IDLE: no scan running. */
enum gw_h1_lines_state {
    GW_H1L_IDLE = 0,
    GW_H1L_LEAD, GW_H1L_LEAD_CR, GW_H1L_LINE, GW_H1L_CR, GW_H1L_BOL, GW_H1L_END_CR,
    GW_H1L_DONE,
};

#define GW_H1_BAD_EOL (-1)   /* LF not preceded by CR, or CR not followed by LF */
#define GW_H1_FOLD (-2)      /* a header line starts with SP or HT (obs-fold) */

/* Scans the line structure of a request head or trailer section, in pieces.
 * *state carries the scan from one piece to the next.
 * Returns the number of bytes of p that belong to the section: up to and
 * including the LF of its final empty line (*state is then GW_H1L_DONE), or
 * n when the section goes on past p[n-1]; 0 when *state is GW_H1L_IDLE or
 * GW_H1L_DONE. Returns GW_H1_BAD_EOL or GW_H1_FOLD (negative) at the first
 * line that breaks the rule; *state is then unchanged from the call. */
long gw_h1_lines(uint8_t *state, const char *p, size_t n);

/* Is a Transfer-Encoding field value exactly the one coding "chunked"
 * (ASCII case-insensitive, optional whitespace around it)? 1 or 0. */
int gw_h1_only_chunked(const char *v, size_t n);

/* Does a header value piece hold a byte >= 0x80 (obs-text)? 1 or 0. */
int gw_h1_has_obs_text(const char *v, size_t n);

#endif
