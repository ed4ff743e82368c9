/* fuzz_oid: the dotted OIDs of identity.integrity_policies
 * (config/config_check.c cfg_oid_parse).
 *
 * The input is the OID text. Contract: 0 with the text kept and 1 to
 * CFG_OID_DER_MAX content octets that OpenSSL decodes back to exactly the
 * input (so the strict checks never accept a spelling OpenSSL reads as
 * another OID), or -1 with a reason and nothing filled in.
 */
#include <openssl/objects.h>

#include "../config/config.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[256];
    if (size >= sizeof s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    cfg_oid_t o;
    const char *why = NULL;
    if (cfg_oid_parse(s, &o, &why) < 0) {
        FUZZ_ASSERT(why && o.der_len == 0 && o.text[0] == '\0', "a refusal without a reason, or half filled");
        return 0;
    }
    FUZZ_ASSERT(o.der_len >= 1 && o.der_len <= CFG_OID_DER_MAX && !strcmp(o.text, s),
                "accepted with no encoding or another text");
    unsigned char der[2 + CFG_OID_DER_MAX] = {0x06, (unsigned char)o.der_len};   /* OBJECT IDENTIFIER */
    memcpy(der + 2, o.der, o.der_len);
    const unsigned char *p = der;
    ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &p, (long)(2 + o.der_len));
    char back[512];
    FUZZ_ASSERT(obj && OBJ_obj2txt(back, sizeof back, obj, 1) > 0 && !strcmp(back, s),
                "the encoding does not decode to the input");
    ASN1_OBJECT_free(obj);
    return 0;
}
