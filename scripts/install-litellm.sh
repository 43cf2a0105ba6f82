#!/usr/bin/env bash
# Installs the LiteLLM proxy (litellm[proxy], pinned) for the integration tests
# that run the SDK through it (tests/integration/test_litellm_proxy.py).
#
# It goes into its OWN virtualenv, $CACHE/litellm-venv, because litellm[proxy]
# pulls in well over a hundred packages (its own pins of openai, pydantic,
# fastapi, uvicorn, ...) that must never change the test environment. The tests
# only run its `litellm` executable as a child process.
#
# Cached: when the venv already holds this version, a run takes seconds. A
# failure is reported, written to $CACHE/litellm-venv.skip-reason (the tests
# skip with that reason) and tolerated: this script then still exits 0.
#
# Environment:
#   LLMX_CACHE_DIR   cache root (default ~/.cache/llmx_sync-ci, as install-local.sh)
#   PYTHON           interpreter the venv is made from (default: python3)
set -Euo pipefail

LITELLM_VERSION=1.108.7

PY="${PYTHON:-python3}"
CACHE_DIR="${LLMX_CACHE_DIR:-$HOME/.cache/llmx_sync-ci}"
VENV="$CACHE_DIR/litellm-venv"
SKIP_REASON_FILE="$CACHE_DIR/litellm-venv.skip-reason"
INSTALL_LOG="$CACHE_DIR/litellm-install.log"

log() { printf '[install-litellm] %s\n' "$*"; }

mkdir -p "$CACHE_DIR"
# One run at a time per cache (a second run must not see a half-made venv);
# a lock of its own so that it never waits for install-local.sh's build.
if command -v flock >/dev/null 2>&1; then
  exec 8>"$CACHE_DIR/.litellm.lock"
  flock 8
fi

installed_version() {  # the litellm version in the venv, or nothing
  [ -x "$VENV/bin/litellm" ] || return 0
  "$VENV/bin/python" -c 'from importlib import metadata; print(metadata.version("litellm"))' 2>/dev/null || true
}

# The proxy extra's server stack: a venv whose litellm is right but whose extra
# is half-installed (an interrupted run) must be installed again.
proxy_extra_importable() {
  "$VENV/bin/python" -c 'import fastapi, uvicorn, backoff, orjson, yaml' >/dev/null 2>&1
}

fail() {  # fail WHY: leave the reason for the tests, never fail the caller
  local tail_txt; tail_txt="$(tail -n 12 "$INSTALL_LOG" 2>/dev/null | tr '\n' ' ' | cut -c1-1500)"
  printf 'the LiteLLM proxy (litellm[proxy]==%s) is not installed: %s %s\n' \
    "$LITELLM_VERSION" "$1" "$tail_txt" > "$SKIP_REASON_FILE"
  log "FAILED: $1 (the LiteLLM proxy tests will skip; see $SKIP_REASON_FILE and $INSTALL_LOG)"
  tail -n 30 "$INSTALL_LOG" 2>/dev/null | sed 's/^/[install-litellm pip] /' || true
  rm -rf "$VENV"  # a partial venv would pass for an installed one next time
  exit 0
}

T0=$SECONDS
if [ "$(installed_version)" = "$LITELLM_VERSION" ] && proxy_extra_importable; then
  rm -f "$SKIP_REASON_FILE"
  log "litellm[proxy]==$LITELLM_VERSION already installed in $VENV (took $((SECONDS - T0))s)"
  exit 0
fi

log "installing litellm[proxy]==$LITELLM_VERSION into $VENV (about a minute)"
rm -rf "$VENV"
: > "$INSTALL_LOG"
"$PY" -m venv "$VENV" >>"$INSTALL_LOG" 2>&1 || fail "\`$PY -m venv $VENV\` failed:"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
  "litellm[proxy]==$LITELLM_VERSION" >>"$INSTALL_LOG" 2>&1 || fail "pip install failed:"
[ "$(installed_version)" = "$LITELLM_VERSION" ] && proxy_extra_importable \
  || fail "installed, but $VENV/bin/litellm or the proxy's modules are missing:"
# LITELLM_LOCAL_MODEL_COST_MAP: without it, importing litellm fetches its model price
# list from the internet (and retries for seconds when that fails).
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/litellm" --version >>"$INSTALL_LOG" 2>&1 || fail "\`$VENV/bin/litellm --version\` failed:"

rm -f "$SKIP_REASON_FILE"
log "installed litellm[proxy]==$LITELLM_VERSION: $VENV ($(du -sh "$VENV" 2>/dev/null | cut -f1))"
log "install litellm took $((SECONDS - T0))s"
