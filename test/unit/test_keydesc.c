/* Unit tests: the Android KeyDescription parser (issuance/keydesc.c) on DER
 * minted here (test/tools/mint_keyattest.h): every field read, unknown tags
 * tolerated, each truncation and malformation refused within the buffer. */
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    memset(d1, 0x11, sizeof d1);
    memset(d2, 0x22, sizeof d2);
    test_fields();
    test_unknown_tags();
    test_truncations();
    test_malformed();
    return check_done();
}
