/* appattest.c: Apple App Attest attestation and assertion objects, decoded
 * with libcbor and checked with OpenSSL. Contracts: appattest.h. */
#include "appattest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define NONCE_OID "1.2.840.113635.100.8.2"

static const unsigned char aaguid_prod[16] = {'a', 'p', 'p', 'a', 't', 't', 'e', 's', 't',
                                              0,   0,   0,   0,   0,   0,   0};
static const unsigned char aaguid_dev[16] = {'a', 'p', 'p', 'a', 't', 't', 'e', 's',
                                             't', 'd', 'e', 'v', 'e', 'l', 'o', 'p'};

/* ---------------------------------------------------------------- base64 */

/* A base64 character's value; *alpha is the alphabet seen so far (0 none
 * yet, 1 standard "+/", 2 url "-_") and is set by the first of its
 * characters. -1: not base64, or the other alphabet's character. */
static int b64_val(unsigned char ch, int *alpha)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    int a = ch == '+' || ch == '/' ? 1 : ch == '-' || ch == '_' ? 2 : 0;
    if (!a || (*alpha && *alpha != a))
        return -1;
    *alpha = a;
    return ch == '+' || ch == '-' ? 62 : 63;
}

long iss_aa_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    size_t pad = 0;
    while (pad < len && pad < 3 && s[len - 1 - pad] == '=')
        pad++;
    size_t d = len - pad;   /* data characters */
    if (d == 0 || d % 4 == 1 || (pad && d % 4 + pad != 4))
        return -1;          /* padding: none, or exactly what completes the last group */
    size_t want = d / 4 * 3 + (d % 4 ? d % 4 - 1 : 0), o = 0;
    if (want > cap)
        return -1;
    uint32_t acc = 0;
    int bits = 0, alpha = 0;
    for (size_t i = 0; i < d; i++) {
        int v = b64_val((unsigned char)s[i], &alpha);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? (long)o : -1;   /* the unused trailing bits must be zero */
}

/* Standard base64 with padding, malloc'ed and NUL-terminated, or NULL. */
static char *b64_encode(const unsigned char *in, size_t len)
{
    if (len > (size_t)INT32_MAX / 2)
        return NULL;
    char *o = malloc((len + 2) / 3 * 4 + 1);
    if (o)
        EVP_EncodeBlock((unsigned char *)o, in, (int)len);
    return o;
}

/* ---------------------------------------------------------------- CBOR walk */

/* A definite-length byte string item, or NULL. */
static int bytes_of(const cbor_item_t *it, const unsigned char **p, size_t *n)
{
    if (!it || !cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it))
        return -1;
    *p = cbor_bytestring_handle(it);
    *n = cbor_bytestring_length(it);
    if (!*p && *n == 0)
        *p = (const unsigned char *)"";
    return 0;
}

/* Boolean: it is the definite text string name. */
static int text_is(const cbor_item_t *it, const char *name)
{
    size_t n = strlen(name);
    return cbor_isa_string(it) && cbor_string_is_definite(it) && cbor_string_length(it) == n &&
           (n == 0 || memcmp(cbor_string_handle(it), name, n) == 0);
}

/* The values of the text keys names[0..n) of a definite map into vals
 * (NULL: absent). Other keys are ignored; a named key twice is refused.
 * Syscall-like. */
static int map_get(const cbor_item_t *map, const char *const *names, size_t n, cbor_item_t **vals)
{
    if (!map || !cbor_isa_map(map) || !cbor_map_is_definite(map))
        return -1;
    for (size_t k = 0; k < n; k++)
        vals[k] = NULL;
    struct cbor_pair *pairs = cbor_map_handle(map);
    size_t cnt = cbor_map_size(map);
    for (size_t i = 0; i < cnt; i++)
        for (size_t k = 0; k < n; k++)
            if (text_is(pairs[i].key, names[k])) {
                if (vals[k])
                    return -1;
                vals[k] = pairs[i].value;
            }
    return 0;
}

/* ---- sizes before decoding: libcbor's cbor_load allocates a definite
 * array or map for the count its header declares, so a few bytes could ask
 * for gigabytes. The first item's headers are walked with libcbor's
 * streaming decoder first: every declared count must fit in the bytes left
 * (each element takes at least one), and indefinite lengths are refused
 * (App Attest objects use none). */

