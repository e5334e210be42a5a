"""What the three command lines share: argument checkers and the one error printer.

Pure stdlib (the camera's ``bodycam-device`` uses it too). Every command-line value that names
something (a device, a clip, an officer) or a moment passes through one checker here, so every
command refuses the same hostile input the same way: one ``prog: error: ...`` line, ``hint:``
lines, and the documented exit code (2 for a bad command line), never a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from evidence_store.errors import UsageError

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130

#: Dates and times a command accepts. Body-worn cameras did not exist before 2000; the upper
#: bound leaves centuries of headroom for retention arithmetic (deadline = start + years)
#: without reaching datetime's year 9999.
FIRST_YEAR, LAST_YEAR = 2000, 2199
MAX_TEXT = 1000  # a reason or case reference longer than this is not one someone typed

_IDENTIFIERS = {
    # kind: (pattern, what it may hold). \Z, not $: "$" also matches before a final newline.
    "device": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"), "letters, digits, . _ -; at most 64"),
    "officer": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z"), "letters, digits, . _ @ -; at most 64"),
    "clip": (re.compile(r"(?:[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}|q-[0-9a-f]{24})\Z"),
             "a UUIDv7 in lower case, or q- and 24 hex digits for quarantine"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _shown(text: str) -> str:
    """``text`` as it may appear inside one error line: quoted, escaped, cut short."""
    return ascii(text[:60]) + ("..." if len(text) > 60 else "")


def check_identifier(kind: str, text: str, option: str) -> str:
    """Return ``text`` if it is exactly a ``kind`` identifier; UsageError otherwise."""
    pattern, allowed = _IDENTIFIERS[kind]
    if not isinstance(text, str) or not pattern.match(text):
        # "unknown": no such identifier can exist, so none is known under it either.
        article = "an" if kind[0] in "aeiou" else "a"
        raise UsageError(f"{option}: unknown {kind} {_shown(str(text))}: not {article} {kind} id ({allowed})")
    return text


def check_text(text: str, option: str) -> str:
    """A free text (reason, case reference): one line of printable characters, not too long."""
    if _CONTROL.search(text):
        raise UsageError(f"{option}: control characters (such as a line break) are not allowed: {_shown(text)}")
    if len(text) > MAX_TEXT:
        raise UsageError(f"{option}: longer than {MAX_TEXT} characters")
    return text


def _in_range(moment: datetime, text: str, option: str,
              years: tuple[int, int] = (FIRST_YEAR, LAST_YEAR)) -> datetime:
    if not years[0] <= moment.year <= years[1]:
        raise UsageError(f"{option}: {_shown(text)} is outside the years {years[0]} to {years[1]}")
    return moment


def parse_time_arg(text: str, option: str, years: tuple[int, int] = (FIRST_YEAR, LAST_YEAR)) -> datetime:
    """An ISO 8601 time with a zone (``2026-11-25T10:00:00Z``, ``...+01:00``), as aware UTC,
    within ``years`` (both included)."""
    try:
        if not re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}", text):
            raise ValueError
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"{option}: not an ISO time: {_shown(text)}",
                         "hint: for example 2026-11-25T10:00:00Z") from None
    if moment.tzinfo is None:
        raise UsageError(f"{option}: give a time zone: {_shown(text)}", "hint: for example 2026-11-25T10:00:00Z")
    _in_range(moment, text, option, years)
    return _in_range(moment.astimezone(UTC), text, option, years)


def parse_date_arg(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    """``YYYY-MM-DD`` (UTC midnight; with ``end_of_day`` the next midnight) or an ISO time with zone."""
    if len(text) != 10:
        return parse_time_arg(text, option)
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        day = _in_range(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC), text, option)
    except ValueError:
        raise UsageError(f"{option}: not a date (YYYY-MM-DD) or ISO time: {_shown(text)}") from None
    return day + timedelta(days=1) if end_of_day else day


def parse_month_arg(text: str, option: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as (its first instant, the next month's first instant), UTC."""
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", text):
            raise ValueError
        start = _in_range(datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC), text, option)
    except ValueError:
        raise UsageError(f"{option}: not a month (YYYY-MM): {_shown(text)}") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def parse_number_arg(text: str, option: str, low: float, high: float) -> float:
    """A finite decimal number within [low, high]."""
    if not re.fullmatch(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", text):
        raise UsageError(f"{option}: not a decimal number: {_shown(text)}")
    value = float(text)
    if not low <= value <= high:
        raise UsageError(f"{option}: must be from {low:g} to {high:g}, not {_shown(text)}")
    return value


def arg_type(check: Callable[..., object], *extra) -> Callable[[str], object]:
    """An argparse ``type=`` running ``check(text, option, *extra)``; argparse names the option."""

    def convert(text: str):
        try:
            return check(text, "", *extra)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(": ")) from None

    convert.__name__ = check.__name__
    return convert


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, f"hint: '{self.prog} --help' lists the options")


# -- the one error printer -------------------------------------------------------------------------


def _one_line(text: str) -> str:
    # Arguments may hold line breaks or bytes that are not UTF-8 (argv arrives surrogate-escaped):
    # the message stays one printable line whatever it quotes.
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text).encode("utf-8", "backslashreplace").decode("utf-8")


def print_error(prog: str, message: str, hints: Sequence[str] = ()) -> None:
    """``prog: error: message`` and one ``hint: ...`` line per hint, on stderr."""
    sys.stderr.write(f"{prog}: error: {_one_line(message)}\n")
    for hint in hints:
        hint = _one_line(hint)
        sys.stderr.write((hint if hint.startswith("hint:") else f"hint: {hint}") + "\n")
    sys.stderr.flush()


def check_utf8(argv: Sequence[str]) -> None:
    """Refuse arguments that are not UTF-8: they would reach the log, names and messages."""
    for n, arg in enumerate(argv, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"argument {n} is not valid UTF-8: {_shown(arg)}",
                             "hint: names, reasons and paths must be UTF-8 text") from None


def run(prog: str, argv: Sequence[str] | None, body: Callable[[list[str]], int], *,
        errors: tuple[type[BaseException], ...] = (),
        on_error: Callable[[str, int], None] | None = None,
        os_hint: str | None = None) -> int:
    """Run ``body(argv)`` and turn every expected failure into one line and its exit code.

    ``errors`` are the caller's error roots (each with ``exit_code`` and ``hints``); UsageError is
    always among them. ``on_error(message, code)`` may add to the output (``--json`` answers).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args

    def fail(message: str, hints: Sequence[str], code: int) -> int:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        print_error(prog, message, hints)
        if on_error is not None:
            on_error(_one_line(message), code)
        return code

    caught: tuple[type[BaseException], ...] = (UsageError, *errors)
    try:
        check_utf8(args)
        return body(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except caught as exc:
        return fail(str(exc), list(getattr(exc, "hints", [])), getattr(exc, "exit_code", EXIT_ERROR))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}", [os_hint] if os_hint else [], EXIT_ERROR)
