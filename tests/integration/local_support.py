"""What the integration tests share: why a real server cannot run here (the skip
reasons, shown as they are), and the path of the tool-capable chat template."""

from __future__ import annotations

import importlib.util
import os

import pytest

from llmx_sync.local import (
    LocalDependencyError,
    LocalModelError,
    default_cache_dir,
    find_bundled_model,
    find_llama_server,
)


def _llama_cpp_skip_reason() -> str:
    if importlib.util.find_spec("llama_cpp") is None:
        return ("llama-cpp-python is not installed (run `bash scripts/install-local.sh` "
                "or `pip install -e '.[local]'`)")
    try:
        find_bundled_model()
    except LocalModelError as exc:
        return str(exc)
    return ""


def _llama_server_skip_reason() -> str:
    try:
        find_llama_server()
        find_bundled_model()
    except (LocalDependencyError, LocalModelError) as exc:
        return str(exc)
    return ""


LLAMA_CPP_SKIP = _llama_cpp_skip_reason()
needs_llama_cpp = pytest.mark.skipif(bool(LLAMA_CPP_SKIP), reason=LLAMA_CPP_SKIP or "-")
LLAMA_SERVER_SKIP = _llama_server_skip_reason()
needs_llama_server = pytest.mark.skipif(bool(LLAMA_SERVER_SKIP), reason=LLAMA_SERVER_SKIP or "-")


def tools_chat_template() -> str:
    """The tool-capable ChatML template scripts/install-local.sh puts next to
    llama-server (SmolLM2's own template has no tool support); skips without it."""
    template = os.path.join(default_cache_dir(), "bin", "chatml-tools.jinja")
    if not os.path.isfile(template):
        pytest.skip(f"no {template}: run `bash scripts/install-local.sh --llama-server`")
    return template
