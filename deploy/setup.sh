#!/usr/bin/env bash
# Idempotent setup for development and CI on Debian 12, run as root (or with sudo): system packages,
# a running Docker engine, the project venv and the local test image. `make` and .ci/run call it;
# a second run only checks.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root (or install sudo)" >&2; exit 1; }
  sudo="sudo -n"
fi

# System packages, only those missing, with one apt-get update.
# systemd gives systemd-analyze (the unit tests verify deploy/*.service); chromium serves browser tests;
# openssl makes the certificates of the install test (README.md, "Install on three hosts"); zsh runs the
# completion test.
packages=(docker.io redis-server busybox-static chromium systemd python3-venv openssl zsh)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q </dev/null
  $sudo apt-get install -y -q "${missing[@]}" </dev/null
fi

# promtool lints /metrics in the tests: taken out of Debian's prometheus package (installing the
# package would also install and start a Prometheus server).
if ! command -v promtool >/dev/null; then
  echo "setup: extracting promtool from Debian's prometheus package"
  work="$(mktemp -d)"
  (cd "$work" && { apt-get download -q prometheus || { $sudo apt-get update -q && apt-get download -q prometheus; }; }) </dev/null
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  $sudo install -m 0755 "$work/x/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$work"
fi

# A Docker engine: start dockerd in the background (its own session) when none answers.
if ! docker info >/dev/null 2>&1; then
  log=/var/log/dockerd.log
  [ -w "$(dirname "$log")" ] || log="$(mktemp -t dockerd.XXXXXX.log)"
  echo "setup: starting dockerd (log: $log)"
  $sudo setsid dockerd >>"$log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not answer within 60s; see $log" >&2; exit 1; }
fi

# The venv, reinstalled only when pyproject.toml changed since the last install.
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.gorchester-setup
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || [ ! -x .venv/bin/gorchester ]; then
  echo "setup: pip install -e '.[server,test]'"
  .venv/bin/pip install -q -e '.[server,test]' </dev/null
  echo "$wanted" > "$stamp"
fi

# The image the examples and integration tests run (built from busybox; no registry needed).
deploy/build-image.sh >/dev/null
echo "setup: ready"
