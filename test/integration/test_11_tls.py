"""Issue 11, TLS part: certificates that expire on open connections, the
alerts of refused resumptions, and class bundles that share a CA by subject
and key. The client-certificate matrix itself is in test_20_tls.py."""

import os
import re
import ssl
import subprocess
import time

from harness import (BINARY, SetupError, build_request, check, check_json_error,
                     eq, short, test, to_yaml, upstream_info)
from tlsprobe import (TLS12, TLS13, VERSIONS, client_ctx, expect_alert, mint, mint_dated,
                      revocation_gateway, verdict, wait_for)


def _closed_cleanly(conn, timeout):
    """How the connection ends within timeout: "close_notify", "EOF without
    close_notify", "reset", "alert <reason>" or "open"."""
    if conn.buf:
        return "open (unread bytes %r)" % short(conn.buf, 60)
    conn.sock.suppress_ragged_eofs = False   # b"" then means close_notify
    conn.sock.settimeout(timeout)
    try:
        data = conn.sock.recv(4096)
    except ssl.SSLZeroReturnError:
        return "close_notify"
    except ssl.SSLEOFError:
        return "EOF without close_notify"
    except ssl.SSLError as e:
        return "alert %s" % e.reason
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "open"
    return "close_notify" if data == b"" else "open (got %r)" % short(data, 60)


@test("certificate expiring on open connections: idle ones close at notAfter with close_notify; "
      "a request in progress completes, the next one gets 403 certificate_expired "
      "(TLS 1.3 and 1.2)", timeout=90)
