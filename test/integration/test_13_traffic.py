"""Request, upstream and policy metrics (issue 13, part C2): a scripted mix
of traffic, then the exact counter deltas from GET /metrics on the admin
listener, parsed with the reference Prometheus text parser
(python3-prometheus-client)."""

import http.client
import os
import socket
import struct
import threading

from prometheus_client.parser import text_string_to_metric_families

from certs import Minter
from harness import REFUSAL_ERRORS, check, eq, fail, free_port, merge, test, wait_tcp
from testkit import (RedisServer, Verifier, cert_ctx, issuance_config, jwt_keys, mint_jwt,
                     post_json, redis_overrides, wait_until)

TOKEN = "metrics-admin-token-0123456789"


class Scrape:
    """One parsed exposition: value(sample, **labels) and the set of every
    label value seen."""

    def __init__(self, text):
        self.samples = {}
        self.label_values = set()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = (s.name, frozenset(s.labels.items()))
                if key in self.samples:
                    fail("sample %s%r exported twice" % (s.name, s.labels))
                self.samples[key] = s.value
                self.label_values.update(v for k, v in s.labels.items() if k != "le")

    def value(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name, **labels):
        """The sum over every series of name whose labels include labels."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


def scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        body = r.read().decode()
        eq(r.status, 200, "GET /metrics status")
        check(r.getheader("Content-Type", "").startswith("text/plain; version=0.0.4"),
              "Content-Type %r" % r.getheader("Content-Type"))
        return Scrape(body)
    finally:
        c.close()


class Delta:
    """Deltas between two scrapes: expect() collects every mismatch, done()
    fails with all of them."""

    def __init__(self, before, after):
        self.b, self.a = before, after
        self.bad = []

    def of(self, name, **labels):
        return self.a.value(name, **labels) - self.b.value(name, **labels)

    def total(self, name, **labels):
        return self.a.total(name, **labels) - self.b.total(name, **labels)

    def expect(self, want, name, **labels):
        got = self.of(name, **labels)
        if got != want:
            self.bad.append("%s%r: expected +%g, got +%g" % (name, labels, want, got))

    def expect_total(self, want, name, **labels):
        got = self.total(name, **labels)
        if got != want:
            self.bad.append("sum of %s%r: expected +%g, got +%g" % (name, labels, want, got))

    def done(self):
        if self.bad:
            fail("; ".join(self.bad))


class _BadUpstreams:
    """Two upstreams that fail in kinds of their own: `blackhole` listens with
    a full accept queue (a connect hangs: connect_timeout), `slammer` reads
    the request and resets the connection (no response: reset)."""

    def __init__(self):
        self.bh = socket.socket()
        self.bh.bind(("127.0.0.1", 0))
        self.bh.listen(0)
        self.filler = socket.create_connection(self.bh.getsockname())   # the queue's one place
        self.sl = socket.socket()
        self.sl.bind(("127.0.0.1", 0))
        self.sl.listen(16)
        self.stopping = False
        threading.Thread(target=self._slam, daemon=True).start()

    def _slam(self):
        while not self.stopping:
            try:
                c, _ = self.sl.accept()
            except OSError:
                return
            c.settimeout(5)
            try:
                c.recv(65536)   # the request has arrived: the connect was complete
            except OSError:
                pass
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()   # linger 0: a reset

    def upstreams(self):
        common = {"connect_timeout": "1s", "response_timeout": "5s", "fail_timeout": "1s",
                  "keepalive": 2, "keepalive_timeout": "10s"}
        return [dict(common, name="blackhole", servers=["127.0.0.1:%d" % self.bh.getsockname()[1]]),
                dict(common, name="slammer", servers=["127.0.0.1:%d" % self.sl.getsockname()[1]])]

    def close(self):
        self.stopping = True
        for s in (self.filler, self.bh, self.sl):
            s.close()


def _gateway(env, name, workers=1, extra_routes=(), extra=None, redis=None, extra_upstreams=()):
    """A gateway with named routes (no catch-all, so /nowhere is 404), an
    unreachable upstream and one that gives up after 1s, and the admin
    listener. Its admin port is gw.admin_port."""
    dead = "127.0.0.1:%d" % free_port()
    up = "127.0.0.1:%d" % env.upstream_port
    cfg = env.config(redis_overrides(redis.port) if redis else {})
    cfg = merge(cfg, extra or {})
    cfg["workers"] = workers
    cfg["upstreams"] = cfg["upstreams"] + [
        {"name": "dead", "servers": [dead], "connect_timeout": "1s", "response_timeout": "5s",
         "fail_timeout": "1s", "keepalive": 2, "keepalive_timeout": "10s"},
        {"name": "impatient", "servers": [up], "connect_timeout": "1s",
         "response_timeout": "1s", "fail_timeout": "1s", "keepalive": 2,
         "keepalive_timeout": "10s"},
    ] + list(extra_upstreams)
    cfg["routes"] = [
        {"name": "certs", "path": "/certificates/", "upstream": "echo",
         "allow_classes": ["bootstrap", "device"], "require_bearer": False},
        {"name": "api", "path": "/api/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": True},
        {"name": "other", "path": "/other/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False},
        {"name": "down", "path": "/down/", "upstream": "dead", "allow_classes": ["device"],
         "require_bearer": False},
        {"name": "slow", "path": "/slow/", "upstream": "impatient", "allow_classes": ["device"],
         "require_bearer": False},
    ] + list(extra_routes)
    admin_port = free_port()
    cfg["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
    gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    wait_tcp(admin_port, gw.proc, 10, "admin listener")
    gw.admin_port = admin_port
    return gw


def _no_identifying_labels(env, s, paths):
    """No label value anywhere is a device id, serial, fingerprint, client
    address or a request path the test sent."""
    bad = set(paths)
    for cert, cls in (("device", "device"), ("device2", "device"), ("bootstrap", "bootstrap")):
        ident = env.identity(cert, cls)
        bad.update(v for v in ident.values() if v and v not in ("device", "bootstrap"))
    for v in s.label_values:
        check(v not in bad, "label value %r identifies a client or a request" % v)
        check("127.0.0.1" not in v, "label value %r carries an address" % v)


def _refused(r, status, code, what):
    """r is the gateway's own error answer: status and catalog code."""
    eq((r.status, r.json().get("error")), (status, code), what)