typedef struct {
    size_t left;        /* bytes after the header being decoded */
    uint64_t children;  /* items the header opens */
    int bad;
} scan_t;

static void scan_array(void *ctx, size_t n)
{
    scan_t *c = ctx;
    if (n > c->left)
        c->bad = 1;
    c->children = n;
}

static void scan_map(void *ctx, size_t n)
{
    scan_t *c = ctx;
    if (n > c->left / 2)
        c->bad = 1;
    c->children = 2 * n;
}

static void scan_tag(void *ctx, uint64_t t)
{
    (void)t;
    ((scan_t *)ctx)->children = 1;
}

static void scan_indef(void *ctx)
{
    ((scan_t *)ctx)->bad = 1;
}

/* The length of the first CBOR item of buf, or 0 when it is malformed,
 * truncated, indefinite or declares more elements than buf can hold. */
static size_t item_len(const unsigned char *buf, size_t len)
{
    struct cbor_callbacks cb = cbor_empty_callbacks;
    cb.array_start = scan_array;
    cb.map_start = scan_map;
    cb.tag = scan_tag;
    cb.indef_array_start = cb.indef_map_start = cb.byte_string_start = cb.string_start = scan_indef;
    cb.indef_break = scan_indef;
    size_t off = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        scan_t c = {.left = len - off};
        struct cbor_decoder_result r = cbor_stream_decode(buf + off, len - off, &cb, &c);
        if (r.status != CBOR_DECODER_FINISHED || c.bad || r.read == 0)
            return 0;
        off += r.read;
        pending = pending - 1 + c.children;
        if (pending > len - off)
            return 0;
    }
    return off;
}

/* One CBOR item filling buf exactly, or NULL. */
static cbor_item_t *load_one(const unsigned char *buf, size_t len)
{
    struct cbor_load_result res;
    if (len == 0 || item_len(buf, len) != len)
        return NULL;
    cbor_item_t *it = cbor_load(buf, len, &res);
    if (it && (res.error.code != CBOR_ERR_NONE || res.read != len)) {
        cbor_decref(&it);
        return NULL;
    }
    return it;
}

/* ---------------------------------------------------------------- authData */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int iss_aa_authdata_parse(const unsigned char *buf, size_t len, int need_cred,
                          iss_aa_authdata_t *out, const char **err)
{
    memset(out, 0, sizeof(*out));
    if (!buf || len < 37) {
        *err = "authenticator data shorter than 37 bytes";
        return -1;
    }
    out->rp_id_hash = buf;
    out->flags = buf[32];
    out->counter = be32(buf + 33);
    size_t off = 37;
    if (!(out->flags & ISS_AA_FLAG_AT)) {
        if (need_cred) {
            memset(out, 0, sizeof(*out));
            *err = "authenticator data has no attested credential data";
            return -1;
        }
        out->trailing = len - off;
        return 0;
    }
    if (len - off < 18) {
        memset(out, 0, sizeof(*out));
        *err = "attested credential data truncated";
        return -1;
    }
    out->aaguid = buf + off;
    size_t idlen = (size_t)buf[off + 16] << 8 | buf[off + 17];
    off += 18;
    if (idlen == 0 || idlen > ISS_AA_MAX_CRED_ID || len - off < idlen + 1) {
        memset(out, 0, sizeof(*out));
        *err = "credential id length out of range";
        return -1;
    }
    out->cred_id = buf + off;
    out->cred_id_len = idlen;
    off += idlen;
    size_t klen = item_len(buf + off, len - off);
    cbor_item_t *key = klen ? load_one(buf + off, klen) : NULL;
    int ok = key && cbor_isa_map(key);
    if (key)
        cbor_decref(&key);
    if (!ok) {
        memset(out, 0, sizeof(*out));
        *err = "credential public key is not a CBOR map";
        return -1;
    }
    out->cose_key = buf + off;
    out->cose_key_len = klen;
    out->trailing = len - off - klen;   /* extensions, or what Apple adds later */
    out->has_cred = 1;
    return 0;
}

/* ---------------------------------------------------------------- objects */

void iss_aa_attestation_clear(iss_aa_attestation_t *a)
{
    if (a->cbor_) {
        cbor_item_t *it = a->cbor_;
        cbor_decref(&it);
    }
    memset(a, 0, sizeof(*a));
}

