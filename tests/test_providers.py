"""Providers: llmx's config keys, built-ins, URLs and auth headers."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
from reference_cases import reference_case

from llmx_sync.errors import ConfigError, EnvVarError, InvalidInputError, UnsupportedOperationError
from llmx_sync.providers import Connection, Provider

ENV_VARS = ("LLMX_BASE_URL", "LLMX_API_KEY", "LLMX_OSS_BASE_URL", "LLMX_OSS_PORT", "OPENAI_BASE_URL",
            "OPENAI_API_KEY", "OPENAI_ORGANIZATION", "OPENAI_PROJECT", "API_KEY", "EXAMPLE_ENV_VAR")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


# --- the reference cases ------------------------------------------------------------------------


# llmx's provider keys -> where each one is now. A null expected value means "the default".
LLMX_KEYS: dict[str, Any] = {
    "name": lambda p: p.name,
    "base_url": lambda p: p.connection.base_url,
    "env_key": lambda p: p.connection.env_key,
    "env_key_instructions": lambda p: p.connection.env_key_instructions,
    "experimental_bearer_token": lambda p: p.connection.api_key,
    "wire_api": lambda p: p.connection.wire_api,
    "query_params": lambda p: p.connection.query_params,
    "http_headers": lambda p: p.connection.http_headers,
    "env_http_headers": lambda p: p.connection.env_http_headers,
    "request_max_retries": lambda p: p.defaults.request_max_retries,
    "stream_idle_timeout_ms": lambda p: p.defaults.idle_timeout * 1000,
}
# Keys the SDK does not use (from_dict ignores them, as llmx ignores unknown keys), with llmx's default.
UNUSED_LLMX_KEYS = {"stream_max_retries": None, "requires_openai_auth": False}


@pytest.mark.parametrize("case_id", ["PR01", "PR02", "PR03"])
def test_reference_provider_toml(case_id: str) -> None:
    case = reference_case("provider_cases", case_id)
    provider = Provider.from_toml_text(case["toml"])
    default = Provider(name="default")
    assert set(case["expected"]) == set(LLMX_KEYS) | set(UNUSED_LLMX_KEYS)
    for key, read in LLMX_KEYS.items():
        expected = case["expected"][key]
        assert read(provider) == (read(default) if expected is None else expected), key
    for key, llmx_default in UNUSED_LLMX_KEYS.items():
        assert case["expected"][key] == llmx_default
    # ... and setting them changes nothing
    ignored = Provider.from_toml_text(case["toml"] + "stream_max_retries = 9\nrequires_openai_auth = true\n")
    assert (ignored.name, ignored.connection, ignored.defaults, ignored.quirks) == (
        provider.name, provider.connection, provider.defaults, provider.quirks)
    # ... and llmx's own JSON form of the provider, nulls and all, reads the same
    as_json = Provider.from_dict(case["expected"])
    assert (as_json.name, as_json.connection, as_json.defaults, as_json.quirks) == (
        provider.name, provider.connection, provider.defaults, provider.quirks)
    expected_url = case.get("derived_full_url", case["expected"]["base_url"] + "/chat/completions")
    assert provider.url() == expected_url
    assert provider.connection.url() == expected_url


def test_defaults_and_effective_values() -> None:
    defaults = Provider(name="p").defaults
    assert (defaults.max_tokens, defaults.include_usage, defaults.cache_control, defaults.max_retry_delay) == (
        8192, True, False, 60.0)
    assert defaults.request_max_retries == 4
    assert defaults.idle_timeout == 300.0
    # llmx's config keys: retries capped at 100 as llmx caps them, the idle timeout in ms
    # (stream_max_retries is not used by the SDK: ignored, like any key it does not know).
    capped = Provider.from_dict({"name": "p", "request_max_retries": 1000, "stream_max_retries": 1000,
                                 "stream_idle_timeout_ms": 1500}).defaults
    assert capped.request_max_retries == 100
    assert capped.idle_timeout == 1.5
    assert Provider(name="p", request_max_retries=0).defaults.request_max_retries == 0
    # Given directly, a setting out of range is an error rather than capped.
    with pytest.raises(InvalidInputError, match=r"^request_max_retries: expected an integer from 0 to 100, "
                                                r"got number 1000$"):
        Provider(name="p", request_max_retries=1000)
    with pytest.raises(InvalidInputError, match=r"^stream_max_retries: not a provider setting"):
        Provider(name="p", stream_max_retries=1000)


# --- from_dict / from_toml ------------------------------------------------------------------------


def test_from_dict_reads_settings_and_ignores_unknown_keys() -> None:
    provider = Provider.from_dict({"name": "p", "max_tokens": 100, "include_usage": False, "cache_control": True,
                                   "max_retry_delay": 5, "future_key": 1})
    defaults = provider.defaults
    assert (defaults.max_tokens, defaults.include_usage, defaults.cache_control, defaults.max_retry_delay) == (
        100, False, True, 5)


BAD_DICTS: list[tuple[Any, str]] = [
    ({}, "provider: missing required field 'name'"),
    ([], "provider: expected a table/object, got array"),
    ({"name": 1}, "provider.name: expected a string, got number"),
    ({"name": "p", "request_max_retries": "4"},
     "provider.request_max_retries: expected an integer from 0 to 100, got string '4'"),
    ({"name": "p", "stream_idle_timeout_ms": -1},
     "provider.stream_idle_timeout_ms: expected a positive integer (milliseconds), got number -1"),
    ({"name": "p", "max_tokens": True}, "provider.max_tokens: expected a non-negative integer, got boolean True"),
    ({"name": "p", "http_headers": {"X": 1}}, "provider.http_headers['X']: expected a string, got number"),
    ({"name": "p", "http_headers": {"X": "a\nb"}},
     "provider.http_headers['X']: the value contains a line break or NUL: a key read from a file often ends with a "
     "newline (strip it)"),
    ({"name": "p", "env_http_headers": {"X": 1}},
     "provider.env_http_headers: expected a table of strings, got object {'X': 1}"),
    ({"name": "p", "base_url": "localhost:8080/v1"},
     "provider.base_url: 'localhost:8080/v1' has no scheme: add http:// or https:// (e.g. 'http://localhost:8080/v1')"),
    ({"name": "p", "include_usage": "no"}, "provider.include_usage: expected True or False, got string 'no'"),
    ({"name": "p", "wire_api": "grpc"}, "provider.wire_api: expected one of 'chat', got 'grpc'"),
    ({"name": "p", "experimental_bearer_token": 12345},
     "provider.experimental_bearer_token: expected a string, got number ***"),
]


@pytest.mark.parametrize(("data", "message"), BAD_DICTS)
def test_from_dict_type_errors(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Provider.from_dict(data)
    assert isinstance(info.value, InvalidInputError)
    assert str(info.value) == message


def test_toml_false_max_tokens_omits_it() -> None:
    assert Provider.from_toml_text('name = "p"\nmax_tokens = false\n').defaults.max_tokens is None


CONFIG = """
model_provider = "azure"

