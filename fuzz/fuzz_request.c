/* fuzz_request: the client request path, from bytes to the head sent upstream.
 *
 * The input is what a client sends on one TLS connection after the
 * handshake. It runs through gateway/request.c itself (included here, so
 * its llhttp callbacks, line scan, header checks, target and Host
 * canonicalisation, route match and route policy are the real ones), split into reads at points chosen by the
 * input's first bytes. TLS, the rate-limit gate and the issuance handlers are
 * replaced by stubs below; the upstream exchange (upstream/proxy.c) is
 * replaced by a recorder that checks what would be sent:
 *   - the rewritten head parses, strictly, as exactly one request head that
 *     ends where the gateway ended it;
 *   - head plus body, once the request is complete, is exactly one complete
 *     request (nothing left over that an upstream would read as another);
 *   - no name the gateway owns (identity and claim headers, X-Forwarded-*,
 *     X-Request-Id, Host, framing) appears twice in the head sent upstream
 *     when names are compared as an upstream may (case-insensitively, every
 *     byte other than a letter or digit equal to '-'); PORTCULLIS_FUZZ_STRICT_NAMES=0 in the environment
 *     turns this check off.
 * Input layout: byte 0 bit 0 the client class (device, bootstrap; a
 * connection in the HTTP state always has a verified identity), bits 2-7
 * and byte 1 the read sizes; the rest is the byte stream.
 */
#include "../gateway/request.c"

#include "fuzz.h"

/* ---- stubs for the connection side (gateway/conn.c: sockets, TLS) ---- */

char *gw_conn_ctx(const gw_conn_t *c, char *buf, size_t n)
{
    snprintf(buf, n, "conn=%llu action=%s", (unsigned long long)c->cid, c->action);
    return buf;
}

void gw_conn_arm(gw_conn_t *c, enum tkind k, uint64_t ms)
{
    (void)ms;
    c->tkind = k;
}

void gw_conn_kick(gw_conn_t *c)
{
    (void)c;
}

/* The harness drives the parser itself (LLVMFuzzerTestOneInput). */
void gw_conn_io(gw_conn_t *c)
{
    (void)c;
}

/* ---- stubs for the gate ---- */

int gw_gate_start(gw_conn_t *c, int *rc)
{
    (void)c;
    *rc = 0;
    return GW_GATE_ALLOW;
}

void gw_gate_reset(gw_conn_t *c)
{
    (void)c;
}

/* ---- the upstream side: records and checks what would be sent ---- */

struct ups_exchange {
    struct evbuffer *head, *body;
    int head_request;
    int done;
};

/* How many complete heads / messages a strict llhttp reads from a buffer,
 * and the header names of the first head. */
#define NAMES_MAX 128
typedef struct {
    int heads, messages;
    const char *name[NAMES_MAX];
    size_t nlen[NAMES_MAX];
    size_t nnames;
} recount_t;

static int rc_field(llhttp_t *p, const char *at, size_t n)
{
    recount_t *rc = p->data;
    if (rc->heads == 0 && rc->messages == 0 && rc->nnames < NAMES_MAX) {
        rc->name[rc->nnames] = at;
        rc->nlen[rc->nnames++] = n;
    }
    return 0;
}

/* A name byte as CGI-style upstreams read it: case-insensitive, and every
 * byte other than a letter or digit as '-' (written independently of
 * upstream/http.c's table, so the check does not trust what it checks). */
static char fold(char ch)
{
    unsigned char u = (unsigned char)ch;
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z'))
        return ch;
    if (u >= 'A' && u <= 'Z')
        return (char)(u + 32);
    return '-';
}

static int same_name(const char *a, size_t an, const char *b)
{
    if (an != strlen(b))
        return 0;
    for (size_t i = 0; i < an; i++)
        if (fold(a[i]) != fold(b[i]))
            return 0;
    return 1;
}

static gw_gen_t rt;   /* the fixed gateway generation, below */
static gw_proc_t *proc;

static void check_names(const recount_t *rc, const char *h, size_t n)
{
    static int strict = -1;
    if (strict < 0)
        strict = !getenv("PORTCULLIS_FUZZ_STRICT_NAMES") || atoi(getenv("PORTCULLIS_FUZZ_STRICT_NAMES"));
    if (!strict)
        return;
    static const char *const fixed[] = {"host", "x-forwarded-for", "x-forwarded-proto",
                                        "x-request-id", "content-length", "transfer-encoding",
                                        "connection", "x-token-subject"};
    const cfg_identity_t *ic = &rt.cfg->identity;
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0] + CFG_H__COUNT; k++) {
        const char *want = k < sizeof fixed / sizeof fixed[0] ? fixed[k] : ic->headers[k - sizeof fixed / sizeof fixed[0]];
        int seen = 0;
        for (size_t i = 0; i < rc->nnames; i++)
            seen += same_name(rc->name[i], rc->nlen[i], want);
        if (seen > 1) {
            fprintf(stderr, "upstream head names %s %d times:\n%.*s\n", want, seen, (int)n, h);
            FUZZ_ASSERT(0, "a gateway-owned header name reaches the upstream twice");
        }
    }
}

