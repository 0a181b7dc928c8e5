#!/usr/bin/env bash
# The README's demo: `aiobpf execsnoop` for 10 seconds (AIOBPF_DEMO_SECONDS), showing every
# execve on the machine. Once it is tracing (its header line is printed after the programs are
# attached) the demo runs a few commands of its own, so that a quiet machine shows events too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${AIOBPF_DEMO_SECONDS:-10}"

coproc snoop { "$here/.venv/bin/aiobpf" execsnoop --duration "$seconds" 2>&1; }
snoop_pid=$snoop_PID  # bash unsets snoop_PID when the tool exits
while IFS= read -r line <&"${snoop[0]}"; do
    printf '%s\n' "$line"
    [[ $line == TIME* ]] && break
done
for command in uname id hostname; do
    "$command" >/dev/null
done
cat <&"${snoop[0]}"
wait "$snoop_pid"
