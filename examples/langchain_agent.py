"""The LangChain + Portkey recipe's agent, traced end to end with OpenTelemetry.

    opentelemetry-instrument python examples/langchain_agent.py ["another question"]

Nothing here mentions otel-portkey: under ``opentelemetry-instrument`` the bridge adds the OTel
trace's ids to every gateway call and Portkey's answers to every HTTP span.

Settings (environment):
  PORTKEY_GATEWAY_URL   gateway base URL (default http://localhost:8787/v1, the OSS gateway)
  PORTKEY_API_KEY       hosted Portkey only
  PORTKEY_PROVIDER      provider slug for the gateway (default openai)
  PORTKEY_VIRTUAL_KEY   hosted Portkey: a virtual key instead of a provider key
  PORTKEY_CUSTOM_HOST   send the provider call to this OpenAI-compatible URL (a local model)
  OPENAI_API_KEY        the provider key, passed through the gateway
  OPENAI_MODEL          default gpt-4o
"""

from __future__ import annotations

import os
import sys

from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from opentelemetry import trace
from portkey_ai import createHeaders

QUESTION = "Take 3 to the fifth power and multiply that by thirty six, then square the result"


@tool
def multiply(first_int: int, second_int: int) -> int:
    """Multiply two integers together."""
    return first_int * second_int


@tool
def exponentiate(base: int, exponent: int) -> int:
    """Exponentiate the base to the exponent power."""
    return base**exponent


def portkey_headers() -> dict[str, str]:
    """The recipe's ``createHeaders``: provider routing and metadata; no trace id by hand."""
    options = {
        "api_key": os.environ.get("PORTKEY_API_KEY"),
        "provider": os.environ.get("PORTKEY_PROVIDER", "openai"),
        "virtual_key": os.environ.get("PORTKEY_VIRTUAL_KEY"),
        "custom_host": os.environ.get("PORTKEY_CUSTOM_HOST"),
        "metadata": {"_user": "seed-user", "example": "langchain_agent"},
    }
    return createHeaders(**{key: value for key, value in options.items() if value})


def main(question: str = QUESTION) -> str:
    llm = ChatOpenAI(
        model=os.environ.get("OPENAI_MODEL", "gpt-4o"),
        base_url=os.environ.get("PORTKEY_GATEWAY_URL", "http://localhost:8787/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "sk-local"),
        default_headers=portkey_headers(),
        temperature=0,
    )
    agent = create_agent(llm, tools=[multiply, exponentiate])
    tracer = trace.get_tracer("examples.langchain_agent")
    with tracer.start_as_current_span("seed agent run"):
        result = agent.invoke({"messages": [("user", question)]})
    answer = str(result["messages"][-1].content)
    print(answer)
    return answer


if __name__ == "__main__":
    main(*sys.argv[1:2])
