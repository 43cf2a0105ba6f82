"""Providers: llmx's config keys, built-ins, URLs and auth headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reference_cases import reference_case

from llmx_sync.errors import ConfigError, EnvVarError, InvalidInputError
from llmx_sync.providers import Provider

ENV_VARS = ("LLMX_BASE_URL", "LLMX_API_KEY", "LLMX_OSS_BASE_URL", "LLMX_OSS_PORT", "OPENAI_BASE_URL",
            "OPENAI_API_KEY", "OPENAI_ORGANIZATION", "OPENAI_PROJECT", "API_KEY", "EXAMPLE_ENV_VAR")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


# --- the reference cases ------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", ["PR01", "PR02", "PR03"])
def test_reference_provider_toml(case_id: str) -> None:
    case = reference_case("provider_cases", case_id)
    provider = Provider.from_toml(case["toml"])
    assert {key: getattr(provider, key) for key in case["expected"]} == case["expected"]
    expected_url = case.get("derived_full_url", case["expected"]["base_url"] + "/chat/completions")
    assert provider.chat_url() == expected_url


def test_defaults_and_effective_values() -> None:
    provider = Provider(name="p")
    assert (provider.max_tokens, provider.include_usage, provider.cache_control, provider.max_retry_delay) == (
        8192, True, False, 60.0)
    assert (provider.effective_request_max_retries, provider.effective_stream_max_retries) == (4, 5)
    assert provider.stream_idle_timeout == 300.0
    capped = Provider(name="p", request_max_retries=1000, stream_max_retries=1000, stream_idle_timeout_ms=1500)
    assert (capped.effective_request_max_retries, capped.effective_stream_max_retries) == (100, 100)
    assert capped.stream_idle_timeout == 1.5
    assert Provider(name="p", request_max_retries=0).effective_request_max_retries == 0


# --- from_dict / from_toml ------------------------------------------------------------------------


def test_from_dict_reads_settings_and_ignores_unknown_keys() -> None:
    provider = Provider.from_dict({"name": "p", "max_tokens": 100, "include_usage": False, "cache_control": True,
                                   "max_retry_delay": 5, "future_key": 1})
    assert (provider.max_tokens, provider.include_usage, provider.cache_control, provider.max_retry_delay) == (
        100, False, True, 5)


BAD_DICTS: list[tuple[Any, str]] = [
    ({}, "provider: missing required field 'name'"),
    ([], "provider: expected a table/object, got array"),
    ({"name": 1}, "provider.name: expected a string, got number 1"),
    ({"name": "p", "request_max_retries": "4"},
     "provider.request_max_retries: expected a non-negative integer, got string '4'"),
    ({"name": "p", "stream_idle_timeout_ms": -1},
     "provider.stream_idle_timeout_ms: expected a non-negative integer, got number -1"),
    ({"name": "p", "max_tokens": True}, "provider.max_tokens: expected a non-negative integer, got boolean True"),
    ({"name": "p", "http_headers": {"X": 1}}, "provider.http_headers: expected a table of strings, got object {'X': 1}"),
    ({"name": "p", "include_usage": "no"}, "provider.include_usage: expected true or false, got string 'no'"),
    ({"name": "p", "wire_api": "grpc"}, "wire_api: expected 'chat' or 'responses', got 'grpc'"),
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
    assert Provider.from_toml('name = "p"\nmax_tokens = false\n').max_tokens is None


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
    assert Provider.from_toml(CONFIG, "azure").chat_url() == (
        "https://x.openai.azure.com/openai/chat/completions?api-version=2025-04-01-preview")
    local = Provider.from_toml(CONFIG, "local")
    assert (local.name, local.max_tokens) == ("Local", 512)


def test_from_toml_missing_table_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError) as info:
        Provider.from_toml(CONFIG, "ollama")
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == "no [model_providers.ollama] table in the config (tables found: azure, local)"


def test_from_toml_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    assert Provider.from_toml(path, "local").name == "Local"
    assert Provider.from_toml(str(path), "azure").name == "Azure"


def test_from_toml_errors() -> None:
    with pytest.raises(ConfigError, match=r"^invalid TOML: "):
        Provider.from_toml('name = "p\nx = 1\n')
    with pytest.raises(ConfigError, match=r"^cannot read provider config '/nonexistent/config\.toml'"):
        Provider.from_toml("/nonexistent/config.toml")


# --- built-ins ------------------------------------------------------------------------------------


def test_builtin_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = Provider.builtin("litellm")
    assert (provider.name, provider.base_url, provider.env_key, provider.cache_control, provider.wire_api) == (
        "LiteLLM", "http://localhost:4000/v1", "LLMX_API_KEY", True, "chat")
    monkeypatch.setenv("LLMX_BASE_URL", "http://proxy:4000/v1")
    assert Provider.builtin("litellm").base_url == "http://proxy:4000/v1"
    monkeypatch.setenv("LLMX_BASE_URL", "  ")
    assert Provider.builtin("litellm").base_url == "http://localhost:4000/v1"


def test_builtin_oss(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Provider.builtin("oss").base_url == "http://localhost:11434/v1"
    assert Provider.builtin("oss").name == "gpt-oss"
    assert Provider.builtin("oss").env_key is None
    monkeypatch.setenv("LLMX_OSS_PORT", "1234")
    assert Provider.builtin("oss").base_url == "http://localhost:1234/v1"
    monkeypatch.setenv("LLMX_OSS_PORT", "")
    assert Provider.builtin("oss").base_url == "http://localhost:11434/v1"
    monkeypatch.setenv("LLMX_OSS_BASE_URL", "http://gpu:11434/v1")
    monkeypatch.setenv("LLMX_OSS_PORT", "1234")
    assert Provider.builtin("oss").base_url == "http://gpu:11434/v1"


def test_builtin_oss_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMX_OSS_PORT", "http")
    with pytest.raises(ConfigError, match=r"^LLMX_OSS_PORT must be a port number, got 'http'$"):
        Provider.builtin("oss")


def test_builtin_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = Provider.builtin("openai")
    assert (provider.name, provider.env_key, provider.wire_api) == ("OpenAI", "OPENAI_API_KEY", "chat")
    assert provider.chat_url() == "https://api.openai.com/v1/chat/completions"
    monkeypatch.setenv("OPENAI_BASE_URL", "https://gateway/v1")
    assert Provider.builtin("openai").chat_url() == "https://gateway/v1/chat/completions"


def test_builtin_unknown() -> None:
    with pytest.raises(ConfigError, match=r"^unknown built-in provider 'lmstudio'"):
        Provider.builtin("lmstudio")


# --- URLs: one slash before the path, query URL-encoded in insertion order --------------------------


def test_url_has_one_slash_before_the_path() -> None:
    assert Provider(name="p", base_url="http://x/v1/").chat_url() == "http://x/v1/chat/completions"
    assert Provider(name="p", base_url="http://x/v1").chat_url() == "http://x/v1/chat/completions"
    assert Provider(name="p").chat_url() == "https://api.openai.com/v1/chat/completions"
    assert Provider(name="p", base_url="http://x", wire_api="responses").chat_url() == "http://x/responses"


def test_query_params_are_encoded_in_insertion_order() -> None:
    provider = Provider(name="p", base_url="http://x/v1",
                        query_params={"z": "1", "api-version": "2025-04-01", "q": "a b&c=d/é"})
    assert provider.chat_url() == "http://x/v1/chat/completions?z=1&api-version=2025-04-01&q=a+b%26c%3Dd%2F%C3%A9"
    assert Provider(name="p", base_url="http://x", query_params={}).chat_url() == "http://x/chat/completions"


# --- auth and headers -------------------------------------------------------------------------------


def test_bearer_token_wins_over_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "from-env")
    provider = Provider(name="p", env_key="API_KEY", experimental_bearer_token="literal")
    assert provider.request_headers() == {"Authorization": "Bearer literal"}


def test_env_key_value_is_sent_untrimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", " sk-123 ")
    assert Provider(name="p", env_key="API_KEY").request_headers() == {"Authorization": "Bearer  sk-123 "}


@pytest.mark.parametrize("value", [None, "", "  \t"])
def test_missing_or_blank_env_key_raises_the_seed_text(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("LLMX_API_KEY", value)
    with pytest.raises(EnvVarError) as info:
        Provider.builtin("litellm").request_headers()
    assert str(info.value) == ("Missing environment variable: `LLMX_API_KEY`. Set LLMX_API_KEY to your LiteLLM "
                               "API key. See https://docs.litellm.ai/ for setup.")
    assert info.value.var == "LLMX_API_KEY"


def test_env_key_without_instructions() -> None:
    with pytest.raises(EnvVarError, match=r"^Missing environment variable: `API_KEY`\.$"):
        Provider(name="p", env_key="API_KEY").api_key()


def test_no_env_key_no_authorization() -> None:
    assert Provider(name="p").request_headers() == {}


def test_http_and_env_http_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_ENV_VAR", " v ")
    monkeypatch.setenv("OPENAI_PROJECT", "  ")
    provider = Provider(name="p", http_headers={"X-Example-Header": "example-value"},
                        env_http_headers={"X-Example-Env-Header": "EXAMPLE_ENV_VAR", "OpenAI-Project": "OPENAI_PROJECT",
                                          "OpenAI-Organization": "OPENAI_ORGANIZATION"})
    assert provider.request_headers() == {"X-Example-Header": "example-value", "X-Example-Env-Header": " v "}


def test_repr_never_shows_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "sk-env-secret")
    provider = Provider(name="p", env_key="API_KEY", experimental_bearer_token="sk-literal-secret",
                        http_headers={"X-Api-Key": "header-secret"}, env_http_headers={"X-Org": "API_KEY"})
    text = repr(provider)
    for secret in ("sk-env-secret", "sk-literal-secret", "header-secret"):
        assert secret not in text
    assert "experimental_bearer_token='***'" in text
    assert "X-Api-Key" in text
    assert repr(provider) == str(provider)
