/* attest_android.c: Android key attestation (provider
 * android_key_attestation, attester.h iss_attest_android).
 *
 * The app generates its key in Android Keystore with
 * setAttestationChallenge(<the nonce's 43 ASCII bytes>) and sends the key's
 * certificate chain in the request member "attestation": a JSON array of
 * base64 DER certificates, leaf (the key's attestation certificate) first,
 * as KeyStore.getCertificateChain returns it. Verified locally, in this
 * order, each failure with its own static message (PC_E_ATTESTATION_FAILED;
 * check 4, the key binding, PC_E_KEY_NOT_BOUND):
 *   1. the chain verifies to one of the configured roots at req->now_ms
 *      (the leaf's own validity dates excepted: the device sets them);
 *   2. no certificate of it is listed in the revocation status file;
 *   3. the leaf's KeyDescription (keydesc.h) parses, and no other
 *      certificate carries one (keys attested by an app's own attestation
 *      key are not accepted);
 *   4. attestationChallenge == the nonce;
 *   5. attestationSecurityLevel and keymasterSecurityLevel >= the configured
 *      level (software never); teeEnforced origin GENERATED (an imported
 *      key, or an origin only in softwareEnforced, is refused);
 *   6. attestationApplicationId: a configured package, and one of its
 *      signing certificate digests;
 *   7. teeEnforced rootOfTrust: verifiedBootState Verified and deviceLocked
 *      (with allow_unverified_boot also SelfSigned or Unverified, locked or
 *      not; Failed never);
 *   8. teeEnforced purpose includes SIGN;
 *   9. with require [.., play_integrity]: the member "integrity_token"
 *      passes the Play Integrity checks (attest_play.c) bound to the
 *      challenge (SPEC: base64url(SHA-256(nonce || spki_sha256))), and the
 *      attested package is play_integrity.package_name (which the config
 *      requires to be one of packages).
 * The verdict: level strong, app_id the package, key_sha256 the SHA-256 of
 * the leaf's SubjectPublicKeyInfo DER with key_attested (the flow refuses
 * key_not_bound unless it is the CSR's key).
 */
#include "attester.h"
#include "issuance.h"
#include "keydesc.h"
#include "../base/metrics.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define MAX_CHAIN 8               /* certificates in "attestation" */
#define MAX_CERT_DER 16384        /* bytes of one certificate */
#define SERIAL_HEX 40             /* 20-byte serials, lowercase hex, no leading zeros */
#define MAX_STATUS_FILE (64u << 20)

typedef char serial_t[SERIAL_HEX + 1];

typedef struct {
    const cfg_platform_t *pl;
    X509_STORE *store;            /* the configured roots */
    serial_t *revoked;            /* sorted; the status file's entries */
    size_t nrevoked;
    iss_play_keys_t *play;        /* with require play_integrity */
} and_inst_t;

/* ---------------------------------------------------------------- load */

