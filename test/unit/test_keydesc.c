/* Unit tests: the Android KeyDescription parser (issuance/keydesc.c) on DER
 * minted here (test/tools/mint_keyattest.h): every field read, unknown tags
 * tolerated, each truncation and malformation refused within the buffer. */
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../../issuance/keydesc.h"
#include "../tools/mint_keyattest.h"
#include "check.h"

static const int purposes[] = {2, 3, 7};
static unsigned char d1[32], d2[32];

static kd_opts_t opts(void)
{
    kd_opts_t o;
    memset(&o, 0, sizeof o);
    o.attest_version = 300;
    o.attest_level = 1;
    o.km_level = 2;
    o.challenge = (const unsigned char *)"the-challenge";
    o.challenge_len = 13;
    o.packages[0] = "com.example.app";
    o.packages[1] = "com.example.shared";
    o.digests[0] = d1;
    o.digests[1] = d2;
    o.boot_state = 0;
    o.device_locked = 1;
    o.purposes = purposes;
    o.npurposes = 3;
    return o;
}

/* Builds o into a buffer that outlives the call (the result points into it). */
static int parse(const kd_opts_t *o, iss_keydesc_t *kd, const char **err)
{
    static unsigned char keep[4096];
    unsigned char *der;
    size_t len;
    kd_build(o, &der, &len);
    if (len > sizeof keep)
        abort();
    memcpy(keep, der, len);
    free(der);
    return iss_keydesc_parse(keep, len, kd, err);
}

static void test_fields(void)
{
    kd_opts_t o = opts();
    iss_keydesc_t kd;
    const char *err = NULL;
    CHECK(parse(&o, &kd, &err) == 0, "a minted key description parses");
    CHECK(kd.attestation_version == 300 && kd.keymaster_version == 300, "versions");
    CHECK(kd.attestation_level == ISS_KD_TEE && kd.keymaster_level == ISS_KD_STRONGBOX,
          "security levels");
    CHECK(kd.challenge.len == 13 && !memcmp(kd.challenge.p, "the-challenge", 13), "challenge");
    CHECK(kd.unique_id.p && kd.unique_id.len == 0, "empty uniqueId");
    CHECK(kd.tee.has_purpose && kd.tee.purposes == ((1u << 2) | (1u << 3) | (1u << 7)),
          "purposes in teeEnforced");
    CHECK(!kd.sw.has_purpose && !kd.sw.has_root_of_trust, "nothing hardware in softwareEnforced");
    CHECK(kd.tee.has_root_of_trust && kd.tee.boot_state == ISS_KD_VERIFIED &&
          kd.tee.device_locked == 1 && kd.tee.boot_key.len == 32 && kd.tee.boot_hash.len == 32,
          "root of trust");
    CHECK(kd.sw.app_id.p && !kd.tee.app_id.p, "application id in softwareEnforced");
    iss_kd_appid_t app;
    CHECK(iss_keydesc_appid(kd.sw.app_id.p, kd.sw.app_id.len, &app, &err) == 0,
          "application id parses");
    CHECK(app.npackages == 2 && app.packages[0].name.len == 15 &&
          !memcmp(app.packages[0].name.p, "com.example.app", 15) && app.packages[0].version == 42,
          "package infos");
    CHECK(app.ndigests == 2 && app.digests[1].len == 32 && !memcmp(app.digests[1].p, d2, 32),
          "signature digests");

    o.boot_state = ISS_KD_UNVERIFIED;
    o.device_locked = 0;
    o.faults = KD_F_V2_ROT;
    CHECK(parse(&o, &kd, &err) == 0 && kd.tee.boot_state == ISS_KD_UNVERIFIED &&
          kd.tee.device_locked == 0 && !kd.tee.boot_hash.p,
          "version 2 root of trust (no verifiedBootHash), unverified, unlocked");
    o = opts();
    o.faults = KD_F_NO_APPID | KD_F_NO_ROT;
    CHECK(parse(&o, &kd, &err) == 0 && !kd.sw.app_id.p && !kd.tee.has_root_of_trust,
          "optional authorizations absent");
    o = opts();
    o.faults = KD_F_SW_ONLY;
    CHECK(parse(&o, &kd, &err) == 0 && !kd.tee.has_purpose && kd.sw.has_purpose &&
          kd.sw.has_root_of_trust && !kd.tee.has_root_of_trust,
          "authorizations kept per list (software only)");
}

