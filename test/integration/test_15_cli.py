"""portcullis verify-attestation: the configured provider run offline on a
saved token (docs/issuance.md "Why was this device refused?"): one JSON line,
exit 0 accepted, 1 refused, 2 usage or configuration error."""

import base64
import hashlib
import json
import os
import re
import subprocess

from certs import Minter
from harness import BINARY, REPO, check, eq, fail, test, to_yaml
from testkit import Verifier, bind_challenge, issuance_config, play_keys, play_platform, play_token

PACKAGE = "com.example.app"
DIGEST = "Zm9vYmFyLWFwcC1zaWduaW5nLWNlcnQtZGlnZXN0LTA"
T0 = 1796205600000                 # 2026-12-02T10:00:00Z, the tokens' timestamp
AT = "2026-12-02T10:01:00Z"        # a minute later: within max_age (5m)
NONCE = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"   # 43 characters, as the gateway's


def _dir(env):
    return play_keys(env, "cli15")


def _config(env, verifier_port=1, name="cli15"):
    """A config file with the platforms the command is tried on."""
    d = _dir(env)
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {
        "android": play_platform(d, PACKAGE, DIGEST),
        "huawei": {"provider": "http", "url": "http://127.0.0.1:%d/verify" % verifier_port},
        "dev": {"provider": "none"},
        "feature_phone": {"provider": "refuse"},
    }, insecure_dev=True)
    path = os.path.join(env.tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    return path


def _csr(env, name):
    """(CSR file path, PEM, hex SHA-256 of its key's SPKI)."""
    key, pem = Minter(env, "cli15").csr_pem(name)
    path = os.path.join(env.tmp, "cli15", name + ".csr.pem")
    with open(path, "w") as f:
        f.write(pem)
    spki = base64.urlsafe_b64decode(bind_challenge(NONCE, pem)[1] + "=")
    return path, pem, spki.hex()


def _token(env, name, csr_pem, nonce=NONCE, package=PACKAGE, ts=T0):
    """A Play token bound to nonce and the CSR's key, in a file (with the
    newline an editor or `> file` leaves)."""
    d = _dir(env)
    tok = play_token(d, nonce, csr_pem, package, DIGEST, timestamp_ms=ts)
    path = os.path.join(d, name + ".token")
    with open(path, "w") as f:
        f.write(tok + "\n")
    return path


def _run(*args):
    """(exit status, the stdout line parsed as JSON or None, stderr)."""
    r = subprocess.run([BINARY, "verify-attestation"] + list(args), capture_output=True,
                       text=True, timeout=30)
    out = None
    if r.stdout:
        lines = r.stdout.split("\n")
        eq((len(lines), lines[-1]), (2, ""), "stdout is one line: %r" % r.stdout)
        out = json.loads(lines[0])
    return r.returncode, out, r.stderr


@test("cli: verify-attestation accepts a Play token at its time: exit 0 and the verdict line")
def _(env):
    cfg = _config(env)
    csr, pem, spki = _csr(env, "a")
    tok = _token(env, "a", pem)
    rc, out, err = _run("-c", cfg, "--platform", "android", "--at", AT, "--nonce", NONCE,
                        "--csr", csr, tok)
    eq((rc, out), (0, {"ok": True, "platform": "android", "provider": "play_integrity",
                       "level": "device", "app_id": PACKAGE, "key_sha256": spki,
                       "summary": "PLAY_RECOGNIZED;MEETS_DEVICE_INTEGRITY,MEETS_BASIC_INTEGRITY"}),
       "accepted (%s)" % err)
    # the same challenge given directly (base64, as App Attest samples give it)
    ch = base64.urlsafe_b64decode(bind_challenge(NONCE, pem)[0] + "=")
    rc, out, err = _run("-c", cfg, "--platform", "android", "--at", "2026-12-02T11:01:00+01:00",
                        "--client-data-hash", base64.b64encode(ch).decode(), tok)
    eq((rc, out and out["ok"], out and out["key_sha256"]), (0, True, None),
       "--client-data-hash instead of --nonce and --csr, --at with an offset (%s)" % err)


@test("cli: verify-attestation refuses a token made for another CSR key, another package, or "
      "older than max_age: exit 1 and the catalog code")
def _(env):
    cfg = _config(env)
    csr, pem, _ = _csr(env, "b")
    _, pem_other, _ = _csr(env, "b-other")
    cases = (
        ("another CSR key", _token(env, "b-other", pem_other), AT,
         {"ok": False, "reason": "key_not_bound",
          "detail": "the token's nonce is not this request's key-binding challenge"}),
        ("another package", _token(env, "b-pkg", pem, package="com.evil"), AT,
         {"ok": False, "reason": "attestation_failed", "detail": "attestation request package name mismatch"}),
        ("--at past max_age", _token(env, "b-old", pem), "2026-12-02T10:05:00.001Z",
         {"ok": False, "reason": "attestation_failed", "detail": "attestation too old"}),
    )
    for what, tok, at, want in cases:
        rc, out, err = _run("-c", cfg, "--platform", "android", "--at", at, "--nonce", NONCE,
                            "--csr", csr, tok)
        eq((rc, out), (1, want), "%s (%s)" % (what, err))
    rc, out, _ = _run("-c", cfg, "--platform", "android", "--at", "2026-12-02T10:05:00Z",
                      "--nonce", NONCE, "--csr", csr, cases[2][1])
    eq((rc, out["ok"]), (0, True), "exactly max_age old is still accepted")
    rc, out, _ = _run("-c", cfg, "--platform", "feature_phone", "--at", AT, cases[0][1])
    eq((rc, out), (1, {"ok": False, "reason": "platform_refused",
                       "detail": "platform refused by configuration"}), "a refused platform")
    with open(os.path.join(env.tmp, "cli15", "bad.csr.pem"), "w") as f:
        f.write("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    rc, out, _ = _run("-c", cfg, "--platform", "android", "--at", AT, "--nonce", NONCE,
                      "--csr", os.path.join(env.tmp, "cli15", "bad.csr.pem"), cases[0][1])
    eq((rc, out and out["reason"]), (1, "invalid_csr"), "a CSR the gateway would refuse")


@test("cli: verify-attestation runs the http verifier on its own loop and the none provider")
def _(env):
    v = Verifier()
    try:
        cfg = _config(env, v.port, name="cli15-http")
        csr, pem, spki = _csr(env, "h")
        tok = os.path.join(env.tmp, "cli15", "h.token")
        with open(tok, "w") as f:
            f.write("allow-me\n")
        rc, out, err = _run("-c", cfg, "--platform", "huawei", "--at", AT, "--nonce", NONCE,
                            "--key-id", "a2V5", "--csr", csr, tok)
        eq((rc, out), (0, {"ok": True, "platform": "huawei", "provider": "http", "level": "basic",
                           "app_id": None, "key_sha256": spki, "summary": "ok"}),
           "allowed (%s)" % err)
        challenge, key_sha256 = bind_challenge(NONCE, pem)
        eq(v.seen[-1], {"platform": "huawei", "integrity_token": "allow-me", "nonce": NONCE,
                        "challenge": challenge, "key_sha256": key_sha256},
           "what the verifier is asked: the file's token without its newline, and the binding")
        with open(tok, "w") as f:
            f.write("deny-me")
        rc, out, _ = _run("-c", cfg, "--platform", "huawei", "--at", AT, "--nonce", NONCE,
                          "--csr", csr, tok)
        eq((rc, out), (1, {"ok": False, "reason": "attestation_failed",
                           "detail": "attestation verifier did not allow"}), "denied")
        rc, out, err = _run("-c", cfg, "--platform", "dev", "--at", AT, tok)
        eq((rc, out), (0, {"ok": True, "platform": "dev", "provider": "none", "level": "none",
                           "app_id": None, "key_sha256": None, "summary": "none (insecure_dev)"}),
           "provider none (%s)" % err)
    finally:
        v.stop()
    cfg = _config(env, v.port, name="cli15-down")   # the verifier has stopped
    rc, out, _ = _run("-c", cfg, "--platform", "huawei", "--at", AT, "--nonce", NONCE,
                      "--csr", csr, tok)
    eq((rc, out), (1, {"ok": False, "reason": "issuance_unavailable",
                       "detail": "the attestation verifier is unavailable"}), "verifier down")


MINTK = os.path.join(REPO, "build", "mint-keyattest")
SIGNING_HEX = hashlib.sha256(b"cli android signing certificate").hexdigest()


def _android_hw(env):
    """A config with provider android_key_attestation (alone, and with
    play_integrity), a chain minted for NONCE with the key of a CSR, and
    the --at they are valid at: (config path, token file, CSR path, CSR key
    SPKI hex, another CSR path, --at)."""
    d = _dir(env)
    if not os.path.exists(os.path.join(d, "root.pem")):
        r = subprocess.run([MINTK, "--gen-ca", d], capture_output=True, text=True)
        eq(r.returncode, 0, "mint-keyattest --gen-ca (%s)" % r.stderr)
    m = Minter(env, "cli15")
    key, csr = m.csr("ka", "/CN=android-device")
    _, other = m.csr("ka-other", "/CN=android-device")
    with open(csr) as f:
        spki = base64.urlsafe_b64decode(bind_challenge(NONCE, f.read())[1] + "=").hex()
    r = subprocess.run([MINTK, "--ca", d, "--challenge", NONCE, "--package", PACKAGE, "--digest",
                        SIGNING_HEX, "--key", key], capture_output=True, text=True)
    eq(r.returncode, 0, "mint-keyattest (%s)" % r.stderr)
    tok = os.path.join(d, "ka.json")
    with open(tok, "w") as f:
        f.write(r.stdout)
    hw = {"provider": "android_key_attestation", "roots": [os.path.join(d, "root.pem")],
          "packages": [{"name": PACKAGE, "signing_sha256": [SIGNING_HEX]}]}
    play = dict(hw, require=["android_key_attestation", "play_integrity"], play_integrity={
        "package_name": PACKAGE, "decryption_key_file": os.path.join(d, "decryption.key"),
        "verification_key_file": os.path.join(d, "verification.key"),
        "certificate_sha256_digests": [DIGEST]})
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"android_hw": hw, "android_both": play})
    path = os.path.join(env.tmp, "cli15-ka.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    import datetime
    at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return path, tok, csr, spki, other, at


@test("cli: verify-attestation on android_key_attestation: --nonce required (exit 2), another "
      "nonce or CSR key is key_not_bound (exit 1)")
def _(env):
    cfg, tok, csr, spki, other, at = _android_hw(env)
    rc, out, err = _run("-c", cfg, "--platform", "android_hw", "--at", at, tok)
    eq((rc, out), (2, None), "no --nonce: exit 2, nothing on stdout (%s)" % err)
    check("platform android_hw (provider android_key_attestation) checks attestationChallenge = "
          "the nonce: give --nonce NONCE" in err, "no --nonce: stderr names --nonce: %r" % err)
    accepted = {"ok": True, "platform": "android_hw", "provider": "android_key_attestation",
                "level": "strong", "app_id": PACKAGE, "key_sha256": spki,
                "summary": "android_key_attestation;tee/tee;boot=verified,locked;v200"}
    rc, out, err = _run("-c", cfg, "--platform", "android_hw", "--at", at, "--nonce", NONCE, tok)
    eq((rc, out), (0, accepted), "--nonce alone (%s)" % err)
    rc, out, err = _run("-c", cfg, "--platform", "android_hw", "--at", at, "--nonce", NONCE,
                        "--csr", csr, tok)
    eq((rc, out), (0, accepted), "--nonce and the attested key's CSR (%s)" % err)
    for what, extra in (("another nonce", []), ("another nonce, with --csr", ["--csr", csr])):
        rc, out, err = _run("-c", cfg, "--platform", "android_hw", "--at", at, "--nonce",
                            "B" * 43, *(extra + [tok]))
        eq((rc, out), (1, {"ok": False, "reason": "key_not_bound",
                           "detail": "attestation challenge does not match the nonce"}),
           "%s (%s)" % (what, err))
    rc, out, err = _run("-c", cfg, "--platform", "android_hw", "--at", at, "--nonce", NONCE,
                        "--csr", other, tok)
    eq((rc, out), (1, {"ok": False, "reason": "key_not_bound",
                       "detail": "the attested key is not the CSR's key"}), "another CSR key (%s)" % err)
    rc, out, err = _run("-c", cfg, "--platform", "android_both", "--at", at, "--nonce", NONCE, tok)
    eq((rc, out), (2, None), "with play_integrity, no --csr: exit 2 (%s)" % err)
    check("platform android_both (provider android_key_attestation, require play_integrity) needs "
          "the key-binding challenge: give --csr FILE and --nonce NONCE" in err,
          "with play_integrity, no --csr: stderr: %r" % err)


@test("cli: verify-attestation usage and configuration errors exit 2 naming the flag or file")
def _(env):
    cfg = _config(env)
    csr, pem, _ = _csr(env, "u")
    tok = _token(env, "u", pem)
    missing = os.path.join(env.tmp, "cli15", "no-such.token")
    base = ["-c", cfg, "--platform", "android", "--at", AT, "--nonce", NONCE, "--csr", csr]
    cases = (
        ("unknown platform", ["-c", cfg, "--platform", "ios", "--at", AT, tok],
         r"--platform ios: not in issuance\.platforms of .* \(configured: android huawei dev "
         r"feature_phone\)"),
        ("missing --at", ["-c", cfg, "--platform", "android", tok], r"--at RFC3339 is required"),
        ("bad --at", base[:4] + ["--at", "2026-02-30T10:00:00Z", tok],
         r"--at is not an RFC 3339 date-time .*: 2026-02-30T10:00:00Z"),
        ("--at without a zone", base[:4] + ["--at", "2026-12-02T10:00:00", tok], r"--at is not an RFC 3339"),
        ("unreadable token file", base + [missing],
         r"TOKEN_FILE %s: " % re.escape(missing)),
        ("no token file", base, r"TOKEN_FILE is required"),
        ("two token files", base + [tok, tok], r"one TOKEN_FILE only"),
        ("missing -c", base[2:] + [tok], r"-c FILE is required"),
        ("play without --csr", ["-c", cfg, "--platform", "android", "--at", AT, "--nonce", NONCE, tok],
         r"platform android \(provider play_integrity\) needs the key-binding challenge: give "
         r"--csr FILE and --nonce NONCE \(or --client-data-hash B64\)"),
        ("http without --csr", ["-c", cfg, "--platform", "huawei", "--at", AT, tok],
         r"platform huawei \(provider http\) .*give --csr FILE and --nonce NONCE"),
        ("--csr without --nonce", ["-c", cfg, "--platform", "android", "--at", AT, "--csr", csr, tok],
         r"--csr needs --nonce"),
        ("unreadable CSR", base[:9] + [missing, tok], r"--csr %s: " % re.escape(missing)),
        ("bad --client-data-hash", ["-c", cfg, "--platform", "android", "--at", AT,
                                    "--client-data-hash", "AAAA", tok],
         r"--client-data-hash must be the base64 of 32 bytes"),
        ("unknown option", base + ["--bogus", tok], r"unrecognized option"),
        ("missing config file", ["-c", missing] + base[2:] + [tok], re.escape(missing)),
    )
    for what, args, pattern in cases:
        rc, out, err = _run(*args)
        eq((rc, out), (2, None), "%s: exit 2, nothing on stdout" % what)
        check(re.search(pattern, err), "%s: stderr lacks %r: %r" % (what, pattern, err))
    nois = os.path.join(env.tmp, "cli15-noiss.yaml")
    with open(nois, "w") as f:
        f.write(to_yaml(env.config()))
    rc, out, err = _run("-c", nois, "--platform", "android", "--at", AT, tok)
    eq((rc, out), (2, None), "no issuance section")
    check("has no issuance section" in err, "stderr: %r" % err)
    r = subprocess.run([BINARY, "verify-attestation", "--help"], capture_output=True, text=True)
    eq(r.returncode, 0, "--help")
    with open(os.path.join(REPO, "gateway", "cli_attest.c")) as f:
        opts = set(re.findall(r'\{"([a-z][a-z-]+)", (?:required|no)_argument', f.read()))
    top = subprocess.run([BINARY, "--help"], capture_output=True, text=True).stdout
    for opt in opts - {"config", "help"}:
        check("--" + opt in r.stdout and "--" + opt in top, "--help lacks --%s" % opt)


@test("cli: verify-attestation of an App Attest object without --csr/--nonce or --client-data-hash: exit 2, the key-binding hint")
def _(env):
    aa_mint = os.path.join(REPO, "build", "mint-appattest")
    d = os.path.join(env.tmp, "cli15-aa")
    os.makedirs(d, exist_ok=True)
    key = os.path.join(d, "dev.aakey")
    for args in (["pki", d], ["key", key]):
        r = subprocess.run([aa_mint] + args, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            fail("mint-appattest %s: %s" % (args[0], r.stderr))
    r = subprocess.run([aa_mint, "attest", "--pki", d, "--key", key, "--app-id", "ABCDE12345.com.example.app",
                        "--cdh", "00" * 32], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail("mint-appattest attest: %s" % r.stderr)
    tok = os.path.join(d, "attestation.b64")
    with open(tok, "w") as f:
        f.write(json.loads(r.stdout)["attestation"] + "\n")
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"ios": {"provider": "app_attest", "app_ids": ["ABCDE12345.com.example.app"],
                                                    "root_ca": os.path.join(d, "root.pem")}})
    path = os.path.join(env.tmp, "cli15-aa.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    rc, out, err = _run("-c", path, "--platform", "ios", "--at", AT, tok)
    eq((rc, out), (2, None), "App Attest without a challenge: exit 2, nothing on stdout (%s)" % err)
    check(re.search(r"platform ios \(provider app_attest\) needs the key-binding challenge: give --csr FILE and "
                    r"--nonce NONCE \(or --client-data-hash B64\)", err), "stderr lacks the hint: %r" % err)


@test("cli: verify-attestation --at parsing: the RFC 3339 forms a saved sample carries")
def _(env):
    cfg = _config(env)
    csr, pem, _ = _csr(env, "t")
    tok = _token(env, "t", pem, ts=T0)
    for at, ok in (("2026-12-02T10:00:00Z", 0), ("2026-12-02t10:00:00z", 0),
                   ("2026-12-02T10:00:00.999999999Z", 0), ("2026-12-02T05:00:00-05:00", 0),
                   ("2026-12-02T09:58:59Z", 1),    # the token 61s in the future
                   ("2026-12-02T10:00:00.1234567890Z", 2), ("2026-13-02T10:00:00Z", 2),
                   ("2026-12-02 10:00:00Z", 2), ("2026-12-02T24:00:00Z", 2),
                   ("1969-12-31T23:59:59Z", 2), ("2026-12-02T10:00:00+24:00", 2)):
        rc, _, err = _run("-c", cfg, "--platform", "android", "--at", at, "--nonce", NONCE,
                          "--csr", csr, tok)
        eq(rc, ok, "--at %s (%s)" % (at, err.strip()[:200]))
