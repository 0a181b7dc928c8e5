"""aiobpf as a package people install: the wheel ``python -m build`` makes from a clean tree,
installed into a new virtual environment, runs its tools on a host with no compiler, BCC or
headers (hidden in a private mount namespace), and says in one line what is missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from aiobpf.programs._build import PREBUILT

from . import kernel

ROOT = Path(__file__).resolve().parent.parent
UID = 61094

#: What a host that only runs aiobpf lacks: the compiler, bpftool, BCC's module, the kernel's
#: and the C library's headers (each a directory hidden under an empty tmpfs, or a file under
#: /dev/null).
HIDDEN = [
    "/usr/include",
    "/usr/src",
    f"/lib/modules/{os.uname().release}",
    "/usr/lib/python3/dist-packages/bcc",
    *(str(path) for path in Path("/usr/lib").glob("llvm-*")),
    *(shutil.which(tool) or "" for tool in ("clang", "llc", "bpftool")),
]


def _hiding(paths: list[str], command: list[str]) -> list[str]:
    """``command`` in a private mount namespace where ``paths`` are hidden (the namespace, and
    what it hides, ends with the command)."""
    script = ['for p in "$@"; do [ "$p" = -- ] && break']
    script += ['  if [ -d "$p" ]; then mount -t tmpfs none "$p"; elif [ -e "$p" ]; then']
    script += ['  mount --bind /dev/null "$p"; fi; shift; done; shift; exec "$@"']
    return [
        "unshare", "-m", "--propagation", "private", "sh", "-ec", "\n".join(script), "sh",
        *(path for path in paths if path), "--", *command,
    ]  # fmt: skip


def _run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **options)  # type: ignore[call-overload,no-any-return]


def _clean_tree(destination: Path) -> Path:
    """The files a clone of this checkout has (tracked, and new ones not ignored): no compiled
    programs, no virtual environment."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel built from a clean tree (through its sdist, as ``python -m build`` does), and
    a new virtual environment (no system site-packages) with it installed."""
    work = tmp_path_factory.mktemp("package")
    tree = _clean_tree(work / "tree")
    dist = work / "dist"
    made = _run([sys.executable, "-m", "build", "--outdir", str(dist), str(tree)])
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    wheel = next(dist.glob("*.whl"))
    venv = work / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    created = _run([base, "-m", "venv", str(venv)])
    assert created.returncode == 0, created.stderr
    # with the service's extra: what `aiobpf serve` needs, as a user would install it
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    installed = _run([*pip, f"{wheel}[service]"])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return wheel, venv


def test_the_wheel_holds_every_program_for_this_architecture_and_any_python(
    built: tuple[Path, Path],
) -> None:
    """One wheel for every Python 3 on this architecture, with every CO-RE object inside (the
    wheel `pip install .` made held none) and the machine they were built for."""
    wheel, _ = built
    assert wheel.name.endswith(f"-py3-none-linux_{os.uname().machine}.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        built_for = archive.read("aiobpf/programs/BUILT_FOR").decode().strip()
    assert {f"aiobpf/programs/{name}.bpf.o" for name in PREBUILT} <= names
    assert built_for == os.uname().machine
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)


def test_the_installed_package_says_its_version(built: tuple[Path, Path]) -> None:
    """`aiobpf --version` and `aiobpf.__version__` give the wheel's version."""
    wheel, venv = built
    version = wheel.name.split("-")[1]
    said = _run([str(venv / "bin/aiobpf"), "--version"])
    assert (said.returncode, said.stdout) == (0, f"aiobpf {version}\n")
    imported = _run([str(venv / "bin/python"), "-c", "import aiobpf; print(aiobpf.__version__)"])
    assert imported.stdout == f"{version}\n"


FIND_BCC = "from aiobpf._kernel.bcc import import_bcc; print(import_bcc().__file__)"


def test_a_virtual_environment_finds_debians_bcc_for_your_own_programs(
    built: tuple[Path, Path],
) -> None:
    """BCC is not on PyPI: a virtual environment without system packages cannot import it,
    and aiobpf finds Debian's python3-bpfcc for users' own BCC programs all the same."""
    if not (Path("/usr/lib/python3/dist-packages/bcc/__init__.py")).is_file():
        pytest.skip("Debian's python3-bpfcc is not installed: scripts/setup.sh installs it")
    _, venv = built
    python = str(venv / "bin/python")
    assert _run([python, "-c", "import bcc"]).returncode != 0
    found = _run([python, "-c", FIND_BCC])
    assert found.stdout == "/usr/lib/python3/dist-packages/bcc/__init__.py\n", found.stderr


EXACT_EVENT = """
import json, subprocess, sys
import anyio, aiobpf

async def main(uid, program):
    async with aiobpf.execve_events() | aiobpf.filter_uid(uid) as events:
        setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", program]
        child = subprocess.Popen(setpriv)
        child.wait()
        async for event in events:
            if event.filename == program:
                print(json.dumps([event.pid, event.uid, event.comm, event.filename]))
                return

anyio.run(main, int(sys.argv[1]), sys.argv[2])
"""

NO_TOOLCHAIN = """
import subprocess, sys
from aiobpf.errors import BccMissingError
from aiobpf._kernel.bcc import import_bcc
for tool in ("clang", "bpftool"):
    try:
        subprocess.run([tool, "--version"], capture_output=True, check=True)
        sys.exit(f"{tool} runs")
    except (OSError, subprocess.CalledProcessError):
        pass
try:
    import_bcc()
    sys.exit("bcc imports")
except BccMissingError as exc:
    print(exc)
"""


