"""The Flask chat example in headless Chromium: the answer grows on the page as it streams."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import LLMServer, Reply, text_stream_body
from stream_helpers import paced, serving

from llmx_sync.client import Client

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOKENS = ["Rivers ", "carve ", "canyons ", "slowly, ", "grain ", "by ", "grain."]


@pytest.fixture
def chat_app(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """examples/flask_chat.py's app, pointed at the test server and served on 127.0.0.1."""
    from werkzeug.serving import make_server

    monkeypatch.syspath_prepend(str(EXAMPLES))
    flask_chat = importlib.import_module("flask_chat")
    app = flask_chat.create_app(Client(base_url=llm_server.url), "test-model")
    with serving(make_server("127.0.0.1", 0, app, threaded=True)) as url:
        yield url + "/"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1000,700", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def ask(browser: Any, url: str, question: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url)
    browser.find_element(By.ID, "question").send_keys(question)
    browser.find_element(By.ID, "send").click()


def page_state(browser: Any) -> tuple[str, str]:
    """(status line, text of the last answer) as the page shows them."""
    status, answer = browser.execute_script(
        "const answers = document.querySelectorAll('.assistant');"
        "return [document.getElementById('status').textContent,"
        "        answers.length ? answers[answers.length - 1].textContent : ''];"
    )
    return status, answer


