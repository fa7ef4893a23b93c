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
    """The tree as plain text, drawn with the guides rich draws (walked without recursion: a trace
    may nest spans deeper than Python's recursion limit)."""
    out = [_text(root.label)]
    pending = _below(root, "")
    while pending:
        node, prefix, last = pending.pop()
        out.append(f"{prefix}{'└── ' if last else '├── '}{_text(node.label)}")
        pending += _below(node, prefix + ("    " if last else "│   "))
    return out


def _below(node: Node, prefix: str) -> list[tuple[Node, str, bool]]:
    """``node``'s children with their prefix and whether each is the last, the first one last."""
    count = len(node.children)
    return [(child, prefix, n == count) for n, child in reversed(list(enumerate(node.children, 1)))]


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

    tree = Tree(text(root.label))
    pending: list[tuple[Tree, Node]] = [(tree, root)]
    while pending:  # no recursion: a trace may nest spans deeper than Python's recursion limit
        branch, node = pending.pop()
        pending += [(branch.add(text(child.label)), child) for child in node.children]
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
    ``spans`` (not exported, or not stored yet) is shown at the top, and so is the first span of a
    loop of parent ids (what no real trace holds); a span id given twice is shown once (the span
    that started first)."""
    ordered: dict[str, ReceivedSpan] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        ordered.setdefault(span.span_id, span)
    children: dict[str, list[ReceivedSpan]] = {}
    for span in ordered.values():
        children.setdefault(span.parent_span_id if span.parent_span_id in ordered else "", []).append(span)
    walk = _Walk(children, label, before, after)
    for position, top in enumerate(children.get("", []), 1):
        walk.add(root, top, position)
    for span in ordered.values():  # those only a loop of parent ids leads to
        if span.span_id not in walk.placed:
            walk.add(root, span, len(root.children) + 1)


@dataclass
class _Walk:
    """Places spans under their parents, depth first and without recursion."""

    children: dict[str, list[ReceivedSpan]]
    label: Callable[[ReceivedSpan, int], Label]
    before: Around | None
    after: Around | None
    placed: set[str] = field(default_factory=set)

    def add(self, parent: Node, top: ReceivedSpan, position: int) -> None:
        """``top`` under ``parent``, and every span under it."""
        pending: list[tuple[Node, ReceivedSpan, int] | tuple[ReceivedSpan, Node]] = [(parent, top, position)]
        while pending:
            step = pending.pop()
            if len(step) == 2:  # a span whose children are all placed: the lines after them
                if self.after is not None:
                    self.after(*step)
                continue
            node, span, at = step
            if span.span_id in self.placed:
                continue
            self.placed.add(span.span_id)
            branch = Node(self.label(span, at))
            node.children.append(branch)
            if self.before is not None:
                self.before(span, branch)
            pending.append((span, branch))
            below = enumerate(self.children.get(span.span_id, []), 1)
            pending += reversed([(branch, child, n) for n, child in below])


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
