"""The openai 3.x SDK straight at a Portkey gateway: a sync call, async calls, and a streamed call.

    opentelemetry-instrument python examples/openai_direct.py

openai 3.x sends through httpx2; the bridge adds the trace ids to each call and keeps the span of
the streamed call open until its last token. Settings as in ``langchain_agent.py``.
"""

from __future__ import annotations

import asyncio
import os

import openai
from opentelemetry import trace
from portkey_ai import createHeaders

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o")
tracer = trace.get_tracer("examples.openai_direct")


def client_options() -> dict[str, object]:
    options = {
        "api_key": os.environ.get("PORTKEY_API_KEY"),
        "provider": os.environ.get("PORTKEY_PROVIDER", "openai"),
        "virtual_key": os.environ.get("PORTKEY_VIRTUAL_KEY"),
        "custom_host": os.environ.get("PORTKEY_CUSTOM_HOST"),
    }
    return {
        "base_url": os.environ.get("PORTKEY_GATEWAY_URL", "http://localhost:8787/v1"),
        "api_key": os.environ.get("OPENAI_API_KEY", "sk-local"),
        "default_headers": createHeaders(**{key: value for key, value in options.items() if value}),
    }


def ask(client: openai.OpenAI, question: str) -> str:
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
    return completion.choices[0].message.content or ""


async def ask_many(questions: list[str]) -> list[str]:
    async with openai.AsyncOpenAI(**client_options()) as client:  # type: ignore[arg-type]
        completions = await asyncio.gather(
            *(
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}])
                for q in questions
            )
        )
    return [c.choices[0].message.content or "" for c in completions]


def stream(client: openai.OpenAI, question: str) -> str:
    chunks = client.chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": question}]
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def main() -> None:
    client = openai.OpenAI(**client_options())  # type: ignore[arg-type]
    with tracer.start_as_current_span("openai direct"):
        print("sync:", ask(client, "Say hello"))
        for answer in asyncio.run(ask_many(["first async question", "second async question"])):
            print("async:", answer)
        print("stream:", stream(client, "Stream a short answer"))


if __name__ == "__main__":
    main()
