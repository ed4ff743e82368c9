/* Unit tests: Apple App Attest objects and checks (issuance/appattest.c).
 * The test PKI and every object are minted at run time with
 * test/tools/mint_appattest.h, which shares no code with the verifier. Real
 * samples are read from ../shared/corpora/appattest/ when that directory
 * exists (see real_samples), else reported skipped. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../../issuance/appattest.h"
#include "../../policy/issued.h"
#include "../tools/mint_appattest.h"
#include "check.h"

#define APP "ABCDE12345.com.example.app"

static X509 *root, *inter, *other_root, *other_inter;
static EVP_PKEY *root_key, *inter_key, *other_root_key, *other_inter_key, *dev_key;
static X509_STORE *roots, *other_roots;
static unsigned char cdh[32], key_id[32];
static time_t now;
static char app_ids[2][CFG_AA_APP_ID_MAX + 1] = {"ZZZZZ99999.com.example.other", APP};
static cfg_app_attest_t cfg = {.app_ids = app_ids, .napp_ids = 2, .environment = CFG_AA_PRODUCTION};

static mint_aa_opts_t base_opts(void)
{
    mint_aa_opts_t o = {.ca = inter, .ca_key = inter_key, .key = dev_key, .app_id = APP,
                        .cdh = cdh, .not_before = now - 3600, .not_after = now + 3 * 86400};
    return o;
}

static X509_STORE *store_of(X509 *x)
{
    X509_STORE *s = X509_STORE_new();
    X509_STORE_add_cert(s, x);
    return s;
}

static int setup(void)
{
    now = time(NULL);
    if (mint_aa_pki(now - 86400, now + 30 * 86400, &root, &root_key, &inter, &inter_key) < 0 ||
        mint_aa_pki(now - 86400, now + 30 * 86400, &other_root, &other_root_key, &other_inter,
                    &other_inter_key) < 0)
        return -1;
    roots = store_of(root);
    other_roots = store_of(other_root);
    dev_key = mint_aa_key();
    RAND_bytes(cdh, sizeof cdh);
    mint_aa_key_id(dev_key, key_id);
    return dev_key ? 0 : -1;
}

/* Mints with o, verifies with cfg c and the given inputs. */
static enum pc_err run_at(const mint_aa_opts_t *o, const cfg_app_attest_t *c, X509_STORE *st,
                          const unsigned char *vcdh, const unsigned char *kid, time_t at,
                          iss_aa_result_t *res, const char **msg)
{
    size_t len;
    unsigned char *obj = mint_aa_attestation(o, &len);
    enum pc_err e = iss_aa_verify_attestation(c, st, obj, len, vcdh, kid, 32, (int64_t)at * 1000, res, msg);
    free(obj);
    return e;
}

static enum pc_err run(const mint_aa_opts_t *o, const cfg_app_attest_t *c, const char **msg)
{
    iss_aa_result_t res;
    enum pc_err e = run_at(o, c, roots, cdh, key_id, now, &res, msg);
    iss_aa_result_clear(&res);
    return e;
}

static void test_accepted(void)
{
    mint_aa_opts_t o = base_opts();
    iss_aa_result_t res;
    const char *msg = NULL;
    enum pc_err e = run_at(&o, &cfg, roots, cdh, key_id, now, &res, &msg);
    CHECK(e == PC_E_NONE, "attestation: a genuine-shaped object is accepted");
    if (e != PC_E_NONE)
        printf("# %s\n", msg);
    CHECK(!res.development && !strcmp(res.app_id, APP) && res.counter == 0, "attestation: production, app id, counter 0");
    CHECK(!memcmp(res.key_id, key_id, 32), "attestation: the key id");
    json_t *st = res.state ? json_loads(res.state, 0, NULL) : NULL;
    CHECK(st && json_is_string(json_object_get(st, "public_key")) &&
              json_integer_value(json_object_get(st, "counter")) == 0 &&
              json_is_string(json_object_get(st, "receipt")) &&
              !strcmp(json_string_value(json_object_get(st, "app_id")), APP) &&
              json_is_string(json_object_get(st, "key_id")),
          "attestation: the state holds key, counter, receipt, app id, key id");
    json_decref(st);
    iss_aa_result_clear(&res);

    o.extra_ext = 1;
    o.trailing = 9;
    CHECK(run(&o, &cfg, &msg) == PC_E_NONE, "attestation: unknown non-critical extensions and data after the credential accepted");
    o = base_opts();
    o.critical_ext = 1;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED, "attestation: an unknown critical extension refused");
}

