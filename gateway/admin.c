/* gateway/admin: the admin HTTP listener (see admin.h). */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "../policy/issued.h"
#include "../policy/revocation.h"
#include "../policy/revstore.h"
#include "../base/errors.h"
#include "../base/log.h"
#include "metrics.h"

#define PREFIX "/admin/revocations"
#define LIST_DEFAULT 100

/* A request waiting for Redis. */
typedef struct pending {
    struct pending *prev, *next;   /* in gw_admin_t.pending */
    gw_admin_t *a;
    struct evhttp_request *req;
    const char *action;            /* "revoke", "unrevoke", "list", "revoke_device" */
    char entry[POL_REV_ENTRY_MAX]; /* revoke_device: the device id */
    char *reason;
    char peer[80];
    char warning[512];             /* revoke: tls_ca_serial_note, "" if none */
} pending_t;

struct gw_admin {
    struct event_base *base;
    gw_proc_t *proc;
    const cfg_t *cfg;              /* the process's: admin, redis, revocation (restart-only) */
    pol_mirror_t *mirror;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;   /* NULL once handed over */
    int handed_over;               /* a new process serves the socket: close after each answer */
    gw_admin_reload_fn reload;     /* asks the main thread for a reload */
    void *reload_arg;
    struct evhttp_request *reload_req;   /* the POST /admin/reload waiting for its answer */
    int reload_busy;               /* a reload was asked and has not answered yet */
    pol_revstore_t *store;
    char *token;
    size_t toklen;
    pending_t *pending;
};

/* ---------------------------------------------------------------- replies */

static void send_json(struct evhttp_request *req, int status, json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (out) {
        if (text)
            evbuffer_add_printf(out, "%s\n", text);
        else
            evbuffer_add_printf(out, "{\"error\":\"%s\",\"message\":\"%s\"}\n",
                                pc_err_code(PC_E_OUT_OF_MEMORY), pc_err_message(PC_E_OUT_OF_MEMORY));
    }
    evhttp_send_reply(req, text ? status : pc_err_status(PC_E_OUT_OF_MEMORY), NULL, out);
    if (out)
        evbuffer_free(out);
    free(text);
    json_decref(body);
}

/* The JSON error of catalog entry e; msg, or NULL for the entry's message. */
static void send_error(struct evhttp_request *req, enum pc_err e, const char *msg)
{
    send_json(req, pc_err_status(e),
              json_pack("{s:s, s:s}", "error", pc_err_code(e), "message", msg ? msg : pc_err_message(e)));
}

/* A revocation store operation failed: out of memory (pol_revstore_oom),
 * else Redis; the answer's message into msg. */
static enum pc_err store_failed(const char *err, char *msg, size_t len)
{
    if (err == pol_revstore_oom) {
        snprintf(msg, len, "%s", pc_err_message(PC_E_OUT_OF_MEMORY));
        return PC_E_OUT_OF_MEMORY;
    }
    snprintf(msg, len, "the revocation store is unavailable: %s", err);
    return PC_E_REDIS_UNAVAILABLE;
}

/* A store call refused its arguments (e, with err) or ran out of memory. */
static enum pc_err store_refused(enum pc_err e, const char *err)
{
    return err == pol_revstore_oom ? PC_E_OUT_OF_MEMORY : e;
}

/* ---------------------------------------------------------------- logging */

static void peer_of(struct evhttp_request *req, char *buf, size_t len)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (c)
        evhttp_connection_get_peer(c, &addr, &port);
    snprintf(buf, len, "%s:%u", addr ? addr : "?", (unsigned)port);
}

/* A copy fit for one log line: control characters and quotes replaced. */
static void log_safe(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s && *s && i + 1 < len; s++)
        buf[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"') ? '?' : *s;
    buf[i] = '\0';
}

