#!/usr/bin/env bash
# Runs the fuzz targets; called by fuzz/fuzz.mk (see fuzz/README.md).
#
#   fuzz/run.sh libfuzzer --time S [--jobs N] target...   make fuzz
#   fuzz/run.sh smoke     --time S [--jobs N] target...   make fuzz-smoke (the gate)
#   fuzz/run.sh afl       --time S [--jobs N] target...   make fuzz-afl
#   fuzz/run.sh ossfuzz-test --out DIR target...          make fuzz-ossfuzz-test
#
# The committed corpus fuzz/corpus/<t> is only read; new inputs go to
# build/fuzz/corpus/<t> (libfuzzer), build/fuzz/smoke/<t> (smoke, fresh each
# run) or build/afl/out/<t> (afl). Crashes go to build/fuzz/crashes/<t>/.
# Logs: build/fuzz/logs/<t>.<mode>.log. One table at the end, one line per
# target; on a failure the exact command that reproduces it. Exit 1 if any
# target failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

mode=${1:-}; shift || true
time=60 jobs=1 out=
while [ $# -gt 0 ]; do
  case "$1" in
    --time) time=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
targets=("$@")
[ ${#targets[@]} -gt 0 ] || { echo "run.sh: no targets" >&2; exit 2; }

# Known open library bugs the targets step around (fuzz/regressions/README.md).
[ -n "${FUZZ_KNOWN_LIST+x}" ] && FUZZ_KNOWN=$FUZZ_KNOWN_LIST
export FUZZ_KNOWN=${FUZZ_KNOWN:-}
envp=; [ -n "$FUZZ_KNOWN" ] && envp="FUZZ_KNOWN=$FUZZ_KNOWN "

FUZZ=build/fuzz
LOGS=$FUZZ/logs
RESULTS=$FUZZ/results
mkdir -p "$LOGS" "$RESULTS"

# max_len from fuzz/<t>.options (the OSS-Fuzz file), so every runner agrees.
max_len() { sed -n 's/^max_len *= *//p' "fuzz/$1.options" 2>/dev/null | head -1; }
# Per-execution timeout: a loop scenario is bounded to milliseconds, so a
# second-long run is a hang (a spinning loop), not slowness.
timeout_s() { sed -n 's/^timeout *= *//p' "fuzz/$1.options" 2>/dev/null | head -1; }

# libFuzzer's end-of-run numbers from a log: "execs exec/s cov ft corpus".
lf_stats() {
  local log=$1 execs eps cov ft corp
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # The last status line: "#N  DONE  cov: C ft: F corp: U/SIZE ..."
  local last
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  echo "${execs:--} ${eps:--} ${cov:--} ${ft:--} ${corp:--}"
}

# The artifact libFuzzer wrote ("Test unit written to PATH"), if any.
lf_artifact() { sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$1" | tail -1; }

# One target under libFuzzer. $1 target, $2 seconds, $3 dir for new inputs.
# Writes "status execs eps cov ft corp repro" to $RESULTS/<t>.<mode>.
run_libfuzzer() {
  local t=$1 secs=$2 newdir=$3 tag=$4
  local bin=$FUZZ/$t crashes=$FUZZ/crashes/$t log=$LOGS/$t.$tag.log
  local ml to args rc
  ml=$(max_len "$t"); to=$(timeout_s "$t")
  mkdir -p "$newdir" "$crashes" "fuzz/corpus/$t"
  args=(-max_total_time="$secs" -timeout="${to:-10}" -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$crashes/")
  [ -n "$ml" ] && args+=(-max_len="$ml")
  [ -f "fuzz/$t.dict" ] && args+=(-dict="fuzz/$t.dict")
  # New inputs land in the first dir only; the committed corpus is read.
  "$bin" "${args[@]}" "$newdir" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  finish_libfuzzer "$t" "$tag" "$log" "$rc"
}

# Every committed input once (-runs=0: load the corpus, run it, stop).
run_corpus() {
  local t=$1 tag=$2
  local bin=$FUZZ/$t log=$LOGS/$t.$tag.log crashes=$FUZZ/crashes/$t rc to
  to=$(timeout_s "$t")
  mkdir -p "$crashes" "fuzz/corpus/$t"
  "$bin" -runs=0 -timeout="${to:-10}" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  finish_libfuzzer "$t" "$tag" "$log" "$rc"
}

finish_libfuzzer() {
  local t=$1 tag=$2 log=$3 rc=$4 status=PASS repro=- art
  if [ "$rc" -ne 0 ]; then
    status=FAIL
    art=$(lf_artifact "$log")
    if [ -n "$art" ]; then repro="$envp$FUZZ/$t $art"; else repro="see $log"; fi
  fi
  echo "$status $(lf_stats "$log") $repro" >"$RESULTS/$t.$tag"
}

# One target under afl-fuzz: ASan build, CMPLOG build, corpus and dict.
run_afl() {
  local t=$1 secs=$2 tag=afl
  local bin=build/afl/$t cmplog=build/afl/cmplog/$t outdir=build/afl/out/$t log=$LOGS/$t.afl.log
  local ml to args rc stats crashes hangs execs eps edges status=PASS repro=-
  ml=$(max_len "$t"); to=$(timeout_s "$t")
  rm -rf "$outdir"; mkdir -p "$outdir"
  args=(-i "fuzz/corpus/$t" -o "$outdir" -V "$secs" -m none -t "$(( ${to:-1} * 1000 ))")
  [ -n "$ml" ] && args+=(-G "$ml")
  [ -f "fuzz/$t.dict" ] && args+=(-x "fuzz/$t.dict")
  [ -x "$cmplog" ] && args+=(-c "$cmplog")
  # afl-fuzz insists on abort_on_error/symbolize=0; sanitizer errors must be
  # signals (abort), or AFL++ would count them as clean exits.
  AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
  AFL_NO_UI=1 AFL_QUIET=1 \
  ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0:allocator_may_return_null=1 \
  UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
    afl-fuzz "${args[@]}" -- "$bin" >"$log" 2>&1
  rc=$?
  stats=$outdir/default/fuzzer_stats
  if [ ! -f "$stats" ]; then
    status=FAIL; repro="afl-fuzz exit $rc, no fuzzer_stats: see $log"; crashes=- hangs=- execs=- eps=- edges=-
  else
    field() { sed -n "s/^$1 *: *//p" "$stats" | head -1; }
    crashes=$(field saved_crashes); crashes=${crashes:-$(field unique_crashes)}
    hangs=$(field saved_hangs); hangs=${hangs:-$(field unique_hangs)}
    execs=$(field execs_done); eps=$(field execs_per_sec); edges=$(field edges_found)
    # afl-fuzz exits 0 even when it saved crashes: the stats decide.
    if [ "${crashes:-0}" -gt 0 ] || [ "$rc" -ne 0 ]; then
      status=FAIL
      local first
      first=$(find "$outdir/default/crashes" -name 'id:*' 2>/dev/null | sort | head -1)
      repro="$envp$FUZZ/$t ${first:-$outdir/default/crashes}"
    fi
  fi
  echo "$status ${execs:--} ${eps:--} edges=${edges:--} crashes=${crashes:--} hangs=${hangs:--} $repro" \
    >"$RESULTS/$t.$tag"
}

# Runs "$@" for each target, at most $jobs at once.
for_targets() {
  local fn=$1; shift
  local running=0 t
  for t in "${targets[@]}"; do
    "$fn" "$t" "$@" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
}

# One result line per target and phase; the failing ones with their repro.
report() {
  local failed=0 passed=0 t tag f status rest
  printf '\n%-10s %-7s %-6s %s\n' target phase result "execs exec/s cov ft corpus  (afl: execs exec/s edges crashes hangs)"
  for tag in "$@"; do
    for t in "${targets[@]}"; do
      f=$RESULTS/$t.$tag
      if [ -f "$f" ]; then read -r status rest <"$f"; else status=FAIL rest="no result"; fi
      printf '%-10s %-7s %-6s %s\n' "$t" "$tag" "$status" "$rest"
      if [ "$status" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    done
  done
  for tag in "$@"; do
    for t in "${targets[@]}"; do
      f=$RESULTS/$t.$tag
      [ -f "$f" ] && read -r status rest <"$f" && [ "$status" = PASS ] && continue
      echo
      echo "FAIL $t ($tag): log $LOGS/$t.$tag.log"
      [ -f "$LOGS/$t.$tag.log" ] && grep -E 'ERROR|FUZZ CHECK FAILED|SUMMARY|#[0-9]+ 0x' \
        "$LOGS/$t.$tag.log" | head -15 | sed 's/^/   | /'
      echo "   reproduce: $(awk '{ for (i = 7; i <= NF; i++) printf "%s%s", $i, (i < NF ? " " : "") }' "$f" 2>/dev/null)"
    done
  done
  junit "$@"
  echo
  echo "fuzz: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# JUnit for the gate (build/reports/fuzz-<mode>.xml): one case per target+phase.
junit() {
  local rep=build/reports x=build/reports/fuzz-$mode.xml t tag status rest n=0 nf=0
  mkdir -p "$rep"
  {
    for tag in "$@"; do for t in "${targets[@]}"; do
      n=$((n + 1)); status=FAIL rest="no result"
      [ -f "$RESULTS/$t.$tag" ] && read -r status rest <"$RESULTS/$t.$tag"
      printf '  <testcase classname="fuzz.%s" name="%s">' "$tag" "$t"
      if [ "$status" != PASS ]; then
        nf=$((nf + 1))
        printf '<failure message="%s">' "$(sed 's/&/\&amp;/g; s/</\&lt;/g; s/"/\&quot;/g' <<<"$rest")"
        grep -E 'FUZZ CHECK FAILED|SUMMARY' "$LOGS/$t.$tag.log" 2>/dev/null | head -5 |
          sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g'
        printf '</failure>'
      fi
      printf '</testcase>\n'
    done; done
  } >"$x.body"
  { printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="fuzz-%s" tests="%d" failures="%d">\n' \
      "$mode" "$n" "$nf"; cat "$x.body"; printf '</testsuite>\n'; } >"$x"
  rm -f "$x.body"
}

case "$mode" in
  libfuzzer)
    lf() { rm -f "$RESULTS/$1.fuzz"; run_libfuzzer "$1" "$time" "$FUZZ/corpus/$1" fuzz; }
    echo "fuzz: ${targets[*]}: $time s each, $jobs at once; logs in $LOGS/; known bugs: ${FUZZ_KNOWN:-none}"
    for_targets lf
    report fuzz ;;
  smoke)
    # First every committed input, then fresh inputs (throwaway dir, so the
    # gate does not depend on what earlier runs found).
    sm() {
      rm -f "$RESULTS/$1.corpus" "$RESULTS/$1.new"
      run_corpus "$1" corpus
      rm -rf "$FUZZ/smoke/$1"
      run_libfuzzer "$1" "$time" "$FUZZ/smoke/$1" new
    }
    echo "fuzz-smoke: ${targets[*]}: whole corpus, then $time s of new inputs each"
    for_targets sm
    report corpus new ;;
  afl)
    af() { rm -f "$RESULTS/$1.afl"; run_afl "$1" "$time"; }
    echo "fuzz-afl: ${targets[*]}: $time s each, $jobs at once; logs in $LOGS/"
    for_targets af
    report afl ;;
  ossfuzz-test)
    [ -n "$out" ] || { echo "run.sh: ossfuzz-test needs --out" >&2; exit 2; }
    ot() {
      local t=$1 seeds=$FUZZ/oss-seeds/$1 log=$LOGS/$1.oss.log rc status=PASS
      rm -rf "$seeds"; mkdir -p "$seeds"
      for f in "$out/$t" "$out/${t}_seed_corpus.zip" "$out/$t.dict" "$out/$t.options"; do
        [ -e "$f" ] || { echo "FAIL missing $f" >"$RESULTS/$t.oss"; return; }
      done
      unzip -q -o "$out/${t}_seed_corpus.zip" -d "$seeds"
      "$out/$t" -runs=0 -dict="$out/$t.dict" "$seeds" >"$log" 2>&1
      rc=$?
      [ "$rc" -eq 0 ] || status=FAIL
      echo "$status $(lf_stats "$log") $out/$t $seeds" >"$RESULTS/$t.oss"
    }
    for_targets ot
    report oss ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