static void test_mutations(void)
{
    const char *msg = NULL;
    iss_aa_result_t res;
    mint_aa_opts_t o = base_opts();

    char one[1][CFG_AA_APP_ID_MAX + 1] = {"XBCDE12345.com.example.app"};
    cfg_app_attest_t team = cfg;
    team.app_ids = one;
    team.napp_ids = 1;
    CHECK(run(&o, &team, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "rpIdHash"), "mutation: another team id refused");
    o.app_id = "ABCDE12345.com.example.app2";
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "rpIdHash"), "mutation: another bundle id refused");

    o = base_opts();
    unsigned char kid[32];
    memcpy(kid, key_id, 32);
    kid[31] ^= 0x80;
    CHECK(run_at(&o, &cfg, roots, cdh, kid, now, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "key_id"),
          "mutation: another key id refused");
    o.bad_cred_id = 1;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "credentialId"), "mutation: credentialId not the key id refused");

    o = base_opts();
    unsigned char c2[32];
    memcpy(c2, cdh, 32);
    c2[0] ^= 1;
    CHECK(run_at(&o, &cfg, roots, c2, key_id, now, &res, &msg) == PC_E_KEY_NOT_BOUND, "mutation: another challenge refused key_not_bound");
    o.no_nonce = 1;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "nonce"), "mutation: no nonce extension refused");

    o = base_opts();
    o.counter = 1;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "counter"), "mutation: counter 1 refused");

    o = base_opts();
    o.aaguid = mint_aa_dev;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "aaguid"), "mutation: development aaguid refused in production");
    cfg_app_attest_t dev = cfg;
    dev.environment = CFG_AA_DEVELOPMENT;
    CHECK(run_at(&o, &dev, roots, cdh, key_id, now, &res, &msg) == PC_E_NONE && res.development,
          "development aaguid accepted in development, marked so");
    iss_aa_result_clear(&res);
    dev.environment = CFG_AA_ANY;
    CHECK(run(&o, &dev, &msg) == PC_E_NONE, "development aaguid accepted with environment any");
    o = base_opts();
    CHECK(run(&o, &dev, &msg) == PC_E_NONE, "production aaguid accepted with environment any");
    dev.environment = CFG_AA_DEVELOPMENT;
    CHECK(run(&o, &dev, &msg) == PC_E_ATTESTATION_FAILED, "production aaguid refused in development");
    static const unsigned char junk[16] = "appattestXXXXXXX";
    o.aaguid = junk;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "aaguid"), "mutation: unknown aaguid refused");

    o = base_opts();
    CHECK(run_at(&o, &cfg, other_roots, cdh, key_id, now, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "chain"),
          "mutation: a chain to another root refused");
    o.ca = other_inter;
    o.ca_key = other_inter_key;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "chain"), "mutation: signed by another CA refused");
    o = base_opts();
    CHECK(run_at(&o, &cfg, roots, cdh, key_id, o.not_after + 1, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "chain"),
          "mutation: a time past the credential certificate refused");
    CHECK(run_at(&o, &cfg, roots, cdh, key_id, o.not_before - 1, &res, &msg) == PC_E_ATTESTATION_FAILED,
          "mutation: a time before the credential certificate refused");
    CHECK(run_at(&o, &cfg, roots, cdh, key_id, o.not_after - 1, &res, &msg) == PC_E_NONE, "accepted at its own time (just before notAfter)");
    iss_aa_result_clear(&res);
}

