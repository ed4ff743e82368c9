"""Integrity levels (docs/issuance.md "Integrity levels"): an issued
certificate records its device's level as a certificatePolicies OID, every
gateway reads it back, routes refuse below min_integrity (403
integrity_too_low, nothing forwarded), X-Device-Integrity carries it to the
upstream (never a client's), lifetimes follow the level, renewal keeps it
for the same key only."""

import calendar
import contextlib
import http.server
import json
import os
import subprocess
import threading
import time

from certs import Minter
from harness import check, eq, free_port, test, upstream_headers, upstream_info
from loadgen import ReloadGateway
from testkit import (cert_ctx, expect_error, issuance_config, play_keys, play_platform,
                     play_token, post_json)

PACKAGE = "com.example.app"
DIGEST = "Zm9vYmFyLWFwcC1zaWduaW5nLWNlcnQtZGlnZXN0LTA"
H = "X-Device-Integrity"
ARC = "2.25.189217713610360413943209378316248556528"   # the default OIDs: ARC.<level>
LEVELS = ["none", "basic", "device", "strong"]
LIFETIME = {"device": 2 * 86400, "basic": 86400, "none": 3600}   # strong: issuance.lifetime
DEFAULT_LIFETIME = 3 * 86400


class LevelVerifier:
    """An http verifier that allows "allow-<level>" tokens with that level
    (and "allow" without one), and denies anything else."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                tok = body.get("integrity_token", "")
                if tok == "allow":
                    out = {"verdict": "allow"}
                elif tok.startswith("allow-"):
                    out = {"verdict": "allow", "level": tok[6:]}
                else:
                    out = {"verdict": "deny", "reason": "no"}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def _keys(env):
    return play_keys(env, "integrity")


def _routes(gated=None):
    """The issuance routes, /api/<level> with that min_integrity, /api/any without one."""
    routes = [{"path": "/certificates/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
               "require_bearer": False}]
    for lv in LEVELS:
        routes.append({"path": "/api/%s" % lv, "upstream": "echo", "allow_classes": ["device"],
                       "require_bearer": False, "min_integrity": lv})
    routes.append({"path": "/api/gated", "upstream": "echo", "allow_classes": ["device"],
                   "require_bearer": False, "min_integrity": gated or "strong"})
    routes.append({"path": "/api/any", "upstream": "echo", "allow_classes": ["device"], "require_bearer": False})
    return routes


def _config(env, verifier_port, gated=None):
    d = _keys(env)
    play = play_platform(d, PACKAGE, DIGEST)
    cfg = env.config()
    cfg["routes"] = _routes(gated)
    cfg["logging"] = {"level": "info", "format": "json", "access": True}
    cfg["issuance"] = issuance_config(env, {
        "android": dict(play, required_device_verdicts=["MEETS_DEVICE_INTEGRITY"]),
        "android_basic": dict(play, required_device_verdicts=["MEETS_BASIC_INTEGRITY"]),
        "dev": {"provider": "none"},
        "huawei": {"provider": "http", "url": "http://127.0.0.1:%d/verify" % verifier_port},
        "harmony": {"provider": "http", "url": "http://127.0.0.1:%d/verify" % verifier_port,
                    "max_level": "strong"},
    }, insecure_dev=True, lifetime="3d", lifetime_by_integrity={"device": "2d", "basic": "1d", "none": "1h"})
    return cfg


def _gateway(env, name, verifier_port):
    return env.start_gateway(name, _config(env, verifier_port))


def _post(env, gw, path, body, cert="bootstrap", key=None):
    ctx = cert_ctx(env, cert, key) if key else None
    with env.connect(gw, None if key else cert, ctx=ctx) as c:
        return post_json(c, path, body)


def _token(env, nonce, csr, verdicts):
    return play_token(_keys(env), nonce, csr, PACKAGE, DIGEST, verdicts=verdicts)


def _issue(env, gw, name, platform, verdicts=None, token=None):
    """Issues a certificate on platform: (response, crt path, key path)."""
    key, csr = Minter(env, "integrity").csr_pem(name, "/CN=" + name)
    r = _post(env, gw, "/certificates/challenge", {})
    eq(r.status, 200, "challenge (%s)" % r.body[:200])
    nonce = r.json()["nonce"]
    body = {"csr": csr, "platform": platform, "nonce": nonce}
    if verdicts:
        body["integrity_token"] = _token(env, nonce, csr, verdicts)
    elif token:
        body["integrity_token"] = token
    r = _post(env, gw, "/certificates/issue", body)
    crt = None
    if r.status == 201:
        crt = os.path.join(env.tmp, "integrity", name + ".crt")
        with open(crt, "w") as f:
            f.write(r.json()["certificate_chain"])
    return r, crt, key


def _policies(crt):
    """The certificatePolicies OIDs of the leaf in crt, as openssl prints them."""
    out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-ext", "certificatePolicies"],
                         capture_output=True, text=True).stdout
    return [ln.split("Policy:", 1)[1].strip() for ln in out.splitlines() if "Policy:" in ln]


def _record(env, serial):
    out = subprocess.run(["redis-cli", "-p", str(env.redis_port), "GET", "portcullis:issued:" + serial],
                         capture_output=True, text=True).stdout.strip()
    return json.loads(out)


@contextlib.contextmanager
def _levels_gateway(env, name):
    """A gateway (_gateway) on a LevelVerifier, both stopped after the block."""
    v = LevelVerifier()
    gw = _gateway(env, name, v.port)
    try:
        yield gw
    finally:
        gw.stop()
        v.stop()


def _get(env, gw, path, crt=None, key=None, cert=None, headers=()):
    ctx = cert_ctx(env, crt, key) if crt else None
    with env.connect(gw, cert, ctx=ctx) as c:
        return c.request("GET", path, headers=list(headers), bearer=None)


def _check_level(env, gw, crt, key, level, what):
    """crt passes every /api/<lv> with lv <= level (the upstream sees
    X-Device-Integrity: level, never a client's), and every other one is
    refused 403 integrity_too_low with nothing forwarded."""
    rank = LEVELS.index(level)
    for lv in LEVELS:
        path = "/api/%s/x" % lv
        if LEVELS.index(lv) <= rank:
            resp = _get(env, gw, path, crt, key, headers=[(H, "strong"), ("x-device-integrity", "strong"),
                                                          ("X-DEVICE-INTEGRITY", "strong")])
            info = upstream_info(resp, "%s on %s" % (what, path))
            eq(upstream_headers(info, H), [level], "%s on %s: %s" % (what, path, H))
        else:
            before = env.upstream_count()
            expect_error(env, _get(env, gw, path, crt, key), before, 403, "integrity_too_low",
                         "%s on %s" % (what, path))


def _lifetime(not_after):
    return calendar.timegm(time.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ")) - time.time()


def _check_issued(env, r, crt, level, what, lifetime=None):
    eq(r.status, 201 if "renew" not in what else 200, "%s: status (%s)" % (what, r.body[:300]))
    out = r.json()
    eq(out.get("integrity"), level, "%s: response integrity" % what)
    eq(_record(env, out["serial"]).get("integrity"), level, "%s: issuance record integrity" % what)
    want = [] if level == "unattested" else ["%s.%d" % (ARC, LEVELS.index(level))]
    eq(_policies(crt), want, "%s: certificatePolicies" % what)
    left = _lifetime(out["not_after"])
    want_s = lifetime if lifetime is not None else LIFETIME.get(level, DEFAULT_LIFETIME)
    check(abs(left - want_s) < 120, "%s: lifetime %.0fs, expected %ds" % (what, left, want_s))
    return out


@test("integrity: Play device and basic verdicts and provider none give device, basic and none "
      "certificates; each passes the routes it meets and gets 403 integrity_too_low on the others")
def _(env):
    with _levels_gateway(env, "int-levels") as gw:
        r, crt, key = _issue(env, gw, "lv-device", "android",
                             verdicts="MEETS_DEVICE_INTEGRITY,MEETS_BASIC_INTEGRITY")
        _check_issued(env, r, crt, "device", "Play device verdict")
        _check_level(env, gw, crt, key, "device", "device certificate")
        r, crt, key = _issue(env, gw, "lv-basic", "android_basic", verdicts="MEETS_BASIC_INTEGRITY")
        _check_issued(env, r, crt, "basic", "Play basic verdict")
        _check_level(env, gw, crt, key, "basic", "basic certificate")
        r, crt, key = _issue(env, gw, "lv-none", "dev")
        _check_issued(env, r, crt, "none", "provider none")
        _check_level(env, gw, crt, key, "none", "none certificate")
        # no min_integrity: any level passes, with its header
        info = upstream_info(_get(env, gw, "/api/any/x", crt, key, headers=[(H, "strong")]))
        eq(upstream_headers(info, H), ["none"], "none certificate on a route without min_integrity")


@test("integrity: a test-PKI certificate without any policy is unattested: refused by min_integrity "
      "none, and carries no X-Device-Integrity (a client's is stripped)")
def _(env):
    with _levels_gateway(env, "int-unattested") as gw:
        before = env.upstream_count()
        body = expect_error(env, _get(env, gw, "/api/none/x", cert="device"), before, 403, "integrity_too_low",
                            "PKI device certificate on min_integrity none")
        eq(body["message"], "this route requires an attested device certificate", "message")
        info = upstream_info(_get(env, gw, "/api/any/x", cert="device",
                                  headers=[(H, "strong"), ("x-device-integrity", "device")]))
        eq(upstream_headers(info, H), [], "client-sent %s reached the upstream" % H)
        # the spellings an upstream might read as the header are refused outright
        for name in ("X_Device_Integrity", "x_device_integrity", "X-Device_Integrity", "X.Device.Integrity"):
            before = env.upstream_count()
            expect_error(env, _get(env, gw, "/api/any/x", cert="device", headers=[(name, "strong")]), before,
                         400, "header_name_collision", name)


def _csr_for(env, name, key):
    """A CSR for the existing key: its PEM text."""
    _, path = Minter(env, "integrity").csr(name, "/CN=" + name, key=key)
    with open(path) as f:
        return f.read()


def _save(env, name, r):
    crt = os.path.join(env.tmp, "integrity", name + ".crt")
    with open(crt, "w") as f:
        f.write(r.json().get("certificate_chain", "") if r.status in (200, 201) else "")
    return crt


def _issued_keys(env):
    out = subprocess.run(["redis-cli", "-p", str(env.redis_port), "--scan", "--pattern", "portcullis:issued:*"],
                         capture_output=True, text=True).stdout
    return sorted(out.split())


NEW_KEY = "a renewal with a new key needs a fresh attestation (the integrity level is about the key)"


def _renew_new_key_refused(env, gw, crt, key, name, what):
    """A renewal without attestation onto a new key: 403 key_not_bound, nothing
    issued, nothing forwarded."""
    _, csr = Minter(env, "integrity").csr_pem(name, "/CN=x")
    issued, before = _issued_keys(env), env.upstream_count()
    expect_error(env, _post(env, gw, "/certificates/renew", {"csr": csr}, cert=crt, key=key), before, 403,
                 "key_not_bound", what, message=NEW_KEY)
    eq(_issued_keys(env), issued, what + ": issuance records")


@test("integrity: renewal without attestation keeps the calling certificate's level and lifetime for the same "
      "key, refuses a new key of an attested caller (403 key_not_bound, nothing issued); an unattested caller "
      "renews unattested with any key")
def _(env):
    with _levels_gateway(env, "int-renew") as gw:
        r, crt, key = _issue(env, gw, "rn-basic", "android_basic", verdicts="MEETS_BASIC_INTEGRITY")
        _check_issued(env, r, crt, "basic", "issue")
        _renew_new_key_refused(env, gw, crt, key, "rn-basic-new", "renew of a basic certificate onto a new key")
        r = _post(env, gw, "/certificates/renew", {"csr": _csr_for(env, "rn-basic-2", key)}, cert=crt, key=key)
        crt2 = _save(env, "rn-basic-2", r)
        _check_issued(env, r, crt2, "basic", "renew of a basic certificate with its key")
        _check_level(env, gw, crt2, key, "basic", "renewed basic certificate")
        # renewal with a fresh attestation takes the new verdict, for a new key too
        r = _post(env, gw, "/certificates/challenge", {}, cert=crt2, key=key)
        eq(r.status, 200, "device-class challenge")
        nonce = r.json()["nonce"]
        key3, csr3 = Minter(env, "integrity").csr_pem("rn-basic-3", "/CN=x")
        r = _post(env, gw, "/certificates/renew",
                  {"csr": csr3, "platform": "android", "nonce": nonce,
                   "integrity_token": _token(env, nonce, csr3, "MEETS_DEVICE_INTEGRITY")}, cert=crt2, key=key)
        crt3 = _save(env, "rn-basic-3", r)
        _check_issued(env, r, crt3, "device", "renew with a device verdict")
        # strong: the same key keeps it (and its lifetime), a new key is refused
        r, crt5, key5 = _issue(env, gw, "rn-strong", "harmony", token="allow-strong")
        _check_issued(env, r, crt5, "strong", "issue strong")
        _renew_new_key_refused(env, gw, crt5, key5, "rn-strong-new", "renew of a strong certificate onto a new key")
        r = _post(env, gw, "/certificates/renew", {"csr": _csr_for(env, "rn-strong-2", key5)}, cert=crt5, key=key5)
        crt6 = _save(env, "rn-strong-2", r)
        _check_issued(env, r, crt6, "strong", "renew of a strong certificate with its key")
        _check_level(env, gw, crt6, key5, "strong", "renewed strong certificate")
        # the test PKI's device certificate records no level: its renewal neither, with a new key too
        key4, csr4 = Minter(env, "integrity").csr_pem("rn-pki", "/CN=x")
        r = _post(env, gw, "/certificates/renew", {"csr": csr4}, cert=env.pki("device.crt"), key=env.pki("device.key"))
        crt4 = _save(env, "rn-pki", r)
        _check_issued(env, r, crt4, "unattested", "renew of an unattested certificate", lifetime=DEFAULT_LIFETIME)
        before = env.upstream_count()
        expect_error(env, _get(env, gw, "/api/none/x", crt4, key4), before, 403, "integrity_too_low",
                     "renewed unattested certificate on min_integrity none")
        info = upstream_info(_get(env, gw, "/api/any/x", crt4, key4))
        eq(upstream_headers(info, H), [], "renewed unattested certificate: %s" % H)


@test("integrity: an http verifier's level (basic by default, at most max_level: device unless the platform "
      "allows strong)")
def _(env):
    with _levels_gateway(env, "int-http") as gw:
        r, crt, _ = _issue(env, gw, "hv-default", "huawei", token="allow")
        _check_issued(env, r, crt, "basic", "verifier without a level")
        r, crt, _ = _issue(env, gw, "hv-device", "huawei", token="allow-device")
        _check_issued(env, r, crt, "device", "verifier level device")
        r, _, _ = _issue(env, gw, "hv-strong", "huawei", token="allow-strong")
        eq((r.status, r.json().get("error"), r.json().get("message")),
           (403, "attestation_failed", "attestation verifier claimed a level above this platform's max_level"),
           "verifier level strong above max_level device")
        r, _, _ = _issue(env, gw, "hv-odd", "huawei", token="allow-high")
        eq((r.status, r.json().get("error")), (403, "attestation_failed"), "verifier level unknown")
        r, crt, key = _issue(env, gw, "hv-harmony", "harmony", token="allow-strong")
        _check_issued(env, r, crt, "strong", "verifier level strong with max_level strong")
        _check_level(env, gw, crt, key, "strong", "strong certificate")


@test("integrity: the access log names the level; min_integrity is reloadable")
def _(env):
    v = LevelVerifier()
    cfg = _config(env, v.port, gated="strong")
    gw = ReloadGateway(env, "int-reload", cfg)
    try:
        r, crt, key = _issue(env, gw.gw, "rl-device", "android", verdicts="MEETS_DEVICE_INTEGRITY")
        eq(r.status, 201, "issue")
        before = env.upstream_count()
        expect_error(env, _get(env, gw.gw, "/api/gated/one", crt, key), before, 403, "integrity_too_low",
                     "device certificate on min_integrity strong")
        gw.reload_ok(dict(cfg, routes=_routes("device")), what="min_integrity strong -> device")
        info = upstream_info(_get(env, gw.gw, "/api/gated/two", crt, key), "after the reload")
        eq(upstream_headers(info, H), ["device"], H)
        lines = []
        for ln in gw.log_text().splitlines():
            try:
                doc = json.loads(ln)
            except ValueError:
                continue
            if doc.get("event") == "access" and str(doc.get("path", "")).startswith("/api/gated/"):
                lines.append((doc.get("path"), doc.get("status"), doc.get("integrity"), doc.get("error")))
        eq(sorted(lines), [("/api/gated/one", 403, "device", "integrity_too_low"),
                           ("/api/gated/two", 200, "device", None)], "access log lines")
        pki = [ln for ln in gw.log_text().splitlines() if '"path":"/certificates/challenge"' in ln]
        check(pki and all(json.loads(ln).get("integrity", "absent") is None for ln in pki),
              "a bootstrap (unattested) request logs integrity null: %r" % pki[:1])
    finally:
        gw.stop()
        v.stop()
