/* jwt: bearer tokens as signed JWTs (RFC 7519 / 7515), keys from a JWKS file
 * (RFC 7517), and RFC 8705 certificate binding.
 *
 * Supported algorithms: ES256 (EC P-256), RS256 (RSA >= 2048 bits, PKCS#1
 * v1.5 with SHA-256) and EdDSA (Ed25519). "none", HS* and every other
 * algorithm are refused, and the header's "alg" must match the type of the
 * key that verifies it, so a public key can never be used as an HMAC secret.
 *
 * Threads: a pol_jwks_t is immutable and reference counted; a
 * pol_jwks_store_t may be used from any thread (get is a mutex-protected
 * reference increment; refresh may run concurrently with get).
 */
#ifndef PORTCULLIS_POLICY_JWT_H
#define PORTCULLIS_POLICY_JWT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../config/config.h"

#define POL_JWT_MAX_TOKEN 8192   /* longer tokens are refused */
#define POL_JWT_MAX_VALUE 256    /* injected claim values: at most this many bytes */

typedef struct pol_jwks pol_jwks_t;
typedef struct pol_jwks_store pol_jwks_store_t;

/* Loads a JWKS file. Keys of other types or curves are skipped, and so are
 * keys not meant for verifying our signatures: "use" present and not "sig",
 * "key_ops" present without "verify", "alg" present and not the algorithm
 * of the key's type (ES256 for EC P-256, RS256 for RSA, EdDSA for Ed25519).
 * A malformed EC/RSA/OKP key (including a "use", "key_ops" or "alg" of the
 * wrong JSON type, a repeated key_ops value, or an "alg" of ours on another
 * key type), an RSA modulus under 2048 bits, or a file without one usable
 * key is an error.
 * Boolean-like: returns the key set (one reference) or NULL with a one-line
 * reason in err. */
pol_jwks_t *pol_jwks_load(const char *file, char *err, size_t errlen);
size_t pol_jwks_count(const pol_jwks_t *keys);   /* usable keys */
/* CFG_JWT_* bits of the algorithms the set has at least one key for. */
uint32_t pol_jwks_algorithms(const pol_jwks_t *keys);
void pol_jwks_ref(pol_jwks_t *keys);
void pol_jwks_release(pol_jwks_t *keys);          /* NULL is a no-op */

/* A JWKS file reloaded when it changes (mtime, size or inode). Returns NULL
 * with a reason in err if the file does not load now. */
pol_jwks_store_t *pol_jwks_store_new(const char *file, char *err, size_t errlen);
void pol_jwks_store_free(pol_jwks_store_t *s);
/* The current key set: a new reference (release it with pol_jwks_release). */
pol_jwks_t *pol_jwks_store_get(pol_jwks_store_t *s);
/* Re-reads the file if it changed. Tri-state: 1 reloaded, 0 unchanged,
 * -1 the changed file does not load (reason in err; the old keys stay in
 * use, and the same bad version is not reported again). */
int pol_jwks_store_refresh(pol_jwks_store_t *s, char *err, size_t errlen);

typedef struct {
    const char *header;                  /* points into the cfg_jwt_t */
    char value[POL_JWT_MAX_VALUE + 1];   /* printable ASCII, NUL-terminated */
} pol_jwt_claim_t;

typedef struct {
    const char *error;         /* "invalid_token" on failure, NULL on success */
    const char *description;   /* short static text, safe inside a quoted header value */
    int reason;                /* on failure: why, an enum pc_auth_reason (base/metrics.h) */
    pol_jwt_claim_t claims[CFG_JWT_MAX_CLAIMS];  /* on success: headers to inject */
    size_t nclaims;
} pol_jwt_result_t;

/* Verifies token (the bearer credential without "Bearer ") against keys and
 * cfg at time now. x5t_s256 is base64url(SHA-256(client cert DER)) without
 * padding (only read with cfg->bind_to_certificate; NULL or "" then fails).
 * Syscall-like: 0 valid (res->claims filled), -1 invalid (res->error and
 * res->description set; answer 401 with
 * WWW-Authenticate: Bearer error="invalid_token", error_description="...").
 * A claim listed in claims_to_headers is injected when it is a string or a
 * number whose text is printable ASCII of at most POL_JWT_MAX_VALUE bytes;
 * otherwise it is skipped. */
int pol_jwt_verify(const cfg_jwt_t *cfg, pol_jwks_t *keys, const char *token, size_t len,
                   const char *x5t_s256, time_t now, pol_jwt_result_t *res);

/* base64url (RFC 4648 section 5, no padding) decoding into out (outcap >=
 * len * 3 / 4 + 3). Syscall-like: the decoded length, or -1 if s is not
 * unpadded base64url. */
long pol_b64url_decode(const char *s, size_t len, unsigned char *out, size_t outcap);

#endif
