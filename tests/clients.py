"""One way to make a chat call with each httpx flavour, sync or async, for parametrised tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import httpx2

FLAVOURS = {"httpx": httpx, "httpx2": httpx2}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def post(flavour: str, mode: str, url: str, headers: dict[str, str] | None = None, json: Any = None) -> Any:
    module = FLAVOURS[flavour]
    body = CHAT if json is None else json
    if mode == "sync":
        with module.Client() as client:
            return client.post(url, headers=headers or {}, json=body)

    async def run() -> Any:
        async with module.AsyncClient() as client:
            return await client.post(url, headers=headers or {}, json=body)

    return asyncio.run(run())