static void log_action(const char *peer, const char *action, const char *entry,
                       const char *reason, int status, const char *result)
{
    char ctx[320], r[256], res[256];
    snprintf(ctx, sizeof ctx, "component=admin peer=%s action=%s entry=%s status=%d", peer,
             action, entry && *entry ? entry : "-", status);
    log_safe(reason, r, sizeof r);
    log_safe(result, res, sizeof res);
    pc_log_ev(PC_INFO, "admin", ctx, "admin %s: %s%s%s%s", action, res, reason ? " (reason \"" : "",
           reason ? r : "", reason ? "\")" : "");
}

static void log_device(const char *peer, const char *device_id, const char *reason,
                       int status, const char *result)
{
    char ctx[320], r[256], res[768];
    snprintf(ctx, sizeof ctx, "component=admin peer=%s action=revoke_device device_id=%s "
             "status=%d", peer, device_id && *device_id ? device_id : "-", status);
    log_safe(reason, r, sizeof r);
    log_safe(result, res, sizeof res);
    pc_log_ev(PC_INFO, "admin", ctx, "admin revoke_device: %s%s%s%s", res, reason ? " (reason \"" : "",
           reason ? r : "", reason ? "\")" : "");
}

/* ---------------------------------------------------------------- pending */

static pending_t *pending_new(gw_admin_t *a, struct evhttp_request *req, const char *action,
                              const char *entry, const char *reason, const char *peer)
{
    pending_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (reason && !(p->reason = strdup(reason))) {
        free(p);
        return NULL;
    }
    p->a = a;
    p->req = req;
    p->action = action;
    snprintf(p->entry, sizeof p->entry, "%s", entry ? entry : "");
    snprintf(p->peer, sizeof p->peer, "%s", peer);
    p->next = a->pending;
    if (a->pending)
        a->pending->prev = p;
    a->pending = p;
    return p;
}

static void pending_free(pending_t *p)
{
    gw_admin_t *a = p->a;
    if (p->prev)
        p->prev->next = p->next;
    else
        a->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p->reason);
    free(p);
}

static void on_write_done(int ok, const char *err, const pol_revstore_result_t *res, void *arg)
{
    pending_t *p = arg;
    int add = strcmp(p->action, "revoke") == 0;
    if (!ok) {
        char msg[320];
        enum pc_err e = store_failed(err, msg, sizeof msg);
        send_error(p->req, e, msg);
        log_action(p->peer, p->action, p->entry, p->reason, pc_err_status(e), msg);
    } else {
        int status = add ? 201 : 200;
        send_json(p->req, status, p->warning[0]
                  ? json_pack("{s:s, s:b, s:s}", "entry", p->entry, "revoked", add, "warning",
                              p->warning)
                  : json_pack("{s:s, s:b}", "entry", p->entry, "revoked", add));
        log_action(p->peer, p->action, p->entry, p->reason, status,
                   res->changed ? "ok" : (add ? "ok (already revoked)" : "ok (was not revoked)"));
    }
    pending_free(p);
}

static void on_device_done(int ok, const char *err, const pol_revstore_result_t *res,
                           void *arg)
{
    pending_t *p = arg;
    char msg[768];
    if (!ok) {
        enum pc_err e = store_failed(err, msg, sizeof msg);
        send_error(p->req, e, msg);
        log_device(p->peer, p->entry, p->reason, pc_err_status(e), msg);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < res->nitems; i++)
            json_array_append_new(arr, json_string(res->items[i].entry));
        /* the log line names as many entries as fit, then "..." */
        int n = snprintf(msg, sizeof msg, "ok, %zu live certificate(s), %d newly revoked:",
                         res->certificates, res->changed);
        size_t off = n > 0 && (size_t)n < sizeof msg ? (size_t)n : 0;
        for (size_t i = 0; i < res->nitems; i++) {
            size_t room = sizeof msg - off - 5;   /* keeps room for " ..." */
            n = snprintf(msg + off, room, " %s", res->items[i].entry);
            if (n < 0 || (size_t)n >= room) {
                memcpy(msg + off, " ...", 5);
                break;
            }
            off += (size_t)n;
        }
        send_json(p->req, 200, arr && res->nitems ?
                  json_pack("{s:s, s:s, s:o, s:I}", "device_id", p->entry, "entry",
                            res->items[0].entry, "revoked", arr, "certificates",
                            (json_int_t)res->certificates) : (json_decref(arr), NULL));
        log_device(p->peer, p->entry, p->reason, 200, msg);
    }
    pending_free(p);
}

