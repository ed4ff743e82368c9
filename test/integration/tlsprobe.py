"""Helpers for TLS tests: certificates minted at test time, and what exactly a
client gets from the gateway (the TLS alert, by the name Python's ssl gives
it). Not a test module: imported by test_11_tls.py and test_20_tls.py."""

import os
import shutil
import socket
import ssl
import subprocess
import time

from harness import (ConnectionClosed, Conn, SetupError, TIME_FACTOR, check, eq, free_port,
                     kill_group, spawn, wait_tcp)

TLS13, TLS12 = ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2
VERSIONS = [(TLS13, "TLS 1.3"), (TLS12, "TLS 1.2")]
# With TLS 1.3 the client's handshake ends before the server has judged its
# certificate: the verdict is the first thing it reads. A client that was
# accepted reads nothing (the server waits for a request) until this passes.
VERDICT_WAIT = 1.0 * TIME_FACTOR

_MINT_CNF = """\
[req]
distinguished_name = req_dn
prompt = no
[req_dn]
CN = placeholder
[v3_device]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:portcullis:device:device-minted
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
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


def _openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SetupError("openssl %s failed: %s" % (args[0], r.stderr.strip()[:300]))


def mint(env, name, ext, serial, subject=None, ca="device-ca"):
    """A client certificate made now, signed by the PKI's CA `ca`, with the
    extensions section `ext` of _MINT_CNF and `serial` (hex). Returns
    (crt, key) paths; made once per run."""
    d = os.path.join(env.tmp, "minted")
    crt, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    if os.path.exists(crt):
        return crt, key
    os.makedirs(d, exist_ok=True)
    cnf = os.path.join(d, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(_MINT_CNF)
    csr = os.path.join(d, name + ".csr")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl("req", "-new", "-config", cnf, "-key", key, "-subj",
             subject or "/O=Example Org/CN=%s" % name, "-out", csr)
    _openssl("x509", "-req", "-sha256", "-in", csr, "-CA", env.pki(ca + ".crt"),
             "-CAkey", env.pki(ca + ".key"), "-set_serial", "0x" + serial, "-days", "2",
             "-extfile", cnf, "-extensions", ext, "-out", crt)
    return crt, key


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


def _own_redis(env):
    exe = shutil.which("redis-server")
    if not exe:
        raise SetupError("redis-server not installed")
    port = free_port()
    d = os.path.join(env.tmp, "tls-redis-%d" % port)
    os.makedirs(d, exist_ok=True)
    log = open(os.path.join(d, "redis.log"), "ab")
    proc = spawn([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", d], stdout=log, stderr=log)
    log.close()
    wait_tcp(port, proc, 10, "redis-server")
    return proc, port


def revoke(port, entry):
    """SADD + PUBLISH in one MULTI, as every writer must (docs/revocation.md)."""
    text = "MULTI\nSADD portcullis:revoked %s\nPUBLISH portcullis:revocations +%s\nEXEC\n" % (
        entry, entry)
    r = subprocess.run(["redis-cli", "-p", str(port)], input=text, capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0, "redis-cli failed: %s" % r.stderr)


def wait_for(cond, timeout):
    deadline = time.monotonic() + timeout * TIME_FACTOR
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def revocation_gateway(env, name):
    """A gateway on a redis-server of its own (fail_closed); (gw, redis proc, port)."""
    proc, port = _own_redis(env)
    try:
        gw = env.start_gateway(name, env.config({
            "redis": {"address": "127.0.0.1:%d" % port, "connect_timeout": "500ms",
                      "command_timeout": "500ms"},
            "revocation": {"resync_interval": "30s", "on_redis_unavailable": "fail_closed"}}))
    except BaseException:
        kill_group(proc, 3)
        raise
    return gw, proc, port


def mint_dated(env, name, not_before, not_after, ca="device-ca"):
    """A device client certificate valid from not_before to not_after (Unix
    times), signed by the PKI's CA `ca` with `openssl ca`. (crt, key)."""
    d = os.path.join(env.tmp, "minted")
    cadir = os.path.join(d, "ca-" + name)
    os.makedirs(cadir, exist_ok=True)
    cnf = os.path.join(d, "openssl-%s.cnf" % name)
    with open(cnf, "w") as f:
        f.write(_MINT_CNF + _CA_CNF.replace("CADIR", cadir))
    with open(os.path.join(cadir, "index.txt"), "w"):
        pass
    with open(os.path.join(cadir, "serial"), "w") as f:
        f.write("%x\n" % (0x1000 + int(time.time() * 1000) % 0xffffff))
    crt, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    csr = os.path.join(d, name + ".csr")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl("req", "-new", "-config", cnf, "-key", key, "-subj", "/O=Example Org/CN=%s" % name,
             "-out", csr)
    fmt = lambda t: time.strftime("%y%m%d%H%M%SZ", time.gmtime(t))  # noqa: E731
    _openssl("ca", "-config", cnf, "-batch", "-notext", "-md", "sha256", "-preserveDN",
             "-cert", env.pki(ca + ".crt"), "-keyfile", env.pki(ca + ".key"),
             "-startdate", fmt(not_before), "-enddate", fmt(not_after), "-extfile", cnf,
             "-extensions", "v3_device", "-in", csr, "-out", crt)
    return crt, key


_CA_CNF = """
[ca]
default_ca = test_ca
[test_ca]
dir = CADIR
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
preserve = yes
email_in_dn = no
copy_extensions = none
[policy_any]
organizationName = optional
commonName = supplied
"""
