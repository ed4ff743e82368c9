/* tls: server context, class-aware client verification, session identity. */
#include "tls.h"

#include "../base/metrics.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_ctx {
    SSL_CTX *ssl;
    const cfg_t *cfg;
    pol_mirror_t *mirror;
    STACK_OF(X509) **class_cas;   /* per class: the certificates of its bundle */
    unsigned char (*digest)[TLS_CLASS_DIGEST_LEN];  /* per class: its trust digest */
    size_t nclasses;
    tls_store_t *store;           /* sessions and verified chains, shared */
    int own_store;                /* made by tls_ctx_new (store NULL): freed with it */
    long sess_life_s;             /* tls.session_cache.lifetime of this context */
    EVP_MD *sha256;               /* fetched once: no per-handshake algorithm lookup */
};

static int sess_idx = -1;  /* SSL_SESSION ex_data: tls_identity_t* */
static int ssl_fail_idx = -1;  /* SSL ex_data: fail_t, only once a check failed */
static int ssl_cached_idx = -1;  /* SSL ex_data: non-NULL after a verify-cache hit */
static int ssl_ctx_idx = -1;   /* SSL_CTX ex_data: tls_ctx_t* */
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

void tls_identity_release(tls_identity_t *id)
{
    if (!id || __atomic_sub_fetch(&id->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(id->subject);
    free(id->issuer);
    free(id->san_uri);
    free(id->san_dns);
    free(id->device_id);
    free(id->rev_chain);
    free(id);
}

static void sess_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    tls_identity_release(ptr);
}

/* OpenSSL copies a session (e.g. for each TLS 1.3 ticket): share the identity. */
static int sess_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                    long argl, void *argp)
{
    (void)to; (void)from; (void)idx; (void)argl; (void)argp;
    tls_identity_t *id = *from_d;
    if (id)
        __atomic_add_fetch(&id->refs, 1, __ATOMIC_ACQ_REL);
    return 1;
}

/* The failure text is allocated only when a check fails: a connection
 * whose certificate is fine carries no buffer for it. */
static void fail_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void init_indexes(void)
{
    sess_idx = SSL_SESSION_get_ex_new_index(0, NULL, NULL, sess_dup, sess_free);
    ssl_fail_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, fail_free);
    ssl_cached_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ssl_ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Why a handshake's client certificate was refused: the first refusal. */
typedef struct {
    int reason;                /* enum pc_tls_fail */
    char text[TLS_FAIL_LEN];
} fail_t;

const char *tls_verify_failure(SSL *ssl)
{
    fail_t *f = SSL_get_ex_data(ssl, ssl_fail_idx);
    return f ? f->text : NULL;
}

int tls_verify_failure_reason(SSL *ssl)
{
    fail_t *f = SSL_get_ex_data(ssl, ssl_fail_idx);
    return f ? f->reason : -1;
}

int tls_fail_reason_of_x509(int xerr)
{
    switch (xerr) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return PC_TLSF_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return PC_TLSF_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        return PC_TLSF_UNKNOWN_CA;
    case X509_V_ERR_INVALID_PURPOSE:
        return PC_TLSF_BAD_EKU;
    case X509_V_ERR_CERT_REVOKED:
        return PC_TLSF_REVOKED;
    default:
        return PC_TLSF_OTHER;
    }
}

int tls_verify_cached(SSL *ssl)
{
    return SSL_get_ex_data(ssl, ssl_cached_idx) != NULL;
}

/* ---- identity extraction ---- */

static char *name_rfc4514(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (!b)
        return NULL;
    /* RFC 4514 order and escaping; control and non-ASCII bytes are escaped,
     * so the result is always safe in a header value. */
    if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
        char *p;
        long len = BIO_get_mem_data(b, &p);
        out = malloc((size_t)len + 1);
        if (out) {
            size_t j = 0;
            for (long i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)p[i];
                if (ch >= 0x20 && ch != 0x7f)   /* belt and braces: never a CTL */
                    out[j++] = (char)ch;
            }
            out[j] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

/* Appends a SAN value to a comma-separated list, percent-encoding anything
 * that is not a visible ASCII character, and the separator itself. */
static int list_append(char **list, size_t *len, const unsigned char *v, size_t vlen)
{
    size_t need = *len + 1 + vlen * 3 + 1;
    char *n = realloc(*list, need);
    if (!n)
        return -1;
    *list = n;
    if (*len)
        n[(*len)++] = ',';
    for (size_t i = 0; i < vlen; i++) {
        unsigned char ch = v[i];
        if (ch > 0x20 && ch < 0x7f && ch != ',' && ch != '%') {
            n[(*len)++] = (char)ch;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            n[(*len)++] = '%';
            n[(*len)++] = hex[ch >> 4];
            n[(*len)++] = hex[ch & 15];
        }
    }
    n[*len] = '\0';
    return 0;
}

static char *dup_n(const unsigned char *s, size_t n)
{
    char *o = malloc(n + 1);
    if (o) {
        memcpy(o, s, n);
        o[n] = '\0';
    }
    return o;
}

int tls_cert_integrity(X509 *leaf, const cfg_identity_t *icfg)
{
    int crit = 0, level = -1;
    /* most certificates carry no policies: no decoding for them */
    if (X509_get_ext_by_NID(leaf, NID_certificate_policies, -1) < 0)
        return -1;
    /* NULL also for two certificatePolicies extensions (crit -2) or a bad
     * encoding: then the certificate says nothing we can trust */
    CERTIFICATEPOLICIES *pols = X509_get_ext_d2i(leaf, NID_certificate_policies, &crit, NULL);
    for (int i = 0; pols && i < sk_POLICYINFO_num(pols); i++) {
        const ASN1_OBJECT *o = sk_POLICYINFO_value(pols, i)->policyid;
        const unsigned char *d = OBJ_get0_data(o);
        size_t n = OBJ_length(o);
        for (int k = CFG_INTEGRITY_LEVELS - 1; k > level; k--) {
            const cfg_oid_t *c = &icfg->integrity_oids[k];
            if (c->der_len && c->der_len == n && d && memcmp(c->der, d, n) == 0) {
                level = k;
                break;
            }
        }
    }
    CERTIFICATEPOLICIES_free(pols);
    ERR_clear_error();
    return level;
}

/* SHA-256 of the leaf's SubjectPublicKeyInfo DER. Syscall-like. */
static int spki_digest(X509 *leaf, unsigned char out[32])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &der);
    int ok = n > 0 && SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