void iss_aa_assertion_clear(iss_aa_assertion_t *a)
{
    if (a->cbor_) {
        cbor_item_t *it = a->cbor_;
        cbor_decref(&it);
    }
    memset(a, 0, sizeof(*a));
}

static int att_stmt(iss_aa_attestation_t *out, const cbor_item_t *stmt, const char **err)
{
    static const char *const names[] = {"x5c", "receipt"};
    cbor_item_t *v[2];
    if (map_get(stmt, names, 2, v) < 0) {
        *err = "attStmt is not a map with one x5c and one receipt";
        return -1;
    }
    if (!v[0] || !cbor_isa_array(v[0]) || !cbor_array_is_definite(v[0]) ||
        cbor_array_size(v[0]) < 2 || cbor_array_size(v[0]) > ISS_AA_MAX_CERTS) {
        *err = "attStmt.x5c is not an array of 2 to 4 certificates";
        return -1;
    }
    cbor_item_t **certs = cbor_array_handle(v[0]);
    out->nx5c = cbor_array_size(v[0]);
    for (size_t i = 0; i < out->nx5c; i++)
        if (bytes_of(certs[i], &out->x5c[i], &out->x5c_len[i]) < 0 || out->x5c_len[i] == 0) {
            *err = "attStmt.x5c holds an entry that is not a byte string";
            return -1;
        }
    if (bytes_of(v[1], &out->receipt, &out->receipt_len) < 0) {
        *err = "attStmt.receipt is missing or not a byte string";
        return -1;
    }
    if (out->receipt_len > ISS_AA_MAX_RECEIPT) {
        *err = "attStmt.receipt is larger than 16384 bytes";
        return -1;
    }
    return 0;
}

int iss_aa_attestation_parse(const unsigned char *buf, size_t len, iss_aa_attestation_t *out,
                             const char **err)
{
    static const char *const names[] = {"fmt", "attStmt", "authData"};
    cbor_item_t *v[3];
    memset(out, 0, sizeof(*out));
    if (len == 0 || len > ISS_AA_MAX_OBJECT) {
        *err = "attestation object empty or larger than 32768 bytes";
        return -1;
    }
    cbor_item_t *root = load_one(buf, len);
    if (!root) {
        *err = "attestation object is not one well-formed CBOR item";
        return -1;
    }
    out->cbor_ = root;
    if (map_get(root, names, 3, v) < 0) {
        *err = "attestation object is not a map with one fmt, attStmt and authData";
        goto fail;
    }
    if (!v[0] || !text_is(v[0], "apple-appattest")) {
        *err = "attestation fmt is not apple-appattest";
        goto fail;
    }
    if (!v[1] || att_stmt(out, v[1], err) < 0) {
        if (!v[1])
            *err = "attestation object has no attStmt";
        goto fail;
    }
    if (bytes_of(v[2], &out->auth_data, &out->auth_data_len) < 0) {
        *err = "attestation authData is missing or not a byte string";
        goto fail;
    }
    if (iss_aa_authdata_parse(out->auth_data, out->auth_data_len, 1, &out->ad, err) < 0)
        goto fail;
    return 0;
fail:
    iss_aa_attestation_clear(out);
    return -1;
}

int iss_aa_assertion_parse(const unsigned char *buf, size_t len, iss_aa_assertion_t *out,
                           const char **err)
{
    static const char *const names[] = {"signature", "authenticatorData"};
    cbor_item_t *v[2];
    memset(out, 0, sizeof(*out));
    if (len == 0 || len > ISS_AA_MAX_ASSERTION) {
        *err = "assertion object empty or larger than 4096 bytes";
        return -1;
    }
    cbor_item_t *root = load_one(buf, len);
    if (!root) {
        *err = "assertion object is not one well-formed CBOR item";
        return -1;
    }
    out->cbor_ = root;
    if (map_get(root, names, 2, v) < 0 || bytes_of(v[0], &out->signature, &out->signature_len) < 0 ||
        bytes_of(v[1], &out->auth_data, &out->auth_data_len) < 0 || out->signature_len == 0) {
        *err = "assertion is not a map with one signature and one authenticatorData byte string";
        goto fail;
    }
    if (iss_aa_authdata_parse(out->auth_data, out->auth_data_len, 0, &out->ad, err) < 0)
        goto fail;
    return 0;
fail:
    iss_aa_assertion_clear(out);
    return -1;
}

