"""Issue 11, the route gate: the issuance endpoints the gateway answers itself
go through the same gate as proxied requests (route match, classes, bearer
and JWT, local and global rate limits), and every global rate limit a route
lists is counted in Redis, not only the first eight."""

import json
import os

from harness import build_request, check, eq, test
from testkit import issuing_gateway, jwt_keys, mint_jwt, post_json, redis_cli, redis_keys

DB = 11            # a Redis database of its own: nonce and limit keys are counted exactly


def _redis(env, *args):
    return redis_cli(env.redis_port, *args, db=DB)


def _keys(env, pattern):
    return redis_keys(env.redis_port, pattern, db=DB)


def _issuance_gateway(env, name, route, limits=None, extra_routes=()):
    """A gateway issuing certificates, whose /certificates/ route is route
    (merged over a default that allows both classes without a bearer)."""
    cover = {"path": "/certificates/", "upstream": "echo",
             "allow_classes": ["bootstrap", "device"], "require_bearer": False}
    cover.update(route)
    return issuing_gateway(env, name, DB, list(extra_routes) + [
        cover, {"path": "/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": True}],
        limits)


def _challenge(c, bearer=None, host="localhost"):
    return post_json(c, "/certificates/challenge", host=host, bearer=bearer)


def _limited(r, name, what):
    eq(r.status, 429, what + ": status")
    eq(r.json().get("error"), "rate_limited", what + ": error code")
    ra = r.header("Retry-After")
    check(ra is not None and ra.isdigit() and int(ra) >= 1, what + ": Retry-After %r" % ra)
    check(('"%s"' % name) in (r.header("RateLimit-Policy") or ""),
          what + ": RateLimit-Policy %r" % r.header("RateLimit-Policy"))


def _limit_run(env, gw, name, scope):
    before = env.upstream_count()
    codes = []
    # two connections, so both workers serve challenges
    for _ in range(2):
        with env.connect(gw, "bootstrap") as c:
            for _ in range(3):
                r = _challenge(c)
                codes.append(r.status)
                if r.status == 200:
                    check(len(r.json().get("nonce", "")) == 43, "a nonce was returned")
                    check(("%s" % name) in (r.header("RateLimit-Policy") or ""),
                          "RateLimit-Policy on an allowed challenge (%s)" % scope)
                else:
                    last = r
    eq(codes.count(200), 3, "%s limit: challenges allowed (codes %s)" % (scope, codes))
    eq(codes.count(429), 3, "%s limit: challenges limited (codes %s)" % (scope, codes))
    _limited(last, name, "%s limit" % scope)
    eq(len(_keys(env, "portcullis:nonce:*")), 3,
       "%s limit: nonces in Redis (one per allowed challenge, none after the limit)" % scope)
    eq(env.upstream_count(), before, "%s limit: nothing reached the upstream" % scope)


@test("issuance gate: a local rate limit on the covering route limits challenges (429, no new nonce)")
def _(env):
    gw = _issuance_gateway(env, "gate-rl-local",
                           {"rate_limits": ["chal_ip"], "rate_limit_headers": True},
                           [{"name": "chal_ip", "key": "ip", "rate": "3/m", "burst": 3}])
    try:
        _limit_run(env, gw, "chal_ip", "local")
    finally:
        gw.stop()


@test("issuance gate: a global rate limit (Redis, async) on the covering route limits challenges")
def _(env):
    gw = _issuance_gateway(env, "gate-rl-global",
                           {"rate_limits": ["chal_fp"], "rate_limit_headers": True},
                           [{"name": "chal_fp", "key": "fingerprint", "rate": "3/m", "burst": 3,
                             "scope": "global", "on_redis_unavailable": "fail_closed"}])
    try:
        _limit_run(env, gw, "chal_fp", "global")
        eq(len(_keys(env, "portcullis:rl:chal_fp:*")), 1, "the limit was counted in Redis")
    finally:
        gw.stop()


