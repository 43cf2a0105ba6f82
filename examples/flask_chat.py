"""A chat page whose answers appear as the model writes them (Flask + Server-Sent Events).

    python examples/flask_chat.py [--base-url URL] [--model M] [--port 5000]

The page POSTs the conversation with `fetch` and reads the SSE body incrementally.
Stop (or closing the tab) drops the connection; the server then closes the
request to the model at once, so no more tokens are generated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _common import client_from, example_parser
from flask import Flask, request

from llmx_sync.client import Client
from llmx_sync.errors import InvalidInputError
from llmx_sync.models import Message
from llmx_sync.web import flask_sse_response

MESSAGE_FOR_ROLE: dict[str, Callable[[str], Message]] = {"user": Message.user, "assistant": Message.assistant}


def history_from(data: Any) -> list[Message]:
    """The page's conversation (``{"messages": [{"role", "text"}, ...]}``) as items; only
    user and assistant turns are accepted. Anything else is an `InvalidInputError`,
    which `flask_sse_response` answers with a 400."""
    try:
        return [MESSAGE_FOR_ROLE[message["role"]](str(message["text"])) for message in data["messages"]]
    except (KeyError, TypeError) as error:
        raise InvalidInputError("messages", f"malformed conversation: {error!r}") from None


def create_app(client: Client, model: str) -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def page() -> str:
        return PAGE

    @app.post("/chat")
    def chat() -> Any:
        # Given a callable, flask_sse_response opens the stream itself: an error doing so
        # (a malformed conversation, a 401, a server that cannot be reached) is a 4xx/502
        # response whose body is one `event: error` frame, as an error mid-answer is.
        return flask_sse_response(lambda: client.stream(history_from(request.get_json(force=True)), model=model))

    return app


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>llmx_sync chat</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  .user { font-weight: 600; margin-top: 1rem; }
  .assistant { white-space: pre-wrap; }
  #status { color: #777; font-size: 0.9em; }
  form { display: flex; gap: 0.5rem; margin-top: 1rem; }
  #question { flex: 1; }
</style>
<div id="log"></div>
<form id="ask">
  <input id="question" autocomplete="off" placeholder="Ask something" autofocus>
  <button id="send">Send</button>
  <button id="stop" type="button" disabled>Stop</button>
</form>
<div id="status">ready</div>
<script>
const history = [];
let controller = null;

function addBubble(role, text) {
  const bubble = document.createElement("div");
  bubble.className = role;
  bubble.textContent = text;  // never innerHTML: the text comes from a model
  document.getElementById("log").append(bubble);
  return bubble;
}

// Server-Sent Events from a fetch body: frames end with a blank line, `event:` names
// the type, `data:` holds JSON or [DONE]; comments (": keep-alive") are skipped.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the answer was cut off");
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message", data = "";
      for (const line of frame.split("\\n")) {
        if (line.startsWith("event: ")) type = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data === "[DONE]") return;
      if (data) onEvent(type, JSON.parse(data));
    }
  }
}

async function ask(question) {
  const status = document.getElementById("status");
  const stop = document.getElementById("stop");
  history.push({ role: "user", text: question });
  addBubble("user", question);
  const answer = addBubble("assistant", "");
  controller = new AbortController();
  stop.disabled = false;
  status.textContent = "streaming";
  try {
    const response = await fetch("/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ messages: history }),
      signal: controller.signal,
    });
    // An error arrives as an `event: error` frame, whether the answer could not start
    // (a 4xx/502 response) or broke off midway.
    await readEvents(response.body, (type, data) => {
      if (type === "output_text.delta") answer.textContent += data.delta;
      else if (type === "error") throw new Error(data.message);
    });
    status.textContent = "done";
  } catch (error) {
    status.textContent = controller.signal.aborted ? "stopped" : "error: " + error.message;
  } finally {
    history.push({ role: "assistant", text: answer.textContent });
    stop.disabled = true;
  }
}

document.getElementById("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("question");
  if (input.value.trim()) ask(input.value.trim());
  input.value = "";
});
document.getElementById("stop").addEventListener("click", () => controller.abort());
</script>
</html>
"""


def main() -> None:
    parser = example_parser(__doc__)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    app = create_app(client_from(args), args.model)
    app.run(host="127.0.0.1", port=args.port, threaded=True)  # one thread per streaming answer


if __name__ == "__main__":
    main()
