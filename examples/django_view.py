"""A single-file Django project with one streaming view.

    python examples/django_view.py [--base-url URL] [--model M] [--port 8000]
    python examples/django_view.py [--base-url URL] [--model M] runserver [--noreload] [PORT]

Then open http://127.0.0.1:8000/chat?q=Hello (or `curl -N` it): the answer arrives
as Server-Sent Events, an upstream error as one `event: error` frame. Without a
Django command it is served by `wsgiref`.
"""

from __future__ import annotations

import socketserver
import sys
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

import django
from _common import client_from, example_parser
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.urls import path

from llmx_sync.client import Client
from llmx_sync.web import django_sse_response

urlpatterns: list[Any] = []  # filled by main() once the client is known


def chat_view(client: Client, model: str) -> Callable[[HttpRequest], HttpResponseBase]:
    def chat(request: HttpRequest) -> HttpResponseBase:
        # Opened by django_sse_response: an error doing so (a 401, a server that cannot be
        # reached) is a 4xx/502 response with one `event: error` frame, not Django's 500 page.
        return django_sse_response(lambda: client.stream(request.GET.get("q", "Hello!"), model=model))

    return chat


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, so that one streaming answer does not hold up the next."""

    daemon_threads = True


def serve(port: int) -> None:
    from django.core.wsgi import get_wsgi_application

    with make_server("127.0.0.1", port, get_wsgi_application(), server_class=ThreadingWSGIServer) as server:
        print(f"Serving on http://127.0.0.1:{server.server_port}/chat?q=Hello", flush=True)
        server.serve_forever()


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("--port", type=int, default=8000, help="for the wsgiref server (default: %(default)s)")
    args, command = parser.parse_known_args()
    settings.configure(
        DEBUG=True,
        SECRET_KEY="example-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
    )
    django.setup()
    urlpatterns.append(path("chat", chat_view(client_from(args), args.model)))
    if command:
        from django.core.management import execute_from_command_line

        execute_from_command_line([sys.argv[0], *command])
    else:
        serve(args.port)


if __name__ == "__main__":
    main()
