"""``aiobpf doctor [--json]``: what this host has of what aiobpf needs (:mod:`aiobpf.doctor`),
each check with its remedy; exit 0 when the shipped tools can run, 1 otherwise."""

from __future__ import annotations

import argparse
import json
import os
from typing import TextIO

import attrs

from . import _options as option
from ._running import Stop

__all__ = ["add_parser"]


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> int:
    from .. import _version
    from ..doctor import checks, ready

    results = checks()
    fine = ready(results)
    if args.json:
        report = {
            "aiobpf": _version(),
            "kernel": os.uname().release,
            "machine": os.uname().machine,
            "ready": fine,
            "checks": [attrs.asdict(check) for check in results],
        }
        print(json.dumps(report, indent=2), file=out, flush=True)
        return 0 if fine else 1
    print(f"aiobpf {_version()} on Linux {os.uname().release} ({os.uname().machine})", file=out)
    width = max(len(check.name) for check in results)
    for check in results:
        mark = "ok" if check.ok else ("FAIL" if check.needed else "--")
        print(f"  {mark:<4}  {check.name:<{width}}  {check.found}", file=out)
        if check.remedy:
            print(f"  {'':<4}  {'':<{width}}  -> {check.remedy}", file=out)
    verdict = "ready: aiobpf's tools can run here" if fine else "not ready: fix what says FAIL"
    print(verdict, file=out, flush=True)
    return 0 if fine else 1


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = tools.add_parser(
        "doctor", help="what this host has of what aiobpf needs, with a remedy for each"
    )
    option.add_json(doctor, "one report: every check, whether the tools can run")
    doctor.set_defaults(run=run)
