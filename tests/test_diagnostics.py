"""What the bridge says about a failure it contains: one warning line the first time, the traceback at
debug every time, and never the exception's message (it can quote a header value, a secret)."""

import io
import logging

import pytest

from otel_portkey._otel import diagnostics

pytestmark = pytest.mark.unit

SECRET = "sk-SENTINEL-in-an-exception-message-46"
WHERE = "adding Portkey headers"


def set_header(value):
    raise ValueError(f"invalid header value {value!r}")


def failure(secret=SECRET):
    """A failure raised two frames down, from another one (as a header error raised while handling a
    lookup error), caught where the bridge catches it."""
    try:
        try:
            {}["x-portkey-trace-id"]
        except KeyError as lookup:
            raise TypeError(f"no header {secret}") from lookup
    except TypeError:
        try:
            set_header(secret)
        except ValueError as error:
            return error
    raise AssertionError("unreachable")


@pytest.fixture
def logged():
    """Everything ``otel_portkey`` logs at DEBUG, formatted as a handler writes it (with any
    ``exc_info`` the records carry)."""
    logger = logging.getLogger("otel_portkey")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    records = []
    handler.addFilter(lambda record: records.append(record) or True)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records, stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_first_failure_is_one_warning_line_and_its_traceback_at_debug(logged):
    records, stream = logged
    diagnostics.report_once(WHERE, failure())
    warning, debug = records
    assert warning.levelno == logging.WARNING
    assert (
        warning.getMessage() == f"otel-portkey: {WHERE} failed (ValueError); the request goes on without it"
    )
    assert warning.exc_info is None
    assert debug.levelno == logging.DEBUG
    assert debug.getMessage().startswith(warning.getMessage() + "\nTraceback (most recent call last):\n")
    assert SECRET not in stream.getvalue()


def test_every_later_failure_is_logged_at_debug_with_its_traceback(logged):
    records, _ = logged
    for _ in range(3):
        diagnostics.report_once(WHERE, failure())
    assert [r.levelno for r in records] == [logging.WARNING] + [logging.DEBUG] * 3
    assert all("in set_header" in r.getMessage() for r in records[1:])


def test_the_traceback_names_the_frames_and_the_chain_but_no_message(logged):
    _, stream = logged
    diagnostics.report_once(WHERE, failure())
    text = stream.getvalue()
    assert SECRET not in text  # the frames' source lines are there, the messages are not
    traceback = text[text.index("Traceback") :]
    assert traceback.count("Traceback (most recent call last):") == 3
    assert "KeyError (message left out)" in traceback
    assert "The above exception was the direct cause of the following exception:" in traceback
    assert "TypeError (message left out)" in traceback
    assert "During handling of the above exception, another exception occurred:" in traceback
    assert traceback.rstrip().endswith("ValueError (message left out)")
    assert ", in set_header\n" in traceback
    assert ", in failure\n" in traceback
    left_out = [
        traceback.index(f"{name} (message left out)") for name in ("KeyError", "TypeError", "ValueError")
    ]
    assert left_out == sorted(left_out), "the first cause first, as Python prints it"


def test_a_secret_in_the_message_appears_in_no_record_and_no_line(logged):
    records, stream = logged
    secret = "pk-SENTINEL-portkey-api-key-47"
    for _ in range(2):
        diagnostics.report_once(WHERE, failure(secret))
    assert not [r for r in records if secret in r.getMessage() or r.exc_info or r.exc_text]
    assert secret not in stream.getvalue()


def test_an_exception_never_raised_has_no_frames():
    assert diagnostics.traceback_without_messages(OSError(SECRET)) == "OSError (message left out)"


def test_an_exception_outside_builtins_is_named_with_its_module():
    class HeaderError(Exception):
        pass

    named = diagnostics.traceback_without_messages(HeaderError(SECRET))
    assert named == f"{__name__}.{HeaderError.__qualname__} (message left out)"


def test_a_context_that_loops_back_ends_the_chain():
    first, second = ValueError("a"), KeyError("b")
    first.__context__, second.__context__ = second, first
    text = diagnostics.traceback_without_messages(first)
    assert text.count("(message left out)") == 2


def test_without_debug_only_the_first_warning_is_logged_and_no_traceback_is_made(caplog, monkeypatch):
    made = []
    monkeypatch.setattr(diagnostics, "traceback_without_messages", lambda error: made.append(error) or "")
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        for _ in range(3):
            diagnostics.report_once(WHERE, failure())
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert made == []


def test_each_kind_of_failure_in_each_place_is_warned_about_once(caplog):
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        for where in (WHERE, WHERE, "recording the Portkey response"):
            for error in (failure(), RuntimeError(SECRET), failure()):
                diagnostics.report_once(where, error)
    assert [r.getMessage() for r in caplog.records] == [
        f"otel-portkey: {WHERE} failed (ValueError); the request goes on without it",
        f"otel-portkey: {WHERE} failed (RuntimeError); the request goes on without it",
        "otel-portkey: recording the Portkey response failed (ValueError); the request goes on without it",
        "otel-portkey: recording the Portkey response failed (RuntimeError); the request goes on without it",
    ]
