/* fuzz_revocation: revocation entries, the pub/sub message path and the
 * revocation store's reply parsers (policy/revocation.c, policy/mirror.c,
 * policy/revstore.c). policy/mirror.c is included here, for its static
 * message handler (on_sub_msg, apply) and table (rt_add, rt_del).
 *
 * Byte 0 picks the mode; the rest is the input.
 *   0: an entry as stored or published: pol_rev_canon_entry.
 *   1: "<class>\n<serial>": pol_rev_canon_serial.
 *   2: a fingerprint: pol_rev_canon_fingerprint.
 *   3: RESP bytes from the subscriber connection: every reply goes through
 *      on_sub_msg as hiredis would deliver it, during a load; the mirror
 *      must then hold exactly the entries a model says ("+e" of a usable
 *      entry adds it; "-e" waits for the next full load, so changes nothing).
 *   4: table operations (3 bytes each: op, home slot, tag) on a small
 *      table, checked against a model: linear probing, growth and
 *      backward-shift deletion.
 *   5: RESP bytes as replies to the store's commands: SSCAN, HMGET, EXEC
 *      of a write and of a batch, SMEMBERS and MGET of a revoke by device.
 *   6: a meta JSON value: pol_revmeta_parse.
 * Contract for the canonicalisers: 0 with a canonical entry (canonicalising
 * it again gives itself), or -1 with a reason.
 */
#include <hiredis/hiredis.h>

#include "../policy/mirror.c"
#include "../policy/revstore.h"

#include "fuzz.h"

static const char config_text[] =
    FUZZ_CONFIG_TLS
    FUZZ_CONFIG_API
    "  - {path: /, upstream: api, allow_classes: [device]}\n"
    FUZZ_CONFIG_CA
    "  platforms:\n    ios: {provider: http, url: \"http://127.0.0.1:9100/verify\"}\n";

static cfg_t *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    cfg = fuzz_config(config_text);
    return 0;
}

static void canonical(int rc, const char *out, const char *err)
{
    FUZZ_ASSERT(rc == 0 || rc == -1, "canonicaliser: not syscall-like");
    if (rc < 0) {
        FUZZ_ASSERT(err != NULL, "refused without a reason");
        return;
    }
    char again[POL_REV_ENTRY_MAX];
    const char *e2 = NULL;
    size_t n = strlen(out);
    FUZZ_ASSERT(n > 0 && n < POL_REV_ENTRY_MAX, "canonical entry empty or too long");
    FUZZ_ASSERT(pol_rev_canon_entry(out, n, again, sizeof again, &e2) == 0 && strcmp(again, out) == 0,
                "canonical entry does not canonicalise to itself");
}

/* hiredis 0.14 (Debian bookworm) allocates a multi-bulk reply's element
 * array from its announced count ("*1000000000" asks for 8 GB) before any
 * element arrives; it has no maxelements limit yet. That is the library's,
 * not the gateway's, so inputs announcing more elements than they could
 * hold are skipped. Boolean. */
static int resp_sane(const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '*')
            continue;
        size_t d = 0;
        for (size_t k = i + 1; k < n && in[k] >= '0' && in[k] <= '9'; k++)
            d++;
        if (d > 4)
            return 0;
    }
    return 1;
}

/* ---- mode 3: pub/sub ---- */

#define MODEL_MAX 64

typedef struct {
    char e[MODEL_MAX][POL_REV_ENTRY_MAX];
    int on[MODEL_MAX];
    size_t n;
} model_t;

static void model_apply(model_t *mo, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
        return;
    const char *msg = r->element[2]->str;
    size_t len = r->element[2]->len;
    char canon[POL_REV_ENTRY_MAX], why[200];
    const char *err;
    int form = 0;
    /* a revocation of an entry that can match a certificate is applied at
     * once; a lift only through the full load it starts (none here), so
     * the mirror keeps the entry */
    if (pol_rev_parse_message(msg, len, canon, sizeof canon, &form, &err) != 1 ||
        pol_rev_usable(cfg, canon, form, why, sizeof why) != 0)
        return;
    size_t i = 0;
    while (i < mo->n && strcmp(mo->e[i], canon) != 0)
        i++;
    if (i == mo->n) {
        if (mo->n == MODEL_MAX)
            return;
        snprintf(mo->e[mo->n++], POL_REV_ENTRY_MAX, "%s", canon);
    }
    mo->on[i] = 1;
}

static void pubsub(const uint8_t *in, size_t n, int loading)
{
    if (!resp_sane(in, n))
        return;
    pol_mirror_t *m = pol_mirror_new(cfg);
    pol_revsync_t *s = calloc(1, sizeof *s);
    redisAsyncContext *ac = calloc(1, sizeof *ac);
    redisReader *rd = redisReaderCreate();
    model_t *mo = calloc(1, sizeof *mo);
    if (!m || !s || !ac || !rd || !mo)
        abort();
    s->cfg = cfg;
    s->m = m;
    s->pend_tail = &s->pend;
    (void)loading;
    s->loading = 1;   /* a lift then waits for the load in progress: no Redis command is sent */
    ac->data = s;
    redisReaderFeed(rd, (const char *)in, n);
    void *r = NULL;
    for (int k = 0; k < 10000 && redisReaderGetReply(rd, &r) == REDIS_OK && r; k++) {
        on_sub_msg(ac, r, s);
        model_apply(mo, r);
        freeReplyObject(r);
        r = NULL;
    }
    for (size_t i = 0; i < mo->n; i++) {
        pol_rev_key_t key = pol_rev_key(mo->e[i], strlen(mo->e[i]));
        FUZZ_ASSERT(pol_mirror_contains(m, &key) == mo->on[i], "the mirror disagrees with the messages");
    }
    free_pending(s);
    redisReaderFree(rd);
    free(mo);
    free(ac);
    free(s);
    pol_mirror_free(m);
}

