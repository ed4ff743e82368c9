"""Issue 11, revocation: device ids as first-class entries (no window for a
device that renews), one canonicalisation for every spelling of an entry,
loud unusable entries, and every CA certificate of the verified chain
checked against the mirror.

Each test owns a redis-server and a gateway with the admin API and the
verify cache on (so full handshakes after the first are cache hits). The
certificates beyond scripts/gen-pki.sh's are made here with the openssl CLI:
leaves signed by the device CA with a chosen device id and serial, and an
intermediate CA under the device CA with a leaf under it."""

import contextlib
import os
import ssl
import subprocess
import threading
import time

from certs import V3_INT, Minter, fingerprint, not_after_of, serial_of
from harness import (BINARY, REFUSAL_ERRORS, build_request, check, eq, free_port, test,
                     upstream_headers, upstream_info, wait_tcp)
from testkit import (REV_KEY as KEY, RedisServer, Verifier, admin_request, cert_ctx,
                     issuance_config, post_json, redis_overrides, wait_until as _wait)

TOKEN = "rev11-admin-token-0123456789"


class _Gw:
    def __init__(self, env, name, redis, issuance=None, extra=None):
        self.env = env
        self.admin_port = free_port()
        over = redis_overrides(redis.port)
        over.update({"tls": {"verify_cache": {"size": 100, "lifetime": "1h"}},
                     "admin": {"listen": "127.0.0.1:%d" % self.admin_port}})
        for k, v in (extra or {}).items():
            over.setdefault(k, {}).update(v)
        cfg = env.config(over)
        if issuance:
            cfg["issuance"] = issuance
        self.gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
        wait_tcp(self.admin_port, self.gw.proc, 10, "admin listener")

    @property
    def port(self):
        return self.gw.port

    def stop(self):
        self.gw.stop()

    def admin(self, method, path, body=None):
        return admin_request(self.admin_port, TOKEN, method, path, body)

    def health(self):
        status, doc = self.admin("GET", "/admin/health")
        eq(status, 200, "GET /admin/health")
        return doc

    def cli(self, *args):
        r = subprocess.run([BINARY, args[0], "-c", self.gw.config_path] + list(args[1:]),
                           capture_output=True, text=True, timeout=20)
        return r.returncode, r.stdout, r.stderr


@contextlib.contextmanager
def _rig(env, name, issuance=None, extra=None, seed=()):
    """(minter, redis, gateway): a redis-server of the test's own, holding the
    entries seed (written before the gateway loads the set), and a gateway
    with the admin API and the verify cache on it; both stopped after."""
    redis = RedisServer(env, "rev11-redis").start()
    gw = None
    try:
        for e in seed:
            redis.write(e, publish=False)
        gw = _Gw(env, name, redis, issuance, extra)
        yield Minter(env, "rev11", V3_INT), redis, gw
    finally:
        if gw:
            gw.stop()
        redis.stop()


@contextlib.contextmanager
def _issuing_rig(env, name):
    """_rig with issuance on, attested by a Verifier: (minter, redis, gateway, verifier)."""
    v = Verifier()
    try:
        with _rig(env, name, issuance=issuance_config(env, {"huawei": v.platform()})) as rig:
            yield rig + (v,)
    finally:
        v.stop()


def _get(env, gw, ctx, path="/rev11", session=None):
    """(response, None) or (None, the exception that refused the connection)."""
    try:
        c = env.connect(gw.port, ctx=ctx, session=session)
    except REFUSAL_ERRORS as e:
        return None, e
    with c:
        try:
            c.send(build_request("GET", path, bearer=env.bearer))
        except REFUSAL_ERRORS:
            pass
        try:
            return c.read_response(), None
        except REFUSAL_ERRORS as e:
            return None, e


def _served(env, gw, ctx):
    resp, _ = _get(env, gw, ctx)
    return resp is not None and resp.status == 200


