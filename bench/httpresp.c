/* httpresp: incremental HTTP/1.1 response parser, see httpresp.h. */
#include "httpresp.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

enum {
    ST_STATUS, ST_HEADERS, ST_BODY, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_END,
    ST_TRAILERS, ST_UNTIL_CLOSE, ST_DONE, ST_ERROR
};

void resp_init(resp_parser_t *p, int head_request)
{
    p->state = ST_STATUS;
    p->head_request = head_request;
    p->status = 0;
    p->minor = 1;
    p->conn_close = 0;
    p->keep_alive = 0;
    p->chunked = 0;
    p->content_length = -1;
    p->remaining = 0;
    p->nheaders = 0;
    p->bytes = 0;
    p->error = NULL;
    p->linelen = 0;
}

int resp_idle(const resp_parser_t *p)
{
    return p->bytes == 0;
}

static int err(resp_parser_t *p, const char *why)
{
    p->state = ST_ERROR;
    p->error = why;
    return RESP_ERROR;
}

static int parse_status(resp_parser_t *p, const char *l, size_t n)
{
    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') || l[8] != ' ')
        return err(p, "malformed status line");
    if (!isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
        !isdigit((unsigned char)l[11]) || (n > 12 && l[12] != ' '))
        return err(p, "malformed status code");
    p->minor = l[7] - '0';
    p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (p->status < 100)
        return err(p, "malformed status code");
    p->state = ST_HEADERS;
    return RESP_MORE;
}

/* Whether the comma-separated list v contains token tok (case-insensitive). */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return 1;
    }
    return 0;
}

/* Whether the last transfer coding in the list is "chunked". */
static int last_is_chunked(const char *v, size_t n)
{
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    size_t s = n;
    while (s && v[s - 1] != ',')
        s--;
    while (s < n && (v[s] == ' ' || v[s] == '\t'))
        s++;
    return n - s == 7 && strncasecmp(v + s, "chunked", 7) == 0;
}

static int parse_header_line(resp_parser_t *p, const char *l, size_t n)
{
    if (++p->nheaders > RESP_MAX_HEADERS)
        return err(p, "too many headers");
    if (l[0] == ' ' || l[0] == '\t')
        return err(p, "obsolete header line folding");
    const char *colon = memchr(l, ':', n);
    if (!colon || colon == l)
        return err(p, "malformed header line");
    size_t nl = (size_t)(colon - l);
    for (size_t i = 0; i < nl; i++)
        if (l[i] <= ' ' || l[i] >= 0x7f)
            return err(p, "malformed header name");
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    if (nl == 14 && strncasecmp(l, "content-length", 14) == 0) {
        if (vl == 0 || vl > 18)
            return err(p, "bad Content-Length");
        int64_t cl = 0;
        for (size_t i = 0; i < vl; i++) {
            if (!isdigit((unsigned char)v[i]))
                return err(p, "bad Content-Length");
            cl = cl * 10 + (v[i] - '0');
        }
        if (p->content_length >= 0 && p->content_length != cl)
            return err(p, "conflicting Content-Length headers");
        p->content_length = cl;
    } else if (nl == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
        p->chunked = last_is_chunked(v, vl) ? 1 : -1; /* -1: body ends at close */
    } else if (nl == 10 && strncasecmp(l, "connection", 10) == 0) {
        if (has_token(v, vl, "close"))
            p->conn_close = 1;
        if (has_token(v, vl, "keep-alive"))
            p->keep_alive = 1;
    }
    return RESP_MORE;
}

static int end_of_headers(resp_parser_t *p)
{
    if (p->status >= 100 && p->status < 200) {
        if (p->status == 101)
            return err(p, "unexpected 101 Switching Protocols");
        /* interim response: the real one follows */
        p->state = ST_STATUS;
        p->content_length = -1;
        p->chunked = 0;
        p->conn_close = 0;
        p->keep_alive = 0;
        p->nheaders = 0;
        return RESP_MORE;
    }
    if (p->minor == 0 && !p->keep_alive)
        p->conn_close = 1;
    if (p->head_request || p->status == 204 || p->status == 304) {
        p->state = ST_DONE;
        return RESP_DONE;
    }
    if (p->chunked == 1) {
        p->state = ST_CHUNK_SIZE;
        return RESP_MORE;
    }
    if (p->chunked == -1 || p->content_length < 0) {
        p->conn_close = 1;
        p->state = ST_UNTIL_CLOSE;
        return RESP_MORE;
    }
    if (p->content_length == 0) {
        p->state = ST_DONE;
        return RESP_DONE;
    }
    p->remaining = (uint64_t)p->content_length;
    p->state = ST_BODY;
    return RESP_MORE;
}

