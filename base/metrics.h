/* base/metrics: lock-free counters and histograms, summed at scrape time.
 *
 * Every thread that counts on a hot path (each worker, the control thread)
 * calls pc_metrics_thread_attach() once and then owns a private block of
 * counters: an increment is a plain load and store on memory no other
 * thread writes (no lock, no locked instruction, no shared cache line). A
 * thread without a block counts into one shared block with atomic adds.
 * pc_metrics_read() and pc_metrics_render() sum every block; a block lives
 * until pc_metrics_shutdown(), so counters never go backwards.
 *
 * What is counted is listed once, in base/metrics.def. Label values come
 * from bounded sets only: the fixed names of a static dimension (a reason,
 * a status class, an error code) or names interned from the configuration
 * (route, class, upstream, limit, platform) with pc_metrics_intern(), never
 * a device id, serial, address or path. */
#ifndef PORTCULLIS_METRICS_H
#define PORTCULLIS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

/* ---- static dimensions: their values, in export order ---- */
enum pc_refuse { PC_REFUSE_MAX_CONNECTIONS, PC_REFUSE_PER_IP_RATE, PC_REFUSE_PER_IP_CONCURRENCY,
                 PC_REFUSE_DRAINING, PC_REFUSE__N };
enum pc_tls_version { PC_TLSV_OTHER, PC_TLSV_12, PC_TLSV_13, PC_TLSV__N };
enum pc_hs_result { PC_HS_FULL, PC_HS_RESUMED, PC_HS_CACHED_CHAIN, PC_HS__N };
enum pc_tls_fail { PC_TLSF_NO_CERTIFICATE, PC_TLSF_UNKNOWN_CA, PC_TLSF_EXPIRED,
                   PC_TLSF_NOT_YET_VALID, PC_TLSF_BAD_EKU, PC_TLSF_REVOKED,
                   PC_TLSF_HANDSHAKE_TIMEOUT, PC_TLSF_PROTOCOL_ERROR, PC_TLSF_OTHER,
                   PC_TLSF_REVOCATION_UNKNOWN, PC_TLSF__N };
enum pc_cache_result { PC_CACHE_HIT, PC_CACHE_MISS, PC_CACHE__N };
enum pc_status { PC_ST_1XX, PC_ST_2XX, PC_ST_3XX, PC_ST_4XX, PC_ST_5XX, PC_ST__N };
enum pc_ups_conn { PC_UPC_NEW, PC_UPC_REUSED, PC_UPC__N };
enum pc_ups_fail { PC_UPF_CONNECT_REFUSED, PC_UPF_CONNECT_TIMEOUT, PC_UPF_RESPONSE_TIMEOUT,
                   PC_UPF_RESET, PC_UPF_BAD_RESPONSE, PC_UPF_CONNECT_ERROR, PC_UPF__N };
enum pc_redis_client { PC_REDIS_REVOCATION, PC_REDIS_WORKER, PC_REDIS__N };
enum pc_rl_result { PC_RL_ALLOWED, PC_RL_LIMITED, PC_RL__N };
enum pc_auth_reason { PC_AUTH_MISSING, PC_AUTH_NOT_BEARER, PC_AUTH_MULTIPLE, PC_AUTH_MALFORMED,
                      PC_AUTH_ALGORITHM, PC_AUTH_UNKNOWN_KEY, PC_AUTH_SIGNATURE, PC_AUTH_EXPIRED,
                      PC_AUTH_NOT_YET_VALID, PC_AUTH_ISSUER, PC_AUTH_AUDIENCE, PC_AUTH_BINDING,
                      PC_AUTH_OTHER, PC_AUTH__N };
/* attestation providers (config's enum cfg_attest_provider, mapped by name in
 * each attester's metric, issuance/attest_*.c, not by value); none: no attestation (insecure_dev, or none
 * known yet, or a renewal without one) */
enum pc_provider { PC_PROV_NONE, PC_PROV_PLAY_INTEGRITY, PC_PROV_HTTP, PC_PROV_REFUSE,
                   PC_PROV_ANDROID_KEY, PC_PROV_APP_ATTEST, PC_PROV__N };