def _check_revoked_alert(env, gw, ctx, what):
    """A new full handshake is refused with the TLS alert certificate_revoked
    and nothing reaches the upstream."""
    before = env.upstream_count()
    resp, err = _get(env, gw, ctx)
    check(resp is None, "%s: got an HTTP response %r" % (what, resp))
    check(isinstance(err, ssl.SSLError) and "CERTIFICATE_REVOKED" in (err.reason or ""),
          "%s: refused without the alert certificate_revoked: %r" % (what, err))
    eq(env.upstream_count(), before, "%s: requests that reached the upstream" % what)


def _sessions(env, gw, crt, key):
    """A TLS 1.3 and a TLS 1.2 session, each resumed once while not revoked."""
    out = []
    for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = cert_ctx(env, crt, key, v)
        with env.connect(gw.port, ctx=ctx) as c:
            eq(c.request("GET", "/session").status, 200, "%s: first request" % v.name)
            sess = c.session
        with env.connect(gw.port, ctx=ctx, session=sess) as c:
            check(c.session_reused, "%s: not resumed before the revocation" % v.name)
            eq(c.request("GET", "/resumed").status, 200, "%s: resumed request" % v.name)
            sess = c.session
        out.append((v, ctx, sess))
    return out


def _check_resumption_refused(env, gw, sessions, what):
    before = env.upstream_count()
    for v, ctx, sess in sessions:
        resp, err = _get(env, gw, ctx, session=sess)
        check(resp is None, "%s %s: resumed session got %r" % (what, v.name, resp))
    eq(env.upstream_count(), before, "%s: resumed requests that reached the upstream" % what)


def _open_before(env, gw, ctx, crt, key):
    """Resumable sessions (_sessions) and a live connection, made while
    crt is not revoked: (sessions, live connection)."""
    sessions = _sessions(env, gw, crt, key)
    live = env.connect(gw.port, ctx=ctx)
    eq(live.request("GET", "/live").status, 200, "live connection before the revocation")
    return sessions, live


def _check_all_refused(env, gw, ctx, sessions, live, what):
    """After a revocation: the live connection is closed within 1 s, a new
    handshake gets certificate_revoked and no session resumes."""
    check(live.is_closed(timeout=1.0), "%s: live connection still open after 1 s" % what)
    live.close()
    _check_revoked_alert(env, gw, ctx, what)
    _check_resumption_refused(env, gw, sessions, what)


def _post(env, gw, ctx, path, body):
    with env.connect(gw.port, ctx=ctx) as c:
        return post_json(c, path, body, timeout=15)


def _nonce(env, gw, ctx, what):
    """A challenge with ctx: its nonce (exactly 200)."""
    r = _post(env, gw, ctx, "/certificates/challenge", {})
    eq(r.status, 200, what)
    return r.json()["nonce"]


def _while_attesting(v, request, action, what):
    """Sends request() in a thread; once it is held at the verifier (token
    allow-slow) runs action(), then lets the verifier answer. request's
    response."""
    result = {}

    def run():
        try:
            result["resp"] = request()
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    check(v.arrived.wait(10), "the %s never reached the verifier" % what)
    action()
    time.sleep(0.3)   # the mirror has the entry (pub/sub is sub-millisecond here)
    v.release()
    t.join(15)
    check("resp" in result, "%s failed without an answer: %r" % (what, result.get("error")))
    return result["resp"]


@test("rev11: a device revoked by id: its certificates, even one signed after the "
      "revocation, refused on new, cached, resumed and live connections")