[model_providers.azure]
name = "Azure"
base_url = "https://x.openai.azure.com/openai"
query_params = { api-version = "2025-04-01-preview" }

[model_providers.local]
name = "Local"
base_url = "http://127.0.0.1:8080/v1/"
max_tokens = 512
"""


def test_from_toml_with_name_selects_the_table() -> None:
    assert Provider.from_toml_text(CONFIG, "azure").url() == (
        "https://x.openai.azure.com/openai/chat/completions?api-version=2025-04-01-preview")
    local = Provider.from_toml_text(CONFIG, "local")
    assert (local.name, local.defaults.max_tokens) == ("Local", 512)


def test_from_toml_missing_table_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError) as info:
        Provider.from_toml_text(CONFIG, "ollama")
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == "no [model_providers.ollama] table in the config (tables found: azure, local)"


def test_from_toml_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    assert Provider.from_toml(path, "local").name == "Local"
    assert Provider.from_toml(str(path), "azure").name == "Azure"


def test_from_toml_errors() -> None:
    with pytest.raises(ConfigError, match=r"^invalid TOML: "):
        Provider.from_toml_text('name = "p\nx = 1\n')
    with pytest.raises(ConfigError, match=r"^cannot read provider config '/nonexistent/config\.toml'"):
        Provider.from_toml("/nonexistent/config.toml")


# --- built-ins ------------------------------------------------------------------------------------


def test_builtin_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = Provider.builtin("litellm")
    connection = provider.connection
    assert (provider.name, connection.base_url, connection.env_key, provider.defaults.cache_control,
            connection.wire_api) == ("LiteLLM", "http://localhost:4000/v1", "LLMX_API_KEY", True, "chat")
    monkeypatch.setenv("LLMX_BASE_URL", "http://proxy:4000/v1")
    assert Provider.builtin("litellm").connection.base_url == "http://proxy:4000/v1"
    monkeypatch.setenv("LLMX_BASE_URL", "  ")
    assert Provider.builtin("litellm").connection.base_url == "http://localhost:4000/v1"


def test_builtin_oss(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Provider.builtin("oss").connection.base_url == "http://localhost:11434/v1"
    assert Provider.builtin("oss").name == "gpt-oss"
    assert Provider.builtin("oss").connection.env_key is None
    monkeypatch.setenv("LLMX_OSS_PORT", "1234")
    assert Provider.builtin("oss").connection.base_url == "http://localhost:1234/v1"
    monkeypatch.setenv("LLMX_OSS_PORT", "")
    assert Provider.builtin("oss").connection.base_url == "http://localhost:11434/v1"
    monkeypatch.setenv("LLMX_OSS_BASE_URL", "http://gpu:11434/v1")
    monkeypatch.setenv("LLMX_OSS_PORT", "1234")
    assert Provider.builtin("oss").connection.base_url == "http://gpu:11434/v1"


def test_builtin_oss_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMX_OSS_PORT", "http")
    with pytest.raises(ConfigError, match=r"^LLMX_OSS_PORT must be a port number, got 'http'$"):
        Provider.builtin("oss")


def test_builtin_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = Provider.builtin("openai")
    assert (provider.name, provider.connection.env_key, provider.connection.wire_api) == (
        "OpenAI", "OPENAI_API_KEY", "chat")
    assert provider.url() == "https://api.openai.com/v1/chat/completions"
    monkeypatch.setenv("OPENAI_BASE_URL", "https://gateway/v1")
    assert Provider.builtin("openai").url() == "https://gateway/v1/chat/completions"


def test_builtin_unknown() -> None:
    with pytest.raises(ConfigError, match=r"^unknown built-in provider 'lmstudio'"):
        Provider.builtin("lmstudio")


# --- URLs: one slash before the path, query URL-encoded in insertion order --------------------------


def test_url_has_one_slash_before_the_path() -> None:
    assert Provider(name="p", base_url="http://x/v1/").url() == "http://x/v1/chat/completions"
    assert Provider(name="p", base_url="http://x/v1").url() == "http://x/v1/chat/completions"
    assert Provider(name="p").url() == "https://api.openai.com/v1/chat/completions"
    assert Connection(base_url="http://x/v1/").url() == "http://x/v1/chat/completions"
    # The Responses API is refused when the provider is made (there is no URL to build for it).
    with pytest.raises(UnsupportedOperationError, match=r"Responses API"):
        Provider(name="p", base_url="http://x", wire_api="responses")
    with pytest.raises(UnsupportedOperationError, match=r"Responses API"):
        Connection(base_url="http://x", wire_api="responses")


def test_query_params_are_encoded_in_insertion_order() -> None:
    provider = Provider(name="p", base_url="http://x/v1",
                        query_params={"z": "1", "api-version": "2025-04-01", "q": "a b&c=d/é"})
    assert provider.url() == "http://x/v1/chat/completions?z=1&api-version=2025-04-01&q=a+b%26c%3Dd%2F%C3%A9"
    assert Provider(name="p", base_url="http://x", query_params={}).url() == "http://x/chat/completions"


# --- auth and headers -------------------------------------------------------------------------------


def test_bearer_token_wins_over_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "from-env")
    provider = Provider(name="p", env_key="API_KEY", api_key="literal")
    assert provider.connection.headers() == {"Authorization": "Bearer literal"}
    # the config key llmx uses for it is still read
    assert Provider.from_dict({"name": "p", "env_key": "API_KEY", "experimental_bearer_token": "literal"}
                              ).connection.headers() == {"Authorization": "Bearer literal"}


def test_env_key_value_is_sent_untrimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", " sk-123 ")
    assert Provider(name="p", env_key="API_KEY").connection.headers() == {"Authorization": "Bearer  sk-123 "}


@pytest.mark.parametrize("value", [None, "", "  \t"])
def test_missing_or_blank_env_key_raises_the_seed_text(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("LLMX_API_KEY", value)
    with pytest.raises(EnvVarError) as info:
        Provider.builtin("litellm").connection.headers()
    assert str(info.value) == ("Missing environment variable: `LLMX_API_KEY`. Set LLMX_API_KEY to your LiteLLM "
                               "API key. See https://docs.litellm.ai/ for setup.")
    assert info.value.var == "LLMX_API_KEY"


def test_env_key_without_instructions() -> None:
    with pytest.raises(EnvVarError, match=r"^Missing environment variable: `API_KEY`\.$"):
        Provider(name="p", env_key="API_KEY").connection.bearer_token()


def test_no_env_key_no_authorization() -> None:
    assert Provider(name="p").connection.headers() == {}


def test_http_and_env_http_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_ENV_VAR", " v ")
    monkeypatch.setenv("OPENAI_PROJECT", "  ")
    provider = Provider(name="p", http_headers={"X-Example-Header": "example-value"},
                        env_http_headers={"X-Example-Env-Header": "EXAMPLE_ENV_VAR", "OpenAI-Project": "OPENAI_PROJECT",
                                          "OpenAI-Organization": "OPENAI_ORGANIZATION"})
    assert provider.connection.headers() == {"X-Example-Header": "example-value", "X-Example-Env-Header": " v "}


def test_a_provider_copies_and_pickles() -> None:
    # (a dataclass before; its slots and immutability must not break copy and pickle)
    server = object()  # the local server process: shared by copies, never copied
    provider = Provider(name="p", base_url="http://x/v1", max_tokens=None, http_headers={"X-A": "1"},
                        tool_call_content="", server=server)  # type: ignore[arg-type]
    for copied in (copy.copy(provider), copy.deepcopy(provider)):
        assert (copied.name, copied.connection, copied.defaults, copied.quirks) == (
            provider.name, provider.connection, provider.defaults, provider.quirks)
        assert copied.defaults.given == {"max_tokens"} and copied.server is server
    unpickled = pickle.loads(pickle.dumps(provider.replace(server=None)))
    assert (unpickled.name, unpickled.connection, unpickled.defaults, unpickled.quirks) == (
        provider.name, provider.connection, provider.defaults, provider.quirks)
    assert unpickled.defaults.given == {"max_tokens"}


def test_repr_never_shows_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "sk-env-secret")
    provider = Provider(name="p", env_key="API_KEY", api_key="sk-literal-secret",
                        http_headers={"X-Api-Key": "header-secret"}, env_http_headers={"X-Org": "API_KEY"})
    text = repr(provider)
    for secret in ("sk-env-secret", "sk-literal-secret", "header-secret"):
        assert secret not in text
    assert "api_key='***'" in text
    assert "X-Api-Key" in text
    assert repr(provider) == str(provider)
