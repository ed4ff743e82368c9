#!/usr/bin/env bash
# gen-pki.sh: generate a throwaway test/development PKI for portcullis.
#
# Usage: scripts/gen-pki.sh [-f] OUTDIR
#
#   -f   regenerate even if OUTDIR already holds a complete, still valid PKI
#
# Writes into OUTDIR (all certificates are short-lived, at most 30 days):
#   server-ca.crt/.key     CA that signs the server certificates
#   server.crt/.key        ECDSA P-256 server cert, SAN DNS:localhost, IP:127.0.0.1
#   server-rsa.crt/.key    RSA 2048 server cert, same names, same CA
#   device-ca.crt/.key     CA for the "device" client class; also the issuing CA of
#                          config/example.yaml (issuance.ca_cert / ca_key)
#   bootstrap-ca.crt/.key  CA for the "bootstrap" client class
#   other-ca.crt/.key      a CA the gateway does not trust
#   device.crt/.key        CN=device-1234,O=Example Org, fixed serial (see DEVICE_SERIAL)
#   device2.crt/.key       CN=device-5678,O=Example Org
#   bootstrap.crt/.key     CN=bootstrap, signed by bootstrap-ca
#   wrongca.crt/.key       client cert signed by other-ca
#   expired.crt/.key       signed by device-ca, validity entirely in the past
#   notyet.crt/.key        signed by device-ca, valid from 10 days in the future
#   noclientauth.crt/.key  signed by device-ca, EKU serverAuth only
#   bearer.txt             a random demo bearer token
#
# Idempotent: when OUTDIR already holds every file and the certificates are
# valid for at least one more day, nothing is regenerated.
set -euo pipefail

# Known serial of device.crt. The leading zero nibble is deliberate: the
# gateway must render it without leading zeros ("badc0de1234").
DEVICE_SERIAL=0x0BADC0DE1234
DEVICE2_SERIAL=0x5678
DAYS_CA=30
DAYS_LEAF=29

force=0
if [[ "${1:-}" == "-f" ]]; then
    force=1
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: $0 [-f] OUTDIR" >&2
    exit 64
fi
out=$1

command -v openssl >/dev/null || { echo "gen-pki: openssl not found" >&2; exit 1; }

files=(server-ca server device-ca bootstrap-ca other-ca server-rsa device device2
       bootstrap wrongca expired notyet noclientauth)

complete() {
    local f
    for f in "${files[@]}"; do
        [[ -s "$out/$f.crt" && -s "$out/$f.key" ]] || return 1
    done
    [[ -s "$out/bearer.txt" ]] || return 1
    for f in server-ca server device-ca bootstrap-ca other-ca server-rsa device \
             device2 bootstrap wrongca noclientauth; do
        openssl x509 -in "$out/$f.crt" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    done
    return 0
}

if [[ $force -eq 0 ]] && complete; then
    exit 0
fi

mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gen-pki.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Run a command quietly; on failure show its output and stop.
run() {
    if ! "$@" >"$tmp/log" 2>&1; then
        cat "$tmp/log" >&2
        echo "gen-pki: command failed: $*" >&2
        exit 1
    fi
}

# A self-contained OpenSSL config so the system openssl.cnf does not matter.
cat >"$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = req_dn
prompt = no
[req_dn]
CN = placeholder

