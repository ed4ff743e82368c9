/* Unit tests: JWKS loading, the reloading key store, and JWT verification
 * (policy/jwt.c). Keys and tokens are made here with OpenSSL; the JWKS files
 * are written with jansson into a scratch directory. */
#define MINT_JWT_NO_MAIN
#include "../tools/mint-jwt.c"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/hmac.h>

#include "../../policy/jwt.h"
#include "check.h"

static char tmpdir[] = "/tmp/portcullis-jwttest-XXXXXX";
static EVP_PKEY *ec, *ec2, *rsa, *ed;
static pol_jwks_t *keys;
static cfg_jwt_t cfg;
static time_t now;
static const char x5t[] = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";

static EVP_PKEY *gen(const char *type, const char *arg)
{
    EVP_PKEY *k = NULL;
    if (!strcmp(type, "EC"))
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", arg);
    else if (!strcmp(type, "RSA"))
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(arg));
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k) {
        fprintf(stderr, "key generation failed\n");
        exit(2);
    }
    return k;
}

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

/* Writes {"keys": [...]} atomically (rename), so the file gets a new inode. */
static void write_jwks(const char *name, json_t *arr)
{
    char p[512], t[520];
    path_of(p, sizeof p, name);
    snprintf(t, sizeof t, "%s.tmp", p);
    json_t *set = json_pack("{s:o}", "keys", arr);
    if (!set || json_dump_file(set, t, JSON_COMPACT) != 0 || rename(t, p) != 0) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(2);
    }
    json_decref(set);
}

static void write_text(const char *name, const char *text)
{
    char p[512], t[520];
    path_of(p, sizeof p, name);
    snprintf(t, sizeof t, "%s.tmp", p);
    FILE *f = fopen(t, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(t, p) != 0) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(2);
    }
}

/* A standard payload: iss, aud, sub, exp now+300. */
static json_t *payload(void)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", "https://issuer.test", "aud", "api",
                     "sub", "user-42", "exp", (json_int_t)now + 300, "iat", (json_int_t)now);
}

static int verify_tok(const char *tok, const char *bind, pol_jwt_result_t *res)
{
    return pol_jwt_verify(&cfg, keys, tok, tok ? strlen(tok) : 0, bind, now, res);
}

static int safe_desc(const char *d)
{
    if (!d || !*d)
        return 0;
    for (; *d; d++)
        if (*d == '"' || *d == '\\' || (unsigned char)*d < 0x20 || (unsigned char)*d > 0x7e)
            return 0;
    return 1;
}

/* Expects tok to fail with a description containing want. */
static void expect_fail(const char *tok, const char *bind, const char *want, const char *name)
{
    pol_jwt_result_t r;
    int rc = verify_tok(tok, bind, &r);
    int ok = rc == -1 && r.error && !strcmp(r.error, "invalid_token") && safe_desc(r.description) &&
             (!want || strstr(r.description, want)) && r.nclaims == 0;
    if (!ok)
        printf("# %s: rc=%d description=%s\n", name, rc, r.description ? r.description : "-");
    CHECK(ok, name);
}

static void expect_ok(const char *tok, const char *bind, const char *name)
{
    pol_jwt_result_t r;
    int rc = verify_tok(tok, bind, &r);
    if (rc != 0)
        printf("# %s: %s\n", name, r.description ? r.description : "-");
    CHECK(rc == 0 && r.error == NULL, name);
}

/* Signs payload p (consumed) with key/alg/kid. */
static char *tok_of(EVP_PKEY *k, const char *alg, const char *kid, json_t *p)
{
    char *t = mj_token(k, alg, kid, p);
    json_decref(p);
    return t;
}

