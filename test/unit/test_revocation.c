/* Unit tests: canonical revocation entries (policy/revocation.c) and the
 * Redis command construction and reply parsing shared by the admin API and
 * the CLI (policy/revstore.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../config/config.h"
#include "../../policy/revocation.h"
#include "../../policy/revstore.h"
#include "check.h"

static char name[256];

static const char *nm(const char *what, const char *input)
{
    snprintf(name, sizeof name, "%s \"%.80s\"", what, input);
    return name;
}

static void test_serials(void)
{
    static const struct { const char *cls, *in, *out; } good[] = {
        {"device", "1a2b", "device:1a2b"},
        {"device", "1A2B", "device:1a2b"},
        {"device", "001a2b", "device:1a2b"},
        {"device", "0x1A2B", "device:1a2b"},
        {"device", "0X001a2b", "device:1a2b"},
        {"device", "1A:2b", "device:1a2b"},
        {"device", "00:1A:2B", "device:1a2b"},
        {"device", "0", "device:0"},
        {"device", "0000", "device:0"},
        {"boot-strap_2", "ff", "boot-strap_2:ff"},
        {"device", "0123456789abcdef0123456789abcdef01234567",
         "device:123456789abcdef0123456789abcdef01234567"},   /* 20 octets */
        {"device", "12 34", "device:1234"},                    /* spaces between digits */
        {"device", " 0x1a2b\t", "device:1a2b"},               /* whitespace around */
        /* 20 octets, the first with its top bit set, so DER (and some tools)
         * print a leading zero octet: 42 digits, 40 once the zeros go */
        {"device", "00ff23456789abcdef0123456789abcdef01234567",
         "device:ff23456789abcdef0123456789abcdef01234567"},
        {"device", "00:FF:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67",
         "device:ff23456789abcdef0123456789abcdef01234567"},
        /* a 20-octet serial written with one leading zero: 41 digits */
        {"device", "0123456789abcdef0123456789abcdef012345678",
         "device:123456789abcdef0123456789abcdef012345678"},
        {"device", "0x0000000000000000000000000000000000000000000000000000001",
         "device:1"},                                          /* any number of zeros */
    };
    static const struct { const char *cls, *in; } bad[] = {
        {"device", ""},            /* empty */
        {"device", "0x"},          /* empty after 0x */
        {"device", ":"},           /* only separators */
        {"device", "12g4"},        /* not hex */
        {"device", "-12"},         /* sign */
        {"device", "1 2x"},        /* not hex, with a space */
        {"device", "1123456789abcdef0123456789abcdef012345678"},   /* 21 octets */
        {"device", "00:11:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"},
        {"device", "0x"},          /* 0x alone */
        {"Device", "12"},          /* class: upper case */
        {"", "12"},                /* class: empty */
        {"dev ice", "12"},         /* class: space */
        {"dev:ice", "12"},         /* class: colon */
        {"0123456789012345678901234567890123456789012345678901234567890123", "12"}, /* 64 */
    };
    char out[POL_REV_ENTRY_MAX];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *err = NULL;
        int rc = pol_rev_canon_serial(good[i].cls, good[i].in, out, sizeof out, &err);
        CHECK(rc == 0 && strcmp(out, good[i].out) == 0, nm("serial", good[i].in));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *err = NULL;
        int rc = pol_rev_canon_serial(bad[i].cls, bad[i].in, out, sizeof out, &err);
        snprintf(name, sizeof name, "serial \"%.50s\" class \"%.20s\" rejected with a message",
                 bad[i].in, bad[i].cls);
        CHECK(rc == -1 && err && *err, name);
    }
    const char *err = NULL;
    pol_rev_canon_serial("device", "12g4", out, sizeof out, &err);
    CHECK(err && strstr(err, "hexadecimal"), "non-hex serial: message says hexadecimal");
    pol_rev_canon_serial("device", "1123456789abcdef0123456789abcdef012345678", out, sizeof out,
                         &err);
    CHECK(err && strstr(err, "20 octets"), "long serial: message gives the limit");
    pol_rev_canon_serial("Device", "12", out, sizeof out, &err);
    CHECK(err && strstr(err, "class"), "bad class: message names the class");
    char small[8];
    CHECK(pol_rev_canon_serial("device", "123456", small, sizeof small, &err) == -1,
          "serial: output buffer too small is an error, not an overflow");
}