enum pc_iss_kind { PC_ISS_ISSUED, PC_ISS_RENEWED, PC_ISS__N };
enum pc_reload_result { PC_RELOAD_OK, PC_RELOAD_FAILED, PC_RELOAD__N };
/* why a PROXY protocol listener closed a connection before TLS (gateway/conn.c) */
enum pc_pp_reason { PC_PP_UNTRUSTED_PEER, PC_PP_MALFORMED, PC_PP_VERSION, PC_PP_TOO_LONG,
                    PC_PP_TIMEOUT, PC_PP_CLOSED, PC_PP__N };
/* why accept4 failed (gateway/worker.c) */
enum pc_accept_err { PC_ACCEPT_EMFILE, PC_ACCEPT_ENFILE, PC_ACCEPT_ENOBUFS, PC_ACCEPT_ENOMEM,
                     PC_ACCEPT_OTHER, PC_ACCEPT__N };

/* ---- dynamic dimensions: names interned from the configuration ---- */
enum pc_dyn { PC_DYN_ROUTE, PC_DYN_CLASS, PC_DYN_UPSTREAM, PC_DYN_LIMIT, PC_DYN_PLATFORM, PC_DYN__N };
/* Every dynamic dimension has id 0 "_none" (no route matched, no class yet)
 * and id 1 "_other" (its names overflowed the cap, logged once). */
#define PC_ID_NONE 0
#define PC_ID_OTHER 1

/* Sizes of every dimension (PC_DN_<dim>), for index arithmetic. */
#define PC_DN_NONE 1
#define PC_DN_REFUSE PC_REFUSE__N
#define PC_DN_TLS_VERSION PC_TLSV__N
#define PC_DN_HS_RESULT PC_HS__N
#define PC_DN_TLS_FAIL PC_TLSF__N
#define PC_DN_CACHE_RESULT PC_CACHE__N
#define PC_DN_STATUS PC_ST__N
#define PC_DN_ERROR PC_E__CLIENT   /* the client listener's codes (admin errors are not counted) */
#define PC_DN_UPS_CONN PC_UPC__N
#define PC_DN_UPS_FAIL PC_UPF__N
#define PC_DN_REDIS_CLIENT PC_REDIS__N
#define PC_DN_RL_RESULT PC_RL__N
#define PC_DN_AUTH_REASON PC_AUTH__N
#define PC_DN_PROVIDER PC_PROV__N
#define PC_DN_ISS_KIND PC_ISS__N
#define PC_DN_RELOAD_RESULT PC_RELOAD__N
#define PC_DN_PP_REASON PC_PP__N
#define PC_DN_ACCEPT_ERR PC_ACCEPT__N
#define PC_DN_ROUTE 128
#define PC_DN_CLASS 16
#define PC_DN_UPSTREAM 64
#define PC_DN_LIMIT 64
#define PC_DN_PLATFORM 16
/* The label value of a PROXY protocol refusal reason (for log lines too). */
const char *pc_pp_reason_name(enum pc_pp_reason r);

/* Histogram slots per series: PC_HBOUNDS bucket counts (not cumulative),
 * the +Inf bucket, and the sum in microseconds. */
#define PC_HBOUNDS 14
#define PC_HB (PC_HBOUNDS + 2)
#define PC_TW_C 1
#define PC_TW_H PC_HB

/* PC_M_<ID>: the first slot of a family; PC_M_<ID>_N0..N2 its dimension sizes. */
enum pc_mx_slot {
#define PC_MF(id, t, name, help, d0, d1, d2) \
    PC_M_##id, PC_M_##id##_LAST = PC_M_##id + PC_DN_##d0 * PC_DN_##d1 * PC_DN_##d2 * PC_TW_##t - 1,
#include "metrics.def"
#undef PC_MF
    PC_M__SLOTS
};
enum pc_mx_dims {
#define PC_MF(id, t, name, help, d0, d1, d2) \
    PC_M_##id##_N0 = PC_DN_##d0, PC_M_##id##_N1 = PC_DN_##d1, PC_M_##id##_N2 = PC_DN_##d2,
#include "metrics.def"
#undef PC_MF
};

extern __thread uint64_t *pc_mx_block;
void pc_mx_add_shared(size_t slot, uint64_t n);

