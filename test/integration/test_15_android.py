"""Android key attestation (provider android_key_attestation): a bootstrap
connection obtains a nonce, the "device" generates its key with that nonce
as the attestation challenge, and sends the chain with the CSR. Chains are
minted at test time under a test root (build/mint-keyattest); real device
chains are read from ../shared/corpora/android-key-attestation/ when present
(never checked in: their certificates are far-future)."""

import base64
import datetime
import hashlib
import json
import os
import ssl
import subprocess

from certs import Minter
from harness import (BINARY, REPO, Skip, check, eq, fail, test, to_yaml, upstream_headers,
                     upstream_info)
from testkit import (cert_ctx, config_check, expect_error, issuance_config, play_keys,
                     play_platform, play_token, post_json, redis_cli, redis_keys)

MINTK = os.path.join(REPO, "build", "mint-keyattest")
PACKAGE = "com.example.app"
OTHER_PACKAGE = "com.example.other"
SIGNING = hashlib.sha256(b"portcullis test app signing certificate").digest()
OTHER_SIGNING = hashlib.sha256(b"someone else's signing certificate").digest()
PLAY_DIGEST = base64.urlsafe_b64encode(SIGNING).decode().rstrip("=")
CORPUS = os.environ.get("PORTCULLIS_ANDROID_CORPUS",
                        os.path.join(REPO, "..", "shared", "corpora", "android-key-attestation"))


def _dir(env):
    d = os.path.join(env.tmp, "keyattest")
    if not os.path.exists(os.path.join(d, "root.pem")):
        os.makedirs(d, exist_ok=True)
        r = subprocess.run([MINTK, "--gen-ca", d], capture_output=True, text=True)
        if r.returncode != 0:
            fail("mint-keyattest --gen-ca: %s" % r.stderr)
    return play_keys(env, "keyattest")


def _platform(env, **over):
    d = _dir(env)
    p = {"provider": "android_key_attestation", "roots": [os.path.join(d, "root.pem")],
         "packages": [{"name": PACKAGE, "signing_sha256": [SIGNING.hex()]}]}
    p.update(over)
    return p


def _play(env):
    d = _dir(env)
    p = play_platform(d, PACKAGE, PLAY_DIGEST)
    del p["provider"]
    return p


def _status_file(env, name, entries):
    """A revocation status file (Google's format) with these entries in the
    keyattest folder; its path."""
    path = os.path.join(_dir(env), name)
    with open(path, "w") as f:
        json.dump({"entries": entries}, f)
    return path


def _self_signed(d, key_name, pem_name, subj, days, *extra):
    """A self-signed EC P-256 certificate d/pem_name (key d/key_name); its path."""
    pem = os.path.join(d, pem_name)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", os.path.join(d, key_name),
                    "-subj", subj] + list(extra) + ["-days", str(days), "-out", pem],
                   capture_output=True, check=True)
    return pem


def _gateway(env, name, **over):
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"android": _platform(env, **over)})
    return env.start_gateway(name, cfg)


def _challenge(env, gw):
    with env.connect(gw, "bootstrap") as c:
        r = post_json(c, "/certificates/challenge", {})
    eq(r.status, 200, "challenge status (%s)" % r.body[:200])
    return r.json()["nonce"]


def _csr(env, name):
    return Minter(env, "keyattest").csr_pem(name, "/CN=android-device")


def _chain(env, challenge, key=None, *args):
    """The chain as the app sends it (a list of base64 DER, leaf first); the
    allowed package and digest unless args give others."""
    cmd = [MINTK, "--ca", _dir(env), "--challenge", challenge]
    if "--package" not in args:
        cmd += ["--package", PACKAGE]
    if "--digest" not in args:
        cmd += ["--digest", SIGNING.hex()]
    if key:
        cmd += ["--key", key]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        fail("mint-keyattest %s: %s" % (" ".join(args), r.stderr))
    return json.loads(r.stdout)


def _spki_sha256(key):
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).digest()


def _bound(nonce, key):
    """The Play Integrity nonce for (nonce, CSR key): base64url(SHA-256(nonce || SHA-256(SPKI)))."""
    c = hashlib.sha256(nonce.encode() + _spki_sha256(key)).digest()
    return base64.urlsafe_b64encode(c).decode().rstrip("=")


def _token(env, nonce, package=PACKAGE):
    return play_token(_dir(env), nonce, None, package, PLAY_DIGEST)