tls_identity_t *tls_identity_from_cert(X509 *leaf, int class_idx, const char *class_name,
                                       const cfg_identity_t *icfg)
{
    tls_identity_t *id = calloc(1, sizeof(*id));
    if (!id)
        return NULL;
    id->refs = 1;
    id->class_idx = class_idx;
    snprintf(id->class_name, sizeof(id->class_name), "%s", class_name);

    /* serial: lowercase hex without leading zeros */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(leaf);
    BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (!hex)
        goto fail;
    {
        const char *h = hex;
        if (*h == '-') {
            OPENSSL_free(hex);
            goto fail;   /* invalid (RFC 5280), and it would read as its magnitude */
        }
        while (h[0] == '0' && h[1])
            h++;
        if (strlen(h) >= sizeof(id->serial)) {
            OPENSSL_free(hex);
            goto fail;   /* never a truncated serial: verification refuses these first */
        }
        size_t j = 0;
        for (; *h; h++)
            id->serial[j++] = (char)((*h >= 'A' && *h <= 'F') ? *h + 32 : *h);
        id->serial[j] = '\0';
    }
    OPENSSL_free(hex);
    BN_free(bn);
    bn = NULL;

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!X509_digest(leaf, EVP_sha256(), md, &mdlen) || mdlen != 32)
        goto fail;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(id->fingerprint + 2 * i, 3, "%02x", md[i]);
    unsigned char b64[48];
    int bl = EVP_EncodeBlock(b64, md, 32);   /* 44 chars, one '=' */
    for (int i = 0; i < bl && i < 43; i++)
        id->x5t_s256[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    id->x5t_s256[43] = '\0';

    id->subject = name_rfc4514(X509_get_subject_name(leaf));
    id->issuer = name_rfc4514(X509_get_issuer_name(leaf));
    if (!id->subject || !id->issuer)
        goto fail;

    size_t ulen = 0, dlen = 0;
    id->san_uri = calloc(1, 1);
    id->san_dns = calloc(1, 1);
    if (!id->san_uri || !id->san_dns)
        goto fail;
    size_t plen = icfg->device_id_prefix ? strlen(icfg->device_id_prefix) : 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_URI) {
            const unsigned char *v = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
            size_t n = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
            if (list_append(&id->san_uri, &ulen, v, n) < 0)
                break;
            if (icfg->device_id_source == CFG_DEVID_SAN_URI && !id->device_id && n > plen &&
                memcmp(v, icfg->device_id_prefix, plen) == 0 &&
                pol_device_id_valid_n((const char *)v + plen, n - plen))
                id->device_id = dup_n(v + plen, n - plen);
        } else if (g->type == GEN_DNS) {
            const unsigned char *v = ASN1_STRING_get0_data(g->d.dNSName);
            size_t n = (size_t)ASN1_STRING_length(g->d.dNSName);
            if (list_append(&id->san_dns, &dlen, v, n) < 0)
                break;
        }
    }
    GENERAL_NAMES_free(sans);

    if (icfg->device_id_source == CFG_DEVID_CN) {
        X509_NAME *sub = X509_get_subject_name(leaf);
        int pos = X509_NAME_get_index_by_NID(sub, NID_commonName, -1);
        /* exactly one CN, or the choice would be ambiguous */
        if (pos >= 0 && X509_NAME_get_index_by_NID(sub, NID_commonName, pos) < 0) {
            ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(sub, pos));
            const unsigned char *v = ASN1_STRING_get0_data(cn);
            size_t n = (size_t)ASN1_STRING_length(cn);
            if (pol_device_id_valid_n((const char *)v, n))
                id->device_id = dup_n(v, n);
        }
    }

    /* only classes whose certificates an issuer that records levels signs
     * (identity.integrity_classes): any other CA could name a level */
    id->integrity = class_idx >= 0 && class_idx < 32 && (icfg->integrity_classes & (1u << class_idx))
                        ? tls_cert_integrity(leaf, icfg) : -1;
    if (spki_digest(leaf, id->spki_sha256) < 0)
        goto fail;

    const ASN1_TIME *na = X509_get0_notAfter(leaf);
    struct tm tm;
    if (!ASN1_TIME_to_tm(na, &tm))
        goto fail;
    id->not_after_t = id->leaf_not_after_t = timegm(&tm);
    strftime(id->not_after, sizeof(id->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);

    char entry[POL_REV_ENTRY_MAX];
    int n = snprintf(entry, sizeof(entry), "%s:%s", class_name, id->serial);
    id->rev_serial = pol_rev_key(entry, (size_t)n);
    id->rev_fp = pol_rev_key(id->fingerprint, 64);
    if (id->device_id && pol_rev_device_key(id->device_id, &id->rev_device) < 0)
        goto fail;
    return id;

fail:
    BN_free(bn);
    tls_identity_release(id);
    return NULL;
}

static char *dup_opt(const char *s, int *bad)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *bad = 1;
    return d;
}

