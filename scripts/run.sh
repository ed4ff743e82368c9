#!/usr/bin/env bash
# `make run`: the quick start. Installs what is missing, builds, makes a dev
# PKI in run/pki, starts a local redis-server and the demo upstream on
# loopback, and runs the gateway in the foreground with config/example.yaml.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
make -s -j"$(nproc 2>/dev/null || echo 2)" all
mkdir -p run
[ -s run/pki/device.crt ] && openssl x509 -checkend 86400 -noout -in run/pki/device.crt >/dev/null 2>&1 \
    || scripts/gen-pki.sh run/pki >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$PWD/run" >run/redis.log 2>&1 &
    pids+=($!)
fi
if (exec 3<>/dev/tcp/127.0.0.1/9080) 2>/dev/null; then
    echo "port 9080 is in use; the demo upstream needs it" >&2; exit 1
fi
python3 test/upstream.py --port 9080 >run/upstream.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9080) 2>/dev/null && break; sleep 0.1; done

token=$(cat run/pki/bearer.txt)
cat <<TXT

portcullis is starting on https://127.0.0.1:8443 (config/example.yaml). Try:

  # a device certificate and a bearer token: 200, the upstream echoes the identity headers
  curl --cacert run/pki/server-ca.crt --cert run/pki/device.crt --key run/pki/device.key \\
       -H 'Authorization: Bearer $token' https://localhost:8443/api/hello

  # no bearer token: 401
  curl --cacert run/pki/server-ca.crt --cert run/pki/device.crt --key run/pki/device.key \\
       https://localhost:8443/api/hello

  # the bootstrap certificate may only reach certificate issuance: 403 here, 200 on /certificates/
  curl --cacert run/pki/server-ca.crt --cert run/pki/bootstrap.crt --key run/pki/bootstrap.key \\
       https://localhost:8443/api/hello
  curl --cacert run/pki/server-ca.crt --cert run/pki/bootstrap.crt --key run/pki/bootstrap.key \\
       https://localhost:8443/certificates/challenge

  # no client certificate: the handshake is refused
  curl --cacert run/pki/server-ca.crt https://localhost:8443/api/hello

TXT
build/portcullis -c config/example.yaml