def _(env):
    with _rig(env, "rev11-device") as (pki, redis, gw):
        dev = "rev11-phone-%d" % os.getpid()
        crt1, key1 = pki.device_leaf("dev-a", dev, "0x0A0A01")
        ctx1 = cert_ctx(env, crt1, key1)
        check(_served(env, gw, ctx1) and _served(env, gw, ctx1), "served before the revocation")
        hits = gw.health()["verify_cache"]["hits"]
        check(hits >= 1, "second handshake was not a verify-cache hit (%r)" % hits)
        sessions, live = _open_before(env, gw, ctx1, crt1, key1)

        status, doc = gw.admin("POST", "/admin/revocations", {"device_id": dev, "reason": "stolen"})
        eq((status, doc), (200, {"device_id": dev, "entry": "device-id=" + dev,
                                 "revoked": ["device-id=" + dev], "certificates": 0}),
           "POST device_id (no issuance: the device entry alone)")
        eq(redis.cli("SISMEMBER", KEY, "device-id=" + dev), "1", "device entry in the set")
        _check_all_refused(env, gw, ctx1, sessions, live, "cached chain of a revoked device")

        # the race: a certificate for the same device id signed after the
        # revocation read anything (its serial is in no list anywhere)
        crt2, key2 = pki.device_leaf("dev-b", dev, "0x0A0A02")
        _check_revoked_alert(env, gw, cert_ctx(env, crt2, key2), "certificate signed after")
        check(any("certificate revoked (by its device id entry)" in ln
                  for ln in gw.gw.log_tail(100)), "refusal reason not logged")
        crt3, key3 = pki.device_leaf("dev-c", "rev11-other-device", "0x0A0A03")
        check(_served(env, gw, cert_ctx(env, crt3, key3)), "another device id was refused")
        eq(gw.health()["revocation"]["unusable_entries"], 0, "unusable entries")

        # lifting the device entry restores it; the CLI writes the same entry
        status, doc = gw.admin("DELETE", "/admin/revocations/device-id=" + dev)
        eq((status, doc), (200, {"entry": "device-id=" + dev, "revoked": False}), "DELETE")
        check(_wait(lambda: _served(env, gw, cert_ctx(env, crt2, key2)), 1.0), "lift not applied")
        rc, out, err = gw.cli("revoke", "--device-id", dev, "--reason", "lost")
        eq(rc, 0, "CLI revoke --device-id (stderr %r)" % err)
        check("revoked device-id=%s" % dev in out, "CLI output %r" % out)
        check(_wait(lambda: not _served(env, gw, cert_ctx(env, crt2, key2)), 1.0),
              "CLI device revocation not applied")
        rc, out, err = gw.cli("revocations")
        eq(rc, 0, "CLI revocations")
        check(("device-id=%s\t" % dev) in out and "lost" in out, "listing %r" % out)


@test("rev11: a device revoked during a slow attested renewal gets 403 device_revoked, "
      "nothing is signed, and it cannot renew again", timeout=60)
def _(env):
    with _issuing_rig(env, "rev11-renew") as (pki, redis, gw, v):
        boot = env.client_context("bootstrap")
        nonce = _nonce(env, gw, boot, "challenge")
        key1, csr1 = pki.csr_pem("iss1")
        r = _post(env, gw, boot, "/certificates/issue",
                  {"csr": csr1, "platform": "huawei", "integrity_token": "allow", "nonce": nonce})
        eq(r.status, 201, "issue (%s)" % r.body[:200])
        first = r.json()
        dev = first["device_id"]
        crt1 = pki.path("iss1.crt")
        with open(crt1, "w") as f:
            f.write(first["certificate_chain"])
        ctx1 = cert_ctx(env, crt1, key1)
        check(_served(env, gw, ctx1), "issued certificate not served")

        nonce = _nonce(env, gw, ctx1, "challenge over the device class")
        key2, csr2 = pki.csr_pem("iss2")

        def revoke():
            status, doc = gw.admin("POST", "/admin/revocations", {"device_id": dev})
            eq(status, 200, "POST device_id during the renewal (%r)" % (doc,))
            eq(sorted(doc["revoked"]), sorted(["device-id=" + dev, "device:" + first["serial"]]),
               "revoked entries")

        resp = _while_attesting(v, lambda: _post(env, gw, ctx1, "/certificates/renew", {
            "csr": csr2, "platform": "huawei", "integrity_token": "allow-slow", "nonce": nonce}),
            revoke, "renewal")
        eq((resp.status, resp.json().get("error")), (403, "device_revoked"),
           "renewal of a device revoked meanwhile")
        eq(redis.cli("SCARD", "portcullis:device:" + dev), "1", "a certificate was recorded")
        _check_revoked_alert(env, gw, ctx1, "renewing with the revoked device's certificate")


