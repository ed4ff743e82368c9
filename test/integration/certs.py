"""Certificates made at test time with the openssl CLI, beyond those of
scripts/gen-pki.sh: keys, CSRs, leaves and intermediates signed by a CA of
the PKI (or one made here), with chosen serials, extensions and dates. Not
a test module: imported by the tests that need such certificates."""

import os
import ssl
import subprocess
import time

from harness import DEVICE_PREFIX, SetupError, sha256

_REQ = """\
[req]
distinguished_name = req_dn
prompt = no
[req_dn]
CN = placeholder
"""

# A CA database for `openssl ca` (the only way to choose the dates exactly:
# OpenSSL 3.0's x509 -req takes days only).
_CA = """\
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

V3_CA = """\
[v3_ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

V3_INT = """\
[v3_int]
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def device_section(section, device_id):
    """An extensions section for a device client certificate whose SAN URI
    names device_id."""
    return ("[%s]\nbasicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = clientAuth\nsubjectAltName = URI:%s%s\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
            % (section, DEVICE_PREFIX, device_id))


def openssl(*args):
    """Runs the openssl CLI; its stdout. A failure is a SetupError."""
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SetupError("openssl %s failed: %s" % (args[0], r.stderr.strip()[:300]))
    return r.stdout


def asn1_time(t):
    """A Unix time as openssl ca -startdate/-enddate take it."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))


def fingerprint(crt):
    """The SHA-256 of a PEM certificate's DER (lowercase hex)."""
    with open(crt) as f:
        return sha256(ssl.PEM_cert_to_DER_cert(f.read()))


class Minter:
    """Makes certificates in env.tmp/<subdir>, with an openssl.cnf holding
    the extension sections `extensions`. A CA is a (crt, key) pair of paths;
    by default the PKI's device CA."""

    def __init__(self, env, subdir, extensions=""):
        self.env = env
        self.dir = os.path.join(env.tmp, subdir)
        os.makedirs(self.dir, exist_ok=True)
        self.extensions = extensions
        self.cnf = self.path("openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(_REQ + extensions)

    def path(self, name):
        return os.path.join(self.dir, name)

    def pki_ca(self, name="device-ca", ca_dir=None):
        d = ca_dir or self.env.pki_dir
        return os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")

    def key(self, name):
        """A new P-256 key in <name>.key."""
        path = self.path(name + ".key")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", path)
        return path

    def csr(self, name, subject, key=None):
        """A CSR in <name>.csr for key (a new one if None): (key, csr path)."""
        key = key or self.key(name)
        path = self.path(name + ".csr")
        openssl("req", "-new", "-config", self.cnf, "-key", key, "-subj", subject, "-out", path)
        return key, path

    def csr_pem(self, name, subject="/CN=x", key=None):
        """A CSR for key (a new one if None): (key path, CSR PEM text)."""
        key, path = self.csr(name, subject, key)
        with open(path) as f:
            return key, f.read()

    def sign(self, name, csr, serial, ext, ca=None, days=2, extfile=None):
        """<name>.crt: csr signed now by ca for `days`, with `serial`
        ("0x..." or decimal) and the section ext of extfile (default: the
        minter's openssl.cnf)."""
        ca_crt, ca_key = ca or self.pki_ca()
        path = self.path(name + ".crt")
        openssl("x509", "-req", "-sha256", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                "-set_serial", serial, "-days", str(days), "-extfile", extfile or self.cnf,
                "-extensions", ext, "-out", path)
        return path

    def sign_dated(self, name, csr, ext, not_before, not_after, serial_hex, ca=None):
        """<name>.crt: csr signed by ca, valid from not_before to not_after
        (Unix times), with the serial serial_hex, via `openssl ca` and a
        CA database of its own."""
        ca_crt, ca_key = ca or self.pki_ca()
        cadir = self.path("ca-" + name)
        os.makedirs(cadir, exist_ok=True)
        cnf = self.path("openssl-%s.cnf" % name)
        with open(cnf, "w") as f:
            f.write(_REQ + self.extensions + _CA.replace("CADIR", cadir))
        with open(os.path.join(cadir, "index.txt"), "w"):
            pass
        with open(os.path.join(cadir, "serial"), "w") as f:
            # openssl ca reads the serial file as whole bytes: an odd count of
            # hex digits ("%x" of a number) is refused, so pad it
            f.write(("0" if len(serial_hex) % 2 else "") + serial_hex + "\n")
        path = self.path(name + ".crt")
        openssl("ca", "-config", cnf, "-batch", "-notext", "-md", "sha256", "-preserveDN",
                "-cert", ca_crt, "-keyfile", ca_key, "-startdate", asn1_time(not_before),
                "-enddate", asn1_time(not_after), "-extfile", cnf, "-extensions", ext,
                "-in", csr, "-out", path)
        return path

    def leaf(self, name, subject, serial, ext, ca=None, days=2, extfile=None):
        """A new key and a certificate for it: (crt, key)."""
        key, csr = self.csr(name, subject)
        return self.sign(name, csr, serial, ext, ca, days, extfile), key

    def device_leaf(self, name, device_id, serial, ca=None):
        """A device client certificate (CN and SAN device_id): (crt, key)."""
        extfile = self.path(name + ".ext")
        with open(extfile, "w") as f:
            f.write(device_section("v3", device_id))
        return self.leaf(name, "/O=Example Org/CN=%s" % device_id, serial, "v3", ca,
                         extfile=extfile)

    def intermediate(self, name, serial, days=3):
        """An intermediate CA (the section v3_int) under the device CA: (crt, key)."""
        return self.leaf(name, "/O=Example Org/CN=Portcullis Test Intermediate %s" % name,
                         serial, "v3_int", days=days)

    def self_signed(self, name, key, subject, ext="v3_ca", days=1):
        path = self.path(name + ".crt")
        openssl("req", "-x509", "-new", "-config", self.cnf, "-extensions", ext, "-key", key,
                "-subj", subject, "-days", str(days), "-out", path)
        return path

    def bundle(self, name, *crts):
        """<name>.pem: the PEM files crts, concatenated in order."""
        path = self.path(name + ".pem")
        with open(path, "w") as out:
            for c in crts:
                with open(c) as f:
                    out.write(f.read())
        return path


def subject_of(crt):
    out = openssl("x509", "-in", crt, "-noout", "-subject", "-nameopt", "compat")
    return out.split("=", 1)[1].strip()


def serial_of(crt):
    """The serial as openssl prints it (uppercase hex, even length)."""
    return openssl("x509", "-in", crt, "-noout", "-serial").split("=", 1)[1].strip()


def not_after_of(crt):
    """notAfter as ISO 8601 UTC (YYYY-MM-DDTHH:MM:SSZ)."""
    out = openssl("x509", "-in", crt, "-noout", "-enddate").strip()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ",
                         time.strptime(out.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT"))
