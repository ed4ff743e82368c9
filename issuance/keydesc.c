/* keydesc.c: the Android KeyDescription extension, parsed on OpenSSL's
 * ASN.1 primitives. Contracts and the ASN.1 it reads: keydesc.h. */
#include "keydesc.h"

#include <limits.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>

/* One TLV: its header at hdr (total bytes hdr..c+len), content c[0..len). */
typedef struct {
    int tag, cls, cons;
    const unsigned char *hdr, *c;
    size_t total, len;
} tlv_t;

/* A cursor over p..end. */
typedef struct {
    const unsigned char *p, *end;
} rd_t;

/* The next TLV of r (definite length, inside r). 0, or -1 (malformed, or
 * nothing left). */
static int next(rd_t *r, tlv_t *t)
{
    if (r->p >= r->end)
        return -1;
    const unsigned char *p = r->p;
    long l = 0;
    int tag = 0, cls = 0;
    int rc = ASN1_get_object(&p, &l, &tag, &cls, (long)(r->end - r->p));
    ERR_clear_error();
    if ((rc & 0x80) || (rc & 1) || l < 0 || (size_t)l > (size_t)(r->end - p))
        return -1;
    t->tag = tag;
    t->cls = cls;
    t->cons = (rc & V_ASN1_CONSTRUCTED) != 0;
    t->hdr = r->p;
    t->c = p;
    t->len = (size_t)l;
    t->total = (size_t)(p - r->p) + t->len;
    r->p = p + l;
    return 0;
}

/* The content of t as a cursor. */
static rd_t inside(const tlv_t *t)
{
    rd_t r = {t->c, t->c + t->len};
    return r;
}

/* The next TLV, required to be universal tag `tag` (constructed or not as
 * cons). Boolean. */
static int expect(rd_t *r, tlv_t *t, int tag, int cons)
{
    return next(r, t) == 0 && t->cls == V_ASN1_UNIVERSAL && t->tag == tag && t->cons == cons;
}

/* An INTEGER (enumerated: an ENUMERATED) within int64, by d2i. Boolean. */
static int get_int(const tlv_t *t, int enumerated, int64_t *out)
{
    const unsigned char *p = t->hdr;
    int ok;
    if (t->total > LONG_MAX)
        return 0;
    if (enumerated) {
        ASN1_ENUMERATED *e = d2i_ASN1_ENUMERATED(NULL, &p, (long)t->total);
        ok = e && p == t->hdr + t->total && ASN1_ENUMERATED_get_int64(out, e) == 1;
        ASN1_ENUMERATED_free(e);
    } else {
        ASN1_INTEGER *i = d2i_ASN1_INTEGER(NULL, &p, (long)t->total);
        ok = i && p == t->hdr + t->total && ASN1_INTEGER_get_int64(out, i) == 1;
        ASN1_INTEGER_free(i);
    }
    ERR_clear_error();
    return ok;
}

/* The next element: an INTEGER / ENUMERATED into *out. Boolean. */
static int next_int(rd_t *r, int enumerated, int64_t *out)
{
    tlv_t t;
    return expect(r, &t, enumerated ? V_ASN1_ENUMERATED : V_ASN1_INTEGER, 0) &&
           get_int(&t, enumerated, out);
}

/* A security level or boot state: an ENUMERATED in 0..INT_MAX. Boolean. */
static int next_enum(rd_t *r, int *out)
{
    int64_t v;
    if (!next_int(r, 1, &v) || v < 0 || v > INT_MAX)
        return 0;
    *out = (int)v;
    return 1;
}

/* The next element: a primitive OCTET STRING. Boolean. */
static int next_octets(rd_t *r, iss_kd_bytes_t *out)
{
    tlv_t t;
    if (!expect(r, &t, V_ASN1_OCTET_STRING, 0))
        return 0;
    out->p = t.c;
    out->len = t.len;
    return 1;
}

/* ---------------------------------------------------------------- lists */

/* purpose [1]: SET OF INTEGER. */
static int parse_purpose(rd_t r, iss_kd_auth_t *a, const char **err)
{
    tlv_t set;
    if (!expect(&r, &set, V_ASN1_SET, 1) || r.p != r.end) {
        *err = "key description: purpose is not a SET OF INTEGER";
        return -1;
    }
    rd_t s = inside(&set);
    while (s.p < s.end) {
        int64_t v;
        if (!next_int(&s, 0, &v)) {
            *err = "key description: purpose is not a SET OF INTEGER";
            return -1;
        }
        if (v >= 0 && v < 64)
            a->purposes |= (uint64_t)1 << v;
    }
    a->has_purpose = 1;
    return 0;
}

/* rootOfTrust [704]: SEQUENCE { key, locked, state, hash (v3+), ... }. */
static int parse_rot(rd_t r, iss_kd_auth_t *a, const char **err)
{
    tlv_t seq, b;
    *err = "key description: rootOfTrust is malformed";
    if (!expect(&r, &seq, V_ASN1_SEQUENCE, 1) || r.p != r.end)
        return -1;
    rd_t s = inside(&seq);
    if (!next_octets(&s, &a->boot_key) || !expect(&s, &b, V_ASN1_BOOLEAN, 0) || b.len != 1 ||
        (b.c[0] != 0 && b.c[0] != 0xff) || !next_enum(&s, &a->boot_state))
        return -1;
    a->device_locked = b.c[0] == 0xff;
    if (s.p < s.end && !next_octets(&s, &a->boot_hash))
        return -1;
    a->has_root_of_trust = 1;
    return 0;
}

