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
    demo = commands.add_parser(
        "demo", help="run the seed agent through a real Portkey gateway (offline by default)"
    )
    demo.add_argument("--json", action="store_true", help="print a machine-readable result")
    demo.add_argument(
        "--otlp-endpoint", help="also export the spans to this OTLP/HTTP endpoint (a Collector or Jaeger)"
    )
    demo.add_argument("--gateway-url", help="use this running gateway, e.g. http://localhost:8787")
    demo.add_argument(
        "--live", action="store_true", help="hosted Portkey and a real provider (PORTKEY_API_KEY + a key)"
    )
    demo.add_argument(
        "--question", help="ask the agent something else (offline, the scripted model plays its script)"
    )
    demo.add_argument("--port", type=int, help="start the OSS gateway on this port (default: a free one)")
    commands.add_parser(
        "doctor", help="show settings, versions, reachability and the headers a call would carry"
    )
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return _doctor()
    return _demo(args)


def _doctor() -> int:
    from .doctor import diagnose

    report = diagnose()
    print(report.text())
    return 1 if report.problems else 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, DemoOptions, render, run_demo

    options = DemoOptions(
        otlp_endpoint=args.otlp_endpoint,
        gateway_url=args.gateway_url,
        live=args.live,
        question=args.question,
        port=args.port,
    )
    try:
        if args.json:
            result = run_demo(options)
        else:
            from rich.console import Console

            status = Console(stderr=True).status("Starting")
            with status:
                result = run_demo(options, progress=lambda message: status.update(message))
    except DemoError as error:
        print(f"otel-portkey demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("otel-portkey demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        render(result)
    return 0 if result.calls and all(call.correlated for call in result.calls) else 1


if __name__ == "__main__":
    sys.exit(main())