@test("issuance gate: an issue request's body reaches its handler after an async (global) limit")
def _(env):
    gw = _issuance_gateway(env, "gate-rl-body", {"rate_limits": ["iss_route"]},
                           [{"name": "iss_route", "key": "route", "rate": "100/m",
                             "scope": "global"}])
    try:
        with env.connect(gw, "bootstrap") as c:
            r = _challenge(c)
            eq(r.status, 200, "challenge")
            nonce = r.json()["nonce"]
            body = json.dumps({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nx\n", "platform": "huawei",
                               "integrity_token": "t", "nonce": nonce}).encode()
            for chunked in (False, True):
                c.send(build_request("POST", "/certificates/issue", body=body, chunked=chunked,
                                     headers=[("Content-Type", "application/json")]))
                r = c.read_response()
                # the handler parsed the whole body (an empty or cut one is
                # bad_request) and got as far as the CSR check
                eq((r.status, r.json().get("error")), (400, "invalid_csr"),
                   "issue over the async gate (%s)" % ("chunked" if chunked else "length"))
            r = c.request("GET", "/certificates/challenge", bearer=None)
            eq(r.status, 200, "the connection still serves the next request")
            # pipelined: three challenges in one write, answered in order
            c.send(b"".join(build_request("POST", "/certificates/challenge", body=b"{}")
                            for _ in range(3)))
            got = [c.read_response() for _ in range(3)]
            eq([g.status for g in got], [200, 200, 200], "pipelined challenges")
            eq(len({g.json()["nonce"] for g in got}), 3, "three distinct nonces")
    finally:
        gw.stop()


@test("issuance gate: require_bearer on the covering route: a challenge without a token is 401")
def _(env):
    gw = _issuance_gateway(env, "gate-bearer", {"require_bearer": True})
    try:
        with env.connect(gw, "bootstrap") as c:
            r = _challenge(c)
            eq((r.status, r.json().get("error")), (401, "missing_token"), "no token")
            check((r.header("WWW-Authenticate") or "").startswith("Bearer"), "WWW-Authenticate")
            r = _challenge(c, bearer="not a token")
            eq((r.status, r.json().get("error")), (401, "invalid_token"), "malformed token")
        eq(_keys(env, "portcullis:nonce:*"), [], "no nonce was created for refused challenges")
        with env.connect(gw, "bootstrap") as c:
            # without jwt, require_bearer checks presence and syntax only
            r = _challenge(c, bearer="any-string-at-all")
            eq(r.status, 200, "a syntactically valid token (not validated without jwt)")
        eq(len(_keys(env, "portcullis:nonce:*")), 1, "one nonce")
    finally:
        gw.stop()


def _jwks(env):
    return jwt_keys(env, "gate-jwt")


def _mint(d):
    return mint_jwt(os.path.join(d, "es.pem"), aud="issuance", sub="app")


