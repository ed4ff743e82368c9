/* issuance/issuance: building blocks of device-certificate issuance
 * (docs/issuance.md).
 *
 * Nothing here touches a socket or blocks on the network: the issuance flow
 * (flow.c) does the Redis round trips and the attesters' calls on the
 * worker's event loop, with the argv vectors, request bodies and reply
 * parsers provided here. Files: issuance.c (requests, answers), records.c
 * (nonces, device ids, records), csr.c, issuer.c (the CA, signing),
 * attest_*.c (one per attestation provider).
 *
 *   challenge  iss_nonce_new, iss_nonce_set_argv            (SET ... PX ttl NX)
 *   issue      iss_issue_parse, iss_nonce_getdel_argv + iss_nonce_check,
 *              iss_csr_check, attestation (iss_play_verify, or
 *              iss_http_verifier_* around an HTTP exchange, or none),
 *              iss_device_id_new, iss_issue_cert,
 *              iss_record_json + pol_issued_set_argv,
 *              pol_device_sadd_argv, pol_device_expire_argv,
 *              iss_issue_response_json
 *   renew      iss_renew_parse, then the same with the caller's device id
 *   refusals   iss_error_json with an error catalog entry (PC_E_*)
 *
 * Return conventions are stated per function: "syscall-like" is 0 on success
 * and -1 on failure; "boolean" is 1 yes / 0 no. Error texts (const char
 * **err) are static strings that name the failed check and never contain any
 * part of the request's token, CSR or nonce.
 *
 * Threads: everything is reentrant; an iss_issuer_t and an iss_play_keys_t are
 * immutable after loading and may be shared by all workers.
 */
#ifndef PORTCULLIS_ISSUANCE_ISSUANCE_H
#define PORTCULLIS_ISSUANCE_ISSUANCE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "../base/errors.h"
#include "../config/config.h"
#include "../policy/issued.h"

/* ---------------------------------------------------------------- limits */

#define ISS_MAX_CSR 8192        /* PEM bytes */
#define ISS_MAX_TOKEN 16384     /* integrity token bytes */
#define ISS_MAX_NONCE 64
#define ISS_MAX_PLATFORM 32
#define ISS_SUMMARY_MAX 256     /* attestation summaries are cut to this */

/* ---------------------------------------------------------------- errors */

/* Refusals name an entry of the error catalog (base/errors.def), which
 * fixes code and status: PC_E_BAD_REQUEST (malformed JSON, field
 * types/sizes), PC_E_INVALID_CSR (parse, signature, key policy),
 * PC_E_NONCE_INVALID (unknown, expired, replayed, other class),
 * PC_E_ATTESTATION_FAILED, PC_E_PLATFORM_REFUSED, PC_E_CLASS_NOT_ALLOWED,
 * PC_E_PAYLOAD_TOO_LARGE, PC_E_METHOD_NOT_ALLOWED, PC_E_ISSUANCE_UNAVAILABLE
 * (Redis or the verifier is down), PC_E_DEVICE_REVOKED,
 * PC_E_CERTIFICATE_REVOKED, PC_E_INTERNAL (signing failed),
 * PC_E_OUT_OF_MEMORY. These two are the catalog's pc_err_code and
 * pc_err_status. */
const char *iss_error_code(enum pc_err e);
int iss_error_status(enum pc_err e);

/* {"error":code,"message":message,"request_id":request_id} with a trailing
 * newline, JSON-escaped. Syscall-like; *json is malloc'ed (free()). */
int iss_error_json(enum pc_err e, const char *message, const char *request_id, char **json);

/* ---------------------------------------------------------------- Redis */

#define ISS_NONCE_KEY_PREFIX "portcullis:nonce:"
#define POL_ISSUED_KEY_PREFIX "portcullis:issued:"
#define POL_DEVICE_KEY_PREFIX "portcullis:device:"

/* ---------------------------------------------------------------- nonce */

#define ISS_NONCE_BYTES 32   /* 256 bits */
#define ISS_NONCE_LEN 43     /* base64url of 32 bytes, no padding */

/* A fresh random nonce, base64url without padding, NUL-terminated.
 * Syscall-like (-1: the random generator failed). */
