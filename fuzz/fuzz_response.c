/* fuzz_response: the upstream response head path.
 *
 * The input is what an upstream server sends back for one request. It runs
 * through upstream/proxy.c itself (included here: its llhttp callbacks,
 * header collection and framing decision), split into reads as the input's
 * first bytes say, with the exchange's socket replaced by those reads. The
 * head callback builds the client response head the way gateway/request.c does
 * (ups_build_response_head, for an HTTP/1.1 and an HTTP/1.0 client) and
 * checks that it parses, strictly, as exactly one response head that ends
 * where it was built to end.
 * Input layout: byte 0 bit 0 a HEAD request, bit 1 an HTTP/1.0 client,
 * bits 2-7 and byte 1 the read sizes; the rest is the byte stream.
 */
#include "../upstream/proxy.c"

#include "fuzz.h"

static struct event_base *base;
static int client_minor;
/* the exchange's pool, as far as the head path reads it (its loop and its
 * upstream's metrics label) */
static cfg_upstream_t fuzz_up;
static cfg_t fuzz_cfg = {.upstreams = &fuzz_up, .nupstreams = 1};
static struct ups_pool fuzz_pool = {.cfg = &fuzz_cfg};

static int head_only(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED;
}

static void check_head(struct evbuffer *out, int status, int head_request)
{
    size_t n = evbuffer_get_length(out);
    const char *h = (const char *)evbuffer_pullup(out, -1);
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_headers_complete = head_only;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    llhttp_errno_t e = llhttp_execute(&p, h, n);
    const char *pos = llhttp_get_error_pos(&p);
    /* llhttp pauses after the head's final LF: nothing may follow it */
    if (e != HPE_PAUSED || !pos || (size_t)(pos - h) != n || p.status_code != status) {
        fprintf(stderr, "client head (%zu bytes, llhttp %s, status %d):\n%.*s\n", n,
                llhttp_errno_name(e), p.status_code, (int)n, h);
        FUZZ_ASSERT(0, "the head sent to the client is not exactly one response head");
    }
    (void)head_request;
}

static void f_head(void *c, int status, const ups_hdrs_t *h, int framing, uint64_t clen)
{
    ups_exchange_t *x = c;
    /* as gateway/request.c up_head: chunked or EOF framing becomes chunked for
     * HTTP/1.1 clients, EOF (and close) for HTTP/1.0 ones */
    int cframing = framing;
    if (framing == UPS_FRAME_CHUNKED || framing == UPS_FRAME_EOF)
        cframing = client_minor >= 1 ? UPS_FRAME_CHUNKED : UPS_FRAME_EOF;
    struct evbuffer *out = evbuffer_new();
    if (!out)
        abort();
    ups_build_response_head(out, status, h, "RateLimit: limit=10, remaining=9, reset=1\r\n",
                            cframing, clen, client_minor == 0);
    check_head(out, status, x->head_request);
    evbuffer_free(out);
}

static void f_body(void *c, const char *p, size_t n)
{
    (void)c, (void)p, (void)n;
}

static void f_done(void *c)
{
    (void)c;
}

static void f_fail(void *c, enum pc_err e, const char *msg)
{
    (void)c, (void)e, (void)msg;
}

static void f_drained(void *c)
{
    (void)c;
}

static size_t f_backlog(void *c)
{
    (void)c;
    return 0;
}

static const ups_ops_t fops = {f_head, f_body, f_done, f_fail, f_drained, f_backlog};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    base = event_base_new();
    if (!base)
        abort();
    fuzz_pool.base = base;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    ups_exchange_t *x = calloc(1, sizeof *x);
    if (!x)
        return 0;
    x->pool = &fuzz_pool;
    x->ops = &fops;
    x->c = x;
    x->fd = -1;
    x->state = X_ACTIVE;
    x->head_request = data[0] & 1;
    client_minor = (data[0] & 2) ? 0 : 1;
    x->timer = evtimer_new(base, x_timeout, x);
    if (!x->timer || ups_hdrs_init(&x->hdrs, 4096, 64) < 0)
        abort();
    llhttp_init(&x->parser, HTTP_RESPONSE, &resp_settings);
    x->parser.data = x;

    /* as x_read, with recv() replaced by slices of the input */
    size_t step = 1 + (((size_t)(data[0] >> 2) << 8) | data[1]) % 4096;
    const char *p = (const char *)data + 2;
    size_t left = size - 2;
    while (left && !x->complete) {
        size_t n = step < left ? step : left;
        llhttp_errno_t e = llhttp_execute(&x->parser, p, n);
        p += n;
        left -= n;
        step = 1 + (step * 7 + n) % 4096;
        if (e == HPE_PAUSED)
            break;
        if (e != HPE_OK) {
            x->state = X_FAILED;
            break;
        }
    }
    if (x->state == X_ACTIVE && !x->complete && x->head_seen)
        llhttp_finish(&x->parser);   /* the upstream closed: EOF framing ends here */
    event_free(x->timer);
    ups_hdrs_free(&x->hdrs);
    free(x);
    return 0;
}
