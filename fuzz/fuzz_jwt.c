/* fuzz_jwt: bearer-token JWT verification (policy/jwt.c pol_jwt_verify) and
 * its base64url decoder.
 *
 * Byte 0 picks the mode; the rest is the input.
 *   bit 0 clear: the input is the token itself (header, signature and key
 *                selection checks, the decoders).
 *   bit 0 set:   the input is "<header JSON>\n<payload JSON>"; it is signed
 *                with the test key (ES256, JWKS kid "k1"), so the claim
 *                checks after the signature are reached too.
 *   bit 1:       the route binds tokens to the client certificate (RFC 8705).
 *   bit 2:       also decode the input with pol_b64url_decode.
 * Contract: 0 only with an "exp" in the future of now and claims that are
 * printable; -1 always with error and description set.
 */
#include "../policy/jwt.h"

#include "fuzz.h"

static pol_jwks_t *keys;
static char *aud[] = {"api", "other"};
static cfg_claim_header_t claims[] = {{"sub", "X-Token-Subject"}, {"scope", "X-Token-Scope"},
                                      {"n", "X-Token-N"}};
static cfg_jwt_t jcfg = {
    .issuer = "https://issuer.example",
    .audiences = aud,
    .naudiences = 2,
    .leeway_ms = 30000,
    .algorithms = CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA,
    .claims = claims,
    .nclaims = 3,
};
#define NOW 1800000000
#define X5T "2mAGbJ8q0bHjhTo7QnoY6RrU2Ww8Ppk5mJ1QqVUMf5Q"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/jwks.json", fuzz_pki());
    if (!(keys = pol_jwks_load(path, err, sizeof err))) {
        fprintf(stderr, "fuzz_jwt: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 3 * POL_JWT_MAX_TOKEN)
        return 0;
    int mode = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    if (mode & 4) {
        size_t cap = n * 3 / 4 + 3;
        unsigned char *out = malloc(cap);
        long r = pol_b64url_decode((const char *)in, n, out, cap);
        FUZZ_ASSERT(r >= -1 && r <= (long)cap, "pol_b64url_decode: result out of range");
        free(out);
    }
    char *token;
    if (mode & 1) {
        const uint8_t *nl = memchr(in, '\n', n);
        size_t hl = nl ? (size_t)(nl - in) : n;
        token = fuzz_jws(fuzz_signing_key(), in, hl, nl ? nl + 1 : in + n, nl ? n - hl - 1 : 0);
    } else {
        token = fuzz_strndup(in, n);
    }
    jcfg.bind_to_certificate = (mode & 2) != 0;
    pol_jwt_result_t res;
    int rc = pol_jwt_verify(&jcfg, keys, token, strlen(token) < n || !(mode & 1) ? n : strlen(token),
                            X5T, NOW, &res);
    FUZZ_ASSERT(rc == 0 || rc == -1, "pol_jwt_verify: not syscall-like");
    if (rc == 0) {
        FUZZ_ASSERT(!res.error && res.nclaims <= CFG_JWT_MAX_CLAIMS, "a valid token with an error");
        for (size_t i = 0; i < res.nclaims; i++)
            for (const char *c = res.claims[i].value; *c; c++)
                FUZZ_ASSERT(*c >= 0x20 && *c < 0x7f, "an injected claim is not printable ASCII");
    } else {
        FUZZ_ASSERT(res.error && res.description, "a refusal without error/description");
        for (const char *c = res.description; *c; c++)
            FUZZ_ASSERT(*c != '"' && *c != '\\' && *c >= 0x20 && *c < 0x7f,
                        "a description unsafe inside a quoted header value");
    }
    free(token);
    return 0;
}
