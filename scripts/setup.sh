#!/usr/bin/env bash
# Prepares this machine for aiobpf, idempotently: Debian packages (BCC, kernel headers, libbpf,
# clang, bpftool), tracefs/debugfs mounts, a virtual environment in .venv that can import the
# system `bcc`, and aiobpf's CO-RE programs compiled into src/aiobpf/programs/*.bpf.o.
# Run as root (BPF needs it). Safe to run again: each step checks before it acts.
# Kernel headers (for BCC, which compiles against them) are set up only when asked for:
# `setup.sh bcc` for BCC programs (your own, and the test suite's load generator); aiobpf's
# prebuilt programs need none. `setup.sh test` does both, and also installs what only the tests
# need: Debian's chromium (the dashboard), bpftrace and stress-ng (independent references for
# exec tracing), nats-server (the stream engine the fleet sink publishes to) and libbpf-tools
# (the C tools the process tools are compared with).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv"
kernel="$(uname -r)"
say() { printf 'setup: %s\n' "$*" >&2; }
warn() { printf 'setup: WARNING: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (BPF programs need CAP_BPF and CAP_PERFMON); try: sudo $0"
    exit 1
fi

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# 1. BCC's Python module and libbpf (used to read kernel BTF and maps).
missing=()
# libbpf-dev builds the benchmarks' C ring consumer, the floor aiobpf is compared against, and
# gives the CO-RE programs libbpf's BPF headers; clang and bpftool compile those programs once,
# here (scripts/build_programs.sh), so that running them needs neither.
for pkg in python3-bpfcc libbpf1 libbpf-dev util-linux clang bpftool; do
    installed "$pkg" || missing+=("$pkg")
done
mode="${1:-}"
case "$mode" in
    ""|bcc|test) ;;
    *) say "usage: $0 [bcc|test]"; exit 2 ;;
esac
if [ "$mode" = test ]; then
    # chromium checks the dashboard; bpftrace and stress-ng are references exec tracing is
    # checked against; stress-ng also loads the machine in scripts/repeat.sh --stress;
    # nats-server is the stream engine the fleet tests publish to; libbpf-tools' C tools
    # (exitsnoop, execsnoop, ...) are the CO-RE references the process tools are checked against
    for pkg in chromium bpftrace stress-ng nats-server libbpf-tools; do
        installed "$pkg" || missing+=("$pkg")
    done
fi
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"

# 2. Kernel headers where BCC looks for them: /lib/modules/$(uname -r)/{build,source}; only for
#    BCC programs (asked for with `bcc` or `test`).
modules="/lib/modules/$kernel"
if [ "$mode" = "" ]; then
    say "kernel headers: not needed by aiobpf's prebuilt programs, left as they are"
    say "(BCC programs, yours and the test suite's load generator, need them: $0 bcc)"
elif [ ! -e "$modules/build/include/linux/kconfig.h" ] && [ ! -e "$modules/build/include/generated/autoconf.h" ]; then
    if [ "$apt_updated" -eq 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null; apt_updated=1; fi
    if apt-cache show "linux-headers-$kernel" >/dev/null 2>&1; then
        apt_install "linux-headers-$kernel"
    else
        arch="$(dpkg --print-architecture)"
        installed "linux-headers-$arch" || apt_install "linux-headers-$arch"
        build="$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)"
        common="${build%-"$arch"}-common"
        if [ -z "$build" ] || [ ! -d "$common" ]; then
            say "no kernel headers found under /usr/src after installing linux-headers-$arch"
            exit 1
        fi
        warn "no headers package matches kernel $kernel; linking the distribution's $(basename "$build")."
        warn "BCC programs that read kernel structs must not rely on these offsets (aiobpf reads them from BTF)."
        created=""
        [ -d "$modules" ] || created="; rmdir $modules"
        mkdir -p "$modules"
        ln -sfn "$build" "$modules/build"
        ln -sfn "$common" "$modules/source"
        say "linked $modules/build -> $build and $modules/source -> $common"
        say "this changes what DKMS and other builds for kernel $kernel see; to undo: rm $modules/build $modules/source$created"
    fi
fi

# 3. tracefs and debugfs (BCC looks for tracepoint formats under either).
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing \
    || { say "cannot mount tracefs at /sys/kernel/tracing"; exit 1; }
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug \
    || warn "cannot mount debugfs at /sys/kernel/debug (tracefs is enough for aiobpf)"

# 4. The virtual environment, with the system bcc module exposed and nothing else from dist-packages.
python="${PYTHON:-python3}"
# a bare Debian's python3 has no venv module (nor ensurepip) until python3-venv is installed
"$python" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$python" -m venv "$venv"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
bcc_dir="$(dirname "$(dpkg -L python3-bpfcc | grep -m1 '/bcc/__init__.py$')")"
mkdir -p "$venv/system-bcc"
ln -sfn "$bcc_dir" "$venv/system-bcc/bcc"
echo "$venv/system-bcc" > "$site/aiobpf-system-bcc.pth"

stamp="$venv/.aiobpf-installed"
want="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing aiobpf and its development tools into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[dev]"
    echo "$want" > "$stamp"
fi

"$venv/bin/python" -c 'import bcc, aiobpf' || { say "the venv cannot import bcc and aiobpf"; exit 1; }

# 5. aiobpf's CO-RE programs, compiled once against the kernel's BTF.
PYTHON="$venv/bin/python" "$here/scripts/build_programs.sh"
say "ready"
