"""TLS: the client-certificate matrix (the exact alert for each refusal),
session resumption, dual server certs. Certificates beyond scripts/gen-pki.sh's
are minted at test time with the openssl CLI (mint())."""

import re
import ssl
import time

from harness import (H_SERIAL, IDENTITY_HEADERS, check, check_identity, eq, test,
                     upstream_headers, upstream_info)
from tlsprobe import (SERIAL_20, SERIAL_21, TLS12, TLS13, VERSIONS, client_ctx, expect_alert, mint,
                      revocation_gateway, verdict, wait_for)


# ---------------------------------------------------------------------------
# The client-certificate matrix: every case pins the exact TLS alert the client
# receives, for TLS 1.3 and 1.2, and that nothing reached the upstream (see
# tlsprobe.verdict for how the alert is read).

# cert, what, alert for TLS 1.3, alert for TLS 1.2, text in the gateway log
_MATRIX = [
    (None, "no client cert", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
     "SSLV3_ALERT_HANDSHAKE_FAILURE", None),
    ("wrongca", "cert from an untrusted CA", "TLSV1_ALERT_UNKNOWN_CA",
     "TLSV1_ALERT_UNKNOWN_CA", "unable to get local issuer certificate"),
    ("expired", "expired cert", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
     "SSLV3_ALERT_CERTIFICATE_EXPIRED", "certificate has expired"),
    ("notyet", "not-yet-valid cert", "SSLV3_ALERT_BAD_CERTIFICATE",
     "SSLV3_ALERT_BAD_CERTIFICATE", "certificate is not yet valid"),
    ("noclientauth", "cert without clientAuth EKU", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
     "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "unsuitable certificate purpose"),
    (("caleaf", "v3_caleaf", "5ca1ea"), "leaf with basicConstraints CA:TRUE",
     "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
     "is a CA certificate"),
    (("certsign", "v3_certsign", "5ce55e"), "leaf with keyUsage keyCertSign, no basicConstraints",
     "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
     "is a CA certificate"),
    (("serial21", "v3_device", SERIAL_21), "serial of 21 octets",
     "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_BAD_CERTIFICATE",
     "serial number longer than 20 octets"),
]


def _cert_of(env, cert):
    return mint(env, *cert) if isinstance(cert, tuple) else cert


for _cert, _label, _a13, _a12, _log in _MATRIX:
    for (_ver, _vlabel), _alert in zip(VERSIONS, (_a13, _a12)):
        def _mk(cert=_cert, ver=_ver, alert=_alert, log=_log, label=_label):
            def fn(env):
                gw = env.gateway("main")
                ctx = client_ctx(env, _cert_of(env, cert), ver)
                for attempt in ("first", "second"):   # the second is never a verify-cache hit
                    expect_alert(env, gw, ctx, alert, "%s (%s attempt)" % (label, attempt), log)
            return fn
        test("%s: %s refused with %s, nothing reaches the upstream"
             % (_vlabel, _label, _alert))(_mk())


for _ver, _vlabel in VERSIONS:
    def _mk(ver=_ver):
        def fn(env):
            gw = env.gateway("main")
            eq(verdict(env, gw, client_ctx(env, "device", ver)), "HTTP 200", "device cert")
            crt_key = mint(env, "serial20", "v3_device", SERIAL_20)
            ctx = client_ctx(env, crt_key, ver)
            with env.connect(gw, ctx=ctx) as c:
                info = upstream_info(c.request("GET", "/matrix/serial20"), "20-octet serial")
            eq(upstream_headers(info, H_SERIAL), [SERIAL_20], "%s of a 20-octet serial" % H_SERIAL)
        return fn
    test("%s: valid certs are served; a 20-octet serial is carried whole" % _vlabel)(_mk())


@test("revoked cert refused with certificate_revoked; revocation unknown with internal_error "
      "(TLS 1.3 and 1.2), nothing reaches the upstream", timeout=60)
def _(env):
    with revocation_gateway(env, "tls-matrix-revocation") as (gw, redis):
        crt_key = mint(env, "revoked", "v3_device", "7e0c0ded")
        for ver, vlabel in VERSIONS:
            eq(verdict(env, gw, client_ctx(env, crt_key, ver)), "HTTP 200",
               "%s: before revocation" % vlabel)
        redis.write("device:7e0c0ded")
        check(wait_for(lambda: verdict(env, gw, client_ctx(env, crt_key, TLS12)) != "HTTP 200", 2),
              "revocation not applied within 2 s")
        for ver, vlabel in VERSIONS:
            expect_alert(env, gw, client_ctx(env, crt_key, ver), "SSLV3_ALERT_CERTIFICATE_REVOKED",
                         "%s: revoked cert" % vlabel, "certificate revoked")
        redis.stop()
        check(wait_for(lambda: verdict(env, gw, client_ctx(env, "device", TLS12)) != "HTTP 200", 3),
              "fail_closed: still served with Redis down")
        for ver, vlabel in VERSIONS:
            expect_alert(env, gw, client_ctx(env, "device", ver), "TLSV1_ALERT_INTERNAL_ERROR",
                         "%s: revocation status unknown" % vlabel, "revocation status unknown")


def _resume(env, version):
    gw = env.gateway("main")
    ctx = env.client_context("device", max_version=version, min_version=version)
    with env.connect(gw, ctx=ctx) as c1:
        info1 = upstream_info(c1.request("GET", "/resume/1"), "first connection")
        check(not c1.session_reused, "first connection claims to be resumed")
        session = c1.session
    check(session is not None, "no session after the first connection")
    with env.connect(gw, ctx=ctx, session=session) as c2:
        info2 = upstream_info(c2.request("GET", "/resume/2"), "resumed connection")
        check(c2.session_reused, "second connection was not resumed (session_reused False)")
    for h in IDENTITY_HEADERS:
        eq(upstream_headers(info2, h), upstream_headers(info1, h), "%s after resumption" % h)
    check_identity(info2, env.identity("device", "device"))


@test("TLS 1.3 session resumption keeps the client identity")
def _(env):
    _resume(env, ssl.TLSVersion.TLSv1_3)


@test("TLS 1.2 session resumption keeps the client identity")
def _(env):
    _resume(env, ssl.TLSVersion.TLSv1_2)


def _bounded_sessions(env, version, label):
    """tls.session_cache bounds the store: a session is not resumed after its
    lifetime, and the oldest session goes when the cache is full. Expired
    sessions are swept on a timer, not by libssl as it handshakes, so this
    also checks the expiry holds on lookup between sweeps."""
    gw = env.start_gateway("sessions-" + label, env.config(
        {"tls": {"session_cache": {"size": 3, "lifetime": "2s"}}}))
    try:
        ctx = env.client_context("device", max_version=version, min_version=version)

        def fresh(path):
            with env.connect(gw, ctx=ctx) as c:
                upstream_info(c.request("GET", path), path)
                check(not c.session_reused, "%s: a fresh connection claims to be resumed" % path)
                return c.session

        def resumed(session, path):
            with env.connect(gw, ctx=ctx, session=session) as c:
                upstream_info(c.request("GET", path), path)
                return c.session_reused

        # lifetime: resumed within it, a full handshake after it
        early, late = fresh("/life/1"), fresh("/life/2")
        check(resumed(early, "/life/3"), "a session was not resumed within its lifetime")
        time.sleep(3.5)
        check(not resumed(late, "/life/4"), "a session was resumed after its 2 s lifetime")

        # size: four new sessions in a cache of three; the oldest is gone
        first = fresh("/size/1")
        for i in range(2, 4):
            fresh("/size/%d" % i)
        last = fresh("/size/4")
        check(resumed(last, "/size/4b"), "the newest session was not resumed")
        check(not resumed(first, "/size/1b"), "a session beyond the cache size was resumed")
    finally:
        gw.stop()


def _resume_across_workers(env, version, label):
    """One session cache for all workers: a session made on one worker resumes
    on the other (the kernel spreads connections over the workers' sockets)."""
    gw = env.start_gateway("resume-workers-" + label, env.config(
        {"workers": 2, "logging": {"level": "debug"}}))
    try:
        ctx = env.client_context("device", max_version=version, min_version=version)
        with env.connect(gw, ctx=ctx) as c:
            upstream_info(c.request("GET", "/workers/0"), "first connection")
            session = c.session
        for i in range(1, 25):
            with env.connect(gw, ctx=ctx, session=session) as c:
                upstream_info(c.request("GET", "/workers/%d" % i), "connection %d" % i)
                check(c.session_reused, "connection %d was not resumed" % i)
                session = c.session   # TLS 1.3 tickets are single-use
        workers = set()
        for line in gw.log_tail(500):
            m = re.search(r"\bw=(\d+) .* resumed class=", line)
            if m:
                workers.add(m.group(1))
        eq(sorted(workers), ["0", "1"], "workers that resumed a session")
    finally:
        gw.stop()


for _ver, _vlabel, _tag in [(ssl.TLSVersion.TLSv1_3, "TLS 1.3", "tls13"),
                            (ssl.TLSVersion.TLSv1_2, "TLS 1.2", "tls12")]:
    for _fn, _what in [(_bounded_sessions,
                        "sessions: not resumed after their lifetime; the cache keeps at most its size"),
                       (_resume_across_workers, "sessions resume on any worker")]:
        def _mk(fn=_fn, ver=_ver, tag=_tag):
            return lambda env: fn(env, ver, tag)
        test("%s %s" % (_vlabel, _what))(_mk())


@test("dual cert: TLS 1.2 client restricted to ECDHE-RSA-AES128-GCM-SHA256 gets the RSA cert")
def _(env):
    gw = env.gateway("dualcert")
    with env.connect(gw, "device", max_version=ssl.TLSVersion.TLSv1_2,
                     ciphers="ECDHE-RSA-AES128-GCM-SHA256") as c:
        eq(c.sock.cipher()[0], "ECDHE-RSA-AES128-GCM-SHA256", "negotiated cipher")
        with open(env.pki("server-rsa.crt")) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())
        check(c.sock.getpeercert(binary_form=True) == want, "server did not present server-rsa.crt")
        upstream_info(c.request("GET", "/dual/rsa"))


