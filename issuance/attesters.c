/* attesters.c: the attestation providers the gateway knows, by the
 * configuration's provider value. A new provider is its own file
 * (attest_<name>.c, one iss_attester_t) and one line here. Contracts:
 * attester.h. */
#include "attester.h"

static const iss_attester_t *const attesters[] = {
    &iss_attest_play,
    &iss_attest_http,
    &iss_attest_none,
    &iss_attest_android,
    &iss_attest_app_attest,
};

const iss_attester_t *iss_attester_find(int provider)
{
    for (size_t i = 0; i < sizeof(attesters) / sizeof(attesters[0]); i++)
        if (attesters[i]->provider == provider)
            return attesters[i];
    return NULL;
}