int iss_nonce_new(char out[64]);
/* Boolean: s has the shape of a nonce made by iss_nonce_new. */
int iss_nonce_valid(const char *s);
/* "portcullis:nonce:<nonce>" into out. Syscall-like (-1: not a valid nonce
 * or too long). */
int iss_nonce_key(const char *nonce, char *out, size_t outlen);
/* SET portcullis:nonce:<nonce> <class_name> PX <ttl_ms> NX. Syscall-like. */
int iss_nonce_set_argv(pol_argv_t *a, const char *nonce, const char *class_name,
                       uint64_t ttl_ms);
/* GETDEL portcullis:nonce:<nonce> (Redis >= 6.2). Syscall-like. */
int iss_nonce_getdel_argv(pol_argv_t *a, const char *nonce);
/* The GETDEL reply (value NULL for a nil reply) checked against the class
 * of the connection consuming it. Boolean: 1 accepted; 0 refused with *err
 * ("nonce unknown, expired or already used" / "nonce was issued to another
 * client class"). */
int iss_nonce_check(const char *value, size_t len, const char *class_name, const char **err);

/* Challenge answer: {"nonce":...,"expires_in":<seconds, rounded up>} with a
 * trailing newline. Syscall-like; *json malloc'ed. */
int iss_challenge_response_json(const char *nonce, uint64_t ttl_ms, char **json);

/* ---------------------------------------------------------------- request */

typedef struct {
    json_t *body;           /* the whole request object (a reference); attesters read
                             * their own members from it */
    char *csr;              /* PEM, NUL-terminated; never NULL after a successful parse */
    size_t csr_len;
    char platform[ISS_MAX_PLATFORM + 1];   /* "" when absent (renewal) */
    char *integrity_token;  /* NULL when absent (another provider's token, or a
                             * renewal without attestation) */
    size_t token_len;
    char nonce[ISS_MAX_NONCE + 1];         /* "" when absent (renewal) */
} iss_req_t;

/* The issue request body {"csr","platform","nonce"}, all three required
 * strings, plus the members of the platform's provider (its token_member,
 * e.g. "integrity_token", which the flow requires and the attester checks).
 * Strict: the body must be one JSON object without duplicate keys; each
 * field a string within its size limit (csr 8k, integrity_token 16k, nonce
 * 64, platform 32); platform [a-z0-9_]{1,32}; nonce base64url;
 * integrity_token (optional here) printable ASCII. Other members are kept
 * in out->body for the attester. Syscall-like: 0 with *out filled (free
 * with iss_req_free), or -1 with *err (PC_E_BAD_REQUEST) and *out empty. */
int iss_issue_parse(const char *body, size_t len, iss_req_t *out, const char **err);
/* The renew request body: csr required; platform and nonce required when
 * need_attestation, else optional (both or none; with neither, any
 * integrity_token is refused). Same contract as iss_issue_parse. */
int iss_renew_parse(const char *body, size_t len, int need_attestation, iss_req_t *out,
                    const char **err);
void iss_req_free(iss_req_t *r);

/* The platform's configuration when issuance may proceed for it, else NULL
 * with *err ("platform not configured", "platform refused by
 * configuration"): answer PC_E_PLATFORM_REFUSED. */
const cfg_platform_t *iss_platform(const cfg_issuance_t *cfg, const char *platform,
                                         const char **err);

/* ---------------------------------------------------------------- key binding */

#define ISS_CHALLENGE_BYTES 32

/* SHA-256 of the DER SubjectPublicKeyInfo of key (what
 * tls_identity_t.spki_sha256 holds for a client certificate's key).
 * Syscall-like. */
int iss_spki_sha256(EVP_PKEY *key, unsigned char spki_sha256[32]);

/* The key-binding challenge every attestation must cover
 * (docs/issuance.md "Binding the key"): spki_sha256 = SHA-256 of the DER
 * SubjectPublicKeyInfo of key, challenge = SHA-256(the nonce's ASCII bytes
 * ‖ spki_sha256). Syscall-like. */
int iss_bind_challenge(const char *nonce, EVP_PKEY *key, unsigned char challenge[32],
                       unsigned char spki_sha256[32]);

/* ---------------------------------------------------------------- CSR */