def _issue(env, gw, csr, nonce, attestation, token=None):
    body = {"csr": csr, "platform": "android", "nonce": nonce, "attestation": attestation}
    if token is not None:
        body["integrity_token"] = token
    with env.connect(gw, "bootstrap") as c:
        return post_json(c, "/certificates/issue", body)


def _issued(env):
    return len(redis_keys(env.redis_port, "portcullis:issued:*"))


def _refused(env, gw, r, status, code, what, message=None, before_issued=None):
    expect_error(env, r, env.upstream_count(), status, code, what, message)
    if before_issued is not None:
        eq(_issued(env), before_issued, what + ": certificates issued")


def _serial_hex(pem_path):
    out = subprocess.run(["openssl", "x509", "-in", pem_path, "-noout", "-serial"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1].lower().lstrip("0") or "0"


@test("android key attestation: an attested hardware key gets a device certificate that works on the API")
def _(env):
    gw = _gateway(env, "ka-ok")
    try:
        key, csr = _csr(env, "ok1")
        nonce = _challenge(env, gw)
        r = _issue(env, gw, csr, nonce, _chain(env, nonce, key))
        eq(r.status, 201, "issue status (%s)" % r.body[:300])
        out = r.json()
        crt = os.path.join(env.tmp, "keyattest", "ok1.crt")
        with open(crt, "w") as f:
            f.write(out["certificate_chain"])
        with env.connect(gw, ctx=cert_ctx(env, crt, key)) as c:
            resp = c.request("GET", "/api/android-attested")
        eq(resp.status, 200, "API status with the issued certificate")
        eq(upstream_headers(upstream_info(resp), "X-Device-Id"), [out["device_id"]], "X-Device-Id")
        rec = json.loads(redis_cli(env.redis_port, "GET", "portcullis:issued:" + out["serial"]))
        check(rec["attestation"].startswith("android_key_attestation;tee/tee;boot=verified"),
              "issuance record's attestation: %r" % rec["attestation"])
        # unknown tags (as later KeyMint versions add) are accepted
        nonce = _challenge(env, gw)
        r = _issue(env, gw, csr, nonce, _chain(env, nonce, key, "--fault", "unknown-tags"))
        eq(r.status, 201, "chain with unknown tags (%s)" % r.body[:300])
        # the leaf's validity dates are the device's (its clock, the app's
        # setCertificateNotBefore/After): not enforced; the nonce is the freshness
        for fault, what in (("future-leaf", "a leaf dated an hour ahead"),
                            ("expired", "a leaf whose validity is over")):
            nonce = _challenge(env, gw)
            r = _issue(env, gw, csr, nonce, _chain(env, nonce, key, "--fault", fault))
            eq(r.status, 201, "%s (%s)" % (what, r.body[:300]))
    finally:
        gw.stop()


REFUSALS = [
    # (what, mint args, status, code, message)
    ("another challenge", ("--challenge-other",), 403, "key_not_bound",
     "attestation challenge does not match the nonce"),
    ("another package", ("--package", "com.evil.app"), 403, "attestation_failed",
     "attestation application package not in the allow-list"),
    ("another signing digest", ("--digest", OTHER_SIGNING.hex()), 403,
     "attestation_failed", "app signing certificate not in the allow-list"),
    ("a software-level key", ("--attest-level", "software", "--km-level", "software"), 403,
     "attestation_failed", "attestation security level below the configured minimum"),
    ("a software keymaster", ("--km-level", "software"), 403, "attestation_failed",
     "keymaster security level below the configured minimum"),
    ("an unverified boot state", ("--boot", "unverified"), 403, "attestation_failed",
     "verified boot state is not Verified"),
    ("a failed boot state", ("--boot", "failed"), 403, "attestation_failed",
     "verified boot state is not Verified"),
    ("an imported key", ("--origin", "2"), 403, "attestation_failed",
     "attested key was not generated in secure hardware (origin)"),
    ("a securely imported key", ("--origin", "4"), 403, "attestation_failed",
     "attested key was not generated in secure hardware (origin)"),
    ("no origin", ("--fault", "no-origin"), 403, "attestation_failed",
     "attested key was not generated in secure hardware (origin)"),
    ("origin only in softwareEnforced", ("--fault", "sw-origin"), 403, "attestation_failed",
     "attested key was not generated in secure hardware (origin)"),
    ("origin twice in teeEnforced", ("--fault", "dup-origin"), 403, "attestation_failed",
     "key description: an authorization appears twice in one list"),
    ("a Verified boot on an unlocked bootloader", ("--device-locked", "0"), 403,
     "attestation_failed", "device bootloader is not locked"),
    ("a key without SIGN", ("--purposes", "0,1"), 403, "attestation_failed",
     "attested key purpose does not include SIGN"),
    ("root of trust only in softwareEnforced", ("--fault", "sw-only"), 403, "attestation_failed",
     "root of trust missing from the hardware-enforced list"),
    ("a chain to another root", ("--fault", "other-root"), 403, "attestation_failed",
     "attestation chain does not verify to a configured root"),
    ("an expired intermediate", ("--fault", "expired-int"), 403, "attestation_failed",
     "attestation chain does not verify to a configured root"),
    ("the leaf alone", ("--fault", "leaf-only"), 403, "attestation_failed",
     "attestation chain does not verify to a configured root"),
    ("a key description on the intermediate too", ("--fault", "int-keydesc"), 403,
     "attestation_failed", "key description on a certificate other than the leaf"),
    ("a leaf without a key description", ("--fault", "no-extension"), 403, "attestation_failed",
     "attestation leaf has no (or more than one) key description extension"),
    ("a truncated key description", ("--fault", "truncate"), 403, "attestation_failed",
     "key description is not one DER SEQUENCE"),
    ("a key description with purpose twice", ("--fault", "dup-purpose"), 403,
     "attestation_failed", "key description: an authorization appears twice in one list"),
    ("no application id", ("--fault", "no-appid"), 403, "attestation_failed",
     "attestation application id missing"),
    ("a CSR key other than the attested key", ("--other-key",), 403, "key_not_bound", None),
]


@test("android key attestation refusals: each failed check is its own 403, and nothing is issued",
      timeout=90)
def _(env):
    gw = _gateway(env, "ka-refuse")
    try:
        key, csr = _csr(env, "ref1")
        for what, args, status, code, message in REFUSALS:
            nonce = _challenge(env, gw)
            args = list(args)
            challenge, use_key = nonce, key
            if "--challenge-other" in args:
                args.remove("--challenge-other")
                challenge = _challenge(env, gw)
            if "--other-key" in args:
                args.remove("--other-key")
                use_key = None
            chain = _chain(env, challenge, use_key, *args)
            before = _issued(env)
            _refused(env, gw, _issue(env, gw, csr, nonce, chain), status, code, what, message,
                     before)
        for what, att, message in [
                ("attestation missing", None, None),
                ("attestation a string", "MIIB", None),
                ("attestation an empty array", [], None),
                ("attestation not base64 DER", ["bm90IGEgY2VydA"],
                 "attestation holds an element that is not a base64 DER certificate")]:
            nonce = _challenge(env, gw)
            body = {"csr": csr, "platform": "android", "nonce": nonce}
            if att is not None:
                body["attestation"] = att
            before = _issued(env)
            with env.connect(gw, "bootstrap") as c:
                r = post_json(c, "/certificates/issue", body)
            _refused(env, gw, r, 400, "bad_request", what, message, before)
    finally:
        gw.stop()


@test("android key attestation: min_security_level strongbox and allow_unverified_boot")
def _(env):
    gw = _gateway(env, "ka-strongbox", min_security_level="strongbox", allow_unverified_boot=True)
    try:
        key, csr = _csr(env, "sb1")
        nonce = _challenge(env, gw)
        before = _issued(env)
        _refused(env, gw, _issue(env, gw, csr, nonce, _chain(env, nonce, key)), 403,
                 "attestation_failed", "TEE key where StrongBox is required",
                 "attestation security level below the configured minimum", before)
        nonce = _challenge(env, gw)
        r = _issue(env, gw, csr, nonce, _chain(env, nonce, key, "--attest-level", "strongbox",
                                               "--km-level", "strongbox", "--boot", "unverified"))
        eq(r.status, 201, "StrongBox key on an unverified boot, allowed (%s)" % r.body[:300])
        nonce = _challenge(env, gw)
        r = _issue(env, gw, csr, nonce, _chain(env, nonce, key, "--attest-level", "strongbox",
                                               "--km-level", "strongbox", "--device-locked", "0"))
        eq(r.status, 201, "Verified boot on an unlocked bootloader, allowed (%s)" % r.body[:300])
        nonce = _challenge(env, gw)
        before = _issued(env)
        _refused(env, gw, _issue(env, gw, csr, nonce, _chain(
            env, nonce, key, "--attest-level", "strongbox", "--km-level", "strongbox", "--boot",
            "failed")), 403, "attestation_failed", "failed boot, even with allow_unverified_boot",
            "verified boot state is not Verified", before)
    finally:
        gw.stop()


@test("android key attestation: a chain certificate listed in the revocation status file is refused")
def _(env):
    d = _dir(env)
    serial = _serial_hex(os.path.join(d, "int.pem"))
    status = _status_file(env, "status.json", {
        "c35747a084470c3135aeefe2b8d40cd6": {"status": "REVOKED", "reason": "KEY_COMPROMISE"},
        "00" + serial.upper(): {"status": "SUSPENDED", "reason": "KEY_COMPROMISE"}})
    gw = _gateway(env, "ka-revoked", revocation_status_file=status)
    try:
        key, csr = _csr(env, "rv1")
        nonce = _challenge(env, gw)
        before = _issued(env)
        _refused(env, gw, _issue(env, gw, csr, nonce, _chain(env, nonce, key)), 403,
                 "attestation_failed", "revoked intermediate",
                 "a certificate of the attestation chain is revoked (status file)", before)
    finally:
        gw.stop()
    with open(status, "w") as f:
        json.dump({"entries": {"c35747a084470c3135aeefe2b8d40cd6": {"status": "REVOKED"}}}, f)
    gw = _gateway(env, "ka-not-revoked", revocation_status_file=status)
    try:
        key, csr = _csr(env, "rv2")
        nonce = _challenge(env, gw)
        r = _issue(env, gw, csr, nonce, _chain(env, nonce, key))
        eq(r.status, 201, "chain not in the status file (%s)" % r.body[:300])
    finally:
        gw.stop()


def _der_serial_hex(b64):
    pem = ssl.DER_cert_to_PEM_cert(base64.b64decode(b64))
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1].lower().lstrip("0") or "0"


