"""Certificate issuance: bootstrap certificate -> challenge -> attested CSR ->
device certificate that then works on the API; renewal; refusals."""

import json
import os
import subprocess
import time

from certs import Minter
from harness import (REFUSAL_ERRORS, check, eq, fail, free_port, test, upstream_headers,
                     upstream_info)
from testkit import (Verifier, bind_challenge, cert_ctx, issuance_config, play_keys, play_platform,
                     play_token, post_json)

PACKAGE = "com.example.app"
DIGEST = "Zm9vYmFyLWFwcC1zaWduaW5nLWNlcnQtZGlnZXN0LTA"   # base64url of the app signing cert digest


def _setup(env):
    return play_keys(env, "issuance")


def _gateway(env, name, verifier_port, extra=None, admin=None):
    """admin: (port, token) to add the admin listener."""
    d = _setup(env)
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {
        "android": play_platform(d, PACKAGE, DIGEST),
        "huawei": {"provider": "http", "url": "http://127.0.0.1:%d/verify" % verifier_port},
        "feature_phone": {"provider": "refuse"},
    }, **(extra or {}))
    if admin:
        cfg["admin"] = {"listen": "127.0.0.1:%d" % admin[0]}
        return env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": admin[1]})
    return env.start_gateway(name, cfg)


def _post(env, gw, cert, path, body, key=None, raw=None):
    ctx = None
    if key:   # a certificate/key pair from files outside the PKI
        ctx = cert_ctx(env, cert, key)
        cert = None
    with env.connect(gw, cert, ctx=ctx) as c:
        return post_json(c, path, raw if raw is not None else body)


def _challenge(env, gw, cert="bootstrap", **kw):
    r = _post(env, gw, cert, "/certificates/challenge", {}, **kw)
    eq(r.status, 200, "challenge status (%s)" % r.body[:200])
    return r.json()["nonce"]


def _csr(env, name):
    return Minter(env, "issuance").csr_pem(name, "/CN=i-want-to-be-admin")


def _token(env, nonce, csr, **kw):
    """A Play Integrity token for this nonce and CSR: its nonce is the
    key-binding challenge (docs/issuance.md)."""
    return play_token(os.path.join(env.tmp, "issuance"), nonce, csr,
                      kw.get("package", PACKAGE), kw.get("digest", DIGEST),
                      signing_key=kw.get("signing_key"), verdicts=kw.get("verdicts"),
                      timestamp_ms=kw.get("timestamp_ms"))


def _issue(env, gw, name, platform="android", token=None, nonce=None):
    key, csr = _csr(env, name)
    nonce = nonce or _challenge(env, gw)
    tok = token if token is not None else _token(env, nonce, csr)
    r = _post(env, gw, "bootstrap", "/certificates/issue",
              {"csr": csr, "platform": platform, "integrity_token": tok, "nonce": nonce})
    return r, key, nonce


def _save(env, name, chain):
    path = os.path.join(env.tmp, "issuance", name + ".crt")
    with open(path, "w") as f:
        f.write(chain)
    return path


@test("issuance: bootstrap -> challenge -> attested CSR -> device certificate that works on the API")
def _(env):
    v = Verifier()
    gw = _gateway(env, "iss", v.port)
    try:
        r, key, _ = _issue(env, gw, "phone1")
        eq(r.status, 201, "issue status (%s)" % r.body[:300])
        out = r.json()
        for k in ("certificate_chain", "not_after", "device_id", "serial"):
            check(k in out, "response lacks %s" % k)
        crt = _save(env, "phone1", out["certificate_chain"])
        text = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-text"], capture_output=True,
                              text=True).stdout
        check("CN = %s" % out["device_id"] in text and "i-want-to-be-admin" not in text,
              "subject is not the device id alone")
        check("TLS Web Client Authentication" in text, "no clientAuth EKU")
        check("CA:FALSE" in text, "not CA:FALSE")
        # the new certificate is a device-class identity on the API
        with env.connect(gw, ctx=cert_ctx(env, crt, key)) as c:
            resp = c.request("GET", "/api/after-issuance")
        eq(resp.status, 200, "API status with the issued certificate")
        info = upstream_info(resp)
        eq(upstream_headers(info, "X-Device-Id"), [out["device_id"]], "X-Device-Id")
        eq(upstream_headers(info, "X-Client-Cert-Class"), ["device"], "class")
        eq(upstream_headers(info, "X-Client-Cert-Serial"), [out["serial"]], "serial")
        # recorded in Redis
        rec = subprocess.run(["redis-cli", "-p", str(env.redis_port), "GET",
                              "portcullis:issued:" + out["serial"]], capture_output=True, text=True).stdout
        check(out["device_id"] in rec, "issuance record missing: %r" % rec)
    finally:
        gw.stop()
        v.stop()