static int rc_head(llhttp_t *p)
{
    ((recount_t *)p->data)->heads++;
    return 0;
}

static int rc_msg(llhttp_t *p)
{
    ((recount_t *)p->data)->messages++;
    return HPE_PAUSED;
}

/* Parses buf as requests; returns the llhttp result, *used the bytes eaten. */
static llhttp_errno_t reparse(const char *buf, size_t n, int stop_at_head, recount_t *rc, size_t *used)
{
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_header_field = rc_field;
    s.on_headers_complete = stop_at_head ? rc_msg : rc_head;
    s.on_message_complete = rc_msg;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &s);
    p.data = rc;
    llhttp_errno_t e = llhttp_execute(&p, buf, n);
    *used = n;
    if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&p);
        *used = pos ? (size_t)(pos - buf) : n;
    }
    if (stop_at_head)
        rc->heads = rc->messages;
    return e;
}

int64_t gw_conn_now_ms(const gw_conn_t *c)
{
    (void)c;
    return 0;
}

/* upstream/proxy.c is not linked: what the generation code needs of it */
ups_health_t *ups_health_new(const cfg_t *cfg)
{
    (void)cfg;
    return NULL;
}

void ups_health_free(ups_health_t *h)
{
    (void)h;
}

size_t ups_health_skipped(ups_health_t *h, const cfg_t *cfg, size_t up)
{
    (void)h, (void)cfg, (void)up;
    return 0;
}

ups_pool_t *gw_wgen_pool(const gw_wgen_t *wg)
{
    (void)wg;
    return NULL;
}

ups_exchange_t *ups_exchange_start(ups_pool_t *p, size_t up, struct evbuffer *head, int has_body,
                                   int head_request, const ups_ops_t *ops, void *c)
{
    (void)p, (void)up, (void)has_body, (void)ops, (void)c;
    ups_exchange_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->head = evbuffer_new();
    x->body = evbuffer_new();
    x->head_request = head_request;
    evbuffer_add_buffer(x->head, head);
    size_t n = evbuffer_get_length(x->head), used;
    const char *h = (const char *)evbuffer_pullup(x->head, -1);
    recount_t rc;
    memset(&rc, 0, sizeof rc);
    llhttp_errno_t e = reparse(h, n, 1, &rc, &used);
    if (e != HPE_PAUSED || rc.heads != 1 || used != n) {
        fprintf(stderr, "upstream head (%zu bytes, llhttp %s, %zu used):\n%.*s\n", n,
                llhttp_errno_name(e), used, (int)n, h);
        FUZZ_ASSERT(0, "the head sent upstream is not exactly one request head");
    }
    check_names(&rc, h, n);
    return x;
}

void ups_exchange_send(ups_exchange_t *x, const void *data, size_t n)
{
    evbuffer_add(x->body, data, n);
}

void ups_exchange_flush(ups_exchange_t *x)
{
    (void)x;
}

size_t ups_exchange_backlog(const ups_exchange_t *x)
{
    (void)x;
    return 0;
}

void ups_exchange_resume(ups_exchange_t *x)
{
    (void)x;
}

void ups_exchange_request_done(ups_exchange_t *x)
{
    x->done = 1;
}

const char *ups_exchange_server(const ups_exchange_t *x)
{
    (void)x;
    return "127.0.0.1:9080";
}

void ups_exchange_free(ups_exchange_t *x)
{
    if (!x)
        return;
    if (x->done) {   /* the whole request went upstream: one message, nothing more */
        evbuffer_add_buffer(x->head, x->body);
        size_t n = evbuffer_get_length(x->head), used;
        const char *h = (const char *)evbuffer_pullup(x->head, -1);
        recount_t rc;
        memset(&rc, 0, sizeof rc);
        llhttp_errno_t e = reparse(h, n, 0, &rc, &used);
        if (e != HPE_PAUSED || rc.messages != 1 || used != n) {
            fprintf(stderr, "upstream request (%zu bytes, llhttp %s, %zu used):\n%.*s\n", n,
                    llhttp_errno_name(e), used, (int)(n > 2000 ? 2000 : n), h);
            FUZZ_ASSERT(0, "the request sent upstream is not exactly one message");
        }
    }
    evbuffer_free(x->head);
    evbuffer_free(x->body);
    free(x);
}

/* ---- the fixed gateway ---- */