@test("android key attestation: a revoked leaf, root, or extra certificate sent with the chain is refused",
      timeout=90)
def _(env):
    from loadgen import ReloadGateway
    d = _dir(env)
    status = _status_file(env, "rv-each-status.json", {})
    extra_pem = _self_signed(d, "extra.key", "extra.pem", "/CN=unrelated", 2)
    with open(extra_pem) as f:
        extra = base64.b64encode(ssl.PEM_cert_to_DER_cert(f.read())).decode()
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"android": _platform(env, revocation_status_file=status)})
    rg = ReloadGateway(env, "ka-rv-each", cfg)
    try:
        key, csr = _csr(env, "rv3")
        nonce = _challenge(env, rg)
        r = _issue(env, rg, csr, nonce, _chain(env, nonce, key) + [extra])
        eq(r.status, 201, "an unlisted extra certificate is harmless (%s)" % r.body[:300])
        for what, listed in (("the leaf", lambda ch: _der_serial_hex(ch[0])),
                             ("the root", lambda ch: _serial_hex(os.path.join(d, "root.pem"))),
                             ("an extra certificate off the path", lambda ch: _der_serial_hex(extra))):
            nonce = _challenge(env, rg)
            chain = _chain(env, nonce, key) + [extra]
            with open(status, "w") as f:
                json.dump({"entries": {listed(chain): {"status": "REVOKED",
                                                       "reason": "KEY_COMPROMISE"}}}, f)
            rg.reload_ok(what="reload listing " + what)
            before = _issued(env)
            _refused(env, rg, _issue(env, rg, csr, nonce, chain), 403, "attestation_failed",
                     "revoked " + what,
                     "a certificate of the attestation chain is revoked (status file)", before)
    finally:
        rg.stop()