static int parse_chunk_size(resp_parser_t *p, const char *l, size_t n)
{
    uint64_t sz = 0;
    size_t i = 0;
    for (; i < n && isxdigit((unsigned char)l[i]); i++) {
        if (sz >> 56)
            return err(p, "chunk size too large");
        int c = tolower((unsigned char)l[i]);
        sz = sz * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    if (i == 0)
        return err(p, "malformed chunk size");
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    if (i < n && l[i] != ';')
        return err(p, "malformed chunk size");
    if (sz == 0) {
        p->state = ST_TRAILERS;
    } else {
        p->remaining = sz;
        p->state = ST_CHUNK_DATA;
    }
    return RESP_MORE;
}

/* One complete line (without CRLF) in the current state. */
static int on_line(resp_parser_t *p, const char *l, size_t n)
{
    switch (p->state) {
    case ST_STATUS:
        return parse_status(p, l, n);
    case ST_HEADERS:
        return n == 0 ? end_of_headers(p) : parse_header_line(p, l, n);
    case ST_CHUNK_SIZE:
        return parse_chunk_size(p, l, n);
    case ST_CHUNK_END:
        if (n != 0)
            return err(p, "missing CRLF after chunk data");
        p->state = ST_CHUNK_SIZE;
        return RESP_MORE;
    case ST_TRAILERS:
        if (n == 0) {
            p->state = ST_DONE;
            return RESP_DONE;
        }
        if (++p->nheaders > RESP_MAX_HEADERS)
            return err(p, "too many trailer fields");
        return RESP_MORE;
    }
    return err(p, "internal parser state");
}

int resp_feed(resp_parser_t *p, const char *buf, size_t len, size_t *consumed)
{
    size_t i = 0;
    int rc = RESP_MORE;
    if (p->state == ST_ERROR) {
        *consumed = 0;
        return RESP_ERROR;
    }
    if (p->state == ST_DONE) {
        *consumed = 0;
        return RESP_DONE;
    }
    while (i < len && rc == RESP_MORE) {
        if (p->state == ST_BODY || p->state == ST_CHUNK_DATA) {
            size_t take = len - i;
            if ((uint64_t)take > p->remaining)
                take = (size_t)p->remaining;
            i += take;
            p->remaining -= take;
            if (p->remaining == 0) {
                if (p->state == ST_BODY) {
                    p->state = ST_DONE;
                    rc = RESP_DONE;
                } else {
                    p->state = ST_CHUNK_END;
                }
            }
            continue;
        }
        if (p->state == ST_UNTIL_CLOSE) {
            i = len;
            continue;
        }
        /* line-oriented states */
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t take = nl ? (size_t)(nl - (buf + i)) + 1 : len - i;
        if (p->linelen + take > sizeof(p->line)) {
            i += take;
            rc = err(p, p->state == ST_STATUS || p->state == ST_HEADERS ? "header line too long"
                                                                         : "line too long");
            break;
        }
        memcpy(p->line + p->linelen, buf + i, take);
        p->linelen += take;
        i += take;
        if (!nl)
            continue;
        size_t n = p->linelen - 1; /* drop LF */
        if (n && p->line[n - 1] == '\r')
            n--;
        for (size_t k = 0; k < n; k++)
            if (p->line[k] == '\r' || p->line[k] == '\0') {
                rc = err(p, "stray CR or NUL in a line");
                break;
            }
        p->linelen = 0;
        if (rc == RESP_MORE)
            rc = on_line(p, p->line, n);
    }
    p->bytes += i;
    *consumed = i;
    return rc;
}

int resp_eof(resp_parser_t *p)
{
    if (p->state == ST_DONE)
        return RESP_DONE;
    if (p->state == ST_UNTIL_CLOSE) {
        p->state = ST_DONE;
        return RESP_DONE;
    }
    if (p->state != ST_ERROR)
        err(p, p->bytes ? "connection closed mid-response" : "connection closed before a response");
    return RESP_ERROR;
}
