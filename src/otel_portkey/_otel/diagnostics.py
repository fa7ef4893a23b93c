"""Telling the operator about a problem once: every module of the bridge reports through here.

Nothing the bridge does may raise into the application, so a failure is caught where it happens and
reported with :func:`report_once`: at warning level, in one line, the first time that kind of failure
comes up in that place; at debug level, every time, with its traceback. Neither holds the exception's
message (messages of header errors can quote header values, and those can be secrets): the warning
names the exception's type, the traceback gives the frames (file, line, function, source line) and
the types of the exceptions chained to it.
"""

from __future__ import annotations

import logging
import traceback

_log = logging.getLogger("otel_portkey")
_reported: set[str] = set()  # the kinds of failure said once in this process (names, never values)


def warn_once(key: str, message: str) -> None:
    """Log ``message`` at warning the first time ``key`` comes up, at debug after that."""
    if key in _reported:
        _log.debug(message)
        return
    _reported.add(key)
    _log.warning(message)


def debug_once(key: str, message: str) -> None:
    """Log ``message`` at debug level the first time ``key`` comes up, never again."""
    if key not in _reported:
        _reported.add(key)
        _log.debug(message)


def report_once(where: str, error: BaseException) -> None:
    """Report a failure of the bridge (a warning the first time, its traceback at debug every time);
    the request goes on without it."""
    kind = type(error).__name__
    line = f"otel-portkey: {where} failed ({kind}); the request goes on without it"
    key = f"{where}:{kind}"
    if key not in _reported:
        _reported.add(key)
        _log.warning(line)
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s\n%s", line, traceback_without_messages(error))


def traceback_without_messages(error: BaseException) -> str:
    """``error``'s traceback as Python prints it (the exceptions it was raised from, or while handling,
    first), with each exception's type where its message would be: messages can quote secrets.

    The frames run from the bridge's own frame that caught the failure to where it was raised: none
    of the application's frames above it, and no variable's value.
    """
    chain: list[tuple[BaseException, str]] = []  # (an exception, how it leads to the one after it)
    current: BaseException | None = error
    link = ""
    while current is not None and not any(current is seen for seen, _ in chain):
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    blocks = []
    for exception, leads_on in reversed(chain):
        kind = type(exception)
        name = (
            kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        )
        frames = "".join(traceback.format_tb(exception.__traceback__))
        head = f"Traceback (most recent call last):\n{frames}" if frames else ""
        blocks.append(f"{head}{name} (message left out){leads_on}")
    return "".join(blocks)


_CAUSE = "\n\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\n\nDuring handling of the above exception, another exception occurred:\n\n"


def reset() -> None:
    """Forget what was reported (tests: each starts with nothing said)."""
    _reported.clear()