static void test_valid(void)
{
    struct { EVP_PKEY **k; const char *alg, *kid; } v[] = {
        {&ec, "ES256", "ec1"}, {&rsa, "RS256", "rsa1"}, {&ed, "EdDSA", "ed1"},
        {&ec, "ES256", NULL}, {&rsa, "RS256", NULL}, {&ed, "EdDSA", NULL},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char name[80];
        char *t = tok_of(*v[i].k, v[i].alg, v[i].kid, payload());
        pol_jwt_result_t r;
        snprintf(name, sizeof name, "valid %s token %s", v[i].alg,
                 v[i].kid ? "with kid" : "without kid");
        int rc = verify_tok(t, NULL, &r);
        CHECK(rc == 0 && r.nclaims == 1 && !strcmp(r.claims[0].header, "X-Token-Subject") &&
                  !strcmp(r.claims[0].value, "user-42"),
              name);
        free(t);
    }
}

static void test_times(void)
{
    json_t *p = payload();
    json_object_set_new(p, "exp", json_integer((json_int_t)now - 100));
    char *t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "expired", "expired token refused");
    free(t);

    p = payload();
    json_object_set_new(p, "exp", json_integer((json_int_t)now - 20));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, NULL, "expired 20s ago: within the 30s leeway");
    cfg.leeway_ms = 0;
    expect_fail(t, NULL, "expired", "same token with leeway 0 refused");
    cfg.leeway_ms = 30000;
    free(t);

    p = payload();
    json_object_set_new(p, "exp", json_real((double)now + 100.5));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, NULL, "fractional exp accepted");
    free(t);

    p = payload();
    json_object_set_new(p, "nbf", json_integer((json_int_t)now + 100));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "not valid yet", "nbf in the future refused");
    free(t);

    p = payload();
    json_object_set_new(p, "nbf", json_integer((json_int_t)now + 20));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, NULL, "nbf 20s ahead: within leeway");
    free(t);

    p = payload();
    json_object_del(p, "exp");
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "exp", "missing exp refused");
    free(t);

    p = payload();
    json_object_set_new(p, "exp", json_integer(INT64_MAX));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, NULL, "exp at INT64_MAX accepted without overflow");
    free(t);

    p = payload();
    json_object_set_new(p, "exp", json_integer(INT64_MIN));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "expired", "exp at INT64_MIN refused without overflow");
    free(t);

    p = payload();
    json_object_set_new(p, "nbf", json_integer(INT64_MAX));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "not valid yet", "nbf at INT64_MAX refused");
    free(t);

    p = payload();
    json_object_set_new(p, "exp", json_string("tomorrow"));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "exp", "string exp refused");
    free(t);
}

static void test_signatures(void)
{
    char *t = tok_of(ec2, "ES256", "ec1", payload());
    expect_fail(t, NULL, "invalid signature", "ES256 signed by another key refused");
    free(t);
    t = tok_of(ec2, "ES256", NULL, payload());
    expect_fail(t, NULL, "invalid signature", "ES256 by unknown key, no kid, refused");
    free(t);

    /* a valid token with one signature byte flipped */
    t = tok_of(rsa, "RS256", "rsa1", payload());
    size_t n = strlen(t);
    t[n - 5] = t[n - 5] == 'A' ? 'B' : 'A';
    expect_fail(t, NULL, "signature", "RS256 with a modified signature refused");
    free(t);

    /* a valid signature over a modified payload */
    t = tok_of(ed, "EdDSA", "ed1", payload());
    char *d1 = strchr(t, '.');
    d1[2] = d1[2] == 'A' ? 'B' : 'A';
    expect_fail(t, NULL, NULL, "EdDSA with a modified payload refused");
    free(t);

    t = tok_of(ec, "ES256", "nope", payload());
    expect_fail(t, NULL, "unknown key id", "unknown kid refused");
    free(t);
}

