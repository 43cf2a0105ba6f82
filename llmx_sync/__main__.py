"""``python -m llmx_sync chat "…"``: see `llmx_sync.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m llmx_sync"))
