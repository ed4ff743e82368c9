/* base/metrics: per-thread counter blocks, interned label names, and the
 * Prometheus text exposition (format 0.0.4). */
#include "metrics.h"

#include "log.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__thread uint64_t *pc_mx_block;

/* Every block ever attached, freed only by pc_metrics_shutdown. */
#define MAX_BLOCKS 1024
static pthread_mutex_t mx_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *blocks[MAX_BLOCKS];
static size_t nblocks;
static uint64_t *shared;   /* blocks[0] once initialised */

/* ---- dimensions ---- */
enum dim_id {
    D_NONE, D_REFUSE, D_TLS_VERSION, D_HS_RESULT, D_TLS_FAIL, D_CACHE_RESULT, D_STATUS, D_ERROR,
    D_UPS_CONN, D_UPS_FAIL, D_REDIS_CLIENT, D_RL_RESULT, D_AUTH_REASON, D_PROVIDER, D_ISS_KIND,
    D_RELOAD_RESULT, D_PP_REASON, D_ROUTE, D_CLASS, D_UPSTREAM, D_LIMIT, D_PLATFORM,
    D_ACCEPT_ERR
};

static const char *const refuse_v[] = {"max_connections", "per_ip_rate", "per_ip_concurrency",
                                       "draining"};
static const char *const tlsv_v[] = {"other", "TLSv1.2", "TLSv1.3"};
static const char *const hs_v[] = {"full", "resumed", "cached_chain"};
static const char *const tlsf_v[] = {"no_certificate", "unknown_ca", "expired", "not_yet_valid",
                                     "bad_eku", "revoked", "handshake_timeout", "protocol_error",
                                     "other", "revocation_unknown"};
