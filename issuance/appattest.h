/* issuance/appattest: Apple App Attest objects and their checks, as Apple
 * documents them ("Validating apps that connect to your server"). The CBOR
 * is decoded by libcbor (cbor_load); this file only walks the decoded items
 * and the authenticator data's fixed layout. The provider around it is
 * attest_appattest.c (attester.h); docs/issuance.md describes the flow.
 *
 *   attestation object  {"fmt": "apple-appattest",
 *                        "attStmt": {"x5c": [credential cert DER, intermediate DER, ...],
 *                                    "receipt": bytes},
 *                        "authData": bytes}
 *   authenticator data  rpIdHash(32) flags(1) signCount(4, big endian)
 *                       [attested credential data when flag AT (0x40):
 *                        aaguid(16) credentialIdLength(2, big endian)
 *                        credentialId COSE_Key(CBOR map)] [anything after]
 *   assertion object    {"signature": bytes (DER ECDSA), "authenticatorData": bytes}
 *
 * Return contract of every parser here (ONE contract): 0 with *out filled,
 * or -1 with *err set to a static text naming what is wrong (never quoting
 * the input) and *out cleared. The pointers in *out point into the caller's
 * buffer (authenticator data) or into the decoded CBOR that *out owns; the
 * only release is iss_aa_*_clear(out), safe on a zeroed struct, after -1
 * and twice. Sizes are bounded (ISS_AA_MAX_*): larger input is refused
 * before it is decoded. Nothing else is allocated that outlives the call.
 */
#ifndef PORTCULLIS_ISSUANCE_APPATTEST_H
#define PORTCULLIS_ISSUANCE_APPATTEST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "../base/errors.h"
#include "../config/config.h"

#define ISS_AA_MAX_OBJECT 32768     /* CBOR bytes of an attestation object */
#define ISS_AA_MAX_ASSERTION 4096   /* CBOR bytes of an assertion object */
#define ISS_AA_MAX_CERTS 4          /* x5c entries */
#define ISS_AA_MAX_CRED_ID 64
#define ISS_AA_FLAG_AT 0x40u        /* attested credential data included */
#define ISS_AA_MAX_RECEIPT 16384   /* attStmt.receipt bytes (Apple's are a few KB) */
#define ISS_AA_STATE_MAX 24576      /* the state JSON kept per device: refused above */

typedef struct {
    const unsigned char *rp_id_hash;   /* 32 bytes */
    unsigned flags;
    uint32_t counter;
    int has_cred;                      /* the AT flag was set and the data parsed */
    const unsigned char *aaguid;       /* 16 bytes (has_cred) */
    const unsigned char *cred_id;      /* has_cred */
    size_t cred_id_len;
    const unsigned char *cose_key;     /* the COSE_Key's bytes (has_cred) */
    size_t cose_key_len;
    size_t trailing;                   /* bytes after what was parsed (tolerated) */
} iss_aa_authdata_t;

/* Authenticator data of len bytes at buf; need_cred: the attested
 * credential data must be there (attestation). Pointers into buf. */
int iss_aa_authdata_parse(const unsigned char *buf, size_t len, int need_cred,
                          iss_aa_authdata_t *out, const char **err);

typedef struct {
    void *cbor_;                       /* the decoded object (owned) */
    const unsigned char *x5c[ISS_AA_MAX_CERTS];
    size_t x5c_len[ISS_AA_MAX_CERTS];
    size_t nx5c;                       /* >= 2: credential certificate, intermediate(s) */
    const unsigned char *receipt;
    size_t receipt_len;
    const unsigned char *auth_data;
    size_t auth_data_len;
    iss_aa_authdata_t ad;
} iss_aa_attestation_t;

/* The attestation object's CBOR: exactly one definite-length item filling
 * buf, the members above (text keys, each once; other members refused). */
int iss_aa_attestation_parse(const unsigned char *buf, size_t len, iss_aa_attestation_t *out,
                             const char **err);
void iss_aa_attestation_clear(iss_aa_attestation_t *a);

