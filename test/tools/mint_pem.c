/* The PEM file and hex argument handling the minting tools share; see mint_pem.h. */
#include "mint_pem.h"

#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

int mint_hex32(const char *s, unsigned char out[32])
{
    if (!s || strlen(s) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

int mint_write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = (!x || PEM_write_X509(f, x)) && (!k || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
    return fclose(f) == 0 && ok ? 0 : -1;
}

X509 *mint_read_cert(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return x;
}

EVP_PKEY *mint_read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return k;
}
