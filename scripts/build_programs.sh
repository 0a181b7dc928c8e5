#!/usr/bin/env bash
# Compiles aiobpf's CO-RE programs (aiobpf.programs._text.PREBUILT) into
# src/aiobpf/programs/<name>.bpf.o, once, with clang against the running kernel's BTF: libbpf
# then loads them on this kernel or another with BTF, with no BCC, clang or kernel headers.
# Rebuilds an object only when its C, aiobpf.h, the shared constants or the list are newer. Needs clang
# and bpftool (scripts/setup.sh installs both) and the venv (for the shared constants).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
programs="$here/src/aiobpf/programs"
build="$here/build/bpf"
say() { printf 'build_programs: %s\n' "$*" >&2; }

for tool in clang bpftool; do
    command -v "$tool" >/dev/null || { say "$tool is missing: run scripts/setup.sh"; exit 1; }
done
btf=/sys/kernel/btf/vmlinux
[ -r "$btf" ] || { say "no kernel BTF at $btf: CO-RE needs a kernel built with CONFIG_DEBUG_INFO_BTF"; exit 1; }

mkdir -p "$build"
if [ ! -s "$build/vmlinux.h" ] || [ "$btf" -nt "$build/vmlinux.h" ]; then
    say "vmlinux.h from $btf"
    bpftool btf dump file "$btf" format c > "$build/vmlinux.h.tmp"
    mv "$build/vmlinux.h.tmp" "$build/vmlinux.h"
fi

case "$(uname -m)" in
    x86_64) arch=x86 ;;
    aarch64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
esac
read -r -a flags <<< "$("$python" -c 'from aiobpf.programs._constants import shared_flags; print(" ".join(shared_flags()))')"
# one line per object: its name, its source's name, its own flags
"$python" -c 'from aiobpf.programs._text import PREBUILT
for name, (source, extra) in PREBUILT.items(): print(name, source, *extra)' |
while read -r name source_name extra; do
    source="$programs/$source_name.bpf.c"
    object="$programs/$name.bpf.o"
    if [ -f "$object" ] && [ "$object" -nt "$source" ] && [ "$object" -nt "$programs/aiobpf.h" ] \
        && [ "$object" -nt "$programs/_constants.py" ] && [ "$object" -nt "$programs/_text.py" ]; then
        continue
    fi
    say "clang $source_name.bpf.c -> $name.bpf.o"
    # shellcheck disable=SC2086 # the object's own flags, split on purpose
    clang -g -O2 -target bpf "-D__TARGET_ARCH_$arch" -I"$build" -I"$programs" "${flags[@]}" \
        $extra -c "$source" -o "$build/$name.o"
    # linked by bpftool: the BTF and CO-RE relocations stay, the DWARF goes (a tenth the size)
    bpftool gen object "$build/$name.linked.o" "$build/$name.o"
    mv "$build/$name.linked.o" "$object"
done
