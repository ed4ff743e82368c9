#!/usr/bin/env bash
# Installs the Debian packages portcullis builds, tests and runs with, if missing.
# haproxy: the PROXY protocol tests put it in front of the gateway (send-proxy-v2);
# systemd: its systemd-analyze checks contrib/portcullis.service.
set -euo pipefail
pkgs=(build-essential pkg-config libssl-dev libevent-dev libhiredis-dev libjansson-dev libyaml-dev
      libcbor-dev node-llhttp redis-server python3 openssl curl ca-certificates procps
      python3-prometheus-client
      haproxy systemd
      clang libclang-rt-14-dev llvm-14)   # the fuzz targets: libFuzzer, and llvm-symbolizer for their traces
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
