"""What each private layout the bridge reads saves, against the public API it stands in for.

The bridge reads the HTTP clients' private header layouts in one module (``_otel/headers.py``), each
checked once against the public API and tested to fail loudly when a pinned version changes it. A
read stays only where it saves more than it costs to keep; this prints, per read, the public API's
time and the private read's, on the same real objects (a request's usual headers plus two
``x-portkey-*`` ones), as the best of several repeats (the least disturbed by whatever else the
machine runs). (The SDK's baggage key, read until 2026-12-07, cost 84 ns more than
``baggage.get_all``: it went.)

    python benchmarks/bench_layouts.py [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from typing import Any

import httpx
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict

from otel_portkey._otel import headers as h

HEADERS = {
    "Host": "gateway.bench:8787",
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": "OpenAI/Python 3.57.0",
    "Content-Type": "application/json",
    "Authorization": "Bearer sk-bench",
    "x-portkey-provider": "openai",
    "x-portkey-config": '{"retry": {"attempts": 2}}',
}
NEW = {"x-portkey-trace-id": "0" * 31 + "1", "x-portkey-span-id": "0" * 15 + "2"}


def best(step: Callable[[], Any], number: int, repeat: int) -> float:
    """Nanoseconds per call: the best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(step, number=number, repeat=repeat)) / number * 1e9


def rows(number: int, repeat: int) -> list[tuple[str, float, float]]:
    kinds: dict[str, Callable[[], Any]] = {
        "httpx Headers": lambda: httpx.Headers(HEADERS),
        "requests CaseInsensitiveDict": lambda: CaseInsensitiveDict(HEADERS),
        "urllib3 HTTPHeaderDict": lambda: HTTPHeaderDict(HEADERS),
    }
    found = []
    for kind, make in kinds.items():
        mapping = make()
        assert h.layout(mapping), f"{kind}: no known layout (the fast path would not be taken)"
        pairs = (
            ("header names", h.public_header_names, h.header_names),
            ("x-portkey-* entries", h.public_portkey_entries, h.portkey_entries),
            ("header bytes", h.public_header_bytes, h.header_bytes),
        )
        for name, public, private in pairs:
            found.append(
                (
                    f"{kind}: {name}",
                    best(lambda p=public, m=mapping: p(m), number, repeat),  # type: ignore[misc]
                    best(lambda f=private, m=mapping: f(m), number, repeat),  # type: ignore[misc]
                )
            )

        def public_add(make: Callable[[], Any] = make) -> None:
            mapping = make()
            for key, value in NEW.items():
                mapping[key] = value

        def private_add(make: Callable[[], Any] = make) -> None:
            h.add_absent(make(), NEW)

        found.append(
            (
                f"{kind}: adding 2 headers (incl. building the mapping)",
                best(public_add, number, repeat),
                best(private_add, number, repeat),
            )
        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="few iterations: checks that it runs")
    options = parser.parse_args()
    number, repeat = (200, 2) if options.smoke else (20_000, 7)
    print("### Private layouts against the public API (ns per call, best of interleaved repeats)\n")
    print("| read | public API | private layout | saved |")
    print("|---|---|---|---|")
    for name, public, private in rows(number, repeat):
        print(f"| {name} | {public:,.0f} | {private:,.0f} | {public - private:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