tls_identity_t *tls_identity_rebase(const tls_identity_t *id, int class_idx)
{
    tls_identity_t *r = malloc(sizeof(*r));
    if (!r)
        return NULL;
    *r = *id;
    r->refs = 1;
    r->class_idx = class_idx;
    int bad = 0;
    r->subject = dup_opt(id->subject, &bad);
    r->issuer = dup_opt(id->issuer, &bad);
    r->san_uri = dup_opt(id->san_uri, &bad);
    r->san_dns = dup_opt(id->san_dns, &bad);
    r->device_id = dup_opt(id->device_id, &bad);
    r->rev_chain = NULL;
    if (id->nrev_chain) {
        r->rev_chain = malloc(id->nrev_chain * sizeof(*r->rev_chain));
        if (r->rev_chain)
            memcpy(r->rev_chain, id->rev_chain, id->nrev_chain * sizeof(*r->rev_chain));
        else
            bad = 1;
    }
    if (bad) {
        tls_identity_release(r);
        return NULL;
    }
    return r;
}

static int fingerprint_hex(X509 *c, char fp[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!X509_digest(c, EVP_sha256(), md, &mdlen) || mdlen != 32)
        return -1;
    for (unsigned j = 0; j < mdlen; j++)
        snprintf(fp + 2 * j, 3, "%02x", md[j]);
    return 0;
}

time_t tls_chain_not_after(STACK_OF(X509) *chain, time_t leaf_not_after)
{
    time_t min = leaf_not_after;
    for (int i = 1; i < sk_X509_num(chain); i++) {
        struct tm tm;
        if (!ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(chain, i)), &tm))
            return 0;   /* unreadable: treated as expired */
        time_t t = timegm(&tm);
        if (t < min)
            min = t;
    }
    return min;
}

/* The CA certificates of a chain are named by their fingerprints only: a
 * serial is unique per issuer, so "<class>:<serial>" would also name any CA
 * that happens to share a leaf's serial (openssl ca setups often start the
 * root's and the intermediate's serial files at the same number). */
int tls_identity_set_chain(tls_identity_t *id, STACK_OF(X509) *chain)
{
    int n = sk_X509_num(chain);
    free(id->rev_chain);
    id->rev_chain = NULL;
    id->nrev_chain = 0;
    id->not_after_t = tls_chain_not_after(chain, id->leaf_not_after_t);
    if (n <= 1)
        return 0;
    pol_rev_key_t *keys = calloc((size_t)(n - 1), sizeof *keys);
    if (!keys)
        return -1;
    for (int i = 1; i < n; i++) {
        char fp[65];
        if (fingerprint_hex(sk_X509_value(chain, i), fp) < 0) {
            free(keys);
            return -1;
        }
        keys[i - 1] = pol_rev_key(fp, 64);
    }
    id->rev_chain = keys;
    id->nrev_chain = (size_t)(n - 1);
    return 0;
}