#define FP "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static void test_fingerprints(void)
{
    static const char *const good[] = {
        FP,
        "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
        "9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:"
        "B0:F0:0A:08",
        "sha256:" FP,
        "SHA256:" FP,
        "sha256=" FP,
        "9f 86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",    /* space */
        "  " FP "\n",
    };
    static const char *const bad[] = {
        "",
        "9f86d081",                                                             /* short */
        FP "00",                                                                /* long */
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",      /* 63 */
        "zf86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",     /* non-hex */
        "9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:"
        "B0:F0:0A",                                                             /* 31 octets */
    };
    char out[POL_REV_ENTRY_MAX];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *err = NULL;
        int rc = pol_rev_canon_fingerprint(good[i], out, sizeof out, &err);
        CHECK(rc == 0 && strcmp(out, FP) == 0, nm("fingerprint", good[i]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *err = NULL;
        int rc = pol_rev_canon_fingerprint(bad[i], out, sizeof out, &err);
        CHECK(rc == -1 && err && strstr(err, "64 hex"), nm("fingerprint rejected", bad[i]));
    }
}

static void test_entries(void)
{
    static const struct { const char *in, *out; } good[] = {
        {"device:1a2b", "device:1a2b"},
        {"device:1A2B", "device:1a2b"},
        {"device:0x001a2b", "device:1a2b"},
        {"device:1a:2b", "device:1a2b"},    /* colons after the first: serial separators */
        {"abc:12", "abc:12"},               /* a hex-looking class is still a class */
        /* ... even when class and serial add up to 64 hex digits */
        {"deadbeefdeadbeefdeadbeefdeadbeef:00deadbeefdeadbeefdeadbeefdeadbeef",
         "deadbeefdeadbeefdeadbeefdeadbeef:deadbeefdeadbeefdeadbeefdeadbeef"},
        {FP, FP},
        {"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", FP},
    };
    static const char *const bad[] = {
        "", "device", "device:", ":12", "Device:12", "device:xyz", "9f86d081",
        "device:1123456789abcdef0123456789abcdef012345678",   /* 21 octets */
        "device-id=", "device-id=bad id", "device-id=a/b",
    };
    char out[POL_REV_ENTRY_MAX], again[POL_REV_ENTRY_MAX];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *err = NULL;
        int rc = pol_rev_canon_entry(good[i].in, strlen(good[i].in), out, sizeof out, &err);
        CHECK(rc == 0 && strcmp(out, good[i].out) == 0, nm("entry", good[i].in));
        /* canonical in, same canonical out */
        rc = pol_rev_canon_entry(out, strlen(out), again, sizeof again, &err);
        CHECK(rc == 0 && strcmp(out, again) == 0, nm("entry round trip", out));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *err = NULL;
        int rc = pol_rev_canon_entry(bad[i], strlen(bad[i]), out, sizeof out, &err);
        CHECK(rc == -1 && err && *err, nm("entry rejected", bad[i]));
    }
    /* length-delimited: bytes after len are not part of the entry */
    const char *err = NULL;
    int rc = pol_rev_canon_entry("device:12ff", 9, out, sizeof out, &err);
    CHECK(rc == 0 && strcmp(out, "device:12") == 0, "entry: only len bytes are read");
    char big[400];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(pol_rev_canon_entry(big, strlen(big), out, sizeof out, &err) == -1,
          "entry: overlong input rejected");

    /* what an operator types and what the API stores are the same entry */
    char a[POL_REV_ENTRY_MAX], b[POL_REV_ENTRY_MAX];
    pol_rev_canon_serial("device", "00:1A:2B", a, sizeof a, &err);
    pol_rev_canon_entry("device:0x1a2b", 13, b, sizeof b, &err);
    CHECK(strcmp(a, b) == 0, "serial and entry forms agree");
}