@test("issuance refusals: replayed nonce, wrong nonce, wrong package, bad CSR, refused platform, wrong class")
def _(env):
    v = Verifier()
    gw = _gateway(env, "iss-refuse", v.port)
    try:
        r, _, nonce = _issue(env, gw, "p2")
        eq(r.status, 201, "first issue")
        key, csr = _csr(env, "p3")
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": csr, "platform": "android", "integrity_token": _token(env, nonce, csr), "nonce": nonce})
        eq((r.status, r.json().get("error")), (403, "nonce_invalid"), "replayed nonce")
        n2 = _challenge(env, gw)
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": csr, "platform": "android", "integrity_token": _token(env, "other-" + n2[:20], csr),
                   "nonce": n2})
        eq((r.status, r.json().get("error")), (403, "key_not_bound"), "token bound to another nonce")
        n2 = _challenge(env, gw)
        _, csr_other = _csr(env, "p3-other")
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": csr, "platform": "android", "integrity_token": _token(env, n2, csr_other),
                   "nonce": n2})
        eq((r.status, r.json().get("error")), (403, "key_not_bound"),
           "a genuine token for this nonce, made for another CSR key")
        n2 = _challenge(env, gw)
        r = _post(env, gw, "bootstrap", "/certificates/issue", {"csr": csr, "platform": "android", "nonce": n2})
        eq((r.status, r.json().get("error"), r.json().get("message")),
           (400, "bad_request", 'missing "integrity_token"'), "no token")
        n3 = _challenge(env, gw)
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": csr, "platform": "android", "integrity_token": _token(env, n3, csr, package="com.evil"),
                   "nonce": n3})
        eq((r.status, r.json().get("error")), (403, "attestation_failed"), "wrong package")
        n4 = _challenge(env, gw)
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                   "platform": "android", "integrity_token": _token(env, n4, csr), "nonce": n4})
        eq((r.status, r.json().get("error")), (400, "invalid_csr"), "garbage CSR")
        n5 = _challenge(env, gw)
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": csr, "platform": "feature_phone", "integrity_token": "x", "nonce": n5})
        eq((r.status, r.json().get("error")), (403, "platform_refused"), "refused platform")
        r = _post(env, gw, "bootstrap", "/certificates/issue", None, raw=b"{not json")
        eq((r.status, r.json().get("error")), (400, "bad_request"), "malformed JSON")
        r = _post(env, gw, "device", "/certificates/issue", {})
        eq(r.status, 403, "device class on the issue route")
        r = _post(env, gw, "bootstrap", "/certificates/renew", {})
        eq(r.status, 403, "bootstrap class on the renew route")
    finally:
        gw.stop()
        v.stop()


@test("issuance with an http verifier: allow issues, deny refuses with the reason")
def _(env):
    v = Verifier()
    gw = _gateway(env, "iss-http", v.port)
    try:
        n = _challenge(env, gw)
        _, csr = _csr(env, "hw1")
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": csr, "platform": "huawei", "integrity_token": "allow-me", "nonce": n})
        eq(r.status, 201, "allowed by the verifier (%s)" % r.body[:200])
        challenge, key_sha256 = bind_challenge(n, csr)
        eq({k: v.seen[-1].get(k) for k in ("platform", "integrity_token", "nonce", "challenge", "key_sha256")},
           {"platform": "huawei", "integrity_token": "allow-me", "nonce": n, "challenge": challenge,
            "key_sha256": key_sha256}, "what the verifier is asked: the token, the nonce and the key binding")
        r, _, _ = _issue(env, gw, "hw2", platform="huawei", token="deny-me")
        eq((r.status, r.json().get("error")), (403, "attestation_failed"), "denied by the verifier")
    finally:
        gw.stop()
        v.stop()