/* Checks one PEM certificate request: exactly one PEM block, a strong
 * signature hash (SHA-256/384/512) that verifies with the request's own key
 * (proof of possession), and the key policy (EC P-256 if key_ec_p256; RSA
 * with rsa_min_bits..16384 bits if key_rsa; every other key type refused).
 * The subject and any requested extensions are ignored. Syscall-like: 0 with
 * *pub set to a new reference to the request's public key (EVP_PKEY_free),
 * or -1 with *err (PC_E_INVALID_CSR). */
int iss_csr_check(const char *pem, size_t len, const cfg_issuance_t *cfg, EVP_PKEY **pub,
                  const char **err);

/* ---------------------------------------------------------------- device id */

#define ISS_DEVICE_ID_LEN 32   /* 20 random bytes, lowercase base32 (a-z2-7) */

/* A fresh device id, NUL-terminated. Syscall-like. */
int iss_device_id_new(char out[40]);

/* ---------------------------------------------------------------- signing */

typedef struct iss_issuer iss_issuer_t;

/* Loads the CA certificate, its key and the optional chain once. Returns
 * NULL with a one-line reason in err on failure. */
iss_issuer_t *iss_issuer_load(const cfg_issuance_t *cfg, char *err, size_t errlen);
void iss_issuer_free(iss_issuer_t *is);   /* NULL is a no-op */
/* The CA certificate (borrowed; lives as long as the issuer). */
X509 *iss_issuer_ca(const iss_issuer_t *is);

typedef struct {
    char *chain_pem;          /* leaf, then the CA, then issuance.chain; malloc'ed */
    char serial[41];          /* lowercase hex, no leading zeros (as tls_identity_t) */
    char fingerprint[65];     /* lowercase hex SHA-256 of the DER */
    char not_before[32];      /* RFC 3339 UTC */
    char not_after[32];       /* RFC 3339 UTC */
    time_t not_before_t, not_after_t, issued_at;
    int level;                /* the integrity level it records (enum cfg_integrity), -1: none */
    X509 *cert;               /* the leaf */
} iss_issued_t;

/* Signs a certificate for pub: version 3, random 127-bit positive serial,
 * issuer = the CA's subject, subject CN=<device_id> only, validity from
 * now-5min for lifetime_s (capped at the CA's notAfter), extensions
 * basicConstraints critical CA:FALSE, keyUsage critical digitalSignature,
 * extendedKeyUsage clientAuth, subjectAltName URI:<san_uri_prefix><device_id>
 * (omitted when the prefix is NULL or ""), subjectKeyIdentifier and
 * authorityKeyIdentifier, and, when policy_oid (dotted, the OID
 * identity.integrity_policies gives level) is not NULL, certificatePolicies
 * (non-critical) naming it: out->level is then level, else -1.
 * Syscall-like: 0 with *out filled (free with
 * iss_issued_free), or -1 with *err (PC_E_INTERNAL, except an invalid
 * device id or an expired CA). Thread-safe on a shared issuer. */
int iss_issue_cert(iss_issuer_t *is, EVP_PKEY *pub, const char *device_id,
                   const char *san_uri_prefix, uint64_t lifetime_s, time_t now, int level,
                   const char *policy_oid, iss_issued_t *out, const char **err);
void iss_issued_free(iss_issued_t *out);

/* ---------------------------------------------------------------- records */

/* The issuance record stored under portcullis:issued:<serial>:
 * {"serial","device_id","platform","attestation","integrity","fingerprint",
 *  "issued_at","not_after","not_after_unix"}, integrity the name of
 * is->level ("unattested" for -1). platform/attestation may be NULL (stored
 * as ""). Syscall-like; *json_out malloc'ed. */
int iss_record_json(const iss_issued_t *is, const char *device_id, const char *platform,
                          const char *attestation_summary, char **json_out);

/* Success body: {"certificate_chain":PEM,"not_after":RFC3339,"device_id":...,
 * "serial":...,"integrity":level name as in the record} with a trailing newline. Syscall-like; *json malloc'ed. */
int iss_issue_response_json(const iss_issued_t *is, const char *device_id, char **json);

/* ---------------------------------------------------------------- Play Integrity */

typedef struct iss_play_keys iss_play_keys_t;