static void on_list_done(int ok, const char *err, const pol_revstore_result_t *res, void *arg)
{
    pending_t *p = arg;
    if (!ok) {
        char msg[320];
        send_error(p->req, store_failed(err, msg, sizeof msg), msg);
        pending_free(p);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < res->nitems; i++) {
        const pol_revstore_item_t *it = &res->items[i];
        char problem[300];
        gw_gen_t *g = gw_proc_current(p->a->proc);
        int usable = pol_revstore_entry_problem(g->cfg, it->entry, problem, sizeof problem);
        gw_gen_release(g);
        json_t *o = json_pack("{s:s, s:o, s:o, s:o}", "entry", it->entry, "reason",
                              it->reason ? json_string(it->reason) : json_null(), "revoked_at",
                              it->revoked_at ? json_integer(it->revoked_at) : json_null(),
                              "problem", usable == 0 ? json_null() : json_string(problem));
        if (o)
            json_array_append_new(arr, o);
    }
    send_json(p->req, 200, arr ? json_pack("{s:o, s:s}", "entries", arr, "cursor", res->cursor)
                               : NULL);
    pending_free(p);
}

/* ---------------------------------------------------------------- handlers */

/* Number of UTF-8 code points (jansson strings are valid UTF-8). */
static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* The request body as a JSON object, or NULL after answering 400. */
static json_t *body_object(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    json_error_t je;
    char msg[300];
    if (n == 0) {
        send_error(req, PC_E_INVALID_JSON, "the request needs a JSON body: "
                   "{\"class\": ..., \"serial\": ...}, {\"fingerprint\": ...} or "
                   "{\"device_id\": ...}");
        return NULL;
    }
    json_t *o = json_loadb((const char *)evbuffer_pullup(in, -1), n, JSON_REJECT_DUPLICATES, &je);
    if (o && json_is_object(o))
        return o;
    if (o)
        snprintf(msg, sizeof msg, "the body must be a JSON object");
    else
        snprintf(msg, sizeof msg, "malformed JSON at line %d, column %d: %s", je.line,
                 je.column, je.text);
    json_decref(o);
    send_error(req, PC_E_INVALID_JSON, msg);
    return NULL;
}

/* 0 if every member of o is a known field, else -1 after answering 400. */
static int known_fields(struct evhttp_request *req, json_t *o)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "class") && strcmp(key, "serial") && strcmp(key, "fingerprint") &&
            strcmp(key, "device_id") && strcmp(key, "reason")) {
            char msg[200];
            snprintf(msg, sizeof msg, "unknown field \"%.60s\" (expected class, serial, "
                     "fingerprint, device_id, reason)", key);
            send_error(req, PC_E_INVALID_REQUEST, msg);
            return -1;
        }
    }
    return 0;
}

/* The entry of {"device_id": ...}: 0, or -1 after answering 400. */
static int device_entry(struct evhttp_request *req, json_t *dev, char *entry, size_t len)
{
    const char *cerr = NULL;
    if (json_is_string(dev) && pol_device_id_valid(json_string_value(dev)) &&
        pol_rev_canon_device(json_string_value(dev), entry, len, &cerr) == 0)
        return 0;
    send_error(req, PC_E_INVALID_DEVICE_ID, "device_id must be a string of 1..128 "
               "characters of A-Z a-z 0-9 . _ : @ -");
    return -1;
}