@test("renewal: same device id, new serial; old certificate revoked when configured")
def _(env):
    v = Verifier()
    gw = _gateway(env, "iss-renew", v.port, {"revoke_old_on_renew": True})
    try:
        r, key, _ = _issue(env, gw, "r1")
        eq(r.status, 201, "issue")
        first = r.json()
        crt = _save(env, "r1", first["certificate_chain"])
        # without attestation, an attested certificate renews with its own key
        key2, csr2 = Minter(env, "issuance").csr_pem("r1b", "/CN=x", key=key)
        r = _post(env, gw, crt, "/certificates/renew", {"csr": csr2}, key=key)
        eq(r.status, 200, "renew status (%s)" % r.body[:300])
        second = r.json()
        eq(second["device_id"], first["device_id"], "device id kept")
        check(second["serial"] != first["serial"], "serial not renewed")
        crt2 = _save(env, "r1-renewed", second["certificate_chain"])
        time.sleep(0.5)
        try:
            with env.connect(gw, ctx=cert_ctx(env, crt, key)) as c:
                old = c.request("GET", "/api/old")
        except REFUSAL_ERRORS:
            old = None
        check(old is None, "the renewed-away certificate is still served (%r)" % (old,))
        with env.connect(gw, ctx=cert_ctx(env, crt2, key2)) as c:
            eq(c.request("GET", "/api/new").status, 200, "renewed certificate served")
    finally:
        gw.stop()
        v.stop()