static void test_algorithms(void)
{
    json_t *pj = payload();
    char *ps = json_dumps(pj, JSON_COMPACT);
    json_decref(pj);
    char *pb = mj_b64url((const unsigned char *)ps, strlen(ps));
    char buf[4096];

    /* alg none, with an empty and a non-empty signature part */
    char *hb = mj_b64url((const unsigned char *)"{\"alg\":\"none\"}", 14);
    snprintf(buf, sizeof buf, "%s.%s.", hb, pb);
    expect_fail(buf, NULL, NULL, "alg none with empty signature refused");
    snprintf(buf, sizeof buf, "%s.%s.AAAA", hb, pb);
    expect_fail(buf, NULL, "algorithm", "alg none refused");
    free(hb);

    /* HS256 keyed with the RSA public key (PEM and DER): the classic confusion */
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, rsa);
    char *pem;
    long pemlen = BIO_get_mem_data(bio, &pem);
    hb = mj_b64url((const unsigned char *)"{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", 28);
    char msg[3000];
    snprintf(msg, sizeof msg, "%s.%s", hb, pb);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), pem, (int)pemlen, (unsigned char *)msg, strlen(msg), mac, &ml);
    char *sb = mj_b64url(mac, ml);
    snprintf(buf, sizeof buf, "%s.%s", msg, sb);
    expect_fail(buf, NULL, "algorithm", "HS256 with the public key as secret refused");
    free(sb);
    free(hb);
    BIO_free(bio);

    /* alg / key type mismatch */
    char *t = tok_of(rsa, "ES256", "rsa1", payload());
    expect_fail(t, NULL, "another type", "alg ES256 naming an RSA key refused");
    free(t);
    t = tok_of(ec, "RS256", "ec1", payload());
    expect_fail(t, NULL, NULL, "alg RS256 naming an EC key refused");
    free(t);
    t = tok_of(ed, "ES256", NULL, payload());
    expect_fail(t, NULL, NULL, "Ed25519 signature labelled ES256 refused");
    free(t);

    /* algorithm not allowed by the route */
    cfg.algorithms = CFG_JWT_ES256;
    t = tok_of(rsa, "RS256", "rsa1", payload());
    expect_fail(t, NULL, "not allowed", "RS256 refused when only ES256 is configured");
    free(t);
    cfg.algorithms = CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA;

    /* crit header */
    char hdr[] = "{\"alg\":\"ES256\",\"kid\":\"ec1\",\"crit\":[\"exp\"]}";
    t = mj_token_raw(ec, hdr, ps);
    expect_fail(t, NULL, "critical", "crit header refused");
    free(t);
    free(ps);
    free(pb);
}

static void test_claims_checks(void)
{
    json_t *p = payload();
    json_object_set_new(p, "iss", json_string("https://evil.test"));
    char *t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "issuer", "wrong iss refused");
    free(t);

    p = payload();
    json_object_del(p, "iss");
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "issuer", "missing iss refused");
    free(t);

    p = payload();
    json_object_set_new(p, "aud", json_string("someone-else"));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "audience", "wrong aud refused");
    free(t);

    p = payload();
    json_object_set_new(p, "aud", json_pack("[s,s]", "x", "other"));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, NULL, "aud array containing a configured audience accepted");
    free(t);

    p = payload();
    json_object_set_new(p, "aud", json_pack("[s,i]", "x", 5));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, NULL, "audience", "aud array without a configured audience refused");
    free(t);

    /* no issuer/audience configured: not checked */
    char *iss = cfg.issuer;
    size_t na = cfg.naudiences;
    cfg.issuer = NULL;
    cfg.naudiences = 0;
    p = payload();
    json_object_del(p, "iss");
    json_object_del(p, "aud");
    t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, NULL, "iss/aud not configured: not required");
    free(t);
    cfg.issuer = iss;
    cfg.naudiences = na;
}

