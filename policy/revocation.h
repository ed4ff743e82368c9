/* policy/revocation: the revocation set, mirrored from Redis.
 *
 * Canonical entries (the members of the Redis set, and what the admin API,
 * the CLI and pub/sub messages carry):
 *   "<class>:<serial>"   a trust class name and the certificate serial in
 *                        lowercase hex without leading zeros, e.g. "device:1a2b"
 *   "<fingerprint>"      the SHA-256 of the certificate DER, 64 lowercase hex
 * pol_rev_canon_* turn operator input (any case, colons in fingerprints,
 * leading zeros, "0x") into that form, or refuse it.
 *
 * Pub/sub messages on the channel: "+<entry>" (revoked) or "-<entry>"
 * (lifted). Writers do SADD/SREM and PUBLISH in one MULTI.
 *
 * The mirror keeps 128-bit digests of the entries in an open-addressing
 * table; lookups take a read lock and never touch the network. A revocation
 * key (pol_rev_key_t) is computed once per identity, when the certificate is
 * verified, so the per-request check is two probes.
 */
#ifndef PORTCULLIS_REVOCATION_H
#define PORTCULLIS_REVOCATION_H

#include <stddef.h>
#include <stdint.h>

#define POL_REV_ENTRY_MAX 160

typedef struct {
    uint64_t h[2];
} pol_rev_key_t;

/* Canonical "<class>:<serial>"; 0, or -1 with a reason in err. */
int pol_rev_canon_serial(const char *cls, const char *serial, char *out, size_t outlen,
                         const char **err);
/* Canonical fingerprint; 0, or -1 with a reason in err. */
int pol_rev_canon_fingerprint(const char *fp, char *out, size_t outlen, const char **err);
/* Parses an entry as stored/published and canonicalises it; 0 or -1. */
int pol_rev_canon_entry(const char *entry, size_t len, char *out, size_t outlen, const char **err);

/* Digest of a canonical entry. */
pol_rev_key_t pol_rev_key(const char *entry, size_t len);

#endif
