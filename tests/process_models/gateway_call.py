"""The one gateway call every app in this folder makes, as an ordinary OpenAI-style app makes it.

``PORTKEY_GATEWAY_URL`` is the gateway's base URL (``http://127.0.0.1:PORT/v1``; the bridge reads
the same variable to know the gateway), ``MODEL_URL`` the scripted model the gateway forwards to.
``x-test-label`` names the call, so a test finds it among what the gateway received. Nothing here
knows about OpenTelemetry or the bridge.
"""

from __future__ import annotations

import os

import httpx

URL = f"{os.environ['PORTKEY_GATEWAY_URL'].rstrip('/')}/chat/completions"
ROUTE = {
    "authorization": "Bearer sk-process-models",
    "x-portkey-provider": "openai",
    "x-portkey-custom-host": os.environ["MODEL_URL"],
}


def headers(label: str) -> dict[str, str]:
    return {**ROUTE, "x-test-label": label}


def body(label: str) -> dict[str, object]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": label}]}


def chat(client: httpx.Client, label: str) -> int:
    """One chat completion through the gateway; its HTTP status."""
    return client.post(URL, headers=headers(label), json=body(label)).status_code


async def chat_async(client: httpx.AsyncClient, label: str) -> int:
    return (await client.post(URL, headers=headers(label), json=body(label))).status_code