/* The entry of {"fingerprint": ...}: 0, or -1 after answering 400. */
static int fingerprint_entry(struct evhttp_request *req, json_t *fp, char *entry, size_t len)
{
    const char *cerr = NULL;
    if (!json_is_string(fp))
        send_error(req, PC_E_INVALID_ENTRY, "fingerprint must be a string");
    else if (pol_rev_canon_fingerprint(json_string_value(fp), entry, len, &cerr) < 0)
        send_error(req, PC_E_INVALID_ENTRY, cerr);
    else
        return 0;
    return -1;
}

/* The entry of {"class": ..., "serial": ...}; for a POST the class must be
 * one that can match a certificate. 0, or -1 after answering 400. */
/* 1 with why when entry names a class the running configuration lacks. */
static int class_unusable(const gw_admin_t *a, const char *entry, char *why, size_t len)
{
    gw_gen_t *g = gw_proc_current(a->proc);
    int bad = pol_rev_usable(g->cfg, entry, POL_REV_SERIAL, why, len) < 0;
    gw_gen_release(g);
    return bad;
}

static int serial_entry(const gw_admin_t *a, struct evhttp_request *req, int post, json_t *cls,
                        json_t *ser, char *entry, size_t len)
{
    const char *cerr = NULL;
    char why[300];
    if (!cls || !ser)
        send_error(req, PC_E_MISSING_FIELD, "give class and serial (e.g. {\"class\": "
                   "\"device\", \"serial\": \"1a2b\"}), or fingerprint");
    else if (!json_is_string(cls) || !json_is_string(ser))
        send_error(req, PC_E_INVALID_ENTRY, "class and serial must be strings");
    else if (pol_rev_canon_serial(json_string_value(cls), json_string_value(ser), entry, len,
                                  &cerr) < 0)
        send_error(req, PC_E_INVALID_ENTRY, cerr);
    else if (post && class_unusable(a, entry, why, sizeof why))
        send_error(req, PC_E_UNKNOWN_CLASS, why);   /* it could match nothing */
    else
        return 0;
    return -1;
}

/* The entry a body object names: one of device_id, fingerprint, or class
 * and serial, with an optional reason. 0, or -1 after answering 400. */
static int entry_of(const gw_admin_t *a, struct evhttp_request *req, int post, json_t *o,
                    char *entry, size_t len)
{
    json_t *cls = json_object_get(o, "class"), *ser = json_object_get(o, "serial");
    json_t *fp = json_object_get(o, "fingerprint"), *rs = json_object_get(o, "reason");
    json_t *dev = json_object_get(o, "device_id");
    if (rs && !json_is_null(rs) &&
        (!json_is_string(rs) || utf8_len(json_string_value(rs)) > POL_REVSTORE_REASON_MAX))
        send_error(req, PC_E_INVALID_REASON, "reason must be a string of at most 200 "
                   "characters");
    else if (dev && (cls || ser || fp))
        send_error(req, PC_E_INVALID_REQUEST, "give device_id alone, not with class, "
                   "serial or fingerprint");
    else if (dev)   /* POST: the device and its certificates; DELETE: the device entry */
        return device_entry(req, dev, entry, len);
    else if (fp && (cls || ser))
        send_error(req, PC_E_INVALID_REQUEST, "give either class and serial, or "
                   "fingerprint, not both");
    else if (fp)
        return fingerprint_entry(req, fp, entry, len);
    else
        return serial_entry(a, req, post, cls, ser, entry, len);
    return -1;
}

/* Reads the JSON body and the entry it names into entry; for a POST of a
 * device id, *device_id is set too. *reason is the optional reason. *doc
 * owns the strings; the caller releases it. 0, or -1 after answering 400. */
