"""Integrity levels, the follow-ups: an App Attest device's state lives as
long as its device set (the longest lifetime of any level), whatever the
level of the certificate that stored it; levels are read only from the
certificates of identity.integrity_classes (docs/issuance.md "Integrity
levels")."""

import base64
import hashlib
import json
import os
import subprocess

from certs import Minter, device_section
from harness import REPO, check, eq, fail, test, upstream_headers, upstream_info
from testkit import cert_ctx, expect_error, issuance_config, post_json

MINT_AA = os.path.join(REPO, "build", "mint-appattest")
APP = "ABCDE12345.com.example.app"
ARC = "2.25.189217713610360413943209378316248556528"   # the default OIDs: ARC.<level>
STRONG_OID = ARC + ".3"
H = "X-Device-Integrity"


def _aa(*args):
    r = subprocess.run([MINT_AA] + list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail("mint-appattest %s: %s" % (args[0], r.stderr))
    return r.stdout


def _post(env, gw, path, body, cert="bootstrap", key=None):
    ctx = cert_ctx(env, cert, key) if key else None
    with env.connect(gw, None if key else cert, ctx=ctx) as c:
        return post_json(c, path, body)


def _bound(nonce, key_path):
    """SHA-256(nonce || SHA-256(SPKI DER of the key)), hex: App Attest's clientDataHash."""
    spki = subprocess.run(["openssl", "pkey", "-in", key_path, "-pubout", "-outform", "DER"],
                          capture_output=True, check=True).stdout
    return hashlib.sha256(nonce.encode() + hashlib.sha256(spki).digest()).hexdigest()


def _redis(env, *args):
    return subprocess.run(["redis-cli", "-p", str(env.redis_port)] + list(args), capture_output=True,
                          text=True, timeout=10).stdout.strip()


@test("levels: an App Attest device's state lives as long as its device set (the longest lifetime of any "
      "level), after the issue and after an attested renewal, not the certificate's lifetime")
def _(env):
    d = os.path.join(env.tmp, "lv-aa")
    os.makedirs(d, exist_ok=True)
    _aa("pki", d)
    cfg = env.config()
    ios = {"provider": "app_attest", "app_ids": [APP], "root_ca": os.path.join(d, "root.pem")}
    # production: strong, 2d; the device set lives 7d (level none's lifetime, the longest)
    cfg["issuance"] = issuance_config(env, {"ios": ios}, lifetime="1h",
                                      lifetime_by_integrity={"strong": "2d", "none": "7d"})
    gw = env.start_gateway("lv-aa", cfg)
    week = 7 * 86400
    try:
        m = Minter(env, "lv-aa-csr")
        key, csr = m.csr_pem("c1", "/CN=x")
        nonce = _post(env, gw, "/certificates/challenge", {}).json()["nonce"]
        aakey = os.path.join(d, "k.aakey")
        _aa("key", aakey)
        att = json.loads(_aa("attest", "--pki", d, "--key", aakey, "--app-id", APP, "--cdh", _bound(nonce, key)))
        r = _post(env, gw, "/certificates/issue", {"platform": "ios", "attestation": att["attestation"],
                                                   "key_id": att["key_id"], "csr": csr, "nonce": nonce})
        eq((r.status, r.json().get("integrity")), (201, "strong"), "issue (%s)" % r.body[:200])
        dev = r.json()["device_id"]
        crt = os.path.join(d, "c1.crt")
        with open(crt, "w") as f:
            f.write(r.json()["certificate_chain"])
        for what in ("issue", "renewal"):
            dttl = int(_redis(env, "TTL", "portcullis:device:" + dev))
            attl = int(_redis(env, "TTL", "portcullis:attest:" + dev))
            check(week - 120 < dttl <= week, "%s: device set TTL %d, expected %d" % (what, dttl, week))
            check(week - 120 < attl <= week, "%s: attestation state TTL %d, expected the device set's %d"
                  % (what, attl, week))
            if what == "renewal":
                break
            key2, csr2 = m.csr_pem("c2", "/CN=x")
            n2 = _post(env, gw, "/certificates/challenge", {}, cert=crt, key=key).json()["nonce"]
            assertion = json.loads(_aa("assert", "--key", aakey, "--app-id", APP, "--cdh", _bound(n2, key2),
                                       "--counter", "1"))["assertion"]
            _redis(env, "EXPIRE", "portcullis:attest:" + dev, "100")
            r = _post(env, gw, "/certificates/renew", {"platform": "ios", "nonce": n2, "assertion": assertion,
                                                       "csr": csr2}, cert=crt, key=key)
            eq((r.status, r.json().get("integrity")), (200, "strong"), "renewal (%s)" % r.body[:200])
    finally:
        gw.stop()


def _policy_cert(env, m, name, ca):
    """A client certificate for a new key, signed by the PKI's CA `ca`, naming
    the strong OID in certificatePolicies: (crt, key)."""
    key, csr = m.csr(name, "/CN=" + name)
    return m.sign(name, csr, "0x%s" % hashlib.sha256(name.encode()).hexdigest()[:16], "lvpol",
                  ca=m.pki_ca(ca)), key


def _classes_gateway(env, name, with_issuance, identity=None):
    cfg = env.config()
    cfg["routes"] = [
        {"path": "/certificates/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
         "require_bearer": False},
        {"path": "/lv/none", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
         "require_bearer": False, "min_integrity": "none"},
        {"path": "/lv/any", "upstream": "echo", "allow_classes": ["bootstrap", "device"], "require_bearer": False},
    ]
    if with_issuance:
        cfg["issuance"] = issuance_config(env, {"x": {"provider": "refuse"}})
    if identity:
        cfg["identity"] = identity
    return env.start_gateway(name, cfg)


def _get(env, gw, path, crt, key, headers=()):
    with env.connect(gw, ctx=cert_ctx(env, crt, key)) as c:
        return c.request("GET", path, headers=list(headers), bearer=None)


@test("levels: only the certificates of identity.integrity_classes (default: the issuance device class) "
      "record a level: another class's certificate naming the strong OID is unattested (403 integrity_too_low, "
      "no X-Device-Integrity upstream)")
def _(env):
    ext = device_section("lvpol", "lv-0001") + "certificatePolicies = %s\n" % STRONG_OID
    m = Minter(env, "lv-classes", extensions=ext)
    boot, boot_key = _policy_cert(env, m, "boot-strong", "bootstrap-ca")
    dev, dev_key = _policy_cert(env, m, "dev-strong", "device-ca")
    cases = [("issuance", True, None, "device"),
             ("no issuance: the class named device", False, None, "device"),
             ("integrity_classes: [bootstrap]", False, {"integrity_classes": ["bootstrap"]}, "bootstrap")]
    for i, (what, with_iss, identity, honoured) in enumerate(cases):
        gw = _classes_gateway(env, "lv-classes-%d" % i, with_iss, identity)
        try:
            for cls, crt, key in (("device", dev, dev_key), ("bootstrap", boot, boot_key)):
                w = "%s: %s-class certificate with the strong OID" % (what, cls)
                if cls == honoured:
                    info = upstream_info(_get(env, gw, "/lv/none/x", crt, key, [(H, "basic")]), w)
                    eq(upstream_headers(info, H), ["strong"], w + ": " + H)
                    continue
                before = env.upstream_count()
                expect_error(env, _get(env, gw, "/lv/none/x", crt, key), before, 403, "integrity_too_low", w,
                             message="this route requires an attested device certificate")
                info = upstream_info(_get(env, gw, "/lv/any/x", crt, key, [(H, "strong")]), w)
                eq(upstream_headers(info, H), [], w + ": " + H)
        finally:
            gw.stop()
