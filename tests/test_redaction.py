"""Secrets in argv hidden before events leave the process: the patterns, their cost, hostile
arguments, and every exit (the command's text and JSON, the service's stream, the fleet)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobpf.programs import ExecveEvent
from aiobpf.redaction import DEFAULT, MASK, NONE, Redaction
from aiobpf.schema import exec_record

from . import kernel


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (("mysql", "--password=hunter2", "db"), ("mysql", f"--password={MASK}", "db")),
        (("app", "--api-key", "K1", "--port", "80"), ("app", "--api-key", MASK, "--port", "80")),
        (("env", "DB_PASSWORD=s3", "run"), ("env", f"DB_PASSWORD={MASK}", "run")),
        (("curl", "https://u:pw@host/x"), ("curl", f"https://u:{MASK}@host/x")),
        (("curl", "-H", "Authorization: Bearer abc"),
         ("curl", "-H", f"Authorization: Bearer {MASK}")),
        (("x", "--client-secret=zz", "--aws-secret-key", "yy"),
         ("x", f"--client-secret={MASK}", "--aws-secret-key", MASK)),
        (("git", "clone", "https://github.com/a/b"), ("git", "clone", "https://github.com/a/b")),
        (("ls", "-l", "/tmp"), ("ls", "-l", "/tmp")),
        (("ssh", "-p", "22", "host"), ("ssh", "-p", "22", "host")),  # -p: a port, not taken
    ],
)  # fmt: skip
def test_common_secret_forms_are_hidden_and_nothing_else(
    argv: tuple[str, ...], shown: tuple[str, ...]
) -> None:
    """The default hides the value of secret flags, name=value pairs, a URL's password and a
    bearer token; other arguments are left as they are."""
    assert DEFAULT.argv(argv) == shown


def test_an_argv_with_nothing_to_hide_is_returned_as_it_is() -> None:
    """Without a secret word, the argv is the same tuple (no copy), and NONE hides nothing."""
    argv = ("ls", "-l", "/usr/share/doc")
    assert DEFAULT.argv(argv) is argv
    assert NONE.argv(("x", "--password=p")) == ("x", "--password=p")


def test_patterns_of_ones_own_are_added() -> None:
    """A pattern added hides what its groups match (the whole match when it has none), and
    the defaults keep working beside it."""
    redaction = DEFAULT.adding([r"^SSN:(\d+)$", r"secret-\w+"])
    assert redaction.argv(("a", "SSN:123", "x-secret-abc-y", "--token=t")) == (
        "a", f"SSN:{MASK}", f"x-{MASK}-y", f"--token={MASK}"
    )  # fmt: skip
    assert Redaction(flags=(r"^-k$",)).argv(("t", "-k", "v", "-k")) == ("t", "-k", MASK, "-k")


@given(argv=st.lists(st.text(max_size=60), max_size=12).map(tuple))
@settings(max_examples=300, deadline=None)
def test_any_argv_keeps_its_length_and_loses_every_default_secret(argv: tuple[str, ...]) -> None:
    """Whatever the arguments (control characters, U+FFFD, newlines), redaction returns as
    many, never raises, and no --password=VALUE keeps its value."""
    secret = "Zq7secretvalue"
    hidden = DEFAULT.argv((*argv, f"--password={secret}"))
    assert len(hidden) == len(argv) + 1
    assert secret not in "\n".join(hidden)


def test_a_long_hostile_argument_costs_little() -> None:
    """Arguments of 64 KiB built to make a regular expression backtrack are hidden or passed
    in bounded time (a timing bound generous enough for any machine)."""
    import time

    hostile = ("-" + "a-" * 32_768, "--" + "_" * 65_536 + "=x", "a" * 65_536 + "://" + ":" * 1000)
    started = time.process_time()
    for _ in range(10):
        DEFAULT.argv(hostile)
    assert time.process_time() - started < 5


def _event(argv: tuple[str, ...]) -> ExecveEvent:
    return ExecveEvent(
        pid=1, tid=1, ppid=0, uid=1000, gid=1000, comm="mysql", filename="/usr/bin/mysql",
        argv=argv, retval=0, timestamp_ns=5, time=1.5, syscall="execve", dirfd=-100, flags=0,
        filename_truncated=False, argv_truncated=False, message="", cgroup_id=7,
    )  # fmt: skip


def test_the_fleet_and_the_schema_hide_secrets_unless_told_not_to() -> None:
    """An exec event's record (what SSE and recordings carry) and a fleet message hide the
    password by default; NONE keeps it."""
    from aiobpf.fleet._encoding import to_json

    event = _event(("mysql", "--password=hunter2"))
    assert exec_record(event)["argv"] == ["mysql", f"--password={MASK}"]
    assert b"hunter2" not in to_json({"items": [event]})
    assert b"hunter2" in to_json({"items": [event]}, redaction=NONE)
    assert exec_record(event, redaction=NONE)["argv"] == ["mysql", "--password=hunter2"]


@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_execsnoop_hides_a_real_commands_password(tmp_path: Path, as_json: bool) -> None:
    """A fresh uid runs a program with --password=hunter2 and --token abc: execsnoop shows
    neither secret, in text or JSON; with --no-redact it shows both (root's own choice)."""
    from .test_cli import _start_execsnoop, _stopped_output

    uid = 61099
    program = kernel.uniquely_named_program(tmp_path, "with-secret")
    tmp_path.chmod(0o755)
    for extra, hidden in (((), True), (("--no-redact",), False)):
        tool = _start_execsnoop("--uid", str(uid), *extra, as_json=as_json, backend="asyncio")
        try:
            command = [*kernel.setpriv_command(uid, program), "--password=hunter2", "--token"]
            subprocess.run([*command, "abc"], check=True)
            lines = _stopped_output(tool)
        finally:
            tool.kill()
            tool.communicate()
        text = "\n".join(lines)
        assert ("hunter2" in text, "abc" in text) == (not hidden, not hidden)
        assert (MASK in text) is hidden
        if as_json:
            record = json.loads(lines[0])
            assert record["argv"][1:] == (
                [f"--password={MASK}", "--token", MASK]
                if hidden
                else ["--password=hunter2", "--token", "abc"]
            )


def test_a_bad_pattern_is_a_usage_error() -> None:
    """--redact with something that is not a regular expression: status 2, a usage line."""
    result = subprocess.run(
        [sys.executable, "-m", "aiobpf", "execsnoop", "--redact", "(unclosed"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a regular expression" in result.stderr
