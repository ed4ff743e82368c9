/* gateway/h1: HTTP/1.1 request framing checks (see h1.h). */
#include "h1.h"

#include <strings.h>

long gw_h1_lines(uint8_t *state, const char *p, size_t n)
{
    uint8_t s = *state;
    if (s == GW_H1L_IDLE || s == GW_H1L_DONE)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        switch (s) {
        case GW_H1L_LEAD:       /* empty lines before the request line are skipped */
            if (ch == '\n')
                return GW_H1_BAD_EOL;
            s = ch == '\r' ? GW_H1L_LEAD_CR : GW_H1L_LINE;
            break;
        case GW_H1L_LEAD_CR:
            if (ch != '\n')
                return GW_H1_BAD_EOL;
            s = GW_H1L_LEAD;
            break;
        case GW_H1L_LINE:
            if (ch == '\n')
                return GW_H1_BAD_EOL;
            if (ch == '\r')
                s = GW_H1L_CR;
            break;
        case GW_H1L_CR:
            if (ch != '\n')
                return GW_H1_BAD_EOL;
            s = GW_H1L_BOL;
            break;
        case GW_H1L_BOL:        /* a header line, or the empty line that ends the section */
            if (ch == '\n')
                return GW_H1_BAD_EOL;
            if (ch == ' ' || ch == '\t')
                return GW_H1_FOLD;
            s = ch == '\r' ? GW_H1L_END_CR : GW_H1L_LINE;
            break;
        case GW_H1L_END_CR:
            if (ch != '\n')
                return GW_H1_BAD_EOL;
            *state = GW_H1L_DONE;
            return (long)(i + 1);
        default:
            return 0;
        }
    }
    *state = s;
    return (long)n;
}

int gw_h1_only_chunked(const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n == 7 && strncasecmp(v, "chunked", 7) == 0;
}

int gw_h1_has_obs_text(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] >= 0x80)
            return 1;
    return 0;
}