int tls_ca_serial_note(const cfg_t *cfg, const char *entry, char *note, size_t len)
{
    const char *colon = strchr(entry, ':');
    if (len)
        note[0] = '\0';
    if (!colon)
        return 0;
    size_t cn = (size_t)(colon - entry);
    const cfg_class_t *cls = NULL;
    for (size_t i = 0; i < cfg->tls.nclasses; i++)
        if (strlen(cfg->tls.classes[i].name) == cn &&
            memcmp(cfg->tls.classes[i].name, entry, cn) == 0)
            cls = &cfg->tls.classes[i];
    BIO *b = cls && cls->ca_file ? BIO_new_file(cls->ca_file, "r") : NULL;
    if (!b)
        return 0;
    int found = 0;
    X509 *c;
    ERR_set_mark();
    while (!found && (c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        char canon[POL_REV_ENTRY_MAX], fp[65], subj[160];
        const char *err = NULL;
        if (hex && hex[0] != '-' &&
            pol_rev_canon_serial(cls->name, hex, canon, sizeof canon, &err) == 0 &&
            strcmp(canon, entry) == 0 && fingerprint_hex(c, fp) == 0) {
            X509_NAME_oneline(X509_get_subject_name(c), subj, sizeof subj);
            snprintf(note, len, "serial %s is also the serial of the CA certificate %s in the "
                     "%s class bundle; a <class>:<serial> entry revokes leaf certificates only "
                     "(serials are unique per issuer): to revoke that CA, revoke its "
                     "fingerprint %s", colon + 1, subj, cls->name, fp);
            found = 1;
        }
        OPENSSL_free(hex);
        BN_free(bn);
        X509_free(c);
    }
    ERR_pop_to_mark();
    BIO_free(b);
    return found;
}

/* ---- verification ---- */

static int class_of_chain(const tls_ctx_t *t, STACK_OF(X509) *chain)
{
    /* The nearest CA in the chain that belongs to a class decides it; the
     * config refuses a CA listed in two classes, so this is unambiguous. */
    for (int i = 1; i < sk_X509_num(chain); i++) {
        X509 *ca = sk_X509_value(chain, i);
        for (size_t c = 0; c < t->nclasses; c++)
            for (int k = 0; k < sk_X509_num(t->class_cas[c]); k++)
                if (X509_cmp(ca, sk_X509_value(t->class_cas[c], k)) == 0)
                    return (int)c;
    }
    return -1;
}

/* What a verified leaf must also be to stand for a client, beyond what
 * X509_verify_cert checks. Returns NULL when the leaf is acceptable, else why
 * not, with *xerr set to the X509 error that selects the TLS alert (see
 * ssl_x509err2alert in libssl: INVALID_PURPOSE is unsupported_certificate,
 * CERT_REJECTED is bad_certificate). */
static const char *leaf_refusal(X509 *leaf, int *xerr)
{
    /* A certificate that may sign certificates is a CA, not a device: with
     * its key one could mint identities. X509_check_ca is non-zero for
     * basicConstraints cA=TRUE, and for a certificate without
     * basicConstraints whose keyUsage allows keyCertSign. */
    if (X509_check_ca(leaf) != 0) {
        *xerr = X509_V_ERR_INVALID_PURPOSE;
        return "the leaf certificate is a CA certificate (basicConstraints CA:TRUE or keyCertSign)";
    }
    /* The serial is the identity's key (headers, revocation entries): it
     * must be carried whole. RFC 5280 4.1.2.2: a positive integer of at
     * most 20 octets. ASN1_INTEGER holds the magnitude without padding. */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(leaf);
    if (ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER) {
        *xerr = X509_V_ERR_CERT_REJECTED;
        return "negative serial number (RFC 5280 4.1.2.2)";
    }
    if (ASN1_STRING_length(sn) > 20) {
        *xerr = X509_V_ERR_CERT_REJECTED;
        return "serial number longer than 20 octets (RFC 5280 4.1.2.2)";
    }
    return NULL;
}

/* reason: enum pc_tls_fail, for the handshake failure counter. */
static void set_fail(SSL *ssl, const char *why, int depth, int reason)
{
    if (SSL_get_ex_data(ssl, ssl_fail_idx))
        return;   /* the first failure is the one reported */
    fail_t *f = malloc(sizeof *f);
    if (!f)
        return;
    f->reason = reason;
    snprintf(f->text, TLS_FAIL_LEN, "client certificate refused: %s (depth %d)", why, depth);
    if (!SSL_set_ex_data(ssl, ssl_fail_idx, f))
        free(f);
}

/* The one path by which a verified identity joins a handshake, whether its
 * chain was just verified (verify_cb) or found in the verify cache
 * (cert_verify_cb): the revocation check, then the identity attached to the
 * session, whose lifetime is bounded by the certificate's notAfter. Takes over
 * the caller's reference to id. Boolean: 1 attached; 0 refused, with the X509
 * error (hence the TLS alert) and the failure text set. *rev receives the
 * revocation status (TLS_REV_UNKNOWN if it was never asked). */
static int attach_identity(tls_ctx_t *t, SSL *ssl, X509_STORE_CTX *x, tls_identity_t *id,
                           int *rev)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    *rev = TLS_REV_UNKNOWN;
    if (!id || !sess) {
        tls_identity_release(id);
        X509_STORE_CTX_set_error(x, X509_V_ERR_OUT_OF_MEM);
        set_fail(ssl, "identity extraction failed", 0, PC_TLSF_OTHER);
        return 0;
    }
    switch (*rev = tls_identity_revocation(t, id)) {
    case TLS_REV_REVOKED: {
        char why[64];
        snprintf(why, sizeof why, "certificate revoked (by its %s entry)",
                 tls_identity_revoked_by(t, id) ? tls_identity_revoked_by(t, id) : "?");
        tls_identity_release(id);
        X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REVOKED);   /* alert certificate_revoked */
        set_fail(ssl, why, 0, PC_TLSF_REVOKED);
        return 0;
    }
    case TLS_REV_UNKNOWN:
        tls_identity_release(id);
        /* alert internal_error: the server cannot decide now. Not
         * unknown_ca, which a client reads as "my certificate is bad". */
        X509_STORE_CTX_set_error(x, X509_V_ERR_UNSPECIFIED);
        set_fail(ssl, "revocation status unknown (Redis unavailable; failing closed)", 0,
                 PC_TLSF_REVOCATION_UNKNOWN);
        return 0;
    }
    tls_identity_release(SSL_SESSION_get_ex_data(sess, sess_idx));
    SSL_SESSION_set_ex_data(sess, sess_idx, id);

    /* A session never outlives its certificate. */
    time_t now = time(NULL);
    long life = (long)(t->cfg->tls.session_lifetime_ms / 1000);
    if (id->not_after_t - now < life)
        life = id->not_after_t > now ? (long)(id->not_after_t - now) : 1;
    SSL_SESSION_set_timeout(sess, life);
    return 1;
}

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    int depth = X509_STORE_CTX_get_error_depth(x);
    if (!ok) {
        int xerr = X509_STORE_CTX_get_error(x);
        set_fail(ssl, X509_verify_cert_error_string(xerr), depth, tls_fail_reason_of_x509(xerr));
        return 0;
    }
    if (depth != 0)
        return 1;

    tls_ctx_t *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ssl_ctx_idx);
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(x);
    int cls = class_of_chain(t, chain);
    if (cls < 0) {
        X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_UNTRUSTED);
        set_fail(ssl, "no trust class anchors the chain", 0, PC_TLSF_UNKNOWN_CA);
        return 0;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    int xerr;
    const char *why = leaf_refusal(leaf, &xerr);
    if (why) {
        X509_STORE_CTX_set_error(x, xerr);
        set_fail(ssl, why, 0, PC_TLSF_OTHER);
        return 0;
    }
    tls_identity_t *id = tls_identity_from_cert(leaf, cls, t->cfg->tls.classes[cls].name,
                                                &t->cfg->identity);
    if (id)
        memcpy(id->class_digest, t->digest[cls], TLS_CLASS_DIGEST_LEN);
    if (id && tls_identity_set_chain(id, chain) < 0) {
        tls_identity_release(id);
        id = NULL;   /* attach_identity refuses it */
    }
    int rev;
    return attach_identity(t, ssl, x, id, &rev);
}

/* ---- resumption ----
 *
 * A resumed session skips certificate verification; its identity must still
 * be current. libssl has chosen the session to resume (TLS 1.2 session ID or
 * TLS 1.3 PSK, binder checked) before it calls the servername callback,
 * which it calls whether or not the client sent SNI, and which may end the
 * handshake with an alert of its choosing. So the refusal is said in the
 * handshake, as on a full one: certificate_revoked, certificate_expired, or
 * internal_error while revocation status is unknown. A fatal alert also
 * takes the session out of the cache (libssl does so for any fatal alert). */
