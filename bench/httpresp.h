/* httpresp: an incremental HTTP/1.1 response parser for the load generator.
 * It checks the framing (status line, headers, Content-Length or chunked
 * body, Connection) and discards the body. */
#ifndef PORTCULLIS_BENCH_HTTPRESP_H
#define PORTCULLIS_BENCH_HTTPRESP_H

#include <stddef.h>
#include <stdint.h>

#define RESP_LINE_MAX 8192
#define RESP_MAX_HEADERS 256

enum { RESP_MORE = 0, RESP_DONE = 1, RESP_ERROR = -1 };

typedef struct resp_parser {
    int state;
    int head_request;    /* response to HEAD: no body */
    int status;
    int minor;           /* HTTP/1.<minor> */
    int conn_close;      /* the connection ends after this response */
    int keep_alive;      /* "Connection: keep-alive" seen (matters for 1.0) */
    int chunked;
    int64_t content_length; /* -1: none */
    uint64_t remaining;  /* body or chunk bytes still to come */
    unsigned nheaders;
    uint64_t bytes;      /* bytes consumed for this response */
    const char *error;   /* static text when RESP_ERROR was returned */
    size_t linelen;
    char line[RESP_LINE_MAX];
} resp_parser_t;

void resp_init(resp_parser_t *p, int head_request);
/* Consumes bytes up to the end of the response (*consumed tells how many).
 * Returns RESP_MORE, RESP_DONE or RESP_ERROR (p->error says why). */
int resp_feed(resp_parser_t *p, const char *buf, size_t len, size_t *consumed);
/* The peer closed the connection: RESP_DONE when that ends the body (no
 * length given), RESP_ERROR otherwise. */
int resp_eof(resp_parser_t *p);
/* True when nothing of a response has arrived yet. */
int resp_idle(const resp_parser_t *p);

#endif
