/* Unit tests: the pure helpers of `portcullis verify-attestation`
 * (gateway/cli_attest.c): the --at parser, the --client-data-hash decoder
 * and the request body built from a token file. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../../gateway/cli_attest.h"
#include "check.h"

static int at(const char *s, int64_t *ms)
{
    return gw_rfc3339_ms(s, strlen(s), ms);
}

/* The same instant through the C library, for cross-checking. */
static int64_t libc_ms(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000;
}

static void test_rfc3339(void)
{
    int64_t ms = 0;
    CHECK(at("1970-01-01T00:00:00Z", &ms) == 0 && ms == 0, "the epoch");
    CHECK(at("2026-12-02T10:00:00Z", &ms) == 0 && ms == 1796205600000LL, "a date in 2026");
    CHECK(at("2026-12-02t10:00:00z", &ms) == 0 && ms == 1796205600000LL, "t and z lowercase");
    CHECK(at("2026-12-02T10:00:00.5Z", &ms) == 0 && ms == 1796205600500LL, "one fraction digit");
    CHECK(at("2026-12-02T10:00:00.123456789Z", &ms) == 0 && ms == 1796205600123LL,
          "nine fraction digits, truncated to ms");
    CHECK(at("2026-12-02T11:30:00+01:30", &ms) == 0 && ms == 1796205600000LL, "a positive offset");
    CHECK(at("2026-12-02T05:00:00-05:00", &ms) == 0 && ms == 1796205600000LL, "a negative offset");
    CHECK(at("2024-02-29T00:00:00Z", &ms) == 0 && ms == libc_ms(2024, 2, 29, 0, 0, 0), "leap day");
    CHECK(at("2000-02-29T23:59:59Z", &ms) == 0 && ms == libc_ms(2000, 2, 29, 23, 59, 59),
          "leap day of a year divisible by 400");
    CHECK(at("2016-12-31T23:59:60Z", &ms) == 0 && ms == libc_ms(2017, 1, 1, 0, 0, 0),
          "a leap second reads as the next minute");
    CHECK(at("9999-12-31T23:59:59Z", &ms) == 0 && ms == libc_ms(9999, 12, 31, 23, 59, 59),
          "the last representable second");
    for (int y = 1970; y < 2400; y += 7)
        for (int m = 1; m <= 12; m += 5) {
            char s[48];
            snprintf(s, sizeof s, "%04d-%02d-28T13:14:15Z", y, m);
            if (at(s, &ms) != 0 || ms != libc_ms(y, m, 28, 13, 14, 15)) {
                CHECK(0, s);
                return;
            }
        }
    CHECK(1, "agrees with timegm over four centuries");
    static const char *const bad[] = {
        "", "2026-12-02", "2026-12-02T10:00:00", "2026-12-02 10:00:00Z", "2026-12-02T10:00Z",
        "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
        "2026-00-10T00:00:00Z", "2026-13-10T00:00:00Z", "2026-12-00T00:00:00Z",
        "2026-12-02T24:00:00Z", "2026-12-02T10:60:00Z", "2026-12-02T10:00:61Z",
        "2026-12-02T10:00:00.Z", "2026-12-02T10:00:00.1234567890Z", "2026-12-02T10:00:00+0100",
        "2026-12-02T10:00:00+24:00", "2026-12-02T10:00:00+01:60", "2026-12-02T10:00:00ZZ",
        "2026-12-02T10:00:00Z ", " 2026-12-02T10:00:00Z", "+026-12-02T10:00:00Z",
        "2026-1a-02T10:00:00Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00+00:01",
        "2026-12-02T10:00:00,5Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = 42;
        if (at(bad[i], &ms) != -1 || ms != 42) {
            printf("# accepted %s\n", bad[i]);
            CHECK(0, "refuses what is not RFC 3339");
            return;
        }
    }
    CHECK(1, "refuses what is not RFC 3339, *ms untouched");
    CHECK(gw_rfc3339_ms("2026-12-02T10:00:00Zjunk", 20, &ms) == 0 && ms == 1796205600000LL,
          "reads only len bytes");
    CHECK(gw_rfc3339_ms(NULL, 0, &ms) == -1, "NULL");
}