static int resume_cb(SSL *ssl, int *al, void *arg)
{
    tls_ctx_t *t = arg;
    if (!SSL_session_reused(ssl))
        return SSL_TLSEXT_ERR_NOACK;   /* what libssl does with no callback */
    SSL_SESSION *sess = SSL_get_session(ssl);
    const tls_identity_t *id = sess ? SSL_SESSION_get_ex_data(sess, sess_idx) : NULL;
    const char *why = NULL;
    int reason = PC_TLSF_OTHER;
    if (!id) {
        *al = SSL_AD_INTERNAL_ERROR;
        why = "resumed session without an identity";
    } else if (id->not_after_t <= time(NULL)) {
        *al = SSL_AD_CERTIFICATE_EXPIRED;
        why = "certificate has expired (resumed session)";
        reason = PC_TLSF_EXPIRED;
    } else {
        int rs = tls_identity_revocation(t, id);
        if (rs == TLS_REV_REVOKED) {
            *al = SSL_AD_CERTIFICATE_REVOKED;
            why = "certificate revoked (resumed session)";
            reason = PC_TLSF_REVOKED;
        } else if (rs != TLS_REV_OK) {   /* TLS_REV_UNKNOWN, or anything else: fail closed */
            *al = SSL_AD_INTERNAL_ERROR;
            why = "revocation status unknown (Redis unavailable; failing closed; resumed session)";
            reason = PC_TLSF_REVOCATION_UNKNOWN;
        }
    }
    if (!why)
        return SSL_TLSEXT_ERR_NOACK;
    set_fail(ssl, why, 0, reason);
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* ---- sessions and verified chains across contexts ----
 *
 * The store outlives contexts: a session or a cached verification may have
 * been made under another context (an earlier configuration generation). It
 * stands for a verification only if this context would have verified and
 * named the client alike: a class of the same name whose trust digest (the
 * name, the CA bundle's DER, the verification parameters, the identity
 * configuration) is the same. The identity then needs this context's index of
 * that class; when it differs, a rebased copy is made once and replaces the
 * stored one, so the next lookup is again the common case: the identity's own
 * index, one 32-byte compare, no allocation. */

/* The index in t of the class an identity was made under, or -1 if t has no
 * class of that name with that trust digest. Pure; called under the store's
 * locks, so no allocation. */
static int class_in_ctx(const tls_ctx_t *t, const tls_identity_t *id)
{
    if (!id)
        return -1;
    size_t i = (size_t)id->class_idx;
    if (id->class_idx >= 0 && i < t->nclasses &&
        memcmp(t->digest[i], id->class_digest, TLS_CLASS_DIGEST_LEN) == 0)
        return id->class_idx;   /* the common case */
    for (size_t c = 0; c < t->nclasses; c++)
        if (memcmp(t->digest[c], id->class_digest, TLS_CLASS_DIGEST_LEN) == 0 &&
            strcmp(t->cfg->tls.classes[c].name, id->class_name) == 0)
            return (int)c;
    return -1;
}

static int sess_accept(const SSL_SESSION *sess, void *arg)
{
    return class_in_ctx(arg, SSL_SESSION_get_ex_data(sess, sess_idx));
}

static int vcache_accept(const tls_identity_t *id, void *arg)
{
    return class_in_ctx(arg, id);
}

static tls_ctx_t *ctx_of(SSL_CTX *ctx)
{
    return SSL_CTX_get_ex_data(ctx, ssl_ctx_idx);
}

/* A copy of sess whose identity carries class index cls (the caller's
 * reference), or NULL when out of memory. */
static SSL_SESSION *rebased_session(SSL_SESSION *sess, int cls)
{
    tls_identity_t *rid = tls_identity_rebase(SSL_SESSION_get_ex_data(sess, sess_idx), cls);
    SSL_SESSION *dup = rid ? SSL_SESSION_dup(sess) : NULL;
    if (!dup) {
        tls_identity_release(rid);
        return NULL;
    }
    tls_identity_release(SSL_SESSION_get_ex_data(dup, sess_idx));   /* sess_dup shared it */
    SSL_SESSION_set_ex_data(dup, sess_idx, rid);
    return dup;
}

/* OpenSSL's session lookup (TLS 1.2 session ID, TLS 1.3 stateful PSK). The
 * store took a reference under its lock and hands it over (*copy = 0): with
 * *copy = 1 libssl would take its own only after the lock was dropped, when
 * another thread may have freed the session. NULL: no resumption, a full
 * handshake (never an alert: a changed trust is not the client's fault). */
static SSL_SESSION *sess_get_cb(SSL *ssl, const unsigned char *sid, int len, int *copy)
{
    tls_ctx_t *t = ctx_of(SSL_get_SSL_CTX(ssl));
    *copy = 0;
    if (!t || len <= 0)
        return NULL;
    int cls;
    SSL_SESSION *sess = tls_store_sess_get(t->store, sid, (size_t)len, t->sess_life_s,
                                           sess_accept, t, &cls);
    if (!sess)
        return NULL;
    const tls_identity_t *id = SSL_SESSION_get_ex_data(sess, sess_idx);
    if (id->class_idx == cls)
        return sess;
    SSL_SESSION *dup = rebased_session(sess, cls);
    if (dup)
        tls_store_sess_replace(t->store, sess, dup);   /* lost a race: another copy is there */
    SSL_SESSION_free(sess);
    return dup;
}

/* A new session (a full TLS 1.2 handshake, each TLS 1.3 ticket): libssl
 * passes a reference, which the store keeps (1) or libssl drops (0). */
static int sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    tls_ctx_t *t = ctx_of(SSL_get_SSL_CTX(ssl));
    if (!t || !SSL_SESSION_get_ex_data(sess, sess_idx))
        return 0;   /* never resumable without the identity it stands for */
    return tls_store_sess_add(t->store, sess);
}

/* libssl forgets a session: a fatal alert on its connection, an expired
 * session it was offered, SSL_CTX_remove_session (a revoked identity). */
