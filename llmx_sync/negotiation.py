"""What a client learns about the servers it talks to: the structured-output mode and the
form of a forced tool choice each one accepts.

Servers differ where the protocol leaves room (see docs/compatibility.md): llama-cpp-python
refuses ``response_format`` ``json_schema`` (a 500 with a validation error) while
llama-server takes it; llama-server ignores the object that forces a function, and
llama-cpp-python ignores ``"required"``. A provider can say which it needs
(`settings.Quirks`); when it does not, the client finds out from the server:

- a request with structured output goes in the first mode of `STRUCTURED_OUTPUT_MODES`,
  and a refusal of that mode (`refuses_mode`) sends it once more in the next one;
- a forced function goes as the object, unless the server identifies itself as
  llama-server (`is_llama_server`, from the headers of any of its answers; through a
  LiteLLM proxy too) or refuses the object (`refuses_tool_choice`), in which case it goes
  as ``"required"`` with that function alone in ``tools``.

What worked is kept in a `ServerMemory`, per base URL and model, for the client's life.
The rules are pure functions of an error or of headers, each tested on its own.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from .errors import BadRequestError, UnexpectedStatusError
from .settings import Quirks
from .structured import STRUCTURED_OUTPUT_MODES, StructuredOutputMode

__all__ = ["Learned", "ServerMemory", "is_llama_server", "mode_candidates", "refuses_mode", "refuses_tool_choice"]

ForcedToolChoice = Literal["object", "required"]

# The request keys that carry a structured-output mode, as servers name them in a refusal.
_MODE_KEYS: Final = re.compile(r"response_format|json_schema|json_object|tool_choice|\btools\b")
_TOOL_CHOICE_KEY: Final = re.compile(r"tool_choice")


@dataclass(frozen=True)
class Learned:
    """What one server (a base URL and model) was found to accept; None: not known yet."""

    structured_output: StructuredOutputMode | None = None
    forced_tool_choice: ForcedToolChoice | None = None


class ServerMemory:
    """`Learned` facts per (base URL, model), shared by the threads of one client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: dict[tuple[str, str | None], Learned] = {}

    def get(self, base_url: str, model: str | None) -> Learned:
        with self._lock:
            return self._learned.get((base_url, model), Learned())

    def learn(self, base_url: str, model: str | None, *, structured_output: StructuredOutputMode | None = None,
              forced_tool_choice: ForcedToolChoice | None = None) -> None:
        """Remember the facts given (not None) for this server."""
        with self._lock:
            key = (base_url, model)
            known = self._learned.get(key, Learned())
            self._learned[key] = Learned(structured_output or known.structured_output,
                                         forced_tool_choice or known.forced_tool_choice)


def mode_candidates(quirks: Quirks, learned: Learned) -> tuple[StructuredOutputMode, ...]:
    """The structured-output modes to try, in order: the provider's when it sets one,
    else the one that worked before, else every mode from the most exact
    (``json_schema``) to the most widely accepted (``tools``)."""
    if quirks.structured_output is not None:
        return (quirks.structured_output,)
    if learned.structured_output is not None:
        return (learned.structured_output,)
    return STRUCTURED_OUTPUT_MODES


def _refuses_request(error: UnexpectedStatusError) -> bool:
    # A 400 or 422, or a 5xx whose body refuses the request as malformed (the transport
    # made that a BadRequestError): the server will not take the request as it is.
    return isinstance(error, BadRequestError) or error.status in (400, 422)


def refuses_mode(error: UnexpectedStatusError) -> bool:
    """Whether `error` refuses a request's structured-output mode, so that the next mode
    may be tried: a 400 or 422, or a 5xx whose body is a validation error about
    ``response_format``, ``tool_choice`` or ``tools`` (llama-cpp-python answers
    ``json_schema`` with a 500: "Input should be 'text' or 'json_object'")."""
    if not _refuses_request(error):
        return False
    if error.status in (400, 422):
        return True
    return _MODE_KEYS.search(error.message or error.body) is not None


def refuses_tool_choice(error: UnexpectedStatusError) -> bool:
    """Whether `error` refuses the request for its `tool_choice` (a server that takes only
    a string there and says so, rather than ignoring the object as llama-server does)."""
    return _refuses_request(error) and _TOOL_CHOICE_KEY.search(error.message or error.body) is not None


def is_llama_server(headers: Mapping[str, str]) -> bool:
    """Whether an answer comes from llama.cpp's llama-server, whose `tool_choice` takes only
    a string: it sends ``Server: llama.cpp`` with every response, and a LiteLLM proxy in
    front of it passes that on as ``llm_provider-server`` (it prefixes the upstream's
    headers with ``llm_provider-``). `headers` is a case-insensitive mapping."""
    return any((headers.get(name) or "").strip().lower().startswith("llama.cpp")
               for name in ("server", "llm_provider-server"))
