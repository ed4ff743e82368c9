/* fuzz_config: the YAML configuration loader (config/).
 *
 * The input is written to a file and loaded with cfg_load, as `portcullis
 * --check` and startup do. "@D@" and "${PKI}" in the input stand for a
 * directory holding a test PKI (server.crt/key, device-ca.crt/key,
 * bootstrap-ca.crt/key, decryption.key, signing.pem, verification.key), so
 * seeds (and test/unit/config_cases) can name real files. Contract: either
 * a config, or at least one "file:line:col: key: message" error.
 *
 * Names are resolved offline (fuzz_offline_resolve, fuzz.h): a seed's
 * resolver section never makes an input wait on the network.
 */
#include "fuzz.h"

static char path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    fuzz_pki();
    pc_dns_set_resolve_hook(fuzz_offline_resolve);   /* never the network */
    snprintf(path, sizeof path, "%s/input.yaml", fuzz_dir());
    /* an admin token variable some seeds name */
    setenv("PORTCULLIS_FUZZ_TOKEN", "0123456789abcdef0123456789abcdef", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = fuzz_dir();
    size_t dl = strlen(d), n = 0;
    char *text = malloc(size * dl + 1), p[512];
    if (!text)
        abort();
    for (size_t i = 0; i < size;) {
        size_t k = size - i >= 3 && memcmp(data + i, "@D@", 3) == 0     ? 3
                 : size - i >= 6 && memcmp(data + i, "${PKI}", 6) == 0 ? 6
                                                                        : 0;
        if (k) {
            memcpy(text + n, d, dl);
            n += dl;
            i += k;
        } else {
            text[n++] = (char)data[i++];
        }
    }
    if (fuzz_write_file("input.yaml", text, n, p, sizeof p) < 0)
        abort();
    free(text);
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    FUZZ_ASSERT(cfg || errs.n > 0, "cfg_load failed without saying why");
    FUZZ_ASSERT(!cfg || errs.n == 0, "cfg_load returned a config and errors");
    for (size_t i = 0; i < errs.n; i++) {
        if (getenv("FUZZ_VERBOSE"))   /* to see why a seed does not load */
            fprintf(stderr, "%s\n", errs.msgs[i]);
        FUZZ_ASSERT(strncmp(errs.msgs[i], path, strlen(path)) == 0 && errs.msgs[i][strlen(path)] == ':',
                    "an error without file:line:col");
    }
    cfg_free(cfg);
    cfg_errors_free(&errs);
    return 0;
}
