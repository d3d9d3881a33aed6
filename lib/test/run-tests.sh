#!/usr/bin/env bash
# Runs the unit test programs one after the other and prints one table:
#
#   lib/test/run-tests.sh --name unit --reports build/reports [--timeout S]
#                         [--wrapper "valgrind ..."] PROGRAM...
#
# Each program runs under `timeout S` (a hang is a failure, never a stuck
# gate) with cmocka's JUnit output in REPORTS/NAME-<group>.xml; its stdout and
# stderr go to REPORTS/NAME-<program>.log. A program fails if it exits non-zero
# (a failed test, a sanitizer or valgrind error, a crash, the timeout), or if
# its JUnit XML is missing, counts no test, counts a failure, error or skip,
# or holds fewer <testcase>s than it claims: a program that ran nothing fails,
# whatever its exit status. The run fails if any program does. Failing tests
# are listed with cmocka's message; a program that died before writing its
# XML gets its log's tail.
#
# TU_FILTER (see testutil.h) selects tests by hand; a run of this script is a
# gate over every test, so a TU_FILTER in the environment is refused (exit 2)
# rather than allowed to filter the gate down to nothing.
set -uo pipefail

if [ -n "${TU_FILTER+set}" ]; then
  echo "run-tests.sh: TU_FILTER is set ('${TU_FILTER}'): this runs every test; unset it" \
       "(run one program by hand to filter)" >&2
  exit 2
fi

name=unit reports=build/reports timeout_s=120 wrapper=""
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --reports) reports=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --wrapper) wrapper=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "run-tests.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "run-tests.sh: no programs" >&2; exit 2; }
mkdir -p "$reports"

# attr FILE NAME: the first testsuite's attribute NAME (cmocka writes one).
attr() { grep -o "<testsuite [^>]*" "$1" | head -1 | grep -o " $2=\"[0-9]*\"" | grep -o '[0-9]\+'; }

# The failing test cases of a cmocka JUnit file, with their first message line.
failures() {
  awk '
    /<testcase / { match($0, /name="[^"]*"/); tc = substr($0, RSTART + 6, RLENGTH - 7) }
    /<failure/ || /<error/ { inf = 1; msg = "" }
    inf { line = $0; gsub(/.*CDATA\[/, "", line); gsub(/\]\]>.*/, "", line);
          gsub(/<\/?(failure|error)[^>]*>/, "", line); gsub(/^[ \t]+/, "", line);
          if (msg == "" && line != "") msg = line }
    /<\/failure>/ || /<\/error>/ || (inf && /\/>/) { printf "      %-52s %s\n", tc, msg; inf = 0 }
  ' "$1"
}

total=0 failed_tests=0 failed_progs=()
printf '%-16s %6s %6s %8s  %s\n' program tests failed seconds result
for prog in "$@"; do
  base=$(basename "$prog")
  xml="$reports/$name-$base.xml"
  log="$reports/$name-$base.log"
  # cmocka appends to an existing file when the name holds %g: start clean
  rm -f "$xml"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086  # the wrapper is a command line
  CMOCKA_MESSAGE_OUTPUT=xml CMOCKA_XML_FILE="$reports/$name-%g.xml" \
    timeout -k 5 "$timeout_s" $wrapper "$prog" >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  tests=- nfail=- skipped=0 cases=0
  if [ -s "$xml" ]; then
    tests=$(attr "$xml" tests); tests=${tests:-0}
    f=$(attr "$xml" failures); e=$(attr "$xml" errors)
    skipped=$(attr "$xml" skipped); skipped=${skipped:-0}
    nfail=$(( ${f:-0} + ${e:-0} ))
    cases=$(grep -c '<testcase ' "$xml")
    total=$((total + tests))
    failed_tests=$((failed_tests + nfail))
  fi
  # The exit status alone is not trusted: the XML must show tests that ran.
  if [ $rc -eq 0 ]; then
    if [ ! -s "$xml" ]; then
      res="FAIL (exit 0 but no JUnit XML $xml)"; rc=1
    elif [ "$tests" -eq 0 ]; then
      res="FAIL (exit 0 but 0 tests ran)"; rc=1
    elif [ "$nfail" != 0 ]; then
      res="FAIL (exit 0 but the XML counts $nfail failures/errors)"; rc=1
    elif [ "$skipped" != 0 ]; then
      res="FAIL ($skipped tests skipped)"; rc=1
    elif [ "$cases" -ne "$tests" ]; then
      res="FAIL (the XML claims $tests tests but holds $cases)"; rc=1
    else
      res=PASS
    fi
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    res="FAIL (timeout after ${timeout_s}s)"
  elif [ $rc -gt 128 ]; then
    res="FAIL (killed by signal $((rc - 128)))"
  elif [ "$nfail" = 0 ]; then
    res="FAIL (exit $rc with every test passed: a sanitizer/valgrind error, see $log)"
  else
    res="FAIL (exit $rc)"
  fi
  printf '%-16s %6s %6s %8s  %s\n' "$base" "$tests" "$nfail" "$dt" "$res"
  if [ $rc -ne 0 ]; then
    failed_progs+=("$base")
    [ -s "$xml" ] && failures "$xml"
    if [ ! -s "$xml" ] || [ "$nfail" = 0 ]; then
      echo "      --- last lines of $log ---"
      tail -n 25 "$log" | sed 's/^/      /'
    fi
  fi
done

if [ ${#failed_progs[@]} -eq 0 ]; then
  echo "$name: PASS ($total tests in $# programs)"
  exit 0
fi
echo "$name: FAIL ($failed_tests of $total tests failed; failing programs: ${failed_progs[*]})"
exit 1