static void test_keys(void)
{
    const char *e1 = "device:1a2b", *e2 = "device:1a2c";
    char copy[32];
    snprintf(copy, sizeof copy, "%s", e1);
    pol_rev_key_t k1 = pol_rev_key(e1, strlen(e1)), k1b = pol_rev_key(copy, strlen(copy));
    pol_rev_key_t k2 = pol_rev_key(e2, strlen(e2)), kf = pol_rev_key(FP, 64);
    CHECK(k1.h[0] == k1b.h[0] && k1.h[1] == k1b.h[1], "equal entries: equal digests");
    CHECK(k1.h[0] != k2.h[0] || k1.h[1] != k2.h[1], "different entries: different digests");
    CHECK(kf.h[0] != k1.h[0] || kf.h[1] != k1.h[1], "fingerprint and serial digests differ");
    CHECK(k1.h[0] || k1.h[1], "digest is never all-zero");
    char a[POL_REV_ENTRY_MAX], b[POL_REV_ENTRY_MAX];
    const char *err;
    pol_rev_canon_serial("device", "0x001A2B", a, sizeof a, &err);
    pol_rev_canon_entry("device:1a:2b", 12, b, sizeof b, &err);
    pol_rev_key_t ka = pol_rev_key(a, strlen(a)), kb = pol_rev_key(b, strlen(b));
    CHECK(ka.h[0] == kb.h[0] && ka.h[1] == kb.h[1] && ka.h[0] == k1.h[0],
          "differently written inputs: equal digests after canonicalisation");
}

/* ------------------------------------------------------------- revstore */

static int cmd_is(const pol_revcmd_t *c, int argc, const char *a0, const char *a1,
                  const char *a2)
{
    const char *want[3] = {a0, a1, a2};
    if (c->argc != argc)
        return 0;
    for (int i = 0; i < argc && i < 3; i++)
        if (!want[i] || strlen(want[i]) != c->argvlen[i] || strcmp(c->argv[i], want[i]) != 0)
            return 0;
    return 1;
}

/* cmd_is with a fourth argument (a3 NULL: argc must be 3). */
static int cmd_is4(const pol_revcmd_t *c, int argc, const char *a0, const char *a1,
                   const char *a2, const char *a3)
{
    if (!cmd_is(c, argc, a0, a1, a2))
        return 0;
    return !a3 || (c->argc > 3 && strlen(a3) == c->argvlen[3] && strcmp(c->argv[3], a3) == 0);
}

