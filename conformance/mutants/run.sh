#!/usr/bin/env bash
# Proves the conformance suite has teeth: each conformance/mutants/*.patch puts
# one fault back into a copy of the library (lib/ itself carries no fault
# switches), the test server is rebuilt on it, and the suite must fail.
#
# A patch names the scenarios expected to catch it on a line
#   # catches: test_a test_b
# Those run first (fast); only if none fails does the whole suite run.
# Prints a table mutant -> scenarios that caught it; exits 1 if any mutant
# survived or did not build.
#   usage: conformance/mutants/run.sh [mutant-name...]
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 2
PYTHON=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/evl-mutants.XXXXXX)
trap 'rm -rf "$work"' EXIT

patches=()
if [ $# -gt 0 ]; then
  for m in "$@"; do patches+=("conformance/mutants/$m.patch"); done
else
  patches=(conformance/mutants/*.patch)
fi

mkdir -p build/reports
report=build/reports/mutants.txt
: >"$report"
survived=0
printf '%-28s %-8s %s\n' mutant result "caught by" | tee -a "$report"
printf '%-28s %-8s %s\n' ---------------------------- -------- --------- | tee -a "$report"
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  tree="$work/$name"
  mkdir -p "$tree"
  # Only what the server build needs: sources and the Makefile fragments.
  tar -C "$top" --exclude=./build --exclude=./.git -cf - . | tar -C "$tree" -xf -
  if ! patch -s -p1 -d "$tree" <"$p" >"$work/$name.patch.log" 2>&1; then
    printf '%-28s %-8s %s\n' "$name" NOAPPLY "$(head -c 200 "$work/$name.patch.log" | tr '\n' ' ')" | tee -a "$report"
    survived=$((survived + 1)); continue
  fi
  if ! make -s -C "$tree" build/asan/evl-testsrv >"$work/$name.build.log" 2>&1; then
    printf '%-28s %-8s %s\n' "$name" NOBUILD "see $work/$name.build.log" | tee -a "$report"
    tail -n 20 "$work/$name.build.log"
    survived=$((survived + 1)); continue
  fi
  server="$tree/build/asan/evl-testsrv"
  targets=$(sed -n 's/^# catches: *//p' "$p" | tr -s ' ' '\n' | grep . | paste -sd'|' | sed 's/|/ or /g')
  caught=""
  run_suite() { # $@: extra pytest args; sets caught to the failed test names
    SERVER="$server" timeout 900 "$PYTHON" -m pytest -q -p no:cacheprovider -rfE "$@" conformance \
      >"$work/$name.pytest.log" 2>&1
    caught=$(grep -E '^(FAILED|ERROR) ' "$work/$name.pytest.log" | sed -E 's/^(FAILED|ERROR) [^:]*::([^ ]*).*/\2/' | sort -u | paste -sd' ')
  }
  [ -n "$targets" ] && run_suite -k "$targets"
  [ -z "$caught" ] && run_suite
  if [ -n "$caught" ]; then
    printf '%-28s %-8s %s\n' "$name" caught "$caught" | tee -a "$report"
  else
    printf '%-28s %-8s %s\n' "$name" SURVIVED "-" | tee -a "$report"
    survived=$((survived + 1))
  fi
done
echo
if [ "$survived" -eq 0 ]; then
  echo "mutants: ${#patches[@]} passed, 0 failed (every mutant was caught)"
else
  echo "mutants: $(( ${#patches[@]} - survived )) passed, $survived failed"
  exit 1
fi