@test("android key attestation config: every key checked with its position, the status file at load")
def _(env):
    d = _dir(env)
    bad_json = os.path.join(d, "bad-status.json")
    with open(bad_json, "w") as f:
        f.write('{"entries": {"zz-not-hex": {"status": "REVOKED"}}}')
    not_json = os.path.join(d, "not-status.json")
    with open(not_json, "w") as f:
        f.write("<html>")
    leaf_pem = _self_signed(d, "nc.key", "not-a-ca.pem", "/CN=not a ca", 1,
                            "-addext", "basicConstraints=critical,CA:FALSE")
    p = "issuance.platforms.android"
    cases = [
        ({"roots": []}, p + ".roots: "),
        ({"roots": [leaf_pem]}, "is not a CA certificate"),
        ({"roots": [os.path.join(d, "missing.pem")]}, p + ".roots[0]: "),
        ({"packages": [{"name": "not a package", "signing_sha256": [SIGNING.hex()]}]},
         p + ".packages[0].name: expected an Android package name"),
        ({"packages": [{"name": PACKAGE, "signing_sha256": ["abc"]}]},
         p + ".packages[0].signing_sha256[0]: expected the app signing certificate's SHA-256"),
        ({"packages": [{"name": PACKAGE}]}, 'missing required key "signing_sha256"'),
        ({"min_security_level": "software"}, p + ".min_security_level: "),
        ({"allow_unverified_boot": "maybe"}, p + ".allow_unverified_boot: "),
        ({"require": ["play_integrity"]}, p + ".require: must list android_key_attestation"),
        ({"require": ["android_key_attestation", "play_integrity"]},
         p + ".require: lists play_integrity, so the play_integrity settings are required"),
        ({"play_integrity": _play(env)}, p + ".play_integrity: given, but require does not list"),
        ({"require": ["android_key_attestation", "play_integrity"],
          "play_integrity": dict(_play(env), provider="play_integrity")},
         p + ".play_integrity: takes no provider"),
        ({"require": ["android_key_attestation", "play_integrity"],
          "play_integrity": {"package_name": PACKAGE}},
         'missing required key "decryption_key_file"'),
        ({"require": ["android_key_attestation", "play_integrity"],
          "play_integrity": dict(_play(env), package_name="com.example.other")},
         p + '.play_integrity.package_name: "com.example.other" is not one of packages[].name'),
        ({"revocation_status_file": os.path.join(d, "missing.json")},
         p + ".revocation_status_file: "),
        ({"revocation_status_file": bad_json},
         p + '.revocation_status_file: "%s": entry "zz-not-hex" is not a hex serial' % bad_json),
        ({"revocation_status_file": not_json}, p + '.revocation_status_file: "%s" is not JSON'
         % not_json),
        ({"surprise": 1}, p + ": unknown key"),
    ]
    for over, msg in cases:
        cfg = env.config()
        cfg["issuance"] = issuance_config(env, {"android": _platform(env, **over)})
        rc, out = config_check(env, cfg, "ka-check")
        eq(rc, 2, "--check with %r: exit status (%s)" % (over, out[-300:]))
        check(msg in out, "--check with %r: %r not in: %s" % (over, msg, out))
        check(":" in out.split(msg)[0], "--check with %r: no position" % (over,))
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"android": _platform(
        env, require=["android_key_attestation", "play_integrity"], play_integrity=_play(env))})
    rc, out = config_check(env, cfg, "ka-check-ok")
    eq(rc, 0, "--check of a good section (%s)" % out[-300:])


