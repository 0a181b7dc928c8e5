"""aiobpf doctor: what the host has, checked against what the machine shows by other means."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .test_package import _library_path


def _doctor(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "aiobpf", "doctor", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=environment, cwd="/"
    )


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


@pytest.mark.usefixtures("bpf")
def test_doctor_json_agrees_with_the_machine() -> None:
    """As root here: ready (exit 0); BTF, libbpf (the version the loader's file is), the
    capabilities and aiobpf's programs found; no kprobes (no kprobe PMU) and no fentry, each
    with what to use instead."""
    result = _doctor("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    checks = _checks(report)
    assert report["ready"] is True
    assert report["kernel"] == os.uname().release
    assert all(check["ok"] for check in checks.values() if check["needed"])
    library = _library_path("libbpf.so.1").resolve().name  # libbpf.so.1.1.2
    major_minor = ".".join(library.removeprefix("libbpf.so.").split(".")[:2])
    assert checks["libbpf"]["found"] == f"libbpf {major_minor}"
    assert checks["kernel BTF"]["ok"] is Path("/sys/kernel/btf/vmlinux").is_file()
    assert checks["privileges"]["found"].startswith("uid 0, with CAP_BPF, CAP_PERFMON")
    has_kprobes = Path("/sys/bus/event_source/devices/kprobe").is_dir()
    assert checks["kprobes"]["ok"] is has_kprobes
    if not has_kprobes:
        assert "use tracepoints" in checks["kprobes"]["remedy"]
    assert checks["fentry/fexit"]["needed"] is False
    if not checks["fentry/fexit"]["ok"]:
        assert checks["fentry/fexit"]["found"].startswith("loading an fentry program is refused")


def test_an_unprivileged_user_is_told_what_is_missing() -> None:
    """As uid 65534: not ready (exit 1), the privileges check failed with its remedy, in the
    text report and in JSON; nothing else the tools need fails for lack of privileges."""
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root")
    text = _doctor(user=65534)
    assert text.returncode == 1, text.stderr
    assert "FAIL  privileges" in text.stdout
    assert "-> run as root (sudo aiobpf ...), or grant CAP_BPF and CAP_PERFMON" in text.stdout
    assert text.stdout.rstrip().endswith("not ready: fix what says FAIL")
    report = json.loads(_doctor("--json", user=65534).stdout)
    failed = [check["name"] for check in report["checks"] if check["needed"] and not check["ok"]]
    # tracefs too, where only root may enter it (the kernel's default mode, 0700)
    tracing = Path("/sys/kernel/tracing")
    tracefs_private = not (
        tracing.stat().st_mode & 0o001 and (tracing / "events").stat().st_mode & 0o005
    )
    assert failed == ["privileges", *(["tracefs"] if tracefs_private else [])]
    assert report["ready"] is False
