/* Unit tests: integrity levels (docs/issuance.md "Integrity levels"): the
 * level names and their order, the OID parser behind
 * identity.integrity_policies, reading the level back from a certificate's
 * certificatePolicies, and the route gate's min_integrity. */
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "../../policy/policy.h"
#include "../../tls/tls.h"
#include "../../issuance/issuance.h"
#include "check.h"

/* The identity configuration with the default OIDs (as cfg_load sets them). */
static void default_oids(cfg_identity_t *icfg)
{
    memset(icfg, 0, sizeof *icfg);
    icfg->device_id_source = CFG_DEVID_SAN_URI;
    icfg->device_id_prefix = "urn:portcullis:device:";
    for (int i = 0; i < CFG_INT__COUNT; i++) {
        char oid[CFG_OID_TEXT_MAX];
        const char *why;
        snprintf(oid, sizeof oid, "%s.%d", CFG_INTEGRITY_ARC, i);
        if (cfg_oid_parse(oid, &icfg->integrity_oids[i], &why) < 0)
            abort();
    }
    icfg->integrity_classes = 1u;   /* class 0 ("device") */
}

/* A self-signed leaf; policies: a NULL-terminated list of dotted OIDs for
 * one certificatePolicies extension (NULL: none), twice: two extensions. */
static X509 *make_cert(EVP_PKEY *key, const char *const *policies, int twice)
{
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_set_version(x, 2);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"device-1", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    ASN1_TIME_set_string(X509_getm_notBefore(x), "20260101000000Z");
    ASN1_TIME_set_string(X509_getm_notAfter(x), "20261201123456Z");
    X509_set_pubkey(x, key);
    for (int t = 0; policies && t < (twice ? 2 : 1); t++) {
        CERTIFICATEPOLICIES *pols = CERTIFICATEPOLICIES_new();
        for (size_t i = 0; policies[i]; i++) {
            POLICYINFO *pi = POLICYINFO_new();
            ASN1_OBJECT_free(pi->policyid);
            pi->policyid = OBJ_txt2obj(policies[i], 1);
            sk_POLICYINFO_push(pols, pi);
        }
        X509_add1_ext_i2d(x, NID_certificate_policies, pols, 0, X509V3_ADD_APPEND);
        CERTIFICATEPOLICIES_free(pols);
    }
    X509_sign(x, key, EVP_sha256());
    return x;
}

static void test_names(void)
{
    CHECK(CFG_INT_NONE < CFG_INT_BASIC && CFG_INT_BASIC < CFG_INT_DEVICE && CFG_INT_DEVICE < CFG_INT_STRONG &&
              CFG_INT_NONE == 0,
          "levels: none < basic < device < strong, unattested (-1) below none");
    const char *names[] = {"none", "basic", "device", "strong"};
    int ok = 1;
    for (int i = 0; i < CFG_INT__COUNT; i++)
        ok &= !strcmp(cfg_integrity_name(i), names[i]) && cfg_integrity_parse(names[i]) == i;
    CHECK(ok, "levels: names round-trip");
    CHECK(!strcmp(cfg_integrity_name(-1), "unattested") && !strcmp(cfg_integrity_name(4), "unattested") &&
              cfg_integrity_parse("Strong") == -1 && cfg_integrity_parse("") == -1 &&
              cfg_integrity_parse(NULL) == -1,
          "levels: unknown names and values");
}