@test("android key attestation with play_integrity required: both must pass, both in the record")
def _(env):
    gw = _gateway(env, "ka-play", require=["android_key_attestation", "play_integrity"],
                  play_integrity=_play(env),
                  packages=[{"name": OTHER_PACKAGE, "signing_sha256": [SIGNING.hex()]},
                            {"name": PACKAGE, "signing_sha256": [SIGNING.hex()]}])
    try:
        key, csr = _csr(env, "pl1")
        nonce = _challenge(env, gw)
        r = _issue(env, gw, csr, nonce, _chain(env, nonce, key), _token(env, _bound(nonce, key)))
        eq(r.status, 201, "chain and bound Play token (%s)" % r.body[:300])
        rec = json.loads(redis_cli(env.redis_port, "GET", "portcullis:issued:" + r.json()["serial"]))
        check("android_key_attestation" in rec["attestation"] and
              "play_integrity;PLAY_RECOGNIZED" in rec["attestation"],
              "the record names both: %r" % rec["attestation"])
        nonce = _challenge(env, gw)
        before = _issued(env)
        _refused(env, gw, _issue(env, gw, csr, nonce, _chain(env, nonce, key)), 400,
                 "bad_request", "chain without the Play token",
                 "integrity_token (a Play Integrity token) is required for this platform", before)
        nonce = _challenge(env, gw)
        _refused(env, gw, _issue(env, gw, csr, nonce, _chain(env, nonce, key), _token(env, nonce)),
                 403, "key_not_bound", "Play token bound to the bare nonce", None, before)
        nonce = _challenge(env, gw)
        _refused(env, gw, _issue(env, gw, csr, nonce, _chain(env, nonce, key),
                                 _token(env, _bound(nonce, key), package="com.evil.app")),
                 403, "attestation_failed", "Play token for another package",
                 "attestation request package name mismatch", before)
        nonce = _challenge(env, gw)
        _refused(env, gw, _issue(env, gw, csr, nonce, _chain(env, nonce, key, "--boot", "unverified"),
                                 _token(env, _bound(nonce, key))),
                 403, "attestation_failed", "good Play token, unverified boot",
                 "verified boot state is not Verified", before)
        # the chain names another allow-listed package than the one Play vouched for
        nonce = _challenge(env, gw)
        _refused(env, gw, _issue(env, gw, csr, nonce,
                                 _chain(env, nonce, key, "--package", OTHER_PACKAGE),
                                 _token(env, _bound(nonce, key))),
                 403, "attestation_failed", "chain for another allow-listed package than Play's",
                 "Play Integrity token is for another package than the attested key", before)
        # apps sharing a UID: the application id lists both; Play's is the one used
        nonce = _challenge(env, gw)
        r = _issue(env, gw, csr, nonce,
                   _chain(env, nonce, key, "--package", OTHER_PACKAGE, "--package", PACKAGE),
                   _token(env, _bound(nonce, key)))
        eq(r.status, 201, "application id listing the Play package second (%s)" % r.body[:300])
    finally:
        gw.stop()