/* Loads the decryption key (base64 AES-256) and verification key (base64
 * DER or PEM, EC P-256) named by cfg. NULL with a reason in err. */
iss_play_keys_t *iss_play_keys_load(const cfg_play_integrity_t *cfg, char *err, size_t errlen);
void iss_play_keys_free(iss_play_keys_t *k);   /* NULL is a no-op */

/* Verifies a Play Integrity token locally: JWE compact (alg A256KW, enc
 * A256GCM only) decrypted with the decryption key; the content a JWS compact
 * (ES256 only) verified with the verification key; then the payload:
 * requestDetails.nonce == expected_nonce, requestDetails.requestPackageName
 * and appIntegrity.packageName == cfg->package_name,
 * appIntegrity.appRecognitionVerdict == PLAY_RECOGNIZED, one of
 * appIntegrity.certificateSha256Digest in the allow-list, every required
 * deviceIntegrity.deviceRecognitionVerdict present, and
 * requestDetails.timestampMillis not older than max_age (nor more than 60s
 * ahead of now_ms). expected_nonce is what the app passed as the request's
 * nonce: the base64url key-binding challenge (iss_bind_challenge).
 * Syscall-like: 0 with summary like
 * "PLAY_RECOGNIZED;MEETS_DEVICE_INTEGRITY,MEETS_BASIC_INTEGRITY" and *level
 * (CFG_INT_DEVICE with the device or strong verdict, else CFG_INT_BASIC), or
 * -1 with *err naming the failed check and *why its catalog entry
 * (PC_E_KEY_NOT_BOUND for another nonce, else PC_E_ATTESTATION_FAILED).
 * level and why may be NULL. */
int iss_play_verify(const cfg_play_integrity_t *cfg, iss_play_keys_t *keys, const char *token,
                    size_t len, const char *expected_nonce, int64_t now_ms, char *summary,
                    size_t summary_len, int *level, enum pc_err *why, const char **err);

/* ---------------------------------------------------------------- http verifier */

/* The JSON body POSTed to an http verifier:
 * {"platform","integrity_token","nonce","challenge","key_sha256"}, the last
 * two base64url of the key-binding challenge and of the CSR key's SPKI hash
 * (iss_bind_challenge): the verifier must check that the token covers the
 * challenge. Syscall-like (-1 also when challenge or key_sha256 is NULL). */
int iss_http_verifier_body(const char *platform, const char *token, const char *nonce,
                           const unsigned char *challenge, const unsigned char *key_sha256,
                           char **json);
/* The whole HTTP/1.1 request for cfg (POST <path>, Host, Content-Type,
 * Content-Length, Connection: close) with json as the body. Syscall-like;
 * *req malloc'ed, *reqlen its length. */
int iss_http_verifier_request(const cfg_http_verifier_t *cfg, const char *json, char **req,
                              size_t *reqlen);
/* The verifier's 200 response body. Only {"verdict":"allow"} with an
 * optional string "summary" and an optional "level" (none, basic, device or
 * strong, at most max_level, the platform's http.max_level), and no other
 * member, is accepted. Syscall-like: 0 with summary set (the verifier's,
 * sanitized, or "allow") and *level (enum cfg_integrity: the one given,
 * else basic, or max_level if that is lower); -1 with *err, *level -1 and
 * summary holding a sanitized description of what came back (e.g.
 * verdict="deny" reason="..."). The gateway treats a non-200 status or a
 * timeout as PC_E_ISSUANCE_UNAVAILABLE, a -1 here as PC_E_ATTESTATION_FAILED. */
int iss_http_verifier_parse(const char *body, size_t len, int max_level, char *summary, size_t n,
                            int *level, const char **err);

/* ---------------------------------------------------------------- shared helpers */

/* base64url without padding. Encode: syscall-like, out needs
 * 4 * ceil(len / 3) + 1 bytes. Decode: the decoded length or -1 (padding
 * '=' at the end tolerated); out needs len * 3 / 4 + 3 bytes. */
int iss_b64url_encode(const unsigned char *in, size_t len, char *out, size_t outcap);
long iss_b64url_decode(const char *s, size_t len, unsigned char *out, size_t outcap);
/* The value 0..63 of one base64url character, or -1. */
int iss_b64url_val(unsigned char ch);

#endif
