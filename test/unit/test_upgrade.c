/* Unit tests: the binary-upgrade handover messages (gateway/upgrade_msg.c). */
#include <string.h>

#include "../../config/config.h"
#include "../../gateway/upgrade.h"
#include "check.h"

/* A message as bytes: header for type with a total length of 8 + plen. */
static size_t raw(unsigned char *out, int type, const void *payload, size_t plen)
{
    memcpy(out, "PCUG", 4);
    out[4] = 1;
    out[5] = (unsigned char)type;
    out[6] = (unsigned char)((8 + plen) >> 8);
    out[7] = (unsigned char)(8 + plen);
    memcpy(out + 8, payload, plen);
    return 8 + plen;
}

static void roundtrips(void)
{
    unsigned char b[GW_UPGRADE_MAX_MSG];
    gw_upgrade_msg_t m = {0}, in = {.type = GW_UPGRADE_LISTENER, .listener = 3, .sock = 1,
                                    .nsocks = 4, .text = "[::1]:8443", .textlen = 10};
    size_t n = gw_upgrade_encode(&in, b, sizeof b);
    CHECK(n == 26, "LISTENER encodes to 16 + text bytes");
    CHECK(gw_upgrade_parse(b, n, &m) == GW_UPGRADE_LISTENER && m.listener == 3 && m.sock == 1 &&
          m.nsocks == 4 && m.textlen == 10 && memcmp(m.text, "[::1]:8443", 10) == 0 &&
          m.text == (const char *)b + 16, "LISTENER parses back, text pointing into the buffer");
    int types[] = {GW_UPGRADE_HELLO, GW_UPGRADE_END, GW_UPGRADE_READY, GW_UPGRADE_DONE};
    for (size_t i = 0; i < 4; i++) {
        gw_upgrade_msg_t v = {.type = types[i], .value = 0x01020304u + (uint32_t)i};
        n = gw_upgrade_encode(&v, b, sizeof b);
        CHECK(n == 12 && gw_upgrade_parse(b, n, &m) == types[i] && m.value == v.value,
              "HELLO, END, READY, DONE carry a 32-bit value");
    }
    gw_upgrade_msg_t e = {.type = GW_UPGRADE_ERROR, .text = "refused", .textlen = 7};
    n = gw_upgrade_encode(&e, b, sizeof b);
    CHECK(n == 17 && gw_upgrade_parse(b, n, &m) == GW_UPGRADE_ERROR && m.textlen == 7 &&
          memcmp(m.text, "refused", 7) == 0, "ERROR carries its reason");
    CHECK(gw_upgrade_encode(&e, b, 16) == 0, "encode: a buffer too small gives 0");
    gw_upgrade_msg_t bad = {.type = GW_UPGRADE_LISTENER, .sock = 2, .nsocks = 2, .text = "a",
                            .textlen = 1};
    CHECK(gw_upgrade_encode(&bad, b, sizeof b) == 0, "encode: socket index >= count gives 0");
    bad.type = 9;
    CHECK(gw_upgrade_encode(&bad, b, sizeof b) == 0, "encode: unknown type gives 0");
}

static void refusals(void)
{
    unsigned char b[GW_UPGRADE_MAX_MSG + 8], p[GW_UPGRADE_MAX_MSG];
    gw_upgrade_msg_t m = {.type = 77};
    size_t n = raw(b, GW_UPGRADE_HELLO, "\0\0\0\1", 4);
    CHECK(gw_upgrade_parse(b, n, &m) == GW_UPGRADE_HELLO, "a valid HELLO (baseline)");
    m.type = 77;
    CHECK(gw_upgrade_parse(b, n - 1, &m) == -1 && m.type == 77, "short by one: -1, *m untouched");
    CHECK(gw_upgrade_parse(b, 7, &m) == -1, "shorter than the header: -1");
    b[n] = 0;
    CHECK(gw_upgrade_parse(b, n + 1, &m) == -1, "a byte more than the length field: -1");
    b[0] = 'X';
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "wrong magic: -1");
    b[0] = 'P';
    b[4] = 2;
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "another version: -1");
    b[4] = 1;
    b[5] = 0;
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "type 0: -1");
    b[5] = 7;
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "type 7: -1");
    n = raw(b, GW_UPGRADE_READY, "\0\0\0\1\0", 5);
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "READY with 5 payload bytes: -1");
    /* LISTENER: u16 listener, sock, nsocks, textlen, then text */
    memcpy(p, "\0\0\0\1\0\1\0\4:443", 12);
    n = raw(b, GW_UPGRADE_LISTENER, p, 12);
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "LISTENER with socket 1 of 1: -1");
    p[5] = 2;
    n = raw(b, GW_UPGRADE_LISTENER, p, 12);
    CHECK(gw_upgrade_parse(b, n, &m) == GW_UPGRADE_LISTENER && m.sock == 1 && m.nsocks == 2,
          "LISTENER with socket 1 of 2 parses");
    p[7] = 5;
    n = raw(b, GW_UPGRADE_LISTENER, p, 12);
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "text length beyond the message: -1");
    p[7] = 0;
    n = raw(b, GW_UPGRADE_LISTENER, p, 8);
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "empty text: -1");
    memcpy(p, "\0\0\0\0\0\1\0\4a\nbc", 12);
    n = raw(b, GW_UPGRADE_LISTENER, p, 12);
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "a control byte in the text: -1");
    memcpy(p, "\0\0\0\0\0\1\0\4ab\0c", 12);
    n = raw(b, GW_UPGRADE_LISTENER, p, 12);
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "a NUL in the text: -1");
    memset(p, 'a', sizeof p);
    p[0] = 0;
    p[1] = GW_UPGRADE_MAX_TEXT + 1;
    n = raw(b, GW_UPGRADE_ERROR, p, 2 + GW_UPGRADE_MAX_TEXT + 1);
    CHECK(gw_upgrade_parse(b, n, &m) == -1, "ERROR text one byte over the maximum: -1");
    p[1] = GW_UPGRADE_MAX_TEXT;
    n = raw(b, GW_UPGRADE_ERROR, p, 2 + GW_UPGRADE_MAX_TEXT);
    CHECK(gw_upgrade_parse(b, n, &m) == GW_UPGRADE_ERROR && m.textlen == GW_UPGRADE_MAX_TEXT,
          "ERROR text of the maximum length parses");
}

static void default_name(void)
{
    char out[64];
    /* printf %s 127.0.0.1:8443 | sha256sum | cut -c1-16 */
    CHECK(cfg_upgrade_default("127.0.0.1:8443", out, sizeof out) == 0 &&
          strcmp(out, "@portcullis-upgrade-37d265174de89804") == 0,
          "default upgrade_socket: @portcullis-upgrade- and the digest's first 16 hex digits");
    CHECK(cfg_upgrade_default("127.0.0.1:8443", out, 36) == -1, "default: a buffer too small");
}

int main(void)
{
    roundtrips();
    refusals();
    default_name();
    return check_done();
}
