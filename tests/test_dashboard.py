"""The dashboard page in a real headless browser (Debian's chromium, driven by Playwright),
against ``aiobpf serve`` running as a separate process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import kernel
from .test_service import _free_port

UID = 61063
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.usefixtures("bpf")


@pytest.fixture
def chromium() -> str:
    """Skips where no browser is installed; `make test` installs one, and CI requires it."""
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK) and missing is None:
        missing = f"no browser at {CHROMIUM} (scripts/setup.sh test installs Debian's chromium)"
    if missing is not None:
        if os.environ.get("AIOBPF_REQUIRE_KERNEL") == "1":
            pytest.fail(f"the dashboard test is required here but cannot run: {missing}")
        pytest.skip(missing)
    return CHROMIUM


@pytest.fixture
def server() -> Iterator[tuple[str, str]]:
    """`aiobpf serve` on a free loopback port; stopped with SIGTERM, which must detach all."""
    port = _free_port()
    programs = kernel.loaded_program_ids()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "aiobpf", "serve", "--port", str(port)),
            *("--max-latency", "0.01"),  # a budget, as a node would run it
            *("--send-buffer", "65536", "--stalled-timeout", "30"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        ready = process.stdout.readline()  # printed once attached and listening
        assert ready.startswith("serving on"), f"aiobpf serve did not start: {ready!r}"
        # generated: in a file only root reads, never in the output
        token_file = Path(ready.split("(token in ")[1].split(",")[0])
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert token not in ready
        yield f"http://127.0.0.1:{port}", token
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process.stdout.close()
    assert not token_file.exists()  # removed when serving ends
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


def test_the_dashboard_shows_an_exec_done_while_it_is_open(
    chromium: str, server: tuple[str, str], tmp_path: Path
) -> None:
    """The page renders, its event stream connects (with its own uid filter, which the server
    hands to the kernel), a known program's exec appears in the list with its arguments, its
    uid in the top table with the exact count, user names next to uids, and a storm of execs
    draws that user's line in the chart. A process of that uid that exits with code 3 shows
    as a failed exit in the list, and as that user's one failure in the table. The filter box
    reloads the page with another filter, keeping the token. A screenshot is kept as a test
    artifact."""
    from playwright.sync_api import expect, sync_playwright

    program = kernel.uniquely_named_program(tmp_path, "seen-in-page")
    tmp_path.chmod(0o755)
    # Playwright's expectations give up after 5 s by default: too short a promise for a loaded
    # machine. What they wait for either comes or is a bug, so a long bound costs nothing.
    expect.set_options(timeout=60_000)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            base, token = server
            page.goto(f"{base}/?uid={UID}&token={token}")
            expect(page.get_by_role("heading", level=1)).to_contain_text("live execs and exits")
            expect(page.locator("#status")).to_have_text("live")
            command = kernel.setpriv_command(UID, program)
            subprocess.run([*command, "--flag", "a value"], check=True)
            subprocess.run(kernel.setpriv_command(UID + 1, program), check=True)  # filtered out
            line = page.locator("#events .exec")
            expect(line).to_have_count(1)
            expect(line).to_contain_text(f"uid={UID} seen-in-page {program} (0)")
            expect(line).to_contain_text('["--flag","a value"]')
            # the top table refreshes every 2 s from /top (all users, not just this page's)
            expect(page.locator(f'#top tr[data-uid="{UID}"] .calls')).to_have_text("1")
            expect(page.locator(f'#top tr[data-uid="{UID + 1}"] .calls')).to_have_text("1")
            expect(page.locator('#top tr[data-uid="0"] .user')).to_have_text("root")
            expect(page.locator("#lost")).to_have_text("0")
            # a storm of execs across two readings of /top: that user's rate is drawn
            for _ in range(STORM):
                subprocess.run(command, check=True)
            expect(page.locator(f'#legend span[data-uid="{UID}"]')).to_be_visible()
            expect(page.locator("#chart")).not_to_have_attribute("data-points", "0")
            expect(page.locator(f'#top tr[data-uid="{UID}"] .calls')).to_have_text(str(1 + STORM))
            expect(line).to_have_count(1 + STORM)
            expect(page.locator("#events .exit.failed")).to_have_count(0)
            subprocess.run([*kernel.setpriv_command(UID, "/bin/sh"), "-c", "exit 3"], check=False)
            failed = page.locator("#events .exit.failed")
            expect(failed).to_have_count(1)
            expect(failed).to_contain_text(f"uid={UID} sh exited: code 3 after")
            expect(page.locator(f'#top tr[data-uid="{UID}"] .failures')).to_have_text("1")
            expect(page.locator(f'#top tr[data-uid="{UID}"] .exits')).to_have_text(
                str(1 + STORM + 1)  # the first program, the storm's, the shell
            )
            _keep_artifact(page, tmp_path)
            page.fill("#filters input[name=uid]", str(UID + 1))
            page.click("#filters button")
            expect(page.locator("#filter")).to_have_text(f"uid={UID + 1}")
            expect(page.locator("#status")).to_have_text("live")  # the token came along
        finally:
            browser.close()


#: Execs of the storm the chart draws.
STORM = 40


def _keep_artifact(page: Any, tmp_path: Path) -> None:
    """Saves a screenshot of the page: under $AIOBPF_ARTIFACTS when set (CI keeps it), else in
    the test's temporary directory."""
    folder = Path(os.environ.get("AIOBPF_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / "dashboard.png", full_page=True)
