/* fuzz_upgrade: the binary-upgrade handover messages (gateway/upgrade_msg.c
 * gw_upgrade_parse), which a new process reads from the running one.
 *
 * The input is one message as received (one SOCK_SEQPACKET packet).
 * Contract: -1 with the output untouched, or the message's type (1..6) with
 * its text, when it has one, inside the input and of 1..GW_UPGRADE_MAX_TEXT
 * printable bytes; and then encoding what was parsed gives back exactly the
 * input (the format has one spelling per message).
 */
#include "../gateway/upgrade.h"

#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_upgrade_msg_t m, sentinel;
    memset(&m, 0xa5, sizeof m);
    sentinel = m;
    int type = gw_upgrade_parse(data, size, &m);
    if (type < 0) {
        FUZZ_ASSERT(type == -1, "parse returns -1 or a type");
        FUZZ_ASSERT(memcmp(&m, &sentinel, sizeof m) == 0, "*m untouched on -1");
        return 0;
    }
    FUZZ_ASSERT(type >= GW_UPGRADE_HELLO && type <= GW_UPGRADE_ERROR && m.type == type,
                "a known type");
    if (type == GW_UPGRADE_LISTENER || type == GW_UPGRADE_ERROR) {
        FUZZ_ASSERT(m.text >= (const char *)data && m.textlen >= 1 &&
                    m.textlen <= GW_UPGRADE_MAX_TEXT &&
                    m.text + m.textlen <= (const char *)data + size, "text inside the input");
        for (size_t i = 0; i < m.textlen; i++)
            FUZZ_ASSERT(m.text[i] >= 0x20 && m.text[i] <= 0x7e, "printable text");
    }
    if (type == GW_UPGRADE_LISTENER)
        FUZZ_ASSERT(m.sock < m.nsocks, "socket index below the count");
    unsigned char out[GW_UPGRADE_MAX_MSG];
    size_t n = gw_upgrade_encode(&m, out, sizeof out);
    FUZZ_ASSERT(n == size && memcmp(out, data, size) == 0, "encode(parse(x)) == x");
    return 0;
}
