/* tls: the server SSL_CTX, trust classes, client-certificate verification,
 * and the verified identity kept with each session.
 *
 * One tls_ctx_t is built per configuration generation and shared by every
 * worker thread; the sessions and the verify cache live in a tls_store_t
 * (store.h) shared by every generation's context. The identity of a client is
 * extracted once, while its chain is verified on a full handshake, and
 * attached to the SSL_SESSION; a resumed handshake finds it there without
 * parsing the certificate again. Sessions are kept server side (TLS 1.2
 * session IDs, TLS 1.3 stateful PSK tickets), so live SSL_SESSION objects are
 * reused instead of being re-decoded from tickets, and resumption works
 * whichever worker accepts the connection, under whichever generation, as
 * long as the trust of the session's class is the same (class trust digest).
 */
#ifndef PORTCULLIS_TLS_H
#define PORTCULLIS_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <time.h>

#include "../config/config.h"
#include "../policy/mirror.h"
#include "../policy/revocation.h"
#include "store.h"
#include "vcache.h"

#define TLS_CLASS_DIGEST_LEN 32   /* SHA-256 */

/* What the gateway knows about a verified client. Immutable once built;
 * shared by reference count between sessions and connections. Self-contained:
 * it points into no configuration or context, so it may outlive both. */
typedef struct tls_identity {
    int refs;                 /* atomic */
    int class_idx;            /* index into tls.classes of the context that built it
                               * (or rebased it: tls_identity_rebase) */
    char class_name[CFG_MAX_NAME];
    unsigned char class_digest[TLS_CLASS_DIGEST_LEN]; /* the class's trust digest there */
    char serial[2 * 20 + 1];  /* lowercase hex, no leading zeros */
    char fingerprint[65];     /* lowercase hex SHA-256 of the DER */
    char x5t_s256[44];        /* the same digest, base64url without padding (RFC 8705) */
    char *subject;            /* RFC 4514 */
    char *issuer;             /* RFC 4514 */
    char *san_uri;            /* comma separated, header-safe; "" if none */
    char *san_dns;            /* comma separated, header-safe; "" if none */
    char *device_id;          /* NULL if the configured source gave none */
    int integrity;            /* enum cfg_integrity: the highest level whose OID
                               * (identity.integrity_policies) the certificate's
                               * certificatePolicies name; -1: none (unattested) */
    unsigned char spki_sha256[32]; /* SHA-256 of the leaf's SubjectPublicKeyInfo DER:
                               * the key a level is about (issuance renewal) */
    char not_after[32];       /* the leaf's notAfter, RFC 3339 UTC (the header) */
    time_t leaf_not_after_t;  /* the same, as time_t */
    time_t not_after_t;       /* effective: the earliest notAfter of the verified
                               * chain (the leaf's until tls_identity_set_chain);
                               * expiry of live and resumed connections uses it */
    pol_rev_key_t rev_serial; /* digests of "<class>:<serial>" and of the fingerprint */
    pol_rev_key_t rev_fp;
    pol_rev_key_t rev_device; /* "device-id=<device_id>"; all-zero without a device id */
    pol_rev_key_t *rev_chain; /* per CA certificate of the verified chain, from the
                               * leaf's issuer up: its fingerprint (never its serial:
                               * serials are unique per issuer only) */
    size_t nrev_chain;        /* keys in rev_chain: 1 per CA certificate */
} tls_identity_t;

typedef struct tls_ctx tls_ctx_t;

/* Builds the server context for cfg, attached to store: its sessions and
 * verified chains go to the store and it resumes (uses) those made under any
 * context of the store whose class of the same name has the same trust
 * digest. store NULL: the context makes its own store, configured from cfg
 * and freed with it. tls_ctx_new does not configure a shared store (the
 * builder calls tls_store_configure once the whole generation is built).
 * Returns NULL and writes a reason to err.
 * Lifetime: cfg and store outlive the context; the context outlives its
 * connections (SSL objects). Threads: any number of workers may handshake on
 * it at once. */
tls_ctx_t *tls_ctx_new(const cfg_t *cfg, tls_store_t *store, char *err, size_t errlen);
void tls_ctx_free(tls_ctx_t *t);
SSL_CTX *tls_ctx_ssl(tls_ctx_t *t);
tls_store_t *tls_ctx_store(tls_ctx_t *t);

/* The trust digest of class idx of this context (TLS_CLASS_DIGEST_LEN
 * bytes), or NULL if idx is out of range: SHA-256 over the class name, the
 * DER of every CA of its bundle in file order, the verification parameters
 * (purpose, depth, minimum TLS version) and the identity configuration that
 * shapes an identity (identity.device_id_source, device_id_prefix). Two
 * contexts' classes with equal digests verify and name a client alike. */
const unsigned char *tls_ctx_class_digest(const tls_ctx_t *t, size_t idx);

