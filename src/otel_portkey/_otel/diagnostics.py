"""Telling the operator about a problem once: every module of the bridge reports through here.

Nothing the bridge does may raise into the application, so a failure is caught where it happens and
reported with :func:`report_once`: only the exception's type is logged (messages of header errors
can quote header values, and those can be secrets), at warning level the first time that kind of
failure comes up in that place, at debug level after that.
"""

from __future__ import annotations

import logging

_log = logging.getLogger("otel_portkey")
_reported: set[str] = set()


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
    """Report a failure of the bridge once; the request goes on without it."""
    kind = type(error).__name__
    warn_once(f"{where}:{kind}", f"otel-portkey: {where} failed ({kind}); the request goes on without it")


def reset() -> None:
    """Forget what was reported (tests: each starts with nothing said)."""
    _reported.clear()