static void test_encoding(void)
{
    const char *msg = NULL;
    iss_aa_result_t res;
    mint_aa_opts_t o = base_opts();
    size_t len, rlen;
    unsigned char *obj = mint_aa_attestation(&o, &len);
    int all = 1;
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 97))
        all &= iss_aa_verify_attestation(&cfg, roots, obj, cut, cdh, key_id, 32, (int64_t)now * 1000, &res, &msg) ==
               PC_E_ATTESTATION_FAILED;
    CHECK(all, "mutation: truncated CBOR refused at every cut");
    unsigned char *more = malloc(len + 1);
    memcpy(more, obj, len);
    more[len] = 0;
    CHECK(iss_aa_verify_attestation(&cfg, roots, more, len + 1, cdh, key_id, 32, (int64_t)now * 1000, &res, &msg) ==
              PC_E_ATTESTATION_FAILED, "a byte after the CBOR object refused");
    free(more);
    unsigned char *re = mint_aa_reencode(obj, len, &rlen);
    CHECK(iss_aa_verify_attestation(&cfg, roots, re, rlen, cdh, key_id, 32, (int64_t)now * 1000, &res, &msg) ==
              PC_E_KEY_NOT_BOUND, "mutation: re-encoded CBOR with another authData refused (nonce)");
    free(re);

    iss_aa_attestation_t a;
    CHECK(iss_aa_attestation_parse(obj, len, &a, &msg) == 0 && a.nx5c == 2 && a.ad.has_cred &&
              a.ad.cred_id_len == 32 && a.ad.trailing == 0 && a.receipt_len > 0, "parse: members of the object");
    iss_aa_attestation_clear(&a);
    iss_aa_attestation_clear(&a);
    free(obj);

    iss_aa_authdata_t ad;
    unsigned char small[37] = {0};
    CHECK(iss_aa_authdata_parse(small, 36, 0, &ad, &msg) < 0, "authData: 36 bytes refused");
    CHECK(iss_aa_authdata_parse(small, 37, 0, &ad, &msg) == 0 && !ad.has_cred, "authData: 37 bytes without credential");
    CHECK(iss_aa_authdata_parse(small, 37, 1, &ad, &msg) < 0, "authData: credential required");

    unsigned char out[8];
    CHECK(iss_aa_b64_decode("AAEC", 4, out, sizeof out) == 3 && out[2] == 2, "base64 decode");
    CHECK(iss_aa_b64_decode("AAE", 3, out, sizeof out) == 2 && iss_aa_b64_decode("AA==", 4, out, sizeof out) == 1,
          "base64 decode: padding optional");
    CHECK(iss_aa_b64_decode("A", 1, out, sizeof out) < 0 && iss_aa_b64_decode("AA!A", 4, out, sizeof out) < 0 &&
              iss_aa_b64_decode("AAAAAAAAAAAA", 12, out, sizeof out) < 0, "base64 decode: invalid or too long refused");
    /* canonical only: one text per value */
    static const char *const noncanon[] = {"AAAA====", "AA=", "AA===", "AB", "AB==", "AAB=", "A+A-", "+-AA", "_/AA",
                                           "AAA==", "AAAA=", "=AAA", "AA=A", "AA ", " AAA", "AA.A"};
    for (size_t i = 0; i < sizeof noncanon / sizeof noncanon[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "base64 decode: non-canonical \"%s\" refused", noncanon[i]);
        CHECK(iss_aa_b64_decode(noncanon[i], strlen(noncanon[i]), out, sizeof out) < 0, name);
    }
    CHECK(iss_aa_b64_decode("AA", 2, out, sizeof out) == 1 && iss_aa_b64_decode("AA==", 4, out, sizeof out) == 1 &&
              iss_aa_b64_decode("AAA=", 4, out, sizeof out) == 2 && iss_aa_b64_decode("AAA", 3, out, sizeof out) == 2,
          "base64 decode: exact padding or none accepted");
    CHECK(iss_aa_b64_decode("+/+/", 4, out, sizeof out) == 3 && out[0] == 0xfb && out[2] == 0xbf &&
              iss_aa_b64_decode("-_-_", 4, out, sizeof out) == 3 && out[0] == 0xfb && out[2] == 0xbf,
          "base64 decode: either alphabet alone accepted");
}

/* state (JSON) with member name set to v (stolen), malloc'ed. */
static char *with_member(const char *state, const char *name, json_t *v)
{
    json_t *o = json_loads(state, 0, NULL);
    json_object_set_new(o, name, v);
    char *r = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return r;
}