static void sess_remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    tls_ctx_t *t = ctx_of(ctx);
    unsigned int len = 0;
    const unsigned char *sid = SSL_SESSION_get_id(sess, &len);
    if (t && sid)
        tls_store_sess_remove(t->store, sid, len);
}

/* ---- the verify cache ----
 *
 * A hit stands in for X509_verify_cert, so an entry must mean exactly "this
 * chain, with this store and these parameters, verified and was not revoked
 * when it was inserted", and stop meaning it when that could change:
 *  - the key is the SHA-256 of every certificate the client presented, so a
 *    different key, signature or intermediate is a different entry;
 *  - only a chain that X509_verify_cert accepted, whose identity was built and
 *    whose revocation check passed (verify_cb refuses it otherwise) goes in;
 *  - an entry lives until the earliest notAfter of the verified chain, or
 *    tls.verify_cache.lifetime after insertion if sooner;
 *  - revocation is checked on every hit as on a full verification, and a
 *    revoked hit is evicted;
 *  - an entry is used only under a class whose trust digest (bundle DER,
 *    verification parameters, identity configuration) is the one it was made
 *    under (class_in_ctx), and nothing sets per-connection verification
 *    parameters: a changed trust is a miss, verified again, whose result
 *    replaces the entry. */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int digest_der(EVP_MD_CTX *md, X509 *c)
{
    unsigned char *der = NULL;
    int n = i2d_X509(c, &der);
    int ok = n > 0 && EVP_DigestUpdate(md, der, (size_t)n);
    OPENSSL_free(der);
    return ok;
}

/* SHA-256 over the DER of the presented chain, leaf first, then the other
 * certificates in the order the client sent them. DER is self-delimiting, so
 * the concatenation is unambiguous. Boolean: 1 when key is set; on 0 the
 * handshake simply takes the full verification. */
static int chain_key(tls_ctx_t *t, X509_STORE_CTX *x, unsigned char *key)
{
    X509 *leaf = X509_STORE_CTX_get0_cert(x);
    STACK_OF(X509) *sk = X509_STORE_CTX_get0_untrusted(x);
    /* libssl passes the whole peer chain as the untrusted set, leaf first */
    int first = sk_X509_num(sk) > 0 && sk_X509_value(sk, 0) == leaf;
    unsigned int len = 0;
    ERR_set_mark();
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = leaf && md && EVP_DigestInit_ex(md, t->sha256, NULL) && digest_der(md, leaf);
    for (int i = first; ok && i < sk_X509_num(sk); i++)
        ok = digest_der(md, sk_X509_value(sk, i));
    ok = ok && EVP_DigestFinal_ex(md, key, &len) && len == TLS_VCACHE_KEY_LEN;
    EVP_MD_CTX_free(md);
    ERR_pop_to_mark();   /* a failure here is a miss, not a handshake error */
    return ok;
}

/* The earliest notAfter of a verified chain, in ms; 0 if one is unreadable. */
static uint64_t chain_not_after_ms(STACK_OF(X509) *chain)
{
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        struct tm tm;
        if (!ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(chain, i)), &tm))
            return 0;
        time_t na = timegm(&tm);
        if (na <= 0)
            return 0;
        if ((uint64_t)na * 1000 < min)
            min = (uint64_t)na * 1000;
    }
    return sk_X509_num(chain) > 0 ? min : 0;
}

/* Installed (SSL_CTX_set_cert_verify_callback) in place of libssl's call to
 * X509_verify_cert when the cache is enabled. Boolean, as libssl expects. */
static int cert_verify_cb(X509_STORE_CTX *x, void *arg)
{
    tls_ctx_t *t = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    unsigned char key[TLS_VCACHE_KEY_LEN];
    int keyed = chain_key(t, x, key);
    tls_vcache_t *vc = tls_store_vcache(t->store);
    if (keyed) {
        int cls;
        tls_identity_t *id = tls_vcache_lookup_if(vc, key, now_ms(),
                                                  t->cfg->tls.verify_cache_lifetime_ms,
                                                  vcache_accept, t, &cls);
        if (id && id->class_idx != cls) {
            /* made under another context with this class at another index */
            tls_identity_t *rid = tls_identity_rebase(id, cls);
            if (rid)
                tls_vcache_replace(vc, key, id, rid);
            tls_identity_release(id);
            id = rid;   /* NULL (out of memory): the full verification below */
        }
        int xerr;
        const char *why = id ? leaf_refusal(X509_STORE_CTX_get0_cert(x), &xerr) : NULL;
        if (why) {
            /* never stored (verify_cb refuses it), but a hit is refused as
             * a full verification would be */
            tls_identity_release(id);
            X509_STORE_CTX_set_error(x, xerr);
            set_fail(ssl, why, 0, PC_TLSF_OTHER);
            return 0;
        }
        if (id) {
            /* libssl keeps no verified chain for this handshake (nothing here
             * reads one); the session keeps the peer certificate as usual */
            SSL_set_ex_data(ssl, ssl_cached_idx, t);
            int rev;
            if (attach_identity(t, ssl, x, id, &rev)) {
                X509_STORE_CTX_set_error(x, X509_V_OK);
                return 1;
            }
            if (rev == TLS_REV_REVOKED)
                tls_vcache_remove(vc, key);
            return 0;
        }
    }

    /* A miss: the full verification, verify_cb included. Whatever identity
     * the session holds after it is the one verify_cb attached. */
    SSL_SESSION *sess = SSL_get_session(ssl);
    if (sess) {
        tls_identity_release(SSL_SESSION_get_ex_data(sess, sess_idx));
        SSL_SESSION_set_ex_data(sess, sess_idx, NULL);
    }
    int ok = X509_verify_cert(x);
    if (ok <= 0)
        return 0;
    tls_identity_t *id = sess ? SSL_SESSION_get_ex_data(sess, sess_idx) : NULL;
    if (keyed && id) {
        uint64_t now = now_ms();
        uint64_t until = chain_not_after_ms(X509_STORE_CTX_get0_chain(x));
        if (until > now + t->cfg->tls.verify_cache_lifetime_ms)
            until = now + t->cfg->tls.verify_cache_lifetime_ms;
        tls_vcache_insert(vc, key, id, now, until);   /* refuses until <= now */
    }
    return 1;
}