static int serial_cmp(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* A serial as the status file writes it: hex, case-insensitive, into its
 * canonical form (lowercase, no leading zeros). Syscall-like. */
static int canon_serial(const char *s, serial_t out)
{
    size_t n = strlen(s), k = 0;
    while (n > 1 && *s == '0')
        s++, n--;
    if (n == 0 || n > SERIAL_HEX)
        return -1;
    for (; *s; s++) {
        if (!isxdigit((unsigned char)*s))
            return -1;
        out[k++] = (char)tolower((unsigned char)*s);
    }
    out[k] = '\0';
    return 0;
}

/* Google's format: {"entries": {"<serial hex>": {"status": "REVOKED" |
 * "SUSPENDED", "reason": ...}, ...}}. Every listed serial is refused,
 * whatever its status says. Syscall-like, with err. */
static int load_status(and_inst_t *in, const char *path, char *err, size_t errlen)
{
    char why[512];
    size_t len;
    json_error_t je;
    const char *p = in->pl->name;
    char *text = cfg_read_file(path, MAX_STATUS_FILE, &len, why, sizeof why);
    if (!text) {
        snprintf(err, errlen, "issuance.platforms.%s.revocation_status_file: %s", p, why);
        return -1;
    }
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    json_t *entries = json_object_get(root, "entries");
    if (!json_is_object(entries)) {
        if (!root)
            snprintf(err, errlen, "issuance.platforms.%s.revocation_status_file: \"%s\" is not "
                     "JSON (line %d: %s)", p, path, je.line, je.text);
        else
            snprintf(err, errlen, "issuance.platforms.%s.revocation_status_file: \"%s\" has no "
                     "\"entries\" object (expected Google's attestation status format)", p, path);
        json_decref(root);
        return -1;
    }
    size_t n = json_object_size(entries);
    in->revoked = calloc(n ? n : 1, sizeof *in->revoked);
    if (!in->revoked) {
        json_decref(root);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(entries, key, v) {
        if (canon_serial(key, in->revoked[in->nrevoked]) < 0 ||
            !json_is_string(json_object_get(v, "status"))) {
            snprintf(err, errlen, "issuance.platforms.%s.revocation_status_file: \"%s\": entry "
                     "\"%.60s\" is not a hex serial with a \"status\" string", p, path, key);
            json_decref(root);
            return -1;
        }
        in->nrevoked++;
    }
    json_decref(root);
    qsort(in->revoked, in->nrevoked, sizeof *in->revoked, serial_cmp);
    return 0;
}

static int load_roots(and_inst_t *in, char *err, size_t errlen)
{
    const cfg_android_key_t *a = &in->pl->android;
    if (!(in->store = X509_STORE_new()))
        return -1;
    for (size_t i = 0; i < a->nroots; i++) {
        BIO *b = BIO_new_file(a->roots[i], "r");
        X509 *x;
        int n = 0;
        while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            int ok = X509_STORE_add_cert(in->store, x);
            X509_free(x);
            if (!ok)
                break;
            n++;
        }
        BIO_free(b);
        ERR_clear_error();
        if (!n) {
            snprintf(err, errlen, "issuance.platforms.%s.roots: \"%s\" holds no PEM certificate",
                     in->pl->name, a->roots[i]);
            return -1;
        }
    }
    return 0;
}

static void and_free(void *inst)
{
    and_inst_t *in = inst;
    if (!in)
        return;
    X509_STORE_free(in->store);
    free(in->revoked);
    iss_play_keys_free(in->play);
    free(in);
}

static void *and_load(const cfg_platform_t *pl, char *err, size_t errlen)
{
    and_inst_t *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    in->pl = pl;
    if (load_roots(in, err, errlen) < 0 ||
        (pl->android.revocation_status_file &&
         load_status(in, pl->android.revocation_status_file, err, errlen) < 0) ||
        (pl->android.with_play && !(in->play = iss_play_keys_load(&pl->play, err, errlen)))) {
        if (!in->store)
            snprintf(err, errlen, "out of memory");
        and_free(in);
        return NULL;
    }
    return in;
}

/* ---------------------------------------------------------------- the chain */

/* base64 (standard or url alphabet, padding optional) into out. The
 * decoded length or -1. */
static long b64_any(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t pad = 0;
    while (n && s[n - 1] == '=')
        n--, pad++;
    if (n == 0 || pad > 2 || n % 4 == 1 || (n + 3) / 4 * 3 > cap)
        return -1;
    char *t = malloc(n + 4);
    if (!t)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
        if (!isalnum((unsigned char)ch) && ch != '+' && ch != '/') {
            free(t);
            return -1;
        }
        t[i] = ch;
    }
    size_t m = n;
    while (m % 4)
        t[m++] = '=';
    int r = EVP_DecodeBlock(out, (const unsigned char *)t, (int)m);
    free(t);
    return r < 0 ? -1 : (long)r - (long)(m - n);
}

/* The certificates of "attestation". NULL with *err (PC_E_BAD_REQUEST). */
static STACK_OF(X509) *read_chain(const json_t *body, const char **err)
{
    const json_t *arr = json_object_get(body, "attestation");
    size_t n = json_array_size(arr);
    *err = "attestation must be a JSON array of 1..8 base64 DER certificates, leaf first";
    if (!json_is_array(arr) || n < 1 || n > MAX_CHAIN)
        return NULL;
    STACK_OF(X509) *sk = sk_X509_new_null();
    unsigned char *der = malloc(MAX_CERT_DER + 4);
    for (size_t i = 0; sk && der && i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        long len = json_is_string(e) && json_string_length(e) <= MAX_CERT_DER * 4 / 3 + 4
                       ? b64_any(json_string_value(e), json_string_length(e), der, MAX_CERT_DER + 4)
                       : -1;
        const unsigned char *p = der;
        X509 *x = len > 0 ? d2i_X509(NULL, &p, len) : NULL;
        if (!x || p != der + len || !sk_X509_push(sk, x)) {
            X509_free(x);
            *err = "attestation holds an element that is not a base64 DER certificate";
            sk_X509_pop_free(sk, X509_free);
            sk = NULL;
        }
    }
    free(der);
    ERR_clear_error();
    if (sk && sk_X509_num(sk) != (int)n) {   /* allocation failed */
        sk_X509_pop_free(sk, X509_free);
        sk = NULL;
    }
    return sk;
}