/* ---------------------------------------------------------------- checks */

void iss_aa_result_clear(iss_aa_result_t *r)
{
    free(r->state);
    memset(r, 0, sizeof(*r));
}

X509_STORE *iss_aa_roots_load(const char *path, char *err, size_t errlen)
{
    X509_STORE *st = X509_STORE_new();
    BIO *b = BIO_new_file(path, "r");
    X509 *x;
    int n = 0;
    while (st && b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        n += X509_STORE_add_cert(st, x) == 1;
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (!st || n == 0) {
        snprintf(err, errlen, "app_attest: \"%s\" holds no PEM root certificate", path);
        X509_STORE_free(st);
        return NULL;
    }
    return st;
}

/* SHA-256(a || b) into out. Syscall-like: on failure out is zeroed and
 * every caller treats the check as failed. */
static int sha256_2(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen,
                    unsigned char out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 32;
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(c, a, alen) == 1 &&
             (!blen || EVP_DigestUpdate(c, b, blen) == 1) && EVP_DigestFinal_ex(c, out, &n) == 1;
    EVP_MD_CTX_free(c);
    if (!ok)
        memset(out, 0, 32);
    return ok ? 0 : -1;
}

/* The 32 bytes of the nonce extension: SEQUENCE { [1] EXPLICIT OCTET
 * STRING }, other elements of the sequence ignored, exactly one [1].
 * Syscall-like. */
static int nonce_ext(X509 *leaf, unsigned char out[32])
{
    ASN1_OBJECT *oid = OBJ_txt2obj(NONCE_OID, 1);
    int idx = oid ? X509_get_ext_by_OBJ(leaf, oid, -1) : -1;
    int dup = idx >= 0 ? X509_get_ext_by_OBJ(leaf, oid, idx) : -1;
    ASN1_OBJECT_free(oid);
    if (idx < 0 || dup >= 0)
        return -1;
    ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(X509_get_ext(leaf, idx));
    const unsigned char *p = ASN1_STRING_get0_data(os), *end;
    long l, total = ASN1_STRING_length(os);
    int tag, cls, found = 0;
    if (ASN1_get_object(&p, &l, &tag, &cls, total) != V_ASN1_CONSTRUCTED || tag != V_ASN1_SEQUENCE ||
        cls != V_ASN1_UNIVERSAL || p + l != ASN1_STRING_get0_data(os) + total)
        return -1;
    end = p + l;
    while (p < end) {
        const unsigned char *q = p;
        int r = ASN1_get_object(&q, &l, &tag, &cls, end - p);
        if ((r & 0x80) || (r & 1))
            return -1;
        const unsigned char *next = q + l;
        if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 1) {
            long ol;
            const unsigned char *inner = q;
            if (found++ || r != V_ASN1_CONSTRUCTED ||
                ASN1_get_object(&inner, &ol, &tag, &cls, l) != 0 || tag != V_ASN1_OCTET_STRING ||
                cls != V_ASN1_UNIVERSAL || ol != 32 || inner + ol != next)
                return -1;
            memcpy(out, inner, 32);
        }
        p = next;
    }
    return found == 1 ? 0 : -1;
}

/* x5c into certificates: [0] the credential certificate. Syscall-like. */
static int decode_chain(const iss_aa_attestation_t *a, X509 **leaf, STACK_OF(X509) **rest)
{
    *rest = sk_X509_new_null();
    *leaf = NULL;
    for (size_t i = 0; *rest && i < a->nx5c; i++) {
        const unsigned char *p = a->x5c[i];
        X509 *x = d2i_X509(NULL, &p, (long)a->x5c_len[i]);
        if (!x || p != a->x5c[i] + a->x5c_len[i]) {
            X509_free(x);
            return -1;
        }
        if (i == 0)
            *leaf = x;
        else if (!sk_X509_push(*rest, x)) {
            X509_free(x);
            return -1;
        }
    }
    return *rest && *leaf ? 0 : -1;
}