typedef struct {
    void *cbor_;
    const unsigned char *signature;
    size_t signature_len;
    const unsigned char *auth_data;
    size_t auth_data_len;
    iss_aa_authdata_t ad;
} iss_aa_assertion_t;

/* The assertion object's CBOR, same rules. */
int iss_aa_assertion_parse(const unsigned char *buf, size_t len, iss_aa_assertion_t *out,
                           const char **err);
void iss_aa_assertion_clear(iss_aa_assertion_t *a);

/* ---------------------------------------------------------------- checks */

/* What an accepted attestation or assertion yields. state: malloc'ed JSON
 * object {"public_key": SPKI DER base64, "counter": n, "receipt": base64,
 * "app_id": ..., "key_id": base64, "environment": "production" |
 * "development"} (free with iss_aa_result_clear). */
typedef struct {
    int development;                   /* the development aaguid (attestation only) */
    char app_id[CFG_AA_APP_ID_MAX + 1];
    unsigned char key_id[32];          /* SHA-256 of the uncompressed EC point */
    unsigned char spki_sha256[32];     /* SHA-256 of the key's SPKI DER */
    uint32_t counter;
    char *state;
} iss_aa_result_t;

void iss_aa_result_clear(iss_aa_result_t *r);

/* The configured root CA file as a trust store (NULL with a reason). */
X509_STORE *iss_aa_roots_load(const char *path, char *err, size_t errlen);

/* Checks an attestation object (CBOR, len bytes) for client data hash
 * cdh (32 bytes) and the app's key id (key_id, key_id_len raw bytes) at
 * now_ms, against the configuration and the roots: the x5c chain to a root
 * at now_ms; the nonce extension 1.2.840.113635.100.8.2 = SHA-256(authData
 * || cdh); SHA-256(credential public key) = key id = credentialId; rpIdHash
 * = SHA-256(one of the app ids); counter 0; the aaguid allowed by the
 * environment. Returns PC_E_NONE with *res filled, or the refusal:
 * PC_E_ATTESTATION_FAILED (a failed check), PC_E_KEY_NOT_BOUND (the nonce
 * does not match: made for another challenge), PC_E_OUT_OF_MEMORY, with
 * *msg static; a malformed object is PC_E_ATTESTATION_FAILED too. *res is cleared on refusal. */
enum pc_err iss_aa_verify_attestation(const cfg_app_attest_t *cfg, X509_STORE *roots,
                                      const unsigned char *obj, size_t len,
                                      const unsigned char cdh[32], const unsigned char *key_id,
                                      size_t key_id_len, int64_t now_ms, iss_aa_result_t *res,
                                      const char **msg);

/* Checks an assertion object for cdh against the device's stored state (as
 * iss_aa_result_t.state wrote it) and the current configuration cfg: the
 * stored app id still in cfg's app_ids and its environment still allowed;
 * ECDSA P-256 / SHA-256 signature over SHA-256(authenticatorData || cdh)
 * with the stored key; rpIdHash = SHA-256(stored app id); counter strictly
 * above the stored one. Returns PC_E_NONE with *res filled (state: the
 * stored one with the new counter), or a refusal as above
 * (PC_E_ATTESTATION_FAILED for a withdrawn app id or environment, a bad
 * signature or counter; PC_E_INTERNAL for a stored state that cannot be
 * read or is over ISS_AA_STATE_MAX). */
enum pc_err iss_aa_verify_assertion(const cfg_app_attest_t *cfg, const char *state,
                                    const unsigned char *obj, size_t len,
                                    const unsigned char cdh[32], iss_aa_result_t *res,
                                    const char **msg);

/* Canonical base64 only (so that one value has one text): the standard or
 * the url alphabet, one of them per string; no padding, or exactly the
 * '=' that complete the last 4-character group; the unused bits of the
 * last character zero; no whitespace. Pure, no allocation. Returns the
 * decoded length, or -1 (non-canonical, invalid, or more than cap bytes;
 * out's content is then unspecified). */
long iss_aa_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap);

#endif
