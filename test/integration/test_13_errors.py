"""Issue 13, the error catalog (base/errors.def, docs/errors.md): every JSON
error the gateway answers itself is one catalog entry, with the code and
status docs/errors.md gives it; one condition has one code everywhere; and
each error on the client listener is counted once in
portcullis_http_errors_total{code}, the admin API's not at all."""

import http.client
import json
import os
import re

from prometheus_client.parser import text_string_to_metric_families

from harness import build_request, check, check_json_error, eq, free_port, test, wait_tcp

TOKEN = "errors-admin-token-0123456789"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAMILY = "portcullis_http_errors"   # the parser names counters without _total


def _doc_statuses():
    """{code: status} from the tables of docs/errors.md (a code listed on
    several surfaces has one status)."""
    rows = {}
    with open(os.path.join(ROOT, "docs", "errors.md")) as f:
        for line in f:
            m = re.match(r"\| `([a-z_]+)` \| (\d{3}) \|", line)
            if m:
                rows.setdefault(m.group(1), set()).add(int(m.group(2)))
    for code, statuses in rows.items():
        check(len(statuses) == 1, "docs/errors.md gives %s several statuses: %r" % (code, statuses))
    return {code: statuses.pop() for code, statuses in rows.items()}


DOC = None


def _documented(code, status, what):
    global DOC
    if DOC is None:
        DOC = _doc_statuses()
    check(code in DOC, "%s: code %r is not in docs/errors.md" % (what, code))
    eq(status, DOC[code], "%s: status of %s (docs/errors.md)" % (what, code))


def _gateway(env, name):
    """A gateway with an admin listener; no route covers /nope, /down/ goes
    to a port nobody listens on, bodies over 1k are refused."""
    admin_port = free_port()
    cfg = env.config({
        "admin": {"listen": "127.0.0.1:%d" % admin_port},
        "limits": {"max_body_bytes": "1k"},
    })
    cfg["upstreams"] = cfg["upstreams"] + [
        {"name": "dead", "servers": ["127.0.0.1:%d" % free_port()], "connect_timeout": "1s",
         "response_timeout": "5s", "fail_timeout": "1s", "keepalive": 2,
         "keepalive_timeout": "10s"}]
    cfg["routes"] = [
        {"path": "/api/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": True},
        {"path": "/open/", "upstream": "echo", "allow_classes": ["device", "bootstrap"],
         "require_bearer": False},
        {"path": "/down/", "upstream": "dead", "allow_classes": ["device"], "require_bearer": False},
    ]
    gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    wait_tcp(admin_port, gw.proc, 10, "admin listener")
    return gw, admin_port