/* Boolean: x is listed (a serial that cannot be read is refused too). */
static int revoked(const and_inst_t *in, X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    serial_t s;
    int r = !hex || canon_serial(hex, s) < 0 ||
            bsearch(s, in->revoked, in->nrevoked, sizeof *in->revoked, serial_cmp) != NULL;
    OPENSSL_free(hex);
    BN_free(bn);
    return r;
}

/* The leaf's validity dates are the device's: set by the app
 * (setCertificateNotBefore/After), by Keystore defaults or by the device's
 * clock, so they may be skewed or short and prove nothing; freshness comes
 * from the single-use nonce. As Google's verifier, ignore them at depth 0
 * only: the intermediates' and the root's dates are still enforced. */
static int leaf_dates_ignored(int ok, X509_STORE_CTX *ctx)
{
    int e = X509_STORE_CTX_get_error(ctx);
    if (!ok && X509_STORE_CTX_get_error_depth(ctx) == 0 &&
        (e == X509_V_ERR_CERT_NOT_YET_VALID || e == X509_V_ERR_CERT_HAS_EXPIRED)) {
        X509_STORE_CTX_set_error(ctx, X509_V_OK);
        return 1;
    }
    return ok;
}

/* Checks 1 and 2. NULL, or the failed check. */
static const char *check_chain(const and_inst_t *in, STACK_OF(X509) *certs, int64_t now_ms)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *rest = sk_X509_dup(certs);
    const char *why = "attestation chain does not verify to a configured root";
    if (!ctx || !rest) {
        why = "out of memory";
        goto out;
    }
    X509 *leaf = sk_X509_shift(rest);
    if (X509_STORE_CTX_init(ctx, in->store, leaf, rest) != 1)
        goto out;
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)(now_ms / 1000));
    X509_STORE_CTX_set_verify_cb(ctx, leaf_dates_ignored);
    if (X509_verify_cert(ctx) != 1)
        goto out;
    why = NULL;
    if (in->nrevoked) {
        STACK_OF(X509) *ch = X509_STORE_CTX_get0_chain(ctx);
        for (int i = 0; !why && i < sk_X509_num(ch); i++)
            if (revoked(in, sk_X509_value(ch, i)))
                why = "a certificate of the attestation chain is revoked (status file)";
        for (int i = 0; !why && i < sk_X509_num(certs); i++)
            if (revoked(in, sk_X509_value(certs, i)))
                why = "a certificate of the attestation chain is revoked (status file)";
    }
out:
    X509_STORE_CTX_free(ctx);
    sk_X509_free(rest);
    ERR_clear_error();
    return why;
}

/* ---------------------------------------------------------------- the description */

/* The position of x's first KeyDescription extension after position
 * `after` (-1: from the start), or -1. */
static int keydesc_at(X509 *x, int after)
{
    ASN1_OBJECT *oid = OBJ_txt2obj(ISS_KD_OID, 1);
    int i = oid ? X509_get_ext_by_OBJ(x, oid, after) : -1;
    ASN1_OBJECT_free(oid);
    ERR_clear_error();
    return i;
}

/* The leaf's KeyDescription extension value (exactly one). NULL if none. */
static const ASN1_OCTET_STRING *keydesc_ext(X509 *leaf)
{
    int i = keydesc_at(leaf, -1);
    if (i < 0 || keydesc_at(leaf, i) >= 0)
        return NULL;
    return X509_EXTENSION_get_data(X509_get_ext(leaf, i));
}

/* The first configured package (only the one named `only`, when not NULL)
 * that app lists, or NULL. */
