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