/* The revocation mirror consulted on every handshake (NULL: none). */
void tls_ctx_set_mirror(tls_ctx_t *t, pol_mirror_t *m);

enum tls_rev_status { TLS_REV_OK = 0, TLS_REV_REVOKED = 1, TLS_REV_UNKNOWN = 2 };
/* Revocation status of an identity: revoked, or unknown when the mirror
 * may not be relied on (fail_closed, or serve_stale past max_staleness). */
int tls_identity_revocation(tls_ctx_t *t, const tls_identity_t *id);
/* Only the revoked check, for requests on live connections. Both check
 * every key of the identity: the certificate's serial and fingerprint, its
 * device id, and each CA certificate of its verified chain. */
int tls_identity_revoked(tls_ctx_t *t, const tls_identity_t *id);
/* Which key matched when tls_identity_revoked is 1: "certificate",
 * "device id" or "issuing CA"; NULL when none does. */
const char *tls_identity_revoked_by(tls_ctx_t *t, const tls_identity_t *id);

/* Why the last handshake on this SSL failed verification (or NULL). */
const char *tls_verify_failure(SSL *ssl);
/* The same refusal as a failure reason (enum pc_tls_fail of
 * base/metrics.h), or -1 when no certificate check failed. */
int tls_verify_failure_reason(SSL *ssl);
/* The failure reason (enum pc_tls_fail) of an X509_V_ERR_* verification
 * error: expired, not_yet_valid, unknown_ca (no path to a trusted CA,
 * self-signed, bad signature), bad_eku (purpose), revoked; else other. Pure. */
int tls_fail_reason_of_x509(int xerr);

/* Verify cache (tls.verify_cache): a full handshake whose client presents a
 * chain already verified under a class of the same trust digest skips
 * X509_verify_cert; the revocation check still runs. The cache belongs to
 * the store. tls_verify_cached: 1 if this SSL's handshake was such a hit.
 * tls_ctx_vcache_stats: 0 and the counters of the store's cache, or -1 when
 * it is disabled. tls_ctx_vcache_flush: forget every verified chain of the
 * store; to be called by anything that changes the trust store or
 * verification parameters of a live context (today nothing does: a new
 * configuration means a new context, whose digests decide). */
int tls_verify_cached(SSL *ssl);
int tls_ctx_vcache_stats(tls_ctx_t *t, tls_vcache_stats_t *st);
void tls_ctx_vcache_flush(tls_ctx_t *t);

/* After a successful handshake: the identity of the peer (a new reference,
 * release with tls_identity_release), or NULL if none is attached. */
tls_identity_t *tls_identity_get(SSL *ssl);
void tls_identity_release(tls_identity_t *id);

/* The integrity level a certificate records (tls_identity_t.integrity):
 * the highest level of icfg->integrity_oids its certificatePolicies
 * extension names, or -1 when it names none, has no such extension, or an
 * unreadable one. Decodes the extension only when there is one. */
int tls_cert_integrity(X509 *leaf, const cfg_identity_t *icfg);
/* Builds an identity from a verified leaf certificate (exposed for tests);
 * class_name is copied (cut at CFG_MAX_NAME - 1 bytes), class_digest is left
 * zero (tls.c sets it). */
tls_identity_t *tls_identity_from_cert(X509 *leaf, int class_idx, const char *class_name,
                                       const cfg_identity_t *icfg);
/* A new identity with the same fields as id (deep copies) but class_idx; the
 * caller owns the reference. NULL when out of memory. */
tls_identity_t *tls_identity_rebase(const tls_identity_t *id, int class_idx);
/* Adds what the CA certificates of a verified chain (chain[1..], leaf first
 * as X509_STORE_CTX_get0_chain gives it) mean for an identity not yet
 * shared: their fingerprints as revocation keys, and the effective
 * not_after_t (tls_chain_not_after). 0, or -1 when out of memory. */
int tls_identity_set_chain(tls_identity_t *id, STACK_OF(X509) *chain);
/* The earliest of leaf_not_after and the notAfter of chain[1..]; 0 when one
 * cannot be read (then the identity counts as expired). Pure. */
time_t tls_chain_not_after(STACK_OF(X509) *chain, time_t leaf_not_after);
/* For a canonical "<class>:<serial>" entry: 1 with a one-line warning in
 * note when a CA certificate of that class's bundle (tls.classes[].ca_file,
 * read now) has the same serial (the entry does not revoke that CA: CA
 * certificates are revoked by fingerprint only); 0 otherwise, also when the
 * entry is another form or the bundle cannot be read. */
int tls_ca_serial_note(const cfg_t *cfg, const char *entry, char *note, size_t len);

/* Longest failure text tls_verify_failure returns, with its NUL. */
#define TLS_FAIL_LEN 160

#endif