@test("rev11: a 20-octet serial written to Redis with leading zeros, or as DER prints it, "
      "revokes the certificate")
def _(env):
    with _rig(env, "rev11-serial") as (pki, redis, gw):
        hexs = "7f0102030405060708090a0b0c0d0e0f10111213"   # 20 octets
        crt, key = pki.device_leaf("long-serial", "rev11-long", "0x" + hexs)
        ctx = cert_ctx(env, crt, key)
        resp, _ = _get(env, gw, ctx)
        eq(resp.status if resp else None, 200, "served before")
        eq(upstream_headers(upstream_info(resp), "X-Client-Cert-Serial"), [hexs], "serial header")
        octets = ":".join(hexs[i:i + 2] for i in range(0, 40, 2))
        for spelling in ("device:0" + hexs, "device:00:" + octets.upper(),
                         " device : 0x000" + hexs + " "):
            redis.write(spelling)
            check(_wait(lambda: not _served(env, gw, ctx), 1.0),
                  "%r did not revoke the certificate" % spelling)
            _check_revoked_alert(env, gw, ctx, "revoked by %r" % spelling)
            eq(gw.health()["revocation"]["unusable_entries"], 0,
               "%r counted as unusable" % spelling)
            # the admin API lifts it by the spelling stored, which the set loses
            status, doc = gw.admin("DELETE", "/admin/revocations",
                                   {"class": "device", "serial": spelling.split(":", 1)[1]})
            eq((status, doc), (200, {"entry": "device:" + hexs, "revoked": False}), "lift")
            redis.write(spelling, op="SREM")
            check(_wait(lambda: _served(env, gw, ctx), 1.0), "%r: lift not applied" % spelling)
        eq(redis.cli("SCARD", KEY), "0", "every spelling lifted")
        # a set member in another spelling, lifted through the admin API by
        # that spelling: gone from the set, not only from the mirror
        redis.write("device:0X00" + hexs.upper())
        check(_wait(lambda: not _served(env, gw, ctx), 1.0), "upper-case spelling")
        status, doc = gw.admin("DELETE", "/admin/revocations/device:0X00" + hexs.upper())
        eq((status, doc), (200, {"entry": "device:" + hexs, "revoked": False}),
           "DELETE by the stored spelling")
        eq(redis.cli("SCARD", KEY), "0", "the stored spelling was removed from the set")
        check(_wait(lambda: _served(env, gw, ctx), 1.0), "lift by the stored spelling")


@test("rev11: unusable entries are counted, shown in /admin/health and logged; the admin "
      "API and the CLI refuse unknown classes and serials that cannot match")
