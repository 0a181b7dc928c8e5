#!/usr/bin/env bash
# Compiles aiobpf's CO-RE programs (aiobpf/programs/_build.py: PREBUILT) into
# src/aiobpf/programs/<name>.bpf.o for a checkout, as the wheel's build does for an install: clang
# against the running kernel's BTF, once; libbpf then loads them on this kernel or another with
# BTF, with no BCC, clang or kernel headers. Rebuilds an object only when what it is made from is
# newer. Needs clang and bpftool (scripts/setup.sh installs both); runs _build.py by path, with
# any python3, importing nothing of aiobpf's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
exec "$python" "$here/src/aiobpf/programs/_build.py" "$here/src/aiobpf/programs" "$here/build/bpf"
