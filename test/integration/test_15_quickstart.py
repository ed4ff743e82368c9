"""The quick start shows issuance: `make run` (scripts/run.sh with
config/example.yaml) prints scripts/dev-device-cert.sh, and that script walks
challenge -> CSR -> issue -> an API call with the new device certificate."""

import json
import os
import signal
import subprocess

from harness import check, eq, fail, free_port, kill_group, test
from testkit import example_config, redis_cli, start_run_sh, tree_copy


def _example(root, gw_port, up_port, redis_port):
    """config/example.yaml on free ports, as the file is otherwise."""
    text = example_config(os.path.join(root, "quick.yaml"), gw_port, up_port, redis_port)
    for key in ("insecure_dev: true", "provider: none", "INSECURE"):
        check(key in text, "config/example.yaml's issuance lacks %r" % key)


@test("quickstart: make run's banner prints scripts/dev-device-cert.sh, which gets a device "
      "certificate (201) and calls the API with it (200, its identity headers)", timeout=300)
def _(env):
    root = os.path.join(env.tmp, "quickstart")
    os.makedirs(root)
    tree_copy(root)
    gw_port, up_port, redis_port = free_port(), free_port(), free_port()
    _example(root, gw_port, up_port, redis_port)
    proc, text = start_run_sh(root, "quick.yaml", up_port, redis_port)
    try:
        url = "https://localhost:%d" % gw_port
        cmd = "scripts/dev-device-cert.sh %s" % url
        check(cmd in text, "the banner lacks %r: %s" % (cmd, text[-1500:]))
        check("INSECURE" in text, "the gateway did not warn about provider none: %s" % text[-1500:])
        r = subprocess.run(["curl", "-sS", "-w", " %{http_code}", "--cacert", "run/pki/server-ca.crt",
                            "--cert", "run/pki/bootstrap.crt", "--key", "run/pki/bootstrap.key",
                            url + "/certificates/challenge"], cwd=root, capture_output=True,
                           text=True, timeout=20)
        body, _, status = r.stdout.rpartition(" ")
        eq((status, len(json.loads(body or "{}").get("nonce", ""))), ("200", 43),
           "the banner's challenge with the bootstrap certificate (%s)" % r.stderr)
        r = subprocess.run(["bash"] + cmd.split(), cwd=root, capture_output=True, text=True,
                           timeout=60)
        eq(r.returncode, 0, "dev-device-cert.sh exit status (%s%s)" % (r.stdout[-1500:], r.stderr))
        d = os.path.join(root, "run", "dev-device")
        with open(os.path.join(d, "issue.json")) as f:
            issued = json.load(f)
        with open(os.path.join(d, "api.json")) as f:
            api = json.load(f)
        dev = issued["device_id"]
        want_lines = ["== 1. challenge: POST %s/certificates/challenge with the bootstrap certificate" % url,
                      "== 3. issue: POST %s/certificates/issue {csr, platform: dev, nonce}" % url,
                      "   201 device_id=%s serial=%s not_after=%s" % (dev, issued["serial"],
                                                                     issued["not_after"]),
                      "== 4. API call: GET %s/api/hello with the new device certificate and the "
                      "bearer token" % url,
                      "   200; the identity headers the upstream got:",
                      "     X-Device-Id: %s" % dev,
                      "     X-Client-Cert-Class: device"]
        lines = r.stdout.split("\n")
        for w in want_lines:
            check(w in lines, "the walk-through lacks %r: %s" % (w, r.stdout[-2000:]))
        eq((api["method"], api["path"]), ("GET", "/api/hello"), "the request the upstream got")
        headers = {k: v for k, v in api["headers"]}
        eq({k: headers.get(k) for k in ("X-Device-Id", "X-Client-Cert-Class", "X-Client-Cert-SAN-URI",
                                         "X-Client-Cert-Serial")},
           {"X-Device-Id": dev, "X-Client-Cert-Class": "device",
            "X-Client-Cert-SAN-URI": "urn:portcullis:device:" + dev,
            "X-Client-Cert-Serial": issued["serial"]},
           "the device identity headers of the issued certificate")
        record = json.loads(redis_cli(redis_port, "GET", "portcullis:issued:" + issued["serial"]))
        eq((record["device_id"], record["platform"], record["attestation"]),
           (dev, "dev", "none (insecure_dev)"), "the issuance record")
        # the quick start's dev platform through the operator's tool
        tok = os.path.join(root, "run", "dev-device", "empty.token")
        open(tok, "w").close()
        r = subprocess.run(["build/portcullis", "verify-attestation", "-c", "quick.yaml",
                            "--platform", "dev", "--at", "2026-12-02T10:00:00Z", tok], cwd=root,
                           capture_output=True, text=True, timeout=30)
        eq((r.returncode, r.stdout), (0, '{"ok":true,"platform":"dev","provider":"none","level":"none",'
                                         '"app_id":null,"key_sha256":null,"summary":"none (insecure_dev)"}\n'),
           "verify-attestation on the example's dev platform (%s)" % r.stderr)
        os.kill(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail("run.sh still running 60s after SIGTERM")
        eq(rc, 143, "run.sh exit status after SIGTERM")
    finally:
        if proc.poll() is None:
            kill_group(proc, 5)