def _(env):
    bad = ["devcie:1a2b", "device:xyz", "device:1" + "0" * 40, "sha256:1234"]
    # written before the gateway loads the set; the last one is usable: not counted
    with _rig(env, "rev11-unusable", seed=bad + ["device:0badc0de1234"]) as (_, redis, gw):
        rev = gw.health()["revocation"]
        eq(rev["unusable_entries"], len(bad), "unusable entries after the load (%r)" % rev)
        # in the mirror: the usable entry, and the two well-formed ones of classes
        # not configured ("devcie", "sha256"), kept because a reload may add the class
        eq(rev["entries"], 3, "entries in the mirror")
        eq(sorted(x["entry"] for x in rev["unusable_examples"]), sorted(bad), "examples")
        probs = dict((x["entry"], x["problem"]) for x in rev["unusable_examples"])
        check("not configured" in probs["devcie:1a2b"] and "device, bootstrap" in
              probs["devcie:1a2b"], "unknown class problem %r" % probs["devcie:1a2b"])
        check("hexadecimal" in probs["device:xyz"], "not-hex problem %r" % probs["device:xyz"])
        check("20 octets" in probs["device:1" + "0" * 40], "too-long problem")
        lines = gw.gw.log_tail(200)
        log = "\n".join(lines)
        for e in bad:
            check(any(("unusable revocation entry \"%s\"" % e) in ln and " error " in ln
                      for ln in lines), "%s not logged at error level" % e)
        check(" holds 4 unusable entries" in log, "summary not logged")
        check(not _served(env, gw, env.client_context("device")), "usable entry not applied")

        # a published message the mirror cannot use counts too
        redis.write("devcie:99")
        check(_wait(lambda: gw.health()["revocation"]["unusable_entries"] == len(bad) + 1, 1.0),
              "an unusable published entry was not counted")
        check(any("unusable revocation message \"+devcie:99\"" in ln
                  for ln in gw.gw.log_tail(50)), "unusable message not logged")

        # listing marks them
        status, doc = gw.admin("GET", "/admin/revocations?count=1000")
        eq(status, 200, "list")
        listed = dict((x["entry"], x["problem"]) for x in doc["entries"])
        eq(listed["device:0badc0de1234"], None, "usable entry: problem null")
        check(listed["devcie:1a2b"] and "not configured" in listed["devcie:1a2b"],
              "listing problem %r" % listed["devcie:1a2b"])
        rc, out, err = gw.cli("revocations", "--count", "1000")
        eq(rc, 0, "CLI revocations")
        check(any(ln.startswith("devcie:1a2b\t") and "UNUSABLE: " in ln
                  for ln in out.splitlines()), "CLI listing %r" % out)

        # the admin API and the CLI refuse what could match nothing
        n = redis.cli("SCARD", KEY)
        for body, code, words in (
                ({"class": "devcie", "serial": "12"}, "unknown_class", "not configured"),
                ({"class": "device", "serial": "1" + "0" * 40}, "invalid_entry", "20 octets"),
                ({"class": "device", "serial": "0x"}, "invalid_entry", "empty"),
                ({"fingerprint": "1234"}, "invalid_entry", "64 hex"),
                ({"device_id": "a b"}, "invalid_device_id", "1..128")):
            status, doc = gw.admin("POST", "/admin/revocations", body)
            eq((status, doc.get("error")), (400, code), "POST %r" % (body,))
            check(words in doc.get("message", ""), "POST %r: message %r" % (body, doc))
        for args, words in ((["revoke", "--class", "devcie", "--serial", "12"], "not configured"),
                            (["revoke", "--class", "device", "--serial", "1" + "0" * 40],
                             "20 octets")):
            rc, out, err = gw.cli(*args)
            eq(rc, 2, "%s exit status" % args)
            check(words in err, "%s: stderr %r" % (args, err))
        eq(redis.cli("SCARD", KEY), n, "nothing written by refused requests")
        # a 20-octet serial with a leading zero is accepted by both
        status, doc = gw.admin("POST", "/admin/revocations",
                               {"class": "device", "serial": "0" + "1" * 40})
        eq((status, doc), (201, {"entry": "device:" + "1" * 40, "revoked": True}),
           "API: 20 octets with a leading zero")
        rc, out, err = gw.cli("revoke", "--class", "device", "--serial", "00:" + ":".join(["22"] * 20))
        eq(rc, 0, "CLI: 20 octets with a leading zero octet (stderr %r)" % err)


@test("rev11: revoking an intermediate CA by fingerprint refuses the leaves under it on new, "
      "cached, resumed and live connections; its serial does not name it")
