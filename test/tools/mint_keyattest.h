/* mint_keyattest.h: builds Android KeyDescription extensions (DER) for the
 * tests: the mint-keyattest tool and test/unit/test_keydesc.c. Header-only,
 * test code: a small DER writer, no parsing. The structure is the one
 * issuance/keydesc.h documents. */
#ifndef PORTCULLIS_TEST_MINT_KEYATTEST_H
#define PORTCULLIS_TEST_MINT_KEYATTEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing byte buffer; allocation failure aborts (test code). */
typedef struct {
    unsigned char *p;
    size_t len, cap;
} kd_buf_t;

static void kd_put(kd_buf_t *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 64;
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            abort();
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* Appends a TLV: cls 0 universal, 2 context; cons; tag number any size. */
static void kd_tlv(kd_buf_t *b, int cls, int cons, unsigned tag, const void *c, size_t n)
{
    unsigned char h[16];
    size_t k = 0;
    unsigned char first = (unsigned char)((cls << 6) | (cons ? 0x20 : 0));
    if (tag < 31) {
        h[k++] = (unsigned char)(first | tag);
    } else {
        unsigned char t[8];
        size_t m = 0;
        h[k++] = (unsigned char)(first | 0x1f);
        do {
            t[m++] = (unsigned char)(tag & 0x7f);
            tag >>= 7;
        } while (tag);
        while (m--)
            h[k++] = (unsigned char)(t[m] | (m ? 0x80 : 0));
    }
    if (n < 128) {
        h[k++] = (unsigned char)n;
    } else {
        unsigned char l[8];
        size_t m = 0;
        for (size_t v = n; v; v >>= 8)
            l[m++] = (unsigned char)(v & 0xff);
        h[k++] = (unsigned char)(0x80 | m);
        while (m--)
            h[k++] = l[m];
    }
    kd_put(b, h, k);
    kd_put(b, c, n);
}

/* Wraps b's whole content in a TLV (b becomes that TLV). */
static void kd_wrap(kd_buf_t *b, int cls, int cons, unsigned tag)
{
    kd_buf_t o = {0};
    kd_tlv(&o, cls, cons, tag, b->p, b->len);
    free(b->p);
    *b = o;
}

/* A minimal two's complement INTEGER (or ENUMERATED, tag 10). */
static void kd_int(kd_buf_t *b, unsigned tag, int64_t v)
{
    unsigned char t[9];
    size_t n = 0;
    for (int i = 7; i >= 0; i--)
        t[n++] = (unsigned char)((uint64_t)v >> (i * 8));
    size_t s = 0;
    while (s < 7 && ((t[s] == 0 && !(t[s + 1] & 0x80)) || (t[s] == 0xff && (t[s + 1] & 0x80))))
        s++;
    kd_tlv(b, 0, 0, tag, t + s, n - s);
}

static void kd_octets(kd_buf_t *b, const void *p, size_t n)
{
    kd_tlv(b, 0, 0, 4, p, n);
}

/* Appends TLV [tag] EXPLICIT around inner's content. */
static void kd_explicit(kd_buf_t *b, unsigned tag, const kd_buf_t *inner)
{
    kd_tlv(b, 2, 1, tag, inner->p, inner->len);
}

#define KD_F_UNKNOWN_TAGS 1u    /* unknown tags in both lists and after them */
#define KD_F_DUP_PURPOSE 2u     /* purpose twice in teeEnforced */
#define KD_F_SW_ONLY 4u         /* purpose and rootOfTrust in softwareEnforced only */
#define KD_F_NO_APPID 8u        /* no attestationApplicationId */
#define KD_F_NO_ROT 16u         /* no rootOfTrust */
#define KD_F_V2_ROT 32u         /* rootOfTrust without verifiedBootHash */
#define KD_F_NO_ORIGIN 64u      /* no origin in either list */
#define KD_F_SW_ORIGIN 128u     /* origin in softwareEnforced only */
#define KD_F_DUP_ORIGIN 256u    /* origin twice in teeEnforced */

typedef struct {
    int64_t attest_version;      /* 200 (KeyMint 2) */
    int attest_level, km_level;  /* 1 TEE */
    const unsigned char *challenge;
    size_t challenge_len;
    const char *packages[4];     /* NULL-terminated */
    const unsigned char *digests[4];   /* 32 bytes each, NULL-terminated */
    int boot_state;              /* 0 Verified */
    int device_locked;           /* 1 */
    int64_t origin;              /* 0 GENERATED, in teeEnforced (see KD_F_*ORIGIN) */
    const int *purposes;         /* list, npurposes */
    size_t npurposes;
    unsigned faults;             /* KD_F_* */
} kd_opts_t;

static void kd_auth(kd_buf_t *l, const kd_opts_t *o, int tee)
{
    int want_hw = !(o->faults & KD_F_SW_ONLY);
    if (tee == want_hw && o->npurposes) {
        kd_buf_t set = {0};
        for (size_t i = 0; i < o->npurposes; i++)
            kd_int(&set, 2, o->purposes[i]);
        kd_wrap(&set, 0, 1, 17);
        kd_explicit(l, 1, &set);
        if (tee && (o->faults & KD_F_DUP_PURPOSE))
            kd_explicit(l, 1, &set);
        free(set.p);
    }
    kd_buf_t alg = {0};
    kd_int(&alg, 2, 3);   /* algorithm EC */
    kd_explicit(l, 2, &alg);
    free(alg.p);
    int origin_here = !(o->faults & KD_F_NO_ORIGIN) && tee == !(o->faults & KD_F_SW_ORIGIN);
    if (origin_here) {
        kd_buf_t org = {0};
        kd_int(&org, 2, o->origin);
        kd_explicit(l, 702, &org);
        if (tee && (o->faults & KD_F_DUP_ORIGIN))
            kd_explicit(l, 702, &org);
        free(org.p);
    }
    if (o->faults & KD_F_UNKNOWN_TAGS) {
        kd_buf_t u = {0};
        kd_octets(&u, "future", 6);
        kd_explicit(l, 9999, &u);
        kd_explicit(l, 718, &u);
        free(u.p);
    }
    if (tee == want_hw && !(o->faults & KD_F_NO_ROT)) {
        kd_buf_t r = {0};
        unsigned char key[32], hash[32];
        memset(key, 0xab, sizeof key);
        memset(hash, 0xcd, sizeof hash);
        kd_octets(&r, key, sizeof key);
        kd_tlv(&r, 0, 0, 1, o->device_locked ? "\xff" : "\x00", 1);
        kd_int(&r, 10, o->boot_state);
        if (!(o->faults & KD_F_V2_ROT))
            kd_octets(&r, hash, sizeof hash);
        kd_wrap(&r, 0, 1, 16);
        kd_explicit(l, 704, &r);
        free(r.p);
    }
    if (!tee && !(o->faults & KD_F_NO_APPID)) {
        kd_buf_t pk = {0}, dg = {0}, app = {0}, oct = {0};
        for (size_t i = 0; i < 4 && o->packages[i]; i++) {
            kd_buf_t info = {0};
            kd_octets(&info, o->packages[i], strlen(o->packages[i]));
            kd_int(&info, 2, 42);
            kd_wrap(&info, 0, 1, 16);
            kd_put(&pk, info.p, info.len);
            free(info.p);
        }
        kd_wrap(&pk, 0, 1, 17);
        for (size_t i = 0; i < 4 && o->digests[i]; i++)
            kd_octets(&dg, o->digests[i], 32);
        kd_wrap(&dg, 0, 1, 17);
        kd_put(&app, pk.p, pk.len);
        kd_put(&app, dg.p, dg.len);
        kd_wrap(&app, 0, 1, 16);
        kd_octets(&oct, app.p, app.len);
        kd_explicit(l, 709, &oct);
        free(pk.p);
        free(dg.p);
        free(app.p);
        free(oct.p);
    }
    kd_wrap(l, 0, 1, 16);
}

/* The KeyDescription DER for o, malloc'ed into *der (free()), length *len. */
static void kd_build(const kd_opts_t *o, unsigned char **der, size_t *len)
{
    kd_buf_t b = {0}, sw = {0}, tee = {0};
    kd_int(&b, 2, o->attest_version);
    kd_int(&b, 10, o->attest_level);
    kd_int(&b, 2, o->attest_version);
    kd_int(&b, 10, o->km_level);
    kd_octets(&b, o->challenge, o->challenge_len);
    kd_octets(&b, "", 0);
    kd_auth(&sw, o, 0);
    kd_auth(&tee, o, 1);
    kd_put(&b, sw.p, sw.len);
    kd_put(&b, tee.p, tee.len);
    if (o->faults & KD_F_UNKNOWN_TAGS)
        kd_int(&b, 2, 7);   /* a field a later version might append */
    kd_wrap(&b, 0, 1, 16);
    free(sw.p);
    free(tee.p);
    *der = b.p;
    *len = b.len;
}

#endif
