/* mint-integrity: makes Play-Integrity-shaped tokens for tests.
 *
 *   mint-integrity --gen-keys DIR
 *       writes DIR/decryption.key (base64 AES-256), DIR/signing.pem (EC P-256
 *       private key), both mode 0600, and DIR/verification.key (base64 DER
 *       public key); refuses to replace existing files
 *
 *   mint-integrity --decryption-key-file F --signing-key PEM --nonce N
 *                  --package P --cert-digest D [--app-verdict PLAY_RECOGNIZED]
 *                  [--device-verdicts MEETS_DEVICE_INTEGRITY,...]
 *                  [--timestamp-ms T] [--request-package P2]
 *                  [--jwe-alg A] [--jwe-enc E] [--jws-alg S]
 *       prints the token on stdout
 *
 * --cert-digest takes base64url or 64 hex digits (the latter is converted).
 * Exit status: 0 success, 2 usage, 1 failure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mint_integrity.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: mint-integrity --gen-keys DIR\n"
            "       mint-integrity --decryption-key-file F --signing-key PEM --nonce N\n"
            "                      --package P --cert-digest D [--app-verdict V]\n"
            "                      [--device-verdicts A,B] [--timestamp-ms T]\n"
            "                      [--request-package P] [--jwe-alg A] [--jwe-enc E] "
            "[--jws-alg S]\n");
    exit(2);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65537);
    size_t n = buf ? fread(buf, 1, 65536, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static int load_kek(const char *path, unsigned char kek[32])
{
    char *text = slurp(path), clean[128];
    size_t n = 0;
    unsigned char out[128];
    if (!text)
        return -1;
    for (char *p = text; *p && n < sizeof clean - 1; p++)
        if (!isspace((unsigned char)*p))
            clean[n++] = *p;
    clean[n] = '\0';
    free(text);
    int r = n % 4 == 0 && n ? EVP_DecodeBlock(out, (unsigned char *)clean, (int)n) : -1;
    if (r < 0)
        return -1;
    r -= (n > 0 && clean[n - 1] == '=') + (n > 1 && clean[n - 2] == '=');
    if (r != 32)
        return -1;
    memcpy(kek, out, 32);
    return 0;
}

/* 64 hex digits -> base64url, else the text as given. */
static const char *digest_arg(const char *s, char *buf)
{
    unsigned char raw[32];
    if (strlen(s) != 64)
        return s;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) ||
            sscanf(s + 2 * i, "%2x", &v) != 1)
            return s;
        raw[i] = (unsigned char)v;
    }
    mint_b64url(raw, 32, buf);
    return buf;
}

int main(int argc, char **argv)
{
    const char *gen = NULL, *kek_file = NULL, *sign_file = NULL, *digest = NULL;
    char digbuf[64];
    mint_opts_t o;
    memset(&o, 0, sizeof o);
    o.app_verdict = "PLAY_RECOGNIZED";
    o.device_verdicts = "MEETS_DEVICE_INTEGRITY,MEETS_BASIC_INTEGRITY";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o.timestamp_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--gen-keys"))
            gen = v;
        else if (!strcmp(a, "--decryption-key-file"))
            kek_file = v;
        else if (!strcmp(a, "--signing-key"))
            sign_file = v;
        else if (!strcmp(a, "--nonce"))
            o.nonce = v;
        else if (!strcmp(a, "--package"))
            o.package = v;
        else if (!strcmp(a, "--request-package"))
            o.request_package = v;
        else if (!strcmp(a, "--cert-digest"))
            digest = v;
        else if (!strcmp(a, "--app-verdict"))
            o.app_verdict = v;
        else if (!strcmp(a, "--device-verdicts"))
            o.device_verdicts = v;
        else if (!strcmp(a, "--timestamp-ms")) {
            char *end;
            errno = 0;
            long long t = strtoll(v, &end, 10);
            if (errno || *end || t < 0)
                usage();
            o.timestamp_ms = t;
        } else if (!strcmp(a, "--jwe-alg"))
            o.jwe_alg = v;
        else if (!strcmp(a, "--jwe-enc"))
            o.jwe_enc = v;
        else if (!strcmp(a, "--jws-alg"))
            o.jws_alg = v;
        else
            usage();
    }
    if (gen) {
        errno = 0;
        if (mint_gen_keys(gen) < 0) {
            fprintf(stderr, "mint-integrity: cannot write keys into %s: %s\n", gen,
                    errno ? strerror(errno) : "OpenSSL error");
            return 1;
        }
        return 0;
    }
    if (!kek_file || !sign_file || !o.nonce || !o.package || !digest)
        usage();
    unsigned char kek[32];
    if (load_kek(kek_file, kek) < 0) {
        fprintf(stderr, "mint-integrity: %s does not hold a base64 AES-256 key\n", kek_file);
        return 1;
    }
    FILE *f = fopen(sign_file, "rb");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!k) {
        fprintf(stderr, "mint-integrity: cannot read the EC private key %s\n", sign_file);
        return 1;
    }
    o.kek = kek;
    o.signer = k;
    o.cert_digest = digest_arg(digest, digbuf);
    char *tok = mint_token(&o);
    EVP_PKEY_free(k);
    if (!tok) {
        fprintf(stderr, "mint-integrity: minting failed\n");
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}
