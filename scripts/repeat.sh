#!/usr/bin/env bash
# Runs test modules many times in a row, to show a test's promise does not depend on the
# scheduler: `scripts/repeat.sh [--stress] RUNS tests/test_x.py ...` (RUNS whole runs of the
# given modules, each on asyncio, uvloop and trio as the tests are parametrised). With --stress,
# `stress-ng --cpu 2` runs beside them for the whole time. Prints one line per run and the
# counts at the end; exits 1 if any run failed. Logs of failed runs are kept in $LOGS (/tmp).
# PYTHON names the interpreter (.venv/bin/python); run from a separate clone with
# PYTHONPATH=<clone>/src to test a commit while the working tree changes.
set -uo pipefail
cd "$(dirname "$0")/.."
stress=0
if [ "${1:-}" = --stress ]; then stress=1; shift; fi
runs="${1:?usage: scripts/repeat.sh [--stress] RUNS MODULE...}"; shift
logs="${LOGS:-$(mktemp -d /tmp/aiobpf-repeat.XXXXXX)}"
mkdir -p "$logs"
if [ "$stress" -eq 1 ]; then
    stress-ng --cpu 2 --timeout 0 >/dev/null 2>&1 &
    stressor=$!
    trap 'kill "$stressor" 2>/dev/null; wait "$stressor" 2>/dev/null' EXIT
fi
passed=0 failed=0
for run in $(seq "$runs"); do
    log="$logs/run-$run.log"
    if AIOBPF_REQUIRE_KERNEL=1 "${PYTHON:-.venv/bin/python}" -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1; then
        passed=$((passed + 1)); summary="$(tail -n 1 "$log")"; rm -f "$log"
    else
        failed=$((failed + 1)); summary="$(tail -n 1 "$log") (log: $log)"
    fi
    printf 'run %d: %s\n' "$run" "$summary"
done
printf '%d runs passed, %d failed (stress: %s, modules: %s)\n' "$passed" "$failed" \
    "$([ "$stress" -eq 1 ] && echo 'stress-ng --cpu 2' || echo none)" "$*"
[ "$failed" -eq 0 ]