# Real device chains. Google's roots and genuine attestation chains are
# far-future certificates, which the project never checks in; they are read
# from ../shared/corpora/android-key-attestation/ (or
# $PORTCULLIS_ANDROID_CORPUS) when present. Public sample chains from real
# devices are in the test data of Google's open-source verifier,
# github.com/android/keyattestation, under testdata/<device>/sdk<N>/ (e.g.
# testdata/akita/sdk34/: TEE_EC_NONE, SB_RSA_NONE ..., each with a .json of
# the description it expects; the layout this test reads), and in
# github.com/google/android-key-attestation, server/src/test/resources/ and
# server/examples/pem/. Layout: roots.pem (the Google hardware attestation
# roots), and per case <case>.pem (the chain, leaf first) with <case>.json.
# Each is run through `portcullis verify-attestation` at a time inside the
# chain's validity, with the case's own challenge as the nonce.
@test("android key attestation: real device chains from the shared corpus")
def _(env):
    if not os.path.isdir(CORPUS):
        raise Skip("%s is absent (real chains are never checked in)" % os.path.normpath(CORPUS))
    roots = os.path.join(CORPUS, "roots.pem")
    if not os.path.exists(roots):
        raise Skip("%s has no roots.pem (the Google hardware attestation roots)" % CORPUS)
    h = subprocess.run([BINARY, "verify-attestation", "--help"], capture_output=True, text=True)
    if "verify-attestation" not in h.stdout + h.stderr or h.returncode not in (0, 2):
        raise Skip("this build has no `portcullis verify-attestation`")
    cases = []
    for base, _dirs, files in os.walk(CORPUS):
        for f in sorted(files):
            if f.endswith(".pem") and os.path.exists(os.path.join(base, f[:-4] + ".json")):
                cases.append(os.path.join(base, f[:-4]))
    if not cases:
        raise Skip("no <case>.pem with its <case>.json in %s" % CORPUS)
    for case in cases:
        _real_case(env, case, roots)


