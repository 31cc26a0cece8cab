#!/usr/bin/env bash
# Run every check CI runs, in order, and print one summary line. Needs scripts/install.sh first.
#
#   bash scripts/test.sh          # lint, types, unit tests, then integration + e2e (as root),
#                                 # then the v2 set in a cgroup v2 + systemd guest (vm-test.sh)
#
# CORRAL_SKIP_VM=1 leaves the guest out (a local run; the summary says so). CI runs it.
#
# Every step runs even when an earlier one failed, so one run shows everything that is wrong.
# pytest's exit status 5 ("no tests collected") is fine for one step (tests/e2e may be empty
# for a while) but not for the whole run: if no step ran a single test, the run fails.
#
# A test of something the host lacks (a cgroup file such as blkio.bfq.weight, swap accounting)
# checks the runtime's error or skips with a reason (tests/helpers/host.py). Before the summary
# the run prints how many tests were skipped, grouped by reason, from pytest's junit reports.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"
BIN="$REPO/.venv/bin"
[[ -x $BIN/pytest ]] || { echo "test.sh: $BIN/pytest is missing: run scripts/install.sh" >&2; exit 1; }

# Time limits (seconds): the whole run must stay far below CI's 30 minutes.
UNIT_LIMIT=300
SYSTEM_LIMIT=1200
VM_LIMIT=1080  # the guest image's build (first run only) and the v2 set under emulation

results=()
failed=0
tests_ran=0
REPORTS=$(mktemp -d)
trap 'rm -rf "$REPORTS"' EXIT

step() {  # NAME COMMAND...
  local name=$1 start rc=0
  shift
  printf '\n=== %s: %s\n' "$name" "$*"
  start=$SECONDS
  "$@" || rc=$?
  local took=$((SECONDS - start))
  if [[ $rc -eq 0 ]]; then
    results+=("$name ok (${took}s)")
  else
    results+=("$name FAILED rc=$rc (${took}s)")
    failed=1
  fi
}

pytest_step() {  # NAME LIMIT PYTEST-ARGS...
  local name=$1 limit=$2 start rc=0
  shift 2
  printf '\n=== %s: pytest %s\n' "$name" "$*"
  start=$SECONDS
  timeout --kill-after=30 "$limit" "$BIN/pytest" -q --junitxml="$REPORTS/$name.xml" "$@" || rc=$?
  local took=$((SECONDS - start))
  case $rc in
    0) results+=("$name ok (${took}s)"); tests_ran=1 ;;
    5) results+=("$name: no tests (${took}s)") ;;
    124|137) results+=("$name TIMED OUT after ${limit}s"); failed=1 ;;
    *) results+=("$name FAILED rc=$rc (${took}s)"); failed=1; tests_ran=1 ;;
  esac
}

step shellcheck shellcheck scripts/*.sh .ci/run
step ruff "$BIN/ruff" check src tests
step mypy "$BIN/mypy"
pytest_step unit "$UNIT_LIMIT" tests/unit
system_dirs=()
for dir in tests/integration tests/e2e; do
  [[ -d $dir ]] && system_dirs+=("$dir")  # git does not keep empty directories
done
if [[ ${#system_dirs[@]} -gt 0 ]]; then
  pytest_step integration+e2e "$SYSTEM_LIMIT" "${system_dirs[@]}"
else
  results+=("integration+e2e: no tests")
fi

# The same code on a pure cgroup v2 host with systemd as PID 1: scripts/vm-test.sh boots a
# Debian 12 guest and runs the v2 set in it (docs/testing.md, "The v2 lane").
if [[ ${CORRAL_SKIP_VM:-0} == 1 ]]; then
  results+=("v2-guest skipped (CORRAL_SKIP_VM=1)")
else
  printf '\n=== v2-guest: bash scripts/vm-test.sh\n'
  vm_start=$SECONDS
  vm_rc=0
  CORRAL_VM_JUNIT="$REPORTS/v2-guest.xml" timeout --kill-after=30 "$VM_LIMIT" \
    bash scripts/vm-test.sh || vm_rc=$?
  vm_took=$((SECONDS - vm_start))
  case $vm_rc in
    0) results+=("v2-guest ok (${vm_took}s)"); tests_ran=1 ;;
    124|137) results+=("v2-guest TIMED OUT after ${VM_LIMIT}s"); failed=1 ;;
    *) results+=("v2-guest FAILED rc=$vm_rc (${vm_took}s)"); failed=1 ;;
  esac
fi

# "N reason" per distinct skip reason, most frequent first; xfails are counted apart.
skip_reasons() {
  "$BIN/python3" - "$REPORTS" <<'PY'
import collections, pathlib, sys, xml.etree.ElementTree as ET
reasons = collections.Counter()
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.xml")):
    try:
        tree = ET.parse(path)
    except ET.ParseError:  # a step killed by its time limit may leave half a file
        continue
    for skip in tree.iter("skipped"):
        reason = " ".join((skip.get("message") or "no reason given").split())
        if path.stem == "v2-guest":
            reason = "(v2 guest) " + reason
        if skip.get("type") == "pytest.xfail":
            reason = "xfail: " + reason
        reasons[reason] += 1
for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
    print(count, reason)
PY
}

skipped=0
reasons=$(skip_reasons) || reasons="? the junit reports could not be read"
if [[ -n $reasons ]]; then
  printf '\n=== skipped, by reason:\n'
  while read -r count reason; do
    printf '%5s  %s\n' "$count" "$reason"
    [[ $count =~ ^[0-9]+$ && $reason != xfail:* ]] && skipped=$((skipped + count))
  done <<<"$reasons"
fi
results+=("$skipped skipped")

if [[ $tests_ran -eq 0 ]]; then
  results+=("no tests were collected at all")
  failed=1
fi

summary=$(IFS=';'; echo "${results[*]}")
if [[ $failed -eq 0 ]]; then
  echo
  echo "test.sh: PASS: ${summary//;/, }"
else
  echo
  echo "test.sh: FAIL: ${summary//;/, }"
  exit 1
fi
