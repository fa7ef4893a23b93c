"""``mutmut`` as ``make mutation`` runs it: mutmut 3.8.1's own command line, with one change, so
that the contract's memoised functions are mutated too.

mutmut 3.8.1 leaves out every function with a decorator other than a lone ``@staticmethod`` or
``@classmethod`` (``MutationVisitor._skip_node_and_children`` in ``mutmut/mutation/file_mutation.py``,
"ignore decorated functions"), for reasons that do not hold for ``functools.lru_cache`` /
``functools.cache``: such a decorator registers nothing, is not a ``@property``, and copying the
function for the trampoline only gives each copy a memo of its own. The contract memoises
``call.safe_header_value`` and ``call._merged_metadata``: without this change neither would be
mutated. The decorator itself (``maxsize=...``) is still never mutated (mutmut skips every
``Decorator`` node), and every other decorated function is left out as mutmut decides.

Usage: ``python mutation/mutmut_run.py run`` (any mutmut command and option).
"""

from __future__ import annotations

from importlib.metadata import version

import libcst as cst
from libcst.metadata import PositionProvider
from mutmut.__main__ import cli
from mutmut.mutation.file_mutation import NEVER_MUTATE_FUNCTION_NAMES, MutationVisitor

# The change below reaches into mutmut's internals, as they are in this version.
if version("mutmut") != "3.8.1":
    raise SystemExit(f"mutation/mutmut_run.py is written for mutmut 3.8.1, not {version('mutmut')}")

MEMO_DECORATORS = frozenset({"lru_cache", "cache", "functools.lru_cache", "functools.cache"})


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Call):
        return _dotted(node.func)
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    if isinstance(node, cst.Name):
        return node.value
    return ""


def is_memoised(node: cst.CSTNode) -> bool:
    """A function whose decorators are all ``functools.lru_cache(...)`` / ``functools.cache``."""
    return (
        isinstance(node, cst.FunctionDef)
        and bool(node.decorators)
        and all(_dotted(d.decorator) in MEMO_DECORATORS for d in node.decorators)
    )


_skip = MutationVisitor._skip_node_and_children


def _skip_node_and_children(self: MutationVisitor, node: cst.CSTNode) -> bool:
    skipped = bool(_skip(self, node))
    if not skipped or not is_memoised(node):
        return skipped
    # mutmut's reasons to skip a function that come before its decorator rule, kept as they are: a
    # ``# pragma: no mutate`` on its line, an enum's creation hook, a name never mutated
    assert isinstance(node, cst.FunctionDef)
    position = self.get_metadata(PositionProvider, node, None)
    return (
        (position is not None and position.start.line in self._ignored_node_lines)
        or node in self._enum_creation_hooks
        or node.name.value in NEVER_MUTATE_FUNCTION_NAMES
    )


MutationVisitor._skip_node_and_children = _skip_node_and_children  # type: ignore[method-assign]

if __name__ == "__main__":
    cli()