@test("issuance gate: jwt on the covering route: a challenge needs a valid JWT")
def _(env):
    d = _jwks(env)
    gw = _issuance_gateway(env, "gate-jwt", {
        "require_bearer": True,
        "jwt": {"jwks_file": os.path.join(d, "jwks.json"), "issuer": "https://issuer.example",
                "audience": "issuance"}})
    try:
        with env.connect(gw, "bootstrap") as c:
            r = _challenge(c, bearer="eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
            eq((r.status, r.json().get("error")), (401, "invalid_token"), "a forged JWT")
            check("invalid_token" in (r.header("WWW-Authenticate") or ""), "WWW-Authenticate")
        eq(_keys(env, "portcullis:nonce:*"), [], "no nonce for the refused challenge")
        with env.connect(gw, "bootstrap") as c:
            r = _challenge(c, bearer=_mint(d))
            eq(r.status, 200, "a valid JWT")
    finally:
        gw.stop()


@test("issuance gate: the covering route's classes are enforced (per Host), then the endpoint's")
def _(env):
    # Host issuance.example: bootstrap and device; any other Host: device only
    gw = _issuance_gateway(env, "gate-classes", {"allow_classes": ["device"]}, extra_routes=[
        {"path": "/certificates/", "host": "issuance.example", "upstream": "echo",
         "allow_classes": ["bootstrap", "device"], "require_bearer": False}])
    try:
        before = env.upstream_count()
        with env.connect(gw, "bootstrap") as c:
            r = _challenge(c, host="other.example")
            eq((r.status, r.json().get("error")), (403, "class_not_allowed"),
               "bootstrap refused by the route for other hosts")
            r = _challenge(c, host="issuance.example")
            eq(r.status, 200, "bootstrap allowed by the route for issuance.example")
            c.send(build_request("POST", "/certificates/renew", host="issuance.example", body=b"{}"))
            r = c.read_response()
            eq((r.status, r.json().get("error")), (403, "class_not_allowed"),
               "the route allows bootstrap, the renew endpoint does not")
        with env.connect(gw, "device") as c:
            r = _challenge(c, host="other.example")
            eq(r.status, 200, "device allowed by the route for other hosts")
        eq(len(_keys(env, "portcullis:nonce:*")), 2, "nonces only for allowed challenges")
        eq(env.upstream_count(), before, "nothing reached the upstream")
    finally:
        gw.stop()


@test("global rate limits: a route's 9th and later limits are counted in Redis, shared by gateways")
def _(env):
    # 10/h: a key lives in Redis until its TAT passes, 6 minutes here, so the
    # check below cannot race its expiry (with 1000/m it lived 60 ms)
    limits = [{"name": "g%d" % i, "key": "ip", "rate": "10/h", "scope": "global"}
              for i in range(1, 10)]
    limits.append({"name": "g10", "key": "ip", "rate": "2/m", "burst": 2, "scope": "global",
                   "on_redis_unavailable": "fail_closed"})
    cfg = env.config({"redis": {"db": DB}})
    cfg["rate_limits"] = limits
    cfg["routes"] = [{"path": "/", "upstream": "echo", "allow_classes": ["device"],
                      "require_bearer": True, "rate_limits": [l["name"] for l in limits]}]
    _redis(env, "FLUSHDB")
    a = env.start_gateway("gate-many-a", cfg)
    cfg_b = env.config({"redis": {"db": DB}})
    cfg_b["rate_limits"], cfg_b["routes"] = cfg["rate_limits"], cfg["routes"]
    b = env.start_gateway("gate-many-b", cfg_b)
    try:
        codes = []
        for gw in (a, b, a):
            with env.connect(gw, "device") as c:
                r = c.request("GET", "/many")
                codes.append(r.status)
        eq(codes, [200, 200, 429], "the 10th limit (2/m) is shared across both gateways")
        _limited(r, "g10", "10th limit")
        for i in range(1, 11):
            eq(len(_keys(env, "portcullis:rl:g%d:*" % i)), 1, "limit g%d counted in Redis" % i)
    finally:
        a.stop()
        b.stop()


@test("issuance gate: Expect: 100-continue on an issuance endpoint gets 100 Continue after the gate")
def _(env):
    gw = _issuance_gateway(env, "gate-continue", {})
    try:
        with env.connect(gw, "bootstrap") as c:
            head = build_request("POST", "/certificates/challenge", body=b"{}",
                                 headers=[("Expect", "100-continue")])[:-2]
            c.send(head)   # the head only: the body waits for the interim answer
            c._fill(3.0)
            check(bytes(c.buf).startswith(b"HTTP/1.1 100 Continue\r\n\r\n"),
                  "interim 100 Continue before the body (got %r)" % bytes(c.buf[:40]))
            c.send(b"{}")
            r = c.read_response()
            eq(r.status, 200, "challenge after 100 Continue")
    finally:
        gw.stop()
