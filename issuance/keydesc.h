/* issuance/keydesc: the Android key attestation extension
 * (KeyDescription, OID 1.3.6.1.4.1.11129.2.1.17) of an attestation
 * certificate, as Android's Keystore / KeyMint writes it:
 *
 *   KeyDescription ::= SEQUENCE {
 *     attestationVersion INTEGER, attestationSecurityLevel SecurityLevel,
 *     keymasterVersion INTEGER, keymasterSecurityLevel SecurityLevel,
 *     attestationChallenge OCTET STRING, uniqueId OCTET STRING,
 *     softwareEnforced AuthorizationList, teeEnforced AuthorizationList }
 *   SecurityLevel ::= ENUMERATED { Software(0), TrustedEnvironment(1), StrongBox(2) }
 *   AuthorizationList ::= SEQUENCE { purpose [1] EXPLICIT SET OF INTEGER,
 *     ..., origin [702] EXPLICIT INTEGER, rootOfTrust [704] EXPLICIT RootOfTrust,
 *     attestationApplicationId [709] EXPLICIT OCTET STRING, ... }  -- all OPTIONAL
 *   RootOfTrust ::= SEQUENCE { verifiedBootKey OCTET STRING, deviceLocked BOOLEAN,
 *     verifiedBootState ENUMERATED { Verified(0), SelfSigned(1), Unverified(2), Failed(3) },
 *     verifiedBootHash OCTET STRING  -- version 3 and later }
 *   AttestationApplicationId ::= SEQUENCE {
 *     packageInfos SET OF SEQUENCE { packageName OCTET STRING, version INTEGER },
 *     signatureDigests SET OF OCTET STRING }
 *
 * Parsing walks the DER with OpenSSL's ASN1_get_object and decodes the
 * basic types with its d2i functions. Tags of the authorization lists other
 * than the four read here are skipped (every KeyMint version adds some);
 * trailing fields after teeEnforced and after verifiedBootHash likewise.
 * Pure: no global state, the result points into the caller's buffer.
 */
#ifndef PORTCULLIS_ISSUANCE_KEYDESC_H
#define PORTCULLIS_ISSUANCE_KEYDESC_H

#include <stddef.h>
#include <stdint.h>

#define ISS_KD_OID "1.3.6.1.4.1.11129.2.1.17"
#define ISS_KD_MAX_DER 65536       /* a larger extension is refused */
#define ISS_KD_MAX_PACKAGES 16     /* package infos in an application id */
#define ISS_KD_MAX_DIGESTS 16      /* signature digests in an application id */

enum iss_kd_level { ISS_KD_SOFTWARE = 0, ISS_KD_TEE = 1, ISS_KD_STRONGBOX = 2 };
enum iss_kd_boot { ISS_KD_VERIFIED = 0, ISS_KD_SELF_SIGNED = 1, ISS_KD_UNVERIFIED = 2,
                   ISS_KD_FAILED = 3 };
#define ISS_KD_PURPOSE_SIGN 2
/* origin [702]: KM_ORIGIN_GENERATED (0) is a key made in the secure hardware;
 * DERIVED (1), IMPORTED (2), UNKNOWN (3), SECURELY_IMPORTED (4) are not. */
#define ISS_KD_ORIGIN_GENERATED 0

typedef struct {
    const unsigned char *p;   /* into the parsed buffer; NULL when absent */
    size_t len;
} iss_kd_bytes_t;

typedef struct {
    int has_purpose;          /* purpose [1] present */
    uint64_t purposes;        /* bit n set: purpose n (0..63; larger values ignored) */
    int has_origin;           /* origin [702] present */
    int64_t origin;           /* ISS_KD_ORIGIN_*, or another value as sent */
    int has_root_of_trust;    /* rootOfTrust [704] present */
    iss_kd_bytes_t boot_key;  /* verifiedBootKey */
    int device_locked;        /* 0 / 1 */
    int boot_state;           /* enum iss_kd_boot, or another value as sent */
    iss_kd_bytes_t boot_hash; /* verifiedBootHash; p NULL before version 3 */
    iss_kd_bytes_t app_id;    /* attestationApplicationId [709]: the OCTET STRING's
                               * content (DER of an AttestationApplicationId); p NULL
                               * when absent */
} iss_kd_auth_t;

typedef struct {
    int64_t attestation_version;
    int attestation_level;    /* enum iss_kd_level, or another value as sent */
    int64_t keymaster_version;
    int keymaster_level;
    iss_kd_bytes_t challenge; /* attestationChallenge */
    iss_kd_bytes_t unique_id;
    iss_kd_auth_t sw;         /* softwareEnforced */
    iss_kd_auth_t tee;        /* teeEnforced (hardwareEnforced) */
} iss_keydesc_t;

typedef struct {
    size_t npackages;
    struct {
        iss_kd_bytes_t name;
        int64_t version;
    } packages[ISS_KD_MAX_PACKAGES];
    size_t ndigests;
    iss_kd_bytes_t digests[ISS_KD_MAX_DIGESTS];
} iss_kd_appid_t;

/* Parses der[0..len) (the extension's value: exactly one DER
 * KeyDescription, nothing after it). Contract: 0 with *out filled (its
 * pointers into der), or -1 with *err a static text naming the first
 * problem and *out zeroed. Never reads outside der[0..len); refuses
 * indefinite lengths, len > ISS_KD_MAX_DER, a known tag twice in one list,
 * integers beyond int64. */
int iss_keydesc_parse(const unsigned char *der, size_t len, iss_keydesc_t *out,
                      const char **err);

/* Parses the content of attestationApplicationId (kd.sw.app_id or
 * kd.tee.app_id). Same contract as iss_keydesc_parse; more than
 * ISS_KD_MAX_PACKAGES package infos or ISS_KD_MAX_DIGESTS digests is an
 * error. */
int iss_keydesc_appid(const unsigned char *der, size_t len, iss_kd_appid_t *out,
                      const char **err);

#endif