/* origin [702]: read from the list it is in, refused twice in one list. */
static void test_origin(void)
{
    kd_opts_t o = opts();
    iss_keydesc_t kd;
    const char *err = NULL;
    CHECK(parse(&o, &kd, &err) == 0 && kd.tee.has_origin &&
          kd.tee.origin == ISS_KD_ORIGIN_GENERATED && !kd.sw.has_origin,
          "origin GENERATED read from teeEnforced");
    o.origin = 2;
    CHECK(parse(&o, &kd, &err) == 0 && kd.tee.has_origin && kd.tee.origin == 2,
          "origin IMPORTED read as sent");
    o.origin = 4;
    CHECK(parse(&o, &kd, &err) == 0 && kd.tee.origin == 4, "origin SECURELY_IMPORTED read as sent");
    o = opts();
    o.faults = KD_F_SW_ORIGIN;
    CHECK(parse(&o, &kd, &err) == 0 && !kd.tee.has_origin && kd.sw.has_origin &&
          kd.sw.origin == 0, "origin kept in its list (softwareEnforced only)");
    o.faults = KD_F_NO_ORIGIN;
    CHECK(parse(&o, &kd, &err) == 0 && !kd.tee.has_origin && !kd.sw.has_origin, "origin absent");
    o.faults = KD_F_UNKNOWN_TAGS;
    o.origin = 2;
    CHECK(parse(&o, &kd, &err) == 0 && kd.tee.has_origin && kd.tee.origin == 2,
          "origin read among unknown tags");
    o = opts();
    o.faults = KD_F_DUP_ORIGIN;
    err = NULL;
    CHECK(parse(&o, &kd, &err) == -1 && err && strstr(err, "twice") && !kd.tee.has_origin,
          "origin twice in one list is refused");
    /* origin not an INTEGER: [702] { OCTET STRING } in teeEnforced */
    kd_buf_t b = {0}, sw = {0}, tee = {0}, bad = {0};
    kd_int(&b, 2, 300);
    kd_int(&b, 10, 1);
    kd_int(&b, 2, 300);
    kd_int(&b, 10, 1);
    kd_octets(&b, "c", 1);
    kd_octets(&b, "", 0);
    kd_wrap(&sw, 0, 1, 16);
    kd_octets(&bad, "\x00", 1);
    kd_explicit(&tee, 702, &bad);
    kd_wrap(&tee, 0, 1, 16);
    kd_put(&b, sw.p, sw.len);
    kd_put(&b, tee.p, tee.len);
    kd_wrap(&b, 0, 1, 16);
    err = NULL;
    CHECK(iss_keydesc_parse(b.p, b.len, &kd, &err) == -1 && err &&
          !strcmp(err, "key description: origin is not an INTEGER"), "origin not an INTEGER refused");
    free(b.p);
    free(sw.p);
    free(tee.p);
    free(bad.p);
}

static void test_unknown_tags(void)
{
    kd_opts_t o = opts();
    iss_keydesc_t kd;
    const char *err = NULL;
    o.faults = KD_F_UNKNOWN_TAGS;
    CHECK(parse(&o, &kd, &err) == 0, "unknown tags and a trailing field are tolerated");
    CHECK(kd.tee.has_purpose && kd.tee.has_root_of_trust && kd.sw.app_id.p,
          "known tags read around unknown ones");
    o.faults = KD_F_DUP_PURPOSE;
    CHECK(parse(&o, &kd, &err) == -1 && strstr(err, "twice"), "a known tag twice is refused");
}

/* Every strict prefix and every single-byte change is parsed within the
 * buffer (ASan checks the bounds): each prefix refused, no crash. */
