/* policy/revocation: canonical revocation entries and their digests. */
#include "revocation.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static int prefix_ci(const char *s, size_t n, const char *p)
{
    size_t k = strlen(p);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if (lower(s[i]) != p[i])
            return 0;
    return 1;
}

/* Drops whitespace at both ends of s[0..*n-1]. */
static const char *trim(const char *s, size_t *n)
{
    while (*n && is_space(*s)) {
        s++;
        (*n)--;
    }
    while (*n && is_space(s[*n - 1]))
        (*n)--;
    return s;
}

static int fail(char *out, size_t outlen, const char **err, const char *why)
{
    if (outlen)
        out[0] = '\0';
    *err = why;
    return -1;
}

/* Copies a piece of the canonical text; 0, or -1 when out is too small. */
static int put(char *out, size_t outlen, size_t *k, const char *s, size_t n)
{
    if (*k + n >= outlen)
        return -1;
    memcpy(out + *k, s, n);
    *k += n;
    out[*k] = '\0';
    return 0;
}

static int class_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int device_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == ':' || c == '@';
}

int pol_device_id_valid_n(const char *s, size_t n)
{
    if (!s || n == 0 || n > POL_REV_DEVICE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!device_char(s[i]))
            return 0;
    return 1;
}

/* The hex digits of s[0..n-1] with ':' and whitespace dropped: how many
 * (*digits), how many before the first non-zero one (*zeros); 0, or -1 when
 * another character is found. */
static int hex_digits(const char *s, size_t n, size_t *digits, size_t *zeros)
{
    int seen_nonzero = 0;
    *digits = *zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':' || is_space(s[i]))
            continue;
        if (!is_hex(s[i]))
            return -1;
        (*digits)++;
        if (!seen_nonzero && s[i] == '0')
            (*zeros)++;
        else
            seen_nonzero = 1;
    }
    return 0;
}

/* Appends the hex digits of s (separators dropped, lowercase), skipping the
 * first `skip` of them. The caller checked s with hex_digits. */
static int put_hex(char *out, size_t outlen, size_t *k, const char *s, size_t n, size_t skip)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':' || is_space(s[i]))
            continue;
        if (skip) {
            skip--;
            continue;
        }
        char c = lower(s[i]);
        if (put(out, outlen, k, &c, 1) < 0)
            return -1;
    }
    return 0;
}

static int canon_class_serial(const char *cls, size_t cn, const char *ser, size_t sn, char *out,
                              size_t outlen, const char **err)
{
    size_t k = 0, digits, zeros;
    cls = trim(cls, &cn);
    ser = trim(ser, &sn);
    if (cn == 0 || cn > 63)
        return fail(out, outlen, err,
                    "class must be a trust class name ([a-z0-9_-], 1-63 characters)");
    for (size_t i = 0; i < cn; i++)
        if (!class_char(cls[i]))
            return fail(out, outlen, err,
                        "class must be a trust class name ([a-z0-9_-], 1-63 characters)");
    if (sn >= 2 && ser[0] == '0' && (ser[1] == 'x' || ser[1] == 'X')) {
        ser += 2;
        sn -= 2;
    }
    if (hex_digits(ser, sn, &digits, &zeros) < 0)
        return fail(out, outlen, err, "serial must be hexadecimal");
    if (digits == 0)
        return fail(out, outlen, err, "serial is empty");
    if (zeros == digits)
        zeros = digits - 1;   /* the serial 0 */
    if (digits - zeros > 2 * POL_REV_SERIAL_MAX_OCTETS)
        return fail(out, outlen, err, "serial is longer than 20 octets");
    if (put(out, outlen, &k, cls, cn) < 0 || put(out, outlen, &k, ":", 1) < 0 ||
        put_hex(out, outlen, &k, ser, sn, zeros) < 0)
        return fail(out, outlen, err, "output buffer too small");
    return (int)k;
}

/* 1 if every ':' in s[0..n-1] stands between two octets (two hex digits
 * since the previous one) and there is one between every two octets, or
 * there is none at all: "9F:86:...", not "cafe:00...". */
static int octet_colons(const char *s, size_t n)
{
    size_t colons = 0, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':') {
            if (run != 2)
                return 0;
            colons++;
            run = 0;
        } else if (!is_space(s[i])) {
            run++;
        }
    }
    return colons == 0 || (colons == 31 && run == 2);
}

/* -1 when s is not a fingerprint spelling, without touching *err; -2 when
 * it is one but out is too small. strict: ':' only as octet separators. */
static int canon_fp(const char *s, size_t n, char *out, size_t outlen, int strict)
{
    size_t k = 0, digits, zeros;
    s = trim(s, &n);
    if (prefix_ci(s, n, "sha256:") || prefix_ci(s, n, "sha256=")) {
        s += 7;
        n -= 7;
    }
    if (hex_digits(s, n, &digits, &zeros) < 0 || digits != 64 || (strict && !octet_colons(s, n)))
        return -1;
    if (put_hex(out, outlen, &k, s, n, 0) < 0)
        return -2;
    return (int)k;
}

static int canon_device(const char *id, size_t n, char *out, size_t outlen, const char **err)
{
    size_t k = 0;
    id = trim(id, &n);
    if (!pol_device_id_valid_n(id, n))
        return fail(out, outlen, err, "device id must be 1..128 characters of "
                    "A-Z a-z 0-9 . _ : @ -");
    if (put(out, outlen, &k, POL_REV_DEVICE_PREFIX, strlen(POL_REV_DEVICE_PREFIX)) < 0 ||
        put(out, outlen, &k, id, n) < 0)
        return fail(out, outlen, err, "output buffer too small");
    return (int)k;
}

