/* policy/revocation: canonical revocation entries and their digests. */
#include "revocation.h"

#include <openssl/evp.h>
#include <string.h>

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static int valid_class(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Serial: hex, optional "0x", optional ':' separators (as printed by
 * openssl), at most 20 octets. Canonical: lowercase, no leading zeros. */
static int canon_serial(const char *s, size_t n, char *out, size_t outlen, const char **err)
{
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        n -= 2;
    }
    char tmp[64];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':')
            continue;
        if (!is_hex(s[i]) || k >= 40) {
            *err = k >= 40 ? "serial is longer than 20 octets" : "serial must be hexadecimal";
            return -1;
        }
        tmp[k++] = lower(s[i]);
    }
    size_t z = 0;
    while (z + 1 < k && tmp[z] == '0')
        z++;
    if (k == 0) {
        *err = "serial is empty";
        return -1;
    }
    if (k - z + 1 > outlen) {
        *err = "serial too long";
        return -1;
    }
    memcpy(out, tmp + z, k - z);
    out[k - z] = '\0';
    return 0;
}

int pol_rev_canon_serial(const char *cls, const char *serial, char *out, size_t outlen,
                         const char **err)
{
    size_t cn = strlen(cls);
    if (!valid_class(cls, cn)) {
        *err = "class must be a trust class name ([a-z0-9_-], 1-63 characters)";
        return -1;
    }
    if (cn + 2 >= outlen) {
        *err = "entry too long";
        return -1;
    }
    memcpy(out, cls, cn);
    out[cn] = ':';
    return canon_serial(serial, strlen(serial), out + cn + 1, outlen - cn - 1, err);
}

int pol_rev_canon_fingerprint(const char *fp, char *out, size_t outlen, const char **err)
{
    size_t k = 0, n = strlen(fp);
    if (n > 7 && strncmp(fp, "sha256:", 7) == 0) {
        fp += 7;
        n -= 7;
    }
    if (outlen < 65) {
        *err = "buffer too small";
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (fp[i] == ':')
            continue;
        if (!is_hex(fp[i]) || k >= 64) {
            *err = "fingerprint must be the SHA-256 of the certificate: 64 hex digits";
            return -1;
        }
        out[k++] = lower(fp[i]);
    }
    if (k != 64) {
        *err = "fingerprint must be the SHA-256 of the certificate: 64 hex digits";
        return -1;
    }
    out[64] = '\0';
    return 0;
}

/* Boolean: s (n bytes, after an optional "sha256:") has no colon, or is 32
 * pairs of characters with a colon between each two pairs. */
static int fingerprint_form(const char *s, size_t n)
{
    if (n > 7 && strncmp(s, "sha256:", 7) == 0) {
        s += 7;
        n -= 7;
    }
    if (!memchr(s, ':', n))
        return 1;
    if (n != 64 + 31)
        return 0;
    for (size_t i = 2; i < n; i += 3)
        if (s[i] != ':')
            return 0;
    return 1;
}

int pol_rev_canon_entry(const char *entry, size_t len, char *out, size_t outlen, const char **err)
{
    char buf[POL_REV_ENTRY_MAX];
    if (len == 0 || len >= sizeof(buf)) {
        *err = "entry is empty or too long";
        return -1;
    }
    memcpy(buf, entry, len);
    buf[len] = '\0';
    char *colon = memchr(buf, ':', len);
    /* A fingerprint is written without colons or with one after every two
     * digits (as openssl prints it). Any other colon separates a class from
     * a serial: a hex-only class name and a serial can add up to 64 digits,
     * and "deadbeef...:1a" must stay that class and serial when read back. */
    if (fingerprint_form(buf, len) && pol_rev_canon_fingerprint(buf, out, outlen, err) == 0)
        return 0;
    if (!colon) {
        *err = "entry must be <class>:<serial> or a 64-hex-digit fingerprint";
        return -1;
    }
    *colon = '\0';
    return pol_rev_canon_serial(buf, colon + 1, out, outlen, err);
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