static const cfg_android_package_t *find_package(const cfg_android_key_t *a,
                                                 const iss_kd_appid_t *app, const char *only)
{
    for (size_t i = 0; i < app->npackages; i++)
        for (size_t k = 0; k < a->npackages; k++)
            if ((!only || !strcmp(a->packages[k].name, only)) &&
                app->packages[i].name.len == strlen(a->packages[k].name) &&
                !memcmp(app->packages[i].name.p, a->packages[k].name, app->packages[i].name.len))
                return &a->packages[k];
    return NULL;
}

/* Check 6: *pkg the matching configured package; `prefer` (the Play
 * package, or NULL) when the application id lists it (apps sharing a UID
 * list several). NULL, or the failed check. */
static const char *check_app(const cfg_android_key_t *a, const iss_keydesc_t *kd,
                             const char *prefer, const cfg_android_package_t **pkg)
{
    const iss_kd_bytes_t *raw = kd->sw.app_id.p ? &kd->sw.app_id : &kd->tee.app_id;
    iss_kd_appid_t app;
    const char *err;
    if (!raw->p)
        return "attestation application id missing";
    if (iss_keydesc_appid(raw->p, raw->len, &app, &err) < 0)
        return err;
    *pkg = prefer ? find_package(a, &app, prefer) : NULL;
    if (!*pkg)
        *pkg = find_package(a, &app, NULL);
    if (!*pkg)
        return "attestation application package not in the allow-list";
    for (size_t i = 0; i < app.ndigests; i++)
        for (size_t k = 0; k < (*pkg)->ndigests; k++)
            if (app.digests[i].len == 32 && !CRYPTO_memcmp(app.digests[i].p, (*pkg)->digests[k], 32))
                return NULL;
    return "app signing certificate not in the allow-list";
}

static const char *const level_names[] = {"software", "tee", "strongbox"};
static const char *const boot_names[] = {"verified", "self-signed", "unverified", "failed"};

/* Check 3: the leaf's KeyDescription into *kd. NULL, or the failed check. */
static const char *parse_leaf(X509 *leaf, iss_keydesc_t *kd)
{
    const ASN1_OCTET_STRING *ext = keydesc_ext(leaf);
    const char *err;
    if (!ext)
        return "attestation leaf has no (or more than one) key description extension";
    if (iss_keydesc_parse(ASN1_STRING_get0_data(ext), (size_t)ASN1_STRING_length(ext), kd,
                          &err) < 0)
        return err;
    return NULL;
}

/* Check 4, the key binding (PC_E_KEY_NOT_BOUND, as a Play token or an App
 * Attest object made for another challenge): boolean. */
static int challenge_ok(const iss_keydesc_t *kd, const char *nonce)
{
    size_t nl = nonce ? strlen(nonce) : 0;
    return nl && kd->challenge.len == nl && CRYPTO_memcmp(kd->challenge.p, nonce, nl) == 0;
}

/* Checks 5 to 8 on the parsed description. NULL, or the failed check; *pkg set. */
static const char *check_desc(const cfg_android_key_t *a, const iss_keydesc_t *kd,
                              const char *prefer, const cfg_android_package_t **pkg)
{
    const char *err;
    if (kd->attestation_level < 1 || kd->attestation_level > 2 || kd->attestation_level < a->min_level)
        return "attestation security level below the configured minimum";
    if (kd->keymaster_level < 1 || kd->keymaster_level > 2 || kd->keymaster_level < a->min_level)
        return "keymaster security level below the configured minimum";
    /* an imported key's private half exists outside the secure hardware; an
     * origin only in softwareEnforced is the OS's claim, not the hardware's */
    if (!kd->tee.has_origin || kd->tee.origin != ISS_KD_ORIGIN_GENERATED)
        return "attested key was not generated in secure hardware (origin)";
    if ((err = check_app(a, kd, prefer, pkg)))
        return err;
    if (!kd->tee.has_root_of_trust)
        return "root of trust missing from the hardware-enforced list";
    int bs = kd->tee.boot_state;
    if (bs != ISS_KD_VERIFIED &&
        !(a->allow_unverified_boot && (bs == ISS_KD_SELF_SIGNED || bs == ISS_KD_UNVERIFIED)))
        return "verified boot state is not Verified";
    if (!a->allow_unverified_boot && !kd->tee.device_locked)
        return "device bootloader is not locked";
    if (!kd->tee.has_purpose || !(kd->tee.purposes & (1u << ISS_KD_PURPOSE_SIGN)))
        return "attested key purpose does not include SIGN";
    return NULL;
}

