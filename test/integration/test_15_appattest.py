"""Apple App Attest (provider app_attest) end to end: a bootstrap connection
gets a challenge, attests with an App Attest object bound to its CSR key, and
the issued device certificate works; renewal over the device class with an
assertion; replayed and non-increasing assertions refused; a CSR key other
than the bound one refused key_not_bound. The App Attest PKI and every object
are minted at test time by build/mint-appattest (its root is a test root)."""

import base64
import hashlib
import json
import os
import subprocess

from certs import Minter
from harness import REPO, check, eq, fail, test, upstream_headers, upstream_info
from testkit import cert_ctx, issuance_config, post_json

MINT = os.path.join(REPO, "build", "mint-appattest")
APP = "ABCDE12345.com.example.app"


def _run(*args):
    r = subprocess.run([MINT] + list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail("mint-appattest %s: %s" % (args[0], r.stderr))
    return r.stdout


def _pki(env, name="appattest"):
    d = os.path.join(env.tmp, name)
    if not os.path.exists(os.path.join(d, "root.pem")):
        os.makedirs(d, exist_ok=True)
        _run("pki", d)
    return d


def _gateway(env, name, environment=None, root=None, renew_attested=True):
    d = _pki(env)
    ios = {"provider": "app_attest", "app_ids": ["ZZZZZ99999.com.example.other", APP],
           "root_ca": root or os.path.join(d, "root.pem")}
    if environment:
        ios["environment"] = environment
    cfg = env.config()
    # ios_beta: the same provider for another platform name (a device keeps the one it attested on)
    cfg["issuance"] = issuance_config(env, {"ios": ios, "ios_beta": dict(ios)},
                                      renew_requires_attestation=renew_attested)
    return env.start_gateway(name, cfg)


def _post(env, gw, cert, path, body, key=None):
    ctx = None
    if key:
        ctx = cert_ctx(env, cert, key)
        cert = None
    with env.connect(gw, cert, ctx=ctx) as c:
        return post_json(c, path, body)


def _challenge(env, gw, cert="bootstrap", key=None):
    r = _post(env, gw, cert, "/certificates/challenge", {}, key=key)
    eq(r.status, 200, "challenge status (%s)" % r.body[:200])
    return r.json()["nonce"]


def _csr(env, name):
    return Minter(env, "appattest-csr").csr_pem(name, "/CN=x")


def _bound(nonce, key_path):
    """The challenge the app attests: SHA-256(nonce || SHA-256(SPKI DER of the CSR key)), hex."""
    spki = subprocess.run(["openssl", "pkey", "-in", key_path, "-pubout", "-outform", "DER"],
                          capture_output=True, check=True).stdout
    return hashlib.sha256(nonce.encode() + hashlib.sha256(spki).digest()).hexdigest()


def _aa_key(env, name):
    path = os.path.join(_pki(env), name + ".aakey")
    if not os.path.exists(path):
        _run("key", path)
    return path


def _attest(env, aa_key, cdh, *extra, app=APP, pki=None):
    return json.loads(_run("attest", "--pki", pki or _pki(env), "--key", aa_key, "--app-id", app,
                           "--cdh", cdh, *extra))


def _assert(aa_key, cdh, counter, app=APP):
    return json.loads(_run("assert", "--key", aa_key, "--app-id", app, "--cdh", cdh,
                           "--counter", str(counter)))["assertion"]


def _issue(env, gw, name, *extra, app=APP, csr_name=None, body_extra=None, pki=None):
    """Issues for a new CSR key; csr_name: send another CSR than the one attested."""
    key, csr = _csr(env, name)
    nonce = _challenge(env, gw)
    aa = _aa_key(env, name)
    att = _attest(env, aa, _bound(nonce, key), *extra, app=app, pki=pki)
    if csr_name:
        key, csr = _csr(env, csr_name)
    body = {"platform": "ios", "attestation": att["attestation"], "key_id": att["key_id"],
            "csr": csr, "nonce": nonce}
    body.update(body_extra or {})
    r = _post(env, gw, "bootstrap", "/certificates/issue", body)
    return r, key, aa


def _renew_asserted(env, gw, crt, key, aa, new_key, csr, counter, platform="ios"):
    """POST /certificates/renew with crt/key on a fresh challenge: an assertion
    by aa (counter) bound to new_key, and csr; the response."""
    n = _challenge(env, gw, crt, key=key)
    return _post(env, gw, crt, "/certificates/renew",
                 {"platform": platform, "nonce": n, "assertion": _assert(aa, _bound(n, new_key), counter),
                  "csr": csr}, key=key)


def _save(env, name, chain):
    path = os.path.join(_pki(env), name + ".crt")
    with open(path, "w") as f:
        f.write(chain)
    return path


def _redis(env, *args):
    return subprocess.run(["redis-cli", "-p", str(env.redis_port)] + list(args), capture_output=True,
                          text=True, timeout=10).stdout.strip()


def _attest_state(env, device_id):
    out = _redis(env, "HGETALL", "portcullis:attest:" + device_id).split("\n")
    return dict(zip(out[0::2], out[1::2])) if len(out) > 1 else {}


def _refused(r, status, code, what, msg=None):
    eq((r.status, r.json().get("error")), (status, code), "%s (%s)" % (what, r.body[:200]))
    if msg:
        check(msg in r.json().get("message", ""), "%s: message %r" % (what, r.json().get("message")))


@test("app_attest: challenge -> attestation -> device certificate works; state stored; renew with an assertion")
def _(env):
    gw = _gateway(env, "aa-issue")
    try:
        r, key, aa = _issue(env, gw, "ios1")
        eq(r.status, 201, "issue status (%s)" % r.body[:300])
        out = r.json()
        crt = _save(env, "ios1", out["certificate_chain"])
        with env.connect(gw, ctx=cert_ctx(env, crt, key)) as c:
            resp = c.request("GET", "/api/after-app-attest")
        eq(resp.status, 200, "API status with the issued certificate")
        eq(upstream_headers(upstream_info(resp), "X-Device-Id"), [out["device_id"]], "X-Device-Id")
        st = _attest_state(env, out["device_id"])
        eq((st.get("platform"), st.get("counter")), ("ios", "0"), "stored platform and counter")
        state = json.loads(st["state"])
        eq((state["app_id"], state["counter"], state["environment"]), (APP, 0, "production"), "stored state")
        check(state["public_key"] and state["receipt"] and state["key_id"], "stored key, receipt, key id")
        ttl = int(_redis(env, "TTL", "portcullis:attest:" + out["device_id"]))
        check(0 < ttl <= 86400, "state TTL like the device set: %d" % ttl)
        rec = _redis(env, "GET", "portcullis:issued:" + out["serial"])
        check("app_attest production" in rec, "issuance record summary: %r" % rec)

        # renewal: a fresh challenge over the device certificate, an assertion for the new CSR key
        key2, csr2 = _csr(env, "ios1-renew")
        n2 = _challenge(env, gw, crt, key=key)
        assertion = _assert(aa, _bound(n2, key2), 1)
        body = {"platform": "ios", "nonce": n2, "assertion": assertion, "csr": csr2}
        r = _post(env, gw, crt, "/certificates/renew", body, key=key)
        eq(r.status, 200, "renew status (%s)" % r.body[:300])
        eq(r.json()["device_id"], out["device_id"], "renewal keeps the device id")
        eq(_attest_state(env, out["device_id"]).get("counter"), "1", "counter stored after renewal")
        eq(json.loads(_attest_state(env, out["device_id"])["state"])["counter"], 1, "state counter")
        crt2 = _save(env, "ios1-renewed", r.json()["certificate_chain"])
        with env.connect(gw, ctx=cert_ctx(env, crt2, key2)) as c:
            eq(c.request("GET", "/api/renewed").status, 200, "renewed certificate served")

        # the same request again: its nonce is spent
        r = _post(env, gw, crt2, "/certificates/renew", body, key=key2)
        _refused(r, 403, "nonce_invalid", "replayed renewal request")
        # the same assertion with a fresh nonce: it does not cover that challenge
        n3 = _challenge(env, gw, crt2, key=key2)
        r = _post(env, gw, crt2, "/certificates/renew", dict(body, nonce=n3), key=key2)
        _refused(r, 403, "attestation_failed", "replayed assertion, fresh nonce", "signature")
        # a fresh assertion with the stored counter, and with a lower one
        for counter in (1, 0):
            key3, csr3 = _csr(env, "ios1-c%d" % counter)
            r = _renew_asserted(env, gw, crt2, key2, aa, key3, csr3, counter)
            _refused(r, 403, "attestation_failed", "assertion counter %d" % counter,
                     "counter not increasing")
        eq(_attest_state(env, out["device_id"]).get("counter"), "1", "counter unchanged by refusals")

        # the right key and a higher counter, but the renewal names another platform
        key5, csr5 = _csr(env, "ios1-beta")
        r = _renew_asserted(env, gw, crt2, key2, aa, key5, csr5, 2, platform="ios_beta")
        _refused(r, 403, "attestation_failed", "renewal on another platform", "another platform")

        # a concurrent renewal raised the stored counter after this one read the state:
        # the compare-and-set refuses it
        _redis(env, "HSET", "portcullis:attest:" + out["device_id"], "counter", "10")
        key4, csr4 = _csr(env, "ios1-race")
        r = _renew_asserted(env, gw, crt2, key2, aa, key4, csr4, 5)
        _refused(r, 403, "attestation_failed", "counter below the stored one (CAS)", "counter not increasing")
        eq(_attest_state(env, out["device_id"]).get("counter"), "10", "CAS left the counter")

        # no stored state for this device
        _redis(env, "DEL", "portcullis:attest:" + out["device_id"])
        r = _renew_asserted(env, gw, crt2, key2, aa, key4, csr4, 20)
        _refused(r, 403, "attestation_failed", "renewal without a stored App Attest key", "no App Attest key")
    finally:
        gw.stop()


@test("app_attest refusals: CSR key not the bound one, app id, aaguid, key id, another root, missing members; nothing reaches the upstream")
def _(env):
    gw = _gateway(env, "aa-refuse")
    try:
        before = env.upstream_count()
        r, _, _ = _issue(env, gw, "k1", csr_name="k1-other")
        _refused(r, 403, "key_not_bound", "a CSR key other than the attested one")
        r, _, _ = _issue(env, gw, "k2", app="ABCDE12345.com.example.evil")
        _refused(r, 403, "attestation_failed", "another bundle id", "rpIdHash")
        r, _, _ = _issue(env, gw, "k3", "--aaguid", "development")
        _refused(r, 403, "attestation_failed", "development aaguid in production", "aaguid")
        r, _, _ = _issue(env, gw, "k4", "--counter", "3")
        _refused(r, 403, "attestation_failed", "counter not 0", "counter")
        r, _, _ = _issue(env, gw, "k5", body_extra={"key_id": base64.b64encode(b"\x01" * 32).decode()})
        _refused(r, 403, "attestation_failed", "another key id", "key_id")
        r, _, _ = _issue(env, gw, "k6", "--reencode")
        _refused(r, 403, "key_not_bound", "re-encoded authData")
        r, _, _ = _issue(env, gw, "k7", pki=_pki(env, "appattest-other"))
        _refused(r, 403, "attestation_failed", "a chain to another root", "chain")
        r, _, _ = _issue(env, gw, "k8", body_extra={"key_id": None})
        _refused(r, 400, "bad_request", "key_id missing", "key_id")
        r, _, _ = _issue(env, gw, "k9", body_extra={"attestation": 42})
        _refused(r, 400, "bad_request", "attestation not a string", "attestation")
        r, _, _ = _issue(env, gw, "k10", body_extra={"attestation": "!!not base64!!"})
        _refused(r, 400, "bad_request", "attestation not base64", "attestation")
        r, _, _ = _issue(env, gw, "k11", "--extra-ext", "--trailing", "12")
        eq(r.status, 201, "unknown extensions and data after the credential accepted (%s)" % r.body[:200])
        eq(env.upstream_count(), before, "issuance requests reached the upstream")
    finally:
        gw.stop()


@test("app_attest environment development: the development aaguid issues, the production one is refused")
def _(env):
    gw = _gateway(env, "aa-dev", environment="development")
    try:
        r, _, _ = _issue(env, gw, "d1", "--aaguid", "development")
        eq(r.status, 201, "development aaguid (%s)" % r.body[:200])
        st = json.loads(_attest_state(env, r.json()["device_id"])["state"])
        eq(st["environment"], "development", "stored environment")
        r, _, _ = _issue(env, gw, "d2")
        _refused(r, 403, "attestation_failed", "production aaguid in development", "aaguid")
    finally:
        gw.stop()


def _issued_count(env, device_id):
    return int(_redis(env, "SCARD", "portcullis:device:" + device_id) or 0)


def _renew_refused(env, gw, crt, key, body, msg, what, dev):
    """A renewal refused 403 attestation_failed with msg: nothing issued, the
    stored counter unchanged, nothing reached the upstream."""
    before, issued, counter = env.upstream_count(), _issued_count(env, dev), _attest_state(env, dev).get("counter")
    r = _post(env, gw, crt, "/certificates/renew", body, key=key)
    _refused(r, 403, "attestation_failed", what, msg)
    eq(_issued_count(env, dev), issued, what + ": certificates issued")
    eq(_attest_state(env, dev).get("counter"), counter, what + ": stored counter")
    eq(env.upstream_count(), before, what + ": requests that reached the upstream")


@test("app_attest device renews only with an assertion: not without attestation (renew_requires_attestation false), not on a non-stateful platform")
def _(env):
    d = _pki(env)
    ios = {"provider": "app_attest", "app_ids": [APP], "root_ca": os.path.join(d, "root.pem")}
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"ios": ios, "dev": {"provider": "none"}},
                                      renew_requires_attestation=False, insecure_dev=True)
    gw = env.start_gateway("aa-renew-only", cfg)
    try:
        r, key, aa = _issue(env, gw, "ro1")
        eq(r.status, 201, "issue (%s)" % r.body[:200])
        dev = r.json()["device_id"]
        crt = _save(env, "ro1", r.json()["certificate_chain"])
        _, csr2 = _csr(env, "ro1-renew")
        _renew_refused(env, gw, crt, key, {"csr": csr2}, "renews with an App Attest assertion",
                       "renewal without attestation of an App Attest device", dev)
        n = _challenge(env, gw, crt, key=key)
        _renew_refused(env, gw, crt, key, {"platform": "dev", "nonce": n, "csr": csr2}, "another platform",
                       "renewal of an App Attest device naming provider none", dev)
        # the device's own proof still renews it
        key3, csr3 = _csr(env, "ro1-asserted")
        r = _renew_asserted(env, gw, crt, key, aa, key3, csr3, 1)
        eq(r.status, 200, "renewal with an assertion (%s)" % r.body[:200])
        eq(_attest_state(env, dev).get("counter"), "1", "counter after the assertion")

        # a device without App Attest state renews as before
        key4, csr4 = _csr(env, "ro2")
        n = _challenge(env, gw)
        r = _post(env, gw, "bootstrap", "/certificates/issue", {"platform": "dev", "nonce": n, "csr": csr4})
        eq(r.status, 201, "issue on provider none (%s)" % r.body[:200])
        crt4 = _save(env, "ro2", r.json()["certificate_chain"])
        _, csr5 = Minter(env, "appattest-csr").csr_pem("ro2-renew", "/CN=x", key=key4)   # its own key
        r = _post(env, gw, crt4, "/certificates/renew", {"csr": csr5}, key=key4)
        eq(r.status, 200, "renewal without attestation of a device without state (%s)" % r.body[:200])
    finally:
        gw.stop()