int pol_rev_canon(const char *in, size_t len, char *out, size_t outlen, int *form,
                  const char **err)
{
    static const char prefix[] = POL_REV_DEVICE_PREFIX;
    if (!in || memchr(in, '\0', len))
        return fail(out, outlen, err, "entry contains a NUL byte");
    in = trim(in, &len);
    if (len == 0)
        return fail(out, outlen, err, "entry is empty");
    if (prefix_ci(in, len, prefix)) {
        int r = canon_device(in + sizeof prefix - 1, len - (sizeof prefix - 1), out, outlen, err);
        if (r > 0 && form)
            *form = POL_REV_DEVICE;
        return r;
    }
    /* a fingerprint as tools print it; then <class>:<serial>; then a
     * fingerprint with colons elsewhere ("9F:86D0...") */
    int r = canon_fp(in, len, out, outlen, 1);
    const char *colon = memchr(in, ':', len);
    if (r == -1 && colon) {
        r = canon_class_serial(in, (size_t)(colon - in), colon + 1,
                               len - (size_t)(colon - in) - 1, out, outlen, err);
        if (r > 0) {
            if (form)
                *form = POL_REV_SERIAL;
            return r;
        }
        const char *serr = *err;
        r = canon_fp(in, len, out, outlen, 0);
        if (r == -1)
            return fail(out, outlen, err, serr);
    }
    if (r == -2)
        return fail(out, outlen, err, "output buffer too small");
    if (r < 0)
        return fail(out, outlen, err, "entry must be <class>:<serial>, a 64-hex-digit "
                    "fingerprint or device-id=<id>");
    if (form)
        *form = POL_REV_FINGERPRINT;
    return r;
}

int pol_rev_canon_serial(const char *cls, const char *serial, char *out, size_t outlen,
                         const char **err)
{
    if (!cls || !serial)
        return fail(out, outlen, err, "class and serial are required");
    return canon_class_serial(cls, strlen(cls), serial, strlen(serial), out, outlen, err) < 0
               ? -1 : 0;
}

int pol_rev_canon_fingerprint(const char *fp, char *out, size_t outlen, const char **err)
{
    int r = fp ? canon_fp(fp, strlen(fp), out, outlen, 0) : -1;
    if (r == -2)
        return fail(out, outlen, err, "output buffer too small");
    if (r < 0)
        return fail(out, outlen, err,
                    "fingerprint must be the SHA-256 of the certificate: 64 hex digits");
    return 0;
}

int pol_rev_canon_device(const char *device_id, char *out, size_t outlen, const char **err)
{
    if (!device_id)
        return fail(out, outlen, err, "device id is required");
    return canon_device(device_id, strlen(device_id), out, outlen, err) < 0 ? -1 : 0;
}

int pol_rev_canon_entry(const char *entry, size_t len, char *out, size_t outlen, const char **err)
{
    return pol_rev_canon(entry, len, out, outlen, NULL, err) < 0 ? -1 : 0;
}

int pol_rev_parse_message(const char *msg, size_t len, char *out, size_t outlen, int *form,
                          const char **err)
{
    if (!msg || len < 2 || (msg[0] != '+' && msg[0] != '-'))
        return fail(out, outlen, err, "message must be +<entry> or -<entry>");
    if (pol_rev_canon(msg + 1, len - 1, out, outlen, form, err) < 0)
        return -1;
    return msg[0] == '+';
}

int pol_rev_usable(const cfg_t *cfg, const char *canon, int form, char *why, size_t whylen)
{
    const char *names[32];
    size_t n = cfg->tls.nclasses < 32 ? cfg->tls.nclasses : 32;
    for (size_t i = 0; i < n; i++)
        names[i] = cfg->tls.classes[i].name;
    return pol_rev_usable_in(names, n, canon, form, why, whylen);
}

int pol_rev_usable_in(const char *const *classes, size_t nclasses, const char *canon, int form,
                      char *why, size_t whylen)
{
    if (whylen)
        why[0] = '\0';
    if (form != POL_REV_SERIAL)
        return 0;
    const char *colon = strchr(canon, ':');
    size_t n = colon ? (size_t)(colon - canon) : strlen(canon);
    char list[256];
    size_t off = 0;
    list[0] = '\0';
    for (size_t i = 0; i < nclasses; i++) {
        const char *name = classes[i];
        if (strlen(name) == n && memcmp(name, canon, n) == 0)
            return 0;
        int w = snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", name);
        if (w > 0 && (size_t)w < sizeof list - off)
            off += (size_t)w;
    }
    snprintf(why, whylen, "class \"%.*s\" is not configured (tls.classes: %s), so the entry "
             "can match no certificate", (int)(n > 63 ? 63 : n), canon, list);
    return -1;
}

pol_rev_key_t pol_rev_key(const char *entry, size_t len)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    pol_rev_key_t k = {{0, 0}};
    EVP_Digest(entry, len, md, &mdlen, EVP_sha256(), NULL);
    memcpy(&k.h[0], md, 8);
    memcpy(&k.h[1], md + 8, 8);
    if (k.h[0] == 0 && k.h[1] == 0)
        k.h[1] = 1;   /* all-zero marks an empty slot in the mirror */
    return k;
}

int pol_rev_device_key(const char *device_id, pol_rev_key_t *k)
{
    char e[POL_REV_ENTRY_MAX];
    const char *err = NULL;
    int n = device_id ? canon_device(device_id, strlen(device_id), e, sizeof e, &err) : -1;
    if (n < 0)
        return -1;
    *k = pol_rev_key(e, (size_t)n);
    return 0;
}
