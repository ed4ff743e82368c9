/* gateway/conn_int: the client connection, private to the gateway's
 * connection (conn.c), its request pipeline (request.c), the route gate
 * (gate.c) and the internal routes' table (iroute.c). */
#ifndef PORTCULLIS_CONN_INT_H
#define PORTCULLIS_CONN_INT_H

#include <arpa/inet.h>
#include <llhttp.h>
#include <time.h>

#include "../config/host.h"
#include "../policy/iroute.h"
#include "../policy/jwt.h"
#include "../policy/ratelimit.h"
#include "../policy/redis.h"
#include "../upstream/http.h"
#include "gateway.h"
#include "../base/errors.h"
#include "../base/log.h"

#define READ_CHUNK 16384
#define OUT_HIGH (256 * 1024)     /* stop reading requests above this unsent response size */
#define UP_REQ_HIGH (256 * 1024)  /* stop reading a body above this unsent upstream backlog */
#define DISCARD_MAX (64 * 1024)   /* bodies of refused requests up to this are read and dropped */
#define GW_RL_HEADERS_LEN 256     /* RateLimit header lines of one response */

/* C_PROXY: a PROXY protocol listener's connection before its header is read
 * (then C_HANDSHAKE). C_LINGER: the last response and close_notify are out,
 * the write side is shut; the client's input is read and dropped until it
 * closes or a bound. */
enum cstate { C_PROXY, C_HANDSHAKE, C_HTTP, C_CLOSING, C_LINGER };
enum tkind { T_NONE, T_PROXY, T_HANDSHAKE, T_HEADER, T_BODY, T_IDLE, T_SEND, T_LINGER };

struct gw_conn {
    gw_worker_t *w;
    gw_gen_t *gen;              /* the generation it was accepted under (wg's) */
    gw_wgen_t *wg;              /* the worker's share of it: pool, connection count */
    int counted;                /* the connection limiter counts it: release at close */
    const cfg_listener_t *listen; /* the listener it came in on, in gen's configuration */
    uint8_t *pp_buf;            /* C_PROXY: the header's bytes read so far (listen's
                                 * proxy_header_max), freed when the header is done */
    size_t pp_len;
    gw_conn_t *next, *prev;
    uint64_t cid;
    int fd;
    SSL *ssl;
    struct event *rev, *wev, *timer, *kick;
    enum cstate state;
    enum tkind tkind;
    const char *action;         /* what the connection is doing, for logs */
    char peer[INET6_ADDRSTRLEN + 8];
    char peer_ip[INET6_ADDRSTRLEN];
    struct sockaddr_storage peer_addr;
    tls_identity_t *id;
    uint64_t rev_gen;           /* revocation generation the identity was last checked at */
    int cert_expired;           /* notAfter passed while a request was in progress */
    int revoked;                /* closing because its certificate was revoked (counted once) */
    int64_t accepted_us;        /* monotonic, at accept: the handshake duration's start */
    int retiring;               /* drain or the end of a reload grace: every response from
                                 * now says Connection: close, and the connection closes after
                                 * it, or once idle and quiet (gw_conn_retire) */
    int64_t idle_since_ms;      /* when it last began waiting for a request (the loop's clock) */
    int dead;                   /* gw_conn_io frees it */
    int want_write;             /* SSL needs the socket writable */
    int rev_off;                /* the read event is not registered */
    int tls_error;              /* a TLS protocol error: forget the session */

    llhttp_t parser;
    const char *parse_base;     /* start of the bytes being parsed now */
    const char *parse_end;      /* and their end */
    uint8_t lines;              /* line scan of the head or trailers (gw_h1_lines state) */
    int trailer_pause;          /* llhttp paused at the last chunk: trailers follow */
    const char *msg_end;        /* in the bytes being parsed: where the last request ended */
    int linger_wr;              /* lingering: close_notify sent and the write side shut */
    uint64_t linger_bytes;      /* lingering: input dropped so far */
    ups_hdrs_t hdrs;
    struct evbuffer *in;        /* received, not yet parsed (parser paused) */
    struct evbuffer *out;       /* to send to the client */
    uint64_t served;            /* requests answered on this connection */

    /* the request in progress */
    int req_active;             /* its first byte has arrived */
    int head_done;
    int req_complete;           /* its body has fully arrived */
    int resp_active;            /* its response is not complete yet */
    int resp_head_sent;
    int paused;                 /* parser stopped at its end */
    int close_after;            /* close once its response is sent */
    int discard;                /* refused: its body is read and dropped */
    int req_chunked;
    int client_chunked;         /* the response is chunk-encoded to the client */
    int http_minor;
    int status;
    uint64_t body_bytes, resp_bytes;
    enum pc_err err;            /* set by a parser callback that stops parsing (stop());
                                 * PC_E_NONE: llhttp's own error */
    const char *err_msg;        /* its message; NULL: the catalog's */
    enum pc_err resp_err;       /* the error the gateway answered this request with;
                                 * PC_E_NONE: none (proxied, or a handler's answer) */
    char request_id[40];
    char method[24];
    ups_span_t host;            /* the canonical host (cfg_host_canon), NUL-terminated, in hdrs */
    unsigned host_port;         /* the Host's port; 0: none sent */
    const cfg_route_t *route;
    ups_exchange_t *x;
    struct timespec started;
    int expect_continue;

