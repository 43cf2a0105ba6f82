"""``llmx-sync batch``: a JSONL file of prompts in, an output file of answers, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_server import LLMServer, RecordedRequest, Reply, error_reply, text_stream_body

from llmx_sync import cli


def answer(request: RecordedRequest) -> Reply:
    body = request.json()
    text = body["messages"][-1]["content"]
    if text == "fail":
        return error_reply(400, "no")
    settings = {key: body[key] for key in ("model", "temperature") if key in body}
    return Reply(body=text_stream_body([f"{text} {json.dumps(settings, sort_keys=True)}"]))


@pytest.fixture
def server():
    with LLMServer(handler=answer) as server:
        yield server


def write_lines(path: Path, *values: object) -> Path:
    path.write_text("".join(json.dumps(value) + "\n" for value in values) + "\n")
    return path


def batch(server: LLMServer, *args: str) -> int:
    return cli.main(["batch", "--base-url", server.url, "--api-key", "sk-test", *args])


def test_a_file_of_prompts_in_every_answer_out(server: LLMServer, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    given = write_lines(tmp_path / "in.jsonl", "plain",
                        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "items"}]}],
                        {"prompt": "own settings", "model": "m2", "temperature": 0.5},
                        {"messages": [{"type": "message", "role": "user",
                                       "content": [{"type": "input_text", "text": "object"}]}]})
    out = tmp_path / "out.jsonl"
    assert batch(server, str(given), "-o", str(out), "--model", "m1", "--concurrency", "2") == 0
    lines = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda line: line["index"])
    assert [line["text"] for line in lines] == ['plain {"model": "m1"}', 'items {"model": "m1"}',
                                                'own settings {"model": "m2", "temperature": 0.5}',
                                                'object {"model": "m1"}']
    assert capsys.readouterr().err.startswith("batch: 4 items (0 failed)")
    assert batch(server, str(given), "-o", str(out)) == 0  # resumed: nothing sent again
    assert len(server.requests) == 4
    assert "4 resumed" in capsys.readouterr().err


def test_failed_items_exit_1_and_are_in_the_output(server: LLMServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert batch(server, str(write_lines(tmp_path / "in.jsonl", "ok", "fail")), "-o", str(out), "-q") == 1
    assert sorted("error" in json.loads(line) for line in out.read_text().splitlines()) == [False, True]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "line 2: not valid JSON"),
    ("42", "line 2: line: expected a string, an array of messages or an object, got int"),
    ('{"model": "m"}', 'line 2: line: expected an object with "prompt"'),
    ('{"prompt": "x", "temperature": "hot"}', "prompt 1: temperature"),
])
def test_a_malformed_line_is_a_usage_error_before_anything_is_sent(server: LLMServer, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    line: str, message: str) -> None:
    given = tmp_path / "in.jsonl"
    given.write_text(f'"fine"\n{line}\n')
    assert batch(server, str(given), "-o", str(tmp_path / "out.jsonl")) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert server.requests == []


def test_usage_errors(server: LLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    given = write_lines(tmp_path / "in.jsonl", "x")
    assert cli.main(["batch", str(given)]) == cli.EXIT_USAGE  # no -o
    assert batch(server, str(given), "-o", str(tmp_path / "o"), "--concurrency", "lots") == cli.EXIT_USAGE
    assert "auto" in capsys.readouterr().err
    assert batch(server, str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")) == cli.EXIT_USAGE


def test_schema_file_asks_for_structured_output(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    with LLMServer(default=Reply(body=text_stream_body(['{"n": ', "4}"]))) as server:
        code = batch(server, str(write_lines(tmp_path / "in.jsonl", "2+2")), "-o", str(tmp_path / "out.jsonl"),
                     "--schema", str(tmp_path / "schema.json"))
        assert code == 0
        assert server.requests[0].json()["response_format"]["json_schema"]["schema"]["required"] == ["n"]
    assert json.loads((tmp_path / "out.jsonl").read_text())["parsed"] == {"n": 4}
