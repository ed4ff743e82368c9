/* stats: what one thread measured, merging, and the final report. */
#ifndef PORTCULLIS_BENCH_STATS_H
#define PORTCULLIS_BENCH_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "args.h"
#include "hist.h"

enum {
    ERR_CONNECT, ERR_HANDSHAKE, ERR_TLS_ALERT, ERR_HTTP_STATUS, ERR_TIMEOUT, ERR_CLOSED,
    ERR_PROTOCOL, ERR_KINDS
};

#define STATS_MAX_ALERTS 32
#define STATS_SAMPLE_LEN 160

typedef struct bench_stats {
    uint64_t requests;       /* complete responses, any status */
    uint64_t hs_full, hs_resumed;
    uint64_t bytes_read, bytes_written;
    uint64_t err[ERR_KINDS];
    uint64_t status[600];    /* non-2xx responses by status code */
    struct {
        const char *desc;    /* static string from OpenSSL */
        uint64_t n;
    } alerts[STATS_MAX_ALERTS];
    unsigned nalerts;
    uint64_t idle_up;        /* idle mode: connections up at the end */
    uint64_t elapsed_ns;     /* measured time */
    char sample[ERR_KINDS][STATS_SAMPLE_LEN]; /* first message of each kind */
    hist_t lat;
} bench_stats_t;

const char *stats_err_name(int kind);
void stats_init(bench_stats_t *s);
void stats_error(bench_stats_t *s, int kind, const char *msg);
void stats_alert(bench_stats_t *s, const char *desc);
void stats_merge(bench_stats_t *dst, const bench_stats_t *src);
uint64_t stats_errors_total(const bench_stats_t *s);

void report_text(FILE *out, const bench_opts_t *o, const bench_stats_t *s);
void report_json(FILE *out, const bench_opts_t *o, const bench_stats_t *s);

#endif
