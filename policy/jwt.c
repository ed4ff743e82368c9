/* jwt.c: JWKS loading (jansson + OpenSSL 3.0 key import), the reloading key
 * store, and JWT verification with RFC 8705 certificate binding. */
#include "jwt.h"

#include "../base/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#define JWKS_MAX_FILE (1024 * 1024)
#define JWKS_MAX_KEYS 64

enum key_type { KT_EC = 0, KT_RSA, KT_OKP };

typedef struct {
    char *kid;          /* NULL if the key has none */
    int type;           /* enum key_type */
    EVP_PKEY *pkey;
} jwk_t;

/* The one JWS algorithm each key type verifies here. */
static const char *const type_alg[] = {"ES256", "RS256", "EdDSA"};

struct pol_jwks {
    int refs;           /* atomic */
    jwk_t *keys;
    size_t n;
};

struct pol_jwks_store {
    char *file;
    pthread_mutex_t mu;
    pol_jwks_t *cur;             /* under mu */
    struct stat seen;            /* version last tried (loaded or refused); under mu */
    int missing;                 /* the last refresh found no file; under mu */
};

/* ---------------------------------------------------------------- base64url */

long pol_b64url_decode(const char *s, size_t len, unsigned char *out, size_t outcap)
{
    if (len % 4 == 1 || len > (size_t)INT32_MAX - 4)
        return -1;
    size_t padded = (len + 3) / 4 * 4, pad = padded - len;
    if (outcap < padded / 4 * 3)
        return -1;
    if (len == 0)
        return 0;
    unsigned char *tmp = malloc(padded + 1);
    if (!tmp)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            free(tmp);
            return -1;
        }
        tmp[i] = (unsigned char)c;
    }
    for (size_t i = len; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    int n = EVP_DecodeBlock(out, tmp, (int)padded);
    free(tmp);
    if (n < 0 || (size_t)n < pad)
        return -1;
    return (long)((size_t)n - pad);
}

/* Decodes a base64url JSON member into exactly want bytes (want 0: 1..cap). */
static long b64_member(json_t *obj, const char *name, unsigned char *out, size_t cap,
                       size_t want)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len > (cap + 2) / 3 * 4)
        return -1;
    unsigned char *buf = malloc(len / 4 * 3 + 3);
    if (!buf)
        return -1;
    long n = pol_b64url_decode(s, len, buf, len / 4 * 3 + 3);
    if (n < 0 || (want && (size_t)n != want) || (!want && (n == 0 || (size_t)n > cap))) {
        free(buf);
        return -1;
    }
    memcpy(out, buf, (size_t)n);
    free(buf);
    return n;
}

/* ---------------------------------------------------------------- keys */

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *ec_key(json_t *k, const char **why)
{
    unsigned char pub[65], x[32], y[32];
    json_t *crv = json_object_get(k, "crv");
    if (!json_is_string(crv) || strcmp(json_string_value(crv), "P-256") != 0) {
        *why = "skip";
        return NULL;
    }
    if (b64_member(k, "x", x, sizeof x, 32) < 0 || b64_member(k, "y", y, sizeof y, 32) < 0) {
        *why = "EC key: \"x\" and \"y\" must be 32-byte base64url values";
        return NULL;
    }
    pub[0] = 0x04;
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                               "prime256v1", 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub) == 1)
        pkey = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (!pkey)
        *why = "EC key: the point is not on the P-256 curve";
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *k, const char **why)
{
    unsigned char *n = malloc(1024), e[16];
    long nl, el;
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    *why = "RSA key: \"n\" and \"e\" must be base64url values (n up to 8192 bits)";
    if (!n || (nl = b64_member(k, "n", n, 1024, 0)) < 0 ||
        (el = b64_member(k, "e", e, sizeof e, 0)) < 0)
        goto out;
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    if (!bn || !be)
        goto out;
    if (BN_num_bits(bn) < 2048) {
        *why = "RSA key: the modulus is shorter than 2048 bits";
        goto out;
    }
    if (!BN_is_odd(be) || BN_is_one(be)) {
        *why = "RSA key: invalid public exponent";
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
        pkey = from_params("RSA", bld);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    return pkey;
}

static EVP_PKEY *okp_key(json_t *k, const char **why)
{
    unsigned char x[32];
    json_t *crv = json_object_get(k, "crv");
    if (!json_is_string(crv) || strcmp(json_string_value(crv), "Ed25519") != 0) {
        *why = "skip";
        return NULL;
    }
    if (b64_member(k, "x", x, sizeof x, 32) < 0) {
        *why = "OKP key: \"x\" must be a 32-byte base64url value";
        return NULL;
    }
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, x, 32) == 1)
        pkey = from_params("ED25519", bld);
    OSSL_PARAM_BLD_free(bld);
    if (!pkey)
        *why = "OKP key: not a valid Ed25519 public key";
    return pkey;
}

