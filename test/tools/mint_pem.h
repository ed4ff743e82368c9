/* Test helper: the PEM file and hex argument handling that the minting tools
 * (mint-appattest, mint-keyattest) share. Each returns NULL or -1 on any
 * failure and leaves the message to its caller. */
#ifndef PORTCULLIS_TOOLS_MINT_PEM_H
#define PORTCULLIS_TOOLS_MINT_PEM_H

#include <openssl/evp.h>
#include <openssl/x509.h>

/* 64 hex digits into out: 0, or -1 when s is NULL or not that. */
int mint_hex32(const char *s, unsigned char out[32]);

/* dir/name with the certificate x and/or the private key k (each when not
 * NULL), in PEM: 0, or -1. */
int mint_write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k);

/* The first PEM certificate of dir/name, or NULL. */
X509 *mint_read_cert(const char *dir, const char *name);

/* The PEM private key in the file path, or NULL. */
EVP_PKEY *mint_read_key(const char *path);

#endif