    /* route policy that needs more than the head (gate.c) */
    int gate_pending;           /* global rate-limit answers outstanding */
    int gate_refused;           /* a limit refused while answers were outstanding */
    int gate_rc;                /* how parsing goes on after that refusal */
    void *gate_q[CFG_ROUTE_MAX_LIMITS]; /* outstanding questions (gate.c): one per global
                                 * limit of the route, every one of them asked */
    int gate_nq;
    pol_rl_result_t gate_tight; /* the limit with the least remaining */
    const char *gate_tight_name;
    pol_jwt_result_t *jwt;      /* claims to inject, when the route checks a JWT */

    /* routes the gateway answers itself (policy/iroute.h; certificate issuance) */
    const pol_iroute_t *iroute; /* the internal route of the request; NULL: proxied */
    struct evbuffer *body;      /* an internal route's request body */
    void *handler;              /* the handler's state while it works (its slot) */
    int handler_started;        /* 1: to start once llhttp returns; 2: working */
    char *rl_headers;           /* RateLimit lines for the response (GW_RL_HEADERS_LEN), once a
                                 * route with rate_limit_headers needed them; else NULL */

    /* what the access log says of the request (request.c access_log, which resets them) */
    const char *log_server;     /* the upstream server that answered or failed, or NULL */
    struct timespec log_up_sent; /* the request went upstream (with logging.access) */
    int64_t log_up_us;          /* then -> the response head, in us, when log_up_have */
    int log_up_have;
};

/* A line with the connection's context (w, conn, peer, action); CLOG_EV
 * names its event, CLOG's is the generic "connection". */
#define CLOG_EV(c, lvl, ev, ...)                                      \
    do {                                                              \
        if (pc_log_enabled(lvl)) {                                    \
            char ctx_[192];                                           \
            pc_log_ev(lvl, ev, gw_conn_ctx(c, ctx_, sizeof(ctx_)), __VA_ARGS__); \
        }                                                             \
    } while (0)
#define CLOG(c, lvl, ...) CLOG_EV(c, lvl, "connection", __VA_ARGS__)

char *gw_conn_ctx(const gw_conn_t *c, char *buf, size_t n);
/* The worker loop's cached clock, in ms (wall clock; for idle ages). */
int64_t gw_conn_now_ms(const gw_conn_t *c);

static inline const cfg_t *CFG(const gw_conn_t *c)
{
    return c->gen->cfg;
}

/* ---- the connection (conn.c), for the request pipeline ---- */

/* The one driver: handshake, flush, read, flush, then events and the
 * timer re-armed. May free c. */
void gw_conn_io(gw_conn_t *c);
/* Runs gw_conn_io from the event loop soon; never re-enters it. */
void gw_conn_kick(gw_conn_t *c);
/* Sets the connection's one timer: k what it means, ms from now; T_NONE
 * stops it. */
void gw_conn_arm(gw_conn_t *c, enum tkind k, uint64_t ms);

/* ---- the request pipeline (request.c), for the connection ---- */

/* Sets up the parser of a new connection. */
void gw_req_init(gw_conn_t *c);
/* Runs the parser (after the line scan) over data: callbacks, the stages of
 * a complete head, the body to the upstream or the handler. Bytes left after
 * a pause are kept in c->in (from_in: data is c->in's own, and what was
 * parsed is drained from it). A protocol error or a limit a callback
 * enforced is answered, and the connection set to close. Never frees c. */
void gw_req_parse(gw_conn_t *c, const char *data, size_t n, int from_in);
/* Ends the request in progress with a JSON error (unless a response head has
 * gone out already) and the connection set to close; drops its upstream
 * exchange. Never frees c. */
void gw_req_abort(gw_conn_t *c, enum pc_err e, const char *msg);
/* Frees what the request in progress holds (exchange, gate, handler, body,
 * head buffer, RateLimit lines); for the connection's teardown. */
void gw_req_free(gw_conn_t *c);

/* ---- the pipeline, for the gate and the gateway's own routes ---- */

/* Queues the JSON error of catalog entry e (msg: a more precise message, or
 * NULL for the entry's; extra: CRLF-terminated header lines, or NULL) and
 * says how parsing goes on: 0 the body is read and dropped, HPE_PAUSED the
 * connection closes after the response. */
int gw_conn_refuse(gw_conn_t *c, enum pc_err e, const char *msg, const char *extra);
/* The head is accepted: starts the upstream exchange. 0, or an llhttp error
 * code with the reason in c->err_*. */
int gw_conn_forward(gw_conn_t *c);
/* The pending gate decision is complete (allowed, or refused and queued):
 * resumes the paused request. May free c. */
void gw_conn_gate_done(gw_conn_t *c, int rc);

/* ---- routes the gateway answers itself ---- */

/* Answers an internal route: a JSON body (may be NULL for no body) with
 * extra header lines (CRLF-terminated, or NULL). May free c. */
void gw_conn_reply(gw_conn_t *c, int status, const char *json, const char *extra);
/* Answers with the JSON error of catalog entry e (msg, or NULL for the
 * entry's message). May free c. */
void gw_conn_reply_error(gw_conn_t *c, enum pc_err e, const char *msg);

enum { GW_GATE_ALLOW = 0, GW_GATE_DENY = 1, GW_GATE_PENDING = 2 };
/* Token and rate-limit checks of c->route. DENY: the refusal is queued and
 * *rc says how parsing goes on (as gw_conn_refuse); PENDING: answers from
 * Redis are awaited and gw_conn_gate_done() follows. */
int gw_gate_start(gw_conn_t *c, int *rc);
/* Drops outstanding answers and what the gate kept for the request. */
void gw_gate_reset(gw_conn_t *c);

#endif