@test("dual cert: TLS 1.2 ECDSA-only client gets the ECDSA cert")
def _(env):
    gw = env.gateway("dualcert")
    with env.connect(gw, "device", max_version=ssl.TLSVersion.TLSv1_2,
                     ciphers="ECDHE-ECDSA-AES128-GCM-SHA256") as c:
        eq(c.sock.cipher()[0], "ECDHE-ECDSA-AES128-GCM-SHA256", "negotiated cipher")
        with open(env.pki("server.crt")) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())
        check(c.sock.getpeercert(binary_form=True) == want, "server did not present server.crt")
        upstream_info(c.request("GET", "/dual/ecdsa"))


@test("dual cert: TLS 1.3 client succeeds")
def _(env):
    gw = env.gateway("dualcert")
    with env.connect(gw, "device") as c:
        eq(c.sock.version(), "TLSv1.3", "TLS version")
        upstream_info(c.request("GET", "/dual/tls13"))


@test("TLS 1.2-only RSA client against ECDSA-only server fails the handshake")
def _(env):
    gw = env.gateway("main")
    resp, why = env.attempt(gw, "device", max_version=ssl.TLSVersion.TLSv1_2,
                            ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    check(resp is None, "handshake unexpectedly succeeded: HTTP %d" % (resp.status if resp else 0))
