"""One call with each LLM client library, sync/async and streamed where the library has them.

Each runner takes the gateway's OpenAI-style base URL (``.../v1``), the routing headers, and
``during``, which a streamed call invokes after its first chunk, before reading the rest; it returns
(the answer's text, what ``during()`` returned or None for a call that does not stream).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM: no fetch from the internet

Runner = Callable[[str, dict[str, str], Callable[[], Any]], tuple[str, Any]]
MESSAGES = [{"role": "user", "content": "hi"}]


def _openai(
    base_url: str, headers: dict[str, str], during: Callable[[], Any], stream: bool = False
) -> tuple[str, Any]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-test", default_headers=headers, max_retries=0)
    if not stream:
        answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        return answer.choices[0].message.content or "", None
    chunks = iter(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    text = [next(chunks).choices[0].delta.content or ""]
    seen = during()
    text += [c.choices[0].delta.content or "" for c in chunks if c.choices]
    return "".join(text), seen


def _openai_async(
    base_url: str, headers: dict[str, str], during: Callable[[], Any], stream: bool = False
) -> tuple[str, Any]:
    import openai

    async def run() -> tuple[str, Any]:
        async with openai.AsyncOpenAI(
            base_url=base_url, api_key="sk-test", default_headers=headers
        ) as client:
            if not stream:
                answer = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                return answer.choices[0].message.content or "", None
            created = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            chunks = created.__aiter__()
            text = [(await chunks.__anext__()).choices[0].delta.content or ""]
            seen = during()
            async for chunk in chunks:
                text.append((chunk.choices[0].delta.content or "") if chunk.choices else "")
            return "".join(text), seen

    return asyncio.run(run())


def _portkey(
    base_url: str, headers: dict[str, str], during: Callable[[], Any], stream: bool = False
) -> tuple[str, Any]:
    from portkey_ai import Portkey

    client = Portkey(
        base_url=base_url,
        provider=headers.get("x-portkey-provider"),
        custom_host=headers.get("x-portkey-custom-host"),
        Authorization="Bearer sk-test",
    )
    if not stream:
        return client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[
            0
        ].message.content or "", None
    chunks = iter(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    text = [next(chunks).choices[0].delta.content or ""]
    seen = during()
    text += [c.choices[0].delta.content or "" for c in chunks if c.choices]
    return "".join(text), seen


def _anthropic(base_url: str, headers: dict[str, str], during: Callable[[], Any]) -> tuple[str, Any]:
    import anthropic

    client = anthropic.Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key="sk-test", default_headers=headers
    )
    answer = client.messages.create(model="claude-test", max_tokens=50, messages=MESSAGES)
    return "".join(block.text for block in answer.content if block.type == "text"), None


def _langchain_anthropic(
    base_url: str, headers: dict[str, str], during: Callable[[], Any]
) -> tuple[str, Any]:
    from langchain_anthropic import ChatAnthropic

    model = ChatAnthropic(
        model="claude-test", base_url=base_url.removesuffix("/v1"), api_key="sk-test", default_headers=headers
    )
    return str(model.invoke("hi").content), None


def _litellm(
    base_url: str, headers: dict[str, str], during: Callable[[], Any], stream: bool = False
) -> tuple[str, Any]:
    import litellm

    options = dict(
        model="openai/gpt-4o", api_base=base_url, api_key="sk-test", extra_headers=headers, messages=MESSAGES
    )
    if not stream:
        return litellm.completion(**options).choices[0].message.content or "", None
    chunks = iter(litellm.completion(stream=True, **options))
    text = [next(chunks).choices[0].delta.content or ""]
    seen = during()
    text += [c.choices[0].delta.content or "" for c in chunks]
    return "".join(text), seen


def _litellm_async(
    base_url: str, headers: dict[str, str], during: Callable[[], Any], stream: bool = False
) -> tuple[str, Any]:
    import litellm

    options = dict(
        model="openai/gpt-4o", api_base=base_url, api_key="sk-test", extra_headers=headers, messages=MESSAGES
    )

    async def run() -> tuple[str, Any]:
        if not stream:
            answer = await litellm.acompletion(**options)
            return answer.choices[0].message.content or "", None
        chunks = (await litellm.acompletion(stream=True, **options)).__aiter__()
        text = [(await chunks.__anext__()).choices[0].delta.content or ""]
        seen = during()
        async for chunk in chunks:
            text.append(chunk.choices[0].delta.content or "")
        return "".join(text), seen

    return asyncio.run(run())


# name → (runner, the OTel instrumentation that sees its requests, streamed runner or None)
LLM_CLIENTS: dict[str, tuple[Runner, str, Runner | None]] = {
    "openai (sync)": (_openai, "httpx2", lambda u, h, d: _openai(u, h, d, stream=True)),
    "openai (async)": (_openai_async, "httpx2", lambda u, h, d: _openai_async(u, h, d, stream=True)),
    "portkey-ai": (_portkey, "httpx", lambda u, h, d: _portkey(u, h, d, stream=True)),
    "anthropic": (_anthropic, "httpx", None),
    "langchain-anthropic": (_langchain_anthropic, "httpx", None),
    "LiteLLM (sync)": (_litellm, "httpx2", lambda u, h, d: _litellm(u, h, d, stream=True)),
    "LiteLLM (async)": (_litellm_async, "aiohttp", lambda u, h, d: _litellm_async(u, h, d, stream=True)),
}