static int entry_from_body(const gw_admin_t *a, struct evhttp_request *req, int post,
                           char *entry, size_t len, const char **reason,
                           const char **device_id, json_t **doc)
{
    *doc = NULL;
    *reason = NULL;
    *device_id = NULL;
    entry[0] = '\0';
    json_t *o = body_object(req);
    if (!o)
        return -1;
    if (known_fields(req, o) < 0 || entry_of(a, req, post, o, entry, len) < 0) {
        json_decref(o);
        return -1;
    }
    json_t *rs = json_object_get(o, "reason"), *dev = json_object_get(o, "device_id");
    if (json_is_string(rs))
        *reason = json_string_value(rs);
    if (dev && post)
        *device_id = json_string_value(dev);
    *doc = o;
    return 0;
}

/* entry: canonical, for the answer and the log; spelling: what the store
 * writes or lifts (a lift also removes that spelling from the set). */
static void start_write(gw_admin_t *a, struct evhttp_request *req, int add, const char *entry,
                        const char *spelling, const char *reason, const char *peer)
{
    const char *action = add ? "revoke" : "unrevoke", *err = NULL;
    pending_t *p = pending_new(a, req, action, entry, reason, peer);
    if (!p) {
        send_error(req, PC_E_OUT_OF_MEMORY, NULL);
        return;
    }
    gw_gen_t *g = gw_proc_current(a->proc);
    if (add && tls_ca_serial_note(g->cfg, entry, p->warning, sizeof p->warning))
        pc_log_ev(PC_WARN, "admin", "action=admin", "revoke %s: %s", entry, p->warning);
    gw_gen_release(g);
    int rc = add ? pol_revstore_add(a->store, entry, reason, on_write_done, p, &err)
                 : pol_revstore_remove(a->store, spelling, on_write_done, p, &err);
    if (rc < 0) {
        enum pc_err e = store_refused(PC_E_INVALID_ENTRY, err);
        send_error(req, e, err);
        log_action(peer, action, entry, reason, pc_err_status(e), err);
        pending_free(p);
    }
}

static void start_device(gw_admin_t *a, struct evhttp_request *req, const char *device_id,
                         const char *reason, const char *peer)
{
    const char *err = NULL;
    pending_t *p = pending_new(a, req, "revoke_device", device_id, reason, peer);
    if (!p) {
        send_error(req, PC_E_OUT_OF_MEMORY, NULL);
        return;
    }
    if (pol_revstore_revoke_device(a->store, device_id, reason, on_device_done, p, &err) < 0) {
        enum pc_err e = store_refused(PC_E_INVALID_DEVICE_ID, err);
        send_error(req, e, err);
        log_device(peer, device_id, reason, pc_err_status(e), err);
        pending_free(p);
    }
}

static void handle_delete_path(gw_admin_t *a, struct evhttp_request *req, const char *raw,
                               const char *peer)
{
    size_t n = 0;
    char *dec = evhttp_uridecode(raw, 0, &n);
    char entry[POL_REV_ENTRY_MAX];
    const char *cerr = NULL;
    if (!dec || n != strlen(dec)) {
        send_error(req, PC_E_INVALID_ENTRY, "the entry in the path is not valid");
    } else if (pol_rev_canon_entry(dec, n, entry, sizeof entry, &cerr) < 0) {
        send_error(req, PC_E_INVALID_ENTRY, cerr);
    } else {
        start_write(a, req, 0, entry, dec, NULL, peer);
    }
    free(dec);
}