@pytest.mark.usefixtures("bpf")
def test_the_installed_tools_run_with_no_compiler_bcc_or_headers(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """In a private mount namespace with clang, LLVM, bpftool, BCC's module, and the kernel's
    and C library's headers hidden: nothing of the toolchain runs and BCC cannot be found
    (said in one line, with the package to install), yet execve_events() from the installed
    wheel gives the exact pid, uid, comm and filename of a fresh uid's program, and `aiobpf
    execsnoop --json` reports it."""
    _, venv = built
    python = str(venv / "bin/python")
    program = kernel.uniquely_named_program(tmp_path, "wheel-exec")
    tmp_path.chmod(0o755)

    hidden = _run(_hiding(HIDDEN, [python, "-c", NO_TOOLCHAIN]), cwd=tmp_path)
    assert hidden.returncode == 0, hidden.stdout + hidden.stderr
    assert "apt-get install python3-bpfcc" in hidden.stdout

    api = _run(_hiding(HIDDEN, [python, "-c", EXACT_EVENT, str(UID), str(program)]), cwd=tmp_path)
    assert api.returncode == 0, api.stderr[-3000:]
    pid, uid, comm, filename = json.loads(api.stdout)
    assert (uid, comm, filename) == (UID, "wheel-exec", str(program))
    assert pid > 0

    snoop = [str(venv / "bin/aiobpf"), "execsnoop", "--json", "--uid", str(UID)]
    with subprocess.Popen(
        _hiding(HIDDEN, [*snoop, "--max-latency", "0.01"]),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as tracer:
        assert tracer.stdout is not None
        assert tracer.stderr is not None
        said = tracer.stderr.readline()
        assert said == "aiobpf execsnoop: tracing execve and execveat\n", (
            said + tracer.stderr.read()
        )
        child = subprocess.Popen(kernel.setpriv_command(UID, program))
        child.wait()
        line = json.loads(tracer.stdout.readline())
        tracer.send_signal(signal.SIGINT)
        summary = json.loads(tracer.stdout.readline())
        assert tracer.wait(timeout=60) == 0
    assert (line["pid"], line["uid"], line["comm"]) == (child.pid, UID, "wheel-exec")
    assert summary == {"schema": 1, "type": "summary", "seen": 1, "lost": 0}


def _library_path(name: str) -> Path:
    """Where the dynamic loader finds library ``name`` (ldconfig's cache)."""
    for line in _run(["/sbin/ldconfig", "-p"]).stdout.splitlines():
        library, _, path = line.partition(" => ")
        if path and library.split()[0] == name:
            return Path(path)
    raise AssertionError(f"{name} is not installed")


@pytest.mark.usefixtures("bpf")
def test_the_installed_service_serves_with_no_compiler_bcc_or_headers(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """`aiobpf serve` from the wheel (with its service extra), toolchain, BCC and headers
    hidden: it attaches and listens, /top answers over its socket, and SIGINT ends it with
    status 0."""
    _, venv = built
    socket_path = tmp_path / "aiobpf.sock"
    serve = [str(venv / "bin/aiobpf"), "serve", "--socket", str(socket_path)]
    with subprocess.Popen(
        _hiding(HIDDEN, serve),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as server:
        assert server.stdout is not None
        assert server.stderr is not None
        said = server.stdout.readline()
        assert said.startswith(f"serving on unix:{socket_path}"), said + server.stderr.read()
        curl = ["curl", "-sS", "--unix-socket", str(socket_path), "http://localhost/top"]
        top = json.loads(_run(curl).stdout)
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
    assert isinstance(top["counts"], dict)


@pytest.mark.usefixtures("bpf")
def test_without_libbpf_a_tool_says_which_package_in_one_line(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """libbpf.so.1 hidden as well: `aiobpf execsnoop` exits 1 with one line naming the
    package that brings it, and no traceback."""
    _, venv = built
    library = _library_path("libbpf.so.1")
    command = [str(venv / "bin/aiobpf"), "execsnoop", "--duration", "1"]
    started = time.monotonic()
    result = _run(_hiding([*HIDDEN, str(library)], command), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "apt-get install libbpf1" in result.stderr
    assert result.stderr.startswith("aiobpf execsnoop: ")
    assert time.monotonic() - started < 60


@pytest.mark.usefixtures("bpf")
def test_doctor_from_the_wheel_tells_what_this_host_lacks(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """The installed `aiobpf doctor --json`, with the toolchain hidden: ready (the tools need
    none of it), BCC and the kernel headers found missing with their remedies; with libbpf
    hidden too, not ready (exit 1), libbpf's check failed naming libbpf1."""
    _, venv = built
    doctor = [str(venv / "bin/aiobpf"), "doctor", "--json"]
    result = _run(_hiding(HIDDEN, doctor), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["aiobpf's programs"]["ok"]
    assert not checks["BCC"]["ok"]
    assert "apt-get install python3-bpfcc" in checks["BCC"]["remedy"]
    assert not checks["kernel headers"]["ok"]

    library = _library_path("libbpf.so.1")
    result = _run(_hiding([*HIDDEN, str(library)], doctor), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    failed = [check for check in report["checks"] if check["needed"] and not check["ok"]]
    assert [check["name"] for check in failed] == ["libbpf"]
    assert "apt-get install libbpf1" in failed[0]["remedy"]
