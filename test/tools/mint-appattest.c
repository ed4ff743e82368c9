/* mint-appattest: a test App Attest PKI and minted App Attest objects for
 * the tests (test/integration/test_15_appattest.py). Never for production:
 * its root is not Apple's. Objects are made with test/tools/mint_appattest.h.
 *
 *   mint-appattest pki DIR [--days N]
 *       DIR/root.pem, DIR/root.key, DIR/intermediate.pem, DIR/intermediate.key
 *   mint-appattest key FILE
 *       a new EC P-256 App Attest key (PEM, unencrypted)
 *   mint-appattest attest --pki DIR --key FILE --app-id ID --cdh HEX [--counter N]
 *       [--aaguid production|development] [--valid-from UNIX] [--valid-to UNIX]
 *       [--extra-ext] [--critical-ext] [--trailing N] [--bad-cred-id] [--no-nonce]
 *       [--reencode]   (authData changed after the nonce was computed)
 *       prints {"attestation": base64, "key_id": base64}
 *   mint-appattest assert --key FILE --app-id ID --cdh HEX --counter N
 *       prints {"assertion": base64}
 *
 * HEX is the 32-byte client data hash in hex (64 digits). Exit 0, or 2
 * with a message on standard error. */
#include "mint_appattest.h"
#include "mint_pem.h"

#include <jansson.h>

static int usage(void)
{
    fprintf(stderr, "usage: mint-appattest pki DIR [--days N] | key FILE | attest --pki DIR --key FILE "
                    "--app-id ID --cdh HEX [options] | assert --key FILE --app-id ID --cdh HEX --counter N\n");
    return 2;
}

static void print_b64(const char *name, const unsigned char *p, size_t n, const char *name2,
                      const unsigned char *p2, size_t n2)
{
    char *a = malloc((n + 2) / 3 * 4 + 1), *b = p2 ? malloc((n2 + 2) / 3 * 4 + 1) : NULL;
    EVP_EncodeBlock((unsigned char *)a, p, (int)n);
    json_t *o = json_pack("{s:s}", name, a);
    if (b) {
        EVP_EncodeBlock((unsigned char *)b, p2, (int)n2);
        json_object_set_new(o, name2, json_string(b));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(o);
    free(a);
    free(b);
}

static int cmd_pki(int argc, char **argv)
{
    long days = 30;
    if (argc < 3)
        return usage();
    if (argc == 5 && !strcmp(argv[3], "--days"))
        days = atol(argv[4]);
    else if (argc != 3)
        return usage();
    time_t now = time(NULL);
    X509 *root, *inter;
    EVP_PKEY *rk, *ik;
    if (mint_aa_pki(now - 86400, now + days * 86400, &root, &rk, &inter, &ik) < 0 ||
        mint_write_pem(argv[2], "root.pem", root, NULL) < 0 || mint_write_pem(argv[2], "root.key", NULL, rk) < 0 ||
        mint_write_pem(argv[2], "intermediate.pem", inter, NULL) < 0 ||
        mint_write_pem(argv[2], "intermediate.key", NULL, ik) < 0) {
        fprintf(stderr, "mint-appattest: cannot write the PKI into %s\n", argv[2]);
        return 2;
    }
    return 0;
}

static int cmd_attest(int argc, char **argv)
{
    const char *pki = NULL, *key = NULL, *cdh_hex = NULL;
    unsigned char cdh[32];
    time_t now = time(NULL);
    mint_aa_opts_t o = {.not_before = now - 3600, .not_after = now + 3 * 86400};
    int reencode = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--extra-ext"))
            o.extra_ext = 1;
        else if (!strcmp(a, "--critical-ext"))
            o.critical_ext = 1;
        else if (!strcmp(a, "--bad-cred-id"))
            o.bad_cred_id = 1;
        else if (!strcmp(a, "--no-nonce"))
            o.no_nonce = 1;
        else if (!strcmp(a, "--reencode"))
            reencode = 1;
        else if (!v)
            return usage();
        else if (!strcmp(a, "--pki") && ++i)
            pki = v;
        else if (!strcmp(a, "--key") && ++i)
            key = v;
        else if (!strcmp(a, "--app-id") && ++i)
            o.app_id = v;
        else if (!strcmp(a, "--cdh") && ++i)
            cdh_hex = v;
        else if (!strcmp(a, "--counter") && ++i)
            o.counter = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--aaguid") && ++i)
            o.aaguid = !strcmp(v, "development") ? mint_aa_dev : mint_aa_prod;
        else if (!strcmp(a, "--valid-from") && ++i)
            o.not_before = (time_t)atoll(v);
        else if (!strcmp(a, "--valid-to") && ++i)
            o.not_after = (time_t)atoll(v);
        else if (!strcmp(a, "--trailing") && ++i)
            o.trailing = (size_t)atol(v);
        else
            return usage();
    }
    if (!pki || !key || !o.app_id || mint_hex32(cdh_hex, cdh) < 0)
        return usage();
    o.cdh = cdh;
    char path[1024];
    snprintf(path, sizeof path, "%s/intermediate.key", pki);
    o.ca = mint_read_cert(pki, "intermediate.pem");
    o.ca_key = mint_read_key(path);
    o.key = mint_read_key(key);
    if (!o.ca || !o.ca_key || !o.key) {
        fprintf(stderr, "mint-appattest: cannot read the PKI in %s or the key %s\n", pki, key);
        return 2;
    }
    size_t len;
    unsigned char *obj = mint_aa_attestation(&o, &len), id[32];
    if (reencode) {
        unsigned char *re = mint_aa_reencode(obj, len, &len);
        free(obj);
        obj = re;
    }
    mint_aa_key_id(o.key, id);
    print_b64("attestation", obj, len, "key_id", id, 32);
    free(obj);
    return 0;
}

static int cmd_assert(int argc, char **argv)
{
    const char *key = NULL, *app = NULL, *cdh_hex = NULL, *counter = NULL;
    unsigned char cdh[32];
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--key"))
            key = argv[i + 1];
        else if (!strcmp(argv[i], "--app-id"))
            app = argv[i + 1];
        else if (!strcmp(argv[i], "--cdh"))
            cdh_hex = argv[i + 1];
        else if (!strcmp(argv[i], "--counter"))
            counter = argv[i + 1];
        else
            return usage();
    }
    EVP_PKEY *k = key ? mint_read_key(key) : NULL;
    if (!k || !app || !counter || mint_hex32(cdh_hex, cdh) < 0)
        return usage();
    size_t len;
    unsigned char *obj = mint_aa_assertion(k, app, cdh, (uint32_t)strtoul(counter, NULL, 10), &len);
    print_b64("assertion", obj, len, NULL, NULL, 0);
    free(obj);
    EVP_PKEY_free(k);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "pki"))
        return cmd_pki(argc, argv);
    if (!strcmp(argv[1], "key") && argc == 3) {
        EVP_PKEY *k = mint_aa_key();
        FILE *f = fopen(argv[2], "w");
        int ok = k && f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
        if (f)
            fclose(f);
        EVP_PKEY_free(k);
        return ok ? 0 : 2;
    }
    if (!strcmp(argv[1], "attest"))
        return cmd_attest(argc, argv);
    if (!strcmp(argv[1], "assert"))
        return cmd_assert(argc, argv);
    return usage();
}