static void test_malformed(void)
{
    char *t = tok_of(ec, "ES256", "ec1", payload());
    char buf[8192 + 64];
    char *last = strrchr(t, '.');
    snprintf(buf, sizeof buf, "%.*s", (int)(last - t), t);
    expect_fail(buf, NULL, "not a signed JWT", "two parts refused");
    snprintf(buf, sizeof buf, "%s.AAAA", t);
    expect_fail(buf, NULL, "not a signed JWT", "four parts refused");
    snprintf(buf, sizeof buf, "%s", t);
    buf[3] = '*';
    expect_fail(buf, NULL, "header", "bad base64url in the header refused");
    snprintf(buf, sizeof buf, "%s", t);
    buf[strlen(buf) - 1] = '=';
    expect_fail(buf, NULL, "signature", "padding in the signature refused");
    expect_fail("", NULL, NULL, "empty token refused");
    expect_fail("..", NULL, NULL, "empty parts refused");

    char *nj = mj_b64url((const unsigned char *)"not json", 8);
    snprintf(buf, sizeof buf, "%s%s", nj, strchr(t, '.'));
    expect_fail(buf, NULL, "header", "non-JSON header refused");
    free(nj);

    char *arr = mj_b64url((const unsigned char *)"[1,2]", 5);
    snprintf(buf, sizeof buf, "%s%s", arr, strchr(t, '.'));
    expect_fail(buf, NULL, "header", "JSON array header refused");
    free(arr);

    char *np = mj_token_raw(ec, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", "this is not json");
    expect_fail(np, NULL, "payload", "signed non-JSON payload refused");
    free(np);

    memset(buf, 'A', 8193);
    buf[100] = '.';
    buf[200] = '.';
    buf[8193] = '\0';
    expect_fail(buf, NULL, "too large", "token over 8 KiB refused");
    free(t);
}

static void test_binding(void)
{
    cfg.bind_to_certificate = 1;
    json_t *p = payload();
    json_object_set_new(p, "cnf", json_pack("{s:s}", "x5t#S256", x5t));
    char *t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, x5t, "cnf x5t#S256 matching the client certificate accepted");
    expect_fail(t, "AAAAgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg", "another certificate",
                "cnf bound to another certificate refused");
    expect_fail(t, NULL, "another certificate", "bound token without a client cert value refused");
    expect_fail(t, "", "another certificate", "bound token with an empty cert value refused");
    free(t);

    t = tok_of(ec, "ES256", "ec1", payload());
    expect_fail(t, x5t, "not bound", "bind_to_certificate: token without cnf refused");
    free(t);

    p = payload();
    json_object_set_new(p, "cnf", json_pack("{s:s}", "jkt", "abc"));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_fail(t, x5t, "not bound", "cnf without x5t#S256 refused");
    free(t);
    cfg.bind_to_certificate = 0;

    p = payload();
    json_object_set_new(p, "cnf", json_pack("{s:s}", "x5t#S256", "whatever"));
    t = tok_of(ec, "ES256", "ec1", p);
    expect_ok(t, NULL, "cnf ignored without bind_to_certificate");
    free(t);
}

static void test_claim_headers(void)
{
    cfg_claim_header_t ch[] = {
        {"sub", "X-Token-Subject"}, {"scope", "X-Scope"}, {"n", "X-Num"}, {"ctl", "X-Ctl"},
        {"long", "X-Long"},         {"obj", "X-Obj"},     {"f", "X-Float"}, {"absent", "X-Absent"},
        {"max", "X-Max"},
    };
    cfg_claim_header_t *saved = cfg.claims;
    size_t nsaved = cfg.nclaims;
    cfg.claims = ch;
    cfg.nclaims = sizeof ch / sizeof ch[0];
    char longv[300], maxv[257];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    memset(maxv, 'b', sizeof maxv - 1);
    maxv[sizeof maxv - 1] = '\0';
    json_t *p = payload();
    json_object_set_new(p, "scope", json_string("read write"));
    json_object_set_new(p, "n", json_integer(42));
    json_object_set_new(p, "ctl", json_string("a\r\nX-Evil: 1"));
    json_object_set_new(p, "long", json_string(longv));
    json_object_set_new(p, "obj", json_pack("{s:i}", "a", 1));
    json_object_set_new(p, "f", json_real(1.5));
    json_object_set_new(p, "max", json_string(maxv));
    char *t = tok_of(ec, "ES256", "ec1", p);
    pol_jwt_result_t r;
    int rc = verify_tok(t, NULL, &r);
    CHECK(rc == 0 && r.nclaims == 5, "claims: five of nine injected");
    if (rc == 0 && r.nclaims == 5) {
        CHECK(!strcmp(r.claims[0].header, "X-Token-Subject") && !strcmp(r.claims[0].value, "user-42"),
              "claims: sub string");
        CHECK(!strcmp(r.claims[1].header, "X-Scope") && !strcmp(r.claims[1].value, "read write"),
              "claims: string with a space kept");
        CHECK(!strcmp(r.claims[2].header, "X-Num") && !strcmp(r.claims[2].value, "42"),
              "claims: integer formatted");
        CHECK(!strcmp(r.claims[3].header, "X-Float") && !strcmp(r.claims[3].value, "1.5"),
              "claims: real formatted");
        CHECK(!strcmp(r.claims[4].header, "X-Max") && strlen(r.claims[4].value) == 256,
              "claims: 256-byte value kept");
    }
    free(t);
    cfg.claims = saved;
    cfg.nclaims = nsaved;
}

