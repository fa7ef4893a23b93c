"""The span tree ``otel-portkey demo`` and ``otel-portkey trace`` print.

Each span shows its name, duration and id; a span a traced gateway exported shows its service and
its role (its node of a call, with the ``portkey.span_id`` it received and the HTTP status it
answered, or an upstream attempt, with where it went and what the upstream answered). The caller
adds its own lines around a span (what the gateway received and answered, or what the span records).

A label is a list of ``(text, style)`` segments, never console markup, so a span name holding
brackets prints as it is, and every text is made printable (a stored span's name or attribute
cannot move the cursor or colour the terminal). The tree prints with rich when it is installed (the
``demo`` extra), else as the same tree in plain text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from .._contract import call as h
from .._peers.otlp_receiver import ReceivedSpan
from .doctor import printable

SPAN_KIND_SERVER: Final = 2  # OTLP's Span.SpanKind
SPAN_KIND_CLIENT: Final = 3
SPAN_KINDS: Final = {
    1: "internal",
    SPAN_KIND_SERVER: "server",
    SPAN_KIND_CLIENT: "client",
    4: "producer",
    5: "consumer",
}

Segment = tuple[str, str]  # (text, rich style; "" for none)
Label = list[Segment]


@dataclass
class Node:
    """One line of the tree and the lines under it."""

    label: Label
    children: list[Node] = field(default_factory=list)

    def add(self, *segments: Segment | str) -> Node:
        """A new child line made of ``segments`` (a plain string is unstyled text)."""
        child = Node([(s, "") if isinstance(s, str) else s for s in segments])
        self.children.append(child)
        return child


def plain_lines(root: Node) -> list[str]:
    """The tree as plain text, drawn with the guides rich draws."""
    out = [_text(root.label)]

    def walk(node: Node, prefix: str) -> None:
        for n, child in enumerate(node.children, 1):
            last = n == len(node.children)
            out.append(f"{prefix}{'└── ' if last else '├── '}{_text(child.label)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return out


def print_tree(root: Node, console: Any | None = None, file: TextIO | None = None) -> None:
    """Print the tree on ``console`` (a rich Console); without one, on a new rich Console, or in
    plain text when rich is not installed. ``file`` (default stdout) is where a new one writes."""
    if console is None:
        try:
            from rich.console import Console
        except ImportError:
            print("\n".join(plain_lines(root)), file=file or sys.stdout)
            return
        out = file or sys.stdout
        # A terminal wraps at its width; a log or a pipe gets whole lines (grep finds a span's id).
        console = Console(file=out, highlight=False, width=None if out.isatty() else 100_000)
    console.print(_rich_tree(root))


def _text(label: Label) -> str:
    return "".join(printable(text) for text, _ in label)


def _rich_tree(root: Node) -> Any:
    from rich.text import Text
    from rich.tree import Tree

    def text(label: Label) -> Text:
        return Text.assemble(*((printable(t), style) for t, style in label))

    def add(tree: Tree, node: Node) -> None:
        for child in node.children:
            add(tree.add(text(child.label)), child)

    tree = Tree(text(root.label))
    add(tree, root)
    return tree


# ---- spans -------------------------------------------------------------------------------------


def service(span: ReceivedSpan) -> str:
    name = span.resource.get("service.name")
    return name if isinstance(name, str) else ""


def http_status(span: ReceivedSpan) -> int | None:
    status = span.attributes.get("http.response.status_code")
    return status if isinstance(status, int) else None


def upstream(span: ReceivedSpan) -> str:
    """Where a gateway's upstream attempt went: ``server.address:server.port``."""
    return f"{span.attributes.get('server.address', '?')}:{span.attributes.get('server.port', '?')}"


def text_attribute(span: ReceivedSpan, key: str) -> str | None:
    value = span.attributes.get(key)
    return value if isinstance(value, str) else None


def span_label(
    span: ReceivedSpan,
    position: int,
    from_gateway: bool,
    expected_span_id: str | None = None,
    expected_as: str = "received",
) -> Label:
    """A span's line. One of the app's: its name, duration and id. One a traced gateway exported
    (``from_gateway``): its service, its role (its node of a call, or the ``position``-th upstream
    attempt under that node), the HTTP status it recorded and, on its node, the ``portkey.span_id``
    it received, checked against ``expected_span_id`` when given (what the gateway was seen to
    receive, or what the app's span says it sent: ``expected_as``)."""
    timing = (f"{span.duration_ms:.1f} ms  span {span.span_id}", "dim")
    if not from_gateway:
        return [(f"{span.name}  ", ""), timing]
    status = http_status(span)
    answered: Segment = (
        (f"http {status}", "") if status is not None and status < 400 else (_status_text(status), "red")
    )
    who: Segment = (service(span), "magenta")
    if span.kind == SPAN_KIND_CLIENT:
        return [
            who,
            (f" attempt {position} {span.name} {upstream(span)}  ", ""),
            answered,
            ("  ", ""),
            timing,
        ]
    if span.kind != SPAN_KIND_SERVER:
        return [who, (f" {span.name}  ", ""), timing]
    label: Label = [who, (f" server {span.name}  ", ""), answered]
    portkey_span_id = span.attributes.get(h.ATTR_SPAN_ID)
    if portkey_span_id is not None:
        label.append((f"  portkey.span_id {portkey_span_id}", ""))
        if expected_span_id is not None:
            if portkey_span_id == expected_span_id:
                label.append((f"  (as {expected_as})", "green"))
            else:
                label.append((f"  (not the id {expected_as})", "red"))
    return [*label, ("  ", ""), timing]


def _status_text(status: int | None) -> str:
    return f"http {status}" if status is not None else "no answer"


Around = Callable[[ReceivedSpan, Node], None]


def add_spans(
    root: Node,
    spans: Iterable[ReceivedSpan],
    label: Callable[[ReceivedSpan, int], Label],
    before: Around | None = None,
    after: Around | None = None,
) -> None:
    """Add ``spans`` under ``root`` as the tree their parent ids make, each level in the order the
    spans started. ``label(span, position)`` makes a span's line (``position``: its place among its
    siblings, from 1); ``before(span, node)`` and ``after(span, node)`` may add lines of their own
    under a span's node, before and after its child spans. A span whose parent is not among
    ``spans`` (not exported, or not stored yet) is shown at the top."""
    ordered = sorted(spans, key=lambda s: s.start_ns)
    ids = {span.span_id for span in ordered}
    children: dict[str, list[ReceivedSpan]] = {}
    for span in ordered:
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else "", []).append(span)

    def add(node: Node, span: ReceivedSpan, position: int) -> None:
        branch = Node(label(span, position))
        node.children.append(branch)
        if before is not None:
            before(span, branch)
        for child_position, child in enumerate(children.get(span.span_id, []), 1):
            add(branch, child, child_position)
        if after is not None:
            after(span, branch)

    for position, top in enumerate(children.get("", []), 1):
        add(root, top, position)


def span_json(span: ReceivedSpan) -> dict[str, Any]:
    """A span as both commands' ``--json`` list it."""
    return {
        "name": span.name,
        "service": span.resource.get("service.name"),
        "kind": SPAN_KINDS.get(span.kind, str(span.kind)),
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "duration_ms": round(span.duration_ms, 2),
    }
