"""Request policy: JWT validation and certificate binding, rate limits (local
and global), and per-IP connection limits, against the real binary."""

import os
import socket
import ssl
import subprocess
import threading
import time

from harness import (H_SERIAL, build_request, check, eq, free_port, test, upstream_headers,
                     upstream_info)
from testkit import jwt_keys, mint_jwt

def _keys(env):
    """An EC P-256 signing key (es.pem), another (other.pem) and the JWKS of
    the first, made once per run."""
    return jwt_keys(env, "jwt", ("es", "other"))


def _mint(env, key="es.pem", x5t_of=None, **kw):
    args = ["--x5t-s256-of", env.pki(x5t_of + ".crt")] if x5t_of else []
    return mint_jwt(os.path.join(env.tmp, "jwt", key), *args, **kw)


def _jwt_gateway(env, name, bind=False):
    d = _keys(env)
    route = {"path": "/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": True,
             "jwt": {"jwks_file": os.path.join(d, "jwks.json"), "issuer": "https://issuer.example",
                     "audience": "api", "leeway": "5s", "bind_to_certificate": bind,
                     "claims_to_headers": {"sub": "X-Token-Subject"}}}
    cfg = env.config()
    cfg["routes"] = [route]
    return env.start_gateway(name, cfg)


def _get(env, gw, token, cert="device", headers=(), session=None, ctx=None):
    with env.connect(gw, cert, session=session, ctx=ctx) as c:
        c.send(build_request("GET", "/jwt", headers=[("Authorization", "Bearer " + token)] + list(headers),
                             bearer=None))
        resp = c.read_response()
        return resp, c.session


@test("JWT: valid token accepted, sub injected, client-sent copy stripped")
def _(env):
    gw = _jwt_gateway(env, "jwt")
    try:
        resp, _ = _get(env, gw, _mint(env), headers=[("X-Token-Subject", "admin")])
        eq(resp.status, 200, "status")
        eq(upstream_headers(upstream_info(resp), "X-Token-Subject"), ["user-42"], "X-Token-Subject")
    finally:
        gw.stop()


@test("JWT: expired, wrong signature, wrong audience, wrong issuer, garbage: 401 invalid_token")
def _(env):
    gw = _jwt_gateway(env, "jwt-bad")
    try:
        cases = {
            "expired": _mint(env, exp_in=-60),
            "wrong signature": _mint(env, key="other.pem"),
            "wrong audience": _mint(env, aud="other"),
            "wrong issuer": _mint(env, iss="https://evil.example"),
            "garbage": "abc.def.ghi",
        }
        before = env.upstream_count()
        for what, tok in cases.items():
            resp, _ = _get(env, gw, tok)
            eq(resp.status, 401, what)
            www = resp.header("WWW-Authenticate") or ""
            check('error="invalid_token"' in www and "error_description=" in www,
                  "%s: WWW-Authenticate %r" % (what, www))
            eq(resp.json().get("error"), "invalid_token", what + " error code")
        eq(env.upstream_count(), before, "requests that reached the upstream")
    finally:
        gw.stop()


@test("JWT bound to the certificate (RFC 8705): right cert accepted, other device cert refused, also resumed")
def _(env):
    gw = _jwt_gateway(env, "jwt-bound", bind=True)
    try:
        tok = _mint(env, x5t_of="device")
        ctx = env.client_context("device")
        resp, sess = _get(env, gw, tok, ctx=ctx)
        eq(resp.status, 200, "bound token with its certificate")
        with env.connect(gw, ctx=ctx, session=sess) as c:
            check(c.session_reused, "second connection did not resume")
            c.send(build_request("GET", "/jwt", headers=[("Authorization", "Bearer " + tok)], bearer=None))
            eq(c.read_response().status, 200, "bound token on a resumed session")
        resp, _ = _get(env, gw, tok, cert="device2")
        eq(resp.status, 401, "bound token presented with another device's certificate")
        resp, _ = _get(env, gw, _mint(env))
        eq(resp.status, 401, "unbound token where binding is required")
    finally:
        gw.stop()