@test("revoke by device id: every live certificate of the device, via the admin API and the CLI")
def _(env):
    import http.client
    from harness import BINARY

    token = "admin-token-for-device-revocation"
    admin_port = free_port()

    def admin_post(body):
        c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
        try:
            c.request("POST", "/admin/revocations", body=json.dumps(body).encode(),
                      headers={"Authorization": "Bearer " + token,
                               "Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, json.loads(r.read().decode())
        finally:
            c.close()

    def served(crt, key):
        try:
            with env.connect(gw, ctx=cert_ctx(env, crt, key)) as c:
                return c.request("GET", "/api/device-revocation").status == 200
        except REFUSAL_ERRORS:
            return False

    def refused_within(pairs, seconds, what):
        deadline = time.monotonic() + seconds
        while any(served(crt, key) for crt, key in pairs):
            if time.monotonic() > deadline:
                fail("%s: still served %.1fs after the revocation" % (what, seconds))
            time.sleep(0.05)

    def redis(*args):
        return subprocess.run(["redis-cli", "-p", str(env.redis_port)] + list(args),
                              capture_output=True, text=True, timeout=10).stdout.strip()

    v = Verifier()
    gw = _gateway(env, "iss-revoke-device", v.port, admin=(admin_port, token))
    try:
        from harness import wait_tcp
        wait_tcp(admin_port, gw.proc, 10, "admin listener")
        # one device, two live certificates: issued, then renewed (old one kept)
        r, key1, _ = _issue(env, gw, "rd1")
        eq(r.status, 201, "issue (%s)" % r.body[:300])
        first = r.json()
        crt1 = _save(env, "rd1", first["certificate_chain"])
        key2, csr2 = Minter(env, "issuance").csr_pem("rd1b", "/CN=x", key=key1)   # its own key
        r = _post(env, gw, crt1, "/certificates/renew", {"csr": csr2}, key=key1)
        eq(r.status, 200, "renew (%s)" % r.body[:300])
        second = r.json()
        eq(second["device_id"], first["device_id"], "renewal keeps the device id")
        crt2 = _save(env, "rd1-renewed", second["certificate_chain"])
        check(served(crt1, key1) and served(crt2, key2), "both certificates served before")

        status, doc = admin_post({"device_id": first["device_id"], "reason": "stolen phone"})
        t0 = time.monotonic()
        eq(status, 200, "POST device_id status (%r)" % (doc,))
        want = sorted("device:" + s for s in (first["serial"], second["serial"]))
        eq(doc.get("device_id"), first["device_id"], "answer's device_id")
        eq(doc.get("entry"), "device-id=" + first["device_id"], "answer's device entry")
        eq(doc.get("certificates"), 2, "answer's live certificates")
        eq(sorted(doc.get("revoked", [])), sorted(want + [doc["entry"]]),
           "answer's revoked entries")
        refused_within([(crt1, key1), (crt2, key2)], 1.0 - (time.monotonic() - t0),
                       "the device's certificates")
        with env.connect(gw, "device") as c:
            eq(c.request("GET", "/api/other-device").status, 200, "another device still served")
        for e in want:
            eq(redis("SISMEMBER", "portcullis:revoked", e), "1", "%s in the set" % e)
            meta = json.loads(redis("HGET", "portcullis:revoked:meta", e))
            eq(meta.get("reason"), "stolen phone", "%s reason" % e)
        check(any("action=revoke_device" in ln and first["device_id"] in ln
                  for ln in gw.log_tail(100)), "revoke_device not logged")

        status, doc = admin_post({"device_id": "no-such-device"})
        eq((status, doc.get("revoked"), doc.get("certificates")),
           (200, ["device-id=no-such-device"], 0), "device id without certificates")

        # a certificate whose issuance record has expired is not listed, but
        # the device entry refuses it all the same
        r, key3, _ = _issue(env, gw, "rd3")
        eq(r.status, 201, "issue rd3")
        third = r.json()
        crt3 = _save(env, "rd3", third["certificate_chain"])
        redis("DEL", "portcullis:issued:" + third["serial"])
        status, doc = admin_post({"device_id": third["device_id"]})
        eq((status, doc.get("revoked")), (200, ["device-id=" + third["device_id"]]),
           "device whose record expired")
        refused_within([(crt3, key3)], 1.0, "certificate of a revoked device id")

        # the CLI does the same
        r, key4, _ = _issue(env, gw, "rd4")
        eq(r.status, 201, "issue rd4")
        fourth = r.json()
        crt4 = _save(env, "rd4", fourth["certificate_chain"])
        cli = [BINARY, "revoke", "-c", gw.config_path, "--device-id", fourth["device_id"],
               "--reason", "lost"]
        p = subprocess.run(cli, capture_output=True, text=True, timeout=20)
        t0 = time.monotonic()
        eq(p.returncode, 0, "CLI revoke --device-id (stderr %r)" % p.stderr)
        check("device:" + fourth["serial"] in p.stdout, "CLI output %r" % p.stdout)
        refused_within([(crt4, key4)], 1.0 - (time.monotonic() - t0), "CLI-revoked certificate")
        p = subprocess.run(cli, capture_output=True, text=True, timeout=20)
        eq(p.returncode, 0, "CLI revoke --device-id again")
        check("already revoked" in p.stdout, "CLI second output %r" % p.stdout)
        p = subprocess.run(cli[:5] + ["no-such-device-2"], capture_output=True, text=True,
                           timeout=20)
        eq(p.returncode, 0, "CLI device without certificates (stderr %r)" % p.stderr)
        check("revoked device-id=no-such-device-2" in p.stdout and "0 live certificate" in p.stdout,
              "CLI device without certificates: stdout %r" % p.stdout)
    finally:
        gw.stop()
        v.stop()


@test("issuance refusals (2): digest, verdict, stale token, foreign JWS key, tampered JWE, weak or forged CSR, Redis down")
def _(env):
    v = Verifier()
    gw = _gateway(env, "iss-refuse2", v.port)
    d = os.path.join(env.tmp, "issuance")
    try:
        def issue_with(tok_kw=None, csr=None, token=None):
            n = _challenge(env, gw)
            csr = csr or _csr(env, "x")[1]
            tok = token(n, csr) if token else _token(env, n, csr, **(tok_kw or {}))
            body = {"csr": csr, "platform": "android", "integrity_token": tok, "nonce": n}
            return _post(env, gw, "bootstrap", "/certificates/issue", body)

        def refused(r, status, code, what):
            eq((r.status, r.json().get("error")), (status, code), what)
            check(r.json().get("message"), "%s: no reason given" % what)

        refused(issue_with({"digest": "dW5rbm93bi1hcHAtc2lnbmluZy1jZXJ0LWRpZ2VzdA"}), 403,
                "attestation_failed", "unknown signing digest")
        refused(issue_with({"verdicts": "MEETS_BASIC_INTEGRITY"}), 403, "attestation_failed",
                "missing device verdict")
        refused(issue_with({"timestamp_ms": int((time.time() - 3600) * 1000)}), 403, "attestation_failed",
                "stale timestamp")
        other = os.path.join(d, "other-signing.pem")
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", other],
                       check=True, capture_output=True)
        refused(issue_with({"signing_key": other}), 403, "attestation_failed", "JWS signed by another key")

        def tampered(n, csr):
            t = _token(env, n, csr).split(".")
            tag = t[4]
            t[4] = ("A" if tag[0] != "A" else "B") + tag[1:]
            return ".".join(t)
        refused(issue_with(token=tampered), 403, "attestation_failed", "bad JWE tag")

        # CSRs: RSA-1024, forged self-signature, and a CA:true request (ignored)
        rsa_key = os.path.join(d, "rsa1024.key")
        rsa_csr = subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", rsa_key,
                                  "-subj", "/CN=x"], capture_output=True, text=True).stdout
        refused(issue_with(csr=rsa_csr), 400, "invalid_csr", "RSA-1024 CSR")
        key, good = _csr(env, "forge")
        der = subprocess.run(["openssl", "req", "-in", os.path.join(d, "forge.csr"), "-outform", "DER"],
                             capture_output=True).stdout
        bad = bytearray(der)
        bad[-5] ^= 0x55   # inside the signature
        import base64
        forged = "-----BEGIN CERTIFICATE REQUEST-----\n%s\n-----END CERTIFICATE REQUEST-----\n" % \
            "\n".join(base64.b64encode(bytes(bad)).decode()[i:i + 64] for i in range(0, len(bad) * 2, 64)).strip()
        refused(issue_with(csr=forged), 400, "invalid_csr", "CSR whose signature does not match")
        ca_key = os.path.join(d, "ca-req.key")
        ca_csr = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                 "-nodes", "-keyout", ca_key, "-subj", "/CN=root", "-addext",
                                 "basicConstraints=critical,CA:TRUE"], capture_output=True, text=True).stdout
        r = issue_with(csr=ca_csr)
        eq(r.status, 201, "a CSR asking for CA:true is issued, without it (%s)" % r.body[:200])
        crt = _save(env, "ca-req", r.json()["certificate_chain"])
        text = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-text"], capture_output=True,
                              text=True).stdout
        check("CA:FALSE" in text and "CA:TRUE" not in text, "the requested CA:true was not ignored")

        # the bootstrap certificate still cannot reach any API route
        with env.connect(gw, "bootstrap") as c:
            eq(c.request("GET", "/api/anything").status, 403, "bootstrap on the API")

        # Redis down: 503 and nothing issued
        n = _challenge(env, gw)
        key, csr = _csr(env, "down")
        before = subprocess.run(["redis-cli", "-p", str(env.redis_port), "--scan", "--pattern",
                                 "portcullis:issued:*"], capture_output=True, text=True).stdout.split()
        subprocess.run(["redis-cli", "-p", str(env.redis_port), "CLIENT", "PAUSE", "3000", "ALL"],
                       capture_output=True)
        r = _post(env, gw, "bootstrap", "/certificates/issue",
                  {"csr": csr, "platform": "android", "integrity_token": _token(env, n, csr), "nonce": n})
        eq((r.status, r.json().get("error")), (503, "issuance_unavailable"), "Redis not answering")
        check("certificate_chain" not in r.json(), "a certificate was handed out")
        time.sleep(3.2)
        after = subprocess.run(["redis-cli", "-p", str(env.redis_port), "--scan", "--pattern",
                                "portcullis:issued:*"], capture_output=True, text=True).stdout.split()
        eq(len(after), len(before), "issuance records written while Redis was down")
    finally:
        gw.stop()
        v.stop()