static int chain_ok(X509_STORE *roots, X509 *leaf, STACK_OF(X509) *rest, int64_t now_ms)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = ctx && X509_STORE_CTX_init(ctx, roots, leaf, rest) == 1;
    if (ok) {
        X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_time(vp, (time_t)(now_ms / 1000));
        ok = X509_verify_cert(ctx) == 1;
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* The state JSON for an accepted key. Syscall-like. */
static int make_state(iss_aa_result_t *res, EVP_PKEY *pub, const unsigned char *receipt,
                      size_t receipt_len)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pub, &der);
    char *spki = n > 0 ? b64_encode(der, (size_t)n) : NULL;
    char *rc = b64_encode(receipt, receipt_len);
    char *kid = b64_encode(res->key_id, 32);
    json_t *o = spki && rc && kid ? json_pack("{s:s,s:I,s:s,s:s,s:s,s:s}", "public_key", spki,
                                              "counter", (json_int_t)res->counter, "receipt", rc,
                                              "app_id", res->app_id, "key_id", kid, "environment",
                                              res->development ? "development" : "production")
                                  : NULL;
    if (n > 0)
        sha256_2(der, (size_t)n, NULL, 0, res->spki_sha256);
    res->state = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    OPENSSL_free(der);
    free(spki);
    free(rc);
    free(kid);
    return res->state ? 0 : -1;
}

/* The key checks: EC P-256, SHA-256(uncompressed point) = key id =
 * credentialId. PC_E_NONE or the refusal. */
static enum pc_err key_checks(const iss_aa_attestation_t *a, X509 *leaf, const unsigned char *key_id,
                              size_t key_id_len, iss_aa_result_t *res, const char **msg)
{
    const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(leaf);
    EVP_PKEY *pub = X509_get0_pubkey(leaf);
    char group[32] = "";
    size_t gl;
    if (!pub || EVP_PKEY_get_id(pub) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(pub, group, sizeof(group), &gl) != 1 ||
        strcmp(group, "prime256v1") != 0 || !bits || ASN1_STRING_length(bits) != 65 ||
        ASN1_STRING_get0_data(bits)[0] != 0x04) {
        *msg = "credential certificate key is not an uncompressed EC P-256 key";
        return PC_E_ATTESTATION_FAILED;
    }
    if (sha256_2(ASN1_STRING_get0_data(bits), 65, NULL, 0, res->key_id) < 0 || key_id_len != 32 ||
        CRYPTO_memcmp(res->key_id, key_id, 32) != 0) {
        *msg = "key_id is not the SHA-256 of the credential public key";
        return PC_E_ATTESTATION_FAILED;
    }
    if (a->ad.cred_id_len != 32 || CRYPTO_memcmp(a->ad.cred_id, res->key_id, 32) != 0) {
        *msg = "credentialId is not the key id";
        return PC_E_ATTESTATION_FAILED;
    }
    return PC_E_NONE;
}

/* rpIdHash against the configured app ids: the index, or -1. */
static int app_match(const cfg_app_attest_t *cfg, const unsigned char *rp_id_hash)
{
    for (size_t i = 0; i < cfg->napp_ids; i++) {
        unsigned char h[32];
        if (sha256_2((const unsigned char *)cfg->app_ids[i], strlen(cfg->app_ids[i]), NULL, 0, h) == 0 &&
            CRYPTO_memcmp(h, rp_id_hash, 32) == 0)
            return (int)i;
    }
    return -1;
}

static enum pc_err authdata_checks(const cfg_app_attest_t *cfg, const iss_aa_attestation_t *a,
                                   iss_aa_result_t *res, const char **msg)
{
    int app = app_match(cfg, a->ad.rp_id_hash);
    if (app < 0) {
        *msg = "rpIdHash is not the hash of an allowed app id";
        return PC_E_ATTESTATION_FAILED;
    }
    snprintf(res->app_id, sizeof(res->app_id), "%s", cfg->app_ids[app]);
    if (a->ad.counter != 0) {
        *msg = "attestation counter is not 0";
        return PC_E_ATTESTATION_FAILED;
    }
    int prod = memcmp(a->ad.aaguid, aaguid_prod, 16) == 0;
    int dev = memcmp(a->ad.aaguid, aaguid_dev, 16) == 0;
    if (!prod && !dev) {
        *msg = "aaguid is neither the production nor the development App Attest value";
        return PC_E_ATTESTATION_FAILED;
    }
    if (prod && cfg->environment == CFG_AA_DEVELOPMENT) {
        *msg = "production aaguid, but environment is development";
        return PC_E_ATTESTATION_FAILED;
    }
    if (dev && cfg->environment == CFG_AA_PRODUCTION) {
        *msg = "development aaguid, but environment is production";
        return PC_E_ATTESTATION_FAILED;
    }
    res->development = dev;
    return PC_E_NONE;
}