def _limit_gateway(env, name, limits, route_limits, headers=False, extra=None):
    cfg = env.config(extra or {})
    cfg["rate_limits"] = limits
    cfg["routes"] = [{"path": "/", "upstream": "echo", "allow_classes": ["device"],
                      "require_bearer": True, "rate_limits": route_limits,
                      "rate_limit_headers": headers}]
    return env.start_gateway(name, cfg)


def _burst(env, gw, n, cert="device"):
    codes = []
    with env.connect(gw, cert) as c:
        for _ in range(n):
            r = c.request("GET", "/rl")
            codes.append(r.status)
            last = r
            if r.header("Connection") == "close":
                break
    return codes, last


@test("local rate limit per device: exact across workers, 429 with Retry-After and RateLimit headers")
def _(env):
    gw = _limit_gateway(env, "rl-local", [{"name": "per_device", "key": "device_id", "rate": "5/m",
                                            "burst": 5}], ["per_device"], headers=True)
    try:
        codes = []
        # several connections, so both workers see requests
        for _ in range(4):
            cs, last = _burst(env, gw, 2)
            codes += cs
        eq(codes.count(200), 5, "allowed requests (codes %s)" % codes)
        eq(codes.count(429), 3, "limited requests")
        eq(last.status, 429, "last status")
        check(last.header("Retry-After") and int(last.header("Retry-After")) >= 1, "Retry-After")
        check("per_device" in (last.header("RateLimit-Policy") or ""), "RateLimit-Policy")
        check((last.header("RateLimit") or "").find("r=0") >= 0, "RateLimit remaining 0")
        eq(last.json().get("error"), "rate_limited", "error code")
        cs, _ = _burst(env, gw, 1, cert="device2")
        eq(cs, [200], "another device has its own quota")
    finally:
        gw.stop()


@test("allowed responses carry RateLimit headers when configured")
def _(env):
    gw = _limit_gateway(env, "rl-hdrs", [{"name": "per_ip", "key": "ip", "rate": "100/s"}],
                        ["per_ip"], headers=True)
    try:
        with env.connect(gw, "device") as c:
            r = c.request("GET", "/rl")
        eq(r.status, 200, "status")
        check("per_ip" in (r.header("RateLimit-Policy") or ""), "RateLimit-Policy on 200")
        check(r.header("RateLimit"), "RateLimit on 200")
    finally:
        gw.stop()


@test("global rate limit shared by two gateways on one Redis")
def _(env):
    lim = [{"name": "global_dev", "key": "device_id", "rate": "6/m", "burst": 6, "scope": "global"}]
    a = _limit_gateway(env, "rl-global-a", lim, ["global_dev"])
    b = _limit_gateway(env, "rl-global-b", lim, ["global_dev"])
    try:
        subprocess.run(["redis-cli", "-p", str(env.redis_port), "FLUSHDB"], capture_output=True)
        codes = []
        for gw in (a, b, a, b):
            cs, _ = _burst(env, gw, 2)
            codes += cs
        eq(codes.count(200), 6, "allowed across both gateways (codes %s)" % codes)
        eq(codes.count(429), 2, "limited across both gateways")
    finally:
        a.stop()
        b.stop()


