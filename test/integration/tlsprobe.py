"""Helpers for TLS tests: certificates minted at test time, and what exactly a
client gets from the gateway (the TLS alert, by the name Python's ssl gives
it). Not a test module: imported by test_11_tls.py and test_20_tls.py."""

import contextlib
import os
import socket
import ssl
import time

from certs import Minter, device_section
from harness import ConnectionClosed, Conn, TIME_FACTOR, check, eq
from testkit import RedisServer, redis_overrides, wait_until

TLS13, TLS12 = ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2
VERSIONS = [(TLS13, "TLS 1.3"), (TLS12, "TLS 1.2")]
# With TLS 1.3 the client's handshake ends before the server has judged its
# certificate: the verdict is the first thing it reads. A client that was
# accepted reads nothing (the server waits for a request) until this passes.
VERDICT_WAIT = 1.0 * TIME_FACTOR

_MINT_EXT = device_section("v3_device", "device-minted") + """\
[v3_caleaf]
basicConstraints = critical,CA:true
keyUsage = critical,digitalSignature,keyCertSign
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:portcullis:device:device-ca-leaf
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_certsign]
keyUsage = critical,digitalSignature,keyCertSign
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

# serials (hex): 20 octets is the RFC 5280 maximum; 21 cannot be carried whole
SERIAL_20 = "7f" + "a5" * 19
SERIAL_21 = "01" + "a5" * 20


def mint(env, name, ext, serial, subject=None, ca="device-ca"):
    """A client certificate made now, signed by the PKI's CA `ca`, with the
    extensions section `ext` of _MINT_EXT and `serial` (hex). Returns
    (crt, key) paths; made once per run."""
    m = Minter(env, "minted", _MINT_EXT)
    crt, key = m.path(name + ".crt"), m.path(name + ".key")
    if os.path.exists(crt):
        return crt, key
    return m.leaf(name, subject or "/O=Example Org/CN=%s" % name, "0x" + serial, ext,
                  m.pki_ca(ca))


def mint_dated(env, name, not_before, not_after, ca="device-ca"):
    """A device client certificate valid from not_before to not_after (Unix
    times), signed by the PKI's CA `ca` with `openssl ca`. (crt, key)."""
    m = Minter(env, "minted", _MINT_EXT)
    key, csr = m.csr(name, "/O=Example Org/CN=%s" % name)
    serial = "%x" % (0x1000 + int(time.time() * 1000) % 0xffffff)
    return m.sign_dated(name, csr, "v3_device", not_before, not_after, serial, m.pki_ca(ca)), key


def client_ctx(env, cert, version):
    """cert: a gen-pki name, a (crt, key) pair, or None for no certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(env.pki("server-ca.crt"))
    if isinstance(cert, tuple):
        ctx.load_cert_chain(*cert)
    elif cert:
        ctx.load_cert_chain(env.pki(cert + ".crt"), env.pki(cert + ".key"))
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def verdict(env, gw, ctx, session=None):
    """What a client gets: the reason of the TLS alert it received (as
    Python's ssl names it, e.g. "TLSV1_ALERT_UNKNOWN_CA"), "closed without
    an alert", or "HTTP <status>" when a request was answered."""
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        except ssl.SSLError as e:
            return e.reason
        except (ConnectionResetError, BrokenPipeError) as e:
            return "closed without an alert (%s)" % type(e).__name__
        if s.version() == "TLSv1.3":
            s.settimeout(VERDICT_WAIT)
            try:
                if s.recv(1) == b"":
                    return "closed without an alert"
            except ssl.SSLError as e:
                return e.reason
            except socket.timeout:
                pass
            except (ConnectionResetError, BrokenPipeError) as e:
                return "closed without an alert (%s)" % type(e).__name__
        s.settimeout(5)
        conn = Conn.__new__(Conn)
        conn.sock, conn.buf, conn.timeout, conn.bearer = s, bytearray(), 5.0, env.bearer
        try:
            return "HTTP %d" % conn.request("GET", "/matrix").status
        except ssl.SSLError as e:
            return e.reason
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError) as e:
            return "closed without an alert (%s)" % type(e).__name__
    finally:
        raw.close()


def expect_alert(env, gw, ctx, alert, what, log=None, session=None):
    before = env.upstream_count()
    eq(verdict(env, gw, ctx, session), alert, what)
    eq(env.upstream_count(), before, "%s: requests that reached the upstream" % what)
    if log:   # the gateway logs after it has sent the alert
        check(wait_for(lambda: any(log in line for line in gw.log_tail(40)), 1.0),
              "%s: the reason (%r) is not in the gateway log" % (what, log))


def wait_for(cond, timeout):
    return wait_until(cond, timeout * TIME_FACTOR)


@contextlib.contextmanager
def revocation_gateway(env, name):
    """(gw, redis): a gateway on a redis-server of its own (fail_closed);
    both stopped after."""
    redis = RedisServer(env, "tls-redis").start()
    gw = None
    try:
        gw = env.start_gateway(name, env.config(
            redis_overrides(redis.port, on_redis_unavailable="fail_closed")))
        yield gw, redis
    finally:
        if gw:
            gw.stop()
        redis.stop()