enum pc_err iss_aa_verify_attestation(const cfg_app_attest_t *cfg, X509_STORE *roots,
                                      const unsigned char *obj, size_t len,
                                      const unsigned char cdh[32], const unsigned char *key_id,
                                      size_t key_id_len, int64_t now_ms, iss_aa_result_t *res,
                                      const char **msg)
{
    iss_aa_attestation_t a;
    X509 *leaf = NULL;
    STACK_OF(X509) *rest = NULL;
    unsigned char want[32], got[32];
    enum pc_err e = PC_E_ATTESTATION_FAILED;
    memset(res, 0, sizeof(*res));
    if (iss_aa_attestation_parse(obj, len, &a, msg) < 0)
        return PC_E_ATTESTATION_FAILED;
    if (decode_chain(&a, &leaf, &rest) < 0) {
        *msg = "x5c holds a malformed certificate";
    } else if (!chain_ok(roots, leaf, rest, now_ms)) {
        *msg = "x5c does not chain to the App Attest root at this time";
    } else if ((e = key_checks(&a, leaf, key_id, key_id_len, res, msg)) != PC_E_NONE) {
        /* msg set */
    } else if ((e = authdata_checks(cfg, &a, res, msg)) != PC_E_NONE) {
        /* msg set */
    } else {
        e = PC_E_KEY_NOT_BOUND;
        if (sha256_2(a.auth_data, a.auth_data_len, cdh, 32, want) < 0) {
            e = PC_E_OUT_OF_MEMORY;
            *msg = "cannot compute the attestation nonce";
        } else if (nonce_ext(leaf, got) < 0) {
            e = PC_E_ATTESTATION_FAILED;
            *msg = "credential certificate has no well-formed nonce extension";
        } else if (CRYPTO_memcmp(want, got, 32) != 0) {
            *msg = "the attestation nonce is not SHA-256(authData || challenge): made for another "
                   "challenge or key";
        } else if (make_state(res, X509_get0_pubkey(leaf), a.receipt, a.receipt_len) < 0) {
            e = PC_E_OUT_OF_MEMORY;
            *msg = "cannot build the App Attest state";
        } else if (strlen(res->state) > ISS_AA_STATE_MAX) {
            e = PC_E_ATTESTATION_FAILED;
            *msg = "the App Attest state would exceed its size limit";
        } else {
            e = PC_E_NONE;
        }
    }
    X509_free(leaf);
    sk_X509_pop_free(rest, X509_free);
    iss_aa_attestation_clear(&a);
    if (e != PC_E_NONE)
        iss_aa_result_clear(res);
    return e;
}

/* ---------------------------------------------------------------- assertion */

/* The stored key, app id and counter of a state. Syscall-like. */
static int state_read(json_t *st, EVP_PKEY **pub, iss_aa_result_t *res)
{
    const char *spki = json_string_value(json_object_get(st, "public_key"));
    const char *app = json_string_value(json_object_get(st, "app_id"));
    json_t *c = json_object_get(st, "counter");
    unsigned char der[512];
    long n = spki ? iss_aa_b64_decode(spki, strlen(spki), der, sizeof(der)) : -1;
    if (n <= 0 || !app || strlen(app) > CFG_AA_APP_ID_MAX || !json_is_integer(c) ||
        json_integer_value(c) < 0 || json_integer_value(c) > (json_int_t)UINT32_MAX)
        return -1;
    const unsigned char *p = der;
    *pub = d2i_PUBKEY(NULL, &p, n);
    if (!*pub || p != der + n || EVP_PKEY_get_id(*pub) != EVP_PKEY_EC) {
        EVP_PKEY_free(*pub);
        *pub = NULL;
        return -1;
    }
    snprintf(res->app_id, sizeof(res->app_id), "%s", app);
    const char *env = json_string_value(json_object_get(st, "environment"));
    res->development = env && !strcmp(env, "development");
    res->counter = (uint32_t)json_integer_value(c);
    sha256_2(der, (size_t)n, NULL, 0, res->spki_sha256);
    const char *kid = json_string_value(json_object_get(st, "key_id"));
    if (!kid || iss_aa_b64_decode(kid, strlen(kid), res->key_id, sizeof(res->key_id)) != 32 ||
        (strcmp(env ? env : "", "production") != 0 && !res->development)) {
        EVP_PKEY_free(*pub);
        *pub = NULL;
        return -1;
    }
    return 0;
}

