"""Revocation enforcement: new, resumed and live connections; Redis outages.

Each test owns a redis-server (so it can be killed) and a gateway pointed at
it. Revocations are written the way every writer must: SADD + PUBLISH in
one MULTI (see docs/revocation.md)."""

import os
import shutil
import ssl
import time

from harness import H_SERIAL, REFUSAL_ERRORS, build_request, check, eq, test
from testkit import RedisServer, redis_overrides, wait_until
from tlsprobe import client_ctx, verdict


class Redis(RedisServer):
    def __init__(self, env, port=None, rdb_dir=None):
        super().__init__(env, "redis", port, rdb_dir)

    def revoke(self, entry, publish=True):
        self.write(entry, publish)

    def lift(self, entry):
        self.write(entry, op="SREM")


def _gateway(env, name, redis, extra=None):
    over = redis_overrides(redis.port)
    for k, v in (extra or {}).items():
        over.setdefault(k, {}).update(v)
    return env.start_gateway(name, env.config(over))


def _entry(env, cert="device"):
    return "device:" + env.identity(cert, "device")[H_SERIAL]


def _ok(env, gw, cert="device", **kw):
    resp, why = env.attempt(gw, cert, **kw)
    return resp is not None and resp.status == 200


def _wait(cond, timeout):
    return wait_until(cond, timeout)


@test("revoked certificate: new handshakes refused within 1 s, others unaffected")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-new", r)
    try:
        check(_ok(env, gw, "device"), "device cert not served before revocation")
        t0 = time.monotonic()
        r.revoke(_entry(env))
        check(_wait(lambda: not _ok(env, gw, "device"), 1.0),
              "revoked cert still served after 1 s")
        check(time.monotonic() - t0 < 1.5, "took too long")
        for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            eq(verdict(env, gw, client_ctx(env, "device", v)), "SSLV3_ALERT_CERTIFICATE_REVOKED",
               "%s: what a revoked cert gets" % v.name)
        check(_ok(env, gw, "device2"), "another device cert was refused")
        check("certificate revoked" in "\n".join(gw.log_tail(50)), "refusal reason not logged")
    finally:
        gw.stop()
        r.stop()


@test("revocation by fingerprint, and lifting it, take effect")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-fp", r)
    try:
        fp = env.identity("device2", "device")["X-Client-Cert-Fingerprint"]
        r.revoke(fp)
        check(_wait(lambda: not _ok(env, gw, "device2"), 1.0), "fingerprint revocation not applied")
        check(_ok(env, gw, "device"), "other cert refused")
        r.lift(fp)
        check(_wait(lambda: _ok(env, gw, "device2"), 1.0), "lifting did not restore access")
    finally:
        gw.stop()
        r.stop()


def _session(env, gw, version):
    ctx = env.client_context("device", max_version=version, min_version=version)
    with env.connect(gw, ctx=ctx) as c:
        resp = c.request("GET", "/before")
        eq(resp.status, 200, "status before revocation")
        return ctx, c.session


def _resume(env, gw, ctx, session):
    """(resumed?, response or None)"""
    try:
        c = env.connect(gw, ctx=ctx, session=session)
    except REFUSAL_ERRORS:
        return False, None
    with c:
        reused = c.session_reused
        try:
            return reused, c.request("GET", "/after")
        except REFUSAL_ERRORS:
            return reused, None


@test("sessions from before a revocation cannot be resumed into a request (TLS 1.3 and 1.2)")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-resume", r)
    try:
        sessions = {}
        for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx, sess = _session(env, gw, v)
            reused, resp = _resume(env, gw, ctx, sess)
            check(reused and resp is not None and resp.status == 200,
                  "%s: resumption did not work before revocation" % v.name)
            ctx2, sess2 = _session(env, gw, v)
            sessions[v] = (ctx2, sess2)
        before = env.upstream_count()
        r.revoke(_entry(env))
        time.sleep(0.5)
        for v, (ctx, sess) in sessions.items():
            eq(verdict(env, gw, ctx, sess), "SSLV3_ALERT_CERTIFICATE_REVOKED",
               "%s: what a resumed session of a revoked cert gets" % v.name)
        eq(env.upstream_count(), before, "requests that reached the upstream after revocation")
    finally:
        gw.stop()
        r.stop()