@test("metrics: requests by route/class/status and upstream connections, failures and times, exact deltas")
def _(env):
    bad = _BadUpstreams()
    routes = [{"name": "hole", "path": "/hole/", "upstream": "blackhole", "allow_classes": ["device"],
               "require_bearer": False},
              {"name": "slam", "path": "/slam/", "upstream": "slammer", "allow_classes": ["device"],
               "require_bearer": False}]
    gw = _gateway(env, "mx-traffic", extra_routes=routes, extra_upstreams=bad.upstreams())
    try:
        before = scrape(gw.admin_port)
        up_before = env.upstream_count()
        paths = []

        def get(conn, path, **kw):
            paths.append(path.split("?")[0])
            return conn.request("GET", path, **kw)

        with env.connect(gw) as c:       # one connection: the upstream pool is reused
            for i in range(3):
                eq(get(c, "/api/good%d" % i).status, 200, "api request %d" % i)
            eq(get(c, "/other/x").status, 200, "other route")
            eq(get(c, "/api/slow?ms=300").status, 200, "slow upstream answer within its timeout")
        with env.connect(gw) as c:
            _refused(get(c, "/nowhere/at/all"), 404, "no_route", "no route")
        with env.connect(gw, "bootstrap") as c:
            _refused(get(c, "/api/forbidden"), 403, "class_not_allowed", "class not allowed")
        with env.connect(gw) as c:
            _refused(get(c, "/down/x"), 502, "upstream_unavailable", "upstream refuses connections")
        with env.connect(gw) as c:
            _refused(get(c, "/slow/slow?ms=2500"), 504, "upstream_timeout", "upstream response timeout")
        with env.connect(gw) as c:
            _refused(get(c, "/hole/x"), 502, "upstream_connect_timeout", "upstream connect timeout")
        with env.connect(gw) as c:
            _refused(get(c, "/slam/x"), 502, "bad_gateway", "upstream connection reset")
        with env.connect(gw) as c:
            _refused(get(c, "/other/emptyname"), 502, "bad_gateway", "upstream response head not relayable")
        eq(env.upstream_count() - up_before, 7, "requests that reached the echo upstream")

        after = scrape(gw.admin_port)
        d = Delta(before, after)
        R = "portcullis_http_requests_total"
        d.expect(4, R, route="api", **{"class": "device", "status": "2xx"})
        d.expect(1, R, route="other", **{"class": "device", "status": "2xx"})
        d.expect(1, R, route="_none", **{"class": "device", "status": "4xx"})
        d.expect(1, R, route="api", **{"class": "bootstrap", "status": "4xx"})
        d.expect(1, R, route="down", **{"class": "device", "status": "5xx"})
        d.expect(1, R, route="slow", **{"class": "device", "status": "5xx"})
        d.expect(1, R, route="hole", **{"class": "device", "status": "5xx"})
        d.expect(1, R, route="slam", **{"class": "device", "status": "5xx"})
        d.expect(1, R, route="other", **{"class": "device", "status": "5xx"})
        d.expect_total(12, R)
        # the duration histogram counts every answered request, by route
        for route, n in (("api", 5), ("other", 2), ("_none", 1), ("down", 1), ("slow", 1),
                         ("hole", 1), ("slam", 1)):
            d.expect(n, "portcullis_http_request_duration_seconds_count", route=route)
        d.expect_total(12, "portcullis_http_request_duration_seconds_count")
        # the 300 ms request (the 2.5 s one was cut at 1 s)
        H = "portcullis_http_request_duration_seconds_bucket"
        d.expect(4, H, route="api", le="0.25")
        d.expect(5, H, route="api", le="0.5")
        d.expect(0, H, route="slow", le="0.5")
        d.expect(1, H, route="slow", le="2.5")

        C = "portcullis_upstream_connections_total"
        d.expect(1, C, upstream="echo", kind="new")
        d.expect(5, C, upstream="echo", kind="reused")   # the last one brought the bad head
        d.expect(1, C, upstream="impatient", kind="new")
        d.expect(0, C, upstream="impatient", kind="reused")
        d.expect_total(0, C, upstream="dead")
        d.expect_total(0, C, upstream="blackhole")
        d.expect(1, C, upstream="slammer", kind="new")
        F = "portcullis_upstream_failures_total"
        d.expect(1, F, upstream="dead", code="connect_refused")
        d.expect(1, F, upstream="impatient", code="response_timeout")
        d.expect(1, F, upstream="blackhole", code="connect_timeout")
        d.expect(1, F, upstream="slammer", code="reset")
        d.expect(1, F, upstream="echo", code="bad_response")
        d.expect_total(5, F)
        E = "portcullis_http_errors_total"
        for code, n in (("upstream_unavailable", 1), ("upstream_timeout", 1),
                        ("upstream_connect_timeout", 1), ("bad_gateway", 2), ("no_route", 1),
                        ("class_not_allowed", 1)):
            d.expect(n, E, code=code)
        d.expect_total(7, E)
        T = "portcullis_upstream_response_duration_seconds"
        d.expect(5, T + "_count", upstream="echo")
        d.expect(4, T + "_bucket", upstream="echo", le="0.25")
        d.expect(5, T + "_bucket", upstream="echo", le="0.5")
        d.expect(0, T + "_count", upstream="impatient")
        d.expect(0, T + "_count", upstream="dead")
        d.done()
        s_sum = d.of(T + "_sum", upstream="echo")
        check(0.3 <= s_sum < 1.0, "upstream time sum %.3f s for four quick answers and a 300 ms one" % s_sum)
        _no_identifying_labels(env, after, paths)
    finally:
        gw.stop()
        bad.close()