static void test_truncations(void)
{
    kd_opts_t o = opts();
    unsigned char *der;
    size_t len;
    iss_keydesc_t kd;
    const char *err;
    int all = 1;
    o.faults = KD_F_UNKNOWN_TAGS;
    kd_build(&o, &der, &len);
    for (size_t n = 0; n < len; n++) {
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, der, n);
        err = NULL;
        if (iss_keydesc_parse(cut, n, &kd, &err) != -1 || !err)
            all = 0;
        free(cut);
    }
    CHECK(all, "every truncation is refused with a reason");
    int ok = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char *m = malloc(len);
        memcpy(m, der, len);
        m[i] ^= 0xff;
        err = NULL;
        int rc = iss_keydesc_parse(m, len, &kd, &err);
        if (rc == 0) {
            iss_kd_appid_t app;
            if (kd.sw.app_id.p)
                iss_keydesc_appid(kd.sw.app_id.p, kd.sw.app_id.len, &app, &err);
        } else if (!err) {
            ok = 0;
        }
        free(m);
    }
    CHECK(ok, "single-byte mutations keep the contract");
    unsigned char *more = malloc(len + 1);
    memcpy(more, der, len);
    more[len] = 0;
    CHECK(iss_keydesc_parse(more, len + 1, &kd, &err) == -1, "data after the SEQUENCE refused");
    free(more);
    free(der);
}

static void test_malformed(void)
{
    iss_keydesc_t kd;
    iss_kd_appid_t app;
    const char *err;
    /* indefinite length */
    static const unsigned char indef[] = {0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00};
    CHECK(iss_keydesc_parse(indef, sizeof indef, &kd, &err) == -1, "indefinite length refused");
    /* a length beyond the buffer */
    static const unsigned char longer[] = {0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02};
    CHECK(iss_keydesc_parse(longer, sizeof longer, &kd, &err) == -1, "overlong length refused");
    /* an integer beyond int64 */
    kd_buf_t b = {0};
    kd_tlv(&b, 0, 0, 2, "\x01\x00\x00\x00\x00\x00\x00\x00\x00", 9);
    kd_wrap(&b, 0, 1, 16);
    CHECK(iss_keydesc_parse(b.p, b.len, &kd, &err) == -1, "a 72-bit version refused");
    free(b.p);
    CHECK(iss_keydesc_parse(NULL, 0, &kd, &err) == -1, "empty input refused");
    CHECK(iss_keydesc_appid((const unsigned char *)"\x30\x00", 2, &app, &err) == -1,
          "application id without its sets refused");
    /* too many package infos */
    kd_buf_t pk = {0}, dg = {0}, all = {0};
    for (int i = 0; i < ISS_KD_MAX_PACKAGES + 1; i++) {
        kd_buf_t info = {0};
        kd_octets(&info, "a.b", 3);
        kd_int(&info, 2, i);
        kd_wrap(&info, 0, 1, 16);
        kd_put(&pk, info.p, info.len);
        free(info.p);
    }
    kd_wrap(&pk, 0, 1, 17);
    kd_wrap(&dg, 0, 1, 17);
    kd_put(&all, pk.p, pk.len);
    kd_put(&all, dg.p, dg.len);
    kd_wrap(&all, 0, 1, 16);
    err = NULL;
    CHECK(iss_keydesc_appid(all.p, all.len, &app, &err) == -1 && err && strstr(err, "too many"),
          "more package infos than the limit refused");
    free(pk.p);
    free(dg.p);
    free(all.p);
}

/* ---- real device chains (never checked in: Google's roots and the
 * devices' certificates are far-future). Read from
 * ../shared/corpora/android-key-attestation/ (or $PORTCULLIS_ANDROID_CORPUS)
 * when present, laid out as the test data of Google's open-source verifier
 * (github.com/android/keyattestation, testdata/<device>/sdk<N>/): each
 * <case>.pem a chain, leaf first, and, when there, <case>.json the parsed
 * description that verifier expects. Each leaf must parse; where the JSON
 * is there, the challenge, security levels and boot state must match. ---- */

static int real_seen, real_bad;

static int level_of(const char *s)
{
    return !s ? -1 : !strcmp(s, "SOFTWARE") ? 0 : !strcmp(s, "TRUSTED_ENVIRONMENT") ? 1
         : !strcmp(s, "STRONG_BOX") ? 2 : -1;
}

static int boot_of(const char *s)
{
    return !s ? -1 : !strcmp(s, "VERIFIED") ? 0 : !strcmp(s, "SELF_SIGNED") ? 1
         : !strcmp(s, "UNVERIFIED") ? 2 : !strcmp(s, "FAILED") ? 3 : -1;
}

/* The hardware-enforced origin against the verifier's expectation (a name
 * or a number; GENERATED when the .json names none, as every corpus case
 * is a key generated on the device). Boolean. */
