#!/usr/bin/env bash
# Runs the test suite (sets up .venv first; the web app's browser tests need Debian's chromium, installed
# here when it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/python -m pytest "$@"