/* SHA-256 of the leaf's SubjectPublicKeyInfo DER. Syscall-like. */
static int spki_sha256(X509 *leaf, unsigned char out[32])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- the attester */

/* Check 9: Play Integrity on "integrity_token", bound to the challenge. */
static void check_play(const and_inst_t *in, const iss_attest_req_t *req, iss_verdict_t *v,
                       char *summary, size_t n)
{
    const json_t *t = json_object_get(req->body, "integrity_token");
    char want[48];
    const char *err = NULL;
    if (!json_is_string(t)) {
        v->err = PC_E_BAD_REQUEST;
        v->message = "integrity_token (a Play Integrity token) is required for this platform";
        return;
    }
    if (!req->challenge ||
        iss_b64url_encode(req->challenge, ISS_CHALLENGE_BYTES, want, sizeof want) < 0) {
        v->err = PC_E_KEY_NOT_BOUND;
        v->message = "the key-binding challenge is unknown (no CSR key)";
        return;
    }
    if (iss_play_verify(&in->pl->play, in->play, json_string_value(t), json_string_length(t),
                        want, req->now_ms, summary, n, NULL, &v->err, &err) < 0)
        v->message = err;
}

static void and_verify(void *inst, const iss_attest_req_t *req, iss_attest_done_fn done,
                       void *arg, void **op)
{
    and_inst_t *in = inst;
    const cfg_android_key_t *a = &in->pl->android;
    char summary[ISS_SUMMARY_MAX], play[128] = "";   /* play fits beside the rest */
    unsigned char key[32];
    const cfg_android_package_t *pkg = NULL;
    iss_keydesc_t kd;
    iss_verdict_t v = {.err = PC_E_ATTESTATION_FAILED};
    *op = NULL;
    STACK_OF(X509) *certs = read_chain(req->body, &v.message);
    if (!certs) {
        v.err = PC_E_BAD_REQUEST;
        goto out;
    }
    X509 *leaf = sk_X509_value(certs, 0);
    v.message = NULL;
    for (int i = 1; i < sk_X509_num(certs) && !v.message; i++)
        if (keydesc_at(sk_X509_value(certs, i), -1) >= 0)   /* only the leaf may carry one */
            v.message = "key description on a certificate other than the leaf";
    if (v.message || (v.message = check_chain(in, certs, req->now_ms)) ||
        (v.message = parse_leaf(leaf, &kd)))
        goto out;
    if (!challenge_ok(&kd, req->nonce)) {
        v.err = PC_E_KEY_NOT_BOUND;
        v.message = "attestation challenge does not match the nonce";
        goto out;
    }
    if ((v.message = check_desc(a, &kd, a->with_play ? in->pl->play.package_name : NULL, &pkg)))
        goto out;
    if (spki_sha256(leaf, key) < 0) {
        v.message = "attested public key unreadable";
        goto out;
    }
    if (a->with_play) {
        check_play(in, req, &v, play, sizeof play);
        if (v.message)
            goto out;
        /* both halves must vouch for one app: the token's is play.package_name */
        if (strcmp(pkg->name, in->pl->play.package_name) != 0) {
            v.message = "Play Integrity token is for another package than the attested key";
            goto out;
        }
    }
    snprintf(summary, sizeof summary, "android_key_attestation;%s/%s;boot=%s%s;v%lld%s%s",
             level_names[kd.attestation_level], level_names[kd.keymaster_level],
             boot_names[kd.tee.boot_state], kd.tee.device_locked ? ",locked" : "",
             (long long)kd.attestation_version, a->with_play ? "+play_integrity;" : "", play);
    v.err = PC_E_NONE;
    v.summary = summary;
    v.level = CFG_INT_STRONG;
    v.app_id = pkg->name;
    v.key_sha256 = key;
    v.key_attested = 1;
out:
    sk_X509_pop_free(certs, X509_free);
    done(arg, &v);
}

static void and_cancel(void *op)
{
    (void)op;
}

const iss_attester_t iss_attest_android = {
    .name = "android_key_attestation",
    .provider = CFG_ATTEST_ANDROID_KEY,
    .metric = PC_PROV_ANDROID_KEY,
    .token_member = "attestation",
    .token_is_json = 1,
    .load = and_load,
    .verify = and_verify,
    .cancel = and_cancel,
    .free = and_free,
};