def _(env):
    with _rig(env, "rev11-intermediate") as (pki, redis, gw):
        int_crt, int_key = pki.intermediate("int1", "0x1D1D")
        crt, key = pki.device_leaf("under-int", "rev11-under-int", "0x77", (int_crt, int_key))
        chain = pki.bundle("under-int-chain", crt, int_crt)
        ctx = cert_ctx(env, chain, key)
        resp, err = _get(env, gw, ctx)
        check(resp is not None and resp.status == 200, "leaf under the intermediate: %r %r"
              % (resp, err))
        eq(upstream_headers(upstream_info(resp), "X-Client-Cert-Class"), ["device"], "class")
        check(_served(env, gw, ctx), "second handshake")

        # the intermediate's serial as a <class>:<serial> entry names leaves only
        status, doc = gw.admin("POST", "/admin/revocations", {"class": "device", "serial": "0x1D1D"})
        eq((status, doc), (201, {"entry": "device:1d1d", "revoked": True}), "serial entry")
        time.sleep(0.3)
        check(_served(env, gw, ctx), "the intermediate's serial refused the leaf under it")
        status, doc = gw.admin("DELETE", "/admin/revocations/device:1d1d")
        eq(status, 200, "lift the serial entry")

        other = env.client_context("device")
        entry = fingerprint(int_crt)
        sessions, live = _open_before(env, gw, ctx, chain, key)
        status, doc = gw.admin("POST", "/admin/revocations", {"fingerprint": entry})
        eq((status, doc), (201, {"entry": entry, "revoked": True}), "revoke the intermediate")
        _check_all_refused(env, gw, ctx, sessions, live,
                           "leaf under an intermediate revoked by fingerprint")
        check(any("certificate revoked (by its issuing CA entry)" in ln
                  for ln in gw.gw.log_tail(100)), "refusal reason not logged")
        check(_served(env, gw, other), "a leaf directly under the device CA was refused")
        status, doc = gw.admin("DELETE", "/admin/revocations/" + entry)
        eq(status, 200, "lift")
        check(_wait(lambda: _served(env, gw, ctx), 1.0), "lift of the intermediate")


@test("rev11: a leaf and a CA with the same serial: revoking the leaf's serial refuses that "
      "leaf only, and the admin API and the CLI warn about the CA in the bundle")
def _(env):
    with _rig(env, "rev11-collide") as (pki, redis, gw):
        # openssl ca setups often start every serial file at the same value
        int_ca = pki.intermediate("int1000", "0x1000")
        int_crt = int_ca[0]
        a_crt, a_key = pki.device_leaf("leaf-1000", "rev11-leaf-1000", "0x1000", int_ca)
        b_crt, b_key = pki.device_leaf("leaf-1001", "rev11-leaf-1001", "0x1001", int_ca)
        ctx_a = cert_ctx(env, pki.bundle("a-chain", a_crt, int_crt), a_key)
        ctx_b = cert_ctx(env, pki.bundle("b-chain", b_crt, int_crt), b_key)
        check(_served(env, gw, ctx_a) and _served(env, gw, ctx_b), "both leaves served before")
        live_b = env.connect(gw.port, ctx=ctx_b)
        eq(live_b.request("GET", "/live").status, 200, "sibling live before")
        status, doc = gw.admin("POST", "/admin/revocations", {"class": "device", "serial": "1000"})
        eq((status, doc), (201, {"entry": "device:1000", "revoked": True}),
           "revoke the leaf's serial (the intermediate is in no bundle: no warning)")
        check(_wait(lambda: not _served(env, gw, ctx_a), 1.0), "the leaf was not refused")
        _check_revoked_alert(env, gw, ctx_a, "the revoked leaf")
        check(_served(env, gw, ctx_b), "a sibling leaf under the intermediate with serial 1000 "
              "was refused")
        eq(live_b.request("GET", "/still").status, 200, "sibling live connection after")
        live_b.close()

        # the serial of a CA in the class bundle: written, with a warning
        ca_serial = serial_of(env.pki("device-ca.crt")).lower().lstrip("0") or "0"
        ca_fp = fingerprint(env.pki("device-ca.crt"))
        status, doc = gw.admin("POST", "/admin/revocations",
                               {"class": "device", "serial": ca_serial})
        eq((status, doc.get("entry"), doc.get("revoked")), (201, "device:" + ca_serial, True),
           "revoke a serial equal to the device CA's")
        w = doc.get("warning") or ""
        check("is also the serial of the CA certificate" in w and ca_fp in w
              and "fingerprint" in w, "API warning %r" % w)
        time.sleep(0.3)
        check(_served(env, gw, env.client_context("device")),
              "the device CA's serial refused a leaf under the device CA")
        rc, out, err = gw.cli("revoke", "--class", "device", "--serial", "0x" + ca_serial.upper())
        eq(rc, 0, "CLI revoke (stderr %r)" % err)
        check("warning: serial" in err and ca_fp in err, "CLI warning %r" % err)
        rc, out, err = gw.cli("revoke", "--class", "device", "--serial", "1001")
        eq((rc, err), (0, ""), "CLI revoke of a serial no CA has")
        check(_wait(lambda: not _served(env, gw, ctx_b), 1.0), "device:1001 not applied")


