"""Providers: where requests go, how they are authenticated, and what they send by default.

A `Provider` is made of three parts, each checked field by field when it is made:

- `Connection`: the base URL, the wire protocol, the key (given, or read from an
  environment variable when a request is sent), extra headers and query parameters;
- `RequestOptions` (`settings.py`): the request settings it uses unless a call says
  otherwise, the default model among them;
- `Quirks` (`settings.py`): what its server needs that the protocol does not say.

`Provider(name, base_url, **settings)` sorts flat keyword settings into those parts by
their names. `Provider.from_dict` / `from_toml` read llmx's config keys (a
``[model_providers.<name>]`` table of ``~/.llmx/config.toml``), and `BUILTIN_PROVIDERS`
is the one list of built-in providers (`Provider.builtin`, the CLI and the docs read
it). `default_provider` is what ``Client()`` uses when given nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit

from ._jsonrules import check_unicode, json_type_name
from .errors import ConfigError, EnvVarError, InvalidInputError, LlmxError, UnsupportedOperationError, display_url
from .settings import (
    BOOL,
    MAX_RETRIES,
    OPTION_NAMES,
    QUIRK_NAMES,
    STRING,
    Quirks,
    RequestOptions,
    as_part,
    check_header_name,
    check_header_value,
    check_headers,
    check_keywords,
    merge_options,
    optional,
    options_from,
    rule,
    setting,
    validate_fields,
)
from .wire import WIRES

if TYPE_CHECKING:
    from .local import LocalServer

__all__ = [
    "BUILTIN_PROVIDERS", "BuiltinProvider", "ConfigFile", "Connection", "Provider", "default_provider",
    "env_value",
]

logger = logging.getLogger("llmx_sync")

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"


def env_value(var: str) -> str | None:
    """The variable's value, or None when it is unset or blank (llmx's rule)."""
    value = os.environ.get(var)
    if value is None or not value.strip():
        return None
    return value


_TABLE_OF_STRINGS: Final = rule("a table of strings", lambda value: isinstance(value, Mapping) and all(
    isinstance(k, str) and isinstance(v, str) for k, v in value.items()))


def STRING_MAP(where: str, value: Any) -> None:  # noqa: N802 - a rule, named as the others
    _TABLE_OF_STRINGS(where, value)
    for key, text in value.items():
        check_unicode(f"{where}[{key!r}]", key)
        check_unicode(f"{where}[{key!r}]", text)


def _check_secret(where: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidInputError(where, f"expected a string, got {json_type_name(value)} ***")
    check_header_value(where, value)


def _check_base_url(where: str, value: Any) -> None:
    """An http:// or https:// URL with a host (the usual slip: no scheme at all)."""
    if not isinstance(value, str):
        raise InvalidInputError(where, f"expected a URL string, got {json_type_name(value)}")
    check_unicode(where, value)
    shown = display_url(value)
    if any(c.isspace() for c in value):
        raise InvalidInputError(where, f"{shown!r} contains white space")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise InvalidInputError(where, f"{shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        if "://" not in value:
            raise InvalidInputError(where, f"{shown!r} has no scheme: add http:// or https:// "
                                    f"(e.g. 'http://{value.lstrip('/')}')")
        raise InvalidInputError(where, f"{shown!r}: expected an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidInputError(where, f"{shown!r} has no host")


def _check_wire_api(where: str, value: Any) -> None:
    if value == "responses":
        raise UnsupportedOperationError(
            "the Responses API (wire_api = \"responses\") is not supported; use wire_api = \"chat\"")
    if value not in WIRES:
        raise InvalidInputError(where, f"expected one of {', '.join(map(repr, WIRES))}, got {value!r}")


def _check_env_headers(where: str, value: Any) -> None:
    STRING_MAP(where, value)
    for name in value:
        check_header_name(where, name)


# --- the connection ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Connection:
    """Where requests go and how they are authenticated.

    `api_key` is sent as a bearer token; without it, `env_key` names the environment
    variable to read the key from when a request is sent (missing or blank:
    `EnvVarError`, with `env_key_instructions`; with ``env_key_required=False``, no key
    is sent, for servers that need none). `http_headers` are sent as given,
    `env_http_headers` maps header names to environment variables (sent when set).
    `wire_api` names the wire protocol (`wire.WIRES`).
    """

    base_url: str = setting(DEFAULT_BASE_URL, _check_base_url)
    wire_api: str = setting("chat", _check_wire_api)
    api_key: str | None = field(default=None, repr=False, metadata={"check": optional(_check_secret)})
    env_key: str | None = setting(None, optional(STRING))
    env_key_instructions: str | None = setting(None, optional(STRING))
    env_key_required: bool = setting(True, BOOL)
    query_params: Mapping[str, str] | None = setting(None, optional(STRING_MAP))
    http_headers: Mapping[str, str] | None = field(default=None, repr=False, metadata={"check": optional(check_headers)})
    env_http_headers: Mapping[str, str] | None = setting(None, optional(_check_env_headers))

    def __new__(cls, *args: Any, **given: Any) -> Connection:
        check_keywords(cls, args, given)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        validate_fields(self)

    def __repr__(self) -> str:
        """The fields, without a secret: the URL's password, query values, key and header
        values are not shown (the names of parameters and headers are)."""
        parts = [f"base_url={display_url(self.base_url)!r}", f"wire_api={self.wire_api!r}"]
        if self.api_key:
            parts.append("api_key='***'")
        if self.env_key:
            parts.append(f"env_key={self.env_key!r}" + ("" if self.env_key_required else " (optional)"))
        for name in ("query_params", "http_headers", "env_http_headers"):
            mapping = getattr(self, name)
            if mapping:
                parts.append(f"{name}=[{', '.join(mapping)}]")
        return f"Connection({', '.join(parts)})"

    def url(self) -> str:
        """``<base>/<the wire's path>[?query]``: one slash between, the query
        URL-encoded in insertion order (llmx doubled slashes and left values raw)."""
        query = urlencode(self.query_params) if self.query_params else ""
        return self.base_url.rstrip("/") + WIRES[self.wire_api].path + ("?" + query if query else "")

    def bearer_token(self) -> str | None:
        """The key to send, or None. Raises `EnvVarError` for a missing key."""
        if self.api_key:
            return self.api_key
        if self.env_key:
            value = env_value(self.env_key)
            if value is None:
                if not self.env_key_required:
                    return None
                raise EnvVarError(self.env_key, self.env_key_instructions)
            check_header_value(f"${self.env_key}", value)
            return value  # sent untrimmed, as llmx sends it
        return None

    def headers(self) -> dict[str, str]:
        """Authorization, `http_headers`, then `env_http_headers` whose variable is set."""
        headers: dict[str, str] = {}
        key = self.bearer_token()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(self.http_headers or {})
        for header, var in (self.env_http_headers or {}).items():
            value = env_value(var)
            if value is not None:
                check_header_value(f"env_http_headers[{header!r}] (${var})", value)
                headers[header] = value
        return headers


CONNECTION_NAMES: Final = frozenset(spec.name for spec in dataclasses.fields(Connection))


# --- the provider ----------------------------------------------------------------------------------


class Provider:
    """A model provider: a name, its `connection`, its request `defaults` and its `quirks`.

    ``Provider("local", "http://127.0.0.1:8080/v1", model="m", tool_call_content="")``
    sorts flat settings into the three parts by name; the parts can also be given
    whole (``connection=``, ``defaults=``, ``quirks=``). `server` is the local server
    process this provider's URL belongs to, when the SDK runs it (`Client` keeps it
    running while it is open). Immutable: `replace` gives a changed copy. Secrets
    (the key, header values, a password in the URL) never appear in `repr()`.
    """

    __slots__ = ("name", "connection", "defaults", "quirks", "server")

    name: str
    connection: Connection
    defaults: RequestOptions
    quirks: Quirks
    server: LocalServer | None

    def __init__(self, name: str, base_url: str | None = None, *, connection: Connection | None = None,
                 defaults: RequestOptions | None = None, quirks: Quirks | None = None,
                 server: LocalServer | None = None, **settings: Any) -> None:
        if not isinstance(name, str):
            raise InvalidInputError("name", f"expected a string, got {json_type_name(name)}")
        check_unicode("name", name)
        if base_url is not None:
            settings["base_url"] = base_url
        parts = _sort_settings(settings)
        # A part may come as a dict of its fields (as from a config), read the same way.
        connection = Connection() if connection is None else as_part(Connection, "connection", connection)
        defaults = None if defaults is None else as_part(RequestOptions, "defaults", defaults)
        quirks = Quirks() if quirks is None else as_part(Quirks, "quirks", quirks)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "connection", _with(connection, parts[0]))
        object.__setattr__(self, "defaults", _with_options(defaults, parts[1]))
        object.__setattr__(self, "quirks", _with(quirks, parts[2]))
        object.__setattr__(self, "server", server)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Provider is immutable: use provider.replace({name}=...)")

    # copy and pickle rebuild it through the constructor (the default way sets the slots
    # one by one, which __setattr__ refuses); a deep copy shares the server process.
    def __reduce__(self) -> tuple[Any, ...]:
        return _provider_from_parts, (self.name, self.connection, self.defaults, self.quirks, self.server)

    def __deepcopy__(self, memo: dict[int, Any]) -> Provider:
        return _provider_from_parts(self.name, copy.deepcopy(self.connection, memo),
                                    copy.deepcopy(self.defaults, memo), copy.deepcopy(self.quirks, memo), self.server)

    def replace(self, **settings: Any) -> Provider:
        """A copy with flat settings (or whole parts) changed."""
        current: dict[str, Any] = {"connection": self.connection, "defaults": self.defaults,
                                   "quirks": self.quirks, "server": self.server}
        name = settings.pop("name", self.name)
        server_given = "server" in settings
        for part in ("connection", "defaults", "quirks", "server"):
            if part in settings:
                current[part] = settings.pop(part)
        provider = Provider(name, **current, **settings)
        if (provider.server is not None and not server_given
                and provider.connection.base_url != self.connection.base_url):
            # `server` runs behind the old URL: a client of the new one must not start or stop it.
            provider = Provider(name, connection=provider.connection, defaults=provider.defaults,
                                quirks=provider.quirks)
        return provider

    def url(self) -> str:
        return self.connection.url()

    def __repr__(self) -> str:
        model = f", model={self.defaults.model!r}" if self.defaults.model else ""
        return f"Provider(name={self.name!r}, {self.connection!r}{model})"

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> Provider:
        """Read llmx's config keys (TOML or JSON) plus the SDK's settings by their names.

        llmx's keys are translated: ``experimental_bearer_token`` is `api_key`,
        ``stream_idle_timeout_ms`` is `idle_timeout` in seconds, ``request_max_retries``
        is capped at 100 as llmx caps it, and ``max_tokens = false`` (TOML has no null)
        leaves `max_tokens` out. Keys the SDK does not use (``stream_max_retries``,
        ``requires_openai_auth``, unknown ones) are ignored, as llmx ignores unknown
        keys, and logged at DEBUG. Raises `InvalidInputError` naming ``provider.<key>``.
        """
        if not isinstance(data, Mapping):
            raise InvalidInputError("provider", f"expected a table/object, got {json_type_name(data)}")
        if "name" not in data:
            raise InvalidInputError("provider", "missing required field 'name'")
        settings: dict[str, Any] = {}
        for key, value in data.items():
            translated = _translate_config_key(key, value)
            if translated is None:
                logger.debug("provider %r: ignoring key %r (not used by llmx_sync)", data.get("name"), key)
                continue
            settings[translated[0]] = translated[1]
        name = settings.pop("name")
        try:
            return cls(name, **settings)
        except InvalidInputError as exc:
            key = _CONFIG_KEYS.get(exc.where.split("[", 1)[0], exc.where)
            raise InvalidInputError(f"provider.{key}", exc.problem) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], name: str | None = None) -> Provider:
        """The provider in a TOML file: with `name`, its ``[model_providers.<name>]``
        table; without, the whole document is the provider's table."""
        optional(STRING)("name", name)
        return ConfigFile.read(path).table_provider(name)

    @classmethod
    def from_toml_text(cls, text: str, name: str | None = None) -> Provider:
        """As `from_toml`, from TOML text."""
        optional(STRING)("name", name)
        return ConfigFile.parse(text, "<text>").table_provider(name)

    @classmethod
    def builtin(cls, name: str) -> Provider:
        """A built-in provider (`BUILTIN_PROVIDERS`), reading the environment now
        (blank variables count as unset)."""
        STRING("name", name)
        builtin = BUILTIN_PROVIDERS.get(name)
        if builtin is None:
            raise ConfigError(f"unknown built-in provider {name!r} (expected {', '.join(BUILTIN_PROVIDERS)})")
        return builtin.provider()


