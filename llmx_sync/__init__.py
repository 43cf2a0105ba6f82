"""llmx_sync: stream answers from OpenAI-compatible Chat Completions servers, no asyncio."""
