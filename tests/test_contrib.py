"""The fleet files in contrib/ (a Grafana dashboard and Prometheus alerting rules) load, and
every aiobpf metric they name is one that a running ``aiobpf serve`` exports on /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import httpx
import pytest

from .serving import running_service
from .test_service import ACCESS, AUTHORIZED, _free_port

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
METRIC = re.compile(r"\baiobpf_[a-z_]+\b")


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    assert dashboard["panels"], "the dashboard has no panels"
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert all(expressions)
    return expressions


def _alert_expressions() -> list[str]:
    """The ``expr:`` of every rule (the file is YAML; its rules are one line each)."""
    text = (CONTRIB / "prometheus-alerts.yml").read_text()
    alerts = re.findall(r"^\s*- alert: (\w+)$", text, flags=re.M)
    expressions = re.findall(r"^\s*expr: (.+)$", text, flags=re.M)
    assert len(alerts) == len(expressions) >= 2
    return expressions


def test_the_contrib_files_load_and_name_aiobpf_metrics() -> None:
    for expressions in (_dashboard_expressions(), _alert_expressions()):
        assert any(METRIC.search(expression) for expression in expressions)


@pytest.mark.usefixtures("bpf")
@pytest.mark.anyio
async def test_every_metric_the_contrib_files_name_is_exported() -> None:
    port = _free_port()
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=ACCESS),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTHORIZED) as client,
        ):
            await anyio.run_process(["/bin/true"])  # one exec: every family has a sample
            metrics = (await client.get("/metrics")).text
    exported = set(re.findall(r"^(aiobpf_[a-z_]+)[{ ]", metrics, flags=re.M))
    named = {
        name
        for expression in [*_dashboard_expressions(), *_alert_expressions()]
        for name in METRIC.findall(expression)
    }
    assert named, "the contrib files name no aiobpf metric"
    assert named <= exported, f"named but not exported: {sorted(named - exported)}"