def _provider_from_parts(name: str, connection: Connection, defaults: RequestOptions, quirks: Quirks,
                         server: LocalServer | None) -> Provider:
    return Provider(name, connection=connection, defaults=defaults, quirks=quirks, server=server)


def _sort_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Flat settings -> (connection, request options, quirks), by their names."""
    parts: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
    for key, value in settings.items():
        if key in CONNECTION_NAMES:
            parts[0][key] = value
        elif key in OPTION_NAMES:
            parts[1][key] = value
        elif key in QUIRK_NAMES:
            parts[2][key] = value
        else:
            known = sorted(CONNECTION_NAMES | OPTION_NAMES | QUIRK_NAMES)
            raise InvalidInputError(key, f"not a provider setting (known: {', '.join(known)})")
    return parts


def _with(part: Any, changes: dict[str, Any]) -> Any:
    return dataclasses.replace(part, **changes) if changes else part


def _with_options(defaults: RequestOptions | None, changes: dict[str, Any]) -> RequestOptions:
    if not changes:
        return defaults or RequestOptions()
    return merge_options(defaults, options_from(changes))


# llmx's config key -> the SDK's setting, for the keys whose name or unit differ.
_CONFIG_KEYS: Final = {"api_key": "experimental_bearer_token", "idle_timeout": "stream_idle_timeout_ms"}
_UNUSED_CONFIG_KEYS: Final = frozenset({"stream_max_retries", "requires_openai_auth"})
# llmx's `Option` keys whose null is "unset": the SDK's default applies.
_NULL_MEANS_DEFAULT: Final = frozenset({"base_url", "request_max_retries", "stream_idle_timeout_ms"})


def _translate_config_key(key: str, value: Any) -> tuple[str, Any] | None:
    """One config entry as a `Provider` setting, or None for a key the SDK does not use."""
    if key in _UNUSED_CONFIG_KEYS or not isinstance(key, str):
        return None
    if value is None and key in _NULL_MEANS_DEFAULT:  # JSON null (llmx writes its unset options so)
        return None
    if key == "experimental_bearer_token":
        return "api_key", value
    if key == "stream_idle_timeout_ms":
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise InvalidInputError(f"provider.{key}", "expected a positive integer (milliseconds), "
                                    f"got {json_type_name(value)} {value!r}")
        return "idle_timeout", value / 1000.0
    if key == "request_max_retries" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return key, min(value, MAX_RETRIES)
    if key == "max_tokens" and value is False:
        return key, None
    if key == "name" or key in CONNECTION_NAMES or key in OPTION_NAMES or key in QUIRK_NAMES:
        return key, value
    return None


# --- config files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFile:
    """A parsed llmx config (``~/.llmx/config.toml``): its ``[model_providers.*]``
    tables, its ``model_provider`` (the default one) and its ``model``."""

    document: dict[str, Any]
    source: str

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ConfigFile:
        if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
            raise InvalidInputError("path", f"expected a file path (str or pathlib.Path), got {type(path).__name__}")
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            problem = f"cannot read provider config {str(path)!r}: {exc.strerror or exc}"
        except UnicodeDecodeError as exc:
            problem = f"config {str(path)!r}: not UTF-8 text ({exc.reason})"
        else:
            return cls.parse(text, str(path))
        raise ConfigError(problem)

    @classmethod
    def parse(cls, text: str, source: str) -> ConfigFile:
        if not isinstance(text, str):
            raise InvalidInputError("text", f"expected TOML text (a str), got {type(text).__name__}")
        try:
            return cls(tomllib.loads(text), source)
        except tomllib.TOMLDecodeError as exc:
            problem = f"invalid TOML: {exc}"
        except RecursionError:  # tomllib recurses into nested arrays and tables
            problem = "invalid TOML: nested too deep"
        raise ConfigError(problem)

    @property
    def tables(self) -> dict[str, Any]:
        tables = self.document.get("model_providers")
        return tables if isinstance(tables, dict) else {}

    @property
    def model(self) -> str | None:
        model = self.document.get("model")
        return model if isinstance(model, str) else None

    def table_provider(self, name: str | None) -> Provider:
        """The provider of the ``[model_providers.<name>]`` table; with no name, the whole
        document is the provider's table."""
        if name is None:
            return Provider.from_dict(self.document)
        table = self.tables.get(name)
        if table is None:
            have = ", ".join(sorted(self.tables)) or "none"
            raise ConfigError(f"no [model_providers.{name}] table in the config (tables found: {have})")
        return Provider.from_dict(table)

    def provider(self, name: str | None = None) -> Provider:
        """The provider a run with this config uses: `name` (default: the file's
        ``model_provider``), from its table or, without one, the built-in of that name
        (as in llmx, a config adds providers but cannot replace the built-in ones)."""
        if name is None:
            name = self.document.get("model_provider")
            if not isinstance(name, str):
                raise ConfigError(f"config {self.source!r} has no `model_provider` key; name a provider")
        if name not in self.tables and name in BUILTIN_PROVIDERS:
            return Provider.builtin(name)
        return self.table_provider(name)