static void handle_list(gw_admin_t *a, struct evhttp_request *req, const char *query,
                        const char *peer)
{
    struct evkeyvalq q;
    const char *cursor = "0", *count_s = NULL, *err = NULL;
    unsigned long count = LIST_DEFAULT;
    TAILQ_INIT(&q);
    if (query && evhttp_parse_query_str(query, &q) < 0) {
        send_error(req, PC_E_INVALID_PARAMETER, "malformed query string");
        return;
    }
    const char *c = evhttp_find_header(&q, "cursor");
    if (c)
        cursor = c;
    count_s = evhttp_find_header(&q, "count");
    if (count_s) {
        char *end = NULL;
        errno = 0;
        count = strtoul(count_s, &end, 10);
        if (!*count_s || *end || errno || count_s[0] < '0' || count_s[0] > '9' || count < 1 ||
            count > POL_REVSTORE_COUNT_MAX) {
            send_error(req, PC_E_INVALID_PARAMETER, "count must be an integer 1..1000");
            evhttp_clear_headers(&q);
            return;
        }
    }
    if (!pol_revstore_valid_cursor(cursor)) {
        send_error(req, PC_E_INVALID_PARAMETER, "cursor must be a decimal number (start "
                   "with 0, then pass the cursor of the previous answer)");
        evhttp_clear_headers(&q);
        return;
    }
    pending_t *p = pending_new(a, req, "list", NULL, NULL, peer);
    if (!p)
        send_error(req, PC_E_OUT_OF_MEMORY, NULL);
    else if (pol_revstore_list(a->store, cursor, (unsigned)count, on_list_done, p, &err) < 0) {
        send_error(req, store_refused(PC_E_INVALID_PARAMETER, err), err);
        pending_free(p);
    }
    evhttp_clear_headers(&q);
}

static json_t *runtime_json(gw_proc_t *p)
{
    gw_reload_stats_t st;
    gw_proc_reload_stats(p, &st);
    json_t *last = json_null();
    if (st.have_last) {
        char at[32];
        struct tm tm;
        gmtime_r(&st.last_at, &tm);
        strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
        last = json_pack("{s:b, s:s, s:f}", "ok", st.last_ok, "at", at, "build_ms", st.last_build_ms);
    }
    return last ? json_pack("{s:I, s:I, s:I, s:I, s:o}", "generation", (json_int_t)st.generation,
                            "generations_live", (json_int_t)st.live, "reloads", (json_int_t)st.reloads,
                            "reload_failures", (json_int_t)st.reload_failures, "last_reload", last)
                : NULL;
}

static void handle_health(gw_admin_t *a, struct evhttp_request *req)
{
    json_t *rev = json_null();
    if (a->mirror) {
        pol_mirror_status_t st;
        memset(&st, 0, sizeof st);
        pol_mirror_status(a->mirror, &st);
        json_t *ex = json_array();
        for (size_t i = 0; ex && i < st.nexamples; i++)
            json_array_append_new(ex, json_pack("{s:s, s:s}", "entry", st.examples[i].entry,
                                                "problem", st.examples[i].problem));
        rev = ex ? json_pack("{s:I, s:I, s:s, s:b, s:f, s:I, s:f, s:I, s:o}", "entries",
                             (json_int_t)st.entries, "bytes", (json_int_t)st.bytes, "state",
                             st.state ? st.state : "unknown", "usable", st.usable,
                             "staleness_s", st.staleness_s, "last_sync_unix",
                             (json_int_t)st.last_sync_unix, "last_load_ms", st.last_load_ms,
                             "unusable_entries", (json_int_t)st.unusable, "unusable_examples",
                             ex) : NULL;
    }
    json_t *vc = json_null();
    tls_vcache_stats_t vs;
    gw_gen_t *g = gw_proc_current(a->proc);
    if (tls_ctx_vcache_stats(g->tls, &vs) == 0)
        vc = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "capacity", (json_int_t)vs.capacity,
                       "entries", (json_int_t)vs.entries, "hits", (json_int_t)vs.hits,
                       "misses", (json_int_t)vs.misses, "evictions", (json_int_t)vs.evictions,
                       "expired", (json_int_t)vs.expired);
    gw_gen_release(g);
    json_t *rt = runtime_json(a->proc);
    if (!rev || !vc || !rt) {
        json_decref(rev);
        json_decref(vc);
        json_decref(rt);
        send_json(req, 200, NULL);   /* out of memory: 503 out_of_memory */
        return;
    }
    send_json(req, 200, json_pack("{s:o, s:o, s:o}", "revocation", rev, "verify_cache", vc,
                                  "runtime", rt));
}

