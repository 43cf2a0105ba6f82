"""README.md's snippets without a server: how the blocks and their marks are read
(tests/readme_blocks.py), and that every snippet is at least valid Python and names files
that exist. tests/integration/test_readme.py runs them against real servers."""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import pytest
from readme_blocks import README, readme_blocks

ROOT = README.parent

SAMPLE = """# Title

## Section one

```python
print("one")
```

<!-- readme-test: skip needs a GPU -->
```python
print("two")
```

### Section two

<!-- readme-test: notebook -->
```python
display()
```

```bash
# a comment about llmx-sync
llmx-sync chat "hi"   # the default provider
pip install x && llmx-sync chat "not a CLI line: it starts with pip"
  llmx-sync chat --json "indented"
git diff | llmx-sync chat "Write a commit message"
llmx-sync
llmx-syncx chat
```
"""


def test_blocks_their_sections_and_marks_are_read() -> None:
    blocks = readme_blocks(SAMPLE)
    assert [(b.lang, b.line, b.section, b.mark, b.reason) for b in blocks] == [
        ("python", 5, "Section one", None, ""),
        ("python", 10, "Section one", "skip", "needs a GPU"),
        ("python", 17, "Section two", "notebook", ""),
        ("bash", 21, "Section two", None, ""),
    ]
    assert blocks[0].code == 'print("one")\n'
    assert blocks[3].cli_lines() == ['llmx-sync chat "hi"   # the default provider', 'llmx-sync chat --json "indented"',
                                      'git diff | llmx-sync chat "Write a commit message"', "llmx-sync"]
    assert blocks[0].cli_lines() == []


@pytest.mark.parametrize(("text", "problem"), [
    ("<!-- readme-test: skip -->\n```python\nx\n```\n", "needs its reason"),
    ("<!-- readme-test: later -->\n```python\nx\n```\n", "unknown readme-test mark"),
    ("<!-- readme-test skip oops -->\n```python\nx\n```\n", "not a readme-test mark"),
    ("```python\nx\n", "never closed"),
])
def test_a_malformed_mark_or_fence_is_an_error(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        readme_blocks(text)


BLOCKS = readme_blocks()


def test_the_readme_has_the_blocks_its_test_runs() -> None:
    sections = {block.section for block in BLOCKS if block.lang == "python"}
    assert {"Streaming", "A conversation with tools", "Structured output"} <= sections
    assert any(block.cli_lines() for block in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.name)
def test_every_python_block_is_valid_python(block: object) -> None:
    ast.parse(block.code, filename=f"README.md:{block.line}")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("line", "where"), [(line, b.line) for b in BLOCKS for line in b.cli_lines()])
def test_every_file_a_cli_line_names_exists(line: str, where: int) -> None:
    words = shlex.split(line.rpartition("|")[2], comments=True)
    for option, value in zip(words, words[1:], strict=False):
        if option in ("--history", "--tools", "--config", "--schema") and not (option == "--schema"
                                                                               and ":" in value):
            assert (ROOT / value).is_file(), f"README line {where}: {value} does not exist"
        if option == "--tool":
            path = value.rpartition(":")[0]
            if path.endswith(".py"):
                assert (ROOT / Path(path)).is_file(), f"README line {where}: {path} does not exist"
    if words[:2] == ["llmx-sync", "batch"]:
        assert (ROOT / words[2]).is_file(), f"README line {where}: {words[2]} does not exist"


def test_the_example_tool_is_described_from_its_hints_and_runs() -> None:
    # What `llmx-sync chat --tool examples/weather.py:get_weather` loads and runs.
    from llmx_sync.cli import load_python_tool

    weather = load_python_tool(str(ROOT / "examples" / "weather.py") + ":get_weather")
    assert weather.name == "get_weather" and weather.description == "The weather forecast for a city."
    assert weather.parameters["required"] == ["city"] and set(weather.parameters["properties"]) == {"city", "days"}
    assert json.loads(weather.run('{"city": "Paris"}')) == {"city": "Paris", "days": 1, "sky": "sunny",
                                                          "temperature_c": 21}