int tls_ctx_vcache_stats(tls_ctx_t *t, tls_vcache_stats_t *st)
{
    return tls_store_vcache_stats(t->store, st);
}

void tls_ctx_vcache_flush(tls_ctx_t *t)
{
    tls_vcache_flush(tls_store_vcache(t->store));
}

void tls_ctx_set_mirror(tls_ctx_t *t, pol_mirror_t *m)
{
    t->mirror = m;
}

const char *tls_identity_revoked_by(tls_ctx_t *t, const tls_identity_t *id)
{
    if (!t->mirror)
        return NULL;
    const pol_rev_key_t own[2] = {id->rev_serial, id->rev_fp};
    if (pol_mirror_contains_any(t->mirror, own, 2))
        return "certificate";
    if (pol_mirror_contains_any(t->mirror, &id->rev_device, 1))   /* skipped when all-zero */
        return "device id";
    if (id->nrev_chain && pol_mirror_contains_any(t->mirror, id->rev_chain, id->nrev_chain))
        return "issuing CA";
    return NULL;
}

int tls_identity_revoked(tls_ctx_t *t, const tls_identity_t *id)
{
    return tls_identity_revoked_by(t, id) != NULL;
}

int tls_identity_revocation(tls_ctx_t *t, const tls_identity_t *id)
{
    if (!t->mirror)
        return TLS_REV_OK;
    if (!pol_mirror_usable(t->mirror))
        return TLS_REV_UNKNOWN;
    return tls_identity_revoked(t, id) ? TLS_REV_REVOKED : TLS_REV_OK;
}

tls_identity_t *tls_identity_get(SSL *ssl)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    tls_identity_t *id = sess ? SSL_SESSION_get_ex_data(sess, sess_idx) : NULL;
    if (id)
        __atomic_add_fetch(&id->refs, 1, __ATOMIC_ACQ_REL);
    return id;
}

/* ---- context ---- */

static STACK_OF(X509) *load_bundle(const char *file)
{
    BIO *b = BIO_new_file(file, "r");
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    if (!b || !sk)
        goto fail;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto fail;
        }
    ERR_clear_error();   /* end of file */
    BIO_free(b);
    if (sk_X509_num(sk) == 0)
        goto fail_sk;
    return sk;
fail:
    BIO_free(b);
fail_sk:
    sk_X509_pop_free(sk, X509_free);
    return NULL;
}

/* The verification parameters every class is verified with. */
#define VERIFY_PURPOSE X509_PURPOSE_SSL_CLIENT   /* clientAuth EKU when present */
#define VERIFY_DEPTH 8

static int digest_u32(EVP_MD_CTX *md, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    return EVP_DigestUpdate(md, b, sizeof b);
}

/* Length-prefixed, so no two sequences of fields hash the same input. */
static int digest_str(EVP_MD_CTX *md, const char *str)
{
    size_t n = str ? strlen(str) : 0;
    return digest_u32(md, str ? 1 : 0) && digest_u32(md, (uint32_t)n) &&
           EVP_DigestUpdate(md, str ? str : "", n);
}

/* The trust digest of class c (tls_ctx_class_digest). Boolean. */
static int class_digest(tls_ctx_t *t, size_t c, unsigned char *out)
{
    const cfg_t *cfg = t->cfg;
    STACK_OF(X509) *cas = t->class_cas[c];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = md && EVP_DigestInit_ex(md, t->sha256, NULL) &&
             digest_str(md, cfg->tls.classes[c].name) &&
             digest_u32(md, (uint32_t)sk_X509_num(cas));
    for (int k = 0; ok && k < sk_X509_num(cas); k++) {
        unsigned char *der = NULL;
        int n = i2d_X509(sk_X509_value(cas, k), &der);
        ok = n > 0 && digest_u32(md, (uint32_t)n) && EVP_DigestUpdate(md, der, (size_t)n);
        OPENSSL_free(der);
    }
    ok = ok && digest_u32(md, VERIFY_PURPOSE) && digest_u32(md, VERIFY_DEPTH) &&
         digest_u32(md, (uint32_t)cfg->tls.min_version) &&
         digest_u32(md, (uint32_t)cfg->identity.device_id_source) &&
         digest_str(md, cfg->identity.device_id_prefix);
    /* the OIDs the integrity level is read from shape the identity too */
    for (int i = 0; ok && i < CFG_INTEGRITY_LEVELS; i++)
        ok = digest_str(md, cfg->identity.integrity_oids[i].text);
    ok = ok && digest_u32(md, c < 32 && (cfg->identity.integrity_classes & (1u << c)) ? 1 : 0);
    ok = ok && EVP_DigestFinal_ex(md, out, &len) && len == TLS_CLASS_DIGEST_LEN;
    EVP_MD_CTX_free(md);
    return ok;
}

const unsigned char *tls_ctx_class_digest(const tls_ctx_t *t, size_t idx)
{
    return idx < t->nclasses ? t->digest[idx] : NULL;
}

static void ossl_err(char *err, size_t errlen, const char *what, const char *arg)
{
    unsigned long e = ERR_peek_last_error();
    snprintf(err, errlen, "%s %s: %s", what, arg ? arg : "",
             e ? ERR_reason_error_string(e) : "failed");
    ERR_clear_error();
}

/* Sessions go to the store (new/get/remove callbacks), not to libssl's
 * per-SSL_CTX cache, which would die with this context. */
