"""The scripted server of the project's tests: `llmx_sync.testing`, under the names the
tests have always used (`LLMServer` is `llmx_sync.testing.ScriptedServer`). Everything
`llmx_sync.testing` exports is here, so that no second list of its names is kept."""

import llmx_sync.testing as _testing
from llmx_sync.testing import *  # noqa: F403 (the whole public module, re-exported)
from llmx_sync.testing import ScriptedServer as LLMServer

__all__ = ["LLMServer", *_testing.__all__]
