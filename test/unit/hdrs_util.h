/* Shared by the unit tests of upstream/http.c (test_http.c, test_hdrnames.c):
 * building a head field by field, reading a built head back as text, and
 * an identity config with the default header names. */
#ifndef PORTCULLIS_TEST_HDRS_UTIL_H
#define PORTCULLIS_TEST_HDRS_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "../../upstream/http.h"

/* The identity header names of docs/configuration.md, in cfg_h_t order. */
static const char *const default_names[CFG_H__COUNT] = {
    "X-Client-Cert-Serial", "X-Client-Cert-Fingerprint", "X-Client-Cert-Subject",
    "X-Client-Cert-Issuer", "X-Client-Cert-SAN-URI", "X-Client-Cert-SAN-DNS",
    "X-Client-Cert-Not-After", "X-Client-Cert-Class", "X-Device-Id", "X-Device-Integrity",
};

/* One header field, name then value, as the parser hands them over. */
static inline void add(ups_hdrs_t *h, const char *n, const char *v)
{
    ups_hdrs_field(h, n, strlen(n));
    ups_hdrs_value(h, v, strlen(v));
}

/* Drains b into a NUL-terminated string the caller frees. */
static inline char *head_text(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* An identity config whose header names are default_names. */
static inline void default_icfg(cfg_identity_t *icfg)
{
    memset(icfg, 0, sizeof(*icfg));
    for (int i = 0; i < CFG_H__COUNT; i++)
        icfg->headers[i] = (char *)default_names[i];
}

#endif