@test("app_attest assertions are checked against the current config: after a reload, a withdrawn app id and a narrowed environment are refused")
def _(env):
    from loadgen import ReloadGateway
    d = _pki(env)
    ios = {"provider": "app_attest", "app_ids": ["ZZZZZ99999.com.example.other", APP],
           "root_ca": os.path.join(d, "root.pem"), "environment": "any"}
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"ios": ios})
    rg = ReloadGateway(env, "aa-reload", cfg)
    gw = rg.gw
    try:
        r, pkey, paa = _issue(env, gw, "rl-prod")
        eq(r.status, 201, "production device issued (%s)" % r.body[:200])
        pdev, pcrt = r.json()["device_id"], _save(env, "rl-prod", r.json()["certificate_chain"])
        r, dkey, daa = _issue(env, gw, "rl-dev", "--aaguid", "development")
        eq(r.status, 201, "development device issued (%s)" % r.body[:200])
        ddev, dcrt = r.json()["device_id"], _save(env, "rl-dev", r.json()["certificate_chain"])

        def body(crt, key, aa, name, counter):
            k, csr = _csr(env, name)
            n = _challenge(env, gw, crt, key=key)
            return {"platform": "ios", "nonce": n, "assertion": _assert(aa, _bound(n, k), counter), "csr": csr}

        rg.reload_ok(dict(cfg, issuance=issuance_config(env, {"ios": dict(ios, environment="production")})),
                     what="environment production")
        _renew_refused(env, gw, dcrt, dkey, body(dcrt, dkey, daa, "rl-dev-1", 1), "environment is production",
                       "development device after environment production", ddev)
        r = _post(env, gw, pcrt, "/certificates/renew", body(pcrt, pkey, paa, "rl-prod-1", 1), key=pkey)
        eq(r.status, 200, "production device still renews (%s)" % r.body[:200])

        rg.reload_ok(dict(cfg, issuance=issuance_config(env, {"ios": dict(ios, app_ids=["ZZZZZ99999.com.example.other"])})),
                     what="app id withdrawn")
        _renew_refused(env, gw, pcrt, pkey, body(pcrt, pkey, paa, "rl-prod-2", 2), "no longer in app_ids",
                       "renewal after its app id left app_ids", pdev)
    finally:
        rg.stop()


@test("app_attest state: a refused renewal without an assertion leaves its TTL as it was")
def _(env):
    gw = _gateway(env, "aa-ttl", renew_attested=False)
    try:
        r, key, _ = _issue(env, gw, "t1")
        eq(r.status, 201, "issue (%s)" % r.body[:200])
        dev = r.json()["device_id"]
        crt = _save(env, "t1", r.json()["certificate_chain"])
        _redis(env, "EXPIRE", "portcullis:attest:" + dev, "100")
        _, csr2 = _csr(env, "t1-renew")
        _renew_refused(env, gw, crt, key, {"csr": csr2}, "renews with an App Attest assertion",
                       "renewal without attestation", dev)
        ttl = int(_redis(env, "TTL", "portcullis:attest:" + dev))
        check(0 < ttl <= 100, "state TTL changed by a refused renewal: %d" % ttl)
    finally:
        gw.stop()