static void test_write_commands(void)
{
    cfg_revocation_t rc = {.key = "portcullis:revoked", .channel = "portcullis:revocations"};
    pol_revwrite_t w;
    const char *err = NULL;
    int r = pol_revwrite_build(&w, &rc, 1, "device:1a2b", "lost \"phone\"", 1700000000, &err);
    CHECK(r == 0 && w.ncmd == 5, "revoke: five commands");
    if (r == 0) {
        CHECK(cmd_is(&w.cmd[0], 1, "MULTI", NULL, NULL), "revoke: MULTI");
        CHECK(cmd_is(&w.cmd[1], 3, "SADD", "portcullis:revoked", "device:1a2b"), "revoke: SADD");
        CHECK(cmd_is(&w.cmd[2], 4, "HSET", "portcullis:revoked:meta", "device:1a2b"),
              "revoke: HSET on <key>:meta");
        char *reason = NULL;
        int64_t at = 0;
        int pr = pol_revmeta_parse(w.cmd[2].argv[3], w.cmd[2].argvlen[3], &reason, &at);
        CHECK(pr == 0 && reason && !strcmp(reason, "lost \"phone\"") && at == 1700000000,
              "revoke: meta JSON carries reason and revoked_at");
        free(reason);
        CHECK(cmd_is(&w.cmd[3], 3, "PUBLISH", "portcullis:revocations", "+device:1a2b"),
              "revoke: PUBLISH +entry");
        CHECK(cmd_is(&w.cmd[4], 1, "EXEC", NULL, NULL), "revoke: EXEC");
        pol_revwrite_clear(&w);
    }
    r = pol_revwrite_build(&w, &rc, 0, FP, NULL, 0, &err);
    CHECK(r == 0 && cmd_is(&w.cmd[1], 3, "SREM", "portcullis:revoked", FP) &&
              cmd_is(&w.cmd[2], 3, "HDEL", "portcullis:revoked:meta", FP) &&
              cmd_is(&w.cmd[3], 3, "PUBLISH", "portcullis:revocations", "-" FP) && !w.meta,
          "lift: SREM, HDEL, PUBLISH -entry");
    if (r == 0)
        pol_revwrite_clear(&w);
    r = pol_revwrite_build(&w, &rc, 1, "device:1a2b", NULL, 5, &err);
    char *reason = (char *)"x";
    int64_t at = 0;
    CHECK(r == 0 && pol_revmeta_parse(w.meta, strlen(w.meta), &reason, &at) == 0 && !reason &&
              at == 5,
          "revoke without reason: reason null");
    if (r == 0)
        pol_revwrite_clear(&w);
    CHECK(pol_revwrite_build(&w, &rc, 1, "DEVICE:1A2B", NULL, 0, &err) == -1,
          "write refuses an entry that does not canonicalise (class in upper case)");
    r = pol_revwrite_build(&w, &rc, 1, "device:001A2B", NULL, 0, &err);
    CHECK(r == 0 && strcmp(w.entry, "device:1a2b") == 0 &&
              cmd_is4(&w.cmd[1], 3, "SADD", "portcullis:revoked", "device:1a2b", NULL),
          "revoke writes the canonical entry of another spelling");
    if (r == 0)
        pol_revwrite_clear(&w);
    r = pol_revwrite_build(&w, &rc, 0, "device:001A2B", NULL, 0, &err);
    CHECK(r == 0 && cmd_is4(&w.cmd[1], 4, "SREM", "portcullis:revoked", "device:1a2b",
                           "device:001A2B") &&
              cmd_is4(&w.cmd[2], 4, "HDEL", "portcullis:revoked:meta", "device:1a2b",
                     "device:001A2B") &&
              cmd_is4(&w.cmd[3], 3, "PUBLISH", "portcullis:revocations", "-device:1a2b", NULL),
          "lift removes the canonical entry and the spelling given, publishes the canonical");
    if (r == 0)
        pol_revwrite_clear(&w);
    char longr[202];
    memset(longr, 'r', 201);
    longr[201] = '\0';
    CHECK(pol_revwrite_build(&w, &rc, 1, "device:1", longr, 0, &err) == -1,
          "write refuses a reason over 200 characters");
    CHECK(pol_revwrite_build(&w, &rc, 1, "device:1", "\xff\xfe", 0, &err) == -1,
          "write refuses a reason that is not UTF-8");
}