static void sessions_setup(tls_ctx_t *t)
{
    SSL_CTX *ctx = t->ssl;
    const cfg_tls_t *c = &t->cfg->tls;
    static const unsigned char sid_ctx[] = "portcullis";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    t->sess_life_s = (long)(c->session_lifetime_ms / 1000);
    SSL_CTX_set_timeout(ctx, t->sess_life_s);
    if (!c->session_cache_size) {
        /* no session id in the ServerHello, no TLS 1.3 ticket */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 0);
        return;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, sess_new_cb);
    SSL_CTX_sess_set_get_cb(ctx, sess_get_cb);
    SSL_CTX_sess_set_remove_cb(ctx, sess_remove_cb);
    SSL_CTX_set_num_tickets(ctx, 1);
}

tls_ctx_t *tls_ctx_new(const cfg_t *cfg, tls_store_t *store, char *err, size_t errlen)
{
    pthread_once(&idx_once, init_indexes);
    tls_ctx_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cfg = cfg;
    t->store = store;
    if (!store) {
        t->own_store = 1;
        if (!(t->store = tls_store_new()) || tls_store_configure(t->store, cfg) < 0) {
            snprintf(err, errlen, "out of memory for the TLS session and verify caches");
            goto fail;
        }
    }
    t->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    if (!t->sha256) {
        ossl_err(err, errlen, "SHA2-256", NULL);
        goto fail;
    }
    SSL_CTX *ctx = t->ssl = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ossl_err(err, errlen, "SSL_CTX_new", NULL);
        goto fail;
    }
    SSL_CTX_set_ex_data(ctx, ssl_ctx_idx, t);
    SSL_CTX_set_min_proto_version(ctx, cfg->tls.min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION |
                                 /* a client closing without close_notify is an
                                  * ordinary end (HTTP framing catches truncation),
                                  * not an error that would evict its session */
                                 SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 /* server-side sessions for TLS 1.2 and stateful
                                  * TLS 1.3 tickets: no serialized session, no
                                  * certificate re-decoding on resumption */
                                 SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read whole socket buffers, not a record header and then its body: a
     * TLS 1.2 client flight is five records, and a request is one record
     * that otherwise costs two read calls. The connection loop reads until
     * SSL_ERROR_WANT_READ, so nothing buffered inside TLS waits for a
     * socket event that would never come. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (!SSL_CTX_set_cipher_list(ctx, cfg->tls.ciphers)) {
        ossl_err(err, errlen, "tls.ciphers", cfg->tls.ciphers);
        goto fail;
    }
    if (!SSL_CTX_set_ciphersuites(ctx, cfg->tls.ciphersuites)) {
        ossl_err(err, errlen, "tls.ciphersuites", cfg->tls.ciphersuites);
        goto fail;
    }
    if (!SSL_CTX_set1_groups_list(ctx, cfg->tls.groups)) {
        ossl_err(err, errlen, "tls.groups", cfg->tls.groups);
        goto fail;
    }
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        const cfg_cert_t *c = &cfg->tls.certs[i];
        if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1) {
            ossl_err(err, errlen, "certificate", c->cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            ossl_err(err, errlen, "key", c->key_file);
            goto fail;
        }
    }

    /* Trust: one store holding every class's CAs; the class is decided from
     * the verified chain in verify_cb. */
    X509_STORE *trust = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    t->nclasses = cfg->tls.nclasses;
    t->class_cas = calloc(t->nclasses, sizeof(*t->class_cas));
    t->digest = calloc(t->nclasses ? t->nclasses : 1, sizeof(*t->digest));
    if (!names || !t->class_cas || !t->digest) {
        sk_X509_NAME_free(names);
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t c = 0; c < t->nclasses; c++) {
        const char *f = cfg->tls.classes[c].ca_file;
        t->class_cas[c] = load_bundle(f);
        if (!t->class_cas[c]) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            ossl_err(err, errlen, "class CA bundle", f);
            goto fail;
        }
        if (!class_digest(t, c, t->digest[c])) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            ossl_err(err, errlen, "class trust digest of", cfg->tls.classes[c].name);
            goto fail;
        }
        for (int k = 0; k < sk_X509_num(t->class_cas[c]); k++) {
            X509 *ca = sk_X509_value(t->class_cas[c], k);
            X509_STORE_add_cert(trust, ca);
            X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(ca));
            if (nm && !sk_X509_NAME_push(names, nm))
                X509_NAME_free(nm);
        }
    }
    ERR_clear_error();
    SSL_CTX_set_client_CA_list(ctx, names);
    X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(vp, VERIFY_PURPOSE);
    X509_VERIFY_PARAM_set_depth(vp, VERIFY_DEPTH);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_tlsext_servername_callback(ctx, resume_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    if (cfg->tls.verify_cache_size)
        SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, t);
    sessions_setup(t);
    return t;
fail:
    tls_ctx_free(t);
    return NULL;
}

void tls_ctx_free(tls_ctx_t *t)
{
    if (!t)
        return;
    /* A connection still holding the SSL_CTX past this point (against the
     * rule) must not reach a freed context through a session callback. */
    if (t->ssl)
        SSL_CTX_set_ex_data(t->ssl, ssl_ctx_idx, NULL);
    SSL_CTX_free(t->ssl);   /* the sessions are the store's: they stay */
    if (t->own_store)
        tls_store_free(t->store);
    EVP_MD_free(t->sha256);
    for (size_t c = 0; t->class_cas && c < t->nclasses; c++)
        sk_X509_pop_free(t->class_cas[c], X509_free);
    free(t->class_cas);
    free(t->digest);
    free(t);
}

SSL_CTX *tls_ctx_ssl(tls_ctx_t *t)
{
    return t->ssl;
}

tls_store_t *tls_ctx_store(tls_ctx_t *t)
{
    return t->store;
}