static int sig_ok(EVP_PKEY *pub, const iss_aa_assertion_t *as, const unsigned char cdh[32])
{
    unsigned char nonce[32];
    if (sha256_2(as->auth_data, as->auth_data_len, cdh, 32, nonce) < 0)
        return 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, pub) == 1 &&
             EVP_DigestVerify(c, as->signature, as->signature_len, nonce, 32) == 1;
    EVP_MD_CTX_free(c);
    ERR_clear_error();
    return ok;
}

/* The stored app id and environment still allowed by the configuration
 * (an app id withdrawn, or production only now): 0, or -1 with *msg. */
static int still_allowed(const cfg_app_attest_t *cfg, const iss_aa_result_t *res, const char **msg)
{
    size_t i = 0;
    while (i < cfg->napp_ids && strcmp(cfg->app_ids[i], res->app_id) != 0)
        i++;
    if (i == cfg->napp_ids) {
        *msg = "the device's app id is no longer in app_ids";
        return -1;
    }
    if (res->development ? cfg->environment == CFG_AA_PRODUCTION : cfg->environment == CFG_AA_DEVELOPMENT) {
        *msg = res->development ? "the device was attested in development, but environment is production"
                                : "the device was attested in production, but environment is development";
        return -1;
    }
    return 0;
}

enum pc_err iss_aa_verify_assertion(const cfg_app_attest_t *cfg, const char *state,
                                    const unsigned char *obj, size_t len,
                                    const unsigned char cdh[32], iss_aa_result_t *res,
                                    const char **msg)
{
    iss_aa_assertion_t as;
    EVP_PKEY *pub = NULL;
    enum pc_err e = PC_E_ATTESTATION_FAILED;
    json_t *st = state && strlen(state) <= ISS_AA_STATE_MAX ? json_loads(state, JSON_REJECT_DUPLICATES, NULL) : NULL;
    memset(res, 0, sizeof(*res));
    memset(&as, 0, sizeof(as));
    if (!st || state_read(st, &pub, res) < 0) {
        json_decref(st);
        iss_aa_result_clear(res);
        *msg = "the stored App Attest state of this device cannot be read";
        return PC_E_INTERNAL;
    }
    unsigned char h[32];
    if (still_allowed(cfg, res, msg) < 0) {
        /* msg set */
    } else if (iss_aa_assertion_parse(obj, len, &as, msg) < 0) {
        /* msg set */
    } else if (sha256_2((const unsigned char *)res->app_id, strlen(res->app_id), NULL, 0, h) < 0 ||
               CRYPTO_memcmp(h, as.ad.rp_id_hash, 32) != 0) {
        *msg = "assertion rpIdHash is not the hash of the device's app id";
    } else if (!sig_ok(pub, &as, cdh)) {
        *msg = "assertion signature does not verify with the device's App Attest key";
    } else if (as.ad.counter <= res->counter) {
        *msg = "assertion counter not increasing";
    } else {
        res->counter = as.ad.counter;
        if (json_object_set_new(st, "counter", json_integer(res->counter)) < 0 ||
            !(res->state = json_dumps(st, JSON_COMPACT))) {
            e = PC_E_OUT_OF_MEMORY;
            *msg = "cannot build the App Attest state";
        } else if (strlen(res->state) > ISS_AA_STATE_MAX) {
            *msg = "the App Attest state would exceed its size limit";
        } else {
            e = PC_E_NONE;
        }
    }
    iss_aa_assertion_clear(&as);
    EVP_PKEY_free(pub);
    json_decref(st);
    if (e != PC_E_NONE)
        iss_aa_result_clear(res);
    return e;
}