static void test_oid_parse(void)
{
    cfg_oid_t o;
    const char *why = NULL;
    CHECK(cfg_oid_parse("1.3.6.1.4.1.55555.1", &o, &why) == 0 && o.der_len == 9 &&
              !memcmp(o.der, "\x2b\x06\x01\x04\x01\x83\xb2\x03\x01", 9) && !strcmp(o.text, "1.3.6.1.4.1.55555.1"),
          "oid: a private enterprise arc, DER content octets");
    char big[CFG_OID_TEXT_MAX];
    snprintf(big, sizeof big, "%s.3", CFG_INTEGRITY_ARC);
    ASN1_OBJECT *ref = OBJ_txt2obj(big, 1);
    CHECK(cfg_oid_parse(big, &o, &why) == 0 && ref && o.der_len == (size_t)OBJ_length(ref) &&
              !memcmp(o.der, OBJ_get0_data(ref), o.der_len),
          "oid: the default UUID arc (a 128-bit arc) encodes as OpenSSL does");
    ASN1_OBJECT_free(ref);
    CHECK(cfg_oid_parse("2.999.1", &o, &why) == 0 && cfg_oid_parse("0.0", &o, &why) == 0 &&
              cfg_oid_parse("1.39.0", &o, &why) == 0,
          "oid: 2.999 (X.660 example arc), 0.0, 1.39 accepted");
    struct { const char *s; const char *why; } bad[] = {
        {"", "is empty"},
        {"1", "needs at least two arcs"},
        {"3.1", "must begin with arc 0, 1 or 2"},
        {"10.1", "must begin with arc 0, 1 or 2"},
        {"1.40", "second arc above 39"},
        {"0.100.2", "second arc above 39"},
        {"1.3.06", "leading zero"},
        {"01.3", "leading zero"},
        {"1..3", "not a dotted decimal"},
        {"1.3.", "not a dotted decimal"},
        {".1.3", "not a dotted decimal"},
        {"1.3.6 ", "not a dotted decimal"},
        {"1.3.-6", "not a dotted decimal"},
        {"1.3.a", "not a dotted decimal"},
        {"anyPolicy", "not a dotted decimal"},
        {"+1.3", "not a dotted decimal"},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        int r = cfg_oid_parse(bad[i].s, &o, &why);
        if (r != -1 || !why || !strstr(why, bad[i].why) || o.der_len != 0) {
            printf("#   \"%s\": %d %s\n", bad[i].s, r, why ? why : "(no reason)");
            ok = 0;
        }
    }
    CHECK(ok, "oid: malformed OIDs refused with the reason");
    char longs[300];
    memset(longs, '1', sizeof longs - 1);
    longs[0] = '1', longs[1] = '.';
    longs[sizeof longs - 1] = '\0';
    CHECK(cfg_oid_parse(longs, &o, &why) == -1 && strstr(why, "too long"), "oid: too long refused");
}

static void test_cert_integrity(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    cfg_identity_t icfg;
    default_oids(&icfg);
    char oid[CFG_INT__COUNT][CFG_OID_TEXT_MAX];
    for (int i = 0; i < CFG_INT__COUNT; i++)
        snprintf(oid[i], sizeof oid[i], "%s.%d", CFG_INTEGRITY_ARC, i);

    X509 *x = make_cert(key, NULL, 0);
    tls_identity_t *id = tls_identity_from_cert(x, 0, "device", &icfg);
    CHECK(id && id->integrity == -1, "identity: no certificatePolicies: unattested (-1)");
    unsigned char want[32];
    CHECK(iss_spki_sha256(key, want) == 0 && id && !memcmp(id->spki_sha256, want, 32),
          "identity: spki_sha256 is the SHA-256 of the leaf key's SPKI, as iss_spki_sha256 hashes a CSR key");
    tls_identity_t *rb = id ? tls_identity_rebase(id, 1) : NULL;
    CHECK(rb && !memcmp(rb->spki_sha256, want, 32), "identity: a rebased identity keeps spki_sha256");
    tls_identity_release(rb);
    EVP_PKEY *k2 = EVP_EC_gen("P-256");
    CHECK(iss_spki_sha256(k2, want) == 0 && id && memcmp(id->spki_sha256, want, 32) != 0,
          "identity: another key has another spki_sha256");
    EVP_PKEY_free(k2);
    tls_identity_release(id);
    X509_free(x);

    for (int i = 0; i < CFG_INT__COUNT; i++) {
        const char *p[] = {oid[i], NULL};
        x = make_cert(key, p, 0);
        id = tls_identity_from_cert(x, 0, "device", &icfg);
        char name[80];
        snprintf(name, sizeof name, "identity: the %s OID gives level %s", cfg_integrity_name(i),
                 cfg_integrity_name(i));
        CHECK(id && id->integrity == i, name);
        tls_identity_t *r = id ? tls_identity_rebase(id, 1) : NULL;
        CHECK(r && r->integrity == i, "identity: a rebased identity keeps its level");
        tls_identity_release(r);
        tls_identity_release(id);
        X509_free(x);
    }

    const char *mixed[] = {"1.3.6.1.4.1.55555.9", oid[CFG_INT_STRONG], oid[CFG_INT_BASIC], "2.5.29.32.0", NULL};
    x = make_cert(key, mixed, 0);
    CHECK(tls_cert_integrity(x, &icfg) == CFG_INT_STRONG, "identity: the highest configured level among several");
    X509_free(x);

    const char *other[] = {"1.3.6.1.4.1.55555.9", "2.5.29.32.0", NULL};
    x = make_cert(key, other, 0);
    CHECK(tls_cert_integrity(x, &icfg) == -1, "identity: only unknown policies (anyPolicy too): unattested");
    X509_free(x);

    const char *dev[] = {oid[CFG_INT_DEVICE], NULL};
    x = make_cert(key, dev, 1);
    CHECK(tls_cert_integrity(x, &icfg) == -1, "identity: two certificatePolicies extensions: unattested");
    X509_free(x);

    /* an OID that is a prefix of a configured one is another OID */
    char prefix[CFG_OID_TEXT_MAX];
    snprintf(prefix, sizeof prefix, "%s", CFG_INTEGRITY_ARC);
    const char *pre[] = {prefix, NULL};
    x = make_cert(key, pre, 0);
    CHECK(tls_cert_integrity(x, &icfg) == -1, "identity: the arc itself names no level");
    X509_free(x);

    /* configured OIDs: the defaults then mean nothing */
    cfg_identity_t own = icfg;
    const char *why;
    cfg_oid_parse("1.3.6.1.4.1.55555.1.2", &own.integrity_oids[CFG_INT_DEVICE], &why);
    x = make_cert(key, dev, 0);
    CHECK(tls_cert_integrity(x, &own) == -1, "identity: the default device OID is unknown once configured otherwise");
    X509_free(x);
    const char *mine[] = {"1.3.6.1.4.1.55555.1.2", NULL};
    x = make_cert(key, mine, 0);
    CHECK(tls_cert_integrity(x, &own) == CFG_INT_DEVICE && tls_cert_integrity(x, &icfg) == -1,
          "identity: the configured device OID gives device");
    X509_free(x);
    /* a class outside identity.integrity_classes: any CA could name a level */
    const char *strong[] = {oid[CFG_INT_STRONG], NULL};
    x = make_cert(key, strong, 0);
    id = tls_identity_from_cert(x, 1, "bootstrap", &icfg);
    CHECK(id && id->integrity == -1, "identity: the strong OID in a class outside integrity_classes: unattested");
    tls_identity_release(id);
    cfg_identity_t two = icfg;
    two.integrity_classes = 1u << 1;
    id = tls_identity_from_cert(x, 1, "partner", &two);
    tls_identity_t *d0 = tls_identity_from_cert(x, 0, "device", &two);
    CHECK(id && id->integrity == CFG_INT_STRONG && d0 && d0->integrity == -1,
          "identity: the level is read for exactly the classes of integrity_classes");
    tls_identity_release(id);
    tls_identity_release(d0);
    X509_free(x);
    cfg_identity_t zero;
    memset(&zero, 0, sizeof zero);
    x = make_cert(key, dev, 0);
    CHECK(tls_cert_integrity(x, &zero) == -1, "identity: no configured OIDs: nothing matches");
    X509_free(x);
    EVP_PKEY_free(key);
}

