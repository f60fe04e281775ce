#!/usr/bin/env bash
# Hosts on this machine, each a network namespace with its own Docker engine (root only); see
# cli/hostbed.py for the layout. The tests make theirs with a pytest fixture (tests/support/multihost.py)
# and `gorchester up --hosts N` its own; this is for trying things by hand:
#   deploy/hostbed.sh up NAME N [--image IMAGE ...]   # e.g. up lab 3 --image gorchester/busybox:latest
#   deploy/hostbed.sh status
#   deploy/hostbed.sh down [NAME]                     # every bed without a name
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec .venv/bin/python -m cli.hostbed "$@"