# --- built-in providers -------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinProvider:
    """One built-in provider: its key, a line saying where it goes, its default model,
    and the factory that reads the environment."""

    key: str
    summary: str
    model: str
    make: Callable[[], Provider]

    def provider(self) -> Provider:
        return self.make().replace(model=self.model)


def _litellm() -> Provider:
    return Provider(
        "LiteLLM", env_value("LLMX_BASE_URL") or "http://localhost:4000/v1",
        env_key="LLMX_API_KEY",
        env_key_instructions="Set LLMX_API_KEY to your LiteLLM API key. See https://docs.litellm.ai/ for setup.",
        cache_control=True,
    )


def _oss() -> Provider:
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
    return Provider("gpt-oss", base_url)


def _openai() -> Provider:
    return Provider(
        "OpenAI", env_value("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
        env_key="OPENAI_API_KEY",
        env_http_headers={"OpenAI-Organization": "OPENAI_ORGANIZATION", "OpenAI-Project": "OPENAI_PROJECT"},
        # OpenAI documents json_schema: no need to find a mode (a 400 there is about something else).
        tool_call_content=None, max_tokens_param="max_completion_tokens", structured_output="json_schema",
    )


#: The `local` provider's `max_tokens`: enough for a paragraph or a tool call from the bundled
#: model, which otherwise may write on to the end of its context for minutes.
LOCAL_MAX_TOKENS: Final = 512


def _local() -> Provider:
    from .local import shared_server  # only this provider needs the process launcher

    server = shared_server()
    # llama-cpp-python's server refuses response_format "json_schema"; it takes a schema
    # with "json_object". A tiny model that does not stop would write up to the context's
    # end for minutes: a modest limit unless the caller asks for more.
    return Provider("local", server.base_url, server=server, structured_output="json_object",
                    forced_tool_choice="object", max_tokens=LOCAL_MAX_TOKENS)


BUILTIN_PROVIDERS: Final[Mapping[str, BuiltinProvider]] = {
    builtin.key: builtin for builtin in (
        BuiltinProvider("litellm", "a LiteLLM proxy at $LLMX_BASE_URL or http://localhost:4000/v1, "
                                   "key $LLMX_API_KEY (required)",
                        "anthropic/claude-sonnet-4-20250514", _litellm),  # llmx's default model
        BuiltinProvider("oss", "Ollama at $LLMX_OSS_BASE_URL or http://localhost:${LLMX_OSS_PORT:-11434}/v1",
                        "gpt-oss:20b", _oss),
        BuiltinProvider("openai", "OpenAI at $OPENAI_BASE_URL or https://api.openai.com/v1, "
                                  "key $OPENAI_API_KEY (required)", "gpt-4o-mini", _openai),
        # llama.cpp serves its one model whatever the name.
        BuiltinProvider("local", "starts llama.cpp with a bundled tiny model "
                                 "(needs `pip install 'llmx_sync[local]'`)", "local", _local),
    )
}


# --- what Client() uses ---------------------------------------------------------------------------

_LITELLM_PROXY = ("localhost", 4000)
_PROBE_TIMEOUT = 0.25


def _answers(address: tuple[str, int]) -> bool:
    """Whether something accepts TCP connections at `address` (a quick, bounded probe)."""
    try:
        with socket.create_connection(address, timeout=_PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def default_provider() -> Provider:
    """The provider of a ``Client()`` given nothing, the first that applies:

    1. ``$LLMX_BASE_URL`` is set: `litellm` (any OpenAI-compatible server), sending
       ``$LLMX_API_KEY`` when it is set and no key otherwise (most local servers need none);
    2. ``$OPENAI_API_KEY`` or ``$OPENAI_BASE_URL`` is set: `openai`;
    3. a LiteLLM proxy answers on localhost:4000 (a 0.25 s TCP probe): `litellm`;
    4. the bundled model can run (the ``[local]`` extra is installed): `local`, which
       STARTS a llama.cpp server process, stopped when the last client using it closes;
    5. otherwise a `ConfigError` saying how to configure one, and why `local` could not run.

    ``$LLMX_MAX_TOKENS``, when set, replaces the chosen provider's `max_tokens` (a small
    local model that does not stop would otherwise write on to the provider's 8192).
    """
    max_tokens = _env_max_tokens()  # (checked first: a bad value starts nothing)
    provider = _chosen_provider()
    return provider if max_tokens is None else provider.replace(max_tokens=max_tokens)


def _env_max_tokens() -> int | None:
    """``$LLMX_MAX_TOKENS`` as a number of tokens, None when unset or blank."""
    text = env_value("LLMX_MAX_TOKENS")
    if text is None:
        return None
    try:
        max_tokens = int(text)
        if not 0 < max_tokens < 2**31:
            raise ValueError
    except ValueError:
        raise ConfigError(f"LLMX_MAX_TOKENS must be a positive whole number of tokens, got {text!r}") from None
    return max_tokens


def _chosen_provider() -> Provider:
    if env_value("LLMX_BASE_URL"):
        return Provider.builtin("litellm").replace(env_key_required=False)
    if env_value("OPENAI_API_KEY") or env_value("OPENAI_BASE_URL"):
        return Provider.builtin("openai")
    if _answers(_LITELLM_PROXY):
        return Provider.builtin("litellm")
    try:
        return Provider.builtin("local")
    except (ImportError, LlmxError) as exc:
        # The CLI prints only str(error): the reason (the `pip install` hint) must be in it.
        raise ConfigError(
            "no model provider configured. Point the SDK at a model in one of three ways: "
            "set LLMX_BASE_URL (and LLMX_API_KEY) for a LiteLLM or other OpenAI-compatible server; "
            "set OPENAI_API_KEY for OpenAI; or pass one, e.g. Client(base_url='http://127.0.0.1:8000/v1') "
            f"or Client(provider=Provider.from_toml(...)). The bundled local model cannot run: {exc}"
        ) from exc