static void test_receipt(void)
{
    const char *msg = NULL;
    iss_aa_result_t res;
    mint_aa_opts_t o = base_opts();
    o.receipt_len = ISS_AA_MAX_RECEIPT + 1;
    CHECK(run(&o, &cfg, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "receipt"),
          "receipt: one byte over ISS_AA_MAX_RECEIPT refused");
    o.receipt_len = ISS_AA_MAX_RECEIPT;
    CHECK(run_at(&o, &cfg, roots, cdh, key_id, now, &res, &msg) == PC_E_NONE && res.state &&
              strlen(res.state) <= ISS_AA_STATE_MAX, "receipt: ISS_AA_MAX_RECEIPT accepted, its state within ISS_AA_STATE_MAX");
    iss_aa_result_clear(&res);
}

static void test_assertion(void)
{
    const char *msg = NULL;
    iss_aa_result_t att, res;
    mint_aa_opts_t o = base_opts();
    CHECK(run_at(&o, &cfg, roots, cdh, key_id, now, &att, &msg) == PC_E_NONE, "assertion: setup attestation");
    unsigned char c2[32];
    RAND_bytes(c2, 32);
    size_t len;
    unsigned char *as = mint_aa_assertion(dev_key, APP, c2, 5, &len);
    CHECK(iss_aa_verify_assertion(&cfg, att.state, as, len, c2, &res, &msg) == PC_E_NONE && res.counter == 5,
          "assertion: accepted, counter 5");
    char *st5 = res.state ? strdup(res.state) : NULL;
    iss_aa_result_clear(&res);
    CHECK(iss_aa_verify_assertion(&cfg, st5, as, len, c2, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "counter not increasing"),
          "assertion: replayed (same counter) refused");
    CHECK(iss_aa_verify_assertion(&cfg, att.state, as, len, cdh, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "signature"),
          "assertion: another challenge refused");
    free(as);
    as = mint_aa_assertion(dev_key, APP, c2, 4, &len);
    CHECK(iss_aa_verify_assertion(&cfg, st5, as, len, c2, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "counter"),
          "assertion: lower counter refused");
    free(as);
    EVP_PKEY *k2 = mint_aa_key();
    as = mint_aa_assertion(k2, APP, c2, 6, &len);
    CHECK(iss_aa_verify_assertion(&cfg, st5, as, len, c2, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "signature"),
          "assertion: another key refused");
    free(as);
    as = mint_aa_assertion(dev_key, "ABCDE12345.com.example.other", c2, 6, &len);
    CHECK(iss_aa_verify_assertion(&cfg, st5, as, len, c2, &res, &msg) == PC_E_ATTESTATION_FAILED && strstr(msg, "rpIdHash"),
          "assertion: another app id refused");
    free(as);
    as = mint_aa_assertion(dev_key, APP, c2, 6, &len);
    CHECK(iss_aa_verify_assertion(&cfg, st5, as, len - 1, c2, &res, &msg) == PC_E_ATTESTATION_FAILED, "assertion: truncated refused");
    CHECK(iss_aa_verify_assertion(&cfg, "{\"counter\":1}", as, len, c2, &res, &msg) == PC_E_INTERNAL, "assertion: unreadable state refused");
    CHECK(iss_aa_verify_assertion(&cfg, st5, as, len, c2, &res, &msg) == PC_E_NONE && res.counter == 6, "assertion: next counter accepted");
    iss_aa_result_clear(&res);

    /* the current configuration, not only the stored state (a reload) */
    char only_other[1][CFG_AA_APP_ID_MAX + 1] = {"ZZZZZ99999.com.example.other"};
    cfg_app_attest_t narrow = cfg;
    narrow.app_ids = only_other;
    narrow.napp_ids = 1;
    CHECK(iss_aa_verify_assertion(&narrow, st5, as, len, c2, &res, &msg) == PC_E_ATTESTATION_FAILED &&
              strstr(msg, "no longer in app_ids"), "assertion: an app id since removed from app_ids refused");
    char *dev5 = with_member(st5, "environment", json_string("development"));
    cfg_app_attest_t any = cfg;
    any.environment = CFG_AA_ANY;
    CHECK(iss_aa_verify_assertion(&cfg, dev5, as, len, c2, &res, &msg) == PC_E_ATTESTATION_FAILED &&
              strstr(msg, "environment is production"), "assertion: a development device refused once environment is production");
    CHECK(iss_aa_verify_assertion(&any, dev5, as, len, c2, &res, &msg) == PC_E_NONE && res.development,
          "assertion: a development device accepted with environment any");
    iss_aa_result_clear(&res);
    any.environment = CFG_AA_DEVELOPMENT;
    CHECK(iss_aa_verify_assertion(&any, st5, as, len, c2, &res, &msg) == PC_E_ATTESTATION_FAILED &&
              strstr(msg, "environment is development"), "assertion: a production device refused once environment is development");
    free(dev5);

    /* a stored state that cannot be read after its key was parsed (no leak under ASan) */
    char *badkid = with_member(st5, "key_id", json_string("AA"));
    CHECK(iss_aa_verify_assertion(&cfg, badkid, as, len, c2, &res, &msg) == PC_E_INTERNAL && !res.state,
          "assertion: a state with a valid key but a bad key_id refused internal");
    free(badkid);
    char *noenv = with_member(st5, "environment", json_string("staging"));
    CHECK(iss_aa_verify_assertion(&cfg, noenv, as, len, c2, &res, &msg) == PC_E_INTERNAL,
          "assertion: a state with an unknown environment refused internal");
    free(noenv);
    char *pad = malloc(ISS_AA_STATE_MAX + 1);
    memset(pad, 'x', ISS_AA_STATE_MAX);
    pad[ISS_AA_STATE_MAX] = '\0';
    char *huge = with_member(st5, "receipt", json_string(pad));
    CHECK(iss_aa_verify_assertion(&cfg, huge, as, len, c2, &res, &msg) == PC_E_INTERNAL,
          "assertion: a stored state over ISS_AA_STATE_MAX refused internal");
    free(huge);
    free(pad);
    free(as);
    EVP_PKEY_free(k2);
    free(st5);
    iss_aa_result_clear(&att);
}