/* pol_rev_canon: the one canonicalisation, with its form and length. */
static void test_canon(void)
{
    static const struct { const char *in; const char *out; int form; } good[] = {
        {"device:1a2b", "device:1a2b", POL_REV_SERIAL},
        {"  device : 0X00:1A:2B  ", "device:1a2b", POL_REV_SERIAL},
        {"device:\t1a 2b\n", "device:1a2b", POL_REV_SERIAL},
        {"device:0x00ff23456789abcdef0123456789abcdef01234567",
         "device:ff23456789abcdef0123456789abcdef01234567", POL_REV_SERIAL},
        {"device:0123456789abcdef0123456789abcdef012345678",
         "device:123456789abcdef0123456789abcdef012345678", POL_REV_SERIAL},
        {"device:000", "device:0", POL_REV_SERIAL},
        {"sha256:" FP, FP, POL_REV_FINGERPRINT},
        {"device-id=k3j7", "device-id=k3j7", POL_REV_DEVICE},
        /* hex-only class, serial padded to 64 digits in all: not a fingerprint */
        {"cafe:000000000000000000000000000000000000000000000000000000000001",
         "cafe:1", POL_REV_SERIAL},
        {"9F:86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", FP,
         POL_REV_FINGERPRINT},                                   /* one colon, as before */
        {"DEVICE-ID=K3j7", "device-id=K3j7", POL_REV_DEVICE},      /* the id keeps its case */
        {" device-id= phone-1.a_b:c@d ", "device-id=phone-1.a_b:c@d", POL_REV_DEVICE},
    };
    char out[POL_REV_ENTRY_MAX];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *err = NULL;
        int form = 0;
        int n = pol_rev_canon(good[i].in, strlen(good[i].in), out, sizeof out, &form, &err);
        CHECK(n == (int)strlen(good[i].out) && strcmp(out, good[i].out) == 0 &&
                  form == good[i].form, nm("canon", good[i].in));
    }
    static const char *const bad[] = {
        "", "   ", "device", "device:", "device:0x", "device-id=", "device-id=a b",
        "device-id=x/y", "device:1123456789abcdef0123456789abcdef012345678",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *err = NULL;
        strcpy(out, "junk");
        int n = pol_rev_canon(bad[i], strlen(bad[i]), out, sizeof out, NULL, &err);
        CHECK(n == -1 && err && *err && out[0] == '\0', nm("canon refused", bad[i]));
    }
    char id[200];
    memset(id, 'a', 140);
    memcpy(id, "device-id=", 10);
    id[139] = '\0';   /* 129 characters after the prefix */
    const char *err = NULL;
    CHECK(pol_rev_canon(id, strlen(id), out, sizeof out, NULL, &err) == -1,
          "canon: a device id over 128 characters is refused");
    id[138] = '\0';
    CHECK(pol_rev_canon(id, strlen(id), out, sizeof out, NULL, &err) == 138,
          "canon: a 128-character device id fits POL_REV_ENTRY_MAX");
    CHECK(pol_rev_canon("device:1\0" "2", 10, out, sizeof out, NULL, &err) == -1,
          "canon: a NUL byte is refused");
    /* leading zeros are unbounded: stripped before the 20-octet limit */
    char zeros[600];
    memcpy(zeros, "device:", 7);
    memset(zeros + 7, '0', 500);
    memcpy(zeros + 507, "1a", 3);
    CHECK(pol_rev_canon(zeros, strlen(zeros), out, sizeof out, NULL, &err) > 0 &&
              strcmp(out, "device:1a") == 0, "canon: 500 leading zeros, then 1a");
    char tiny[4];
    CHECK(pol_rev_canon("device:1a", 9, tiny, sizeof tiny, NULL, &err) == -1 && tiny[0] == '\0',
          "canon: too small an output buffer is an error, not an overflow");
    CHECK(pol_rev_canon_device("k3j7", out, sizeof out, &err) == 0 &&
              strcmp(out, "device-id=k3j7") == 0, "device helper: the device entry");
    pol_rev_key_t a, b = pol_rev_key("device-id=k3j7", 14);
    CHECK(pol_rev_device_key("k3j7", &a) == 0 && a.h[0] == b.h[0] && a.h[1] == b.h[1],
          "device key: the digest of the device entry");
    CHECK(pol_rev_device_key("bad id", &a) == -1, "device key: an invalid id has none");
}

static void test_messages(void)
{
    char out[POL_REV_ENTRY_MAX];
    const char *err = NULL;
    int form = 0;
    CHECK(pol_rev_parse_message("+device:0x001A", 14, out, sizeof out, &form, &err) == 1 &&
              strcmp(out, "device:1a") == 0 && form == POL_REV_SERIAL, "message: + revokes");
    CHECK(pol_rev_parse_message("-device-id=k3", 13, out, sizeof out, &form, &err) == 0 &&
              strcmp(out, "device-id=k3") == 0 && form == POL_REV_DEVICE, "message: - lifts");
    static const char *const bad[] = {"", "+", "-", "device:1", "*device:1", "+device:",
                                      "+device:xyz", " +device:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(pol_rev_parse_message(bad[i], strlen(bad[i]), out, sizeof out, NULL, &err) == -1 &&
                  err && *err, nm("message refused", bad[i]));
    CHECK(pol_rev_parse_message("+device:12ff", 10, out, sizeof out, NULL, &err) == 1 &&
              strcmp(out, "device:12") == 0, "message: only len bytes are read");
}

/* cfg zeroed but for the certificate classes names[0..n-1], held in cls. */
static void with_classes(cfg_t *cfg, cfg_class_t *cls, const char *const *names, size_t n)
{
    memset(cfg, 0, sizeof *cfg);
    memset(cls, 0, n * sizeof *cls);
    for (size_t i = 0; i < n; i++)
        snprintf(cls[i].name, sizeof cls[i].name, "%s", names[i]);
    cfg->tls.classes = cls;
    cfg->tls.nclasses = n;
}

