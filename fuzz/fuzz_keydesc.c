/* fuzz_keydesc: the Android KeyDescription parser (issuance/keydesc.c),
 * iss_keydesc_parse on the input as the extension's value, then
 * iss_keydesc_appid on each attestationApplicationId it found.
 * Contract (keydesc.h): 0 with every pointer of the result inside the
 * input, or -1 with a reason and the result zeroed. Seeds: minted key
 * descriptions (fuzz/corpus/keydesc/, made by build/mint-keyattest
 * --der-out). */
#include "../issuance/keydesc.h"

#include "fuzz.h"

static int inside(const iss_kd_bytes_t *b, const uint8_t *d, size_t n)
{
    return !b->p || (b->p >= d && b->len <= n && b->p + b->len <= d + n);
}

static void appid(const iss_kd_bytes_t *b, const uint8_t *d, size_t n)
{
    iss_kd_appid_t app;
    const char *err = NULL;
    if (!b->p)
        return;
    if (iss_keydesc_appid(b->p, b->len, &app, &err) < 0) {
        FUZZ_ASSERT(err && app.npackages == 0 && app.ndigests == 0, "appid refusal contract");
        return;
    }
    FUZZ_ASSERT(app.npackages <= ISS_KD_MAX_PACKAGES && app.ndigests <= ISS_KD_MAX_DIGESTS,
                "appid bounds");
    for (size_t i = 0; i < app.npackages; i++)
        FUZZ_ASSERT(inside(&app.packages[i].name, d, n), "package name inside the input");
    for (size_t i = 0; i < app.ndigests; i++)
        FUZZ_ASSERT(inside(&app.digests[i], d, n), "digest inside the input");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    iss_keydesc_t kd;
    const char *err = NULL;
    static const iss_keydesc_t zero;
    if (iss_keydesc_parse(data, size, &kd, &err) < 0) {
        FUZZ_ASSERT(err && !memcmp(&kd, &zero, sizeof kd), "refusal contract");
        return 0;
    }
    FUZZ_ASSERT(inside(&kd.challenge, data, size) && inside(&kd.unique_id, data, size) &&
                inside(&kd.sw.app_id, data, size) && inside(&kd.tee.app_id, data, size) &&
                inside(&kd.tee.boot_key, data, size) && inside(&kd.tee.boot_hash, data, size),
                "result inside the input");
    appid(&kd.sw.app_id, data, size);
    appid(&kd.tee.app_id, data, size);
    return 0;
}
