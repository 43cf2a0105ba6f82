"""A chat page whose answers appear as the model writes them (Flask + Server-Sent Events).

    python examples/flask_chat.py [--base-url URL] [--model M] [--port 5000]

The page POSTs the conversation with `fetch` and reads the SSE body incrementally.
Stop (or closing the tab) drops the connection; the server then closes the
request to the model at once, so no more tokens are generated.

The answer's Markdown is rendered as it streams, safely: the page builds DOM nodes and
never parses HTML (what the model writes as HTML is shown as text), and it links only
absolute http(s) and mailto URLs.
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


PAGE = r"""<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>llmx_sync chat</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  .user { font-weight: 600; margin-top: 1rem; white-space: pre-wrap; }
  .assistant > :first-child { margin-top: 0.25rem; }
  .assistant p, .assistant ul, .assistant ol, .assistant pre, .assistant table, .assistant blockquote { margin: 0.5rem 0; }
  .assistant pre { background: #f4f4f4; padding: 0.5rem 0.75rem; overflow-x: auto; }
  .assistant code { font: 0.9em ui-monospace, monospace; background: #f4f4f4; padding: 0 0.2em; }
  .assistant pre code { padding: 0; }
  .assistant blockquote { border-left: 3px solid #ccc; padding-left: 0.75rem; color: #555; }
  .assistant table { border-collapse: collapse; }
  .assistant th, .assistant td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; }
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

// --- the answer's Markdown, rendered safely -----------------------------------------
// The page builds DOM nodes (createElement, text nodes) and never parses HTML: HTML the
// model writes is shown as text. Links are made for absolute http(s) and mailto URLs
// only (an image becomes a link, so the page loads nothing the model names). The
// answer is rendered again whole while it streams, so an unclosed code block or list
// shows as far as it goes.

const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const PUNCTUATION = /[!-\/:-@\[-`{-~]/;
const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?/;
const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)/;
const TABLE_DELIMITER = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

function element(tag, children = [], properties = {}) {
  const node = document.createElement(tag);
  Object.assign(node, properties);
  node.append(...children);  // strings become text nodes
  return node;
}

function safeUrl(text) {
  try {
    const url = new URL(text);  // relative URLs throw: not linked
    return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(label, target) {
  return element("a", label, { href: target, rel: "noopener noreferrer nofollow", target: "_blank" });
}

// The end of the bracketed text starting at `open` (`[`/`]` or `(`/`)`), or -1.
function matching(text, open, left, right) {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === left) depth++;
    else if (text[i] === right && --depth === 0) return i;
  }
  return -1;
}

// Emphasis (`*`, `_`, `**`, `__`, `~~`) opening at `i`: [tag, inner text, end] or null.
function emphasis(text, i) {
  const char = text[i];
  const double = text[i + 1] === char;
  if (char === "~" && !double) return null;
  const size = double ? 2 : 1;
  const delimiter = char.repeat(size);
  const after = text[i + size] || "";
  if (!after.trim() || (char === "_" && /\w/.test(text[i - 1] || ""))) return null;
  for (let end = text.indexOf(delimiter, i + size + 1); end > 0; end = text.indexOf(delimiter, end + 1)) {
    while (text[end + size] === char) end++;  // `***a***`: the closing run's last delimiter
    if (!text[end - 1].trim() || text[end - 1] === "\\") continue;
    if (char === "_" && /\w/.test(text[end + size] || "")) continue;
    const tag = char === "~" ? "del" : double ? "strong" : "em";
    return [tag, text.slice(i + size, end), end + size];
  }
  return null;
}

function inline(text) {
  const nodes = [];
  let plain = "";
  const flush = () => { if (plain) nodes.push(plain); plain = ""; };
  for (let i = 0; i < text.length;) {
    const char = text[i];
    if (char === "\\" && PUNCTUATION.test(text[i + 1] || "")) {
      plain += text[i + 1];
      i += 2;
    } else if (char === "\n") {
      flush();
      nodes.push(element("br"));
      i++;
    } else if (char === "`") {
      const run = /^`+/.exec(text.slice(i))[0];
      const closing = new RegExp("(?<!`)" + run + "(?!`)", "g");
      closing.lastIndex = i + run.length;
      const end = closing.exec(text);
      if (!end) { plain += run; i += run.length; continue; }
      let code = text.slice(i + run.length, end.index).replace(/\n/g, " ");
      if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
      flush();
      nodes.push(element("code", [code]));
      i = end.index + run.length;
    } else if ("*_~".includes(char) && emphasis(text, i)) {
      const [tag, inner, end] = emphasis(text, i);
      flush();
      nodes.push(element(tag, inline(inner)));
      i = end;
    } else if (char === "[" || (char === "!" && text[i + 1] === "[")) {
      const image = char === "!";
      const open = image ? i + 1 : i;
      const close = matching(text, open, "[", "]");
      const paren = close > 0 && text[close + 1] === "(" ? matching(text, close + 1, "(", ")") : -1;
      if (paren < 0) { plain += text.slice(i, open + 1); i = open + 1; continue; }
      const label = text.slice(open + 1, close);
      const target = safeUrl(text.slice(close + 2, paren).trim().split(/\s+/)[0].replace(/^<(.*)>$/, "$1"));
      flush();
      if (target === null) nodes.push(text.slice(i, paren + 1));  // not a URL we link: shown as written
      else nodes.push(link(image ? [label || target] : inline(label), target));
      i = paren + 1;
    } else if (char === "<" && /^<[a-z][a-z0-9+.-]*:[^\s<>]*>/i.test(text.slice(i))) {
      const end = text.indexOf(">", i);
      const target = safeUrl(text.slice(i + 1, end));
      flush();
      nodes.push(target === null ? text.slice(i, end + 1) : link([text.slice(i + 1, end)], target));
      i = end + 1;
    } else {
      plain += char;
      i++;
    }
  }
  flush();
  return nodes;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

function tableCells(line) {
  return line.trim().replace(/^\|/, "").replace(/(?<!\\)\|$/, "").split(/(?<!\\)\|/).map((cell) => cell.trim());
}

const indentation = (line) => /^ */.exec(line)[0].length;

// The lines of the list item starting at `start` (its content `indent` spaces in),
// dedented, and the index of the line after it.
function listItem(lines, start, indent) {
  const item = [lines[start].slice(indent)];
  let end = start + 1;
  for (; end < lines.length; end++) {
    const line = lines[end];
    if (!line.trim()) {
      const next = lines.slice(end + 1).find((later) => later.trim());
      if (next === undefined || indentation(next) < indent) break;
      item.push("");
    } else if (indentation(line) >= indent) {
      item.push(line.slice(indent));
    } else if (!startsBlock(line) && item[item.length - 1].trim()) {
      item.push(line.trim());  // a paragraph's lazy continuation
    } else {
      break;
    }
  }
  return [item, end];
}

// The list item of the same list at or after `i` (blank lines between items skipped).
function nextItem(lines, i, marker, ordered) {
  while (i < lines.length && !lines[i].trim()) i++;
  const match = LIST_ITEM.exec(lines[i] || "");
  return match && match[2].slice(-1) === marker && /\d/.test(match[2]) === ordered ? [i, match] : null;
}

function blocks(lines) {
  const nodes = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (!line.trim()) {
      i++;
    } else if ((match = FENCE.exec(line))) {
      const fence = match[1];
      const body = [];
      for (i++; i < lines.length && !new RegExp("^ {0,3}" + fence[0] + "{" + fence.length + ",}[ \\t]*$").test(lines[i]); i++) {
        body.push(lines[i]);
      }
      i++;  // the closing fence (or the end, while it streams)
      const code = element("code", [body.join("\n")]);
      if (match[2]) code.className = "language-" + match[2].replace(/[^\w-]/g, "");
      nodes.push(element("pre", [code]));
    } else if ((match = HEADING.exec(line))) {
      nodes.push(element("h" + match[1].length, inline(match[2] || "")));
      i++;
    } else if (RULE.test(line)) {
      nodes.push(element("hr"));
      i++;
    } else if (QUOTE.test(line)) {
      const quoted = [];
      for (; i < lines.length && QUOTE.test(lines[i]); i++) quoted.push(lines[i].replace(QUOTE, ""));
      nodes.push(element("blockquote", blocks(quoted)));
    } else if ((match = LIST_ITEM.exec(line))) {
      const ordered = /\d/.test(match[2]);
      const marker = match[2].slice(-1);
      const list = element(ordered ? "ol" : "ul");
      if (ordered && parseInt(match[2], 10) !== 1) list.start = parseInt(match[2], 10);
      for (let found; (found = nextItem(lines, i, marker, ordered));) {
        [i, match] = found;
        const indent = match[3] ? match[0].length : match[0].length + 1;  // (an empty item: "-")
        const [itemLines, end] = listItem(lines, i, indent);
        const content = blocks(itemLines);
        const tight = !itemLines.slice(0, -1).some((l) => !l.trim());
        list.append(element("li", tight && content[0]?.tagName === "P"
          ? [...content[0].childNodes, ...content.slice(1)] : content));
        i = end;
      }
      nodes.push(list);
    } else if (line.includes("|") && TABLE_DELIMITER.test(lines[i + 1] || "")
               && tableCells(line).length === tableCells(lines[i + 1]).length) {
      const align = tableCells(lines[i + 1]).map((cell) =>
        cell.endsWith(":") ? (cell.startsWith(":") ? "center" : "right") : cell.startsWith(":") ? "left" : "");
      const row = (cells, tag) => element("tr", align.map((side, column) =>
        element(tag, inline(cells[column] || ""), side ? { style: "text-align: " + side } : {})));
      const head = element("thead", [row(tableCells(line), "th")]);
      const body = element("tbody");
      for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim(); i++) {
        body.append(row(tableCells(lines[i]), "td"));
      }
      nodes.push(element("table", [head, body]));
    } else {
      const paragraph = [line.trim()];
      for (i++; i < lines.length && lines[i].trim() && !startsBlock(lines[i]); i++) paragraph.push(lines[i].trim());
      nodes.push(element("p", inline(paragraph.join("\n"))));
    }
  }
  return nodes;
}

function renderMarkdown(text) {
  return blocks(text.replace(/\r\n?/g, "\n").replace(/\t/g, "    ").split("\n"));
}

// At most one rendering per frame while the answer streams.
function renderer(bubble) {
  let text = "", frame = null;
  const render = () => { frame = null; bubble.replaceChildren(...renderMarkdown(text)); };
  return {
    add(delta) { text += delta; frame ??= requestAnimationFrame(render); },
    finish() { if (frame !== null) cancelAnimationFrame(frame); render(); return text; },
  };
}

function addBubble(role, text) {
  const bubble = document.createElement("div");
  bubble.className = role;
  bubble.textContent = text;
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
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message", data = "";
      for (const line of frame.split("\n")) {
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
  const answer = renderer(addBubble("assistant", ""));
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
      if (type === "output_text.delta") answer.add(data.delta);
      else if (type === "error") throw new Error(data.message);
    });
    status.textContent = "done";
  } catch (error) {
    status.textContent = controller.signal.aborted ? "stopped" : "error: " + error.message;
  } finally {
    history.push({ role: "assistant", text: answer.finish() });
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