def _(env):
    gw = env.gateway("main")
    lead = 4 * (2 if os.environ.get("PORTCULLIS_TEST_SANITIZED") else 1)
    not_after = int(time.time()) + lead + 2
    crt_key = mint_dated(env, "expiring-live", time.time() - 60, not_after)
    if time.time() > not_after - lead:
        raise SetupError("minting took too long; the certificate expires too soon to test")
    conns = {}
    for ver, vlabel in VERSIONS:
        for role in ("idle", "busy", "pipelined"):
            c = env.connect(gw, ctx=client_ctx(env, crt_key, ver))
            upstream_info(c.request("GET", "/expiry/%s/before" % role), "%s %s" % (vlabel, role))
            conns[(vlabel, role)] = c
    before = env.upstream_count()
    time.sleep(max(0.0, not_after - 1.5 - time.time()))
    # each response arrives a second after notAfter
    slow = "/slow?ms=%d" % int((not_after + 1.0 - time.time()) * 1000)
    for (vlabel, role), c in conns.items():
        if role == "busy":
            c.send(build_request("GET", slow, bearer=env.bearer))
        elif role == "pipelined":
            c.send(build_request("GET", slow, bearer=env.bearer) +
                   build_request("GET", "/expiry/after", bearer=env.bearer))
    try:
        for (vlabel, role), c in conns.items():
            if role != "idle":
                continue
            how = _closed_cleanly(c, not_after + 1.5 - time.time())
            ended = time.time()
            eq(how, "close_notify", "%s: how the idle connection ended" % vlabel)
            check(ended >= not_after, "%s: closed %.2f s before notAfter" % (vlabel, not_after - ended))
            check(ended <= not_after + 1.5, "%s: closed %.2f s after notAfter" % (vlabel, ended - not_after))
        for (vlabel, role), c in conns.items():
            if role == "idle":
                continue
            resp = c.read_response(timeout=10)
            eq(resp.status, 200, "%s %s: the request in progress at notAfter" % (vlabel, role))
            if role == "pipelined":
                resp = c.read_response(timeout=5)
                body = check_json_error(resp, 403, "%s: the request read after notAfter" % vlabel)
                eq(body["error"], "certificate_expired", "%s: error code" % vlabel)
                eq((resp.header("Connection") or "").lower(), "close", "%s: Connection header" % vlabel)
            eq(_closed_cleanly(c, 2.0), "close_notify", "%s %s: how the connection ended" % (vlabel, role))
        eq(env.upstream_count() - before, 4, "requests that reached the upstream after notAfter "
           "(only the four in progress)")
        log = "\n".join(gw.log_tail(80))
        check(re.search(r"expired at \S+: closing the connection\b", log),
              "the close is not logged: %s" % short(log[-600:], 600))
        check("request refused: certificate serial=" in log and "expired at" in log,
              "the 403 is not logged")
        for ver, vlabel in VERSIONS:
            expect_alert(env, gw, client_ctx(env, crt_key, ver), "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                         "%s: a new handshake after notAfter" % vlabel)
    finally:
        for c in conns.values():
            c.close()


def _session(env, gw, cert, version):
    """A session made with a served request, and its client context."""
    ctx = client_ctx(env, cert, version)
    with env.connect(gw, ctx=ctx) as c:
        upstream_info(c.request("GET", "/resume/make"), "the first connection")
        return ctx, c.session


def _check_resumes(env, gw, ctx, session, what):
    with env.connect(gw, ctx=ctx, session=session) as c:
        upstream_info(c.request("GET", "/resume/ok"), what)
        check(c.session_reused, "%s: not resumed" % what)
        return c.session


@test("refused resumption: revoked gets certificate_revoked, revocation unknown gets "
      "internal_error, in the handshake (TLS 1.3 and 1.2)", timeout=60)
def _(env):
    with revocation_gateway(env, "tls-resume-alerts") as (gw, redis):
        crt_key = mint(env, "resume-revoked", "v3_device", "7e50e5")
        sessions = {}
        for ver, vlabel in VERSIONS:
            ctx, sess = _session(env, gw, crt_key, ver)
            sess = _check_resumes(env, gw, ctx, sess, "%s: resumption before revocation" % vlabel)
            dctx, dsess = _session(env, gw, "device", ver)
            sessions[vlabel] = (ctx, sess, dctx, dsess)
        redis.write("device:7e50e5")
        check(wait_for(lambda: verdict(env, gw, client_ctx(env, crt_key, TLS12))
                       == "SSLV3_ALERT_CERTIFICATE_REVOKED", 2), "revocation not applied within 2 s")
        for vlabel, (ctx, sess, _, _) in sessions.items():
            expect_alert(env, gw, ctx, "SSLV3_ALERT_CERTIFICATE_REVOKED",
                         "%s: resuming a session of a revoked certificate" % vlabel,
                         "certificate revoked (resumed session)", session=sess)
        redis.stop()
        check(wait_for(lambda: verdict(env, gw, client_ctx(env, "device", TLS13))
                       == "TLSV1_ALERT_INTERNAL_ERROR", 3), "fail_closed: still served with Redis down")
        for vlabel, (_, _, dctx, dsess) in sessions.items():
            expect_alert(env, gw, dctx, "TLSV1_ALERT_INTERNAL_ERROR",
                         "%s: resuming while revocation status is unknown" % vlabel,
                         "revocation status unknown (Redis unavailable; failing closed; resumed "
                         "session)", session=dsess)


def _reissue(env, src, dst):
    """dst: the CA certificate src issued again (openssl x509 -signkey keeps
    its subject, key and extensions): another serial and validity, so another
    DER encoding of the same CA."""
    r = subprocess.run(["openssl", "x509", "-in", env.pki(src + ".crt"), "-signkey",
                        env.pki(src + ".key"), "-set_serial", "0x5e15", "-days", "3", "-out", dst],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise SetupError("re-issuing %s failed: %s" % (src, r.stderr.strip()[:300]))
    with open(env.pki(src + ".crt")) as a, open(dst) as b:
        check(ssl.PEM_cert_to_DER_cert(a.read()) != ssl.PEM_cert_to_DER_cert(b.read()),
              "the re-issued CA has the same DER")


@test("--check: the same CA re-issued (same subject and key) in two class bundles: exit 2, "
      "file:line:col naming both classes")
def _(env):
    reissued = os.path.join(env.tmp, "device-ca-reissued.crt")
    _reissue(env, "device-ca", reissued)
    cfg = env.config()
    cfg["tls"]["classes"] = [{"name": "device", "ca": env.pki("device-ca.crt")},
                             {"name": "bootstrap", "ca": reissued}]
    text = to_yaml(cfg)
    path = os.path.join(env.tmp, "check-reissued-ca.yaml")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([BINARY, "--check", "-c", path], capture_output=True, text=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    eq(r.returncode, 2, "exit status (output: %s)" % short(out, 400))
    line_no = next(i for i, ln in enumerate(text.splitlines(), 1) if reissued in ln)
    m = re.search(re.escape(path) + r":%d:\d+: tls\.classes\[1\]\.ca: CA .* of class \"bootstrap\" "
                  r"is also in tls\.classes\[0\] \(\"device\"\) as another certificate with the same "
                  r"subject and public key \(a re-issue\): a CA may anchor only one class" % line_no, out)
    check(m, "no file:line:col error naming both classes: %s" % short(out, 600))
