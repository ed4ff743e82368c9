/* policy/revocation: the revocation set, mirrored from Redis.
 *
 * Canonical entries (the members of the Redis set, and what the admin API,
 * the CLI and pub/sub messages carry):
 *   "<class>:<serial>"     a trust class name and a certificate serial in
 *                          lowercase hex without leading zeros, e.g.
 *                          "device:1a2b"; it names the client certificate
 *                          (the leaf) of a verified chain of that class
 *                          with that serial, never a CA of the chain
 *                          (serials are unique per issuer only)
 *   "<fingerprint>"        the SHA-256 of a certificate's DER, 64 lowercase
 *                          hex digits; names that certificate wherever it
 *                          appears in a verified chain (the only form that
 *                          names a CA certificate)
 *   "device-id=<id>"       a device id (1..128 of A-Z a-z 0-9 . _ : @ -,
 *                          case kept): every certificate whose identity
 *                          carries that device id, whenever it was signed
 * pol_rev_canon is the one function that turns any accepted spelling into
 * that form; the admin API, the CLI, the mirror and the pub/sub parser all
 * use it (the _serial/_fingerprint/_device helpers run the same code on
 * parts given separately).
 *
 * Pub/sub messages on the channel: "+<entry>" (revoked) or "-<entry>"
 * (lifted), parsed by pol_rev_parse_message. Writers do SADD/SREM and
 * PUBLISH in one MULTI.
 *
 * The mirror keeps 128-bit digests of the entries in an open-addressing
 * table; lookups take a read lock and never touch the network. The keys of
 * an identity (pol_rev_key_t) are computed once, when its chain is
 * verified, so the per-request check is a few probes.
 */
#ifndef PORTCULLIS_REVOCATION_H
#define PORTCULLIS_REVOCATION_H

#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"

/* Every canonical entry fits in this many bytes, NUL included. */
#define POL_REV_ENTRY_MAX 160
#define POL_REV_SERIAL_MAX_OCTETS 20            /* RFC 5280 4.1.2.2 */
#define POL_REV_DEVICE_PREFIX "device-id="
#define POL_REV_DEVICE_ID_MAX 128

enum pol_rev_form { POL_REV_SERIAL = 1, POL_REV_FINGERPRINT = 2, POL_REV_DEVICE = 3 };

typedef struct {
    uint64_t h[2];
} pol_rev_key_t;

/* Boolean: s[0..n-1] is a device id: 1..POL_REV_DEVICE_ID_MAX characters of
 * A-Z a-z 0-9 . _ : @ - (a plain token: it goes into headers, logs, Redis
 * keys and entries). The one definition of the character set: the identity
 * (tls), issuance and revocation entries all use it. Reads s[0..n-1] only. */
int pol_device_id_valid_n(const char *s, size_t n);

/* The canonicalisation of one entry, as written to Redis or typed by an
 * operator. Accepted spellings, after whitespace at either end is dropped:
 *   device-id=<id>   prefix in any case, whitespace around the id dropped;
 *                    the id is kept as is (device ids are case-sensitive)
 *   [sha256:|sha256=]<64 hex>   any case, ':' and whitespace between digits
 *   <class>:[0x]<hex>   class as configured ([a-z0-9_-], 1..63); the serial
 *                    in any case, with ':' and whitespace between digits and
 *                    any number of leading zeros; at most 20 octets once the
 *                    leading zeros are gone
 * Order: a fingerprint with no ':' or one between every two octets (as
 * tools print them), then <class>:<serial>, then a fingerprint with ':'
 * anywhere. (Only a two-hex-digit class with a serial written in octets and
 * zero-padded to 32 of them could be misread as a fingerprint.)
 *
 * Contract: reads in[0..len-1] only (no NUL needed; a NUL byte is refused),
 * writes at most outlen bytes to out, allocates nothing, keeps no state.
 * Returns the length (>= 1) of the canonical entry written to out with a
 * NUL, and its form (enum pol_rev_form) in *form when form is not NULL; or
 * -1 with *err set to a static one-line reason (out is then "" if outlen >
 * 0). An out of POL_REV_ENTRY_MAX bytes holds every accepted entry. */
int pol_rev_canon(const char *in, size_t len, char *out, size_t outlen, int *form,
                  const char **err);

/* pol_rev_canon on parts given separately (C strings); same rules, same
 * contract (0 instead of the length). */
int pol_rev_canon_serial(const char *cls, const char *serial, char *out, size_t outlen,
                         const char **err);
int pol_rev_canon_fingerprint(const char *fp, char *out, size_t outlen, const char **err);
int pol_rev_canon_device(const char *device_id, char *out, size_t outlen, const char **err);
/* pol_rev_canon returning 0 or -1, for callers that do not need the form. */
int pol_rev_canon_entry(const char *entry, size_t len, char *out, size_t outlen, const char **err);

/* A pub/sub message: '+' (revoked) or '-' (lifted), then an entry in any
 * spelling pol_rev_canon accepts.
 * Contract: reads msg[0..len-1] only, writes at most outlen bytes to out,
 * allocates nothing. Returns 1 for '+', 0 for '-', with the canonical entry
 * in out and its form in *form (when not NULL); or -1 with *err set to a
 * static reason. */
int pol_rev_parse_message(const char *msg, size_t len, char *out, size_t outlen, int *form,
                          const char **err);

/* Whether a canonical entry can match a certificate on a gateway with this
 * configuration: a "<class>:<serial>" entry must name a class of
 * tls.classes. Returns 0, or -1 with a reason in why (always NUL-ended). */
int pol_rev_usable(const cfg_t *cfg, const char *canon, int form, char *why, size_t whylen);
/* The same against a list of class names. */
int pol_rev_usable_in(const char *const *classes, size_t nclasses, const char *canon, int form,
                      char *why, size_t whylen);

/* Digest of a canonical entry (never all-zero). */
pol_rev_key_t pol_rev_key(const char *entry, size_t len);
/* Digest of the entry "device-id=<device_id>"; 0, or -1 when device_id is
 * not a valid device id. */
int pol_rev_device_key(const char *device_id, pol_rev_key_t *k);

#endif
