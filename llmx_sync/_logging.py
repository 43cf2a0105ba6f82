"""``LLMX_LOG=debug`` or ``info``: send the SDK's log to stderr, as ``OPENAI_LOG``,
``ANTHROPIC_LOG`` and ``LITELLM_LOG`` do for theirs.

Read once, when the package is imported. INFO shows each retry and why; DEBUG also
each request (origin, header names with only the SDK's own values, body size) and
what was not sent and why. Secrets never reach a record: header values, keys, query
values and URL passwords are left out where the records are made.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Final

__all__ = ["LOG_ENV", "configure_logging"]

LOG_ENV: Final = "LLMX_LOG"
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}
_FORMAT: Final = "[llmx_sync %(levelname)s %(asctime)s %(threadName)s] %(message)s"


def configure_logging(value: str | None = None) -> logging.Handler | None:
    """Attach a stderr handler to the ``llmx_sync`` logger at the level `value` names
    (default: ``$LLMX_LOG``); None when logging stays as the application set it."""
    value = os.environ.get(LOG_ENV, "") if value is None else value
    if not value.strip():
        return None
    level = _LEVELS.get(value.strip().lower())
    if level is None:
        warnings.warn(f"{LOG_ENV}={value!r} is not one of {', '.join(_LEVELS)}: ignored", stacklevel=2)
        return None
    logger = logging.getLogger("llmx_sync")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
