"""The portkey-ai SDK (which sends through httpx, with its own vendored openai client).

    opentelemetry-instrument python examples/portkey_sdk.py

Settings as in ``langchain_agent.py``; ``PORTKEY_GATEWAY_URL`` selects the gateway.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from portkey_ai import Portkey

from otel_portkey import portkey_metadata


def main() -> None:
    options = {
        "base_url": os.environ.get("PORTKEY_GATEWAY_URL", "http://localhost:8787/v1"),
        "api_key": os.environ.get("PORTKEY_API_KEY"),
        "provider": os.environ.get("PORTKEY_PROVIDER", "openai"),
        "virtual_key": os.environ.get("PORTKEY_VIRTUAL_KEY"),
        "custom_host": os.environ.get("PORTKEY_CUSTOM_HOST"),
        "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', 'sk-local')}",
    }
    client = Portkey(**{key: value for key, value in options.items() if value})
    with (
        trace.get_tracer("examples.portkey_sdk").start_as_current_span("portkey sdk"),
        portkey_metadata(_user="seed-user", session="portkey-sdk-example"),
    ):
        completion = client.chat.completions.create(
            model=os.environ.get("OPENAI_MODEL", "gpt-4o"),
            messages=[{"role": "user", "content": "Say hello"}],
        )
    print(completion.choices[0].message.content)


if __name__ == "__main__":
    main()