def _admin(port, method, path, token=TOKEN):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers={"Authorization": "Bearer " + token} if token else {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def _error_counts(port):
    """{code: value} of portcullis_http_errors_total, parsed with the
    reference Prometheus text parser."""
    status, headers, body = _admin(port, "GET", "/metrics")
    eq(status, 200, "GET /metrics")
    counts = {}
    for fam in text_string_to_metric_families(body.decode("utf-8")):
        if fam.name == FAMILY:
            for s in fam.samples:
                if s.name == FAMILY + "_total":
                    counts[s.labels["code"]] = s.value
    check(counts, "no %s_total series in the scrape" % FAMILY)
    return counts


def _raw(env, gw, data, cert="device"):
    with env.connect(gw, cert) as c:
        c.send(data)
        return c.read_response()


@test("errors: each refusal is its catalog entry (code and status as docs/errors.md), "
      "counted once in portcullis_http_errors_total; the admin API's are not counted", timeout=60)
def _(env):
    gw, admin = _gateway(env, "errors-catalog")
    try:
        before = _error_counts(admin)
        sent = env.upstream_count()
        cases = [
            ("no route", "no_route", 404,
             lambda: _raw(env, gw, build_request("GET", "/nope", bearer=env.bearer))),
            ("class a route does not take", "class_not_allowed", 403,
             lambda: _raw(env, gw, build_request("GET", "/api/x", bearer=env.bearer), "bootstrap")),
            ("no token", "missing_token", 401,
             lambda: _raw(env, gw, build_request("GET", "/api/x"))),
            ("two Authorization headers", "invalid_request", 400,
             lambda: _raw(env, gw, build_request("GET", "/api/x", bearer=env.bearer,
                                                 headers=[("Authorization", "Bearer other")]))),
            ("body over max_body_bytes", "payload_too_large", 413,
             lambda: _raw(env, gw, build_request("POST", "/open/x", body=b"x" * 2048))),
            ("TRACE", "method_not_allowed", 405,
             lambda: _raw(env, gw, build_request("TRACE", "/open/x"))),
            ("not HTTP", "bad_request", 400,
             lambda: _raw(env, gw, b"HELLO\r\n\r\n")),
        ]
        want = {}
        for what, code, status, run in cases:
            resp = run()
            body = check_json_error(resp, status, what)
            eq(body["error"], code, what + ": error code")
            _documented(code, resp.status, what)
            eq(resp.header("X-Request-Id"), body["request_id"], what + ": X-Request-Id")
            want[code] = want.get(code, 0) + 1
        eq(env.upstream_count(), sent, "requests that reached the upstream")
        # the upstream down: answered by the gateway, counted as its code
        resp = _raw(env, gw, build_request("GET", "/down/x"))
        body = check_json_error(resp, 502, "upstream down")
        eq(body["error"], "upstream_unavailable", "upstream down: error code")
        _documented("upstream_unavailable", 502, "upstream down")
        want["upstream_unavailable"] = 1
        # the admin API's own errors are not client errors
        status, _, _ = _admin(admin, "GET", "/admin/health", token=None)
        eq(status, 401, "admin without a token")
        status, _, _ = _admin(admin, "GET", "/admin/nope")
        eq(status, 404, "admin: unknown endpoint")
        after = _error_counts(admin)
        eq(sorted(after), sorted(before), "the code label values")
        deltas = dict((code, after[code] - before[code]) for code in after
                      if after[code] != before[code])
        eq(deltas, want, "portcullis_http_errors_total deltas")
        for code in after:
            check(code in DOC, "the metric's code %r is not in docs/errors.md" % code)
        for code in ("not_found", "reload_failed", "invalid_entry", "redis_unavailable"):
            check(code not in after, "the admin API's %s is a label value of %s_total" % (code, FAMILY))
        check("class_not_allowed" in after and "out_of_memory" in after,
              "client codes are exported before they happen")
    finally:
        gw.stop()


@test("errors: two Authorization headers: 400 invalid_request with the RFC 6750 challenge, "
      "nothing forwarded")
def _(env):
    gw, _admin_port = _gateway(env, "errors-authz")
    try:
        sent = env.upstream_count()
        resp = _raw(env, gw, build_request("GET", "/api/x", bearer=env.bearer,
                                           headers=[("Authorization", "Bearer " + env.bearer)]))
        body = check_json_error(resp, 400, "two Authorization headers")
        eq(body["error"], "invalid_request", "error code")
        eq(body["message"], "more than one Authorization header", "message")
        eq(resp.header("WWW-Authenticate"), 'Bearer realm="portcullis", error="invalid_request"',
           "WWW-Authenticate")
        eq(env.upstream_count(), sent, "requests that reached the upstream")
        # with one header the same request is served
        with env.connect(gw) as c:
            r = c.request("GET", "/api/x")
            eq(r.status, 200, "one Authorization header")
    finally:
        gw.stop()


@test("errors: the admin API refuses no token with missing_token and a wrong one with "
      "invalid_token (401, as the client listener does), an unknown path with not_found")
def _(env):
    gw, admin = _gateway(env, "errors-admin")
    try:
        for token, code, challenge in (
                (None, "missing_token", 'Bearer realm="portcullis-admin"'),
                ("wrong-" + TOKEN, "invalid_token",
                 'Bearer realm="portcullis-admin", error="invalid_token"')):
            status, headers, payload = _admin(admin, "GET", "/admin/health", token=token)
            doc = json.loads(payload.decode())
            eq((status, doc.get("error")), (401, code), "admin token %r" % token)
            _documented(code, status, "admin token %r" % token)
            eq(headers.get("www-authenticate"), challenge, "WWW-Authenticate")
        status, headers, payload = _admin(admin, "GET", "/admin/nope")
        eq((status, json.loads(payload.decode()).get("error")), (404, "not_found"), "unknown path")
        status, headers, payload = _admin(admin, "PUT", "/admin/health")
        eq((status, json.loads(payload.decode()).get("error")), (405, "method_not_allowed"),
           "PUT /admin/health")
        _documented("method_not_allowed", status, "PUT /admin/health")
        eq(headers.get("allow"), "GET", "Allow")
    finally:
        gw.stop()
