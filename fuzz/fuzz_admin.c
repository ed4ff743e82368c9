/* fuzz_admin: the admin API's request bodies and entry paths
 * (gateway/admin.c, included here for its static entry_from_body).
 *
 * Byte 0 picks the mode; the rest is the input.
 *   bits 0-1 = 0: the body of POST /admin/revocations;
 *              1: the body of DELETE /admin/revocations;
 *              2: the <entry> of DELETE /admin/revocations/<entry>
 *                 (percent-decoded and canonicalised as handle_delete_path).
 * A body that is accepted goes on to what the store would write (the
 * revoke/lift commands, or the first step of a revoke by device id), so the
 * entry and reason the parser hands on are checked too. The request is a
 * libevent request without a connection: answering it frees it, which is
 * how a refusal shows here.
 */
#include "../gateway/admin.c"

#include "fuzz.h"

static const char config_text[] =
    FUZZ_CONFIG_TLS
    FUZZ_CONFIG_API
    "  - {path: /, upstream: api, allow_classes: [device]}\n"
    FUZZ_CONFIG_CA
    "  platforms:\n    ios: {provider: http, url: \"http://127.0.0.1:9100/verify\"}\n";

static gw_admin_t admin;
static gw_gen_t gen;   /* the running configuration the admin API reads classes from */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    admin.cfg = fuzz_config(config_text);
    gen.cfg = (cfg_t *)admin.cfg;
    gen.refs = 1;   /* the process's reference, never dropped */
    if (!(admin.proc = gw_proc_new()))
        abort();
    gw_proc_publish(admin.proc, &gen);
    return 0;
}

static void check_entry(const char *entry)
{
    char again[POL_REV_ENTRY_MAX];
    const char *err = NULL;
    FUZZ_ASSERT(pol_rev_canon_entry(entry, strlen(entry), again, sizeof again, &err) == 0 &&
                    strcmp(again, entry) == 0,
                "the admin API hands on an entry that is not canonical");
}

static void body(const uint8_t *in, size_t n, int post)
{
    struct evhttp_request *req = evhttp_request_new(NULL, NULL);
    if (!req)
        abort();
    evbuffer_add(evhttp_request_get_input_buffer(req), in, n);
    char entry[POL_REV_ENTRY_MAX];
    const char *reason = NULL, *device_id = NULL, *err = NULL;
    json_t *doc = NULL;
    if (entry_from_body(&admin, req, post, entry, sizeof entry, &reason, &device_id, &doc) < 0)
        return;   /* answered 400: the request is gone */
    if (device_id) {
        FUZZ_ASSERT(post && pol_device_id_valid(device_id), "a device id the parser should refuse");
        pol_revdevice_t d;
        memset(&d, 0, sizeof d);
        if (pol_revdevice_begin(&d, admin.cfg, device_id, reason, 1800000000, &err) == 0)
            pol_revdevice_clear(&d);
    } else {
        check_entry(entry);
        pol_revwrite_t w;
        if (pol_revwrite_build(&w, &admin.cfg->revocation, post, entry, post ? reason : NULL,
                               1800000000, &err) == 0)
            pol_revwrite_clear(&w);
    }
    json_decref(doc);
    evhttp_request_free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] & 3;
    if (mode < 2) {
        body(data + 1, size - 1, mode == 0);
        return 0;
    }
    /* as handle_delete_path, up to the store */
    char *raw = fuzz_strndup(data + 1, size - 1);
    size_t n = 0;
    char *dec = evhttp_uridecode(raw, 0, &n);
    char entry[POL_REV_ENTRY_MAX];
    const char *cerr = NULL;
    if (dec && n == strlen(dec) && pol_rev_canon_entry(dec, n, entry, sizeof entry, &cerr) == 0)
        check_entry(entry);
    free(dec);
    free(raw);
    return 0;
}