[v3_ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[v3_server]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[v3_device]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:portcullis:device:device-1234,DNS:device-1234.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[v3_device2]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:portcullis:device:device-5678,DNS:device-5678.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[v3_client]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[v3_serveronly]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = URI:urn:portcullis:device:device-9999
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# "openssl ca" is only used for certificates with explicit validity dates.
[ca]
default_ca = throwaway_ca
[throwaway_ca]
dir = CADIR
database = $dir/index.txt
new_certs_dir = $dir/newcerts
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
EOF
sed -i "s|CADIR|$tmp/ca|" "$tmp/openssl.cnf"
mkdir -p "$tmp/ca/newcerts"
: >"$tmp/ca/index.txt"
openssl rand -hex 8 >"$tmp/ca/serial"

cnf=$tmp/openssl.cnf

genkey_ec() { run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
genkey_rsa() { run openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# make_ca NAME SUBJECT
make_ca() {
    genkey_ec "$tmp/$1.key"
    run openssl req -x509 -new -config "$cnf" -extensions v3_ca -sha256 \
        -key "$tmp/$1.key" -subj "$2" -days "$DAYS_CA" \
        -set_serial "0x$(openssl rand -hex 8)" -out "$tmp/$1.crt"
}

# make_leaf NAME KEYTYPE SUBJECT CA EXTSECTION [SERIAL]
make_leaf() {
    local name=$1 ktype=$2 subj=$3 ca=$4 ext=$5 serial=${6:-0x$(openssl rand -hex 8)}
    if [[ $ktype == rsa ]]; then genkey_rsa "$tmp/$name.key"; else genkey_ec "$tmp/$name.key"; fi
    run openssl req -new -config "$cnf" -key "$tmp/$name.key" -subj "$subj" -out "$tmp/$name.csr"
    run openssl x509 -req -sha256 -in "$tmp/$name.csr" -CA "$tmp/$ca.crt" -CAkey "$tmp/$ca.key" \
        -set_serial "$serial" -days "$DAYS_LEAF" -extfile "$cnf" -extensions "$ext" \
        -out "$tmp/$name.crt"
}

# make_dated NAME SUBJECT CA EXTSECTION STARTDATE ENDDATE (dates: YYMMDDHHMMSSZ)
make_dated() {
    local name=$1 subj=$2 ca=$3 ext=$4 start=$5 end=$6
    genkey_ec "$tmp/$name.key"
    run openssl req -new -config "$cnf" -key "$tmp/$name.key" -subj "$subj" -out "$tmp/$name.csr"
    run openssl ca -config "$cnf" -batch -notext -md sha256 -preserveDN \
        -cert "$tmp/$ca.crt" -keyfile "$tmp/$ca.key" \
        -startdate "$start" -enddate "$end" -extfile "$cnf" -extensions "$ext" \
        -in "$tmp/$name.csr" -out "$tmp/$name.crt"
}

utc() { date -u -d "$1" +%y%m%d%H%M%SZ; }

make_ca server-ca    "/O=Example Org/CN=Portcullis Test Server CA"
make_ca device-ca    "/O=Example Org/CN=Portcullis Test Device CA"
make_ca bootstrap-ca "/O=Example Org/CN=Portcullis Test Bootstrap CA"
make_ca other-ca     "/O=Untrusted Org/CN=Portcullis Test Other CA"

make_leaf server       ec  "/O=Example Org/CN=localhost"       server-ca    v3_server
make_leaf server-rsa   rsa "/O=Example Org/CN=localhost"       server-ca    v3_server
make_leaf device       ec  "/O=Example Org/CN=device-1234"     device-ca    v3_device  "$DEVICE_SERIAL"
make_leaf device2      ec  "/O=Example Org/CN=device-5678"     device-ca    v3_device2 "$DEVICE2_SERIAL"
make_leaf bootstrap    ec  "/O=Example Org/CN=bootstrap"       bootstrap-ca v3_client
make_leaf wrongca      ec  "/O=Untrusted Org/CN=device-1234"   other-ca     v3_device
make_leaf noclientauth ec  "/O=Example Org/CN=device-9999"     device-ca    v3_serveronly

make_dated expired "/O=Example Org/CN=device-expired" device-ca v3_client \
    "$(utc '20 days ago')" "$(utc '10 days ago')"
make_dated notyet  "/O=Example Org/CN=device-notyet"  device-ca v3_client \
    "$(utc '10 days')" "$(utc '20 days')"

openssl rand -hex 32 >"$tmp/bearer.txt"

# Sanity: every leaf must chain to its CA (time checks skipped for the dated ones).
for pair in server:server-ca server-rsa:server-ca device:device-ca device2:device-ca \
            bootstrap:bootstrap-ca wrongca:other-ca noclientauth:device-ca; do
    run openssl verify -CAfile "$tmp/${pair#*:}.crt" "$tmp/${pair%%:*}.crt"
done
for name in expired notyet; do
    run openssl verify -no_check_time -CAfile "$tmp/device-ca.crt" "$tmp/$name.crt"
done

umask 077
for f in "${files[@]}"; do
    install -m 0644 "$tmp/$f.crt" "$out/$f.crt"
    install -m 0600 "$tmp/$f.key" "$out/$f.key"
done
install -m 0600 "$tmp/bearer.txt" "$out/bearer.txt"

echo "gen-pki: wrote $out (device.crt serial $DEVICE_SERIAL)"
