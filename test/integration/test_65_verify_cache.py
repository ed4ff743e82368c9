"""The verified-chain cache (tls.verify_cache) against the real binary.

Every connection here is a fresh full handshake (no session offered), so
certificate verification runs each time; whether it came from the cache is
read from the admin health counters (and the debug log line). Each test owns
its gateway, and those that revoke own their redis-server. The certificates
beyond scripts/gen-pki.sh's are made here, at test time, with the openssl CLI:
a twin of device.crt (same subject and serial, another key), a forgery of it
(same subject, serial, issuer name and key, not signed by the device CA), and
one that expires a few seconds after it is made."""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import time

from harness import (H_FINGERPRINT, H_SERIAL, SetupError, check, eq, fail, free_port, kill_group,
                     sha256, spawn, test, upstream_headers, upstream_info, wait_tcp)

TOKEN = "vcache-admin-token-0123456789"
REV_KEY = "portcullis:revoked"
REV_CHANNEL = "portcullis:revocations"

_CNF = """\
[req]
distinguished_name = req_dn
prompt = no
[req_dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_device]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:portcullis:device:device-1234
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca]
default_ca = test_ca
[test_ca]
dir = CADIR
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
preserve = yes
email_in_dn = no
copy_extensions = none
[policy_any]
organizationName = optional
commonName = supplied
"""


def _run(*cmd):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SetupError("%s failed: %s" % (" ".join(cmd[:3]), r.stderr.strip()[:300]))
    return r.stdout


