/* fuzz_jwks: JWKS files (policy/jwt.c pol_jwks_load).
 *
 * The input is written to a file and loaded as a route's jwks_file; a key
 * set that loads is then used to verify one ES256, one RS256-shaped and one
 * EdDSA-shaped token, so key selection (kid, kty, alg, use) runs on the
 * loaded keys. Contract: a set, with at least one usable key and algorithm
 * bits within CFG_JWT_*, or NULL with a reason.
 */
#include "../policy/jwt.h"

#include "fuzz.h"

static char *tokens[3];
static cfg_jwt_t jcfg = {.leeway_ms = 30000,
                         .algorithms = CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    static const char *hdr[3] = {"{\"alg\":\"ES256\",\"kid\":\"k1\"}", "{\"alg\":\"RS256\"}",
                                 "{\"alg\":\"EdDSA\",\"kid\":\"e\"}"};
    static const char pl[] = "{\"sub\":\"u\",\"exp\":1900000000}";
    for (int i = 0; i < 3; i++)
        tokens[i] = fuzz_jws(fuzz_signing_key(), hdr[i], strlen(hdr[i]), pl, strlen(pl));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512], err[256] = "";
    if (fuzz_write_file("jwks-input.json", data, size, path, sizeof path) < 0)
        abort();
    pol_jwks_t *k = pol_jwks_load(path, err, sizeof err);
    if (!k) {
        FUZZ_ASSERT(err[0], "pol_jwks_load refused without a reason");
        return 0;
    }
    FUZZ_ASSERT(pol_jwks_count(k) >= 1, "a key set without a usable key");
    FUZZ_ASSERT((pol_jwks_algorithms(k) & ~(CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA)) == 0,
                "unknown algorithm bits");
    for (int i = 0; i < 3; i++) {
        pol_jwt_result_t res;
        int rc = pol_jwt_verify(&jcfg, k, tokens[i], strlen(tokens[i]), NULL, 1800000000, &res);
        FUZZ_ASSERT(rc == 0 || (rc == -1 && res.error), "pol_jwt_verify: not syscall-like");
    }
    pol_jwks_release(k);
    return 0;
}
