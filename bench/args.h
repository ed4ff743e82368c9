/* args: command-line parsing for portcullis-bench (no sockets, testable). */
#ifndef PORTCULLIS_BENCH_ARGS_H
#define PORTCULLIS_BENCH_ARGS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define BENCH_MAX_HEADERS 64
#define BENCH_ERRLEN 256

typedef enum { MODE_FULL, MODE_RESUME, MODE_KEEPALIVE, MODE_IDLE } bench_mode_t;
typedef enum { RESUME_TLS13, RESUME_TLS12_ID, RESUME_TLS12_TICKET } resume_kind_t;

typedef struct bench_url {
    char host[256];      /* without brackets for IPv6 literals */
    char port[8];
    char path[2048];     /* starts with '/', includes any query */
    char authority[300]; /* for the Host header: host:port, IPv6 in brackets */
    int host_is_ip;
} bench_url_t;

typedef struct bench_header {
    char *name;
    char *value;
} bench_header_t;

typedef struct bench_opts {
    unsigned connections;
    unsigned threads;
    uint64_t duration_ns;
    int duration_given;
    uint64_t total_requests; /* 0: run for duration_ns */
    const char *cert, *key, *cacert;
    bench_header_t headers[BENCH_MAX_HEADERS];
    unsigned nheaders;
    char method[32];
    const char *body_file;
    uint64_t body_size;
    int body_size_given;
    bench_mode_t mode;
    resume_kind_t resume_kind;
    int resume_kind_given;
    int tls_max; /* 12 or 13 */
    double rate; /* requests/s in total, 0 = closed loop */
    uint64_t timeout_ns;
    int json;
    uint64_t warmup_ns;
    bench_url_t url;
} bench_opts_t;

/* Each returns 0 on success, -1 with a message in err (BENCH_ERRLEN bytes). */
int parse_duration(const char *s, uint64_t *ns, char *err);
int parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err);
int parse_rate(const char *s, double *out, char *err);
int parse_size(const char *s, uint64_t *out, char *err); /* 123, 4k, 2m */
int parse_url(const char *s, bench_url_t *u, char *err);
/* Splits "Name: value"; name and value are newly allocated. */
int parse_header(const char *s, bench_header_t *h, char *err);

/* Parses argv into o. Returns 0 on success, 1 when --help was asked for,
 * -1 on a usage error (message in err). */
int bench_parse_args(int argc, char **argv, bench_opts_t *o, char *err);
void bench_opts_free(bench_opts_t *o);
const char *bench_mode_name(bench_mode_t m);
const char *bench_resume_kind_name(resume_kind_t k);
void bench_usage(FILE *out);

#endif