static int origin_matches(const json_t *want, const iss_keydesc_t *kd)
{
    static const char *const names[] = {"GENERATED", "DERIVED", "IMPORTED", "UNKNOWN",
                                        "SECURELY_IMPORTED"};
    int64_t w = 0;
    if (json_is_integer(want))
        w = json_integer_value(want);
    else if (json_is_string(want))
        for (w = 0; w < 5 && strcmp(json_string_value(want), names[w]); w++)
            ;
    return kd->tee.has_origin && kd->tee.origin == w;
}

/* The parsed description against the verifier's expectation. Boolean. */
static int matches(const char *jpath, const iss_keydesc_t *kd)
{
    json_error_t je;
    json_t *j = json_load_file(jpath, 0, &je);
    if (!j)
        return 1;   /* no expectation: parsing is the check */
    const char *ch = json_string_value(json_object_get(j, "attestationChallenge"));
    unsigned char buf[512];
    int n = ch && strlen(ch) < 600 ? EVP_DecodeBlock(buf, (const unsigned char *)ch, (int)strlen(ch)) : -1;
    size_t pad = ch ? (strlen(ch) > 0 && ch[strlen(ch) - 1] == '=') + (strlen(ch) > 1 && ch[strlen(ch) - 2] == '=') : 0;
    json_t *rot = json_object_get(json_object_get(j, "hardwareEnforced"), "rootOfTrust");
    int ok = n >= 0 && kd->challenge.len == (size_t)n - pad &&
             !memcmp(kd->challenge.p, buf, kd->challenge.len) &&
             level_of(json_string_value(json_object_get(j, "attestationSecurityLevel"))) ==
                 kd->attestation_level &&
             level_of(json_string_value(json_object_get(j, "keyMintSecurityLevel"))) ==
                 kd->keymaster_level &&
             (!rot || boot_of(json_string_value(json_object_get(rot, "verifiedBootState"))) ==
                          kd->tee.boot_state) &&
             origin_matches(json_object_get(json_object_get(j, "hardwareEnforced"), "origin"),
                            kd);
    json_decref(j);
    return ok;
}

static int real_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)f;
    size_t n = strlen(path);
    if (type != FTW_F || n < 5 || strcmp(path + n - 4, ".pem"))
        return 0;
    FILE *fp = fopen(path, "r");
    X509 *leaf = fp ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
    if (fp)
        fclose(fp);
    if (!leaf)
        return 0;   /* a roots file or anything else without a certificate first */
    ASN1_OBJECT *oid = OBJ_txt2obj(ISS_KD_OID, 1);
    int i = X509_get_ext_by_OBJ(leaf, oid, -1);
    ASN1_OBJECT_free(oid);
    if (i < 0) {   /* e.g. a roots bundle */
        X509_free(leaf);
        return 0;
    }
    const ASN1_OCTET_STRING *ext = X509_EXTENSION_get_data(X509_get_ext(leaf, i));
    iss_keydesc_t kd;
    const char *err = NULL;
    char jpath[4096];
    snprintf(jpath, sizeof jpath, "%.*s.json", (int)(n - 4), path);
    real_seen++;
    int rc = iss_keydesc_parse(ASN1_STRING_get0_data(ext), (size_t)ASN1_STRING_length(ext), &kd,
                               &err);
    if (rc < 0 || !matches(jpath, &kd)) {
        printf("not ok - real chain %s: %s\n", path, rc < 0 ? err : "differs from its .json");
        real_bad++;
    }
    X509_free(leaf);
    return 0;
}

static void test_real_samples(void)
{
    const char *dir = getenv("PORTCULLIS_ANDROID_CORPUS");
    struct stat st;
    if (!dir)
        dir = "../shared/corpora/android-key-attestation";
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        printf("# skip - real device chains: %s is absent (real chains are never checked in; "
               "see test/integration/test_15_android.py)\n", dir);
        return;
    }
    nftw(dir, real_one, 16, FTW_PHYS);
    if (!real_seen)
        printf("# skip - real device chains: no leaf certificate in %s\n", dir);
    else
        CHECK(real_bad == 0, "every real device leaf parses as its verifier expects");
}

int main(void)
{
    memset(d1, 0x11, sizeof d1);
    memset(d2, 0x22, sizeof d2);
    test_fields();
    test_origin();
    test_unknown_tags();
    test_truncations();
    test_malformed();
    test_real_samples();
    return check_done();
}