static const char config_text[] =
    "workers: 1\n"
    FUZZ_CONFIG_TLS
    "limits:\n  max_header_bytes: 4k\n  max_headers: 32\n  max_body_bytes: 100k\n"
    "upstreams:\n"
    "  - name: api\n    servers: [127.0.0.1:9080]\n"
    "  - name: internal\n    servers: [127.0.0.1:9081]\n"
    "routes:\n"
    "  - path: /certificates/\n    upstream: api\n    allow_classes: [bootstrap, device]\n"
    "    require_bearer: false\n"
    "  - path: /internal/\n    upstream: internal\n    allow_classes: [device]\n"
    "    require_bearer: false\n"
    "  - host: api.example.com\n    path: /api\n    methods: [GET, POST, HEAD]\n"
    "    upstream: api\n    allow_classes: [device]\n    require_bearer: true\n"
    "  - path: /\n    upstream: api\n    allow_classes: [device]\n    require_bearer: true\n"
    FUZZ_CONFIG_CA
    "  max_body_bytes: 16k\n"
    "  platforms:\n    ios: {provider: http, url: \"http://127.0.0.1:9100/verify\"}\n";

static struct event_base *base;
static gw_worker_t worker;
static tls_identity_t ids[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    rt.cfg = fuzz_config(config_text);
    proc = gw_proc_new();
    pol_mirror_t *mirror = pol_mirror_new(rt.cfg);
    if (!proc || !mirror)
        abort();
    gw_proc_set_mirror(proc, mirror);
    /* which client header names go on (no token claims in this config) */
    static char *no_claims[1];
    rt.claim_headers = no_claims;
    rt.hnames = ups_names_new(&rt.cfg->identity, (const char *const *)rt.claim_headers, 0,
                              &rt.cfg->http);
    if (!rt.hnames)
        abort();
    base = event_base_new();
    if (!base)
        abort();
    worker.proc = proc;
    worker.base = base;
    static const char *cls[2] = {"device", "bootstrap"};
    for (int i = 0; i < 2; i++) {
        ids[i].refs = 1;
        ids[i].class_idx = i;
        snprintf(ids[i].class_name, sizeof ids[i].class_name, "%s", cls[i]);
        snprintf(ids[i].serial, sizeof ids[i].serial, "1a2b%d", i);
        memset(ids[i].fingerprint, 'a', 64);
        memset(ids[i].x5t_s256, 'A', 43);
        ids[i].subject = "CN=dev";
        ids[i].issuer = "CN=device-ca";
        ids[i].san_uri = "urn:portcullis:device:abc";
        ids[i].san_dns = "";
        ids[i].device_id = i == 0 ? "abc" : NULL;
        snprintf(ids[i].not_after, sizeof ids[i].not_after, "2036-01-01T00:00:00Z");
        ids[i].not_after_t = 2082758400;
    }
    return 0;
}

static void nop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* The upstream answered (as up_done, without the socket work of conn_io). */
static void answer(gw_conn_t *c)
{
    evbuffer_add(c->out, "HTTP/1.1 204 No Content\r\n\r\n", 27);
    c->status = 204;
    c->resp_head_sent = 1;
    ups_exchange_free(c->x);
    c->x = NULL;
    finish_response(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    gw_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return 0;
    c->w = &worker;
    c->gen = &rt;
    c->fd = -1;
    c->cid = ++worker.next_id;
    c->state = C_HTTP;
    c->action = "waiting for request";
    snprintf(c->peer_ip, sizeof c->peer_ip, "192.0.2.7");
    snprintf(c->peer, sizeof c->peer, "192.0.2.7:40000");
    c->id = &ids[data[0] & 1];
    c->rev_gen = pol_mirror_generation(gw_proc_mirror(proc));
    c->timer = evtimer_new(base, nop, c);
    c->kick = event_new(base, -1, 0, nop, c);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->next = worker.conns;
    if (worker.conns)
        worker.conns->prev = c;
    worker.conns = c;
    worker.nconns++;
    __atomic_add_fetch(gw_proc_nconns(proc), 1, __ATOMIC_RELAXED);
    gw_req_init(c);

    /* read sizes: 1 + a function of the two first bytes, varying per read */
    size_t step = 1 + (((size_t)(data[0] >> 2) << 8) | data[1]) % 4096;
    const char *p = (const char *)data + 2;
    size_t left = size - 2;
    for (int rounds = 0; rounds < 10000 && c->state == C_HTTP && !c->dead; rounds++) {
        if (c->paused) {
            if (c->x && c->req_complete)
                answer(c);
            else
                break;   /* waiting for something this harness does not model */
            continue;
        }
        size_t held = evbuffer_get_length(c->in);
        if (held) {
            gw_req_parse(c, (const char *)evbuffer_pullup(c->in, (ssize_t)held), held, 1);
            continue;
        }
        if (!left)
            break;
        size_t n = step < left ? step : left;
        gw_req_parse(c, p, n, 0);
        p += n;
        left -= n;
        step = 1 + (step * 7 + n) % 4096;
    }
    /* the connection's teardown, without a socket or TLS session */
    c->id = NULL;
    gw_req_free(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        worker.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    worker.nconns--;
    __atomic_sub_fetch(gw_proc_nconns(proc), 1, __ATOMIC_RELAXED);
    event_free(c->timer);
    event_free(c->kick);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    free(c);
    return 0;
}