static int arg_is(const pol_argv_t *a, int i, const char *want)
{
    return i < a->argc && a->argvlen[i] == strlen(want) && !memcmp(a->argv[i], want, a->argvlen[i]);
}

static void test_redis_argv(void)
{
    pol_argv_t a;
    const char *dev = "abcdefghijklmnopqrstuvwxyz234567";
    CHECK(pol_attest_set_argv(&a, dev, "ios", 0, "{}") == 0 && a.argc == 8 && arg_is(&a, 0, "HSET") &&
              arg_is(&a, 1, "portcullis:attest:abcdefghijklmnopqrstuvwxyz234567") && arg_is(&a, 3, "ios") &&
              arg_is(&a, 5, "0") && arg_is(&a, 7, "{}"),
          "redis: HSET portcullis:attest:<id> platform counter state");
    CHECK(pol_attest_expire_argv(&a, dev, 86400) == 0 && a.argc == 3 && arg_is(&a, 0, "EXPIRE") && arg_is(&a, 2, "86400"),
          "redis: EXPIRE of the state");
    CHECK(pol_attest_get_argv(&a, dev) == 0 && a.argc == 5 && arg_is(&a, 0, "HMGET") && arg_is(&a, 4, "state"),
          "redis: HMGET platform counter state");
    CHECK(pol_attest_cas_argv(&a, dev, 7, "{\"counter\":7}", 3600) == 0 && a.argc == 7 && arg_is(&a, 0, "EVAL") &&
              arg_is(&a, 1, POL_ATTEST_CAS_LUA) && arg_is(&a, 2, "1") && arg_is(&a, 4, "7") && arg_is(&a, 6, "3600"),
          "redis: EVAL compare-and-set with counter, state, ttl (two numbers)");
    CHECK(pol_attest_set_argv(&a, "bad id!", "ios", 0, "{}") < 0 && pol_attest_get_argv(&a, "") < 0 &&
              pol_attest_cas_argv(&a, dev, 1, "{}", 0) < 0 && pol_attest_expire_argv(&a, dev, 0) < 0,
          "redis: invalid device id or zero TTL refused");
}