static inline void pc_mx_add(size_t slot, uint64_t n)
{
    uint64_t *b = pc_mx_block;
    if (__builtin_expect(b != NULL, 1))   /* this thread is the only writer */
        __atomic_store_n(&b[slot], __atomic_load_n(&b[slot], __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
    else
        pc_mx_add_shared(slot, n);
}

/* An index out of its dimension's range counts at 0 (never out of bounds). */
static inline size_t pc_mx_ix(unsigned v, unsigned n)
{
    return v < n ? v : 0;
}

static inline void pc_mx_observe(size_t slot, uint64_t usec)
{
    static const uint32_t bounds[PC_HBOUNDS] = {500, 1000, 2500, 5000, 10000, 25000, 50000,
                                                100000, 250000, 500000, 1000000, 2500000,
                                                5000000, 10000000};
    size_t i = 0;
    while (i < PC_HBOUNDS && usec > bounds[i])
        i++;
    pc_mx_add(slot + i, 1);
    pc_mx_add(slot + PC_HBOUNDS + 1, usec);
}

#define PC_MX_I1(id, a) (pc_mx_ix((a), PC_M_##id##_N0))
#define PC_MX_I2(id, a, b) (PC_MX_I1(id, a) * PC_M_##id##_N1 + pc_mx_ix((b), PC_M_##id##_N1))
#define PC_MX_I3(id, a, b, c) (PC_MX_I2(id, a, b) * PC_M_##id##_N2 + pc_mx_ix((c), PC_M_##id##_N2))

/* Counters: pc_count(CONN_ACCEPTED), pc_count1(CONN_REFUSED, PC_REFUSE_DRAINING), ... */
#define pc_count(id) pc_mx_add(PC_M_##id, 1)
#define pc_count1(id, a) pc_mx_add(PC_M_##id + PC_MX_I1(id, a), 1)
#define pc_count2(id, a, b) pc_mx_add(PC_M_##id + PC_MX_I2(id, a, b), 1)
#define pc_count3(id, a, b, c) pc_mx_add(PC_M_##id + PC_MX_I3(id, a, b, c), 1)
/* Histograms: a duration in microseconds. */
#define pc_observe(id, usec) pc_mx_observe(PC_M_##id, (usec))
#define pc_observe1(id, a, usec) pc_mx_observe(PC_M_##id + PC_MX_I1(id, a) * PC_HB, (usec))

/* Status class of an HTTP status (100..599) for PC_D_STATUS. */
static inline unsigned pc_status_class(int status)
{
    return status >= 100 && status < 600 ? (unsigned)(status / 100 - 1) : PC_ST_5XX;
}

/* Once, before any thread counts (main, a unit test); later calls do nothing. */
void pc_metrics_init(void);
/* Frees every block; nothing may count afterwards. */
void pc_metrics_shutdown(void);
/* Gives the calling thread its own block. Syscall-like: 0, or -1 out of memory
 * (the thread then counts into the shared block). */
int pc_metrics_thread_attach(void);

/* The id of name in dimension dyn, interned on first use (thread-safe; call
 * it when a configuration is built, not per request). PC_ID_OTHER once the
 * dimension is full, PC_ID_NONE for NULL or "". */
unsigned pc_metrics_intern(enum pc_dyn dyn, const char *name);

/* The sum over every block of one slot (tests, /admin/health). */
uint64_t pc_metrics_read(size_t slot);

/* A growing text buffer for the exposition; oom set once an append failed. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} pc_buf_t;
void pc_buf_printf(pc_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pc_buf_free(pc_buf_t *b);

/* Appends every family of metrics.def in the Prometheus text format 0.0.4. */
void pc_metrics_render(pc_buf_t *out);
/* Appends one gauge family with HELP and TYPE lines and one sample per call
 * of pc_metrics_sample (labels: "" or `key="value",...` already escaped). */
void pc_metrics_family(pc_buf_t *out, const char *name, const char *type, const char *help);
void pc_metrics_sample(pc_buf_t *out, const char *name, const char *labels, double value);
/* Escapes a label value (\\, \", \n) into dst (cap bytes, always terminated). */
void pc_metrics_label_esc(char *dst, size_t cap, const char *value);

#endif