@test("rev11: a bootstrap certificate revoked during a slow attested issue gets 403 "
      "certificate_revoked and nothing is signed", timeout=60)
def _(env):
    with _issuing_rig(env, "rev11-issue") as (pki, redis, gw, v):
        boot = env.client_context("bootstrap")
        nonce = _nonce(env, gw, boot, "challenge")
        _, csr = pki.csr_pem("boot-iss")
        fp = fingerprint(env.pki("bootstrap.crt"))

        def revoke():
            status, doc = gw.admin("POST", "/admin/revocations", {"fingerprint": fp})
            eq((status, doc), (201, {"entry": fp, "revoked": True}), "revoke the bootstrap cert")

        resp = _while_attesting(v, lambda: _post(env, gw, boot, "/certificates/issue", {
            "csr": csr, "platform": "huawei", "integrity_token": "allow-slow", "nonce": nonce}),
            revoke, "issue")
        eq((resp.status, resp.json().get("error")), (403, "certificate_revoked"),
           "issue from a bootstrap certificate revoked meanwhile")
        eq(redis.cli("KEYS", "portcullis:issued:*"), "", "an issuance was recorded")
        eq(redis.cli("KEYS", "portcullis:device:*"), "", "a device was recorded")
        _check_revoked_alert(env, gw, boot, "the revoked bootstrap certificate")


def _short_intermediate(pki, name, seconds):
    """An intermediate CA under the device CA that expires `seconds` from
    now: (crt, key, its notAfter as a Unix time)."""
    key, csr = pki.csr(name, "/O=Example Org/CN=Portcullis Short Intermediate")
    end_t = int(time.time()) + seconds
    return pki.sign_dated(name, csr, "v3_int", time.time() - 60, end_t, "5E5E"), key, end_t


@test("rev11: an intermediate that expires before the leaf ends live connections and "
      "resumption when it expires; the header keeps the leaf's notAfter", timeout=60)
def _(env):
    with _rig(env, "rev11-int-expiry") as (pki, redis, gw):
        int_crt, int_key, end_t = _short_intermediate(pki, "short-int", 8)
        crt, key = pki.device_leaf("under-short", "rev11-under-short", "0x5151",
                                   (int_crt, int_key))
        chain = pki.bundle("under-short-chain", crt, int_crt)
        ctx = cert_ctx(env, chain, key)
        resp, err = _get(env, gw, ctx)
        check(resp is not None and resp.status == 200, "served before: %r %r" % (resp, err))
        eq(upstream_headers(upstream_info(resp), "X-Client-Cert-Not-After"), [not_after_of(crt)],
           "header: the leaf's own notAfter")
        sessions = _sessions(env, gw, chain, key)
        live = env.connect(gw.port, ctx=ctx)
        eq(live.request("GET", "/live").status, 200, "live before")
        check(time.time() < end_t - 1, "setup took too long for the test")
        time.sleep(max(0.0, end_t - time.time()) + 1.5)
        check(live.is_closed(timeout=2.0), "live connection still open after the intermediate "
              "expired")
        live.close()
        before = env.upstream_count()
        for v, c, sess in sessions:
            r, e = _get(env, gw, c, session=sess)
            check(r is None and isinstance(e, ssl.SSLError) and
                  "CERTIFICATE_EXPIRED" in (e.reason or ""),
                  "%s: resumption after the intermediate expired: %r %r" % (v.name, r, e))
        r, e = _get(env, gw, ctx)
        check(r is None and isinstance(e, ssl.SSLError) and
              "CERTIFICATE_EXPIRED" in (e.reason or ""), "new handshake: %r %r" % (r, e))
        eq(env.upstream_count(), before, "requests that reached the upstream")
        check(_served(env, gw, env.client_context("device")), "another device refused")