@test("open keep-alive connection of a revoked certificate is closed within 1 s")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-live", r)
    try:
        c = env.connect(gw, "device")
        c2 = env.connect(gw, "device2")
        eq(c.request("GET", "/live").status, 200, "first request")
        eq(c2.request("GET", "/live").status, 200, "first request (device2)")
        t0 = time.monotonic()
        r.revoke(_entry(env))
        closed = c.is_closed(timeout=1.0)
        check(closed and time.monotonic() - t0 <= 1.2, "connection still open 1 s after revocation")
        eq(c2.request("GET", "/live").status, 200, "unrevoked connection still served")
        c.close()
        c2.close()
    finally:
        gw.stop()
        r.stop()


@test("a response in progress completes before the revoked connection closes")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-inflight", r)
    try:
        c = env.connect(gw, "device")
        c.send(build_request("GET", "/slow?ms=800", bearer=env.bearer))
        time.sleep(0.2)
        r.revoke(_entry(env))
        resp = c.read_response(timeout=5)
        eq(resp.status, 200, "in-flight response")
        check(c.is_closed(timeout=1.0), "connection not closed after the response")
        c.close()
    finally:
        gw.stop()
        r.stop()


@test("revocation written while the gateway was disconnected is applied after reconnect")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-offline", r, {"revocation": {"on_redis_unavailable": "serve_stale",
                                                         "max_staleness": "1m"}})
    try:
        check(_ok(env, gw, "device"), "not served at first")
        port, d = r.port, r.dir
        r.stop()
        # an entry written while the gateway cannot see Redis, and never published
        seed = Redis(env).start()
        seed.revoke(_entry(env), publish=False)
        seed.cli("SAVE")
        shutil.copy(os.path.join(seed.dir, "dump.rdb"), os.path.join(d, "dump.rdb"))
        seed.stop()
        check(_ok(env, gw, "device"), "serve_stale: refused while Redis is down")
        r = Redis(env, port=port, rdb_dir=d).start()
        check(_wait(lambda: not _ok(env, gw, "device"), 8.0),
              "entry written while disconnected not applied after reconnect")
        check(_ok(env, gw, "device2"), "other cert refused after re-sync")
    finally:
        gw.stop()
        r.stop()


@test("Redis down, fail_closed: new handshakes refused; restarted: served again")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-failclosed", r)
    try:
        check(_ok(env, gw, "device"), "not served at first")
        port, d = r.port, r.dir
        r.stop()
        check(_wait(lambda: not _ok(env, gw, "device"), 2.0), "fail_closed: still served with Redis down")
        log = "\n".join(gw.log_tail(60))
        check("failing closed" in log, "transition to fail-closed not logged")
        r = Redis(env, port=port, rdb_dir=d).start()
        check(_wait(lambda: _ok(env, gw, "device"), 8.0), "not served again after Redis came back")
    finally:
        gw.stop()
        r.stop()


@test("Redis down, serve_stale: served until max_staleness, then refused")
def _(env):
    r = Redis(env).start()
    gw = _gateway(env, "rev-stale", r, {"revocation": {"on_redis_unavailable": "serve_stale",
                                                       "max_staleness": "2s"}})
    try:
        r.revoke(_entry(env, "device2"))
        check(_wait(lambda: not _ok(env, gw, "device2"), 1.0), "revocation not applied")
        r.stop()
        time.sleep(0.3)
        check(_ok(env, gw, "device"), "serve_stale: refused right after Redis went down")
        check(not _ok(env, gw, "device2"), "serve_stale: stale mirror forgot a revocation")
        check(_wait(lambda: not _ok(env, gw, "device"), 3.5), "still served after max_staleness")
        log = "\n".join(gw.log_tail(60))
        check("serving the last revocation mirror" in log, "serve_stale transition not logged")
    finally:
        gw.stop()
        r.stop()


@test("two gateways on one Redis both enforce a revocation")
def _(env):
    r = Redis(env).start()
    a = _gateway(env, "rev-fleet-a", r)
    b = _gateway(env, "rev-fleet-b", r)
    try:
        check(_ok(env, a, "device") and _ok(env, b, "device"), "not served at first")
        r.revoke(_entry(env))
        check(_wait(lambda: not _ok(env, a, "device") and not _ok(env, b, "device"), 1.0),
              "one of the gateways still serves the revoked cert")
        r.lift(_entry(env))
        check(_wait(lambda: _ok(env, a, "device") and _ok(env, b, "device"), 1.0),
              "lifting not applied on both")
    finally:
        a.stop()
        b.stop()
        r.stop()