def _not_before(pem):
    out = subprocess.run(["openssl", "x509", "-noout", "-startdate"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    return datetime.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")


def _real_case(env, case, roots):
    """One real chain through `portcullis verify-attestation`: with another
    nonce it must get as far as the challenge check (chain, parse, levels
    before it all passed); with its own challenge, when that is text and the
    case is one this provider accepts, it must be accepted at level strong."""
    with open(case + ".pem") as f:
        text = f.read()
    end = "-----END CERTIFICATE-----"
    pems = [b[b.index("-----BEGIN CERTIFICATE-----"):] + end + "\n"
            for b in text.split(end) if "-----BEGIN CERTIFICATE-----" in b]
    ders = [ssl.PEM_cert_to_DER_cert(p) for p in pems]
    with open(case + ".json") as f:
        want = json.load(f)
    name = os.path.relpath(case, CORPUS)
    at = max(_not_before(p) for p in pems).strftime("%Y-%m-%dT%H:%M:%SZ")
    app = want.get("softwareEnforced", {}).get("attestationApplicationId") or \
        want.get("hardwareEnforced", {}).get("attestationApplicationId") or {}
    sigs = [base64.urlsafe_b64encode(base64.b64decode(s)).decode().rstrip("=")
            for s in app.get("signatures", [])]
    pkgs = [{"name": p["name"], "signing_sha256": sigs or [SIGNING.hex()]}
            for p in app.get("packages", [])] or [{"name": PACKAGE, "signing_sha256": [SIGNING.hex()]}]
    level = want.get("attestationSecurityLevel")
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"android": {
        "provider": "android_key_attestation", "roots": [roots], "packages": pkgs,
        "min_security_level": "tee", "allow_unverified_boot": True}})
    path = os.path.join(env.tmp, "ka-real.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    token = os.path.join(env.tmp, "ka-real.json")
    with open(token, "w") as f:
        json.dump([base64.b64encode(d).decode() for d in ders], f)

    def run(nonce):
        r = subprocess.run([BINARY, "verify-attestation", "-c", path, "--platform", "android",
                            "--at", at, "--nonce", nonce, token],
                           capture_output=True, text=True, timeout=20)
        try:
            return r.returncode, json.loads(r.stdout)
        except ValueError:
            fail("%s: verify-attestation printed no verdict (exit %d): %s%s"
                 % (name, r.returncode, r.stdout, r.stderr))

    rc, out = run("not-this-case-s-challenge")
    eq((rc, out.get("reason"), out.get("detail")),
       (1, "key_not_bound", "attestation challenge does not match the nonce"),
       "%s at %s with another nonce" % (name, at))
    challenge = base64.b64decode(want.get("attestationChallenge", ""))
    if not (challenge and all(32 < b < 127 for b in challenge)):
        return   # a binary challenge cannot be a nonce: the check above is the test
    rc, out = run(challenge.decode("ascii"))
    if level == "SOFTWARE":
        eq((rc, out.get("detail")), (1, "attestation security level below the configured minimum"),
           "%s (a software key)" % name)
        return
    hw = want.get("hardwareEnforced", {})
    boot = hw.get("rootOfTrust", {}).get("verifiedBootState")
    if not (sigs and "2" in [str(p) for p in hw.get("purposes", [])] and boot != "FAILED"):
        check(rc == 1, "%s: refused (no signing digest, no SIGN or a failed boot): %r" % (name, out))
        return
    eq((rc, out.get("ok"), out.get("level")), (0, True, "strong"),
       "%s at %s with its own challenge: %r" % (name, at, out))


@test("android key attestation: the status file is read at reload: a broken one is refused, a new entry applies",
      timeout=60)
def _(env):
    from loadgen import ReloadGateway
    d = _dir(env)
    status = _status_file(env, "reload-status.json", {})
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"android": _platform(env, revocation_status_file=status)})
    rg = ReloadGateway(env, "ka-reload", cfg)
    try:
        key, csr = _csr(env, "rl1")
        with open(status, "w") as f:
            f.write('{"entries": ')
        code, doc = rg.reload()
        eq((code, doc.get("error")), (422, "reload_failed"), "reload with a broken status file")
        check(any("revocation_status_file" in e and "is not JSON" in e for e in doc.get("errors", [])),
              "the refusal names the status file: %r" % doc.get("errors"))
        nonce = _challenge(env, rg)
        r = _issue(env, rg, csr, nonce, _chain(env, nonce, key))
        eq(r.status, 201, "the previous list keeps serving (%s)" % r.body[:300])
        with open(status, "w") as f:
            json.dump({"entries": {_serial_hex(os.path.join(d, "int.pem")): {
                "status": "REVOKED", "reason": "KEY_COMPROMISE"}}}, f)
        rg.reload_ok(what="reload with the intermediate listed")
        nonce = _challenge(env, rg)
        before = _issued(env)
        _refused(env, rg, _issue(env, rg, csr, nonce, _chain(env, nonce, key)), 403,
                 "attestation_failed", "after the reload",
                 "a certificate of the attestation chain is revoked (status file)", before)
    finally:
        rg.stop()
