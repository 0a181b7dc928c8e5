"""The command's argument types and the options its tools share, each said once."""

from __future__ import annotations

import argparse
import math
import re
from typing import TYPE_CHECKING

from .._core.validate import AdaptiveLatency
from ..errors import SetupError
from ..programs._constants import MAX_ARGS
from ..redaction import DEFAULT, NONE, Redaction

if TYPE_CHECKING:
    from .._core.validate import MaxLatency
    from ..operators._cgroups import CgroupTree

#: The tools' adaptive budget: what they print goes to a person or a pipe, for whom 50 ms is
#: at once, and a read after a wake-up, cold, costs the tool more than the few records it
#: formats (benchmarks/RESULTS.md, "Exec tracers"). A library source's default is 4 ms.
TOOL_LATENCY = AdaptiveLatency(0.05)

__all__ = [
    "add_duration",
    "add_json",
    "add_max_latency",
    "add_program_stats",
    "add_redaction",
    "arg_count",
    "cgroup",
    "count",
    "file_mode",
    "latency",
    "pid",
    "positive",
    "redaction_of",
    "ring_size",
    "tool_latency",
    "uid",
]


def positive(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def latency(text: str) -> MaxLatency:
    if text == "auto":
        return "auto"
    return _seconds(text)


def tool_latency(text: str) -> MaxLatency:
    """A tool's ``--max-latency``: "auto" is :data:`TOOL_LATENCY`."""
    if text == "auto":
        return TOOL_LATENCY
    return _seconds(text)


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number >= 0, got {text!r}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def arg_count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_ARGS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to {MAX_ARGS}, got {text!r}"
        )
    return value


def ring_size(text: str) -> int:
    from .._core.validate import ring_pages

    value = int(text)
    try:
        ring_pages(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def file_mode(text: str) -> int:
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"must be a file mode in octal (0600), got {text!r}")
    return value


def uid(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a uid (0 to 4294967295), got {text!r}")
    return value


def pid(text: str) -> int:
    value = int(text)
    if not 0 < value <= _PID_MAX:
        raise argparse.ArgumentTypeError(f"must be a process id (1 to {_PID_MAX}), got {text!r}")
    return value


_PID_MAX = 4 * 1024 * 1024  # the kernel's PID_MAX_LIMIT on 64-bit machines


def cgroup(text: str) -> CgroupTree:
    from ..operators._cgroups import CgroupTree

    try:
        return CgroupTree.of(text)
    except (OSError, SetupError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_duration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=positive, default=math.inf, help="seconds to run")


def add_program_stats(parser: argparse.ArgumentParser) -> None:
    """``--program-stats``: what the tool's BPF programs cost, in its summary."""
    parser.add_argument(
        "--program-stats",
        action="store_true",
        help="count the BPF programs' runs and time in the kernel (turns the kernel's run "
        "statistics on for every program on the host while it runs) and say them at the end",
    )


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: NDJSON records of :mod:`aiobpf.schema` (``what`` says which)."""
    parser.add_argument("--json", action="store_true", help=f"NDJSON: {what}")


def add_redaction(parser: argparse.ArgumentParser) -> None:
    """``--redact REGEX`` and ``--no-redact``: which secrets of argv are hidden in what the
    tool shows or sends (:mod:`aiobpf.redaction`)."""
    parser.add_argument(
        "--redact",
        action="append",
        type=_pattern,
        default=[],
        metavar="REGEX",
        help="also hide what this pattern's groups match in each argument (repeatable); "
        "common secret flags (--password=..., token=..., a URL's password) are hidden anyway",
    )
    parser.add_argument(
        "--no-redact",
        action="store_true",
        help="show argv as it is, secrets and all (to whoever sees this tool's output)",
    )


def _pattern(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {exc}") from None
    return text


def redaction_of(args: argparse.Namespace) -> Redaction:
    if args.no_redact:
        return NONE.adding(args.redact)
    return DEFAULT.adding(args.redact) if args.redact else DEFAULT


def add_max_latency(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument(
        "--max-latency",
        type=tool_latency,
        default=TOOL_LATENCY,
        help="latency budget, seconds: read at most this often (less CPU); "
        "auto (default): up to 50 ms while 60 events/s or more come, else at once; 0: at once",
    )
