"""Where requests go and how they are authenticated: llmx's provider config, read
from the same keys so an existing `~/.llmx/config.toml` works as is."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from dataclasses_json import DataClassJsonMixin

from .errors import ConfigError, EnvVarError, InvalidInputError
from .models import json_type_name

logger = logging.getLogger("llmx_sync")

DEFAULT_REQUEST_MAX_RETRIES = 4
DEFAULT_STREAM_MAX_RETRIES = 5
MAX_REQUEST_MAX_RETRIES = 100
MAX_STREAM_MAX_RETRIES = 100
DEFAULT_STREAM_IDLE_TIMEOUT_MS = 300_000
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MAX_TOKENS = 8192

WIRE_APIS = ("chat", "responses")


def env_value(var: str) -> str | None:
    """The variable's value, or None when it is unset or blank (llmx's rule)."""
    value = os.environ.get(var)
    if value is None or not value.strip():
        return None
    return value


@dataclass
class Provider(DataClassJsonMixin):
    """A model provider: llmx's `ModelProviderInfo` plus the SDK's request settings.

    Secrets (`experimental_bearer_token`, header values) never appear in `repr()`.
    """

    name: str
    base_url: str | None = None
    env_key: str | None = None
    env_key_instructions: str | None = None
    experimental_bearer_token: str | None = field(default=None, repr=False)
    wire_api: str = "chat"
    query_params: dict[str, str] | None = None
    http_headers: dict[str, str] | None = None
    env_http_headers: dict[str, str] | None = None
    request_max_retries: int | None = None
    stream_max_retries: int | None = None
    stream_idle_timeout_ms: int | None = None
    requires_openai_auth: bool = False
    # SDK settings, not in llmx's config; `Client.stream` keyword arguments win over these.
    max_tokens: int | None = DEFAULT_MAX_TOKENS
    include_usage: bool = True
    cache_control: bool = False
    max_retry_delay: float = 60.0
    connect_timeout: float = 10.0
    # `content` of an assistant message that carries tool calls. None sends JSON
    # null, as OpenAI documents and llmx does; llama-cpp-python's server rejects
    # null there and needs a string, so the `local` provider sets "".
    tool_call_content: str | None = None

    def __post_init__(self) -> None:
        if self.wire_api not in WIRE_APIS:
            raise InvalidInputError("wire_api", f"expected 'chat' or 'responses', got {self.wire_api!r}")

    # -- effective values ------------------------------------------------------

    @property
    def effective_request_max_retries(self) -> int:
        value = DEFAULT_REQUEST_MAX_RETRIES if self.request_max_retries is None else self.request_max_retries
        return min(value, MAX_REQUEST_MAX_RETRIES)

    @property
    def effective_stream_max_retries(self) -> int:
        value = DEFAULT_STREAM_MAX_RETRIES if self.stream_max_retries is None else self.stream_max_retries
        return min(value, MAX_STREAM_MAX_RETRIES)

    @property
    def stream_idle_timeout(self) -> float:
        """Seconds allowed between two SSE events."""
        ms = DEFAULT_STREAM_IDLE_TIMEOUT_MS if self.stream_idle_timeout_ms is None else self.stream_idle_timeout_ms
        return ms / 1000.0

    # -- request parts ---------------------------------------------------------

    def chat_url(self) -> str:
        """`<base>/chat/completions[?query]`, one slash between, query URL-encoded
        in insertion order (llmx sent them raw, in hash order, and a
        trailing slash on the base URL gave `//chat/completions`)."""
        base = (self.base_url or DEFAULT_BASE_URL).rstrip("/")
        path = "/responses" if self.wire_api == "responses" else "/chat/completions"
        query = urlencode(self.query_params) if self.query_params else ""
        return base + path + ("?" + query if query else "")

    def api_key(self) -> str | None:
        """The bearer token to send, or None. Raises `EnvVarError` for a missing key."""
        if self.experimental_bearer_token:
            return self.experimental_bearer_token
        if self.env_key:
            value = env_value(self.env_key)
            if value is None:
                raise EnvVarError(self.env_key, self.env_key_instructions)
            return value  # sent untrimmed, as llmx does
        return None

    def request_headers(self) -> dict[str, str]:
        """Authorization, `http_headers`, then `env_http_headers` whose variable is set."""
        headers: dict[str, str] = {}
        key = self.api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(self.http_headers or {})
        for header, var in (self.env_http_headers or {}).items():
            value = env_value(var)
            if value is not None:
                headers[header] = value
        return headers

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"base_url={self.base_url!r}", f"wire_api={self.wire_api!r}"]
        if self.env_key:
            parts.append(f"env_key={self.env_key!r}")
        if self.experimental_bearer_token:
            parts.append("experimental_bearer_token='***'")
        if self.http_headers:
            parts.append(f"http_headers=[{', '.join(sorted(self.http_headers))}]")
        return f"Provider({', '.join(parts)})"

    # -- loading ---------------------------------------------------------------

    @classmethod
    def from_dict(cls, kvs: Any, *, infer_missing: bool = False) -> Provider:
        """Read llmx's config keys (TOML or JSON) plus the SDK settings.

        Unknown keys are ignored (llmx does not reject them) and logged at DEBUG.
        """
        if not isinstance(kvs, Mapping):
            raise InvalidInputError("provider", f"expected a table/object, got {json_type_name(kvs)}")
        known = {f.name for f in fields(cls)}
        for key in kvs:
            if key not in known:
                logger.debug("provider %r: ignoring unknown key %r", kvs.get("name"), key)
        data = {k: v for k, v in kvs.items() if k in known}
        if "name" not in data:
            raise InvalidInputError("provider", "missing required field 'name'")
        if data.get("max_tokens") is False:  # TOML has no null: `max_tokens = false` omits it
            data["max_tokens"] = None
        for key, value in data.items():
            _check_setting(key, value)
        return cls(**data)

    @classmethod
    def from_toml(cls, source: str | Path, name: str | None = None) -> Provider:
        """Read a provider from TOML text or a file path.

        With `name`, the `[model_providers.<name>]` table of a config file is read;
        without it the whole document is the provider table.
        """
        if isinstance(source, Path) or ("\n" not in source and "=" not in source):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read provider config {str(path)!r}: {exc.strerror}") from None
        else:
            text = source
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}") from None
        if name is None:
            return cls.from_dict(doc)
        table = doc.get("model_providers", {}).get(name)
        if table is None:
            have = ", ".join(sorted(doc.get("model_providers", {}))) or "none"
            raise ConfigError(f"no [model_providers.{name}] table in the config (tables found: {have})")
        return cls.from_dict(table)

    @classmethod
    def builtin(cls, name: str) -> Provider:
        """A built-in provider: `litellm`, `oss`, `openai` or `local`, reading the
        environment now (blank variables count as unset)."""
        if name == "litellm":
            return cls(
                name="LiteLLM",
                base_url=env_value("LLMX_BASE_URL") or "http://localhost:4000/v1",
                env_key="LLMX_API_KEY",
                env_key_instructions="Set LLMX_API_KEY to your LiteLLM API key. See https://docs.litellm.ai/ for setup.",
                cache_control=True,
            )
        if name == "oss":
            base_url = env_value("LLMX_OSS_BASE_URL")
            if base_url is None:
                port_text = env_value("LLMX_OSS_PORT") or "11434"
                try:
                    port = int(port_text)
                    if not 0 <= port < 2**32:
                        raise ValueError
                except ValueError:
                    raise ConfigError(f"LLMX_OSS_PORT must be a port number, got {port_text!r}") from None
                base_url = f"http://localhost:{port}/v1"
            return cls(name="gpt-oss", base_url=base_url)
        if name == "openai":
            return cls(
                name="OpenAI",
                base_url=env_value("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
                env_key="OPENAI_API_KEY",
                env_http_headers={"OpenAI-Organization": "OPENAI_ORGANIZATION",
                                  "OpenAI-Project": "OPENAI_PROJECT"},
            )
        if name == "local":
            from .local import local_provider

            return local_provider()
        raise ConfigError(f"unknown built-in provider {name!r} (expected litellm, oss, openai or local)")


_STRING_MAPS = ("query_params", "http_headers", "env_http_headers")
_OPTIONAL_STRINGS = ("base_url", "env_key", "env_key_instructions", "experimental_bearer_token", "tool_call_content")
_OPTIONAL_UINTS = ("request_max_retries", "stream_max_retries", "stream_idle_timeout_ms", "max_tokens")
_BOOLS = ("requires_openai_auth", "include_usage", "cache_control")
_SECONDS = ("max_retry_delay", "connect_timeout")


def _check_setting(key: str, value: Any) -> None:
    where = f"provider.{key}"
    if key == "name" or key == "wire_api":
        ok, expected = isinstance(value, str), "a string"
    elif key in _OPTIONAL_STRINGS:
        ok, expected = value is None or isinstance(value, str), "a string"
    elif key in _STRING_MAPS:
        ok = value is None or (isinstance(value, Mapping)
                               and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()))
        expected = "a table of strings"
    elif key in _OPTIONAL_UINTS:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        expected = "a non-negative integer"
    elif key in _BOOLS:
        ok, expected = isinstance(value, bool), "true or false"
    else:  # _SECONDS
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        expected = "a non-negative number of seconds"
    if not ok:
        shown = "***" if key == "experimental_bearer_token" else repr(value)
        raise InvalidInputError(where, f"expected {expected}, got {json_type_name(value)} {shown}")
