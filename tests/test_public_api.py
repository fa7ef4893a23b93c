"""The public face: the names DESIGN.md promises, a version, and private rooms behind it."""

import ast
from pathlib import Path

import otel_portkey
import otel_portkey.testing

SRC = Path(otel_portkey.__file__).parent


def test_the_public_names_and_a_version():
    assert set(otel_portkey.__all__) == {
        "PortkeyInstrumentor",
        "PortkeySpanExporter",
        "PortkeySpanProcessor",
        "portkey_metadata",
        "record_feedback",
        "record_feedback_async",
        "__version__",
    }
    for name in otel_portkey.__all__:
        assert getattr(otel_portkey, name) is not None
    assert otel_portkey.__version__[0].isdigit()


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or "")
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_the_cli_never_imports_the_public_test_peers():
    """The demo and the gateway command share the peers through ``_peers``, which ``testing`` re-exports."""
    for path in (SRC / "_cli").glob("*.py"):
        assert not [m for m in imported_modules(path) if "testing" in m], path.name


def test_the_pure_contract_does_no_io_and_reads_no_otel_global():
    forbidden = (
        "opentelemetry",
        "os",
        "socket",
        "subprocess",
        "threading",
        "contextvars",
        "logging",
        "random",
    )
    for path in (SRC / "_contract").glob("*.py"):
        imported = [m for m in imported_modules(path) if m.split(".")[0] in forbidden]
        assert imported == [], path.name


def test_dependencies_point_one_way_on_the_request_path():
    """client_hooks -> bridge -> processor -> headers / contract: nothing below imports what is above."""
    order = ["client_hooks", "bridge", "processor", "headers"]
    for lower, module in enumerate(order):
        imported = set(imported_modules(SRC / "_otel" / f"{module}.py"))
        above = {f".{m}" for m in order[:lower]}
        assert not imported & above, (module, imported & above)
    for path in (SRC / "_contract").glob("*.py"):
        assert not [m for m in imported_modules(path) if "_otel" in m or m.startswith("..")], path.name


def test_testing_exports_every_peer_it_documents():
    for name in otel_portkey.testing.__all__:
        assert getattr(otel_portkey.testing, name) is not None
