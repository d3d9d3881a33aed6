#!/usr/bin/env bash
# The gate: what `make check` runs, and what a fork's CI runs unchanged.
#
#   ci/gate.sh                 every stage
#   ci/gate.sh --quick         build, unit, conformance, guard (a few minutes)
#   ci/gate.sh --stage NAME    one stage (repeatable); --list shows them
#
# Each stage is a make target; its output goes to build/reports/<stage>.log and
# the last lines of a failing stage are shown here. At the end: one summary
# table, build/reports/summary.json, build/reports/gate.xml (JUnit, one case
# per stage) beside each stage's own JUnit XML, and index.html linking them all
# (ci/report-index.sh). Exit status: non-zero if any
# stage failed. Make variables (SERVER=, LIB=...) pass through: MAKEFLAGS.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# name | make target(s) | JUnit | what it proves
# JUnit "tests": the stage writes build/reports/<name>*.xml and the gate fails
# it, whatever make's exit status, when those files count 0 test cases or any
# failure, error or skip (a stage that ran no test has proved nothing). "-": none.
STAGES=(
  "build|all werror|-|release build; every C file warning-free under gcc and clang -Werror"
  "unit|unit|tests|unit tests under clang ASan+UBSan, leaks fatal"
  "conformance|conformance|tests|socket scenarios against the ASan test server"
  "conf-mutants|conformance-mutants|tests|control run, then each seed fault put back into lib/ must fail the scenarios named for it"
  "stress|stress-quick|tests|slow readers, fanout, churn, fault injection against the ASan server"
  "guard|guard-test|-|nbguard.so stops a blocking write and passes non-blocking ones"
  "install|install-check|tests|make install to a temporary DESTDIR; examples built with pkg-config (shared, static), smoke-tested"
  "abi|abi-check abi-teeth|tests|abidiff against abi/libevloop.abi.xml (docs/ABI.md); the check's own teeth"
  "fuzz|fuzz-smoke|tests|every fuzz target over its corpus plus new inputs"
  "coverage|coverage|tests|lib/ line and branch coverage (unit, conformance, fuzz corpora) at ci/coverage-floor"
  "torture|torture-quick|tests|each library call failed in turn (first indices, last, regressions): no crash, leak, stall, wrong errno"
  "lint|lint|-|cppcheck and clang-tidy, zero findings"
  "valgrind|unit-valgrind|tests|unit tests on the release build under valgrind"
)
QUICK=(build unit conformance guard)

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
want=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) want+=("${QUICK[@]}") ;;
    --stage) [ $# -ge 2 ] || usage; want+=("$2"); shift ;;
    --list) for s in "${STAGES[@]}"; do IFS='|' read -r n t j d <<<"$s"; printf '%-12s %s\n' "$n" "$d"; done; exit 0 ;;
    -h|--help) usage ;;
    *) echo "gate: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
if [ ${#want[@]} -eq 0 ]; then
  for s in "${STAGES[@]}"; do want+=("${s%%|*}"); done
fi
for w in "${want[@]}"; do
  printf '%s\n' "${STAGES[@]}" | grep -q "^$w|" || { echo "gate: no stage '$w' (see --list)" >&2; exit 2; }
done

REPORTS=build/reports
mkdir -p "$REPORTS"
MAKE=${MAKE:-make}

# Test cases a stage reported in its own JUnit files (0 when it writes none).
count_tests() {
  local n=0 f c
  for f in "$REPORTS"/"$1"*.xml; do
    [ -f "$f" ] || continue
    c=$(grep -o '<testcase ' "$f" | wc -l)
    n=$((n + c))
  done
  echo "$n"
}

# Failures, errors and skips the stage's JUnit files report (testsuite
# attributes; pytest writes one <testsuite>, cmocka one per <testsuites>). A
# skipped test proved nothing: the project's tests fail, not skip, when a
# tool is missing, so a skip here is a failure.
count_failures() {
  local n=0 f a
  for f in "$REPORTS"/"$1"*.xml; do
    [ -f "$f" ] || continue
    for a in $(grep -o '<testsuite [^>]*' "$f" | grep -oE ' (failures|errors|skipped)="[0-9]+"' | grep -oE '[0-9]+'); do
      n=$((n + a))
    done
  done
  echo "$n"
}

xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }

names=() results=() counts=() secs=()
failed=0
gate_start=$(date +%s)
for s in "${STAGES[@]}"; do
  IFS='|' read -r name targets junit desc <<<"$s"
  printf '%s\n' "${want[@]}" | grep -qx "$name" || continue
  log="$REPORTS/$name.log"
  rm -f "$REPORTS/$name"*.xml
  printf '== %-12s %s\n' "$name" "$desc"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086  # targets is a list of words
  $MAKE --no-print-directory $targets >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  ntests=$(count_tests "$name")
  why="exit $rc"
  if [ $rc -eq 0 ] && [ "$junit" = tests ]; then
    nbad=$(count_failures "$name")
    if [ "$ntests" -eq 0 ]; then
      rc=1 why="make passed but $REPORTS/$name*.xml count 0 tests"
    elif [ "$nbad" -ne 0 ]; then
      rc=1 why="make passed but $REPORTS/$name*.xml count $nbad failures/errors/skips"
    fi
    [ $rc -eq 0 ] || echo "gate: $why" >>"$log"
  fi
  if [ $rc -eq 0 ]; then res=PASS; else res=FAIL; failed=$((failed + 1)); fi
  names+=("$name"); results+=("$res"); counts+=("$ntests"); secs+=("$dt")
  if [ $rc -ne 0 ]; then
    echo "-- $name failed ($why); last lines of $log:"
    tail -n 40 "$log" | sed 's/^/   | /'
  fi
done
total=$(( $(date +%s) - gate_start ))

echo
printf '%-12s %-6s %7s %9s\n' stage result tests seconds
printf '%-12s %-6s %7s %9s\n' ------------ ------ ------- ---------
for i in "${!names[@]}"; do
  printf '%-12s %-6s %7s %9s\n' "${names[$i]}" "${results[$i]}" "${counts[$i]}" "${secs[$i]}"
done

{
  printf '{\n  "total_seconds": %s,\n  "failed": %s,\n  "stages": [\n' "$total" "$failed"
  for i in "${!names[@]}"; do
    sep=','; [ "$i" -eq $((${#names[@]} - 1)) ] && sep=''
    printf '    {"stage": "%s", "result": "%s", "tests": %s, "seconds": %s}%s\n' \
      "${names[$i]}" "${results[$i]}" "${counts[$i]}" "${secs[$i]}" "$sep"
  done
  printf '  ]\n}\n'
} >"$REPORTS/summary.json"

{
  printf '<?xml version="1.0" encoding="UTF-8"?>\n'
  printf '<testsuite name="gate" tests="%d" failures="%d" time="%s">\n' "${#names[@]}" "$failed" "$total"
  for i in "${!names[@]}"; do
    printf '  <testcase classname="gate" name="%s" time="%s">' "${names[$i]}" "${secs[$i]}"
    if [ "${results[$i]}" = FAIL ]; then
      printf '<failure message="stage failed">'
      tail -n 40 "$REPORTS/${names[$i]}.log" | xml_escape
      printf '</failure>'
    fi
    printf '</testcase>\n'
  done
  printf '</testsuite>\n'
} >"$REPORTS/gate.xml"

# One page linking every report (build/reports/index.html); a broken link is
# reported here but does not change the gate's verdict.
ci/report-index.sh "$REPORTS" >/dev/null || echo "gate: $REPORTS/index.html has problems (above)" >&2

passed=$(( ${#names[@]} - failed ))
echo
echo "gate: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