static void test_b64(void)
{
    unsigned char out[16];
    CHECK(pol_b64url_decode("", 0, out, sizeof out) == 0, "b64url: empty");
    CHECK(pol_b64url_decode("QQ", 2, out, sizeof out) == 1 && out[0] == 'A', "b64url: 1 byte");
    CHECK(pol_b64url_decode("QUI", 3, out, sizeof out) == 2 && !memcmp(out, "AB", 2),
          "b64url: 2 bytes");
    CHECK(pol_b64url_decode("-_-_", 4, out, sizeof out) == 3 && out[0] == 0xfb && out[1] == 0xff,
          "b64url: url alphabet");
    CHECK(pol_b64url_decode("+/+/", 4, out, sizeof out) < 0, "b64url: standard alphabet refused");
    CHECK(pol_b64url_decode("QQ==", 4, out, sizeof out) < 0, "b64url: padding refused");
    CHECK(pol_b64url_decode("Q", 1, out, sizeof out) < 0, "b64url: length 1 mod 4 refused");
    CHECK(pol_b64url_decode("QU I", 4, out, sizeof out) < 0, "b64url: space refused");
}

static void test_jwks_files(void)
{
    char p[512], err[512];
    pol_jwks_t *k;
    struct { const char *name, *text, *want; } bad[] = {
        {"notjson.json", "{keys: nope", "not valid JSON"},
        {"nokeys.json", "{\"k\": []}", "\"keys\" array"},
        {"empty.json", "{\"keys\": []}", "no usable"},
        {"enc.json", "{\"keys\": [{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"use\":\"enc\","
                     "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}", "no usable"},
        {"x25519.json", "{\"keys\": [{\"kty\":\"OKP\",\"crv\":\"X25519\","
                        "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}", "no usable"},
        {"badpoint.json", "{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\","
                          "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                          "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}", "curve"},
        {"shortx.json", "{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\","
                        "\"y\":\"AAAA\"}]}", "32-byte"},
        {"nokty.json", "{\"keys\": [{\"crv\":\"P-256\"}]}", "kty"},
        {"kidnum.json", "{\"keys\": [{\"kty\":\"EC\",\"kid\":5}]}", "kid"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[128];
        write_text(bad[i].name, bad[i].text);
        path_of(p, sizeof p, bad[i].name);
        err[0] = '\0';
        k = pol_jwks_load(p, err, sizeof err);
        snprintf(name, sizeof name, "JWKS %s refused (%s)", bad[i].name, bad[i].want);
        if (k || !strstr(err, bad[i].want))
            printf("# %s: %s\n", name, err);
        CHECK(!k && strstr(err, bad[i].want), name);
        pol_jwks_release(k);
    }
    path_of(p, sizeof p, "missing.json");
    k = pol_jwks_load(p, err, sizeof err);
    CHECK(!k && strstr(err, "cannot read"), "JWKS missing file refused");

    /* RSA 1024 refused */
    EVP_PKEY *small = gen("RSA", "1024");
    write_jwks("rsa1024.json", json_pack("[o]", mj_jwk(small, "s")));
    path_of(p, sizeof p, "rsa1024.json");
    k = pol_jwks_load(p, err, sizeof err);
    CHECK(!k && strstr(err, "2048"), "JWKS RSA-1024 key refused");
    EVP_PKEY_free(small);

    /* an enc key next to a sig key: only the sig key is kept */
    json_t *encj = mj_jwk(ec2, "enc1");
    json_object_set_new(encj, "use", json_string("enc"));
    write_jwks("mixed.json", json_pack("[o,o]", encj, mj_jwk(ec, "ec1")));
    path_of(p, sizeof p, "mixed.json");
    k = pol_jwks_load(p, err, sizeof err);
    CHECK(k && pol_jwks_count(k) == 1 && pol_jwks_algorithms(k) == CFG_JWT_ES256,
          "JWKS: encryption key skipped, signature key kept");
    pol_jwks_release(k);
}

/* A JWK of key k with extra members (a JSON object text, merged in). */
static json_t *jwk_with(EVP_PKEY *k, const char *kid, const char *members)
{
    json_t *j = mj_jwk(k, kid), *extra = json_loads(members, 0, NULL);
    if (!j || !extra || json_object_update(j, extra) != 0) {
        fprintf(stderr, "bad test JWK members %s\n", members);
        exit(2);
    }
    json_decref(extra);
    return j;
}

/* Loads a one-key JWKS with those members next to a plain key of another
 * type, and reports whether a token signed by the first key verifies. */
static int one_key_verifies(EVP_PKEY *k, const char *alg, const char *members)
{
    char p[512], err[512];
    pol_jwt_result_t r;
    write_jwks("purpose.json", json_pack("[o,o]", jwk_with(k, "k", members),
                                         mj_jwk(k == ed ? ec : ed, "other")));
    path_of(p, sizeof p, "purpose.json");
    pol_jwks_t *set = pol_jwks_load(p, err, sizeof err);
    if (!set) {
        printf("# %s: %s\n", members, err);
        return -1;
    }
    char *t = tok_of(k, alg, "k", payload());
    char *t2 = tok_of(k, alg, NULL, payload());
    int ok = pol_jwt_verify(&cfg, set, t, strlen(t), NULL, now, &r) == 0;
    int ok2 = pol_jwt_verify(&cfg, set, t2, strlen(t2), NULL, now, &r) == 0;
    free(t);
    free(t2);
    pol_jwks_release(set);
    return ok && ok2 ? 1 : !ok && !ok2 ? 0 : -2;   /* the same answer with or without kid */
}

/* RFC 7517 4.2-4.4: "use", "key_ops" and "alg" say what a key is for; a key
 * not meant to verify the token's algorithm is never used. */
static void test_key_purpose(void)
{
    struct { EVP_PKEY **k; const char *alg, *members; int want; const char *name; } v[] = {
        {&ec, "ES256", "{\"alg\": \"ES256\"}", 1, "EC key with alg ES256 used"},
        {&rsa, "RS256", "{\"alg\": \"RS256\", \"use\": \"sig\"}", 1, "RSA key with alg RS256 used"},
        {&ed, "EdDSA", "{\"alg\": \"EdDSA\"}", 1, "Ed25519 key with alg EdDSA used"},
        {&rsa, "RS256", "{\"alg\": \"RS384\"}", 0, "RSA key with alg RS384 not used for RS256"},
        {&rsa, "RS256", "{\"alg\": \"PS256\"}", 0, "RSA key with alg PS256 not used for RS256"},
        {&ec, "ES256", "{\"alg\": \"ES384\"}", 0, "P-256 key with alg ES384 not used for ES256"},
        {&ec, "ES256", "{\"key_ops\": [\"verify\"]}", 1, "key_ops [verify] used"},
        {&ec, "ES256", "{\"key_ops\": [\"sign\", \"verify\"]}", 1, "key_ops [sign, verify] used"},
        {&ec, "ES256", "{\"key_ops\": [\"sign\"]}", 0, "key_ops [sign] not used"},
        {&ec, "ES256", "{\"key_ops\": [\"encrypt\", \"wrapKey\"]}", 0, "key_ops [encrypt, wrapKey] not used"},
        {&ec, "ES256", "{\"key_ops\": []}", 0, "key_ops [] not used"},
        {&ed, "EdDSA", "{\"use\": \"enc\"}", 0, "use enc not used"},
        {&ec, "ES256", "{\"use\": \"sig\", \"key_ops\": [\"decrypt\"]}", 0,
         "use sig with key_ops [decrypt] not used"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int got = one_key_verifies(*v[i].k, v[i].alg, v[i].members);
        if (got != v[i].want)
            printf("# %s: got %d\n", v[i].name, got);
        CHECK(got == v[i].want, v[i].name);
    }

    /* malformed purpose members: the file is refused, naming the member */
    struct { const char *members, *want, *name; } bad[] = {
        {"{\"alg\": \"RS256\"}", "another key type", "JWKS: EC key with alg RS256 refused"},
        {"{\"alg\": 7}", "\"alg\" must be a string", "JWKS: numeric alg refused"},
        {"{\"key_ops\": \"verify\"}", "array of strings", "JWKS: key_ops as a string refused"},
        {"{\"key_ops\": [\"verify\", 1]}", "array of strings", "JWKS: key_ops with a number refused"},
        {"{\"key_ops\": [\"verify\", \"verify\"]}", "twice", "JWKS: repeated key_ops value refused"},
        {"{\"use\": [\"sig\"]}", "\"use\" must be a string", "JWKS: use as an array refused"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char p[512], err[512] = "";
        write_jwks("purpose-bad.json", json_pack("[o,o]", mj_jwk(ed, "ok"),
                                                 jwk_with(ec, "bad", bad[i].members)));
        path_of(p, sizeof p, "purpose-bad.json");
        pol_jwks_t *k = pol_jwks_load(p, err, sizeof err);
        if (k || !strstr(err, bad[i].want) || !strstr(err, "keys[1]"))
            printf("# %s: %s\n", bad[i].name, err);
        CHECK(!k && strstr(err, bad[i].want) && strstr(err, "keys[1]"), bad[i].name);
        pol_jwks_release(k);
    }

    /* the set's algorithms leave out skipped keys; only skipped keys: no usable key */
    char p[512], err[512] = "";
    write_jwks("purpose-alg.json", json_pack("[o,o]", jwk_with(rsa, "r", "{\"alg\": \"PS256\"}"),
                                             mj_jwk(ec, "e")));
    path_of(p, sizeof p, "purpose-alg.json");
    pol_jwks_t *k = pol_jwks_load(p, err, sizeof err);
    CHECK(k && pol_jwks_count(k) == 1 && pol_jwks_algorithms(k) == CFG_JWT_ES256,
          "JWKS: a PS256 RSA key is not counted for RS256");
    pol_jwks_release(k);
    write_jwks("purpose-none.json", json_pack("[o]", jwk_with(ec, "e", "{\"key_ops\": [\"sign\"]}")));
    path_of(p, sizeof p, "purpose-none.json");
    k = pol_jwks_load(p, err, sizeof err);
    CHECK(!k && strstr(err, "no usable"), "JWKS: only a key without verify: no usable key");
    pol_jwks_release(k);
}

static void test_store(void)
{
    char p[512], err[512];
    pol_jwt_result_t r;
    write_jwks("store.json", json_pack("[o]", mj_jwk(ec, "k1")));
    path_of(p, sizeof p, "store.json");
    pol_jwks_store_t *s = pol_jwks_store_new(p, err, sizeof err);
    CHECK(s != NULL, "store: created");
    if (!s)
        return;
    char *t1 = tok_of(ec, "ES256", "k1", payload());
    char *t2 = tok_of(ec2, "ES256", "k2", payload());
    pol_jwks_t *a = pol_jwks_store_get(s);
    CHECK(pol_jwt_verify(&cfg, a, t1, strlen(t1), NULL, now, &r) == 0, "store: k1 token valid");
    CHECK(pol_jwks_store_refresh(s, err, sizeof err) == 0, "store: unchanged file not reloaded");

    write_jwks("store.json", json_pack("[o]", mj_jwk(ec2, "k2")));
    CHECK(pol_jwks_store_refresh(s, err, sizeof err) == 1, "store: changed file reloaded");
    pol_jwks_t *b = pol_jwks_store_get(s);
    CHECK(pol_jwt_verify(&cfg, b, t2, strlen(t2), NULL, now, &r) == 0 &&
              pol_jwt_verify(&cfg, b, t1, strlen(t1), NULL, now, &r) == -1,
          "store: new keys in use after reload");
    CHECK(pol_jwt_verify(&cfg, a, t1, strlen(t1), NULL, now, &r) == 0,
          "store: an old reference stays usable");
    pol_jwks_release(a);
    pol_jwks_release(b);

    write_text("store.json", "{\"keys\": [ broken");
    err[0] = '\0';
    CHECK(pol_jwks_store_refresh(s, err, sizeof err) == -1 && strstr(err, "keeping"),
          "store: bad new file reported");
    b = pol_jwks_store_get(s);
    CHECK(pol_jwt_verify(&cfg, b, t2, strlen(t2), NULL, now, &r) == 0,
          "store: old keys kept after a bad reload");
    pol_jwks_release(b);
    CHECK(pol_jwks_store_refresh(s, err, sizeof err) == 0,
          "store: the same bad version is not reported again");

    unlink(p);
    CHECK(pol_jwks_store_refresh(s, err, sizeof err) == -1, "store: missing file reported");
    CHECK(pol_jwks_store_refresh(s, err, sizeof err) == 0, "store: missing file reported once");
    write_jwks("store.json", json_pack("[o]", mj_jwk(ec, "k1")));
    CHECK(pol_jwks_store_refresh(s, err, sizeof err) == 1, "store: file back, reloaded");
    b = pol_jwks_store_get(s);
    CHECK(pol_jwt_verify(&cfg, b, t1, strlen(t1), NULL, now, &r) == 0, "store: k1 again");
    pol_jwks_release(b);
    free(t1);
    free(t2);
    pol_jwks_store_free(s);
    CHECK(pol_jwks_store_new("/nonexistent/jwks.json", err, sizeof err) == NULL,
          "store: missing file refused at creation");
}

int main(void)
{
    char p[512], err[512];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!mkdtemp(tmpdir)) {
        printf("not ok - scratch directory\n0 passed, 1 failed\n");
        return 1;
    }
    now = time(NULL);
    ec = gen("EC", "P-256");
    ec2 = gen("EC", "P-256");
    rsa = gen("RSA", "2048");
    ed = gen("ED25519", NULL);
    write_jwks("keys.json", json_pack("[o,o,o]", mj_jwk(ec, "ec1"), mj_jwk(rsa, "rsa1"),
                                      mj_jwk(ed, "ed1")));
    path_of(p, sizeof p, "keys.json");
    keys = pol_jwks_load(p, err, sizeof err);
    CHECK(keys && pol_jwks_count(keys) == 3 &&
              pol_jwks_algorithms(keys) == (CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA),
          "JWKS with EC, RSA and OKP keys loads");
    if (!keys) {
        printf("# %s\n", err);
        return check_done();
    }
    static char *auds[] = {"api", "other"};
    static cfg_claim_header_t sub = {"sub", "X-Token-Subject"};
    cfg.jwks_file = p;
    cfg.issuer = "https://issuer.test";
    cfg.audiences = auds;
    cfg.naudiences = 2;
    cfg.leeway_ms = 30000;
    cfg.algorithms = CFG_JWT_ES256 | CFG_JWT_RS256 | CFG_JWT_EDDSA;
    cfg.claims = &sub;
    cfg.nclaims = 1;

    test_b64();
    test_valid();
    test_times();
    test_signatures();
    test_algorithms();
    test_claims_checks();
    test_malformed();
    test_binding();
    test_claim_headers();
    test_jwks_files();
    test_key_purpose();
    test_store();

    pol_jwks_release(keys);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec2);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return check_done();
}