@test("global rate limit with Redis down: fail_open uses the local limiter, fail_closed answers 503")
def _(env):
    dead = free_port()   # nothing listens there
    extra = {"redis": {"address": "127.0.0.1:%d" % dead, "connect_timeout": "200ms",
                       "command_timeout": "200ms"},
             "revocation": {"on_redis_unavailable": "serve_stale"}}
    # the revocation mirror cannot load either: that gateway refuses handshakes
    # (fail closed by design), so Redis outage for limits is tested with a
    # Redis that is up for the mirror and a limit script that cannot run.
    gw = _limit_gateway(env, "rl-open", [
        {"name": "g_open", "key": "ip", "rate": "3/m", "burst": 3, "scope": "global",
         "on_redis_unavailable": "fail_open"}], ["g_open"])
    gw2 = _limit_gateway(env, "rl-closed", [
        {"name": "g_closed", "key": "ip", "rate": "3/m", "burst": 3, "scope": "global",
         "on_redis_unavailable": "fail_closed"}], ["g_closed"])
    try:
        # make Redis refuse scripts: the limit store is "unavailable"
        subprocess.run(["redis-cli", "-p", str(env.redis_port), "CONFIG", "SET", "maxmemory", "1"],
                       capture_output=True)
        subprocess.run(["redis-cli", "-p", str(env.redis_port), "CONFIG", "SET", "maxmemory-policy",
                        "noeviction"], capture_output=True)
        subprocess.run(["redis-cli", "-p", str(env.redis_port), "SCRIPT", "FLUSH"], capture_output=True)
        codes, _ = _burst(env, gw, 5)
        eq(codes.count(200), 3, "fail_open: local limiter allowed its burst (codes %s)" % codes)
        eq(codes.count(429), 2, "fail_open: local limiter limited the rest")
        codes, last = _burst(env, gw2, 1)
        eq(codes, [503], "fail_closed status")
        check("fail" in "\n".join(gw2.log_tail(30)), "fallback not logged")
    finally:
        subprocess.run(["redis-cli", "-p", str(env.redis_port), "CONFIG", "SET", "maxmemory", "0"],
                       capture_output=True)
        gw.stop()
        gw2.stop()
    del extra


@test("per-IP connection limit: a flood of new connections is cut before TLS")
def _(env):
    cfg = env.config()
    # one new connection every 3 s after a burst of 20: the flood below takes
    # well under 3 s, so exactly 20 of its 60 connections get through. It
    # comes from 127.0.0.2, an address nothing else (the harness's start-up
    # probe) has used yet.
    cfg["connection_limits"] = {"per_ip_rate": "20/m", "per_ip_burst": 20}
    gw = env.start_gateway("connlimit", cfg)
    src = ("127.0.0.2", 0)

    def served(path):
        raw = socket.create_connection(("127.0.0.1", gw.port), timeout=5, source_address=src)
        with env.client_context("device").wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(build_request("GET", path, bearer=env.bearer))
            return s.recv(64).split(b"\r\n", 1)[0]

    try:
        refused = 0
        t0 = time.monotonic()
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=2, source_address=src)
            s.settimeout(1)
            try:
                s.sendall(b"\x16\x03\x01\x00\x05hello")
                if s.recv(1) == b"":
                    refused += 1
            except (ConnectionResetError, socket.timeout, BrokenPipeError):
                refused += 1
            finally:
                s.close()
        elapsed = time.monotonic() - t0
        check(elapsed < 2.5, "the flood took %.1fs: the limiter may have refilled" % elapsed)
        eq(refused, 40, "flood connections cut before TLS (of 60, burst 20)")
        time.sleep(3.2)   # one connection's worth refills
        eq(served("/after-flood"), b"HTTP/1.1 200 OK", "served after the flood")
    finally:
        gw.stop()


@test("per-IP concurrent connection limit")
def _(env):
    cfg = env.config()
    cfg["connection_limits"] = {"per_ip_concurrent": 3}
    gw = env.start_gateway("connlimit-conc", cfg)
    try:
        held = [env.connect(gw, "device") for _ in range(3)]
        for c in held:
            eq(c.request("GET", "/held").status, 200, "held connection")
        resp, why = env.attempt(gw, "device")
        check(resp is None and why.startswith("handshake: ConnectionResetError"),
              "a 4th concurrent connection: expected a reset before TLS, got %r %r" % (resp, why))
        held[0].close()
        time.sleep(0.3)
        resp, why = env.attempt(gw, "device")
        check(resp is not None and resp.status == 200, "not served after one closed: %s" % why)
        for c in held[1:]:
            c.close()
    finally:
        gw.stop()
