"""mkdocs hooks: the pages kept at the repository's top, where GitHub and a clone show them
(security, benchmark results, reliability, changes), join the site as they are, so that each
is written once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

#: site page: repository file
INCLUDED = {
    "explanations/security.md": "SECURITY.md",
    "benchmarks.md": "benchmarks/RESULTS.md",
    "reliability.md": "RELIABILITY.md",
    "changelog.md": "CHANGELOG.md",
    "guide/fleet-cluster.md": "contrib/nats-cluster/README.md",
}


def on_files(files: Files, config: Any) -> Files:
    for page, source in INCLUDED.items():
        files.append(File.generated(config, page, content=(ROOT / source).read_text()))
    for plot in sorted((ROOT / "benchmarks" / "plots").glob("*.png")):  # RESULTS.md shows them
        files.append(File.generated(config, f"plots/{plot.name}", content=plot.read_bytes()))
    return files