def watch_until(browser: Any, until: Callable[[str, str], bool], timeout: float = 20) -> list[tuple[str, str]]:
    """The page's (status, answer) states, polled every 50 ms until `until(status, answer)`."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(page_state(browser))
        if until(*seen[-1]):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"the page never got there: {seen[-3:]}")


def finished(status: str, answer: str) -> bool:
    return status in ("done", "stopped") or status.startswith("error")


def test_the_answer_grows_on_the_page_as_it_streams(browser: Any, chat_app: str, llm_server: LLMServer,
                                                     tmp_path: Path) -> None:
    llm_server.enqueue(Reply(body=paced(text_stream_body(TOKENS), 0.25)))
    ask(browser, chat_app, "Tell me about rivers.")
    seen = watch_until(browser, finished)

    full_text = "".join(TOKENS)
    growing = [answer for status, answer in seen if status == "streaming" and answer and answer != full_text]
    assert len(set(growing)) >= 2, seen  # partial answers, seen at least twice before the end
    assert growing == sorted(growing, key=len) and all(full_text.startswith(answer) for answer in growing)
    assert seen[-1] == ("done", full_text)
    assert llm_server.requests[0].json()["messages"] == [{"role": "user", "content": "Tell me about rivers."}]

    screenshot = tmp_path / "chat.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 0
    assert screenshot.read_bytes().startswith(b"\x89PNG")


def test_stop_closes_the_request_to_the_model(browser: Any, chat_app: str, llm_server: LLMServer) -> None:
    from selenium.webdriver.common.by import By

    llm_server.enqueue(Reply(body=paced(text_stream_body([f"word{i} " for i in range(200)]), 0.05)))
    ask(browser, chat_app, "Talk for a long time.")
    watch_until(browser, lambda status, answer: status == "streaming" and answer != "")
    browser.find_element(By.ID, "stop").click()
    assert watch_until(browser, finished)[-1][0] == "stopped"
    assert llm_server.wait_for_client_disconnect(timeout=1.0)
    assert llm_server.wait_until_no_open_connections(timeout=1.0)


# --- the answer's Markdown ------------------------------------------------------------------

MARKDOWN_TOKENS = ["# Rivers\n\n", "They **carve** ", "canyons:\n\n", "- slowly\n", "- grain by grain\n\n",
                   "```python\n", "carve(<b>rock</b>)\n", "```\n", "See [the survey](http://127.0.0.1:9/rivers)."]


def answer_html(browser: Any) -> str:
    html: str = browser.execute_script(
        "const answers = document.querySelectorAll('.assistant');"
        "return answers.length ? answers[answers.length - 1].innerHTML : '';")
    return html


def test_the_answers_markdown_is_rendered_as_it_streams(browser: Any, chat_app: str,
                                                        llm_server: LLMServer) -> None:
    llm_server.enqueue(Reply(body=paced(text_stream_body(MARKDOWN_TOKENS), 0.3)))
    ask(browser, chat_app, "Tell me about rivers.")
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, _ = page_state(browser)
        seen.append((status, answer_html(browser)))
        if finished(status, ""):
            break
        time.sleep(0.05)
    streaming = [html for status, html in seen if status == "streaming"]
    # Rendered while it streams: the emphasis before the end, the unclosed code block as code.
    assert any("<strong>carve</strong>" in html and "<ul>" not in html for html in streaming), streaming
    assert any('<pre><code class="language-python">carve(&lt;b&gt;rock&lt;/b&gt;)' in html and "survey" not in html
               for html in streaming), streaming
    assert seen[-1] == ("done", (
        "<h1>Rivers</h1><p>They <strong>carve</strong> canyons:</p><ul><li>slowly</li><li>grain by grain</li></ul>"
        '<pre><code class="language-python">carve(&lt;b&gt;rock&lt;/b&gt;)</code></pre>'
        '<p>See <a href="http://127.0.0.1:9/rivers" rel="noopener noreferrer nofollow" target="_blank">'
        "the survey</a>.</p>"))
    # The conversation keeps the Markdown as the model wrote it.
    llm_server.enqueue(Reply(body=text_stream_body(["ok"])))
    ask_again(browser, "More?")
    watch_until(browser, lambda status, answer: status == "done" and answer == "ok")
    assert llm_server.requests[1].json()["messages"][1] == {"role": "assistant", "content": "".join(MARKDOWN_TOKENS)}


def ask_again(browser: Any, question: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "question").send_keys(question)
    browser.find_element(By.ID, "send").click()


# Ways a model's text could try to run script or load something, in Markdown and in HTML
# (the kinds public Markdown XSS lists collect; the URLs are loopback ones: no test leaves
# the machine).
HOSTILE = [
    "<script>window.pwned = 'script'</script>",
    "<img src=x onerror=\"window.pwned = 'img'\">",
    "<svg onload=\"window.pwned = 'svg'\"></svg>",
    "<iframe src=\"javascript:parent.pwned = 'iframe'\"></iframe>",
    "<a href=\"javascript:window.pwned = 'html-link'\">html link</a>",
    "[md link](javascript:window.pwned='md-link')",
    "[upper](JaVaScRiPt:window.pwned='upper')",
    "[spaced]( javascript:window.pwned='spaced' )",
    "[tab](java\tscript:window.pwned='tab')",
    "[entity](&#x6A;avascript:window.pwned='entity')",
    "[data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQucHduZWQ9MTwvc2NyaXB0Pg==)",
    "[vb](vbscript:msgbox(1))",
    "![image](javascript:window.pwned='image')",
    "![tracker](http://127.0.0.1:9/pixel.png)",
    "<javascript:window.pwned='autolink'>",
    "[title](http://127.0.0.1:9 \"onmouseover=window.pwned='title'\")",
    "`<b>in code</b>` and **<i>in bold</i>**",
    "```html\n<script>window.pwned = 'fence'</script>\n```",
    "| <img src=x onerror=window.pwned='cell'> | b |\n|---|---|\n| [x](javascript:window.pwned='cell-link') | 2 |",
]


def test_html_and_script_urls_in_an_answer_stay_text(browser: Any, chat_app: str, llm_server: LLMServer) -> None:
    text = "\n\n".join(HOSTILE)
    llm_server.enqueue(Reply(body=paced(text_stream_body([text[i:i + 40] for i in range(0, len(text), 40)]), 0.02)))
    ask(browser, chat_app, "Say something nasty.")
    assert watch_until(browser, finished)[-1][0] == "done"
    report = browser.execute_script(
        "const answer = document.querySelectorAll('.assistant')[0];"
        "return {pwned: window.pwned || null,"
        "        tags: [...new Set([...answer.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()))].sort(),"
        "        hrefs: [...answer.querySelectorAll('a')].map((a) => a.href),"
        "        handlers: [...answer.querySelectorAll('*')].flatMap((e) => [...e.attributes])"
        "                    .map((a) => a.name).filter((name) => name.startsWith('on')),"
        "        text: answer.textContent};")
    assert report["pwned"] is None
    assert report["handlers"] == []
    assert set(report["tags"]) <= {"p", "a", "code", "pre", "strong", "br", "table", "thead", "tbody", "tr", "th",
                                   "td"}, report["tags"]
    # Only the two http links are links (the image as a link to it, loading nothing).
    assert report["hrefs"] == ["http://127.0.0.1:9/pixel.png", "http://127.0.0.1:9/"]
    for shown in ("<script>window.pwned = 'script'</script>", "<img src=x onerror=", "[md link](javascript:",
                  "<b>in code</b>", "<i>in bold</i>"):
        assert shown in report["text"], shown


def test_the_markdown_renderer_on_common_shapes(browser: Any, chat_app: str) -> None:
    browser.get(chat_app)
    cases = {
        "Some *it*, __bold__, ~~gone~~, `a  b`, ``x ` y``": (
            "<p>Some <em>it</em>, <strong>bold</strong>, <del>gone</del>, <code>a  b</code>, <code>x ` y</code></p>"),
        "snake_case_name and 2 * 3 * 4": "<p>snake_case_name and 2 * 3 * 4</p>",
        "***both*** and **unclosed": "<p><strong><em>both</em></strong> and **unclosed</p>",
        "\\*not emphasis\\* and a\\_b": "<p>*not emphasis* and a_b</p>",
        "line one\nline two": "<p>line one<br>line two</p>",
        "Options:\n1. first\n2. second\n\n3. third\n   - nested": (
            "<p>Options:</p><ol><li>first</li><li>second</li><li>third<ul><li>nested</li></ul></li></ol>"),
        "3) three\n4) four": '<ol start="3"><li>three</li><li>four</li></ol>',
        "- item\nlazy line": "<ul><li>item<br>lazy line</li></ul>",
        "> quote\n> > inner": "<blockquote><p>quote</p><blockquote><p>inner</p></blockquote></blockquote>",
        "## Heading ##\n***\ntext": "<h2>Heading</h2><hr><p>text</p>",
        "~~~\nno language\n~~~": "<pre><code>no language</code></pre>",
        "| a | b |\n|:-:|---|\n| 1 |": (
            '<table><thead><tr><th style="text-align: center;">a</th><th>b</th></tr></thead>'
            '<tbody><tr><td style="text-align: center;">1</td><td></td></tr></tbody></table>'),
        "a | b\nnot a table": "<p>a | b<br>not a table</p>",
        "<http://127.0.0.1:9/a?b=1> and <mailto:x@example.com>": (
            '<p><a href="http://127.0.0.1:9/a?b=1" rel="noopener noreferrer nofollow" target="_blank">'
            'http://127.0.0.1:9/a?b=1</a> and <a href="mailto:x@example.com" rel="noopener noreferrer nofollow" '
            'target="_blank">mailto:x@example.com</a></p>'),
        "[relative](/admin) [nested [brackets]](http://127.0.0.1:9/(x))": (
            '<p>[relative](/admin) <a href="http://127.0.0.1:9/(x)" rel="noopener noreferrer nofollow" '
            'target="_blank">nested [brackets]</a></p>'),
    }
    rendered = browser.execute_script(
        "const out = {};"
        "for (const text of arguments[0]) {"
        "  const box = document.createElement('div'); box.append(...renderMarkdown(text)); out[text] = box.innerHTML;"
        "}"
        "return out;", list(cases))
    assert {text: rendered[text] for text in cases} == cases