/* ---------------------------------------------------------------- reload */

static void on_reload_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    gw_admin_t *a = arg;
    a->reload_req = NULL;   /* the answer, when it comes, goes nowhere */
}

static void handle_reload(gw_admin_t *a, struct evhttp_request *req, const char *peer)
{
    if (!a->reload) {
        send_error(req, PC_E_RELOAD_UNAVAILABLE, "this gateway cannot reload");
        return;
    }
    if (a->reload_busy) {
        send_error(req, PC_E_RELOAD_IN_PROGRESS, "a reload is running; ask again when it answers");
        return;
    }
    char ctx[160];
    snprintf(ctx, sizeof ctx, "component=admin peer=%s action=reload", peer);
    pc_log_ev(PC_INFO, "reload_asked", ctx, "reload asked through the admin API");
    a->reload_busy = 1;
    a->reload_req = req;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_set_closecb(evcon, on_reload_conn_closed, a);
    a->reload(a->reload_arg);
}

void gw_admin_set_reload(gw_admin_t *a, gw_admin_reload_fn fn, void *arg)
{
    a->reload = fn;
    a->reload_arg = arg;
}

void gw_admin_reload_done(gw_admin_t *a, int status, const char *json)
{
    a->reload_busy = 0;
    struct evhttp_request *req = a->reload_req;
    a->reload_req = NULL;
    if (!req)
        return;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    json_error_t e;
    json_t *body = json ? json_loads(json, 0, &e) : NULL;
    send_json(req, status, body);   /* no body: out of memory */
}

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    send_error(req, PC_E_METHOD_NOT_ALLOWED, "method not allowed on this path");
}

/* 1 if the request carries the admin token. */
static int authorized(gw_admin_t *a, struct evhttp_request *req, int *given)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    *given = h != NULL;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    return n == a->toklen && CRYPTO_memcmp(h, a->token, n) == 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    gw_admin_t *a = arg;
    char peer[80];
    int given = 0;
    if (a->handed_over)   /* the client's next connection reaches the new process */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (gw_health_path(req)) {   /* probes carry no token */
        gw_health_serve(a->proc, req, gw_health_path(req) == 2);
        return;
    }
    peer_of(req, peer, sizeof peer);
    if (!authorized(a, req, &given)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          given ? "Bearer realm=\"portcullis-admin\", error=\"invalid_token\""
                                : "Bearer realm=\"portcullis-admin\"");
        send_error(req, given ? PC_E_INVALID_TOKEN : PC_E_MISSING_TOKEN,
                   given ? "invalid admin token" : "an admin bearer token is required");
        char ctx[160];
        snprintf(ctx, sizeof ctx, "component=admin peer=%s status=401", peer);
        pc_log_ev(PC_WARN, "admin_refused", ctx, "admin request refused: %s", given ? "invalid token" : "no token");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (!path) {
        send_error(req, PC_E_INVALID_REQUEST, "malformed request target");
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        if (m == EVHTTP_REQ_GET)
            gw_metrics_serve(a->proc, req);
        else
            method_not_allowed(req, "GET");
    } else if (strcmp(path, "/admin/health") == 0) {
        if (m == EVHTTP_REQ_GET)
            handle_health(a, req);
        else
            method_not_allowed(req, "GET");
    } else if (strcmp(path, "/admin/reload") == 0) {
        if (m == EVHTTP_REQ_POST)
            handle_reload(a, req, peer);
        else
            method_not_allowed(req, "POST");
    } else if (strcmp(path, PREFIX) == 0) {
        char entry[POL_REV_ENTRY_MAX];
        const char *reason, *device_id;
        json_t *doc;
        if (m == EVHTTP_REQ_GET) {
            handle_list(a, req, evhttp_uri_get_query(uri), peer);
        } else if (m == EVHTTP_REQ_POST || m == EVHTTP_REQ_DELETE) {
            int post = m == EVHTTP_REQ_POST;
            if (entry_from_body(a, req, post, entry, sizeof entry, &reason, &device_id,
                                &doc) == 0) {
                if (device_id)
                    start_device(a, req, device_id, reason, peer);
                else
                    start_write(a, req, post, entry, entry, post ? reason : NULL, peer);
                json_decref(doc);
            }
        } else {
            method_not_allowed(req, "GET, POST, DELETE");
        }
    } else if (strncmp(path, PREFIX "/", sizeof PREFIX) == 0 && path[sizeof PREFIX] &&
               !strchr(path + sizeof PREFIX, '/')) {
        if (m == EVHTTP_REQ_DELETE)
            handle_delete_path(a, req, path + sizeof PREFIX, peer);
        else
            method_not_allowed(req, "DELETE");
    } else {
        send_error(req, PC_E_NOT_FOUND, "no such admin endpoint (see docs/revocation.md and "
                   "docs/operations.md)");
    }
}