/* attestationApplicationId [709]: OCTET STRING. */
static int parse_appid_field(rd_t r, iss_kd_auth_t *a, const char **err)
{
    if (!next_octets(&r, &a->app_id) || r.p != r.end) {
        *err = "key description: attestationApplicationId is not an OCTET STRING";
        return -1;
    }
    return 0;   /* app_id.p is never NULL once read, even when empty */
}

/* origin [702]: INTEGER. */
static int parse_origin(rd_t r, iss_kd_auth_t *a, const char **err)
{
    if (!next_int(&r, 0, &a->origin) || r.p != r.end) {
        *err = "key description: origin is not an INTEGER";
        return -1;
    }
    a->has_origin = 1;
    return 0;
}

/* An AuthorizationList: every element an EXPLICIT context tag; the four
 * read here at most once, every other tag skipped. */
static int parse_auth(const tlv_t *list, iss_kd_auth_t *a, const char **err)
{
    rd_t r = inside(list);
    int seen_purpose = 0, seen_origin = 0, seen_rot = 0, seen_app = 0;
    while (r.p < r.end) {
        tlv_t t;
        if (next(&r, &t) < 0 || t.cls != V_ASN1_CONTEXT_SPECIFIC || !t.cons) {
            *err = "key description: authorization list entry is not an explicit tag";
            return -1;
        }
        int *seen = t.tag == 1 ? &seen_purpose : t.tag == 702 ? &seen_origin
                  : t.tag == 704 ? &seen_rot : t.tag == 709 ? &seen_app : NULL;
        if (!seen)
            continue;
        if ((*seen)++) {
            *err = "key description: an authorization appears twice in one list";
            return -1;
        }
        int rc = t.tag == 1 ? parse_purpose(inside(&t), a, err)
               : t.tag == 702 ? parse_origin(inside(&t), a, err)
               : t.tag == 704 ? parse_rot(inside(&t), a, err)
               : parse_appid_field(inside(&t), a, err);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- entry points */

int iss_keydesc_parse(const unsigned char *der, size_t len, iss_keydesc_t *out,
                      const char **err)
{
    tlv_t top, sw, tee;
    memset(out, 0, sizeof *out);
    if (!der || len == 0 || len > ISS_KD_MAX_DER) {
        *err = "key description missing or too large";
        return -1;
    }
    rd_t r = {der, der + len};
    if (!expect(&r, &top, V_ASN1_SEQUENCE, 1) || r.p != r.end) {
        *err = "key description is not one DER SEQUENCE";
        return -1;
    }
    rd_t s = inside(&top);
    *err = "key description: version or security level malformed";
    if (!next_int(&s, 0, &out->attestation_version) || !next_enum(&s, &out->attestation_level) ||
        !next_int(&s, 0, &out->keymaster_version) || !next_enum(&s, &out->keymaster_level))
        goto fail;
    *err = "key description: attestationChallenge or uniqueId is not an OCTET STRING";
    if (!next_octets(&s, &out->challenge) || !next_octets(&s, &out->unique_id))
        goto fail;
    if (!expect(&s, &sw, V_ASN1_SEQUENCE, 1) || !expect(&s, &tee, V_ASN1_SEQUENCE, 1)) {
        *err = "key description: authorization lists missing or malformed";
        goto fail;
    }
    if (parse_auth(&sw, &out->sw, err) < 0 || parse_auth(&tee, &out->tee, err) < 0)
        goto fail;
    while (s.p < s.end) {   /* fields a later version may add: well formed, skipped */
        tlv_t t;
        if (next(&s, &t) < 0) {
            *err = "key description: malformed data after the authorization lists";
            goto fail;
        }
    }
    return 0;
fail:
    memset(out, 0, sizeof *out);
    return -1;
}

int iss_keydesc_appid(const unsigned char *der, size_t len, iss_kd_appid_t *out,
                      const char **err)
{
    tlv_t top, pk, dg;
    memset(out, 0, sizeof *out);
    if (!der || len == 0 || len > ISS_KD_MAX_DER) {
        *err = "attestation application id missing or too large";
        return -1;
    }
    rd_t r = {der, der + len};
    *err = "attestation application id is malformed";
    if (!expect(&r, &top, V_ASN1_SEQUENCE, 1) || r.p != r.end)
        goto fail;
    rd_t s = inside(&top);
    if (!expect(&s, &pk, V_ASN1_SET, 1) || !expect(&s, &dg, V_ASN1_SET, 1))
        goto fail;
    rd_t p = inside(&pk);
    while (p.p < p.end) {
        tlv_t info;
        if (out->npackages == ISS_KD_MAX_PACKAGES) {
            *err = "attestation application id: too many package infos";
            goto fail;
        }
        if (!expect(&p, &info, V_ASN1_SEQUENCE, 1))
            goto fail;
        rd_t i = inside(&info);
        if (!next_octets(&i, &out->packages[out->npackages].name) ||
            !next_int(&i, 0, &out->packages[out->npackages].version) || i.p != i.end)
            goto fail;
        out->npackages++;
    }
    rd_t d = inside(&dg);
    while (d.p < d.end) {
        if (out->ndigests == ISS_KD_MAX_DIGESTS) {
            *err = "attestation application id: too many signature digests";
            goto fail;
        }
        if (!next_octets(&d, &out->digests[out->ndigests]))
            goto fail;
        out->ndigests++;
    }
    return 0;
fail:
    memset(out, 0, sizeof *out);
    return -1;
}
