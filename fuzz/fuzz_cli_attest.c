/* fuzz_cli_attest: the pure input parsers of `portcullis verify-attestation`
 * (gateway/cli_attest.h): gw_rfc3339_ms, gw_b64_32 and gw_attest_body.
 *
 * Contracts checked: gw_rfc3339_ms returns 0 or -1 and leaves *ms untouched
 * on -1; an accepted time is not before the epoch, and its canonical form
 * (gmtime_r, "YYYY-MM-DDTHH:MM:SS.mmmZ") parses back to the same
 * milliseconds. gw_b64_32 returns 0 or -1 and writes out only on 0.
 * gw_attest_body returns 0 with an object holding "platform" and the token
 * member, or -1 with a static reason and no object.
 * Input layout: byte 0 selects the target (0: time, 1: base64, 2: body as a
 * string token, 3: body as a JSON token); the rest is the input.
 */
#include <jansson.h>
#include <time.h>

#include "fuzz.h"
#include "../gateway/cli_attest.h"

static void fuzz_time(const char *s, size_t n)
{
    int64_t ms = -42;
    int rc = gw_rfc3339_ms(s, n, &ms);
    FUZZ_ASSERT(rc == 0 || rc == -1, "gw_rfc3339_ms: not syscall-like");
    if (rc < 0) {
        FUZZ_ASSERT(ms == -42, "gw_rfc3339_ms: *ms written on failure");
        return;
    }
    FUZZ_ASSERT(ms >= 0, "gw_rfc3339_ms: before the epoch");
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char canon[64];
    FUZZ_ASSERT(gmtime_r(&t, &tm) != NULL, "gmtime_r");
    size_t k = strftime(canon, sizeof canon, "%Y-%m-%dT%H:%M:%S", &tm);
    if (tm.tm_year + 1900 > 9999)
        return;   /* an offset moved it past year 9999: no 4-digit form */
    snprintf(canon + k, sizeof canon - k, ".%03dZ", (int)(ms % 1000));
    int64_t back = -1;
    FUZZ_ASSERT(gw_rfc3339_ms(canon, strlen(canon), &back) == 0 && back == ms,
                "gw_rfc3339_ms: the canonical form does not parse back");
}

static void fuzz_b64(const char *s, size_t n)
{
    unsigned char out[32];
    memset(out, 0xa5, sizeof out);
    int rc = gw_b64_32(s, n, out);
    FUZZ_ASSERT(rc == 0 || rc == -1, "gw_b64_32: not syscall-like");
    if (rc < 0)
        for (size_t i = 0; i < sizeof out; i++)
            FUZZ_ASSERT(out[i] == 0xa5, "gw_b64_32: out written on failure");
}

static void fuzz_body(const char *s, size_t n, int is_json)
{
    json_t *b = (json_t *)1;
    const char *err = NULL;
    int rc = gw_attest_body("android", "attestation", is_json, s, n, "nonce", NULL, NULL, &b, &err);
    FUZZ_ASSERT(rc == 0 || rc == -1, "gw_attest_body: not syscall-like");
    if (rc < 0) {
        FUZZ_ASSERT(!b && err && *err, "gw_attest_body: failure without a reason, or an object");
        return;
    }
    FUZZ_ASSERT(b && json_is_object(b) && json_object_get(b, "platform") &&
                    json_object_get(b, "attestation"), "gw_attest_body: members missing");
    json_decref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *s = malloc(size);   /* not NUL-terminated: the parsers take a length */
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    switch (data[0] % 4) {
    case 0: fuzz_time(s, size - 1); break;
    case 1: fuzz_b64(s, size - 1); break;
    default: fuzz_body(s, size - 1, data[0] % 4 == 3); break;
    }
    free(s);
    return 0;
}