@test("rev11: lifting one spelling of an entry the set also holds in another keeps it "
      "revoked until that spelling goes too: the mirror agrees with the set at once and "
      "after a resync", timeout=60)
def _(env):
    with _rig(env, "rev11-spellings", extra={"revocation": {"resync_interval": "1s"}}) as (
            pki, redis, gw):
        ctx = env.client_context("device")   # serial 0badc0de1234 (scripts/gen-pki.sh)
        o_crt, o_key = pki.device_leaf("unspelled", "rev11-unspelled", "0x5EED")
        other = cert_ctx(env, o_crt, o_key)
        check(_served(env, gw, ctx), "served before")

        def refused_throughout(seconds, what):
            deadline = time.monotonic() + seconds
            n = 0
            while time.monotonic() < deadline:
                check(not _served(env, gw, ctx), "%s: served (attempt %d)" % (what, n))
                n += 1
            check(n >= 3, "%s: too few attempts" % what)

        def synced_after(t0):
            return _wait(lambda: gw.health()["revocation"]["last_sync_unix"] > t0 + 1, 5.0)

        # an operator's own spelling, written without a message, then the CLI
        redis.write("device:00badc0de1234", publish=False)
        rc, out, err = gw.cli("revoke", "--class", "device", "--serial", "badc0de1234")
        eq(rc, 0, "CLI revoke (stderr %r)" % err)
        check(_wait(lambda: not _served(env, gw, ctx), 1.0), "revoke not applied")
        t0 = int(time.time())
        rc, out, err = gw.cli("unrevoke", "--class", "device", "--serial", "badc0de1234")
        eq((rc, out), (0, "lifted the revocation of device:badc0de1234\n"),
           "CLI unrevoke (stderr %r)" % err)
        eq(redis.cli("SMEMBERS", KEY), "device:00badc0de1234", "the set after the lift")
        refused_throughout(1.0, "right after the lift of one spelling")
        check(synced_after(t0), "no resync")
        refused_throughout(0.5, "after a resync")
        check(any("lift of device:badc0de1234: the set %s still holds it in another "
                  "spelling" % KEY in ln for ln in gw.gw.log_tail(100000)),
              "the kept revocation was not logged")
        check(_served(env, gw, other), "another certificate refused")

        # lifting the spelling the listing shows lifts it everywhere, at once
        status, doc = gw.admin("GET", "/admin/revocations?count=1000")
        eq([x["entry"] for x in doc["entries"]], ["device:00badc0de1234"], "listing")
        status, doc = gw.admin("DELETE", "/admin/revocations/device:00badc0de1234")
        eq((status, doc), (200, {"entry": "device:badc0de1234", "revoked": False}), "DELETE")
        eq(redis.cli("SCARD", KEY), "0", "the set after the second lift")
        check(_wait(lambda: _served(env, gw, ctx), 1.0), "second lift not applied")
        t0 = int(time.time())
        check(synced_after(t0), "no resync")
        check(_served(env, gw, ctx), "revoked again after a resync")

        # the same with a lift written by hand, and with several lifts at once
        redis.write("device:0BADC0DE1234", publish=False)
        redis.write("device:badc0de1234")
        check(_wait(lambda: not _served(env, gw, ctx), 1.0), "revoke by hand")
        for _i in range(5):
            redis.write("device:badc0de1234", op="SREM")
        refused_throughout(1.0, "hand-written lift of one spelling")
        redis.write("device:0BADC0DE1234", op="SREM")
        check(_wait(lambda: _served(env, gw, ctx), 1.0), "lift of the last spelling")
        eq(gw.health()["revocation"]["entries"], 0, "mirror entries")
