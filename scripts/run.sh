#!/usr/bin/env bash
# `make run`: the quick start. Installs what is missing, builds, makes a dev
# PKI in run/pki (server, device and bootstrap certificates; the device CA's
# key signs the certificates issuance gives), starts a local redis-server and
# the demo upstream on loopback, and runs the gateway with
# config/example.yaml, its log on the terminal. The banner prints the
# commands to try, scripts/dev-device-cert.sh (issuance) among them. Ctrl-C, or SIGTERM/SIGINT/SIGHUP to this script, stops the
# gateway (it drains first), the demo upstream and the redis-server it
# started, then exits.
#
# Settings (environment), for a second copy or a test:
#   PORTCULLIS_RUN_CONFIG         the gateway config (config/example.yaml)
#   PORTCULLIS_RUN_REDIS_PORT     where the config expects Redis (6379); one is
#                                 started unless something already listens there
#   PORTCULLIS_RUN_UPSTREAM_PORT  where the config expects the demo upstream (9080)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${PORTCULLIS_RUN_CONFIG:-config/example.yaml}
redis_port=${PORTCULLIS_RUN_REDIS_PORT:-6379}
upstream_port=${PORTCULLIS_RUN_UPSTREAM_PORT:-9080}

scripts/deps.sh
make -s -j"$(nproc 2>/dev/null || echo 2)" all
mkdir -p run
[ -s run/pki/device.crt ] && openssl x509 -checkend 86400 -noout -in run/pki/device.crt >/dev/null 2>&1 \
    || scripts/gen-pki.sh run/pki >/dev/null

gw=""     # the gateway's pid
pids=()   # the helpers this script started
stop_all() {
    trap - EXIT INT TERM HUP
    if [ -n "$gw" ] && kill -0 "$gw" 2>/dev/null; then
        kill -TERM "$gw" 2>/dev/null || true
        # it drains for up to timeouts.drain; give it that and a margin, then insist
        for _ in $(seq 600); do kill -0 "$gw" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$gw" 2>/dev/null || true
        wait "$gw" 2>/dev/null || true
    fi
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
on_signal() { echo "run.sh: $1: stopping the gateway, the demo upstream and redis" >&2; stop_all; exit "$2"; }
trap stop_all EXIT
trap 'on_signal SIGINT 130' INT
trap 'on_signal SIGTERM 143' TERM
trap 'on_signal SIGHUP 129' HUP

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open "$redis_port"; then
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$PWD/run" >run/redis.log 2>&1 &
    pids+=($!)
fi
if port_open "$upstream_port"; then
    echo "port $upstream_port is in use; the demo upstream needs it" >&2; exit 1
fi
python3 test/upstream.py --port "$upstream_port" >run/upstream.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do port_open "$upstream_port" && break; sleep 0.1; done

# The gateway runs in the background so this script can forward signals to it
# (bash runs no trap while a foreground child runs); its log goes to the
# terminal and to run/gateway.log, where the banner finds the listeners.
: >run/gateway.log
build/portcullis -c "$config" > >(tee -i -a run/gateway.log >&2) 2>&1 &
gw=$!
listening=""
for _ in $(seq 300); do
    listening=$(grep -o 'listening on [^ "]*' run/gateway.log | sed 's/^listening on //' || true)
    [ -n "$listening" ] && break
    kill -0 "$gw" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$listening" ]; then
    wait "$gw" && rc=0 || rc=$?
    gw=""
    echo "run.sh: the gateway did not start (exit $rc); see the messages above" >&2
    exit 1
fi
first=$(head -n 1 <<<"$listening")
port=${first##*:}
host=${first%:*}
case "$host" in 0.0.0.0|127.*|'[::]'|'[::1]') host=localhost ;; esac
url="https://$host:$port"

token=$(cat run/pki/bearer.txt)
cat <<TXT

portcullis is listening on $(sed 's|^|https://|' <<<"$listening" | paste -sd ' ') ($config). Try:

  # a device certificate and a bearer token: 200, the upstream echoes the identity headers
  curl --cacert run/pki/server-ca.crt --cert run/pki/device.crt --key run/pki/device.key \\
       -H 'Authorization: Bearer $token' $url/api/hello

  # no bearer token: 401
  curl --cacert run/pki/server-ca.crt --cert run/pki/device.crt --key run/pki/device.key \\
       $url/api/hello

  # the bootstrap certificate may only reach certificate issuance: 403 here, 200 and a nonce
  # from /certificates/challenge
  curl --cacert run/pki/server-ca.crt --cert run/pki/bootstrap.crt --key run/pki/bootstrap.key \\
       $url/api/hello
  curl --cacert run/pki/server-ca.crt --cert run/pki/bootstrap.crt --key run/pki/bootstrap.key \\
       $url/certificates/challenge

  # no client certificate: the handshake is refused
  curl --cacert run/pki/server-ca.crt $url/api/hello

  # device-certificate issuance, step by step: challenge -> key and CSR -> issue (201)
  # -> an API call with the new certificate (200). Platform "dev" attests nothing:
  # INSECURE, development only (config/example.yaml, docs/issuance.md)
  scripts/dev-device-cert.sh $url

Ctrl-C stops everything.
TXT
rc=0
wait "$gw" || rc=$?
gw=""
exit "$rc"