static const char *const cache_v[] = {"hit", "miss"};
static const char *const status_v[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
static const char *const upc_v[] = {"new", "reused"};
static const char *const upf_v[] = {"connect_refused", "connect_timeout", "response_timeout",
                                    "reset", "bad_response", "connect_error"};
static const char *const redis_v[] = {"revocation", "worker"};
static const char *const rl_v[] = {"allowed", "limited"};
static const char *const auth_v[] = {"missing", "not_bearer", "multiple", "malformed",
                                     "algorithm", "unknown_key", "signature", "expired",
                                     "not_yet_valid", "issuer", "audience", "binding", "other"};
static const char *const prov_v[] = {"none", "play_integrity", "http", "refuse",
                                     "android_key_attestation", "app_attest"};
static const char *const iss_v[] = {"issued", "renewed"};
static const char *const reload_v[] = {"ok", "failed"};
static const char *const pp_v[] = {"untrusted_peer", "malformed", "version", "too_long", "timeout",
                                   "closed"};
static const char *const accept_v[] = {"emfile", "enfile", "enobufs", "enomem", "other"};

_Static_assert(sizeof(refuse_v) / sizeof(*refuse_v) == PC_REFUSE__N, "refuse names");
_Static_assert(sizeof(tlsv_v) / sizeof(*tlsv_v) == PC_TLSV__N, "tls version names");
_Static_assert(sizeof(hs_v) / sizeof(*hs_v) == PC_HS__N, "handshake result names");
_Static_assert(sizeof(tlsf_v) / sizeof(*tlsf_v) == PC_TLSF__N, "tls failure names");
_Static_assert(sizeof(cache_v) / sizeof(*cache_v) == PC_CACHE__N, "cache names");
_Static_assert(sizeof(status_v) / sizeof(*status_v) == PC_ST__N, "status names");
_Static_assert(sizeof(upc_v) / sizeof(*upc_v) == PC_UPC__N, "upstream conn names");
_Static_assert(sizeof(upf_v) / sizeof(*upf_v) == PC_UPF__N, "upstream failure names");
_Static_assert(sizeof(redis_v) / sizeof(*redis_v) == PC_REDIS__N, "redis client names");
_Static_assert(sizeof(rl_v) / sizeof(*rl_v) == PC_RL__N, "rate-limit result names");
_Static_assert(sizeof(auth_v) / sizeof(*auth_v) == PC_AUTH__N, "auth reason names");
_Static_assert(sizeof(prov_v) / sizeof(*prov_v) == PC_PROV__N, "provider names");
_Static_assert(sizeof(iss_v) / sizeof(*iss_v) == PC_ISS__N, "issuance kind names");
_Static_assert(sizeof(reload_v) / sizeof(*reload_v) == PC_RELOAD__N, "reload names");
_Static_assert(sizeof(pp_v) / sizeof(*pp_v) == PC_PP__N, "PROXY protocol refusal names");
_Static_assert(sizeof(accept_v) / sizeof(*accept_v) == PC_ACCEPT__N, "accept error names");

const char *pc_pp_reason_name(enum pc_pp_reason r)
{
    return (unsigned)r < PC_PP__N ? pp_v[r] : "other";
}

typedef struct {
    const char *label;          /* NULL for D_NONE */
    unsigned size;
    const char *const *values;  /* static names; NULL: error codes or interned */
    int dyn;                    /* enum pc_dyn, or -1 */
} dim_t;

static const dim_t dims[] = {
    [D_NONE] = {NULL, 1, NULL, -1},
    [D_REFUSE] = {"reason", PC_DN_REFUSE, refuse_v, -1},
    [D_TLS_VERSION] = {"version", PC_DN_TLS_VERSION, tlsv_v, -1},
    [D_HS_RESULT] = {"result", PC_DN_HS_RESULT, hs_v, -1},
    [D_TLS_FAIL] = {"reason", PC_DN_TLS_FAIL, tlsf_v, -1},
    [D_CACHE_RESULT] = {"result", PC_DN_CACHE_RESULT, cache_v, -1},
    [D_STATUS] = {"status", PC_DN_STATUS, status_v, -1},
    [D_ERROR] = {"code", PC_DN_ERROR, NULL, -1},
    [D_UPS_CONN] = {"kind", PC_DN_UPS_CONN, upc_v, -1},
    [D_UPS_FAIL] = {"code", PC_DN_UPS_FAIL, upf_v, -1},
    [D_REDIS_CLIENT] = {"client", PC_DN_REDIS_CLIENT, redis_v, -1},
    [D_RL_RESULT] = {"result", PC_DN_RL_RESULT, rl_v, -1},
    [D_AUTH_REASON] = {"reason", PC_DN_AUTH_REASON, auth_v, -1},
    [D_PROVIDER] = {"provider", PC_DN_PROVIDER, prov_v, -1},
    [D_ISS_KIND] = {"kind", PC_DN_ISS_KIND, iss_v, -1},
    [D_RELOAD_RESULT] = {"result", PC_DN_RELOAD_RESULT, reload_v, -1},
    [D_PP_REASON] = {"reason", PC_DN_PP_REASON, pp_v, -1},
    [D_ROUTE] = {"route", PC_DN_ROUTE, NULL, PC_DYN_ROUTE},
    [D_CLASS] = {"class", PC_DN_CLASS, NULL, PC_DYN_CLASS},
    [D_UPSTREAM] = {"upstream", PC_DN_UPSTREAM, NULL, PC_DYN_UPSTREAM},
    [D_LIMIT] = {"limit", PC_DN_LIMIT, NULL, PC_DYN_LIMIT},
    [D_PLATFORM] = {"platform", PC_DN_PLATFORM, NULL, PC_DYN_PLATFORM},
    [D_ACCEPT_ERR] = {"reason", PC_DN_ACCEPT_ERR, accept_v, -1},
};

/* ---- interned names ---- */
#define NAME_MAX_LEN 64
static const unsigned dyn_cap[PC_DYN__N] = {PC_DN_ROUTE, PC_DN_CLASS, PC_DN_UPSTREAM, PC_DN_LIMIT,
                                            PC_DN_PLATFORM};
static const char *const dyn_what[PC_DYN__N] = {"route", "class", "upstream", "rate limit",
                                                "platform"};
static char (*dyn_names[PC_DYN__N])[NAME_MAX_LEN];
static unsigned dyn_count[PC_DYN__N];   /* ids in use, >= 2 once initialised */
static int dyn_full_logged[PC_DYN__N];

/* ---- families ---- */
typedef struct {
    const char *name, *help;
    int hist;
    enum dim_id d[3];
    size_t slot;
} family_t;

static const family_t families[] = {
#define PC_MF(id, t, nm, hp, d0, d1, d2) {nm, hp, PC_TW_##t != 1, {D_##d0, D_##d1, D_##d2}, PC_M_##id},
#include "metrics.def"
#undef PC_MF
};

/* A zeroed block on cache lines of its own: no two threads' counters ever
 * share a line (adjacent heap chunks could). */
static uint64_t *block_new(void)
{
    size_t bytes = (PC_M__SLOTS * sizeof(uint64_t) + 63) & ~(size_t)63;
    uint64_t *b = aligned_alloc(64, bytes);
    if (b)
        memset(b, 0, bytes);
    return b;
}

void pc_metrics_init(void)
{
    pthread_mutex_lock(&mx_mu);
    if (!shared) {
        shared = block_new();
        for (int d = 0; d < PC_DYN__N; d++) {
            dyn_names[d] = calloc(dyn_cap[d], NAME_MAX_LEN);
            if (dyn_names[d]) {
                snprintf(dyn_names[d][PC_ID_NONE], NAME_MAX_LEN, "_none");
                snprintf(dyn_names[d][PC_ID_OTHER], NAME_MAX_LEN, "_other");
                dyn_count[d] = 2;
            }
        }
        if (shared)
            blocks[nblocks++] = shared;
    }
    pthread_mutex_unlock(&mx_mu);
}

void pc_metrics_shutdown(void)
{
    pthread_mutex_lock(&mx_mu);
    for (size_t i = 0; i < nblocks; i++)
        free(blocks[i]);
    nblocks = 0;
    shared = NULL;
    for (int d = 0; d < PC_DYN__N; d++) {
        free(dyn_names[d]);
        dyn_names[d] = NULL;
        dyn_count[d] = 0;
        dyn_full_logged[d] = 0;
    }
    pthread_mutex_unlock(&mx_mu);
    pc_mx_block = NULL;
}

int pc_metrics_thread_attach(void)
{
    if (pc_mx_block)
        return 0;
    uint64_t *b = block_new();
    if (!b)
        return -1;
    pthread_mutex_lock(&mx_mu);
    int ok = shared != NULL && nblocks < MAX_BLOCKS;
    if (ok)
        blocks[nblocks++] = b;
    pthread_mutex_unlock(&mx_mu);
    if (!ok) {
        free(b);
        return -1;
    }
    pc_mx_block = b;
    return 0;
}

void pc_mx_add_shared(size_t slot, uint64_t n)
{
    uint64_t *s = __atomic_load_n(&shared, __ATOMIC_ACQUIRE);
    if (s)
        __atomic_fetch_add(&s[slot], n, __ATOMIC_RELAXED);
}

unsigned pc_metrics_intern(enum pc_dyn dyn, const char *name)
{
    if ((unsigned)dyn >= PC_DYN__N || !name || !*name)
        return PC_ID_NONE;
    unsigned id = PC_ID_OTHER;
    pthread_mutex_lock(&mx_mu);
    if (dyn_names[dyn]) {
        unsigned i;
        for (i = 0; i < dyn_count[dyn]; i++)   /* a name "_none" or "_other" is that series */
            if (strncmp(dyn_names[dyn][i], name, NAME_MAX_LEN - 1) == 0)
                break;
        if (i < dyn_count[dyn]) {
            id = i;
        } else if (dyn_count[dyn] < dyn_cap[dyn]) {
            snprintf(dyn_names[dyn][dyn_count[dyn]], NAME_MAX_LEN, "%s", name);
            id = dyn_count[dyn]++;
        } else if (!dyn_full_logged[dyn]) {
            dyn_full_logged[dyn] = 1;
            pc_log_ev(PC_WARN, "metrics_names_full", NULL, "metrics: more than %u %s names; \"%s\" and later ones are "
                   "counted as \"_other\"", dyn_cap[dyn] - 2, dyn_what[dyn], name);
        }
    }
    pthread_mutex_unlock(&mx_mu);
    return id;
}

/* Sum of one slot; the caller holds mx_mu. */
static uint64_t sum_locked(size_t slot)
{
    uint64_t v = 0;
    for (size_t i = 0; i < nblocks; i++)
        v += __atomic_load_n(&blocks[i][slot], __ATOMIC_RELAXED);
    return v;
}

uint64_t pc_metrics_read(size_t slot)
{
    if (slot >= PC_M__SLOTS)
        return 0;
    pthread_mutex_lock(&mx_mu);
    uint64_t v = sum_locked(slot);
    pthread_mutex_unlock(&mx_mu);
    return v;
}

void pc_buf_printf(pc_buf_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = b->p ? vsnprintf(b->p + b->len, room, fmt, ap) : -2;
        va_end(ap);
        if (n >= 0 && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        if (n == -1) {
            b->oom = 1;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (n > 0 && cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void pc_buf_free(pc_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void pc_metrics_label_esc(char *dst, size_t cap, const char *v)
{
    size_t n = 0;
    for (; *v && n + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            dst[n++] = '\\';
            dst[n++] = *v;
        } else if (*v == '\n') {
            dst[n++] = '\\';
            dst[n++] = 'n';
        } else {
            dst[n++] = *v;
        }
    }
    if (cap)
        dst[n < cap ? n : cap - 1] = '\0';
}

void pc_metrics_family(pc_buf_t *out, const char *name, const char *type, const char *help)
{
    pc_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void pc_metrics_sample(pc_buf_t *out, const char *name, const char *labels, double v)
{
    if (labels && *labels)
        pc_buf_printf(out, "%s{%s} %.17g\n", name, labels, v);
    else
        pc_buf_printf(out, "%s %.17g\n", name, v);
}

/* The value name of index i of dimension d (the caller holds mx_mu). */
static const char *dim_value(enum dim_id d, unsigned i)
{
    const dim_t *dm = &dims[d];
    if (dm->values)
        return dm->values[i];
    if (d == D_ERROR)
        return pc_err_code((enum pc_err)i);
    return dyn_names[dm->dyn][i];
}

/* How many indexes of dimension d are in use. */
static unsigned dim_used(enum dim_id d)
{
    return dims[d].dyn >= 0 ? dyn_count[dims[d].dyn] : dims[d].size;
}

/* Appends the `label="value"` pairs of one series to lab; returns 1 if
 * every label of the family is static (a reason, a status class, a code):
 * such a family lists every value from the start, so its rates start at
 * zero. A series with a configured name (route, class, ...) appears once
 * counted, as client libraries do with labelled metrics. */
static int series_labels(char *lab, size_t cap, const family_t *f, const unsigned ix[3])
{
    int all_static = 1;
    size_t n = 0;
    lab[0] = '\0';
    for (int k = 0; k < 3; k++) {
        enum dim_id d = f->d[k];
        if (!dims[d].label)
            continue;
        if (dims[d].dyn >= 0)
            all_static = 0;
        char esc[2 * NAME_MAX_LEN];
        pc_metrics_label_esc(esc, sizeof(esc), dim_value(d, ix[k]));
        int w = snprintf(lab + n, cap - n, "%s%s=\"%s\"", n ? "," : "", dims[d].label, esc);
        if (w > 0 && (size_t)w < cap - n)
            n += (size_t)w;
    }
    return all_static;
}

static void render_series(pc_buf_t *out, const family_t *f, const unsigned ix[3], size_t at)
{
    char lab[512];
    int listed = series_labels(lab, sizeof(lab), f, ix);
    if (!f->hist) {
        uint64_t v = sum_locked(at);
        if (v || listed)
            pc_buf_printf(out, "%s%s%s%s %llu\n", f->name, *lab ? "{" : "", lab, *lab ? "}" : "",
                          (unsigned long long)v);
        return;
    }
    static const char *const le[PC_HBOUNDS] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                              "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                                              "2.5", "5", "10"};
    uint64_t b[PC_HBOUNDS + 1], cum = 0;
    for (int i = 0; i <= PC_HBOUNDS; i++)
        cum += b[i] = sum_locked(at + (size_t)i);
    if (!cum && !listed)
        return;
    const char *sep = *lab ? "," : "";
    cum = 0;
    for (int i = 0; i <= PC_HBOUNDS; i++) {
        cum += b[i];
        pc_buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, lab, sep,
                      i < PC_HBOUNDS ? le[i] : "+Inf", (unsigned long long)cum);
    }
    double sum_s = (double)sum_locked(at + PC_HBOUNDS + 1) / 1e6;
    pc_buf_printf(out, "%s_sum%s%s%s %.6f\n", f->name, *lab ? "{" : "", lab, *lab ? "}" : "", sum_s);
    pc_buf_printf(out, "%s_count%s%s%s %llu\n", f->name, *lab ? "{" : "", lab, *lab ? "}" : "",
                  (unsigned long long)cum);
}

static void render_family(pc_buf_t *out, const family_t *f)
{
    pc_metrics_family(out, f->name, f->hist ? "histogram" : "counter", f->help);
    unsigned n[3], ix[3];
    for (int k = 0; k < 3; k++)
        n[k] = dim_used(f->d[k]);
    unsigned sz1 = dims[f->d[1]].size, sz2 = dims[f->d[2]].size;
    size_t width = f->hist ? PC_HB : 1;
    for (ix[0] = 0; ix[0] < n[0]; ix[0]++)
        for (ix[1] = 0; ix[1] < n[1]; ix[1]++)
            for (ix[2] = 0; ix[2] < n[2]; ix[2]++) {
                size_t at = f->slot + ((ix[0] * sz1 + ix[1]) * (size_t)sz2 + ix[2]) * width;
                render_series(out, f, ix, at);
            }
}

void pc_metrics_render(pc_buf_t *out)
{
    pthread_mutex_lock(&mx_mu);
    if (shared)
        for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++)
            render_family(out, &families[i]);
    pthread_mutex_unlock(&mx_mu);
}