/* The members that say what a key may be used for (RFC 7517 4.2-4.4), for a
 * key of type type. 1: usable for signature verification with the type's
 * algorithm; 0: not for that (skipped); -1: malformed (*why set). A key is
 * skipped when "use" is not "sig", when "key_ops" does not list "verify",
 * or when "alg" names another algorithm than the one this gateway verifies
 * with its type; "alg" naming one of our algorithms for another key type is
 * a contradiction in the key, an error. */
static int key_purpose(json_t *k, int type, const char **why)
{
    json_t *use = json_object_get(k, "use"), *ops = json_object_get(k, "key_ops");
    json_t *alg = json_object_get(k, "alg");
    if (use && !json_is_string(use)) {
        *why = "\"use\" must be a string";
        return -1;
    }
    if (use && strcmp(json_string_value(use), "sig") != 0)
        return 0;   /* encryption keys are never used for signatures */
    if (ops) {
        size_t i, j;
        json_t *op, *op2;
        int verify = 0;
        if (!json_is_array(ops)) {
            *why = "\"key_ops\" must be an array of strings";
            return -1;
        }
        json_array_foreach(ops, i, op) {
            if (!json_is_string(op)) {
                *why = "\"key_ops\" must be an array of strings";
                return -1;
            }
            json_array_foreach(ops, j, op2) {
                if (j < i && json_equal(op, op2)) {
                    *why = "\"key_ops\" lists an operation twice";
                    return -1;
                }
            }
            verify |= strcmp(json_string_value(op), "verify") == 0;
        }
        if (!verify)
            return 0;   /* e.g. ["encrypt"] or ["sign"] only */
    }
    if (alg) {
        if (!json_is_string(alg)) {
            *why = "\"alg\" must be a string";
            return -1;
        }
        const char *a = json_string_value(alg);
        if (strcmp(a, type_alg[type]) == 0)
            return 1;
        for (size_t t = 0; t < sizeof type_alg / sizeof type_alg[0]; t++) {
            if (strcmp(a, type_alg[t]) == 0) {
                *why = "\"alg\" names an algorithm for another key type";
                return -1;
            }
        }
        return 0;   /* an algorithm not verified here (RS384, PS256, ES384, ...) */
    }
    return 1;
}

static void jwks_free(pol_jwks_t *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->keys[i].kid);
        EVP_PKEY_free(k->keys[i].pkey);
    }
    free(k->keys);
    free(k);
}

