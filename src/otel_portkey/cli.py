"""The ``otel-portkey`` command: ``demo`` and ``doctor``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="otel-portkey", description="OpenTelemetry <-> Portkey trace bridge"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the seed agent offline through a real Portkey gateway")
    demo.add_argument("--json", action="store_true", help="print a machine-readable result")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, render, run_demo
    from .testing.gateway import GatewayUnavailable

    try:
        result = run_demo()
    except (DemoError, GatewayUnavailable) as error:
        print(f"otel-portkey demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("otel-portkey demo: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        render(result)
    return 0 if result.calls and all(call.correlated for call in result.calls) else 1


if __name__ == "__main__":
    sys.exit(main())