static void test_b64(void)
{
    unsigned char out[32], want[32];
    for (int i = 0; i < 32; i++)
        want[i] = (unsigned char)(0xf8 + i * 7);
    /* the same 32 bytes in both alphabets (Python: base64.b64encode / urlsafe) */
    static const char std[] = "+P8GDRQbIikwNz5FTFNaYWhvdn2Ei5KZoKeutbzDytE=";
    static const char url[] = "-P8GDRQbIikwNz5FTFNaYWhvdn2Ei5KZoKeutbzDytE";
    memset(out, 0, sizeof out);
    CHECK(gw_b64_32(std, strlen(std), out) == 0 && !memcmp(out, want, 32), "base64 with padding");
    memset(out, 0, sizeof out);
    CHECK(gw_b64_32(url, strlen(url), out) == 0 && !memcmp(out, want, 32), "base64url without");
    CHECK(gw_b64_32("AAAA", 4, out) == -1, "too short");
    CHECK(gw_b64_32("-P8GDRQbIikwNz5FTFNa/Whvdn2Ei5KZoKeutbzDytE", 43, out) == -1,
          "two alphabets mixed");
    CHECK(gw_b64_32("+P8GDRQbIikwNz5FTFNaYWhvdn2Ei5KZoKeutbzDytF", 43, out) == -1,
          "non-canonical trailing bits");
    CHECK(gw_b64_32("+P8GDRQbIikwNz5FTFNaYWhvdn2Ei5KZoKeutbzDyt.", 43, out) == -1,
          "a character of neither alphabet");
}

static void test_body(void)
{
    json_t *b = NULL;
    const char *err = NULL;
    static const char tok[] = "eyJhbGciOi.abc\r\n";
    CHECK(gw_attest_body("android", "integrity_token", 0, tok, strlen(tok), "n0nce", NULL, NULL,
                         &b, &err) == 0, "a string token");
    char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;
    CHECK(s && !strcmp(s, "{\"platform\":\"android\",\"integrity_token\":\"eyJhbGciOi.abc\","
                          "\"nonce\":\"n0nce\"}"), "its body, the CRLF trimmed");
    free(s);
    json_decref(b);
    static const char arr[] = "[\"MIIB\", \"MIIC\"]\n";
    CHECK(gw_attest_body("android", "attestation", 1, arr, strlen(arr), NULL, "a2V5", "PEM", &b,
                         &err) == 0, "a JSON token");
    s = b ? json_dumps(b, JSON_COMPACT) : NULL;
    CHECK(s && !strcmp(s, "{\"platform\":\"android\",\"attestation\":[\"MIIB\",\"MIIC\"],"
                          "\"key_id\":\"a2V5\",\"csr\":\"PEM\"}"), "its body");
    free(s);
    json_decref(b);
    CHECK(gw_attest_body("dev", NULL, 0, "x", 1, NULL, NULL, NULL, &b, &err) == 0 && b &&
          json_object_size(b) == 1, "no member (provider none)");
    json_decref(b);
    CHECK(gw_attest_body("android", "attestation", 1, "[1,", 3, NULL, NULL, NULL, &b, &err) == -1 &&
          !b && !strcmp(err, "the token file is not JSON"), "a JSON token that is not JSON");
    CHECK(gw_attest_body("android", "attestation", 1, "{\"a\":1,\"a\":2}", 13, NULL, NULL, NULL,
                         &b, &err) == -1, "duplicate keys");
    CHECK(gw_attest_body("android", "integrity_token", 0, "\xff\xfe", 2, NULL, NULL, NULL, &b,
                         &err) == -1 && !strcmp(err, "the token file is not UTF-8 text"),
          "a token that is not UTF-8");
    CHECK(gw_attest_body("android", "integrity_token", 0, "\n", 1, NULL, NULL, NULL, &b, &err) == 0 &&
          json_string_length(json_object_get(b, "integrity_token")) == 0, "an empty file: an empty token");
    json_decref(b);
}

int main(void)
{
    test_rfc3339();
    test_b64();
    test_body();
    return check_done();
}