static char *read_file(const char *file, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read \"%s\": %s", file, strerror(errno));
        return NULL;
    }
    char *buf = malloc(JWKS_MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, JWKS_MAX_FILE + 1, f) : 0;
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad || n > JWKS_MAX_FILE) {
        snprintf(err, errlen, "cannot read \"%s\": %s", file,
                 bad ? "read error" : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

pol_jwks_t *pol_jwks_load(const char *file, char *err, size_t errlen)
{
    json_error_t je;
    size_t len;
    char *text = read_file(file, &len, err, errlen);
    if (!text)
        return NULL;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) {
        snprintf(err, errlen, "\"%s\" is not valid JSON: %s (line %d)", file, je.text, je.line);
        return NULL;
    }
    json_t *arr = json_object_get(root, "keys");
    pol_jwks_t *ks = NULL;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "\"%s\" is not a JWKS: expected an object with a \"keys\" array",
                 file);
        goto fail;
    }
    if (json_array_size(arr) > JWKS_MAX_KEYS) {
        snprintf(err, errlen, "\"%s\": more than %d keys", file, JWKS_MAX_KEYS);
        goto fail;
    }
    ks = calloc(1, sizeof *ks);
    if (!ks || !(ks->keys = calloc(json_array_size(arr) + 1, sizeof *ks->keys))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    ks->refs = 1;
    size_t i;
    json_t *k;
    json_array_foreach(arr, i, k) {
        const char *why = "skip";
        EVP_PKEY *pkey = NULL;
        int type = -1;
        json_t *kty = json_object_get(k, "kty"), *kid = json_object_get(k, "kid");
        if (!json_is_object(k) || !json_is_string(kty)) {
            snprintf(err, errlen, "\"%s\": keys[%zu] is not a JWK (no \"kty\")", file, i);
            goto fail;
        }
        if (kid && !json_is_string(kid)) {
            snprintf(err, errlen, "\"%s\": keys[%zu]: \"kid\" must be a string", file, i);
            goto fail;
        }
        const char *t = json_string_value(kty);
        type = strcmp(t, "EC") == 0 ? KT_EC : strcmp(t, "RSA") == 0 ? KT_RSA
             : strcmp(t, "OKP") == 0 ? KT_OKP : -1;
        if (type < 0)
            continue;   /* other key types */
        int purpose = key_purpose(k, type, &why);
        if (purpose < 0) {
            snprintf(err, errlen, "\"%s\": keys[%zu]: %s", file, i, why);
            goto fail;
        }
        if (purpose == 0)
            continue;
        why = "skip";
        pkey = type == KT_EC ? ec_key(k, &why) : type == KT_RSA ? rsa_key(k, &why)
             : okp_key(k, &why);
        ERR_clear_error();
        if (!pkey && strcmp(why, "skip") == 0)
            continue;   /* other key types and curves */
        if (!pkey) {
            snprintf(err, errlen, "\"%s\": keys[%zu]: %s", file, i, why);
            goto fail;
        }
        jwk_t *dst = &ks->keys[ks->n++];
        dst->type = type;
        dst->pkey = pkey;
        if (kid && !(dst->kid = strdup(json_string_value(kid)))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (ks->n == 0) {
        snprintf(err, errlen, "\"%s\" has no usable signature key (EC P-256, RSA or Ed25519)",
                 file);
        goto fail;
    }
    json_decref(root);
    return ks;
fail:
    if (ks)
        jwks_free(ks);
    json_decref(root);
    return NULL;
}

size_t pol_jwks_count(const pol_jwks_t *keys)
{
    return keys ? keys->n : 0;
}

uint32_t pol_jwks_algorithms(const pol_jwks_t *keys)
{
    static const uint32_t bits[] = {CFG_JWT_ES256, CFG_JWT_RS256, CFG_JWT_EDDSA};
    uint32_t m = 0;
    for (size_t i = 0; keys && i < keys->n; i++)
        m |= bits[keys->keys[i].type];
    return m;
}

void pol_jwks_ref(pol_jwks_t *keys)
{
    __atomic_add_fetch(&keys->refs, 1, __ATOMIC_RELAXED);
}

void pol_jwks_release(pol_jwks_t *keys)
{
    if (keys && __atomic_sub_fetch(&keys->refs, 1, __ATOMIC_ACQ_REL) == 0)
        jwks_free(keys);
}

/* ---------------------------------------------------------------- store */

static int same_version(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

pol_jwks_store_t *pol_jwks_store_new(const char *file, char *err, size_t errlen)
{
    struct stat st;
    if (stat(file, &st) != 0) {
        snprintf(err, errlen, "cannot read \"%s\": %s", file, strerror(errno));
        return NULL;
    }
    pol_jwks_t *k = pol_jwks_load(file, err, errlen);
    if (!k)
        return NULL;
    pol_jwks_store_t *s = calloc(1, sizeof *s);
    if (!s || !(s->file = strdup(file)) || pthread_mutex_init(&s->mu, NULL) != 0) {
        if (s)
            free(s->file);
        free(s);
        pol_jwks_release(k);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cur = k;
    s->seen = st;
    return s;
}

void pol_jwks_store_free(pol_jwks_store_t *s)
{
    if (!s)
        return;
    pol_jwks_release(s->cur);
    pthread_mutex_destroy(&s->mu);
    free(s->file);
    free(s);
}

pol_jwks_t *pol_jwks_store_get(pol_jwks_store_t *s)
{
    pthread_mutex_lock(&s->mu);
    pol_jwks_t *k = s->cur;
    pol_jwks_ref(k);
    pthread_mutex_unlock(&s->mu);
    return k;
}

int pol_jwks_store_refresh(pol_jwks_store_t *s, char *err, size_t errlen)
{
    struct stat st;
    if (stat(s->file, &st) != 0) {
        /* A file being replaced may be missing for a moment: keep the keys,
         * and report a missing file once, not on every refresh. */
        int e = errno;
        pthread_mutex_lock(&s->mu);
        int again = s->missing;
        s->missing = 1;
        memset(&s->seen, 0, sizeof s->seen);
        pthread_mutex_unlock(&s->mu);
        if (again)
            return 0;
        snprintf(err, errlen, "cannot read \"%s\": %s (keeping the previous keys)", s->file,
                 strerror(e));
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    int unchanged = same_version(&st, &s->seen);
    pthread_mutex_unlock(&s->mu);
    if (unchanged)
        return 0;
    char why[400];
    pol_jwks_t *k = pol_jwks_load(s->file, why, sizeof why);
    pthread_mutex_lock(&s->mu);
    s->seen = st;
    s->missing = 0;
    pol_jwks_t *old = NULL;
    if (k) {
        old = s->cur;
        s->cur = k;
    }
    pthread_mutex_unlock(&s->mu);
    pol_jwks_release(old);
    if (!k) {
        snprintf(err, errlen, "%s (keeping the previous keys)", why);
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- verify */

static int fail(pol_jwt_result_t *res, enum pc_auth_reason reason, const char *desc)
{
    res->error = "invalid_token";
    res->reason = reason;
    res->description = desc;
    res->nclaims = 0;
    return -1;
}

/* Decodes one base64url segment as a JSON object. */
static json_t *segment_json(const char *s, size_t len)
{
    unsigned char *buf = malloc(len / 4 * 3 + 3);
    if (!buf)
        return NULL;
    long n = pol_b64url_decode(s, len, buf, len / 4 * 3 + 3);
    json_t *j = n > 0 ? json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL)
                      : NULL;
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Raw JWS ES256 signature (r || s, 32 bytes each) to DER. */
static unsigned char *es256_der(const unsigned char *sig, size_t len, int *derlen)
{
    if (len != 64)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL;   /* owned by es */
        *derlen = i2d_ECDSA_SIG(es, &der);
        if (*derlen <= 0)
            der = NULL;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return der;
}

static int verify_sig(const jwk_t *k, const unsigned char *msg, size_t mlen,
                      const unsigned char *sig, size_t slen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    int derlen = 0, ok = 0;
    const EVP_MD *md = k->type == KT_OKP ? NULL : EVP_sha256();
    if (k->type == KT_EC) {
        if (!(der = es256_der(sig, slen, &derlen)))
            goto out;
        sig = der;
        slen = (size_t)derlen;
    }
    if (ctx && EVP_DigestVerifyInit(ctx, NULL, md, NULL, k->pkey) == 1) {
        if (k->type == KT_RSA) {
            EVP_PKEY_CTX *pc = EVP_MD_CTX_get_pkey_ctx(ctx);
            if (!pc || EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) != 1)
                goto out;
        }
        ok = EVP_DigestVerify(ctx, sig, slen, msg, mlen) == 1;
    }
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* A NumericDate claim as whole seconds; -1 if not a number. */
static int num_date(json_t *v, int64_t *out)
{
    double d;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_real(v))
        return -1;
    d = json_real_value(v);
    if (!(d > -9.0e15 && d < 9.0e15))
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int aud_ok(const cfg_jwt_t *cfg, json_t *aud)
{
    if (json_is_string(aud)) {
        for (size_t i = 0; i < cfg->naudiences; i++)
            if (strcmp(json_string_value(aud), cfg->audiences[i]) == 0)
                return 1;
        return 0;
    }
    if (!json_is_array(aud))
        return 0;
    size_t j;
    json_t *a;
    json_array_foreach(aud, j, a) {
        if (json_is_string(a) && aud_ok(cfg, a))
            return 1;
    }
    return 0;
}

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static void claims_out(const cfg_jwt_t *cfg, json_t *pl, pol_jwt_result_t *res)
{
    for (size_t i = 0; i < cfg->nclaims && res->nclaims < CFG_JWT_MAX_CLAIMS; i++) {
        json_t *v = json_object_get(pl, cfg->claims[i].claim);
        pol_jwt_claim_t *c = &res->claims[res->nclaims];
        int n;
        if (json_is_string(v)) {
            size_t len = json_string_length(v);
            if (len == 0 || len > POL_JWT_MAX_VALUE || !printable(json_string_value(v), len))
                continue;
            memcpy(c->value, json_string_value(v), len);
            c->value[len] = '\0';
        } else if (json_is_integer(v)) {
            n = snprintf(c->value, sizeof c->value, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            if (n < 0)
                continue;
        } else if (json_is_real(v)) {
            n = snprintf(c->value, sizeof c->value, "%.17g", json_real_value(v));
            if (n < 0 || !printable(c->value, (size_t)n))
                continue;
        } else {
            continue;
        }
        c->header = cfg->claims[i].header;
        res->nclaims++;
    }
}

int pol_jwt_verify(const cfg_jwt_t *cfg, pol_jwks_t *keys, const char *token, size_t len,
                   const char *x5t_s256, time_t now, pol_jwt_result_t *res)
{
    memset(res, 0, sizeof *res);
    if (!cfg || !keys || !token)
        return fail(res, PC_AUTH_OTHER, "token verification is not available");
    if (len > POL_JWT_MAX_TOKEN)
        return fail(res, PC_AUTH_MALFORMED, "the token is too large");
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return fail(res, PC_AUTH_MALFORMED, "the token is not a signed JWT");
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    if (!hlen || !plen || !slen)
        return fail(res, PC_AUTH_MALFORMED, "the token is not a signed JWT");

    json_t *hdr = segment_json(token, hlen), *pl = NULL;
    unsigned char sig[1104];
    long sl = -1;
    int rc = -1;
    if (!hdr) {
        fail(res, PC_AUTH_MALFORMED, "malformed token header");
        goto out;
    }
    json_t *alg = json_object_get(hdr, "alg"), *kid = json_object_get(hdr, "kid");
    if (json_object_get(hdr, "crit")) {
        fail(res, PC_AUTH_MALFORMED, "unsupported critical header");
        goto out;
    }
    const char *a = json_is_string(alg) ? json_string_value(alg) : "";
    int type;
    uint32_t bit;
    if (strcmp(a, "ES256") == 0) {
        type = KT_EC;
        bit = CFG_JWT_ES256;
    } else if (strcmp(a, "RS256") == 0) {
        type = KT_RSA;
        bit = CFG_JWT_RS256;
    } else if (strcmp(a, "EdDSA") == 0) {
        type = KT_OKP;
        bit = CFG_JWT_EDDSA;
    } else {
        fail(res, PC_AUTH_ALGORITHM, "unsupported signature algorithm");
        goto out;
    }
    if (!(cfg->algorithms & bit)) {
        fail(res, PC_AUTH_ALGORITHM, "signature algorithm not allowed");
        goto out;
    }
    if (kid && !json_is_string(kid)) {
        fail(res, PC_AUTH_MALFORMED, "malformed token header");
        goto out;
    }
    if (slen > sizeof sig * 4 / 3 ||
        (sl = pol_b64url_decode(d2 + 1, slen, sig, sizeof sig)) <= 0) {
        fail(res, PC_AUTH_MALFORMED, "malformed token signature");
        goto out;
    }
    int found = 0, named = 0, good = 0;
    for (size_t i = 0; i < keys->n && !good; i++) {
        const jwk_t *k = &keys->keys[i];
        if (kid && (!k->kid || strcmp(k->kid, json_string_value(kid)) != 0))
            continue;
        named = 1;
        if (k->type != type)
            continue;   /* never verify with a key of another type than alg says */
        found = 1;
        good = verify_sig(k, (const unsigned char *)token, (size_t)(d2 - token), sig,
                          (size_t)sl);
    }
    if (!found) {
        fail(res, PC_AUTH_UNKNOWN_KEY, kid && named ? "the key id names a key of another type than alg"
                  : kid ? "unknown key id" : "no key for the token's algorithm");
        goto out;
    }
    if (!good) {
        fail(res, PC_AUTH_SIGNATURE, "invalid signature");
        goto out;
    }
    if (!(pl = segment_json(d1 + 1, plen))) {
        fail(res, PC_AUTH_MALFORMED, "malformed token payload");
        goto out;
    }
    int64_t exp, nbf, leeway = (int64_t)(cfg->leeway_ms / 1000), t = (int64_t)now;
    json_t *v = json_object_get(pl, "exp");
    if (!v || num_date(v, &exp) < 0) {
        fail(res, PC_AUTH_MALFORMED, "the token has no valid exp claim");
        goto out;
    }
    if (t - leeway > exp) {   /* (not exp + leeway: exp may be huge) */
        fail(res, PC_AUTH_EXPIRED, "the token has expired");
        goto out;
    }
    if ((v = json_object_get(pl, "nbf"))) {
        if (num_date(v, &nbf) < 0) {
            fail(res, PC_AUTH_MALFORMED, "the token has an invalid nbf claim");
            goto out;
        }
        if (t + leeway < nbf) {
            fail(res, PC_AUTH_NOT_YET_VALID, "the token is not valid yet");
            goto out;
        }
    }
    if (cfg->issuer) {
        v = json_object_get(pl, "iss");
        if (!json_is_string(v) || strcmp(json_string_value(v), cfg->issuer) != 0) {
            fail(res, PC_AUTH_ISSUER, "wrong token issuer");
            goto out;
        }
    }
    if (cfg->naudiences && !aud_ok(cfg, json_object_get(pl, "aud"))) {
        fail(res, PC_AUTH_AUDIENCE, "wrong token audience");
        goto out;
    }
    if (cfg->bind_to_certificate) {
        json_t *cnf = json_object_get(pl, "cnf");
        json_t *x = json_is_object(cnf) ? json_object_get(cnf, "x5t#S256") : NULL;
        if (!json_is_string(x)) {
            fail(res, PC_AUTH_BINDING, "the token is not bound to a certificate");
            goto out;
        }
        size_t xl = json_string_length(x);
        if (!x5t_s256 || xl != 43 || strlen(x5t_s256) != 43 ||
            CRYPTO_memcmp(json_string_value(x), x5t_s256, 43) != 0) {
            fail(res, PC_AUTH_BINDING, "the token is bound to another certificate");
            goto out;
        }
    }
    claims_out(cfg, pl, res);
    rc = 0;
out:
    json_decref(hdr);
    json_decref(pl);
    return rc;
}