/* ---- mode 4: the table ---- */

static void table(const uint8_t *in, size_t n)
{
    rtable_t t;
    pol_rev_key_t model[256];
    size_t nm = 0;
    if (rt_init(&t, 4) < 0)
        abort();
    for (size_t i = 0; i + 3 <= n; i += 3) {
        /* home slots collide on purpose: h[0] is small, h[1] tells keys apart */
        pol_rev_key_t k = {{(uint64_t)in[i + 1] & 0x1f, (uint64_t)in[i + 2] | 0x100}};
        size_t j = 0;
        while (j < nm && !key_eq(&model[j], &k))
            j++;
        if (in[i] & 1) {
            int r = rt_add(&t, &k);
            FUZZ_ASSERT(r == (j == nm), "rt_add: wrong answer");
            if (j == nm && nm < 256)
                model[nm++] = k;
        } else {
            int r = rt_del(&t, &k);
            FUZZ_ASSERT(r == (j < nm), "rt_del: wrong answer");
            if (j < nm)
                model[j] = model[--nm];
        }
        FUZZ_ASSERT(t.n == nm && t.n * 2 <= t.cap, "table count wrong");
        for (size_t q = 0; q < nm; q++)
            FUZZ_ASSERT(rt_contains(&t, &model[q]), "table lost a key");
    }
    free(t.slots);
}

/* ---- mode 5: store replies ---- */

static void replies(const uint8_t *in, size_t n)
{
    if (!resp_sane(in, n))
        return;
    redisReader *rd = redisReaderCreate();
    if (!rd)
        abort();
    redisReaderFeed(rd, (const char *)in, n);
    void *r = NULL;
    char err[256];
    for (int k = 0; k < 64 && redisReaderGetReply(rd, &r) == REDIS_OK && r; k++) {
        const redisReply *rep = r;
        pol_revstore_result_t res;
        memset(&res, 0, sizeof res);
        /* the list shows members as Redis holds them, canonical or not */
        if (pol_revscan_result(rep, &res, err, sizeof err) == 0)
            FUZZ_ASSERT(pol_revstore_valid_cursor(res.cursor), "SSCAN cursor passed on unchecked");
        (void)pol_revmeta_result(rep, &res, err, sizeof err);
        pol_revstore_result_clear(&res);
        int changed = 0;
        (void)pol_revwrite_result(rep, &changed, err, sizeof err);
        int ch[4];
        size_t nch = 0;
        if (pol_revbatch_result(rep, 4, ch, &nch, err, sizeof err) == 0)
            FUZZ_ASSERT(nch <= 4, "batch: more changes than entries");
        pol_revdevice_t d;
        memset(&d, 0, sizeof d);
        const char *e = NULL;
        if (pol_revdevice_begin(&d, cfg, "abcdefghijklmnopqrstuvwxyz234567", "lost", 1800000000, &e) == 0) {
            if (pol_revdevice_members(&d, rep, err, sizeof err) == 0 && d.mget_argc > 0)
                (void)pol_revdevice_records(&d, rep, err, sizeof err);
            pol_revdevice_clear(&d);
        }
        freeReplyObject(r);
        r = NULL;
    }
    redisReaderFree(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    char out[POL_REV_ENTRY_MAX];
    const char *err = NULL;
    switch (data[0] % 7) {
    case 0:
        canonical(pol_rev_canon_entry((const char *)in, n, out, sizeof out, &err), out, err);
        break;
    case 1: {
        char *s = fuzz_strndup(in, n);
        char *nl = strchr(s, '\n');
        if (nl) {
            *nl = '\0';
            canonical(pol_rev_canon_serial(s, nl + 1, out, sizeof out, &err), out, err);
        }
        free(s);
        break;
    }
    case 2: {
        char *s = fuzz_strndup(in, n);
        canonical(pol_rev_canon_fingerprint(s, out, sizeof out, &err), out, err);
        free(s);
        break;
    }
    case 3:
        pubsub(in, n, (data[0] & 0x80) != 0);
        break;
    case 4:
        table(in, n);
        break;
    case 5:
        replies(in, n);
        break;
    default: {
        char *reason = NULL;
        int64_t at = 0;
        int rc = pol_revmeta_parse((const char *)in, n, &reason, &at);
        FUZZ_ASSERT(rc == 0 || rc == -1, "pol_revmeta_parse: not syscall-like");
        free(reason);
    }
    }
    return 0;
}