@test("metrics: request counters from every worker are summed at scrape time")
def _(env):
    gw = _gateway(env, "mx-workers", workers=2)
    try:
        before = scrape(gw.admin_port)
        n = 12
        for i in range(n):   # a connection each: the kernel spreads them over the workers
            with env.connect(gw) as c:
                eq(c.request("GET", "/other/w%d" % i).status, 200, "request %d" % i)
        d = Delta(before, scrape(gw.admin_port))
        d.expect(n, "portcullis_http_requests_total", route="other",
                 **{"class": "device", "status": "2xx"})
        d.expect(n, "portcullis_http_request_duration_seconds_count", route="other")
        d.expect_total(n, "portcullis_upstream_connections_total", upstream="echo")
        d.expect(n, "portcullis_upstream_response_duration_seconds_count", upstream="echo")
        d.done()
    finally:
        gw.stop()


def _jwt(env, **kw):
    d = jwt_keys(env, "jwt", ("es", "other"))
    key = kw.pop("key", "es.pem")
    return mint_jwt(os.path.join(d, key), **kw)


def _policy_gateway(env, name, redis):
    d = jwt_keys(env, "jwt", ("es", "other"))
    routes = [
        {"name": "jwt", "path": "/jwt/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": True,
         "jwt": {"jwks_file": os.path.join(d, "jwks.json"), "issuer": "https://issuer.example",
                 "audience": "api", "leeway": "5s"}},
        {"name": "limited", "path": "/limited/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False, "rate_limits": ["local_dev"]},
        {"name": "glimited", "path": "/glimited/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False, "rate_limits": ["global_dev"]},
        {"name": "gclosed", "path": "/gclosed/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False, "rate_limits": ["global_closed"]},
    ]
    extra = {"rate_limits": [
        {"name": "local_dev", "key": "device_id", "rate": "2/m", "burst": 2},
        {"name": "global_dev", "key": "device_id", "rate": "2/m", "burst": 2, "scope": "global",
         "on_redis_unavailable": "fail_open"},
        {"name": "global_closed", "key": "device_id", "rate": "2/m", "burst": 2, "scope": "global",
         "on_redis_unavailable": "fail_closed"},
    ]}
    return _gateway(env, name, extra_routes=routes, extra=extra, redis=redis)


@test("metrics: bearer and JWT refusals by reason, rate-limit decisions, local fallbacks and Redis errors")
def _(env):
    redis = RedisServer(env, "mx-policy-redis").start()
    gw = _policy_gateway(env, "mx-policy", redis)
    try:
        before = scrape(gw.admin_port)
        up_before = env.upstream_count()
        with env.connect(gw) as c:
            for what, hdrs in (("missing", []), ("not_bearer", [("Authorization", "Basic dXNlcg==")]),
                               ("multiple", [("Authorization", "Bearer abc"),
                                             ("Authorization", "Bearer def")]),
                               ("empty", [("Authorization", "Bearer ")]),
                               ("malformed", [("Authorization", "Bearer a,b")])):
                r = c.request("GET", "/api/t", headers=hdrs, bearer=None)
                eq(r.status, 400 if what == "multiple" else 401, "bearer " + what)
            for what, tok in (("expired", _jwt(env, exp_in=-60)),
                              ("signature", _jwt(env, key="other.pem")),
                              ("audience", _jwt(env, aud="other")),
                              ("issuer", _jwt(env, iss="https://evil.example")),
                              ("malformed", "abc.def.ghi")):
                r = c.request("GET", "/jwt/t", bearer=tok)
                eq(r.status, 401, "JWT " + what)
                eq(r.json().get("error"), "invalid_token", "JWT %s: error code" % what)
            eq(c.request("GET", "/jwt/t", bearer=_jwt(env)).status, 200, "valid JWT")
            codes = [c.request("GET", "/limited/t").status for _ in range(3)]
            eq(codes, [200, 200, 429], "local limit, burst 2")
            codes = [c.request("GET", "/glimited/t").status for _ in range(3)]
            eq(codes, [200, 200, 429], "global limit, burst 2")
        eq(env.upstream_count() - up_before, 5, "requests that reached the upstream")
        mid = scrape(gw.admin_port)
        d = Delta(before, mid)
        A = "portcullis_auth_refusals_total"
        for reason, n in (("missing", 2), ("not_bearer", 1), ("multiple", 1), ("malformed", 2),
                          ("expired", 1), ("signature", 1), ("audience", 1), ("issuer", 1)):
            d.expect(n, A, reason=reason)
        d.expect_total(10, A)
        D = "portcullis_ratelimit_decisions_total"
        d.expect(2, D, limit="local_dev", result="allowed")
        d.expect(1, D, limit="local_dev", result="limited")
        d.expect(2, D, limit="global_dev", result="allowed")
        d.expect(1, D, limit="global_dev", result="limited")
        d.expect_total(0, D, limit="global_closed")
        d.expect_total(0, "portcullis_ratelimit_local_fallbacks_total")
        d.expect(0, "portcullis_ratelimit_redis_errors_total")
        R = "portcullis_http_requests_total"
        d.expect(5, R, route="api", **{"class": "device", "status": "4xx"})
        d.expect(5, R, route="jwt", **{"class": "device", "status": "4xx"})
        d.expect(1, R, route="jwt", **{"class": "device", "status": "2xx"})
        d.expect(1, R, route="limited", **{"class": "device", "status": "4xx"})
        d.expect(1, R, route="glimited", **{"class": "device", "status": "4xx"})
        d.done()

        # Redis refuses the limit script (out of memory, script cache empty;
        # keys it has not seen, so the script must write): fail_open decides
        # locally, fail_closed answers 503
        redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis.cli("CONFIG", "SET", "maxmemory", "1")
        redis.cli("SCRIPT", "FLUSH")
        with env.connect(gw, "device2") as c:
            eq(c.request("GET", "/glimited/t").status, 200, "fail_open: the local limiter allows")
        with env.connect(gw) as c:
            eq(c.request("GET", "/gclosed/t").status, 503, "fail_closed")
        d = Delta(mid, scrape(gw.admin_port))
        d.expect(2, "portcullis_ratelimit_redis_errors_total")
        d.expect(1, "portcullis_ratelimit_local_fallbacks_total", limit="global_dev")
        d.expect(0, "portcullis_ratelimit_local_fallbacks_total", limit="global_closed")
        d.expect(1, D, limit="global_dev", result="allowed")
        d.expect_total(1, D)
        d.expect(1, R, route="gclosed", **{"class": "device", "status": "5xx"})
        d.done()
        _no_identifying_labels(env, scrape(gw.admin_port), ["/api/t", "/jwt/t", "/limited/t",
                                                            "/glimited/t", "/gclosed/t"])
    finally:
        gw.stop()
        redis.stop()


def _post(env, gw, cert, path, body, ctx=None):
    with env.connect(gw, cert, ctx=ctx) as c:
        return post_json(c, path, body)


_csr_seq = [0]


def _csr(env):
    """A new key and CSR: (key path, CSR PEM)."""
    _csr_seq[0] += 1
    return Minter(env, "mx-issuance").csr_pem("k%d" % _csr_seq[0], "/CN=x")


def _issue(env, gw, nonce, platform, token):
    """POST issue as the bootstrap certificate: (response, the CSR's key)."""
    key, csr = _csr(env)
    r = _post(env, gw, "bootstrap", "/certificates/issue",
              {"csr": csr, "platform": platform, "integrity_token": token, "nonce": nonce})
    return r, key


@test("metrics: issuance challenges, certificates and refusals by platform/provider/code; Redis reconnects")
def _(env):
    redis = RedisServer(env, "mx-iss-redis").start()
    v = Verifier()
    iss = issuance_config(env, {"huawei": v.platform(), "feature_phone": {"provider": "refuse"}})
    gw = _gateway(env, "mx-iss", extra={"issuance": iss}, redis=redis)
    try:
        before = scrape(gw.admin_port)

        def challenge():
            r = _post(env, gw, "bootstrap", "/certificates/challenge", {})
            eq(r.status, 200, "challenge (%s)" % r.body[:200])
            return r.json()["nonce"]

        n1 = challenge()
        r, key = _issue(env, gw, n1, "huawei", "allow-1")
        eq(r.status, 201, "issued (%s)" % r.body[:200])
        out = r.json()
        refusals = []   # (platform, provider, the response's error code)

        def refused(r, plat, prov, status, code, what):
            refusals.append((plat, prov, r.json().get("error")))
            eq((r.status, refusals[-1][2]), (status, code), what)

        refused(_issue(env, gw, n1, "huawei", "allow-2")[0], "huawei", "http", 403, "nonce_invalid",
                "replayed nonce")
        refused(_issue(env, gw, challenge(), "huawei", "deny-me")[0], "huawei", "http", 403,
                "attestation_failed", "the verifier says no")
        refused(_issue(env, gw, challenge(), "feature_phone", "x")[0], "feature_phone", "refuse", 403,
                "platform_refused", "a refused platform")
        refused(_issue(env, gw, "n" * 43, "nokia9000", "x")[0], "_none", "none", 403,
                "platform_refused", "an unknown platform")
        with env.connect(gw, "bootstrap") as c:
            refused(post_json(c, "/certificates/issue", b"{not json"), "_none", "none", 400,
                    "bad_request", "malformed JSON")
        # renewal without attestation, with the issued certificate
        crt = os.path.join(env.tmp, "mx-issuance", "issued.crt")
        with open(crt, "w") as f:
            f.write(out["certificate_chain"])
        _, csr2 = Minter(env, "mx-issuance").csr_pem("renew", "/CN=x", key=key)   # its own key
        r = _post(env, gw, None, "/certificates/renew", {"csr": csr2}, ctx=cert_ctx(env, crt, key))
        eq(r.status, 200, "renewed (%s)" % r.body[:200])
        renewed = r.json()

        mid = scrape(gw.admin_port)
        d = Delta(before, mid)
        d.expect(3, "portcullis_issuance_challenges_total")
        C = "portcullis_issuance_certificates_total"
        d.expect(1, C, platform="huawei", provider="http", kind="issued")
        d.expect(1, C, platform="_none", provider="none", kind="renewed")
        d.expect_total(2, C)
        catalog = {dict(ls)["code"] for (n, ls) in mid.samples if n == "portcullis_http_errors_total"}
        check("internal" in catalog, "the error catalog's codes are not exported: %r" % catalog)
        F = "portcullis_issuance_refusals_total"
        # (a code the catalog does not list counts as internal)
        want = [(p, v, c if c in catalog else "internal") for p, v, c in refusals]
        for plat, prov, code in set(want):
            d.expect(want.count((plat, prov, code)), F, platform=plat, provider=prov, code=code)
        d.expect_total(len(refusals), F)
        R = "portcullis_http_requests_total"
        d.expect(4, R, route="certs", **{"class": "bootstrap", "status": "2xx"})
        d.expect(5, R, route="certs", **{"class": "bootstrap", "status": "4xx"})
        d.expect(1, R, route="certs", **{"class": "device", "status": "2xx"})
        d.expect_total(0, "portcullis_redis_reconnects_total")
        d.done()
        _no_identifying_labels(env, mid, [out["device_id"], out["serial"], renewed["serial"], n1,
                                          "/certificates/issue", "/certificates/challenge",
                                          "/certificates/renew", "nokia9000"])

        # Redis restarts: the revocation sync and the worker's connection
        # (nonces, global limits) each reconnect once
        redis.stop()
        redis = RedisServer(env, "mx-iss-redis", port=redis.port, rdb_dir=redis.dir).start()
        X = "portcullis_redis_reconnects_total"
        check(wait_until(lambda: scrape(gw.admin_port).value(X, client="revocation") == 1, 15),
              "the revocation sync did not reconnect")

        def served():   # handshakes wait for the mirror to be loaded again
            try:
                return _post(env, gw, "bootstrap", "/certificates/challenge", {}).status == 200
            except REFUSAL_ERRORS:
                return False
        check(wait_until(served, 10), "no challenge after Redis came back")
        eq(challenge() is not None, True, "another challenge")
        d = Delta(mid, scrape(gw.admin_port))
        d.expect(1, X, client="revocation")
        d.expect(1, X, client="worker")
        d.expect(2, "portcullis_issuance_challenges_total")
        d.done()
    finally:
        gw.stop()
        v.stop()
        redis.stop()