static void test_gate(void)
{
    cfg_route_t r;
    memset(&r, 0, sizeof r);
    r.allow_classes = 1;
    tls_identity_t id;
    memset(&id, 0, sizeof id);
    id.class_idx = 0;
    pol_verdict_t v;
    id.integrity = -1;
    pol_check(&r, &id, NULL, 0, 0, &v);
    CHECK(v.err == PC_E_NONE, "gate: no min_integrity: an unattested certificate passes");
    r.need_integrity = 1;
    r.min_integrity = CFG_INT_NONE;
    pol_check(&r, &id, NULL, 0, 0, &v);
    CHECK(v.err == PC_E_INTEGRITY_TOO_LOW && !strcmp(pc_err_code(v.err), "integrity_too_low") &&
              pc_err_status(v.err) == 403,
          "gate: min_integrity none refuses an unattested certificate, 403 integrity_too_low");
    int want[CFG_INT__COUNT][CFG_INT__COUNT];   /* [min][level]: passes */
    int ok = 1;
    for (int m = 0; m < CFG_INT__COUNT; m++) {
        r.min_integrity = m;
        for (int l = 0; l < CFG_INT__COUNT; l++) {
            id.integrity = l;
            pol_check(&r, &id, NULL, 0, 0, &v);
            want[m][l] = l >= m;
            ok &= (v.err == PC_E_NONE) == want[m][l] && (v.err == PC_E_NONE || v.err == PC_E_INTEGRITY_TOO_LOW);
        }
    }
    CHECK(ok, "gate: a level passes min_integrity exactly when it is at least that level");
    id.class_idx = 1;
    id.integrity = CFG_INT_STRONG;
    pol_check(&r, &id, NULL, 0, 0, &v);
    CHECK(v.err == PC_E_CLASS_NOT_ALLOWED, "gate: the class check comes first");
    id.class_idx = 0;
    r.require_bearer = 1;
    r.min_integrity = CFG_INT_STRONG;
    id.integrity = CFG_INT_DEVICE;
    pol_check(&r, &id, NULL, 0, 0, &v);
    CHECK(v.err == PC_E_INTEGRITY_TOO_LOW, "gate: integrity before the bearer token");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_names();
    test_oid_parse();
    test_cert_integrity();
    test_gate();
    return check_done();
}
