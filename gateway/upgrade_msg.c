/* gateway/upgrade_msg: the handover messages (format in upgrade.h). Pure
 * functions without state, shared by both ends, the unit test and the
 * fuzz target. */
#include "upgrade.h"

#include <string.h>

#define MAGIC "PCUG"
#define HEAD 8

/* ---------------------------------------------------------------- wire */

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

static int text_ok(const unsigned char *t, size_t n)
{
    if (n == 0 || n > GW_UPGRADE_MAX_TEXT)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0x20 || t[i] > 0x7e)
            return 0;
    return 1;
}

int gw_upgrade_parse(const unsigned char *buf, size_t n, gw_upgrade_msg_t *m)
{
    if (n < HEAD || n > GW_UPGRADE_MAX_MSG || memcmp(buf, MAGIC, 4) != 0 ||
        buf[4] != GW_UPGRADE_VERSION || get16(buf + 6) != n)
        return -1;
    gw_upgrade_msg_t r = {.type = buf[5]};
    const unsigned char *p = buf + HEAD;
    size_t left = n - HEAD;
    switch (r.type) {
    case GW_UPGRADE_HELLO:
    case GW_UPGRADE_END:
    case GW_UPGRADE_READY:
    case GW_UPGRADE_DONE:
        if (left != 4)
            return -1;
        r.value = get32(p);
        break;
    case GW_UPGRADE_LISTENER:
        if (left < 8)
            return -1;
        r.listener = get16(p);
        r.sock = get16(p + 2);
        r.nsocks = get16(p + 4);
        r.textlen = get16(p + 6);
        if (r.sock >= r.nsocks || left != 8 + r.textlen || !text_ok(p + 8, r.textlen))
            return -1;
        r.text = (const char *)p + 8;
        break;
    case GW_UPGRADE_ERROR:
        if (left < 2)
            return -1;
        r.textlen = get16(p);
        if (left != 2 + r.textlen || !text_ok(p + 2, r.textlen))
            return -1;
        r.text = (const char *)p + 2;
        break;
    default:
        return -1;
    }
    *m = r;
    return r.type;
}

size_t gw_upgrade_encode(const gw_upgrade_msg_t *m, unsigned char *buf, size_t cap)
{
    size_t n = HEAD;
    unsigned char tmp[GW_UPGRADE_MAX_MSG];
    switch (m->type) {
    case GW_UPGRADE_HELLO:
    case GW_UPGRADE_END:
    case GW_UPGRADE_READY:
    case GW_UPGRADE_DONE:
        put32(tmp + n, m->value);
        n += 4;
        break;
    case GW_UPGRADE_LISTENER:
        if (!m->text || !text_ok((const unsigned char *)m->text, m->textlen) ||
            m->sock >= m->nsocks)
            return 0;
        put16(tmp + n, m->listener);
        put16(tmp + n + 2, m->sock);
        put16(tmp + n + 4, m->nsocks);
        put16(tmp + n + 6, m->textlen);
        memcpy(tmp + n + 8, m->text, m->textlen);
        n += 8 + m->textlen;
        break;
    case GW_UPGRADE_ERROR:
        if (!m->text || !text_ok((const unsigned char *)m->text, m->textlen))
            return 0;
        put16(tmp + n, m->textlen);
        memcpy(tmp + n + 2, m->text, m->textlen);
        n += 2 + m->textlen;
        break;
    default:
        return 0;
    }
    if (n > cap)
        return 0;
    memcpy(tmp, MAGIC, 4);
    tmp[4] = GW_UPGRADE_VERSION;
    tmp[5] = (unsigned char)m->type;
    put16(tmp + 6, n);
    memcpy(buf, tmp, n);
    return n;
}
