#!/usr/bin/env bash
# dev-device-cert.sh: walks device-certificate issuance against the `make run`
# gateway, printing each step: what a phone app does, with openssl and curl.
#
#   1. challenge  POST <prefix>challenge over the bootstrap certificate: a nonce
#   2. key, CSR   a new EC P-256 key (on a phone: in Android Keystore or the
#                 Secure Enclave; it never leaves the device) and a CSR for it
#   3. issue      POST <prefix>issue {csr, platform, nonce}: 201 and the chain
#   4. API call   the new device certificate and the demo bearer token: 200,
#                 and the identity headers the gateway gave the upstream
#
# The quick start's platform "dev" uses provider none: it attests nothing
# (INSECURE, development only; config/example.yaml). A real app also sends
# its platform's attestation of the key-binding challenge
# SHA-256(nonce || SHA-256(SPKI DER of the CSR key)), which this script
# prints: see docs/issuance.md.
#
# Usage: scripts/dev-device-cert.sh [URL]     (default https://localhost:8443)
# Settings (environment):
#   PORTCULLIS_PKI         the dev PKI run.sh made (run/pki): server-ca.crt,
#                          bootstrap.crt/.key, bearer.txt
#   PORTCULLIS_DEVICE_DIR  where the key, CSR and certificate go (run/dev-device)
#   PORTCULLIS_PLATFORM    the request's platform (dev)
#   PORTCULLIS_PREFIX      issuance.path_prefix (/certificates/)
#   PORTCULLIS_API_PATH    the API call's path (/api/hello)
# Exit status: 0 when every step answered as expected, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-https://localhost:8443}
url=${url%/}
pki=${PORTCULLIS_PKI:-run/pki}
dir=${PORTCULLIS_DEVICE_DIR:-run/dev-device}
platform=${PORTCULLIS_PLATFORM:-dev}
prefix=${PORTCULLIS_PREFIX:-/certificates/}
api=${PORTCULLIS_API_PATH:-/api/hello}

for tool in openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "dev-device-cert: $tool not found" >&2; exit 1; }
done
for f in server-ca.crt bootstrap.crt bootstrap.key bearer.txt; do
    [ -s "$pki/$f" ] || { echo "dev-device-cert: $pki/$f missing (run \`make run\` first)" >&2; exit 1; }
done
mkdir -p "$dir"
umask 077

# json FILE EXPR: a value of the JSON in FILE (EXPR on `d`, Python syntax)
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# post NAME CERT KEY PATH [BODY_FILE]: the HTTP status; the answer in $dir/NAME.json
post() {
    local data=()
    [ -n "${5:-}" ] && data=(-H 'Content-Type: application/json' --data-binary "@$5")
    curl -sS --cacert "$pki/server-ca.crt" --cert "$2" --key "$3" -X POST "${data[@]}" \
         -o "$dir/$1.json" -w '%{http_code}' "$url$4"
}

expect() {   # expect WHAT WANT GOT ANSWER_FILE
    if [ "$3" != "$2" ]; then
        echo "dev-device-cert: $1 answered $3, expected $2:" >&2
        cat "$4" >&2 2>/dev/null || true
        exit 1
    fi
}

echo "== 1. challenge: POST $url${prefix}challenge with the bootstrap certificate"
status=$(post challenge "$pki/bootstrap.crt" "$pki/bootstrap.key" "${prefix}challenge")
expect challenge 200 "$status" "$dir/challenge.json"
nonce=$(json "$dir/challenge.json" 'd["nonce"]')
echo "   $status $(cat "$dir/challenge.json")"

echo "== 2. a new key and a CSR (the key stays here: $dir/device.key)"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/device.key" 2>/dev/null
openssl req -new -key "$dir/device.key" -subj "/CN=dev-device" -out "$dir/device.csr" 2>/dev/null
openssl pkey -in "$dir/device.key" -pubout -outform DER -out "$dir/device.spki.der"
read -r spki_sha256 challenge < <(python3 - "$dir/device.spki.der" "$nonce" <<'PY'
import base64, hashlib, sys
spki = hashlib.sha256(open(sys.argv[1], "rb").read()).digest()
challenge = hashlib.sha256(sys.argv[2].encode("ascii") + spki).digest()
print(spki.hex(), base64.urlsafe_b64encode(challenge).rstrip(b"=").decode())
PY
)
echo "   SHA-256(SPKI DER)   $spki_sha256"
echo "   key-binding challenge SHA-256(nonce || SHA-256(SPKI)), base64url: $challenge"
echo "   (what a real platform's attestation must cover; provider none checks nothing)"

echo "== 3. issue: POST $url${prefix}issue {csr, platform: $platform, nonce}"
python3 - "$dir/device.csr" "$platform" "$nonce" >"$dir/issue-request.json" <<'PY'
import json, sys
print(json.dumps({"csr": open(sys.argv[1]).read(), "platform": sys.argv[2], "nonce": sys.argv[3]}))
PY
status=$(post issue "$pki/bootstrap.crt" "$pki/bootstrap.key" "${prefix}issue" "$dir/issue-request.json")
expect issue 201 "$status" "$dir/issue.json"
json "$dir/issue.json" 'd["certificate_chain"]' >"$dir/device.crt"
echo "   $status device_id=$(json "$dir/issue.json" 'd["device_id"]') serial=$(json "$dir/issue.json" 'd["serial"]')" \
     "not_after=$(json "$dir/issue.json" 'd["not_after"]')"
echo "   certificate chain: $dir/device.crt"
openssl x509 -in "$dir/device.crt" -noout -subject -ext subjectAltName 2>/dev/null | sed 's/^/   /'

echo "== 4. API call: GET $url$api with the new device certificate and the bearer token"
status=$(curl -sS --cacert "$pki/server-ca.crt" --cert "$dir/device.crt" --key "$dir/device.key" \
              -H "Authorization: Bearer $(cat "$pki/bearer.txt")" -o "$dir/api.json" -w '%{http_code}' "$url$api")
expect "the API call" 200 "$status" "$dir/api.json"
echo "   $status; the identity headers the upstream got:"
python3 - "$dir/api.json" <<'PY'
import json, sys
for name, value in json.load(open(sys.argv[1]))["headers"]:
    if name.lower().startswith(("x-device-", "x-client-cert-")):
        print("     %s: %s" % (name, value))
PY
echo "done: the device certificate is $dir/device.crt, its key $dir/device.key"