static void test_usable(void)
{
    static const char *const names[] = {"device", "bootstrap"};
    cfg_t cfg;
    cfg_class_t cls[2];
    with_classes(&cfg, cls, names, 2);
    char why[300];
    CHECK(pol_rev_usable(&cfg, "device:1a", POL_REV_SERIAL, why, sizeof why) == 0 && !why[0],
          "usable: a configured class");
    CHECK(pol_rev_usable(&cfg, "devices:1a", POL_REV_SERIAL, why, sizeof why) == -1 &&
              strstr(why, "\"devices\"") && strstr(why, "device, bootstrap"),
          "usable: an unknown class is refused, naming the configured ones");
    CHECK(pol_rev_usable(&cfg, "dev:1a", POL_REV_SERIAL, why, sizeof why) == -1,
          "usable: a prefix of a class is not the class");
    CHECK(pol_rev_usable(&cfg, FP, POL_REV_FINGERPRINT, why, sizeof why) == 0 &&
              pol_rev_usable(&cfg, "device-id=x", POL_REV_DEVICE, why, sizeof why) == 0,
          "usable: fingerprints and device ids always can match");
    CHECK(pol_revstore_entry_problem(&cfg, "device:0x1A", why, sizeof why) == 0,
          "entry problem: none for a usable spelling");
    CHECK(pol_revstore_entry_problem(&cfg, "device:1123456789abcdef0123456789abcdef012345678",
                                     why, sizeof why) == -1 && strstr(why, "20 octets"),
          "entry problem: a serial that is too long");
}

/* Revoke by device id without issuance: the device entry alone, ready. */
static void test_device_batch(void)
{
    static const char *const names[] = {"device"};
    cfg_t cfg;
    cfg_class_t cls[1];
    with_classes(&cfg, cls, names, 1);
    cfg.revocation.key = "portcullis:revoked";
    cfg.revocation.channel = "portcullis:revocations";
    pol_revdevice_t d;
    const char *err = NULL;
    int r = pol_revdevice_begin(&d, &cfg, "k3j7", "stolen", 1700000000, &err);
    CHECK(r == 0 && d.members.argc == 0 && d.batch.n == 1 && d.ncerts == 0 &&
              strcmp(d.batch.w[0].entry, "device-id=k3j7") == 0 && d.batch.ncmd == 5 &&
              cmd_is4(d.batch.cmd[1], 3, "SADD", "portcullis:revoked", "device-id=k3j7", NULL) &&
              cmd_is4(d.batch.cmd[3], 3, "PUBLISH", "portcullis:revocations", "+device-id=k3j7",
                     NULL),
          "device without issuance: SADD/HSET/PUBLISH of device-id=<id> in one MULTI");
    if (r == 0)
        pol_revdevice_clear(&d);
    CHECK(pol_revdevice_begin(&d, &cfg, "bad id", NULL, 0, &err) == -1 && err,
          "device: an invalid id is refused");
}

static redisReply *rep(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = type;
    return r;
}

