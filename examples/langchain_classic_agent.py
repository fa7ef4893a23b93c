"""The seed recipe's own API: ``create_openai_tools_agent`` + ``AgentExecutor`` (langchain-classic).

    opentelemetry-instrument python examples/langchain_classic_agent.py

The recipe pulled its prompt from the LangChain hub (``hwchase17/openai-tools-agent``), which needs
the internet; the same prompt is written inline here. Settings as in ``langchain_agent.py``.
"""

from __future__ import annotations

import os

from langchain_classic.agents import AgentExecutor, create_openai_tools_agent
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from opentelemetry import trace
from portkey_ai import createHeaders

QUESTION = "Take 3 to the fifth power and multiply that by thirty six, then square the result"

# hwchase17/openai-tools-agent, inline
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a helpful assistant"),
        MessagesPlaceholder("chat_history", optional=True),
        ("human", "{input}"),
        MessagesPlaceholder("agent_scratchpad"),
    ]
)


@tool
def multiply(first_int: int, second_int: int) -> int:
    """Multiply two integers together."""
    return first_int * second_int


@tool
def exponentiate(base: int, exponent: int) -> int:
    """Exponentiate the base to the exponent power."""
    return base**exponent


def portkey_headers() -> dict[str, str]:
    options = {
        "api_key": os.environ.get("PORTKEY_API_KEY"),
        "provider": os.environ.get("PORTKEY_PROVIDER", "openai"),
        "virtual_key": os.environ.get("PORTKEY_VIRTUAL_KEY"),
        "custom_host": os.environ.get("PORTKEY_CUSTOM_HOST"),
        "metadata": {"_user": "seed-user", "example": "langchain_classic_agent"},
    }
    return createHeaders(**{key: value for key, value in options.items() if value})


def main() -> str:
    llm = ChatOpenAI(
        model=os.environ.get("OPENAI_MODEL", "gpt-4o"),
        base_url=os.environ.get("PORTKEY_GATEWAY_URL", "http://localhost:8787/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "sk-local"),
        default_headers=portkey_headers(),
        temperature=0,
    )
    tools = [multiply, exponentiate]
    executor = AgentExecutor(agent=create_openai_tools_agent(llm, tools, PROMPT), tools=tools)
    with trace.get_tracer("examples.langchain_classic_agent").start_as_current_span("seed agent run"):
        result = executor.invoke({"input": QUESTION})
    answer = str(result["output"])
    print(answer)
    return answer


if __name__ == "__main__":
    main()
