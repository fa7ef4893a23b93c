"""The ``otel-portkey`` command: ``demo``, ``gateway``, ``doctor`` and ``trace``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any

from .. import environment_variables as ev

# What ``otel-portkey demo`` imports, itself or in the agent it runs under ``opentelemetry-instrument``
# (module -> the package that brings it); all of them come with the ``demo`` extra.
DEMO_MODULES = {
    "rich": "rich",
    "langchain": "langchain",
    "langchain_openai": "langchain-openai",
    "portkey_ai": "portkey-ai",
    "opentelemetry.distro": "opentelemetry-distro",
    "opentelemetry.instrumentation.genai.langchain": "opentelemetry-instrumentation-genai-langchain",
}


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
        "--otlp-endpoint",
        help="also export the spans and metrics to this OTLP/HTTP endpoint (a Collector or Jaeger)",
    )
    demo.add_argument("--gateway-url", help="use this running gateway, e.g. http://localhost:8787")
    demo.add_argument(
        "--live", action="store_true", help="hosted Portkey and a real provider (PORTKEY_API_KEY + a key)"
    )
    demo.add_argument(
        "--question", help="ask the agent something else (offline, the scripted model plays its script)"
    )
    demo.add_argument("--port", type=int, help="start the OSS gateway on this port (default: a free one)")
    gateway = commands.add_parser(
        "gateway",
        help="run the pinned OSS Portkey gateway and a scripted model on loopback, to try your own app",
    )
    gateway.add_argument(
        "--port", type=_port, default=8787, help="where apps reach the gateway (default: 8787)"
    )
    gateway.add_argument(
        "--otlp-endpoint",
        type=_otlp_endpoint,
        metavar="URL",
        help="trace the gateway: its spans (each upstream attempt) and HTTP metrics go to this "
        "OTLP/HTTP endpoint (a Collector or Jaeger, e.g. http://localhost:4318)",
    )
    gateway.add_argument(
        "--service-name",
        metavar="NAME",
        help="the traced gateway's service.name (default: portkey-gateway; needs --otlp-endpoint)",
    )
    gateway.add_argument(
        "--print-preload",
        action="store_true",
        help="print the path of the OpenTelemetry preload for any OSS gateway (node --import) and exit",
    )
    commands.add_parser(
        "doctor", help="show settings, versions, reachability and the headers a call would carry"
    )
    trace = _trace_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return _doctor()
    if args.command == "trace":
        return _trace(args, trace)
    if args.command == "gateway":
        from .._peers.oss_gateway import DEFAULT_SERVICE_NAME, gateway_preload
        from .gateway import serve

        if args.print_preload:
            print(gateway_preload())
            return 0
        if args.otlp_endpoint is None:
            if args.service_name is not None:
                gateway.error(
                    "--service-name needs --otlp-endpoint (only a traced gateway has a service name)"
                )
            return serve(args.port)
        service_name = args.service_name or DEFAULT_SERVICE_NAME
        return serve(args.port, otlp_endpoint=args.otlp_endpoint, service_name=service_name)
    return _demo(args)


def _trace_parser(commands: Any) -> argparse.ArgumentParser:
    from .trace import DEFAULT_JAEGER, SETTLE_SECONDS, jaeger_url_argument, trace_id_argument

    trace: argparse.ArgumentParser = commands.add_parser(
        "trace",
        help="print a trace stored in Jaeger as the demo's tree (for terminals, CI logs, Jaegers without UI)",
        description="Print a trace stored in Jaeger as the demo's tree: each span, and under each "
        "gateway call what its span records of Portkey (trace id, node id, cache, retries, provider) "
        "and, where the gateway is traced, its own node and upstream attempts. Read from Jaeger's "
        "query API (api_v3). Give a trace id or --service.",
    )
    trace.add_argument(
        "trace_id",
        nargs="?",
        type=trace_id_argument,
        metavar="TRACE_ID",
        help="the OTel trace id (32 hex characters)",
    )
    trace.add_argument("--service", metavar="NAME", help="instead: the latest trace of this service")
    trace.add_argument(
        "--jaeger",
        type=jaeger_url_argument,
        metavar="URL",
        help=f"Jaeger's base URL, its UI's and query API's (default: ${ev.OTEL_PORTKEY_JAEGER_UI_URL}, "
        f"else {DEFAULT_JAEGER})",
    )
    trace.add_argument(
        "--json", action="store_true", help="print the spans as JSON (a bytes value as lowercase hex)"
    )
    trace.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the trace to reach Jaeger (spans arrive a second or two after "
        f"the app exits): it is printed once Jaeger's answer has stayed the same for {SETTLE_SECONDS:g} s "
        "(with --service: the service's latest trace, looked up anew each time, so a newer run's trace "
        "replaces an older one), or when the time is up; spans reaching Jaeger later are not waited "
        "for (default 0: ask once)",
    )
    return trace


def _trace(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .doctor import printable
    from .trace import default_jaeger_url, jaeger_url_argument, run

    if (args.trace_id is None) == (args.service is None):
        parser.error("give a TRACE_ID or --service NAME (one of them)")
    if args.service is not None and not args.service.strip():
        parser.error("--service needs a service name")
    jaeger = args.jaeger
    if jaeger is None:
        try:
            jaeger = jaeger_url_argument(default_jaeger_url())
        except argparse.ArgumentTypeError as error:
            print(printable(f"otel-portkey trace: {ev.OTEL_PORTKEY_JAEGER_UI_URL}: {error}"), file=sys.stderr)
            return 1
    from .gateway import stop_on_signals

    restore = stop_on_signals()  # Ctrl-C ends a --wait even where SIGINT came in ignored
    try:
        return run(args.trace_id, args.service, jaeger, as_json=args.json, wait=args.wait)
    finally:
        restore()


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:  # NaN fails both
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return seconds


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def _otlp_endpoint(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an OTLP/HTTP base URL (like http://localhost:4318)"
        )
    return text.rstrip("/")


def _doctor() -> int:
    from opentelemetry import metrics

    from .doctor import diagnose

    report = diagnose(meter_provider=metrics.get_meter_provider())
    print(report.text())
    return 1 if report.problems else 0


def missing_demo_packages() -> list[str]:
    """The packages of :data:`DEMO_MODULES` that are not installed (found without importing them)."""
    missing = []
    for module, package in DEMO_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package is missing, or a half-removed module
            found = False
        if not found:
            missing.append(package)
    return missing


def _demo(args: argparse.Namespace) -> int:
    missing = missing_demo_packages()
    if missing:
        print(
            "otel-portkey demo needs the 'demo' extra: pip install 'otel-portkey[demo]' "
            f"(missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return 1
    from .demo import DemoError, DemoOptions, render, run_demo
    from .doctor import printable

    options = DemoOptions(
        otlp_endpoint=args.otlp_endpoint,
        gateway_url=args.gateway_url,
        live=args.live,
        question=args.question,
        port=args.port,
    )
    from .gateway import stop_on_signals

    restore = stop_on_signals()
    try:
        if args.json:
            result = run_demo(options)
        else:
            from rich.console import Console

            status = Console(stderr=True).status("Starting")
            with status:
                result = run_demo(options, progress=lambda message: status.update(message))
    except DemoError as error:
        print(printable(f"otel-portkey demo: {error}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("otel-portkey demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        restore()
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        render(result)
    if result.delivery is not None and result.delivery.failed:
        print(printable(f"otel-portkey demo: {result.delivery.sentence()}"), file=sys.stderr)
        return 1
    return 0 if result.all_correlated is True else 1  # a call shown uncorrelated, or not verified


if __name__ == "__main__":
    sys.exit(main())
