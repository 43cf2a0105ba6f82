"""A scripted OpenAI-compatible server for your tests, and record/replay of real answers.

    import llmx_sync as llmx
    from llmx_sync.testing import ScriptedServer, answer, call

    def test_weather_bot():
        with ScriptedServer(answer(tool_calls=[call("get_weather", {"city": "Paris"})]),
                            answer("Sunny in Paris.", usage=(12, 4))) as server:
            client = llmx.Client(base_url=server.base_url)
            result = client.run("Weather in Paris?", model="m", tools=[get_weather]).collect()
        assert result.text == "Sunny in Paris."
        assert server.requests[1].json()["messages"][-1]["role"] == "tool"

`ScriptedServer` is a real HTTP server on 127.0.0.1 (a free port), so everything between
your code and the network runs as in production: any client works (this SDK, the
``openai`` SDK, ``requests``), and so do timeouts, retries and cut connections. Each
chat completion request gets the next reply; `requests` records what was received.

Replies: `answer` (text, reasoning, tool calls made with `call`, usage, finish reason,
delays, and faults: a truncated body, a dropped or reset connection, a stall),
`json_answer` (structured output), `error_reply` (a status, ``Retry-After``),
`stream_error` (an error event in the stream), `closed_without_response`; or a `Reply`
of your own built from `sse_event`, `chat_chunk`, `tool_call_delta`, `Pause`, `Stall`
and `Disconnect`.

Record and replay: ``with Recorder("http://127.0.0.1:8080/v1", "weather.json") as
recorder:`` proxies to a real server and writes its answers (with their timing) to the
file; ``ScriptedServer(*Recording.load("weather.json").replies(realtime=True))`` plays
them back offline, at the recorded pace or (by default) at full speed.

With pytest, the ``scripted_server`` fixture is a started `ScriptedServer`, stopped after
the test (which fails if the server's side raised). The plugin that provides it is
registered when llmx_sync is installed and imports nothing until the fixture is used.
"""

from ._recording import Exchange, Recorder, Recording
from ._replies import (
    ToolCall,
    answer,
    call,
    chat_chunk,
    closed_without_response,
    error_reply,
    json_answer,
    sse_comment,
    sse_done,
    sse_event,
    stream_error,
    text_stream_body,
    tool_call_delta,
)
from ._server import (
    CaseInsensitiveDict,
    Disconnect,
    Pause,
    Piece,
    RecordedRequest,
    Reply,
    ScriptedServer,
    Stall,
    json_reply,
    text_reply,
)

__all__ = [
    "CaseInsensitiveDict", "Disconnect", "Exchange", "Pause", "Piece", "RecordedRequest", "Recorder", "Recording",
    "Reply", "ScriptedServer", "Stall", "ToolCall", "answer", "call", "chat_chunk", "closed_without_response",
    "error_reply", "json_answer", "json_reply", "sse_comment", "sse_done", "sse_event", "stream_error",
    "text_reply", "text_stream_body", "tool_call_delta",
]