class _Pki:
    """Certificates made at test time in env.tmp/vcache, next to gen-pki's."""

    def __init__(self, env):
        self.env = env
        self.dir = os.path.join(env.tmp, "vcache")
        os.makedirs(os.path.join(self.dir, "ca"), exist_ok=True)
        self.cnf = os.path.join(self.dir, "openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(_CNF.replace("CADIR", os.path.join(self.dir, "ca")))
        for name, text in (("index.txt", ""), ("serial", "01\n")):
            path = os.path.join(self.dir, "ca", name)
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(text)

    def path(self, name):
        return os.path.join(self.dir, name)

    def key(self, name):
        path = self.path(name + ".key")
        _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
        return path

    def csr(self, name, key, subject):
        path = self.path(name + ".csr")
        _run("openssl", "req", "-new", "-config", self.cnf, "-key", key, "-subj", subject,
             "-out", path)
        return path

    def sign(self, name, csr, ca_crt, ca_key, serial, days=1):
        path = self.path(name + ".crt")
        _run("openssl", "x509", "-req", "-sha256", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
             "-set_serial", serial, "-days", str(days), "-extfile", self.cnf,
             "-extensions", "v3_device", "-out", path)
        return path

    def sign_dated(self, name, csr, ca_crt, ca_key, start, end):
        """Signed with explicit validity (UTC YYMMDDHHMMSSZ), via `openssl ca`."""
        path = self.path(name + ".crt")
        _run("openssl", "ca", "-config", self.cnf, "-batch", "-notext", "-md", "sha256",
             "-preserveDN", "-cert", ca_crt, "-keyfile", ca_key, "-startdate", start,
             "-enddate", end, "-extfile", self.cnf, "-extensions", "v3_device", "-in", csr,
             "-out", path)
        return path

    def subject_of(self, crt):
        out = _run("openssl", "x509", "-in", crt, "-noout", "-subject", "-nameopt", "compat")
        return out.split("=", 1)[1].strip()

    def serial_of(self, crt):
        return "0x" + _run("openssl", "x509", "-in", crt, "-noout", "-serial").split("=", 1)[1].strip()


def _ctx(env, crt, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(env.pki("server-ca.crt"))
    ctx.load_cert_chain(crt, key)
    return ctx


def _redis(env):
    exe = shutil.which("redis-server")
    if not exe:
        raise SetupError("redis-server not installed")
    port = free_port()
    d = os.path.join(env.tmp, "vcache-redis-%d" % port)
    os.makedirs(d, exist_ok=True)
    log = open(os.path.join(d, "redis.log"), "ab")
    proc = spawn([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", d], stdout=log, stderr=log)
    log.close()
    wait_tcp(port, proc, 10, "redis-server")
    return proc, port


def _redis_multi(port, *cmds):
    text = "MULTI\n" + "".join(c + "\n" for c in cmds) + "EXEC\n"
    r = subprocess.run(["redis-cli", "-p", str(port)], input=text, capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0, "redis-cli failed: %s" % r.stderr)


class _Gw:
    """A gateway with the admin API on, its own Redis if asked, a cache of `size`."""

    def __init__(self, env, name, size=100, lifetime="1h", own_redis=False):
        self.env = env
        self.redis_proc = None
        over = {"tls": {"verify_cache": {"size": size, "lifetime": lifetime}},
                "logging": {"level": "debug"}}
        if own_redis:
            self.redis_proc, self.redis_port = _redis(env)
            over["redis"] = {"address": "127.0.0.1:%d" % self.redis_port,
                             "connect_timeout": "500ms", "command_timeout": "500ms"}
            over["revocation"] = {"resync_interval": "30s"}
        self.admin_port = free_port()
        over["admin"] = {"listen": "127.0.0.1:%d" % self.admin_port}
        try:
            self.gw = env.start_gateway(name, env.config(over),
                                        environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
            wait_tcp(self.admin_port, self.gw.proc, 10, "admin listener")
        except BaseException:
            kill_group(self.redis_proc, 3)
            raise

    def stop(self):
        self.gw.stop()
        kill_group(self.redis_proc, 3)

    def health(self):
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            c.request("GET", "/admin/health", headers={"Authorization": "Bearer " + TOKEN})
            r = c.getresponse()
            body = r.read()
            eq(r.status, 200, "GET /admin/health")
        finally:
            c.close()
        return json.loads(body.decode())

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
        _redis_multi(g.redis_port, "SADD %s %s" % (REV_KEY, entry),
                     "PUBLISH %s +%s" % (REV_CHANNEL, entry))
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
        _redis_multi(g.redis_port, "SREM %s %s" % (REV_KEY, entry),
                     "PUBLISH %s -%s" % (REV_CHANNEL, entry))
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
    pki = _Pki(env)
    dev_crt = env.pki("device.crt")
    subject = pki.subject_of(dev_crt)
    serial = pki.serial_of(dev_crt)
    ca_crt, ca_key = env.pki("device-ca.crt"), env.pki("device-ca.key")
    # twin: same subject and serial from the same CA, another key pair
    twin_key = pki.key("twin")
    twin_crt = pki.sign("twin", pki.csr("twin", twin_key, subject), ca_crt, ca_key, serial)
    # forgery: device.crt's subject, serial, issuer name and public key, signed
    # by a look-alike CA (same name, another key): not signed by the device CA
    fake_key = pki.key("fake-ca")
    fake_ca = pki.path("fake-ca.crt")
    _run("openssl", "req", "-x509", "-new", "-config", pki.cnf, "-extensions", "v3_ca",
         "-key", fake_key, "-subj", pki.subject_of(ca_crt), "-days", "1", "-out", fake_ca)
    forged_crt = pki.sign("forged", pki.csr("forged", env.pki("device.key"), subject), fake_ca,
                          fake_key, serial)

    g = _Gw(env, "vcache-twin")
    try:
        info, why = g.get(env.client_context("device"))
        check(info is not None, "device refused: %s" % why)
        info, why = g.get(env.client_context("device"))
        check(info is not None, "device refused the second time: %s" % why)
        dev_fp = upstream_headers(info, H_FINGERPRINT)
        c0 = g.counters()
        eq(c0["entries"], 1, "entries with device.crt cached")

        info, why = g.get(_ctx(env, twin_crt, twin_key))
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
            info, why = g.get(_ctx(env, forged_crt, env.pki("device.key")))
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
    pki = _Pki(env)
    key = pki.key("soon")
    csr = pki.csr("soon", key, "/O=Example Org/CN=device-soon")
    now = time.time()
    fmt = lambda t: time.strftime("%y%m%d%H%M%SZ", time.gmtime(t))  # noqa: E731
    not_after = int(now) + 4
    crt = pki.sign_dated("soon", csr, env.pki("device-ca.crt"), env.pki("device-ca.key"),
                         fmt(now - 60), fmt(not_after))
    g = _Gw(env, "vcache-expiry")
    try:
        ctx = lambda: _ctx(env, crt, key)  # noqa: E731
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