/* Real samples, when ../shared/corpora/appattest/ exists: each NAME.json
 * there is {"attestation": base64, "key_id": base64, "client_data_hash":
 * base64 (or "challenge": the raw challenge text, hashed with SHA-256 as in
 * Apple's guide), "app_id": "TEAMID.bundle", "time": unix seconds,
 * "environment": "production"|"development"}, verified against the root in
 * root.pem beside them at its own time, then refused one day past the
 * credential certificate (30 days later) and with another app id. */
static void real_samples(void)
{
    const char *dir = "../shared/corpora/appattest";
    DIR *d = opendir(dir);
    if (!d) {
        printf("ok - real App Attest samples # SKIP %s absent on this machine\n", dir);
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/root.pem", dir);
    char err[256];
    X509_STORE *apple = iss_aa_roots_load(path, err, sizeof err);
    CHECK(apple != NULL, "real samples: root.pem loads");
    struct dirent *e;
    int n = 0;
    while (apple && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json"))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        json_t *j = json_load_file(path, 0, NULL);
        const char *att = json_string_value(json_object_get(j, "attestation"));
        const char *kid = json_string_value(json_object_get(j, "key_id"));
        const char *h = json_string_value(json_object_get(j, "client_data_hash"));
        const char *ch = json_string_value(json_object_get(j, "challenge"));
        const char *app = json_string_value(json_object_get(j, "app_id"));
        const char *env = json_string_value(json_object_get(j, "environment"));
        unsigned char *obj = malloc(ISS_AA_MAX_OBJECT), k[32], c[32];
        long ol = att ? iss_aa_b64_decode(att, strlen(att), obj, ISS_AA_MAX_OBJECT) : -1;
        int ok = ol > 0 && kid && iss_aa_b64_decode(kid, strlen(kid), k, 32) == 32 && app &&
                 strlen(app) <= CFG_AA_APP_ID_MAX;
        if (h)
            ok = ok && iss_aa_b64_decode(h, strlen(h), c, 32) == 32;
        else if (ch)
            mint_aa_sha256(ch, strlen(ch), NULL, 0, c);
        else
            ok = 0;
        char ids[1][CFG_AA_APP_ID_MAX + 1];
        snprintf(ids[0], sizeof ids[0], "%s", app ? app : "");
        cfg_app_attest_t rc = {.app_ids = ids, .napp_ids = 1,
                               .environment = env && !strcmp(env, "development") ? CFG_AA_DEVELOPMENT : CFG_AA_PRODUCTION};
        int64_t at = (int64_t)json_integer_value(json_object_get(j, "time")) * 1000;
        iss_aa_result_t r;
        const char *msg = "";
        char name[300];
        snprintf(name, sizeof name, "real sample %s: accepted at its time", e->d_name);
        CHECK(ok && iss_aa_verify_attestation(&rc, apple, obj, (size_t)ol, c, k, 32, at, &r, &msg) == PC_E_NONE, name);
        iss_aa_result_clear(&r);
        snprintf(name, sizeof name, "real sample %s: refused 30 days later", e->d_name);
        CHECK(ok && iss_aa_verify_attestation(&rc, apple, obj, (size_t)ol, c, k, 32, at + 30LL * 86400000, &r, &msg) != PC_E_NONE, name);
        ids[0][0] = ids[0][0] == 'Z' ? 'Y' : 'Z';
        snprintf(name, sizeof name, "real sample %s: refused with another team id", e->d_name);
        CHECK(ok && iss_aa_verify_attestation(&rc, apple, obj, (size_t)ol, c, k, 32, at, &r, &msg) != PC_E_NONE, name);
        free(obj);
        json_decref(j);
        n++;
    }
    closedir(d);
    X509_STORE_free(apple);
    printf("# %d real samples\n", n);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(setup() == 0, "setup: test App Attest PKI");
    test_accepted();
    test_mutations();
    test_encoding();
    test_assertion();
    test_receipt();
    test_redis_argv();
    real_samples();
    X509_STORE_free(roots);
    X509_STORE_free(other_roots);
    X509_free(root);
    X509_free(inter);
    X509_free(other_root);
    X509_free(other_inter);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
    EVP_PKEY_free(other_root_key);
    EVP_PKEY_free(other_inter_key);
    EVP_PKEY_free(dev_key);
    return check_done();
}