static redisReply *rep_str(int type, const char *s)
{
    redisReply *r = rep(type);
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *rep_arr(size_t n)
{
    redisReply *r = rep(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    return r;
}

static void test_replies(void)
{
    char err[200];
    int changed = -1;
    redisReply *ex = rep_arr(3);
    ex->element[0] = rep(REDIS_REPLY_INTEGER);
    ex->element[0]->integer = 1;
    ex->element[1] = rep(REDIS_REPLY_INTEGER);
    ex->element[2] = rep(REDIS_REPLY_INTEGER);
    CHECK(pol_revwrite_result(ex, &changed, err, sizeof err) == 0 && changed == 1,
          "EXEC reply: changed");
    ex->element[0]->integer = 0;
    CHECK(pol_revwrite_result(ex, &changed, err, sizeof err) == 0 && changed == 0,
          "EXEC reply: unchanged");
    freeReplyObject(ex->element[1]);
    ex->element[1] = rep_str(REDIS_REPLY_ERROR, "WRONGTYPE Operation against a key");
    CHECK(pol_revwrite_result(ex, &changed, err, sizeof err) == -1 && strstr(err, "WRONGTYPE"),
          "EXEC reply with an error element fails");
    freeReplyObject(ex);
    redisReply *nil = rep(REDIS_REPLY_NIL);
    CHECK(pol_revwrite_result(nil, &changed, err, sizeof err) == -1, "EXEC nil (aborted) fails");
    freeReplyObject(nil);
    redisReply *abort_ = rep_str(REDIS_REPLY_ERROR, "EXECABORT Transaction discarded");
    CHECK(pol_revwrite_result(abort_, &changed, err, sizeof err) == -1 &&
              strstr(err, "EXECABORT"),
          "EXECABORT fails with the message");
    freeReplyObject(abort_);
    CHECK(pol_revwrite_result(NULL, &changed, err, sizeof err) == -1, "no reply fails");

    /* SSCAN then HMGET */
    redisReply *scan = rep_arr(2);
    scan->element[0] = rep_str(REDIS_REPLY_STRING, "17");
    scan->element[1] = rep_arr(2);
    scan->element[1]->element[0] = rep_str(REDIS_REPLY_STRING, "device:1a2b");
    scan->element[1]->element[1] = rep_str(REDIS_REPLY_STRING, FP);
    pol_revstore_result_t res;
    memset(&res, 0, sizeof res);
    int r = pol_revscan_result(scan, &res, err, sizeof err);
    CHECK(r == 0 && !strcmp(res.cursor, "17") && res.nitems == 2 &&
              !strcmp(res.items[0].entry, "device:1a2b") && !strcmp(res.items[1].entry, FP),
          "SSCAN reply parsed");
    freeReplyObject(scan);
    const char *argv[4];
    size_t argvlen[4];
    char metakey[POL_REVSTORE_KEY_MAX];
    cfg_revocation_t rc = {.key = "k", .channel = "c"};
    int argc = pol_revmeta_build(&rc, &res, argv, argvlen, metakey);
    CHECK(argc == 4 && !strcmp(argv[0], "HMGET") && !strcmp(argv[1], "k:meta") &&
              !strcmp(argv[2], "device:1a2b") && argvlen[3] == 64,
          "HMGET command for the scanned entries");
    redisReply *hm = rep_arr(2);
    hm->element[0] = rep_str(REDIS_REPLY_STRING, "{\"reason\":\"lost\",\"revoked_at\":42}");
    hm->element[1] = rep(REDIS_REPLY_NIL);
    r = pol_revmeta_result(hm, &res, err, sizeof err);
    CHECK(r == 0 && res.items[0].reason && !strcmp(res.items[0].reason, "lost") &&
              res.items[0].revoked_at == 42 && !res.items[1].reason &&
              res.items[1].revoked_at == 0,
          "HMGET reply applied (missing meta: no reason)");
    freeReplyObject(hm);
    pol_revstore_result_clear(&res);

    pol_revcmd_t sc;
    char countbuf[16];
    CHECK(pol_revscan_build(&sc, &rc, "0", 5000, countbuf) == 0 && sc.argc == 5 &&
              !strcmp(sc.argv[0], "SSCAN") && !strcmp(sc.argv[1], "k") &&
              !strcmp(sc.argv[2], "0") && !strcmp(sc.argv[3], "COUNT") &&
              !strcmp(sc.argv[4], "1000"),
          "SSCAN command, count clamped to 1000");
    CHECK(pol_revscan_build(&sc, &rc, "12a", 10, countbuf) == -1 &&
              pol_revscan_build(&sc, &rc, "", 10, countbuf) == -1 &&
              pol_revscan_build(&sc, &rc, "123456789012345678901", 10, countbuf) == -1,
          "SSCAN refuses a bad cursor");
    char *reason;
    int64_t at;
    CHECK(pol_revmeta_parse("not json", 8, &reason, &at) == -1 && !reason,
          "meta: malformed JSON rejected");
}

int main(void)
{
    test_serials();
    test_fingerprints();
    test_entries();
    test_keys();
    test_write_commands();
    test_replies();
    test_canon();
    test_messages();
    test_usable();
    test_device_batch();
    return check_done();
}