/* ---------------------------------------------------------------- lifecycle */

gw_admin_t *gw_admin_start(struct event_base *base, gw_proc_t *proc, char *err, size_t errlen)
{
    const cfg_t *cfg = gw_proc_boot(proc);
    const cfg_admin_t *ac = &cfg->admin;
    char why[256];
    const char *tok = gw_admin_token(ac, why, sizeof why);
    if (!tok) {
        snprintf(err, errlen, "admin listener not started: %s", why);
        return NULL;
    }
    gw_admin_t *a = calloc(1, sizeof *a);
    if (!a || !(a->token = strdup(tok))) {
        free(a);
        snprintf(err, errlen, "admin listener not started: out of memory");
        return NULL;
    }
    a->toklen = strlen(tok);
    a->base = base;
    a->proc = proc;
    a->cfg = cfg;
    a->mirror = gw_proc_mirror(proc);
    a->http = evhttp_new(base);
    a->store = pol_revstore_new(base, cfg);
    if (!a->http || !a->store) {
        snprintf(err, errlen, "admin listener not started: out of memory");
        gw_admin_free(a);
        return NULL;
    }
    if (!(a->bound = gw_http_listen(base, a->http, proc, GW_HTTP_ADMIN, &ac->listen, err, errlen))) {
        gw_admin_free(a);
        return NULL;
    }
    gw_http_setup(a->http, (ev_ssize_t)ac->max_body_bytes, 16384, 30, on_request, a);
    pc_log_ev(PC_INFO, "listening", "component=admin", "admin listener on %s (plain HTTP)", ac->listen.text);
    return a;
}

void gw_admin_takeover(gw_admin_t *a)
{
    if (a)
        gw_http_takeover(a->bound);
}

void gw_admin_handover(gw_admin_t *a)
{
    if (!a)
        return;
    a->handed_over = 1;
    gw_http_handover(a->http, &a->bound, a->proc, GW_HTTP_ADMIN);
}

void gw_admin_free(gw_admin_t *a)
{
    if (!a)
        return;
    if (a->bound) {
        gw_proc_set_http_fd(a->proc, GW_HTTP_ADMIN, -1);
        gw_http_forget(GW_HTTP_ADMIN);
    }
    pol_revstore_free(a->store);   /* drops callbacks: nothing touches the requests now */
    if (a->reload_req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(a->reload_req);
        if (evcon)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
    }
    while (a->pending)
        pending_free(a->pending);
    if (a->http)
        evhttp_free(a->http);      /* frees connections and their requests */
    if (a->token) {
        OPENSSL_cleanse(a->token, a->toklen);
        free(a->token);
    }
    free(a);
}
