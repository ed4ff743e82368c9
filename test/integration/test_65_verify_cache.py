"""The verified-chain cache (tls.verify_cache) against the real binary.

Every connection here is a fresh full handshake (no session offered), so
certificate verification runs each time; whether it came from the cache is
read from the admin health counters (and the debug log line). Each test owns
its gateway, and those that revoke own their redis-server. The certificates
beyond scripts/gen-pki.sh's are made here, at test time, with the openssl CLI:
a twin of device.crt (same subject and serial, another key), a forgery of it
(same subject, serial, issuer name and key, not signed by the device CA), and
one that expires a few seconds after it is made."""

import ssl
import time

from certs import V3_CA, Minter, device_section, serial_of, subject_of
from harness import (H_FINGERPRINT, H_SERIAL, check, eq, fail, free_port, sha256, test,
                     upstream_headers, upstream_info, wait_tcp)
from testkit import RedisServer, admin_request, cert_ctx, redis_overrides

TOKEN = "vcache-admin-token-0123456789"
_EXT = V3_CA + device_section("v3_device", "device-1234")


class _Gw:
    """A gateway with the admin API on, its own Redis if asked, a cache of `size`."""

    def __init__(self, env, name, size=100, lifetime="1h", own_redis=False):
        self.env = env
        self.redis = None
        over = {"tls": {"verify_cache": {"size": size, "lifetime": lifetime}},
                "logging": {"level": "debug"}}
        if own_redis:
            self.redis = RedisServer(env, "vcache-redis").start()
            over.update(redis_overrides(self.redis.port))
        self.admin_port = free_port()
        over["admin"] = {"listen": "127.0.0.1:%d" % self.admin_port}
        try:
            self.gw = env.start_gateway(name, env.config(over),
                                        environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
            wait_tcp(self.admin_port, self.gw.proc, 10, "admin listener")
        except BaseException:
            self.stop_redis()
            raise

    def stop_redis(self):
        if self.redis:
            self.redis.stop()

    def stop(self):
        self.gw.stop()
        self.stop_redis()

    def health(self):
        status, doc = admin_request(self.admin_port, TOKEN, "GET", "/admin/health")
        eq(status, 200, "GET /admin/health")
        return doc

    def counters(self):
        vc = self.health().get("verify_cache")
        check(isinstance(vc, dict), "health has no verify_cache object: %r" % (vc,))
        return vc

    def get(self, ctx, path="/vcache"):
        """(upstream echo info, None) on a 200, or (None, reason) if refused."""
        reused = False
        try:
            with self.env.connect(self.gw, ctx=ctx) as c:
                reused = c.session_reused
                resp = c.request("GET", path)
        except Exception as e:  # noqa: BLE001 - any refusal (alert, reset, close)
            return None, repr(e)
        finally:
            check(not reused, "a connection was resumed; these tests need full handshakes")
        if resp.status != 200:
            return None, "HTTP %d" % resp.status
        return upstream_info(resp), None


def _delta(after, before):
    return {k: after[k] - before[k] for k in ("hits", "misses", "evictions", "expired", "entries")}


@test("verify cache: the same certificate twice on fresh handshakes: 2nd is a cache hit")
def _(env):
    g = _Gw(env, "vcache-hit")
    try:
        ctx = lambda: env.client_context("device")  # noqa: E731 - a fresh context each time
        before = g.counters()
        eq(before["capacity"], 100, "capacity")
        info1, why = g.get(ctx())
        check(info1 is not None, "first connection refused: %s" % why)
        d = _delta(g.counters(), before)
        eq((d["hits"], d["misses"], d["entries"]), (0, 1, 1), "after the first handshake (hits, misses, entries)")
        info2, why = g.get(ctx())
        check(info2 is not None, "second connection refused: %s" % why)
        d = _delta(g.counters(), before)
        eq((d["hits"], d["misses"], d["entries"]), (1, 1, 1), "after the second handshake (hits, misses, entries)")
        for h in (H_SERIAL, H_FINGERPRINT):
            eq(upstream_headers(info2, h), upstream_headers(info1, h), h + " on the cached handshake")
        check(any("chain-cached" in line for line in g.gw.log_tail(50)),
              "no debug line marks the handshake as served from the cache")
    finally:
        g.stop()


@test("verify cache: a certificate revoked after it was cached is refused, then evicted")
def _(env):
    g = _Gw(env, "vcache-revoke", own_redis=True)
    try:
        ctx = lambda: env.client_context("device")  # noqa: E731
        entry = "device:" + env.identity("device", "device")[H_SERIAL]
        for i in range(2):
            info, why = g.get(ctx())
            check(info is not None, "connection %d refused before revocation: %s" % (i + 1, why))
        c0 = g.counters()
        check(c0["hits"] >= 1 and c0["entries"] == 1, "not cached before revocation: %r" % c0)
        g.redis.write(entry)
        deadline = time.monotonic() + 2
        info = True
        while info is not None and time.monotonic() < deadline:
            info, why = g.get(ctx())
            if info is not None:
                time.sleep(0.05)
        check(info is None, "revoked certificate still served 2 s after the revocation")
        c1 = g.counters()
        check(c1["hits"] > c0["hits"], "the refused handshake did not go through the cache: %r" % c1)
        eq(c1["entries"], 0, "entries after a revoked hit (evicted)")
        check(any("certificate revoked" in line for line in g.gw.log_tail(50)),
              "refusal reason not logged")
        info, why = g.get(ctx())
        check(info is None, "revoked certificate served on a later attempt")
        eq(g.counters()["hits"], c1["hits"], "hits on a later attempt (the entry is gone)")
        # lifting it: verified in full again, and cached again
        g.redis.write(entry, op="SREM")
        deadline = time.monotonic() + 2
        while info is None and time.monotonic() < deadline:
            info, why = g.get(ctx())
            if info is None:
                time.sleep(0.05)
        check(info is not None, "lifted revocation not applied: %s" % why)
        eq(g.counters()["entries"], 1, "entries after the revocation was lifted")
    finally:
        g.stop()


@test("verify cache: same subject and serial, another key or signature: never the cached entry")
def _(env):
    pki = Minter(env, "vcache", _EXT)
    dev_crt = env.pki("device.crt")
    subject = subject_of(dev_crt)
    serial = "0x" + serial_of(dev_crt)
    # twin: same subject and serial from the same CA, another key pair
    twin_crt, twin_key = pki.leaf("twin", subject, serial, "v3_device", days=1)
    # forgery: device.crt's subject, serial, issuer name and public key, signed
    # by a look-alike CA (same name, another key): not signed by the device CA
    fake_key = pki.key("fake-ca")
    fake_ca = pki.self_signed("fake-ca", fake_key, subject_of(env.pki("device-ca.crt")))
    _, forged_csr = pki.csr("forged", subject, key=env.pki("device.key"))
    forged_crt = pki.sign("forged", forged_csr, serial, "v3_device", (fake_ca, fake_key), days=1)

    g = _Gw(env, "vcache-twin")
    try:
        info, why = g.get(env.client_context("device"))
        check(info is not None, "device refused: %s" % why)
        info, why = g.get(env.client_context("device"))
        check(info is not None, "device refused the second time: %s" % why)
        dev_fp = upstream_headers(info, H_FINGERPRINT)
        c0 = g.counters()
        eq(c0["entries"], 1, "entries with device.crt cached")

        info, why = g.get(cert_ctx(env, twin_crt, twin_key))
        check(info is not None, "twin certificate (valid, same CA) refused: %s" % why)
        c1 = g.counters()
        eq((c1["hits"] - c0["hits"], c1["misses"] - c0["misses"]), (0, 1),
           "twin: (hits, misses) added")
        eq(upstream_headers(info, H_SERIAL), [env.identity("device", "device")[H_SERIAL]],
           "twin serial (the same as device.crt's)")
        twin_fp = upstream_headers(info, H_FINGERPRINT)
        check(twin_fp != dev_fp and len(twin_fp) == 1,
              "the twin was given device.crt's identity (fingerprint %r)" % twin_fp)
        with open(twin_crt) as f:
            eq(twin_fp[0], sha256(ssl.PEM_cert_to_DER_cert(f.read())), "twin fingerprint")
        eq(c1["entries"], 2, "entries: device and its twin each have their own")

        for i in range(3):
            info, why = g.get(cert_ctx(env, forged_crt, env.pki("device.key")))
            check(info is None, "forged certificate accepted (attempt %d)" % (i + 1))
        c2 = g.counters()
        eq((c2["hits"] - c1["hits"], c2["misses"] - c1["misses"], c2["entries"]), (0, 3, 2),
           "forgery: (hits added, misses added, entries)")
        info, why = g.get(env.client_context("device"))
        check(info is not None and upstream_headers(info, H_FINGERPRINT) == dev_fp,
              "device.crt after the others: %s" % why)
        eq(g.counters()["hits"], c2["hits"] + 1, "device.crt is still a hit")
    finally:
        g.stop()


@test("verify cache: a chain that fails verification is refused every time, never cached")
def _(env):
    g = _Gw(env, "vcache-fail")
    try:
        before = g.counters()
        for cert in ("wrongca", "expired", "noclientauth") * 2:
            info, why = g.get(env.client_context(cert))
            check(info is None, "%s accepted" % cert)
        d = _delta(g.counters(), before)
        eq((d["hits"], d["misses"], d["entries"]), (0, 6, 0), "(hits, misses, entries) after 6 refusals")
        info, why = g.get(env.client_context("device"))
        check(info is not None, "device refused after the failures: %s" % why)
        eq(_delta(g.counters(), before)["entries"], 1, "entries after one good chain")
    finally:
        g.stop()


@test("verify cache: a cached certificate is refused once it has expired", timeout=60)
def _(env):
    pki = Minter(env, "vcache", _EXT)
    key, csr = pki.csr("soon", "/O=Example Org/CN=device-soon")
    now = time.time()
    not_after = int(now) + 4
    crt = pki.sign_dated("soon", csr, "v3_device", now - 60, not_after, "01")
    g = _Gw(env, "vcache-expiry")
    try:
        ctx = lambda: cert_ctx(env, crt, key)  # noqa: E731
        info, why = g.get(ctx())
        check(info is not None, "short-lived certificate refused while valid: %s" % why)
        info, why = g.get(ctx())
        c0 = g.counters()
        if time.time() >= not_after:
            fail("the machine is too slow for this test: certificate expired before it was cached")
        check(info is not None and c0["hits"] == 1 and c0["entries"] == 1,
              "second handshake not a cache hit: %s %r" % (why, c0))
        time.sleep(max(0.0, not_after + 1.2 - time.time()))
        for i in range(2):
            info, why = g.get(ctx())
            check(info is None, "expired certificate accepted (attempt %d) despite the cache" % (i + 1))
        c1 = g.counters()
        eq((c1["hits"], c1["expired"], c1["entries"]), (1, 1, 0),
           "(hits, expired, entries) after expiry")
        check(any("certificate has expired" in line for line in g.gw.log_tail(50)),
              "refusal reason not logged")
    finally:
        g.stop()


@test("verify cache: size 0 disables it (health null), handshakes still verified")
def _(env):
    g = _Gw(env, "vcache-off", size=0)
    try:
        eq(g.health().get("verify_cache", "absent"), None, "health verify_cache when disabled")
        for _ in range(2):
            info, why = g.get(env.client_context("device"))
            check(info is not None, "device refused: %s" % why)
        info, why = g.get(env.client_context("wrongca"))
        check(info is None, "untrusted CA accepted with the cache disabled")
        check(not any("chain-cached" in line for line in g.gw.log_tail(50)),
              "a handshake claims to come from a disabled cache")
    finally:
        g.stop()
